/* Tables `instances`, `instances_profiles` and `instances_snapshots`. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "daemon/db.h"
#include "daemon/instances.h"

#define INST_COLS                                                                        \
	"id, name, type, architecture, ephemeral, stateful, description, created_at, "   \
	"last_used_at, pool, config, devices"
#define SNAP_COLS                                                                        \
	"id, instance_id, name, created_at, expires_at, stateful, description, config, " \
	"devices, profiles"

/* ---- structs ------------------------------------------------------------ */

void inst_clear(struct inst *in)
{
	if (!in)
		return;
	free(in->name);
	free(in->type);
	free(in->architecture);
	free(in->description);
	free(in->created_at);
	free(in->last_used_at);
	free(in->pool);
	json_decref(in->config);
	json_decref(in->devices);
	json_decref(in->profiles);
	json_decref(in->exp_config);
	json_decref(in->exp_devices);
	memset(in, 0, sizeof(*in));
}

void inst_list_free(struct inst *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		inst_clear(&v[i]);
	free(v);
}

void inst_snap_clear(struct inst_snap *s)
{
	if (!s)
		return;
	free(s->name);
	free(s->created_at);
	free(s->expires_at);
	free(s->description);
	json_decref(s->config);
	json_decref(s->devices);
	json_decref(s->profiles);
	memset(s, 0, sizeof(*s));
}

void inst_snap_list_free(struct inst_snap *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		inst_snap_clear(&v[i]);
	free(v);
}

/* ---- helpers ------------------------------------------------------------ */

/* Stored JSON text, or an empty container of the right kind when the text
 * is damaged: a bad row must not make the whole list unreadable. */
static json_t *col_json(sqlite3_stmt *st, int col, bool array)
{
	json_t *j = json_loads(db_col_text(st, col), 0, NULL);

	if (!j || (array ? !json_is_array(j) : !json_is_object(j))) {
		json_decref(j);
		j = array ? json_array() : json_object();
	}
	return j;
}

static char *dump(json_t *j)
{
	return json_dumps(j ? j : json_object(), JSON_COMPACT | JSON_SORT_KEYS);
}

static int oom(cell_error *err) { return cell_err(err, 500, ENOMEM, "out of memory"); }

static int inst_from_row(sqlite3_stmt *st, struct inst *in, bool parse, cell_error *err)
{
	memset(in, 0, sizeof(*in));
	in->id = sqlite3_column_int64(st, 0);
	in->name = db_col_strdup(st, 1);
	in->type = db_col_strdup(st, 2);
	in->architecture = db_col_strdup(st, 3);
	in->ephemeral = sqlite3_column_int(st, 4) != 0;
	in->stateful = sqlite3_column_int(st, 5) != 0;
	in->description = db_col_strdup(st, 6);
	in->created_at = db_col_strdup(st, 7);
	in->last_used_at = db_col_strdup(st, 8);
	in->pool = db_col_strdup(st, 9);
	in->config = parse ? col_json(st, 10, false) : NULL;
	in->devices = parse ? col_json(st, 11, false) : NULL;
	in->profiles = json_array();
	if (!in->name || !in->type || !in->architecture || !in->description || !in->created_at ||
	    !in->last_used_at || !in->pool || (parse && (!in->config || !in->devices)) ||
	    !in->profiles)
		return oom(err);
	return 0;
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = (*(struct inst *const *)a)->id, y = (*(struct inst *const *)b)->id;
	return x < y ? -1 : x > y;
}

/* Attach profile names to the instances in v (any order), one query. */
static int load_profiles(struct inst *v, size_t n, int64_t only_id, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ struct inst **byid = calloc(n ? n : 1, sizeof(*byid));
	int rc;

	if (!byid)
		return oom(err);
	for (size_t i = 0; i < n; i++)
		byid[i] = &v[i];
	qsort(byid, n, sizeof(*byid), cmp_id);
	rc = db_stmt(&st, err,
		     "SELECT ip.instance_id, p.name FROM instances_profiles ip "
		     "JOIN profiles p ON p.id = ip.profile_id "
		     "WHERE ? < 0 OR ip.instance_id = ? ORDER BY ip.instance_id, ip.apply_order",
		     "ii", only_id, only_id);
	if (rc < 0)
		return rc;
	while ((rc = db_step(st, err)) == 1) {
		struct inst key = { .id = sqlite3_column_int64(st, 0) }, *kp = &key;
		struct inst **hit = bsearch(&kp, byid, n, sizeof(*byid), cmp_id);
		if (hit && json_array_append_new((*hit)->profiles, json_string(db_col_text(st, 1))) < 0)
			return oom(err);
	}
	return rc;
}

