/*
 * Instances: the model between the API and the runtime.
 *
 * An instance is a row in `instances` (+ `instances_profiles`, and its
 * snapshots in `instances_snapshots`), a volume on a storage pool
 * (storage.h) and, once started, a liblxc dir under $CELL_DIR/containers
 * (inst_lxc.h).  This module keeps the three in step:
 *
 *  - Every action on one instance runs under that instance's operation
 *    lock (instances_lock), so two operations on one container are
 *    serialised; different containers proceed in parallel.
 *  - Crash-safe ordering: create writes the DB row first (the name is
 *    reserved by the UNIQUE constraint) and builds the volume after; delete
 *    removes the volume first and the row last; renames and restores write
 *    an intent record in $CELL_DIR/database/instances.journal/ before they
 *    touch anything.  instances_init() replays the journal, then reconciles:
 *    a row without its volume is dropped, a volume, snapshot or lxc dir
 *    without its row is removed.
 *  - volatile.* keys are kept as LXD keeps them: volatile.base_image,
 *    volatile.uuid, volatile.<nic>.hwaddr, volatile.idmap.{base,current,next},
 *    volatile.last_state.{idmap,power}, volatile.apply_template.
 *  - Id maps: idmap_default() for all unprivileged containers, an isolated
 *    range per container with security.idmap.isolated (allocated clear of
 *    every other isolated map), none with security.privileged.  The rootfs
 *    is shifted when the map it is stored in (volatile.last_state.idmap)
 *    differs from the one a start needs.
 *
 * Threads: functions marked [worker] block (storage, liblxc, the lock) and
 * run in operations; [loop] on the loop thread; [any] are short DB reads.
 * Errors: 0 or -errno with `err` carrying the message and HTTP status.
 */
#ifndef CELL_DAEMON_INSTANCES_H
#define CELL_DAEMON_INSTANCES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/idmap.h"
#include "common/strbuf.h"

struct operation;
struct stor_pool;

/* One row of `instances`, with its profiles and (after expand) the
 * effective config and devices. */
struct inst {
	int64_t id;
	char *name;
	char *type;                /* "container" */
	char *architecture;
	bool ephemeral, stateful;
	char *description;
	char *created_at, *last_used_at;   /* RFC 3339, as stored */
	char *pool;
	json_t *config;            /* local config: object of strings */
	json_t *devices;           /* local devices: name -> object of strings */
	json_t *profiles;          /* array of names, in apply order */
	json_t *exp_config;        /* NULL until instances_expand */
	json_t *exp_devices;
};

void inst_clear(struct inst *in);   /* frees members, zeroes */
void inst_list_free(struct inst *v, size_t n);
static inline void inst_clearp(struct inst *in) { inst_clear(in); }
#define _cleanup_inst_ __attribute__((cleanup(inst_clearp)))

/* One row of `instances_snapshots`: the instance as it was. */
struct inst_snap {
	int64_t id, instance_id;
	char *name;                /* the snapshot's own name, without "c1/" */
	char *created_at, *expires_at;
	bool stateful;
	char *description;
	json_t *config, *devices, *profiles;
};

void inst_snap_clear(struct inst_snap *s);
void inst_snap_list_free(struct inst_snap *v, size_t n);
static inline void inst_snap_clearp(struct inst_snap *s) { inst_snap_clear(s); }
#define _cleanup_inst_snap_ __attribute__((cleanup(inst_snap_clearp)))

/* ---- database (db_instances.c) ----------------------------------------- */

/* Every instance, by name; profiles filled. */
int db_inst_list(struct inst **out, size_t *n, cell_error *err);
/* The same, but config and devices are shared with a cache of parsed rows:
 * READ ONLY (lists that only serialise them). */
int db_inst_list_shared(struct inst **out, size_t *n, cell_error *err);
/* 404 "Instance not found" when absent. */
int db_inst_get(const char *name, struct inst *out, cell_error *err);
/* Every name, sorted (NULL-terminated, _cleanup_strv_). */
int db_inst_names(char ***out, cell_error *err);
/* 1 present, 0 absent. */
int db_inst_exists(const char *name, cell_error *err);
/* Row + profile links in one transaction; sets in->id.  409 when the name
 * is taken, 400 when a profile does not exist. */
