/*
 * Container lifecycle on liblxc: start through the `celld forkstart`
 * helper, the non-forking liblxc verbs in-process on worker threads (a
 * transient lxc_container per call: nothing is kept per container), live
 * limits written straight to the payload cgroup, hot-plug of nics by
 * rtnetlink and of disks through `celld forkmount`.
 */
#include "daemon/inst_lxc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lxc/lxccontainer.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/fork.h"
#include "daemon/inst_internal.h"
#include "daemon/inst_nl.h"

/* How long a stop may take to be complete once init is dead (liblxc's
 * monitor tears down cgroups and nics and exits, normally in ms). */
#define INST_MONITOR_EXIT_MS 10000

static char *lxcpath;

static void lxc_putp(struct lxc_container **c)
{
	if (*c)
		lxc_container_put(*c);
}
#define _cleanup_lxc_ __attribute__((cleanup(lxc_putp)))

/* ---- set-up ------------------------------------------------------------------- */

int inst_lxc_init(const char *path, cell_error *err)
{
	char real[PATH_MAX];

	if (util_mkdir_p(path, 0711, err) < 0)
		return -EIO;
	if (!realpath(path, real))
		return cell_err_sys(err, 500, errno, "resolve %s", path);
	free(lxcpath);
	lxcpath = strdup(real);
	if (!lxcpath)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return inst_cg_init(lxcpath, err);
}

const char *inst_lxc_lxcpath(void) { return lxcpath; }

char *inst_lxc_dir(const char *name) { return xasprintf("%s/%s", lxcpath, name); }

bool inst_lxc_name_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > 63 || isdigit((unsigned char)name[0]) || name[0] == '-')
		return false;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-')
			return false;
	return true;
}

static int check_name(const char *verb, const char *name, cell_error *err)
{
	if (!lxcpath)
		return cell_err(err, 500, EINVAL, "%s %s: runtime not initialised", verb, name);
	if (!name || !inst_lxc_name_valid(name))
		return cell_err(err, 400, EINVAL, "%s: invalid instance name \"%s\"", verb,
				name ? name : "");
	return 0;
}

/* ---- log tails ------------------------------------------------------------------ */

/* "lxc-start c1 20261122.123 ERROR    conf - ../src/lxc/conf.c:f:12 - message" */
static const char *log_message(const char *line)
{
	const char *p = strstr(line, " ERROR ");
	const char *m;

	if (!p || !(p = strstr(p, " - ")) || !(m = strstr(p + 3, " - ")))
		return NULL;
	return m + 3;
}

/* The first errors of the log (it holds one start: it is rotated before),
 * since the root cause comes first and the rest are consequences. */
void inst_log_tail(const char *path, char *buf, size_t len)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	_cleanup_free_ char *line = NULL;
	size_t cap = 0, off = 0;
	int found = 0;

	buf[0] = '\0';
	while (f && found < 3 && off < len && getline(&line, &cap, f) > 0) {
		const char *m;
		line[strcspn(line, "\n")] = '\0';
		if (!(m = log_message(line)))
			continue;
		off += (size_t)snprintf(buf + off, len - off, "%s%s", found ? "; " : "", m);
		found++;
	}
	if (off >= len && len > 4)
		strcpy(buf + len - 4, "...");
}

static char *log_path_of(const struct inst_lxc_spec *spec)
{
	return spec->log_path ? strdup(spec->log_path) : xasprintf("%s/%s/lxc.log", lxcpath, spec->name);
}

/* ---- start ----------------------------------------------------------------------- */

