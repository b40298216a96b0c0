/*
 * /1.0/instances/<name>/files?path=..., as LXD's: GET/HEAD, POST (file,
 * directory, symlink; overwrite or append; X-LXD-uid/gid/mode in the
 * container's ids), DELETE.  The work is inst_files.c's; this file picks
 * the root and the id map:
 *
 *  - a running (or frozen) container: /proc/<init pid>/root, so paths are
 *    seen with the container's own mounts, as a process inside sees them;
 *  - a stopped one: its rootfs directory on its storage pool.
 *
 * Either way every path is resolved with RESOLVE_IN_ROOT under that root,
 * and ids are translated through the map the rootfs is stored in
 * (volatile.last_state.idmap; empty for privileged containers), which is
 * also the running container's map.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/idmap.h"
#include "common/util.h"
#include "daemon/events.h"
#include "daemon/http.h"
#include "daemon/http_chunked.h"
#include "daemon/inst_files.h"
#include "daemon/inst_lxc.h"
#include "daemon/instances.h"
#include "daemon/router.h"
#include "storage/storage.h"

static char *files_root_path(const struct inst *in, cell_error *err)
{
	struct stor_pool *p;
	char *path;
	pid_t pid = 0;

	if (inst_lxc_status(in->name, &pid) != INST_STOPPED && pid > 0)
		return xasprintf("/proc/%d/root", (int)pid);
	if (!(p = instances_pool(in, err)))
		return NULL;
	if (!(path = stor_ct_rootfs(p, in->name)))
		cell_err(err, 500, ENOMEM, "out of memory");
	return path;
}

/* The root (O_PATH directory fd) and id map of the instance in the path. */
static int files_ctx(const http_req *req, int *rootfd, struct idmap *map, cell_error *err)
{
	_cleanup_inst_ struct inst in = { 0 };
	_cleanup_free_ char *root = NULL;

	*rootfd = -1;
	if (db_inst_get(req->params[0], &in, err) < 0)
		return -ENOENT;
	if (inst_idmap_on_disk(&in, map) < 0)
		return cell_err(err, 500, ENOENT, "%s: no id map", in.name);
	if (!(root = files_root_path(&in, err)))
		return -EIO;
	*rootfd = inst_files_open_root(root, err);
	return *rootfd < 0 ? *rootfd : 0;
}

/*
 * inst_files works as the host's root.  Inside a running container that
 * must not reach the kernel's own filesystems (its /proc, /sys, cgroups,
 * devpts, ...): there a write as the host's root is not a file change but
 * a kernel setting, a cgroup limit or a process's state, which the
 * container's root could not have made.  LXD acts as the container's root
 * there; celld refuses writes and deletes on them.
 */
static bool files_kernel_fs(int fd)
{
	static const unsigned long kinds[] = {
		PROC_SUPER_MAGIC, SYSFS_MAGIC, CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC,
		DEVPTS_SUPER_MAGIC, SECURITYFS_MAGIC, DEBUGFS_MAGIC, TRACEFS_MAGIC, BPF_FS_MAGIC,
		NSFS_MAGIC, SELINUX_MAGIC, SMACK_MAGIC, EFIVARFS_MAGIC, PSTOREFS_MAGIC,
		BINFMTFS_MAGIC, 0x65735543 /* fusectl */, 0x62656570 /* configfs */,
	};
	struct statfs st;

	if (fstatfs(fd, &st) < 0)
		return false;   /* what cannot be told is left to inst_files to refuse */
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if ((unsigned long)st.f_type == kinds[i])
			return true;
	return false;
}

/* The parent and, when it exists, the target itself (a kernel file may be
 * bind-mounted anywhere). */
