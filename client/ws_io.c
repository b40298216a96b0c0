#include "client/ws_io.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "common/cleanup.h"
#include "common/util.h"

/* One websocket message per read: 64 KiB is what the daemon sends too, and
 * stays under a quarter of a unix socket's default send buffer, so a
 * socket that polls writable takes it whole without blocking.  TLS sockets
 * get less, for the same reason against a smaller TCP window. */
#define WSIO_CHUNK (64u << 10)
#define WSIO_CHUNK_TLS (16u << 10)

/* ------------------------------------------------------- websockets */

/* The websocket handshake's SHA-1 is OpenSSL's first use on a unix socket:
 * without this it would read and parse openssl.cnf and register every
 * cipher and digest by name, ~0.3 ms of `cell exec`, for a SHA-1 fetched
 * from the provider anyway (TLS remotes have initialised it, config
 * included, long before). */
static void crypto_init_lean(struct cli_client *c)
{
	if (c->unix_path)
		OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_ADD_ALL_CIPHERS |
					    OPENSSL_INIT_NO_ADD_ALL_DIGESTS, NULL);
}

int cli_op_websocket(struct cli_client *c, const char *operation, json_t *op_md, const char *name,
		     wsc **out, cell_error *err)
{
	const char *secret = json_string_value(json_object_get(json_object_get(op_md, "fds"), name));
	_cleanup_free_ char *esc_id = httpc_escape(cli_op_id(operation));
	_cleanup_free_ char *esc_secret = secret ? httpc_escape(secret) : NULL;
	_cleanup_free_ char *path = NULL, *full = NULL;

	*out = NULL;
	if (!secret)
		return cell_err(err, 502, EPROTO, "The server did not send a websocket for \"%s\"", name);
	if (!esc_id || !esc_secret ||
	    !(path = xasprintf("/1.0/operations/%s/websocket?secret=%s", esc_id, esc_secret)) ||
	    !(full = cli_path(c, path)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (c->debug)
		fprintf(stderr, "DEBUG: websocket %s\n", full);
	crypto_init_lean(c);
	return wsc_upgrade(c->http, full, NULL, out, err);
}

static int send_control(wsc *control, json_t *msg, cell_error *err)
{
	_cleanup_free_ char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;

	json_decref(msg);
	if (!text)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return wsc_send_text(control, text, err);
}

int cli_ws_send_resize(wsc *control, int width, int height, cell_error *err)
{
	char w[16], h[16];

	/* LXD sends the numbers as strings. */
	snprintf(w, sizeof(w), "%d", width);
	snprintf(h, sizeof(h), "%d", height);
	return send_control(control, json_pack("{s:s, s:{s:s, s:s}}", "command", "window-resize", "args",
					       "width", w, "height", h), err);
}

int cli_ws_send_signal(wsc *control, int signo, cell_error *err)
{
	return send_control(control, json_pack("{s:s, s:i}", "command", "signal", "signal", signo), err);
}

/* ------------------------------------------------------------ output */

/* All of it, waiting when the fd is non-blocking (a shared terminal may be). */
static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pf = { .fd = fd, .events = POLLOUT };
			poll(&pf, 1, -1);
			continue;
		}
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Nobody reads our output any more (a closed pipe): say so with a close,
 * so the command gets EPIPE as it would locally.  What is already on its
 * way is still read (and dropped) until the server's close: a server
 * blocked writing to us might never read ours. */
static void stream_output_gone(struct cli_ws_stream *s)
{
	s->out_fd = -1;
	wsc_send_close(s->ws, WSC_CLOSE_NORMAL, NULL, NULL);
}

static void stream_received(struct cli_ws_stream *s, struct wsc_msg *m)
{
	switch (m->opcode) {
	case WSC_BINARY:
		if (s->out_fd >= 0 && m->data.len && write_all(s->out_fd, m->data.buf, m->data.len) < 0)
			stream_output_gone(s);
		break;
	case WSC_TEXT:
		/* LXD's end-of-stream barrier; on other channels text is ignored. */
		if (s->output)
			s->ended = true;
		break;
	default:   /* WSC_CLOSE: already answered by wsc_recv */
		s->ended = true;
		break;
	}
}

static void stream_recv(struct cli_ws_stream *s)
{
	struct wsc_msg m;
	cell_error ignored = { 0 };

	/* A vanished server ends the stream; the operation tells what happened. */
	if (wsc_recv(s->ws, &m, &ignored) < 0) {
		s->ended = true;
		return;
	}
	stream_received(s, &m);
	wsc_msg_free(&m);
}

/* ------------------------------------------------------------- input */

static size_t stream_chunk(const struct cli_ws_stream *s)
{
	return wsc_ssl(s->ws) ? WSIO_CHUNK_TLS : WSIO_CHUNK;
}

static void stream_input_done(struct cli_ws_stream *s)
{
	s->in_done = true;
	s->pending = 0;
	s->eof_pending = !s->ended && s->eof != CLI_WS_EOF_NONE;
}

static int stream_read_input(struct cli_ws_loop *l, struct cli_ws_stream *s, cell_error *err)
{
	char *raw;
	ssize_t n;

	/* The filter writes into buf from a raw copy in buf's upper half. */
	if (!s->buf && !(s->buf = malloc(2 * WSIO_CHUNK + 1)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	raw = l->filter ? s->buf + WSIO_CHUNK + 1 : s->buf;
	n = read(s->in_fd, raw, stream_chunk(s));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0) {   /* end of input, or an input that fails: the same to the command */
		stream_input_done(s);
		return 0;
	}
	s->pending = l->filter ? l->filter(l->arg, raw, (size_t)n, s->buf, &l->stop) : (size_t)n;
	return 0;
}

static void stream_send(struct cli_ws_stream *s)
{
	cell_error ignored = { 0 };
	int rc = 0;

	if (s->pending) {
		rc = wsc_send(s->ws, WSC_BINARY, s->buf, s->pending, &ignored);
		s->pending = 0;
	} else if (s->eof_pending) {
		s->eof_pending = false;
		if (s->eof == CLI_WS_EOF_CLOSE)
			rc = wsc_send_close(s->ws, WSC_CLOSE_NORMAL, NULL, &ignored);
		else
			rc = wsc_send(s->ws, WSC_BINARY, "", 0, &ignored);
	}
	/* The server no longer takes input: the command's stdin is gone. */
	if (rc < 0 && !s->in_done)
		stream_input_done(s);
	if (rc < 0)
		s->eof_pending = false;
}

/* -------------------------------------------------------------- loop */

static bool loop_done(const struct cli_ws_loop *l)
{
	bool any = false;

	if (l->stop)
		return true;
	for (int i = 0; i < l->n; i++) {
		if (l->s[i].essential && !l->s[i].ended)
			return false;
		any |= l->s[i].essential;
	}
	return any;
}

static bool wants_send(const struct cli_ws_stream *s)
{
	return !s->ended && (s->pending || s->eof_pending);
}

static bool wants_input(const struct cli_ws_stream *s)
{
	return s->in_fd >= 0 && !s->in_done && !s->ended && !s->pending;
}

enum { SLOT_WS, SLOT_IN };

struct loop_poll {
	struct pollfd pf[2 * CLI_WS_MAX + 1];
	int who[2 * CLI_WS_MAX + 1][2];   /* stream, SLOT_* ; -1 for the signalfd */
	int n;
};

static void poll_add(struct loop_poll *p, int fd, short events, int stream, int slot)
{
	p->pf[p->n] = (struct pollfd){ .fd = fd, .events = events };
	p->who[p->n][0] = stream;
	p->who[p->n][1] = slot;
	p->n++;
}

static void loop_build(struct cli_ws_loop *l, struct loop_poll *p)
{
	p->n = 0;
	for (int i = 0; i < l->n; i++) {
		struct cli_ws_stream *s = &l->s[i];
		if (!s->ws)
			continue;
		if (!s->ended)
			poll_add(p, wsc_fd(s->ws), (short)(POLLIN | (wants_send(s) ? POLLOUT : 0)), i, SLOT_WS);
		if (wants_input(s))
			poll_add(p, s->in_fd, POLLIN, i, SLOT_IN);
	}
	if (l->sigfd >= 0)
		poll_add(p, l->sigfd, POLLIN, -1, SLOT_IN);
}

static int loop_signal(struct cli_ws_loop *l, cell_error *err)
{
	struct signalfd_siginfo si;

	while (read(l->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		int rc = l->on_signal ? l->on_signal(l->arg, (int)si.ssi_signo, err) : 0;
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int loop_event(struct cli_ws_loop *l, const struct pollfd *pf, const int who[2], cell_error *err)
{
	struct cli_ws_stream *s = who[0] >= 0 ? &l->s[who[0]] : NULL;

	if (!pf->revents)
		return 0;
	if (!s)
		return loop_signal(l, err);
	if (who[1] == SLOT_IN)
		return stream_read_input(l, s, err);
	if (pf->revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))
		stream_recv(s);
	if ((pf->revents & POLLOUT) && wants_send(s))
		stream_send(s);
	return 0;
}

/* Whole messages already buffered (ours or OpenSSL's) never wake poll(). */
static void loop_drain_buffered(struct cli_ws_loop *l)
{
	for (int i = 0; i < l->n && !loop_done(l); i++)
		while (l->s[i].ws && !l->s[i].ended && wsc_pending(l->s[i].ws))
			stream_recv(&l->s[i]);
}

int cli_ws_loop_run(struct cli_ws_loop *l, cell_error *err)
{
	struct loop_poll p;
	int rc = 0;

	while (rc == 0 && !loop_done(l)) {
		loop_drain_buffered(l);
		if (loop_done(l))
			break;
		loop_build(l, &p);
		if (p.n == 0)
			break;   /* nothing left that could ever end the loop */
		if (poll(p.pf, (nfds_t)p.n, -1) < 0) {
			if (errno == EINTR)
				continue;
			return cell_err_sys(err, 500, errno, "poll");
		}
		for (int i = 0; rc == 0 && i < p.n && !l->stop; i++)
			rc = loop_event(l, &p.pf[i], p.who[i], err);
	}
	return rc;
}

void cli_ws_loop_free(struct cli_ws_loop *l)
{
	for (int i = 0; i < l->n; i++) {
		free(l->s[i].buf);
		l->s[i].buf = NULL;
	}
}

/* ----------------------------------------------------------- signals */

int cli_sigs_open(struct cli_sigs *s, const int *sigs, cell_error *err)
{
	sigset_t set;

	s->fd = -1;
	s->active = false;
	sigemptyset(&set);
	for (const int *p = sigs; *p; p++)
		sigaddset(&set, *p);
	if (sigprocmask(SIG_BLOCK, &set, &s->old) < 0)
		return cell_err_sys(err, 500, errno, "block signals");
	s->active = true;
	s->fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->fd < 0) {
		int e = errno;
		cli_sigs_close(s);
		return cell_err_sys(err, 500, e, "signalfd");
	}
	return 0;
}

void cli_sigs_close(struct cli_sigs *s)
{
	struct signalfd_siginfo si;

	if (s->fd >= 0) {
		while (read(s->fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
			;
		close(s->fd);
		s->fd = -1;
	}
	if (s->active)
		sigprocmask(SIG_SETMASK, &s->old, NULL);
	s->active = false;
}

/* ---------------------------------------------------------- terminal */

int cli_tty_raw(struct cli_tty *t, int fd, cell_error *err)
{
	struct termios raw;

	t->fd = fd;
	t->raw = false;
	if (!isatty(fd))
		return 0;
	if (tcgetattr(fd, &t->saved) < 0)
		return cell_err_sys(err, 500, errno, "terminal");
	raw = t->saved;
	cfmakeraw(&raw);
	if (tcsetattr(fd, TCSANOW, &raw) < 0)
		return cell_err_sys(err, 500, errno, "terminal raw mode");
	t->raw = true;
	return 0;
}

void cli_tty_restore(struct cli_tty *t)
{
	if (t->raw)
		tcsetattr(t->fd, TCSANOW, &t->saved);
	t->raw = false;
}

bool cli_tty_size(const int *fds, int n, int *width, int *height)
{
	struct winsize ws;

	for (int i = 0; i < n; i++)
		if (ioctl(fds[i], TIOCGWINSZ, &ws) == 0 && ws.ws_col && ws.ws_row) {
			*width = ws.ws_col;
			*height = ws.ws_row;
			return true;
		}
	return false;
}

/* ------------------------------------------------------ pure helpers */

#define CTRL_A '\001'

size_t cli_escape_filter(struct cli_escape *e, const char *in, size_t len, char *out, bool *detach)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (e->armed) {
			e->armed = false;
			if (c == 'q') {
				*detach = true;
				return o;
			}
			out[o++] = CTRL_A;   /* not an escape after all: send it as typed */
		}
		if (c == CTRL_A)
			e->armed = true;
		else
			out[o++] = c;
	}
	return o;
}

static bool env_name_start(const char *p, size_t n)
{
	size_t i = 0;

	if (!n || !(isalpha((unsigned char)p[0]) || p[0] == '_'))
		return false;
	while (i < n && (isalnum((unsigned char)p[i]) || p[i] == '_'))
		i++;
	return i == n || p[i] == '=';
}

static int env_set(json_t *env, const char *item, size_t n, cell_error *err)
{
	_cleanup_free_ char *s = strndup(item, n);
	char *eq = s ? strchr(s, '=') : NULL;
	const char *v;

	if (!s)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (!*s || *s == '=')
		return cell_err(err, 400, EINVAL, "Bad environment variable: %s", s);
	if (eq)
		*eq = '\0';
	v = eq ? eq + 1 : "";   /* lxc: a bare NAME is set empty */
	json_object_set_new(env, s, json_string(v));
	return 0;
}

int cli_exec_parse_env(const char *joined, json_t *env, cell_error *err)
{
	const char *start = joined;

	if (!joined || !*joined)
		return 0;
	for (const char *p = joined;; p++) {
		size_t rest = strcspn(p + (*p == ','), ",");
		bool split = *p == '\0' || (*p == ',' && env_name_start(p + 1, rest) && memchr(p + 1, '=', rest));
		int rc;

		if (!split)
			continue;
		if ((rc = env_set(env, start, (size_t)(p - start), err)) < 0)
			return rc;
		if (!*p)
			return 0;
		start = p + 1;
	}
}

int cli_exec_interactive(const char *mode, bool force_t, bool force_T, bool no_stdin, bool in_tty,
			 bool out_tty, bool *interactive, cell_error *err)
{
	enum cli_exec_mode_flag m;

	if (!mode || !strcmp(mode, "auto"))
		m = CLI_EXEC_AUTO;
	else if (!strcmp(mode, "interactive"))
		m = CLI_EXEC_INTERACTIVE;
	else if (!strcmp(mode, "non-interactive"))
		m = CLI_EXEC_NONINTERACTIVE;
	else
		return cell_err(err, 400, EINVAL, "Invalid mode: %s", mode);
	if (force_t && force_T)
		return cell_err(err, 400, EINVAL, "You can't pass -t and -T at the same time");
	if (m != CLI_EXEC_AUTO && (force_t || force_T))
		return cell_err(err, 400, EINVAL, "You can't pass -t or -T at the same time as --mode");
	if (no_stdin)
		*interactive = false;
	else if (force_t || m == CLI_EXEC_INTERACTIVE)
		*interactive = true;
	else if (force_T || m == CLI_EXEC_NONINTERACTIVE)
		*interactive = false;
	else
		*interactive = in_tty && out_tty;
	return 0;
}

int cli_parse_id(const char *flag, const char *s, unsigned *out, cell_error *err)
{
	unsigned long long v = 0;
	char *end = NULL;

	errno = 0;
	if (s && isdigit((unsigned char)*s))
		v = strtoull(s, &end, 10);
	if (!end || *end || errno || v > 0xffffffffULL)
		return cell_err(err, 400, EINVAL, "invalid argument \"%s\" for \"--%s\" flag", s ? s : "", flag);
	*out = (unsigned)v;
	return 0;
}
