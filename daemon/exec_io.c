/*
 * Exec sessions: websockets <-> a spawned process's stdio, on the loop.
 *
 * Every fd of ours is non-blocking and watched with uv_poll; nothing here
 * blocks.  Flow control both ways: a process's output is read only while its
 * websocket has less than EXEC_HIGH_WATER queued (resumed by on_drain), and
 * the stdin websocket's reading is paused while the process does not take
 * its input.  Memory per session is therefore bounded whatever the
 * process or the client do.
 *
 * Ownership: the session is the operation's data.  It holds references for
 * the operation, for being alive (until finished), for each open libuv
 * handle and for each connected websocket; it is freed when the last goes.
 */
#include "daemon/exec_io.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <uv.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/util.h"
#include "daemon/daemon.h"
#include "daemon/operations.h"
#include "daemon/ws.h"

/* One websocket message, read straight into it.  64 to 256 KiB measure
 * the same over a unix socket (cat of 1 GiB, ~2 GB/s). */
#define EXEC_CHUNK (128u << 10)
#define EXEC_HIGH_WATER (1u << 20)     /* must exceed ws.c's low-water mark for on_drain */
/* The kernel may hold this much output for the client: with the default
 * (~200 KiB) the loop wakes for every message and the same cat makes
 * ~0.75 GB/s; 4 MiB is no better than 1. */
#define EXEC_SNDBUF (1 << 20)
#define EXEC_READS_PER_WAKE 16         /* fairness between sessions on one loop */
#define EXEC_PIPE_SIZE (1 << 20)       /* fewer wake-ups per byte for bulk output */
/* Output still flowing this long after the process exited comes from
 * something it left behind holding the pipe or pty: stop there, as LXD does
 * (everything the process itself wrote fits in the pipe). */
#define EXEC_AFTER_EXIT_MAX (2u << 20)

enum { EXEC_WS_STDIN, EXEC_WS_STDOUT, EXEC_WS_STDERR, EXEC_WS_CONTROL, EXEC_WS_N };
static const char *const exec_ws_names[EXEC_WS_N] = { "0", "1", "2", "control" };

struct exec_session;

/* libuv handle plus the session it keeps alive (one reference each). */
struct exec_handle {
	union {
		uv_handle_t h;
		uv_poll_t poll;
		uv_timer_t timer;
		uv_prepare_t prepare;
	} u;
	struct exec_session *s;
	void *arg;
};

struct exec_chan {              /* a websocket slot; the ud of its handler */
	struct exec_session *s;
	int idx;
	struct ws_conn *ws;         /* NULL until connected and after on_close */
	bool connected;             /* ever */
};

struct exec_out {               /* process output -> websocket */
	int fd;
	int chan;
	struct exec_handle *poll;
	bool polling;
	size_t after_exit;
};

struct exec_in {                /* websocket -> process input */
	int fd;
	struct exec_handle *poll;
	strbuf pending;             /* what the process has not taken yet */
	bool eof_wanted, rx_paused;
	char last;                  /* last byte pushed: a pty EOF needs an empty line */
};

struct exec_session {
	int refs;
	struct operation *op;
	struct exec_session *next;  /* unfinished sessions, for shutdown */
	bool interactive, wait_for_ws, record_output;
	char *record_url[2];        /* metadata.output "1", "2" */
	struct exec_child child;
	int gate;                   /* our end of the start gate */
	pid_t pid;
	int pidfd, sig_pidfd;
	/* Asked for before the process was known (the POST is answered while
	 * it is spawned): sent once it is.  Bit n-1 for signal n. */
	uint64_t sigs_pending;
	struct exec_handle *pid_poll, *connect_timer;
	struct exec_chan chan[EXEC_WS_N];
	struct exec_out out[2];
	struct exec_in in;
	/* Interactive: the master's fds once no longer used, kept open until
	 * the exit, because closing a pty master hangs the session up and a
	 * process merely closing its stdio on the way out would die of SIGHUP. */
	int pty_held[2];
	bool started, released, exited, aborting, finished;
	int status;
	char *fail;
};

static void *exec_spare;   /* an EXEC_CHUNK ws buffer between reads (loop thread) */
static struct exec_session *exec_unfinished;
static struct exec_handle *exec_watch;
static unsigned exec_allocated;

static void exec_maybe_finish(struct exec_session *s);
static void exec_out_update(struct exec_session *s, struct exec_out *o);

/* ---- small helpers ------------------------------------------------------ */

int exec_status_from_siginfo(int code, int status)
{
	if (code == CLD_EXITED)
		return status;
	if (code == CLD_KILLED || code == CLD_DUMPED)
		return 128 + status;
	return -1;
}

static void exec_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int exec_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -errno : fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

