#include "common/tarstream.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/util.h"

#define TAR_READ_BLOCK (1024 * 1024)
#define TAR_PROGRESS_STEP (1024 * 1024)

extern char **environ;

static inline void archive_read_freep(struct archive **a) { if (*a) archive_read_free(*a); }
static inline void archive_write_freep(struct archive **a) { if (*a) archive_write_free(*a); }
static inline void archive_entry_freep(struct archive_entry **e) { if (*e) archive_entry_free(*e); }
#define _cleanup_archive_read_ __attribute__((cleanup(archive_read_freep)))
#define _cleanup_archive_write_ __attribute__((cleanup(archive_write_freep)))
#define _cleanup_archive_entry_ __attribute__((cleanup(archive_entry_freep)))

static const char *aerr(struct archive *a)
{
	const char *s = archive_error_string(a);
	return s ? s : "unknown libarchive error";
}

static int aerrno(struct archive *a, int fallback)
{
	int e = archive_errno(a);
	return e > 0 ? e : fallback;
}

/* ---- confinement ---------------------------------------------------------- */

/*
 * libarchive resolves entry names and hard-link targets against the current
 * directory, which is process-wide.  A short-lived thread with its own fs
 * struct (unshare(CLONE_FS)) can chdir and chroot into the tree without
 * touching the daemon's other threads; with the chroot, even a libarchive bug
 * or a symlink race cannot reach a path outside the tree.
 */
struct confined_call {
	int dirfd;
	int (*fn)(void *arg);
	void *arg;
	int rc;
	int sys_errno;
	const char *step;
};

static void confined_run(struct confined_call *c)
{
	if (unshare(CLONE_FS) < 0) {
		c->step = "unshare(CLONE_FS)";
		goto fail;
	}
	umask(022);
	if (fchdir(c->dirfd) < 0) {
		c->step = "chdir";
		goto fail;
	}
	/* Without CAP_SYS_CHROOT the secure-extraction flags are the only guard. */
	if (chroot(".") == 0 && chdir("/") < 0) {
		c->step = "chdir /";
		goto fail;
	}
	c->rc = c->fn(c->arg);
	return;
fail:
	c->sys_errno = errno;
	c->rc = -errno;
}

static void *confined_main(void *p)
{
	struct confined_call *c = p;
	/* Image names are UTF-8 (pax, Go, GNU tar).  With a UTF-8 thread locale
	 * libarchive passes them through untouched both ways instead of marking
	 * them hdrcharset=BINARY; glibc's C.UTF-8 is built in, so the chroot
	 * does not matter. */
	locale_t utf8 = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);

	if (utf8)
		uselocale(utf8);
	confined_run(c);
	if (utf8) {
		uselocale(LC_GLOBAL_LOCALE);
		freelocale(utf8);
	}
	return NULL;
}

static int run_confined(const char *dir, int (*fn)(void *), void *arg, cell_error *err)
{
	struct confined_call c = { .dirfd = -1, .fn = fn, .arg = arg };
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	pthread_t t;
	int rc;

	if (dfd < 0)
		return cell_err_sys(err, 500, errno, "open %s", dir);
	c.dirfd = dfd;
	rc = pthread_create(&t, NULL, confined_main, &c);
	if (rc)
		return cell_err_sys(err, 500, rc, "%s: start worker thread", dir);
	pthread_join(t, NULL);
	if (c.step)
		return cell_err_sys(err, 500, c.sys_errno, "%s: %s", dir, c.step);
	return c.rc;
}

/* ---- entry names ----------------------------------------------------------- */

enum name_kind { NAME_SKIP, NAME_ROOT, NAME_OK, NAME_BAD };

const char *tar_name_skip_dot_slash(const char *p)
{
	while (p[0] == '.' && p[1] == '/') {
		p += 2;
		while (*p == '/')
			p++;
	}
	return p;
}

bool tar_name_has_dotdot(const char *p)
{
	while (*p) {
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return true;
		p += n;
		while (*p == '/')
			p++;
	}
	return false;
}

static bool only_dots_and_slashes(const char *p)
{
	for (; *p; p++)
		if (*p != '/' && *p != '.')
			return false;
	return true;
}

/* Map an archive name to a path relative to the target; *why explains NAME_BAD. */
static enum name_kind entry_relpath(const char *raw, const char *prefix, const char **rel,
				    const char **why)
{
	const char *p;
	size_t plen;

	if (!raw || !*raw) {
		*why = "empty name";
		return NAME_BAD;
	}
	if (raw[0] == '/') {
		*why = "absolute path";
		return NAME_BAD;
	}
	p = tar_name_skip_dot_slash(raw);
	if (prefix && *prefix) {
		plen = strlen(prefix);
		while (plen && prefix[plen - 1] == '/')
			plen--;
		if (strncmp(p, prefix, plen) != 0 || (p[plen] != '/' && p[plen] != '\0'))
			return NAME_SKIP;
		p += plen;
		while (*p == '/')
			p++;
	}
	if (tar_name_has_dotdot(p)) {
		*why = "path contains '..'";
		return NAME_BAD;
	}
	*rel = p;
	return only_dots_and_slashes(p) ? NAME_ROOT : NAME_OK;
}

