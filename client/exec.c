/*
 * cell exec: run a command in an instance, as `lxc exec`.
 *
 * Interactive (stdin and stdout terminals, or -t): one pty on the server,
 * websocket "0" both ways, our terminal raw so ^C travels as a byte, and
 * SIGWINCH becomes a window-resize control message.  Non-interactive:
 * stdin, stdout and stderr on "0", "1", "2", kept apart and binary-safe;
 * SIGINT, SIGTERM and friends are forwarded as signal control messages.
 * We exit with the command's exit code (the operation's metadata.return).
 *
 * Lean on purpose, since `cell exec c1 -- true` is a latency target: one
 * POST, whose connection becomes the first websocket, one connection per
 * other websocket, one wait; no client certificate for the local socket.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/api.h"
#include "client/inst.h"
#include "client/ws_io.h"
#include "common/cleanup.h"
#include "common/util.h"

/* The websockets of one session, in the order LXD's client connects them. */
enum { EX_CONTROL, EX_STDIN, EX_STDOUT, EX_STDERR, EX_N };
static const char *const ex_names[EX_N] = { "control", "0", "1", "2" };

struct exec_req {
	bool interactive, no_stdin;
	int width, height;
	json_t *body;
};

struct exec_session {
	struct cli_client *c;
	char *operation;
	json_t *md;                /* the operation's metadata: fds */
	wsc *ws[EX_N];
	bool interactive;
	struct cli_ws_loop loop;
	struct cli_sigs sigs;
	struct cli_tty tty;
};

/* -------------------------------------------------------------- request */

static json_t *command_of(struct cli_args *a)
{
	json_t *cmd = json_array();

	for (int i = 1; cmd && i < a->argc; i++)
		json_array_append_new(cmd, json_string(a->argv[i]));
	return cmd;
}

/* TERM as ours (lxc sends it whatever the mode), then --env on top. */
static int environment_of(struct cli_args *a, json_t **out, cell_error *err)
{
	json_t *env = json_object();
	const char *term = getenv("TERM");
	int rc;

	if (!env)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (term)
		json_object_set_new(env, "TERM", json_string(term));
	if ((rc = cli_exec_parse_env(cli_opt(a, "env"), env, err)) < 0) {
		json_decref(env);
		return rc;
	}
	*out = env;
	return 0;
}

static int ids_of(struct cli_args *a, unsigned *uid, unsigned *gid, cell_error *err)
{
	int rc = 0;

	*uid = *gid = 0;
	if (cli_opt_set(a, "user"))
		rc = cli_parse_id("user", cli_opt(a, "user"), uid, err);
	if (rc == 0 && cli_opt_set(a, "group"))
		rc = cli_parse_id("group", cli_opt(a, "group"), gid, err);
	return rc;
}

static int exec_request(struct cli_args *a, struct exec_req *r, cell_error *err)
{
	const int fds[2] = { STDOUT_FILENO, STDIN_FILENO };
	json_t *env = NULL;
	unsigned uid, gid;
	int rc;

	r->no_stdin = cli_flag(a, "disable-stdin");
	rc = cli_exec_interactive(cli_opt(a, "mode"), cli_flag(a, "force-interactive"),
				  cli_flag(a, "force-noninteractive"), r->no_stdin, isatty(STDIN_FILENO),
				  isatty(STDOUT_FILENO), &r->interactive, err);
	if (rc < 0 || (rc = ids_of(a, &uid, &gid, err)) < 0 || (rc = environment_of(a, &env, err)) < 0)
		return rc;
	r->width = r->height = 0;
	if (r->interactive)
		cli_tty_size(fds, 2, &r->width, &r->height);
	r->body = json_pack("{s:o, s:b, s:b, s:o, s:i, s:i, s:b, s:I, s:I}", "command", command_of(a),
			    "wait-for-websocket", true, "interactive", r->interactive, "environment", env,
			    "width", r->width, "height", r->height, "record-output", false, "user",
			    (json_int_t)uid, "group", (json_int_t)gid);
	if (!r->body)
		return cell_err(err, 500, ENOMEM, "out of memory");
	/* Absent means the server's default (the user's home), as an empty one would. */
	if (cli_opt(a, "cwd") && *cli_opt(a, "cwd"))
		json_object_set_new(r->body, "cwd", json_string(cli_opt(a, "cwd")));
	return 0;
}

