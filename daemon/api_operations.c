/* /1.0/operations: list, show, cancel, wait, and operation websockets. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/http.h"
#include "daemon/operations.h"
#include "daemon/router.h"

static void ops_list(http_req *req, http_resp *resp)
{
	resp_sync(resp, op_list_json(http_req_recursion(req) > 0));
}

static struct operation *ops_lookup(http_req *req, http_resp *resp)
{
	struct operation *op = op_get(req->params[0]);
	if (!op)
		resp_error(resp, 404, "Operation not found");
	return op;
}

static void ops_get(http_req *req, http_resp *resp)
{
	struct operation *op = ops_lookup(req, resp);
	if (op)
		resp_sync(resp, op_to_json(op));
}

static void ops_delete(http_req *req, http_resp *resp)
{
	struct operation *op = ops_lookup(req, resp);
	cell_error err = { 0 };

	if (!op)
		return;
	if (op_cancel(op, &err) < 0)
		resp_from_err(resp, &err);
	else
		resp_empty(resp);
}

static void ops_wait(http_req *req, http_resp *resp)
{
	struct operation *op = ops_lookup(req, resp);
	const char *t = http_req_query(req, "timeout");
	double timeout = -1;

	if (!op)
		return;
	if (t && *t) {
		char *end;
		timeout = strtod(t, &end);
		if (*end) {
			resp_error(resp, 400, "Invalid timeout \"%s\"", t);
			return;
		}
	}
	if (op_wait(op, req, resp, timeout) < 0)
		resp_error(resp, 500, "out of memory");
}

static void ops_ws_get(http_req *req, http_resp *resp)
{
	resp_error(resp, 400, "Missing websocket upgrade");
}

/* The secret is the credential: untrusted clients may connect with it. */
static int ops_ws_connect(http_req *req, struct ws_conn *ws, cell_error *err)
{
	struct operation *op = op_get(req->params[0]);
	const char *secret = http_req_query(req, "secret");
	char fd_name[64];
	int rc;

	if (!op)
		return cell_err(err, 404, ENOENT, "Operation not found");
	if (!secret || !*secret)
		return cell_err(err, 400, EINVAL, "Missing secret");
	rc = op_secret_lookup(op, secret, fd_name, sizeof(fd_name));
	if (rc == -EBUSY)
		return cell_err(err, 403, EBUSY, "Websocket already connected");
	if (rc < 0)
		return cell_err(err, 403, EACCES, "Invalid websocket secret");
	return op_ws_dispatch(op, fd_name, ws, err);
}

void api_operations_register(void)
{
	router_add(&(struct route){ .pattern = "/1.0/operations",
				    .methods = { { HTTP_GET, ops_list, 0, NULL } } });
	router_add(&(struct route){ .pattern = "/1.0/operations/{id}",
				    .methods = { { HTTP_GET, ops_get, 0, NULL },
						 { HTTP_DELETE, ops_delete, 0, NULL } } });
	router_add(&(struct route){ .pattern = "/1.0/operations/{id}/wait",
				    .methods = { { HTTP_GET, ops_wait, 0, NULL } } });
	router_add(&(struct route){ .pattern = "/1.0/operations/{id}/websocket",
				    .methods = { { HTTP_GET, ops_ws_get, ROUTE_UNTRUSTED_OK, NULL } },
				    .ws = ops_ws_connect,
				    .ws_flags = ROUTE_UNTRUSTED_OK });
}
