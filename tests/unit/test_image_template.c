#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "daemon/image_template.h"

static json_t *ctx_new(void)
{
	return json_pack("{s:{s:s,s:s,s:s},s:{s:s,s:s,s:s},s:{s:s},s:s,s:s}",
			 "container", "name", "c1", "type", "container", "privileged", "false",
			 "config", "user.meta-data", "local: yes\n\n", "user.network_mode", "link-local",
			 "security.nesting", "true",
			 "properties", "default", "#cloud-config\n{}",
			 "trigger", "create", "path", "/etc/hostname");
}

static char *render(const char *tpl, json_t *ctx, cell_error *err, int *rc)
{
	_cleanup_sb_ strbuf out = { 0 };

	*rc = image_template_render(tpl, strlen(tpl), ctx, &out, err);
	return *rc < 0 ? NULL : sb_steal(&out) ?: strdup("");
}

static void expect(const char *tpl, const char *want)
{
	_cleanup_json_ json_t *ctx = ctx_new();
	_cleanup_free_ char *got = NULL;
	cell_error err;
	int rc;

	got = render(tpl, ctx, &err, &rc);
	if (rc < 0)
		fail_msg("%s: %s", tpl, err.msg);
	if (strcmp(got, want) != 0)
		fail_msg("%s: got \"%s\", want \"%s\"", tpl, got, want);
}

static void expect_err(const char *tpl, const char *needle)
{
	_cleanup_json_ json_t *ctx = ctx_new();
	_cleanup_free_ char *got = NULL;
	cell_error err;
	int rc;

	got = render(tpl, ctx, &err, &rc);
	if (rc >= 0)
		fail_msg("%s: accepted, rendered \"%s\"", tpl, got);
	if (!strstr(err.msg, needle))
		fail_msg("%s: error \"%s\" lacks \"%s\"", tpl, err.msg, needle);
	assert_int_equal(err.status, 400);
}

static void test_variables(void **state)
{
	expect("plain text\n", "plain text\n");
	expect("{{ container.name }}\n", "c1\n");
	expect("{{container.name}}.lxd", "c1.lxd");
	expect("127.0.1.1\t{{ container.name }}\n", "127.0.1.1\tc1\n");
	expect("{{ trigger }} {{ path }}", "create /etc/hostname");
	expect("{{ properties.default }}", "#cloud-config\n{}");
	expect("[{{ container.missing }}][{{ nothing.at.all }}]", "[][]");
	expect("{{ 'single' }} {{ \"dq \\\"esc\\\"\" }} {{ 42 }} {{ true }}", "single dq \"esc\" 42 True");
	expect("{# a comment #}x{# another\nmultiline #}", "x");
	expect("{ not a tag } {x}", "{ not a tag } {x}");
}

static void test_config_get(void **state)
{
	/* Trailing newlines are trimmed, as LXD's config_get does. */
	expect("{{ config_get(\"user.meta-data\", \"\") }}|", "local: yes|");
	expect("{{ config_get(\"user.user-data\", properties.default) }}", "#cloud-config\n{}");
	expect("{{ config_get(\"user.absent\", \"dflt\") }}", "dflt");
	expect("{{ config_get('user.absent') }}|", "|");
	expect("{{ config_get(\"security.nesting\", \"false\") }}", "true");
}

static void test_conditions(void **state)
{
	expect("{% if container.name == \"c1\" %}yes{% else %}no{% endif %}", "yes");
	expect("{% if container.name != \"c1\" %}yes{% else %}no{% endif %}", "no");
	expect("{% if config_get(\"user.network-config\", \"\") == \"\" %}default{% endif %}", "default");
	expect("{% if config_get(\"user.network_mode\", \"\") == \"link-local\" %}manual{% else %}dhcp{% endif %}",
	       "manual");
	expect("{% if container.missing %}a{% elif trigger == 'copy' %}b{% elif trigger == 'create' %}c{% else %}d{% endif %}",
	       "c");
	expect("{% if not container.missing and container.name %}t{% endif %}", "t");
	expect("{% if container.missing or (trigger == 'create' and not false) %}t{% endif %}", "t");
	expect("{% if !container.missing && container.name %}t{% endif %}", "t");
	expect("{% if 'c' in container.name %}in{% endif %}{% if 3 > 2 %}gt{% endif %}{% if 1 >= 2 %}ge{% endif %}", "ingt");
	expect("{% if a %}{% if b %}x{% else %}y{% endif %}{% else %}{% if c %}z{% else %}w{% endif %}{% endif %}", "w");
	expect("{% if 0 %}a{% endif %}{% if '' %}b{% endif %}{% if 'x' %}c{% endif %}", "c");
	expect("{% autoescape off %}<&>{% endautoescape %}", "<&>");
}

