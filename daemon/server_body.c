/*
 * Streamed request bodies (ROUTE_STREAM_BODY routes: image imports, file
 * pushes).  Routes get the body's bytes through their chunk() and its end
 * through end(); Transfer-Encoding: chunked is decoded here.
 *
 * libwebsockets 4.1 delivers request bodies itself only up to a length it
 * knows: a body without Content-Length (Transfer-Encoding: chunked, which
 * Debian's lxc always sends) is cut at 100 MiB, and every body crosses its
 * 64 KiB service buffer.  So once a large or chunked body starts, the server
 * takes the rest of it off lws: lws stops reading the socket (rx flow
 * control) and we read a duplicate of its descriptor (or its TLS session)
 * straight into the route, in large reads.  lws still delivers the bytes it
 * had already read with the headers, in order, before our first read (that
 * one waits a loop turn).  Afterwards lws's idea of the request is wrong (it
 * would not even call us back to write), so we write the answer on the same
 * descriptor or TLS session ourselves and the connection closes after it.
 */
#include "daemon/server_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <uv.h>

#include "common/log.h"
#include "common/strbuf.h"
#include "daemon/daemon.h"

#define SRV_BODY_BUF (1u << 20)
#define SRV_BODY_TAKE_OVER (256u << 10)   /* smaller bodies stay with lws (keep-alive) */
#define SRV_BODY_TURN (16u << 20)         /* bytes per loop turn: others get served too */
#define SRV_BODY_IDLE_MS 10000            /* a client that stops sending is dropped */

struct srv_body_reader {
	uv_poll_t poll;
	uv_timer_t timer;        /* idle limit, or a zero-delay kick to read on */
	int fd;                  /* our duplicate of the connection's socket */
	SSL *ssl;                /* the connection's TLS session, NULL on the unix socket */
	struct srv_conn *c;      /* NULL once released */
	uint64_t remain;         /* Content-Length left; UINT64_MAX when chunked */
	bool paused, took, kick, reading;
	int pipe[2];             /* socket -> pipe -> file, for routes with a sink */
	strbuf out;              /* the answer (headers and body) once it is ready */
	size_t out_off;
	int open_handles;
};

static int srv_body_to_route(void *data, const void *buf, size_t len, cell_error *unused);

/* One read buffer for the loop: the route consumes each read before the next. */
static unsigned char *srv_body_buf;

static void srv_body_handle_closed(uv_handle_t *h)
{
	struct srv_body_reader *r = h->data;

	if (--r->open_handles)
		return;
	close(r->fd);
	if (r->pipe[0] >= 0) {
		close(r->pipe[0]);
		close(r->pipe[1]);
	}
	sb_free(&r->out);
	free(r);
}

/* Stop reading; the reader frees itself once libuv lets go of its handles. */
static void srv_body_release(struct srv_conn *c)
{
	struct srv_body_reader *r = c->reader;

	if (!r)
		return;
	c->reader = NULL;
	r->c = NULL;
	uv_poll_stop(&r->poll);
	uv_timer_stop(&r->timer);
	uv_close((uv_handle_t *)&r->poll, srv_body_handle_closed);
	uv_close((uv_handle_t *)&r->timer, srv_body_handle_closed);
}

/* End the connection: shut the socket and let lws read again, so it sees
 * the end and closes (lws's own kill timers do not fire from outside its
 * service; a writable callback is not delivered while it waits for a body). */
static void srv_body_hangup(struct srv_body_reader *r, struct srv_conn *c)
{
	shutdown(r->fd, SHUT_RDWR);
	lws_rx_flow_control(c->wsi, 1);
}

/* The client went away or stalled mid-body: drop the connection.  Closing
 * calls the route's end() with "client went away" (srv_conn_clear). */
static void srv_body_abort(struct srv_conn *c, const char *why)
{
	log_debug("request body of %s: %s", c->req.path, why);
	srv_body_hangup(c->reader, c);
	srv_body_release(c);
}

/* One read from the socket or TLS session: > 0 bytes, 0 would block, -1 EOF/error. */
static ssize_t srv_body_recv(struct srv_body_reader *r, size_t want, int *events)
{
	ssize_t n;

	*events = UV_READABLE;
	if (!r->ssl) {
		n = read(r->fd, srv_body_buf, want);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		return n > 0 ? n : -1;
	}
	ERR_clear_error();
	n = SSL_read(r->ssl, srv_body_buf, (int)want);
	if (n > 0)
		return n;
	switch (SSL_get_error(r->ssl, (int)n)) {
	case SSL_ERROR_WANT_READ:
		return 0;
	case SSL_ERROR_WANT_WRITE:   /* TLS housekeeping (key update) wants to send */
		*events = UV_READABLE | UV_WRITABLE;
		return 0;
	default:
		return -1;
	}
}

