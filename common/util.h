/* Small helpers shared by daemon and client: time, ids, files. */
#ifndef CELL_COMMON_UTIL_H
#define CELL_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/error.h"

/* RFC 3339 with nanoseconds in UTC, as Go's time.Time marshals ("...Z"). */
void util_time_rfc3339(const struct timespec *ts, char out[40]);
void util_now_rfc3339(char out[40]);
int64_t util_now_ms(void);   /* CLOCK_MONOTONIC milliseconds */

/* Random v4 UUID, lower-case, 36 chars + NUL. */
void util_uuid(char out[37]);
/* n random bytes as 2n lower-case hex chars + NUL. */
int util_random_hex(char *out, size_t nbytes);
void util_hex(const unsigned char *in, size_t n, char *out);

bool str_has_prefix(const char *s, const char *prefix);
bool str_has_suffix(const char *s, const char *suffix);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Read a whole file (NUL-terminated); *len may be NULL. */
int util_read_file(const char *path, char **out, size_t *len, cell_error *err);
/* Write via a temporary file, fsync and rename: readers see old or new, never half. */
int util_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
			   cell_error *err);
/* mkdir -p with mode for the created components. */
int util_mkdir_p(const char *path, unsigned mode, cell_error *err);

#endif
