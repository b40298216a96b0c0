#include "daemon/http_chunked.h"

#include <errno.h>

enum {
	CH_SIZE,       /* hex digits of the chunk size */
	CH_EXT,        /* ";ext" up to CR */
	CH_SIZE_LF,    /* LF after the size line */
	CH_DATA,
	CH_DATA_CR,    /* CRLF after the data */
	CH_DATA_LF,
	CH_TRAILER,    /* start of a trailer line (CR here ends the body) */
	CH_TRAILER_LINE,
	CH_TRAILER_LF, /* LF after a trailer line */
	CH_END_LF,     /* LF of the final empty line */
	CH_DONE,
};

/* A size line or trailer longer than this is not a client we want. */
#define CH_MAX_LINE 4096
#define CH_MAX_TRAILER 16384

void http_chunked_init(struct http_chunked *c) { *c = (struct http_chunked){ .state = CH_SIZE }; }

bool http_chunked_done(const struct http_chunked *c) { return c->state == CH_DONE; }

static int bad(cell_error *err, const char *why)
{
	return cell_err(err, 400, EPROTO, "Malformed chunked request body: %s", why);
}

static int hexval(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int http_chunked_feed(struct http_chunked *c, const void *in, size_t len, size_t *used,
		      http_chunked_out out, void *data, cell_error *err)
{
	const unsigned char *p = in, *end = p + len;
	int rc;

	while (p < end && c->state != CH_DONE) {
		unsigned char ch = *p;

		switch (c->state) {
		case CH_SIZE: {
			int v = hexval(ch);
			if (v >= 0) {
				if (++c->digits > 15)
					return bad(err, "chunk size too large");
				c->remain = c->remain * 16 + (uint64_t)v;
			} else if (!c->digits) {
				return bad(err, "missing chunk size");
			} else if (ch == ';' || ch == ' ' || ch == '\t') {
				c->state = CH_EXT;
				c->line = 0;
			} else if (ch == '\r') {
				c->state = CH_SIZE_LF;
			} else {
				return bad(err, "invalid chunk size");
			}
			p++;
			break;
		}
		case CH_EXT:
			if (ch == '\r')
				c->state = CH_SIZE_LF;
			else if (++c->line > CH_MAX_LINE)
				return bad(err, "chunk extension too long");
			p++;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				return bad(err, "expected LF after chunk size");
			p++;
			c->digits = 0;
			c->state = c->remain ? CH_DATA : CH_TRAILER;
			c->trailer = 0;
			break;
		case CH_DATA: {
			size_t n = (size_t)(end - p);
			if ((uint64_t)n > c->remain)
				n = (size_t)c->remain;
			if ((rc = out(data, p, n, err)) < 0)
				return rc;
			p += n;
			c->remain -= n;
			c->total += n;
			if (!c->remain)
				c->state = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
			if (ch != '\r')
				return bad(err, "expected CRLF after chunk data");
			c->state = CH_DATA_LF;
			p++;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				return bad(err, "expected CRLF after chunk data");
			c->state = CH_SIZE;
			p++;
			break;
		case CH_TRAILER:
			if (ch == '\r') {
				c->state = CH_END_LF;
			} else {
				c->state = CH_TRAILER_LINE;
				c->trailer++;
			}
			p++;
			break;
		case CH_TRAILER_LINE:
			if (ch == '\r')
				c->state = CH_TRAILER_LF;
			else if (++c->trailer > CH_MAX_TRAILER)
				return bad(err, "trailer too long");
			p++;
			break;
		case CH_TRAILER_LF:
			if (ch != '\n')
				return bad(err, "expected LF after trailer");
			c->state = CH_TRAILER;
			p++;
			break;
		case CH_END_LF:
			if (ch != '\n')
				return bad(err, "expected LF at the end");
			c->state = CH_DONE;
			p++;
			break;
		}
	}
	if (used)
		*used = (size_t)(p - (const unsigned char *)in);
	return c->state == CH_DONE ? 1 : 0;
}
