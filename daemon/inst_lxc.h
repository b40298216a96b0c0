/*
 * The container runtime: liblxc under $CELL_DIR/containers, below the API.
 *
 * What the API layer (instances endpoints, profiles, DB) gets from here:
 * validation of instance config and devices, the liblxc config generated
 * from the expanded config on every start, the lifecycle verbs, live limit
 * updates and hot-plug, fast state reads, reattach at start-up and a
 * stop monitor.  The API layer owns names, the database, events, operations,
 * storage (the rootfs path comes in ready) and id map allocation policy.
 *
 * Layout: $CELL_DIR/containers/<name>/ holds `config` (rewritten atomically
 * on every start), `lxc.log` (the previous start's in `lxc.log.old`),
 * `console.log`, `seccomp` and `devices/` (host nodes of unix-char/block
 * devices, bind-mounted into the container).  Cgroups are
 * `cell.<8 hex of sha256(lxcpath)>.{payload,monitor}.<name>` at the root
 * of every hierarchy, so LXD's `lxc.payload.*` and other celld state dirs
 * never collide with ours, and state is found from the name alone.
 *
 * Threads: functions marked [worker] block (they spawn the `celld fork*`
 * helper or wait for liblxc) and must run on a worker thread.  [any] are
 * fast and thread-safe: a few reads of cgroup and /proc files, no fork, no
 * liblxc object.  [loop] must run on the loop thread.
 *
 * Nothing here keeps per-container state besides the monitor's watch entry
 * (one pidfd and a uv_poll_t): running containers are found again from
 * their cgroups, so a daemon restart or crash loses nothing.
 *
 * Errors: 0 or a negative errno; `err` gets a message and an HTTP status
 * (400 for bad config/devices, 404 unknown, 409 wrong state, 500 the rest).
 */
#ifndef CELL_DAEMON_INST_LXC_H
#define CELL_DAEMON_INST_LXC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "common/error.h"
#include "common/idmap.h"
#include "common/strbuf.h"

/* LXD's status codes for instances. */
enum inst_status {
	INST_STOPPED = 102,
	INST_RUNNING = 103,
	INST_FROZEN = 110,
};

/* What one start needs.  Strings and json are borrowed for the call. */
struct inst_lxc_spec {
	const char *name;
	const char *rootfs;           /* absolute path of the rootfs directory */
	json_t *config;               /* expanded config: object of strings */
	json_t *devices;              /* expanded devices: name -> object of strings */
	const struct idmap *idmap;    /* NULL or empty: privileged */
	const char *log_path;         /* NULL: <dir>/lxc.log */
	const char *console_path;     /* NULL: <dir>/console.log */
};

/* ---- set-up ----------------------------------------------------------- */

/* Remember lxcpath (made if missing), find the cgroup mounts.  Call once
 * before anything else, before threads start. */
int inst_lxc_init(const char *lxcpath, cell_error *err);
const char *inst_lxc_lxcpath(void);
/* $lxcpath/<name> (caller frees). */
char *inst_lxc_dir(const char *name);
/* A name safe for paths, cgroups and abstract sockets: LXD's instance name
 * rules (1-63 of [A-Za-z0-9-], not starting with a digit or '-'). */
bool inst_lxc_name_valid(const char *name);

/* ---- validation (inst_lxc_validate.c) and config (inst_lxc_conf.c) ---- */

/* Check config keys/values and device definitions before anything is saved:
 * every key known (LXD's instance keys, user.*, volatile.*, image.*,
 * environment.*), values well-formed, devices of a supported type with valid
 * options, no duplicate nic names or disk paths.  400 with a message naming
 * the key or device.  Reads nothing from the host. [any] */