/* The child's fds live in the process now (or never will): drop ours. */
static void exec_close_child(struct exec_session *s)
{
	int fds[4] = { s->child.stdio[0], s->child.stdio[1], s->child.stdio[2], s->child.gate };

	for (int i = 0; i < 4; i++) {
		bool dup = false;
		for (int j = 0; j < i; j++)
			dup |= fds[j] == fds[i];
		if (fds[i] >= 0 && !dup)
			close(fds[i]);   /* /dev/null or the pty slave serve several */
	}
	s->child.stdio[0] = s->child.stdio[1] = s->child.stdio[2] = s->child.gate = -1;
}

static void exec_fd_release(struct exec_session *s, int *fd)
{
	for (int i = 0; s->interactive && !s->exited && *fd >= 0 && i < 2; i++)
		if (s->pty_held[i] < 0) {
			s->pty_held[i] = *fd;
			*fd = -1;
			return;
		}
	exec_close_fd(fd);
}

static void exec_free(struct exec_session *s)
{
	exec_close_child(s);
	exec_close_fd(&s->pty_held[0]);
	exec_close_fd(&s->pty_held[1]);
	exec_close_fd(&s->gate);
	exec_close_fd(&s->pidfd);
	exec_close_fd(&s->sig_pidfd);
	exec_close_fd(&s->in.fd);
	for (int i = 0; i < 2; i++)
		exec_close_fd(&s->out[i].fd);
	sb_free(&s->in.pending);
	free(s->record_url[0]);
	free(s->record_url[1]);
	free(s->fail);
	free(s);
	exec_allocated--;
}

static void exec_unref(struct exec_session *s)
{
	if (--s->refs == 0)
		exec_free(s);
}

static void exec_handle_closed(uv_handle_t *h)
{
	struct exec_session *s = ((struct exec_handle *)h)->s;
	free(h);
	if (s)
		exec_unref(s);
}

static void exec_handle_close(struct exec_handle **hp)
{
	if (*hp) {
		uv_close(&(*hp)->u.h, exec_handle_closed);
		*hp = NULL;
	}
}

static struct exec_handle *exec_poll_open(struct exec_session *s, int fd, void *arg)
{
	struct exec_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	if (uv_poll_init(celld->loop, &h->u.poll, fd) < 0) {
		free(h);
		return NULL;
	}
	h->s = s;
	h->arg = arg;
	s->refs++;
	return h;
}

/* The command itself first (when the spawner named it: a helper's
 * grandchild would otherwise outlive its killed parent), then the child. */
static void exec_kill(struct exec_session *s, int sig)
{
	if (!s->started && !s->exited)
		s->sigs_pending |= 1ull << (sig - 1);
	if (!s->started || s->exited)
		return;
	if (s->sig_pidfd >= 0)
		pidfd_send_signal(s->sig_pidfd, sig, NULL, 0);
	if (s->pidfd >= 0 && pidfd_send_signal(s->pidfd, sig, NULL, 0) < 0)
		log_debug("exec %s: signal %d: %s", op_id(s->op), sig, strerror(errno));
}

/* ---- shutdown watch ----------------------------------------------------- */

static void exec_watch_cb(uv_prepare_t *p)
{
	if (celld->shutting_down)
		exec_sessions_shutdown();
}

static void exec_track(struct exec_session *s)
{
	s->next = exec_unfinished;
	exec_unfinished = s;
	if (exec_watch)
		return;
	/* Runs every loop iteration but holds no reference on the loop: a
	 * cheap way to notice shutdown without a hook in main.c. */
	exec_watch = calloc(1, sizeof(*exec_watch));
	if (!exec_watch)
		return;
	uv_prepare_init(celld->loop, &exec_watch->u.prepare);
	uv_prepare_start(&exec_watch->u.prepare, exec_watch_cb);
	uv_unref(&exec_watch->u.h);
}

