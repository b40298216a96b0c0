#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <endian.h>
#include <errno.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "common/idmap.h"
#include "common/util.h"

static const char *lxd_json =
	"[{\"Isuid\":true,\"Isgid\":false,\"Hostid\":1000000,\"Nsid\":0,\"Maprange\":1000000000},"
	"{\"Isuid\":false,\"Isgid\":true,\"Hostid\":1000000,\"Nsid\":0,\"Maprange\":1000000000}]";

static void test_json_roundtrip(void **state)
{
	_cleanup_idmap_ struct idmap m = { 0 };
	_cleanup_free_ char *out = NULL;
	cell_error err;

	assert_int_equal(idmap_parse_json(lxd_json, &m, &err), 0);
	assert_int_equal(m.n, 2);
	assert_true(m.entries[0].isuid);
	assert_false(m.entries[0].isgid);
	assert_int_equal(m.entries[0].hostid, 1000000);
	assert_int_equal(m.entries[0].maprange, 1000000000);
	out = idmap_format_json(&m);
	assert_non_null(out);
	assert_string_equal(out, lxd_json);   /* byte-identical to what LXD stores */
}

static void test_json_empty_and_lowercase(void **state)
{
	_cleanup_idmap_ struct idmap m = { 0 };
	_cleanup_free_ char *out = NULL;
	cell_error err;

	assert_int_equal(idmap_parse_json("", &m, &err), 0);
	assert_int_equal(m.n, 0);
	assert_int_equal(idmap_parse_json("null", &m, &err), 0);
	assert_int_equal(m.n, 0);
	assert_int_equal(idmap_parse_json("[]", &m, &err), 0);
	out = idmap_format_json(&m);
	assert_string_equal(out, "[]");
	/* Go decodes field names case-insensitively. */
	assert_int_equal(idmap_parse_json("[{\"isuid\":true,\"isgid\":true,\"hostid\":5,\"nsid\":0,\"maprange\":10}]",
					  &m, &err), 0);
	assert_int_equal(m.n, 1);
	assert_true(m.entries[0].isuid && m.entries[0].isgid);
}

