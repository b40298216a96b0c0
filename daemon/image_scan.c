#include "daemon/image_scan.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/tarstream.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/util.h"

#define SCAN_PROGRESS_STEP (1024 * 1024)
#define SCAN_FILE_BUF (1024 * 1024)

extern char **environ;

void img_scan_result_free(struct img_scan_result *r)
{
	if (!r)
		return;
	free(r->meta_yaml);
	memset(r, 0, sizeof(*r));
}

bool img_scan_device_allowed(bool block, unsigned major, unsigned minor)
{
	static const unsigned ok[][2] = {
		{ 0, 0 },                                     /* overlay whiteout */
		{ 1, 3 }, { 1, 5 }, { 1, 7 }, { 1, 8 }, { 1, 9 },   /* null zero full random urandom */
		{ 5, 0 }, { 5, 1 }, { 5, 2 },                 /* tty console ptmx */
	};

	if (block)
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
		if (ok[i][0] == major && ok[i][1] == minor)
			return true;
	return false;
}

int img_scan_limits_for(const char *dir, struct img_scan_opts *o, cell_error *err)
{
	struct statvfs sv;

	if (statvfs(dir, &sv) < 0)
		return cell_err_sys(err, 500, errno, "statvfs %s", dir);
	o->max_bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
	o->max_entries = sv.f_files ? (uint64_t)sv.f_favail : UINT64_MAX;
	return 0;
}

/* ---- names ------------------------------------------------------------------ */

/* p names exactly `name` (a trailing '/' of a directory entry aside). */
static bool name_is(const char *p, const char *name)
{
	size_t n = strlen(name);

	if (strncmp(p, name, n))
		return false;
	for (p += n; *p == '/'; p++)
		;
	return !*p;
}

/* Under top-level directory `dir` ("rootfs")?  *rest gets the part below it. */
static bool under(const char *p, const char *dir, const char **rest)
{
	size_t n = strlen(dir);

	if (strncmp(p, dir, n) || (p[n] != '/' && p[n] != '\0'))
		return false;
	p += n;
	while (*p == '/')
		p++;
	*rest = p;
	return true;
}

/* ---- the scan ----------------------------------------------------------------- */

struct scan_ctx {
	const struct img_scan_src *src;
	enum img_scan_kind kind;
	const struct img_scan_opts *o;
	struct img_scan_result *res;
	cell_error *err;
	struct archive *a;
	uint64_t last_report;
};

static la_ssize_t scan_read_cb(struct archive *a, void *data, const void **buf)
{
	struct scan_ctx *c = data;
	ssize_t n = c->src->read(c->src->data, buf);

	if (n < 0) {
		archive_set_error(a, (int)-n, "%s", strerror((int)-n));
		return -1;
	}
	return n;
}

static la_int64_t scan_skip_cb(struct archive *a, void *data, la_int64_t n)
{
	struct scan_ctx *c = data;
	return c->src->skip ? c->src->skip(c->src->data, n) : 0;
}

static const char *filter_name(int code)
{
	switch (code) {
	case ARCHIVE_FILTER_NONE: return "none";
	case ARCHIVE_FILTER_GZIP: return "gzip";
	case ARCHIVE_FILTER_BZIP2: return "bzip2";
	case ARCHIVE_FILTER_XZ: return "xz";
	case ARCHIVE_FILTER_LZMA: return "lzma";
	case ARCHIVE_FILTER_ZSTD: return "zstd";
	case ARCHIVE_FILTER_LZ4: return "lz4";
	case ARCHIVE_FILTER_LZIP: return "lzip";
	default: return "unknown";
	}
}

static int scan_progress(struct scan_ctx *c)
{
	uint64_t in = (uint64_t)archive_filter_bytes(c->a, -1);

	if (!c->o || !c->o->progress || in - c->last_report < SCAN_PROGRESS_STEP)
		return 0;
	c->last_report = in;
	if (c->o->progress(c->o->progress_data, in))
		return cell_err(c->err, 400, ECANCELED, "Image validation cancelled");
	return 0;
}

