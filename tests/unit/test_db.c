#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "daemon/db.h"
#include "db_fixture.h"

static int setup(void **state)
{
	return db_fixture_open();
}

static int teardown(void **state)
{
	db_fixture_close();
	return 0;
}

static void reopen(void)
{
	cell_error err;

	db_close();
	assert_int_equal(db_open(db_fixture_dir, &err), 0);
}

static const char *pragma_text(const char *sql, char *buf, size_t n)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;

	assert_int_equal(db_stmt(&st, NULL, sql, NULL), 0);
	assert_int_equal(db_step(st, NULL), 1);
	snprintf(buf, n, "%s", db_col_text(st, 0));
	return buf;
}

static void fake_fp(char out[65], char c, int variant)
{
	memset(out, c, 64);
	out[63] = (char)('0' + variant);
	out[64] = '\0';
}

static void test_open_configures(void **state)
{
	_cleanup_free_ char *dir = xasprintf("%s/database", db_fixture_dir);
	_cleanup_free_ char *file = xasprintf("%s/database/local.db", db_fixture_dir);
	struct stat st;
	char buf[32];

	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 0077, 0);
	assert_string_equal(pragma_text("PRAGMA journal_mode", buf, sizeof(buf)), "wal");
	assert_string_equal(pragma_text("PRAGMA foreign_keys", buf, sizeof(buf)), "1");
	assert_string_equal(pragma_text("PRAGMA synchronous", buf, sizeof(buf)), "1");
	assert_int_equal(db_schema_version(NULL), db_schema_latest());
	assert_true(db_schema_latest() >= 1);
}

static void test_reopen_keeps_data_and_schema(void **state)
{
	json_t *cfg = json_pack("{s:s}", "core.https_address", ":8443"), *got = NULL;
	struct db_cert c = { .type = "client", .name = "n", .certificate = "PEM" };
	int64_t rows = 0;

	fake_fp(c.fingerprint, 'a', 1);
	assert_int_equal(db_config_replace(cfg, NULL), 0);
	assert_int_equal(db_cert_add(&c, NULL), 0);
	/* Each reopen runs the migration check again; nothing is re-applied. */
	reopen();
	reopen();
	assert_int_equal(db_schema_version(NULL), db_schema_latest());
	assert_int_equal(db_query_int(&rows, NULL, "SELECT COUNT(*) FROM schema", NULL), 1);
	assert_int_equal(rows, db_schema_latest());
	assert_int_equal(db_config_get_all(&got, NULL), 0);
	assert_true(json_equal(got, cfg));
	assert_int_equal(db_cert_exists(c.fingerprint, NULL), 1);
	json_decref(cfg);
	json_decref(got);
}

static void test_newer_schema_refused(void **state)
{
	cell_error err;

	assert_true(db_exec(NULL, "INSERT INTO schema (version, updated_at) VALUES (?, 0)", "i",
			    (int64_t)db_schema_latest() + 1) == 1);
	db_close();
	assert_true(db_open(db_fixture_dir, &err) < 0);
	assert_non_null(strstr(err.msg, "newer"));
	/* Failed open leaves nothing half-open. */
	assert_true(db_exec(NULL, "SELECT 1", NULL) < 0);
}

static int tx_insert_then_fail(void *data, cell_error *err)
{
	int rc = db_exec(err, "INSERT INTO config (key, value) VALUES (?, 'v')", "s",
			 (const char *)data);
	return rc < 0 ? rc : cell_err(err, 400, EINVAL, "refused");
}

static int tx_outer(void *data, cell_error *err)
{
	cell_error inner;
	int rc = db_exec(err, "INSERT INTO config (key, value) VALUES ('outer', 'v')", NULL);

	if (rc < 0)
		return rc;
	/* The inner failure is handled: only its own work is undone. */
	assert_true(db_tx(tx_insert_then_fail, "inner", &inner) < 0);
	return 0;
}

static void test_tx_rollback_and_nesting(void **state)
{
	cell_error err;
	int64_t n = -1;

	assert_true(db_tx(tx_insert_then_fail, "k1", &err) < 0);
	assert_string_equal(err.msg, "refused");
	assert_int_equal(err.status, 400);
	assert_int_equal(db_query_int(&n, NULL, "SELECT COUNT(*) FROM config", NULL), 1);
	assert_int_equal(n, 0);

	assert_int_equal(db_tx(tx_outer, NULL, &err), 0);
	assert_int_equal(db_query_int(&n, NULL, "SELECT COUNT(*) FROM config WHERE key = 'outer'", NULL), 1);
	assert_int_equal(n, 1);
	assert_int_equal(db_query_int(&n, NULL, "SELECT COUNT(*) FROM config WHERE key = 'inner'", NULL), 1);
	assert_int_equal(n, 0);
}

