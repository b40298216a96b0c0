/*
 * Re-own a rootfs from one idmap to another in place.  The per-id and
 * per-xattr translation is common/idmap's, so unpack, export and this walk
 * agree; what this file adds is the walk and the kernel's side effects of
 * chown: it drops setuid/setgid bits and the security.capability xattr,
 * which are put back afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <linux/limits.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/idmap.h"
#include "common/log.h"
#include "common/util.h"
#include "storage/internal.h"

#define XATTR_CAPS "security.capability"
#define XATTR_ACL_ACCESS "system.posix_acl_access"
#define XATTR_ACL_DEFAULT "system.posix_acl_default"
#define XBUF_SIZE (65536 + 8)

static bool map_empty(const struct idmap *m)
{
	return !m || idmap_is_empty(m);
}

bool stor_idmap_is_identity(const struct idmap *from, const struct idmap *to)
{
	if (map_empty(from) || map_empty(to))
		return map_empty(from) && map_empty(to);
	return idmap_equal(from, to);
}

static int remap_one(const struct idmap *from, const struct idmap *to, bool uid, uint32_t in,
		     uint32_t *out)
{
	int rc = idmap_remap_id(from, to, uid, in, out);

	if (rc != -ENOENT)
		return rc;
	/* An id the old map cannot express (a stray host id in the tree)
	 * gets the kernel's overflow id rather than keeping a host id that
	 * may belong to another container's range. */
	if (map_empty(to)) {
		*out = IDMAP_OVERFLOW_ID;
		return 0;
	}
	rc = uid ? idmap_shift_uid(to, IDMAP_OVERFLOW_ID, out)
		 : idmap_shift_gid(to, IDMAP_OVERFLOW_ID, out);
	return rc < 0 ? -ERANGE : 0;
}

int stor_remap_owner(const struct idmap *from, const struct idmap *to, uid_t uid, gid_t gid,
		     uid_t *nuid, gid_t *ngid)
{
	uint32_t u, g;
	int rc = remap_one(from, to, true, uid, &u);

	if (rc < 0 || (rc = remap_one(from, to, false, gid, &g)) < 0)
		return rc;
	*nuid = u;
	*ngid = g;
	return 0;
}

static bool xattr_has_ids(const char *name)
{
	return !strcmp(name, XATTR_CAPS) || !strcmp(name, XATTR_ACL_ACCESS) ||
	       !strcmp(name, XATTR_ACL_DEFAULT);
}

int stor_remap_xattr(const struct idmap *from, const struct idmap *to, const char *name,
		     char *buf, size_t *len)
{
	char out[XBUF_SIZE];
	size_t outlen = sizeof(out);
	int rc;

	if (!xattr_has_ids(name) || stor_idmap_is_identity(from, to))
		return 0;
	if (*len + 4 > sizeof(out))
		return -E2BIG;
	rc = idmap_remap_xattr(from, to, name, buf, *len, out, &outlen);
	if (rc == 1)
		return 0;
	if (rc < 0)
		return rc;
	memcpy(buf, out, outlen);
	*len = outlen;
	return 0;
}

/* ---- the walk ---- */

struct shift {
	const struct idmap *from, *to;
	struct stor_inode_set seen;
	strbuf rel;
	cell_error *err;
	char *xbuf;                 /* one xattr value */
	char *names;                /* llistxattr output */
	struct saved_xattr {
		const char *name;
		char *val;
		size_t len;
	} saved[3];
	size_t nsaved;
};

static int shift_fail(struct shift *s, int e, const char *what)
{
	return cell_err_sys(s->err, 500, e, "%s %s", what, s->rel.buf ? s->rel.buf : ".");
}

static void saved_clear(struct shift *s)
{
	for (size_t i = 0; i < s->nsaved; i++)
		free(s->saved[i].val);
	s->nsaved = 0;
}

/* Read the id-carrying xattrs before chown drops the capability. */
static int save_xattrs(struct shift *s, const char *proc)
{
	ssize_t n = llistxattr(proc, s->names, XATTR_LIST_MAX);

	if (n < 0)
		return errno == ENOTSUP || errno == ENODATA ? 0 : shift_fail(s, errno, "list xattrs of");
	for (ssize_t off = 0; off < n; off += (ssize_t)strlen(s->names + off) + 1) {
		const char *name = s->names + off;
		ssize_t len;
		size_t ulen;
		int rc;
		if (!xattr_has_ids(name) || s->nsaved == ARRAY_SIZE(s->saved))
			continue;
		len = lgetxattr(proc, name, s->xbuf, XBUF_SIZE - 8);
		if (len < 0) {
			if (errno == ENODATA)
				continue;
			return shift_fail(s, errno, "read xattr of");
		}
		ulen = (size_t)len;
		rc = stor_remap_xattr(s->from, s->to, name, s->xbuf, &ulen);
		if (rc < 0)
			return cell_err_sys(s->err, 500, -rc, "%s: xattr %s", s->rel.buf, name);
		s->saved[s->nsaved].val = malloc(ulen ? ulen : 1);
		if (!s->saved[s->nsaved].val)
			return cell_err(s->err, 500, ENOMEM, "out of memory");
		memcpy(s->saved[s->nsaved].val, s->xbuf, ulen);
		s->saved[s->nsaved].len = ulen;
		s->saved[s->nsaved++].name = name;
	}
	return 0;
}

