/*
 * The trust store behind /1.0/certificates: client certificates allowed to
 * use the API over HTTPS.  The records live in the database; an in-memory
 * set of trusted fingerprints answers the server's per-connection check.
 *
 * Only unrestricted "client" certificates are in the trusted set: a
 * restricted certificate (LXD's per-project confinement) is stored and shown
 * but grants nothing until project confinement exists, so it can never be
 * used as an admin credential by accident.
 */
#ifndef CELL_DAEMON_CERTIFICATES_H
#define CELL_DAEMON_CERTIFICATES_H

#include <stdbool.h>
#include <jansson.h>
#include <openssl/x509.h>

#include "common/error.h"
#include "daemon/db.h"

/* Load the trusted set from the database (db_open first). */
int certs_init(cell_error *err);
void certs_shutdown(void);
/* Rebuild the trusted set from the database. */
int certs_reload(cell_error *err);
/* Any thread; `fp` is the lower-case hex SHA-256 of the peer's DER. */
bool cert_is_trusted(const char *fp);

/* Certificate material as clients send it: base64 of the DER (line breaks
 * allowed, as pylxd sends it) or PEM.  400 "Invalid certificate material". */
int cert_parse(const char *material, X509 **out, cell_error *err);
/* 400 when not yet valid, expired, or an RSA key under 2048 bits (as LXD). */
int cert_check_validity(X509 *x, cell_error *err);
void cert_fingerprint(X509 *x, char out[65]);
/* PEM text (malloc'd) / subject CN (malloc'd, NULL when none). */
char *cert_pem(X509 *x);
char *cert_common_name(X509 *x);

/* The API object: {name, type, restricted, projects, certificate, fingerprint}. */
json_t *cert_to_json(const struct db_cert *c);

/* POST /1.0/certificates without the access check: the new record from the
 * request body (`certificate`, `name`, `type`, `restricted`, `projects`),
 * taking the TLS peer's certificate when `certificate` is empty. */
struct cert_peer {
	const char *pem;     /* peer certificate PEM, NULL when none */
	bool via_unix;       /* request came over the unix socket */
	const char *addr;    /* peer address for the fallback name, or NULL */
};
int cert_from_request(json_t *body, const struct cert_peer *peer, struct db_cert *out,
		      cell_error *err);
/* PUT (patch false: body is the whole writable object) or PATCH (fields in
 * body override `old`): the record to store. */
int cert_from_update(const struct db_cert *old, json_t *body, bool patch, struct db_cert *out,
		     cell_error *err);

/* Store changes; the trusted set follows.  Errors as db.h. */
int cert_add(const struct db_cert *c, cell_error *err);
int cert_update(const char *fp, const struct db_cert *c, cell_error *err);
int cert_delete(const char *fp, cell_error *err);

/* api_certificates.c: registers /1.0/certificates and /1.0/certificates/{fingerprint}. */
void api_certificates_register(void);

#endif
