#include "daemon/server.h"

#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/tls.h"
#include "common/util.h"
#include "daemon/daemon.h"
#include "daemon/certificates.h"
#include "daemon/config.h"
#include "daemon/http.h"
#include "daemon/router.h"
#include "daemon/server_conn.h"

static struct lws_context *srv_ctx;
static struct lws_context *srv_ctx_dying;   /* destroyed once more after the loop ends */
static struct lws_vhost *srv_unix_vh, *srv_https_vh;
static char srv_https_addr[128];
static char *srv_unix_path;

/* Custom request headers handlers read; lws only keeps those we ask for. */
static const char *const srv_custom_headers[] = {
	"x-lxd-fingerprint", "x-lxd-filename", "x-lxd-public", "x-lxd-properties",
	"x-lxd-uid", "x-lxd-gid", "x-lxd-mode", "x-lxd-type", "x-lxd-write",
	"x-lxd-secret", "x-lxd-instance-type", "x-lxd-pool", "x-lxd-name", "x-lxd-project",
};

static const struct { enum lws_token_indexes tok; const char *name; } srv_known_headers[] = {
	{ WSI_TOKEN_HTTP_CONTENT_TYPE, "content-type" },
	{ WSI_TOKEN_HTTP_CONTENT_LENGTH, "content-length" },
	{ WSI_TOKEN_HTTP_IF_MATCH, "if-match" },
	{ WSI_TOKEN_HTTP_USER_AGENT, "user-agent" },
	{ WSI_TOKEN_HTTP_AUTHORIZATION, "authorization" },
	{ WSI_TOKEN_HTTP_TRANSFER_ENCODING, "transfer-encoding" },
};

static int srv_method_of(struct lws *wsi, enum http_method *m)
{
	static const struct { enum lws_token_indexes tok; enum http_method m; } map[] = {
		{ WSI_TOKEN_GET_URI, HTTP_GET }, { WSI_TOKEN_POST_URI, HTTP_POST },
		{ WSI_TOKEN_PUT_URI, HTTP_PUT }, { WSI_TOKEN_PATCH_URI, HTTP_PATCH },
		{ WSI_TOKEN_DELETE_URI, HTTP_DELETE }, { WSI_TOKEN_HEAD_URI, HTTP_HEAD },
		{ WSI_TOKEN_OPTIONS_URI, HTTP_OPTIONS },
	};
	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (lws_hdr_total_length(wsi, map[i].tok)) {
			*m = map[i].m;
			return (int)map[i].tok;
		}
	return -1;
}

/* Copy a header lws has already bounded (max_http_header_data) into req. */
static void srv_take_header(http_req *req, const char *name, int len,
			    int (*copy)(struct lws *, char *, int, const void *), struct lws *wsi,
			    const void *key)
{
	char *v;

	if (len < 0 || req->nheaders >= HTTP_MAX_HEADERS || !(v = malloc((size_t)len + 1)))
		return;
	if (copy(wsi, v, len + 1, key) < 0 || !(req->headers[req->nheaders].name = strdup(name))) {
		free(v);
		return;
	}
	req->headers[req->nheaders++].value = v;
}

static int srv_copy_token(struct lws *wsi, char *dst, int len, const void *key)
{
	return lws_hdr_copy(wsi, dst, len, *(const enum lws_token_indexes *)key);
}

static int srv_copy_custom(struct lws *wsi, char *dst, int len, const void *key)
{
	return lws_hdr_custom_copy(wsi, dst, len, key, (int)strlen(key));
}

static void srv_collect_headers(struct lws *wsi, http_req *req)
{
	char name[64];

	for (size_t i = 0; i < ARRAY_SIZE(srv_known_headers); i++) {
		enum lws_token_indexes tok = srv_known_headers[i].tok;
		if (lws_hdr_total_length(wsi, tok) > 0)
			srv_take_header(req, srv_known_headers[i].name, lws_hdr_total_length(wsi, tok),
					srv_copy_token, wsi, &tok);
	}
	for (size_t i = 0; i < ARRAY_SIZE(srv_custom_headers); i++) {
		int n = snprintf(name, sizeof(name), "%s:", srv_custom_headers[i]);
		srv_take_header(req, srv_custom_headers[i], lws_hdr_custom_length(wsi, name, n),
				srv_copy_custom, wsi, name);
	}
}

