/*
 * cell console: attach to an instance's console, as `lxc console`;
 * ctrl+a q detaches.  --show-log prints the console log instead.
 *
 * The console operation has websockets "0" (the console, both ways) and
 * "control" (window-resize); closing "control" is how a client detaches.
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

struct console {
	struct cli_client *c;
	char *operation;
	json_t *md;
	wsc *control, *data;
	struct cli_ws_loop loop;
	struct cli_sigs sigs;
	struct cli_tty tty;
	struct cli_escape esc;
};

static int show_log(struct cli_obj *o, cell_error *err)
{
	_cleanup_free_ char *path = cli_inst_path(o->name, "/console");
	_cleanup_httpc_resp_ struct httpc_resp h = { 0 };
	_cleanup_cli_resp_ struct cli_resp r = { 0 };
	int rc;

	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_raw(o->c, "GET", path, NULL, NULL, 0, &h, err)) < 0)
		return rc;
	if (h.status != 200) {
		rc = cli_decode(&h, &r, err);   /* the server's error */
		return rc < 0 ? rc : cell_err(err, 502, EPROTO, "HTTP %d", h.status);
	}
	printf("\nConsole log:\n\n");
	fwrite(h.body.buf ? h.body.buf : "", 1, h.body.len, stdout);
	printf("\n");
	return 0;
}

static void console_free(struct console *k)
{
	cli_ws_loop_free(&k->loop);
	cli_sigs_close(&k->sigs);
	cli_tty_restore(&k->tty);
	wsc_free(k->control);
	wsc_free(k->data);
	json_decref(k->md);
	free(k->operation);
}

static int console_start(struct console *k, const char *name, cell_error *err)
{
	const int fds[2] = { STDOUT_FILENO, STDIN_FILENO };
	_cleanup_free_ char *path = cli_inst_path(name, "/console");
	_cleanup_json_ json_t *body = NULL;
	_cleanup_cli_resp_ struct cli_resp r = { 0 };
	int w = 0, h = 0, rc;

	cli_tty_size(fds, 2, &w, &h);
	body = json_pack("{s:i, s:i, s:s}", "width", w, "height", h, "type", "console");
	if (!path || !body)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_query(k->c, "POST", path, body, NULL, &r, err)) < 0)
		return rc;
	if (!r.operation)
		return cell_err(err, 502, EPROTO, "The server did not start an operation");
	k->operation = steal_ptr(r.operation);
	k->md = json_incref(json_object_get(r.metadata, "metadata"));
	/* Control first, as LXD's client: the console is live once "0" connects. */
	rc = cli_op_websocket(k->c, k->operation, k->md, "control", &k->control, err);
	return rc < 0 ? rc : cli_op_websocket(k->c, k->operation, k->md, "0", &k->data, err);
}

static size_t console_filter(void *arg, const char *in, size_t len, char *out, bool *stop)
{
	struct console *k = arg;
	return cli_escape_filter(&k->esc, in, len, out, stop);
}

/* A window change is passed on; anything that would end us detaches
 * cleanly instead, so the terminal is restored. */
static int console_signal(void *arg, int signo, cell_error *err)
{
	struct console *k = arg;
	const int fds[2] = { STDOUT_FILENO, STDIN_FILENO };
	cell_error ignored = { 0 };
	int w, h;

	if (signo != SIGWINCH)
		k->loop.stop = true;
	else if (cli_tty_size(fds, 2, &w, &h))
		cli_ws_send_resize(k->control, w, h, &ignored);
	return 0;
}

static void console_streams(struct console *k)
{
	struct cli_ws_loop *l = &k->loop;

	l->sigfd = k->sigs.fd;
	l->on_signal = console_signal;
	l->filter = console_filter;
	l->arg = k;
	l->n = 2;
	l->s[0] = (struct cli_ws_stream){ .ws = k->control, .in_fd = -1, .out_fd = -1, .in_done = true };
	l->s[1] = (struct cli_ws_stream){ .ws = k->data, .in_fd = STDIN_FILENO, .out_fd = STDOUT_FILENO,
					  .eof = CLI_WS_EOF_NONE, .output = true, .essential = true };
}

/* Detach: close the control channel, let the server end the console and
 * its stream, then collect the operation. */
static int console_detach(struct console *k, cell_error *err)
{
	struct cli_ws_stream *d = &k->loop.s[1];

	/* What was typed just before ctrl+a q, in the same read. */
	if (d->pending && !d->ended)
		wsc_send(k->data, WSC_BINARY, d->buf, d->pending, NULL);
	wsc_close(k->control, WSC_CLOSE_NORMAL, "Detaching from console", 1000, NULL);
	if (!wsc_closed(k->data))
		wsc_close(k->data, WSC_CLOSE_NORMAL, NULL, 1000, NULL);
	return cli_wait(k->c, k->operation, false, NULL, err);
}

static const int console_sigs[] = { SIGWINCH, SIGINT, SIGTERM, SIGHUP, SIGQUIT, 0 };

static int console_attach(struct cli_obj *o, cell_error *err)
{
	struct console k = { .c = o->c, .sigs.fd = -1, .loop.sigfd = -1 };
	int rc = cli_sigs_open(&k.sigs, console_sigs, err);

	if (rc == 0)
		rc = console_start(&k, o->name, err);
	if (rc == 0)
		rc = cli_tty_raw(&k.tty, STDIN_FILENO, err);
	if (rc == 0) {
		/* Raw already: the terminal no longer turns \n into \r\n. */
		printf("To detach from the console, press: <ctrl>+a q\n\r");
		fflush(stdout);
		console_streams(&k);
		rc = cli_ws_loop_run(&k.loop, err);
	}
	if (rc == 0)
		rc = console_detach(&k, err);
	console_free(&k);
	return rc;
}

static int run_console(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = { 0 };
	const char *type = cli_opt(a, "type");
	int rc;

	if (type && strcmp(type, "console"))
		return cell_err(err, 400, EINVAL, "Unknown console type \"%s\": only \"console\" is supported",
				type);
	if ((rc = cli_obj_open(ctx, a->argv[0], "Missing instance name", &o, err)) < 0)
		return rc;
	if (cli_flag(a, "show-log"))
		return show_log(&o, err);
	return console_attach(&o, err);
}

static const struct cli_opt console_opts[] = {
	{ "show-log", 0, CLI_OPT_BOOL, "Retrieve the instance's console log", NULL },
	{ "type", 't', CLI_OPT_STRING, "Type of connection to establish: 'console' for serial console", "console" },
	{ 0 },
};

const struct cli_command cli_cmd_console = {
	.name = "console",
	.usage = "[<remote>:]<instance>",
	.short_help = "Attach to instance consoles",
	.long_help = "Attach to instance consoles\n\n"
		     "This command allows you to interact with the boot console of an instance\n"
		     "as well as retrieve past log entries from it.",
	.opts = console_opts,
	.run = run_console,
	.min_args = 1,
	.max_args = 1,
};
