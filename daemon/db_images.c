#include "daemon/db_images.h"

#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/db.h"

#define IMG_COLS                                                                                  \
	"id, fingerprint, type, filename, size, meta_size, split, public, auto_update, cached, "  \
	"architecture, created_at, expires_at, uploaded_at, last_used_at, update_source, profiles"

/* ---- change feed ------------------------------------------------------------------
 * A ring of the last DB_IMG_RING changes, each (generation, image id); all
 * of it is touched with the db lock held (the triggers run inside
 * statements, which hold it), but the generation is also read lock-free. */
#define DB_IMG_RING DB_IMAGES_DELTA_MAX

static atomic_uint_fast64_t db_img_gen = 1;
static struct { uint64_t gen; int64_t id; } db_img_ring[DB_IMG_RING];
static uint64_t db_img_full_gen = 1;   /* readers behind this re-read everything */
static uint64_t db_img_seen_gen;       /* newest generation a reader was given */
static sqlite3 *db_img_watched;        /* connection whose triggers feed the ring */

uint64_t db_images_generation(void) { return atomic_load(&db_img_gen); }

static void db_img_changed(int64_t id)
{
	uint64_t g = atomic_load(&db_img_gen);
	unsigned slot = g % DB_IMG_RING;

	/* A write touches many rows of one image (properties are rewritten
	 * whole): one entry for them, unless a reader already took it. */
	if (g > db_img_seen_gen && db_img_ring[slot].gen == g && db_img_ring[slot].id == id)
		return;
	g++;
	db_img_ring[g % DB_IMG_RING].gen = g;
	db_img_ring[g % DB_IMG_RING].id = id;
	atomic_store(&db_img_gen, g);
}

static void db_img_changed_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	for (int i = 0; i < argc; i++)
		if (sqlite3_value_type(argv[i]) == SQLITE_INTEGER)
			db_img_changed(sqlite3_value_int64(argv[i]));
	sqlite3_result_null(ctx);
}

/* Readers behind the new generation re-read everything.  db lock held. */
static void db_img_lose_track(void)
{
	db_img_full_gen = atomic_load(&db_img_gen) + 1;
	atomic_store(&db_img_gen, db_img_full_gen);
}

void db_images_touch(void)
{
	db_lock();
	db_img_lose_track();
	db_unlock();
}

/* The connection is going away (db_close, which holds the lock) with our
 * function and triggers: writes on the next one go unseen until a reader
 * installs them there, so every reader must come back and read it all. */
static void db_img_unwatch(void *conn)
{
	if (db_img_watched != conn)
		return;
	db_img_watched = NULL;
	db_img_lose_track();
}

/* TEMP triggers: on this connection only, never written to the file. */
#define DB_IMG_TRIGGER(name, event, table, ids)                                                  \
	"CREATE TEMP TRIGGER IF NOT EXISTS cell_img_" name " AFTER " event " ON " table           \
	" BEGIN SELECT cell_images_changed(" ids "); END;"

static const char db_img_triggers[] =
	DB_IMG_TRIGGER("ins", "INSERT", "images", "new.id")
	DB_IMG_TRIGGER("upd", "UPDATE", "images", "old.id, new.id")
	DB_IMG_TRIGGER("del", "DELETE", "images", "old.id")
	DB_IMG_TRIGGER("prop_ins", "INSERT", "images_properties", "new.image_id")
	DB_IMG_TRIGGER("prop_upd", "UPDATE", "images_properties", "old.image_id, new.image_id")
	DB_IMG_TRIGGER("prop_del", "DELETE", "images_properties", "old.image_id")
	DB_IMG_TRIGGER("alias_ins", "INSERT", "images_aliases", "new.image_id")
	DB_IMG_TRIGGER("alias_upd", "UPDATE", "images_aliases", "old.image_id, new.image_id")
	DB_IMG_TRIGGER("alias_del", "DELETE", "images_aliases", "old.image_id");

