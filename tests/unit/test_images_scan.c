/* Image validation (image_scan.c): what an import refuses before anything
 * is stored.  Tarballs are built here with libarchive, entry by entry, so
 * hostile ones (traversal, devices, bombs) are easy to make. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"   /* short entry tables */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>

#include "daemon/image_scan.h"

static char dir[] = "/tmp/cell-scan-XXXXXX";
static const char meta[] = "architecture: amd64\ncreation_date: 1700000000\nproperties:\n  os: busybox\n";

enum kind { REG, DIR_, LNK, HARD, CHR, BLK };
struct ent { const char *name; enum kind k; const char *data_or_link; int64_t size; unsigned ma, mi; };

static char *build(const char *file, const char *filter, const struct ent *e, size_t n)
{
	char *path = malloc(strlen(dir) + strlen(file) + 2);
	struct archive *a = archive_write_new();

	sprintf(path, "%s/%s", dir, file);
	archive_write_set_format_pax_restricted(a);
	if (filter && !strcmp(filter, "gzip"))
		archive_write_add_filter_gzip(a);
	else if (filter && !strcmp(filter, "xz"))
		archive_write_add_filter_xz(a);
	else
		archive_write_add_filter_none(a);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *x = archive_entry_new();
		archive_entry_set_pathname(x, e[i].name);
		archive_entry_set_perm(x, 0644);
		switch (e[i].k) {
		case REG:
			archive_entry_set_filetype(x, AE_IFREG);
			archive_entry_set_size(x, e[i].data_or_link ? (int64_t)strlen(e[i].data_or_link) : e[i].size);
			break;
		case DIR_:
			archive_entry_set_filetype(x, AE_IFDIR);
			break;
		case LNK:
			archive_entry_set_filetype(x, AE_IFLNK);
			archive_entry_set_symlink(x, e[i].data_or_link);
			break;
		case HARD:
			archive_entry_set_filetype(x, AE_IFREG);
			archive_entry_set_hardlink(x, e[i].data_or_link);
			break;
		case CHR:
		case BLK:
			archive_entry_set_filetype(x, e[i].k == CHR ? AE_IFCHR : AE_IFBLK);
			archive_entry_set_rdevmajor(x, e[i].ma);
			archive_entry_set_rdevminor(x, e[i].mi);
			break;
		}
		assert_true(archive_write_header(a, x) >= ARCHIVE_WARN);
		if (e[i].k == REG && e[i].data_or_link)
			archive_write_data(a, e[i].data_or_link, strlen(e[i].data_or_link));
		else if (e[i].k == REG && e[i].size) {
			/* Zeros compress to nothing: a bomb. */
			static char zero[65536];
			for (int64_t left = e[i].size; left > 0; left -= (int64_t)sizeof(zero))
				archive_write_data(a, zero, left < (int64_t)sizeof(zero) ? (size_t)left : sizeof(zero));
		}
		archive_entry_free(x);
	}
	archive_write_close(a);
	archive_write_free(a);
	return path;
}

static int scan(const char *path, enum img_scan_kind k, uint64_t max_bytes, struct img_scan_result *r,
		cell_error *err)
{
	struct img_scan_opts o = { .max_bytes = max_bytes ? max_bytes : UINT64_MAX, .max_entries = UINT64_MAX };
	return img_scan_file(path, k, &o, r, err);
}

static int setup(void **state) { return mkdtemp(dir) ? 0 : -1; }
static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void test_good_unified(void **state)
{
	const struct ent e[] = {
		{ "metadata.yaml", REG, meta }, { "rootfs/", DIR_ }, { "rootfs/bin/", DIR_ },
		{ "rootfs/bin/busybox", REG, "ELF..." }, { "rootfs/bin/sh", LNK, "/bin/busybox" },
		{ "rootfs/bin/ls", HARD, "rootfs/bin/busybox" }, { "rootfs/dev/null", CHR, NULL, 0, 1, 3 },
		{ "rootfs/etc/x", LNK, "../../.." },     /* symlink targets are the unpack's job */
		{ "templates/hostname.tpl", REG, "{{ container.name }}" },
	};
	struct img_scan_result r;
	cell_error err = { 0 };

	for (int gz = 0; gz < 2; gz++) {
		char *p = build(gz ? "good.tar.gz" : "good.tar", gz ? "gzip" : NULL, e, sizeof(e) / sizeof(e[0]));
		assert_int_equal(scan(p, IMG_SCAN_UNIFIED, 0, &r, &err), 0);
		assert_true(r.has_meta && r.has_rootfs);
		assert_string_equal(r.meta_yaml, meta);
		assert_string_equal(r.compression, gz ? "gzip" : "none");
		assert_int_equal(r.bytes, strlen("ELF...") + strlen("{{ container.name }}"));
		img_scan_result_free(&r);
		free(p);
	}
}

static void expect_refused(const struct ent *e, size_t n, enum img_scan_kind k, uint64_t max,
			   const char *needle)
{
	char *p = build("bad.tar.xz", "xz", e, n);
	struct img_scan_result r;
	cell_error err = { 0 };

	assert_true(scan(p, k, max, &r, &err) < 0);
	assert_int_equal(err.status, 400);
	if (!strstr(err.msg, needle))
		fail_msg("error \"%s\" lacks \"%s\"", err.msg, needle);
	assert_null(r.meta_yaml);
	free(p);
}

