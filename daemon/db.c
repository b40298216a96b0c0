#include "daemon/db.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

/*
 * Migrations, oldest first.  Entry i takes the schema from version i to
 * version i+1.  Append only: a shipped entry is never edited, since
 * databases in the field already ran it.
 */
static const char *const db_migrations[] = {
	/* 1: server config and the trust store */
	"CREATE TABLE config ("
	"  key TEXT PRIMARY KEY NOT NULL,"
	"  value TEXT NOT NULL);"
	"CREATE TABLE certificates ("
	"  fingerprint TEXT PRIMARY KEY NOT NULL,"
	"  type TEXT NOT NULL,"
	"  name TEXT NOT NULL,"
	"  certificate TEXT NOT NULL,"
	"  restricted INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE certificates_projects ("
	"  fingerprint TEXT NOT NULL REFERENCES certificates(fingerprint)"
	"    ON DELETE CASCADE ON UPDATE CASCADE,"
	"  project TEXT NOT NULL,"
	"  PRIMARY KEY (fingerprint, project));",
	/* 2: storage pools, profiles, instances and snapshots.  Config and
	 * devices are JSON objects of strings: always read and written whole. */
	"CREATE TABLE storage_pools ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  name TEXT NOT NULL UNIQUE,"
	"  driver TEXT NOT NULL,"
	"  description TEXT NOT NULL DEFAULT '',"
	"  config TEXT NOT NULL DEFAULT '{}',"
	"  state TEXT NOT NULL DEFAULT 'Created');"
	"CREATE TABLE profiles ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  name TEXT NOT NULL UNIQUE,"
	"  description TEXT NOT NULL DEFAULT '',"
	"  config TEXT NOT NULL DEFAULT '{}',"
	"  devices TEXT NOT NULL DEFAULT '{}');"
	"CREATE TABLE instances ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  name TEXT NOT NULL UNIQUE,"
	"  type TEXT NOT NULL DEFAULT 'container',"
	"  architecture TEXT NOT NULL,"
	"  ephemeral INTEGER NOT NULL DEFAULT 0,"
	"  stateful INTEGER NOT NULL DEFAULT 0,"
	"  description TEXT NOT NULL DEFAULT '',"
	"  created_at TEXT NOT NULL,"
	"  last_used_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',"
	"  pool TEXT NOT NULL,"
	"  config TEXT NOT NULL DEFAULT '{}',"
	"  devices TEXT NOT NULL DEFAULT '{}');"
	"CREATE TABLE instances_profiles ("
	"  instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,"
	"  profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE RESTRICT,"
	"  apply_order INTEGER NOT NULL,"
	"  PRIMARY KEY (instance_id, profile_id));"
	"CREATE TABLE instances_snapshots ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,"
	"  name TEXT NOT NULL,"
	"  created_at TEXT NOT NULL,"
	"  expires_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',"
	"  stateful INTEGER NOT NULL DEFAULT 0,"
	"  description TEXT NOT NULL DEFAULT '',"
	"  config TEXT NOT NULL DEFAULT '{}',"
	"  devices TEXT NOT NULL DEFAULT '{}',"
	"  profiles TEXT NOT NULL DEFAULT '[]',"
	"  UNIQUE (instance_id, name));",
	/* 3: the image store (db_images.c).  Times are unix nanoseconds, 0
	 * for Go's zero time; the files are $CELL_DIR/images/<fingerprint>
	 * (+ ".rootfs" when split). */
	"CREATE TABLE images ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  fingerprint TEXT NOT NULL UNIQUE,"
	"  type TEXT NOT NULL DEFAULT 'container',"
	"  filename TEXT NOT NULL DEFAULT '',"
	"  size INTEGER NOT NULL,"
	"  meta_size INTEGER NOT NULL,"
	"  split INTEGER NOT NULL DEFAULT 0,"
	"  public INTEGER NOT NULL DEFAULT 0,"
	"  auto_update INTEGER NOT NULL DEFAULT 0,"
	"  cached INTEGER NOT NULL DEFAULT 0,"
	"  architecture TEXT NOT NULL,"
	"  created_at INTEGER NOT NULL DEFAULT 0,"
	"  expires_at INTEGER NOT NULL DEFAULT 0,"
	"  uploaded_at INTEGER NOT NULL DEFAULT 0,"
	"  last_used_at INTEGER NOT NULL DEFAULT 0,"
	"  update_source TEXT,"
	"  profiles TEXT NOT NULL DEFAULT '[\"default\"]');"
	"CREATE TABLE images_properties ("
	"  image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,"
	"  key TEXT NOT NULL,"
	"  value TEXT NOT NULL,"
	"  PRIMARY KEY (image_id, key));"
	"CREATE TABLE images_aliases ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  name TEXT NOT NULL UNIQUE,"
	"  image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,"
	"  description TEXT NOT NULL DEFAULT '');",
};