static int read_meta(struct scan_ctx *c, struct archive_entry *e, const char *name)
{
	_cleanup_free_ char *buf = NULL;
	size_t n = 0, cap;
	la_ssize_t r;

	if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e))
		return cell_err(c->err, 400, EINVAL, "%s in the image is not a regular file", name);
	if (archive_entry_size(e) > IMAGE_META_MAX_SIZE)
		return cell_err(c->err, 400, EFBIG, "%s is larger than %d bytes", name, IMAGE_META_MAX_SIZE);
	cap = (size_t)archive_entry_size(e) + 1;
	buf = malloc(cap + 1);
	if (!buf)
		return cell_err(c->err, 500, ENOMEM, "out of memory");
	while ((r = archive_read_data(c->a, buf + n, cap - n)) > 0) {
		n += (size_t)r;
		if (n >= cap)
			return cell_err(c->err, 400, EFBIG, "%s is larger than its header says", name);
	}
	if (r < 0)
		return cell_err(c->err, 400, EIO, "%s: %s", name, archive_error_string(c->a) ?: "read error");
	buf[n] = '\0';
	free(c->res->meta_yaml);
	c->res->meta_yaml = steal_ptr(buf);
	c->res->meta_len = n;
	c->res->has_meta = true;
	return 0;
}

/* Checks and accounting for an entry that will land in the rootfs or templates. */
static int tree_entry(struct scan_ctx *c, struct archive_entry *e, const char *name,
		      const char *link_prefix)
{
	const char *hl = archive_entry_hardlink(e), *rest;
	mode_t type = archive_entry_filetype(e);

	if (hl) {
		const char *t = tar_name_skip_dot_slash(hl);
		if (t[0] == '/' || tar_name_has_dotdot(t) || (link_prefix && !under(t, link_prefix, &rest)))
			return cell_err(c->err, 400, EPERM,
					"%s: refused: hard link to '%s' points outside the %s", name, hl,
					link_prefix ? "rootfs" : "image");
	} else if (type == AE_IFCHR || type == AE_IFBLK) {
		unsigned ma = (unsigned)archive_entry_rdevmajor(e), mi = (unsigned)archive_entry_rdevminor(e);
		if (!img_scan_device_allowed(type == AE_IFBLK, ma, mi))
			return cell_err(c->err, 400, EPERM,
					"%s: refused: %s device %u:%u (only null, zero, full, random, "
					"urandom, tty, console and ptmx may be in an image)",
					name, type == AE_IFBLK ? "block" : "character", ma, mi);
	} else if (type == AE_IFREG && archive_entry_size(e) > 0) {
		c->res->bytes += (uint64_t)archive_entry_size(e);
	}
	c->res->entries++;
	if (c->o && c->res->bytes > c->o->max_bytes)
		return cell_err(c->err, 400, ENOSPC,
				"%s: refused: the image unpacks to more than the %llu bytes free in the "
				"image store", name, (unsigned long long)c->o->max_bytes);
	if (c->o && c->res->entries > c->o->max_entries)
		return cell_err(c->err, 400, ENOSPC,
				"%s: refused: the image has more files than the %llu inodes free in the "
				"image store", name, (unsigned long long)c->o->max_entries);
	return 0;
}

static int scan_entry(struct scan_ctx *c, struct archive_entry *e)
{
	const char *raw = archive_entry_pathname(e), *p, *rest;

	if (!raw || !*raw)
		return cell_err(c->err, 400, EPERM, "refused: an entry without a name");
	if (raw[0] == '/')
		return cell_err(c->err, 400, EPERM, "%s: refused: absolute path", raw);
	p = tar_name_skip_dot_slash(raw);
	if (tar_name_has_dotdot(p))
		return cell_err(c->err, 400, EPERM, "%s: refused: path contains '..'", raw);
	if (c->kind == IMG_SCAN_ROOTFS) {
		c->res->has_rootfs = true;
		return tree_entry(c, e, raw, NULL);
	}
	if (name_is(p, "metadata.yaml"))
		return read_meta(c, e, raw);
	if (name_is(p, "rootfs.img"))
		return cell_err(c->err, 400, ENOTSUP, "Virtual machine images are not supported");
	if (under(p, "templates", &rest))
		return tree_entry(c, e, raw, "templates");
	if (c->kind == IMG_SCAN_UNIFIED && under(p, "rootfs", &rest)) {
		c->res->has_rootfs = true;
		return tree_entry(c, e, raw, "rootfs");
	}
	return 0;   /* anything else is never unpacked, as LXD ignores it */
}

