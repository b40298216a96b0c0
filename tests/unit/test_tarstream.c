/* Fixture tables list only the fields each entry needs. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <ftw.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "common/sha256.h"
#include "common/tarstream.h"
#include "common/util.h"

static char tmpdir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/cell-test-tar-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *tpath(const char *name)
{
	return xasprintf("%s/%s", tmpdir, name);
}

/* ---- fixtures built with libarchive -------------------------------------- */

enum { F_FILE, F_DIR, F_SYMLINK, F_HARDLINK, F_CHR };

struct ent {
	const char *name;
	int kind;
	const char *data;   /* file content, or link target */
	unsigned mode;
	int64_t uid, gid;
	const char *xname;  /* one xattr */
	const void *xval;
	size_t xlen;
	int acl_uid;        /* >0: add user:<acl_uid>:r-- */
};

static void add_entry(struct archive *a, const struct ent *x)
{
	struct archive_entry *e = archive_entry_new();
	size_t len = 0;

	archive_entry_set_pathname(e, x->name);
	archive_entry_set_uid(e, x->uid);
	archive_entry_set_gid(e, x->gid);
	archive_entry_set_mtime(e, 1700000000, 0);
	switch (x->kind) {
	case F_FILE:
		len = strlen(x->data ? x->data : "");
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, x->mode ? x->mode : 0644);
		archive_entry_set_size(e, (la_int64_t)len);
		break;
	case F_DIR:
		archive_entry_set_filetype(e, AE_IFDIR);
		archive_entry_set_perm(e, x->mode ? x->mode : 0755);
		break;
	case F_SYMLINK:
		archive_entry_set_filetype(e, AE_IFLNK);
		archive_entry_set_perm(e, 0777);
		archive_entry_set_symlink(e, x->data);
		break;
	case F_HARDLINK:
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0755);
		archive_entry_set_hardlink(e, x->data);
		archive_entry_set_size(e, 0);
		break;
	case F_CHR:
		archive_entry_set_filetype(e, AE_IFCHR);
		archive_entry_set_perm(e, 0666);
		archive_entry_set_rdev(e, makedev(1, 3));
		break;
	}
	if (x->xname)
		archive_entry_xattr_add_entry(e, x->xname, x->xval, x->xlen);
	if (x->acl_uid > 0) {
		archive_entry_acl_add_entry(e, ARCHIVE_ENTRY_ACL_TYPE_ACCESS, ARCHIVE_ENTRY_ACL_READ,
					    ARCHIVE_ENTRY_ACL_USER, x->acl_uid, NULL);
		archive_entry_acl_add_entry(e, ARCHIVE_ENTRY_ACL_TYPE_ACCESS, ARCHIVE_ENTRY_ACL_READ,
					    ARCHIVE_ENTRY_ACL_MASK, -1, NULL);
	}
	assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
	if (len)
		assert_int_equal(archive_write_data(a, x->data, len), (la_ssize_t)len);
	archive_entry_free(e);
}

static void make_tar(const char *path, const char *filter, const struct ent *ents, size_t n)
{
	/* Write names as GNU tar and Go do (UTF-8 pax headers); unpacking then runs
	 * in the daemon's C locale. */
	locale_t utf8 = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
	locale_t old = uselocale(utf8);
	struct archive *a = archive_write_new();

	archive_write_set_format_pax_restricted(a);
	if (strcmp(filter, "none") == 0)
		archive_write_add_filter_none(a);
	else
		assert_int_equal(archive_write_add_filter_by_name(a, filter), ARCHIVE_OK);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++)
		add_entry(a, &ents[i]);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	uselocale(old);
	freelocale(utf8);
}

static const unsigned char cap_v2[20] = { 0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00 };

static const struct ent unified[] = {
	{ "metadata.yaml", F_FILE, "architecture: x86_64\ncreation_date: 1700000000\n" },
	{ "templates/", F_DIR },
	{ "templates/hostname.tpl", F_FILE, "{{ container.name }}\n" },
	{ "rootfs/", F_DIR, NULL, 0755 },
	{ "rootfs/etc/", F_DIR },
	{ "rootfs/etc/hostname", F_FILE, "image\n" },
	{ "rootfs/etc/shadow", F_FILE, "root:*:1::::::\n", 0640, 0, 42 },
	{ "rootfs/home/", F_DIR },
	{ "rootfs/home/user/", F_DIR, NULL, 0700, 1000, 1000 },
	{ "rootfs/home/user/.profile", F_FILE, "PS1=x\n", 0644, 1000, 1000, "user.origin", "image", 5, 1001 },
	{ "rootfs/bin/", F_DIR },
	{ "rootfs/bin/busybox", F_FILE, "#!busybox\n", 0755 },
	{ "rootfs/bin/sh", F_HARDLINK, "rootfs/bin/busybox" },
	{ "rootfs/bin/ls", F_SYMLINK, "busybox" },
	{ "rootfs/bin/ping", F_FILE, "ping\n", 04755, 0, 0, "security.capability", cap_v2, sizeof(cap_v2) },
	{ "rootfs/dev/", F_DIR },
	{ "rootfs/dev/null", F_CHR },
	{ "./rootfs/etc/motd", F_FILE, "dot-slash names are fine\n" },
	{ "rootfs/etc/ünïcödé", F_FILE, "utf-8\n" },
	{ "rootfs/usr/share/a-very-long-directory-name-that-goes-on-and-on-and-on/"
	  "another-very-long-directory-name-that-goes-on-and-on-and-on/"
	  "and-a-file-name-long-enough-to-need-a-pax-header.txt", F_FILE, "long\n" },
};

