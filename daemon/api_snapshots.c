/*
 * /1.0/instances/<name>/snapshots: list, create, get, rename, delete,
 * PUT/PATCH (description, expires_at), and restore (driven by PUT
 * /1.0/instances/<name> {"restore": ...}).  Storage snapshot first, row
 * second on create; rename and restore go through the journal.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/image.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/events.h"
#include "daemon/http.h"
#include "daemon/inst_lxc.h"
#include "daemon/instances.h"
#include "daemon/operations.h"
#include "daemon/pools.h"
#include "daemon/router.h"
#include "storage/storage.h"

#define ZERO_TIME "0001-01-01T00:00:00Z"

static void snap_event(const char *action, const char *name, const char *snap, json_t *ctx)
{
	char url[512];

	snprintf(url, sizeof(url), "/1.0/instances/%s/snapshots/%s", name, snap);
	events_lifecycle(action, url, ctx);
}

/* ---- names and expiry ------------------------------------------------------------ */

char *instances_snapshot_next_name(const struct inst *in, cell_error *err)
{
	const char *pattern = json_string_value(json_object_get(in->exp_config, "snapshots.pattern"));
	struct inst_snap *v = NULL;
	size_t n = 0;
	long next = 0;

	/* LXD's default; a pattern without %d gets none appended here. */
	if (!pattern || !*pattern || !strstr(pattern, "%d"))
		pattern = "snap%d";
	if (db_snap_list(in->id, &v, &n, err) < 0)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const char *pct = strstr(pattern, "%d");
		size_t pre = (size_t)(pct - pattern);
		char *end;
		long k;
		if (strncmp(v[i].name, pattern, pre) || !isdigit((unsigned char)v[i].name[pre]))
			continue;
		k = strtol(v[i].name + pre, &end, 10);
		if (!strcmp(end, pct + 2) && k >= next)
			next = k + 1;
	}
	inst_snap_list_free(v, n);
	{
		const char *pct = strstr(pattern, "%d");
		return xasprintf("%.*s%ld%s", (int)(pct - pattern), pattern, next, pct + 2);
	}
}

/* "1M 2H 3d 4w 5m 6y": minutes, hours, days, weeks, months, years. */
int instances_snapshot_expiry(json_t *exp_config, char out[40], cell_error *err)
{
	const char *v = json_string_value(json_object_get(exp_config, "snapshots.expiry"));
	time_t now = time(NULL);
	struct tm tm;
	struct timespec ts = { 0 };

	snprintf(out, 40, ZERO_TIME);
	if (!v || !*v)
		return 0;
	gmtime_r(&now, &tm);
	for (const char *p = v; *p;) {
		char *end;
		long n;
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		n = strtol(p, &end, 10);
		if (end == p || n < 0)
			return cell_err(err, 400, EINVAL, "Invalid snapshots.expiry \"%s\"", v);
		switch (*end) {
		case 'M': tm.tm_min += (int)n; break;
		case 'H': tm.tm_hour += (int)n; break;
		case 'd': tm.tm_mday += (int)n; break;
		case 'w': tm.tm_mday += (int)n * 7; break;
		case 'm': tm.tm_mon += (int)n; break;
		case 'y': tm.tm_year += (int)n; break;
		default: return cell_err(err, 400, EINVAL, "Invalid snapshots.expiry \"%s\"", v);
		}
		p = end + 1;
	}
	ts.tv_sec = timegm(&tm);
	api_image_time_format(&ts, out);
	return 0;
}

/* A client's expires_at, normalised; Go's zero time for none. */
static int parse_expiry(json_t *v, char out[40], cell_error *err)
{
	struct timespec ts;

	if (!v || json_is_null(v)) {
		snprintf(out, 40, ZERO_TIME);
		return 0;
	}
	if (!json_is_string(v) || api_image_time_parse(json_string_value(v), &ts) < 0)
		return cell_err(err, 400, EINVAL, "Invalid expires_at");
	api_image_time_format(&ts, out);
	return 0;
}

/* ---- the model ---------------------------------------------------------------------- */

