/*
 * "/" and "/1.0": the server's description and its config.
 *
 * GET /1.0 is what every client calls first and often (the lxc client on
 * each command), so its answer is served from a cache: the environment's
 * static parts are computed once at start, and the whole serialized trusted
 * answer is kept until the config changes (or, with a wildcard listen
 * address, for a few seconds, since interface addresses come and go).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <uv.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/config.h"
#include "daemon/lxc_info.h"
#include "daemon/daemon.h"
#include "daemon/events.h"
#include "daemon/http.h"
#include "daemon/router.h"

/* How long a cached answer listing wildcard addresses is reused. */
#define SERVER_ADDR_TTL_MS 10000

/* A ready-to-send answer. */
struct server_cached {
	bool valid;
	int status;
	char content_type[64];
	strbuf body;
	char etag[80];          /* ETag header value, "" for none */
	int64_t expires_ms;     /* 0: until invalidated */
};

static json_t *srv_env_static;            /* environment fields fixed at start */
static struct server_cached srv_trusted, srv_untrusted, srv_root;

/* ---- static environment ------------------------------------------------- */

/* What this kernel can run, host architecture first, as LXD's names. */
static json_t *server_architectures(const char *machine)
{
	static const struct { const char *host; const char *extra; } personalities[] = {
		{ "x86_64", "i686" }, { "aarch64", "armv7l" }, { "ppc64", "ppc" },
		{ "s390x", NULL },    { "ppc64le", NULL },    { "riscv64", NULL },
	};
	json_t *a = json_array();

	json_array_append_new(a, json_string(machine));
	for (size_t i = 0; i < ARRAY_SIZE(personalities); i++)
		if (!strcmp(machine, personalities[i].host) && personalities[i].extra)
			json_array_append_new(a, json_string(personalities[i].extra));
	return a;
}

static bool kernel_at_least(const char *release, int major, int minor)
{
	int ma = 0, mi = 0;

	if (sscanf(release, "%d.%d", &ma, &mi) < 1)
		return false;
	return ma > major || (ma == major && mi >= minor);
}

static bool seccomp_user_notif(void)
{
#if defined(SYS_seccomp) && defined(SECCOMP_GET_ACTION_AVAIL) && defined(SECCOMP_RET_USER_NOTIF)
	uint32_t action = SECCOMP_RET_USER_NOTIF;
	return syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) == 0;
#else
	return false;
#endif
}

/* LXD's kernel_features keys; cheap checks only (version or one syscall). */
static json_t *server_kernel_features(const char *release)
{
	bool notif = seccomp_user_notif();
	json_t *f = json_object();

#define FEATURE(k, v) json_object_set_new(f, k, json_string((v) ? "true" : "false"))
	FEATURE("idmapped_mounts", kernel_at_least(release, 5, 12));
	FEATURE("netnsid_getifaddrs", kernel_at_least(release, 4, 20));
	FEATURE("seccomp_listener", notif);
	FEATURE("seccomp_listener_continue", notif && kernel_at_least(release, 5, 5));
	FEATURE("shiftfs", false);
	FEATURE("uevent_injection", kernel_at_least(release, 4, 18));
	FEATURE("unpriv_fscaps", kernel_at_least(release, 4, 14));
#undef FEATURE
	return f;
}

/* One os-release value, unquoted; "" when absent. */
static void os_release_value(const char *text, const char *key, char *out, size_t n)
{
	size_t kl = strlen(key);
	const char *line = text;

	out[0] = '\0';
	for (; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		const char *v = line + kl + 1, *end;
		size_t len;

		if (strncmp(line, key, kl) || line[kl] != '=')
			continue;
		end = strchr(v, '\n');
		len = end ? (size_t)(end - v) : strlen(v);
		if (len >= 2 && (*v == '"' || *v == '\'') && v[len - 1] == *v) {
			v++;
			len -= 2;
		}
		snprintf(out, n, "%.*s", (int)len, v);
		return;
	}
}