static int db_img_watch(void)
{
	sqlite3 *db = db_handle();
	char *msg = NULL;
	int rc;

	/* Inside a transaction the triggers would go with its rollback. */
	if (!db || !sqlite3_get_autocommit(db))
		return -1;
	rc = sqlite3_create_function_v2(db, "cell_images_changed", -1, SQLITE_UTF8 | SQLITE_DIRECTONLY,
					db, db_img_changed_fn, NULL, NULL, db_img_unwatch);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, db_img_triggers, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		static bool warned;
		if (!warned)
			log_warn("images: cannot follow changes to the image tables (%s): every list "
				 "re-reads them", msg ? msg : sqlite3_errstr(rc));
		warned = true;
		sqlite3_free(msg);
		return -1;
	}
	db_img_watched = db;
	/* What happened before the triggers existed is unknown. */
	db_img_lose_track();
	return 0;
}

void db_images_watch(void)
{
	db_lock();
	if (db_img_watched != db_handle())
		db_img_watch();
	db_unlock();
}

static bool delta_add(struct db_images_delta *d, int64_t id)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->ids[i] == id)
			return true;
	if (d->n == DB_IMAGES_DELTA_MAX)
		return false;
	d->ids[d->n++] = id;
	return true;
}

void db_images_changes(uint64_t since, struct db_images_delta *out)
{
	uint64_t g;

	memset(out, 0, sizeof(*out));
	db_lock();
	if (db_img_watched != db_handle() && db_img_watch() < 0) {
		/* Unwatched: gen 0 keeps the reader coming back every time. */
		out->all = true;
		db_unlock();
		return;
	}
	g = atomic_load(&db_img_gen);
	out->gen = g;
	out->all = since < db_img_full_gen || since > g || g - since > DB_IMG_RING;
	for (uint64_t s = since + 1; !out->all && s <= g; s++) {
		unsigned slot = s % DB_IMG_RING;
		out->all = db_img_ring[slot].gen != s || !delta_add(out, db_img_ring[slot].id);
	}
	if (out->all)
		out->n = 0;
	if (g > db_img_seen_gen)
		db_img_seen_gen = g;
	db_unlock();
}

int64_t img_ts_to_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

struct timespec img_ns_to_ts(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL) };

	if (ts.tv_nsec < 0) {
		ts.tv_sec--;
		ts.tv_nsec += 1000000000L;
	}
	return ts;
}

void img_record_clear(struct img_record *r)
{
	if (!r)
		return;
	api_image_free(&r->api);
	memset(r, 0, sizeof(*r));
}

void img_record_list_free(struct img_record *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		img_record_clear(&v[i]);
	free(v);
}

void db_alias_list_free(struct api_image_alias *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		api_image_alias_free(&v[i]);
	free(v);
}

static int oom(cell_error *err) { return cell_err(err, 500, ENOMEM, "out of memory"); }

/* Lower-case hex prefix, or false: anything else cannot name an image. */
static bool fp_prefix_norm(const char *p, char out[65])
{
	size_t n = p ? strlen(p) : 0;

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isxdigit((unsigned char)p[i]))
			return false;
		out[i] = (char)tolower((unsigned char)p[i]);
	}
	out[n] = '\0';
	return true;
}

static char **profiles_parse(const char *text)
{
	_cleanup_json_ json_t *j = NULL;
	char **v;
	size_t i;
	json_t *x;

	/* Nearly every image has the default: skip the JSON parser for it. */
	if (!strcmp(text, "[\"default\"]")) {
		v = calloc(2, sizeof(char *));
		if (v && !(v[0] = strdup("default"))) {
			free(v);
			return NULL;
		}
		return v;
	}
	j = json_loads(text, 0, NULL);
	if (!json_is_array(j))
		return calloc(1, sizeof(char *));
	v = calloc(json_array_size(j) + 1, sizeof(char *));
	if (!v)
		return NULL;
	json_array_foreach(j, i, x)
		v[i] = strdup(json_string_value(x) ?: "");
	return v;
}

static char *profiles_dump(char **v)
{
	_cleanup_json_ json_t *a = json_array();

	if (!v)
		return strdup("[\"default\"]");
	for (char **p = v; a && *p; p++)
		json_array_append_new(a, json_string(*p));
	return a ? json_dumps(a, JSON_COMPACT) : NULL;
}

