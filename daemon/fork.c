/*
 * The `celld fork*` helpers (child side) and fork_run/fork_spawn (daemon
 * side); forkexec is fork_exec.c's.
 * Protocol and subcommands: fork.h.
 */
#include "daemon/fork.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lxc/lxccontainer.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/idmap.h"
#include "common/util.h"

extern char **environ;

/* liblxc's own start timeout is shorter; this only catches a wedged helper. */
#define FORK_TIMEOUT_MS (120 * 1000)
#define FORK_REPLY_MAX 2048

/* ---- child side ---------------------------------------------------------------- */

static int reply_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int reply_ok(const char *fmt, ...)
{
	va_list ap;

	fputs("ok ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	return 0;
}

static int reply_err(int e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int reply_err(int e, const char *fmt, ...)
{
	char msg[FORK_REPLY_MAX / 2];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)   /* one line */
		if (*p == '\n')
			*p = ' ';
	printf("err %d %s\n", e > 0 ? e : EIO, msg);
	fflush(stdout);
	return 1;
}

/* With shadow's newuidmap installed liblxc insists on it, and newuidmap
 * only grants ranges from /etc/subuid.  Without entries for root, celld's map
 * is the default 1000000:1000000000 which root may write itself; liblxc does
 * so when it cannot find the tools on PATH (the container's init gets a clean
 * environment either way). */
static void start_prepare_idmap(struct lxc_container *c)
{
	char buf[64];
	uint32_t s, r;

	if (c->get_config_item(c, "lxc.idmap", buf, sizeof(buf)) <= 0)
		return;
	if (idmap_read_subid("/etc/subuid", "root", &s, &r, NULL) < 0 ||
	    idmap_read_subid("/etc/subgid", "root", &s, &r, NULL) < 0)
		unsetenv("PATH");
}

static int fork_start(int argc, char **argv)
{
	struct lxc_container *c;
	_cleanup_free_ char *def = NULL;
	pid_t pid;
	int rc;

	if (argc != 5)
		return reply_err(EINVAL, "usage: celld forkstart <lxcpath> <name> <config>");
	c = lxc_container_new(argv[3], argv[2]);
	if (!c)
		return reply_err(ENOMEM, "cannot create the liblxc container object");
	def = c->config_file_name(c);
	if (!def || strcmp(def, argv[4]) != 0) {
		c->clear_config(c);
		if (!c->load_config(c, argv[4])) {
			lxc_container_put(c);
			return reply_err(EINVAL, "cannot load %s", argv[4]);
		}
	}
	if (c->is_running(c)) {
		lxc_container_put(c);
		return reply_err(EBUSY, "already running");
	}
	start_prepare_idmap(c);
	c->want_daemonize(c, true);
	c->want_close_all_fds(c, true);
	if (!c->start(c, 0, NULL)) {
		rc = reply_err(EIO, "%s", c->error_string ? c->error_string : "liblxc failed to start it");
		lxc_container_put(c);
		return rc;
	}
	pid = c->init_pid(c);
	lxc_container_put(c);
	return pid > 0 ? reply_ok("%d", (int)pid) : reply_err(ESRCH, "the container exited at once");
}

/* The host uid/gid of the container's root, for what we create inside it. */
static void ns_root_ids(pid_t pid, uid_t *uid, gid_t *gid)
{
	const char *files[2] = { "uid_map", "gid_map" };
	unsigned long ids[2] = { 0, 0 };

	for (int i = 0; i < 2; i++) {
		char path[64];
		unsigned long ns, host, range;
		_cleanup_fclose_ FILE *f = NULL;

		snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, files[i]);
		f = fopen(path, "re");
		while (f && fscanf(f, "%lu %lu %lu", &ns, &host, &range) == 3)
			if (ns == 0)
				ids[i] = host;
	}
	*uid = (uid_t)ids[0];
	*gid = (gid_t)ids[1];
}

/* mkdir -p inside the joined mount namespace; new components get the
 * container root's ids so the container can manage them. */
static int mkdir_owned(const char *path, uid_t uid, gid_t gid)
{
	char buf[PATH_MAX];

	if (strlen(path) >= sizeof(buf))
		return -ENAMETOOLONG;
	strcpy(buf, path);
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(buf, 0755) == 0) {
			if (lchown(buf, uid, gid) < 0)
				return -errno;
		} else if (errno != EEXIST) {
			return -errno;
		}
		if (!(*p = c))
			break;
	}
	return 0;
}

