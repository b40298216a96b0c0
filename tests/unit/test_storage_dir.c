/* The dir driver end to end in a temporary CELL_DIR: pool, image cache from
 * a real tarball, containers, snapshots, copies, streams, and the promise
 * that bad names and failed creates change nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mount.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "storage/storage.h"
#include "tests/unit/storage_fixture.h"

#define FP "3f2a1b7c9d8e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a"

struct ctx {
	char *dir;
	char fixture[4200], outside[4200], tarball[4200];
	struct stor_pool *p;
};

static int setup(void **state)
{
	struct ctx *c;
	cell_error err = { 0 };

	*state = NULL;
	if (!fx_is_root()) {
		fprintf(stderr, "storage dir: skipped: needs root (chown, mknod, security.capability)\n");
		return 0;
	}
	c = calloc(1, sizeof(*c));
	c->dir = fx_tmpdir("dir");
	snprintf(c->fixture, sizeof(c->fixture), "%s/src/rootfs", c->dir);
	snprintf(c->outside, sizeof(c->outside), "%s/outside", c->dir);
	snprintf(c->tarball, sizeof(c->tarball), "%s/image.tar", c->dir);
	{
		char src[4200];
		snprintf(src, sizeof(src), "%s/src", c->dir);
		assert_int_equal(mkdir(src, 0755), 0);
	}
	fx_write(c->outside, "outside", 0644, 0, 0);
	fx_build_rootfs(c->fixture, c->outside);
	assert_int_equal(stor_pool_new(c->dir, "default", "dir", NULL, &c->p, &err), 0);
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
	stor_pool_free(c->p);
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

static char *path(struct ctx *c, const char *rel)
{
	static char p[2][4400];
	static int i;
	i ^= 1;
	snprintf(p[i], sizeof(p[i]), "%s/storage-pools/default/%s", c->dir, rel);
	return p[i];
}

static bool dir_empty(const char *d)
{
	DIR *dh = opendir(d);
	struct dirent *de;
	bool empty = true;
	assert_non_null(dh);
	while ((de = readdir(dh)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			empty = false;
	closedir(dh);
	return empty;
}

/* Background spare copies work in .tmp: let them finish first. */
static bool tmp_empty(struct ctx *c)
{
	stor_pool_settle(c->p);
	return dir_empty(path(c, ".tmp"));
}

static int count_spares(struct ctx *c)
{
	DIR *dh = opendir(path(c, ".spare"));
	struct dirent *de;
	int n = 0;
	while (dh && (de = readdir(dh)))
		if (de->d_name[0] != '.')
			n++;
	if (dh)
		closedir(dh);
	return n;
}

/* Image cache straight from the fixture tree (no tarball in between), so
 * these tests check the driver's own copy with full fidelity. */
static void seed_image(struct ctx *c)
{
	cell_error err = { 0 };
	char img[4400];

	snprintf(img, sizeof(img), "%s", path(c, "images/" FP));
	assert_int_equal(stor_copy_tree(c->fixture, img, NULL, &err) == 0 ? 0 : -1, 0);
	/* stor_copy_tree copied the rootfs itself; images keep it in rootfs/ */
	{
		char tmp[4500], final[4500];
		snprintf(tmp, sizeof(tmp), "%s.x", img);
		assert_int_equal(rename(img, tmp), 0);
		assert_int_equal(mkdir(img, 0700), 0);
		snprintf(final, sizeof(final), "%s/rootfs", img);
		assert_int_equal(rename(tmp, final), 0);
	}
	fx_write(path(c, "images/" FP "/metadata.yaml"), "architecture: x86_64\n", 0644, 0, 0);
}

