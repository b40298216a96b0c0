#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "common/passwd.h"
#include "daemon/config.h"
#include "daemon/db.h"
#include "db_fixture.h"

static int setup(void **state)
{
	cell_error err;

	return db_fixture_open() == 0 && config_init(&err) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	config_shutdown();
	db_fixture_close();
	return 0;
}

/* Parse a JSON literal for the tests' requests. */
static json_t *J(const char *text)
{
	json_t *j = json_loads(text, 0, NULL);
	assert_non_null(j);
	return j;
}

static int put(const char *text, cell_error *err)
{
	_cleanup_json_ json_t *j = J(text);
	return config_replace(j, err);
}

static int patch(const char *text, cell_error *err)
{
	_cleanup_json_ json_t *j = J(text);
	return config_patch(j, err);
}

static void assert_shown(const char *text)
{
	_cleanup_json_ json_t *want = J(text), *got = config_to_json();
	if (!json_equal(want, got)) {
		char *s = json_dumps(got, JSON_SORT_KEYS);
		fail_msg("config is %s, want %s", s, text);
	}
}

static void assert_stored(const char *key, const char *value)
{
	_cleanup_json_ json_t *all = NULL;
	json_t *v;

	assert_int_equal(db_config_get_all(&all, NULL), 0);
	v = json_object_get(all, key);
	if (!value)
		assert_null(v);
	else
		assert_string_equal(json_string_value(v), value);
}

static void test_defaults(void **state)
{
	assert_string_equal(config_get("images.auto_update_interval"), "6");
	assert_string_equal(config_get("images.remote_cache_expiry"), "10");
	assert_string_equal(config_get("core.https_address"), "");
	assert_string_equal(config_get("core.trust_password"), "");
	assert_null(config_get("no.such.key"));
	assert_int_equal(config_get_int("images.remote_cache_expiry"), 10);
	assert_false(config_trust_password_set());
	assert_false(config_trust_password_check("anything"));
	assert_shown("{}");
}

static void test_put_replaces(void **state)
{
	assert_int_equal(put("{\"core.https_address\": \"[::1]:9443\","
			     " \"images.remote_cache_expiry\": \"3\"}", NULL), 0);
	assert_string_equal(config_get("core.https_address"), "[::1]:9443");
	assert_int_equal(config_get_int("images.remote_cache_expiry"), 3);
	assert_stored("images.remote_cache_expiry", "3");

	assert_int_equal(put("{\"images.auto_update_interval\": \"12\"}", NULL), 0);
	assert_shown("{\"images.auto_update_interval\": \"12\"}");
	assert_string_equal(config_get("core.https_address"), "");
	assert_string_equal(config_get("images.remote_cache_expiry"), "10");
	assert_stored("core.https_address", NULL);

	assert_int_equal(put("{}", NULL), 0);
	assert_shown("{}");
}

static void test_patch_merges_and_removes(void **state)
{
	assert_int_equal(patch("{\"core.https_address\": \":8443\"}", NULL), 0);
	assert_int_equal(patch("{\"images.auto_update_interval\": \"0\"}", NULL), 0);
	assert_shown("{\"core.https_address\": \":8443\", \"images.auto_update_interval\": \"0\"}");
	/* "" and null both unset, as LXD. */
	assert_int_equal(patch("{\"core.https_address\": \"\"}", NULL), 0);
	assert_int_equal(patch("{\"images.auto_update_interval\": null}", NULL), 0);
	assert_shown("{}");
	assert_stored("core.https_address", NULL);
	/* Setting the default is the same as not setting it. */
	assert_int_equal(patch("{\"images.auto_update_interval\": \"6\"}", NULL), 0);
	assert_shown("{}");
	/* Integers sent as JSON numbers are taken as their text. */
	assert_int_equal(patch("{\"images.auto_update_interval\": 24}", NULL), 0);
	assert_shown("{\"images.auto_update_interval\": \"24\"}");
}

static void test_unknown_key_changes_nothing(void **state)
{
	cell_error err;

	assert_int_equal(patch("{\"images.auto_update_interval\": \"2\"}", NULL), 0);
	assert_true(patch("{\"images.auto_update_interval\": \"3\", \"foo\": \"bar\"}", &err) < 0);
	assert_int_equal(err.status, 400);
	assert_string_equal(err.msg, "cannot set 'foo' to 'bar': unknown key");
	assert_string_equal(config_get("images.auto_update_interval"), "2");
	assert_stored("images.auto_update_interval", "2");

	assert_true(put("{\"core.https_address\": \":1\", \"zzz\": \"1\"}", &err) < 0);
	assert_string_equal(err.msg, "cannot set 'zzz' to '1': unknown key");
	assert_shown("{\"images.auto_update_interval\": \"2\"}");
}

