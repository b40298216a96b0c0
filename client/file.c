/*
 * cell file push|pull|edit|delete, as `lxc file`: the same arguments,
 * target rules ("dir/" or several sources mean a directory), -r walks
 * trees on the client side (directories, files and symlinks, each with
 * its owner and mode), -p creates the parents first, "-" is stdin or
 * stdout.  The transfers themselves are in file_xfer.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/file.h"
#include "client/inst.h"
#include "common/cleanup.h"
#include "common/util.h"

#define FILE_DIR_MODE 0755   /* what lxc creates local directories with */

/* One instance named on the command line, connected. */
struct file_conn {
	struct cli_obj o;
	struct cli_file_inst f;
};

static void file_conn_free(struct file_conn *fc)
{
	if (fc->f.devnull >= 0)
		close(fc->f.devnull);
	cli_obj_free(&fc->o);
}
#define _cleanup_fconn_ __attribute__((cleanup(file_conn_free)))

static int file_conn_open(struct cli_ctx *ctx, const char *inst, struct file_conn *fc, cell_error *err)
{
	int rc = cli_obj_open(ctx, inst, "Missing instance name", &fc->o, err);

	fc->f = (struct cli_file_inst){ .c = fc->o.c, .name = fc->o.name, .quiet = ctx->quiet, .devnull = -1 };
	return rc;
}

