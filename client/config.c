/*
 * cell config get/set/unset/show/edit: server keys (GET /1.0, then PUT /1.0
 * with If-Match, as `lxc config set` does) and the same verbs on an
 * instance's config when an instance is named.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/api.h"
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
		_cleanup_free_ char *esc = httpc_escape(rest);
		t->instance = steal_ptr(rest);
		t->path = esc ? xasprintf("/1.0/instances/%s", esc) : NULL;
	}
	return t->path ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

/* The writable part, as LXD's Writable(): what PUT takes back. */
static json_t *writable(const struct target *t, json_t *full)
{
	static const char *const inst_keys[] = { "architecture", "config", "devices", "ephemeral",
						 "profiles", "stateful", "description", NULL };
	json_t *w = json_object(), *cfg = json_object_get(full, "config");

	if (!w)
		return NULL;
	if (!t->instance) {
		json_object_set_new(w, "config", json_is_object(cfg) ? json_deep_copy(cfg) : json_object());
		return w;
	}
	for (const char *const *k = inst_keys; *k; k++) {
		json_t *v = json_object_get(full, *k);
		if (v)
			json_object_set_new(w, *k, json_deep_copy(v));
	}
	if (!json_is_object(json_object_get(w, "config")))
		json_object_set_new(w, "config", json_object());
	return w;
}

static int target_put(struct target *t, json_t *body, const char *etag, cell_error *err)
{
	/* Instances answer PUT with an operation; the server answers sync. */
	return cli_query_wait(t->c, "PUT", t->path, body, etag, NULL, err);
}

