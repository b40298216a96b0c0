/* Config validation and liblxc config generation of the container runtime. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "daemon/inst_internal.h"
#include "daemon/inst_lxc.h"

static char tmpdir[] = "/tmp/cell-test-conf.XXXXXX";

static int setup(void **state)
{
	cell_error err = { 0 };
	char lxcpath[sizeof(tmpdir) + 16];

	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(lxcpath, sizeof(lxcpath), "%s/containers", tmpdir);
	return inst_lxc_init(lxcpath, &err);
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- units ------------------------------------------------------------------- */

static void test_parse_bytes(void **state)
{
	uint64_t v;

	assert_int_equal(inst_lxc_parse_bytes("512MB", &v), 0);
	assert_int_equal(v, 512000000ULL);
	assert_int_equal(inst_lxc_parse_bytes("1GiB", &v), 0);
	assert_int_equal(v, 1ULL << 30);
	assert_int_equal(inst_lxc_parse_bytes("100", &v), 0);
	assert_int_equal(v, 100);
	assert_int_equal(inst_lxc_parse_bytes("64KiB", &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(inst_lxc_parse_bytes("2kB", &v), 0);
	assert_int_equal(v, 2000);
	assert_int_equal(inst_lxc_parse_bytes("3B", &v), 0);
	assert_int_equal(v, 3);
	static const char *const bad[] = { "", "MB", "12XB", "1.5GB", "-1", " 1MB", "1 MB",
					   "99999999999EiB", "18446744073709551616", "1mb" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(inst_lxc_parse_bytes(bad[i], &v), -EINVAL);
}

static void test_parse_memory(void **state)
{
	uint64_t v, ram = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);

	assert_int_equal(inst_lxc_parse_memory("50%", &v), 0);
	assert_true(v <= ram / 2 && v + 100 >= ram / 2);
	assert_int_equal(inst_lxc_parse_memory("100%", &v), 0);
	assert_int_equal(inst_lxc_parse_memory("256MiB", &v), 0);
	assert_int_equal(v, 256ULL << 20);
	assert_int_equal(inst_lxc_parse_memory("0%", &v), -EINVAL);
	assert_int_equal(inst_lxc_parse_memory("101%", &v), -EINVAL);
	assert_int_equal(inst_lxc_parse_memory("%", &v), -EINVAL);
	assert_int_equal(inst_lxc_parse_memory("0", &v), -EINVAL);
	assert_int_equal(inst_lxc_parse_memory("5x%", &v), -EINVAL);
}

/* ---- config validation --------------------------------------------------------- */

static void expect_config_error(const char *key, const char *value, const char *needle)
{
	_cleanup_json_ json_t *cfg = json_pack("{ss}", key, value);
	cell_error err = { 0 };

	assert_int_equal(inst_lxc_validate(cfg, NULL, &err), -EINVAL);
	assert_int_equal(err.status, 400);
	if (!strstr(err.msg, needle))
		fail_msg("%s=%s: \"%s\" lacks \"%s\"", key, value, err.msg, needle);
}

static void test_validate_config_ok(void **state)
{
	_cleanup_json_ json_t *cfg = json_pack(
		"{ss ss ss ss ss ss ss ss ss ss ss ss ss ss ss}", "limits.cpu", "2",
		"limits.cpu.allowance", "25ms/100ms", "limits.memory", "512MB",
		"limits.memory.swap", "false", "limits.processes", "100", "security.nesting", "true",
		"security.privileged", "0", "raw.lxc", "lxc.signal.halt = SIGUSR2\n# comment\n\n",
		"environment.FOO", "bar baz", "user.note", "multi\nline", "volatile.eth0.hwaddr",
		"00:16:3e:00:00:01", "image.os", "busybox", "limits.memory.enforce", "soft",
		"boot.autostart", "yes", "limits.cpu.priority", "5");
	cell_error err = { 0 };

	assert_int_equal(inst_lxc_validate(cfg, NULL, &err), 0);
	json_object_set_new(cfg, "limits.cpu", json_string("0-1,3"));
	json_object_set_new(cfg, "limits.cpu.allowance", json_string("50%"));
	json_object_set_new(cfg, "limits.memory", json_string("25%"));
	assert_int_equal(inst_lxc_validate(cfg, NULL, &err), 0);
	/* An empty value means unset, as in LXD. */
	json_object_set_new(cfg, "limits.memory", json_string(""));
	assert_int_equal(inst_lxc_validate(cfg, NULL, &err), 0);
}

static void test_validate_config_errors(void **state)
{
	expect_config_error("limits.bogus", "1", "unknown configuration key \"limits.bogus\"");
	expect_config_error("limits.memory", "lots", "limits.memory: must be a size");
	expect_config_error("limits.memory", "1.5GB", "limits.memory");
	expect_config_error("limits.memory", "150%", "limits.memory");
	expect_config_error("limits.cpu", "0", "limits.cpu");
	expect_config_error("limits.cpu", "1-", "invalid CPU set");
	expect_config_error("limits.cpu", "3-1", "invalid CPU set");
	expect_config_error("limits.cpu", "a", "limits.cpu");
	expect_config_error("limits.cpu.allowance", "50", "limits.cpu.allowance");
	expect_config_error("limits.cpu.allowance", "25ms/0ms", "limits.cpu.allowance");
	expect_config_error("limits.cpu.allowance", "25/100ms", "limits.cpu.allowance");
	expect_config_error("limits.cpu.priority", "11", "from 0 to 10");
	expect_config_error("limits.processes", "0", "positive integer");
	expect_config_error("limits.processes", "-5", "positive integer");
	expect_config_error("limits.memory.enforce", "medium", "\"hard\" or \"soft\"");
	expect_config_error("limits.memory.swap", "maybe", "invalid boolean");
	expect_config_error("security.nesting", "maybe", "invalid boolean");
	expect_config_error("raw.lxc", "lxc.log.file = /etc/passwd", "lxc.log.file may not be set");
	expect_config_error("raw.lxc", "lxc.cgroup.dir.container = x", "may not be set");
	expect_config_error("raw.lxc", "lxc.idmap = u 0 0 1", "may not be set");
	expect_config_error("raw.lxc", "lxc.init.cmd = /bin/sh\nnonsense", "line 2");
	expect_config_error("raw.lxc", "foo.bar = 1", "line 1");
	expect_config_error("environment.FOO", "a\nlxc.rootfs.path = /", "single line");
	expect_config_error("environment.1X", "a", "invalid environment variable name");
	expect_config_error("environment.A=B", "a", "invalid environment variable name");
	expect_config_error("linux.kernel_modules", "a\rb", "single line");

	_cleanup_json_ json_t *cfg = json_pack("{si}", "limits.processes", 5);
	cell_error err = { 0 };
	assert_int_equal(inst_lxc_validate(cfg, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "must be strings"));
	json_decref(cfg);
	cfg = json_array();
	assert_int_equal(inst_lxc_validate(cfg, NULL, &err), -EINVAL);
}

/* ---- device validation --------------------------------------------------------- */

static void expect_device_error(const char *fmt, const char *needle)
{
	json_error_t jerr;
	_cleanup_json_ json_t *devs = json_loads(fmt, 0, &jerr);
	cell_error err = { 0 };

	assert_non_null(devs);
	assert_int_equal(inst_lxc_validate(NULL, devs, &err), -EINVAL);
	assert_int_equal(err.status, 400);
	if (!strstr(err.msg, needle))
		fail_msg("%s: \"%s\" lacks \"%s\"", fmt, err.msg, needle);
}

static void test_validate_devices_ok(void **state)
{
	json_error_t jerr;
	_cleanup_json_ json_t *devs = json_loads(
		"{\"root\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"default\", \"size\": \"10GiB\"},"
		" \"eth0\": {\"type\": \"nic\", \"nictype\": \"bridged\", \"parent\": \"br0\", \"name\": \"eth0\","
		"           \"hwaddr\": \"00:16:3e:aa:bb:cc\", \"mtu\": \"1400\", \"host_name\": \"vethcell0\"},"
		" \"eth1\": {\"type\": \"nic\", \"network\": \"cellbr0\"},"
		" \"mv\": {\"type\": \"nic\", \"nictype\": \"macvlan\", \"parent\": \"eth0\", \"name\": \"eth2\"},"
		" \"pp\": {\"type\": \"nic\", \"nictype\": \"p2p\", \"name\": \"eth3\"},"
		" \"data\": {\"type\": \"disk\", \"source\": \"/srv/data\", \"path\": \"/mnt/data\", \"readonly\": \"true\"},"
		" \"vol\": {\"type\": \"disk\", \"pool\": \"default\", \"source\": \"vol1\", \"path\": \"/mnt/vol\"},"
		" \"null\": {\"type\": \"unix-char\", \"source\": \"/dev/null\", \"path\": \"/dev/null2\", \"mode\": \"0666\"},"
		" \"blk\": {\"type\": \"unix-block\", \"path\": \"/dev/loopx\", \"major\": \"7\", \"minor\": \"0\", \"uid\": \"1000\"},"
		" \"gone\": {\"type\": \"none\"}}",
		0, &jerr);
	cell_error err = { 0 };

	assert_non_null(devs);
	if (inst_lxc_validate(NULL, devs, &err) != 0)
		fail_msg("%s", err.msg);
}

static void test_validate_devices_errors(void **state)
{
	expect_device_error("{\"e\": {\"type\": \"nic\"}}", "needs \"nictype\" or \"network\"");
	expect_device_error("{\"e\": {\"type\": \"nic\", \"nictype\": \"bridged\"}}", "needs \"parent\"");
	expect_device_error("{\"e\": {\"type\": \"nic\", \"nictype\": \"sriov\", \"parent\": \"x\"}}",
			    "not supported");
	expect_device_error("{\"e\": {\"type\": \"nic\", \"nictype\": \"p2p\", \"hwaddr\": \"zz\"}}",
			    "invalid hwaddr");
	expect_device_error("{\"e\": {\"type\": \"nic\", \"nictype\": \"p2p\", \"hwaddr\": \"01:00:5e:00:00:01\"}}",
			    "invalid hwaddr");
	expect_device_error("{\"e\": {\"type\": \"nic\", \"nictype\": \"p2p\", \"mtu\": \"10\"}}", "mtu");
	expect_device_error("{\"e\": {\"type\": \"nic\", \"nictype\": \"p2p\", \"name\": \"a/b\"}}",
			    "invalid interface name");
	expect_device_error("{\"e\": {\"type\": \"nic\", \"nictype\": \"p2p\", \"name\": \"waytoolonginterface\"}}",
			    "invalid interface name");
	expect_device_error("{\"e\": {\"type\": \"nic\", \"nictype\": \"p2p\", \"colour\": \"red\"}}",
			    "invalid nic option \"colour\"");
	expect_device_error("{\"e\": {\"type\": \"nic\", \"nictype\": \"macvlan\", \"parent\": \"x\", \"host_name\": \"v\"}}",
			    "no host_name");
	expect_device_error("{\"g\": {\"type\": \"gpu\"}}", "type \"gpu\" is not supported");
	expect_device_error("{\"g\": {\"path\": \"/x\"}}", "missing \"type\"");
	expect_device_error("{\"g\": \"disk\"}", "must be an object");
	expect_device_error("{\"d\": {\"type\": \"disk\", \"source\": \"/srv\"}}", "absolute \"path\"");
	expect_device_error("{\"d\": {\"type\": \"disk\", \"source\": \"/srv\", \"path\": \"mnt\"}}",
			    "absolute \"path\"");
	expect_device_error("{\"d\": {\"type\": \"disk\", \"source\": \"/srv\", \"path\": \"/mnt/../../etc\"}}",
			    "absolute \"path\"");
	expect_device_error("{\"d\": {\"type\": \"disk\", \"path\": \"/\"}}", "needs \"pool\"");
	expect_device_error("{\"d\": {\"type\": \"disk\", \"path\": \"/\", \"pool\": \"p\", \"size\": \"big\"}}",
			    "invalid size");
	expect_device_error("{\"d\": {\"type\": \"disk\", \"path\": \"/mnt\"}}", "needs \"source\"");
	expect_device_error("{\"d\": {\"type\": \"disk\", \"path\": \"/mnt\", \"source\": \"rel\"}}",
			    "absolute host path");
	expect_device_error("{\"d\": {\"type\": \"disk\", \"path\": \"/mnt\", \"source\": \"/s\", \"readonly\": \"perhaps\"}}",
			    "readonly: invalid boolean");
	expect_device_error("{\"d\": {\"type\": \"disk\", \"path\": \"/mnt\", \"source\": \"/s\", \"shift\": \"true\"}}",
			    "shift is not supported");
	expect_device_error("{\"u\": {\"type\": \"unix-char\"}}", "needs \"source\" or \"path\"");
	expect_device_error("{\"u\": {\"type\": \"unix-char\", \"path\": \"/dev/x\", \"major\": \"1\"}}",
			    "both major and minor");
	expect_device_error("{\"u\": {\"type\": \"unix-char\", \"path\": \"/dev/x\", \"mode\": \"0999\"}}",
			    "invalid mode");
	expect_device_error("{\"u\": {\"type\": \"unix-char\", \"path\": \"/dev/x\", \"uid\": \"-1\"}}",
			    "invalid uid");
	expect_device_error("{\"a\": {\"type\": \"nic\", \"nictype\": \"p2p\", \"name\": \"eth0\"},"
			    " \"b\": {\"type\": \"nic\", \"nictype\": \"p2p\", \"name\": \"eth0\"}}",
			    "both use name \"eth0\"");
	expect_device_error("{\"a\": {\"type\": \"disk\", \"source\": \"/a\", \"path\": \"/m\"},"
			    " \"b\": {\"type\": \"disk\", \"source\": \"/b\", \"path\": \"/m\"}}",
			    "both use path \"/m\"");
	expect_device_error("{\"e\": {\"type\": \"nic\", \"nictype\": \"p2p\", \"name\": \"eth0\\nlxc.x = 1\"}}",
			    "single-line");
	expect_device_error("{\"a/b\": {\"type\": \"none\"}}", "invalid device name");
	expect_device_error("{\"e\": {\"type\": \"nic\", \"nictype\": \"p2p\", \"mtu\": 1500}}",
			    "single-line strings");
}

/* ---- rendering ------------------------------------------------------------------- */

static bool has_line(const char *text, const char *line)
{
	size_t len = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && (p[len] == '\n' || p[len] == '\0'))
			return true;
	return false;
}

#define assert_line(text, ...)                                                   \
	do {                                                                     \
		char _l[512];                                                    \
		snprintf(_l, sizeof(_l), __VA_ARGS__);                           \
		if (!has_line(text, _l))                                         \
			fail_msg("missing line \"%s\" in:\n%s", _l, text);       \
	} while (0)
#define assert_no_line(text, ...)                                                \
	do {                                                                     \
		char _l[512];                                                    \
		snprintf(_l, sizeof(_l), __VA_ARGS__);                           \
		if (has_line(text, _l))                                          \
			fail_msg("unexpected line \"%s\" in:\n%s", _l, text);    \
	} while (0)

static const char *cgkey(enum inst_cg_ctrl c, const char *v1, const char *v2)
{
	static char buf[4][96];
	static int i;
	char *b = buf[i++ % 4];

	snprintf(b, 96, inst_cg_v1(c) ? "lxc.cgroup.%s" : "lxc.cgroup2.%s", inst_cg_v1(c) ? v1 : v2);
	return b;
}

static char *render(const char *name, json_t *cfg, json_t *devs, const struct idmap *map,
		    cell_error *err)
{
	_cleanup_sb_ strbuf sb = { 0 };
	char rootfs[256];
	struct inst_lxc_spec spec = { .name = name, .rootfs = rootfs, .config = cfg, .devices = devs,
				      .idmap = map };

	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", tmpdir);
	if (inst_lxc_config_render(&spec, &sb, err) < 0)
		return NULL;
	return sb_steal(&sb);
}

static void test_render_privileged(void **state)
{
	json_error_t jerr;
	char srcdir[256], srcfile[256];
	_cleanup_json_ json_t *cfg = json_pack(
		"{ss ss ss ss ss ss ss ss}", "limits.cpu", "1", "limits.cpu.allowance",
		"25ms/100ms", "limits.memory", "512MiB", "limits.memory.swap", "false",
		"limits.processes", "100", "environment.FOO", "bar baz", "raw.lxc",
		"lxc.signal.halt = SIGUSR2", "volatile.eth0.hwaddr", "00:16:3e:01:02:03");
	_cleanup_json_ json_t *devs = NULL;
	_cleanup_free_ char *text = NULL, *dir = inst_lxc_dir("c1");
	cell_error err = { 0 };
	FILE *f;

	snprintf(srcdir, sizeof(srcdir), "%s/src dir", tmpdir);
	snprintf(srcfile, sizeof(srcfile), "%s/file", tmpdir);
	mkdir(srcdir, 0755);
	f = fopen(srcfile, "w");
	fclose(f);
	devs = json_pack_ex(&jerr, 0,
		"{s{ss ss ss} s{ss ss ss ss ss ss} s{ss ss ss} s{ss ss ss s:s} s{ss ss ss} s{ss ss ss ss}"
		" s{ss ss ss} s{ss ss ss}}",
		"root", "type", "disk", "path", "/", "pool", "default",
		"eth0", "type", "nic", "nictype", "bridged", "parent", "cellbr0", "name", "eth0", "mtu",
		"1400", "host_name", "vethtest0",
		"mv", "type", "nic", "nictype", "macvlan", "parent", "eth9",
		"data", "type", "disk", "source", srcdir, "path", "/mnt/my data", "readonly", "true",
		"one", "type", "disk", "source", srcfile, "path", "/etc/one",
		"opt", "type", "disk", "source", "/nonexistent/cell", "path", "/mnt/opt", "optional", "true",
		"null2", "type", "unix-char", "source", "/dev/null", "path", "/dev/null2",
		"pp", "type", "nic", "nictype", "p2p", "name", "p2p0");
	assert_non_null(devs);
	text = render("c1", cfg, devs, NULL, &err);
	if (!text)
		fail_msg("%s", err.msg);
	assert_line(text, "lxc.uts.name = c1");
	assert_line(text, "lxc.rootfs.path = dir:%s/rootfs", tmpdir);
	assert_line(text, "lxc.init.cmd = /sbin/init");
	assert_line(text, "lxc.log.file = %s/lxc.log", dir);
	assert_line(text, "lxc.console.logfile = %s/console.log", dir);
	assert_line(text, "lxc.cgroup.dir.container = %s.payload.c1", inst_cg_prefix());
	assert_line(text, "lxc.cgroup.dir.monitor = %s.monitor.c1", inst_cg_prefix());
	assert_line(text, "lxc.apparmor.profile = unconfined");
	assert_line(text, "lxc.autodev = 1");
	assert_line(text, "lxc.environment = container=lxc");
	assert_line(text, "lxc.environment = FOO=bar baz");
	assert_line(text, "lxc.mount.auto = proc:mixed sys:mixed cgroup:%s",
		    inst_cg_unified_only() ? "rw:force" : "mixed");
	assert_line(text, "lxc.seccomp.profile = %s/seccomp", dir);
	assert_no_line(text, "lxc.idmap = u 0 1000000 65536");
	/* privileged: device cgroup allow-list */
	assert_line(text, "%s = a", cgkey(CG_DEVICES, "devices.deny", "devices.deny"));
	assert_line(text, "%s = c 1:3 rwm", cgkey(CG_DEVICES, "devices.allow", "devices.allow"));
	/* limits */
	assert_line(text, "%s = %llu", cgkey(CG_MEMORY, "memory.limit_in_bytes", "memory.max"),
		    512ULL << 20);
	assert_line(text, "%s = %llu", cgkey(CG_MEMORY, "memory.memsw.limit_in_bytes", "memory.swap.max"),
		    inst_cg_v1(CG_MEMORY) ? 512ULL << 20 : 0ULL);
	assert_line(text, "%s = 0", cgkey(CG_CPUSET, "cpuset.cpus", "cpuset.cpus"));
	if (inst_cg_v1(CG_CPU)) {
		assert_line(text, "lxc.cgroup.cpu.cfs_quota_us = 25000");
		assert_line(text, "lxc.cgroup.cpu.cfs_period_us = 100000");
	} else {
		assert_line(text, "lxc.cgroup2.cpu.max = 25000 100000");
	}
	assert_line(text, "%s = 100", cgkey(CG_PIDS, "pids.max", "pids.max"));
	/* nics, in device-name order: eth0, mv, pp */
	assert_line(text, "lxc.net.0.type = veth");
	assert_line(text, "lxc.net.0.link = cellbr0");
	assert_line(text, "lxc.net.0.name = eth0");
	assert_line(text, "lxc.net.0.hwaddr = 00:16:3e:01:02:03");
	assert_line(text, "lxc.net.0.mtu = 1400");
	assert_line(text, "lxc.net.0.veth.pair = vethtest0");
	assert_line(text, "lxc.net.0.flags = up");
	assert_line(text, "lxc.net.1.type = macvlan");
	assert_line(text, "lxc.net.1.link = eth9");
	assert_line(text, "lxc.net.1.macvlan.mode = bridge");
	assert_line(text, "lxc.net.1.name = mv");
	assert_line(text, "lxc.net.2.type = veth");
	assert_line(text, "lxc.net.2.name = p2p0");
	assert_no_line(text, "lxc.net.2.link = ");
	/* disks: spaces escaped, ro, file targets, optional+missing skipped */
	assert_line(text, "lxc.mount.entry = %s/src\\040dir mnt/my\\040data none bind,create=dir,ro 0 0",
		    tmpdir);
	assert_line(text, "lxc.mount.entry = %s etc/one none bind,create=file 0 0", srcfile);
	assert_null(strstr(text, "/nonexistent/cell"));
	/* unix-char: a host node of ours bound in, and allowed */
	assert_line(text, "lxc.mount.entry = %s/devices/unix.null2 dev/null2 none bind,create=file 0 0",
		    dir);
	assert_line(text, "%s = c 1:3 rwm", cgkey(CG_DEVICES, "devices.allow", "devices.allow"));
	/* raw.lxc last */
	assert_non_null(strstr(text, "lxc.signal.halt = SIGUSR2\n"));
	assert_true(strstr(text, "lxc.signal.halt") > strstr(text, "lxc.net.2.flags"));
}

static void test_render_unprivileged(void **state)
{
	_cleanup_idmap_ struct idmap map = { 0 };
	struct idmap_entry e = { .isuid = true, .isgid = true, .hostid = 1000000, .nsid = 0,
				 .maprange = 65536 };
	_cleanup_json_ json_t *cfg = json_pack("{ss ss}", "limits.memory.enforce", "soft",
					       "limits.memory", "1GB");
	_cleanup_free_ char *text = NULL;
	cell_error err = { 0 };

	assert_int_equal(idmap_append(&map, &e), 0);
	text = render("u1", cfg, NULL, &map, &err);
	if (!text)
		fail_msg("%s", err.msg);
	assert_line(text, "lxc.idmap = u 0 1000000 65536");
	assert_line(text, "lxc.idmap = g 0 1000000 65536");
	assert_line(text, "lxc.mount.auto = proc:rw sys:rw cgroup:%s",
		    inst_cg_unified_only() ? "rw:force" : "mixed");
	assert_null(strstr(text, "devices.deny"));
	assert_null(strstr(text, "mqueue"));
	assert_line(text, "%s = 1000000000", cgkey(CG_MEMORY, "memory.soft_limit_in_bytes", "memory.low"));
	assert_null(strstr(text, "memory.limit_in_bytes"));
	assert_null(strstr(text, "lxc.net."));
	assert_null(strstr(text, "cpu.shares"));
}

static void test_render_nesting_and_cpuset(void **state)
{
	_cleanup_json_ json_t *cfg = json_pack("{ss ss ss}", "security.nesting", "true",
					       "limits.cpu", "0", "limits.cpu.allowance", "50%");
	_cleanup_free_ char *text = NULL;
	cell_error err = { 0 };

	/* "0" is a count of zero: rejected; "0-0" is the set {0}. */
	assert_null(render("n1", cfg, NULL, NULL, &err));
	assert_int_equal(err.status, 400);
	json_object_set_new(cfg, "limits.cpu", json_string("0-0"));
	text = render("n1", cfg, NULL, NULL, &err);
	if (!text)
		fail_msg("%s", err.msg);
	assert_line(text, "lxc.mount.auto = proc:rw sys:rw cgroup:rw:force");
	assert_line(text, "%s = 0-0", cgkey(CG_CPUSET, "cpuset.cpus", "cpuset.cpus"));
	if (inst_cg_v1(CG_CPU)) {
		assert_line(text, "lxc.cgroup.cpu.shares = 512");
		assert_line(text, "lxc.cgroup.cpu.cfs_quota_us = -1");
	}
}

static void test_render_errors(void **state)
{
	cell_error err = { 0 };
	_cleanup_json_ json_t *cfg = json_pack("{ss}", "limits.cpu", "1000-1001");
	_cleanup_json_ json_t *devs = json_pack("{s{ss ss ss}}", "d", "type", "disk", "source",
						"/nonexistent/cell", "path", "/mnt");
	struct inst_lxc_spec spec = { .name = "c1", .rootfs = "rootfs" };
	_cleanup_sb_ strbuf sb = { 0 };

	assert_null(render("c1", cfg, NULL, NULL, &err));
	assert_non_null(strstr(err.msg, "limits.cpu: CPU 1000 is not available"));
	assert_null(render("c1", NULL, devs, NULL, &err));
	assert_int_equal(err.status, 400);
	assert_non_null(strstr(err.msg, "device \"d\": source /nonexistent/cell"));
	json_object_set_new(json_object_get(devs, "d"), "source", json_string("/dev/null"));
	assert_null(render("c1", NULL, devs, NULL, &err));
	assert_non_null(strstr(err.msg, "not supported"));
	json_decref(devs);
	devs = json_pack("{s{ss ss}}", "u", "type", "unix-block", "source", "/dev/null");
	assert_null(render("c1", NULL, devs, NULL, &err));
	assert_non_null(strstr(err.msg, "not a block device"));
	assert_null(render("../etc", NULL, NULL, NULL, &err));
	assert_non_null(strstr(err.msg, "invalid instance name"));
	assert_null(render("c1\nlxc.x", NULL, NULL, NULL, &err));
	assert_int_equal(inst_lxc_config_render(&spec, &sb, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "rootfs must be an absolute path"));
}

static void test_render_deterministic(void **state)
{
	_cleanup_json_ json_t *d1 = json_pack("{s{ss ss} s{ss ss}}", "b", "type", "nic", "nictype",
					      "p2p", "a", "type", "nic", "network", "br0");
	_cleanup_json_ json_t *d2 = json_pack("{s{ss ss} s{ss ss}}", "a", "type", "nic", "network",
					      "br0", "b", "type", "nic", "nictype", "p2p");
	_cleanup_free_ char *t1 = NULL, *t2 = NULL;
	cell_error err = { 0 };

	t1 = render("c2", NULL, d1, NULL, &err);
	t2 = render("c2", NULL, d2, NULL, &err);
	assert_non_null(t1);
	assert_string_equal(t1, t2);
	assert_line(t1, "lxc.net.0.name = a");
	assert_line(t1, "lxc.net.0.link = br0");
	assert_line(t1, "lxc.net.1.name = b");
}

/* ---- live limits, id maps, small helpers -------------------------------------------- */

static const struct inst_cg_setting *find_setting(const struct inst_cg_setting *s, size_t n,
						  const char *file)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s[i].file, file) == 0)
			return &s[i];
	return NULL;
}

