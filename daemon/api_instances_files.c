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
 * also the running container's map.  A file read whole (kernel files,
 * files reporting 0 bytes) is read on a worker, in the running container's
 * UTS/IPC/network namespaces.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/idmap.h"
#include "common/util.h"
#include "daemon/events.h"
#include "daemon/http.h"
#include "daemon/inst_files.h"
#include "daemon/inst_lxc.h"
#include "daemon/instances.h"
#include "daemon/router.h"
#include "storage/storage.h"

/* *pid: the running container's init, 0 when stopped. */
static char *files_root_path(const struct inst *in, pid_t *pid, cell_error *err)
{
	struct stor_pool *p;
	char *path;

	*pid = 0;
	if (inst_lxc_status(in->name, pid) != INST_STOPPED && *pid > 0)
		return xasprintf("/proc/%d/root", (int)*pid);
	*pid = 0;
	if (!(p = instances_pool(in, err)))
		return NULL;
	if (!(path = stor_ct_rootfs(p, in->name)))
		cell_err(err, 500, ENOMEM, "out of memory");
	return path;
}

/* The root (O_PATH directory fd) and id map of the instance in the path;
 * pid (may be NULL): its init's, 0 when stopped. */
static int files_ctx(const http_req *req, int *rootfd, struct idmap *map, pid_t *pid,
		     cell_error *err)
{
	pid_t scratch;
	_cleanup_inst_ struct inst in = { 0 };
	_cleanup_free_ char *root = NULL;

	*rootfd = -1;
	if (db_inst_get(req->params[0], &in, err) < 0)
		return -ENOENT;
	if (inst_idmap_on_disk(&in, map) < 0)
		return cell_err(err, 500, ENOENT, "%s: no id map", in.name);
	if (!(root = files_root_path(&in, pid ? pid : &scratch, err)))
		return -EIO;
	*rootfd = inst_files_open_root(root, err);
	return *rootfd < 0 ? *rootfd : 0;
}

/*
 * inst_files works with the host root's capabilities.  Inside a running
 * container that must not reach the kernel's own filesystems (its /proc,
 * /sys, cgroups, devpts, ...): there a write with them is not a file
 * change but a kernel setting, a cgroup limit or a process's state, which
 * the container's root could not have made.  LXD acts as the container's
 * root there; celld refuses writes and deletes on them.  The parent and,
 * when it exists, the target itself are checked (a kernel file may be
 * bind-mounted anywhere); what cannot be told is left to inst_files to
 * refuse.
 */
static int files_check_writable(int rootfd, const char *path, cell_error *err)
{
	_cleanup_free_ char *name = NULL;
	_cleanup_close_ int parent = -1, target = -1;
	cell_error scratch;

	if (!path || (parent = inst_files_open_parent(rootfd, path, &name, &scratch)) < 0)
		return 0;
	target = openat(parent, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (inst_files_kernel_fs(parent) || (target >= 0 && inst_files_kernel_fs(target)))
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

/* A file read whole (inst_files.h), on a worker. */
struct files_read {
	struct inst_files_read *r;
	int pidfd;            /* the container's init, -1 when stopped */
	char *event_src;      /* NULL: no event (HEAD) */
	char *path;
};

static void files_read_free(void *arg)
{
	struct files_read *f = arg;

	inst_files_read_free(f->r);
	if (f->pidfd >= 0)
		close(f->pidfd);
	free(f->event_src);
	free(f->path);
	free(f);
}

static void files_read_run(void *arg, http_resp *out)
{
	struct files_read *f = arg;

	inst_files_read_run(f->r, f->pidfd, out);
	if (f->event_src && out->status / 100 == 2)
		events_lifecycle("instance-file-retrieved", f->event_src,
				 json_pack("{s:s}", "path", f->path));
}

static void files_read_later(http_req *req, http_resp *resp, struct inst_files_read *r, pid_t pid)
{
	struct files_read *f = calloc(1, sizeof(*f));

	if (!f) {
		inst_files_read_free(r);
		return resp_error(resp, 500, "out of memory");
	}
	f->r = r;
	/* Only now: the common case (files with a size) never needs it.  A
	 * container that stopped meanwhile has no namespaces left to show. */
	f->pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
	f->path = strdup(http_req_query(req, "path"));
	if (req->method == HTTP_GET)
		f->event_src = xasprintf("/1.0/instances/%s", req->params[0]);
	if (!f->path || (req->method == HTTP_GET && !f->event_src)) {
		files_read_free(f);
		return resp_error(resp, 500, "out of memory");
	}
	inst_api_defer(req, resp, files_read_run, f, files_read_free);
}

static void files_get(http_req *req, http_resp *resp)
{
	_cleanup_idmap_ struct idmap map = { 0 };
	_cleanup_close_ int rootfd = -1;
	struct inst_files_read *whole = NULL;
	cell_error err = { 0 };
	pid_t pid = 0;

	if (files_ctx(req, &rootfd, &map, &pid, &err) < 0)
		return resp_from_err(resp, &err);
	inst_files_get_start(rootfd, &map, http_req_query(req, "path"), resp, &whole);
	if (whole)
		return files_read_later(req, resp, whole, pid);
	if (req->method == HTTP_GET)
		files_event(req, resp, "instance-file-retrieved");
}

static void files_delete(http_req *req, http_resp *resp)
{
	_cleanup_idmap_ struct idmap map = { 0 };
	_cleanup_close_ int rootfd = -1;
	cell_error err = { 0 };

	if (files_ctx(req, &rootfd, &map, NULL, &err) < 0 ||
	    files_check_writable(rootfd, http_req_query(req, "path"), &err) < 0)
		return resp_from_err(resp, &err);
	inst_files_delete(rootfd, http_req_query(req, "path"), resp);
	files_event(req, resp, "instance-file-deleted");
}

/* A push.  A refused request (unknown instance, bad header, path outside
 * anything) still has its body drained and is answered by end():
 * inst_files.h says why.  Only running out of memory fails begin itself. */
struct files_post {
	struct inst_files_post *p;    /* NULL when refused before inst_files */
	bool failed;
	cell_error err;
};

static int files_begin(http_req *req, void **state, cell_error *err)
{
	_cleanup_idmap_ struct idmap map = { 0 };
	_cleanup_close_ int rootfd = -1;
	struct files_post *f = calloc(1, sizeof(*f));

	if (!f)
		return cell_err(err, 500, ENOMEM, "out of memory");
	*state = f;
	if (files_ctx(req, &rootfd, &map, NULL, &f->err) < 0 ||
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

static int files_chunk(void *state, const void *data, size_t len, cell_error *err)
{
	struct files_post *f = state;

	if (f->failed || !f->p)
		return 0;
	return inst_files_post_chunk(f->p, data, len, err);
}

static int files_sink(void *state)
{
	struct files_post *f = state;

	return f->failed || !f->p ? -1 : inst_files_post_sink(f->p);
}

static void files_end(void *state, http_req *req, http_resp *resp, const cell_error *failed)
{
	struct files_post *f = state;

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
	.begin = files_begin, .chunk = files_chunk, .end = files_end, .sink = files_sink,
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
