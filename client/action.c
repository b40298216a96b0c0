/*
 * cell start/stop/restart/pause: PUT /1.0/instances/<name>/state, as
 * `lxc start` and friends.  Every request is sent before any operation is
 * waited on, so a batch (--all, or several names) runs in parallel on the
 * daemon; failures are then reported per instance as LXD does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/api.h"
#include "client/inst.h"
#include "common/cleanup.h"
#include "common/util.h"

enum { STATUS_RUNNING = 103, STATUS_STOPPED = 102, STATUS_FROZEN = 110 };

struct job {
	char *arg;          /* as the user wrote it (or "remote:name" for --all) */
	struct cli_obj o;
	char *op;           /* operation to wait on, once sent */
	int rc;
	cell_error err;
};

struct batch {
	struct job *jobs;
	size_t n;
};

static void batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free(b->jobs[i].arg);
		free(b->jobs[i].op);
		cli_obj_free(&b->jobs[i].o);
	}
	free(b->jobs);
}
#define _cleanup_batch_ __attribute__((cleanup(batch_free)))

static int batch_add(struct batch *b, char *arg, cell_error *err)
{
	struct job *nj = realloc(b->jobs, (b->n + 1) * sizeof(*nj));

	if (!nj || !arg) {
		free(arg);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	b->jobs = nj;
	memset(&nj[b->n], 0, sizeof(*nj));
	nj[b->n++].arg = arg;
	return 0;
}

/* The verb as sent: pause is "freeze", start on a frozen instance "unfreeze". */
static const char *action_of(const struct cli_args *a)
{
	const char *verb = strrchr(a->path, ' ') + 1;

	return !strcmp(verb, "pause") ? "freeze" : verb;
}

/* start: resume a frozen instance, and restore saved state unless --stateless. */
static int start_body(struct job *j, const struct cli_args *a, const char **action, bool *stateful)
{
	_cleanup_free_ char *path = cli_inst_path(j->o.name, NULL);
	_cleanup_json_ json_t *inst = NULL;
	int rc;

	if (!path)
		return cell_err(&j->err, 500, ENOMEM, "out of memory");
	if ((rc = cli_get(j->o.c, path, &inst, NULL, &j->err)) < 0)
		return rc;
	if (json_integer_value(json_object_get(inst, "status_code")) == STATUS_FROZEN)
		*action = "unfreeze";
	else if (json_is_true(json_object_get(inst, "stateful")) && !cli_flag(a, "stateless"))
		*stateful = true;
	return 0;
}

static int send_one(struct cli_ctx *ctx, struct job *j, const struct cli_args *a)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *body = NULL;
	_cleanup_cli_resp_ struct cli_resp r = {0};
	const char *action = action_of(a), *timeout = cli_opt(a, "timeout");
	bool stateful = !strcmp(action, "stop") && cli_flag(a, "stateful");
	int rc;

	if ((rc = cli_obj_open(ctx, j->arg, NULL, &j->o, &j->err)) < 0)
		return rc;
	if (!*j->o.name)
		return cell_err(&j->err, 400, EINVAL, "Must supply instance name for: \"%s\"", j->arg);
	if (!strcmp(action, "start") && (rc = start_body(j, a, &action, &stateful)) < 0)
		return rc;
	body = json_pack("{s:s,s:I,s:b,s:b}", "action", action, "timeout", (json_int_t)(timeout ? atoll(timeout) : 0),
			 "force", cli_flag(a, "force"), "stateful", stateful);
	if (!body || !(path = cli_inst_path(j->o.name, "/state")))
		return cell_err(&j->err, 500, ENOMEM, "out of memory");
	if ((rc = cli_query(j->o.c, "PUT", path, body, NULL, &r, &j->err)) < 0)
		return rc;
	j->op = steal_ptr(r.operation);
	return 0;
}

static int wait_one(struct job *j)
{
	int rc = j->op ? cli_wait(j->o.c, j->op, true, NULL, &j->err) : 0;

	if (rc < 0) {
		char msg[CELL_ERR_MSG_MAX];
		snprintf(msg, sizeof(msg), "%s", j->err.msg);
		cell_err(&j->err, j->err.status, EIO, "%s\nTry `cell info --show-log %s` for more info", msg, j->arg);
	}
	return rc;
}

