/*
 * The dir driver: plain directories.  An image is unpacked once per pool into
 * images/<fp>/ and each container is a tree copy of it (reflinked where the
 * filesystem can), ids shifted during the copy.  Snapshots are full copies.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/idmap.h"
#include "common/tarstream.h"
#include "common/log.h"
#include "common/util.h"
#include "storage/internal.h"

#define OOM(err) cell_err((err), 500, ENOMEM, "out of memory")

/* With source= the pool's data lives elsewhere and is bind-mounted onto the
 * pool path, as LXD does. */
static const char *dir_source(const struct stor_pool *p)
{
	const char *src = stor_pool_config(p, "source");
	return src && strcmp(src, p->path) ? src : NULL;
}

static int dir_pool_mount(struct stor_pool *p, cell_error *err)
{
	const char *src = dir_source(p);

	if (mkdir(p->path, STOR_SUBDIR_MODE) < 0 && errno != EEXIST)
		return cell_err_sys(err, 500, errno, "mkdir %s", p->path);
	if (src && !stor_is_mountpoint(p->path) && mount(src, p->path, NULL, MS_BIND, NULL) < 0)
		return cell_err_sys(err, 500, errno, "bind-mount %s on %s", src, p->path);
	return stor_make_layout(p, err);
}

static int dir_pool_unmount(struct stor_pool *p, cell_error *err)
{
	if (dir_source(p) && stor_is_mountpoint(p->path) && umount2(p->path, UMOUNT_NOFOLLOW) < 0)
		return cell_err_sys(err, errno == EBUSY ? 409 : 500, errno, "unmount %s", p->path);
	return 0;
}

static int dir_check_source(const char *src, cell_error *err)
{
	struct stat st;

	if (src[0] != '/')
		return cell_err(err, 400, EINVAL, "source must be an absolute path, not \"%s\"", src);
	if (stat(src, &st) < 0) {
		if (errno != ENOENT)
			return cell_err_sys(err, 400, errno, "source %s", src);
		return util_mkdir_p(src, STOR_SUBDIR_MODE, err);
	}
	if (!S_ISDIR(st.st_mode))
		return cell_err(err, 400, ENOTDIR, "source %s is not a directory", src);
	if (!stor_dir_is_empty(src))
		return cell_err(err, 400, ENOTEMPTY, "source %s is not empty", src);
	return 0;
}

static int dir_pool_create(struct stor_pool *p, cell_error *err)
{
	const char *src = dir_source(p);
	bool made = false;
	int rc;

	if (stor_pool_config(p, "size"))
		return cell_err(err, 400, EINVAL, "dir pools do not take a size");
	if (src && (rc = dir_check_source(src, err)) < 0)
		return rc;
	if (!src && stor_config_set(p, "source", p->path) < 0)
		return OOM(err);
	if (mkdir(p->path, STOR_SUBDIR_MODE) == 0)
		made = true;
	else if (errno != EEXIST)
		return cell_err_sys(err, 500, errno, "mkdir %s", p->path);
	rc = dir_pool_mount(p, err);
	if (rc < 0) {
		cell_error e2;
		dir_pool_unmount(p, &e2);
		if (made)
			rmdir(p->path);
	}
	return rc;
}