/* ---- id remapping of one entry --------------------------------------------- */

struct remap {
	const struct idmap *from, *to;
	bool strict;   /* unpack: unmapped ids are errors; export: they become 65534 */
};

static bool remap_active(const struct remap *r)
{
	return !idmap_is_empty(r->from) || !idmap_is_empty(r->to);
}

static int remap_one(const struct remap *r, bool uid, int64_t in, uint32_t *out)
{
	if (in >= 0 && in <= (int64_t)UINT32_MAX &&
	    idmap_remap_id(r->from, r->to, uid, (uint32_t)in, out) == 0)
		return 0;
	if (r->strict)
		return -ERANGE;
	*out = IDMAP_OVERFLOW_ID;
	return 0;
}

struct acl_item { int type, perm, tag, qual; };

static int remap_acls(struct archive_entry *e, const struct remap *r, const char *name,
		      cell_error *err)
{
	const int want = ARCHIVE_ENTRY_ACL_TYPE_POSIX1E | ARCHIVE_ENTRY_ACL_TYPE_NFS4;
	int n = archive_entry_acl_reset(e, want), type, perm, tag, qual, k = 0;
	_cleanup_free_ struct acl_item *items = NULL;
	const char *aname;

	if (n <= 0)
		return 0;
	items = calloc((size_t)n, sizeof(*items));
	if (!items)
		return cell_err(err, 500, ENOMEM, "%s: out of memory", name);
	while (k < n && archive_entry_acl_next(e, want, &type, &perm, &tag, &qual, &aname) == ARCHIVE_OK)
		items[k++] = (struct acl_item){ type, perm, tag, qual };
	archive_entry_acl_clear(e);
	for (int i = 0; i < k; i++) {
		struct acl_item *it = &items[i];
		bool isuser = it->tag == ARCHIVE_ENTRY_ACL_USER, isgroup = it->tag == ARCHIVE_ENTRY_ACL_GROUP;
		uint32_t id;
		/* owner/group/other access entries are the mode bits, already carried. */
		if (it->type == ARCHIVE_ENTRY_ACL_TYPE_ACCESS && (it->tag == ARCHIVE_ENTRY_ACL_USER_OBJ ||
		    it->tag == ARCHIVE_ENTRY_ACL_GROUP_OBJ || it->tag == ARCHIVE_ENTRY_ACL_OTHER))
			continue;
		if (isuser || isgroup) {
			if (remap_one(r, isuser, it->qual, &id) < 0)
				return cell_err(err, 400, ERANGE, "%s: ACL %s %d is not in the id map", name,
						isuser ? "uid" : "gid", it->qual);
			it->qual = (int)id;
		}
		archive_entry_acl_add_entry(e, it->type, it->perm, it->tag, it->qual, NULL);
	}
	return 0;
}

struct xattr_item { char *name; void *val; size_t len; };

static bool xattrs_need_remap(struct archive_entry *e)
{
	const char *n;
	const void *v;
	size_t l;

	if (archive_entry_xattr_reset(e) == 0)
		return false;
	while (archive_entry_xattr_next(e, &n, &v, &l) == ARCHIVE_OK)
		if (idmap_xattr_has_ids(n))
			return true;
	return false;
}

/* Keep, rewrite or (for an unmappable capability) drop one xattr. */
static int remap_xattr_item(const struct remap *r, struct xattr_item *x, const char *ename,
			    cell_error *err)
{
	void *out = malloc(x->len + 4);
	size_t olen = 0;
	int rc;

	if (!out)
		return cell_err(err, 500, ENOMEM, "%s: out of memory", ename);
	rc = idmap_remap_xattr(r->from, r->to, x->name, x->val, x->len, out, &olen);
	if (rc == 0) {
		free(x->val);
		x->val = out;
		x->len = olen;
		return 0;
	}
	free(out);
	if (rc == 1)
		return 0;
	if (!r->strict || strcmp(x->name, "security.capability") == 0) {
		log_warn("%s: dropping xattr %s: %s", ename, x->name,
			 rc == -ENOENT ? "id not in the map" : "malformed");
		free(x->val);
		x->val = NULL;
		return 0;
	}
	return cell_err(err, 400, -rc, "%s: xattr %s: %s", ename, x->name,
			rc == -ENOENT ? "id not in the map" : "malformed value");
}

static void xattr_items_free(struct xattr_item *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].val);
	}
	free(v);
}