static int row_to_record(sqlite3_stmt *st, struct img_record *r, cell_error *err)
{
	const char *us;

	memset(r, 0, sizeof(*r));
	r->id = sqlite3_column_int64(st, 0);
	r->api.fingerprint = db_col_strdup(st, 1);
	r->api.type = db_col_strdup(st, 2);
	r->api.filename = db_col_strdup(st, 3);
	r->api.size = sqlite3_column_int64(st, 4);
	r->meta_size = sqlite3_column_int64(st, 5);
	r->split = sqlite3_column_int(st, 6) != 0;
	r->api.public = sqlite3_column_int(st, 7) != 0;
	r->api.auto_update = sqlite3_column_int(st, 8) != 0;
	r->api.cached = sqlite3_column_int(st, 9) != 0;
	r->api.architecture = db_col_strdup(st, 10);
	r->api.created_at = img_ns_to_ts(sqlite3_column_int64(st, 11));
	r->api.expires_at = img_ns_to_ts(sqlite3_column_int64(st, 12));
	r->api.uploaded_at = img_ns_to_ts(sqlite3_column_int64(st, 13));
	r->api.last_used_at = img_ns_to_ts(sqlite3_column_int64(st, 14));
	us = db_col_text(st, 15);
	if (*us)
		r->api.update_source = json_loads(us, 0, NULL);
	r->api.profiles = profiles_parse(db_col_text(st, 16));
	r->api.properties = json_object();
	if (!r->api.fingerprint || !r->api.type || !r->api.filename || !r->api.architecture ||
	    !r->api.profiles || !r->api.properties)
		return oom(err);
	return 0;
}

/* Index of the record with this id (records sorted by id on the side). */
struct id_index { int64_t id; size_t pos; };

static int id_cmp(const void *a, const void *b)
{
	int64_t x = ((const struct id_index *)a)->id, y = ((const struct id_index *)b)->id;
	return x < y ? -1 : x > y;
}

static struct img_record *find_by_id(struct id_index *idx, size_t n, struct img_record *v, int64_t id)
{
	struct id_index key = { id, 0 }, *hit;

	hit = bsearch(&key, idx, n, sizeof(*idx), id_cmp);
	return hit ? &v[hit->pos] : NULL;
}

static int load_properties(struct img_record *v, size_t n, struct id_index *idx, const char *where,
			   cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ char *sql = NULL;
	int rc;

	/* Sorted by key as Go marshals a map (LXD's order), and the same
	 * whichever plan SQLite picks for `where`. */
	sql = xasprintf("SELECT image_id, key, value FROM images_properties%s ORDER BY image_id, key",
			where);
	if (!sql)
		return oom(err);
	if ((rc = db_stmt(&st, err, sql, NULL)) < 0)
		return rc;
	while ((rc = db_step(st, err)) == 1) {
		struct img_record *r = find_by_id(idx, n, v, sqlite3_column_int64(st, 0));
		if (r && json_object_set_new(r->api.properties, db_col_text(st, 1),
					     json_string(db_col_text(st, 2))) < 0)
			return oom(err);
	}
	return rc;
}

static int load_aliases(struct img_record *v, size_t n, struct id_index *idx, const char *where,
			cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ char *sql = NULL;
	int rc;

	sql = xasprintf("SELECT image_id, name, description FROM images_aliases%s ORDER BY name",
			   where);
	if (!sql)
		return oom(err);
	if ((rc = db_stmt(&st, err, sql, NULL)) < 0)
		return rc;
	while ((rc = db_step(st, err)) == 1) {
		struct img_record *r = find_by_id(idx, n, v, sqlite3_column_int64(st, 0));
		struct api_image_alias *na;
		if (!r)
			continue;
		na = realloc(r->api.aliases, (r->api.n_aliases + 1) * sizeof(*na));
		if (!na)
			return oom(err);
		r->api.aliases = na;
		na[r->api.n_aliases] = (struct api_image_alias){ .name = db_col_strdup(st, 1),
								  .description = db_col_strdup(st, 2) };
		r->api.n_aliases++;
		if (!na[r->api.n_aliases - 1].name || !na[r->api.n_aliases - 1].description)
			return oom(err);
	}
	return rc;
}

