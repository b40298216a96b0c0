/*
 * cell image ...: the image store, as `lxc image` drives it (import, list,
 * info, show, edit, delete, export, refresh, alias create/delete/list/
 * rename), and `cell publish`.
 *
 * Uploads go with a Content-Length (a unified tarball straight from its
 * file; a split image as multipart/form-data assembled on the fly through a
 * pipe, never copied to a temporary file), with a progress line; exports are
 * streamed to their files, a multipart answer split as it arrives.
 */
#include <errno.h>
#include <spawn.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/image.h"
#include "client/api.h"
#include "client/inst.h"
#include "client/output.h"
#include "common/cleanup.h"
#include "common/multipart.h"
#include "common/util.h"

static const char *str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key)) ?: "";
}

static int oom(cell_error *err) { return cell_err(err, 500, ENOMEM, "out of memory"); }

/* LXD's dereferenceAlias: an alias names its target, anything else is taken
 * as a fingerprint (prefix).  Caller frees. */
static int image_fp(struct cli_client *c, const char *name, char **out, cell_error *err)
{
	_cleanup_free_ char *path = cli_api_path("images/aliases", name, NULL);
	_cleanup_json_ json_t *alias = NULL;
	cell_error e2;

	*out = NULL;
	if (!path)
		return oom(err);
	if (cli_get(c, path, &alias, NULL, &e2) == 0 && *str(alias, "target"))
		*out = strdup(str(alias, "target"));
	else
		*out = strdup(name);
	return *out ? 0 : oom(err);
}

static int open_image(struct cli_ctx *ctx, const char *raw, struct cli_obj *o, char **fp, cell_error *err)
{
	int rc = cli_obj_open(ctx, raw, "Image identifier missing", o, err);

	if (rc < 0)
		return rc;
	return image_fp(o->c, o->name, fp, err);
}

/* "Transferring image: 42% (12.34MB/s)" from an upload or download's counters. */
struct xfer_progress {
	struct cli_progress p;
	const char *format;
	int64_t start_ms, last_ms;
};

static int xfer_cb(void *data, uint64_t done, uint64_t total)
{
	struct xfer_progress *x = data;
	int64_t now = util_now_ms();
	char speed[32], text[64];
	_cleanup_free_ char *line = NULL;

	if (!x->p.enabled || (now - x->last_ms < 100 && done < total))
		return 0;
	x->last_ms = now;
	cli_size_si(now > x->start_ms ? (int64_t)(done * 1000 / (uint64_t)(now - x->start_ms)) : 0, speed);
	if (total)
		snprintf(text, sizeof(text), "%d%% (%s/s)", (int)(done * 100 / total), speed);
	else
		snprintf(text, sizeof(text), "%s/s", speed);
	line = xasprintf(x->format, text);
	if (line)
		cli_progress_update(&x->p, line);
	return 0;
}

static void xfer_init(struct xfer_progress *x, struct cli_client *c, const char *format)
{
	cli_progress_init(&x->p, c->quiet);
	x->format = format;
	x->start_ms = x->last_ms = util_now_ms();
}

/* ============================================================= import */

/* A split image as Go's multipart.Writer lays it out, pumped into a pipe. */
struct mp_pump {
	int out;
	const char *head1, *mid, *tail;
	const char *meta, *rootfs;
	int rc;
	cell_error err;
};

static int pump_str(int fd, const char *s, cell_error *err)
{
	for (size_t n = strlen(s); n;) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return cell_err_sys(err, 500, errno, "upload");
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

static int pump_file(int fd, const char *path, cell_error *err)
{
	_cleanup_close_ int in = open(path, O_RDONLY | O_CLOEXEC);
	char buf[65536];
	ssize_t n;

	if (in < 0)
		return cell_err_sys(err, 400, errno, "open %s", path);
	while ((n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return cell_err_sys(err, 500, errno, "read %s", path);
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(fd, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return cell_err_sys(err, 500, errno, "upload");
			off += w;
		}
	}
	return 0;
}

static void *pump_main(void *arg)
{
	struct mp_pump *p = arg;

	if ((p->rc = pump_str(p->out, p->head1, &p->err)) == 0 &&
	    (p->rc = pump_file(p->out, p->meta, &p->err)) == 0 &&
	    (p->rc = pump_str(p->out, p->mid, &p->err)) == 0 &&
	    (p->rc = pump_file(p->out, p->rootfs, &p->err)) == 0)
		p->rc = pump_str(p->out, p->tail, &p->err);
	close(p->out);
	return NULL;
}

static char *quote_name(const char *s)
{
	strbuf sb = { 0 };
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			sb_puts(&sb, "\\");
		sb_append(&sb, s, 1);
	}
	return sb.buf ? sb_steal(&sb) : strdup("");
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

static char *form_escape(const char *s)
{
	strbuf sb = { 0 };
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p))
			sb_append(&sb, p, 1);
		else if (*p == ' ')
			sb_puts(&sb, "+");
		else
			sb_printf(&sb, "%%%02X", *p);
	}
	return sb.buf ? sb_steal(&sb) : strdup("");
}

struct import_args {
	const char *meta, *rootfs;   /* files */
	bool public;
	json_t *properties;
};