int db_inst_insert(struct inst *in, cell_error *err);
/* Replace description, architecture, ephemeral, config, devices and
 * profiles of the row in->id. */
int db_inst_update(const struct inst *in, cell_error *err);
/* Merge `changes` (object; a null or "" value removes the key) into the
 * stored config in one transaction; *out (may be NULL) gets the result. */
int db_inst_config_patch(int64_t id, json_t *changes, json_t **out, cell_error *err);
int db_inst_rename(int64_t id, const char *newname, cell_error *err);
int db_inst_delete(int64_t id, cell_error *err);
int db_inst_set_last_used(int64_t id, const char *when, cell_error *err);
/* Names of the instances whose profile list holds `profile` (sorted). */
int db_inst_names_with_profile(const char *profile, char ***out, cell_error *err);

/* Every profile as {name: {"config", "devices"}} (one query, for lists). */
int db_inst_profile_objs(json_t **out, cell_error *err);
/* Names of every storage pool row (start-up reconciliation). */
int db_inst_pool_names(char ***out, cell_error *err);

/* Snapshots of one instance (instance_id >= 0) or of all, ordered by
 * instance then creation. */
int db_snap_list(int64_t instance_id, struct inst_snap **out, size_t *n, cell_error *err);
/* 404 "Snapshot not found". */
int db_snap_get(int64_t instance_id, const char *name, struct inst_snap *out, cell_error *err);
/* Sets s->id; 409 when the name is taken. */
int db_snap_insert(struct inst_snap *s, cell_error *err);
int db_snap_update(int64_t id, const char *description, const char *expires_at,
		   cell_error *err);
int db_snap_rename(int64_t id, const char *newname, cell_error *err);
int db_snap_delete(int64_t id, cell_error *err);

/* ---- set-up (instances.c, instances_boot.c) ---------------------------- */

/* After pools and profiles: runtime init, journal replay, reconciliation
 * of DB vs volumes vs lxcpath, reattach to running containers, the stop
 * monitor.  Before serving. [loop] */
int instances_init(cell_error *err);
/* Once serving: autostart (boot.autostart, boot.autostart.priority and
 * .delay; unset autostart restores volatile.last_state.power). [loop] */
void instances_boot_autostart(void);
/* SIGTERM path: containers keep running; close the monitor. [loop] */
void instances_shutdown(void);
/* Host shutdown (SIGPWR, PUT /internal/shutdown): stop every container by
 * boot.stop.priority, each given boot.host_shutdown_timeout, recording
 * last_state RUNNING so the next start restores them, then end celld. [loop] */
void instances_host_shutdown(void);

/* ---- names and validation ---------------------------------------------- */

/* LXD's instance name rules (1-63 of [A-Za-z0-9-], not starting with a
 * digit or '-', not ending with '-'). */
bool instances_name_valid(const char *name);
bool instances_snap_name_valid(const char *name);
/* A free "adjective-noun" name as LXD generates (caller frees). */
char *instances_generate_name(void);

/* Expand profiles into in->exp_config / exp_devices (replacing them). [any] */
int instances_expand(struct inst *in, cell_error *err);
/* The same from profile objects already loaded (db_inst_profile_objs). */
int instances_expand_with(struct inst *in, json_t *profile_objs, cell_error *err);
/* The same without copies: the expanded objects share values and devices
 * with the rows and profiles, so they are for reading only (lists). */
int instances_expand_shared(struct inst *in, json_t *profile_objs, cell_error *err);
/* What a create or update must pass before anything changes: known
 * profiles, config and devices valid once expanded, a root disk on an
 * existing pool, disk sources present on the host.  Fills in->pool from the
 * root disk and in->exp_*. 400/404. [any] */
int instances_validate(struct inst *in, cell_error *err);