static int remap_xattrs(struct archive_entry *e, const struct remap *r, const char *ename,
			cell_error *err)
{
	size_t n, k = 0;
	struct xattr_item *items;
	const char *name;
	const void *val;
	size_t len;
	int rc = 0;

	if (!xattrs_need_remap(e))
		return 0;
	n = (size_t)archive_entry_xattr_reset(e);
	items = calloc(n, sizeof(*items));
	if (!items)
		return cell_err(err, 500, ENOMEM, "%s: out of memory", ename);
	while (k < n && archive_entry_xattr_next(e, &name, &val, &len) == ARCHIVE_OK) {
		items[k].name = strdup(name);
		items[k].val = malloc(len ? len : 1);
		items[k].len = len;
		if (!items[k].name || !items[k].val) {
			xattr_items_free(items, k + 1);
			return cell_err(err, 500, ENOMEM, "%s: out of memory", ename);
		}
		memcpy(items[k++].val, val, len);
	}
	for (size_t i = 0; i < k && rc == 0; i++)
		rc = remap_xattr_item(r, &items[i], ename, err);
	if (rc == 0) {
		archive_entry_xattr_clear(e);
		for (size_t i = 0; i < k; i++)
			if (items[i].val)
				archive_entry_xattr_add_entry(e, items[i].name, items[i].val, items[i].len);
	}
	xattr_items_free(items, k);
	return rc;
}

static int remap_entry(struct archive_entry *e, const struct remap *r, const char *name,
		       cell_error *err)
{
	uint32_t uid, gid;
	int rc;

	if (!remap_active(r))
		return 0;
	if (remap_one(r, true, archive_entry_uid(e), &uid) < 0)
		return cell_err(err, 400, ERANGE, "%s: uid %lld is not in the container's id map", name,
				(long long)archive_entry_uid(e));
	if (remap_one(r, false, archive_entry_gid(e), &gid) < 0)
		return cell_err(err, 400, ERANGE, "%s: gid %lld is not in the container's id map", name,
				(long long)archive_entry_gid(e));
	archive_entry_set_uid(e, uid);
	archive_entry_set_gid(e, gid);
	/* Names would be resolved against the host's passwd; numbers only. */
	archive_entry_set_uname(e, NULL);
	archive_entry_set_gname(e, NULL);
	if ((rc = remap_acls(e, r, name, err)) < 0)
		return rc;
	return remap_xattrs(e, r, name, err);
}

/* ---- reading --------------------------------------------------------------- */

static struct archive *tar_reader_new(void)
{
	struct archive *a = archive_read_new();

	if (!a)
		return NULL;
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
	return a;
}

/* ---- unpacking ------------------------------------------------------------- */

struct unpack_ctx {
	int fd;
	const struct tar_unpack_opts *o;
	struct remap remap;
	uint64_t max_bytes, max_entries, total, written, entries, last_report, warnings;
	cell_error *err;
	struct archive *in, *out;
};

/* Images full of xattrs this host cannot set (security.selinux) must not flood the log. */
#define UNPACK_MAX_WARNINGS 10

static void unpack_warn(struct unpack_ctx *c, const char *name)
{
	if (++c->warnings <= UNPACK_MAX_WARNINGS)
		log_warn("unpack %s: %s", name, aerr(c->out));
}

static int unpack_progress(struct unpack_ctx *c, bool force)
{
	uint64_t in = (uint64_t)archive_filter_bytes(c->in, -1);

	if (!c->o || !c->o->progress || (!force && in - c->last_report < TAR_PROGRESS_STEP))
		return 0;
	c->last_report = in;
	if (c->o->progress(c->o->progress_data, in, c->total))
		return cell_err(c->err, 500, ECANCELED, "unpack cancelled");
	return 0;
}

static int unpack_limits(struct unpack_ctx *c, struct archive_entry *e, const char *name)
{
	int64_t sz = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;

	if (sz < 0)
		sz = 0;
	if (archive_entry_hardlink(e) || archive_entry_filetype(e) != AE_IFREG)
		sz = 0;
	c->written += (uint64_t)sz;
	if (c->written > c->max_bytes)
		return cell_err(c->err, 507, ENOSPC,
				"%s: unpacked image would exceed %llu bytes (free space or limit)", name,
				(unsigned long long)c->max_bytes);
	if (++c->entries > c->max_entries)
		return cell_err(c->err, 507, ENOSPC, "%s: unpacked image has more files than free inodes (%llu)",
				name, (unsigned long long)c->max_entries);
	return 0;
}

