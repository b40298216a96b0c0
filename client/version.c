/* cell version: client and server versions, as `lxc version`. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "client/api.h"
#include "common/cleanup.h"

#ifndef CELL_VERSION
#define CELL_VERSION "0"
#endif

static int run_version(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *rest = NULL;
	_cleanup_json_ json_t *srv = NULL;
	const char *ver = NULL;
	cell_error ignored;

	printf("Client version: %s\n", CELL_VERSION);
	if (a->argc && (a->argv[0][0] == '\0' || a->argv[0][strlen(a->argv[0]) - 1] != ':'))
		return cell_err(err, 400, EINVAL, "Remote must end with a colon");
	/* An unreachable server is a normal answer here, not an error. */
	if (cli_connect_arg(ctx, a->argc ? a->argv[0] : NULL, &c, &rest, &ignored) == 0 &&
	    cli_get(c, "/1.0", &srv, NULL, &ignored) == 0)
		ver = json_string_value(json_object_get(json_object_get(srv, "environment"), "server_version"));
	printf("Server version: %s\n", ver ? ver : "unreachable");
	return 0;
}

const struct cli_command cli_cmd_version = {
	.name = "version",
	.usage = "[<remote>:]",
	.short_help = "Show local and remote versions",
	.run = run_version,
	.max_args = 1,
};