/* db_inst_get + instances_expand. [any] */
int instances_load(const char *name, struct inst *out, cell_error *err);
/* The pool of an instance (borrowed from pools.h; NULL with 500 when gone). */
struct stor_pool *instances_pool(const struct inst *in, cell_error *err);

/* ---- the operation lock ------------------------------------------------ */

/* Block until no other operation holds `name`, then hold it. [worker] */
void instances_lock(const char *name);
/* Both names, in a fixed order (rename). [worker] */
void instances_lock2(const char *a, const char *b);
void instances_unlock(const char *name);
/* An operation holds or waits for `name` now (a state read is then only a
 * snapshot: the queued operations decide). [any] */
bool instances_busy(const char *name);
/* Claim a name for a create in progress: 409 when it is in the DB or
 * already claimed.  Released by instances_unreserve. [loop] */
int instances_reserve(const char *name, cell_error *err);
void instances_unreserve(const char *name);

/* ---- actions (all [worker], each taking the instance's lock) ----------- */

enum inst_source { INST_SRC_NONE, INST_SRC_IMAGE, INST_SRC_COPY };

struct inst_create {
	struct inst in;            /* name, profiles, config, devices, ... (validated) */
	enum inst_source source;
	char *image_fp;            /* INST_SRC_IMAGE: full fingerprint */
	bool image_split;          /* metadata tarball + <fp>.rootfs */
	json_t *image_properties;  /* image.* keys to record */
	char *copy_from;           /* INST_SRC_COPY: "c1" or "c1/snap0" */
	bool instance_only;        /* copy without snapshots */
	bool start;                /* start once created */
};
void inst_create_clear(struct inst_create *c);

/* The name must be reserved (instances_reserve) by the caller. */
int instances_create(struct inst_create *c, struct operation *op, cell_error *err);
int instances_delete(const char *name, cell_error *err);
int instances_rename(const char *name, const char *newname, cell_error *err);
/* Replace (patch=false) or merge (patch=true) the writable fields with
 * `body` (already checked by instances_update_check); applies limits and
 * hot-plug to a running container. */
int instances_update(const char *name, json_t *body, bool patch, cell_error *err);
/* What update would store, validated: 400 before any operation starts. [any] */
int instances_update_check(const char *name, json_t *body, bool patch, cell_error *err);

int instances_start(const char *name, cell_error *err);
/* force: kill now; else ask init to halt and wait timeout_s (< 0 forever). */
int instances_stop(const char *name, bool force, int timeout_s, cell_error *err);
int instances_restart(const char *name, bool force, int timeout_s, cell_error *err);
int instances_freeze(const char *name, cell_error *err);
int instances_unfreeze(const char *name, cell_error *err);

/* Snapshots (api_snapshots.c drives these). */
int instances_snapshot_create(const char *name, const char *snap, const char *expires_at,
			      cell_error *err);
int instances_snapshot_delete(const char *name, const char *snap, cell_error *err);
int instances_snapshot_rename(const char *name, const char *snap, const char *newname,
			      cell_error *err);
int instances_snapshot_restore(const char *name, const char *snap, cell_error *err);
/* Next free name from snapshots.pattern ("snap%d"). */
char *instances_snapshot_next_name(const struct inst *in, cell_error *err);
/* snapshots.expiry ("1M 2H 3d 4w 5m 6y") from now, Go's zero time when
 * unset. 400 when malformed. */
int instances_snapshot_expiry(json_t *exp_config, char out[40], cell_error *err);

/* The stop monitor's callback: a container stopped without us asking
 * (poweroff inside, crash): record it, send instance-shutdown, delete an
 * ephemeral one. [worker] */
void instances_on_stopped(const char *name);

/* ---- JSON --------------------------------------------------------------- */

/* api.Instance; with `state` or `snaps` (both borrowed, may be NULL) it is
 * LXD's InstanceFull (recursion=2): state, snapshots and backups added. */