static void exec_untrack(struct exec_session *s)
{
	for (struct exec_session **pp = &exec_unfinished; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	if (!exec_unfinished) {
		exec_handle_close(&exec_watch);
		ws_buf_free(exec_spare);
		exec_spare = NULL;
	}
}

unsigned exec_sessions_live(void) { return exec_allocated; }

/* ---- finishing ---------------------------------------------------------- */

static void exec_out_close(struct exec_session *s, struct exec_out *o)
{
	exec_handle_close(&o->poll);   /* before close(): libuv drops the fd from epoll */
	o->polling = false;
	exec_fd_release(s, &o->fd);
}

static void exec_in_close(struct exec_session *s)
{
	struct ws_conn *ws = s->chan[EXEC_WS_STDIN].ws;

	exec_handle_close(&s->in.poll);
	exec_fd_release(s, &s->in.fd);
	sb_free(&s->in.pending);
	if (s->in.rx_paused && ws)
		ws_conn_pause_rx(ws, false);   /* keep reading (and dropping) the client's input */
	s->in.rx_paused = false;
}

static void exec_close_all_ws(struct exec_session *s)
{
	for (int i = 0; i < EXEC_WS_N; i++)
		if (s->chan[i].ws)
			ws_conn_close(s->chan[i].ws);
}

static void exec_finish(struct exec_session *s)
{
	struct operation *op = s->op;

	s->finished = true;
	exec_untrack(s);
	exec_handle_close(&s->connect_timer);
	exec_in_close(s);
	exec_out_close(s, &s->out[0]);
	exec_out_close(s, &s->out[1]);
	exec_close_fd(&s->gate);
	exec_close_all_ws(s);
	if (!s->fail) {
		if (s->record_output)
			op_set_metadata_key(op, "output",
					    json_pack("{s:s, s:s}", "1", s->record_url[0], "2",
						      s->record_url[1]));
		op_set_metadata_key(op, "return", json_integer(s->status));
	}
	log_debug("exec %s finished: %s (return %d)", op_id(op), s->fail ? s->fail : "ok",
		  s->status);
	op_finish(op, s->fail ? -EIO : 0, s->fail);
	s->op = NULL;
	op_unref(op);
	exec_unref(s);   /* alive */
}

static bool exec_out_done(struct exec_session *s, struct exec_out *o)
{
	return o->fd < 0 && !s->chan[o->chan].ws;
}

/* Done once the process is reaped and every output reached its client. */
static void exec_maybe_finish(struct exec_session *s)
{
	if (s->finished || !s->exited)
		return;
	if (!exec_out_done(s, &s->out[0]) || !exec_out_done(s, &s->out[1]))
		return;
	exec_finish(s);
}

/* Stop everything now: the operation fails with `msg`. */
static void exec_abort(struct exec_session *s, const char *msg)
{
	if (s->finished || s->aborting)
		return;
	s->aborting = true;
	if (msg && !s->fail)
		s->fail = strdup(msg);
	exec_handle_close(&s->connect_timer);
	exec_close_fd(&s->gate);   /* EOF without a byte: the child must not run */
	exec_kill(s, SIGKILL);
	exec_out_close(s, &s->out[0]);
	exec_out_close(s, &s->out[1]);
	exec_in_close(s);
	exec_close_all_ws(s);
	exec_maybe_finish(s);
}

void exec_sessions_shutdown(void)
{
	struct exec_session *s = exec_unfinished, *next;

	for (; s; s = next) {
		next = s->next;
		exec_abort(s, "Daemon is shutting down");
	}
}

/* ---- process output -> websocket ---------------------------------------- */

static void exec_out_eof(struct exec_session *s, struct exec_out *o)
{
	struct ws_conn *ws = s->chan[o->chan].ws;

	exec_out_close(s, o);
	if (ws) {
		/* LXD's end-of-stream barrier (an empty text message), then close. */
		ws_conn_send(ws, "", 0, false);
		ws_conn_close(ws);
	}
	if (s->interactive)
		exec_in_close(s);   /* the pty is gone: nothing reads input any more */
	exec_maybe_finish(s);
}

/* Bulk output is read straight into the message that carries it; a small
 * read is copied into a message of its size (a queue of small reads must
 * not pin a chunk each) and the buffer serves the next read. */
static int exec_out_send(struct ws_conn *ws, void *buf, size_t n)
{
	int rc;

	if (n >= EXEC_CHUNK / 2)
		return ws_conn_send_buf(ws, buf, n, true);
	rc = ws_conn_send(ws, buf, n, true);
	exec_spare = buf;
	return rc;
}

static void exec_out_read(struct exec_session *s, struct exec_out *o)
{
	struct ws_conn *ws = s->chan[o->chan].ws;

	for (int i = 0; i < EXEC_READS_PER_WAKE && ws_conn_queued(ws) < EXEC_HIGH_WATER; i++) {
		void *buf = exec_spare ? exec_spare : ws_buf_new(EXEC_CHUNK);
		ssize_t n;
		if (!buf)
			return exec_abort(s, "Out of memory for the process output");
		exec_spare = NULL;
		n = read(o->fd, buf, EXEC_CHUNK);
		if (n > 0) {
			if (exec_out_send(ws, buf, (size_t)n) < 0)
				return exec_out_eof(s, o);
			if (s->exited && (o->after_exit += (size_t)n) > EXEC_AFTER_EXIT_MAX)
				return exec_out_eof(s, o);
			continue;
		}
		exec_spare = buf;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			/* Once the process is gone nothing it wrote is still
			 * to come: what remains is a leftover's business. */
			if (s->exited)
				return exec_out_eof(s, o);
			break;
		}
		return exec_out_eof(s, o);   /* EOF, or EIO from a pty whose slave closed */
	}
	exec_out_update(s, o);
}

static void exec_out_cb(uv_poll_t *p, int status, int events)
{
	struct exec_handle *h = (struct exec_handle *)p;
	exec_out_read(h->s, h->arg);
}

