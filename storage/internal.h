/* Shared by the files of storage/ only; not part of the module's interface. */
#ifndef CELL_STORAGE_INTERNAL_H
#define CELL_STORAGE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "common/strbuf.h"
#include "storage/storage.h"

extern const struct stor_ops stor_dir_ops;
extern const struct stor_ops stor_btrfs_ops;
extern const struct stor_ops stor_zfs_ops;

/* Mode of containers/<name>/: only root may enter, because a privileged
 * container's rootfs holds setuid-root binaries a host user must never
 * reach (LXD uses the same 0100).  liblxc opens the rootfs as root. */
#define STOR_CT_DIR_MODE 0100
#define STOR_SUBDIR_MODE 0711
#define STOR_PRIVATE_MODE 0700

/* ---- exec.c: run a tool from an argv array, never through a shell ---- */
struct stor_exec_io {
	int in_fd;          /* stdin, or -1 for /dev/null */
	int out_fd;         /* stdout, or -1: captured into `out` or discarded */
	strbuf *out;        /* captured stdout when out_fd is -1, may be NULL */
};
/* Runs argv[0] (looked up in PATH, then /usr/sbin, /sbin, /usr/bin, /bin)
 * and waits.  A non-zero exit or signal gives -EIO with "<argv[0]> <argv[1]>:
 * <last stderr lines>" in err; a missing tool gives -ENOENT. */
int stor_exec(const char *const argv[], const struct stor_exec_io *io, cell_error *err);
/* from | to, both waited for; the first failure is reported. */
int stor_exec_pipe(const char *const from[], const char *const to[], cell_error *err);
/* True when the tool can be found. */
bool stor_have_tool(const char *name);

/* ---- storage.c ---- */
/* <pool>/.tmp/<kind>-<name>-<random>, malloc'd; the directory is made. */
char *stor_tmp_path(const struct stor_pool *p, const char *kind, const char *name,
		    cell_error *err);
/* containers/, containers-snapshots/, images/, custom/, .tmp/ under the pool. */
int stor_make_layout(const struct stor_pool *p, cell_error *err);
/* rename(2) that fails with EEXIST instead of replacing. */
int stor_rename_noreplace(const char *from, const char *to);
/* Different mount than its parent directory. */
bool stor_is_mountpoint(const char *path);
/* containers-snapshots/<name>/, malloc'd. */
char *stor_snap_dir(const struct stor_pool *p, const char *name);
/* $CELL_DIR/disks/<pool>.img, malloc'd. */
char *stor_disk_path(const struct stor_pool *p);
/* Set (or add) a config string. */
int stor_config_set(struct stor_pool *p, const char *key, const char *value);
bool stor_path_exists(const char *path);
/* Move path out of sight into .tmp/ and remove it there: callers see it gone
 * at once, and a crash mid-removal leaves debris only stor_pool_gc sees.
 * A missing path is 0; a failure to reclaim space after the move is only
 * logged, since the volume is gone either way. */
int stor_discard(const struct stor_pool *p, const char *path, cell_error *err);
/* Rename a finished tmp build into place: -EEXIST/409 when taken. */
int stor_place(const char *tmp, const char *final, cell_error *err);
/* Unpack an image (unified, or split metadata + rootfs tarball/squashfs)
 * into the existing dir `dest`, which then holds rootfs/ and metadata. */
int stor_unpack_image(const char *dest, const struct stor_image_src *src, cell_error *err);
/* 404 "<what> <name> not found" / 409 "... already exists"; -ENOMEM for a
 * NULL path (failed allocation). */
int stor_need_present(const char *path, const char *what, const char *name, cell_error *err);
int stor_need_absent(const char *path, const char *what, const char *name, cell_error *err);
/* 1 when the container has snapshots, 0 when not, or -errno. */
int stor_has_snapshots(const struct stor_pool *p, const char *name, cell_error *err);
/* Host uid/gid of the map's root (0/0 for none). */
int stor_map_root(const struct idmap *map, uid_t *uid, gid_t *gid, cell_error *err);
bool stor_dir_is_empty(const char *path);

/* ---- dir.c ops that suit any driver whose volumes are directories of the
 * pool (btrfs subvolumes are: rename and stor_remove_tree handle them) ---- */
int stor_dir_pool_usage(struct stor_pool *p, uint64_t *used, uint64_t *total, cell_error *err);
int stor_dir_image_delete(struct stor_pool *p, const char *fp, cell_error *err);
int stor_dir_ct_delete(struct stor_pool *p, const char *name, cell_error *err);
int stor_dir_ct_rename(struct stor_pool *p, const char *oldname, const char *newname,
		       cell_error *err);
int stor_dir_snapshot_delete(struct stor_pool *p, const char *name, const char *snap,
			     cell_error *err);
int stor_dir_snapshot_rename(struct stor_pool *p, const char *name, const char *oldsnap,
			     const char *newsnap, cell_error *err);
int stor_dir_ct_usage(struct stor_pool *p, const char *name, uint64_t *used, cell_error *err);
int stor_dir_ct_shift(struct stor_pool *p, const char *name, const struct idmap *from,
		      const struct idmap *to, cell_error *err);

/* Block until no background spare copy runs for the pool at this path
 * (stor_pool_free calls it, so nothing writes into a pool after its handle
 * is gone). */
void stor_dir_wait_refills(const char *pool);

/* ---- copy.c: set of (dev, ino) for hard links and shifted inodes ---- */
struct stor_inode_set {
	struct stor_inode_slot {
		dev_t dev;
		ino_t ino;
		char *val;   /* copy: destination path relative to its root */
		bool used;
	} *slots;
	size_t n, cap;
};
/* Returns the slot for (dev, ino), inserting an empty one (used=true,
 * val=NULL) when new; *fresh tells which.  NULL on OOM. */
struct stor_inode_slot *stor_inode_set_get(struct stor_inode_set *s, dev_t dev, ino_t ino,
					   bool *fresh);
void stor_inode_set_free(struct stor_inode_set *s);

/* ---- shift.c: one inode's ids ---- */
/* uid/gid from `from`'s host view to `to`'s; unmapped ids become the
 * overflow id.  -ERANGE when even that cannot be mapped. */
int stor_remap_owner(const struct idmap *from, const struct idmap *to, uid_t uid, gid_t gid,
		     uid_t *nuid, gid_t *ngid);
/* Rewrite one xattr value in place for the remap when it carries ids.
 * `buf` holds `*len` bytes and has room for *len + 4.  Returns 0 (value
 * usable, maybe rewritten) or -errno. */
int stor_remap_xattr(const struct idmap *from, const struct idmap *to, const char *name,
		     char *buf, size_t *len);
bool stor_idmap_is_identity(const struct idmap *from, const struct idmap *to);

#endif