static sqlite3 *db_conn;
static pthread_mutex_t db_mutex = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
/* Transaction nesting depth; only touched with db_mutex held. */
static int db_tx_depth;

void db_lock(void) { pthread_mutex_lock(&db_mutex); }
void db_unlock(void) { pthread_mutex_unlock(&db_mutex); }
sqlite3 *db_handle(void) { return db_conn; }
int db_schema_latest(void) { return (int)ARRAY_SIZE(db_migrations); }

static int db_errstatus(int rc)
{
	return (rc & 0xff) == SQLITE_CONSTRAINT ? 409 : 500;
}

static int db_fail(cell_error *err, int rc, const char *what)
{
	return cell_err(err, db_errstatus(rc), (rc & 0xff) == SQLITE_CONSTRAINT ? EEXIST : EIO,
			"%s: %s", what, db_conn ? sqlite3_errmsg(db_conn) : sqlite3_errstr(rc));
}

static int db_bind_va(sqlite3_stmt *st, const char *types, va_list ap)
{
	int idx = 1, rc = SQLITE_OK;

	for (const char *t = types ? types : ""; *t && rc == SQLITE_OK; t++, idx++) {
		switch (*t) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			rc = s ? sqlite3_bind_text(st, idx, s, -1, SQLITE_TRANSIENT)
			       : sqlite3_bind_null(st, idx);
			break;
		}
		case 'i':
			rc = sqlite3_bind_int64(st, idx, va_arg(ap, int64_t));
			break;
		case 'd':
			rc = sqlite3_bind_int(st, idx, va_arg(ap, int));
			break;
		case 'n':
			rc = sqlite3_bind_null(st, idx);
			break;
		default:
			return SQLITE_MISUSE;
		}
	}
	return rc;
}

static int db_stmt_va(sqlite3_stmt **out, cell_error *err, const char *sql, const char *types,
		      va_list ap)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*out = NULL;
	if (!db_conn)
		return cell_err(err, 500, ENODEV, "database is not open");
	db_lock();
	rc = sqlite3_prepare_v2(db_conn, sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		rc = db_fail(err, rc, "prepare");
		db_unlock();
		return rc;
	}
	rc = db_bind_va(st, types, ap);
	if (rc != SQLITE_OK) {
		rc = db_fail(err, rc, "bind");
		sqlite3_finalize(st);
		db_unlock();
		return rc;
	}
	*out = st;
	return 0;
}

int db_stmt(sqlite3_stmt **out, cell_error *err, const char *sql, const char *types, ...)
{
	va_list ap;
	int rc;

	va_start(ap, types);
	rc = db_stmt_va(out, err, sql, types, ap);
	va_end(ap);
	return rc;
}

void db_finalize(sqlite3_stmt *st)
{
	if (!st)
		return;
	sqlite3_finalize(st);
	db_unlock();
}

int db_step(sqlite3_stmt *st, cell_error *err)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return db_fail(err, rc, "query");
}

int db_exec(cell_error *err, const char *sql, const char *types, ...)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	va_list ap;
	int rc;

	va_start(ap, types);
	rc = db_stmt_va(&st, err, sql, types, ap);
	va_end(ap);
	if (rc < 0)
		return rc;
	rc = db_step(st, err);
	if (rc < 0)
		return rc;
	return sqlite3_changes(db_conn);
}

int db_query_int(int64_t *out, cell_error *err, const char *sql, const char *types, ...)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	va_list ap;
	int rc;

	va_start(ap, types);
	rc = db_stmt_va(&st, err, sql, types, ap);
	va_end(ap);
	if (rc < 0)
		return rc;
	rc = db_step(st, err);
	if (rc == 1)
		*out = sqlite3_column_int64(st, 0);
	return rc;
}

const char *db_col_text(sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);
	return s ? (const char *)s : "";
}

char *db_col_strdup(sqlite3_stmt *st, int col)
{
	return strdup(db_col_text(st, col));
}