static bool exec_out_wanted(struct exec_session *s, struct exec_out *o)
{
	struct ws_conn *ws = s->chan[o->chan].ws;
	return o->fd >= 0 && s->started && ws && ws_conn_queued(ws) < EXEC_HIGH_WATER;
}

static void exec_out_update(struct exec_session *s, struct exec_out *o)
{
	bool want = exec_out_wanted(s, o);

	if (want && !o->polling) {
		if (!o->poll && !(o->poll = exec_poll_open(s, o->fd, o)))
			return exec_abort(s, "Failed to watch the process output");
		uv_poll_start(&o->poll->u.poll, UV_READABLE | UV_DISCONNECT, exec_out_cb);
		o->polling = true;
	} else if (!want && o->polling) {
		uv_poll_stop(&o->poll->u.poll);
		o->polling = false;
	}
}

/* After the exit an empty pipe held open by a leftover never polls
 * readable: read now, and let EAGAIN end the stream. */
static void exec_out_resume(struct exec_session *s, struct exec_out *o)
{
	if (s->exited && exec_out_wanted(s, o))
		exec_out_read(s, o);
	else
		exec_out_update(s, o);
}

/* ---- websocket -> process input ----------------------------------------- */

static void exec_in_flush(struct exec_session *s);

static void exec_in_cb(uv_poll_t *p, int status, int events)
{
	exec_in_flush(((struct exec_handle *)p)->s);
}

static void exec_in_set_waiting(struct exec_session *s, bool wait)
{
	struct ws_conn *ws = s->chan[EXEC_WS_STDIN].ws;

	if (wait && !s->in.poll && !(s->in.poll = exec_poll_open(s, s->in.fd, NULL)))
		return exec_abort(s, "Failed to watch the process input");
	if (wait)
		uv_poll_start(&s->in.poll->u.poll, UV_WRITABLE | UV_DISCONNECT, exec_in_cb);
	else if (s->in.poll)
		uv_poll_stop(&s->in.poll->u.poll);
	if (ws && s->in.rx_paused != wait) {
		ws_conn_pause_rx(ws, wait);
		s->in.rx_paused = wait;
	}
}

static void exec_in_eof_now(struct exec_session *s)
{
	if (!s->interactive)
		exec_in_close(s);   /* the process reads EOF */
	else
		exec_in_set_waiting(s, false);
}

/* Write what the pipe takes; returns false when the input is gone. */
static bool exec_in_write(struct exec_session *s, const void **data, size_t *len)
{
	while (*len) {
		ssize_t n = write(s->in.fd, *data, *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n < 0) {
			exec_in_close(s);   /* EPIPE: the process closed its stdin */
			return false;
		}
		*data = (const char *)*data + n;
		*len -= (size_t)n;
	}
	return true;
}

static void exec_in_flush(struct exec_session *s)
{
	const void *p = s->in.pending.buf;
	size_t len = s->in.pending.len;

	if (s->in.fd < 0 || !exec_in_write(s, &p, &len))
		return;
	memmove(s->in.pending.buf, p, len);
	s->in.pending.len = len;
	if (len)
		return;
	exec_in_set_waiting(s, false);
	if (s->in.eof_wanted)
		exec_in_eof_now(s);
}

static void exec_in_push(struct exec_session *s, const void *data, size_t len)
{
	if (s->in.fd < 0 || !len)
		return;
	s->in.last = ((const char *)data)[len - 1];
	if (!s->in.pending.len && !exec_in_write(s, &data, &len))
		return;
	if (!len)
		return;
	if (sb_append(&s->in.pending, data, len) < 0)
		return exec_in_close(s);
	exec_in_set_waiting(s, true);
}

/* A terminal has no half-close: send its EOF character, twice when a
 * partial line has to be flushed first, as a user typing ^D would. */
static void exec_in_pty_eof(struct exec_session *s)
{
	struct termios t;
	char eof[2];

	if (tcgetattr(s->in.fd, &t) < 0 || !(t.c_lflag & ICANON))
		return;
	eof[0] = eof[1] = (char)t.c_cc[VEOF];
	exec_in_push(s, eof, s->in.last && s->in.last != '\n' && s->in.last != '\r' ? 2 : 1);
}

static void exec_in_eof(struct exec_session *s)
{
	if (s->in.fd < 0 || s->in.eof_wanted)
		return;
	s->in.eof_wanted = true;
	if (s->interactive)
		exec_in_pty_eof(s);
	else if (!s->in.pending.len)
		exec_in_eof_now(s);
}

static void exec_in_message(struct exec_session *s, const void *data, size_t len, bool binary)
{
	if (s->in.fd < 0 || s->in.eof_wanted)
		return;
	/* LXD's barrier is a text message; an empty message means the same. */
	if (!binary || !len)
		return exec_in_eof(s);
	exec_in_push(s, data, len);
}

/* ---- control websocket -------------------------------------------------- */

