/* HTTP/1.1 client (common/http_client.c) against fake servers: socketpairs,
 * a unix socket, and a TLS server on loopback. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
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
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/cleanup.h"
#include "common/http_client.h"
#include "common/strbuf.h"
#include "common/tls.h"
#include "common/util.h"

/* ---------------------------------------------------------- fake server */

/* Reads one request (headers and body) from a byte source. */
typedef ssize_t (*read_fn)(void *src, void *buf, size_t n);

static ssize_t fd_read(void *src, void *buf, size_t n) { return read(*(int *)src, buf, n); }
static ssize_t ssl_read_fn(void *src, void *buf, size_t n) { return SSL_read(src, buf, (int)n); }

static int read_byte(read_fn rd, void *src, char *c)
{
	return rd(src, c, 1) == 1 ? 0 : -1;
}

static int read_line(read_fn rd, void *src, strbuf *all, strbuf *line)
{
	char c;
	sb_reset(line);
	for (;;) {
		if (read_byte(rd, src, &c) < 0)
			return -1;
		sb_append(all, &c, 1);
		if (c == '\n')
			return 0;
		if (c != '\r')
			sb_append(line, &c, 1);
	}
}

/* The raw request goes to `all`; the decoded body to `body`. */
static int read_request(read_fn rd, void *src, strbuf *all, strbuf *body)
{
	_cleanup_sb_ strbuf line = {0};
	long clen = 0;
	bool chunked = false;

	do {
		if (read_line(rd, src, all, &line) < 0)
			return -1;
		if (line.len && !strncasecmp(line.buf, "Content-Length:", 15))
			clen = atol(line.buf + 15);
		if (line.len && !strncasecmp(line.buf, "Transfer-Encoding: chunked", 26))
			chunked = true;
	} while (line.len);
	while (chunked) {
		long n;
		if (read_line(rd, src, all, &line) < 0)
			return -1;
		n = strtol(line.buf, NULL, 16);
		for (long i = 0; i < n + 2; i++) {   /* data and CRLF */
			char c;
			if (read_byte(rd, src, &c) < 0)
				return -1;
			sb_append(all, &c, 1);
			if (i < n)
				sb_append(body, &c, 1);
		}
		if (n == 0)
			break;
	}
	for (long i = 0; !chunked && i < clen; i++) {
		char c;
		if (read_byte(rd, src, &c) < 0)
			return -1;
		sb_append(all, &c, 1);
		sb_append(body, &c, 1);
	}
	return 0;
}

