/* stor_shift_tree: owners, setuid bits, file capabilities and ACLs move
 * between id maps in place; hard links once; symlinks never followed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "storage/storage.h"
#include "tests/unit/storage_fixture.h"

struct ctx {
	char *dir, root[4200], outside[4200];
};

static int setup(void **state)
{
	struct ctx *c;

	*state = NULL;
	if (!fx_is_root()) {
		fprintf(stderr, "storage shift: skipped: needs root (chown, mknod, security.capability)\n");
		return 0;
	}
	c = calloc(1, sizeof(*c));
	c->dir = fx_tmpdir("shift");
	snprintf(c->root, sizeof(c->root), "%s/rootfs", c->dir);
	snprintf(c->outside, sizeof(c->outside), "%s/outside", c->dir);
	fx_write(c->outside, "outside", 0644, 0, 0);
	fx_build_rootfs(c->root, c->outside);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	cell_error err;

	if (!c)
		return 0;
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

static void test_shift_into_map(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };

	assert_int_equal(stor_shift_tree(c->root, NULL, &fx_map1, &err), 0);
	/* Owners moved, setuid/setgid kept, caps v3 with the map's root,
	 * ACL ids shifted, the hard-linked inode shifted once, the file
	 * behind the outgoing symlink untouched. */
	fx_check_rootfs(c->root, &fx_map1, c->outside);
}

static void test_shift_round_trip(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };

	assert_int_equal(stor_shift_tree(c->root, NULL, &fx_map1, &err), 0);
	assert_int_equal(stor_shift_tree(c->root, &fx_map1, &fx_map2, &err), 0);
	fx_check_rootfs(c->root, &fx_map2, c->outside);
	assert_int_equal(stor_shift_tree(c->root, &fx_map2, NULL, &err), 0);
	fx_check_rootfs(c->root, NULL, c->outside);
}

static void test_identity_is_a_no_op(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	struct idmap empty = { 0 };

	assert_int_equal(stor_shift_tree(c->root, NULL, NULL, &err), 0);
	assert_int_equal(stor_shift_tree(c->root, &empty, NULL, &err), 0);
	assert_int_equal(stor_shift_tree(c->root, &fx_map1, &fx_map1, &err), 0);
	fx_check_rootfs(c->root, NULL, c->outside);
}

/* A host id the old map does not cover becomes the new map's nobody rather
 * than staying a host id that may be another container's. */
static void test_unmapped_id_becomes_overflow(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	char p[4300];

	assert_int_equal(stor_shift_tree(c->root, NULL, &fx_map1, &err), 0);
	snprintf(p, sizeof(p), "%s/stray", c->root);
	fx_write(p, "stray", 0644, 300000, 300000);
	assert_int_equal(stor_shift_tree(c->root, &fx_map1, &fx_map2, &err), 0);
	fx_owner(c->root, "stray", &fx_map2, 65534, 65534);
}

static void test_unmappable_fails_with_path(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	char p[4300];

	snprintf(p, sizeof(p), "%s/etc/odd", c->root);
	fx_write(p, "odd", 0644, 5000, 5000);
	assert_true(stor_shift_tree(c->root, NULL, &fx_tiny, &err) < 0);
	assert_non_null(strstr(err.msg, "rootfs/etc/"));
}

static void test_missing_tree(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	char p[4300];

	snprintf(p, sizeof(p), "%s/nope", c->dir);
	assert_true(stor_shift_tree(p, NULL, &fx_map1, &err) < 0);
	assert_non_null(strstr(err.msg, "nope"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_shift_into_map, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shift_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identity_is_a_no_op, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unmapped_id_becomes_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unmappable_fails_with_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_tree, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
