/*
 * /1.0/instances (and /1.0/containers): list, create, get, put, patch,
 * delete, rename.  Requests are checked on the loop thread, so bad input is
 * a 4xx before any operation exists; the work runs as an operation.
 * Lists that read runtime state run on a worker and answer deferred.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json_compact.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/api_filter.h"
#include "daemon/daemon.h"
#include "daemon/images.h"
#include "daemon/http.h"
#include "daemon/image_meta.h"
#include "daemon/inst_lxc.h"
#include "daemon/instances.h"
#include "daemon/operations.h"
#include "daemon/router.h"

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static bool jnonempty(json_t *o, const char *key)
{
	const char *s = jstr(o, key);
	return s && *s;
}

/* ---- answering from a worker --------------------------------------------------- */

struct inst_job {
	uv_work_t work;
	http_deferred *d;
	http_resp resp;
	void (*fn)(void *arg, http_resp *out);
	void *arg;
	void (*free_arg)(void *arg);
};

static void job_run(uv_work_t *w)
{
	struct inst_job *j = w->data;
	j->fn(j->arg, &j->resp);
}

static void job_done(uv_work_t *w, int status)
{
	struct inst_job *j = w->data;

	if (status < 0) {
		http_resp_free(&j->resp);
		http_resp_init(&j->resp);
		resp_error(&j->resp, 500, "request cancelled");
	}
	http_deferred_finish(j->d, &j->resp);
	http_resp_free(&j->resp);
	if (j->free_arg)
		j->free_arg(j->arg);
	free(j);
}

/* Run fn(arg) on a worker; its response is sent from the loop. */
int inst_api_defer(http_req *req, http_resp *resp, void (*fn)(void *, http_resp *), void *arg,
		   void (*free_arg)(void *))
{
	struct inst_job *j = calloc(1, sizeof(*j));

	if (!j) {
		if (free_arg)
			free_arg(arg);
		resp_error(resp, 500, "out of memory");
		return -ENOMEM;
	}
	http_resp_init(&j->resp);
	j->fn = fn;
	j->arg = arg;
	j->free_arg = free_arg;
	j->work.data = j;
	if (uv_queue_work(celld->loop, &j->work, job_run, job_done) < 0) {
		if (free_arg)
			free_arg(arg);
		free(j);
		resp_error(resp, 500, "cannot queue the request");
		return -EIO;
	}
	j->d = http_defer(req, resp);
	return 0;
}

/* ---- GET /1.0/instances ------------------------------------------------------------ */

/*
 * Lists with objects are built on a worker: rows, profiles and snapshots in
 * three queries, then each instance's object (and runtime state for
 * recursion=2) made and serialised by up to LIST_THREADS threads at once,
 * the texts joined into LXD's envelope.  The state reads are syscalls
 * (cgroup files, a netlink dump inside each netns), so spreading them over
 * the CPUs is what keeps a list of many running containers fast.
 */
#define LIST_THREADS 4
#define LIST_MIN_PARALLEL 8

struct list_args {
	int recursion;
	bool containers;   /* asked under /1.0/containers */
	struct api_filter *filter;
};

static void list_args_free(void *p)
{
	struct list_args *a = p;
	api_filter_free(a->filter);
	free(a);
}

struct list_ctx {
	const struct list_args *a;
	struct inst *v;
	size_t n;
	json_t *profiles, *snaps;   /* profile objects; snapshot arrays by instance id */
	char **text;                /* per instance: its JSON, NULL when filtered out */
	size_t next;                /* next index to take (atomic) */
};

/* Snapshots of every instance as arrays keyed by instance id. */
static json_t *all_snapshots(struct inst *v, size_t n, cell_error *err)
{
	struct inst_snap *s = NULL;
	size_t ns = 0;
	json_t *by = json_object();

	if (!by || db_snap_list(-1, &s, &ns, err) < 0) {
		json_decref(by);
		return NULL;
	}
	for (size_t i = 0; i < ns; i++) {
		char key[24];
		json_t *arr;
		for (size_t k = 0; k < n; k++) {
			if (v[k].id != s[i].instance_id)
				continue;
			snprintf(key, sizeof(key), "%lld", (long long)s[i].instance_id);
			if (!(arr = json_object_get(by, key)))
				json_object_set_new(by, key, arr = json_array());
			json_array_append_new(arr, inst_snap_to_json(&v[k], &s[i]));
			break;
		}
	}
	inst_snap_list_free(s, ns);
	return by;
}

