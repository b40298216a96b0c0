#include "common/tls.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "common/cleanup.h"
#include "common/util.h"

#define TLS_VALID_DAYS (3650 + 3)   /* ten years, leap days included */

static inline void evp_pkey_freep(EVP_PKEY **k) { EVP_PKEY_free(*k); }
static inline void biop(BIO **b) { BIO_free(*b); }
#define _cleanup_pkey_ __attribute__((cleanup(evp_pkey_freep)))
#define _cleanup_bio_ __attribute__((cleanup(biop)))

static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -EINVAL;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -EINVAL;
}

static int set_random_serial(X509 *x)
{
	unsigned char raw[16];
	BIGNUM *bn;
	int ok;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -EIO;
	raw[0] &= 0x7f;   /* serials must be positive */
	bn = BN_bin2bn(raw, sizeof(raw), NULL);
	if (!bn)
		return -ENOMEM;
	ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : -EIO;
}

static int set_names(X509 *x, const char *cn)
{
	X509_NAME *name = X509_get_subject_name(x);

	if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"cell", -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0))
		return -EINVAL;
	return X509_set_issuer_name(x, name) ? 0 : -EINVAL;
}

static int add_extensions(X509 *x, bool server)
{
	char host[256] = "";
	_cleanup_free_ char *san = NULL;

	if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(x, NID_key_usage, "critical,digitalSignature,keyEncipherment") < 0 ||
	    add_ext(x, NID_ext_key_usage, server ? "serverAuth" : "clientAuth") < 0)
		return -EINVAL;
	if (!server)
		return 0;
	if (gethostname(host, sizeof(host) - 1) < 0 || !host[0] || strchr(host, ','))
		strcpy(host, "localhost");
	san = xasprintf("DNS:%s,IP:127.0.0.1,IP:::1", host);
	if (!san)
		return -ENOMEM;
	return add_ext(x, NID_subject_alt_name, san);
}

static X509 *build_cert(EVP_PKEY *key, const char *cn, bool server)
{
	X509 *x = X509_new();

	if (!x)
		return NULL;
	if (!X509_set_version(x, 2) || set_random_serial(x) < 0 ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -60) ||   /* tolerate small clock skew */
	    !X509_time_adj_ex(X509_getm_notAfter(x), TLS_VALID_DAYS, 0, NULL) ||
	    !X509_set_pubkey(x, key) || set_names(x, cn) < 0 || add_extensions(x, server) < 0 ||
	    !X509_sign(x, key, EVP_sha384())) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* Copy a memory BIO's contents out as a NUL-terminated string. */
static char *bio_string(BIO *b, size_t *len)
{
	char *data;
	long n = BIO_get_mem_data(b, &data);
	char *s;

	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (!s)
		return NULL;
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	if (len)
		*len = (size_t)n;
	return s;
}

static int write_pem(const char *path, BIO *b, unsigned mode, cell_error *err)
{
	size_t len;
	_cleanup_free_ char *s = bio_string(b, &len);

	if (!s)
		return cell_err(err, 500, ENOMEM, "write %s: out of memory", path);
	return util_write_file_atomic(path, s, len, mode, err);
}

int tls_generate_cert(const char *crt_path, const char *key_path, const char *common_name, bool server,
		      cell_error *err)
{
	_cleanup_pkey_ EVP_PKEY *key = EVP_EC_gen("P-384");
	_cleanup_x509_ X509 *x = NULL;
	_cleanup_bio_ BIO *kb = BIO_new(BIO_s_mem());
	_cleanup_bio_ BIO *cb = BIO_new(BIO_s_mem());
	int rc;

	if (!key || !kb || !cb)
		return cell_err(err, 500, ENOMEM, "generate key for %s: out of memory", crt_path);
	x = build_cert(key, common_name && *common_name ? common_name : "cell", server);
	if (!x)
		return cell_err(err, 500, EIO, "generate certificate %s: OpenSSL failure", crt_path);
	if (!PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) || !PEM_write_bio_X509(cb, x))
		return cell_err(err, 500, EIO, "encode certificate %s: OpenSSL failure", crt_path);
	/* Key first: a crash in between leaves no certificate, so ensure regenerates both. */
	rc = write_pem(key_path, kb, 0600, err);
	if (rc < 0)
		return rc;
	return write_pem(crt_path, cb, 0644, err);
}

