/* The cell CLI: output formatting (client/output.c), the client config
 * (client/conf.c), and whole commands run through cli_main against a fake
 * daemon on a unix socket. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client/cli.h"
#include "client/conf.h"
#include "client/output.h"
#include "common/cleanup.h"
#include "common/strbuf.h"
#include "common/util.h"
#include "common/ws_client.h"
#include "cli_run.h"

/* --------------------------------------------------------------- output */

static char *render(const struct cli_table *t, enum cli_format fmt)
{
	strbuf sb = {0};
	assert_int_equal(cli_table_render(t, fmt, &sb), 0);
	return sb_steal(&sb);
}

static void test_table_like_lxc(void **state)
{
	static const char *const header[] = { "NAME", "URL", "PROTOCOL", "AUTH TYPE", "PUBLIC" };
	static const char *const r1[] = { "local (current)", "unix://", "lxd", "file access", "NO" };
	static const char *const r2[] = { "images", "https://images.linuxcontainers.org", "simplestreams", "none", "YES" };
	_cleanup_table_ struct cli_table *t = cli_table_new(5, header);
	_cleanup_free_ char *out = NULL;

	assert_int_equal(cli_table_add(t, r1), 0);
	assert_int_equal(cli_table_add(t, r2), 0);
	cli_table_sort(t);
	out = render(t, CLI_FMT_TABLE);
	/* Byte for byte what `lxc remote list` draws for the same rows. */
	assert_string_equal(out,
		"+-----------------+------------------------------------+---------------+-------------+--------+\n"
		"|      NAME       |                URL                 |   PROTOCOL    |  AUTH TYPE  | PUBLIC |\n"
		"+-----------------+------------------------------------+---------------+-------------+--------+\n"
		"| images          | https://images.linuxcontainers.org | simplestreams | none        | YES    |\n"
		"+-----------------+------------------------------------+---------------+-------------+--------+\n"
		"| local (current) | unix://                            | lxd           | file access | NO     |\n"
		"+-----------------+------------------------------------+---------------+-------------+--------+\n");
}

static void test_table_multiline_and_empty(void **state)
{
	static const char *const header[] = { "NAME", "IPV4" };
	static const char *const r1[] = { "c1", "10.0.0.2 (eth0)\n10.0.0.3 (eth1)" };
	_cleanup_table_ struct cli_table *t = cli_table_new(2, header);
	_cleanup_table_ struct cli_table *empty = cli_table_new(2, header);
	_cleanup_free_ char *out = NULL;
	_cleanup_free_ char *out2 = NULL;

	assert_int_equal(cli_table_add(t, r1), 0);
	out = render(t, CLI_FMT_TABLE);
	assert_string_equal(out, "+------+-----------------+\n"
				 "| NAME |      IPV4       |\n"
				 "+------+-----------------+\n"
				 "| c1   | 10.0.0.2 (eth0) |\n"
				 "|      | 10.0.0.3 (eth1) |\n"
				 "+------+-----------------+\n");
	out2 = render(empty, CLI_FMT_TABLE);
	assert_string_equal(out2, "+------+------+\n| NAME | IPV4 |\n+------+------+\n");
}

static void test_compact_and_csv(void **state)
{
	static const char *const header[] = { "NAME", "STATE" };
	static const char *const r1[] = { "c1", "RUNNING" };
	static const char *const r2[] = { "a,b", "say \"hi\"" };
	static const char *const r3[] = { " lead", "two\nlines" };
	_cleanup_table_ struct cli_table *t = cli_table_new(2, header);
	_cleanup_free_ char *compact = NULL;
	_cleanup_free_ char *csv = NULL;

	assert_int_equal(cli_table_add(t, r1), 0);
	compact = render(t, CLI_FMT_COMPACT);
	assert_string_equal(compact, "  NAME   STATE   \n  c1    RUNNING  \n");
	assert_int_equal(cli_table_add(t, r2), 0);
	assert_int_equal(cli_table_add(t, r3), 0);
	csv = render(t, CLI_FMT_CSV);
	assert_string_equal(csv, "c1,RUNNING\n\"a,b\",\"say \"\"hi\"\"\"\n\" lead\",\"two\nlines\"\n");
}

