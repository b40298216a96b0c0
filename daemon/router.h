/*
 * Path routing: patterns with {captures}, per-method handlers, 404 for an
 * unknown path and 405 for a known path with an unknown method.  Each API
 * file registers its routes from routes.c.
 */
#ifndef CELL_DAEMON_ROUTER_H
#define CELL_DAEMON_ROUTER_H

#include "daemon/http.h"

typedef void (*route_fn)(http_req *req, http_resp *resp);

/* Websocket upgrade on a path: return 0 to accept (ws now belongs to the
 * callee via ws_conn), or fill err (status 403/404) to refuse. */
struct ws_conn;
typedef int (*route_ws_fn)(http_req *req, struct ws_conn *ws, cell_error *err);

enum route_flags {
	ROUTE_UNTRUSTED_OK = 1 << 0,   /* reachable without a trusted certificate */
	ROUTE_STREAM_BODY = 1 << 1,    /* body not buffered: see route_body_fns */
};

/* Streamed bodies (image upload): begin -> chunk* -> end, all on the loop. */
struct route_body_fns {
	int (*begin)(http_req *req, void **state, cell_error *err);
	int (*chunk)(void *state, const void *data, size_t len, cell_error *err);
	void (*end)(void *state, http_req *req, http_resp *resp, const cell_error *failed);
	/* Optional: a file the body's bytes may be spliced into directly, at its
	 * current offset, instead of passing through chunk(); -1 for chunk(). */
	int (*sink)(void *state);
};

struct route_method {
	enum http_method method;
	route_fn fn;
	unsigned flags;
	const struct route_body_fns *body;   /* with ROUTE_STREAM_BODY */
};

#define ROUTE_MAX_METHODS 6
struct route {
	const char *pattern;                 /* "/1.0/instances/{name}" */
	struct route_method methods[ROUTE_MAX_METHODS];
	route_ws_fn ws;                      /* websocket upgrade handler, or NULL */
	unsigned ws_flags;
};

int router_add(const struct route *r);
/* Register under both /1.0/instances and /1.0/containers. pattern must start
 * with "/1.0/instances". */
int router_add_instances(const struct route *r);

enum route_match { ROUTE_FOUND, ROUTE_NO_PATH, ROUTE_NO_METHOD };
/* Fills req->params; returns the method entry when found. */
enum route_match router_match(http_req *req, const struct route **route,
			      const struct route_method **method);
void router_reset(void);

/* routes.c: every API file's registration in one place. */
void routes_register_all(void);

#endif
