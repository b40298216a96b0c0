#include "daemon/image_upload.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/util.h"
#include "common/multipart.h"

#define UP_SCAN_BUF (1024 * 1024)
#define UP_MAX_PARTS 2

struct up_block {
	struct up_block *next;
	size_t len;
	unsigned char data[];
};

struct up_part {
	struct img_upload *u;
	int fd;
	char *path;
	char *filename;
	enum img_scan_kind kind;
	uint64_t written;          /* lock */
	bool done;                 /* lock: no more data will come */
	bool has_scanner;
	pthread_t scanner;
	int scan_rc;
	cell_error scan_err;
	struct img_scan_result scan;
	bool squashfs;
	atomic_uint_fast64_t scanned;
	/* the scanner's tail reader */
	uint64_t off;
	char *buf;
};

struct img_upload {
	pthread_mutex_t lock;
	pthread_cond_t cond_writer;   /* queue grew or closed */
	pthread_cond_t cond_data;     /* a part grew, ended, or the upload failed */
	pthread_cond_t cond_space;    /* the queue drained (blocking producers) */
	pthread_cond_t cond_done;     /* a thread finished */
	struct up_block *head, *tail;
	size_t queued;
	bool closed, complete, paused;
	bool failed;
	cell_error fail_err;
	int fail_rc;
	int running;                  /* writer + scanners still going */
	bool writer_started, waited, taken;
	pthread_t writer;
	struct img_upload_opts o;
	char *tmpdir;
	char *base;                   /* tmpdir/<uuid> */
	struct sha256_ctx sha;
	struct mp_parser *mp;
	struct up_part parts[UP_MAX_PARTS];
	int nparts;
	atomic_uint_fast64_t received;
	struct img_scan_opts limits;
	char fingerprint[65];
};

char *img_tmp_path(const char *tmpdir, const char *suffix)
{
	char id[37];

	util_uuid(id);
	return xasprintf("%s/%s%s", tmpdir, id, suffix ? suffix : "");
}

/* First error wins; everyone waiting is woken so they can give up. */
static void up_fail(struct img_upload *u, int rc, const cell_error *err)
{
	pthread_mutex_lock(&u->lock);
	if (!u->failed) {
		u->failed = true;
		u->fail_rc = rc < 0 ? rc : -EIO;
		u->fail_err = *err;
	}
	pthread_cond_broadcast(&u->cond_data);
	pthread_cond_broadcast(&u->cond_space);
	pthread_cond_broadcast(&u->cond_writer);
	pthread_mutex_unlock(&u->lock);
}

static bool up_failed(struct img_upload *u)
{
	bool f;
	pthread_mutex_lock(&u->lock);
	f = u->failed;
	pthread_mutex_unlock(&u->lock);
	return f;
}

static void up_thread_exit(struct img_upload *u)
{
	pthread_mutex_lock(&u->lock);
	u->running--;
	pthread_cond_broadcast(&u->cond_done);
	pthread_mutex_unlock(&u->lock);
}

/* ---- scanner threads: follow a part file as it grows ------------------------ */

static ssize_t tail_read(void *data, const void **buf)
{
	struct up_part *p = data;
	struct img_upload *u = p->u;
	uint64_t avail;
	ssize_t n;

	pthread_mutex_lock(&u->lock);
	while (p->written <= p->off && !p->done && !u->failed)
		pthread_cond_wait(&u->cond_data, &u->lock);
	if (u->failed && p->written <= p->off) {
		pthread_mutex_unlock(&u->lock);
		return -ECANCELED;
	}
	avail = p->written > p->off ? p->written - p->off : 0;
	pthread_mutex_unlock(&u->lock);
	if (!avail)
		return 0;
	n = pread(p->fd, p->buf, avail < UP_SCAN_BUF ? (size_t)avail : UP_SCAN_BUF, (off_t)p->off);
	if (n < 0)
		return -errno;
	p->off += (uint64_t)n;
	atomic_store(&p->scanned, p->off);
	*buf = p->buf;
	return n;
}

