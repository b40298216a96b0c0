/*
 * What `cell exec` and `cell console` share: the websockets of an
 * operation, one poll() loop moving bytes between local fds and those
 * websockets, signals read in that loop (signalfd, never a handler), the
 * control channel's messages and the local terminal.
 *
 * The loop is single-threaded and never blocks on one direction while the
 * other could deadlock it: input is read only once the previous chunk has
 * been sent, and a chunk is sent only when the socket polls writable, so a
 * command that stops reading its stdin never stops its output reaching us.
 */
#ifndef CELL_CLIENT_WS_IO_H
#define CELL_CLIENT_WS_IO_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <termios.h>
#include <jansson.h>

#include "client/api.h"
#include "common/error.h"
#include "common/ws_client.h"

/* ---- websockets of an operation ---- */

/* Connect the websocket named `name` of an operation whose metadata holds
 * "fds": {name: secret}.  The first call reuses the connection the POST
 * came back on (wsc_upgrade takes it), later ones open their own. */
int cli_op_websocket(struct cli_client *c, const char *operation, json_t *op_md, const char *name,
		     wsc **out, cell_error *err);

/* LXD's control messages. */
int cli_ws_send_resize(wsc *control, int width, int height, cell_error *err);
int cli_ws_send_signal(wsc *control, int signo, cell_error *err);

/* ---- the loop ---- */

enum cli_ws_eof {
	CLI_WS_EOF_CLOSE,   /* a close frame (LXD's client, non-interactive stdin) */
	CLI_WS_EOF_EMPTY,   /* an empty binary message: a pty has no half-close */
	CLI_WS_EOF_NONE,    /* nothing: the stream outlives its input (console) */
};

#define CLI_WS_MAX 4

struct cli_ws_stream {
	wsc *ws;
	int in_fd;               /* read and sent as binary messages; -1: none */
	int out_fd;              /* binary messages received are written here; -1: dropped */
	enum cli_ws_eof eof;     /* how the end of in_fd is told */
	bool output;             /* carries output: LXD's barrier (a text message) ends it */
	bool essential;          /* the loop ends once every essential stream has ended */
	/* loop state */
	bool in_done;            /* in_fd reached its end (or there is nothing to send) */
	bool eof_pending;        /* the end of in_fd still has to be told */
	bool ended;              /* barrier, close or failure from the peer */
	size_t pending;          /* bytes of buf read from in_fd, not yet sent */
	char *buf;
};

struct cli_ws_loop {
	struct cli_ws_stream s[CLI_WS_MAX];
	int n;
	int sigfd;               /* signalfd, or -1 */
	/* Rewrites input read from an in_fd (console escapes) into out, which
	 * holds len + 1 bytes; returns the bytes to send.  *stop ends the loop. */
	size_t (*filter)(void *arg, const char *in, size_t len, char *out, bool *stop);
	/* A signal arrived; < 0 fails the loop. */
	int (*on_signal)(void *arg, int signo, cell_error *err);
	void *arg;
	bool stop;
};

/* Run until every essential stream has ended, stop is set or an error.
 * Streams and websockets stay the caller's. */
int cli_ws_loop_run(struct cli_ws_loop *l, cell_error *err);
void cli_ws_loop_free(struct cli_ws_loop *l);   /* buffers only */

/* ---- signals, through a signalfd ---- */

struct cli_sigs {
	int fd;
	sigset_t old;
	bool active;
};
/* Block sigs (0-terminated) and read them from s->fd instead. */
int cli_sigs_open(struct cli_sigs *s, const int *sigs, cell_error *err);
/* Drop what is still pending, then restore the mask: a late ^C must not
 * kill us once the remote command's status is known. */
void cli_sigs_close(struct cli_sigs *s);

/* ---- the local terminal ---- */

struct cli_tty {
	int fd;
	bool raw;
	struct termios saved;
};
/* Raw mode on fd when it is a terminal (a no-op otherwise). */
int cli_tty_raw(struct cli_tty *t, int fd, cell_error *err);
void cli_tty_restore(struct cli_tty *t);
/* Window size of the first of fds that is a terminal; false when none is. */
bool cli_tty_size(const int *fds, int n, int *width, int *height);

/* ---- pure helpers, exposed for tests ---- */

/* `console` detach: ctrl+a then q.  ctrl+a followed by anything else is
 * sent as typed, both bytes, even when split across reads. */
struct cli_escape {
	bool armed;   /* the last byte seen was an unsent ctrl+a */
};
/* in -> out (len + 1 bytes); returns bytes to send; *detach on ctrl+a q
 * (what came before it in the same read is still returned). */
size_t cli_escape_filter(struct cli_escape *e, const char *in, size_t len, char *out, bool *detach);

/* --env values as the option parser joins them ("A=1,B=x,y" keeps "x,y"
 * as B's value: a piece only starts a new variable when it looks like
 * NAME=).  A bare NAME (first only, then) is set empty, as lxc does. */
int cli_exec_parse_env(const char *joined, json_t *env, cell_error *err);

enum cli_exec_mode_flag { CLI_EXEC_AUTO, CLI_EXEC_INTERACTIVE, CLI_EXEC_NONINTERACTIVE };
/* lxc exec's decision: -t/-T/--mode, else interactive when stdin and
 * stdout are both terminals; -n (no stdin) is never interactive. */
int cli_exec_interactive(const char *mode, bool force_t, bool force_T, bool no_stdin, bool in_tty,
			 bool out_tty, bool *interactive, cell_error *err);
/* A uid/gid flag: a number that fits 32 bits. */
int cli_parse_id(const char *flag, const char *s, unsigned *out, cell_error *err);

#endif
