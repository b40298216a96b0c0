/*
 * `celld fork*` helpers.  Anything that makes liblxc fork (start, later
 * exec) or needs a single-threaded process (joining a mount namespace) runs
 * in a fresh exec of celld, never in a fork of the threaded daemon.
 *
 *   celld forkstart <lxcpath> <name> <config-path>   -> "ok <init pid>"
 *   celld forkmount <pid> <source> <target> <flags>  -> "ok"
 *        flags: comma list of ro, rbind, file ("-" for none)
 *   celld forkumount <pid> <target>                  -> "ok"
 *   celld forkexec <lxcpath> <name> <cwd> <uid> <gid> <nenv> [KEY=VALUE]... <cmd> [arg]...
 *   celld forkexec-server <celld pid>                (fork_exec.c)
 *
 * The helper answers with one line on stdout: "ok [data]" or
 * "err <errno> <message>".
 *
 * forkexec differs: fds 0-2 are the command's stdio, fd 3 is the start gate
 * (see daemon/exec_io.h) and the answer goes to fd 4: "ok <pid>" (the
 * command's host pid, for signals) once it runs inside the container,
 * blocked on the gate.  One byte on the gate runs the command, EOF aborts
 * it (exit 125).  The helper then waits and exits as the command did: its
 * code, or death by the same signal; 126/127 when it could not be executed.
 * The environment is exactly the KEY=VALUEs given.
 *
 * fork_exec_spawn usually has the exec server clone the helper instead of
 * exec'ing it (fork_exec.c says why); the helper is celld's child all the
 * same, and the server adds a line "pid <helper pid>" to the answer pipe,
 * before or after the helper's own line.
 */
#ifndef CELL_DAEMON_FORK_H
#define CELL_DAEMON_FORK_H

#include <stddef.h>
#include <sys/types.h>

#include "common/error.h"

/* main() of the helper: argv[1] is the subcommand.  Returns the exit code. */
int fork_main(int argc, char **argv);
/* The forkexec helpers (fork_exec.c), for fork_main. */
int fork_exec_main(int argc, char **argv);
int fork_exec_server_main(int argc, char **argv);

/* Daemon side: posix_spawn /proc/self/exe with argv (argv[0] is replaced),
 * no inherited fds, default signals; read the answer line and reap the
 * child.  On "ok", copies the data into reply (may be NULL).  [worker] */
int fork_run(const char *const argv[], char *reply, size_t len, cell_error *err);
/* Daemon side, without waiting: fds[i] becomes fd i of the helper (-1:
 * /dev/null) for i < nfds, nothing else is inherited.  The caller reaps.
 * posix_spawn only (vfork): cheap enough for the loop thread. */
int fork_spawn(const char *const argv[], const int *fds, int nfds, pid_t *pid, cell_error *err);

/* A command in a running container, through `celld forkexec`. */
struct fork_exec {
	const char *lxcpath, *name;
	pid_t init;           /* the container's init: its cgroups become the command's */
	char *const *argv;    /* the command, NULL-terminated, looked up in env's PATH */
	char *const *env;     /* "KEY=VALUE", NULL-terminated: the whole environment */
	const char *cwd;      /* NULL: the container's / */
	uid_t uid;            /* inside the container */
	gid_t gid;
	int fds[5];           /* the helper's 0-4: stdio, start gate, answer pipe */
};
/* Start the helper without waiting for it.  *helper is its pid, or 0 when
 * the exec server starts it: then the answer pipe names it ("pid <n>";
 * none if the server could not).  Either way it is celld's child and the
 * caller reaps it.  A few syscalls: fine on the loop thread.  [loop] */
int fork_exec_spawn(const struct fork_exec *e, pid_t *helper, cell_error *err);

#endif
