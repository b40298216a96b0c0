/*
 * POST /1.0/instances/<name>/exec, as LXD's, and the record-output files.
 *
 * This file is glue: the request is checked and its environment completed
 * here (LXD's defaults), the session (operation, websockets, exit status)
 * is exec_io's, and the process is `celld forkexec` (fork_exec_spawn),
 * attached to every namespace and cgroup of the container with its id map.
 * Everything on the loop thread is a few syscalls: the spawn is a message
 * to the exec server (or a vfork), and the helper's "ok <pid>" answer is
 * read from a uv_poll, never waited for.
 *
 * record-output files are written to <lxc dir>/exec-output/; their URLs
 * (metadata.output) are under /1.0/instances/<name>/logs/exec-output/,
 * which api_instances_logs.c serves.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "common/cleanup.h"
#include "common/idmap.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/daemon.h"
#include "daemon/events.h"
#include "daemon/exec_io.h"
#include "daemon/fork.h"
#include "daemon/http.h"
#include "daemon/inst_files.h"
#include "daemon/inst_lxc.h"
#include "daemon/instances.h"
#include "daemon/operations.h"
#include "daemon/router.h"

#define XEXEC_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* Command and environment travel on the helper's argv: stay well under
 * ARG_MAX so a huge request is a 400, not a failed spawn. */
#define XEXEC_ARGS_MAX (1u << 20)
#define XEXEC_ID_MAX 4294967294u   /* (uid_t)-1 is "no change", never an id */

struct xreq {
	char **argv;          /* NULL-terminated */
	json_t *env;          /* the whole environment, as metadata shows it */
	char **envp;
	const char *cwd;      /* borrowed from body or env */
	uint32_t uid, gid;
	pid_t init;           /* the container's init when the request was checked */
	struct exec_opts o;
	char *record_dir, *record_url;
};

static void xreq_clear(struct xreq *r)
{
	cell_strvfreep(&r->argv);
	cell_strvfreep(&r->envp);
	json_decref(r->env);
	free(r->record_dir);
	free(r->record_url);
	/* Still ours only when exec_session_new was never reached. */
	if (r->o.pty_master >= 0)
		close(r->o.pty_master);
	if (r->o.pty_slave >= 0)
		close(r->o.pty_slave);
}

/* ---- request body ----------------------------------------------------------------- */