static int create_locked(const char *name, const char *snap, const char *expires_at,
			 cell_error *err)
{
	_cleanup_inst_ struct inst in = { 0 };
	struct inst_snap s = { 0 };
	struct stor_pool *p;
	char now[40], exp[40];
	int rc;

	if ((rc = instances_load(name, &in, err)) < 0)
		return rc;
	if (!(p = instances_pool(&in, err)))
		return -ENOENT;
	if (db_snap_get(in.id, snap, &s, err) == 0) {
		inst_snap_clear(&s);
		return cell_err(err, 409, EEXIST, "Snapshot \"%s\" already exists", snap);
	}
	if (!expires_at && (rc = instances_snapshot_expiry(in.exp_config, exp, err)) < 0)
		return rc;
	if ((rc = stor_ct_snapshot_create(p, name, snap, err)) < 0)
		return rc;
	util_now_rfc3339(now);
	s = (struct inst_snap){ .instance_id = in.id, .name = (char *)snap, .created_at = now,
				.expires_at = (char *)(expires_at ? expires_at : exp),
				.config = in.config, .devices = in.devices,
				.profiles = in.profiles };
	if ((rc = db_snap_insert(&s, err)) < 0) {
		cell_error e2;
		stor_ct_snapshot_delete(p, name, snap, &e2);
	}
	return rc;
}

int instances_snapshot_create(const char *name, const char *snap, const char *expires_at,
			      cell_error *err)
{
	int rc;

	instances_lock(name);
	rc = create_locked(name, snap, expires_at, err);
	instances_unlock(name);
	if (rc < 0)
		return cell_err_wrap(err, rc, "Create instance snapshot");
	inst_snapshots_changed();
	snap_event("instance-snapshot-created", name, snap, NULL);
	return 0;
}

/* Storage first, row after: a crash between leaves a row without data,
 * which start-up drops. */
static int delete_locked(const char *name, const char *snap, cell_error *err)
{
	_cleanup_inst_ struct inst in = { 0 };
	_cleanup_inst_snap_ struct inst_snap s = { 0 };
	struct stor_pool *p;
	int rc;

	if ((rc = db_inst_get(name, &in, err)) < 0 || (rc = db_snap_get(in.id, snap, &s, err)) < 0)
		return rc;
	if (!(p = instances_pool(&in, err)))
		return -ENOENT;
	if ((rc = stor_ct_snapshot_delete(p, name, snap, err)) < 0)
		return rc;
	return db_snap_delete(s.id, err);
}

int instances_snapshot_delete(const char *name, const char *snap, cell_error *err)
{
	int rc;

	instances_lock(name);
	rc = delete_locked(name, snap, err);
	instances_unlock(name);
	if (rc < 0)
		return cell_err_wrap(err, rc, "Delete instance snapshot");
	snap_event("instance-snapshot-deleted", name, snap, NULL);
	return 0;
}

static int rename_locked(const char *name, const char *snap, const char *newname,
			 cell_error *err)
{
	_cleanup_inst_ struct inst in = { 0 };
	_cleanup_inst_snap_ struct inst_snap s = { 0 }, t = { 0 };
	_cleanup_free_ char *rec = xasprintf("%s\n%s", snap, newname);
	struct stor_pool *p;
	int rc;

	if ((rc = db_inst_get(name, &in, err)) < 0 || (rc = db_snap_get(in.id, snap, &s, err)) < 0)
		return rc;
	if (db_snap_get(in.id, newname, &t, err) == 0)
		return cell_err(err, 409, EEXIST, "Snapshot \"%s\" already exists", newname);
	if (!(p = instances_pool(&in, err)))
		return -ENOENT;
	if (!rec)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = inst_journal_write("snaprename", name, rec, err)) < 0)
		return rc;
	if ((rc = stor_ct_snapshot_rename(p, name, snap, newname, err)) < 0) {
		inst_journal_remove("snaprename", name);
		return rc;
	}
	if ((rc = db_snap_rename(s.id, newname, err)) < 0) {
		cell_error e2;
		if (stor_ct_snapshot_rename(p, name, newname, snap, &e2) == 0)
			inst_journal_remove("snaprename", name);
		return rc;
	}
	inst_journal_remove("snaprename", name);
	return 0;
}

int instances_snapshot_rename(const char *name, const char *snap, const char *newname,
			      cell_error *err)
{
	int rc;

	if (!instances_snap_name_valid(newname))
		return cell_err(err, 400, EINVAL, "Invalid snapshot name \"%s\"", newname);
	instances_lock(name);
	rc = rename_locked(name, snap, newname, err);
	instances_unlock(name);
	if (rc < 0)
		return cell_err_wrap(err, rc, "Rename instance snapshot");
	snap_event("instance-snapshot-renamed", name, newname, json_pack("{ss}", "old_name", snap));
	return 0;
}

/* The instance's config as the snapshot recorded it, with the keys that
 * describe now (power state, the running map) kept. */
