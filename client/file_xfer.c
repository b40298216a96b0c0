/* The transfers behind `cell file`: see file.h. */
#include "client/file.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/inst.h"
#include "common/cleanup.h"
#include "common/strbuf.h"
#include "common/util.h"

/* ------------------------------------------------------------- progress */

/* LXD's "Pushing a to c1/b: 42% (12.34MB/s)", redrawn at most every 100 ms. */
struct xfer_progress {
	struct cli_progress p;
	const char *label;
	int64_t start_ms, last_ms;
};

static int xfer_cb(void *data, uint64_t done, uint64_t total)
{
	struct xfer_progress *x = data;
	int64_t now = util_now_ms();
	char speed[32], size[32], text[80];
	_cleanup_free_ char *line = NULL;

	if (!x->p.enabled || (now - x->last_ms < 100 && done < total))
		return 0;
	x->last_ms = now;
	cli_size_si(now > x->start_ms ? (int64_t)(done * 1000 / (uint64_t)(now - x->start_ms)) : 0, speed);
	if (total) {
		snprintf(text, sizeof(text), "%d%% (%s/s)", (int)(done * 100 / total), speed);
	} else {
		cli_size_si((int64_t)done, size);
		snprintf(text, sizeof(text), "%s (%s/s)", size, speed);
	}
	if ((line = xasprintf("%s%s", x->label, text)))
		cli_progress_update(&x->p, line);
	return 0;
}

static void xfer_init(struct xfer_progress *x, struct cli_file_inst *f, const char *label)
{
	cli_progress_init(&x->p, f->quiet || !label);
	x->label = label;
	x->start_ms = x->last_ms = util_now_ms();
}

/* ----------------------------------------------------------------- paths */

/* The API path of a file, without the project (cli_query adds it). */
static char *files_rel_path(struct cli_file_inst *f, const char *path)
{
	_cleanup_free_ char *esc = httpc_escape(path);
	_cleanup_free_ char *suffix = esc ? xasprintf("/files?path=%s", esc) : NULL;

	return suffix ? cli_inst_path(f->name, suffix) : NULL;
}

static char *files_path(struct cli_file_inst *f, const char *path)
{
	_cleanup_free_ char *p = files_rel_path(f, path);

	return p ? cli_path(f->c, p) : NULL;
}

enum cli_file_type cli_file_type_of(const char *s)
{
	if (!s || !strcmp(s, "file"))
		return CLI_FILE_FILE;   /* servers before file types sent no header */
	if (!strcmp(s, "directory"))
		return CLI_FILE_DIRECTORY;
	if (!strcmp(s, "symlink"))
		return CLI_FILE_SYMLINK;
	return CLI_FILE_UNKNOWN;
}

static int64_t header_int(const struct httpc_resp *h, const char *name, int base)
{
	const char *v = httpc_resp_header(h, name);
	char *end;
	long long n;

	if (!v || !*v)
		return -1;
	errno = 0;
	n = strtoll(v, &end, base);
	return errno || *end || n < 0 ? -1 : n;
}

static void meta_of(const struct httpc_resp *h, struct cli_file_meta *m)
{
	m->type = cli_file_type_of(httpc_resp_header(h, "X-LXD-type"));
	m->uid = header_int(h, "X-LXD-uid", 10);
	m->gid = header_int(h, "X-LXD-gid", 10);
	m->mode = (int)header_int(h, "X-LXD-mode", 8);
}

/* ------------------------------------------------------------- requests */

/* A failed answer as the server words it. */
static int answer_error(const struct httpc_resp *h, cell_error *err)
{
	struct cli_resp r;
	int rc = cli_decode(h, &r, err);

	cli_resp_free(&r);
	return rc < 0 ? rc : cell_err(err, h->status, EIO, "HTTP %d", h->status);
}

