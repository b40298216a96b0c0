/*
 * Streaming SHA-256 (OpenSSL EVP).  Image fingerprints are computed while the
 * body arrives, so callers feed blocks as they come and never re-read a file.
 */
#ifndef CELL_COMMON_SHA256_H
#define CELL_COMMON_SHA256_H

#include <stddef.h>

#include "common/error.h"

#define SHA256_HEX_LEN 64

struct sha256_ctx {
	void *md;   /* EVP_MD_CTX *, kept opaque so callers need no OpenSSL headers */
};

int sha256_init(struct sha256_ctx *c);                                  /* -ENOMEM */
int sha256_update(struct sha256_ctx *c, const void *data, size_t len);  /* -EIO */
/* Writes 64 lower-case hex chars + NUL and releases the context. */
int sha256_final_hex(struct sha256_ctx *c, char out[SHA256_HEX_LEN + 1]);
/* Releases the context without a result (error paths); safe to call twice. */
void sha256_free(struct sha256_ctx *c);
/* Hash a whole file with large reads (verifying an image already on disk). */
int sha256_file_hex(const char *path, char out[SHA256_HEX_LEN + 1], cell_error *err);

static inline void sha256_freep(struct sha256_ctx *c) { sha256_free(c); }
#define _cleanup_sha256_ __attribute__((cleanup(sha256_freep)))

#endif