static int dir_pool_delete(struct stor_pool *p, cell_error *err)
{
	static const char *const keep[] = { "containers", "containers-snapshots", "custom",
					    "custom-snapshots" };
	static const char *const drop[] = { "images", ".spare", ".tmp" };
	int rc;

	stor_dir_wait_refills(p->path);
	for (size_t i = 0; i < ARRAY_SIZE(keep); i++) {
		_cleanup_free_ char *d = xasprintf("%s/%s", p->path, keep[i]);
		if (!d)
			return OOM(err);
		if (!stor_dir_is_empty(d))
			return cell_err(err, 409, EBUSY, "storage pool %s still has volumes in %s",
					p->name, keep[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(drop); i++) {
		_cleanup_free_ char *d = xasprintf("%s/%s", p->path, drop[i]);
		if (!d)
			return OOM(err);
		if ((rc = stor_remove_tree(d, err)) < 0)
			return rc;
	}
	for (size_t i = 0; i < ARRAY_SIZE(keep); i++) {
		_cleanup_free_ char *d = xasprintf("%s/%s", p->path, keep[i]);
		if (d && rmdir(d) < 0 && errno != ENOENT)
			return cell_err_sys(err, 500, errno, "remove %s", d);
	}
	if ((rc = dir_pool_unmount(p, err)) < 0)
		return rc;
	if (rmdir(p->path) < 0 && errno != ENOENT)
		return cell_err_sys(err, 500, errno, "remove %s", p->path);
	return 0;
}

int stor_dir_pool_usage(struct stor_pool *p, uint64_t *used, uint64_t *total, cell_error *err)
{
	struct statvfs sv;

	if (statvfs(p->path, &sv) < 0)
		return cell_err_sys(err, 500, errno, "statvfs %s", p->path);
	*total = (uint64_t)sv.f_blocks * sv.f_frsize;
	*used = (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
	return 0;
}

/* ---- spare copies ----
 *
 * A dir create is bound by inode creation, not by data: reflinks make the
 * data free, but every file, link and symlink of the rootfs is still a new
 * inode, and on a busy ext4 that is 100-200 us each.  So the pool keeps
 * `spares` ready-made copies of each cached image in .spare/<fp>-<rand>
 * (built in .tmp/ and renamed in when complete): a create renames one into
 * place and only has to chown it for its id map, and a background thread
 * copies the next spare.  A spare is a plain copy of an immutable cache, so
 * one left over from before a restart is as good as a new one.
 */

struct refill {
	char *pool, *fp, *key;
};

static pthread_mutex_t refill_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t refill_cond = PTHREAD_COND_INITIALIZER;
static char *refilling[16];   /* "<pool path>/<fp>" being copied now */

static char *spare_dir(const char *pool)
{
	return xasprintf("%s/.spare", pool);
}

/* Rename one spare of fp to dst; 1 when one was had, 0 when none. */
static int spare_claim(const struct stor_pool *p, const char *fp, const char *dst)
{
	_cleanup_free_ char *dir = spare_dir(p->path);
	_cleanup_closedir_ DIR *d = dir ? opendir(dir) : NULL;
	size_t n = strlen(fp);
	struct dirent *de;

	while (d && (de = readdir(d))) {
		_cleanup_free_ char *src = NULL;
		if (strncmp(de->d_name, fp, n) || de->d_name[n] != '-')
			continue;
		src = xasprintf("%s/%s", dir, de->d_name);
		/* A concurrent create may take it first: then try the next. */
		if (src && rename(src, dst) == 0)
			return 1;
	}
	return 0;
}

static size_t spare_count(const char *pool, const char *fp)
{
	_cleanup_free_ char *dir = spare_dir(pool);
	_cleanup_closedir_ DIR *d = dir ? opendir(dir) : NULL;
	size_t n = strlen(fp), count = 0;
	struct dirent *de;

	while (d && (de = readdir(d)))
		if (!strncmp(de->d_name, fp, n) && de->d_name[n] == '-')
			count++;
	return count;
}

static bool refill_start(const char *key)
{
	bool ok = false;

	pthread_mutex_lock(&refill_lock);
	for (size_t i = 0; i < ARRAY_SIZE(refilling); i++)
		if (refilling[i] && !strcmp(refilling[i], key))
			goto out;   /* already under way */
	for (size_t i = 0; i < ARRAY_SIZE(refilling); i++) {
		if (!refilling[i]) {
			ok = (refilling[i] = strdup(key)) != NULL;
			break;
		}
	}
out:
	pthread_mutex_unlock(&refill_lock);
	return ok;
}

static void refill_done(const char *key)
{
	pthread_mutex_lock(&refill_lock);
	for (size_t i = 0; i < ARRAY_SIZE(refilling); i++) {
		if (refilling[i] && !strcmp(refilling[i], key)) {
			free(refilling[i]);
			refilling[i] = NULL;
		}
	}
	pthread_cond_broadcast(&refill_cond);
	pthread_mutex_unlock(&refill_lock);
}

/* Any copy under way whose key is `key` (exact) or under `pool` (prefix). */
static bool refill_busy(const char *key, bool prefix)
{
	size_t n = strlen(key);

	for (size_t i = 0; i < ARRAY_SIZE(refilling); i++) {
		if (!refilling[i])
			continue;
		if (prefix ? !strncmp(refilling[i], key, n) && refilling[i][n] == '/'
			   : !strcmp(refilling[i], key))
			return true;
	}
	return false;
}

/* Wait for the spare copy of fp under way, if any; true when there was one. */
static bool spare_wait(const struct stor_pool *p, const char *fp)
{
	_cleanup_free_ char *key = xasprintf("%s/%s", p->path, fp);
	bool waited = false;

	if (!key)
		return false;
	pthread_mutex_lock(&refill_lock);
	while (refill_busy(key, false)) {
		waited = true;
		pthread_cond_wait(&refill_cond, &refill_lock);
	}
	pthread_mutex_unlock(&refill_lock);
	return waited;
}

void stor_dir_wait_refills(const char *pool)
{
	pthread_mutex_lock(&refill_lock);
	while (refill_busy(pool, true))
		pthread_cond_wait(&refill_cond, &refill_lock);
	pthread_mutex_unlock(&refill_lock);
}

/* Copy the image to a new spare.  Needs nothing from the pool handle, which
 * may be freed meanwhile. */
static int spare_make(const char *pool, const char *fp, cell_error *err)
{
	_cleanup_free_ char *image = xasprintf("%s/images/%s", pool, fp);
	_cleanup_free_ char *dir = spare_dir(pool), *tmp = NULL, *final = NULL;
	struct stat before, after;
	char rnd[17];
	int rc;

	if (!image || !dir || util_random_hex(rnd, 8) < 0)
		return cell_err(err, 500, ENOMEM, "out of memory");
	tmp = xasprintf("%s/.tmp/spare-%s-%s", pool, fp, rnd);
	final = xasprintf("%s/%s-%s", dir, fp, rnd);
	if (!tmp || !final)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (mkdir(dir, STOR_PRIVATE_MODE) < 0 && errno != EEXIST)
		return cell_err_sys(err, 500, errno, "mkdir %s", dir);
	if (stat(image, &before) < 0)
		return cell_err_sys(err, 404, errno, "image %s", fp);
	rc = stor_copy_tree(image, tmp, NULL, err);
	/* image_delete moves the cache away before removing it: the same
	 * inode still in place means the copy read a whole tree. */
	if (rc == 0 && (stat(image, &after) < 0 || after.st_ino != before.st_ino ||
			after.st_dev != before.st_dev))
		rc = cell_err(err, 409, ENOENT, "image %s went away during the copy", fp);
	if (rc == 0 && rename(tmp, final) < 0)
		rc = cell_err_sys(err, 500, errno, "rename %s", tmp);
	if (rc < 0) {
		cell_error e2;
		stor_remove_tree(tmp, &e2);
	}
	return rc;
}

static void refill_free(struct refill *r)
{
	if (!r)
		return;
	free(r->pool);
	free(r->fp);
	free(r->key);
	free(r);
}

static void *refill_thread(void *data)
{
	struct refill *r = data;
	cell_error err;

	if (spare_make(r->pool, r->fp, &err) < 0)
		log_info("spare copy of image %s: %s", r->fp, err.msg);
	refill_done(r->key);
	refill_free(r);
	return NULL;
}

/* Start copying a spare in the background unless enough are there. */
static void spare_refill(const struct stor_pool *p, const char *fp)
{
	struct refill *r = calloc(1, sizeof(*r));
	pthread_attr_t attr;
	pthread_t th;
	int rc;

	if (!r || !(r->pool = strdup(p->path)) || !(r->fp = strdup(fp)) ||
	    !(r->key = xasprintf("%s/%s", p->path, fp)) ||
	    spare_count(p->path, fp) >= p->spares || !refill_start(r->key)) {
		refill_free(r);
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&th, &attr, refill_thread, r);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		refill_done(r->key);
		refill_free(r);
	}
}

static void spare_drop(const struct stor_pool *p, const char *fp)
{
	_cleanup_free_ char *dir = spare_dir(p->path);
	_cleanup_closedir_ DIR *d = dir ? opendir(dir) : NULL;
	size_t n = strlen(fp);
	struct dirent *de;

	while (d && (de = readdir(d))) {
		_cleanup_free_ char *path = NULL;
		cell_error e2;
		if (strncmp(de->d_name, fp, n) || de->d_name[n] != '-')
			continue;
		if ((path = xasprintf("%s/%s", dir, de->d_name)))
			stor_discard(p, path, &e2);
	}
}

/* ---- images ---- */

static int dir_image_ensure(struct stor_pool *p, const char *fp, const struct stor_image_src *src,
			    cell_error *err)
{
	_cleanup_free_ char *final = stor_image_path(p, fp), *tmp = NULL;
	cell_error e2;
	int rc;

	if (!final)
		return OOM(err);
	if (!stor_path_exists(final)) {
		if (!(tmp = stor_tmp_path(p, "img", fp, err)))
			return -EIO;
		if (mkdir(tmp, STOR_PRIVATE_MODE) < 0)
			return cell_err_sys(err, 500, errno, "mkdir %s", tmp);
		rc = stor_unpack_image(tmp, src, err);
		if (rc == 0 && (rc = stor_rename_noreplace(tmp, final)) < 0) {
			if (rc == -EEXIST || rc == -ENOTEMPTY)
				rc = 0;   /* a concurrent ensure won: its copy is as good */
			else
				rc = cell_err_sys(err, 500, -rc, "rename %s to %s", tmp, final);
		}
		stor_remove_tree(tmp, &e2);   /* gone when renamed */
		if (rc < 0)
			return rc;
	}
	spare_refill(p, fp);
	return 0;
}

int stor_dir_image_delete(struct stor_pool *p, const char *fp, cell_error *err)
{
	_cleanup_free_ char *path = stor_image_path(p, fp);
	int rc = path ? stor_discard(p, path, err) : OOM(err);

	if (rc == 0) {
		stor_dir_wait_refills(p->path);   /* no spare of it may land after this */
		spare_drop(p, fp);
	}
	return rc;
}

/* ---- containers ---- */

/* Build a volume with `build` under .tmp, then rename it into place. */
static int build_and_place(struct stor_pool *p, const char *name, const char *final,
			   int (*build)(const char *tmp, void *data, cell_error *err), void *data,
			   cell_error *err)
{
	_cleanup_free_ char *tmp = stor_tmp_path(p, "ct", name, err);
	int rc;

	if (!tmp)
		return -EIO;
	rc = build(tmp, data, err);
	if (rc == 0 && chmod(tmp, STOR_CT_DIR_MODE) < 0)
		rc = cell_err_sys(err, 500, errno, "chmod %s", tmp);
	if (rc == 0)
		rc = stor_place(tmp, final, err);
	if (rc < 0) {
		cell_error e2;
		stor_remove_tree(tmp, &e2);
	}
	return rc;
}

struct from_image {
	struct stor_pool *p;
	const char *fp, *image;
	const struct idmap *map;
};

static int build_from_image(const char *tmp, void *data, cell_error *err)
{
	struct from_image *fi = data;
	struct stor_copy_opts o = { .from = NULL, .to = fi->map };
	_cleanup_free_ char *rootfs = NULL;

	/* A copy already under way finishes sooner than a new one, and two
	 * at once only slow each other down on the same disk. */
	if (!spare_claim(fi->p, fi->fp, tmp) &&
	    !(spare_wait(fi->p, fi->fp) && spare_claim(fi->p, fi->fp, tmp)))
		return stor_copy_tree(fi->image, tmp, &o, err);
	/* Spares hold the image's own ids. */
	if (stor_idmap_is_identity(NULL, fi->map))
		return 0;
	rootfs = xasprintf("%s/rootfs", tmp);
	return rootfs ? stor_shift_tree(rootfs, NULL, fi->map, err) : OOM(err);
}

static int dir_ct_create_from_image(struct stor_pool *p, const char *name, const char *fp,
				    const struct idmap *map, cell_error *err)
{
	_cleanup_free_ char *final = stor_ct_path(p, name), *image = stor_image_path(p, fp);
	struct from_image fi = { .p = p, .fp = fp, .image = image, .map = map };
	int rc;

	if ((rc = stor_need_absent(final, "volume", name, err)) < 0 ||
	    (rc = stor_need_present(image, "image", fp, err)) < 0)
		return rc;
	rc = build_and_place(p, name, final, build_from_image, &fi, err);
	spare_refill(p, fp);
	return rc;
}

static int build_empty(const char *tmp, void *data, cell_error *err)
{
	const struct idmap *map = data;
	_cleanup_free_ char *rootfs = xasprintf("%s/rootfs", tmp);
	uid_t uid;
	gid_t gid;
	int rc = stor_map_root(map, &uid, &gid, err);

	if (rc < 0)
		return rc;
	if (!rootfs)
		return OOM(err);
	if (mkdir(tmp, 0700) < 0 || mkdir(rootfs, 0755) < 0 || chown(rootfs, uid, gid) < 0 ||
	    chmod(rootfs, 0755) < 0)
		return cell_err_sys(err, 500, errno, "create %s", rootfs);
	return 0;
}

static int dir_ct_create_empty(struct stor_pool *p, const char *name, const struct idmap *map,
			       cell_error *err)
{
	_cleanup_free_ char *final = stor_ct_path(p, name);
	int rc = stor_need_absent(final, "volume", name, err);

	return rc < 0 ? rc : build_and_place(p, name, final, build_empty, (void *)map, err);
}

struct copy_job {
	const char *src;
	const struct idmap *from, *to;
};

static int build_copy(const char *tmp, void *data, cell_error *err)
{
	struct copy_job *j = data;
	struct stor_copy_opts o = { .from = j->from, .to = j->to };
	return stor_copy_tree(j->src, tmp, &o, err);
}

/* containers-snapshots/<src>/ copied whole into a tmp dir. */
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
		_cleanup_free_ char *from_path = stor_snap_path(p, src, *s);
		_cleanup_free_ char *to_path = xasprintf("%s/%s", tmpdir, *s);
		struct stor_copy_opts o = { .from = from, .to = to };
		if (!from_path || !to_path)
			return OOM(err);
		rc = stor_copy_tree(from_path, to_path, &o, err);
		if (rc == 0 && chmod(to_path, STOR_CT_DIR_MODE) < 0)
			rc = cell_err_sys(err, 500, errno, "chmod %s", to_path);
		if (rc < 0)
			return cell_err_wrap(err, rc, "snapshot %s", *s);
	}
	return 0;
}