static void srv_collect_args(struct lws *wsi, http_req *req)
{
	char buf[4096];

	for (int i = 0; i < HTTP_MAX_ARGS; i++) {
		char **na;
		if (lws_hdr_copy_fragment(wsi, buf, sizeof(buf), WSI_TOKEN_HTTP_URI_ARGS, i) < 0)
			break;
		na = realloc(req->args, sizeof(char *) * (size_t)(req->nargs + 1));
		if (!na)
			break;
		req->args = na;
		req->args[req->nargs++] = strdup(buf);
	}
}

/* Trust is decided per request: a certificate may be revoked mid-connection. */
static void srv_identify(struct lws *wsi, struct srv_conn *c)
{
	c->req.via_unix = lws_get_vhost(wsi) == srv_unix_vh;
	if (c->req.via_unix) {
		c->req.trusted = true;
		return;
	}
	if (!c->peer_checked) {
		SSL *ssl = lws_get_ssl(wsi);
		X509 *x = ssl ? SSL_get1_peer_certificate(ssl) : NULL;
		c->peer_checked = true;
		if (x) {
			BIO *b = BIO_new(BIO_s_mem());
			char *pem;
			long n;
			tls_fingerprint_x509(x, c->peer_fp);
			if (b && PEM_write_bio_X509(b, x) && (n = BIO_get_mem_data(b, &pem)) > 0)
				c->peer_pem = strndup(pem, (size_t)n);
			BIO_free(b);
			X509_free(x);
		}
	}
	memcpy(c->req.peer_fp, c->peer_fp, sizeof(c->peer_fp));
	c->req.peer_cert_pem = c->peer_pem;
	c->req.trusted = c->peer_fp[0] && cert_is_trusted(c->peer_fp);
}

/* Fill c->req from the parsed request line and headers; returns -1 on junk. */
static int srv_build_req(struct lws *wsi, struct srv_conn *c, const char *uri)
{
	char buf[4096];
	int tok = srv_method_of(wsi, &c->req.method);

	if (tok < 0)
		return -1;
	if (!uri) {
		if (lws_hdr_copy(wsi, buf, sizeof(buf), (enum lws_token_indexes)tok) < 0)
			return -1;
		uri = buf;
	}
	c->req.path = strdup(uri);
	if (!c->req.path)
		return -1;
	srv_collect_headers(wsi, &c->req);
	srv_collect_args(wsi, &c->req);
	c->req.conn = c;
	srv_identify(wsi, c);
	return 0;
}

static const char *const srv_method_names[] = { "GET", "HEAD", "PUT", "POST", "PATCH",
						 "DELETE", "OPTIONS" };

static void srv_dispatch(struct srv_conn *c)
{
	c->rm->fn(&c->req, &c->resp);
	if (log_get_level() == LOG_LVL_DEBUG)
		log_debug("%s %s%s: %d", srv_method_names[c->req.method], c->req.path,
			  c->req.via_unix ? "" : " (https)", c->resp.deferred ? 0 : c->resp.status);
	if (!c->resp.deferred)
		srv_conn_respond(c);
}

/* Route the request; answers at once for errors, else waits for the body. */
static int srv_on_http(struct lws *wsi, struct srv_conn *c, const char *uri)
{
	const struct route *route;
	const char *cl;
	unsigned long long len = 0;

	srv_conn_reset(c, wsi);
	if (srv_build_req(wsi, c, uri) < 0)
		return -1;
	switch (router_match(&c->req, &route, &c->rm)) {
	case ROUTE_NO_PATH:
		resp_error(&c->resp, 404, "not found");
		return srv_conn_reject(c);
	case ROUTE_NO_METHOD:
		resp_error(&c->resp, 405, "method not allowed");
		return srv_conn_reject(c);
	case ROUTE_FOUND:
		break;
	}
	if (!c->req.trusted && !(c->rm->flags & ROUTE_UNTRUSTED_OK)) {
		resp_error(&c->resp, 403, "not authorized");
		return srv_conn_reject(c);
	}
	cl = http_req_header(&c->req, "content-length");
	if (cl && (!*cl || strspn(cl, "0123456789") != strlen(cl))) {
		resp_error(&c->resp, 400, "Invalid Content-Length \"%s\"", cl);
		return srv_conn_reject(c);
	}
	if (cl)
		len = strtoull(cl, NULL, 10);
	if (!len && !http_req_header(&c->req, "transfer-encoding")) {
		srv_dispatch(c);
		return 0;
	}
	if (c->rm->flags & ROUTE_STREAM_BODY)
		return srv_conn_body_begin(c);
	/* lws 4.1 does not decode chunked request bodies; server_body.c does,
	 * for streamed routes only.  Say so rather than wait for a body forever. */
	if (!cl) {
		resp_error(&c->resp, 411, "Length Required: send the body with Content-Length");
		return srv_conn_reject(c);
	}
	if (len > SERVER_MAX_BODY) {
		resp_error(&c->resp, 413, "Request body too large (limit %u bytes)", SERVER_MAX_BODY);
		return srv_conn_reject(c);
	}
	c->want_body = true;
	return 0;
}