/* GET, apply key=value pairs (value "" unsets), PUT with the ETag. */
static int apply_keys(struct target *t, char **keys, char **vals, int n, cell_error *err)
{
	_cleanup_json_ json_t *full = NULL;
	_cleanup_json_ json_t *w = NULL;
	_cleanup_free_ char *etag = NULL;
	json_t *cfg;
	int rc = cli_get(t->c, t->path, &full, &etag, err);

	if (rc < 0)
		return rc;
	if (!(w = writable(t, full)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	cfg = json_object_get(w, "config");
	for (int i = 0; i < n; i++) {
		if (!*vals[i])
			json_object_del(cfg, keys[i]);
		else
			json_object_set_new(cfg, keys[i], json_string(vals[i]));
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
	if ((rc = cli_get(t.c, t.path, &full, NULL, err)) < 0)
		return rc;
	return print_value(json_object_get(json_object_get(full, "config"), key));
}

/* ---------------------------------------------------------------- set */

/* Split "k=v" words (keys copied: argv stays intact); a word without '=' is LXD's error. */
static int split_pairs(char **words, int n, char **keys, char **vals, cell_error *err)
{
	for (int i = 0; i < n; i++) {
		char *eq = strchr(words[i], '=');
		if (!eq)
			return cell_err(err, 400, EINVAL, "Invalid key=value configuration: %s", words[i]);
		keys[i] = strndup(words[i], (size_t)(eq - words[i]));
		if (!keys[i])
			return cell_err(err, 500, ENOMEM, "out of memory");
		vals[i] = eq + 1;
	}
	return 0;
}

/* Server keys always contain a dot and instance names never do. */
static bool looks_like_key(const char *s)
{
	return strchr(s, '.') && !strchr(s, ':');
}

static int run_set(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_target_ struct target t = {0};
	_cleanup_strv_ char **keys = calloc((size_t)a->argc + 1, sizeof(char *));
	_cleanup_free_ char **vals = calloc((size_t)a->argc + 1, sizeof(char *));
	char **words = a->argv;
	int n = a->argc, rc;
	const char *where = NULL;

	if (!keys || !vals)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (!strchr(words[0], '=') && !(n == 2 && (looks_like_key(words[0]) || !strchr(words[1], '=')))) {
		where = words[0];   /* [<remote>:][<instance>] first */
		words++;
		n--;
	}
	if (n < 1)
		return cli_bad_args(a, err);
	if (n == 2 && !strchr(words[0], '=')) {
		if (!(keys[0] = strdup(words[0])))
			return cell_err(err, 500, ENOMEM, "out of memory");
		vals[0] = words[1];
		n = 1;
	} else if ((rc = split_pairs(words, n, keys, vals, err)) < 0) {
		return rc;
	}
	if ((rc = target_open(ctx, where, &t, err)) < 0)
		return rc;
	return apply_keys(&t, keys, vals, n, err);
}

static int run_unset(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_target_ struct target t = {0};
	char *key = a->argv[a->argc - 1], *empty = "";
	int rc = target_open(ctx, a->argc == 2 ? a->argv[0] : NULL, &t, err);

	if (rc < 0)
		return rc;
	return apply_keys(&t, &key, &empty, 1, err);
}

/* --------------------------------------------------------------- show */

static int run_show(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_target_ struct target t = {0};
	_cleanup_json_ json_t *full = NULL;
	_cleanup_json_ json_t *w = NULL;
	int rc = target_open(ctx, a->argc ? a->argv[0] : NULL, &t, err);

	if (rc < 0)
		return rc;
	if ((rc = cli_get(t.c, t.path, &full, NULL, err)) < 0)
		return rc;
	if (t.instance && cli_flag(a, "expanded")) {
		json_object_set(full, "config", json_object_get(full, "expanded_config"));
		json_object_set(full, "devices", json_object_get(full, "expanded_devices"));
	}
	if (!(w = writable(&t, full)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	/* Go prints maps sorted: sort config and devices, keep the struct order. */
	for (const char *k = "config"; k; k = !strcmp(k, "config") ? "devices" : NULL) {
		json_t *m = json_object_get(w, k);
		if (json_is_object(m) && json_object_size(m)) {
			_cleanup_free_ char *s = json_dumps(m, JSON_SORT_KEYS | JSON_COMPACT);
			json_t *sorted = s ? json_loads(s, 0, NULL) : NULL;
			if (sorted)
				json_object_set_new(w, k, sorted);
		}
	}
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
	"###   core.trust_password: secret\n\n";

static const char instance_edit_help[] =
	"### This is a YAML representation of the configuration.\n"
	"### Any line starting with a '# will be ignored.\n"
	"###\n"
	"### Note that the name is shown but cannot be changed\n\n";

static int read_stdin(strbuf *sb, cell_error *err)
{
	char buf[8192];
	size_t n;

	while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
		if (sb_append(sb, buf, n) < 0)
			return cell_err(err, 500, ENOMEM, "out of memory");
	if (ferror(stdin))
		return cell_err_sys(err, 500, EIO, "read stdin");
	return 0;
}

static int parse_edit(const struct target *t, const char *text, size_t len, json_t **out, cell_error *err)
{
	static const char *const server_keys[] = { "config", NULL };
	static const char *const inst_keys[] = { "config", "devices", NULL };
	struct yaml_parse_opts o = { .string_keys = t->instance ? inst_keys : server_keys };
	int rc = yaml_parse_json(text, len, &o, out, err);

	if (rc < 0)
		return rc;
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return cell_err(err, 400, EINVAL, "yaml: expected a mapping");
	}
	if (!json_is_object(json_object_get(*out, "config")))
		json_object_set_new(*out, "config", json_object());
	return 0;
}

/* Run $VISUAL / $EDITOR (vi) on a file, through the shell as LXD does. */
static int run_editor(const char *path, cell_error *err)
{
	const char *ed = getenv("VISUAL");
	_cleanup_free_ char *cmd = NULL;
	int st;

	if (!ed || !*ed)
		ed = getenv("EDITOR");
	if (!ed || !*ed)
		ed = "vi";
	cmd = xasprintf("%s '%s'", ed, path);
	if (!cmd)
		return cell_err(err, 500, ENOMEM, "out of memory");
	st = system(cmd);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st))
		return cell_err(err, 500, EIO, "editor \"%s\" failed", ed);
	return 0;
}

static int edit_loop(struct target *t, const char *initial, json_t **out, cell_error *err)
{
	char path[] = "/tmp/cell_editor_XXXXXX.yaml";
	_cleanup_close_ int fd = mkstemps(path, 5);
	int rc;

	if (fd < 0)
		return cell_err_sys(err, 500, errno, "create temporary file");
	rc = util_write_file_atomic(path, initial, strlen(initial), 0600, err);
	while (rc == 0) {
		_cleanup_free_ char *text = NULL;
		_cleanup_free_ char *answer = NULL;
		size_t len;

		if ((rc = run_editor(path, err)) < 0 || (rc = util_read_file(path, &text, &len, err)) < 0)
			break;
		if ((rc = parse_edit(t, text, len, out, err)) == 0)
			break;
		fprintf(stderr, "Config parsing error: %s\n", err->msg);
		answer = cli_prompt("Press enter to open the editor again or ctrl+c to abort change", false);
		if (!answer)
			break;
		rc = 0;
	}
	unlink(path);
	return rc;
}

static int run_edit(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_target_ struct target t = {0};
	_cleanup_json_ json_t *full = NULL;
	_cleanup_json_ json_t *w = NULL;
	_cleanup_json_ json_t *edited = NULL;
	_cleanup_free_ char *etag = NULL;
	_cleanup_free_ char *yaml = NULL;
	_cleanup_sb_ strbuf text = {0};
	int rc = target_open(ctx, a->argc ? a->argv[0] : NULL, &t, err);

	if (rc < 0)
		return rc;
	if (!isatty(STDIN_FILENO)) {   /* cell config edit < config.yaml */
		if ((rc = read_stdin(&text, err)) < 0 || (rc = parse_edit(&t, text.buf ? text.buf : "", text.len, &edited, err)) < 0)
			return rc;
		return target_put(&t, edited, NULL, err);
	}
	if ((rc = cli_get(t.c, t.path, &full, &etag, err)) < 0)
		return rc;
	if (!(w = writable(&t, full)) || !(yaml = yaml_dump_json(w, 0)) ||
	    sb_puts(&text, t.instance ? instance_edit_help : server_edit_help) < 0 || sb_puts(&text, yaml) < 0)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = edit_loop(&t, text.buf, &edited, err)) < 0)
		return rc;
	return target_put(&t, edited, etag, err);
}

/* ------------------------------------------------------------ commands */

static const struct cli_opt show_opts[] = {
	{ "expanded", 'e', CLI_OPT_BOOL, "Show the expanded configuration", NULL },
	{ 0 },
};

static const struct cli_command config_get = {
	.name = "get",
	.usage = "[<remote>:][<instance>] <key>",
	.short_help = "Get values for instance or server configuration keys",
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
		    "    Will have cell listen on IPv4 and IPv6 port 8443.",
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
	.usage = "[<remote>:][<instance>]",
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

static const struct cli_command *const config_subs[] = {
	&config_edit, &config_get, &config_set, &config_show, &config_unset, NULL,
};

const struct cli_command cli_cmd_config = {
	.name = "config",
	.short_help = "Manage instance and server configuration options",
	.subs = config_subs,
};