int tls_ensure_cert_ex(const char *crt_path, const char *key_path, const char *common_name, bool server,
		       bool *generated, cell_error *err)
{
	if (generated)
		*generated = false;
	if (access(crt_path, F_OK) == 0 && access(key_path, F_OK) == 0)
		return 0;
	if (generated)
		*generated = true;
	return tls_generate_cert(crt_path, key_path, common_name, server, err);
}

int tls_ensure_cert(const char *crt_path, const char *key_path, const char *common_name, bool server,
		    cell_error *err)
{
	return tls_ensure_cert_ex(crt_path, key_path, common_name, server, NULL, err);
}

int tls_fingerprint_x509(X509 *x, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	out[0] = '\0';
	if (!x || !X509_digest(x, EVP_sha256(), md, &n) || n != 32)
		return -EINVAL;
	util_hex(md, n, out);
	return 0;
}

int tls_fingerprint_pem(const char *pem, size_t len, char out[65], cell_error *err)
{
	_cleanup_x509_ X509 *x = NULL;
	int rc = tls_parse_cert(pem, len, &x, err);

	if (rc < 0)
		return rc;
	return tls_fingerprint_x509(x, out);
}

static X509 *parse_der_base64(const char *data, size_t len)
{
	_cleanup_free_ unsigned char *der = malloc(len / 4 * 3 + 4);
	_cleanup_free_ char *clean = malloc(len + 1);
	const unsigned char *p;
	size_t n = 0;
	int dlen;

	if (!der || !clean)
		return NULL;
	for (size_t i = 0; i < len; i++)   /* tolerate wrapped lines */
		if (data[i] != '\n' && data[i] != '\r' && data[i] != ' ' && data[i] != '\t')
			clean[n++] = data[i];
	if (n == 0 || n % 4)
		return NULL;
	dlen = EVP_DecodeBlock(der, (unsigned char *)clean, (int)n);
	if (dlen <= 0)
		return NULL;
	/* EVP_DecodeBlock counts '=' padding as zero bytes; DER carries its own length. */
	p = der;
	return d2i_X509(NULL, &p, dlen);
}

int tls_parse_cert(const char *data, size_t len, X509 **out, cell_error *err)
{
	X509 *x = NULL;

	*out = NULL;
	if (!data || !len)
		return cell_err(err, 400, EINVAL, "empty certificate");
	if (memmem(data, len, "-----BEGIN", 10)) {
		_cleanup_bio_ BIO *b = BIO_new_mem_buf(data, (int)len);
		if (b)
			x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	} else {
		x = parse_der_base64(data, len);
	}
	if (!x)
		return cell_err(err, 400, EINVAL, "invalid certificate");
	*out = x;
	return 0;
}

int tls_load_cert(const char *path, X509 **out, cell_error *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int rc = util_read_file(path, &buf, &len, err);

	if (rc < 0)
		return rc;
	rc = tls_parse_cert(buf, len, out, err);
	return rc < 0 ? cell_err_wrap(err, rc, "%s", path) : 0;
}

int tls_cert_pem(X509 *x, char **out, cell_error *err)
{
	_cleanup_bio_ BIO *b = BIO_new(BIO_s_mem());

	if (!b || !PEM_write_bio_X509(b, x) || !(*out = bio_string(b, NULL)))
		return cell_err(err, 500, ENOMEM, "encode certificate: out of memory");
	return 0;
}

int tls_cert_der_base64(X509 *x, char **out, cell_error *err)
{
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);
	char *b64;

	if (n <= 0)
		return cell_err(err, 500, EINVAL, "encode certificate: OpenSSL failure");
	b64 = malloc(((size_t)n + 2) / 3 * 4 + 1);
	if (b64)
		EVP_EncodeBlock((unsigned char *)b64, der, n);
	OPENSSL_free(der);
	if (!b64)
		return cell_err(err, 500, ENOMEM, "encode certificate: out of memory");
	*out = b64;
	return 0;
}
