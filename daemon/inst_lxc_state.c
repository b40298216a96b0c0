/*
 * State readers.  They run for every instance of a recursive list, so they
 * touch only files: the monitor cgroup gives liblxc's monitor process, its
 * child is init, the payload cgroup has the counters, and one rtnetlink
 * socket made inside the container's netns (see inst_nl.h) has the
 * interfaces.  No fork, no liblxc object, no command socket round trip.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "daemon/inst_internal.h"
#include "daemon/inst_lxc.h"
#include "daemon/inst_nl.h"

const char *inst_status_name(enum inst_status s)
{
	switch (s) {
	case INST_RUNNING: return "Running";
	case INST_FROZEN: return "Frozen";
	default: return "Stopped";
	}
}

/* NSpid's last field is the pid inside the container: 1 for its init. */
static bool is_ns_init(pid_t pid)
{
	char path[64], buf[2048], *p;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (inst_cg_read(path, buf, sizeof(buf)) < 0 || !(p = strstr(buf, "\nNSpid:")))
		return false;
	p[strcspn(p + 1, "\n") + 1] = '\0';
	p = strrchr(p, '\t');
	return p && strcmp(p + 1, "1") == 0;
}

/* liblxc's monitor has init as its only child, except for an instant
 * around hooks; then NSpid tells init apart. */
static pid_t monitor_child(pid_t mon)
{
	char path[64], buf[256], *end;
	long first, second;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)mon, (int)mon);
	if (inst_cg_read(path, buf, sizeof(buf)) <= 0)
		return 0;
	first = strtol(buf, &end, 10);
	second = strtol(end, NULL, 10);
	if (second <= 0 || is_ns_init((pid_t)first))
		return first > 0 ? (pid_t)first : 0;
	for (char *p = buf; *p;) {
		long pid = strtol(p, &end, 10);
		if (end == p)
			break;
		if (pid > 0 && is_ns_init((pid_t)pid))
			return (pid_t)pid;
		p = end;
	}
	return 0;
}

static bool is_frozen(const char *name)
{
	char path[PATH_MAX], buf[256];

	if (inst_cg_v1(CG_FREEZER)) {
		if (inst_cg_payload_path(CG_FREEZER, name, "freezer.state", path, sizeof(path)) < 0 ||
		    inst_cg_read(path, buf, sizeof(buf)) < 0)
			return false;
		return strcmp(buf, "FROZEN") == 0;
	}
	if (inst_cg_payload_path(CG_FREEZER, name, "cgroup.events", path, sizeof(path)) < 0 ||
	    inst_cg_read(path, buf, sizeof(buf)) < 0)
		return false;
	return strstr(buf, "frozen 1") != NULL;
}

enum inst_status inst_lxc_status(const char *name, pid_t *init_pid)
{
	pid_t mon, pid = 0;
	enum inst_status st = INST_STOPPED;

	if (name && inst_lxc_name_valid(name) && (mon = inst_cg_monitor_pid(name)) &&
	    (pid = monitor_child(mon)))
		st = is_frozen(name) ? INST_FROZEN : INST_RUNNING;
	if (init_pid)
		*init_pid = pid;
	return st;
}

/* ---- cgroup counters ------------------------------------------------------------ */

/* The payload cgroup directories of one instance, opened once per state
 * read: every file is then one openat without a path walk. */
struct cg_dirs {
	const char *name;
	int fd[CG_NCTRL];
};

static void cg_dirs_close(struct cg_dirs *d)
{
	for (int c = 0; c < CG_NCTRL; c++)
		if (d->fd[c] >= 0)
			close(d->fd[c]);
}

static int cg_dir(struct cg_dirs *d, enum inst_cg_ctrl c)
{
	char path[PATH_MAX];

	if (d->fd[c] == -2)
		d->fd[c] = inst_cg_payload_path(c, d->name, NULL, path, sizeof(path)) < 0
				   ? -1 : open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return d->fd[c];
}

