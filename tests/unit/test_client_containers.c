/* The container commands of the cell CLI (list, launch/init, start/stop,
 * info, delete, rename/move, snapshot/restore, copy, config and devices,
 * profile, storage) run in-process through cli_main against a fake daemon
 * on unix sockets.  Expected tables and texts were produced by LXD 5.0's
 * own `lxc` against the same fixtures, so these tests hold cell to it
 * byte for byte; request bodies are the ones `lxc` sends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client/cli.h"
#include "client/inst.h"
#include "common/cleanup.h"
#include "common/strbuf.h"
#include "common/util.h"
#include "cli_run.h"

/* ------------------------------------------------------------ fixtures */

/* Three instances as GET /1.0/instances?recursion=2 answers: web1
 * (running, two snapshots), db (stopped), eph (ephemeral, two NICs). */
static const char fx_full[] =
	"[{\"architecture\":\"x86_64\",\"config\":{\"image.os\":\"Debian\",\"limits.memory\":\"512MiB\",\"volatile.base_imag"
	"e\":\"2c1f4b1a9e0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\"},\"devices\":{\"data\":{\"path\":\"/s"
	"rv\",\"source\":\"/tmp\",\"type\":\"disk\"}},\"ephemeral\":false,\"profiles\":[\"default\"],\"stateful\":false,\"descr"
	"iption\":\"web server\",\"created_at\":\"2024-03-05T10:20:30.123456789Z\",\"expanded_config\":{\"image.os\":\"De"
	"bian\",\"limits.memory\":\"512MiB\",\"volatile.base_image\":\"2c1f4b1a9e0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e"
	"1d0c9b8a7f6e5d4c3b\"},\"expanded_devices\":{\"eth0\":{\"name\":\"eth0\",\"network\":\"cellbr0\",\"type\":\"nic\"},\"ro"
	"ot\":{\"path\":\"/\",\"pool\":\"default\",\"type\":\"disk\"},\"data\":{\"path\":\"/srv\",\"source\":\"/tmp\",\"type\":\"disk\"}"
	"},\"name\":\"web1\",\"status\":\"Running\",\"status_code\":103,\"last_used_at\":\"2024-03-06T11:00:00Z\",\"location"
	"\":\"none\",\"type\":\"container\",\"project\":\"default\",\"backups\":null,\"state\":{\"status\":\"Running\",\"status_c"
	"ode\":103,\"disk\":{\"root\":{\"usage\":12345678}},\"memory\":{\"usage\":52428800,\"usage_peak\":104857600,\"swap_"
	"usage\":0,\"swap_usage_peak\":0},\"network\":{\"lo\":{\"addresses\":[{\"family\":\"inet\",\"address\":\"127.0.0.1\",\""
	"netmask\":\"8\",\"scope\":\"local\"}],\"counters\":{\"bytes_received\":0,\"bytes_sent\":0,\"packets_received\":0,\"p"
	"ackets_sent\":0},\"hwaddr\":\"\",\"host_name\":\"\",\"mtu\":65536,\"state\":\"up\",\"type\":\"loopback\"},\"eth0\":{\"addr"
	"esses\":[{\"family\":\"inet\",\"address\":\"10.0.3.5\",\"netmask\":\"24\",\"scope\":\"global\"},{\"family\":\"inet6\",\"ad"
	"dress\":\"fd42::5\",\"netmask\":\"64\",\"scope\":\"global\"},{\"family\":\"inet6\",\"address\":\"fe80::1\",\"netmask\":\"6"
	"4\",\"scope\":\"link\"}],\"counters\":{\"bytes_received\":1000,\"bytes_sent\":2500000,\"packets_received\":10,\"pa"
	"ckets_sent\":20},\"hwaddr\":\"00:16:3e:aa:bb:cc\",\"host_name\":\"veth1234\",\"mtu\":1500,\"state\":\"up\",\"type\":\""
	"broadcast\"}},\"pid\":4242,\"processes\":7,\"cpu\":{\"usage\":3500000000}},\"snapshots\":[{\"name\":\"snap0\",\"crea"
	"ted_at\":\"2024-03-05T12:00:00Z\",\"expires_at\":\"0001-01-01T00:00:00Z\",\"stateful\":false},{\"name\":\"snap1\""
	",\"created_at\":\"2024-03-05T13:00:00Z\",\"expires_at\":\"2024-04-01T00:00:00Z\",\"stateful\":true}]},{\"archit"
	"ecture\":\"x86_64\",\"config\":{\"image.os\":\"Ubuntu\",\"volatile.base_image\":\"9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d"
	"4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e\"},\"devices\":{},\"ephemeral\":false,\"profiles\":[\"default\",\"big\"],\"st"
	"ateful\":false,\"description\":\"\",\"created_at\":\"2024-03-05T10:20:30.123456789Z\",\"expanded_config\":{\"ima"
	"ge.os\":\"Ubuntu\",\"volatile.base_image\":\"9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9"
	"f8e\"},\"expanded_devices\":{\"eth0\":{\"name\":\"eth0\",\"network\":\"cellbr0\",\"type\":\"nic\"},\"root\":{\"path\":\"/\""
	",\"pool\":\"default\",\"type\":\"disk\"}},\"name\":\"db\",\"status\":\"Stopped\",\"status_code\":102,\"last_used_at\":\"1"
	"970-01-01T00:00:00Z\",\"location\":\"none\",\"type\":\"container\",\"project\":\"default\",\"backups\":null,\"state\""
	":{\"status\":\"Stopped\",\"status_code\":102,\"disk\":{\"root\":{\"usage\":2048}},\"memory\":{\"usage\":0,\"usage_pea"
	"k\":0,\"swap_usage\":0,\"swap_usage_peak\":0},\"network\":null,\"pid\":0,\"processes\":0,\"cpu\":{\"usage\":0}},\"sn"
	"apshots\":null},{\"architecture\":\"x86_64\",\"config\":{\"image.os\":\"Debian\",\"user.comment\":\"hello, world\","
	"\"volatile.base_image\":\"2c1f4b1a9e0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\"},\"devices\":"
	"{},\"ephemeral\":true,\"profiles\":[\"default\"],\"stateful\":false,\"description\":\"\",\"created_at\":\"2024-03-0"
	"5T10:20:30.123456789Z\",\"expanded_config\":{\"image.os\":\"Debian\",\"user.comment\":\"hello, world\",\"volatil"
	"e.base_image\":\"2c1f4b1a9e0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\"},\"expanded_devices\""
	":{\"eth0\":{\"name\":\"eth0\",\"network\":\"cellbr0\",\"type\":\"nic\"},\"root\":{\"path\":\"/\",\"pool\":\"default\",\"type\""
	":\"disk\"}},\"name\":\"eph\",\"status\":\"Running\",\"status_code\":103,\"last_used_at\":\"2024-03-06T11:00:00Z\",\"l"
	"ocation\":\"none\",\"type\":\"container\",\"project\":\"default\",\"backups\":null,\"state\":{\"status\":\"Running\",\"s"
	"tatus_code\":103,\"disk\":{},\"memory\":{\"usage\":1073741824,\"usage_peak\":0,\"swap_usage\":0,\"swap_usage_pea"
	"k\":0},\"network\":{\"eth0\":{\"addresses\":[{\"family\":\"inet\",\"address\":\"10.0.3.7\",\"netmask\":\"24\",\"scope\":\""
	"global\"}],\"counters\":{\"bytes_received\":1000,\"bytes_sent\":2500000,\"packets_received\":10,\"packets_sent"
	"\":20},\"hwaddr\":\"00:16:3e:aa:bb:cc\",\"host_name\":\"veth1234\",\"mtu\":1500,\"state\":\"up\",\"type\":\"broadcast\""
	"},\"eth1\":{\"addresses\":[{\"family\":\"inet\",\"address\":\"10.0.4.7\",\"netmask\":\"24\",\"scope\":\"global\"}],\"coun"
	"ters\":{\"bytes_received\":1000,\"bytes_sent\":2500000,\"packets_received\":10,\"packets_sent\":20},\"hwaddr\":"
	"\"00:16:3e:aa:bb:cc\",\"host_name\":\"veth1234\",\"mtu\":1500,\"state\":\"up\",\"type\":\"broadcast\"}},\"pid\":777,\"p"
	"rocesses\":2,\"cpu\":{\"usage\":61000000000}},\"snapshots\":[]}]";

static const char fx_rec1[] =
	"[{\"architecture\":\"x86_64\",\"config\":{\"image.os\":\"Debian\",\"limits.memory\":\"512MiB\",\"volatile.base_imag"
	"e\":\"2c1f4b1a9e0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\"},\"devices\":{\"data\":{\"path\":\"/s"
	"rv\",\"source\":\"/tmp\",\"type\":\"disk\"}},\"ephemeral\":false,\"profiles\":[\"default\"],\"stateful\":false,\"descr"
	"iption\":\"web server\",\"created_at\":\"2024-03-05T10:20:30.123456789Z\",\"expanded_config\":{\"image.os\":\"De"
	"bian\",\"limits.memory\":\"512MiB\",\"volatile.base_image\":\"2c1f4b1a9e0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e"
	"1d0c9b8a7f6e5d4c3b\"},\"expanded_devices\":{\"eth0\":{\"name\":\"eth0\",\"network\":\"cellbr0\",\"type\":\"nic\"},\"ro"
	"ot\":{\"path\":\"/\",\"pool\":\"default\",\"type\":\"disk\"},\"data\":{\"path\":\"/srv\",\"source\":\"/tmp\",\"type\":\"disk\"}"
	"},\"name\":\"web1\",\"status\":\"Running\",\"status_code\":103,\"last_used_at\":\"2024-03-06T11:00:00Z\",\"location"
	"\":\"none\",\"type\":\"container\",\"project\":\"default\"},{\"architecture\":\"x86_64\",\"config\":{\"image.os\":\"Ubun"
	"tu\",\"volatile.base_image\":\"9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e\"},\"devic"
	"es\":{},\"ephemeral\":false,\"profiles\":[\"default\",\"big\"],\"stateful\":false,\"description\":\"\",\"created_at\""
	":\"2024-03-05T10:20:30.123456789Z\",\"expanded_config\":{\"image.os\":\"Ubuntu\",\"volatile.base_image\":\"9f8e"
	"7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e\"},\"expanded_devices\":{\"eth0\":{\"name\":\"e"
	"th0\",\"network\":\"cellbr0\",\"type\":\"nic\"},\"root\":{\"path\":\"/\",\"pool\":\"default\",\"type\":\"disk\"}},\"name\":\"d"
	"b\",\"status\":\"Stopped\",\"status_code\":102,\"last_used_at\":\"1970-01-01T00:00:00Z\",\"location\":\"none\",\"typ"
	"e\":\"container\",\"project\":\"default\"},{\"architecture\":\"x86_64\",\"config\":{\"image.os\":\"Debian\",\"user.com"
	"ment\":\"hello, world\",\"volatile.base_image\":\"2c1f4b1a9e0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f"
	"6e5d4c3b\"},\"devices\":{},\"ephemeral\":true,\"profiles\":[\"default\"],\"stateful\":false,\"description\":\"\",\"c"
	"reated_at\":\"2024-03-05T10:20:30.123456789Z\",\"expanded_config\":{\"image.os\":\"Debian\",\"user.comment\":\"h"
	"ello, world\",\"volatile.base_image\":\"2c1f4b1a9e0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b"
	"\"},\"expanded_devices\":{\"eth0\":{\"name\":\"eth0\",\"network\":\"cellbr0\",\"type\":\"nic\"},\"root\":{\"path\":\"/\",\"p"
	"ool\":\"default\",\"type\":\"disk\"}},\"name\":\"eph\",\"status\":\"Running\",\"status_code\":103,\"last_used_at\":\"202"
	"4-03-06T11:00:00Z\",\"location\":\"none\",\"type\":\"container\",\"project\":\"default\"}]";