/* The archive's top directory is the target itself: only its metadata applies. */
static int unpack_root_entry(struct unpack_ctx *c, struct archive_entry *e, const char *name)
{
	if (archive_entry_filetype(e) != AE_IFDIR)
		return cell_err(c->err, 400, EINVAL, "%s: the top of the tree is not a directory", name);
	if (lchown(".", (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0 ||
	    chmod(".", archive_entry_perm(e) & 07777) < 0)
		return cell_err_sys(c->err, 500, errno, "%s: set owner/mode of target", name);
	return 0;
}

static int unpack_fix_hardlink(struct unpack_ctx *c, struct archive_entry *e, const char *name)
{
	const char *hl = archive_entry_hardlink(e), *rel = NULL, *why = "outside the unpacked tree";
	enum name_kind k;

	if (!hl)
		return 0;
	k = entry_relpath(hl, c->o ? c->o->strip_prefix : NULL, &rel, &why);
	if (k != NAME_OK)
		return cell_err(c->err, 400, EPERM, "%s: hard link to '%s' refused: %s", name, hl,
				k == NAME_BAD ? why : "outside the unpacked tree");
	archive_entry_copy_hardlink(e, rel);
	return 0;
}

static int unpack_copy_data(struct unpack_ctx *c, const char *name)
{
	const void *buf;
	size_t len;
	la_int64_t off;
	int r;

	while ((r = archive_read_data_block(c->in, &buf, &len, &off)) == ARCHIVE_OK) {
		if (archive_write_data_block(c->out, buf, len, off) < ARCHIVE_WARN)
			return cell_err(c->err, 500, aerrno(c->out, EIO), "%s: %s", name, aerr(c->out));
		if (unpack_progress(c, false) < 0)
			return -ECANCELED;
	}
	if (r != ARCHIVE_EOF)
		return cell_err(c->err, 400, aerrno(c->in, EIO), "%s: %s", name, aerr(c->in));
	return 0;
}

static int unpack_entry(struct unpack_ctx *c, struct archive_entry *e)
{
	const char *raw = archive_entry_pathname(e), *rel = NULL, *why = NULL;
	_cleanup_free_ char *name = strdup(raw ? raw : "(unnamed)");
	enum name_kind k = entry_relpath(raw, c->o ? c->o->strip_prefix : NULL, &rel, &why);
	int rc, r;

	if (!name)
		return cell_err(c->err, 500, ENOMEM, "unpack: out of memory");
	if (k == NAME_SKIP)
		return 0;
	if (k == NAME_BAD)
		return cell_err(c->err, 400, EPERM, "%s: refused: %s", name, why);
	if ((rc = unpack_limits(c, e, name)) < 0 || (rc = remap_entry(e, &c->remap, name, c->err)) < 0)
		return rc;
	if (k == NAME_ROOT)
		return unpack_root_entry(c, e, name);
	archive_entry_copy_pathname(e, rel);
	if ((rc = unpack_fix_hardlink(c, e, name)) < 0)
		return rc;
	r = archive_write_header(c->out, e);
	if (r < ARCHIVE_WARN)
		return cell_err(c->err, 400, aerrno(c->out, EPERM), "%s: %s", name, aerr(c->out));
	if (r == ARCHIVE_WARN)
		unpack_warn(c, name);
	if (archive_entry_size(e) > 0 && (rc = unpack_copy_data(c, name)) < 0)
		return rc;
	r = archive_write_finish_entry(c->out);
	if (r < ARCHIVE_WARN)
		return cell_err(c->err, 500, aerrno(c->out, EIO), "%s: %s", name, aerr(c->out));
	if (r == ARCHIVE_WARN)
		unpack_warn(c, name);
	return 0;
}

#define TAR_EXTRACT_FLAGS                                                                         \
	(ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |                      \
	 ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS | ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM |  \
	 ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_TIME |                     \
	 ARCHIVE_EXTRACT_FFLAGS | ARCHIVE_EXTRACT_CLEAR_NOCHANGE_FFLAGS)

static int unpack_loop(struct unpack_ctx *c)
{
	struct archive_entry *e;
	int r, rc;

	while ((r = archive_read_next_header(c->in, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		if ((rc = unpack_entry(c, e)) < 0)
			return rc;
		if ((rc = unpack_progress(c, false)) < 0)
			return rc;
	}
	if (r != ARCHIVE_EOF)
		return cell_err(c->err, 400, aerrno(c->in, EIO), "%s", aerr(c->in));
	return 0;
}

/* Runs inside the confined thread: cwd (and root) is the target directory. */
static int unpack_confined(void *arg)
{
	struct unpack_ctx *c = arg;
	_cleanup_archive_read_ struct archive *in = tar_reader_new();
	_cleanup_archive_write_ struct archive *out = archive_write_disk_new();
	int rc;

	if (!in || !out)
		return cell_err(c->err, 500, ENOMEM, "unpack: out of memory");
	c->in = in;
	c->out = out;
	/* No name lookup: ids are numeric, never resolved via the host's passwd. */
	archive_write_disk_set_options(out, TAR_EXTRACT_FLAGS);
	if (archive_read_open_fd(in, c->fd, TAR_READ_BLOCK) != ARCHIVE_OK)
		return cell_err(c->err, 400, aerrno(in, EINVAL), "%s", aerr(in));
	rc = unpack_loop(c);
	/* Directory modes and times are applied at close, even after an error. */
	if (archive_write_close(out) != ARCHIVE_OK && rc == 0)
		rc = cell_err(c->err, 500, aerrno(out, EIO), "finish: %s", aerr(out));
	if (rc == 0)
		rc = unpack_progress(c, true);
	if (c->warnings > UNPACK_MAX_WARNINGS)
		log_warn("unpack: %llu more warnings not shown",
			 (unsigned long long)(c->warnings - UNPACK_MAX_WARNINGS));
	return rc;
}

static int target_limits(const char *dir, const struct tar_unpack_opts *o, uint64_t *bytes,
			 uint64_t *entries, cell_error *err)
{
	struct statvfs sv;

	*bytes = o && o->max_bytes ? o->max_bytes : UINT64_MAX;
	*entries = UINT64_MAX;
	if (o && o->max_bytes)
		return 0;
	if (statvfs(dir, &sv) < 0)
		return cell_err_sys(err, 500, errno, "statvfs %s", dir);
	*bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
	if (sv.f_files)   /* btrfs and others report no inode limit */
		*entries = sv.f_favail;
	return 0;
}

int tar_unpack_fd(int fd, const char *target_dir, const struct tar_unpack_opts *o, cell_error *err)
{
	struct unpack_ctx c = { .fd = fd, .o = o, .err = err };
	struct stat st;
	int rc;

	c.remap = (struct remap){ .from = NULL, .to = o ? o->idmap : NULL, .strict = true };
	if ((rc = target_limits(target_dir, o, &c.max_bytes, &c.max_entries, err)) < 0)
		return rc;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		c.total = (uint64_t)st.st_size;
		posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	}
	return run_confined(target_dir, unpack_confined, &c, err);
}

int tar_unpack_path(const char *archive, const char *target_dir, const struct tar_unpack_opts *o,
		    cell_error *err)
{
	_cleanup_close_ int fd = open(archive, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return cell_err_sys(err, errno == ENOENT ? 404 : 500, errno, "open %s", archive);
	return tar_unpack_fd(fd, target_dir, o, err);
}

/* ---- one member into memory ------------------------------------------------ */

static int read_member_data(struct archive *a, const char *name, size_t max, char **out,
			    size_t *len, cell_error *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t n = 0, cap = 64 * 1024;
	ssize_t r;

	buf = malloc(cap + 1);
	if (!buf)
		return cell_err(err, 500, ENOMEM, "%s: out of memory", name);
	while ((r = archive_read_data(a, buf + n, cap - n)) > 0) {
		n += (size_t)r;
		if (n > max)
			return cell_err(err, 400, EFBIG, "%s is larger than %zu bytes", name, max);
		if (n == cap) {
			char *nb = realloc(buf, cap * 2 + 1);
			if (!nb)
				return cell_err(err, 500, ENOMEM, "%s: out of memory", name);
			buf = nb;
			cap *= 2;
		}
	}
	if (r < 0)
		return cell_err(err, 400, aerrno(a, EIO), "%s: %s", name, aerr(a));
	buf[n] = '\0';
	*out = steal_ptr(buf);
	if (len)
		*len = n;
	return 0;
}

int tar_read_member(const char *archive, const char *name, size_t max, char **out, size_t *len,
		    cell_error *err)
{
	_cleanup_archive_read_ struct archive *a = tar_reader_new();
	_cleanup_close_ int fd = open(archive, O_RDONLY | O_CLOEXEC);
	struct archive_entry *e;
	int r;

	if (fd < 0)
		return cell_err_sys(err, errno == ENOENT ? 404 : 500, errno, "open %s", archive);
	if (!a)
		return cell_err(err, 500, ENOMEM, "read %s: out of memory", archive);
	if (archive_read_open_fd(a, fd, TAR_READ_BLOCK) != ARCHIVE_OK)
		return cell_err(err, 400, aerrno(a, EINVAL), "%s", aerr(a));
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		const char *p = archive_entry_pathname(e);
		if (!p || strcmp(tar_name_skip_dot_slash(p), name) != 0)
			continue;
		if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e))
			return cell_err(err, 400, EINVAL, "%s in the archive is not a regular file", name);
		if (archive_entry_size(e) > (la_int64_t)max)
			return cell_err(err, 400, EFBIG, "%s is larger than %zu bytes", name, max);
		return read_member_data(a, name, max, out, len, err);
	}
	if (r != ARCHIVE_EOF)
		return cell_err(err, 400, aerrno(a, EIO), "%s", aerr(a));
	return cell_err(err, 400, ENOENT, "%s not found in the archive", name);
}

/* ---- writing --------------------------------------------------------------- */

struct tar_writer {
	struct archive *a;
	struct archive_entry_linkresolver *links;
	unsigned char *buf;
};

static int writer_add_filter(struct archive *a, const char *comp)
{
	if (!comp || !*comp || strcmp(comp, "none") == 0)
		return archive_write_add_filter_none(a);
	if (strcmp(comp, "gzip") == 0)
		return archive_write_add_filter_gzip(a);
	if (strcmp(comp, "bzip2") == 0)
		return archive_write_add_filter_bzip2(a);
	if (strcmp(comp, "xz") == 0) {
		int r = archive_write_add_filter_xz(a);
		archive_write_set_filter_option(a, "xz", "threads", "0");
		return r;
	}
	if (strcmp(comp, "lzma") == 0)
		return archive_write_add_filter_lzma(a);
	if (strcmp(comp, "zstd") == 0)
		return archive_write_add_filter_zstd(a);
	if (strcmp(comp, "lz4") == 0)
		return archive_write_add_filter_lz4(a);
	return ARCHIVE_FATAL - 1;
}

void tar_writer_free(struct tar_writer *w)
{
	if (!w)
		return;
	if (w->links)
		archive_entry_linkresolver_free(w->links);
	if (w->a)
		archive_write_free(w->a);
	free(w->buf);
	free(w);
}

int tar_writer_open(int out_fd, const char *compression, struct tar_writer **out, cell_error *err)
{
	struct tar_writer *w = calloc(1, sizeof(*w));
	int r;

	if (!w || !(w->a = archive_write_new()) || !(w->links = archive_entry_linkresolver_new()) ||
	    !(w->buf = malloc(TAR_READ_BLOCK))) {
		tar_writer_free(w);
		return cell_err(err, 500, ENOMEM, "tar: out of memory");
	}
	/* pax keeps long names, xattrs, ACLs and high ids; GNU tar and Go read it. */
	archive_write_set_format_pax_restricted(w->a);
	archive_entry_linkresolver_set_strategy(w->links, archive_format(w->a));
	r = writer_add_filter(w->a, compression);
	if (r == ARCHIVE_FATAL - 1) {
		tar_writer_free(w);
		return cell_err(err, 400, EINVAL, "unsupported compression '%s'", compression);
	}
	if (r < ARCHIVE_WARN || archive_write_open_fd(w->a, out_fd) != ARCHIVE_OK) {
		r = cell_err(err, 500, aerrno(w->a, EIO), "tar: %s", aerr(w->a));
		tar_writer_free(w);
		return r;
	}
	*out = w;
	return 0;
}

int tar_writer_add_data(struct tar_writer *w, const char *name, const void *data, size_t len,
			unsigned mode, cell_error *err)
{
	_cleanup_archive_entry_ struct archive_entry *e = archive_entry_new();

	if (!e)
		return cell_err(err, 500, ENOMEM, "tar: out of memory");
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, mode & 07777);
	archive_entry_set_size(e, (la_int64_t)len);
	archive_entry_set_mtime(e, time(NULL), 0);
	if (archive_write_header(w->a, e) < ARCHIVE_WARN ||
	    (len && archive_write_data(w->a, data, len) != (la_ssize_t)len))
		return cell_err(err, 500, aerrno(w->a, EIO), "tar %s: %s", name, aerr(w->a));
	return 0;
}