static int srv_on_body(struct srv_conn *c, const void *in, size_t len)
{
	if (!c->want_body && !c->streaming)
		return 0;
	if (c->streaming)
		return srv_conn_body_chunk(c, in, len);
	if (c->req.body.len + len > SERVER_MAX_BODY) {
		resp_error(&c->resp, 413, "Request body too large (limit %u bytes)", SERVER_MAX_BODY);
		c->want_body = false;
		return srv_conn_reject(c);
	}
	return sb_append(&c->req.body, in, len) < 0 ? -1 : 0;
}

static int srv_on_body_done(struct srv_conn *c)
{
	if (c->streaming)
		return srv_conn_body_end(c);
	if (!c->want_body)
		return 0;
	c->want_body = false;
	srv_dispatch(c);
	return 0;
}

/* HTTP request events; an answer ready when they return is written at once. */
static int srv_http_event(struct lws *wsi, struct srv_conn *c, enum lws_callback_reasons reason,
			  void *in, size_t len)
{
	int rc;

	c->in_cb = true;
	if (reason == LWS_CALLBACK_HTTP)
		rc = srv_on_http(wsi, c, in);
	else if (reason == LWS_CALLBACK_HTTP_BODY)
		rc = srv_on_body(c, in, len);
	else
		rc = srv_on_body_done(c);
	c->in_cb = false;
	if (rc == 0 && c->responding && !c->headers_sent)
		rc = srv_conn_write(c);
	return rc;
}

/* Websocket upgrade: route it; the handler accepts or refuses before the handshake. */
static int srv_on_ws_filter(struct lws *wsi, struct srv_conn *c)
{
	const struct route *route;
	const struct route_method *rm;
	cell_error err = { 0 };

	srv_conn_reset(c, wsi);
	if (srv_build_req(wsi, c, NULL) < 0)
		return -1;
	if (router_match(&c->req, &route, &rm) == ROUTE_NO_PATH || !route->ws)
		return -1;
	if (!c->req.trusted && !(route->ws_flags & ROUTE_UNTRUSTED_OK))
		return -1;
	c->ws = ws_conn_new(wsi);
	if (!c->ws)
		return -1;
	if (route->ws(&c->req, c->ws, &err) < 0) {
		log_debug("websocket %s refused: %s", c->req.path, err.msg);
		ws_conn_free(c->ws);
		c->ws = NULL;
		return -1;
	}
	return 0;
}

static int srv_verify_accept_any(int ok, X509_STORE_CTX *ctx) { return 1; }

static int srv_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			size_t len)
{
	struct srv_conn *c = user;

	switch (reason) {
	case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
		/* Ask every client for its certificate but let untrusted ones in:
		 * trust is checked against our store per request, as LXD does. */
		SSL_CTX_set_verify((SSL_CTX *)user, SSL_VERIFY_PEER, srv_verify_accept_any);
		return 0;
	case LWS_CALLBACK_HTTP:
	case LWS_CALLBACK_HTTP_BODY:
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		return srv_http_event(wsi, c, reason, in, len);
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return srv_conn_write(c);
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return srv_on_ws_filter(wsi, c) < 0 ? 1 : 0;
	case LWS_CALLBACK_ESTABLISHED:
		return c->ws ? ws_conn_established(c->ws) : -1;
	case LWS_CALLBACK_RECEIVE:
		return c->ws ? ws_conn_receive(c->ws, in, len) : -1;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return c->ws ? ws_conn_writeable(c->ws) : -1;
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		/* lws frees our per-connection data between keep-alive requests. */
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_CLOSED:
		/* Both ends: a refused or failed upgrade may close as HTTP. */
		if (c && c->ws) {
			ws_conn_closed(c->ws);
			c->ws = NULL;
		}
		srv_conn_closed(c);
		return 0;
	default:
		return 0;
	}
}

