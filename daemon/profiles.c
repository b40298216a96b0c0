/* Profiles: the model behind /1.0/profiles and instance config expansion. */
#include "daemon/profiles.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/http_client.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/db.h"
#include "daemon/inst_lxc.h"
#include "daemon/pools.h"

#define OOM(err) cell_err((err), 500, ENOMEM, "out of memory")

static struct profile_hooks profile_hooks;

void profiles_set_hooks(const struct profile_hooks *h)
{
	if (h)
		profile_hooks = *h;
	else
		memset(&profile_hooks, 0, sizeof(profile_hooks));
}

/* ---- small helpers ------------------------------------------------------ */

static const char *jstr(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* Canonical text for a JSON column: sorted keys so equal objects compare
 * equal in SQL too. */
static char *json_text(json_t *j)
{
	return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
}

char *profiles_url(const char *name)
{
	_cleanup_free_ char *esc = httpc_escape(name);
	return esc ? xasprintf("/1.0/profiles/%s", esc) : NULL;
}

int profiles_check_name(const char *name, cell_error *err)
{
	if (!name || !*name)
		return cell_err(err, 400, EINVAL, "No name provided");
	if (strchr(name, '/'))
		return cell_err(err, 400, EINVAL, "Profile names may not contain slashes");
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return cell_err(err, 400, EINVAL, "Invalid profile name \"%s\"", name);
	/* Names end up in URLs, logs and YAML: no line breaks or escapes. */
	for (const char *c = name; *c; c++)
		if (iscntrl((unsigned char)*c))
			return cell_err(err, 400, EINVAL, "Invalid profile name: control characters");
	return 0;
}

/* ---- rows ----------------------------------------------------------------- */

struct profile_row {
	int64_t id;
	char *name;
	char *description;
	json_t *config;
	json_t *devices;
};

static void profile_row_clear(struct profile_row *p)
{
	free(p->name);
	free(p->description);
	json_decref(p->config);
	json_decref(p->devices);
	memset(p, 0, sizeof(*p));
}

static int col_object(sqlite3_stmt *st, int col, const char *what, json_t **out, cell_error *err)
{
	json_error_t je;
	json_t *j = json_loads(db_col_text(st, col), 0, &je);

	if (!json_is_object(j)) {
		json_decref(j);
		return cell_err(err, 500, EIO, "corrupt %s in the database", what);
	}
	*out = j;
	return 0;
}

static int profile_from_row(sqlite3_stmt *st, struct profile_row *out, cell_error *err)
{
	memset(out, 0, sizeof(*out));
	out->id = sqlite3_column_int64(st, 0);
	out->name = db_col_strdup(st, 1);
	out->description = db_col_strdup(st, 2);
	if (!out->name || !out->description) {
		profile_row_clear(out);
		return OOM(err);
	}
	if (col_object(st, 3, "config", &out->config, err) < 0 ||
	    col_object(st, 4, "devices", &out->devices, err) < 0) {
		int rc = cell_err_wrap(err, -EIO, "profile %s", out->name);
		profile_row_clear(out);
		return rc;
	}
	return 0;
}

/* 404 "Profile not found" (LXD's wording) when absent. */
static int profile_load(const char *name, struct profile_row *out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc = db_stmt(&st, err,
			 "SELECT id, name, description, config, devices FROM profiles WHERE name = ?",
			 "s", name);

	if (rc < 0 || (rc = db_step(st, err)) < 0)
		return rc;
	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Profile not found");
	return profile_from_row(st, out, err);
}

static int profile_exists(const char *name, cell_error *err)
{
	int64_t one;
	return db_query_int(&one, err, "SELECT 1 FROM profiles WHERE name = ?", "s", name);
}

/* Instance URLs using profile `id`, by name. */
static int profile_used_by(int64_t id, json_t **out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_json_ json_t *urls = json_array();
	int rc;

	if (!urls)
		return OOM(err);
	rc = db_stmt(&st, err,
		     "SELECT i.name FROM instances i JOIN instances_profiles ip"
		     " ON ip.instance_id = i.id WHERE ip.profile_id = ? ORDER BY i.name",
		     "i", id);
	while (rc == 0 && (rc = db_step(st, err)) == 1) {
		char *url = xasprintf("/1.0/instances/%s", db_col_text(st, 0));
		if (!url || json_array_append_new(urls, json_string(url)) < 0) {
			free(url);
			return OOM(err);
		}
		free(url);
		rc = 0;
	}
	if (rc < 0)
		return rc;
	*out = steal_ptr(urls);
	return 0;
}

static json_t *profile_to_json(const struct profile_row *p, json_t *used_by)
{
	return json_pack("{s:s, s:s, s:O, s:O, s:o}", "name", p->name, "description",
			 p->description, "config", p->config, "devices", p->devices, "used_by",
			 used_by);
}

int profiles_get_json(const char *name, json_t **out, cell_error *err)
{
	struct profile_row p;
	json_t *used_by = NULL;
	int rc;

	db_lock();   /* row and used_by from one moment */
	rc = profile_load(name, &p, err);
	if (rc == 0 && (rc = profile_used_by(p.id, &used_by, err)) < 0)
		profile_row_clear(&p);
	db_unlock();
	if (rc < 0)
		return rc;
	*out = profile_to_json(&p, used_by);
	profile_row_clear(&p);
	return *out ? 0 : OOM(err);
}

static int profile_names(json_t **out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_json_ json_t *names = json_array();
	int rc;

	if (!names)
		return OOM(err);
	rc = db_stmt(&st, err, "SELECT name FROM profiles ORDER BY name", NULL);
	while (rc == 0 && (rc = db_step(st, err)) == 1)
		rc = json_array_append_new(names, json_string(db_col_text(st, 0))) < 0 ? OOM(err) : 0;
	if (rc < 0)
		return rc;
	*out = steal_ptr(names);
	return 0;
}

int profiles_list_json(bool objects, json_t **out, cell_error *err)
{
	_cleanup_json_ json_t *names = NULL, *list = json_array();
	json_t *name;
	size_t i;
	int rc;

	if (!list)
		return OOM(err);
	db_lock();
	rc = profile_names(&names, err);
	json_array_foreach(rc == 0 ? names : NULL, i, name) {
		json_t *item = NULL;
		if (objects) {
			rc = profiles_get_json(json_string_value(name), &item, err);
		} else {
			char *url = profiles_url(json_string_value(name));
			item = url ? json_string(url) : NULL;
			free(url);
			rc = item ? 0 : OOM(err);
		}
		if (rc == 0 && json_array_append_new(list, item) < 0)
			rc = OOM(err);
		if (rc < 0)
			break;
	}
	db_unlock();
	if (rc < 0)
		return rc;
	*out = steal_ptr(list);
	return 0;
}

/* ---- expansion ------------------------------------------------------------- */

/* Copy src's members over dst's: a device is replaced whole, not merged. */
static int overlay(json_t *dst, json_t *src, const char *what, cell_error *err)
{
	const char *key;
	json_t *val;

	if (!src || json_is_null(src))
		return 0;
	if (!json_is_object(src))
		return cell_err(err, 400, EINVAL, "%s must be an object", what);
	json_object_foreach(src, key, val)
		if (json_object_set_new(dst, key, json_deep_copy(val)) < 0)
			return OOM(err);
	return 0;
}

int profiles_expand_objs(json_t *profiles, json_t *config, json_t *devices, json_t **exp_config,
			 json_t **exp_devices, cell_error *err)
{
	_cleanup_json_ json_t *c = json_object(), *d = json_object();
	json_t *p;
	size_t i;

	if (!c || !d)
		return OOM(err);
	if (profiles && !json_is_array(profiles))
		return cell_err(err, 400, EINVAL, "profiles must be a list");
	json_array_foreach(profiles, i, p) {
		if (overlay(c, json_object_get(p, "config"), "config", err) < 0 ||
		    overlay(d, json_object_get(p, "devices"), "devices", err) < 0)
			return -EINVAL;
	}
	if (overlay(c, config, "config", err) < 0 || overlay(d, devices, "devices", err) < 0)
		return -EINVAL;
	*exp_config = steal_ptr(c);
	*exp_devices = steal_ptr(d);
	return 0;
}

/* {"config", "devices"} of each named profile, in order. */
static int profiles_load_objs(json_t *names, json_t **out, cell_error *err)
{
	_cleanup_json_ json_t *objs = json_array();
	json_t *name;
	size_t i;
	int rc = 0;

	if (!objs)
		return OOM(err);
	if (names && !json_is_null(names) && !json_is_array(names))
		return cell_err(err, 400, EINVAL, "profiles must be a list of profile names");
	db_lock();   /* every profile as of one moment */
	json_array_foreach(json_is_array(names) ? names : NULL, i, name) {
		struct profile_row p;
		const char *n = json_string_value(name);
		if (!n) {
			rc = cell_err(err, 400, EINVAL, "profiles must be a list of profile names");
			break;
		}
		rc = profile_load(n, &p, err);
		if (rc == -ENOENT)
			rc = cell_err(err, 404, ENOENT, "Profile \"%s\" not found", n);
		if (rc < 0)
			break;
		if (json_array_append_new(objs, json_pack("{s:O, s:O}", "config", p.config,
							  "devices", p.devices)) < 0)
			rc = OOM(err);
		profile_row_clear(&p);
		if (rc < 0)
			break;
	}
	db_unlock();
	if (rc < 0)
		return rc;
	*out = steal_ptr(objs);
	return 0;
}

int profiles_expand(json_t *profile_names, json_t *config, json_t *devices, json_t **exp_config,
		    json_t **exp_devices, cell_error *err)
{
	_cleanup_json_ json_t *objs = NULL;
	int rc = profiles_load_objs(profile_names, &objs, err);

	return rc < 0 ? rc : profiles_expand_objs(objs, config, devices, exp_config, exp_devices, err);
}

int profiles_check_exist(json_t *profile_names, cell_error *err)
{
	json_t *a, *b;
	size_t i, j;
	int rc;

	if (profile_names && !json_is_null(profile_names) && !json_is_array(profile_names))
		return cell_err(err, 400, EINVAL, "profiles must be a list of profile names");
	json_array_foreach(json_is_array(profile_names) ? profile_names : NULL, i, a) {
		const char *n = json_string_value(a);
		if (!n)
			return cell_err(err, 400, EINVAL, "profiles must be a list of profile names");
		json_array_foreach(profile_names, j, b) {
			if (j >= i)
				break;
			if (json_equal(a, b))
				return cell_err(err, 400, EINVAL, "Duplicate profile \"%s\"", n);
		}
		rc = profile_exists(n, err);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return cell_err(err, 404, ENOENT, "Profile \"%s\" not found", n);
	}
	return 0;
}

/* ---- validation ------------------------------------------------------------- */

/* What is stored: objects, config values "" or null dropped (unset), null
 * devices dropped; the rest kept for validation to judge. */
static int normalize(json_t *config, json_t *devices, json_t **cfg_out, json_t **dev_out,
		     cell_error *err)
{
	_cleanup_json_ json_t *c = json_object(), *d = json_object();
	const char *key;
	json_t *val;

	if (!c || !d)
		return OOM(err);
	if (config && !json_is_null(config) && !json_is_object(config))
		return cell_err(err, 400, EINVAL, "config must be an object");
	if (devices && !json_is_null(devices) && !json_is_object(devices))
		return cell_err(err, 400, EINVAL, "devices must be an object");
	json_object_foreach(json_is_object(config) ? config : NULL, key, val) {
		if (json_is_null(val) || (json_is_string(val) && !*json_string_value(val)))
			continue;
		if (json_object_set(c, key, val) < 0)
			return OOM(err);
	}
	json_object_foreach(json_is_object(devices) ? devices : NULL, key, val)
		if (!json_is_null(val) && json_object_set_new(d, key, json_deep_copy(val)) < 0)
			return OOM(err);
	*cfg_out = steal_ptr(c);
	*dev_out = steal_ptr(d);
	return 0;
}

static int check_description(const char *description, cell_error *err)
{
	/* A NUL inside a JSON string would silently cut it in the database. */
	if (!description)
		return cell_err(err, 400, EINVAL, "description must be a string");
	return 0;
}

static int validate(json_t *config, json_t *devices, cell_error *err)
{
	const char *key;
	json_t *val;

	json_object_foreach(config, key, val) {
		if (str_has_prefix(key, "volatile."))
			return cell_err(err, 400, EINVAL, "Volatile keys can only be set on instances");
		if (str_has_prefix(key, "image."))
			return cell_err(err, 400, EINVAL, "Image keys can only be set on instances");
	}
	if (inst_lxc_validate(config, devices, err) < 0)
		return -EINVAL;
	json_object_foreach(devices, key, val) {
		const char *pool = jstr(val, "pool");
		if (pool && !pools_exists(pool))
			return cell_err(err, 400, ENOENT, "device \"%s\": storage pool \"%s\" doesn't exist",
					key, pool);
	}
	return 0;
}

/* Normalized and validated copies of what a create or update stores. */
static int prepare(json_t *config, json_t *devices, json_t **cfg_out, json_t **dev_out,
		   cell_error *err)
{
	_cleanup_json_ json_t *c = NULL, *d = NULL;
	int rc = normalize(config, devices, &c, &d, err);

	if (rc == 0)
		rc = validate(c, d, err);
	if (rc < 0)
		return rc;
	*cfg_out = steal_ptr(c);
	*dev_out = steal_ptr(d);
	return 0;
}

/* ---- create ------------------------------------------------------------------ */

struct profile_write {
	const char *name, *newname, *description;
	json_t *config, *devices;
	char *config_text, *devices_text;
	int64_t id;
};

static int create_tx(void *data, cell_error *err)
{
	struct profile_write *w = data;
	int rc = profile_exists(w->name, err);

	if (rc < 0)
		return rc;
	if (rc > 0)
		return cell_err(err, 409, EEXIST, "The profile already exists");
	rc = db_exec(err, "INSERT INTO profiles (name, description, config, devices) VALUES (?, ?, ?, ?)",
		     "ssss", w->name, w->description, w->config_text, w->devices_text);
	return rc < 0 ? rc : 0;
}

int profiles_create(const char *name, const char *description, json_t *config, json_t *devices,
		    cell_error *err)
{
	_cleanup_json_ json_t *c = NULL, *d = NULL;
	struct profile_write w = { .name = name, .description = description };
	int rc;

	if ((rc = profiles_check_name(name, err)) < 0 ||
	    (rc = check_description(description, err)) < 0 ||
	    (rc = prepare(config, devices, &c, &d, err)) < 0)
		return rc;
	w.config_text = json_text(c);
	w.devices_text = json_text(d);
	rc = w.config_text && w.devices_text ? db_tx(create_tx, &w, err) : OOM(err);
	free(w.config_text);
	free(w.devices_text);
	if (rc == 0)
		log_info("profiles: created %s", name);
	return rc;
}

/* ---- update: every instance using the profile must still work ---------------- */

static const char *root_pool(json_t *devices)
{
	const char *key;
	json_t *dev;

	json_object_foreach(devices, key, dev) {
		const char *t = jstr(dev, "type"), *p = jstr(dev, "path");
		if (t && p && !strcmp(t, "disk") && !strcmp(p, "/"))
			return jstr(dev, "pool");
	}
	return NULL;
}

/* The instance's profiles in apply order, with profile `id` replaced by the
 * new content. */
static int user_profiles(int64_t inst_id, int64_t id, json_t *config, json_t *devices,
			 json_t **old_out, json_t **new_out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_json_ json_t *olds = json_array(), *news = json_array();
	int rc;

	if (!olds || !news)
		return OOM(err);
	rc = db_stmt(&st, err,
		     "SELECT p.id, p.name, p.description, p.config, p.devices FROM instances_profiles ip"
		     " JOIN profiles p ON p.id = ip.profile_id WHERE ip.instance_id = ?"
		     " ORDER BY ip.apply_order",
		     "i", inst_id);
	while (rc == 0 && (rc = db_step(st, err)) == 1) {
		struct profile_row p;
		json_t *o, *n;
		if ((rc = profile_from_row(st, &p, err)) < 0)
			break;
		o = json_pack("{s:O, s:O}", "config", p.config, "devices", p.devices);
		n = p.id == id ? json_pack("{s:O, s:O}", "config", config, "devices", devices)
			       : json_incref(o);
		profile_row_clear(&p);
		rc = json_array_append_new(olds, o) < 0 || json_array_append_new(news, n) < 0
			     ? OOM(err) : 0;
	}
	if (rc < 0)
		return rc;
	*old_out = steal_ptr(olds);
	*new_out = steal_ptr(news);
	return 0;
}

static int check_user(sqlite3_stmt *st, int64_t id, json_t *config, json_t *devices,
		      cell_error *err)
{
	_cleanup_json_ json_t *ic = NULL, *idev = NULL, *olds = NULL, *news = NULL;
	_cleanup_json_ json_t *oc = NULL, *od = NULL, *nc = NULL, *nd = NULL;
	const char *name = db_col_text(st, 1), *oldpool, *newpool;
	int rc;

	if ((rc = col_object(st, 2, "instance config", &ic, err)) < 0 ||
	    (rc = col_object(st, 3, "instance devices", &idev, err)) < 0 ||
	    (rc = user_profiles(sqlite3_column_int64(st, 0), id, config, devices, &olds, &news,
				err)) < 0 ||
	    (rc = profiles_expand_objs(olds, ic, idev, &oc, &od, err)) < 0 ||
	    (rc = profiles_expand_objs(news, ic, idev, &nc, &nd, err)) < 0)
		return cell_err_wrap(err, rc, "instance %s", name);
	if (inst_lxc_validate(nc, nd, err) < 0)
		return cell_err_wrap(err, -EINVAL, "instance %s would not be valid", name);
	/* The rootfs lives on the old pool: losing the device or moving it
	 * to another pool would strand it (LXD refuses the same). */
	oldpool = root_pool(od);
	newpool = root_pool(nd);
	if (oldpool && (!newpool || strcmp(oldpool, newpool)))
		return cell_err(err, 400, EBUSY,
				"At least one instance relies on this profile's root disk device");
	return 0;
}

static int check_users(int64_t id, json_t *config, json_t *devices, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc = db_stmt(&st, err,
			 "SELECT i.id, i.name, i.config, i.devices FROM instances i"
			 " JOIN instances_profiles ip ON ip.instance_id = i.id"
			 " WHERE ip.profile_id = ? ORDER BY i.name",
			 "i", id);

	while (rc == 0 && (rc = db_step(st, err)) == 1)
		rc = check_user(st, id, config, devices, err);
	return rc < 0 ? rc : 0;
}

static int update_tx(void *data, cell_error *err)
{
	struct profile_write *w = data;
	int rc = check_users(w->id, w->config, w->devices, err);

	if (rc < 0)
		return rc;
	rc = db_exec(err, "UPDATE profiles SET description = ?, config = ?, devices = ? WHERE id = ?",
		     "sssi", w->description, w->config_text, w->devices_text, w->id);
	if (rc == 0)   /* deleted meanwhile */
		return cell_err(err, 404, ENOENT, "Profile not found");
	return rc < 0 ? rc : 0;
}

int profiles_update(const char *name, const char *description, json_t *config, json_t *devices,
		    cell_error *err)
{
	_cleanup_json_ json_t *c = NULL, *d = NULL;
	struct profile_write w = { .name = name, .description = description };
	struct profile_row cur;
	int rc;

	if ((rc = check_description(description, err)) < 0 ||
	    (rc = prepare(config, devices, &c, &d, err)) < 0 ||
	    (rc = profile_load(name, &cur, err)) < 0)
		return rc;
	w.id = cur.id;
	profile_row_clear(&cur);
	w.config = c;
	w.devices = d;
	if (profile_hooks.check && (rc = profile_hooks.check(name, c, d, err)) < 0)
		return rc;
	w.config_text = json_text(c);
	w.devices_text = json_text(d);
	rc = w.config_text && w.devices_text ? db_tx(update_tx, &w, err) : OOM(err);
	free(w.config_text);
	free(w.devices_text);
	if (rc < 0)
		return rc;
	log_info("profiles: updated %s", name);
	if (profile_hooks.changed)
		profile_hooks.changed(name);
	return 0;
}

/* ---- rename and delete ------------------------------------------------------- */

/* The new profiles text of a row, or NULL when it does not name `oldname`. */
static char *list_renamed(const char *text, const char *oldname, const char *newname)
{
	_cleanup_json_ json_t *list = json_loads(text, 0, NULL);
	bool hit = false;
	json_t *v;
	size_t i;

	json_array_foreach(list, i, v) {
		if (json_is_string(v) && !strcmp(json_string_value(v), oldname)) {
			json_array_set_new(list, i, json_string(newname));
			hit = true;
		}
	}
	return hit ? json_dumps(list, JSON_COMPACT) : NULL;
}

/* Snapshots and images record profiles by name (a JSON array of strings)
 * in a `profiles` column.  The rows are collected first: SQLite does not
 * promise what a scan sees of a table updated under it. */
static int rename_in_table(const char *table, const char *oldname, const char *newname,
			   cell_error *err)
{
	_cleanup_free_ char *select = xasprintf("SELECT id, profiles FROM %s", table);
	_cleanup_free_ char *update = xasprintf("UPDATE %s SET profiles = ? WHERE id = ?", table);
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_json_ json_t *todo = json_array();
	json_t *item;
	size_t i;
	int rc = todo && select && update ? db_stmt(&st, err, select, NULL) : OOM(err);

	while (rc == 0 && (rc = db_step(st, err)) == 1) {
		_cleanup_free_ char *text = list_renamed(db_col_text(st, 1), oldname, newname);
		rc = 0;
		if (text && json_array_append_new(todo, json_pack("{s:I, s:s}", "id",
								  (json_int_t)sqlite3_column_int64(st, 0),
								  "text", text)) < 0)
			rc = OOM(err);
	}
	db_finalize(steal_ptr(st));
	json_array_foreach(rc == 0 ? todo : NULL, i, item) {
		rc = db_exec(err, update, "si", jstr(item, "text"),
			     (int64_t)json_integer_value(json_object_get(item, "id")));
		if (rc < 0)
			break;
		rc = 0;
	}
	return rc < 0 ? rc : 0;
}

static int rename_tx(void *data, cell_error *err)
{
	struct profile_write *w = data;
	struct profile_row cur;
	int rc = profile_load(w->name, &cur, err);

	if (rc < 0)
		return rc;
	profile_row_clear(&cur);
	if ((rc = profile_exists(w->newname, err)) < 0)
		return rc;
	if (rc > 0)
		return cell_err(err, 409, EEXIST, "Name \"%s\" already in use", w->newname);
	rc = db_exec(err, "UPDATE profiles SET name = ? WHERE name = ?", "ss", w->newname, w->name);
	if (rc >= 0)
		rc = rename_in_table("instances_snapshots", w->name, w->newname, err);
	return rc < 0 ? rc : rename_in_table("images", w->name, w->newname, err);
}

int profiles_rename(const char *oldname, const char *newname, cell_error *err)
{
	struct profile_write w = { .name = oldname, .newname = newname };
	int rc;

	if (!strcmp(oldname, PROFILES_DEFAULT))
		return cell_err(err, 403, EPERM, "The 'default' profile cannot be renamed");
	if ((rc = profiles_check_name(newname, err)) < 0 || (rc = db_tx(rename_tx, &w, err)) < 0)
		return rc;
	log_info("profiles: renamed %s to %s", oldname, newname);
	if (profile_hooks.renamed)
		profile_hooks.renamed(oldname, newname);
	return 0;
}

static int delete_tx(void *data, cell_error *err)
{
	struct profile_write *w = data;
	struct profile_row cur;
	int64_t users = 0;
	int rc = profile_load(w->name, &cur, err);

	if (rc < 0)
		return rc;
	w->id = cur.id;
	profile_row_clear(&cur);
	rc = db_query_int(&users, err, "SELECT COUNT(*) FROM instances_profiles WHERE profile_id = ?",
			  "i", w->id);
	if (rc < 0)
		return rc;
	if (users > 0)
		return cell_err(err, 400, EBUSY, "Profile is currently in use");
	rc = db_exec(err, "DELETE FROM profiles WHERE id = ?", "i", w->id);
	return rc < 0 ? rc : 0;
}

int profiles_delete(const char *name, cell_error *err)
{
	struct profile_write w = { .name = name };
	int rc;

	if (!strcmp(name, PROFILES_DEFAULT))
		return cell_err(err, 403, EPERM, "The 'default' profile cannot be deleted");
	rc = db_tx(delete_tx, &w, err);
	if (rc == 0)
		log_info("profiles: deleted %s", name);
	return rc;
}

/* ---- pools and start-up ------------------------------------------------------ */

static bool devices_use_pool(json_t *devices, const char *pool)
{
	const char *key;
	json_t *dev;

	json_object_foreach(devices, key, dev) {
		const char *p = jstr(dev, "pool");
		if (p && !strcmp(p, pool))
			return true;
	}
	return false;
}

int profiles_using_pool(const char *pool, json_t **names, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_json_ json_t *out = json_array();
	int rc;

	if (!out)
		return OOM(err);
	rc = db_stmt(&st, err, "SELECT id, name, description, config, devices FROM profiles"
			       " ORDER BY name", NULL);
	while (rc == 0 && (rc = db_step(st, err)) == 1) {
		struct profile_row p;
		if ((rc = profile_from_row(st, &p, err)) < 0)
			break;
		if (devices_use_pool(p.devices, pool) &&
		    json_array_append_new(out, json_string(p.name)) < 0)
			rc = OOM(err);
		profile_row_clear(&p);
	}
	if (rc < 0)
		return rc;
	*names = steal_ptr(out);
	return 0;
}

int profiles_init(cell_error *err)
{
	_cleanup_json_ json_t *devices = NULL;
	_cleanup_free_ char *text = NULL;
	int rc = profile_exists(PROFILES_DEFAULT, err);

	if (rc != 0)
		return rc < 0 ? cell_err_wrap(err, rc, "profiles") : 0;
	/* LXD's default profile gets its root disk from `lxd init`; ours
	 * comes with the default pool when that exists. */
	if (pools_exists("default"))
		devices = json_pack("{s:{s:s, s:s, s:s}}", "root", "type", "disk", "path", "/",
				    "pool", "default");
	else
		devices = json_object();
	text = devices ? json_text(devices) : NULL;
	if (!text)
		return OOM(err);
	rc = db_exec(err, "INSERT INTO profiles (name, description, config, devices)"
			  " VALUES (?, 'Default LXD profile', '{}', ?)",
		     "ss", PROFILES_DEFAULT, text);
	if (rc < 0)
		return cell_err_wrap(err, rc, "create the default profile");
	log_info("profiles: created the default profile");
	return 0;
}
