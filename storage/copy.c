/*
 * A tree copy that keeps everything a rootfs needs: FICLONE reflinks where
 * the filesystem shares extents (xfs, btrfs), else copy_file_range (holes
 * kept), and owner, mode, times, xattrs, devices, symlinks and hard links.
 * Everything is done relative to pinned directory fds with O_NOFOLLOW, so a
 * container changing its tree under a copy cannot make it read or write
 * outside the two trees.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "storage/internal.h"

/* ---- (dev, ino) set: open addressing, grows at 50% load ---- */

static size_t inode_hash(dev_t dev, ino_t ino, size_t cap)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ULL ^ (uint64_t)dev * 0xc2b2ae3d27d4eb4fULL;
	return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

static int inode_set_grow(struct stor_inode_set *s)
{
	size_t ncap = s->cap ? s->cap * 2 : 64;
	struct stor_inode_slot *ns = calloc(ncap, sizeof(*ns));

	if (!ns)
		return -ENOMEM;
	for (size_t i = 0; i < s->cap; i++) {
		size_t j;
		if (!s->slots[i].used)
			continue;
		for (j = inode_hash(s->slots[i].dev, s->slots[i].ino, ncap); ns[j].used;
		     j = (j + 1) & (ncap - 1))
			;
		ns[j] = s->slots[i];
	}
	free(s->slots);
	s->slots = ns;
	s->cap = ncap;
	return 0;
}

struct stor_inode_slot *stor_inode_set_get(struct stor_inode_set *s, dev_t dev, ino_t ino,
					   bool *fresh)
{
	size_t j;

	if ((s->n + 1) * 2 > s->cap && inode_set_grow(s) < 0)
		return NULL;
	for (j = inode_hash(dev, ino, s->cap); s->slots[j].used; j = (j + 1) & (s->cap - 1)) {
		if (s->slots[j].dev == dev && s->slots[j].ino == ino) {
			*fresh = false;
			return &s->slots[j];
		}
	}
	s->slots[j] = (struct stor_inode_slot){ .dev = dev, .ino = ino, .used = true };
	s->n++;
	*fresh = true;
	return &s->slots[j];
}

void stor_inode_set_free(struct stor_inode_set *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->slots[i].val);
	free(s->slots);
	*s = (struct stor_inode_set){ 0 };
}

/* ---- the copy ---- */

struct copy {
	const struct idmap *from, *to;
	bool shift;
	int dst_root;               /* hard links are made relative to it */
	strbuf rel;                 /* path below both roots */
	struct stor_inode_set links;
	cell_error *err;
	char *names, *xbuf;
	bool no_reflink, no_cfr;
};

static int copy_fail(struct copy *c, int e, const char *what)
{
	return cell_err_sys(c->err, 500, e, "%s %s", what,
			    c->rel.len ? c->rel.buf : ".");
}

static void rel_push(struct copy *c, const char *name)
{
	if (c->rel.len)
		sb_puts(&c->rel, "/");
	sb_puts(&c->rel, name);
}

static void rel_pop(struct copy *c, size_t mark)
{
	c->rel.len = mark;
	if (c->rel.buf)
		c->rel.buf[mark] = '\0';
}

/* Where an inode is: an open fd for files and dirs, else the pinned parent
 * and name (devices, fifos, symlinks must not be opened). */
struct where {
	int fd;
	int dirfd;
	const char *name;
	char proc[64 + NAME_MAX];
};

static void where_init(struct where *w, int fd, int dirfd, const char *name)
{
	w->fd = fd;
	w->dirfd = dirfd;
	w->name = name;
	if (fd >= 0)
		snprintf(w->proc, sizeof(w->proc), "/proc/self/fd/%d", fd);
	else
		snprintf(w->proc, sizeof(w->proc), "/proc/self/fd/%d/%s", dirfd, name ? name : "");
}

static ssize_t w_listxattr(const struct where *w, char *buf, size_t n)
{
	return w->fd >= 0 ? flistxattr(w->fd, buf, n) : llistxattr(w->proc, buf, n);
}

static ssize_t w_getxattr(const struct where *w, const char *name, void *buf, size_t n)
{
	return w->fd >= 0 ? fgetxattr(w->fd, name, buf, n) : lgetxattr(w->proc, name, buf, n);
}

static int w_setxattr(const struct where *w, const char *name, const void *buf, size_t n)
{
	return w->fd >= 0 ? fsetxattr(w->fd, name, buf, n, 0) : lsetxattr(w->proc, name, buf, n, 0);
}