int inst_lxc_start(const struct inst_lxc_spec *spec, pid_t *init_pid, cell_error *err)
{
	_cleanup_free_ char *cfg = NULL, *log = NULL;
	char reply[64], tail[CELL_ERR_MSG_MAX / 2];
	const char *argv[6];
	long pid;
	int rc;

	if (check_name("start", spec->name, err) < 0)
		return -EINVAL;
	if (inst_lxc_status(spec->name, NULL) != INST_STOPPED)
		return cell_err(err, 409, EBUSY, "start %s: the instance is already running", spec->name);
	if ((rc = inst_lxc_config_write(spec, err)) < 0)
		return cell_err_wrap(err, rc, "start %s", spec->name);
	cfg = xasprintf("%s/%s/config", lxcpath, spec->name);
	log = log_path_of(spec);
	if (!cfg || !log)
		return cell_err(err, 500, ENOMEM, "start %s: out of memory", spec->name);
	argv[0] = "celld", argv[1] = "forkstart", argv[2] = lxcpath, argv[3] = spec->name;
	argv[4] = cfg, argv[5] = NULL;
	inst_cg_remove(spec->name);   /* fixed cgroup names: clear leftovers first */
	rc = fork_run(argv, reply, sizeof(reply), err);
	if (rc < 0) {
		if (inst_lxc_status(spec->name, NULL) == INST_STOPPED)
			inst_cg_remove(spec->name);
		inst_log_tail(log, tail, sizeof(tail));
		if (tail[0])
			return cell_err(err, 500, -rc, "start %s: %s", spec->name, tail);
		return cell_err_wrap(err, rc, "start %s", spec->name);
	}
	pid = strtol(reply, NULL, 10);
	if (init_pid)
		*init_pid = (pid_t)pid;
	if (inst_monitor_watch(spec->name, NULL) == -ESRCH)
		log_warn("start %s: stopped right after starting", spec->name);
	return 0;
}

/* ---- stop, shutdown, reboot, freeze ------------------------------------------------- */

/* A pidfd of the liblxc monitor so the caller can wait for the full stop. */
static int monitor_pidfd(const char *name)
{
	pid_t mon = inst_cg_monitor_pid(name);
	int fd;

	if (!mon)
		return -ESRCH;
	fd = pidfd_open(mon, 0);
	if (fd < 0)
		return -errno;
	if (inst_cg_monitor_pid(name) != mon) {   /* reused pid: not our monitor */
		close(fd);
		return -ESRCH;
	}
	return fd;
}