static void test_bad_values(void **state)
{
	cell_error err;

	assert_true(patch("{\"images.auto_update_interval\": \"abc\"}", &err) < 0);
	assert_int_equal(err.status, 400);
	assert_string_equal(err.msg, "cannot set 'images.auto_update_interval' to 'abc': invalid integer");
	assert_true(patch("{\"images.remote_cache_expiry\": \"-1\"}", &err) < 0);
	assert_non_null(strstr(err.msg, "'images.remote_cache_expiry'"));
	assert_true(patch("{\"images.remote_cache_expiry\": 1.5}", &err) < 0);
	assert_non_null(strstr(err.msg, "invalid type"));
	assert_true(patch("{\"core.https_address\": {}}", &err) < 0);
	assert_non_null(strstr(err.msg, "core.https_address"));

	/* Several failures: the first key by name, and a count, as LXD. */
	assert_true(patch("{\"zeta\": \"1\", \"images.auto_update_interval\": \"x\","
			  " \"alpha\": \"2\"}", &err) < 0);
	assert_string_equal(err.msg, "cannot set 'alpha' to '2': unknown key (and 2 more errors)");
	assert_shown("{}");
}

static void test_listen_addresses(void **state)
{
	static const char *const good[] = {
		"127.0.0.1", "127.0.0.1:8443", "[::1]:8443", "::1", ":8443", "[::]", "[::]:1",
		"0.0.0.0:65535", "::", "localhost:8443",
	};
	/* Malformed, or well-formed but impossible to listen on here (the
	 * address is probed before it is committed, as LXD fails to listen). */
	static const char *const bad[] = {
		"1.2.3.4:0", "1.2.3.4:70000", "[::1", "[zz]:1", "a b", "1.2.3.4:abc",
		"-bad.com", "999.1.1.1", "host:", "[::1]x", "1.2.3.4:+80",
		"203.0.113.7:8443", "no-such-host.invalid",
	};
	char host[256];
	int port;
	cell_error err;

	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		char body[128];
		snprintf(body, sizeof(body), "{\"core.https_address\": \"%s\"}", good[i]);
		if (patch(body, &err) < 0)
			fail_msg("%s refused: %s", good[i], err.msg);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char body[128];
		snprintf(body, sizeof(body), "{\"core.https_address\": \"%s\"}", bad[i]);
		if (patch(body, &err) == 0)
			fail_msg("%s accepted", bad[i]);
		assert_int_equal(err.status, 400);
		assert_non_null(strstr(err.msg, "'core.https_address'"));
	}

	assert_int_equal(config_split_address("[::1]:9443", host, sizeof(host), &port, NULL), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 9443);
	assert_int_equal(config_split_address(":8444", host, sizeof(host), &port, NULL), 0);
	assert_string_equal(host, "");
	assert_int_equal(port, 8444);
	assert_int_equal(config_split_address("10.0.0.1", host, sizeof(host), &port, NULL), 0);
	assert_string_equal(host, "10.0.0.1");
	assert_int_equal(port, CONFIG_HTTPS_DEFAULT_PORT);
	assert_int_equal(config_split_address("fd00::2", host, sizeof(host), &port, NULL), 0);
	assert_string_equal(host, "fd00::2");
	assert_int_equal(port, 8443);
}

static void test_trust_password(void **state)
{
	_cleanup_json_ json_t *all = NULL;
	const char *stored;

	assert_int_equal(patch("{\"core.trust_password\": \"s3cret\"}", NULL), 0);
	/* Stored hashed; shown as true; never in clear anywhere. */
	assert_int_equal(db_config_get_all(&all, NULL), 0);
	stored = json_string_value(json_object_get(all, "core.trust_password"));
	assert_non_null(stored);
	assert_int_equal(strlen(stored), PASSWD_HASH_HEXLEN);
	assert_null(strstr(stored, "s3cret"));
	assert_true(passwd_verify("s3cret", stored));
	assert_shown("{\"core.trust_password\": true}");
	assert_true(config_trust_password_set());
	assert_true(config_trust_password_check("s3cret"));
	assert_false(config_trust_password_check("s3creT"));
	assert_false(config_trust_password_check(""));

	/* GET -> PUT round trip: `true` keeps the password. */
	assert_int_equal(put("{\"core.trust_password\": true, \"images.auto_update_interval\": \"1\"}",
			     NULL), 0);
	assert_true(config_trust_password_check("s3cret"));
	/* PATCH with true is a no-op too. */
	assert_int_equal(patch("{\"core.trust_password\": true}", NULL), 0);
	assert_true(config_trust_password_check("s3cret"));
	/* A PUT leaving it out removes it. */
	assert_int_equal(put("{\"images.auto_update_interval\": \"1\"}", NULL), 0);
	assert_false(config_trust_password_set());

	assert_int_equal(patch("{\"core.trust_password\": \"other\"}", NULL), 0);
	assert_true(config_trust_password_check("other"));
	assert_int_equal(patch("{\"core.trust_password\": \"\"}", NULL), 0);
	assert_false(config_trust_password_set());
	assert_shown("{\"images.auto_update_interval\": \"1\"}");
}