static int xreq_uint(json_t *body, const char *key, json_int_t max, uint32_t *out,
		     cell_error *err)
{
	json_t *v = json_object_get(body, key);

	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
		return cell_err(err, 400, EINVAL, "Invalid \"%s\": must be an integer from 0 to %lld",
				key, (long long)max);
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

static int xreq_bool(json_t *body, const char *key, bool *out, cell_error *err)
{
	json_t *v = json_object_get(body, key);

	*out = json_is_true(v);
	if (v && !json_is_boolean(v) && !json_is_null(v))
		return cell_err(err, 400, EINVAL, "Invalid \"%s\": must be true or false", key);
	return 0;
}

static int xreq_command(json_t *cmd, struct xreq *r, size_t *bytes, cell_error *err)
{
	size_t n = json_array_size(cmd), i;
	json_t *v;

	if (!json_is_array(cmd) || n == 0)
		return cell_err(err, 400, EINVAL, "Missing command: \"command\" must be a non-empty list of strings");
	r->argv = calloc(n + 1, sizeof(char *));
	if (!r->argv)
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_array_foreach(cmd, i, v) {
		if (!json_is_string(v))
			return cell_err(err, 400, EINVAL, "Invalid command: every argument must be a string");
		if (!(r->argv[i] = strdup(json_string_value(v))))
			return cell_err(err, 500, ENOMEM, "out of memory");
		*bytes += strlen(r->argv[i]) + 1;
	}
	if (!*r->argv[0])
		return cell_err(err, 400, EINVAL, "Invalid command: the program name is empty");
	return 0;
}

/* The client's variables; defaults come later and never override them. */
static int xreq_env_user(json_t *env, struct xreq *r, cell_error *err)
{
	const char *k;
	json_t *v;

	r->env = json_object();
	if (!r->env)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (!env || json_is_null(env))
		return 0;
	if (!json_is_object(env))
		return cell_err(err, 400, EINVAL, "Invalid \"environment\": must be an object of strings");
	json_object_foreach(env, k, v) {
		if (!*k || strchr(k, '='))
			return cell_err(err, 400, EINVAL, "Invalid environment variable name \"%s\"", k);
		if (!json_is_string(v))
			return cell_err(err, 400, EINVAL, "Environment variable \"%s\" must be a string", k);
		json_object_set(r->env, k, v);
	}
	return 0;
}

static int xreq_modes(json_t *body, struct xreq *r, cell_error *err)
{
	struct exec_opts *o = &r->o;
	uint32_t w, h;

	if (xreq_bool(body, "interactive", &o->interactive, err) < 0 ||
	    xreq_bool(body, "wait-for-websocket", &o->wait_for_ws, err) < 0 ||
	    xreq_bool(body, "record-output", &o->record_output, err) < 0 ||
	    xreq_uint(body, "width", 65535, &w, err) < 0 ||
	    xreq_uint(body, "height", 65535, &h, err) < 0)
		return -EINVAL;
	o->width = w;
	o->height = h;
	if (o->record_output && o->wait_for_ws)
		return cell_err(err, 400, EINVAL,
				"Cannot use \"record-output\" in combination with \"wait-for-websocket\"");
	if (o->interactive && o->record_output)
		return cell_err(err, 400, EINVAL,
				"Cannot use \"interactive\" in combination with \"record-output\"");
	return 0;
}

static int xreq_parse(json_t *body, struct xreq *r, cell_error *err)
{
	json_t *cwd = json_object_get(body, "cwd");
	size_t bytes = 0;

	if (xreq_modes(body, r, err) < 0 ||
	    xreq_uint(body, "user", XEXEC_ID_MAX, &r->uid, err) < 0 ||
	    xreq_uint(body, "group", XEXEC_ID_MAX, &r->gid, err) < 0 ||
	    xreq_command(json_object_get(body, "command"), r, &bytes, err) < 0 ||
	    xreq_env_user(json_object_get(body, "environment"), r, err) < 0)
		return -EINVAL;
	if (cwd && !json_is_string(cwd) && !json_is_null(cwd))
		return cell_err(err, 400, EINVAL, "Invalid \"cwd\": must be a string");
	r->cwd = json_string_value(cwd);
	if (r->cwd && *r->cwd && r->cwd[0] != '/')
		return cell_err(err, 400, EINVAL, "Invalid \"cwd\": must be an absolute path");
	if (bytes > XEXEC_ARGS_MAX)
		return cell_err(err, 400, E2BIG, "Command too long");
	return 0;
}

/* ---- the instance ------------------------------------------------------------------ */

/* LXD's wording for both refusals. */
static int xexec_running(const struct inst *in, pid_t *pid, cell_error *err)
{
	enum inst_status st = inst_lxc_status(in->name, pid);

	if (st == INST_STOPPED || *pid <= 0)
		return cell_err(err, 400, ESRCH, "Instance is not running");
	if (st == INST_FROZEN)
		return cell_err(err, 400, EBUSY, "Instance is frozen");
	return 0;
}

static int xexec_root(pid_t pid, cell_error *err)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/root", (int)pid);
	return inst_files_open_root(path, err);
}

/* Resolved inside the container: an absolute symlink there must not make
 * this a question about the host. */