static char *read_all(const char *path)
{
	char *buf = NULL;
	cell_error err;
	assert_int_equal(util_read_file(path, &buf, NULL, &err), 0);
	return buf;
}

static void assert_file(const char *root, const char *rel, const char *content)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", root, rel);
	_cleanup_free_ char *s = read_all(p);
	assert_string_equal(s, content);
}

static void lstat_rel(const char *root, const char *rel, struct stat *st)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", root, rel);
	assert_int_equal(lstat(p, st), 0);
}

static char *fresh_dir(const char *name)
{
	char *p = tpath(name);
	assert_int_equal(mkdir(p, 0700), 0);
	return p;
}

static void check_unified_rootfs(const char *root, uint32_t shift)
{
	struct stat st, st2;
	char buf[64];
	_cleanup_free_ char *ls = xasprintf("%s/bin/ls", root);
	_cleanup_free_ char *ping = xasprintf("%s/bin/ping", root);
	ssize_t n;

	assert_file(root, "etc/hostname", "image\n");
	assert_file(root, "etc/motd", "dot-slash names are fine\n");
	assert_file(root, "etc/ünïcödé", "utf-8\n");   /* bytes kept as-is */
	assert_file(root, "usr/share/a-very-long-directory-name-that-goes-on-and-on-and-on/"
		    "another-very-long-directory-name-that-goes-on-and-on-and-on/"
		    "and-a-file-name-long-enough-to-need-a-pax-header.txt", "long\n");
	lstat_rel(root, ".", &st);
	assert_int_equal(st.st_uid, shift);
	assert_int_equal(st.st_mode & 07777, 0755);
	lstat_rel(root, "etc/shadow", &st);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_gid, shift + 42);
	lstat_rel(root, "home/user", &st);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(st.st_uid, shift + 1000);
	lstat_rel(root, "home/user/.profile", &st);
	assert_int_equal(st.st_uid, shift + 1000);
	lstat_rel(root, "bin/busybox", &st);
	lstat_rel(root, "bin/sh", &st2);
	assert_int_equal(st.st_ino, st2.st_ino);   /* hard link kept */
	assert_int_equal(st.st_nlink, 2);
	lstat_rel(root, "bin/ls", &st);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(st.st_uid, shift);
	n = readlink(ls, buf, sizeof(buf));
	assert_int_equal(n, 7);
	assert_memory_equal(buf, "busybox", 7);
	lstat_rel(root, "bin/ping", &st);
	assert_int_equal(st.st_mode & 07777, 04755);   /* setuid survives ownership changes */
	lstat_rel(root, "dev/null", &st);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(st.st_rdev, makedev(1, 3));
	{
		_cleanup_free_ char *p = xasprintf("%s/home/user/.profile", root);
		n = getxattr(p, "user.origin", buf, sizeof(buf));
		assert_int_equal(n, 5);
		assert_memory_equal(buf, "image", 5);
	}
	n = getxattr(ping, "security.capability", buf, sizeof(buf));
	if (!shift) {
		assert_int_equal(n, 20);
		assert_memory_equal(buf, cap_v2, 20);
	} else {
		uint32_t rootid;
		assert_int_equal(n, 24);   /* v3, owned by the container's root */
		memcpy(&rootid, buf + 20, 4);
		assert_int_equal(le32toh(rootid), shift);
	}
}

/* The named-user ACL entry of a file, through the raw xattr. */
static uint32_t acl_user_id(const char *path)
{
	unsigned char buf[256];
	ssize_t n = getxattr(path, "system.posix_acl_access", buf, sizeof(buf));

	assert_true(n > 4);
	for (ssize_t off = 4; off + 8 <= n; off += 8)
		if (buf[off] == 0x02) {
			uint32_t id;
			memcpy(&id, buf + off + 4, 4);
			return le32toh(id);
		}
	fail_msg("no ACL_USER entry");
	return 0;
}