static void test_refusals(void **state)
{
	const struct ent dotdot[] = { { "metadata.yaml", REG, meta }, { "rootfs/../../etc/passwd", REG, "x" } };
	const struct ent abs[] = { { "metadata.yaml", REG, meta }, { "/etc/passwd", REG, "x" } };
	const struct ent hard[] = { { "metadata.yaml", REG, meta }, { "rootfs/x", HARD, "../../etc/shadow" } };
	const struct ent hard_out[] = { { "metadata.yaml", REG, meta }, { "rootfs/x", HARD, "metadata.yaml" } };
	const struct ent blk[] = { { "metadata.yaml", REG, meta }, { "rootfs/dev/sda", BLK, NULL, 0, 8, 0 } };
	const struct ent chr[] = { { "metadata.yaml", REG, meta }, { "rootfs/dev/mem", CHR, NULL, 0, 1, 1 } };
	const struct ent nometa[] = { { "rootfs/", DIR_ }, { "rootfs/x", REG, "x" } };
	const struct ent norootfs[] = { { "metadata.yaml", REG, meta } };
	const struct ent bomb[] = { { "metadata.yaml", REG, meta }, { "rootfs/zero", REG, NULL, 64 << 20 } };
	const struct ent vm[] = { { "metadata.yaml", REG, meta }, { "rootfs.img", REG, "qcow" } };
	const struct ent meta_dir[] = { { "metadata.yaml/", DIR_ }, { "rootfs/x", REG, "x" } };

	expect_refused(dotdot, 2, IMG_SCAN_UNIFIED, 0, "'..'");
	expect_refused(abs, 2, IMG_SCAN_UNIFIED, 0, "absolute");
	expect_refused(hard, 2, IMG_SCAN_UNIFIED, 0, "hard link");
	expect_refused(hard_out, 2, IMG_SCAN_UNIFIED, 0, "outside the rootfs");
	expect_refused(blk, 2, IMG_SCAN_UNIFIED, 0, "block device 8:0");
	expect_refused(chr, 2, IMG_SCAN_UNIFIED, 0, "character device 1:1");
	expect_refused(blk + 1, 1, IMG_SCAN_ROOTFS, 0, "block device");
	expect_refused(nometa, 2, IMG_SCAN_UNIFIED, 0, "missing metadata.yaml");
	expect_refused(norootfs, 1, IMG_SCAN_UNIFIED, 0, "no rootfs/");
	expect_refused(bomb, 2, IMG_SCAN_UNIFIED, 10 << 20, "more than the 10485760 bytes free");
	expect_refused(vm, 2, IMG_SCAN_UNIFIED, 0, "Virtual machine");
	expect_refused(meta_dir, 2, IMG_SCAN_UNIFIED, 0, "not a regular file");
}

static void test_truncated_and_junk(void **state)
{
	const struct ent e[] = { { "metadata.yaml", REG, meta }, { "rootfs/big", REG, NULL, 1 << 20 } };
	char *p = build("t.tar", NULL, e, 2), cmd[512];
	struct img_scan_result r;
	cell_error err = { 0 };
	FILE *f;

	snprintf(cmd, sizeof(cmd), "truncate -s 600000 %s", p);
	assert_int_equal(system(cmd), 0);
	assert_true(scan(p, IMG_SCAN_UNIFIED, 0, &r, &err) < 0);
	assert_int_equal(err.status, 400);
	assert_non_null(strstr(err.msg, "Invalid image tarball"));
	f = fopen(p, "w");
	fputs("this is not a tarball at all, just text that goes on for a while........", f);
	fclose(f);
	assert_true(scan(p, IMG_SCAN_UNIFIED, 0, &r, &err) < 0);
	assert_int_equal(err.status, 400);
	free(p);
}

static void test_split_parts(void **state)
{
	const struct ent m[] = { { "metadata.yaml", REG, meta }, { "templates/a.tpl", REG, "x" } };
	const struct ent root[] = { { "./", DIR_ }, { "./bin/sh", REG, "sh" }, { "./dev/console", CHR, NULL, 0, 5, 1 } };
	char *pm = build("meta.tar", NULL, m, 2), *pr = build("rootfs.tar.gz", "gzip", root, 3);
	struct img_scan_result r;
	cell_error err = { 0 };

	assert_int_equal(scan(pm, IMG_SCAN_META, 0, &r, &err), 0);
	assert_true(r.has_meta);
	img_scan_result_free(&r);
	assert_int_equal(scan(pr, IMG_SCAN_ROOTFS, 0, &r, &err), 0);
	assert_true(r.has_rootfs);
	assert_int_equal(r.bytes, 2);
	img_scan_result_free(&r);
	free(pm);
	free(pr);
}

static void test_devices(void **state)
{
	assert_true(img_scan_device_allowed(false, 1, 3));
	assert_true(img_scan_device_allowed(false, 5, 2));
	assert_true(img_scan_device_allowed(false, 0, 0));
	assert_false(img_scan_device_allowed(true, 1, 3));
	assert_false(img_scan_device_allowed(false, 1, 1));   /* /dev/mem */
	assert_false(img_scan_device_allowed(false, 10, 200));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_unified),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_truncated_and_junk),
		cmocka_unit_test(test_split_parts),
		cmocka_unit_test(test_devices),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