int inst_lxc_validate(json_t *config, json_t *devices, cell_error *err);
/* "512MB", "1GiB", "100000" (bytes) as LXD's units; -EINVAL. */
int inst_lxc_parse_bytes(const char *s, uint64_t *out);
/* limits.memory: bytes as above or "N%" of host RAM; -EINVAL. */
int inst_lxc_parse_memory(const char *s, uint64_t *out);
/* True when a change of `key` needs no restart of a running container:
 * limits.cpu*, limits.memory*, limits.processes (apply them with
 * inst_lxc_set_limits) and keys the runtime does not use (user.*, image.*,
 * volatile.*, boot.*, snapshots.*, security.protection.*). */
bool inst_lxc_key_live(const char *key);
/* True for devices inst_lxc_device_add/remove handle live: nic, disk other
 * than the root one, and "none" (nothing to do). */
bool inst_lxc_device_hotpluggable(json_t *dev);
/* The id map for a container: empty when security.privileged, an isolated
 * range of security.idmap.size inside `base` clear of `used` when
 * security.idmap.isolated, else `base` (from idmap_default()). */
int inst_lxc_idmap_for(json_t *config, const struct idmap *base, const struct idmap *used,
		       struct idmap *out, cell_error *err);
/* "00:16:3e:xx:xx:xx" (LXD's OUI), for volatile.<dev>.hwaddr. */
void inst_lxc_random_hwaddr(char out[18]);
/* The liblxc config text for `spec` (validates first).  Reads the host
 * (online CPUs, RAM, device nodes, bind sources) but changes nothing. [any] */
int inst_lxc_config_render(const struct inst_lxc_spec *spec, strbuf *out, cell_error *err);
/* Make <dir>, create device nodes and the seccomp policy, rotate lxc.log,
 * write <dir>/config atomically.  inst_lxc_start does this itself. [worker] */
int inst_lxc_config_write(const struct inst_lxc_spec *spec, cell_error *err);

/* ---- lifecycle (inst_lxc.c) ------------------------------------------- */

/* Write the config and start through `celld forkstart` (daemonized: the
 * container outlives celld).  Returns when it runs; *init_pid may be NULL.
 * Watched by the monitor when inst_monitor_init ran.  409 when running;
 * on failure the message ends with the tail of lxc.log. [worker] */
int inst_lxc_start(const struct inst_lxc_spec *spec, pid_t *init_pid, cell_error *err);
/* Kill now (stop --force) and wait until liblxc's monitor is gone, so a
 * start may follow at once.  0 when already stopped. [worker] */
int inst_lxc_stop(const char *name, cell_error *err);
/* Ask init to halt (lxc.signal.halt) and wait up to timeout_s (< 0: no
 * limit); -ETIMEDOUT (409) when still running, then the caller may stop. [worker] */
int inst_lxc_shutdown(const char *name, int timeout_s, cell_error *err);
/* Ask init to reboot in place (lxc.signal.reboot); the container keeps its
 * liblxc monitor, so no stop is reported.  A restart with a new config is
 * inst_lxc_shutdown/stop + inst_lxc_start. [worker] */
int inst_lxc_reboot(const char *name, cell_error *err);
int inst_lxc_freeze(const char *name, cell_error *err);     /* [worker] */
int inst_lxc_unfreeze(const char *name, cell_error *err);   /* [worker] */
/* Apply every limits.* of `config` (the new expanded config) to the running
 * container's cgroups; removed keys go back to unlimited. [any, brief] */
int inst_lxc_set_limits(const char *name, json_t *config, cell_error *err);
/* Hot-plug into a running container: nic (bridged/macvlan/p2p veth made
 * straight into the container's netns) and disk bind mounts (through
 * `celld forkmount`).  `config` (may be NULL) supplies
 * volatile.<dev>.hwaddr/host_name. [worker] */
int inst_lxc_device_add(const char *name, const char *devname, json_t *dev, json_t *config,
			cell_error *err);
/* Hot-unplug: delete the nic inside the container (its veth peer goes too),
 * or lazily unmount the disk path (`celld forkumount`). [worker] */