static int meta_headers(const struct cli_file_meta *m, const char *type, char hdr[5][48])
{
	int n = 0;

	snprintf(hdr[n++], 48, "X-LXD-type: %s", type);
	if (m && m->uid >= 0)
		snprintf(hdr[n++], 48, "X-LXD-uid: %" PRId64, m->uid);
	if (m && m->gid >= 0)
		snprintf(hdr[n++], 48, "X-LXD-gid: %" PRId64, m->gid);
	if (m && m->mode >= 0)
		snprintf(hdr[n++], 48, "X-LXD-mode: %04o", (unsigned)m->mode);
	if (!strcmp(type, "file"))
		snprintf(hdr[n++], 48, "X-LXD-write: overwrite");
	return n;
}

int cli_file_post(struct cli_file_inst *f, const char *path, const struct cli_file_meta *m,
		  const struct cli_file_body *b, cell_error *err)
{
	static const char *const types[] = { "file", "directory", "symlink", "file" };
	_cleanup_httpc_resp_ struct httpc_resp h = { 0 };
	_cleanup_free_ char *full = files_path(f, path);
	const char *headers[8];
	char hdr[5][48];
	struct xfer_progress x;
	int n, rc;

	if (!full)
		return cell_err(err, 500, ENOMEM, "out of memory");
	n = meta_headers(m, types[m ? m->type : CLI_FILE_FILE], hdr);
	for (int i = 0; i < n; i++)
		headers[i] = hdr[i];
	headers[n++] = "Content-Type: application/octet-stream";
	headers[n] = NULL;
	if (f->c->debug)
		fprintf(stderr, "DEBUG: POST %s\n", full);
	xfer_init(&x, f, b->fd >= 0 ? b->label : NULL);
	if (cli_file_raw_usable(f) && (b->fd < 0 || b->len >= 0))
		rc = cli_file_raw_post(f, full, headers, b->fd, b->len, b->data, b->data_len, xfer_cb, &x, &h, err);
	else
		rc = httpc_request(f->c->http,
				   &(struct httpc_req){ .method = "POST", .path = full, .headers = headers,
							.body = b->data, .body_len = b->data_len, .body_fd = b->fd,
							.body_fd_len = b->len, .out_fd = -1, .progress = xfer_cb,
							.progress_data = &x },
				   &h, err);
	cli_progress_done(&x.p);
	if (rc < 0)
		return rc;
	return h.status / 100 == 2 ? 0 : answer_error(&h, err);
}

int cli_file_get(struct cli_file_inst *f, const char *method, const char *path, int out_fd,
		 const char *label, struct httpc_resp *resp, struct cli_file_meta *m, cell_error *err)
{
	_cleanup_free_ char *full = files_path(f, path);
	struct xfer_progress x;
	int rc;

	memset(resp, 0, sizeof(*resp));
	if (!full)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (f->c->debug)
		fprintf(stderr, "DEBUG: %s %s\n", method, full);
	xfer_init(&x, f, out_fd >= 0 ? label : NULL);
	rc = cli_file_raw_usable(f) ? cli_file_raw_get(f, method, full, out_fd, xfer_cb, &x, resp, err) : -ENOTSUP;
	if (rc == -ENOTSUP)
		rc = httpc_request(f->c->http,
				   &(struct httpc_req){ .method = method, .path = full, .body_fd = -1,
							.out_fd = out_fd, .progress = xfer_cb, .progress_data = &x },
				   resp, err);
	cli_progress_done(&x.p);
	if (rc < 0)
		return rc;
	if (resp->status / 100 != 2)
		return answer_error(resp, err);
	meta_of(resp, m);
	if (m->type == CLI_FILE_UNKNOWN)
		return cell_err(err, 502, EPROTO, "Unknown file type '%s'", httpc_resp_header(resp, "X-LXD-type"));
	return 0;
}

int cli_file_delete(struct cli_file_inst *f, const char *path, cell_error *err)
{
	_cleanup_free_ char *p = files_rel_path(f, path);
	_cleanup_cli_resp_ struct cli_resp r = { 0 };

	if (!p)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return cli_query(f->c, "DELETE", p, NULL, NULL, &r, err);
}

