/*
 * The instances' life around the daemon's: start-up (journal replay,
 * reconciliation of DB vs volumes vs lxcpath, reattach to running
 * containers), autostart, the stop monitor's callback (a container that
 * stopped by itself, ephemeral deletion), snapshot expiry, profile hooks,
 * and host shutdown.
 */
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/image.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/daemon.h"
#include "daemon/db.h"
#include "daemon/events.h"
#include "daemon/http.h"
#include "daemon/images.h"
#include "daemon/inst_lxc.h"
#include "daemon/instances.h"
#include "daemon/pools.h"
#include "daemon/profiles.h"
#include "daemon/router.h"
#include "storage/storage.h"

#define EXPIRY_CHECK_MS (60 * 1000)

static uv_signal_t sig_pwr;
static uv_timer_t expiry_timer;
static bool boot_up;

static void lifecycle(const char *action, const char *name)
{
	char url[128];

	snprintf(url, sizeof(url), "/1.0/instances/%s", name);
	events_lifecycle(action, url, NULL);
}

/* Run fn(name) on a worker; name is copied. */
static void run_on_worker(void (*fn)(char *name), const char *name);

/* ---- journal replay --------------------------------------------------------------- */

static bool exists(const char *path) { return path && access(path, F_OK) == 0; }

static void replay_rename(const char *old, const char *new)
{
	_cleanup_inst_ struct inst in = { 0 };
	struct stor_pool *p;
	cell_error err;
	bool forward;

	if (db_inst_get(old, &in, &err) < 0 && db_inst_get(new, &in, &err) < 0)
		return;
	if (!(p = pools_get(in.pool)))
		return;
	forward = stor_ct_exists(p, new) && !stor_ct_exists(p, old);
	log_warn("instances: completing an interrupted rename of %s to %s (%s)", old, new,
		 forward ? "forward" : "back");
	if (forward) {
		inst_lxc_rename(old, new, &err);
		if (!strcmp(in.name, old) && db_inst_rename(in.id, new, &err) < 0)
			log_error("instances: rename %s: %s", old, err.msg);
	} else {
		inst_lxc_rename(new, old, &err);
		if (!strcmp(in.name, new) && db_inst_rename(in.id, old, &err) < 0)
			log_error("instances: rename %s back: %s", new, err.msg);
	}
}

static void replay_snaprename(const char *name, char *rec)
{
	_cleanup_inst_ struct inst in = { 0 };
	_cleanup_inst_snap_ struct inst_snap s = { 0 };
	_cleanup_free_ char *pold = NULL, *pnew = NULL;
	char *nl = strchr(rec, '\n');
	const char *old = rec, *new;
	struct stor_pool *p;
	cell_error err;

	if (!nl || db_inst_get(name, &in, &err) < 0 || !(p = pools_get(in.pool)))
		return;
	*nl = '\0';
	new = nl + 1;
	pold = stor_snap_path(p, name, old);
	pnew = stor_snap_path(p, name, new);
	log_warn("instances: completing an interrupted snapshot rename %s/%s", name, old);
	if (exists(pnew) && !exists(pold)) {
		if (db_snap_get(in.id, old, &s, &err) == 0)
			db_snap_rename(s.id, new, &err);
	} else if (db_snap_get(in.id, new, &s, &err) == 0) {
		db_snap_rename(s.id, old, &err);
	}
}

static void replay_restore(const char *name, const char *snap)
{
	_cleanup_inst_ struct inst in = { 0 };
	struct stor_pool *p;
	cell_error err;

	if (db_inst_get(name, &in, &err) < 0 || !(p = pools_get(in.pool)))
		return;
	log_warn("instances: completing an interrupted restore of %s to %s", name, snap);
	if (stor_ct_snapshot_restore(p, name, snap, &err) < 0)
		log_error("instances: restore %s/%s: %s", name, snap, err.msg);
}

