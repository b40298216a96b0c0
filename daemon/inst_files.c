#include "daemon/inst_files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "common/util.h"

#define IF_TMP_PREFIX ".cell-upload-"

/* ---- resolution ----------------------------------------------------------- */

static int if_status(int e)
{
	switch (e) {
	case ENOENT:
		return 404;
	case EACCES:
	case EPERM:
		return 403;
	case EINVAL: case ENOTDIR: case EISDIR: case ELOOP: case ENOTEMPTY: case EEXIST:
	case ENAMETOOLONG: case EXDEV: case EBUSY: case ETXTBSY: case EROFS:
		return 400;
	default:
		return 500;
	}
}

static int if_err(cell_error *err, int e, const char *what, const char *path)
{
	return cell_err_sys(err, if_status(e), e, "%s %s", what, path);
}

int inst_files_open_root(const char *path, cell_error *err)
{
	int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? if_err(err, errno, "open root", path) : fd;
}

int inst_files_resolve(int rootfd, const char *path, int flags, mode_t mode, cell_error *err)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.mode = mode,
		/* No magic links: /proc/<pid>/fd/... inside a container must not
		 * lead back out to what a process there has open. */
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	const char *p = path && *path ? path : ".";

	/* EAGAIN: a rename raced the walk and the kernel refused to guess. */
	for (int i = 0; i < 32; i++) {
		long fd = syscall(SYS_openat2, rootfd, p, &how, sizeof(how));
		if (fd >= 0)
			return (int)fd;
		if (errno != EAGAIN && errno != EINTR)
			break;
	}
	return if_err(err, errno, "open", p);
}

int inst_files_split(const char *path, char **parent, char **name, cell_error *err)
{
	size_t n = path ? strlen(path) : 0;
	const char *slash, *base;
	size_t blen;

	if (!n)
		return cell_err(err, 400, EINVAL, "Missing path argument");
	while (n > 1 && path[n - 1] == '/')
		n--;
	slash = memrchr(path, '/', n);
	base = slash ? slash + 1 : path;
	blen = n - (size_t)(base - path);
	if (!blen || (blen == 1 && base[0] == '.') || (blen == 2 && !strncmp(base, "..", 2)))
		return cell_err(err, 400, EINVAL, "Invalid path \"%s\"", path);
	if (blen > NAME_MAX)
		return cell_err(err, 400, ENAMETOOLONG, "File name too long");
	*name = strndup(base, blen);
	if (!slash)
		*parent = strdup(".");
	else if (slash == path)
		*parent = strdup("/");
	else
		*parent = strndup(path, (size_t)(slash - path));
	if (!*name || !*parent) {
		free(*name);
		free(*parent);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	return 0;
}

int inst_files_open_parent(int rootfd, const char *path, char **name, cell_error *err)
{
	_cleanup_free_ char *parent = NULL;
	int fd;

	if (inst_files_split(path, &parent, name, err) < 0)
		return -EINVAL;
	fd = inst_files_resolve(rootfd, parent, O_PATH | O_DIRECTORY, 0, err);
	if (fd < 0) {
		free(*name);
		*name = NULL;
	}
	return fd;
}

char *inst_files_clean_path(const char *path)
{
	size_t n = strlen(path);
	char *out = malloc(n + 2), *o = out;
	const char *p = path;

	if (!out)
		return NULL;
	*o = '\0';
	while (*p) {
		const char *e;
		size_t len;
		while (*p == '/')
			p++;
		e = strchrnul(p, '/');
		len = (size_t)(e - p);
		if (len == 2 && !strncmp(p, "..", 2)) {
			while (o > out && *--o != '/')
				;
			*o = '\0';
		} else if (len && !(len == 1 && *p == '.')) {
			*o++ = '/';
			memcpy(o, p, len);
			o += len;
			*o = '\0';
		}
		p = e;
	}
	if (o == out)
		strcpy(out, "/");
	return out;
}

bool inst_files_kernel_fs(int fd)
{
	static const unsigned long kinds[] = {
		PROC_SUPER_MAGIC, SYSFS_MAGIC, CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC,
		DEVPTS_SUPER_MAGIC, SECURITYFS_MAGIC, DEBUGFS_MAGIC, TRACEFS_MAGIC, BPF_FS_MAGIC,
		NSFS_MAGIC, SELINUX_MAGIC, SMACK_MAGIC, EFIVARFS_MAGIC, PSTOREFS_MAGIC,
		BINFMTFS_MAGIC, 0x65735543 /* fusectl */, 0x62656570 /* configfs */,
	};
	struct statfs st;

	if (fstatfs(fd, &st) < 0)
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
		if ((unsigned long)st.f_type == kinds[i])
			return true;
	return false;
}

/* ---- headers ------------------------------------------------------------- */

static int if_parse_id(const char *v, const char *what, int64_t *out, cell_error *err)
{
	char *end;
	long long n;

	*out = -1;
	if (!v || !*v)
		return 0;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno || *end || n < -1 || n >= (long long)UINT32_MAX)
		return cell_err(err, 400, EINVAL, "Invalid %s \"%s\"", what, v);
	*out = n;
	return 0;
}

