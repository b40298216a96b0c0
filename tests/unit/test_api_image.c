#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include "api/image.h"
#include "common/cleanup.h"

static const char *fp = "be7cec7c948958adfbb9bc7dbd292762d2388cc883466815fc2b6bc06bf06f5a";

static void fill(struct api_image *img)
{
	img->fingerprint = strdup(fp);
	img->filename = strdup("ubuntu-16.04-server-cloudimg-amd64-lxd.tar.xz");
	img->size = 163857160;
	img->architecture = strdup("x86_64");
	img->auto_update = true;
	img->cached = true;
	img->properties = json_pack("{s:s,s:s}", "os", "ubuntu", "release", "xenial");
	img->aliases = calloc(1, sizeof(*img->aliases));
	img->aliases[0].name = strdup("xenial");
	img->aliases[0].description = strdup("");
	img->n_aliases = 1;
	img->created_at = (struct timespec){ 1522886400, 0 };
	img->uploaded_at = (struct timespec){ 1523198554, 123456000 };
	img->update_source = json_pack("{s:s,s:s,s:s,s:s}", "alias", "16.04", "certificate", "",
				       "protocol", "simplestreams", "server", "https://cloud-images.ubuntu.com/releases");
	img->profiles = calloc(2, sizeof(char *));
	img->profiles[0] = strdup("default");
}

static void test_to_json(void **state)
{
	struct api_image img = { 0 };
	_cleanup_json_ json_t *j = NULL;
	_cleanup_free_ char *s = NULL;

	fill(&img);
	j = api_image_to_json(&img);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "fingerprint")), fp);
	assert_int_equal(json_integer_value(json_object_get(j, "size")), 163857160);
	assert_true(json_is_true(json_object_get(j, "auto_update")));
	assert_true(json_is_false(json_object_get(j, "public")));
	assert_string_equal(json_string_value(json_object_get(j, "type")), "container");
	assert_string_equal(json_string_value(json_object_get(j, "created_at")), "2018-04-05T00:00:00Z");
	assert_string_equal(json_string_value(json_object_get(j, "uploaded_at")), "2018-04-08T14:42:34.123456Z");
	assert_string_equal(json_string_value(json_object_get(j, "expires_at")), "0001-01-01T00:00:00Z");
	assert_string_equal(json_string_value(json_object_get(j, "last_used_at")), "0001-01-01T00:00:00Z");
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "properties"), "os")), "ubuntu");
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "aliases"), 0), "name")), "xenial");
	assert_non_null(json_object_get(json_array_get(json_object_get(j, "aliases"), 0), "description"));
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "update_source"), "protocol")), "simplestreams");
	assert_string_equal(json_string_value(json_array_get(json_object_get(j, "profiles"), 0)), "default");
	api_image_free(&img);

	/* An empty image still carries every field, and no update_source. */
	json_decref(j);
	j = api_image_to_json(&img);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s,
		"{\"aliases\":[],\"architecture\":\"\",\"auto_update\":false,\"cached\":false,"
		"\"created_at\":\"0001-01-01T00:00:00Z\",\"expires_at\":\"0001-01-01T00:00:00Z\","
		"\"filename\":\"\",\"fingerprint\":\"\",\"last_used_at\":\"0001-01-01T00:00:00Z\","
		"\"profiles\":[],\"properties\":{},\"public\":false,\"size\":0,\"type\":\"container\","
		"\"uploaded_at\":\"0001-01-01T00:00:00Z\"}");
}

static void test_decode_roundtrip(void **state)
{
	struct api_image img = { 0 }, back = { 0 };
	_cleanup_json_ json_t *j = NULL, *j2 = NULL;
	cell_error err;

	fill(&img);
	j = api_image_to_json(&img);
	assert_int_equal(api_image_decode(j, &back, &err), 0);
	j2 = api_image_to_json(&back);
	assert_true(json_equal(j, j2));
	assert_int_equal(back.uploaded_at.tv_nsec, 123456000);
	api_image_free(&img);
	api_image_free(&back);
}

