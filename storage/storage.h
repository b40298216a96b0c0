/*
 * Storage pools and container volumes behind one ops table, laid out as LXD
 * keeps them under the daemon's state dir:
 *
 *   $CELL_DIR/storage-pools/<pool>/                   pool root (btrfs: mount point)
 *       containers/<name>/                            volume: rootfs/ + backup.yaml,
 *                                                     metadata.yaml, templates/
 *       containers-snapshots/<name>/<snap>/           a copy/snapshot of the volume
 *       images/<fingerprint>/                         unpacked image cache (rootfs/ +
 *                                                     metadata.yaml + templates/)
 *       .tmp/                                         work area: volumes are built here
 *                                                     and renamed into place
 *       .spare/<fp>-<rand>/                           dir: ready copies of an image
 *   $CELL_DIR/disks/<pool>.img                        loop file of a btrfs/zfs pool
 *
 * Contract shared by every op:
 *  - Names are validated by the stor_* wrappers below before a driver sees
 *    them, so drivers may join them into paths: a container name follows
 *    LXD's instance rules, a snapshot name has no '/', an image fingerprint
 *    is lower-case hex.  Bad names fail with -EINVAL and status 400.
 *  - Returns 0 or a negative errno; `err` then holds a message that names the
 *    failing step ("copy rootfs/etc/passwd: No space left on device") for
 *    the caller to prefix ("create c1: ...").  Status: 400 bad input,
 *    404 missing volume/image, 409 already exists, 500 otherwise.
 *  - A failed create/copy/snapshot/restore/receive leaves nothing behind
 *    and changes nothing: volumes are built under .tmp/ and renamed into
 *    place, and a crash leaves only .tmp/ debris that stor_pool_gc() removes.
 *    (zfs builds datasets under their final name and destroys them on
 *    failure: a crash mid-create can leave one for reconciliation.)
 *  - The pool must be mounted (stor_pool_mount) before any volume op.  Ops
 *    on different containers may run concurrently on worker threads; ops on
 *    the same container must be serialised by the caller (the daemon holds
 *    the instance's operation lock).  Every op may block: never call one on
 *    the event-loop thread.
 *  - Ids: image caches keep the image's own (unshifted) ids.  A container
 *    rootfs is stored shifted to its idmap (NULL or empty = privileged); the
 *    daemon remembers which map a rootfs is in (volatile.last_state.idmap)
 *    and calls stor_ct_shift when it changes.
 */
#ifndef CELL_STORAGE_STORAGE_H
#define CELL_STORAGE_STORAGE_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

struct idmap;

struct stor_pool {
	char *name;
	char *driver;
	char *cell_dir;   /* $CELL_DIR: loop files live in its disks/ */
	char *path;       /* $CELL_DIR/storage-pools/<name> */
	json_t *config;   /* LXD pool config (string values); pool_create fills defaults */
	const struct stor_ops *ops;
	void *priv;
	/* dir: ready-made copies kept per cached image so a create is a
	 * rename instead of a copy (see dir.c); 0 turns them off. */
	unsigned spares;
	/* Held shared while a volume is built from an image cache and
	 * exclusively while a cache is deleted, so a create never copies a
	 * half-removed image. */
	pthread_rwlock_t image_lock;
};

/* Where an image comes from for image_ensure.  LXD images are either one
 * "unified" tarball (metadata.yaml, templates/, rootfs/) or "split": a
 * metadata tarball plus a rootfs tarball or squashfs. */
struct stor_image_src {
	const char *image_path;    /* unified tarball, or the metadata tarball */
	const char *rootfs_path;   /* split image's rootfs, else NULL */
	int (*progress)(void *data, uint64_t bytes_in, uint64_t total);   /* may be NULL */
	void *progress_data;
};

struct stor_ops {
	const char *name;

