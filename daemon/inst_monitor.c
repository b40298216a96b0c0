/*
 * Stop detection.  Each running container's liblxc monitor process is
 * watched through a pidfd on uv_poll: it becomes readable when that process
 * exits, which is when the container has fully stopped (init dead, cgroups
 * and nics cleaned).  The monitor, not init, is watched because a reboot
 * in place replaces init but keeps the monitor.  Cost per container: one fd
 * and one small struct; nothing is polled on a timer.
 *
 * Watch requests come from any thread (a start on a worker) through a
 * mutex-protected queue and a uv_async; handles live on the loop thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "daemon/inst_internal.h"
#include "daemon/inst_lxc.h"

struct watch {
	struct watch *next;
	uv_poll_t poll;
	int pidfd;
	pid_t mon;
	char name[];
};

struct req {
	struct req *next;
	bool unwatch;
	int pidfd;
	pid_t mon;
	char name[];
};

static struct {
	uv_loop_t *loop;
	uv_async_t async;
	inst_monitor_cb cb;
	void *data;
	struct watch *watches;   /* loop thread only */
	pthread_mutex_t lock;    /* guards up and pending */
	struct req *pending;
	bool up;
} mon = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void watch_closed(uv_handle_t *h)
{
	struct watch *w = h->data;

	close(w->pidfd);
	free(w);
}

static struct watch *watch_unlink(const char *name)
{
	for (struct watch **pp = &mon.watches; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->name, name) == 0) {
			struct watch *w = *pp;
			*pp = w->next;
			return w;
		}
	}
	return NULL;
}

static void watch_drop(struct watch *w)
{
	uv_poll_stop(&w->poll);
	uv_close((uv_handle_t *)&w->poll, watch_closed);
}

/* pidfd of the container's liblxc monitor, checked to be that process. */
static int resolve(const char *name, pid_t *pid)
{
	int fd;

	if (!(*pid = inst_cg_monitor_pid(name)))
		return -ESRCH;
	if ((fd = pidfd_open(*pid, 0)) < 0)
		return -errno;
	/* The pid was read before the pidfd pinned it: still in the cgroup? */
	if (inst_cg_monitor_pid(name) != *pid) {
		close(fd);
		return -ESRCH;
	}
	return fd;
}

static void on_exit_readable(uv_poll_t *h, int status, int events);

static void watch_add(const char *name, int pidfd, pid_t pid)
{
	struct watch *w = watch_unlink(name);
	size_t len = strlen(name) + 1;

	if (w && w->mon == pid) {   /* already watched */
		w->next = mon.watches;
		mon.watches = w;
		close(pidfd);
		return;
	}
	if (w)
		watch_drop(w);   /* restarted under a new monitor before we noticed */
	w = calloc(1, sizeof(*w) + len);
	if (!w || uv_poll_init(mon.loop, &w->poll, pidfd) < 0) {
		log_error("monitor %s: cannot watch it", name);
		free(w);
		close(pidfd);
		return;
	}
	memcpy(w->name, name, len);
	w->pidfd = pidfd;
	w->mon = pid;
	w->poll.data = w;
	w->next = mon.watches;
	mon.watches = w;
	uv_poll_start(&w->poll, UV_READABLE, on_exit_readable);
}

static void on_exit_readable(uv_poll_t *h, int status, int events)
{
	struct watch *w = h->data;
	pid_t pid;
	int fd;

	watch_unlink(w->name);
	watch_drop(w);   /* freed after this callback: w->name stays valid */
	/* A restart may have raced the old monitor's exit: follow the new one. */
	if ((fd = resolve(w->name, &pid)) >= 0 && pid != w->mon) {
		watch_add(w->name, fd, pid);
		return;
	}
	if (fd >= 0)
		close(fd);
	log_info("container %s stopped", w->name);
	if (mon.cb)
		mon.cb(w->name, mon.data);
}

static void on_requests(uv_async_t *a)
{
	struct req *list, *rev = NULL;

	pthread_mutex_lock(&mon.lock);
	list = mon.pending;
	mon.pending = NULL;
	pthread_mutex_unlock(&mon.lock);
	while (list) {   /* queued newest first: process in arrival order */
		struct req *next = list->next;
		list->next = rev;
		rev = list;
		list = next;
	}
	while (rev) {
		struct req *r = rev;
		rev = r->next;
		if (r->unwatch) {
			struct watch *w = watch_unlink(r->name);
			if (w)
				watch_drop(w);
		} else {
			watch_add(r->name, r->pidfd, r->mon);
		}
		free(r);
	}
}

static int enqueue(const char *name, bool unwatch, int pidfd, pid_t pid)
{
	size_t len = strlen(name) + 1;
	struct req *r = malloc(sizeof(*r) + len);

	if (!r)
		return -ENOMEM;
	memcpy(r->name, name, len);
	r->unwatch = unwatch;
	r->pidfd = pidfd;
	r->mon = pid;
	pthread_mutex_lock(&mon.lock);
	if (!mon.up) {
		pthread_mutex_unlock(&mon.lock);
		free(r);
		return -ENOTCONN;
	}
	r->next = mon.pending;
	mon.pending = r;
	uv_async_send(&mon.async);
	pthread_mutex_unlock(&mon.lock);
	return 0;
}

int inst_monitor_init(uv_loop_t *loop, inst_monitor_cb on_stop, void *data)
{
	int rc;

	if (mon.up)
		return -EALREADY;
	mon.loop = loop;
	mon.cb = on_stop;
	mon.data = data;
	if ((rc = uv_async_init(loop, &mon.async, on_requests)) < 0)
		return rc;
	pthread_mutex_lock(&mon.lock);
	mon.up = true;
	pthread_mutex_unlock(&mon.lock);
	return 0;
}

int inst_monitor_watch(const char *name, cell_error *err)
{
	pid_t pid;
	int fd, rc;

	pthread_mutex_lock(&mon.lock);
	rc = mon.up ? 0 : -ENOTCONN;
	pthread_mutex_unlock(&mon.lock);
	if (rc < 0)
		return cell_err(err, 500, ENOTCONN, "monitor %s: the monitor is not running", name);
	if (!inst_lxc_name_valid(name) || (fd = resolve(name, &pid)) < 0)
		return cell_err(err, 409, ESRCH, "monitor %s: not running", name);
	if ((rc = enqueue(name, false, fd, pid)) < 0) {
		close(fd);
		return cell_err(err, 500, -rc, "monitor %s: cannot queue", name);
	}
	return 0;
}

void inst_monitor_unwatch(const char *name)
{
	enqueue(name, true, -1, 0);
}

size_t inst_monitor_count(void)
{
	size_t n = 0;

	for (struct watch *w = mon.watches; w; w = w->next)
		n++;
	return n;
}

static void async_closed(uv_handle_t *h) { (void)h; }

void inst_monitor_shutdown(void)
{
	struct req *r;

	pthread_mutex_lock(&mon.lock);
	if (!mon.up) {
		pthread_mutex_unlock(&mon.lock);
		return;
	}
	mon.up = false;
	r = mon.pending;
	mon.pending = NULL;
	pthread_mutex_unlock(&mon.lock);
	while (r) {
		struct req *next = r->next;
		if (r->pidfd >= 0)
			close(r->pidfd);
		free(r);
		r = next;
	}
	while (mon.watches) {
		struct watch *w = mon.watches;
		mon.watches = w->next;
		watch_drop(w);
	}
	uv_close((uv_handle_t *)&mon.async, async_closed);
}
