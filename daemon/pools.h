/*
 * Storage pools: the daemon's list of pools (table `storage_pools`) and a
 * mounted storage handle (storage/storage.h) for each.
 *
 * Crash safety: a create first records the pool as 'Pending', then builds it
 * on disk, then records it 'Created' with the config the driver filled in
 * (source, size); a delete records 'Deleting', removes it from disk, then
 * drops the row.  At start-up pools_init finishes what a crash interrupted:
 * a 'Pending' pool's leftovers are removed, a 'Deleting' pool's delete is
 * retried.  So the database never names a pool that was not fully made, and
 * a pool is never half-deleted behind a 'Created' row.
 *
 * Threads: pools_get and pools_exists are safe from any thread.  Everything
 * else is a loop-thread call; the slow parts (mkfs, mount, loop devices,
 * usage) run on libuv workers and report back on the loop.
 *
 * Errors: 400 bad input ("The storage pool is currently in use" as LXD),
 * 404 unknown pool, 409 name taken or pool busy, 500 the rest.
 */
#ifndef CELL_DAEMON_POOLS_H
#define CELL_DAEMON_POOLS_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "common/error.h"

struct stor_pool;

/* Start-up, after db_open and before profiles_init: load the pools from the
 * database, finish interrupted creates/deletes, mount them (a pool that does
 * not mount is kept, with status "Unavailable").  First start (no profiles
 * and no pools yet): create the "default" dir pool.  Blocks: call before the
 * loop runs. */
int pools_init(cell_error *err);
/* Free every handle (after the loop has stopped; nothing is unmounted). */
void pools_shutdown(void);

/* Mounted pool, borrowed, NULL when unknown, unavailable or being created
 * or deleted.  The handle stays valid until pools_shutdown even if the pool
 * is deleted meanwhile (deleted handles are retired, not freed). [any thread] */
struct stor_pool *pools_get(const char *name);
/* A pool by that name exists (usable or not). [any thread] */
bool pools_exists(const char *name);

/* ---- the model behind /1.0/storage-pools (api_storage_pools.c) ---------- */

/* "/1.0/storage-pools/<name>" (caller frees). */
char *pools_url(const char *name);
/* {name, description, driver, config, status, locations, used_by}; 404. */
int pools_get_json(const char *name, json_t **out, cell_error *err);
/* The ETag source LXD uses: [name, driver, description, config]. */
int pools_etag_json(const char *name, json_t **out, cell_error *err);
/* URLs, or objects when `objects`. */
int pools_list_json(bool objects, json_t **out, cell_error *err);

/* Called on the loop when the worker part is done; rc 0 or <0 with err. */
typedef void (*pools_done_fn)(int rc, const cell_error *err, void *data);

/* Validate (name, driver, description, config keys and values for the
 * driver) and start creating.  Returns <0 with err and nothing changed when
 * the request is refused up front; 0 when the create runs, done follows. */
int pools_create(const char *name, const char *driver, const char *description, json_t *config,
		 pools_done_fn done, void *data, cell_error *err);
/* Refused (400) while instances or profiles use the pool. */
int pools_delete(const char *name, pools_done_fn done, void *data, cell_error *err);
/* PUT (patch false: description and config replace the current ones) or
 * PATCH (given config keys merge; "" or null unsets).  Only keys LXD lets
 * change may differ: user.*, rsync.*, btrfs.mount_options (remounted). */
int pools_update(const char *name, const char *description, json_t *config, bool patch,
		 pools_done_fn done, void *data, cell_error *err);
/* {"space": {"used", "total"}, "inodes": {"used", "total"}} (taken by done). */
typedef void (*pools_resources_fn)(int rc, const cell_error *err, json_t *res, void *data);
int pools_resources(const char *name, pools_resources_fn done, void *data, cell_error *err);

#endif