static int wait_pidfd(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int64_t deadline = util_now_ms() + timeout_ms;

	for (;;) {
		int64_t left = deadline - util_now_ms();
		int rc = poll(&p, 1, left > 0 ? (int)left : 0);
		if (rc > 0)
			return 0;
		if (rc == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static struct lxc_container *lxc_open(const char *verb, const char *name, cell_error *err)
{
	struct lxc_container *c = lxc_container_new(name, lxcpath);

	if (!c)
		cell_err(err, 500, ENOMEM, "%s %s: cannot open the liblxc container", verb, name);
	return c;
}

static int fail_with_log(const char *verb, const char *name, int status, int code,
			 cell_error *err)
{
	_cleanup_free_ char *log = xasprintf("%s/%s/lxc.log", lxcpath, name);
	char tail[CELL_ERR_MSG_MAX / 2] = "";

	if (log)
		inst_log_tail(log, tail, sizeof(tail));
	return cell_err(err, status, code, "%s %s: %s", verb, name, tail[0] ? tail : strerror(code));
}

int inst_lxc_stop(const char *name, cell_error *err)
{
	_cleanup_lxc_ struct lxc_container *c = NULL;
	_cleanup_close_ int fd = -1;

	if (check_name("stop", name, err) < 0)
		return -EINVAL;
	if ((fd = monitor_pidfd(name)) < 0)
		return 0;
	if (!(c = lxc_open("stop", name, err)))
		return -ENOMEM;
	/* liblxc's monitor kills init (thawing it if frozen) and cleans up. */
	if (!c->stop(c) && inst_lxc_status(name, NULL) != INST_STOPPED)
		return fail_with_log("stop", name, 500, EIO, err);
	if (wait_pidfd(fd, INST_MONITOR_EXIT_MS) < 0)
		return cell_err(err, 500, ETIMEDOUT, "stop %s: liblxc's monitor did not exit", name);
	return 0;
}

int inst_lxc_shutdown(const char *name, int timeout_s, cell_error *err)
{
	_cleanup_lxc_ struct lxc_container *c = NULL;
	_cleanup_close_ int fd = -1;

	if (check_name("shutdown", name, err) < 0)
		return -EINVAL;
	if ((fd = monitor_pidfd(name)) < 0)
		return 0;
	if (!(c = lxc_open("shutdown", name, err)))
		return -ENOMEM;
	if (!c->shutdown(c, timeout_s < 0 ? -1 : timeout_s)) {
		if (inst_lxc_status(name, NULL) != INST_STOPPED)
			return cell_err(err, 409, ETIMEDOUT,
					"shutdown %s: still running after %d s", name, timeout_s);
	}
	if (wait_pidfd(fd, INST_MONITOR_EXIT_MS) < 0)
		return cell_err(err, 500, ETIMEDOUT, "shutdown %s: liblxc's monitor did not exit", name);
	return 0;
}

static int need_running(const char *verb, const char *name, cell_error *err)
{
	if (check_name(verb, name, err) < 0)
		return -EINVAL;
	if (inst_lxc_status(name, NULL) == INST_STOPPED)
		return cell_err(err, 409, ESRCH, "%s %s: the instance is not running", verb, name);
	return 0;
}

int inst_lxc_reboot(const char *name, cell_error *err)
{
	_cleanup_lxc_ struct lxc_container *c = NULL;

	if (need_running("reboot", name, err) < 0 || !(c = lxc_open("reboot", name, err)))
		return -EINVAL;
	if (!c->reboot(c))
		return fail_with_log("reboot", name, 500, EIO, err);
	return 0;
}

int inst_lxc_freeze(const char *name, cell_error *err)
{
	_cleanup_lxc_ struct lxc_container *c = NULL;

	if (need_running("freeze", name, err) < 0 || !(c = lxc_open("freeze", name, err)))
		return -EINVAL;
	if (inst_lxc_status(name, NULL) == INST_FROZEN)
		return 0;
	if (!c->freeze(c))
		return fail_with_log("freeze", name, 500, EIO, err);
	return 0;
}

int inst_lxc_unfreeze(const char *name, cell_error *err)
{
	_cleanup_lxc_ struct lxc_container *c = NULL;

	if (need_running("unfreeze", name, err) < 0 || !(c = lxc_open("unfreeze", name, err)))
		return -EINVAL;
	if (!c->unfreeze(c))
		return fail_with_log("unfreeze", name, 500, EIO, err);
	return 0;
}

/* ---- live limits --------------------------------------------------------------------- */

int inst_lxc_set_limits(const char *name, json_t *config, cell_error *err)
{
	struct inst_cg_setting set[INST_CG_SETTINGS_MAX];
	char path[PATH_MAX];
	size_t n;
	int rc;

	if (need_running("update limits of", name, err) < 0)
		return -EINVAL;
	if ((rc = inst_conf_limits(config, true, set, &n, err)) < 0)
		return cell_err_wrap(err, rc, "update limits of %s", name);
	for (size_t i = 0; i < n; i++) {
		if (inst_cg_payload_path(set[i].ctrl, name, set[i].file, path, sizeof(path)) < 0)
			continue;
		rc = inst_cg_write(path, set[i].value);
		if (rc < 0)
			return cell_err_sys(err, rc == -EBUSY || rc == -EINVAL ? 400 : 500, -rc,
					    "update limits of %s: set %s to %s", name, set[i].file,
					    set[i].value);
	}
	return 0;
}

/* ---- hot-plug ------------------------------------------------------------------------ */

static int running_pid(const char *verb, const char *name, pid_t *pid, cell_error *err)
{
	if (check_name(verb, name, err) < 0)
		return -EINVAL;
	if (inst_lxc_status(name, pid) == INST_STOPPED)
		return cell_err(err, 409, ESRCH, "%s %s: the instance is not running", verb, name);
	return 0;
}

/* The first free eth<N> inside when the nic has no name of its own. */
static int nic_default_name(int cfd, struct inst_nic *nic)
{
	for (int i = 0; i < 64; i++) {
		snprintf(nic->name, sizeof(nic->name), "eth%d", i);
		if (inst_nl_ifindex(cfd, nic->name) == -ENODEV)
			return 0;
	}
	return -ENOSPC;
}

static int nic_add(const char *name, pid_t pid, const char *devname, json_t *dev,
		   json_t *config, cell_error *err)
{
	_cleanup_close_ int hfd = inst_nl_open(), cfd = inst_nl_open_in(pid);
	_cleanup_close_ int nsfd = inst_nl_netns_fd(pid);
	struct inst_nic nic;
	struct inst_nl_newlink l = { .netns_fd = -1, .peer_netns_fd = -1 };
	char host[16], hex[9];
	int parent = 0, idx = 0, rc = 0;

	if (hfd < 0 || cfd < 0 || nsfd < 0)
		return cell_err(err, 500, EIO, "netlink into %s's network namespace failed", name);
	if (inst_conf_nic(devname, dev, config, 0, &nic, err) < 0)
		return -EINVAL;
	if (!inst_json_str(dev, "name") && strcmp(nic.name, devname) != 0 &&
	    nic_default_name(cfd, &nic) < 0)
		return cell_err(err, 409, ENOSPC, "no free interface name");
	if (nic.parent && (parent = inst_nl_ifindex(hfd, nic.parent)) < 0)
		return cell_err(err, 400, ENODEV, "parent \"%s\" does not exist", nic.parent);
	l.mtu = nic.mtu;
	l.hwaddr = nic.hwaddr[0] ? nic.hwaddr : NULL;
	if (nic.macvlan) {
		l.kind = "macvlan";
		l.name = nic.name;
		l.link = parent;
		l.netns_fd = nsfd;
		return inst_nl_link_add(hfd, &l, err);
	}
	if (!nic.host_name[0]) {
		util_random_hex(hex, 4);
		snprintf(host, sizeof(host), "veth%s", hex);
	} else {
		snprintf(host, sizeof(host), "%s", nic.host_name);
	}
	l.kind = "veth";
	l.name = host;
	l.master = nic.bridged ? parent : 0;
	l.peer_name = nic.name;
	l.peer_netns_fd = nsfd;
	if ((rc = inst_nl_link_add(hfd, &l, err)) < 0)
		return rc;
	/* Up inside, as liblxc's lxc.net.N.flags = up does at start. */
	if ((idx = inst_nl_ifindex(cfd, nic.name)) < 0 || (rc = inst_nl_link_up(cfd, idx)) < 0)
		return cell_err_sys(err, 500, idx < 0 ? -idx : -rc, "bring %s up", nic.name);
	return 0;
}

static int disk_add(pid_t pid, const char *devname, json_t *dev, cell_error *err)
{
	struct inst_disk d;
	char flags[32], pidstr[16];
	const char *argv[7];

	if (inst_conf_disk(devname, dev, &d, err) < 0)
		return -EINVAL;
	if (d.missing)
		return 0;
	snprintf(flags, sizeof(flags), "-%s%s%s", d.readonly ? ",ro" : "",
		 d.recursive ? ",rbind" : "", d.is_file ? ",file" : "");
	snprintf(pidstr, sizeof(pidstr), "%d", (int)pid);
	argv[0] = "celld", argv[1] = "forkmount", argv[2] = pidstr, argv[3] = d.source;
	argv[4] = d.path, argv[5] = flags, argv[6] = NULL;
	return fork_run(argv, NULL, 0, err);
}

int inst_lxc_device_add(const char *name, const char *devname, json_t *dev, json_t *config,
			cell_error *err)
{
	json_t *one = json_pack("{sO}", devname, dev);
	const char *type;
	pid_t pid;
	int rc;

	rc = one ? inst_lxc_validate(NULL, one, err) : cell_err(err, 500, ENOMEM, "out of memory");
	json_decref(one);
	if (rc < 0 || running_pid("add device to", name, &pid, err) < 0)
		return rc < 0 ? cell_err_wrap(err, rc, "add device to %s", name) : -EINVAL;
	if (!inst_lxc_device_hotpluggable(dev))
		return cell_err(err, 400, EOPNOTSUPP,
				"add device to %s: device \"%s\" cannot be added to a running instance",
				name, devname);
	type = inst_json_str(dev, "type");
	if (strcmp(type, "nic") == 0)
		rc = nic_add(name, pid, devname, dev, config, err);
	else if (strcmp(type, "disk") == 0)
		rc = disk_add(pid, devname, dev, err);
	else
		rc = 0;
	return rc < 0 ? cell_err_wrap(err, rc, "add device \"%s\" to %s", devname, name) : 0;
}

static int nic_remove(pid_t pid, const char *devname, json_t *dev, cell_error *err)
{
	_cleanup_close_ int cfd = inst_nl_open_in(pid);
	const char *ifname = inst_json_str(dev, "name");
	int idx, rc;

	if (!ifname)
		ifname = devname;
	if (cfd < 0)
		return cell_err_sys(err, 500, -cfd, "netlink into the container");
	if ((idx = inst_nl_ifindex(cfd, ifname)) == -ENODEV)
		return 0;   /* already gone */
	if (idx < 0)
		return cell_err_sys(err, 500, -idx, "find %s", ifname);
	/* Deleting our end of a veth removes the host end with it. */
	if ((rc = inst_nl_link_del(cfd, idx)) < 0)
		return cell_err_sys(err, 500, -rc, "delete %s", ifname);
	return 0;
}

static int disk_remove(pid_t pid, json_t *dev, cell_error *err)
{
	const char *path = inst_json_str(dev, "path");
	char pidstr[16];
	const char *argv[5];

	if (!path)
		return cell_err(err, 400, EINVAL, "disk without a path");
	snprintf(pidstr, sizeof(pidstr), "%d", (int)pid);
	argv[0] = "celld", argv[1] = "forkumount", argv[2] = pidstr, argv[3] = path, argv[4] = NULL;
	return fork_run(argv, NULL, 0, err);
}

int inst_lxc_device_remove(const char *name, const char *devname, json_t *dev,
			   cell_error *err)
{
	const char *type = inst_json_str(dev, "type");
	pid_t pid;
	int rc;

	if (running_pid("remove device from", name, &pid, err) < 0)
		return -EINVAL;
	if (!type || !inst_lxc_device_hotpluggable(dev))
		return cell_err(err, 400, EOPNOTSUPP,
				"remove device from %s: device \"%s\" cannot be removed from a running instance",
				name, devname);
	if (strcmp(type, "nic") == 0)
		rc = nic_remove(pid, devname, dev, err);
	else if (strcmp(type, "disk") == 0)
		rc = disk_remove(pid, dev, err);
	else
		rc = 0;
	return rc < 0 ? cell_err_wrap(err, rc, "remove device \"%s\" from %s", devname, name) : 0;
}

/* ---- exec ---------------------------------------------------------------------------- */

int inst_lxc_exec_spawn(const char *name, const struct inst_lxc_exec *e, pid_t *helper,
			cell_error *err)
{
	struct fork_exec fe = {
		.lxcpath = lxcpath, .name = name, .argv = e->argv, .env = e->env, .cwd = e->cwd,
		.uid = e->uid, .gid = e->gid,
		.fds = { e->stdio[0], e->stdio[1], e->stdio[2], e->gate, e->reply },
	};

	if (running_pid("exec in", name, &fe.init, err) < 0)
		return -ESRCH;
	return fork_exec_spawn(&fe, helper, err);
}

/* ---- delete, rename ------------------------------------------------------------------ */

static int rm_tree_at(int dfd, const char *name, int depth)
{
	_cleanup_close_ int fd = -1;
	DIR *d;
	struct dirent *de;
	int rc = 0;

	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if ((errno != EISDIR && errno != EPERM) || depth > 8)
		return -errno;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd)))
		return -errno;
	fd = -1;   /* owned by d now */
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && rc == 0)
			rc = rm_tree_at(dirfd(d), de->d_name, depth + 1);
	closedir(d);
	if (rc == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = -errno;
	return rc;
}