static void test_put(void **state)
{
	struct api_image img = { 0 };
	_cleanup_json_ json_t *body = NULL;
	cell_error err;

	fill(&img);
	img.public = true;
	img.expires_at = (struct timespec){ 2000000000, 0 };
	/* lxc image edit sends the whole object back; read-only fields are ignored. */
	body = json_pack("{s:s,s:I,s:b,s:{s:s},s:s,s:[s,s]}", "fingerprint", "ffff", "size", (json_int_t)1,
			 "public", 0, "properties", "os", "debian", "expires_at", "2030-01-02T03:04:05.5+01:00",
			 "profiles", "default", "gpu");
	assert_int_equal(api_image_from_json(body, &img, false, &err), 0);
	assert_string_equal(img.fingerprint, fp);
	assert_int_equal(img.size, 163857160);
	assert_false(img.public);
	assert_false(img.auto_update);   /* absent in a PUT: reset */
	assert_int_equal(json_object_size(img.properties), 1);
	assert_string_equal(json_string_value(json_object_get(img.properties, "os")), "debian");
	assert_int_equal(img.expires_at.tv_sec, 1893549845);
	assert_int_equal(img.expires_at.tv_nsec, 500000000);
	assert_string_equal(img.profiles[1], "gpu");

	/* PUT with nothing: profiles back to default, expiry kept. */
	json_decref(body);
	body = json_object();
	assert_int_equal(api_image_from_json(body, &img, false, &err), 0);
	assert_string_equal(img.profiles[0], "default");
	assert_null(img.profiles[1]);
	assert_int_equal(json_object_size(img.properties), 0);
	assert_int_equal(img.expires_at.tv_sec, 1893549845);
	api_image_free(&img);
}

static void test_patch(void **state)
{
	struct api_image img = { 0 };
	_cleanup_json_ json_t *body = NULL;
	cell_error err;

	fill(&img);
	body = json_pack("{s:b,s:{s:s,s:s}}", "public", 1, "properties", "os", "Ubuntu", "label", "release");
	assert_int_equal(api_image_from_json(body, &img, true, &err), 0);
	assert_true(img.public);
	assert_true(img.auto_update);   /* untouched */
	assert_string_equal(json_string_value(json_object_get(img.properties, "os")), "Ubuntu");
	assert_string_equal(json_string_value(json_object_get(img.properties, "release")), "xenial");
	assert_string_equal(json_string_value(json_object_get(img.properties, "label")), "release");
	assert_string_equal(img.profiles[0], "default");
	api_image_free(&img);
}

static void expect_put_error(const char *body_json, const char *needle)
{
	struct api_image img = { 0 };
	_cleanup_json_ json_t *body = json_loads(body_json, JSON_DECODE_ANY, NULL);
	_cleanup_json_ json_t *before = NULL, *after = NULL;
	cell_error err;

	fill(&img);
	before = api_image_to_json(&img);
	assert_non_null(body);
	assert_true(api_image_from_json(body, &img, false, &err) < 0);
	assert_int_equal(err.status, 400);
	if (!strstr(err.msg, needle))
		fail_msg("\"%s\" lacks \"%s\"", err.msg, needle);
	after = api_image_to_json(&img);
	assert_true(json_equal(before, after));   /* nothing changed */
	api_image_free(&img);
}

static void test_put_errors(void **state)
{
	expect_put_error("[]", "JSON object");
	expect_put_error("{\"public\": \"yes\"}", "public");
	expect_put_error("{\"auto_update\": 1}", "auto_update");
	expect_put_error("{\"properties\": {\"a\": 1}}", "properties.a");
	expect_put_error("{\"properties\": []}", "properties");
	expect_put_error("{\"expires_at\": \"tomorrow\"}", "expires_at");
	expect_put_error("{\"expires_at\": \"2020-13-01T00:00:00Z\"}", "expires_at");
	expect_put_error("{\"profiles\": \"default\"}", "profiles");
	expect_put_error("{\"profiles\": [1]}", "profiles[0]");
}

