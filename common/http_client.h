/*
 * A small blocking HTTP/1.1 client for talking to celld (or LXD): over a unix
 * socket, or TCP with TLS (client certificate; the server is verified by a
 * pinned SHA-256 fingerprint, by the system CAs, or accepted as-is on first
 * contact so the caller can show and pin its fingerprint).
 *
 * One httpc is one keep-alive connection reused across requests, re-opened
 * transparently when the server closed it between requests.  Not thread-safe.
 * Writes on TLS can raise SIGPIPE: programs using this ignore SIGPIPE.
 */
#ifndef CELL_COMMON_HTTP_CLIENT_H
#define CELL_COMMON_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <openssl/ssl.h>

#include "common/error.h"
#include "common/strbuf.h"

struct httpc_opts {
	const char *unix_path;   /* connect to this unix socket, or else TCP: */
	const char *host;        /* name or IP literal (IPv6 without brackets) */
	int port;
	bool tls;                /* TCP only */
	const char *cert_path;   /* client certificate + key (PEM), optional */
	const char *key_path;
	const char *pin_fp;      /* require this server fingerprint (64 hex), or */
	bool accept_any;         /* accept any server certificate (first contact); else system CAs */
	int timeout_ms;          /* connect and each read/write; 0 = wait forever */
	int connect_timeout_ms;  /* connect only, when timeout_ms is 0 (long waits, quick failure) */
};

/* ---- connection: a byte stream with a read buffer (shared with ws_client) ---- */
typedef struct httpc_conn httpc_conn;

int httpc_conn_open(const struct httpc_opts *o, httpc_conn **out, cell_error *err);
/* Wrap an already connected plain socket (tests, socketpair). Takes fd. */
httpc_conn *httpc_conn_from_fd(int fd);
void httpc_conn_free(httpc_conn *c);
/* Up to n bytes (buffered first); 0 on EOF, negative errno on error. */
ssize_t httpc_conn_read(httpc_conn *c, void *buf, size_t n, cell_error *err);
/* Exactly n bytes or an error (-EPIPE "unexpected end of stream" on EOF). */
int httpc_conn_read_full(httpc_conn *c, void *buf, size_t n, cell_error *err);
int httpc_conn_write(httpc_conn *c, const void *buf, size_t n, cell_error *err);
int httpc_conn_fd(const httpc_conn *c);
SSL *httpc_conn_ssl(const httpc_conn *c);   /* NULL when plain */
/* Bytes already read from the kernel (our buffer or OpenSSL's): poll() on
 * the fd would not report them, so poll loops read these first. */
bool httpc_conn_pending(const httpc_conn *c);
void httpc_conn_set_timeout(httpc_conn *c, int timeout_ms);
/* Server certificate: fingerprint ("" when plain) and PEM (NULL when plain). */
const char *httpc_conn_peer_fp(const httpc_conn *c);
const char *httpc_conn_peer_pem(const httpc_conn *c);

/* ---- requests ---- */
typedef struct httpc httpc;

/* Nothing is connected until the first request (cheap start-up). */
int httpc_new(const struct httpc_opts *o, httpc **out, cell_error *err);
/* Over an existing connection (taken); no reconnect is possible. */
httpc *httpc_new_conn(httpc_conn *conn, const char *host_header);
void httpc_free(httpc *c);
/* Connect now (e.g. to learn the server certificate before any request). */
int httpc_connect(httpc *c, cell_error *err);
const char *httpc_peer_fp(const httpc *c);   /* "" until connected over TLS */
const char *httpc_peer_pem(const httpc *c);  /* NULL until connected over TLS */
/* Hand the connection to the caller (after a 101 upgrade); c reconnects next time. */
httpc_conn *httpc_take_conn(httpc *c);

/* done/total in bytes (total 0 when unknown). Non-zero return aborts with -ECANCELED. */
typedef int (*httpc_progress_fn)(void *data, uint64_t done, uint64_t total);

struct httpc_req {
	const char *method;          /* "GET" when NULL */
	const char *path;            /* "/1.0/instances?recursion=1", already escaped */
	const char *const *headers;  /* NULL-terminated "Name: value" list, optional */
	const void *body;            /* in memory, or */
	size_t body_len;
	int body_fd;                 /* >= 0: stream the body from this fd */
	int64_t body_fd_len;         /* its length, or -1 to send chunked */
	int out_fd;                  /* >= 0: stream the response body here (2xx only) */
	httpc_progress_fn progress;  /* upload (body_fd) and download (out_fd) */
	void *progress_data;
};
/* A request with no body and no streaming: `{.method="GET", .path=p, HTTPC_REQ_DEFAULTS}` */
#define HTTPC_REQ_DEFAULTS .body_fd = -1, .out_fd = -1

struct httpc_header {
	char *name;
	char *value;
};

struct httpc_resp {
	int status;
	char *reason;
	struct httpc_header *headers;
	size_t nheaders;
	strbuf body;   /* unless streamed to out_fd */
};

/* Send one request and read the whole response. Non-2xx statuses are not
 * errors here; transport and protocol failures are. */
int httpc_request(httpc *c, const struct httpc_req *req, struct httpc_resp *resp, cell_error *err);
/* Case-insensitive; NULL when absent. */
const char *httpc_resp_header(const struct httpc_resp *r, const char *name);
void httpc_resp_free(struct httpc_resp *r);
static inline void httpc_resp_freep(struct httpc_resp *r) { httpc_resp_free(r); }
#define _cleanup_httpc_resp_ __attribute__((cleanup(httpc_resp_freep)))
static inline void httpc_freep(httpc **c) { httpc_free(*c); }
#define _cleanup_httpc_ __attribute__((cleanup(httpc_freep)))

/* ---- URLs ---- */
struct httpc_url {
	char scheme[8];      /* "https", "http", "unix" */
	char host[256];      /* without IPv6 brackets; for unix: "" */
	int port;
	char path[1024];     /* unix: the socket path; else the path, "" when none */
};
/* "https://h:p/x", "h:p", "h", "[::1]:8443", "unix:///run/x.sock". Missing
 * scheme means https; missing port means default_port. */
int httpc_parse_url(const char *url, int default_port, struct httpc_url *out, cell_error *err);
/* Percent-encode a path segment or query value (caller frees). */
char *httpc_escape(const char *s);

#endif