static void replay_one(const char *dir, const char *file)
{
	_cleanup_free_ char *path = xasprintf("%s/%s", dir, file), *text = NULL;
	const char *dot = strchr(file, '.');
	cell_error err;

	if (!path || !dot || util_read_file(path, &text, NULL, &err) < 0)
		return;
	if (!strncmp(file, "rename.", 7))
		replay_rename(dot + 1, text);
	else if (!strncmp(file, "snaprename.", 11))
		replay_snaprename(dot + 1, text);
	else if (!strncmp(file, "restore.", 8))
		replay_restore(dot + 1, text);
	unlink(path);
}

void inst_journal_replay(void)
{
	_cleanup_free_ char *dir = inst_journal_path("", NULL);
	_cleanup_closedir_ DIR *d = dir ? opendir(dir) : NULL;
	struct dirent *de;

	while (d && (de = readdir(d)))
		if (de->d_name[0] != '.')
			replay_one(dir, de->d_name);
}

/* ---- reconciliation ---------------------------------------------------------------- */

static bool in_list(struct inst *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].name, name))
			return true;
	return false;
}

/* Rows whose volume is gone: an interrupted create or delete. */
static void drop_rows_without_volume(struct inst *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct stor_pool *p = pools_get(v[i].pool);
		cell_error err;
		if (!p || stor_ct_exists(p, v[i].name))
			continue;
		if (inst_lxc_status(v[i].name, NULL) != INST_STOPPED) {
			log_error("instances: %s runs but its volume is gone; left alone", v[i].name);
			continue;
		}
		log_warn("instances: dropping %s: its volume is gone (interrupted create or delete)",
			 v[i].name);
		inst_lxc_delete(v[i].name, &err);
		if (db_inst_delete(v[i].id, &err) < 0)
			log_error("instances: drop %s: %s", v[i].name, err.msg);
	}
}

/* Snapshot rows and storage snapshots must match one to one. */
static void reconcile_snapshots(struct inst *in, struct stor_pool *p)
{
	_cleanup_strv_ char **on_disk = NULL;
	struct inst_snap *rows = NULL;
	size_t n = 0;
	cell_error err;

	if (stor_snapshot_list(p, in->name, &on_disk, &err) < 0 ||
	    db_snap_list(in->id, &rows, &n, &err) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		bool found = false;
		for (char **s = on_disk; *s && !found; s++)
			found = !strcmp(*s, rows[i].name);
		if (!found) {
			log_warn("instances: dropping snapshot row %s/%s: no data", in->name,
				 rows[i].name);
			db_snap_delete(rows[i].id, &err);
		}
	}
	for (char **s = on_disk; *s; s++) {
		bool found = false;
		for (size_t i = 0; i < n && !found; i++)
			found = !strcmp(*s, rows[i].name);
		if (!found) {
			log_warn("instances: removing snapshot %s/%s: not in the database", in->name, *s);
			stor_ct_snapshot_delete(p, in->name, *s, &err);
		}
	}
	inst_snap_list_free(rows, n);
}

/* Volumes (and snapshot trees) on a pool that no row names. */
static void drop_orphan_volumes(struct stor_pool *p, struct inst *v, size_t n)
{
	static const char *const sub[] = { "containers", "containers-snapshots" };

	for (size_t k = 0; k < ARRAY_SIZE(sub); k++) {
		_cleanup_free_ char *dir = xasprintf("%s/%s", p->path, sub[k]);
		_cleanup_closedir_ DIR *d = dir ? opendir(dir) : NULL;
		struct dirent *de;
		while (d && (de = readdir(d))) {
			cell_error err;
			if (!instances_name_valid(de->d_name) || in_list(v, n, de->d_name))
				continue;
			log_warn("instances: removing volume %s on pool %s: not in the database",
				 de->d_name, p->name);
			if (stor_ct_delete(p, de->d_name, &err) < 0)
				log_error("instances: remove volume %s: %s", de->d_name, err.msg);
		}
	}
}