static void server_os_release(json_t *env)
{
	_cleanup_free_ char *text = NULL;
	char name[128], version[64];

	if (util_read_file("/etc/os-release", &text, NULL, NULL) < 0)
		util_read_file("/usr/lib/os-release", &text, NULL, NULL);
	os_release_value(text ? text : "", "NAME", name, sizeof(name));
	os_release_value(text ? text : "", "VERSION_ID", version, sizeof(version));
	json_object_set_new(env, "os_name", json_string(name));
	json_object_set_new(env, "os_version", json_string(version));
}

static json_t *server_env_build_static(void)
{
	struct utsname u;
	json_t *env;
	_cleanup_json_ json_t *lxc = lxc_info_load();
	const char *lxcv = json_string_value(json_object_get(lxc, "version"));
	json_t *feats = json_object_get(lxc, "features");

	if (uname(&u) < 0)
		memset(&u, 0, sizeof(u));
	env = json_pack("{s:o, s:s, s:s, s:o, s:s, s:o, s:s, s:s, s:s, s:b, s:s, s:i, s:s,"
			" s:s, s:s, s:[{s:s, s:s, s:b}]}",
			"architectures", server_architectures(u.machine),
			"driver", "lxc",
			"driver_version", lxcv ? lxcv : "",
			"kernel_features", server_kernel_features(u.release),
			"kernel", u.sysname,
			"lxc_features", feats ? json_incref(feats) : json_object(),
			"kernel_architecture", u.machine,
			"kernel_version", u.release,
			"server", "celld",
			"server_clustered", 0,
			"server_event_mode", "full-mesh",
			"server_pid", (int)getpid(),
			"server_version", CELL_VERSION,
			"storage", "dir",
			"storage_version", "1",
			"storage_supported_drivers", "name", "dir", "version", "1", "remote", 0);
	if (env)
		server_os_release(env);
	return env;
}

/* ---- addresses ---------------------------------------------------------- */

/* Go's net.IP.IsGlobalUnicast, which LXD uses to pick addresses to show. */
static bool addr_global_unicast(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
		return a != 0 && a != 0xffffffffu && (a >> 24) != 127 && (a >> 16) != 0xa9fe &&
		       (a >> 28) != 0xe;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		return !IN6_IS_ADDR_UNSPECIFIED(a) && !IN6_IS_ADDR_LOOPBACK(a) &&
		       !IN6_IS_ADDR_LINKLOCAL(a) && !IN6_IS_ADDR_MULTICAST(a);
	}
	return false;
}

static void addresses_add(json_t *out, int family, const char *host, int port)
{
	char buf[300];

	snprintf(buf, sizeof(buf), family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, port);
	json_array_append_new(out, json_string(buf));
}

static void addresses_of_interfaces(json_t *out, bool v4_only, int port)
{
	struct ifaddrs *ifs = NULL;

	if (getifaddrs(&ifs) < 0)
		return;
	for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
		char host[INET6_ADDRSTRLEN];
		const void *a;

		if (!i->ifa_addr || !addr_global_unicast(i->ifa_addr) ||
		    (v4_only && i->ifa_addr->sa_family != AF_INET))
			continue;
		a = i->ifa_addr->sa_family == AF_INET
			    ? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
			    : (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
		if (inet_ntop(i->ifa_addr->sa_family, a, host, sizeof(host)))
			addresses_add(out, i->ifa_addr->sa_family, host, port);
	}
	freeifaddrs(ifs);
}

/* core.https_address as the addresses clients can reach, as LXD lists them.
 * *wildcard tells whether the list came from the interfaces. */
static json_t *server_addresses(bool *wildcard)
{
	const char *cfg = config_get("core.https_address");
	json_t *out = json_array();
	char host[256];
	int port;

	*wildcard = false;
	if (!out || !cfg || !*cfg || config_split_address(cfg, host, sizeof(host), &port, NULL) < 0)
		return out;
	if (!*host || !strcmp(host, "::") || !strcmp(host, "0.0.0.0")) {
		*wildcard = true;
		addresses_of_interfaces(out, !strcmp(host, "0.0.0.0"), port);
	} else {
		addresses_add(out, strchr(host, ':') ? AF_INET6 : AF_INET, host, port);
	}
	return out;
}

/* ---- the answers -------------------------------------------------------- */