static void test_limits_reset(void **state)
{
	struct inst_cg_setting set[INST_CG_SETTINGS_MAX];
	size_t n;
	cell_error err = { 0 };
	_cleanup_json_ json_t *cfg = json_object();
	char cpus[256];

	if (!inst_cg_v1(CG_MEMORY) || !inst_cg_v1(CG_PIDS))
		skip();
	assert_int_equal(inst_conf_limits(cfg, false, set, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(inst_conf_limits(cfg, true, set, &n, &err), 0);
	assert_string_equal(find_setting(set, n, "memory.limit_in_bytes")->value, "-1");
	assert_string_equal(find_setting(set, n, "pids.max")->value, "max");
	inst_cg_cpus_available(cpus, sizeof(cpus));
	assert_string_equal(find_setting(set, n, "cpuset.cpus")->value, cpus);
	json_object_set_new(cfg, "limits.memory", json_string("64MiB"));
	json_object_set_new(cfg, "limits.memory.swap", json_string("false"));
	assert_int_equal(inst_conf_limits(cfg, true, set, &n, &err), 0);
	/* memsw is lifted before the memory limit moves, then set last. */
	size_t first = n, last = 0;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(set[i].file, "memory.memsw.limit_in_bytes") == 0) {
			if (first == n)
				first = i;
			last = i;
		}
	}
	if (inst_cg_root_has(CG_MEMORY, "memory.memsw.limit_in_bytes")) {
		assert_string_equal(set[first].value, "-1");
		assert_string_equal(set[last].value, "67108864");
		assert_true(first < last);
	}
}

