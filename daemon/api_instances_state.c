/*
 * /1.0/instances/<name>/state and the lifecycle behind it: start (id map
 * choice and rootfs shift, templates, volatile keys, then the runtime),
 * stop/shutdown, restart, freeze, unfreeze.  Each runs as an operation on a
 * worker under the instance's lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/daemon.h"
#include "daemon/events.h"
#include "daemon/http.h"
#include "daemon/inst_lxc.h"
#include "daemon/instances.h"
#include "daemon/operations.h"
#include "daemon/pools.h"
#include "daemon/router.h"
#include "storage/storage.h"

static void lifecycle(const char *action, const char *name, json_t *ctx)
{
	char url[128];

	snprintf(url, sizeof(url), "/1.0/instances/%s", name);
	events_lifecycle(action, url, ctx);
}

/* ---- start -------------------------------------------------------------------- */

/* Pick the map this start needs and move the rootfs into it when the map
 * it is stored in differs.  The range is recorded (volatile.idmap.next)
 * under the allocation lock; the slow shift runs after. */
static int start_idmap(struct inst *in, struct stor_pool *p, struct idmap *map,
		       cell_error *err)
{
	_cleanup_idmap_ struct idmap disk = { 0 };
	_cleanup_json_ json_t *ch = json_object();
	bool on_disk_known;
	int rc;

	inst_idmap_lock();
	rc = inst_idmap_pick(in->name, in->exp_config, in->config, map, err);
	if (rc == 0 && inst_idmap_volatile(ch, map, false) < 0)
		rc = cell_err(err, 500, ENOMEM, "out of memory");
	if (rc == 0)
		rc = db_inst_config_patch(in->id, ch, NULL, err);
	inst_idmap_unlock();
	if (rc < 0)
		return rc;
	json_object_update(in->config, ch);
	json_object_update(in->exp_config, ch);
	on_disk_known = inst_idmap_on_disk(in, &disk) == 0;
	if (on_disk_known && idmap_equal(&disk, map))
		return 0;
	if (inst_json_is_true(in->exp_config, "security.protection.shift"))
		return cell_err(err, 400, EPERM,
				"The id map changed and security.protection.shift forbids shifting the rootfs");
	log_info("instances: %s: shifting the rootfs to its new id map", in->name);
	if ((rc = stor_ct_shift(p, in->name, on_disk_known ? &disk : NULL, map, err)) < 0)
		return rc;
	json_object_clear(ch);
	inst_idmap_volatile(ch, map, true);
	json_object_update(in->config, ch);
	json_object_update(in->exp_config, ch);
	return db_inst_config_patch(in->id, ch, NULL, err);
}

/* The volume dir is 0100 like LXD's: only its owner may pass.  Owned by
 * the container's root, so liblxc can reach the rootfs from inside the
 * user namespace, whatever map the volume was made or shifted for. */
static int volume_owner(struct stor_pool *p, const char *name, const struct idmap *map,
			cell_error *err)
{
	_cleanup_free_ char *vol = stor_ct_path(p, name);
	uint32_t uid = 0, gid = 0;
	struct stat st;

	if (!vol)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (!idmap_is_empty(map) &&
	    (idmap_shift_uid(map, 0, &uid) < 0 || idmap_shift_gid(map, 0, &gid) < 0))
		return cell_err(err, 400, ERANGE, "the id map has no root");
	if (stat(vol, &st) == 0 && st.st_uid == uid && st.st_gid == gid)
		return 0;
	if (chown(vol, uid, gid) < 0)
		return cell_err_sys(err, 500, errno, "chown %s", vol);
	return 0;
}

/* Templates pending from create/copy/rename, then the "start" ones. */
static int start_templates(struct inst *in, struct stor_pool *p, json_t *changes,
			   cell_error *err)
{
	const char *pending = json_string_value(json_object_get(in->config,
								"volatile.apply_template"));
	int rc;

	if (pending && *pending) {
		if ((rc = inst_templates_apply(in, p, pending, err)) < 0)
			return rc;
		json_object_set_new(changes, "volatile.apply_template", json_null());
	}
	return inst_templates_apply(in, p, "start", err);
}

