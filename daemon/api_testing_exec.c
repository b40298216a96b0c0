/*
 * /internal/testing/exec: exec sessions on host processes, so the session
 * code (exec_io.c) is exercised end to end before containers exist.  The
 * body is LXD's exec body (command, environment, interactive,
 * wait-for-websocket, record-output, width, height, cwd).  Registered only
 * when CELL_TEST_HOOKS=1 is in celld's environment.
 *
 * The process is spawned the way `celld forkexec` must behave: it blocks on
 * the start gate (fd 3) and only then execs the command, so a missing
 * command exits 127 and a non-executable one 126 after the gate opens.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "daemon/daemon.h"
#include "daemon/exec_io.h"
#include "daemon/http.h"
#include "daemon/operations.h"
#include "daemon/router.h"

/* Wait for one byte on fd 3, then become the command ("$@"). */
static const char texec_shim[] = "IFS= read -r _ <&3 || exit 125; exec 3<&-; exec \"$@\"";

struct texec_req {
	char **argv;
	char **envp;
	const char *cwd;
	char tty[64];
};

static void texec_req_free(struct texec_req *r)
{
	cell_strvfreep(&r->argv);
	cell_strvfreep(&r->envp);
}

static int texec_argv(json_t *cmd, struct texec_req *r, cell_error *err)
{
	size_t n = json_array_size(cmd), i;
	json_t *v;

	if (!n)
		return cell_err(err, 400, EINVAL, "Command is empty");
	r->argv = calloc(n + 5, sizeof(char *));
	if (!r->argv)
		return cell_err(err, 500, ENOMEM, "out of memory");
	r->argv[0] = strdup("sh");
	r->argv[1] = strdup("-c");
	r->argv[2] = strdup(texec_shim);
	r->argv[3] = strdup("sh");
	json_array_foreach(cmd, i, v) {
		if (!json_is_string(v))
			return cell_err(err, 400, EINVAL, "Command must be a list of strings");
		r->argv[4 + i] = strdup(json_string_value(v));
	}
	return 0;
}

static int texec_envp(json_t *env, struct texec_req *r, cell_error *err)
{
	const char *k;
	json_t *v;
	size_t i = 0;

	r->envp = calloc(json_object_size(env) + 2, sizeof(char *));
	if (!r->envp)
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_object_foreach(env, k, v) {
		if (!json_is_string(v))
			return cell_err(err, 400, EINVAL, "Environment values must be strings");
		r->envp[i++] = xasprintf("%s=%s", k, json_string_value(v));
	}
	if (!json_object_get(env, "PATH"))
		r->envp[i++] = strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	return 0;
}

/* A host pty; the containers side opens one in the container's devpts. */
static int texec_pty(struct exec_opts *o, struct texec_req *r, cell_error *err)
{
	_cleanup_close_ int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, r->tty, sizeof(r->tty)))
		return cell_err_sys(err, 500, errno, "open pty");
	o->pty_slave = open(r->tty, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (o->pty_slave < 0)
		return cell_err_sys(err, 500, errno, "open %s", r->tty);
	o->pty_master = steal_fd(m);
	return 0;
}

static int texec_file_actions(posix_spawn_file_actions_t *fa, const struct exec_child *c,
			      const struct texec_req *r)
{
	int rc = 0;

	if (r->tty[0]) {
		/* Opened by path after setsid(): the pty becomes the controlling tty. */
		rc |= posix_spawn_file_actions_addopen(fa, 0, r->tty, O_RDWR, 0);
		rc |= posix_spawn_file_actions_adddup2(fa, 0, 1);
		rc |= posix_spawn_file_actions_adddup2(fa, 0, 2);
	} else {
		for (int i = 0; i < 3; i++)
			rc |= posix_spawn_file_actions_adddup2(fa, c->stdio[i], i);
	}
	rc |= posix_spawn_file_actions_adddup2(fa, c->gate, 3);
	rc |= posix_spawn_file_actions_addclosefrom_np(fa, 4);   /* nothing of celld's leaks */
	if (r->cwd)
		rc |= posix_spawn_file_actions_addchdir_np(fa, r->cwd);
	return rc;
}