/* Statement without bindings or rows, possibly several separated by ';'. */
static int db_exec_script(const char *sql, cell_error *err)
{
	char *msg = NULL;
	int rc;

	db_lock();
	rc = sqlite3_exec(db_conn, sql, NULL, NULL, &msg);
	db_unlock();
	if (rc != SQLITE_OK) {
		rc = cell_err(err, db_errstatus(rc), EIO, "%s", msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return rc;
	}
	return 0;
}

/* Nested transactions become savepoints so an inner failure that the
 * caller handles does not undo the outer work. */
static int db_tx_begin(cell_error *err)
{
	return db_exec_script(db_tx_depth ? "SAVEPOINT cell_tx" : "BEGIN IMMEDIATE", err);
}

static int db_tx_end(bool ok, cell_error *err)
{
	if (ok)
		return db_exec_script(db_tx_depth ? "RELEASE cell_tx" : "COMMIT", err);
	/* Rolling back can fail only when SQLite already did it for us. */
	db_exec_script(db_tx_depth ? "ROLLBACK TO cell_tx; RELEASE cell_tx" : "ROLLBACK", NULL);
	return 0;
}

int db_tx(db_tx_fn fn, void *data, cell_error *err)
{
	int rc;

	if (!db_conn)
		return cell_err(err, 500, ENODEV, "database is not open");
	db_lock();
	rc = db_tx_begin(err);
	if (rc < 0) {
		db_unlock();
		return cell_err_wrap(err, rc, "begin transaction");
	}
	db_tx_depth++;
	rc = fn(data, err);
	db_tx_depth--;
	if (rc >= 0) {
		int crc = db_tx_end(true, err);
		if (crc < 0) {
			db_tx_end(false, NULL);
			rc = cell_err_wrap(err, crc, "commit");
		}
	} else {
		db_tx_end(false, NULL);
	}
	db_unlock();
	return rc;
}

/* ---- open and migrate --------------------------------------------------- */

int db_schema_version(cell_error *err)
{
	int64_t v = 0;
	int rc = db_query_int(&v, err, "SELECT COALESCE(MAX(version), 0) FROM schema", NULL);
	return rc < 0 ? rc : (int)v;
}

struct db_migration { int version; const char *sql; };

static int db_apply_one(void *data, cell_error *err)
{
	const struct db_migration *m = data;
	int rc = db_exec_script(m->sql, err);

	if (rc < 0)
		return rc;
	rc = db_exec(err, "INSERT INTO schema (version, updated_at) VALUES (?, ?)", "ii",
		     (int64_t)m->version, (int64_t)time(NULL));
	return rc < 0 ? rc : 0;
}

static int db_migrate(cell_error *err)
{
	int cur, latest = db_schema_latest(), rc;

	rc = db_exec_script("CREATE TABLE IF NOT EXISTS schema ("
			    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
			    "  version INTEGER NOT NULL UNIQUE,"
			    "  updated_at INTEGER NOT NULL)", err);
	if (rc < 0)
		return cell_err_wrap(err, rc, "create schema table");
	cur = db_schema_version(err);
	if (cur < 0)
		return cell_err_wrap(err, cur, "read schema version");
	if (cur > latest)
		return cell_err(err, 500, EPROTO,
				"database schema version %d is newer than this celld supports (%d)",
				cur, latest);
	for (int v = cur; v < latest; v++) {
		struct db_migration m = { .version = v + 1, .sql = db_migrations[v] };
		rc = db_tx(db_apply_one, &m, err);
		if (rc < 0)
			return cell_err_wrap(err, rc, "migrate schema to version %d", v + 1);
		log_info("database: schema updated to version %d", v + 1);
	}
	return 0;
}

static int db_pragmas(cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc;

	/* journal_mode answers with the mode in effect; anything but WAL means
	 * the file system refused it and readers would block writers. */
	rc = db_stmt(&st, err, "PRAGMA journal_mode=WAL", NULL);
	if (rc < 0)
		return rc;
	rc = db_step(st, err);
	if (rc < 0)
		return rc;
	if (rc == 0 || strcmp(db_col_text(st, 0), "wal"))
		return cell_err(err, 500, EIO, "cannot enable WAL journal mode");
	return db_exec_script("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", err);
}

static int db_open_file(const char *dir, cell_error *err)
{
	_cleanup_free_ char *path = xasprintf("%s/local.db", dir);
	int rc;

	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	rc = sqlite3_open_v2(path, &db_conn,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = cell_err(err, 500, EIO, "open %s: %s", path,
			      db_conn ? sqlite3_errmsg(db_conn) : sqlite3_errstr(rc));
		sqlite3_close(db_conn);
		db_conn = NULL;
		return rc;
	}
	/* The trust store and password hash live here: owner only. */
	if (chmod(path, 0600) < 0)
		log_warn("database: chmod %s: %m", path);
	sqlite3_busy_timeout(db_conn, 5000);
	return 0;
}

int db_open(const char *cell_dir, cell_error *err)
{
	_cleanup_free_ char *dir = xasprintf("%s/database", cell_dir);
	int rc;

	if (db_conn)
		return cell_err(err, 500, EALREADY, "database already open");
	if (!dir)
		return cell_err(err, 500, ENOMEM, "out of memory");
	rc = util_mkdir_p(dir, 0700, err);
	if (rc < 0)
		return rc;
	if (chmod(dir, 0700) < 0)
		return cell_err_sys(err, 500, errno, "chmod %s", dir);
	rc = db_open_file(dir, err);
	if (rc == 0)
		rc = db_pragmas(err);
	if (rc == 0)
		rc = db_migrate(err);
	if (rc < 0) {
		db_close();
		return cell_err_wrap(err, rc, "database");
	}
	return 0;
}

void db_close(void)
{
	db_lock();
	if (db_conn) {
		/* sqlite3_close_v2 defers while statements are live; with our
		 * lock none can be, so this checkpoints and closes now. */
		sqlite3_close_v2(db_conn);
		db_conn = NULL;
	}
	db_unlock();
}