static int dir_ct_copy(struct stor_pool *p, const char *src, const char *dst, bool with_snapshots,
		       const struct idmap *from, const struct idmap *to, cell_error *err)
{
	_cleanup_free_ char *spath = stor_ct_path(p, src), *dpath = stor_ct_path(p, dst);
	_cleanup_free_ char *dsnaps = stor_snap_dir(p, dst), *tmpsnaps = NULL;
	struct copy_job j = { .src = spath, .from = from, .to = to };
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
			stor_remove_tree(tmpsnaps, &e2);
			return rc;
		}
	}
	rc = build_and_place(p, dst, dpath, build_copy, &j, err);
	if (rc < 0 && with_snapshots)
		stor_discard(p, dsnaps, &e2);
	return rc;
}

int stor_dir_ct_delete(struct stor_pool *p, const char *name, cell_error *err)
{
	_cleanup_free_ char *path = stor_ct_path(p, name), *snaps = stor_snap_dir(p, name);
	int rc;

	if (!path || !snaps)
		return OOM(err);
	if ((rc = stor_discard(p, snaps, err)) < 0)
		return rc;
	return stor_discard(p, path, err);
}

int stor_dir_ct_rename(struct stor_pool *p, const char *oldname, const char *newname,
			 cell_error *err)
{
	_cleanup_free_ char *op = stor_ct_path(p, oldname), *np = stor_ct_path(p, newname);
	_cleanup_free_ char *os = stor_snap_dir(p, oldname), *ns = stor_snap_dir(p, newname);
	int rc;

	if ((rc = stor_need_present(op, "volume", oldname, err)) < 0 ||
	    (rc = stor_need_absent(ns, "snapshots of", newname, err)) < 0)
		return rc;
	if (!os)
		return OOM(err);
	if ((rc = stor_place(op, np, err)) < 0)
		return rc;
	if (stor_path_exists(os) && (rc = stor_place(os, ns, err)) < 0) {
		/* Both move or neither does. */
		if (rename(np, op) < 0)
			return cell_err_wrap(err, rc, "and moving %s back failed", np);
		return rc;
	}
	return 0;
}

