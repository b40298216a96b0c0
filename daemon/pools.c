/* Storage pools: the table of mounted pools, their database rows, and the
 * create/delete/update/usage work that runs on libuv workers. */
#include "daemon/pools.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <uv.h>

#include "common/cleanup.h"
#include "common/http_client.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/daemon.h"
#include "daemon/db.h"
#include "daemon/profiles.h"
#include "storage/storage.h"

#define OOM(err) cell_err((err), 500, ENOMEM, "out of memory")
/* The btrfs driver mounts with this when btrfs.mount_options is unset. */
#define BTRFS_DEFAULT_MOUNT_OPTIONS "user_subvol_rm_allowed"

/* ---- the table ----------------------------------------------------------- */

enum pool_state {
	POOL_READY,         /* mounted: pools_get hands it out */
	POOL_UNAVAILABLE,   /* in the database but did not mount */
	POOL_CREATING,      /* name reserved while a worker builds it */
	POOL_DELETING,
};

struct pool_entry {
	char *name;
	struct stor_pool *handle;   /* NULL only when even a handle could not be made */
	enum pool_state state;
	bool busy;                  /* a worker job owns the entry (loop thread only) */
};

/* The table is read from any thread (pools_get); only the loop changes it.
 * Never held while calling into the database: the instances module may ask
 * pools_get from inside a transaction. */
static pthread_mutex_t pools_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pool_entry **pools_tab;
static size_t pools_n;
/* Handles of deleted pools: a worker may still hold one from pools_get. */
static struct stor_pool **pools_retired;
static size_t pools_nretired;

static struct pool_entry *entry_find_locked(const char *name)
{
	for (size_t i = 0; i < pools_n; i++)
		if (!strcmp(pools_tab[i]->name, name))
			return pools_tab[i];
	return NULL;
}

/* Loop thread: the entry stays valid until the loop removes it. */
static struct pool_entry *entry_find(const char *name)
{
	struct pool_entry *e;

	pthread_mutex_lock(&pools_mu);
	e = entry_find_locked(name);
	pthread_mutex_unlock(&pools_mu);
	return e;
}

static struct pool_entry *entry_add(const char *name, struct stor_pool *handle,
				    enum pool_state state)
{
	struct pool_entry *e = calloc(1, sizeof(*e)), **tab;

	if (!e || !(e->name = strdup(name))) {
		free(e);
		return NULL;
	}
	e->handle = handle;
	e->state = state;
	pthread_mutex_lock(&pools_mu);
	tab = realloc(pools_tab, (pools_n + 1) * sizeof(*tab));
	if (tab) {
		pools_tab = tab;
		pools_tab[pools_n++] = e;
	}
	pthread_mutex_unlock(&pools_mu);
	if (!tab) {
		free(e->name);
		free(e);
		return NULL;
	}
	return e;
}

static void retire_handle(struct stor_pool *p)
{
	struct stor_pool **r;

	if (!p)
		return;
	r = realloc(pools_retired, (pools_nretired + 1) * sizeof(*r));
	if (!r) {
		/* Leaking beats freeing under a worker that may still use it. */
		log_warn("storage pools: out of memory retiring a handle");
		return;
	}
	pools_retired = r;
	pools_retired[pools_nretired++] = p;
}

/* Remove and free the entry; its handle is retired (under the lock, so no
 * pools_get can be halfway through returning it). */
static void entry_remove(struct pool_entry *e)
{
	pthread_mutex_lock(&pools_mu);
	for (size_t i = 0; i < pools_n; i++) {
		if (pools_tab[i] != e)
			continue;
		memmove(&pools_tab[i], &pools_tab[i + 1], (pools_n - i - 1) * sizeof(*pools_tab));
		pools_n--;
		break;
	}
	retire_handle(e->handle);
	pthread_mutex_unlock(&pools_mu);
	free(e->name);
	free(e);
}

static void entry_set(struct pool_entry *e, enum pool_state state, struct stor_pool *handle)
{
	pthread_mutex_lock(&pools_mu);
	e->state = state;
	e->handle = handle;
	pthread_mutex_unlock(&pools_mu);
}

struct stor_pool *pools_get(const char *name)
{
	struct stor_pool *p = NULL;
	struct pool_entry *e;

	if (!name)
		return NULL;
	pthread_mutex_lock(&pools_mu);
	e = entry_find_locked(name);
	if (e && e->state == POOL_READY)
		p = e->handle;
	pthread_mutex_unlock(&pools_mu);
	return p;
}

static bool state_visible(enum pool_state s)
{
	return s == POOL_READY || s == POOL_UNAVAILABLE;
}

bool pools_exists(const char *name)
{
	struct pool_entry *e;
	bool found;

	if (!name)
		return false;
	pthread_mutex_lock(&pools_mu);
	e = entry_find_locked(name);
	found = e && state_visible(e->state);
	pthread_mutex_unlock(&pools_mu);
	return found;
}

