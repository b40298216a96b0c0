#include "daemon/ws.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "daemon/server_conn.h"

#define WS_LOW_WATER (256u << 10)

struct ws_msg {
	struct ws_msg *next;
	size_t len;
	bool binary;
	unsigned char data[];    /* LWS_PRE headroom, then the payload */
};

struct ws_conn {
	struct lws *wsi;
	const struct ws_handler *h;
	void *ud;
	struct ws_msg *head, *tail;
	size_t queued;
	bool established, closing, closed, rx_binary;
	strbuf rx;
};

struct ws_conn *ws_conn_new(struct lws *wsi)
{
	struct ws_conn *ws = calloc(1, sizeof(*ws));
	if (ws)
		ws->wsi = wsi;
	return ws;
}

void ws_conn_free(struct ws_conn *ws)
{
	struct ws_msg *m;

	if (!ws)
		return;
	while ((m = ws->head)) {
		ws->head = m->next;
		free(m);
	}
	sb_free(&ws->rx);
	free(ws);
}

void ws_conn_set_handler(struct ws_conn *ws, const struct ws_handler *h, void *ud)
{
	ws->h = h;
	ws->ud = ud;
}

int ws_conn_send(struct ws_conn *ws, const void *data, size_t len, bool binary)
{
	struct ws_msg *m;

	if (ws->closing || ws->closed)
		return -EPIPE;
	m = malloc(sizeof(*m) + LWS_PRE + len);
	if (!m)
		return -ENOMEM;
	m->next = NULL;
	m->len = len;
	m->binary = binary;
	memcpy(m->data + LWS_PRE, data, len);
	if (ws->tail)
		ws->tail->next = m;
	else
		ws->head = m;
	ws->tail = m;
	ws->queued += len;
	if (ws->established)
		lws_callback_on_writable(ws->wsi);
	return 0;
}

size_t ws_conn_queued(const struct ws_conn *ws) { return ws->queued; }

void ws_conn_close(struct ws_conn *ws)
{
	if (ws->closing || ws->closed)
		return;
	ws->closing = true;
	if (ws->established)
		lws_callback_on_writable(ws->wsi);
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

int ws_conn_writeable(struct ws_conn *ws)
{
	struct ws_msg *m = ws->head;
	size_t before = ws->queued;

	if (m) {
		ws->head = m->next;
		if (!ws->head)
			ws->tail = NULL;
		ws->queued -= m->len;
		if (lws_write(ws->wsi, m->data + LWS_PRE, m->len,
			      m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < (int)m->len) {
			free(m);
			return -1;
		}
		free(m);
		if (before >= WS_LOW_WATER && ws->queued < WS_LOW_WATER && ws->h && ws->h->on_drain)
			ws->h->on_drain(ws, ws->ud);
	}
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
