/*
 * The btrfs driver.  The pool is a btrfs filesystem mounted on the pool dir:
 * a loop file it creates ($CELL_DIR/disks/<pool>.img, size=), a block device,
 * or a directory of an existing btrfs filesystem bind-mounted there.
 * An image is unpacked once into a read-only subvolume; a container is a
 * writable snapshot of it and a container snapshot a read-only snapshot of
 * the container, so creating either is one ioctl, not a copy.  Subvolume
 * ioctls are used directly rather than through `btrfs`: a fork+exec costs
 * more than the snapshot itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <endian.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/idmap.h"
#include "common/log.h"
#include "common/util.h"
#include "storage/internal.h"

#define OOM(err) cell_err((err), 500, ENOMEM, "out of memory")
#define GIB (1ULL << 30)
#define DEFAULT_MOUNT_OPTIONS "user_subvol_rm_allowed"

/* ---- subvolume ioctls ---- */

static int open_parent_of(const char *path, const char **base)
{
	_cleanup_free_ char *dir = strdup(path);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	int fd;

	if (!slash || !slash[1])
		return -EINVAL;
	*slash = '\0';
	*base = path + (slash - dir) + 1;
	if (strlen(*base) > BTRFS_PATH_NAME_MAX)
		return -ENAMETOOLONG;
	fd = open(slash == dir ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int subvol_create(const char *path, cell_error *err)
{
	struct btrfs_ioctl_vol_args args = { 0 };
	const char *base;
	_cleanup_close_ int pfd = open_parent_of(path, &base);

	if (pfd < 0)
		return cell_err_sys(err, 500, -pfd, "create subvolume %s", path);
	strcpy(args.name, base);
	if (ioctl(pfd, BTRFS_IOC_SUBVOL_CREATE, &args) < 0)
		return cell_err_sys(err, 500, errno, "create subvolume %s", path);
	return 0;
}

static int subvol_snapshot(const char *src, const char *dst, bool readonly, cell_error *err)
{
	struct btrfs_ioctl_vol_args_v2 args = { 0 };
	_cleanup_close_ int sfd = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	const char *base;
	_cleanup_close_ int pfd = open_parent_of(dst, &base);

	if (sfd < 0)
		return cell_err_sys(err, errno == ENOENT ? 404 : 500, errno, "open %s", src);
	if (pfd < 0)
		return cell_err_sys(err, 500, -pfd, "snapshot to %s", dst);
	args.fd = sfd;
	args.flags = readonly ? BTRFS_SUBVOL_RDONLY : 0;
	strcpy(args.name, base);
	if (ioctl(pfd, BTRFS_IOC_SNAP_CREATE_V2, &args) < 0)
		return cell_err_sys(err, errno == EEXIST ? 409 : 500, errno, "snapshot %s to %s", src,
				    dst);
	return 0;
}

static int subvol_set_readonly(const char *path, bool ro, cell_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	uint64_t flags = 0;

	if (fd < 0 || ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, &flags) < 0)
		return cell_err_sys(err, 500, errno, "read flags of %s", path);
	flags = ro ? flags | BTRFS_SUBVOL_RDONLY : flags & ~(uint64_t)BTRFS_SUBVOL_RDONLY;
	if (ioctl(fd, BTRFS_IOC_SUBVOL_SETFLAGS, &flags) < 0)
		return cell_err_sys(err, 500, errno, "set flags of %s", path);
	return 0;
}

static void discard_quietly(const char *path)
{
	cell_error e2;
	if (stor_remove_tree(path, &e2) < 0)
		log_warn("%s (left for clean-up at next start)", e2.msg);
}

/* ---- loop devices ---- */

static int loop_open_free(int ctl, char *dev, size_t devlen)
{
	int n = ioctl(ctl, LOOP_CTL_GET_FREE);
	int fd;

	if (n < 0)
		return -errno;
	snprintf(dev, devlen, "/dev/loop%d", n);
	fd = open(dev, O_RDWR | O_CLOEXEC);
	/* A minimal /dev (a container, a chroot) may lack the node. */
	if (fd < 0 && errno == ENOENT &&
	    mknod(dev, S_IFBLK | 0660, makedev(7, (unsigned)n)) == 0)
		fd = open(dev, O_RDWR | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int loop_configure(int lfd, int ffd, const char *file)
{
	struct loop_config cfg = { .fd = (uint32_t)ffd };
	struct loop_info64 info = { 0 };

	/* Autoclear: the device goes away with the last user (the mount),
	 * so nothing leaks whatever happens to the daemon. */
	cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
	snprintf((char *)cfg.info.lo_file_name, LO_NAME_SIZE, "%s", file);
	if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOTTY)
		return -errno;
	/* Kernels before 5.8 have no LOOP_CONFIGURE. */
	if (ioctl(lfd, LOOP_SET_FD, ffd) < 0)
		return -errno;
	info.lo_flags = LO_FLAGS_AUTOCLEAR;
	snprintf((char *)info.lo_file_name, LO_NAME_SIZE, "%s", file);
	if (ioctl(lfd, LOOP_SET_STATUS64, &info) < 0) {
		int e = errno;
		ioctl(lfd, LOOP_CLR_FD, 0);
		return -e;
	}
	return 0;
}

/* Attach file to a free loop device; returns its open fd (close it once
 * mounted) and the device path. */
static int loop_attach(const char *file, char *dev, size_t devlen, cell_error *err)
{
	_cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	_cleanup_close_ int ffd = open(file, O_RDWR | O_CLOEXEC);

	if (ctl < 0)
		return cell_err_sys(err, 500, errno, "open /dev/loop-control");
	if (ffd < 0)
		return cell_err_sys(err, 500, errno, "open %s", file);
	for (int tries = 0; tries < 32; tries++) {
		int lfd = loop_open_free(ctl, dev, devlen), rc;
		if (lfd < 0)
			return cell_err_sys(err, 500, -lfd, "find a free loop device");
		rc = loop_configure(lfd, ffd, file);
		if (rc == 0)
			return lfd;
		close(lfd);
		if (rc != -EBUSY)   /* EBUSY: another process took it first */
			return cell_err_sys(err, 500, -rc, "attach %s to %s", file, dev);
	}
	return cell_err(err, 500, EBUSY, "attach %s: no loop device stayed free", file);
}

/* ---- pool ---- */

enum btrfs_src { SRC_LOOP, SRC_BLOCK, SRC_DIR };

static int source_kind(const char *src, enum btrfs_src *kind, cell_error *err)
{
	struct stat st;

	if (stat(src, &st) < 0)
		return cell_err_sys(err, 500, errno, "source %s", src);
	if (S_ISREG(st.st_mode))
		*kind = SRC_LOOP;
	else if (S_ISBLK(st.st_mode))
		*kind = SRC_BLOCK;
	else if (S_ISDIR(st.st_mode))
		*kind = SRC_DIR;
	else
		return cell_err(err, 400, EINVAL, "source %s is not a file, device or directory", src);
	return 0;
}

static bool is_btrfs(const char *path)
{
	struct statfs sfs;
	return statfs(path, &sfs) == 0 && sfs.f_type == BTRFS_SUPER_MAGIC;
}

static int mount_dev(struct stor_pool *p, const char *dev, cell_error *err)
{
	const char *opts = stor_pool_config(p, "btrfs.mount_options");

	if (mount(dev, p->path, "btrfs", 0, opts ? opts : DEFAULT_MOUNT_OPTIONS) < 0)
		return cell_err_sys(err, 500, errno, "mount %s on %s", dev, p->path);
	return 0;
}

static int mount_source(struct stor_pool *p, const char *src, cell_error *err)
{
	enum btrfs_src kind = SRC_LOOP;
	char dev[64];
	int rc = source_kind(src, &kind, err), lfd;

	if (rc < 0)
		return rc;
	if (kind == SRC_BLOCK)
		return mount_dev(p, src, err);
	if (kind == SRC_DIR) {
		if (!is_btrfs(src))
			return cell_err(err, 400, EINVAL, "source %s is not on btrfs", src);
		if (mount(src, p->path, NULL, MS_BIND, NULL) < 0)
			return cell_err_sys(err, 500, errno, "bind-mount %s on %s", src, p->path);
		return 0;
	}
	lfd = loop_attach(src, dev, sizeof(dev), err);
	if (lfd < 0)
		return lfd;
	rc = mount_dev(p, dev, err);
	close(lfd);   /* the mount holds the device now; autoclear does the rest */
	return rc;
}

static int btrfs_pool_mount(struct stor_pool *p, cell_error *err)
{
	const char *src = stor_pool_config(p, "source");
	int rc;

	if (!src)
		return cell_err(err, 400, EINVAL, "storage pool %s has no source", p->name);
	if (mkdir(p->path, STOR_SUBDIR_MODE) < 0 && errno != EEXIST)
		return cell_err_sys(err, 500, errno, "mkdir %s", p->path);
	if (stor_is_mountpoint(p->path)) {
		if (!is_btrfs(p->path))
			return cell_err(err, 500, EINVAL, "%s is mounted but not btrfs", p->path);
	} else if ((rc = mount_source(p, src, err)) < 0) {
		return rc;
	}
	return stor_make_layout(p, err);
}

static int btrfs_pool_unmount(struct stor_pool *p, cell_error *err)
{
	if (stor_is_mountpoint(p->path) && umount2(p->path, UMOUNT_NOFOLLOW) < 0)
		return cell_err_sys(err, errno == EBUSY ? 409 : 500, errno, "unmount %s", p->path);
	return 0;
}

/* LXD's default for a loop pool: a fifth of the free space, 5-30 GiB. */
static uint64_t default_loop_size(const char *dir)
{
	struct statvfs sv;
	uint64_t size = 5 * GIB;

	if (statvfs(dir, &sv) == 0)
		size = (uint64_t)sv.f_bavail * sv.f_frsize / 5 / GIB * GIB;
	if (size < 5 * GIB)
		size = 5 * GIB;
	return size > 30 * GIB ? 30 * GIB : size;
}

static int loop_size(struct stor_pool *p, uint64_t *size, cell_error *err)
{
	const char *s = stor_pool_config(p, "size");
	char buf[32];

	if (s) {
		if (stor_parse_size(s, size) < 0 || *size == 0)
			return cell_err(err, 400, EINVAL, "invalid size \"%s\"", s);
		return 0;
	}
	*size = default_loop_size(p->cell_dir);
	snprintf(buf, sizeof(buf), "%lluGiB", (unsigned long long)(*size / GIB));
	return stor_config_set(p, "size", buf) < 0 ? OOM(err) : 0;
}

static int make_loop_file(struct stor_pool *p, char **out, cell_error *err)
{
	_cleanup_free_ char *disks = xasprintf("%s/disks", p->cell_dir);
	_cleanup_free_ char *file = stor_disk_path(p);
	const char *mkfs[] = { "mkfs.btrfs", "-q", "-L", p->name, file, NULL };
	_cleanup_close_ int fd = -1;
	uint64_t size;
	int rc = loop_size(p, &size, err);

	if (rc < 0)
		return rc;
	if (!disks || !file)
		return OOM(err);
	if (mkdir(disks, STOR_PRIVATE_MODE) < 0 && errno != EEXIST)
		return cell_err_sys(err, 500, errno, "mkdir %s", disks);
	fd = open(file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return cell_err_sys(err, errno == EEXIST ? 409 : 500, errno, "create %s", file);
	/* Sparse: the pool takes host space only as it fills. */
	if (ftruncate(fd, (off_t)size) < 0) {
		rc = cell_err_sys(err, 500, errno, "size %s", file);
	} else {
		rc = stor_exec(mkfs, NULL, err);
	}
	if (rc < 0) {
		unlink(file);
		return rc;
	}
	*out = steal_ptr(file);
	return 0;
}

static int prepare_block(struct stor_pool *p, const char *src, cell_error *err)
{
	/* No -f: mkfs.btrfs refuses a device that holds a filesystem, and
	 * wiping someone's disk needs more than a typo in `source`. */
	const char *mkfs[] = { "mkfs.btrfs", "-q", "-L", p->name, src, NULL };

	if (stor_pool_config(p, "size"))
		return cell_err(err, 400, EINVAL, "size applies to loop pools only");
	return stor_exec(mkfs, NULL, err);
}

static int prepare_dir(struct stor_pool *p, const char *src, bool *made, cell_error *err)
{
	_cleanup_free_ char *parent = strdup(src);
	char *slash = parent ? strrchr(parent, '/') : NULL;

	if (stor_pool_config(p, "size"))
		return cell_err(err, 400, EINVAL, "size applies to loop pools only");
	if (stor_path_exists(src)) {
		if (!is_btrfs(src))
			return cell_err(err, 400, EINVAL, "source %s is not on btrfs", src);
		if (!stor_dir_is_empty(src))
			return cell_err(err, 400, ENOTEMPTY, "source %s is not empty", src);
		return 0;
	}
	if (!slash)
		return OOM(err);
	*slash = '\0';
	if (!is_btrfs(*parent ? parent : "/"))
		return cell_err(err, 400, EINVAL, "source %s: %s is not on btrfs", src, parent);
	*made = true;
	return subvol_create(src, err);
}

static int btrfs_prepare_source(struct stor_pool *p, char **made_file, bool *made_dir,
				cell_error *err)
{
	const char *src = stor_pool_config(p, "source");
	struct stat st;

	if (!src) {
		int rc = make_loop_file(p, made_file, err);
		if (rc < 0)
			return rc;
		return stor_config_set(p, "source", *made_file) < 0 ? OOM(err) : 0;
	}
	if (src[0] != '/')
		return cell_err(err, 400, EINVAL, "source must be an absolute path, not \"%s\"", src);
	if (stat(src, &st) == 0 && S_ISBLK(st.st_mode))
		return prepare_block(p, src, err);
	if (stat(src, &st) == 0 && S_ISREG(st.st_mode))
		return cell_err(err, 400, EEXIST, "source %s: an existing file cannot be a new pool",
				src);
	return prepare_dir(p, src, made_dir, err);
}

static int btrfs_pool_create(struct stor_pool *p, cell_error *err)
{
	_cleanup_free_ char *made_file = NULL;
	bool made_dir = false, made_path = false;
	cell_error e2;
	int rc;

	if (!stor_have_tool("mkfs.btrfs") && !stor_pool_config(p, "source"))
		return cell_err(err, 500, ENOENT, "mkfs.btrfs not found (install btrfs-progs)");
	rc = btrfs_prepare_source(p, &made_file, &made_dir, err);
	if (rc < 0)
		return rc;
	if (mkdir(p->path, STOR_SUBDIR_MODE) == 0)
		made_path = true;
	rc = btrfs_pool_mount(p, err);
	if (rc == 0)
		return 0;
	btrfs_pool_unmount(p, &e2);
	if (made_path)
		rmdir(p->path);
	if (made_file)
		unlink(made_file);
	if (made_dir)
		discard_quietly(stor_pool_config(p, "source"));
	return rc;
}

static int btrfs_pool_delete(struct stor_pool *p, cell_error *err)
{
	static const char *const keep[] = { "containers", "containers-snapshots", "custom",
					    "custom-snapshots" };
	_cleanup_free_ char *disk = stor_disk_path(p);
	const char *src = stor_pool_config(p, "source");
	int rc;

	if ((rc = btrfs_pool_mount(p, err)) < 0)
		return rc;
	for (size_t i = 0; i < ARRAY_SIZE(keep); i++) {
		_cleanup_free_ char *d = xasprintf("%s/%s", p->path, keep[i]);
		if (!d)
			return OOM(err);
		if (!stor_dir_is_empty(d))
			return cell_err(err, 409, EBUSY, "storage pool %s still has volumes in %s",
					p->name, keep[i]);
	}
	/* The filesystem goes with a loop file; on a device or directory
	 * source only what the pool put there goes. */
	if (!src || !disk || strcmp(src, disk)) {
		static const char *const all[] = { "containers", "containers-snapshots", "custom",
						   "custom-snapshots", "images", ".tmp" };
		for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
			_cleanup_free_ char *d = xasprintf("%s/%s", p->path, all[i]);
			if (!d)
				return OOM(err);
			if ((rc = stor_remove_tree(d, err)) < 0)
				return rc;
		}
	}
	if ((rc = btrfs_pool_unmount(p, err)) < 0)
		return rc;
	if (src && disk && !strcmp(src, disk) && unlink(disk) < 0 && errno != ENOENT)
		return cell_err_sys(err, 500, errno, "remove %s", disk);
	if (rmdir(p->path) < 0 && errno != ENOENT)
		return cell_err_sys(err, 500, errno, "remove %s", p->path);
	return 0;
}

/* ---- images ---- */

static bool subvol_is_readonly(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	uint64_t flags = 0;

	return fd >= 0 && ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, &flags) == 0 &&
	       (flags & BTRFS_SUBVOL_RDONLY);
}

static int btrfs_image_ensure(struct stor_pool *p, const char *fp,
			      const struct stor_image_src *src, cell_error *err)
{
	_cleanup_free_ char *final = stor_image_path(p, fp), *tmp = NULL;
	int rc;

	if (!final)
		return OOM(err);
	if (stor_path_exists(final))
		/* A crash between rename and the flag leaves it writable. */
		return subvol_is_readonly(final) ? 0 : subvol_set_readonly(final, true, err);
	if (!(tmp = stor_tmp_path(p, "img", fp, err)))
		return -EIO;
	if ((rc = subvol_create(tmp, err)) < 0)
		return rc;
	rc = stor_unpack_image(tmp, src, err);
	if (rc == 0 && chmod(tmp, STOR_PRIVATE_MODE) < 0)
		rc = cell_err_sys(err, 500, errno, "chmod %s", tmp);
	if (rc == 0) {
		/* Renamed while still writable: btrfs refuses to move a
		 * read-only subvolume to another directory (EROFS). */
		rc = stor_rename_noreplace(tmp, final);
		if (rc == 0)
			/* Read-only: every container snapshot shares these
			 * extents, and a stray write must not change them all. */
			return subvol_set_readonly(final, true, err);
		if (rc == -EEXIST || rc == -ENOTEMPTY)
			rc = 0;   /* a concurrent ensure won */
		else
			rc = cell_err_sys(err, 500, -rc, "rename %s to %s", tmp, final);
	}
	discard_quietly(tmp);
	return rc;
}

/* ---- containers ---- */

/* Snapshot src into .tmp, shift, chmod, rename into place. */
static int snapshot_into(struct stor_pool *p, const char *name, const char *src, const char *final,
			 const struct idmap *from, const struct idmap *to, cell_error *err)
{
	_cleanup_free_ char *tmp = stor_tmp_path(p, "ct", name, err), *rootfs = NULL;
	int rc;

	if (!tmp)
		return -EIO;
	if ((rc = subvol_snapshot(src, tmp, false, err)) < 0)
		return rc;
	if (!stor_idmap_is_identity(from, to)) {
		rootfs = xasprintf("%s/rootfs", tmp);
		rc = rootfs ? stor_shift_tree(rootfs, from, to, err) : OOM(err);
	}
	if (rc == 0 && chmod(tmp, STOR_CT_DIR_MODE) < 0)
		rc = cell_err_sys(err, 500, errno, "chmod %s", tmp);
	if (rc == 0)
		rc = stor_place(tmp, final, err);
	if (rc < 0)
		discard_quietly(tmp);
	return rc;
}

static int btrfs_ct_create_from_image(struct stor_pool *p, const char *name, const char *fp,
				      const struct idmap *map, cell_error *err)
{
	_cleanup_free_ char *final = stor_ct_path(p, name), *image = stor_image_path(p, fp);
	int rc;

	if ((rc = stor_need_absent(final, "volume", name, err)) < 0 ||
	    (rc = stor_need_present(image, "image", fp, err)) < 0)
		return rc;
	return snapshot_into(p, name, image, final, NULL, map, err);
}

static int btrfs_ct_create_empty(struct stor_pool *p, const char *name, const struct idmap *map,
				 cell_error *err)
{
	_cleanup_free_ char *final = stor_ct_path(p, name), *tmp = NULL, *rootfs = NULL;
	uid_t uid;
	gid_t gid;
	int rc;

	if ((rc = stor_need_absent(final, "volume", name, err)) < 0 ||
	    (rc = stor_map_root(map, &uid, &gid, err)) < 0)
		return rc;
	if (!(tmp = stor_tmp_path(p, "ct", name, err)))
		return -EIO;
	if (!(rootfs = xasprintf("%s/rootfs", tmp)))
		return OOM(err);
	if ((rc = subvol_create(tmp, err)) < 0)
		return rc;
	if (mkdir(rootfs, 0755) < 0 || chown(rootfs, uid, gid) < 0 || chmod(rootfs, 0755) < 0 ||
	    chmod(tmp, STOR_CT_DIR_MODE) < 0)
		rc = cell_err_sys(err, 500, errno, "create %s", rootfs);
	if (rc == 0)
		rc = stor_place(tmp, final, err);
	if (rc < 0)
		discard_quietly(tmp);
	return rc;
}

/* A read-only snapshot of src at dst; shifting needs it writable first. */
static int snapshot_ro(const char *src, const char *dst, const struct idmap *from,
		       const struct idmap *to, cell_error *err)
{
	_cleanup_free_ char *rootfs = NULL;
	bool shift = !stor_idmap_is_identity(from, to);
	int rc = subvol_snapshot(src, dst, !shift, err);

	if (rc < 0 || !shift)
		return rc;
	rootfs = xasprintf("%s/rootfs", dst);
	rc = rootfs ? stor_shift_tree(rootfs, from, to, err) : OOM(err);
	if (rc == 0)
		rc = subvol_set_readonly(dst, true, err);
	return rc;
}

static int copy_snapshots(struct stor_pool *p, const char *src, const char *tmpdir,
			  const struct idmap *from, const struct idmap *to, cell_error *err)
{
	_cleanup_strv_ char **snaps = NULL;
	int rc = stor_snapshot_list(p, src, &snaps, err);

	if (rc < 0)
		return rc;
	if (mkdir(tmpdir, STOR_PRIVATE_MODE) < 0)
		return cell_err_sys(err, 500, errno, "mkdir %s", tmpdir);
	for (char **s = snaps; *s; s++) {
		_cleanup_free_ char *sp = stor_snap_path(p, src, *s);
		_cleanup_free_ char *dp = xasprintf("%s/%s", tmpdir, *s);
		if (!sp || !dp)
			return OOM(err);
		if ((rc = snapshot_ro(sp, dp, from, to, err)) < 0)
			return cell_err_wrap(err, rc, "snapshot %s", *s);
	}
	return 0;
}

static int btrfs_ct_copy(struct stor_pool *p, const char *src, const char *dst,
			 bool with_snapshots, const struct idmap *from, const struct idmap *to,
			 cell_error *err)
{
	_cleanup_free_ char *spath = stor_ct_path(p, src), *dpath = stor_ct_path(p, dst);
	_cleanup_free_ char *dsnaps = stor_snap_dir(p, dst), *tmpsnaps = NULL;
	cell_error e2;
	int rc;

	if ((rc = stor_need_present(spath, "volume", src, err)) < 0 ||
	    (rc = stor_need_absent(dpath, "volume", dst, err)) < 0 ||
	    (rc = stor_need_absent(dsnaps, "snapshots of", dst, err)) < 0)
		return rc;
	if (with_snapshots) {
		if ((rc = stor_has_snapshots(p, src, err)) < 0)
			return rc;
		with_snapshots = rc == 1;   /* nothing to copy: no empty snapshot dir */
	}
	if (with_snapshots) {
		if (!(tmpsnaps = stor_tmp_path(p, "snaps", dst, err)))
			return -EIO;
		rc = copy_snapshots(p, src, tmpsnaps, from, to, err);
		if (rc == 0)
			rc = stor_place(tmpsnaps, dsnaps, err);
		if (rc < 0) {
			discard_quietly(tmpsnaps);
			return rc;
		}
	}
	rc = snapshot_into(p, dst, spath, dpath, from, to, err);
	if (rc < 0 && with_snapshots)
		stor_discard(p, dsnaps, &e2);
	return rc;
}

/* ---- snapshots ---- */

static int qgroup_limit(const char *vol, uint64_t bytes);
static uint64_t qgroup_get_limit(const char *vol);

static int btrfs_snapshot_create(struct stor_pool *p, const char *name, const char *snap,
				 cell_error *err)
{
	_cleanup_free_ char *vol = stor_ct_path(p, name), *dir = stor_snap_dir(p, name);
	_cleanup_free_ char *final = stor_snap_path(p, name, snap);
	int rc;

	if ((rc = stor_need_present(vol, "volume", name, err)) < 0 ||
	    (rc = stor_need_absent(final, "snapshot", snap, err)) < 0)
		return rc;
	if (!dir)
		return OOM(err);
	if (mkdir(dir, STOR_PRIVATE_MODE) < 0 && errno != EEXIST)
		return cell_err_sys(err, 500, errno, "mkdir %s", dir);
	/* One ioctl makes the whole snapshot or nothing: no tmp needed. */
	rc = subvol_snapshot(vol, final, true, err);
	if (rc < 0)
		rmdir(dir);   /* only succeeds when this was to be the first */
	return rc;
}

static int btrfs_snapshot_restore(struct stor_pool *p, const char *name, const char *snap,
				  cell_error *err)
{
	_cleanup_free_ char *vol = stor_ct_path(p, name), *sp = stor_snap_path(p, name, snap);
	_cleanup_free_ char *tmp = NULL;
	uint64_t limit;
	int rc;

	if ((rc = stor_need_present(vol, "volume", name, err)) < 0 ||
	    (rc = stor_need_present(sp, "snapshot", snap, err)) < 0)
		return rc;
	if (!(tmp = stor_tmp_path(p, "restore", name, err)))
		return -EIO;
	if ((rc = subvol_snapshot(sp, tmp, false, err)) < 0)
		return rc;
	if (chmod(tmp, STOR_CT_DIR_MODE) < 0)
		rc = cell_err_sys(err, 500, errno, "chmod %s", tmp);
	/* A limit belongs to the subvolume, and the restored volume is a new
	 * one: carry the size over or a restore would lift it. */
	if (rc == 0 && (limit = qgroup_get_limit(vol)) && (rc = qgroup_limit(tmp, limit)) < 0)
		rc = cell_err_sys(err, 500, -rc, "carry the size limit over to %s", tmp);
	/* One exchange: the volume is either the old tree or the snapshot. */
	if (rc == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, vol, RENAME_EXCHANGE) < 0)
		rc = cell_err_sys(err, 500, errno, "swap %s into place", tmp);
	discard_quietly(tmp);   /* the old volume on success, the new one on failure */
	return rc;
}

