/*
 * Server-side websocket connections, as consumers (events, operation
 * websockets) see them.  Loop thread only.  Sends are queued; a consumer
 * checks ws_conn_queued() for back-pressure.  After on_close returns the
 * connection is freed: drop every pointer to it there.
 */
#ifndef CELL_DAEMON_WS_H
#define CELL_DAEMON_WS_H

#include <stdbool.h>
#include <stddef.h>

struct ws_conn;

struct ws_handler {
	void (*on_message)(struct ws_conn *ws, const void *data, size_t len, bool binary, void *ud);
	void (*on_close)(struct ws_conn *ws, void *ud);
	/* The send queue drained below the low-water mark (resume producers). */
	void (*on_drain)(struct ws_conn *ws, void *ud);
};

void ws_conn_set_handler(struct ws_conn *ws, const struct ws_handler *h, void *ud);
/* Queue a whole message. -ENOMEM, or -EPIPE once closing. */
int ws_conn_send(struct ws_conn *ws, const void *data, size_t len, bool binary);
/* The same without a copy: fill a buffer from ws_buf_new (room for `cap`
 * bytes) and hand it over with ws_conn_send_buf, which takes it whatever
 * it returns (ws_buf_free for one never sent). */
void *ws_buf_new(size_t cap);
void ws_buf_free(void *buf);
int ws_conn_send_buf(struct ws_conn *ws, void *buf, size_t len, bool binary);
/* Let the kernel hold up to `bytes` unsent for this peer (bulk output: far
 * fewer wake-ups than the default ~200 KiB).  Best effort. */
void ws_conn_set_sndbuf(struct ws_conn *ws, int bytes);
size_t ws_conn_queued(const struct ws_conn *ws);
/* Close after what is queued has been sent (status 1000). */
void ws_conn_close(struct ws_conn *ws);
/* Stop/resume reading from the peer (flow control toward a slow consumer). */
void ws_conn_pause_rx(struct ws_conn *ws, bool pause);

#endif