static int exec_json_int(json_t *v)
{
	if (json_is_integer(v))
		return (int)json_integer_value(v);
	if (json_is_string(v))
		return atoi(json_string_value(v));
	return -1;
}

static void exec_resize(struct exec_session *s, json_t *args)
{
	int fd = s->out[0].fd >= 0 ? s->out[0].fd : s->in.fd;
	int w = exec_json_int(json_object_get(args, "width"));
	int h = exec_json_int(json_object_get(args, "height"));
	struct winsize ws = { .ws_row = (unsigned short)h, .ws_col = (unsigned short)w };

	if (!s->interactive || fd < 0 || w <= 0 || h <= 0 || w > 0xffff || h > 0xffff)
		return;
	if (ioctl(fd, TIOCSWINSZ, &ws) < 0)
		log_debug("exec %s: window-resize: %s", op_id(s->op), strerror(errno));
}

static void exec_signal(struct exec_session *s, int sig)
{
	int fd = s->sig_pidfd >= 0 ? s->sig_pidfd : s->pidfd;

	if (sig <= 0 || sig > 64 || s->exited)
		return;
	if (!s->started) {
		s->sigs_pending |= 1ull << (sig - 1);
		return;
	}
	if (fd < 0)
		return;
	if (pidfd_send_signal(fd, sig, NULL, 0) < 0)
		log_debug("exec %s: signal %d: %s", op_id(s->op), sig, strerror(errno));
}

static void exec_control(struct exec_session *s, const void *data, size_t len)
{
	_cleanup_json_ json_t *j = json_loadb(data, len, 0, NULL);
	const char *cmd = json_string_value(json_object_get(j, "command"));

	if (!cmd)
		return;   /* LXD ignores what it cannot parse */
	if (!strcmp(cmd, "window-resize"))
		exec_resize(s, json_object_get(j, "args"));
	else if (!strcmp(cmd, "signal"))
		exec_signal(s, exec_json_int(json_object_get(j, "signal")));
}

/* ---- websocket handlers ------------------------------------------------- */

static struct exec_out *exec_out_of_chan(struct exec_session *s, int idx)
{
	if (s->interactive)
		return idx == EXEC_WS_STDIN ? &s->out[0] : NULL;
	return idx == EXEC_WS_STDOUT ? &s->out[0] : idx == EXEC_WS_STDERR ? &s->out[1] : NULL;
}

/* Without a control websocket a client that goes away from stdout (or
 * talks on it) has no other way to say so: kill the command, as LXD. */
static void exec_client_left(struct exec_session *s)
{
	if (!s->chan[EXEC_WS_CONTROL].ws)
		exec_kill(s, SIGKILL);
}

static void exec_ws_message(struct ws_conn *ws, const void *data, size_t len, bool binary,
			    void *ud)
{
	struct exec_chan *c = ud;
	struct exec_session *s = c->s;

	if (s->finished)
		return;
	if (c->idx == EXEC_WS_CONTROL)
		exec_control(s, data, len);
	else if (c->idx == EXEC_WS_STDIN)
		exec_in_message(s, data, len, binary);
	else if (c->idx == EXEC_WS_STDOUT)
		exec_client_left(s);
}

static void exec_ws_drain(struct ws_conn *ws, void *ud)
{
	struct exec_chan *c = ud;
	struct exec_out *o = exec_out_of_chan(c->s, c->idx);

	if (o && !c->s->finished)
		exec_out_resume(c->s, o);
}

static void exec_ws_closed_early(struct exec_session *s, struct exec_chan *c)
{
	struct exec_out *o = exec_out_of_chan(s, c->idx);

	if (c->idx == EXEC_WS_CONTROL) {
		exec_kill(s, SIGKILL);   /* LXD: a closed control channel ends the command */
		return;
	}
	if (c->idx == EXEC_WS_STDIN && !s->interactive) {
		exec_in_eof(s);
		return;
	}
	if (o && o->fd >= 0) {
		/* Nobody reads this output any more: from a pipe the process
		 * gets EPIPE on its next write; a pty is only left unread
		 * (see pty_held) until the control channel or the exit ends it. */
		exec_out_close(s, o);
		if (s->interactive)
			exec_in_close(s);
		exec_client_left(s);
	}
}

static void exec_ws_close(struct ws_conn *ws, void *ud)
{
	struct exec_chan *c = ud;
	struct exec_session *s = c->s;

	c->ws = NULL;
	if (c->idx == EXEC_WS_STDIN)
		s->in.rx_paused = false;
	if (!s->finished && !s->aborting) {
		exec_ws_closed_early(s, c);
		exec_maybe_finish(s);
	} else if (!s->finished) {
		exec_maybe_finish(s);
	}
	exec_unref(s);
}

static const struct ws_handler exec_ws_handler = {
	.on_message = exec_ws_message,
	.on_close = exec_ws_close,
	.on_drain = exec_ws_drain,
};