static int make_target(const char *target, bool file, uid_t uid, gid_t gid)
{
	_cleanup_free_ char *parent = strdup(target);
	char *slash = parent ? strrchr(parent, '/') : NULL;
	int fd, rc;

	if (!file)
		return mkdir_owned(target, uid, gid);
	if (!slash)
		return -EINVAL;
	*slash = '\0';
	if (*parent && (rc = mkdir_owned(parent, uid, gid)) < 0)
		return rc;
	fd = open(target, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return errno == EEXIST ? 0 : -errno;
	if (fchown(fd, uid, gid) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	close(fd);
	return 0;
}

/* After joining a container's mount namespace /proc is the container's:
 * skip exit handlers that would look for us there (LeakSanitizer's does). */
static _Noreturn void leave_ns(int rc)
{
	fflush(stdout);
	_exit(rc);
}

static int join_mntns(pid_t pid)
{
	char path[64];
	_cleanup_close_ int fd = -1;

	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNS) < 0)
		return -errno;
	return 0;
}

static pid_t parse_pid(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return *end || v <= 0 || v > INT_MAX ? 0 : (pid_t)v;
}

static bool has_flag(const char *list, const char *flag)
{
	size_t len = strlen(flag);

	for (const char *p = list; *p; p += strcspn(p, ","), p += *p == ',') {
		if (strncmp(p, flag, len) == 0 && (p[len] == ',' || p[len] == '\0'))
			return true;
	}
	return false;
}

/* A detached copy of the source is taken in the host's mount namespace and
 * moved into the container's, so no host path is ever resolved inside it. */
static int fork_mount(int argc, char **argv)
{
	_cleanup_close_ int tree = -1;
	pid_t pid;
	bool ro, rbind, file;
	uid_t uid;
	gid_t gid;
	int rc;

	if (argc != 6 || !(pid = parse_pid(argv[2])))
		return reply_err(EINVAL, "usage: celld forkmount <pid> <source> <target> <flags>");
	ro = has_flag(argv[5], "ro");
	rbind = has_flag(argv[5], "rbind");
	file = has_flag(argv[5], "file");
	tree = open_tree(AT_FDCWD, argv[3],
			 OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (rbind ? AT_RECURSIVE : 0));
	if (tree < 0)
		return reply_err(errno, "open %s: %s", argv[3], strerror(errno));
	if (ro) {
		struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY };
		if (mount_setattr(tree, "", AT_EMPTY_PATH | (rbind ? AT_RECURSIVE : 0), &attr,
				  sizeof(attr)) < 0)
			return reply_err(errno, "make %s read-only: %s", argv[3], strerror(errno));
	}
	ns_root_ids(pid, &uid, &gid);
	if ((rc = join_mntns(pid)) < 0)
		return reply_err(-rc, "join the mount namespace of %d: %s", (int)pid, strerror(-rc));
	if ((rc = make_target(argv[4], file, uid, gid)) < 0)
		leave_ns(reply_err(-rc, "create %s in the container: %s", argv[4], strerror(-rc)));
	if (move_mount(tree, "", AT_FDCWD, argv[4], MOVE_MOUNT_F_EMPTY_PATH) < 0)
		leave_ns(reply_err(errno, "mount on %s in the container: %s", argv[4], strerror(errno)));
	leave_ns(reply_ok("mounted"));
}

