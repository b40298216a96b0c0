/* The btrfs driver on a real loop pool (size=256MB) in a temporary CELL_DIR.
 * Everything runs in a private mount namespace, so even a crashed run
 * leaves no mount behind, and the loop device is autoclear, so it goes
 * with the mount.  Skips, saying why, without root, loop devices or
 * btrfs-progs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <glob.h>
#include <linux/btrfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "storage/storage.h"
#include "tests/unit/storage_fixture.h"

#define FP "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"
#define BTRFS_MAGIC 0x9123683E

static const char *skip_reason;

struct ctx {
	char *dir;
	char fixture[4200], outside[4200], tarball[4200];
	struct stor_pool *p;
};

static void find_skip_reason(void)
{
	const char *why = NULL;

	if (!fx_is_root())
		skip_reason = "needs root (loop devices, mount)";
	else if (!stor_driver_available("btrfs", &why))
		skip_reason = why;
	else if (access("/dev/loop-control", R_OK | W_OK) < 0)
		skip_reason = "no /dev/loop-control (no loop device support)";
	else if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		skip_reason = "cannot make a private mount namespace";
}

static struct ctx *make_ctx(const char *size, bool create)
{
	struct ctx *c = calloc(1, sizeof(*c));
	json_t *cfg = json_object();
	cell_error err = { 0 };
	char src[4200];

	c->dir = fx_tmpdir("btrfs");
	snprintf(c->fixture, sizeof(c->fixture), "%s/src/rootfs", c->dir);
	snprintf(c->outside, sizeof(c->outside), "%s/outside", c->dir);
	snprintf(c->tarball, sizeof(c->tarball), "%s/image.tar", c->dir);
	snprintf(src, sizeof(src), "%s/src", c->dir);
	assert_int_equal(mkdir(src, 0755), 0);
	fx_write(c->outside, "outside", 0644, 0, 0);
	fx_build_rootfs(c->fixture, c->outside);
	if (size)
		json_object_set_new(cfg, "size", json_string(size));
	assert_int_equal(stor_pool_new(c->dir, "default", "btrfs", cfg, &c->p, &err), 0);
	json_decref(cfg);
	if (create && stor_pool_create(c->p, &err) < 0)
		fail_msg("pool create: %s", err.msg);
	return c;
}

static int setup(void **state)
{
	*state = NULL;
	if (skip_reason)
		return 0;
	*state = make_ctx("256MB", true);
	return 0;
}

static void free_ctx(struct ctx *c)
{
	cell_error err;
	char mnt[4300];

	snprintf(mnt, sizeof(mnt), "%s/storage-pools/default", c->dir);
	umount2(mnt, MNT_DETACH);   /* whatever the test left; autoclear frees the loop */
	stor_pool_free(c->p);
	if (stor_remove_tree(c->dir, &err) < 0)
		fprintf(stderr, "cleanup: %s\n", err.msg);
	free(c->dir);
	free(c);
}

static int teardown(void **state)
{
	if (*state)
		free_ctx(*state);
	return 0;
}

static struct ctx *need(void **state)
{
	if (!*state) {
		fprintf(stderr, "storage btrfs: skipped: %s\n", skip_reason);
		skip();
	}
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

static bool is_subvol(const char *p)
{
	struct stat st;
	struct statfs sf;
	return lstat(p, &st) == 0 && statfs(p, &sf) == 0 && sf.f_type == BTRFS_MAGIC &&
	       st.st_ino == 256;
}

static bool is_readonly_subvol(const char *p)
{
	int fd = open(p, O_RDONLY | O_DIRECTORY);
	uint64_t flags = 0;
	bool ro = fd >= 0 && ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, &flags) == 0 &&
		  (flags & BTRFS_SUBVOL_RDONLY);
	if (fd >= 0)
		close(fd);
	return ro;
}

/* The loop device backed by `file`, read from sysfs: "" when none. */
static const char *loop_of(const char *file)
{
	static char dev[64];
	glob_t g;

	dev[0] = '\0';
	if (glob("/sys/block/loop*/loop/backing_file", 0, NULL, &g) != 0)
		return dev;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		FILE *f = fopen(g.gl_pathv[i], "r");
		char line[4200] = "";
		if (f && fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\n")] = '\0';
			if (!strcmp(line, file))
				sscanf(g.gl_pathv[i], "/sys/block/%63[^/]", dev);
		}
		if (f)
			fclose(f);
	}
	globfree(&g);
	return dev;
}