struct create_ctx {
	struct tar_writer *w;
	const char *prefix;
	struct remap remap;
	cell_error *err;
	struct archive *disk;
};

/* Write exactly the entry's size: holes and a file that shrank meanwhile become zeros. */
static int create_copy_data(struct create_ctx *c, struct archive_entry *e, const char *name)
{
	int64_t size = archive_entry_size(e), done = 0;
	const void *buf;
	size_t len;
	la_int64_t off;
	int r;

	while ((r = archive_read_data_block(c->disk, &buf, &len, &off)) == ARCHIVE_OK) {
		for (; done < off && done < size; ) {
			size_t n = (size_t)(off - done) < TAR_READ_BLOCK ? (size_t)(off - done) : TAR_READ_BLOCK;
			memset(c->w->buf, 0, n);
			if (archive_write_data(c->w->a, c->w->buf, n) < 0)
				goto werr;
			done += (int64_t)n;
		}
		if (archive_write_data(c->w->a, buf, len) < 0)
			goto werr;
		done = off + (int64_t)len;
	}
	if (r != ARCHIVE_EOF)
		return cell_err(c->err, 500, aerrno(c->disk, EIO), "read %s: %s", name, aerr(c->disk));
	memset(c->w->buf, 0, TAR_READ_BLOCK);
	while (done < size) {
		size_t n = (size_t)(size - done) < TAR_READ_BLOCK ? (size_t)(size - done) : TAR_READ_BLOCK;
		if (archive_write_data(c->w->a, c->w->buf, n) < 0)
			goto werr;
		done += (int64_t)n;
	}
	return 0;
werr:
	return cell_err(c->err, 500, aerrno(c->w->a, EIO), "tar %s: %s", name, aerr(c->w->a));
}