static int copy_one_xattr(struct copy *c, const struct where *s, const struct where *d,
			  const char *name)
{
	ssize_t len = w_getxattr(s, name, c->xbuf, XATTR_SIZE_MAX);
	size_t ulen;
	int rc;

	if (len < 0)
		return errno == ENODATA ? 0 : copy_fail(c, errno, "read xattrs of");
	ulen = (size_t)len;
	if (c->shift) {
		rc = stor_remap_xattr(c->from, c->to, name, c->xbuf, &ulen);
		if (rc < 0)
			return cell_err_sys(c->err, 500, -rc, "copy %s: xattr %s", c->rel.buf, name);
	}
	if (w_setxattr(d, name, c->xbuf, ulen) < 0)
		return cell_err_sys(c->err, 500, errno, "copy %s: set xattr %s", c->rel.buf, name);
	return 0;
}

/* After chown and chmod: chown would drop security.capability again. */
static int copy_xattrs(struct copy *c, const struct where *s, const struct where *d)
{
	ssize_t n = w_listxattr(s, c->names, XATTR_LIST_MAX);
	const char *caps = NULL;
	int rc;

	if (n < 0)
		return errno == ENOTSUP ? 0 : copy_fail(c, errno, "list xattrs of");
	for (ssize_t off = 0; off < n; off += (ssize_t)strlen(c->names + off) + 1) {
		const char *name = c->names + off;
		if (!strcmp(name, "security.capability")) {
			caps = name;
			continue;
		}
		rc = copy_one_xattr(c, s, d, name);
		if (rc < 0)
			return rc;
	}
	return caps ? copy_one_xattr(c, s, d, caps) : 0;
}

static int copy_meta(struct copy *c, const struct statx *stx, const struct where *s,
		     const struct where *d)
{
	struct timespec ts[2] = {
		{ stx->stx_atime.tv_sec, stx->stx_atime.tv_nsec },
		{ stx->stx_mtime.tv_sec, stx->stx_mtime.tv_nsec },
	};
	uid_t uid = stx->stx_uid;
	gid_t gid = stx->stx_gid;
	int rc;

	if (c->shift && stor_remap_owner(c->from, c->to, uid, gid, &uid, &gid) < 0)
		return cell_err(c->err, 500, ERANGE, "copy %s: uid %u/gid %u cannot be mapped",
				c->rel.buf, stx->stx_uid, stx->stx_gid);
	if ((d->fd >= 0 ? fchown(d->fd, uid, gid)
			: fchownat(d->dirfd, d->name, uid, gid, AT_SYMLINK_NOFOLLOW)) < 0)
		return copy_fail(c, errno, "chown");
	if (!S_ISLNK(stx->stx_mode) &&
	    (d->fd >= 0 ? fchmod(d->fd, stx->stx_mode & 07777)
			: fchmodat(d->dirfd, d->name, stx->stx_mode & 07777, 0)) < 0)
		return copy_fail(c, errno, "chmod");
	rc = copy_xattrs(c, s, d);
	if (rc < 0)
		return rc;
	if ((d->fd >= 0 ? futimens(d->fd, ts)
			: utimensat(d->dirfd, d->name, ts, AT_SYMLINK_NOFOLLOW)) < 0)
		return copy_fail(c, errno, "set times of");
	return 0;
}

/* ---- file data ---- */

static int copy_rw(int sfd, int dfd, off_t in, off_t out, off_t len)
{
	char buf[65536];

	while (len < 0 || len > 0) {
		size_t want = len < 0 || len > (off_t)sizeof(buf) ? sizeof(buf) : (size_t)len;
		ssize_t r = pread(sfd, buf, want, in);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		for (ssize_t done = 0; done < r;) {
			ssize_t w = pwrite(dfd, buf + done, (size_t)(r - done), out + done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return -errno;
			done += w;
		}
		in += r;
		out += r;
		if (len > 0)
			len -= r;
	}
	return 0;
}

/* Copy [off, off+len) (len < 0: to EOF) in the kernel where it can. */
static int copy_range(struct copy *c, int sfd, int dfd, off_t off, off_t len)
{
	loff_t in = off, out = off;

	while (!c->no_cfr && (len < 0 || len > 0)) {
		size_t want = len < 0 || len > (1 << 30) ? (1 << 30) : (size_t)len;
		ssize_t r = copy_file_range(sfd, &in, dfd, &out, want, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP ||
			      errno == EINVAL)) {
			c->no_cfr = true;
			break;
		}
		if (r < 0)
			return -errno;
		if (r == 0)
			return 0;
		if (len > 0)
			len -= r;
	}
	return len == 0 ? 0 : copy_rw(sfd, dfd, in, out, len);
}

