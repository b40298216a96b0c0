/*
 * The container runtime on real busybox containers (root and liblxc needed;
 * skipped otherwise): start privileged and unprivileged, state, limits in
 * the cgroup files, bind-mount and unix-char devices, a nic on a test bridge,
 * live limits, hot-plug, freeze, stop --force, graceful shutdown, reboot in
 * place, a stop from inside seen by the monitor, reattach.
 *
 * Timings are printed ("# timing ..."), not asserted.  CELL_RT_BENCH=N starts
 * N extra containers to time state reads and measure per-container memory.
 *
 * This binary is also the `celld fork*` helper for itself: the runtime
 * spawns /proc/self/exe, which is this test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "daemon/fork.h"
#include "daemon/inst_cgroup.h"
#include "daemon/inst_lxc.h"

#define MAX_CT 256

static struct {
	char dir[64];          /* mkdtemp */
	char lxcpath[96];
	char bridge[16];
	char tag[8];           /* random, in every name */
	uv_loop_t loop;
	char *names[MAX_CT];
	size_t n;
	char stopped[MAX_CT][64];
	size_t nstopped;
	struct idmap map;      /* default map, for the unprivileged ones */
} rt;

/* ---- helpers ---------------------------------------------------------------------- */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

/* Output of a command run inside the container (tests only: lxc-attach). */
static char *attach(const char *name, const char *shell)
{
	char cmd[1024], buf[4096];
	size_t n;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "lxc-attach -P %s -n %s -- /bin/sh -c '%s' 2>&1", rt.lxcpath, name,
		 shell);
	p = popen(cmd, "r");
	if (!p)
		return strdup("");
	n = fread(buf, 1, sizeof(buf) - 1, p);
	pclose(p);
	buf[n] = '\0';
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	return strdup(buf);
}

static void on_stop(const char *name, void *data)
{
	if (rt.nstopped < MAX_CT)
		snprintf(rt.stopped[rt.nstopped++], sizeof(rt.stopped[0]), "%s", name);
}

static bool was_stopped(const char *name)
{
	for (size_t i = 0; i < rt.nstopped; i++)
		if (strcmp(rt.stopped[i], name) == 0)
			return true;
	return false;
}

static void on_timer(uv_timer_t *t) { *(bool *)t->data = true; }

/* Run the loop until the monitor reported `name` (or ms passed). */
static bool wait_stop_event(const char *name, int ms)
{
	uv_timer_t t;
	bool expired = false;

	uv_timer_init(&rt.loop, &t);
	t.data = &expired;
	uv_timer_start(&t, on_timer, (uint64_t)ms, 0);
	while (!was_stopped(name) && !expired)
		uv_run(&rt.loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&rt.loop, UV_RUN_NOWAIT);
	return was_stopped(name);
}

static void pump_loop(int ms)
{
	uv_timer_t t;
	bool expired = false;

	uv_timer_init(&rt.loop, &t);
	t.data = &expired;
	uv_timer_start(&t, on_timer, (uint64_t)ms, 0);
	while (!expired)
		uv_run(&rt.loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&rt.loop, UV_RUN_NOWAIT);
}

static const char *new_name(const char *base)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%s-%s", base, rt.tag);
	rt.names[rt.n] = strdup(buf);
	return rt.names[rt.n++];
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static void chown_tree(const char *dir, uid_t id)
{
	assert_int_equal(run("chown -R -h %u:%u %s", (unsigned)id, (unsigned)id, dir), 0);
}

/* A busybox system: init from /etc/inittab, a few applets.  `extra` lines
 * are appended to inittab. */
static char *make_rootfs(const char *name, uid_t owner, const char *extra)
{
	static const char *const applets[] = { "sh", "sleep", "cat", "ls", "poweroff", "reboot",
					       "id", "ip", "echo", "test", "env", "true", "mount",
					       "stat" };
	char *root = xasprintf("%s/rootfs-%s", rt.dir, name);
	char path[PATH_MAX], inittab[512];

	assert_int_equal(run("mkdir -p %s/bin %s/sbin %s/dev %s/proc %s/sys %s/tmp %s/etc %s/root "
			     "%s/mnt && cp /bin/busybox %s/bin/busybox",
			     root, root, root, root, root, root, root, root, root, root), 0);
	for (size_t i = 0; i < ARRAY_SIZE(applets); i++) {
		snprintf(path, sizeof(path), "%s/bin/%s", root, applets[i]);
		assert_int_equal(symlink("busybox", path), 0);
	}
	snprintf(path, sizeof(path), "%s/sbin/init", root);
	assert_int_equal(symlink("../bin/busybox", path), 0);
	snprintf(inittab, sizeof(inittab), "::respawn:/bin/sleep 1000000\n%s", extra ? extra : "");
	snprintf(path, sizeof(path), "%s/etc/inittab", root);
	write_text(path, inittab, 0644);
	if (owner)
		chown_tree(root, owner);
	return root;
}