/* ---- quotas: qgroups, enabled on first use as LXD does, since qgroup
 * accounting slows every snapshot and delete ---- */

static int quota_enable(const char *pool, cell_error *err)
{
	_cleanup_close_ int fd = open(pool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct btrfs_ioctl_quota_ctl_args q = { .cmd = BTRFS_QUOTA_CTL_ENABLE };

	if (fd < 0 || ioctl(fd, BTRFS_IOC_QUOTA_CTL, &q) < 0)
		return cell_err_sys(err, 500, errno, "enable quotas on %s", pool);
	/* Usage is wrong until the first rescan is over. */
	if (ioctl(fd, BTRFS_IOC_QUOTA_RESCAN_WAIT, 0) < 0 && errno != ENOTCONN)
		return cell_err_sys(err, 500, errno, "wait for quota rescan on %s", pool);
	return 0;
}

static int qgroup_limit(const char *vol, uint64_t bytes)
{
	_cleanup_close_ int fd = open(vol, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct btrfs_ioctl_qgroup_limit_args a = { .qgroupid = 0 };   /* 0: fd's subvolume */

	if (fd < 0)
		return -errno;
	a.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
	a.lim.max_rfer = bytes ? bytes : (uint64_t)-1;   /* all ones: no limit */
	return ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, &a) < 0 ? -errno : 0;
}

static int btrfs_ct_set_quota(struct stor_pool *p, const char *name, uint64_t bytes,
			      cell_error *err)
{
	_cleanup_free_ char *vol = stor_ct_path(p, name);
	int rc = stor_need_present(vol, "volume", name, err);

	if (rc < 0)
		return rc;
	rc = qgroup_limit(vol, bytes);
	if (rc == -ENOTCONN) {   /* quotas are off */
		if (bytes == 0)
			return 0;
		if ((rc = quota_enable(p->path, err)) < 0)
			return rc;
		rc = qgroup_limit(vol, bytes);
	}
	return rc < 0 ? cell_err_sys(err, 500, -rc, "set size limit of %s", name) : 0;
}

static int subvol_id(int fd, uint64_t *id)
{
	struct btrfs_ioctl_ino_lookup_args a = { .treeid = 0, .objectid = BTRFS_FIRST_FREE_OBJECTID };

	if (ioctl(fd, BTRFS_IOC_INO_LOOKUP, &a) < 0)
		return -errno;
	*id = a.treeid;
	return 0;
}

/* One item of the subvolume's level-0 qgroup from the quota tree (info or
 * limit); -ENOTCONN when quotas are off or the item is missing. */
static int qgroup_item(const char *vol, uint32_t type, void *out, size_t len)
{
	_cleanup_close_ int fd = open(vol, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct btrfs_ioctl_search_args s = { 0 };
	struct btrfs_ioctl_search_header *h = (void *)s.buf;
	uint64_t id = 0;
	int rc;

	if (fd < 0)
		return -errno;
	if ((rc = subvol_id(fd, &id)) < 0)
		return rc;
	s.key.tree_id = BTRFS_QUOTA_TREE_OBJECTID;
	s.key.min_type = s.key.max_type = type;
	s.key.min_offset = s.key.max_offset = id;   /* qgroup 0/<id> */
	s.key.max_objectid = 0;
	s.key.max_transid = (uint64_t)-1;
	s.key.nr_items = 1;
	if (ioctl(fd, BTRFS_IOC_TREE_SEARCH, &s) < 0)
		return errno == ENOENT ? -ENOTCONN : -errno;
	if (s.key.nr_items < 1 || h->type != type || h->len < len)
		return -ENOTCONN;
	memcpy(out, h + 1, len);
	return 0;
}

static int qgroup_referenced(const char *vol, uint64_t *bytes)
{
	struct btrfs_qgroup_info_item info;
	int rc = qgroup_item(vol, BTRFS_QGROUP_INFO_KEY, &info, sizeof(info));

	if (rc == 0)
		*bytes = le64toh(info.rfer);
	return rc;
}

/* The size limit on a volume, 0 for none. */
static uint64_t qgroup_get_limit(const char *vol)
{
	struct btrfs_qgroup_limit_item lim;

	if (qgroup_item(vol, BTRFS_QGROUP_LIMIT_KEY, &lim, sizeof(lim)) < 0 ||
	    !(le64toh(lim.flags) & BTRFS_QGROUP_LIMIT_MAX_RFER) ||
	    le64toh(lim.max_rfer) == (uint64_t)-1)
		return 0;
	return le64toh(lim.max_rfer);
}

static int btrfs_ct_usage(struct stor_pool *p, const char *name, uint64_t *used, cell_error *err)
{
	_cleanup_free_ char *vol = stor_ct_path(p, name);
	int rc = stor_need_present(vol, "volume", name, err);

	if (rc < 0)
		return rc;
	if (qgroup_referenced(vol, used) == 0)
		return 0;
	return stor_tree_usage(vol, used, err);
}

/* ---- migration streams: btrfs send/receive ---- */

static int send_path(const char *path, const char *parent, int fd, cell_error *err)
{
	const char *argv[] = { "btrfs", "send", "-q", path, NULL, NULL, NULL };
	struct stor_exec_io io = { .in_fd = -1, .out_fd = fd };

	if (parent) {
		argv[2] = "-p";
		argv[3] = parent;
		argv[4] = "-q";
		argv[5] = path;
	}
	return stor_exec(argv, &io, err);
}

static int btrfs_ct_send(struct stor_pool *p, const char *name, const char *snap,
			 const char *parent, int fd, cell_error *err)
{
	_cleanup_free_ char *path = snap ? stor_snap_path(p, name, snap) : stor_ct_path(p, name);
	_cleanup_free_ char *pp = parent ? stor_snap_path(p, name, parent) : NULL, *tmp = NULL;
	int rc = stor_need_present(path, snap ? "snapshot" : "volume", snap ? snap : name, err);

	if (rc < 0 || (parent && (rc = stor_need_present(pp, "snapshot", parent, err)) < 0))
		return rc;
	if (snap)
		return send_path(path, pp, fd, err);
	/* btrfs send reads only read-only subvolumes: freeze a view. */
	if (!(tmp = stor_tmp_path(p, "send", name, err)))
		return -EIO;
	if ((rc = subvol_snapshot(path, tmp, true, err)) < 0)
		return rc;
	rc = send_path(tmp, pp, fd, err);
	discard_quietly(tmp);
	return rc;
}

/* The one subvolume `btrfs receive` made in dir. */
static char *received_subvol(const char *dir, cell_error *err)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;
	char *found = NULL;

	while (d && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (found) {
			free(found);
			cell_err(err, 400, EINVAL, "the stream held more than one subvolume");
			return NULL;
		}
		found = xasprintf("%s/%s", dir, de->d_name);
	}
	if (!found)
		cell_err(err, 400, EINVAL, "the stream held no subvolume");
	return found;
}

static int place_received(struct stor_pool *p, const char *name, const char *snap,
			  const char *got, cell_error *err)
{
	_cleanup_free_ char *final = snap ? stor_snap_path(p, name, snap) : stor_ct_path(p, name);
	_cleanup_free_ char *dir = stor_snap_dir(p, name);

	if (!final || !dir)
		return OOM(err);
	if (snap) {
		/* Kept as received (read-only, received_uuid intact) so a
		 * later incremental stream finds its parent. */
		int rc;
		if (mkdir(dir, STOR_PRIVATE_MODE) < 0 && errno != EEXIST)
			return cell_err_sys(err, 500, errno, "mkdir %s", dir);
		/* btrfs moves a read-only subvolume to another directory only
		 * while writable; the flag alone changes no data and keeps
		 * received_uuid. */
		if ((rc = subvol_set_readonly(got, false, err)) < 0)
			return rc;
		if (chmod(got, STOR_CT_DIR_MODE) < 0)
			return cell_err_sys(err, 500, errno, "chmod %s", got);
		if ((rc = stor_place(got, final, err)) < 0)
			return rc;
		return subvol_set_readonly(final, true, err);
	}
	return snapshot_into(p, name, got, final, NULL, NULL, err);
}

static int btrfs_ct_receive(struct stor_pool *p, const char *name, const char *snap, int fd,
			    cell_error *err)
{
	_cleanup_free_ char *final = snap ? stor_snap_path(p, name, snap) : stor_ct_path(p, name);
	_cleanup_free_ char *tmp = NULL, *got = NULL;
	struct stor_exec_io io = { .in_fd = fd, .out_fd = -1 };
	int rc = stor_need_absent(final, snap ? "snapshot" : "volume", snap ? snap : name, err);

	if (rc < 0)
		return rc;
	if (!(tmp = stor_tmp_path(p, "recv", name, err)))
		return -EIO;
	if (mkdir(tmp, STOR_PRIVATE_MODE) < 0)
		return cell_err_sys(err, 500, errno, "mkdir %s", tmp);
	const char *argv[] = { "btrfs", "receive", "-q", tmp, NULL };
	rc = stor_exec(argv, &io, err);
	if (rc == 0 && !(got = received_subvol(tmp, err)))
		rc = -EINVAL;
	if (rc == 0)
		rc = place_received(p, name, snap, got, err);
	discard_quietly(tmp);
	return rc;
}

const struct stor_ops stor_btrfs_ops = {
	.name = "btrfs",
	.pool_create = btrfs_pool_create,
	.pool_delete = btrfs_pool_delete,
	.pool_mount = btrfs_pool_mount,
	.pool_unmount = btrfs_pool_unmount,
	.pool_usage = stor_dir_pool_usage,
	.image_ensure = btrfs_image_ensure,
	.image_delete = stor_dir_image_delete,
	.ct_create_from_image = btrfs_ct_create_from_image,
	.ct_create_empty = btrfs_ct_create_empty,
	.ct_copy = btrfs_ct_copy,
	.ct_delete = stor_dir_ct_delete,
	.ct_rename = stor_dir_ct_rename,
	.ct_snapshot_create = btrfs_snapshot_create,
	.ct_snapshot_delete = stor_dir_snapshot_delete,
	.ct_snapshot_restore = btrfs_snapshot_restore,
	.ct_snapshot_rename = stor_dir_snapshot_rename,
	.ct_set_quota = btrfs_ct_set_quota,
	.ct_usage = btrfs_ct_usage,
	.ct_shift = stor_dir_ct_shift,
	.ct_send = btrfs_ct_send,
	.ct_receive = btrfs_ct_receive,
};