/* ---- instances ------------------------------------------------------------ */

/*
 * Parsed config/devices of the rows a list read last, keyed by row id and
 * checked against the stored text on every read, so no write has to know
 * about it.  Parsing is most of a list's database time; lists of unchanged
 * rows skip it.  Entries of rows no longer listed are dropped.
 */
struct parsed {
	int64_t id;
	char *cfg_text, *dev_text;
	json_t *cfg, *dev;
	bool seen;
};

static pthread_mutex_t pc_mu = PTHREAD_MUTEX_INITIALIZER;
static struct parsed *pc;
static size_t pc_n;

static void parsed_clear(struct parsed *p)
{
	free(p->cfg_text);
	free(p->dev_text);
	json_decref(p->cfg);
	json_decref(p->dev);
}

static json_t *parsed_json(char **text, json_t **json, const char *row)
{
	if (!*text || strcmp(*text, row)) {
		json_t *j = json_loads(row, 0, NULL);
		char *t = strdup(row);
		if (!j || !json_is_object(j) || !t) {
			json_decref(j);
			free(t);
			return json_object();
		}
		free(*text);
		json_decref(*json);
		*text = t;
		*json = j;
	}
	return json_incref(*json);
}

/* Shared config and devices for row `id` (pc_mu held). */
static int parsed_get(int64_t id, const char *cfg, const char *dev, struct inst *in)
{
	struct parsed *p = NULL;

	for (size_t i = 0; i < pc_n && !p; i++)
		if (pc[i].id == id)
			p = &pc[i];
	if (!p) {
		struct parsed *nv = realloc(pc, (pc_n + 1) * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		pc = nv;
		p = &pc[pc_n++];
		memset(p, 0, sizeof(*p));
		p->id = id;
	}
	p->seen = true;
	json_decref(in->config);
	json_decref(in->devices);
	in->config = parsed_json(&p->cfg_text, &p->cfg, cfg);
	in->devices = parsed_json(&p->dev_text, &p->dev, dev);
	return in->config && in->devices ? 0 : -ENOMEM;
}

static void parsed_sweep(void)
{
	size_t k = 0;

	for (size_t i = 0; i < pc_n; i++) {
		if (pc[i].seen) {
			pc[i].seen = false;
			pc[k++] = pc[i];
		} else {
			parsed_clear(&pc[i]);
		}
	}
	pc_n = k;
}

static int list_locked(struct inst **out, size_t *n, bool shared, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct inst *v = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	rc = db_stmt(&st, err, "SELECT " INST_COLS " FROM instances ORDER BY name", NULL);
	while (rc >= 0 && (rc = db_step(st, err)) == 1) {
		if (cnt == cap) {
			struct inst *nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));
			if (!nv) {
				rc = oom(err);
				break;
			}
			v = nv;
		}
		rc = inst_from_row(st, &v[cnt++], !shared, err);
		if (rc == 0 && shared && parsed_get(v[cnt - 1].id, db_col_text(st, 10),
						    db_col_text(st, 11), &v[cnt - 1]) < 0)
			rc = oom(err);
	}
	if (shared && rc == 0)
		parsed_sweep();
	db_finalize(steal_ptr(st));
	if (rc == 0)
		rc = load_profiles(v, cnt, -1, err);
	if (rc < 0) {
		inst_list_free(v, cnt);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

int db_inst_list(struct inst **out, size_t *n, cell_error *err)
{
	int rc;

	*out = NULL;
	*n = 0;
	/* Both queries under one lock hold, so a writer cannot come between. */
	db_lock();
	rc = list_locked(out, n, false, err);
	db_unlock();
	return rc < 0 ? cell_err_wrap(err, rc, "list instances") : 0;
}

int db_inst_list_shared(struct inst **out, size_t *n, cell_error *err)
{
	int rc;

	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&pc_mu);
	db_lock();
	rc = list_locked(out, n, true, err);
	db_unlock();
	pthread_mutex_unlock(&pc_mu);
	return rc < 0 ? cell_err_wrap(err, rc, "list instances") : 0;
}