	/* Create the pool's storage (loop file + mkfs, bind source, ...), fill
	 * the config defaults (source, size) and leave it mounted with the
	 * layout dirs made.  The caller creates nothing; on failure the loop
	 * file and directories this call made are removed again. */
	int (*pool_create)(struct stor_pool *p, cell_error *err);
	/* Unmount and remove what pool_create made.  Refuses (-EBUSY, 409)
	 * while container volumes or snapshots remain; image caches go. */
	int (*pool_delete)(struct stor_pool *p, cell_error *err);
	/* Idempotent: mounting a mounted pool succeeds.  Also (re)creates
	 * the layout dirs. */
	int (*pool_mount)(struct stor_pool *p, cell_error *err);
	/* Idempotent; -EBUSY while something still uses the filesystem. */
	int (*pool_unmount)(struct stor_pool *p, cell_error *err);
	int (*pool_usage)(struct stor_pool *p, uint64_t *used, uint64_t *total, cell_error *err);

	/* Unpack an image once into images/<fp>/ (btrfs: a read-only
	 * subvolume, zfs: a dataset with an @readonly snapshot).  Succeeds
	 * at once when the cache exists; concurrent calls for one image are
	 * safe (one unpack wins, the others are discarded). */
	int (*image_ensure)(struct stor_pool *p, const char *fp, const struct stor_image_src *src,
			    cell_error *err);
	/* Removing a missing cache succeeds. */
	int (*image_delete)(struct stor_pool *p, const char *fp, cell_error *err);

	/* containers/<name>/ from the cached image (-ENOENT/404 when
	 * image_ensure has not run), rootfs shifted into `map`.  -EEXIST/409
	 * when the volume exists. */
	int (*ct_create_from_image)(struct stor_pool *p, const char *name, const char *fp,
				    const struct idmap *map, cell_error *err);
	/* containers/<name>/rootfs/, empty, owned by the map's root (the
	 * target of a migration or `init --empty`). */
	int (*ct_create_empty)(struct stor_pool *p, const char *name, const struct idmap *map,
			       cell_error *err);
	/* dst becomes a copy of src (and of its snapshots when asked), with
	 * ids moved from `from` to `to`.  src should be stopped or frozen.
	 * Size limits are the caller's to apply to dst (ct_set_quota). */
	int (*ct_copy)(struct stor_pool *p, const char *src, const char *dst, bool with_snapshots,
		       const struct idmap *from, const struct idmap *to, cell_error *err);
	/* Volume and all its snapshots.  Deleting a missing volume succeeds,
	 * so start-up reconciliation can repeat it. */
	int (*ct_delete)(struct stor_pool *p, const char *name, cell_error *err);
	/* Volume and snapshots move together or not at all. */
	int (*ct_rename)(struct stor_pool *p, const char *oldname, const char *newname,
			 cell_error *err);
	/* Make the mount path usable (zfs datasets); no-op for dir and btrfs. */
	int (*ct_mount)(struct stor_pool *p, const char *name, cell_error *err);
	int (*ct_unmount)(struct stor_pool *p, const char *name, cell_error *err);

	/* containers-snapshots/<name>/<snap>/ from the current volume (btrfs:
	 * a read-only subvolume snapshot). */
	int (*ct_snapshot_create)(struct stor_pool *p, const char *name, const char *snap,
				  cell_error *err);
	/* Deleting a missing snapshot succeeds. */
	int (*ct_snapshot_delete)(struct stor_pool *p, const char *name, const char *snap,
				  cell_error *err);
	/* The volume is replaced by the snapshot as one rename: a failure
	 * leaves the volume as it was.  The container must be stopped.
	 * zfs: `zfs rollback`, so only to the newest snapshot (as LXD
	 * without zfs.remove_snapshots). */
	int (*ct_snapshot_restore)(struct stor_pool *p, const char *name, const char *snap,
				   cell_error *err);
	int (*ct_snapshot_rename)(struct stor_pool *p, const char *name, const char *oldsnap,
				  const char *newsnap, cell_error *err);