/* Visible pool names, sorted. */
static json_t *visible_names(void)
{
	json_t *names = json_array();

	pthread_mutex_lock(&pools_mu);
	for (size_t i = 0; names && i < pools_n; i++) {
		size_t at = json_array_size(names);
		if (!state_visible(pools_tab[i]->state))
			continue;
		while (at > 0 && strcmp(json_string_value(json_array_get(names, at - 1)),
					pools_tab[i]->name) > 0)
			at--;
		json_array_insert_new(names, at, json_string(pools_tab[i]->name));
	}
	pthread_mutex_unlock(&pools_mu);
	return names;
}

void pools_shutdown(void)
{
	pthread_mutex_lock(&pools_mu);
	for (size_t i = 0; i < pools_n; i++) {
		stor_pool_free(pools_tab[i]->handle);
		free(pools_tab[i]->name);
		free(pools_tab[i]);
	}
	for (size_t i = 0; i < pools_nretired; i++)
		stor_pool_free(pools_retired[i]);
	free(pools_tab);
	free(pools_retired);
	pools_tab = NULL;
	pools_retired = NULL;
	pools_n = pools_nretired = 0;
	pthread_mutex_unlock(&pools_mu);
}

/* ---- database rows -------------------------------------------------------- */

struct pool_row {
	char *name, *driver, *description, *state;
	json_t *config;
};

static void pool_row_clear(struct pool_row *r)
{
	free(r->name);
	free(r->driver);
	free(r->description);
	free(r->state);
	json_decref(r->config);
	memset(r, 0, sizeof(*r));
}

static int pool_from_row(sqlite3_stmt *st, struct pool_row *r, cell_error *err)
{
	memset(r, 0, sizeof(*r));
	r->name = db_col_strdup(st, 0);
	r->driver = db_col_strdup(st, 1);
	r->description = db_col_strdup(st, 2);
	r->config = json_loads(db_col_text(st, 3), 0, NULL);
	r->state = db_col_strdup(st, 4);
	if (!r->name || !r->driver || !r->description || !r->state) {
		pool_row_clear(r);
		return OOM(err);
	}
	if (!json_is_object(r->config)) {
		int rc = cell_err(err, 500, EIO, "storage pool %s: corrupt config in the database",
				  r->name);
		pool_row_clear(r);
		return rc;
	}
	return 0;
}

#define POOL_COLUMNS "name, driver, description, config, state"

static int pool_load(const char *name, struct pool_row *r, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc = db_stmt(&st, err, "SELECT " POOL_COLUMNS " FROM storage_pools WHERE name = ?", "s",
			 name);

	if (rc < 0 || (rc = db_step(st, err)) < 0)
		return rc;
	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Storage pool not found");
	return pool_from_row(st, r, err);
}

static int db_pool_state(const char *name, const char *state, cell_error *err)
{
	int rc = db_exec(err, "UPDATE storage_pools SET state = ? WHERE name = ?", "ss", state, name);
	return rc < 0 ? rc : 0;
}

static int db_pool_drop(const char *name, cell_error *err)
{
	int rc = db_exec(err, "DELETE FROM storage_pools WHERE name = ?", "s", name);
	return rc < 0 ? rc : 0;
}

static int db_pool_created(const char *name, json_t *config, cell_error *err)
{
	_cleanup_free_ char *text = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS);
	int rc;

	if (!text)
		return OOM(err);
	rc = db_exec(err, "UPDATE storage_pools SET config = ?, state = 'Created' WHERE name = ?", "ss",
		     text, name);
	return rc < 0 ? rc : 0;
}

/* ---- users ---------------------------------------------------------------- */

static int append_url(json_t *urls, const char *fmt, const char *name, cell_error *err)
{
	_cleanup_free_ char *esc = httpc_escape(name);
	_cleanup_free_ char *url = esc ? xasprintf(fmt, esc) : NULL;

	return url && json_array_append_new(urls, json_string(url)) == 0 ? 0 : OOM(err);
}

/* Instances on the pool, then profiles with a device on it (LXD's used_by,
 * without image caches, which do not keep a pool in use). */
static int pool_used_by(const char *name, json_t **out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_json_ json_t *urls = json_array(), *profiles = NULL;
	json_t *p;
	size_t i;
	int rc;

	if (!urls)
		return OOM(err);
	rc = db_stmt(&st, err, "SELECT name FROM instances WHERE pool = ? ORDER BY name", "s", name);
	while (rc == 0 && (rc = db_step(st, err)) == 1)
		rc = append_url(urls, "/1.0/instances/%s", db_col_text(st, 0), err);
	db_finalize(steal_ptr(st));
	if (rc < 0 || (rc = profiles_using_pool(name, &profiles, err)) < 0)
		return rc;
	json_array_foreach(profiles, i, p)
		if ((rc = append_url(urls, "/1.0/profiles/%s", json_string_value(p), err)) < 0)
			return rc;
	*out = steal_ptr(urls);
	return 0;
}

/* ---- API objects ------------------------------------------------------------ */

char *pools_url(const char *name)
{
	_cleanup_free_ char *esc = httpc_escape(name);
	return esc ? xasprintf("/1.0/storage-pools/%s", esc) : NULL;
}

