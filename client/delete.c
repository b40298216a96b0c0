/*
 * cell delete: instances and snapshots, as `lxc delete`.  Everything named
 * is checked to exist before anything is deleted; a running instance is
 * only stopped (forcibly) and deleted with --force.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/api.h"
#include "client/inst.h"
#include "common/cleanup.h"
#include "common/util.h"

enum { STATUS_STOPPED = 102 };

struct victim {
	struct cli_obj o;
	char *path;
	json_t *obj;   /* as GET returned it */
};

static void victims_free(struct victim *v, int n)
{
	for (int i = 0; v && i < n; i++) {
		cli_obj_free(&v[i].o);
		free(v[i].path);
		json_decref(v[i].obj);
	}
	free(v);
}

static int fetch(struct cli_ctx *ctx, const char *arg, struct victim *v, cell_error *err)
{
	int rc = cli_obj_open(ctx, arg, "Missing instance name", &v->o, err);

	if (rc < 0)
		return rc;
	if (!(v->path = cli_inst_path(v->o.name, NULL)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_get(v->o.c, v->path, &v->obj, NULL, err)) < 0)
		return cell_err_wrap(err, rc, "Failed checking instance%s exists \"%s:%s\"",
				     cli_is_snapshot(v->o.name) ? " snapshot" : "", v->o.remote, v->o.name);
	return 0;
}

static int confirm(const char *name, cell_error *err)
{
	_cleanup_free_ char *prompt = xasprintf("Remove %s (yes/no): ", name);
	_cleanup_free_ char *answer = prompt ? cli_prompt(prompt, false) : NULL;

	if (!answer || strcasecmp(answer, "yes"))
		return cell_err(err, 400, ECANCELED, "User aborted delete operation");
	return 0;
}

/* A running instance: stop it hard first; an ephemeral one is then already gone. */
static int stop_first(struct victim *v, bool force, bool *gone, cell_error *err)
{
	json_int_t code = json_integer_value(json_object_get(v->obj, "status_code"));
	_cleanup_free_ char *state = NULL;
	_cleanup_json_ json_t *body = NULL;
	int rc;

	*gone = false;
	if (cli_is_snapshot(v->o.name) || code == 0 || code == STATUS_STOPPED)
		return 0;
	if (!force)
		return cell_err(err, 400, EBUSY, "The instance is currently running, stop it first or pass --force");
	body = json_pack("{s:s,s:i,s:b,s:b}", "action", "stop", "timeout", -1, "force", true, "stateful", false);
	if (!body || !(state = cli_inst_path(v->o.name, "/state")))
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_query_wait(v->o.c, "PUT", state, body, NULL, NULL, err)) < 0)
		return cell_err_wrap(err, rc, "Stopping the instance failed");
	*gone = json_is_true(json_object_get(v->obj, "ephemeral"));
	return 0;
}

static int run_delete(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	struct victim *v = calloc((size_t)a->argc, sizeof(*v));
	int rc = v ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
	bool gone;

	for (int i = 0; rc == 0 && i < a->argc; i++)
		rc = fetch(ctx, a->argv[i], &v[i], err);
	for (int i = 0; rc == 0 && i < a->argc; i++) {
		if (cli_flag(a, "interactive") && (rc = confirm(v[i].o.name, err)) < 0)
			break;
		if ((rc = stop_first(&v[i], cli_flag(a, "force"), &gone, err)) < 0 || gone)
			continue;
		rc = cli_query_wait(v[i].o.c, "DELETE", v[i].path, NULL, NULL, NULL, err);
	}
	victims_free(v, a->argc);
	return rc;
}

static const struct cli_opt delete_opts[] = {
	{ "force", 'f', CLI_OPT_BOOL, "Force the removal of running instances", NULL },
	{ "interactive", 'i', CLI_OPT_BOOL, "Require user confirmation", NULL },
	{ 0 },
};

const struct cli_command cli_cmd_delete = {
	.name = "delete",
	.aliases = "rm",
	.usage = "[<remote>:]<instance>[/<snapshot>] [[<remote>:]<instance>[/<snapshot>]...]",
	.short_help = "Delete instances and snapshots",
	.opts = delete_opts,
	.run = run_delete,
	.min_args = 1,
	.max_args = -1,
};