static void test_idmap_for(void **state)
{
	_cleanup_idmap_ struct idmap base = { 0 }, used = { 0 }, out = { 0 };
	struct idmap_entry u = { .isuid = true, .hostid = 1000000, .maprange = 1000000000 };
	struct idmap_entry g = { .isgid = true, .hostid = 1000000, .maprange = 1000000000 };
	_cleanup_json_ json_t *cfg = json_object();
	cell_error err = { 0 };
	uint32_t host;

	idmap_append(&base, &u);
	idmap_append(&base, &g);
	assert_int_equal(inst_lxc_idmap_for(cfg, &base, &used, &out, &err), 0);
	assert_true(idmap_equal(&out, &base));
	json_object_set_new(cfg, "security.idmap.isolated", json_string("true"));
	assert_int_equal(inst_lxc_idmap_for(cfg, &base, &used, &out, &err), 0);
	assert_int_equal(idmap_shift_uid(&out, 0, &host), 0);
	assert_true(host >= 1000000 + 65536);
	assert_int_equal(idmap_shift_uid(&out, 65536, &host), -ENOENT);
	json_object_set_new(cfg, "security.idmap.base", json_string("2000000"));
	json_object_set_new(cfg, "security.idmap.size", json_string("100000"));
	assert_int_equal(inst_lxc_idmap_for(cfg, &base, &used, &out, &err), 0);
	assert_int_equal(idmap_shift_gid(&out, 99999, &host), 0);
	assert_int_equal(host, 2099999);
	json_object_set_new(cfg, "security.privileged", json_string("true"));
	assert_int_equal(inst_lxc_idmap_for(cfg, &base, &used, &out, &err), 0);
	assert_true(idmap_is_empty(&out));
}

