#include "daemon/images.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/tarstream.h"
#include "common/util.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/events.h"
#include "daemon/operations.h"

#define IMG_PRUNE_INTERVAL_MS (3600 * 1000)

/* Serialises "does it exist? rename; insert" and deletes, so two imports
 * of one file end with one image and a delete never races a commit. */
static pthread_mutex_t img_lock = PTHREAD_MUTEX_INITIALIZER;
static img_instance_resolver img_resolver;
static img_deleted_fn img_delete_hook;
static uv_timer_t *img_prune_timer;

void img_set_instance_resolver(img_instance_resolver fn) { img_resolver = fn; }
img_instance_resolver img_get_instance_resolver(void) { return img_resolver; }
void img_set_delete_hook(img_deleted_fn fn) { img_delete_hook = fn; }

char *img_path(const char *fp) { return xasprintf("%s/images/%s", celld->dir, fp); }
char *img_rootfs_path(const char *fp) { return xasprintf("%s/images/%s.rootfs", celld->dir, fp); }
char *img_tmp_dir(void) { return xasprintf("%s/images/tmp", celld->dir); }

static int oom(cell_error *err) { return cell_err(err, 500, ENOMEM, "out of memory"); }

static void fp_url(const char *fp, char out[96]) { snprintf(out, 96, "/1.0/images/%s", fp); }

/* ---- progress, as LXD's shared.SetProgressMetadata ------------------------------ */

void img_bytes_string(int64_t n, char out[32])
{
	static const char *const units[] = { "kB", "MB", "GB", "TB", "PB", "EB" };
	double v = (double)n;

	if (n < 1000) {
		snprintf(out, 32, "%lldB", (long long)n);
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		v /= 1000;
		if (v < 1000 || i == ARRAY_SIZE(units) - 1) {
			snprintf(out, 32, "%.2f%s", v, units[i]);
			return;
		}
	}
}

void img_op_progress(struct operation *op, const char *stage, const char *prefix, int64_t percent,
		     int64_t processed, int64_t speed)
{
	char key[96], text[160], sp[32], pr[32], num[32];
	json_t *p;

	if (!op)
		return;
	img_bytes_string(speed, sp);
	p = json_pack("{s:s}", "stage", stage);
	if (processed > 0) {
		snprintf(num, sizeof(num), "%lld", (long long)processed);
		json_object_set_new(p, "processed", json_string(num));
	}
	if (percent > 0) {
		snprintf(num, sizeof(num), "%lld", (long long)percent);
		json_object_set_new(p, "percent", json_string(num));
	}
	snprintf(num, sizeof(num), "%lld", (long long)speed);
	json_object_set_new(p, "speed", json_string(num));
	op_set_metadata_key(op, "progress", p);
	snprintf(key, sizeof(key), "%s_progress", stage);
	if (percent > 0) {
		snprintf(text, sizeof(text), "%s: %lld%% (%s/s)", prefix, (long long)percent, sp);
	} else if (processed > 0) {
		img_bytes_string(processed, pr);
		snprintf(text, sizeof(text), "%s: %s (%s/s)", prefix, pr, sp);
	} else {
		snprintf(text, sizeof(text), "%s: %s/s", prefix, sp);
	}
	op_progress(op, key, text);
}

/* Speed over the whole run, as LXD's progress tracker shows it. */
struct img_rate {
	int64_t start_ms;
};

static int64_t rate_of(const struct img_rate *r, uint64_t done)
{
	int64_t ms = util_now_ms() - r->start_ms;
	return ms > 0 ? (int64_t)(done * 1000 / (uint64_t)ms) : 0;
}

/* ---- start-up ---------------------------------------------------------------------- */

static void rm_tree_files(const char *dir)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		_cleanup_free_ char *p = NULL;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		p = xasprintf("%s/%s", dir, e->d_name);
		if (p && unlink(p) < 0 && errno != ENOENT)
			log_warn("images: remove leftover %s: %s", p, strerror(errno));
	}
}

static bool is_fp_name(const char *s, bool *rootfs)
{
	size_t n = strlen(s);

	*rootfs = n == 64 + 7 && !strcmp(s + 64, ".rootfs");
	if (n != 64 && !*rootfs)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static int64_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1;
}

/* Rows whose files are gone or the wrong size are dropped; files without
 * a row are removed (an import that crashed between rename and insert). */