static char *cg_file(enum inst_cg_ctrl c, const char *name, const char *file)
{
	char path[PATH_MAX], buf[256];

	if (inst_cg_payload_path(c, name, file, path, sizeof(path)) < 0 ||
	    inst_cg_read(path, buf, sizeof(buf)) < 0)
		return strdup("?");
	return strdup(buf);
}

static int64_t jint(json_t *o, const char *path1, const char *path2)
{
	json_t *v = json_object_get(o, path1);
	if (path2)
		v = json_object_get(v, path2);
	return json_integer_value(v);
}

static pid_t start_ct(const char *name, const char *rootfs, json_t *cfg, json_t *devs,
		      const struct idmap *map, double *ms)
{
	struct inst_lxc_spec spec = { .name = name, .rootfs = rootfs, .config = cfg, .devices = devs,
				      .idmap = map };
	cell_error err = { 0 };
	pid_t pid = 0;
	double t0 = now_ms();

	if (inst_lxc_start(&spec, &pid, &err) < 0)
		fail_msg("%s", err.msg);
	if (ms)
		*ms = now_ms() - t0;
	assert_true(pid > 0);
	return pid;
}

/* ---- fixture ------------------------------------------------------------------------ */

static bool runtime_usable(void)
{
	return geteuid() == 0 && access("/bin/busybox", X_OK) == 0 &&
	       access("/usr/bin/lxc-attach", X_OK) == 0 && access("/sys/fs/cgroup", F_OK) == 0;
}

static int setup(void **state)
{
	cell_error err = { 0 };
	char hex[7];

	if (!runtime_usable())
		return 0;
	/* No exec server here (it lives on celld's loop): helpers are exec'd
	 * and their pid is known at once. */
	setenv("CELL_EXEC_SERVER_IDLE_MS", "0", 1);
	util_random_hex(hex, 3);
	snprintf(rt.tag, sizeof(rt.tag), "%s", hex);
	snprintf(rt.dir, sizeof(rt.dir), "/tmp/cell-rt.XXXXXX");
	if (!mkdtemp(rt.dir) || chmod(rt.dir, 0755) < 0)
		return -1;
	snprintf(rt.lxcpath, sizeof(rt.lxcpath), "%s/containers", rt.dir);
	if (inst_lxc_init(rt.lxcpath, &err) < 0) {
		fprintf(stderr, "init: %s\n", err.msg);
		return -1;
	}
	if (idmap_default(NULL, NULL, NULL, NULL, &rt.map, &err) < 0)
		return -1;
	snprintf(rt.bridge, sizeof(rt.bridge), "cbr%s", hex);
	if (run("ip link add %s type bridge && ip link set %s up", rt.bridge, rt.bridge) != 0)
		return -1;
	uv_loop_init(&rt.loop);
	return inst_monitor_init(&rt.loop, on_stop, NULL);
}

static int teardown(void **state)
{
	cell_error err = { 0 };

	if (!rt.dir[0])
		return 0;
	for (size_t i = 0; i < rt.n; i++) {
		if (inst_lxc_stop(rt.names[i], &err) < 0)
			fprintf(stderr, "cleanup: %s\n", err.msg);
		free(rt.names[i]);
	}
	inst_monitor_shutdown();
	uv_run(&rt.loop, UV_RUN_NOWAIT);
	uv_loop_close(&rt.loop);
	if (rt.bridge[0])
		run("ip link del %s 2>/dev/null", rt.bridge);
	run("rm -rf %s", rt.dir);
	idmap_free(&rt.map);
	return 0;
}

#define NEED_RUNTIME()                                              \
	do {                                                        \
		if (!rt.dir[0])                                     \
			skip();                                     \
	} while (0)

/* ---- tests -------------------------------------------------------------------------- */

