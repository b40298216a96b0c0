#include "common/http_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "common/cleanup.h"
#include "common/tls.h"
#include "common/util.h"

#ifndef CELL_VERSION
#define CELL_VERSION "0"
#endif

#define RBUF_SIZE 16384
#define MAX_HEADER_BYTES (64 * 1024)
#define MAX_HEADERS 128
#define MAX_MEM_BODY ((size_t)1 << 30)   /* a broken server must not exhaust memory */
#define IO_CHUNK 65536

struct httpc_conn {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	int timeout_ms;
	size_t rpos, rlen;
	char peer_fp[65];
	char *peer_pem;
	char rbuf[RBUF_SIZE];
};

/* ---------------------------------------------------------------- errors */

/* OpenSSL keeps its reason in a thread-local queue; fold it into the message. */
static int ssl_err(cell_error *err, int code, const char *what)
{
	char buf[256] = "";
	unsigned long e = ERR_get_error();

	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	if (!buf[0])
		return cell_err_sys(err, 500, code ? code : EIO, "%s", what);
	return cell_err(err, 500, code ? code : EIO, "%s: %s", what, buf);
}

/* ------------------------------------------------------------ connecting */

static int set_timeouts(int fd, int timeout_ms)
{
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	return 0;
}

static int connect_unix(const char *path, int timeout_ms, cell_error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;

	if (strlen(path) >= sizeof(sa.sun_path))
		return cell_err(err, 500, ENAMETOOLONG, "connect %s: socket path too long", path);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return cell_err_sys(err, 500, errno, "socket");
	if (timeout_ms > 0)
		set_timeouts(fd, timeout_ms);
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno != EINTR)
			return cell_err_sys(err, 500, errno, "connect %s", path);
	}
	return steal_fd(fd);
}

/* connect() bounded by timeout_ms (0 = the kernel's own timeout). */
static int connect_timed(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int flags = fcntl(fd, F_GETFL), soerr = 0, r;
	socklen_t sl = sizeof(soerr);

	if (timeout_ms <= 0)
		return connect(fd, sa, len) < 0 ? -errno : 0;
	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	r = connect(fd, sa, len);
	if (r < 0 && errno != EINPROGRESS)
		return -errno;
	if (r < 0) {
		do
			r = poll(&p, 1, timeout_ms);
		while (r < 0 && errno == EINTR);
		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			return -errno;
		if (soerr)
			return -soerr;
	}
	fcntl(fd, F_SETFL, flags);
	return 0;
}

static int connect_tcp(const char *host, int port, int timeout_ms, int connect_ms, cell_error *err)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
	char portstr[16];
	int rc, last = ECONNREFUSED, one = 1;

	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc)
		return cell_err(err, 500, EHOSTUNREACH, "lookup %s: %s", host, gai_strerror(rc));
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			last = errno;
			continue;
		}
		rc = connect_timed(fd, ai->ai_addr, ai->ai_addrlen, connect_ms);
		if (rc == 0) {
			freeaddrinfo(res);
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			if (timeout_ms > 0)
				set_timeouts(fd, timeout_ms);
			return fd;
		}
		last = -rc;
		close(fd);
	}
	freeaddrinfo(res);
	if (strchr(host, ':'))
		return cell_err_sys(err, 500, last, "connect [%s]:%d", host, port);
	return cell_err_sys(err, 500, last, "connect %s:%d", host, port);
}

static bool is_ip_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int tls_ctx_setup(httpc_conn *c, const struct httpc_opts *o, cell_error *err)
{
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (!c->ctx)
		return ssl_err(err, ENOMEM, "TLS context");
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	/* HTTP framing detects truncation itself; Go servers may skip close_notify. */
	SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (o->cert_path && o->key_path) {
		if (SSL_CTX_use_certificate_chain_file(c->ctx, o->cert_path) != 1)
			return ssl_err(err, EINVAL, o->cert_path);
		if (SSL_CTX_use_PrivateKey_file(c->ctx, o->key_path, SSL_FILETYPE_PEM) != 1)
			return ssl_err(err, EINVAL, o->key_path);
	}
	if (o->pin_fp || o->accept_any) {
		/* Trust is decided by the fingerprint after the handshake. */
		SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
	} else {
		SSL_CTX_set_default_verify_paths(c->ctx);
		SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	}
	return 0;
}

