/* YAML <-> JSON (common/yaml_util.c): LXD-like output and typed/string parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/yaml_util.h"

static void assert_yaml(json_t *v, unsigned flags, const char *expect)
{
	_cleanup_free_ char *out = yaml_dump_json(v, flags);
	assert_non_null(out);
	assert_string_equal(out, expect);
}

static json_t *parse(const char *text, const struct yaml_parse_opts *o)
{
	cell_error err = {0};
	json_t *j = NULL;
	int rc = yaml_parse_json(text, strlen(text), o, &j, &err);
	if (rc < 0)
		fail_msg("parse failed: %s", err.msg);
	return j;
}

static void test_emit_block(void **state)
{
	_cleanup_json_ json_t *v = json_loads(
		"{\"config\":{\"core.https_address\":\"127.0.0.1:8443\",\"images.auto_update_interval\":\"6\"},"
		"\"api_extensions\":[\"storage_zfs_remove_snapshots\",\"container_host_shutdown_timeout\"],"
		"\"api_status\":\"stable\",\"auth\":\"trusted\",\"public\":false,\"server_pid\":1234,"
		"\"env\":{},\"list\":[],\"nothing\":null,\"ratio\":1.5,"
		"\"nested\":[{\"a\":1,\"b\":[\"x\"]}]}",
		0, NULL);

	assert_non_null(v);
	assert_yaml(v, 0,
		    "config:\n"
		    "  core.https_address: 127.0.0.1:8443\n"
		    "  images.auto_update_interval: \"6\"\n"
		    "api_extensions:\n"
		    "- storage_zfs_remove_snapshots\n"
		    "- container_host_shutdown_timeout\n"
		    "api_status: stable\n"
		    "auth: trusted\n"
		    "public: false\n"
		    "server_pid: 1234\n"
		    "env: {}\n"
		    "list: []\n"
		    "nothing: null\n"
		    "ratio: 1.5\n"
		    "nested:\n"
		    "- a: 1\n"
		    "  b:\n"
		    "  - x\n");
}

static void test_emit_quoting(void **state)
{
	_cleanup_json_ json_t *v = json_pack(
		"{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "empty", "", "bool",
		"true", "yes", "yes", "off", "off", "int", "123", "neg", "-5", "float", "1.5e3", "hex", "0x1F",
		"colon", "foo: bar", "hash", "a #b", "null", "null", "date", "2023-01-01", "lead", "- x", "plain",
		"hello world");

	assert_yaml(v, 0,
		    "empty: \"\"\n"
		    "bool: \"true\"\n"
		    "\"yes\": \"yes\"\n"
		    "\"off\": \"off\"\n"
		    "int: \"123\"\n"
		    "neg: \"-5\"\n"
		    "float: \"1.5e3\"\n"
		    "hex: \"0x1F\"\n"
		    "colon: 'foo: bar'\n"
		    "hash: 'a #b'\n"
		    "\"null\": \"null\"\n"
		    "date: \"2023-01-01\"\n"
		    "lead: '- x'\n"
		    "plain: hello world\n");
}

static void test_emit_multiline_and_sort(void **state)
{
	_cleanup_json_ json_t *v = json_pack("{s:s, s:s, s:s}", "zeta", "z", "certificate",
					     "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
					     "alpha", "a");

	assert_yaml(v, YAML_EMIT_SORT_KEYS,
		    "alpha: a\n"
		    "certificate: |\n"
		    "  -----BEGIN CERTIFICATE-----\n"
		    "  MIIB\n"
		    "  -----END CERTIFICATE-----\n"
		    "zeta: z\n");
}

static void test_emit_scalars_top(void **state)
{
	_cleanup_json_ json_t *s = json_string("word");
	_cleanup_json_ json_t *n = json_null();
	_cleanup_json_ json_t *arr = json_array();

	assert_yaml(s, 0, "word\n");
	assert_yaml(n, 0, "null\n");
	assert_yaml(arr, 0, "[]\n");
}

static void test_emit_long_line_not_folded(void **state)
{
	char longs[301];
	memset(longs, 'a', 300);
	longs[300] = '\0';
	for (int i = 10; i < 300; i += 11)
		longs[i] = ' ';
	_cleanup_json_ json_t *v = json_pack("{s:s}", "k", longs);
	_cleanup_free_ char *out = yaml_dump_json(v, 0);
	assert_non_null(out);
	assert_int_equal(strlen(out), strlen("k: ") + 300 + 1);
}

static void test_parse_typed(void **state)
{
	_cleanup_json_ json_t *j = parse("a: 1\n"
					 "b: -42\n"
					 "c: true\n"
					 "d: False\n"
					 "e: ~\n"
					 "f:\n"
					 "g: 1.25\n"
					 "h: \"12\"\n"
					 "i: '1'\n"
					 "j: yes\n"
					 "k: 0755\n"
					 "l: 0x10\n"
					 "m: 10.0.0.1\n"
					 "n: 1e3\n"
					 "o: [1, two]\n"
					 "p: {q: r}\n"
					 "s: !!str 5\n",
					 NULL);

	assert_int_equal(json_integer_value(json_object_get(j, "a")), 1);
	assert_int_equal(json_integer_value(json_object_get(j, "b")), -42);
	assert_true(json_is_true(json_object_get(j, "c")));
	assert_true(json_is_false(json_object_get(j, "d")));
	assert_true(json_is_null(json_object_get(j, "e")));
	assert_true(json_is_null(json_object_get(j, "f")));
	assert_true(json_is_real(json_object_get(j, "g")));
	assert_string_equal(json_string_value(json_object_get(j, "h")), "12");
	assert_string_equal(json_string_value(json_object_get(j, "i")), "1");
	assert_string_equal(json_string_value(json_object_get(j, "j")), "yes");
	assert_string_equal(json_string_value(json_object_get(j, "k")), "0755");
	assert_int_equal(json_integer_value(json_object_get(j, "l")), 16);
	assert_string_equal(json_string_value(json_object_get(j, "m")), "10.0.0.1");
	assert_true(json_is_real(json_object_get(j, "n")));
	assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "o"), 0)), 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(j, "o"), 1)), "two");
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "p"), "q")), "r");
	assert_string_equal(json_string_value(json_object_get(j, "s")), "5");
}

static void test_parse_strings(void **state)
{
	static const char text[] = "config:\n"
				   "  limits.cpu: 2\n"
				   "  security.nesting: true\n"
				   "  empty:\n"
				   "devices:\n"
				   "  root:\n"
				   "    size: 10\n"
				   "ephemeral: false\n"
				   "count: 3\n";
	static const char *const keys[] = { "config", "devices", NULL };
	struct yaml_parse_opts by_key = { .string_keys = keys };
	struct yaml_parse_opts all = { .all_strings = true };
	_cleanup_json_ json_t *j = parse(text, &by_key);
	_cleanup_json_ json_t *k = parse(text, &all);
	json_t *cfg = json_object_get(j, "config");

	assert_string_equal(json_string_value(json_object_get(cfg, "limits.cpu")), "2");
	assert_string_equal(json_string_value(json_object_get(cfg, "security.nesting")), "true");
	assert_string_equal(json_string_value(json_object_get(cfg, "empty")), "");
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(json_object_get(j, "devices"), "root"), "size")),
		"10");
	assert_true(json_is_false(json_object_get(j, "ephemeral")));
	assert_int_equal(json_integer_value(json_object_get(j, "count")), 3);

	assert_string_equal(json_string_value(json_object_get(k, "ephemeral")), "false");
	assert_string_equal(json_string_value(json_object_get(k, "count")), "3");
}

static void test_parse_anchors_and_docs(void **state)
{
	_cleanup_json_ json_t *j = parse("base: &b {x: 1, y: 2}\n"
					 "copy: *b\n"
					 "merged:\n"
					 "  <<: *b\n"
					 "  y: 3\n",
					 NULL);
	_cleanup_json_ json_t *empty = parse("", NULL);
	_cleanup_json_ json_t *comment = parse("# nothing here\n", NULL);
	_cleanup_json_ json_t *multi = parse("---\na: 1\n---\nb: 2\n", NULL);
	json_t *m = json_object_get(j, "merged");

	assert_true(json_equal(json_object_get(j, "base"), json_object_get(j, "copy")));
	assert_int_equal(json_integer_value(json_object_get(m, "x")), 1);
	assert_int_equal(json_integer_value(json_object_get(m, "y")), 3);
	assert_true(json_is_null(empty));
	assert_true(json_is_null(comment));
	assert_int_equal(json_integer_value(json_object_get(multi, "a")), 1);
	assert_null(json_object_get(multi, "b"));
}

static void test_parse_errors(void **state)
{
	cell_error err = {0};
	json_t *j = NULL;
	static const char bad[] = "a: 1\nb: [1, 2\nc: 3\n";
	static const char alias[] = "a: *nope\n";
	static const char complex_key[] = "? [a, b]\n: 1\n";

	assert_true(yaml_parse_json(bad, strlen(bad), NULL, &j, &err) < 0);
	assert_null(j);
	assert_int_equal(err.status, 400);
	assert_non_null(strstr(err.msg, "yaml: line"));
	assert_true(yaml_parse_json(alias, strlen(alias), NULL, &j, &err) < 0);
	assert_true(yaml_parse_json(complex_key, strlen(complex_key), NULL, &j, &err) < 0);
	assert_non_null(strstr(err.msg, "scalar mapping keys"));
}

static void test_roundtrip(void **state)
{
	static const char *const tricky[] = { "", "true", "no", "123", "-", "- x", "a: b", "#c", "'q'",
					      "\"dq\"", "x\ny\n", "trailing ", " leading", "tab\there",
					      "ünïcode ✓", "{a}", "[1]", "@at", "`tick", "%pct", "a\\b",
					      "line1\nline2", "2001-12-14", "1:20", ".inf", "~", "<<" };
	_cleanup_json_ json_t *obj = json_object();
	_cleanup_json_ json_t *back = NULL;
	_cleanup_free_ char *text = NULL;
	cell_error err = {0};

	for (size_t i = 0; i < ARRAY_SIZE(tricky); i++) {
		char key[16];
		snprintf(key, sizeof(key), "k%zu", i);
		json_object_set_new(obj, key, json_string(tricky[i]));
		json_object_set_new(obj, tricky[i][0] ? tricky[i] : "emptykey", json_integer((json_int_t)i));
	}
	json_object_set_new(obj, "arr", json_pack("[i, b, n, f, s, {}, []]", 7, 1, 2.5, "s"));
	text = yaml_dump_json(obj, 0);
	assert_non_null(text);
	assert_int_equal(yaml_parse_json(text, strlen(text), NULL, &back, &err), 0);
	if (!json_equal(obj, back))
		fail_msg("round trip differs:\n%s", text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_emit_block),
		cmocka_unit_test(test_emit_quoting),
		cmocka_unit_test(test_emit_multiline_and_sort),
		cmocka_unit_test(test_emit_scalars_top),
		cmocka_unit_test(test_emit_long_line_not_folded),
		cmocka_unit_test(test_parse_typed),
		cmocka_unit_test(test_parse_strings),
		cmocka_unit_test(test_parse_anchors_and_docs),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