/* ---- snapshots ---- */

static int dir_snapshot_create(struct stor_pool *p, const char *name, const char *snap,
			       cell_error *err)
{
	_cleanup_free_ char *vol = stor_ct_path(p, name), *dir = stor_snap_dir(p, name);
	_cleanup_free_ char *final = stor_snap_path(p, name, snap), *tmp = NULL;
	int rc;

	if ((rc = stor_need_present(vol, "volume", name, err)) < 0 ||
	    (rc = stor_need_absent(final, "snapshot", snap, err)) < 0)
		return rc;
	if (!dir)
		return OOM(err);
	if (mkdir(dir, STOR_PRIVATE_MODE) < 0 && errno != EEXIST)
		return cell_err_sys(err, 500, errno, "mkdir %s", dir);
	if (!(tmp = stor_tmp_path(p, "snap", name, err)))
		return -EIO;
	rc = stor_copy_tree(vol, tmp, NULL, err);
	if (rc == 0)
		rc = stor_place(tmp, final, err);
	if (rc < 0) {
		cell_error e2;
		stor_remove_tree(tmp, &e2);
		rmdir(dir);   /* only succeeds when this was the first snapshot */
	}
	return rc;
}

int stor_dir_snapshot_delete(struct stor_pool *p, const char *name, const char *snap,
			       cell_error *err)
{
	_cleanup_free_ char *path = stor_snap_path(p, name, snap), *dir = stor_snap_dir(p, name);
	int rc;

	if (!path || !dir)
		return OOM(err);
	rc = stor_discard(p, path, err);
	if (rc == 0)
		rmdir(dir);   /* LXD drops the per-container dir with its last snapshot */
	return rc;
}