static const struct lws_protocols srv_protocols[] = {
	{ "lxd", srv_callback, sizeof(struct srv_conn), 65536, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void srv_lws_log(int level, const char *line)
{
	size_t n = strlen(line);
	while (n && line[n - 1] == '\n')
		n--;
	if (level & LLL_ERR)
		log_warn("lws: %.*s", (int)n, line);
	else
		log_debug("lws: %.*s", (int)n, line);
}

int server_init(uv_loop_t *loop, cell_error *err)
{
	struct lws_context_creation_info info;
	static void *loops[1];

	lws_set_log_level(LLL_ERR | (log_get_level() == LOG_LVL_DEBUG ? LLL_WARN : 0), srv_lws_log);
	memset(&info, 0, sizeof(info));
	loops[0] = loop;
	info.foreign_loops = loops;
	/* No SSL global init here: OpenSSL is initialised only when an HTTPS
	 * vhost is made, so a unix-socket-only daemon stays small. */
	info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = srv_protocols;
	info.server_string = "celld";
	info.max_http_header_data = 8192;
	info.max_http_header_pool = 256;
	info.pt_serv_buf_size = 65536;
	info.timeout_secs = 10;           /* slowloris: half requests time out */
	info.timeout_secs_ah_idle = 10;
	info.keepalive_timeout = 60;
	srv_ctx = lws_create_context(&info);
	if (!srv_ctx)
		return cell_err(err, 500, EIO, "start HTTP server: libwebsockets context failed");
	return 0;
}

static int srv_vhost_base(struct lws_context_creation_info *vi, const char *name)
{
	memset(vi, 0, sizeof(*vi));
	vi->vhost_name = name;
	vi->protocols = srv_protocols;
	vi->keepalive_timeout = 60;
	vi->timeout_secs = 10;
	vi->timeout_secs_ah_idle = 10;
	return 0;
}

int server_listen_unix(const char *path, const char *group, cell_error *err)
{
	struct lws_context_creation_info vi;
	gid_t gid = 0;

	if (group && *group) {
		struct group *g = getgrnam(group);
		if (!g)
			return cell_err(err, 400, ENOENT, "unknown group %s", group);
		gid = g->gr_gid;
	}
	if (unlink(path) < 0 && errno != ENOENT)
		return cell_err_sys(err, 500, errno, "remove stale %s", path);
	srv_vhost_base(&vi, "unix");
	vi.options = LWS_SERVER_OPTION_UNIX_SOCK;
	vi.iface = path;
	srv_unix_vh = lws_create_vhost(srv_ctx, &vi);
	if (!srv_unix_vh)
		return cell_err(err, 500, EIO, "listen on %s failed", path);
	if (chmod(path, 0660) < 0 || chown(path, 0, gid) < 0)
		return cell_err_sys(err, 500, errno, "set permissions on %s", path);
	free(srv_unix_path);
	srv_unix_path = strdup(path);
	return 0;
}

/*
 * HTTPS: lws 4.1 closes a destroyed vhost's listener only seconds later, so
 * address changes could not take effect at once.  Instead one TLS vhost
 * without a listener lives for the daemon's life and our own listening
 * socket (watched on the loop) hands each accepted connection to it.
 */
struct srv_listener {
	uv_poll_t poll;
	int fd;
};
static struct srv_listener *srv_https_listener;

static void srv_listener_closed(uv_handle_t *h) { free(h->data); }

static void srv_listener_stop(void)
{
	struct srv_listener *l = srv_https_listener;

	if (!l)
		return;
	srv_https_listener = NULL;
	uv_poll_stop(&l->poll);
	close(l->fd);    /* frees the port now, so a new bind can take it */
	l->poll.data = l;
	uv_close((uv_handle_t *)&l->poll, srv_listener_closed);
}

static void srv_listener_accept(uv_poll_t *p, int status, int events)
{
	struct srv_listener *l = p->data;

	for (int i = 0; i < 64; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		/* On failure lws has closed fd itself (closing it again could
		 * hit the next accepted socket). */
		lws_adopt_socket_vhost(srv_https_vh, fd);
	}
}

static int srv_listen_tcp(const char *host, int port, cell_error *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	char portstr[8];
	int fd, one = 1, zero = 0, rc;

	snprintf(portstr, sizeof(portstr), "%d", port);
	hints.ai_family = host[0] ? AF_UNSPEC : AF_INET6;
	rc = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &ai);
	if (rc)
		return cell_err(err, 400, EINVAL, "resolve %s: %s", host, gai_strerror(rc));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6 && !host[0])   /* wildcard: v4 and v6 */
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
			rc = errno;
			close(fd);
			fd = -1;
			errno = rc;
		}
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return cell_err_sys(err, 400, errno, "listen on [%s]:%d", host, port);
	return fd;
}

