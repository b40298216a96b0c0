/*
 * /internal/testing: operations with controllable duration, failure and
 * websockets, so the operations framework (wait, cancel, progress, secrets)
 * can be exercised end to end before real slow actions exist.  Registered
 * only when CELL_TEST_HOOKS=1 is in celld's environment.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "daemon/http.h"
#include "daemon/operations.h"
#include "daemon/router.h"
#include "daemon/ws.h"

struct test_op {
	int64_t duration_ms;
	char *fail;
};

static void test_op_free(void *p)
{
	struct test_op *t = p;
	free(t->fail);
	free(t);
}

static int test_op_run(struct operation *op, cell_error *err)
{
	struct test_op *t = op_data(op);
	struct timespec step = { 0, 10 * 1000 * 1000 };

	for (int64_t ms = 0; ms < t->duration_ms; ms += 10) {
		char text[64];
		if (op_cancelled(op))
			return cell_err(err, 400, ECANCELED, "Operation cancelled");
		if (ms % 100 == 0) {
			snprintf(text, sizeof(text), "sleeping: %d%%", (int)(ms * 100 / t->duration_ms));
			op_progress(op, "progress", text);
		}
		nanosleep(&step, NULL);
	}
	if (t->fail)
		return cell_err(err, 500, EIO, "%s", t->fail);
	return 0;
}

static const struct op_ops test_task_ops = { .run = test_op_run, .free_data = test_op_free };

/* Websocket operation: "0" echoes every message; closing "control" ends it. */
static void test_echo(struct ws_conn *ws, const void *data, size_t len, bool binary, void *ud)
{
	ws_conn_send(ws, data, len, binary);
}

static void test_control_closed(struct ws_conn *ws, void *ud)
{
	op_finish(ud, 0, NULL);
	op_unref(ud);
}

static const struct ws_handler test_echo_handler = { .on_message = test_echo };
static const struct ws_handler test_control_handler = { .on_close = test_control_closed };

static int test_ws_connect(struct operation *op, const char *fd, struct ws_conn *ws,
			   cell_error *err)
{
	if (!strcmp(fd, "control")) {
		op_ref(op);
		ws_conn_set_handler(ws, &test_control_handler, op);
	} else {
		ws_conn_set_handler(ws, &test_echo_handler, op);
	}
	return 0;
}

static const struct op_ops test_ws_ops = { .ws_connect = test_ws_connect,
					   .free_data = test_op_free };

static void test_op_post(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	cell_error err = { 0 };
	struct test_op *t;
	struct operation *op;
	bool ws;

	if (http_req_json(req, &body, &err) < 0)
		return resp_from_err(resp, &err);
	t = calloc(1, sizeof(*t));
	if (!t)
		return resp_error(resp, 500, "out of memory");
	t->duration_ms = json_integer_value(json_object_get(body, "duration_ms"));
	if (json_is_string(json_object_get(body, "fail")))
		t->fail = strdup(json_string_value(json_object_get(body, "fail")));
	ws = json_is_true(json_object_get(body, "websocket"));
	op = op_create(ws ? OP_CLASS_WEBSOCKET : OP_CLASS_TASK, "Testing operation",
		       json_pack("{s:[s]}", "testing", "/internal/testing"), NULL,
		       ws ? &test_ws_ops : &test_task_ops, t);
	if (!op)
		return resp_error(resp, 500, "out of memory");
	op_set_may_cancel(op, json_is_true(json_object_get(body, "cancellable")));
	if (ws) {
		op_add_secret(op, "0");
		op_add_secret(op, "control");
	}
	op_start(op);
	resp_async(resp, op);
}

void api_testing_register(void)
{
	const char *on = getenv("CELL_TEST_HOOKS");
	if (!on || strcmp(on, "1"))
		return;
	router_add(&(struct route){ .pattern = "/internal/testing/operations",
				    .methods = { { HTTP_POST, test_op_post, 0, NULL } } });
}