static void drop_orphan_lxc_dirs(struct inst *v, size_t n)
{
	_cleanup_closedir_ DIR *d = opendir(inst_lxc_lxcpath());
	struct dirent *de;

	while (d && (de = readdir(d))) {
		cell_error err;
		if (!instances_name_valid(de->d_name) || in_list(v, n, de->d_name))
			continue;
		if (inst_lxc_status(de->d_name, NULL) != INST_STOPPED) {
			log_error("instances: %s runs but is not in the database; left alone",
				  de->d_name);
			continue;
		}
		log_warn("instances: removing %s/%s: not in the database", inst_lxc_lxcpath(),
			 de->d_name);
		inst_lxc_delete(de->d_name, &err);
	}
}

int inst_boot_reconcile(cell_error *err)
{
	_cleanup_strv_ char **pools = NULL;
	struct inst *v = NULL;
	size_t n = 0;
	int rc;

	if ((rc = db_inst_list(&v, &n, err)) < 0)
		return rc;
	drop_rows_without_volume(v, n);
	inst_list_free(v, n);
	if ((rc = db_inst_list(&v, &n, err)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct stor_pool *p = pools_get(v[i].pool);
		if (p)
			reconcile_snapshots(&v[i], p);
	}
	if (db_inst_pool_names(&pools, err) == 0)
		for (char **name = pools; *name; name++)
			if (pools_get(*name))
				drop_orphan_volumes(pools_get(*name), v, n);
	drop_orphan_lxc_dirs(v, n);
	inst_list_free(v, n);
	return 0;
}

/* ---- reattach ------------------------------------------------------------------------ */

static void set_power(struct inst *in, const char *power)
{
	_cleanup_json_ json_t *ch = json_pack("{ss}", "volatile.last_state.power", power);
	cell_error err;

	if (ch && db_inst_config_patch(in->id, ch, NULL, &err) < 0)
		log_error("instances: %s: %s", in->name, err.msg);
}

/* Bring volatile.last_state.power in line with what runs now. */
static void reattach(void)
{
	struct inst_running *r = NULL;
	struct inst *v = NULL;
	size_t nr = 0, n = 0;
	cell_error err;

	if (inst_lxc_list_running(&r, &nr, &err) < 0 || db_inst_list(&v, &n, &err) < 0) {
		log_error("instances: reattach: %s", err.msg);
		inst_lxc_running_free(r, nr);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		bool running = inst_lxc_status(v[i].name, NULL) != INST_STOPPED;
		const char *power = json_string_value(json_object_get(v[i].config,
								      "volatile.last_state.power"));
		bool was = power && !strcmp(power, "RUNNING");
		if (running && !was)
			set_power(&v[i], "RUNNING");
		if (running || !was)
			continue;
		/* Stopped while we were away. */
		if (v[i].ephemeral) {
			log_info("instances: %s (ephemeral) stopped while celld was down: deleting",
				 v[i].name);
			if (inst_delete_locked(&v[i], &err) < 0)
				log_error("instances: delete %s: %s", v[i].name, err.msg);
		} else if (instances_expand(&v[i], &err) == 0 &&
			   json_string_value(json_object_get(v[i].exp_config, "boot.autostart")) &&
			   !inst_json_is_true(v[i].exp_config, "boot.autostart")) {
			set_power(&v[i], "STOPPED");
		}
	}
	log_info("instances: %zu of %zu running, reattached", nr, n);
	inst_lxc_running_free(r, nr);
	inst_list_free(v, n);
}

/* ---- the stop monitor ------------------------------------------------------------------ */

void instances_on_stopped(const char *name)
{
	_cleanup_inst_ struct inst in = { 0 };
	const char *power;
	bool deleted = false;
	cell_error err;

	instances_lock(name);
	if (db_inst_get(name, &in, &err) < 0 || inst_lxc_status(name, NULL) != INST_STOPPED) {
		instances_unlock(name);
		return;   /* deleted, or restarted meanwhile */
	}
	power = json_string_value(json_object_get(in.config, "volatile.last_state.power"));
	if (power && !strcmp(power, "STOPPED")) {
		instances_unlock(name);
		return;   /* a stop we did ourselves: already recorded and announced */
	}
	set_power(&in, "STOPPED");
	if (in.ephemeral) {
		if (inst_delete_locked(&in, &err) < 0)
			log_error("instances: delete ephemeral %s: %s", name, err.msg);
		else
			deleted = true;
	}
	instances_unlock(name);
	log_info("instances: %s stopped by itself%s", name, deleted ? ", deleted (ephemeral)" : "");
	lifecycle("instance-shutdown", name);
	if (deleted)
		lifecycle("instance-deleted", name);
}

static void on_stopped_worker(char *name) { instances_on_stopped(name); }

static bool down_started;

static void on_monitor_stop(const char *name, void *data)
{
	/* During a host shutdown the stops are ours and the power state must
	 * stay RUNNING. */
	if (celld->shutting_down || down_started)
		return;
	run_on_worker(on_stopped_worker, name);
}

/* ---- workers ------------------------------------------------------------------------------ */

struct name_job {
	uv_work_t work;
	void (*fn)(char *name);
	char name[];
};

static void name_job_run(uv_work_t *w)
{
	struct name_job *j = w->data;
	j->fn(j->name);
}

static void name_job_done(uv_work_t *w, int status) { free(w->data); }

static void run_on_worker(void (*fn)(char *name), const char *name)
{
	size_t len = strlen(name) + 1;
	struct name_job *j = malloc(sizeof(*j) + len);

	if (!j)
		return;
	memcpy(j->name, name, len);
	j->fn = fn;
	j->work.data = j;
	if (uv_queue_work(celld->loop, &j->work, name_job_run, name_job_done) < 0)
		free(j);
}

/* ---- autostart ------------------------------------------------------------------------------ */

struct boot_item {
	char *name;
	long priority, delay;
};

static int cmp_boot(const void *a, const void *b)
{
	const struct boot_item *x = a, *y = b;

	if (x->priority != y->priority)
		return x->priority > y->priority ? -1 : 1;
	return strcmp(x->name, y->name);
}

static long cfg_long(json_t *cfg, const char *key, long def)
{
	const char *v = json_string_value(json_object_get(cfg, key));
	return v && *v ? strtol(v, NULL, 10) : def;
}

/* LXD: boot.autostart true, or unset and running when last seen. */
static bool wants_autostart(struct inst *in)
{
	const char *a = json_string_value(json_object_get(in->exp_config, "boot.autostart"));
	const char *power = json_string_value(json_object_get(in->config,
							      "volatile.last_state.power"));

	if (a && *a)
		return inst_json_is_true(in->exp_config, "boot.autostart");
	return power && !strcmp(power, "RUNNING");
}

static void autostart_run(uv_work_t *w)
{
	struct inst *v = NULL;
	struct boot_item *items;
	size_t n = 0, k = 0;
	cell_error err;

	if (db_inst_list(&v, &n, &err) < 0 || !(items = calloc(n + 1, sizeof(*items)))) {
		inst_list_free(v, n);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (instances_expand(&v[i], &err) < 0 || !wants_autostart(&v[i]) ||
		    inst_lxc_status(v[i].name, NULL) != INST_STOPPED)
			continue;
		items[k++] = (struct boot_item){
			.name = v[i].name,
			.priority = cfg_long(v[i].exp_config, "boot.autostart.priority", 0),
			.delay = cfg_long(v[i].exp_config, "boot.autostart.delay", 0),
		};
	}
	qsort(items, k, sizeof(*items), cmp_boot);
	for (size_t i = 0; i < k && !celld->shutting_down; i++) {
		log_info("instances: autostart %s (priority %ld)", items[i].name, items[i].priority);
		if (instances_start(items[i].name, &err) < 0)
			log_error("instances: autostart %s: %s", items[i].name, err.msg);
		else if (items[i].delay > 0)
			sleep((unsigned)items[i].delay);
	}
	free(items);
	inst_list_free(v, n);
}

static void autostart_done(uv_work_t *w, int status) { free(w); }

void instances_boot_autostart(void)
{
	uv_work_t *w;
	int64_t n = 1;
	cell_error err;

	/* No instances: nothing to start, and no reason to wake the thread pool. */
	db_query_int(&n, &err, "SELECT COUNT(*) FROM instances", NULL);
	if (n == 0 || !(w = calloc(1, sizeof(*w))))
		return;
	if (uv_queue_work(celld->loop, w, autostart_run, autostart_done) < 0)
		free(w);
}

/* ---- snapshot expiry -------------------------------------------------------------------------- */

/* One timer set for the next expires_at (at most EXPIRY_CHECK_MS away), so
 * an expiry lands on time without polling; snapshot changes re-arm it. */
static uv_async_t expiry_kick;
static bool expiry_running, expiry_again;

struct expiry_work {
	uv_work_t work;
	int64_t next_ms;   /* until the next expiry, or -1 for none */
};

static void expiry_run(uv_work_t *w)
{
	struct expiry_work *e = w->data;
	struct inst_snap *s = NULL;
	struct inst *v = NULL;
	size_t ns = 0, n = 0;
	struct timespec now;
	cell_error err;

	e->next_ms = -1;
	clock_gettime(CLOCK_REALTIME, &now);
	if (db_snap_list(-1, &s, &ns, &err) < 0 || db_inst_list(&v, &n, &err) < 0)
		goto out;
	for (size_t i = 0; i < ns; i++) {
		struct timespec ts;
		int64_t left;
		if (api_image_time_parse(s[i].expires_at, &ts) < 0 || ts.tv_sec <= 0)
			continue;
		left = (ts.tv_sec - now.tv_sec) * 1000 + (ts.tv_nsec - now.tv_nsec) / 1000000;
		if (left > 0) {
			if (e->next_ms < 0 || left < e->next_ms)
				e->next_ms = left;
			continue;
		}
		for (size_t k = 0; k < n; k++)
			if (v[k].id == s[i].instance_id &&
			    instances_snapshot_delete(v[k].name, s[i].name, &err) < 0)
				log_warn("instances: expire %s/%s: %s", v[k].name, s[i].name, err.msg);
	}
out:
	inst_snap_list_free(s, ns);
	inst_list_free(v, n);
}

static void expiry_schedule(void);
static void on_expiry_timer(uv_timer_t *t) { expiry_schedule(); }

static void expiry_done(uv_work_t *w, int status)
{
	struct expiry_work *e = w->data;
	uint64_t ms = EXPIRY_CHECK_MS;

	expiry_running = false;
	if (e->next_ms >= 0 && (uint64_t)e->next_ms < ms)
		ms = (uint64_t)e->next_ms + 10;
	free(e);
	if (!boot_up)
		return;
	if (expiry_again) {
		expiry_again = false;
		expiry_schedule();
		return;
	}
	uv_timer_start(&expiry_timer, on_expiry_timer, ms, 0);
}

static void expiry_schedule(void)
{
	struct expiry_work *e;

	if (!boot_up)
		return;
	if (expiry_running) {
		expiry_again = true;
		return;
	}
	if (!(e = calloc(1, sizeof(*e))))
		return;
	e->work.data = e;
	uv_timer_stop(&expiry_timer);
	if (uv_queue_work(celld->loop, &e->work, expiry_run, expiry_done) < 0) {
		free(e);
		return;
	}
	expiry_running = true;
}

static void on_expiry_kick(uv_async_t *a) { expiry_schedule(); }

/* A quick look on the loop at start-up: most hosts have no expiring
 * snapshot, and then no worker thread needs to start at all. */
static bool expiry_any(void)
{
	int64_t n = 1;
	cell_error err;

	db_query_int(&n, &err, "SELECT COUNT(*) FROM instances_snapshots "
		     "WHERE expires_at != '0001-01-01T00:00:00Z'", NULL);
	return n > 0;
}

void inst_snapshots_changed(void)
{
	if (boot_up)
		uv_async_send(&expiry_kick);
}

/* ---- profile hooks ------------------------------------------------------------------------------ */

static bool is_root_disk(json_t *d)
{
	const char *t = json_string_value(json_object_get(d, "type"));
	const char *p = json_string_value(json_object_get(d, "path"));

	return t && p && !strcmp(t, "disk") && !strcmp(p, "/");
}

/* Expanded config/devices of the profile's users as they were before an
 * update, taken at check time, so `changed` can apply the difference. */
static json_t *pending_before;   /* profile name -> {instance: {config, devices}} */

/* A running user must take the new devices live: only hot-pluggable ones
 * (and the root disk, applied at its next start) may change. */
static int check_live(struct inst *in, const char *profile, json_t *new_config,
		      json_t *new_devices, json_t *old_devices, cell_error *err)
{
	_cleanup_json_ json_t *objs = NULL;
	const char *key;
	json_t *d;
	int rc;

	if (inst_lxc_status(in->name, NULL) == INST_STOPPED)
		return 0;
	if ((rc = db_inst_profile_objs(&objs, err)) < 0)
		return rc;
	json_object_set_new(objs, profile, json_pack("{sO sO}", "config", new_config, "devices",
						     new_devices));
	if ((rc = instances_expand_with(in, objs, err)) < 0)
		return rc;
	json_object_foreach(in->exp_devices, key, d) {
		json_t *o = json_object_get(old_devices, key);
		if ((!o || !json_equal(o, d)) && !inst_lxc_device_hotpluggable(d) && !is_root_disk(d))
			return cell_err(err, 400, EOPNOTSUPP,
					"Device \"%s\" cannot be changed on running instance \"%s\"",
					key, in->name);
	}
	return 0;
}

static int hook_check(const char *profile, json_t *new_config, json_t *new_devices,
		      cell_error *err)
{
	_cleanup_strv_ char **names = NULL;
	_cleanup_json_ json_t *before = json_object();
	int rc;

	if (!before)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = db_inst_names_with_profile(profile, &names, err)) < 0)
		return rc;
	for (char **n = names; *n; n++) {
		_cleanup_inst_ struct inst in = { 0 };
		json_t *old_devices;
		if ((rc = instances_load(*n, &in, err)) < 0)
			return rc;
		old_devices = json_incref(in.exp_devices);
		json_object_set_new(before, *n, json_pack("{sO sO}", "config", in.exp_config,
							  "devices", in.exp_devices));
		rc = check_live(&in, profile, new_config, new_devices, old_devices, err);
		json_decref(old_devices);
		if (rc < 0)
			return rc;
	}
	if (!pending_before && !(pending_before = json_object()))
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_object_set(pending_before, profile, before);
	return 0;
}

