/*
 * /1.0/instances/<name>/logs: the files the runtime keeps in
 * $CELL_DIR/containers/<name>/ (lxc.log, the previous start's lxc.log.old,
 * console.log), lxc.conf for the generated liblxc config as LXD serves it,
 * and exec's record-output files.
 *
 * record-output files (exec_<operation uuid>.stdout/.stderr) live in
 * <lxc dir>/exec-output/ and are served where both LXD generations look:
 *  - /logs/exec-output[/<file>], LXD 5.15+'s place and the URLs an exec
 *    operation's metadata.output holds;
 *  - /logs/<file>, LXD 5.0's (it kept them beside lxc.log): GET /logs
 *    lists them there, as LXD 5.0 does, and GET/DELETE work there too.
 * They expire 48 hours after their last write (exec_output_sweep), so a
 * script recording every exec does not fill the disk.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/daemon.h"
#include "daemon/events.h"
#include "daemon/http.h"
#include "daemon/inst_lxc.h"
#include "daemon/instances.h"
#include "daemon/router.h"

#define XOUT_MAX_AGE_S (48 * 3600)
#define XOUT_SWEEP_MS (3600 * 1000)

/* API name -> file in the lxc dir; `deletable` as LXD allows. */
static const struct {
	const char *api, *file;
	bool deletable;
} log_files[] = {
	{ "lxc.log", "lxc.log", false },
	{ "lxc.log.old", "lxc.log.old", true },
	{ "console.log", "console.log", true },
	{ "lxc.conf", "config", false },
};

static int log_index(const char *api)
{
	for (size_t i = 0; i < ARRAY_SIZE(log_files); i++)
		if (!strcmp(log_files[i].api, api))
			return (int)i;
	return -1;
}

static bool instance_exists(http_req *req, http_resp *resp)
{
	cell_error err;
	int rc = db_inst_exists(req->params[0], &err);

	if (rc <= 0) {
		if (rc == 0)
			resp_error(resp, 404, "Instance not found");
		else
			resp_from_err(resp, &err);
		return false;
	}
	return true;
}

static char *log_path(const char *name, int idx)
{
	_cleanup_free_ char *dir = inst_lxc_dir(name);
	return dir ? xasprintf("%s/%s", dir, log_files[idx].file) : NULL;
}

/* "/1.0/instances/<name>/logs/" or the /1.0/containers spelling, as asked. */
static char *logs_url(const http_req *req)
{
	bool containers = str_has_prefix(req->path, "/1.0/containers");
	return xasprintf("/1.0/%s/%s/logs/", containers ? "containers" : "instances", req->params[0]);
}

/* ---- record-output files -------------------------------------------------------------- */

/* exec_<operation uuid>.stdout / .stderr: nothing else is ever served. */
static bool xout_name_valid(const char *n)
{
	if (!str_has_prefix(n, "exec_") ||
	    !(str_has_suffix(n, ".stdout") || str_has_suffix(n, ".stderr")))
		return false;
	for (const char *c = n; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
		      *c == '-' || *c == '_' || *c == '.'))
			return false;
	return !strstr(n, "..");
}

/* The instance's exec-output directory; -ENOENT with err untouched when
 * nothing was recorded yet, an answer in err otherwise. */
static int xout_dirfd(const char *name, cell_error *err)
{
	_cleanup_free_ char *dir = inst_lxc_dir(name);
	_cleanup_free_ char *path = dir ? xasprintf("%s/" INST_EXEC_OUTPUT_DIR, dir) : NULL;
	int rc = db_inst_exists(name, err);

	if (rc <= 0)
		return rc == 0 ? cell_err(err, 404, ENOENT, "Instance not found") : rc;
	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	rc = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rc < 0 && errno != ENOENT)
		return cell_err_sys(err, 500, errno, "open %s", path);
	return rc < 0 ? -ENOENT : rc;
}

