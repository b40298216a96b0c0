#include "client/conf.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/strbuf.h"
#include "common/tls.h"
#include "common/util.h"
#include "common/yaml_util.h"

struct cli_conf {
	char *dir;
	json_t *root;      /* config.yml as parsed; unknown keys survive a save */
	json_t *remotes;   /* borrowed from root */
};

static const struct cli_remote local_remote = {
	.name = CLI_LOCAL_REMOTE,
	.addr = "unix://",
	.protocol = "lxd",
	.auth_type = "",
	.is_static = true,
};

const char *cli_local_socket(void)
{
	static char buf[PATH_MAX];
	const char *s = getenv("CELL_SOCKET"), *d = getenv("CELL_DIR");

	if (s && *s)
		return s;
	if (d && *d) {
		snprintf(buf, sizeof(buf), "%s/unix.socket", d);
		return buf;
	}
	return "/var/lib/celld/unix.socket";
}

static char *default_dir(void)
{
	const char *env = getenv("CELL_CONF"), *home = getenv("HOME");

	if (env && *env)
		return strdup(env);
	if (!home || !*home) {
		struct passwd *pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : "/";
	}
	return xasprintf("%s/.config/cell", home);
}

static int conf_parse(struct cli_conf *c, const char *path, cell_error *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	json_t *root = NULL;
	int rc;

	if (access(path, F_OK) < 0)
		return 0;   /* first run: nothing saved yet */
	if ((rc = util_read_file(path, &buf, &len, err)) < 0)
		return rc;
	if ((rc = yaml_parse_json(buf, len, NULL, &root, err)) < 0)
		return cell_err_wrap(err, rc, "%s", path);
	if (json_is_null(root)) {
		json_decref(root);
		return 0;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		return cell_err(err, 400, EINVAL, "%s: not a mapping", path);
	}
	json_decref(c->root);
	c->root = root;
	return 0;
}

