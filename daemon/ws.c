/*
 * Server-side websocket connections (ws.h).  Messages wait in a queue and
 * go out from lws's writeable callback: as many as the socket takes in one
 * callback (lws_send_pipe_choked says when to stop), because every round
 * trip through the event loop costs epoll calls and a wake-up.
 */
#include "daemon/ws.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/strbuf.h"
#include "daemon/server_conn.h"

#define WS_LOW_WATER (256u << 10)
#define WS_WRITES_PER_CB 64          /* fairness between connections */
/* Freed bulk buffers are kept for the next message: malloc'ing and
 * freeing 100 KiB per message made glibc trim and regrow its heap, with
 * page faults each time (~5% of a bulk transfer). */
#define WS_CACHE_MIN (64u << 10)
#define WS_CACHE_N 8

struct ws_msg {
	struct ws_msg *next;
	size_t len, cap;
	bool binary;
	unsigned char data[];    /* LWS_PRE headroom, then the payload */
};

static struct ws_msg *ws_cache[WS_CACHE_N];   /* loop thread only */
static unsigned ws_live;                       /* connections: none, no cache */

struct ws_conn {
	struct lws *wsi;
	const struct ws_handler *h;
	void *ud;
	struct ws_msg *head, *tail;
	size_t queued;
	bool established, closing, closed, rx_binary, in_writeable;
	strbuf rx;
};

static struct ws_msg *ws_msg_of(void *buf)
{
	return (struct ws_msg *)((unsigned char *)buf - LWS_PRE - offsetof(struct ws_msg, data));
}

static void ws_msg_free(struct ws_msg *m)
{
	for (int i = 0; m->cap >= WS_CACHE_MIN && i < WS_CACHE_N; i++)
		if (!ws_cache[i]) {
			ws_cache[i] = m;
			return;
		}
	free(m);
}

void *ws_buf_new(size_t cap)
{
	struct ws_msg *m = NULL;

	for (int i = 0; cap >= WS_CACHE_MIN && !m && i < WS_CACHE_N; i++)
		if (ws_cache[i] && ws_cache[i]->cap >= cap && ws_cache[i]->cap <= 2 * cap) {
			m = ws_cache[i];
			ws_cache[i] = NULL;
		}
	if (!m && (m = malloc(sizeof(*m) + LWS_PRE + cap)))
		m->cap = cap;
	return m ? m->data + LWS_PRE : NULL;
}

void ws_buf_free(void *buf)
{
	if (buf)
		ws_msg_free(ws_msg_of(buf));
}

static void ws_cache_drop(void)
{
	for (int i = 0; i < WS_CACHE_N; i++) {
		free(ws_cache[i]);
		ws_cache[i] = NULL;
	}
}

struct ws_conn *ws_conn_new(struct lws *wsi)
{
	struct ws_conn *ws = calloc(1, sizeof(*ws));
	if (ws) {
		ws->wsi = wsi;
		ws_live++;
	}
	return ws;
}

void ws_conn_free(struct ws_conn *ws)
{
	struct ws_msg *m;

	if (!ws)
		return;
	while ((m = ws->head)) {
		ws->head = m->next;
		ws_msg_free(m);
	}
	sb_free(&ws->rx);
	free(ws);
	if (--ws_live == 0)
		ws_cache_drop();   /* an idle celld keeps no bulk buffers */
}

void ws_conn_set_handler(struct ws_conn *ws, const struct ws_handler *h, void *ud)
{
	ws->h = h;
	ws->ud = ud;
}

/* Ask for a writeable callback: once per non-empty queue is enough, and
 * none from inside the callback, which asks again itself if need be. */
static void ws_want_write(struct ws_conn *ws)
{
	if (ws->established && !ws->in_writeable)
		lws_callback_on_writable(ws->wsi);
}