static int restore_xattrs(struct shift *s, const char *proc)
{
	/* Capability last: the ACL writes must not be what removes it. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < s->nsaved; i++) {
			bool caps = !strcmp(s->saved[i].name, XATTR_CAPS);
			if (caps != (pass == 1))
				continue;
			if (lsetxattr(proc, s->saved[i].name, s->saved[i].val, s->saved[i].len, 0) < 0)
				return cell_err_sys(s->err, 500, errno, "%s: set xattr %s", s->rel.buf,
						    s->saved[i].name);
		}
	}
	return 0;
}

static int shift_inode(struct shift *s, int dfd, const char *name, const struct statx *stx)
{
	char proc[64 + NAME_MAX];
	mode_t mode = stx->stx_mode;
	uid_t nuid;
	gid_t ngid;
	int rc;

	rc = stor_remap_owner(s->from, s->to, stx->stx_uid, stx->stx_gid, &nuid, &ngid);
	if (rc < 0)
		return cell_err(s->err, 500, ERANGE, "%s: uid %u/gid %u cannot be mapped", s->rel.buf,
				stx->stx_uid, stx->stx_gid);
	/* xattr calls have no *at form: reach the entry through the pinned
	 * directory so no path component can be swapped under us. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", dfd, name);
	rc = save_xattrs(s, proc);
	if (rc < 0)
		goto out;
	if (fchownat(dfd, name, nuid, ngid, AT_SYMLINK_NOFOLLOW) < 0) {
		rc = shift_fail(s, errno, "chown");
		goto out;
	}
	if (S_ISREG(mode) && (mode & (S_ISUID | S_ISGID)) &&
	    fchmodat(dfd, name, mode & 07777, 0) < 0) {
		rc = shift_fail(s, errno, "chmod");
		goto out;
	}
	rc = restore_xattrs(s, proc);
out:
	saved_clear(s);
	return rc;
}

static int shift_at(int dfd, const char *name, struct shift *s);

static int shift_children(int fd, struct shift *s)
{
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	_cleanup_closedir_ DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *de;

	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return shift_fail(s, errno, "read");
	}
	while ((errno = 0, de = readdir(d))) {
		int rc;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		rc = shift_at(fd, de->d_name, s);
		if (rc < 0)
			return rc;
	}
	return errno ? shift_fail(s, errno, "read") : 0;
}

static bool already_shifted(struct shift *s, const struct statx *stx, int *rc)
{
	bool fresh = true;

	*rc = 0;
	if (S_ISDIR(stx->stx_mode) || stx->stx_nlink < 2)
		return false;
	if (!stor_inode_set_get(&s->seen, makedev(stx->stx_dev_major, stx->stx_dev_minor),
				stx->stx_ino, &fresh))
		*rc = cell_err(s->err, 500, ENOMEM, "out of memory");
	return !fresh;
}

static int shift_at(int dfd, const char *name, struct shift *s)
{
	size_t mark = s->rel.len;
	struct statx stx;
	int rc;

	if (s->rel.len)
		sb_puts(&s->rel, "/");
	sb_puts(&s->rel, name);
	if (statx(dfd, name, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) < 0) {
		rc = shift_fail(s, errno, "stat");
		goto out;
	}
	if (already_shifted(s, &stx, &rc) || rc < 0)
		goto out;
	if (S_ISDIR(stx.stx_mode) && (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	    (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT)) {
		rc = cell_err(s->err, 500, EBUSY, "%s: is a mount point", s->rel.buf);
		goto out;
	}
	rc = shift_inode(s, dfd, name, &stx);
	if (rc == 0 && S_ISDIR(stx.stx_mode)) {
		_cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
							       O_CLOEXEC);
		rc = fd < 0 ? shift_fail(s, errno, "open") : shift_children(fd, s);
	}
out:
	s->rel.len = mark;
	if (s->rel.buf)
		s->rel.buf[mark] = '\0';
	return rc;
}

int stor_shift_tree(const char *path, const struct idmap *from, const struct idmap *to,
		    cell_error *err)
{
	_cleanup_free_ char *dir = strdup(path), *base = NULL;
	_cleanup_close_ int pfd = -1;
	struct shift s = { .from = from, .to = to, .err = err };
	char *slash;
	int rc;

	if (stor_idmap_is_identity(from, to))
		return 0;
	if (!dir || !(slash = strrchr(dir, '/')) || !slash[1])
		return cell_err(err, 500, EINVAL, "shift: bad path \"%s\"", path);
	*slash = '\0';
	base = strdup(slash + 1);
	pfd = open(slash == dir ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (pfd < 0)
		return cell_err_sys(err, 500, errno, "shift: open %s", dir);
	s.xbuf = malloc(XBUF_SIZE);
	s.names = malloc(XATTR_LIST_MAX);
	if (!base || !s.xbuf || !s.names) {
		free(s.xbuf);
		free(s.names);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	rc = shift_at(pfd, base, &s);
	free(s.xbuf);
	free(s.names);
	sb_free(&s.rel);
	stor_inode_set_free(&s.seen);
	return rc < 0 ? cell_err_wrap(err, rc, "shift ids") : 0;
}