/* ---- release and connect ------------------------------------------------ */

static bool exec_chan_required(struct exec_session *s, int idx)
{
	/* LXD: interactive needs "0" and "control"; otherwise "0" "1" "2",
	 * control optional because old clients never connected it. */
	if (s->interactive)
		return idx == EXEC_WS_STDIN || idx == EXEC_WS_CONTROL;
	return idx != EXEC_WS_CONTROL;
}

static void exec_maybe_release(struct exec_session *s)
{
	if (s->released || !s->started || s->aborting || s->finished)
		return;
	for (int i = 0; s->wait_for_ws && i < EXEC_WS_N; i++)
		if (exec_chan_required(s, i) && !s->chan[i].connected)
			return;
	s->released = true;
	exec_handle_close(&s->connect_timer);
	/* One byte is "go"; it may find the child already dead (EPIPE). */
	if (s->gate >= 0 && write(s->gate, "\n", 1) < 0)
		log_debug("exec %s: start gate: %s", op_id(s->op), strerror(errno));
	exec_close_fd(&s->gate);
}

static int exec_chan_index(const char *name)
{
	for (int i = 0; i < EXEC_WS_N; i++)
		if (!strcmp(name, exec_ws_names[i]))
			return i;
	return -1;
}

static int exec_op_ws_connect(struct operation *op, const char *fd_name, struct ws_conn *ws,
			      cell_error *err)
{
	struct exec_session *s = op_data(op);
	int idx = exec_chan_index(fd_name);
	struct exec_out *o;

	if (idx < 0 || (s->interactive && (idx == EXEC_WS_STDOUT || idx == EXEC_WS_STDERR)))
		return cell_err(err, 400, EINVAL, "Unknown websocket number");
	if (s->finished || s->aborting)
		return cell_err(err, 400, EPIPE, "The command has already ended");
	s->chan[idx].ws = ws;
	s->chan[idx].connected = true;
	s->refs++;
	ws_conn_set_handler(ws, &exec_ws_handler, &s->chan[idx]);
	if (exec_out_of_chan(s, idx))
		ws_conn_set_sndbuf(ws, EXEC_SNDBUF);
	exec_maybe_release(s);
	if ((o = exec_out_of_chan(s, idx)))
		exec_out_resume(s, o);
	return 0;
}

static void exec_connect_timeout(uv_timer_t *t)
{
	struct exec_session *s = ((struct exec_handle *)t)->s;

	exec_handle_close(&s->connect_timer);
	if (!s->released)
		exec_abort(s, "Timed out waiting for websockets to connect");
}

static int exec_start_connect_timer(struct exec_session *s)
{
	struct exec_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	uv_timer_init(celld->loop, &h->u.timer);
	h->s = s;
	s->refs++;
	s->connect_timer = h;
	uv_timer_start(&h->u.timer, exec_connect_timeout, EXEC_CONNECT_TIMEOUT_MS, 0);
	return 0;
}

/* ---- plumbing ----------------------------------------------------------- */

static int exec_gate(struct exec_session *s, cell_error *err)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return cell_err_sys(err, 500, errno, "exec: start gate");
	s->child.gate = p[0];
	s->gate = p[1];
	return 0;
}

static int exec_plumb_pipes(struct exec_session *s, cell_error *err)
{
	for (int i = 0; i < 3; i++) {
		int p[2], ours;
		if (pipe2(p, O_CLOEXEC) < 0)
			return cell_err_sys(err, 500, errno, "exec: pipe");
		s->child.stdio[i] = i == 0 ? p[0] : p[1];
		ours = i == 0 ? p[1] : p[0];
		if (i == 0)
			s->in.fd = ours;
		else
			s->out[i - 1].fd = ours;
		if (i > 0)
			fcntl(ours, F_SETPIPE_SZ, EXEC_PIPE_SIZE);   /* best effort */
		if (exec_set_nonblock(ours) < 0)
			return cell_err_sys(err, 500, errno, "exec: pipe");
	}
	return 0;
}

static int exec_plumb_pty(struct exec_session *s, const struct exec_opts *o, cell_error *err)
{
	struct winsize ws = { .ws_row = (unsigned short)o->height, .ws_col = (unsigned short)o->width };

	for (int i = 0; i < 3; i++)
		s->child.stdio[i] = o->pty_slave;
	s->out[0].fd = o->pty_master;
	s->out[0].chan = s->out[1].chan = EXEC_WS_STDIN;
	if (o->pty_master < 0 || o->pty_slave < 0)
		return cell_err(err, 500, EINVAL, "exec: interactive session without a pty");
	/* A second fd for input so each direction has its own uv_poll. */
	s->in.fd = fcntl(o->pty_master, F_DUPFD_CLOEXEC, 3);
	if (s->in.fd < 0 || exec_set_nonblock(o->pty_master) < 0)
		return cell_err_sys(err, 500, errno, "exec: pty");
	if (o->width && o->height && ioctl(o->pty_master, TIOCSWINSZ, &ws) < 0)
		return cell_err_sys(err, 500, errno, "exec: pty window size");
	return 0;
}