static void test_sort_empty_last(void **state)
{
	static const char *const header[] = { "A", "B" };
	static const char *const rows[][2] = { { "b", "1" }, { "", "0" }, { "a", "2" }, { "a", "1" }, { "a", "" } };
	_cleanup_table_ struct cli_table *t = cli_table_new(2, header);
	_cleanup_free_ char *csv = NULL;

	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		assert_int_equal(cli_table_add(t, rows[i]), 0);
	cli_table_sort(t);
	csv = render(t, CLI_FMT_CSV);
	assert_string_equal(csv, "a,1\na,2\na,\nb,1\n,0\n");
}

static void test_json_and_formats(void **state)
{
	_cleanup_json_ json_t *v = json_loads("{\"b\":[1,{\"y\":true,\"x\":null}],\"a\":\"s\",\"e\":{}}", 0, NULL);
	_cleanup_free_ char *pretty = cli_json_pretty(v, true);
	_cleanup_free_ char *ordered = cli_json_pretty(v, false);
	_cleanup_free_ char *compact = cli_json_compact(v);
	enum cli_format f;
	cell_error err = {0};

	assert_string_equal(pretty, "{\n"
				    "\t\"a\": \"s\",\n"
				    "\t\"b\": [\n"
				    "\t\t1,\n"
				    "\t\t{\n"
				    "\t\t\t\"x\": null,\n"
				    "\t\t\t\"y\": true\n"
				    "\t\t}\n"
				    "\t],\n"
				    "\t\"e\": {}\n"
				    "}");
	assert_string_equal(compact, "{\"b\":[1,{\"y\":true,\"x\":null}],\"a\":\"s\",\"e\":{}}");
	assert_true(str_has_prefix(ordered, "{\n\t\"b\": [\n\t\t1,\n\t\t{\n\t\t\t\"y\": true,"));
	assert_int_equal(cli_format_parse("yaml", &f, &err), 0);
	assert_int_equal(f, CLI_FMT_YAML);
	assert_int_equal(cli_format_parse("compact", &f, &err), 0);
	assert_int_equal(f, CLI_FMT_COMPACT);
	assert_true(cli_format_parse("xml", &f, &err) < 0);
	assert_string_equal(err.msg, "Invalid format \"xml\"");
}

static void test_width_and_time(void **state)
{
	char out[32];

	assert_int_equal(cli_text_width("abc", 3), 3);
	assert_int_equal(cli_text_width("ünï", strlen("ünï")), 3);
	assert_int_equal(cli_text_width("日本", strlen("日本")), 4);
	cli_format_time_utc("2024-03-05T10:20:30.123456789Z", out);
	assert_string_equal(out, "2024/03/05 10:20 UTC");
	cli_format_time_utc("2024-03-05T00:20:30+02:00", out);
	assert_string_equal(out, "2024/03/04 22:20 UTC");
	cli_format_time_utc("garbage", out);
	assert_string_equal(out, "garbage");
}

/* --------------------------------------------------------------- config */

struct env {
	char dir[64];
	char sock[128];
};

static void rm_rf(const char *path)
{
	_cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", path);
}

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	strcpy(e->dir, "/tmp/test_cell_client_XXXXXX");
	if (!mkdtemp(e->dir))
		return -1;
	snprintf(e->sock, sizeof(e->sock), "%s/unix.socket", e->dir);
	setenv("CELL_CONF", e->dir, 1);
	setenv("CELL_SOCKET", e->sock, 1);
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;
	rm_rf(e->dir);
	free(e);
	return 0;
}