/* --------------------------------------------------------------- session */

static void session_free(struct exec_session *s)
{
	cli_ws_loop_free(&s->loop);
	cli_sigs_close(&s->sigs);
	cli_tty_restore(&s->tty);
	for (int i = 0; i < EX_N; i++)
		wsc_free(s->ws[i]);
	json_decref(s->md);
	free(s->operation);
}

static int session_start(struct exec_session *s, const char *name, json_t *body, cell_error *err)
{
	_cleanup_free_ char *path = cli_inst_path(name, "/exec");
	_cleanup_cli_resp_ struct cli_resp r = { 0 };
	int rc;

	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_query(s->c, "POST", path, body, NULL, &r, err)) < 0)
		return rc;
	if (!r.operation)
		return cell_err(err, 502, EPROTO, "The server did not start an operation");
	s->operation = steal_ptr(r.operation);
	s->md = json_incref(json_object_get(r.metadata, "metadata"));
	return 0;
}

static int session_connect(struct exec_session *s, cell_error *err)
{
	for (int i = 0; i < EX_N; i++) {
		if (s->interactive && (i == EX_STDOUT || i == EX_STDERR))
			continue;
		int rc = cli_op_websocket(s->c, s->operation, s->md, ex_names[i], &s->ws[i], err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* In interactive mode ^C is a byte on the pty; these come from elsewhere
 * (kill, a closing terminal) and go to the command, as lxc does. */
static const int ex_forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, 0 };

static int session_signal(void *arg, int signo, cell_error *err)
{
	struct exec_session *s = arg;
	const int fds[2] = { STDOUT_FILENO, STDIN_FILENO };
	int w, h;
	cell_error ignored = { 0 };

	/* The control channel failing must not end the session: output may still flow. */
	if (signo != SIGWINCH)
		cli_ws_send_signal(s->ws[EX_CONTROL], signo, &ignored);
	else if (s->interactive && cli_tty_size(fds, 2, &w, &h))
		cli_ws_send_resize(s->ws[EX_CONTROL], w, h, &ignored);
	return 0;
}

static void stream_setup(struct cli_ws_stream *st, wsc *ws, int in_fd, int out_fd, bool output)
{
	memset(st, 0, sizeof(*st));
	st->ws = ws;
	st->in_fd = in_fd;
	st->out_fd = out_fd;
	st->output = st->essential = output;
	st->eof = CLI_WS_EOF_CLOSE;
	if (in_fd < 0)
		st->in_done = true;
}

static void session_streams(struct exec_session *s, bool no_stdin)
{
	struct cli_ws_loop *l = &s->loop;
	int in = no_stdin ? -1 : STDIN_FILENO;

	l->sigfd = s->sigs.fd;
	l->on_signal = session_signal;
	l->arg = s;
	stream_setup(&l->s[l->n++], s->ws[EX_CONTROL], -1, -1, false);
	if (s->interactive) {
		stream_setup(&l->s[l->n], s->ws[EX_STDIN], in, STDOUT_FILENO, true);
		l->s[l->n++].eof = CLI_WS_EOF_EMPTY;   /* a close would end the output too */
	} else {
		stream_setup(&l->s[l->n++], s->ws[EX_STDIN], in, -1, false);
		stream_setup(&l->s[l->n++], s->ws[EX_STDOUT], -1, STDOUT_FILENO, true);
		stream_setup(&l->s[l->n++], s->ws[EX_STDERR], -1, STDERR_FILENO, true);
	}
	/* -n: the command reads an immediate end of file. */
	if (no_stdin) {
		l->s[1].eof_pending = true;
		l->s[1].eof = CLI_WS_EOF_CLOSE;
	}
}

/* Finish the close handshakes of the output streams (the server may wait
 * for them before it calls the session done), wait for the operation, and
 * only then close the rest: a closed control channel kills the command. */
static int session_finish(struct exec_session *s, int *code, cell_error *err)
{
	_cleanup_json_ json_t *op = NULL;
	json_t *ret;
	int rc;

	for (int i = EX_STDIN; i < EX_N; i++)
		if (s->ws[i] && (s->interactive || i != EX_STDIN) && !wsc_closed(s->ws[i]))
			wsc_close(s->ws[i], WSC_CLOSE_NORMAL, NULL, 1000, NULL);
	rc = cli_wait(s->c, s->operation, false, &op, err);
	for (int i = 0; i < EX_N; i++)
		if (s->ws[i])
			wsc_send_close(s->ws[i], WSC_CLOSE_NORMAL, NULL, NULL);
	if (rc < 0)
		return rc;
	ret = json_object_get(json_object_get(op, "metadata"), "return");
	if (!json_is_integer(ret))
		return cell_err(err, 502, EPROTO, "The server did not report the command's exit code");
	*code = (int)json_integer_value(ret);
	return 0;
}

static int exec_session_run(struct cli_ctx *ctx, struct cli_args *a, int *code, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = { 0 };
	_cleanup_json_ json_t *body = NULL;
	struct exec_session s = { .sigs.fd = -1, .loop.sigfd = -1 };
	struct exec_req r = { 0 };
	int rc;

	if ((rc = exec_request(a, &r, err)) < 0)
		return rc;
	body = r.body;
	if ((rc = cli_obj_open(ctx, a->argv[0], "Missing instance name", &o, err)) < 0)
		return rc;
	s.c = o.c;
	s.interactive = r.interactive;
	rc = session_start(&s, o.name, body, err);
	if (rc == 0)
		rc = session_connect(&s, err);
	/* From here the command runs and signals are its own: collected, never
	 * acted on.  (Until now ^C ends us, and the server the command.) */
	if (rc == 0)
		rc = cli_sigs_open(&s.sigs, ex_forwarded, err);
	if (rc == 0 && r.interactive)
		rc = cli_tty_raw(&s.tty, STDIN_FILENO, err);
	if (rc == 0) {
		session_streams(&s, r.no_stdin);
		rc = cli_ws_loop_run(&s.loop, err);
	}
	cli_tty_restore(&s.tty);
	if (rc == 0)
		rc = session_finish(&s, code, err);
	session_free(&s);
	return rc;
}

static int run_exec(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	int code = 0, rc = exec_session_run(ctx, a, &code, err);

	if (rc < 0)
		return rc;
	if (code == 0)
		return 0;
	/* The command's own code is ours: past cli_main, which only knows 0 and 1.
	 * Everything of ours is freed by now; the parser's state stays reachable. */
	fflush(stdout);
	fflush(stderr);
	exit(code < 0 || code > 255 ? 1 : code);
}

static const struct cli_opt exec_opts[] = {
	{ "cwd", 0, CLI_OPT_STRING, "Directory to run the command in (default /root)", NULL },
	{ "disable-stdin", 'n', CLI_OPT_BOOL, "Disable stdin (reads from /dev/null)", NULL },
	{ "env", 0, CLI_OPT_LIST, "Environment variable to set (e.g. HOME=/home/foo)", NULL },
	{ "force-interactive", 't', CLI_OPT_BOOL, "Force pseudo-terminal allocation", NULL },
	{ "force-noninteractive", 'T', CLI_OPT_BOOL, "Disable pseudo-terminal allocation", NULL },
	{ "group", 0, CLI_OPT_STRING, "Group ID to run the command as (default 0)", NULL },
	{ "mode", 0, CLI_OPT_STRING, "Override the terminal mode (auto, interactive or non-interactive)",
	  "auto" },
	{ "user", 0, CLI_OPT_STRING, "User ID to run the command as (default 0)", NULL },
	{ 0 },
};

const struct cli_command cli_cmd_exec = {
	.name = "exec",
	.usage = "[<remote>:]<instance> [--] <command line>",
	.short_help = "Execute commands in instances",
	.long_help = "Execute commands in instances\n\n"
		     "The command is executed directly using exec, so there is no shell and\n"
		     "shell patterns (variables, file redirects, ...) won't be understood.\n"
		     "If you need a shell environment you need to execute the shell\n"
		     "executable, passing the shell commands as arguments, for example:\n\n"
		     "  cell exec <instance> -- sh -c \"cd /tmp && pwd\"\n\n"
		     "Mode defaults to non-interactive, interactive mode is selected if both\n"
		     "stdin AND stdout are terminals (stderr is ignored).",
	.opts = exec_opts,
	.run = run_exec,
	.min_args = 2,
	.max_args = -1,
};