static void check_state(const char *name, pid_t pid, const char *nic)
{
	cell_error err = { 0 };
	_cleanup_json_ json_t *st = inst_lxc_state(name, &err);
	json_t *net, *eth;

	assert_non_null(st);
	assert_string_equal(json_string_value(json_object_get(st, "status")), "Running");
	assert_int_equal(jint(st, "status_code", NULL), 103);
	assert_int_equal(jint(st, "pid", NULL), pid);
	assert_true(jint(st, "processes", NULL) > 0);
	assert_true(jint(st, "memory", "usage") > 0);
	assert_true(jint(st, "memory", "usage_peak") >= jint(st, "memory", "usage"));
	assert_true(jint(st, "cpu", "usage") > 0);
	net = json_object_get(st, "network");
	assert_true(json_is_object(net));
	assert_non_null(json_object_get(net, "lo"));
	assert_string_equal(json_string_value(json_object_get(json_object_get(net, "lo"), "type")),
			    "loopback");
	if (!nic)
		return;
	eth = json_object_get(net, nic);
	if (!eth)
		fail_msg("no %s in %s", nic, json_dumps(net, 0));
	assert_string_equal(json_string_value(json_object_get(eth, "state")), "up");
	assert_int_equal(strlen(json_string_value(json_object_get(eth, "hwaddr"))), 17);
	assert_true(strlen(json_string_value(json_object_get(eth, "host_name"))) > 0);
	assert_string_equal(json_string_value(json_object_get(eth, "type")), "broadcast");
}