/* Worker: one instance's share of a profile change. */
static void profile_apply(char *arg)
{
	char *name = arg, *sep = strchr(arg, '\n');
	_cleanup_json_ json_t *before = NULL;
	_cleanup_inst_ struct inst cur = { 0 }, next = { 0 };
	_cleanup_json_ json_t *hw = json_object();
	cell_error err;

	if (!sep)
		return;
	*sep = '\0';
	before = json_loads(sep + 1, 0, NULL);
	instances_lock(name);
	if (instances_load(name, &next, &err) == 0 && before && db_inst_get(name, &cur, &err) == 0) {
		cur.exp_config = json_incref(json_object_get(before, "config"));
		cur.exp_devices = json_incref(json_object_get(before, "devices"));
		inst_fill_hwaddrs(next.exp_devices, next.config, hw);
		if (json_object_size(hw) && db_inst_config_patch(next.id, hw, NULL, &err) == 0)
			json_object_update(next.exp_config, hw);
		if (inst_apply_live(&cur, &next, &err) < 0)
			log_error("instances: %s: applying the profile change: %s", name, err.msg);
	}
	instances_unlock(name);
	lifecycle("instance-updated", name);
}

static void hook_changed(const char *profile)
{
	json_t *before = pending_before ? json_object_get(pending_before, profile) : NULL;
	const char *name;
	json_t *b;

	json_object_foreach(before, name, b) {
		_cleanup_free_ char *text = json_dumps(b, JSON_COMPACT);
		_cleanup_free_ char *arg = text ? xasprintf("%s\n%s", name, text) : NULL;
		if (arg)
			run_on_worker(profile_apply, arg);
	}
	if (pending_before)
		json_object_del(pending_before, profile);
}

