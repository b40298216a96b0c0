/* cell operation list/show/delete: background operations, as `lxc operation`. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/api.h"
#include "client/output.h"
#include "common/cleanup.h"
#include "common/util.h"

static char *upper(const char *s)
{
	char *u = strdup(s ? s : "");
	for (char *p = u; p && *p; p++)
		*p = (char)toupper((unsigned char)*p);
	return u;
}

/* {"running": [...], "success": [...]} into one list. */
static json_t *flatten_ops(json_t *md)
{
	json_t *all = json_array(), *list, *op;
	const char *k;
	size_t i;

	json_object_foreach(md, k, list)
		json_array_foreach(list, i, op)
			if (json_is_object(op))
				json_array_append(all, op);
	return all;
}

static int op_row(struct cli_table *t, json_t *op)
{
	_cleanup_free_ char *cls = upper(json_string_value(json_object_get(op, "class")));
	_cleanup_free_ char *st = upper(json_string_value(json_object_get(op, "status")));
	char created[32];
	const char *row[6];

	if (!cls || !st)
		return -ENOMEM;
	cli_format_time_utc(json_string_value(json_object_get(op, "created_at")), created);
	row[0] = json_string_value(json_object_get(op, "id"));
	row[1] = cls;
	row[2] = json_string_value(json_object_get(op, "description"));
	row[3] = st;
	row[4] = json_is_true(json_object_get(op, "may_cancel")) ? "YES" : "NO";
	row[5] = created;
	return cli_table_add(t, row);
}

static int run_list(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	static const char *const header[] = { "ID", "TYPE", "DESCRIPTION", "STATUS", "CANCELABLE", "CREATED" };
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *rest = NULL;
	_cleanup_json_ json_t *md = NULL;
	_cleanup_json_ json_t *ops = NULL;
	_cleanup_table_ struct cli_table *t = cli_table_new(6, header);
	enum cli_format fmt;
	size_t i;
	json_t *op;
	int rc;

	if (!t)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_format_parse(cli_opt(a, "format"), &fmt, err)) < 0)
		return rc;
	if ((rc = cli_connect_arg(ctx, a->argc ? a->argv[0] : NULL, &c, &rest, err)) < 0)
		return rc;
	if (*rest)
		return cell_err(err, 400, EINVAL, "Filtering isn't supported yet");
	if ((rc = cli_get(c, "/1.0/operations?recursion=1", &md, NULL, err)) < 0)
		return rc;
	if (!(ops = flatten_ops(md)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_array_foreach(ops, i, op)
		if (op_row(t, op) < 0)
			return cell_err(err, 500, ENOMEM, "out of memory");
	cli_table_sort(t);
	return cli_render(stdout, fmt, t, ops, err);
}

/* "[<remote>:]<id>" -> client and the operation's API path. */
static int open_op(struct cli_ctx *ctx, const char *arg, struct cli_client **c, char **path, cell_error *err)
{
	_cleanup_free_ char *rest = NULL;
	_cleanup_free_ char *esc = NULL;
	int rc = cli_connect_arg(ctx, arg, c, &rest, err);

	if (rc < 0)
		return rc;
	if (!*rest)
		return cell_err(err, 400, EINVAL, "Missing operation ID");
	esc = httpc_escape(rest);
	*path = esc ? xasprintf("/1.0/operations/%s", esc) : NULL;
	return *path ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

static int run_show(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *op = NULL;
	int rc = open_op(ctx, a->argv[0], &c, &path, err);

	if (rc == 0)
		rc = cli_get(c, path, &op, NULL, err);
	return rc < 0 ? rc : cli_print_yaml(stdout, op, 0, err);
}

static int run_delete(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *path = NULL;
	_cleanup_cli_resp_ struct cli_resp r = {0};
	int rc = open_op(ctx, a->argv[0], &c, &path, err);

	if (rc == 0)
		rc = cli_query(c, "DELETE", path, NULL, NULL, &r, err);
	if (rc < 0)
		return rc;
	if (!ctx->quiet)
		printf("Operation %s deleted\n", cli_op_id(path));
	return 0;
}

static const struct cli_opt list_opts[] = {
	{ "format", 'f', CLI_OPT_STRING, "Format (csv|json|table|yaml|compact)", "table" },
	{ 0 },
};

static const struct cli_command op_list = {
	.name = "list",
	.aliases = "ls",
	.usage = "[<remote>:]",
	.short_help = "List background operations",
	.opts = list_opts,
	.run = run_list,
	.max_args = 1,
};

static const struct cli_command op_show = {
	.name = "show",
	.usage = "[<remote>:]<operation>",
	.short_help = "Show details on a background operation",
	.examples = "cell operation show 344a79e4-d88a-45bf-9c39-c72c26f6ab8a\n"
		    "    Show details on that operation UUID",
	.run = run_show,
	.min_args = 1,
	.max_args = 1,
};

static const struct cli_command op_delete = {
	.name = "delete",
	.aliases = "cancel rm",
	.usage = "[<remote>:]<operation>",
	.short_help = "Delete a background operation (will attempt to cancel)",
	.run = run_delete,
	.min_args = 1,
	.max_args = 1,
};

static const struct cli_command *const op_subs[] = { &op_delete, &op_list, &op_show, NULL };

const struct cli_command cli_cmd_operation = {
	.name = "operation",
	.short_help = "List, show and delete background operations",
	.subs = op_subs,
};