static int get_locked(const char *name, struct inst *out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc;

	rc = db_stmt(&st, err, "SELECT " INST_COLS " FROM instances WHERE name = ?", "s", name);
	if (rc < 0)
		return rc;
	rc = db_step(st, err);
	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Instance not found");
	if (rc < 0 || (rc = inst_from_row(st, out, true, err)) < 0)
		return rc;
	db_finalize(steal_ptr(st));
	return load_profiles(out, 1, out->id, err);
}

int db_inst_get(const char *name, struct inst *out, cell_error *err)
{
	int rc;

	memset(out, 0, sizeof(*out));
	db_lock();
	rc = get_locked(name, out, err);
	db_unlock();
	if (rc < 0)
		inst_clear(out);
	return rc;
}

/* Column 0 of every row of st (prepared with result rc) as a NULL-terminated
 * array, empty when there are none. */
static int col0_strv(sqlite3_stmt *st, int rc, char ***out, cell_error *err)
{
	char **v = calloc(1, sizeof(*v));
	size_t n = 0;

	*out = NULL;
	if (!v)
		return oom(err);
	while (rc >= 0 && (rc = db_step(st, err)) == 1) {
		char **nv = realloc(v, (n + 2) * sizeof(*v));
		if (!nv) {
			rc = oom(err);
			break;
		}
		v = nv;
		v[n] = db_col_strdup(st, 0);
		v[++n] = NULL;
	}
	if (rc < 0) {
		cell_strvfreep(&v);
		return rc;
	}
	*out = v;
	return 0;
}

int db_inst_names(char ***out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc = db_stmt(&st, err, "SELECT name FROM instances ORDER BY name", NULL);

	return col0_strv(st, rc, out, err);
}

int db_inst_exists(const char *name, cell_error *err)
{
	int64_t v;
	return db_query_int(&v, err, "SELECT 1 FROM instances WHERE name = ?", "s", name);
}

static int set_profiles(int64_t id, json_t *profiles, cell_error *err)
{
	size_t i;
	json_t *p;
	int rc;

	rc = db_exec(err, "DELETE FROM instances_profiles WHERE instance_id = ?", "i", id);
	json_array_foreach(profiles, i, p) {
		if (rc < 0)
			return rc;
		rc = db_exec(err,
			     "INSERT INTO instances_profiles (instance_id, profile_id, apply_order) "
			     "SELECT ?, id, ? FROM profiles WHERE name = ?",
			     "iis", id, (int64_t)i, json_string_value(p));
		if (rc == 0)
			return cell_err(err, 400, ENOENT, "Profile \"%s\" doesn't exist",
					json_string_value(p));
	}
	return rc < 0 ? rc : 0;
}

static int insert_tx(void *data, cell_error *err)
{
	struct inst *in = data;
	_cleanup_free_ char *cfg = dump(in->config), *devs = dump(in->devices);
	int rc;

	if (!cfg || !devs)
		return oom(err);
	rc = db_exec(err,
		     "INSERT INTO instances (name, type, architecture, ephemeral, stateful, "
		     "description, created_at, last_used_at, pool, config, devices) "
		     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		     "sssddssssss", in->name, in->type ? in->type : "container", in->architecture,
		     (int)in->ephemeral, (int)in->stateful, in->description ? in->description : "",
		     in->created_at, in->last_used_at ? in->last_used_at : "0001-01-01T00:00:00Z",
		     in->pool, cfg, devs);
	if (rc < 0) {
		if (err->status == 409)
			return cell_err(err, 409, EEXIST, "Instance \"%s\" already exists", in->name);
		return rc;
	}
	in->id = sqlite3_last_insert_rowid(db_handle());
	return set_profiles(in->id, in->profiles, err);
}

int db_inst_insert(struct inst *in, cell_error *err)
{
	return db_tx(insert_tx, in, err);
}

