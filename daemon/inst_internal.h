/* Shared between the inst_* files only; the API layer uses inst_lxc.h. */
#ifndef CELL_DAEMON_INST_INTERNAL_H
#define CELL_DAEMON_INST_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "daemon/inst_cgroup.h"

/* One cgroup file a limit turns into: lxc.cgroup[2].<file> = value at start,
 * or a direct write to the payload cgroup on a live update. */
struct inst_cg_setting {
	enum inst_cg_ctrl ctrl;
	const char *file;
	char value[128];
};
#define INST_CG_SETTINGS_MAX 16
/* Settings for the limits.* in config.  `reset` adds the unlimited values
 * of unset limits (live updates) and orders memory writes so the swap
 * limit never falls below the memory limit mid-way. */
int inst_conf_limits(json_t *config, bool reset, struct inst_cg_setting *out, size_t *n,
		     cell_error *err);

/* A nic device resolved for creation. */
struct inst_nic {
	bool macvlan;              /* else veth */
	bool bridged;              /* veth with a bridge master */
	const char *parent;        /* bridge or macvlan parent, NULL for p2p */
	char name[16];             /* inside the container */
	char host_name[16];        /* veth host end, "" to let the kernel/liblxc pick */
	char hwaddr[18];           /* "" random */
	unsigned mtu;              /* 0 default */
};
/* idx is the nic's position (for the "eth<idx>" default name). */
int inst_conf_nic(const char *devname, json_t *dev, json_t *config, int idx,
		  struct inst_nic *out, cell_error *err);

/* A disk bind mount resolved against the host. */
struct inst_disk {
	const char *source, *path;
	bool readonly, recursive, optional, is_file;
	bool missing;              /* optional and the source is absent: skip */
};
int inst_conf_disk(const char *devname, json_t *dev, struct inst_disk *out, cell_error *err);
bool inst_conf_is_root_disk(json_t *dev);

/* Parsers shared by validation and generation (inst_lxc_validate.c). */
#define INST_CPU_MAX 1024
int inst_parse_u64(const char *s, uint64_t *out);   /* digits only; -EINVAL */
/* "0-3,6" into a bitmap; -EINVAL on syntax or CPUs >= INST_CPU_MAX. */
int inst_parse_cpuset(const char *s, uint64_t set[INST_CPU_MAX / 64]);
static inline bool inst_cpu_is_set(const uint64_t *set, unsigned c)
{
	return set[c / 64] >> (c % 64) & 1;
}
/* limits.cpu: a plain number is a count, anything with ',' or '-' a set. */
bool inst_cpu_is_count(const char *v);
/* limits.cpu.allowance: "50%" (pct) or "25ms/100ms" (quota/period in us). */
int inst_parse_allowance(const char *v, uint64_t *pct, uint64_t *quota_us, uint64_t *period_us);
bool inst_ifname_valid(const char *n);
bool inst_hwaddr_valid(const char *h);      /* unicast xx:xx:xx:xx:xx:xx */
bool inst_abs_path_clean(const char *p);    /* absolute, no "." or ".." parts */
bool inst_has_linebreak(const char *v);

/* String value of a device/config key, NULL when absent or "". */
const char *inst_json_str(json_t *obj, const char *key);
/* LXD's truthiness: true/1/yes/on; `def` when absent or empty. */
bool inst_json_bool(json_t *obj, const char *key, bool def);

/* " - "-separated ERROR lines at the end of an lxc log, for messages. */
void inst_log_tail(const char *path, char *buf, size_t len);

#endif