static int exec_record_open(struct exec_session *s, const struct exec_opts *o, cell_error *err)
{
	static const char *const ext[2] = { "stdout", "stderr" };

	if (!o->record_dir || !o->record_url)
		return cell_err(err, 500, EINVAL, "exec: record-output without a log directory");
	if (util_mkdir_p(o->record_dir, 0700, err) < 0)
		return -EIO;
	for (int i = 0; i < 2; i++) {
		_cleanup_free_ char *path = xasprintf("%s/exec_%s.%s", o->record_dir,
						      op_id(s->op), ext[i]);
		s->child.stdio[i + 1] = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
							   O_NOFOLLOW, 0600);
		if (s->child.stdio[i + 1] < 0)
			return cell_err_sys(err, 500, errno, "exec: open %s", path);
		s->record_url[i] = xasprintf("%s/exec_%s.%s", o->record_url, op_id(s->op), ext[i]);
	}
	return 0;
}

/* No websockets: the process reads /dev/null; its output goes to the
 * record files directly (nothing to copy) or to /dev/null. */
static int exec_plumb_detached(struct exec_session *s, const struct exec_opts *o,
			       cell_error *err)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (null < 0)
		return cell_err_sys(err, 500, errno, "exec: open /dev/null");
	for (int i = 0; i < 3; i++)
		s->child.stdio[i] = null;
	return o->record_output ? exec_record_open(s, o, err) : 0;
}

static int exec_plumb(struct exec_session *s, const struct exec_opts *o, cell_error *err)
{
	int rc;

	if (o->interactive && o->wait_for_ws)
		rc = exec_plumb_pty(s, o, err);
	else if (o->wait_for_ws)
		rc = exec_plumb_pipes(s, err);
	else
		rc = exec_plumb_detached(s, o, err);
	return rc < 0 ? rc : exec_gate(s, err);
}

/* ---- public ------------------------------------------------------------- */

static void exec_op_free_data(void *data) { exec_unref(data); }

static const struct op_ops exec_ws_ops = { .ws_connect = exec_op_ws_connect,
					   .free_data = exec_op_free_data };
static const struct op_ops exec_task_ops = { .free_data = exec_op_free_data };

static struct exec_session *exec_alloc(const struct exec_opts *o)
{
	struct exec_session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	exec_allocated++;
	s->refs = 2;   /* the operation's data, and alive until finished */
	s->interactive = o->interactive && o->wait_for_ws;
	s->wait_for_ws = o->wait_for_ws;
	s->record_output = o->record_output && !o->wait_for_ws;
	s->gate = s->pidfd = s->sig_pidfd = s->in.fd = s->pty_held[0] = s->pty_held[1] = -1;
	s->child.stdio[0] = s->child.stdio[1] = s->child.stdio[2] = s->child.gate = -1;
	for (int i = 0; i < 2; i++) {
		s->out[i].fd = -1;
		s->out[i].chan = EXEC_WS_STDOUT + i;
	}
	for (int i = 0; i < EXEC_WS_N; i++) {
		s->chan[i].s = s;
		s->chan[i].idx = i;
	}
	return s;
}

static int exec_add_secrets(struct exec_session *s)
{
	for (int i = 0; i < EXEC_WS_N; i++) {
		if (s->interactive && (i == EXEC_WS_STDOUT || i == EXEC_WS_STDERR))
			continue;
		if (op_add_secret(s->op, exec_ws_names[i]) < 0)
			return -EIO;
	}
	return exec_start_connect_timer(s);
}

/* The pty is taken whatever happens; without websockets it is not used. */
static void exec_drop_pty(const struct exec_opts *o)
{
	if (o->interactive && o->pty_master >= 0)
		close(o->pty_master);
	if (o->interactive && o->pty_slave >= 0)
		close(o->pty_slave);
}

static struct exec_session *exec_create(const struct exec_opts *o, const char *description,
					json_t *resources, json_t *metadata)
{
	struct exec_session *s = exec_alloc(o);

	if (!s) {
		json_decref(resources);
		json_decref(metadata);
		return NULL;
	}
	s->op = op_create(o->wait_for_ws ? OP_CLASS_WEBSOCKET : OP_CLASS_TASK, description,
			  resources, metadata, o->wait_for_ws ? &exec_ws_ops : &exec_task_ops, s);
	if (!s->op) {
		s->refs = 1;
		exec_unref(s);
		return NULL;
	}
	op_ref(s->op);
	return s;
}

