/*
 * /1.0/images and /1.0/images/<fingerprint>[/export|/refresh]: LXD's image
 * store API.  POST /1.0/images streams its body (ROUTE_STREAM_BODY): a raw
 * tarball or a multipart/form-data split image goes straight to an
 * img_upload (hashed and validated while it arrives, image_upload.h); a
 * JSON body (source type url / instance / snapshot) is buffered.  As in
 * LXD, the answer to an upload is an operation that finishes validation
 * and stores the image once the body is complete; an upload already known
 * to be bad when its body ends is answered with the 400 at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "api/image.h"
#include "common/cleanup.h"
#include "common/http_client.h"
#include "common/log.h"
#include "common/tarstream.h"
#include "common/util.h"
#include "daemon/api_filter.h"
#include "daemon/daemon.h"
#include "daemon/db.h"
#include "daemon/events.h"
#include "daemon/http.h"
#include "daemon/images.h"
#include "daemon/images_list.h"
#include "common/multipart.h"
#include "daemon/operations.h"
#include "daemon/router.h"
#include "daemon/server.h"

void api_images_aliases_register(void);
void api_testing_images_register(void);

static void image_url(const char *fp, char out[96]) { snprintf(out, 96, "/1.0/images/%s", fp); }

/* ---- GET /1.0/images ------------------------------------------------------------ */

/* Every listing is served from one snapshot of the store (images_list.h),
 * which follows the tables image by image. */
static struct img_list images_snap;

/* resp_sync's envelope, written around the pieces. */
#define SYNC_HEAD "{\"type\":\"sync\",\"status\":\"Success\",\"status_code\":200,\"operation\":\"\"," \
		  "\"error_code\":0,\"error\":\"\",\"metadata\":["