/* Rows of `sql` (selecting IMG_COLS) with their properties and aliases;
 * `sub_where` restricts the side tables to the same images. */
static int load_records(const char *sql, const char *types, const char *arg, const char *sub_where,
			struct img_record **out, size_t *n, cell_error *err)
{
	_cleanup_free_ struct id_index *idx = NULL;
	struct img_record *v = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	{
		_cleanup_stmt_ sqlite3_stmt *st = NULL;
		if ((rc = db_stmt(&st, err, sql, types, arg)) < 0)
			return rc;
		while ((rc = db_step(st, err)) == 1) {
			if (cnt == cap) {
				struct img_record *nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));
				if (!nv) {
					rc = oom(err);
					break;
				}
				v = nv;
			}
			rc = row_to_record(st, &v[cnt++], err);
			if (rc < 0)
				break;
		}
	}
	if (rc == 0 && cnt) {
		idx = calloc(cnt, sizeof(*idx));
		if (!idx)
			rc = oom(err);
		for (size_t i = 0; idx && i < cnt; i++)
			idx[i] = (struct id_index){ v[i].id, i };
		if (idx)
			qsort(idx, cnt, sizeof(*idx), id_cmp);
		if (rc == 0)
			rc = load_properties(v, cnt, idx, sub_where, err);
		if (rc == 0)
			rc = load_aliases(v, cnt, idx, sub_where, err);
	}
	if (rc < 0) {
		img_record_list_free(v, cnt);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

int db_image_list(struct img_record **out, size_t *n, bool public_only, cell_error *err)
{
	int rc;

	*out = NULL;
	*n = 0;
	db_lock();
	rc = load_records(public_only ? "SELECT " IMG_COLS " FROM images WHERE public = 1 ORDER BY fingerprint"
				      : "SELECT " IMG_COLS " FROM images ORDER BY fingerprint",
			  NULL, NULL,
			  public_only ? " WHERE image_id IN (SELECT id FROM images WHERE public = 1)" : "",
			  out, n, err);
	db_unlock();
	return rc < 0 ? cell_err_wrap(err, rc, "list images") : 0;
}

/* "1,2,3": integers only reach the SQL text. */
static char *id_list(const int64_t *ids, size_t n)
{
	char *s = malloc(n * 21 + 1), *p = s;

	for (size_t i = 0; s && i < n; i++)
		p += sprintf(p, "%s%lld", i ? "," : "", (long long)ids[i]);
	return s;
}

int db_image_list_ids(const int64_t *ids, size_t n_ids, struct img_record **out, size_t *n,
		      cell_error *err)
{
	_cleanup_free_ char *list = NULL, *sql = NULL, *where = NULL;
	int rc;

	*out = NULL;
	*n = 0;
	if (!n_ids)
		return 0;
	list = id_list(ids, n_ids);
	sql = list ? xasprintf("SELECT " IMG_COLS " FROM images WHERE id IN (%s) ORDER BY fingerprint", list)
		   : NULL;
	where = list ? xasprintf(" WHERE image_id IN (%s)", list) : NULL;
	if (!sql || !where)
		return oom(err);
	db_lock();
	rc = load_records(sql, NULL, NULL, where, out, n, err);
	db_unlock();
	return rc < 0 ? cell_err_wrap(err, rc, "list images") : 0;
}

int db_image_get(const char *fp_prefix, bool public_only, struct img_record *out, cell_error *err)
{
	struct img_record *v = NULL;
	_cleanup_free_ char *where = NULL;
	char fp[65];
	size_t n = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!fp_prefix_norm(fp_prefix, fp))
		return cell_err(err, 404, ENOENT, "Image not found");
	/* Only hex reaches the SQL text below, so the prefix needs no escaping. */
	where = xasprintf(" WHERE image_id IN (SELECT id FROM images WHERE fingerprint LIKE '%s%%'%s)",
			     fp, public_only ? " AND public = 1" : "");
	if (!where)
		return oom(err);
	db_lock();
	rc = load_records(public_only ? "SELECT " IMG_COLS " FROM images WHERE fingerprint LIKE ? || '%' "
				      "AND public = 1 ORDER BY fingerprint LIMIT 2"
				      : "SELECT " IMG_COLS " FROM images WHERE fingerprint LIKE ? || '%' "
				      "ORDER BY fingerprint LIMIT 2",
			  "s", fp, where, &v, &n, err);
	db_unlock();
	if (rc < 0)
		return rc;
	if (n != 1) {
		img_record_list_free(v, n);
		return n == 0 ? cell_err(err, 404, ENOENT, "Image not found")
			      : cell_err(err, 400, EINVAL, "More than one image matches");
	}
	*out = v[0];
	free(v);
	return 0;
}

