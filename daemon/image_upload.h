/*
 * Receiving an image: bytes pushed by a producer (the HTTP body callbacks on
 * the loop thread, or a download) go through a bounded queue to a writer
 * thread that hashes them (SHA-256: the fingerprint) and writes them to
 * temporary files under $CELL_DIR/images/tmp; a multipart/form-data body is
 * split into its `metadata` and `rootfs` parts on the way.  While each file
 * grows, a scanner thread follows it and validates the archive
 * (image_scan.h), so when the last byte has arrived the fingerprint is known
 * and the validation is (nearly) done: the data is read once from the
 * network and once, from the page cache, by the scanner.
 *
 * The producer never blocks on the loop: when more than IMG_UPLOAD_HIGH
 * bytes wait, pause(true) asks it to stop reading, and once the writer has
 * drained the queue below IMG_UPLOAD_LOW, on_drain() (called from the
 * writer thread) tells it to resume.  A producer without a pause callback
 * (a download on a worker) blocks in img_upload_push instead.
 */
#ifndef CELL_DAEMON_IMAGE_UPLOAD_H
#define CELL_DAEMON_IMAGE_UPLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "daemon/image_scan.h"

#define IMG_UPLOAD_HIGH (16u << 20)
#define IMG_UPLOAD_LOW (4u << 20)

struct img_upload;

struct img_upload_opts {
	const char *tmpdir;          /* where the temporary files go (same fs as the store) */
	const char *boundary;        /* multipart/form-data boundary, or NULL for one file */
	uint64_t expected;           /* body length when known (progress), else 0 */
	/* Loop-thread producer: pause(true) when the queue is full (called
	 * from img_upload_push); on_drain() from the writer thread once it
	 * may resume.  Both NULL: img_upload_push blocks instead. */
	void (*pause)(void *data);
	void (*on_drain)(void *data);
	void *cb_data;
};

int img_upload_new(const struct img_upload_opts *o, struct img_upload **out, cell_error *err);
/* Queue a copy of buf.  Fails (with the writer's or scanner's error) once
 * the upload is known to be bad, so the producer may stop early. */
int img_upload_push(struct img_upload *u, const void *buf, size_t len, cell_error *err);
/* 0, or the error that already doomed this upload. */
int img_upload_status(struct img_upload *u, cell_error *err);
/* The producer is done: complete (eof) or not (the client went away). */
void img_upload_close(struct img_upload *u, bool complete);
/* Called about every 100 ms while img_upload_wait waits, from its thread:
 * bytes received and validated so far.  Non-zero cancels the upload. */
typedef int (*img_upload_progress_fn)(void *data, uint64_t received, uint64_t scanned,
				      uint64_t expected);

struct img_upload_result {
	char fingerprint[65];
	uint64_t size;               /* all parts */
	bool split;
	bool squashfs;               /* the rootfs part is a squashfs image */
	char *meta_path, *rootfs_path;   /* temporary files (rootfs_path NULL when unified) */
	uint64_t meta_size;
	char *meta_filename, *rootfs_filename;   /* from the multipart parts */
	struct img_scan_result scan;  /* metadata.yaml text, sizes, compression */
};

void img_upload_result_free(struct img_upload_result *r);

/* Worker thread: wait until the writer and scanners are done; the result's
 * temporary files then belong to the caller (rename or unlink them).  On
 * error the files are already removed. */
int img_upload_wait(struct img_upload *u, img_upload_progress_fn progress, void *pdata,
		    struct img_upload_result *res, cell_error *err);
/* Frees; stops the threads and removes the files if nobody took them.
 * Call after img_upload_close. */
void img_upload_free(struct img_upload *u);

/* The paths and fingerprint check helpers other producers (publish) share. */
char *img_tmp_path(const char *tmpdir, const char *suffix);

#endif