static void write_all(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = write(fd, s, n);
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

#define MAX_REQ 8
struct fake {
	int fd;
	const char *responses[MAX_REQ];   /* one per request; NULL ends */
	bool close_after;                 /* hang up after the last response */
	strbuf req[MAX_REQ];
	strbuf body[MAX_REQ];
	pthread_t th;
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	for (int i = 0; i < MAX_REQ && f->responses[i]; i++) {
		if (read_request(fd_read, &f->fd, &f->req[i], &f->body[i]) < 0)
			break;
		write_all(f->fd, f->responses[i], strlen(f->responses[i]));
	}
	if (f->close_after)
		shutdown(f->fd, SHUT_RDWR);
	return NULL;
}

/* A client over one end of a socketpair, the fake server on the other. */
static httpc *start_fake(struct fake *f)
{
	int sv[2];
	httpc *c;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->fd = sv[1];
	c = httpc_new_conn(httpc_conn_from_fd(sv[0]), "localhost");
	assert_non_null(c);
	assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
	return c;
}

static void stop_fake(struct fake *f)
{
	pthread_join(f->th, NULL);
	close(f->fd);
}

static void fake_free(struct fake *f)
{
	for (int i = 0; i < MAX_REQ; i++) {
		sb_free(&f->req[i]);
		sb_free(&f->body[i]);
	}
}

#define GET(p) (&(struct httpc_req){ .method = "GET", .path = (p), HTTPC_REQ_DEFAULTS })

/* ------------------------------------------------------------- basics */

static void test_content_length(void **state)
{
	struct fake f = { .responses = { "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
					 "ETag: \"abc\"\r\nContent-Length: 13\r\n\r\n{\"a\":\"hello\"}" } };
	httpc *c = start_fake(&f);
	struct httpc_resp r;
	cell_error err = {0};

	assert_int_equal(httpc_request(c, GET("/1.0"), &r, &err), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.reason, "OK");
	assert_string_equal(httpc_resp_header(&r, "content-type"), "application/json");
	assert_string_equal(httpc_resp_header(&r, "ETAG"), "\"abc\"");
	assert_null(httpc_resp_header(&r, "X-Missing"));
	assert_int_equal(r.body.len, 13);
	assert_string_equal(r.body.buf, "{\"a\":\"hello\"}");
	httpc_resp_free(&r);
	httpc_free(c);
	stop_fake(&f);
	assert_true(str_has_prefix(f.req[0].buf ? f.req[0].buf : "", "GET /1.0 HTTP/1.1\r\nHost: localhost\r\n"));
	fake_free(&f);
}

static void test_chunked_keepalive(void **state)
{
	struct fake f = { .responses = {
				  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				  "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
				  "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
				  "HTTP/1.1 204 No Content\r\n\r\n",
			  } };
	httpc *c = start_fake(&f);
	struct httpc_resp r;
	cell_error err = {0};

	assert_int_equal(httpc_request(c, GET("/a"), &r, &err), 0);
	assert_string_equal(r.body.buf, "hello world");
	httpc_resp_free(&r);
	/* Same connection: a 404 is an answer, not a transport error. */
	assert_int_equal(httpc_request(c, GET("/b"), &r, &err), 0);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.body.buf, "no");
	httpc_resp_free(&r);
	assert_int_equal(httpc_request(c, &(struct httpc_req){ .method = "DELETE", .path = "/c", HTTPC_REQ_DEFAULTS },
				       &r, &err), 0);
	assert_int_equal(r.status, 204);
	assert_int_equal(r.body.len, 0);
	httpc_resp_free(&r);
	httpc_free(c);
	stop_fake(&f);
	assert_true(str_has_prefix(f.req[2].buf, "DELETE /c HTTP/1.1\r\n"));
	fake_free(&f);
}

static void test_post_memory_body(void **state)
{
	static const char body[] = "{\"config\":{\"core.https_address\":\"127.0.0.1:8443\"}}";
	const char *hdrs[] = { "Content-Type: application/json", "If-Match: \"e1\"", NULL };
	struct fake f = { .responses = { "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
					 "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" } };
	httpc *c = start_fake(&f);
	struct httpc_resp r;
	cell_error err = {0};

	assert_int_equal(httpc_request(c, &(struct httpc_req){ .method = "PUT", .path = "/1.0", .headers = hdrs,
							       .body = body, .body_len = strlen(body),
							       HTTPC_REQ_DEFAULTS },
				       &r, &err), 0);
	httpc_resp_free(&r);
	/* POST with no body still announces its length. */
	assert_int_equal(httpc_request(c, &(struct httpc_req){ .method = "POST", .path = "/x", HTTPC_REQ_DEFAULTS },
				       &r, &err), 0);
	httpc_resp_free(&r);
	httpc_free(c);
	stop_fake(&f);
	assert_string_equal(f.body[0].buf, body);
	assert_non_null(strstr(f.req[0].buf, "\r\nIf-Match: \"e1\"\r\n"));
	assert_non_null(strstr(f.req[0].buf, "\r\nContent-Length: 50\r\n"));
	assert_non_null(strstr(f.req[1].buf, "\r\nContent-Length: 0\r\n"));
	fake_free(&f);
}

struct prog {
	uint64_t last_done, last_total;
	int calls;
	int abort_at;
};

static int on_progress(void *data, uint64_t done, uint64_t total)
{
	struct prog *p = data;
	assert_true(done >= p->last_done);
	p->last_done = done;
	p->last_total = total;
	return ++p->calls == p->abort_at;
}

