/* The pure parts of `cell exec`, `cell console` and `cell file` (option
 * parsing, mode decision, the console's detach sequence, paths and modes as
 * lxc reads them) and the websocket loop (client/ws_io.c) against a fake
 * server on socketpairs: output to fds, LXD's end-of-stream barrier,
 * stdin sent and its end told, signals read from an fd in the loop, and a
 * command that never reads its stdin not blocking its output. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "client/api.h"
#include "client/file.h"
#include "client/ws_io.h"
#include "common/cleanup.h"
#include "common/strbuf.h"
#include "common/ws_client.h"

/* -------------------------------------------------------- escape filter */

static size_t esc_run(struct cli_escape *e, const char *in, char *out, bool *detach)
{
	*detach = false;
	return cli_escape_filter(e, in, strlen(in), out, detach);
}

static void test_escape_detach(void **state)
{
	struct cli_escape e = { 0 };
	char out[32];
	bool detach;
	size_t n = esc_run(&e, "ls\r\001q", out, &detach);

	assert_true(detach);
	assert_int_equal(n, 3);
	assert_memory_equal(out, "ls\r", 3);
}

static void test_escape_split_across_reads(void **state)
{
	struct cli_escape e = { 0 };
	char out[32];
	bool detach;

	assert_int_equal(esc_run(&e, "a\001", out, &detach), 1);
	assert_false(detach);
	assert_true(e.armed);
	assert_int_equal(esc_run(&e, "q", out, &detach), 0);
	assert_true(detach);
}

static void test_escape_other_bytes_pass(void **state)
{
	struct cli_escape e = { 0 };
	char out[32];
	bool detach;
	size_t n;

	/* ctrl+a then x: both sent, in order, even split over two reads. */
	assert_int_equal(esc_run(&e, "\001", out, &detach), 0);
	n = esc_run(&e, "xq", out, &detach);
	assert_false(detach);
	assert_int_equal(n, 3);
	assert_memory_equal(out, "\001xq", 3);
	/* ctrl+a ctrl+a q: the first is sent, the second arms the detach. */
	n = esc_run(&e, "\001\001q", out, &detach);
	assert_true(detach);
	assert_int_equal(n, 1);
	assert_int_equal(out[0], '\001');
	/* A lone q is just a q. */
	e.armed = false;
	assert_int_equal(esc_run(&e, "q", out, &detach), 1);
	assert_false(detach);
}

/* ---------------------------------------------------------- exec options */

static void test_env_parse(void **state)
{
	_cleanup_json_ json_t *env = json_object();
	cell_error err = { 0 };

	assert_int_equal(cli_exec_parse_env("BARE,A=1,PATH=/a,b,B=x=y,E=,F=1,2=3", env, &err), 0);
	assert_string_equal(json_string_value(json_object_get(env, "BARE")), "");
	assert_string_equal(json_string_value(json_object_get(env, "A")), "1");
	/* "b" and "2=3" do not look like NAME=: they stay in the value before. */
	assert_string_equal(json_string_value(json_object_get(env, "PATH")), "/a,b");
	assert_string_equal(json_string_value(json_object_get(env, "B")), "x=y");
	assert_string_equal(json_string_value(json_object_get(env, "E")), "");
	assert_string_equal(json_string_value(json_object_get(env, "F")), "1,2=3");
	assert_int_equal(json_object_size(env), 6);
	assert_int_equal(cli_exec_parse_env(NULL, env, &err), 0);
	assert_true(cli_exec_parse_env("=x", env, &err) < 0);
	assert_string_equal(err.msg, "Bad environment variable: =x");
}

static bool decide(const char *mode, bool t, bool T, bool n, bool in, bool out, int *rc)
{
	cell_error err = { 0 };
	bool inter = false;

	*rc = cli_exec_interactive(mode, t, T, n, in, out, &inter, &err);
	return inter;
}

