/* /1.0/storage-pools: LXD's storage pool API.  Create, delete, update and
 * usage block (mkfs, mount, statfs), so they run on workers while the
 * answer is deferred: LXD answers these synchronously. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "daemon/events.h"
#include "daemon/http.h"
#include "daemon/pools.h"
#include "daemon/router.h"

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

/* A request whose answer waits for a worker. */
struct pool_answer {
	http_deferred *deferred;   /* NULL when deferring failed: nobody to answer */
	char *url;
	const char *action;        /* lifecycle event on success */
	int status;                /* 200, or 201 with Location */
};

static struct pool_answer *answer_new(const char *name, const char *action, int status)
{
	struct pool_answer *a = calloc(1, sizeof(*a));

	if (a && !(a->url = pools_url(name))) {
		free(a);
		return NULL;
	}
	if (a) {
		a->action = action;
		a->status = status;
	}
	return a;
}

static void answer_free(struct pool_answer *a)
{
	free(a->url);
	free(a);
}

static void answer_done(int rc, const cell_error *err, void *data)
{
	struct pool_answer *a = data;
	http_resp resp;

	if (rc == 0)
		events_lifecycle(a->action, a->url, NULL);
	if (a->deferred) {
		http_resp_init(&resp);
		if (rc < 0) {
			resp_from_err(&resp, err);
		} else {
			resp_sync_status(&resp, a->status, a->status == 201 ? NULL : json_object());
			if (a->status == 201)
				http_resp_header(&resp, "Location", a->url);
		}
		http_deferred_finish(a->deferred, &resp);
	}
	answer_free(a);
}

/* After the model accepted the request (done will follow): wait for it. */
static void answer_defer(struct pool_answer *a, http_req *req, http_resp *resp)
{
	a->deferred = http_defer(req, resp);
	if (!a->deferred)
		resp_error(resp, 500, "out of memory (the operation goes on)");
}

/* ---- the collection ------------------------------------------------------ */

static void pools_get_all(http_req *req, http_resp *resp)
{
	json_t *out = NULL;
	cell_error err;

	if (pools_list_json(http_req_recursion(req) > 0, &out, &err) < 0)
		resp_from_err(resp, &err);
	else
		resp_sync(resp, out);
}

static void pools_post(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	const char *name = NULL, *driver = NULL, *description = NULL;
	struct pool_answer *a = NULL;
	cell_error err;
	int rc = http_req_json(req, &body, &err);

	if (rc == 0 && (rc = body_str(body, "name", &name, &err)) == 0 &&
	    (rc = body_str(body, "driver", &driver, &err)) == 0)
		rc = body_str(body, "description", &description, &err);
	if (rc == 0 && !(a = answer_new(name ? name : "", "storage-pool-created", 201)))
		rc = cell_err(&err, 500, ENOMEM, "out of memory");
	if (rc == 0)
		rc = pools_create(name, driver, description ? description : "",
				  json_object_get(body, "config"), answer_done, a, &err);
	if (rc < 0) {
		if (a)
			answer_free(a);
		resp_from_err(resp, &err);
		return;
	}
	answer_defer(a, req, resp);
}

/* ---- one pool ---------------------------------------------------------------- */

static void pool_get(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *etag = NULL;
	json_t *p = NULL;
	cell_error err;

	if (pools_get_json(req->params[0], &p, &err) < 0 ||
	    pools_etag_json(req->params[0], &etag, &err) < 0) {
		json_decref(p);
		resp_from_err(resp, &err);
		return;
	}
	resp_sync_etag(resp, p, etag);
}

static void pool_update(http_req *req, http_resp *resp, bool patch)
{
	_cleanup_json_ json_t *etag = NULL, *body = NULL;
	const char *name = req->params[0], *description = NULL;
	struct pool_answer *a = NULL;
	cell_error err;
	int rc = pools_etag_json(name, &etag, &err);

	if (rc == 0 && !http_check_etag(req, resp, etag))
		return;
	if (rc == 0 && (rc = http_req_json(req, &body, &err)) == 0)
		rc = body_str(body, "description", &description, &err);
	if (rc == 0 && !(a = answer_new(name, "storage-pool-updated", 200)))
		rc = cell_err(&err, 500, ENOMEM, "out of memory");
	if (rc == 0)
		rc = pools_update(name, description, json_object_get(body, "config"), patch,
				  answer_done, a, &err);
	if (rc < 0) {
		if (a)
			answer_free(a);
		resp_from_err(resp, &err);
		return;
	}
	answer_defer(a, req, resp);
}

static void pool_put(http_req *req, http_resp *resp) { pool_update(req, resp, false); }
static void pool_patch(http_req *req, http_resp *resp) { pool_update(req, resp, true); }

static void pool_delete(http_req *req, http_resp *resp)
{
	struct pool_answer *a = answer_new(req->params[0], "storage-pool-deleted", 200);
	cell_error err;

	if (!a) {
		resp_error(resp, 500, "out of memory");
		return;
	}
	if (pools_delete(req->params[0], answer_done, a, &err) < 0) {
		answer_free(a);
		resp_from_err(resp, &err);
		return;
	}
	answer_defer(a, req, resp);
}

/* ---- resources ---------------------------------------------------------------- */

/* The job cannot finish before the handler returns (both run on the
 * loop), so the deferred handle is in the box by the time it does. */
struct resources_box {
	http_deferred *d;   /* NULL when deferring failed */
};

static void resources_done(int rc, const cell_error *err, json_t *res, void *data)
{
	struct resources_box *box = data;
	http_resp resp;

	if (box->d) {
		http_resp_init(&resp);
		if (rc < 0)
			resp_from_err(&resp, err);
		else
			resp_sync(&resp, steal_ptr(res));
		http_deferred_finish(box->d, &resp);
	}
	json_decref(res);
	free(box);
}

static void pool_resources(http_req *req, http_resp *resp)
{
	struct resources_box *box = calloc(1, sizeof(*box));
	cell_error err;

	if (!box) {
		resp_error(resp, 500, "out of memory");
		return;
	}
	if (pools_resources(req->params[0], resources_done, box, &err) < 0) {
		free(box);
		resp_from_err(resp, &err);
		return;
	}
	box->d = http_defer(req, resp);
	if (!box->d)
		resp_error(resp, 500, "out of memory");
}

void api_storage_pools_register(void)
{
	router_add(&(struct route){
		.pattern = "/1.0/storage-pools",
		.methods = {
			{ HTTP_GET, pools_get_all, 0, NULL },
			{ HTTP_POST, pools_post, 0, NULL },
		},
	});
	router_add(&(struct route){
		.pattern = "/1.0/storage-pools/{name}",
		.methods = {
			{ HTTP_GET, pool_get, 0, NULL },
			{ HTTP_PUT, pool_put, 0, NULL },
			{ HTTP_PATCH, pool_patch, 0, NULL },
			{ HTTP_DELETE, pool_delete, 0, NULL },
		},
	});
	router_add(&(struct route){
		.pattern = "/1.0/storage-pools/{name}/resources",
		.methods = {
			{ HTTP_GET, pool_resources, 0, NULL },
		},
	});
}