static int temp_file_with(size_t n, char fill)
{
	char path[] = "/tmp/test_httpc_XXXXXX";
	int fd = mkstemp(path);
	_cleanup_free_ char *buf = malloc(n);

	assert_true(fd >= 0);
	unlink(path);
	memset(buf, fill, n);
	for (size_t i = 0; i < n; i += 1000)
		buf[i] = (char)('a' + (i / 1000) % 26);
	write_all(fd, buf, n);
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static void test_fd_body_chunked_and_sized(void **state)
{
	struct fake f = { .responses = { "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
					 "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" } };
	httpc *c = start_fake(&f);
	struct httpc_resp r;
	cell_error err = {0};
	struct prog p = {0};
	_cleanup_close_ int fd = temp_file_with(200000, 'x');
	_cleanup_free_ char *expect = malloc(200000);

	assert_int_equal(pread(fd, expect, 200000, 0), 200000);
	assert_int_equal(httpc_request(c, &(struct httpc_req){ .method = "POST", .path = "/1.0/images",
							       .body_fd = fd, .body_fd_len = -1, .out_fd = -1,
							       .progress = on_progress, .progress_data = &p },
				       &r, &err), 0);
	httpc_resp_free(&r);
	assert_int_equal(p.last_done, 200000);
	assert_int_equal(p.last_total, 0);
	lseek(fd, 0, SEEK_SET);
	p = (struct prog){0};
	assert_int_equal(httpc_request(c, &(struct httpc_req){ .method = "POST", .path = "/1.0/images",
							       .body_fd = fd, .body_fd_len = 200000, .out_fd = -1,
							       .progress = on_progress, .progress_data = &p },
				       &r, &err), 0);
	httpc_resp_free(&r);
	assert_int_equal(p.last_total, 200000);
	httpc_free(c);
	stop_fake(&f);
	assert_non_null(strstr(f.req[0].buf, "Transfer-Encoding: chunked\r\n"));
	assert_int_equal(f.body[0].len, 200000);
	assert_memory_equal(f.body[0].buf, expect, 200000);
	assert_non_null(strstr(f.req[1].buf, "Content-Length: 200000\r\n"));
	assert_memory_equal(f.body[1].buf, expect, 200000);
	fake_free(&f);
}

static void test_response_to_fd(void **state)
{
	static char resp[300100];
	struct fake f = { .responses = { resp } };
	char tmpl[] = "/tmp/test_httpc_out_XXXXXX";
	_cleanup_close_ int out = mkstemp(tmpl);
	httpc *c;
	struct httpc_resp r;
	cell_error err = {0};
	struct prog p = {0};
	struct stat st;
	int n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n");

	memset(resp + n, 'z', 300000);
	resp[n + 300000] = '\0';
	unlink(tmpl);
	c = start_fake(&f);
	assert_int_equal(httpc_request(c, &(struct httpc_req){ .method = "GET", .path = "/export", .body_fd = -1,
							       .out_fd = out, .progress = on_progress,
							       .progress_data = &p },
				       &r, &err), 0);
	assert_int_equal(r.body.len, 0);
	assert_int_equal(fstat(out, &st), 0);
	assert_int_equal(st.st_size, 300000);
	assert_int_equal(p.last_done, 300000);
	assert_int_equal(p.last_total, 300000);
	httpc_resp_free(&r);
	httpc_free(c);
	stop_fake(&f);
	fake_free(&f);
}

static void test_continue_and_eof_body(void **state)
{
	struct fake f = { .responses = { "HTTP/1.1 100 Continue\r\n\r\n"
					 "HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nuntil the end" },
			  .close_after = true };
	httpc *c = start_fake(&f);
	struct httpc_resp r;
	cell_error err = {0};

	assert_int_equal(httpc_request(c, GET("/"), &r, &err), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(httpc_resp_header(&r, "x-a"), "1");
	assert_string_equal(r.body.buf, "until the end");
	httpc_resp_free(&r);
	/* The connection ended with the body and cannot be reopened. */
	assert_true(httpc_request(c, GET("/"), &r, &err) < 0);
	httpc_free(c);
	stop_fake(&f);
	fake_free(&f);
}

static void expect_failure(const char *response, const char *msg_part)
{
	struct fake f = { .responses = { response }, .close_after = true };
	httpc *c = start_fake(&f);
	struct httpc_resp r;
	cell_error err = {0};

	assert_true(httpc_request(c, GET("/"), &r, &err) < 0);
	if (!strstr(err.msg, msg_part))
		fail_msg("\"%s\" does not contain \"%s\"", err.msg, msg_part);
	httpc_resp_free(&r);
	httpc_free(c);
	stop_fake(&f);
	fake_free(&f);
}

static void test_malformed(void **state)
{
	expect_failure("SMTP ready\r\n\r\n", "bad HTTP status line");
	expect_failure("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "closed mid-body");
	expect_failure("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size");
	expect_failure("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length");
	expect_failure("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad HTTP header");
	expect_failure("", "connection closed by server");
}

/* --------------------------------------------------------- unix socket */

struct unix_server {
	int lfd;
	int served;
	pthread_t th;
};

/* One request per connection, then hang up: every reuse finds a stale connection. */
static void *unix_main(void *arg)
{
	struct unix_server *s = arg;
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

	for (int i = 0; i < 2; i++) {
		int fd = accept(s->lfd, NULL, NULL);
		_cleanup_sb_ strbuf all = {0}, body = {0};
		if (fd < 0)
			break;
		if (read_request(fd_read, &fd, &all, &body) == 0) {
			write_all(fd, resp, sizeof(resp) - 1);
			s->served++;
		}
		usleep(20000);   /* let the client go idle on it first */
		close(fd);
	}
	return NULL;
}

static void test_unix_reconnect(void **state)
{
	char dir[] = "/tmp/test_httpc_unix_XXXXXX";
	char path[108];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct unix_server s = {0};
	struct httpc_opts o = {0};
	_cleanup_httpc_ httpc *c = NULL;
	struct httpc_resp r;
	cell_error err = {0};

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/unix.socket", dir);
	strcpy(sa.sun_path, path);
	s.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(s.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s.lfd, 4), 0);
	assert_int_equal(pthread_create(&s.th, NULL, unix_main, &s), 0);

	o.unix_path = path;
	assert_int_equal(httpc_new(&o, &c, &err), 0);
	assert_int_equal(httpc_request(c, GET("/1.0"), &r, &err), 0);
	assert_string_equal(r.body.buf, "ok");
	httpc_resp_free(&r);
	usleep(100000);   /* the server has closed the kept-alive connection by now */
	assert_int_equal(httpc_request(c, GET("/1.0"), &r, &err), 0);
	assert_string_equal(r.body.buf, "ok");
	httpc_resp_free(&r);

	pthread_join(s.th, NULL);
	assert_int_equal(s.served, 2);
	close(s.lfd);
	unlink(path);
	rmdir(dir);
}

static void test_connect_errors(void **state)
{
	struct httpc_opts o = { .unix_path = "/nonexistent/celld/unix.socket" };
	_cleanup_httpc_ httpc *c = NULL;
	struct httpc_resp r;
	cell_error err = {0};

	assert_int_equal(httpc_new(&o, &c, &err), 0);
	assert_true(httpc_request(c, GET("/1.0"), &r, &err) < 0);
	assert_string_equal(err.msg, "connect /nonexistent/celld/unix.socket: No such file or directory");
	httpc_free(c);
	c = NULL;

	/* Port 1 on loopback: nothing listens there. */
	o = (struct httpc_opts){ .host = "127.0.0.1", .port = 1, .tls = true, .timeout_ms = 2000 };
	assert_int_equal(httpc_new(&o, &c, &err), 0);
	assert_true(httpc_request(c, GET("/1.0"), &r, &err) < 0);
	assert_string_equal(err.msg, "connect 127.0.0.1:1: Connection refused");
}

/* ------------------------------------------------------------------ TLS */

struct tls_server {
	char dir[64], crt[96], key[96];
	int lfd, port;
	int conns;               /* connections to serve */
	char client_fp[65];
	char server_fp[65];
	pthread_t th;
};

static int accept_any_cert(int ok, X509_STORE_CTX *ctx) { return 1; }

static void *tls_main(void *arg)
{
	struct tls_server *s = arg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsecured";

	SSL_CTX_use_certificate_file(ctx, s->crt, SSL_FILETYPE_PEM);
	SSL_CTX_use_PrivateKey_file(ctx, s->key, SSL_FILETYPE_PEM);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_cert);
	for (int i = 0; i < s->conns; i++) {
		int fd = accept(s->lfd, NULL, NULL);
		SSL *ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) == 1) {
			X509 *peer = SSL_get1_peer_certificate(ssl);
			_cleanup_sb_ strbuf all = {0}, body = {0};
			if (peer) {
				tls_fingerprint_x509(peer, s->client_fp);
				X509_free(peer);
			}
			if (read_request(ssl_read_fn, ssl, &all, &body) == 0)
				SSL_write(ssl, resp, sizeof(resp) - 1);
			SSL_shutdown(ssl);
		}
		SSL_free(ssl);
		close(fd);
	}
	SSL_CTX_free(ctx);
	return NULL;
}