/* The entry's state if the API may see it: 404 otherwise. */
static int visible_state(const char *name, enum pool_state *state, cell_error *err)
{
	struct pool_entry *e;
	int rc = 0;

	pthread_mutex_lock(&pools_mu);
	e = entry_find_locked(name);
	if (e && state_visible(e->state))
		*state = e->state;
	else
		rc = cell_err(err, 404, ENOENT, "Storage pool not found");
	pthread_mutex_unlock(&pools_mu);
	return rc;
}

int pools_get_json(const char *name, json_t **out, cell_error *err)
{
	_cleanup_json_ json_t *used_by = NULL;
	enum pool_state state = POOL_UNAVAILABLE;
	struct pool_row r;
	int rc = visible_state(name, &state, err);

	if (rc < 0 || (rc = pool_load(name, &r, err)) < 0)
		return rc;
	rc = pool_used_by(name, &used_by, err);
	if (rc == 0) {
		*out = json_pack("{s:s, s:s, s:s, s:O, s:s, s:[s], s:O}", "name", r.name,
				 "description", r.description, "driver", r.driver, "config", r.config,
				 "status", state == POOL_READY ? "Created" : "Unavailable",
				 "locations", "none", "used_by", used_by);
		rc = *out ? 0 : OOM(err);
	}
	pool_row_clear(&r);
	return rc;
}

static json_t *etag_of(const struct pool_row *r)
{
	return json_pack("[s, s, s, O]", r->name, r->driver, r->description, r->config);
}

int pools_etag_json(const char *name, json_t **out, cell_error *err)
{
	enum pool_state state = POOL_UNAVAILABLE;
	struct pool_row r;
	int rc = visible_state(name, &state, err);

	if (rc < 0 || (rc = pool_load(name, &r, err)) < 0)
		return rc;
	*out = etag_of(&r);
	pool_row_clear(&r);
	return *out ? 0 : OOM(err);
}

int pools_list_json(bool objects, json_t **out, cell_error *err)
{
	_cleanup_json_ json_t *names = visible_names(), *list = json_array();
	json_t *n;
	size_t i;

	if (!names || !list)
		return OOM(err);
	json_array_foreach(names, i, n) {
		json_t *item = NULL;
		char *url;
		int rc;
		if (objects) {
			rc = pools_get_json(json_string_value(n), &item, err);
			if (rc == -ENOENT)   /* deleted since the table was read */
				continue;
			if (rc < 0)
				return rc;
		} else {
			url = pools_url(json_string_value(n));
			item = url ? json_string(url) : NULL;
			free(url);
		}
		if (!item || json_array_append_new(list, item) < 0)
			return OOM(err);
	}
	*out = steal_ptr(list);
	return 0;
}

/* ---- config validation ---------------------------------------------------- */

enum { DRV_DIR = 1, DRV_BTRFS = 2, DRV_ZFS = 4, DRV_ALL = 7 };
enum key_kind { KEY_SOURCE, KEY_SIZE, KEY_BOOL, KEY_MOUNT_OPTS, KEY_ZPOOL };

struct pool_key {
	const char *name;
	unsigned drivers;
	enum key_kind kind;
	bool changeable;   /* after creation (LXD's Update accepts it) */
};

/* LXD's pool keys for the drivers we have.  Keys the drivers fill in at
 * create (source, size, zfs.pool_name) describe the storage itself and are
 * fixed afterwards. */
static const struct pool_key pool_keys[] = {
	{ "source", DRV_ALL, KEY_SOURCE, false },
	{ "size", DRV_BTRFS | DRV_ZFS, KEY_SIZE, false },
	{ "btrfs.mount_options", DRV_BTRFS, KEY_MOUNT_OPTS, true },
	{ "zfs.pool_name", DRV_ZFS, KEY_ZPOOL, false },
	{ "rsync.bwlimit", DRV_ALL, KEY_SIZE, true },
	{ "rsync.compression", DRV_ALL, KEY_BOOL, true },
};

static unsigned driver_bit(const char *driver)
{
	if (!strcmp(driver, "dir"))
		return DRV_DIR;
	if (!strcmp(driver, "btrfs"))
		return DRV_BTRFS;
	return !strcmp(driver, "zfs") ? DRV_ZFS : 0;
}

static const struct pool_key *key_lookup(const char *key)
{
	for (size_t i = 0; i < ARRAY_SIZE(pool_keys); i++)
		if (!strcmp(pool_keys[i].name, key))
			return &pool_keys[i];
	return NULL;
}

static bool bool_valid(const char *v)
{
	static const char *const ok[] = { "true", "false", "1", "0", "yes", "no", "on", "off" };
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
		if (!strcasecmp(v, ok[i]))
			return true;
	return false;
}

static bool chars_in(const char *v, const char *extra)
{
	for (; *v; v++)
		if (!isascii((unsigned char)*v) || (!isalnum((unsigned char)*v) && !strchr(extra, *v)))
			return false;
	return true;
}

static bool source_valid(const char *driver, const char *v)
{
	/* zfs also takes an existing zpool or dataset by name. */
	if (v[0] != '/')
		return !strcmp(driver, "zfs") && isalpha((unsigned char)v[0]) && chars_in(v, "-_.:/");
	for (const char *c = v; *c; c++)
		if (iscntrl((unsigned char)*c))
			return false;
	return true;
}

