/*
 * A tiny rootfs with everything a copy or shift can get wrong, shared by the
 * storage tests (this is not a test_*.c, so it is no test of its own).
 * Include after <cmocka.h>.  Building it needs root (chown, mknod, caps).
 *
 *   bin/su            setuid root, 4755
 *   bin/ping          security.capability v2: cap_net_raw (13) permitted+effective
 *   bin/sh -> busybox symlink owned 1000:1000
 *   bin/escape -> <outside file>   absolute symlink out of the tree
 *   etc/passwd        user.test xattr, mtime 1000000000
 *   etc/hard1 = etc/hard2   hard link pair, 1000:1000
 *   dev/null          char 1:3; dev/fifo fifo
 *   home/user/        1000:1000, default ACL user:1001:rx
 *   home/user/acl.txt access ACL user:1001:r, group:1002:rw
 *   tmp/              1777; var/log/ 2775 root:4 (setgid dir)
 *   var/sparse        1 MiB hole then "x"
 *   nobody            65534:65534
 */
#ifndef CELL_TESTS_STORAGE_FIXTURE_H
#define CELL_TESTS_STORAGE_FIXTURE_H

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/idmap.h"

#define FX __attribute__((unused)) static

#define FX_CAP_NET_RAW 13
#define FX_ACL_USER_OBJ 0x01
#define FX_ACL_USER 0x02
#define FX_ACL_GROUP_OBJ 0x04
#define FX_ACL_GROUP 0x08
#define FX_ACL_MASK 0x10
#define FX_ACL_OTHER 0x20

/* 0 → host 1000000 (65536 ids) and 0 → host 2000000: typical LXD maps. */
static struct idmap_entry fx_map1_e[] = { { true, true, 1000000, 0, 65536 } };
static struct idmap_entry fx_map2_e[] = { { true, true, 2000000, 0, 65536 } };
/* Too small for the overflow id: a remap of 5000 through it must fail. */
static struct idmap_entry fx_tiny_e[] = { { true, true, 3000000, 0, 1000 } };
__attribute__((unused)) static const struct idmap fx_map1 = { fx_map1_e, 1 };
__attribute__((unused)) static const struct idmap fx_map2 = { fx_map2_e, 1 };
__attribute__((unused)) static const struct idmap fx_tiny = { fx_tiny_e, 1 };

FX bool fx_is_root(void)
{
	return geteuid() == 0;
}

FX void fx_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
FX void fx_sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd) != 0)
		fprintf(stderr, "fixture: \"%s\" failed\n", cmd);
}

FX void fx_write(const char *path, const char *data, mode_t mode, uid_t uid, gid_t gid)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	assert_int_equal(fchown(fd, uid, gid), 0);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

FX char *fx_read(const char *path)
{
	static char buf[4096];
	int fd = open(path, O_RDONLY);
	ssize_t n;
	if (fd < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

FX void fx_put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v & 0xff);
	p[1] = (unsigned char)(v >> 8);
}

FX void fx_put32(unsigned char *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

FX uint32_t fx_get32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}

/* ACL xattr from (tag, perm, id) triples; entries must be in kernel order. */
FX size_t fx_acl(unsigned char *buf, const uint32_t (*ace)[3], size_t n)
{
	fx_put32(buf, 2);
	for (size_t i = 0; i < n; i++) {
		fx_put16(buf + 4 + 8 * i, (uint16_t)ace[i][0]);
		fx_put16(buf + 6 + 8 * i, (uint16_t)ace[i][1]);
		fx_put32(buf + 8 + 8 * i, ace[i][2]);
	}
	return 4 + 8 * n;
}

FX const uint32_t fx_access_acl[][3] = {
	{ FX_ACL_USER_OBJ, 6, 0 }, { FX_ACL_USER, 4, 1001 }, { FX_ACL_GROUP_OBJ, 4, 0 },
	{ FX_ACL_GROUP, 6, 1002 }, { FX_ACL_MASK, 6, 0 }, { FX_ACL_OTHER, 0, 0 },
};
FX const uint32_t fx_default_acl[][3] = {
	{ FX_ACL_USER_OBJ, 7, 0 }, { FX_ACL_USER, 5, 1001 }, { FX_ACL_GROUP_OBJ, 5, 0 },
	{ FX_ACL_MASK, 5, 0 }, { FX_ACL_OTHER, 5, 0 },
};