static void srv_body_timer(uv_timer_t *t);
static void srv_body_readable(uv_poll_t *p, int status, int events);

/* Come back on the next loop turn (data may already sit in a buffer no poll sees). */
static void srv_body_kick(struct srv_body_reader *r)
{
	r->kick = true;
	uv_poll_stop(&r->poll);
	uv_timer_start(&r->timer, srv_body_timer, 0, 0);
}

static void srv_body_wait(struct srv_body_reader *r, int events)
{
	r->kick = false;
	uv_timer_start(&r->timer, srv_body_timer, SRV_BODY_IDLE_MS, 0);
	uv_poll_start(&r->poll, events, srv_body_readable);
}

/* The route's file, when the bytes may go there without passing through us:
 * a plain socket and a body that is not chunked. */
static int srv_body_sink(struct srv_body_reader *r)
{
	struct srv_conn *c = r->c;

	if (r->ssl || c->chunked || c->body_failed || !c->rm->body->sink)
		return -1;
	if (r->pipe[0] < 0) {
		if (pipe2(r->pipe, O_CLOEXEC | O_NONBLOCK) < 0)
			return -1;
		fcntl(r->pipe[1], F_SETPIPE_SZ, SRV_BODY_BUF);
	}
	return c->rm->body->sink(c->body_state);
}

/*
 * socket -> pipe -> file: the kernel moves the pages, no copy through us.
 * Returns bytes moved, 0 would block, -1 EOF/error on the socket.  When
 * the file refuses them, the bytes still in the pipe go through chunk(),
 * whose write fails the same way and gives the route its error.
 */
