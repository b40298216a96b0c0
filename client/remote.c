/* cell remote add/list/remove/rename/switch/get-default/set-url, as `lxc remote`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "client/api.h"
#include "client/conf.h"
#include "client/output.h"
#include "common/cleanup.h"
#include "common/tls.h"
#include "common/util.h"

static int load_conf(struct cli_ctx *ctx, struct cli_conf **conf, cell_error *err)
{
	return cli_ctx_conf(ctx, conf, err);
}

/* ------------------------------------------------------------------ add */

/* "host", "host:port", "[::1]", "https://host" -> "https://host:8443"; paths stay unix://. */
static int normalize_addr(const char *raw, char **out, struct httpc_url *u, cell_error *err)
{
	_cleanup_free_ char *tmp = NULL;
	int rc;

	if (raw[0] == '/')
		raw = tmp = xasprintf("unix://%s", raw);
	if (!raw)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = httpc_parse_url(raw, 8443, u, err)) < 0)
		return rc;
	if (!strcmp(u->scheme, "unix"))
		*out = xasprintf("unix://%s", u->path);
	else if (strcmp(u->scheme, "https"))
		return cell_err(err, 400, EINVAL, "Remote URLs must use https:// (got %s)", raw);
	else if (strchr(u->host, ':'))
		*out = xasprintf("https://[%s]:%d", u->host, u->port);
	else
		*out = xasprintf("https://%s:%d", u->host, u->port);
	return *out ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

/* First contact: learn the server certificate and have it accepted. */
static int accept_server_cert(httpc *probe, const char *fp, bool accept, cell_error *err)
{
	_cleanup_free_ char *answer = NULL;

	if (accept)
		return 0;
	printf("Certificate fingerprint: %s\n", fp);
	answer = cli_prompt("ok (y/n/[fingerprint])? ", false);
	if (answer && (!strcasecmp(answer, "y") || !strcasecmp(answer, "yes") || !strcasecmp(answer, fp)))
		return 0;
	return cell_err(err, 403, EPERM, "Server certificate NACKed by user");
}

struct add_ctx {
	struct cli_ctx *ctx;
	struct cli_conf *conf;
	const char *name;
	struct httpc_url u;
	char *crt, *key;
	char fp[65];
	char *server_pem;
};

static int get_auth(httpc *h, const char **auth, json_t **srv, cell_error *err)
{
	_cleanup_httpc_resp_ struct httpc_resp r = {0};
	json_t *env;
	int rc = httpc_request(h, &(struct httpc_req){ .method = "GET", .path = "/1.0", HTTPC_REQ_DEFAULTS }, &r,
			       err);

	if (rc < 0)
		return rc;
	env = json_loadb(r.body.buf ? r.body.buf : "", r.body.len, 0, NULL);
	if (!env || r.status != 200) {
		const char *msg = json_string_value(json_object_get(env, "error"));
		rc = cell_err(err, r.status, EIO, "%s", msg && *msg ? msg : "unexpected answer to GET /1.0");
		json_decref(env);
		return rc;
	}
	*srv = env;
	*auth = json_string_value(json_object_get(json_object_get(env, "metadata"), "auth"));
	if (!*auth)
		*auth = "untrusted";
	return 0;
}

