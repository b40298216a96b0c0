/*
 * Console sessions (POST /1.0/instances/<name>/console): a websocket
 * operation bridging the container's console to websocket "0", with
 * window-resize on "control", as LXD's.
 *
 * The console comes from liblxc's console_getfd: the container's liblxc
 * monitor hands over the master of a proxy pty for /dev/console through its
 * command socket (no fork), on a worker thread, once "0" connects.  The
 * monitor serves one console client at a time; the socket it answered on
 * holds the console until it is closed.
 *
 * Loop thread only.  The session ends (operation Success) when the console
 * ends (the container stopped), or when the client closes "0" or "control";
 * it fails when "0" does not connect within INST_CONSOLE_CONNECT_MS or the
 * console cannot be had (busy, stopped meanwhile).
 */
#ifndef CELL_DAEMON_INST_CONSOLE_H
#define CELL_DAEMON_INST_CONSOLE_H

#include <jansson.h>

#include "common/error.h"

#define INST_CONSOLE_CONNECT_MS 5000

struct operation;

/* Create and start the operation (metadata.fds "0" and "control").
 * `resources` is taken.  *op_out is the registry's: answer with
 * resp_async(). */
int inst_console_session_new(const char *name, unsigned width, unsigned height,
			     json_t *resources, struct operation **op_out, cell_error *err);
/* Sessions not yet freed (tests, leak checks). */
unsigned inst_console_sessions_live(void);

#endif
