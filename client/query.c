/* cell query: a raw API call, printing the metadata as `lxc query` does. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "client/api.h"
#include "client/output.h"
#include "common/cleanup.h"
#include "common/util.h"

/* lxc's pretty(): tab-indented JSON, then Println: a blank line follows. */
static int print_pretty(json_t *v, bool sort_keys, cell_error *err)
{
	_cleanup_free_ char *s = cli_json_pretty(v, sort_keys);

	if (!s)
		return cell_err(err, 500, ENOMEM, "out of memory");
	printf("%s\n\n", s);
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

static bool is_json(const struct httpc_resp *h)
{
	json_error_t e;
	json_t *j = h->body.len ? json_loadb(h->body.buf, h->body.len, JSON_DECODE_ANY, &e) : NULL;
	bool ok = j != NULL;

	json_decref(j);
	return ok;
}

/* Send the request; a non-JSON 200 answer (a file, a log) is printed as is. */
static int send_query(struct cli_client *c, const char *method, const char *path, json_t *body,
		      struct cli_resp *r, bool *printed, cell_error *err)
{
	_cleanup_httpc_resp_ struct httpc_resp h = {0};
	_cleanup_free_ char *data = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	const char *hdrs[] = { "Content-Type: application/json", NULL };
	int rc = cli_raw(c, method, path, data ? hdrs : NULL, data, data ? strlen(data) : 0, &h, err);

	*printed = false;
	if (rc < 0)
		return rc;
	if (!is_json(&h) && h.status == 200) {
		fwrite(h.body.buf ? h.body.buf : "", 1, h.body.len, stdout);
		*printed = true;
		return 0;
	}
	return cli_decode(&h, r, err);
}

static int run_query(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	static const char *const actions[] = { "GET", "PUT", "POST", "PATCH", "DELETE", NULL };
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *body = body_of(cli_opt(a, "data"));
	_cleanup_cli_resp_ struct cli_resp r = {0};
	const char *method = cli_opt(a, "request");
	bool printed, known = false;
	json_t *md;
	int rc;

	if (ctx->project)
		return cell_err(err, 400, EINVAL, "--project cannot be used with the query command");
	for (const char *const *m = actions; *m; m++)
		known |= !strcmp(*m, method);
	if (!known)
		return cell_err(err, 400, EINVAL, "Action \"%s\" isn't supported by this tool", method);
	if ((rc = cli_connect_arg(ctx, a->argv[0], &c, &path, err)) < 0)
		return rc;
	if (path[0] != '/')
		return cell_err(err, 400, EINVAL, "Query path must start with /");
	if ((rc = send_query(c, method, path, body, &r, &printed, err)) < 0 || printed)
		return rc;
	if (cli_flag(a, "wait") && r.operation) {
		size_t pl = strcspn(r.operation, "?");
		_cleanup_free_ char *wait = xasprintf("%.*s/wait%s", (int)pl, r.operation, r.operation + pl);
		const char *op_err;
		if (!wait)
			return cell_err(err, 500, ENOMEM, "out of memory");
		cli_resp_free(&r);
		if ((rc = cli_query(c, "GET", wait, NULL, NULL, &r, err)) < 0)
			return rc;
		op_err = json_string_value(json_object_get(r.metadata, "err"));
		if (op_err && *op_err)
			return cell_err(err, 400, EIO, "%s", op_err);
	}
	if (cli_flag(a, "raw"))
		return print_pretty(r.envelope, false, err);
	md = r.metadata;
	if (json_is_null(md) || (json_is_object(md) && json_object_size(md) == 0))
		return 0;
	return print_pretty(md, true, err);
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
	.long_help = "Send a raw query to cell",
	.examples = "cell query -X DELETE --wait /1.0/instances/c1\n"
		    "    Delete local instance \"c1\".",
	.opts = query_opts,
	.run = run_query,
	.min_args = 1,
	.max_args = 1,
};
