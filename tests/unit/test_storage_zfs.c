/* The zfs driver.  It needs the zfs kernel module and zfsutils; where they
 * are missing (as on the machine this was written on) the real tests say so
 * plainly and skip, and what can still be checked is: the driver refuses
 * cleanly and leaves nothing behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>

#include "common/cleanup.h"
#include "storage/storage.h"
#include "tests/unit/storage_fixture.h"

#define FP "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const char *why_not;

struct ctx {
	char *dir;
	char fixture[4200], outside[4200], tarball[4200], zpool[64];
	struct stor_pool *p;
};

static void need_zfs(void)
{
	if (why_not) {
		printf("zfs: cannot run: no zfs kernel module / zfs tools (%s)\n", why_not);
		skip();
	}
}

static int setup(void **state)
{
	struct ctx *c;
	json_t *cfg = json_object();
	cell_error err = { 0 };
	char src[4200];

	*state = NULL;
	if (why_not) {
		json_decref(cfg);
		return 0;
	}
	c = calloc(1, sizeof(*c));
	c->dir = fx_tmpdir("zfs");
	snprintf(c->fixture, sizeof(c->fixture), "%s/src/rootfs", c->dir);
	snprintf(c->outside, sizeof(c->outside), "%s/outside", c->dir);
	snprintf(c->tarball, sizeof(c->tarball), "%s/image.tar", c->dir);
	snprintf(src, sizeof(src), "%s/src", c->dir);
	assert_int_equal(mkdir(src, 0755), 0);
	fx_write(c->outside, "outside", 0644, 0, 0);
	fx_build_rootfs(c->fixture, c->outside);
	/* A zpool name no other run can have. */
	snprintf(c->zpool, sizeof(c->zpool), "celltest%d", (int)getpid());
	json_object_set_new(cfg, "zfs.pool_name", json_string(c->zpool));
	json_object_set_new(cfg, "size", json_string("512MiB"));
	assert_int_equal(stor_pool_new(c->dir, "default", "zfs", cfg, &c->p, &err), 0);
	json_decref(cfg);
	if (stor_pool_create(c->p, &err) < 0)
		fail_msg("pool create: %s", err.msg);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	cell_error err;

	if (!c)
		return 0;
	fx_sh("zpool destroy -f %s >/dev/null 2>&1", c->zpool);
	stor_pool_free(c->p);
	stor_remove_tree(c->dir, &err);
	free(c->dir);
	free(c);
	return 0;
}

static char *path(struct ctx *c, const char *rel)
{
	static char p[2][4400];
	static int i;
	i ^= 1;
	snprintf(p[i], sizeof(p[i]), "%s/storage-pools/default/%s", c->dir, rel);
	return p[i];
}

/* Runs everywhere: without zfs the driver must fail with a clear message
 * and create no loop file or pool directory. */
static void test_unavailable_refuses_cleanly(void **state)
{
	_cleanup_stor_pool_ struct stor_pool *p = NULL;
	cell_error err = { 0 };
	char *dir, probe[4300];

	(void)state;
	if (!why_not)
		skip();   /* zfs is here: the real tests cover it */
	printf("zfs: cannot run: no zfs kernel module / zfs tools (%s); "
	       "checking only that the driver refuses cleanly\n", why_not);
	dir = fx_tmpdir("zfs-absent");
	assert_int_equal(stor_pool_new(dir, "default", "zfs", NULL, &p, &err), 0);
	assert_true(stor_pool_create(p, &err) < 0);
	assert_non_null(strstr(err.msg, "zfs"));
	snprintf(probe, sizeof(probe), "%s/disks/default.img", dir);
	assert_int_equal(access(probe, F_OK), -1);
	snprintf(probe, sizeof(probe), "%s/storage-pools/default/containers", dir);
	assert_int_equal(access(probe, F_OK), -1);
	assert_true(stor_pool_mount(p, &err) < 0);
	assert_int_equal(stor_remove_tree(dir, &err), 0);
	free(dir);
}

static void test_image_and_containers(void **state)
{
	struct ctx *c;
	cell_error err = { 0 };
	struct stor_image_src src = { 0 };

	need_zfs();
	c = *state;
	fx_make_image_tar(c->fixture, c->tarball);
	src.image_path = c->tarball;
	if (stor_image_ensure(c->p, FP, &src, &err) < 0)
		fail_msg("image: %s", err.msg);
	if (stor_ct_create_from_image(c->p, "c1", FP, NULL, &err) < 0)
		fail_msg("create: %s", err.msg);
	fx_check_rootfs(path(c, "containers/c1/rootfs"), NULL, c->outside);
	if (stor_ct_create_from_image(c->p, "c2", FP, &fx_map1, &err) < 0)
		fail_msg("create shifted: %s", err.msg);
	fx_check_rootfs(path(c, "containers/c2/rootfs"), &fx_map1, c->outside);
	assert_int_equal(stor_ct_create_from_image(c->p, "c1", FP, NULL, &err), -EEXIST);

	assert_int_equal(stor_ct_snapshot_create(c->p, "c1", "s0", &err), 0);
	fx_write(path(c, "containers/c1/rootfs/new"), "new", 0644, 0, 0);
	assert_int_equal(stor_ct_snapshot_restore(c->p, "c1", "s0", &err), 0);
	assert_int_equal(access(path(c, "containers/c1/rootfs/new"), F_OK), -1);
	assert_int_equal(stor_ct_copy(c->p, "c1", "c3", true, NULL, NULL, &err), 0);
	fx_check_rootfs(path(c, "containers/c3/rootfs"), NULL, c->outside);
	assert_int_equal(stor_ct_rename(c->p, "c3", "web", &err), 0);
	assert_int_equal(access(path(c, "containers-snapshots/web/s0"), F_OK), 0);
	assert_int_equal(stor_ct_set_quota(c->p, "web", 64 << 20, &err), 0);

	/* The image goes while clones use it; the clones keep working. */
	assert_int_equal(stor_image_delete(c->p, FP, &err), 0);
	assert_int_equal(access(path(c, "containers/c1/rootfs/etc/passwd"), F_OK), 0);
	assert_int_equal(stor_ct_delete(c->p, "web", &err), 0);
	assert_int_equal(stor_ct_delete(c->p, "c2", &err), 0);
	assert_int_equal(stor_ct_delete(c->p, "c1", &err), 0);
	if (stor_pool_delete(c->p, &err) < 0)
		fail_msg("pool delete: %s", err.msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unavailable_refuses_cleanly),
		cmocka_unit_test_setup_teardown(test_image_and_containers, setup, teardown),
	};

	if (!fx_is_root())
		why_not = "needs root";
	else
		stor_driver_available("zfs", &why_not);
	if (why_not)
		printf("zfs: cannot run: no zfs kernel module / zfs tools (%s)\n", why_not);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
