/*
 * cell rename / cell move on one remote: POST /1.0/instances/<name> (or
 * .../snapshots/<snap>) with the new name, as `lxc rename` and a local
 * `lxc move` do.  Moving between remotes is migration, not a rename.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/api.h"
#include "client/conf.h"
#include "client/inst.h"
#include "common/cleanup.h"
#include "common/util.h"

/* Same-parent snapshot rename: "c1/a" -> "c1/b". */
static int rename_snapshot(struct cli_obj *src, const char *dst, cell_error *err)
{
	const char *ss = strchr(src->name, '/'), *ds = strchr(dst, '/');
	_cleanup_free_ char *path = cli_inst_path(src->name, NULL);
	_cleanup_json_ json_t *body = NULL;

	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((size_t)(ss - src->name) != (ds ? (size_t)(ds - dst) : strlen(dst)) || strncmp(src->name, dst, (size_t)(ss - src->name)))
		return cell_err(err, 400, EINVAL, "Invalid new snapshot name, parent must be the same as source");
	if (!ds || !ds[1])
		return cell_err(err, 400, EINVAL, "Invalid new snapshot name");
	if (!(body = json_pack("{s:s,s:b,s:n}", "name", ds + 1, "migration", false, "target")))
		return cell_err(err, 500, ENOMEM, "out of memory");
	return cli_query_wait(src->c, "POST", path, body, NULL, NULL, err);
}

static int rename_instance(struct cli_obj *src, const char *dst, cell_error *err)
{
	_cleanup_free_ char *path = cli_inst_path(src->name, NULL);
	_cleanup_json_ json_t *body = json_pack("{s:s,s:b,s:b,s:b,s:b,s:n,s:s,s:s,s:b}", "name", dst, "migration", false,
						"live", false, "instance_only", false, "container_only", false,
						"target", "pool", "", "project", "", "allow_inconsistent", false);

	if (!path || !body)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return cli_query_wait(src->c, "POST", path, body, NULL, NULL, err);
}

static int local_move(struct cli_ctx *ctx, const char *from, const char *to, cell_error *err)
{
	_cleanup_obj_ struct cli_obj src = {0};
	_cleanup_free_ char *dst_remote = NULL;
	_cleanup_free_ char *dst = NULL;
	struct cli_conf *conf;
	int rc;

	if ((rc = cli_ctx_conf(ctx, &conf, err)) < 0 || (rc = cli_conf_parse_remote(conf, to, &dst_remote, &dst, err)) < 0)
		return rc;
	if ((rc = cli_obj_open(ctx, from, "You must specify a source instance name", &src, err)) < 0)
		return rc;
	if (strcmp(src.remote, dst_remote))
		return cell_err(err, 501, ENOTSUP, "Moving instances between remotes is not supported yet");
	if (!*dst)
		return cell_err(err, 400, EINVAL, "You must specify a destination instance name");
	if (cli_is_snapshot(src.name))
		return rename_snapshot(&src, dst, err);
	return rename_instance(&src, dst, err);
}

static int run_rename(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_free_ char *sr = NULL;
	_cleanup_free_ char *sn = NULL;
	_cleanup_free_ char *dr = NULL;
	_cleanup_free_ char *dn = NULL;
	_cleanup_free_ char *to = NULL;
	struct cli_conf *conf;
	int rc;

	if ((rc = cli_ctx_conf(ctx, &conf, err)) < 0 || (rc = cli_conf_parse_remote(conf, a->argv[0], &sr, &sn, err)) < 0 ||
	    (rc = cli_conf_parse_remote(conf, a->argv[1], &dr, &dn, err)) < 0)
		return rc;
	/* The new name lives on the source's remote; naming another one is an error. */
	if (strcmp(sr, dr) && strchr(a->argv[1], ':'))
		return cell_err(err, 400, EINVAL, "Can't specify a different remote for rename");
	if (!(to = xasprintf("%s:%s", sr, a->argv[1])))
		return cell_err(err, 500, ENOMEM, "out of memory");
	return local_move(ctx, a->argv[0], strcmp(sr, dr) ? to : a->argv[1], err);
}

static int run_move(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	return local_move(ctx, a->argv[0], a->argc > 1 ? a->argv[1] : a->argv[0], err);
}

const struct cli_command cli_cmd_rename = {
	.name = "rename",
	.usage = "[<remote>:]<instance>[/<snapshot>] <instance>[/<snapshot>]",
	.short_help = "Rename instances and snapshots",
	.run = run_rename,
	.min_args = 2,
	.max_args = 2,
};

const struct cli_command cli_cmd_move = {
	.name = "move",
	.aliases = "mv",
	.usage = "[<remote>:]<instance>[/<snapshot>] [<remote>:][<instance>[/<snapshot>]]",
	.short_help = "Move instances within or in between servers",
	.examples = "cell move <old name> <new name>\n"
		    "    Rename a local instance.\n\n"
		    "cell move <instance>/<old snapshot name> <instance>/<new snapshot name>\n"
		    "    Rename a snapshot.",
	.run = run_move,
	.min_args = 1,
	.max_args = 2,
};