static int post_certificate(httpc *h, struct add_ctx *a, const char *password, cell_error *err)
{
	_cleanup_httpc_resp_ struct httpc_resp r = {0};
	_cleanup_x509_ X509 *x = NULL;
	_cleanup_free_ char *b64 = NULL;
	_cleanup_json_ json_t *req = NULL;
	_cleanup_free_ char *body = NULL;
	const char *hdrs[] = { "Content-Type: application/json", NULL };
	int rc = tls_load_cert(a->crt, &x, err);

	if (rc < 0 || (rc = tls_cert_der_base64(x, &b64, err)) < 0)
		return rc;
	req = json_pack("{s:s, s:s, s:s}", "type", "client", "certificate", b64, "password", password);
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	if (!body)
		return cell_err(err, 500, ENOMEM, "out of memory");
	rc = httpc_request(h,
			   &(struct httpc_req){ .method = "POST", .path = "/1.0/certificates", .headers = hdrs,
						.body = body, .body_len = strlen(body), HTTPC_REQ_DEFAULTS },
			   &r, err);
	if (rc < 0)
		return rc;
	if (r.status >= 300) {
		_cleanup_json_ json_t *env = json_loadb(r.body.buf ? r.body.buf : "", r.body.len, 0, NULL);
		const char *msg = json_string_value(json_object_get(env, "error"));
		return cell_err(err, r.status, EACCES, "%s", msg && *msg ? msg : "certificate rejected");
	}
	return 0;
}

/* Probe with any certificate accepted, then reconnect pinned to what was accepted. */
static int first_contact(struct add_ctx *a, bool accept, httpc **pinned, cell_error *err)
{
	_cleanup_httpc_ httpc *probe = NULL;
	struct httpc_opts o = { .host = a->u.host, .port = a->u.port, .tls = true, .cert_path = a->crt,
				.key_path = a->key, .accept_any = true, .timeout_ms = 30000 };
	int rc = httpc_new(&o, &probe, err);

	if (rc < 0 || (rc = httpc_connect(probe, err)) < 0)
		return rc;
	snprintf(a->fp, sizeof(a->fp), "%s", httpc_peer_fp(probe));
	a->server_pem = strdup(httpc_peer_pem(probe) ? httpc_peer_pem(probe) : "");
	if (!a->server_pem)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = accept_server_cert(probe, a->fp, accept, err)) < 0)
		return rc;
	o.accept_any = false;
	o.pin_fp = a->fp;
	o.timeout_ms = 0;
	o.connect_timeout_ms = 10000;
	return httpc_new(&o, pinned, err);
}

static int authenticate(struct add_ctx *a, httpc *h, const char *password, cell_error *err)
{
	_cleanup_json_ json_t *srv = NULL;
	_cleanup_free_ char *prompted = NULL;
	const char *auth;
	int rc = get_auth(h, &auth, &srv, err);

	if (rc < 0 || !strcmp(auth, "trusted"))
		return rc;
	if (!password) {
		_cleanup_free_ char *q = xasprintf("Admin password (or token) for %s: ", a->name);
		prompted = q ? cli_prompt(q, true) : NULL;
		if (!prompted)
			return cell_err(err, 403, EACCES, "No password given for %s", a->name);
		password = prompted;
	}
	if ((rc = post_certificate(h, a, password, err)) < 0)
		return rc;
	json_decref(srv);
	srv = NULL;
	if ((rc = get_auth(h, &auth, &srv, err)) < 0)
		return rc;
	if (strcmp(auth, "trusted"))
		return cell_err(err, 403, EACCES, "Server doesn't trust us after authentication");
	if (!a->ctx->quiet)
		printf("Client certificate now trusted by server: %s\n", a->name);
	return 0;
}

static int save_server_cert(struct add_ctx *a, cell_error *err)
{
	_cleanup_free_ char *dir = cli_conf_path(a->conf, "servercerts");
	_cleanup_free_ char *path = cli_conf_server_cert_path(a->conf, a->name);
	int rc;

	if (!dir || !path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = util_mkdir_p(dir, 0700, err)) < 0)
		return rc;
	return util_write_file_atomic(path, a->server_pem, strlen(a->server_pem), 0644, err);
}

static int add_https(struct add_ctx *a, struct cli_args *args, cell_error *err)
{
	_cleanup_httpc_ httpc *h = NULL;
	bool generated;
	int rc;

	if ((rc = cli_conf_client_cert(a->conf, &a->crt, &a->key, &generated, err)) < 0)
		return rc;
	if ((rc = first_contact(a, cli_flag(args, "accept-certificate"), &h, err)) < 0)
		return rc;
	if ((rc = authenticate(a, h, cli_opt(args, "password"), err)) < 0)
		return rc;
	return save_server_cert(a, err);
}

