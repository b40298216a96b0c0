/*
 * File access inside a container's root, as LXD's
 * /1.0/instances/<name>/files?path=... serves it, independent of the
 * containers API: the caller gives a root directory fd and the container's
 * id map (NULL or empty: privileged, ids are the host's).
 *
 * Every path is resolved with openat2(RESOLVE_IN_ROOT |
 * RESOLVE_NO_MAGICLINKS) under that root: "..", absolute symlinks and
 * symlinked parents all stay inside it, whatever a process in the container
 * does concurrently.  Operations on the final component (create, replace,
 * delete) work on a parent directory fd with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW,
 * so a symlink there is acted on itself, never followed.
 *
 * Loop thread; every call is bounded, non-blocking apart from page-cache
 * I/O, and large files stream (GET hands the server an fd, POST bodies are
 * written chunk by chunk).  The one read that can take long, a file whose
 * size says nothing (see inst_files_get_start), is left to the caller.
 *
 * The caller is the host's root.  What is created (files, directories,
 * symlinks, the upload's temporary) is created with the thread's fsuid and
 * fsgid set to the container root's host ids, so filesystems the container
 * mounted itself, whose user namespace has no host uid 0, accept it.
 */
#ifndef CELL_DAEMON_INST_FILES_H
#define CELL_DAEMON_INST_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "common/idmap.h"
#include "daemon/http.h"

/* LXD's defaults for what a push creates without X-LXD-mode. */
#define INST_FILES_FILE_MODE 0644
#define INST_FILES_DIR_MODE 0750
/* The most a GET reads into memory from a file of unknown size. */
#define INST_FILES_READ_MAX (32u << 20)

enum inst_files_type { INST_FILES_FILE, INST_FILES_DIRECTORY, INST_FILES_SYMLINK };

/* The X-LXD-* request headers; -1 where absent. */
struct inst_files_hdrs {
	int64_t uid, gid;          /* container ids */
	int mode;                  /* permission bits */
	enum inst_files_type type;
	bool append;               /* X-LXD-write: append (else overwrite) */
};

/* The root to pass to the calls below: a running container's
 * "/proc/<init pid>/root" (its own mounts) or a stopped one's rootfs dir.
 * Returns an O_PATH directory fd or -errno. */
int inst_files_open_root(const char *path, cell_error *err);

/* openat2(rootfd, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
 * O_CLOEXEC is added.  Returns the fd or -errno (err: status by errno). */
int inst_files_resolve(int rootfd, const char *path, int flags, mode_t mode, cell_error *err);
/* Split a container path into its parent ("/" or "/a/b") and last name;
 * -EINVAL (400) for "", "/", "." and ".." as last names.  Both malloc'd. */
int inst_files_split(const char *path, char **parent, char **name, cell_error *err);
/* The parent directory of `path` resolved under the root, and its last name. */
int inst_files_open_parent(int rootfd, const char *path, char **name, cell_error *err);
/* Lexically clean an absolute path ("/a/./b/../c" -> "/a/c"); never above "/". */
char *inst_files_clean_path(const char *path);
/* Parse X-LXD-uid/gid/mode/type/write as LXD does (mode: "0644", "420"). */
int inst_files_parse_headers(const http_req *req, struct inst_files_hdrs *h, cell_error *err);
/* Is fd on a kernel filesystem (procfs, sysfs, cgroupfs, debugfs, ...)?
 * There a file's size is not its content's, and a write is a kernel
 * setting rather than a file change. */
bool inst_files_kernel_fs(int fd);

/* GET/HEAD: a file streams from an fd, a directory is a sync JSON list of
 * names, a symlink's body is its target; X-LXD-uid/gid (container ids),
 * X-LXD-mode, X-LXD-type on each.  Errors go into resp.
 *
 * A regular file whose size cannot be trusted (any file on a kernel
 * filesystem: procfs reports 0, sysfs 4096; any file reporting 0 bytes,
 * such as a FUSE file) is read to its end instead, at most
 * INST_FILES_READ_MAX bytes, and answered from memory with the length
 * read.  That read may wait on a kernel handler or on a FUSE server in the
 * container, so get_start answers everything else and leaves it in *whole
 * (resp untouched) for inst_files_read_run, which the caller runs on a
 * worker and frees with inst_files_read_free.  inst_files_get does both
 * here (test hooks). */
struct inst_files_read;
void inst_files_get_start(int rootfd, const struct idmap *map, const char *path, http_resp *resp,
			  struct inst_files_read **whole);
/* Any thread.  pidfd >= 0: the read runs in a thread that joined that
 * process's UTS, IPC and network namespaces, whose values kernel files
 * show (/proc/sys/kernel/hostname, /proc/sys/net/...); the path is
 * resolved again there, under the same root. */
void inst_files_read_run(struct inst_files_read *r, int pidfd, http_resp *resp);
void inst_files_read_free(struct inst_files_read *r);
void inst_files_get(int rootfd, const struct idmap *map, const char *path, http_resp *resp);
/* DELETE: a file, a symlink (itself) or an empty directory. */
void inst_files_delete(int rootfd, const char *path, http_resp *resp);

/* POST, streamed (route_body_fns): begin checks everything it can before
 * any byte is written; chunks go to a hidden temporary file that end()
 * renames over the target, so readers see the old or the new file, never
 * half of one, and a failed upload leaves the old file.  Symlink targets are
 * the (small) body; directories ignore it.  rootfd is only borrowed.
 * begin fails only for lack of memory: a refused request (bad header, path
 * not found, ...) is remembered, its body dropped, and end() answers it,
 * because answering before the body is read would reset the connection
 * under a client still sending. */
struct inst_files_post;
int inst_files_post_begin(int rootfd, const struct idmap *map, const char *path,
			  const http_req *req, struct inst_files_post **out, cell_error *err);
int inst_files_post_chunk(struct inst_files_post *p, const void *data, size_t len,
			  cell_error *err);
/* The upload's descriptor, for a server that moves body bytes into it
 * itself (splice) instead of through post_chunk: a file being written
 * whole, at its current offset.  -1 when bytes must go through post_chunk
 * (append: splice refuses O_APPEND; symlinks, directories, refusals). */
int inst_files_post_sink(const struct inst_files_post *p);
/* Commit (failed == NULL) or roll back; answers in resp and frees p. */
void inst_files_post_end(struct inst_files_post *p, http_resp *resp, const cell_error *failed);

#endif