static bool xexec_exists_in(int rootfd, const char *path)
{
	cell_error scratch;
	int fd = inst_files_resolve(rootfd, path, O_PATH, 0, &scratch);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static void xenv_default(json_t *env, const char *key, const char *value)
{
	if (!json_object_get(env, key))
		json_object_set_new(env, key, json_string(value));
}

/* LXD's default PATH, plus /snap/bin and NixOS's bin where they exist. */
static void xenv_path(json_t *env, int rootfd)
{
	bool snap = xexec_exists_in(rootfd, "/snap");
	bool nixos = xexec_exists_in(rootfd, "/etc/NIXOS");
	_cleanup_free_ char *path = xasprintf("%s%s%s", XEXEC_PATH, snap ? ":/snap/bin" : "",
					      nixos ? ":/run/current-system/sw/bin" : "");

	xenv_default(env, "PATH", path ? path : XEXEC_PATH);
}

/* LXD's order: the request, then environment.* of the expanded config, then
 * PATH, HOME and USER for root, LANG. */
static void xenv_defaults(struct xreq *r, const struct inst *in, int rootfd)
{
	const char *k;
	json_t *v;

	json_object_foreach(in->exp_config, k, v)
		if (str_has_prefix(k, "environment.") && k[12] && json_is_string(v))
			xenv_default(r->env, k + 12, json_string_value(v));
	if (!json_object_get(r->env, "PATH"))
		xenv_path(r->env, rootfd);
	if (r->uid == 0) {
		xenv_default(r->env, "HOME", "/root");
		xenv_default(r->env, "USER", "root");
	}
	xenv_default(r->env, "LANG", "C.UTF-8");
}

static int xenv_flatten(struct xreq *r, cell_error *err)
{
	size_t n = json_object_size(r->env), i = 0, bytes = 0;
	const char *k;
	json_t *v;

	r->envp = calloc(n + 1, sizeof(char *));
	if (!r->envp)
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_object_foreach(r->env, k, v) {
		if (!(r->envp[i] = xasprintf("%s=%s", k, json_string_value(v))))
			return cell_err(err, 500, ENOMEM, "out of memory");
		bytes += strlen(r->envp[i++]) + 1;
	}
	if (bytes > XEXEC_ARGS_MAX)
		return cell_err(err, 400, E2BIG, "Environment too large");
	/* LXD's forkexec starts in $HOME when no cwd is asked for. */
	if (!r->cwd || !*r->cwd)
		r->cwd = json_string_value(json_object_get(r->env, "HOME"));
	return 0;
}

/* ---- the interactive pty ------------------------------------------------------------ */

/* A pty in the container's own devpts, as LXD opens it: the command sees
 * /dev/pts/N of its container, and the slave belongs to the container's
 * root (its tty group kept when the container can see that group). */
static int xpty_owner(const struct inst *in, int slave, cell_error *err)
{
	_cleanup_idmap_ struct idmap map = { 0 };
	uint32_t uid = 0, gid = 0, nsgid;
	struct stat st;

	if (instances_idmap_of(in, &map, err) < 0)
		return -EIO;
	if (!idmap_is_empty(&map) &&
	    (idmap_shift_uid(&map, 0, &uid) < 0 || idmap_shift_gid(&map, 0, &gid) < 0))
		return cell_err(err, 500, ERANGE, "exec: the container's root is not in its id map");
	if (fstat(slave, &st) == 0 && st.st_gid != 0 &&
	    (idmap_is_empty(&map) || idmap_unshift_gid(&map, st.st_gid, &nsgid) == 0))
		gid = st.st_gid;
	if (fchown(slave, uid, gid) < 0)
		return cell_err_sys(err, 500, errno, "exec: chown the pty");
	return 0;
}

/* The container's ptmx, checked to be one: whatever a process inside put
 * at /dev/pts/ptmx, celld only uses a real pty multiplexer. */
static int xpty_container_ptmx(int rootfd)
{
	cell_error scratch;
	struct stat st;
	int m = inst_files_resolve(rootfd, "/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_NONBLOCK, 0,
				   &scratch);

	if (m < 0)
		return -1;
	if (fstat(m, &st) < 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 5 ||
	    minor(st.st_rdev) != 2) {
		close(m);
		return -1;
	}
	return m;
}

static int xpty_open(const struct inst *in, int rootfd, struct exec_opts *o, cell_error *err)
{
	_cleanup_close_ int m = xpty_container_ptmx(rootfd), s = -1;
	int unlock = 0;

	if (m < 0) {
		/* No devpts of its own (LXD falls back the same way). */
		log_debug("exec in %s: no usable /dev/pts/ptmx, using a host pty", in->name);
		m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	}
	if (m < 0 || ioctl(m, TIOCSPTLCK, &unlock) < 0)
		return cell_err_sys(err, 500, errno, "exec: open a pty");
	/* The peer of this very master: no path lookup that a process in the
	 * container could redirect. */
	s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s < 0)
		return cell_err_sys(err, 500, errno, "exec: open the pty's terminal");
	if (xpty_owner(in, s, err) < 0)
		return -EIO;
	o->pty_master = steal_fd(m);
	o->pty_slave = steal_fd(s);
	return 0;
}

/* ---- the helper's answer ------------------------------------------------------------ */

/*
 * forkexec writes "ok <command pid>" once the command waits on the gate
 * inside the container, or "err <errno> <message>"; when the exec server
 * started it, the server's "pid <helper pid>" comes too, in either order.
 * Both are read from a uv_poll.  The POST is answered before, as LXD
 * does, so that the client connects its websockets while the helper
 * attaches (~2 ms); the command cannot run before both are done (start
 * gate), exec_io holds kills and signals asked for meanwhile, and a failed
 * attach fails the operation with its reason.
 */
struct xspawn {
	uv_poll_t poll;
	struct exec_session *s;
	char *name;
	int fd;               /* read end of the answer pipe */
	pid_t helper;         /* 0 until the exec server names it */
	int helper_pidfd;
	char in[640];         /* lines not yet complete */
	size_t len;
	char line[640];       /* the helper's own answer, once complete */
	bool eof;
};

