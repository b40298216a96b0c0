#include "common/multipart.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MP_DELIM_MAX (MP_BOUNDARY_MAX + 4)   /* "\r\n--" + boundary */
#define MP_HEADERS_MAX 16384

enum { MP_DATA, MP_AFTER_DELIM, MP_DASH2, MP_DELIM_LF, MP_HEADERS, MP_END };

struct mp_parser {
	int state;
	bool in_part;              /* false in the preamble */
	unsigned char delim[MP_DELIM_MAX];
	size_t dlen;
	unsigned char carry[MP_DELIM_MAX];   /* possible start of a delimiter */
	size_t carry_len;
	char hdr[MP_HEADERS_MAX + 1];
	size_t hlen;
	const struct mp_callbacks *cb;
	void *data;
};

static int mp_bad(cell_error *err, const char *why)
{
	return cell_err(err, 400, EPROTO, "Invalid multipart image: %s", why);
}

static bool boundary_char(unsigned char c)
{
	return isalnum(c) || strchr("'()+_,-./:=? ", c);
}

int mp_boundary(const char *ct, char out[MP_BOUNDARY_MAX + 1], cell_error *err)
{
	const char *p;
	size_t n = 0;
	char q = 0;

	if (!ct || strncasecmp(ct, "multipart/form-data", 19) || (ct[19] && ct[19] != ';' && ct[19] != ' '))
		return cell_err(err, 400, EINVAL, "Content-Type is not multipart/form-data");
	for (p = ct + 19; (p = strchr(p, ';')); ) {
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, "boundary=", 9))
			continue;
		p += 9;
		if (*p == '"')
			q = *p++;
		while (*p && (q ? *p != q : (*p != ';' && *p != ' ' && *p != '\t'))) {
			if (n == MP_BOUNDARY_MAX || !boundary_char((unsigned char)*p))
				return cell_err(err, 400, EINVAL, "Invalid multipart boundary");
			out[n++] = *p++;
		}
		if (q && *p != q)
			return cell_err(err, 400, EINVAL, "Invalid multipart boundary");
		out[n] = '\0';
		if (!n)
			break;
		return 0;
	}
	return cell_err(err, 400, EINVAL, "multipart/form-data without a boundary");
}

int mp_new(const char *boundary, const struct mp_callbacks *cb, void *data, struct mp_parser **out,
	   cell_error *err)
{
	size_t bl = boundary ? strlen(boundary) : 0;
	struct mp_parser *p;

	if (!bl || bl > MP_BOUNDARY_MAX)
		return cell_err(err, 400, EINVAL, "Invalid multipart boundary");
	p = calloc(1, sizeof(*p));
	if (!p)
		return cell_err(err, 500, ENOMEM, "out of memory");
	memcpy(p->delim, "\r\n--", 4);
	memcpy(p->delim + 4, boundary, bl);
	p->dlen = bl + 4;
	/* The first delimiter has no CRLF before it: pretend one came. */
	memcpy(p->carry, "\r\n", 2);
	p->carry_len = 2;
	p->cb = cb;
	p->data = data;
	*out = p;
	return 0;
}

void mp_free(struct mp_parser *p) { free(p); }

static int emit(struct mp_parser *p, const void *buf, size_t len, cell_error *err)
{
	if (!len || !p->in_part)
		return 0;
	return p->cb->part_data(p->data, buf, len, err);
}

static int delim_found(struct mp_parser *p, cell_error *err)
{
	int rc = 0;

	if (p->in_part)
		rc = p->cb->part_end(p->data, err);
	p->in_part = false;
	p->state = MP_AFTER_DELIM;
	return rc;
}

/* A delimiter starting inside the carry?  Consumes from buf as needed. */
static int data_carry(struct mp_parser *p, const unsigned char *buf, size_t len, size_t *used,
		      bool *resolved, cell_error *err)
{
	unsigned char tmp[2 * MP_DELIM_MAX];
	size_t take = len < p->dlen - 1 ? len : p->dlen - 1, tl = p->carry_len + take;
	int rc;

	*resolved = false;
	memcpy(tmp, p->carry, p->carry_len);
	memcpy(tmp + p->carry_len, buf, take);
	for (size_t s = 0; s < p->carry_len; s++) {
		size_t cmp = tl - s < p->dlen ? tl - s : p->dlen;
		if (memcmp(tmp + s, p->delim, cmp))
			continue;
		if ((rc = emit(p, p->carry, s, err)) < 0)
			return rc;
		*resolved = true;
		if (cmp == p->dlen) {
			*used = s + p->dlen - p->carry_len;
			p->carry_len = 0;
			return delim_found(p, err);
		}
		/* Still a possible delimiter, and the input is used up. */
		memmove(p->carry, tmp + s, tl - s);
		p->carry_len = tl - s;
		*used = len;
		return 0;
	}
	rc = emit(p, p->carry, p->carry_len, err);
	p->carry_len = 0;
	return rc;
}