static json_t *list_object(struct list_ctx *c, struct inst *in)
{
	json_t *state, *o;
	char key[24];
	cell_error err;

	if (c->a->recursion < 2)
		return inst_to_json(in, NULL, NULL);
	state = instances_state_json(in, false, &err);
	snprintf(key, sizeof(key), "%lld", (long long)in->id);
	o = inst_to_json(in, state ? state : json_null(), json_object_get(c->snaps, key));
	json_decref(state);
	return o;
}

static void list_one(struct list_ctx *c, size_t i)
{
	struct inst *in = &c->v[i];
	json_t *o;
	cell_error err;

	if (instances_expand_shared(in, c->profiles, &err) < 0)
		return;
	o = list_object(c, in);
	if (o && (!c->a->filter || api_filter_match(c->a->filter, o))) {
		if (c->a->recursion >= 1) {
			strbuf sb = { 0 };
			if (json_compact_write(&sb, o) == 0)
				c->text[i] = sb_steal(&sb);
			sb_free(&sb);
		} else
			c->text[i] = xasprintf("\"/1.0/%s/%s\"",
					       c->a->containers ? "containers" : "instances", in->name);
	}
	json_decref(o);
}

static void *list_thread(void *p)
{
	struct list_ctx *c = p;
	size_t i;

	while ((i = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED)) < c->n)
		list_one(c, i);
	return NULL;
}

/* LXD's sync envelope around the joined texts, written straight into the
 * response (no tree of the whole list is ever built). */
static void list_answer(struct list_ctx *c, http_resp *out)
{
	bool first = true;

	sb_reset(&out->body);
	out->status = 200;
	snprintf(out->content_type, sizeof(out->content_type), "application/json");
	sb_puts(&out->body, "{\"type\":\"sync\",\"status\":\"Success\",\"status_code\":200,"
			    "\"operation\":\"\",\"error_code\":0,\"error\":\"\",\"metadata\":[");
	for (size_t i = 0; i < c->n; i++) {
		if (!c->text[i])
			continue;
		if (!first)
			sb_puts(&out->body, ",");
		sb_puts(&out->body, c->text[i]);
		first = false;
	}
	if (sb_puts(&out->body, "]}\n") < 0) {
		sb_reset(&out->body);
		resp_error(out, 500, "out of memory");
	}
}

/* The job: one worker loads, then up to LIST_THREADS workers build, then
 * the loop joins the texts and answers. */
struct list_job {
	struct list_ctx c;
	struct list_args *a;
	http_deferred *d;
	uv_work_t load;
	uv_work_t build[LIST_THREADS];
	int pending;
	cell_error err;
	bool failed;
};

static void list_job_free(struct list_job *j)
{
	for (size_t i = 0; j->c.text && i < j->c.n; i++)
		free(j->c.text[i]);
	free(j->c.text);
	inst_list_free(j->c.v, j->c.n);
	json_decref(j->c.profiles);
	json_decref(j->c.snaps);
	list_args_free(j->a);
	free(j);
	inst_trim_soon();
}

static void list_finish(struct list_job *j)
{
	http_resp resp;

	http_resp_init(&resp);
	if (j->failed)
		resp_from_err(&resp, &j->err);
	else
		list_answer(&j->c, &resp);
	http_deferred_finish(j->d, &resp);
	http_resp_free(&resp);
	list_job_free(j);
}

static void list_build_run(uv_work_t *w)
{
	struct list_job *j = w->data;
	list_thread(&j->c);
}

static void list_build_done(uv_work_t *w, int status)
{
	struct list_job *j = w->data;

	if (--j->pending == 0)
		list_finish(j);
}

static void list_load_run(uv_work_t *w)
{
	struct list_job *j = w->data;
	struct list_ctx *c = &j->c;

	if (db_inst_list_shared(&c->v, &c->n, &j->err) < 0 ||
	    db_inst_profile_objs(&c->profiles, &j->err) < 0 ||
	    (c->a->recursion >= 2 && !(c->snaps = all_snapshots(c->v, c->n, &j->err))))
		j->failed = true;
	else if (!(c->text = calloc(c->n + 1, sizeof(*c->text))))
		j->failed = cell_err(&j->err, 500, ENOMEM, "out of memory") < 0;
}

