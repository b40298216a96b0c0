/* /1.0/profiles: LXD's profile API. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "daemon/events.h"
#include "daemon/http.h"
#include "daemon/profiles.h"
#include "daemon/router.h"

/* An optional string member: NULL when absent or null, 400 when not a string. */
static int body_str(json_t *body, const char *key, const char **out, cell_error *err)
{
	json_t *v = json_object_get(body, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
		return cell_err(err, 400, EINVAL, "\"%s\" must be a string", key);
	*out = json_string_value(v);
	return 0;
}

/* Answer 201 with Location (LXD's SyncResponseLocation) and send the event. */
static void answer_created(http_resp *resp, const char *action, const char *name,
			   json_t *context)
{
	_cleanup_free_ char *url = profiles_url(name);

	if (!url) {
		json_decref(context);
		resp_error(resp, 500, "out of memory");
		return;
	}
	events_lifecycle(action, url, context);
	resp_sync_status(resp, 201, NULL);
	http_resp_header(resp, "Location", url);
}

static void profiles_get(http_req *req, http_resp *resp)
{
	json_t *out = NULL;
	cell_error err;

	if (profiles_list_json(http_req_recursion(req) > 0, &out, &err) < 0)
		resp_from_err(resp, &err);
	else
		resp_sync(resp, out);
}

static void profiles_post(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	const char *name = NULL, *description = NULL;
	cell_error err;

	if (http_req_json(req, &body, &err) < 0 || body_str(body, "name", &name, &err) < 0 ||
	    body_str(body, "description", &description, &err) < 0 ||
	    profiles_create(name, description ? description : "", json_object_get(body, "config"),
			    json_object_get(body, "devices"), &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	answer_created(resp, "profile-created", name, NULL);
}

/* ---- one profile --------------------------------------------------------- */

static json_t *profile_etag_src(json_t *p)
{
	return json_pack("[O, O, O]", json_object_get(p, "config"), json_object_get(p, "description"),
			 json_object_get(p, "devices"));
}

static void profile_get(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *etag = NULL;
	json_t *p = NULL;
	cell_error err;

	if (profiles_get_json(req->params[0], &p, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	etag = profile_etag_src(p);
	resp_sync_etag(resp, p, etag);
}

/* PATCH: the request's members over the current ones (null or "" config
 * values unset a key, a null device removes it). */
static json_t *patched(json_t *cur, json_t *over)
{
	json_t *out = json_deep_copy(cur);

	if (out && json_is_object(over) && json_object_update(out, over) < 0) {
		json_decref(out);
		return NULL;
	}
	return out;
}

static int update_from_body(const char *name, json_t *cur, json_t *body, bool patch,
			    cell_error *err)
{
	_cleanup_json_ json_t *config = NULL, *devices = NULL;
	json_t *c = json_object_get(body, "config"), *d = json_object_get(body, "devices");
	const char *description;
	int rc = body_str(body, "description", &description, err);

	if (rc < 0)
		return rc;
	if (patch) {
		if (!description)
			description = json_string_value(json_object_get(cur, "description"));
		if ((c && !json_is_null(c) && !json_is_object(c)) ||
		    (d && !json_is_null(d) && !json_is_object(d)))
			return cell_err(err, 400, EINVAL, "config and devices must be objects");
		config = patched(json_object_get(cur, "config"), c);
		devices = patched(json_object_get(cur, "devices"), d);
		if (!config || !devices)
			return cell_err(err, 500, ENOMEM, "out of memory");
		c = config;
		d = devices;
	}
	return profiles_update(name, description ? description : "", c, d, err);
}

static void profile_update(http_req *req, http_resp *resp, bool patch)
{
	_cleanup_json_ json_t *cur = NULL, *etag = NULL, *body = NULL;
	_cleanup_free_ char *url = NULL;
	const char *name = req->params[0];
	cell_error err;

	if (profiles_get_json(name, &cur, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	etag = profile_etag_src(cur);
	if (!etag) {
		resp_error(resp, 500, "out of memory");
		return;
	}
	if (!http_check_etag(req, resp, etag))
		return;
	if (http_req_json(req, &body, &err) < 0 || update_from_body(name, cur, body, patch, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	if ((url = profiles_url(name)))
		events_lifecycle("profile-updated", url, NULL);
	resp_empty(resp);
}

static void profile_put(http_req *req, http_resp *resp) { profile_update(req, resp, false); }
static void profile_patch(http_req *req, http_resp *resp) { profile_update(req, resp, true); }

static void profile_rename(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	const char *oldname = req->params[0], *newname;
	cell_error err;

	if (!strcmp(oldname, PROFILES_DEFAULT)) {
		/* Before the body: LXD refuses this whatever is sent. */
		resp_error(resp, 403, "The 'default' profile cannot be renamed");
		return;
	}
	if (http_req_json(req, &body, &err) < 0 || body_str(body, "name", &newname, &err) < 0 ||
	    profiles_rename(oldname, newname, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	answer_created(resp, "profile-renamed", newname, json_pack("{s:s}", "old_name", oldname));
}

static void profile_delete(http_req *req, http_resp *resp)
{
	_cleanup_free_ char *url = profiles_url(req->params[0]);
	cell_error err;

	if (profiles_delete(req->params[0], &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	if (url)
		events_lifecycle("profile-deleted", url, NULL);
	resp_empty(resp);
}

void api_profiles_register(void)
{
	router_add(&(struct route){
		.pattern = "/1.0/profiles",
		.methods = {
			{ HTTP_GET, profiles_get, 0, NULL },
			{ HTTP_POST, profiles_post, 0, NULL },
		},
	});
	router_add(&(struct route){
		.pattern = "/1.0/profiles/{name}",
		.methods = {
			{ HTTP_GET, profile_get, 0, NULL },
			{ HTTP_PUT, profile_put, 0, NULL },
			{ HTTP_PATCH, profile_patch, 0, NULL },
			{ HTTP_POST, profile_rename, 0, NULL },
			{ HTTP_DELETE, profile_delete, 0, NULL },
		},
	});
}