static int create_name(struct create_ctx *c, struct archive_entry *e, strbuf *sb)
{
	const char *p = tar_name_skip_dot_slash(archive_entry_pathname(e));
	bool root = only_dots_and_slashes(p);

	sb_reset(sb);
	if (root && !*c->prefix)
		return 0;
	if (sb_puts(sb, c->prefix) < 0 || (!root && sb_puts(sb, p) < 0) ||
	    (archive_entry_filetype(e) == AE_IFDIR && sb->len && sb->buf[sb->len - 1] != '/' &&
	     sb_puts(sb, "/") < 0))
		return -ENOMEM;
	return 1;
}

static int create_entry(struct create_ctx *c, struct archive_entry *e, strbuf *name)
{
	struct archive_entry *sparse = NULL;
	int rc;

	/* tar cannot hold sockets; GNU tar skips them too (stale ones in /run). */
	if (archive_entry_filetype(e) == AE_IFSOCK)
		return 0;
	rc = create_name(c, e, name);
	if (rc <= 0)
		return rc < 0 ? cell_err(c->err, 500, ENOMEM, "tar: out of memory") : 0;
	archive_entry_copy_pathname(e, name->buf);
	archive_entry_sparse_clear(e);
	if ((rc = remap_entry(e, &c->remap, name->buf, c->err)) < 0)
		return rc;
	archive_entry_linkify(c->w->links, &e, &sparse);
	if (!e)
		return 0;
	if (archive_write_header(c->w->a, e) < ARCHIVE_WARN)
		return cell_err(c->err, 500, aerrno(c->w->a, EIO), "tar %s: %s", name->buf, aerr(c->w->a));
	if (!archive_entry_hardlink(e) && archive_entry_filetype(e) == AE_IFREG &&
	    archive_entry_size(e) > 0)
		return create_copy_data(c, e, name->buf);
	return 0;
}

