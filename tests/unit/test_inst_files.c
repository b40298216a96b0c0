/* Path resolution and header parsing for the instance file API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/exec_io.h"
#include "daemon/inst_files.h"

struct fx {
	char base[PATH_MAX];      /* tmp dir: root/ and outside/ */
	char root[PATH_MAX + 8];
	char outside[PATH_MAX + 16];
	int rootfd;
};

static void fx_path(const struct fx *f, const char *rel, char *out)
{
	snprintf(out, PATH_MAX, "%s/%s", f->base, rel);
}

static void fx_file(const struct fx *f, const char *rel, const char *data)
{
	char p[PATH_MAX];
	FILE *fp;

	fx_path(f, rel, p);
	fp = fopen(p, "w");
	assert_non_null(fp);
	fputs(data, fp);
	fclose(fp);
}

static void fx_link(const struct fx *f, const char *target, const char *rel)
{
	char p[PATH_MAX];
	fx_path(f, rel, p);
	assert_int_equal(symlink(target, p), 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char p[PATH_MAX + 32];

	snprintf(f->base, sizeof(f->base), "/tmp/cell-inst-files-XXXXXX");
	assert_non_null(mkdtemp(f->base));
	snprintf(f->root, sizeof(f->root), "%s/root", f->base);
	snprintf(f->outside, sizeof(f->outside), "%s/outside", f->base);
	assert_int_equal(mkdir(f->root, 0755), 0);
	assert_int_equal(mkdir(f->outside, 0755), 0);
	snprintf(p, sizeof(p), "%s/dir", f->root);
	assert_int_equal(mkdir(p, 0755), 0);
	fx_file(f, "root/dir/file", "inside");
	fx_file(f, "outside/sentinel", "SENTINEL");
	fx_link(f, "/", "root/slash");
	fx_link(f, "../../../../../../../..", "root/up");
	fx_link(f, f->outside, "root/absout");
	fx_link(f, "../outside", "root/relout");
	fx_link(f, "/dir", "root/absdir");
	f->rootfd = inst_files_open_root(f->root, &(cell_error){ 0 });
	assert_true(f->rootfd >= 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[PATH_MAX + 16];

	close(f->rootfd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->base);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static int read_fd(int fd, char *buf, size_t n)
{
	ssize_t k = pread(fd, buf, n - 1, 0);
	buf[k > 0 ? k : 0] = '\0';
	return (int)k;
}

static void test_split(void **state)
{
	static const struct { const char *in, *parent, *name; } ok[] = {
		{ "/a/b", "/a", "b" }, { "/a", "/", "a" }, { "a", ".", "a" },
		{ "/a/b/", "/a", "b" }, { "a/b//", "a", "b" }, { "/a/b/../c", "/a/b/..", "c" },
	};
	static const char *const bad[] = { "", "/", "//", "/a/..", "/.", "..", "." };
	cell_error err = { 0 };

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *parent = NULL, *name = NULL;
		assert_int_equal(inst_files_split(ok[i].in, &parent, &name, &err), 0);
		assert_string_equal(parent, ok[i].parent);
		assert_string_equal(name, ok[i].name);
		free(parent);
		free(name);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *parent = NULL, *name = NULL;
		assert_true(inst_files_split(bad[i], &parent, &name, &err) < 0);
		assert_int_equal(err.status, 400);
	}
}

static void test_clean_path(void **state)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "/a/./b/../c", "/a/c" }, { "/../..", "/" }, { "a//b", "/a/b" },
		{ "/", "/" }, { "/a/b/", "/a/b" }, { "/a/../../b", "/b" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *c = inst_files_clean_path(cases[i].in);
		assert_string_equal(c, cases[i].out);
		free(c);
	}
}

