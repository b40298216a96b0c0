/* cell help [<command>...]: the same text as --help. */
#include <errno.h>
#include <stdio.h>

#include "client/cli.h"

static int run_help(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	char path[128];
	int used = 0;
	const struct cli_command *cmd = cli_lookup(a->argc, a->argv, &used, path, sizeof(path));

	if (used < a->argc)
		return cell_err(err, 400, EINVAL, "Unknown help topic \"%s\"", a->argv[used]);
	cli_print_help(stdout, cmd, path);
	return 0;
}

const struct cli_command cli_cmd_help = {
	.name = "help",
	.usage = "[command]",
	.short_help = "Help about any command",
	.long_help = "Help provides help for any command in the application.\n"
		     "Simply type cell help [path to command] for full details.",
	.run = run_help,
	.max_args = -1,
};