	/* Limit the volume to `bytes` (0 removes the limit).  -EOPNOTSUPP
	 * (400) where the pool cannot enforce one. */
	int (*ct_set_quota)(struct stor_pool *p, const char *name, uint64_t bytes, cell_error *err);
	int (*ct_usage)(struct stor_pool *p, const char *name, uint64_t *used, cell_error *err);
	/* Re-own the rootfs from `from` to `to` (idmap change). */
	int (*ct_shift)(struct stor_pool *p, const char *name, const struct idmap *from,
			const struct idmap *to, cell_error *err);

	/* Migration streams in the driver's own format (dir: tar; btrfs:
	 * btrfs send; zfs: zfs send).  Send the volume (snap NULL) or one
	 * snapshot to fd; `parent` (NULL for a full stream) names an earlier
	 * snapshot the receiver already has, for an incremental stream where
	 * the format has one.  Receive creates the volume (snap NULL) or the
	 * snapshot from such a stream and, like a create, leaves nothing on
	 * failure; it reads fd to EOF.  Neither closes fd.  Ids travel as
	 * stored (the sender's host view): the receiver shifts with
	 * ct_shift from the sender's map, as LXD does after a migration. */
	int (*ct_send)(struct stor_pool *p, const char *name, const char *snap, const char *parent,
		       int fd, cell_error *err);
	int (*ct_receive)(struct stor_pool *p, const char *name, const char *snap, int fd,
			  cell_error *err);
};

/* "dir", "btrfs", "zfs"; NULL for anything else. */
const struct stor_ops *stor_driver(const char *name);

/* Whether the driver can work on this host (tools, kernel support), with a
 * static reason when not: the daemon lists only available drivers. */
bool stor_driver_available(const char *name, const char **why);

/* A handle for a pool: no I/O, nothing created.  `config` (a JSON object
 * or NULL) is copied.  -EINVAL/400 for a bad pool name or unknown driver. */
int stor_pool_new(const char *cell_dir, const char *name, const char *driver, json_t *config,
		  struct stor_pool **out, cell_error *err);
void stor_pool_free(struct stor_pool *p);
static inline void stor_pool_freep(struct stor_pool **p) { stor_pool_free(*p); }
#define _cleanup_stor_pool_ __attribute__((cleanup(stor_pool_freep)))

/* Config value or NULL. */
const char *stor_pool_config(const struct stor_pool *p, const char *key);
/* Wait for the pool's background work (dir: spare copies) to finish. */
void stor_pool_settle(struct stor_pool *p);
/* Remove the .tmp/ debris of interrupted creates and deletes.  Call once at
 * daemon start after mounting, before any op on the pool runs. */
int stor_pool_gc(struct stor_pool *p, cell_error *err);

/* Validation, exported for the API layer's 400s. */
bool stor_valid_ct_name(const char *name);
bool stor_valid_snap_name(const char *snap);
bool stor_valid_fingerprint(const char *fp);
bool stor_valid_pool_name(const char *name);
/* "256MB", "10GiB", "1048576" as LXD parses sizes; -EINVAL if malformed. */
int stor_parse_size(const char *s, uint64_t *out);

/* Paths, malloc'd (NULL on OOM or bad name). */
char *stor_ct_path(const struct stor_pool *p, const char *name);
char *stor_ct_rootfs(const struct stor_pool *p, const char *name);
char *stor_snap_path(const struct stor_pool *p, const char *name, const char *snap);
char *stor_image_path(const struct stor_pool *p, const char *fp);

bool stor_ct_exists(const struct stor_pool *p, const char *name);
/* Snapshot names of a container, sorted, NULL-terminated (_cleanup_strv_). */
int stor_snapshot_list(const struct stor_pool *p, const char *name, char ***out, cell_error *err);