static int64_t tail_skip(void *data, int64_t n)
{
	struct up_part *p = data;
	struct img_upload *u = p->u;

	/* Claim only bytes that exist: a skip past the end would hide a
	 * truncated archive (libarchive takes EOF at a header as the end). */
	pthread_mutex_lock(&u->lock);
	while (p->written < p->off + (uint64_t)n && !p->done && !u->failed)
		pthread_cond_wait(&u->cond_data, &u->lock);
	if (p->off + (uint64_t)n > p->written)
		n = p->written > p->off ? (int64_t)(p->written - p->off) : 0;
	pthread_mutex_unlock(&u->lock);
	p->off += (uint64_t)n;
	return n;
}

static int scan_progress(void *data, uint64_t in)
{
	struct up_part *p = data;
	return up_failed(p->u) ? 1 : 0;
}

/* A squashfs rootfs cannot be read as a stream: spot it by its magic and
 * leave it to img_scan_squashfs once complete. */
static bool part_is_squashfs(struct up_part *p)
{
	const void *b;
	ssize_t n;
	size_t have = 0;
	unsigned char head[4];

	while (have < sizeof(head) && (n = tail_read(p, &b)) > 0) {
		size_t take = (size_t)n < sizeof(head) - have ? (size_t)n : sizeof(head) - have;
		memcpy(head + have, b, take);
		have += take;
		/* give the rest back: the archive scan rereads from the start */
	}
	p->off = 0;
	return have == sizeof(head) && !memcmp(head, "hsqs", 4);
}

static void *scanner_main(void *arg)
{
	struct up_part *p = arg;
	struct img_upload *u = p->u;
	struct img_scan_src src = { tail_read, tail_skip, p };
	struct img_scan_opts o = u->limits;

	o.progress = scan_progress;
	o.progress_data = p;
	if (p->kind == IMG_SCAN_ROOTFS && part_is_squashfs(p)) {
		p->squashfs = true;
		p->scan_rc = 0;
	} else {
		p->scan_rc = img_scan_archive(&src, p->kind, &o, &p->scan, &p->scan_err);
	}
	/* Our own cancellation echo is not the error to report. */
	if (p->scan_rc < 0 && !(p->scan_rc == -ECANCELED && up_failed(u)))
		up_fail(u, p->scan_rc, &p->scan_err);
	up_thread_exit(u);
	return NULL;
}

