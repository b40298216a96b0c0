/*
 * One HTTP request as the router sees it, and the response a handler fills.
 * The server (server.c) owns both; handlers run on the loop thread and must
 * not block: slow work becomes an operation (operations.h).
 */
#ifndef CELL_DAEMON_HTTP_H
#define CELL_DAEMON_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <jansson.h>

#include "common/error.h"
#include "common/strbuf.h"

enum http_method { HTTP_GET, HTTP_HEAD, HTTP_PUT, HTTP_POST, HTTP_PATCH, HTTP_DELETE,
		   HTTP_OPTIONS, HTTP_METHOD_COUNT };

#define HTTP_MAX_PARAMS 4
#define HTTP_MAX_HEADERS 32
#define HTTP_MAX_ARGS 16

struct http_header { char *name; char *value; };   /* name lower-case */

typedef struct http_req {
	enum http_method method;
	char *path;                  /* percent-decoded, without the query */
	char **args;                 /* decoded "key=value" query arguments */
	int nargs;
	struct http_header headers[HTTP_MAX_HEADERS];
	int nheaders;
	strbuf body;                 /* whole body, unless the route streams it */
	bool trusted;                /* unix socket, or a trusted client certificate */
	bool via_unix;
	char peer_fp[65];            /* HTTPS client certificate SHA-256, "" when none */
	char *peer_cert_pem;         /* that certificate as PEM, NULL when none */
	const char *params[HTTP_MAX_PARAMS];   /* router captures, e.g. {name} */
	char *scratch;               /* router-owned copy of path the params point into */
	int nparams;
	void *conn;                  /* server-private */
} http_req;

/* Case-insensitive header lookup; NULL when absent. */
const char *http_req_header(const http_req *r, const char *name);
/* Decoded query value (borrowed); NULL when absent. */
const char *http_req_query(const http_req *r, const char *key);
/* ?recursion=N, 0 when absent or invalid. */
int http_req_recursion(const http_req *r);
/* Parse the body as JSON: 400 with LXD's wording when it is not an object. */
int http_req_json(const http_req *r, json_t **out, cell_error *err);

typedef struct http_resp {
	int status;
	char content_type[64];
	strbuf body;
	struct http_header headers[8];   /* extra headers (ETag, Location, X-LXD-*) */
	int nheaders;
	int body_fd;                     /* >= 0: stream this file after body (downloads) */
	off_t body_fd_len;
	bool deferred;                   /* handler answers later via http_deferred_finish */
} http_resp;

int http_resp_header(http_resp *resp, const char *name, const char *value);

/* LXD's envelope. Each takes ownership of `metadata` (may be NULL). */
void resp_sync(http_resp *resp, json_t *metadata);
void resp_sync_status(http_resp *resp, int status, json_t *metadata);
/* `etag_src` (borrowed) is hashed into the ETag header, as LXD does. */
void resp_sync_etag(http_resp *resp, json_t *metadata, json_t *etag_src);
void resp_empty(http_resp *resp);   /* sync, metadata {} */
void resp_error(http_resp *resp, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void resp_from_err(http_resp *resp, const cell_error *err);
/* Serialise a whole envelope (taken) as the JSON body. */
void resp_envelope(http_resp *resp, int status, json_t *env);
void resp_raw(http_resp *resp, int status, const char *content_type, const void *data, size_t len);

/* SHA-256 of the compact, key-sorted JSON, hex. */
void http_etag(json_t *src, char out[65]);
/* 412 into resp and false when If-Match is set and differs from etag_src. */
bool http_check_etag(const http_req *req, http_resp *resp, json_t *etag_src);

/* Deferred answers (operation wait): take a handle, answer later on the loop. */
typedef struct http_deferred http_deferred;
http_deferred *http_defer(http_req *req, http_resp *resp);
/* Finish with the given response (moved from). Safe after the client left. */
void http_deferred_finish(http_deferred *d, http_resp *resp);
bool http_deferred_alive(const http_deferred *d);

/* Streamed bodies (ROUTE_STREAM_BODY), from the route's body callbacks on
 * the loop thread; defined in server_body.c.
 * Stop / resume reading the request body (a consumer's queue is full). */
void http_req_pause_body(http_req *req, bool pause);
void http_resp_init(http_resp *resp);
void http_resp_free(http_resp *resp);

const char *http_status_text(int status);

#endif
