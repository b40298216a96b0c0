/* stor_copy_tree, stor_remove_tree, stor_tree_usage on a fixture rootfs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sched.h>
#include <sys/mount.h>

#include "storage/storage.h"
#include "tests/unit/storage_fixture.h"

struct ctx {
	char *dir, src[4200], dst[4200], outside[4200];
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!fx_is_root()) {
		fprintf(stderr, "storage copy: skipped: needs root (chown, mknod, security.capability)\n");
		free(c);
		*state = NULL;
		return 0;
	}
	c->dir = fx_tmpdir("copy");
	snprintf(c->src, sizeof(c->src), "%s/src", c->dir);
	snprintf(c->dst, sizeof(c->dst), "%s/dst", c->dir);
	snprintf(c->outside, sizeof(c->outside), "%s/outside", c->dir);
	fx_write(c->outside, "outside", 0644, 0, 0);
	fx_build_rootfs(c->src, c->outside);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	cell_error err;

	if (!c)
		return 0;
	{
		char mnt[4300];
		snprintf(mnt, sizeof(mnt), "%s/tmp/mnt", c->src);
		umount2(mnt, MNT_DETACH);   /* a failed mount point test leaves it */
	}
	if (stor_remove_tree(c->dir, &err) < 0)
		fprintf(stderr, "cleanup: %s\n", err.msg);
	free(c->dir);
	free(c);
	return 0;
}

static struct ctx *need(void **state)
{
	if (!*state)
		skip();
	return *state;
}

static void test_copy_keeps_everything(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	struct stat st;
	char p[4300];

	assert_int_equal(stor_copy_tree(c->src, c->dst, NULL, &err), 0);
	fx_check_rootfs(c->dst, NULL, c->outside);
	/* The hole stays a hole. */
	snprintf(p, sizeof(p), "%s/var/sparse", c->dst);
	assert_int_equal(stat(p, &st), 0);
	assert_true(st.st_blocks * 512 < 64 * 1024);
	/* The symlink out of the tree is copied as a symlink, not followed. */
	snprintf(p, sizeof(p), "%s/bin/escape", c->dst);
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
}

static void test_copy_shifts_while_copying(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	struct stor_copy_opts o = { .from = NULL, .to = &fx_map1 };
	char back[4300];

	assert_int_equal(stor_copy_tree(c->src, c->dst, &o, &err), 0);
	fx_check_rootfs(c->dst, &fx_map1, c->outside);
	/* And back through a second copy, map1 → none: the original again. */
	snprintf(back, sizeof(back), "%s/back", c->dir);
	o = (struct stor_copy_opts){ .from = &fx_map1, .to = NULL };
	assert_int_equal(stor_copy_tree(c->dst, back, &o, &err), 0);
	fx_check_rootfs(back, NULL, c->outside);
	/* map1 → map2 directly. */
	assert_int_equal(stor_remove_tree(back, &err), 0);
	o = (struct stor_copy_opts){ .from = &fx_map1, .to = &fx_map2 };
	assert_int_equal(stor_copy_tree(c->dst, back, &o, &err), 0);
	fx_check_rootfs(back, &fx_map2, c->outside);
}

static void test_copy_refuses_existing_dst(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	char marker[4300];

	assert_int_equal(mkdir(c->dst, 0700), 0);
	snprintf(marker, sizeof(marker), "%s/keep", c->dst);
	fx_write(marker, "mine", 0600, 0, 0);
	assert_int_equal(stor_copy_tree(c->src, c->dst, NULL, &err), -EEXIST);
	assert_int_equal(err.status, 409);
	assert_string_equal(fx_read(marker), "mine");
}

static void test_copy_failure_leaves_nothing(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	struct stor_copy_opts o = { .from = NULL, .to = &fx_tiny };
	char p[4300];

	/* uid 5000 (and the overflow id) are outside the tiny map. */
	snprintf(p, sizeof(p), "%s/etc/odd", c->src);
	fx_write(p, "odd", 0644, 5000, 5000);
	assert_int_equal(stor_copy_tree(c->src, c->dst, &o, &err), -ERANGE);
	assert_non_null(strstr(err.msg, "etc/"));
	assert_false(access(c->dst, F_OK) == 0);
}

static void test_copy_error_names_path(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };

	assert_int_equal(stor_copy_tree("/nonexistent-cell-src", c->dst, NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent-cell-src"));
	assert_false(access(c->dst, F_OK) == 0);
}

/* Mounts inside a tree: a copy does not descend (like cp -x) and a remove
 * refuses, so a stray bind mount can never be copied or wiped. */
static void test_mount_points(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	char victim[4300], mnt[4300], p[4400];

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		fprintf(stderr, "storage copy: mount point test skipped: no mount namespace: %s\n",
			strerror(errno));
		skip();
	}
	snprintf(victim, sizeof(victim), "%s/victim", c->dir);
	assert_int_equal(mkdir(victim, 0755), 0);
	snprintf(p, sizeof(p), "%s/precious", victim);
	fx_write(p, "precious", 0644, 0, 0);
	snprintf(mnt, sizeof(mnt), "%s/tmp/mnt", c->src);
	assert_int_equal(mkdir(mnt, 0755), 0);
	assert_int_equal(mount(victim, mnt, NULL, MS_BIND, NULL), 0);

	assert_int_equal(stor_copy_tree(c->src, c->dst, NULL, &err), 0);
	snprintf(p, sizeof(p), "%s/tmp/mnt", c->dst);
	assert_int_equal(access(p, F_OK), 0);
	snprintf(p, sizeof(p), "%s/tmp/mnt/precious", c->dst);
	assert_int_equal(access(p, F_OK), -1);

	assert_int_equal(stor_remove_tree(c->src, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "mount point"));
	snprintf(p, sizeof(p), "%s/precious", victim);
	assert_string_equal(fx_read(p), "precious");
	assert_int_equal(umount2(mnt, 0), 0);
	assert_int_equal(stor_remove_tree(c->src, &err), 0);
	assert_int_equal(access(c->src, F_OK), -1);
}

static void test_remove_missing_is_ok(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	char p[4300];

	snprintf(p, sizeof(p), "%s/not-there", c->dir);
	assert_int_equal(stor_remove_tree(p, &err), 0);
	assert_int_equal(stor_remove_tree(c->src, &err), 0);
	assert_int_equal(access(c->src, F_OK), -1);
}

static void test_usage_counts_hard_links_once(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	uint64_t before, after;
	char p[4300];
	int fd;

	assert_int_equal(stor_tree_usage(c->src, &before, &err), 0);
	snprintf(p, sizeof(p), "%s/big", c->src);
	fd = open(p, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	for (int i = 0; i < 64; i++) {
		char buf[4096];
		memset(buf, 'a' + i % 26, sizeof(buf));
		assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	}
	fsync(fd);
	close(fd);
	{
		char l[4300];
		snprintf(l, sizeof(l), "%s/big-link", c->src);
		assert_int_equal(link(p, l), 0);
	}
	assert_int_equal(stor_tree_usage(c->src, &after, &err), 0);
	assert_true(after - before >= 256 * 1024);
	assert_true(after - before < 2 * 256 * 1024);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_copy_keeps_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_shifts_while_copying, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_refuses_existing_dst, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_failure_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_error_names_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mount_points, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_missing_is_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage_counts_hard_links_once, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
