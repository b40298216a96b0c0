/* The small SHA-256 agrees with OpenSSL on every length around block edges. */
#include <errno.h>
#include <setjmp.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>

#include "common/sha256_lite.h"
#include "common/tls.h"
#include "common/util.h"

static void test_known_vectors(void **state)
{
	char hex[65];
	sha256_lite_hex("", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha256_lite_hex("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_matches_openssl(void **state)
{
	unsigned char buf[300], md[32], ref[32];
	unsigned int n;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	for (size_t len = 0; len <= sizeof(buf); len++) {
		sha256_lite(buf, len, md);
		EVP_Digest(buf, len, ref, &n, EVP_sha256(), NULL);
		assert_memory_equal(md, ref, 32);
	}
}

static void test_pem_fingerprint(void **state)
{
	char dir[] = "/tmp/sha-lite-XXXXXX", crt[64], key[64], fp_lite[65], fp_ssl[65];
	char *pem;
	size_t len;
	cell_error err;

	assert_non_null(mkdtemp(dir));
	snprintf(crt, sizeof(crt), "%s/c.crt", dir);
	snprintf(key, sizeof(key), "%s/c.key", dir);
	assert_int_equal(tls_generate_cert(crt, key, "t", true, &err), 0);
	assert_int_equal(util_read_file(crt, &pem, &len, &err), 0);
	assert_int_equal(sha256_lite_pem_fingerprint(pem, fp_lite), 0);
	assert_int_equal(tls_fingerprint_pem(pem, len, fp_ssl, &err), 0);
	assert_string_equal(fp_lite, fp_ssl);
	assert_int_equal(sha256_lite_pem_fingerprint("no certificate here", fp_lite), -EINVAL);
	free(pem);
	unlink(crt);
	unlink(key);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_vectors),
		cmocka_unit_test(test_matches_openssl),
		cmocka_unit_test(test_pem_fingerprint),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