static void xspawn_closed(uv_handle_t *h)
{
	struct xspawn *x = h->data;

	close(x->fd);
	if (x->helper_pidfd >= 0)
		close(x->helper_pidfd);
	free(x->name);
	free(x);
}

static void xexec_event(const char *name, json_t *command)
{
	char src[128];

	snprintf(src, sizeof(src), "/1.0/instances/%s", name);
	events_lifecycle("instance-exec", src, json_pack("{s:O}", "command", command));
}

/* Kill and reap the helper (if there is one): it has nothing left to do. */
static void xspawn_reap(struct xspawn *x)
{
	siginfo_t si;

	if (x->helper_pidfd >= 0) {
		pidfd_send_signal(x->helper_pidfd, SIGKILL, NULL, 0);
		while (waitid(P_PIDFD, (id_t)x->helper_pidfd, &si, WEXITED) < 0 && errno == EINTR)
			;
	} else if (x->helper > 0) {
		kill(x->helper, SIGKILL);
		while (waitpid(x->helper, NULL, 0) < 0 && errno == EINTR)
			;
	}
}

/* The helper gave up (or died) before the command ran. */
static void xspawn_failed(struct xspawn *x, const char *why)
{
	char msg[700];

	xspawn_reap(x);
	/* The container stopped between our check and the attach. */
	if (strstr(why, "not running"))
		snprintf(msg, sizeof(msg), "Instance is not running");
	else
		snprintf(msg, sizeof(msg), "exec in %s: %s", x->name, why);
	exec_session_failed(x->s, msg);
}

static void xspawn_answer(struct xspawn *x)
{
	cell_error err = { 0 };
	char *end = NULL;
	long pid = 0;
	int sig;

	if (!strncmp(x->line, "ok ", 3))
		pid = strtol(x->line + 3, &end, 10);
	if (pid <= 0 || pid > INT_MAX || !end || *end || x->helper_pidfd < 0) {
		const char *why = strncmp(x->line, "err ", 4) ? NULL : strchr(x->line + 4, ' ');
		return xspawn_failed(x, why ? why + 1 : "the exec helper ended without an answer");
	}
	/* Signals go to the command, not to forkexec waiting for it. */
	sig = pidfd_open((pid_t)pid, 0);
	if (sig >= 0)
		exec_session_set_signal_pidfd(x->s, sig);
	if (exec_session_started(x->s, x->helper, x->helper_pidfd, &err) < 0)
		log_debug("exec in %s: %s", x->name, err.msg);
	x->helper_pidfd = -1;   /* the session's now (closed on failure) */
}

/* "pid <n>" from the exec server: our child, so the pid is not reused
 * before we reap it. */
static void xspawn_helper_named(struct xspawn *x, const char *num)
{
	char *end;
	long pid = strtol(num, &end, 10);

	if (x->helper || pid <= 0 || pid > INT_MAX || *end)
		return;
	x->helper = (pid_t)pid;
	x->helper_pidfd = pidfd_open(x->helper, 0);
}

static void xspawn_lines(struct xspawn *x)
{
	char *nl;

	while ((nl = memchr(x->in, '\n', x->len))) {
		size_t n = (size_t)(nl - x->in);
		*nl = '\0';
		if (!strncmp(x->in, "pid ", 4))
			xspawn_helper_named(x, x->in + 4);
		else if (!x->line[0])
			snprintf(x->line, sizeof(x->line), "%s", x->in);
		memmove(x->in, nl + 1, x->len - n - 1);
		x->len -= n + 1;
	}
	if (x->len == sizeof(x->in))   /* no line is this long: nothing sane follows */
		x->eof = true;
}

static void xspawn_cb(uv_poll_t *p, int status, int events)
{
	struct xspawn *x = p->data;
	ssize_t n = 0;

	(void)events;
	if (status == 0) {
		n = read(x->fd, x->in + x->len, sizeof(x->in) - x->len);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
	}
	if (n > 0)
		x->len += (size_t)n;
	else
		x->eof = true;
	xspawn_lines(x);
	if (!x->eof && !(x->line[0] && x->helper))
		return;
	uv_poll_stop(p);
	xspawn_answer(x);
	uv_close((uv_handle_t *)p, xspawn_closed);
}

/* Spawn forkexec on the session's child fds and watch for its answer.  On
 * failure nothing runs (a helper, if any, is killed and reaped). */
