#include "client/inst.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/cli.h"
#include "client/conf.h"
#include "client/output.h"
#include "common/cleanup.h"
#include "common/util.h"
#include "common/yaml_util.h"

/* ------------------------------------------------------------- naming */

int cli_obj_open(struct cli_ctx *ctx, const char *raw, const char *missing, struct cli_obj *o, cell_error *err)
{
	struct cli_conf *conf;
	int rc;

	memset(o, 0, sizeof(*o));
	if ((rc = cli_ctx_conf(ctx, &conf, err)) < 0)
		return rc;
	if ((rc = cli_conf_parse_remote(conf, raw ? raw : "", &o->remote, &o->name, err)) < 0)
		return rc;
	if (missing && !*o->name)
		return cell_err(err, 400, EINVAL, "%s", missing);
	return cli_connect(ctx, o->remote, &o->c, err);
}

void cli_obj_free(struct cli_obj *o)
{
	cli_client_free(o->c);
	free(o->remote);
	free(o->name);
	memset(o, 0, sizeof(*o));
}

bool cli_is_snapshot(const char *name)
{
	return strchr(name, '/') != NULL;
}

char *cli_api_path(const char *collection, const char *name, const char *suffix)
{
	_cleanup_free_ char *esc = httpc_escape(name);

	return esc ? xasprintf("/1.0/%s/%s%s", collection, esc, suffix ? suffix : "") : NULL;
}

char *cli_inst_path(const char *name, const char *suffix)
{
	const char *slash = strchr(name, '/');
	_cleanup_free_ char *parent = slash ? strndup(name, (size_t)(slash - name)) : strdup(name);
	_cleanup_free_ char *pesc = parent ? httpc_escape(parent) : NULL;
	_cleanup_free_ char *sesc = slash ? httpc_escape(slash + 1) : NULL;

	if (!pesc || (slash && !sesc))
		return NULL;
	if (slash)
		return xasprintf("/1.0/instances/%s/snapshots/%s%s", pesc, sesc, suffix ? suffix : "");
	return xasprintf("/1.0/instances/%s%s", pesc, suffix ? suffix : "");
}

/* --------------------------------------------------------- key=value */

/* "-" as a value means stdin, unless stdin is a terminal (then it is a literal "-"). */
static int value_of(const char *v, json_t **out, cell_error *err)
{
	_cleanup_sb_ strbuf sb = {0};
	int rc;

	if (strcmp(v, "-") || isatty(STDIN_FILENO)) {
		*out = json_string(v);
	} else {
		if ((rc = cli_read_stdin(&sb, err)) < 0)
			return rc;
		*out = json_stringn(sb.buf ? sb.buf : "", sb.len);
	}
	return *out ? 0 : cell_err(err, 400, EINVAL, "Invalid value: not UTF-8");
}

int cli_parse_keyvals(char **words, int n, json_t *obj, cell_error *err)
{
	json_t *v;
	int rc;

	if (n == 2 && !strchr(words[0], '=')) {
		if ((rc = value_of(words[1], &v, err)) < 0)
			return rc;
		json_object_set_new(obj, words[0], v);
		return 0;
	}
	for (int i = 0; i < n; i++) {
		const char *eq = strchr(words[i], '=');
		_cleanup_free_ char *key = eq ? strndup(words[i], (size_t)(eq - words[i])) : NULL;

		if (!eq)
			return cell_err(err, 400, EINVAL, "Invalid key=value configuration: %s", words[i]);
		if (!key)
			return cell_err(err, 500, ENOMEM, "out of memory");
		if ((rc = value_of(eq + 1, &v, err)) < 0)
			return rc;
		json_object_set_new(obj, key, v);
	}
	return 0;
}

/* The parser joins repeated flags with ','; a piece without '=' belongs to the value before it. */
int cli_parse_config_flag(const char *joined, json_t *obj, cell_error *err)
{
	_cleanup_free_ char *key = NULL;
	_cleanup_sb_ strbuf val = {0};

	for (const char *p = joined; p && *p;) {
		size_t n = strcspn(p, ",");
		const char *eq = memchr(p, '=', n);

		if (eq) {
			if (key)
				json_object_set_new(obj, key, json_string(val.buf ? val.buf : ""));
			free(key);
			key = strndup(p, (size_t)(eq - p));
			sb_reset(&val);
			if (!key || sb_append(&val, eq + 1, n - (size_t)(eq - p) - 1) < 0)
				return cell_err(err, 500, ENOMEM, "out of memory");
		} else if (!key) {
			return cell_err(err, 400, EINVAL, "Bad key=value pair: %.*s", (int)n, p);
		} else if (sb_puts(&val, ",") < 0 || sb_append(&val, p, n) < 0) {
			return cell_err(err, 500, ENOMEM, "out of memory");
		}
		p += n + (p[n] == ',');
	}
	if (key)
		json_object_set_new(obj, key, json_string(val.buf ? val.buf : ""));
	return 0;
}