static void test_pool_layout(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	uint64_t used = 0, total = 0;
	char want[4300];

	snprintf(want, sizeof(want), "%s/storage-pools/default", c->dir);
	assert_string_equal(stor_pool_config(c->p, "source"), want);
	assert_int_equal(access(path(c, "containers"), F_OK), 0);
	assert_int_equal(access(path(c, "containers-snapshots"), F_OK), 0);
	assert_int_equal(access(path(c, "images"), F_OK), 0);
	assert_int_equal(stor_pool_usage(c->p, &used, &total, &err), 0);
	assert_true(total > 0 && used <= total);
	/* mount is idempotent */
	assert_int_equal(stor_pool_mount(c->p, &err), 0);
}

static void test_bad_names_change_nothing(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	const char *bad_ct[] = { "", "../x", "a/b", "1abc", "-a", "a-", "a_b", ".", "..", "a.b",
				 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" };
	const char *bad_snap[] = { "", ".", "..", "a/b", "../../etc", "x\ny" };
	const char *bad_fp[] = { "", "../../etc", "ABC", "xyz", FP "0" };

	seed_image(c);
	for (size_t i = 0; i < ARRAY_SIZE(bad_ct); i++) {
		err.status = 0;
		assert_int_equal(stor_ct_create_from_image(c->p, bad_ct[i], FP, NULL, &err), -EINVAL);
		assert_int_equal(err.status, 400);
		assert_int_equal(stor_ct_delete(c->p, bad_ct[i], &err), -EINVAL);
		assert_int_equal(stor_ct_rename(c->p, "c1", bad_ct[i], &err), -EINVAL);
		assert_null(stor_ct_path(c->p, bad_ct[i]));
	}
	assert_int_equal(stor_ct_create_from_image(c->p, "c1", FP, NULL, &err), 0);
	for (size_t i = 0; i < ARRAY_SIZE(bad_snap); i++) {
		assert_int_equal(stor_ct_snapshot_create(c->p, "c1", bad_snap[i], &err), -EINVAL);
		assert_int_equal(stor_ct_snapshot_delete(c->p, "c1", bad_snap[i], &err), -EINVAL);
		assert_int_equal(err.status, 400);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad_fp); i++) {
		assert_int_equal(stor_image_delete(c->p, bad_fp[i], &err), -EINVAL);
		assert_int_equal(stor_ct_create_from_image(c->p, "c2", bad_fp[i], NULL, &err),
				 -EINVAL);
	}
	/* Good names at the edges are fine. */
	assert_true(stor_valid_ct_name("a"));
	assert_true(stor_valid_ct_name("Web-01"));
	assert_true(stor_valid_ct_name("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
	assert_true(stor_valid_snap_name("snap0"));
	assert_true(stor_valid_snap_name("before upgrade"));
	assert_int_equal(access(path(c, "containers/c2"), F_OK), -1);
	assert_true(dir_empty(path(c, "containers-snapshots")));
	assert_true(tmp_empty(c));
}

static void test_image_from_tarball(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	struct stor_image_src src = { .image_path = c->tarball };
	struct stat st;

	fx_make_image_tar(c->fixture, c->tarball);
	if (stor_image_ensure(c->p, FP, &src, &err) < 0)
		fail_msg("image_ensure: %s", err.msg);
	assert_int_equal(access(path(c, "images/" FP "/metadata.yaml"), F_OK), 0);
	fx_check_rootfs(path(c, "images/" FP "/rootfs"), NULL, c->outside);
	/* Second time: already cached, nothing unpacked. */
	assert_int_equal(stat(path(c, "images/" FP), &st), 0);
	src.image_path = "/nonexistent.tar";
	assert_int_equal(stor_image_ensure(c->p, FP, &src, &err), 0);
	assert_true(tmp_empty(c));
	/* And a container from it. */
	if (stor_ct_create_from_image(c->p, "c1", FP, &fx_map1, &err) < 0)
		fail_msg("create: %s", err.msg);
	fx_check_rootfs(path(c, "containers/c1/rootfs"), &fx_map1, c->outside);
	assert_int_equal(stor_image_delete(c->p, FP, &err), 0);
	assert_int_equal(access(path(c, "images/" FP), F_OK), -1);
	assert_int_equal(stor_image_delete(c->p, FP, &err), 0);
}

/* A create takes a ready-made spare (a rename) when there is one, shifts it
 * for its map, and a new spare is made in the background. */
static void test_spares(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	struct stor_image_src src = { .image_path = c->tarball };

	fx_make_image_tar(c->fixture, c->tarball);
	assert_int_equal(stor_image_ensure(c->p, FP, &src, &err), 0);
	stor_pool_settle(c->p);
	assert_int_equal(count_spares(c), 1);   /* made in the background */
	if (stor_ct_create_from_image(c->p, "c1", FP, &fx_map1, &err) < 0)
		fail_msg("create: %s", err.msg);
	fx_check_rootfs(path(c, "containers/c1/rootfs"), &fx_map1, c->outside);
	assert_int_equal(fx_mode(path(c, "containers/c1"), ".") & 07777, 0100);
	stor_pool_settle(c->p);
	assert_int_equal(count_spares(c), 1);   /* refilled */
	if (stor_ct_create_from_image(c->p, "c2", FP, NULL, &err) < 0)
		fail_msg("create: %s", err.msg);
	fx_check_rootfs(path(c, "containers/c2/rootfs"), NULL, c->outside);
	/* The spare was unshifted: the image and c1 are unaffected. */
	fx_check_rootfs(path(c, "images/" FP "/rootfs"), NULL, c->outside);
	fx_check_rootfs(path(c, "containers/c1/rootfs"), &fx_map1, c->outside);
	assert_true(tmp_empty(c));

	/* With spares off, creates copy. */
	c->p->spares = 0;
	stor_pool_settle(c->p);
	assert_int_equal(stor_ct_create_from_image(c->p, "c3", FP, NULL, &err), 0);
	assert_int_equal(count_spares(c), 0);   /* a leftover is still used */
	assert_int_equal(stor_ct_create_from_image(c->p, "c4", FP, NULL, &err), 0);
	stor_pool_settle(c->p);
	assert_int_equal(count_spares(c), 0);   /* but none is made */
	fx_check_rootfs(path(c, "containers/c4/rootfs"), NULL, c->outside);
	c->p->spares = 1;

	/* Spares go with their image, or at gc when the image is gone. */
	assert_int_equal(stor_image_ensure(c->p, FP, &src, &err), 0);   /* refills */
	stor_pool_settle(c->p);
	assert_int_equal(count_spares(c), 1);
	assert_int_equal(stor_image_delete(c->p, FP, &err), 0);
	assert_int_equal(count_spares(c), 0);
	assert_int_equal(mkdir(path(c, ".spare/" FP "-0123456789abcdef"), 0700), 0);
	assert_int_equal(stor_pool_gc(c->p, &err), 0);
	assert_int_equal(count_spares(c), 0);
	assert_true(tmp_empty(c));
}

static void test_bad_image_leaves_nothing(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	char junk[4300];
	struct stor_image_src src = { .image_path = junk };

	snprintf(junk, sizeof(junk), "%s/junk.tar", c->dir);
	fx_write(junk, "this is not a tarball at all, not even close", 0644, 0, 0);
	assert_true(stor_image_ensure(c->p, FP, &src, &err) < 0);
	assert_int_equal(access(path(c, "images/" FP), F_OK), -1);
	assert_true(tmp_empty(c));
}

static void test_create_privileged_and_shifted(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };

	seed_image(c);
	if (stor_ct_create_from_image(c->p, "c1", FP, NULL, &err) < 0)
		fail_msg("create: %s", err.msg);
	fx_check_rootfs(path(c, "containers/c1/rootfs"), NULL, c->outside);
	assert_int_equal(fx_mode(path(c, "containers/c1"), ".") & 07777, 0100);
	assert_int_equal(access(path(c, "containers/c1/metadata.yaml"), F_OK), 0);

	if (stor_ct_create_from_image(c->p, "c2", FP, &fx_map1, &err) < 0)
		fail_msg("create: %s", err.msg);
	fx_check_rootfs(path(c, "containers/c2/rootfs"), &fx_map1, c->outside);
	/* The cache keeps the image's own ids. */
	fx_check_rootfs(path(c, "images/" FP "/rootfs"), NULL, c->outside);

	err.status = 0;
	assert_int_equal(stor_ct_create_from_image(c->p, "c1", FP, NULL, &err), -EEXIST);
	assert_int_equal(err.status, 409);
	assert_int_equal(stor_ct_create_from_image(c->p, "c3", "abcdef", NULL, &err), -ENOENT);
	assert_int_equal(err.status, 404);
	assert_int_equal(access(path(c, "containers/c3"), F_OK), -1);
	assert_true(tmp_empty(c));
}

static void test_failed_create_leaves_nothing(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };

	seed_image(c);
	/* An id the container's map cannot hold fails the copy part-way. */
	fx_write(path(c, "images/" FP "/rootfs/zzz-odd"), "odd", 0644, 5000, 5000);
	assert_true(stor_ct_create_from_image(c->p, "c1", FP, &fx_tiny, &err) < 0);
	assert_non_null(strstr(err.msg, "rootfs/"));
	assert_int_equal(access(path(c, "containers/c1"), F_OK), -1);
	assert_true(dir_empty(path(c, "containers")));
	assert_true(tmp_empty(c));
}