static void tls_start(struct tls_server *s, int conns)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	cell_error err = {0};
	_cleanup_x509_ X509 *x = NULL;

	strcpy(s->dir, "/tmp/test_httpc_tls_XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->crt, sizeof(s->crt), "%s/server.crt", s->dir);
	snprintf(s->key, sizeof(s->key), "%s/server.key", s->dir);
	assert_int_equal(tls_generate_cert(s->crt, s->key, "test-server", true, &err), 0);
	assert_int_equal(tls_load_cert(s->crt, &x, &err), 0);
	tls_fingerprint_x509(x, s->server_fp);
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->lfd, 4), 0);
	getsockname(s->lfd, (struct sockaddr *)&sa, &sl);
	s->port = ntohs(sa.sin_port);
	s->conns = conns;
	assert_int_equal(pthread_create(&s->th, NULL, tls_main, s), 0);
}

static void tls_stop(struct tls_server *s)
{
	pthread_join(s->th, NULL);
	close(s->lfd);
	unlink(s->crt);
	unlink(s->key);
	rmdir(s->dir);
}

static void test_tls(void **state)
{
	struct tls_server s = {0};
	char ccrt[96], ckey[96], client_fp[65];
	cell_error err = {0};
	_cleanup_x509_ X509 *cx = NULL;
	struct httpc_resp r;
	httpc *c;

	tls_start(&s, 3);
	snprintf(ccrt, sizeof(ccrt), "%s/client.crt", s.dir);
	snprintf(ckey, sizeof(ckey), "%s/client.key", s.dir);
	assert_int_equal(tls_generate_cert(ccrt, ckey, "me@here", false, &err), 0);
	assert_int_equal(tls_load_cert(ccrt, &cx, &err), 0);
	tls_fingerprint_x509(cx, client_fp);

	/* First contact: accept anything, learn the fingerprint. */
	struct httpc_opts o = { .host = "127.0.0.1", .port = s.port, .tls = true, .cert_path = ccrt,
				.key_path = ckey, .accept_any = true, .timeout_ms = 5000 };
	assert_int_equal(httpc_new(&o, &c, &err), 0);
	assert_int_equal(httpc_connect(c, &err), 0);
	assert_string_equal(httpc_peer_fp(c), s.server_fp);
	assert_non_null(strstr(httpc_peer_pem(c), "BEGIN CERTIFICATE"));
	assert_int_equal(httpc_request(c, GET("/1.0"), &r, &err), 0);
	assert_string_equal(r.body.buf, "secured");
	httpc_resp_free(&r);
	httpc_free(c);

	/* Pinned to the right fingerprint (upper case works too). */
	char upper[65];
	for (int i = 0; i < 65; i++)
		upper[i] = (char)(s.server_fp[i] >= 'a' && s.server_fp[i] <= 'f' ? s.server_fp[i] - 32 : s.server_fp[i]);
	o.accept_any = false;
	o.pin_fp = upper;
	assert_int_equal(httpc_new(&o, &c, &err), 0);
	assert_int_equal(httpc_request(c, GET("/1.0"), &r, &err), 0);
	httpc_resp_free(&r);
	httpc_free(c);

	/* Pinned to something else. */
	o.pin_fp = "0000000000000000000000000000000000000000000000000000000000000000";
	assert_int_equal(httpc_new(&o, &c, &err), 0);
	assert_true(httpc_request(c, GET("/1.0"), &r, &err) < 0);
	assert_non_null(strstr(err.msg, "has changed"));
	assert_int_equal(err.status, 403);
	httpc_free(c);

	tls_stop(&s);
	assert_string_equal(s.client_fp, client_fp);
	unlink(ccrt);
	unlink(ckey);
	rmdir(s.dir);
}

