/*
 * `celld forkexec` (a command in a running container, protocol in fork.h)
 * and `celld forkexec-server`, which starts it without an execve of celld.
 *
 * Where the time of an exec went, measured: an execve of celld (twenty
 * shared libraries to map and relocate, ~3 ms here) and loading liblxc
 * (~1 ms) before any work, and then liblxc's move of the command into the
 * container's cgroups, ~7 ms on its own (below).  Hence:
 *
 * The exec server.  Exec'd once, it loads liblxc once and clones a helper
 * per request (a SOCK_SEQPACKET message: the forkexec argv, the helper's
 * five fds, the container's cgroup2 leaf).  The clone has CLONE_PARENT,
 * so the helper is celld's child exactly as an exec'd one (exec_io reaps
 * it and takes its exit status as the command's); the server writes its
 * pid to the helper's answer pipe.  It runs while execs come and leaves
 * after FSRV_IDLE_MS without one (CELL_EXEC_SERVER_IDLE_MS overrides, 0
 * turns it off): an idle celld holds no liblxc.  Without a server, or
 * when it cannot take a request, celld exec's the helper as before.  A
 * request still queued when the server dies (it never should) goes with
 * it: that exec fails, the next one starts a new server.
 *
 * The cgroups.  liblxc moves an attached process by writing its pid to
 * cgroup.procs of every hierarchy.  Such a write takes the kernel's global
 * cgroup_threadgroup_rwsem for writing, and the first writer after a quiet
 * spell waits for an RCU grace period.  Two ways in skip that lock:
 * clone3(CLONE_INTO_CGROUP) creates a process inside a cgroup2 directly,
 * and on a v1 hierarchy a single-threaded process moves itself by writing
 * "0" to `tasks`.  So the server clones the helper into the container's
 * cgroup2 leaf (<payload>/.lxc, where liblxc puts attached processes); the
 * helper joins <payload> of the v1 hierarchies itself and attaches without
 * LXC_ATTACH_MOVE_TO_CGROUP, so the command inherits all of them.  The
 * helper thus waits for the command inside the container's cgroups (not in
 * its pid namespace).  When a step is not possible (no .lxc leaf yet, a
 * hierarchy without the payload) liblxc moves the command the usual way.
 */
#include "daemon/fork.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <lxc/lxccontainer.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "daemon/daemon.h"

#define FORKEXEC_GATE 3
#define FORKEXEC_REPLY 4
#define FORKEXEC_NFDS 5
#define FORKEXEC_ABORTED 125

#define FSRV_SOCK 3
#define FSRV_IDLE_MS 30000
/* command and environment are each limited to 1 MiB by the API */
#define FSRV_MSG_MAX (3u << 20)
#define FSRV_SNDBUF (8 << 20)

/* ---- cgroups ------------------------------------------------------------------------ */

/* fn(mount point, cgroup2?) for each mount of a whole cgroup hierarchy. */
static void cg_each_mount(void (*fn)(const char *mnt, bool v2, void *arg), void *arg)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	_cleanup_free_ char *line = NULL;
	char root[PATH_MAX], mnt[PATH_MAX], fstype[32];
	size_t cap = 0;

	while (f && getline(&line, &cap, f) > 0) {
		const char *sep = strstr(line, " - ");
		if (!sep || sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2 ||
		    sscanf(sep + 3, "%31s", fstype) != 1 || strcmp(root, "/") != 0)
			continue;
		if (!strcmp(fstype, "cgroup") || !strcmp(fstype, "cgroup2"))
			fn(mnt, fstype[6] == '2', arg);
	}
}

struct cg_join {
	const char *payload;
	int rc;
};

static void cg_join_v1(const char *mnt, bool v2, void *arg)
{
	struct cg_join *j = arg;
	char path[PATH_MAX];
	int fd;

	if (v2 || j->rc < 0)
		return;
	if (snprintf(path, sizeof(path), "%s/%s/tasks", mnt, j->payload) >= (int)sizeof(path)) {
		j->rc = -ENAMETOOLONG;
		return;
	}
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "0", 1) != 1)
		j->rc = -errno;
	if (fd >= 0)
		close(fd);
}