/* --all: every instance of each remote named (default: the default remote) not already there. */
static int collect_all(struct cli_ctx *ctx, const struct cli_args *a, struct batch *b, cell_error *err)
{
	const char *verb = strrchr(a->path, ' ') + 1;
	int n = a->argc ? a->argc : 1, rc;

	for (int i = 0; i < n; i++) {
		_cleanup_obj_ struct cli_obj o = {0};
		_cleanup_json_ json_t *list = NULL;
		json_t *inst;
		size_t k;

		if ((rc = cli_obj_open(ctx, a->argc ? a->argv[i] : NULL, NULL, &o, err)) < 0)
			return rc;
		if (*o.name)
			return cell_err(err, 400, EINVAL, "Both --all and instance name given");
		if ((rc = cli_get(o.c, "/1.0/instances?recursion=1", &list, NULL, err)) < 0)
			return rc;
		json_array_foreach(list, k, inst) {
			json_int_t code = json_integer_value(json_object_get(inst, "status_code"));
			if ((!strcmp(verb, "start") && code == STATUS_RUNNING) || (!strcmp(verb, "stop") && code == STATUS_STOPPED))
				continue;
			rc = batch_add(b, xasprintf("%s:%s", o.remote, json_string_value(json_object_get(inst, "name")) ?: ""), err);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* One instance fails with its own message; a batch lists each failure first. */
static int report(struct batch *b, const struct cli_args *a, cell_error *err)
{
	bool failed = false;

	if (b->n == 1 && b->jobs[0].rc < 0)
		return cell_err(err, b->jobs[0].err.status, EIO, "%s", b->jobs[0].err.msg);
	for (size_t i = 0; i < b->n; i++) {
		const char *m = b->jobs[i].err.msg;
		if (b->jobs[i].rc == 0)
			continue;
		failed = true;
		fprintf(stderr, "%s: error: %.*s\n", b->jobs[i].arg, (int)strcspn(m, "\n"), m);
		for (m = strchr(m, '\n'); m; m = strchr(m + 1, '\n'))
			fprintf(stderr, "%s: %.*s\n", b->jobs[i].arg, (int)strcspn(m + 1, "\n"), m + 1);
	}
	if (!failed)
		return 0;
	fputc('\n', stderr);
	return cell_err(err, 400, EIO, "Some instances failed to %s", strrchr(a->path, ' ') + 1);
}

static int run_action(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_batch_ struct batch b = {0};
	int rc = 0;

	if (cli_flag(a, "all")) {
		rc = collect_all(ctx, a, &b, err);
	} else if (!a->argc) {
		cli_print_help(stdout, a->cmd, a->path);
		return 0;
	}
	for (int i = 0; rc == 0 && !cli_flag(a, "all") && i < a->argc; i++)
		rc = batch_add(&b, strdup(a->argv[i]), err);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < b.n; i++)
		b.jobs[i].rc = send_one(ctx, &b.jobs[i], a);
	for (size_t i = 0; i < b.n; i++)
		if (b.jobs[i].rc == 0)
			b.jobs[i].rc = wait_one(&b.jobs[i]);
	return report(&b, a, err);
}

static const struct cli_opt start_opts[] = {
	{ "all", 0, CLI_OPT_BOOL, "Run against all instances", NULL },
	{ "stateless", 0, CLI_OPT_BOOL, "Ignore the instance state", NULL },
	{ 0 },
};

static const struct cli_opt stop_opts[] = {
	{ "all", 0, CLI_OPT_BOOL, "Run against all instances", NULL },
	{ "force", 'f', CLI_OPT_BOOL, "Force the instance to shutdown", NULL },
	{ "stateful", 0, CLI_OPT_BOOL, "Store the instance state", NULL },
	{ "timeout", 0, CLI_OPT_STRING, "Time to wait for the instance before killing it", "-1" },
	{ 0 },
};

static const struct cli_opt restart_opts[] = {
	{ "all", 0, CLI_OPT_BOOL, "Run against all instances", NULL },
	{ "force", 'f', CLI_OPT_BOOL, "Force the instance to shutdown", NULL },
	{ "timeout", 0, CLI_OPT_STRING, "Time to wait for the instance before killing it", "-1" },
	{ 0 },
};

static const struct cli_opt pause_opts[] = {
	{ "all", 0, CLI_OPT_BOOL, "Run against all instances", NULL },
	{ 0 },
};

#define ACTION_USAGE "[<remote>:]<instance> [[<remote>:]<instance>...]"

const struct cli_command cli_cmd_start = {
	.name = "start", .usage = ACTION_USAGE, .short_help = "Start instances",
	.opts = start_opts, .run = run_action, .max_args = -1,
};

const struct cli_command cli_cmd_stop = {
	.name = "stop", .usage = ACTION_USAGE, .short_help = "Stop instances",
	.opts = stop_opts, .run = run_action, .max_args = -1,
};

const struct cli_command cli_cmd_restart = {
	.name = "restart", .usage = ACTION_USAGE, .short_help = "Restart instances",
	.long_help = "Restart instances\n\n"
		     "The opposite of \"cell pause\" is \"cell start\".",
	.opts = restart_opts, .run = run_action, .max_args = -1,
};

const struct cli_command cli_cmd_pause = {
	.name = "pause", .usage = ACTION_USAGE, .short_help = "Pause instances",
	.opts = pause_opts, .run = run_action, .max_args = -1,
};
