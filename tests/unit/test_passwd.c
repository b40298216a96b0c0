#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/passwd.h"

/* hex(salt 00..1f) + hex(scrypt("sekret", salt, 2^14, 8, 1, 64)), computed
 * independently (Python hashlib.scrypt): the format LXD stores. */
static const char lxd_vector[] =
	"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	"06fed85576ec87caac738eaec064c010483797bfea7ca7d3e2efe36412883a6d"
	"89befa25e14ed0297fb70b6ded57431c3656f51d9792f8ae0cb7eb0e21293cc8";

static void test_hash_format_and_verify(void **state)
{
	char *h = NULL;
	cell_error err;

	assert_int_equal(passwd_hash("correct horse", &h, &err), 0);
	assert_int_equal(strlen(h), PASSWD_HASH_HEXLEN);
	assert_int_equal(strspn(h, "0123456789abcdef"), PASSWD_HASH_HEXLEN);
	assert_true(passwd_verify("correct horse", h));
	assert_false(passwd_verify("correct horsE", h));
	assert_false(passwd_verify("", h));
	free(h);
}

static void test_salt_is_random(void **state)
{
	char *a = NULL, *b = NULL;

	assert_int_equal(passwd_hash("pw", &a, NULL), 0);
	assert_int_equal(passwd_hash("pw", &b, NULL), 0);
	assert_string_not_equal(a, b);
	assert_true(passwd_verify("pw", a));
	assert_true(passwd_verify("pw", b));
	free(a);
	free(b);
}

static void test_known_vector(void **state)
{
	assert_true(passwd_verify("sekret", lxd_vector));
	assert_false(passwd_verify("sekreT", lxd_vector));
}

static void test_malformed_stored(void **state)
{
	char bad[sizeof(lxd_vector)];

	assert_false(passwd_verify("sekret", NULL));
	assert_false(passwd_verify("sekret", ""));
	assert_false(passwd_verify(NULL, lxd_vector));
	assert_false(passwd_verify("sekret", "00ff"));
	memcpy(bad, lxd_vector, sizeof(bad));
	bad[10] = 'x';
	assert_false(passwd_verify("sekret", bad));
	/* One flipped bit of the key must fail. */
	memcpy(bad, lxd_vector, sizeof(bad));
	bad[sizeof(bad) - 2] = bad[sizeof(bad) - 2] == '8' ? '9' : '8';
	assert_false(passwd_verify("sekret", bad));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hash_format_and_verify),
		cmocka_unit_test(test_salt_is_random),
		cmocka_unit_test(test_known_vector),
		cmocka_unit_test(test_malformed_stored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