static void test_unified_compressions(void **state)
{
	static const char *const filters[][2] = {
		{ "none", "none" }, { "gzip", "gzip" }, { "xz", "xz" }, { "bzip2", "bzip2" },
		{ "zstd", "zstd" }, { "lzma", "lzma" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(filters); i++) {
		_cleanup_free_ char *img = xasprintf("%s/image-%s.tar", tmpdir, filters[i][0]);
		_cleanup_free_ char *root = xasprintf("%s/rootfs-%s", tmpdir, filters[i][0]);
		_cleanup_free_ char *meta = NULL, *profile = NULL;
		const struct tar_unpack_opts o = { .strip_prefix = "rootfs/" };
		const char *comp = NULL;
		size_t len = 0;
		cell_error err;

		make_tar(img, filters[i][1], unified, ARRAY_SIZE(unified));
		assert_int_equal(tar_detect_compression(img, &comp, &err), 0);
		assert_string_equal(comp, filters[i][0]);
		assert_int_equal(mkdir(root, 0700), 0);
		if (tar_unpack_path(img, root, &o, &err) < 0)
			fail_msg("%s: %s", filters[i][0], err.msg);
		check_unified_rootfs(root, 0);
		profile = xasprintf("%s/home/user/.profile", root);
		assert_int_equal(acl_user_id(profile), 1001);
		/* Nothing outside rootfs/ was written into the rootfs. */
		{
			_cleanup_free_ char *p = xasprintf("%s/metadata.yaml", root);
			assert_int_equal(access(p, F_OK), -1);
		}
		assert_int_equal(tar_read_member(img, "metadata.yaml", 4096, &meta, &len, &err), 0);
		assert_string_equal(meta, unified[0].data);
		assert_int_equal(len, strlen(unified[0].data));
	}
}

static void test_unpack_all_entries(void **state)
{
	_cleanup_free_ char *img = tpath("all.tar.gz");
	_cleanup_free_ char *root = fresh_dir("all");
	cell_error err;

	make_tar(img, "gzip", unified, ARRAY_SIZE(unified));
	assert_int_equal(tar_unpack_path(img, root, NULL, &err), 0);
	assert_file(root, "metadata.yaml", unified[0].data);
	assert_file(root, "templates/hostname.tpl", "{{ container.name }}\n");
	assert_file(root, "rootfs/etc/hostname", "image\n");
}

static void test_unpack_idmap(void **state)
{
	_cleanup_free_ char *img = tpath("shift.tar.xz");
	_cleanup_free_ char *root = fresh_dir("shifted");
	_cleanup_free_ char *profile = NULL;
	struct idmap m = { .entries = (struct idmap_entry[]){
		{ true, false, 100000, 0, 65536 }, { false, true, 100000, 0, 65536 } }, .n = 2 };
	const struct tar_unpack_opts o = { .strip_prefix = "rootfs", .idmap = &m };
	cell_error err;

	make_tar(img, "xz", unified, ARRAY_SIZE(unified));
	if (tar_unpack_path(img, root, &o, &err) < 0)
		fail_msg("%s", err.msg);
	check_unified_rootfs(root, 100000);
	profile = xasprintf("%s/home/user/.profile", root);
	assert_int_equal(acl_user_id(profile), 101001);
}

static void test_unpack_idmap_unmapped(void **state)
{
	_cleanup_free_ char *img = tpath("unmapped.tar");
	_cleanup_free_ char *root = fresh_dir("unmapped");
	const struct ent ents[] = { { "rootfs/", F_DIR }, { "rootfs/big", F_FILE, "x", 0644, 70000, 0 } };
	struct idmap m = { .entries = (struct idmap_entry[]){ { true, true, 100000, 0, 65536 } }, .n = 1 };
	const struct tar_unpack_opts o = { .strip_prefix = "rootfs/", .idmap = &m };
	cell_error err;

	make_tar(img, "none", ents, ARRAY_SIZE(ents));
	assert_true(tar_unpack_path(img, root, &o, &err) < 0);
	assert_non_null(strstr(err.msg, "rootfs/big"));
	assert_non_null(strstr(err.msg, "70000"));
}

/* Each hostile archive must fail, name the entry, and write nothing outside. */
static void expect_refused(const char *tag, const struct ent *ents, size_t n, const char *prefix,
			   const char *bad_entry)
{
	_cleanup_free_ char *img = xasprintf("%s/%s.tar", tmpdir, tag);
	_cleanup_free_ char *base = xasprintf("%s/%s", tmpdir, tag);
	_cleanup_free_ char *root = xasprintf("%s/%s/a/b/target", tmpdir, tag);
	_cleanup_free_ char *outside = xasprintf("%s/outside", tmpdir);
	const struct tar_unpack_opts o = { .strip_prefix = prefix };
	cell_error err;
	int rc;

	make_tar(img, "none", ents, n);
	assert_int_equal(util_mkdir_p(root, 0755, &err), 0);
	rc = tar_unpack_path(img, root, &o, &err);
	if (rc >= 0)
		fail_msg("%s: hostile archive was accepted", tag);
	if (getenv("TAR_TEST_VERBOSE"))
		print_message("%s: %s\n", tag, err.msg);
	if (!strstr(err.msg, bad_entry))
		fail_msg("%s: error does not name %s: %s", tag, bad_entry, err.msg);
	/* Nothing appeared next to the target or in the outside directory. */
	{
		_cleanup_free_ char *a = xasprintf("%s/a/b/x", base), *b = xasprintf("%s/a/x", base);
		_cleanup_free_ char *c = xasprintf("%s/x", base), *d = xasprintf("%s/pwn", outside);
		_cleanup_free_ char *e = xasprintf("%s/etc/x", root), *f = xasprintf("%s/a/b/escape-null", base);
		assert_int_equal(access(a, F_OK), -1);
		assert_int_equal(access(b, F_OK), -1);
		assert_int_equal(access(c, F_OK), -1);
		assert_int_equal(access(d, F_OK), -1);
		assert_int_equal(access(f, F_OK), -1);
		(void)e;
	}
	assert_int_equal(access("/etc/x", F_OK), -1);
}

static void test_traversal_refused(void **state)
{
	_cleanup_free_ char *outside = fresh_dir("outside");
	_cleanup_free_ char *outside_abs = xasprintf("%s", outside);
	const struct ent dotdot[] = { { "rootfs/", F_DIR }, { "rootfs/../x", F_FILE, "pwn" } };
	const struct ent dotdot_noprefix[] = { { "../x", F_FILE, "pwn" } };
	const struct ent deep[] = { { "rootfs/etc/../../../x", F_FILE, "pwn" } };
	const struct ent absolute[] = { { "/etc/x", F_FILE, "pwn" } };
	const struct ent abs_noprefix[] = { { "/etc/x", F_FILE, "pwn" } };
	const struct ent symparent[] = {
		{ "rootfs/", F_DIR }, { "rootfs/a", F_SYMLINK, outside_abs }, { "rootfs/a/pwn", F_FILE, "pwn" } };
	const struct ent symrel[] = {
		{ "rootfs/", F_DIR }, { "rootfs/a", F_SYMLINK, "../../../../outside" },
		{ "rootfs/a/pwn", F_FILE, "pwn" } };
	const struct ent hl_abs[] = { { "rootfs/", F_DIR }, { "rootfs/h", F_HARDLINK, "/etc/passwd" } };
	const struct ent hl_dotdot[] = { { "rootfs/", F_DIR }, { "rootfs/h", F_HARDLINK, "rootfs/../../../../../etc/passwd" } };
	const struct ent hl_outside_prefix[] = { { "metadata.yaml", F_FILE, "x" }, { "rootfs/h", F_HARDLINK, "metadata.yaml" } };
	const struct ent dev_escape[] = { { "rootfs/", F_DIR }, { "rootfs/../escape-null", F_CHR } };

	expect_refused("dotdot", dotdot, ARRAY_SIZE(dotdot), "rootfs/", "rootfs/../x");
	expect_refused("dotdot-noprefix", dotdot_noprefix, 1, NULL, "../x");
	expect_refused("deep", deep, 1, "rootfs/", "rootfs/etc/../../../x");
	expect_refused("absolute", absolute, 1, "rootfs/", "/etc/x");
	expect_refused("absolute-noprefix", abs_noprefix, 1, NULL, "/etc/x");
	expect_refused("symparent", symparent, ARRAY_SIZE(symparent), "rootfs/", "rootfs/a/pwn");
	expect_refused("symrel", symrel, ARRAY_SIZE(symrel), "rootfs/", "rootfs/a/pwn");
	expect_refused("hl-abs", hl_abs, ARRAY_SIZE(hl_abs), "rootfs/", "rootfs/h");
	expect_refused("hl-dotdot", hl_dotdot, ARRAY_SIZE(hl_dotdot), "rootfs/", "rootfs/h");
	expect_refused("hl-prefix", hl_outside_prefix, ARRAY_SIZE(hl_outside_prefix), "rootfs/", "rootfs/h");
	expect_refused("dev-escape", dev_escape, ARRAY_SIZE(dev_escape), "rootfs/", "rootfs/../escape-null");
	{
		struct stat st;
		assert_int_equal(stat("/etc/passwd", &st), 0);
		assert_true(st.st_nlink == 1);   /* never hard-linked into a target */
	}
}

static void test_max_bytes(void **state)
{
	_cleanup_free_ char *img = tpath("bomb.tar.gz");
	_cleanup_free_ char *root = fresh_dir("bomb");
	_cleanup_free_ char *zeros = calloc(1, 4 * 1024 * 1024 + 1);
	struct ent ents[] = { { "rootfs/", F_DIR }, { "rootfs/zeros", F_FILE, NULL } };
	const struct tar_unpack_opts o = { .strip_prefix = "rootfs/", .max_bytes = 1024 * 1024 };
	_cleanup_free_ char *p = NULL;
	struct stat st;
	cell_error err;

	memset(zeros, 'z', 4 * 1024 * 1024);
	ents[1].data = zeros;
	make_tar(img, "gzip", ents, ARRAY_SIZE(ents));
	assert_int_equal(stat(img, &st), 0);
	assert_true(st.st_size < 64 * 1024);   /* a small archive ... */
	assert_true(tar_unpack_path(img, root, &o, &err) < 0);   /* ... refused before writing */
	assert_non_null(strstr(err.msg, "rootfs/zeros"));
	assert_non_null(strstr(err.msg, "exceed"));
	p = xasprintf("%s/zeros", root);
	assert_int_equal(access(p, F_OK), -1);
}

/* A header claiming 2^60 bytes (GNU base-256 size) must hit the free-space check. */
static void test_free_space_bomb(void **state)
{
	_cleanup_free_ char *img = tpath("huge.tar");
	_cleanup_free_ char *root = fresh_dir("huge");
	unsigned char hdr[512] = { 0 }, zero[1024] = { 0 };
	unsigned sum = 0;
	cell_error err;
	int fd;

	strcpy((char *)hdr, "huge");
	memcpy(hdr + 100, "0000644", 8);
	memcpy(hdr + 108, "0000000", 8);
	memcpy(hdr + 116, "0000000", 8);
	hdr[124] = 0x80;
	hdr[124 + 4] = 0x10;   /* 2^60 big-endian in the remaining 11 bytes */
	memcpy(hdr + 136, "14537512000", 12);
	hdr[156] = '0';
	memcpy(hdr + 257, "ustar", 6);
	memcpy(hdr + 263, "00", 2);
	memset(hdr + 148, ' ', 8);
	for (size_t i = 0; i < 512; i++)
		sum += hdr[i];
	snprintf((char *)hdr + 148, 8, "%06o", sum);
	fd = open(img, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, hdr, 512), 512);
	assert_int_equal(write(fd, zero, sizeof(zero)), (ssize_t)sizeof(zero));
	close(fd);
	assert_true(tar_unpack_path(img, root, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "huge"));
	assert_non_null(strstr(err.msg, "free space"));
	assert_int_equal(err.status, 507);
}

