/*
 * A small self-contained SHA-256 for short inputs (certificate fingerprints,
 * ETags).  OpenSSL 3 loads and initialises its providers on the first EVP
 * call, which costs celld more than 2 MB of resident memory; the unix-socket
 * daemon needs no TLS, so these paths avoid OpenSSL entirely.  Bulk hashing
 * (image imports) uses common/sha256.h, which is OpenSSL's accelerated code.
 */
#ifndef CELL_COMMON_SHA256_LITE_H
#define CELL_COMMON_SHA256_LITE_H

#include <stddef.h>
#include <stdint.h>

void sha256_lite(const void *data, size_t len, uint8_t out[32]);
/* 64 lower-case hex chars + NUL. */
void sha256_lite_hex(const void *data, size_t len, char out[65]);
/* LXD fingerprint of the first CERTIFICATE block of a PEM text: SHA-256 of
 * its DER.  -EINVAL when there is none. */
int sha256_lite_pem_fingerprint(const char *pem, char out[65]);

#endif
