#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <ftw.h>
#include <unistd.h>
#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "daemon/image_meta.h"

static int parse(const char *yaml, struct image_meta *m, cell_error *err)
{
	return image_meta_parse(yaml, strlen(yaml), m, err);
}

/* What distrobuilder writes for images:ubuntu/... */
static const char *full =
	"architecture: amd64\n"
	"creation_date: 1700000000\n"
	"expiry_date: 1702592000\n"
	"properties:\n"
	"  architecture: amd64\n"
	"  description: Ubuntu jammy amd64 (20231114_07:42)\n"
	"  os: Ubuntu\n"
	"  release: jammy\n"
	"  serial: \"20231114_07:42\"\n"
	"  version: 22.04\n"
	"  variant: default\n"
	"templates:\n"
	"  /etc/hostname:\n"
	"    when:\n"
	"    - create\n"
	"    - copy\n"
	"    create_only: false\n"
	"    template: hostname.tpl\n"
	"    properties: {}\n"
	"  /var/lib/cloud/seed/nocloud-net/user-data:\n"
	"    when: [create, copy]\n"
	"    create_only: yes\n"
	"    template: cloud-init-user.tpl\n"
	"    properties:\n"
	"      default: |\n"
	"        #cloud-config\n"
	"        {}\n";

static void test_full(void **state)
{
	_cleanup_image_meta_ struct image_meta m = { 0 };
	json_t *t;
	cell_error err;

	if (parse(full, &m, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(m.architecture, "x86_64");
	assert_int_equal(m.creation_date, 1700000000);
	assert_int_equal(m.expiry_date, 1702592000);
	assert_string_equal(json_string_value(json_object_get(m.properties, "os")), "Ubuntu");
	/* Numbers in properties stay strings as in Go's map[string]string. */
	assert_string_equal(json_string_value(json_object_get(m.properties, "version")), "22.04");
	assert_int_equal(json_object_size(m.templates), 2);
	t = json_object_get(m.templates, "/etc/hostname");
	assert_non_null(t);
	assert_string_equal(json_string_value(json_object_get(t, "template")), "hostname.tpl");
	assert_int_equal(json_array_size(json_object_get(t, "when")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(t, "when"), 1)), "copy");
	assert_true(json_is_false(json_object_get(t, "create_only")));
	t = json_object_get(m.templates, "/var/lib/cloud/seed/nocloud-net/user-data");
	assert_true(json_is_true(json_object_get(t, "create_only")));
	assert_string_equal(json_string_value(json_object_get(json_object_get(t, "properties"), "default")),
			    "#cloud-config\n{}\n");
}

static void test_minimal(void **state)
{
	_cleanup_image_meta_ struct image_meta m = { 0 };
	cell_error err;

	assert_int_equal(parse("architecture: x86_64\ncreation_date: 1\n", &m, &err), 0);
	assert_int_equal(m.expiry_date, 0);
	assert_int_equal(json_object_size(m.properties), 0);
	assert_int_equal(json_object_size(m.templates), 0);
	assert_int_equal(parse("architecture: x86_64\ncreation_date: 1\nproperties:\ntemplates:\n", &m, &err), 0);
	assert_true(json_is_object(m.properties));
}

static void expect_error(const char *yaml, const char *needle)
{
	_cleanup_image_meta_ struct image_meta m = { 0 };
	cell_error err;

	if (parse(yaml, &m, &err) >= 0)
		fail_msg("accepted: %s", yaml);
	assert_int_equal(err.status, 400);
	if (!strstr(err.msg, needle) || strncmp(err.msg, "metadata.yaml", 13) != 0)
		fail_msg("error \"%s\" lacks \"%s\"", err.msg, needle);
	assert_null(m.architecture);
}

static void test_errors(void **state)
{
	expect_error("creation_date: 1\n", "missing architecture");
	expect_error("architecture: x86_64\n", "missing creation_date");
	expect_error("architecture: x86_64\ncreation_date: 0\n", "missing creation_date");
	expect_error("architecture: vax\ncreation_date: 1\n", "unsupported architecture \"vax\"");
	expect_error("architecture: x86_64\ncreation_date: yesterday\n", "creation_date must be an integer");
	expect_error("architecture: x86_64\ncreation_date: 1\nexpiry_date: [1]\n", "expiry_date");
	expect_error("architecture: x86_64\ncreation_date: 1\nproperties: [a]\n", "properties must be a mapping");
	expect_error("architecture: x86_64\ncreation_date: 1\nproperties:\n  a: {b: c}\n", "properties.a");
	expect_error("architecture: x86_64\ncreation_date: 1\ntemplates:\n  /x:\n    when: create\n", "when must be a list");
	expect_error("architecture: x86_64\ncreation_date: 1\ntemplates:\n  /x:\n    create_only: maybe\n", "create_only");
	expect_error("architecture: x86_64\ncreation_date: 1\ntemplates: [x]\n", "templates must be a mapping");
	expect_error("- a\n- b\n", "not a mapping");
	expect_error("architecture: [x86_64\n", "line");
	expect_error("architecture: \"x86_64\ncreation_date: 1\n", "line");
	expect_error("", "not a mapping");
	/* A billion-laughs document is refused before it is expanded. */
	expect_error("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
		     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\narchitecture: x86_64\ncreation_date: 1\n",
		     "aliases are not supported");
}

static void test_arch(void **state)
{
	static const char *const pairs[][2] = {
		{ "amd64", "x86_64" }, { "x86_64", "x86_64" }, { "arm64", "aarch64" }, { "aarch64", "aarch64" },
		{ "i386", "i686" }, { "i686", "i686" }, { "armhf", "armv7l" }, { "armv7l", "armv7l" },
		{ "ppc64el", "ppc64le" }, { "ppc64le", "ppc64le" }, { "s390x", "s390x" },
		{ "riscv64", "riscv64" }, { "armel", "armv6l" }, { "loong64", "loongarch64" },
		{ "powerpc64", "ppc64" }, { "mips64el", "mips64" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(pairs); i++)
		assert_string_equal(image_arch_normalize(pairs[i][0]), pairs[i][1]);
	assert_null(image_arch_normalize("vax"));
	assert_null(image_arch_normalize(NULL));
	assert_int_equal(image_arch_id("amd64"), 2);
	assert_int_equal(image_arch_id("aarch64"), 4);
	assert_int_equal(image_arch_id("nope"), 0);
	assert_string_equal(image_arch_name(7), "ppc64le");
	assert_null(image_arch_name(99));
	{
		const char *host[4];
		size_t n = image_arch_host_supported(host, ARRAY_SIZE(host));
		assert_true(n >= 1);
#if defined(__x86_64__)
		assert_string_equal(host[0], "x86_64");
		assert_int_equal(n, 2);
		assert_string_equal(host[1], "i686");
#endif
	}
}

static void test_yaml_roundtrip(void **state)
{
	_cleanup_image_meta_ struct image_meta m = { 0 }, back = { 0 };
	_cleanup_free_ char *y = NULL;
	cell_error err;

	assert_int_equal(parse(full, &m, &err), 0);
	y = image_meta_to_yaml(&m);
	assert_non_null(y);
	if (parse(y, &back, &err) < 0)
		fail_msg("%s\n%s", err.msg, y);
	assert_string_equal(back.architecture, "x86_64");
	assert_int_equal(back.creation_date, m.creation_date);
	assert_int_equal(back.expiry_date, m.expiry_date);
	assert_true(json_equal(back.properties, m.properties));
	assert_true(json_equal(back.templates, m.templates));
}

static void test_load_from_tarball(void **state)
{
	char dir[] = "/tmp/cell-test-meta-XXXXXX";
	_cleanup_image_meta_ struct image_meta m = { 0 };
	_cleanup_free_ char *good = NULL, *bad = NULL;
	struct archive *a;
	struct archive_entry *e;
	cell_error err;
	const char *y = "architecture: arm64\ncreation_date: 42\n";

	assert_non_null(mkdtemp(dir));
	good = xasprintf("%s/good.tar.gz", dir);
	bad = xasprintf("%s/bad.tar.gz", dir);
	for (int i = 0; i < 2; i++) {
		a = archive_write_new();
		archive_write_set_format_pax_restricted(a);
		archive_write_add_filter_gzip(a);
		assert_int_equal(archive_write_open_filename(a, i ? bad : good), ARCHIVE_OK);
		e = archive_entry_new();
		archive_entry_set_pathname(e, i ? "rootfs/etc/hostname" : "metadata.yaml");
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0644);
		archive_entry_set_size(e, (la_int64_t)strlen(y));
		assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
		archive_write_data(a, y, strlen(y));
		archive_entry_free(e);
		archive_write_close(a);
		archive_write_free(a);
	}
	assert_int_equal(image_meta_load(good, &m, &err), 0);
	assert_string_equal(m.architecture, "aarch64");
	assert_int_equal(m.creation_date, 42);
	assert_int_equal(image_meta_load(bad, &m, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no metadata.yaml"));
	assert_int_equal(err.status, 400);
	unlink(good);
	unlink(bad);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_minimal),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_arch),
		cmocka_unit_test(test_yaml_roundtrip),
		cmocka_unit_test(test_load_from_tarball),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