static void test_helpers(void **state)
{
	char hw[18];
	_cleanup_json_ json_t *nic = json_pack("{ss}", "type", "nic");
	_cleanup_json_ json_t *root = json_pack("{ss ss}", "type", "disk", "path", "/");
	_cleanup_json_ json_t *unixc = json_pack("{ss}", "type", "unix-char");

	inst_lxc_random_hwaddr(hw);
	assert_int_equal(strlen(hw), 17);
	assert_memory_equal(hw, "00:16:3e:", 9);
	assert_true(inst_lxc_key_live("limits.memory"));
	assert_true(inst_lxc_key_live("limits.cpu.allowance"));
	assert_true(inst_lxc_key_live("user.foo"));
	assert_false(inst_lxc_key_live("raw.lxc"));
	assert_false(inst_lxc_key_live("security.privileged"));
	assert_true(inst_lxc_device_hotpluggable(nic));
	assert_false(inst_lxc_device_hotpluggable(root));
	assert_false(inst_lxc_device_hotpluggable(unixc));
	assert_true(inst_lxc_name_valid("c1"));
	assert_true(inst_lxc_name_valid("web-01"));
	assert_false(inst_lxc_name_valid("1c"));
	assert_false(inst_lxc_name_valid("-c"));
	assert_false(inst_lxc_name_valid("a_b"));
	assert_false(inst_lxc_name_valid(""));
	assert_false(inst_lxc_name_valid("a/b"));
	assert_string_equal(inst_status_name(INST_FROZEN), "Frozen");
	assert_string_equal(inst_status_name(INST_STOPPED), "Stopped");
}