static int part_open(struct img_upload *u, enum img_scan_kind kind, const char *suffix,
		     const char *filename, cell_error *err)
{
	struct up_part *p = &u->parts[u->nparts];
	int rc;

	*p = (struct up_part){ .u = u, .fd = -1, .kind = kind };
	p->path = xasprintf("%s%s", u->base, suffix);
	p->filename = strdup(filename ? filename : "");
	p->buf = malloc(UP_SCAN_BUF);
	if (!p->path || !p->filename || !p->buf)
		goto oom;
	p->fd = open(p->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (p->fd < 0) {
		rc = cell_err_sys(err, 500, errno, "create %s", p->path);
		free(p->path);
		p->path = NULL;
		return rc;
	}
	u->nparts++;
	pthread_mutex_lock(&u->lock);
	u->running++;
	pthread_mutex_unlock(&u->lock);
	rc = pthread_create(&p->scanner, NULL, scanner_main, p);
	if (rc) {
		up_thread_exit(u);
		return cell_err_sys(err, 500, rc, "start the image scanner");
	}
	p->has_scanner = true;
	return 0;
oom:
	free(p->path);
	free(p->filename);
	free(p->buf);
	*p = (struct up_part){ .fd = -1 };
	return cell_err(err, 500, ENOMEM, "out of memory");
}

static void part_end(struct img_upload *u, struct up_part *p)
{
	pthread_mutex_lock(&u->lock);
	p->done = true;
	pthread_cond_broadcast(&u->cond_data);
	pthread_mutex_unlock(&u->lock);
}

/* ---- the writer thread --------------------------------------------------------- */

static int part_write(struct img_upload *u, struct up_part *p, const void *buf, size_t len,
		      cell_error *err)
{
	const char *b = buf;
	size_t left = len;

	if (sha256_update(&u->sha, buf, len) < 0)
		return cell_err(err, 500, EIO, "SHA-256 failed");
	while (left) {
		ssize_t n = write(p->fd, b, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return cell_err_sys(err, errno == ENOSPC || errno == EDQUOT ? 507 : 500, errno,
					    "write image to %s", u->tmpdir);
		b += n;
		left -= (size_t)n;
	}
	pthread_mutex_lock(&u->lock);
	p->written += len;
	pthread_cond_broadcast(&u->cond_data);
	pthread_mutex_unlock(&u->lock);
	return 0;
}

static int mp_part_begin(void *data, const char *name, const char *filename, cell_error *err)
{
	struct img_upload *u = data;

	if (u->nparts == 0 && strcmp(name, "metadata"))
		return cell_err(err, 400, EINVAL, "Invalid multipart image: the first part must be \"metadata\"");
	if (u->nparts == 1 && !strcmp(name, "rootfs.img"))
		return cell_err(err, 400, ENOTSUP, "Virtual machine images are not supported");
	if (u->nparts == 1 && strcmp(name, "rootfs"))
		return cell_err(err, 400, EINVAL, "Invalid multipart image: the second part must be \"rootfs\"");
	if (u->nparts >= UP_MAX_PARTS)
		return cell_err(err, 400, EINVAL, "Invalid multipart image: more than two parts");
	return part_open(u, u->nparts ? IMG_SCAN_ROOTFS : IMG_SCAN_META, u->nparts ? ".rootfs" : "",
			 filename, err);
}

static int mp_part_data(void *data, const void *buf, size_t len, cell_error *err)
{
	struct img_upload *u = data;
	return part_write(u, &u->parts[u->nparts - 1], buf, len, err);
}

static int mp_part_end(void *data, cell_error *err)
{
	struct img_upload *u = data;
	part_end(u, &u->parts[u->nparts - 1]);
	return 0;
}

static const struct mp_callbacks up_mp_cb = { mp_part_begin, mp_part_data, mp_part_end };

static int writer_block(struct img_upload *u, const struct up_block *b, cell_error *err)
{
	atomic_fetch_add(&u->received, b->len);
	if (u->mp)
		return mp_feed(u->mp, b->data, b->len, err);
	return part_write(u, &u->parts[0], b->data, b->len, err);
}

static int writer_finish(struct img_upload *u, cell_error *err)
{
	int rc;

	if (u->mp) {
		if ((rc = mp_finish(u->mp, err)) < 0)
			return rc;
		if (u->nparts != 2)
			return cell_err(err, 400, EINVAL, "Invalid multipart image: expected \"metadata\" and \"rootfs\" parts");
	} else if (!atomic_load(&u->received)) {
		return cell_err(err, 400, EINVAL, "Empty image upload");
	}
	if (sha256_final_hex(&u->sha, u->fingerprint) < 0)
		return cell_err(err, 500, EIO, "SHA-256 failed");
	return 0;
}

static void *writer_main(void *arg)
{
	struct img_upload *u = arg;
	cell_error err = { 0 };
	bool complete;
	int rc;

	pthread_mutex_lock(&u->lock);
	for (;;) {
		struct up_block *b;
		bool drained = false;

		while (!u->head && !u->closed)
			pthread_cond_wait(&u->cond_writer, &u->lock);
		if (!u->head)
			break;
		b = u->head;
		u->head = b->next;
		if (!u->head)
			u->tail = NULL;
		u->queued -= b->len;
		if (u->paused && u->queued <= IMG_UPLOAD_LOW) {
			u->paused = false;
			drained = true;
		}
		pthread_cond_broadcast(&u->cond_space);
		pthread_mutex_unlock(&u->lock);
		if (drained && u->o.on_drain)
			u->o.on_drain(u->o.cb_data);
		/* After a failure the rest is read and dropped (the client is still sending). */
		if (!up_failed(u) && (rc = writer_block(u, b, &err)) < 0)
			up_fail(u, rc, &err);
		free(b);
		pthread_mutex_lock(&u->lock);
	}
	complete = u->complete;
	pthread_mutex_unlock(&u->lock);
	if (!complete) {
		cell_err(&err, 400, ECONNABORTED, "The image upload was interrupted");
		up_fail(u, -ECONNABORTED, &err);
	} else if (!up_failed(u) && (rc = writer_finish(u, &err)) < 0) {
		up_fail(u, rc, &err);
	}
	for (int i = 0; i < u->nparts; i++)
		part_end(u, &u->parts[i]);
	up_thread_exit(u);
	return NULL;
}

/* ---- the producer side ----------------------------------------------------------- */

int img_upload_new(const struct img_upload_opts *o, struct img_upload **out, cell_error *err)
{
	struct img_upload *u = calloc(1, sizeof(*u));
	int rc;

	*out = NULL;
	if (!u)
		return cell_err(err, 500, ENOMEM, "out of memory");
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->cond_writer, NULL);
	pthread_cond_init(&u->cond_data, NULL);
	pthread_cond_init(&u->cond_space, NULL);
	pthread_cond_init(&u->cond_done, NULL);
	u->o = *o;
	u->o.boundary = NULL;
	u->tmpdir = strdup(o->tmpdir);
	u->base = u->tmpdir ? img_tmp_path(o->tmpdir, NULL) : NULL;
	if (!u->base) {
		img_upload_free(u);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	if ((rc = img_scan_limits_for(o->tmpdir, &u->limits, err)) < 0 ||
	    (rc = sha256_init(&u->sha)) < 0 ||
	    (o->boundary && (rc = mp_new(o->boundary, &up_mp_cb, u, &u->mp, err)) < 0) ||
	    (!o->boundary && (rc = part_open(u, IMG_SCAN_UNIFIED, "", NULL, err)) < 0)) {
		if (rc == -ENOMEM && !err->msg[0])
			cell_err(err, 500, ENOMEM, "out of memory");
		img_upload_close(u, false);
		img_upload_free(u);
		return rc;
	}
	u->running++;
	rc = pthread_create(&u->writer, NULL, writer_main, u);
	if (rc) {
		u->running--;
		img_upload_close(u, false);
		img_upload_free(u);
		return cell_err_sys(err, 500, rc, "start the image writer");
	}
	u->writer_started = true;
	*out = u;
	return 0;
}

int img_upload_push(struct img_upload *u, const void *buf, size_t len, cell_error *err)
{
	struct up_block *b;
	bool pause = false;

	if (!len)
		return 0;
	b = malloc(sizeof(*b) + len);
	if (!b)
		return cell_err(err, 500, ENOMEM, "out of memory");
	b->next = NULL;
	b->len = len;
	memcpy(b->data, buf, len);
	pthread_mutex_lock(&u->lock);
	while (!u->o.pause && u->queued > IMG_UPLOAD_HIGH && !u->failed)
		pthread_cond_wait(&u->cond_space, &u->lock);
	if (u->failed) {
		*err = u->fail_err;
		pthread_mutex_unlock(&u->lock);
		free(b);
		return u->fail_rc;
	}
	if (u->tail)
		u->tail->next = b;
	else
		u->head = b;
	u->tail = b;
	u->queued += len;
	if (u->o.pause && !u->paused && u->queued > IMG_UPLOAD_HIGH)
		pause = u->paused = true;
	pthread_cond_signal(&u->cond_writer);
	pthread_mutex_unlock(&u->lock);
	if (pause)
		u->o.pause(u->o.cb_data);
	return 0;
}

int img_upload_status(struct img_upload *u, cell_error *err)
{
	int rc = 0;

	pthread_mutex_lock(&u->lock);
	if (u->failed) {
		*err = u->fail_err;
		rc = u->fail_rc;
	}
	pthread_mutex_unlock(&u->lock);
	return rc;
}

void img_upload_close(struct img_upload *u, bool complete)
{
	pthread_mutex_lock(&u->lock);
	if (!u->closed) {
		u->closed = true;
		u->complete = complete;
	}
	pthread_cond_broadcast(&u->cond_writer);
	pthread_mutex_unlock(&u->lock);
	if (!complete) {
		cell_error e;
		cell_err(&e, 400, ECONNABORTED, "The image upload was interrupted");
		up_fail(u, -ECONNABORTED, &e);
	}
}

/* ---- the consumer ------------------------------------------------------------------ */

void img_upload_result_free(struct img_upload_result *r)
{
	if (!r)
		return;
	free(r->meta_path);
	free(r->rootfs_path);
	free(r->meta_filename);
	free(r->rootfs_filename);
	img_scan_result_free(&r->scan);
	memset(r, 0, sizeof(*r));
}

static void join_all(struct img_upload *u)
{
	if (u->writer_started) {
		pthread_join(u->writer, NULL);
		u->writer_started = false;
	}
	for (int i = 0; i < u->nparts; i++)
		if (u->parts[i].has_scanner) {
			pthread_join(u->parts[i].scanner, NULL);
			u->parts[i].has_scanner = false;
		}
}

static uint64_t scanned_total(struct img_upload *u)
{
	uint64_t s = 0;
	for (int i = 0; i < u->nparts; i++)
		s += atomic_load(&u->parts[i].scanned);
	return s;
}

static int collect(struct img_upload *u, struct img_upload_result *res, cell_error *err)
{
	struct up_part *meta = &u->parts[0], *rootfs = u->nparts > 1 ? &u->parts[1] : NULL;

	memset(res, 0, sizeof(*res));
	memcpy(res->fingerprint, u->fingerprint, sizeof(res->fingerprint));
	res->size = atomic_load(&u->received);
	res->split = rootfs != NULL;
	res->meta_size = meta->written;
	res->meta_path = strdup(meta->path);
	res->meta_filename = strdup(meta->filename);
	if (rootfs) {
		res->rootfs_path = strdup(rootfs->path);
		res->rootfs_filename = strdup(rootfs->filename);
		res->squashfs = rootfs->squashfs;
		res->size = meta->written + rootfs->written;
	}
	if (!res->meta_path || !res->meta_filename ||
	    (rootfs && (!res->rootfs_path || !res->rootfs_filename))) {
		img_upload_result_free(res);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	res->scan = meta->scan;
	memset(&meta->scan, 0, sizeof(meta->scan));
	if (rootfs) {
		res->scan.bytes += rootfs->scan.bytes;
		res->scan.entries += rootfs->scan.entries;
		res->scan.has_rootfs = true;
		snprintf(res->scan.compression, sizeof(res->scan.compression), "%s",
			 rootfs->squashfs ? "squashfs" : rootfs->scan.compression);
	}
	u->taken = true;
	return 0;
}

int img_upload_wait(struct img_upload *u, img_upload_progress_fn progress, void *pdata,
		    struct img_upload_result *res, cell_error *err)
{
	memset(res, 0, sizeof(*res));
	pthread_mutex_lock(&u->lock);
	while (u->running > 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&u->cond_done, &u->lock, &ts);
		if (u->running > 0 && progress) {
			uint64_t rcv = atomic_load(&u->received), sc;
			pthread_mutex_unlock(&u->lock);
			sc = scanned_total(u);
			if (progress(pdata, rcv, sc, u->o.expected)) {
				cell_error e;
				cell_err(&e, 400, ECANCELED, "Operation cancelled");
				up_fail(u, -ECANCELED, &e);
			}
			pthread_mutex_lock(&u->lock);
		}
	}
	pthread_mutex_unlock(&u->lock);
	join_all(u);
	u->waited = true;
	if (u->failed) {
		*err = u->fail_err;
		return u->fail_rc;
	}
	return collect(u, res, err);
}

void img_upload_free(struct img_upload *u)
{
	struct up_block *b;

	if (!u)
		return;
	if (!u->waited) {
		cell_error e;
		cell_err(&e, 400, ECANCELED, "The image upload was abandoned");
		pthread_mutex_lock(&u->lock);
		u->closed = true;
		pthread_mutex_unlock(&u->lock);
		up_fail(u, -ECANCELED, &e);
		join_all(u);
	}
	while ((b = u->head)) {
		u->head = b->next;
		free(b);
	}
	for (int i = 0; i < u->nparts; i++) {
		struct up_part *p = &u->parts[i];
		if (p->fd >= 0)
			close(p->fd);
		if (p->path && !u->taken)
			unlink(p->path);
		free(p->path);
		free(p->filename);
		free(p->buf);
		img_scan_result_free(&p->scan);
	}
	mp_free(u->mp);
	sha256_free(&u->sha);
	free(u->tmpdir);
	free(u->base);
	pthread_cond_destroy(&u->cond_writer);
	pthread_cond_destroy(&u->cond_data);
	pthread_cond_destroy(&u->cond_space);
	pthread_cond_destroy(&u->cond_done);
	pthread_mutex_destroy(&u->lock);
	free(u);
}