static void images_get(http_req *req, http_resp *resp)
{
	bool objects = http_req_recursion(req) > 0;
	const char *filter = http_req_query(req, "filter");
	struct api_filter *f = NULL;
	strbuf *b = &resp->body;
	cell_error err;
	bool first = true;

	if (filter && *filter && api_filter_parse(filter, &f, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	if (img_list_refresh(&images_snap, &err) < 0) {
		api_filter_free(f);
		resp_from_err(resp, &err);
		return;
	}
	resp->status = 200;
	snprintf(resp->content_type, sizeof(resp->content_type), "application/json");
	sb_reset(b);
	sb_puts(b, SYNC_HEAD);
	for (size_t i = 0; i < images_snap.n; i++) {
		const struct img_list_entry *e = &images_snap.v[i];
		if ((!req->trusted && !e->public) || !e->text || (f && !api_filter_match(f, e->obj)))
			continue;
		if (!first)
			sb_append(b, ",", 1);
		first = false;
		if (objects)
			sb_append(b, e->text, e->len);
		else
			sb_printf(b, "\"/1.0/images/%s\"", e->fp);
	}
	api_filter_free(f);
	if (sb_puts(b, "]}\n") < 0)
		resp_error(resp, 500, "out of memory");
}

/* ---- one image -------------------------------------------------------------------- */

/* The image the URL names (unique prefix); answers the error itself. */
static bool image_lookup(http_req *req, http_resp *resp, struct img_record *out)
{
	cell_error err;

	if (req->nparams < 1 || db_image_get(req->params[0], !req->trusted, out, &err) < 0) {
		if (req->nparams < 1)
			cell_err(&err, 404, ENOENT, "Image not found");
		resp_from_err(resp, &err);
		return false;
	}
	return true;
}

/* LXD's ETag for an image: [public, auto_update, properties]. */
static json_t *image_etag_src(const struct api_image *a)
{
	return json_pack("[b,b,O]", a->public, a->auto_update,
			 a->properties ? a->properties : json_object());
}

static void image_get(http_req *req, http_resp *resp)
{
	_cleanup_img_record_ struct img_record r = { 0 };
	_cleanup_json_ json_t *etag = NULL;

	if (!image_lookup(req, resp, &r))
		return;
	etag = image_etag_src(&r.api);
	resp_sync_etag(resp, api_image_to_json(&r.api), etag);
}

static int profiles_exist(char **profiles, cell_error *err)
{
	for (char **p = profiles; p && *p; p++) {
		int64_t one = 0;
		int rc = db_query_int(&one, err, "SELECT 1 FROM profiles WHERE name = ?", "s", *p);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return cell_err(err, 400, ENOENT, "Profile '%s' doesn't exist", *p);
	}
	return 0;
}

static void image_update(http_req *req, http_resp *resp, bool patch)
{
	_cleanup_img_record_ struct img_record r = { 0 };
	_cleanup_json_ json_t *etag = NULL, *body = NULL;
	cell_error err;
	char url[96];

	if (!image_lookup(req, resp, &r))
		return;
	etag = image_etag_src(&r.api);
	if (!http_check_etag(req, resp, etag))
		return;
	if (http_req_json(req, &body, &err) < 0 || api_image_from_json(body, &r.api, patch, &err) < 0 ||
	    (!patch && profiles_exist(r.api.profiles, &err) < 0) ||
	    (patch && json_object_get(body, "profiles") && profiles_exist(r.api.profiles, &err) < 0) ||
	    db_image_update(&r, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	image_url(r.api.fingerprint, url);
	events_lifecycle("image-updated", url, NULL);
	resp_empty(resp);
}

static void image_put(http_req *req, http_resp *resp) { image_update(req, resp, false); }
static void image_patch(http_req *req, http_resp *resp) { image_update(req, resp, true); }

/* DELETE is an operation in LXD (pools may hold unpacked copies). */
static int image_delete_run(struct operation *op, cell_error *err)
{
	return img_delete(op_data(op), err);
}

static const struct op_ops image_delete_ops = { .run = image_delete_run, .free_data = free };

/* An operation on the image the request names; its data is the fingerprint. */
static void image_op(http_req *req, http_resp *resp, const char *description,
		     const struct op_ops *ops)
{
	_cleanup_img_record_ struct img_record r = { 0 };
	struct operation *op;
	char url[96];
	char *fp;

	if (!image_lookup(req, resp, &r))
		return;
	image_url(r.api.fingerprint, url);
	fp = strdup(r.api.fingerprint);
	op = fp ? op_create(OP_CLASS_TASK, description, json_pack("{s:[s]}", "images", url), NULL,
			    ops, fp)
		: NULL;
	if (!op) {
		free(fp);
		resp_error(resp, 500, "out of memory");
		return;
	}
	op_start(op);
	resp_async(resp, op);
}

static void image_delete(http_req *req, http_resp *resp)
{
	image_op(req, resp, "Deleting image", &image_delete_ops);
}

/* ---- export --------------------------------------------------------------------------- */

/* LXD's file name extension for what the file holds (".tar.xz", ".squashfs"). */
static const char *file_ext(const char *path)
{
	const char *comp = NULL;
	cell_error err;

	if (tar_detect_compression(path, &comp, &err) < 0)
		return "";
	return tar_compression_ext(comp);
}

struct export_job {
	uv_work_t work;
	http_deferred *d;
	char fp[65];
	char *meta, *rootfs;
	bool head;
	int fd;
	off_t len;
	char boundary[64];
	cell_error err;
	int rc;
};

static int write_all(int fd, const char *s, size_t n, cell_error *err)
{
	while (n) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return cell_err_sys(err, 500, errno, "export");
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

static int copy_file(int out, const char *path, cell_error *err)
{
	_cleanup_close_ int in = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	off_t left;

	if (in < 0 || fstat(in, &st) < 0)
		return cell_err_sys(err, 500, errno, "open %s", path);
	for (left = st.st_size; left > 0;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return cell_err_sys(err, 500, n < 0 ? errno : EIO, "export %s", path);
		left -= n;
	}
	return 0;
}

static int part_header(int fd, const char *boundary, bool first, const char *name,
		       const char *filename, cell_error *err)
{
	_cleanup_free_ char *h = xasprintf("%s--%s\r\nContent-Disposition: form-data; name=\"%s\"; "
					   "filename=\"%s\"\r\nContent-Type: application/octet-stream\r\n\r\n",
					   first ? "" : "\r\n", boundary, name, filename);

	if (!h)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return write_all(fd, h, strlen(h), err);
}

/* Both parts of a split image as LXD's multipart answer, in an unlinked
 * file the server streams from (one copy, in the kernel). */
static void export_split_work(uv_work_t *w)
{
	struct export_job *j = w->data;
	_cleanup_free_ char *tmp = img_tmp_dir();
	_cleanup_free_ char *mname = NULL, *rname = NULL, *tail = NULL;
	int fd;

	if (!tmp) {
		j->rc = cell_err(&j->err, 500, ENOMEM, "out of memory");
		return;
	}
	/* content_type holds 63 characters: a 32-character boundary fits. */
	util_random_hex(j->boundary, 16);
	mname = xasprintf("meta-%s%s", j->fp, file_ext(j->meta));
	rname = xasprintf("%s%s", j->fp, file_ext(j->rootfs));
	tail = xasprintf("\r\n--%s--\r\n", j->boundary);
	fd = open(tmp, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		j->rc = cell_err_sys(&j->err, 500, errno, "export: temporary file in %s", tmp);
		return;
	}
	if (!mname || !rname || !tail)
		j->rc = cell_err(&j->err, 500, ENOMEM, "out of memory");
	if (j->rc == 0 && !j->head)
		j->rc = part_header(fd, j->boundary, true, "metadata", mname, &j->err);
	if (j->rc == 0 && !j->head)
		j->rc = copy_file(fd, j->meta, &j->err);
	if (j->rc == 0 && !j->head)
		j->rc = part_header(fd, j->boundary, false, "rootfs", rname, &j->err);
	if (j->rc == 0 && !j->head)
		j->rc = copy_file(fd, j->rootfs, &j->err);
	if (j->rc == 0 && !j->head)
		j->rc = write_all(fd, tail, strlen(tail), &j->err);
	if (j->rc < 0) {
		close(fd);
		return;
	}
	j->fd = fd;
	j->len = lseek(fd, 0, SEEK_END);
}

static void export_split_done(uv_work_t *w, int status)
{
	struct export_job *j = w->data;
	http_resp resp;
	char ct[128];

	http_resp_init(&resp);
	if (status < 0 && j->rc == 0)
		j->rc = cell_err(&j->err, 500, EIO, "export cancelled");
	if (j->rc < 0) {
		resp_from_err(&resp, &j->err);
	} else {
		snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%s", j->boundary);
		resp.status = 200;
		snprintf(resp.content_type, sizeof(resp.content_type), "%.63s", ct);
		resp.body_fd = j->fd;
		resp.body_fd_len = j->len;
	}
	http_deferred_finish(j->d, &resp);
	free(j->meta);
	free(j->rootfs);
	free(j);
}

static void image_export(http_req *req, http_resp *resp)
{
	_cleanup_img_record_ struct img_record r = { 0 };
	_cleanup_free_ char *meta = NULL, *rootfs = NULL, *disp = NULL;
	struct export_job *j;
	char url[96];
	int fd;

	if (!image_lookup(req, resp, &r))
		return;
	meta = img_path(r.api.fingerprint);
	rootfs = img_rootfs_path(r.api.fingerprint);
	if (!meta || !rootfs) {
		resp_error(resp, 500, "out of memory");
		return;
	}
	image_url(r.api.fingerprint, url);
	events_lifecycle("image-retrieved", url, NULL);
	if (!r.split) {
		fd = open(meta, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			resp_error(resp, 500, "open image %s: %s", r.api.fingerprint, strerror(errno));
			return;
		}
		disp = xasprintf("inline;filename=%s%s", r.api.fingerprint, file_ext(meta));
		resp->status = 200;
		snprintf(resp->content_type, sizeof(resp->content_type), "application/octet-stream");
		if (disp)
			http_resp_header(resp, "Content-Disposition", disp);
		resp->body_fd = fd;
		resp->body_fd_len = r.meta_size;
		return;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		resp_error(resp, 500, "out of memory");
		return;
	}
	snprintf(j->fp, sizeof(j->fp), "%s", r.api.fingerprint);
	j->meta = steal_ptr(meta);
	j->rootfs = steal_ptr(rootfs);
	j->fd = -1;
	j->work.data = j;
	if (uv_queue_work(celld->loop, &j->work, export_split_work, export_split_done) < 0) {
		free(j->meta);
		free(j->rootfs);
		free(j);
		resp_error(resp, 500, "cannot queue the export");
		return;
	}
	j->d = http_defer(req, resp);
}

/* ---- refresh ----------------------------------------------------------------------------- */

static int image_refresh_run(struct operation *op, cell_error *err)
{
	_cleanup_img_record_ struct img_record r = { 0 };
	int rc = db_image_get(op_data(op), false, &r, err);

	if (rc < 0)
		return rc;
	if (!r.api.update_source)
		return cell_err(err, 400, EINVAL,
				"Image %s has no update source (it was not downloaded from a remote "
				"image server): there is nothing to refresh it from", r.api.fingerprint);
	return cell_err(err, 501, ENOTSUP,
			"Image %s comes from %s: refreshing from remote image servers is not "
			"supported yet", r.api.fingerprint,
			json_string_value(json_object_get(r.api.update_source, "server")) ?: "a remote");
}

static const struct op_ops image_refresh_ops = { .run = image_refresh_run, .free_data = free };

static void image_refresh(http_req *req, http_resp *resp)
{
	image_op(req, resp, "Refreshing image", &image_refresh_ops);
}

/* ---- POST /1.0/images ---------------------------------------------------------------------- */

enum post_mode { POST_UNDECIDED, POST_JSON, POST_UPLOAD };

struct img_post {
	http_req *req;                /* NULL once the request is over */
	enum post_mode mode;
	strbuf json;
	struct img_upload *up;
	uv_async_t *drain;            /* the writer drained the queue: read again */
	char boundary[MP_BOUNDARY_MAX + 1];
	uint64_t expected;
	bool failed;                  /* err is the answer once the body ends */
	cell_error err;
	/* what the headers asked for */
	char *expected_fp, *filename;
	bool public;
	json_t *properties;
};

static bool is_true(const char *v)
{
	return v && (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") ||
		     !strcasecmp(v, "on"));
}

static int hexv(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* application/x-www-form-urlencoded, as Go's url.ParseQuery. */
static char *form_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+') {
			*o++ = ' ';
		} else if (s[i] == '%' && i + 2 < n && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
			*o++ = (char)(hexv(s[i + 1]) * 16 + hexv(s[i + 2]));
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

/* X-LXD-properties: "os=busybox&release=1" (first value of a key wins, as Go's). */
static json_t *parse_properties(const char *h)
{
	json_t *props = json_object();

	for (const char *p = h; props && p && *p;) {
		size_t len = strcspn(p, "&;");
		const char *eq = memchr(p, '=', len);
		_cleanup_free_ char *k = form_decode(p, eq ? (size_t)(eq - p) : len);
		_cleanup_free_ char *v = eq ? form_decode(eq + 1, len - (size_t)(eq + 1 - p)) : strdup("");

		if (k && v && *k && !json_object_get(props, k))
			json_object_set_new(props, k, json_string(v));
		p += len;
		if (*p)
			p++;
	}
	return props;
}

static void post_async_closed(uv_handle_t *h) { free(h); }

/* Everything but the upload's threads, which must be joined first. */
static void post_free_shallow(struct img_post *st)
{
	if (st->drain)
		uv_close((uv_handle_t *)st->drain, post_async_closed);
	sb_free(&st->json);
	free(st->expected_fp);
	free(st->filename);
	json_decref(st->properties);
	free(st);
}

/* Joining the upload's threads may wait on a block being written: off the loop. */
static void post_free_work(uv_work_t *w) { img_upload_free(((struct img_post *)w->data)->up); }

static void post_free_after(uv_work_t *w, int status)
{
	post_free_shallow(w->data);
	free(w);
}

static void post_free(struct img_post *st)
{
	uv_work_t *w;

	if (!st)
		return;
	st->req = NULL;
	if (st->up) {
		img_upload_close(st->up, false);
		w = calloc(1, sizeof(*w));
		if (w) {
			w->data = st;
			if (uv_queue_work(celld->loop, w, post_free_work, post_free_after) == 0)
				return;
			free(w);
		}
		img_upload_free(st->up);
	}
	post_free_shallow(st);
}

static void post_drain_cb(uv_async_t *a)
{
	struct img_post *st = a->data;

	if (st->req) {
		log_debug("images: upload queue drained, reading again");
		http_req_pause_body(st->req, false);
	}
}

static void post_pause(void *data)
{
	struct img_post *st = data;

	if (st->req) {
		log_debug("images: upload queue full, pausing the reader");
		http_req_pause_body(st->req, true);
	}
}

static void post_on_drain(void *data)
{
	struct img_post *st = data;
	uv_async_send(st->drain);
}

static int post_start_upload(struct img_post *st, cell_error *err)
{
	_cleanup_free_ char *tmp = img_tmp_dir();
	struct img_upload_opts o = { .tmpdir = tmp, .boundary = st->boundary[0] ? st->boundary : NULL,
				     .expected = st->expected, .pause = post_pause,
				     .on_drain = post_on_drain, .cb_data = st };

	if (!tmp)
		return cell_err(err, 500, ENOMEM, "out of memory");
	st->drain = malloc(sizeof(*st->drain));
	if (!st->drain)
		return cell_err(err, 500, ENOMEM, "out of memory");
	uv_async_init(celld->loop, st->drain, post_drain_cb);
	st->drain->data = st;
	st->mode = POST_UPLOAD;
	return img_upload_new(&o, &st->up, err);
}

static int post_begin(http_req *req, void **state, cell_error *err)
{
	const char *ct = http_req_header(req, "content-type");
	const char *cl = http_req_header(req, "content-length");
	const char *props = http_req_header(req, "x-lxd-properties");
	const char *fp = http_req_header(req, "x-lxd-fingerprint");
	const char *fn = http_req_header(req, "x-lxd-filename");
	struct img_post *st = calloc(1, sizeof(*st));
	int rc = 0;

	if (!st)
		return cell_err(err, 500, ENOMEM, "out of memory");
	st->req = req;
	st->expected = cl ? strtoull(cl, NULL, 10) : 0;
	st->public = is_true(http_req_header(req, "x-lxd-public"));
	st->properties = props ? parse_properties(props) : NULL;
	st->expected_fp = fp && *fp ? strdup(fp) : NULL;
	st->filename = fn ? strdup(fn) : NULL;
	if (st->expected_fp)
		for (char *p = st->expected_fp; *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'F' ? *p + 32 : *p);
	if (ct && !strncasecmp(ct, "application/json", 16))
		st->mode = POST_JSON;
	else if (ct && !strncasecmp(ct, "multipart/form-data", 19))
		rc = mp_boundary(ct, st->boundary, &st->err) < 0 ? -EINVAL : post_start_upload(st, &st->err);
	else if (ct && !strncasecmp(ct, "application/octet-stream", 24))
		rc = post_start_upload(st, &st->err);
	/* Refused already, but the body is read (and dropped) before the
	 * answer: a client still sending would otherwise see a reset. */
	if (rc < 0)
		st->failed = true;
	*state = st;
	return 0;
}

/* Body bytes (the server decodes chunked framing). */
static int post_data(void *data, const void *buf, size_t len, cell_error *err)
{
	struct img_post *st = data;
	int rc;

	if (st->mode == POST_UNDECIDED && len) {
		/* LXD tries JSON first; no tarball starts with '{'. */
		const char *p = buf;
		size_t i = 0;
		while (i < len && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
			i++;
		if (i == len && !st->json.len)
			return sb_append(&st->json, buf, len) < 0 ? cell_err(err, 500, ENOMEM, "out of memory") : 0;
		if (i < len && p[i] == '{') {
			st->mode = POST_JSON;
		} else if ((rc = post_start_upload(st, err)) < 0) {
			return rc;
		} else if (st->json.len) {
			if ((rc = img_upload_push(st->up, st->json.buf, st->json.len, err)) < 0)
				return rc;
			sb_reset(&st->json);
		}
	}
	if (st->mode == POST_JSON) {
		if (st->json.len + len > SERVER_MAX_BODY)
			return cell_err(err, 413, EFBIG, "Request body too large (limit %u bytes)", SERVER_MAX_BODY);
		return sb_append(&st->json, buf, len) < 0 ? cell_err(err, 500, ENOMEM, "out of memory") : 0;
	}
	return img_upload_push(st->up, buf, len, err);
}

/* Errors are kept for the answer and the rest of the body is read and
 * dropped, so a client still sending sees the answer, not a reset. */
static int post_chunk(void *state, const void *data, size_t len, cell_error *err)
{
	struct img_post *st = state;

	(void)err;
	if (!st->failed && post_data(st, data, len, &st->err) < 0)
		st->failed = true;
	return 0;
}

/* ---- the upload operation ---- */

struct upload_progress_ctx {
	struct operation *op;
	int64_t start_ms;
};

static int upload_progress(void *data, uint64_t received, uint64_t scanned, uint64_t expected)
{
	struct upload_progress_ctx *p = data;
	int64_t ms = util_now_ms() - p->start_ms;

	if (op_cancelled(p->op))
		return 1;
	if (received)
		img_op_progress(p->op, "validate", "Validating image",
				(int64_t)(scanned * 100 / received) ?: 1, 0,
				ms > 0 ? (int64_t)(scanned * 1000 / (uint64_t)ms) : 0);
	return 0;
}

static void set_result_metadata(struct operation *op, const char *fp, int64_t size)
{
	char sz[32];

	snprintf(sz, sizeof(sz), "%lld", (long long)size);
	op_set_metadata(op, json_pack("{s:s, s:s}", "fingerprint", fp, "size", sz));
}

static int upload_run(struct operation *op, cell_error *err)
{
	struct img_post *st = op_data(op);
	struct img_upload_result res = { 0 };
	_cleanup_img_record_ struct img_record rec = { 0 };
	struct img_commit_req req = { .expected_fp = st->expected_fp, .filename = st->filename,
				      .public = st->public, .properties = st->properties };
	int rc;

	struct upload_progress_ctx pc = { op, util_now_ms() };

	rc = img_upload_wait(st->up, upload_progress, &pc, &res, err);
	if (rc == 0) {
		rc = img_commit(&res, &req, &rec, err);
		if (rc < 0 && res.fingerprint[0])
			set_result_metadata(op, res.fingerprint, (int64_t)res.size);
	}
	img_upload_result_free(&res);
	if (rc == 0)
		set_result_metadata(op, rec.api.fingerprint, rec.api.size);
	return rc;
}

/* free_data runs on the loop; the upload's threads are done after run(). */
static void upload_free(void *data)
{
	struct img_post *st = data;

	img_upload_free(st->up);
	st->up = NULL;
	post_free_shallow(st);
}

static const struct op_ops upload_ops = { .run = upload_run, .free_data = upload_free };

static void post_upload_end(struct img_post *st, http_resp *resp)
{
	struct operation *op;
	cell_error err;

	img_upload_close(st->up, true);
	/* Known bad already (traversal in the first entries, a wrong part
	 * name, ...): the 400 needs no operation. */
	if (img_upload_status(st->up, &err) < 0) {
		resp_from_err(resp, &err);
		post_free(st);
		return;
	}
	op = op_create(OP_CLASS_TASK, "Downloading image", NULL, NULL, &upload_ops, st);
	if (!op) {
		resp_error(resp, 500, "out of memory");
		post_free(st);
		return;
	}
	op_set_may_cancel(op, true);
	op_start(op);
	resp_async(resp, op);
}

static void post_json(struct img_post *st, http_req *req, http_resp *resp);

static void post_end(void *state, http_req *req, http_resp *resp, const cell_error *failed)
{
	struct img_post *st = state;

	st->req = NULL;
	if (failed || st->failed) {
		resp_from_err(resp, failed ? failed : &st->err);
		post_free(st);
		return;
	}
	if (st->mode == POST_UPLOAD) {
		post_upload_end(st, resp);
		return;
	}
	post_json(st, req, resp);
	post_free(st);
}

/* A POST without a body never reaches the stream callbacks. */
static void images_post_empty(http_req *req, http_resp *resp)
{
	resp_error(resp, 400, "Empty image upload");
}

/* ---- POST with a JSON body: source url / instance / snapshot ---- */

struct json_job {
	json_t *body;
	char *source_name;
};

static void json_job_free(void *data)
{
	struct json_job *j = data;
	json_decref(j->body);
	free(j->source_name);
	free(j);
}

static void commit_req_from_body(json_t *body, struct img_commit_req *r)
{
	memset(r, 0, sizeof(*r));
	r->public = json_is_true(json_object_get(body, "public"));
	r->auto_update = json_is_true(json_object_get(body, "auto_update"));
	r->properties = json_is_object(json_object_get(body, "properties")) ? json_object_get(body, "properties") : NULL;
	r->aliases = json_is_array(json_object_get(body, "aliases")) ? json_object_get(body, "aliases") : NULL;
	r->filename = json_string_value(json_object_get(body, "filename"));
}

/* A download whose bytes go into an img_upload (hashed and scanned on the way). */
struct dl_ctx {
	httpc *http;
	const char *path;
	const char *const *headers;
	int out_fd;
	struct operation *op;
	int64_t start_ms, last_ms;
	int rc;
	cell_error err;
	struct httpc_resp resp;
};

static int dl_progress(void *data, uint64_t done, uint64_t total)
{
	struct dl_ctx *d = data;
	int64_t now = util_now_ms();

	if (op_cancelled(d->op))
		return 1;
	if (now - d->last_ms >= 500) {
		d->last_ms = now;
		img_op_progress(d->op, "download", "rootfs", total ? (int64_t)(done * 100 / total) : 0,
				total ? 0 : (int64_t)done,
				now > d->start_ms ? (int64_t)(done * 1000 / (uint64_t)(now - d->start_ms)) : 0);
	}
	return 0;
}

static void *dl_main(void *arg)
{
	struct dl_ctx *d = arg;

	d->rc = httpc_request(d->http, &(struct httpc_req){ .method = "GET", .path = d->path,
				 .headers = d->headers, .body_fd = -1, .out_fd = d->out_fd,
				 .progress = dl_progress, .progress_data = d }, &d->resp, &d->err);
	close(d->out_fd);
	return NULL;
}

static int url_split(const char *url, struct httpc_url *u, cell_error *err)
{
	if (strncasecmp(url, "https://", 8))
		return cell_err(err, 400, EINVAL, "Only https:// is supported for remote image import");
	return httpc_parse_url(url, 443, u, err);
}

static int url_fetch(struct operation *op, const char *url, const char *expected_fp,
		     struct img_upload_result *res, cell_error *err)
{
	_cleanup_free_ char *tmp = img_tmp_dir();
	struct img_upload_opts uo = { .tmpdir = tmp };
	struct img_upload *up = NULL;
	struct httpc_url u;
	_cleanup_httpc_ httpc *h = NULL;
	struct dl_ctx d = { .op = op };
	static const char *const hdrs[] = { "User-Agent: celld/" CELL_VERSION, NULL };
	char buf[65536];
	pthread_t t;
	int p[2], rc;
	ssize_t n;

	if (!tmp)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = url_split(url, &u, err)) < 0 ||
	    (rc = httpc_new(&(struct httpc_opts){ .host = u.host, .port = u.port, .tls = true,
						  .timeout_ms = 30000 }, &h, err)) < 0)
		return rc;
	if ((rc = img_upload_new(&uo, &up, err)) < 0)
		return rc;
	if (pipe2(p, O_CLOEXEC) < 0) {
		img_upload_close(up, false);
		img_upload_free(up);
		return cell_err_sys(err, 500, errno, "pipe");
	}
	d.http = h;
	d.path = u.path[0] ? u.path : "/";
	d.headers = hdrs;
	d.out_fd = p[1];
	d.start_ms = d.last_ms = util_now_ms();
	if ((rc = pthread_create(&t, NULL, dl_main, &d))) {
		close(p[0]);
		close(p[1]);
		img_upload_close(up, false);
		img_upload_free(up);
		return cell_err_sys(err, 500, rc, "start the download");
	}
	rc = 0;
	while ((n = read(p[0], buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (rc = img_upload_push(up, buf, (size_t)n, err)) < 0)
			break;
	}
	close(p[0]);
	pthread_join(t, NULL);
	if (rc == 0 && d.rc < 0) {
		*err = d.err;
		rc = cell_err_wrap(err, d.rc, "Unable to fetch %s", url);
	}
	if (rc == 0 && d.resp.status != 200)
		rc = cell_err(err, 400, EIO, "Unable to fetch %s: %d %s", url, d.resp.status,
			      d.resp.reason ? d.resp.reason : "");
	httpc_resp_free(&d.resp);
	img_upload_close(up, rc == 0);
	if (rc == 0)
		rc = img_upload_wait(up, NULL, NULL, res, err);
	img_upload_free(up);
	if (rc == 0 && strcmp(res->fingerprint, expected_fp)) {
		rc = cell_err(err, 400, EINVAL, "Hash mismatch for \"%s\": %s != %s", url, res->fingerprint,
			      expected_fp);
		unlink(res->meta_path);
		img_upload_result_free(res);
	}
	return rc;
}

/* source.type url: HEAD the URL, which names the image (LXD-Image-URL) and its
 * fingerprint (LXD-Image-Hash), then download that. */
static int url_run(struct operation *op, cell_error *err)
{
	struct json_job *j = op_data(op);
	const char *url = json_string_value(json_object_get(json_object_get(j->body, "source"), "url"));
	_cleanup_httpc_resp_ struct httpc_resp hr = { 0 };
	_cleanup_httpc_ httpc *h = NULL;
	_cleanup_img_record_ struct img_record rec = { 0 };
	struct img_upload_result res = { 0 };
	struct img_commit_req req;
	struct httpc_url u;
	const char *archs[4];
	char arch_hdr[128] = "LXD-Server-Architectures: ", fname[256];
	const char *hdrs[4] = { "User-Agent: celld/" CELL_VERSION, arch_hdr,
				"LXD-Server-Version: " CELL_VERSION, NULL };
	const char *hash, *iurl, *slash;
	_cleanup_free_ char *full = NULL, *want = NULL;
	size_t na = image_arch_host_supported(archs, 4);
	int rc;

	if (!url || !*url)
		return cell_err(err, 400, EINVAL, "Missing URL");
	for (size_t i = 0; i < na; i++)
		snprintf(arch_hdr + strlen(arch_hdr), sizeof(arch_hdr) - strlen(arch_hdr), "%s%s",
			 i ? ", " : "", archs[i]);
	if ((rc = url_split(url, &u, err)) < 0 ||
	    (rc = httpc_new(&(struct httpc_opts){ .host = u.host, .port = u.port, .tls = true,
						  .timeout_ms = 30000 }, &h, err)) < 0 ||
	    (rc = httpc_request(h, &(struct httpc_req){ .method = "HEAD", .path = u.path[0] ? u.path : "/",
			       .headers = hdrs, HTTPC_REQ_DEFAULTS }, &hr, err)) < 0)
		return cell_err_wrap(err, rc, "Unable to fetch %s", url);
	if (hr.status / 100 != 2)
		return cell_err(err, 400, EIO, "Unable to fetch %s: %d %s", url, hr.status, hr.reason ?: "");
	hash = httpc_resp_header(&hr, "LXD-Image-Hash");
	iurl = httpc_resp_header(&hr, "LXD-Image-URL");
	if (!hash || !*hash)
		return cell_err(err, 400, EINVAL, "Missing LXD-Image-Hash header");
	if (!iurl || !*iurl)
		return cell_err(err, 400, EINVAL, "Missing LXD-Image-URL header");
	want = strdup(hash);
	/* A path on the same server is accepted besides a full URL. */
	full = iurl[0] == '/' ? xasprintf("https://%s:%d%s", u.host, u.port, iurl) : strdup(iurl);
	if (!want || !full)
		return cell_err(err, 500, ENOMEM, "out of memory");
	for (char *p = want; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'F' ? *p + 32 : *p);
	if ((rc = url_fetch(op, full, want, &res, err)) < 0)
		return rc;
	commit_req_from_body(j->body, &req);
	if (!req.filename) {
		slash = strrchr(full, '/');
		snprintf(fname, sizeof(fname), "%s", slash ? slash + 1 : full);
		fname[strcspn(fname, "?#")] = '\0';
		req.filename = fname;
	}
	rc = img_commit(&res, &req, &rec, err);
	img_upload_result_free(&res);
	if (rc == 0)
		set_result_metadata(op, rec.api.fingerprint, rec.api.size);
	return rc;
}

/* source.type instance / container / snapshot: publish through the resolver. */
static int publish_run(struct operation *op, cell_error *err)
{
	struct json_job *j = op_data(op);
	img_instance_resolver resolve = img_get_instance_resolver();
	struct img_instance_tree t = { 0 };
	_cleanup_img_record_ struct img_record rec = { 0 };
	struct img_publish_args a = { 0 };
	_cleanup_json_ json_t *props = NULL;
	const char *k;
	json_t *v;
	int rc;

	if (!resolve)
		return cell_err(err, 501, ENOTSUP, "Publishing instances is not available in this build");
	if ((rc = resolve(j->source_name, &t, err)) < 0)
		return rc;
	props = t.properties ? json_deep_copy(t.properties) : json_object();
	commit_req_from_body(j->body, &a.commit);
	json_object_foreach(a.commit.properties, k, v)
		json_object_set(props, k, v);
	a.commit.properties = NULL;
	a.rootfs_dir = t.rootfs_dir;
	a.templates_dir = t.templates_dir;
	a.unshift = &t.unshift;
	a.architecture = t.architecture;
	a.properties = props;
	a.templates = t.templates;
	a.compression = json_string_value(json_object_get(j->body, "compression_algorithm"));
	a.op = op;
	rc = img_publish_dir(&a, &rec, err);
	img_instance_tree_free(&t);
	if (rc == 0)
		set_result_metadata(op, rec.api.fingerprint, rec.api.size);
	return rc;
}

static const struct op_ops url_ops = { .run = url_run, .free_data = json_job_free };
static const struct op_ops publish_ops = { .run = publish_run, .free_data = json_job_free };

static void post_json(struct img_post *st, http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	json_error_t jerr;
	json_t *src;
	const char *type, *mode, *name;
	const struct op_ops *ops;
	struct json_job *j;
	struct operation *op;
	const char *desc;

	if (!st->json.len) {
		resp_error(resp, 400, "Empty image upload");
		return;
	}
	body = json_loadb(st->json.buf, st->json.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(body)) {
		resp_error(resp, 400, "Invalid JSON in request body: %s", body ? "not an object" : jerr.text);
		return;
	}
	src = json_object_get(body, "source");
	type = json_string_value(json_object_get(src, "type"));
	mode = json_string_value(json_object_get(src, "mode"));
	name = json_string_value(json_object_get(src, "name"));
	if (mode && !strcmp(mode, "push")) {
		resp_error(resp, 501, "Image push mode (upload tokens) is not supported");
		return;
	}
	if (!type || !*type) {
		resp_error(resp, 400, "Invalid images JSON: source.type is required");
		return;
	}
	if (!strcmp(type, "url")) {
		ops = &url_ops;
		desc = "Downloading image";
	} else if (!strcmp(type, "container") || !strcmp(type, "instance") || !strcmp(type, "snapshot")) {
		if (!name || !*name) {
			resp_error(resp, 400, "Invalid images JSON: source.name is required");
			return;
		}
		if (!img_get_instance_resolver()) {
			resp_error(resp, 501, "Publishing instances is not available in this build");
			return;
		}
		ops = &publish_ops;
		desc = "Creating image";
	} else if (!strcmp(type, "virtual-machine")) {
		resp_error(resp, 400, "Virtual machine images are not supported");
		return;
	} else if (!strcmp(type, "image")) {
		resp_error(resp, 501, "Copying images from remote image servers (source type \"image\") "
			   "is not supported yet");
		return;
	} else {
		resp_error(resp, 400, "Invalid images JSON: unknown source type \"%s\"", type);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (!j || (name && !(j->source_name = strdup(name)))) {
		free(j);
		resp_error(resp, 500, "out of memory");
		return;
	}
	j->body = steal_ptr(body);
	op = op_create(OP_CLASS_TASK, desc, NULL, NULL, ops, j);
	if (!op) {
		json_job_free(j);
		resp_error(resp, 500, "out of memory");
		return;
	}
	op_set_may_cancel(op, true);
	op_start(op);
	resp_async(resp, op);
}

static const struct route_body_fns images_post_body = {
	.begin = post_begin, .chunk = post_chunk, .end = post_end,
};

void api_images_register(void)
{
	cell_error err = { 0 };

	/* The store is brought up here: routes are registered once the
	 * database and config are ready, before anything is served. */
	if (img_store_init(&err) < 0)
		log_error("images: %s", err.msg);
	/* Aliases first: "/1.0/images/aliases" must not read as a fingerprint. */
	api_images_aliases_register();
	router_add(&(struct route){
		.pattern = "/1.0/images",
		.methods = {
			/* Untrusted clients see the public images only. */
			{ HTTP_GET, images_get, ROUTE_UNTRUSTED_OK, NULL },
			{ HTTP_POST, images_post_empty, ROUTE_STREAM_BODY, &images_post_body },
		},
	});
	router_add(&(struct route){
		.pattern = "/1.0/images/{fingerprint}",
		.methods = {
			{ HTTP_GET, image_get, ROUTE_UNTRUSTED_OK, NULL },
			{ HTTP_PUT, image_put, 0, NULL },
			{ HTTP_PATCH, image_patch, 0, NULL },
			{ HTTP_DELETE, image_delete, 0, NULL },
		},
	});
	router_add(&(struct route){
		.pattern = "/1.0/images/{fingerprint}/export",
		.methods = { { HTTP_GET, image_export, ROUTE_UNTRUSTED_OK, NULL } },
	});
	router_add(&(struct route){
		.pattern = "/1.0/images/{fingerprint}/refresh",
		.methods = { { HTTP_POST, image_refresh, 0, NULL } },
	});
	api_testing_images_register();
}