static void image(struct ctx *c)
{
	cell_error err = { 0 };
	struct stor_image_src src = { .image_path = c->tarball };

	fx_make_image_tar(c->fixture, c->tarball);
	if (stor_image_ensure(c->p, FP, &src, &err) < 0)
		fail_msg("image_ensure: %s", err.msg);
}

static void test_loop_pool(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	char file[4300], autoclear[256];
	struct stat st;
	struct statfs sf;
	FILE *f;

	snprintf(file, sizeof(file), "%s/disks/default.img", c->dir);
	assert_string_equal(stor_pool_config(c->p, "source"), file);
	assert_string_equal(stor_pool_config(c->p, "size"), "256MB");
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_size, 256000000);
	assert_true(st.st_blocks * 512 < st.st_size / 2);   /* sparse */
	assert_int_equal(statfs(path(c, ""), &sf), 0);
	assert_int_equal(sf.f_type, BTRFS_MAGIC);
	assert_int_equal(access(path(c, "containers"), F_OK), 0);

	/* The loop device clears itself when the mount goes. */
	assert_string_not_equal(loop_of(file), "");
	snprintf(autoclear, sizeof(autoclear), "/sys/block/%s/loop/autoclear", loop_of(file));
	f = fopen(autoclear, "r");
	assert_non_null(f);
	assert_int_equal(fgetc(f), '1');
	fclose(f);
	assert_int_equal(stor_pool_mount(c->p, &err), 0);   /* idempotent */
	assert_int_equal(stor_pool_unmount(c->p, &err), 0);
	for (int i = 0; i < 200 && *loop_of(file); i++)
		usleep(10000);
	assert_string_equal(loop_of(file), "");
	assert_int_equal(stor_pool_unmount(c->p, &err), 0);   /* idempotent */
	if (stor_pool_mount(c->p, &err) < 0)
		fail_msg("remount: %s", err.msg);
	assert_int_equal(statfs(path(c, ""), &sf), 0);
	assert_int_equal(sf.f_type, BTRFS_MAGIC);
}

static void test_image_is_readonly_subvolume(void **state)
{
	struct ctx *c = need(state);

	image(c);
	assert_true(is_subvol(path(c, "images/" FP)));
	assert_true(is_readonly_subvol(path(c, "images/" FP)));
	fx_check_rootfs(path(c, "images/" FP "/rootfs"), NULL, c->outside);
	assert_int_equal(access(path(c, "images/" FP "/metadata.yaml"), F_OK), 0);
	assert_true(dir_empty(path(c, ".tmp")));

	{
		cell_error err = { 0 };
		struct stor_image_src src = { .image_path = c->tarball };
		if (stor_image_delete(c->p, FP, &err) < 0)
			fail_msg("image delete: %s", err.msg);
		assert_int_equal(access(path(c, "images/" FP), F_OK), -1);
		assert_int_equal(stor_image_delete(c->p, FP, &err), 0);
		assert_int_equal(stor_image_ensure(c->p, FP, &src, &err), 0);
		assert_true(is_readonly_subvol(path(c, "images/" FP)));
	}
}

static void test_create_from_image(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };

	image(c);
	if (stor_ct_create_from_image(c->p, "c1", FP, NULL, &err) < 0)
		fail_msg("create: %s", err.msg);
	assert_true(is_subvol(path(c, "containers/c1")));
	assert_false(is_readonly_subvol(path(c, "containers/c1")));
	assert_int_equal(fx_mode(path(c, "containers/c1"), ".") & 07777, 0100);
	fx_check_rootfs(path(c, "containers/c1/rootfs"), NULL, c->outside);
	fx_write(path(c, "containers/c1/rootfs/writable"), "yes", 0644, 0, 0);

	if (stor_ct_create_from_image(c->p, "c2", FP, &fx_map1, &err) < 0)
		fail_msg("create shifted: %s", err.msg);
	fx_check_rootfs(path(c, "containers/c2/rootfs"), &fx_map1, c->outside);
	fx_check_rootfs(path(c, "images/" FP "/rootfs"), NULL, c->outside);

	assert_int_equal(stor_ct_create_from_image(c->p, "c1", FP, NULL, &err), -EEXIST);
	assert_int_equal(stor_ct_create_from_image(c->p, "c3", "abc", NULL, &err), -ENOENT);
	assert_true(dir_empty(path(c, ".tmp")));
}