static int dir_snapshot_restore(struct stor_pool *p, const char *name, const char *snap,
				cell_error *err)
{
	_cleanup_free_ char *vol = stor_ct_path(p, name), *sp = stor_snap_path(p, name, snap);
	_cleanup_free_ char *tmp = NULL;
	cell_error e2;
	int rc;

	if ((rc = stor_need_present(vol, "volume", name, err)) < 0 ||
	    (rc = stor_need_present(sp, "snapshot", snap, err)) < 0)
		return rc;
	if (!(tmp = stor_tmp_path(p, "restore", name, err)))
		return -EIO;
	rc = stor_copy_tree(sp, tmp, NULL, err);
	if (rc == 0 && chmod(tmp, STOR_CT_DIR_MODE) < 0)
		rc = cell_err_sys(err, 500, errno, "chmod %s", tmp);
	/* One exchange: the volume is either the old tree or the snapshot. */
	if (rc == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, vol, RENAME_EXCHANGE) < 0)
		rc = cell_err_sys(err, 500, errno, "swap %s into place", tmp);
	if (rc == 0 && stor_remove_tree(tmp, &e2) < 0)
		log_warn("storage pool %s: %s (left for clean-up at next start)", p->name, e2.msg);
	else if (rc < 0)
		stor_remove_tree(tmp, &e2);
	return rc;
}

