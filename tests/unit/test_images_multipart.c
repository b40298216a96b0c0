/* The streaming multipart/form-data parser and the chunked decoder that
 * image uploads go through: every split of the input must give the same
 * parts, and malformed bodies must fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/strbuf.h"
#include "daemon/http_chunked.h"
#include "common/multipart.h"

struct parts {
	int n;
	char name[4][64], filename[4][64];
	strbuf data[4];
	int ended;
};

static int on_begin(void *d, const char *name, const char *filename, cell_error *err)
{
	struct parts *p = d;
	if (p->n == 4)
		return cell_err(err, 400, 1, "too many");
	snprintf(p->name[p->n], 64, "%s", name);
	snprintf(p->filename[p->n], 64, "%s", filename);
	p->n++;
	return 0;
}

static int on_data(void *d, const void *buf, size_t len, cell_error *err)
{
	struct parts *p = d;
	return sb_append(&p->data[p->n - 1], buf, len);
}

static int on_end(void *d, cell_error *err)
{
	((struct parts *)d)->ended++;
	return 0;
}

static const struct mp_callbacks cb = { on_begin, on_data, on_end };

static void parts_free(struct parts *p)
{
	for (int i = 0; i < 4; i++)
		sb_free(&p->data[i]);
}

/* Feed body in pieces of `step` bytes (0: all at once). */
static int parse(const char *boundary, const char *body, size_t len, size_t step, struct parts *out,
		 cell_error *err)
{
	struct mp_parser *p = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	assert_int_equal(mp_new(boundary, &cb, out, &p, err), 0);
	for (size_t off = 0; off < len;) {
		size_t n = step && len - off > step ? step : len - off;
		if ((rc = mp_feed(p, body + off, n, err)) < 0) {
			mp_free(p);
			return rc;
		}
		off += n;
	}
	rc = mp_finish(p, err);
	mp_free(p);
	return rc;
}

/* What Go's multipart.Writer produces for LXD's split upload. */
static char *go_body(const char *b, const char *meta, size_t mlen, const char *rootfs, size_t rlen,
		     size_t *len)
{
	strbuf sb = { 0 };
	sb_printf(&sb, "--%s\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"meta.tar\"\r\n"
		  "Content-Type: application/octet-stream\r\n\r\n", b);
	sb_append(&sb, meta, mlen);
	sb_printf(&sb, "\r\n--%s\r\nContent-Disposition: form-data; name=\"rootfs\"; filename=\"root fs.tar\"\r\n"
		  "Content-Type: application/octet-stream\r\n\r\n", b);
	sb_append(&sb, rootfs, rlen);
	sb_printf(&sb, "\r\n--%s--\r\n", b);
	*len = sb.len;
	return sb_steal(&sb);
}

static void test_two_parts_any_split(void **state)
{
	const char *b = "9d8ab2db60da1bafe3466721e7cae8cb10e06d1bd39ef7f600adb18f9553";
	/* Data that looks like the delimiter without being it, across splits. */
	char meta[300], rootfs[5000];
	size_t len;
	char *body;

	memset(meta, 'm', sizeof(meta));
	memcpy(meta + 100, "\r\n--9d8ab2db60da", 16);
	for (size_t i = 0; i < sizeof(rootfs); i++)
		rootfs[i] = (char)(i * 7);
	memcpy(rootfs + 4000, "\r\n--", 4);
	memcpy(rootfs + sizeof(rootfs) - 3, "\r\n-", 3);
	body = go_body(b, meta, sizeof(meta), rootfs, sizeof(rootfs), &len);
	for (size_t step = 0; step < 80; step = step ? step + 1 : 1) {
		struct parts p;
		cell_error err = { 0 };
		assert_int_equal(parse(b, body, len, step, &p, &err), 0);
		assert_int_equal(p.n, 2);
		assert_int_equal(p.ended, 2);
		assert_string_equal(p.name[0], "metadata");
		assert_string_equal(p.filename[0], "meta.tar");
		assert_string_equal(p.name[1], "rootfs");
		assert_string_equal(p.filename[1], "root fs.tar");
		assert_int_equal(p.data[0].len, sizeof(meta));
		assert_memory_equal(p.data[0].buf, meta, sizeof(meta));
		assert_int_equal(p.data[1].len, sizeof(rootfs));
		assert_memory_equal(p.data[1].buf, rootfs, sizeof(rootfs));
		parts_free(&p);
	}
	free(body);
}