static int update_tx(void *data, cell_error *err)
{
	const struct inst *in = data;
	_cleanup_free_ char *cfg = dump(in->config), *devs = dump(in->devices);
	int rc;

	if (!cfg || !devs)
		return oom(err);
	rc = db_exec(err,
		     "UPDATE instances SET description = ?, architecture = ?, ephemeral = ?, "
		     "config = ?, devices = ? WHERE id = ?",
		     "ssdssi", in->description ? in->description : "", in->architecture,
		     (int)in->ephemeral, cfg, devs, in->id);
	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Instance not found");
	if (rc < 0)
		return rc;
	return set_profiles(in->id, in->profiles, err);
}

int db_inst_update(const struct inst *in, cell_error *err)
{
	return db_tx(update_tx, (void *)in, err);
}

struct patch_args {
	int64_t id;
	json_t *changes;
	json_t *result;
};

static int patch_tx(void *data, cell_error *err)
{
	struct patch_args *a = data;
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ char *text = NULL;
	const char *key;
	json_t *cfg, *val;
	int rc;

	rc = db_stmt(&st, err, "SELECT config FROM instances WHERE id = ?", "i", a->id);
	if (rc < 0)
		return rc;
	if ((rc = db_step(st, err)) <= 0)
		return rc < 0 ? rc : cell_err(err, 404, ENOENT, "Instance not found");
	cfg = col_json(st, 0, false);
	db_finalize(steal_ptr(st));
	json_object_foreach(a->changes, key, val) {
		const char *s = json_string_value(val);
		if (!s || !*s)
			json_object_del(cfg, key);
		else
			json_object_set(cfg, key, val);
	}
	text = dump(cfg);
	rc = text ? db_exec(err, "UPDATE instances SET config = ? WHERE id = ?", "si", text, a->id)
		  : oom(err);
	if (rc < 0) {
		json_decref(cfg);
		return rc;
	}
	a->result = cfg;
	return 0;
}

int db_inst_config_patch(int64_t id, json_t *changes, json_t **out, cell_error *err)
{
	struct patch_args a = { .id = id, .changes = changes };
	int rc = db_tx(patch_tx, &a, err);

	if (rc == 0 && out)
		*out = a.result;
	else
		json_decref(a.result);
	return rc;
}

int db_inst_rename(int64_t id, const char *newname, cell_error *err)
{
	int rc = db_exec(err, "UPDATE instances SET name = ? WHERE id = ?", "si", newname, id);

	if (rc < 0 && err->status == 409)
		return cell_err(err, 409, EEXIST, "Name \"%s\" already in use", newname);
	return rc < 0 ? rc : 0;
}

int db_inst_delete(int64_t id, cell_error *err)
{
	int rc = db_exec(err, "DELETE FROM instances WHERE id = ?", "i", id);
	return rc < 0 ? rc : 0;
}

int db_inst_set_last_used(int64_t id, const char *when, cell_error *err)
{
	int rc = db_exec(err, "UPDATE instances SET last_used_at = ? WHERE id = ?", "si", when, id);
	return rc < 0 ? rc : 0;
}

int db_inst_names_with_profile(const char *profile, char ***out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc = db_stmt(&st, err,
			 "SELECT i.name FROM instances i JOIN instances_profiles ip ON ip.instance_id = i.id "
			 "JOIN profiles p ON p.id = ip.profile_id WHERE p.name = ? ORDER BY i.name",
			 "s", profile);

	return col0_strv(st, rc, out, err);
}

/* ---- snapshots ------------------------------------------------------------ */

static int snap_from_row(sqlite3_stmt *st, struct inst_snap *s, cell_error *err)
{
	memset(s, 0, sizeof(*s));
	s->id = sqlite3_column_int64(st, 0);
	s->instance_id = sqlite3_column_int64(st, 1);
	s->name = db_col_strdup(st, 2);
	s->created_at = db_col_strdup(st, 3);
	s->expires_at = db_col_strdup(st, 4);
	s->stateful = sqlite3_column_int(st, 5) != 0;
	s->description = db_col_strdup(st, 6);
	s->config = col_json(st, 7, false);
	s->devices = col_json(st, 8, false);
	s->profiles = col_json(st, 9, true);
	if (!s->name || !s->created_at || !s->expires_at || !s->description || !s->config ||
	    !s->devices || !s->profiles)
		return oom(err);
	return 0;
}