static void test_interactive_decision(void **state)
{
	int rc;

	assert_true(decide("auto", false, false, false, true, true, &rc));
	assert_false(decide("auto", false, false, false, true, false, &rc));
	assert_false(decide("auto", false, false, false, false, true, &rc));
	assert_true(decide("auto", true, false, false, false, false, &rc));
	assert_false(decide("auto", false, true, false, true, true, &rc));
	assert_true(decide("interactive", false, false, false, false, false, &rc));
	assert_false(decide("non-interactive", false, false, false, true, true, &rc));
	assert_false(decide("auto", true, false, true, true, true, &rc));   /* -n wins */
	assert_int_equal(rc, 0);
	decide("auto", true, true, false, true, true, &rc);
	assert_true(rc < 0);
	decide("interactive", true, false, false, true, true, &rc);
	assert_true(rc < 0);
	decide("sometimes", false, false, false, true, true, &rc);
	assert_true(rc < 0);
}

static void test_parse_id(void **state)
{
	cell_error err = { 0 };
	unsigned v = 7;

	assert_int_equal(cli_parse_id("user", "1000", &v, &err), 0);
	assert_int_equal(v, 1000);
	assert_int_equal(cli_parse_id("user", "4294967295", &v, &err), 0);
	assert_true(cli_parse_id("user", "4294967296", &v, &err) < 0);
	assert_true(cli_parse_id("user", "-1", &v, &err) < 0);
	assert_true(cli_parse_id("group", "12a", &v, &err) < 0);
	assert_string_equal(err.msg, "invalid argument \"12a\" for \"--group\" flag");
	assert_true(cli_parse_id("group", "", &v, &err) < 0);
}

/* ------------------------------------------------------------ file paths */

static void expect_clean(const char *in, const char *want)
{
	_cleanup_free_ char *got = cli_file_clean(in);
	assert_string_equal(got, want);
}

static void test_path_clean(void **state)
{
	expect_clean("", ".");
	expect_clean("/", "/");
	expect_clean("//a//b/", "/a/b");
	expect_clean("/a/./b/../c", "/a/c");
	expect_clean("/../../etc", "/etc");
	expect_clean("a/../../b", "../b");
	expect_clean("./x/.", "x");
	expect_clean("/root/.", "/root");
}

static void test_path_join_base(void **state)
{
	_cleanup_free_ char *j1 = cli_file_join("/root", "a.txt"), *j2 = cli_file_join("/", "x/../y");
	_cleanup_free_ char *j3 = cli_file_join("dir", ""), *b1 = cli_file_base("/a/b/");
	_cleanup_free_ char *b2 = cli_file_base("/"), *b3 = cli_file_base("name"), *b4 = cli_file_base("/dev/stdin");

	assert_string_equal(j1, "/root/a.txt");
	assert_string_equal(j2, "/y");
	assert_string_equal(j3, "dir");
	assert_string_equal(b1, "b");
	assert_string_equal(b2, "/");
	assert_string_equal(b3, "name");
	assert_string_equal(b4, "stdin");
}

static void test_file_spec(void **state)
{
	char *inst, *path;

	assert_int_equal(cli_file_spec("remote:c1/etc/hosts", &inst, &path), 0);
	assert_string_equal(inst, "remote:c1");
	assert_string_equal(path, "etc/hosts");
	free(inst);
	free(path);
	assert_int_equal(cli_file_spec("c1/", &inst, &path), 0);
	assert_string_equal(inst, "c1");
	assert_string_equal(path, "");
	free(inst);
	free(path);
	assert_int_equal(cli_file_spec("c1", &inst, &path), -EINVAL);
	assert_null(inst);
}

static void test_file_mode(void **state)
{
	cell_error err = { 0 };
	int m = -1;

	assert_int_equal(cli_file_parse_mode("644", &m, &err), 0);
	assert_int_equal(m, 0644);
	assert_int_equal(cli_file_parse_mode("0755", &m, &err), 0);
	assert_int_equal(m, 0755);
	assert_int_equal(cli_file_parse_mode("04755", &m, &err), 0);
	assert_int_equal(m, 0755);   /* permission bits only, as lxc's Perm() */
	assert_int_equal(cli_file_parse_mode("0x1ff", &m, &err), 0);
	assert_int_equal(m, 0777);
	assert_true(cli_file_parse_mode("899", &m, &err) < 0);   /* "0899": not octal */
	assert_true(cli_file_parse_mode("rwx", &m, &err) < 0);
	assert_true(cli_file_parse_mode("", &m, &err) < 0);
	assert_int_equal(cli_file_type_of("directory"), CLI_FILE_DIRECTORY);
	assert_int_equal(cli_file_type_of("symlink"), CLI_FILE_SYMLINK);
	assert_int_equal(cli_file_type_of(NULL), CLI_FILE_FILE);
	assert_int_equal(cli_file_type_of("fifo"), CLI_FILE_UNKNOWN);
}