static json_t *server_untrusted_meta(void)
{
	json_t *ext = json_array();

	for (const char *const *e = cell_api_extensions; *e; e++)
		json_array_append_new(ext, json_string(*e));
	return json_pack("{s:o, s:s, s:s, s:s, s:b, s:[s]}", "api_extensions", ext,
			 "api_status", "stable", "api_version", "1.0", "auth", "untrusted",
			 "public", 0, "auth_methods", "tls");
}

static json_t *server_environment(bool *wildcard)
{
	json_t *env = json_deep_copy(srv_env_static);
	char host[256] = "";

	if (!env)
		return NULL;
	gethostname(host, sizeof(host) - 1);
	json_object_set_new(env, "addresses", server_addresses(wildcard));
	json_object_set_new(env, "certificate",
			    json_string(celld && celld->server_cert_pem ? celld->server_cert_pem : ""));
	json_object_set_new(env, "certificate_fingerprint",
			    json_string(celld ? celld->server_fp : ""));
	json_object_set_new(env, "project", json_string("default"));
	json_object_set_new(env, "server_name", json_string(host));
	return env;
}

static void cached_clear(struct server_cached *c)
{
	sb_free(&c->body);
	memset(c, 0, sizeof(*c));
}

/* Render through the shared envelope code once and keep the bytes. */
static int cached_build(struct server_cached *c, json_t *meta, json_t *etag_src, int64_t ttl_ms)
{
	http_resp scratch;

	cached_clear(c);
	if (!meta)
		return -ENOMEM;
	http_resp_init(&scratch);
	if (etag_src)
		resp_sync_etag(&scratch, meta, etag_src);
	else
		resp_sync(&scratch, meta);
	c->status = scratch.status;
	snprintf(c->content_type, sizeof(c->content_type), "%s", scratch.content_type);
	for (int i = 0; i < scratch.nheaders; i++)
		if (!strcasecmp(scratch.headers[i].name, "ETag"))
			snprintf(c->etag, sizeof(c->etag), "%s", scratch.headers[i].value);
	c->body = scratch.body;
	scratch.body = (strbuf){ 0 };
	http_resp_free(&scratch);
	c->expires_ms = ttl_ms ? util_now_ms() + ttl_ms : 0;
	c->valid = c->status == 200;
	return c->valid ? 0 : -EIO;
}

static int build_trusted(void)
{
	_cleanup_json_ json_t *config = config_to_json();
	bool wildcard = false;
	json_t *meta = server_untrusted_meta();

	if (!meta || !config) {
		json_decref(meta);
		return cached_build(&srv_trusted, NULL, NULL, 0);
	}
	json_object_set_new(meta, "auth", json_string("trusted"));
	json_object_set(meta, "config", config);
	json_object_set_new(meta, "environment", server_environment(&wildcard));
	return cached_build(&srv_trusted, meta, config, wildcard ? SERVER_ADDR_TTL_MS : 0);
}

static void cached_send(const struct server_cached *c, http_resp *resp)
{
	resp_raw(resp, c->status, c->content_type, c->body.buf, c->body.len);
	if (c->etag[0])
		http_resp_header(resp, "ETag", c->etag);
}

static void server_get(http_req *req, http_resp *resp)
{
	struct server_cached *c = req->trusted ? &srv_trusted : &srv_untrusted;

	if (c->valid && c->expires_ms && util_now_ms() >= c->expires_ms)
		c->valid = false;
	if (!c->valid) {
		int rc = req->trusted ? build_trusted()
				      : cached_build(c, server_untrusted_meta(), NULL, 0);
		if (rc < 0) {
			resp_error(resp, 500, "build server description");
			return;
		}
	}
	cached_send(c, resp);
}

static void root_get(http_req *req, http_resp *resp)
{
	if (!srv_root.valid && cached_build(&srv_root, json_pack("[s]", "/1.0"), NULL, 0) < 0) {
		resp_error(resp, 500, "out of memory");
		return;
	}
	cached_send(&srv_root, resp);
}

/* ---- PUT/PATCH /1.0 ----------------------------------------------------- */