static int data_state(struct mp_parser *p, const unsigned char *buf, size_t len, size_t *used,
		      cell_error *err)
{
	const unsigned char *hit;
	size_t keep = 0;
	bool resolved;
	int rc;

	if (p->carry_len) {
		if ((rc = data_carry(p, buf, len, used, &resolved, err)) < 0 || resolved)
			return rc;
	}
	hit = memmem(buf, len, p->delim, p->dlen);
	if (hit) {
		if ((rc = emit(p, buf, (size_t)(hit - buf), err)) < 0)
			return rc;
		*used = (size_t)(hit - buf) + p->dlen;
		return delim_found(p, err);
	}
	/* Keep the longest tail that could start a delimiter. */
	for (size_t i = len > p->dlen - 1 ? len - (p->dlen - 1) : 0; i < len; i++)
		if (buf[i] == '\r' && !memcmp(buf + i, p->delim, len - i)) {
			keep = len - i;
			break;
		}
	if ((rc = emit(p, buf, len - keep, err)) < 0)
		return rc;
	memcpy(p->carry, buf + len - keep, keep);
	p->carry_len = keep;
	*used = len;
	return 0;
}

/* name="value" or name=value from a header's parameters ("" when absent). */
static void header_param(const char *h, const char *name, char *out, size_t n)
{
	size_t nl = strlen(name), k = 0;
	const char *p = h;

	out[0] = '\0';
	while ((p = strchr(p, ';'))) {
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, name, nl) || p[nl] != '=')
			continue;
		p += nl + 1;
		if (*p == '"') {
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				if (k + 1 < n)
					out[k++] = *p;
			}
		} else {
			for (; *p && *p != ';' && *p != ' ' && *p != '\t' && *p != '\r'; p++)
				if (k + 1 < n)
					out[k++] = *p;
		}
		out[k] = '\0';
		return;
	}
}

static int headers_done(struct mp_parser *p, cell_error *err)
{
	char name[256] = "", filename[1024] = "";
	char *save = NULL;

	p->hdr[p->hlen] = '\0';
	for (char *line = strtok_r(p->hdr, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
		char *colon = strchr(line, ':');
		if (!colon)
			return mp_bad(err, "malformed part header");
		if ((size_t)(colon - line) == 19 && !strncasecmp(line, "content-disposition", 19)) {
			header_param(colon + 1, "name", name, sizeof(name));
			header_param(colon + 1, "filename", filename, sizeof(filename));
		}
	}
	p->hlen = 0;
	p->in_part = true;
	p->state = MP_DATA;
	return p->cb->part_begin(p->data, name, filename, err);
}

int mp_feed(struct mp_parser *p, const void *in, size_t len, cell_error *err)
{
	const unsigned char *buf = in, *end = buf + len;
	int rc;

	while (buf < end) {
		size_t used = 0;
		unsigned char ch = *buf;

		switch (p->state) {
		case MP_DATA:
			if ((rc = data_state(p, buf, (size_t)(end - buf), &used, err)) < 0)
				return rc;
			buf += used;
			continue;
		case MP_AFTER_DELIM:
			if (ch == '-')
				p->state = MP_DASH2;
			else if (ch == '\r')
				p->state = MP_DELIM_LF;
			else if (ch != ' ' && ch != '\t')
				return mp_bad(err, "garbage after a boundary");
			break;
		case MP_DASH2:
			if (ch != '-')
				return mp_bad(err, "garbage after a boundary");
			p->state = MP_END;
			break;
		case MP_DELIM_LF:
			if (ch != '\n')
				return mp_bad(err, "garbage after a boundary");
			p->state = MP_HEADERS;
			p->hlen = 0;
			break;
		case MP_HEADERS:
			if (p->hlen == MP_HEADERS_MAX)
				return mp_bad(err, "part headers too long");
			p->hdr[p->hlen++] = (char)ch;
			if (p->hlen == 2 && !memcmp(p->hdr, "\r\n", 2)) {
				p->hlen = 0;   /* a part without headers */
				if ((rc = headers_done(p, err)) < 0)
					return rc;
			} else if (p->hlen >= 4 && !memcmp(p->hdr + p->hlen - 4, "\r\n\r\n", 4)) {
				p->hlen -= 4;
				if ((rc = headers_done(p, err)) < 0)
					return rc;
			}
			break;
		case MP_END:
			return 0;   /* the epilogue is ignored */
		}
		buf++;
	}
	return 0;
}

int mp_finish(struct mp_parser *p, cell_error *err)
{
	if (p->state != MP_END)
		return mp_bad(err, "the body ended before the closing boundary (truncated upload?)");
	return 0;
}
