/*
 * liblxc config generation: limits as cgroup settings, devices resolved
 * against the host, the config text, and writing it with what it refers to
 * (device nodes, seccomp policy).
 *
 * Rendering validates first (inst_lxc_validate.c), which rejects line
 * breaks in every value that lands on an lxc config line (raw.lxc excepted,
 * it is config text by design), so a client cannot smuggle keys in.
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

/* Unlimited is "-1" on v1, "max" (or 0 for the memory.low floor) on v2. */
#define MEM_UNLIMITED(v2val) (inst_cg_v1(CG_MEMORY) ? "-1" : (v2val))

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
				  NULL, err, "%s", MEM_UNLIMITED("max"));
	if (lim && !soft)
		rc |= add_setting(out, n, CG_MEMORY, "memory.limit_in_bytes", "memory.max",
				  "limits.memory", err, "%" PRIu64, lim);
	else if (reset)
		rc |= add_setting(out, n, CG_MEMORY, "memory.limit_in_bytes", "memory.max", NULL, err,
				  "%s", MEM_UNLIMITED("max"));
	/* The soft limit (reclaim target under pressure): the value itself when
	 * enforce=soft, else 10% under the hard limit so reclaim starts early, as LXD. */
	if (lim)
		rc |= add_setting(out, n, CG_MEMORY, "memory.soft_limit_in_bytes", "memory.low",
				  "limits.memory", err, "%" PRIu64, soft ? lim : lim / 10 * 9);
	else if (reset)
		rc |= add_setting(out, n, CG_MEMORY, "memory.soft_limit_in_bytes", "memory.low", NULL,
				  err, "%s", MEM_UNLIMITED("0"));
	if (lim && !soft && !swap && memsw_supported())
		rc |= add_setting(out, n, CG_MEMORY, "memory.memsw.limit_in_bytes", "memory.swap.max",
				  "limits.memory.swap", err, "%" PRIu64, inst_cg_v1(CG_MEMORY) ? lim : 0);
	if (prio)
		inst_parse_u64(prio, &p);
	/* swappiness is v1 only; LXD: 0 without swap, else 60 - 10 + priority. */
	if (inst_cg_v1(CG_MEMORY) && (!swap || prio || reset))
		rc |= add_setting(out, n, CG_MEMORY, "memory.swappiness", NULL, NULL, err, "%u",
				  swap ? (unsigned)(50 + p) : 0u);
	return rc ? -EINVAL : 0;
}

static int cpus_for(const char *v, char *buf, size_t len, cell_error *err)
{
	uint64_t avail[INST_CPU_MAX / 64], want[INST_CPU_MAX / 64], count = 0;
	char host[256];
	size_t off = 0;

	if (inst_cg_cpus_available(host, sizeof(host)) < 0 || inst_parse_cpuset(host, avail) < 0)
		return cell_err(err, 500, EIO, "limits.cpu: cannot read the host's CPUs");
	if (!v) {
		snprintf(buf, len, "%s", host);
		return 0;
	}
	if (!inst_cpu_is_count(v)) {
		inst_parse_cpuset(v, want);
		for (unsigned c = 0; c < INST_CPU_MAX; c++)
			if (inst_cpu_is_set(want, c) && !inst_cpu_is_set(avail, c))
				return cell_err(err, 400, EINVAL,
						"limits.cpu: CPU %u is not available (host has %s)", c,
						host);
		snprintf(buf, len, "%s", v);
		return 0;
	}
	/* A count pins the first N usable CPUs (all of them when N is larger). */
	inst_parse_u64(v, &count);
	buf[0] = '\0';
	for (unsigned c = 0; c < INST_CPU_MAX && count && off < len; c++) {
		if (!inst_cpu_is_set(avail, c))
			continue;
		off += (size_t)snprintf(buf + off, len - off, "%s%u", off ? "," : "", c);
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
	if (allow && inst_parse_allowance(allow, &pct, &quota, &period) < 0)
		return cell_err(err, 400, EINVAL, "limits.cpu.allowance: invalid \"%s\"", allow);
	if (prio)
		inst_parse_u64(prio, &p);
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
	if (!name && inst_ifname_valid(devname))
		name = devname;
	if (name)
		snprintf(out->name, sizeof(out->name), "%s", name);
	else
		snprintf(out->name, sizeof(out->name), "eth%d", idx);
	if (hw && !inst_hwaddr_valid(hw))
		return cell_err(err, 400, EINVAL, "device \"%s\": invalid hwaddr \"%s\"", devname, hw);
	if (host && !out->macvlan && !inst_ifname_valid(host))
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
	if (!inst_abs_path_clean(u->path))
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
	/* liblxc rewrites the log at stop, capped at this size: 0 would empty it. */
	kv(r, "lxc.console.size", "auto");
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
	if (!s->rootfs || s->rootfs[0] != '/' || inst_has_linebreak(s->rootfs))
		return cell_err(err, 400, EINVAL, "%s: rootfs must be an absolute path", s->name);
	if ((s->log_path && inst_has_linebreak(s->log_path)) ||
	    (s->console_path && inst_has_linebreak(s->console_path)))
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
