/* cell query: a raw API call, printing the metadata as `lxc query` does. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "client/api.h"
#include "client/output.h"
#include "common/cleanup.h"

static int print_pretty(json_t *v, cell_error *err)
{
	_cleanup_free_ char *s = cli_json_pretty(v ? v : json_null());

	if (!s)
		return cell_err(err, 500, ENOMEM, "out of memory");
	printf("%s\n", s);
	return 0;
}

/* --raw: the response body exactly as the server sent it. */
static int run_raw(struct cli_client *c, const char *method, const char *path, const char *data,
		   cell_error *err)
{
	_cleanup_httpc_resp_ struct httpc_resp h = {0};
	const char *hdrs[] = { "Content-Type: application/json", NULL };
	int rc = cli_raw(c, method, path, data ? hdrs : NULL, data, data ? strlen(data) : 0, &h, err);

	if (rc < 0)
		return rc;
	fwrite(h.body.buf ? h.body.buf : "", 1, h.body.len, stdout);
	if (h.body.len && h.body.buf[h.body.len - 1] != '\n')
		putchar('\n');
	if (h.status >= 400)
		return cell_err(err, h.status, EIO, "%d %s", h.status, h.reason ? h.reason : "");
	return 0;
}

/* -d: JSON as given; anything else is sent as a JSON string (as lxc does). */
static json_t *body_of(const char *data)
{
	json_t *j;

	if (!data || !*data)
		return NULL;
	j = json_loads(data, JSON_DECODE_ANY, NULL);
	return j ? j : json_string(data);
}

static int run_query(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *body = body_of(cli_opt(a, "data"));
	_cleanup_json_ json_t *op = NULL;
	_cleanup_cli_resp_ struct cli_resp r = {0};
	const char *method = cli_opt(a, "request");
	int rc = cli_connect_arg(ctx, a->argv[0], &c, &path, err);

	if (rc < 0)
		return rc;
	if (path[0] != '/')
		return cell_err(err, 400, EINVAL, "Query path must start with /");
	if (cli_flag(a, "raw")) {
		_cleanup_free_ char *data = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
		return run_raw(c, method, path, data, err);
	}
	if ((rc = cli_query(c, method, path, body, NULL, &r, err)) < 0)
		return rc;
	if (cli_flag(a, "wait") && r.operation) {
		if ((rc = cli_wait(c, r.operation, false, &op, err)) < 0)
			return rc;
		if (json_is_null(json_object_get(op, "metadata")) || !json_object_get(op, "metadata"))
			return 0;
		return print_pretty(json_object_get(op, "metadata"), err);
	}
	return print_pretty(r.metadata, err);
}

static const struct cli_opt query_opts[] = {
	{ "data", 'd', CLI_OPT_STRING, "Input data", NULL },
	{ "raw", 0, CLI_OPT_BOOL, "Print the raw response", NULL },
	{ "request", 'X', CLI_OPT_STRING, "Action (defaults to GET)", "GET" },
	{ "wait", 0, CLI_OPT_BOOL, "Wait for the operation to complete", NULL },
	{ 0 },
};

const struct cli_command cli_cmd_query = {
	.name = "query",
	.usage = "[<remote>:]<API path>",
	.short_help = "Send a raw query to cell",
	.examples = "cell query -X DELETE --wait /1.0/instances/c1\n"
		    "    Delete local instance \"c1\".",
	.opts = query_opts,
	.run = run_query,
	.min_args = 1,
	.max_args = 1,
};