/* The ops, each validating names first; see struct stor_ops for contracts. */
int stor_pool_create(struct stor_pool *p, cell_error *err);
int stor_pool_delete(struct stor_pool *p, cell_error *err);
int stor_pool_mount(struct stor_pool *p, cell_error *err);
int stor_pool_unmount(struct stor_pool *p, cell_error *err);
int stor_pool_usage(struct stor_pool *p, uint64_t *used, uint64_t *total, cell_error *err);
int stor_image_ensure(struct stor_pool *p, const char *fp, const struct stor_image_src *src,
		      cell_error *err);
int stor_image_delete(struct stor_pool *p, const char *fp, cell_error *err);
int stor_ct_create_from_image(struct stor_pool *p, const char *name, const char *fp,
			      const struct idmap *map, cell_error *err);
int stor_ct_create_empty(struct stor_pool *p, const char *name, const struct idmap *map,
			 cell_error *err);
int stor_ct_copy(struct stor_pool *p, const char *src, const char *dst, bool with_snapshots,
		 const struct idmap *from, const struct idmap *to, cell_error *err);
int stor_ct_delete(struct stor_pool *p, const char *name, cell_error *err);
int stor_ct_rename(struct stor_pool *p, const char *oldname, const char *newname, cell_error *err);
int stor_ct_mount(struct stor_pool *p, const char *name, cell_error *err);
int stor_ct_unmount(struct stor_pool *p, const char *name, cell_error *err);
int stor_ct_snapshot_create(struct stor_pool *p, const char *name, const char *snap,
			    cell_error *err);
int stor_ct_snapshot_delete(struct stor_pool *p, const char *name, const char *snap,
			    cell_error *err);
int stor_ct_snapshot_restore(struct stor_pool *p, const char *name, const char *snap,
			     cell_error *err);
int stor_ct_snapshot_rename(struct stor_pool *p, const char *name, const char *oldsnap,
			    const char *newsnap, cell_error *err);
int stor_ct_set_quota(struct stor_pool *p, const char *name, uint64_t bytes, cell_error *err);
int stor_ct_usage(struct stor_pool *p, const char *name, uint64_t *used, cell_error *err);
int stor_ct_shift(struct stor_pool *p, const char *name, const struct idmap *from,
		  const struct idmap *to, cell_error *err);
int stor_ct_send(struct stor_pool *p, const char *name, const char *snap, const char *parent,
		 int fd, cell_error *err);
int stor_ct_receive(struct stor_pool *p, const char *name, const char *snap, int fd,
		    cell_error *err);

/* ---- tree helpers (also used by migrate/) ---- */

struct stor_copy_opts {
	/* Ids in the source are in `from`'s host view, written in `to`'s
	 * (NULL = unshifted), so a create from an image shifts while it
	 * copies instead of walking the tree twice. */
	const struct idmap *from, *to;
};
/* Copy the tree at src to dst, which must not exist: FICLONE reflinks where
 * the filesystem can, else copy_file_range (holes kept); owner, mode
 * (setuid too), times, xattrs (security.capability, POSIX ACLs), device
 * nodes, fifos, sockets, symlinks and hard links are kept.  Never follows a
 * symlink in src; a mount point inside src is copied as an empty directory
 * (like cp -x).  On failure dst is removed. */
int stor_copy_tree(const char *src, const char *dst, const struct stor_copy_opts *o,
		   cell_error *err);
/* Re-own the tree at path in place from `from` to `to`: uid/gid (setuid and
 * setgid bits survive the chown), the security.capability rootid and POSIX
 * ACL entries.  Hard-linked inodes are shifted once; symlinks never followed.
 * An id outside `from` becomes the overflow id (65534) of `to`. */
int stor_shift_tree(const char *path, const struct idmap *from, const struct idmap *to,
		    cell_error *err);
/* rm -rf that never follows symlinks and refuses (-EBUSY) to descend into a
 * mount point; nested btrfs subvolumes are removed.  A missing path is 0. */
int stor_remove_tree(const char *path, cell_error *err);
/* Bytes allocated under path, hard links counted once. */
int stor_tree_usage(const char *path, uint64_t *used, cell_error *err);

#endif
