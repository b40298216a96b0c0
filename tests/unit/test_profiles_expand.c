/* Profile expansion order and the profile model's refusals, on a real
 * database in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "daemon/db.h"
#include "db_fixture.h"
#include "daemon/profiles.h"

static int setup(void **state)
{
	return db_fixture_open();
}

static int teardown(void **state)
{
	profiles_set_hooks(NULL);
	db_fixture_close();
	return 0;
}

static json_t *J(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);

	if (!j)
		fail_msg("bad test JSON %s: %s", text, je.text);
	return j;
}

static void assert_json_eq(json_t *got, const char *want)
{
	_cleanup_json_ json_t *w = J(want);
	if (!json_equal(got, w)) {
		char *g = json_dumps(got, JSON_SORT_KEYS);
		fail_msg("got %s, want %s", g, want);
	}
}

static void add_profile(const char *name, const char *config, const char *devices)
{
	cell_error err;
	assert_true(db_exec(&err, "INSERT INTO profiles (name, config, devices) VALUES (?, ?, ?)",
			    "sss", name, config, devices) == 1);
}

static int64_t add_instance(const char *name, const char *config, const char *devices,
			    const char *const *profiles)
{
	cell_error err;
	int64_t id = 0;

	assert_int_equal(db_exec(&err, "INSERT INTO instances (name, architecture, created_at, pool,"
				       " config, devices) VALUES (?, 'x86_64', 'now', 'default', ?, ?)",
				 "sss", name, config, devices), 1);
	assert_int_equal(db_query_int(&id, &err, "SELECT id FROM instances WHERE name = ?", "s",
				      name), 1);
	for (int i = 0; profiles && profiles[i]; i++)
		assert_int_equal(db_exec(&err, "INSERT INTO instances_profiles (instance_id, profile_id,"
					       " apply_order) SELECT ?, id, ? FROM profiles WHERE name = ?",
					 "ids", id, i, profiles[i]), 1);
	return id;
}

/* ---- pure expansion ------------------------------------------------------ */

static void test_order_and_local_wins(void **state)
{
	_cleanup_json_ json_t *profiles = J(
		"[{\"config\": {\"limits.cpu\": \"1\", \"user.a\": \"from-a\"},"
		"  \"devices\": {\"eth0\": {\"type\": \"nic\", \"nictype\": \"bridged\","
		"                          \"parent\": \"br0\", \"name\": \"eth0\"},"
		"              \"root\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"a\"}}},"
		" {\"config\": {\"limits.cpu\": \"2\", \"user.b\": \"from-b\"},"
		"  \"devices\": {\"eth0\": {\"type\": \"nic\", \"nictype\": \"p2p\"}}}]");
	_cleanup_json_ json_t *config = J("{\"user.b\": \"local\"}");
	_cleanup_json_ json_t *devices = J("{\"root\": {\"type\": \"disk\", \"path\": \"/\","
					   " \"pool\": \"local\"}}");
	_cleanup_json_ json_t *ec = NULL, *ed = NULL;
	cell_error err;

	assert_int_equal(profiles_expand_objs(profiles, config, devices, &ec, &ed, &err), 0);
	/* Later profiles win over earlier ones, local config over both. */
	assert_json_eq(ec, "{\"limits.cpu\": \"2\", \"user.a\": \"from-a\", \"user.b\": \"local\"}");
	/* A device is replaced whole: no "parent" left over from the first profile. */
	assert_json_eq(ed, "{\"eth0\": {\"type\": \"nic\", \"nictype\": \"p2p\"},"
			   " \"root\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"local\"}}");
}

static void test_results_are_copies(void **state)
{
	_cleanup_json_ json_t *profiles = J("[{\"config\": {\"user.x\": \"1\"},"
					    "  \"devices\": {\"d\": {\"type\": \"none\"}}}]");
	_cleanup_json_ json_t *ec = NULL, *ed = NULL;
	cell_error err;

	assert_int_equal(profiles_expand_objs(profiles, NULL, NULL, &ec, &ed, &err), 0);
	json_object_set_new(ec, "user.x", json_string("changed"));
	json_object_set_new(json_object_get(ed, "d"), "type", json_string("disk"));
	assert_json_eq(profiles, "[{\"config\": {\"user.x\": \"1\"},"
				 "  \"devices\": {\"d\": {\"type\": \"none\"}}}]");
}