/* ---- writing ------------------------------------------------------------------------- */

static void test_config_write(void **state)
{
	_cleanup_idmap_ struct idmap map = { 0 };
	struct idmap_entry e = { .isuid = true, .isgid = true, .hostid = 1000000, .maprange = 65536 };
	_cleanup_json_ json_t *devs = json_pack("{s{ss ss ss ss ss ss}}", "n", "type", "unix-char",
						"path", "/dev/mynull", "major", "1", "minor", "3",
						"uid", "5", "mode", "0640");
	char rootfs[256], path[512];
	struct inst_lxc_spec spec = { .name = "w1", .rootfs = rootfs, .devices = devs, .idmap = &map };
	_cleanup_free_ char *dir = inst_lxc_dir("w1");
	_cleanup_free_ char *text = NULL;
	cell_error err = { 0 };
	struct stat st;

	if (geteuid() != 0)
		skip();   /* mknod */
	idmap_append(&map, &e);
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", tmpdir);
	if (inst_lxc_config_write(&spec, &err) < 0)
		fail_msg("%s", err.msg);
	snprintf(path, sizeof(path), "%s/config", dir);
	assert_int_equal(util_read_file(path, &text, NULL, &err), 0);
	assert_line(text, "lxc.uts.name = w1");
	snprintf(path, sizeof(path), "%s/seccomp", dir);
	assert_int_equal(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/devices/unix.n", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(st.st_rdev, makedev(1, 3));
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_uid, 1000005);   /* shifted into the map */
	assert_int_equal(st.st_gid, 1000000);
	/* A second write replaces the nodes and the config atomically. */
	assert_int_equal(inst_lxc_config_write(&spec, &err), 0);
	assert_int_equal(inst_lxc_delete("w1", &err), 0);
	assert_int_equal(stat(dir, &st), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_bytes),
		cmocka_unit_test(test_parse_memory),
		cmocka_unit_test(test_validate_config_ok),
		cmocka_unit_test(test_validate_config_errors),
		cmocka_unit_test(test_validate_devices_ok),
		cmocka_unit_test(test_validate_devices_errors),
		cmocka_unit_test(test_render_privileged),
		cmocka_unit_test(test_render_unprivileged),
		cmocka_unit_test(test_render_nesting_and_cpuset),
		cmocka_unit_test(test_render_errors),
		cmocka_unit_test(test_render_deterministic),
		cmocka_unit_test(test_limits_reset),
		cmocka_unit_test(test_idmap_for),
		cmocka_unit_test(test_helpers),
		cmocka_unit_test(test_config_write),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