int inst_files_parse_headers(const http_req *req, struct inst_files_hdrs *h, cell_error *err)
{
	const char *mode = http_req_header(req, "X-LXD-mode");
	const char *type = http_req_header(req, "X-LXD-type");
	const char *write = http_req_header(req, "X-LXD-write");

	memset(h, 0, sizeof(*h));
	h->mode = -1;
	if (if_parse_id(http_req_header(req, "X-LXD-uid"), "UID", &h->uid, err) < 0 ||
	    if_parse_id(http_req_header(req, "X-LXD-gid"), "GID", &h->gid, err) < 0)
		return -EINVAL;
	if (mode && *mode) {
		char *end;
		long m;
		errno = 0;
		m = strtol(mode, &end, 0);   /* "0644" octal, "420" decimal, as LXD */
		if (errno || *end || m < 0)
			return cell_err(err, 400, EINVAL, "Invalid mode \"%s\"", mode);
		h->mode = (int)(m & 0777);
	}
	if (!type || !*type || !strcmp(type, "file"))
		h->type = INST_FILES_FILE;
	else if (!strcmp(type, "directory"))
		h->type = INST_FILES_DIRECTORY;
	else if (!strcmp(type, "symlink"))
		h->type = INST_FILES_SYMLINK;
	else
		return cell_err(err, 400, EINVAL, "Bad file type: %s", type);
	if (write && *write && strcmp(write, "overwrite") && strcmp(write, "append"))
		return cell_err(err, 400, EINVAL, "Bad file write mode: %s", write);
	h->append = write && !strcmp(write, "append");
	return 0;
}

/* ---- ids ---------------------------------------------------------------- */

static uint32_t if_unshift(const struct idmap *map, bool uid, uint32_t host)
{
	uint32_t ns;

	if (idmap_is_empty(map))
		return host;
	if ((uid ? idmap_unshift_uid(map, host, &ns) : idmap_unshift_gid(map, host, &ns)) < 0)
		return IDMAP_OVERFLOW_ID;   /* what the container itself sees */
	return ns;
}

static int if_shift(const struct idmap *map, bool uid, int64_t ns, uint32_t *host,
		    cell_error *err)
{
	uint32_t id = ns < 0 ? 0 : (uint32_t)ns;   /* default owner: the container's root */

	if (idmap_is_empty(map)) {
		*host = id;
		return 0;
	}
	if ((uid ? idmap_shift_uid(map, id, host) : idmap_shift_gid(map, id, host)) < 0)
		return cell_err(err, 400, EINVAL, "%s %u is not mapped in the container",
				uid ? "UID" : "GID", id);
	return 0;
}

