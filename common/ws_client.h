/*
 * Websocket client (RFC 6455) over an httpc connection: the events feed,
 * exec and console streams, migration.  Frames we send are masked, as a
 * client must; pings are answered inside wsc_recv; fragmented messages are
 * reassembled.  Blocking and single-threaded, like httpc: a poll() loop
 * polls wsc_fd() and calls wsc_recv() when it is readable or wsc_pending().
 */
#ifndef CELL_COMMON_WS_CLIENT_H
#define CELL_COMMON_WS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "common/error.h"
#include "common/http_client.h"
#include "common/strbuf.h"

enum wsc_opcode {
	WSC_CONT = 0x0,
	WSC_TEXT = 0x1,
	WSC_BINARY = 0x2,
	WSC_CLOSE = 0x8,
	WSC_PING = 0x9,
	WSC_PONG = 0xa,
};

/* Close codes used here. */
#define WSC_CLOSE_NORMAL 1000
#define WSC_CLOSE_PROTOCOL 1002
#define WSC_CLOSE_TOO_BIG 1009
#define WSC_CLOSE_NO_STATUS 1005

typedef struct wsc wsc;

/* Upgrade on `path` over c's connection, which the websocket then owns (c
 * opens a fresh one for its next request). extra_headers: NULL-terminated
 * "Name: value" list or NULL. A refused upgrade reports the server's LXD
 * `error` string when there is one. */
int wsc_upgrade(httpc *c, const char *path, const char *const *extra_headers, wsc **out, cell_error *err);
/* Own connection: connect with o, then upgrade. */
int wsc_connect(const struct httpc_opts *o, const char *path, wsc **out, cell_error *err);
/* Over an already upgraded connection (taken), e.g. in tests. */
wsc *wsc_from_conn(httpc_conn *conn);
void wsc_free(wsc *w);
static inline void wsc_freep(wsc **w) { wsc_free(*w); }
#define _cleanup_wsc_ __attribute__((cleanup(wsc_freep)))

/* One whole message.  opcode WSC_TEXT/WSC_BINARY, or WSC_CLOSE when the peer
 * closed (close_code then holds its code, or WSC_CLOSE_NO_STATUS; we have
 * already answered).  A peer vanishing without a close frame is -EPIPE.
 * On failure msg holds nothing to free. */
struct wsc_msg {
	enum wsc_opcode opcode;
	strbuf data;
	uint16_t close_code;
};
int wsc_recv(wsc *w, struct wsc_msg *msg, cell_error *err);
void wsc_msg_free(struct wsc_msg *m);

/* One complete message in one frame. */
int wsc_send(wsc *w, enum wsc_opcode op, const void *data, size_t len, cell_error *err);
int wsc_send_text(wsc *w, const char *text, cell_error *err);
/* One frame; fragmented messages are sent as op + WSC_CONT... with fin on the last. */
int wsc_send_frame(wsc *w, enum wsc_opcode op, bool fin, const void *data, size_t len, cell_error *err);
int wsc_ping(wsc *w, const void *data, size_t len, cell_error *err);
/* Send our close frame (if not sent yet) and wait, up to timeout_ms, for the
 * peer's; data arriving meanwhile is discarded. */
int wsc_close(wsc *w, uint16_t code, const char *reason, int timeout_ms, cell_error *err);
/* Send a close frame without waiting (half-close, e.g. stdin EOF in exec). */
int wsc_send_close(wsc *w, uint16_t code, const char *reason, cell_error *err);
bool wsc_closed(const wsc *w);   /* close received from the peer */

int wsc_fd(const wsc *w);
SSL *wsc_ssl(const wsc *w);
bool wsc_pending(const wsc *w);
httpc_conn *wsc_conn(wsc *w);
/* Largest message accepted (default 64 MiB); bigger ones close with 1009. */
void wsc_set_max_message(wsc *w, size_t max);

/* ---- frame codec, exposed for tests ---- */
struct wsc_frame_hdr {
	bool fin;
	unsigned rsv;            /* RSV1-3 bits */
	enum wsc_opcode opcode;
	bool masked;
	uint8_t mask[4];
	uint64_t len;
};
/* Encode a header into out (at most 14 bytes); mask NULL = unmasked. Returns its length. */
size_t wsc_encode_header(uint8_t out[14], bool fin, enum wsc_opcode op, uint64_t len, const uint8_t *mask);
/* Decode from buf: header length, 0 when more bytes are needed, -EPROTO when malformed. */
int wsc_decode_header(const uint8_t *buf, size_t avail, struct wsc_frame_hdr *h);
/* XOR with the mask; `offset` is the position of data[0] within the payload. */
void wsc_apply_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);
/* Sec-WebSocket-Accept for a Sec-WebSocket-Key. */
void wsc_accept_key(const char *key, char out[29]);

#endif
