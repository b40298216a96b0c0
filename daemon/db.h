/*
 * The daemon's database: SQLite in WAL mode at $CELL_DIR/database/local.db.
 *
 * One connection serves the whole process (opened SQLITE_OPEN_FULLMUTEX).
 * Because a connection has one transaction state, every statement and every
 * transaction holds the process-wide db lock (recursive) from prepare to
 * finalize: a worker's transaction can never swallow a statement run by the
 * loop thread meanwhile.  Keep statements and transactions short; nothing
 * slow (I/O beyond the database, network) runs while holding a statement.
 *
 * The schema is versioned: db.c holds an ordered array of migrations, each
 * applied once, in its own transaction, at db_open.  Adding a table is one
 * new array entry; never edit an entry that has shipped.
 *
 * Errors: 500 unless noted; "not found" is 404, constraint violations 409.
 */
#ifndef CELL_DAEMON_DB_H
#define CELL_DAEMON_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <sqlite3.h>

#include "common/error.h"

/* Open (creating the directory 0700 and the file), configure, migrate. */
int db_open(const char *cell_dir, cell_error *err);
void db_close(void);
/* Number of migrations this build knows; the schema version after db_open. */
int db_schema_latest(void);
/* Version recorded in the open database (for tests and diagnostics). */
int db_schema_version(cell_error *err);

/* ---- statements ---------------------------------------------------------
 * db_stmt prepares `sql` and binds arguments described by `types`, one char
 * per `?` in order:
 *   's' const char *   (NULL binds SQL NULL)
 *   'i' int64_t
 *   'd' int            (also used for bools)
 *   'n' nothing taken  (binds SQL NULL)
 * The statement holds the db lock until db_finalize (or _cleanup_stmt_).
 */
int db_stmt(sqlite3_stmt **out, cell_error *err, const char *sql, const char *types, ...);
void db_finalize(sqlite3_stmt *st);
static inline void db_finalizep(sqlite3_stmt **st)
{
	if (*st)
		db_finalize(*st);
}
#define _cleanup_stmt_ __attribute__((cleanup(db_finalizep)))

/* Step once: 1 when a row is ready, 0 when done, <0 with err filled. */
int db_step(sqlite3_stmt *st, cell_error *err);
/* Prepare, bind and run a statement that returns no rows.  Returns the
 * number of rows changed (>= 0), or <0 with err (409 on a constraint). */
int db_exec(cell_error *err, const char *sql, const char *types, ...);
/* Run one query expected to return at most one row and one integer column:
 * 1 and *out set when a row came back, 0 when none. */
int db_query_int(int64_t *out, cell_error *err, const char *sql, const char *types, ...);
/* Column text, "" for NULL (never NULL while the row is current). */
const char *db_col_text(sqlite3_stmt *st, int col);
/* Column text as a malloc'd copy; NULL only on out-of-memory. */
char *db_col_strdup(sqlite3_stmt *st, int col);

/* ---- transactions -------------------------------------------------------
 * Runs fn inside BEGIN IMMEDIATE ... COMMIT, holding the db lock: rolled
 * back when fn returns <0 (its err is kept).  Nested calls (fn calling a
 * function that itself uses db_tx) join the outer transaction.
 */
typedef int (*db_tx_fn)(void *data, cell_error *err);
int db_tx(db_tx_fn fn, void *data, cell_error *err);

/* The lock itself, for callers composing several statements by hand. */
void db_lock(void);
void db_unlock(void);
/* Raw handle (lock held by the caller) for what the helpers do not cover. */
sqlite3 *db_handle(void);

/* ---- config (table `config`) -------------------------------------------- */
/* All rows as a JSON object of strings (new reference). */
int db_config_get_all(json_t **out, cell_error *err);
/* Replace every row with `values` (object of strings) in one transaction;
 * a non-string value is a 400 and nothing is written. */
int db_config_replace(json_t *values, cell_error *err);

/* ---- certificates (tables `certificates`, `certificates_projects`) ------ */
#define DB_FP_LEN 64

struct db_cert {
	char fingerprint[DB_FP_LEN + 1];   /* SHA-256 of the DER, lower-case hex */
	char type[16];                     /* API type name: "client" */
	char *name;
	char *certificate;                 /* PEM */
	bool restricted;
	char **projects;                   /* NULL-terminated; NULL means none */
};

void db_cert_clear(struct db_cert *c);   /* frees members, not c */
void db_cert_list_free(struct db_cert *certs, size_t n);

int db_cert_list(struct db_cert **out, size_t *n, cell_error *err);
/* Exact fingerprint or a unique prefix of one (as LXD): 404 when none,
 * 400 when the prefix is ambiguous. */
int db_cert_get(const char *fp_prefix, struct db_cert *out, cell_error *err);
/* 1 when present, 0 when not, <0 on error. Exact fingerprint only. */
int db_cert_exists(const char *fp, cell_error *err);
/* 409 "Certificate already in trust store" when the fingerprint exists. */
int db_cert_add(const struct db_cert *c, cell_error *err);
/* Replace the record stored under `fp` with `c` (whose fingerprint may
 * differ when the certificate itself changes); 404 when `fp` is unknown. */
int db_cert_update(const char *fp, const struct db_cert *c, cell_error *err);
/* 404 when unknown. */
int db_cert_delete(const char *fp, cell_error *err);

#endif
