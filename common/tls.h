/*
 * Certificate utilities shared by celld and cell: key pairs, self-signed
 * certificates and LXD-style fingerprints (SHA-256 of the DER certificate).
 */
#ifndef CELL_COMMON_TLS_H
#define CELL_COMMON_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/x509.h>

#include "common/error.h"

/* EC P-384 key + self-signed X.509 cert valid 10 years, written atomically; key file 0600.
   server=true adds SANs for the hostname, 127.0.0.1 and ::1; CN = common_name. */
int tls_generate_cert(const char *crt_path, const char *key_path, const char *common_name, bool server,
		      cell_error *err);
/* Generate only if either file is missing. */
int tls_ensure_cert(const char *crt_path, const char *key_path, const char *common_name, bool server,
		    cell_error *err);
/* Same; *generated (may be NULL) tells whether new files were written. */
int tls_ensure_cert_ex(const char *crt_path, const char *key_path, const char *common_name, bool server,
		       bool *generated, cell_error *err);
/* SHA-256 of the DER certificate as 64 lower-case hex chars (LXD's fingerprint). */
int tls_fingerprint_x509(X509 *x, char out[65]);
int tls_fingerprint_pem(const char *pem, size_t len, char out[65], cell_error *err);

/* Parse one certificate given as PEM or as base64 of the DER (what LXD's
 * POST /1.0/certificates carries in "certificate"). Caller X509_free()s. */
int tls_parse_cert(const char *data, size_t len, X509 **out, cell_error *err);
/* Load the first certificate of a PEM file. */
int tls_load_cert(const char *path, X509 **out, cell_error *err);
/* PEM text of a certificate (malloc'd, NUL-terminated). */
int tls_cert_pem(X509 *x, char **out, cell_error *err);
/* Base64 (one line, no PEM armour) of the DER certificate (malloc'd). */
int tls_cert_der_base64(X509 *x, char **out, cell_error *err);

static inline void tls_x509_freep(X509 **x) { if (*x) X509_free(*x); }
#define _cleanup_x509_ __attribute__((cleanup(tls_x509_freep)))

#endif