static void test_privileged(void **state)
{
	NEED_RUNTIME();
	const char *name = new_name("priv");
	_cleanup_free_ char *root = make_rootfs(name, 0, NULL);
	_cleanup_free_ char *share = xasprintf("%s/share", rt.dir), *hot = xasprintf("%s/hot", rt.dir);
	_cleanup_free_ char *file = xasprintf("%s/share/hello", rt.dir);
	_cleanup_free_ char *hotfile = xasprintf("%s/hot/file", rt.dir);
	_cleanup_json_ json_t *cfg = json_pack("{ss ss ss ss ss}", "limits.memory", "128MiB",
					       "limits.processes", "200", "limits.cpu", "1",
					       "environment.CELLTEST", "yes", "limits.cpu.allowance",
					       "25ms/100ms");
	_cleanup_json_ json_t *devs = NULL, *hotdisk = NULL, *hotnic = NULL;
	cell_error err = { 0 };
	char *s;
	double ms;
	pid_t pid;

	mkdir(share, 0755);
	mkdir(hot, 0755);
	write_text(file, "hi\n", 0644);
	write_text(hotfile, "hot\n", 0644);
	devs = json_pack("{s{ss ss ss} s{ss ss ss ss} s{ss ss ss ss}}",
			 "share", "type", "disk", "source", share, "path", "/mnt/share",
			 "nul", "type", "unix-char", "source", "/dev/null", "path", "/dev/nul2", "mode", "0666",
			 "eth0", "type", "nic", "nictype", "bridged", "parent", rt.bridge, "name", "eth0");
	pid = start_ct(name, root, cfg, devs, NULL, &ms);
	printf("# timing start privileged (3 devices): %.1f ms\n", ms);
	assert_int_equal(inst_lxc_status(name, NULL), INST_RUNNING);
	check_state(name, pid, "eth0");

	/* limits as the kernel sees them */
	if (inst_cg_v1(CG_MEMORY)) {
		s = cg_file(CG_MEMORY, name, "memory.limit_in_bytes");
		assert_string_equal(s, "134217728");
		free(s);
	}
	s = cg_file(CG_PIDS, name, "pids.max");
	assert_string_equal(s, "200");
	free(s);
	if (inst_cg_v1(CG_CPU)) {
		s = cg_file(CG_CPU, name, "cpu.cfs_quota_us");
		assert_string_equal(s, "25000");
		free(s);
	}
	s = cg_file(CG_CPUSET, name, inst_cg_v1(CG_CPUSET) ? "cpuset.cpus" : "cpuset.cpus");
	assert_string_equal(s, "0");
	free(s);

	/* devices inside */
	s = attach(name, "/bin/cat /mnt/share/hello");
	assert_string_equal(s, "hi");
	free(s);
	s = attach(name, "test -c /dev/nul2 && echo x > /dev/nul2 && echo ok");
	assert_string_equal(s, "ok");
	free(s);
	{   /* init's environment, read from the host */
		char envp[64], env[4096];
		int fd;
		ssize_t n;
		snprintf(envp, sizeof(envp), "/proc/%d/environ", (int)pid);
		fd = open(envp, O_RDONLY);
		n = fd >= 0 ? read(fd, env, sizeof(env) - 1) : -1;
		close(fd);
		assert_true(n > 0);
		for (ssize_t i = 0; i < n; i++)
			env[i] = env[i] ? env[i] : '\n';
		env[n] = '\0';
		assert_non_null(strstr(env, "CELLTEST=yes"));
		assert_non_null(strstr(env, "container=lxc"));
	}

	/* live limits */
	json_object_set_new(cfg, "limits.memory", json_string("256MiB"));
	json_object_set_new(cfg, "limits.processes", json_string("300"));
	json_object_del(cfg, "limits.cpu");
	json_object_set_new(cfg, "limits.cpu.allowance", json_string("50ms/100ms"));
	if (inst_lxc_set_limits(name, cfg, &err) < 0)
		fail_msg("%s", err.msg);
	if (inst_cg_v1(CG_CPU)) {
		s = cg_file(CG_CPU, name, "cpu.cfs_quota_us");
		assert_string_equal(s, "50000");
		free(s);
	}
	{   /* limits.cpu removed: every host CPU again */
		char cpus[256];
		inst_cg_cpus_available(cpus, sizeof(cpus));
		s = cg_file(CG_CPUSET, name, "cpuset.cpus");
		assert_string_equal(s, cpus);
		free(s);
	}
	if (inst_cg_v1(CG_MEMORY)) {
		s = cg_file(CG_MEMORY, name, "memory.limit_in_bytes");
		assert_string_equal(s, "268435456");
		free(s);
	}
	s = cg_file(CG_PIDS, name, "pids.max");
	assert_string_equal(s, "300");
	free(s);
	json_object_del(cfg, "limits.processes");
	assert_int_equal(inst_lxc_set_limits(name, cfg, &err), 0);
	s = cg_file(CG_PIDS, name, "pids.max");
	assert_string_equal(s, "max");
	free(s);

	/* hot-plug a disk and a nic, then take them out again */
	hotdisk = json_pack("{ss ss ss ss}", "type", "disk", "source", hot, "path", "/mnt/hot/deep",
			    "readonly", "true");
	if (inst_lxc_device_add(name, "hot", hotdisk, NULL, &err) < 0)
		fail_msg("%s", err.msg);
	s = attach(name, "cat /mnt/hot/deep/file; { echo y > /mnt/hot/deep/new; } 2>/dev/null || echo ro");
	assert_string_equal(s, "hot\nro");
	free(s);
	assert_int_equal(inst_lxc_device_remove(name, "hot", hotdisk, &err), 0);
	s = attach(name, "ls /mnt/hot/deep");
	assert_string_equal(s, "");
	free(s);
	hotnic = json_pack("{ss ss ss ss ss ss}", "type", "nic", "nictype", "bridged", "parent",
			   rt.bridge, "name", "eth1", "hwaddr", "00:16:3e:12:34:56", "mtu", "1400");
	if (inst_lxc_device_add(name, "eth1", hotnic, NULL, &err) < 0)
		fail_msg("%s", err.msg);
	{
		_cleanup_json_ json_t *st = inst_lxc_state(name, &err);
		json_t *e1 = json_object_get(json_object_get(st, "network"), "eth1");
		assert_non_null(e1);
		assert_string_equal(json_string_value(json_object_get(e1, "hwaddr")), "00:16:3e:12:34:56");
		assert_int_equal(jint(e1, "mtu", NULL), 1400);
		assert_true(strlen(json_string_value(json_object_get(e1, "host_name"))) > 0);
	}
	/* the same name twice is a clean error */
	assert_true(inst_lxc_device_add(name, "eth1", hotnic, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "File exists"));
	assert_int_equal(inst_lxc_device_remove(name, "eth1", hotnic, &err), 0);
	{
		_cleanup_json_ json_t *st = inst_lxc_state(name, &err);
		assert_null(json_object_get(json_object_get(st, "network"), "eth1"));
	}

	{   /* a macvlan made straight inside */
		_cleanup_json_ json_t *mv = json_pack("{ss ss ss ss}", "type", "nic", "nictype",
						      "macvlan", "parent", rt.bridge, "name", "mv0");
		_cleanup_json_ json_t *st = NULL;
		if (inst_lxc_device_add(name, "mv0", mv, NULL, &err) < 0)
			fail_msg("%s", err.msg);
		st = inst_lxc_state(name, &err);
		assert_non_null(json_object_get(json_object_get(st, "network"), "mv0"));
		assert_int_equal(inst_lxc_device_remove(name, "mv0", mv, &err), 0);
		json_decref(st);
		st = inst_lxc_state(name, &err);
		assert_null(json_object_get(json_object_get(st, "network"), "mv0"));
	}

	/* freeze */
	if (inst_lxc_freeze(name, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(inst_lxc_status(name, NULL), INST_FROZEN);
	assert_int_equal(inst_lxc_unfreeze(name, &err), 0);
	assert_int_equal(inst_lxc_status(name, NULL), INST_RUNNING);

	/* start while running is a 409 */
	{
		struct inst_lxc_spec spec = { .name = name, .rootfs = root, .config = cfg };
		assert_true(inst_lxc_start(&spec, NULL, &err) < 0);
		assert_int_equal(err.status, 409);
	}

	/* stop --force, and the monitor reports it */
	{
		double t0 = now_ms();
		assert_int_equal(inst_lxc_stop(name, &err), 0);
		printf("# timing stop --force privileged: %.1f ms\n", now_ms() - t0);
	}
	assert_int_equal(inst_lxc_status(name, NULL), INST_STOPPED);
	assert_true(wait_stop_event(name, 2000));
	{
		_cleanup_json_ json_t *st = inst_lxc_state(name, &err);
		assert_string_equal(json_string_value(json_object_get(st, "status")), "Stopped");
		assert_true(json_is_null(json_object_get(st, "network")));
	}
}

static void test_unprivileged(void **state)
{
	NEED_RUNTIME();
	const char *name = new_name("unpriv");
	uint32_t root_uid;
	_cleanup_free_ char *root = NULL, *share = xasprintf("%s/u share", rt.dir);
	_cleanup_free_ char *file = xasprintf("%s/u share/hello", rt.dir);
	_cleanup_json_ json_t *cfg = json_pack("{ss ss}", "limits.memory", "64MiB",
					       "limits.processes", "100");
	_cleanup_json_ json_t *devs = NULL;
	cell_error err = { 0 };
	char path[64], *s;
	double ms;
	pid_t pid;

	assert_int_equal(idmap_shift_uid(&rt.map, 0, &root_uid), 0);
	root = make_rootfs(name, root_uid, NULL);
	mkdir(share, 0755);
	write_text(file, "uhi\n", 0644);
	devs = json_pack("{s{ss ss ss} s{ss ss ss} s{ss ss ss ss} s{ss ss ss ss ss}}", "share",
			 "type", "disk", "source", share, "path", "/mnt/my share", "eth0", "type", "nic",
			 "nictype", "bridged", "parent", rt.bridge, "mv", "type", "nic", "nictype",
			 "macvlan", "parent", rt.bridge, "name", "eth1", "nul", "type", "unix-char",
			 "path", "/dev/nul3", "major", "1", "minor", "3", "mode", "0666");
	pid = start_ct(name, root, cfg, devs, &rt.map, &ms);
	printf("# timing start unprivileged (2 devices): %.1f ms\n", ms);
	check_state(name, pid, "eth0");
	{   /* the macvlan: no host end */
		_cleanup_json_ json_t *st = inst_lxc_state(name, &err);
		json_t *e1 = json_object_get(json_object_get(st, "network"), "eth1");
		assert_non_null(e1);
		assert_string_equal(json_string_value(json_object_get(e1, "host_name")), "");
		assert_string_equal(json_string_value(json_object_get(e1, "state")), "up");
	}
	snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
	{
		_cleanup_free_ char *map = NULL;
		assert_int_equal(util_read_file(path, &map, NULL, &err), 0);
		char want[64];
		snprintf(want, sizeof(want), "%u", root_uid);
		assert_non_null(strstr(map, want));
	}
	s = attach(name, "id -u; cat \"/mnt/my share/hello\"; echo x > /dev/nul3 && echo ok");
	assert_string_equal(s, "0\nuhi\nok");
	free(s);
	s = cg_file(CG_PIDS, name, "pids.max");
	assert_string_equal(s, "100");
	free(s);
	{   /* hot-plug into a mount namespace owned by the container's userns */
		_cleanup_json_ json_t *hot = json_pack("{ss ss ss}", "type", "disk", "source", share,
						       "path", "/srv/hot");
		double t0 = now_ms();
		if (inst_lxc_device_add(name, "hot", hot, NULL, &err) < 0)
			fail_msg("%s", err.msg);
		printf("# timing hot-plug disk (forkmount): %.1f ms\n", now_ms() - t0);
		s = attach(name, "cat /srv/hot/hello; stat -c %u /srv");
		assert_string_equal(s, "uhi\n0");   /* created dirs belong to the container root */
		free(s);
		assert_int_equal(inst_lxc_device_remove(name, "hot", hot, &err), 0);
		s = attach(name, "ls /srv/hot");
		assert_string_equal(s, "");
		free(s);
	}
	{
		double t0 = now_ms();
		assert_int_equal(inst_lxc_stop(name, &err), 0);
		printf("# timing stop --force unprivileged: %.1f ms\n", now_ms() - t0);
	}
	assert_true(wait_stop_event(name, 2000));
	/* stopping a stopped container is a no-op */
	assert_int_equal(inst_lxc_stop(name, &err), 0);
}

/* poweroff inside: the monitor must see it promptly. */
static void test_self_stop(void **state)
{
	NEED_RUNTIME();
	const char *name = new_name("self");
	_cleanup_free_ char *root = make_rootfs(name, 0, NULL);
	_cleanup_free_ char *out = NULL;
	_cleanup_close_ int initfd = -1;
	struct pollfd p;
	double t_exit, t_event;
	pid_t pid;

	pid = start_ct(name, root, NULL, NULL, NULL, NULL);
	/* busybox init ignores poweroff until its handlers are set */
	pump_loop(300);
	initfd = pidfd_open(pid, 0);
	assert_true(initfd >= 0);
	out = attach(name, "/bin/poweroff");
	p = (struct pollfd){ .fd = initfd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 10000), 1);   /* busybox init takes ~1 s to kill all */
	t_exit = now_ms();
	assert_true(wait_stop_event(name, 5000));
	t_event = now_ms();
	printf("# timing stop from inside: event %.1f ms after init exited\n", t_event - t_exit);
	assert_true(t_event - t_exit < 1000);
	assert_int_equal(inst_lxc_status(name, NULL), INST_STOPPED);
}

/* Graceful shutdown with the halt signal busybox knows, reboot in place. */
static void test_shutdown_reboot(void **state)
{
	NEED_RUNTIME();
	const char *name = new_name("grace");
	_cleanup_free_ char *root = make_rootfs(name, 0, NULL);
	_cleanup_json_ json_t *cfg = json_pack("{ss}", "raw.lxc",
					       "lxc.signal.halt = SIGUSR2\nlxc.signal.reboot = SIGTERM\n");
	cell_error err = { 0 };
	pid_t pid, pid2 = 0;
	double t0;

	pid = start_ct(name, root, cfg, NULL, NULL, NULL);
	/* busybox init drops signals that arrive before it has set its handlers */
	pump_loop(300);
	if (inst_lxc_reboot(name, &err) < 0)
		fail_msg("%s", err.msg);
	t0 = now_ms();
	while (now_ms() - t0 < 10000) {
		if (inst_lxc_status(name, &pid2) == INST_RUNNING && pid2 != pid)
			break;
		pump_loop(20);
	}
	printf("# timing reboot (busybox init): %.0f ms\n", now_ms() - t0);
	assert_true(pid2 > 0 && pid2 != pid);
	pump_loop(100);
	assert_false(was_stopped(name));   /* a reboot is not a stop */
	t0 = now_ms();
	if (inst_lxc_shutdown(name, 10, &err) < 0)
		fail_msg("%s", err.msg);
	printf("# timing graceful shutdown (busybox init): %.0f ms\n", now_ms() - t0);
	assert_int_equal(inst_lxc_status(name, NULL), INST_STOPPED);
	assert_true(wait_stop_event(name, 2000));
}

/* The runtime keeps no per-container state: a fresh monitor finds the
 * running containers again, with the same init, and still sees them stop. */
static void test_reattach(void **state)
{
	NEED_RUNTIME();
	const char *a = new_name("rea"), *b = new_name("reb");
	_cleanup_free_ char *ra = make_rootfs(a, 0, NULL), *rb = make_rootfs(b, 0, NULL);
	struct inst_running *list = NULL;
	size_t n = 0;
	cell_error err = { 0 };
	pid_t pa, pb;
	bool seen_a = false, seen_b = false;

	pa = start_ct(a, ra, NULL, NULL, NULL, NULL);
	pb = start_ct(b, rb, NULL, NULL, NULL, NULL);
	pump_loop(20);
	inst_monitor_shutdown();   /* as if celld went away */
	uv_run(&rt.loop, UV_RUN_NOWAIT);
	assert_int_equal(inst_monitor_count(), 0);
	assert_int_equal(inst_monitor_init(&rt.loop, on_stop, NULL), 0);
	assert_int_equal(inst_lxc_list_running(&list, &n, &err), 0);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(list[i].name, a) == 0) {
			seen_a = true;
			assert_int_equal(list[i].pid, pa);
			assert_int_equal(list[i].status, INST_RUNNING);
		}
		if (strcmp(list[i].name, b) == 0) {
			seen_b = true;
			assert_int_equal(list[i].pid, pb);
		}
	}
	inst_lxc_running_free(list, n);
	assert_true(seen_a && seen_b);
	pump_loop(20);
	assert_true(inst_monitor_count() >= 2);
	assert_int_equal(inst_lxc_stop(a, &err), 0);
	assert_true(wait_stop_event(a, 2000));
	assert_int_equal(inst_lxc_stop(b, &err), 0);
	assert_true(wait_stop_event(b, 2000));
}