/* 0 once this (single-threaded) process is in <payload> of every v1
 * hierarchy; the server cloned it into the cgroup2 one. */
static int cg_join_payload(const char *payload)
{
	struct cg_join j = { payload, 0 };

	if (!*payload || strchr(payload, '/') || !strcmp(payload, ".") || !strcmp(payload, ".."))
		return -EINVAL;
	cg_each_mount(cg_join_v1, &j);
	return j.rc;
}

/* ---- the helper --------------------------------------------------------------------- */

struct exec_payload {
	char **argv;
};

/* Runs inside the container (liblxc's attached process). */
static int exec_in_container(void *data)
{
	struct exec_payload *p = data;
	ssize_t n;
	char go;

	close(FORKEXEC_REPLY);
	do
		n = read(FORKEXEC_GATE, &go, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		_exit(FORKEXEC_ABORTED);
	close(FORKEXEC_GATE);
	if (isatty(0)) {   /* interactive: the pty becomes the controlling terminal */
		setsid();
		ioctl(0, TIOCSCTTY, 0);
	}
	execvp(p->argv[0], p->argv);
	_exit(errno == ENOENT ? 127 : 126);
}

/* Die the way the command died, so waitid in celld sees its status. */
static _Noreturn void exit_like(int status)
{
	struct rlimit no_core = { 0, 0 };

	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		sigset_t set;
		setrlimit(RLIMIT_CORE, &no_core);
		signal(sig, SIG_DFL);
		sigemptyset(&set);
		sigaddset(&set, sig);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
		kill(getpid(), sig);
	}
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

static int exec_reply(bool ok, int e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int exec_reply(bool ok, int e, const char *fmt, ...)
{
	char msg[512], line[600];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = ok ? snprintf(line, sizeof(line), "ok %s\n", msg)
	       : snprintf(line, sizeof(line), "err %d %s\n", e, msg);
	if (write(FORKEXEC_REPLY, line, (size_t)n) < 0) {
		/* nobody listens: the command still runs or aborts on the gate */
	}
	close(FORKEXEC_REPLY);
	return ok ? 0 : 1;
}

static void fexec_drop_stdio(void)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	for (int i = 0; null >= 0 && i < 3; i++)
		dup2(null, i);
	if (null > 2)
		close(null);
}

/* `payload`: the container's payload cgroup when the server cloned us into
 * its cgroup2 leaf (or there is no cgroup2), else NULL or "". */
static int fexec_run(int argc, char **argv, const char *payload)
{
	lxc_attach_options_t o = LXC_ATTACH_OPTIONS_DEFAULT;
	struct exec_payload p;
	struct lxc_container *c;
	pid_t pid;
	int status, nenv;

	if (argc < 9 || (nenv = atoi(argv[7])) < 0 || 8 + nenv >= argc)
		return exec_reply(false, EINVAL, "usage: celld forkexec <lxcpath> <name> <cwd> <uid> <gid> <nenv> [env]... <cmd>...");
	/* liblxc takes a NULL-terminated env list: cut argv after the env. */
	char *env[nenv + 1];
	memcpy(env, argv + 8, (size_t)nenv * sizeof(char *));
	env[nenv] = NULL;
	p.argv = argv + 8 + nenv;
	o.env_policy = LXC_ATTACH_CLEAR_ENV;
	o.extra_env_vars = env;
	o.initial_cwd = strcmp(argv[4], "-") ? argv[4] : NULL;
	o.uid = (uid_t)strtoul(argv[5], NULL, 10);
	o.gid = (gid_t)strtoul(argv[6], NULL, 10);
	if (payload && *payload && cg_join_payload(payload) == 0)
		o.attach_flags &= ~LXC_ATTACH_MOVE_TO_CGROUP;
	c = lxc_container_new(argv[3], argv[2]);
	if (!c)
		return exec_reply(false, ENOMEM, "cannot create the liblxc container object");
	/* celld has just seen it running: ask the monitor again only to
	 * explain a failure (a round trip less for every exec). */
	if (c->attach(c, exec_in_container, &p, &o, &pid) < 0) {
		bool running = c->is_running(c);
		lxc_container_put(c);
		return running ? exec_reply(false, EIO, "cannot attach to the instance")
			       : exec_reply(false, ESRCH, "the instance is not running");
	}
	lxc_container_put(c);
	close(FORKEXEC_GATE);   /* only the command reads it */
	exec_reply(true, 0, "%d", (int)pid);
	/* The command's output ends when it (and what it left behind) closes
	 * it, not when we get round to exiting. */
	fexec_drop_stdio();
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			_exit(1);
	exit_like(status);
}

int fork_exec_main(int argc, char **argv) { return fexec_run(argc, argv, NULL); }

/* ---- the exec server ---------------------------------------------------------------- */

/* The request's fds become the helper's 0-4; nothing else stays open. */
static _Noreturn void srv_helper(int argc, char **argv, const char *payload, const int *fds)
{
	int tmp[FORKEXEC_NFDS];

	for (int i = 0; i < FORKEXEC_NFDS; i++)
		if ((tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 64)) < 0)
			_exit(1);
	for (int i = 0; i < FORKEXEC_NFDS; i++)
		if (dup2(tmp[i], i) < 0)
			_exit(1);
	close_range(FORKEXEC_NFDS, ~0U, 0);
	signal(SIGPIPE, SIG_DFL);   /* the command must not inherit the server's SIG_IGN */
	_exit(fexec_run(argc, argv, payload));
}

