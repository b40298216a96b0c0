/* cell snapshot / cell restore: instance snapshots, as `lxc snapshot` and `lxc restore`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/api.h"
#include "client/inst.h"
#include "common/cleanup.h"
#include "common/util.h"

/* "c1 snap" or "c1/snap" -> instance and snapshot name ("" lets the daemon pick). */
static int split_snapshot(struct cli_args *a, struct cli_obj *o, char **snap, cell_error *err)
{
	char *slash = strchr(o->name, '/');

	if (slash && a->argc > 1)
		return cell_err(err, 400, EINVAL, "Invalid instance name: %s", o->name);
	*snap = strdup(slash ? slash + 1 : a->argc > 1 ? a->argv[1] : "");
	if (slash)
		*slash = '\0';
	return *snap ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

/* --reuse: drop an existing snapshot of that name first. */
static int drop_existing(struct cli_obj *o, const char *snap, cell_error *err)
{
	_cleanup_free_ char *full = xasprintf("%s/%s", o->name, snap);
	_cleanup_free_ char *path = full ? cli_inst_path(full, NULL) : NULL;
	_cleanup_json_ json_t *cur = NULL;
	cell_error missing = {0};

	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (cli_get(o->c, path, &cur, NULL, &missing) < 0)
		return 0;
	return cli_query_wait(o->c, "DELETE", path, NULL, NULL, NULL, err);
}

static int run_snapshot(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_free_ char *snap = NULL;
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *body = NULL;
	int rc = cli_obj_open(ctx, a->argv[0], "Missing instance name", &o, err);

	if (rc < 0 || (rc = split_snapshot(a, &o, &snap, err)) < 0)
		return rc;
	if (cli_flag(a, "reuse") && *snap && (rc = drop_existing(&o, snap, err)) < 0)
		return rc;
	/* Go's zero time.Time is how LXD asks for "never expires". */
	body = json_pack("{s:s,s:b,s:s?}", "name", snap, "stateful", cli_flag(a, "stateful"), "expires_at",
			 cli_flag(a, "no-expiry") ? "0001-01-01T00:00:00Z" : NULL);
	if (!body || !(path = cli_inst_path(o.name, "/snapshots")))
		return cell_err(err, 500, ENOMEM, "out of memory");
	return cli_query_wait(o.c, "POST", path, body, NULL, NULL, err);
}

static int run_restore(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_free_ char *snap = NULL;
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *body = NULL;
	int rc = cli_obj_open(ctx, a->argv[0], "Missing instance name", &o, err);

	if (rc < 0)
		return rc;
	/* lxc sends "<instance>/<snap>"; LXD takes the bare name as well, and so does every celld. */
	snap = strdup(str_has_prefix(a->argv[1], o.name) && a->argv[1][strlen(o.name)] == '/' ? a->argv[1] + strlen(o.name) + 1
												: a->argv[1]);
	/* LXD's whole InstancePut: a non-empty "restore" makes the PUT a restore. */
	body = json_pack("{s:s,s:n,s:n,s:b,s:n,s:s?,s:b,s:s}", "architecture", "", "config", "devices", "ephemeral",
			 false, "profiles", "restore", snap, "stateful", cli_flag(a, "stateful"), "description", "");
	if (!snap || !body || !(path = cli_inst_path(o.name, NULL)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	return cli_query_wait(o.c, "PUT", path, body, NULL, NULL, err);
}

static const struct cli_opt snapshot_opts[] = {
	{ "no-expiry", 0, CLI_OPT_BOOL, "Ignore any configured auto-expiry for the instance", NULL },
	{ "reuse", 0, CLI_OPT_BOOL, "If the snapshot name already exists, delete and create a new one", NULL },
	{ "stateful", 0, CLI_OPT_BOOL, "Whether or not to snapshot the instance's running state", NULL },
	{ 0 },
};

static const struct cli_opt restore_opts[] = {
	{ "stateful", 0, CLI_OPT_BOOL, "Whether or not to restore the instance's running state from snapshot (if available)", NULL },
	{ 0 },
};

const struct cli_command cli_cmd_snapshot = {
	.name = "snapshot",
	.usage = "[<remote>:]<instance> [<snapshot name>]",
	.short_help = "Create instance snapshots",
	.long_help = "Create instance snapshots\n\n"
		     "When --stateful is used, cell attempts to checkpoint the instance's\n"
		     "running state, including process memory state, TCP connections, ...",
	.examples = "cell snapshot u1 snap0\n"
		    "    Create a snapshot of \"u1\" called \"snap0\".",
	.opts = snapshot_opts,
	.run = run_snapshot,
	.min_args = 1,
	.max_args = 2,
};

const struct cli_command cli_cmd_restore = {
	.name = "restore",
	.usage = "[<remote>:]<instance> <snapshot>",
	.short_help = "Restore instances from snapshots",
	.long_help = "Restore instances from snapshots\n\n"
		     "If --stateful is passed, then the running state will be restored too.",
	.examples = "cell snapshot u1 snap0\n"
		    "    Create the snapshot.\n\n"
		    "cell restore u1 snap0\n"
		    "    Restore the snapshot.",
	.opts = restore_opts,
	.run = run_restore,
	.min_args = 2,
	.max_args = 2,
};