/* One exec through `celld forkexec`, as exec_io drives it. */
struct exec_result {
	char out[512];
	int status;
	pid_t cmd;
};

static void exec_once(const char *name, char *const *argv, bool go, int signal_it,
		      struct exec_result *r)
{
	char *const env[] = { "PATH=/bin:/sbin", "FOO=bar", NULL };
	int out[2], gate[2], reply[2];
	cell_error err = { 0 };
	char line[128] = "";
	pid_t helper;
	ssize_t n, off = 0;

	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(gate, O_CLOEXEC), 0);
	assert_int_equal(pipe2(reply, O_CLOEXEC), 0);
	struct inst_lxc_exec e = { .argv = argv, .env = env, .cwd = "/tmp", .stdio = { -1, out[1], out[1] },
				   .gate = gate[0], .reply = reply[1] };
	if (inst_lxc_exec_spawn(name, &e, &helper, &err) < 0)
		fail_msg("%s", err.msg);
	close(out[1]);
	close(gate[0]);
	close(reply[1]);
	n = read(reply[0], line, sizeof(line) - 1);
	close(reply[0]);
	assert_true(n > 3);
	line[n] = '\0';
	assert_memory_equal(line, "ok ", 3);
	r->cmd = (pid_t)atoi(line + 3);
	assert_true(r->cmd > 0);
	if (go)
		assert_int_equal(write(gate[1], "g", 1), 1);
	close(gate[1]);
	if (signal_it)
		kill(r->cmd, signal_it);
	while ((n = read(out[0], r->out + off, sizeof(r->out) - 1 - (size_t)off)) > 0)
		off += n;
	r->out[off] = '\0';
	close(out[0]);
	assert_int_equal(waitpid(helper, &r->status, 0), helper);
}

