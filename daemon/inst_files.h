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
 * written chunk by chunk).
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

/* GET/HEAD: a file streams from an fd, a directory is a sync JSON list of
 * names, a symlink's body is its target; X-LXD-uid/gid (container ids),
 * X-LXD-mode, X-LXD-type on each.  Errors go into resp. */
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
/* Commit (failed == NULL) or roll back; answers in resp and frees p. */
void inst_files_post_end(struct inst_files_post *p, http_resp *resp, const cell_error *failed);

#endif
