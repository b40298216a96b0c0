/* Pool handles, name validation, paths and the validating op wrappers. */
#include "storage/storage.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/idmap.h"
#include "common/tarstream.h"
#include "common/log.h"
#include "common/util.h"
#include "storage/internal.h"

/* ---- drivers and handles ---- */

const struct stor_ops *stor_driver(const char *name)
{
	static const struct stor_ops *const all[] = { &stor_dir_ops, &stor_btrfs_ops, &stor_zfs_ops };
	if (!name)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		if (strcmp(all[i]->name, name) == 0)
			return all[i];
	return NULL;
}

static bool kernel_has_fs(const char *fs)
{
	_cleanup_free_ char *all = NULL, *mod = NULL;
	_cleanup_free_ char *needle = xasprintf("\t%s\n", fs);
	struct utsname u;

	if (needle && util_read_file("/proc/filesystems", &all, NULL, NULL) == 0 &&
	    strstr(all, needle))
		return true;
	/* Not loaded yet: mount(2) will load the module if it is installed. */
	if (uname(&u) < 0 || !(mod = xasprintf("/lib/modules/%s/kernel/fs/%s", u.release, fs)))
		return false;
	return access(mod, F_OK) == 0;
}

bool stor_driver_available(const char *name, const char **why)
{
	const char *dummy;

	if (!why)
		why = &dummy;
	*why = NULL;
	if (name && !strcmp(name, "dir"))
		return true;
	if (name && !strcmp(name, "btrfs")) {
		if (!stor_have_tool("btrfs") || !stor_have_tool("mkfs.btrfs"))
			*why = "btrfs tools missing (install btrfs-progs)";
		else if (!kernel_has_fs("btrfs"))
			*why = "no btrfs support in the kernel";
		return *why == NULL;
	}
	if (name && !strcmp(name, "zfs")) {
		if (access("/sys/module/zfs", F_OK) < 0)
			*why = "no zfs kernel module";
		else if (!stor_have_tool("zfs") || !stor_have_tool("zpool"))
			*why = "zfs tools missing (install zfsutils-linux)";
		return *why == NULL;
	}
	*why = "unknown storage driver";
	return false;
}

int stor_pool_new(const char *cell_dir, const char *name, const char *driver, json_t *config,
		  struct stor_pool **out, cell_error *err)
{
	const struct stor_ops *ops = stor_driver(driver);
	struct stor_pool *p;

	if (!stor_valid_pool_name(name))
		return cell_err(err, 400, EINVAL, "invalid storage pool name \"%s\"", name ? name : "");
	if (!ops)
		return cell_err(err, 400, EINVAL, "unknown storage driver \"%s\"",
				driver ? driver : "");
	if (config && !json_is_object(config))
		return cell_err(err, 400, EINVAL, "storage pool config must be an object");
	p = calloc(1, sizeof(*p));
	if (!p)
		return cell_err(err, 500, ENOMEM, "out of memory");
	p->ops = ops;
	p->spares = 1;
	p->name = strdup(name);
	p->driver = strdup(ops->name);
	p->cell_dir = strdup(cell_dir);
	p->path = xasprintf("%s/storage-pools/%s", cell_dir, name);
	p->config = config ? json_deep_copy(config) : json_object();
	pthread_rwlock_init(&p->image_lock, NULL);
	if (!p->name || !p->driver || !p->cell_dir || !p->path || !p->config) {
		stor_pool_free(p);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	*out = p;
	return 0;
}

void stor_pool_free(struct stor_pool *p)
{
	if (!p)
		return;
	if (p->path)
		stor_dir_wait_refills(p->path);
	free(p->priv);
	free(p->name);
	free(p->driver);
	free(p->cell_dir);
	free(p->path);
	json_decref(p->config);
	pthread_rwlock_destroy(&p->image_lock);
	free(p);
}

const char *stor_pool_config(const struct stor_pool *p, const char *key)
{
	const char *v = json_string_value(json_object_get(p->config, key));
	return v && *v ? v : NULL;
}

int stor_config_set(struct stor_pool *p, const char *key, const char *value)
{
	return json_object_set_new(p->config, key, json_string(value)) < 0 ? -ENOMEM : 0;
}

/* ---- validation ---- */

bool stor_valid_ct_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	/* LXD's instance names are hostnames: this is also what keeps them
	 * from ever naming anything outside containers/. */
	if (n == 0 || n > 63 || !isalpha((unsigned char)name[0]) || name[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(isascii((unsigned char)name[i]) && (isalnum((unsigned char)name[i]) ||
							 name[i] == '-')))
			return false;
	return true;
}

bool stor_valid_snap_name(const char *snap)
{
	size_t n = snap ? strlen(snap) : 0;

	if (n == 0 || n > 255 || strcmp(snap, ".") == 0 || strcmp(snap, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (snap[i] == '/' || iscntrl((unsigned char)snap[i]))
			return false;
	return true;
}

bool stor_valid_fingerprint(const char *fp)
{
	size_t n = fp ? strlen(fp) : 0;

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)fp[i]) && !(fp[i] >= 'a' && fp[i] <= 'f'))
			return false;
	return true;
}