static bool value_valid(const struct pool_key *k, const char *driver, const char *v)
{
	uint64_t n;

	switch (k->kind) {
	case KEY_SOURCE: return source_valid(driver, v);
	case KEY_SIZE: return stor_parse_size(v, &n) == 0 && n > 0;
	case KEY_BOOL: return bool_valid(v);
	case KEY_MOUNT_OPTS: return chars_in(v, "-_=,.:/+");
	case KEY_ZPOOL: return isalpha((unsigned char)v[0]) && chars_in(v, "-_.:");
	}
	return false;
}

static int check_key(const char *driver, const char *key, json_t *val, cell_error *err)
{
	const char *v = json_string_value(val);
	const struct pool_key *k;

	if (!v || strlen(v) != json_string_length(val))
		return cell_err(err, 400, EINVAL, "Storage pool config \"%s\": values must be strings",
				key);
	if (str_has_prefix(key, "user."))
		return 0;
	k = key_lookup(key);
	if (!k || !(k->drivers & driver_bit(driver)))
		return cell_err(err, 400, EINVAL,
				"Invalid storage pool config key \"%s\" for driver \"%s\"", key, driver);
	if (!value_valid(k, driver, v))
		return cell_err(err, 400, EINVAL, "Invalid value \"%s\" for storage pool config \"%s\"",
				v, key);
	return 0;
}

static int check_config(const char *driver, json_t *config, cell_error *err)
{
	const char *key;
	json_t *val;

	json_object_foreach(config, key, val)
		if (check_key(driver, key, val, err) < 0)
			return -EINVAL;
	return 0;
}

/* Copy of `base` (may be NULL) with `over`'s keys applied: "" or null
 * unsets.  400 when `over` is not an object. */
static int config_merge(json_t *base, json_t *over, json_t **out, cell_error *err)
{
	_cleanup_json_ json_t *c = base ? json_deep_copy(base) : json_object();
	const char *key;
	json_t *val;

	if (!c)
		return OOM(err);
	if (over && !json_is_null(over) && !json_is_object(over))
		return cell_err(err, 400, EINVAL, "config must be an object");
	json_object_foreach(json_is_object(over) ? over : NULL, key, val) {
		int rc = (json_is_null(val) || (json_is_string(val) && !*json_string_value(val)))
				 ? (json_object_del(c, key), 0)
				 : json_object_set(c, key, val);
		if (rc < 0)
			return OOM(err);
	}
	*out = steal_ptr(c);
	return 0;
}

static int check_name(const char *name, cell_error *err)
{
	if (!name || !*name)
		return cell_err(err, 400, EINVAL, "No name provided");
	if (strchr(name, '/'))
		return cell_err(err, 400, EINVAL, "Storage pool names may not contain slashes");
	/* Stricter than LXD: the name is also a directory, a loop file and
	 * a zpool name. */
	if (!stor_valid_pool_name(name))
		return cell_err(err, 400, EINVAL,
				"Invalid storage pool name \"%s\": use up to 63 letters, digits, "
				"'-', '_' or '.', not starting with '-' or '.'", name);
	return 0;
}

static int check_driver(const char *driver, cell_error *err)
{
	const char *why = NULL;

	if (!driver || !*driver)
		return cell_err(err, 400, EINVAL, "No driver provided");
	if (!stor_driver(driver))
		return cell_err(err, 400, EINVAL, "Storage driver \"%s\" is not supported", driver);
	if (!stor_driver_available(driver, &why))
		return cell_err(err, 400, ENOTSUP, "Storage driver \"%s\" is not available: %s", driver,
				why ? why : "unknown reason");
	return 0;
}

/* ---- worker jobs -------------------------------------------------------------- */

struct pool_job {
	uv_work_t work;
	int (*run)(struct pool_job *j, cell_error *err);   /* worker */
	void (*finish)(struct pool_job *j);                /* loop, before the callback */
	struct pool_entry *entry;
	struct stor_pool *handle;
	char *name, *driver, *description;
	json_t *config;
	bool remount;       /* update: apply btrfs.mount_options now */
	bool unavailable;   /* delete: the pool never mounted */
	uint64_t used, total, iused, itotal;
	int rc;
	cell_error err;
	pools_done_fn done;
	pools_resources_fn res_done;
	void *data;
};

static void job_free(struct pool_job *j)
{
	free(j->name);
	free(j->driver);
	free(j->description);
	json_decref(j->config);
	free(j);
}

static void job_work(uv_work_t *w)
{
	struct pool_job *j = w->data;
	j->rc = j->run(j, &j->err);
}

static void job_after(uv_work_t *w, int status)
{
	struct pool_job *j = w->data;

	if (status < 0 && j->rc == 0)   /* cancelled before it ran */
		j->rc = cell_err(&j->err, 500, ECANCELED, "storage pool operation cancelled");
	if (j->finish)
		j->finish(j);
	if (j->done)
		j->done(j->rc, &j->err, j->data);
	job_free(j);
}

