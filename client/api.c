#include "client/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/conf.h"
#include "common/cleanup.h"
#include "common/strbuf.h"
#include "common/tls.h"
#include "common/util.h"

/* ------------------------------------------------------------ connect */

static int setup_tls(struct cli_client *c, struct cli_conf *conf, const struct httpc_url *u, cell_error *err)
{
	_cleanup_free_ char *crt_path = cli_conf_server_cert_path(conf, c->remote);
	_cleanup_x509_ X509 *srv = NULL;
	char fp[65];
	bool generated;
	int rc;

	if (!crt_path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_conf_client_cert(conf, &c->crt, &c->key, &generated, err)) < 0)
		return rc;
	c->host = strdup(u->host);
	if (!c->host)
		return cell_err(err, 500, ENOMEM, "out of memory");
	/* Fail fast on an unreachable host, but let operation waits take their time. */
	c->opts = (struct httpc_opts){ .host = c->host, .port = u->port, .tls = true, .cert_path = c->crt,
				       .key_path = c->key, .connect_timeout_ms = 10000 };
	/* A saved server certificate is pinned; without one the system CAs decide. */
	if (access(crt_path, F_OK) == 0) {
		if ((rc = tls_load_cert(crt_path, &srv, err)) < 0)
			return rc;
		tls_fingerprint_x509(srv, fp);
		c->pin = strdup(fp);
		if (!c->pin)
			return cell_err(err, 500, ENOMEM, "out of memory");
		c->opts.pin_fp = c->pin;
	}
	return 0;
}

static int setup_addr(struct cli_client *c, struct cli_conf *conf, const struct cli_remote *r, cell_error *err)
{
	struct httpc_url u;
	int rc = httpc_parse_url(r->addr, 8443, &u, err);

	if (rc < 0)
		return cell_err_wrap(err, rc, "remote %s", r->name);
	if (!strcmp(u.scheme, "unix")) {
		c->unix_path = strdup(u.path[0] ? u.path : cli_local_socket());
		if (!c->unix_path)
			return cell_err(err, 500, ENOMEM, "out of memory");
		c->opts = (struct httpc_opts){ .unix_path = c->unix_path };
		return 0;
	}
	if (strcmp(u.scheme, "https"))
		return cell_err(err, 400, EINVAL, "remote %s: unsupported address %s", r->name, r->addr);
	return setup_tls(c, conf, &u, err);
}

