/*
 * The image store's tables (migration 3 in db.c): images, images_properties
 * and images_aliases.  Pure database access; the files and the rules (what
 * may be stored, in which order) live in images.c.
 *
 * Errors follow LXD's wording: "Image not found" and "Image alias not found"
 * are 404, a fingerprint prefix matching several images is a 400 "More than
 * one image matches", an alias name taken is a 409.
 */
#ifndef CELL_DAEMON_DB_IMAGES_H
#define CELL_DAEMON_DB_IMAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/image.h"
#include "common/error.h"

/* One stored image: its API object plus what only the daemon needs. */
struct img_record {
	int64_t id;
	struct api_image api;   /* fingerprint, size, properties, aliases, times, ... */
	bool split;             /* rootfs in <fp>.rootfs, metadata tarball in <fp> */
	int64_t meta_size;      /* size of the <fp> file (the whole image when unified) */
};

void img_record_clear(struct img_record *r);
void img_record_list_free(struct img_record *v, size_t n);
static inline void img_record_clearp(struct img_record *r) { img_record_clear(r); }
#define _cleanup_img_record_ __attribute__((cleanup(img_record_clearp)))

/* Every image (only public ones when public_only), sorted by fingerprint,
 * with properties and aliases. */
int db_image_list(struct img_record **out, size_t *n, bool public_only, cell_error *err);
/* Exact fingerprint or unique prefix. */
int db_image_get(const char *fp_prefix, bool public_only, struct img_record *out, cell_error *err);
/* 1 when an image with exactly this fingerprint exists, 0 when not. */
int db_image_exists(const char *fp, cell_error *err);
/* Insert r (fingerprint must be new: 409 otherwise) with its properties and
 * the aliases in r->api.aliases (each a new name: 409 otherwise), in one
 * transaction; r->id is set. */
int db_image_insert(struct img_record *r, cell_error *err);
/* Store the writable part (public, auto_update, properties, expires_at,
 * profiles) of r, found by r->api.fingerprint. */
int db_image_update(const struct img_record *r, cell_error *err);
/* Remove the row, its properties and aliases (404 when unknown). */
int db_image_delete(const char *fp, cell_error *err);
int db_image_set_last_used(const char *fp, const struct timespec *when, cell_error *err);
/* Cached images unused (last_used_at, else uploaded_at) since before
 * `before_ns`, as LXD prunes them (expires_at is informational, as in LXD):
 * fingerprints (NULL-terminated, caller frees with cell_strvfreep). */
int db_image_expired(int64_t before_ns, char ***out, cell_error *err);
/* Every stored fingerprint with its sizes (reconciliation at start-up). */
struct db_image_files {
	char fingerprint[65];
	bool split;
	int64_t size, meta_size;
};
int db_image_files(struct db_image_files **out, size_t *n, cell_error *err);

/* ---- aliases (api_image_alias with target = full fingerprint) ---------- */
void db_alias_list_free(struct api_image_alias *v, size_t n);
/* Sorted by name; public_only keeps aliases of public images. */
int db_alias_list(struct api_image_alias **out, size_t *n, bool public_only, cell_error *err);
int db_alias_get(const char *name, bool public_only, struct api_image_alias *out, cell_error *err);
/* target: a fingerprint or unique prefix (404/400 as db_image_get). */
int db_alias_add(const char *name, const char *target, const char *description, cell_error *err);
int db_alias_update(const char *name, const char *target, const char *description, cell_error *err);
/* 409 when new_name exists, 404 when name does not. */
int db_alias_rename(const char *name, const char *new_name, cell_error *err);
int db_alias_delete(const char *name, cell_error *err);

/* The images with these ids (those that exist), sorted by fingerprint,
 * with properties and aliases: what a reader of the change feed re-reads. */
int db_image_list_ids(const int64_t *ids, size_t n_ids, struct img_record **out, size_t *n,
		      cell_error *err);

/*
 * Change feed, for readers that cache what they built from the tables.
 * Temporary triggers on the connection (installed by db_images_watch at
 * start-up, else by the first db_images_changes) record the id of every
 * image whose row, properties or aliases are written, by whichever code
 * writes them: the functions above, a profile rename rewriting
 * images.profiles, the testing hooks, start-up reconciliation.  Each
 * write moves the generation before its transaction commits, so a reader
 * that saw the generation unmoved has nothing to re-read.  A new
 * connection (db_close, db_open) makes every reader re-read everything.
 */
uint64_t db_images_generation(void);   /* any thread, lock-free */

/* The feed remembers this many writes: a reader further behind re-reads
 * everything. */
#define DB_IMAGES_DELTA_MAX 256
struct db_images_delta {
	uint64_t gen;        /* the generation the reader is at after applying this */
	bool all;            /* too many or unknown changes: re-read every image */
	size_t n;
	int64_t ids[DB_IMAGES_DELTA_MAX];   /* distinct; rows may be gone (deleted) */
};
/* What changed since generation `since` (0: never read).  Call with the db
 * lock held (db_lock), outside a transaction, and re-read before releasing
 * it, so no write slips between the feed and the rows.  A reader at gen 0
 * always gets all. */
void db_images_changes(uint64_t since, struct db_images_delta *out);
/* Every reader re-reads everything (repairs, tests). */
void db_images_touch(void);
/* Install the triggers now (start-up: ~0.3 ms the first list need not
 * pay); the first db_images_changes does it otherwise. */
void db_images_watch(void);

/* Unix nanoseconds <-> timespec, 0 <-> Go's zero time {0, 0}. */
int64_t img_ts_to_ns(const struct timespec *ts);
struct timespec img_ns_to_ts(int64_t ns);

#endif