static void test_failed_create_leaves_nothing(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	char odd[4300];

	snprintf(odd, sizeof(odd), "%s/zzz-odd", c->fixture);
	fx_write(odd, "odd", 0644, 5000, 5000);
	image(c);
	assert_true(stor_ct_create_from_image(c->p, "c1", FP, &fx_tiny, &err) < 0);
	if (!strstr(err.msg, "rootfs/"))
		fail_msg("message does not name the file: %s", err.msg);
	assert_int_equal(access(path(c, "containers/c1"), F_OK), -1);
	assert_true(dir_empty(path(c, "containers")));
	assert_true(dir_empty(path(c, ".tmp")));
}

static void test_snapshots(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	_cleanup_strv_ char **list = NULL;

	image(c);
	assert_int_equal(stor_ct_create_from_image(c->p, "c1", FP, &fx_map1, &err), 0);
	if (stor_ct_snapshot_create(c->p, "c1", "snap0", &err) < 0)
		fail_msg("snapshot: %s", err.msg);
	assert_true(is_readonly_subvol(path(c, "containers-snapshots/c1/snap0")));
	assert_int_equal(open(path(c, "containers-snapshots/c1/snap0/rootfs/new"),
			      O_WRONLY | O_CREAT, 0644), -1);
	assert_int_equal(errno, EROFS);
	fx_check_rootfs(path(c, "containers-snapshots/c1/snap0/rootfs"), &fx_map1, c->outside);

	fx_write(path(c, "containers/c1/rootfs/etc/passwd"), "changed\n", 0644, 0, 0);
	fx_write(path(c, "containers/c1/rootfs/new-file"), "new\n", 0644, 0, 0);
	if (stor_ct_snapshot_restore(c->p, "c1", "snap0", &err) < 0)
		fail_msg("restore: %s", err.msg);
	fx_check_rootfs(path(c, "containers/c1/rootfs"), &fx_map1, c->outside);
	assert_int_equal(access(path(c, "containers/c1/rootfs/new-file"), F_OK), -1);
	assert_false(is_readonly_subvol(path(c, "containers/c1")));
	assert_int_equal(fx_mode(path(c, "containers/c1"), ".") & 07777, 0100);

	assert_int_equal(stor_ct_snapshot_create(c->p, "c1", "snap1", &err), 0);
	if (stor_ct_snapshot_rename(c->p, "c1", "snap1", "renamed", &err) < 0)
		fail_msg("rename: %s", err.msg);
	assert_int_equal(stor_snapshot_list(c->p, "c1", &list, &err), 0);
	assert_string_equal(list[0], "renamed");
	assert_string_equal(list[1], "snap0");
	assert_null(list[2]);
	assert_int_equal(stor_ct_snapshot_delete(c->p, "c1", "snap0", &err), 0);
	assert_int_equal(stor_ct_snapshot_delete(c->p, "c1", "renamed", &err), 0);
	assert_int_equal(access(path(c, "containers-snapshots/c1"), F_OK), -1);
	assert_true(dir_empty(path(c, ".tmp")));
}

static void test_copy_rename_delete(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };

	image(c);
	assert_int_equal(stor_ct_create_from_image(c->p, "c1", FP, &fx_map1, &err), 0);
	assert_int_equal(stor_ct_snapshot_create(c->p, "c1", "s0", &err), 0);
	if (stor_ct_copy(c->p, "c1", "c2", true, &fx_map1, &fx_map2, &err) < 0)
		fail_msg("copy: %s", err.msg);
	assert_true(is_subvol(path(c, "containers/c2")));
	fx_check_rootfs(path(c, "containers/c2/rootfs"), &fx_map2, c->outside);
	assert_true(is_readonly_subvol(path(c, "containers-snapshots/c2/s0")));
	fx_check_rootfs(path(c, "containers-snapshots/c2/s0/rootfs"), &fx_map2, c->outside);
	fx_check_rootfs(path(c, "containers/c1/rootfs"), &fx_map1, c->outside);
	fx_check_rootfs(path(c, "containers-snapshots/c1/s0/rootfs"), &fx_map1, c->outside);

	assert_int_equal(stor_ct_rename(c->p, "c2", "web", &err), 0);
	assert_true(is_subvol(path(c, "containers/web")));
	assert_true(is_readonly_subvol(path(c, "containers-snapshots/web/s0")));
	assert_int_equal(stor_ct_delete(c->p, "web", &err), 0);
	assert_int_equal(access(path(c, "containers/web"), F_OK), -1);
	assert_int_equal(access(path(c, "containers-snapshots/web"), F_OK), -1);
	assert_int_equal(stor_ct_delete(c->p, "c1", &err), 0);
	assert_true(dir_empty(path(c, "containers")));
	assert_true(dir_empty(path(c, ".tmp")));
}