static int xout_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Append prefix + name for each file, sorted (LXD lists a directory read). */
static int xout_list_into(const char *name, const char *prefix, json_t *out, cell_error *err)
{
	int fd = xout_dirfd(name, err);
	_cleanup_closedir_ DIR *d = NULL;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int rc = 0;

	if (fd == -ENOENT && !err->msg[0])
		return 0;
	if (fd < 0)
		return fd;
	if (!(d = fdopendir(fd))) {
		close(fd);
		return cell_err_sys(err, 500, errno, "read " INST_EXEC_OUTPUT_DIR);
	}
	while (!rc && (de = readdir(d))) {
		if (!xout_name_valid(de->d_name))
			continue;
		if (n == cap) {
			char **more = realloc(names, (cap ? cap * 2 : 16) * sizeof(*names));
			if (!more) {
				rc = cell_err(err, 500, ENOMEM, "out of memory");
				break;
			}
			names = more;
			cap = cap ? cap * 2 : 16;
		}
		if (!(names[n] = strdup(de->d_name)))
			rc = cell_err(err, 500, ENOMEM, "out of memory");
		else
			n++;
	}
	if (n)
		qsort(names, n, sizeof(*names), xout_cmp);
	for (size_t i = 0; i < n; i++) {
		if (!rc)
			json_array_append_new(out, json_sprintf("%s%s", prefix, names[i]));
		free(names[i]);
	}
	free(names);
	return rc;
}

/* The directory of an existing record-output file name, or an answer. */
static int xout_open(const http_req *req, const char *file, http_resp *resp)
{
	cell_error err = { 0 };
	int dfd;

	if (!xout_name_valid(file)) {
		resp_error(resp, 400, "Invalid exec output file name");
		return -EINVAL;
	}
	dfd = xout_dirfd(req->params[0], &err);
	if (dfd == -ENOENT && !err.msg[0])
		cell_err(&err, 404, ENOENT, "Exec output file not found");
	if (dfd < 0)
		resp_from_err(resp, &err);
	return dfd;
}

