#include "daemon/inst_cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>

#include "common/cleanup.h"
#include "common/sha256_lite.h"

static const char *const cg_names[CG_NCTRL] = {
	[CG_MEMORY] = "memory", [CG_CPU] = "cpu",       [CG_CPUACCT] = "cpuacct",
	[CG_CPUSET] = "cpuset", [CG_PIDS] = "pids",     [CG_FREEZER] = "freezer",
	[CG_DEVICES] = "devices",
};

static struct {
	char *v1[CG_NCTRL];    /* mount point of the v1 hierarchy holding the controller */
	bool v2[CG_NCTRL];     /* controller enabled on the unified hierarchy */
	char *unified;         /* cgroup2 mount point, NULL if none */
	const char *probe;     /* hierarchy used to find monitor processes */
	char *all[32];         /* every cgroup mount, named hierarchies included */
	size_t nall;
	bool any_v1;
	char prefix[16];
} cg;

static void cg_note_mount(const char *mnt)
{
	if (cg.nall < ARRAY_SIZE(cg.all))
		cg.all[cg.nall++] = strdup(mnt);
}

static void cg_note_v1(const char *mnt, char *opts)
{
	char *save = NULL;

	for (char *tok = strtok_r(opts, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		for (int c = 0; c < CG_NCTRL; c++) {
			if (strcmp(tok, cg_names[c]) == 0 && !cg.v1[c]) {
				cg.v1[c] = strdup(mnt);
				cg.any_v1 = true;
			}
		}
	}
}

/* mountinfo: "id parent maj:min root mountpoint opts [tags] - fstype source superopts" */
static void cg_parse_mountinfo_line(char *line)
{
	char *sep = strstr(line, " - ");
	char mnt[PATH_MAX], fstype[64], source[256], opts[512];

	if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
		return;
	if (sscanf(sep + 3, "%63s %255s %511s", fstype, source, opts) != 3)
		return;
	if (strcmp(fstype, "cgroup2") == 0 && !cg.unified)
		cg.unified = strdup(mnt);
	else if (strcmp(fstype, "cgroup") == 0)
		cg_note_v1(mnt, opts);
	else
		return;
	cg_note_mount(mnt);
}

static void cg_read_v2_controllers(void)
{
	char path[PATH_MAX], buf[512], *save = NULL;

	if (!cg.unified)
		return;
	snprintf(path, sizeof(path), "%s/cgroup.controllers", cg.unified);
	if (inst_cg_read(path, buf, sizeof(buf)) < 0)
		return;
	for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
		for (int c = 0; c < CG_NCTRL; c++)
			if (strcmp(tok, cg_names[c]) == 0 && !cg.v1[c])
				cg.v2[c] = true;
	/* Freezing and device control are core features of cgroup2, and CPU
	 * time is always in cpu.stat. */
	if (!cg.v1[CG_FREEZER])
		cg.v2[CG_FREEZER] = true;
	if (!cg.v1[CG_DEVICES])
		cg.v2[CG_DEVICES] = true;
	if (!cg.v1[CG_CPUACCT])
		cg.v2[CG_CPUACCT] = true;
}

/* sha256_lite: OpenSSL would stay resident for this one small hash. */
static int cg_make_prefix(const char *lxcpath, cell_error *err)
{
	char hex[65];

	sha256_lite_hex(lxcpath, strlen(lxcpath), hex);
	snprintf(cg.prefix, sizeof(cg.prefix), "cell.%.8s", hex);
	return 0;
}

int inst_cg_init(const char *lxcpath, cell_error *err)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	static const enum inst_cg_ctrl probe_order[] = { CG_PIDS, CG_FREEZER, CG_MEMORY,
							 CG_CPUACCT, CG_CPU, CG_CPUSET,
							 CG_DEVICES };

	if (!f)
		return cell_err_sys(err, 500, errno, "open /proc/self/mountinfo");
	for (int c = 0; c < CG_NCTRL; c++) {
		free(cg.v1[c]);
		cg.v1[c] = NULL;
		cg.v2[c] = false;
	}
	free(cg.unified);
	cg.unified = NULL;
	cg.any_v1 = false;
	while (cg.nall)
		free(cg.all[--cg.nall]);
	while (getline(&line, &cap, f) > 0)
		cg_parse_mountinfo_line(line);
	cg_read_v2_controllers();
	cg.probe = cg.unified;
	for (size_t i = 0; i < ARRAY_SIZE(probe_order); i++) {
		if (cg.v1[probe_order[i]]) {
			cg.probe = cg.v1[probe_order[i]];
			break;
		}
	}
	if (!cg.probe)
		return cell_err(err, 500, ENOENT, "no cgroup hierarchy is mounted");
	return cg_make_prefix(lxcpath, err);
}