/* A container that made its own subvolumes (docker, nspawn inside) still
 * deletes. */
static void test_delete_nested_subvolume(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	struct btrfs_ioctl_vol_args a = { 0 };
	int fd;

	image(c);
	assert_int_equal(stor_ct_create_from_image(c->p, "c1", FP, NULL, &err), 0);
	fd = open(path(c, "containers/c1/rootfs/tmp"), O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	strcpy(a.name, "inner");
	assert_int_equal(ioctl(fd, BTRFS_IOC_SUBVOL_CREATE, &a), 0);
	close(fd);
	fx_write(path(c, "containers/c1/rootfs/tmp/inner/file"), "x", 0644, 0, 0);
	if (stor_ct_delete(c->p, "c1", &err) < 0)
		fail_msg("delete: %s", err.msg);
	assert_int_equal(access(path(c, "containers/c1"), F_OK), -1);
	assert_true(dir_empty(path(c, ".tmp")));
}

static void test_quota(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	uint64_t used = 0;
	char buf[65536];
	ssize_t total = 0, n = 0;
	int fd;

	assert_int_equal(stor_ct_create_empty(c->p, "q1", NULL, &err), 0);
	assert_int_equal(stor_ct_set_quota(c->p, "q1", 0, &err), 0);   /* quotas still off */
	if (stor_ct_set_quota(c->p, "q1", 16 << 20, &err) < 0)
		fail_msg("quota: %s", err.msg);
	memset(buf, 'q', sizeof(buf));
	fd = open(path(c, "containers/q1/rootfs/fill"), O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	while (total < (64 << 20) && (n = write(fd, buf, sizeof(buf))) > 0) {
		total += n;
		if (total % (4 << 20) == 0)
			fsync(fd);   /* qgroups account at commit */
	}
	if (n >= 0)
		n = fsync(fd) < 0 ? -1 : n;
	close(fd);
	assert_true(n < 0);
	assert_true(errno == EDQUOT || errno == ENOSPC);
	assert_true(total < (32 << 20));

	assert_int_equal(stor_ct_usage(c->p, "q1", &used, &err), 0);
	assert_true(used >= (8 << 20) && used <= (24 << 20));

	/* A restore makes a new subvolume: the limit must come along. */
	assert_int_equal(unlink(path(c, "containers/q1/rootfs/fill")), 0);
	assert_int_equal(stor_ct_snapshot_create(c->p, "q1", "s0", &err), 0);
	if (stor_ct_snapshot_restore(c->p, "q1", "s0", &err) < 0)
		fail_msg("restore: %s", err.msg);
	fd = open(path(c, "containers/q1/rootfs/fill2"), O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	total = 0;
	while (total < (64 << 20) && (n = write(fd, buf, sizeof(buf))) > 0) {
		total += n;
		if (total % (4 << 20) == 0)
			fsync(fd);
	}
	if (n >= 0)
		n = fsync(fd) < 0 ? -1 : n;
	close(fd);
	assert_true(n < 0);
	assert_true(total < (32 << 20));
	assert_int_equal(stor_ct_snapshot_delete(c->p, "q1", "s0", &err), 0);
	assert_int_equal(stor_ct_set_quota(c->p, "q1", 0, &err), 0);
	fd = open(path(c, "containers/q1/rootfs/more"), O_WRONLY | O_CREAT, 0644);
	for (int i = 0; i < 64; i++)
		assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

static void send_to_file(struct ctx *c, const char *file, const char *snap, const char *parent)
{
	cell_error err = { 0 };
	int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	if (stor_ct_send(c->p, "c1", snap, parent, fd, &err) < 0)
		fail_msg("send %s: %s", snap ? snap : "volume", err.msg);
	close(fd);
}

static void receive_file(struct ctx *c, const char *file, const char *name, const char *snap)
{
	cell_error err = { 0 };
	int fd = open(file, O_RDONLY);
	assert_true(fd >= 0);
	if (stor_ct_receive(c->p, name, snap, fd, &err) < 0)
		fail_msg("receive %s: %s", snap ? snap : "volume", err.msg);
	close(fd);
}

static void test_send_receive(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	char s0[4300], s1[4300], vol[4300];
	struct stat a, b;

	image(c);
	assert_int_equal(stor_ct_create_from_image(c->p, "c1", FP, &fx_map1, &err), 0);
	assert_int_equal(stor_ct_snapshot_create(c->p, "c1", "s0", &err), 0);
	fx_write(path(c, "containers/c1/rootfs/after-s0"), "1", 0644, 0, 0);
	assert_int_equal(stor_ct_snapshot_create(c->p, "c1", "s1", &err), 0);
	fx_write(path(c, "containers/c1/rootfs/after-s1"), "2", 0644, 0, 0);
	snprintf(s0, sizeof(s0), "%s/s0.stream", c->dir);
	snprintf(s1, sizeof(s1), "%s/s1.stream", c->dir);
	snprintf(vol, sizeof(vol), "%s/vol.stream", c->dir);
	send_to_file(c, s0, "s0", NULL);
	send_to_file(c, s1, "s1", "s0");
	send_to_file(c, vol, NULL, "s1");
	stat(s0, &a);
	stat(s1, &b);
	assert_true(b.st_size < a.st_size / 4);   /* incremental */

	receive_file(c, s0, "c9", "s0");
	receive_file(c, s1, "c9", "s1");
	receive_file(c, vol, "c9", NULL);
	assert_true(is_readonly_subvol(path(c, "containers-snapshots/c9/s1")));
	assert_int_equal(access(path(c, "containers-snapshots/c9/s1/rootfs/after-s0"), F_OK), 0);
	assert_false(is_readonly_subvol(path(c, "containers/c9")));
	assert_int_equal(fx_mode(path(c, "containers/c9"), ".") & 07777, 0100);
	fx_check_rootfs(path(c, "containers/c9/rootfs"), &fx_map1, c->outside);
	assert_string_equal(fx_read(path(c, "containers/c9/rootfs/after-s1")), "2");
	assert_true(dir_empty(path(c, ".tmp")));

	/* Garbage in, nothing left behind. */
	fx_write(s0, "garbage", 0600, 0, 0);
	{
		int fd = open(s0, O_RDONLY);
		assert_true(stor_ct_receive(c->p, "c8", NULL, fd, &err) < 0);
		close(fd);
	}
	assert_int_equal(access(path(c, "containers/c8"), F_OK), -1);
	assert_true(dir_empty(path(c, ".tmp")));
}

static void test_pool_delete(void **state)
{
	struct ctx *c = need(state);
	cell_error err = { 0 };
	char file[4300];

	image(c);
	assert_int_equal(stor_ct_create_from_image(c->p, "c1", FP, NULL, &err), 0);
	assert_int_equal(stor_pool_delete(c->p, &err), -EBUSY);
	assert_int_equal(stor_ct_delete(c->p, "c1", &err), 0);
	if (stor_pool_delete(c->p, &err) < 0)
		fail_msg("pool delete: %s", err.msg);
	snprintf(file, sizeof(file), "%s/disks/default.img", c->dir);
	assert_int_equal(access(file, F_OK), -1);
	assert_int_equal(access(path(c, ""), F_OK), -1);
}

static void test_bad_sizes_leave_nothing(void **state)
{
	struct ctx *c;
	cell_error err = { 0 };
	char file[4300];

	if (skip_reason) {
		fprintf(stderr, "storage btrfs: skipped: %s\n", skip_reason);
		skip();
	}
	(void)state;
	c = make_ctx("lots", false);
	assert_int_equal(stor_pool_create(c->p, &err), -EINVAL);
	assert_int_equal(err.status, 400);
	snprintf(file, sizeof(file), "%s/disks/default.img", c->dir);
	assert_int_equal(access(file, F_OK), -1);
	free_ctx(c);

	c = make_ctx("1MB", false);   /* below what mkfs.btrfs accepts */
	assert_true(stor_pool_create(c->p, &err) < 0);
	assert_non_null(strstr(err.msg, "mkfs.btrfs"));
	snprintf(file, sizeof(file), "%s/disks/default.img", c->dir);
	assert_int_equal(access(file, F_OK), -1);
	snprintf(file, sizeof(file), "%s/storage-pools/default", c->dir);
	assert_int_equal(access(file, F_OK), -1);
	free_ctx(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_loop_pool, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_is_readonly_subvolume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_from_image, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_create_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_rename_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_nested_subvolume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quota, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_receive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_delete, setup, teardown),
		cmocka_unit_test(test_bad_sizes_leave_nothing),
	};

	find_skip_reason();
	if (skip_reason)
		printf("storage btrfs: all tests skipped: %s\n", skip_reason);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