static void test_preamble_and_padding(void **state)
{
	const char body[] = "preamble text\r\n--xyz  \r\nContent-Disposition: form-data; name=metadata\r\n\r\n"
			    "abc\r\n--xyz--\r\nepilogue";
	struct parts p;
	cell_error err = { 0 };

	assert_int_equal(parse("xyz", body, sizeof(body) - 1, 0, &p, &err), 0);
	assert_int_equal(p.n, 1);
	assert_string_equal(p.name[0], "metadata");
	assert_string_equal(p.filename[0], "");
	assert_int_equal(p.data[0].len, 3);
	assert_memory_equal(p.data[0].buf, "abc", 3);
	parts_free(&p);
}

static void test_truncated_and_garbage(void **state)
{
	const char *b = "bnd";
	const char trunc[] = "--bnd\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\nabcdef";
	const char garbage[] = "--bnd\r\n\r\nabc\r\n--bndXX";
	struct parts p;
	cell_error err = { 0 };

	assert_true(parse(b, trunc, sizeof(trunc) - 1, 3, &p, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_non_null(strstr(err.msg, "closing boundary"));
	parts_free(&p);
	assert_true(parse(b, garbage, sizeof(garbage) - 1, 0, &p, &err) < 0);
	assert_int_equal(err.status, 400);
	parts_free(&p);
}

static void test_boundary_from_content_type(void **state)
{
	char b[MP_BOUNDARY_MAX + 1];
	cell_error err;

	assert_int_equal(mp_boundary("multipart/form-data; boundary=abc123", b, &err), 0);
	assert_string_equal(b, "abc123");
	assert_int_equal(mp_boundary("Multipart/Form-Data;boundary=\"a b:c\"", b, &err), 0);
	assert_string_equal(b, "a b:c");
	assert_true(mp_boundary("multipart/form-data", b, &err) < 0);
	assert_true(mp_boundary("application/octet-stream; boundary=x", b, &err) < 0);
	assert_true(mp_boundary("multipart/form-data; boundary=a\"b", b, &err) < 0);
	assert_true(mp_boundary("multipart/form-data; boundary="
				"0123456789012345678901234567890123456789012345678901234567890123456789x",
				b, &err) < 0);
}

/* ---- chunked ---- */

static int ch_out(void *d, const void *buf, size_t len, cell_error *err)
{
	return sb_append(d, buf, len);
}

static int dechunk(const char *in, size_t len, size_t step, strbuf *out, size_t *tail, cell_error *err)
{
	struct http_chunked c;
	size_t off = 0, used = 0;
	int rc = 0;

	http_chunked_init(&c);
	while (off < len) {
		size_t n = step && len - off > step ? step : len - off;
		rc = http_chunked_feed(&c, in + off, n, &used, ch_out, out, err);
		if (rc < 0)
			return rc;
		off += used;
		if (rc == 1)
			break;
	}
	*tail = len - off;
	return rc;
}

static void test_chunked_splits(void **state)
{
	const char in[] = "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: y\r\n\r\nNEXT";

	for (size_t step = 0; step < 20; step++) {
		strbuf out = { 0 };
		cell_error err = { 0 };
		size_t tail = 0;
		assert_int_equal(dechunk(in, sizeof(in) - 1, step, &out, &tail, &err), 1);
		assert_int_equal(out.len, 16);
		assert_memory_equal(out.buf, "hello 0123456789", 16);
		assert_int_equal(tail, 4);   /* "NEXT" is not the body's */
		sb_free(&out);
	}
}

static void test_chunked_bad(void **state)
{
	const char *bad[] = { "zz\r\n", "5\r\nhelloXX", "\r\n", "5\nhello\r\n",
			      "ffffffffffffffffff\r\n" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		strbuf out = { 0 };
		cell_error err = { 0 };
		size_t tail;
		assert_true(dechunk(bad[i], strlen(bad[i]), 0, &out, &tail, &err) < 0);
		assert_int_equal(err.status, 400);
		sb_free(&out);
	}
	{
		/* Incomplete is not an error: more may come. */
		strbuf out = { 0 };
		cell_error err = { 0 };
		size_t tail;
		assert_int_equal(dechunk("5\r\nhel", 6, 0, &out, &tail, &err), 0);
		sb_free(&out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_parts_any_split),
		cmocka_unit_test(test_preamble_and_padding),
		cmocka_unit_test(test_truncated_and_garbage),
		cmocka_unit_test(test_boundary_from_content_type),
		cmocka_unit_test(test_chunked_splits),
		cmocka_unit_test(test_chunked_bad),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