int cli_conf_load(const char *dir, struct cli_conf **out, cell_error *err)
{
	struct cli_conf *c = calloc(1, sizeof(*c));
	_cleanup_free_ char *path = NULL;
	int rc;

	*out = NULL;
	if (!c)
		return cell_err(err, 500, ENOMEM, "out of memory");
	c->dir = dir ? strdup(dir) : default_dir();
	c->root = json_object();
	path = c->dir ? xasprintf("%s/config.yml", c->dir) : NULL;
	if (!path || !c->root) {
		cli_conf_free(c);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	rc = conf_parse(c, path, err);
	if (rc == 0) {
		c->remotes = json_object_get(c->root, "remotes");
		if (!json_is_object(c->remotes)) {
			c->remotes = json_object();
			json_object_set_new(c->root, "remotes", c->remotes);
		}
	}
	if (rc < 0) {
		cli_conf_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void cli_conf_free(struct cli_conf *c)
{
	if (!c)
		return;
	free(c->dir);
	json_decref(c->root);
	free(c);
}

const char *cli_conf_dir(const struct cli_conf *c) { return c->dir; }

char *cli_conf_path(const struct cli_conf *c, const char *rel)
{
	return xasprintf("%s/%s", c->dir, rel);
}

const char *cli_conf_default_remote(const struct cli_conf *c)
{
	const char *d = json_string_value(json_object_get(c->root, "default-remote"));
	return d && *d ? d : CLI_LOCAL_REMOTE;
}

int cli_conf_set_default_remote(struct cli_conf *c, const char *name, cell_error *err)
{
	if (json_object_set_new(c->root, "default-remote", json_string(name)) < 0)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return 0;
}

static const char *str_field(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s && *s ? s : NULL;
}

bool cli_conf_get_remote(const struct cli_conf *c, const char *name, struct cli_remote *out)
{
	json_t *r, *pub;

	if (!strcmp(name, CLI_LOCAL_REMOTE)) {
		*out = local_remote;
		return true;
	}
	r = json_object_get(c->remotes, name);
	if (!json_is_object(r))
		return false;
	pub = json_object_get(r, "public");
	*out = (struct cli_remote){
		.name = json_object_iter_key(json_object_iter_at(c->remotes, name)),
		.addr = str_field(r, "addr") ? str_field(r, "addr") : "",
		.protocol = str_field(r, "protocol") ? str_field(r, "protocol") : "lxd",
		.auth_type = str_field(r, "auth_type") ? str_field(r, "auth_type") : "tls",
		.project = str_field(r, "project"),
		.public = json_is_true(pub) || (json_is_string(pub) && !strcmp(json_string_value(pub), "true")),
	};
	return true;
}

int cli_conf_set_remote(struct cli_conf *c, const struct cli_remote *r, cell_error *err)
{
	json_t *o;

	if (!strcmp(r->name, CLI_LOCAL_REMOTE))
		return cell_err(err, 400, EPERM, "Remote %s is static and cannot be modified", r->name);
	o = json_pack("{s:s, s:s, s:s, s:b}", "addr", r->addr, "auth_type", r->auth_type ? r->auth_type : "tls",
		      "protocol", r->protocol ? r->protocol : "lxd", "public", r->public);
	if (o && r->project)
		json_object_set_new(o, "project", json_string(r->project));
	if (!o || json_object_set_new(c->remotes, r->name, o) < 0)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return 0;
}

int cli_conf_remove_remote(struct cli_conf *c, const char *name, cell_error *err)
{
	if (!strcmp(name, CLI_LOCAL_REMOTE))
		return cell_err(err, 400, EPERM, "Remote %s is static and cannot be modified", name);
	if (json_object_del(c->remotes, name) < 0)
		return cell_err(err, 404, ENOENT, "Remote %s doesn't exist", name);
	return 0;
}

int cli_conf_rename_remote(struct cli_conf *c, const char *from, const char *to, cell_error *err)
{
	json_t *r = json_object_get(c->remotes, from);

	if (!strcmp(from, CLI_LOCAL_REMOTE))
		return cell_err(err, 400, EPERM, "Remote %s is static and cannot be modified", from);
	if (!r)
		return cell_err(err, 404, ENOENT, "Remote %s doesn't exist", from);
	if (!strcmp(to, CLI_LOCAL_REMOTE) || json_object_get(c->remotes, to))
		return cell_err(err, 409, EEXIST, "Remote %s already exists", to);
	json_object_set(c->remotes, to, r);
	json_object_del(c->remotes, from);
	if (!strcmp(cli_conf_default_remote(c), from))
		return cli_conf_set_default_remote(c, to, err);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char **cli_conf_remote_names(const struct cli_conf *c)
{
	size_t n = 0;
	const char **names = calloc(json_object_size(c->remotes) + 2, sizeof(*names));
	const char *k;
	json_t *v;

	if (!names)
		return NULL;
	names[n++] = CLI_LOCAL_REMOTE;
	json_object_foreach(c->remotes, k, v)
		if (strcmp(k, CLI_LOCAL_REMOTE))
			names[n++] = k;
	qsort(names, n, sizeof(*names), cmp_str);
	return names;
}

int cli_conf_parse_remote(const struct cli_conf *c, const char *raw, char **remote, char **rest,
			  cell_error *err)
{
	const char *colon = strchr(raw, ':');
	struct cli_remote r;
	_cleanup_free_ char *prefix = NULL;

	*remote = *rest = NULL;
	if (colon) {
		prefix = strndup(raw, (size_t)(colon - raw));
		if (!prefix)
			return cell_err(err, 500, ENOMEM, "out of memory");
		if (!cli_conf_get_remote(c, prefix, &r)) {
			/* "c1/snap:1" is a snapshot name, not a remote. */
			if (!strchr(prefix, '/'))
				return cell_err(err, 404, ENOENT, "The remote \"%s\" doesn't exist", prefix);
			colon = NULL;
		}
	}
	*remote = colon ? steal_ptr(prefix) : strdup(cli_conf_default_remote(c));
	*rest = strdup(colon ? colon + 1 : raw);
	if (!*remote || !*rest) {
		free(*remote);
		free(*rest);
		*remote = *rest = NULL;
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	return 0;
}

/* config.yml in LXD's layout: default-remote, remotes (sorted), aliases. */
static json_t *conf_document(const struct cli_conf *c)
{
	json_t *doc = json_object(), *remotes = json_object(), *aliases = json_object_get(c->root, "aliases");
	_cleanup_free_ const char **names = cli_conf_remote_names(c);
	const char *k;
	json_t *v;

	if (!doc || !remotes || !names) {
		json_decref(doc);
		json_decref(remotes);
		return NULL;
	}
	json_object_set_new(doc, "default-remote", json_string(cli_conf_default_remote(c)));
	for (const char **n = names; *n; n++)
		if (json_object_get(c->remotes, *n))
			json_object_set(remotes, *n, json_object_get(c->remotes, *n));
	json_object_set_new(doc, "remotes", remotes);
	json_object_set_new(doc, "aliases", json_is_object(aliases) ? json_incref(aliases) : json_object());
	json_object_foreach(c->root, k, v)
		if (!json_object_get(doc, k))
			json_object_set(doc, k, v);
	return doc;
}

int cli_conf_save(struct cli_conf *c, cell_error *err)
{
	_cleanup_json_ json_t *doc = conf_document(c);
	_cleanup_sb_ strbuf sb = {0};
	_cleanup_free_ char *path = cli_conf_path(c, "config.yml");
	int rc;

	if (!doc || !path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = util_mkdir_p(c->dir, 0700, err)) < 0)
		return rc;
	if ((rc = yaml_emit_json(doc, 0, &sb, err)) < 0)
		return rc;
	return util_write_file_atomic(path, sb.buf, sb.len, 0644, err);
}

int cli_conf_client_cert(struct cli_conf *c, char **crt, char **key, bool *generated, cell_error *err)
{
	_cleanup_free_ char *cp = cli_conf_path(c, "client.crt");
	_cleanup_free_ char *kp = cli_conf_path(c, "client.key");
	_cleanup_free_ char *cn = NULL;
	char host[256] = "localhost";
	const char *user = getenv("USER");
	int rc;

	if (!cp || !kp)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (access(cp, F_OK) < 0 || access(kp, F_OK) < 0) {
		if ((rc = util_mkdir_p(c->dir, 0700, err)) < 0)
			return rc;
		gethostname(host, sizeof(host) - 1);
		if (!user || !*user) {
			struct passwd *pw = getpwuid(getuid());
			user = pw ? pw->pw_name : "root";
		}
		cn = xasprintf("%s@%s", user, host);   /* LXD's client certificate name */
		fprintf(stderr, "Generating a client certificate. This may take a minute...\n");
	}
	rc = tls_ensure_cert_ex(cp, kp, cn ? cn : "cell", false, generated, err);
	if (rc < 0)
		return cell_err_wrap(err, rc, "client certificate");
	*crt = steal_ptr(cp);
	*key = steal_ptr(kp);
	return 0;
}

char *cli_conf_server_cert_path(const struct cli_conf *c, const char *remote)
{
	return xasprintf("%s/servercerts/%s.crt", c->dir, remote);
}
