/* /1.0/certificates: LXD's trust store API. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <openssl/crypto.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "daemon/certificates.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/events.h"
#include "daemon/http.h"
#include "daemon/router.h"

/* Each password check holds ~16 MiB of scrypt scratch on a worker; cap how
 * many an unauthenticated crowd can have in flight at once. */
#define CERT_MAX_PW_CHECKS 4

static int cert_pw_inflight;

static void cert_url(const char *fp, char out[96])
{
	snprintf(out, 96, "/1.0/certificates/%s", fp);
}

static void certificates_get(http_req *req, http_resp *resp)
{
	struct db_cert *certs = NULL;
	size_t n = 0;
	bool objects = http_req_recursion(req) > 0;
	json_t *out = json_array();
	cell_error err;

	if (!out || db_cert_list(&certs, &n, &err) < 0) {
		json_decref(out);
		if (!out)
			cell_err(&err, 500, ENOMEM, "out of memory");
		resp_from_err(resp, &err);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char url[96];
		cert_url(certs[i].fingerprint, url);
		json_array_append_new(out, objects ? cert_to_json(&certs[i]) : json_string(url));
	}
	db_cert_list_free(certs, n);
	resp_sync(resp, out);
}

/* Store the record built from the request and answer 201 + Location. */
static void cert_post_add(json_t *body, const struct cert_peer *peer, http_resp *resp)
{
	struct db_cert rec;
	cell_error err;
	char url[96];

	if (cert_from_request(body, peer, &rec, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	if (cert_add(&rec, &err) < 0) {
		db_cert_clear(&rec);
		resp_from_err(resp, &err);
		return;
	}
	cert_url(rec.fingerprint, url);
	log_info("certificates: added %s (%s)", rec.fingerprint, rec.name);
	db_cert_clear(&rec);
	events_lifecycle("certificate-created", url, NULL);
	resp_sync_status(resp, 201, NULL);
	http_resp_header(resp, "Location", url);
}

/* ---- untrusted POST: the password check runs on a worker ---------------- */

struct cert_pw_check {
	uv_work_t work;
	http_deferred *deferred;
	json_t *body;
	char *password;
	char *peer_pem;
	bool via_unix;
	bool ok;
};

static void cert_pw_check_free(struct cert_pw_check *w)
{
	if (w->password) {
		OPENSSL_cleanse(w->password, strlen(w->password));
		free(w->password);
	}
	json_decref(w->body);
	free(w->peer_pem);
	free(w);
}

static void cert_pw_work(uv_work_t *work)
{
	struct cert_pw_check *w = work->data;
	w->ok = config_trust_password_check(w->password);
}

static void cert_pw_done(uv_work_t *work, int status)
{
	struct cert_pw_check *w = work->data;
	struct cert_peer peer = { .pem = w->peer_pem, .via_unix = w->via_unix };
	http_resp resp;

	cert_pw_inflight--;
	http_resp_init(&resp);
	if (status < 0 || !w->ok) {
		if (status == 0)
			log_warn("certificates: bad trust password");
		resp_error(&resp, 403, "not authorized");
	} else {
		cert_post_add(w->body, &peer, &resp);
	}
	http_deferred_finish(w->deferred, &resp);
	cert_pw_check_free(w);
}

static void cert_post_untrusted(http_req *req, http_resp *resp, json_t *body, const char *pw)
{
	struct cert_pw_check *w;

	/* Without a password set there is nothing to compare: refuse now
	 * rather than spend a worker on it. */
	if (!*pw || !config_trust_password_set()) {
		resp_error(resp, 403, "not authorized");
		return;
	}
	if (cert_pw_inflight >= CERT_MAX_PW_CHECKS) {
		resp_error(resp, 503, "Too many concurrent authentication attempts");
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w || !(w->password = strdup(pw)) ||
	    (req->peer_cert_pem && !(w->peer_pem = strdup(req->peer_cert_pem)))) {
		if (w)
			cert_pw_check_free(w);
		resp_error(resp, 500, "out of memory");
		return;
	}
	w->body = json_incref(body);
	w->via_unix = req->via_unix;
	w->work.data = w;
	if (uv_queue_work(celld->loop, &w->work, cert_pw_work, cert_pw_done) < 0) {
		cert_pw_check_free(w);
		resp_error(resp, 500, "cannot queue the password check");
		return;
	}
	cert_pw_inflight++;
	w->deferred = http_defer(req, resp);
}

static void certificates_post(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	const char *pw, *material;
	cell_error err;

	if (http_req_json(req, &body, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	if (json_is_true(json_object_get(body, "token"))) {
		resp_error(resp, 400, "Certificate add tokens are not supported");
		return;
	}
	pw = json_string_value(json_object_get(body, "password"));
	material = json_string_value(json_object_get(body, "certificate"));
	if (!req->trusted) {
		cert_post_untrusted(req, resp, body, pw ? pw : "");
		return;
	}
	if (!material || !*material) {
		resp_error(resp, 400, "Client is already trusted");
		return;
	}
	cert_post_add(body, &(struct cert_peer){ .pem = req->peer_cert_pem,
						 .via_unix = req->via_unix }, resp);
}

/* ---- one certificate ---------------------------------------------------- */

/* The record named by the URL (a unique fingerprint prefix); answers the
 * error itself and returns false when there is none. */
static bool cert_lookup(http_req *req, http_resp *resp, struct db_cert *out)
{
	cell_error err;

	if (req->nparams < 1 || db_cert_get(req->params[0], out, &err) < 0) {
		if (req->nparams < 1)
			cell_err(&err, 404, ENOENT, "Certificate not found");
		resp_from_err(resp, &err);
		return false;
	}
	return true;
}

static void certificate_get(http_req *req, http_resp *resp)
{
	struct db_cert c;
	json_t *obj;

	if (!cert_lookup(req, resp, &c))
		return;
	obj = cert_to_json(&c);
	db_cert_clear(&c);
	resp_sync_etag(resp, obj, obj);
}

static void certificate_update(http_req *req, http_resp *resp, bool patch)
{
	_cleanup_json_ json_t *body = NULL, *cur = NULL;
	struct db_cert old, next;
	cell_error err;
	char url[96];
	int rc;

	if (!cert_lookup(req, resp, &old))
		return;
	cur = cert_to_json(&old);
	if (!http_check_etag(req, resp, cur)) {
		db_cert_clear(&old);
		return;
	}
	rc = http_req_json(req, &body, &err);
	if (rc == 0)
		rc = cert_from_update(&old, body, patch, &next, &err);
	if (rc == 0) {
		rc = cert_update(old.fingerprint, &next, &err);
		db_cert_clear(&next);
	}
	cert_url(old.fingerprint, url);
	db_cert_clear(&old);
	if (rc < 0) {
		resp_from_err(resp, &err);
		return;
	}
	events_lifecycle("certificate-updated", url, NULL);
	resp_empty(resp);
}

static void certificate_put(http_req *req, http_resp *resp) { certificate_update(req, resp, false); }
static void certificate_patch(http_req *req, http_resp *resp) { certificate_update(req, resp, true); }

static void certificate_delete(http_req *req, http_resp *resp)
{
	struct db_cert c;
	cell_error err;
	char url[96];
	int rc;

	if (!cert_lookup(req, resp, &c))
		return;
	rc = cert_delete(c.fingerprint, &err);
	cert_url(c.fingerprint, url);
	db_cert_clear(&c);
	if (rc < 0) {
		resp_from_err(resp, &err);
		return;
	}
	events_lifecycle("certificate-deleted", url, NULL);
	resp_empty(resp);
}

void api_certificates_register(void)
{
	router_add(&(struct route){
		.pattern = "/1.0/certificates",
		.methods = {
			{ HTTP_GET, certificates_get, 0, NULL },
			/* Untrusted clients add themselves with the trust password. */
			{ HTTP_POST, certificates_post, ROUTE_UNTRUSTED_OK, NULL },
		},
	});
	router_add(&(struct route){
		.pattern = "/1.0/certificates/{fingerprint}",
		.methods = {
			{ HTTP_GET, certificate_get, 0, NULL },
			{ HTTP_PUT, certificate_put, 0, NULL },
			{ HTTP_PATCH, certificate_patch, 0, NULL },
			{ HTTP_DELETE, certificate_delete, 0, NULL },
		},
	});
}