int db_snap_list(int64_t instance_id, struct inst_snap **out, size_t *n, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct inst_snap *v = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = db_stmt(&st, err,
		     "SELECT " SNAP_COLS " FROM instances_snapshots WHERE ? < 0 OR instance_id = ? "
		     "ORDER BY instance_id, id",
		     "ii", instance_id, instance_id);
	while (rc >= 0 && (rc = db_step(st, err)) == 1) {
		if (cnt == cap) {
			struct inst_snap *nv = realloc(v, (cap = cap ? cap * 2 : 8) * sizeof(*v));
			if (!nv) {
				rc = oom(err);
				break;
			}
			v = nv;
		}
		rc = snap_from_row(st, &v[cnt++], err);
	}
	if (rc < 0) {
		inst_snap_list_free(v, cnt);
		return cell_err_wrap(err, rc, "list snapshots");
	}
	*out = v;
	*n = cnt;
	return 0;
}

int db_snap_get(int64_t instance_id, const char *name, struct inst_snap *out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = db_stmt(&st, err,
		     "SELECT " SNAP_COLS " FROM instances_snapshots WHERE instance_id = ? AND name = ?",
		     "is", instance_id, name);
	if (rc < 0)
		return rc;
	rc = db_step(st, err);
	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Snapshot not found");
	if (rc < 0)
		return rc;
	rc = snap_from_row(st, out, err);
	if (rc < 0)
		inst_snap_clear(out);
	return rc;
}

int db_snap_insert(struct inst_snap *s, cell_error *err)
{
	_cleanup_free_ char *cfg = dump(s->config), *devs = dump(s->devices);
	_cleanup_free_ char *profs = json_dumps(s->profiles ? s->profiles : json_array(),
						JSON_COMPACT);
	int rc;

	if (!cfg || !devs || !profs)
		return oom(err);
	db_lock();
	rc = db_exec(err,
		     "INSERT INTO instances_snapshots (instance_id, name, created_at, expires_at, "
		     "stateful, description, config, devices, profiles) "
		     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		     "isssdssss", s->instance_id, s->name, s->created_at,
		     s->expires_at ? s->expires_at : "0001-01-01T00:00:00Z", (int)s->stateful,
		     s->description ? s->description : "", cfg, devs, profs);
	if (rc >= 0)
		s->id = sqlite3_last_insert_rowid(db_handle());
	db_unlock();
	if (rc < 0 && err->status == 409)
		return cell_err(err, 409, EEXIST, "Snapshot \"%s\" already exists", s->name);
	return rc < 0 ? rc : 0;
}

int db_snap_update(int64_t id, const char *description, const char *expires_at,
		   cell_error *err)
{
	int rc = db_exec(err, "UPDATE instances_snapshots SET description = ?, expires_at = ? "
			      "WHERE id = ?",
			 "ssi", description, expires_at, id);
	return rc < 0 ? rc : 0;
}

int db_snap_rename(int64_t id, const char *newname, cell_error *err)
{
	int rc = db_exec(err, "UPDATE instances_snapshots SET name = ? WHERE id = ?", "si", newname,
			 id);

	if (rc < 0 && err->status == 409)
		return cell_err(err, 409, EEXIST, "Snapshot \"%s\" already exists", newname);
	return rc < 0 ? rc : 0;
}

int db_snap_delete(int64_t id, cell_error *err)
{
	int rc = db_exec(err, "DELETE FROM instances_snapshots WHERE id = ?", "i", id);
	return rc < 0 ? rc : 0;
}

/* ---- profiles, for expanding many instances at once ------------------------ */

int db_inst_profile_objs(json_t **out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	json_t *o = json_object();
	int rc;

	if (!o)
		return oom(err);
	rc = db_stmt(&st, err, "SELECT name, config, devices FROM profiles", NULL);
	while (rc >= 0 && (rc = db_step(st, err)) == 1)
		json_object_set_new(o, db_col_text(st, 0),
				    json_pack("{so so}", "config", col_json(st, 1, false), "devices",
					      col_json(st, 2, false)));
	if (rc < 0) {
		json_decref(o);
		return rc;
	}
	*out = o;
	return 0;
}

int db_inst_pool_names(char ***out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc = db_stmt(&st, err, "SELECT name FROM storage_pools ORDER BY name", NULL);

	return col0_strv(st, rc, out, err);
}