static void test_conf_roundtrip(void **state)
{
	struct env *e = *state;
	struct cli_conf *c = NULL;
	struct cli_remote r;
	cell_error err = {0};
	char *remote = NULL, *rest = NULL;
	_cleanup_free_ const char **names = NULL;

	assert_int_equal(cli_conf_load(NULL, &c, &err), 0);
	assert_string_equal(cli_conf_dir(c), e->dir);
	assert_string_equal(cli_conf_default_remote(c), "local");
	assert_true(cli_conf_get_remote(c, "local", &r));
	assert_true(r.is_static);
	assert_string_equal(r.addr, "unix://");
	assert_string_equal(cli_local_socket(), e->sock);

	r = (struct cli_remote){ .name = "foo", .addr = "https://10.0.0.1:8443", .protocol = "lxd", .auth_type = "tls" };
	assert_int_equal(cli_conf_set_remote(c, &r, &err), 0);
	assert_int_equal(cli_conf_set_default_remote(c, "foo", &err), 0);
	assert_int_equal(cli_conf_save(c, &err), 0);
	cli_conf_free(c);

	assert_int_equal(cli_conf_load(NULL, &c, &err), 0);
	assert_string_equal(cli_conf_default_remote(c), "foo");
	assert_true(cli_conf_get_remote(c, "foo", &r));
	assert_string_equal(r.addr, "https://10.0.0.1:8443");
	assert_false(r.public);
	assert_false(r.is_static);
	assert_null(r.project);

	assert_int_equal(cli_conf_parse_remote(c, "foo:c1", &remote, &rest, &err), 0);
	assert_string_equal(remote, "foo");
	assert_string_equal(rest, "c1");
	free(remote);
	free(rest);
	assert_int_equal(cli_conf_parse_remote(c, "c1", &remote, &rest, &err), 0);
	assert_string_equal(remote, "foo");
	assert_string_equal(rest, "c1");
	free(remote);
	free(rest);
	assert_int_equal(cli_conf_parse_remote(c, "local:/1.0", &remote, &rest, &err), 0);
	assert_string_equal(remote, "local");
	assert_string_equal(rest, "/1.0");
	free(remote);
	free(rest);
	assert_true(cli_conf_parse_remote(c, "bar:c1", &remote, &rest, &err) < 0);
	assert_string_equal(err.msg, "The remote \"bar\" doesn't exist");
	assert_int_equal(cli_conf_parse_remote(c, "c1/snap:1", &remote, &rest, &err), 0);
	assert_string_equal(rest, "c1/snap:1");
	free(remote);
	free(rest);

	assert_int_equal(cli_conf_rename_remote(c, "foo", "bar", &err), 0);
	assert_string_equal(cli_conf_default_remote(c), "bar");
	assert_true(cli_conf_rename_remote(c, "local", "x", &err) < 0);
	assert_string_equal(err.msg, "Remote local is static and cannot be modified");
	names = cli_conf_remote_names(c);
	assert_string_equal(names[0], "bar");
	assert_string_equal(names[1], "local");
	assert_null(names[2]);
	assert_int_equal(cli_conf_remove_remote(c, "bar", &err), 0);
	assert_true(cli_conf_remove_remote(c, "bar", &err) < 0);
	cli_conf_free(c);
}

static void test_conf_yaml_layout(void **state)
{
	struct env *e = *state;
	_cleanup_free_ char *path = xasprintf("%s/config.yml", e->dir);
	_cleanup_free_ char *text = NULL;
	struct cli_conf *c = NULL;
	struct cli_remote r;
	cell_error err = {0};

	/* A config written by hand (or by lxc) with extra keys. */
	static const char hand[] = "default-remote: local\n"
				   "remotes:\n"
				   "  zed:\n"
				   "    addr: https://[fd00::1]:8443\n"
				   "    protocol: lxd\n"
				   "    public: true\n"
				   "  alpha:\n"
				   "    addr: https://a:8443\n"
				   "    project: p1\n"
				   "aliases:\n"
				   "  ls: list -c ns\n";
	assert_int_equal(util_write_file_atomic(path, hand, sizeof(hand) - 1, 0644, &err), 0);
	assert_int_equal(cli_conf_load(NULL, &c, &err), 0);
	assert_true(cli_conf_get_remote(c, "zed", &r));
	assert_true(r.public);
	assert_true(cli_conf_get_remote(c, "alpha", &r));
	assert_string_equal(r.project, "p1");
	assert_string_equal(r.protocol, "lxd");
	assert_int_equal(cli_conf_save(c, &err), 0);
	cli_conf_free(c);
	assert_int_equal(util_read_file(path, &text, NULL, &err), 0);
	assert_string_equal(text, "default-remote: local\n"
				  "remotes:\n"
				  "  alpha:\n"
				  "    addr: https://a:8443\n"
				  "    project: p1\n"
				  "  zed:\n"
				  "    addr: https://[fd00::1]:8443\n"
				  "    protocol: lxd\n"
				  "    public: true\n"
				  "aliases:\n"
				  "  ls: list -c ns\n");
}

