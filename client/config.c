/*
 * cell config get/set/unset/show/edit: server keys (GET /1.0, then PUT /1.0
 * with If-Match, as `lxc config set` does) and the same verbs on an
 * instance's config (or a snapshot's, for show and edit) when one is named.
 * `cell config device ...` lives in config_device.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/api.h"
#include "client/inst.h"
#include "client/output.h"
#include "common/cleanup.h"
#include "common/util.h"
#include "common/yaml_util.h"

/* What a config command acts on: a server, or an instance on it. */
struct target {
	struct cli_client *c;
	char *instance;   /* NULL: the server */
	char *path;       /* "/1.0" or "/1.0/instances/<name>" */
};

static void target_free(struct target *t)
{
	cli_client_free(t->c);
	free(t->instance);
	free(t->path);
}
#define _cleanup_target_ __attribute__((cleanup(target_free)))

static int target_open(struct cli_ctx *ctx, const char *raw, struct target *t, cell_error *err)
{
	_cleanup_free_ char *rest = NULL;
	int rc = cli_connect_arg(ctx, raw, &t->c, &rest, err);

	if (rc < 0)
		return rc;
	if (!*rest) {
		t->path = strdup("/1.0");
	} else {
		t->path = cli_inst_path(rest, NULL);
		t->instance = steal_ptr(rest);
	}
	return t->path ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

/* The writable part, as LXD's Writable(): what PUT takes back. */
static json_t *writable(const struct target *t, json_t *full)
{
	json_t *w, *cfg = json_object_get(full, "config");

	if (t->instance)
		return cli_inst_writable(full);
	if (!(w = json_object()))
		return NULL;
	json_object_set_new(w, "config", json_is_object(cfg) ? json_deep_copy(cfg) : json_object());
	return w;
}

static int target_put(struct target *t, json_t *body, const char *etag, cell_error *err)
{
	/* Instances answer PUT with an operation; the server answers sync. */
	return cli_query_wait(t->c, "PUT", t->path, body, etag, NULL, err);
}

/* GET, apply the keys (a value "" unsets), PUT with the ETag.  unset:
 * LXD refuses to unset an instance key that is not there. */
static int apply_keys(struct target *t, json_t *keys, bool unset, cell_error *err)
{
	_cleanup_json_ json_t *full = NULL;
	_cleanup_json_ json_t *w = NULL;
	_cleanup_free_ char *etag = NULL;
	const char *k;
	json_t *cfg, *v;
	int rc;

	if (t->instance && cli_is_snapshot(t->instance))
		return cell_err(err, 400, EINVAL, "Snapshots are read-only: %s", t->instance);
	if ((rc = cli_get(t->c, t->path, &full, &etag, err)) < 0)
		return rc;
	if (!(w = writable(t, full)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	cfg = json_object_get(w, "config");
	json_object_foreach(keys, k, v) {
		if (unset && t->instance && !json_object_get(cfg, k))
			return cell_err(err, 400, EINVAL, "Can't unset key '%s', it's not currently set", k);
		if (!*json_string_value(v))
			json_object_del(cfg, k);
		else
			json_object_set(cfg, k, v);
	}
	return target_put(t, w, etag, err);
}

/* ---------------------------------------------------------------- get */

static int print_value(json_t *v)
{
	_cleanup_free_ char *s = NULL;

	if (!v || json_is_null(v)) {
		putchar('\n');
		return 0;
	}
	if (json_is_string(v)) {
		printf("%s\n", json_string_value(v));
		return 0;
	}
	s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	printf("%s\n", s ? s : "");
	return 0;
}

static int run_get(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_target_ struct target t = {0};
	_cleanup_json_ json_t *full = NULL;
	const char *key = a->argv[a->argc - 1];
	int rc = target_open(ctx, a->argc == 2 ? a->argv[0] : NULL, &t, err);

	if (rc < 0)
		return rc;
	if (!t.instance && cli_flag(a, "expanded"))
		return cell_err(err, 400, EINVAL, "--expanded cannot be used with a server");
	if ((rc = cli_get(t.c, t.path, &full, NULL, err)) < 0)
		return rc;
	return print_value(json_object_get(json_object_get(full, cli_flag(a, "expanded") ? "expanded_config" : "config"), key));
}

/* ---------------------------------------------------------------- set */

/* Server keys always contain a dot and instance names never do. */
static bool looks_like_key(const char *s)
{
	return strchr(s, '.') && !strchr(s, ':');
}

static int run_set(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_target_ struct target t = {0};
	_cleanup_json_ json_t *keys = json_object();
	char **words = a->argv;
	int n = a->argc, rc;
	const char *where = NULL;

	if (!keys)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (!strchr(words[0], '=') && !(n == 2 && (looks_like_key(words[0]) || !strchr(words[1], '=')))) {
		where = words[0];   /* [<remote>:][<instance>] first */
		words++;
		n--;
	}
	if (n < 1)
		return cli_bad_args(a, err);
	if ((rc = cli_parse_keyvals(words, n, keys, err)) < 0)
		return rc;
	if ((rc = target_open(ctx, where, &t, err)) < 0)
		return rc;
	return apply_keys(&t, keys, false, err);
}

static int run_unset(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_target_ struct target t = {0};
	_cleanup_json_ json_t *keys = json_object();
	int rc = target_open(ctx, a->argc == 2 ? a->argv[0] : NULL, &t, err);

	if (rc < 0)
		return rc;
	if (!keys)
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_object_set_new(keys, a->argv[a->argc - 1], json_string(""));
	return apply_keys(&t, keys, true, err);
}

/* --------------------------------------------------------------- show */

/* A snapshot is shown whole (LXD's InstanceSnapshot), in Go field order. */
static json_t *snapshot_view(json_t *snap, bool expanded)
{
	static const char *const keys[] = { "expires_at", "architecture", "config", "created_at", "devices",
					    "ephemeral", "expanded_config", "expanded_devices", "last_used_at",
					    "name", "profiles", "stateful", "size", NULL };
	json_t *v = cli_json_pick(snap, keys);

	/* omitempty in LXD's struct */
	for (const char *const *k = (const char *const[]){ "expanded_config", "expanded_devices", NULL }; v && *k; k++)
		if (!json_object_size(json_object_get(v, *k)))
			json_object_del(v, *k);
	if (v && expanded) {
		json_object_set(v, "config", json_object_get(v, "expanded_config"));
		json_object_set(v, "devices", json_object_get(v, "expanded_devices"));
	}
	return v;
}

static int run_show(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_target_ struct target t = {0};
	_cleanup_json_ json_t *full = NULL;
	_cleanup_json_ json_t *w = NULL;
	bool expanded = cli_flag(a, "expanded");
	int rc = target_open(ctx, a->argc ? a->argv[0] : NULL, &t, err);

	if (rc < 0)
		return rc;
	if (!t.instance && expanded)
		return cell_err(err, 400, EINVAL, "--expanded cannot be used with a server");
	if ((rc = cli_get(t.c, t.path, &full, NULL, err)) < 0)
		return rc;
	if (t.instance && cli_is_snapshot(t.instance)) {
		w = snapshot_view(full, expanded);
	} else {
		if (t.instance && expanded) {
			json_object_set(full, "config", json_object_get(full, "expanded_config"));
			json_object_set(full, "devices", json_object_get(full, "expanded_devices"));
		}
		w = writable(&t, full);
	}
	if (!w)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (!t.instance)   /* Go prints the server's config map sorted */
		json_object_set_new(w, "config", cli_json_sorted(json_object_get(w, "config")));
	return cli_print_yaml(stdout, w, 0, err);
}

/* --------------------------------------------------------------- edit */

static const char server_edit_help[] =
	"### This is a YAML representation of the server configuration.\n"
	"### Any line starting with a '# will be ignored.\n"
	"###\n"
	"### A sample configuration looks like:\n"
	"### config:\n"
	"###   core.https_address: 127.0.0.1:8443\n"
	"###   core.trust_password: secret";

static const char instance_edit_help[] =
	"### This is a YAML representation of the configuration.\n"
	"### Any line starting with a '# will be ignored.\n"
	"###\n"
	"### A sample configuration looks like:\n"
	"### name: instance1\n"
	"### profiles:\n"
	"### - default\n"
	"### config:\n"
	"###   volatile.eth0.hwaddr: 00:16:3e:e9:f8:7f\n"
	"### devices:\n"
	"###   homedir:\n"
	"###     path: /extra\n"
	"###     source: /home/user\n"
	"###     type: disk\n"
	"### ephemeral: false\n"
	"###\n"
	"### Note that the name is shown but cannot be changed";

struct edit_arg {
	struct target *t;
	const char *etag;
};

/* Parse the edited YAML and PUT it: the server takes {config}, an instance
 * its writable fields, a snapshot only expires_at. */
static int apply_edit(const char *text, size_t len, void *arg, cell_error *err)
{
	static const char *const server_keys[] = { "config", NULL };
	static const char *const inst_keys[] = { "config", "devices", NULL };
	struct edit_arg *e = arg;
	_cleanup_json_ json_t *in = NULL;
	_cleanup_json_ json_t *body = NULL;
	int rc = cli_yaml_object(text, len, e->t->instance ? inst_keys : server_keys, &in, err);

	if (rc < 0)
		return rc;
	if (e->t->instance && cli_is_snapshot(e->t->instance)) {
		json_t *exp = json_object_get(in, "expires_at");
		body = exp ? json_pack("{s:O}", "expires_at", exp) : json_pack("{s:s}", "expires_at", "0001-01-01T00:00:00Z");
	} else {
		body = json_incref(in);
		if (!json_is_object(json_object_get(body, "config")))
			json_object_set_new(body, "config", json_object());
	}
	if (!body)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return target_put(e->t, body, e->etag, err);
}

static int run_edit(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_target_ struct target t = {0};
	_cleanup_json_ json_t *full = NULL;
	_cleanup_json_ json_t *shown = NULL;
	_cleanup_free_ char *etag = NULL;
	struct edit_arg e = { &t, NULL };
	bool snap;
	int rc = target_open(ctx, a->argc ? a->argv[0] : NULL, &t, err);

	if (rc < 0)
		return rc;
	if (!isatty(STDIN_FILENO))   /* cell config edit < config.yaml */
		return cli_edit_stdin(apply_edit, &e, err);
	if ((rc = cli_get(t.c, t.path, &full, &etag, err)) < 0)
		return rc;
	snap = t.instance && cli_is_snapshot(t.instance);
	if (!(shown = snap ? snapshot_view(full, false) : writable(&t, full)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (snap) {   /* as LXD: the snapshot without its expanded maps */
		json_object_del(shown, "expanded_config");
		json_object_del(shown, "expanded_devices");
	}
	e.etag = etag;
	return cli_edit_object(shown, t.instance ? instance_edit_help : server_edit_help, apply_edit, &e, err);
}

/* ------------------------------------------------------------ commands */

static const struct cli_opt show_opts[] = {
	{ "expanded", 'e', CLI_OPT_BOOL, "Show the expanded configuration", NULL },
	{ 0 },
};

static const struct cli_opt get_opts[] = {
	{ "expanded", 'e', CLI_OPT_BOOL, "Access the expanded configuration", NULL },
	{ 0 },
};

static const struct cli_command config_get = {
	.name = "get",
	.usage = "[<remote>:][<instance>] <key>",
	.short_help = "Get values for instance or server configuration keys",
	.opts = get_opts,
	.run = run_get,
	.min_args = 1,
	.max_args = 2,
};

static const struct cli_command config_set = {
	.name = "set",
	.usage = "[<remote>:][<instance>] <key>=<value>...",
	.short_help = "Set instance or server configuration keys",
	.long_help = "Set instance or server configuration keys\n\n"
		     "For backward compatibility, a single configuration key may still be set with:\n"
		     "    cell config set [<remote>:][<instance>] <key> <value>",
	.examples = "cell config set [<remote>:]<instance> limits.cpu=2\n"
		    "    Will set a CPU limit of \"2\" for the instance.\n\n"
		    "cell config set core.https_address=[::]:8443\n"
		    "    Will have cell listen on IPv4 and IPv6 port 8443.\n\n"
		    "cell config set core.trust_password=blah\n"
		    "    Will set the server's trust password to blah.",
	.run = run_set,
	.min_args = 1,
	.max_args = -1,
};

static const struct cli_command config_unset = {
	.name = "unset",
	.usage = "[<remote>:][<instance>] <key>",
	.short_help = "Unset instance or server configuration keys",
	.run = run_unset,
	.min_args = 1,
	.max_args = 2,
};

static const struct cli_command config_show = {
	.name = "show",
	.usage = "[<remote>:][<instance>[/<snapshot>]]",
	.short_help = "Show instance or server configurations",
	.opts = show_opts,
	.run = run_show,
	.max_args = 1,
};

static const struct cli_command config_edit = {
	.name = "edit",
	.usage = "[<remote>:][<instance>]",
	.short_help = "Edit instance or server configurations as YAML",
	.examples = "cell config edit <instance> < instance.yaml\n"
		    "    Update the instance configuration from config.yaml.",
	.run = run_edit,
	.max_args = 1,
};

extern const struct cli_command cli_cmd_config_device;

static const struct cli_command *const config_subs[] = {
	&cli_cmd_config_device, &config_edit, &config_get, &config_set, &config_show, &config_unset, NULL,
};

const struct cli_command cli_cmd_config = {
	.name = "config",
	.short_help = "Manage instance and server configuration options",
	.subs = config_subs,
};