int inst_lxc_delete(const char *name, cell_error *err)
{
	_cleanup_close_ int dfd = -1;
	int rc;

	if (check_name("delete", name, err) < 0)
		return -EINVAL;
	if (inst_lxc_status(name, NULL) != INST_STOPPED)
		return cell_err(err, 409, EBUSY, "delete %s: the instance is running", name);
	inst_monitor_unwatch(name);
	inst_cg_remove(name);
	dfd = open(lxcpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return cell_err_sys(err, 500, errno, "delete %s: open %s", name, lxcpath);
	if ((rc = rm_tree_at(dfd, name, 0)) < 0)
		return cell_err_sys(err, 500, -rc, "delete %s: remove %s/%s", name, lxcpath, name);
	return 0;
}

int inst_lxc_rename(const char *oldname, const char *newname, cell_error *err)
{
	_cleanup_free_ char *from = NULL, *to = NULL;

	if (check_name("rename", oldname, err) < 0 || check_name("rename", newname, err) < 0)
		return -EINVAL;
	if (inst_lxc_status(oldname, NULL) != INST_STOPPED)
		return cell_err(err, 409, EBUSY, "rename %s: the instance is running", oldname);
	from = inst_lxc_dir(oldname);
	to = inst_lxc_dir(newname);
	if (!from || !to)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) < 0) {
		if (errno == ENOENT)
			return 0;   /* never started: nothing on disk yet */
		return cell_err_sys(err, errno == EEXIST ? 409 : 500, errno, "rename %s to %s",
				    oldname, newname);
	}
	return 0;
}