static void test_change_in_steps(void **state)
{
	_cleanup_json_ json_t *req = J("{\"core.trust_password\": \"pw\"}");
	_cleanup_json_ json_t *plain = J("{\"images.remote_cache_expiry\": \"2\"}");
	struct config_change *c = NULL;

	assert_int_equal(config_change_new(req, true, &c, NULL), 0);
	assert_true(config_change_needs_hash(c));
	/* Nothing visible before the commit. */
	assert_false(config_trust_password_set());
	assert_int_equal(config_change_hash(c, NULL), 0);
	assert_false(config_change_needs_hash(c));
	/* A change committed meanwhile survives: PATCH applies at commit time. */
	assert_int_equal(config_patch(plain, NULL), 0);
	assert_int_equal(config_change_commit(c, NULL), 0);
	config_change_free(c);
	assert_true(config_trust_password_check("pw"));
	assert_string_equal(config_get("images.remote_cache_expiry"), "2");

	c = NULL;
	assert_int_equal(config_change_new(plain, false, &c, NULL), 0);
	assert_false(config_change_needs_hash(c));
	config_change_free(c);   /* dropped without commit: nothing changes */
	assert_true(config_trust_password_set());
}

struct seen { int calls; char key[64]; char value[64]; };

static void on_change(const char *key, const char *value, void *data)
{
	struct seen *s = data;
	s->calls++;
	snprintf(s->key, sizeof(s->key), "%s", key);
	snprintf(s->value, sizeof(s->value), "%s", value);
}

static void test_change_callbacks(void **state)
{
	struct seen addr = { 0 }, any = { 0 };

	assert_int_equal(config_on_change("core.https_address", on_change, &addr), 0);
	assert_int_equal(config_on_change(NULL, on_change, &any), 0);
	/* A repeated registration counts once. */
	assert_int_equal(config_on_change(NULL, on_change, &any), 0);
	assert_int_equal(patch("{\"core.https_address\": \"127.0.0.1:9000\"}", NULL), 0);
	assert_int_equal(addr.calls, 1);
	assert_string_equal(addr.value, "127.0.0.1:9000");
	assert_int_equal(any.calls, 1);
	/* Same value again: no change, no call. */
	assert_int_equal(patch("{\"core.https_address\": \"127.0.0.1:9000\"}", NULL), 0);
	assert_int_equal(addr.calls, 1);
	assert_int_equal(patch("{\"images.auto_update_interval\": \"3\"}", NULL), 0);
	assert_int_equal(addr.calls, 1);
	assert_int_equal(any.calls, 2);
	assert_string_equal(any.key, "images.auto_update_interval");
	/* Removal reports the default. */
	assert_int_equal(put("{}", NULL), 0);
	assert_int_equal(addr.calls, 2);
	assert_string_equal(addr.value, "");
	assert_int_equal(any.calls, 4);
	/* A refused change calls nobody. */
	assert_true(patch("{\"core.https_address\": \"::1\", \"bad\": \"1\"}", NULL) < 0);
	assert_int_equal(addr.calls, 2);
	assert_int_equal(any.calls, 4);
}

static void test_user_keys_and_reload(void **state)
{
	cell_error err;

	assert_int_equal(patch("{\"user.note\": \"hello\", \"core.https_address\": \":9443\"}", NULL), 0);
	assert_string_equal(config_get("user.note"), "hello");
	assert_true(patch("{\"user.\": \"x\"}", &err) < 0);
	/* A key this build does not know, stored by someone else, is dropped. */
	assert_int_equal(db_exec(NULL, "INSERT INTO config VALUES ('future.key', 'x')", NULL), 1);
	config_shutdown();
	assert_int_equal(config_init(NULL), 0);
	assert_shown("{\"user.note\": \"hello\", \"core.https_address\": \":9443\"}");
	assert_null(config_get("future.key"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_defaults),
		T(test_put_replaces),
		T(test_patch_merges_and_removes),
		T(test_unknown_key_changes_nothing),
		T(test_bad_values),
		T(test_listen_addresses),
		T(test_trust_password),
		T(test_change_in_steps),
		T(test_change_callbacks),
		T(test_user_keys_and_reload),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
