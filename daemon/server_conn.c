#include "daemon/server_conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"

#define SRV_CHUNK 65536
#define SRV_SENDFILE_STEP (4u << 20)
#define SRV_SENDFILE_TURN (32 << 20)

/* One write buffer for the whole loop: writers never run concurrently. */
static unsigned char srv_wbuf[LWS_PRE + SRV_CHUNK];

struct http_deferred {
	struct srv_conn *c;      /* NULL once the client is gone */
};

static void srv_req_free(http_req *r)
{
	free(r->path);
	free(r->scratch);
	for (int i = 0; i < r->nheaders; i++) {
		free(r->headers[i].name);
		free(r->headers[i].value);
	}
	for (int i = 0; i < r->nargs; i++)
		free(r->args[i]);
	free(r->args);
	sb_free(&r->body);
	memset(r, 0, sizeof(*r));
}

static void srv_conn_clear(struct srv_conn *c)
{
	srv_req_free(&c->req);
	http_resp_free(&c->resp);
	if (c->deferred) {
		c->deferred->c = NULL;
		c->deferred = NULL;
	}
	srv_conn_body_drop(c);
	if (c->streaming && c->rm && c->rm->body && c->body_state) {
		cell_error gone = { .status = 400 };
		snprintf(gone.msg, sizeof(gone.msg), "client went away");
		c->rm->body->end(c->body_state, &c->req, &c->resp, &gone);
		http_resp_free(&c->resp);
	}
	c->body_state = NULL;
	c->streaming = c->want_body = c->body_failed = c->chunked = false;
	c->responding = c->headers_sent = c->close_after = false;
	c->body_off = 0;
	c->fd_off = 0;
	c->rm = NULL;
}

void srv_conn_reset(struct srv_conn *c, struct lws *wsi)
{
	/* lws hands us zeroed memory for a new connection: nothing to free yet
	 * (and a zero body_fd is not ours to close). */
	if (c->wsi)
		srv_conn_clear(c);
	c->wsi = wsi;
	http_resp_init(&c->resp);
}

void srv_conn_closed(struct srv_conn *c)
{
	if (!c || !c->wsi)
		return;
	srv_conn_clear(c);
	free(c->peer_pem);
	c->peer_pem = NULL;
	c->peer_checked = false;
	c->wsi = NULL;
}

/*
 * Inside an lws HTTP callback the answer is written when the callback
 * returns (srv_callback): no extra loop turn, and lws sees the transaction
 * complete before it looks at pipelined bytes already buffered.  Elsewhere
 * (deferred answers) wait for writability.
 */
void srv_conn_respond(struct srv_conn *c)
{
	c->responding = true;
	if (srv_body_owns_reply(c)) {
		srv_body_reply(c);
		return;
	}
	if (!c->in_cb)
		lws_callback_on_writable(c->wsi);
}

int srv_conn_reject(struct srv_conn *c)
{
	/* The body (if any) was not read: the connection cannot be reused. */
	c->close_after = c->chunked || http_req_header(&c->req, "content-length") ||
			 http_req_header(&c->req, "transfer-encoding");
	c->want_body = false;
	srv_conn_respond(c);
	return 0;
}

/* The status line and headers into [*p, end); lws's helpers only format here. */
int srv_conn_build_headers(struct srv_conn *c, uint64_t total, unsigned char **p, unsigned char *end)
{
	struct lws *wsi = c->wsi;
	http_resp *r = &c->resp;

	if (lws_add_http_header_status(wsi, (unsigned)r->status, p, end))
		return -1;
	if (r->content_type[0] &&
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
					 (unsigned char *)r->content_type,
					 (int)strlen(r->content_type), p, end))
		return -1;
	for (int i = 0; i < r->nheaders; i++) {
		char name[80];
		snprintf(name, sizeof(name), "%s:", r->headers[i].name);
		if (lws_add_http_header_by_name(wsi, (unsigned char *)name,
						(unsigned char *)r->headers[i].value,
						(int)strlen(r->headers[i].value), p, end))
			return -1;
	}
	if (c->close_after &&
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (unsigned char *)"close", 5,
					 p, end))
		return -1;
	if (lws_add_http_header_content_length(wsi, total, p, end) ||
	    lws_finalize_http_header(wsi, p, end))
		return -1;
	return 0;
}

uint64_t srv_conn_resp_total(const struct srv_conn *c)
{
	return c->resp.body.len + (c->resp.body_fd >= 0 ? (uint64_t)c->resp.body_fd_len : 0);
}

static int srv_write_headers(struct srv_conn *c, uint64_t total)
{
	unsigned char *start = srv_wbuf + LWS_PRE, *p = start, *end = srv_wbuf + sizeof(srv_wbuf) - 1;

	if (srv_conn_build_headers(c, total, &p, end) < 0)
		return -1;
	/* A small body goes in the same write: a client woken by the headers
	 * alone would often wait a scheduling round for the rest. */
	if (c->req.method != HTTP_HEAD && c->resp.body_fd < 0 && c->resp.body.len &&
	    c->resp.body.len <= (size_t)(end - p)) {
		memcpy(p, c->resp.body.buf, c->resp.body.len);
		p += c->resp.body.len;
		c->body_off = c->resp.body.len;
	}
	if (lws_write(c->wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS) < 0)
		return -1;
	c->headers_sent = true;
	return 0;
}

