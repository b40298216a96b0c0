/*
 * Operations: every slow action is an async operation run on a worker
 * thread.  Status codes and JSON as LXD's.  The run function must not touch
 * the loop; it reports through op_set_metadata/op_progress (thread-safe) and
 * checks op_cancelled().  Finished operations are kept 5 s, as LXD does.
 */
#ifndef CELL_DAEMON_OPERATIONS_H
#define CELL_DAEMON_OPERATIONS_H

#include <stdbool.h>
#include <jansson.h>

#include "common/error.h"

enum op_status {
	OP_CREATED = 100, OP_STARTED = 101, OP_STOPPED = 102, OP_RUNNING = 103,
	OP_CANCELLING = 104, OP_PENDING = 105, OP_AUTHENTICATING = 106,
	OP_SUCCESS = 200, OP_FAILURE = 400, OP_CANCELLED = 401,
};

enum op_class { OP_CLASS_TASK, OP_CLASS_WEBSOCKET, OP_CLASS_TOKEN };

struct operation;
struct ws_conn;

struct op_ops {
	/* Worker thread. Return 0 or fill err. May be NULL for websocket ops
	 * driven entirely by connects. */
	int (*run)(struct operation *op, cell_error *err);
	/* Loop thread: a websocket connected with one of op's secrets
	 * (`fd_name` is the key in metadata.fds). Return 0 to keep it. */
	int (*ws_connect)(struct operation *op, const char *fd_name, struct ws_conn *ws,
			  cell_error *err);
	/* Loop thread: DELETE asked to cancel; return 0 when cancelling began. */
	int (*cancel)(struct operation *op, cell_error *err);
	void (*free_data)(void *data);
};

/* Create (status Created). `resources` and `metadata` are taken (may be NULL).
 * Loop thread. */
struct operation *op_create(enum op_class cls, const char *description, json_t *resources,
			    json_t *metadata, const struct op_ops *ops, void *data);
/* Queue run() on a worker thread (status Running). Loop thread. */
int op_start(struct operation *op);
/* Websocket operations: add a random secret under metadata.fds[name]. */
int op_add_secret(struct operation *op, const char *fd_name);
/* For websocket ops without run(): finish from the loop thread. */
void op_finish(struct operation *op, int rc, const char *errmsg);

void op_set_may_cancel(struct operation *op, bool may);
/* Thread-safe. Replace metadata (taken) / merge one key (value taken). */
void op_set_metadata(struct operation *op, json_t *metadata);
void op_set_metadata_key(struct operation *op, const char *key, json_t *value);
/* Progress as LXD shows it: metadata[key] = "<stage>: <percent>% (<speed>/s)". */
void op_progress(struct operation *op, const char *key, const char *text);
bool op_cancelled(const struct operation *op);
void *op_data(struct operation *op);
const char *op_id(const struct operation *op);

/* Lookup/encode (loop thread). op_get returns a borrowed pointer. */
struct operation *op_get(const char *id);
json_t *op_to_json(struct operation *op);
/* {"running": [...], "success": [...]}: URLs, or objects when recursion. */
json_t *op_list_json(bool recursion);
/* Operation URL "/1.0/operations/<id>". */
void op_url(const struct operation *op, char out[64]);
enum op_status op_status_of(const struct operation *op);

void op_ref(struct operation *op);
void op_unref(struct operation *op);

struct http_resp;
struct http_req;
/* DELETE: request cancellation (400 when it cannot be cancelled). */
int op_cancel(struct operation *op, cell_error *err);
/* Answer with the operation once final, or after timeout_s (< 0: never). */
int op_wait(struct operation *op, struct http_req *req, struct http_resp *resp, double timeout_s);
/* Websocket secrets: which fd name `secret` opens (each once). -ENOENT / -EBUSY. */
int op_secret_lookup(struct operation *op, const char *secret, char *fd_name, size_t n);
/* Hand a connected websocket to the operation's ws_connect. */
int op_ws_dispatch(struct operation *op, const char *fd_name, struct ws_conn *ws, cell_error *err);
/* 202 async envelope with Location, metadata = the operation. */
void resp_async(struct http_resp *resp, struct operation *op);

int ops_init(void);
/* Cancel what can be cancelled and wait for workers (shutdown). */
void ops_shutdown(void);

#endif