json_t *inst_to_json(const struct inst *in, json_t *state, json_t *snaps);
json_t *inst_snap_to_json(const struct inst *in, const struct inst_snap *s);
/* The runtime state plus disk usage (when the pool can tell cheaply, or
 * always when with_disk). [any] */
json_t *instances_state_json(const struct inst *in, bool with_disk, cell_error *err);
/* ETag sources as LXD hashes them. */
json_t *inst_etag_src(const struct inst *in);
/* Operation resources {"instances": [url], "containers": [url]}. */
json_t *inst_op_resources(const char *name, const char *snap);

/* The id map a container runs with now (volatile.idmap.current, else the
 * last_state map); empty for privileged. [any] */
int instances_idmap_of(const struct inst *in, struct idmap *out, cell_error *err);

/* ---- shared by the instances files only ---------------------------------- */

/* The root disk of expanded devices (its name in *devname), or NULL. */
json_t *inst_root_disk(json_t *devices, const char **devname);
/* LXD's truthiness of a config value. */
bool inst_json_is_true(json_t *config, const char *key);

/* Id maps: the host base (idmap_default), read once by inst_idmap_init. */
int inst_idmap_init(void);
int inst_idmap_base_copy(struct idmap *out);
/* The map a start or create needs for this config: empty (privileged), the
 * base, or an isolated range (kept from volatile.idmap.next when it still
 * fits, else allocated).  Hold inst_idmap_lock until the DB records it. */
int inst_idmap_pick(const char *name, json_t *exp_config, json_t *config, struct idmap *out,
		    cell_error *err);
void inst_idmap_lock(void);
void inst_idmap_unlock(void);
/* volatile.idmap.base/next (+ last_state.idmap) for `m` into changes. */
int inst_idmap_volatile(json_t *changes, const struct idmap *m, bool last_state);
/* The map the rootfs is stored in (volatile.last_state.idmap). */
int inst_idmap_on_disk(const struct inst *in, struct idmap *out);

/* Intent records ($CELL_DIR/database/instances.journal/<kind>.<name>). */
char *inst_journal_path(const char *kind, const char *name);
int inst_journal_write(const char *kind, const char *name, const char *text, cell_error *err);
void inst_journal_remove(const char *kind, const char *name);

/* volatile.<nic>.hwaddr for nics without one, into changes. */
void inst_fill_hwaddrs(json_t *exp_devices, json_t *config, json_t *changes);
/* Delete with the lock held (stopped only). [worker] */
int inst_delete_locked(struct inst *in, cell_error *err);
/* Live limits + hot-plug from cur to next on a running container. [worker] */
int inst_apply_live(struct inst *cur, struct inst *next, cell_error *err);
int inst_apply_devices(const char *name, json_t *olddev, json_t *newdev, json_t *config,
		       cell_error *err);
/* Image templates for `trigger` into the rootfs. [worker] */
int inst_templates_apply(const struct inst *in, struct stor_pool *p, const char *trigger,
			 cell_error *err);
/* api_instances.c: run fn(arg) on a worker and send the response it fills
 * from the loop (deferred answer).  free_arg (may be NULL) frees arg. */
struct http_req;
struct http_resp;
int inst_api_defer(struct http_req *req, struct http_resp *resp,
		   void (*fn)(void *arg, struct http_resp *out), void *arg, void (*free_arg)(void *));
/* Work just ended on a pool thread: trim malloc arenas once things are
 * quiet (instances_boot.c). [any] */
void inst_trim_soon(void);
/* instances_boot.c: reconcile DB, volumes and lxcpath; reattach. [loop, start-up] */
int inst_boot_reconcile(cell_error *err);
/* A snapshot's expires_at may have changed: re-arm the expiry timer. [any] */
void inst_snapshots_changed(void);
/* Let the images code publish instances and snapshots (`lxc publish`). */
void inst_publish_register(void);
/* Start-up replay of the journal. */
void inst_journal_replay(void);

/* Where record-output files of exec live, below an instance's log dir;
 * also the URL segment under /1.0/instances/<name>/logs/ that serves them. */
#define INST_EXEC_OUTPUT_DIR "exec-output"

#endif