static struct pool_job *job_new(const char *name, int (*run)(struct pool_job *, cell_error *),
				void (*finish)(struct pool_job *), cell_error *err)
{
	struct pool_job *j = calloc(1, sizeof(*j));

	if (!j || !(j->name = strdup(name))) {
		free(j);
		OOM(err);
		return NULL;
	}
	j->run = run;
	j->finish = finish;
	j->work.data = j;
	return j;
}

static int job_queue(struct pool_job *j, cell_error *err)
{
	if (uv_queue_work(celld->loop, &j->work, job_work, job_after) < 0)
		return cell_err(err, 500, EAGAIN, "cannot queue the storage pool operation");
	return 0;
}

/* ---- create ------------------------------------------------------------------- */

/* Build the pool on disk, then record it 'Created' with the config the
 * driver filled in; undo the disk part if the database refuses. [worker] */
static int create_on_disk(const char *name, const char *driver, json_t *config,
			  struct stor_pool **out, cell_error *err)
{
	_cleanup_stor_pool_ struct stor_pool *p = NULL;
	cell_error e2;
	int rc = stor_pool_new(celld->dir, name, driver, config, &p, err);

	if (rc == 0)
		rc = stor_pool_create(p, err);
	if (rc < 0)
		return cell_err_wrap(err, rc, "Failed to create storage pool \"%s\"", name);
	rc = db_pool_created(name, p->config, err);
	if (rc < 0) {
		if (stor_pool_delete(p, &e2) < 0)
			log_error("storage pool %s: undo after a database error: %s", name, e2.msg);
		return rc;
	}
	*out = steal_ptr(p);
	return 0;
}

static int job_create_run(struct pool_job *j, cell_error *err)
{
	cell_error e2;
	int rc = create_on_disk(j->name, j->driver, j->config, &j->handle, err);

	/* The 'Pending' row goes; were this to fail, start-up removes it. */
	if (rc < 0 && db_pool_drop(j->name, &e2) < 0)
		log_error("storage pool %s: %s", j->name, e2.msg);
	return rc;
}

static void job_create_finish(struct pool_job *j)
{
	if (j->rc < 0) {
		entry_remove(j->entry);
		return;
	}
	entry_set(j->entry, POOL_READY, j->handle);
	j->entry->busy = false;
	log_info("storage pool %s: created (%s)", j->name, j->driver);
}

static int create_check(const char *name, const char *driver, const char *description,
			json_t *config, json_t **cfg_out, cell_error *err)
{
	int rc;

	if ((rc = check_name(name, err)) < 0 || (rc = check_driver(driver, err)) < 0)
		return rc;
	if (!description)
		return cell_err(err, 400, EINVAL, "description must be a string");
	if ((rc = config_merge(NULL, config, cfg_out, err)) < 0)
		return rc;
	if ((rc = check_config(driver, *cfg_out, err)) < 0) {
		json_decref(steal_ptr(*cfg_out));
		return rc;
	}
	if (entry_find(name))
		rc = cell_err(err, 409, EEXIST, "Storage pool \"%s\" already exists", name);
	if (rc < 0)
		json_decref(steal_ptr(*cfg_out));
	return rc;
}

static int db_pool_pending(const char *name, const char *driver, const char *description,
			   json_t *config, cell_error *err)
{
	_cleanup_free_ char *text = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS);
	int rc;

	if (!text)
		return OOM(err);
	rc = db_exec(err, "INSERT INTO storage_pools (name, driver, description, config, state)"
			  " VALUES (?, ?, ?, ?, 'Pending')",
		     "ssss", name, driver, description, text);
	if (rc < 0 && err->status == 409)
		return cell_err(err, 409, EEXIST, "Storage pool \"%s\" already exists", name);
	return rc < 0 ? rc : 0;
}

int pools_create(const char *name, const char *driver, const char *description, json_t *config,
		 pools_done_fn done, void *data, cell_error *err)
{
	_cleanup_json_ json_t *cfg = NULL;
	struct pool_job *j;
	cell_error e2;
	int rc = create_check(name, driver, description, config, &cfg, err);

	if (rc < 0)
		return rc;
	if (!(j = job_new(name, job_create_run, job_create_finish, err)))
		return -ENOMEM;
	j->driver = strdup(driver);
	j->description = strdup(description);
	j->config = steal_ptr(cfg);
	j->done = done;
	j->data = data;
	if (!j->driver || !j->description)
		rc = OOM(err);
	if (rc == 0 && (rc = db_pool_pending(name, driver, description, j->config, err)) == 0) {
		j->entry = entry_add(name, NULL, POOL_CREATING);
		rc = j->entry ? job_queue(j, err) : OOM(err);
		if (rc < 0) {
			db_pool_drop(name, &e2);
			if (j->entry)
				entry_remove(j->entry);
		}
	}
	if (rc < 0) {
		job_free(j);
		return rc;
	}
	j->entry->busy = true;
	return 0;
}

/* ---- delete -------------------------------------------------------------------- */

static int pool_in_use(const char *name, cell_error *err)
{
	_cleanup_json_ json_t *users = NULL;
	int rc = pool_used_by(name, &users, err);

	if (rc < 0)
		return rc;
	if (json_array_size(users))
		return cell_err(err, 400, EBUSY, "The storage pool is currently in use");
	return 0;
}