/* -d <device>,<key>=<value>: pieces without '=' start the next device (the
 * parser joins repeated flags with ','). */
int cli_parse_device_flag(const char *joined, json_t *out, cell_error *err)
{
	json_t *dev = NULL;

	for (const char *p = joined; *p;) {
		size_t n = strcspn(p, ",");
		const char *eq = memchr(p, '=', n), *next = p + n + (p[n] == ',');
		_cleanup_free_ char *k = eq ? strndup(p, (size_t)(eq - p)) : strndup(p, n);

		if (!k)
			return cell_err(err, 500, ENOMEM, "out of memory");
		if (!eq && *next && memchr(next, '=', strcspn(next, ","))) {
			if (!(dev = json_object_get(out, k)))
				json_object_set_new(out, k, dev = json_object());
		} else if (!dev || !eq) {
			return cell_err(err, 400, EINVAL, "Bad device override syntax, expecting <device>,<key>=<value>: %s", joined);
		} else {
			json_object_set_new(dev, k, json_stringn(eq + 1, n - (size_t)(eq - p) - 1));
		}
		p = next;
	}
	return 0;
}

/* ---------------------------------------------------------- instances */

json_t *cli_json_sorted(json_t *v)
{
	json_t *out;

	if (json_is_array(v)) {
		size_t i;
		json_t *e;
		out = json_array();
		json_array_foreach(v, i, e)
			json_array_append_new(out, cli_json_sorted(e));
		return out;
	}
	if (!json_is_object(v))
		return json_deep_copy(v);
	_cleanup_free_ char *s = json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT);
	/* jansson keeps insertion order, so a sorted dump read back is sorted. */
	return s ? json_loads(s, 0, NULL) : NULL;
}

json_t *cli_json_pick(json_t *v, const char *const *keys)
{
	json_t *out = json_object();

	for (const char *const *k = keys; out && *k; k++) {
		json_t *f = json_object_get(v, *k);
		if (f)
			json_object_set_new(out, *k, cli_json_sorted(f));
	}
	return out;
}

json_t *cli_inst_writable(json_t *inst)
{
	static const char *const keys[] = { "architecture", "config", "devices", "ephemeral", "profiles",
					    "stateful", "description", NULL };
	json_t *w = cli_json_pick(inst, keys);

	if (w && !json_is_object(json_object_get(w, "config")))
		json_object_set_new(w, "config", json_object());
	if (w && !json_is_object(json_object_get(w, "devices")))
		json_object_set_new(w, "devices", json_object());
	return w;
}

int cli_inst_put(struct cli_client *c, const char *name, json_t *writable, const char *etag, cell_error *err)
{
	_cleanup_free_ char *path = cli_inst_path(name, NULL);

	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return cli_query_wait(c, "PUT", path, writable, etag, NULL, err);
}

/* -------------------------------------------------------------- lists */

int cli_render_list(FILE *f, enum cli_format fmt, const struct cli_table *t, json_t *raw, cell_error *err)
{
	/* output.c would fwrite() a NULL buffer for zero CSV rows (UB under UBSan). */
	if (fmt == CLI_FMT_CSV && t->nrows == 0)
		return 0;
	return cli_render(f, fmt, t, raw, err);
}

/* -------------------------------------------------------------- units */

static void size_string(int64_t n, int base, const char *const *units, char out[32])
{
	double v = (double)n;

	if (n < base) {
		snprintf(out, 32, "%lldB", (long long)n);
		return;
	}
	for (int i = 0; units[i]; i++) {
		v /= base;
		if (v < base || !units[i + 1]) {
			snprintf(out, 32, "%.2f%s", v, units[i]);
			return;
		}
	}
}