/* The helper's pid, or -errno.  A raw clone3: glibc has no wrapper; the
 * child only runs fexec_run, as liblxc's own raw clones do. */
static long srv_clone(int argc, char **argv, const char *payload, const int *fds, int cgfd)
{
	struct clone_args ca = { .flags = CLONE_PARENT };
	long r;

	if (cgfd >= 0) {
		ca.flags |= CLONE_INTO_CGROUP;
		ca.cgroup = (uint64_t)cgfd;
	}
	r = syscall(SYS_clone3, &ca, sizeof(ca));
	if (r < 0 && cgfd >= 0) {   /* EBUSY: .lxc is no leaf now; liblxc finds its way */
		ca.flags = CLONE_PARENT;
		ca.cgroup = 0;
		payload = "";
		r = syscall(SYS_clone3, &ca, sizeof(ca));
	}
	if (r == 0)
		srv_helper(argc, argv, payload, fds);
	return r < 0 ? -errno : r;
}

/* "<payload>\0celld\0forkexec\0...\0": the payload and a NULL-terminated
 * argv pointing into msg (caller frees the array); argc, or -1. */
static int srv_split(char *msg, size_t len, const char **payload, char ***argv)
{
	int n = 0, k = 0;

	if (!len || msg[len - 1] != '\0')
		return -1;
	for (size_t i = 0; i < len; i++)
		n += msg[i] == '\0';
	if (n < 3 || !(*argv = calloc((size_t)n, sizeof(char *))))
		return -1;
	*payload = msg;
	for (char *s = msg + strlen(msg) + 1; s < msg + len; s += strlen(s) + 1)
		(*argv)[k++] = s;
	return strcmp((*argv)[1], "forkexec") ? -1 : k;
}

static void srv_answer(int fd, long pid)
{
	char line[128];
	int n = pid > 0 ? snprintf(line, sizeof(line), "pid %ld\n", pid)
			: snprintf(line, sizeof(line), "err %ld cannot start the exec helper: %s\n",
				   -pid, strerror((int)-pid));

	if (write(fd, line, (size_t)n) < 0) {
		/* celld gave up on it: the helper, if any, finds out by itself */
	}
}

static void srv_handle(char *msg, size_t len, const int *fds, int nfds)
{
	_cleanup_free_ char **argv = NULL;
	const char *payload = NULL;
	int argc = nfds >= FORKEXEC_NFDS ? srv_split(msg, len, &payload, &argv) : -1;

	if (nfds < FORKEXEC_NFDS)
		return;
	srv_answer(fds[FORKEXEC_REPLY],
		   argc < 0 ? -EINVAL
			    : srv_clone(argc, argv, payload, fds, nfds > FORKEXEC_NFDS ? fds[5] : -1));
}