/*
 * Creating as the container's root.  A filesystem the container mounted
 * itself (a tmpfs in an unprivileged container) belongs to the container's
 * user namespace, where the host's uid 0 does not exist: the kernel refuses
 * to create an inode for an fsuid it cannot map there (EOVERFLOW).  So
 * while something is created the thread's fsuid/fsgid are the container
 * root's host ids, which every filesystem of the container maps; a new
 * file is then never owned, even for a moment, by the host's root.
 *
 * Moving fsuid away from 0 drops CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER
 * and the other file capabilities from the effective set; they stay
 * permitted, so capset raises them again: the permission checks stay the
 * host root's, only the owner of what is created changes.  Both are
 * per-thread syscalls, undone (fsuid back to 0 restores the effective set)
 * before the call returns: about 4 us for the switch and back, twice per
 * push (begin, commit), nothing per byte.
 */
struct if_creds {
	bool on;
	uid_t old_uid;
	gid_t old_gid;
};

static bool if_caps_effective(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

	if (syscall(SYS_capget, &h, d) < 0)
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(d); i++)
		d[i].effective = d[i].permitted;
	return syscall(SYS_capset, &h, d) == 0;
}

static void if_creds_host(struct if_creds *c)
{
	if (!c->on)
		return;
	setfsuid(c->old_uid);
	setfsgid(c->old_gid);
	c->on = false;
}

/* ct: the container root's host ids; NULL (privileged) leaves the host's. */
static void if_creds_ct(const uint32_t ct[2], struct if_creds *c)
{
	c->on = false;
	if (!ct)
		return;
	c->old_gid = (gid_t)setfsgid(ct[1]);
	c->old_uid = (uid_t)setfsuid(ct[0]);
	c->on = true;
	/* setfsuid reports no error: read the ids back.  Without the switch
	 * (celld not root) everything works as before but on such mounts. */
	if ((uint32_t)setfsuid((uid_t)-1) != ct[0] || (uint32_t)setfsgid((gid_t)-1) != ct[1] ||
	    !if_caps_effective())
		if_creds_host(c);
}

/* The container root's host ids, or false for a privileged container. */
static bool if_ct_root(const struct idmap *map, uint32_t ct[2])
{
	return !idmap_is_empty(map) && idmap_shift_uid(map, 0, &ct[0]) == 0 &&
	       idmap_shift_gid(map, 0, &ct[1]) == 0;
}

/* ---- GET ---------------------------------------------------------------- */

static void if_headers(http_resp *resp, const struct idmap *map, const struct stat *st,
		       const char *type)
{
	char v[32];

	snprintf(v, sizeof(v), "%u", if_unshift(map, true, st->st_uid));
	http_resp_header(resp, "X-LXD-uid", v);
	snprintf(v, sizeof(v), "%u", if_unshift(map, false, st->st_gid));
	http_resp_header(resp, "X-LXD-gid", v);
	snprintf(v, sizeof(v), "%04o", (unsigned)(st->st_mode & 0777));
	http_resp_header(resp, "X-LXD-mode", v);
	http_resp_header(resp, "X-LXD-type", type);
}

/* An O_PATH fd opened for I/O: the very inode resolution found, not a path
 * a process in the container could swap in the meantime. */
static int if_reopen(int fd, int flags)
{
	char p[40];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	return open(p, flags | O_CLOEXEC | O_NOCTTY);
}