static void test_truncated_and_garbage(void **state)
{
	_cleanup_free_ char *img = tpath("trunc.tar.gz");
	_cleanup_free_ char *junk = tpath("junk.tar");
	_cleanup_free_ char *root = fresh_dir("trunc");
	_cleanup_free_ char *big = calloc(1, 256 * 1024 + 1);
	struct ent ents[] = { { "rootfs/", F_DIR }, { "rootfs/data", F_FILE, NULL } };
	struct stat st;
	cell_error err;

	for (size_t i = 0; i < 256 * 1024; i++)
		big[i] = (char)('a' + (i * 7919 % 26));
	ents[1].data = big;
	make_tar(img, "gzip", ents, ARRAY_SIZE(ents));
	assert_int_equal(stat(img, &st), 0);
	assert_int_equal(truncate(img, st.st_size / 2), 0);
	assert_true(tar_unpack_path(img, root, NULL, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_true(strlen(err.msg) > 0);

	assert_int_equal(util_write_file_atomic(junk, "this is not a tarball at all", 28, 0644, &err), 0);
	assert_true(tar_unpack_path(junk, root, NULL, &err) < 0);
	assert_true(tar_detect_compression(junk, &(const char *){ NULL }, &err) < 0);
	assert_true(tar_read_member(junk, "metadata.yaml", 100, &(char *){ NULL }, NULL, &err) < 0);
}

static int cancel_progress(void *data, uint64_t in, uint64_t total)
{
	int *calls = data;
	(*calls)++;
	assert_true(total > 0);
	return 1;
}

static int count_progress(void *data, uint64_t in, uint64_t total)
{
	uint64_t *last = data;
	assert_true(in >= *last);
	assert_true(in <= total);
	*last = in;
	return 0;
}

static void test_progress_and_cancel(void **state)
{
	_cleanup_free_ char *img = tpath("prog.tar");
	_cleanup_free_ char *root = fresh_dir("prog");
	_cleanup_free_ char *root2 = fresh_dir("prog2");
	_cleanup_free_ char *big = calloc(1, 3 * 1024 * 1024 + 1);
	struct ent ents[] = { { "a", F_FILE, NULL }, { "b", F_FILE, "b" } };
	int calls = 0;
	uint64_t last = 0;
	struct stat st;
	cell_error err;

	memset(big, 'q', 3 * 1024 * 1024);
	ents[0].data = big;
	make_tar(img, "none", ents, ARRAY_SIZE(ents));
	struct tar_unpack_opts o = { .progress = cancel_progress, .progress_data = &calls };
	assert_int_equal(tar_unpack_path(img, root, &o, &err), -ECANCELED);
	assert_int_equal(calls, 1);
	o = (struct tar_unpack_opts){ .progress = count_progress, .progress_data = &last };
	assert_int_equal(tar_unpack_path(img, root2, &o, &err), 0);
	assert_int_equal(stat(img, &st), 0);
	assert_int_equal(last, (uint64_t)st.st_size);   /* final report covers the whole archive */
}

static void test_unpack_from_pipe(void **state)
{
	_cleanup_free_ char *img = tpath("pipe.tar.zst");
	_cleanup_free_ char *root = fresh_dir("pipe");
	const struct tar_unpack_opts o = { .strip_prefix = "rootfs/" };
	int p[2], status;
	pid_t pid;
	cell_error err;

	make_tar(img, "zstd", unified, ARRAY_SIZE(unified));
	assert_int_equal(pipe(p), 0);
	pid = fork();
	if (pid == 0) {
		_cleanup_free_ char *data = NULL;
		size_t len;
		close(p[0]);
		if (util_read_file(img, &data, &len, &err) < 0 || write(p[1], data, len) != (ssize_t)len)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(tar_unpack_fd(p[0], root, &o, &err), 0);
	close(p[0]);
	waitpid(pid, &status, 0);
	check_unified_rootfs(root, 0);
}

static void test_read_member(void **state)
{
	_cleanup_free_ char *img = tpath("member.tar.bz2");
	_cleanup_free_ char *out = NULL;
	const struct ent ents[] = {
		{ "./metadata.yaml", F_FILE, "architecture: x86_64\n" }, { "dir/", F_DIR },
		{ "big", F_FILE, "0123456789" } };
	cell_error err;
	size_t len;

	make_tar(img, "bzip2", ents, ARRAY_SIZE(ents));
	assert_int_equal(tar_read_member(img, "metadata.yaml", 100, &out, &len, &err), 0);
	assert_string_equal(out, "architecture: x86_64\n");
	assert_int_equal(tar_read_member(img, "missing.yaml", 100, &(char *){ NULL }, &len, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "missing.yaml"));
	assert_int_equal(tar_read_member(img, "big", 5, &(char *){ NULL }, &len, &err), -EFBIG);
	assert_int_equal(tar_read_member(img, "dir/", 5, &(char *){ NULL }, &len, &err), -EINVAL);
}

/* Export a shifted rootfs (publish) and check names, ids and links in the tarball. */
static void test_create_roundtrip(void **state)
{
	_cleanup_free_ char *img = tpath("src.tar");
	_cleanup_free_ char *root = fresh_dir("src");
	_cleanup_free_ char *out = tpath("export.tar.gz");
	_cleanup_free_ char *back = fresh_dir("back");
	struct idmap m = { .entries = (struct idmap_entry[]){ { true, true, 100000, 0, 65536 } }, .n = 1 };
	const struct tar_unpack_opts in = { .strip_prefix = "rootfs/", .idmap = &m };
	const struct tar_unpack_opts plain = { .strip_prefix = "rootfs/" };
	struct archive *a;
	struct archive_entry *e;
	bool saw_root = false, saw_link = false, saw_profile = false;
	const char *comp;
	cell_error err;
	int fd;

	make_tar(img, "none", unified, ARRAY_SIZE(unified));
	assert_int_equal(tar_unpack_path(img, root, &in, &err), 0);
	{   /* a file owned by a host id outside the map shows up as nobody */
		_cleanup_free_ char *p = xasprintf("%s/etc/hostowned", root);
		assert_int_equal(util_write_file_atomic(p, "h", 1, 0644, &err), 0);
	}
	{   /* a stale socket is skipped, not fatal */
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int s = socket(AF_UNIX, SOCK_STREAM, 0);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/etc/sock", root);
		assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
		close(s);
	}
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	if (tar_create(fd, root, "rootfs", &m, "gzip", &err) < 0)
		fail_msg("%s", err.msg);
	close(fd);
	assert_int_equal(tar_detect_compression(out, &comp, &err), 0);
	assert_string_equal(comp, "gzip");

	a = archive_read_new();
	archive_read_support_format_tar(a);
	archive_read_support_filter_all(a);
	assert_int_equal(archive_read_open_filename(a, out, 65536), ARCHIVE_OK);
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(e);
		assert_true(strncmp(name, "rootfs/", 7) == 0);
		if (!strcmp(name, "rootfs/")) {
			saw_root = true;
			assert_int_equal(archive_entry_uid(e), 0);
		}
		if (!strcmp(name, "rootfs/home/user/.profile")) {
			saw_profile = true;
			assert_int_equal(archive_entry_uid(e), 1000);
			/* numeric ids only: no host user names leak into the image */
			assert_true(!archive_entry_uname(e) || !*archive_entry_uname(e));
		}
		assert_string_not_equal(name, "rootfs/etc/sock");
		if (!strcmp(name, "rootfs/etc/hostowned"))
			assert_int_equal(archive_entry_uid(e), 65534);
		if (archive_entry_hardlink(e)) {
			saw_link = true;
			assert_true(!strcmp(archive_entry_hardlink(e), "rootfs/bin/busybox") ||
				    !strcmp(archive_entry_hardlink(e), "rootfs/bin/sh"));
		}
	}
	archive_read_free(a);
	assert_true(saw_root && saw_link && saw_profile);

	/* And it unpacks again to the same tree (privileged this time). */
	assert_int_equal(tar_unpack_path(out, back, &plain, &err), 0);
	assert_file(back, "etc/hostname", "image\n");
	assert_file(back, "etc/ünïcödé", "utf-8\n");
	{
		struct stat st;
		lstat_rel(back, "home/user/.profile", &st);
		assert_int_equal(st.st_uid, 1000);
		lstat_rel(back, "bin/ping", &st);
		assert_int_equal(st.st_mode & 07777, 04755);
		_cleanup_free_ char *ping = xasprintf("%s/bin/ping", back);
		unsigned char cap[32];
		assert_int_equal(getxattr(ping, "security.capability", cap, sizeof(cap)), 20);   /* v2 again */
		_cleanup_free_ char *prof = xasprintf("%s/home/user/.profile", back);
		assert_int_equal(acl_user_id(prof), 1001);
	}
}

static void test_writer_unified(void **state)
{
	_cleanup_free_ char *src = fresh_dir("wsrc");
	_cleanup_free_ char *tpl = fresh_dir("wtpl");
	_cleanup_free_ char *out = tpath("unified.tar.xz");
	_cleanup_free_ char *meta = NULL;
	_cleanup_free_ char *f = xasprintf("%s/hello", src), *t = xasprintf("%s/hostname.tpl", tpl);
	_cleanup_free_ char *back = fresh_dir("wback");
	struct tar_writer *w = NULL;
	cell_error err;
	int fd;

	assert_int_equal(util_write_file_atomic(f, "hi\n", 3, 0644, &err), 0);
	assert_int_equal(util_write_file_atomic(t, "{{ container.name }}\n", 21, 0644, &err), 0);
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(tar_writer_open(fd, "xz", &w, &err), 0);
	assert_int_equal(tar_writer_add_data(w, "metadata.yaml", "architecture: x86_64\n", 21, 0644, &err), 0);
	assert_int_equal(tar_writer_add_tree(w, tpl, "templates/", NULL, &err), 0);
	assert_int_equal(tar_writer_add_tree(w, src, "rootfs/", NULL, &err), 0);
	assert_int_equal(tar_writer_close(w, &err), 0);
	close(fd);
	assert_int_equal(tar_read_member(out, "metadata.yaml", 100, &meta, NULL, &err), 0);
	assert_string_equal(meta, "architecture: x86_64\n");
	assert_int_equal(tar_unpack_path(out, back, NULL, &err), 0);
	assert_file(back, "rootfs/hello", "hi\n");
	assert_file(back, "templates/hostname.tpl", "{{ container.name }}\n");

	fd = open(out, O_WRONLY | O_TRUNC);
	assert_int_equal(tar_writer_open(fd, "rar", &w, &err), -EINVAL);
	close(fd);
}

static void test_squashfs(void **state)
{
	_cleanup_free_ char *src = fresh_dir("sqsrc");
	_cleanup_free_ char *sq = tpath("image.squashfs");
	_cleanup_free_ char *dst = tpath("sqdst");
	_cleanup_free_ char *f = xasprintf("%s/etc", src);
	_cleanup_free_ char *cmd = NULL;
	struct idmap m = { .entries = (struct idmap_entry[]){ { true, true, 100000, 0, 65536 } }, .n = 1 };
	struct stat st;
	const char *comp;
	cell_error err;

	if (access("/usr/bin/mksquashfs", X_OK) < 0)
		skip();
	assert_int_equal(mkdir(f, 0755), 0);
	free(f);
	f = xasprintf("%s/etc/passwd", src);
	assert_int_equal(util_write_file_atomic(f, "root:x:0:0::/root:/bin/sh\n", 26, 0644, &err), 0);
	assert_int_equal(chown(f, 0, 42), 0);
	cmd = xasprintf("mksquashfs %s %s -noappend -quiet >/dev/null 2>&1", src, sq);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(tar_detect_compression(sq, &comp, &err), 0);
	assert_string_equal(comp, "squashfs");
	if (squashfs_unpack(sq, dst, &m, &err) < 0)
		fail_msg("%s", err.msg);
	assert_file(dst, "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
	lstat_rel(dst, "etc/passwd", &st);
	assert_int_equal(st.st_uid, 100000);
	assert_int_equal(st.st_gid, 100042);

	/* Garbage is refused with a clear message. */
	assert_int_equal(util_write_file_atomic(sq, "hsqs-not-really", 15, 0644, &err), 0);
	assert_true(squashfs_unpack(sq, dst, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "squashfs"));
}

static void test_compression_ext(void **state)
{
	assert_string_equal(tar_compression_ext("gzip"), ".tar.gz");
	assert_string_equal(tar_compression_ext("xz"), ".tar.xz");
	assert_string_equal(tar_compression_ext("squashfs"), ".squashfs");
	assert_string_equal(tar_compression_ext("none"), ".tar");
}

/* Fingerprints are SHA-256 streamed in whatever pieces the body arrives in. */
static void test_sha256(void **state)
{
	const char *abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
	_cleanup_free_ char *f = tpath("blob");
	_cleanup_free_ char *big = malloc(3 * 1024 * 1024 + 7);
	char one[SHA256_HEX_LEN + 1], pieces[SHA256_HEX_LEN + 1], file[SHA256_HEX_LEN + 1];
	struct sha256_ctx c;
	cell_error err;

	assert_int_equal(sha256_init(&c), 0);
	assert_int_equal(sha256_update(&c, "abc", 3), 0);
	assert_int_equal(sha256_final_hex(&c, one), 0);
	assert_string_equal(one, abc);

	for (size_t i = 0; i < 3 * 1024 * 1024 + 7; i++)
		big[i] = (char)(i * 31);
	assert_int_equal(sha256_init(&c), 0);
	assert_int_equal(sha256_update(&c, big, 3 * 1024 * 1024 + 7), 0);
	assert_int_equal(sha256_final_hex(&c, one), 0);
	assert_int_equal(sha256_init(&c), 0);
	for (size_t off = 0; off < 3 * 1024 * 1024 + 7; off += 4099) {
		size_t n = 3 * 1024 * 1024 + 7 - off < 4099 ? 3 * 1024 * 1024 + 7 - off : 4099;
		assert_int_equal(sha256_update(&c, big + off, n), 0);
	}
	assert_int_equal(sha256_final_hex(&c, pieces), 0);
	assert_string_equal(one, pieces);
	assert_int_equal(util_write_file_atomic(f, big, 3 * 1024 * 1024 + 7, 0644, &err), 0);
	assert_int_equal(sha256_file_hex(f, file, &err), 0);
	assert_string_equal(one, file);
	assert_int_equal(sha256_file_hex("/nonexistent/blob", file, &err), -ENOENT);
	assert_int_equal(err.status, 404);
	{   /* error paths release the context */
		_cleanup_sha256_ struct sha256_ctx abandoned = { 0 };
		assert_int_equal(sha256_init(&abandoned), 0);
		assert_int_equal(sha256_update(&abandoned, "x", 1), 0);
	}
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_unified_compressions),
		T(test_unpack_all_entries),
		T(test_unpack_idmap),
		T(test_unpack_idmap_unmapped),
		T(test_traversal_refused),
		T(test_max_bytes),
		T(test_free_space_bomb),
		T(test_truncated_and_garbage),
		T(test_progress_and_cancel),
		T(test_unpack_from_pipe),
		T(test_read_member),
		T(test_create_roundtrip),
		T(test_writer_unified),
		T(test_squashfs),
		cmocka_unit_test(test_compression_ext),
		T(test_sha256),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