static const char fx_web1[] =
	"{\"architecture\":\"x86_64\",\"config\":{\"limits.cpu\":\"1\",\"volatile.eth0.hwaddr\":\"00:16:3e:aa:bb:cc\","
	"\"volatile.base_image\":\"2c1f\"},\"devices\":{\"data\":{\"path\":\"/srv\",\"source\":\"/tmp\",\"type\":\"disk\"}},"
	"\"ephemeral\":false,\"profiles\":[\"default\"],\"stateful\":false,\"description\":\"web server\","
	"\"expanded_config\":{\"limits.cpu\":\"1\",\"limits.memory\":\"1GiB\"},"
	"\"expanded_devices\":{\"data\":{\"path\":\"/srv\",\"source\":\"/tmp\",\"type\":\"disk\"},"
	"\"eth0\":{\"name\":\"eth0\",\"network\":\"cellbr0\",\"type\":\"nic\"}},"
	"\"name\":\"web1\",\"status\":\"Running\",\"status_code\":103,\"type\":\"container\"}";

static const char fx_db[] =
	"{\"architecture\":\"x86_64\",\"config\":{},\"devices\":{},\"ephemeral\":false,\"profiles\":[\"default\"],"
	"\"stateful\":false,\"description\":\"\",\"expanded_config\":{},\"expanded_devices\":{},"
	"\"name\":\"db\",\"status\":\"Stopped\",\"status_code\":102,\"type\":\"container\"}";

static const char fx_profiles[] =
	"[{\"name\":\"default\",\"description\":\"Default profile\",\"config\":{},"
	"\"devices\":{\"root\":{\"path\":\"/\",\"pool\":\"default\",\"type\":\"disk\"},"
	"\"eth0\":{\"name\":\"eth0\",\"network\":\"cellbr0\",\"type\":\"nic\"}},"
	"\"used_by\":[\"/1.0/instances/web1\",\"/1.0/instances/db\"]},"
	"{\"name\":\"big\",\"description\":\"\",\"config\":{\"limits.memory\":\"2GiB\",\"limits.cpu\":\"4\"},"
	"\"devices\":{},\"used_by\":[]}]";

static const char fx_pools[] =
	"[{\"name\":\"default\",\"driver\":\"dir\",\"description\":\"\",\"config\":{\"source\":\"/var/lib/celld/storage-pools/default\"},"
	"\"used_by\":[\"/1.0/profiles/default\",\"/1.0/instances/web1\",\"/1.0/images/2c1f\","
	"\"/1.0/storage-pools/default/volumes/custom/vol1?project=p2\"],\"status\":\"Created\",\"locations\":[\"none\"]},"
	"{\"name\":\"fast\",\"driver\":\"btrfs\",\"description\":\"SSD\",\"config\":{\"source\":\"/dev/sdb\",\"size\":\"10GiB\"},"
	"\"used_by\":[],\"status\":\"Created\",\"locations\":[\"none\"]}]";

/* Item i of a JSON array fixture, as compact JSON (caller frees). */
static char *item(const char *array, size_t i)
{
	json_t *a = json_loads(array, 0, NULL);
	char *s = json_dumps(json_array_get(a, i), JSON_COMPACT);

	json_decref(a);
	assert_non_null(s);
	return s;
}

#define FP "2c1f4b1a9e0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b"

/* --------------------------------------------------------- fake daemon */

/* One canned answer.  async: 202 with an operation whose wait ends in
 * success (resources) or failure (op_err). */
struct route {
	const char *method, *path;
	int status;              /* 0: 200 (or 202 when async) */
	const char *metadata;    /* JSON; NULL: {} */
	const char *etag;
	const char *error;       /* status >= 400: the error envelope's message */
	bool async;
	const char *resources;   /* async: the operation's resources JSON */
	const char *op_err;      /* async: the operation fails with this */
	const char *raw;         /* a non-JSON body as is (logs) */
};

struct fake {
	int lfd;
	pthread_t th;
	pthread_mutex_t lock;
	struct route routes[96];
	int nroutes;
	strbuf log;              /* "METHOD path body\n" per request */
};

static void send_all(int fd, const void *p, size_t n)
{
	const char *s = p;

	while (n) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static void reply(int fd, int status, const char *ctype, const char *extra, const char *body)
{
	char head[512];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Type: %s\r\n%sContent-Length: %zu\r\n\r\n", status,
			 ctype, extra ? extra : "", strlen(body));

	send_all(fd, head, (size_t)n);
	send_all(fd, body, strlen(body));
}

static char *op_json(int idx, const struct route *r, bool done)
{
	int code = !done ? 103 : r->op_err ? 400 : 200;

	return xasprintf("{\"id\":\"op%d\",\"class\":\"task\",\"description\":\"x\",\"created_at\":\"2024-03-05T10:20:30Z\","
			 "\"updated_at\":\"2024-03-05T10:20:30Z\",\"status\":\"%s\",\"status_code\":%d,\"resources\":%s,"
			 "\"metadata\":null,\"may_cancel\":false,\"err\":\"%s\",\"location\":\"none\"}", idx,
			 code == 200 ? "Success" : code == 400 ? "Failure" : "Running", code, r->resources ? r->resources : "{}",
			 done && r->op_err ? r->op_err : "");
}

static void answer(int fd, int idx, const struct route *r)
{
	_cleanup_free_ char *etag = r->etag ? xasprintf("ETag: %s\r\n", r->etag) : NULL;
	_cleanup_free_ char *body = NULL;
	_cleanup_free_ char *op = NULL;

	if (r->raw) {
		reply(fd, r->status ? r->status : 200, "text/plain", NULL, r->raw);
	} else if (r->error) {
		body = xasprintf("{\"type\":\"error\",\"error\":\"%s\",\"error_code\":%d,\"metadata\":null}", r->error, r->status);
		reply(fd, r->status, "application/json", NULL, body);
	} else if (r->async) {
		op = op_json(idx, r, false);
		body = xasprintf("{\"type\":\"async\",\"status\":\"Operation created\",\"status_code\":100,"
				 "\"operation\":\"/1.0/operations/op%d\",\"error_code\":0,\"error\":\"\",\"metadata\":%s}", idx, op);
		reply(fd, 202, "application/json", NULL, body);
	} else {
		body = xasprintf("{\"type\":\"sync\",\"status\":\"Success\",\"status_code\":200,\"operation\":\"\","
				 "\"error_code\":0,\"error\":\"\",\"metadata\":%s}", r->metadata ? r->metadata : "{}");
		reply(fd, r->status ? r->status : 200, "application/json", etag, body);
	}
}

/* The operation op<idx>'s final state. */
static void answer_wait(struct fake *d, int fd, int idx)
{
	_cleanup_free_ char *op = NULL;
	_cleanup_free_ char *body = NULL;

	pthread_mutex_lock(&d->lock);
	op = idx >= 0 && idx < d->nroutes ? op_json(idx, &d->routes[idx], true) : NULL;
	pthread_mutex_unlock(&d->lock);
	body = xasprintf("{\"type\":\"sync\",\"status\":\"Success\",\"status_code\":200,\"metadata\":%s}", op ? op : "null");
	reply(fd, 200, "application/json", NULL, body);
}

static bool read_request(int fd, char *req, size_t cap, char **body)
{
	size_t n = 0;
	long clen = 0;
	char *cl;

	while (n < cap - 1 && !(n >= 4 && !memcmp(req + n - 4, "\r\n\r\n", 4))) {
		if (read(fd, req + n, 1) != 1)
			return false;
		n++;
	}
	req[n] = '\0';
	if ((cl = strcasestr(req, "Content-Length: ")))
		clen = atol(cl + 16);
	*body = req + n;
	for (long i = 0; i < clen && n < cap - 1; i++, n++)
		if (read(fd, req + n, 1) != 1)
			return false;
	req[n] = '\0';
	return true;
}

static bool serve_one(struct fake *d, int fd)
{
	static char none[] = "";
	char req[16384], method[16] = "", path[1024] = "", *body = none;
	int idx = -1, op;
	struct route r = {0};

	if (!read_request(fd, req, sizeof(req), &body))
		return false;
	sscanf(req, "%15s %1023s", method, path);
	pthread_mutex_lock(&d->lock);
	sb_printf(&d->log, "%s %s %s\n", method, path, body);
	for (int i = d->nroutes - 1; i >= 0 && idx < 0; i--)   /* the latest route wins */
		if (!strcmp(d->routes[i].method, method) && !strcmp(d->routes[i].path, path))
			idx = i;
	if (idx >= 0)
		r = d->routes[idx];
	pthread_mutex_unlock(&d->lock);
	if (!strcmp(method, "GET") && sscanf(path, "/1.0/operations/op%d/wait", &op) == 1)
		answer_wait(d, fd, op);
	else if (idx >= 0)
		answer(fd, idx, &r);
	else
		reply(fd, 404, "application/json", NULL, "{\"type\":\"error\",\"error\":\"not found\",\"error_code\":404}");
	return true;
}

struct conn {
	struct fake *d;
	int fd;
};

static void *conn_main(void *arg)
{
	struct conn *c = arg;

	while (serve_one(c->d, c->fd))
		;
	close(c->fd);
	free(c);
	return NULL;
}

/* A thread per connection: a batch keeps several client connections open at once. */
static void *accept_main(void *arg)
{
	struct fake *d = arg;
	int fd;

	while ((fd = accept(d->lfd, NULL, NULL)) >= 0) {
		struct conn *c = malloc(sizeof(*c));
		pthread_t th;
		c->d = d;
		c->fd = fd;
		if (pthread_create(&th, NULL, conn_main, c) == 0)
			pthread_detach(th);
	}
	return NULL;
}

static void fake_start(struct fake *d, const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	pthread_mutex_init(&d->lock, NULL);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	d->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(d->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(d->lfd, 16), 0);
	assert_int_equal(pthread_create(&d->th, NULL, accept_main, d), 0);
}

static void fake_stop(struct fake *d)
{
	shutdown(d->lfd, SHUT_RDWR);
	pthread_join(d->th, NULL);
	close(d->lfd);
	usleep(20000);   /* let connection threads see their peers close */
	sb_free(&d->log);
	pthread_mutex_destroy(&d->lock);
}

static void route(struct fake *d, struct route r)
{
	pthread_mutex_lock(&d->lock);
	assert_true(d->nroutes < (int)ARRAY_SIZE(d->routes));
	d->routes[d->nroutes++] = r;
	pthread_mutex_unlock(&d->lock);
}

static void log_reset(struct fake *d)
{
	pthread_mutex_lock(&d->lock);
	sb_reset(&d->log);
	pthread_mutex_unlock(&d->lock);
}