/* Fan the objects out over the pool: as many workers as CPUs (at most
 * LIST_THREADS), each taking the next instance until none is left. */
static void list_load_done(uv_work_t *w, int status)
{
	struct list_job *j = w->data;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int want = j->c.n < LIST_MIN_PARALLEL ? 1 : cpus > LIST_THREADS ? LIST_THREADS
						     : cpus > 1 ? (int)cpus : 1;

	if (status < 0 || j->failed) {
		if (!j->failed)
			cell_err(&j->err, 500, ECANCELED, "request cancelled");
		j->failed = true;
		list_finish(j);
		return;
	}
	for (int k = 0; k < want; k++) {
		j->build[k].data = j;
		if (uv_queue_work(celld->loop, &j->build[k], list_build_run, list_build_done) == 0)
			j->pending++;
	}
	if (j->pending == 0) {
		list_thread(&j->c);   /* no worker to be had: do it here */
		list_finish(j);
	}
}

static void list_start(http_req *req, http_resp *resp, struct list_args *a)
{
	struct list_job *j = calloc(1, sizeof(*j));

	if (!j) {
		list_args_free(a);
		resp_error(resp, 500, "out of memory");
		return;
	}
	j->a = a;
	j->c.a = a;
	j->load.data = j;
	if (uv_queue_work(celld->loop, &j->load, list_load_run, list_load_done) < 0) {
		list_job_free(j);
		resp_error(resp, 500, "cannot queue the request");
		return;
	}
	j->d = http_defer(req, resp);
}

/* Names only: no expansion, no state: answered on the loop. */
static void list_urls(http_resp *resp, bool containers)
{
	_cleanup_strv_ char **names = NULL;
	json_t *res = json_array();
	cell_error err;

	if (!res || db_inst_names(&names, &err) < 0) {
		json_decref(res);
		resp_from_err(resp, &err);
		return;
	}
	for (char **n = names; *n; n++) {
		char url[128];
		snprintf(url, sizeof(url), "/1.0/%s/%s", containers ? "containers" : "instances", *n);
		json_array_append_new(res, json_string(url));
	}
	resp_sync(resp, res);
}

static void instances_get(http_req *req, http_resp *resp)
{
	struct list_args *a;
	const char *filter = http_req_query(req, "filter");
	const char *type = http_req_query(req, "instance-type");
	bool containers = str_has_prefix(req->path, "/1.0/containers");
	cell_error err;

	if (type && *type && strcmp(type, "container")) {
		resp_sync(resp, json_array());   /* no virtual machines here */
		return;
	}
	if (http_req_recursion(req) == 0 && !(filter && *filter)) {
		list_urls(resp, containers);
		return;
	}
	if (!(a = calloc(1, sizeof(*a)))) {
		resp_error(resp, 500, "out of memory");
		return;
	}
	a->recursion = http_req_recursion(req);
	a->containers = containers;
	if (filter && *filter && api_filter_parse(filter, &a->filter, &err) < 0) {
		list_args_free(a);
		resp_from_err(resp, &err);
		return;
	}
	list_start(req, resp, a);
}

/* ---- POST /1.0/instances ----------------------------------------------------------------- */