static void test_tls_system_ca_rejects_self_signed(void **state)
{
	struct tls_server s = {0};
	cell_error err = {0};
	struct httpc_resp r;
	httpc *c;

	tls_start(&s, 1);
	struct httpc_opts o = { .host = "127.0.0.1", .port = s.port, .tls = true, .timeout_ms = 5000 };
	assert_int_equal(httpc_new(&o, &c, &err), 0);
	assert_true(httpc_request(c, GET("/1.0"), &r, &err) < 0);
	assert_non_null(strstr(err.msg, "certificate verify failed"));
	httpc_free(c);
	tls_stop(&s);
}

/* ----------------------------------------------------------------- URLs */

static void test_parse_url(void **state)
{
	struct httpc_url u;
	cell_error err = {0};

	assert_int_equal(httpc_parse_url("https://example.com:9443/1.0", 8443, &u, &err), 0);
	assert_string_equal(u.scheme, "https");
	assert_string_equal(u.host, "example.com");
	assert_int_equal(u.port, 9443);
	assert_string_equal(u.path, "/1.0");

	assert_int_equal(httpc_parse_url("10.0.0.1", 8443, &u, &err), 0);
	assert_string_equal(u.scheme, "https");
	assert_string_equal(u.host, "10.0.0.1");
	assert_int_equal(u.port, 8443);
	assert_string_equal(u.path, "");

	assert_int_equal(httpc_parse_url("[fd42::1]:8444", 8443, &u, &err), 0);
	assert_string_equal(u.host, "fd42::1");
	assert_int_equal(u.port, 8444);

	assert_int_equal(httpc_parse_url("HTTPS://[::1]", 8443, &u, &err), 0);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 8443);

	assert_int_equal(httpc_parse_url("fd42::2", 8443, &u, &err), 0);
	assert_string_equal(u.host, "fd42::2");

	assert_int_equal(httpc_parse_url("unix:///var/lib/celld/unix.socket", 0, &u, &err), 0);
	assert_string_equal(u.scheme, "unix");
	assert_string_equal(u.path, "/var/lib/celld/unix.socket");
	assert_int_equal(httpc_parse_url("unix://", 0, &u, &err), 0);
	assert_string_equal(u.path, "");

	assert_true(httpc_parse_url("ftp://x", 8443, &u, &err) < 0);
	assert_true(httpc_parse_url("https://h:0", 8443, &u, &err) < 0);
	assert_true(httpc_parse_url("h:99999", 8443, &u, &err) < 0);
	assert_true(httpc_parse_url("h:80x", 8443, &u, &err) < 0);
	assert_true(httpc_parse_url("https://user:pw@h", 8443, &u, &err) < 0);
	assert_true(httpc_parse_url("https://:80", 8443, &u, &err) < 0);
	assert_true(httpc_parse_url("[::1", 8443, &u, &err) < 0);
}

static void test_escape(void **state)
{
	_cleanup_free_ char *a = httpc_escape("a b/c?d=e&f");
	_cleanup_free_ char *b = httpc_escape("Safe-._~09");
	assert_string_equal(a, "a%20b%2Fc%3Fd%3De%26f");
	assert_string_equal(b, "Safe-._~09");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content_length),
		cmocka_unit_test(test_chunked_keepalive),
		cmocka_unit_test(test_post_memory_body),
		cmocka_unit_test(test_fd_body_chunked_and_sized),
		cmocka_unit_test(test_response_to_fd),
		cmocka_unit_test(test_continue_and_eof_body),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_unix_reconnect),
		cmocka_unit_test(test_connect_errors),
		cmocka_unit_test(test_tls),
		cmocka_unit_test(test_tls_system_ca_rejects_self_signed),
		cmocka_unit_test(test_parse_url),
		cmocka_unit_test(test_escape),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