int cli_connect(struct cli_ctx *ctx, const char *remote, struct cli_client **out, cell_error *err)
{
	struct cli_conf *conf;
	struct cli_remote r;
	struct cli_client *c;
	int rc;

	*out = NULL;
	if ((rc = cli_ctx_conf(ctx, &conf, err)) < 0)
		return rc;
	if (ctx->force_local || !remote || !*remote)
		remote = ctx->force_local ? CLI_LOCAL_REMOTE : cli_conf_default_remote(conf);
	if (!cli_conf_get_remote(conf, remote, &r))
		return cell_err(err, 404, ENOENT, "The remote \"%s\" doesn't exist", remote);
	if (strcmp(r.protocol, "lxd"))
		return cell_err(err, 400, EINVAL, "Remote \"%s\" speaks %s, not the LXD API", remote, r.protocol);
	c = calloc(1, sizeof(*c));
	if (!c || !(c->remote = strdup(remote))) {
		free(c);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	c->debug = ctx->debug;
	c->quiet = ctx->quiet;
	if (ctx->project || r.project)
		c->project = strdup(ctx->project ? ctx->project : r.project);
	rc = setup_addr(c, conf, &r, err);
	if (rc == 0)
		rc = httpc_new(&c->opts, &c->http, err);
	if (rc < 0) {
		cli_client_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int cli_connect_arg(struct cli_ctx *ctx, const char *raw, struct cli_client **out, char **rest,
		    cell_error *err)
{
	_cleanup_free_ char *remote = NULL;
	struct cli_conf *conf;
	int rc;

	*out = NULL;
	*rest = NULL;
	if ((rc = cli_ctx_conf(ctx, &conf, err)) < 0)
		return rc;
	if ((rc = cli_conf_parse_remote(conf, raw ? raw : "", &remote, rest, err)) < 0)
		return rc;
	if ((rc = cli_connect(ctx, remote, out, err)) < 0) {
		free(*rest);
		*rest = NULL;
	}
	return rc;
}

void cli_client_free(struct cli_client *c)
{
	if (!c)
		return;
	httpc_free(c->http);
	free(c->remote);
	free(c->project);
	free(c->unix_path);
	free(c->host);
	free(c->crt);
	free(c->key);
	free(c->pin);
	free(c);
}

/* ------------------------------------------------------------ queries */

char *cli_path(struct cli_client *c, const char *path)
{
	_cleanup_free_ char *p = NULL;

	if (!c->project || strstr(path, "project="))
		return strdup(path);
	p = httpc_escape(c->project);
	return p ? xasprintf("%s%cproject=%s", path, strchr(path, '?') ? '&' : '?', p) : NULL;
}

int cli_raw(struct cli_client *c, const char *method, const char *path, const char *const *headers,
	    const void *data, size_t len, struct httpc_resp *out, cell_error *err)
{
	_cleanup_free_ char *full = cli_path(c, path);
	int rc;

	if (!full)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (c->debug)
		fprintf(stderr, "DEBUG: %s %s\n", method, full);
	rc = httpc_request(c->http,
			   &(struct httpc_req){ .method = method, .path = full, .headers = headers, .body = data,
						.body_len = len, HTTPC_REQ_DEFAULTS },
			   out, err);
	if (rc == 0 && c->debug)
		fprintf(stderr, "DEBUG: %d %s\n%s\n", out->status, out->reason ? out->reason : "",
			out->body.buf ? out->body.buf : "");
	return rc;
}

void cli_resp_free(struct cli_resp *r)
{
	free(r->type);
	free(r->operation);
	free(r->etag);
	json_decref(r->metadata);
	json_decref(r->envelope);
	memset(r, 0, sizeof(*r));
}

/* The daemon's own words when it sent an error envelope, else the HTTP status. */
static int envelope_error(const struct httpc_resp *h, json_t *env, cell_error *err)
{
	const char *msg = json_string_value(json_object_get(env, "error"));
	json_int_t code = json_integer_value(json_object_get(env, "error_code"));
	int status = code >= 400 && code < 600 ? (int)code : h->status >= 400 ? h->status : 500;

	if (msg && *msg)
		return cell_err(err, status, EIO, "%s", msg);
	return cell_err(err, status, EIO, "%d %s", h->status, h->reason ? h->reason : "");
}

int cli_decode(const struct httpc_resp *h, struct cli_resp *out, cell_error *err)
{
	memset(out, 0, sizeof(*out));

	json_t *env = h->body.len ? json_loadb(h->body.buf, h->body.len, 0, NULL) : NULL;
	const char *type, *op, *etag;

	if (!json_is_object(env)) {
		json_decref(env);
		if (h->status >= 400 || h->status < 200)
			return cell_err(err, h->status, EIO, "%d %s", h->status, h->reason ? h->reason : "");
		return cell_err(err, 502, EPROTO, "Failed to parse the server's response (HTTP %d)", h->status);
	}
	out->envelope = env;
	out->status = h->status;
	type = json_string_value(json_object_get(env, "type"));
	if ((type && !strcmp(type, "error")) || h->status >= 400)
		return envelope_error(h, env, err);
	op = json_string_value(json_object_get(env, "operation"));
	etag = httpc_resp_header(h, "ETag");
	out->type = strdup(type ? type : "sync");
	out->operation = op && *op ? strdup(op) : NULL;
	out->etag = etag ? strdup(etag) : NULL;
	out->metadata = json_object_get(env, "metadata");
	out->metadata = out->metadata ? json_incref(out->metadata) : json_null();
	if (!out->type)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return 0;
}

int cli_query(struct cli_client *c, const char *method, const char *path, json_t *body, const char *etag,
	      struct cli_resp *out, cell_error *err)
{
	_cleanup_httpc_resp_ struct httpc_resp h = {0};
	_cleanup_free_ char *data = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	_cleanup_free_ char *ifmatch = etag && *etag ? xasprintf("If-Match: %s", etag) : NULL;
	const char *headers[3] = { NULL };
	size_t n = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((body && !data) || (etag && *etag && !ifmatch))
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (data)
		headers[n++] = "Content-Type: application/json";
	if (ifmatch)
		headers[n++] = ifmatch;
	if (c->debug && data)
		fprintf(stderr, "DEBUG: body %s\n", data);
	rc = cli_raw(c, method, path, headers, data, data ? strlen(data) : 0, &h, err);
	if (rc == 0)
		rc = cli_decode(&h, out, err);
	if (rc < 0)
		cli_resp_free(out);
	return rc;
}

int cli_get(struct cli_client *c, const char *path, json_t **metadata, char **etag, cell_error *err)
{
	_cleanup_cli_resp_ struct cli_resp r = {0};
	int rc = cli_query(c, "GET", path, NULL, NULL, &r, err);

	if (rc < 0)
		return rc;
	*metadata = steal_ptr(r.metadata);
	if (etag)
		*etag = steal_ptr(r.etag);
	return 0;
}

/* ---------------------------------------------------------- progress */

void cli_progress_init(struct cli_progress *p, bool quiet)
{
	/* As LXD: progress only makes sense on a terminal. */
	p->enabled = !quiet && isatty(STDOUT_FILENO);
	p->last_len = 0;
}

void cli_progress_update(struct cli_progress *p, const char *text)
{
	size_t len = strlen(text);

	if (!p->enabled)
		return;
	printf("\r%s", text);
	for (size_t i = len; i < p->last_len; i++)
		putchar(' ');
	p->last_len = len;
	fflush(stdout);
}

void cli_progress_done(struct cli_progress *p)
{
	if (!p->enabled || !p->last_len)
		return;
	putchar('\r');
	for (size_t i = 0; i < p->last_len; i++)
		putchar(' ');
	putchar('\r');
	fflush(stdout);
	p->last_len = 0;
}

/* ---------------------------------------------------------- operations */

const char *cli_op_id(const char *operation)
{
	const char *s = strrchr(operation, '/');
	return s ? s + 1 : operation;
}

/* "<key>_progress" metadata, as LXD's progress renderer shows it. */
static const char *progress_text(json_t *op)
{
	json_t *md = json_object_get(op, "metadata"), *v;
	const char *k;

	json_object_foreach(md, k, v)
		if (str_has_suffix(k, "_progress") && json_is_string(v))
			return json_string_value(v);
	return NULL;
}

static int op_outcome(json_t *op, cell_error *err)
{
	json_int_t code = json_integer_value(json_object_get(op, "status_code"));
	const char *msg = json_string_value(json_object_get(op, "err"));
	const char *status = json_string_value(json_object_get(op, "status"));

	if (code == 200)
		return 0;
	if (msg && *msg)
		return cell_err(err, 400, EIO, "%s", msg);
	return cell_err(err, 400, EIO, "Operation %s", status ? status : "failed");
}

int cli_wait(struct cli_client *c, const char *operation, bool progress, json_t **op_out, cell_error *err)
{
	const char *id = cli_op_id(operation);
	_cleanup_free_ char *bare = strndup(id, strcspn(id, "?"));   /* cli_path adds the project back */
	_cleanup_free_ char *esc = bare ? httpc_escape(bare) : NULL;
	struct cli_progress p;
	json_t *op = NULL;
	int rc;

	if (op_out)
		*op_out = NULL;
	if (!esc)
		return cell_err(err, 500, ENOMEM, "out of memory");
	cli_progress_init(&p, c->quiet || !progress);
	for (;;) {
		_cleanup_free_ char *path = xasprintf("/1.0/operations/%s/wait%s", esc, p.enabled ? "?timeout=1" : "");
		const char *text;

		if (!path)
			return cell_err(err, 500, ENOMEM, "out of memory");
		json_decref(op);
		op = NULL;
		if ((rc = cli_get(c, path, &op, NULL, err)) < 0)
			break;
		/* 1xx: still going (the wait timed out); 2xx/4xx: finished. */
		if (json_integer_value(json_object_get(op, "status_code")) >= 200)
			break;
		if ((text = progress_text(op)))
			cli_progress_update(&p, text);
	}
	cli_progress_done(&p);
	if (rc == 0)
		rc = op_outcome(op, err);
	if (op_out && rc == 0)
		*op_out = op;
	else
		json_decref(op);
	return rc;
}

int cli_query_wait(struct cli_client *c, const char *method, const char *path, json_t *body,
		   const char *etag, json_t **op, cell_error *err)
{
	_cleanup_cli_resp_ struct cli_resp r = {0};
	int rc = cli_query(c, method, path, body, etag, &r, err);

	if (op)
		*op = NULL;
	if (rc < 0)
		return rc;
	if (!r.operation || strcmp(r.type, "async")) {
		if (op)
			*op = steal_ptr(r.metadata);
		return 0;
	}
	return cli_wait(c, r.operation, true, op, err);
}

/* ---------------------------------------------------------- websockets */

int cli_websocket(struct cli_client *c, const char *path, wsc **out, cell_error *err)
{
	_cleanup_free_ char *full = cli_path(c, path);

	if (!full)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (c->debug)
		fprintf(stderr, "DEBUG: websocket %s\n", full);
	return wsc_connect(&c->opts, full, out, err);
}

int cli_events(struct cli_client *c, const char *types, wsc **out, cell_error *err)
{
	_cleanup_sb_ strbuf path = {0};
	int rc = sb_puts(&path, "/1.0/events");

	/* Commas stay literal, as LXD's client sends the list. */
	for (const char *t = types; rc == 0 && t && *t;) {
		size_t n = strcspn(t, ",");
		_cleanup_free_ char *one = strndup(t, n);
		_cleanup_free_ char *esc = one ? httpc_escape(one) : NULL;
		rc = esc ? sb_printf(&path, "%s%s", t == types ? "?type=" : ",", esc) : -ENOMEM;
		t += n + (t[n] == ',');
	}
	if (rc < 0)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return cli_websocket(c, path.buf, out, err);
}