static int srv_https_vhost(const char *cert, const char *key, cell_error *err)
{
	struct lws_context_creation_info vi;

	if (srv_https_vh)
		return 0;
	srv_vhost_base(&vi, "https");
	vi.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	vi.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	vi.ssl_cert_filepath = cert;
	vi.ssl_private_key_filepath = key;
	vi.alpn = "http/1.1";
	/* TLS 1.2 minimum, AEAD suites with forward secrecy only. */
	vi.ssl_options_set = SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 |
			     SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION;
	vi.ssl_cipher_list = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
			     "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
			     "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
	vi.tls1_3_plus_cipher_list = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:"
				     "TLS_AES_128_GCM_SHA256";
	srv_https_vh = lws_create_vhost(srv_ctx, &vi);
	if (!srv_https_vh)
		return cell_err(err, 500, EIO, "set up TLS with %s", cert);
	return 0;
}

int server_https_set(const char *addr, const char *cert, const char *key, cell_error *err)
{
	struct srv_listener *l;
	char host[128];
	int port, fd;

	if (addr && *addr && config_split_address(addr, host, sizeof(host), &port, err) < 0)
		return -EINVAL;
	srv_listener_stop();
	srv_https_addr[0] = '\0';
	if (!addr || !*addr)
		return 0;
	if (srv_https_vhost(cert, key, err) < 0)
		return -EIO;
	fd = srv_listen_tcp(host, port, err);
	if (fd < 0)
		return fd;
	l = calloc(1, sizeof(*l));
	if (!l) {
		close(fd);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	l->fd = fd;
	uv_poll_init(celld->loop, &l->poll, fd);
	l->poll.data = l;
	uv_poll_start(&l->poll, UV_READABLE, srv_listener_accept);
	srv_https_listener = l;
	snprintf(srv_https_addr, sizeof(srv_https_addr), "%s", addr);
	log_info("listening on https://%s", addr);
	return 0;
}

/* With a foreign loop, lws frees the context only on a second destroy once
 * the loop has stopped running. */
void server_finalize(void)
{
	if (srv_ctx_dying)
		lws_context_destroy(srv_ctx_dying);
	srv_ctx_dying = NULL;
}

const char *server_https_address(void) { return srv_https_addr; }

int server_https_probe(const char *addr, cell_error *err)
{
	char host[128];
	int port, fd, cur = -1;

	if (!addr || !*addr || !strcmp(addr, srv_https_addr))
		return 0;
	if (config_split_address(addr, host, sizeof(host), &port, err) < 0)
		return -EINVAL;
	fd = srv_listen_tcp(host, port, err);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	/* Our own listener may hold the port: it is closed before rebinding. */
	if (srv_https_addr[0]) {
		char h[128];
		cell_error e;
		if (config_split_address(srv_https_addr, h, sizeof(h), &cur, &e) == 0 && cur == port)
			return 0;
	}
	return fd;
}

void server_shutdown(void)
{
	if (!srv_ctx)
		return;
	srv_listener_stop();
	lws_context_destroy(srv_ctx);
	srv_ctx_dying = srv_ctx;
	srv_ctx = NULL;
	srv_unix_vh = srv_https_vh = NULL;
	if (srv_unix_path) {
		unlink(srv_unix_path);
		free(srv_unix_path);
		srv_unix_path = NULL;
	}
}