static struct xspawn *xspawn_start(const char *name, struct xreq *r, struct exec_session *s,
				   const struct exec_child *child, cell_error *err)
{
	struct fork_exec e = {
		.lxcpath = inst_lxc_lxcpath(), .name = name, .init = r->init,
		.argv = r->argv, .env = r->envp, .cwd = r->cwd, .uid = r->uid, .gid = r->gid,
		.fds = { child->stdio[0], child->stdio[1], child->stdio[2], child->gate, -1 },
	};
	struct xspawn *x = calloc(1, sizeof(*x));
	int p[2], rc;

	if (!x || !(x->name = strdup(name)) || pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		cell_err_sys(err, 500, x && x->name ? errno : ENOMEM, "exec: answer pipe");
		if (x)
			free(x->name);
		free(x);
		return NULL;
	}
	x->s = s;
	x->fd = p[0];
	x->helper_pidfd = -1;
	x->poll.data = x;
	/* Watched before anything can answer: from here the pipe is only
	 * closed by xspawn_closed, so no answer meets a closed pipe. */
	if (uv_poll_init(celld->loop, &x->poll, x->fd) < 0) {
		close(p[1]);
		xspawn_closed((uv_handle_t *)&x->poll);
		cell_err(err, 500, EIO, "exec: cannot watch the helper");
		return NULL;
	}
	e.fds[4] = p[1];
	rc = fork_exec_spawn(&e, &x->helper, err);
	if (rc == 0 && x->helper && (x->helper_pidfd = pidfd_open(x->helper, 0)) < 0)
		rc = cell_err_sys(err, 500, errno, "exec: pidfd_open");
	close(p[1]);   /* EOF once the helper is gone, answer or not */
	if (rc < 0) {
		xspawn_reap(x);
		uv_close((uv_handle_t *)&x->poll, xspawn_closed);
		return NULL;
	}
	uv_poll_start(&x->poll, UV_READABLE, xspawn_cb);
	return x;
}

/* ---- POST /1.0/instances/<name>/exec ------------------------------------------------- */

static int xexec_prepare(http_req *req, json_t *body, struct inst *in, struct xreq *r,
			 cell_error *err)
{
	_cleanup_close_ int rootfd = -1;
	_cleanup_free_ char *dir = NULL;

	if (xreq_parse(body, r, err) < 0 || instances_load(req->params[0], in, err) < 0 ||
	    xexec_running(in, &r->init, err) < 0 || (rootfd = xexec_root(r->init, err)) < 0)
		return -EINVAL;
	xenv_defaults(r, in, rootfd);
	if (xenv_flatten(r, err) < 0)
		return -EINVAL;
	if (r->o.record_output && !r->o.wait_for_ws) {
		dir = inst_lxc_dir(in->name);
		r->record_dir = dir ? xasprintf("%s/" INST_EXEC_OUTPUT_DIR, dir) : NULL;
		r->record_url = xasprintf("/1.0/instances/%s/logs/" INST_EXEC_OUTPUT_DIR, in->name);
		r->o.record_dir = r->record_dir;
		r->o.record_url = r->record_url;
	}
	if (r->o.interactive && r->o.wait_for_ws)
		return xpty_open(in, rootfd, &r->o, err);
	return 0;
}

static void xexec_post(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	_cleanup_inst_ struct inst in = { 0 };
	struct xreq r = { .o = { .pty_master = -1, .pty_slave = -1 } };
	struct exec_session *s;
	struct exec_child child;
	struct operation *op;
	struct xspawn *x = NULL;
	cell_error err = { 0 };
	json_t *meta;
	int rc;

	if (http_req_json(req, &body, &err) < 0 || xexec_prepare(req, body, &in, &r, &err) < 0) {
		xreq_clear(&r);
		return resp_from_err(resp, &err);
	}
	meta = json_pack("{s:O, s:O, s:b}", "command", json_object_get(body, "command"),
			 "environment", r.env, "interactive", r.o.interactive);
	rc = exec_session_new(&r.o, "Executing command", inst_op_resources(in.name, NULL), meta,
			      &op, &s, &child, &err);
	r.o.pty_master = r.o.pty_slave = -1;   /* taken by exec_session_new */
	if (rc == 0 && !(x = xspawn_start(in.name, &r, s, &child, &err)))
		exec_session_failed(s, err.msg);
	xreq_clear(&r);
	if (!x)
		return resp_from_err(resp, &err);
	resp_async(resp, op);
	xexec_event(in.name, json_object_get(body, "command"));
}

/* ---- /1.0/instances/<name>/logs/exec-output ----------------------------------------- */

/* Listed, served, deleted and expired by api_instances_logs.c with the
 * runtime's logs (record_dir above is where they are written). */

void api_instances_exec_register(void)
{
	router_add_instances(&(struct route){
		.pattern = "/1.0/instances/{name}/exec",
		.methods = { { HTTP_POST, xexec_post, 0, NULL } },
	});
}