/* Whatever the path or symlinks say, resolution never leaves the root. */
static void test_resolve_confined(void **state)
{
	struct fx *f = *state;
	char rel[PATH_MAX * 2], buf[64];
	const char *sent_rel = f->outside + 1;   /* outside/ as a path from "/" */
	cell_error err = { 0 };
	const char *fmt[] = { "../../../../../../%s/sentinel", "/../../%s/sentinel",
			      "/slash/%s/sentinel", "/up/%s/sentinel", "up/up/%s/sentinel" };
	int fd;

	for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
		snprintf(rel, sizeof(rel), fmt[i], sent_rel);
		fd = inst_files_resolve(f->rootfd, rel, O_RDONLY, 0, &err);
		assert_int_equal(fd, -ENOENT);
		assert_int_equal(err.status, 404);
	}
	assert_int_equal(inst_files_resolve(f->rootfd, "/absout/sentinel", O_RDONLY, 0, &err),
			 -ENOENT);
	assert_int_equal(inst_files_resolve(f->rootfd, "/relout/sentinel", O_RDONLY, 0, &err),
			 -ENOENT);
	/* Absolute symlinks and ".." are the container's: they land inside. */
	fd = inst_files_resolve(f->rootfd, "/absdir/file", O_RDONLY, 0, &err);
	assert_true(fd >= 0);
	read_fd(fd, buf, sizeof(buf));
	assert_string_equal(buf, "inside");
	close(fd);
	fd = inst_files_resolve(f->rootfd, "/slash/up/../dir/../../dir/file", O_RDONLY, 0, &err);
	assert_true(fd >= 0);
	close(fd);
	/* O_NOFOLLOW reports the final symlink itself. */
	fd = inst_files_resolve(f->rootfd, "/absout", O_PATH | O_NOFOLLOW, 0, &err);
	assert_true(fd >= 0);
	{
		struct stat st;
		assert_int_equal(fstat(fd, &st), 0);
		assert_true(S_ISLNK(st.st_mode));
	}
	close(fd);
	/* The empty path is the root. */
	fd = inst_files_resolve(f->rootfd, "", O_PATH | O_DIRECTORY, 0, &err);
	assert_true(fd >= 0);
	close(fd);
}

static void test_open_parent(void **state)
{
	struct fx *f = *state;
	cell_error err = { 0 };
	char *name = NULL;
	struct stat a, b;
	char p[PATH_MAX + 8];
	int fd;

	fd = inst_files_open_parent(f->rootfd, "/absdir/new", &name, &err);
	assert_true(fd >= 0);
	assert_string_equal(name, "new");
	snprintf(p, sizeof(p), "%s/dir", f->root);
	assert_int_equal(fstat(fd, &a), 0);
	assert_int_equal(stat(p, &b), 0);
	assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
	close(fd);
	free(name);
	name = NULL;
	/* A symlinked parent pointing out of the root resolves inside (absent). */
	assert_int_equal(inst_files_open_parent(f->rootfd, "/absout/sentinel", &name, &err),
			 -ENOENT);
	assert_null(name);
	assert_true(inst_files_open_parent(f->rootfd, "/", &name, &err) < 0);
	assert_int_equal(err.status, 400);
}

static http_req *mkreq(const char *const *kv)
{
	static http_req req;

	memset(&req, 0, sizeof(req));
	for (int i = 0; kv[i]; i += 2) {
		req.headers[req.nheaders].name = (char *)kv[i];
		req.headers[req.nheaders].value = (char *)kv[i + 1];
		req.nheaders++;
	}
	return &req;
}