int inst_lxc_device_remove(const char *name, const char *devname, json_t *dev,
			   cell_error *err);
/* Run a command inside through fork_exec_spawn (protocol: daemon/fork.h):
 * 409 when the container is not running.  Only spawns, never waits: the
 * helper is a direct child of celld that the caller reaps; it exits as the
 * command does.  The command's host pid comes on `reply` (with "pid <n>",
 * the helper's, when the exec server started it: *helper is 0 then), then
 * it waits on `gate`. [loop] */
struct inst_lxc_exec {
	char *const *argv;    /* the command, NULL-terminated, looked up in env's PATH */
	char *const *env;     /* "KEY=VALUE", NULL-terminated: the whole environment */
	const char *cwd;      /* NULL: the container's / */
	uid_t uid;            /* inside the container */
	gid_t gid;
	int stdio[3];         /* the command's 0, 1, 2 (a pty slave thrice: interactive) */
	int gate;             /* read end of the start gate */
	int reply;            /* write end of a pipe for "ok <pid>" / "err <errno> <msg>" */
};
int inst_lxc_exec_spawn(const char *name, const struct inst_lxc_exec *e, pid_t *helper,
			cell_error *err);
/* Remove $lxcpath/<name> (config, logs, device nodes); 409 when running.
 * The rootfs belongs to storage and is not touched. [worker] */
int inst_lxc_delete(const char *name, cell_error *err);
/* Rename $lxcpath/<old> while stopped; 409 when running or `new` exists. */
int inst_lxc_rename(const char *oldname, const char *newname, cell_error *err);

/* ---- state (inst_lxc_state.c) ----------------------------------------- */

/* Status from cgroups and /proc only; *init_pid (may be NULL) is 0 when
 * stopped. [any, ~10 us] */
enum inst_status inst_lxc_status(const char *name, pid_t *init_pid);
const char *inst_status_name(enum inst_status s);   /* "Running", "Stopped", "Frozen" */
/* LXD's InstanceState: status, status_code, pid, processes, cpu.usage (ns),
 * memory.{usage,usage_peak,swap_usage,swap_usage_peak}, network.<if>
 * .{addresses[{family,address,netmask,scope}],counters,hwaddr,host_name,
 * mtu,state,type} read inside the container's netns, and an empty `disk`
 * for the API layer to fill from storage.  Stopped containers get zeros. [any] */
json_t *inst_lxc_state(const char *name, cell_error *err);

/* Reattach: the containers under lxcpath that run now, with init pids, in
 * name order; each is watched by the monitor when it is up.  Nothing is
 * started or stopped.  Free with inst_lxc_running_free. [any] */
struct inst_running {
	char *name;
	pid_t pid;
	enum inst_status status;
};
int inst_lxc_list_running(struct inst_running **out, size_t *n, cell_error *err);
void inst_lxc_running_free(struct inst_running *r, size_t n);

/* ---- stop monitor (inst_monitor.c) ------------------------------------ */

/* Called on the loop thread when a watched container has stopped for good
 * (its liblxc monitor exited): poweroff inside, crash, or a stop/shutdown
 * asked through this module; a reboot in place is not a stop.  The API
 * layer updates state, sends events, deletes ephemeral containers; it tells
 * its own stops/restarts apart by its own bookkeeping. */
typedef void (*inst_monitor_cb)(const char *name, void *data);
/* [loop] */
int inst_monitor_init(uv_loop_t *loop, inst_monitor_cb on_stop, void *data);
/* Watch a running container (pidfd of its liblxc monitor on uv_poll).
 * -ESRCH when not running. [any] */
int inst_monitor_watch(const char *name, cell_error *err);
/* Forget a container without a callback (before delete). [any] */
void inst_monitor_unwatch(const char *name);
size_t inst_monitor_count(void);   /* [loop] */
/* Close every handle so the loop can end. [loop] */
void inst_monitor_shutdown(void);

#endif