static void test_create_empty(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };

	assert_int_equal(stor_ct_create_empty(c->p, "e1", &fx_map1, &err), 0);
	fx_owner(path(c, "containers/e1/rootfs"), ".", &fx_map1, 0, 0);
	assert_true(dir_empty(path(c, "containers/e1/rootfs")));
	assert_int_equal(stor_ct_create_empty(c->p, "e1", NULL, &err), -EEXIST);
}

static void test_snapshots(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	_cleanup_strv_ char **list = NULL;

	seed_image(c);
	assert_int_equal(stor_ct_create_from_image(c->p, "c1", FP, &fx_map1, &err), 0);
	if (stor_ct_snapshot_create(c->p, "c1", "snap0", &err) < 0)
		fail_msg("snapshot: %s", err.msg);
	fx_check_rootfs(path(c, "containers-snapshots/c1/snap0/rootfs"), &fx_map1, c->outside);
	assert_int_equal(stor_ct_snapshot_create(c->p, "c1", "snap0", &err), -EEXIST);

	/* Change the container, then restore: the change is gone. */
	fx_write(path(c, "containers/c1/rootfs/etc/passwd"), "changed\n", 0644, 0, 0);
	fx_write(path(c, "containers/c1/rootfs/new-file"), "new\n", 0644, 0, 0);
	if (stor_ct_snapshot_restore(c->p, "c1", "snap0", &err) < 0)
		fail_msg("restore: %s", err.msg);
	fx_check_rootfs(path(c, "containers/c1/rootfs"), &fx_map1, c->outside);
	assert_int_equal(access(path(c, "containers/c1/rootfs/new-file"), F_OK), -1);
	assert_int_equal(fx_mode(path(c, "containers/c1"), ".") & 07777, 0100);
	assert_int_equal(stor_ct_snapshot_restore(c->p, "c1", "nope", &err), -ENOENT);

	assert_int_equal(stor_ct_snapshot_create(c->p, "c1", "snap1", &err), 0);
	assert_int_equal(stor_ct_snapshot_rename(c->p, "c1", "snap1", "before upgrade", &err), 0);
	assert_int_equal(stor_ct_snapshot_rename(c->p, "c1", "snap0", "before upgrade", &err),
			 -EEXIST);
	assert_int_equal(stor_snapshot_list(c->p, "c1", &list, &err), 0);
	assert_string_equal(list[0], "before upgrade");
	assert_string_equal(list[1], "snap0");
	assert_null(list[2]);

	assert_int_equal(stor_ct_snapshot_delete(c->p, "c1", "snap0", &err), 0);
	assert_int_equal(stor_ct_snapshot_delete(c->p, "c1", "snap0", &err), 0);
	assert_int_equal(stor_ct_snapshot_delete(c->p, "c1", "before upgrade", &err), 0);
	/* The per-container dir goes with the last snapshot. */
	assert_int_equal(access(path(c, "containers-snapshots/c1"), F_OK), -1);
	assert_true(tmp_empty(c));
}