/* ------------------------------------------------------ the ws loop, faked */

/* The server's side of one websocket: unmasked frames, as a server sends. */
static void srv_frame(int fd, enum wsc_opcode op, const void *data, size_t len)
{
	uint8_t hdr[14];
	size_t hl = wsc_encode_header(hdr, true, op, len, NULL);

	assert_int_equal(write(fd, hdr, hl), (ssize_t)hl);
	if (len)
		assert_int_equal(write(fd, data, len), (ssize_t)len);
}

/* One whole client frame (masked), payload unmasked into out. */
static enum wsc_opcode srv_read(int fd, strbuf *out)
{
	uint8_t buf[14];
	struct wsc_frame_hdr h;
	size_t have = 0;
	int hl;

	sb_reset(out);
	for (;;) {
		assert_int_equal(read(fd, buf + have, 1), 1);
		have++;
		if ((hl = wsc_decode_header(buf, have, &h)) > 0)
			break;
	}
	assert_true(h.masked);
	for (uint64_t i = 0; i < h.len; i++) {
		char c;
		assert_int_equal(read(fd, &c, 1), 1);
		sb_append(out, &c, 1);
	}
	wsc_apply_mask((uint8_t *)out->buf, out->len, h.mask, 0);
	return h.opcode;
}

struct fake {
	int srv[3];        /* server ends: control, stdin, stdout */
	wsc *ws[3];
	int in[2];         /* our stdin */
	int out[2];        /* our stdout */
	int sig[2];        /* stands in for the signalfd */
	struct cli_ws_loop loop;
	int signals[4];
	int nsignals;
};

static int fake_signal(void *arg, int signo, cell_error *err)
{
	struct fake *f = arg;
	f->signals[f->nsignals++] = signo;
	return 0;
}