static void test_filters_and_trim(void **state)
{
	expect("{{ container.missing|default:\"fallback\" }}", "fallback");
	expect("{{ container.name|default:\"fallback\" }}", "c1");
	expect("{{ container.missing | default : 'x' | upper }}", "X");
	expect("{{ container.name|upper }}{{ 'ABC'|lower }}{{ container.name|length }}", "C1abc2");
	expect("{{ nothing|default_if_none:'n' }}{{ ''|default_if_none:'n' }}", "n");
	expect("a  \n  {{- container.name -}}  \n  b", "ac1b");
	expect("line\n{%- if true %}\nx\n{%- endif %}\n", "line\nx\n");
}

/* distrobuilder's cloud-init network template, as shipped in images:ubuntu/jammy/cloud. */
static void test_distrobuilder_network(void **state)
{
	const char *tpl =
		"{%- if config_get(\"cloud-init.network-config\", \"\") == \"\" %}\n"
		"{%- if config_get(\"user.network-config\", \"\") == \"\" %}\n"
		"version: 1\n"
		"config:\n"
		"  - type: physical\n"
		"    name: {% if instance.type == \"virtual-machine\" %}enp5s0{% else %}eth0{% endif %}\n"
		"    subnets:\n"
		"      - type: {% if config_get(\"user.network_mode\", \"\") == \"link-local\" %}manual{% else %}dhcp{% endif %}\n"
		"        control: auto\n"
		"{%- else %}\n"
		"{{- config_get(\"user.network-config\", \"\") }}\n"
		"{%- endif %}\n"
		"{%- else %}\n"
		"{{- config_get(\"cloud-init.network-config\", \"\") }}\n"
		"{%- endif %}\n";
	_cleanup_json_ json_t *ctx = ctx_new();
	_cleanup_free_ char *got = NULL;
	cell_error err;
	int rc;

	json_object_set(ctx, "instance", json_object_get(ctx, "container"));
	got = render(tpl, ctx, &err, &rc);
	if (rc < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(got,
		"\nversion: 1\nconfig:\n  - type: physical\n    name: eth0\n    subnets:\n"
		"      - type: manual\n        control: auto\n");
}

static void test_errors(void **state)
{
	expect_err("{% if true %}x", "without {% endif %}");
	expect_err("x{% endif %}", "without {% if %}");
	expect_err("{% if true %}a{% else %}b{% else %}c{% endif %}", "after {% else %}");
	expect_err("{% for x in y %}{% endfor %}", "unsupported tag \"for\"");
	expect_err("{{ container.name|shout }}", "unknown filter \"shout\"");
	expect_err("{{ exec(\"rm -rf /\") }}", "unknown function \"exec\"");
	expect_err("line1\nline2 {{ container.name ", "line 2: unclosed {{");
	expect_err("{{ }}", "empty expression");
	expect_err("{{ 'abc }}", "unclosed");
	expect_err("\n\n{{ a b }}", "line 3");
	expect_err("{{ a == }}", "expected a value");
	/* Syntax errors are found in branches that are not taken, too. */
	expect_err("{% if false %}{{ a| }}{% endif %}", "filter name");
}

/* ---- applying into a rootfs ----------------------------------------------- */

static char tmpdir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/cell-test-tpl-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void put(const char *rel, const char *content, unsigned mode)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", tmpdir, rel);
	cell_error err;
	assert_int_equal(util_write_file_atomic(p, content, strlen(content), mode, &err), 0);
	assert_int_equal(chmod(p, mode), 0);
}

static char *get(const char *rel)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", tmpdir, rel);
	char *s = NULL;
	cell_error err;
	return util_read_file(p, &s, NULL, &err) < 0 ? NULL : s;
}

static void mk(const char *rel, unsigned mode)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", tmpdir, rel);
	assert_int_equal(mkdir(p, mode), 0);
}