/* One request; 0 at EOF (celld is done with us). */
static ssize_t srv_recv(char *buf, size_t len, int *fds, int *nfds)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE((FORKEXEC_NFDS + 1) * sizeof(int))];
	} ctl;
	struct iovec iov = { buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
			     .msg_controllen = sizeof(ctl.b) };
	ssize_t n = recvmsg(FSRV_SOCK, &mh, MSG_CMSG_CLOEXEC);

	*nfds = 0;
	if (n <= 0)
		return n;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k && *nfds < FORKEXEC_NFDS + 1; i++)
			memcpy(&fds[(*nfds)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		n = 1;   /* answered as a bad request */
	return n;
}

int fork_exec_server_main(int argc, char **argv)
{
	static char msg[FSRV_MSG_MAX];

	/* Never outlive celld, even killed: it alone reaps our helpers. */
	if (argc != 3 || prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != atoi(argv[2]))
		return 1;
	/* An answer pipe celld already closed must not end the server. */
	signal(SIGPIPE, SIG_IGN);
	lxc_get_version();   /* liblxc loads here, once for every helper */
	for (;;) {
		int fds[FORKEXEC_NFDS + 1], nfds;
		ssize_t n = srv_recv(msg, sizeof(msg), fds, &nfds);
		if (n == 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return 1;
		if (n > 0)
			srv_handle(msg, (size_t)n, fds, nfds);
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
	}
}

/* ---- daemon side: where the command goes ------------------------------------------ */

static char cg2_mnt[PATH_MAX];

static void cg2_note(const char *mnt, bool v2, void *arg)
{
	if (v2 && !cg2_mnt[0])
		snprintf(cg2_mnt, sizeof(cg2_mnt), "%s", mnt);
}

static void cg2_find(void) { cg_each_mount(cg2_note, NULL); }

/* The cgroup2 mount point, "" without one (mounts stay put under celld). */
static const char *cg2_mount(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, cg2_find);
	return cg2_mnt;
}

/* The top-level cgroup holding init in every hierarchy: its payload
 * cgroup (init itself may have moved further down, as systemd does). */
static int init_payload(pid_t init, char *out, size_t len)
{
	char path[64], buf[4096];
	_cleanup_close_ int fd = -1;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)init);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || (n = read(fd, buf, sizeof(buf) - 1)) <= 0)
		return -ESRCH;
	buf[n] = '\0';
	out[0] = '\0';
	for (char *line = buf, *next; *line; line = next) {
		char *cg = strchr(line, ':');
		size_t clen;
		next = line + strcspn(line, "\n");
		if (*next)
			*next++ = '\0';
		if (!cg || !(cg = strchr(cg + 1, ':')) || cg[1] != '/' || !cg[2])
			continue;   /* "/": a hierarchy liblxc left alone */
		cg += 2;
		clen = strcspn(cg, "/");
		if (!*out && clen < len)
			snprintf(out, len, "%.*s", (int)clen, cg);
		else if (strlen(out) != clen || strncmp(out, cg, clen))
			return -EINVAL;
	}
	return *out ? 0 : -ENOENT;
}

/* The container's cgroup2 leaf for the helper (-1: none) and its payload
 * cgroup; payload "" when liblxc has to move the command: no .lxc leaf
 * yet, or init's cgroups are not one payload. */