static char *log_text(struct fake *d)
{
	char *s;

	pthread_mutex_lock(&d->lock);
	s = strdup(d->log.buf ? d->log.buf : "");
	pthread_mutex_unlock(&d->lock);
	return s;
}

#define assert_logged(d, line) do { _cleanup_free_ char *_l = log_text(d); \
	if (!strstr(_l, line)) fail_msg("not requested: %s\nlog:\n%s", line, _l); } while (0)
#define assert_not_logged(d, text) do { _cleanup_free_ char *_l = log_text(d); \
	if (strstr(_l, text)) fail_msg("unexpected request: %s\nlog:\n%s", text, _l); } while (0)

static int log_lines(struct fake *d)
{
	_cleanup_free_ char *l = log_text(d);
	int n = 0;

	for (char *p = l; *p; p++)
		n += *p == '\n';
	return n;
}

/* -------------------------------------------------------- running cell */

struct env {
	char dir[64];
	char sock[128], sock2[128];
	struct fake d, d2;   /* the local daemon, and remote "foo" */
};


/* Run, check exit code and both streams exactly (NULL: not checked). */
#define EXPECT(rc_, out_, err_, ...) do { struct run _r = CELL(__VA_ARGS__); \
	if (_r.rc != (rc_)) fail_msg("exit %d, wanted %d\nstdout: %s\nstderr: %s", _r.rc, (rc_), _r.out, _r.err); \
	if ((out_) != NULL) assert_string_equal(_r.out, (const char *)(out_)); \
	if ((err_) != NULL) assert_string_equal(_r.err, (const char *)(err_)); \
	run_free(&_r); } while (0)

static void rm_rf(const char *path)
{
	_cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", path);
}

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	_cleanup_free_ char *conf = NULL;
	_cleanup_free_ char *path = NULL;
	cell_error err = {0};

	strcpy(e->dir, "/tmp/test_cell_containers_XXXXXX");
	if (!mkdtemp(e->dir))
		return -1;
	snprintf(e->sock, sizeof(e->sock), "%s/unix.socket", e->dir);
	snprintf(e->sock2, sizeof(e->sock2), "%s/foo.socket", e->dir);
	setenv("CELL_CONF", e->dir, 1);
	setenv("CELL_SOCKET", e->sock, 1);
	/* "foo" is a second daemon, reached over its own unix socket. */
	conf = xasprintf("default-remote: local\nremotes:\n  foo:\n    addr: unix://%s\n    protocol: lxd\n", e->sock2);
	path = xasprintf("%s/config.yml", e->dir);
	if (util_write_file_atomic(path, conf, strlen(conf), 0644, &err) < 0)
		return -1;
	fake_start(&e->d, e->sock);
	fake_start(&e->d2, e->sock2);
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	fake_stop(&e->d);
	fake_stop(&e->d2);
	rm_rf(e->dir);
	free(e);
	return 0;
}
/* `lxc list` on the fixtures (LXD 5.0.2, TZ=UTC). */
static const char exp_list_default[] =
	"+------+---------+-----------------+----------------+-----------------------+-----------+\n"
	"| NAME |  STATE  |      IPV4       |      IPV6      |         TYPE          | SNAPSHOTS |\n"
	"+------+---------+-----------------+----------------+-----------------------+-----------+\n"
	"| db   | STOPPED |                 |                | CONTAINER             | 0         |\n"
	"+------+---------+-----------------+----------------+-----------------------+-----------+\n"
	"| eph  | RUNNING | 10.0.4.7 (eth1) |                | CONTAINER (EPHEMERAL) | 0         |\n"
	"|      |         | 10.0.3.7 (eth0) |                |                       |           |\n"
	"+------+---------+-----------------+----------------+-----------------------+-----------+\n"
	"| web1 | RUNNING | 10.0.3.5 (eth0) | fd42::5 (eth0) | CONTAINER             | 2         |\n"
	"+------+---------+-----------------+----------------+-----------------------+-----------+\n";

/* `lxc list --fast` on the fixtures (LXD 5.0.2, TZ=UTC). */
static const char exp_list_fast[] =
	"+------+---------+--------------+----------------------+----------+-----------------------+\n"
	"| NAME |  STATE  | ARCHITECTURE |      CREATED AT      | PROFILES |         TYPE          |\n"
	"+------+---------+--------------+----------------------+----------+-----------------------+\n"
	"| db   | STOPPED | x86_64       | 2024/03/05 10:20 UTC | default  | CONTAINER             |\n"
	"|      |         |              |                      | big      |                       |\n"
	"+------+---------+--------------+----------------------+----------+-----------------------+\n"
	"| eph  | RUNNING | x86_64       | 2024/03/05 10:20 UTC | default  | CONTAINER (EPHEMERAL) |\n"
	"+------+---------+--------------+----------------------+----------+-----------------------+\n"
	"| web1 | RUNNING | x86_64       | 2024/03/05 10:20 UTC | default  | CONTAINER             |\n"
	"+------+---------+--------------+----------------------+----------+-----------------------+\n";

/* `lxc list -c nmMupNDblcFad,user.comment:C:5,devices:root.pool` on the fixtures (LXD 5.0.2, TZ=UTC). */
static const char exp_list_wide[] =
	"+------+--------------+---------------+-----------+------+-----------+------------+--------------+----------------------+----------------------+------------------------------------------------------------------+--------------+-------------+-------+-----------+\n"
	"| NAME | MEMORY USAGE | MEMORY USAGE% | CPU USAGE | PID  | PROCESSES | DISK USAGE | STORAGE POOL |     LAST USED AT     |      CREATED AT      |                            BASE IMAGE                            | ARCHITECTURE | DESCRIPTION |   C   | ROOT POOL |\n"
	"+------+--------------+---------------+-----------+------+-----------+------------+--------------+----------------------+----------------------+------------------------------------------------------------------+--------------+-------------+-------+-----------+\n"
	"| db   |              |               |           |      |           | 2.00KiB    | default      |                      | 2024/03/05 10:20 UTC | 9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e | x86_64       |             |       | default   |\n"
	"+------+--------------+---------------+-----------+------+-----------+------------+--------------+----------------------+----------------------+------------------------------------------------------------------+--------------+-------------+-------+-----------+\n"
	"| eph  | 1.00GiB      |               | 61s       | 777  | 2         |            | default      | 2024/03/06 11:00 UTC | 2024/03/05 10:20 UTC | 2c1f4b1a9e0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b | x86_64       |             | hello | default   |\n"
	"+------+--------------+---------------+-----------+------+-----------+------------+--------------+----------------------+----------------------+------------------------------------------------------------------+--------------+-------------+-------+-----------+\n"
	"| web1 | 50.00MiB     | 9.8%          | 3s        | 4242 | 7         | 11.77MiB   | default      | 2024/03/06 11:00 UTC | 2024/03/05 10:20 UTC | 2c1f4b1a9e0d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b | x86_64       | web server  |       | default   |\n"
	"+------+--------------+---------------+-----------+------+-----------+------------+--------------+----------------------+----------------------+------------------------------------------------------------------+--------------+-------------+-------+-----------+\n";

/* `lxc list -f csv -c ns46tS` on the fixtures (LXD 5.0.2, TZ=UTC). */
static const char exp_list_csv[] =
	"db,STOPPED,,,CONTAINER,0\n"
	"eph,RUNNING,\"10.0.4.7 (eth1)\n"
	"10.0.3.7 (eth0)\",,CONTAINER (EPHEMERAL),0\n"
	"web1,RUNNING,10.0.3.5 (eth0),fd42::5 (eth0),CONTAINER,2\n";

/* `lxc list -f compact` on the fixtures (LXD 5.0.2, TZ=UTC). */
static const char exp_list_compact[] =
	"  NAME   STATE        IPV4             IPV6               TYPE           SNAPSHOTS  \n"
	"  db    STOPPED                                   CONTAINER              0          \n"
	"  eph   RUNNING  10.0.4.7 (eth1)                  CONTAINER (EPHEMERAL)  0          \n"
	"                 10.0.3.7 (eth0)                                                    \n"
	"  web1  RUNNING  10.0.3.5 (eth0)  fd42::5 (eth0)  CONTAINER              2          \n";

/* `lxc info web1` on the fixtures (LXD 5.0.2, TZ=UTC). */
static const char exp_info_web1[] =
	"Name: web1\n"
	"Status: RUNNING\n"
	"Type: container\n"
	"Architecture: x86_64\n"
	"PID: 4242\n"
	"Created: 2024/03/05 10:20 UTC\n"
	"Last Used: 2024/03/06 11:00 UTC\n"
	"\n"
	"Resources:\n"
	"  Processes: 7\n"
	"  Disk usage:\n"
	"    root: 11.77MiB\n"
	"  CPU usage:\n"
	"    CPU usage (in seconds): 3\n"
	"  Memory usage:\n"
	"    Memory (current): 50.00MiB\n"
	"    Memory (peak): 100.00MiB\n"
	"  Network usage:\n"
	"    lo:\n"
	"      Type: loopback\n"
	"      State: UP\n"
	"      MTU: 65536\n"
	"      Bytes received: 0B\n"
	"      Bytes sent: 0B\n"
	"      Packets received: 0\n"
	"      Packets sent: 0\n"
	"      IP addresses:\n"
	"        inet:  127.0.0.1/8 (local)\n"
	"    eth0:\n"
	"      Type: broadcast\n"
	"      State: UP\n"
	"      Host interface: veth1234\n"
	"      MAC address: 00:16:3e:aa:bb:cc\n"
	"      MTU: 1500\n"
	"      Bytes received: 1.00kB\n"
	"      Bytes sent: 2.50MB\n"
	"      Packets received: 10\n"
	"      Packets sent: 20\n"
	"      IP addresses:\n"
	"        inet:  10.0.3.5/24 (global)\n"
	"        inet6: fd42::5/64 (global)\n"
	"        inet6: fe80::1/64 (link)\n"
	"\n"
	"Snapshots:\n"
	"+-------+----------------------+----------------------+----------+\n"
	"| NAME  |       TAKEN AT       |      EXPIRES AT      | STATEFUL |\n"
	"+-------+----------------------+----------------------+----------+\n"
	"| snap0 | 2024/03/05 12:00 UTC |                      | NO       |\n"
	"+-------+----------------------+----------------------+----------+\n"
	"| snap1 | 2024/03/05 13:00 UTC | 2024/04/01 00:00 UTC | YES      |\n"
	"+-------+----------------------+----------------------+----------+\n";

/* `lxc info db` on the fixtures (LXD 5.0.2, TZ=UTC). */
static const char exp_info_db[] =
	"Name: db\n"
	"Status: STOPPED\n"
	"Type: container\n"
	"Architecture: x86_64\n"
	"Created: 2024/03/05 10:20 UTC\n";

/* `lxc profile list` on the fixtures. */
static const char exp_profile_list[] =
	"+---------+-----------------+---------+\n"
	"|  NAME   |   DESCRIPTION   | USED BY |\n"
	"+---------+-----------------+---------+\n"
	"| big     |                 | 0       |\n"
	"+---------+-----------------+---------+\n"
	"| default | Default profile | 2       |\n"
	"+---------+-----------------+---------+\n";