static int run_add(struct cli_ctx *ctx, struct cli_args *args, cell_error *err)
{
	struct add_ctx a = { .ctx = ctx };
	_cleanup_free_ char *addr = NULL;
	const char *raw = args->argv[args->argc - 1], *protocol = cli_opt(args, "protocol");
	struct cli_remote r;
	int rc = load_conf(ctx, &a.conf, err);

	if (rc < 0 || (rc = normalize_addr(raw, &addr, &a.u, err)) < 0)
		return rc;
	/* A lone address names the remote after its host, as lxc does. */
	a.name = args->argc == 2 ? args->argv[0] : a.u.host;
	if (cli_conf_get_remote(a.conf, a.name, &r))
		return cell_err(err, 409, EEXIST, "Remote %s exists as <%s>", a.name, r.addr);
	if (strchr(a.name, ':') || strchr(a.name, '/') || !*a.name)
		return cell_err(err, 400, EINVAL, "Remote names may not contain colons or slashes");
	if (strcmp(protocol, "lxd") && strcmp(protocol, "simplestreams"))
		return cell_err(err, 400, EINVAL, "Invalid protocol: %s", protocol);
	/* simplestreams servers are public image servers: nothing to negotiate. */
	if (!strcmp(protocol, "lxd") && !strcmp(a.u.scheme, "https"))
		rc = add_https(&a, args, err);
	if (rc == 0) {
		r = (struct cli_remote){ .name = a.name, .addr = addr, .protocol = protocol,
					 .auth_type = strcmp(a.u.scheme, "https") ? "" : cli_opt(args, "auth-type"),
					 .project = cli_opt(args, "project"),
					 .public = cli_flag(args, "public") || !strcmp(protocol, "simplestreams") };
		rc = cli_conf_set_remote(a.conf, &r, err);
	}
	if (rc == 0)
		rc = cli_conf_save(a.conf, err);
	free(a.crt);
	free(a.key);
	free(a.server_pem);
	return rc;
}

/* ----------------------------------------------------------------- list */

static json_t *remote_json(const struct cli_remote *r, bool yaml)
{
	/* As LXD prints its config.Remote: yaml tags, Go field names in json. */
	if (yaml) {
		json_t *o = json_pack("{s:s}", "addr", r->addr);
		if (o && r->auth_type && *r->auth_type)
			json_object_set_new(o, "auth_type", json_string(r->auth_type));
		if (o && r->project)
			json_object_set_new(o, "project", json_string(r->project));
		if (o && !r->is_static && r->protocol)
			json_object_set_new(o, "protocol", json_string(r->protocol));
		if (o)
			json_object_set_new(o, "public", json_boolean(r->public));
		return o;
	}
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:b}", "Addr", r->addr, "AuthType",
			 r->auth_type ? r->auth_type : "", "Domain", "", "Project", r->project ? r->project : "",
			 "Protocol", r->is_static ? "" : r->protocol, "Public", r->public, "Global", 0, "Static",
			 r->is_static);
}

