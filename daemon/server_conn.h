/* Per-connection state of the HTTP server, its response writer (server_conn.c)
 * and its streamed-body reader (server_body.c); private to server*.c, ws.c. */
#ifndef CELL_DAEMON_SERVER_CONN_H
#define CELL_DAEMON_SERVER_CONN_H

#include <libwebsockets.h>
#include <stdbool.h>

#include "daemon/http.h"
#include "daemon/http_chunked.h"
#include "daemon/router.h"
#include "daemon/ws.h"

struct srv_conn {
	struct lws *wsi;
	http_req req;
	http_resp resp;
	const struct route_method *rm;
	bool want_body;          /* buffering a JSON body */
	bool streaming;          /* body goes to rm->body */
	bool body_failed;
	void *body_state;
	struct srv_body_reader *reader;   /* server_body.c reads the body itself */
	bool chunked;                      /* Transfer-Encoding: chunked, decoded by ch */
	struct http_chunked ch;
	cell_error body_err;
	bool responding, headers_sent, close_after;
	bool in_cb;              /* inside an lws HTTP callback: write on return */
	size_t body_off;         /* bytes of resp.body written */
	off_t fd_off;            /* bytes of resp.body_fd written */
	struct http_deferred *deferred;
	struct ws_conn *ws;
	/* Kept across keep-alive requests on one connection. */
	bool peer_checked;
	char peer_fp[65];
	char *peer_pem;
};

void srv_conn_reset(struct srv_conn *c, struct lws *wsi);
/* Answer now with c->resp (error paths before the body): closes afterwards. */
int srv_conn_reject(struct srv_conn *c);
/* The handler filled c->resp: start writing. */
void srv_conn_respond(struct srv_conn *c);
int srv_conn_write(struct srv_conn *c);
void srv_conn_closed(struct srv_conn *c);

int srv_conn_body_begin(struct srv_conn *c);
int srv_conn_body_chunk(struct srv_conn *c, const void *data, size_t len);
int srv_conn_body_end(struct srv_conn *c);
/* The connection is done with its request: stop reading its body. */
void srv_conn_body_drop(struct srv_conn *c);
/* server_body.c read the body off lws: it writes the answer too (then closes). */
bool srv_body_owns_reply(const struct srv_conn *c);
void srv_body_reply(struct srv_conn *c);
int srv_conn_build_headers(struct srv_conn *c, uint64_t total, unsigned char **p, unsigned char *end);
uint64_t srv_conn_resp_total(const struct srv_conn *c);

/* ws.c */
struct ws_conn *ws_conn_new(struct lws *wsi);
void ws_conn_free(struct ws_conn *ws);
int ws_conn_established(struct ws_conn *ws);
int ws_conn_receive(struct ws_conn *ws, const void *in, size_t len);
int ws_conn_writeable(struct ws_conn *ws);
void ws_conn_closed(struct ws_conn *ws);

#endif