static void test_empty_and_bad_shapes(void **state)
{
	_cleanup_json_ json_t *ec = NULL, *ed = NULL, *notlist = J("{}"), *badcfg = J("[1]");
	_cleanup_json_ json_t *badobj = J("[{\"config\": \"x\"}]");
	json_t *x = NULL, *y = NULL;
	cell_error err;

	assert_int_equal(profiles_expand_objs(NULL, NULL, NULL, &ec, &ed, &err), 0);
	assert_json_eq(ec, "{}");
	assert_json_eq(ed, "{}");
	assert_true(profiles_expand_objs(notlist, NULL, NULL, &x, &y, &err) < 0);
	assert_int_equal(err.status, 400);
	/* A profile that is not an object contributes nothing. */
	assert_int_equal(profiles_expand_objs(badcfg, NULL, NULL, &x, &y, &err), 0);
	json_decref(x);
	json_decref(y);
	assert_true(profiles_expand_objs(badobj, NULL, NULL, &x, &y, &err) < 0);
	assert_int_equal(err.status, 400);
}

/* ---- from the database ------------------------------------------------------ */

static void test_expand_by_name(void **state)
{
	_cleanup_json_ json_t *ab = J("[\"a\", \"b\"]"), *ba = J("[\"b\", \"a\"]");
	_cleanup_json_ json_t *missing = J("[\"a\", \"nope\"]"), *local = J("{\"user.k\": \"L\"}");
	json_t *ec = NULL, *ed = NULL;
	cell_error err;

	add_profile("a", "{\"user.k\": \"A\", \"user.a\": \"1\"}", "{}");
	add_profile("b", "{\"user.k\": \"B\"}", "{}");
	assert_int_equal(profiles_expand(ab, NULL, NULL, &ec, &ed, &err), 0);
	assert_json_eq(ec, "{\"user.k\": \"B\", \"user.a\": \"1\"}");
	json_decref(ec);
	json_decref(ed);
	assert_int_equal(profiles_expand(ba, NULL, NULL, &ec, &ed, &err), 0);
	assert_json_eq(ec, "{\"user.k\": \"A\", \"user.a\": \"1\"}");
	json_decref(ec);
	json_decref(ed);
	assert_int_equal(profiles_expand(ab, local, NULL, &ec, &ed, &err), 0);
	assert_json_eq(ec, "{\"user.k\": \"L\", \"user.a\": \"1\"}");
	json_decref(ec);
	json_decref(ed);
	assert_true(profiles_expand(missing, NULL, NULL, &ec, &ed, &err) < 0);
	assert_int_equal(err.status, 404);
	assert_non_null(strstr(err.msg, "nope"));
}

