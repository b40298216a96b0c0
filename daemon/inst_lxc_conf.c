/*
 * Instance config validation and liblxc config generation.
 *
 * Every value that ends up on an lxc config line is checked for line breaks
 * here (raw.lxc excepted, it is config text by design), so a client cannot
 * smuggle keys into the generated file.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "daemon/inst_internal.h"
#include "daemon/inst_lxc.h"

#define CPU_MAX 1024

/* ---- small parsers -------------------------------------------------------- */

const char *inst_json_str(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s && *s ? s : NULL;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "true", "1", "yes", "on" };
	static const char *const no[] = { "false", "0", "no", "off" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return *out = true, 0;
		if (strcasecmp(v, no[i]) == 0)
			return *out = false, 0;
	}
	return -EINVAL;
}

bool inst_json_bool(json_t *obj, const char *key, bool def)
{
	const char *v = inst_json_str(obj, key);
	bool b;

	return v && parse_bool(v, &b) == 0 ? b : def;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

int inst_lxc_parse_bytes(const char *s, uint64_t *out)
{
	static const struct { const char *sfx; uint64_t mult; } units[] = {
		{ "", 1 }, { "B", 1 }, { "kB", 1000ULL }, { "KB", 1000ULL },
		{ "MB", 1000ULL * 1000 }, { "GB", 1000ULL * 1000 * 1000 },
		{ "TB", 1000ULL * 1000 * 1000 * 1000 }, { "PB", 1000ULL * 1000 * 1000 * 1000 * 1000 },
		{ "EB", 1000ULL * 1000 * 1000 * 1000 * 1000 * 1000 },
		{ "KiB", 1ULL << 10 }, { "MiB", 1ULL << 20 }, { "GiB", 1ULL << 30 },
		{ "TiB", 1ULL << 40 }, { "PiB", 1ULL << 50 }, { "EiB", 1ULL << 60 },
	};
	const char *p = s;
	uint64_t v = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++)
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *p - '0', &v))
			return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++)
		if (strcmp(p, units[i].sfx) == 0)
			return __builtin_mul_overflow(v, units[i].mult, out) ? -EINVAL : 0;
	return -EINVAL;
}

static uint64_t host_ram(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	return pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
}

int inst_lxc_parse_memory(const char *s, uint64_t *out)
{
	size_t len = s ? strlen(s) : 0;
	uint64_t pct;

	if (len > 1 && s[len - 1] == '%') {
		_cleanup_free_ char *num = strndup(s, len - 1);
		if (!num || parse_u64(num, &pct) < 0 || pct == 0 || pct > 100)
			return -EINVAL;
		*out = host_ram() / 100 * pct;
		return 0;
	}
	return inst_lxc_parse_bytes(s, out) < 0 || *out == 0 ? -EINVAL : 0;
}

/* "0-3,6" into a bitmap; -EINVAL on syntax or CPUs >= CPU_MAX. */
static int parse_cpuset(const char *s, uint64_t set[CPU_MAX / 64])
{
	_cleanup_free_ char *copy = strdup(s);
	char *save = NULL;

	memset(set, 0, CPU_MAX / 8);
	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *dash = strchr(tok, '-');
		uint64_t a, b;
		if (dash)
			*dash = '\0';
		if (parse_u64(tok, &a) < 0 || parse_u64(dash ? dash + 1 : tok, &b) < 0 || a > b ||
		    b >= CPU_MAX)
			return -EINVAL;
		for (uint64_t c = a; c <= b; c++)
			set[c / 64] |= 1ULL << (c % 64);
	}
	return s[0] && s[strlen(s) - 1] != ',' ? 0 : -EINVAL;
}

static bool cpu_is_set(const uint64_t *set, unsigned c) { return set[c / 64] >> (c % 64) & 1; }

/* limits.cpu: LXD reads a plain number as a count, anything with ',' or
 * '-' as a set. */
static bool cpu_is_count(const char *v) { return !strpbrk(v, ",-"); }

/* ---- key validation --------------------------------------------------------- */

typedef int (*check_fn)(const char *key, const char *v, cell_error *err);

static bool has_linebreak(const char *v) { return strpbrk(v, "\n\r") != NULL; }

static int chk_line(const char *key, const char *v, cell_error *err)
{
	if (has_linebreak(v))
		return cell_err(err, 400, EINVAL, "%s: value must be a single line", key);
	return 0;
}

static int chk_text(const char *key, const char *v, cell_error *err) { return 0; }

static int chk_bool(const char *key, const char *v, cell_error *err)
{
	bool b;
	if (parse_bool(v, &b) < 0)
		return cell_err(err, 400, EINVAL, "%s: invalid boolean \"%s\"", key, v);
	return 0;
}

static int chk_uint(const char *key, const char *v, cell_error *err)
{
	uint64_t n;
	if (parse_u64(v, &n) < 0)
		return cell_err(err, 400, EINVAL, "%s: invalid integer \"%s\"", key, v);
	return 0;
}

static int chk_u32(const char *key, const char *v, cell_error *err)
{
	uint64_t n;
	if (parse_u64(v, &n) < 0 || n > UINT32_MAX)
		return cell_err(err, 400, EINVAL, "%s: invalid integer \"%s\"", key, v);
	return 0;
}

static int chk_prio(const char *key, const char *v, cell_error *err)
{
	uint64_t n;
	if (parse_u64(v, &n) < 0 || n > 10)
		return cell_err(err, 400, EINVAL, "%s: must be an integer from 0 to 10, not \"%s\"",
				key, v);
	return 0;
}

static int chk_processes(const char *key, const char *v, cell_error *err)
{
	uint64_t n;
	if (parse_u64(v, &n) < 0 || n == 0 || n > INT32_MAX)
		return cell_err(err, 400, EINVAL, "%s: must be a positive integer, not \"%s\"",
				key, v);
	return 0;
}

static int chk_cpu(const char *key, const char *v, cell_error *err)
{
	uint64_t set[CPU_MAX / 64], n;

	if (cpu_is_count(v)) {
		if (parse_u64(v, &n) < 0 || n == 0 || n > CPU_MAX)
			return cell_err(err, 400, EINVAL,
					"%s: must be a CPU count (\"2\") or set (\"0-1,3\"), not \"%s\"",
					key, v);
		return 0;
	}
	if (parse_cpuset(v, set) < 0)
		return cell_err(err, 400, EINVAL, "%s: invalid CPU set \"%s\"", key, v);
	return 0;
}

/* "<digits>ms" in microseconds. */
static int parse_ms(const char *s, size_t len, uint64_t *us)
{
	char num[16];

	if (len < 3 || len - 2 >= sizeof(num) || strncmp(s + len - 2, "ms", 2) != 0)
		return -EINVAL;
	memcpy(num, s, len - 2);
	num[len - 2] = '\0';
	if (parse_u64(num, us) < 0 || *us == 0 || *us > 1000ULL * 1000)
		return -EINVAL;
	*us *= 1000;
	return 0;
}

/* "50%" or "25ms/100ms", as LXD. */
static int parse_allowance(const char *v, uint64_t *pct, uint64_t *quota_us, uint64_t *period_us)
{
	size_t len = strlen(v);
	const char *slash = strchr(v, '/');
	char num[16];

	*pct = *quota_us = *period_us = 0;
	if (len > 1 && len < sizeof(num) && v[len - 1] == '%') {
		memcpy(num, v, len - 1);
		num[len - 1] = '\0';
		return parse_u64(num, pct) < 0 || *pct == 0 ? -EINVAL : 0;
	}
	if (!slash || parse_ms(v, (size_t)(slash - v), quota_us) < 0 ||
	    parse_ms(slash + 1, strlen(slash + 1), period_us) < 0 || *period_us > 1000000)
		return -EINVAL;
	return 0;
}