bool inst_cg_v1(enum inst_cg_ctrl c) { return cg.v1[c] != NULL; }
bool inst_cg_v2(enum inst_cg_ctrl c) { return cg.v2[c]; }
bool inst_cg_unified_only(void) { return !cg.any_v1; }
const char *inst_cg_prefix(void) { return cg.prefix; }

static const char *cg_mount(enum inst_cg_ctrl c)
{
	if (cg.v1[c])
		return cg.v1[c];
	return cg.v2[c] ? cg.unified : NULL;
}

int inst_cg_payload_path(enum inst_cg_ctrl c, const char *name, const char *file, char *buf,
			 size_t len)
{
	const char *mnt = cg_mount(c);
	int n;

	if (!mnt)
		return -ENOENT;
	n = snprintf(buf, len, "%s/%s.payload.%s%s%s", mnt, cg.prefix, name, file ? "/" : "",
		     file ? file : "");
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

pid_t inst_cg_monitor_pid(const char *name)
{
	char path[PATH_MAX], buf[64];
	long pid;

	if (!cg.probe)
		return 0;
	snprintf(path, sizeof(path), "%s/%s.monitor.%s/cgroup.procs", cg.probe, cg.prefix, name);
	if (inst_cg_read(path, buf, sizeof(buf)) < 0)
		return 0;
	pid = strtol(buf, NULL, 10);
	return pid > 0 && pid <= INT_MAX ? (pid_t)pid : 0;
}

/* Depth-first rmdir: only empty cgroups go, so live ones are never harmed. */
static void cg_rmdir_tree(int dfd, const char *name, int depth)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d;
	struct dirent *de;

	if (fd < 0)
		return;
	if (!(d = fdopendir(fd))) {
		close(fd);
		return;
	}
	while (depth < 16 && (de = readdir(d)))
		if (de->d_type == DT_DIR && strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			cg_rmdir_tree(dirfd(d), de->d_name, depth + 1);
	closedir(d);
	unlinkat(dfd, name, AT_REMOVEDIR);
}

void inst_cg_remove(const char *name)
{
	char dir[NAME_MAX + 1];

	for (size_t i = 0; i < cg.nall; i++) {
		int fd = open(cg.all[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		snprintf(dir, sizeof(dir), "%s.monitor.%s", cg.prefix, name);
		cg_rmdir_tree(fd, dir, 0);
		snprintf(dir, sizeof(dir), "%s.payload.%s", cg.prefix, name);
		cg_rmdir_tree(fd, dir, 0);
		close(fd);
	}
}

int inst_cg_read(const char *path, char *buf, size_t len)
{
	return inst_cg_read_at(AT_FDCWD, path, buf, len);
}

int inst_cg_read_at(int dirfd, const char *file, char *buf, size_t len)
{
	int fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	close(fd);
	buf[n] = '\0';
	if (n > 0 && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	return (int)n;
}

int inst_cg_read_u64(const char *path, uint64_t *out)
{
	char buf[64], *end;
	int rc = inst_cg_read(path, buf, sizeof(buf));

	if (rc < 0)
		return rc;
	if (strcmp(buf, "max") == 0) {
		*out = UINT64_MAX;
		return 0;
	}
	errno = 0;
	*out = strtoull(buf, &end, 10);
	return errno || end == buf ? -EINVAL : 0;
}

int inst_cg_write(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(value);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, value, len);
	if (n < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	close(fd);
	return (size_t)n == len ? 0 : -EIO;
}

bool inst_cg_root_has(enum inst_cg_ctrl c, const char *file)
{
	const char *mnt = cg_mount(c);
	char path[PATH_MAX];

	if (!mnt)
		return false;
	snprintf(path, sizeof(path), "%s/%s", mnt, file);
	return access(path, F_OK) == 0;
}

int inst_cg_cpus_available(char *buf, size_t len)
{
	char path[PATH_MAX];

	if (cg.v1[CG_CPUSET]) {
		snprintf(path, sizeof(path), "%s/cpuset.effective_cpus", cg.v1[CG_CPUSET]);
		if (inst_cg_read(path, buf, len) > 0)
			return 0;
		snprintf(path, sizeof(path), "%s/cpuset.cpus", cg.v1[CG_CPUSET]);
		if (inst_cg_read(path, buf, len) > 0)
			return 0;
	} else if (cg.unified) {
		snprintf(path, sizeof(path), "%s/cpuset.cpus.effective", cg.unified);
		if (inst_cg_read(path, buf, len) > 0)
			return 0;
	}
	return inst_cg_read("/sys/devices/system/cpu/online", buf, len) > 0 ? 0 : -ENOENT;
}