static void lst(const char *rel, struct stat *st)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", tmpdir, rel);
	assert_int_equal(lstat(p, st), 0);
}

static const char *templates_yaml_json =
	"{\"/etc/hostname\": {\"when\": [\"create\", \"copy\"], \"create_only\": false, \"template\": \"hostname.tpl\", \"properties\": {}},"
	" \"/etc/hosts\": {\"when\": [\"create\"], \"create_only\": true, \"template\": \"hosts.tpl\", \"properties\": {}},"
	" \"/var/lib/cloud/seed/nocloud-net/user-data\": {\"when\": [\"create\", \"copy\"], \"create_only\": false,"
	"   \"template\": \"user-data.tpl\", \"properties\": {\"default\": \"#cloud-config\\n{}\\n\"}},"
	" \"/etc/on-start\": {\"when\": [\"start\"], \"create_only\": false, \"template\": \"hostname.tpl\", \"properties\": {}}}";

static void prepare_rootfs(void)
{
	mk("rootfs", 0755);
	mk("rootfs/etc", 0755);
	mk("templates", 0755);
	put("rootfs/etc/hostname", "old\n", 0600);
	put("rootfs/etc/hosts", "127.0.0.1 localhost\n", 0644);
	put("templates/hostname.tpl", "{{ container.name }}\n", 0644);
	put("templates/hosts.tpl", "127.0.1.1 {{ container.name }}\n", 0644);
	put("templates/user-data.tpl", "{{ config_get(\"user.user-data\", properties.default) }}", 0644);
	put("templates/evil.tpl", "pwned\n", 0644);
}

static int apply(const char *templates_json, const char *trigger, cell_error *err)
{
	_cleanup_free_ char *root = xasprintf("%s/rootfs", tmpdir), *tpls = xasprintf("%s/templates", tmpdir);
	_cleanup_json_ json_t *t = json_loads(templates_json, 0, NULL);
	_cleanup_json_ json_t *ctx = json_pack("{s:{s:s},s:{}}", "container", "name", "c1", "config");

	assert_non_null(t);
	return image_templates_apply(root, tpls, t, trigger, ctx, err);
}

static void test_apply(void **state)
{
	_cleanup_free_ char *root = xasprintf("%s/rootfs", tmpdir);
	_cleanup_free_ char *s = NULL;
	struct stat st;
	cell_error err;

	prepare_rootfs();
	/* An unprivileged container's rootfs: new files belong to its root. */
	assert_int_equal(chown(root, 100000, 100000), 0);
	if (apply(templates_yaml_json, "create", &err) < 0)
		fail_msg("%s", err.msg);
	s = get("rootfs/etc/hostname");
	assert_string_equal(s, "c1\n");
	lst("rootfs/etc/hostname", &st);
	assert_int_equal(st.st_mode & 07777, 0600);   /* existing file keeps mode and owner */
	assert_int_equal(st.st_uid, 0);
	free(s);
	s = get("rootfs/etc/hosts");
	assert_string_equal(s, "127.0.0.1 localhost\n");   /* create_only and present: untouched */
	free(s);
	s = get("rootfs/var/lib/cloud/seed/nocloud-net/user-data");
	assert_string_equal(s, "#cloud-config\n{}\n");
	lst("rootfs/var/lib/cloud/seed/nocloud-net/user-data", &st);
	assert_int_equal(st.st_uid, 100000);
	assert_int_equal(st.st_mode & 07777, 0644);
	lst("rootfs/var/lib", &st);
	assert_int_equal(st.st_uid, 100000);
	assert_int_equal(st.st_mode & 07777, 0755);
	free(s);
	s = get("rootfs/etc/on-start");
	assert_null(s);   /* other triggers do not fire */

	/* create_only on a missing file creates it. */
	assert_int_equal(unlink(strcat(strcpy((char[128]){ 0 }, root), "/etc/hosts")), 0);
	assert_int_equal(apply(templates_yaml_json, "create", &err), 0);
	s = get("rootfs/etc/hosts");
	assert_string_equal(s, "127.0.1.1 c1\n");
}