/* Only the data extents, so a sparse VM-ish file stays sparse. */
static int copy_sparse(struct copy *c, int sfd, int dfd, off_t size)
{
	off_t off = 0;
	int rc;

	for (;;) {
		off_t data = lseek(sfd, off, SEEK_DATA), hole;
		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0)
			return copy_range(c, sfd, dfd, 0, -1);   /* no SEEK_DATA here */
		hole = lseek(sfd, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		rc = copy_range(c, sfd, dfd, data, hole - data);
		if (rc < 0)
			return rc;
		off = hole;
	}
	return ftruncate(dfd, size) < 0 ? -errno : 0;
}

static int copy_data(struct copy *c, int sfd, int dfd, const struct statx *stx)
{
	if (stx->stx_size == 0)
		return 0;
	if (!c->no_reflink) {
		if (ioctl(dfd, FICLONE, sfd) == 0)
			return 0;
		if (errno == EOPNOTSUPP || errno == EXDEV || errno == ENOTTY || errno == ENOSYS)
			c->no_reflink = true;   /* the filesystem cannot: stop asking */
	}
	if (stx->stx_blocks * 512 < stx->stx_size)
		return copy_sparse(c, sfd, dfd, (off_t)stx->stx_size);
	return copy_range(c, sfd, dfd, 0, -1);
}

/* ---- entries ---- */

static int copy_at(struct copy *c, int sdir, int ddir, const char *name);

static int copy_children(struct copy *c, int sfd, int dfd)
{
	int fd = fcntl(sfd, F_DUPFD_CLOEXEC, 3);
	_cleanup_closedir_ DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return copy_fail(c, errno, "read");
	}
	while ((errno = 0, de = readdir(d))) {
		int rc;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		rc = copy_at(c, sfd, dfd, de->d_name);
		if (rc < 0)
			return rc;
	}
	return errno ? copy_fail(c, errno, "read") : 0;
}

static int copy_dir(struct copy *c, int sdir, int ddir, const char *name, const struct statx *stx)
{
	_cleanup_close_ int sfd = -1, dfd = -1;
	struct where s, d;
	int rc;

	/* 0700 until the end: nobody walks in while the content is partial. */
	if (mkdirat(ddir, name, 0700) < 0)
		return copy_fail(c, errno, "mkdir");
	dfd = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return copy_fail(c, errno, "open");
	sfd = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd < 0)
		return copy_fail(c, errno, "open");
	if ((stx->stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	    (stx->stx_attributes & STATX_ATTR_MOUNT_ROOT)) {
		/* Like cp -x: another filesystem mounted in the tree is not
		 * part of the volume; its mount point is. */
		log_debug("copy %s: mount point, not descending", c->rel.buf);
	} else {
		rc = copy_children(c, sfd, dfd);
		if (rc < 0)
			return rc;
	}
	where_init(&s, sfd, -1, NULL);
	where_init(&d, dfd, -1, NULL);
	return copy_meta(c, stx, &s, &d);
}

static int copy_reg(struct copy *c, int sdir, int ddir, const char *name, const struct statx *stx)
{
	/* O_NONBLOCK: a running container may have swapped the file for a
	 * fifo since the stat, and opening that must not hang the copy. */
	_cleanup_close_ int sfd = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK |
							O_CLOEXEC);
	_cleanup_close_ int dfd = -1;
	struct where s, d;
	struct stat st;
	int rc;

	if (sfd < 0)
		return copy_fail(c, errno, "open");
	if (fstat(sfd, &st) < 0 || !S_ISREG(st.st_mode))
		return cell_err(c->err, 500, EAGAIN, "copy %s: changed while being copied", c->rel.buf);
	dfd = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (dfd < 0)
		return copy_fail(c, errno, "create");
	rc = copy_data(c, sfd, dfd, stx);
	if (rc < 0)
		return copy_fail(c, -rc, "copy");
	where_init(&s, sfd, -1, NULL);
	where_init(&d, dfd, -1, NULL);
	return copy_meta(c, stx, &s, &d);
}

static int copy_symlink(struct copy *c, int sdir, int ddir, const char *name,
			const struct statx *stx)
{
	char target[PATH_MAX + 1];
	ssize_t n = readlinkat(sdir, name, target, sizeof(target));

	if (n < 0)
		return copy_fail(c, errno, "readlink");
	if ((size_t)n >= sizeof(target))
		return copy_fail(c, ENAMETOOLONG, "readlink");
	target[n] = '\0';
	if (symlinkat(target, ddir, name) < 0)
		return copy_fail(c, errno, "symlink");
	return 0;
}