/* `lxc profile show default` on the fixtures. */
static const char exp_profile_show_default[] =
	"config: {}\n"
	"description: Default profile\n"
	"devices:\n"
	"  eth0:\n"
	"    name: eth0\n"
	"    network: cellbr0\n"
	"    type: nic\n"
	"  root:\n"
	"    path: /\n"
	"    pool: default\n"
	"    type: disk\n"
	"name: default\n"
	"used_by:\n"
	"- /1.0/instances/web1\n"
	"- /1.0/instances/db\n";

/* `lxc profile show big` on the fixtures. */
static const char exp_profile_show_big[] =
	"config:\n"
	"  limits.cpu: \"4\"\n"
	"  limits.memory: 2GiB\n"
	"description: \"\"\n"
	"devices: {}\n"
	"name: big\n"
	"used_by: []\n";

/* `lxc storage list` on the fixtures. */
static const char exp_storage_list[] =
	"+---------+--------+--------------------------------------+-------------+---------+---------+\n"
	"|  NAME   | DRIVER |                SOURCE                | DESCRIPTION | USED BY |  STATE  |\n"
	"+---------+--------+--------------------------------------+-------------+---------+---------+\n"
	"| default | dir    | /var/lib/celld/storage-pools/default |             | 4       | CREATED |\n"
	"+---------+--------+--------------------------------------+-------------+---------+---------+\n"
	"| fast    | btrfs  | /dev/sdb                             | SSD         | 0       | CREATED |\n"
	"+---------+--------+--------------------------------------+-------------+---------+---------+\n";

/* `lxc storage show default` on the fixtures. */
static const char exp_storage_show[] =
	"config:\n"
	"  source: /var/lib/celld/storage-pools/default\n"
	"description: \"\"\n"
	"name: default\n"
	"driver: dir\n"
	"used_by:\n"
	"- /1.0/images/2c1f\n"
	"- /1.0/instances/web1\n"
	"- /1.0/profiles/default\n"
	"- /1.0/storage-pools/default/volumes/custom/vol1?project=p2\n"
	"status: Created\n"
	"locations:\n"
	"- none\n";

/* `lxc storage info default` on the fixtures. */
static const char exp_storage_info[] =
	"info:\n"
	"  description: \"\"\n"
	"  driver: dir\n"
	"  name: default\n"
	"  space used: 117.74MiB\n"
	"  total space: 91.98GiB\n"
	"used by:\n"
	"  images:\n"
	"  - 2c1f\n"
	"  instances:\n"
	"  - web1\n"
	"  profiles:\n"
	"  - default\n"
	"  volumes:\n"
	"  - vol1 (project \"p2\")\n";


/* ------------------------------------------------------------------ list */

static void test_list_like_lxc(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;

	route(d, (struct route){ "GET", "/1.0/instances?recursion=2", .metadata = fx_full });
	route(d, (struct route){ "GET", "/1.0/instances?recursion=1", .metadata = fx_rec1 });

	EXPECT(0, exp_list_default, "", "list");
	/* One request, with state and snapshots inline: no GET /1.0, no per-instance calls. */
	assert_int_equal(log_lines(d), 1);
	assert_logged(d, "GET /1.0/instances?recursion=2 \n");

	log_reset(d);
	EXPECT(0, exp_list_fast, "", "list", "--fast");
	assert_int_equal(log_lines(d), 1);
	assert_logged(d, "GET /1.0/instances?recursion=1 \n");

	EXPECT(0, exp_list_wide, "", "list", "-c", "nmMupNDblcFad,user.comment:C:5,devices:root.pool");
	EXPECT(0, exp_list_csv, "", "ls", "-f", "csv", "-c", "ns46tS");
	EXPECT(0, exp_list_compact, "", "list", "--format=compact");

	/* Columns without state ask for recursion=1; the name column alone. */
	log_reset(d);
	EXPECT(0, "db\neph\nweb1\n", "", "list", "-c", "n", "-f", "csv");
	assert_logged(d, "GET /1.0/instances?recursion=1 \n");
	EXPECT(0, "web1,2c1f4b1a9e0d,default\n", "", "list", "web", "-c", "nf,b", "-f", "csv");
	/* tablewriter's header treatment of custom columns, and maxWidth 0 */
	EXPECT(0, "+------+----------+--------------+\n"
		  "| NAME | IMAGE OS |    X Y Z     |\n"
		  "+------+----------+--------------+\n"
		  "| eph  | Debian   | hello, world |\n"
		  "+------+----------+--------------+\n",
	       "", "list", "eph", "-c", "n,image.os,config:user.comment:x_y.z");
	EXPECT(0, "db,\neph,hello\nweb1,\n", "", "list", "-f", "csv", "-c", "n,user.comment:comment:5");
}

static void test_list_filters(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;

	route(d, (struct route){ "GET", "/1.0/instances?recursion=2", .metadata = fx_full });
	route(d, (struct route){ "GET", "/1.0/instances?recursion=1", .metadata = fx_rec1 });

	EXPECT(0, "eph\nweb1\n", "", "list", "-c", "n", "-f", "csv", "status=running");
	EXPECT(0, "db\n", "", "list", "-c", "n", "-f", "csv", "STATUS=Stopped");
	EXPECT(0, "db\neph\nweb1\n", "", "list", "-c", "n", "-f", "csv", "type=container,virtual-machine");
	EXPECT(0, "", "", "list", "-c", "n", "-f", "csv", "type=virtual-machine");
	EXPECT(0, "web1\n", "", "list", "-c", "n", "-f", "csv", "we");                 /* name prefix */
	EXPECT(0, "eph\n", "", "list", "-c", "n", "-f", "csv", "^e");                  /* regex */
	EXPECT(0, "db\nweb1\n", "", "list", "-c", "n", "-f", "csv", ".*[db1]$");
	EXPECT(0, "eph\n", "", "list", "-c", "n", "-f", "csv", "u.comment=hello.*");  /* abbreviated key, regex value */
	EXPECT(0, "db\n", "", "list", "-c", "n", "-f", "csv", "image.os=Ubuntu");
	EXPECT(0, "eph\nweb1\n", "", "list", "-c", "n", "-f", "csv", "image.os=Debian", "user.nothing=");
	EXPECT(0, "", "", "list", "-c", "n", "-f", "csv", "image.os=Debian", "db");   /* filters combine */
	/* ipv4/ipv6 need the state even when no column does */
	log_reset(d);
	EXPECT(0, "eph\n", "", "list", "-c", "n", "-f", "csv", "ipv4=10.0.4.0/24");
	assert_logged(d, "recursion=2");
	EXPECT(0, "web1\n", "", "list", "-c", "n", "-f", "csv", "ipv6=fd42::5");
	EXPECT(0, "eph\nweb1\n", "", "list", "-c", "n", "-f", "csv", "ipv4=10.0.3.0/24");

	/* A remote prefix: "foo:" lists foo's instances; "foo:w" also filters by name. */
	route(&e->d2, (struct route){ "GET", "/1.0/instances?recursion=1", .metadata = fx_rec1 });
	EXPECT(0, "db\neph\nweb1\n", "", "list", "foo:", "-c", "n", "-f", "csv");
	EXPECT(0, "web1\n", "", "list", "foo:w", "-c", "n", "-f", "csv");
	EXPECT(1, "", "Error: The remote \"bar\" doesn't exist\n", "list", "bar:");
}

static void test_list_formats_and_errors(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;
	struct run r;

	route(d, (struct route){ "GET", "/1.0/instances?recursion=2", .metadata = fx_full });
	route(d, (struct route){ "GET", "/1.0/instances?recursion=1", .metadata = fx_rec1 });

	/* json: LXD's InstanceFull, maps sorted, backups/state/snapshots last (null at recursion=1). */
	r = CELL("list", "db", "-c", "ns", "-f", "json");
	assert_int_equal(r.rc, 0);
	assert_true(str_has_prefix(r.out, "[{\"architecture\":\"x86_64\",\"config\":{\"image.os\":\"Ubuntu\","));
	assert_non_null(strstr(r.out, "\"expanded_devices\":{\"eth0\":{\"name\":\"eth0\",\"network\":\"cellbr0\",\"type\":\"nic\"},"
				      "\"root\":{\"path\":\"/\",\"pool\":\"default\",\"type\":\"disk\"}}"));
	assert_true(str_has_suffix(r.out, "\"project\":\"default\",\"backups\":null,\"state\":null,\"snapshots\":null}]\n"));
	run_free(&r);
	r = CELL("list", "web1", "-f", "yaml");
	assert_true(str_has_prefix(r.out, "- architecture: x86_64\n  config:\n    image.os: Debian\n"));
	assert_non_null(strstr(r.out, "  snapshots:\n  - name: snap0\n"));
	run_free(&r);

	EXPECT(1, "", "Error: Unknown column shorthand char 'X' in 'nX'\n", "list", "-c", "nX");
	EXPECT(1, "", "Error: Empty column entry (redundant, leading or trailing command) in 'n,,s'\n", "list", "-c", "n,,s");
	EXPECT(1, "", "Error: Can't specify --fast with --columns\n", "list", "--fast", "-c", "ns");
	EXPECT(1, "", "Error: Invalid config key column format (too many fields): 'a.b:c:d:e'\n", "list", "-c", "a.b:c:d:e");
	EXPECT(1, "", "Error: Invalid max width (must be an integer) 'zz' in 'user.x:a:zz'\n", "list", "-c", "user.x:a:zz");
	EXPECT(1, "", "Error: Invalid max width (must -1, 0 or a positive integer) '-2' in 'user.x:a:-2'\n", "list", "-c", "user.x:a:-2");
	EXPECT(1, "", "Error: Invalid name in 'user.x:', empty string is only allowed when defining maxWidth\n", "list", "-c", "user.x:");
	EXPECT(1, "", "Error: Invalid max width (must be an integer) '' in 'user.x::'\n", "list", "-c", "user.x::");
	EXPECT(1, "", "Error: Invalid format \"xml\"\n", "list", "-f", "xml");
	EXPECT(1, "", "Error: Can't specify --project with --all-projects\n", "--project", "p1", "list", "--all-projects");

	log_reset(d);
	route(d, (struct route){ "GET", "/1.0/instances?recursion=2&all-projects=true", .metadata = fx_full });
	EXPECT(0, NULL, "", "list", "--all-projects");
	assert_logged(d, "GET /1.0/instances?recursion=2&all-projects=true");
	route(d, (struct route){ "GET", "/1.0/instances?recursion=2", .status = 500, .error = "database is locked" });
	EXPECT(1, "", "Error: database is locked\n", "list");
}

/* ------------------------------------------------------------------ info */

