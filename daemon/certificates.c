#include "daemon/certificates.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/tls.h"
#include "common/util.h"

/* API types this build accepts.  LXD also has "server" (cluster members)
 * and "metrics" (scrapers); neither may ever land in the trusted set as an
 * admin credential, so they are refused until they mean something here. */
static const char *const cert_types[] = { "client" };

typedef char cert_fp[DB_FP_LEN + 1];

static cert_fp *trust_fps;   /* sorted, for bsearch */
static size_t trust_n;
static pthread_rwlock_t trust_lock = PTHREAD_RWLOCK_INITIALIZER;

static inline void cert_bio_freep(BIO **b) { BIO_free(*b); }
#define _cleanup_cert_bio_ __attribute__((cleanup(cert_bio_freep)))

/* ---- the trusted set ---------------------------------------------------- */

static int fp_cmp(const void *a, const void *b) { return strcmp(a, b); }

static bool cert_grants_trust(const struct db_cert *c)
{
	return !strcmp(c->type, "client") && !c->restricted;
}

int certs_reload(cell_error *err)
{
	struct db_cert *certs = NULL;
	cert_fp *fps, *old;
	size_t n = 0, k = 0;
	int rc = db_cert_list(&certs, &n, err);

	if (rc < 0)
		return rc;
	fps = calloc(n ? n : 1, sizeof(*fps));
	if (!fps) {
		db_cert_list_free(certs, n);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++)
		if (cert_grants_trust(&certs[i]))
			memcpy(fps[k++], certs[i].fingerprint, sizeof(cert_fp));
	db_cert_list_free(certs, n);
	qsort(fps, k, sizeof(*fps), fp_cmp);

	pthread_rwlock_wrlock(&trust_lock);
	old = trust_fps;
	trust_fps = fps;
	trust_n = k;
	pthread_rwlock_unlock(&trust_lock);
	free(old);
	return 0;
}

int certs_init(cell_error *err)
{
	int rc = certs_reload(err);
	return rc < 0 ? cell_err_wrap(err, rc, "load trust store") : 0;
}

void certs_shutdown(void)
{
	pthread_rwlock_wrlock(&trust_lock);
	free(trust_fps);
	trust_fps = NULL;
	trust_n = 0;
	pthread_rwlock_unlock(&trust_lock);
}

bool cert_is_trusted(const char *fp)
{
	bool found;

	if (!fp || strlen(fp) != DB_FP_LEN)
		return false;
	pthread_rwlock_rdlock(&trust_lock);
	found = trust_n && bsearch(fp, trust_fps, trust_n, sizeof(*trust_fps), fp_cmp);
	pthread_rwlock_unlock(&trust_lock);
	return found;
}

/* ---- X.509 helpers ------------------------------------------------------ */

static int material_fail(cell_error *err, const char *why)
{
	unsigned long e = ERR_get_error();
	char buf[256];

	ERR_clear_error();
	if (e) {
		ERR_error_string_n(e, buf, sizeof(buf));
		return cell_err(err, 400, EINVAL, "Invalid certificate material: %s", buf);
	}
	return cell_err(err, 400, EINVAL, "Invalid certificate material: %s", why);
}

/* Base64 with any whitespace removed; NULL when other junk is present. */
static char *b64_compact(const char *s, size_t *len)
{
	char *out = malloc(strlen(s) + 1);
	size_t n = 0;

	if (!out)
		return NULL;
	for (; *s; s++) {
		if (isspace((unsigned char)*s))
			continue;
		if (!isalnum((unsigned char)*s) && *s != '+' && *s != '/' && *s != '=') {
			free(out);
			return NULL;
		}
		out[n++] = *s;
	}
	out[n] = '\0';
	*len = n;
	return out;
}