int stor_dir_snapshot_rename(struct stor_pool *p, const char *name, const char *oldsnap,
			       const char *newsnap, cell_error *err)
{
	_cleanup_free_ char *op = stor_snap_path(p, name, oldsnap);
	_cleanup_free_ char *np = stor_snap_path(p, name, newsnap);
	int rc = stor_need_present(op, "snapshot", oldsnap, err);

	return rc < 0 ? rc : stor_place(op, np, err);
}

/* ---- quota, usage, shift ---- */

static int dir_ct_set_quota(struct stor_pool *p, const char *name, uint64_t bytes,
			    cell_error *err)
{
	if (bytes == 0)
		return 0;
	return cell_err(err, 400, EOPNOTSUPP,
			"storage pool %s (dir) cannot enforce a size limit on %s", p->name, name);
}

int stor_dir_ct_usage(struct stor_pool *p, const char *name, uint64_t *used, cell_error *err)
{
	_cleanup_free_ char *path = stor_ct_path(p, name);
	int rc = stor_need_present(path, "volume", name, err);
	return rc < 0 ? rc : stor_tree_usage(path, used, err);
}

int stor_dir_ct_shift(struct stor_pool *p, const char *name, const struct idmap *from,
			const struct idmap *to, cell_error *err)
{
	_cleanup_free_ char *rootfs = stor_ct_rootfs(p, name);
	int rc = stor_need_present(rootfs, "rootfs of", name, err);
	return rc < 0 ? rc : stor_shift_tree(rootfs, from, to, err);
}

