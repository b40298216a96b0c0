/*
 * Console sessions: websocket "0" <-> the container's console (a pty
 * master from liblxc's monitor), "control" for window-resize.  See
 * inst_console.h.
 *
 * As in exec_io.c, every fd is non-blocking and watched on the loop, and
 * flow control holds both ways: the console is read only while "0" has
 * less than CON_HIGH_WATER queued (resumed by on_drain), and reading "0"
 * pauses while the console does not take its input, so memory per session
 * stays bounded whatever either side does.
 *
 * Ownership: the session is the operation's data; it holds a reference for
 * the operation, one for being alive (until finished), one per open libuv
 * handle, per connected websocket and for the attach running on a worker.
 */
#include "daemon/inst_console.h"

#include <errno.h>
#include <fcntl.h>
#include <lxc/lxccontainer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
#include <uv.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/util.h"
#include "daemon/daemon.h"
#include "daemon/inst_lxc.h"
#include "daemon/operations.h"
#include "daemon/ws.h"

#define CON_CHUNK (64u << 10)
#define CON_HIGH_WATER (1u << 20)   /* above ws.c's low-water mark, so on_drain comes */
#define CON_READS_PER_WAKE 16       /* fairness between sessions on one loop */
/* liblxc 5.0's monitor frees the console proxy when our command socket
 * closes, and an input event for the proxy still queued in the same epoll
 * batch then reads a closed fd, which ends the monitor's mainloop: the
 * container dies.  So the socket is closed only once the monitor has read
 * every byte we wrote: nothing unread on the proxy's terminal side (an fd
 * to it opened at the end, FIONREAD) and CON_LINGER_SETTLE_MS since our last
 * write, because the kernel moves pty input into the readable buffer from
 * a workqueue, where FIONREAD does not see it.  Polled every
 * CON_LINGER_TICK_MS, for at most CON_LINGER_MAX_MS.  In the usual detach,
 * long after the last key, the socket closes at once. */
#define CON_LINGER_SETTLE_MS 30
#define CON_LINGER_TICK_MS 10
#define CON_LINGER_MAX_MS 2000
/* The monitor frees a detached console asynchronously (and we may linger):
 * a client coming back at once may find it still taken for a moment. */
#define CON_GETFD_TRIES 100
#define CON_GETFD_RETRY_US (10 * 1000)

enum { CON_WS_TTY, CON_WS_CONTROL, CON_WS_N };
static const char *const con_ws_names[CON_WS_N] = { "0", "control" };

struct con_session;

struct con_handle {
	union {
		uv_handle_t h;
		uv_poll_t poll;
		uv_timer_t timer;
		uv_prepare_t prepare;
	} u;
	struct con_session *s;
};

struct con_chan {                /* the ud of a websocket's handler */
	struct con_session *s;
	int idx;
	struct ws_conn *ws;      /* NULL until connected and after on_close */
};

struct con_session {
	int refs;
	struct operation *op;
	struct con_session *next;   /* unfinished sessions, for shutdown */
	char *name;
	unsigned width, height;
	struct con_chan chan[CON_WS_N];
	struct con_handle *poll, *timer;
	int master, sock;           /* loop-owned once attached */
	unsigned poll_events;
	int64_t last_write_ms;      /* our last write to the console */
	strbuf pending;             /* client input the console has not taken */
	bool attaching, attached, finished, rx_paused;
	/* Written by the worker, read by the loop after it: */
	uv_work_t work;
	int work_master, work_sock;
	char work_err[256];
};

static unsigned char con_buf[CON_CHUNK];   /* loop thread only */
static struct con_session *con_unfinished;
static struct con_handle *con_watch;
static unsigned con_live;

static void con_finish(struct con_session *s, const char *fail);

/* ---- references and handles -------------------------------------------------------- */

static void con_free(struct con_session *s)
{
	if (s->master >= 0)
		close(s->master);
	if (s->sock >= 0)
		close(s->sock);
	sb_free(&s->pending);
	free(s->name);
	free(s);
	con_live--;
}

static void con_unref(struct con_session *s)
{
	if (--s->refs == 0)
		con_free(s);
}