static int scan_loop(struct scan_ctx *c)
{
	struct archive_entry *e;
	int r, rc;

	while ((r = archive_read_next_header(c->a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		if (!c->res->compression[0])
			snprintf(c->res->compression, sizeof(c->res->compression), "%s",
				 filter_name(archive_filter_code(c->a, 0)));
		if ((rc = scan_entry(c, e)) < 0 || (rc = scan_progress(c)) < 0)
			return rc;
	}
	if (r != ARCHIVE_EOF) {
		const char *msg = archive_error_string(c->a);
		if (archive_errno(c->a) == ECANCELED)
			return cell_err(c->err, 400, ECANCELED, "Image validation cancelled");
		return cell_err(c->err, 400, EINVAL, "Invalid image tarball: %s", msg ? msg : "read error");
	}
	return 0;
}

int img_scan_archive(const struct img_scan_src *src, enum img_scan_kind kind,
		     const struct img_scan_opts *o, struct img_scan_result *res, cell_error *err)
{
	struct scan_ctx c = { .src = src, .kind = kind, .o = o, .res = res, .err = err };
	struct archive *a = archive_read_new();
	int rc;

	memset(res, 0, sizeof(*res));
	if (!a)
		return cell_err(err, 500, ENOMEM, "out of memory");
	c.a = a;
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	archive_read_support_filter_none(a);
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_bzip2(a);
	archive_read_support_filter_xz(a);
	archive_read_support_filter_lzma(a);
	archive_read_support_filter_lzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_filter_lz4(a);
	if (archive_read_open2(a, &c, NULL, scan_read_cb, scan_skip_cb, NULL) != ARCHIVE_OK) {
		const char *msg = archive_error_string(a);
		rc = cell_err(err, 400, EINVAL, "Invalid image tarball: %s", msg ? msg : "unreadable");
	} else {
		rc = scan_loop(&c);
	}
	archive_read_free(a);
	if (rc == 0 && kind != IMG_SCAN_ROOTFS && !res->has_meta)
		rc = cell_err(err, 400, ENOENT, "Metadata tarball is missing metadata.yaml");
	if (rc == 0 && kind == IMG_SCAN_UNIFIED && !res->has_rootfs)
		rc = cell_err(err, 400, ENOENT, "Image tarball has no rootfs/ directory");
	if (rc < 0)
		img_scan_result_free(res);
	return rc;
}

/* ---- a file as the source --------------------------------------------------- */

struct file_src {
	int fd;
	off_t off, size;
	char *buf;
};

static ssize_t file_read(void *data, const void **buf)
{
	struct file_src *f = data;
	ssize_t n = pread(f->fd, f->buf, SCAN_FILE_BUF, f->off);

	if (n < 0)
		return -errno;
	f->off += n;
	*buf = f->buf;
	return n;
}

static int64_t file_skip(void *data, int64_t n)
{
	struct file_src *f = data;

	if (n > f->size - f->off)
		n = f->size - f->off;
	if (n < 0)
		n = 0;
	f->off += n;
	return n;
}

int img_scan_file(const char *path, enum img_scan_kind kind, const struct img_scan_opts *o,
		  struct img_scan_result *res, cell_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ char *buf = malloc(SCAN_FILE_BUF);
	struct file_src f = { .fd = fd, .buf = buf };
	struct img_scan_src src = { file_read, file_skip, &f };
	struct stat st;

	memset(res, 0, sizeof(*res));
	if (fd < 0 || fstat(fd, &st) < 0)
		return cell_err_sys(err, 500, errno, "open %s", path);
	if (!buf)
		return cell_err(err, 500, ENOMEM, "out of memory");
	f.size = st.st_size;
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	return img_scan_archive(&src, kind, o, res, err);
}

/* ---- squashfs ------------------------------------------------------------------ */

static int run_unsquashfs_list(const char *path, strbuf *out, int *status, cell_error *err)
{
	char *argv[] = { "unsquashfs", "-lln", "-d", "", (char *)path, NULL };
	posix_spawn_file_actions_t fa;
	char buf[65536];
	int p[2], rc;
	pid_t pid;
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) < 0)
		return cell_err_sys(err, 500, errno, "pipe");
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (rc) {
		close(p[0]);
		return cell_err_sys(err, 500, rc, "run unsquashfs");
	}
	while ((n = read(p[0], buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || sb_append(out, buf, (size_t)n) < 0)
			break;
	}
	close(p[0]);
	while (waitpid(pid, status, 0) < 0)
		if (errno != EINTR)
			return cell_err_sys(err, 500, errno, "wait for unsquashfs");
	return 0;
}

/* One `unsquashfs -lln` line: "perms uid/gid size|maj, min date time /path[ -> target]". */
static int squash_line(char *l, const struct img_scan_opts *o, struct img_scan_result *res,
		       cell_error *err)
{
	char perms[16] = "", owner[64], *name;
	unsigned long long size = 0;
	unsigned ma = 0, mi = 0;
	int pos = 0;

	if (sscanf(l, "%15s %63s %n", perms, owner, &pos) < 2)
		return 0;
	if (perms[0] == 'c' || perms[0] == 'b') {
		int p2 = 0;
		if (sscanf(l + pos, "%u, %u %n", &ma, &mi, &p2) < 2)
			return cell_err(err, 400, EINVAL, "unexpected unsquashfs output: %s", l);
		pos += p2;
	} else {
		int p2 = 0;
		if (sscanf(l + pos, "%llu %n", &size, &p2) < 1)
			return 0;
		pos += p2;
	}
	/* date and time */
	name = l + pos;
	for (int i = 0; i < 2 && name; i++) {
		name = strchr(name, ' ');
		if (name)
			name++;
	}
	if (!name)
		return 0;
	if (perms[0] == 'l') {
		char *arrow = strstr(name, " -> ");
		if (arrow)
			*arrow = '\0';
	}
	if (tar_name_has_dotdot(name))
		return cell_err(err, 400, EPERM, "%s: refused: path contains '..'", name);
	if ((perms[0] == 'c' || perms[0] == 'b') && !img_scan_device_allowed(perms[0] == 'b', ma, mi))
		return cell_err(err, 400, EPERM,
				"%s: refused: %s device %u:%u (only null, zero, full, random, urandom, "
				"tty, console and ptmx may be in an image)",
				name, perms[0] == 'b' ? "block" : "character", ma, mi);
	if (perms[0] == '-')
		res->bytes += size;
	res->entries++;
	if (o && res->bytes > o->max_bytes)
		return cell_err(err, 400, ENOSPC, "refused: the image unpacks to more than the %llu bytes "
				"free in the image store", (unsigned long long)o->max_bytes);
	if (o && res->entries > o->max_entries)
		return cell_err(err, 400, ENOSPC, "refused: the image has more files than the %llu inodes "
				"free in the image store", (unsigned long long)o->max_entries);
	return 0;
}

int img_scan_squashfs(const char *path, const struct img_scan_opts *o, struct img_scan_result *res,
		      cell_error *err)
{
	_cleanup_sb_ strbuf out = { 0 };
	char *save = NULL;
	int status = 0, rc;

	memset(res, 0, sizeof(*res));
	if ((rc = run_unsquashfs_list(path, &out, &status, err)) < 0)
		return rc;
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return cell_err(err, 400, EINVAL, "Invalid image: the rootfs is not a valid squashfs image");
	snprintf(res->compression, sizeof(res->compression), "squashfs");
	res->has_rootfs = true;
	for (char *l = strtok_r(out.buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if ((rc = squash_line(l, o, res, err)) < 0)
			return rc;
	return 0;
}