static int delete_mark_tx(void *data, cell_error *err)
{
	const char *name = data;
	int rc = pool_in_use(name, err);

	if (rc < 0)
		return rc;
	rc = db_exec(err, "UPDATE storage_pools SET state = 'Deleting' WHERE name = ?", "s", name);
	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Storage pool not found");
	return rc < 0 ? rc : 0;
}

/* What may be left of a pool whose create or delete was interrupted: the
 * driver's delete when it can, else unmount, the pool dir and our own loop
 * file.  Best effort. [worker or start-up] */
static void discard_leftovers(struct stor_pool *p, bool made_loop)
{
	_cleanup_free_ char *disk = xasprintf("%s/disks/%s.img", p->cell_dir, p->name);
	cell_error e2;

	if (stor_pool_delete(p, &e2) == 0)
		return;
	log_warn("storage pool %s: %s; removing what is left", p->name, e2.msg);
	stor_pool_unmount(p, &e2);
	if (stor_remove_tree(p->path, &e2) < 0)
		log_warn("storage pool %s: %s", p->name, e2.msg);
	if (made_loop && disk && unlink(disk) < 0 && errno != ENOENT)
		log_warn("storage pool %s: remove %s: %m", p->name, disk);
}

static bool uses_own_loop(const struct stor_pool *p)
{
	_cleanup_free_ char *disk = xasprintf("%s/disks/%s.img", p->cell_dir, p->name);
	const char *src = stor_pool_config(p, "source");
	return disk && src && !strcmp(src, disk);
}

static int job_delete_run(struct pool_job *j, cell_error *err)
{
	struct stor_pool *p = j->entry->handle;
	cell_error e2;
	int rc;

	if (!p)
		return db_pool_drop(j->name, err);
	rc = stor_pool_delete(p, err);
	if (rc < 0 && j->unavailable) {
		/* It never mounted: what the driver cannot reach is gone
		 * anyway; clear our part so the name can be used again. */
		discard_leftovers(p, uses_own_loop(p));
		rc = 0;
	}
	if (rc < 0) {
		if (db_pool_state(j->name, "Created", &e2) < 0)
			log_error("storage pool %s: %s", j->name, e2.msg);
		return cell_err_wrap(err, rc, "Failed to delete storage pool \"%s\"", j->name);
	}
	return db_pool_drop(j->name, err);
}

static void job_delete_finish(struct pool_job *j)
{
	if (j->rc == 0) {
		log_info("storage pool %s: deleted", j->name);
		entry_remove(j->entry);
		return;
	}
	entry_set(j->entry, j->unavailable ? POOL_UNAVAILABLE : POOL_READY, j->entry->handle);
	j->entry->busy = false;
}

/* The entry the API may act on: 404 unknown, 409 while a job owns it. */
static int entry_for_change(const char *name, struct pool_entry **out, cell_error *err)
{
	struct pool_entry *e = entry_find(name);

	if (!e || !state_visible(e->state))
		return cell_err(err, 404, ENOENT, "Storage pool not found");
	if (e->busy)
		return cell_err(err, 409, EBUSY, "Storage pool \"%s\" is busy", name);
	*out = e;
	return 0;
}

int pools_delete(const char *name, pools_done_fn done, void *data, cell_error *err)
{
	struct pool_entry *e;
	struct pool_job *j;
	cell_error e2;
	int rc = entry_for_change(name, &e, err);

	if (rc < 0)
		return rc;
	if (!(j = job_new(name, job_delete_run, job_delete_finish, err)))
		return -ENOMEM;
	j->entry = e;
	j->done = done;
	j->data = data;
	j->unavailable = e->state == POOL_UNAVAILABLE;
	rc = db_tx(delete_mark_tx, (void *)name, err);
	if (rc == 0) {
		entry_set(e, POOL_DELETING, e->handle);
		if ((rc = job_queue(j, err)) < 0) {
			entry_set(e, j->unavailable ? POOL_UNAVAILABLE : POOL_READY, e->handle);
			db_pool_state(name, "Created", &e2);
		}
	}
	if (rc < 0) {
		job_free(j);
		return rc;
	}
	e->busy = true;
	return 0;
}

/* ---- update -------------------------------------------------------------------- */

static int check_fixed_keys(json_t *cur, json_t *next, cell_error *err)
{
	for (size_t i = 0; i < ARRAY_SIZE(pool_keys); i++) {
		const char *k = pool_keys[i].name;
		json_t *a = json_object_get(cur, k), *b = json_object_get(next, k);
		if (pool_keys[i].changeable || (!a && !b) || (a && b && json_equal(a, b)))
			continue;
		return cell_err(err, 400, EINVAL,
				"Storage pool config \"%s\" cannot be changed once the pool exists", k);
	}
	return 0;
}

static const char *mount_options(json_t *config)
{
	const char *v = json_string_value(json_object_get(config, "btrfs.mount_options"));
	return v && *v ? v : BTRFS_DEFAULT_MOUNT_OPTIONS;
}