static int tls_peer_record(httpc_conn *c, cell_error *err)
{
	X509 *peer = SSL_get1_peer_certificate(c->ssl);
	int rc;

	if (!peer)
		return cell_err(err, 500, EPROTO, "TLS: server sent no certificate");
	tls_fingerprint_x509(peer, c->peer_fp);
	rc = tls_cert_pem(peer, &c->peer_pem, err);
	X509_free(peer);
	return rc;
}

static int tls_start(httpc_conn *c, const struct httpc_opts *o, cell_error *err)
{
	int rc = tls_ctx_setup(c, o, err);

	if (rc < 0)
		return rc;
	c->ssl = SSL_new(c->ctx);
	if (!c->ssl || !SSL_set_fd(c->ssl, c->fd))
		return ssl_err(err, ENOMEM, "TLS session");
	if (!is_ip_literal(o->host))
		SSL_set_tlsext_host_name(c->ssl, o->host);
	if (!o->pin_fp && !o->accept_any) {
		if (is_ip_literal(o->host))
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), o->host);
		else
			SSL_set1_host(c->ssl, o->host);
	}
	ERR_clear_error();
	if (SSL_connect(c->ssl) != 1) {
		long vr = SSL_get_verify_result(c->ssl);
		if (!o->pin_fp && !o->accept_any && vr != X509_V_OK)
			return cell_err(err, 500, EPERM, "TLS handshake with %s:%d: certificate verify failed: %s",
					o->host, o->port, X509_verify_cert_error_string(vr));
		char what[300];
		snprintf(what, sizeof(what), "TLS handshake with %s:%d", o->host, o->port);
		return ssl_err(err, errno ? errno : EPROTO, what);
	}
	rc = tls_peer_record(c, err);
	if (rc < 0)
		return rc;
	if (o->pin_fp && strcasecmp(o->pin_fp, c->peer_fp) != 0)
		return cell_err(err, 403, EPERM,
				"server certificate for %s:%d has changed (fingerprint %s, expected %s)",
				o->host, o->port, c->peer_fp, o->pin_fp);
	return 0;
}

static httpc_conn *conn_alloc(int fd)
{
	httpc_conn *c = calloc(1, sizeof(*c));
	if (c)
		c->fd = fd;
	return c;
}

int httpc_conn_open(const struct httpc_opts *o, httpc_conn **out, cell_error *err)
{
	httpc_conn *c;
	int fd, rc;

	*out = NULL;
	if (o->unix_path)
		fd = connect_unix(o->unix_path, o->timeout_ms, err);
	else if (o->host)
		fd = connect_tcp(o->host, o->port, o->timeout_ms, o->timeout_ms ? o->timeout_ms : o->connect_timeout_ms,
				 err);
	else
		return cell_err(err, 500, EINVAL, "connect: no address");
	if (fd < 0)
		return fd;
	c = conn_alloc(fd);
	if (!c) {
		close(fd);
		return cell_err(err, 500, ENOMEM, "connect: out of memory");
	}
	c->timeout_ms = o->timeout_ms;
	if (!o->unix_path && o->tls) {
		rc = tls_start(c, o, err);
		if (rc < 0) {
			httpc_conn_free(c);
			return rc;
		}
	}
	*out = c;
	return 0;
}

httpc_conn *httpc_conn_from_fd(int fd)
{
	return conn_alloc(fd);
}