static void test_apply_hostile(void **state)
{
	_cleanup_free_ char *root = xasprintf("%s/rootfs", tmpdir);
	_cleanup_free_ char *outside = xasprintf("%s/outside", tmpdir);
	_cleanup_free_ char *victim = xasprintf("%s/outside/victim", tmpdir);
	_cleanup_free_ char *p = NULL, *s = NULL, *j = NULL;
	cell_error err;

	prepare_rootfs();
	mk("outside", 0755);
	put("outside/victim", "precious\n", 0644);

	/* An absolute symlink resolves inside the rootfs, never on the host. */
	p = xasprintf("%s/etc/abs", root);
	assert_int_equal(symlink(victim, p), 0);
	free(p);
	p = xasprintf("%s/etc/rel", root);
	assert_int_equal(symlink("../../../outside/victim", p), 0);
	free(p);
	j = strdup("{\"/etc/abs\": {\"when\": [\"create\"], \"template\": \"evil.tpl\"}}");
	assert_true(apply(j, "create", &err) < 0);
	free(j);
	j = strdup("{\"/etc/rel\": {\"when\": [\"create\"], \"template\": \"evil.tpl\"}}");
	assert_true(apply(j, "create", &err) < 0);   /* rootfs/outside does not exist: no dirs made through links */
	mk("rootfs/outside", 0755);
	assert_int_equal(apply(j, "create", &err), 0);   /* lands at rootfs/outside/victim */
	s = get("outside/victim");
	assert_string_equal(s, "precious\n");
	free(s);
	s = get("rootfs/outside/victim");
	assert_string_equal(s, "pwned\n");
	free(s);
	s = NULL;

	/* A dangling symlink inside the rootfs is followed, inside the rootfs. */
	p = xasprintf("%s/etc/dangling", root);
	assert_int_equal(symlink("/etc/created-through", p), 0);
	free(j);
	j = strdup("{\"/etc/dangling\": {\"when\": [\"create\"], \"template\": \"hostname.tpl\"}}");
	assert_int_equal(apply(j, "create", &err), 0);
	s = get("rootfs/etc/created-through");
	assert_string_equal(s, "c1\n");

	/* Device nodes and FIFOs planted by the image are never opened for writing. */
	free(p);
	p = xasprintf("%s/etc/dev", root);
	assert_int_equal(mknod(p, S_IFCHR | 0666, makedev(1, 3)), 0);
	free(j);
	j = strdup("{\"/etc/dev\": {\"when\": [\"create\"], \"template\": \"evil.tpl\"}}");
	assert_true(apply(j, "create", &err) < 0);
	assert_non_null(strstr(err.msg, "not a regular file"));
	free(p);
	p = xasprintf("%s/etc/fifo", root);
	assert_int_equal(mkfifo(p, 0644), 0);
	free(j);
	j = strdup("{\"/etc/fifo\": {\"when\": [\"create\"], \"template\": \"evil.tpl\"}}");
	assert_true(apply(j, "create", &err) < 0);
	assert_non_null(strstr(err.msg, "/etc/fifo"));

	/* Template names stay inside the templates directory; targets refuse "..". */
	free(j);
	j = strdup("{\"/etc/x\": {\"when\": [\"create\"], \"template\": \"../outside/victim\"}}");
	assert_true(apply(j, "create", &err) < 0);
	free(j);
	j = strdup("{\"/etc/x\": {\"when\": [\"create\"], \"template\": \"/etc/passwd\"}}");
	assert_true(apply(j, "create", &err) < 0);
	free(j);
	j = strdup("{\"/../../x\": {\"when\": [\"create\"], \"template\": \"evil.tpl\"}}");
	assert_true(apply(j, "create", &err) < 0);
	assert_non_null(strstr(err.msg, "/../../x"));
	free(j);
	j = strdup("{\"/etc/x\": {\"when\": [\"create\"], \"template\": \"missing.tpl\"}}");
	assert_true(apply(j, "create", &err) < 0);
	assert_non_null(strstr(err.msg, "missing.tpl"));
	free(s);
	s = get("outside/victim");
	assert_string_equal(s, "precious\n");
	assert_int_equal(access("/x", F_OK), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_variables),
		cmocka_unit_test(test_config_get),
		cmocka_unit_test(test_conditions),
		cmocka_unit_test(test_filters_and_trim),
		cmocka_unit_test(test_distrobuilder_network),
		cmocka_unit_test(test_errors),
		cmocka_unit_test_setup_teardown(test_apply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply_hostile, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