/* POST the file(s); *resp gets the decoded answer. */
static int upload(struct cli_client *c, const struct import_args *ia, struct cli_resp *out, cell_error *err)
{
	_cleanup_httpc_resp_ struct httpc_resp h = { 0 };
	_cleanup_free_ char *path = cli_path(c, "/1.0/images");
	_cleanup_free_ char *fname = xasprintf("X-LXD-filename: %s", base_name(ia->meta));
	_cleanup_free_ char *ctype = NULL, *props = NULL, *head1 = NULL, *mid = NULL, *tail = NULL;
	_cleanup_free_ char *qm = NULL, *qr = NULL;
	_cleanup_close_ int fd = -1;
	const char *headers[6];
	struct xfer_progress x;
	struct mp_pump pump = { .out = -1 };
	pthread_t t;
	bool pumping = false;
	struct stat st, st2;
	int64_t len;
	size_t nh = 0;
	int rc, p[2];

	if (!path || !fname)
		return oom(err);
	if (json_object_size(ia->properties)) {
		strbuf sb = { 0 };
		const char *k;
		json_t *v;
		json_object_foreach(ia->properties, k, v) {
			_cleanup_free_ char *ek = form_escape(k), *ev = form_escape(json_string_value(v));
			sb_printf(&sb, "%s%s=%s", sb.len ? "&" : "X-LXD-properties: ", ek, ev);
		}
		props = sb_steal(&sb);
	}
	if (!ia->rootfs) {
		fd = open(ia->meta, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0)
			return cell_err_sys(err, 400, errno, "open %s", ia->meta);
		ctype = strdup("Content-Type: application/octet-stream");
		len = st.st_size;
	} else {
		char boundary[61];
		util_random_hex(boundary, 30);
		if (stat(ia->meta, &st) < 0 || stat(ia->rootfs, &st2) < 0)
			return cell_err_sys(err, 400, errno, "open %s", stat(ia->meta, &st) < 0 ? ia->meta : ia->rootfs);
		qm = quote_name(base_name(ia->meta));
		qr = quote_name(base_name(ia->rootfs));
		head1 = xasprintf("--%s\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"%s\"\r\n"
				  "Content-Type: application/octet-stream\r\n\r\n", boundary, qm);
		mid = xasprintf("\r\n--%s\r\nContent-Disposition: form-data; name=\"rootfs\"; filename=\"%s\"\r\n"
				"Content-Type: application/octet-stream\r\n\r\n", boundary, qr);
		tail = xasprintf("\r\n--%s--\r\n", boundary);
		ctype = xasprintf("Content-Type: multipart/form-data; boundary=%s", boundary);
		if (!head1 || !mid || !tail || !ctype)
			return oom(err);
		len = (int64_t)(strlen(head1) + strlen(mid) + strlen(tail)) + st.st_size + st2.st_size;
		if (pipe2(p, O_CLOEXEC) < 0)
			return cell_err_sys(err, 500, errno, "pipe");
		fd = p[0];
		pump = (struct mp_pump){ .out = p[1], .head1 = head1, .mid = mid, .tail = tail,
					 .meta = ia->meta, .rootfs = ia->rootfs };
		if ((rc = pthread_create(&t, NULL, pump_main, &pump))) {
			close(p[1]);
			return cell_err_sys(err, 500, rc, "upload");
		}
		pumping = true;
	}
	if (!ctype)
		return oom(err);
	headers[nh++] = ctype;
	headers[nh++] = fname;
	if (ia->public)
		headers[nh++] = "X-LXD-public: true";
	if (props)
		headers[nh++] = props;
	headers[nh] = NULL;
	xfer_init(&x, c, "Transferring image: %s");
	rc = httpc_request(c->http, &(struct httpc_req){ .method = "POST", .path = path, .headers = headers,
			   .body_fd = fd, .body_fd_len = len, .out_fd = -1, .progress = xfer_cb,
			   .progress_data = &x }, &h, err);
	cli_progress_done(&x.p);
	if (pumping) {
		/* An early answer leaves the pump blocked on a full pipe. */
		close(fd);
		fd = -1;
		pthread_join(t, NULL);
		if (rc == 0 && pump.rc < 0 && h.status < 300) {
			*err = pump.err;
			rc = pump.rc;
		}
	}
	if (rc < 0)
		return rc;
	return cli_decode(&h, out, err);
}

/* LXD's ensureImageAliases: an alias that exists is moved to this image. */
static int set_aliases(struct cli_client *c, const char *aliases, const char *fp, cell_error *err)
{
	_cleanup_free_ char *copy = aliases ? strdup(aliases) : NULL;
	char *save = NULL;
	int rc;

	for (char *a = copy ? strtok_r(copy, ",", &save) : NULL; a; a = strtok_r(NULL, ",", &save)) {
		_cleanup_free_ char *path = cli_api_path("images/aliases", a, NULL);
		_cleanup_cli_resp_ struct cli_resp r = { 0 };
		_cleanup_json_ json_t *body = json_pack("{s:s, s:s}", "name", a, "target", fp);
		_cleanup_json_ json_t *old = NULL;
		cell_error e2;

		if (!path || !body)
			return oom(err);
		if (cli_get(c, path, &old, NULL, &e2) == 0) {
			_cleanup_cli_resp_ struct cli_resp d = { 0 };
			if ((rc = cli_query(c, "DELETE", path, NULL, NULL, &d, err)) < 0)
				return rc;
		}
		if ((rc = cli_query(c, "POST", "/1.0/images/aliases", body, NULL, &r, err)) < 0)
			return rc;
	}
	return 0;
}

extern char **environ;

/*
 * Pack with GNU tar (always on Debian) rather than libarchive: linking
 * libarchive drags libxml2, ICU and libstdc++ into every `cell` start, which
 * costs each command (exec, list, ...) milliseconds for this rare path.
 */
static int pack_with_tar(const char *dir, int fd, cell_error *err)
{
	char *argv[] = { "tar", "--numeric-owner", "--xattrs", "--acls", "-C", (char *)dir,
			 "-czf", "-", ".", NULL };
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int status, rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd, 1);
	rc = posix_spawnp(&pid, "tar", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc)
		return cell_err_sys(err, 500, rc, "run tar");
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return cell_err_sys(err, 500, errno, "wait for tar");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return cell_err(err, 500, EIO, "tar of %s failed", dir);
	return 0;
}