static void restore_config(struct inst *in, struct inst_snap *s)
{
	static const char *const keep[] = { "volatile.last_state.power", "volatile.idmap.current" };
	json_t *cfg = json_deep_copy(s->config);

	for (size_t i = 0; cfg && i < ARRAY_SIZE(keep); i++) {
		json_t *v = json_object_get(in->config, keep[i]);
		if (v)
			json_object_set(cfg, keep[i], v);
		else
			json_object_del(cfg, keep[i]);
	}
	if (!cfg)
		return;
	json_decref(in->config);
	in->config = cfg;
	json_decref(in->devices);
	in->devices = json_incref(s->devices);
	json_decref(in->profiles);
	in->profiles = json_incref(s->profiles);
}

static void restore_undo(struct inst *in, json_t *before)
{
	json_decref(in->config);
	json_decref(in->devices);
	json_decref(in->profiles);
	in->config = json_incref(json_object_get(before, "config"));
	in->devices = json_incref(json_object_get(before, "devices"));
	in->profiles = json_incref(json_object_get(before, "profiles"));
}

/* Row first, then the volume, under a journal record: start-up repeats
 * the (idempotent) volume restore when a crash came between. */
static int restore_locked(const char *name, const char *snap, bool *was_running,
			  cell_error *err)
{
	_cleanup_inst_ struct inst in = { 0 };
	_cleanup_inst_snap_ struct inst_snap s = { 0 };
	_cleanup_json_ json_t *before = NULL;
	struct stor_pool *p;
	int rc;

	if ((rc = db_inst_get(name, &in, err)) < 0 || (rc = db_snap_get(in.id, snap, &s, err)) < 0)
		return rc;
	if (!(p = instances_pool(&in, err)))
		return -ENOENT;
	*was_running = inst_lxc_status(name, NULL) != INST_STOPPED;
	if (*was_running && (rc = inst_lxc_stop(name, err)) < 0)
		return rc;
	if (!(before = json_pack("{sO sO sO}", "config", in.config, "devices", in.devices,
				 "profiles", in.profiles)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	restore_config(&in, &s);
	if ((rc = inst_journal_write("restore", name, snap, err)) < 0)
		return rc;
	if ((rc = db_inst_update(&in, err)) < 0) {
		inst_journal_remove("restore", name);
		return rc;
	}
	if ((rc = stor_ct_snapshot_restore(p, name, snap, err)) < 0) {
		/* The volume is as it was: so is the row again.  Should that fail
		 * too, the journal has start-up finish the restore instead. */
		cell_error e2;
		restore_undo(&in, before);
		if (db_inst_update(&in, &e2) == 0)
			inst_journal_remove("restore", name);
		return rc;
	}
	inst_journal_remove("restore", name);
	return 0;
}

int instances_snapshot_restore(const char *name, const char *snap, cell_error *err)
{
	bool was_running = false;
	char url[128];
	int rc;

	instances_lock(name);
	rc = restore_locked(name, snap, &was_running, err);
	instances_unlock(name);
	if (rc < 0)
		return cell_err_wrap(err, rc, "Restore snapshot \"%s\"", snap);
	snprintf(url, sizeof(url), "/1.0/instances/%s", name);
	events_lifecycle("instance-restored", url, json_pack("{ss}", "snapshot", snap));
	return was_running ? instances_start(name, err) : 0;
}

/* ---- HTTP ------------------------------------------------------------------------------- */

static bool load_inst(http_req *req, http_resp *resp, struct inst *in)
{
	cell_error err;

	if (instances_load(req->params[0], in, &err) < 0) {
		resp_from_err(resp, &err);
		return false;
	}
	return true;
}

static bool load_snap(http_req *req, http_resp *resp, struct inst *in, struct inst_snap *s)
{
	cell_error err;

	if (!load_inst(req, resp, in))
		return false;
	if (db_snap_get(in->id, req->params[1], s, &err) < 0) {
		resp_from_err(resp, &err);
		return false;
	}
	return true;
}

static void snapshots_get(http_req *req, http_resp *resp)
{
	_cleanup_inst_ struct inst in = { 0 };
	struct inst_snap *v = NULL;
	size_t n = 0;
	bool objects = http_req_recursion(req) > 0;
	bool containers = str_has_prefix(req->path, "/1.0/containers");
	json_t *out;
	cell_error err;

	if (!load_inst(req, resp, &in))
		return;
	if (db_snap_list(in.id, &v, &n, &err) < 0 || !(out = json_array())) {
		inst_snap_list_free(v, n);
		resp_from_err(resp, &err);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char url[512];
		snprintf(url, sizeof(url), "/1.0/%s/%s/snapshots/%s",
			 containers ? "containers" : "instances", in.name, v[i].name);
		json_array_append_new(out, objects ? inst_snap_to_json(&in, &v[i]) : json_string(url));
	}
	inst_snap_list_free(v, n);
	resp_sync(resp, out);
}

struct snap_op {
	char *name, *snap, *newname, *expires_at, *description;
	enum { SNAP_CREATE, SNAP_DELETE, SNAP_RENAME, SNAP_UPDATE } kind;
};

static void snap_op_free(void *p)
{
	struct snap_op *s = p;
	free(s->name);
	free(s->snap);
	free(s->newname);
	free(s->expires_at);
	free(s->description);
	free(s);
}

static int snap_update(struct snap_op *s, cell_error *err)
{
	_cleanup_inst_ struct inst in = { 0 };
	_cleanup_inst_snap_ struct inst_snap snap = { 0 };
	int rc;

	instances_lock(s->name);
	if ((rc = db_inst_get(s->name, &in, err)) == 0 &&
	    (rc = db_snap_get(in.id, s->snap, &snap, err)) == 0)
		rc = db_snap_update(snap.id, s->description ? s->description : snap.description,
				    s->expires_at ? s->expires_at : snap.expires_at, err);
	instances_unlock(s->name);
	if (rc == 0) {
		inst_snapshots_changed();
		snap_event("instance-snapshot-updated", s->name, s->snap, NULL);
	}
	return rc;
}

static int snap_op_run(struct operation *op, cell_error *err)
{
	struct snap_op *s = op_data(op);

	switch (s->kind) {
	case SNAP_CREATE: return instances_snapshot_create(s->name, s->snap, s->expires_at, err);
	case SNAP_DELETE: return instances_snapshot_delete(s->name, s->snap, err);
	case SNAP_RENAME: return instances_snapshot_rename(s->name, s->snap, s->newname, err);
	default: return snap_update(s, err);
	}
}

static const struct op_ops snap_ops = { .run = snap_op_run, .free_data = snap_op_free };

static void snap_op_start(http_resp *resp, struct snap_op *s, const char *desc)
{
	struct operation *op;

	op = op_create(OP_CLASS_TASK, desc, inst_op_resources(s->name, s->snap), NULL, &snap_ops, s);
	if (!op) {
		snap_op_free(s);
		resp_error(resp, 500, "cannot create the operation");
		return;
	}
	op_start(op);
	resp_async(resp, op);
}

static struct snap_op *snap_op_new(int kind, const char *name, const char *snap)
{
	struct snap_op *s = calloc(1, sizeof(*s));

	if (!s || !(s->name = strdup(name)) || !(s->snap = strdup(snap))) {
		if (s)
			snap_op_free(s);
		return NULL;
	}
	s->kind = kind;
	return s;
}

static void snapshots_post(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	_cleanup_inst_ struct inst in = { 0 };
	_cleanup_free_ char *name = NULL;
	struct inst_snap exists;
	const char *given;
	json_t *exp;
	struct snap_op *s;
	char expbuf[40];
	cell_error err;

	if (!load_inst(req, resp, &in))
		return;
	if (http_req_json(req, &body, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	if (json_is_true(json_object_get(body, "stateful"))) {
		resp_error(resp, 400, "Stateful snapshots are not supported");
		return;
	}
	given = json_string_value(json_object_get(body, "name"));
	name = given && *given ? strdup(given) : instances_snapshot_next_name(&in, &err);
	if (!name) {
		resp_from_err(resp, &err);
		return;
	}
	if (!instances_snap_name_valid(name)) {
		resp_error(resp, 400, "Invalid snapshot name \"%s\"", name);
		return;
	}
	if (db_snap_get(in.id, name, &exists, &err) == 0) {
		inst_snap_clear(&exists);
		resp_error(resp, 409, "Snapshot \"%s\" already exists", name);
		return;
	}
	exp = json_object_get(body, "expires_at");
	if (exp && !json_is_null(exp) && parse_expiry(exp, expbuf, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	if (!(s = snap_op_new(SNAP_CREATE, in.name, name)) ||
	    (exp && !json_is_null(exp) && !(s->expires_at = strdup(expbuf)))) {
		resp_error(resp, 500, "out of memory");
		return;
	}
	snap_op_start(resp, s, "Snapshotting instance");
}

static void snapshot_get(http_req *req, http_resp *resp)
{
	_cleanup_inst_ struct inst in = { 0 };
	_cleanup_inst_snap_ struct inst_snap s = { 0 };
	_cleanup_json_ json_t *etag = NULL;

	if (!load_snap(req, resp, &in, &s))
		return;
	etag = json_pack("[s s]", s.expires_at, s.description);
	resp_sync_etag(resp, inst_snap_to_json(&in, &s), etag);
}

static void snapshot_delete(http_req *req, http_resp *resp)
{
	_cleanup_inst_ struct inst in = { 0 };
	_cleanup_inst_snap_ struct inst_snap s = { 0 };
	struct snap_op *op;

	if (!load_snap(req, resp, &in, &s))
		return;
	if (!(op = snap_op_new(SNAP_DELETE, in.name, s.name))) {
		resp_error(resp, 500, "out of memory");
		return;
	}
	snap_op_start(resp, op, "Deleting snapshot");
}

static void snapshot_post(http_req *req, http_resp *resp)
{
	_cleanup_inst_ struct inst in = { 0 };
	_cleanup_inst_snap_ struct inst_snap s = { 0 }, t = { 0 };
	_cleanup_json_ json_t *body = NULL;
	const char *newname;
	struct snap_op *op;
	cell_error err;

	if (!load_snap(req, resp, &in, &s))
		return;
	if (http_req_json(req, &body, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	if (json_is_true(json_object_get(body, "migration"))) {
		resp_error(resp, 400, "Migration is not supported yet");
		return;
	}
	newname = json_string_value(json_object_get(body, "name"));
	if (!newname || !instances_snap_name_valid(newname)) {
		resp_error(resp, 400, "Invalid snapshot name \"%s\"", newname ? newname : "");
		return;
	}
	if (db_snap_get(in.id, newname, &t, &err) == 0) {
		resp_error(resp, 409, "Name \"%s\" already in use", newname);
		return;
	}
	if (!(op = snap_op_new(SNAP_RENAME, in.name, s.name)) || !(op->newname = strdup(newname))) {
		if (op)
			snap_op_free(op);
		resp_error(resp, 500, "out of memory");
		return;
	}
	snap_op_start(resp, op, "Renaming snapshot");
}

static void snapshot_update(http_req *req, http_resp *resp, bool patch)
{
	_cleanup_inst_ struct inst in = { 0 };
	_cleanup_inst_snap_ struct inst_snap s = { 0 };
	_cleanup_json_ json_t *body = NULL, *etag = NULL;
	json_t *exp, *desc;
	struct snap_op *op;
	char expbuf[40];
	cell_error err;

	if (!load_snap(req, resp, &in, &s))
		return;
	etag = json_pack("[s s]", s.expires_at, s.description);
	if (!http_check_etag(req, resp, etag))
		return;
	if (http_req_json(req, &body, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	exp = json_object_get(body, "expires_at");
	desc = json_object_get(body, "description");
	if ((exp || !patch) && parse_expiry(exp, expbuf, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	if (desc && !json_is_null(desc) && !json_is_string(desc)) {
		resp_error(resp, 400, "description must be a string");
		return;
	}
	if (!(op = snap_op_new(SNAP_UPDATE, in.name, s.name)) ||
	    ((exp || !patch) && !(op->expires_at = strdup(expbuf))) ||
	    (json_is_string(desc) && !(op->description = strdup(json_string_value(desc))))) {
		if (op)
			snap_op_free(op);
		resp_error(resp, 500, "out of memory");
		return;
	}
	snap_op_start(resp, op, "Updating snapshot");
}

static void snapshot_put(http_req *req, http_resp *resp) { snapshot_update(req, resp, false); }
static void snapshot_patch(http_req *req, http_resp *resp) { snapshot_update(req, resp, true); }

void api_snapshots_register(void)
{
	router_add_instances(&(struct route){
		.pattern = "/1.0/instances/{name}/snapshots",
		.methods = {
			{ HTTP_GET, snapshots_get, 0, NULL },
			{ HTTP_POST, snapshots_post, 0, NULL },
		},
	});
	router_add_instances(&(struct route){
		.pattern = "/1.0/instances/{name}/snapshots/{snap}",
		.methods = {
			{ HTTP_GET, snapshot_get, 0, NULL },
			{ HTTP_POST, snapshot_post, 0, NULL },
			{ HTTP_DELETE, snapshot_delete, 0, NULL },
			{ HTTP_PUT, snapshot_put, 0, NULL },
			{ HTTP_PATCH, snapshot_patch, 0, NULL },
		},
	});
}
