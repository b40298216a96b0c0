/*
 * /1.0/instances/<name>/console, as LXD's:
 *   POST    attach (websocket operation "0" + "control"; inst_console.c)
 *   GET     the console log
 *   DELETE  clear it
 *
 * The log is <lxc dir>/console.log, which liblxc's monitor appends every
 * byte of console output to while the container runs (lxc.console.logfile,
 * opened O_APPEND, so truncating it under the monitor is safe).  LXD reads
 * the monitor's ring buffer instead while the container runs; the file
 * holds the same bytes and more, and reading it needs no liblxc call.
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
#include "daemon/inst_console.h"
#include "daemon/inst_lxc.h"
#include "daemon/instances.h"
#include "daemon/operations.h"
#include "daemon/router.h"

static int console_exists(const char *name, cell_error *err)
{
	int rc = db_inst_exists(name, err);

	if (rc == 0)
		return cell_err(err, 404, ENOENT, "Instance not found");
	return rc < 0 ? rc : 0;
}

static void console_event(const char *action, const char *name)
{
	char src[128];

	snprintf(src, sizeof(src), "/1.0/instances/%s", name);
	events_lifecycle(action, src, NULL);
}

/* ---- POST: attach ------------------------------------------------------------------- */

static int console_size(json_t *body, const char *key, unsigned *out, cell_error *err)
{
	json_t *v = json_object_get(body, key);

	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535)
		return cell_err(err, 400, EINVAL, "Invalid \"%s\": must be an integer from 0 to 65535",
				key);
	*out = (unsigned)json_integer_value(v);
	return 0;
}

static int console_check_body(json_t *body, unsigned *w, unsigned *h, cell_error *err)
{
	const char *type = json_string_value(json_object_get(body, "type"));

	if (console_size(body, "width", w, err) < 0 || console_size(body, "height", h, err) < 0)
		return -EINVAL;
	if (!type || !*type || !strcmp(type, "console"))
		return 0;
	if (!strcmp(type, "vga"))
		return cell_err(err, 400, EINVAL, "VGA console is only supported by virtual machines");
	return cell_err(err, 400, EINVAL, "Unknown console type \"%s\"", type);
}

/* LXD's wording for both refusals. */
static int console_running(const char *name, cell_error *err)
{
	switch (inst_lxc_status(name, NULL)) {
	case INST_STOPPED:
		return cell_err(err, 400, ESRCH, "Instance is not running");
	case INST_FROZEN:
		return cell_err(err, 400, EBUSY, "Instance is frozen");
	default:
		return 0;
	}
}

static void console_post(http_req *req, http_resp *resp)
{
	_cleanup_json_ json_t *body = NULL;
	const char *name = req->params[0];
	struct operation *op;
	cell_error err = { 0 };
	unsigned w, h;

	if (http_req_json(req, &body, &err) < 0 || console_check_body(body, &w, &h, &err) < 0 ||
	    console_exists(name, &err) < 0 || console_running(name, &err) < 0 ||
	    inst_console_session_new(name, w, h, inst_op_resources(name, NULL), &op, &err) < 0)
		return resp_from_err(resp, &err);
	console_event("instance-console", name);
	resp_async(resp, op);
}

/* ---- GET / DELETE: the log ------------------------------------------------------------ */

/* celld's own file in celld's own directory, opened without following a
 * link and only when regular, as LXD refuses anything else. */
static int console_log_open(const char *name, int flags, cell_error *err)
{
	_cleanup_free_ char *dir = inst_lxc_dir(name);
	_cleanup_free_ char *path = dir ? xasprintf("%s/console.log", dir) : NULL;
	struct stat st;
	int fd;

	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	fd = open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 && errno == ENOENT)
		return -ENOENT;   /* never started: an empty log */
	if (fd < 0)
		return cell_err_sys(err, 500, errno, "open the console log");
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return cell_err(err, 500, EINVAL, "The console log is not a regular file");
	}
	return fd;
}

static void console_log_get(http_req *req, http_resp *resp)
{
	const char *name = req->params[0];
	cell_error err = { 0 };
	struct stat st;
	int fd;

	if (console_exists(name, &err) < 0)
		return resp_from_err(resp, &err);
	fd = console_log_open(name, O_RDONLY, &err);
	if (fd < 0 && fd != -ENOENT)
		return resp_from_err(resp, &err);
	resp->status = 200;
	snprintf(resp->content_type, sizeof(resp->content_type), "application/octet-stream");
	http_resp_header(resp, "Content-Disposition", "inline;filename=console.log");
	if (fd >= 0 && fstat(fd, &st) == 0) {
		resp->body_fd = fd;
		resp->body_fd_len = st.st_size;
	} else if (fd >= 0) {
		close(fd);
	}
	if (inst_lxc_status(name, NULL) != INST_STOPPED)
		console_event("instance-console-retrieved", name);
}

static void console_log_delete(http_req *req, http_resp *resp)
{
	const char *name = req->params[0];
	cell_error err = { 0 };
	_cleanup_close_ int fd = -1;

	if (console_exists(name, &err) < 0)
		return resp_from_err(resp, &err);
	fd = console_log_open(name, O_WRONLY, &err);
	if (fd < 0 && fd != -ENOENT)
		return resp_from_err(resp, &err);
	if (fd >= 0 && ftruncate(fd, 0) < 0)
		return resp_error(resp, 500, "clear the console log: %s", strerror(errno));
	console_event("instance-console-reset", name);
	resp_empty(resp);
}

void api_instances_console_register(void)
{
	router_add_instances(&(struct route){
		.pattern = "/1.0/instances/{name}/console",
		.methods = {
			{ HTTP_POST, console_post, 0, NULL },
			{ HTTP_GET, console_log_get, 0, NULL },
			{ HTTP_DELETE, console_log_delete, 0, NULL },
		},
	});
}