static int exec_cgroup(pid_t init, char *payload, size_t len)
{
	char path[PATH_MAX];
	const char *mnt = cg2_mount();
	int fd = -1;

	if (init <= 0 || init_payload(init, payload, len) < 0) {
		payload[0] = '\0';
		return -1;
	}
	if (*mnt && (snprintf(path, sizeof(path), "%s/%s/.lxc", mnt, payload) >= (int)sizeof(path) ||
		     (fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0))
		payload[0] = '\0';
	return fd;
}

/* ---- daemon side: the server ---------------------------------------------------------- */

struct fsrv {
	uv_poll_t poll;        /* its pidfd: reaps it whenever it ends */
	uv_timer_t idle;
	uv_prepare_t watch;    /* notices celld's shutdown */
	int sock, pidfd, handles;
	pid_t pid;
};

static struct fsrv *fsrv_cur;   /* the one taking requests */

static unsigned fsrv_idle_ms(void)
{
	const char *v = getenv("CELL_EXEC_SERVER_IDLE_MS");

	return v && *v ? (unsigned)strtoul(v, NULL, 10) : FSRV_IDLE_MS;
}

static void fsrv_closed(uv_handle_t *h)
{
	struct fsrv *f = h->data;

	if (--f->handles)
		return;
	close(f->pidfd);
	free(f);
}

/* Take no more requests.  The server exits at EOF once it has answered
 * what is queued; at shutdown it is killed.  Reaped in fsrv_exited. */
static void fsrv_retire(struct fsrv *f, bool kill)
{
	if (f == fsrv_cur)
		fsrv_cur = NULL;
	if (kill)
		pidfd_send_signal(f->pidfd, SIGKILL, NULL, 0);
	if (f->sock < 0)
		return;
	close(f->sock);
	f->sock = -1;
	uv_close((uv_handle_t *)&f->idle, fsrv_closed);
	uv_close((uv_handle_t *)&f->watch, fsrv_closed);
}

static void fsrv_exited(uv_poll_t *p, int status, int events)
{
	struct fsrv *f = p->data;
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, (id_t)f->pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid == 0)
		return;   /* not yet */
	if (si.si_pid && !(si.si_code == CLD_EXITED && si.si_status == 0))
		log_debug("exec server %d ended (code %d, status %d)", (int)f->pid, si.si_code,
			  si.si_status);
	fsrv_retire(f, false);
	uv_close((uv_handle_t *)&f->poll, fsrv_closed);
}

static void fsrv_idle_cb(uv_timer_t *t) { fsrv_retire(t->data, false); }

static void fsrv_watch_cb(uv_prepare_t *p)
{
	if (celld->shutting_down)
		fsrv_retire(p->data, true);
}

static void fsrv_handles(struct fsrv *f)
{
	f->poll.data = f->idle.data = f->watch.data = f;
	uv_poll_init(celld->loop, &f->poll, f->pidfd);
	uv_poll_start(&f->poll, UV_READABLE, fsrv_exited);
	uv_timer_init(celld->loop, &f->idle);
	uv_unref((uv_handle_t *)&f->idle);
	uv_prepare_init(celld->loop, &f->watch);
	uv_prepare_start(&f->watch, fsrv_watch_cb);
	uv_unref((uv_handle_t *)&f->watch);
	f->handles = 3;
}

static struct fsrv *fsrv_start(void)
{
	struct fsrv *f = calloc(1, sizeof(*f));
	char ppid[16];
	const char *argv[] = { "celld", "forkexec-server", ppid, NULL };
	cell_error err = { 0 };
	int sv[2] = { -1, -1 }, size = FSRV_SNDBUF;

	snprintf(ppid, sizeof(ppid), "%d", (int)getpid());
	if (!f || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 ||
	    fork_spawn(argv, (int[]){ -1, -1, -1, sv[1] }, 4, &f->pid, &err) < 0) {
		log_debug("exec server: %s", err.msg[0] ? err.msg : strerror(errno));
		goto fail;
	}
	if ((f->pidfd = pidfd_open(f->pid, 0)) < 0) {
		kill(f->pid, SIGKILL);
		waitpid(f->pid, NULL, 0);
		goto fail;
	}
	close(sv[1]);
	f->sock = sv[0];
	/* Requests up to FSRV_MSG_MAX fit in one message (root may exceed wmem_max). */
	setsockopt(f->sock, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
	fsrv_handles(f);
	return f;
fail:
	if (sv[0] >= 0) {
		close(sv[0]);
		close(sv[1]);
	}
	free(f);
	return NULL;
}

static int fsrv_sendmsg(int sock, const char *msg, size_t len, const int *fds, int nfds)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE((FORKEXEC_NFDS + 1) * sizeof(int))];
	} ctl;
	struct iovec iov = { (void *)msg, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
			     .msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int)) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

	memset(&ctl, 0, sizeof(ctl));
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
	memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	/* A server that falls behind is not waited for: celld exec's instead. */
	return sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)len ? 0 : -errno;
}