static void test_info_instance(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;
	struct run r;

	_cleanup_free_ char *web1 = item(fx_full, 0);
	_cleanup_free_ char *db = item(fx_full, 1);

	route(d, (struct route){ "GET", "/1.0/instances/web1?recursion=1", .metadata = web1 });
	EXPECT(0, exp_info_web1, "", "info", "web1");
	route(d, (struct route){ "GET", "/1.0/instances/db?recursion=1", .metadata = db });
	EXPECT(0, exp_info_db, "", "info", "local:db");

	/* --show-log appends the log; an older daemon without recursion=1 on one instance is asked piecewise. */
	route(d, (struct route){ "GET", "/1.0/instances/c1?recursion=1", .metadata = fx_db });
	route(d, (struct route){ "GET", "/1.0/instances/c1/state", .metadata = "{\"status\":\"Stopped\",\"pid\":0}" });
	route(d, (struct route){ "GET", "/1.0/instances/c1/snapshots?recursion=1",
				 .metadata = "[{\"name\":\"c1/s0\",\"created_at\":\"2024-01-02T03:04:05Z\",\"stateful\":false}]" });
	route(d, (struct route){ "GET", "/1.0/instances/c1/logs/lxc.log", .raw = "lxc start: boom\n" });
	r = CELL("info", "c1", "--show-log");
	assert_int_equal(r.rc, 0);
	assert_true(str_has_prefix(r.out, "Name: db\nStatus: STOPPED\n"));
	assert_non_null(strstr(r.out, "\nSnapshots:\n+------+----------------------+------------+----------+\n"
				      "| NAME |       TAKEN AT       | EXPIRES AT | STATEFUL |\n"));
	assert_non_null(strstr(r.out, "| s0   | 2024/01/02 03:04 UTC |            | NO       |\n"));
	assert_true(str_has_suffix(r.out, "\nLog:\n\nlxc start: boom\n\n"));
	run_free(&r);

	EXPECT(1, "", "Error: not found\n", "info", "nope");
	/* The server view still belongs to info.c. */
	route(d, (struct route){ "GET", "/1.0", .metadata = "{\"config\":{},\"api_extensions\":[],\"environment\":{}}" });
	EXPECT(0, "config: {}\napi_extensions: []\nenvironment: {}\n", "", "info");
	EXPECT(0, "config: {}\napi_extensions: []\nenvironment: {}\n", "", "info", "local:");
	route(d, (struct route){ "GET", "/1.0/resources", .metadata = "{\"cpu\":{}}" });
	EXPECT(0, "cpu: {}\n", "", "info", "--resources");
}

/* ---------------------------------------------------------- launch, init */

static const char created_op[] = "{\"instances\":[\"/1.0/instances/newc\"]}";

static void image_routes(struct fake *d)
{
	route(d, (struct route){ "GET", "/1.0/images/aliases/debian",
				 .metadata = "{\"name\":\"debian\",\"description\":\"\",\"target\":\"" FP "\",\"type\":\"container\"}" });
	route(d, (struct route){ "GET", "/1.0/images/" FP,
				 .metadata = "{\"fingerprint\":\"" FP "\",\"public\":false,\"type\":\"container\"}" });
	route(d, (struct route){ "GET", "/1.0/images/2c1f", .metadata = "{\"fingerprint\":\"" FP "\",\"type\":\"container\"}" });
	route(d, (struct route){ "POST", "/1.0/instances", .async = true, .resources = created_op });
	route(d, (struct route){ "GET", "/1.0/instances/c1", .metadata = fx_web1 });
	route(d, (struct route){ "GET", "/1.0/instances/newc", .metadata = fx_web1 });
	route(d, (struct route){ "PUT", "/1.0/instances/c1/state", .async = true });
	route(d, (struct route){ "PUT", "/1.0/instances/newc/state", .async = true });
}

static void test_launch(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;

	image_routes(d);
	EXPECT(0, "Creating c1\nStarting c1\n", "", "launch", "debian", "c1");
	/* The alias is resolved by the client and the image named by fingerprint, as lxc does. */
	assert_logged(d, "GET /1.0/images/aliases/debian \nGET /1.0/images/" FP " \n");
	assert_logged(d, "POST /1.0/instances {\"architecture\":\"\",\"config\":{},\"devices\":{},\"ephemeral\":false,"
			 "\"profiles\":null,\"stateful\":false,\"description\":\"\",\"name\":\"c1\",\"source\":{\"type\":\"image\","
			 "\"certificate\":\"\",\"fingerprint\":\"" FP "\",\"allow_inconsistent\":false},\"instance_type\":\"\",\"type\":\"container\"}\n");
	assert_logged(d, "PUT /1.0/instances/c1/state {\"action\":\"start\",\"timeout\":-1,\"force\":false,\"stateful\":false}\n");

	/* init creates only; a fingerprint prefix works when no alias matches */
	log_reset(d);
	EXPECT(0, "Creating c1\n", "", "init", "2c1f", "local:c1");
	assert_logged(d, "\"fingerprint\":\"" FP "\"");
	assert_not_logged(d, "/state");

	/* flags: profiles, config (a comma inside a value survives), storage, ephemeral, device override */
	route(d, (struct route){ "GET", "/1.0/storage-pools/fast", .metadata = "{\"name\":\"fast\"}" });
	route(d, (struct route){ "GET", "/1.0/profiles/default", .metadata = "{\"devices\":{\"eth0\":{\"type\":\"nic\",\"network\":\"cellbr0\"}}}" });
	route(d, (struct route){ "GET", "/1.0/profiles/big", .metadata = "{\"devices\":{}}" });
	log_reset(d);
	EXPECT(0, "Creating c1\n", "", "init", "debian", "c1", "-p", "default", "-p", "big", "-c", "limits.cpu=2",
	       "--config", "user.list=a,b", "-s", "fast", "-e", "-d", "root,size=10GiB", "-d", "eth0,mtu=9000");
	assert_logged(d, "POST /1.0/instances {\"architecture\":\"\",\"config\":{\"limits.cpu\":\"2\",\"user.list\":\"a,b\"},"
			 "\"devices\":{\"root\":{\"type\":\"disk\",\"path\":\"/\",\"pool\":\"fast\",\"size\":\"10GiB\"},"
			 "\"eth0\":{\"type\":\"nic\",\"network\":\"cellbr0\",\"mtu\":\"9000\"}},\"ephemeral\":true,"
			 "\"profiles\":[\"default\",\"big\"],");
	EXPECT(1, "Creating c1\n", "Error: Failed loading storage pool \"slow\": not found\n", "init", "debian", "c1", "-s", "slow");
	EXPECT(1, "Creating c1\n", "Error: Cannot override config for device \"gpu\": Device not found in profile devices\n",
	       "init", "debian", "c1", "-d", "gpu,id=1");
	EXPECT(1, "Creating c1\n", "Error: Bad device override syntax, expecting <device>,<key>=<value>: root\n",
	       "init", "debian", "c1", "-d", "root");

	/* No name: the daemon picks one and cell says which; --no-profiles sends [] */
	log_reset(d);
	EXPECT(0, "Creating the instance\nInstance name is: newc\nStarting newc\n", "", "launch", "debian", "--no-profiles");
	assert_logged(d, "\"profiles\":[]");
	EXPECT(0, "Instance name is: newc\n", "", "launch", "debian", "-q");

	/* --empty: no image at all */
	log_reset(d);
	EXPECT(0, "Creating c1\n", "", "init", "--empty", "c1");
	assert_logged(d, "\"source\":{\"type\":\"none\"");
	assert_not_logged(d, "/images/");
	EXPECT(1, "", "Error: --empty cannot be combined with an image name\n", "init", "--empty", "debian", "c1");

	/* YAML on stdin seeds the request */
	log_reset(d);
	stdin_text = "config:\n  user.a: 1\ndevices:\n  d0:\n    type: none\nprofiles:\n- big\n";
	EXPECT(0, "Creating c1\n", "", "init", "debian", "c1");
	stdin_text = NULL;
	assert_logged(d, "\"config\":{\"user.a\":\"1\"},\"devices\":{\"d0\":{\"type\":\"none\"}},\"ephemeral\":false,\"profiles\":[\"big\"]");

	/* Failures: the image, the create operation, the start */
	EXPECT(1, "Creating c1\n", "Error: not found\n", "launch", "nothing", "c1");
	route(d, (struct route){ "PUT", "/1.0/instances/c1/state", .async = true, .op_err = "Failed to run: forkstart" });
	EXPECT(1, "Creating c1\nStarting c1\n",
	       "Error: Failed to run: forkstart\nTry `cell info --show-log local:c1` for more info\n", "launch", "debian", "c1");
	route(d, (struct route){ "POST", "/1.0/instances", .async = true, .op_err = "Failed creating instance: disk full" });
	EXPECT(1, "Creating c1\n", "Error: Failed creating instance: disk full\n", "launch", "debian", "c1");
	EXPECT(1, NULL, "Error: Invalid number of arguments\n", "launch");
	EXPECT(0, NULL, "", "init");   /* init alone prints its usage, as lxc */
}

static void test_launch_from_other_remote(void **state)
{
	struct env *e = *state;

	/* The image lives on foo: the local daemon is told to pull it from there. */
	route(&e->d2, (struct route){ "GET", "/1.0/images/aliases/debian", .metadata = "{\"target\":\"" FP "\"}" });
	route(&e->d2, (struct route){ "GET", "/1.0/images/" FP, .metadata = "{\"fingerprint\":\"" FP "\",\"public\":true,\"type\":\"container\"}" });
	route(&e->d, (struct route){ "POST", "/1.0/instances", .async = true, .resources = created_op });
	route(&e->d, (struct route){ "GET", "/1.0/instances/c1", .metadata = fx_web1 });
	EXPECT(0, "Creating c1\n", "", "init", "foo:debian", "c1");
	{
		_cleanup_free_ char *expect = xasprintf("\"source\":{\"type\":\"image\",\"certificate\":\"\",\"mode\":\"pull\","
						       "\"server\":\"unix://%s\",\"protocol\":\"lxd\",\"alias\":\"debian\","
						       "\"allow_inconsistent\":false}", e->sock2);
		assert_logged(&e->d, expect);
	}
	/* A private image comes with a secret from its server. */
	route(&e->d2, (struct route){ "GET", "/1.0/images/" FP, .metadata = "{\"fingerprint\":\"" FP "\",\"public\":false}" });
	route(&e->d2, (struct route){ "POST", "/1.0/images/" FP "/secret", .metadata = "{\"secret\":\"s3cr3t\"}" });
	log_reset(&e->d);
	EXPECT(0, "Creating c1\n", "", "init", "foo:debian", "c1");
	assert_logged(&e->d, "\"fingerprint\":\"" FP "\",\"secret\":\"s3cr3t\",\"allow_inconsistent\":false}");
}

/* ------------------------------------------------ start, stop, restart */

static void action_routes(struct fake *d)
{
	route(d, (struct route){ "GET", "/1.0/instances/web1", .metadata = fx_web1 });
	route(d, (struct route){ "GET", "/1.0/instances/db", .metadata = fx_db });
	route(d, (struct route){ "GET", "/1.0/instances?recursion=1", .metadata = fx_rec1 });
	route(d, (struct route){ "PUT", "/1.0/instances/web1/state", .async = true });
	route(d, (struct route){ "PUT", "/1.0/instances/db/state", .async = true });
	route(d, (struct route){ "PUT", "/1.0/instances/eph/state", .async = true });
}

