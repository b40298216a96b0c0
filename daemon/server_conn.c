#include "daemon/server_conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"

#define SRV_CHUNK 65536

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
	if (c->streaming && c->rm && c->rm->body && c->body_state) {
		cell_error gone = { .status = 400 };
		snprintf(gone.msg, sizeof(gone.msg), "client went away");
		c->rm->body->end(c->body_state, &c->req, &c->resp, &gone);
		http_resp_free(&c->resp);
	}
	c->body_state = NULL;
	c->streaming = c->want_body = c->body_failed = false;
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
	if (!c->in_cb)
		lws_callback_on_writable(c->wsi);
}

int srv_conn_reject(struct srv_conn *c)
{
	/* The body (if any) was not read: the connection cannot be reused. */
	c->close_after = http_req_header(&c->req, "content-length") ||
			 http_req_header(&c->req, "transfer-encoding");
	c->want_body = false;
	srv_conn_respond(c);
	return 0;
}

static int srv_write_headers(struct srv_conn *c, uint64_t total)
{
	unsigned char *start = srv_wbuf + LWS_PRE, *p = start, *end = srv_wbuf + sizeof(srv_wbuf) - 1;
	struct lws *wsi = c->wsi;
	http_resp *r = &c->resp;

	if (lws_add_http_header_status(wsi, (unsigned)r->status, &p, end))
		return -1;
	if (r->content_type[0] &&
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
					 (unsigned char *)r->content_type,
					 (int)strlen(r->content_type), &p, end))
		return -1;
	for (int i = 0; i < r->nheaders; i++) {
		char name[80];
		snprintf(name, sizeof(name), "%s:", r->headers[i].name);
		if (lws_add_http_header_by_name(wsi, (unsigned char *)name,
						(unsigned char *)r->headers[i].value,
						(int)strlen(r->headers[i].value), &p, end))
			return -1;
	}
	if (c->close_after &&
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (unsigned char *)"close", 5,
					 &p, end))
		return -1;
	if (lws_add_http_header_content_length(wsi, total, &p, end) ||
	    lws_finalize_http_header(wsi, &p, end))
		return -1;
	if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS) < 0)
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

int srv_conn_write(struct srv_conn *c)
{
	uint64_t total;

	if (!c || !c->responding)
		return 0;
	total = c->resp.body.len + (c->resp.body_fd >= 0 ? (uint64_t)c->resp.body_fd_len : 0);
	if (!c->headers_sent) {
		if (srv_write_headers(c, total) < 0)
			return -1;
		if (c->req.method == HTTP_HEAD || !total)
			return srv_finish(c);
		if (lws_send_pipe_choked(c->wsi)) {
			lws_callback_on_writable(c->wsi);
			return 0;
		}
	}
	do {
		ssize_t n = srv_next_chunk(c, srv_wbuf + LWS_PRE);
		bool last;
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

/* Streamed request bodies. */
int srv_conn_body_begin(struct srv_conn *c)
{
	cell_error err = { 0 };

	c->streaming = true;
	if (c->rm->body->begin(&c->req, &c->body_state, &err) < 0) {
		c->streaming = false;
		c->body_state = NULL;
		resp_from_err(&c->resp, &err);
		return srv_conn_reject(c);
	}
	return 0;
}

int srv_conn_body_chunk(struct srv_conn *c, const void *data, size_t len)
{
	if (c->body_failed)
		return 0;
	if (c->rm->body->chunk(c->body_state, data, len, &c->body_err) < 0)
		c->body_failed = true;   /* keep reading to the end, then answer */
	return 0;
}

void http_req_pause_body(http_req *req, bool pause)
{
	struct srv_conn *c = req->conn;

	if (!c || !c->wsi || !c->streaming)
		return;
	lws_rx_flow_control(c->wsi, pause ? 0 : 1);
	/* lws times out a body that stops arriving; a pause is ours, not the client's. */
	if (pause)
		lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);
	else
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_HTTP_CONTENT, 10);
}

void http_req_body_finished(http_req *req)
{
	struct srv_conn *c = req->conn;

	if (!c || !c->wsi)
		return;
	/* lws still expects body bytes: this connection cannot be reused. */
	c->close_after = true;
	if (c->streaming)
		srv_conn_body_end(c);
}

int srv_conn_body_end(struct srv_conn *c)
{
	void *st = c->body_state;

	c->streaming = false;
	c->body_state = NULL;
	c->rm->body->end(st, &c->req, &c->resp, c->body_failed ? &c->body_err : NULL);
	if (!c->resp.deferred)
		srv_conn_respond(c);
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
