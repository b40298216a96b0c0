#include "daemon/config.h"

#include <stddef.h>

/*
 * GET /1.0 api_extensions.  Clients decide what to call from this list, so
 * an entry is added only once its feature works end to end, with LXD's name
 * (doc/api-extensions.md).  Keep LXD's order: append.
 */
const char *const cell_api_extensions[] = {
	"etag",                 /* ETag + If-Match on /1.0 and certificates */
	"patch",                /* PATCH on /1.0 and certificates */
	"certificate_update",   /* PUT/PATCH/ETag on /1.0/certificates/<fp> */
	"kernel_features",      /* environment.kernel_features */
	"lxc_features",         /* environment.lxc_features */
	"api_os",               /* environment.os_name, os_version */
	"server_instance_driver_operational",   /* driver lists only working drivers */
	"profile_usedby",       /* used_by on /1.0/profiles/<name> */
	/* /1.0/storage-pools and /1.0/storage-pools/<name>; the lxc client
	 * needs this name for every storage command.  The volumes endpoints
	 * the extension also names are not served yet. */
	"storage",
	"storage_btrfs_mount_options",   /* btrfs.mount_options, applied by remount */
	/* Instances (api_instances*.c, api_snapshots.c, instances*.c). */
	"container_host_shutdown_timeout",   /* honoured by a host shutdown (SIGPWR, /internal/shutdown) */
	"container_stop_priority",           /* boot.stop.priority orders that shutdown */
	"container_last_used_at",            /* last_used_at, set on start */
	"container_cpu_time",                /* state cpu.usage */
	"container_image_properties",        /* image.* keys from the image's properties */
	"id_map",                            /* security.idmap.isolated/size, volatile.idmap.* */
	"entity_description",                /* description on instances and snapshots */
	"id_map_base",                       /* security.idmap.base */
	/* Only GET .../backups (an empty list) exists: `lxc info` needs the
	 * name to list backups; creating one is refused. */
	"container_backup",
	"container_protection_delete",       /* security.protection.delete */
	"container_full",                    /* recursion=2: state and snapshots */
	"container_protection_shift",        /* security.protection.shift refuses a shift */
	"snapshot_expiry",                   /* snapshots.expiry, expires_at, pruning */
	"snapshot_expiry_creation",          /* expires_at in POST .../snapshots */
	"id_map_current",                    /* volatile.idmap.current */
	"instances",                         /* /1.0/instances beside /1.0/containers */
	"api_filtering",                     /* ?filter= on GET /1.0/instances */
	/* Images (api_images*.c, images.c). */
	"image_create_aliases",              /* aliases in POST /1.0/images (url, publish) */
	"image_force_refresh",               /* POST /1.0/images/<fp>/refresh (local: a clear error) */
	"images_expiry",                     /* expires_at editable by PUT/PATCH */
	/* Exec, console and files (api_instances_{exec,console,files}.c). */
	"directory_manipulation",            /* directories created and listed, X-LXD-type */
	"container_exec_recording",          /* record-output, served under logs/exec-output */
	"container_exec_signal_handling",    /* control "signal" reaches the command */
	"file_delete",                       /* DELETE .../files */
	"file_append",                       /* X-LXD-write: append */
	"file_symlinks",                     /* X-LXD-type: symlink on POST */
	"console",                           /* POST/GET/DELETE .../console */
	"file_get_symlink",                  /* GET answers a symlink as one */
	"container_exec_user_group_cwd",     /* user, group, cwd in POST .../exec */
	"instance_file_head",                /* HEAD .../files */
	NULL,
};
