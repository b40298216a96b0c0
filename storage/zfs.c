/*
 * The zfs driver, through the `zfs` and `zpool` commands as LXD drives them:
 *
 *   <zpool>/containers/<name>           mountpoint=<pool>/containers/<name>, canmount=noauto
 *   <zpool>/containers/<name>@snapshot-<snap>
 *   <zpool>/images/<fp>@readonly        each container is a clone of it
 *   <zpool>/deleted/images/<fp>         an image deleted while clones still use it
 *
 * <zpool> is zfs.pool_name (default: the pool's name), made on a loop file
 * ($CELL_DIR/disks/<pool>.img) or a block device, or an existing dataset
 * given as source.  containers-snapshots/<name>/<snap>/ directories exist
 * so listings match the other drivers.
 *
 * Untested where this was written: the machine had no zfs kernel module.
 * The unit test says so and skips.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/idmap.h"
#include "common/log.h"
#include "common/util.h"
#include "storage/internal.h"

#define OOM(err) cell_err((err), 500, ENOMEM, "out of memory")
#define GIB (1ULL << 30)
#define MAX_ARGS 24

/* Run a command given as a NULL-terminated list of strings. */
static int run(cell_error *err, const char *arg0, ...)
{
	const char *argv[MAX_ARGS + 1];
	va_list ap;
	int n = 0;

	argv[n++] = arg0;
	va_start(ap, arg0);
	while (n < MAX_ARGS && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	return stor_exec(argv, NULL, err);
}

/* One `zfs get -Hp -o value` property, trimmed; malloc'd. */
static int get_prop(const char *ds, const char *prop, char **out, cell_error *err)
{
	const char *argv[] = { "zfs", "get", "-Hp", "-o", "value", prop, ds, NULL };
	_cleanup_sb_ strbuf sb = { 0 };
	struct stor_exec_io io = { .in_fd = -1, .out_fd = -1, .out = &sb };
	int rc = stor_exec(argv, &io, err);

	if (rc < 0)
		return rc;
	while (sb.len && (sb.buf[sb.len - 1] == '\n' || sb.buf[sb.len - 1] == ' '))
		sb.buf[--sb.len] = '\0';
	*out = sb_steal(&sb);
	return 0;
}

static int need_zfs(cell_error *err)
{
	const char *why;

	if (stor_driver_available("zfs", &why))
		return 0;
	return cell_err(err, 500, ENOENT, "zfs: %s", why);
}

static const char *zpool_of(const struct stor_pool *p)
{
	const char *z = stor_pool_config(p, "zfs.pool_name");
	return z ? z : p->name;
}

static char *ct_ds(const struct stor_pool *p, const char *name)
{
	return xasprintf("%s/containers/%s", zpool_of(p), name);
}

static char *snap_ds(const struct stor_pool *p, const char *name, const char *snap)
{
	return xasprintf("%s/containers/%s@snapshot-%s", zpool_of(p), name, snap);
}

static char *image_ds(const struct stor_pool *p, const char *fp)
{
	return xasprintf("%s/images/%s", zpool_of(p), fp);
}

/* zfs allows fewer characters in snapshot names than LXD does. */
static int check_snap_chars(const char *snap, cell_error *err)
{
	for (const char *c = snap; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("-_.:", *c))
			return cell_err(err, 400, EINVAL,
					"snapshot name \"%s\": zfs allows only letters, digits and -_.:",
					snap);
	return 0;
}

/* ---- pool ---- */

static bool own_zpool(const struct stor_pool *p)
{
	const char *src = stor_pool_config(p, "source");
	return src && src[0] == '/';   /* a file or device we ran zpool create on */
}

static int make_datasets(struct stor_pool *p, cell_error *err)
{
	static const char *const sub[] = { "containers", "images", "custom", "deleted",
					   "deleted/images" };
	for (size_t i = 0; i < ARRAY_SIZE(sub); i++) {
		_cleanup_free_ char *ds = xasprintf("%s/%s", zpool_of(p), sub[i]);
		int rc;
		if (!ds)
			return OOM(err);
		rc = run(err, "zfs", "create", "-p", "-o", "mountpoint=none", ds, NULL);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int zpool_on(struct stor_pool *p, const char *vdev, cell_error *err)
{
	return run(err, "zpool", "create", "-m", "none", "-O", "compression=on", zpool_of(p), vdev,
		   NULL);
}

static int make_loop_vdev(struct stor_pool *p, char **file_out, cell_error *err)
{
	_cleanup_free_ char *disks = xasprintf("%s/disks", p->cell_dir), *file = stor_disk_path(p);
	const char *s = stor_pool_config(p, "size");
	_cleanup_close_ int fd = -1;
	uint64_t size = 5 * GIB;
	int rc;

	if (s && (stor_parse_size(s, &size) < 0 || size == 0))
		return cell_err(err, 400, EINVAL, "invalid size \"%s\"", s);
	if (!s && stor_config_set(p, "size", "5GiB") < 0)
		return OOM(err);
	if (!disks || !file)
		return OOM(err);
	if (mkdir(disks, STOR_PRIVATE_MODE) < 0 && errno != EEXIST)
		return cell_err_sys(err, 500, errno, "mkdir %s", disks);
	fd = open(file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return cell_err_sys(err, 500, errno, "create %s", file);
	if (ftruncate(fd, (off_t)size) < 0)
		rc = cell_err_sys(err, 500, errno, "size %s", file);
	else
		rc = zpool_on(p, file, err);
	if (rc < 0) {
		unlink(file);
		return rc;
	}
	*file_out = steal_ptr(file);
	return 0;
}

static int zfs_pool_mount(struct stor_pool *p, cell_error *err);

static int zfs_pool_create(struct stor_pool *p, cell_error *err)
{
	const char *src = stor_pool_config(p, "source");
	_cleanup_free_ char *file = NULL;
	bool own = false;
	int rc = need_zfs(err);

	if (rc < 0)
		return rc;
	if (!stor_pool_config(p, "zfs.pool_name") &&
	    stor_config_set(p, "zfs.pool_name", src && src[0] != '/' ? src : p->name) < 0)
		return OOM(err);
	if (!src) {
		if ((rc = make_loop_vdev(p, &file, err)) < 0)
			return rc;
		own = true;
		if (stor_config_set(p, "source", file) < 0)
			rc = OOM(err);
	} else if (src[0] == '/') {
		if ((rc = zpool_on(p, src, err)) < 0)
			return rc;
		own = true;
	}
	if (rc == 0)
		rc = make_datasets(p, err);
	if (rc == 0)
		rc = zfs_pool_mount(p, err);
	if (rc < 0 && own) {
		cell_error e2;
		run(&e2, "zpool", "destroy", zpool_of(p), NULL);
		if (file)
			unlink(file);
	}
	return rc;
}

static int zfs_pool_mount(struct stor_pool *p, cell_error *err)
{
	const char *src = stor_pool_config(p, "source");
	cell_error e2;
	int rc = need_zfs(err);

	if (rc < 0)
		return rc;
	if (own_zpool(p) && run(&e2, "zpool", "list", "-H", "-o", "name", zpool_of(p), NULL) < 0) {
		_cleanup_free_ char *dir = strdup(src);
		char *slash = dir ? strrchr(dir, '/') : NULL;
		if (slash)
			*slash = '\0';
		/* A loop file pool is found by its directory. */
		rc = run(err, "zpool", "import", "-d", dir ? dir : src, zpool_of(p), NULL);
		if (rc < 0)
			return rc;
	}
	if (mkdir(p->path, STOR_SUBDIR_MODE) < 0 && errno != EEXIST)
		return cell_err_sys(err, 500, errno, "mkdir %s", p->path);
	return stor_make_layout(p, err);
}

static int zfs_pool_unmount(struct stor_pool *p, cell_error *err)
{
	return own_zpool(p) ? run(err, "zpool", "export", zpool_of(p), NULL) : 0;
}

static int zfs_pool_delete(struct stor_pool *p, cell_error *err)
{
	static const char *const keep[] = { "containers", "containers-snapshots", "custom" };
	_cleanup_free_ char *disk = stor_disk_path(p);
	const char *src = stor_pool_config(p, "source");
	int rc;

	for (size_t i = 0; i < ARRAY_SIZE(keep); i++) {
		_cleanup_free_ char *d = xasprintf("%s/%s", p->path, keep[i]);
		if (!d)
			return OOM(err);
		if (!stor_dir_is_empty(d))
			return cell_err(err, 409, EBUSY, "storage pool %s still has volumes in %s",
					p->name, keep[i]);
	}
	rc = own_zpool(p) ? run(err, "zpool", "destroy", zpool_of(p), NULL)
			  : run(err, "zfs", "destroy", "-r", zpool_of(p), NULL);
	if (rc < 0)
		return rc;
	if (src && disk && !strcmp(src, disk))
		unlink(disk);
	return stor_remove_tree(p->path, err);
}

static int zfs_pool_usage(struct stor_pool *p, uint64_t *used, uint64_t *total, cell_error *err)
{
	_cleanup_free_ char *u = NULL, *a = NULL;
	int rc;

	if ((rc = get_prop(zpool_of(p), "used", &u, err)) < 0 ||
	    (rc = get_prop(zpool_of(p), "available", &a, err)) < 0)
		return rc;
	*used = strtoull(u, NULL, 10);
	*total = *used + strtoull(a, NULL, 10);
	return 0;
}

/* ---- images ---- */

static int zfs_image_ensure(struct stor_pool *p, const char *fp, const struct stor_image_src *src,
			    cell_error *err)
{
	_cleanup_free_ char *final = stor_image_path(p, fp), *ds = image_ds(p, fp);
	_cleanup_free_ char *tmpds = NULL, *tmp = NULL, *mp = NULL, *snap = NULL;
	char rnd[9];
	cell_error e2;
	int rc;

	if (!final || !ds)
		return OOM(err);
	if (stor_path_exists(final))
		return 0;
	if (util_random_hex(rnd, 4) < 0 || !(tmp = stor_tmp_path(p, "img", fp, err)))
		return cell_err(err, 500, EIO, "no temporary name");
	tmpds = xasprintf("%s_tmp%s", ds, rnd);
	mp = xasprintf("mountpoint=%s", tmp);
	snap = xasprintf("%s@readonly", tmpds);
	if (!tmpds || !mp || !snap)
		return OOM(err);
	if ((rc = run(err, "zfs", "create", "-o", mp, tmpds, NULL)) < 0)
		return rc;
	rc = stor_unpack_image(tmp, src, err);
	if (rc == 0)
		rc = run(err, "zfs", "snapshot", snap, NULL);
	if (rc == 0)
		rc = run(err, "zfs", "rename", tmpds, ds, NULL);
	if (rc == 0) {
		_cleanup_free_ char *fmp = xasprintf("mountpoint=%s", final);
		rc = fmp ? run(err, "zfs", "set", "readonly=on", fmp, ds, NULL) : OOM(err);
		if (rc == 0)
			return 0;
		run(&e2, "zfs", "destroy", "-r", ds, NULL);
		rmdir(final);
		return rc;
	}
	run(&e2, "zfs", "destroy", "-r", tmpds, NULL);
	rmdir(tmp);
	/* Lost a race to a concurrent ensure: its image is as good. */
	return stor_path_exists(final) ? 0 : rc;
}

static int zfs_image_delete(struct stor_pool *p, const char *fp, cell_error *err)
{
	_cleanup_free_ char *final = stor_image_path(p, fp), *ds = image_ds(p, fp);
	_cleanup_free_ char *gone = xasprintf("%s/deleted/images/%s", zpool_of(p), fp);
	cell_error e2;
	int rc;

	if (!final || !ds || !gone)
		return OOM(err);
	if (!stor_path_exists(final))
		return 0;
	if (run(&e2, "zfs", "destroy", "-r", ds, NULL) < 0) {
		/* Containers are clones of it: park it until the last goes. */
		rc = run(err, "zfs", "rename", ds, gone, NULL);
		if (rc == 0)
			rc = run(err, "zfs", "set", "mountpoint=none", gone, NULL);
		if (rc < 0)
			return rc;
	}
	rmdir(final);
	return 0;
}

/* ---- containers ---- */

static int mount_ct(struct stor_pool *p, const char *name, cell_error *err)
{
	_cleanup_free_ char *path = stor_ct_path(p, name), *ds = ct_ds(p, name);

	if (!path || !ds)
		return OOM(err);
	if (stor_is_mountpoint(path))
		return 0;
	return run(err, "zfs", "mount", ds, NULL);
}

static int zfs_ct_unmount(struct stor_pool *p, const char *name, cell_error *err)
{
	_cleanup_free_ char *path = stor_ct_path(p, name), *ds = ct_ds(p, name);

	if (!path || !ds)
		return OOM(err);
	return stor_is_mountpoint(path) ? run(err, "zfs", "unmount", ds, NULL) : 0;
}

/* Mount a new dataset, shift it, lock down its mode; destroy it on failure. */
static int finish_ct(struct stor_pool *p, const char *name, const struct idmap *from,
		     const struct idmap *to, cell_error *err)
{
	_cleanup_free_ char *path = stor_ct_path(p, name), *ds = ct_ds(p, name);
	_cleanup_free_ char *rootfs = stor_ct_rootfs(p, name);
	int rc;

	if (!path || !ds || !rootfs)
		return OOM(err);
	rc = mount_ct(p, name, err);
	if (rc == 0 && !stor_idmap_is_identity(from, to))
		rc = stor_shift_tree(rootfs, from, to, err);
	if (rc == 0 && chmod(path, STOR_CT_DIR_MODE) < 0)
		rc = cell_err_sys(err, 500, errno, "chmod %s", path);
	if (rc < 0) {
		cell_error e2;
		run(&e2, "zfs", "destroy", "-r", ds, NULL);
		rmdir(path);
	}
	return rc;
}

static int zfs_ct_create_from_image(struct stor_pool *p, const char *name, const char *fp,
				    const struct idmap *map, cell_error *err)
{
	_cleanup_free_ char *path = stor_ct_path(p, name), *image = stor_image_path(p, fp);
	_cleanup_free_ char *ds = ct_ds(p, name), *origin = NULL, *mp = NULL;
	int rc;

	if ((rc = stor_need_absent(path, "volume", name, err)) < 0 ||
	    (rc = stor_need_present(image, "image", fp, err)) < 0)
		return rc;
	origin = xasprintf("%s/images/%s@readonly", zpool_of(p), fp);
	mp = xasprintf("mountpoint=%s", path);
	if (!ds || !origin || !mp)
		return OOM(err);
	rc = run(err, "zfs", "clone", "-o", mp, "-o", "canmount=noauto", "-o", "readonly=off",
		 origin, ds, NULL);
	return rc < 0 ? rc : finish_ct(p, name, NULL, map, err);
}

static int zfs_ct_create_empty(struct stor_pool *p, const char *name, const struct idmap *map,
			       cell_error *err)
{
	_cleanup_free_ char *path = stor_ct_path(p, name), *ds = ct_ds(p, name), *mp = NULL;
	_cleanup_free_ char *rootfs = stor_ct_rootfs(p, name);
	uid_t uid;
	gid_t gid;
	int rc;

	if ((rc = stor_need_absent(path, "volume", name, err)) < 0 ||
	    (rc = stor_map_root(map, &uid, &gid, err)) < 0)
		return rc;
	if (!(mp = xasprintf("mountpoint=%s", path)) || !ds || !rootfs)
		return OOM(err);
	if ((rc = run(err, "zfs", "create", "-o", mp, "-o", "canmount=noauto", ds, NULL)) < 0)
		return rc;
	rc = finish_ct(p, name, NULL, NULL, err);
	if (rc == 0 && (mkdir(rootfs, 0755) < 0 || chown(rootfs, uid, gid) < 0)) {
		cell_error e2;
		rc = cell_err_sys(err, 500, errno, "create %s", rootfs);
		run(&e2, "zfs", "destroy", "-r", ds, NULL);
		rmdir(path);
	}
	return rc;
}

static int snapshot_dirs(struct stor_pool *p, const char *src, const char *dst, cell_error *err)
{
	_cleanup_strv_ char **snaps = NULL;
	_cleanup_free_ char *dir = stor_snap_dir(p, dst);
	int rc = stor_snapshot_list(p, src, &snaps, err);

	if (rc < 0 || !snaps[0])
		return rc;
	if (!dir)
		return OOM(err);
	if (mkdir(dir, STOR_PRIVATE_MODE) < 0 && errno != EEXIST)
		return cell_err_sys(err, 500, errno, "mkdir %s", dir);
	for (char **s = snaps; *s; s++) {
		_cleanup_free_ char *d = stor_snap_path(p, dst, *s);
		if (!d || (mkdir(d, STOR_PRIVATE_MODE) < 0 && errno != EEXIST))
			return cell_err_sys(err, 500, d ? errno : ENOMEM, "mkdir snapshot dir");
	}
	return 0;
}

/* A send/receive copy: unlike a clone it leaves no dependency between the
 * two containers, so either can be deleted later. */
static int zfs_ct_copy(struct stor_pool *p, const char *src, const char *dst, bool with_snapshots,
		       const struct idmap *from, const struct idmap *to, cell_error *err)
{
	_cleanup_free_ char *spath = stor_ct_path(p, src), *dpath = stor_ct_path(p, dst);
	_cleanup_free_ char *sds = ct_ds(p, src), *dds = ct_ds(p, dst);
	_cleanup_free_ char *ssnap = NULL, *dsnap = NULL, *mp = NULL;
	char rnd[9];
	cell_error e2;
	int rc;

	if ((rc = stor_need_present(spath, "volume", src, err)) < 0 ||
	    (rc = stor_need_absent(dpath, "volume", dst, err)) < 0)
		return rc;
	if (util_random_hex(rnd, 4) < 0)
		return cell_err(err, 500, EIO, "no randomness");
	ssnap = xasprintf("%s@copy-%s", sds, rnd);
	dsnap = xasprintf("%s@copy-%s", dds, rnd);
	mp = xasprintf("mountpoint=%s", dpath);
	if (!sds || !dds || !ssnap || !dsnap || !mp)
		return OOM(err);
	if ((rc = run(err, "zfs", "snapshot", ssnap, NULL)) < 0)
		return rc;
	const char *send[] = { "zfs", "send", with_snapshots ? "-R" : ssnap,
			       with_snapshots ? ssnap : NULL, NULL };
	const char *recv[] = { "zfs", "receive", "-u", "-o", mp, "-o", "canmount=noauto", dds, NULL };
	rc = stor_exec_pipe(send, recv, err);
	run(&e2, "zfs", "destroy", ssnap, NULL);
	if (rc == 0)
		rc = run(err, "zfs", "destroy", dsnap, NULL);
	if (rc == 0 && with_snapshots)
		rc = snapshot_dirs(p, src, dst, err);
	if (rc < 0) {
		run(&e2, "zfs", "destroy", "-r", dds, NULL);
		return rc;
	}
	return finish_ct(p, dst, from, to, err);
}

/* Clones of an image parked in deleted/ go with their last container. */
static void drop_parked_origin(struct stor_pool *p, const char *origin)
{
	_cleanup_free_ char *parked = xasprintf("%s/deleted/", zpool_of(p)), *ds = NULL;
	char *at;
	cell_error e2;

	if (!parked || !origin || !str_has_prefix(origin, parked) || !(ds = strdup(origin)))
		return;
	if ((at = strchr(ds, '@')))
		*at = '\0';
	run(&e2, "zfs", "destroy", "-r", ds, NULL);   /* fails while other clones remain */
}

static int zfs_ct_delete(struct stor_pool *p, const char *name, cell_error *err)
{
	_cleanup_free_ char *path = stor_ct_path(p, name), *ds = ct_ds(p, name);
	_cleanup_free_ char *snaps = stor_snap_dir(p, name), *origin = NULL;
	cell_error e2;
	int rc;

	if (!path || !ds || !snaps)
		return OOM(err);
	if (!stor_path_exists(path))
		return 0;
	get_prop(ds, "origin", &origin, &e2);
	if ((rc = run(err, "zfs", "destroy", "-r", ds, NULL)) < 0)
		return rc;
	drop_parked_origin(p, origin);
	rmdir(path);
	return stor_remove_tree(snaps, err);
}

static int zfs_ct_rename(struct stor_pool *p, const char *oldname, const char *newname,
			 cell_error *err)
{
	_cleanup_free_ char *op = stor_ct_path(p, oldname), *np = stor_ct_path(p, newname);
	_cleanup_free_ char *ods = ct_ds(p, oldname), *nds = ct_ds(p, newname), *mp = NULL;
	_cleanup_free_ char *os = stor_snap_dir(p, oldname), *ns = stor_snap_dir(p, newname);
	int rc;

	if ((rc = stor_need_present(op, "volume", oldname, err)) < 0 ||
	    (rc = stor_need_absent(np, "volume", newname, err)) < 0 ||
	    (rc = stor_need_absent(ns, "snapshots of", newname, err)) < 0)
		return rc;
	if (!(mp = xasprintf("mountpoint=%s", np)) || !ods || !nds || !os)
		return OOM(err);
	if ((rc = zfs_ct_unmount(p, oldname, err)) < 0 ||
	    (rc = run(err, "zfs", "rename", ods, nds, NULL)) < 0)
		return rc;
	if ((rc = run(err, "zfs", "set", mp, nds, NULL)) < 0) {
		cell_error e2;
		run(&e2, "zfs", "rename", nds, ods, NULL);
		return rc;
	}
	rmdir(op);
	if (stor_path_exists(os) && rename(os, ns) < 0)
		return cell_err_sys(err, 500, errno, "rename %s", os);
	return 0;
}

/* ---- snapshots ---- */

static int zfs_snapshot_create(struct stor_pool *p, const char *name, const char *snap,
			       cell_error *err)
{
	_cleanup_free_ char *vol = stor_ct_path(p, name), *final = stor_snap_path(p, name, snap);
	_cleanup_free_ char *dir = stor_snap_dir(p, name), *sds = snap_ds(p, name, snap);
	int rc;

	if ((rc = check_snap_chars(snap, err)) < 0 ||
	    (rc = stor_need_present(vol, "volume", name, err)) < 0 ||
	    (rc = stor_need_absent(final, "snapshot", snap, err)) < 0)
		return rc;
	if (!dir || !sds)
		return OOM(err);
	if ((rc = run(err, "zfs", "snapshot", sds, NULL)) < 0)
		return rc;
	if ((mkdir(dir, STOR_PRIVATE_MODE) < 0 && errno != EEXIST) ||
	    mkdir(final, STOR_PRIVATE_MODE) < 0) {
		cell_error e2;
		rc = cell_err_sys(err, 500, errno, "mkdir %s", final);
		run(&e2, "zfs", "destroy", sds, NULL);
	}
	return rc;
}

static int zfs_snapshot_delete(struct stor_pool *p, const char *name, const char *snap,
			       cell_error *err)
{
	_cleanup_free_ char *final = stor_snap_path(p, name, snap), *dir = stor_snap_dir(p, name);
	_cleanup_free_ char *sds = snap_ds(p, name, snap);
	int rc;

	if (!final || !dir || !sds)
		return OOM(err);
	if (!stor_path_exists(final))
		return 0;
	if ((rc = run(err, "zfs", "destroy", sds, NULL)) < 0)
		return rc;
	rmdir(final);
	rmdir(dir);
	return 0;
}

static int zfs_snapshot_restore(struct stor_pool *p, const char *name, const char *snap,
				cell_error *err)
{
	_cleanup_free_ char *final = stor_snap_path(p, name, snap), *sds = snap_ds(p, name, snap);
	int rc = stor_need_present(final, "snapshot", snap, err);

	/* No -r: rolling back past newer snapshots would destroy them, which
	 * LXD also only does when told to (zfs.remove_snapshots). */
	return rc < 0 ? rc : run(err, "zfs", "rollback", sds, NULL);
}

static int zfs_snapshot_rename(struct stor_pool *p, const char *name, const char *oldsnap,
			       const char *newsnap, cell_error *err)
{
	_cleanup_free_ char *op = stor_snap_path(p, name, oldsnap);
	_cleanup_free_ char *np = stor_snap_path(p, name, newsnap);
	_cleanup_free_ char *ods = snap_ds(p, name, oldsnap), *nds = snap_ds(p, name, newsnap);
	int rc;

	if ((rc = check_snap_chars(newsnap, err)) < 0 ||
	    (rc = stor_need_present(op, "snapshot", oldsnap, err)) < 0 ||
	    (rc = stor_need_absent(np, "snapshot", newsnap, err)) < 0)
		return rc;
	if (!ods || !nds)
		return OOM(err);
	if ((rc = run(err, "zfs", "rename", ods, nds, NULL)) < 0)
		return rc;
	return rename(op, np) < 0 ? cell_err_sys(err, 500, errno, "rename %s", op) : 0;
}

/* ---- quota, usage ---- */

static int zfs_ct_set_quota(struct stor_pool *p, const char *name, uint64_t bytes,
			    cell_error *err)
{
	_cleanup_free_ char *ds = ct_ds(p, name), *prop = NULL;

	if (!ds)
		return OOM(err);
	prop = bytes ? xasprintf("quota=%llu", (unsigned long long)bytes) : strdup("quota=none");
	return prop ? run(err, "zfs", "set", prop, ds, NULL) : OOM(err);
}

static int zfs_ct_usage(struct stor_pool *p, const char *name, uint64_t *used, cell_error *err)
{
	_cleanup_free_ char *ds = ct_ds(p, name), *v = NULL;
	int rc;

	if (!ds)
		return OOM(err);
	if ((rc = get_prop(ds, "used", &v, err)) < 0)
		return rc;
	*used = strtoull(v, NULL, 10);
	return 0;
}

/* ---- migration streams: zfs send/receive ---- */

static int zfs_ct_send(struct stor_pool *p, const char *name, const char *snap, const char *parent,
		       int fd, cell_error *err)
{
	_cleanup_free_ char *ds = ct_ds(p, name), *what = NULL, *from = NULL;
	struct stor_exec_io io = { .in_fd = -1, .out_fd = fd };
	char rnd[9];
	cell_error e2;
	int rc;

	if (!ds || util_random_hex(rnd, 4) < 0)
		return OOM(err);
	what = snap ? snap_ds(p, name, snap) : xasprintf("%s@migration-%s", ds, rnd);
	from = parent ? snap_ds(p, name, parent) : NULL;
	if (!what || (parent && !from))
		return OOM(err);
	if (!snap && (rc = run(err, "zfs", "snapshot", what, NULL)) < 0)
		return rc;
	const char *argv[] = { "zfs", "send", from ? "-i" : what, from, what, NULL };
	if (!from)
		argv[3] = NULL;
	rc = stor_exec(argv, &io, err);
	if (!snap)
		run(&e2, "zfs", "destroy", what, NULL);
	return rc;
}

static int zfs_ct_receive(struct stor_pool *p, const char *name, const char *snap, int fd,
			  cell_error *err)
{
	_cleanup_free_ char *path = stor_ct_path(p, name), *ds = ct_ds(p, name);
	_cleanup_free_ char *target = NULL, *mp = NULL;
	struct stor_exec_io io = { .in_fd = fd, .out_fd = -1 };
	char rnd[9];
	cell_error e2;
	int rc;

	if (!path || !ds || util_random_hex(rnd, 4) < 0)
		return OOM(err);
	if (snap && (rc = check_snap_chars(snap, err)) < 0)
		return rc;
	target = snap ? snap_ds(p, name, snap) : xasprintf("%s@migration-%s", ds, rnd);
	mp = xasprintf("mountpoint=%s", path);
	if (!target || !mp)
		return OOM(err);
	const char *argv[] = { "zfs", "receive", "-u", "-F", "-o", mp, "-o", "canmount=noauto",
			       target, NULL };
	if ((rc = stor_exec(argv, &io, err)) < 0)
		return rc;
	if (snap) {
		_cleanup_free_ char *dir = stor_snap_dir(p, name), *sp = stor_snap_path(p, name, snap);
		if (!dir || !sp)
			return OOM(err);
		mkdir(dir, STOR_PRIVATE_MODE);
		return mkdir(sp, STOR_PRIVATE_MODE) < 0 && errno != EEXIST
			       ? cell_err_sys(err, 500, errno, "mkdir %s", sp)
			       : 0;
	}
	run(&e2, "zfs", "destroy", target, NULL);
	return finish_ct(p, name, NULL, NULL, err);
}

const struct stor_ops stor_zfs_ops = {
	.name = "zfs",
	.pool_create = zfs_pool_create,
	.pool_delete = zfs_pool_delete,
	.pool_mount = zfs_pool_mount,
	.pool_unmount = zfs_pool_unmount,
	.pool_usage = zfs_pool_usage,
	.image_ensure = zfs_image_ensure,
	.image_delete = zfs_image_delete,
	.ct_create_from_image = zfs_ct_create_from_image,
	.ct_create_empty = zfs_ct_create_empty,
	.ct_copy = zfs_ct_copy,
	.ct_delete = zfs_ct_delete,
	.ct_rename = zfs_ct_rename,
	.ct_mount = mount_ct,
	.ct_unmount = zfs_ct_unmount,
	.ct_snapshot_create = zfs_snapshot_create,
	.ct_snapshot_delete = zfs_snapshot_delete,
	.ct_snapshot_restore = zfs_snapshot_restore,
	.ct_snapshot_rename = zfs_snapshot_rename,
	.ct_set_quota = zfs_ct_set_quota,
	.ct_usage = zfs_ct_usage,
	.ct_shift = stor_dir_ct_shift,
	.ct_send = zfs_ct_send,
	.ct_receive = zfs_ct_receive,
};