void cli_size_iec(int64_t bytes, char out[32])
{
	static const char *const u[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", NULL };
	size_string(bytes, 1024, u, out);
}

void cli_size_si(int64_t bytes, char out[32])
{
	static const char *const u[] = { "kB", "MB", "GB", "TB", "PB", "EB", NULL };
	size_string(bytes, 1000, u, out);
}

bool cli_parse_size(const char *s, int64_t *out)
{
	static const struct { const char *suffix; double mult; } units[] = {
		{ "KiB", 1024.0 }, { "MiB", 1048576.0 }, { "GiB", 1073741824.0 }, { "TiB", 1099511627776.0 },
		{ "PiB", 1125899906842624.0 }, { "EiB", 1152921504606846976.0 },
		{ "kB", 1e3 }, { "MB", 1e6 }, { "GB", 1e9 }, { "TB", 1e12 }, { "PB", 1e15 }, { "EB", 1e18 },
		{ "B", 1.0 }, { "", 1.0 },
	};
	char *end;
	long long n = strtoll(s, &end, 10);

	if (end == s || n < 0)
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (!strcmp(end, units[i].suffix)) {
			*out = (int64_t)((double)n * units[i].mult);
			return true;
		}
	}
	return false;
}

/* -------------------------------------------------------------- times */

static bool parse_time(const char *s, time_t *out)
{
	struct tm tm = {0};
	const char *p = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	long off = 0;

	if (!p)
		return false;
	if (*p == '.')
		while (*++p >= '0' && *p <= '9')
			;
	if ((*p == '+' || *p == '-') && strlen(p) >= 6) {
		off = (atol(p + 1) * 60 + atol(p + 4)) * 60;
		if (*p == '-')
			off = -off;
	}
	*out = timegm(&tm) - off;
	return true;
}

bool cli_time_is_set(const char *rfc3339)
{
	time_t t;

	/* Go's zero time (year 1) and the epoch both mean "never". */
	return parse_time(rfc3339, &t) && t > 0;
}

void cli_format_time_local(const char *rfc3339, char out[48])
{
	struct tm tm;
	time_t t;

	if (!parse_time(rfc3339, &t)) {
		snprintf(out, 48, "%s", rfc3339 ? rfc3339 : "");
		return;
	}
	localtime_r(&t, &tm);
	strftime(out, 48, "%Y/%m/%d %H:%M %Z", &tm);
}

/* ------------------------------------------------------------ editing */

int cli_read_stdin(strbuf *sb, cell_error *err)
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

int cli_yaml_object(const char *text, size_t len, const char *const *string_keys, json_t **out, cell_error *err)
{
	struct yaml_parse_opts o = { .string_keys = string_keys };
	int rc = yaml_parse_json(text, len, &o, out, err);

	if (rc < 0)
		return rc;
	if (json_is_null(*out)) {   /* an empty document changes nothing */
		json_decref(*out);
		*out = json_object();
	}
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return cell_err(err, 400, EINVAL, "yaml: expected a mapping");
	}
	return 0;
}

/* $VISUAL, $EDITOR, else vi; through the shell as LXD does, so "code -w" works. */
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

static int edit_loop(const char *initial, cli_apply_fn apply, void *arg, cell_error *err)
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
		if ((rc = apply(text, len, arg, err)) == 0)
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

int cli_edit_stdin(cli_apply_fn apply, void *arg, cell_error *err)
{
	_cleanup_sb_ strbuf text = {0};
	int rc = cli_read_stdin(&text, err);

	return rc < 0 ? rc : apply(text.buf ? text.buf : "", text.len, arg, err);
}

int cli_edit_object(json_t *shown, const char *help, cli_apply_fn apply, void *arg, cell_error *err)
{
	_cleanup_sb_ strbuf text = {0};
	_cleanup_free_ char *yaml = NULL;

	if (!(yaml = yaml_dump_json(shown, 0)) || sb_printf(&text, "%s\n\n%s", help, yaml) < 0)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return edit_loop(text.buf, apply, arg, err);
}

/* --------------------------------------------------------- operations */

/* The first "*_progress" string of an operation's metadata. */
static const char *op_progress(json_t *op)
{
	json_t *v;
	const char *k;

	json_object_foreach(json_object_get(op, "metadata"), k, v)
		if (str_has_suffix(k, "_progress") && json_is_string(v))
			return json_string_value(v);
	return NULL;
}

