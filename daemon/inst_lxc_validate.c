/*
 * Validation of instance config and devices, the small parsers config
 * generation shares (units, CPU sets, allowances, names), id map choice and
 * hwaddrs.  Nothing here reads the host but its RAM size (for "50%").
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "daemon/inst_internal.h"
#include "daemon/inst_lxc.h"

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

int inst_parse_u64(const char *s, uint64_t *out)
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
		if (!num || inst_parse_u64(num, &pct) < 0 || pct == 0 || pct > 100)
			return -EINVAL;
		*out = host_ram() / 100 * pct;
		return 0;
	}
	return inst_lxc_parse_bytes(s, out) < 0 || *out == 0 ? -EINVAL : 0;
}

/* "0-3,6" into a bitmap; -EINVAL on syntax or CPUs >= INST_CPU_MAX. */
int inst_parse_cpuset(const char *s, uint64_t set[INST_CPU_MAX / 64])
{
	_cleanup_free_ char *copy = strdup(s);
	char *save = NULL;

	memset(set, 0, INST_CPU_MAX / 8);
	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *dash = strchr(tok, '-');
		uint64_t a, b;
		if (dash)
			*dash = '\0';
		if (inst_parse_u64(tok, &a) < 0 || inst_parse_u64(dash ? dash + 1 : tok, &b) < 0 || a > b ||
		    b >= INST_CPU_MAX)
			return -EINVAL;
		for (uint64_t c = a; c <= b; c++)
			set[c / 64] |= 1ULL << (c % 64);
	}
	return s[0] && s[strlen(s) - 1] != ',' ? 0 : -EINVAL;
}

/* limits.cpu: LXD reads a plain number as a count, anything with ',' or
 * '-' as a set. */
bool inst_cpu_is_count(const char *v) { return !strpbrk(v, ",-"); }

/* ---- key validation --------------------------------------------------------- */

typedef int (*check_fn)(const char *key, const char *v, cell_error *err);

bool inst_has_linebreak(const char *v) { return strpbrk(v, "\n\r") != NULL; }

static int chk_line(const char *key, const char *v, cell_error *err)
{
	if (inst_has_linebreak(v))
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
	if (inst_parse_u64(v, &n) < 0)
		return cell_err(err, 400, EINVAL, "%s: invalid integer \"%s\"", key, v);
	return 0;
}

static int chk_u32(const char *key, const char *v, cell_error *err)
{
	uint64_t n;
	if (inst_parse_u64(v, &n) < 0 || n > UINT32_MAX)
		return cell_err(err, 400, EINVAL, "%s: invalid integer \"%s\"", key, v);
	return 0;
}

static int chk_prio(const char *key, const char *v, cell_error *err)
{
	uint64_t n;
	if (inst_parse_u64(v, &n) < 0 || n > 10)
		return cell_err(err, 400, EINVAL, "%s: must be an integer from 0 to 10, not \"%s\"",
				key, v);
	return 0;
}

static int chk_processes(const char *key, const char *v, cell_error *err)
{
	uint64_t n;
	if (inst_parse_u64(v, &n) < 0 || n == 0 || n > INT32_MAX)
		return cell_err(err, 400, EINVAL, "%s: must be a positive integer, not \"%s\"",
				key, v);
	return 0;
}

static int chk_cpu(const char *key, const char *v, cell_error *err)
{
	uint64_t set[INST_CPU_MAX / 64], n;

	if (inst_cpu_is_count(v)) {
		if (inst_parse_u64(v, &n) < 0 || n == 0 || n > INST_CPU_MAX)
			return cell_err(err, 400, EINVAL,
					"%s: must be a CPU count (\"2\") or set (\"0-1,3\"), not \"%s\"",
					key, v);
		return 0;
	}
	if (inst_parse_cpuset(v, set) < 0)
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
	if (inst_parse_u64(num, us) < 0 || *us == 0 || *us > 1000ULL * 1000)
		return -EINVAL;
	*us *= 1000;
	return 0;
}