/* ---- migration streams: a plain tar of the volume ---- */

static int dir_ct_send(struct stor_pool *p, const char *name, const char *snap, const char *parent,
		       int fd, cell_error *err)
{
	_cleanup_free_ char *path = snap ? stor_snap_path(p, name, snap) : stor_ct_path(p, name);
	int rc = stor_need_present(path, snap ? "snapshot" : "volume", snap ? snap : name, err);

	/* A tar has no incremental form: `parent` only saves work for
	 * formats that have one, so a full stream is always correct. */
	return rc < 0 ? rc : tar_create(fd, path, NULL, NULL, NULL, err);
}

static int build_receive(const char *tmp, void *data, cell_error *err)
{
	struct tar_unpack_opts o = { 0 };
	if (mkdir(tmp, 0700) < 0)
		return cell_err_sys(err, 500, errno, "mkdir %s", tmp);
	return tar_unpack_fd(*(int *)data, tmp, &o, err);
}

static int dir_ct_receive(struct stor_pool *p, const char *name, const char *snap, int fd,
			  cell_error *err)
{
	_cleanup_free_ char *final = snap ? stor_snap_path(p, name, snap) : stor_ct_path(p, name);
	_cleanup_free_ char *dir = stor_snap_dir(p, name);
	int rc = stor_need_absent(final, snap ? "snapshot" : "volume", snap ? snap : name, err);

	if (rc < 0)
		return rc;
	if (snap && mkdir(dir, STOR_PRIVATE_MODE) < 0 && errno != EEXIST)
		return cell_err_sys(err, 500, errno, "mkdir %s", dir);
	return build_and_place(p, name, final, build_receive, &fd, err);
}

const struct stor_ops stor_dir_ops = {
	.name = "dir",
	.pool_create = dir_pool_create,
	.pool_delete = dir_pool_delete,
	.pool_mount = dir_pool_mount,
	.pool_unmount = dir_pool_unmount,
	.pool_usage = stor_dir_pool_usage,
	.image_ensure = dir_image_ensure,
	.image_delete = stor_dir_image_delete,
	.ct_create_from_image = dir_ct_create_from_image,
	.ct_create_empty = dir_ct_create_empty,
	.ct_copy = dir_ct_copy,
	.ct_delete = stor_dir_ct_delete,
	.ct_rename = stor_dir_ct_rename,
	.ct_snapshot_create = dir_snapshot_create,
	.ct_snapshot_delete = stor_dir_snapshot_delete,
	.ct_snapshot_restore = dir_snapshot_restore,
	.ct_snapshot_rename = stor_dir_snapshot_rename,
	.ct_set_quota = dir_ct_set_quota,
	.ct_usage = stor_dir_ct_usage,
	.ct_shift = stor_dir_ct_shift,
	.ct_send = dir_ct_send,
	.ct_receive = dir_ct_receive,
};