/* Content-Disposition (as LXD) and Last-Modified of a file's answer. */
static void if_file_headers(http_resp *resp, const char *path, const struct stat *st)
{
	_cleanup_free_ char *name = NULL, *parent = NULL;
	cell_error err = { 0 };
	char v[NAME_MAX + 32];
	struct tm tm;

	if (inst_files_split(path, &parent, &name, &err) == 0) {
		/* File names may hold any byte but '/': none may break the header. */
		for (char *c = name; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f || *c == '"' || *c == ';')
				*c = '_';
		snprintf(v, sizeof(v), "inline;filename=%s", name);
		http_resp_header(resp, "Content-Disposition", v);
	}
	gmtime_r(&st->st_mtime, &tm);
	strftime(v, sizeof(v), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	http_resp_header(resp, "Last-Modified", v);
}

static void if_get_file(int fd, const char *path, const struct stat *st,
			const struct idmap *map, http_resp *resp)
{
	/* O_NONBLOCK: a lease a process in the container holds must not stall
	 * the loop (the open fails instead); reads of regular files ignore it. */
	int rfd = if_reopen(fd, O_RDONLY | O_NONBLOCK);

	if (rfd < 0)
		return resp_error(resp, if_status(errno), "open %s: %s", path, strerror(errno));
	if_headers(resp, map, st, "file");
	if_file_headers(resp, path, st);
	resp->status = 200;
	snprintf(resp->content_type, sizeof(resp->content_type), "application/octet-stream");
	resp->body_fd = rfd;
	resp->body_fd_len = st->st_size;
}

/* st_size is what a read returns for files on disk, not for kernel files
 * (procfs says 0, sysfs 4096) nor for a FUSE file that reports 0: those
 * are read to their end. */
static bool if_size_known(int fd, const struct stat *st)
{
	return st->st_size > 0 && !inst_files_kernel_fs(fd);
}

/* The whole file into the body, so Content-Length is what was read. */
static void if_get_whole(int fd, const char *path, const struct stat *st,
			 const struct idmap *map, http_resp *resp)
{
	_cleanup_close_ int rfd = if_reopen(fd, O_RDONLY | O_NONBLOCK);
	char buf[65536];
	ssize_t n;

	if (rfd < 0)
		return resp_error(resp, if_status(errno), "open %s: %s", path, strerror(errno));
	sb_reset(&resp->body);
	while ((n = read(rfd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			sb_reset(&resp->body);
			return resp_error(resp, if_status(e), "read %s: %s", path, strerror(e));
		}
		if (resp->body.len + (size_t)n > INST_FILES_READ_MAX) {
			sb_reset(&resp->body);
			return resp_error(resp, 400, "%s: a file of unknown size is read whole, and "
					  "this one is larger than %u MiB", path, INST_FILES_READ_MAX >> 20);
		}
		if (sb_append(&resp->body, buf, (size_t)n) < 0) {
			sb_reset(&resp->body);
			return resp_error(resp, 500, "out of memory");
		}
	}
	if_headers(resp, map, st, "file");
	if_file_headers(resp, path, st);
	resp->status = 200;
	snprintf(resp->content_type, sizeof(resp->content_type), "application/octet-stream");
}

static void if_get_dir(int fd, const char *path, const struct stat *st,
		       const struct idmap *map, http_resp *resp)
{
	int rfd = if_reopen(fd, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
	_cleanup_closedir_ DIR *d = rfd >= 0 ? fdopendir(rfd) : NULL;
	json_t *names = json_array();
	struct dirent *de;

	if (!d) {
		if (rfd >= 0)
			close(rfd);
		json_decref(names);
		return resp_error(resp, if_status(errno), "open %s: %s", path, strerror(errno));
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			json_array_append_new(names, json_string(de->d_name));
	if_headers(resp, map, st, "directory");
	resp_sync(resp, names);
}

/* LXD answers with the target made absolute and clean, as seen inside. */
static void if_get_symlink(int fd, const char *path, const struct stat *st,
			   const struct idmap *map, http_resp *resp)
{
	char target[PATH_MAX + 1];
	_cleanup_free_ char *parent = NULL, *name = NULL, *joined = NULL, *clean = NULL;
	cell_error err = { 0 };
	ssize_t n = readlinkat(fd, "", target, sizeof(target) - 1);

	if (n < 0)
		return resp_error(resp, if_status(errno), "readlink %s: %s", path, strerror(errno));
	target[n] = '\0';
	if (target[0] != '/' && inst_files_split(path, &parent, &name, &err) == 0)
		joined = xasprintf("%s/%s", parent, target);
	clean = inst_files_clean_path(joined ? joined : target);
	if (!clean)
		return resp_error(resp, 500, "out of memory");
	if_headers(resp, map, st, "symlink");
	resp_raw(resp, 200, "application/octet-stream", clean, strlen(clean));
}

/* The answer for path.  A file to be read whole is left to the caller
 * (*whole set, nothing answered) when whole is not NULL, else read here. */
static void if_get(int rootfd, const struct idmap *map, const char *path, http_resp *resp,
		   bool *whole)
{
	_cleanup_close_ int fd = -1;
	cell_error err = { 0 };
	struct stat st;

	if (!path || !*path)
		return resp_error(resp, 400, "Missing path argument");
	/* O_NOFOLLOW: the final symlink is reported as one (lstat), as LXD. */
	fd = inst_files_resolve(rootfd, path, O_PATH | O_NOFOLLOW, 0, &err);
	if (fd < 0)
		return resp_from_err(resp, &err);
	if (fstat(fd, &st) < 0)
		return resp_error(resp, 500, "stat %s: %s", path, strerror(errno));
	switch (st.st_mode & S_IFMT) {
	case S_IFREG:
		if (if_size_known(fd, &st))
			return if_get_file(fd, path, &st, map, resp);
		if (whole) {
			*whole = true;
			return;
		}
		return if_get_whole(fd, path, &st, map, resp);
	case S_IFDIR:
		return if_get_dir(fd, path, &st, map, resp);
	case S_IFLNK:
		return if_get_symlink(fd, path, &st, map, resp);
	default:
		/* Devices and FIFOs: reading could block or never end. */
		return resp_error(resp, 400, "Unsupported file type for %s", path);
	}
}

void inst_files_get(int rootfd, const struct idmap *map, const char *path, http_resp *resp)
{
	if_get(rootfd, map, path, resp, NULL);
}

struct inst_files_read {
	int rootfd;
	char *path;
	struct idmap map;
};

void inst_files_read_free(struct inst_files_read *r)
{
	if (!r)
		return;
	if (r->rootfd >= 0)
		close(r->rootfd);
	free(r->path);
	idmap_free(&r->map);
	free(r);
}

static struct inst_files_read *if_read_new(int rootfd, const struct idmap *map, const char *path)
{
	struct inst_files_read *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->rootfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	r->path = strdup(path);
	for (size_t i = 0; map && i < map->n; i++)
		if (idmap_append(&r->map, &map->entries[i]) < 0)
			goto fail;
	if (r->rootfd >= 0 && r->path)
		return r;
fail:
	inst_files_read_free(r);
	return NULL;
}

void inst_files_get_start(int rootfd, const struct idmap *map, const char *path, http_resp *resp,
			  struct inst_files_read **whole)
{
	bool later = false;

	*whole = NULL;
	if_get(rootfd, map, path, resp, &later);
	if (later && !(*whole = if_read_new(rootfd, map, path)))
		resp_error(resp, 500, "out of memory");
}

/* Namespaces whose view a kernel file may show (/proc/sys/kernel/hostname
 * is the reader's UTS namespace's, /proc/sys/net its network namespace's).
 * These can be joined by one thread of a threaded process; the mount
 * namespace cannot, and is not needed: the root already is the
 * container's.  The user namespace cannot either: ids some kernel files
 * print stay the host's. */
#define IF_READ_NS (CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET)

struct if_ns_read {
	struct inst_files_read *r;
	int pidfd;
	http_resp *resp;
	int err;
};

/* A thread of its own, which ends with the namespaces it joined: nothing
 * is restored, and no other work ever runs in them. */
static void *if_ns_thread(void *arg)
{
	struct if_ns_read *j = arg;

	if (setns(j->pidfd, IF_READ_NS) < 0)
		j->err = errno;
	else
		if_get(j->r->rootfd, &j->r->map, j->r->path, j->resp, NULL);
	return NULL;
}

void inst_files_read_run(struct inst_files_read *r, int pidfd, http_resp *resp)
{
	struct if_ns_read j = { .r = r, .pidfd = pidfd, .resp = resp };
	pthread_t t;
	int rc;

	/* Resolved again: the namespaces also decide what a path under /proc/sys
	 * is (net sysctls are looked up in the reader's network namespace). */
	if (pidfd < 0)
		return if_get(r->rootfd, &r->map, r->path, resp, NULL);
	if ((rc = pthread_create(&t, NULL, if_ns_thread, &j)) != 0)
		return resp_error(resp, 500, "read %s: start a thread: %s", r->path, strerror(rc));
	pthread_join(t, NULL);
	if (j.err)
		resp_error(resp, 500, "read %s: join the instance's namespaces: %s", r->path,
			   strerror(j.err));
}

/* ---- DELETE ------------------------------------------------------------- */

void inst_files_delete(int rootfd, const char *path, http_resp *resp)
{
	_cleanup_free_ char *name = NULL;
	_cleanup_close_ int parent = -1;
	cell_error err = { 0 };
	struct stat st;

	if (!path || !*path)
		return resp_error(resp, 400, "Missing path argument");
	parent = inst_files_open_parent(rootfd, path, &name, &err);
	if (parent < 0)
		return resp_from_err(resp, &err);
	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return resp_error(resp, if_status(errno), "%s: %s", path, strerror(errno));
	/* A type swapped in between gets EISDIR/ENOTDIR: nothing unintended goes. */
	if (unlinkat(parent, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0) {
		int e = errno;
		if (e == ENOTEMPTY || e == EEXIST)
			return resp_error(resp, 400, "Directory not empty: %s", path);
		return resp_error(resp, if_status(e), "remove %s: %s", path, strerror(e));
	}
	resp_empty(resp);
}

/* ---- POST --------------------------------------------------------------- */

struct inst_files_post {
	cell_error refused;        /* answered by end(), once the body is read */
	bool failed;
	struct inst_files_hdrs h;
	int parent;                /* O_PATH: every change is relative to it */
	char *name;
	char *path;                /* for messages */
	int fd;                    /* the upload (temporary or, appending, the file) */
	bool named_tmp;            /* fd has a visible temporary name (no O_TMPFILE) */
	char tmp[sizeof(IF_TMP_PREFIX) + 16];
	bool replace_regular;      /* overwriting a regular file: keep its owner and mode */
	struct stat old;
	uint32_t uid, gid;         /* host ids for what is created */
	bool unpriv;               /* ct_root holds the container root's host ids */
	uint32_t ct_root[2];
	strbuf target;             /* symlink */
};

static void if_post_free(struct inst_files_post *p)
{
	if (p->fd >= 0)
		close(p->fd);
	if (p->named_tmp)
		unlinkat(p->parent, p->tmp, 0);
	if (p->parent >= 0)
		close(p->parent);
	sb_free(&p->target);
	free(p->name);
	free(p->path);
	free(p);
}

static void if_tmp_name(struct inst_files_post *p)
{
	char hex[17];
	if (util_random_hex(hex, 8) < 0)
		snprintf(hex, sizeof(hex), "%016lx", (unsigned long)random());
	snprintf(p->tmp, sizeof(p->tmp), IF_TMP_PREFIX "%s", hex);
}

/* Hidden until complete: O_TMPFILE has no name at all; filesystems without
 * it get a dot-name that a crash could leave behind. */
static int if_open_tmp(struct inst_files_post *p, cell_error *err)
{
	p->fd = openat(p->parent, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (p->fd >= 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
		return if_err(err, errno, "create", p->path);
	if_tmp_name(p);
	p->fd = openat(p->parent, p->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		       0600);
	if (p->fd < 0)
		return if_err(err, errno, "create", p->path);
	p->named_tmp = true;
	return 0;
}

static int if_begin_append(struct inst_files_post *p, cell_error *err)
{
	struct stat st;

	/* O_NONBLOCK: a FIFO swapped in must not hang the loop; it is refused below. */
	p->fd = openat(p->parent, p->name, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK |
					   O_CLOEXEC | O_NOCTTY);
	if (p->fd < 0 && errno == ENXIO)   /* a FIFO nobody reads */
		return cell_err(err, 400, EINVAL, "%s is not a regular file", p->path);
	if (p->fd < 0)
		return if_err(err, errno, "open", p->path);
	if (fstat(p->fd, &st) < 0 || !S_ISREG(st.st_mode))
		return cell_err(err, 400, EINVAL, "%s is not a regular file", p->path);
	return 0;
}

static int if_begin_file(struct inst_files_post *p, cell_error *err)
{
	if (p->h.append)
		return if_begin_append(p, err);
	if (fstatat(p->parent, p->name, &p->old, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISDIR(p->old.st_mode))
			return cell_err(err, 400, EISDIR, "%s is a directory", p->path);
		p->replace_regular = S_ISREG(p->old.st_mode);
	} else if (errno != ENOENT) {
		return if_err(err, errno, "stat", p->path);
	}
	return if_open_tmp(p, err);
}

static int if_begin(struct inst_files_post *p, int rootfd, const struct idmap *map,
		    const char *path, const http_req *req, cell_error *err)
{
	if (!path || !*path)
		return cell_err(err, 400, EINVAL, "Missing path argument");
	if (inst_files_parse_headers(req, &p->h, err) < 0 ||
	    if_shift(map, true, p->h.uid, &p->uid, err) < 0 ||
	    if_shift(map, false, p->h.gid, &p->gid, err) < 0)
		return -EINVAL;
	p->parent = inst_files_open_parent(rootfd, path, &p->name, err);
	if (p->parent < 0)
		return p->parent;
	return p->h.type == INST_FILES_FILE ? if_begin_file(p, err) : 0;
}

int inst_files_post_begin(int rootfd, const struct idmap *map, const char *path,
			  const http_req *req, struct inst_files_post **out, cell_error *err)
{
	struct inst_files_post *p = calloc(1, sizeof(*p));
	struct if_creds creds;
	int rc;

	if (!p || !(p->path = strdup(path ? path : ""))) {
		free(p);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	p->fd = p->parent = -1;
	p->unpriv = if_ct_root(map, p->ct_root);
	if_creds_ct(p->unpriv ? p->ct_root : NULL, &creds);
	rc = if_begin(p, rootfd, map, path, req, &p->refused);
	if_creds_host(&creds);
	if (rc < 0) {
		/* Nothing was changed.  Refusing before the body is read would
		 * close the connection under a client still sending it, which
		 * then sees a reset instead of this answer. */
		p->failed = true;
		if (p->fd >= 0)
			close(p->fd);
		p->fd = -1;
	}
	*out = p;
	return 0;
}

/* Writing to the page cache from the loop thread is accepted for now: it
 * is what keeps memory flat (nothing is buffered), and a chunk is at most
 * one socket read.  A worker thread belongs here if storage gets slow. */
int inst_files_post_chunk(struct inst_files_post *p, const void *data, size_t len,
			  cell_error *err)
{
	if (p->failed)
		return 0;   /* drained, answered at the end */
	if (p->h.type == INST_FILES_SYMLINK) {
		if (p->target.len + len > PATH_MAX)
			return cell_err(err, 400, ENAMETOOLONG, "Symlink target too long");
		return sb_append(&p->target, data, len) < 0
			       ? cell_err(err, 500, ENOMEM, "out of memory") : 0;
	}
	if (p->h.type != INST_FILES_FILE)
		return 0;   /* LXD ignores a directory's body */
	while (len) {
		ssize_t n = write(p->fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return if_err(err, errno, "write", p->path);
		data = (const char *)data + n;
		len -= (size_t)n;
	}
	return 0;
}

int inst_files_post_sink(const struct inst_files_post *p)
{
	return p->failed || p->h.type != INST_FILES_FILE || p->h.append ? -1 : p->fd;
}

/* Owner before mode: chown clears set-id bits. */
static int if_own_and_mode(int fd, uint32_t uid, uint32_t gid, mode_t mode, const char *path,
			   cell_error *err)
{
	if (fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0)
		return if_err(err, errno, "set owner and mode of", path);
	return 0;
}

static int if_commit_file(struct inst_files_post *p, cell_error *err)
{
	char proc[40];
	int rc;

	if (p->h.append)
		return 0;
	if (p->replace_regular)
		rc = if_own_and_mode(p->fd, p->old.st_uid, p->old.st_gid, p->old.st_mode & 07777,
				     p->path, err);
	else
		rc = if_own_and_mode(p->fd, p->uid, p->gid,
				     p->h.mode >= 0 ? (mode_t)p->h.mode : INST_FILES_FILE_MODE,
				     p->path, err);
	if (rc < 0)
		return rc;
	if (!p->named_tmp) {
		if_tmp_name(p);
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", p->fd);
		if (linkat(p->fd, "", p->parent, p->tmp, AT_EMPTY_PATH) < 0 &&
		    linkat(AT_FDCWD, proc, p->parent, p->tmp, AT_SYMLINK_FOLLOW) < 0)
			return if_err(err, errno, "create", p->path);
		p->named_tmp = true;
	}
	/* The last name is replaced, never followed: a symlink there is
	 * replaced itself. */
	if (renameat(p->parent, p->tmp, p->parent, p->name) < 0)
		return if_err(err, errno, "replace", p->path);
	p->named_tmp = false;
	return 0;
}

static int if_commit_dir(struct inst_files_post *p, cell_error *err)
{
	_cleanup_close_ int fd = -1;
	struct stat st;

	if (mkdirat(p->parent, p->name, 0700) < 0) {
		if (errno != EEXIST)
			return if_err(err, errno, "mkdir", p->path);
		if (fstatat(p->parent, p->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
			return 0;   /* LXD: an existing directory is left as it is */
		return cell_err(err, 400, EEXIST, "%s exists and is not a directory", p->path);
	}
	/* Through an fd: a symlink swapped in for the new directory is refused. */
	fd = openat(p->parent, p->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return if_err(err, errno, "open", p->path);
	return if_own_and_mode(fd, p->uid, p->gid,
			       p->h.mode >= 0 ? (mode_t)p->h.mode : INST_FILES_DIR_MODE, p->path, err);
}

static int if_commit_symlink(struct inst_files_post *p, cell_error *err)
{
	char cur[PATH_MAX + 1];
	ssize_t n;

	if (!p->target.len || memchr(p->target.buf, '\0', p->target.len))
		return cell_err(err, 400, EINVAL, "Invalid symlink target");
	if (symlinkat(p->target.buf, p->parent, p->name) < 0) {
		if (errno != EEXIST)
			return if_err(err, errno, "symlink", p->path);
		n = readlinkat(p->parent, p->name, cur, sizeof(cur) - 1);
		if (n >= 0 && (size_t)n == p->target.len && !memcmp(cur, p->target.buf, (size_t)n))
			return 0;   /* already there, as LXD */
		return cell_err(err, 400, EEXIST, "%s already exists", p->path);
	}
	if (fchownat(p->parent, p->name, p->uid, p->gid, AT_SYMLINK_NOFOLLOW) < 0)
		return if_err(err, errno, "set owner of", p->path);
	return 0;
}

void inst_files_post_end(struct inst_files_post *p, http_resp *resp, const cell_error *failed)
{
	cell_error err = { 0 };
	struct if_creds creds;
	int rc = 0;

	if (failed || p->failed) {
		resp_from_err(resp, p->failed ? &p->refused : failed);
		if_post_free(p);   /* the temporary goes; the old file stays */
		return;
	}
	if_creds_ct(p->unpriv ? p->ct_root : NULL, &creds);
	if (p->h.type == INST_FILES_FILE)
		rc = if_commit_file(p, &err);
	else if (p->h.type == INST_FILES_DIRECTORY)
		rc = if_commit_dir(p, &err);
	else
		rc = if_commit_symlink(p, &err);
	if_creds_host(&creds);
	if (rc < 0)
		resp_from_err(resp, &err);
	else
		resp_empty(resp);
	if_post_free(p);
}