static int create_confined(void *arg)
{
	struct create_ctx *c = arg;
	_cleanup_archive_read_ struct archive *disk = archive_read_disk_new();
	_cleanup_archive_entry_ struct archive_entry *e = archive_entry_new();
	_cleanup_sb_ strbuf name = { 0 };
	int r, rc = 0;

	if (!disk || !e)
		return cell_err(c->err, 500, ENOMEM, "tar: out of memory");
	c->disk = disk;
	archive_read_disk_set_symlink_physical(disk);
	if (archive_read_disk_open(disk, ".") != ARCHIVE_OK)
		return cell_err(c->err, 500, aerrno(disk, EIO), "%s", aerr(disk));
	while (rc == 0 && ((r = archive_read_next_header2(disk, e)) == ARCHIVE_OK || r == ARCHIVE_WARN)) {
		if (r == ARCHIVE_WARN)
			log_warn("tar: %s", aerr(disk));
		rc = create_entry(c, e, &name);
		if (rc == 0 && archive_read_disk_can_descend(disk))
			archive_read_disk_descend(disk);
		archive_entry_clear(e);
	}
	if (rc == 0 && r != ARCHIVE_EOF)
		rc = cell_err(c->err, 500, aerrno(disk, EIO), "read tree: %s", aerr(disk));
	archive_read_close(disk);
	return rc;
}

int tar_writer_add_tree(struct tar_writer *w, const char *src_dir, const char *prefix,
			const struct idmap *unshift, cell_error *err)
{
	struct create_ctx c = { .w = w, .prefix = prefix ? prefix : "", .err = err };
	_cleanup_free_ char *pfx = NULL;

	/* Entries are named "<prefix>/<path>"; accept the prefix with or without its slash. */
	if (*c.prefix && !str_has_suffix(c.prefix, "/")) {
		pfx = xasprintf("%s/", c.prefix);
		if (!pfx)
			return cell_err(err, 500, ENOMEM, "tar: out of memory");
		c.prefix = pfx;
	}
	c.remap = (struct remap){ .from = unshift, .to = NULL, .strict = false };
	return cell_err_wrap(err, run_confined(src_dir, create_confined, &c, err), "archive %s",
			     src_dir);
}

int tar_writer_close(struct tar_writer *w, cell_error *err)
{
	struct archive_entry *e = NULL, *sparse = NULL;
	int rc = 0;

	/* Flush entries the resolver may still hold (never for tar, kept for safety). */
	archive_entry_linkify(w->links, &e, &sparse);
	while (e) {
		if (archive_write_header(w->a, e) < ARCHIVE_WARN) {
			rc = cell_err(err, 500, aerrno(w->a, EIO), "tar: %s", aerr(w->a));
			break;
		}
		archive_entry_linkify(w->links, &e, &sparse);
	}
	if (archive_write_close(w->a) != ARCHIVE_OK && rc == 0)
		rc = cell_err(err, 500, aerrno(w->a, EIO), "tar: %s", aerr(w->a));
	tar_writer_free(w);
	return rc;
}

int tar_create(int out_fd, const char *src_dir, const char *prefix, const struct idmap *unshift,
	       const char *compression, cell_error *err)
{
	struct tar_writer *w = NULL;
	int rc = tar_writer_open(out_fd, compression, &w, err);

	if (rc < 0)
		return rc;
	rc = tar_writer_add_tree(w, src_dir, prefix, unshift, err);
	if (rc < 0) {
		tar_writer_free(w);
		return rc;
	}
	return tar_writer_close(w, err);
}

/* ---- format detection ------------------------------------------------------ */

struct magic { const char *name; size_t off, len; const char *bytes; };

static const struct magic magics[] = {
	{ "gzip", 0, 2, "\x1f\x8b" },
	{ "bzip2", 0, 3, "BZh" },
	{ "xz", 0, 6, "\xfd" "7zXZ\0" },
	{ "zstd", 0, 4, "\x28\xb5\x2f\xfd" },
	{ "lz4", 0, 4, "\x04\x22\x4d\x18" },
	{ "lzip", 0, 4, "LZIP" },
	{ "squashfs", 0, 4, "hsqs" },
	{ "lzma", 0, 3, "\x5d\x00\x00" },
	{ "none", 257, 5, "ustar" },
};

int tar_detect_compression(const char *path, const char **compression, cell_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	unsigned char head[512];
	ssize_t n;

	if (fd < 0)
		return cell_err_sys(err, errno == ENOENT ? 404 : 500, errno, "open %s", path);
	n = pread(fd, head, sizeof(head), 0);
	if (n < 0)
		return cell_err_sys(err, 500, errno, "read %s", path);
	for (size_t i = 0; i < ARRAY_SIZE(magics); i++) {
		const struct magic *m = &magics[i];
		if ((size_t)n >= m->off + m->len && memcmp(head + m->off, m->bytes, m->len) == 0) {
			*compression = m->name;
			return 0;
		}
	}
	return cell_err(err, 400, EINVAL, "%s: unsupported image format (not a tarball or squashfs)",
			path);
}

