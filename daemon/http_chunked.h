/*
 * Incremental decoder for request bodies sent with Transfer-Encoding:
 * chunked.  libwebsockets 4.1 hands such bodies to us raw (chunk-size lines
 * included) and never ends them itself, so the server (server_body.c)
 * decodes them here for streamed routes and learns where the body ends (Go's
 * net/http sends every upload of unknown length chunked, `lxc image import`
 * and `lxc file push` among them).
 */
#ifndef CELL_DAEMON_HTTP_CHUNKED_H
#define CELL_DAEMON_HTTP_CHUNKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct http_chunked {
	int state;
	uint64_t remain;     /* data bytes left in the current chunk */
	unsigned digits;     /* hex digits seen in the size line */
	size_t line;         /* bytes of the current size-extension or trailer line */
	size_t trailer;      /* trailer bytes in total */
	uint64_t total;      /* decoded bytes so far */
};

void http_chunked_init(struct http_chunked *c);
/* Decoded data goes to out() (which may fail with <0: returned as is).
 * Returns 1 once the last chunk and its trailer are complete (*used then
 * says how much of `in` belonged to the body), 0 when more is needed, <0
 * with a 400 in err on malformed framing. */
typedef int (*http_chunked_out)(void *data, const void *buf, size_t len, cell_error *err);
int http_chunked_feed(struct http_chunked *c, const void *in, size_t len, size_t *used,
		      http_chunked_out out, void *data, cell_error *err);
bool http_chunked_done(const struct http_chunked *c);

#endif
