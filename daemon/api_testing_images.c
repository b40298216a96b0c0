/*
 * /internal/testing/images: the image store's internal entry points
 * (publish a tree, unpack an image, cache expiry), reachable before the
 * instances code calls them.  Registered only with CELL_TEST_HOOKS=1.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/image.h"
#include "common/cleanup.h"
#include "daemon/db.h"
#include "daemon/http.h"
#include "daemon/images.h"
#include "daemon/operations.h"
#include "daemon/router.h"

static int publish_run(struct operation *op, cell_error *err)
{
	json_t *b = op_data(op);
	_cleanup_img_record_ struct img_record rec = { 0 };
	struct img_publish_args a = {
		.rootfs_dir = json_string_value(json_object_get(b, "rootfs")),
		.templates_dir = json_string_value(json_object_get(b, "templates")),
		.architecture = json_string_value(json_object_get(b, "architecture")) ?: "x86_64",
		.properties = json_object_get(b, "properties"),
		.templates = json_object_get(b, "metadata_templates"),
		.compression = json_string_value(json_object_get(b, "compression")),
		.commit = { .public = json_is_true(json_object_get(b, "public")),
			    .filename = json_string_value(json_object_get(b, "filename")),
			    .aliases = json_object_get(b, "aliases") },
		.op = op,
	};
	int rc;

	if (!a.rootfs_dir)
		return cell_err(err, 400, EINVAL, "rootfs is required");
	rc = img_publish_dir(&a, &rec, err);
	if (rc == 0)
		op_set_metadata(op, json_pack("{s:s}", "fingerprint", rec.api.fingerprint));
	return rc;
}

static int unpack_run(struct operation *op, cell_error *err)
{
	json_t *b = op_data(op);
	_cleanup_img_record_ struct img_record rec = { 0 };
	const char *fp = json_string_value(json_object_get(b, "fingerprint"));
	const char *rootfs = json_string_value(json_object_get(b, "rootfs"));
	int rc;

	if (!fp || !rootfs)
		return cell_err(err, 400, EINVAL, "fingerprint and rootfs are required");
	if ((rc = img_resolve(&(struct img_source){ .fingerprint = fp }, false, &rec, err)) < 0)
		return rc;
	if ((rc = img_unpack(&rec, rootfs, json_string_value(json_object_get(b, "templates")), NULL, op,
			     err)) < 0)
		return rc;
	return img_mark_used(rec.api.fingerprint, err);
}

static int prune_run(struct operation *op, cell_error *err)
{
	int n = img_prune_expired(err);

	if (n < 0)
		return n;
	op_set_metadata(op, json_pack("{s:i}", "pruned", n));
	return 0;
}

static void free_json(void *p) { json_decref(p); }

static const struct op_ops publish_ops = { .run = publish_run, .free_data = free_json };
static const struct op_ops unpack_ops = { .run = unpack_run, .free_data = free_json };
static const struct op_ops prune_ops = { .run = prune_run };

static void start(http_req *req, http_resp *resp, const struct op_ops *ops, bool body)
{
	json_t *b = NULL;
	struct operation *op;
	cell_error err;

	if (body && http_req_json(req, &b, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	op = op_create(OP_CLASS_TASK, "Testing images", NULL, NULL, ops, b);
	if (!op) {
		json_decref(b);
		resp_error(resp, 500, "out of memory");
		return;
	}
	op_set_may_cancel(op, true);
	op_start(op);
	resp_async(resp, op);
}

static void t_publish(http_req *req, http_resp *resp) { start(req, resp, &publish_ops, true); }
static void t_unpack(http_req *req, http_resp *resp) { start(req, resp, &unpack_ops, true); }
static void t_prune(http_req *req, http_resp *resp) { start(req, resp, &prune_ops, false); }

/* Age an image: {"cached": true, "last_used_at": "...", "uploaded_at": "..."}. */
static void t_age(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *b = NULL;
	cell_error err;
	const char *k;
	json_t *v;

	if (http_req_json(req, &b, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	json_object_foreach(b, k, v) {
		struct timespec ts = { 0 };
		int rc;
		if (!strcmp(k, "cached"))
			rc = db_exec(&err, "UPDATE images SET cached = ? WHERE fingerprint = ?", "ds",
				     json_is_true(v), req->params[0]);
		else if ((!strcmp(k, "last_used_at") || !strcmp(k, "uploaded_at")) &&
			 api_image_time_parse(json_string_value(v), &ts) == 0)
			rc = db_exec(&err, !strcmp(k, "last_used_at")
					       ? "UPDATE images SET last_used_at = ? WHERE fingerprint = ?"
					       : "UPDATE images SET uploaded_at = ? WHERE fingerprint = ?",
				     "is", img_ts_to_ns(&ts), req->params[0]);
		else
			rc = cell_err(&err, 400, EINVAL, "cannot set %s", k);
		if (rc < 0) {
			resp_from_err(resp, &err);
			return;
		}
	}
	/* The list cache keys on the tables' generation: move it. */
	db_images_touch();
	resp_empty(resp);
}

void api_testing_images_register(void)
{
	const char *on = getenv("CELL_TEST_HOOKS");

	if (!on || strcmp(on, "1"))
		return;
	router_add(&(struct route){ .pattern = "/internal/testing/images/publish",
				    .methods = { { HTTP_POST, t_publish, 0, NULL } } });
	router_add(&(struct route){ .pattern = "/internal/testing/images/unpack",
				    .methods = { { HTTP_POST, t_unpack, 0, NULL } } });
	router_add(&(struct route){ .pattern = "/internal/testing/images/prune",
				    .methods = { { HTTP_POST, t_prune, 0, NULL } } });
	router_add(&(struct route){ .pattern = "/internal/testing/images/{fingerprint}",
				    .methods = { { HTTP_PATCH, t_age, 0, NULL } } });
}