/* ---- reattach -------------------------------------------------------------------------- */

static int cmp_running(const void *a, const void *b)
{
	return strcmp(((const struct inst_running *)a)->name, ((const struct inst_running *)b)->name);
}

void inst_lxc_running_free(struct inst_running *r, size_t n)
{
	for (size_t i = 0; r && i < n; i++)
		free(r[i].name);
	free(r);
}

int inst_lxc_list_running(struct inst_running **out, size_t *n, cell_error *err)
{
	_cleanup_closedir_ DIR *d = lxcpath ? opendir(lxcpath) : NULL;
	struct inst_running *v = NULL;
	size_t cnt = 0, cap = 0;
	struct dirent *de;

	*out = NULL;
	*n = 0;
	if (!d)
		return cell_err_sys(err, 500, lxcpath ? errno : EINVAL, "list %s",
				    lxcpath ? lxcpath : "containers");
	while ((de = readdir(d))) {
		pid_t pid;
		enum inst_status st;
		if (!inst_lxc_name_valid(de->d_name) ||
		    (st = inst_lxc_status(de->d_name, &pid)) == INST_STOPPED)
			continue;
		if (cnt == cap) {
			struct inst_running *nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));
			if (!nv) {
				inst_lxc_running_free(v, cnt);
				return cell_err(err, 500, ENOMEM, "out of memory");
			}
			v = nv;
		}
		v[cnt] = (struct inst_running){ .name = strdup(de->d_name), .pid = pid, .status = st };
		if (!v[cnt++].name) {
			inst_lxc_running_free(v, cnt);
			return cell_err(err, 500, ENOMEM, "out of memory");
		}
		inst_monitor_watch(de->d_name, NULL);
	}
	if (cnt)
		qsort(v, cnt, sizeof(*v), cmp_running);
	*out = v;
	*n = cnt;
	return 0;
}