static void test_check_exist(void **state)
{
	_cleanup_json_ json_t *ok = J("[\"a\"]"), *dup = J("[\"a\", \"a\"]"), *num = J("[1]");
	_cleanup_json_ json_t *missing = J("[\"zz\"]"), *obj = J("{}");
	cell_error err;

	add_profile("a", "{}", "{}");
	assert_int_equal(profiles_check_exist(ok, &err), 0);
	assert_int_equal(profiles_check_exist(NULL, &err), 0);
	assert_true(profiles_check_exist(dup, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_true(profiles_check_exist(num, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_true(profiles_check_exist(obj, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_true(profiles_check_exist(missing, &err) < 0);
	assert_int_equal(err.status, 404);
	assert_non_null(strstr(err.msg, "zz"));
}

static void test_init_once(void **state)
{
	int64_t n = 0;
	cell_error err;

	assert_int_equal(profiles_init(&err), 0);
	assert_int_equal(profiles_init(&err), 0);
	assert_int_equal(db_query_int(&n, &err, "SELECT COUNT(*) FROM profiles WHERE name = 'default'",
				      NULL), 1);
	assert_int_equal(n, 1);
}

/* ---- the model's refusals --------------------------------------------------- */

static const char *stored_config(const char *name, char *buf, size_t n)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;

	assert_int_equal(db_stmt(&st, NULL, "SELECT config || devices FROM profiles WHERE name = ?",
				 "s", name), 0);
	assert_int_equal(db_step(st, NULL), 1);
	snprintf(buf, n, "%s", db_col_text(st, 0));
	return buf;
}

static void test_bad_input_changes_nothing(void **state)
{
	_cleanup_json_ json_t *vol = J("{\"volatile.x\": \"1\"}"), *img = J("{\"image.os\": \"x\"}");
	_cleanup_json_ json_t *unknown = J("{\"nope.key\": \"1\"}"), *badval = J("{\"limits.cpu\": \"x\"}");
	_cleanup_json_ json_t *nopool = J("{\"root\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"p\"}}");
	_cleanup_json_ json_t *good = J("{\"limits.cpu\": \"2\", \"user.gone\": \"\"}");
	char before[256], after[256];
	cell_error err;

	assert_int_equal(profiles_create("p1", "", good, NULL, &err), 0);
	/* "" unsets: it is not stored. */
	assert_string_equal(stored_config("p1", before, sizeof(before)), "{\"limits.cpu\":\"2\"}{}");
	assert_true(profiles_create("p1", "", NULL, NULL, &err) < 0);
	assert_int_equal(err.status, 409);
	assert_true(profiles_create("a/b", "", NULL, NULL, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_true(profiles_create("..", "", NULL, NULL, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_true(profiles_create("", "", NULL, NULL, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_true(profiles_create("bad\nname", "", NULL, NULL, &err) < 0);
	assert_int_equal(err.status, 400);
	json_t *bad[] = { vol, img, unknown, badval };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(profiles_update("p1", "x", bad[i], NULL, &err) < 0);
		assert_int_equal(err.status, 400);
	}
	/* No pool by that name exists (no pools in this test). */
	assert_true(profiles_update("p1", "x", NULL, nopool, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_non_null(strstr(err.msg, "\"p\""));
	assert_string_equal(stored_config("p1", after, sizeof(after)), before);
	assert_true(profiles_update("nope", "", NULL, NULL, &err) < 0);
	assert_int_equal(err.status, 404);
}

static void test_default_is_protected(void **state)
{
	cell_error err;

	assert_int_equal(profiles_init(&err), 0);
	assert_true(profiles_delete("default", &err) < 0);
	assert_int_equal(err.status, 403);
	assert_true(profiles_rename("default", "other", &err) < 0);
	assert_int_equal(err.status, 403);
}

static int check_calls;

static int refuse_check(const char *profile, json_t *c, json_t *d, cell_error *err)
{
	check_calls++;
	return cell_err(err, 400, 1, "hook says no to %s", profile);
}

static void test_users_keep_working(void **state)
{
	static const char *const uses[] = { "base", "extra", NULL };
	_cleanup_json_ json_t *noroot = J("{}");
	_cleanup_json_ json_t *clash = J("{\"d1\": {\"type\": \"disk\", \"source\": \"/tmp\","
					 " \"path\": \"/mnt\"}}");
	_cleanup_json_ json_t *fine = J("{\"user.ok\": \"1\"}");
	char before[256];
	cell_error err;

	add_profile("base", "{}", "{\"root\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"default\"}}");
	add_profile("extra", "{}", "{}");
	add_instance("c1", "{}", "{\"local\": {\"type\": \"disk\", \"source\": \"/srv\","
				 " \"path\": \"/mnt\"}}", uses);
	stored_config("base", before, sizeof(before));
	/* c1 takes its root disk from "base". */
	assert_true(profiles_update("base", "", NULL, noroot, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_non_null(strstr(err.msg, "root disk"));
	/* Two disks on /mnt once expanded. */
	assert_true(profiles_update("extra", "", NULL, clash, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_non_null(strstr(err.msg, "c1"));
	/* In use: no delete. */
	assert_true(profiles_delete("extra", &err) < 0);
	assert_int_equal(err.status, 400);
	assert_string_equal(err.msg, "Profile is currently in use");
	/* The hook is asked and its no is final. */
	profiles_set_hooks(&(struct profile_hooks){ .check = refuse_check });
	assert_true(profiles_update("extra", "", fine, NULL, &err) < 0);
	assert_int_equal(check_calls, 1);
	assert_non_null(strstr(err.msg, "hook says no"));
	profiles_set_hooks(NULL);
	assert_int_equal(profiles_update("extra", "", fine, NULL, &err), 0);
}

static char changed_name[32], renamed_from[32], renamed_to[32];

static void on_changed(const char *profile)
{
	snprintf(changed_name, sizeof(changed_name), "%s", profile);
}

static void on_renamed(const char *oldname, const char *newname)
{
	snprintf(renamed_from, sizeof(renamed_from), "%s", oldname);
	snprintf(renamed_to, sizeof(renamed_to), "%s", newname);
}

static void test_hooks_after_commit(void **state)
{
	_cleanup_json_ json_t *bad = J("{\"nope\": \"1\"}"), *good = J("{\"user.a\": \"1\"}");
	cell_error err;

	add_profile("h", "{}", "{}");
	profiles_set_hooks(&(struct profile_hooks){ .changed = on_changed, .renamed = on_renamed });
	/* Refused changes call nothing. */
	assert_true(profiles_update("h", "", bad, NULL, &err) < 0);
	assert_true(profiles_rename("h", "a/b", &err) < 0);
	assert_string_equal(changed_name, "");
	assert_string_equal(renamed_from, "");
	assert_int_equal(profiles_update("h", "", good, NULL, &err), 0);
	assert_string_equal(changed_name, "h");
	assert_int_equal(profiles_rename("h", "h2", &err), 0);
	assert_string_equal(renamed_from, "h");
	assert_string_equal(renamed_to, "h2");
}

static void test_rename_follows(void **state)
{
	_cleanup_json_ json_t *list = J("[\"new\"]"), *p = NULL;
	cell_error err;
	int64_t id;

	add_profile("old", "{\"user.x\": \"1\"}", "{}");
	add_profile("taken", "{}", "{}");
	id = add_instance("c1", "{}", "{}", (const char *const[]){ "old", NULL });
	assert_int_equal(db_exec(&err, "INSERT INTO instances_snapshots (instance_id, name, created_at,"
				       " profiles) VALUES (?, 's1', 'now', '[\"old\",\"other\"]')",
				 "i", id), 1);
	assert_true(profiles_rename("old", "taken", &err) < 0);
	assert_int_equal(err.status, 409);
	assert_int_equal(profiles_rename("old", "new", &err), 0);
	assert_int_equal(profiles_check_exist(list, &err), 0);
	assert_int_equal(profiles_get_json("new", &p, &err), 0);
	assert_json_eq(json_object_get(p, "used_by"), "[\"/1.0/instances/c1\"]");
	{
		_cleanup_stmt_ sqlite3_stmt *st = NULL;
		assert_int_equal(db_stmt(&st, NULL, "SELECT profiles FROM instances_snapshots", NULL), 0);
		assert_int_equal(db_step(st, NULL), 1);
		assert_string_equal(db_col_text(st, 0), "[\"new\",\"other\"]");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_and_local_wins),
		cmocka_unit_test(test_results_are_copies),
		cmocka_unit_test(test_empty_and_bad_shapes),
		cmocka_unit_test_setup_teardown(test_expand_by_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_exist, setup, teardown),
		cmocka_unit_test_setup_teardown(test_init_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_is_protected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_users_keep_working, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename_follows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hooks_after_commit, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