const char *tar_compression_ext(const char *compression)
{
	static const struct { const char *c, *ext; } exts[] = {
		{ "none", ".tar" }, { "gzip", ".tar.gz" }, { "bzip2", ".tar.bz2" },
		{ "xz", ".tar.xz" }, { "lzma", ".tar.lzma" }, { "zstd", ".tar.zst" },
		{ "lz4", ".tar.lz4" }, { "lzip", ".tar.lz" }, { "squashfs", ".squashfs" },
	};

	for (size_t i = 0; compression && i < ARRAY_SIZE(exts); i++)
		if (strcmp(compression, exts[i].c) == 0)
			return exts[i].ext;
	return ".tar";
}

/* ---- squashfs ---------------------------------------------------------------- */

/* Run argv with stdin/stdout on /dev/null; stdout or stderr (per `want`) captured. */
static int spawn_capture(char *const argv[], int want_fd, strbuf *out, size_t cap, int *status)
{
	posix_spawn_file_actions_t fa;
	int p[2], rc;
	pid_t pid;
	char buf[65536];
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, want_fd == 1 ? 2 : 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], want_fd);
	rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (rc) {
		close(p[0]);
		return -rc;
	}
	while ((n = read(p[0], buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (out->len < cap && sb_append(out, buf, (size_t)n) < 0)
			break;
	}
	close(p[0]);
	while (waitpid(pid, status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

static void sb_chomp_tail(strbuf *sb, size_t keep)
{
	while (sb->len && (sb->buf[sb->len - 1] == '\n' || sb->buf[sb->len - 1] == ' '))
		sb->buf[--sb->len] = '\0';
	if (sb->len > keep) {
		memmove(sb->buf, sb->buf + sb->len - keep, keep + 1);
		sb->len = keep;
	}
	for (size_t i = 0; i < sb->len; i++)
		if (sb->buf[i] == '\n')
			sb->buf[i] = ' ';
}

/* Sum of file sizes from `unsquashfs -lln`, to refuse bombs before writing. */
static int squashfs_measure(const char *path, uint64_t *bytes, uint64_t *files, cell_error *err)
{
	char *argv[] = { "unsquashfs", "-lln", "-d", "", (char *)path, NULL };
	_cleanup_sb_ strbuf out = { 0 };
	int status = 0, rc = spawn_capture(argv, 1, &out, SIZE_MAX, &status);
	char *save = NULL;

	if (rc < 0)
		return cell_err_sys(err, 500, -rc, "run unsquashfs");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return cell_err(err, 400, EINVAL, "%s: not a valid squashfs image", path);
	*bytes = *files = 0;
	for (char *l = strtok_r(out.buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char perms[16], owner[64];
		unsigned long long sz;
		(*files)++;
		if (l[0] == '-' && sscanf(l, "%15s %63s %llu", perms, owner, &sz) == 3)
			*bytes += sz;
	}
	return 0;
}

static int squashfs_check_space(const char *path, const char *target, cell_error *err)
{
	uint64_t bytes = 0, files = 0, max_bytes = 0, max_files = 0;
	int rc;

	if ((rc = target_limits(target, NULL, &max_bytes, &max_files, err)) < 0 ||
	    (rc = squashfs_measure(path, &bytes, &files, err)) < 0)
		return rc;
	if (bytes > max_bytes)
		return cell_err(err, 507, ENOSPC, "%s: unpacked image needs %llu bytes, %llu free", path,
				(unsigned long long)bytes, (unsigned long long)max_bytes);
	if (files > max_files)
		return cell_err(err, 507, ENOSPC, "%s: unpacked image has %llu files, %llu inodes free",
				path, (unsigned long long)files, (unsigned long long)max_files);
	return 0;
}

int squashfs_unpack(const char *path, const char *target_dir, const struct idmap *idmap,
		    cell_error *err)
{
	char *argv[] = { "unsquashfs", "-f", "-n", "-d", (char *)target_dir, (char *)path, NULL };
	_cleanup_sb_ strbuf msg = { 0 };
	int status = 0, rc;

	if (access(path, R_OK) < 0)
		return cell_err_sys(err, errno == ENOENT ? 404 : 500, errno, "open %s", path);
	if ((rc = util_mkdir_p(target_dir, 0755, err)) < 0 ||
	    (rc = squashfs_check_space(path, target_dir, err)) < 0)
		return rc;
	rc = spawn_capture(argv, 2, &msg, 64 * 1024, &status);
	if (rc < 0)
		return cell_err_sys(err, 500, -rc, "run unsquashfs");
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		sb_chomp_tail(&msg, 300);
		return cell_err(err, 400, EIO, "unsquashfs %s failed: %s", path,
				msg.len ? msg.buf : "no message");
	}
	if (idmap_is_empty(idmap))
		return 0;
	return idmap_shift_tree(target_dir, NULL, idmap, err);
}