static void test_copy_rename_delete(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	uint64_t used = 0;

	seed_image(c);
	assert_int_equal(stor_ct_create_from_image(c->p, "c1", FP, &fx_map1, &err), 0);
	assert_int_equal(stor_ct_snapshot_create(c->p, "c1", "s0", &err), 0);
	if (stor_ct_copy(c->p, "c1", "c2", true, &fx_map1, &fx_map2, &err) < 0)
		fail_msg("copy: %s", err.msg);
	fx_check_rootfs(path(c, "containers/c2/rootfs"), &fx_map2, c->outside);
	fx_check_rootfs(path(c, "containers-snapshots/c2/s0/rootfs"), &fx_map2, c->outside);
	fx_check_rootfs(path(c, "containers/c1/rootfs"), &fx_map1, c->outside);
	assert_int_equal(stor_ct_copy(c->p, "c1", "c3", false, NULL, NULL, &err), 0);
	assert_int_equal(access(path(c, "containers-snapshots/c3"), F_OK), -1);
	assert_int_equal(stor_ct_copy(c->p, "c1", "c2", false, NULL, NULL, &err), -EEXIST);
	assert_int_equal(stor_ct_copy(c->p, "nope", "c4", false, NULL, NULL, &err), -ENOENT);

	assert_int_equal(stor_ct_create_empty(c->p, "e1", NULL, &err), 0);
	assert_int_equal(stor_ct_copy(c->p, "e1", "e2", true, NULL, NULL, &err), 0);
	assert_int_equal(access(path(c, "containers-snapshots/e2"), F_OK), -1);

	assert_int_equal(stor_ct_rename(c->p, "c2", "web", &err), 0);
	assert_int_equal(access(path(c, "containers/web/rootfs/etc/passwd"), F_OK), 0);
	assert_int_equal(access(path(c, "containers-snapshots/web/s0"), F_OK), 0);
	assert_int_equal(access(path(c, "containers/c2"), F_OK), -1);
	assert_int_equal(access(path(c, "containers-snapshots/c2"), F_OK), -1);
	assert_int_equal(stor_ct_rename(c->p, "web", "c1", &err), -EEXIST);
	assert_int_equal(access(path(c, "containers/web"), F_OK), 0);

	assert_int_equal(stor_ct_usage(c->p, "web", &used, &err), 0);
	assert_true(used > 0);
	assert_int_equal(stor_ct_set_quota(c->p, "web", 0, &err), 0);
	assert_int_equal(stor_ct_set_quota(c->p, "web", 1 << 30, &err), -EOPNOTSUPP);
	assert_int_equal(err.status, 400);

	assert_int_equal(stor_ct_delete(c->p, "web", &err), 0);
	assert_int_equal(access(path(c, "containers/web"), F_OK), -1);
	assert_int_equal(access(path(c, "containers-snapshots/web"), F_OK), -1);
	assert_int_equal(stor_ct_delete(c->p, "web", &err), 0);
	assert_true(tmp_empty(c));
}