static int files_check_writable(int rootfd, const char *path, cell_error *err)
{
	_cleanup_free_ char *name = NULL;
	_cleanup_close_ int parent = -1, target = -1;
	cell_error scratch;

	if (!path || (parent = inst_files_open_parent(rootfd, path, &name, &scratch)) < 0)
		return 0;
	target = openat(parent, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (files_kernel_fs(parent) || (target >= 0 && files_kernel_fs(target)))
		return cell_err(err, 400, EROFS,
				"Cannot change %s: it is on a kernel filesystem of the instance", path);
	return 0;
}

static void files_event(const http_req *req, const http_resp *resp, const char *action)
{
	const char *path = http_req_query(req, "path");
	char src[128];

	if (resp->status / 100 != 2 || !path)
		return;
	snprintf(src, sizeof(src), "/1.0/instances/%s", req->params[0]);
	events_lifecycle(action, src, json_pack("{s:s}", "path", path));
}

static void files_get(http_req *req, http_resp *resp)
{
	_cleanup_idmap_ struct idmap map = { 0 };
	_cleanup_close_ int rootfd = -1;
	cell_error err = { 0 };

	if (files_ctx(req, &rootfd, &map, &err) < 0)
		return resp_from_err(resp, &err);
	inst_files_get(rootfd, &map, http_req_query(req, "path"), resp);
	if (req->method == HTTP_GET)
		files_event(req, resp, "instance-file-retrieved");
}

static void files_delete(http_req *req, http_resp *resp)
{
	_cleanup_idmap_ struct idmap map = { 0 };
	_cleanup_close_ int rootfd = -1;
	cell_error err = { 0 };

	if (files_ctx(req, &rootfd, &map, &err) < 0 ||
	    files_check_writable(rootfd, http_req_query(req, "path"), &err) < 0)
		return resp_from_err(resp, &err);
	inst_files_delete(rootfd, http_req_query(req, "path"), resp);
	files_event(req, resp, "instance-file-deleted");
}

/* A refused request (unknown instance, bad header, path outside anything)
 * still has its body drained and is answered by end(): inst_files.h says
 * why.  Only running out of memory fails begin itself.
 *
 * Go's net/http, and so `lxc file push`, sends bodies of unknown length
 * chunked, which libwebsockets 4.1 hands over undecoded and never ends:
 * such a body is decoded here, and its last chunk ends the request. */
struct files_post {
	struct inst_files_post *p;    /* NULL when refused before inst_files */
	http_req *req;
	bool chunked, failed;         /* failed: drop the rest, answer err */
	struct http_chunked ch;
	cell_error err;
};

static int files_begin(http_req *req, void **state, cell_error *err)
{
	_cleanup_idmap_ struct idmap map = { 0 };
	_cleanup_close_ int rootfd = -1;
	const char *te = http_req_header(req, "transfer-encoding");
	struct files_post *f = calloc(1, sizeof(*f));

	if (!f)
		return cell_err(err, 500, ENOMEM, "out of memory");
	*state = f;
	f->req = req;
	f->chunked = te && strcasestr(te, "chunked");
	http_chunked_init(&f->ch);
	if (files_ctx(req, &rootfd, &map, &f->err) < 0 ||
	    files_check_writable(rootfd, http_req_query(req, "path"), &f->err) < 0) {
		f->failed = true;
		return 0;
	}
	if (inst_files_post_begin(rootfd, &map, http_req_query(req, "path"), req, &f->p, err) < 0) {
		free(f);
		*state = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* Never fails: a write error is kept for the answer and the rest of the
 * body dropped, since a chunked body must still be read to its end. */
static int files_out(void *data, const void *buf, size_t len, cell_error *unused)
{
	struct files_post *f = data;

	(void)unused;
	if (!f->failed && f->p && inst_files_post_chunk(f->p, buf, len, &f->err) < 0)
		f->failed = true;
	return 0;
}

static int files_chunk(void *state, const void *data, size_t len, cell_error *err)
{
	struct files_post *f = state;
	size_t used = 0;
	int rc;

	if (!f->chunked) {
		if (f->failed || !f->p)
			return 0;
		return inst_files_post_chunk(f->p, data, len, err);
	}
	rc = http_chunked_feed(&f->ch, data, len, &used, files_out, f, err);
	if (rc < 0 && !f->failed) {
		f->failed = true;   /* bad framing: the end cannot be found, answer now */
		f->err = *err;
	}
	if (rc != 0)
		http_req_body_finished(f->req);   /* calls files_end, which frees f */
	return 0;
}

static void files_end(void *state, http_req *req, http_resp *resp, const cell_error *failed)
{
	struct files_post *f = state;

	if (!failed && !f->failed && f->chunked && !http_chunked_done(&f->ch)) {
		/* lws 4.1 takes a body without Content-Length for 100 MiB and
		 * stops there. */
		cell_err(&f->err, 413, EFBIG, "Chunked request bodies are limited to 100 MiB by this "
			 "server; send the file with a Content-Length");
		f->failed = true;
		http_req_body_finished(req);
	}
	if (f->p)
		inst_files_post_end(f->p, resp, failed ? failed : f->failed ? &f->err : NULL);
	else
		resp_from_err(resp, failed ? failed : &f->err);
	free(f);
	files_event(req, resp, "instance-file-pushed");
}

/* The server calls the plain handler when there is no body at all
 * (an empty file, a directory). */
static void files_post_empty(http_req *req, http_resp *resp)
{
	void *state = NULL;
	cell_error err = { 0 };

	if (files_begin(req, &state, &err) < 0)
		return resp_from_err(resp, &err);
	files_end(state, req, resp, NULL);
}

static const struct route_body_fns files_body = {
	.begin = files_begin, .chunk = files_chunk, .end = files_end,
};

void api_instances_files_register(void)
{
	router_add_instances(&(struct route){
		.pattern = "/1.0/instances/{name}/files",
		.methods = { { HTTP_GET, files_get, 0, NULL },
			     { HTTP_POST, files_post_empty, ROUTE_STREAM_BODY, &files_body },
			     { HTTP_DELETE, files_delete, 0, NULL } },
	});
}