/* "50%" or "25ms/100ms", as LXD. */
int inst_parse_allowance(const char *v, uint64_t *pct, uint64_t *quota_us, uint64_t *period_us)
{
	size_t len = strlen(v);
	const char *slash = strchr(v, '/');
	char num[16];

	*pct = *quota_us = *period_us = 0;
	if (len > 1 && len < sizeof(num) && v[len - 1] == '%') {
		memcpy(num, v, len - 1);
		num[len - 1] = '\0';
		return inst_parse_u64(num, pct) < 0 || *pct == 0 ? -EINVAL : 0;
	}
	if (!slash || parse_ms(v, (size_t)(slash - v), quota_us) < 0 ||
	    parse_ms(slash + 1, strlen(slash + 1), period_us) < 0 || *period_us > 1000000)
		return -EINVAL;
	return 0;
}

static int chk_allowance(const char *key, const char *v, cell_error *err)
{
	uint64_t a, b, c;
	if (inst_parse_allowance(v, &a, &b, &c) < 0)
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

bool inst_ifname_valid(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > 15 || strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
		return false;
	for (; *n; n++)
		if (*n == '/' || *n == ':' || isspace((unsigned char)*n) || !isprint((unsigned char)*n))
			return false;
	return true;
}

bool inst_hwaddr_valid(const char *h)
{
	unsigned b[6];
	char tail;

	return strlen(h) == 17 &&
	       sscanf(h, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
		      &tail) == 6 &&
	       h[2] == ':' && !(b[0] & 1);   /* multicast bit: not a unicast address */
}

/* Absolute, no "." or ".." components: mount targets stay in the rootfs. */
bool inst_abs_path_clean(const char *p)
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
	if ((v && !inst_ifname_valid(v)) || (net && !inst_ifname_valid(net)))
		return cell_err(err, 400, EINVAL, "device \"%s\": invalid parent \"%s\"", devname,
				v ? v : net);
	if ((v = inst_json_str(dev, "name")) && !inst_ifname_valid(v))
		return cell_err(err, 400, EINVAL, "device \"%s\": invalid interface name \"%s\"",
				devname, v);
	if ((v = inst_json_str(dev, "host_name")) && !inst_ifname_valid(v))
		return cell_err(err, 400, EINVAL, "device \"%s\": invalid host_name \"%s\"", devname, v);
	if ((v = inst_json_str(dev, "host_name")) && nictype && strcmp(nictype, "macvlan") == 0)
		return cell_err(err, 400, EINVAL, "device \"%s\": macvlan nics have no host_name",
				devname);
	if ((v = inst_json_str(dev, "hwaddr")) && !inst_hwaddr_valid(v))
		return cell_err(err, 400, EINVAL, "device \"%s\": invalid hwaddr \"%s\"", devname, v);
	if ((v = inst_json_str(dev, "mtu")) && (inst_parse_u64(v, &mtu) < 0 || mtu < 68 || mtu > 65535))
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

	if (!path || !inst_abs_path_clean(path))
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
	if ((path && !inst_abs_path_clean(path)) || (src && src[0] != '/'))
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

	if (!*devname || strlen(devname) > 64 || strchr(devname, '/') || inst_has_linebreak(devname) ||
	    strcmp(devname, ".") == 0 || strcmp(devname, "..") == 0)
		return cell_err(err, 400, EINVAL, "invalid device name \"%s\"", devname);
	if (!json_is_object(dev))
		return cell_err(err, 400, EINVAL, "device \"%s\": must be an object", devname);
	json_object_foreach(dev, key, val) {
		const char *v = json_string_value(val);
		if (!v || strlen(v) != json_string_length(val) || inst_has_linebreak(v))
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
		    (inst_parse_u64(v, &size) < 0 || size == 0 || size > UINT32_MAX))
			return cell_err(err, 400, EINVAL, "security.idmap.size: invalid \"%s\"", v);
		if ((v = inst_json_str(config, "security.idmap.base"))) {
			struct idmap_entry e = { .isuid = true, .isgid = true, .nsid = 0,
						 .maprange = (uint32_t)size };
			if (inst_parse_u64(v, &start) < 0 || start + size > UINT32_MAX)
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
