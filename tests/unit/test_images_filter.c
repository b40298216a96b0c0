/* LXD's collection filter (?filter=) as GET /1.0/images applies it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/api_filter.h"

static json_t *image(void)
{
	return json_pack("{s:s, s:s, s:b, s:I, s:{s:s, s:s, s:s}}", "fingerprint", "abc123",
			 "architecture", "x86_64", "public", 1, "size", (json_int_t)4096,
			 "properties", "os", "Ubuntu", "release", "jammy 22.04", "user.key", "v");
}

static bool m(const char *f)
{
	struct api_filter *flt = NULL;
	cell_error err;
	json_t *img = image();
	bool r;

	assert_int_equal(api_filter_parse(f, &flt, &err), 0);
	r = api_filter_match(flt, img);
	api_filter_free(flt);
	json_decref(img);
	return r;
}

static void test_match(void **state)
{
	assert_true(m(""));
	assert_true(m("properties.os eq Ubuntu"));
	assert_true(m("properties.os eq ubuntu"));            /* case-insensitive */
	assert_false(m("properties.os eq Ubunt"));            /* anchored */
	assert_true(m("properties.os eq Ubu.*"));             /* a regular expression */
	assert_true(m("properties.os eq ^Ub"));               /* ^ or $: not anchored at the other end */
	assert_true(m("properties.os ne Debian"));
	assert_true(m("not properties.os eq Debian"));
	assert_true(m("properties.release eq \"jammy 22.04\""));
	assert_true(m("properties.release eq \"jammy\" or architecture eq x86_64"));
	assert_false(m("properties.os eq Ubuntu and architecture eq aarch64"));
	assert_true(m("properties.os eq Debian or architecture eq x86_64"));
	/* Left to right, no precedence: (false and x) or true. */
	assert_true(m("properties.os eq Debian and size eq 1 or public eq true"));
	assert_true(m("public eq true"));
	assert_true(m("size eq 4096"));
	assert_true(m("properties.user.key eq v"));           /* dotted key inside a string map */
	assert_false(m("properties.missing eq x"));
	assert_true(m("properties.missing ne x"));
	assert_true(m("properties.os eq \"Ubuntu\""));        /* quoted single word */
}

static void test_parse_errors(void **state)
{
	const char *bad[] = { "not", "os", "os eq", "os eq x and", "os eq x xor os eq y",
			      "os eq \"unterminated", "os like x" };
	cell_error err;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct api_filter *f = NULL;
		assert_true(api_filter_parse(bad[i], &f, &err) < 0);
		assert_int_equal(err.status, 400);
		assert_non_null(strstr(err.msg, "Invalid filter"));
		assert_null(f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_parse_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
