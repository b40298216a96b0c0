/*
 * File transfers without copying through our memory, on a plain (unix
 * socket) connection: downloads splice socket -> pipe -> file, uploads
 * sendfile file -> socket.  Over TLS the bytes must pass through OpenSSL,
 * so those remotes use httpc (file_xfer.c) instead.
 *
 * Each transfer has its own connection: a unix connect costs far less
 * than one copy of a large file, and nothing else shares its state.
 */
#include "client/file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "common/util.h"

#define RAW_HEAD_MAX (64u << 10)
#define RAW_BODY_MAX (16u << 20)      /* a JSON answer, never a file */
#define RAW_STEP (1u << 20)           /* per splice/sendfile call: progress granularity */
#define RAW_SOCK_BUF (4 << 20)

static void conn_freep(httpc_conn **c) { httpc_conn_free(*c); }
#define _cleanup_conn_ __attribute__((cleanup(conn_freep)))

bool cli_file_raw_usable(const struct cli_file_inst *f)
{
	return f->c->unix_path != NULL;
}

/* ------------------------------------------------------------- request */

static int send_head(httpc_conn *conn, const char *method, const char *path, const char *const *headers,
		     int64_t len, cell_error *err)
{
	_cleanup_sb_ strbuf sb = { 0 };
	int rc = sb_printf(&sb, "%s %s HTTP/1.1\r\nHost: unix.socket\r\nUser-Agent: cell/" CELL_VERSION "\r\n",
			   method, path);

	for (const char *const *h = headers; h && *h && rc == 0; h++)
		rc = sb_printf(&sb, "%s\r\n", *h);
	if (rc == 0 && len >= 0)
		rc = sb_printf(&sb, "Content-Length: %" PRId64 "\r\n", len);
	if (rc == 0)
		rc = sb_puts(&sb, "\r\n");
	if (rc < 0)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return httpc_conn_write(conn, sb.buf, sb.len, err);
}

/* ------------------------------------------------------------ response */