static void server_config_done(struct config_change *c, http_resp *resp)
{
	cell_error err;

	if (config_change_commit(c, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	events_lifecycle("config-updated", "/1.0", NULL);
	resp_empty(resp);
}

/* Hashing a new trust password takes tens of milliseconds: worker. */
struct server_hash_work {
	uv_work_t work;
	http_deferred *deferred;
	struct config_change *change;
	cell_error err;
	int rc;
};

static void server_hash_work(uv_work_t *work)
{
	struct server_hash_work *w = work->data;
	w->rc = config_change_hash(w->change, &w->err);
}

static void server_hash_done(uv_work_t *work, int status)
{
	struct server_hash_work *w = work->data;
	http_resp resp;

	http_resp_init(&resp);
	if (status < 0)
		resp_error(&resp, 500, "password hashing was cancelled");
	else if (w->rc < 0)
		resp_from_err(&resp, &w->err);
	else
		server_config_done(w->change, &resp);
	http_deferred_finish(w->deferred, &resp);
	config_change_free(w->change);
	free(w);
}

static void server_config_hash_async(http_req *req, http_resp *resp, struct config_change *c)
{
	struct server_hash_work *w = calloc(1, sizeof(*w));

	if (!w) {
		config_change_free(c);
		resp_error(resp, 500, "out of memory");
		return;
	}
	w->change = c;
	w->work.data = w;
	if (uv_queue_work(celld->loop, &w->work, server_hash_work, server_hash_done) < 0) {
		config_change_free(c);
		free(w);
		resp_error(resp, 500, "cannot queue the password hashing");
		return;
	}
	w->deferred = http_defer(req, resp);
}

static void server_update(http_req *req, http_resp *resp, bool patch)
{
	_cleanup_json_ json_t *cur = config_to_json(), *body = NULL;
	struct config_change *c = NULL;
	json_t *cfg;
	cell_error err;

	if (!cur) {
		resp_error(resp, 500, "out of memory");
		return;
	}
	if (!http_check_etag(req, resp, cur))
		return;
	if (http_req_json(req, &body, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	cfg = json_object_get(body, "config");
	if (cfg && !json_is_object(cfg) && !json_is_null(cfg)) {
		resp_error(resp, 400, "config must be an object");
		return;
	}
	if (patch && (!cfg || json_is_null(cfg))) {
		resp_empty(resp);   /* nothing to merge, as LXD */
		return;
	}
	if (config_change_new(json_is_object(cfg) ? cfg : NULL, patch, &c, &err) < 0) {
		resp_from_err(resp, &err);
		return;
	}
	if (config_change_needs_hash(c) && celld && celld->loop) {
		server_config_hash_async(req, resp, c);
		return;
	}
	server_config_done(c, resp);
	config_change_free(c);
}

static void server_put(http_req *req, http_resp *resp) { server_update(req, resp, false); }
static void server_patch(http_req *req, http_resp *resp) { server_update(req, resp, true); }

/* ---- lifecycle ---------------------------------------------------------- */

void api_server_invalidate(void)
{
	srv_trusted.valid = false;
}

static void server_config_changed(const char *key, const char *value, void *data)
{
	api_server_invalidate();
}

int api_server_init(cell_error *err)
{
	json_decref(srv_env_static);
	srv_env_static = server_env_build_static();
	if (!srv_env_static)
		return cell_err(err, 500, ENOMEM, "server environment: out of memory");
	cached_clear(&srv_trusted);
	cached_clear(&srv_untrusted);
	cached_clear(&srv_root);
	if (config_on_change(NULL, server_config_changed, NULL) < 0)
		return cell_err(err, 500, ENOMEM, "server environment: out of memory");
	return 0;
}

void api_server_register(void)
{
	router_add(&(struct route){
		.pattern = "/",
		.methods = { { HTTP_GET, root_get, ROUTE_UNTRUSTED_OK, NULL } },
	});
	router_add(&(struct route){
		.pattern = "/1.0",
		.methods = {
			{ HTTP_GET, server_get, ROUTE_UNTRUSTED_OK, NULL },
			{ HTTP_PUT, server_put, 0, NULL },
			{ HTTP_PATCH, server_patch, 0, NULL },
		},
	});
}
