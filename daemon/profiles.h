/*
 * Profiles: LXD's named bundles of instance config and devices.  An
 * instance lists profiles in order; its expanded config and devices are the
 * profiles applied in that order (a later profile's key or device replaces
 * an earlier one's, a device as a whole) and then the instance's own config
 * and devices on top.
 *
 * Rows live in the `profiles` table (config and devices as JSON text) and
 * instances point at them through `instances_profiles` (apply_order).  The
 * "default" profile is made at first start, cannot be renamed or deleted.
 *
 * Threads: the write functions (create, update, rename, delete) are called
 * from the loop thread by the API; profiles_expand, profiles_check_exist and
 * the read functions are safe from any thread (they only use the database).
 *
 * Errors: 400 bad input, 403 on the default profile, 404 unknown profile,
 * 409 name taken, 500 the rest; messages in LXD's words where LXD has them.
 */
#ifndef CELL_DAEMON_PROFILES_H
#define CELL_DAEMON_PROFILES_H

#include <stdbool.h>
#include <jansson.h>

#include "common/error.h"

#define PROFILES_DEFAULT "default"

/* First start: create "default" with devices
 * {"root": {"type": "disk", "path": "/", "pool": "default"}}.  Call after
 * pools_init (the root device names the default pool). */
int profiles_init(cell_error *err);

/* Profiles in order, then the instance's own config/devices win.  New
 * references (deep copies: the caller may change them).  `profile_names` is
 * a JSON array of strings (NULL: none); config/devices may be NULL.  404
 * naming a missing profile. [any thread] */
int profiles_expand(json_t *profile_names, json_t *config, json_t *devices, json_t **exp_config,
		    json_t **exp_devices, cell_error *err);
/* The same over profile objects ({"config": {...}, "devices": {...}}) the
 * caller already holds; no database. [any thread] */
int profiles_expand_objs(json_t *profiles, json_t *config, json_t *devices, json_t **exp_config,
			 json_t **exp_devices, cell_error *err);
/* An instance's profile list: an array of strings, no duplicates (400),
 * every profile present (404 naming it). [any thread] */
int profiles_check_exist(json_t *profile_names, cell_error *err);

/* Hooks the instances module registers: check that every instance using
 * `profile` still validates with the profile's new config/devices (refuse
 * the update otherwise, nothing changed), then apply live after the commit.
 * All run on the loop thread.  `check` runs after the new content itself
 * validated and before the write transaction, in which this module also
 * checks that every user's expanded config and devices validate and keep
 * their root disk on the same pool. */
struct profile_hooks {
	int (*check)(const char *profile, json_t *new_config, json_t *new_devices,
		     cell_error *err);
	void (*changed)(const char *profile);   /* loop thread, after commit */
	void (*renamed)(const char *oldname, const char *newname);
};
/* Copied; NULL clears.  Any member may be NULL. */
void profiles_set_hooks(const struct profile_hooks *h);

/* ---- the model behind /1.0/profiles (api_profiles.c) -------------------- */

/* LXD's rules: not empty, no '/', not "." or ".."; no control characters. */
int profiles_check_name(const char *name, cell_error *err);
/* "/1.0/profiles/<name>" with the name percent-encoded (caller frees). */
char *profiles_url(const char *name);
/* The API object {name, description, config, devices, used_by}; 404. */
int profiles_get_json(const char *name, json_t **out, cell_error *err);
/* URLs, or objects when `objects`. */
int profiles_list_json(bool objects, json_t **out, cell_error *err);
/* Config values "" or null are dropped (unset), as LXD stores them.  Config
 * and devices are validated as instance config (inst_lxc_validate) plus
 * LXD's profile rules (no volatile.* or image.* keys, pools must exist). */
int profiles_create(const char *name, const char *description, json_t *config, json_t *devices,
		    cell_error *err);
/* Replace description, config and devices (the caller merges for PATCH).
 * Refused, with nothing changed, when an instance using the profile would
 * no longer validate, would lose its root disk or move it to another pool,
 * or when the check hook says no.  Calls the changed hook after commit. */
int profiles_update(const char *name, const char *description, json_t *config, json_t *devices,
		    cell_error *err);
/* 403 for "default", 409 when `newname` exists.  Snapshots' and images' recorded
 * profile lists follow.  Calls the renamed hook after commit. */
int profiles_rename(const char *oldname, const char *newname, cell_error *err);
/* 403 for "default", 400 "Profile is currently in use" while instances use it. */
int profiles_delete(const char *name, cell_error *err);
/* Names of the profiles with a device on `pool`, sorted (for a pool's
 * used_by and its in-use check). */
int profiles_using_pool(const char *pool, json_t **names, cell_error *err);

#endif