static int chk_allowance(const char *key, const char *v, cell_error *err)
{
	uint64_t a, b, c;
	if (parse_allowance(v, &a, &b, &c) < 0)
		return cell_err(err, 400, EINVAL,
				"%s: must be a percentage (\"50%%\") or a time slice (\"25ms/100ms\"), not \"%s\"",
				key, v);
	return 0;
}

static int chk_memory(const char *key, const char *v, cell_error *err)
{
	uint64_t n;
	if (inst_lxc_parse_memory(v, &n) < 0)
		return cell_err(err, 400, EINVAL,
				"%s: must be a size (\"512MiB\", \"1GB\") or a percentage of host memory (\"50%%\"), not \"%s\"",
				key, v);
	return 0;
}

static int chk_bytes(const char *key, const char *v, cell_error *err)
{
	uint64_t n;
	if (inst_lxc_parse_bytes(v, &n) < 0)
		return cell_err(err, 400, EINVAL, "%s: invalid size \"%s\"", key, v);
	return 0;
}

static int chk_enforce(const char *key, const char *v, cell_error *err)
{
	if (strcmp(v, "hard") && strcmp(v, "soft"))
		return cell_err(err, 400, EINVAL, "%s: must be \"hard\" or \"soft\", not \"%s\"",
				key, v);
	return 0;
}

/* raw.lxc lines that would break what celld relies on (state found by
 * cgroup name, its own logs, the id map it shifted the rootfs for). */
static const char *const raw_lxc_denied[] = {
	"lxc.log.file", "lxc.logfile", "lxc.log.syslog", "lxc.syslog", "lxc.ephemeral",
	"lxc.rootfs.path", "lxc.rootfs", "lxc.uts.name", "lxc.utsname", "lxc.console.logfile",
	"lxc.cgroup.dir", "lxc.idmap", "lxc.id_map",
};

static int raw_lxc_line(const char *line, size_t len, size_t no, cell_error *err)
{
	char key[128];
	size_t k = 0;

	while (len && isspace((unsigned char)*line))
		line++, len--;
	if (!len || *line == '#')
		return 0;
	while (k < len && k < sizeof(key) - 1 && !isspace((unsigned char)line[k]) && line[k] != '=')
		key[k] = line[k], k++;
	key[k] = '\0';
	if (!memchr(line, '=', len) || strncmp(key, "lxc.", 4) != 0)
		return cell_err(err, 400, EINVAL, "raw.lxc: line %zu: expected \"lxc.<key> = <value>\"",
				no);
	for (size_t i = 0; i < ARRAY_SIZE(raw_lxc_denied); i++) {
		size_t dl = strlen(raw_lxc_denied[i]);
		if (strncmp(key, raw_lxc_denied[i], dl) == 0 && (key[dl] == '\0' || key[dl] == '.'))
			return cell_err(err, 400, EINVAL, "raw.lxc: line %zu: %s may not be set", no,
					key);
	}
	return 0;
}

static int chk_raw_lxc(const char *key, const char *v, cell_error *err)
{
	size_t no = 1;

	for (const char *p = v; *p; no++) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (len && p[len - 1] == '\r')
			len--;
		if (raw_lxc_line(p, len, no, err) < 0)
			return -EINVAL;
		p = nl ? nl + 1 : p + strlen(p);
	}
	return 0;
}

static const struct { const char *key; check_fn check; } config_keys[] = {
	{ "boot.autostart", chk_bool },            { "boot.autostart.delay", chk_uint },
	{ "boot.autostart.priority", chk_uint },   { "boot.host_shutdown_timeout", chk_uint },
	{ "boot.stop.priority", chk_uint },        { "cluster.evacuate", chk_line },
	{ "limits.cpu", chk_cpu },                 { "limits.cpu.allowance", chk_allowance },
	{ "limits.cpu.priority", chk_prio },       { "limits.disk.priority", chk_prio },
	{ "limits.memory", chk_memory },           { "limits.memory.enforce", chk_enforce },
	{ "limits.memory.swap", chk_bool },        { "limits.memory.swap.priority", chk_prio },
	{ "limits.network.priority", chk_prio },   { "limits.processes", chk_processes },
	{ "linux.kernel_modules", chk_line },      { "migration.incremental.memory", chk_bool },
	{ "migration.incremental.memory.goal", chk_uint },
	{ "migration.incremental.memory.iterations", chk_uint },
	{ "raw.apparmor", chk_text },              { "raw.idmap", chk_text },
	{ "raw.lxc", chk_raw_lxc },                { "raw.seccomp", chk_text },
	{ "security.devlxd", chk_bool },           { "security.devlxd.images", chk_bool },
	{ "security.idmap.base", chk_u32 },        { "security.idmap.isolated", chk_bool },
	{ "security.idmap.size", chk_u32 },        { "security.nesting", chk_bool },
	{ "security.privileged", chk_bool },       { "security.protection.delete", chk_bool },
	{ "security.protection.shift", chk_bool }, { "security.syscalls.allow", chk_text },
	{ "security.syscalls.deny", chk_text },    { "security.syscalls.deny_compat", chk_bool },
	{ "security.syscalls.deny_default", chk_bool },
	{ "security.syscalls.intercept.mknod", chk_bool },
	{ "security.syscalls.intercept.mount", chk_bool },
	{ "security.syscalls.intercept.setxattr", chk_bool },
	{ "snapshots.expiry", chk_line },          { "snapshots.pattern", chk_line },
	{ "snapshots.schedule", chk_line },        { "snapshots.schedule.stopped", chk_bool },
};

static bool env_name_valid(const char *n)
{
	if (!*n || isdigit((unsigned char)*n))
		return false;
	for (; *n; n++)
		if (!isalnum((unsigned char)*n) && *n != '_')
			return false;
	return true;
}

static int validate_key(const char *key, json_t *val, cell_error *err)
{
	const char *v = json_string_value(val);

	if (!v || strlen(v) != json_string_length(val))
		return cell_err(err, 400, EINVAL, "%s: config values must be strings", key);
	if (str_has_prefix(key, "user.") || str_has_prefix(key, "image.") ||
	    str_has_prefix(key, "volatile."))
		return 0;
	if (str_has_prefix(key, "environment.")) {
		if (!env_name_valid(key + 12))
			return cell_err(err, 400, EINVAL, "%s: invalid environment variable name", key);
		return chk_line(key, v, err);
	}
	for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++)
		if (strcmp(key, config_keys[i].key) == 0)
			return *v ? config_keys[i].check(key, v, err) : 0;
	return cell_err(err, 400, EINVAL, "unknown configuration key \"%s\"", key);
}

/* ---- device validation ------------------------------------------------------ */

static const char *const nic_keys[] = {
	"type", "nictype", "network", "parent", "name", "hwaddr", "mtu", "host_name",
	"ipv4.address", "ipv6.address", "ipv4.routes", "ipv6.routes", "vlan", "boot.priority",
	"security.mac_filtering", "security.ipv4_filtering", "security.ipv6_filtering",
	"limits.ingress", "limits.egress", "limits.max", "queue.tx.length", NULL,
};
static const char *const disk_keys[] = {
	"type", "path", "source", "pool", "size", "size.state", "readonly", "optional",
	"required", "recursive", "propagation", "shift", "limits.read", "limits.write",
	"limits.max", "boot.priority", "raw.mount.options", NULL,
};
static const char *const unix_keys[] = {
	"type", "path", "source", "major", "minor", "uid", "gid", "mode", "required", NULL,
};
static const char *const none_keys[] = { "type", NULL };

static bool in_list(const char *const *l, const char *s)
{
	for (; *l; l++)
		if (strcmp(*l, s) == 0)
			return true;
	return false;
}