static void test_actions(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;

	action_routes(d);
	EXPECT(0, "", "", "start", "db");
	assert_logged(d, "PUT /1.0/instances/db/state {\"action\":\"start\",\"timeout\":0,\"force\":false,\"stateful\":false}\n");
	EXPECT(0, "", "", "stop", "web1");
	assert_logged(d, "PUT /1.0/instances/web1/state {\"action\":\"stop\",\"timeout\":-1,\"force\":false,\"stateful\":false}\n");
	EXPECT(0, "", "", "stop", "web1", "-f", "--timeout", "30");
	assert_logged(d, "{\"action\":\"stop\",\"timeout\":30,\"force\":true,\"stateful\":false}\n");
	EXPECT(0, "", "", "stop", "web1", "--stateful");
	assert_logged(d, "{\"action\":\"stop\",\"timeout\":-1,\"force\":false,\"stateful\":true}\n");
	EXPECT(0, "", "", "restart", "local:web1", "--force");
	assert_logged(d, "{\"action\":\"restart\",\"timeout\":-1,\"force\":true,\"stateful\":false}\n");
	EXPECT(0, "", "", "pause", "web1");
	assert_logged(d, "{\"action\":\"freeze\",\"timeout\":0,\"force\":false,\"stateful\":false}\n");

	/* start on a frozen instance unfreezes it; a stateful one is restored unless --stateless */
	route(d, (struct route){ "GET", "/1.0/instances/web1", .metadata = "{\"name\":\"web1\",\"status_code\":110}" });
	EXPECT(0, "", "", "start", "web1");
	assert_logged(d, "{\"action\":\"unfreeze\",\"timeout\":0,");
	route(d, (struct route){ "GET", "/1.0/instances/web1", .metadata = "{\"name\":\"web1\",\"status_code\":102,\"stateful\":true}" });
	log_reset(d);
	EXPECT(0, "", "", "start", "web1");
	assert_logged(d, "{\"action\":\"start\",\"timeout\":0,\"force\":false,\"stateful\":true}");
	log_reset(d);
	EXPECT(0, "", "", "start", "web1", "--stateless");
	assert_logged(d, "{\"action\":\"start\",\"timeout\":0,\"force\":false,\"stateful\":false}");

	/* --all: only those not already there (db is stopped, the others run) */
	log_reset(d);
	EXPECT(0, "", "", "stop", "--all");
	assert_logged(d, "PUT /1.0/instances/web1/state");
	assert_logged(d, "PUT /1.0/instances/eph/state");
	assert_not_logged(d, "PUT /1.0/instances/db/state");
	log_reset(d);
	EXPECT(0, "", "", "start", "--all", "local:");
	assert_logged(d, "PUT /1.0/instances/db/state");
	assert_not_logged(d, "PUT /1.0/instances/eph/state");
	EXPECT(1, "", "Error: Both --all and instance name given\n", "stop", "--all", "web1");
	EXPECT(0, NULL, "", "stop");   /* no names: usage, as lxc */
}

static void test_action_failures(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;

	action_routes(d);
	route(d, (struct route){ "PUT", "/1.0/instances/db/state", .status = 400, .error = "The instance is already stopped" });
	EXPECT(1, "", "Error: The instance is already stopped\n", "stop", "db");
	route(d, (struct route){ "PUT", "/1.0/instances/web1/state", .async = true, .op_err = "Failed to stop" });
	EXPECT(1, "", "Error: Failed to stop\nTry `cell info --show-log web1` for more info\n", "stop", "web1");
	/* A batch says which failed, then fails as a whole; the others still ran. */
	EXPECT(1, "",
	       "web1: error: Failed to stop\n"
	       "web1: Try `cell info --show-log web1` for more info\n"
	       "db: error: The instance is already stopped\n"
	       "\n"
	       "Error: Some instances failed to stop\n",
	       "stop", "web1", "eph", "db");
	assert_logged(d, "PUT /1.0/instances/eph/state");
	EXPECT(1, "", "Error: not found\n", "start", "ghost");
	EXPECT(1, "", "Error: Must supply instance name for: \"local:\"\n", "stop", "local:");
}

/* ---------------------------------------------------------------- delete */

static void test_delete(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;

	route(d, (struct route){ "GET", "/1.0/instances/web1", .metadata = fx_web1 });
	route(d, (struct route){ "GET", "/1.0/instances/db", .metadata = fx_db });
	route(d, (struct route){ "GET", "/1.0/instances/web1/snapshots/snap0", .metadata = "{\"name\":\"snap0\"}" });
	route(d, (struct route){ "DELETE", "/1.0/instances/web1", .async = true });
	route(d, (struct route){ "DELETE", "/1.0/instances/db", .async = true });
	route(d, (struct route){ "DELETE", "/1.0/instances/web1/snapshots/snap0", .async = true });
	route(d, (struct route){ "PUT", "/1.0/instances/web1/state", .async = true });

	EXPECT(0, "", "", "delete", "db");
	assert_logged(d, "DELETE /1.0/instances/db ");
	log_reset(d);
	EXPECT(1, "", "Error: The instance is currently running, stop it first or pass --force\n", "rm", "web1");
	assert_not_logged(d, "DELETE");
	EXPECT(0, "", "", "delete", "-f", "web1");
	assert_logged(d, "PUT /1.0/instances/web1/state {\"action\":\"stop\",\"timeout\":-1,\"force\":true,\"stateful\":false}\n"
			 "GET /1.0/operations/op");
	assert_logged(d, "DELETE /1.0/instances/web1 ");
	EXPECT(0, "", "", "delete", "web1/snap0");
	assert_logged(d, "DELETE /1.0/instances/web1/snapshots/snap0 ");

	/* Everything is checked before anything goes. */
	log_reset(d);
	EXPECT(1, "", "Error: Failed checking instance exists \"local:ghost\": not found\n", "delete", "db", "ghost");
	assert_not_logged(d, "DELETE");
	EXPECT(1, "", "Error: Failed checking instance snapshot exists \"local:db/s9\": not found\n", "delete", "db/s9");

	/* -i asks; anything but yes aborts */
	stdin_text = "no\n";
	EXPECT(1, "Remove db (yes/no): ", "Error: User aborted delete operation\n", "delete", "-i", "db");
	stdin_text = "yes\n";
	EXPECT(0, "Remove db (yes/no): ", "", "delete", "-i", "db");
	stdin_text = NULL;

	route(d, (struct route){ "PUT", "/1.0/instances/web1/state", .async = true, .op_err = "timed out" });
	EXPECT(1, "", "Error: Stopping the instance failed: timed out\n", "delete", "-f", "web1");
}

/* ------------------------------------------------------- rename and move */

static void test_rename_move(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;

	route(d, (struct route){ "POST", "/1.0/instances/db", .async = true });
	route(d, (struct route){ "POST", "/1.0/instances/web1/snapshots/snap0", .async = true });

	EXPECT(0, "", "", "rename", "db", "db2");
	assert_logged(d, "POST /1.0/instances/db {\"name\":\"db2\",\"migration\":false,\"live\":false,\"instance_only\":false,"
			 "\"container_only\":false,\"target\":null,\"pool\":\"\",\"project\":\"\",\"allow_inconsistent\":false}\n");
	EXPECT(0, "", "", "move", "web1/snap0", "web1/snap1");
	assert_logged(d, "POST /1.0/instances/web1/snapshots/snap0 {\"name\":\"snap1\",\"migration\":false,\"target\":null}\n");
	log_reset(d);
	EXPECT(0, "", "", "mv", "local:db", "local:db3");
	assert_logged(d, "{\"name\":\"db3\",");
	route(&e->d2, (struct route){ "POST", "/1.0/instances/x", .async = true });
	EXPECT(0, "", "", "rename", "foo:x", "y");   /* the new name lives on the source's remote */
	assert_logged(&e->d2, "POST /1.0/instances/x {\"name\":\"y\",");

	EXPECT(1, "", "Error: Can't specify a different remote for rename\n", "rename", "db", "foo:db");
	EXPECT(1, "", "Error: Invalid new snapshot name, parent must be the same as source\n", "rename", "web1/snap0", "db/snap1");
	EXPECT(1, "", "Error: Invalid new snapshot name\n", "rename", "web1/snap0", "web1");
	EXPECT(1, "", "Error: Moving instances between remotes is not supported yet\n", "move", "db", "foo:");
	route(d, (struct route){ "POST", "/1.0/instances/db", .status = 409, .error = "Name \\\"db2\\\" already in use" });
	EXPECT(1, "", "Error: Name \"db2\" already in use\n", "rename", "db", "db2");
}

/* ------------------------------------------------ snapshot, restore, copy */

static void test_snapshot_restore(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;

	route(d, (struct route){ "POST", "/1.0/instances/web1/snapshots", .async = true });
	route(d, (struct route){ "PUT", "/1.0/instances/web1", .async = true });
	route(d, (struct route){ "GET", "/1.0/instances/web1/snapshots/s1", .metadata = "{\"name\":\"s1\"}" });
	route(d, (struct route){ "DELETE", "/1.0/instances/web1/snapshots/s1", .async = true });

	EXPECT(0, "", "", "snapshot", "web1");
	assert_logged(d, "POST /1.0/instances/web1/snapshots {\"name\":\"\",\"stateful\":false,\"expires_at\":null}\n");
	EXPECT(0, "", "", "snapshot", "web1", "s1", "--stateful");
	assert_logged(d, "{\"name\":\"s1\",\"stateful\":true,\"expires_at\":null}\n");
	EXPECT(0, "", "", "snapshot", "web1/s2", "--no-expiry");
	assert_logged(d, "{\"name\":\"s2\",\"stateful\":false,\"expires_at\":\"0001-01-01T00:00:00Z\"}\n");
	log_reset(d);
	EXPECT(0, "", "", "snapshot", "web1", "s1", "--reuse");
	assert_logged(d, "DELETE /1.0/instances/web1/snapshots/s1 ");
	EXPECT(1, "", "Error: Invalid instance name: web1/s2\n", "snapshot", "web1/s2", "s3");

	EXPECT(0, "", "", "restore", "web1", "snap0");
	assert_logged(d, "PUT /1.0/instances/web1 {\"architecture\":\"\",\"config\":null,\"devices\":null,\"ephemeral\":false,"
			 "\"profiles\":null,\"restore\":\"snap0\",\"stateful\":false,\"description\":\"\"}\n");
	EXPECT(0, "", "", "restore", "web1", "web1/snap1", "--stateful");
	assert_logged(d, "\"restore\":\"snap1\",\"stateful\":true,");
	route(d, (struct route){ "PUT", "/1.0/instances/web1", .async = true, .op_err = "Snapshot not found" });
	EXPECT(1, "", "Error: Snapshot not found\n", "restore", "web1", "nope");
}