static void con_handle_closed(uv_handle_t *h)
{
	struct con_session *s = ((struct con_handle *)h)->s;

	free(h);
	if (s)
		con_unref(s);
}

static void con_handle_close(struct con_handle **hp)
{
	if (*hp) {
		uv_close(&(*hp)->u.h, con_handle_closed);
		*hp = NULL;
	}
}

static struct con_handle *con_handle_new(struct con_session *s)
{
	struct con_handle *h = calloc(1, sizeof(*h));

	if (h && s) {
		h->s = s;
		s->refs++;
	}
	return h;
}

/* ---- shutdown watch ------------------------------------------------------------------ */

static void con_watch_cb(uv_prepare_t *p)
{
	(void)p;
	if (!celld->shutting_down)
		return;
	while (con_unfinished)
		con_finish(con_unfinished, "Daemon is shutting down");
}

/* Runs every loop iteration without holding the loop: how a session
 * notices shutdown without a hook in main.c (exec_io.c does the same). */
static void con_track(struct con_session *s)
{
	s->next = con_unfinished;
	con_unfinished = s;
	if (con_watch || !(con_watch = con_handle_new(NULL)))
		return;
	uv_prepare_init(celld->loop, &con_watch->u.prepare);
	uv_prepare_start(&con_watch->u.prepare, con_watch_cb);
	uv_unref(&con_watch->u.h);
}