static int reconcile(const char *dir, cell_error *err)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct db_image_files *rows = NULL;
	size_t n = 0;
	struct dirent *e;
	int rc;

	if ((rc = db_image_files(&rows, &n, err)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *p = img_path(rows[i].fingerprint);
		_cleanup_free_ char *r = img_rootfs_path(rows[i].fingerprint);
		int64_t ms = p ? file_size(p) : -1, rs = r && rows[i].split ? file_size(r) : 0;
		cell_error e2;

		if (ms == rows[i].meta_size && (!rows[i].split || rs == rows[i].size - rows[i].meta_size))
			continue;
		log_warn("images: %s: image file missing or truncated, dropping the image",
			 rows[i].fingerprint);
		if (db_image_delete(rows[i].fingerprint, &e2) < 0)
			log_warn("images: %s: %s", rows[i].fingerprint, e2.msg);
		if (p)
			unlink(p);
		if (r)
			unlink(r);
	}
	d = opendir(dir);
	while (d && (e = readdir(d))) {
		bool is_rootfs;
		char fp[65];
		int ex;
		cell_error e2;

		if (!is_fp_name(e->d_name, &is_rootfs))
			continue;
		snprintf(fp, sizeof(fp), "%.64s", e->d_name);
		ex = db_image_exists(fp, &e2);
		if (ex == 0) {
			_cleanup_free_ char *p = xasprintf("%s/%s", dir, e->d_name);
			log_warn("images: removing %s: no image in the database", e->d_name);
			if (p)
				unlink(p);
		}
	}
	free(rows);
	return 0;
}

static void prune_work(uv_work_t *w)
{
	cell_error err = { 0 };
	int n = img_prune_expired(&err);

	if (n < 0)
		log_warn("images: pruning expired images: %s", err.msg);
	else if (n > 0)
		log_info("images: pruned %d expired cached image(s)", n);
}

static void prune_done(uv_work_t *w, int status) { free(w); }

static void prune_tick(uv_timer_t *t)
{
	uv_work_t *w = calloc(1, sizeof(*w));

	if (!w || celld->shutting_down || uv_queue_work(celld->loop, w, prune_work, prune_done) < 0)
		free(w);
}

int img_store_init(cell_error *err)
{
	_cleanup_free_ char *dir = xasprintf("%s/images", celld->dir);
	_cleanup_free_ char *tmp = img_tmp_dir();
	int rc;

	if (!dir || !tmp)
		return oom(err);
	if ((rc = util_mkdir_p(tmp, 0700, err)) < 0)
		return cell_err_wrap(err, rc, "image store");
	chmod(dir, 0700);
	rm_tree_files(tmp);
	db_images_watch();
	if ((rc = reconcile(dir, err)) < 0)
		return cell_err_wrap(err, rc, "image store");
	img_prune_timer = malloc(sizeof(*img_prune_timer));
	if (img_prune_timer) {
		uv_timer_init(celld->loop, img_prune_timer);
		uv_timer_start(img_prune_timer, prune_tick, 60 * 1000, IMG_PRUNE_INTERVAL_MS);
		/* A housekeeping timer must not keep the loop alive at shutdown. */
		uv_unref((uv_handle_t *)img_prune_timer);
	}
	return 0;
}

static void timer_closed(uv_handle_t *h) { free(h); }

void img_store_shutdown(void)
{
	if (img_prune_timer) {
		uv_timer_stop(img_prune_timer);
		uv_close((uv_handle_t *)img_prune_timer, timer_closed);
		img_prune_timer = NULL;
	}
}

/* ---- lookups ------------------------------------------------------------------------- */

static bool props_match(json_t *have, json_t *want)
{
	const char *k;
	json_t *v;

	json_object_foreach(want, k, v) {
		const char *h = json_string_value(json_object_get(have, k));
		if (!h || !json_is_string(v) || strcmp(h, json_string_value(v)))
			return false;
	}
	return true;
}