/* ---- host shutdown ----------------------------------------------------------------------------- */

struct down_item {
	pthread_t thread;
	char *name;
	long priority, timeout;
};

/* Clean shutdown with the instance's timeout, then a kill; the power
 * state stays RUNNING so the next start brings it back. */
static void *down_one(void *arg)
{
	struct down_item *d = arg;
	cell_error err;

	struct inst in = { 0 };

	instances_lock(d->name);
	if (db_inst_get(d->name, &in, &err) == 0)
		set_power(&in, "RUNNING");
	inst_clear(&in);
	if (inst_lxc_status(d->name, NULL) != INST_STOPPED &&
	    inst_lxc_shutdown(d->name, (int)d->timeout, &err) < 0 &&
	    inst_lxc_stop(d->name, &err) < 0)
		log_error("instances: host shutdown: %s: %s", d->name, err.msg);
	instances_unlock(d->name);
	lifecycle("instance-shutdown", d->name);
	return NULL;
}

static int cmp_down(const void *a, const void *b)
{
	const struct down_item *x = a, *y = b;
	return x->priority > y->priority ? -1 : x->priority < y->priority;
}

static uv_async_t down_async;
static http_deferred *down_waiter;

/* Highest boot.stop.priority first; one priority's containers in parallel. */
static void *down_all(void *unused)
{
	struct inst *v = NULL;
	struct down_item *items;
	size_t n = 0, k = 0;
	cell_error err;

	if (db_inst_list(&v, &n, &err) == 0 && (items = calloc(n + 1, sizeof(*items)))) {
		for (size_t i = 0; i < n; i++) {
			if (inst_lxc_status(v[i].name, NULL) == INST_STOPPED ||
			    instances_expand(&v[i], &err) < 0)
				continue;
			items[k++] = (struct down_item){
				.name = v[i].name,
				.priority = cfg_long(v[i].exp_config, "boot.stop.priority", 0),
				.timeout = cfg_long(v[i].exp_config, "boot.host_shutdown_timeout", 30),
			};
		}
		qsort(items, k, sizeof(*items), cmp_down);
		for (size_t i = 0; i < k;) {
			size_t j = i;
			while (j < k && items[j].priority == items[i].priority)
				pthread_create(&items[j].thread, NULL, down_one, &items[j]), j++;
			for (; i < j; i++)
				pthread_join(items[i].thread, NULL);
		}
		free(items);
	}
	inst_list_free(v, n);
	uv_async_send(&down_async);
	return NULL;
}