static void test_exec(void **state)
{
	NEED_RUNTIME();
	const char *name = new_name("exec");
	_cleanup_free_ char *root = make_rootfs(name, 0, NULL);
	char *const hello[] = { "sh", "-c", "echo hi $FOO; pwd; exit 3", NULL };
	char *const sleeper[] = { "sleep", "100", NULL };
	char *const missing[] = { "/nope", NULL };
	struct exec_result r;
	cell_error err = { 0 };
	double t0;

	start_ct(name, root, NULL, NULL, NULL, NULL);
	t0 = now_ms();
	exec_once(name, hello, true, 0, &r);
	printf("# timing exec of a shell through forkexec: %.1f ms\n", now_ms() - t0);
	assert_string_equal(r.out, "hi bar\n/tmp\n");
	assert_true(WIFEXITED(r.status));
	assert_int_equal(WEXITSTATUS(r.status), 3);
	exec_once(name, hello, false, 0, &r);   /* gate closed: never runs */
	assert_string_equal(r.out, "");
	assert_int_equal(WEXITSTATUS(r.status), 125);
	exec_once(name, sleeper, true, SIGTERM, &r);
	assert_true(WIFSIGNALED(r.status));
	assert_int_equal(WTERMSIG(r.status), SIGTERM);
	exec_once(name, missing, true, 0, &r);
	assert_int_equal(WEXITSTATUS(r.status), 127);
	/* a frozen container stops too (liblxc thaws it after the kill) */
	assert_int_equal(inst_lxc_freeze(name, &err), 0);
	t0 = now_ms();
	assert_int_equal(inst_lxc_stop(name, &err), 0);
	printf("# timing stop --force of a frozen container: %.1f ms\n", now_ms() - t0);
	assert_int_equal(inst_lxc_status(name, NULL), INST_STOPPED);
	{
		struct inst_lxc_exec e = { .argv = hello, .stdio = { -1, -1, -1 }, .gate = -1, .reply = -1 };
		pid_t h;
		assert_true(inst_lxc_exec_spawn(name, &e, &h, &err) < 0);
		assert_int_equal(err.status, 409);
	}
}

