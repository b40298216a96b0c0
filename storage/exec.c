/*
 * Run btrfs, mkfs.btrfs, zfs, zpool, unsquashfs from argv arrays.  posix_spawn
 * (vfork underneath) is safe in the threaded daemon, unlike a fork with
 * locks held, and no shell ever sees an argument.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "storage/internal.h"

extern char **environ;

/* The daemon may run with a PATH lacking the sbin dirs these tools live in. */
static char *find_tool(const char *name)
{
	static const char *const fallback[] = { "/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
						"/usr/bin", "/sbin", "/bin" };
	const char *path = getenv("PATH");

	if (strchr(name, '/'))
		return access(name, X_OK) == 0 ? strdup(name) : NULL;
	if (path) {
		_cleanup_free_ char *dup = strdup(path);
		char *save = NULL;
		for (char *d = dup ? strtok_r(dup, ":", &save) : NULL; d;
		     d = strtok_r(NULL, ":", &save)) {
			char *c = xasprintf("%s/%s", d, name);
			if (c && access(c, X_OK) == 0)
				return c;
			free(c);
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(fallback); i++) {
		char *c = xasprintf("%s/%s", fallback[i], name);
		if (c && access(c, X_OK) == 0)
			return c;
		free(c);
	}
	return NULL;
}

bool stor_have_tool(const char *name)
{
	_cleanup_free_ char *p = find_tool(name);
	return p != NULL;
}

static int spawn_setup(posix_spawn_file_actions_t *fa, posix_spawnattr_t *attr,
		       const struct stor_exec_io *io, int out_w, int err_w)
{
	sigset_t none, dfl;

	sigemptyset(&none);
	sigfillset(&dfl);
	posix_spawn_file_actions_init(fa);
	posix_spawnattr_init(attr);
	/* The daemon's loop blocks or ignores signals its children must not
	 * inherit (SIGPIPE ignored would hide a closed migration socket). */
	posix_spawnattr_setsigmask(attr, &none);
	posix_spawnattr_setsigdefault(attr, &dfl);
	posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	if (io && io->in_fd >= 0)
		posix_spawn_file_actions_adddup2(fa, io->in_fd, 0);
	else
		posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
	if (io && io->out_fd >= 0)
		posix_spawn_file_actions_adddup2(fa, io->out_fd, 1);
	else if (out_w >= 0)
		posix_spawn_file_actions_adddup2(fa, out_w, 1);
	else
		posix_spawn_file_actions_addopen(fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(fa, err_w, 2);
	/* Whatever the daemon has open without O_CLOEXEC stays out. */
	return posix_spawn_file_actions_addclosefrom_np(fa, 3);
}

/* Drain the child's stdout (optional) and stderr until both close. */
static void drain(int out_r, strbuf *out, int err_r, strbuf *errbuf)
{
	struct pollfd pfd[2] = { { .fd = err_r, .events = POLLIN }, { .fd = out_r, .events = POLLIN } };
	char buf[8192];

	while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		for (int i = 0; i < 2; i++) {
			ssize_t n;
			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			n = read(pfd[i].fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				pfd[i].fd = -1;
				continue;
			}
			/* stderr is only for the message: keep the tail bounded. */
			if (i == 0 && errbuf->len > 16384)
				sb_reset(errbuf);
			sb_append(i == 0 ? errbuf : out, buf, (size_t)n);
		}
	}
}

/* The last non-empty lines of stderr, joined, for the error message. */
static const char *err_tail(strbuf *sb)
{
	char *s;

	if (!sb->buf)
		return "";
	while (sb->len && (sb->buf[sb->len - 1] == '\n' || sb->buf[sb->len - 1] == ' '))
		sb->buf[--sb->len] = '\0';
	s = sb->buf;
	if (sb->len > 400)
		s = sb->buf + sb->len - 400;
	for (char *c = s; *c; c++)
		if (*c == '\n')
			*c = ' ';
	return s;
}

static int exec_status(const char *const argv[], int status, strbuf *errbuf, cell_error *err)
{
	const char *a1 = argv[1] ? argv[1] : "";
	const char *tail = err_tail(errbuf);

	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFSIGNALED(status))
		return cell_err(err, 500, EIO, "%s %s: killed by signal %d%s%s", argv[0], a1,
				WTERMSIG(status), *tail ? ": " : "", tail);
	return cell_err(err, 500, EIO, "%s %s: %s", argv[0], a1,
			*tail ? tail : "failed without a message");
}

int stor_exec(const char *const argv[], const struct stor_exec_io *io, cell_error *err)
{
	_cleanup_free_ char *bin = find_tool(argv[0]);
	_cleanup_sb_ strbuf errbuf = { 0 };
	strbuf *out = io && io->out_fd < 0 ? io->out : NULL;
	int errp[2] = { -1, -1 }, outp[2] = { -1, -1 };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	pid_t pid;
	int rc, status;

	if (!bin)
		return cell_err(err, 500, ENOENT, "%s: not found (is it installed?)", argv[0]);
	if (pipe2(errp, O_CLOEXEC) < 0 || (out && pipe2(outp, O_CLOEXEC) < 0)) {
		rc = cell_err_sys(err, 500, errno, "%s: pipe", argv[0]);
		goto out;
	}
	spawn_setup(&fa, &attr, io, outp[1], errp[1]);
	rc = posix_spawn(&pid, bin, &fa, &attr, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc != 0) {
		rc = cell_err_sys(err, 500, rc, "run %s", bin);
		goto out;
	}
	close(errp[1]);
	errp[1] = -1;
	if (outp[1] >= 0) {
		close(outp[1]);
		outp[1] = -1;
	}
	drain(outp[0], out, errp[0], &errbuf);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			rc = cell_err_sys(err, 500, errno, "wait for %s", argv[0]);
			goto out;
		}
	}
	rc = exec_status(argv, status, &errbuf, err);
out:
	for (int i = 0; i < 2; i++) {
		if (errp[i] >= 0)
			close(errp[i]);
		if (outp[i] >= 0)
			close(outp[i]);
	}
	return rc;
}

struct pipe_side {
	const char *const *argv;
	int out_fd;
	int rc;
	cell_error err;
};

static void *pipe_sender(void *data)
{
	struct pipe_side *s = data;
	struct stor_exec_io io = { .in_fd = -1, .out_fd = s->out_fd };

	s->rc = stor_exec(s->argv, &io, &s->err);
	/* The receiver sees EOF only once no write end is left. */
	close(s->out_fd);
	return NULL;
}

int stor_exec_pipe(const char *const from[], const char *const to[], cell_error *err)
{
	struct pipe_side s = { .argv = from };
	struct stor_exec_io io = { .out_fd = -1 };
	pthread_t th;
	int p[2], rc;

	if (pipe2(p, O_CLOEXEC) < 0)
		return cell_err_sys(err, 500, errno, "%s: pipe", from[0]);
	s.out_fd = p[1];
	if ((rc = pthread_create(&th, NULL, pipe_sender, &s)) != 0) {
		close(p[0]);
		close(p[1]);
		return cell_err_sys(err, 500, rc, "%s: thread", from[0]);
	}
	io.in_fd = p[0];
	rc = stor_exec(to, &io, err);
	/* A receiver that quit leaves the sender on a pipe nobody reads:
	 * closing our end turns its writes into EPIPE. */
	close(p[0]);
	pthread_join(th, NULL);
	if (s.rc < 0 && rc == 0) {
		*err = s.err;
		rc = s.rc;
	}
	return rc;
}