static ssize_t srv_body_splice(struct srv_body_reader *r, int sink, size_t want)
{
	ssize_t n = splice(r->fd, NULL, r->pipe[1], NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	size_t moved = 0;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	while (moved < (size_t)n) {
		ssize_t m = splice(r->pipe[0], NULL, sink, NULL, (size_t)n - moved, SPLICE_F_MOVE);
		if (m <= 0)
			break;
		moved += (size_t)m;
	}
	while (moved < (size_t)n) {
		ssize_t k = read(r->pipe[0], srv_body_buf, (size_t)n - moved);
		if (k <= 0)
			return -1;
		srv_body_to_route(r->c, srv_body_buf, (size_t)k, NULL);
		moved += (size_t)k;
	}
	return n;
}

/* Read until the socket is dry, the body ends, the route pauses or the turn is used. */
static void srv_body_pump(struct srv_body_reader *r)
{
	size_t turn = 0;
	int events = UV_READABLE;

	if (!r->took)   /* lws armed its body timeout after handing over its share */
		lws_set_timeout(r->c->wsi, NO_PENDING_TIMEOUT, 0);
	while (r->c && r->reading && !r->paused && r->remain && turn < SRV_BODY_TURN) {
		struct srv_conn *c = r->c;
		size_t want = r->remain < SRV_BODY_BUF ? (size_t)r->remain : SRV_BODY_BUF;
		int sink = srv_body_sink(r);
		ssize_t n = sink >= 0 ? srv_body_splice(r, sink, want) : srv_body_recv(r, want, &events);
		if (n == 0)
			break;
		if (n < 0) {
			srv_body_abort(c, "connection closed before the end of the body");
			return;
		}
		r->took = true;
		turn += (size_t)n;
		if (r->remain != UINT64_MAX)
			r->remain -= (uint64_t)n;
		if (sink < 0)
			srv_conn_body_chunk(c, srv_body_buf, (size_t)n);   /* may end the body */
		if (r->c && !r->remain)
			srv_conn_body_end(c);
	}
	if (!r->c || !r->reading || r->paused)
		return;
	if (turn >= SRV_BODY_TURN)
		srv_body_kick(r);
	else
		srv_body_wait(r, events);
}

static void srv_body_send(struct srv_body_reader *r);

static void srv_body_readable(uv_poll_t *p, int status, int events)
{
	struct srv_body_reader *r = p->data;

	(void)events;
	if (!r->c)
		return;
	if (status < 0)
		srv_body_abort(r->c, uv_strerror(status));
	else if (r->reading)
		srv_body_pump(r);
	else
		srv_body_send(r);
}

static void srv_body_timer(uv_timer_t *t)
{
	struct srv_body_reader *r = t->data;

	if (!r->c)
		return;
	if (r->kick)
		srv_body_pump(r);
	else
		srv_body_abort(r->c, "no data for 10 s");
}

static bool srv_body_worth_taking(struct srv_conn *c)
{
	const char *cl = http_req_header(&c->req, "content-length");

	return c->chunked || !cl || strtoull(cl, NULL, 10) > SRV_BODY_TAKE_OVER;
}

/* Take the rest of the body off lws (see the top of this file). */
static int srv_body_take(struct srv_conn *c)
{
	const char *cl = http_req_header(&c->req, "content-length");
	struct srv_body_reader *r;
	int fd;

	if (!srv_body_buf && !(srv_body_buf = malloc(SRV_BODY_BUF)))
		return -1;
	fd = fcntl(lws_get_socket_fd(c->wsi), F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return -1;
	r = calloc(1, sizeof(*r));
	if (!r) {
		close(fd);
		return -1;
	}
	r->fd = fd;
	r->pipe[0] = r->pipe[1] = -1;
	r->ssl = lws_get_ssl(c->wsi);
	r->c = c;
	r->remain = cl && !c->chunked ? strtoull(cl, NULL, 10) : UINT64_MAX;
	uv_poll_init(celld->loop, &r->poll, fd);
	uv_timer_init(celld->loop, &r->timer);
	r->poll.data = r->timer.data = r;
	r->open_handles = 2;
	r->reading = true;
	c->reader = r;
	lws_rx_flow_control(c->wsi, 0);
	lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);   /* our idle timer watches it now */
	srv_body_kick(r);
	return 0;
}

/* Routes see a chunked body as a plain one without Content-Length. */
static int srv_body_framing(struct srv_conn *c, cell_error *err)
{
	http_req *req = &c->req;
	const char *te = http_req_header(req, "transfer-encoding");

	if (!te)
		return 0;
	if (strcasecmp(te, "chunked"))
		return cell_err(err, 501, ENOTSUP, "Transfer-Encoding \"%s\" is not supported", te);
	c->chunked = true;
	http_chunked_init(&c->ch);
	for (int i = 0; i < req->nheaders; i++)
		if (!strcmp(req->headers[i].name, "transfer-encoding")) {
			free(req->headers[i].name);
			free(req->headers[i].value);
			req->headers[i] = req->headers[--req->nheaders];
			break;
		}
	return 0;
}

int srv_conn_body_begin(struct srv_conn *c)
{
	cell_error err = { 0 };

	c->streaming = true;
	if (srv_body_framing(c, &err) < 0 ||
	    c->rm->body->begin(&c->req, &c->body_state, &err) < 0) {
		c->streaming = false;
		c->body_state = NULL;
		resp_from_err(&c->resp, &err);
		return srv_conn_reject(c);
	}
	if (srv_body_worth_taking(c) && srv_body_take(c) < 0)
		return -1;
	return 0;
}

static int srv_body_to_route(void *data, const void *buf, size_t len, cell_error *unused)
{
	struct srv_conn *c = data;

	(void)unused;
	if (!c->body_failed && c->rm->body->chunk(c->body_state, buf, len, &c->body_err) < 0)
		c->body_failed = true;   /* keep reading to the end, then answer */
	return 0;
}

/* Bytes of the body, from lws (those it read with the headers) or from our reader. */
int srv_conn_body_chunk(struct srv_conn *c, const void *data, size_t len)
{
	struct srv_body_reader *r = c->reader;
	cell_error err = { 0 };
	size_t used;
	int rc;

	if (!c->chunked) {
		if (r && !r->took)
			r->remain -= len < r->remain ? len : r->remain;   /* lws's share of it */
		return srv_body_to_route(c, data, len, NULL);
	}
	rc = http_chunked_feed(&c->ch, data, len, &used, srv_body_to_route, c, &err);
	if (rc < 0 && !c->body_failed) {
		c->body_failed = true;   /* bad framing: its end cannot be found, answer now */
		c->body_err = err;
	}
	if (rc != 0) {
		c->close_after = true;   /* lws still expects body bytes */
		srv_conn_body_end(c);
	}
	return 0;
}

/* The body is complete: stop reading.  A reader that read nothing leaves
 * the connection to lws (which saw the whole body); otherwise it stays to
 * write the answer. */
static void srv_body_stop(struct srv_conn *c)
{
	struct srv_body_reader *r = c->reader;

	if (!r)
		return;
	if (!r->took) {
		srv_body_release(c);
		lws_rx_flow_control(c->wsi, 1);   /* lws reads the next request */
		return;
	}
	r->reading = false;
	uv_poll_stop(&r->poll);
	uv_timer_stop(&r->timer);
}

int srv_conn_body_end(struct srv_conn *c)
{
	void *st = c->body_state;

	srv_body_stop(c);
	c->streaming = false;
	c->body_state = NULL;
	c->rm->body->end(st, &c->req, &c->resp, c->body_failed ? &c->body_err : NULL);
	if (!c->resp.deferred)
		srv_conn_respond(c);
	return 0;
}

void srv_conn_body_drop(struct srv_conn *c)
{
	srv_body_release(c);
}

void http_req_pause_body(http_req *req, bool pause)
{
	struct srv_conn *c = req->conn;
	struct srv_body_reader *r;

	if (!c || !c->wsi || !c->streaming)
		return;
	if ((r = c->reader)) {
		if (!r->reading)
			return;
		r->paused = pause;
		if (pause) {
			uv_poll_stop(&r->poll);
			uv_timer_stop(&r->timer);
		} else {
			srv_body_kick(r);
		}
		return;
	}
	lws_rx_flow_control(c->wsi, pause ? 0 : 1);
	/* lws times out a body that stops arriving; a pause is ours, not the client's. */
	if (pause)
		lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);
	else
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_HTTP_CONTENT, 10);
}