static void test_start_failure(void **state)
{
	NEED_RUNTIME();
	const char *name = new_name("fail");
	struct inst_lxc_spec spec = { .name = name, .rootfs = "/nonexistent/cell-rootfs" };
	cell_error err = { 0 };

	assert_true(inst_lxc_start(&spec, NULL, &err) < 0);
	printf("# start failure message: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "start "));
	assert_non_null(strstr(err.msg, name));
	assert_int_equal(inst_lxc_status(name, NULL), INST_STOPPED);
	assert_int_equal(inst_lxc_delete(name, &err), 0);
	{   /* liblxc leaves the monitor cgroup of a failed start; we do not */
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "/sys/fs/cgroup/pids/%s.monitor.%s", inst_cg_prefix(), name);
		assert_int_equal(access(path, F_OK), -1);
	}
}

static long rss_kb(void)
{
	char buf[4096], *p;
	int fd = open("/proc/self/status", O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, "VmRSS:");
	return p ? strtol(p + 6, NULL, 10) : -1;
}

/* Launch timing, state reads across many containers, memory per watch. */
static void test_bench(void **state)
{
	NEED_RUNTIME();
	const char *env = getenv("CELL_RT_BENCH");
	int count = env ? atoi(env) : 5;
	const char *names[MAX_CT];
	double starts[MAX_CT], t0, total = 0;
	long rss0, rss1;
	cell_error err = { 0 };
	_cleanup_free_ char *shared = NULL;

	if (count < 1 || count > MAX_CT - 16)
		count = 5;
	shared = make_rootfs("bench", 0, NULL);
	rss0 = rss_kb();
	for (int i = 0; i < count; i++) {
		char base[16];
		snprintf(base, sizeof(base), "b%d", i);
		names[i] = new_name(base);
		/* dir-backed "create" is a copy in storage; here every container
		 * shares one rootfs, so this times config + start. */
		start_ct(names[i], shared, NULL, NULL, NULL, &starts[i]);
	}
	pump_loop(50);
	rss1 = rss_kb();
	for (int i = 0; i < count; i++)
		total += starts[i];
	{
		double sorted[MAX_CT];
		memcpy(sorted, starts, sizeof(double) * (size_t)count);
		for (int i = 0; i < count; i++)
			for (int j = i + 1; j < count; j++)
				if (sorted[j] < sorted[i]) {
					double t = sorted[i];
					sorted[i] = sorted[j];
					sorted[j] = t;
				}
		printf("# timing start x%d: median %.1f ms, mean %.1f ms\n", count, sorted[count / 2],
		       total / count);
	}
	t0 = now_ms();
	for (int r = 0; r < 10; r++) {
		for (int i = 0; i < count; i++) {
			json_t *st = inst_lxc_state(names[i], &err);
			assert_non_null(st);
			json_decref(st);
		}
	}
	printf("# timing state of %d running containers: %.2f ms per full pass (%.1f us each)\n",
	       count, (now_ms() - t0) / 10, (now_ms() - t0) * 1000 / 10 / count);
	t0 = now_ms();
	for (int r = 0; r < 100; r++)
		for (int i = 0; i < count; i++)
			inst_lxc_status(names[i], NULL);
	printf("# timing status only: %.1f us per container\n", (now_ms() - t0) * 1000 / 100 / count);
	printf("# memory: RSS %ld kB before, %ld kB with %d watched containers (monitor entries: %zu)\n",
	       rss0, rss1, count, inst_monitor_count());
	for (int i = 0; i < count; i++) {
		t0 = now_ms();
		assert_int_equal(inst_lxc_stop(names[i], &err), 0);
		starts[i] = now_ms() - t0;
	}
	total = 0;
	for (int i = 0; i < count; i++)
		total += starts[i];
	printf("# timing stop --force x%d: mean %.1f ms\n", count, total / count);
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strncmp(argv[1], "fork", 4))   /* the runtime's helper is us */
		return fork_main(argc, argv);

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_privileged),
		cmocka_unit_test(test_unprivileged),
		cmocka_unit_test(test_self_stop),
		cmocka_unit_test(test_shutdown_reboot),
		cmocka_unit_test(test_reattach),
		cmocka_unit_test(test_exec),
		cmocka_unit_test(test_start_failure),
		cmocka_unit_test(test_bench),
	};
	setvbuf(stdout, NULL, _IOLBF, 0);
	return cmocka_run_group_tests(tests, setup, teardown);
}