FX void fx_build_rootfs(const char *root, const char *outside_file)
{
	char p[4096];
	unsigned char caps[20] = { 0 }, acl[128];
	struct timespec ts[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
	int fd;

#define P(rel) (snprintf(p, sizeof(p), "%s/%s", root, rel), p)
	assert_int_equal(mkdir(root, 0755), 0);
	const char *dirs[] = { "bin", "etc", "dev", "home", "tmp", "var", "var/log", "home/user" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(*dirs); i++)
		assert_int_equal(mkdir(P(dirs[i]), 0755), 0);
	assert_int_equal(chmod(P("tmp"), 01777), 0);
	assert_int_equal(chown(P("var/log"), 0, 4), 0);
	assert_int_equal(chmod(P("var/log"), 02775), 0);
	assert_int_equal(chown(P("home/user"), 1000, 1000), 0);

	fx_write(P("bin/su"), "su binary", 04755, 0, 0);
	fx_write(P("bin/ping"), "ping binary", 0755, 0, 0);
	fx_put32(caps, 0x02000000 | 1);   /* v2, effective */
	fx_put32(caps + 4, 1u << FX_CAP_NET_RAW);
	assert_int_equal(setxattr(P("bin/ping"), "security.capability", caps, 20, 0), 0);
	assert_int_equal(symlink("busybox", P("bin/sh")), 0);
	assert_int_equal(lchown(P("bin/sh"), 1000, 1000), 0);
	assert_int_equal(symlink(outside_file, P("bin/escape")), 0);

	fx_write(P("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n", 0644, 0, 0);
	assert_int_equal(setxattr(P("etc/passwd"), "user.test", "hello", 5, 0), 0);
	assert_int_equal(utimensat(AT_FDCWD, P("etc/passwd"), ts, 0), 0);
	fx_write(P("etc/hard1"), "linked", 0600, 1000, 1000);
	{
		char other[4096];
		snprintf(other, sizeof(other), "%s/etc/hard2", root);
		assert_int_equal(link(P("etc/hard1"), other), 0);
	}
	assert_int_equal(mknod(P("dev/null"), S_IFCHR | 0666, makedev(1, 3)), 0);
	assert_int_equal(chmod(P("dev/null"), 0666), 0);
	assert_int_equal(mkfifo(P("dev/fifo"), 0600), 0);

	fx_write(P("home/user/acl.txt"), "acl", 0640, 1000, 1000);
	assert_int_equal(setxattr(P("home/user/acl.txt"), "system.posix_acl_access", acl,
				  fx_acl(acl, fx_access_acl, 6), 0), 0);
	assert_int_equal(setxattr(P("home/user"), "system.posix_acl_default", acl,
				  fx_acl(acl, fx_default_acl, 5), 0), 0);

	fd = open(P("var/sparse"), O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "x", 1, 1 << 20), 1);
	close(fd);
	fx_write(P("nobody"), "n", 0644, 65534, 65534);
#undef P
}

FX uint32_t fx_shift(const struct idmap *map, uint32_t id)
{
	uint32_t out = id;
	if (map)
		assert_int_equal(idmap_shift_uid(map, id, &out), 0);
	return out;
}

FX void fx_owner(const char *root, const char *rel, const struct idmap *map, uint32_t uid,
		 uint32_t gid)
{
	char p[4096];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	assert_int_equal(lstat(p, &st), 0);
	if (st.st_uid != fx_shift(map, uid) || st.st_gid != fx_shift(map, gid))
		fail_msg("%s: owner %u:%u, want %u:%u", rel, st.st_uid, st.st_gid,
			 fx_shift(map, uid), fx_shift(map, gid));
}

FX mode_t fx_mode(const char *root, const char *rel)
{
	char p[4096];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	assert_int_equal(lstat(p, &st), 0);
	return st.st_mode;
}

FX void fx_check_acl(const char *path, const char *name, const uint32_t (*ace)[3], size_t n,
		     const struct idmap *map)
{
	unsigned char got[256];
	ssize_t len = lgetxattr(path, name, got, sizeof(got));

	if (len != (ssize_t)(4 + 8 * n))
		fail_msg("%s %s: length %zd, want %zu", path, name, len, 4 + 8 * n);
	for (size_t i = 0; i < n; i++) {
		uint32_t id = fx_get32(got + 8 + 8 * i);
		uint32_t want = ace[i][0] == FX_ACL_USER || ace[i][0] == FX_ACL_GROUP
					? fx_shift(map, ace[i][2])
					: fx_get32(got + 8 + 8 * i);
		if (id != want)
			fail_msg("%s %s entry %zu: id %u, want %u", path, name, i, id, want);
	}
}

FX void fx_check_caps(const char *path, const struct idmap *map)
{
	unsigned char got[32];
	ssize_t len = lgetxattr(path, "security.capability", got, sizeof(got));

	if (len < 0)
		fail_msg("%s: security.capability lost: %s", path, strerror(errno));
	assert_int_equal(fx_get32(got + 4), 1u << FX_CAP_NET_RAW);
	assert_int_equal(fx_get32(got) & 1, 1);   /* effective */
	if (!map) {
		/* v2, or v3 with rootid 0: the same thing to the kernel */
		assert_true(len == 20 || (len == 24 && fx_get32(got + 20) == 0));
	} else {
		assert_int_equal(len, 24);
		assert_int_equal(fx_get32(got) & 0xff000000u, 0x03000000u);
		assert_int_equal(fx_get32(got + 20), fx_shift(map, 0));
	}
}

/* The whole fixture as it must look with ids shifted into `map` (NULL:
 * unshifted).  `times` also checks preserved mtimes (copies do; a shift
 * does not touch them either). */
FX void fx_check_rootfs(const char *root, const struct idmap *map, const char *outside_file)
{
	char p[4096], target[4096];
	struct stat a, b;
	ssize_t n;

#define P(rel) (snprintf(p, sizeof(p), "%s/%s", root, rel), p)
	fx_owner(root, ".", map, 0, 0);
	assert_int_equal(fx_mode(root, ".") & 07777, 0755);
	assert_int_equal(fx_mode(root, "tmp") & 07777, 01777);
	assert_int_equal(fx_mode(root, "var/log") & 07777, 02775);
	fx_owner(root, "var/log", map, 0, 4);
	fx_owner(root, "home/user", map, 1000, 1000);

	assert_int_equal(fx_mode(root, "bin/su") & 07777, 04755);
	fx_owner(root, "bin/su", map, 0, 0);
	assert_string_equal(fx_read(P("bin/su")), "su binary");
	fx_check_caps(P("bin/ping"), map);
	fx_owner(root, "bin/ping", map, 0, 0);

	assert_true(S_ISLNK(fx_mode(root, "bin/sh")));
	fx_owner(root, "bin/sh", map, 1000, 1000);
	n = readlink(P("bin/sh"), target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = '\0';
	assert_string_equal(target, "busybox");
	assert_true(S_ISLNK(fx_mode(root, "bin/escape")));
	if (outside_file) {
		/* Never followed: the file it points at is untouched. */
		assert_int_equal(stat(outside_file, &a), 0);
		assert_int_equal(a.st_uid, 0);
		assert_int_equal(a.st_gid, 0);
	}

	assert_string_equal(fx_read(P("etc/passwd")), "root:x:0:0:root:/root:/bin/sh\n");
	n = lgetxattr(P("etc/passwd"), "user.test", target, sizeof(target));
	assert_int_equal(n, 5);
	assert_memory_equal(target, "hello", 5);
	assert_int_equal(lstat(P("etc/passwd"), &a), 0);
	assert_int_equal(a.st_mtim.tv_sec, 1000000000);

	assert_int_equal(lstat(P("etc/hard1"), &a), 0);
	assert_int_equal(lstat(P("etc/hard2"), &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	assert_int_equal(a.st_nlink, 2);
	fx_owner(root, "etc/hard1", map, 1000, 1000);
	assert_int_equal(a.st_mode & 07777, 0600);

	assert_int_equal(lstat(P("dev/null"), &a), 0);
	assert_true(S_ISCHR(a.st_mode));
	assert_int_equal(a.st_rdev, makedev(1, 3));
	assert_int_equal(a.st_mode & 07777, 0666);
	assert_true(S_ISFIFO(fx_mode(root, "dev/fifo")));

	fx_check_acl(P("home/user/acl.txt"), "system.posix_acl_access", fx_access_acl, 6, map);
	fx_check_acl(P("home/user"), "system.posix_acl_default", fx_default_acl, 5, map);
	fx_owner(root, "home/user/acl.txt", map, 1000, 1000);

	assert_int_equal(lstat(P("var/sparse"), &a), 0);
	assert_int_equal(a.st_size, (1 << 20) + 1);
	fx_owner(root, "nobody", map, 65534, 65534);
#undef P
}

/* A unified LXD image (metadata.yaml + rootfs/) of the tree at `rootfs`,
 * written with libarchive straight from disk (xattrs and ACLs included). */
FX void fx_make_image_tar(const char *rootfs, const char *tarball)
{
	struct archive *disk = archive_read_disk_new(), *out = archive_write_new();
	struct archive_entry_linkresolver *links = archive_entry_linkresolver_new();
	struct archive_entry *e, *spare;
	const char *meta = "architecture: x86_64\ncreation_date: 1700000000\n"
			   "properties:\n  os: fixture\n";
	char cwd[4096];

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	archive_write_set_format_pax_restricted(out);
	assert_int_equal(archive_write_open_filename(out, tarball), ARCHIVE_OK);
	/* Without it a second name of an inode is stored as a second file. */
	archive_entry_linkresolver_set_strategy(links, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED);
	e = archive_entry_new();
	archive_entry_set_pathname(e, "metadata.yaml");
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)strlen(meta));
	assert_int_equal(archive_write_header(out, e), ARCHIVE_OK);
	assert_int_equal(archive_write_data(out, meta, strlen(meta)), (la_ssize_t)strlen(meta));
	archive_entry_free(e);

	/* Walk from the rootfs' parent so entries are named rootfs/... */
	{
		char parent[4096], *slash;
		snprintf(parent, sizeof(parent), "%s", rootfs);
		slash = strrchr(parent, '/');
		*slash = '\0';
		assert_int_equal(chdir(parent), 0);
		archive_read_disk_set_behavior(disk, ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
		archive_read_disk_set_symlink_physical(disk);
		archive_read_disk_set_standard_lookup(disk);
		assert_int_equal(archive_read_disk_open(disk, slash + 1), ARCHIVE_OK);
	}
	for (;;) {
		int r;
		e = archive_entry_new();
		r = archive_read_next_header2(disk, e);
		if (r == ARCHIVE_EOF) {
			archive_entry_free(e);
			break;
		}
		assert_true(r >= ARCHIVE_WARN);
		archive_read_disk_descend(disk);
		spare = NULL;
		archive_entry_linkify(links, &e, &spare);
		assert_null(spare);
		assert_true(archive_write_header(out, e) >= ARCHIVE_WARN);
		if (archive_entry_filetype(e) == AE_IFREG && archive_entry_size(e) > 0 &&
		    !archive_entry_hardlink(e)) {
			char buf[8192];
			int fd = open(archive_entry_sourcepath(e), O_RDONLY);
			ssize_t k;
			assert_true(fd >= 0);
			while ((k = read(fd, buf, sizeof(buf))) > 0)
				archive_write_data(out, buf, (size_t)k);
			close(fd);
		}
		archive_entry_free(e);
	}
	archive_read_close(disk);
	archive_read_free(disk);
	archive_entry_linkresolver_free(links);
	assert_int_equal(archive_write_close(out), ARCHIVE_OK);
	archive_write_free(out);
	assert_int_equal(chdir(cwd), 0);
}

/* mkdtemp under /tmp; the caller removes it. */
FX char *fx_tmpdir(const char *tag)
{
	char *d = NULL;
	assert_true(asprintf(&d, "/tmp/cell-%s-XXXXXX", tag) > 0);
	assert_non_null(mkdtemp(d));
	return d;
}

#endif