/* ------------------------------------------------------ running commands */


static void test_cli_help_and_usage(void **state)
{
	struct run r = CELL("--help");
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(r.out, "Available Commands:\n"));
	assert_non_null(strstr(r.out, "  remote      Manage the list of remote servers\n"));
	run_free(&r);

	r = CELL("config", "set", "--help");
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(r.out, "Usage:\n  cell config set [<remote>:][<instance>] <key>=<value>... [flags]\n"));
	assert_non_null(strstr(r.out, "Global Flags:\n"));
	run_free(&r);

	r = CELL("help", "operation", "list");
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(r.out, "Aliases:\n  list, ls\n"));
	assert_non_null(strstr(r.out, "  -f, --format   Format (csv|json|table|yaml|compact) (default \"table\")\n"));
	run_free(&r);

	r = CELL("query");
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "Error: Invalid number of arguments\n");
	run_free(&r);

	r = CELL("remote", "list", "--bogus");
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "Error: unknown flag: --bogus\n");
	run_free(&r);

	r = CELL("frobnicate");
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "Error: unknown command \"frobnicate\" for \"cell\"\n");
	run_free(&r);

	r = CELL("operation");   /* a group alone prints its help */
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(r.out, "Use \"cell operation [command] --help\""));
	run_free(&r);
}

static void test_cli_remotes_offline(void **state)
{
	struct run r = CELL("remote", "list", "-f", "csv");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "local (current),unix://,lxd,file access,NO,YES,NO\n");
	run_free(&r);

	r = CELL("remote", "get-default");
	assert_string_equal(r.out, "local\n");
	run_free(&r);

	r = CELL("remote", "switch", "nope");
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "Error: Remote nope doesn't exist\n");
	run_free(&r);

	r = CELL("remote", "remove", "local");
	assert_string_equal(r.err, "Error: Remote local is static and cannot be modified\n");
	run_free(&r);

	r = CELL("remote", "add", "ss", "https://images.example.org", "--protocol=simplestreams");
	assert_int_equal(r.rc, 0);
	run_free(&r);
	r = CELL("remote", "rename", "ss", "imgs");
	assert_int_equal(r.rc, 0);
	run_free(&r);
	r = CELL("remote", "list", "--format=json");
	assert_non_null(strstr(r.out, "\"imgs\":{\"Addr\":\"https://images.example.org:8443\""));
	run_free(&r);
	r = CELL("remote", "add", "imgs", "https://x");
	assert_string_equal(r.err, "Error: Remote imgs exists as <https://images.example.org:8443>\n");
	run_free(&r);
	r = CELL("remote", "switch", "imgs");
	assert_int_equal(r.rc, 0);
	run_free(&r);
	r = CELL("remote", "remove", "imgs");
	assert_string_equal(r.err, "Error: Can't remove the default remote\n");
	run_free(&r);
	r = CELL("remote", "switch", "local");
	run_free(&r);
	r = CELL("remote", "rm", "imgs");
	assert_int_equal(r.rc, 0);
	run_free(&r);

	r = CELL("info", "nowhere:");
	assert_string_equal(r.err, "Error: The remote \"nowhere\" doesn't exist\n");
	run_free(&r);
}

/* -------------------------------------------------------- fake daemon */

struct fake_daemon {
	int lfd;
	pthread_t th;
	char last_put[1024];
	char last_ifmatch[128];
	char last_query_body[256];
	int requests;
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

static void reply(int fd, int status, const char *extra_hdr, const char *body)
{
	char head[512];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%sContent-Length: %zu\r\n\r\n",
			 status, extra_hdr ? extra_hdr : "", strlen(body));
	send_all(fd, head, (size_t)n);
	send_all(fd, body, strlen(body));
}