/* ---- the answer, on a connection whose body we read ---------------------- */

bool srv_body_owns_reply(const struct srv_conn *c)
{
	return c->reader && c->reader->took;
}

/* One write to the socket or TLS session: bytes written, 0 would block, -1 error. */
static ssize_t srv_body_xmit(struct srv_body_reader *r, const void *buf, size_t len, int *events)
{
	ssize_t n;

	*events = UV_WRITABLE;
	if (!r->ssl) {
		n = write(r->fd, buf, len);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		return n;
	}
	ERR_clear_error();
	n = SSL_write(r->ssl, buf, (int)len);
	if (n > 0)
		return n;
	switch (SSL_get_error(r->ssl, (int)n)) {
	case SSL_ERROR_WANT_WRITE:
		return 0;
	case SSL_ERROR_WANT_READ:
		*events = UV_READABLE;
		return 0;
	default:
		return -1;
	}
}

static void srv_body_send(struct srv_body_reader *r)
{
	struct srv_conn *c = r->c;
	int events = UV_WRITABLE;

	while (r->out_off < r->out.len) {
		ssize_t n = srv_body_xmit(r, r->out.buf + r->out_off, r->out.len - r->out_off, &events);
		if (n < 0) {
			srv_body_abort(c, "client went away before the answer");
			return;
		}
		if (n == 0) {
			uv_poll_start(&r->poll, events, srv_body_readable);
			return;
		}
		r->out_off += (size_t)n;
	}
	/* All written: lws closes its side (and calls srv_conn_closed). */
	uv_poll_stop(&r->poll);
	srv_body_hangup(r, c);
}

/* Format the whole answer and start writing it.  Answers to streamed
 * requests are small JSON documents; a file body would be read in too. */
void srv_body_reply(struct srv_conn *c)
{
	struct srv_body_reader *r = c->reader;
	unsigned char head[8192], *p = head;
	http_resp *resp = &c->resp;
	uint64_t total = srv_conn_resp_total(c);

	c->close_after = true;   /* lws still waits for the body it never saw */
	if (srv_conn_build_headers(c, total, &p, head + sizeof(head) - 1) < 0 ||
	    sb_append(&r->out, head, (size_t)(p - head)) < 0 ||
	    (c->req.method != HTTP_HEAD && sb_append(&r->out, resp->body.buf, resp->body.len) < 0)) {
		srv_body_abort(c, "cannot format the answer");
		return;
	}
	if (c->req.method != HTTP_HEAD && resp->body_fd >= 0 && resp->body_fd_len > 0) {
		char buf[65536];
		off_t off = 0;
		while (off < resp->body_fd_len) {
			ssize_t n = pread(resp->body_fd, buf, sizeof(buf), off);
			if (n <= 0 || sb_append(&r->out, buf, (size_t)n) < 0) {
				srv_body_abort(c, "cannot read the answer's file");
				return;
			}
			off += n;
		}
	}
	c->headers_sent = true;
	srv_body_send(r);
}