int cli_file_probe(struct cli_file_inst *f, const char *path, struct cli_file_meta *m, cell_error *err)
{
	_cleanup_httpc_resp_ struct httpc_resp h = { 0 };

	/* GET, not HEAD (LXD 5.0 has no HEAD here); a file's body goes nowhere. */
	if (f->devnull < 0 && (f->devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0)
		return cell_err_sys(err, 500, errno, "open /dev/null");
	return cli_file_get(f, "GET", path, f->devnull, NULL, &h, m, err);
}

/* ----------------------------------------------------------------- pull */

static int read_back(int fd, strbuf *sb, cell_error *err)
{
	char buf[8192];
	ssize_t n;
	off_t off = 0;

	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		if (sb_append(sb, buf, (size_t)n) < 0)
			return cell_err(err, 500, ENOMEM, "out of memory");
		off += n;
	}
	return n < 0 ? cell_err_sys(err, 500, errno, "read back") : 0;
}

static int listing_of(int fd, json_t **listing, cell_error *err)
{
	_cleanup_sb_ strbuf sb = { 0 };
	_cleanup_json_ json_t *env = NULL;
	json_t *md;
	int rc = read_back(fd, &sb, err);

	if (rc < 0)
		return rc;
	env = sb.len ? json_loadb(sb.buf, sb.len, 0, NULL) : NULL;
	md = json_object_get(env, "metadata");
	if (!json_is_array(md))
		return cell_err(err, 502, EPROTO, "Bad directory listing from the server");
	*listing = json_incref(md);
	return 0;
}

/* The symlink's target replaces dest in one rename, as a file would. */
static int commit_symlink(int fd, const char *tmp, const char *dest, cell_error *err)
{
	_cleanup_sb_ strbuf sb = { 0 };
	int rc = read_back(fd, &sb, err);
	size_t n = sb.len;

	if (rc < 0)
		return rc;
	while (n && isspace((unsigned char)sb.buf[n - 1]))   /* lxc trims it */
		n--;
	if (!n)
		return cell_err(err, 502, EPROTO, "Empty symlink target from the server");
	sb.buf[n] = '\0';
	unlink(tmp);
	if (symlink(sb.buf, tmp) < 0)
		return cell_err_sys(err, 500, errno, "symlink %s", dest);
	if (rename(tmp, dest) < 0)
		return cell_err_sys(err, 500, errno, "rename to %s", dest);
	return 0;
}

static int commit_file(int fd, const char *tmp, const char *dest, int mode, cell_error *err)
{
	/* An explicit fchmod: mkstemp made it 0600 and umask plays no part. */
	if (fchmod(fd, (mode_t)(mode >= 0 ? mode : 0644)) < 0)
		return cell_err_sys(err, 500, errno, "chmod %s", dest);
	if (rename(tmp, dest) < 0)
		return cell_err_sys(err, 500, errno, "rename to %s", dest);
	return 0;
}

static char *temp_beside(const char *dest)
{
	const char *slash = strrchr(dest, '/');
	_cleanup_free_ char *dir = slash ? strndup(dest, (size_t)(slash - dest + 1)) : strdup("");

	return dir ? xasprintf("%s.%s.cell-XXXXXX", dir, slash ? slash + 1 : dest) : NULL;
}