static void test_parse_headers(void **state)
{
	struct inst_files_hdrs h;
	cell_error err = { 0 };

	assert_int_equal(inst_files_parse_headers(mkreq((const char *[]){ NULL }), &h, &err), 0);
	assert_true(h.uid == -1 && h.gid == -1 && h.mode == -1);
	assert_int_equal(h.type, INST_FILES_FILE);
	assert_false(h.append);
	assert_int_equal(inst_files_parse_headers(
		mkreq((const char *[]){ "x-lxd-uid", "1000", "x-lxd-gid", "5", "x-lxd-mode", "0640",
					"x-lxd-type", "directory", "x-lxd-write", "append",
					NULL }), &h, &err), 0);
	assert_true(h.uid == 1000 && h.gid == 5 && h.mode == 0640 && h.append);
	assert_int_equal(h.type, INST_FILES_DIRECTORY);
	/* LXD's quirk: a mode without a leading 0 is decimal. */
	assert_int_equal(inst_files_parse_headers(
		mkreq((const char *[]){ "x-lxd-mode", "420", NULL }), &h, &err), 0);
	assert_int_equal(h.mode, 0644);
	assert_int_equal(inst_files_parse_headers(
		mkreq((const char *[]){ "x-lxd-mode", "04755", NULL }), &h, &err), 0);
	assert_int_equal(h.mode, 0755);
	static const char *const bad[][2] = {
		{ "x-lxd-uid", "abc" }, { "x-lxd-uid", "-5" }, { "x-lxd-gid", "4294967296" },
		{ "x-lxd-mode", "rwx" }, { "x-lxd-mode", "-1" }, { "x-lxd-type", "fifo" },
		{ "x-lxd-write", "truncate" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(inst_files_parse_headers(
			mkreq((const char *[]){ bad[i][0], bad[i][1], NULL }), &h, &err) < 0);
		assert_int_equal(err.status, 400);
	}
}

static void post(struct fx *f, const char *path, const char *const *hdrs, const char *body,
		 int status)
{
	struct inst_files_post *p = NULL;
	cell_error err = { 0 };
	http_resp resp;

	http_resp_init(&resp);
	assert_int_equal(inst_files_post_begin(f->rootfd, NULL, path, mkreq(hdrs), &p, &err), 0);
	if (body)
		inst_files_post_chunk(p, body, strlen(body), &err);
	inst_files_post_end(p, &resp, NULL);
	assert_int_equal(resp.status, status);
	http_resp_free(&resp);
}

static void test_post_replaces_symlink_not_target(void **state)
{
	struct fx *f = *state;
	char p[PATH_MAX + 32], buf[64];
	struct stat st;
	int fd;

	fx_link(f, "/tmp/../" "etc/passwd", "root/pw");
	snprintf(p, sizeof(p), "%s/sentinel", f->outside);
	fx_link(f, p, "root/sent");
	post(f, "/sent", (const char *[]){ NULL }, "new", 200);
	snprintf(p, sizeof(p), "%s/sent", f->root);
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	/* Append never follows the final symlink. */
	post(f, "/pw", (const char *[]){ "x-lxd-write", "append", NULL }, "x", 400);
	post(f, "/relout/sentinel", (const char *[]){ NULL }, "PWNED", 404);
	snprintf(p, sizeof(p), "%s/sentinel", f->outside);
	fd = open(p, O_RDONLY);
	read_fd(fd, buf, sizeof(buf));
	close(fd);
	assert_string_equal(buf, "SENTINEL");
}

static void test_post_rollback_keeps_old_file(void **state)
{
	struct fx *f = *state;
	struct inst_files_post *p = NULL;
	cell_error err = { 0 }, gone = { .status = 400, .msg = "client went away" };
	char path[PATH_MAX + 16], buf[64];
	http_resp resp;
	int fd;

	assert_int_equal(inst_files_post_begin(f->rootfd, NULL, "/dir/file",
					       mkreq((const char *[]){ NULL }), &p, &err), 0);
	assert_int_equal(inst_files_post_chunk(p, "half", 4, &err), 0);
	http_resp_init(&resp);
	inst_files_post_end(p, &resp, &gone);
	assert_int_equal(resp.status, 400);
	http_resp_free(&resp);
	snprintf(path, sizeof(path), "%s/dir/file", f->root);
	fd = open(path, O_RDONLY);
	read_fd(fd, buf, sizeof(buf));
	close(fd);
	assert_string_equal(buf, "inside");
}

static void test_exec_status(void **state)
{
	assert_int_equal(exec_status_from_siginfo(CLD_EXITED, 0), 0);
	assert_int_equal(exec_status_from_siginfo(CLD_EXITED, 127), 127);
	assert_int_equal(exec_status_from_siginfo(CLD_KILLED, 9), 137);
	assert_int_equal(exec_status_from_siginfo(CLD_DUMPED, 11), 139);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_clean_path),
		cmocka_unit_test_setup_teardown(test_resolve_confined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_parent, setup, teardown),
		cmocka_unit_test(test_parse_headers),
		cmocka_unit_test_setup_teardown(test_post_replaces_symlink_not_target, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_rollback_keeps_old_file, setup, teardown),
		cmocka_unit_test(test_exec_status),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