bool stor_valid_pool_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	/* Also a loop file name and a zpool name, so keep to a safe set. */
	if (n == 0 || n > 63 || name[0] == '.' || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(isascii((unsigned char)name[i]) &&
		      (isalnum((unsigned char)name[i]) || strchr("-_.", name[i]))))
			return false;
	return true;
}

int stor_parse_size(const char *s, uint64_t *out)
{
	static const struct { const char *sfx; uint64_t mul; } units[] = {
		{ "", 1 }, { "B", 1 }, { " bytes", 1 },
		{ "kB", 1000ULL }, { "MB", 1000000ULL }, { "GB", 1000000000ULL },
		{ "TB", 1000000000000ULL }, { "PB", 1000000000000000ULL },
		{ "EB", 1000000000000000000ULL },
		{ "KiB", 1ULL << 10 }, { "MiB", 1ULL << 20 }, { "GiB", 1ULL << 30 },
		{ "TiB", 1ULL << 40 }, { "PiB", 1ULL << 50 }, { "EiB", 1ULL << 60 },
	};
	const char *p = s;
	uint64_t v = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(p, units[i].sfx) != 0)
			continue;
		if (v && units[i].mul > UINT64_MAX / v)
			return -EINVAL;
		*out = v * units[i].mul;
		return 0;
	}
	return -EINVAL;
}

/* ---- paths ---- */

char *stor_ct_path(const struct stor_pool *p, const char *name)
{
	return stor_valid_ct_name(name) ? xasprintf("%s/containers/%s", p->path, name) : NULL;
}

char *stor_ct_rootfs(const struct stor_pool *p, const char *name)
{
	return stor_valid_ct_name(name) ? xasprintf("%s/containers/%s/rootfs", p->path, name)
					: NULL;
}

char *stor_snap_dir(const struct stor_pool *p, const char *name)
{
	return stor_valid_ct_name(name) ? xasprintf("%s/containers-snapshots/%s", p->path, name)
					: NULL;
}

char *stor_snap_path(const struct stor_pool *p, const char *name, const char *snap)
{
	if (!stor_valid_ct_name(name) || !stor_valid_snap_name(snap))
		return NULL;
	return xasprintf("%s/containers-snapshots/%s/%s", p->path, name, snap);
}

char *stor_image_path(const struct stor_pool *p, const char *fp)
{
	return stor_valid_fingerprint(fp) ? xasprintf("%s/images/%s", p->path, fp) : NULL;
}

char *stor_disk_path(const struct stor_pool *p)
{
	return xasprintf("%s/disks/%s.img", p->cell_dir, p->name);
}

bool stor_path_exists(const char *path)
{
	struct stat st;
	return path && lstat(path, &st) == 0;
}

bool stor_ct_exists(const struct stor_pool *p, const char *name)
{
	_cleanup_free_ char *path = stor_ct_path(p, name);
	return stor_path_exists(path);
}

bool stor_dir_is_empty(const char *path)
{
	_cleanup_closedir_ DIR *d = opendir(path);
	struct dirent *de;

	if (!d)
		return errno == ENOENT;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			return false;
	return true;
}

