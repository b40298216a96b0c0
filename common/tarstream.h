/*
 * Tarballs and squashfs images in and out of directory trees (libarchive;
 * unsquashfs as LXD does).  Unpacking is meant for untrusted images landing
 * in a container rootfs: it runs in a helper thread whose root and cwd are
 * the target (unshare(CLONE_FS) + chroot), on top of libarchive's
 * secure-extraction flags, so no entry, link or symlink can reach outside.
 */
#ifndef CELL_COMMON_TARSTREAM_H
#define CELL_COMMON_TARSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/idmap.h"

struct tar_unpack_opts {
	const char *strip_prefix;   /* e.g. "rootfs/": only entries under it, prefix removed; NULL = all */
	const struct idmap *idmap;  /* shift ownership while writing; NULL = keep */
	/* Called from the unpack thread about once per MiB read; non-zero cancels.
	 * bytes_in counts archive (compressed) bytes; total is the archive size, 0 if unknown. */
	int (*progress)(void *data, uint64_t bytes_in, uint64_t total);
	void *progress_data;
	uint64_t max_bytes;         /* refuse to write more than this (zip bombs); 0 = free space of target fs */
};

/* Unpack a tar (none/gzip/bzip2/xz/lzma/zstd/lz4/lzip) read from fd, which may
 * be a pipe, into the existing directory target_dir.  Errors name the entry.
 * On failure target_dir holds a partial tree: removing it is the caller's job. */
int tar_unpack_fd(int fd, const char *target_dir, const struct tar_unpack_opts *o, cell_error *err);
int tar_unpack_path(const char *archive, const char *target_dir, const struct tar_unpack_opts *o,
		    cell_error *err);

/* Read one regular-file member ("metadata.yaml"; a leading "./" in the archive
 * is ignored) into a NUL-terminated buffer.  -ENOENT if absent, -EFBIG if over max. */
int tar_read_member(const char *archive, const char *name, size_t max, char **out, size_t *len,
		    cell_error *err);

/* Write src_dir as a tar to out_fd, entries under `prefix` ("rootfs/"; NULL or
 * "" for none), ids moved back through `unshift` (host → container view; ids
 * outside the map become 65534 as the container sees them).  compression:
 * NULL/"none", "gzip", "bzip2", "xz", "lzma", "zstd", "lz4". */
int tar_create(int out_fd, const char *src_dir, const char *prefix, const struct idmap *unshift,
	       const char *compression, cell_error *err);

/* The same in pieces, for a unified image (metadata.yaml + templates/ + rootfs/). */
struct tar_writer;
int tar_writer_open(int out_fd, const char *compression, struct tar_writer **out, cell_error *err);
int tar_writer_add_tree(struct tar_writer *w, const char *src_dir, const char *prefix,
			const struct idmap *unshift, cell_error *err);
int tar_writer_add_data(struct tar_writer *w, const char *name, const void *data, size_t len,
			unsigned mode, cell_error *err);
/* Finishes the archive and frees w (also on error). */
int tar_writer_close(struct tar_writer *w, cell_error *err);
/* Abandons the archive (error paths); NULL is fine. */
void tar_writer_free(struct tar_writer *w);

/* Sniff a file's magic: "none" (plain tar), "gzip", "bzip2", "xz", "lzma",
 * "zstd", "lz4", "lzip" or "squashfs"; -EINVAL with a message for anything else. */
int tar_detect_compression(const char *path, const char **compression, cell_error *err);
/* File name extension LXD uses for a compression: ".tar.gz", ".squashfs", ... */
const char *tar_compression_ext(const char *compression);

/* Unpack a squashfs image with unsquashfs into target_dir (created if
 * missing), refusing images that would not fit the free space, then shift
 * ownership through idmap (NULL = keep). */
int squashfs_unpack(const char *path, const char *target_dir, const struct idmap *idmap,
		    cell_error *err);

/* Entry names: past any leading "./" (and the slashes after it); whether
 * a ".." component appears anywhere. */
const char *tar_name_skip_dot_slash(const char *p);
bool tar_name_has_dotdot(const char *p);

#endif