int img_resolve(const struct img_source *src, bool public_only, struct img_record *out,
		cell_error *err)
{
	struct img_record *v = NULL;
	size_t n = 0, best = SIZE_MAX;
	int rc;

	memset(out, 0, sizeof(*out));
	if (src->alias && *src->alias) {
		struct api_image_alias a = { 0 };
		if ((rc = db_alias_get(src->alias, public_only, &a, err)) < 0)
			return rc;
		rc = db_image_get(a.target, public_only, out, err);
		api_image_alias_free(&a);
		return rc;
	}
	if (src->fingerprint && *src->fingerprint)
		return db_image_get(src->fingerprint, public_only, out, err);
	if (!json_is_object(src->properties) || !json_object_size(src->properties))
		return cell_err(err, 400, EINVAL, "No image alias, fingerprint or properties given");
	if ((rc = db_image_list(&v, &n, public_only, err)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		if (props_match(v[i].api.properties, src->properties) &&
		    (best == SIZE_MAX ||
		     img_ts_to_ns(&v[i].api.created_at) > img_ts_to_ns(&v[best].api.created_at)))
			best = i;
	if (best == SIZE_MAX) {
		img_record_list_free(v, n);
		return cell_err(err, 404, ENOENT, "Image not found");
	}
	*out = v[best];
	memset(&v[best], 0, sizeof(v[best]));
	img_record_list_free(v, n);
	return 0;
}

int img_mark_used(const char *fp, cell_error *err)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return db_image_set_last_used(fp, &now, err);
}

int img_read_meta(const struct img_record *r, struct image_meta *out, cell_error *err)
{
	_cleanup_free_ char *p = img_path(r->api.fingerprint);

	if (!p)
		return oom(err);
	return image_meta_load(p, out, err);
}

/* ---- unpack ------------------------------------------------------------------------ */

struct unpack_progress {
	struct operation *op;
	struct img_rate rate;
	int64_t last_ms;
};

static int unpack_progress_cb(void *data, uint64_t in, uint64_t total)
{
	struct unpack_progress *u = data;
	int64_t now = util_now_ms();

	if (u->op && op_cancelled(u->op))
		return 1;
	if (!u->op || (now - u->last_ms < 500 && in < total))
		return 0;
	u->last_ms = now;
	img_op_progress(u->op, "create_instance_from_image_unpack", "Unpack",
			total ? (int64_t)(in * 100 / total) : 0, total ? 0 : (int64_t)in,
			rate_of(&u->rate, in));
	return 0;
}

int img_unpack(const struct img_record *r, const char *rootfs_dir, const char *templates_dir,
	       const struct idmap *idmap, struct operation *op, cell_error *err)
{
	_cleanup_free_ char *meta = img_path(r->api.fingerprint);
	_cleanup_free_ char *rootfs = img_rootfs_path(r->api.fingerprint);
	struct unpack_progress pr = { .op = op, .rate = { util_now_ms() } };
	struct tar_unpack_opts o = { .idmap = idmap, .progress = unpack_progress_cb, .progress_data = &pr };
	const char *comp = NULL;
	int rc;

	if (!meta || !rootfs)
		return oom(err);
	if (!r->split) {
		o.strip_prefix = "rootfs/";
		rc = tar_unpack_path(meta, rootfs_dir, &o, err);
	} else if ((rc = tar_detect_compression(rootfs, &comp, err)) == 0 && !strcmp(comp, "squashfs")) {
		rc = squashfs_unpack(rootfs, rootfs_dir, idmap, err);
	} else if (rc == 0) {
		rc = tar_unpack_path(rootfs, rootfs_dir, &o, err);
	}
	if (rc < 0)
		return cell_err_wrap(err, rc, "unpack image %.12s", r->api.fingerprint);
	if (templates_dir) {
		struct tar_unpack_opts t = { .strip_prefix = "templates/" };
		if ((rc = util_mkdir_p(templates_dir, 0755, err)) < 0 ||
		    (rc = tar_unpack_path(meta, templates_dir, &t, err)) < 0)
			return cell_err_wrap(err, rc, "unpack templates of image %.12s", r->api.fingerprint);
	}
	return 0;
}

/* ---- commit ---------------------------------------------------------------------------- */

static void unlink_upload(struct img_upload_result *up)
{
	if (up->meta_path)
		unlink(up->meta_path);
	if (up->rootfs_path)
		unlink(up->rootfs_path);
}

static int aliases_from_json(json_t *aliases, struct api_image *a, cell_error *err)
{
	size_t i, n = json_array_size(aliases);
	json_t *x;

	if (!n)
		return 0;
	a->aliases = calloc(n, sizeof(*a->aliases));
	if (!a->aliases)
		return oom(err);
	json_array_foreach(aliases, i, x) {
		const char *name = json_string_value(json_object_get(x, "name"));
		const char *desc = json_string_value(json_object_get(x, "description"));
		if (!name || !*name)
			return cell_err(err, 400, EINVAL, "aliases[%zu]: name is required", i);
		a->aliases[i].name = strdup(name);
		a->aliases[i].description = strdup(desc ? desc : "");
		a->n_aliases++;
		if (!a->aliases[i].name || !a->aliases[i].description)
			return oom(err);
	}
	return 0;
}

static int build_record(struct img_upload_result *up, const struct img_commit_req *req,
			const struct image_meta *m, struct img_record *r, cell_error *err)
{
	struct api_image *a = &r->api;
	/* LXD names a split image after its rootfs part, whatever the headers say. */
	const char *fn = up->split ? up->rootfs_filename : req->filename;
	const char *k;
	json_t *v;

	memset(r, 0, sizeof(*r));
	r->split = up->split;
	r->meta_size = (int64_t)up->meta_size;
	a->fingerprint = strdup(up->fingerprint);
	a->type = strdup("container");
	a->filename = strdup(fn ? fn : "");
	a->architecture = strdup(m->architecture);
	a->size = (int64_t)up->size;
	a->public = req->public;
	a->auto_update = req->auto_update;
	a->cached = req->cached;
	a->created_at = (struct timespec){ m->creation_date, 0 };
	a->expires_at = (struct timespec){ m->expiry_date, 0 };
	clock_gettime(CLOCK_REALTIME, &a->uploaded_at);
	a->properties = json_deep_copy(m->properties);
	a->profiles = calloc(2, sizeof(char *));
	if (a->profiles)
		a->profiles[0] = strdup("default");
	if (req->update_source)
		a->update_source = json_incref(req->update_source);
	if (!a->fingerprint || !a->type || !a->filename || !a->architecture || !a->properties ||
	    !a->profiles || !a->profiles[0])
		return oom(err);
	json_object_foreach(req->properties, k, v) {
		if (!json_is_string(v))
			return cell_err(err, 400, EINVAL, "property %s must be a string", k);
		json_object_set(a->properties, k, v);
	}
	return aliases_from_json(req->aliases, a, err);
}

static int rename_into_place(struct img_upload_result *up, cell_error *err)
{
	_cleanup_free_ char *meta = img_path(up->fingerprint);
	_cleanup_free_ char *rootfs = img_rootfs_path(up->fingerprint);

	if (!meta || !rootfs)
		return oom(err);
	if (rename(up->meta_path, meta) < 0)
		return cell_err_sys(err, 500, errno, "store image %s", up->fingerprint);
	free(up->meta_path);
	up->meta_path = steal_ptr(meta);
	if (up->rootfs_path) {
		if (rename(up->rootfs_path, rootfs) < 0)
			return cell_err_sys(err, 500, errno, "store image %s", up->fingerprint);
		free(up->rootfs_path);
		up->rootfs_path = steal_ptr(rootfs);
	}
	return 0;
}

static int commit_locked(struct img_upload_result *up, struct img_record *rec, cell_error *err)
{
	int rc = db_image_exists(up->fingerprint, err);

	if (rc < 0)
		return rc;
	if (rc == 1)
		return cell_err(err, 409, EEXIST, "Image with same fingerprint already exists");
	if ((rc = rename_into_place(up, err)) < 0)
		return rc;
	return db_image_insert(rec, err);
}

int img_commit(struct img_upload_result *up, const struct img_commit_req *req, struct img_record *out,
	       cell_error *err)
{
	_cleanup_image_meta_ struct image_meta m = { 0 };
	_cleanup_img_record_ struct img_record rec = { 0 };
	char url[96];
	int rc;

	if (out)
		memset(out, 0, sizeof(*out));
	if (req->expected_fp && *req->expected_fp && strcmp(req->expected_fp, up->fingerprint)) {
		rc = cell_err(err, 400, EINVAL, "Fingerprints don't match, got %s expected %s",
			      up->fingerprint, req->expected_fp);
		goto fail;
	}
	if (!up->scan.meta_yaml) {
		rc = cell_err(err, 400, ENOENT, "Metadata tarball is missing metadata.yaml");
		goto fail;
	}
	if ((rc = image_meta_parse(up->scan.meta_yaml, up->scan.meta_len, &m, err)) < 0)
		goto fail;
	if (up->squashfs) {
		struct img_scan_opts lim = { 0 };
		struct img_scan_result sq;
		_cleanup_free_ char *dir = img_tmp_dir();
		if (!dir) {
			rc = oom(err);
			goto fail;
		}
		if ((rc = img_scan_limits_for(dir, &lim, err)) < 0 ||
		    (rc = img_scan_squashfs(up->rootfs_path, &lim, &sq, err)) < 0)
			goto fail;
		img_scan_result_free(&sq);
	}
	if ((rc = build_record(up, req, &m, &rec, err)) < 0)
		goto fail;
	pthread_mutex_lock(&img_lock);
	rc = commit_locked(up, &rec, err);
	pthread_mutex_unlock(&img_lock);
	if (rc < 0)
		goto fail;
	fp_url(up->fingerprint, url);
	events_lifecycle("image-created", url, json_pack("{s:s}", "type", "container"));
	log_info("images: stored %s (%s, %lld bytes)", up->fingerprint, rec.api.filename,
		 (long long)rec.api.size);
	if (out) {
		*out = rec;
		memset(&rec, 0, sizeof(rec));
	}
	return 0;
fail:
	unlink_upload(up);
	return rc;
}

/* ---- delete and expiry ---------------------------------------------------------------- */

int img_delete(const char *fp, cell_error *err)
{
	_cleanup_free_ char *meta = img_path(fp);
	_cleanup_free_ char *rootfs = img_rootfs_path(fp);
	char url[96];
	int rc;

	if (!meta || !rootfs)
		return oom(err);
	pthread_mutex_lock(&img_lock);
	rc = db_image_delete(fp, err);
	if (rc == 0) {
		if (unlink(meta) < 0 && errno != ENOENT)
			log_warn("images: remove %s: %s", meta, strerror(errno));
		if (unlink(rootfs) < 0 && errno != ENOENT)
			log_warn("images: remove %s: %s", rootfs, strerror(errno));
	}
	pthread_mutex_unlock(&img_lock);
	if (rc < 0)
		return rc;
	if (img_delete_hook)
		img_delete_hook(fp);
	fp_url(fp, url);
	events_lifecycle("image-deleted", url, NULL);
	log_info("images: deleted %s", fp);
	return 0;
}

int img_prune_expired(cell_error *err)
{
	int64_t days = config_get_int("images.remote_cache_expiry");
	_cleanup_strv_ char **fps = NULL;
	struct timespec now;
	int n = 0, rc;

	if (days <= 0)
		return 0;
	clock_gettime(CLOCK_REALTIME, &now);
	rc = db_image_expired(img_ts_to_ns(&now) - days * 86400LL * 1000000000LL, &fps, err);
	if (rc < 0)
		return rc;
	for (char **p = fps; p && *p; p++) {
		cell_error e;
		if (img_delete(*p, &e) == 0)
			n++;
		else
			log_warn("images: prune %s: %s", *p, e.msg);
	}
	return n;
}

/* ---- publish ------------------------------------------------------------------------- */

/* Reads the tar stream from a pipe, hashes it and writes it to the file. */
struct pub_sink {
	int in_fd, out_fd;
	struct sha256_ctx sha;
	uint64_t bytes;
	struct operation *op;
	struct img_rate rate;
	int64_t last_ms;
	int rc;
	cell_error err;
	char fp[65];
};

static void *pub_sink_main(void *arg)
{
	struct pub_sink *s = arg;
	_cleanup_free_ char *buf = malloc(1 << 20);
	ssize_t n;

	if (!buf) {
		s->rc = cell_err(&s->err, 500, ENOMEM, "out of memory");
		return NULL;
	}
	while ((n = read(s->in_fd, buf, 1 << 20)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			s->rc = cell_err_sys(&s->err, 500, errno, "read the image stream");
			break;
		}
		sha256_update(&s->sha, buf, (size_t)n);
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(s->out_fd, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				s->rc = cell_err_sys(&s->err, 500, errno, "write the image");
				goto out;
			}
			off += w;
		}
		s->bytes += (uint64_t)n;
		if (s->op && op_cancelled(s->op)) {
			s->rc = cell_err(&s->err, 400, ECANCELED, "Operation cancelled");
			break;
		}
		if (s->op && util_now_ms() - s->last_ms >= 500) {
			s->last_ms = util_now_ms();
			img_op_progress(s->op, "create_image_from_container_pack", "Image pack", 0,
					(int64_t)s->bytes, rate_of(&s->rate, s->bytes));
		}
	}
out:
	/* Closing our end makes a writer still going fail with EPIPE. */
	close(s->in_fd);
	s->in_fd = -1;
	if (s->rc == 0)
		sha256_final_hex(&s->sha, s->fp);
	return NULL;
}