int exec_session_new(const struct exec_opts *o, const char *description, json_t *resources,
		     json_t *metadata, struct operation **op_out, struct exec_session **s_out,
		     struct exec_child *child, cell_error *err)
{
	struct exec_session *s = exec_create(o, description, resources, metadata);
	int rc;

	if (!s || !(o->interactive && o->wait_for_ws))
		exec_drop_pty(o);
	if (!s)
		return cell_err(err, 500, ENOMEM, "exec: out of memory");
	exec_track(s);
	op_start(s->op);
	rc = exec_plumb(s, o, err);
	if (rc == 0 && s->wait_for_ws && exec_add_secrets(s) < 0)
		rc = cell_err(err, 500, EIO, "exec: websocket secrets");
	if (rc < 0) {
		exec_session_failed(s, err->msg);
		return rc;
	}
	*op_out = s->op;
	*s_out = s;
	*child = s->child;
	return 0;
}

static void exec_exited(struct exec_session *s)
{
	s->refs++;   /* finishing may drop every other reference */
	s->exited = true;
	exec_close_fd(&s->pty_held[0]);
	exec_close_fd(&s->pty_held[1]);
	exec_handle_close(&s->pid_poll);
	exec_close_fd(&s->pidfd);
	exec_close_fd(&s->sig_pidfd);
	exec_close_fd(&s->gate);
	for (int i = 0; i < 2; i++)
		if (s->out[i].fd >= 0)
			exec_out_resume(s, &s->out[i]);
	exec_maybe_finish(s);
	exec_unref(s);
}

static void exec_pid_cb(uv_poll_t *p, int status, int events)
{
	struct exec_session *s = ((struct exec_handle *)p)->s;
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, (id_t)s->pidfd, &si, WEXITED | WNOHANG) < 0) {
		if (errno == EINTR)
			return;
		/* ECHILD: someone else reaped it; the status is lost. */
		log_warn("exec %s: waitid: %s", op_id(s->op), strerror(errno));
		s->status = -1;
	} else if (si.si_pid == 0) {
		return;
	} else {
		s->status = exec_status_from_siginfo(si.si_code, si.si_status);
	}
	exec_exited(s);
}

/* What was asked for while the process was spawned: a kill (timed out,
 * shut down, a client gone), a client's signal. */
static void exec_send_pending(struct exec_session *s)
{
	uint64_t pending = s->sigs_pending;

	s->sigs_pending = 0;
	if (s->aborting)
		pending |= 1ull << (SIGKILL - 1);
	for (int sig = 1; sig <= 64; sig++) {
		if (!(pending & (1ull << (sig - 1))))
			continue;
		if (sig == SIGKILL)
			exec_kill(s, sig);
		else
			exec_signal(s, sig);
	}
}

static int exec_session_watch(struct exec_session *s, cell_error *err)
{
	s->pid_poll = exec_poll_open(s, s->pidfd, NULL);
	if (!s->pid_poll) {
		siginfo_t si;
		/* Out of memory: a killed child blocked on its gate dies at once. */
		exec_kill(s, SIGKILL);
		waitid(P_PIDFD, (id_t)s->pidfd, &si, WEXITED);
		exec_session_failed(s, "exec: cannot watch the process");
		return cell_err(err, 500, ENOMEM, "exec: out of memory");
	}
	uv_poll_start(&s->pid_poll->u.poll, UV_READABLE, exec_pid_cb);
	exec_send_pending(s);
	s->refs++;
	exec_maybe_release(s);
	for (int i = 0; i < 2; i++)
		exec_out_resume(s, &s->out[i]);
	exec_unref(s);
	return 0;
}

int exec_session_started(struct exec_session *s, pid_t pid, int pidfd, cell_error *err)
{
	exec_close_child(s);
	if (pidfd < 0)
		pidfd = pidfd_open(pid, 0);
	if (pidfd < 0) {
		int e = errno;
		/* Cannot watch it: do not leave it behind or unreaped. */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		exec_session_failed(s, "exec: cannot watch the process");
		return cell_err_sys(err, 500, e, "exec: pidfd_open %d", (int)pid);
	}
	s->pid = pid;
	s->pidfd = pidfd;
	s->started = true;
	return exec_session_watch(s, err);
}

void exec_session_failed(struct exec_session *s, const char *msg)
{
	exec_close_child(s);
	if (!s->fail)
		s->fail = strdup(msg && *msg ? msg : "exec failed");
	s->exited = true;   /* nothing runs, nothing to reap */
	s->refs++;
	exec_abort(s, NULL);
	exec_maybe_finish(s);
	exec_unref(s);
}

void exec_session_set_signal_pidfd(struct exec_session *s, int pidfd)
{
	if (s->finished || s->exited) {
		if (pidfd >= 0)
			close(pidfd);
		return;
	}
	exec_close_fd(&s->sig_pidfd);
	s->sig_pidfd = pidfd;
}

struct operation *exec_session_op(struct exec_session *s) { return s->op; }