static void xout_get_file(http_req *req, const char *file, http_resp *resp)
{
	_cleanup_close_ int dfd = xout_open(req, file, resp), fd = -1;
	char disp[128];
	struct stat st;

	if (dfd < 0)
		return;
	fd = openat(dfd, file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return resp_error(resp, 404, "Exec output file not found");
	resp->status = 200;
	snprintf(resp->content_type, sizeof(resp->content_type), "application/octet-stream");
	snprintf(disp, sizeof(disp), "inline;filename=%s", file);
	http_resp_header(resp, "Content-Disposition", disp);
	resp->body_fd = steal_fd(fd);
	resp->body_fd_len = st.st_size;
}

static void xout_delete_file(http_req *req, const char *file, http_resp *resp)
{
	_cleanup_close_ int dfd = xout_open(req, file, resp);
	_cleanup_free_ char *src = NULL;

	if (dfd < 0)
		return;
	if (unlinkat(dfd, file, 0) < 0)
		return resp_error(resp, errno == ENOENT ? 404 : 500, "Delete %s: %s", file,
				  errno == ENOENT ? "Exec output file not found" : strerror(errno));
	if ((src = xasprintf("/1.0/instances/%s/logs/%s", req->params[0], file)))
		events_lifecycle("instance-log-deleted", src, NULL);
	resp_empty(resp);
}

static void xout_list(http_req *req, http_resp *resp)
{
	_cleanup_free_ char *logs = logs_url(req);
	_cleanup_free_ char *prefix = logs ? xasprintf("%s" INST_EXEC_OUTPUT_DIR "/", logs) : NULL;
	cell_error err = { 0 };
	json_t *out = json_array();

	if (!prefix || !out) {
		json_decref(out);
		return resp_error(resp, 500, "out of memory");
	}
	if (xout_list_into(req->params[0], prefix, out, &err) < 0) {
		json_decref(out);
		return resp_from_err(resp, &err);
	}
	resp_sync(resp, out);
}

static void xout_get(http_req *req, http_resp *resp) { xout_get_file(req, req->params[1], resp); }

static void xout_delete(http_req *req, http_resp *resp)
{
	xout_delete_file(req, req->params[1], resp);
}

/* ---- expiry --------------------------------------------------------------------------- */

/* Remove the record-output files of one lxc dir last written before `before`. */
static int xout_expire_dir(int lxcfd, const char *inst, time_t before)
{
	_cleanup_free_ char *rel = xasprintf("%s/" INST_EXEC_OUTPUT_DIR, inst);
	int fd = rel ? openat(lxcfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
	_cleanup_closedir_ DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	struct stat st;
	int n = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((de = readdir(d))) {
		if (!xout_name_valid(de->d_name) ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode) || st.st_mtime >= before)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			n++;
		else if (errno != ENOENT)
			log_warn("logs: expire %s/%s: %s", rel, de->d_name, strerror(errno));
	}
	return n;
}

/* Every instance's record-output files last written before `before`; the
 * number removed.  Only the lxcpath is read: no database.  [any thread] */
static int xout_expire(time_t before)
{
	const char *lxcpath = inst_lxc_lxcpath();
	int fd = lxcpath ? open(lxcpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	_cleanup_closedir_ DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	int n = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n += xout_expire_dir(dirfd(d), de->d_name, before);
	return n;
}

static uv_timer_t xout_timer;
static bool xout_sweeping;

static void xout_sweep_work(uv_work_t *w)
{
	int *n = w->data;
	*n = xout_expire(time(NULL) - XOUT_MAX_AGE_S);
}

static void xout_sweep_done(uv_work_t *w, int status)
{
	int *n = w->data;

	if (status == 0 && *n > 0)
		log_info("logs: %d exec output file(s) older than 48 hours removed", *n);
	xout_sweeping = false;
	free(n);
	free(w);
}

/* Hourly on the pool, and once right after start-up (as LXD's log expiry
 * task): the files are small and few, the sweep a directory read. */
static void xout_sweep_tick(uv_timer_t *t)
{
	uv_work_t *w;

	(void)t;
	if (celld->shutting_down || xout_sweeping || !(w = calloc(1, sizeof(*w))))
		return;
	if (!(w->data = calloc(1, sizeof(int))) ||
	    uv_queue_work(celld->loop, w, xout_sweep_work, xout_sweep_done) < 0) {
		free(w->data);
		free(w);
		return;
	}
	xout_sweeping = true;
}

static void xout_sweep_start(void)
{
	if (uv_timer_init(celld->loop, &xout_timer) < 0)
		return;
	uv_timer_start(&xout_timer, xout_sweep_tick, 0, XOUT_SWEEP_MS);
	/* Housekeeping must not keep the loop alive at shutdown. */
	uv_unref((uv_handle_t *)&xout_timer);
}

/* POST /internal/testing/logs/expire (CELL_TEST_HOOKS=1): the sweep now,
 * on the pool, for tests that age files with utime(). */
static void xout_test_expire_run(void *arg, http_resp *out)
{
	(void)arg;
	resp_sync(out, json_pack("{s:i}", "removed", xout_expire(time(NULL) - XOUT_MAX_AGE_S)));
}

static void xout_test_expire(http_req *req, http_resp *resp)
{
	inst_api_defer(req, resp, xout_test_expire_run, NULL, NULL);
}

/* ---- /logs ---------------------------------------------------------------------------- */

static void logs_get(http_req *req, http_resp *resp)
{
	_cleanup_free_ char *prefix = logs_url(req);
	cell_error err = { 0 };
	json_t *out;

	if (!instance_exists(req, resp))
		return;
	if (!prefix || !(out = json_array()))
		return resp_error(resp, 500, "out of memory");
	for (size_t i = 0; i < ARRAY_SIZE(log_files); i++) {
		_cleanup_free_ char *path = log_path(req->params[0], (int)i);
		if (!path || access(path, F_OK) < 0)
			continue;
		json_array_append_new(out, json_sprintf("%s%s", prefix, log_files[i].api));
	}
	if (xout_list_into(req->params[0], prefix, out, &err) < 0) {
		json_decref(out);
		return resp_from_err(resp, &err);
	}
	resp_sync(resp, out);
}

static int log_lookup(http_req *req, http_resp *resp)
{
	int idx;

	if (!instance_exists(req, resp))
		return -1;
	if ((idx = log_index(req->params[1])) < 0) {
		resp_error(resp, 400, "Invalid log file name");
		return -1;
	}
	return idx;
}

static void log_get(http_req *req, http_resp *resp)
{
	_cleanup_free_ char *path = NULL;
	char disp[128];
	struct stat st;
	int idx, fd;

	if (str_has_prefix(req->params[1], "exec_"))
		return xout_get_file(req, req->params[1], resp);
	if ((idx = log_lookup(req, resp)) < 0)
		return;
	path = log_path(req->params[0], idx);
	fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		resp_error(resp, 404, "Log file not found");
		return;
	}
	resp->status = 200;
	snprintf(resp->content_type, sizeof(resp->content_type), "application/octet-stream");
	snprintf(disp, sizeof(disp), "inline;filename=%s", log_files[idx].api);
	http_resp_header(resp, "Content-Disposition", disp);
	resp->body_fd = fd;
	resp->body_fd_len = st.st_size;
}

static void log_delete(http_req *req, http_resp *resp)
{
	_cleanup_free_ char *path = NULL;
	char url[256];
	int idx;

	if (str_has_prefix(req->params[1], "exec_"))
		return xout_delete_file(req, req->params[1], resp);
	if ((idx = log_lookup(req, resp)) < 0)
		return;
	if (!log_files[idx].deletable) {
		resp_error(resp, 400, "Only log files excluding lxc.log and lxc.conf may be deleted");
		return;
	}
	path = log_path(req->params[0], idx);
	if (!path || (unlink(path) < 0 && errno != ENOENT)) {
		resp_error(resp, 500, "delete %s: %s", log_files[idx].api, strerror(errno));
		return;
	}
	snprintf(url, sizeof(url), "/1.0/instances/%s/logs/%s", req->params[0], log_files[idx].api);
	events_lifecycle("instance-log-deleted", url, NULL);
	resp_empty(resp);
}

void api_instances_logs_register(void)
{
	const char *hooks = getenv("CELL_TEST_HOOKS");

	/* Before /logs/{file}, which would take "/logs/exec-output". */
	router_add_instances(&(struct route){
		.pattern = "/1.0/instances/{name}/logs/" INST_EXEC_OUTPUT_DIR,
		.methods = { { HTTP_GET, xout_list, 0, NULL } },
	});
	router_add_instances(&(struct route){
		.pattern = "/1.0/instances/{name}/logs/" INST_EXEC_OUTPUT_DIR "/{file}",
		.methods = { { HTTP_GET, xout_get, 0, NULL }, { HTTP_DELETE, xout_delete, 0, NULL } },
	});
	router_add_instances(&(struct route){
		.pattern = "/1.0/instances/{name}/logs",
		.methods = { { HTTP_GET, logs_get, 0, NULL } },
	});
	router_add_instances(&(struct route){
		.pattern = "/1.0/instances/{name}/logs/{file}",
		.methods = {
			{ HTTP_GET, log_get, 0, NULL },
			{ HTTP_DELETE, log_delete, 0, NULL },
		},
	});
	if (hooks && !strcmp(hooks, "1"))
		router_add(&(struct route){ .pattern = "/internal/testing/logs/expire",
					    .methods = { { HTTP_POST, xout_test_expire, 0, NULL } } });
	xout_sweep_start();
}
