/*
 * Cgroup layout for the runtime (internal to inst_*): where each controller
 * is mounted (v1 hierarchy, unified, or absent), the cgroup names liblxc is
 * told to use, and small readers/writers for the files in them.
 */
#ifndef CELL_DAEMON_INST_CGROUP_H
#define CELL_DAEMON_INST_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

enum inst_cg_ctrl {
	CG_MEMORY, CG_CPU, CG_CPUACCT, CG_CPUSET, CG_PIDS, CG_FREEZER, CG_DEVICES, CG_NCTRL,
};

/* Find the mounts and derive the name prefix from lxcpath. */
int inst_cg_init(const char *lxcpath, cell_error *err);
/* The controller sits on a v1 hierarchy / on the unified one. */
bool inst_cg_v1(enum inst_cg_ctrl c);
bool inst_cg_v2(enum inst_cg_ctrl c);
/* No v1 hierarchy at all (lxc.cgroup2.* keys). */
bool inst_cg_unified_only(void);
/* "cell.<hash8>" */
const char *inst_cg_prefix(void);

/* "<mount of c>/<prefix>.payload.<name>/<file>"; -ENOENT when c is not
 * mounted.  `file` may be NULL for the directory. */
int inst_cg_payload_path(enum inst_cg_ctrl c, const char *name, const char *file, char *buf,
			 size_t len);
/* The liblxc monitor process of a running container, 0 if none. */
pid_t inst_cg_monitor_pid(const char *name);

/* Remove what liblxc left of a stopped container's cgroups (it keeps the
 * monitor cgroup after a failed start).  Only empty cgroups can go. */
void inst_cg_remove(const char *name);

/* Small file helpers: whole-file read into buf (NUL-terminated, trailing
 * newline dropped), u64 parse, write. -errno. */
int inst_cg_read(const char *path, char *buf, size_t len);
int inst_cg_read_at(int dirfd, const char *file, char *buf, size_t len);
int inst_cg_read_u64(const char *path, uint64_t *out);
int inst_cg_write(const char *path, const char *value);

/* The controller's root cgroup has `file` (feature probes: memsw). */
bool inst_cg_root_has(enum inst_cg_ctrl c, const char *file);

/* Online CPUs usable by containers as a "0-3,6" list, from the cpuset root. */
int inst_cg_cpus_available(char *buf, size_t len);

#endif