void httpc_conn_free(httpc_conn *c)
{
	if (!c)
		return;
	if (c->ssl) {
		/* Best effort close_notify; never wait for the peer's. */
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	SSL_CTX_free(c->ctx);
	if (c->fd >= 0)
		close(c->fd);
	free(c->peer_pem);
	free(c);
}

int httpc_conn_fd(const httpc_conn *c) { return c->fd; }
SSL *httpc_conn_ssl(const httpc_conn *c) { return c->ssl; }
const char *httpc_conn_peer_fp(const httpc_conn *c) { return c->peer_fp; }
const char *httpc_conn_peer_pem(const httpc_conn *c) { return c->peer_pem; }

bool httpc_conn_pending(const httpc_conn *c)
{
	return c->rpos < c->rlen || (c->ssl && SSL_pending(c->ssl) > 0);
}

void httpc_conn_set_timeout(httpc_conn *c, int timeout_ms)
{
	c->timeout_ms = timeout_ms;
	set_timeouts(c->fd, timeout_ms > 0 ? timeout_ms : 0);
}

/* ------------------------------------------------------------------ I/O */

static ssize_t ssl_read_once(httpc_conn *c, void *buf, size_t n, cell_error *err)
{
	for (;;) {
		int r, e;

		ERR_clear_error();
		errno = 0;
		r = SSL_read(c->ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
		if (r > 0)
			return r;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_SYSCALL) &&
		    errno == EINTR)
			continue;
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
		    (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)))
			return cell_err(err, 504, ETIMEDOUT, "read: timed out");
		if (e == SSL_ERROR_SYSCALL && errno == 0)
			return 0;
		if (e == SSL_ERROR_SYSCALL)
			return cell_err_sys(err, 500, errno, "read");
		return ssl_err(err, EPROTO, "TLS read");
	}
}

static ssize_t raw_read(httpc_conn *c, void *buf, size_t n, cell_error *err)
{
	if (c->ssl)
		return ssl_read_once(c, buf, n, err);
	for (;;) {
		ssize_t r = read(c->fd, buf, n);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return cell_err(err, 504, ETIMEDOUT, "read: timed out");
		return cell_err_sys(err, 500, errno, "read");
	}
}

ssize_t httpc_conn_read(httpc_conn *c, void *buf, size_t n, cell_error *err)
{
	ssize_t r;

	if (n == 0)
		return 0;
	if (c->rpos == c->rlen) {
		if (n >= RBUF_SIZE)   /* large reads skip the copy */
			return raw_read(c, buf, n, err);
		r = raw_read(c, c->rbuf, RBUF_SIZE, err);
		if (r <= 0)
			return r;
		c->rpos = 0;
		c->rlen = (size_t)r;
	}
	r = (ssize_t)(c->rlen - c->rpos < n ? c->rlen - c->rpos : n);
	memcpy(buf, c->rbuf + c->rpos, (size_t)r);
	c->rpos += (size_t)r;
	return r;
}

