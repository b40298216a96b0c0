/*
 * Validation of an image before it enters the store: every entry of the
 * tarball is looked at (without writing anything), so an image that could
 * not be unpacked safely is refused at import with a 400 instead of failing
 * (or worse) when a container is created from it.
 *
 * Refused: entry names that are absolute or contain "..", hard links whose
 * target is absolute, contains "..", or lies outside rootfs/, block devices
 * and character devices other than the standard harmless set (null, zero,
 * full, random, urandom, tty, console, ptmx, and 0:0 overlay whiteouts),
 * a rootfs that would unpack to more bytes (or files) than the file system
 * holding the image store has free (zip bombs), a truncated or corrupt
 * archive, a missing or invalid metadata.yaml, and virtual-machine images.
 *
 * The archive is read through a source (read + skip callbacks) so the scan
 * can follow an upload while it is being written, with no second pass.
 */
#ifndef CELL_DAEMON_IMAGE_SCAN_H
#define CELL_DAEMON_IMAGE_SCAN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "daemon/image_meta.h"

enum img_scan_kind {
	IMG_SCAN_UNIFIED,   /* metadata.yaml + rootfs/ + templates/ */
	IMG_SCAN_META,      /* split image: the metadata tarball */
	IMG_SCAN_ROOTFS,    /* split image: the rootfs tarball (entries are the rootfs) */
};

struct img_scan_src {
	/* Next bytes (pointer into the source's own buffer, valid until the
	 * next call): > 0, 0 at the end, < 0 (-errno) on error. */
	ssize_t (*read)(void *data, const void **buf);
	/* Skip forward up to n bytes; returns how many were skipped. */
	int64_t (*skip)(void *data, int64_t n);
	void *data;
};

struct img_scan_opts {
	uint64_t max_bytes;      /* unpacked regular-file bytes allowed */
	uint64_t max_entries;    /* entries allowed */
	/* Called about once per MiB of archive read; non-zero cancels. */
	int (*progress)(void *data, uint64_t bytes_in);
	void *progress_data;
};

struct img_scan_result {
	bool has_meta, has_rootfs;
	char *meta_yaml;         /* metadata.yaml text (unified and META scans) */
	size_t meta_len;
	char compression[16];    /* "gzip", "xz", "none", ..., as tar_detect_compression */
	uint64_t bytes, entries; /* what the rootfs (and templates) unpack to */
};

void img_scan_result_free(struct img_scan_result *r);

/* Scan a tar archive (any compression libarchive reads). */
int img_scan_archive(const struct img_scan_src *src, enum img_scan_kind kind,
		     const struct img_scan_opts *o, struct img_scan_result *res, cell_error *err);
/* The same on a file. */
int img_scan_file(const char *path, enum img_scan_kind kind, const struct img_scan_opts *o,
		  struct img_scan_result *res, cell_error *err);
/* A squashfs rootfs (split images), through `unsquashfs -lln`. */
int img_scan_squashfs(const char *path, const struct img_scan_opts *o, struct img_scan_result *res,
		      cell_error *err);
/* Limits from the free space (and inodes) of the file system holding dir. */
int img_scan_limits_for(const char *dir, struct img_scan_opts *o, cell_error *err);

/* Is this character device one an image may carry? */
bool img_scan_device_allowed(bool block, unsigned major, unsigned minor);

#endif