static void sync_reply(int fd, const char *extra_hdr, const char *metadata)
{
	_cleanup_free_ char *b = xasprintf("{\"type\":\"sync\",\"status\":\"Success\",\"status_code\":200,"
					   "\"operation\":\"\",\"error_code\":0,\"error\":\"\",\"metadata\":%s}",
					   metadata);
	reply(fd, 200, extra_hdr, b);
}

static const char op_running[] =
	"{\"id\":\"6916c8a6-9b7d-4abd-90b3-aedfec7ec7da\",\"class\":\"task\",\"description\":\"Creating instance\","
	"\"created_at\":\"2024-03-05T10:20:30.1Z\",\"updated_at\":\"2024-03-05T10:20:30.1Z\",\"status\":\"Running\","
	"\"status_code\":103,\"resources\":{},\"metadata\":null,\"may_cancel\":false,\"err\":\"\",\"location\":\"none\"}";
static const char op_done[] =
	"{\"id\":\"aaaa\",\"class\":\"websocket\",\"description\":\"Executing command\","
	"\"created_at\":\"2024-03-04T09:00:00Z\",\"updated_at\":\"2024-03-04T09:00:00Z\",\"status\":\"Success\","
	"\"status_code\":200,\"resources\":{},\"metadata\":{\"return\":0},\"may_cancel\":true,\"err\":\"\",\"location\":\"none\"}";