static void down_finished(uv_async_t *a)
{
	if (down_waiter) {
		http_resp resp;
		http_resp_init(&resp);
		resp_empty(&resp);
		http_deferred_finish(down_waiter, &resp);
		down_waiter = NULL;
	}
	log_info("instances: every container is down, stopping celld");
	kill(getpid(), SIGTERM);
}

void instances_host_shutdown(void)
{
	pthread_t t;

	if (down_started || celld->shutting_down)
		return;
	down_started = true;
	log_info("instances: host shutdown: stopping every container");
	if (pthread_create(&t, NULL, down_all, NULL) == 0)
		pthread_detach(t);
	else
		kill(getpid(), SIGTERM);
}

static void on_sigpwr(uv_signal_t *s, int signum) { instances_host_shutdown(); }

/* PUT /internal/shutdown, as `lxd shutdown` asks: answered once the
 * containers are down, then celld ends. */
static void internal_shutdown(http_req *req, http_resp *resp)
{
	if (down_started) {
		resp_error(resp, 409, "Shutdown already in progress");
		return;
	}
	down_waiter = http_defer(req, resp);
	instances_host_shutdown();
}

void api_instances_boot_register(void)
{
	router_add(&(struct route){
		.pattern = "/internal/shutdown",
		.methods = { { HTTP_PUT, internal_shutdown, 0, NULL } },
	});
}