/* Applied before it is recorded: a remount the kernel refuses leaves the
 * pool and its row as they were. */
static int remount(struct stor_pool *p, json_t *config, cell_error *err)
{
	const char *src = stor_pool_config(p, "source");
	struct stat st;

	/* On a directory of a host btrfs the pool is a bind mount: a remount
	 * would change the host filesystem's options. */
	if (!src || stat(src, &st) < 0 || S_ISDIR(st.st_mode))
		return cell_err(err, 400, EINVAL,
				"btrfs.mount_options applies only to pools on their own device or loop file");
	if (mount(NULL, p->path, NULL, MS_REMOUNT, mount_options(config)) < 0)
		return cell_err_sys(err, errno == EINVAL ? 400 : 500, errno,
				    "Failed to apply btrfs.mount_options \"%s\"", mount_options(config));
	return 0;
}

static int job_update_run(struct pool_job *j, cell_error *err)
{
	_cleanup_free_ char *text = json_dumps(j->config, JSON_COMPACT | JSON_SORT_KEYS);
	struct stor_pool *p = j->entry->handle;
	int rc;

	if (!text)
		return OOM(err);
	if (j->remount && (rc = remount(p, j->config, err)) < 0)
		return rc;
	rc = db_exec(err, "UPDATE storage_pools SET description = ?, config = ? WHERE name = ?",
		     "sss", j->description, text, j->name);
	return rc < 0 ? rc : 0;
}

static void job_update_finish(struct pool_job *j)
{
	j->entry->busy = false;
	if (j->rc == 0)
		log_info("storage pool %s: updated", j->name);
}

/* The new description and config as the request makes them. */
static int update_compute(const struct pool_row *r, const char *description, json_t *config,
			  bool patch, struct pool_job *j, cell_error *err)
{
	_cleanup_json_ json_t *next = NULL;
	int rc = config_merge(patch ? r->config : NULL, config, &next, err);

	if (rc < 0 || (rc = check_config(r->driver, next, err)) < 0 ||
	    (rc = check_fixed_keys(r->config, next, err)) < 0)
		return rc;
	j->description = strdup(description ? description : patch ? r->description : "");
	if (!j->description)
		return OOM(err);
	j->config = steal_ptr(next);
	return 0;
}

int pools_update(const char *name, const char *description, json_t *config, bool patch,
		 pools_done_fn done, void *data, cell_error *err)
{
	struct pool_entry *e;
	struct pool_job *j;
	struct pool_row r;
	int rc = entry_for_change(name, &e, err);

	if (rc < 0 || (rc = pool_load(name, &r, err)) < 0)
		return rc;
	if (!(j = job_new(name, job_update_run, job_update_finish, err))) {
		pool_row_clear(&r);
		return -ENOMEM;
	}
	j->entry = e;
	j->done = done;
	j->data = data;
	rc = update_compute(&r, description, config, patch, j, err);
	if (rc == 0)
		j->remount = e->state == POOL_READY && !strcmp(r.driver, "btrfs") &&
			     strcmp(mount_options(r.config), mount_options(j->config));
	pool_row_clear(&r);
	if (rc == 0)
		rc = job_queue(j, err);
	if (rc < 0) {
		job_free(j);
		return rc;
	}
	e->busy = true;
	return 0;
}

/* ---- resources ----------------------------------------------------------------- */

static int job_usage_run(struct pool_job *j, cell_error *err)
{
	struct statvfs sv;
	int rc = stor_pool_usage(j->handle, &j->used, &j->total, err);

	if (rc < 0)
		return rc;
	/* Inodes as LXD reports them: the filesystem's counts (btrfs and zfs
	 * allocate inodes on demand and report 0). */
	if (statvfs(j->handle->path, &sv) == 0) {
		j->itotal = sv.f_files;
		j->iused = sv.f_files - sv.f_ffree;
	}
	return 0;
}

static void job_usage_finish(struct pool_job *j)
{
	json_t *res = NULL;

	if (j->rc == 0) {
		res = json_pack("{s:{s:I, s:I}, s:{s:I, s:I}}", "space", "used", (json_int_t)j->used,
				"total", (json_int_t)j->total, "inodes", "used", (json_int_t)j->iused,
				"total", (json_int_t)j->itotal);
		if (!res)
			j->rc = OOM(&j->err);
	}
	j->res_done(j->rc, &j->err, res, j->data);
}

int pools_resources(const char *name, pools_resources_fn done, void *data, cell_error *err)
{
	struct pool_entry *e = entry_find(name);
	struct pool_job *j;
	int rc;

	if (!e || !state_visible(e->state))
		return cell_err(err, 404, ENOENT, "Storage pool not found");
	if (e->state != POOL_READY || !e->handle)
		return cell_err(err, 503, EIO, "Storage pool \"%s\" is unavailable", name);
	if (!(j = job_new(name, job_usage_run, job_usage_finish, err)))
		return -ENOMEM;
	/* Handles outlive deletion (retired), so the job needs no entry. */
	j->handle = e->handle;
	j->res_done = done;
	j->data = data;
	rc = job_queue(j, err);
	if (rc < 0)
		job_free(j);
	return rc;
}