int httpc_conn_read_full(httpc_conn *c, void *buf, size_t n, cell_error *err)
{
	char *p = buf;

	while (n) {
		ssize_t r = httpc_conn_read(c, p, n, err);
		if (r < 0)
			return (int)r;
		if (r == 0)
			return cell_err(err, 502, EPIPE, "read: unexpected end of stream");
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int ssl_write_all(httpc_conn *c, const char *p, size_t n, cell_error *err)
{
	while (n) {
		int chunk = n > INT_MAX ? INT_MAX : (int)n, r, e;

		ERR_clear_error();
		errno = 0;
		r = SSL_write(c->ssl, p, chunk);
		if (r > 0) {
			p += r;
			n -= (size_t)r;
			continue;
		}
		e = SSL_get_error(c->ssl, r);
		if (errno == EINTR)
			continue;
		if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
			return cell_err(err, 504, ETIMEDOUT, "write: timed out");
		if (e == SSL_ERROR_SYSCALL && errno)
			return cell_err_sys(err, 500, errno, "write");
		return ssl_err(err, EPIPE, "TLS write");
	}
	return 0;
}

int httpc_conn_write(httpc_conn *c, const void *buf, size_t n, cell_error *err)
{
	const char *p = buf;

	if (c->ssl)
		return ssl_write_all(c, p, n, err);
	while (n) {
		/* MSG_NOSIGNAL: a vanished peer is an error, not a SIGPIPE. */
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == ENOTSOCK)
			w = write(c->fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return cell_err(err, 504, ETIMEDOUT, "write: timed out");
			return cell_err_sys(err, 500, errno, "write");
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One CRLF- (or LF-) terminated line, without the terminator. *eof_first is
 * set when the stream ended before the first byte (a stale keep-alive). */
static int conn_read_line(httpc_conn *c, strbuf *line, size_t max, bool *eof_first, cell_error *err)
{
	sb_reset(line);
	if (eof_first)
		*eof_first = false;
	for (;;) {
		char *nl;
		size_t take;

		if (c->rpos == c->rlen) {
			ssize_t r = raw_read(c, c->rbuf, RBUF_SIZE, err);
			if (r == -ECONNRESET && eof_first && line->len == 0)
				*eof_first = true;
			if (r < 0)
				return (int)r;
			if (r == 0) {
				if (eof_first && line->len == 0)
					*eof_first = true;
				return cell_err(err, 502, EPIPE, "read response: connection closed by server");
			}
			c->rpos = 0;
			c->rlen = (size_t)r;
		}
		nl = memchr(c->rbuf + c->rpos, '\n', c->rlen - c->rpos);
		take = nl ? (size_t)(nl - (c->rbuf + c->rpos)) + 1 : c->rlen - c->rpos;
		if (line->len + take > max)
			return cell_err(err, 502, EPROTO, "read response: header line too long");
		if (sb_append(line, c->rbuf + c->rpos, take) < 0)
			return cell_err(err, 500, ENOMEM, "read response: out of memory");
		c->rpos += take;
		if (nl) {
			line->len--;
			if (line->len && line->buf[line->len - 1] == '\r')
				line->len--;
			line->buf[line->len] = '\0';
			return 0;
		}
	}
}

/* ------------------------------------------------------------- httpc */

struct httpc {
	struct httpc_opts o;   /* strings below are owned copies */
	char *unix_path, *host, *cert_path, *key_path, *pin_fp;
	char *host_header;
	httpc_conn *conn;
	bool can_reconnect;
};

static char *dup_or_null(const char *s, bool *fail)
{
	char *d;
	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*fail = true;
	return d;
}

int httpc_new(const struct httpc_opts *o, httpc **out, cell_error *err)
{
	httpc *c = calloc(1, sizeof(*c));
	bool fail = false;

	*out = NULL;
	if (!c)
		return cell_err(err, 500, ENOMEM, "out of memory");
	c->o = *o;
	c->o.unix_path = c->unix_path = dup_or_null(o->unix_path, &fail);
	c->o.host = c->host = dup_or_null(o->host, &fail);
	c->o.cert_path = c->cert_path = dup_or_null(o->cert_path, &fail);
	c->o.key_path = c->key_path = dup_or_null(o->key_path, &fail);
	c->o.pin_fp = c->pin_fp = dup_or_null(o->pin_fp, &fail);
	if (o->unix_path)
		c->host_header = strdup("unix.socket");   /* what LXD's own client sends */
	else if (o->host && strchr(o->host, ':'))
		c->host_header = xasprintf("[%s]:%d", o->host, o->port);
	else
		c->host_header = xasprintf("%s:%d", o->host ? o->host : "localhost", o->port);
	c->can_reconnect = true;
	if (fail || !c->host_header) {
		httpc_free(c);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	*out = c;
	return 0;
}

httpc *httpc_new_conn(httpc_conn *conn, const char *host_header)
{
	httpc *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->host_header = strdup(host_header ? host_header : "localhost");
	if (!c->host_header) {
		free(c);
		return NULL;
	}
	c->conn = conn;
	return c;
}

void httpc_free(httpc *c)
{
	if (!c)
		return;
	httpc_conn_free(c->conn);
	free(c->unix_path);
	free(c->host);
	free(c->cert_path);
	free(c->key_path);
	free(c->pin_fp);
	free(c->host_header);
	free(c);
}

int httpc_connect(httpc *c, cell_error *err)
{
	if (c->conn)
		return 0;
	if (!c->can_reconnect)
		return cell_err(err, 500, ENOTCONN, "connection closed");
	return httpc_conn_open(&c->o, &c->conn, err);
}

const char *httpc_peer_fp(const httpc *c) { return c->conn ? c->conn->peer_fp : ""; }
const char *httpc_peer_pem(const httpc *c) { return c->conn ? c->conn->peer_pem : NULL; }

httpc_conn *httpc_take_conn(httpc *c)
{
	return steal_ptr(c->conn);
}

static void drop_conn(httpc *c)
{
	httpc_conn_free(c->conn);
	c->conn = NULL;
}

/* ------------------------------------------------------------ requests */

static bool method_has_body(const char *m)
{
	return !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH");
}

static int build_head(httpc *c, const struct httpc_req *req, strbuf *sb)
{
	const char *m = req->method ? req->method : "GET";
	int rc = sb_printf(sb, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: cell/" CELL_VERSION "\r\n", m,
			   req->path && *req->path ? req->path : "/", c->host_header);

	for (const char *const *h = req->headers; h && *h && rc == 0; h++)
		rc = sb_printf(sb, "%s\r\n", *h);
	if (rc == 0 && req->body_fd >= 0 && req->body_fd_len < 0)
		rc = sb_puts(sb, "Transfer-Encoding: chunked\r\n");
	else if (rc == 0 && req->body_fd >= 0)
		rc = sb_printf(sb, "Content-Length: %lld\r\n", (long long)req->body_fd_len);
	else if (rc == 0 && (req->body_len || method_has_body(m)))
		rc = sb_printf(sb, "Content-Length: %zu\r\n", req->body_len);
	if (rc == 0)
		rc = sb_puts(sb, "\r\n");
	return rc;
}

static int send_fd_body(httpc_conn *conn, const struct httpc_req *req, cell_error *err)
{
	_cleanup_free_ char *buf = malloc(IO_CHUNK + 16);
	bool chunked = req->body_fd_len < 0;
	uint64_t done = 0, total = chunked ? 0 : (uint64_t)req->body_fd_len;
	int rc;

	if (!buf)
		return cell_err(err, 500, ENOMEM, "out of memory");
	for (;;) {
		size_t want = IO_CHUNK;
		ssize_t r;

		if (!chunked && total - done < want)
			want = (size_t)(total - done);
		if (!chunked && want == 0)
			break;
		r = read(req->body_fd, buf, want);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return cell_err_sys(err, 500, errno, "read request body");
		if (r == 0 && !chunked)
			return cell_err(err, 500, EIO, "read request body: file shorter than announced");
		if (r == 0)
			return httpc_conn_write(conn, "0\r\n\r\n", 5, err);
		if (chunked) {
			char hdr[24];
			int hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", (size_t)r);
			if ((rc = httpc_conn_write(conn, hdr, (size_t)hl, err)) < 0)
				return rc;
			memcpy(buf + r, "\r\n", 2);
			r += 2;
		}
		if ((rc = httpc_conn_write(conn, buf, (size_t)r, err)) < 0)
			return rc;
		done += (uint64_t)r - (chunked ? 2 : 0);
		if (req->progress && req->progress(req->progress_data, done, total))
			return cell_err(err, 499, ECANCELED, "upload cancelled");
	}
	return 0;
}

static int send_request(httpc *c, const struct httpc_req *req, cell_error *err)
{
	_cleanup_sb_ strbuf sb = {0};
	int rc = build_head(c, req, &sb);

	if (rc < 0)
		return cell_err(err, 500, ENOMEM, "out of memory");
	/* Small bodies ride in the same write (one TLS record, one syscall). */
	if (req->body_fd < 0 && req->body_len && req->body_len <= IO_CHUNK) {
		if (sb_append(&sb, req->body, req->body_len) < 0)
			return cell_err(err, 500, ENOMEM, "out of memory");
		return httpc_conn_write(c->conn, sb.buf, sb.len, err);
	}
	rc = httpc_conn_write(c->conn, sb.buf, sb.len, err);
	if (rc < 0)
		return rc;
	if (req->body_fd >= 0)
		return send_fd_body(c->conn, req, err);
	if (req->body_len)
		return httpc_conn_write(c->conn, req->body, req->body_len, err);
	return 0;
}

static int parse_status(const char *line, struct httpc_resp *resp, bool *http10, cell_error *err)
{
	int minor = 1, status = 0, n = 0;

	if (sscanf(line, "HTTP/1.%d %3d%n", &minor, &status, &n) < 2 || status < 100 || status > 999)
		return cell_err(err, 502, EPROTO, "bad HTTP status line \"%.80s\"", line);
	*http10 = minor == 0;
	resp->status = status;
	free(resp->reason);
	resp->reason = strdup(line[n] == ' ' ? line + n + 1 : line + n);
	return resp->reason ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

static int add_header(struct httpc_resp *resp, const char *line, cell_error *err)
{
	const char *colon = strchr(line, ':'), *v;
	struct httpc_header *nh;
	size_t vl;

	if (!colon || colon == line)
		return cell_err(err, 502, EPROTO, "bad HTTP header \"%.80s\"", line);
	if (resp->nheaders >= MAX_HEADERS)
		return cell_err(err, 502, EPROTO, "too many HTTP headers");
	nh = realloc(resp->headers, (resp->nheaders + 1) * sizeof(*nh));
	if (!nh)
		return cell_err(err, 500, ENOMEM, "out of memory");
	resp->headers = nh;
	for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
		;
	vl = strlen(v);
	while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		vl--;
	nh[resp->nheaders].name = strndup(line, (size_t)(colon - line));
	nh[resp->nheaders].value = strndup(v, vl);
	resp->nheaders++;
	if (!nh[resp->nheaders - 1].name || !nh[resp->nheaders - 1].value)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return 0;
}

static void clear_headers(struct httpc_resp *resp)
{
	for (size_t i = 0; i < resp->nheaders; i++) {
		free(resp->headers[i].name);
		free(resp->headers[i].value);
	}
	free(resp->headers);
	resp->headers = NULL;
	resp->nheaders = 0;
}

/* Status line and headers; 1xx interim answers other than 101 are skipped. */
static int read_head(httpc_conn *conn, struct httpc_resp *resp, bool *http10, bool *stale, cell_error *err)
{
	_cleanup_sb_ strbuf line = {0};
	size_t total;
	int rc;

	for (bool first = true;; first = false) {
		rc = conn_read_line(conn, &line, MAX_HEADER_BYTES, first ? stale : NULL, err);
		if (rc < 0)
			return rc;
		if (first && line.len == 0)
			return cell_err(err, 502, EPROTO, "bad HTTP status line \"\"");
		if ((rc = parse_status(line.buf, resp, http10, err)) < 0)
			return rc;
		clear_headers(resp);
		total = 0;
		for (;;) {
			if ((rc = conn_read_line(conn, &line, MAX_HEADER_BYTES, NULL, err)) < 0)
				return rc;
			if (line.len == 0)
				break;
			total += line.len;
			if (total > MAX_HEADER_BYTES)
				return cell_err(err, 502, EPROTO, "HTTP headers too large");
			if ((rc = add_header(resp, line.buf, err)) < 0)
				return rc;
		}
		if (resp->status >= 200 || resp->status == 101)
			return 0;
	}
}

struct sink {
	strbuf *sb;
	int fd;
	uint64_t done, total;
	httpc_progress_fn progress;
	void *progress_data;
};

static int sink_put(struct sink *s, const char *p, size_t n, cell_error *err)
{
	if (s->fd < 0) {
		if (s->sb->len + n > MAX_MEM_BODY)
			return cell_err(err, 502, EFBIG, "response body too large");
		if (sb_append(s->sb, p, n) < 0)
			return cell_err(err, 500, ENOMEM, "out of memory");
	} else {
		while (n) {
			ssize_t w = write(s->fd, p, n);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return cell_err_sys(err, 500, errno, "write response body");
			p += w;
			n -= (size_t)w;
			s->done += (uint64_t)w;
		}
		if (s->progress && s->progress(s->progress_data, s->done, s->total))
			return cell_err(err, 499, ECANCELED, "download cancelled");
	}
	return 0;
}

/* Copy exactly n bytes (or until EOF when n == UINT64_MAX) into the sink. */
static int copy_body(httpc_conn *conn, struct sink *s, uint64_t n, cell_error *err)
{
	char buf[IO_CHUNK];

	while (n) {
		size_t want = n < sizeof(buf) ? (size_t)n : sizeof(buf);
		ssize_t r = httpc_conn_read(conn, buf, want, err);
		int rc;

		if (r < 0)
			return (int)r;
		if (r == 0) {
			if (n == UINT64_MAX)
				return 0;
			return cell_err(err, 502, EPIPE, "read response: connection closed mid-body");
		}
		if ((rc = sink_put(s, buf, (size_t)r, err)) < 0)
			return rc;
		if (n != UINT64_MAX)
			n -= (uint64_t)r;
	}
	return 0;
}

static int read_chunked(httpc_conn *conn, struct sink *s, cell_error *err)
{
	_cleanup_sb_ strbuf line = {0};
	int rc;

	for (;;) {
		char *end;
		unsigned long long size;

		if ((rc = conn_read_line(conn, &line, 1024, NULL, err)) < 0)
			return rc;
		errno = 0;
		size = strtoull(line.buf, &end, 16);
		if (end == line.buf || errno || (*end && *end != ';' && *end != ' ' && *end != '\t'))
			return cell_err(err, 502, EPROTO, "bad chunk size \"%.40s\"", line.buf);
		if (size == 0)
			break;
		if ((rc = copy_body(conn, s, size, err)) < 0)
			return rc;
		if ((rc = conn_read_line(conn, &line, 1024, NULL, err)) < 0)
			return rc;
		if (line.len)
			return cell_err(err, 502, EPROTO, "chunk not followed by CRLF");
	}
	do {   /* trailers, ignored */
		if ((rc = conn_read_line(conn, &line, MAX_HEADER_BYTES, NULL, err)) < 0)
			return rc;
	} while (line.len);
	return 0;
}

static bool header_has_token(const char *v, const char *token)
{
	size_t tl = strlen(token);

	for (const char *p = v; p && *p;) {
		while (*p == ' ' || *p == ',' || *p == '\t')
			p++;
		if (!strncasecmp(p, token, tl) && (p[tl] == '\0' || p[tl] == ',' || p[tl] == ' ' || p[tl] == ';'))
			return true;
		p = strchr(p, ',');
	}
	return false;
}

static int read_body(httpc_conn *conn, const struct httpc_req *req, struct httpc_resp *resp, bool *keep,
		     cell_error *err)
{
	const char *te = httpc_resp_header(resp, "Transfer-Encoding");
	const char *cl = httpc_resp_header(resp, "Content-Length");
	bool to_fd = req->out_fd >= 0 && resp->status >= 200 && resp->status < 300;
	struct sink s = { .sb = &resp->body, .fd = to_fd ? req->out_fd : -1,
			  .progress = req->progress, .progress_data = req->progress_data };
	unsigned long long len;
	char *end;

	if ((req->method && !strcmp(req->method, "HEAD")) || resp->status == 204 || resp->status == 304 ||
	    resp->status == 101)
		return 0;
	if (te && header_has_token(te, "chunked"))
		return read_chunked(conn, &s, err);
	if (cl) {
		errno = 0;
		len = strtoull(cl, &end, 10);
		if (errno || end == cl || *end || cl[0] == '-')
			return cell_err(err, 502, EPROTO, "bad Content-Length \"%.40s\"", cl);
		s.total = len;
		return copy_body(conn, &s, len, err);
	}
	*keep = false;   /* body ends at EOF */
	return copy_body(conn, &s, UINT64_MAX, err);
}

static int exchange(httpc *c, const struct httpc_req *req, struct httpc_resp *resp, bool *stale,
		    cell_error *err)
{
	const char *conn_hdr;
	bool http10 = false, keep;
	int rc;

	*stale = false;
	rc = send_request(c, req, err);
	if (rc == -EPIPE || rc == -ECONNRESET)
		*stale = true;
	if (rc < 0)
		return rc;
	rc = read_head(c->conn, resp, &http10, stale, err);
	if (rc < 0)
		return rc;
	conn_hdr = httpc_resp_header(resp, "Connection");
	keep = http10 ? conn_hdr && header_has_token(conn_hdr, "keep-alive")
		      : !(conn_hdr && header_has_token(conn_hdr, "close"));
	rc = read_body(c->conn, req, resp, &keep, err);
	if (rc < 0)
		return rc;
	if (!keep && resp->status != 101)
		drop_conn(c);
	return 0;
}

int httpc_request(httpc *c, const struct httpc_req *req, struct httpc_resp *resp, cell_error *err)
{
	memset(resp, 0, sizeof(*resp));
	for (int attempt = 0;; attempt++) {
		bool fresh = !c->conn, stale = false;
		int rc = httpc_connect(c, err);

		if (rc < 0)
			return rc;
		rc = exchange(c, req, resp, &stale, err);
		if (rc == 0)
			return 0;
		drop_conn(c);
		/* A reused keep-alive connection the server has meanwhile closed:
		 * nothing was processed, so sending again is safe. */
		if (!fresh && stale && attempt == 0 && c->can_reconnect && req->body_fd < 0) {
			httpc_resp_free(resp);
			cell_err_clear(err);
			continue;
		}
		return rc;
	}
}

const char *httpc_resp_header(const struct httpc_resp *r, const char *name)
{
	for (size_t i = 0; i < r->nheaders; i++)
		if (!strcasecmp(r->headers[i].name, name))
			return r->headers[i].value;
	return NULL;
}

void httpc_resp_free(struct httpc_resp *r)
{
	clear_headers(r);
	free(r->reason);
	r->reason = NULL;
	sb_free(&r->body);
	r->status = 0;
}

/* ---------------------------------------------------------------- URLs */

static int parse_port(const char *s, size_t n, int *port)
{
	int v = 0;

	if (n == 0 || n > 5)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	*port = v;
	return 0;
}

static int split_hostport(const char *hp, size_t n, int default_port, struct httpc_url *u)
{
	const char *colon;
	size_t hl;

	u->port = default_port;
	if (n && hp[0] == '[') {
		const char *rb = memchr(hp, ']', n);
		if (!rb)
			return -EINVAL;
		hl = (size_t)(rb - hp - 1);
		if (hl == 0 || hl >= sizeof(u->host))
			return -EINVAL;
		memcpy(u->host, hp + 1, hl);
		u->host[hl] = '\0';
		if ((size_t)(rb + 1 - hp) == n)
			return 0;
		if (rb[1] != ':')
			return -EINVAL;
		return parse_port(rb + 2, n - (size_t)(rb + 2 - hp), &u->port);
	}
	colon = memchr(hp, ':', n);
	/* More than one colon without brackets: a bare IPv6 address. */
	if (colon && memchr(colon + 1, ':', n - (size_t)(colon + 1 - hp)))
		colon = NULL;
	hl = colon ? (size_t)(colon - hp) : n;
	if (hl == 0 || hl >= sizeof(u->host))
		return -EINVAL;
	memcpy(u->host, hp, hl);
	u->host[hl] = '\0';
	return colon ? parse_port(colon + 1, n - hl - 1, &u->port) : 0;
}

int httpc_parse_url(const char *url, int default_port, struct httpc_url *out, cell_error *err)
{
	const char *rest = url, *sep = strstr(url, "://"), *slash;
	size_t hpl;

	memset(out, 0, sizeof(*out));
	if (sep) {
		size_t sl = (size_t)(sep - url);
		if (sl >= sizeof(out->scheme))
			return cell_err(err, 400, EINVAL, "invalid URL \"%s\": unknown scheme", url);
		for (size_t i = 0; i < sl; i++)
			out->scheme[i] = (char)tolower((unsigned char)url[i]);
		rest = sep + 3;
	} else {
		strcpy(out->scheme, "https");
	}
	if (!strcmp(out->scheme, "unix")) {
		if (strlen(rest) >= sizeof(out->path))
			return cell_err(err, 400, EINVAL, "invalid URL \"%s\": path too long", url);
		strcpy(out->path, rest);
		return 0;
	}
	if (strcmp(out->scheme, "https") && strcmp(out->scheme, "http"))
		return cell_err(err, 400, EINVAL, "invalid URL \"%s\": unsupported scheme \"%s\"", url, out->scheme);
	slash = strchr(rest, '/');
	hpl = slash ? (size_t)(slash - rest) : strlen(rest);
	if (memchr(rest, '@', hpl))
		return cell_err(err, 400, EINVAL, "invalid URL \"%s\": credentials are not supported", url);
	if (split_hostport(rest, hpl, default_port, out) < 0)
		return cell_err(err, 400, EINVAL, "invalid URL \"%s\"", url);
	if (slash) {
		if (strlen(slash) >= sizeof(out->path))
			return cell_err(err, 400, EINVAL, "invalid URL \"%s\": path too long", url);
		strcpy(out->path, slash);
	}
	return 0;
}

char *httpc_escape(const char *s)
{
	static const char hx[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(n * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hx[*p >> 4];
			*o++ = hx[*p & 15];
		}
	}
	*o = '\0';
	return out;
}