int db_image_exists(const char *fp, cell_error *err)
{
	int64_t one = 0;
	int rc = db_query_int(&one, err, "SELECT 1 FROM images WHERE fingerprint = ?", "s", fp);
	return rc < 0 ? rc : rc == 1;
}

static int put_properties(int64_t id, json_t *props, cell_error *err)
{
	const char *k;
	json_t *v;
	int rc;

	if ((rc = db_exec(err, "DELETE FROM images_properties WHERE image_id = ?", "i", id)) < 0)
		return rc;
	json_object_foreach(props, k, v) {
		rc = db_exec(err, "INSERT INTO images_properties (image_id, key, value) VALUES (?, ?, ?)",
			     "iss", id, k, json_string_value(v) ?: "");
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int image_insert_tx(void *data, cell_error *err)
{
	struct img_record *r = data;
	const struct api_image *a = &r->api;
	_cleanup_free_ char *profiles = profiles_dump(a->profiles);
	_cleanup_free_ char *us = a->update_source ? json_dumps(a->update_source, JSON_COMPACT) : NULL;
	int64_t id = 0;
	int rc;

	if (!profiles)
		return oom(err);
	rc = db_exec(err,
		     "INSERT INTO images (fingerprint, type, filename, size, meta_size, split, public, "
		     "auto_update, cached, architecture, created_at, expires_at, uploaded_at, "
		     "last_used_at, update_source, profiles) "
		     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		     "sssiidddds" "iiii" "ss", a->fingerprint, a->type ?: "container", a->filename ?: "",
		     (int64_t)a->size, r->meta_size, (int)r->split, (int)a->public, (int)a->auto_update,
		     (int)a->cached, a->architecture ?: "", img_ts_to_ns(&a->created_at),
		     img_ts_to_ns(&a->expires_at), img_ts_to_ns(&a->uploaded_at),
		     img_ts_to_ns(&a->last_used_at), us, profiles);
	if (rc < 0)
		return rc == -EEXIST ? cell_err(err, 409, EEXIST, "Image with same fingerprint already exists")
				     : rc;
	if ((rc = db_query_int(&id, err, "SELECT last_insert_rowid()", NULL)) < 0)
		return rc;
	r->id = id;
	if ((rc = put_properties(id, a->properties, err)) < 0)
		return rc;
	for (size_t i = 0; i < a->n_aliases; i++) {
		rc = db_exec(err, "INSERT INTO images_aliases (name, image_id, description) VALUES (?, ?, ?)",
			     "sis", a->aliases[i].name, id, a->aliases[i].description ?: "");
		if (rc == -EEXIST)
			return cell_err(err, 409, EEXIST, "Alias already exists: %s", a->aliases[i].name);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int db_image_insert(struct img_record *r, cell_error *err)
{
	return db_tx(image_insert_tx, r, err);
}

static int image_update_tx(void *data, cell_error *err)
{
	const struct img_record *r = data;
	_cleanup_free_ char *profiles = profiles_dump(r->api.profiles);
	int64_t id = 0;
	int rc;

	if (!profiles)
		return oom(err);
	rc = db_query_int(&id, err, "SELECT id FROM images WHERE fingerprint = ?", "s", r->api.fingerprint);
	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Image not found");
	if (rc < 0)
		return rc;
	rc = db_exec(err, "UPDATE images SET public = ?, auto_update = ?, expires_at = ?, profiles = ? "
		     "WHERE id = ?", "ddisi", (int)r->api.public, (int)r->api.auto_update,
		     img_ts_to_ns(&r->api.expires_at), profiles, id);
	if (rc < 0)
		return rc;
	return put_properties(id, r->api.properties, err);
}

int db_image_update(const struct img_record *r, cell_error *err)
{
	return db_tx(image_update_tx, (void *)r, err);
}

int db_image_delete(const char *fp, cell_error *err)
{
	int rc = db_exec(err, "DELETE FROM images WHERE fingerprint = ?", "s", fp);

	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Image not found");
	return rc < 0 ? rc : 0;
}

int db_image_set_last_used(const char *fp, const struct timespec *when, cell_error *err)
{
	int rc = db_exec(err, "UPDATE images SET last_used_at = ? WHERE fingerprint = ?", "is",
			 img_ts_to_ns(when), fp);

	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Image not found");
	return rc < 0 ? rc : 0;
}

static int strv_push(char ***v, size_t *n, const char *s)
{
	char **nv = realloc(*v, (*n + 2) * sizeof(char *));

	if (!nv)
		return -ENOMEM;
	*v = nv;
	nv[*n] = strdup(s);
	nv[*n + 1] = NULL;
	if (!nv[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

int db_image_expired(int64_t before_ns, char ***out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	char **v = NULL;
	size_t n = 0;
	int rc;

	*out = NULL;
	rc = db_stmt(&st, err,
		     "SELECT fingerprint FROM images WHERE cached = 1 AND "
		     "(CASE WHEN last_used_at != 0 THEN last_used_at ELSE uploaded_at END) < ? "
		     "ORDER BY fingerprint", "i", before_ns);
	if (rc < 0)
		return rc;
	while ((rc = db_step(st, err)) == 1)
		if (strv_push(&v, &n, db_col_text(st, 0)) < 0) {
			rc = oom(err);
			break;
		}
	if (rc < 0) {
		cell_strvfreep(&v);
		return rc;
	}
	*out = v;
	return 0;
}

int db_image_files(struct db_image_files **out, size_t *n, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct db_image_files *v = NULL;
	size_t cnt = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = db_stmt(&st, err, "SELECT fingerprint, split, size, meta_size FROM images", NULL);
	if (rc < 0)
		return rc;
	while ((rc = db_step(st, err)) == 1) {
		struct db_image_files *nv = realloc(v, (cnt + 1) * sizeof(*v));
		if (!nv) {
			rc = oom(err);
			break;
		}
		v = nv;
		snprintf(v[cnt].fingerprint, sizeof(v[cnt].fingerprint), "%s", db_col_text(st, 0));
		v[cnt].split = sqlite3_column_int(st, 1) != 0;
		v[cnt].size = sqlite3_column_int64(st, 2);
		v[cnt].meta_size = sqlite3_column_int64(st, 3);
		cnt++;
	}
	if (rc < 0) {
		free(v);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

/* ---- aliases -------------------------------------------------------------- */

#define ALIAS_SELECT                                                                              \
	"SELECT a.name, a.description, i.fingerprint, i.type FROM images_aliases a "              \
	"JOIN images i ON i.id = a.image_id"

static int alias_from_row(sqlite3_stmt *st, struct api_image_alias *a, cell_error *err)
{
	*a = (struct api_image_alias){ .name = db_col_strdup(st, 0), .description = db_col_strdup(st, 1),
				       .target = db_col_strdup(st, 2), .type = db_col_strdup(st, 3) };
	if (!a->name || !a->description || !a->target || !a->type)
		return oom(err);
	return 0;
}

int db_alias_list(struct api_image_alias **out, size_t *n, bool public_only, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct api_image_alias *v = NULL;
	size_t cnt = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = db_stmt(&st, err, public_only ? ALIAS_SELECT " WHERE i.public = 1 ORDER BY a.name"
					   : ALIAS_SELECT " ORDER BY a.name", NULL);
	if (rc < 0)
		return rc;
	while ((rc = db_step(st, err)) == 1) {
		struct api_image_alias *nv = realloc(v, (cnt + 1) * sizeof(*v));
		if (!nv) {
			rc = oom(err);
			break;
		}
		v = nv;
		rc = alias_from_row(st, &v[cnt++], err);
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		db_alias_list_free(v, cnt);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

int db_alias_get(const char *name, bool public_only, struct api_image_alias *out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = db_stmt(&st, err, public_only ? ALIAS_SELECT " WHERE a.name = ? AND i.public = 1"
					   : ALIAS_SELECT " WHERE a.name = ?", "s", name);
	if (rc < 0)
		return rc;
	rc = db_step(st, err);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Image alias not found");
	if ((rc = alias_from_row(st, out, err)) < 0)
		api_image_alias_free(out);
	return rc;
}

/* The id of the single image a fingerprint prefix names. */
static int image_id_of(const char *target, int64_t *id, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	char fp[65];
	int rc;

	if (!fp_prefix_norm(target, fp))
		return cell_err(err, 404, ENOENT, "Image not found");
	rc = db_stmt(&st, err, "SELECT id FROM images WHERE fingerprint LIKE ? || '%' LIMIT 2", "s", fp);
	if (rc < 0)
		return rc;
	if ((rc = db_step(st, err)) < 0)
		return rc;
	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Image not found");
	*id = sqlite3_column_int64(st, 0);
	if ((rc = db_step(st, err)) < 0)
		return rc;
	if (rc == 1)
		return cell_err(err, 400, EINVAL, "More than one image matches");
	return 0;
}

struct alias_args { const char *name, *target, *description, *new_name; };

static int alias_add_tx(void *data, cell_error *err)
{
	struct alias_args *a = data;
	int64_t id = 0, one;
	int rc;

	if ((rc = db_query_int(&one, err, "SELECT 1 FROM images_aliases WHERE name = ?", "s", a->name)) < 0)
		return rc;
	if (rc == 1)
		return cell_err(err, 409, EEXIST, "Alias \"%s\" already exists", a->name);
	if ((rc = image_id_of(a->target, &id, err)) < 0)
		return rc;
	rc = db_exec(err, "INSERT INTO images_aliases (name, image_id, description) VALUES (?, ?, ?)",
		     "sis", a->name, id, a->description ?: "");
	return rc < 0 ? rc : 0;
}

int db_alias_add(const char *name, const char *target, const char *description, cell_error *err)
{
	struct alias_args a = { .name = name, .target = target, .description = description };
	return db_tx(alias_add_tx, &a, err);
}

static int alias_update_tx(void *data, cell_error *err)
{
	struct alias_args *a = data;
	int64_t id = 0;
	int rc;

	if ((rc = image_id_of(a->target, &id, err)) < 0)
		return rc;
	rc = db_exec(err, "UPDATE images_aliases SET image_id = ?, description = ? WHERE name = ?", "iss",
		     id, a->description ?: "", a->name);
	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Image alias not found");
	return rc < 0 ? rc : 0;
}

int db_alias_update(const char *name, const char *target, const char *description, cell_error *err)
{
	struct alias_args a = { .name = name, .target = target, .description = description };
	return db_tx(alias_update_tx, &a, err);
}

static int alias_rename_tx(void *data, cell_error *err)
{
	struct alias_args *a = data;
	int64_t one;
	int rc;

	if ((rc = db_query_int(&one, err, "SELECT 1 FROM images_aliases WHERE name = ?", "s", a->new_name)) < 0)
		return rc;
	if (rc == 1)
		return cell_err(err, 409, EEXIST, "Alias \"%s\" already exists", a->new_name);
	rc = db_exec(err, "UPDATE images_aliases SET name = ? WHERE name = ?", "ss", a->new_name, a->name);
	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Image alias not found");
	return rc < 0 ? rc : 0;
}

int db_alias_rename(const char *name, const char *new_name, cell_error *err)
{
	struct alias_args a = { .name = name, .new_name = new_name };
	return db_tx(alias_rename_tx, &a, err);
}

int db_alias_delete(const char *name, cell_error *err)
{
	int rc = db_exec(err, "DELETE FROM images_aliases WHERE name = ?", "s", name);

	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Image alias not found");
	return rc < 0 ? rc : 0;
}