static void test_copy(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;

	route(d, (struct route){ "GET", "/1.0/instances/web1", .metadata = fx_web1 });
	route(d, (struct route){ "GET", "/1.0/instances/web1/snapshots/snap0",
				 .metadata = "{\"name\":\"snap0\",\"architecture\":\"x86_64\",\"config\":{\"a.b\":\"c\"},\"devices\":{},"
					     "\"ephemeral\":false,\"profiles\":[\"default\"],\"stateful\":false}" });
	route(d, (struct route){ "POST", "/1.0/instances", .async = true, .resources = "{\"instances\":[\"/1.0/instances/web1-copy\"]}" });

	EXPECT(0, "", "", "copy", "web1", "c9");
	/* volatile keys (but the base image) stay behind; a running source copies live */
	assert_logged(d, "POST /1.0/instances {\"architecture\":\"x86_64\",\"config\":{\"limits.cpu\":\"1\","
			 "\"volatile.base_image\":\"2c1f\"},\"devices\":{\"data\":{\"path\":\"/srv\",\"source\":\"/tmp\",\"type\":\"disk\"}},"
			 "\"ephemeral\":false,\"profiles\":[\"default\"],\"stateful\":false,\"description\":\"web server\",\"name\":\"c9\","
			 "\"source\":{\"type\":\"copy\",\"certificate\":\"\",\"base-image\":\"2c1f\",\"source\":\"web1\",\"live\":true,"
			 "\"allow_inconsistent\":false},\"instance_type\":\"\",\"type\":\"container\"}\n");
	EXPECT(0, "", "", "cp", "web1/snap0", "c10");
	assert_logged(d, "\"name\":\"c10\",\"source\":{\"type\":\"copy\",\"certificate\":\"\",\"source\":\"web1/snap0\","
			 "\"allow_inconsistent\":false},\"instance_type\":\"\",\"type\":\"\"}\n");
	EXPECT(0, "", "", "copy", "web1", "c11", "--instance-only", "--stateless", "-p", "big", "-c", "a.b=c", "-e",
	       "-s", "fast", "-d", "data,readonly=true");
	assert_logged(d, "\"config\":{\"limits.cpu\":\"1\",\"volatile.base_image\":\"2c1f\",\"a.b\":\"c\"},"
			 "\"devices\":{\"data\":{\"path\":\"/srv\",\"source\":\"/tmp\",\"type\":\"disk\",\"readonly\":\"true\"},"
			 "\"root\":{\"type\":\"disk\",\"path\":\"/\",\"pool\":\"fast\"}},\"ephemeral\":true,\"profiles\":[\"big\"],");
	assert_logged(d, "\"source\":\"web1\",\"instance_only\":true,\"container_only\":true,\"allow_inconsistent\":false}");
	EXPECT(0, "Instance name is: web1-copy\n", "", "copy", "web1");

	EXPECT(1, "", "Error: --instance-only can't be passed when the source is a snapshot\n", "copy", "web1/snap0", "x", "--instance-only");
	EXPECT(1, "", "Error: --no-profiles cannot be used with --refresh\n", "copy", "web1", "x", "--refresh", "--no-profiles");
	EXPECT(1, "", "Error: Copying instances between remotes is not supported yet\n", "copy", "web1", "foo:x");
	EXPECT(1, "", "Error: not found\n", "copy", "ghost", "x");
}

/* ---------------------------------------------------------------- config */

static void test_config_instance(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;

	route(d, (struct route){ "GET", "/1.0/instances/web1", .metadata = fx_web1, .etag = "\"w1\"" });
	route(d, (struct route){ "PUT", "/1.0/instances/web1", .async = true });
	route(d, (struct route){ "GET", "/1.0/instances/web1/snapshots/snap0",
				 .metadata = "{\"name\":\"snap0\",\"architecture\":\"x86_64\",\"config\":{\"a.b\":\"c\"},\"devices\":{},"
					     "\"ephemeral\":false,\"profiles\":[\"default\"],\"stateful\":false,\"size\":-1,"
					     "\"expanded_config\":{\"a.b\":\"c\",\"x.y\":\"z\"},\"expanded_devices\":{},"
					     "\"created_at\":\"2024-03-05T12:00:00Z\",\"expires_at\":\"0001-01-01T00:00:00Z\"}", .etag = "\"s0\"" });
	route(d, (struct route){ "PUT", "/1.0/instances/web1/snapshots/snap0", .async = true });

	EXPECT(0, "1\n", "", "config", "get", "web1", "limits.cpu");
	EXPECT(0, "\n", "", "config", "get", "web1", "limits.memory");
	EXPECT(0, "1GiB\n", "", "config", "get", "web1", "limits.memory", "--expanded");
	EXPECT(1, "", "Error: --expanded cannot be used with a server\n", "config", "get", "-e", "core.https_address");

	EXPECT(0, "", "", "config", "set", "web1", "limits.memory=2GiB", "user.x=y");
	assert_logged(d, "PUT /1.0/instances/web1 {\"architecture\":\"x86_64\",\"config\":{\"limits.cpu\":\"1\","
			 "\"volatile.base_image\":\"2c1f\",\"volatile.eth0.hwaddr\":\"00:16:3e:aa:bb:cc\",\"limits.memory\":\"2GiB\","
			 "\"user.x\":\"y\"},\"devices\":{\"data\":{\"path\":\"/srv\",\"source\":\"/tmp\",\"type\":\"disk\"}},"
			 "\"ephemeral\":false,\"profiles\":[\"default\"],\"stateful\":false,\"description\":\"web server\"}\n");
	EXPECT(0, "", "", "config", "set", "local:web1", "limits.cpu", "4");
	assert_logged(d, "\"config\":{\"limits.cpu\":\"4\",");
	stdin_text = "#!/bin/sh\necho hi\n";
	EXPECT(0, "", "", "config", "set", "web1", "user.script", "-");   /* "-": the value from stdin */
	stdin_text = NULL;
	assert_logged(d, "\"user.script\":\"#!/bin/sh\\necho hi\\n\"");
	EXPECT(1, "", "Error: Invalid key=value configuration: user.y\n", "config", "set", "web1", "user.x=1", "user.y");

	log_reset(d);
	EXPECT(0, "", "", "config", "unset", "web1", "limits.cpu");
	assert_logged(d, "\"config\":{\"volatile.base_image\":\"2c1f\",");
	EXPECT(1, "", "Error: Can't unset key 'limits.memory', it's not currently set\n", "config", "unset", "web1", "limits.memory");

	EXPECT(0, "architecture: x86_64\nconfig:\n  limits.cpu: \"1\"\n  volatile.base_image: 2c1f\n"
		  "  volatile.eth0.hwaddr: 00:16:3e:aa:bb:cc\ndevices:\n  data:\n    path: /srv\n    source: /tmp\n"
		  "    type: disk\nephemeral: false\nprofiles:\n- default\nstateful: false\ndescription: web server\n",
	       "", "config", "show", "web1");
	EXPECT(0, "architecture: x86_64\nconfig:\n  limits.cpu: \"1\"\n  limits.memory: 1GiB\ndevices:\n  data:\n"
		  "    path: /srv\n    source: /tmp\n    type: disk\n  eth0:\n    name: eth0\n    network: cellbr0\n"
		  "    type: nic\nephemeral: false\nprofiles:\n- default\nstateful: false\ndescription: web server\n",
	       "", "config", "show", "web1", "--expanded");
	EXPECT(0, "expires_at: \"0001-01-01T00:00:00Z\"\narchitecture: x86_64\nconfig:\n  a.b: c\n"
		  "created_at: \"2024-03-05T12:00:00Z\"\ndevices: {}\nephemeral: false\nexpanded_config:\n  a.b: c\n  x.y: z\n"
		  "name: snap0\nprofiles:\n- default\nstateful: false\nsize: -1\n",
	       "", "config", "show", "web1/snap0");
	EXPECT(1, "", "Error: --expanded cannot be used with a server\n", "config", "show", "-e");

	/* edit from stdin: the instance's writable fields, or a snapshot's expiry */
	log_reset(d);
	stdin_text = "config:\n  limits.cpu: 2\ndevices: {}\nprofiles:\n- default\n";
	EXPECT(0, "", "", "config", "edit", "web1");
	stdin_text = "expires_at: 2030-01-01T00:00:00Z\n";
	EXPECT(0, "", "", "config", "edit", "web1/snap0");
	stdin_text = NULL;
	assert_logged(d, "PUT /1.0/instances/web1 {\"config\":{\"limits.cpu\":\"2\"},\"devices\":{},\"profiles\":[\"default\"]}\n");
	assert_logged(d, "PUT /1.0/instances/web1/snapshots/snap0 {\"expires_at\":\"2030-01-01T00:00:00Z\"}\n");
	route(d, (struct route){ "PUT", "/1.0/instances/web1", .async = true, .op_err = "Invalid config: unknown key" });
	EXPECT(1, "", "Error: Invalid config: unknown key\n", "config", "set", "web1", "bogus.key=1");
	EXPECT(1, "", "Error: not found\n", "config", "get", "ghost", "limits.cpu");
}

static void test_config_device(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;

	route(d, (struct route){ "GET", "/1.0/instances/web1", .metadata = fx_web1, .etag = "\"w1\"" });
	route(d, (struct route){ "PUT", "/1.0/instances/web1", .async = true });

	EXPECT(0, "Device home added to web1\n", "", "config", "device", "add", "web1", "home", "disk", "source=/home", "path=/h");
	assert_logged(d, "\"devices\":{\"data\":{\"path\":\"/srv\",\"source\":\"/tmp\",\"type\":\"disk\"},"
			 "\"home\":{\"path\":\"/h\",\"source\":\"/home\",\"type\":\"disk\"}},");
	EXPECT(1, "", "Error: The device already exists\n", "config", "device", "add", "web1", "data", "disk");
	EXPECT(1, "", "Error: No value found in \"path\"\n", "config", "device", "add", "web1", "x", "disk", "path");

	EXPECT(0, "/srv\n", "", "config", "device", "get", "web1", "data", "path");
	EXPECT(1, "", "Error: Device from profile(s) cannot be retrieved for individual instance\n",
	       "config", "device", "get", "web1", "eth0", "name");
	EXPECT(1, "", "Error: Device doesn't exist\n", "config", "device", "get", "web1", "nope", "name");
	EXPECT(0, "data\n", "", "config", "device", "list", "web1");
	EXPECT(0, "data:\n  path: /srv\n  source: /tmp\n  type: disk\n", "", "config", "device", "show", "web1");

	log_reset(d);
	EXPECT(0, "", "", "config", "device", "set", "web1", "data", "readonly=true", "path=/data");
	assert_logged(d, "\"data\":{\"path\":\"/data\",\"readonly\":\"true\",\"source\":\"/tmp\",\"type\":\"disk\"}");
	EXPECT(0, "", "", "config", "device", "set", "web1", "data", "readonly", "true");
	EXPECT(0, "", "", "config", "device", "unset", "web1", "data", "source");
	assert_logged(d, "\"devices\":{\"data\":{\"path\":\"/srv\",\"type\":\"disk\"}}");
	EXPECT(1, "", "Error: Device from profile(s) cannot be modified for individual instance. Override device or modify profile instead\n",
	       "config", "device", "set", "web1", "eth0", "mtu=9000");

	log_reset(d);
	EXPECT(0, "Device data removed from web1\n", "", "config", "device", "remove", "web1", "data");
	assert_logged(d, "\"devices\":{},");
	EXPECT(1, "", "Error: Device from profile(s) cannot be removed from individual instance. Override device or modify profile instead\n",
	       "config", "device", "rm", "web1", "eth0");

	log_reset(d);
	EXPECT(0, "Device eth0 overridden for web1\n", "", "config", "device", "override", "web1", "eth0", "mtu=9000");
	assert_logged(d, "\"eth0\":{\"mtu\":\"9000\",\"name\":\"eth0\",\"network\":\"cellbr0\",\"type\":\"nic\"}");
	EXPECT(1, "", "Error: The device already exists\n", "config", "device", "override", "web1", "data");
	EXPECT(1, "", "Error: The profile device doesn't exist\n", "config", "device", "override", "web1", "gpu");
	EXPECT(1, "", "Error: Missing name\n", "config", "device", "list", "local:");
}

/* --------------------------------------------------------------- profile */