/* 0 once the server has the request; else the caller exec's the helper. */
static int fsrv_send(const char *payload, const char *const argv[], const int *fds, int cgfd)
{
	size_t len = strlen(payload) + 1, off = 0;
	int all[FORKEXEC_NFDS + 1], nfds = FORKEXEC_NFDS, rc = -EPIPE;
	_cleanup_free_ char *msg = NULL;

	for (size_t i = 0; argv[i]; i++)
		len += strlen(argv[i]) + 1;
	if (len > FSRV_MSG_MAX || !(msg = malloc(len)))
		return -E2BIG;
	memcpy(msg, payload, strlen(payload) + 1);
	off = strlen(payload) + 1;
	for (size_t i = 0; argv[i]; off += strlen(argv[i]) + 1, i++)
		memcpy(msg + off, argv[i], strlen(argv[i]) + 1);
	memcpy(all, fds, FORKEXEC_NFDS * sizeof(int));
	if (cgfd >= 0)
		all[nfds++] = cgfd;
	/* A server that died since the last request: once more with a new one. */
	for (int tries = 0; tries < 2 && (rc == -EPIPE || rc == -ECONNRESET); tries++) {
		if (!fsrv_cur && !(fsrv_cur = fsrv_start()))
			return -EAGAIN;
		rc = fsrv_sendmsg(fsrv_cur->sock, msg, len, all, nfds);
		if (rc == -EPIPE || rc == -ECONNRESET)
			fsrv_retire(fsrv_cur, true);
	}
	if (rc == 0)
		uv_timer_start(&fsrv_cur->idle, fsrv_idle_cb, fsrv_idle_ms(), 0);
	return rc;
}

/* ---- daemon side: spawning ---------------------------------------------------------- */

int fork_exec_spawn(const struct fork_exec *e, pid_t *helper, cell_error *err)
{
	size_t nenv = 0, ncmd = 0, k = 0;
	char uid[16], gid[16], n[24], payload[NAME_MAX + 1];
	int cg, rc;

	while (e->env && e->env[nenv])
		nenv++;
	while (e->argv && e->argv[ncmd])
		ncmd++;
	if (!ncmd)
		return cell_err(err, 400, EINVAL, "exec in %s: no command", e->name);
	snprintf(uid, sizeof(uid), "%u", (unsigned)e->uid);
	snprintf(gid, sizeof(gid), "%u", (unsigned)e->gid);
	snprintf(n, sizeof(n), "%zu", nenv);
	const char *argv[8 + nenv + ncmd + 1];
	argv[k++] = "celld", argv[k++] = "forkexec", argv[k++] = e->lxcpath, argv[k++] = e->name;
	argv[k++] = e->cwd && *e->cwd ? e->cwd : "-", argv[k++] = uid, argv[k++] = gid;
	argv[k++] = n;
	for (size_t i = 0; i < nenv; i++)
		argv[k++] = e->env[i];
	for (size_t i = 0; i < ncmd; i++)
		argv[k++] = e->argv[i];
	argv[k] = NULL;
	*helper = 0;
	if (fsrv_idle_ms() > 0) {
		cg = exec_cgroup(e->init, payload, sizeof(payload));
		rc = fsrv_send(payload, argv, e->fds, cg);
		if (cg >= 0)
			close(cg);
		if (rc == 0)
			return 0;
		log_debug("exec in %s: exec server: %s; exec'ing the helper", e->name, strerror(-rc));
	}
	if (fork_spawn(argv, e->fds, FORKEXEC_NFDS, helper, err) < 0)
		return cell_err_wrap(err, -EIO, "exec in %s", e->name);
	return 0;
}