static int body_object(json_t *body, const char *key, json_t **out, cell_error *err)
{
	json_t *v = json_object_get(body, key);

	if (v && !json_is_null(v) && !json_is_object(v))
		return cell_err(err, 400, EINVAL, "%s must be an object", key);
	*out = v && json_is_object(v) ? json_deep_copy(v) : json_object();
	return *out ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

static int image_lookup(json_t *src, struct img_record *rec, cell_error *err)
{
	json_t *props = json_object_get(src, "properties");
	struct img_source is = { .alias = jstr(src, "alias"), .fingerprint = jstr(src, "fingerprint"),
				 .properties = json_is_object(props) ? props : NULL };

	if (jnonempty(src, "server"))
		return cell_err(err, 400, EOPNOTSUPP,
				"Creating from a remote image server is not supported");
	if (!jnonempty(src, "alias") && !jnonempty(src, "fingerprint") && !json_object_size(props))
		return cell_err(err, 400, EINVAL,
				"Must specify one of alias, fingerprint or properties for init from image");
	return img_resolve(&is, false, rec, err);
}

static int source_image(json_t *body, json_t *src, struct inst_create *c, cell_error *err)
{
	_cleanup_img_record_ struct img_record rec = { 0 };
	int rc;

	if ((rc = image_lookup(src, &rec, err)) < 0)
		return cell_err_wrap(err, rc, "Failed getting image");
	if (rec.api.type && strcmp(rec.api.type, "container"))
		return cell_err(err, 400, EINVAL, "Image is not a container image");
	c->source = INST_SRC_IMAGE;
	c->image_fp = strdup(rec.api.fingerprint);
	c->image_split = rec.split;
	c->image_properties = rec.api.properties ? json_incref(rec.api.properties) : json_object();
	free(c->in.architecture);
	c->in.architecture = strdup(rec.api.architecture ? rec.api.architecture : "");
	/* Without profiles in the request, the image's own apply (LXD). */
	if (!json_object_get(body, "profiles") || json_is_null(json_object_get(body, "profiles"))) {
		json_t *p = json_array();
		for (char **n = rec.api.profiles; p && n && *n; n++)
			json_array_append_new(p, json_string(*n));
		if (p && json_array_size(p)) {
			json_decref(c->in.profiles);
			c->in.profiles = p;
		} else {
			json_decref(p);
		}
	}
	return c->image_fp && c->in.architecture ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

/* A local copy: the source's config, devices and profiles under the
 * request's own (LXD's rules), volatile keys left behind. */
static int source_copy(json_t *body, json_t *src, struct inst_create *c, cell_error *err)
{
	const char *from = jstr(src, "source");
	_cleanup_free_ char *name = from ? strndup(from, strcspn(from, "/")) : NULL;
	_cleanup_inst_ struct inst s = { 0 };
	_cleanup_inst_snap_ struct inst_snap snap = { 0 };
	const char *slash = from ? strchr(from, '/') : NULL;
	json_t *cfg, *devs, *profs, *v;
	const char *key;
	int rc;

	if (!from || !*from)
		return cell_err(err, 400, EINVAL, "Must specify a source instance");
	if (jnonempty(src, "server") || json_is_true(json_object_get(src, "refresh")))
		return cell_err(err, 400, EOPNOTSUPP, "Only local copies are supported");
	if (!name || (rc = db_inst_get(name, &s, err)) < 0)
		return name ? cell_err_wrap(err, rc, "Source instance") : -ENOMEM;
	cfg = s.config, devs = s.devices, profs = s.profiles;
	if (slash) {
		if ((rc = db_snap_get(s.id, slash + 1, &snap, err)) < 0)
			return rc;
		cfg = snap.config, devs = snap.devices, profs = snap.profiles;
	}
	json_object_foreach(cfg, key, v)
		if ((!str_has_prefix(key, "volatile.") || !strcmp(key, "volatile.base_image")) &&
		    !json_object_get(c->in.config, key))
			json_object_set(c->in.config, key, v);
	json_object_foreach(devs, key, v)
		if (!json_object_get(c->in.devices, key))
			json_object_set(c->in.devices, key, v);
	if (!json_object_get(body, "profiles") || json_is_null(json_object_get(body, "profiles"))) {
		json_decref(c->in.profiles);
		c->in.profiles = json_incref(profs);
	}
	free(c->in.architecture);
	c->in.architecture = strdup(s.architecture);
	c->source = INST_SRC_COPY;
	c->copy_from = strdup(from);
	c->instance_only = json_is_true(json_object_get(src, "instance_only")) ||
			   json_is_true(json_object_get(src, "container_only"));
	return c->copy_from && c->in.architecture ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

static int source_none(struct inst_create *c, cell_error *err)
{
	const char *arch[4];

	c->source = INST_SRC_NONE;
	if (!c->in.architecture || !*c->in.architecture) {
		free(c->in.architecture);
		c->in.architecture = image_arch_host_supported(arch, 4) ? strdup(arch[0])
									: strdup("x86_64");
	}
	return c->in.architecture ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

static int create_basics(json_t *body, struct inst_create *c, cell_error *err)
{
	json_t *v;
	const char *arch = jstr(body, "architecture");

	if (jnonempty(body, "instance_type"))
		return cell_err(err, 400, EOPNOTSUPP, "Instance types are not supported");
	if (jnonempty(body, "type") && strcmp(jstr(body, "type"), "container"))
		return cell_err(err, 400, EOPNOTSUPP, "Instance type \"%s\" is not supported",
				jstr(body, "type"));
	if (json_is_true(json_object_get(body, "stateful")))
		return cell_err(err, 400, EOPNOTSUPP, "Stateful instances are not supported");
	c->in.name = jnonempty(body, "name") ? strdup(jstr(body, "name")) : instances_generate_name();
	c->in.type = strdup("container");
	c->in.description = strdup(jstr(body, "description") ? jstr(body, "description") : "");
	c->in.ephemeral = json_is_true(json_object_get(body, "ephemeral"));
	c->start = json_is_true(json_object_get(body, "start"));
	if (arch && *arch && !(arch = image_arch_normalize(arch)))
		return cell_err(err, 400, EINVAL, "Invalid architecture \"%s\"",
				jstr(body, "architecture"));
	c->in.architecture = strdup(arch ? arch : "");
	if (body_object(body, "config", &c->in.config, err) < 0 ||
	    body_object(body, "devices", &c->in.devices, err) < 0)
		return -EINVAL;
	v = json_object_get(body, "profiles");
	if (v && !json_is_null(v) && !json_is_array(v))
		return cell_err(err, 400, EINVAL, "profiles must be a list of names");
	c->in.profiles = v && json_is_array(v) ? json_deep_copy(v) : json_pack("[s]", "default");
	if (!c->in.name || !c->in.type || !c->in.description || !c->in.architecture ||
	    !c->in.profiles)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return 0;
}

static int create_parse(json_t *body, struct inst_create *c, cell_error *err)
{
	json_t *src = json_object_get(body, "source");
	const char *type = jstr(src, "type");
	int rc;

	if ((rc = create_basics(body, c, err)) < 0)
		return rc;
	if (!instances_name_valid(c->in.name))
		return cell_err(err, 400, EINVAL, "Invalid instance name \"%s\"", c->in.name);
	if (!type || !*type || !strcmp(type, "none"))
		rc = source_none(c, err);
	else if (!strcmp(type, "image"))
		rc = source_image(body, src, c, err);
	else if (!strcmp(type, "copy"))
		rc = source_copy(body, src, c, err);
	else if (!strcmp(type, "migration"))
		rc = cell_err(err, 400, EOPNOTSUPP, "Migration is not supported yet");
	else
		rc = cell_err(err, 400, EINVAL, "Unknown source type %s", type);
	if (rc < 0)
		return rc;
	return instances_validate(&c->in, err);
}

static void create_free(void *p)
{
	struct inst_create *c = p;

	inst_create_clear(c);
	free(c);
}

static int create_run(struct operation *op, cell_error *err)
{
	return instances_create(op_data(op), op, err);
}

static const struct op_ops create_ops = { .run = create_run, .free_data = create_free };

static void instances_post(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	struct inst_create *c = calloc(1, sizeof(*c));
	struct operation *op;
	cell_error err;

	if (!c) {
		resp_error(resp, 500, "out of memory");
		return;
	}
	if (http_req_json(req, &body, &err) < 0 || create_parse(body, c, &err) < 0 ||
	    instances_reserve(c->in.name, &err) < 0) {
		create_free(c);
		resp_from_err(resp, &err);
		return;
	}
	op = op_create(OP_CLASS_TASK, "Creating instance", inst_op_resources(c->in.name, NULL),
		       NULL, &create_ops, c);
	if (!op) {
		instances_unreserve(c->in.name);
		create_free(c);
		resp_error(resp, 500, "cannot create the operation");
		return;
	}
	op_start(op);
	resp_async(resp, op);
}

/* ---- one instance -------------------------------------------------------------------- */

struct one_args {
	char *name;
	int recursion;
};

static void one_args_free(void *p)
{
	struct one_args *a = p;
	free(a->name);
	free(a);
}

static void one_build(void *arg, http_resp *out)
{
	struct one_args *a = arg;
	_cleanup_inst_ struct inst in = { 0 };
	_cleanup_json_ json_t *etag = NULL, *snaps = NULL;
	struct inst_snap *s = NULL;
	json_t *obj, *state = NULL;
	size_t n = 0;
	cell_error err;

	if (instances_load(a->name, &in, &err) < 0) {
		resp_from_err(out, &err);
		return;
	}
	if (a->recursion >= 1) {
		snaps = json_array();
		if (db_snap_list(in.id, &s, &n, &err) == 0)
			for (size_t i = 0; i < n; i++)
				json_array_append_new(snaps, inst_snap_to_json(&in, &s[i]));
		inst_snap_list_free(s, n);
		state = instances_state_json(&in, true, &err);
	}
	obj = inst_to_json(&in, a->recursion >= 1 ? (state ? state : json_null()) : NULL, snaps);
	json_decref(state);
	etag = inst_etag_src(&in);
	resp_sync_etag(out, obj, etag);
}

static void instance_get(http_req *req, http_resp *resp)
{
	struct one_args *a = calloc(1, sizeof(*a));

	if (!a || !(a->name = strdup(req->params[0]))) {
		free(a);
		resp_error(resp, 500, "out of memory");
		return;
	}
	a->recursion = http_req_recursion(req);
	if (a->recursion == 0) {
		/* Config and a status read: cheap enough for the loop. */
		one_build(a, resp);
		one_args_free(a);
		return;
	}
	inst_api_defer(req, resp, one_build, a, one_args_free);
}

/* ---- PUT / PATCH ------------------------------------------------------------------------ */

struct update_op {
	char *name;
	json_t *body;
	bool patch;
};

static void update_op_free(void *p)
{
	struct update_op *u = p;
	free(u->name);
	json_decref(u->body);
	free(u);
}

static int update_run(struct operation *op, cell_error *err)
{
	struct update_op *u = op_data(op);
	const char *restore = jstr(u->body, "restore");

	if (restore && *restore)
		return instances_snapshot_restore(u->name, restore, err);
	return instances_update(u->name, u->body, u->patch, err);
}

static const struct op_ops update_ops = { .run = update_run, .free_data = update_op_free };

static void instance_update(http_req *req, http_resp *resp, bool patch)
{
	_cleanup_json_ json_t *body = NULL, *etag = NULL;
	_cleanup_inst_ struct inst in = { 0 };
	const char *restore;
	struct update_op *u;
	struct operation *op;
	cell_error err;

	if (db_inst_get(req->params[0], &in, &err) < 0 || http_req_json(req, &body, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	etag = inst_etag_src(&in);
	if (!http_check_etag(req, resp, etag))
		return;
	restore = jstr(body, "restore");
	/* LXD clients send "c1/snap0"; a bare "snap0" is accepted too. */
	if (restore && str_has_prefix(restore, in.name) && restore[strlen(in.name)] == '/') {
		restore += strlen(in.name) + 1;
		json_object_set_new(body, "restore", json_string(restore));
		restore = jstr(body, "restore");
	}
	if (restore && *restore) {
		struct inst_snap s;
		if (db_snap_get(in.id, restore, &s, &err) < 0) {
			resp_from_err(resp, &err);
			return;
		}
		inst_snap_clear(&s);
	} else if (instances_update_check(in.name, body, patch, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	if (!(u = calloc(1, sizeof(*u))) || !(u->name = strdup(in.name))) {
		free(u);
		resp_error(resp, 500, "out of memory");
		return;
	}
	u->body = json_incref(body);
	u->patch = patch;
	op = op_create(OP_CLASS_TASK, restore && *restore ? "Restoring snapshot" : "Updating instance",
		       inst_op_resources(in.name, NULL), NULL, &update_ops, u);
	if (!op) {
		update_op_free(u);
		resp_error(resp, 500, "cannot create the operation");
		return;
	}
	op_start(op);
	resp_async(resp, op);
}

static void instance_put(http_req *req, http_resp *resp) { instance_update(req, resp, false); }
static void instance_patch(http_req *req, http_resp *resp) { instance_update(req, resp, true); }

/* ---- DELETE ------------------------------------------------------------------------------ */

static void name_free(void *p) { free(p); }

static int delete_run(struct operation *op, cell_error *err)
{
	return instances_delete(op_data(op), err);
}

static const struct op_ops delete_ops = { .run = delete_run, .free_data = name_free };

static void instance_delete(http_req *req, http_resp *resp)
{
	_cleanup_inst_ struct inst in = { 0 };
	struct operation *op;
	char *name;
	cell_error err;

	if (instances_load(req->params[0], &in, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	if (inst_lxc_status(in.name, NULL) != INST_STOPPED) {
		resp_error(resp, 400, "Instance is running");
		return;
	}
	if (inst_json_is_true(in.exp_config, "security.protection.delete")) {
		resp_error(resp, 400,
			   "Instance is protected from being deleted (security.protection.delete)");
		return;
	}
	if (!(name = strdup(in.name))) {
		resp_error(resp, 500, "out of memory");
		return;
	}
	op = op_create(OP_CLASS_TASK, "Deleting instance", inst_op_resources(name, NULL), NULL,
		       &delete_ops, name);
	if (!op) {
		free(name);
		resp_error(resp, 500, "cannot create the operation");
		return;
	}
	op_start(op);
	resp_async(resp, op);
}

/* ---- POST (rename) ------------------------------------------------------------------------ */

struct rename_op {
	char *name, *newname;
};

static void rename_op_free(void *p)
{
	struct rename_op *r = p;
	free(r->name);
	free(r->newname);
	free(r);
}

static int rename_run(struct operation *op, cell_error *err)
{
	struct rename_op *r = op_data(op);
	return instances_rename(r->name, r->newname, err);
}

static const struct op_ops rename_ops = { .run = rename_run, .free_data = rename_op_free };

static int rename_check(http_req *req, json_t *body, cell_error *err)
{
	const char *newname = jstr(body, "name");
	int rc;

	if (json_is_true(json_object_get(body, "migration")))
		return cell_err(err, 400, EOPNOTSUPP, "Migration is not supported yet");
	if ((rc = db_inst_exists(req->params[0], err)) <= 0)
		return rc < 0 ? rc : cell_err(err, 404, ENOENT, "Instance not found");
	if (!newname || !*newname)
		return cell_err(err, 400, EINVAL, "No name provided");
	if (!instances_name_valid(newname))
		return cell_err(err, 400, EINVAL, "Invalid instance name \"%s\"", newname);
	if ((rc = db_inst_exists(newname, err)) != 0)
		return rc < 0 ? rc : cell_err(err, 409, EEXIST, "Name \"%s\" already in use", newname);
	if (inst_lxc_status(req->params[0], NULL) != INST_STOPPED)
		return cell_err(err, 400, EBUSY, "Renaming of running instance not allowed");
	return 0;
}

static void instance_post(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	struct rename_op *r;
	struct operation *op;
	cell_error err;

	if (http_req_json(req, &body, &err) < 0 || rename_check(req, body, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	if (!(r = calloc(1, sizeof(*r))) || !(r->name = strdup(req->params[0])) ||
	    !(r->newname = strdup(jstr(body, "name")))) {
		if (r)
			rename_op_free(r);
		resp_error(resp, 500, "out of memory");
		return;
	}
	op = op_create(OP_CLASS_TASK, "Renaming instance", inst_op_resources(r->name, NULL), NULL,
		       &rename_ops, r);
	if (!op) {
		rename_op_free(r);
		resp_error(resp, 500, "cannot create the operation");
		return;
	}
	op_start(op);
	resp_async(resp, op);
}

/* ---- backups: listed (none), not made ---------------------------------------------------- */

static void backups_get(http_req *req, http_resp *resp)
{
	cell_error err;
	int rc = db_inst_exists(req->params[0], &err);

	if (rc <= 0) {
		if (rc == 0)
			cell_err(&err, 404, ENOENT, "Instance not found");
		resp_from_err(resp, &err);
		return;
	}
	resp_sync(resp, json_array());
}

static void backups_post(http_req *req, http_resp *resp)
{
	resp_error(resp, 501, "Instance backups are not supported yet");
}

void api_instances_register(void)
{
	router_add_instances(&(struct route){
		.pattern = "/1.0/instances/{name}/backups",
		.methods = {
			{ HTTP_GET, backups_get, 0, NULL },
			{ HTTP_POST, backups_post, 0, NULL },
		},
	});
	router_add_instances(&(struct route){
		.pattern = "/1.0/instances",
		.methods = {
			{ HTTP_GET, instances_get, 0, NULL },
			{ HTTP_POST, instances_post, 0, NULL },
		},
	});
	router_add_instances(&(struct route){
		.pattern = "/1.0/instances/{name}",
		.methods = {
			{ HTTP_GET, instance_get, 0, NULL },
			{ HTTP_PUT, instance_put, 0, NULL },
			{ HTTP_PATCH, instance_patch, 0, NULL },
			{ HTTP_DELETE, instance_delete, 0, NULL },
			{ HTTP_POST, instance_post, 0, NULL },
		},
	});
}