static int add_header(struct httpc_resp *r, const char *line, size_t n, cell_error *err)
{
	const char *colon = memchr(line, ':', n), *v;
	struct httpc_header *nh;
	size_t vl;

	if (!colon || colon == line)
		return cell_err(err, 502, EPROTO, "bad HTTP header \"%.*s\"", (int)(n > 80 ? 80 : n), line);
	if (!(nh = realloc(r->headers, (r->nheaders + 1) * sizeof(*nh))))
		return cell_err(err, 500, ENOMEM, "out of memory");
	r->headers = nh;
	for (v = colon + 1; v < line + n && (*v == ' ' || *v == '\t'); v++)
		;
	for (vl = (size_t)(line + n - v); vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'); vl--)
		;
	nh = &r->headers[r->nheaders++];
	nh->name = strndup(line, (size_t)(colon - line));
	nh->value = strndup(v, vl);
	return nh->name && nh->value ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

static int parse_head(const char *head, size_t len, struct httpc_resp *r, cell_error *err)
{
	const char *end = head + len, *nl = memchr(head, '\n', len);
	int n = 0, rc;

	if (!nl || sscanf(head, "HTTP/1.%*d %3d%n", &r->status, &n) < 1 || r->status < 100)
		return cell_err(err, 502, EPROTO, "bad HTTP status line");
	r->reason = strndup(head + n + (head[n] == ' '), (size_t)(nl - head - n - (head[n] == ' ')));
	if (r->reason && (n = (int)strlen(r->reason)) && r->reason[n - 1] == '\r')
		r->reason[n - 1] = '\0';
	for (const char *p = nl + 1; p < end;) {
		const char *e = memchr(p, '\n', (size_t)(end - p));
		size_t l = (size_t)((e ? e : end) - p);
		if (l && p[l - 1] == '\r')
			l--;
		if (l && (rc = add_header(r, p, l, err)) < 0)
			return rc;
		p = e ? e + 1 : end;
	}
	return 0;
}

/* Status line and headers; what came after them is left in *rest. */
static int read_head(httpc_conn *conn, struct httpc_resp *r, strbuf *rest, cell_error *err)
{
	_cleanup_sb_ strbuf sb = { 0 };
	char buf[4096], *end = NULL;
	size_t hl;
	int rc;

	do {
		ssize_t n = httpc_conn_read(conn, buf, sizeof(buf), err);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return cell_err(err, 502, EPIPE, "read response: connection closed by server");
		if (sb_append(&sb, buf, (size_t)n) < 0)
			return cell_err(err, 500, ENOMEM, "out of memory");
		if (sb.len > RAW_HEAD_MAX)
			return cell_err(err, 502, EPROTO, "HTTP headers too large");
		end = memmem(sb.buf, sb.len, "\r\n\r\n", 4);
	} while (!end);
	hl = (size_t)(end - sb.buf) + 4;
	if ((rc = parse_head(sb.buf, hl - 2, r, err)) < 0)
		return rc;
	return sb_append(rest, sb.buf + hl, sb.len - hl) < 0 ? cell_err(err, 500, ENOMEM, "out of memory") : 0;
}

static int64_t content_length(const struct httpc_resp *r)
{
	const char *cl = httpc_resp_header(r, "Content-Length");
	char *e;
	long long n;

	if (!cl || !*cl)
		return -1;
	errno = 0;
	n = strtoll(cl, &e, 10);
	return errno || *e || n < 0 ? -2 : n;
}

/* Everything until the connection ends (a body without a length). */
static int read_to_eof(httpc_conn *conn, strbuf *b, cell_error *err)
{
	char buf[8192];
	ssize_t n;

	while ((n = httpc_conn_read(conn, buf, sizeof(buf), err)) > 0)
		if (b->len + (size_t)n > RAW_BODY_MAX || sb_append(b, buf, (size_t)n) < 0)
			return cell_err(err, 502, EFBIG, "response body too large");
	return (int)n;
}

static int read_exact(httpc_conn *conn, strbuf *b, size_t want, cell_error *err)
{
	char buf[8192];

	while (b->len < want) {
		size_t n = want - b->len < sizeof(buf) ? want - b->len : sizeof(buf);
		int rc = httpc_conn_read_full(conn, buf, n, err);
		if (rc < 0 || sb_append(b, buf, n) < 0)
			return rc < 0 ? rc : cell_err(err, 500, ENOMEM, "out of memory");
	}
	return 0;
}

/* A chunked body already wholly in raw (read to EOF or enough): decoded into out. */
static int dechunk(const strbuf *raw, strbuf *out, bool *done, cell_error *err)
{
	size_t p = 0;

	*done = false;
	while (p < raw->len) {
		char *e;
		unsigned long long n = strtoull(raw->buf + p, &e, 16);
		char *nl = memchr(raw->buf + p, '\n', raw->len - p);
		if (!nl || e == raw->buf + p)
			return 0;   /* need more */
		p = (size_t)(nl - raw->buf) + 1;
		if (n == 0) {
			*done = true;
			return 0;
		}
		if (p + n + 2 > raw->len)
			return 0;
		if (out->len + n > RAW_BODY_MAX || sb_append(out, raw->buf + p, (size_t)n) < 0)
			return cell_err(err, 502, EFBIG, "response body too large");
		p += n + 2;
	}
	return 0;
}

static int read_chunked(httpc_conn *conn, strbuf *raw, strbuf *out, cell_error *err)
{
	char buf[8192];
	bool done = false;
	int rc;

	for (;;) {
		sb_reset(out);
		if ((rc = dechunk(raw, out, &done, err)) < 0 || done)
			return rc;
		ssize_t n = httpc_conn_read(conn, buf, sizeof(buf), err);
		if (n <= 0)
			return n < 0 ? (int)n : cell_err(err, 502, EPIPE, "read response: connection closed mid-body");
		if (raw->len + (size_t)n > RAW_BODY_MAX || sb_append(raw, buf, (size_t)n) < 0)
			return cell_err(err, 502, EFBIG, "response body too large");
	}
}

/* A small body (an error, a listing, a symlink target) into r->body. */
static int read_small_body(httpc_conn *conn, struct httpc_resp *r, strbuf *rest, bool head_only,
			   cell_error *err)
{
	const char *te = httpc_resp_header(r, "Transfer-Encoding");
	int64_t len = content_length(r);
	int rc;

	if (head_only || r->status == 204 || r->status == 304)
		return 0;
	if (te && strcasestr(te, "chunked"))
		return read_chunked(conn, rest, &r->body, err);
	if (len < -1 || len > (int64_t)RAW_BODY_MAX)
		return cell_err(err, 502, EPROTO, "bad Content-Length");
	rc = len < 0 ? read_to_eof(conn, rest, err) : read_exact(conn, rest, (size_t)len, err);
	if (rc < 0)
		return rc;
	r->body = *rest;
	memset(rest, 0, sizeof(*rest));
	return 0;
}

/* ---------------------------------------------------------------- pumps */

static int write_all(int fd, const char *p, size_t n, cell_error *err)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return cell_err_sys(err, 500, errno, "write");
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* What the head read and the connection's buffer already hold, then the
 * socket itself: nothing may be skipped or taken twice. */
static int body_buffered(httpc_conn *conn, const strbuf *rest, int out_fd, uint64_t *left, cell_error *err)
{
	char buf[16384];
	size_t n = rest->len < *left ? rest->len : (size_t)*left;
	int rc = write_all(out_fd, rest->buf, n, err);

	*left -= n;
	while (rc == 0 && *left && httpc_conn_pending(conn)) {
		ssize_t r = httpc_conn_read(conn, buf, *left < sizeof(buf) ? (size_t)*left : sizeof(buf), err);
		if (r <= 0)
			return r < 0 ? (int)r : cell_err(err, 502, EPIPE, "read response: connection closed mid-body");
		rc = write_all(out_fd, buf, (size_t)r, err);
		*left -= (uint64_t)r;
	}
	return rc;
}

/* One pipe's worth from the socket to out_fd; false from *moved when
 * out_fd cannot take splice (a terminal), to fall back to plain copies. */
static int splice_step(int sock, int pipefd[2], int out_fd, size_t want, size_t *moved, cell_error *err)
{
	ssize_t in = splice(sock, NULL, pipefd[1], NULL, want, SPLICE_F_MOVE | SPLICE_F_MORE);

	*moved = 0;
	if (in == 0)
		return cell_err(err, 502, EPIPE, "read response: connection closed mid-body");
	if (in < 0)
		return errno == EINTR ? 0 : cell_err_sys(err, 500, errno, "splice from the server");
	for (ssize_t left = in; left > 0;) {
		ssize_t out = splice(pipefd[0], NULL, out_fd, NULL, (size_t)left, SPLICE_F_MOVE | SPLICE_F_MORE);
		if (out < 0 && errno == EINTR)
			continue;
		if (out <= 0)
			return cell_err_sys(err, 500, out < 0 ? errno : EIO, "write");
		left -= out;
	}
	*moved = (size_t)in;
	return 0;
}

static int copy_step(int sock, int out_fd, size_t want, size_t *moved, cell_error *err)
{
	char buf[1 << 16];
	ssize_t n = read(sock, buf, want < sizeof(buf) ? want : sizeof(buf));

	*moved = 0;
	if (n == 0)
		return cell_err(err, 502, EPIPE, "read response: connection closed mid-body");
	if (n < 0)
		return errno == EINTR ? 0 : cell_err_sys(err, 500, errno, "read from the server");
	*moved = (size_t)n;
	return write_all(out_fd, buf, (size_t)n, err);
}

/* Pages move to files, pipes and sockets; terminals and the like get copies. */
static bool takes_splice(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

static int body_to_fd(httpc_conn *conn, const strbuf *rest, int out_fd, uint64_t total, httpc_progress_fn progress,
		      void *pdata, cell_error *err)
{
	int pipefd[2] = { -1, -1 }, sock = httpc_conn_fd(conn), rc;
	uint64_t left = total;
	bool can_splice = takes_splice(out_fd) && pipe2(pipefd, O_CLOEXEC) == 0;

	if (can_splice)
		fcntl(pipefd[1], F_SETPIPE_SZ, RAW_STEP);   /* best effort: fewer round trips */
	rc = body_buffered(conn, rest, out_fd, &left, err);
	while (rc == 0 && left) {
		size_t want = left < RAW_STEP ? (size_t)left : RAW_STEP, moved;
		rc = can_splice ? splice_step(sock, pipefd, out_fd, want, &moved, err)
				: copy_step(sock, out_fd, want, &moved, err);
		left -= moved;
		if (rc == 0 && progress)
			progress(pdata, total - left, total);
	}
	if (pipefd[0] >= 0) {
		close(pipefd[0]);
		close(pipefd[1]);
	}
	return rc;
}

/* ------------------------------------------------------------- requests */

int cli_file_raw_get(struct cli_file_inst *f, const char *method, const char *path, int out_fd,
		     httpc_progress_fn progress, void *pdata, struct httpc_resp *resp, cell_error *err)
{
	_cleanup_conn_ httpc_conn *conn = NULL;
	_cleanup_sb_ strbuf rest = { 0 };
	bool head = !strcmp(method, "HEAD");
	int64_t len;
	int rc;

	memset(resp, 0, sizeof(*resp));
	if ((rc = httpc_conn_open(&f->c->opts, &conn, err)) < 0 ||
	    (rc = send_head(conn, method, path, NULL, -1, err)) < 0 || (rc = read_head(conn, resp, &rest, err)) < 0)
		return rc;
	len = content_length(resp);
	if (head || out_fd < 0 || resp->status / 100 != 2)
		return read_small_body(conn, resp, &rest, head, err);
	if (len < 0) {   /* no length: let httpc decode it (GET can be sent again) */
		httpc_resp_free(resp);
		return -ENOTSUP;
	}
	return body_to_fd(conn, &rest, out_fd, (uint64_t)len, progress, pdata, err);
}

static int send_body(httpc_conn *conn, int fd, int64_t len, httpc_progress_fn progress, void *pdata,
		     cell_error *err)
{
	int sock = httpc_conn_fd(conn);
	int64_t done = 0;
	int sndbuf = RAW_SOCK_BUF;

	/* A deeper socket buffer means fewer wake-ups on both ends. */
	if (len > (int64_t)RAW_STEP)
		setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	while (done < len) {
		size_t want = len - done < (int64_t)RAW_STEP ? (size_t)(len - done) : RAW_STEP;
		ssize_t n = sendfile(sock, fd, NULL, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return cell_err_sys(err, 500, errno, "send");
		if (n == 0)
			return cell_err(err, 500, EIO, "read request body: file shorter than announced");
		done += n;
		if (progress)
			progress(pdata, (uint64_t)done, (uint64_t)len);
	}
	return 0;
}

int cli_file_raw_post(struct cli_file_inst *f, const char *path, const char *const *headers, int fd, int64_t len,
		      const void *data, size_t data_len, httpc_progress_fn progress, void *pdata,
		      struct httpc_resp *resp, cell_error *err)
{
	_cleanup_conn_ httpc_conn *conn = NULL;
	_cleanup_sb_ strbuf rest = { 0 };
	cell_error sent = { 0 };
	int rc, hr;

	memset(resp, 0, sizeof(*resp));
	if ((rc = httpc_conn_open(&f->c->opts, &conn, err)) < 0 ||
	    (rc = send_head(conn, "POST", path, headers, fd >= 0 ? len : (int64_t)data_len, err)) < 0)
		return rc;
	if (fd >= 0)
		rc = send_body(conn, fd, len, progress, pdata, &sent);
	else if (data_len)
		rc = httpc_conn_write(conn, data, data_len, &sent);
	/* A server refusing early may close before taking it all: its answer
	 * says why better than our EPIPE does. */
	if ((hr = read_head(conn, resp, &rest, err)) < 0) {
		if (rc < 0)
			*err = sent;
		return rc < 0 ? rc : hr;
	}
	return read_small_body(conn, resp, &rest, false, err);
}
