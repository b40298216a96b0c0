/* cell info [<remote>:]: the server's GET /1.0 as YAML, as `lxc info` prints it. */
#include <errno.h>
#include <stdio.h>

#include "client/api.h"
#include "client/output.h"
#include "common/cleanup.h"

static const struct cli_opt info_opts[] = {
	{ "resources", 0, CLI_OPT_BOOL, "Show the resources available to the server", NULL },
	{ 0 },
};

static int run_info(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *rest = NULL;
	_cleanup_json_ json_t *md = NULL;
	int rc = cli_connect_arg(ctx, a->argc ? a->argv[0] : NULL, &c, &rest, err);

	if (rc < 0)
		return rc;
	if (*rest)
		return cell_err(err, 501, ENOTSUP, "Instance information is not supported yet");
	rc = cli_get(c, cli_flag(a, "resources") ? "/1.0/resources" : "/1.0", &md, NULL, err);
	if (rc < 0)
		return rc;
	return cli_print_yaml(stdout, md, 0, err);
}

const struct cli_command cli_cmd_info = {
	.name = "info",
	.usage = "[<remote>:][<instance>]",
	.short_help = "Show instance or server information",
	.examples = "cell info [<remote>:] [--resources]\n    For server information.",
	.opts = info_opts,
	.run = run_info,
	.max_args = 1,
};
