/*
 * /1.0/images/aliases and /1.0/images/aliases/<name>: LXD's image aliases.
 * Names may hold '/' ("debian/12", as image servers name them); the path
 * reaches us decoded, so the route captures the rest of it.  Untrusted
 * clients see the aliases of public images only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/image.h"
#include "common/cleanup.h"
#include "common/http_client.h"
#include "common/util.h"
#include "daemon/db_images.h"
#include "daemon/events.h"
#include "daemon/http.h"
#include "daemon/router.h"

#define ALIAS_NAME_MAX 255

/* Printable, no empty, "." or ".." segment, so the URL names it exactly. */
static bool alias_name_ok(const char *name)
{
	const char *p = name;

	if (!name || !*name || strlen(name) > ALIAS_NAME_MAX)
		return false;
	for (const unsigned char *c = (const unsigned char *)name; *c; c++)
		if (*c < 0x20 || *c == 0x7f)
			return false;
	while (*p) {
		size_t n = strcspn(p, "/");
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/' && !*++p)
			return false;
	}
	return true;
}

static char *alias_url(const char *name)
{
	_cleanup_free_ char *esc = httpc_escape(name);
	return esc ? xasprintf("/1.0/images/aliases/%s", esc) : NULL;
}

static void alias_event(const char *action, const char *name, json_t *ctx)
{
	_cleanup_free_ char *url = alias_url(name);
	if (url)
		events_lifecycle(action, url, ctx);
	else
		json_decref(ctx);
}

static void aliases_get(http_req *req, http_resp *resp)
{
	struct api_image_alias *v = NULL;
	bool objects = http_req_recursion(req) > 0;
	json_t *out = json_array();
	cell_error err;
	size_t n = 0;

	if (!out || db_alias_list(&v, &n, !req->trusted, &err) < 0) {
		json_decref(out);
		if (!out)
			cell_err(&err, 500, ENOMEM, "out of memory");
		resp_from_err(resp, &err);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (objects) {
			json_array_append_new(out, api_image_alias_to_json(&v[i]));
		} else {
			char *url = alias_url(v[i].name);
			json_array_append_new(out, json_string(url ? url : ""));
			free(url);
		}
	}
	db_alias_list_free(v, n);
	resp_sync(resp, out);
}

/* name, target (a fingerprint or prefix) and optional description. */
static void aliases_post(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *url = NULL;
	const char *name, *target, *desc;
	cell_error err;

	if (http_req_json(req, &body, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	name = json_string_value(json_object_get(body, "name"));
	target = json_string_value(json_object_get(body, "target"));
	desc = json_string_value(json_object_get(body, "description"));
	if (!name || !*name || !target || !*target) {
		resp_error(resp, 400, "name and target are required");
		return;
	}
	if (!alias_name_ok(name)) {
		resp_error(resp, 400, "Invalid alias name \"%s\"", name);
		return;
	}
	if (db_alias_add(name, target, desc, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	alias_event("image-alias-created", name, json_pack("{s:s}", "target", target));
	url = alias_url(name);
	resp_sync_status(resp, 201, NULL);
	if (url)
		http_resp_header(resp, "Location", url);
}

static bool alias_lookup(http_req *req, http_resp *resp, struct api_image_alias *out)
{
	cell_error err;

	if (req->nparams < 1 || !alias_name_ok(req->params[0])) {
		resp_error(resp, 404, "Image alias not found");
		return false;
	}
	if (db_alias_get(req->params[0], !req->trusted, out, &err) < 0) {
		resp_from_err(resp, &err);
		return false;
	}
	return true;
}

static void alias_get(http_req *req, http_resp *resp)
{
	struct api_image_alias a = { 0 };
	json_t *obj;

	if (!alias_lookup(req, resp, &a))
		return;
	obj = api_image_alias_to_json(&a);
	api_image_alias_free(&a);
	resp_sync_etag(resp, obj, obj);
}

static void alias_update(http_req *req, http_resp *resp, bool patch)
{
	_cleanup_json_ json_t *body = NULL, *cur = NULL;
	struct api_image_alias a = { 0 };
	cell_error err;
	int rc;

	if (!alias_lookup(req, resp, &a))
		return;
	cur = api_image_alias_to_json(&a);
	if (!http_check_etag(req, resp, cur)) {
		api_image_alias_free(&a);
		return;
	}
	rc = http_req_json(req, &body, &err);
	if (rc == 0 && !patch && !json_string_value(json_object_get(body, "target")))
		rc = cell_err(&err, 400, EINVAL, "The target field is required");
	if (rc == 0)
		rc = api_image_alias_put_from_json(body, &a, patch, &err);
	if (rc == 0)
		rc = db_alias_update(a.name, a.target, a.description, &err);
	if (rc < 0) {
		api_image_alias_free(&a);
		resp_from_err(resp, &err);
		return;
	}
	alias_event("image-alias-updated", a.name, json_pack("{s:s}", "target", a.target));
	api_image_alias_free(&a);
	resp_empty(resp);
}

static void alias_put(http_req *req, http_resp *resp) { alias_update(req, resp, false); }
static void alias_patch(http_req *req, http_resp *resp) { alias_update(req, resp, true); }

/* Rename: {"name": "new"}. */
static void alias_post(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *url = NULL;
	struct api_image_alias a = { 0 };
	const char *name;
	cell_error err;

	if (!alias_lookup(req, resp, &a))
		return;
	if (http_req_json(req, &body, &err) < 0) {
		api_image_alias_free(&a);
		resp_from_err(resp, &err);
		return;
	}
	name = json_string_value(json_object_get(body, "name"));
	if (!name || !alias_name_ok(name)) {
		api_image_alias_free(&a);
		resp_error(resp, 400, "Invalid alias name \"%s\"", name ? name : "");
		return;
	}
	if (db_alias_rename(a.name, name, &err) < 0) {
		api_image_alias_free(&a);
		resp_from_err(resp, &err);
		return;
	}
	alias_event("image-alias-renamed", name, json_pack("{s:s}", "old_name", a.name));
	api_image_alias_free(&a);
	url = alias_url(name);
	resp_sync_status(resp, 201, NULL);
	if (url)
		http_resp_header(resp, "Location", url);
}

static void alias_delete(http_req *req, http_resp *resp)
{
	struct api_image_alias a = { 0 };
	cell_error err;

	if (!alias_lookup(req, resp, &a))
		return;
	if (db_alias_delete(a.name, &err) < 0) {
		api_image_alias_free(&a);
		resp_from_err(resp, &err);
		return;
	}
	alias_event("image-alias-deleted", a.name, NULL);
	api_image_alias_free(&a);
	resp_empty(resp);
}

void api_images_aliases_register(void)
{
	router_add(&(struct route){
		.pattern = "/1.0/images/aliases",
		.methods = {
			{ HTTP_GET, aliases_get, ROUTE_UNTRUSTED_OK, NULL },
			{ HTTP_POST, aliases_post, 0, NULL },
		},
	});
	router_add(&(struct route){
		.pattern = "/1.0/images/aliases/{name...}",
		.methods = {
			{ HTTP_GET, alias_get, ROUTE_UNTRUSTED_OK, NULL },
			{ HTTP_PUT, alias_put, 0, NULL },
			{ HTTP_PATCH, alias_patch, 0, NULL },
			{ HTTP_POST, alias_post, 0, NULL },
			{ HTTP_DELETE, alias_delete, 0, NULL },
		},
	});
}