static int copy_special(struct copy *c, int sdir, int ddir, const char *name,
			const struct statx *stx)
{
	dev_t rdev = makedev(stx->stx_rdev_major, stx->stx_rdev_minor);

	if (mknodat(ddir, name, (stx->stx_mode & S_IFMT) | 0600, rdev) < 0)
		return copy_fail(c, errno, "mknod");
	return 0;
}

/* A second name for an inode already copied becomes a hard link there. */
static int copy_hardlink(struct copy *c, int ddir, const char *name, const struct statx *stx,
			 bool *done)
{
	bool fresh;
	struct stor_inode_slot *slot;

	*done = false;
	if (S_ISDIR(stx->stx_mode) || stx->stx_nlink < 2)
		return 0;
	slot = stor_inode_set_get(&c->links, makedev(stx->stx_dev_major, stx->stx_dev_minor),
				  stx->stx_ino, &fresh);
	if (!slot || (fresh && !(slot->val = strdup(c->rel.buf))))
		return cell_err(c->err, 500, ENOMEM, "out of memory");
	if (fresh)
		return 0;
	*done = true;
	if (linkat(c->dst_root, slot->val, ddir, name, 0) < 0)
		return copy_fail(c, errno, "link");
	return 0;
}

static int copy_entry(struct copy *c, int sdir, int ddir, const char *name, const struct statx *stx)
{
	struct where s, d;
	bool done;
	int rc = copy_hardlink(c, ddir, name, stx, &done);

	if (rc < 0 || done)
		return rc;
	switch (stx->stx_mode & S_IFMT) {
	case S_IFDIR:
		return copy_dir(c, sdir, ddir, name, stx);
	case S_IFREG:
		return copy_reg(c, sdir, ddir, name, stx);
	case S_IFLNK:
		rc = copy_symlink(c, sdir, ddir, name, stx);
		break;
	case S_IFCHR: case S_IFBLK: case S_IFIFO: case S_IFSOCK:
		rc = copy_special(c, sdir, ddir, name, stx);
		break;
	default:
		return cell_err(c->err, 500, EINVAL, "copy %s: unknown file type", c->rel.buf);
	}
	if (rc < 0)
		return rc;
	where_init(&s, -1, sdir, name);
	where_init(&d, -1, ddir, name);
	return copy_meta(c, stx, &s, &d);
}

static int copy_at(struct copy *c, int sdir, int ddir, const char *name)
{
	size_t mark = c->rel.len;
	struct statx stx;
	int rc;

	rel_push(c, name);
	if (statx(sdir, name, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) < 0)
		rc = copy_fail(c, errno, "stat");
	else
		rc = copy_entry(c, sdir, ddir, name, &stx);
	rel_pop(c, mark);
	return rc;
}

static int copy_root(struct copy *c, const char *src, const char *dst)
{
	_cleanup_close_ int sfd = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct where s, d;
	struct statx stx;
	int rc;

	if (sfd < 0)
		return cell_err_sys(c->err, errno == ENOENT ? 404 : 500, errno, "open %s", src);
	if (statx(sfd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) < 0)
		return cell_err_sys(c->err, 500, errno, "stat %s", src);
	c->dst_root = open(dst, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (c->dst_root < 0)
		return cell_err_sys(c->err, 500, errno, "open %s", dst);
	rc = copy_children(c, sfd, c->dst_root);
	if (rc < 0)
		return rc;
	where_init(&s, sfd, -1, NULL);
	where_init(&d, c->dst_root, -1, NULL);
	return copy_meta(c, &stx, &s, &d);
}

int stor_copy_tree(const char *src, const char *dst, const struct stor_copy_opts *o,
		   cell_error *err)
{
	struct copy c = { .err = err, .dst_root = -1 };
	int rc;

	if (o) {
		c.from = o->from;
		c.to = o->to;
		c.shift = !stor_idmap_is_identity(o->from, o->to);
	}
	if (mkdir(dst, 0700) < 0)
		return cell_err_sys(err, errno == EEXIST ? 409 : 500, errno, "create %s", dst);
	c.names = malloc(XATTR_LIST_MAX);
	c.xbuf = malloc(XATTR_SIZE_MAX);
	if (!c.names || !c.xbuf)
		rc = cell_err(err, 500, ENOMEM, "out of memory");
	else
		rc = copy_root(&c, src, dst);
	if (c.dst_root >= 0)
		close(c.dst_root);
	free(c.names);
	free(c.xbuf);
	sb_free(&c.rel);
	stor_inode_set_free(&c.links);
	if (rc < 0) {
		cell_error ignore;
		stor_remove_tree(dst, &ignore);
	}
	return rc;
}
