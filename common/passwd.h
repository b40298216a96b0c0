/*
 * Salted slow hash for secrets kept on the server (core.trust_password).
 * Same format as LXD so a database value means the same thing to both:
 * hex(32-byte salt) + hex(scrypt(pw, salt, N=2^14, r=8, p=1, 64 bytes)).
 * Hashing takes tens of milliseconds on purpose: run it off the loop thread.
 */
#ifndef CELL_COMMON_PASSWD_H
#define CELL_COMMON_PASSWD_H

#include <stdbool.h>

#include "common/error.h"

#define PASSWD_SALT_LEN 32
#define PASSWD_KEY_LEN 64
/* Length of the stored string, without the NUL. */
#define PASSWD_HASH_HEXLEN (2 * (PASSWD_SALT_LEN + PASSWD_KEY_LEN))

/* Hash `pw` with a fresh random salt; *out is malloc'd hex (caller frees). */
int passwd_hash(const char *pw, char **out, cell_error *err);
/* True when `pw` hashes to `stored`; constant time in the key comparison.
 * False for a NULL/empty/malformed `stored` (no password set). */
bool passwd_verify(const char *pw, const char *stored);

#endif
