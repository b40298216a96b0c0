#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/cleanup.h"
#include "daemon/certificates.h"
#include "daemon/db.h"
#include "db_fixture.h"

static int setup(void **state)
{
	cell_error err;

	return db_fixture_open() == 0 && certs_init(&err) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	certs_shutdown();
	db_fixture_close();
	return 0;
}

/* A self-signed certificate valid from `from` to `to` seconds from now. */
static X509 *make_cert(const char *cn, EVP_PKEY *key, long from, long to)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_get_subject_name(x);
	static long serial = 1;

	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), from);
	X509_gmtime_adj(X509_getm_notAfter(x), to);
	X509_set_pubkey(x, key);
	if (cn)
		X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, name);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	return x;
}

static EVP_PKEY *ec_key(void) { return EVP_EC_gen("P-256"); }

static X509 *good_cert(const char *cn)
{
	EVP_PKEY *k = ec_key();
	X509 *x = make_cert(cn, k, -60, 3600);
	EVP_PKEY_free(k);
	return x;
}

static char *pem_of(X509 *x)
{
	char *p = cert_pem(x);
	assert_non_null(p);
	return p;
}

/* Base64 of the DER with a line break every 64 chars, as pylxd sends it. */
static char *b64_lines_of(X509 *x)
{
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);
	char *flat = malloc((size_t)(n + 2) / 3 * 4 + 1), *out;
	size_t len, j = 0;

	EVP_EncodeBlock((unsigned char *)flat, der, n);
	OPENSSL_free(der);
	len = strlen(flat);
	out = malloc(len + len / 64 + 2);
	for (size_t i = 0; i < len; i++) {
		out[j++] = flat[i];
		if (i % 64 == 63)
			out[j++] = '\n';
	}
	out[j] = '\0';
	free(flat);
	return out;
}

static void test_parse_forms(void **state)
{
	X509 *x = good_cert("alice"), *a = NULL, *b = NULL;
	_cleanup_free_ char *pem = pem_of(x), *b64 = b64_lines_of(x), *cn = NULL;
	char fx[65], fa[65], fb[65];
	cell_error err;

	assert_int_equal(cert_parse(pem, &a, NULL), 0);
	assert_int_equal(cert_parse(b64, &b, NULL), 0);
	cert_fingerprint(x, fx);
	cert_fingerprint(a, fa);
	cert_fingerprint(b, fb);
	assert_string_equal(fx, fa);
	assert_string_equal(fx, fb);
	assert_int_equal(strlen(fx), 64);
	cn = cert_common_name(a);
	assert_string_equal(cn, "alice");
	X509_free(a);

	assert_true(cert_parse("not base64!", &a, &err) < 0 && !a);
	assert_int_equal(err.status, 400);
	assert_non_null(strstr(err.msg, "Invalid certificate material"));
	assert_true(cert_parse("aGVsbG8=", &a, &err) < 0);   /* base64, not DER */
	assert_true(cert_parse("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
			       &a, &err) < 0);
	assert_true(cert_parse("", &a, &err) < 0);
	X509_free(x);
	X509_free(b);
}

static void test_validity(void **state)
{
	EVP_PKEY *ec = ec_key(), *rsa = EVP_RSA_gen(1024);
	X509 *expired = make_cert("e", ec, -7200, -3600);
	X509 *future = make_cert("f", ec, 3600, 7200);
	X509 *weak = make_cert("w", rsa, -60, 3600);
	X509 *ok = make_cert("o", ec, -60, 3600);
	cell_error err;

	assert_true(cert_check_validity(expired, &err) < 0);
	assert_string_equal(err.msg, "The provided certificate is expired");
	assert_true(cert_check_validity(future, &err) < 0);
	assert_string_equal(err.msg, "The provided certificate isn't valid yet");
	assert_true(cert_check_validity(weak, &err) < 0);
	assert_string_equal(err.msg, "RSA key is too weak (minimum of 2048bit)");
	assert_int_equal(cert_check_validity(ok, &err), 0);
	X509_free(expired);
	X509_free(future);
	X509_free(weak);
	X509_free(ok);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(rsa);
}

