/*
 * Streaming multipart/form-data parser (RFC 7578) for split image uploads
 * (`metadata` + `rootfs` parts, as LXD's client sends them) and for reading
 * them back.  Data is handed on as it arrives, never buffered whole; only a
 * carry of less than one delimiter is kept between calls.
 */
#ifndef CELL_COMMON_MULTIPART_H
#define CELL_COMMON_MULTIPART_H

#include <stddef.h>

#include "common/error.h"

/* RFC 2046: at most 70 characters. */
#define MP_BOUNDARY_MAX 70

struct mp_callbacks {
	/* A part starts; name/filename from its Content-Disposition ("" when
	 * absent).  Return <0 (err filled) to stop. */
	int (*part_begin)(void *data, const char *name, const char *filename, cell_error *err);
	int (*part_data)(void *data, const void *buf, size_t len, cell_error *err);
	int (*part_end)(void *data, cell_error *err);
};

struct mp_parser;

/* The boundary parameter of a multipart/form-data Content-Type; 400 when
 * the type is something else or the boundary is missing or invalid. */
int mp_boundary(const char *content_type, char out[MP_BOUNDARY_MAX + 1], cell_error *err);
int mp_new(const char *boundary, const struct mp_callbacks *cb, void *data, struct mp_parser **out,
	   cell_error *err);
/* Feed the next bytes of the body.  Errors are 400s (or the callbacks'). */
int mp_feed(struct mp_parser *p, const void *buf, size_t len, cell_error *err);
/* The body ended: 400 unless the closing delimiter was seen. */
int mp_finish(struct mp_parser *p, cell_error *err);
void mp_free(struct mp_parser *p);

#endif
