/* Certificate generation, fingerprints and parsing (common/tls.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/cleanup.h"
#include "common/tls.h"
#include "common/util.h"

struct paths {
	char dir[64];
	char crt[96];
	char key[96];
};

static int setup(void **state)
{
	struct paths *p = calloc(1, sizeof(*p));
	strcpy(p->dir, "/tmp/test_tls_XXXXXX");
	if (!mkdtemp(p->dir))
		return -1;
	snprintf(p->crt, sizeof(p->crt), "%s/server.crt", p->dir);
	snprintf(p->key, sizeof(p->key), "%s/server.key", p->dir);
	*state = p;
	return 0;
}

static int teardown(void **state)
{
	struct paths *p = *state;
	unlink(p->crt);
	unlink(p->key);
	rmdir(p->dir);
	free(p);
	return 0;
}

static void assert_hex64(const char *fp)
{
	assert_int_equal(strlen(fp), 64);
	for (const char *c = fp; *c; c++)
		assert_true(isdigit((unsigned char)*c) || (*c >= 'a' && *c <= 'f'));
}

static bool san_has_ip(X509 *x, const unsigned char *ip, int len)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	bool found = false;

	for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
		GENERAL_NAME *n = sk_GENERAL_NAME_value(names, i);
		if (n->type == GEN_IPADD && n->d.iPAddress->length == len &&
		    !memcmp(n->d.iPAddress->data, ip, (size_t)len))
			found = true;
	}
	GENERAL_NAMES_free(names);
	return found;
}

static void test_generate_server(void **state)
{
	struct paths *p = *state;
	static const unsigned char v4[] = { 127, 0, 0, 1 };
	static const unsigned char v6[16] = { [15] = 1 };
	cell_error err = {0};
	_cleanup_x509_ X509 *x = NULL;
	struct stat st;
	char fp1[65], fp2[65], cn[64];
	int day, sec;

	assert_int_equal(tls_generate_cert(p->crt, p->key, "celld-test", true, &err), 0);
	assert_int_equal(stat(p->key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(tls_load_cert(p->crt, &x, &err), 0);

	assert_int_equal(tls_fingerprint_x509(x, fp1), 0);
	assert_hex64(fp1);
	{
		_cleanup_free_ char *pem = NULL;
		size_t len;
		assert_int_equal(util_read_file(p->crt, &pem, &len, &err), 0);
		assert_int_equal(tls_fingerprint_pem(pem, len, fp2, &err), 0);
		assert_string_equal(fp1, fp2);
	}

	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
	assert_string_equal(cn, "celld-test");
	assert_true(san_has_ip(x, v4, 4));
	assert_true(san_has_ip(x, v6, 16));

	/* Ten years, give or take a few days. */
	assert_int_equal(ASN1_TIME_diff(&day, &sec, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
	assert_true(day >= 3650 && day <= 3660);

	{
		EVP_PKEY *pub = X509_get0_pubkey(x);
		char group[32];
		size_t glen;
		assert_int_equal(EVP_PKEY_base_id(pub), EVP_PKEY_EC);
		assert_int_equal(EVP_PKEY_get_utf8_string_param(pub, "group", group, sizeof(group), &glen), 1);
		assert_string_equal(group, "secp384r1");
	}
}

static void test_client_has_no_san(void **state)
{
	struct paths *p = *state;
	static const unsigned char v4[] = { 127, 0, 0, 1 };
	cell_error err = {0};
	_cleanup_x509_ X509 *x = NULL;

	assert_int_equal(tls_generate_cert(p->crt, p->key, "me@host", false, &err), 0);
	assert_int_equal(tls_load_cert(p->crt, &x, &err), 0);
	assert_false(san_has_ip(x, v4, 4));
	assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_CLIENT, 0), 1);
}

static void test_ensure(void **state)
{
	struct paths *p = *state;
	cell_error err = {0};
	char fp1[65], fp2[65], fp3[65];
	bool gen = false;

	assert_int_equal(tls_ensure_cert_ex(p->crt, p->key, "x", true, &gen, &err), 0);
	assert_true(gen);
	{
		_cleanup_x509_ X509 *x = NULL;
		assert_int_equal(tls_load_cert(p->crt, &x, &err), 0);
		tls_fingerprint_x509(x, fp1);
	}
	assert_int_equal(tls_ensure_cert_ex(p->crt, p->key, "x", true, &gen, &err), 0);
	assert_false(gen);
	assert_int_equal(tls_ensure_cert(p->crt, p->key, "x", true, &err), 0);
	{
		_cleanup_x509_ X509 *x = NULL;
		assert_int_equal(tls_load_cert(p->crt, &x, &err), 0);
		tls_fingerprint_x509(x, fp2);
	}
	assert_string_equal(fp1, fp2);

	unlink(p->key);   /* half a pair is regenerated whole */
	assert_int_equal(tls_ensure_cert(p->crt, p->key, "x", true, &err), 0);
	assert_int_equal(access(p->key, F_OK), 0);
	{
		_cleanup_x509_ X509 *x = NULL;
		assert_int_equal(tls_load_cert(p->crt, &x, &err), 0);
		tls_fingerprint_x509(x, fp3);
	}
	assert_string_not_equal(fp1, fp3);
}

static void test_base64_der(void **state)
{
	struct paths *p = *state;
	cell_error err = {0};
	_cleanup_x509_ X509 *x = NULL;
	_cleanup_x509_ X509 *y = NULL;
	_cleanup_free_ char *b64 = NULL;
	_cleanup_free_ char *pem = NULL;
	char fp1[65], fp2[65];

	assert_int_equal(tls_generate_cert(p->crt, p->key, "b64", false, &err), 0);
	assert_int_equal(tls_load_cert(p->crt, &x, &err), 0);
	assert_int_equal(tls_cert_der_base64(x, &b64, &err), 0);
	assert_null(strchr(b64, '\n'));
	assert_int_equal(tls_parse_cert(b64, strlen(b64), &y, &err), 0);
	tls_fingerprint_x509(x, fp1);
	tls_fingerprint_x509(y, fp2);
	assert_string_equal(fp1, fp2);

	assert_int_equal(tls_fingerprint_pem(b64, strlen(b64), fp2, &err), 0);
	assert_string_equal(fp1, fp2);

	assert_int_equal(tls_cert_pem(x, &pem, &err), 0);
	assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE-----"));
	assert_int_equal(tls_fingerprint_pem(pem, strlen(pem), fp2, &err), 0);
	assert_string_equal(fp1, fp2);
}

static void test_invalid(void **state)
{
	cell_error err = {0};
	X509 *x = NULL;
	char fp[65];
	static const char bad_pem[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

	assert_true(tls_parse_cert("not a cert", 10, &x, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_null(x);
	assert_true(tls_fingerprint_pem(bad_pem, sizeof(bad_pem) - 1, fp, &err) < 0);
	assert_true(tls_parse_cert("", 0, &x, &err) < 0);
	assert_true(tls_load_cert("/nonexistent/x.crt", &x, &err) < 0);
	assert_non_null(strstr(err.msg, "/nonexistent/x.crt"));
	assert_true(tls_generate_cert("/nonexistent/dir/a.crt", "/nonexistent/dir/a.key", "x", true, &err) < 0);
	assert_non_null(strstr(err.msg, "/nonexistent/dir/a.key"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_generate_server, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_has_no_san, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ensure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_base64_der, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
