/*
 * Talking to a daemon from the CLI: connect to a remote (unix socket, or
 * HTTPS with the client certificate and the pinned server certificate),
 * decode LXD's envelope, turn error envelopes into cell_errors carrying the
 * daemon's `error` text, and wait on operations with a progress line.
 */
#ifndef CELL_CLIENT_API_H
#define CELL_CLIENT_API_H

#include <stdbool.h>
#include <jansson.h>

#include "client/cli.h"
#include "common/error.h"
#include "common/http_client.h"
#include "common/ws_client.h"

struct cli_client {
	httpc *http;
	struct httpc_opts opts;   /* strings below; reused for websockets */
	char *remote;             /* remote name */
	char *project;            /* NULL: the server's default */
	char *unix_path, *host, *crt, *key, *pin;
	bool debug;
	bool quiet;
};

/* Connect lazily to `remote` (NULL: the default remote; --force-local wins). */
int cli_connect(struct cli_ctx *ctx, const char *remote, struct cli_client **out, cell_error *err);
/* "[<remote>:]<rest>" (raw NULL: the default remote): connect and hand back
 * rest (caller frees; "" when none). */
int cli_connect_arg(struct cli_ctx *ctx, const char *raw, struct cli_client **out, char **rest,
		    cell_error *err);
void cli_client_free(struct cli_client *c);
static inline void cli_client_freep(struct cli_client **c) { cli_client_free(*c); }
#define _cleanup_client_ __attribute__((cleanup(cli_client_freep)))

struct cli_resp {
	int status;            /* HTTP status */
	char *type;            /* "sync", "async" */
	json_t *metadata;      /* never NULL after success (json null when absent) */
	char *operation;       /* async: "/1.0/operations/<id>", else NULL */
	char *etag;            /* ETag header, or NULL */
	json_t *envelope;      /* the whole decoded body */
};
void cli_resp_free(struct cli_resp *r);
static inline void cli_resp_freep(struct cli_resp *r) { cli_resp_free(r); }
#define _cleanup_cli_resp_ __attribute__((cleanup(cli_resp_freep)))

/* One API call.  body (borrowed) is sent as JSON when not NULL; etag becomes
 * If-Match.  An error envelope or non-2xx status fails with the daemon's message. */
int cli_query(struct cli_client *c, const char *method, const char *path, json_t *body, const char *etag,
	      struct cli_resp *out, cell_error *err);
/* Decode an HTTP answer as LXD's envelope (what cli_query does after cli_raw). */
int cli_decode(const struct httpc_resp *h, struct cli_resp *out, cell_error *err);
/* GET; *metadata owned by the caller; etag may be NULL. */
int cli_get(struct cli_client *c, const char *path, json_t **metadata, char **etag, cell_error *err);
/* The raw HTTP exchange (lxc query --raw, file transfers); data may be NULL. */
int cli_raw(struct cli_client *c, const char *method, const char *path, const char *const *headers,
	    const void *data, size_t len, struct httpc_resp *out, cell_error *err);
/* Path with ?project= appended when a project is in use (caller frees). */
char *cli_path(struct cli_client *c, const char *path);

/* Wait for an operation ("/1.0/operations/<id>" or the bare id) to finish.
 * With progress (and stdout a terminal, not --quiet) its *_progress
 * metadata is shown on one line.  A failed operation fails with its `err`.
 * On success *op (may be NULL) receives the final operation object. */
int cli_wait(struct cli_client *c, const char *operation, bool progress, json_t **op, cell_error *err);
/* cli_query, then cli_wait when the answer is async; *op gets the operation
 * (async) or the metadata (sync). */
int cli_query_wait(struct cli_client *c, const char *method, const char *path, json_t *body,
		   const char *etag, json_t **op, cell_error *err);

/* Websocket on path over a new connection to the same remote. */
int cli_websocket(struct cli_client *c, const char *path, wsc **out, cell_error *err);
/* /1.0/events, types comma-separated ("" or NULL: all). */
int cli_events(struct cli_client *c, const char *types, wsc **out, cell_error *err);

/* One-line progress display, as LXD's ProgressRenderer (terminal only). */
struct cli_progress {
	bool enabled;
	size_t last_len;
};
void cli_progress_init(struct cli_progress *p, bool quiet);
void cli_progress_update(struct cli_progress *p, const char *text);
void cli_progress_done(struct cli_progress *p);

/* Last path component of an operation URL (borrowed). */
const char *cli_op_id(const char *operation);

#endif