static void test_stmt_helpers(void **state)
{
	int64_t v = 0;
	cell_error err;

	assert_int_equal(db_exec(NULL, "INSERT INTO config VALUES (?, ?), (?, ?)", "ssss", "a", "1",
				 "b", "2"), 2);
	assert_int_equal(db_exec(NULL, "UPDATE config SET value = ? WHERE key = ?", "ds", 7, "a"), 1);
	assert_int_equal(db_query_int(&v, NULL, "SELECT value FROM config WHERE key = ?", "s", "a"), 1);
	assert_int_equal(v, 7);
	assert_int_equal(db_query_int(&v, NULL, "SELECT 1 FROM config WHERE key = ?", "s", "zz"), 0);
	assert_true(db_exec(&err, "INSERT INTO config VALUES ('a', 'dup')", NULL) < 0);
	assert_int_equal(err.status, 409);
	assert_true(db_exec(&err, "SELECT * FROM no_such_table", NULL) < 0);
	assert_int_equal(err.status, 500);
}

static void test_config_replace(void **state)
{
	json_t *a = json_pack("{s:s, s:s}", "k1", "v1", "k2", "v2");
	json_t *b = json_pack("{s:s}", "k3", "v3");
	json_t *bad = json_pack("{s:s, s:i}", "k4", "v4", "k5", 5);
	json_t *got = NULL;
	cell_error err;

	assert_int_equal(db_config_replace(a, NULL), 0);
	assert_int_equal(db_config_replace(b, NULL), 0);
	assert_int_equal(db_config_get_all(&got, NULL), 0);
	assert_true(json_equal(got, b));
	json_decref(got);

	assert_true(db_config_replace(bad, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_int_equal(db_config_get_all(&got, NULL), 0);
	assert_true(json_equal(got, b));
	json_decref(got);
	json_decref(a);
	json_decref(b);
	json_decref(bad);
}

static void test_certificates(void **state)
{
	char *projects[] = { "default", NULL };
	struct db_cert a = { .type = "client", .name = "alpha", .certificate = "PEM-A",
			     .projects = projects, .restricted = true };
	struct db_cert b = { .type = "client", .name = "beta", .certificate = "PEM-B" };
	struct db_cert got, *list = NULL;
	size_t n = 0;
	cell_error err;

	fake_fp(a.fingerprint, 'a', 1);
	fake_fp(b.fingerprint, 'a', 2);
	assert_int_equal(db_cert_add(&a, NULL), 0);
	assert_int_equal(db_cert_add(&b, NULL), 0);
	assert_true(db_cert_add(&a, &err) < 0);
	assert_int_equal(err.status, 409);
	assert_string_equal(err.msg, "Certificate already in trust store");

	/* Prefix lookups: unique, ambiguous, junk. */
	assert_int_equal(db_cert_get(b.fingerprint, &got, NULL), 0);
	assert_string_equal(got.name, "beta");
	assert_null(got.projects);
	db_cert_clear(&got);
	assert_true(db_cert_get("aaaa", &got, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_true(db_cert_get("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1", &got, NULL) == 0);
	assert_string_equal(got.name, "alpha");
	assert_true(got.restricted);
	assert_string_equal(got.projects[0], "default");
	assert_null(got.projects[1]);
	db_cert_clear(&got);
	assert_true(db_cert_get("a%", &got, &err) < 0);
	assert_int_equal(err.status, 404);
	assert_true(db_cert_get("", &got, &err) < 0);
	assert_int_equal(err.status, 404);
	assert_true(db_cert_get("b", &got, &err) < 0);
	assert_string_equal(err.msg, "Certificate not found");

	assert_int_equal(db_cert_list(&list, &n, NULL), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].name, "alpha");
	assert_string_equal(list[1].name, "beta");
	db_cert_list_free(list, n);

	/* Changing the fingerprint carries the project rows along. */
	fake_fp(a.fingerprint, 'c', 1);
	a.name = "alpha2";
	assert_int_equal(db_cert_update("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", &a, NULL), 0);
	assert_int_equal(db_cert_exists("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", NULL), 0);
	assert_int_equal(db_cert_get("c", &got, NULL), 0);
	assert_string_equal(got.name, "alpha2");
	assert_string_equal(got.projects[0], "default");
	db_cert_clear(&got);
	assert_true(db_cert_update(b.fingerprint, &a, &err) < 0);   /* clashes with a */
	assert_int_equal(err.status, 409);
	assert_true(db_cert_update("dddd", &a, &err) < 0);
	assert_int_equal(err.status, 404);

	assert_int_equal(db_cert_delete(a.fingerprint, NULL), 0);
	assert_true(db_cert_delete(a.fingerprint, &err) < 0);
	assert_int_equal(err.status, 404);
	{
		int64_t rows = -1;
		assert_int_equal(db_query_int(&rows, NULL, "SELECT COUNT(*) FROM certificates_projects", NULL), 1);
		assert_int_equal(rows, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_configures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_data_and_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_rollback_and_nesting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stmt_helpers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_replace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_certificates, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