/* Next chunk of body (memory first, then file); returns its length, 0 at the end. */
static ssize_t srv_next_chunk(struct srv_conn *c, unsigned char *buf)
{
	http_resp *r = &c->resp;

	if (c->body_off < r->body.len) {
		size_t n = r->body.len - c->body_off;
		if (n > SRV_CHUNK)
			n = SRV_CHUNK;
		memcpy(buf, r->body.buf + c->body_off, n);
		c->body_off += n;
		return (ssize_t)n;
	}
	if (r->body_fd >= 0 && c->fd_off < r->body_fd_len) {
		size_t want = (size_t)(r->body_fd_len - c->fd_off);
		ssize_t n = pread(r->body_fd, buf, want > SRV_CHUNK ? SRV_CHUNK : want, c->fd_off);
		if (n <= 0)
			return -1;   /* file shrank under us: the length was promised, so close */
		c->fd_off += n;
		return n;
	}
	return 0;
}

static bool srv_body_done(struct srv_conn *c)
{
	return c->body_off >= c->resp.body.len &&
	       (c->resp.body_fd < 0 || c->fd_off >= c->resp.body_fd_len);
}

static int srv_finish(struct srv_conn *c)
{
	bool close_now = c->close_after;

	srv_conn_reset(c, c->wsi);
	if (close_now)
		return -1;
	return lws_http_transaction_completed(c->wsi) ? -1 : 0;
}

/* Past its memory part, a file body over a plain socket (no TLS) goes
 * from the page cache to the socket with sendfile, skipping lws's copy. */
static bool srv_can_sendfile(struct srv_conn *c)
{
	return c->resp.body_fd >= 0 && c->body_off >= c->resp.body.len && !lws_get_ssl(c->wsi) &&
	       !lws_partial_buffered(c->wsi);
}

static int srv_sendfile(struct srv_conn *c)
{
	int sock = lws_get_socket_fd(c->wsi);
	off_t turn_end = c->fd_off + SRV_SENDFILE_TURN;
	int sndbuf = SRV_SENDFILE_STEP;

	/* A deeper socket buffer: fewer wake-ups for both ends of a big download. */
	if (c->fd_off == 0 && c->resp.body_fd_len > SRV_SENDFILE_STEP)
		setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));

	while (c->fd_off < c->resp.body_fd_len) {
		off_t left = c->resp.body_fd_len - c->fd_off;
		ssize_t n;
		if (c->fd_off >= turn_end)
			break;   /* let other connections have the loop */
		n = sendfile(sock, c->resp.body_fd, &c->fd_off, left > SRV_SENDFILE_STEP ?
			     SRV_SENDFILE_STEP : (size_t)left);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n <= 0)
			return -1;   /* file shrank or client gone: the length was promised, so close */
	}
	if (c->fd_off >= c->resp.body_fd_len)
		return srv_finish(c);
	lws_callback_on_writable(c->wsi);
	return 0;
}

int srv_conn_write(struct srv_conn *c)
{
	uint64_t total;

	if (!c || !c->responding)
		return 0;
	total = srv_conn_resp_total(c);
	if (!c->headers_sent) {
		if (srv_write_headers(c, total) < 0)
			return -1;
		if (c->req.method == HTTP_HEAD || srv_body_done(c))
			return srv_finish(c);
		if (lws_send_pipe_choked(c->wsi)) {
			lws_callback_on_writable(c->wsi);
			return 0;
		}
	}
	do {
		ssize_t n;
		bool last;
		if (srv_can_sendfile(c))
			return srv_sendfile(c);
		n = srv_next_chunk(c, srv_wbuf + LWS_PRE);
		if (n < 0)
			return -1;
		last = srv_body_done(c);
		if (n && lws_write(c->wsi, srv_wbuf + LWS_PRE, (size_t)n,
				   last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < 0)
			return -1;
		if (last)
			return srv_finish(c);
	} while (!lws_send_pipe_choked(c->wsi));
	lws_callback_on_writable(c->wsi);
	return 0;
}

/* Deferred answers. */
http_deferred *http_defer(http_req *req, http_resp *resp)
{
	struct srv_conn *c = req->conn;
	http_deferred *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->c = c;
	c->deferred = d;
	resp->deferred = true;
	return d;
}

bool http_deferred_alive(const http_deferred *d) { return d && d->c; }

void http_deferred_finish(http_deferred *d, http_resp *resp)
{
	struct srv_conn *c = d->c;

	if (c) {
		http_resp_free(&c->resp);
		c->resp = *resp;
		c->resp.deferred = false;
		c->deferred = NULL;
		http_resp_init(resp);
		srv_conn_respond(c);
	} else {
		http_resp_free(resp);
	}
	free(d);
}