static void test_json_errors(void **state)
{
	_cleanup_idmap_ struct idmap m = { 0 };
	cell_error err;

	assert_true(idmap_parse_json("{", &m, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_true(idmap_parse_json("{}", &m, &err) < 0);
	assert_true(idmap_parse_json("[{\"Isuid\":\"yes\"}]", &m, &err) < 0);
	assert_non_null(strstr(err.msg, "Isuid"));
	assert_true(idmap_parse_json("[{\"Isuid\":true,\"Hostid\":-1,\"Maprange\":1}]", &m, &err) < 0);
	assert_true(idmap_parse_json("[{\"Isuid\":true,\"Hostid\":4294967295,\"Maprange\":2}]", &m, &err) < 0);
	assert_true(idmap_parse_json("[{\"Isuid\":true,\"Hostid\":1,\"Maprange\":0}]", &m, &err) < 0);
	assert_true(idmap_parse_json("[{\"Hostid\":1,\"Maprange\":1}]", &m, &err) < 0);
	assert_int_equal(m.n, 0);   /* failed parses leave the output alone */
}

static void test_shift(void **state)
{
	_cleanup_idmap_ struct idmap m = { 0 };
	cell_error err;
	uint32_t v;

	assert_int_equal(idmap_parse_json(
		"[{\"Isuid\":true,\"Isgid\":false,\"Hostid\":100000,\"Nsid\":0,\"Maprange\":65536},"
		"{\"Isuid\":false,\"Isgid\":true,\"Hostid\":200000,\"Nsid\":0,\"Maprange\":65536},"
		"{\"Isuid\":true,\"Isgid\":true,\"Hostid\":1000,\"Nsid\":70000,\"Maprange\":1}]", &m, &err), 0);
	assert_int_equal(idmap_shift_uid(&m, 0, &v), 0);
	assert_int_equal(v, 100000);
	assert_int_equal(idmap_shift_uid(&m, 65535, &v), 0);
	assert_int_equal(v, 165535);
	assert_int_equal(idmap_shift_uid(&m, 65536, &v), -ENOENT);
	assert_int_equal(idmap_shift_gid(&m, 5, &v), 0);
	assert_int_equal(v, 200005);
	assert_int_equal(idmap_shift_uid(&m, 70000, &v), 0);
	assert_int_equal(v, 1000);
	assert_int_equal(idmap_shift_gid(&m, 70000, &v), 0);
	assert_int_equal(v, 1000);
	assert_int_equal(idmap_unshift_uid(&m, 100042, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(idmap_unshift_gid(&m, 100042, &v), -ENOENT);
	assert_int_equal(idmap_unshift_uid(&m, 0, &v), -ENOENT);
	/* Remap across two maps (reshift after an idmap change). */
	struct idmap other = { .entries = (struct idmap_entry[]){ { true, true, 500000, 0, 65536 } }, .n = 1 };
	assert_int_equal(idmap_remap_id(&m, &other, true, 100007, &v), 0);
	assert_int_equal(v, 500007);
	assert_int_equal(idmap_remap_id(NULL, NULL, true, 7, &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(idmap_remap_id(&other, NULL, false, 500009, &v), 0);
	assert_int_equal(v, 9);
}

static void test_lxc_lines(void **state)
{
	struct idmap m = { .entries = (struct idmap_entry[]){
		{ true, false, 1000000, 0, 65536 }, { false, true, 1000000, 0, 65536 },
		{ true, true, 1000, 1000, 1 } }, .n = 3 };
	_cleanup_strv_ char **l = idmap_lxc_lines(&m);

	assert_non_null(l);
	assert_string_equal(l[0], "u 0 1000000 65536");
	assert_string_equal(l[1], "g 0 1000000 65536");
	assert_string_equal(l[2], "u 1000 1000 1");
	assert_string_equal(l[3], "g 1000 1000 1");
	assert_null(l[4]);
}

static char tmpdir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/cell-test-idmap-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *write_tmp(const char *name, const char *content)
{
	char *p = xasprintf("%s/%s", tmpdir, name);
	cell_error err;
	assert_int_equal(util_write_file_atomic(p, content, strlen(content), 0644, &err), 0);
	return p;
}

static void test_subid_and_default(void **state)
{
	_cleanup_free_ char *su = write_tmp("subuid", "lxd:100000:65536\nroot:5000:100\nroot:300000:200000\n");
	_cleanup_free_ char *sg = write_tmp("subgid", "0:400000:65536\n");
	_cleanup_free_ char *none = xasprintf("%s/missing", tmpdir);
	_cleanup_free_ char *fullmap = write_tmp("uid_map", "         0          0 4294967295\n");
	_cleanup_free_ char *nested = write_tmp("nested_map", "0 100000 65536\n65536 300000 1000000\n");
	_cleanup_idmap_ struct idmap m = { 0 };
	uint32_t s, r;
	cell_error err;

	/* Ranges too small to hold a container are skipped, as LXD does. */
	assert_int_equal(idmap_read_subid(su, "root", &s, &r, &err), 0);
	assert_int_equal(s, 300000);
	assert_int_equal(r, 200000);
	assert_int_equal(idmap_read_subid(sg, "root", &s, &r, &err), 0);   /* by uid */
	assert_int_equal(s, 400000);
	assert_int_equal(idmap_read_subid(su, "nobody-here", &s, &r, &err), -ENOENT);

	assert_int_equal(idmap_default(su, sg, fullmap, fullmap, &m, &err), 0);
	assert_int_equal(m.n, 2);
	assert_true(m.entries[0].isuid);
	assert_int_equal(m.entries[0].hostid, 300000);
	assert_int_equal(m.entries[1].hostid, 400000);

	/* No subuid file: LXD's fixed default on a full kernel map. */
	assert_int_equal(idmap_default(none, none, fullmap, fullmap, &m, &err), 0);
	assert_int_equal(m.n, 2);
	assert_int_equal(m.entries[0].hostid, IDMAP_DEFAULT_HOSTID);
	assert_int_equal(m.entries[0].maprange, IDMAP_DEFAULT_RANGE);
	assert_true(m.entries[1].isgid);

	/* Nested under another user namespace: a range clear of the parent's low ids. */
	assert_int_equal(idmap_default(none, none, nested, nested, &m, &err), 0);
	assert_int_equal(m.n, 2);
	assert_int_equal(m.entries[0].hostid, 100000);
	assert_int_equal(m.entries[0].maprange, 1065536 - 100000);
}

static void test_alloc_isolated(void **state)
{
	struct idmap base = { .entries = (struct idmap_entry[]){
		{ true, false, 1000000, 0, 1000000000 }, { false, true, 1000000, 0, 1000000000 } }, .n = 2 };
	_cleanup_idmap_ struct idmap a = { 0 }, b = { 0 }, c = { 0 }, used = { 0 };
	struct idmap small = { .entries = (struct idmap_entry[]){
		{ true, true, 1000000, 0, 65536 * 2 } }, .n = 1 };
	cell_error err;

	assert_int_equal(idmap_alloc_isolated(&base, NULL, 65536, &a, &err), 0);
	assert_int_equal(a.n, 2);
	assert_int_equal(a.entries[0].hostid, 1065536);   /* first 65536 of the base are skipped */
	assert_int_equal(a.entries[0].nsid, 0);
	assert_int_equal(a.entries[0].maprange, 65536);
	assert_true(a.entries[1].isgid);

	/* The next one lands after it; a hole that fits is reused. */
	for (size_t i = 0; i < a.n; i++)
		assert_int_equal(idmap_append(&used, &a.entries[i]), 0);
	assert_int_equal(idmap_append(&used, &(struct idmap_entry){ true, false, 1065536 + 3 * 65536, 0, 65536 }), 0);
	assert_int_equal(idmap_alloc_isolated(&base, &used, 65536, &b, &err), 0);
	assert_int_equal(b.entries[0].hostid, 1065536 + 65536);
	assert_int_equal(idmap_alloc_isolated(&base, &used, 3 * 65536, &c, &err), 0);
	assert_int_equal(c.entries[0].hostid, 1065536 + 4 * 65536);

	assert_true(idmap_alloc_isolated(&small, &used, 65536 * 2, &c, &err) < 0);
	assert_non_null(strstr(err.msg, "not enough"));
}

static void test_equal(void **state)
{
	_cleanup_idmap_ struct idmap a = { 0 }, b = { 0 };
	cell_error err;

	assert_int_equal(idmap_parse_json(lxd_json, &a, &err), 0);
	assert_int_equal(idmap_parse_json(lxd_json, &b, &err), 0);
	assert_true(idmap_equal(&a, &b));
	b.entries[1].hostid++;
	assert_false(idmap_equal(&a, &b));
	assert_true(idmap_equal(NULL, &(struct idmap){ 0 }));
}

static void test_remap_xattr(void **state)
{
	struct idmap m = { .entries = (struct idmap_entry[]){ { true, true, 100000, 0, 65536 } }, .n = 1 };
	unsigned char v2[20] = { 0 }, out[28], back[28];
	uint32_t magic = htole32(0x02000001), rootid;
	size_t olen, blen;
	/* POSIX ACL xattr: header + user_obj + user:1000 + group:50 + mask + other */
	unsigned char acl[4 + 5 * 8] = { 2, 0, 0, 0,
		0x01, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
		0x02, 0, 4, 0, 0xe8, 0x03, 0, 0,
		0x08, 0, 4, 0, 50, 0, 0, 0,
		0x10, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
		0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff };
	unsigned char aout[sizeof(acl) + 4];
	uint32_t id;

	memcpy(v2, &magic, 4);
	v2[4] = 0x00; v2[5] = 0x20;   /* CAP_NET_BIND_SERVICE-ish bits */
	assert_int_equal(idmap_remap_xattr(NULL, &m, "security.capability", v2, 20, out, &olen), 0);
	assert_int_equal(olen, 24);
	memcpy(&rootid, out + 20, 4);
	assert_int_equal(le32toh(rootid), 100000);
	assert_int_equal(out[3], 0x03);
	assert_memory_equal(out + 4, v2 + 4, 16);
	/* And back to the portable v2 form on export. */
	assert_int_equal(idmap_remap_xattr(&m, NULL, "security.capability", out, olen, back, &blen), 0);
	assert_int_equal(blen, 20);
	assert_memory_equal(back, v2, 20);
	/* A rootid outside the map cannot be translated. */
	rootid = htole32(5);
	memcpy(out + 20, &rootid, 4);
	assert_int_equal(idmap_remap_xattr(&m, NULL, "security.capability", out, 24, back, &blen), -ENOENT);

	assert_int_equal(idmap_remap_xattr(NULL, &m, "system.posix_acl_access", acl, sizeof(acl), aout, &olen), 0);
	assert_int_equal(olen, sizeof(acl));
	memcpy(&id, aout + 12 + 4, 4);
	assert_int_equal(le32toh(id), 101000);
	memcpy(&id, aout + 20 + 4, 4);
	assert_int_equal(le32toh(id), 100050);
	memcpy(&id, aout + 4 + 4, 4);
	assert_int_equal(id, 0xffffffff);   /* entries without ids untouched */
	assert_int_equal(idmap_remap_xattr(NULL, &m, "user.foo", acl, sizeof(acl), aout, &olen), 1);
	assert_int_equal(idmap_remap_xattr(NULL, &m, "system.posix_acl_access", acl, 7, aout, &olen), -EINVAL);
}

static void test_shift_tree(void **state)
{
	_cleanup_free_ char *root = xasprintf("%s/tree", tmpdir);
	_cleanup_free_ char *sub = xasprintf("%s/tree/sub", tmpdir);
	_cleanup_free_ char *f = xasprintf("%s/tree/sub/file", tmpdir);
	_cleanup_free_ char *hl = xasprintf("%s/tree/hardlink", tmpdir);
	_cleanup_free_ char *sl = xasprintf("%s/tree/link", tmpdir);
	_cleanup_free_ char *suid = xasprintf("%s/tree/suid", tmpdir);
	struct idmap to = { .entries = (struct idmap_entry[]){ { true, true, 100000, 0, 65536 } }, .n = 1 };
	struct idmap to2 = { .entries = (struct idmap_entry[]){ { true, true, 300000, 0, 65536 } }, .n = 1 };
	struct stat st;
	cell_error err;
	int fd;

	assert_int_equal(mkdir(root, 0755), 0);
	assert_int_equal(mkdir(sub, 0700), 0);
	fd = open(f, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(chown(f, 1000, 1001), 0);
	assert_int_equal(link(f, hl), 0);
	assert_int_equal(symlink("/etc/passwd", sl), 0);
	fd = open(suid, O_CREAT | O_WRONLY, 0755);
	close(fd);
	assert_int_equal(chmod(suid, 04755), 0);
	assert_int_equal(setxattr(sub, "user.keep", "v", 1, 0), 0);

	assert_int_equal(idmap_shift_tree(root, NULL, &to, &err), 0);
	assert_int_equal(lstat(root, &st), 0);
	assert_int_equal(st.st_uid, 100000);
	assert_int_equal(lstat(f, &st), 0);
	assert_int_equal(st.st_uid, 101000);   /* hard link shifted once, not twice */
	assert_int_equal(st.st_gid, 101001);
	assert_int_equal(lstat(sl, &st), 0);
	assert_int_equal(st.st_uid, 100000);   /* the link itself, never its target */
	assert_int_equal(stat("/etc/passwd", &st), 0);
	assert_int_equal(st.st_uid, 0);
	assert_int_equal(lstat(suid, &st), 0);
	assert_int_equal(st.st_mode & 07777, 04755);   /* setuid survives chown */
	assert_int_equal(getxattr(sub, "user.keep", (char[4]){ 0 }, 4), 1);

	/* Reshift to another map, then back to privileged. */
	assert_int_equal(idmap_shift_tree(root, &to, &to2, &err), 0);
	assert_int_equal(lstat(hl, &st), 0);
	assert_int_equal(st.st_uid, 301000);
	assert_int_equal(idmap_shift_tree(root, &to2, NULL, &err), 0);
	assert_int_equal(lstat(hl, &st), 0);
	assert_int_equal(st.st_uid, 1000);

	/* An id the map cannot hold is an error naming the file. */
	assert_int_equal(chown(f, 70000, 0), 0);
	assert_true(idmap_shift_tree(root, NULL, &to, &err) < 0);
	assert_non_null(strstr(err.msg, "70000"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_roundtrip),
		cmocka_unit_test(test_json_empty_and_lowercase),
		cmocka_unit_test(test_json_errors),
		cmocka_unit_test(test_shift),
		cmocka_unit_test(test_lxc_lines),
		cmocka_unit_test_setup_teardown(test_subid_and_default, setup, teardown),
		cmocka_unit_test(test_alloc_isolated),
		cmocka_unit_test(test_equal),
		cmocka_unit_test(test_remap_xattr),
		cmocka_unit_test_setup_teardown(test_shift_tree, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
