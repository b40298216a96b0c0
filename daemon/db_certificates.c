#include "daemon/db.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"

#define CERT_COLS "fingerprint, type, name, certificate, restricted"

void db_cert_clear(struct db_cert *c)
{
	if (!c)
		return;
	free(c->name);
	free(c->certificate);
	cell_strvfreep(&c->projects);
	memset(c, 0, sizeof(*c));
}

void db_cert_list_free(struct db_cert *certs, size_t n)
{
	for (size_t i = 0; certs && i < n; i++)
		db_cert_clear(&certs[i]);
	free(certs);
}

static int cert_projects_load(struct db_cert *c, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	size_t n = 0;
	int rc;

	rc = db_stmt(&st, err,
		     "SELECT project FROM certificates_projects WHERE fingerprint = ? ORDER BY project",
		     "s", c->fingerprint);
	if (rc < 0)
		return rc;
	while ((rc = db_step(st, err)) == 1) {
		char **nv = realloc(c->projects, (n + 2) * sizeof(char *));
		if (!nv)
			return cell_err(err, 500, ENOMEM, "out of memory");
		c->projects = nv;
		c->projects[n] = db_col_strdup(st, 0);
		c->projects[++n] = NULL;
		if (!c->projects[n - 1])
			return cell_err(err, 500, ENOMEM, "out of memory");
	}
	return rc;
}

/* Fill `c` from a row selected with CERT_COLS. */
static int cert_from_row(sqlite3_stmt *st, struct db_cert *c, cell_error *err)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->fingerprint, sizeof(c->fingerprint), "%s", db_col_text(st, 0));
	snprintf(c->type, sizeof(c->type), "%s", db_col_text(st, 1));
	c->name = db_col_strdup(st, 2);
	c->certificate = db_col_strdup(st, 3);
	c->restricted = sqlite3_column_int(st, 4) != 0;
	if (!c->name || !c->certificate)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return 0;
}

static int cert_list_locked(struct db_cert **out, size_t *n, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct db_cert *v = NULL;
	size_t cnt = 0;
	int rc;

	rc = db_stmt(&st, err, "SELECT " CERT_COLS " FROM certificates ORDER BY fingerprint", NULL);
	if (rc < 0)
		return rc;
	while ((rc = db_step(st, err)) == 1) {
		struct db_cert *nv = realloc(v, (cnt + 1) * sizeof(*v));
		if (!nv) {
			rc = cell_err(err, 500, ENOMEM, "out of memory");
			break;
		}
		v = nv;
		rc = cert_from_row(st, &v[cnt++], err);
		if (rc == 0)
			rc = cert_projects_load(&v[cnt - 1], err);
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		db_cert_list_free(v, cnt);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

int db_cert_list(struct db_cert **out, size_t *n, cell_error *err)
{
	int rc;

	*out = NULL;
	*n = 0;
	/* Held across both queries so a concurrent writer cannot interleave. */
	db_lock();
	rc = cert_list_locked(out, n, err);
	db_unlock();
	return rc < 0 ? cell_err_wrap(err, rc, "list certificates") : 0;
}

/* Only lower-case hex can be a stored fingerprint: anything else (including
 * LIKE wildcards) cannot match, so it is "not found" without a query. */
static bool fp_prefix_ok(const char *p, char out[DB_FP_LEN + 1])
{
	size_t n = strlen(p);

	if (n == 0 || n > DB_FP_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isxdigit((unsigned char)p[i]))
			return false;
		out[i] = (char)tolower((unsigned char)p[i]);
	}
	out[n] = '\0';
	return true;
}

static int cert_get_locked(const char *prefix, struct db_cert *out, cell_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc;

	rc = db_stmt(&st, err,
		     "SELECT " CERT_COLS " FROM certificates WHERE fingerprint LIKE ? || '%' "
		     "ORDER BY fingerprint LIMIT 2", "s", prefix);
	if (rc < 0)
		return rc;
	rc = db_step(st, err);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Certificate not found");
	rc = cert_from_row(st, out, err);
	if (rc == 0)
		rc = db_step(st, err);
	if (rc == 1)
		rc = cell_err(err, 400, EINVAL, "More than one certificate matches");
	if (rc == 0)
		rc = cert_projects_load(out, err);
	if (rc < 0)
		db_cert_clear(out);
	return rc;
}

int db_cert_get(const char *fp_prefix, struct db_cert *out, cell_error *err)
{
	char prefix[DB_FP_LEN + 1];
	int rc;

	memset(out, 0, sizeof(*out));
	if (!fp_prefix_ok(fp_prefix, prefix))
		return cell_err(err, 404, ENOENT, "Certificate not found");
	db_lock();
	rc = cert_get_locked(prefix, out, err);
	db_unlock();
	return rc;
}

int db_cert_exists(const char *fp, cell_error *err)
{
	int64_t one;
	return db_query_int(&one, err, "SELECT 1 FROM certificates WHERE fingerprint = ?", "s", fp);
}

static int cert_projects_write(const struct db_cert *c, cell_error *err)
{
	int rc = db_exec(err, "DELETE FROM certificates_projects WHERE fingerprint = ?", "s",
			 c->fingerprint);

	for (char **p = c->projects; rc >= 0 && p && *p; p++)
		rc = db_exec(err, "INSERT OR IGNORE INTO certificates_projects (fingerprint, project) "
			     "VALUES (?, ?)", "ss", c->fingerprint, *p);
	return rc < 0 ? rc : 0;
}

static int cert_add_tx(void *data, cell_error *err)
{
	const struct db_cert *c = data;
	int rc = db_exec(err, "INSERT INTO certificates (" CERT_COLS ") VALUES (?, ?, ?, ?, ?)",
			 "ssssd", c->fingerprint, c->type, c->name ? c->name : "",
			 c->certificate, (int)c->restricted);

	if (rc < 0 && err && err->status == 409)
		return cell_err(err, 409, EEXIST, "Certificate already in trust store");
	if (rc < 0)
		return rc;
	return cert_projects_write(c, err);
}

int db_cert_add(const struct db_cert *c, cell_error *err)
{
	cell_error local;

	/* Conflicts are detected from the error status, so always have one. */
	if (!err)
		err = &local;
	return db_tx(cert_add_tx, (void *)c, err);
}

struct cert_update { const char *fp; const struct db_cert *c; };

static int cert_update_tx(void *data, cell_error *err)
{
	const struct cert_update *u = data;
	const struct db_cert *c = u->c;
	int rc;

	rc = db_exec(err, "UPDATE certificates SET fingerprint = ?, type = ?, name = ?, "
		     "certificate = ?, restricted = ? WHERE fingerprint = ?", "ssssds",
		     c->fingerprint, c->type, c->name ? c->name : "", c->certificate,
		     (int)c->restricted, u->fp);
	if (rc < 0 && err->status == 409)
		return cell_err(err, 409, EEXIST, "Certificate already in trust store");
	if (rc < 0)
		return rc;
	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Certificate not found");
	return cert_projects_write(c, err);
}

int db_cert_update(const char *fp, const struct db_cert *c, cell_error *err)
{
	struct cert_update u = { fp, c };
	cell_error local;

	if (!err)
		err = &local;
	return db_tx(cert_update_tx, &u, err);
}

int db_cert_delete(const char *fp, cell_error *err)
{
	int rc = db_exec(err, "DELETE FROM certificates WHERE fingerprint = ?", "s", fp);

	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Certificate not found");
	return rc < 0 ? rc : 0;
}