/* ---- start-up ------------------------------------------------------------------ */

/* A 'Pending' row: the create never finished.  The stored config is the
 * request's, so fill in what the driver would have for its own loop file. */
static void startup_undo_create(const struct pool_row *r)
{
	_cleanup_json_ json_t *cfg = json_deep_copy(r->config);
	_cleanup_free_ char *disk = xasprintf("%s/disks/%s.img", celld->dir, r->name);
	bool made_loop = strcmp(r->driver, "dir") && !json_object_get(r->config, "source");
	_cleanup_stor_pool_ struct stor_pool *p = NULL;
	cell_error e2;

	log_warn("storage pool %s: its creation was interrupted; removing it", r->name);
	if (!cfg || !disk)
		return;
	if (made_loop)
		json_object_set_new(cfg, "source", json_string(disk));
	if (!strcmp(r->driver, "zfs") && !json_object_get(cfg, "zfs.pool_name"))
		json_object_set_new(cfg, "zfs.pool_name", json_string(r->name));
	if (stor_pool_new(celld->dir, r->name, r->driver, cfg, &p, &e2) < 0)
		log_warn("storage pool %s: %s", r->name, e2.msg);
	else
		discard_leftovers(p, made_loop);
}

static int startup_mount(struct stor_pool *p)
{
	cell_error e2;

	if (stor_pool_mount(p, &e2) < 0) {
		log_error("storage pool %s: %s (marked unavailable)", p->name, e2.msg);
		return -EIO;
	}
	if (stor_pool_gc(p, &e2) < 0)
		log_warn("storage pool %s: %s", p->name, e2.msg);
	return 0;
}

static int startup_one(const struct pool_row *r, cell_error *err)
{
	struct stor_pool *p = NULL;
	enum pool_state state = POOL_UNAVAILABLE;
	cell_error e2;

	if (!strcmp(r->state, "Pending")) {
		startup_undo_create(r);
		return db_pool_drop(r->name, err);
	}
	if (stor_pool_new(celld->dir, r->name, r->driver, r->config, &p, &e2) < 0)
		log_error("storage pool %s: %s (marked unavailable)", r->name, e2.msg);
	if (p && !strcmp(r->state, "Deleting")) {
		if (stor_pool_delete(p, &e2) == 0) {
			stor_pool_free(p);
			log_info("storage pool %s: finished an interrupted delete", r->name);
			return db_pool_drop(r->name, err);
		}
		log_error("storage pool %s: finishing its delete: %s", r->name, e2.msg);
	}
	if (strcmp(r->state, "Created") && db_pool_state(r->name, "Created", err) < 0) {
		stor_pool_free(p);
		return -EIO;
	}
	if (p && startup_mount(p) == 0)
		state = POOL_READY;
	if (!entry_add(r->name, p, state)) {
		stor_pool_free(p);
		return OOM(err);
	}
	return 0;
}

static int startup_rows(struct pool_row **out, size_t *n, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct pool_row *rows = NULL, *nr;
	int rc = db_stmt(&st, err, "SELECT " POOL_COLUMNS " FROM storage_pools ORDER BY id", NULL);

	*n = 0;
	while (rc == 0 && (rc = db_step(st, err)) == 1) {
		if (!(nr = realloc(rows, (*n + 1) * sizeof(*rows)))) {
			rc = OOM(err);
			break;
		}
		rows = nr;
		if ((rc = pool_from_row(st, &rows[*n], err)) == 0)
			(*n)++;
	}
	if (rc < 0) {
		for (size_t i = 0; i < *n; i++)
			pool_row_clear(&rows[i]);
		free(rows);
		return rc;
	}
	*out = rows;
	return 0;
}

/* First start: the default pool is a dir pool under the state dir. */
static int startup_default(cell_error *err)
{
	_cleanup_json_ json_t *cfg = json_object();
	struct stor_pool *p = NULL;
	int64_t n = 0;
	int rc = db_query_int(&n, err, "SELECT (SELECT COUNT(*) FROM profiles) +"
				       " (SELECT COUNT(*) FROM storage_pools)", NULL);

	if (rc < 0 || n > 0)
		return rc < 0 ? rc : 0;
	if (!cfg)
		return OOM(err);
	if ((rc = db_pool_pending("default", "dir", "", cfg, err)) < 0)
		return rc;
	rc = create_on_disk("default", "dir", cfg, &p, err);
	if (rc < 0) {
		cell_error e2;
		db_pool_drop("default", &e2);
		return rc;
	}
	if (!entry_add("default", p, POOL_READY)) {
		stor_pool_free(p);
		return OOM(err);
	}
	log_info("storage pool default: created (dir)");
	return 0;
}

int pools_init(cell_error *err)
{
	struct pool_row *rows = NULL;
	size_t n = 0;
	int rc = startup_rows(&rows, &n, err);

	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = startup_one(&rows[i], err);
	for (size_t i = 0; i < n; i++)
		pool_row_clear(&rows[i]);
	free(rows);
	if (rc == 0)
		rc = startup_default(err);
	return rc < 0 ? cell_err_wrap(err, rc, "storage pools") : 0;
}