/* ---- giving memory back -------------------------------------------------------------------------- */

/* Operations and lists run on the pool's threads, whose malloc arenas glibc
 * keeps when freed: after a burst of work that is megabytes per thread.
 * Trimming gives the pages back; it costs ~0.2 ms, so it runs once, on the
 * loop, when the work has been quiet for TRIM_DELAY_MS. */
#define TRIM_DELAY_MS 500

static uv_async_t trim_async;
static uv_timer_t trim_timer;

static void on_trim(uv_timer_t *t) { malloc_trim(0); }

static void on_trim_async(uv_async_t *a)
{
	if (boot_up)
		uv_timer_start(&trim_timer, on_trim, TRIM_DELAY_MS, 0);
}

void inst_trim_soon(void)
{
	if (boot_up)
		uv_async_send(&trim_async);
}

/* ---- init and shutdown -------------------------------------------------------------------------- */

/* Unprivileged containers reach their rootfs as their own root: the state
 * dir must be searchable by others (LXD keeps its own 0711). */
static void state_dir_searchable(void)
{
	struct stat st;

	if (stat(celld->dir, &st) == 0 && (st.st_mode & 0011) != 0011 &&
	    chmod(celld->dir, (st.st_mode & 07777) | 0011) < 0)
		log_warn("instances: chmod %s: %m", celld->dir);
}