int cli_file_pull_to(struct cli_file_inst *f, const char *path, const char *dest, struct cli_file_meta *m,
		     json_t **listing, cell_error *err)
{
	_cleanup_httpc_resp_ struct httpc_resp h = { 0 };
	_cleanup_free_ char *tmp = temp_beside(dest);
	_cleanup_free_ char *label = xasprintf("Pulling %s from %s: ", dest, path);
	_cleanup_close_ int fd = -1;
	int rc;

	*listing = NULL;
	m->type = CLI_FILE_UNKNOWN;
	if (!tmp || !label)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0)
		return cell_err_sys(err, 500, errno, "create %s", tmp);
	rc = cli_file_get(f, "GET", path, fd, label, &h, m, err);
	if (rc == 0 && m->type == CLI_FILE_FILE)
		rc = commit_file(fd, tmp, dest, m->mode, err);
	else if (rc == 0 && m->type == CLI_FILE_SYMLINK)
		rc = commit_symlink(fd, tmp, dest, err);
	else if (rc == 0)
		rc = listing_of(fd, listing, err);
	/* Renamed into place, or nothing worth keeping. */
	if (rc < 0 || m->type == CLI_FILE_DIRECTORY)
		unlink(tmp);
	return rc;
}

/* --------------------------------------------------------- pure helpers */

char *cli_file_clean(const char *p)
{
	size_t n = strlen(p);
	bool rooted = p[0] == '/';
	char *out = malloc(n + 2);
	size_t o = 0, r = 0, dotdot = 0;

	if (!out)
		return NULL;
	if (rooted) {
		out[o++] = '/';
		r = dotdot = 1;
	}
	while (r < n) {
		if (p[r] == '/') {
			r++;
		} else if (p[r] == '.' && (r + 1 == n || p[r + 1] == '/')) {
			r++;
		} else if (p[r] == '.' && p[r + 1] == '.' && (r + 2 == n || p[r + 2] == '/')) {
			r += 2;
			if (o > dotdot) {   /* back up over the last element */
				o--;
				while (o > dotdot && out[o] != '/')
					o--;
			} else if (!rooted) {   /* cannot back up: keep the ".." */
				if (o > 0)
					out[o++] = '/';
				out[o++] = '.';
				out[o++] = '.';
				dotdot = o;
			}
		} else {
			if ((rooted && o != 1) || (!rooted && o != 0))
				out[o++] = '/';
			for (; r < n && p[r] != '/'; r++)
				out[o++] = p[r];
		}
	}
	if (o == 0)
		out[o++] = '.';
	out[o] = '\0';
	return out;
}

char *cli_file_join(const char *a, const char *b)
{
	_cleanup_free_ char *j = NULL;

	if (!*a)
		return cli_file_clean(b);
	if (!*b)
		return cli_file_clean(a);
	j = xasprintf("%s/%s", a, b);
	return j ? cli_file_clean(j) : NULL;
}

char *cli_file_base(const char *p)
{
	size_t n = strlen(p);
	const char *s;

	while (n > 0 && p[n - 1] == '/')
		n--;
	if (n == 0)
		return strdup(*p ? "/" : ".");
	for (s = p + n; s > p && s[-1] != '/'; s--)
		;
	return strndup(s, (size_t)(p + n - s));
}

int cli_file_spec(const char *arg, char **inst, char **path)
{
	const char *slash = strchr(arg, '/');

	*inst = *path = NULL;
	if (!slash)
		return -EINVAL;
	*inst = strndup(arg, (size_t)(slash - arg));
	*path = strdup(slash + 1);
	if (!*inst || !*path) {
		free(*inst);
		free(*path);
		*inst = *path = NULL;
		return -ENOMEM;
	}
	return 0;
}

int cli_file_parse_mode(const char *s, int *mode, cell_error *err)
{
	_cleanup_free_ char *m = s && strlen(s) == 3 ? xasprintf("0%s", s) : strdup(s ? s : "");
	char *end;
	long v;

	if (!m)
		return cell_err(err, 500, ENOMEM, "out of memory");
	errno = 0;
	v = *m ? strtol(m, &end, 0) : -1;
	if (!*m || errno || *end || v < 0 || v > 07777)
		return cell_err(err, 400, EINVAL, "Invalid mode \"%s\"", s ? s : "");
	*mode = (int)(v & 0777);   /* os.FileMode.Perm() */
	return 0;
}