static uint64_t cg_u64(struct cg_dirs *d, enum inst_cg_ctrl c, const char *file)
{
	char buf[64];
	int fd = cg_dir(d, c);

	if (fd < 0 || inst_cg_read_at(fd, file, buf, sizeof(buf)) < 0)
		return 0;
	return strtoull(buf, NULL, 10);   /* "max" and junk read as 0 */
}

/* "key value" line of a flat-keyed file such as cpu.stat. */
static uint64_t cg_keyed(struct cg_dirs *d, enum inst_cg_ctrl c, const char *file, const char *key)
{
	char buf[1024], *p;
	size_t klen = strlen(key);
	int fd = cg_dir(d, c);

	if (fd < 0 || inst_cg_read_at(fd, file, buf, sizeof(buf)) < 0)
		return 0;
	for (p = buf; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, key, klen) == 0 && p[klen] == ' ')
			return strtoull(p + klen + 1, NULL, 10);
	return 0;
}

static uint64_t cpu_usage_ns(struct cg_dirs *d)
{
	if (inst_cg_v1(CG_CPUACCT))
		return cg_u64(d, CG_CPUACCT, "cpuacct.usage");
	return cg_keyed(d, CG_CPUACCT, "cpu.stat", "usage_usec") * 1000;
}

static uint64_t process_count(struct cg_dirs *d)
{
	char buf[65536];
	uint64_t n = 0;
	int len, fd;

	if (inst_cg_v1(CG_PIDS) || inst_cg_v2(CG_PIDS))
		return cg_u64(d, CG_PIDS, "pids.current");
	/* No pids controller: count the payload's processes. */
	if ((fd = cg_dir(d, CG_MEMORY)) < 0 || (len = inst_cg_read_at(fd, "cgroup.procs", buf, sizeof(buf))) <= 0)
		return 0;
	for (int i = 0; i < len; i++)
		n += buf[i] == '\n';
	return n + 1;
}

static json_t *memory_json(struct cg_dirs *d, bool running)
{
	uint64_t usage = 0, peak = 0, swap = 0, swap_peak = 0;

	if (running && inst_cg_v1(CG_MEMORY)) {
		uint64_t sw = cg_u64(d, CG_MEMORY, "memory.memsw.usage_in_bytes");
		uint64_t swp = cg_u64(d, CG_MEMORY, "memory.memsw.max_usage_in_bytes");
		usage = cg_u64(d, CG_MEMORY, "memory.usage_in_bytes");
		peak = cg_u64(d, CG_MEMORY, "memory.max_usage_in_bytes");
		swap = sw > usage ? sw - usage : 0;
		swap_peak = swp > peak ? swp - peak : 0;
	} else if (running && inst_cg_v2(CG_MEMORY)) {
		usage = cg_u64(d, CG_MEMORY, "memory.current");
		peak = cg_u64(d, CG_MEMORY, "memory.peak");
		swap = cg_u64(d, CG_MEMORY, "memory.swap.current");
		swap_peak = cg_u64(d, CG_MEMORY, "memory.swap.peak");
	}
	return json_pack("{sI sI sI sI}", "usage", (json_int_t)usage, "usage_peak",
			 (json_int_t)peak, "swap_usage", (json_int_t)swap, "swap_usage_peak",
			 (json_int_t)swap_peak);
}

/* ---- network ------------------------------------------------------------------------ */

static const char *scope_name(unsigned char scope)
{
	switch (scope) {
	case RT_SCOPE_HOST: return "local";
	case RT_SCOPE_LINK: return "link";
	default: return "global";
	}
}

static json_t *addresses_json(const struct inst_nl_addr *a, size_t n, int index)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < n; i++) {
		char mask[8];
		if (a[i].index != index)
			continue;
		snprintf(mask, sizeof(mask), "%u", a[i].prefixlen);
		json_array_append_new(arr, json_pack("{ss ss ss ss}", "family",
						     a[i].family == AF_INET ? "inet" : "inet6",
						     "address", a[i].address, "netmask", mask,
						     "scope", scope_name(a[i].scope)));
	}
	return arr;
}