static void test_time(void **state)
{
	struct timespec ts;
	char buf[40];

	assert_int_equal(api_image_time_parse("2018-04-05T00:00:00Z", &ts), 0);
	assert_int_equal(ts.tv_sec, 1522886400);
	assert_int_equal(api_image_time_parse("2018-04-05T02:00:00.000000001+02:00", &ts), 0);
	assert_int_equal(ts.tv_sec, 1522886400);
	assert_int_equal(ts.tv_nsec, 1);
	api_image_time_format(&ts, buf);
	assert_string_equal(buf, "2018-04-05T00:00:00.000000001Z");
	assert_int_equal(api_image_time_parse("0001-01-01T00:00:00Z", &ts), 0);
	assert_true(ts.tv_sec == 0 && ts.tv_nsec == 0);
	assert_int_equal(api_image_time_parse("2018-04-05", &ts), -EINVAL);
	assert_int_equal(api_image_time_parse("2018-04-05T00:00:00", &ts), -EINVAL);
	assert_int_equal(api_image_time_parse("2018-04-05T00:00:00Zjunk", &ts), -EINVAL);
	assert_int_equal(api_image_time_parse("2018-04-05T00:00:00+0200", &ts), -EINVAL);
	ts = (struct timespec){ 1523198554, 100000000 };
	api_image_time_format(&ts, buf);
	assert_string_equal(buf, "2018-04-08T14:42:34.1Z");
}

static void test_aliases(void **state)
{
	struct api_image_alias a = { 0 };
	_cleanup_json_ json_t *body = NULL, *j = NULL;
	cell_error err;

	body = json_pack("{s:s,s:s}", "name", "my-image", "target", fp);
	assert_int_equal(api_image_alias_from_json(body, &a, &err), 0);
	assert_string_equal(a.type, "container");
	assert_string_equal(a.description, "");
	j = api_image_alias_to_json(&a);
	assert_string_equal(json_string_value(json_object_get(j, "name")), "my-image");
	assert_string_equal(json_string_value(json_object_get(j, "target")), fp);
	assert_string_equal(json_string_value(json_object_get(j, "type")), "container");
	assert_non_null(json_object_get(j, "description"));

	json_decref(body);
	body = json_pack("{s:s}", "description", "new");
	assert_int_equal(api_image_alias_put_from_json(body, &a, true, &err), 0);   /* PATCH */
	assert_string_equal(a.description, "new");
	assert_string_equal(a.target, fp);
	assert_true(api_image_alias_put_from_json(body, &a, false, &err) < 0);   /* PUT needs target */
	assert_non_null(strstr(err.msg, "target"));
	json_decref(body);
	body = json_pack("{s:s}", "target", "abcd");
	assert_int_equal(api_image_alias_put_from_json(body, &a, false, &err), 0);
	assert_string_equal(a.target, "abcd");
	assert_string_equal(a.description, "");   /* PUT resets the description */
	api_image_alias_free(&a);

	json_decref(body);
	body = json_pack("{s:s}", "name", "x");
	assert_true(api_image_alias_from_json(body, &a, &err) < 0);
	assert_non_null(strstr(err.msg, "target"));
	json_decref(body);
	body = json_pack("{s:s,s:s}", "name", "a/b", "target", fp);
	assert_true(api_image_alias_from_json(body, &a, &err) < 0);
	assert_non_null(strstr(err.msg, "alias name"));
	json_decref(body);
	body = json_pack("{s:s,s:s,s:s}", "name", "a", "target", fp, "type", "banana");
	assert_true(api_image_alias_from_json(body, &a, &err) < 0);
	assert_null(a.name);
}

static void test_fingerprint(void **state)
{
	assert_true(api_image_fingerprint_valid(fp, false));
	assert_false(api_image_fingerprint_valid("be7c", false));
	assert_true(api_image_fingerprint_valid("be7c", true));
	assert_false(api_image_fingerprint_valid("", true));
	assert_false(api_image_fingerprint_valid("BE7C", true));
	assert_false(api_image_fingerprint_valid("../etc", true));
	assert_false(api_image_fingerprint_valid(NULL, true));
	assert_true(api_image_alias_name_valid("ubuntu/22.04") == false);
	assert_true(api_image_alias_name_valid("ubuntu-22.04"));
	assert_false(api_image_alias_name_valid(".."));
	assert_false(api_image_alias_name_valid("a\nb"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_to_json),
		cmocka_unit_test(test_decode_roundtrip),
		cmocka_unit_test(test_put),
		cmocka_unit_test(test_patch),
		cmocka_unit_test(test_put_errors),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_fingerprint),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