bool stor_is_mountpoint(const char *path)
{
	struct statx stx;

	if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) < 0)
		return false;
	return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	       (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

int stor_rename_noreplace(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
	/* A filesystem without RENAME_NOREPLACE: the check is racy but the
	 * caller serialises ops on one name. */
	if (stor_path_exists(to))
		return -EEXIST;
	return rename(from, to) < 0 ? -errno : 0;
}

char *stor_tmp_path(const struct stor_pool *p, const char *kind, const char *name,
		    cell_error *err)
{
	_cleanup_free_ char *dir = xasprintf("%s/.tmp", p->path);
	char rnd[17];

	if (!dir) {
		cell_err(err, 500, ENOMEM, "out of memory");
		return NULL;
	}
	if (mkdir(dir, STOR_PRIVATE_MODE) < 0 && errno != EEXIST) {
		cell_err_sys(err, 500, errno, "mkdir %s", dir);
		return NULL;
	}
	if (util_random_hex(rnd, 8) < 0) {
		cell_err(err, 500, EIO, "no randomness for a temporary name");
		return NULL;
	}
	return xasprintf("%s/%s-%s-%s", dir, kind, name ? name : "", rnd);
}

int stor_make_layout(const struct stor_pool *p, cell_error *err)
{
	static const struct { const char *dir; mode_t mode; } layout[] = {
		{ "containers", STOR_SUBDIR_MODE },
		{ "containers-snapshots", STOR_PRIVATE_MODE },
		{ "images", STOR_PRIVATE_MODE },
		{ "custom", STOR_SUBDIR_MODE },
		{ "custom-snapshots", STOR_PRIVATE_MODE },
		{ ".tmp", STOR_PRIVATE_MODE },
	};

	for (size_t i = 0; i < ARRAY_SIZE(layout); i++) {
		_cleanup_free_ char *d = xasprintf("%s/%s", p->path, layout[i].dir);
		if (!d)
			return cell_err(err, 500, ENOMEM, "out of memory");
		if (mkdir(d, layout[i].mode) < 0 && errno != EEXIST)
			return cell_err_sys(err, 500, errno, "mkdir %s", d);
	}
	return 0;
}

int stor_has_snapshots(const struct stor_pool *p, const char *name, cell_error *err)
{
	_cleanup_free_ char *dir = stor_snap_dir(p, name);

	if (!dir)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return stor_dir_is_empty(dir) ? 0 : 1;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int stor_snapshot_list(const struct stor_pool *p, const char *name, char ***out, cell_error *err)
{
	_cleanup_free_ char *dir = stor_snap_dir(p, name);
	_cleanup_closedir_ DIR *d = NULL;
	_cleanup_strv_ char **v = calloc(1, sizeof(char *));
	size_t n = 0;
	struct dirent *de;

	if (!v)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (!dir)
		return cell_err(err, 400, EINVAL, "invalid container name \"%s\"", name);
	d = opendir(dir);
	if (!d && errno != ENOENT)
		return cell_err_sys(err, 500, errno, "list %s", dir);
	while (d && (de = readdir(d))) {
		char **nv;
		if (!stor_valid_snap_name(de->d_name))
			continue;
		nv = realloc(v, (n + 2) * sizeof(char *));
		if (!nv)
			return cell_err(err, 500, ENOMEM, "out of memory");
		v = nv;
		v[n] = strdup(de->d_name);
		v[++n] = NULL;
		if (!v[n - 1])
			return cell_err(err, 500, ENOMEM, "out of memory");
	}
	qsort(v, n, sizeof(char *), cmp_str);
	*out = steal_ptr(v);
	return 0;
}

/* ---- tree walks: remove, usage ---- */

struct walk {
	strbuf rel;          /* path below the walk's root, for messages */
	cell_error *err;
	struct stor_inode_set seen;
	uint64_t bytes;
};

static void walk_push(struct walk *w, const char *name)
{
	if (w->rel.len)
		sb_puts(&w->rel, "/");
	sb_puts(&w->rel, name);
}

static void walk_pop(struct walk *w, size_t mark)
{
	w->rel.len = mark;
	if (w->rel.buf)
		w->rel.buf[mark] = '\0';
}

static int walk_fail(struct walk *w, int e, const char *what)
{
	return cell_err_sys(w->err, 500, e, "%s %s", what, w->rel.buf ? w->rel.buf : ".");
}

static bool statx_is_mount_root(const struct statx *stx)
{
	return (stx->stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	       (stx->stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

/* A btrfs subvolume goes in one ioctl however big it is, and read-only
 * ones (image caches, received snapshots) cannot be emptied file by file. */
static int btrfs_destroy_at(int dfd, const char *name)
{
	struct btrfs_ioctl_vol_args args = { 0 };
	struct statfs sfs;

	if (fstatfs(dfd, &sfs) < 0 || sfs.f_type != BTRFS_SUPER_MAGIC)
		return -ENOTTY;
	if (strlen(name) > BTRFS_PATH_NAME_MAX)
		return -ENAMETOOLONG;
	strcpy(args.name, name);
	return ioctl(dfd, BTRFS_IOC_SNAP_DESTROY, &args) < 0 ? -errno : 0;
}

static int rm_at(int dfd, const char *name, struct walk *w);

static int rm_children(int fd, struct walk *w)
{
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	_cleanup_closedir_ DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *de;
	int rc;

	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return walk_fail(w, errno, "read");
	}
	while ((errno = 0, de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		rc = rm_at(fd, de->d_name, w);
		if (rc < 0)
			return rc;
	}
	return errno ? walk_fail(w, errno, "read") : 0;
}

static int rm_dir(int dfd, const char *name, const struct statx *stx, struct walk *w)
{
	_cleanup_close_ int fd = -1;
	int rc;

	if (stx->stx_ino == BTRFS_FIRST_FREE_OBJECTID) {
		rc = btrfs_destroy_at(dfd, name);
		if (rc == 0)
			return 0;
		/* ENOTEMPTY: nested subvolumes, which the loop below removes
		 * one by one (rmdir of an emptied subvolume works since 4.18). */
	}
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : walk_fail(w, errno, "open");
	if (stx->stx_ino == BTRFS_FIRST_FREE_OBJECTID) {
		uint64_t flags = 0;
		ioctl(fd, BTRFS_IOC_SUBVOL_SETFLAGS, &flags);   /* best effort: may be no subvolume */
	}
	rc = rm_children(fd, w);
	if (rc < 0)
		return rc;
	if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return walk_fail(w, errno, "remove");
	return 0;
}

static int rm_at(int dfd, const char *name, struct walk *w)
{
	size_t mark = w->rel.len;
	struct statx stx;
	int rc = 0;

	walk_push(w, name);
	if (statx(dfd, name, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_INO, &stx) < 0) {
		if (errno != ENOENT)
			rc = walk_fail(w, errno, "stat");
	} else if (!S_ISDIR(stx.stx_mode)) {
		if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
			rc = walk_fail(w, errno, "remove");
	} else if (statx_is_mount_root(&stx)) {
		/* Never delete through a mount: it may be a bind of anything. */
		rc = cell_err(w->err, 500, EBUSY, "remove %s: is a mount point", w->rel.buf);
	} else {
		rc = rm_dir(dfd, name, &stx, w);
	}
	walk_pop(w, mark);
	return rc;
}

/* Split path into an open parent dir and the last component. */
static int open_parent(const char *path, char **base, cell_error *err)
{
	_cleanup_free_ char *dup = strdup(path);
	char *slash;
	int fd;

	if (!dup)
		return cell_err(err, 500, ENOMEM, "out of memory");
	while (strlen(dup) > 1 && str_has_suffix(dup, "/"))
		dup[strlen(dup) - 1] = '\0';
	slash = strrchr(dup, '/');
	if (!slash || !slash[1] || !strcmp(slash + 1, ".") || !strcmp(slash + 1, ".."))
		return cell_err(err, 500, EINVAL, "refusing to operate on \"%s\"", path);
	*slash = '\0';
	fd = open(slash == dup ? "/" : dup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return cell_err_sys(err, errno == ENOENT ? 404 : 500, errno, "open %s", dup);
	*base = strdup(slash + 1);
	if (!*base) {
		close(fd);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	return fd;
}

int stor_remove_tree(const char *path, cell_error *err)
{
	_cleanup_free_ char *base = NULL;
	_cleanup_close_ int pfd = -1;
	struct walk w = { .err = err };
	int rc;

	if (!stor_path_exists(path))
		return 0;
	pfd = open_parent(path, &base, err);
	if (pfd < 0)
		return pfd == -ENOENT ? 0 : pfd;
	rc = rm_at(pfd, base, &w);
	sb_free(&w.rel);
	if (rc < 0)
		return cell_err_wrap(err, rc, "remove %s", path);
	return 0;
}

static int usage_at(int dfd, const char *name, struct walk *w);

static int usage_children(int fd, struct walk *w)
{
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	_cleanup_closedir_ DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *de;

	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return walk_fail(w, errno, "read");
	}
	while ((errno = 0, de = readdir(d))) {
		int rc;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		rc = usage_at(fd, de->d_name, w);
		if (rc < 0)
			return rc;
	}
	return errno ? walk_fail(w, errno, "read") : 0;
}

static int usage_at(int dfd, const char *name, struct walk *w)
{
	size_t mark = w->rel.len;
	struct statx stx;
	int rc = 0;

	walk_push(w, name);
	if (statx(dfd, name, AT_SYMLINK_NOFOLLOW,
		  STATX_TYPE | STATX_INO | STATX_NLINK | STATX_BLOCKS, &stx) < 0) {
		rc = errno == ENOENT ? 0 : walk_fail(w, errno, "stat");
		goto out;
	}
	if (!S_ISDIR(stx.stx_mode) && stx.stx_nlink > 1) {
		bool fresh;
		if (!stor_inode_set_get(&w->seen, makedev(stx.stx_dev_major, stx.stx_dev_minor),
					stx.stx_ino, &fresh)) {
			rc = cell_err(w->err, 500, ENOMEM, "out of memory");
			goto out;
		}
		if (!fresh)
			goto out;
	}
	w->bytes += stx.stx_blocks * 512;
	if (S_ISDIR(stx.stx_mode) && !statx_is_mount_root(&stx)) {
		_cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
							       O_CLOEXEC);
		rc = fd < 0 ? (errno == ENOENT ? 0 : walk_fail(w, errno, "open"))
			    : usage_children(fd, w);
	}
out:
	walk_pop(w, mark);
	return rc;
}

int stor_tree_usage(const char *path, uint64_t *used, cell_error *err)
{
	_cleanup_free_ char *base = NULL;
	_cleanup_close_ int pfd = open_parent(path, &base, err);
	struct walk w = { .err = err };
	int rc;

	if (pfd < 0)
		return pfd;
	rc = usage_at(pfd, base, &w);
	sb_free(&w.rel);
	stor_inode_set_free(&w.seen);
	if (rc < 0)
		return cell_err_wrap(err, rc, "usage of %s", path);
	*used = w.bytes;
	return 0;
}

void stor_pool_settle(struct stor_pool *p)
{
	stor_dir_wait_refills(p->path);
}

/* Spares (dir pools) of images no longer cached go too. */
static void gc_spares(struct stor_pool *p)
{
	_cleanup_free_ char *dir = xasprintf("%s/.spare", p->path);
	_cleanup_closedir_ DIR *d = dir ? opendir(dir) : NULL;
	struct dirent *de;

	while (d && (de = readdir(d))) {
		_cleanup_free_ char *fp = strdup(de->d_name), *img = NULL, *path = NULL;
		char *dash = fp ? strrchr(fp, '-') : NULL;
		cell_error e2;
		if (de->d_name[0] == '.' || !dash)
			continue;
		*dash = '\0';
		img = stor_image_path(p, fp);
		if (img && stor_path_exists(img))
			continue;
		if ((path = xasprintf("%s/%s", dir, de->d_name)))
			stor_discard(p, path, &e2);
	}
}

int stor_pool_gc(struct stor_pool *p, cell_error *err)
{
	_cleanup_free_ char *dir = xasprintf("%s/.tmp", p->path);
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int ret = 0;

	/* Spare copies in flight also work in .tmp. */
	stor_dir_wait_refills(p->path);
	d = dir ? opendir(dir) : NULL;
	if (!d && errno != ENOENT)
		return cell_err_sys(err, 500, errno, "open %s", dir);
	while (d && (de = readdir(d))) {
		_cleanup_free_ char *path = NULL;
		int rc;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		path = xasprintf("%s/%s", dir, de->d_name);
		if (!path)
			return cell_err(err, 500, ENOMEM, "out of memory");
		log_info("storage pool %s: removing leftover %s", p->name, path);
		rc = stor_remove_tree(path, err);
		if (rc < 0)
			ret = rc;   /* keep going: one stuck entry must not pin the rest */
	}
	gc_spares(p);
	return ret;
}

/* ---- validating wrappers ---- */

static int bad_ct(const char *name, cell_error *err)
{
	return cell_err(err, 400, EINVAL, "invalid container name \"%s\"", name ? name : "");
}

static int bad_snap(const char *snap, cell_error *err)
{
	return cell_err(err, 400, EINVAL, "invalid snapshot name \"%s\"", snap ? snap : "");
}

static int check_ct(const char *name, cell_error *err)
{
	return stor_valid_ct_name(name) ? 0 : bad_ct(name, err);
}

static int check_snap(const char *name, const char *snap, cell_error *err)
{
	if (!stor_valid_ct_name(name))
		return bad_ct(name, err);
	return stor_valid_snap_name(snap) ? 0 : bad_snap(snap, err);
}

static int check_fp(const char *fp, cell_error *err)
{
	return stor_valid_fingerprint(fp)
		       ? 0
		       : cell_err(err, 400, EINVAL, "invalid image fingerprint \"%s\"", fp ? fp : "");
}

static int unsupported(const struct stor_pool *p, const char *what, cell_error *err)
{
	return cell_err(err, 400, EOPNOTSUPP, "storage driver %s does not support %s",
			p->ops->name, what);
}

#define STOR_CALL(p, op, what, err, ...) \
	((p)->ops->op ? (p)->ops->op((p), __VA_ARGS__, (err)) : unsupported((p), (what), (err)))

int stor_pool_create(struct stor_pool *p, cell_error *err)
{
	_cleanup_free_ char *parent = xasprintf("%s/storage-pools", p->cell_dir);
	int rc;

	if (!parent)
		return cell_err(err, 500, ENOMEM, "out of memory");
	rc = util_mkdir_p(parent, STOR_SUBDIR_MODE, err);
	if (rc < 0)
		return rc;
	if (stor_path_exists(p->path) && !stor_dir_is_empty(p->path))
		return cell_err(err, 409, EEXIST, "storage pool directory %s exists and is not empty",
				p->path);
	return p->ops->pool_create(p, err);
}

int stor_pool_delete(struct stor_pool *p, cell_error *err) { return p->ops->pool_delete(p, err); }
int stor_pool_mount(struct stor_pool *p, cell_error *err) { return p->ops->pool_mount(p, err); }
int stor_pool_unmount(struct stor_pool *p, cell_error *err) { return p->ops->pool_unmount(p, err); }

int stor_pool_usage(struct stor_pool *p, uint64_t *used, uint64_t *total, cell_error *err)
{
	return p->ops->pool_usage(p, used, total, err);
}

int stor_image_ensure(struct stor_pool *p, const char *fp, const struct stor_image_src *src,
		      cell_error *err)
{
	int rc = check_fp(fp, err);
	if (rc < 0)
		return rc;
	if (!src || !src->image_path)
		return cell_err(err, 400, EINVAL, "image %s: no image file given", fp);
	pthread_rwlock_rdlock(&p->image_lock);
	rc = p->ops->image_ensure(p, fp, src, err);
	pthread_rwlock_unlock(&p->image_lock);
	return rc;
}

int stor_image_delete(struct stor_pool *p, const char *fp, cell_error *err)
{
	int rc = check_fp(fp, err);
	if (rc < 0)
		return rc;
	pthread_rwlock_wrlock(&p->image_lock);
	rc = p->ops->image_delete(p, fp, err);
	pthread_rwlock_unlock(&p->image_lock);
	return rc;
}

int stor_ct_create_from_image(struct stor_pool *p, const char *name, const char *fp,
			      const struct idmap *map, cell_error *err)
{
	int rc = check_ct(name, err);
	if (rc < 0 || (rc = check_fp(fp, err)) < 0)
		return rc;
	pthread_rwlock_rdlock(&p->image_lock);
	rc = p->ops->ct_create_from_image(p, name, fp, map, err);
	pthread_rwlock_unlock(&p->image_lock);
	return rc;
}

int stor_ct_create_empty(struct stor_pool *p, const char *name, const struct idmap *map,
			 cell_error *err)
{
	int rc = check_ct(name, err);
	return rc < 0 ? rc : STOR_CALL(p, ct_create_empty, "empty volumes", err, name, map);
}

int stor_ct_copy(struct stor_pool *p, const char *src, const char *dst, bool with_snapshots,
		 const struct idmap *from, const struct idmap *to, cell_error *err)
{
	int rc = check_ct(src, err);
	if (rc < 0 || (rc = check_ct(dst, err)) < 0)
		return rc;
	if (!strcmp(src, dst))
		return cell_err(err, 400, EINVAL, "cannot copy %s onto itself", src);
	return STOR_CALL(p, ct_copy, "copies", err, src, dst, with_snapshots, from, to);
}

int stor_ct_delete(struct stor_pool *p, const char *name, cell_error *err)
{
	int rc = check_ct(name, err);
	return rc < 0 ? rc : p->ops->ct_delete(p, name, err);
}

int stor_ct_rename(struct stor_pool *p, const char *oldname, const char *newname, cell_error *err)
{
	int rc = check_ct(oldname, err);
	if (rc < 0 || (rc = check_ct(newname, err)) < 0)
		return rc;
	if (!strcmp(oldname, newname))
		return 0;
	return STOR_CALL(p, ct_rename, "renames", err, oldname, newname);
}

int stor_ct_mount(struct stor_pool *p, const char *name, cell_error *err)
{
	int rc = check_ct(name, err);
	if (rc < 0 || !p->ops->ct_mount)
		return rc;
	return p->ops->ct_mount(p, name, err);
}

int stor_ct_unmount(struct stor_pool *p, const char *name, cell_error *err)
{
	int rc = check_ct(name, err);
	if (rc < 0 || !p->ops->ct_unmount)
		return rc;
	return p->ops->ct_unmount(p, name, err);
}

int stor_ct_snapshot_create(struct stor_pool *p, const char *name, const char *snap,
			    cell_error *err)
{
	int rc = check_snap(name, snap, err);
	return rc < 0 ? rc : STOR_CALL(p, ct_snapshot_create, "snapshots", err, name, snap);
}

int stor_ct_snapshot_delete(struct stor_pool *p, const char *name, const char *snap,
			    cell_error *err)
{
	int rc = check_snap(name, snap, err);
	return rc < 0 ? rc : STOR_CALL(p, ct_snapshot_delete, "snapshots", err, name, snap);
}

int stor_ct_snapshot_restore(struct stor_pool *p, const char *name, const char *snap,
			     cell_error *err)
{
	int rc = check_snap(name, snap, err);
	return rc < 0 ? rc : STOR_CALL(p, ct_snapshot_restore, "snapshots", err, name, snap);
}

int stor_ct_snapshot_rename(struct stor_pool *p, const char *name, const char *oldsnap,
			    const char *newsnap, cell_error *err)
{
	int rc = check_snap(name, oldsnap, err);
	if (rc < 0 || (rc = check_snap(name, newsnap, err)) < 0)
		return rc;
	if (!strcmp(oldsnap, newsnap))
		return 0;
	return STOR_CALL(p, ct_snapshot_rename, "snapshots", err, name, oldsnap, newsnap);
}

int stor_ct_set_quota(struct stor_pool *p, const char *name, uint64_t bytes, cell_error *err)
{
	int rc = check_ct(name, err);
	return rc < 0 ? rc : STOR_CALL(p, ct_set_quota, "size limits", err, name, bytes);
}

int stor_ct_usage(struct stor_pool *p, const char *name, uint64_t *used, cell_error *err)
{
	int rc = check_ct(name, err);
	return rc < 0 ? rc : STOR_CALL(p, ct_usage, "usage", err, name, used);
}

int stor_ct_shift(struct stor_pool *p, const char *name, const struct idmap *from,
		  const struct idmap *to, cell_error *err)
{
	int rc = check_ct(name, err);
	if (rc < 0 || stor_idmap_is_identity(from, to))
		return rc;
	return STOR_CALL(p, ct_shift, "id shifting", err, name, from, to);
}

int stor_ct_send(struct stor_pool *p, const char *name, const char *snap, const char *parent,
		 int fd, cell_error *err)
{
	int rc = snap ? check_snap(name, snap, err) : check_ct(name, err);
	if (rc < 0 || (parent && (rc = check_snap(name, parent, err)) < 0))
		return rc;
	return STOR_CALL(p, ct_send, "migration streams", err, name, snap, parent, fd);
}

int stor_ct_receive(struct stor_pool *p, const char *name, const char *snap, int fd,
		    cell_error *err)
{
	int rc = snap ? check_snap(name, snap, err) : check_ct(name, err);
	return rc < 0 ? rc : STOR_CALL(p, ct_receive, "migration streams", err, name, snap, fd);
}

/* ---- volume helpers shared by the drivers ---- */

int stor_discard(const struct stor_pool *p, const char *path, cell_error *err)
{
	_cleanup_free_ char *tmp = NULL;
	cell_error e2;
	const char *base = strrchr(path, '/');
	int rc;

	if (!stor_path_exists(path))
		return 0;
	tmp = stor_tmp_path(p, "del", base ? base + 1 : path, err);
	if (!tmp)
		return -EIO;
	if (rename(path, tmp) < 0) {
		if (errno == ENOENT)
			return 0;
		/* A read-only btrfs subvolume cannot change directory, but
		 * destroying it in place is a single atomic ioctl anyway. */
		if (errno == EROFS)
			return stor_remove_tree(path, err);
		return cell_err_sys(err, 500, errno, "move %s aside", path);
	}
	rc = stor_remove_tree(tmp, &e2);
	if (rc < 0)
		log_warn("storage pool %s: %s (left for clean-up at next start)", p->name, e2.msg);
	return 0;
}

int stor_place(const char *tmp, const char *final, cell_error *err)
{
	int rc = stor_rename_noreplace(tmp, final);

	if (rc == -EEXIST || rc == -ENOTEMPTY)
		return cell_err(err, 409, EEXIST, "%s already exists", final);
	if (rc < 0)
		return cell_err_sys(err, 500, -rc, "rename %s to %s", tmp, final);
	return 0;
}

static int unpack_rootfs(const char *dest, const struct stor_image_src *src,
			 const struct tar_unpack_opts *o, cell_error *err)
{
	_cleanup_free_ char *rootfs = xasprintf("%s/rootfs", dest);
	const char *comp = NULL;
	int rc;

	if (!rootfs)
		return cell_err(err, 500, ENOMEM, "out of memory");
	rc = tar_detect_compression(src->rootfs_path, &comp, err);
	if (rc < 0)
		return rc;
	if (!strcmp(comp, "squashfs"))
		return squashfs_unpack(src->rootfs_path, rootfs, NULL, err);
	if (mkdir(rootfs, 0755) < 0 && errno != EEXIST)
		return cell_err_sys(err, 500, errno, "mkdir %s", rootfs);
	return tar_unpack_path(src->rootfs_path, rootfs, o, err);
}

int stor_unpack_image(const char *dest, const struct stor_image_src *src, cell_error *err)
{
	struct tar_unpack_opts o = { .progress = src->progress, .progress_data = src->progress_data };
	_cleanup_free_ char *rootfs = xasprintf("%s/rootfs", dest);
	struct stat st;
	int rc;

	if (!rootfs)
		return cell_err(err, 500, ENOMEM, "out of memory");
	/* Image caches hold the image's own ids; containers shift on create. */
	rc = tar_unpack_path(src->image_path, dest, &o, err);
	if (rc == 0 && src->rootfs_path)
		rc = unpack_rootfs(dest, src, &o, err);
	if (rc < 0)
		return cell_err_wrap(err, rc, "unpack image");
	if (lstat(rootfs, &st) < 0 || !S_ISDIR(st.st_mode))
		return cell_err(err, 400, EINVAL, "unpack image: the image has no rootfs/ directory");
	return 0;
}

int stor_map_root(const struct idmap *map, uid_t *uid, gid_t *gid, cell_error *err)
{
	uint32_t u = 0, g = 0;

	if (map && !idmap_is_empty(map) &&
	    (idmap_shift_uid(map, 0, &u) < 0 || idmap_shift_gid(map, 0, &g) < 0))
		return cell_err(err, 400, EINVAL, "the id map does not map root");
	*uid = u;
	*gid = g;
	return 0;
}

int stor_need_absent(const char *path, const char *what, const char *name, cell_error *err)
{
	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (stor_path_exists(path))
		return cell_err(err, 409, EEXIST, "%s %s already exists", what, name);
	return 0;
}

int stor_need_present(const char *path, const char *what, const char *name, cell_error *err)
{
	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (!stor_path_exists(path))
		return cell_err(err, 404, ENOENT, "%s %s not found", what, name);
	return 0;
}