static void hwaddr_text(const struct inst_nl_link *l, char *out, size_t len)
{
	bool nonzero = false;
	size_t off = 0;

	out[0] = '\0';
	for (int i = 0; i < l->addrlen; i++)
		nonzero |= l->addr[i] != 0;
	/* Like Go's net package (LXD): an all-zero address (lo) is none. */
	for (int i = 0; nonzero && i < l->addrlen && off + 3 < len; i++)
		off += (size_t)snprintf(out + off, len - off, "%s%02x", i ? ":" : "", l->addr[i]);
}

static json_t *link_json(const struct inst_nl_link *l, const struct inst_nl_addr *a, size_t na)
{
	char hw[100], host[IF_NAMESIZE] = "";
	const char *type = l->flags & IFF_LOOPBACK ? "loopback"
			   : l->flags & IFF_POINTOPOINT ? "point-to-point" : "broadcast";

	hwaddr_text(l, hw, sizeof(hw));
	/* A veth's IFLA_LINK is the peer's index in the peer's netns: here the host. */
	if (strcmp(l->kind, "veth") == 0 && l->link_other_ns && l->link > 0 &&
	    !if_indextoname((unsigned)l->link, host))
		host[0] = '\0';
	return json_pack("{so so ss ss sI ss ss}", "addresses", addresses_json(a, na, l->index),
			 "counters",
			 json_pack("{sI sI sI sI sI sI sI sI}", "bytes_received",
				   (json_int_t)l->rx_bytes, "bytes_sent", (json_int_t)l->tx_bytes,
				   "packets_received", (json_int_t)l->rx_packets, "packets_sent",
				   (json_int_t)l->tx_packets, "errors_received",
				   (json_int_t)l->rx_errors, "errors_sent", (json_int_t)l->tx_errors,
				   "packets_dropped_outbound", (json_int_t)l->tx_dropped,
				   "packets_dropped_inbound", (json_int_t)l->rx_dropped),
			 "hwaddr", hw, "host_name", host, "mtu", (json_int_t)l->mtu, "state",
			 l->flags & IFF_UP ? "up" : "down", "type", type);
}

static json_t *network_json(pid_t pid)
{
	_cleanup_close_ int fd = inst_nl_open_in(pid);
	_cleanup_free_ struct inst_nl_link *links = NULL;
	_cleanup_free_ struct inst_nl_addr *addrs = NULL;
	size_t nl = 0, na = 0;
	json_t *net;

	if (fd < 0 || inst_nl_links(fd, &links, &nl) < 0 || inst_nl_addrs(fd, &addrs, &na) < 0)
		return json_null();
	net = json_object();
	for (size_t i = 0; net && i < nl; i++)
		json_object_set_new(net, links[i].name, link_json(&links[i], addrs, na));
	return net;
}

json_t *inst_lxc_state(const char *name, cell_error *err)
{
	pid_t pid = 0;
	enum inst_status st = inst_lxc_status(name, &pid);
	bool running = st != INST_STOPPED;
	struct cg_dirs d = { .name = name };
	json_t *o;

	if (!name || !inst_lxc_name_valid(name)) {
		cell_err(err, 400, EINVAL, "state: invalid instance name \"%s\"", name ? name : "");
		return NULL;
	}
	for (int c = 0; c < CG_NCTRL; c++)
		d.fd[c] = -2;   /* opened on first use */
	o = json_pack("{ss si so so so sI sI}", "status", inst_status_name(st), "status_code",
		      (int)st, "disk", json_object(), "memory", memory_json(&d, running),
		      "cpu", json_pack("{sI}", "usage", (json_int_t)(running ? cpu_usage_ns(&d) : 0)),
		      "pid", (json_int_t)pid, "processes",
		      (json_int_t)(running ? process_count(&d) : 0));
	cg_dirs_close(&d);
	if (!o) {
		cell_err(err, 500, ENOMEM, "state %s: out of memory", name);
		return NULL;
	}
	json_object_set_new(o, "network", running ? network_json(pid) : json_null());
	return o;
}