static void con_untrack(struct con_session *s)
{
	for (struct con_session **pp = &con_unfinished; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	if (!con_unfinished)
		con_handle_close(&con_watch);
}

unsigned inst_console_sessions_live(void) { return con_live; }

/* ---- finishing ----------------------------------------------------------------------- */

struct con_linger {
	uv_timer_t timer;
	int sock, peer;
	int64_t last_write_ms;
	unsigned ticks;
};

static void con_linger_closed(uv_handle_t *h)
{
	struct con_linger *l = h->data;

	close(l->sock);
	if (l->peer >= 0)
		close(l->peer);
	free(l);
}

static bool con_input_pending(int peer, int64_t last_write_ms)
{
	int n = 0;

	if (util_now_ms() - last_write_ms < CON_LINGER_SETTLE_MS)
		return true;
	return peer >= 0 && ioctl(peer, FIONREAD, &n) == 0 && n > 0;
}

static void con_linger_tick(uv_timer_t *t)
{
	struct con_linger *l = t->data;

	if (con_input_pending(l->peer, l->last_write_ms) &&
	    ++l->ticks < CON_LINGER_MAX_MS / CON_LINGER_TICK_MS)
		return;
	uv_timer_stop(t);
	uv_close((uv_handle_t *)t, con_linger_closed);
}

/* Give the console back to the monitor once it has read all our input
 * (see CON_LINGER_TICK_MS); at once when the daemon stops. */
static void con_release(int sock, int peer, int64_t last_write_ms)
{
	struct con_linger *l = NULL;

	if (!celld->shutting_down && con_input_pending(peer, last_write_ms))
		l = calloc(1, sizeof(*l));
	if (!l) {
		close(sock);
		if (peer >= 0)
			close(peer);
		return;
	}
	l->sock = sock;
	l->peer = peer;
	l->last_write_ms = last_write_ms;
	l->timer.data = l;
	uv_timer_init(celld->loop, &l->timer);
	uv_timer_start(&l->timer, con_linger_tick, CON_LINGER_TICK_MS, CON_LINGER_TICK_MS);
}

static void con_detach(struct con_session *s)
{
	/* The proxy's terminal side, only asked how much is unread (FIONREAD)
	 * until the socket closes; opened no earlier, or the session would keep
	 * the proxy alive after the monitor let go of it (no EIO at a stop). */
	int peer = s->master >= 0 ? ioctl(s->master, TIOCGPTPEER, O_RDONLY | O_NOCTTY |
					  O_NONBLOCK | O_CLOEXEC) : -1;

	if (s->master >= 0)
		close(s->master);
	/* Closing the command socket gives the console back to the monitor. */
	if (s->sock >= 0)
		con_release(s->sock, peer, s->last_write_ms);
	else if (peer >= 0)
		close(peer);
	s->master = s->sock = -1;
}

static void con_finish(struct con_session *s, const char *fail)
{
	struct operation *op = s->op;

	if (s->finished)
		return;
	s->finished = true;
	con_untrack(s);
	con_handle_close(&s->timer);
	con_handle_close(&s->poll);   /* before close(): libuv drops the fd from epoll */
	con_detach(s);
	sb_free(&s->pending);
	for (int i = 0; i < CON_WS_N; i++)
		if (s->chan[i].ws)
			ws_conn_close(s->chan[i].ws);
	log_debug("console %s of %s finished: %s", op_id(op), s->name, fail ? fail : "ok");
	op_finish(op, fail ? -EIO : 0, fail);
	s->op = NULL;
	op_unref(op);
	con_unref(s);   /* alive */
}

/* ---- console <-> websocket ---------------------------------------------------------- */

static void con_poll_cb(uv_poll_t *p, int status, int events);

static void con_rx_pause(struct con_session *s, bool pause)
{
	struct ws_conn *ws = s->chan[CON_WS_TTY].ws;

	if (ws && s->rx_paused != pause)
		ws_conn_pause_rx(ws, pause);
	s->rx_paused = pause;
}

static void con_poll_update(struct con_session *s)
{
	struct ws_conn *ws = s->chan[CON_WS_TTY].ws;
	unsigned ev = 0;

	if (!s->poll || s->finished)
		return;
	if (ws && ws_conn_queued(ws) < CON_HIGH_WATER)
		ev |= UV_READABLE;
	if (s->pending.len)
		ev |= UV_WRITABLE;
	if (ev == s->poll_events)
		return;
	s->poll_events = ev;
	if (ev)
		uv_poll_start(&s->poll->u.poll, (int)ev, con_poll_cb);
	else
		uv_poll_stop(&s->poll->u.poll);
}

/* The console ended (EIO: the container stopped) or the client left. */
static void con_read(struct con_session *s)
{
	struct ws_conn *ws = s->chan[CON_WS_TTY].ws;

	for (int i = 0; i < CON_READS_PER_WAKE && ws && ws_conn_queued(ws) < CON_HIGH_WATER; i++) {
		ssize_t n = read(s->master, con_buf, sizeof(con_buf));
		if (n > 0) {
			if (ws_conn_send(ws, con_buf, (size_t)n, true) < 0)
				return con_finish(s, NULL);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		return con_finish(s, NULL);
	}
}

static void con_flush(struct con_session *s)
{
	size_t off = 0;

	while (s->master >= 0 && off < s->pending.len) {
		ssize_t n = write(s->master, s->pending.buf + off, s->pending.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			return con_finish(s, NULL);
		off += (size_t)n;
		s->last_write_ms = util_now_ms();
	}
	if (off) {
		memmove(s->pending.buf, s->pending.buf + off, s->pending.len - off);
		s->pending.len -= off;
	}
	if (s->pending.len < CON_HIGH_WATER)
		con_rx_pause(s, false);
}

static void con_poll_cb(uv_poll_t *p, int status, int events)
{
	struct con_session *s = ((struct con_handle *)p)->s;

	if (s->finished)
		return;
	if (status < 0)
		return con_finish(s, NULL);
	if (events & UV_WRITABLE)
		con_flush(s);
	if (!s->finished && (events & (UV_READABLE | UV_DISCONNECT)))
		con_read(s);
	con_poll_update(s);
}

static void con_input(struct con_session *s, const void *data, size_t len)
{
	if (!len)
		return;   /* LXD's end-of-stream barrier: a terminal has no half-close */
	if (sb_append(&s->pending, data, len) < 0)
		return con_finish(s, "console: out of memory");
	if (s->attached)
		con_flush(s);
	if (!s->finished && s->pending.len >= CON_HIGH_WATER)
		con_rx_pause(s, true);
	con_poll_update(s);
}

static int con_json_int(json_t *v)
{
	if (json_is_integer(v))
		return (int)json_integer_value(v);
	return json_is_string(v) ? atoi(json_string_value(v)) : -1;
}

static void con_set_size(struct con_session *s)
{
	struct winsize w = { .ws_row = (unsigned short)s->height, .ws_col = (unsigned short)s->width };

	if (s->master >= 0 && s->width && s->height && ioctl(s->master, TIOCSWINSZ, &w) < 0)
		log_debug("console of %s: window size: %s", s->name, strerror(errno));
}

/* LXD's control messages; what cannot be parsed is ignored, as LXD does. */
static void con_control(struct con_session *s, const void *data, size_t len)
{
	_cleanup_json_ json_t *j = json_loadb(data, len, 0, NULL);
	json_t *args = json_object_get(j, "args");
	int w = con_json_int(json_object_get(args, "width"));
	int h = con_json_int(json_object_get(args, "height"));

	if (strcmp(json_string_value(json_object_get(j, "command")) ?: "", "window-resize") ||
	    w <= 0 || h <= 0 || w > 0xffff || h > 0xffff)
		return;
	s->width = (unsigned)w;
	s->height = (unsigned)h;
	con_set_size(s);
}

/* ---- websockets ---------------------------------------------------------------------- */

static void con_ws_message(struct ws_conn *ws, const void *data, size_t len, bool binary,
			   void *ud)
{
	struct con_chan *c = ud;

	(void)ws;
	(void)binary;
	if (c->s->finished)
		return;
	if (c->idx == CON_WS_TTY)
		con_input(c->s, data, len);
	else
		con_control(c->s, data, len);
}

static void con_ws_drain(struct ws_conn *ws, void *ud)
{
	struct con_chan *c = ud;

	(void)ws;
	if (c->idx == CON_WS_TTY)
		con_poll_update(c->s);
}

/* LXD ends the console when either websocket goes. */
static void con_ws_close(struct ws_conn *ws, void *ud)
{
	struct con_chan *c = ud;
	struct con_session *s = c->s;

	(void)ws;
	c->ws = NULL;
	if (c->idx == CON_WS_TTY)
		s->rx_paused = false;
	con_finish(s, NULL);
	con_unref(s);
}

static const struct ws_handler con_ws_handler = {
	.on_message = con_ws_message,
	.on_close = con_ws_close,
	.on_drain = con_ws_drain,
};

/* ---- attaching (worker) ------------------------------------------------------------- */

/* No fork: liblxc asks the container's monitor over its command socket. */
static void con_work(uv_work_t *w)
{
	struct con_session *s = w->data;
	struct lxc_container *c = lxc_container_new(s->name, inst_lxc_lxcpath());
	int tty = 0, master = -1, sock;

	if (!c) {
		snprintf(s->work_err, sizeof(s->work_err), "console of %s: cannot open the liblxc container",
			 s->name);
		return;
	}
	for (int i = 0; i < CON_GETFD_TRIES; i++) {
		tty = 0;
		sock = c->console_getfd(c, &tty, &master);
		if (sock >= 0 || !c->is_running(c))
			break;
		usleep(CON_GETFD_RETRY_US);
	}
	lxc_container_put(c);
	if (sock < 0 || master < 0) {
		if (sock >= 0)
			close(sock);
		if (master >= 0)
			close(master);
		snprintf(s->work_err, sizeof(s->work_err),
			 "Failed to attach to the console of %s: it is in use or the instance is not running",
			 s->name);
		return;
	}
	/* liblxc's fds are not close-on-exec: no helper celld spawns may hold them. */
	fcntl(sock, F_SETFD, FD_CLOEXEC);
	fcntl(master, F_SETFD, FD_CLOEXEC);
	s->work_sock = sock;
	s->work_master = master;
}

static int con_attached(struct con_session *s)
{
	int fl = fcntl(s->master, F_GETFL);

	if (fl < 0 || fcntl(s->master, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	con_set_size(s);
	s->poll = con_handle_new(s);
	if (!s->poll)
		return -ENOMEM;
	uv_poll_init(celld->loop, &s->poll->u.poll, s->master);
	s->attached = true;
	con_flush(s);   /* what the client typed while we attached */
	con_poll_update(s);
	return 0;
}

static void con_work_done(uv_work_t *w, int status)
{
	struct con_session *s = w->data;

	s->attaching = false;
	if (s->finished || status < 0) {
		if (s->work_master >= 0)
			close(s->work_master);
		if (s->work_sock >= 0)
			close(s->work_sock);
		con_finish(s, "console: attach cancelled");
	} else if (s->work_master < 0) {
		con_finish(s, s->work_err);
	} else {
		s->master = s->work_master;
		s->sock = s->work_sock;
		if (con_attached(s) < 0)
			con_finish(s, "console: cannot watch the console");
	}
	con_unref(s);   /* the worker's */
}

static void con_attach(struct con_session *s)
{
	s->attaching = true;
	s->refs++;
	s->work.data = s;
	if (uv_queue_work(celld->loop, &s->work, con_work, con_work_done) < 0) {
		s->attaching = false;
		s->refs--;
		con_finish(s, "console: cannot queue the attach");
	}
}

static int con_op_ws_connect(struct operation *op, const char *fd_name, struct ws_conn *ws,
			     cell_error *err)
{
	struct con_session *s = op_data(op);
	int idx = -1;

	for (int i = 0; i < CON_WS_N; i++)
		if (!strcmp(fd_name, con_ws_names[i]))
			idx = i;
	if (idx < 0)
		return cell_err(err, 400, EINVAL, "Unknown websocket number");
	if (s->finished)
		return cell_err(err, 400, EPIPE, "The console session has already ended");
	s->chan[idx].ws = ws;
	s->refs++;
	ws_conn_set_handler(ws, &con_ws_handler, &s->chan[idx]);
	if (idx == CON_WS_TTY) {
		con_handle_close(&s->timer);
		con_attach(s);
	}
	return 0;
}

/* ---- creation ------------------------------------------------------------------------ */

static void con_connect_timeout(uv_timer_t *t)
{
	struct con_session *s = ((struct con_handle *)t)->s;

	con_handle_close(&s->timer);
	con_finish(s, "Timed out waiting for websockets to connect");
}

static void con_op_free_data(void *data) { con_unref(data); }

static const struct op_ops con_ops = { .ws_connect = con_op_ws_connect,
				       .free_data = con_op_free_data };

static struct con_session *con_alloc(const char *name, unsigned width, unsigned height)
{
	struct con_session *s = calloc(1, sizeof(*s));

	if (!s || !(s->name = strdup(name))) {
		free(s);
		return NULL;
	}
	con_live++;
	s->refs = 2;   /* the operation's data, and alive until finished */
	s->width = width;
	s->height = height;
	s->master = s->sock = s->work_master = s->work_sock = -1;
	for (int i = 0; i < CON_WS_N; i++) {
		s->chan[i].s = s;
		s->chan[i].idx = i;
	}
	return s;
}

static int con_start(struct con_session *s, cell_error *err)
{
	for (int i = 0; i < CON_WS_N; i++)
		if (op_add_secret(s->op, con_ws_names[i]) < 0)
			return cell_err(err, 500, EIO, "console: websocket secrets");
	s->timer = con_handle_new(s);
	if (!s->timer)
		return cell_err(err, 500, ENOMEM, "out of memory");
	uv_timer_init(celld->loop, &s->timer->u.timer);
	uv_timer_start(&s->timer->u.timer, con_connect_timeout, INST_CONSOLE_CONNECT_MS, 0);
	return 0;
}

int inst_console_session_new(const char *name, unsigned width, unsigned height,
			     json_t *resources, struct operation **op_out, cell_error *err)
{
	struct con_session *s = con_alloc(name, width, height);

	if (!s) {
		json_decref(resources);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	s->op = op_create(OP_CLASS_WEBSOCKET, "Showing console", resources, NULL, &con_ops, s);
	if (!s->op) {
		con_free(s);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	op_ref(s->op);
	con_track(s);
	op_start(s->op);
	if (con_start(s, err) < 0) {
		con_finish(s, err->msg);
		return -EIO;
	}
	*op_out = s->op;
	return 0;
}
