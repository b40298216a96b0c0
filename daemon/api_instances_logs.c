/*
 * /1.0/instances/<name>/logs and /logs/<file>: the files the runtime keeps
 * in $CELL_DIR/containers/<name>/ (lxc.log, the previous start's
 * lxc.log.old, console.log), plus lxc.conf for the generated liblxc config
 * as LXD serves it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "daemon/events.h"
#include "daemon/http.h"
#include "daemon/inst_lxc.h"
#include "daemon/instances.h"
#include "daemon/router.h"

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

static void logs_get(http_req *req, http_resp *resp)
{
	bool containers = str_has_prefix(req->path, "/1.0/containers");
	json_t *out;

	if (!instance_exists(req, resp) || !(out = json_array()))
		return;
	for (size_t i = 0; i < ARRAY_SIZE(log_files); i++) {
		_cleanup_free_ char *path = log_path(req->params[0], (int)i);
		char url[256];
		if (!path || access(path, F_OK) < 0)
			continue;
		snprintf(url, sizeof(url), "/1.0/%s/%s/logs/%s", containers ? "containers" : "instances",
			 req->params[0], log_files[i].api);
		json_array_append_new(out, json_string(url));
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
}
