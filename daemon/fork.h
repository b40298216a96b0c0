/*
 * `celld fork*` helpers.  Anything that makes liblxc fork (start, later
 * exec) or needs a single-threaded process (joining a mount namespace) runs
 * in a fresh exec of celld, never in a fork of the threaded daemon.
 *
 *   celld forkstart <lxcpath> <name> <config-path>   -> "ok <init pid>"
 *   celld forkmount <pid> <source> <target> <flags>  -> "ok"
 *        flags: comma list of ro, rbind, file ("-" for none)
 *   celld forkumount <pid> <target>                  -> "ok"
 *
 * The helper answers with one line on stdout: "ok [data]" or
 * "err <errno> <message>".
 */
#ifndef CELL_DAEMON_FORK_H
#define CELL_DAEMON_FORK_H

#include <stddef.h>

#include "common/error.h"

/* main() of the helper: argv[1] is the subcommand.  Returns the exit code. */
int fork_main(int argc, char **argv);

/* Daemon side: posix_spawn /proc/self/exe with argv (argv[0] is replaced),
 * no inherited fds, default signals; read the answer line and reap the
 * child.  On "ok", copies the data into reply (may be NULL).  [worker] */
int fork_run(const char *const argv[], char *reply, size_t len, cell_error *err);

#endif
