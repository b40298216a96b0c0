/* A growable byte buffer: request bodies, rendered output, built strings. */
#ifndef CELL_COMMON_STRBUF_H
#define CELL_COMMON_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct strbuf {
	char *buf;   /* always NUL-terminated when non-NULL */
	size_t len;
	size_t cap;
} strbuf;

int sb_append(strbuf *sb, const void *data, size_t len);   /* -ENOMEM */
int sb_puts(strbuf *sb, const char *s);
int sb_printf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sb_vprintf(strbuf *sb, const char *fmt, va_list ap);
void sb_reset(strbuf *sb);        /* keep the allocation, length 0 */
void sb_free(strbuf *sb);
char *sb_steal(strbuf *sb);       /* caller frees; sb is emptied */

static inline void sb_freep(strbuf *sb) { sb_free(sb); }
#define _cleanup_sb_ __attribute__((cleanup(sb_freep)))

#endif
