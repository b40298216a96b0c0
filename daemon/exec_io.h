/*
 * The daemon side of an exec session (POST /1.0/instances/<name>/exec),
 * independent of containers: the operation, its websockets and the bridge
 * between them and a process that someone else spawns.
 *
 * Life of a session (loop thread throughout):
 *
 *   1. exec_session_new() creates the operation (websocket class with the
 *      secrets "0" ("1", "2") "control" in metadata.fds when wait_for_ws,
 *      else a task) and the child's side of the plumbing: three pipes, the
 *      pty slave the caller handed in (interactive), /dev/null, or the
 *      record-output files; plus the start gate.
 *   2. The caller spawns the process with those fds (struct exec_child) and
 *      calls exec_session_started() with its pid, or exec_session_failed().
 *      The child must block on the gate before running the command: read
 *      one byte from `gate`; a byte means go, EOF without a byte means
 *      abort (exit without running anything).  This is how
 *      wait-for-websocket holds the command until every websocket is
 *      connected, as LXD does, while the expensive part of spawning (attach
 *      to the container) overlaps with the client connecting: the operation
 *      may be answered before exec_session_started(), and kills and
 *      signals asked for until then are sent once the process is known.
 *   3. The session bridges websockets and fds with back-pressure both ways,
 *      applies control messages, reaps the process and, once its output has
 *      drained, finishes the operation with metadata.return = exit status
 *      (128+n when killed by signal n).
 *
 * The process passed to exec_session_started() must be a direct child of
 * celld (it is reaped with waitid) whose exit status is the command's:
 * `celld forkexec` relays the attached command's status as its own.
 */
#ifndef CELL_DAEMON_EXEC_IO_H
#define CELL_DAEMON_EXEC_IO_H

#include <stdbool.h>
#include <sys/types.h>
#include <jansson.h>

#include "common/error.h"

struct operation;
struct exec_session;

/* LXD gives up on clients that do not connect every websocket this fast. */
#define EXEC_CONNECT_TIMEOUT_MS 5000

struct exec_opts {
	bool interactive;      /* one pty: websocket "0" carries both directions */
	bool wait_for_ws;      /* bridge to websockets; false: no websockets at all */
	bool record_output;    /* !wait_for_ws: stdout/stderr into files (LXD record-output) */
	unsigned width, height; /* interactive: initial window size, 0 leaves it */
	/* interactive: the pty, both taken (closed unused without websockets).
	 * The caller makes it because a container's pty belongs in the
	 * container's devpts, owned by its root. */
	int pty_master, pty_slave;
	/* record_output: directory for exec_<op id>.stdout/.stderr (the
	 * instance's log dir), and its URL ("/1.0/instances/c1/logs") for
	 * metadata.output. */
	const char *record_dir;
	const char *record_url;
};

/* What the process gets.  Owned by the session: valid until
 * exec_session_started()/exec_session_failed(), which close them. */
struct exec_child {
	int stdio[3];   /* becomes the process's 0, 1, 2 (interactive: the slave thrice) */
	int gate;       /* read end of the start gate (blocking, close-on-exec) */
};

/* Create the operation and its session.  `resources` and `metadata` are
 * taken (metadata gets "fds" added: LXD puts command, environment and
 * interactive beside it).  On success *op_out has one reference owned by
 * the operations registry: answer with resp_async(). */
int exec_session_new(const struct exec_opts *o, const char *description, json_t *resources,
		     json_t *metadata, struct operation **op_out, struct exec_session **s_out,
		     struct exec_child *child, cell_error *err);
/* The process runs (blocked on the gate): watch it.  `pidfd` (taken) may be
 * -1 to have the session open it.  Closes the child's fds in celld. */
int exec_session_started(struct exec_session *s, pid_t pid, int pidfd, cell_error *err);
/* Spawning failed: the operation fails with `msg`. */
void exec_session_failed(struct exec_session *s, const char *msg);
/* Deliver control "signal" messages to this process (pidfd taken) rather
 * than to the one being waited for: forkexec reports the attached command. */
void exec_session_set_signal_pidfd(struct exec_session *s, int pidfd);

/* The operation, until the session finishes (NULL after). */
struct operation *exec_session_op(struct exec_session *s);

/* Kill every running session's process and stop waiting for clients
 * (daemon shutdown).  Also runs by itself once celld->shutting_down is set. */
void exec_sessions_shutdown(void);
/* Sessions not yet torn down (tests, leak checks). */
unsigned exec_sessions_live(void);

/* Exit status as LXD reports it: the code, or 128+n for signal n. */
int exec_status_from_siginfo(int code, int status);

#endif
