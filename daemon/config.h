/*
 * The server configuration shown as `config` in GET /1.0 and changed by
 * PUT/PATCH /1.0.  Keys are declared in one schema table in config.c (name,
 * type, default, validator, flags); adding a key is one line there.
 *
 * Values live in the database (table `config`) and in an in-memory copy
 * loaded by config_init() for fast reads.  Only values differing from the
 * default are stored.  Secret keys (core.trust_password) are stored hashed
 * and shown as JSON `true` when set, as LXD does; sending `true` back for a
 * secret key keeps the current value, so GET -> edit -> PUT round-trips.
 *
 * A change is all-or-nothing: every key is validated before anything is
 * written; the database write is one transaction; the memory copy is swapped
 * only after it committed; change callbacks run last.
 *
 * Threads: config_get/config_to_json/changes are loop-thread calls (the
 * loop is the only writer, so borrowed pointers stay valid until the loop
 * next changes the config).  Worker threads use config_get_dup/_int/_bool.
 */
#ifndef CELL_DAEMON_CONFIG_H
#define CELL_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "common/error.h"

#define CONFIG_HTTPS_DEFAULT_PORT 8443

/* Load from the database (db_open first).  Stored keys this build does not
 * know, or values that no longer validate, are dropped with a warning. */
int config_init(cell_error *err);
void config_shutdown(void);

/* Known key (schema or user.*). */
bool config_key_known(const char *key);
/* Current value, else the default ("" when none); NULL for an unknown key.
 * Loop thread; borrowed. */
const char *config_get(const char *key);
/* Same from any thread: malloc'd copy (caller frees); NULL when unknown. */
char *config_get_dup(const char *key);
/* Integer keys; the default when unset.  Any thread. */
int64_t config_get_int(const char *key);
bool config_get_bool(const char *key);

/* What GET /1.0 shows: set keys only, secret keys as `true`. New reference;
 * also the ETag source for PUT/PATCH /1.0. */
json_t *config_to_json(void);

/* PUT: `values` (an object; borrowed) becomes the whole config.  PATCH: keys
 * in `values` are merged, a key set to "" or null is removed.  Errors are 400
 * in LXD's words, "cannot set 'foo' to 'bar': unknown key", sorted by key. */
int config_replace(json_t *values, cell_error *err);
int config_patch(json_t *values, cell_error *err);

/* The same in steps, so the slow password hashing can run on a worker:
 *   config_change_new     loop: validate against the schema
 *   config_change_hash    any thread: hash secrets (slow: scrypt)
 *   config_change_commit  loop: persist, swap, notify
 * A PATCH is applied onto the config as it is at commit time. */
struct config_change;
int config_change_new(json_t *values, bool patch, struct config_change **out, cell_error *err);
bool config_change_needs_hash(const struct config_change *c);
int config_change_hash(struct config_change *c, cell_error *err);
int config_change_commit(struct config_change *c, cell_error *err);
void config_change_free(struct config_change *c);

/* Called on the loop after a committed change, once per key whose effective
 * value changed (value as config_get returns it).  key NULL: every key.
 * Registering the same (key, cb, data) again is a no-op; config_shutdown
 * drops every registration. */
typedef void (*config_change_fn)(const char *key, const char *value, void *data);
int config_on_change(const char *key, config_change_fn cb, void *data);

/* True when a trust password is set and `pw` matches it.  Slow (scrypt):
 * call from a worker.  Any thread. */
bool config_trust_password_check(const char *pw);
bool config_trust_password_set(void);

/* core.https_address parts: host as written ("" for ":port"; "", "::" and
 * "0.0.0.0" are wildcards; IPv6 without brackets) and port (8443 when
 * omitted).  400 when malformed.  Names are checked for syntax only. */
int config_split_address(const char *value, char *host, size_t hostlen, int *port,
			 cell_error *err);

/* ---- api_server.c ------------------------------------------------------- */
/* Registers "/" and "/1.0". */
void api_server_register(void);
/* Compute the static environment once (uname, os-release, liblxc, ...) and
 * hook config changes; call after config_init, before serving. */
int api_server_init(cell_error *err);
/* Drop the cached GET /1.0 answer (something it shows changed). */
void api_server_invalidate(void);

/* extensions.c: NULL-terminated, what GET /1.0 lists in api_extensions. */
extern const char *const cell_api_extensions[];

#endif