static int start_locked(const char *name, cell_error *err)
{
	_cleanup_inst_ struct inst in = { 0 };
	_cleanup_idmap_ struct idmap map = { 0 };
	_cleanup_json_ json_t *ch = json_object();
	_cleanup_free_ char *rootfs = NULL, *mapjson = NULL;
	struct inst_lxc_spec spec = { 0 };
	struct stor_pool *p;
	char now[40];
	int rc;

	if ((rc = instances_load(name, &in, err)) < 0)
		return rc;
	if (inst_lxc_status(name, NULL) != INST_STOPPED)
		return cell_err(err, 400, EBUSY, "The instance is already running");
	if (!(p = instances_pool(&in, err)))
		return -ENOENT;
	if ((rc = stor_ct_mount(p, name, err)) < 0 || (rc = start_idmap(&in, p, &map, err)) < 0 ||
	    (rc = volume_owner(p, name, &map, err)) < 0)
		return rc;
	inst_fill_hwaddrs(in.exp_devices, in.config, ch);
	json_object_update(in.exp_config, ch);
	if ((rc = start_templates(&in, p, ch, err)) < 0)
		return rc;
	if (!(rootfs = stor_ct_rootfs(p, name)) || !(mapjson = idmap_format_json(&map)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	spec = (struct inst_lxc_spec){ .name = name, .rootfs = rootfs, .config = in.exp_config,
				       .devices = in.exp_devices, .idmap = &map };
	if ((rc = inst_lxc_start(&spec, NULL, err)) < 0)
		return rc;
	json_object_set_new(ch, "volatile.idmap.current", json_string(mapjson));
	json_object_set_new(ch, "volatile.last_state.power", json_string("RUNNING"));
	util_now_rfc3339(now);
	if (db_inst_config_patch(in.id, ch, NULL, err) < 0 ||
	    db_inst_set_last_used(in.id, now, err) < 0)
		log_warn("instances: %s started, but recording it failed: %s", name, err->msg);
	return 0;
}

int instances_start(const char *name, cell_error *err)
{
	int64_t t0 = util_now_ms();
	int rc;

	instances_lock(name);
	rc = start_locked(name, err);
	instances_unlock(name);
	if (rc < 0)
		return cell_err_wrap(err, rc, "Failed to start instance \"%s\"", name);
	log_info("instances: started %s in %lld ms", name, (long long)(util_now_ms() - t0));
	lifecycle("instance-started", name, NULL);
	return 0;
}

/* ---- stop ---------------------------------------------------------------------- */

static int record_power(struct inst *in, const char *power, cell_error *err)
{
	_cleanup_json_ json_t *ch = json_pack("{ss}", "volatile.last_state.power", power);

	return ch ? db_inst_config_patch(in->id, ch, NULL, err)
		  : cell_err(err, 500, ENOMEM, "out of memory");
}

/* Stop with the lock held; *deleted when an ephemeral one went with it. */
static int stop_locked(const char *name, bool force, int timeout_s, bool keep_ephemeral,
		       bool *deleted, cell_error *err)
{
	_cleanup_inst_ struct inst in = { 0 };
	int rc;

	*deleted = false;
	if ((rc = db_inst_get(name, &in, err)) < 0)
		return rc;
	if (inst_lxc_status(name, NULL) == INST_STOPPED)
		return cell_err(err, 400, ESRCH, "The instance is already stopped");
	if (!force && inst_lxc_status(name, NULL) == INST_FROZEN &&
	    (rc = inst_lxc_unfreeze(name, err)) < 0)
		return rc;
	rc = force ? inst_lxc_stop(name, err) : inst_lxc_shutdown(name, timeout_s, err);
	if (rc < 0)
		return rc;
	if (record_power(&in, "STOPPED", err) < 0)
		log_warn("instances: %s stopped, but recording it failed: %s", name, err->msg);
	if (in.ephemeral && !keep_ephemeral) {
		if ((rc = inst_delete_locked(&in, err)) < 0)
			return cell_err_wrap(err, rc, "delete ephemeral instance");
		*deleted = true;
	}
	return 0;
}

int instances_stop(const char *name, bool force, int timeout_s, cell_error *err)
{
	bool deleted;
	int rc;

	instances_lock(name);
	rc = stop_locked(name, force, timeout_s, false, &deleted, err);
	instances_unlock(name);
	if (rc < 0)
		return cell_err_wrap(err, rc, "Failed to stop instance \"%s\"", name);
	log_info("instances: stopped %s%s", name, force ? " (forced)" : "");
	/* LXD: a forced stop is "stopped", a clean one "shutdown". */
	lifecycle(force ? "instance-stopped" : "instance-shutdown", name, NULL);
	if (deleted)
		lifecycle("instance-deleted", name, NULL);
	return 0;
}

int instances_restart(const char *name, bool force, int timeout_s, cell_error *err)
{
	bool deleted;
	int rc;

	instances_lock(name);
	rc = stop_locked(name, force, timeout_s, true, &deleted, err);
	if (rc == 0)
		rc = start_locked(name, err);
	instances_unlock(name);
	if (rc < 0)
		return cell_err_wrap(err, rc, "Failed to restart instance \"%s\"", name);
	lifecycle("instance-restarted", name, NULL);
	return 0;
}

static int freeze_common(const char *name, bool freeze, cell_error *err)
{
	enum inst_status st;
	int rc;

	instances_lock(name);
	st = inst_lxc_status(name, NULL);
	if ((rc = db_inst_exists(name, err)) == 0)
		rc = cell_err(err, 404, ENOENT, "Instance not found");
	else if (rc > 0 && st == INST_STOPPED)
		rc = cell_err(err, 400, ESRCH, "The instance isn't running");
	else if (rc > 0 && freeze && st == INST_FROZEN)
		rc = cell_err(err, 400, EALREADY, "The instance is already frozen");
	else if (rc > 0 && !freeze && st != INST_FROZEN)
		rc = cell_err(err, 400, EALREADY, "The instance is not frozen");
	else if (rc > 0)
		rc = freeze ? inst_lxc_freeze(name, err) : inst_lxc_unfreeze(name, err);
	instances_unlock(name);
	if (rc < 0)
		return cell_err_wrap(err, rc, "Failed to %s instance \"%s\"",
				     freeze ? "freeze" : "unfreeze", name);
	lifecycle(freeze ? "instance-paused" : "instance-resumed", name, NULL);
	return 0;
}

int instances_freeze(const char *name, cell_error *err) { return freeze_common(name, true, err); }
int instances_unfreeze(const char *name, cell_error *err) { return freeze_common(name, false, err); }

/* ---- GET /state ------------------------------------------------------------------- */

struct state_work {
	uv_work_t work;
	http_deferred *d;
	char *name;
	json_t *result;
	cell_error err;
};

static void state_run(uv_work_t *w)
{
	struct state_work *s = w->data;
	_cleanup_inst_ struct inst in = { 0 };

	if (db_inst_get(s->name, &in, &s->err) == 0)
		s->result = instances_state_json(&in, true, &s->err);
}

static void state_done(uv_work_t *w, int status)
{
	struct state_work *s = w->data;
	http_resp resp;

	http_resp_init(&resp);
	if (s->result)
		resp_sync(&resp, steal_ptr(s->result));
	else
		resp_from_err(&resp, &s->err);
	http_deferred_finish(s->d, &resp);
	free(s->name);
	free(s);
}

static void state_get(http_req *req, http_resp *resp)
{
	struct state_work *s = calloc(1, sizeof(*s));

	if (!s || !(s->name = strdup(req->params[0]))) {
		free(s);
		resp_error(resp, 500, "out of memory");
		return;
	}
	/* Disk usage may walk the rootfs: off the loop. */
	s->work.data = s;
	if (uv_queue_work(celld->loop, &s->work, state_run, state_done) < 0) {
		free(s->name);
		free(s);
		resp_error(resp, 500, "cannot queue the state read");
		return;
	}
	s->d = http_defer(req, resp);
}

/* ---- PUT /state ------------------------------------------------------------------- */

enum state_action { ACT_START, ACT_STOP, ACT_RESTART, ACT_FREEZE, ACT_UNFREEZE };

struct state_op {
	char *name;
	enum state_action action;
	bool force;
	int timeout;
};

static void state_op_free(void *p)
{
	struct state_op *s = p;
	free(s->name);
	free(s);
}

static int state_op_run(struct operation *op, cell_error *err)
{
	struct state_op *s = op_data(op);

	switch (s->action) {
	case ACT_START: return instances_start(s->name, err);
	case ACT_STOP: return instances_stop(s->name, s->force, s->timeout, err);
	case ACT_RESTART: return instances_restart(s->name, s->force, s->timeout, err);
	case ACT_FREEZE: return instances_freeze(s->name, err);
	default: return instances_unfreeze(s->name, err);
	}
}

static const struct op_ops state_ops = { .run = state_op_run, .free_data = state_op_free };

static int parse_action(const char *a, enum state_action *out)
{
	static const char *const names[] = { "start", "stop", "restart", "freeze", "unfreeze" };

	for (size_t i = 0; a && i < ARRAY_SIZE(names); i++)
		if (!strcmp(a, names[i]))
			return *out = (enum state_action)i, 0;
	return -EINVAL;
}

/* The state errors LXD reports, answered before an operation exists. */
static int check_state(const char *name, enum state_action a, cell_error *err)
{
	enum inst_status st = inst_lxc_status(name, NULL);

	if (a == ACT_START && st != INST_STOPPED)
		return cell_err(err, 400, EBUSY, "The instance is already running");
	if ((a == ACT_STOP || a == ACT_RESTART || a == ACT_FREEZE) && st == INST_STOPPED)
		return cell_err(err, 400, ESRCH,
				a == ACT_STOP ? "The instance is already stopped"
					      : "The instance isn't running");
	if (a == ACT_UNFREEZE && st != INST_FROZEN)
		return cell_err(err, 400, EALREADY, "The instance is not frozen");
	return 0;
}

static const char *const action_desc[] = { "Starting instance", "Stopping instance",
					   "Restarting instance", "Freezing instance",
					   "Unfreezing instance" };

static void state_put(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	struct state_op *s;
	struct operation *op;
	enum state_action a;
	json_t *t;
	cell_error err;
	int rc = -1;

	if (http_req_json(req, &body, &err) < 0 || (rc = db_inst_exists(req->params[0], &err)) <= 0) {
		if (rc == 0)
			cell_err(&err, 404, ENOENT, "Instance not found");
		resp_from_err(resp, &err);
		return;
	}
	if (parse_action(json_string_value(json_object_get(body, "action")), &a) < 0) {
		resp_error(resp, 400, "Unknown action %s",
			   json_string_value(json_object_get(body, "action"))
				   ? json_string_value(json_object_get(body, "action")) : "");
		return;
	}
	if (json_is_true(json_object_get(body, "stateful"))) {
		resp_error(resp, 400, "Stateful start and stop are not supported");
		return;
	}
	/* With operations queued on it, the state now says nothing about the
	 * state this one will find: it checks for itself under the lock. */
	if (!instances_busy(req->params[0]) && check_state(req->params[0], a, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	if (!(s = calloc(1, sizeof(*s))) || !(s->name = strdup(req->params[0]))) {
		free(s);
		resp_error(resp, 500, "out of memory");
		return;
	}
	s->action = a;
	s->force = json_is_true(json_object_get(body, "force"));
	t = json_object_get(body, "timeout");
	s->timeout = json_is_integer(t) ? (int)json_integer_value(t) : -1;
	if (s->timeout == 0)
		s->timeout = -1;   /* LXD's clients send 0 for "no timeout given" */
	op = op_create(OP_CLASS_TASK, action_desc[a], inst_op_resources(s->name, NULL), NULL,
		       &state_ops, s);
	if (!op) {
		state_op_free(s);
		resp_error(resp, 500, "cannot create the operation");
		return;
	}
	op_start(op);
	resp_async(resp, op);
}

void api_instances_state_register(void)
{
	router_add_instances(&(struct route){
		.pattern = "/1.0/instances/{name}/state",
		.methods = {
			{ HTTP_GET, state_get, 0, NULL },
			{ HTTP_PUT, state_put, 0, NULL },
		},
	});
}