static int pub_write_tar(const struct img_publish_args *a, int fd, const char *yaml, cell_error *err)
{
	struct tar_writer *w = NULL;
	int rc;

	if ((rc = tar_writer_open(fd, a->compression ? a->compression : "gzip", &w, err)) < 0)
		return rc;
	if ((rc = tar_writer_add_data(w, "metadata.yaml", yaml, strlen(yaml), 0644, err)) < 0 ||
	    (rc = tar_writer_add_tree(w, a->rootfs_dir, "rootfs", a->unshift, err)) < 0 ||
	    (a->templates_dir && access(a->templates_dir, F_OK) == 0 &&
	     (rc = tar_writer_add_tree(w, a->templates_dir, "templates", NULL, err)) < 0)) {
		tar_writer_free(w);
		return rc;
	}
	return tar_writer_close(w, err);
}

int img_publish_dir(const struct img_publish_args *a, struct img_record *out, cell_error *err)
{
	struct image_meta m = { 0 };
	struct img_upload_result up = { 0 };
	struct pub_sink s = { .in_fd = -1, .out_fd = -1, .op = a->op };
	_cleanup_free_ char *tmpdir = img_tmp_dir(), *path = NULL, *yaml = NULL;
	pthread_t t;
	int p[2] = { -1, -1 }, rc;

	if (!tmpdir || !(path = img_tmp_path(tmpdir, "")))
		return oom(err);
	if (!a->architecture || !image_arch_normalize(a->architecture))
		return cell_err(err, 400, EINVAL, "Unknown architecture \"%s\"", a->architecture ?: "");
	m.architecture = (char *)image_arch_normalize(a->architecture);
	m.creation_date = time(NULL);
	m.expiry_date = a->expiry_date;
	m.properties = a->properties ? a->properties : json_object();
	m.templates = a->templates ? a->templates : json_object();
	yaml = image_meta_to_yaml(&m);
	if (!a->properties)
		json_decref(m.properties);
	if (!a->templates)
		json_decref(m.templates);
	if (!yaml)
		return oom(err);
	s.out_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (s.out_fd < 0)
		return cell_err_sys(err, 500, errno, "create %s", path);
	/* A socket, not a pipe: libarchive pads what it writes to a FIFO to
	 * its 10 KiB block size, and zeros after a zstd stream are an error. */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0 || sha256_init(&s.sha) < 0) {
		rc = cell_err_sys(err, 500, errno ? errno : ENOMEM, "publish");
		goto fail;
	}
	s.in_fd = p[0];
	s.rate.start_ms = s.last_ms = util_now_ms();
	if ((rc = pthread_create(&t, NULL, pub_sink_main, &s))) {
		close(p[0]);
		s.in_fd = -1;
		rc = cell_err_sys(err, 500, rc, "publish: start the hashing thread");
		goto fail;
	}
	rc = pub_write_tar(a, p[1], yaml, err);
	close(p[1]);
	p[1] = -1;
	pthread_join(t, NULL);
	sha256_free(&s.sha);
	if (s.rc < 0) {
		*err = s.err;
		rc = s.rc;
	}
	if (rc < 0)
		goto fail;
	close(s.out_fd);
	s.out_fd = -1;
	up.meta_path = steal_ptr(path);
	memcpy(up.fingerprint, s.fp, sizeof(up.fingerprint));
	up.size = up.meta_size = s.bytes;
	up.scan.meta_yaml = steal_ptr(yaml);
	up.scan.meta_len = strlen(up.scan.meta_yaml);
	up.scan.has_meta = up.scan.has_rootfs = true;
	rc = img_commit(&up, &a->commit, out, err);
	img_upload_result_free(&up);
	return rc;
fail:
	sha256_free(&s.sha);
	if (p[1] >= 0)
		close(p[1]);
	if (s.out_fd >= 0)
		close(s.out_fd);
	if (path)
		unlink(path);
	return rc;
}

void img_instance_tree_free(struct img_instance_tree *t)
{
	if (!t)
		return;
	if (t->release)
		t->release(t);
	free(t->rootfs_dir);
	free(t->templates_dir);
	idmap_free(&t->unshift);
	free(t->architecture);
	json_decref(t->properties);
	json_decref(t->templates);
	memset(t, 0, sizeof(*t));
}