static void fake_init(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	for (int i = 0; i < 3; i++) {
		int sp[2];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
		f->srv[i] = sp[0];
		f->ws[i] = wsc_from_conn(httpc_conn_from_fd(sp[1]));
	}
	assert_int_equal(pipe2(f->in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(f->out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(f->sig, O_CLOEXEC | O_NONBLOCK), 0);
	f->loop.n = 3;
	f->loop.sigfd = f->sig[0];
	f->loop.on_signal = fake_signal;
	f->loop.arg = f;
	f->loop.s[0] = (struct cli_ws_stream){ .ws = f->ws[0], .in_fd = -1, .out_fd = -1, .in_done = true };
	f->loop.s[1] = (struct cli_ws_stream){ .ws = f->ws[1], .in_fd = f->in[0], .out_fd = -1 };
	f->loop.s[2] = (struct cli_ws_stream){ .ws = f->ws[2], .in_fd = -1, .out_fd = f->out[1], .in_done = true,
					       .output = true, .essential = true };
}

static void fake_free(struct fake *f)
{
	cli_ws_loop_free(&f->loop);
	for (int i = 0; i < 3; i++) {
		wsc_free(f->ws[i]);
		close(f->srv[i]);
	}
	for (int i = 0; i < 2; i++) {
		if (f->in[i] >= 0)
			close(f->in[i]);
		close(f->out[i]);
		close(f->sig[i]);
	}
}

static void *run_loop(void *arg)
{
	struct fake *f = arg;
	cell_error err = { 0 };
	intptr_t rc = cli_ws_loop_run(&f->loop, &err);
	return (void *)rc;
}

static void send_fake_signal(struct fake *f, int signo)
{
	struct signalfd_siginfo si = { .ssi_signo = (uint32_t)signo };
	assert_int_equal(write(f->sig[1], &si, sizeof(si)), (ssize_t)sizeof(si));
}

static void test_loop_streams(void **state)
{
	_cleanup_sb_ strbuf got = { 0 };
	struct fake f;
	pthread_t t;
	void *rc;
	char out[64] = { 0 };

	fake_init(&f);
	assert_int_equal(pthread_create(&t, NULL, run_loop, &f), 0);
	/* stdin: bytes go out as one binary message, the end as a close frame */
	assert_int_equal(write(f.in[1], "in\0put", 6), 6);
	assert_int_equal(srv_read(f.srv[1], &got), WSC_BINARY);
	assert_int_equal(got.len, 6);
	assert_memory_equal(got.buf, "in\0put", 6);
	close(f.in[1]);
	f.in[1] = -1;
	assert_int_equal(srv_read(f.srv[1], &got), WSC_CLOSE);
	/* a signal is handed over in the loop */
	send_fake_signal(&f, SIGTERM);
	/* output: binary to the fd, then LXD's barrier ends the stream */
	srv_frame(f.srv[2], WSC_BINARY, "out\0\377", 5);
	srv_frame(f.srv[2], WSC_BINARY, "", 0);
	srv_frame(f.srv[2], WSC_TEXT, "", 0);
	pthread_join(t, &rc);
	assert_int_equal((intptr_t)rc, 0);
	assert_true(f.loop.s[2].ended);
	assert_int_equal(read(f.out[0], out, sizeof(out)), 5);
	assert_memory_equal(out, "out\0\377", 5);
	assert_int_equal(f.nsignals, 1);
	assert_int_equal(f.signals[0], SIGTERM);
	fake_free(&f);
}

/* The server holds stdin (its command does not read) while output flows:
 * the loop must keep taking output, never block sending. */
static void test_loop_output_flows_while_stdin_stalls(void **state)
{
	_cleanup_free_ char *blob = malloc(4 << 20);
	struct fake f;
	pthread_t t;
	void *rc;
	size_t total = 0;
	char buf[65536];

	fake_init(&f);
	/* far more stdin than the socket buffers hold, never read by the "server" */
	fcntl(f.in[1], F_SETPIPE_SZ, 1 << 20);
	memset(blob, 'x', 1 << 20);
	assert_int_equal(write(f.in[1], blob, 1 << 20), 1 << 20);
	assert_int_equal(pthread_create(&t, NULL, run_loop, &f), 0);
	memset(blob, 'o', 4 << 20);
	for (size_t off = 0; off < (4u << 20); off += 65536) {
		srv_frame(f.srv[2], WSC_BINARY, blob + off, 65536);
		while (total < off + 65536) {   /* our stdout is a pipe: drain it */
			ssize_t n = read(f.out[0], buf, sizeof(buf));
			assert_true(n > 0);
			total += (size_t)n;
		}
	}
	srv_frame(f.srv[2], WSC_TEXT, "", 0);
	pthread_join(t, &rc);
	assert_int_equal((intptr_t)rc, 0);
	assert_int_equal(total, 4u << 20);
	fake_free(&f);
}

static void test_loop_peer_close_ends(void **state)
{
	struct fake f;
	pthread_t t;
	void *rc;

	fake_init(&f);
	assert_int_equal(pthread_create(&t, NULL, run_loop, &f), 0);
	srv_frame(f.srv[2], WSC_CLOSE, "\003\350", 2);
	pthread_join(t, &rc);
	assert_int_equal((intptr_t)rc, 0);
	assert_true(f.loop.s[2].ended);
	fake_free(&f);
}

static void test_loop_vanished_server_ends(void **state)
{
	struct fake f;
	pthread_t t;
	void *rc;

	fake_init(&f);
	assert_int_equal(pthread_create(&t, NULL, run_loop, &f), 0);
	shutdown(f.srv[2], SHUT_RDWR);
	pthread_join(t, &rc);
	assert_int_equal((intptr_t)rc, 0);
	fake_free(&f);
}

/* ------------------------------------------- file transfers, fake server */

/* Answers each connection's request with the next canned response, then
 * closes it; the requests' heads (and bodies) are kept. */
struct canned {
	int lfd;
	pthread_t th;
	const char *const *answers;
	int served;
	strbuf requests;
};

static void *canned_main(void *arg)
{
	struct canned *cd = arg;
	int fd;

	for (; cd->answers[cd->served] && (fd = accept(cd->lfd, NULL, NULL)) >= 0; cd->served++) {
		char buf[65536];
		ssize_t n;
		/* Enough of the request: the head, and then the body, which in
		 * these tests ends with '!' (or a short wait ends the read). */
		struct timeval tv = { .tv_usec = 200000 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		while ((n = read(fd, buf, sizeof(buf))) > 0) {
			sb_append(&cd->requests, buf, (size_t)n);
			if (memmem(cd->requests.buf, cd->requests.len, "\r\n\r\n", 4) &&
			    (!strstr(cd->requests.buf, "Content-Length: ") ||
			     strstr(cd->requests.buf, "Content-Length: 0\r\n") ||
			     cd->requests.buf[cd->requests.len - 1] == '!'))
				break;
		}
		const char *a = cd->answers[cd->served];
		assert_int_equal(write(fd, a, strlen(a)), (ssize_t)strlen(a));
		close(fd);
	}
	return NULL;
}

struct canned_env {
	char dir[64], sock[96];
	struct canned cd;
	struct cli_client c;
	struct cli_file_inst f;
};

static void canned_start(struct canned_env *e, const char *const *answers)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	cell_error err = { 0 };

	memset(e, 0, sizeof(*e));
	strcpy(e->dir, "/tmp/cell-ut-file-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->sock, sizeof(e->sock), "%s/s", e->dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", e->sock);
	e->cd.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(e->cd.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(e->cd.lfd, 8), 0);
	e->cd.answers = answers;
	assert_int_equal(pthread_create(&e->cd.th, NULL, canned_main, &e->cd), 0);
	e->c.unix_path = e->sock;
	e->c.opts = (struct httpc_opts){ .unix_path = e->sock };
	assert_int_equal(httpc_new(&e->c.opts, &e->c.http, &err), 0);
	e->f = (struct cli_file_inst){ .c = &e->c, .name = "c1", .quiet = true, .devnull = -1 };
}

static void canned_stop(struct canned_env *e)
{
	pthread_join(e->cd.th, NULL);
	close(e->cd.lfd);
	httpc_free(e->c.http);
	if (e->f.devnull >= 0)
		close(e->f.devnull);
	unlink(e->sock);
	rmdir(e->dir);
}

static int dir_entries(const char *path)
{
	_cleanup_closedir_ DIR *d = opendir(path);
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	return n;
}

static void test_raw_post_headers_and_chunked_error(void **state)
{
	static const char *const answers[] = {
		"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
		"1b\r\n{\"type\":\"error\",\"error\":\"no\r\n"
		"e\r\n room\",\"error_\r\n"
		"a\r\ncode\":400}\r\n0\r\n\r\n",
		NULL,
	};
	struct canned_env e;
	struct cli_file_meta m = { .type = CLI_FILE_FILE, .uid = 5, .gid = 6, .mode = 0640 };
	struct cli_file_body b = { .fd = -1, .data = "abc!", .data_len = 4 };
	cell_error err = { 0 };

	canned_start(&e, answers);
	assert_true(cli_file_post(&e.f, "/root/a b", &m, &b, &err) < 0);
	assert_string_equal(err.msg, "no room");
	canned_stop(&e);
	/* LXD's headers, the path escaped, the body as given */
	assert_non_null(strstr(e.cd.requests.buf, "POST /1.0/instances/c1/files?path=%2Froot%2Fa%20b HTTP/1.1\r\n"));
	assert_non_null(strstr(e.cd.requests.buf, "\r\nX-LXD-type: file\r\nX-LXD-uid: 5\r\nX-LXD-gid: 6\r\n"
				 "X-LXD-mode: 0640\r\nX-LXD-write: overwrite\r\n"));
	assert_non_null(strstr(e.cd.requests.buf, "\r\nContent-Length: 4\r\n\r\nabc!"));
	sb_free(&e.cd.requests);
}

static void test_raw_get_file_meta(void **state)
{
	static const char *const answers[] = {
		"HTTP/1.1 200 OK\r\nX-LXD-type: file\r\nX-LXD-uid: 1000\r\nX-LXD-gid: 1001\r\nX-LXD-mode: 0751\r\n"
		"Content-Length: 11\r\n\r\nhello world",
		NULL,
	};
	struct canned_env e;
	struct cli_file_meta m;
	_cleanup_json_ json_t *listing = NULL;
	cell_error err = { 0 };
	char dest[160], buf[32] = { 0 };
	struct stat st;
	int fd;

	canned_start(&e, answers);
	snprintf(dest, sizeof(dest), "%s/out", e.dir);
	assert_int_equal(cli_file_pull_to(&e.f, "/x", dest, &m, &listing, &err), 0);
	assert_int_equal(m.type, CLI_FILE_FILE);
	assert_int_equal(m.uid, 1000);
	assert_int_equal(m.gid, 1001);
	assert_int_equal(m.mode, 0751);
	assert_int_equal(stat(dest, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0751);
	fd = open(dest, O_RDONLY);
	assert_int_equal(read(fd, buf, sizeof(buf)), 11);
	assert_string_equal(buf, "hello world");
	close(fd);
	unlink(dest);
	canned_stop(&e);
	sb_free(&e.cd.requests);
}

static void test_raw_get_without_length_falls_back(void **state)
{
	/* A 2xx body without a length: the raw path gives up before writing
	 * anything, and httpc asks again (GET is safe to repeat). */
	static const char *const answers[] = {
		"HTTP/1.1 200 OK\r\nX-LXD-type: file\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-LXD-type: file\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		NULL,
	};
	struct canned_env e;
	struct cli_file_meta m;
	_cleanup_json_ json_t *listing = NULL;
	cell_error err = { 0 };
	char dest[160], buf[8] = { 0 };
	int fd;

	canned_start(&e, answers);
	snprintf(dest, sizeof(dest), "%s/out", e.dir);
	assert_int_equal(cli_file_pull_to(&e.f, "/x", dest, &m, &listing, &err), 0);
	assert_int_equal(e.cd.served, 2);
	fd = open(dest, O_RDONLY);
	assert_int_equal(read(fd, buf, sizeof(buf)), 3);
	assert_string_equal(buf, "abc");
	close(fd);
	unlink(dest);
	canned_stop(&e);
	sb_free(&e.cd.requests);
}

static void test_raw_directory_listing_leaves_nothing(void **state)
{
	static const char *const answers[] = {
		"HTTP/1.1 200 OK\r\nX-LXD-type: directory\r\nX-LXD-mode: 0700\r\nContent-Length: 62\r\n\r\n"
		"{\"type\":\"sync\",\"status\":\"Success\",\"metadata\":[\"a\",\"b\"]}       ",
		NULL,
	};
	struct canned_env e;
	struct cli_file_meta m;
	_cleanup_json_ json_t *listing = NULL;
	cell_error err = { 0 };
	char dest[160];

	canned_start(&e, answers);
	snprintf(dest, sizeof(dest), "%s/out", e.dir);
	assert_int_equal(cli_file_pull_to(&e.f, "/d", dest, &m, &listing, &err), 0);
	assert_int_equal(m.type, CLI_FILE_DIRECTORY);
	assert_int_equal(json_array_size(listing), 2);
	assert_string_equal(json_string_value(json_array_get(listing, 1)), "b");
	/* neither the destination nor a temporary was left: only the socket */
	assert_int_equal(dir_entries(e.dir), 1);
	canned_stop(&e);
	sb_free(&e.cd.requests);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_detach),
		cmocka_unit_test(test_escape_split_across_reads),
		cmocka_unit_test(test_escape_other_bytes_pass),
		cmocka_unit_test(test_env_parse),
		cmocka_unit_test(test_interactive_decision),
		cmocka_unit_test(test_parse_id),
		cmocka_unit_test(test_path_clean),
		cmocka_unit_test(test_path_join_base),
		cmocka_unit_test(test_file_spec),
		cmocka_unit_test(test_file_mode),
		cmocka_unit_test(test_loop_streams),
		cmocka_unit_test(test_loop_output_flows_while_stdin_stalls),
		cmocka_unit_test(test_loop_peer_close_ends),
		cmocka_unit_test(test_loop_vanished_server_ends),
		cmocka_unit_test(test_raw_post_headers_and_chunked_error),
		cmocka_unit_test(test_raw_get_file_meta),
		cmocka_unit_test(test_raw_get_without_length_falls_back),
		cmocka_unit_test(test_raw_directory_listing_leaves_nothing),
	};
	signal(SIGPIPE, SIG_IGN);
	alarm(120);   /* a loop that deadlocks fails instead of hanging */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