static void test_from_request(void **state)
{
	X509 *x = good_cert("bob");
	_cleanup_free_ char *pem = pem_of(x), *b64 = b64_lines_of(x);
	struct cert_peer tls_peer = { .pem = pem }, tls_none = { 0 }, unix_peer = { .via_unix = true };
	struct db_cert c;
	char fp[65];
	cell_error err;
	json_t *body;

	cert_fingerprint(x, fp);
	body = json_pack("{s:s, s:s}", "type", "client", "certificate", b64);
	assert_int_equal(cert_from_request(body, &unix_peer, &c, NULL), 0);
	assert_string_equal(c.fingerprint, fp);
	assert_string_equal(c.name, "bob");   /* from the CN */
	assert_string_equal(c.type, "client");
	assert_non_null(strstr(c.certificate, "BEGIN CERTIFICATE"));
	db_cert_clear(&c);
	json_decref(body);

	/* No material: the TLS peer's own certificate; explicit name wins. */
	body = json_pack("{s:s, s:s, s:b, s:[s]}", "type", "client", "name", "laptop",
			 "restricted", 1, "projects", "default");
	assert_int_equal(cert_from_request(body, &tls_peer, &c, NULL), 0);
	assert_string_equal(c.fingerprint, fp);
	assert_string_equal(c.name, "laptop");
	assert_true(c.restricted);
	assert_string_equal(c.projects[0], "default");
	db_cert_clear(&c);
	assert_true(cert_from_request(body, &unix_peer, &c, &err) < 0);
	assert_string_equal(err.msg, "Can't use TLS data on non-TLS link");
	assert_true(cert_from_request(body, &tls_none, &c, &err) < 0);
	assert_string_equal(err.msg, "No client certificate provided");
	json_decref(body);

	body = json_pack("{s:s, s:s}", "type", "metrics", "certificate", pem);
	assert_true(cert_from_request(body, NULL, &c, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_string_equal(err.msg, "Invalid certificate type");
	json_decref(body);

	body = json_pack("{s:s, s:[s]}", "certificate", pem, "projects", "nope");
	assert_true(cert_from_request(body, NULL, &c, &err) < 0);
	assert_int_equal(err.status, 400);
	json_decref(body);
	body = json_pack("{s:s, s:i}", "certificate", pem, "name", 3);
	assert_true(cert_from_request(body, NULL, &c, &err) < 0);
	assert_int_equal(err.status, 400);
	json_decref(body);
	X509_free(x);
}

static void add_cert(X509 *x, const char *name, bool restricted, char fp[65])
{
	_cleanup_free_ char *pem = pem_of(x);
	json_t *body = json_pack("{s:s, s:s, s:b}", "certificate", pem, "name", name,
				 "restricted", restricted);
	struct db_cert c;

	assert_int_equal(cert_from_request(body, NULL, &c, NULL), 0);
	assert_int_equal(cert_add(&c, NULL), 0);
	memcpy(fp, c.fingerprint, 65);
	db_cert_clear(&c);
	json_decref(body);
}

static void test_trust_set(void **state)
{
	X509 *a = good_cert("a"), *b = good_cert("b"), *r = good_cert("r"), *n = good_cert("n");
	_cleanup_free_ char *pem_a = pem_of(a), *pem_n = pem_of(n);
	char fa[65], fb[65], fr[65], fn[65];
	struct db_cert c, upd;
	cell_error err;
	json_t *body;

	add_cert(a, "a", false, fa);
	add_cert(b, "b", false, fb);
	add_cert(r, "r", true, fr);
	cert_fingerprint(n, fn);
	assert_true(cert_is_trusted(fa));
	assert_true(cert_is_trusted(fb));
	assert_false(cert_is_trusted(fr));   /* restricted grants nothing yet */
	assert_false(cert_is_trusted(fn));
	assert_false(cert_is_trusted(""));
	assert_false(cert_is_trusted(NULL));

	/* Adding the same certificate again. */
	body = json_pack("{s:s}", "certificate", pem_a);
	assert_int_equal(cert_from_request(body, NULL, &c, NULL), 0);
	assert_true(cert_add(&c, &err) < 0);
	assert_int_equal(err.status, 409);
	assert_string_equal(err.msg, "Certificate already in trust store");
	db_cert_clear(&c);
	json_decref(body);

	/* PATCH restricted on: trust goes away; PUT without it: back. */
	assert_int_equal(db_cert_get(fa, &c, NULL), 0);
	body = json_pack("{s:b}", "restricted", 1);
	assert_int_equal(cert_from_update(&c, body, true, &upd, NULL), 0);
	assert_string_equal(upd.name, "a");
	assert_string_equal(upd.type, "client");
	assert_int_equal(cert_update(c.fingerprint, &upd, NULL), 0);
	assert_false(cert_is_trusted(fa));
	db_cert_clear(&upd);
	json_decref(body);
	body = json_pack("{s:s, s:s}", "type", "client", "name", "renamed");
	assert_int_equal(cert_from_update(&c, body, false, &upd, NULL), 0);
	assert_false(upd.restricted);
	assert_int_equal(cert_update(c.fingerprint, &upd, NULL), 0);
	assert_true(cert_is_trusted(fa));
	db_cert_clear(&upd);
	json_decref(body);
	/* PUT needs the type, as LXD. */
	body = json_pack("{s:s}", "name", "x");
	assert_true(cert_from_update(&c, body, false, &upd, &err) < 0);
	assert_string_equal(err.msg, "Invalid certificate type");
	json_decref(body);

	/* Replacing the certificate material moves the trust to the new one. */
	body = json_pack("{s:s, s:s}", "type", "client", "certificate", pem_n);
	assert_int_equal(cert_from_update(&c, body, false, &upd, NULL), 0);
	assert_string_equal(upd.fingerprint, fn);
	assert_int_equal(cert_update(c.fingerprint, &upd, NULL), 0);
	assert_false(cert_is_trusted(fa));
	assert_true(cert_is_trusted(fn));
	db_cert_clear(&upd);
	db_cert_clear(&c);
	json_decref(body);

	assert_int_equal(cert_delete(fb, NULL), 0);
	assert_false(cert_is_trusted(fb));
	assert_true(cert_delete(fb, &err) < 0);
	assert_int_equal(err.status, 404);

	/* A restart sees the same set. */
	certs_shutdown();
	assert_false(cert_is_trusted(fn));
	assert_int_equal(certs_init(NULL), 0);
	assert_true(cert_is_trusted(fn));
	assert_false(cert_is_trusted(fr));
	X509_free(a);
	X509_free(b);
	X509_free(r);
	X509_free(n);
}

static void test_to_json(void **state)
{
	char *projects[] = { "default", NULL };
	struct db_cert c = { .fingerprint = "ab", .type = "client", .name = "n",
			     .certificate = "PEM", .restricted = true, .projects = projects };
	struct db_cert none = { .fingerprint = "cd", .type = "client", .name = "m", .certificate = "P" };
	json_t *want = json_pack("{s:s, s:s, s:b, s:[s], s:s, s:s}", "name", "n", "type", "client",
				 "restricted", 1, "projects", "default", "certificate", "PEM",
				 "fingerprint", "ab");
	json_t *got = cert_to_json(&c), *got2 = cert_to_json(&none);

	assert_true(json_equal(want, got));
	assert_true(json_is_array(json_object_get(got2, "projects")));
	assert_int_equal(json_array_size(json_object_get(got2, "projects")), 0);
	json_decref(want);
	json_decref(got);
	json_decref(got2);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_parse_forms),
		T(test_validity),
		T(test_from_request),
		T(test_trust_set),
		T(test_to_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
