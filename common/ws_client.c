#include "common/ws_client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "common/cleanup.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_CHUNK 16384
#define WS_DEFAULT_MAX ((size_t)64 << 20)

struct wsc {
	httpc_conn *conn;
	bool close_sent, close_rcvd;
	uint16_t peer_code;
	size_t max_msg;
	bool in_frag;
	enum wsc_opcode frag_op;
	strbuf frag;
};

/* ------------------------------------------------------------- codec */

size_t wsc_encode_header(uint8_t out[14], bool fin, enum wsc_opcode op, uint64_t len, const uint8_t *mask)
{
	size_t n = 2;

	out[0] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0f));
	out[1] = mask ? 0x80 : 0;
	if (len < 126) {
		out[1] |= (uint8_t)len;
	} else if (len <= 0xffff) {
		out[1] |= 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		n = 4;
	} else {
		out[1] |= 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		n = 10;
	}
	if (mask) {
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

int wsc_decode_header(const uint8_t *buf, size_t avail, struct wsc_frame_hdr *h)
{
	size_t need = 2;
	unsigned l7;

	if (avail < 2)
		return 0;
	l7 = buf[1] & 0x7f;
	need += l7 == 126 ? 2 : l7 == 127 ? 8 : 0;
	need += (buf[1] & 0x80) ? 4 : 0;
	if (avail < need)
		return 0;
	h->fin = buf[0] & 0x80;
	h->rsv = (buf[0] >> 4) & 0x7;
	h->opcode = (enum wsc_opcode)(buf[0] & 0x0f);
	h->masked = buf[1] & 0x80;
	if (l7 == 126) {
		h->len = (uint64_t)buf[2] << 8 | buf[3];
	} else if (l7 == 127) {
		h->len = 0;
		for (int i = 0; i < 8; i++)
			h->len = h->len << 8 | buf[2 + i];
		if (h->len >> 63)   /* the most significant bit must be 0 */
			return -EPROTO;
	} else {
		h->len = l7;
	}
	if (h->masked)
		memcpy(h->mask, buf + need - 4, 4);
	else
		memset(h->mask, 0, 4);
	return (int)need;
}

void wsc_apply_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
	for (size_t i = 0; i < len; i++)
		data[i] ^= mask[(offset + i) & 3];
}

void wsc_accept_key(const char *key, char out[29])
{
	unsigned char md[SHA_DIGEST_LENGTH];
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "%s" WS_GUID, key);

	SHA1((unsigned char *)buf, (size_t)(n < (int)sizeof(buf) ? n : (int)sizeof(buf) - 1), md);
	EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
}

/* --------------------------------------------------------- handshake */

static wsc *wsc_alloc(httpc_conn *conn)
{
	wsc *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->conn = conn;
	w->max_msg = WS_DEFAULT_MAX;
	return w;
}

wsc *wsc_from_conn(httpc_conn *conn)
{
	return wsc_alloc(conn);
}

/* A refused upgrade: the LXD envelope's `error`, else the HTTP status. */
static int refused(const char *path, const struct httpc_resp *resp, cell_error *err)
{
	_cleanup_json_ json_t *j = NULL;
	const char *msg = NULL;
	int status = resp->status >= 400 ? resp->status : 502;

	if (resp->body.len)
		j = json_loadb(resp->body.buf, resp->body.len, 0, NULL);
	if (j)
		msg = json_string_value(json_object_get(j, "error"));
	if (msg && *msg)
		return cell_err(err, status, EPROTO, "%s", msg);
	return cell_err(err, status, EPROTO, "websocket upgrade on %s: HTTP %d %s", path, resp->status,
			resp->reason ? resp->reason : "");
}

static int make_key(char out[25])
{
	uint8_t raw[16];
	arc4random_buf(raw, sizeof(raw));
	EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw));
	return 0;
}