static void test_shift_op(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };

	seed_image(c);
	assert_int_equal(stor_ct_create_from_image(c->p, "c1", FP, &fx_map1, &err), 0);
	assert_int_equal(stor_ct_shift(c->p, "c1", &fx_map1, &fx_map2, &err), 0);
	fx_check_rootfs(path(c, "containers/c1/rootfs"), &fx_map2, c->outside);
	assert_int_equal(stor_ct_shift(c->p, "nope", &fx_map1, &fx_map2, &err), -ENOENT);
}

static void test_send_receive(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	char stream[4300];
	int fd;

	seed_image(c);
	assert_int_equal(stor_ct_create_from_image(c->p, "c1", FP, NULL, &err), 0);
	assert_int_equal(stor_ct_snapshot_create(c->p, "c1", "s0", &err), 0);
	snprintf(stream, sizeof(stream), "%s/stream", c->dir);
	fd = open(stream, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	if (stor_ct_send(c->p, "c1", NULL, NULL, fd, &err) < 0)
		fail_msg("send: %s", err.msg);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	if (stor_ct_receive(c->p, "c9", NULL, fd, &err) < 0)
		fail_msg("receive: %s", err.msg);
	close(fd);
	assert_string_equal(fx_read(path(c, "containers/c9/rootfs/etc/passwd")),
			    "root:x:0:0:root:/root:/bin/sh\n");
	assert_int_equal(fx_mode(path(c, "containers/c9/rootfs/bin"), "su") & 07777, 04755);
	assert_int_equal(fx_mode(path(c, "containers/c9"), ".") & 07777, 0100);

	fd = open(stream, O_RDWR | O_TRUNC);
	assert_int_equal(stor_ct_send(c->p, "c1", "s0", NULL, fd, &err), 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(stor_ct_receive(c->p, "c9", "s0", fd, &err), 0);
	assert_int_equal(access(path(c, "containers-snapshots/c9/s0/rootfs/etc/passwd"), F_OK), 0);
	/* Receiving onto an existing volume is refused and changes nothing. */
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(stor_ct_receive(c->p, "c9", NULL, fd, &err), -EEXIST);
	/* A garbage stream leaves nothing. */
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(write(fd, "garbage garbage garbage", 23), 23);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_true(stor_ct_receive(c->p, "c8", NULL, fd, &err) < 0);
	close(fd);
	assert_int_equal(access(path(c, "containers/c8"), F_OK), -1);
	assert_true(tmp_empty(c));
}

struct race {
	struct ctx *c;
	int rc;
	cell_error err;
};

static void *race_ensure(void *data)
{
	struct race *r = data;
	struct stor_image_src src = { .image_path = r->c->tarball };
	r->rc = stor_image_ensure(r->c->p, FP, &src, &r->err);
	return NULL;
}

static void *race_create(void *data)
{
	struct race *r = data;
	r->rc = stor_ct_create_from_image(r->c->p, "same", FP, &fx_map1, &r->err);
	return NULL;
}

/* Concurrent ensures of one image all succeed with one cache; concurrent
 * creates of one name: one wins, the rest get 409, no debris. */
static void test_races(void **state)
{
	struct ctx *c = need(state);
	struct race r[4];
	pthread_t th[4];
	int won = 0;

	fx_make_image_tar(c->fixture, c->tarball);
	for (int i = 0; i < 4; i++) {
		r[i] = (struct race){ .c = c };
		pthread_create(&th[i], NULL, race_ensure, &r[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		if (r[i].rc < 0)
			fail_msg("ensure %d: %s", i, r[i].err.msg);
	}
	fx_check_rootfs(path(c, "images/" FP "/rootfs"), NULL, c->outside);
	for (int i = 0; i < 4; i++) {
		r[i] = (struct race){ .c = c };
		pthread_create(&th[i], NULL, race_create, &r[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		if (r[i].rc == 0)
			won++;
		else if (r[i].rc != -EEXIST || r[i].err.status != 409)
			fail_msg("create %d: %d %s", i, r[i].rc, r[i].err.msg);
	}
	assert_int_equal(won, 1);
	fx_check_rootfs(path(c, "containers/same/rootfs"), &fx_map1, c->outside);
	assert_true(tmp_empty(c));
}

static void test_gc_and_pool_delete(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };

	seed_image(c);
	assert_int_equal(stor_ct_create_from_image(c->p, "c1", FP, NULL, &err), 0);
	/* Debris of a crash mid-create. */
	assert_int_equal(mkdir(path(c, ".tmp/ct-c2-0123456789abcdef"), 0700), 0);
	fx_write(path(c, ".tmp/ct-c2-0123456789abcdef/half"), "half", 0600, 0, 0);
	assert_int_equal(stor_pool_gc(c->p, &err), 0);
	assert_true(tmp_empty(c));

	assert_int_equal(stor_pool_delete(c->p, &err), -EBUSY);
	assert_int_equal(err.status, 409);
	assert_int_equal(access(path(c, "containers/c1/rootfs"), F_OK), 0);
	assert_int_equal(stor_ct_delete(c->p, "c1", &err), 0);
	if (stor_pool_delete(c->p, &err) < 0)
		fail_msg("pool delete: %s", err.msg);
	assert_int_equal(access(path(c, "."), F_OK), -1);
}

static void test_pool_with_source(void **state)
{
	struct ctx *c = need(state);
	_cleanup_stor_pool_ struct stor_pool *p = NULL;
	cell_error err = { 0 };
	json_t *cfg = json_object();
	char src[4300], probe[4400];

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		json_decref(cfg);
		fprintf(stderr, "storage dir: source= test skipped: no mount namespace\n");
		skip();
	}
	snprintf(src, sizeof(src), "%s/elsewhere", c->dir);
	json_object_set_new(cfg, "source", json_string(src));
	assert_int_equal(stor_pool_new(c->dir, "other", "dir", cfg, &p, &err), 0);
	json_decref(cfg);
	if (stor_pool_create(p, &err) < 0)
		fail_msg("create: %s", err.msg);
	snprintf(probe, sizeof(probe), "%s/containers", src);
	assert_int_equal(access(probe, F_OK), 0);
	assert_int_equal(stor_ct_create_empty(p, "x1", NULL, &err), 0);
	snprintf(probe, sizeof(probe), "%s/containers/x1/rootfs", src);
	assert_int_equal(access(probe, F_OK), 0);
	assert_int_equal(stor_ct_delete(p, "x1", &err), 0);
	if (stor_pool_delete(p, &err) < 0)
		fail_msg("delete: %s", err.msg);
	assert_int_equal(access(src, F_OK), 0);   /* the user's dir stays */
	snprintf(probe, sizeof(probe), "%s/storage-pools/other", c->dir);
	assert_int_equal(access(probe, F_OK), -1);
}

static void test_parse_size(void **state)
{
	uint64_t v;
	(void)state;
	assert_int_equal(stor_parse_size("256MB", &v), 0);
	assert_int_equal(v, 256000000ULL);
	assert_int_equal(stor_parse_size("10GiB", &v), 0);
	assert_int_equal(v, 10ULL << 30);
	assert_int_equal(stor_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(stor_parse_size("1kB", &v), 0);
	assert_int_equal(v, 1000);
	assert_int_equal(stor_parse_size("12XB", &v), -EINVAL);
	assert_int_equal(stor_parse_size("GB", &v), -EINVAL);
	assert_int_equal(stor_parse_size("-1", &v), -EINVAL);
	assert_int_equal(stor_parse_size("99999999999999999999", &v), -EINVAL);
	assert_int_equal(stor_parse_size("20EiB", &v), -EINVAL);
}

static void test_driver_lookup(void **state)
{
	(void)state;
	assert_non_null(stor_driver("dir"));
	assert_non_null(stor_driver("btrfs"));
	assert_non_null(stor_driver("zfs"));
	assert_null(stor_driver("lvm"));
	assert_null(stor_driver(NULL));
	assert_true(stor_driver_available("dir", NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_driver_lookup),
		cmocka_unit_test_setup_teardown(test_pool_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_names_change_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_from_tarball, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spares, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_image_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_privileged_and_shifted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_create_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_rename_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shift_op, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_receive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_races, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc_and_pool_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_with_source, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