static int run_list(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	static const char *const header[] = { "NAME", "URL", "PROTOCOL", "AUTH TYPE", "PUBLIC", "STATIC", "GLOBAL" };
	_cleanup_table_ struct cli_table *t = cli_table_new(7, header);
	_cleanup_json_ json_t *raw = json_object();
	_cleanup_free_ const char **names = NULL;
	struct cli_conf *conf;
	enum cli_format fmt;
	int rc;

	if (!t || !raw)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_format_parse(cli_opt(a, "format"), &fmt, err)) < 0 || (rc = load_conf(ctx, &conf, err)) < 0)
		return rc;
	if (!(names = cli_conf_remote_names(conf)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	for (const char **n = names; *n; n++) {
		struct cli_remote r;
		_cleanup_free_ char *label = NULL;
		const char *row[7];

		cli_conf_get_remote(conf, *n, &r);
		label = !strcmp(*n, cli_conf_default_remote(conf)) ? xasprintf("%s (current)", *n) : strdup(*n);
		row[0] = label;
		row[1] = r.addr;
		row[2] = r.protocol;
		row[3] = str_has_prefix(r.addr, "unix:") ? "file access" : r.auth_type;
		row[4] = r.public ? "YES" : "NO";
		row[5] = r.is_static ? "YES" : "NO";
		row[6] = "NO";
		if (!label || cli_table_add(t, row) < 0)
			return cell_err(err, 500, ENOMEM, "out of memory");
		json_object_set_new(raw, *n, remote_json(&r, fmt == CLI_FMT_YAML));
	}
	cli_table_sort(t);
	return cli_render(stdout, fmt, t, raw, err);
}

/* ---------------------------------------------------------- the others */

static int editable(struct cli_conf *conf, const char *name, cell_error *err)
{
	struct cli_remote r;

	if (!cli_conf_get_remote(conf, name, &r))
		return cell_err(err, 404, ENOENT, "Remote %s doesn't exist", name);
	if (r.is_static)
		return cell_err(err, 400, EPERM, "Remote %s is static and cannot be modified", name);
	return 0;
}

static int run_remove(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	const char *name = a->argv[0];
	_cleanup_free_ char *crt = NULL;
	struct cli_conf *conf;
	int rc = load_conf(ctx, &conf, err);

	if (rc < 0 || (rc = editable(conf, name, err)) < 0)
		return rc;
	if (!strcmp(cli_conf_default_remote(conf), name))
		return cell_err(err, 400, EBUSY, "Can't remove the default remote");
	if ((rc = cli_conf_remove_remote(conf, name, err)) < 0 || (rc = cli_conf_save(conf, err)) < 0)
		return rc;
	crt = cli_conf_server_cert_path(conf, name);
	if (crt)
		unlink(crt);
	return 0;
}

static int run_rename(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_free_ char *from = NULL;
	_cleanup_free_ char *to = NULL;
	struct cli_conf *conf;
	int rc = load_conf(ctx, &conf, err);

	if (rc < 0 || (rc = editable(conf, a->argv[0], err)) < 0)
		return rc;
	if ((rc = cli_conf_rename_remote(conf, a->argv[0], a->argv[1], err)) < 0)
		return rc;
	from = cli_conf_server_cert_path(conf, a->argv[0]);
	to = cli_conf_server_cert_path(conf, a->argv[1]);
	if (from && to && access(from, F_OK) == 0 && rename(from, to) < 0)
		return cell_err_sys(err, 500, errno, "rename %s", from);
	return cli_conf_save(conf, err);
}

static int run_switch(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	struct cli_conf *conf;
	struct cli_remote r;
	int rc = load_conf(ctx, &conf, err);

	if (rc < 0)
		return rc;
	if (!cli_conf_get_remote(conf, a->argv[0], &r))
		return cell_err(err, 404, ENOENT, "Remote %s doesn't exist", a->argv[0]);
	if ((rc = cli_conf_set_default_remote(conf, a->argv[0], err)) < 0)
		return rc;
	return cli_conf_save(conf, err);
}

static int run_get_default(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	struct cli_conf *conf;
	int rc = load_conf(ctx, &conf, err);

	if (rc < 0)
		return rc;
	printf("%s\n", cli_conf_default_remote(conf));
	return 0;
}

static int run_set_url(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_free_ char *addr = NULL;
	struct cli_conf *conf;
	struct cli_remote r;
	struct httpc_url u;
	int rc = load_conf(ctx, &conf, err);

	if (rc < 0 || (rc = editable(conf, a->argv[0], err)) < 0)
		return rc;
	cli_conf_get_remote(conf, a->argv[0], &r);
	if (!strcmp(r.protocol, "lxd")) {
		if ((rc = normalize_addr(a->argv[1], &addr, &u, err)) < 0)
			return rc;
	} else if (!(addr = strdup(a->argv[1]))) {
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	r.addr = addr;
	/* r's strings point into the config: copy what set_remote rebuilds from. */
	_cleanup_free_ char *name = strdup(r.name), *proto = strdup(r.protocol);
	_cleanup_free_ char *auth = r.auth_type ? strdup(r.auth_type) : NULL;
	_cleanup_free_ char *proj = r.project ? strdup(r.project) : NULL;
	if (!name || !proto)
		return cell_err(err, 500, ENOMEM, "out of memory");
	r.name = name;
	r.protocol = proto;
	r.auth_type = auth;
	r.project = proj;
	if ((rc = cli_conf_set_remote(conf, &r, err)) < 0)
		return rc;
	return cli_conf_save(conf, err);
}

/* ------------------------------------------------------------ commands */

static const struct cli_opt add_opts[] = {
	{ "accept-certificate", 0, CLI_OPT_BOOL, "Accept certificate", NULL },
	{ "auth-type", 0, CLI_OPT_STRING, "Server authentication type (tls)", "tls" },
	{ "password", 0, CLI_OPT_STRING, "Remote admin password", NULL },
	{ "project", 0, CLI_OPT_STRING, "Project to use for the remote", NULL },
	{ "protocol", 0, CLI_OPT_STRING, "Server protocol (lxd or simplestreams)", "lxd" },
	{ "public", 0, CLI_OPT_BOOL, "Public image server", NULL },
	{ 0 },
};

static const struct cli_opt list_opts[] = {
	{ "format", 'f', CLI_OPT_STRING, "Format (csv|json|table|yaml|compact)", "table" },
	{ 0 },
};

static const struct cli_command remote_add = {
	.name = "add",
	.usage = "[<remote>] <IP|FQDN|URL>",
	.short_help = "Add new remote servers",
	.long_help = "Add new remote servers\n\nURL for remote resources must be HTTPS (https://).",
	.opts = add_opts,
	.run = run_add,
	.min_args = 1,
	.max_args = 2,
};

static const struct cli_command remote_list = {
	.name = "list",
	.aliases = "ls",
	.short_help = "List the available remotes",
	.opts = list_opts,
	.run = run_list,
	.max_args = 0,
};

static const struct cli_command remote_remove = {
	.name = "remove",
	.aliases = "rm",
	.usage = "<remote>",
	.short_help = "Remove remotes",
	.run = run_remove,
	.min_args = 1,
	.max_args = 1,
};

static const struct cli_command remote_rename = {
	.name = "rename",
	.aliases = "mv",
	.usage = "<remote> <new-name>",
	.short_help = "Rename remotes",
	.run = run_rename,
	.min_args = 2,
	.max_args = 2,
};

static const struct cli_command remote_switch = {
	.name = "switch",
	.aliases = "set-default",
	.usage = "<remote>",
	.short_help = "Switch the default remote",
	.run = run_switch,
	.min_args = 1,
	.max_args = 1,
};

static const struct cli_command remote_get_default = {
	.name = "get-default",
	.short_help = "Show the default remote",
	.run = run_get_default,
	.max_args = 0,
};

static const struct cli_command remote_set_url = {
	.name = "set-url",
	.usage = "<remote> <URL>",
	.short_help = "Set the URL for the remote",
	.run = run_set_url,
	.min_args = 2,
	.max_args = 2,
};

static const struct cli_command *const remote_subs[] = {
	&remote_add, &remote_get_default, &remote_list, &remote_rename, &remote_remove,
	&remote_set_url, &remote_switch, NULL,
};

const struct cli_command cli_cmd_remote = {
	.name = "remote",
	.short_help = "Manage the list of remote servers",
	.subs = remote_subs,
};