static void profile_routes(struct fake *d, const char *dflt, const char *big)
{
	route(d, (struct route){ "GET", "/1.0/profiles?recursion=1", .metadata = fx_profiles });
	route(d, (struct route){ "GET", "/1.0/profiles/default", .metadata = dflt, .etag = "\"p1\"" });
	route(d, (struct route){ "GET", "/1.0/profiles/big", .metadata = big, .etag = "\"p2\"" });
	route(d, (struct route){ "POST", "/1.0/profiles", .status = 0 });
	route(d, (struct route){ "PUT", "/1.0/profiles/big", .status = 0 });
	route(d, (struct route){ "PUT", "/1.0/profiles/default", .status = 0 });
	route(d, (struct route){ "POST", "/1.0/profiles/big", .status = 0 });
	route(d, (struct route){ "DELETE", "/1.0/profiles/big", .status = 0 });
	route(d, (struct route){ "GET", "/1.0/instances/web1", .metadata = fx_web1, .etag = "\"w1\"" });
	route(d, (struct route){ "PUT", "/1.0/instances/web1", .async = true });
}

static void test_profile(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;
	_cleanup_free_ char *dflt = item(fx_profiles, 0);
	_cleanup_free_ char *big = item(fx_profiles, 1);

	profile_routes(d, dflt, big);
	EXPECT(0, exp_profile_show_default, "", "profile", "show", "default");
	EXPECT(0, exp_profile_list, "", "profile", "list");
	EXPECT(0, "big,,0\ndefault,Default profile,2\n", "", "profile", "ls", "-f", "csv");
	EXPECT(0, exp_profile_show_big, "", "profile", "show", "big");
	EXPECT(0, "4\n", "", "profile", "get", "big", "limits.cpu");

	EXPECT(0, "Profile p1 created\n", "", "profile", "create", "p1");
	assert_logged(d, "POST /1.0/profiles {\"config\":{},\"description\":\"\",\"devices\":{},\"name\":\"p1\"}\n");
	EXPECT(0, "", "", "profile", "copy", "big", "big2");
	assert_logged(d, "POST /1.0/profiles {\"config\":{\"limits.cpu\":\"4\",\"limits.memory\":\"2GiB\"},\"description\":\"\","
			 "\"devices\":{},\"name\":\"big2\"}\n");
	EXPECT(0, "Profile big renamed to huge\n", "", "profile", "rename", "big", "huge");
	assert_logged(d, "POST /1.0/profiles/big {\"name\":\"huge\"}\n");
	EXPECT(0, "Profile big deleted\n", "", "profile", "delete", "big");
	assert_logged(d, "DELETE /1.0/profiles/big ");

	EXPECT(0, "", "", "profile", "set", "big", "limits.cpu=8", "user.a=b");
	assert_logged(d, "PUT /1.0/profiles/big {\"config\":{\"limits.cpu\":\"8\",\"limits.memory\":\"2GiB\",\"user.a\":\"b\"},"
			 "\"description\":\"\",\"devices\":{}}\n");
	EXPECT(0, "", "", "profile", "unset", "big", "limits.memory");
	assert_logged(d, "PUT /1.0/profiles/big {\"config\":{\"limits.cpu\":\"4\"},\"description\":\"\",\"devices\":{}}\n");
	stdin_text = "description: Big one\nconfig:\n  limits.cpu: 16\ndevices: {}\n";
	EXPECT(0, "", "", "profile", "edit", "big");
	stdin_text = NULL;
	assert_logged(d, "PUT /1.0/profiles/big {\"config\":{\"limits.cpu\":\"16\"},\"description\":\"Big one\",\"devices\":{}}\n");

	/* an instance's profiles */
	log_reset(d);
	EXPECT(0, "Profile big added to web1\n", "", "profile", "add", "web1", "big");
	assert_logged(d, "\"profiles\":[\"default\",\"big\"]");
	EXPECT(0, "Profile default removed from web1\n", "", "profile", "remove", "web1", "default");
	assert_logged(d, "\"profiles\":[]");
	EXPECT(1, "", "Error: Profile big isn't currently applied to web1\n", "profile", "remove", "web1", "big");
	EXPECT(0, "Profiles default,big applied to web1\n", "", "profile", "assign", "web1", "default,big");
	EXPECT(0, "Profiles (none) applied to web1\n", "", "profile", "apply", "web1", "");

	/* devices of a profile */
	log_reset(d);
	EXPECT(0, "Device gpu added to big\n", "", "profile", "device", "add", "big", "gpu", "gpu");
	assert_logged(d, "PUT /1.0/profiles/big {\"config\":{\"limits.cpu\":\"4\",\"limits.memory\":\"2GiB\"},\"description\":\"\","
			 "\"devices\":{\"gpu\":{\"type\":\"gpu\"}}}\n");
	EXPECT(0, "eth0\nroot\n", "", "profile", "device", "list", "default");
	EXPECT(0, "default\n", "", "profile", "device", "get", "default", "root", "pool");
	EXPECT(0, "", "", "profile", "device", "set", "default", "root", "size=5GiB");
	assert_logged(d, "\"root\":{\"path\":\"/\",\"pool\":\"default\",\"size\":\"5GiB\",\"type\":\"disk\"}");
	EXPECT(0, "Device eth0 removed from default\n", "", "profile", "device", "remove", "default", "eth0");
	EXPECT(1, "", "Error: Device doesn't exist\n", "profile", "device", "remove", "default", "nope");
	EXPECT(1, "", "Error: unknown command \"override\" for \"cell profile device\"\n",
	       "profile", "device", "override", "default", "eth0");

	route(d, (struct route){ "DELETE", "/1.0/profiles/default", .status = 400, .error = "Profile is currently in use" });
	EXPECT(1, "", "Error: Profile is currently in use\n", "profile", "delete", "default");
	EXPECT(1, "", "Error: Missing profile name\n", "profile", "show", "local:");
}

/* --------------------------------------------------------------- storage */

static void test_storage(void **state)
{
	struct env *e = *state;
	struct fake *d = &e->d;
	_cleanup_free_ char *dflt = item(fx_pools, 0);

	route(d, (struct route){ "GET", "/1.0/storage-pools?recursion=1", .metadata = fx_pools });
	route(d, (struct route){ "GET", "/1.0/storage-pools/default", .metadata = dflt, .etag = "\"s1\"" });
	route(d, (struct route){ "GET", "/1.0/storage-pools/default/resources",
				 .metadata = "{\"space\":{\"used\":123456789,\"total\":98765432100},\"inodes\":{\"used\":1000,\"total\":50000}}" });
	route(d, (struct route){ "POST", "/1.0/storage-pools", .status = 0 });
	route(d, (struct route){ "PUT", "/1.0/storage-pools/default", .status = 0 });
	route(d, (struct route){ "DELETE", "/1.0/storage-pools/fast", .status = 0 });

	EXPECT(0, exp_storage_list, "", "storage", "list");
	EXPECT(0, exp_storage_show, "", "storage", "show", "default");
	EXPECT(0, exp_storage_info, "", "storage", "info", "default");
	{
		struct run r = CELL("storage", "info", "default", "--bytes");
		assert_true(str_has_prefix(r.out, "info:\n  description: \"\"\n  driver: dir\n  name: default\n"
						  "  space used: \"123456789\"\n  total space: \"98765432100\"\nused by:\n"));
		run_free(&r);
	}
	EXPECT(0, "space:\n  used: 123456789\n  total: 98765432100\ninodes:\n  used: 1000\n  total: 50000\n", "",
	       "storage", "show", "default", "--resources");
	EXPECT(0, "/var/lib/celld/storage-pools/default\n", "", "storage", "get", "default", "source");
	EXPECT(0, "", "", "storage", "get", "default", "nope");

	EXPECT(0, "Storage pool p1 created\n", "", "storage", "create", "p1", "btrfs", "size=5GiB");
	assert_logged(d, "POST /1.0/storage-pools {\"config\":{\"size\":\"5GiB\"},\"description\":\"\",\"name\":\"p1\",\"driver\":\"btrfs\"}\n");
	EXPECT(1, "", "Error: Bad key=value pair: size\n", "storage", "create", "p1", "dir", "size");
	EXPECT(0, "Storage pool fast deleted\n", "", "storage", "rm", "fast");
	assert_logged(d, "DELETE /1.0/storage-pools/fast ");
	EXPECT(0, "", "", "storage", "set", "default", "rsync.bwlimit", "10MB");
	assert_logged(d, "PUT /1.0/storage-pools/default {\"config\":{\"source\":\"/var/lib/celld/storage-pools/default\","
			 "\"rsync.bwlimit\":\"10MB\"},\"description\":\"\"}\n");
	stdin_text = "description: main\nconfig:\n  source: /srv/pool\n";
	EXPECT(0, "", "", "storage", "edit", "default");
	stdin_text = NULL;
	assert_logged(d, "PUT /1.0/storage-pools/default {\"config\":{\"source\":\"/srv/pool\"},\"description\":\"main\"}\n");
	route(d, (struct route){ "DELETE", "/1.0/storage-pools/default", .status = 400, .error = "The storage pool is currently in use" });
	EXPECT(1, "", "Error: The storage pool is currently in use\n", "storage", "delete", "default");
	EXPECT(1, "", "Error: Missing pool name\n", "storage", "info", "foo:");
}

/* ------------------------------------------------------------- helpers */

static void test_helpers(void **state)
{
	char buf[48];
	int64_t n;
	cell_error err = {0};
	_cleanup_json_ json_t *obj = json_object();
	_cleanup_free_ char *p1 = cli_inst_path("c 1/snap/0", "/state");

	cli_size_iec(1023, buf);
	assert_string_equal(buf, "1023B");
	cli_size_iec(12345678, buf);
	assert_string_equal(buf, "11.77MiB");
	cli_size_si(2500000, buf);
	assert_string_equal(buf, "2.50MB");
	assert_true(cli_parse_size("512MiB", &n));
	assert_int_equal(n, 536870912);
	assert_true(cli_parse_size("2GB", &n));
	assert_int_equal(n, 2000000000);
	assert_false(cli_parse_size("lots", &n));
	assert_false(cli_time_is_set("0001-01-01T00:00:00Z"));
	assert_false(cli_time_is_set("1970-01-01T00:00:00Z"));
	assert_true(cli_time_is_set("2024-01-01T00:00:00.5+02:00"));
	cli_format_time_local("2024-01-01T01:30:00+02:00", buf);
	assert_string_equal(buf, "2023/12/31 23:30 UTC");
	assert_string_equal(p1, "/1.0/instances/c%201/snapshots/snap%2F0/state");

	assert_int_equal(cli_parse_config_flag("a.b=1,2,c.d=3", obj, &err), 0);
	assert_string_equal(json_string_value(json_object_get(obj, "a.b")), "1,2");
	assert_string_equal(json_string_value(json_object_get(obj, "c.d")), "3");
	assert_true(cli_parse_config_flag("novalue", obj, &err) < 0);
	assert_string_equal(err.msg, "Bad key=value pair: novalue");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_helpers),
		cmocka_unit_test_setup_teardown(test_list_like_lxc, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_list_filters, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_list_formats_and_errors, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_info_instance, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_launch, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_launch_from_other_remote, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_actions, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_action_failures, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_delete, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_rename_move, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_restore, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_copy, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_config_instance, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_config_device, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_profile, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_storage, env_setup, env_teardown),
	};

	/* Tables print times as lxc does: in local time, here UTC. */
	setenv("TZ", "UTC", 1);
	tzset();
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