int wsc_upgrade(httpc *c, const char *path, const char *const *extra_headers, wsc **out, cell_error *err)
{
	_cleanup_httpc_resp_ struct httpc_resp resp = {0};
	const char *hdrs[24];
	char key[25], keyhdr[64], accept[29];
	const char *up, *acc;
	size_t n = 0;
	httpc_conn *conn;
	int rc;

	*out = NULL;
	make_key(key);
	snprintf(keyhdr, sizeof(keyhdr), "Sec-WebSocket-Key: %s", key);
	hdrs[n++] = "Connection: Upgrade";
	hdrs[n++] = "Upgrade: websocket";
	hdrs[n++] = "Sec-WebSocket-Version: 13";
	hdrs[n++] = keyhdr;
	for (const char *const *h = extra_headers; h && *h && n < ARRAY_SIZE(hdrs) - 1; h++)
		hdrs[n++] = *h;
	hdrs[n] = NULL;
	rc = httpc_request(c, &(struct httpc_req){ .method = "GET", .path = path, .headers = hdrs, HTTPC_REQ_DEFAULTS },
			   &resp, err);
	if (rc < 0)
		return rc;
	if (resp.status != 101)
		return refused(path, &resp, err);
	up = httpc_resp_header(&resp, "Upgrade");
	acc = httpc_resp_header(&resp, "Sec-WebSocket-Accept");
	wsc_accept_key(key, accept);
	conn = httpc_take_conn(c);
	if (!up || strcasecmp(up, "websocket") || !acc || strcmp(acc, accept)) {
		httpc_conn_free(conn);
		return cell_err(err, 502, EPROTO, "websocket upgrade on %s: bad handshake answer", path);
	}
	*out = wsc_alloc(conn);
	if (!*out) {
		httpc_conn_free(conn);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	return 0;
}

int wsc_connect(const struct httpc_opts *o, const char *path, wsc **out, cell_error *err)
{
	_cleanup_httpc_ httpc *c = NULL;
	int rc = httpc_new(o, &c, err);

	if (rc < 0)
		return rc;
	return wsc_upgrade(c, path, NULL, out, err);
}

void wsc_free(wsc *w)
{
	if (!w)
		return;
	httpc_conn_free(w->conn);
	sb_free(&w->frag);
	free(w);
}

int wsc_fd(const wsc *w) { return httpc_conn_fd(w->conn); }
SSL *wsc_ssl(const wsc *w) { return httpc_conn_ssl(w->conn); }
bool wsc_pending(const wsc *w) { return httpc_conn_pending(w->conn); }
httpc_conn *wsc_conn(wsc *w) { return w->conn; }
bool wsc_closed(const wsc *w) { return w->close_rcvd; }
void wsc_set_max_message(wsc *w, size_t max) { w->max_msg = max; }

/* ------------------------------------------------------------ sending */

int wsc_send_frame(wsc *w, enum wsc_opcode op, bool fin, const void *data, size_t len, cell_error *err)
{
	uint8_t buf[14 + WS_CHUNK], mask[4];
	const uint8_t *p = data;
	size_t hl, off = 0;
	int rc;

	if (w->close_sent)
		return cell_err(err, 500, EPIPE, "websocket: already closed");
	arc4random_buf(mask, sizeof(mask));
	hl = wsc_encode_header(buf, fin, op, len, mask);
	/* Mask into our own buffer, chunk by chunk: the caller's data stays intact. */
	do {
		size_t n = len - off < WS_CHUNK ? len - off : WS_CHUNK;
		if (n)
			memcpy(buf + hl, p + off, n);
		wsc_apply_mask(buf + hl, n, mask, off);
		rc = httpc_conn_write(w->conn, buf, hl + n, err);
		if (rc < 0)
			return cell_err_wrap(err, rc, "websocket send");
		off += n;
		hl = 0;
	} while (off < len);
	if (op == WSC_CLOSE)
		w->close_sent = true;
	return 0;
}

int wsc_send(wsc *w, enum wsc_opcode op, const void *data, size_t len, cell_error *err)
{
	return wsc_send_frame(w, op, true, data, len, err);
}

int wsc_send_text(wsc *w, const char *text, cell_error *err)
{
	return wsc_send_frame(w, WSC_TEXT, true, text, strlen(text), err);
}

int wsc_ping(wsc *w, const void *data, size_t len, cell_error *err)
{
	if (len > 125)
		return cell_err(err, 500, EINVAL, "websocket: ping payload too long");
	return wsc_send_frame(w, WSC_PING, true, data, len, err);
}

int wsc_send_close(wsc *w, uint16_t code, const char *reason, cell_error *err)
{
	uint8_t payload[125];
	size_t n = 0;

	if (w->close_sent)
		return 0;
	if (code && code != WSC_CLOSE_NO_STATUS) {
		size_t rl = reason ? strlen(reason) : 0;
		payload[0] = (uint8_t)(code >> 8);
		payload[1] = (uint8_t)code;
		if (rl > sizeof(payload) - 2)
			rl = sizeof(payload) - 2;
		if (rl)
			memcpy(payload + 2, reason, rl);
		n = 2 + rl;
	}
	return wsc_send_frame(w, WSC_CLOSE, true, payload, n, err);
}

/* ----------------------------------------------------------- receiving */

static int protocol_error(wsc *w, uint16_t code, cell_error *err, const char *what)
{
	wsc_send_close(w, code, what, NULL);
	return cell_err(err, 502, code == WSC_CLOSE_TOO_BIG ? EFBIG : EPROTO, "websocket: %s", what);
}

static int read_header(wsc *w, struct wsc_frame_hdr *h, cell_error *err)
{
	uint8_t buf[14];
	size_t have = 2;
	int rc = httpc_conn_read_full(w->conn, buf, 2, err);

	if (rc < 0)
		return rc;
	for (;;) {
		rc = wsc_decode_header(buf, have, h);
		if (rc < 0)
			return protocol_error(w, WSC_CLOSE_PROTOCOL, err, "bad frame length");
		if (rc > 0)
			return 0;
		/* Exactly what the first two bytes announce: never read past the frame. */
		size_t need = 2 + ((buf[1] & 0x7f) == 126 ? 2 : (buf[1] & 0x7f) == 127 ? 8 : 0) +
			      ((buf[1] & 0x80) ? 4 : 0);
		rc = httpc_conn_read_full(w->conn, buf + have, need - have, err);
		if (rc < 0)
			return rc;
		have = need;
	}
}

static int check_header(wsc *w, const struct wsc_frame_hdr *h, cell_error *err)
{
	bool control = h->opcode & 0x8;

	if (h->rsv)
		return protocol_error(w, WSC_CLOSE_PROTOCOL, err, "reserved bits set");
	if (h->opcode != WSC_CONT && h->opcode != WSC_TEXT && h->opcode != WSC_BINARY && h->opcode != WSC_CLOSE &&
	    h->opcode != WSC_PING && h->opcode != WSC_PONG)
		return protocol_error(w, WSC_CLOSE_PROTOCOL, err, "unknown opcode");
	if (control && (!h->fin || h->len > 125))
		return protocol_error(w, WSC_CLOSE_PROTOCOL, err, "bad control frame");
	if (!control && h->len + (w->in_frag ? w->frag.len : 0) > w->max_msg)
		return protocol_error(w, WSC_CLOSE_TOO_BIG, err, "message too big");
	if (h->opcode == WSC_CONT && !w->in_frag)
		return protocol_error(w, WSC_CLOSE_PROTOCOL, err, "continuation without a start");
	if ((h->opcode == WSC_TEXT || h->opcode == WSC_BINARY) && w->in_frag)
		return protocol_error(w, WSC_CLOSE_PROTOCOL, err, "new message inside a fragmented one");
	return 0;
}

/* Append the frame's payload to sb, unmasking if the peer masked it. */
static int read_payload(wsc *w, const struct wsc_frame_hdr *h, strbuf *sb, cell_error *err)
{
	size_t start = sb->len, need = start + (size_t)h->len + 1;
	int rc;

	/* Grow once, then read straight into the buffer. */
	if (need > sb->cap) {
		char *nb = realloc(sb->buf, need);
		if (!nb)
			return cell_err(err, 500, ENOMEM, "out of memory");
		sb->buf = nb;
		sb->cap = need;
	}
	rc = httpc_conn_read_full(w->conn, sb->buf + start, (size_t)h->len, err);
	if (rc < 0)
		return rc;
	sb->len = start + (size_t)h->len;
	sb->buf[sb->len] = '\0';
	if (h->masked)
		wsc_apply_mask((uint8_t *)sb->buf + start, (size_t)h->len, h->mask, 0);
	return 0;
}

static int handle_control(wsc *w, const struct wsc_frame_hdr *h, struct wsc_msg *msg, bool *done,
			  cell_error *err)
{
	_cleanup_sb_ strbuf p = {0};
	int rc = read_payload(w, h, &p, err);

	if (rc < 0)
		return rc;
	*done = false;
	if (h->opcode == WSC_PING)
		return w->close_sent ? 0 : wsc_send_frame(w, WSC_PONG, true, p.buf, p.len, err);
	if (h->opcode == WSC_PONG)
		return 0;
	w->close_rcvd = true;
	w->peer_code = p.len >= 2 ? (uint16_t)((uint8_t)p.buf[0] << 8 | (uint8_t)p.buf[1]) : WSC_CLOSE_NO_STATUS;
	/* Echo the code, as RFC 6455 §5.5.1 asks. */
	wsc_send_close(w, w->peer_code == WSC_CLOSE_NO_STATUS ? WSC_CLOSE_NORMAL : w->peer_code, NULL, NULL);
	msg->opcode = WSC_CLOSE;
	msg->close_code = w->peer_code;
	*done = true;
	return 0;
}

int wsc_recv(wsc *w, struct wsc_msg *msg, cell_error *err)
{
	memset(msg, 0, sizeof(*msg));
	if (w->close_rcvd) {
		msg->opcode = WSC_CLOSE;
		msg->close_code = w->peer_code;
		return 0;
	}
	for (;;) {
		struct wsc_frame_hdr h;
		bool done;
		int rc = read_header(w, &h, err);

		if (rc == 0)
			rc = check_header(w, &h, err);
		if (rc < 0)
			return rc;
		if (h.opcode & 0x8) {
			rc = handle_control(w, &h, msg, &done, err);
			if (rc < 0 || done)
				return rc;
			continue;
		}
		if (h.opcode != WSC_CONT && h.fin) {
			msg->opcode = h.opcode;
			if ((rc = read_payload(w, &h, &msg->data, err)) < 0)
				wsc_msg_free(msg);   /* on failure the caller owns nothing */
			return rc;
		}
		if (h.opcode != WSC_CONT) {
			w->in_frag = true;
			w->frag_op = h.opcode;
			sb_reset(&w->frag);
		}
		if ((rc = read_payload(w, &h, &w->frag, err)) < 0)
			return rc;
		if (h.fin) {
			w->in_frag = false;
			msg->opcode = w->frag_op;
			msg->data = w->frag;
			memset(&w->frag, 0, sizeof(w->frag));
			return 0;
		}
	}
}

void wsc_msg_free(struct wsc_msg *m)
{
	sb_free(&m->data);
}

int wsc_close(wsc *w, uint16_t code, const char *reason, int timeout_ms, cell_error *err)
{
	int rc = wsc_send_close(w, code, reason, err);

	if (rc < 0)
		return rc;
	httpc_conn_set_timeout(w->conn, timeout_ms);
	while (!w->close_rcvd) {
		struct wsc_msg m;
		cell_error ignored;
		rc = wsc_recv(w, &m, &ignored);
		wsc_msg_free(&m);
		if (rc < 0)   /* the peer may just hang up: we are done either way */
			break;
	}
	return 0;
}