/* lxc image import of a directory: metadata.yaml, rootfs/, templates/ packed here. */
static int pack_dir(const char *dir, char **out, cell_error *err)
{
	const char *tmpdir = getenv("TMPDIR");
	_cleanup_free_ char *path = xasprintf("%s/cell_image_XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
	_cleanup_close_ int fd = -1;
	int rc;

	if (geteuid() != 0)
		return cell_err(err, 400, EPERM, "Must run as root to import from directory");
	if (!path)
		return oom(err);
	fd = mkstemp(path);
	if (fd < 0)
		return cell_err_sys(err, 500, errno, "create %s", path);
	if ((rc = pack_with_tar(dir, fd, err)) < 0) {
		unlink(path);
		return rc;
	}
	*out = steal_ptr(path);
	return 0;
}

static int is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int run_import(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_json_ json_t *props = json_object();
	_cleanup_json_ json_t *op = NULL;
	_cleanup_cli_resp_ struct cli_resp r = { 0 };
	_cleanup_free_ char *remote = NULL, *packed = NULL;
	_cleanup_client_ struct cli_client *c = NULL;
	const char *image = NULL, *rootfs = NULL, *fp;
	int rc;

	if (!props)
		return oom(err);
	for (int i = 0; i < a->argc; i++) {
		const char *arg = a->argv[i], *eq = strchr(arg, '=');
		if (!eq || access(arg, F_OK) == 0) {
			if (str_has_suffix(arg, ":")) {
				free(remote);
				remote = strndup(arg, strlen(arg) - 1);
			} else if (!image) {
				image = arg;
			} else {
				rootfs = arg;
			}
		} else {
			_cleanup_free_ char *k = strndup(arg, (size_t)(eq - arg));
			if (!k)
				return oom(err);
			json_object_set_new(props, k, json_string(eq + 1));
		}
	}
	if (!image)
		return cell_err(err, 400, EINVAL, "Missing image file");
	if (!strncmp(image, "http://", 7))
		return cell_err(err, 400, EINVAL, "Only https:// is supported for remote image import");
	if ((rc = cli_connect(ctx, remote, &c, err)) < 0)
		return rc;
	if (!strncmp(image, "https://", 8)) {
		_cleanup_json_ json_t *body = json_pack("{s:{s:s, s:s, s:s, s:s}, s:b, s:O}", "source", "type", "url",
							"mode", "pull", "protocol", "direct", "url", image,
							"public", cli_flag(a, "public"), "properties", props);
		if (!body)
			return oom(err);
		rc = cli_query(c, "POST", "/1.0/images", body, NULL, &r, err);
	} else {
		if (is_dir(image)) {
			if ((rc = pack_dir(image, &packed, err)) < 0)
				return rc;
			image = packed;
		}
		rc = upload(c, &(struct import_args){ .meta = image, .rootfs = rootfs,
						      .public = cli_flag(a, "public"), .properties = props }, &r, err);
	}
	if (packed)
		unlink(packed);
	if (rc < 0)
		return rc;
	if (!r.operation)
		return cell_err(err, 500, EPROTO, "The server did not answer with an operation");
	if ((rc = cli_wait_progress(c, r.operation, "%s", &op, err)) < 0)
		return rc;
	fp = str(json_object_get(op, "metadata"), "fingerprint");
	if (!ctx->quiet)
		printf("Image imported with fingerprint: %s\n", fp);
	return set_aliases(c, cli_opt(a, "alias"), fp, err);
}

/* =============================================================== list */

static char *col_alias(json_t *img)
{
	json_t *al = json_object_get(img, "aliases"), *x;
	const char *shortest = "";
	size_t i;

	json_array_foreach(al, i, x) {
		const char *n = str(x, "name");
		if (!*shortest || (*n && strlen(n) < strlen(shortest)))
			shortest = n;
	}
	if (json_array_size(al) > 1)
		return xasprintf("%s (%zu more)", shortest, json_array_size(al) - 1);
	return strdup(shortest);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *col_aliases(json_t *img)
{
	json_t *al = json_object_get(img, "aliases"), *x;
	size_t i, n = json_array_size(al);
	const char **v = calloc(n + 1, sizeof(char *));
	strbuf sb = { 0 };

	if (!v)
		return NULL;
	json_array_foreach(al, i, x)
		v[i] = str(x, "name");
	qsort(v, n, sizeof(char *), cmp_str);
	for (i = 0; i < n; i++)
		sb_printf(&sb, "%s%s", i ? "\n" : "", v[i]);
	free(v);
	return sb.buf ? sb_steal(&sb) : strdup("");
}

static char *upload_date(json_t *img)
{
	struct timespec ts;
	struct tm tm;
	char buf[64];
	int h;

	if (api_image_time_parse(str(img, "uploaded_at"), &ts) < 0)
		return strdup("");
	gmtime_r(&ts.tv_sec, &tm);
	h = tm.tm_hour % 12 ? tm.tm_hour % 12 : 12;
	strftime(buf, sizeof(buf), "%b %-d, %Y at ", &tm);
	return xasprintf("%s%d:%02d%s (UTC)", buf, h, tm.tm_min, tm.tm_hour < 12 ? "am" : "pm");
}

static char *column(char c, json_t *img)
{
	const char *type;

	switch (c) {
	case 'l': return col_alias(img);
	case 'L': return col_aliases(img);
	case 'f': return strndup(str(img, "fingerprint"), 12);
	case 'F': return strdup(str(img, "fingerprint"));
	case 'p': return strdup(json_is_true(json_object_get(img, "public")) ? "yes" : "no");
	case 'd': return strdup(str(json_object_get(img, "properties"), "description"));
	case 'a': return strdup(str(img, "architecture"));
	case 's': return xasprintf("%.2fMB", (double)json_integer_value(json_object_get(img, "size")) / 1024.0 / 1024.0);
	case 'u': return upload_date(img);
	case 't':
		type = str(img, "type");
		{
			char *u = strdup(*type ? type : "container");
			for (char *p = u; p && *p; p++)
				*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
			return u;
		}
	}
	return NULL;
}

static const char *column_name(char c)
{
	switch (c) {
	case 'l': return "ALIAS";
	case 'L': return "ALIASES";
	case 'f': case 'F': return "FINGERPRINT";
	case 'p': return "PUBLIC";
	case 'd': return "DESCRIPTION";
	case 'a': return "ARCHITECTURE";
	case 's': return "SIZE";
	case 'u': return "UPLOAD DATE";
	case 't': return "TYPE";
	}
	return NULL;
}

/* lxc's dotPrefixMatch: "os" matches "os", "u.k" matches "user.key". */
static bool dot_prefix_match(const char *shortk, const char *full)
{
	_cleanup_free_ char *s = strdup(shortk), *f = strdup(full);
	char *sp = NULL, *fp = NULL, *a, *b;

	if (!s || !f)
		return false;
	for (a = strtok_r(s, ".", &sp), b = strtok_r(f, ".", &fp); a || b;
	     a = strtok_r(NULL, ".", &sp), b = strtok_r(NULL, ".", &fp))
		if (!a || !b || strncmp(b, a, strlen(a)))
			return false;
	return true;
}

static bool value_matches(const char *pattern, const char *v)
{
	_cleanup_free_ char *re = NULL;
	regex_t r;
	bool m;

	if (strchr(pattern, '^') || strchr(pattern, '$'))
		re = strdup(pattern);
	else
		re = xasprintf("^(%s)$", pattern);
	if (!re || regcomp(&r, re, REG_EXTENDED | REG_NOSUB))
		return !strcmp(pattern, v);
	m = regexec(&r, v, 0, NULL, 0) == 0;
	regfree(&r);
	return m;
}

/* lxc's imageShouldShow: key=value on properties (or a field), else part of
 * an alias name or of the fingerprint; every filter must match. */
static bool should_show(json_t *img, char **filters, int n)
{
	for (int i = 0; i < n; i++) {
		const char *f = filters[i], *eq = strchr(f, '=');
		bool found = false;

		if (eq) {
			_cleanup_free_ char *key = strndup(f, (size_t)(eq - f));
			const char *k, *value = eq + 1;
			json_t *v, *field;
			json_object_foreach(json_object_get(img, "properties"), k, v)
				if (key && dot_prefix_match(key, k) && value_matches(value, json_string_value(v) ?: "")) {
					found = true;
					break;
				}
			if (!found && key && (field = json_object_get(img, key))) {
				_cleanup_free_ char *s = json_is_string(field) ? strdup(json_string_value(field))
							 : json_dumps(field, JSON_ENCODE_ANY);
				found = s && !strcmp(s, value);
			}
		} else {
			json_t *al = json_object_get(img, "aliases"), *x;
			size_t j;
			json_array_foreach(al, j, x)
				if (strstr(str(x, "name"), f))
					found = true;
			if (strstr(str(img, "fingerprint"), f))
				found = true;
		}
		if (!found)
			return false;
	}
	return true;
}

static int run_list(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	const char *cols = cli_opt(a, "columns");
	_cleanup_obj_ struct cli_obj o = { 0 };
	_cleanup_json_ json_t *list = NULL;
	_cleanup_json_ json_t *raw = json_array();
	_cleanup_table_ struct cli_table *t = NULL;
	_cleanup_strv_ char **filters = calloc((size_t)a->argc + 2, sizeof(char *));
	const char *header[16];
	char colv[16];
	enum cli_format fmt;
	size_t ncol = 0, i;
	int nf = 0, rc;
	json_t *img;

	if (!raw || !filters)
		return oom(err);
	for (const char *p = cols ? cols : "lfpdatsu"; *p; p++) {
		if (*p == ',')
			continue;
		if (!column_name(*p) || ncol == sizeof(colv))
			return cell_err(err, 400, EINVAL, "Unknown column shorthand char '%c' in '%s'", *p, cols);
		colv[ncol] = *p;
		header[ncol++] = column_name(*p);
	}
	if ((rc = cli_format_parse(cli_opt(a, "format"), &fmt, err)) < 0 ||
	    (rc = cli_obj_open(ctx, a->argc ? a->argv[0] : NULL, NULL, &o, err)) < 0)
		return rc;
	if (*o.name)
		filters[nf++] = strdup(o.name);
	for (int k = 1; k < a->argc; k++)
		filters[nf++] = strdup(a->argv[k]);
	if (!(t = cli_table_new(ncol, header)))
		return oom(err);
	if ((rc = cli_get(o.c, "/1.0/images?recursion=1", &list, NULL, err)) < 0)
		return rc;
	json_array_foreach(list, i, img) {
		char *row[16] = { 0 };
		if (!should_show(img, filters, nf))
			continue;
		json_array_append(raw, img);
		for (size_t k = 0; k < ncol; k++)
			row[k] = column(colv[k], img);
		rc = cli_table_add(t, (const char *const *)row);
		for (size_t k = 0; k < ncol; k++)
			free(row[k]);
		if (rc < 0)
			return oom(err);
	}
	cli_table_sort(t);
	return cli_render(stdout, fmt, t, raw, err);
}

/* ====================================================== info, show, edit */

static int key_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int run_info(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = { 0 };
	_cleanup_free_ char *fp = NULL, *path = NULL;
	_cleanup_json_ json_t *img = NULL;
	_cleanup_free_ const char **keys = NULL;
	json_t *props, *al, *x, *us, *prof;
	const char *k;
	char t[32];
	size_t i, n = 0;
	int rc;

	if ((rc = open_image(ctx, a->argv[0], &o, &fp, err)) < 0)
		return rc;
	if (!(path = cli_api_path("images", fp, NULL)))
		return oom(err);
	if ((rc = cli_get(o.c, path, &img, NULL, err)) < 0)
		return rc;
	printf("Fingerprint: %s\n", str(img, "fingerprint"));
	printf("Size: %.2fMB\n", (double)json_integer_value(json_object_get(img, "size")) / 1024.0 / 1024.0);
	printf("Architecture: %s\n", str(img, "architecture"));
	printf("Type: %s\n", *str(img, "type") ? str(img, "type") : "container");
	printf("Public: %s\n", json_is_true(json_object_get(img, "public")) ? "yes" : "no");
	printf("Timestamps:\n");
	if (cli_time_is_set(str(img, "created_at"))) {
		cli_format_time_utc(str(img, "created_at"), t);
		printf("    Created: %s\n", t);
	}
	cli_format_time_utc(str(img, "uploaded_at"), t);
	printf("    Uploaded: %s\n", t);
	if (cli_time_is_set(str(img, "expires_at"))) {
		cli_format_time_utc(str(img, "expires_at"), t);
		printf("    Expires: %s\n", t);
	} else {
		printf("    Expires: never\n");
	}
	if (cli_time_is_set(str(img, "last_used_at"))) {
		cli_format_time_utc(str(img, "last_used_at"), t);
		printf("    Last used: %s\n", t);
	} else {
		printf("    Last used: never\n");
	}
	printf("Properties:\n");
	props = json_object_get(img, "properties");
	keys = calloc(json_object_size(props) + 1, sizeof(char *));
	json_object_foreach(props, k, x)
		if (keys)
			keys[n++] = k;
	if (keys)
		qsort(keys, n, sizeof(char *), key_cmp);
	for (i = 0; i < n; i++)
		printf("    %s: %s\n", keys[i], str(props, keys[i]));
	printf("Aliases:\n");
	al = json_object_get(img, "aliases");
	json_array_foreach(al, i, x) {
		if (*str(x, "description"))
			printf("    - %s (%s)\n", str(x, "name"), str(x, "description"));
		else
			printf("    - %s\n", str(x, "name"));
	}
	printf("Cached: %s\n", json_is_true(json_object_get(img, "cached")) ? "yes" : "no");
	printf("Auto update: %s\n", json_is_true(json_object_get(img, "auto_update")) ? "enabled" : "disabled");
	if (json_is_object(us = json_object_get(img, "update_source"))) {
		printf("Source:\n");
		printf("    Server: %s\n", str(us, "server"));
		printf("    Protocol: %s\n", str(us, "protocol"));
		printf("    Alias: %s\n", str(us, "alias"));
	}
	prof = json_object_get(img, "profiles");
	if (!json_array_size(prof)) {
		printf("Profiles: []\n");
	} else {
		printf("Profiles:\n");
		json_array_foreach(prof, i, x)
			printf("    - %s\n", json_string_value(x) ?: "");
	}
	return 0;
}

/* api.ImagePut in Go field order, as `lxc image show` prints it. */
static json_t *image_writable(json_t *img)
{
	static const char *const keys[] = { "auto_update", "properties", "public", "expires_at", "profiles", NULL };
	return cli_json_pick(img, keys);
}

static int run_show(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = { 0 };
	_cleanup_free_ char *fp = NULL, *path = NULL;
	_cleanup_json_ json_t *img = NULL, *w = NULL;
	int rc;

	if ((rc = open_image(ctx, a->argv[0], &o, &fp, err)) < 0)
		return rc;
	if (!(path = cli_api_path("images", fp, NULL)))
		return oom(err);
	if ((rc = cli_get(o.c, path, &img, NULL, err)) < 0)
		return rc;
	if (!(w = image_writable(img)))
		return oom(err);
	return cli_print_yaml(stdout, w, 0, err);
}

static const char image_edit_help[] =
	"### This is a YAML representation of the image properties.\n"
	"### Any line starting with a '# will be ignored.\n"
	"###\n"
	"### Each property is represented by a single line:\n"
	"### An example would be:\n"
	"###  description: My custom image";

struct edit_ctx {
	struct cli_client *c;
	const char *path;
	const char *etag;
};

static int apply_edit(const char *text, size_t len, void *arg, cell_error *err)
{
	static const char *const string_keys[] = { "properties", NULL };
	struct edit_ctx *e = arg;
	_cleanup_json_ json_t *body = NULL;
	_cleanup_cli_resp_ struct cli_resp r = { 0 };
	int rc = cli_yaml_object(text, len, string_keys, &body, err);

	if (rc < 0)
		return rc;
	/* YAML reads an unquoted timestamp as text already; Go's zero time stays zero. */
	return cli_query(e->c, "PUT", e->path, body, e->etag, &r, err);
}

static int run_edit(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = { 0 };
	_cleanup_free_ char *fp = NULL, *path = NULL, *etag = NULL;
	_cleanup_json_ json_t *img = NULL, *w = NULL;
	struct edit_ctx e;
	int rc;

	if ((rc = open_image(ctx, a->argv[0], &o, &fp, err)) < 0)
		return rc;
	if (!(path = cli_api_path("images", fp, NULL)))
		return oom(err);
	e = (struct edit_ctx){ o.c, path, NULL };
	if (!isatty(STDIN_FILENO))
		return cli_edit_stdin(apply_edit, &e, err);
	if ((rc = cli_get(o.c, path, &img, &etag, err)) < 0)
		return rc;
	if (!(w = image_writable(img)))
		return oom(err);
	e.etag = etag;
	return cli_edit_object(w, image_edit_help, apply_edit, &e, err);
}

/* =================================================== delete, refresh */

static int run_delete(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	for (int i = 0; i < a->argc; i++) {
		_cleanup_obj_ struct cli_obj o = { 0 };
		_cleanup_free_ char *fp = NULL, *path = NULL;
		int rc;

		if ((rc = open_image(ctx, a->argv[i], &o, &fp, err)) < 0)
			return rc;
		if (!(path = cli_api_path("images", fp, NULL)))
			return oom(err);
		if ((rc = cli_query_wait(o.c, "DELETE", path, NULL, NULL, NULL, err)) < 0)
			return rc;
	}
	return 0;
}

static int run_refresh(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	for (int i = 0; i < a->argc; i++) {
		_cleanup_obj_ struct cli_obj o = { 0 };
		_cleanup_free_ char *fp = NULL, *path = NULL;
		_cleanup_json_ json_t *op = NULL;
		int rc;

		if ((rc = open_image(ctx, a->argv[i], &o, &fp, err)) < 0)
			return rc;
		if (!(path = cli_api_path("images", fp, "/refresh")))
			return oom(err);
		if ((rc = cli_query_wait(o.c, "POST", path, NULL, NULL, &op, err)) < 0)
			return rc;
		if (json_is_true(json_object_get(json_object_get(op, "metadata"), "refreshed")))
			printf("Image refreshed successfully!\n");
		else
			printf("Image already up to date.\n");
	}
	return 0;
}

/* ============================================================= export */

struct export_sink {
	int in;                      /* pipe from the download */
	int meta_fd, rootfs_fd;
	bool multipart;
	struct mp_parser *mp;
	int part;
	char names[2][256];
	uint64_t sizes[2];
	int rc;
	cell_error err;
};

static int ex_write(int fd, const void *buf, size_t len, cell_error *err)
{
	const char *b = buf;
	while (len) {
		ssize_t w = write(fd, b, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return cell_err_sys(err, 500, errno, "write the image");
		b += w;
		len -= (size_t)w;
	}
	return 0;
}

static int ex_begin(void *d, const char *name, const char *filename, cell_error *err)
{
	struct export_sink *s = d;

	if (s->part == 2)
		return cell_err(err, 502, EPROTO, "Invalid multipart image: more than two parts");
	if (s->part == 0 && strcmp(name, "metadata"))
		return cell_err(err, 502, EPROTO, "Invalid multipart image");
	if (s->part == 1 && strcmp(name, "rootfs"))
		return cell_err(err, 502, EPROTO, "Invalid multipart image");
	snprintf(s->names[s->part], sizeof(s->names[0]), "%s", base_name(filename));
	s->part++;
	return 0;
}

static int ex_data(void *d, const void *buf, size_t len, cell_error *err)
{
	struct export_sink *s = d;
	s->sizes[s->part - 1] += len;
	return ex_write(s->part == 1 ? s->meta_fd : s->rootfs_fd, buf, len, err);
}

static int ex_end(void *d, cell_error *err) { return 0; }

static const struct mp_callbacks ex_cb = { ex_begin, ex_data, ex_end };

/* A multipart answer starts "--<boundary>\r\n"; a tarball never does. */
static int ex_sniff(struct export_sink *s, const char *buf, size_t len, cell_error *err)
{
	char boundary[MP_BOUNDARY_MAX + 1];
	const char *crlf;
	size_t bl;

	if (len < 2 || memcmp(buf, "--", 2) || !(crlf = memmem(buf, len, "\r\n", 2)))
		return 0;
	bl = (size_t)(crlf - buf - 2);
	if (!bl || bl > MP_BOUNDARY_MAX)
		return 0;
	memcpy(boundary, buf + 2, bl);
	boundary[bl] = '\0';
	s->multipart = true;
	return mp_new(boundary, &ex_cb, s, &s->mp, err);
}

static void *export_sink_main(void *arg)
{
	struct export_sink *s = arg;
	char buf[65536];
	size_t have = 0;
	bool decided = false;
	ssize_t n;

	while ((n = read(s->in, buf + have, sizeof(buf) - have)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			s->rc = cell_err_sys(&s->err, 500, errno, "read the download");
			break;
		}
		have += (size_t)n;
		if (!decided) {
			/* Enough to see the first line of a multipart answer. */
			if (have < MP_BOUNDARY_MAX + 8 && n > 0)
				continue;
			decided = true;
			if ((s->rc = ex_sniff(s, buf, have, &s->err)) < 0)
				break;
		}
		s->rc = s->multipart ? mp_feed(s->mp, buf, have, &s->err)
				     : ex_write(s->meta_fd, buf, have, &s->err);
		if (!s->multipart)
			s->sizes[0] += have;
		have = 0;
		if (s->rc < 0)
			break;
	}
	if (s->rc == 0 && !decided && have) {
		if ((s->rc = ex_sniff(s, buf, have, &s->err)) == 0) {
			s->rc = s->multipart ? mp_feed(s->mp, buf, have, &s->err) : ex_write(s->meta_fd, buf, have, &s->err);
			if (!s->multipart)
				s->sizes[0] += have;
		}
	}
	if (s->rc == 0 && s->multipart)
		s->rc = mp_finish(s->mp, &s->err);
	/* Drain what is left so the download never blocks on a full pipe. */
	while (s->rc < 0 && (n = read(s->in, buf, sizeof(buf))) != 0)
		if (n < 0 && errno != EINTR)
			break;
	close(s->in);
	return NULL;
}

/* "inline;filename=<fp>.tar.gz" -> "<fp>.tar.gz" */
static void disposition_name(const char *cd, char out[256])
{
	const char *p = cd ? strcasestr(cd, "filename=") : NULL;

	out[0] = '\0';
	if (!p)
		return;
	char tmp[256];

	p += 9;
	if (*p == '"')
		p++;
	snprintf(tmp, sizeof(tmp), "%.*s", (int)strcspn(p, "\";"), p);
	snprintf(out, 256, "%s", base_name(tmp));
}

static int run_export(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = { 0 };
	_cleanup_free_ char *fp = NULL, *path = NULL, *full = NULL, *meta_path = NULL, *rootfs_path = NULL;
	_cleanup_httpc_resp_ struct httpc_resp h = { 0 };
	const char *target = a->argc > 1 ? a->argv[1] : ".";
	bool target_dir = is_dir(target);
	struct export_sink s = { .meta_fd = -1, .rootfs_fd = -1 };
	struct xfer_progress x;
	pthread_t t;
	int p[2], rc;

	if ((rc = open_image(ctx, a->argv[0], &o, &fp, err)) < 0)
		return rc;
	path = cli_api_path("images", fp, "/export");
	full = path ? cli_path(o.c, path) : NULL;
	meta_path = target_dir ? xasprintf("%s/%s", target, fp) : strdup(target);
	rootfs_path = meta_path ? xasprintf("%s.root", meta_path) : NULL;
	if (!full || !meta_path || !rootfs_path)
		return oom(err);
	s.meta_fd = open(meta_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (s.meta_fd < 0)
		return cell_err_sys(err, 400, errno, "open %s", meta_path);
	s.rootfs_fd = open(rootfs_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (s.rootfs_fd < 0 || pipe2(p, O_CLOEXEC) < 0) {
		rc = cell_err_sys(err, 400, errno, "open %s", rootfs_path);
		close(s.meta_fd);
		if (s.rootfs_fd >= 0)
			close(s.rootfs_fd);
		unlink(meta_path);
		unlink(rootfs_path);
		return rc;
	}
	s.in = p[0];
	if ((rc = pthread_create(&t, NULL, export_sink_main, &s))) {
		close(p[0]);
		close(p[1]);
		rc = cell_err_sys(err, 500, rc, "export");
		goto fail;
	}
	xfer_init(&x, o.c, "Exporting the image: %s");
	rc = httpc_request(o.c->http, &(struct httpc_req){ .method = "GET", .path = full, .body_fd = -1,
			   .out_fd = p[1], .progress = xfer_cb, .progress_data = &x }, &h, err);
	close(p[1]);
	pthread_join(t, NULL);
	cli_progress_done(&x.p);
	if (rc == 0 && h.status != 200) {
		struct cli_resp r = { 0 };
		rc = cli_decode(&h, &r, err);
		cli_resp_free(&r);
		if (rc == 0)
			rc = cell_err(err, h.status, EIO, "Unable to fetch %s: %d", full, h.status);
	}
	if (rc == 0 && s.rc < 0) {
		*err = s.err;
		rc = s.rc;
	}
	if (rc < 0)
		goto fail;
	close(s.meta_fd);
	close(s.rootfs_fd);
	s.meta_fd = s.rootfs_fd = -1;
	if (!s.multipart) {
		unlink(rootfs_path);
		disposition_name(httpc_resp_header(&h, "Content-Disposition"), s.names[0]);
	}
	if (target_dir) {
		_cleanup_free_ char *mdst = s.names[0][0] ? xasprintf("%s/%s", target, s.names[0]) : NULL;
		_cleanup_free_ char *rdst = s.names[1][0] ? xasprintf("%s/%s", target, s.names[1]) : NULL;
		if (mdst && rename(meta_path, mdst) < 0)
			return cell_err_sys(err, 500, errno, "rename %s", meta_path);
		if (s.multipart && rdst && rename(rootfs_path, rdst) < 0)
			return cell_err_sys(err, 500, errno, "rename %s", rootfs_path);
	} else if (!s.multipart && a->argc > 1 && strchr(s.names[0], '.')) {
		/* As lxc: the server's extension is added to a file target. */
		_cleanup_free_ char *dst = xasprintf("%s.%s", meta_path, strchr(s.names[0], '.') + 1);
		if (dst && rename(meta_path, dst) < 0)
			return cell_err_sys(err, 500, errno, "rename %s", meta_path);
	}
	if (!ctx->quiet)
		printf("Image exported successfully!\n");
	mp_free(s.mp);
	return 0;
fail:
	mp_free(s.mp);
	if (s.meta_fd >= 0)
		close(s.meta_fd);
	if (s.rootfs_fd >= 0)
		close(s.rootfs_fd);
	unlink(meta_path);
	unlink(rootfs_path);
	return rc;
}

/* ============================================================== alias */

static int run_alias_create(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = { 0 };
	_cleanup_cli_resp_ struct cli_resp r = { 0 };
	_cleanup_json_ json_t *body = NULL;
	int rc;

	if ((rc = cli_obj_open(ctx, a->argv[0], "Alias name missing", &o, err)) < 0)
		return rc;
	body = json_pack("{s:s, s:s, s:s}", "name", o.name, "target", a->argv[1], "description",
			 cli_opt(a, "description") ?: "");
	if (!body)
		return oom(err);
	return cli_query(o.c, "POST", "/1.0/images/aliases", body, NULL, &r, err);
}

static int run_alias_delete(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = { 0 };
	_cleanup_cli_resp_ struct cli_resp r = { 0 };
	_cleanup_free_ char *path = NULL;
	int rc;

	if ((rc = cli_obj_open(ctx, a->argv[0], "Alias name missing", &o, err)) < 0)
		return rc;
	if (!(path = cli_api_path("images/aliases", o.name, NULL)))
		return oom(err);
	return cli_query(o.c, "DELETE", path, NULL, NULL, &r, err);
}

static int run_alias_rename(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = { 0 };
	_cleanup_cli_resp_ struct cli_resp r = { 0 };
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *body = NULL;
	int rc;

	if ((rc = cli_obj_open(ctx, a->argv[0], "Alias name missing", &o, err)) < 0)
		return rc;
	if (!(path = cli_api_path("images/aliases", o.name, NULL)) ||
	    !(body = json_pack("{s:s}", "name", a->argv[1])))
		return oom(err);
	return cli_query(o.c, "POST", path, body, NULL, &r, err);
}

static int run_alias_list(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	static const char *const header[] = { "ALIAS", "FINGERPRINT", "TYPE", "DESCRIPTION" };
	_cleanup_obj_ struct cli_obj o = { 0 };
	_cleanup_json_ json_t *list = NULL, *raw = json_array();
	_cleanup_table_ struct cli_table *t = cli_table_new(4, header);
	enum cli_format fmt;
	json_t *al;
	size_t i;
	int rc;

	if (!t || !raw)
		return oom(err);
	if ((rc = cli_format_parse(cli_opt(a, "format"), &fmt, err)) < 0 ||
	    (rc = cli_obj_open(ctx, a->argc ? a->argv[0] : NULL, NULL, &o, err)) < 0 ||
	    (rc = cli_get(o.c, "/1.0/images/aliases?recursion=1", &list, NULL, err)) < 0)
		return rc;
	json_array_foreach(list, i, al) {
		_cleanup_free_ char *fp12 = strndup(str(al, "target"), 12);
		_cleanup_free_ char *type = strdup(*str(al, "type") ? str(al, "type") : "container");
		const char *row[4];
		bool show = !*o.name && a->argc < 2;
		/* lxc: any filter matching part of the name or target shows it */
		if (*o.name && (strstr(str(al, "name"), o.name) || strstr(str(al, "target"), o.name)))
			show = true;
		for (int k = 1; k < a->argc; k++)
			if (strstr(str(al, "name"), a->argv[k]) || strstr(str(al, "target"), a->argv[k]))
				show = true;
		if (!show)
			continue;
		for (char *p = type; p && *p; p++)
			*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
		row[0] = str(al, "name");
		row[1] = fp12;
		row[2] = type;
		row[3] = str(al, "description");
		json_array_append(raw, al);
		if (cli_table_add(t, row) < 0)
			return oom(err);
	}
	cli_table_sort(t);
	return cli_render(stdout, fmt, t, raw, err);
}

/* ============================================================ publish */

static int run_publish(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = { 0 };
	_cleanup_json_ json_t *props = json_object(), *aliases = json_array(), *body = NULL, *op = NULL;
	_cleanup_cli_resp_ struct cli_resp r = { 0 };
	_cleanup_free_ char *alias_list = cli_opt(a, "alias") ? strdup(cli_opt(a, "alias")) : NULL;
	const char *dest = NULL, *fp;
	char *save = NULL;
	int rc;

	if (!props || !aliases)
		return oom(err);
	for (int i = 1; i < a->argc; i++) {
		const char *eq = strchr(a->argv[i], '=');
		if (eq) {
			_cleanup_free_ char *k = strndup(a->argv[i], (size_t)(eq - a->argv[i]));
			json_object_set_new(props, k, json_string(eq + 1));
		} else {
			dest = a->argv[i];
		}
	}
	if ((rc = cli_obj_open(ctx, a->argv[0], "Instance name missing", &o, err)) < 0)
		return rc;
	if (dest && str_has_suffix(dest, ":") && strncmp(dest, o.remote, strlen(dest) - 1))
		return cell_err(err, 400, EINVAL, "Publishing to another remote is not supported");
	for (char *n = alias_list ? strtok_r(alias_list, ",", &save) : NULL; n; n = strtok_r(NULL, ",", &save))
		json_array_append_new(aliases, json_pack("{s:s}", "name", n));
	body = json_pack("{s:{s:s, s:s}, s:b, s:O, s:O}", "source", "type",
			 cli_is_snapshot(o.name) ? "snapshot" : "instance", "name", o.name,
			 "public", cli_flag(a, "public"), "properties", props, "aliases", aliases);
	if (!body)
		return oom(err);
	if (cli_opt(a, "compression"))
		json_object_set_new(body, "compression_algorithm", json_string(cli_opt(a, "compression")));
	if ((rc = cli_query(o.c, "POST", "/1.0/images", body, NULL, &r, err)) < 0)
		return rc;
	if (!r.operation)
		return cell_err(err, 500, EPROTO, "The server did not answer with an operation");
	if ((rc = cli_wait_progress(o.c, r.operation, "Publishing instance: %s", &op, err)) < 0)
		return rc;
	fp = str(json_object_get(op, "metadata"), "fingerprint");
	if (!ctx->quiet)
		printf("Instance published with fingerprint: %s\n", fp);
	return 0;
}

/* ============================================================ commands */

static const struct cli_opt import_opts[] = {
	{ "alias", 0, CLI_OPT_LIST, "New aliases to add to the image", NULL },
	{ "public", 0, CLI_OPT_BOOL, "Make image public", NULL },
	{ 0 },
};

static const struct cli_opt list_opts[] = {
	{ "columns", 'c', CLI_OPT_STRING, "Columns", "lfpdatsu" },
	{ "format", 'f', CLI_OPT_STRING, "Format (csv|json|table|yaml|compact)", "table" },
	{ 0 },
};

static const struct cli_opt format_opts[] = {
	{ "format", 'f', CLI_OPT_STRING, "Format (csv|json|table|yaml|compact)", "table" },
	{ 0 },
};

static const struct cli_opt alias_create_opts[] = {
	{ "description", 0, CLI_OPT_STRING, "Alias description", NULL },
	{ 0 },
};

static const struct cli_command img_import = {
	.name = "import",
	.usage = "<tarball>|<directory>|<URL> [<rootfs tarball>] [<remote>:] [key=value...]",
	.short_help = "Import images into the image store",
	.long_help = "Import image into the image store\n\n"
		     "Directory import is only available on Linux and must be performed as root.",
	.opts = import_opts, .run = run_import, .min_args = 1, .max_args = -1,
};

static const struct cli_command img_list = {
	.name = "list", .aliases = "ls", .usage = "[<remote>:] [<filter>...]",
	.short_help = "List images",
	.long_help = "List images\n\n"
		     "Filters may be of the <key>=<value> form for property based filtering,\n"
		     "or part of the image hash or part of the image alias name.\n\n"
		     "The -c option takes a (optionally comma-separated) list of arguments\n"
		     "that control which image attributes to output when displaying in table\n"
		     "or csv format.\n\n"
		     "Default column layout is: lfpdasu\n\n"
		     "Column shorthand chars:\n\n"
		     "    l - Shortest image alias (and optionally number of other aliases)\n"
		     "    L - Newline-separated list of all image aliases\n"
		     "    f - Fingerprint (short)\n"
		     "    F - Fingerprint (long)\n"
		     "    p - Whether image is public\n"
		     "    d - Description\n"
		     "    a - Architecture\n"
		     "    s - Size\n"
		     "    u - Upload date\n"
		     "    t - Type",
	.opts = list_opts, .run = run_list, .max_args = -1,
};

static const struct cli_command img_info = {
	.name = "info", .usage = "[<remote>:]<image>", .short_help = "Show useful information about images",
	.run = run_info, .min_args = 1, .max_args = 1,
};

static const struct cli_command img_show = {
	.name = "show", .usage = "[<remote>:]<image>", .short_help = "Show image properties",
	.run = run_show, .min_args = 1, .max_args = 1,
};

static const struct cli_command img_edit = {
	.name = "edit", .usage = "[<remote>:]<image>", .short_help = "Edit image properties",
	.examples = "cell image edit <image>\n"
		    "    Launch a text editor to edit the properties\n\n"
		    "cell image edit <image> < image.yaml\n"
		    "    Load the image properties from a YAML file",
	.run = run_edit, .min_args = 1, .max_args = 1,
};

static const struct cli_command img_delete = {
	.name = "delete", .aliases = "rm", .usage = "[<remote>:]<image> [[<remote>:]<image>...]",
	.short_help = "Delete images", .run = run_delete, .min_args = 1, .max_args = -1,
};

static const struct cli_command img_export = {
	.name = "export", .usage = "[<remote>:]<image> [<target>]",
	.short_help = "Export and download images",
	.long_help = "Export and download images\n\n"
		     "The output target is optional and defaults to the working directory.",
	.run = run_export, .min_args = 1, .max_args = 2,
};

static const struct cli_command img_refresh = {
	.name = "refresh", .usage = "[<remote>:]<image> [[<remote>:]<image>...]",
	.short_help = "Refresh images", .run = run_refresh, .min_args = 1, .max_args = -1,
};

static const struct cli_command alias_create = {
	.name = "create", .aliases = "add", .usage = "[<remote>:]<alias> <fingerprint>",
	.short_help = "Create aliases for existing images", .opts = alias_create_opts,
	.run = run_alias_create, .min_args = 2, .max_args = 2,
};

static const struct cli_command alias_delete = {
	.name = "delete", .aliases = "rm", .usage = "[<remote>:]<alias>",
	.short_help = "Delete image aliases", .run = run_alias_delete, .min_args = 1, .max_args = 1,
};

static const struct cli_command alias_list = {
	.name = "list", .aliases = "ls", .usage = "[<remote>:] [<filters>...]",
	.short_help = "List image aliases",
	.long_help = "List image aliases\n\n"
		     "Filters may be part of the image hash or part of the image alias name.",
	.opts = format_opts, .run = run_alias_list, .max_args = -1,
};

static const struct cli_command alias_rename = {
	.name = "rename", .aliases = "mv", .usage = "[<remote>:]<alias> <new-name>",
	.short_help = "Rename aliases", .run = run_alias_rename, .min_args = 2, .max_args = 2,
};

static const struct cli_command *const alias_subs[] = {
	&alias_create, &alias_delete, &alias_list, &alias_rename, NULL,
};

static const struct cli_command img_alias = {
	.name = "alias", .short_help = "Manage image aliases", .subs = alias_subs,
};

static const struct cli_command *const image_subs[] = {
	&img_alias, &img_delete, &img_edit, &img_export, &img_import, &img_info, &img_list,
	&img_refresh, &img_show, NULL,
};

const struct cli_command cli_cmd_image = {
	.name = "image",
	.short_help = "Manage images",
	.long_help = "Manage images\n\n"
		     "Images are identified by their fingerprint (a unique prefix is enough) or\n"
		     "an alias; \"[<remote>:]\" picks the server.",
	.subs = image_subs,
};

static const struct cli_opt publish_opts[] = {
	{ "alias", 0, CLI_OPT_LIST, "New alias to define at target", NULL },
	{ "compression", 0, CLI_OPT_STRING, "Compression algorithm to use (none for uncompressed)", NULL },
	{ "public", 0, CLI_OPT_BOOL, "Make the image public", NULL },
	{ 0 },
};

const struct cli_command cli_cmd_publish = {
	.name = "publish",
	.usage = "[<remote>:]<instance>[/<snapshot>] [<remote>:] [flags] [key=value...]",
	.short_help = "Publish instances as images",
	.opts = publish_opts, .run = run_publish, .min_args = 1, .max_args = -1,
};