static void serve_events(int fd, const char *req)
{
	char key[64] = "", accept[29], head[256];
	const char *k = strcasestr(req, "Sec-WebSocket-Key: ");
	static const char ev[] = "{\"type\":\"lifecycle\",\"timestamp\":\"2024-03-05T10:20:30Z\",\"metadata\":"
				 "{\"action\":\"instance-started\",\"source\":\"/1.0/instances/c1\"},\"location\":\"none\"}";
	uint8_t hdr[14];
	size_t hl;

	if (k)
		sscanf(k + 19, "%63[^\r]", key);
	wsc_accept_key(key, accept);
	snprintf(head, sizeof(head), "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
				     "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
	send_all(fd, head, strlen(head));
	hl = wsc_encode_header(hdr, true, WSC_TEXT, sizeof(ev) - 1, NULL);
	send_all(fd, hdr, hl);
	send_all(fd, ev, sizeof(ev) - 1);
	hl = wsc_encode_header(hdr, true, WSC_CLOSE, 2, NULL);
	send_all(fd, hdr, hl);
	send_all(fd, "\x03\xe8", 2);
}

/* One request: returns false when the connection should end. */
static bool serve_one(struct fake_daemon *d, int fd)
{
	char req[8192];
	size_t n = 0;
	long clen = 0;
	char method[16] = "", path[512] = "", *body, *cl;

	while (n < sizeof(req) - 1 && !(n >= 4 && !memcmp(req + n - 4, "\r\n\r\n", 4))) {
		if (read(fd, req + n, 1) != 1)
			return false;
		n++;
	}
	req[n] = '\0';
	if ((cl = strcasestr(req, "Content-Length: ")))
		clen = atol(cl + 16);
	body = req + n;
	for (long i = 0; i < clen && n < sizeof(req) - 1; i++, n++)
		if (read(fd, req + n, 1) != 1)
			return false;
	req[n] = '\0';
	sscanf(req, "%15s %511s", method, path);
	d->requests++;

	if (!strcmp(method, "GET") && !strcmp(path, "/1.0")) {
		sync_reply(fd, "ETag: \"etag1\"\r\n",
			   "{\"config\":{\"images.auto_update_interval\":\"6\",\"core.https_address\":\"127.0.0.1:8443\"},"
			   "\"api_extensions\":[\"a\"],\"api_status\":\"stable\",\"auth\":\"trusted\","
			   "\"environment\":{\"server_version\":\"9.9\"}}");
	} else if (!strcmp(method, "PUT") && !strcmp(path, "/1.0")) {
		const char *im = strcasestr(req, "If-Match: ");
		snprintf(d->last_put, sizeof(d->last_put), "%s", body);
		if (im)
			sscanf(im + 10, "%127[^\r]", d->last_ifmatch);
		sync_reply(fd, NULL, "{}");
	} else if (!strcmp(method, "GET") && !strcmp(path, "/1.0/instances/c1")) {
		sync_reply(fd, "ETag: \"inst1\"\r\n",
			   "{\"architecture\":\"x86_64\",\"config\":{\"limits.cpu\":\"1\"},\"devices\":{},"
			   "\"ephemeral\":false,\"profiles\":[\"default\"],\"stateful\":false,\"description\":\"\","
			   "\"name\":\"c1\",\"status\":\"Running\",\"expanded_config\":{}}");
	} else if (!strcmp(method, "PUT") && !strcmp(path, "/1.0/instances/c1")) {
		const char *im = strcasestr(req, "If-Match: ");
		_cleanup_free_ char *b = xasprintf("{\"type\":\"async\",\"status\":\"Operation created\",\"status_code\":100,"
						   "\"operation\":\"/1.0/operations/aaaa\",\"error_code\":0,\"error\":\"\","
						   "\"metadata\":%s}", op_running);
		snprintf(d->last_put, sizeof(d->last_put), "%s", body);
		d->last_ifmatch[0] = '\0';
		if (im)
			sscanf(im + 10, "%127[^\r]", d->last_ifmatch);
		reply(fd, 202, NULL, b);
	} else if (!strcmp(path, "/1.0/operations?recursion=1")) {
		_cleanup_free_ char *md = xasprintf("{\"running\":[%s],\"success\":[%s]}", op_running, op_done);
		sync_reply(fd, NULL, md);
	} else if (!strcmp(method, "DELETE") && str_has_prefix(path, "/1.0/operations/")) {
		reply(fd, 404, NULL, "{\"type\":\"error\",\"status\":\"\",\"status_code\":0,\"operation\":\"\","
				     "\"error_code\":404,\"error\":\"Operation not found\",\"metadata\":null}");
	} else if (!strcmp(method, "POST") && !strcmp(path, "/1.0/instances")) {
		_cleanup_free_ char *b = xasprintf("{\"type\":\"async\",\"status\":\"Operation created\",\"status_code\":100,"
						   "\"operation\":\"/1.0/operations/aaaa\",\"error_code\":0,\"error\":\"\","
						   "\"metadata\":%s}", op_running);
		snprintf(d->last_query_body, sizeof(d->last_query_body), "%s", body);
		reply(fd, 202, "Location: /1.0/operations/aaaa\r\n", b);
	} else if (!strcmp(path, "/1.0/operations/aaaa/wait")) {
		sync_reply(fd, NULL, op_done);
	} else if (!strcmp(path, "/1.0/raw-file")) {
		static const char txt[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\r\n"
					  "plain text, not JSON\n";
		send_all(fd, txt, sizeof(txt) - 1);
	} else if (str_has_prefix(path, "/1.0/events")) {
		serve_events(fd, req);
		return false;
	} else {
		reply(fd, 404, NULL, "{\"type\":\"error\",\"error\":\"not found\",\"error_code\":404}");
	}
	return true;
}

static void *daemon_main(void *arg)
{
	struct fake_daemon *d = arg;
	int fd;

	while ((fd = accept(d->lfd, NULL, NULL)) >= 0) {
		while (serve_one(d, fd))
			;
		close(fd);
	}
	return NULL;
}

static void daemon_start(struct fake_daemon *d, const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	strcpy(sa.sun_path, sock);
	d->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(d->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(d->lfd, 8), 0);
	assert_int_equal(pthread_create(&d->th, NULL, daemon_main, d), 0);
}

static void daemon_stop(struct fake_daemon *d)
{
	shutdown(d->lfd, SHUT_RDWR);   /* accept() returns: the thread ends */
	pthread_join(d->th, NULL);
	close(d->lfd);
}

static void test_cli_against_daemon(void **state)
{
	struct env *e = *state;
	struct fake_daemon d = {0};
	struct run r;

	daemon_start(&d, e->sock);

	r = CELL("version");
	assert_string_equal(r.out, "Client version: " CELL_VERSION "\nServer version: 9.9\n");
	run_free(&r);

	r = CELL("info");
	assert_int_equal(r.rc, 0);
	assert_true(str_has_prefix(r.out, "config:\n  images.auto_update_interval: \"6\"\n"
					  "  core.https_address: 127.0.0.1:8443\napi_extensions:\n- a\n"));
	run_free(&r);

	r = CELL("config", "get", "core.https_address");
	assert_string_equal(r.out, "127.0.0.1:8443\n");
	run_free(&r);
	r = CELL("config", "get", "local:", "no.such.key");
	assert_string_equal(r.out, "\n");
	run_free(&r);

	r = CELL("config", "show");
	assert_string_equal(r.out, "config:\n  core.https_address: 127.0.0.1:8443\n  images.auto_update_interval: \"6\"\n");
	run_free(&r);

	r = CELL("config", "set", "core.https_address", "[::]:8443");
	assert_int_equal(r.rc, 0);
	assert_string_equal(d.last_ifmatch, "\"etag1\"");
	assert_string_equal(d.last_put, "{\"config\":{\"images.auto_update_interval\":\"6\",\"core.https_address\":\"[::]:8443\"}}");
	run_free(&r);

	r = CELL("config", "set", "core.trust_password=s3cret", "images.auto_update_interval=12");
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(d.last_put, "\"core.trust_password\":\"s3cret\""));
	assert_non_null(strstr(d.last_put, "\"images.auto_update_interval\":\"12\""));
	run_free(&r);

	r = CELL("config", "unset", "images.auto_update_interval");
	assert_int_equal(r.rc, 0);
	assert_string_equal(d.last_put, "{\"config\":{\"core.https_address\":\"127.0.0.1:8443\"}}");
	run_free(&r);

	stdin_text = "config:\n  core.https_address: 127.0.0.1:9999\n  images.auto_update_interval: 0\n";
	r = CELL("config", "edit");
	stdin_text = NULL;
	assert_int_equal(r.rc, 0);
	assert_string_equal(d.last_put, "{\"config\":{\"core.https_address\":\"127.0.0.1:9999\","
					"\"images.auto_update_interval\":\"0\"}}");
	run_free(&r);

	stdin_text = "config: [broken\n";
	r = CELL("config", "edit");
	stdin_text = NULL;
	assert_int_equal(r.rc, 1);
	assert_true(str_has_prefix(r.err, "Error: yaml: line "));
	run_free(&r);

	r = CELL("config", "set", "c1", "limits.memory=1GiB");
	assert_int_equal(r.rc, 0);
	assert_string_equal(d.last_ifmatch, "\"inst1\"");
	assert_string_equal(d.last_put, "{\"architecture\":\"x86_64\",\"config\":{\"limits.cpu\":\"1\","
					"\"limits.memory\":\"1GiB\"},\"devices\":{},\"ephemeral\":false,"
					"\"profiles\":[\"default\"],\"stateful\":false,\"description\":\"\"}");
	run_free(&r);

	r = CELL("config", "get", "local:c1", "limits.cpu");
	assert_string_equal(r.out, "1\n");
	run_free(&r);

	r = CELL("config", "show", "c1");
	assert_string_equal(r.out, "architecture: x86_64\nconfig:\n  limits.cpu: \"1\"\ndevices: {}\nephemeral: false\n"
				   "profiles:\n- default\nstateful: false\ndescription: \"\"\n");
	run_free(&r);

	r = CELL("query", "/1.0/operations?recursion=1");
	assert_int_equal(r.rc, 0);
	assert_true(str_has_prefix(r.out, "{\n\t\"running\": [\n\t\t{\n\t\t\t\"class\": \"task\",\n"));
	run_free(&r);

	r = CELL("query", "-X", "POST", "-d", "{\"name\":\"c1\"}", "--wait", "local:/1.0/instances");
	assert_int_equal(r.rc, 0);
	/* The finished operation, keys sorted, then lxc's blank line. */
	assert_true(str_has_prefix(r.out, "{\n\t\"class\": \"websocket\",\n"));
	assert_true(str_has_suffix(r.out, "\t\"status_code\": 200,\n\t\"updated_at\": \"2024-03-04T09:00:00Z\"\n}\n\n"));
	assert_string_equal(d.last_query_body, "{\"name\":\"c1\"}");
	run_free(&r);

	r = CELL("query", "--raw", "/1.0/nothing");
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "Error: not found\n");
	run_free(&r);

	r = CELL("query", "--raw", "/1.0/operations/aaaa/wait");
	assert_int_equal(r.rc, 0);
	assert_true(str_has_prefix(r.out, "{\n\t\"type\": \"sync\",\n\t\"status\": \"Success\",\n\t\"status_code\": 200,\n"));
	run_free(&r);

	r = CELL("query", "/1.0/raw-file");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "plain text, not JSON\n");
	run_free(&r);

	r = CELL("query", "-X", "FETCH", "/1.0");
	assert_string_equal(r.err, "Error: Action \"FETCH\" isn't supported by this tool\n");
	run_free(&r);

	r = CELL("--project", "p1", "query", "/1.0");
	assert_string_equal(r.err, "Error: --project cannot be used with the query command\n");
	run_free(&r);

	r = CELL("query", "1.0");
	assert_string_equal(r.err, "Error: Query path must start with /\n");
	run_free(&r);

	r = CELL("operation", "list");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out,
		"+--------------------------------------+-----------+-------------------+---------+------------+----------------------+\n"
		"|                  ID                  |   TYPE    |    DESCRIPTION    | STATUS  | CANCELABLE |       CREATED        |\n"
		"+--------------------------------------+-----------+-------------------+---------+------------+----------------------+\n"
		"| 6916c8a6-9b7d-4abd-90b3-aedfec7ec7da | TASK      | Creating instance | RUNNING | NO         | 2024/03/05 10:20 UTC |\n"
		"+--------------------------------------+-----------+-------------------+---------+------------+----------------------+\n"
		"| aaaa                                 | WEBSOCKET | Executing command | SUCCESS | YES        | 2024/03/04 09:00 UTC |\n"
		"+--------------------------------------+-----------+-------------------+---------+------------+----------------------+\n");
	run_free(&r);

	r = CELL("operation", "list", "--format", "json");
	assert_true(str_has_prefix(r.out, "[{\"id\":\"6916c8a6"));
	run_free(&r);

	r = CELL("operation", "delete", "nope");
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.err, "Error: Operation not found\n");
	run_free(&r);

	r = CELL("monitor", "--type=lifecycle", "--format", "json");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "{\"location\":\"none\",\"metadata\":{\"action\":\"instance-started\","
				   "\"source\":\"/1.0/instances/c1\"},\"timestamp\":\"2024-03-05T10:20:30Z\","
				   "\"type\":\"lifecycle\"}\n\n");
	run_free(&r);

	r = CELL("monitor");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "location: none\nmetadata:\n  action: instance-started\n  source: /1.0/instances/c1\n"
				   "timestamp: \"2024-03-05T10:20:30Z\"\ntype: lifecycle\n\n\n");
	run_free(&r);

	r = CELL("monitor", "--type", "logging", "--type", "operation", "--format=json");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "");   /* the lifecycle event is filtered out */
	run_free(&r);

	r = CELL("monitor", "--loglevel", "loud");
	assert_string_equal(r.err, "Error: Unknown level: loud\n");
	run_free(&r);

	r = CELL("monitor", "--pretty");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "INFO[03-05|10:20:30] Action: instance-started, Source: /1.0/instances/c1\n");
	run_free(&r);

	daemon_stop(&d);

	r = CELL("info");
	assert_int_equal(r.rc, 1);
	_cleanup_free_ char *expect = xasprintf("Error: connect %s: Connection refused\n", e->sock);
	assert_string_equal(r.err, expect);
	run_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_like_lxc),
		cmocka_unit_test(test_table_multiline_and_empty),
		cmocka_unit_test(test_compact_and_csv),
		cmocka_unit_test(test_sort_empty_last),
		cmocka_unit_test(test_json_and_formats),
		cmocka_unit_test(test_width_and_time),
		cmocka_unit_test_setup_teardown(test_conf_roundtrip, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_conf_yaml_layout, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_help_and_usage, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_remotes_offline, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_against_daemon, env_setup, env_teardown),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