static int cert_parse_der_b64(const char *material, X509 **out, cell_error *err)
{
	size_t n = 0, pad = 0;
	_cleanup_free_ char *b64 = b64_compact(material, &n);
	_cleanup_free_ unsigned char *der = NULL;
	const unsigned char *p;
	int dlen;

	if (!b64 || n == 0 || n % 4)
		return material_fail(err, "not base64");
	while (pad < 2 && b64[n - 1 - pad] == '=')
		pad++;
	der = malloc(n / 4 * 3 + 1);
	if (!der)
		return cell_err(err, 500, ENOMEM, "out of memory");
	dlen = EVP_DecodeBlock(der, (unsigned char *)b64, (int)n);
	if (dlen < 0)
		return material_fail(err, "not base64");
	dlen -= (int)pad;
	p = der;
	*out = d2i_X509(NULL, &p, dlen);
	if (!*out)
		return material_fail(err, "not a DER certificate");
	if (p != der + dlen) {
		X509_free(steal_ptr(*out));
		return material_fail(err, "trailing data after the certificate");
	}
	return 0;
}

int cert_parse(const char *material, X509 **out, cell_error *err)
{
	_cleanup_cert_bio_ BIO *bio = NULL;

	*out = NULL;
	if (!material || !*material)
		return material_fail(err, "empty");
	if (!strstr(material, "-----BEGIN"))
		return cert_parse_der_b64(material, out, err);
	bio = BIO_new_mem_buf(material, -1);
	if (!bio)
		return cell_err(err, 500, ENOMEM, "out of memory");
	*out = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	return *out ? 0 : material_fail(err, "not a PEM certificate");
}

int cert_check_validity(X509 *x, cell_error *err)
{
	EVP_PKEY *pk = X509_get0_pubkey(x);

	if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0)
		return cell_err(err, 400, EINVAL, "The provided certificate isn't valid yet");
	if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
		return cell_err(err, 400, EINVAL, "The provided certificate is expired");
	if (!pk)
		return cell_err(err, 400, EINVAL, "Unable to read the certificate's public key");
	if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA && EVP_PKEY_get_bits(pk) < 2048)
		return cell_err(err, 400, EINVAL, "RSA key is too weak (minimum of 2048bit)");
	return 0;
}

void cert_fingerprint(X509 *x, char out[65])
{
	tls_fingerprint_x509(x, out);
}

char *cert_pem(X509 *x)
{
	char *out = NULL;
	return tls_cert_pem(x, &out, NULL) < 0 ? NULL : out;
}

char *cert_common_name(X509 *x)
{
	X509_NAME *subj = X509_get_subject_name(x);
	int idx = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
	unsigned char *utf8 = NULL;
	char *out;
	int n;

	if (idx < 0)
		return NULL;
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
	if (n < 0)
		return NULL;
	out = strndup((char *)utf8, (size_t)n);
	OPENSSL_free(utf8);
	return out;
}

/* ---- API objects -------------------------------------------------------- */

json_t *cert_to_json(const struct db_cert *c)
{
	json_t *projects = json_array();

	for (char **p = c->projects; projects && p && *p; p++)
		json_array_append_new(projects, json_string(*p));
	return json_pack("{s:s, s:s, s:b, s:o, s:s, s:s}", "name", c->name ? c->name : "",
			 "type", c->type, "restricted", c->restricted, "projects",
			 projects ? projects : json_array(), "certificate",
			 c->certificate ? c->certificate : "", "fingerprint", c->fingerprint);
}

static bool cert_type_ok(const char *t)
{
	for (size_t i = 0; i < ARRAY_SIZE(cert_types); i++)
		if (!strcmp(cert_types[i], t))
			return true;
	return false;
}

/* Only the default project exists until projects are implemented. */
static bool cert_project_exists(const char *name) { return !strcmp(name, "default"); }

