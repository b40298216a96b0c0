/*
 * The local image store: $CELL_DIR/images/<fingerprint> (the unified
 * tarball, or the metadata tarball of a split image) and
 * $CELL_DIR/images/<fingerprint>.rootfs (a split image's rootfs tarball or
 * squashfs), described by the images tables (db_images.h).
 *
 * Order of changes, so that a crash leaves the old or the new state:
 *   add:    write under images/tmp/ -> rename into place -> insert the row
 *   delete: delete the row -> unlink the files
 * and img_store_init() reconciles at start-up: temporary files are removed,
 * files without a row are removed, rows whose files are missing or have
 * the wrong size are dropped (with a warning).
 *
 * Nothing here runs on the loop thread unless it says so: these calls do
 * file I/O and belong in operations (workers).
 */
#ifndef CELL_DAEMON_IMAGES_H
#define CELL_DAEMON_IMAGES_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "common/error.h"
#include "common/idmap.h"
#include "daemon/db_images.h"
#include "daemon/image_meta.h"
#include "daemon/image_upload.h"

struct operation;

/* Loop thread, at start: directories, reconciliation, the expiry timer. */
int img_store_init(cell_error *err);
void img_store_shutdown(void);

/* Paths (caller frees). */
char *img_path(const char *fp);          /* $CELL_DIR/images/<fp> */
char *img_rootfs_path(const char *fp);   /* $CELL_DIR/images/<fp>.rootfs */
char *img_tmp_dir(void);                 /* $CELL_DIR/images/tmp */

/*
 * What `source: {type: image, ...}` names, as LXD resolves it: an alias
 * (exact name), else a fingerprint (a unique prefix is accepted; ambiguous
 * is a 400), else the newest image whose properties include every given
 * key/value (`properties: {os: busybox}`).  404 "Image not found" / "Image
 * alias not found" otherwise.  public_only for untrusted callers.
 */
struct img_source {
	const char *alias;
	const char *fingerprint;
	json_t *properties;        /* object of strings, may be NULL */
};
int img_resolve(const struct img_source *src, bool public_only, struct img_record *out,
		cell_error *err);

/* A container was created from fp now: last_used_at (cache expiry). */
int img_mark_used(const char *fp, cell_error *err);

/* metadata.yaml of a stored image (its templates for image_templates_apply). */
int img_read_meta(const struct img_record *r, struct image_meta *out, cell_error *err);

/*
 * Unpack a stored image: its rootfs into rootfs_dir (an existing empty
 * directory; ownership shifted through idmap, NULL for none) and, when
 * templates_dir is not NULL, its templates/ there.  Unified tarballs,
 * split tarballs and squashfs rootfs alike.  With op, progress goes to its
 * metadata as LXD's create_instance_from_image_unpack ("Unpack: 42%
 * (12.3MB/s)") and a cancelled op stops the unpack.  On failure the
 * directories hold partial trees: removing them is the caller's job.
 */
int img_unpack(const struct img_record *r, const char *rootfs_dir, const char *templates_dir,
	       const struct idmap *idmap, struct operation *op, cell_error *err);

/*
 * Bring a received image (img_upload_wait's result: temporary files,
 * fingerprint, scan) into the store: metadata.yaml parsed, the expected
 * fingerprint (X-LXD-fingerprint) checked, then files renamed and the row
 * inserted with `req` (public, filename, properties overrides, aliases,
 * cached, auto_update, update_source).  Conflicts ("Image with same
 * fingerprint already exists", "Alias already exists: x") are 409s.  On
 * any failure nothing stays behind: temporary files are removed.  *out
 * receives the stored record when not NULL.
 */
struct img_commit_req {
	const char *expected_fp;   /* "" or NULL: not checked */
	const char *filename;      /* NULL: from the upload (multipart) or "" */
	bool public, auto_update, cached;
	json_t *properties;        /* merged over metadata.yaml's; may be NULL */
	json_t *aliases;           /* [{name, description}], may be NULL */
	json_t *update_source;     /* may be NULL */
};
int img_commit(struct img_upload_result *up, const struct img_commit_req *req, struct img_record *out,
	       cell_error *err);

/* Remove an image: row (and aliases) first, then the files.  404 when unknown. */
int img_delete(const char *fp, cell_error *err);

/* Delete cached images unused for images.remote_cache_expiry days (0:
 * never, as LXD).  Returns how many were deleted. */
int img_prune_expired(cell_error *err);

/* Called (worker thread) after an image left the store, so storage pools
 * can drop what they cached from it (unpacked trees, spares). */
typedef void (*img_deleted_fn)(const char *fp);
void img_set_delete_hook(img_deleted_fn fn);

/*
 * Publish a directory tree as a new image (POST /1.0/images with source
 * type instance/container/snapshot, through the resolver below, or any
 * caller holding a rootfs): one unified tarball (metadata.yaml, rootfs/,
 * templates/) written through tar_writer with ids unshifted to the
 * container's view, hashed while it is written (no second pass), then
 * committed as above.  Progress as LXD's create_image_from_container_pack.
 */
struct img_publish_args {
	const char *rootfs_dir;        /* host path of the tree to pack */
	const char *templates_dir;     /* optional templates/ to include */
	const struct idmap *unshift;   /* host -> container ids; NULL or empty for none */
	const char *architecture;      /* LXD name ("x86_64") */
	json_t *properties;            /* metadata.yaml properties (borrowed), may be NULL */
	json_t *templates;             /* metadata.yaml templates (borrowed), may be NULL */
	int64_t expiry_date;           /* unix seconds, 0 for none */
	const char *compression;       /* NULL: "gzip" (LXD's default); "none", "xz", "zstd", ... */
	struct img_commit_req commit;  /* public, filename, aliases, ... */
	struct operation *op;          /* progress and cancellation, may be NULL */
};
int img_publish_dir(const struct img_publish_args *a, struct img_record *out, cell_error *err);

/*
 * The instances code tells the store how to find what to publish: called
 * on a worker with "c1" or "c1/snap0"; fills the tree to pack (and may
 * freeze or mount what it needs until release() is called).
 */
struct img_instance_tree {
	char *rootfs_dir;
	char *templates_dir;           /* NULL when none */
	struct idmap unshift;
	char *architecture;
	json_t *properties;            /* the image's properties to keep (may be NULL) */
	json_t *templates;             /* metadata.yaml templates (may be NULL) */
	void (*release)(struct img_instance_tree *t);
	void *priv;
};
typedef int (*img_instance_resolver)(const char *name, struct img_instance_tree *out, cell_error *err);
void img_set_instance_resolver(img_instance_resolver fn);
img_instance_resolver img_get_instance_resolver(void);
void img_instance_tree_free(struct img_instance_tree *t);

/* LXD's progress metadata: metadata.progress {stage, percent, processed,
 * speed} and metadata.<stage>_progress "<prefix>: 42% (12.3MB/s)". */
void img_op_progress(struct operation *op, const char *stage, const char *prefix, int64_t percent,
		     int64_t processed, int64_t speed);
/* LXD's GetByteSizeString: 12.3MB (decimal units, precision 2). */
void img_bytes_string(int64_t n, char out[32]);

#endif