static int fork_umount(int argc, char **argv)
{
	pid_t pid;
	int rc;

	if (argc != 4 || !(pid = parse_pid(argv[2])))
		return reply_err(EINVAL, "usage: celld forkumount <pid> <target>");
	if ((rc = join_mntns(pid)) < 0)
		return reply_err(-rc, "join the mount namespace of %d: %s", (int)pid, strerror(-rc));
	if (umount2(argv[3], MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
		leave_ns(reply_err(errno, "unmount %s in the container: %s", argv[3], strerror(errno)));
	leave_ns(reply_ok("unmounted"));
}

int fork_main(int argc, char **argv)
{
	static const struct { const char *name; int (*fn)(int, char **); } cmds[] = {
		{ "forkstart", fork_start },
		{ "forkmount", fork_mount },
		{ "forkumount", fork_umount },
		{ "forkexec", fork_exec_main },
		{ "forkexec-server", fork_exec_server_main },
	};

	/* The reply pipe must never carry anything but the answer line. */
	setvbuf(stdout, NULL, _IOFBF, 0);
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc, argv);
	return reply_err(EINVAL, "unknown helper \"%s\"", argv[1]);
}

/* ---- daemon side --------------------------------------------------------------- */

/* Default dispositions and no mask: the container's processes inherit them. */
static int spawn_init(posix_spawnattr_t *attr, posix_spawn_file_actions_t *fa, bool setsid)
{
	sigset_t none, all;
	short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;

	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	if (setsid)   /* a ^C at celld's terminal must not reach a starting container */
		flags |= POSIX_SPAWN_SETSID;
	posix_spawnattr_init(attr);
	posix_spawn_file_actions_init(fa);
	if (posix_spawnattr_setsigmask(attr, &none) || posix_spawnattr_setsigdefault(attr, &all) ||
	    posix_spawnattr_setflags(attr, flags))
		return -ENOMEM;
	return 0;
}

static int spawn(const char *const argv[], posix_spawnattr_t *attr, posix_spawn_file_actions_t *fa,
		 pid_t *pid)
{
	size_t argc = 0;

	while (argv[argc])
		argc++;
	const char *args[argc + 1];
	memcpy(args, argv, (argc + 1) * sizeof(char *));
	args[0] = "celld";
	return -posix_spawn(pid, "/proc/self/exe", fa, attr, (char *const *)args, environ);
}

/* The sources go above every target first, so no dup2 clobbers a later
 * source; the copies are close-on-exec and closed after the spawn. */
int fork_spawn(const char *const argv[], const int *fds, int nfds, pid_t *pid, cell_error *err)
{
	posix_spawnattr_t attr;
	posix_spawn_file_actions_t fa;
	int tmp[16], rc;

	if (nfds < 0 || nfds > (int)ARRAY_SIZE(tmp))
		return cell_err(err, 500, EINVAL, "%s: too many fds", argv[1]);
	rc = spawn_init(&attr, &fa, false);
	for (int i = 0; i < nfds; i++) {
		tmp[i] = fds[i] >= 0 ? fcntl(fds[i], F_DUPFD_CLOEXEC, 64) : -1;
		if (fds[i] >= 0 && tmp[i] < 0 && rc == 0)
			rc = -errno;
	}
	for (int i = 0; rc == 0 && i < nfds; i++)
		rc = -(tmp[i] >= 0 ? posix_spawn_file_actions_adddup2(&fa, tmp[i], i)
				   : posix_spawn_file_actions_addopen(&fa, i, "/dev/null", O_RDWR, 0));
	if (rc == 0)
		rc = -posix_spawn_file_actions_addclosefrom_np(&fa, nfds);
	if (rc == 0)
		rc = spawn(argv, &attr, &fa, pid);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	for (int i = 0; i < nfds; i++)
		if (tmp[i] >= 0)
			close(tmp[i]);
	return rc < 0 ? cell_err_sys(err, 500, -rc, "%s: spawn helper", argv[1]) : 0;
}

/* Up to one line or EOF, bounded by FORK_TIMEOUT_MS. */
static int read_reply(int fd, char *buf, size_t len)
{
	size_t off = 0;
	int64_t deadline = util_now_ms() + FORK_TIMEOUT_MS;

	while (off < len - 1 && !memchr(buf, '\n', off)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - util_now_ms();
		ssize_t n;
		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)left) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		n = read(fd, buf + off, len - 1 - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	buf[off] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static int reap(pid_t pid, int *status)
{
	while (waitpid(pid, status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

static int parse_reply(const char *cmd, const char *line, int status, char *reply, size_t len,
		       cell_error *err)
{
	char *end;
	long e;

	if (strncmp(line, "ok", 2) == 0 && (line[2] == ' ' || line[2] == '\0')) {
		if (reply)
			snprintf(reply, len, "%s", line[2] ? line + 3 : "");
		return 0;
	}
	if (strncmp(line, "err ", 4) == 0) {
		e = strtol(line + 4, &end, 10);
		if (e <= 0 || e > 4095)
			e = EIO;
		return cell_err(err, 500, (int)e, "%s", *end == ' ' ? end + 1 : end);
	}
	if (WIFSIGNALED(status))
		return cell_err(err, 500, EIO, "%s helper killed by signal %d", cmd, WTERMSIG(status));
	return cell_err(err, 500, EIO, "%s helper exited with %d and no answer", cmd,
			WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

int fork_run(const char *const argv[], char *reply, size_t len, cell_error *err)
{
	posix_spawnattr_t attr;
	posix_spawn_file_actions_t fa;
	int pipefd[2], status = 0, rc;
	char line[FORK_REPLY_MAX];
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return cell_err_sys(err, 500, errno, "%s: pipe", argv[1]);
	rc = spawn_init(&attr, &fa, true);
	if (rc == 0 && (posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) ||
			posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1) ||
			posix_spawn_file_actions_addclosefrom_np(&fa, 3)))
		rc = -ENOMEM;
	if (rc == 0)
		rc = spawn(argv, &attr, &fa, &pid);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(pipefd[1]);
	if (rc < 0) {
		close(pipefd[0]);
		return cell_err_sys(err, 500, -rc, "%s: spawn helper", argv[1]);
	}
	rc = read_reply(pipefd[0], line, sizeof(line));
	close(pipefd[0]);
	if (rc == -ETIMEDOUT)
		kill(pid, SIGKILL);
	reap(pid, &status);
	if (rc < 0)
		return cell_err_sys(err, 500, -rc, "%s helper", argv[1]);
	return parse_reply(argv[1], line, status, reply, len, err);
}