/* "[<remote>:]<instance>/<path>": connected, with the path made absolute and clean. */
static int file_spec_open(struct cli_ctx *ctx, const char *arg, const char *what, struct file_conn *fc,
			  char **path, cell_error *err)
{
	_cleanup_free_ char *inst = NULL, *rel = NULL, *abs = NULL;

	*path = NULL;
	if (cli_file_spec(arg, &inst, &rel) < 0)
		return cell_err(err, 400, EINVAL, "Invalid %s %s", what, arg);
	if (!(abs = xasprintf("/%s", rel)) || !(*path = cli_file_clean(abs)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	return file_conn_open(ctx, inst, fc, err);
}

/* ------------------------------------------------------------- options */

struct file_flags {
	int64_t uid, gid;   /* -1: from the source file */
	int mode;           /* -1: from the source file */
	bool recursive, mkdirs;
};

static int int_flag(struct cli_args *a, const char *name, int64_t *out, cell_error *err)
{
	const char *v = cli_opt(a, name);
	char *end;
	long long n;

	errno = 0;
	n = v ? strtoll(v, &end, 10) : -1;
	if (v && (!*v || *end || errno || n < -1 || n > 0xffffffffLL))
		return cell_err(err, 400, EINVAL, "invalid argument \"%s\" for \"--%s\" flag", v, name);
	*out = n;
	return 0;
}

static int file_flags(struct cli_args *a, struct file_flags *ff, cell_error *err)
{
	int rc;

	ff->recursive = cli_flag(a, "recursive");
	ff->mkdirs = cli_flag(a, "create-dirs");
	ff->uid = ff->gid = -1;
	ff->mode = -1;
	if ((rc = int_flag(a, "uid", &ff->uid, err)) < 0 || (rc = int_flag(a, "gid", &ff->gid, err)) < 0)
		return rc;
	if (cli_opt(a, "mode") && *cli_opt(a, "mode"))
		return cli_file_parse_mode(cli_opt(a, "mode"), &ff->mode, err);
	return 0;
}

/* --------------------------------------------------------- remote mkdir */

static int mkdir_one(struct cli_file_inst *f, const char *path, int mode, int64_t uid, int64_t gid,
		     cell_error *err)
{
	struct cli_file_meta m = { .type = CLI_FILE_DIRECTORY, .uid = uid, .gid = gid, .mode = mode };
	struct cli_file_body b = { .fd = -1 };

	return cli_file_post(f, path, &m, &b, err);
}

/* Where each parent of a clean absolute path ends: "/a/b" -> 2, 4. */
static size_t *prefix_ends(const char *p, size_t *n)
{
	size_t len = strlen(p), *ends = calloc(len + 1, sizeof(*ends));

	*n = 0;
	for (size_t k = 1; ends && k <= len; k++)
		if (p[k] == '/' || p[k] == '\0')
			ends[(*n)++] = k;
	return ends;
}

/* lxc's recursiveMkdir: find the deepest existing parent, create the rest
 * (a probe that fails, whatever the reason, counts as missing: creating
 * it then says what is wrong). */
static int remote_mkdir_p(struct cli_file_inst *f, const char *path, int mode, int64_t uid, int64_t gid,
			  cell_error *err)
{
	_cleanup_free_ char *p = cli_file_clean(path);
	_cleanup_free_ size_t *ends = NULL;
	size_t n = 0, have;
	int rc = 0;

	if (!p || !(ends = prefix_ends(p, &n)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (!strcmp(p, "/"))
		return 0;
	for (have = n; have > 0; have--) {
		struct cli_file_meta m;
		cell_error probe = { 0 };
		char save = p[ends[have - 1]];

		p[ends[have - 1]] = '\0';
		rc = cli_file_probe(f, p, &m, &probe);
		if (rc == 0 && m.type != CLI_FILE_DIRECTORY)
			return cell_err(err, 400, ENOTDIR, "%s is not a directory", p);
		p[ends[have - 1]] = save;
		if (rc == 0)
			break;
	}
	for (size_t j = have; j < n; j++) {
		char save = p[ends[j]];
		p[ends[j]] = '\0';
		rc = mkdir_one(f, p, mode, uid, gid, err);
		p[ends[j]] = save;
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ----------------------------------------------------------------- push */

/* A local file's owner and mode, as lxc's GetOwnerMode. */
static void meta_of_stat(const struct stat *st, enum cli_file_type type, struct cli_file_meta *m)
{
	m->type = type;
	m->uid = st->st_uid;
	m->gid = st->st_gid;
	m->mode = (int)(st->st_mode & 0777);
}

static const char *tmp_dir(void)
{
	const char *d = getenv("TMPDIR");
	return d && *d ? d : "/tmp";
}

/* A pipe's content into an unnamed temporary file: a length to announce.
 * (Not every server takes a chunked upload, and a pipe cannot be replayed.) */
static int spool(int fd, int *out, struct stat *st, cell_error *err)
{
	_cleanup_close_ int t = open(tmp_dir(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	char buf[1 << 16];
	ssize_t n;

	if (t < 0)
		return cell_err_sys(err, 500, errno, "temporary file in %s", tmp_dir());
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || write(t, buf, (size_t)n) != n)
			return cell_err_sys(err, 500, errno, n < 0 ? "read input" : "write temporary file");
	}
	if (lseek(t, 0, SEEK_SET) < 0 || fstat(t, st) < 0)
		return cell_err_sys(err, 500, errno, "temporary file");
	*out = steal_fd(t);
	return 0;
}

static int push_fd(struct cli_file_inst *f, const char *src, int fd, const struct stat *st, const char *dest,
		   const struct cli_file_meta *m, cell_error *err)
{
	_cleanup_free_ char *label = xasprintf("Pushing %s to %s: ", src, dest);
	_cleanup_close_ int spooled = -1;
	struct cli_file_body b = { .fd = fd, .label = label };
	struct stat sst;
	off_t off;
	int rc;

	if (!label)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (!S_ISREG(st->st_mode)) {
		if ((rc = spool(fd, &spooled, &sst, err)) < 0)
			return rc;
		b.fd = spooled;
		st = &sst;
	}
	/* From where the fd stands: stdin may be a file partly read already. */
	if ((off = lseek(b.fd, 0, SEEK_CUR)) < 0)
		return cell_err_sys(err, 500, errno, "seek %s", src);
	b.len = st->st_size - off;
	return cli_file_post(f, dest, m, &b, err);
}

static int push_symlink(struct cli_file_inst *f, const char *src, const char *dest, const struct stat *st,
			cell_error *err)
{
	char target[PATH_MAX];
	ssize_t n = readlink(src, target, sizeof(target));
	struct cli_file_meta m;
	struct cli_file_body b = { .fd = -1, .data = target };

	if (n < 0 || n >= (ssize_t)sizeof(target))
		return cell_err_sys(err, 500, n < 0 ? errno : ENAMETOOLONG, "readlink %s", src);
	b.data_len = (size_t)n;
	meta_of_stat(st, CLI_FILE_SYMLINK, &m);
	return cli_file_post(f, dest, &m, &b, err);
}

static int push_regular(struct cli_file_inst *f, const char *src, const char *dest, cell_error *err)
{
	_cleanup_close_ int fd = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct cli_file_meta m;
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return cell_err_sys(err, 500, errno, "open %s", src);
	meta_of_stat(&st, CLI_FILE_FILE, &m);
	return push_fd(f, src, fd, &st, dest, &m, err);
}

static int push_tree_at(struct cli_file_inst *f, const char *src, const char *dest, cell_error *err);

static int push_dir(struct cli_file_inst *f, const char *src, const char *dest, const struct stat *st,
		    cell_error *err)
{
	struct dirent **ents = NULL;
	struct cli_file_meta m;
	int n, rc;

	meta_of_stat(st, CLI_FILE_DIRECTORY, &m);
	if ((rc = mkdir_one(f, dest, m.mode, m.uid, m.gid, err)) < 0)
		return rc;
	/* Sorted, as Go's filepath.Walk visits them. */
	if ((n = scandir(src, &ents, NULL, alphasort)) < 0)
		return cell_err_sys(err, 500, errno, "read directory %s", src);
	for (int i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;
		_cleanup_free_ char *s = NULL, *d = NULL;
		if (rc == 0 && strcmp(name, ".") && strcmp(name, "..")) {
			s = xasprintf("%s/%s", src, name);
			d = cli_file_join(dest, name);
			rc = s && d ? push_tree_at(f, s, d, err) : cell_err(err, 500, ENOMEM, "out of memory");
		}
		free(ents[i]);
	}
	free(ents);
	return rc;
}

static int push_tree_at(struct cli_file_inst *f, const char *src, const char *dest, cell_error *err)
{
	struct stat st;

	if (lstat(src, &st) < 0)
		return cell_err_sys(err, 404, errno, "%s", src);
	if (S_ISDIR(st.st_mode))
		return push_dir(f, src, dest, &st, err);
	if (S_ISLNK(st.st_mode))
		return push_symlink(f, src, dest, &st, err);
	if (S_ISREG(st.st_mode))
		return push_regular(f, src, dest, err);
	return cell_err(err, 400, EINVAL, "'%s' isn't a supported file type", src);
}

/* -r: src lands in target_dir under its own name. */
static int push_tree(struct cli_file_inst *f, const char *src, const char *target_dir, cell_error *err)
{
	_cleanup_free_ char *clean = cli_file_clean(src);
	_cleanup_free_ char *base = clean ? cli_file_base(clean) : NULL;
	_cleanup_free_ char *dest = base ? cli_file_join(target_dir, base) : NULL;

	if (!dest)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return push_tree_at(f, clean, dest, err);
}

static int push_recursive(struct cli_file_inst *f, struct cli_args *a, const struct file_flags *ff,
			  const char *tpath, cell_error *err)
{
	struct stat st;
	int rc;

	if (ff->uid != -1 || ff->gid != -1 || ff->mode != -1)
		return cell_err(err, 400, EINVAL, "Can't supply uid/gid/mode in recursive mode");
	if (ff->mkdirs) {
		if (stat(a->argv[0], &st) < 0)
			return cell_err_sys(err, 404, errno, "%s", a->argv[0]);
		if ((rc = remote_mkdir_p(f, tpath, (int)(st.st_mode & 0777), st.st_uid, st.st_gid, err)) < 0)
			return rc;
	}
	for (int i = 0; i < a->argc - 1; i++)
		if ((rc = push_tree(f, a->argv[i], tpath, err)) < 0)
			return rc;
	return 0;
}

/* A source opened up front, so nothing is pushed unless every one opens. */
struct push_src {
	const char *name;   /* as given; "/dev/stdin" for "-", as lxc names it */
	int fd;
	struct stat st;
	bool is_stdin;
};

static int push_open(const char *arg, struct push_src *s, cell_error *err)
{
	s->is_stdin = !strcmp(arg, "-");
	s->name = s->is_stdin ? "/dev/stdin" : arg;
	s->fd = s->is_stdin ? STDIN_FILENO : open(arg, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0 || fstat(s->fd, &s->st) < 0)
		return cell_err_sys(err, 404, errno, "%s", arg);
	if (S_ISDIR(s->st.st_mode))
		return cell_err(err, 400, EISDIR, "%s is a directory (use --recursive)", arg);
	return 0;
}

/* Owner and mode: the flags, else the local file's; stdin has none of its
 * own, so the server's defaults apply. */
static void push_meta(const struct push_src *s, const struct file_flags *ff, struct cli_file_meta *m)
{
	*m = (struct cli_file_meta){ .type = CLI_FILE_FILE, .uid = -1, .gid = -1, .mode = -1 };
	if (!s->is_stdin)
		meta_of_stat(&s->st, CLI_FILE_FILE, m);
	if (ff->uid >= 0)
		m->uid = ff->uid;
	if (ff->gid >= 0)
		m->gid = ff->gid;
	if (ff->mode >= 0)
		m->mode = ff->mode;
}

static int push_one(struct cli_file_inst *f, const struct push_src *s, const struct file_flags *ff,
		    const char *tpath, bool is_dir, cell_error *err)
{
	_cleanup_free_ char *base = cli_file_base(s->name);
	_cleanup_free_ char *dest = is_dir ? (base ? cli_file_join(tpath, base) : NULL) : strdup(tpath);
	_cleanup_free_ char *parent = NULL;
	struct cli_file_meta m;
	int rc;

	if (!dest)
		return cell_err(err, 500, ENOMEM, "out of memory");
	push_meta(s, ff, &m);
	if (ff->mkdirs) {
		char *slash = strrchr(dest, '/');
		if (!(parent = slash == dest ? strdup("/") : strndup(dest, (size_t)(slash - dest))))
			return cell_err(err, 500, ENOMEM, "out of memory");
		if ((rc = remote_mkdir_p(f, parent, -1, m.uid, m.gid, err)) < 0)
			return rc;
	}
	return push_fd(f, s->name, s->fd, &s->st, dest, &m, err);
}

static int push_files(struct cli_file_inst *f, struct cli_args *a, const struct file_flags *ff,
		      const char *tpath, bool is_dir, cell_error *err)
{
	int n = a->argc - 1, rc = 0;
	struct push_src *srcs = calloc((size_t)n, sizeof(*srcs));

	if (!srcs)
		return cell_err(err, 500, ENOMEM, "out of memory");
	for (int i = 0; i < n; i++)
		srcs[i].fd = -1;
	if (n > 1 && !is_dir)
		rc = cell_err(err, 400, EINVAL, "Missing target directory");
	for (int i = 0; rc == 0 && i < n; i++)
		rc = push_open(a->argv[i], &srcs[i], err);
	for (int i = 0; rc == 0 && i < n; i++)
		rc = push_one(f, &srcs[i], ff, tpath, is_dir, err);
	for (int i = 0; i < n; i++)
		if (srcs[i].fd > STDIN_FILENO)
			close(srcs[i].fd);
	free(srcs);
	return rc;
}

static int run_push(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	const char *target = a->argv[a->argc - 1];
	_cleanup_fconn_ struct file_conn fc = { .f.devnull = -1 };
	_cleanup_free_ char *tpath = NULL;
	struct file_flags ff;
	bool is_dir;
	int rc;

	if ((rc = file_flags(a, &ff, err)) < 0)
		return rc;
	if ((rc = file_spec_open(ctx, target, "target", &fc, &tpath, err)) < 0)
		return rc;
	/* "c1/dir/" (or a path that cleans to "/") names a directory. */
	is_dir = str_has_suffix(target, "/") || !strcmp(tpath, "/");
	if (ff.recursive)
		return push_recursive(&fc.f, a, &ff, tpath, err);
	return push_files(&fc.f, a, &ff, tpath, is_dir, err);
}

/* ----------------------------------------------------------------- pull */

/* A name in a listing must stay a name: a server answering "../x" must
 * not make us write outside the target. */
static bool entry_ok(const char *name)
{
	return *name && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..");
}

static int pull_tree(struct cli_file_inst *f, const char *path, const char *dest, cell_error *err);

static int pull_entries(struct cli_file_inst *f, const char *path, const char *dest, json_t *listing,
			cell_error *err)
{
	size_t i;
	json_t *v;

	json_array_foreach(listing, i, v) {
		const char *name = json_string_value(v);
		_cleanup_free_ char *p = NULL, *d = NULL;
		int rc;
		if (!name || !entry_ok(name))
			return cell_err(err, 502, EPROTO, "Bad entry in the listing of %s", path);
		if (!(p = cli_file_join(path, name)) || !(d = cli_file_join(dest, name)))
			return cell_err(err, 500, ENOMEM, "out of memory");
		if ((rc = pull_tree(f, p, d, err)) < 0)
			return rc;
	}
	return 0;
}

static int pull_tree(struct cli_file_inst *f, const char *path, const char *dest, cell_error *err)
{
	_cleanup_json_ json_t *listing = NULL;
	struct cli_file_meta m;
	struct stat st;
	int rc = cli_file_pull_to(f, path, dest, &m, &listing, err);

	if (rc < 0 || m.type != CLI_FILE_DIRECTORY)
		return rc;
	if (mkdir(dest, 0700) < 0 && (errno != EEXIST || stat(dest, &st) < 0 || !S_ISDIR(st.st_mode)))
		return cell_err_sys(err, 500, errno == EEXIST ? ENOTDIR : errno, "mkdir %s", dest);
	if ((rc = pull_entries(f, path, dest, listing, err)) < 0)
		return rc;
	/* Its own mode last: a read-only directory still took its entries. */
	if (chmod(dest, (mode_t)(m.mode >= 0 ? m.mode : FILE_DIR_MODE)) < 0)
		return cell_err_sys(err, 500, errno, "chmod %s", dest);
	return 0;
}

static int copy_to_stdout(int fd, cell_error *err)
{
	char buf[1 << 16];
	ssize_t n;

	if (lseek(fd, 0, SEEK_SET) < 0)
		return cell_err_sys(err, 500, errno, "rewind");
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (char *p = buf; n > 0;) {
			ssize_t w = write(STDOUT_FILENO, p, (size_t)n);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return cell_err_sys(err, 500, errno, "write to stdout");
			p += w;
			n -= w;
		}
	return n < 0 ? cell_err_sys(err, 500, errno, "read back") : 0;
}

/* Anything but a file is known only once it has arrived: keep it aside
 * (an unnamed temporary), and only a file's bytes reach stdout. */
static int pull_stdout_buffered(struct cli_file_inst *f, const char *path, cell_error *err)
{
	_cleanup_httpc_resp_ struct httpc_resp h = { 0 };
	const char *dir = tmp_dir();
	_cleanup_close_ int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	struct cli_file_meta m;
	int rc;

	if (fd < 0)
		return cell_err_sys(err, 500, errno, "temporary file in %s", dir);
	if ((rc = cli_file_get(f, "GET", path, fd, NULL, &h, &m, err)) < 0)
		return rc;
	if (m.type == CLI_FILE_DIRECTORY)
		return cell_err(err, 400, EISDIR, "Can't pull a directory without --recursive");
	return copy_to_stdout(fd, err);
}

/* "-": HEAD tells a file from the rest, so a file streams straight out. */
static int pull_stdout(struct cli_file_inst *f, const char *path, cell_error *err)
{
	_cleanup_httpc_resp_ struct httpc_resp h = { 0 }, g = { 0 };
	struct cli_file_meta m;
	cell_error head = { 0 };

	f->quiet = true;   /* the progress line would mix with the data */
	if (cli_file_get(f, "HEAD", path, -1, NULL, &h, &m, &head) < 0 || m.type != CLI_FILE_FILE)
		return pull_stdout_buffered(f, path, err);
	return cli_file_get(f, "GET", path, STDOUT_FILENO, NULL, &g, &m, err);
}

static int pull_one(struct cli_file_inst *f, const char *path, const char *target, bool is_dir, bool recursive,
		    cell_error *err)
{
	_cleanup_free_ char *base = cli_file_base(path);
	_cleanup_free_ char *dest = is_dir ? (base ? cli_file_join(target, base) : NULL) : strdup(target);
	_cleanup_json_ json_t *listing = NULL;
	struct cli_file_meta m;
	int rc;

	if (!dest)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (recursive)
		return pull_tree(f, path, dest, err);
	if ((rc = cli_file_pull_to(f, path, dest, &m, &listing, err)) < 0)
		return rc;
	if (m.type == CLI_FILE_DIRECTORY)
		return cell_err(err, 400, EISDIR, "Can't pull a directory without --recursive");
	return 0;
}

/* lxc's rules: an existing directory, or a trailing '/', several sources or
 * -r (then created) make the target a directory. */
static int pull_target(struct cli_args *a, const char *target, bool *is_dir, cell_error *err)
{
	int nsrc = a->argc - 1;
	struct stat st;
	char *slash;

	*is_dir = false;
	if (!strcmp(target, "-"))
		return 0;
	if (stat(target, &st) == 0) {
		*is_dir = S_ISDIR(st.st_mode);
		if (!*is_dir && nsrc > 1)
			return cell_err(err, 400, ENOTDIR,
					"More than one file to download, but target is not a directory");
		return 0;
	}
	if (errno != ENOENT)
		return cell_err_sys(err, 500, errno, "%s", target);
	if (str_has_suffix(target, "/") || nsrc > 1 || cli_flag(a, "recursive")) {
		*is_dir = true;
		return util_mkdir_p(target, FILE_DIR_MODE, err);
	}
	/* -p: the parents of a file target. */
	if (cli_flag(a, "create-dirs") && (slash = strrchr(target, '/')) && slash != target) {
		_cleanup_free_ char *parent = strndup(target, (size_t)(slash - target));
		return parent ? util_mkdir_p(parent, FILE_DIR_MODE, err) : cell_err(err, 500, ENOMEM, "out of memory");
	}
	return 0;
}

static int run_pull(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	const char *target = a->argv[a->argc - 1];
	bool is_dir;
	int rc = pull_target(a, target, &is_dir, err);

	for (int i = 0; rc == 0 && i < a->argc - 1; i++) {
		_cleanup_fconn_ struct file_conn fc = { .f.devnull = -1 };
		_cleanup_free_ char *path = NULL;

		if ((rc = file_spec_open(ctx, a->argv[i], "source", &fc, &path, err)) < 0)
			break;
		if (!strcmp(target, "-"))
			rc = pull_stdout(&fc.f, path, err);
		else
			rc = pull_one(&fc.f, path, target, is_dir, cli_flag(a, "recursive"), err);
	}
	return rc;
}

/* ----------------------------------------------------------------- edit */

/* $VISUAL, $EDITOR, else editor or vi; through sh so "code -w" works. */
static int run_editor(const char *path, cell_error *err)
{
	const char *ed = getenv("VISUAL");
	_cleanup_free_ char *script = NULL;
	pid_t pid;
	int st;

	if (!ed || !*ed)
		ed = getenv("EDITOR");
	if (!ed || !*ed)
		ed = access("/usr/bin/editor", X_OK) == 0 ? "editor" : "vi";
	if (!(script = xasprintf("%s \"$1\"", ed)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", script, "sh", path, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return cell_err_sys(err, 500, errno, "run editor");
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		return cell_err(err, 500, EIO, "The editor \"%s\" failed", ed);
	return 0;
}

/* Not a terminal: stdin is the new content, owner and mode kept. */
static int edit_from_stdin(struct cli_file_inst *f, const char *path, cell_error *err)
{
	struct push_src s = { .name = "/dev/stdin", .fd = STDIN_FILENO, .is_stdin = true };
	struct cli_file_meta m = { .type = CLI_FILE_FILE, .uid = -1, .gid = -1, .mode = -1 };
	cell_error probe = { 0 };

	if (fstat(STDIN_FILENO, &s.st) < 0)
		return cell_err_sys(err, 500, errno, "stdin");
	if (cli_file_probe(f, path, &m, &probe) < 0)
		m = (struct cli_file_meta){ .type = CLI_FILE_FILE, .uid = -1, .gid = -1, .mode = -1 };
	m.type = CLI_FILE_FILE;
	return push_fd(f, s.name, s.fd, &s.st, path, &m, err);
}

static int edit_in_editor(struct cli_file_inst *f, const char *path, cell_error *err)
{
	char tmp[] = "/tmp/cell_file_edit_XXXXXX";
	_cleanup_httpc_resp_ struct httpc_resp h = { 0 };
	_cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
	struct cli_file_meta m;
	struct stat st;
	int rc;

	if (fd < 0)
		return cell_err_sys(err, 500, errno, "create temporary file");
	rc = cli_file_get(f, "GET", path, fd, NULL, &h, &m, err);
	if (rc == 0 && m.type != CLI_FILE_FILE)
		rc = cell_err(err, 400, EINVAL, "%s is not a regular file", path);
	if (rc == 0)
		rc = run_editor(tmp, err);
	close(fd);
	/* The editor may have replaced the file rather than rewritten it. */
	fd = rc == 0 ? open(tmp, O_RDONLY | O_CLOEXEC) : -1;
	if (rc == 0 && (fd < 0 || fstat(fd, &st) < 0))
		rc = cell_err_sys(err, 500, errno, "read %s", tmp);
	if (rc == 0)
		rc = push_fd(f, tmp, fd, &st, path, &m, err);
	unlink(tmp);
	return rc;
}

static int run_edit(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_fconn_ struct file_conn fc = { .f.devnull = -1 };
	_cleanup_free_ char *path = NULL;
	int rc = file_spec_open(ctx, a->argv[0], "target", &fc, &path, err);

	if (rc < 0)
		return rc;
	fc.f.quiet = true;
	if (!isatty(STDIN_FILENO))
		return edit_from_stdin(&fc.f, path, err);
	return edit_in_editor(&fc.f, path, err);
}

/* --------------------------------------------------------------- delete */

static int run_delete(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	int rc = 0;

	for (int i = 0; rc == 0 && i < a->argc; i++) {
		_cleanup_fconn_ struct file_conn fc = { .f.devnull = -1 };
		_cleanup_free_ char *path = NULL;

		if ((rc = file_spec_open(ctx, a->argv[i], "target", &fc, &path, err)) == 0)
			rc = cli_file_delete(&fc.f, path, err);
	}
	return rc;
}

/* ------------------------------------------------------------- commands */

static const struct cli_opt push_opts[] = {
	{ "create-dirs", 'p', CLI_OPT_BOOL, "Create any directories necessary", NULL },
	{ "gid", 0, CLI_OPT_STRING, "Set the file's gid on push", "-1" },
	{ "mode", 0, CLI_OPT_STRING, "Set the file's perms on push", NULL },
	{ "recursive", 'r', CLI_OPT_BOOL, "Recursively transfer files", NULL },
	{ "uid", 0, CLI_OPT_STRING, "Set the file's uid on push", "-1" },
	{ 0 },
};

static const struct cli_opt pull_opts[] = {
	{ "create-dirs", 'p', CLI_OPT_BOOL, "Create any directories necessary", NULL },
	{ "recursive", 'r', CLI_OPT_BOOL, "Recursively transfer files", NULL },
	{ 0 },
};

static const struct cli_command file_push = {
	.name = "push",
	.usage = "<source path>... [<remote>:]<instance>/<path>",
	.short_help = "Push files into instances",
	.examples = "cell file push /etc/hosts foo/etc/hosts\n"
		    "   To push /etc/hosts into the instance \"foo\".\n\n"
		    "cell file push -r dir foo/root/\n"
		    "   To push the directory dir, with its owners and modes, into foo's /root.",
	.opts = push_opts,
	.run = run_push,
	.min_args = 2,
	.max_args = -1,
};

static const struct cli_command file_pull = {
	.name = "pull",
	.usage = "[<remote>:]<instance>/<path>... <target path>",
	.short_help = "Pull files from instances",
	.examples = "cell file pull foo/etc/hosts .\n"
		    "   To pull /etc/hosts from the instance and write it to the current directory.\n\n"
		    "cell file pull foo/etc/hosts -\n"
		    "   To write it to stdout.",
	.opts = pull_opts,
	.run = run_pull,
	.min_args = 2,
	.max_args = -1,
};

static const struct cli_command file_edit = {
	.name = "edit",
	.usage = "[<remote>:]<instance>/<path>",
	.short_help = "Edit files in instances",
	.long_help = "Edit files in instances\n\n"
		     "The file opens in $VISUAL or $EDITOR; when stdin is not a terminal,\n"
		     "its content replaces the file instead.",
	.run = run_edit,
	.min_args = 1,
	.max_args = 1,
};

static const struct cli_command file_delete = {
	.name = "delete",
	.aliases = "rm",
	.usage = "[<remote>:]<instance>/<path> [[<remote>:]<instance>/<path>...]",
	.short_help = "Delete files in instances",
	.run = run_delete,
	.min_args = 1,
	.max_args = -1,
};

static const struct cli_command *const file_subs[] = { &file_delete, &file_edit, &file_pull, &file_push, NULL };

const struct cli_command cli_cmd_file = {
	.name = "file",
	.usage = "",
	.short_help = "Manage files in instances",
	.subs = file_subs,
};