/* Optional string field: *out borrowed, untouched when absent. */
static int body_string(json_t *body, const char *key, const char **out, cell_error *err)
{
	json_t *v = json_object_get(body, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return cell_err(err, 400, EINVAL, "Invalid value for \"%s\": must be a string", key);
	*out = json_string_value(v);
	return 0;
}

static int body_bool(json_t *body, const char *key, bool *out, cell_error *err)
{
	json_t *v = json_object_get(body, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return cell_err(err, 400, EINVAL, "Invalid value for \"%s\": must be a boolean", key);
	*out = json_is_true(v);
	return 0;
}

/* `projects` into a NULL-terminated list; absent leaves *out alone. */
static int body_projects(json_t *body, char ***out, cell_error *err)
{
	json_t *arr = json_object_get(body, "projects"), *v;
	_cleanup_strv_ char **list = NULL;
	size_t i;

	if (!arr)
		return 0;
	if (!json_is_array(arr) && !json_is_null(arr))
		return cell_err(err, 400, EINVAL, "Invalid value for \"projects\": must be a list");
	list = calloc(json_array_size(arr) + 1, sizeof(char *));
	if (!list)
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_array_foreach(arr, i, v) {
		if (!json_is_string(v))
			return cell_err(err, 400, EINVAL, "Invalid value for \"projects\": must be a list of strings");
		if (!cert_project_exists(json_string_value(v)))
			return cell_err(err, 400, ENOENT, "Project \"%s\" not found", json_string_value(v));
		if (!(list[i] = strdup(json_string_value(v))))
			return cell_err(err, 500, ENOMEM, "out of memory");
	}
	cell_strvfreep(out);
	*out = steal_ptr(list);
	return 0;
}

/* Fill certificate, fingerprint (and *cn) of `c` from parsed material. */
static int cert_set_material(struct db_cert *c, const char *material, char **cn, cell_error *err)
{
	_cleanup_x509_ X509 *x = NULL;
	int rc = cert_parse(material, &x, err);

	if (rc < 0)
		return rc;
	rc = cert_check_validity(x, err);
	if (rc < 0)
		return rc;
	free(c->certificate);
	c->certificate = cert_pem(x);
	if (!c->certificate)
		return cell_err(err, 500, ENOMEM, "out of memory");
	cert_fingerprint(x, c->fingerprint);
	if (cn)
		*cn = cert_common_name(x);
	return 0;
}

static int cert_set_type(struct db_cert *c, const char *type, cell_error *err)
{
	if (!cert_type_ok(type))
		return cell_err(err, 400, EINVAL, "Invalid certificate type");
	snprintf(c->type, sizeof(c->type), "%s", type);
	return 0;
}

/* The certificate a POST adds: the one in the body, else the TLS peer's. */
static int cert_request_material(const char *material, const struct cert_peer *peer,
				 struct db_cert *c, char **cn, cell_error *err)
{
	if (*material)
		return cert_set_material(c, material, cn, err);
	if (peer && peer->pem)
		return cert_set_material(c, peer->pem, cn, err);
	if (!peer || peer->via_unix)
		return cell_err(err, 400, EINVAL, "Can't use TLS data on non-TLS link");
	return cell_err(err, 400, EINVAL, "No client certificate provided");
}

static int cert_from_request_fill(json_t *body, const struct cert_peer *peer,
				  struct db_cert *c, cell_error *err)
{
	const char *type = "client", *material = "", *name = "";
	_cleanup_free_ char *cn = NULL;
	int rc;

	if ((rc = body_string(body, "type", &type, err)) < 0 ||
	    (rc = body_string(body, "certificate", &material, err)) < 0 ||
	    (rc = body_string(body, "name", &name, err)) < 0 ||
	    (rc = body_bool(body, "restricted", &c->restricted, err)) < 0 ||
	    (rc = body_projects(body, &c->projects, err)) < 0)
		return rc;
	/* LXD requires the type; an empty one is what older clients mean by
	 * "client", the only type there is. */
	rc = cert_set_type(c, *type ? type : "client", err);
	if (rc == 0)
		rc = cert_request_material(material, peer, c, &cn, err);
	if (rc < 0)
		return rc;
	/* Name as LXD picks it: given, else the subject CN, else the peer. */
	if (*name)
		c->name = strdup(name);
	else if (cn && *cn)
		c->name = steal_ptr(cn);
	else if (peer && peer->addr && *peer->addr)
		c->name = strdup(peer->addr);
	else
		c->name = strndup(c->fingerprint, 12);
	return c->name ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

int cert_from_request(json_t *body, const struct cert_peer *peer, struct db_cert *out,
		      cell_error *err)
{
	int rc;

	memset(out, 0, sizeof(*out));
	rc = cert_from_request_fill(body, peer, out, err);
	if (rc < 0)
		db_cert_clear(out);
	return rc;
}

static int cert_copy(const struct db_cert *src, struct db_cert *dst, cell_error *err)
{
	size_t n = 0;

	memset(dst, 0, sizeof(*dst));
	memcpy(dst->fingerprint, src->fingerprint, sizeof(dst->fingerprint));
	memcpy(dst->type, src->type, sizeof(dst->type));
	dst->restricted = src->restricted;
	dst->name = strdup(src->name ? src->name : "");
	dst->certificate = strdup(src->certificate ? src->certificate : "");
	while (src->projects && src->projects[n])
		n++;
	dst->projects = calloc(n + 1, sizeof(char *));
	for (size_t i = 0; dst->projects && i < n; i++)
		if (!(dst->projects[i] = strdup(src->projects[i])))
			break;
	if (!dst->name || !dst->certificate || !dst->projects || (n && !dst->projects[n - 1]))
		return cell_err(err, 500, ENOMEM, "out of memory");
	return 0;
}

static int cert_from_update_fill(const struct db_cert *old, json_t *body, bool patch,
				 struct db_cert *c, cell_error *err)
{
	const char *type = patch ? old->type : "", *name = patch ? c->name : "", *material = "";
	int rc;

	if (!patch) {
		/* PUT: what the body leaves out is reset, as LXD decodes into a
		 * fresh object; the certificate itself stays unless given. */
		c->restricted = false;
		cell_strvfreep(&c->projects);
		c->projects = NULL;
	}
	if ((rc = body_string(body, "type", &type, err)) < 0 ||
	    (rc = body_string(body, "name", &name, err)) < 0 ||
	    (rc = body_string(body, "certificate", &material, err)) < 0 ||
	    (rc = body_bool(body, "restricted", &c->restricted, err)) < 0 ||
	    (rc = body_projects(body, &c->projects, err)) < 0)
		return rc;
	rc = cert_set_type(c, type, err);
	if (rc < 0)
		return rc;
	if (name != c->name) {
		char *n = strdup(name);
		if (!n)
			return cell_err(err, 500, ENOMEM, "out of memory");
		free(c->name);
		c->name = n;
	}
	if (*material && strcmp(material, old->certificate))
		return cert_set_material(c, material, NULL, err);
	return 0;
}

int cert_from_update(const struct db_cert *old, json_t *body, bool patch, struct db_cert *out,
		     cell_error *err)
{
	int rc = cert_copy(old, out, err);

	if (rc == 0)
		rc = cert_from_update_fill(old, body, patch, out, err);
	if (rc < 0)
		db_cert_clear(out);
	return rc;
}

/* ---- store -------------------------------------------------------------- */

/* Drop one fingerprint from the set without the database: a removed or
 * replaced certificate must stop granting access even if a reload fails. */
static void trust_remove(const char *fp)
{
	cert_fp *hit;

	pthread_rwlock_wrlock(&trust_lock);
	hit = trust_n ? bsearch(fp, trust_fps, trust_n, sizeof(*trust_fps), fp_cmp) : NULL;
	if (hit) {
		memmove(hit, hit + 1, (size_t)(trust_fps + trust_n - (hit + 1)) * sizeof(*hit));
		trust_n--;
	}
	pthread_rwlock_unlock(&trust_lock);
}

/* The database is the truth; rebuild the set from it after each change. */
static void cert_refresh(const char *removed_fp)
{
	cell_error err;

	if (removed_fp)
		trust_remove(removed_fp);
	if (certs_reload(&err) < 0)
		log_error("certificates: reload trust store: %s", err.msg);
}

int cert_add(const struct db_cert *c, cell_error *err)
{
	int rc = db_cert_add(c, err);

	if (rc == 0)
		cert_refresh(NULL);
	return rc;
}

int cert_update(const char *fp, const struct db_cert *c, cell_error *err)
{
	int rc = db_cert_update(fp, c, err);

	if (rc == 0)
		cert_refresh(fp);
	return rc;
}

int cert_delete(const char *fp, cell_error *err)
{
	int rc = db_cert_delete(fp, err);

	if (rc == 0)
		cert_refresh(fp);
	return rc;
}