int cli_wait_progress(struct cli_client *c, const char *operation, const char *format, json_t **op_out,
		      cell_error *err)
{
	_cleanup_free_ char *esc = httpc_escape(cli_op_id(operation));
	_cleanup_free_ char *path = esc ? xasprintf("/1.0/operations/%s/wait?timeout=1", esc) : NULL;
	struct cli_progress p;
	json_t *op = NULL;
	int rc;

	if (op_out)
		*op_out = NULL;
	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	cli_progress_init(&p, c->quiet);
	if (!p.enabled)   /* nothing to draw: one plain wait */
		return cli_wait(c, operation, false, op_out, err);
	while ((rc = cli_get(c, path, &op, NULL, err)) == 0 &&
	       json_integer_value(json_object_get(op, "status_code")) < 200) {
		_cleanup_free_ char *line = op_progress(op) ? xasprintf(format, op_progress(op)) : NULL;
		if (line)
			cli_progress_update(&p, line);
		json_decref(op);
		op = NULL;
	}
	cli_progress_done(&p);
	json_decref(op);
	/* The final state (and its error text) comes from one last plain wait. */
	return rc < 0 ? rc : cli_wait(c, operation, false, op_out, err);
}

int cli_put_config_keys(struct cli_client *c, const char *path, const char *const *put_keys,
			json_t *keys, cell_error *err)
{
	_cleanup_free_ char *etag = NULL;
	_cleanup_json_ json_t *obj = NULL;
	_cleanup_json_ json_t *w = NULL;
	json_t *cfg, *v;
	const char *k;
	int rc = cli_get(c, path, &obj, &etag, err);

	if (rc < 0)
		return rc;
	if (!(w = cli_json_pick(obj, put_keys)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (!json_is_object(cfg = json_object_get(w, "config")))
		json_object_set_new(w, "config", cfg = json_object());
	json_object_foreach(keys, k, v) {
		if (*json_string_value(v))
			json_object_set(cfg, k, v);
		else
			json_object_del(cfg, k);
	}
	return cli_query_wait(c, "PUT", path, w, etag, NULL, err);
}

int cli_run_set_keys(struct cli_ctx *ctx, struct cli_args *a, cli_open_fn open,
		     const char *const *put_keys, bool unset, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *keys = unset ? json_pack("{s:s}", a->argv[1], "") : json_object();
	int rc;

	if (!keys)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (!unset && (rc = cli_parse_keyvals(a->argv + 1, a->argc - 1, keys, err)) < 0)
		return rc;
	if ((rc = open(ctx, a->argv[0], &o, &path, err)) < 0)
		return rc;
	return cli_put_config_keys(o.c, path, put_keys, keys, err);
}

int cli_open_api_obj(struct cli_ctx *ctx, const char *raw, const char *collection, const char *missing,
		     struct cli_obj *o, char **path, cell_error *err)
{
	int rc = cli_obj_open(ctx, raw, missing, o, err);

	if (rc < 0)
		return rc;
	*path = cli_api_path(collection, o->name, NULL);
	return *path ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

int cli_run_delete(struct cli_ctx *ctx, struct cli_args *a, cli_open_fn open, const char *what,
		   cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_free_ char *path = NULL;
	int rc = open(ctx, a->argv[0], &o, &path, err);

	if (rc < 0 || (rc = cli_query_wait(o.c, "DELETE", path, NULL, NULL, NULL, err)) < 0)
		return rc;
	if (!ctx->quiet)
		printf("%s %s deleted\n", what, o.name);
	return 0;
}

struct cli_edit_arg {
	const struct cli_edit_spec *spec;
	struct cli_obj *o;
	const char *path, *etag;
};

static int cli_edit_apply(const char *text, size_t len, void *arg, cell_error *err)
{
	struct cli_edit_arg *e = arg;
	_cleanup_json_ json_t *in = NULL;
	_cleanup_json_ json_t *body = NULL;
	int rc = cli_yaml_object(text, len, e->spec->string_keys, &in, err);

	if (rc < 0)
		return rc;
	if (!(body = cli_json_pick(in, e->spec->put_keys)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	return cli_query_wait(e->o->c, "PUT", e->path, body, e->etag, NULL, err);
}

int cli_run_edit(struct cli_ctx *ctx, struct cli_args *a, const struct cli_edit_spec *spec,
		 cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_free_ char *path = NULL;
	_cleanup_free_ char *etag = NULL;
	_cleanup_json_ json_t *obj = NULL;
	_cleanup_json_ json_t *shown = NULL;
	struct cli_edit_arg e = { spec, &o, NULL, NULL };
	int rc = spec->open(ctx, a->argv[0], &o, &path, err);

	if (rc < 0)
		return rc;
	e.path = path;
	if (!isatty(STDIN_FILENO))
		return cli_edit_stdin(cli_edit_apply, &e, err);
	if ((rc = cli_get(o.c, path, &obj, &etag, err)) < 0)
		return rc;
	if (!(shown = cli_json_pick(obj, spec->shown_keys)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	e.etag = etag;
	return cli_edit_object(shown, spec->help, cli_edit_apply, &e, err);
}