int ws_conn_send_buf(struct ws_conn *ws, void *buf, size_t len, bool binary)
{
	struct ws_msg *m = ws_msg_of(buf);
	bool was_empty = !ws->head;

	if (ws->closing || ws->closed) {
		ws_msg_free(m);
		return -EPIPE;
	}
	m->next = NULL;
	m->len = len;
	m->binary = binary;
	if (ws->tail)
		ws->tail->next = m;
	else
		ws->head = m;
	ws->tail = m;
	ws->queued += len;
	if (was_empty)
		ws_want_write(ws);
	return 0;
}

int ws_conn_send(struct ws_conn *ws, const void *data, size_t len, bool binary)
{
	void *buf;

	if (ws->closing || ws->closed)
		return -EPIPE;
	if (!(buf = ws_buf_new(len)))
		return -ENOMEM;
	memcpy(buf, data, len);
	return ws_conn_send_buf(ws, buf, len, binary);
}

size_t ws_conn_queued(const struct ws_conn *ws) { return ws->queued; }

void ws_conn_set_sndbuf(struct ws_conn *ws, int bytes)
{
	int fd = ws->closed ? -1 : lws_get_socket_fd(ws->wsi);

	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
}

void ws_conn_close(struct ws_conn *ws)
{
	if (ws->closing || ws->closed)
		return;
	ws->closing = true;
	ws_want_write(ws);
}

void ws_conn_pause_rx(struct ws_conn *ws, bool pause)
{
	if (!ws->closed)
		lws_rx_flow_control(ws->wsi, pause ? 0 : 1);
}

int ws_conn_established(struct ws_conn *ws)
{
	ws->established = true;
	if (ws->head || ws->closing)
		lws_callback_on_writable(ws->wsi);
	return 0;
}

int ws_conn_receive(struct ws_conn *ws, const void *in, size_t len)
{
	if (lws_is_first_fragment(ws->wsi))
		ws->rx_binary = lws_frame_is_binary(ws->wsi);
	if (sb_append(&ws->rx, in, len) < 0)
		return -1;
	if (!lws_is_final_fragment(ws->wsi) || lws_remaining_packet_payload(ws->wsi))
		return 0;
	if (ws->h && ws->h->on_message)
		ws->h->on_message(ws, ws->rx.buf ? ws->rx.buf : "", ws->rx.len, ws->rx_binary, ws->ud);
	sb_reset(&ws->rx);
	return 0;
}

/* One queued message out; -1 when lws failed (the connection is done). */
static int ws_write_one(struct ws_conn *ws)
{
	struct ws_msg *m = ws->head;
	int rc;

	ws->head = m->next;
	if (!ws->head)
		ws->tail = NULL;
	ws->queued -= m->len;
	rc = lws_write(ws->wsi, m->data + LWS_PRE, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
	ws_msg_free(m);
	return rc < 0 ? -1 : 0;
}

int ws_conn_writeable(struct ws_conn *ws)
{
	size_t before = ws->queued;
	int n = 0;

	/* A partial send leaves lws holding the rest: choked until it is out. */
	ws->in_writeable = true;
	while (ws->head && n < WS_WRITES_PER_CB && (n == 0 || !lws_send_pipe_choked(ws->wsi))) {
		n++;
		if (ws_write_one(ws) < 0) {
			ws->in_writeable = false;
			return -1;
		}
	}
	/* on_drain may queue more (exec output): already inside the callback */
	if (before >= WS_LOW_WATER && ws->queued < WS_LOW_WATER && ws->h && ws->h->on_drain)
		ws->h->on_drain(ws, ws->ud);
	ws->in_writeable = false;
	if (ws->head) {
		lws_callback_on_writable(ws->wsi);
		return 0;
	}
	if (ws->closing) {
		lws_close_reason(ws->wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
		return -1;
	}
	return 0;
}

void ws_conn_closed(struct ws_conn *ws)
{
	ws->closed = true;
	if (ws->h && ws->h->on_close)
		ws->h->on_close(ws, ws->ud);
	ws_conn_free(ws);
}