static int texec_spawn(const struct exec_child *c, const struct texec_req *r, pid_t *pid,
		       cell_error *err)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, defaults;
	short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
	int rc;

	sigemptyset(&none);
	sigfillset(&defaults);   /* celld ignores SIGPIPE; the command must not inherit that */
	if (r->tty[0])
		flags |= POSIX_SPAWN_SETSID;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	rc = texec_file_actions(&fa, c, r);
	rc = rc ? rc : posix_spawnattr_setflags(&at, flags);
	rc = rc ? rc : posix_spawnattr_setsigmask(&at, &none);
	rc = rc ? rc : posix_spawnattr_setsigdefault(&at, &defaults);
	rc = rc ? rc : posix_spawn(pid, "/bin/sh", &fa, &at, r->argv, r->envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return rc ? cell_err_sys(err, 500, rc, "spawn %s", r->argv[4]) : 0;
}

static int texec_opts(json_t *body, struct exec_opts *o, struct texec_req *r, char **logdir,
		      cell_error *err)
{
	json_t *cwd = json_object_get(body, "cwd");

	o->interactive = json_is_true(json_object_get(body, "interactive"));
	o->wait_for_ws = json_is_true(json_object_get(body, "wait-for-websocket"));
	o->record_output = json_is_true(json_object_get(body, "record-output"));
	o->width = (unsigned)json_integer_value(json_object_get(body, "width"));
	o->height = (unsigned)json_integer_value(json_object_get(body, "height"));
	o->pty_master = o->pty_slave = -1;
	if (o->record_output && o->wait_for_ws)
		return cell_err(err, 400, EINVAL,
				"Cannot use \"record-output\" in combination with \"wait-for-websocket\"");
	if (o->interactive && o->record_output)
		return cell_err(err, 400, EINVAL,
				"Cannot use \"interactive\" in combination with \"record-output\"");
	*logdir = celld_path("logs/testing-exec");
	o->record_dir = *logdir;
	o->record_url = "/internal/testing/exec/logs";
	r->cwd = json_string_value(cwd);
	if (texec_argv(json_object_get(body, "command"), r, err) < 0 ||
	    texec_envp(json_object_get(body, "environment"), r, err) < 0)
		return -EINVAL;
	return o->interactive && o->wait_for_ws ? texec_pty(o, r, err) : 0;
}

static void texec_post(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	_cleanup_free_ char *logdir = NULL;
	struct texec_req r = { 0 };
	struct exec_opts o = { 0 };
	struct exec_session *s;
	struct exec_child child;
	struct operation *op;
	cell_error err = { 0 };
	pid_t pid;

	if (http_req_json(req, &body, &err) < 0 || texec_opts(body, &o, &r, &logdir, &err) < 0 ||
	    exec_session_new(&o, "Executing command",
			     json_pack("{s:[s]}", "testing", "/internal/testing/exec"),
			     json_pack("{s:O?, s:O?, s:b}", "command", json_object_get(body, "command"),
				       "environment", json_object_get(body, "environment"),
				       "interactive", o.interactive),
			     &op, &s, &child, &err) < 0) {
		/* exec_session_new took the pty, if texec_opts got that far. */
		texec_req_free(&r);
		return resp_from_err(resp, &err);
	}
	if (texec_spawn(&child, &r, &pid, &err) < 0) {
		exec_session_failed(s, err.msg);
	} else if (exec_session_started(s, pid, -1, &err) == 0) {
		texec_req_free(&r);
		return resp_async(resp, op);
	}
	texec_req_free(&r);
	resp_from_err(resp, &err);
}

void api_testing_exec_register(void)
{
	const char *on = getenv("CELL_TEST_HOOKS");
	if (!on || strcmp(on, "1"))
		return;
	router_add(&(struct route){ .pattern = "/internal/testing/exec",
				    .methods = { { HTTP_POST, texec_post, 0, NULL } } });
}