int instances_init(cell_error *err)
{
	_cleanup_free_ char *lxcpath = celld_path("containers");
	int rc;

	if (!lxcpath)
		return cell_err(err, 500, ENOMEM, "out of memory");
	state_dir_searchable();
	/* The pool's threads each get a malloc arena by default, and each keeps
	 * what lists and operations leave scattered in it: two are plenty for
	 * this daemon and keep its resident memory flat with many containers. */
	mallopt(M_ARENA_MAX, 2);
	if ((rc = inst_lxc_init(lxcpath, err)) < 0)
		return cell_err_wrap(err, rc, "instances");
	inst_idmap_init();
	inst_journal_replay();
	if ((rc = inst_boot_reconcile(err)) < 0)
		return cell_err_wrap(err, rc, "instances: reconcile");
	if ((rc = inst_monitor_init(celld->loop, on_monitor_stop, NULL)) < 0)
		return cell_err(err, 500, -rc, "instances: stop monitor: %s", uv_strerror(rc));
	reattach();
	inst_publish_register();
	profiles_set_hooks(&(struct profile_hooks){ .check = hook_check, .changed = hook_changed });
	uv_signal_init(celld->loop, &sig_pwr);
	uv_signal_start(&sig_pwr, on_sigpwr, SIGPWR);
	uv_async_init(celld->loop, &down_async, down_finished);
	uv_timer_init(celld->loop, &trim_timer);
	uv_async_init(celld->loop, &trim_async, on_trim_async);
	uv_timer_init(celld->loop, &expiry_timer);
	uv_async_init(celld->loop, &expiry_kick, on_expiry_kick);
	boot_up = true;
	if (expiry_any())
		expiry_schedule();
	return 0;
}

void instances_shutdown(void)
{
	if (!boot_up)
		return;
	boot_up = false;
	profiles_set_hooks(NULL);
	img_set_instance_resolver(NULL);
	uv_timer_stop(&trim_timer);
	uv_close((uv_handle_t *)&trim_timer, NULL);
	uv_close((uv_handle_t *)&trim_async, NULL);
	inst_monitor_shutdown();
	uv_close((uv_handle_t *)&sig_pwr, NULL);
	uv_close((uv_handle_t *)&down_async, NULL);
	uv_timer_stop(&expiry_timer);
	uv_close((uv_handle_t *)&expiry_timer, NULL);
	uv_close((uv_handle_t *)&expiry_kick, NULL);
	json_decref(pending_before);
	pending_before = NULL;
}