static bool ifname_valid(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > 15 || strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
		return false;
	for (; *n; n++)
		if (*n == '/' || *n == ':' || isspace((unsigned char)*n) || !isprint((unsigned char)*n))
			return false;
	return true;
}

static bool hwaddr_valid(const char *h)
{
	unsigned b[6];
	char tail;

	return strlen(h) == 17 &&
	       sscanf(h, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
		      &tail) == 6 &&
	       h[2] == ':' && !(b[0] & 1);   /* multicast bit: not a unicast address */
}

/* Absolute, no "." or ".." components: mount targets stay in the rootfs. */
static bool abs_path_clean(const char *p)
{
	if (p[0] != '/')
		return false;
	for (const char *c = p; *c;) {
		while (*c == '/')
			c++;
		size_t l = strcspn(c, "/");
		if ((l == 1 && c[0] == '.') || (l == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c += l;
	}
	return true;
}

static int chk_dev_bool(const char *devname, json_t *dev, const char *key, cell_error *err)
{
	const char *v = inst_json_str(dev, key);
	bool b;

	if (v && parse_bool(v, &b) < 0)
		return cell_err(err, 400, EINVAL, "device \"%s\": %s: invalid boolean \"%s\"",
				devname, key, v);
	return 0;
}

static int validate_nic(const char *devname, json_t *dev, cell_error *err)
{
	const char *nictype = inst_json_str(dev, "nictype"), *net = inst_json_str(dev, "network");
	const char *v;
	uint64_t mtu;

	if (!nictype && !net)
		return cell_err(err, 400, EINVAL, "device \"%s\": nic needs \"nictype\" or \"network\"",
				devname);
	if (nictype && net)
		return cell_err(err, 400, EINVAL,
				"device \"%s\": \"nictype\" and \"network\" are mutually exclusive",
				devname);
	if (nictype && strcmp(nictype, "bridged") && strcmp(nictype, "macvlan") &&
	    strcmp(nictype, "p2p"))
		return cell_err(err, 400, EINVAL,
				"device \"%s\": nictype \"%s\" is not supported (bridged, macvlan, p2p)",
				devname, nictype);
	v = inst_json_str(dev, "parent");
	if (nictype && strcmp(nictype, "p2p") && !v)
		return cell_err(err, 400, EINVAL, "device \"%s\": %s nic needs \"parent\"", devname,
				nictype);
	if ((v && !ifname_valid(v)) || (net && !ifname_valid(net)))
		return cell_err(err, 400, EINVAL, "device \"%s\": invalid parent \"%s\"", devname,
				v ? v : net);
	if ((v = inst_json_str(dev, "name")) && !ifname_valid(v))
		return cell_err(err, 400, EINVAL, "device \"%s\": invalid interface name \"%s\"",
				devname, v);
	if ((v = inst_json_str(dev, "host_name")) && !ifname_valid(v))
		return cell_err(err, 400, EINVAL, "device \"%s\": invalid host_name \"%s\"", devname, v);
	if ((v = inst_json_str(dev, "host_name")) && nictype && strcmp(nictype, "macvlan") == 0)
		return cell_err(err, 400, EINVAL, "device \"%s\": macvlan nics have no host_name",
				devname);
	if ((v = inst_json_str(dev, "hwaddr")) && !hwaddr_valid(v))
		return cell_err(err, 400, EINVAL, "device \"%s\": invalid hwaddr \"%s\"", devname, v);
	if ((v = inst_json_str(dev, "mtu")) && (parse_u64(v, &mtu) < 0 || mtu < 68 || mtu > 65535))
		return cell_err(err, 400, EINVAL, "device \"%s\": mtu must be 68-65535, not \"%s\"",
				devname, v);
	return 0;
}

static int validate_disk(const char *devname, json_t *dev, cell_error *err)
{
	const char *path = inst_json_str(dev, "path"), *src = inst_json_str(dev, "source");
	const char *pool = inst_json_str(dev, "pool"), *v;
	static const char *const bools[] = { "readonly", "optional", "required", "recursive",
					     "shift" };
	static const char *const props[] = { "private", "shared", "slave", "unbindable",
					     "rprivate", "rshared", "rslave", "runbindable", NULL };

	if (!path || !abs_path_clean(path))
		return cell_err(err, 400, EINVAL,
				"device \"%s\": disk needs an absolute \"path\" without \".\" or \"..\"",
				devname);
	for (size_t i = 0; i < ARRAY_SIZE(bools); i++)
		if (chk_dev_bool(devname, dev, bools[i], err) < 0)
			return -EINVAL;
	if (inst_json_bool(dev, "shift", false))
		return cell_err(err, 400, EINVAL, "device \"%s\": shift is not supported", devname);
	if ((v = inst_json_str(dev, "propagation")) && !in_list(props, v))
		return cell_err(err, 400, EINVAL, "device \"%s\": invalid propagation \"%s\"",
				devname, v);
	if (strcmp(path, "/") == 0) {
		if (!pool)
			return cell_err(err, 400, EINVAL, "device \"%s\": the root disk needs \"pool\"",
					devname);
		if (src)
			return cell_err(err, 400, EINVAL,
					"device \"%s\": the root disk cannot have a \"source\"", devname);
		if ((v = inst_json_str(dev, "size")) && chk_bytes("size", v, err) < 0)
			return cell_err_wrap(err, -EINVAL, "device \"%s\"", devname);
		return 0;
	}
	if (!src)
		return cell_err(err, 400, EINVAL, "device \"%s\": disk needs \"source\"", devname);
	if (pool ? strchr(src, '/') != NULL : src[0] != '/')
		return cell_err(err, 400, EINVAL,
				"device \"%s\": source must be an absolute host path, or a volume name with \"pool\"",
				devname);
	if (inst_json_str(dev, "size"))
		return cell_err(err, 400, EINVAL, "device \"%s\": only the root disk has a size",
				devname);
	return 0;
}

static int chk_dev_num(const char *devname, json_t *dev, const char *key, uint64_t max, int base,
		       cell_error *err)
{
	const char *v = inst_json_str(dev, key);
	char *end;
	unsigned long long n;

	if (!v)
		return 0;
	errno = 0;
	n = strtoull(v, &end, base);
	if (!isdigit((unsigned char)*v) || errno || *end || n > max)
		return cell_err(err, 400, EINVAL, "device \"%s\": invalid %s \"%s\"", devname, key, v);
	return 0;
}

static int validate_unix(const char *devname, json_t *dev, cell_error *err)
{
	const char *path = inst_json_str(dev, "path"), *src = inst_json_str(dev, "source");

	if (!path && !src)
		return cell_err(err, 400, EINVAL, "device \"%s\": needs \"source\" or \"path\"",
				devname);
	if ((path && !abs_path_clean(path)) || (src && src[0] != '/'))
		return cell_err(err, 400, EINVAL, "device \"%s\": paths must be absolute", devname);
	if (!inst_json_str(dev, "major") != !inst_json_str(dev, "minor"))
		return cell_err(err, 400, EINVAL, "device \"%s\": give both major and minor", devname);
	if (chk_dev_num(devname, dev, "major", 4095, 10, err) < 0 ||
	    chk_dev_num(devname, dev, "minor", 1048575, 10, err) < 0 ||
	    chk_dev_num(devname, dev, "uid", UINT32_MAX - 1, 10, err) < 0 ||
	    chk_dev_num(devname, dev, "gid", UINT32_MAX - 1, 10, err) < 0 ||
	    chk_dev_num(devname, dev, "mode", 07777, 8, err) < 0 ||
	    chk_dev_bool(devname, dev, "required", err) < 0)
		return -EINVAL;
	return 0;
}

static int validate_device(const char *devname, json_t *dev, cell_error *err)
{
	const char *type, *key;
	const char *const *keys;
	json_t *val;

	if (!*devname || strlen(devname) > 64 || strchr(devname, '/') || has_linebreak(devname) ||
	    strcmp(devname, ".") == 0 || strcmp(devname, "..") == 0)
		return cell_err(err, 400, EINVAL, "invalid device name \"%s\"", devname);
	if (!json_is_object(dev))
		return cell_err(err, 400, EINVAL, "device \"%s\": must be an object", devname);
	json_object_foreach(dev, key, val) {
		const char *v = json_string_value(val);
		if (!v || strlen(v) != json_string_length(val) || has_linebreak(v))
			return cell_err(err, 400, EINVAL,
					"device \"%s\": %s: values must be single-line strings",
					devname, key);
	}
	type = inst_json_str(dev, "type");
	if (!type)
		return cell_err(err, 400, EINVAL, "device \"%s\": missing \"type\"", devname);
	if (strcmp(type, "nic") == 0)
		keys = nic_keys;
	else if (strcmp(type, "disk") == 0)
		keys = disk_keys;
	else if (strcmp(type, "unix-char") == 0 || strcmp(type, "unix-block") == 0)
		keys = unix_keys;
	else if (strcmp(type, "none") == 0)
		keys = none_keys;
	else
		return cell_err(err, 400, EINVAL, "device \"%s\": type \"%s\" is not supported",
				devname, type);
	json_object_foreach(dev, key, val)
		if (!in_list(keys, key))
			return cell_err(err, 400, EINVAL, "device \"%s\": invalid %s option \"%s\"",
					devname, type, key);
	if (strcmp(type, "nic") == 0)
		return validate_nic(devname, dev, err);
	if (strcmp(type, "disk") == 0)
		return validate_disk(devname, dev, err);
	if (keys == unix_keys)
		return validate_unix(devname, dev, err);
	return 0;
}

/* Two nics with one name or two disks on one path cannot both be set up. */
static int validate_device_clashes(json_t *devices, cell_error *err)
{
	const char *n1, *n2;
	json_t *d1, *d2;

	json_object_foreach(devices, n1, d1) {
		const char *t1 = inst_json_str(d1, "type");
		const char *k = t1 && strcmp(t1, "nic") == 0 ? "name" : "path";
		const char *v1 = inst_json_str(d1, k);
		if (!t1 || strcmp(t1, "none") == 0 || !v1)
			continue;
		json_object_foreach(devices, n2, d2) {
			const char *t2 = inst_json_str(d2, "type"), *v2 = inst_json_str(d2, k);
			if (d2 == d1)
				break;
			if (t2 && v2 && strcmp(t1, t2) == 0 && strcmp(v1, v2) == 0)
				return cell_err(err, 400, EINVAL,
						"devices \"%s\" and \"%s\" both use %s \"%s\"", n2, n1,
						k, v1);
		}
	}
	return 0;
}

int inst_lxc_validate(json_t *config, json_t *devices, cell_error *err)
{
	const char *key;
	json_t *val;

	if (config && !json_is_object(config))
		return cell_err(err, 400, EINVAL, "config must be an object");
	if (devices && !json_is_object(devices))
		return cell_err(err, 400, EINVAL, "devices must be an object");
	json_object_foreach(config, key, val)
		if (validate_key(key, val, err) < 0)
			return -EINVAL;
	json_object_foreach(devices, key, val)
		if (validate_device(key, val, err) < 0)
			return -EINVAL;
	return devices ? validate_device_clashes(devices, err) : 0;
}

bool inst_lxc_key_live(const char *key)
{
	return str_has_prefix(key, "limits.cpu") || str_has_prefix(key, "limits.memory") ||
	       strcmp(key, "limits.processes") == 0 || str_has_prefix(key, "user.") ||
	       str_has_prefix(key, "image.") || str_has_prefix(key, "volatile.") ||
	       str_has_prefix(key, "boot.") || str_has_prefix(key, "snapshots.") ||
	       str_has_prefix(key, "security.protection.");
}

bool inst_conf_is_root_disk(json_t *dev)
{
	const char *t = inst_json_str(dev, "type"), *p = inst_json_str(dev, "path");
	return t && p && strcmp(t, "disk") == 0 && strcmp(p, "/") == 0;
}

bool inst_lxc_device_hotpluggable(json_t *dev)
{
	const char *t = inst_json_str(dev, "type");
	return t && (strcmp(t, "nic") == 0 || strcmp(t, "none") == 0 ||
		     (strcmp(t, "disk") == 0 && !inst_conf_is_root_disk(dev)));
}

/* ---- id maps and hwaddrs ------------------------------------------------------ */

static int idmap_copy(const struct idmap *from, struct idmap *to)
{
	for (size_t i = 0; from && i < from->n; i++)
		if (idmap_append(to, &from->entries[i]) < 0)
			return -ENOMEM;
	return 0;
}

int inst_lxc_idmap_for(json_t *config, const struct idmap *base, const struct idmap *used,
		       struct idmap *out, cell_error *err)
{
	_cleanup_idmap_ struct idmap m = { 0 };
	const char *v;
	uint64_t size = IDMAP_ISOLATED_SIZE, start;

	if (inst_json_bool(config, "security.privileged", false)) {
		idmap_free(out);
		return 0;
	}
	if (!inst_json_bool(config, "security.idmap.isolated", false)) {
		if (idmap_copy(base, &m) < 0)
			return cell_err(err, 500, ENOMEM, "idmap: out of memory");
	} else {
		if ((v = inst_json_str(config, "security.idmap.size")) &&
		    (parse_u64(v, &size) < 0 || size == 0 || size > UINT32_MAX))
			return cell_err(err, 400, EINVAL, "security.idmap.size: invalid \"%s\"", v);
		if ((v = inst_json_str(config, "security.idmap.base"))) {
			struct idmap_entry e = { .isuid = true, .isgid = true, .nsid = 0,
						 .maprange = (uint32_t)size };
			if (parse_u64(v, &start) < 0 || start + size > UINT32_MAX)
				return cell_err(err, 400, EINVAL, "security.idmap.base: invalid \"%s\"", v);
			e.hostid = (uint32_t)start;
			if (idmap_append(&m, &e) < 0)
				return cell_err(err, 500, ENOMEM, "idmap: out of memory");
		} else if (idmap_alloc_isolated(base, used, (uint32_t)size, &m, err) < 0) {
			return -ENOSPC;
		}
	}
	idmap_free(out);
	*out = m;
	m = (struct idmap){ 0 };
	return 0;
}

void inst_lxc_random_hwaddr(char out[18])
{
	char hex[7];

	if (util_random_hex(hex, 3) < 0)
		snprintf(hex, sizeof(hex), "%06x", (unsigned)(util_now_ms() & 0xffffff));
	snprintf(out, 18, "00:16:3e:%.2s:%.2s:%.2s", hex, hex + 2, hex + 4);
}

/* ---- limits --------------------------------------------------------------------- */

/* Picks the v1 or v2 file for a controller; NULL when the host lacks it. */
static const char *cg_file(enum inst_cg_ctrl c, const char *v1, const char *v2)
{
	if (inst_cg_v1(c))
		return v1;
	return inst_cg_v2(c) ? v2 : NULL;
}

static int add_setting(struct inst_cg_setting *out, size_t *n, enum inst_cg_ctrl c,
		       const char *v1, const char *v2, const char *key, cell_error *err,
		       const char *fmt, ...) __attribute__((format(printf, 8, 9)));

static int add_setting(struct inst_cg_setting *out, size_t *n, enum inst_cg_ctrl c,
		       const char *v1, const char *v2, const char *key, cell_error *err,
		       const char *fmt, ...)
{
	const char *file = cg_file(c, v1, v2);
	va_list ap;

	if (!file) {
		if (!key)
			return 0;   /* a reset of something the host cannot limit anyway */
		return cell_err(err, 400, EOPNOTSUPP, "%s: the host has no cgroup controller for it",
				key);
	}
	if (*n >= INST_CG_SETTINGS_MAX)
		return cell_err(err, 500, E2BIG, "too many cgroup settings");
	out[*n].ctrl = c;
	out[*n].file = file;
	va_start(ap, fmt);
	vsnprintf(out[*n].value, sizeof(out[*n].value), fmt, ap);
	va_end(ap);
	(*n)++;
	return 0;
}

static bool memsw_supported(void)
{
	static int cached = -1;

	/* The root cgroup shows memsw files only with swap accounting on. */
	if (cached < 0)
		cached = inst_cg_v1(CG_MEMORY) ? inst_cg_root_has(CG_MEMORY, "memory.memsw.limit_in_bytes")
					       : inst_cg_v2(CG_MEMORY);
	return cached;
}

static int limits_memory(json_t *config, bool reset, struct inst_cg_setting *out, size_t *n,
			 cell_error *err)
{
	const char *v = inst_json_str(config, "limits.memory");
	const char *enforce = inst_json_str(config, "limits.memory.enforce");
	bool soft = enforce && strcmp(enforce, "soft") == 0;
	bool swap = inst_json_bool(config, "limits.memory.swap", true);
	const char *prio = inst_json_str(config, "limits.memory.swap.priority");
	uint64_t lim = 0, p = 10;
	int rc = 0;

	if (v && inst_lxc_parse_memory(v, &lim) < 0)
		return cell_err(err, 400, EINVAL, "limits.memory: invalid \"%s\"", v);
	if (reset && memsw_supported())   /* lift it first so the limit can move freely */
		rc |= add_setting(out, n, CG_MEMORY, "memory.memsw.limit_in_bytes", "memory.swap.max",
				  NULL, err, "%s", inst_cg_v1(CG_MEMORY) ? "-1" : "max");
	if (lim && !soft) {
		rc |= add_setting(out, n, CG_MEMORY, "memory.limit_in_bytes", "memory.max",
				  "limits.memory", err, "%" PRIu64, lim);
		/* LXD keeps the soft limit 10% under the hard one so reclaim starts early. */
		rc |= add_setting(out, n, CG_MEMORY, "memory.soft_limit_in_bytes", "memory.high",
				  "limits.memory", err, "%" PRIu64, lim / 10 * 9);
		if (!swap && memsw_supported())
			rc |= add_setting(out, n, CG_MEMORY, "memory.memsw.limit_in_bytes",
					  "memory.swap.max", "limits.memory.swap", err, "%" PRIu64,
					  inst_cg_v1(CG_MEMORY) ? lim : 0);
	} else if (lim) {
		if (reset)
			rc |= add_setting(out, n, CG_MEMORY, "memory.limit_in_bytes", "memory.max",
					  NULL, err, "%s", inst_cg_v1(CG_MEMORY) ? "-1" : "max");
		rc |= add_setting(out, n, CG_MEMORY, "memory.soft_limit_in_bytes", "memory.low",
				  "limits.memory", err, "%" PRIu64, lim);
	} else if (reset) {
		rc |= add_setting(out, n, CG_MEMORY, "memory.limit_in_bytes", "memory.max", NULL, err,
				  "%s", inst_cg_v1(CG_MEMORY) ? "-1" : "max");
		rc |= add_setting(out, n, CG_MEMORY, "memory.soft_limit_in_bytes", "memory.high",
				  NULL, err, "%s", inst_cg_v1(CG_MEMORY) ? "-1" : "max");
	}
	if (prio)
		parse_u64(prio, &p);
	/* swappiness is v1 only; LXD: 0 without swap, else 60 - 10 + priority. */
	if (inst_cg_v1(CG_MEMORY) && (!swap || prio || reset))
		rc |= add_setting(out, n, CG_MEMORY, "memory.swappiness", NULL, NULL, err, "%u",
				  swap ? (unsigned)(50 + p) : 0u);
	return rc ? -EINVAL : 0;
}

static int cpus_for(const char *v, char *buf, size_t len, cell_error *err)
{
	uint64_t avail[CPU_MAX / 64], want[CPU_MAX / 64], count = 0;
	char host[256];
	size_t off = 0;

	if (inst_cg_cpus_available(host, sizeof(host)) < 0 || parse_cpuset(host, avail) < 0)
		return cell_err(err, 500, EIO, "limits.cpu: cannot read the host's CPUs");
	if (!v) {
		snprintf(buf, len, "%s", host);
		return 0;
	}
	if (!cpu_is_count(v)) {
		parse_cpuset(v, want);
		for (unsigned c = 0; c < CPU_MAX; c++)
			if (cpu_is_set(want, c) && !cpu_is_set(avail, c))
				return cell_err(err, 400, EINVAL,
						"limits.cpu: CPU %u is not available (host has %s)", c,
						host);
		snprintf(buf, len, "%s", v);
		return 0;
	}
	/* A count pins the first N usable CPUs (all of them when N is larger). */
	parse_u64(v, &count);
	buf[0] = '\0';
	for (unsigned c = 0; c < CPU_MAX && count; c++) {
		if (!cpu_is_set(avail, c))
			continue;
		off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%u", off ? "," : "", c);
		count--;
	}
	return off < len ? 0 : cell_err(err, 400, E2BIG, "limits.cpu: too many CPUs");
}

static int limits_cpu(json_t *config, bool reset, struct inst_cg_setting *out, size_t *n,
		      cell_error *err)
{
	const char *cpus = inst_json_str(config, "limits.cpu");
	const char *allow = inst_json_str(config, "limits.cpu.allowance");
	const char *prio = inst_json_str(config, "limits.cpu.priority");
	uint64_t pct = 0, quota = 0, period = 0, p = 10;
	int64_t shares;
	char set[512];
	int rc = 0;
	bool v1 = inst_cg_v1(CG_CPU);
	int64_t max_shares = v1 ? 1024 : 100;

	if (cpus || reset) {
		if (cpus_for(cpus, set, sizeof(set), err) < 0)
			return -EINVAL;
		rc |= add_setting(out, n, CG_CPUSET, "cpuset.cpus", "cpuset.cpus",
				  cpus ? "limits.cpu" : NULL, err, "%s", set);
	}
	if (!allow && !prio && !reset)
		return rc ? -EINVAL : 0;
	if (allow && parse_allowance(allow, &pct, &quota, &period) < 0)
		return cell_err(err, 400, EINVAL, "limits.cpu.allowance: invalid \"%s\"", allow);
	if (prio)
		parse_u64(prio, &p);
	/* As LXD: a percentage is a share under contention (soft), a time slice
	 * a hard CFS quota; the priority lowers the share. */
	shares = pct ? max_shares * (int64_t)pct / 100 : max_shares;
	shares -= 10 - (int64_t)p;
	if (shares < 2)
		shares = 2;
	rc |= add_setting(out, n, CG_CPU, "cpu.shares", "cpu.weight",
			  allow || prio ? "limits.cpu.allowance" : NULL, err, "%" PRId64, shares);
	if (v1) {
		rc |= add_setting(out, n, CG_CPU, "cpu.cfs_period_us", NULL, NULL, err, "%" PRIu64,
				  quota ? period : 100000);
		rc |= add_setting(out, n, CG_CPU, "cpu.cfs_quota_us", NULL,
				  quota ? "limits.cpu.allowance" : NULL, err, "%" PRId64,
				  quota ? (int64_t)quota : -1);
	} else if (quota || reset) {
		char q[32];
		snprintf(q, sizeof(q), quota ? "%" PRIu64 : "max", quota);
		rc |= add_setting(out, n, CG_CPU, NULL, "cpu.max", quota ? "limits.cpu.allowance" : NULL,
				  err, "%s %" PRIu64, q, quota ? period : 100000);
	}
	return rc ? -EINVAL : 0;
}

int inst_conf_limits(json_t *config, bool reset, struct inst_cg_setting *out, size_t *n,
		     cell_error *err)
{
	const char *procs = inst_json_str(config, "limits.processes");

	*n = 0;
	if (limits_memory(config, reset, out, n, err) < 0 || limits_cpu(config, reset, out, n, err) < 0)
		return -EINVAL;
	if (procs || reset)
		return add_setting(out, n, CG_PIDS, "pids.max", "pids.max",
				   procs ? "limits.processes" : NULL, err, "%s", procs ? procs : "max");
	return 0;
}

/* ---- device resolution ------------------------------------------------------------ */

static const char *dev_or_volatile(json_t *dev, json_t *config, const char *devname,
				   const char *key)
{
	char vkey[128];
	const char *v = inst_json_str(dev, key);

	if (v)
		return v;
	snprintf(vkey, sizeof(vkey), "volatile.%s.%s", devname, key);
	return inst_json_str(config, vkey);
}

int inst_conf_nic(const char *devname, json_t *dev, json_t *config, int idx,
		  struct inst_nic *out, cell_error *err)
{
	const char *nictype = inst_json_str(dev, "nictype"), *name = inst_json_str(dev, "name");
	const char *hw = dev_or_volatile(dev, config, devname, "hwaddr");
	const char *host = dev_or_volatile(dev, config, devname, "host_name");
	const char *mtu = inst_json_str(dev, "mtu");

	memset(out, 0, sizeof(*out));
	if (!nictype)   /* "network": a managed network is a bridge of that name */
		nictype = "bridged";
	out->macvlan = strcmp(nictype, "macvlan") == 0;
	out->bridged = strcmp(nictype, "bridged") == 0;
	out->parent = inst_json_str(dev, "parent");
	if (!out->parent)
		out->parent = inst_json_str(dev, "network");
	if (!name && ifname_valid(devname))
		name = devname;
	if (name)
		snprintf(out->name, sizeof(out->name), "%s", name);
	else
		snprintf(out->name, sizeof(out->name), "eth%d", idx);
	if (hw && !hwaddr_valid(hw))
		return cell_err(err, 400, EINVAL, "device \"%s\": invalid hwaddr \"%s\"", devname, hw);
	if (host && !out->macvlan && !ifname_valid(host))
		return cell_err(err, 400, EINVAL, "device \"%s\": invalid host_name \"%s\"", devname,
				host);
	snprintf(out->hwaddr, sizeof(out->hwaddr), "%s", hw ? hw : "");
	snprintf(out->host_name, sizeof(out->host_name), "%s", host && !out->macvlan ? host : "");
	out->mtu = mtu ? (unsigned)strtoul(mtu, NULL, 10) : 0;
	return 0;
}

int inst_conf_disk(const char *devname, json_t *dev, struct inst_disk *out, cell_error *err)
{
	struct stat st;

	memset(out, 0, sizeof(*out));
	out->source = inst_json_str(dev, "source");
	out->path = inst_json_str(dev, "path");
	out->readonly = inst_json_bool(dev, "readonly", false);
	out->recursive = inst_json_bool(dev, "recursive", false);
	out->optional = inst_json_bool(dev, "optional", false) ||
			!inst_json_bool(dev, "required", true);
	if (!out->source || out->source[0] != '/')
		return cell_err(err, 400, EINVAL,
				"device \"%s\": source must be an absolute host path (custom volumes are resolved before start)",
				devname);
	if (stat(out->source, &st) < 0) {
		if (errno == ENOENT && out->optional)
			return out->missing = true, 0;
		return cell_err_sys(err, 400, errno, "device \"%s\": source %s", devname, out->source);
	}
	if (S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode))
		return cell_err(err, 400, EOPNOTSUPP,
				"device \"%s\": device nodes as disk sources are not supported", devname);
	out->is_file = !S_ISDIR(st.st_mode);
	return 0;
}

struct unixdev {
	bool block, skip;
	unsigned major, minor, mode;
	uint32_t uid, gid;
	const char *path;   /* inside the container */
};

static int unix_resolve(const char *devname, json_t *dev, struct unixdev *u, cell_error *err)
{
	const char *src = inst_json_str(dev, "source"), *path = inst_json_str(dev, "path");
	const char *v;
	struct stat st;

	memset(u, 0, sizeof(*u));
	u->block = strcmp(inst_json_str(dev, "type"), "unix-block") == 0;
	u->path = path ? path : src;
	u->mode = (v = inst_json_str(dev, "mode")) ? (unsigned)strtoul(v, NULL, 8) : 0660;
	u->uid = (v = inst_json_str(dev, "uid")) ? (uint32_t)strtoul(v, NULL, 10) : 0;
	u->gid = (v = inst_json_str(dev, "gid")) ? (uint32_t)strtoul(v, NULL, 10) : 0;
	if (inst_json_str(dev, "major")) {
		u->major = (unsigned)strtoul(inst_json_str(dev, "major"), NULL, 10);
		u->minor = (unsigned)strtoul(inst_json_str(dev, "minor"), NULL, 10);
		return 0;
	}
	if (!src)
		src = path;
	if (!abs_path_clean(u->path))
		return cell_err(err, 400, EINVAL, "device \"%s\": invalid path \"%s\"", devname,
				u->path);
	if (stat(src, &st) < 0) {
		if (errno == ENOENT && !inst_json_bool(dev, "required", true))
			return u->skip = true, 0;
		return cell_err_sys(err, 400, errno, "device \"%s\": %s", devname, src);
	}
	if (u->block ? !S_ISBLK(st.st_mode) : !S_ISCHR(st.st_mode))
		return cell_err(err, 400, EINVAL, "device \"%s\": %s is not a %s device", devname, src,
				u->block ? "block" : "character");
	u->major = major(st.st_rdev);
	u->minor = minor(st.st_rdev);
	return 0;
}

/* ---- rendering ---------------------------------------------------------------------- */

struct render {
	const struct inst_lxc_spec *s;
	strbuf *sb;
	cell_error *err;
	char *dir;
	bool priv;
	int rc;
};

static void kv(struct render *r, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void kv(struct render *r, const char *key, const char *fmt, ...)
{
	va_list ap;

	if (sb_printf(r->sb, "%s = ", key) < 0)
		r->rc = -ENOMEM;
	va_start(ap, fmt);
	if (sb_vprintf(r->sb, fmt, ap) < 0 || sb_puts(r->sb, "\n") < 0)
		r->rc = -ENOMEM;
	va_end(ap);
}

/* fstab escaping for lxc.mount.entry fields. */
static char *mnt_escape(const char *s)
{
	_cleanup_sb_ strbuf sb = { 0 };

	for (; *s; s++) {
		if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\\')
			sb_printf(&sb, "\\%03o", (unsigned char)*s);
		else
			sb_append(&sb, s, 1);
	}
	sb_append(&sb, "", 0);
	return sb_steal(&sb);
}

static void mount_entry(struct render *r, const char *src, const char *dst, const char *fstype,
			const char *opts)
{
	_cleanup_free_ char *s = mnt_escape(src);
	_cleanup_free_ char *d = mnt_escape(dst[0] == '/' ? dst + 1 : dst);

	if (!s || !d)
		r->rc = -ENOMEM;
	else
		kv(r, "lxc.mount.entry", "%s %s %s %s 0 0", s, d, fstype, opts);
}

static void render_base(struct render *r)
{
	const struct inst_lxc_spec *s = r->s;
	const char *pfx = inst_cg_prefix();

	sb_puts(r->sb, "# Generated by celld on every start from the instance's expanded config;\n"
		       "# changes here are lost. Use raw.lxc instead.\n");
	kv(r, "lxc.uts.name", "%s", s->name);
	kv(r, "lxc.rootfs.path", "dir:%s", s->rootfs);
	kv(r, "lxc.init.cmd", "/sbin/init");
	if (s->log_path)
		kv(r, "lxc.log.file", "%s", s->log_path);
	else
		kv(r, "lxc.log.file", "%s/lxc.log", r->dir);
	kv(r, "lxc.log.level", "warn");
	if (s->console_path)
		kv(r, "lxc.console.logfile", "%s", s->console_path);
	else
		kv(r, "lxc.console.logfile", "%s/console.log", r->dir);
	kv(r, "lxc.console.buffer.size", "auto");
	/* Fixed names (no liblxc "-1" suffixes) so state is found by name alone. */
	kv(r, "lxc.cgroup.dir.container", "%s.payload.%s", pfx, s->name);
	kv(r, "lxc.cgroup.dir.monitor", "%s.monitor.%s", pfx, s->name);
	kv(r, "lxc.cgroup.dir.monitor.pivot", "cell.pivot");
	kv(r, "lxc.autodev", "1");
	kv(r, "lxc.pty.max", "1024");
	kv(r, "lxc.tty.max", "0");
	kv(r, "lxc.environment", "container=lxc");
}

static void render_security(struct render *r)
{
	_cleanup_strv_ char **lines = NULL;

	kv(r, "lxc.apparmor.profile", "unconfined");
	kv(r, "lxc.cap.drop", "sys_time sys_module sys_rawio mac_admin mac_override");
	kv(r, "lxc.seccomp.profile", "%s/seccomp", r->dir);
	if (!r->priv) {
		lines = idmap_lxc_lines(r->s->idmap);
		if (!lines) {
			r->rc = -ENOMEM;
			return;
		}
		for (char **l = lines; *l; l++)
			kv(r, "lxc.idmap", "%s", *l);
		return;
	}
	/* Privileged: only the usual nodes, as LXD allows; unix-* devices add theirs. */
	static const char *const allow[] = {
		"b *:* m", "c *:* m", "c 136:* rwm", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm",
		"c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 10:229 rwm",
		"c 10:200 rwm",
	};
	const char *key = inst_cg_v1(CG_DEVICES) ? "lxc.cgroup.devices.allow" : "lxc.cgroup2.devices.allow";
	if (!inst_cg_v1(CG_DEVICES) && !inst_cg_v2(CG_DEVICES))
		return;
	kv(r, inst_cg_v1(CG_DEVICES) ? "lxc.cgroup.devices.deny" : "lxc.cgroup2.devices.deny", "a");
	for (size_t i = 0; i < ARRAY_SIZE(allow); i++)
		kv(r, key, "%s", allow[i]);
}

static void render_mounts(struct render *r)
{
	bool nesting = inst_json_bool(r->s->config, "security.nesting", false);
	bool mixed = r->priv && !nesting;
	static const char *const binds[] = {
		"/dev/fuse", "/dev/net/tun", "/proc/sys/fs/binfmt_misc",
		"/sys/firmware/efi/efivars", "/sys/fs/fuse/connections", "/sys/fs/pstore",
		"/sys/kernel/config", "/sys/kernel/debug", "/sys/kernel/security",
		"/sys/kernel/tracing",
	};
	struct stat st;

	/* As LXD: a privileged container gets read-only /proc/sys and /sys; the
	 * cgroup tree is the container's own (cgroupns) and rw only where it may
	 * write, except for nesting which needs to build its own. */
	kv(r, "lxc.mount.auto", "proc:%s sys:%s cgroup:%s", mixed ? "mixed" : "rw",
	   mixed ? "mixed" : "rw",
	   nesting || inst_cg_unified_only() ? "rw:force" : "mixed");
	for (size_t i = 0; i < ARRAY_SIZE(binds); i++) {
		if (stat(binds[i], &st) < 0)
			continue;
		mount_entry(r, binds[i], binds[i], "none",
			    S_ISDIR(st.st_mode) ? "rbind,create=dir,optional" : "bind,create=file,optional");
	}
	if (r->priv)
		mount_entry(r, "mqueue", "/dev/mqueue", "mqueue", "rw,relatime,create=dir,optional");
}

static void render_limits(struct render *r)
{
	struct inst_cg_setting set[INST_CG_SETTINGS_MAX];
	size_t n;

	if (inst_conf_limits(r->s->config, false, set, &n, r->err) < 0) {
		r->rc = -EINVAL;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char key[96];
		snprintf(key, sizeof(key), "lxc.cgroup%s.%s", inst_cg_v1(set[i].ctrl) ? "" : "2",
			 set[i].file);
		kv(r, key, "%s", set[i].value);
	}
}

static void render_env(struct render *r)
{
	const char *key;
	json_t *val;

	json_object_foreach(r->s->config, key, val)
		if (str_has_prefix(key, "environment.") && json_string_value(val))
			kv(r, "lxc.environment", "%s=%s", key + 12, json_string_value(val));
}

static void render_nic(struct render *r, const char *devname, json_t *dev, int idx)
{
	struct inst_nic nic;
	char k[64];

	if (inst_conf_nic(devname, dev, r->s->config, idx, &nic, r->err) < 0) {
		r->rc = -EINVAL;
		return;
	}
#define NETKEY(sfx) (snprintf(k, sizeof(k), "lxc.net.%d." sfx, idx), k)
	kv(r, NETKEY("type"), "%s", nic.macvlan ? "macvlan" : "veth");
	if (nic.parent)
		kv(r, NETKEY("link"), "%s", nic.parent);
	if (nic.macvlan)
		kv(r, NETKEY("macvlan.mode"), "bridge");
	kv(r, NETKEY("name"), "%s", nic.name);
	if (nic.hwaddr[0])
		kv(r, NETKEY("hwaddr"), "%s", nic.hwaddr);
	if (nic.mtu)
		kv(r, NETKEY("mtu"), "%u", nic.mtu);
	if (nic.host_name[0])
		kv(r, NETKEY("veth.pair"), "%s", nic.host_name);
	kv(r, NETKEY("flags"), "up");
#undef NETKEY
}

static void render_disk(struct render *r, const char *devname, json_t *dev)
{
	struct inst_disk d;
	char opts[96];

	if (inst_conf_is_root_disk(dev))
		return;   /* the rootfs comes in spec->rootfs */
	if (inst_conf_disk(devname, dev, &d, r->err) < 0) {
		r->rc = -EINVAL;
		return;
	}
	if (d.missing)
		return;
	snprintf(opts, sizeof(opts), "%s,create=%s%s%s", d.recursive ? "rbind" : "bind",
		 d.is_file ? "file" : "dir", d.readonly ? ",ro" : "", d.optional ? ",optional" : "");
	mount_entry(r, d.source, d.path, "none", opts);
}

static void render_unix(struct render *r, const char *devname, json_t *dev)
{
	struct unixdev u;
	_cleanup_free_ char *node = NULL;

	if (unix_resolve(devname, dev, &u, r->err) < 0) {
		r->rc = -EINVAL;
		return;
	}
	if (u.skip)
		return;
	node = xasprintf("%s/devices/unix.%s", r->dir, devname);
	if (!node) {
		r->rc = -ENOMEM;
		return;
	}
	mount_entry(r, node, u.path, "none", "bind,create=file");
	if (inst_cg_v1(CG_DEVICES) || inst_cg_v2(CG_DEVICES))
		kv(r, inst_cg_v1(CG_DEVICES) ? "lxc.cgroup.devices.allow" : "lxc.cgroup2.devices.allow",
		   "%c %u:%u rwm", u.block ? 'b' : 'c', u.major, u.minor);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Devices in name order, so the same config always gives the same file. */
static const char **sorted_device_names(json_t *devices, size_t *n)
{
	const char **names = calloc(json_object_size(devices) + 1, sizeof(char *));
	const char *key;
	json_t *val;

	*n = 0;
	if (!names)
		return NULL;
	json_object_foreach(devices, key, val)
		names[(*n)++] = key;
	qsort(names, *n, sizeof(char *), cmp_str);
	return names;
}

static void render_devices(struct render *r)
{
	_cleanup_free_ const char **names = NULL;
	size_t n;
	int nic = 0;

	if (!r->s->devices)
		return;
	names = sorted_device_names(r->s->devices, &n);
	if (!names) {
		r->rc = -ENOMEM;
		return;
	}
	for (size_t i = 0; i < n && r->rc == 0; i++) {
		json_t *dev = json_object_get(r->s->devices, names[i]);
		const char *type = inst_json_str(dev, "type");
		if (strcmp(type, "nic") == 0)
			render_nic(r, names[i], dev, nic++);
		else if (strcmp(type, "disk") == 0)
			render_disk(r, names[i], dev);
		else if (str_has_prefix(type, "unix-"))
			render_unix(r, names[i], dev);
	}
}

static void render_raw(struct render *r)
{
	const char *raw = inst_json_str(r->s->config, "raw.lxc");

	if (!raw)
		return;
	sb_puts(r->sb, "# raw.lxc\n");
	sb_puts(r->sb, raw);
	if (raw[strlen(raw) - 1] != '\n')
		sb_puts(r->sb, "\n");
}

static int check_spec(const struct inst_lxc_spec *s, cell_error *err)
{
	if (!s->name || !inst_lxc_name_valid(s->name))
		return cell_err(err, 400, EINVAL, "invalid instance name \"%s\"", s->name ? s->name : "");
	if (!s->rootfs || s->rootfs[0] != '/' || has_linebreak(s->rootfs))
		return cell_err(err, 400, EINVAL, "%s: rootfs must be an absolute path", s->name);
	if ((s->log_path && has_linebreak(s->log_path)) ||
	    (s->console_path && has_linebreak(s->console_path)))
		return cell_err(err, 400, EINVAL, "%s: invalid log path", s->name);
	if (!inst_lxc_lxcpath())
		return cell_err(err, 500, EINVAL, "runtime not initialised");
	return inst_lxc_validate(s->config, s->devices, err);
}

int inst_lxc_config_render(const struct inst_lxc_spec *spec, strbuf *out, cell_error *err)
{
	_cleanup_free_ char *dir = NULL;
	struct render r = { .s = spec, .sb = out, .err = err };

	if (check_spec(spec, err) < 0)
		return -EINVAL;
	dir = inst_lxc_dir(spec->name);
	if (!dir)
		return cell_err(err, 500, ENOMEM, "out of memory");
	r.dir = dir;
	r.priv = !spec->idmap || idmap_is_empty(spec->idmap);
	render_base(&r);
	render_security(&r);
	render_mounts(&r);
	render_env(&r);
	if (r.rc == 0)
		render_limits(&r);
	if (r.rc == 0)
		render_devices(&r);
	render_raw(&r);
	if (r.rc == -ENOMEM)
		return cell_err(err, 500, ENOMEM, "%s: config: out of memory", spec->name);
	return r.rc;
}

/* ---- writing -------------------------------------------------------------------------- */

/* LXD's default policy: calls that could hurt the host from a container. */
static const char seccomp_policy[] =
	"2\n"
	"denylist\n"
	"reject_force_umount\n"
	"[all]\n"
	"kexec_load errno 38\n"
	"open_by_handle_at errno 38\n"
	"init_module errno 38\n"
	"finit_module errno 38\n"
	"delete_module errno 38\n";

static int clear_dir(const char *path)
{
	_cleanup_closedir_ DIR *d = opendir(path);
	struct dirent *de;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			unlinkat(dirfd(d), de->d_name, 0);
	return 0;
}

static int make_node(const struct inst_lxc_spec *s, const char *dir, const char *devname,
		     json_t *dev, cell_error *err)
{
	struct unixdev u;
	_cleanup_free_ char *node = xasprintf("%s/devices/unix.%s", dir, devname);
	uint32_t uid = 0, gid = 0;
	bool priv = !s->idmap || idmap_is_empty(s->idmap);

	if (unix_resolve(devname, dev, &u, err) < 0)
		return -EINVAL;
	if (u.skip)
		return 0;
	if (!priv && (idmap_shift_uid(s->idmap, u.uid, &uid) < 0 ||
		      idmap_shift_gid(s->idmap, u.gid, &gid) < 0))
		return cell_err(err, 400, ERANGE, "device \"%s\": uid/gid outside the id map", devname);
	if (priv)
		uid = u.uid, gid = u.gid;
	if (mknod(node, (u.block ? S_IFBLK : S_IFCHR) | 0600, makedev(u.major, u.minor)) < 0)
		return cell_err_sys(err, 500, errno, "device \"%s\": mknod %s", devname, node);
	if (chown(node, uid, gid) < 0 || chmod(node, u.mode) < 0)
		return cell_err_sys(err, 500, errno, "device \"%s\": chown %s", devname, node);
	return 0;
}

static int write_devices(const struct inst_lxc_spec *s, const char *dir, cell_error *err)
{
	_cleanup_free_ char *ddir = xasprintf("%s/devices", dir);
	const char *key;
	json_t *dev;
	int rc;

	if ((rc = clear_dir(ddir)) < 0)
		return cell_err_sys(err, 500, -rc, "clear %s", ddir);
	json_object_foreach(s->devices, key, dev) {
		const char *type = inst_json_str(dev, "type");
		if (!type || !str_has_prefix(type, "unix-"))
			continue;
		if (mkdir(ddir, 0711) < 0 && errno != EEXIST)
			return cell_err_sys(err, 500, errno, "mkdir %s", ddir);
		if (make_node(s, dir, key, dev, err) < 0)
			return -EINVAL;
	}
	return 0;
}

static void rotate_log(const struct inst_lxc_spec *s, const char *dir)
{
	_cleanup_free_ char *log = s->log_path ? strdup(s->log_path) : xasprintf("%s/lxc.log", dir);
	_cleanup_free_ char *old = log ? xasprintf("%s.old", log) : NULL;

	if (old)
		rename(log, old);
}

int inst_lxc_config_write(const struct inst_lxc_spec *spec, cell_error *err)
{
	_cleanup_sb_ strbuf sb = { 0 };
	_cleanup_free_ char *dir = NULL, *path = NULL, *sc = NULL;

	if (inst_lxc_config_render(spec, &sb, err) < 0)
		return -EINVAL;
	dir = inst_lxc_dir(spec->name);
	path = xasprintf("%s/config", dir);
	sc = xasprintf("%s/seccomp", dir);
	if (!dir || !path || !sc)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (mkdir(dir, 0711) < 0 && errno != EEXIST)
		return cell_err_sys(err, 500, errno, "mkdir %s", dir);
	if (write_devices(spec, dir, err) < 0)
		return -EIO;
	rotate_log(spec, dir);
	if (util_write_file_atomic(sc, seccomp_policy, sizeof(seccomp_policy) - 1, 0600, err) < 0 ||
	    util_write_file_atomic(path, sb.buf, sb.len, 0600, err) < 0)
		return -EIO;
	return 0;
}
