/* cell storage ...: storage pools (/1.0/storage-pools), as `lxc storage` does. */
#include <ctype.h>
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

static const char *const pool_keys[] = { "config", "description", "name", "driver", "used_by", "status",
					 "locations", NULL };
static const char *const pool_put_keys[] = { "config", "description", NULL };

static int open_pool(struct cli_ctx *ctx, const char *raw, struct cli_obj *o, char **path, cell_error *err)
{
	return cli_open_api_obj(ctx, raw, "storage-pools", "Missing pool name", o, path, err);
}

static int run_create(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_json_ json_t *body = NULL;
	json_t *cfg;
	int rc = cli_obj_open(ctx, a->argv[0], "Missing pool name", &o, err);

	if (rc < 0)
		return rc;
	body = json_pack("{s:{},s:s,s:s,s:s}", "config", "description", "", "name", o.name, "driver", a->argv[1]);
	if (!body)
		return cell_err(err, 500, ENOMEM, "out of memory");
	cfg = json_object_get(body, "config");
	for (int i = 2; i < a->argc; i++) {
		const char *eq = strchr(a->argv[i], '=');
		_cleanup_free_ char *k = eq ? strndup(a->argv[i], (size_t)(eq - a->argv[i])) : NULL;
		if (!eq)
			return cell_err(err, 400, EINVAL, "Bad key=value pair: %s", a->argv[i]);
		if (!k)
			return cell_err(err, 500, ENOMEM, "out of memory");
		json_object_set_new(cfg, k, json_string(eq + 1));
	}
	if ((rc = cli_query_wait(o.c, "POST", "/1.0/storage-pools", body, NULL, NULL, err)) < 0)
		return rc;
	if (!ctx->quiet)
		printf("Storage pool %s created\n", o.name);
	return 0;
}

static int run_delete(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	return cli_run_delete(ctx, a, open_pool, "Storage pool", err);
}

static int run_list(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	static const char *const header[] = { "NAME", "DRIVER", "SOURCE", "DESCRIPTION", "USED BY", "STATE" };
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_json_ json_t *list = NULL;
	_cleanup_json_ json_t *raw = json_array();
	_cleanup_table_ struct cli_table *t = cli_table_new(6, header);
	enum cli_format fmt;
	json_t *p;
	size_t i;
	int rc;

	if (!t || !raw)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_format_parse(cli_opt(a, "format"), &fmt, err)) < 0 ||
	    (rc = cli_obj_open(ctx, a->argc ? a->argv[0] : NULL, NULL, &o, err)) < 0 ||
	    (rc = cli_get(o.c, "/1.0/storage-pools?recursion=1", &list, NULL, err)) < 0)
		return rc;
	json_array_foreach(list, i, p) {
		json_array_append_new(raw, cli_json_pick(p, pool_keys));
		char used[24], state[32];
		const char *row[6] = { json_string_value(json_object_get(p, "name")),
				       json_string_value(json_object_get(p, "driver")),
				       json_string_value(json_object_get(json_object_get(p, "config"), "source")),
				       json_string_value(json_object_get(p, "description")), used, state };
		snprintf(used, sizeof(used), "%zu", json_array_size(json_object_get(p, "used_by")));
		snprintf(state, sizeof(state), "%s", json_string_value(json_object_get(p, "status")) ?: "");
		for (char *s = state; *s; s++)
			*s = (char)toupper((unsigned char)*s);
		if (cli_table_add(t, row) < 0)
			return cell_err(err, 500, ENOMEM, "out of memory");
	}
	cli_table_sort(t);
	return cli_render_list(stdout, fmt, t, raw, err);
}

static int cmp_json_str(const void *a, const void *b)
{
	return strcmp(json_string_value(*(json_t *const *)a) ?: "", json_string_value(*(json_t *const *)b) ?: "");
}

/* LXD sorts used_by before showing a pool. */
static void sort_used_by(json_t *pool)
{
	json_t *ub = json_object_get(pool, "used_by"), **items;
	size_t n = json_array_size(ub), i;

	if (n < 2 || !(items = malloc(n * sizeof(*items))))
		return;
	for (i = 0; i < n; i++)
		items[i] = json_incref(json_array_get(ub, i));
	qsort(items, n, sizeof(*items), cmp_json_str);
	json_array_clear(ub);
	for (i = 0; i < n; i++)
		json_array_append_new(ub, items[i]);
	free(items);
}

static int run_show(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_free_ char *path = NULL;
	_cleanup_free_ char *res_path = NULL;
	_cleanup_json_ json_t *pool = NULL;
	_cleanup_json_ json_t *shown = NULL;
	int rc = open_pool(ctx, a->argv[0], &o, &path, err);

	if (rc < 0)
		return rc;
	if (cli_flag(a, "resources")) {
		if (!(res_path = cli_api_path("storage-pools", o.name, "/resources")))
			return cell_err(err, 500, ENOMEM, "out of memory");
		if ((rc = cli_get(o.c, res_path, &pool, NULL, err)) < 0)
			return rc;
		return cli_print_yaml(stdout, pool, 0, err);
	}
	if ((rc = cli_get(o.c, path, &pool, NULL, err)) < 0)
		return rc;
	sort_used_by(pool);
	if (!(shown = cli_json_pick(pool, pool_keys)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	return cli_print_yaml(stdout, shown, 0, err);
}

/* ---------------------------------------------------------------- info */

static char *url_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;

	for (size_t i = 0; out && i < n; i++) {
		unsigned v;
		if (s[i] == '%' && i + 2 < n + 1 && sscanf(s + i + 1, "%2x", &v) == 1) {
			*o++ = (char)v;
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	if (out)
		*o = '\0';
	return out;
}

/* "?project=p&target=m" as LXD shows it: ` (project "p", target "m")`. */
static int used_by_suffix(const char *query, strbuf *out)
{
	const char *keys[] = { "project", "target" };
	int rc = 0, n = 0;

	for (size_t k = 0; query && k < ARRAY_SIZE(keys) && rc == 0; k++) {
		_cleanup_free_ char *needle = xasprintf("%s=", keys[k]);
		const char *p = query;
		while (needle && (p = strstr(p, needle)) && p[-1] != '?' && p[-1] != '&')
			p++;
		if (!needle || !p)
			continue;
		p += strlen(needle);
		_cleanup_free_ char *v = url_decode(p, strcspn(p, "&"));
		rc = v ? sb_printf(out, "%s%s \"%s\"", n++ ? ", " : " (", keys[k], v) : -ENOMEM;
	}
	return rc ? rc : n ? sb_puts(out, ")") : 0;
}

/* "/1.0/instances/c1" -> ("instances", "c1"); pool volumes become ("volumes", name). */
static int used_by_entry(json_t *by, const char *url)
{
	const char *path = str_has_prefix(url, "/1.0/") ? url + 5 : url, *q = strchr(path, '?');
	size_t plen = q ? (size_t)(q - path) : strlen(path);
	_cleanup_free_ char *p = url_decode(path, plen);
	_cleanup_sb_ strbuf what = {0};
	char *fields[6] = { 0 }, *save = NULL;
	int n = 0;
	json_t *list;

	if (!p)
		return -ENOMEM;
	for (char *f = strtok_r(p, "/", &save); f && n < 6; f = strtok_r(NULL, "/", &save))
		fields[n++] = f;
	if (n < 2 || (!strcmp(fields[0], "storage-pools") && n < 5))
		return 0;   /* LXD skips what it cannot parse */
	if (!strcmp(fields[0], "storage-pools")) {
		fields[0] = "volumes";
		fields[1] = fields[4];
	}
	if (sb_puts(&what, fields[1]) < 0 || used_by_suffix(q, &what) < 0)
		return -ENOMEM;
	if (!(list = json_object_get(by, fields[0])))
		json_object_set_new(by, fields[0], list = json_array());
	return json_array_append_new(list, json_string(what.buf)) ? -ENOMEM : 0;
}

static void space_text(json_t *res, const char *key, bool bytes, char out[32])
{
	json_int_t v = json_integer_value(json_object_get(json_object_get(res, "space"), key));

	if (bytes)
		snprintf(out, 32, "%lld", (long long)v);
	else
		cli_size_iec(v, out);
}

static int run_info(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_free_ char *path = NULL;
	_cleanup_free_ char *res_path = NULL;
	_cleanup_json_ json_t *pool = NULL;
	_cleanup_json_ json_t *res = NULL;
	_cleanup_json_ json_t *info = NULL;
	_cleanup_json_ json_t *used = NULL;
	bool bytes = cli_flag(a, "bytes");
	char total[32], usedsp[32];
	json_t *u;
	size_t i;
	int rc = open_pool(ctx, a->argv[0], &o, &path, err);

	if (rc < 0)
		return rc;
	if (!(res_path = cli_api_path("storage-pools", o.name, "/resources")))
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_get(o.c, path, &pool, NULL, err)) < 0 || (rc = cli_get(o.c, res_path, &res, NULL, err)) < 0)
		return rc;
	space_text(res, "total", bytes, total);
	space_text(res, "used", bytes, usedsp);
	/* Go prints these maps with sorted keys; build them in that order. */
	info = json_pack("{s:{s:s,s:s,s:s,s:s,s:s}}", "info",
			 "description", json_string_value(json_object_get(pool, "description")) ?: "",
			 "driver", json_string_value(json_object_get(pool, "driver")) ?: "",
			 "name", json_string_value(json_object_get(pool, "name")) ?: "",
			 "space used", usedsp, "total space", total);
	used = json_pack("{s:{}}", "used by");
	if (!info || !used)
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_array_foreach(json_object_get(pool, "used_by"), i, u)
		if (json_is_string(u) && used_by_entry(json_object_get(used, "used by"), json_string_value(u)) < 0)
			return cell_err(err, 500, ENOMEM, "out of memory");
	json_object_set_new(used, "used by", cli_json_sorted(json_object_get(used, "used by")));
	if ((rc = cli_print_yaml(stdout, info, 0, err)) < 0)
		return rc;
	return cli_print_yaml(stdout, used, 0, err);
}

/* ------------------------------------------------------ get/set/edit */

static int run_get(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *pool = NULL;
	const char *v;
	int rc = open_pool(ctx, a->argv[0], &o, &path, err);

	if (rc < 0 || (rc = cli_get(o.c, path, &pool, NULL, err)) < 0)
		return rc;
	/* As LXD: nothing at all, not even a newline, for a key that is not set. */
	if ((v = json_string_value(json_object_get(json_object_get(pool, "config"), a->argv[1]))))
		printf("%s\n", v);
	return 0;
}

static int run_set(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	return cli_run_set_keys(ctx, a, open_pool, pool_put_keys, false, err);
}

static int run_unset(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	return cli_run_set_keys(ctx, a, open_pool, pool_put_keys, true, err);
}

static const char edit_help[] =
	"### This is a YAML representation of a storage pool.\n"
	"### Any line starting with a '#' will be ignored.\n"
	"###\n"
	"### A storage pool consists of a set of configuration items.\n"
	"###\n"
	"### An example would look like:\n"
	"### name: default\n"
	"### driver: zfs\n"
	"### used_by: []\n"
	"### config:\n"
	"###   size: \"61203283968\"\n"
	"###   source: /var/lib/celld/disks/default.img\n"
	"###   zfs.pool_name: default";

static int run_edit(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	static const char *const string_keys[] = { "config", NULL };
	static const struct cli_edit_spec spec = {
		.open = open_pool, .shown_keys = pool_keys, .put_keys = pool_put_keys,
		.string_keys = string_keys, .help = edit_help,
	};

	return cli_run_edit(ctx, a, &spec, err);
}

/* ------------------------------------------------------------ commands */

static const struct cli_opt list_opts[] = {
	{ "format", 'f', CLI_OPT_STRING, "Format (csv|json|table|yaml|compact)", "table" },
	{ 0 },
};

static const struct cli_opt show_opts[] = {
	{ "resources", 0, CLI_OPT_BOOL, "Show the resources available to the storage pool", NULL },
	{ 0 },
};

static const struct cli_opt info_opts[] = {
	{ "bytes", 0, CLI_OPT_BOOL, "Show the used and free space in bytes", NULL },
	{ 0 },
};

static const struct cli_command s_create = {
	.name = "create", .usage = "[<remote>:]<pool> <driver> [key=value...]",
	.short_help = "Create storage pools", .run = run_create, .min_args = 2, .max_args = -1,
};

static const struct cli_command s_delete = {
	.name = "delete", .aliases = "rm", .usage = "[<remote>:]<pool>",
	.short_help = "Delete storage pools", .run = run_delete, .min_args = 1, .max_args = 1,
};

static const struct cli_command s_edit = {
	.name = "edit", .usage = "[<remote>:]<pool>",
	.short_help = "Edit storage pool configurations as YAML",
	.examples = "cell storage edit [<remote>:]<pool> < pool.yaml\n"
		    "    Update a storage pool using the content of pool.yaml.",
	.run = run_edit, .min_args = 1, .max_args = 1,
};

static const struct cli_command s_get = {
	.name = "get", .usage = "[<remote>:]<pool> <key>",
	.short_help = "Get values for storage pool configuration keys", .run = run_get, .min_args = 2, .max_args = 2,
};

static const struct cli_command s_info = {
	.name = "info", .usage = "[<remote>:]<pool>",
	.short_help = "Show useful information about storage pools", .opts = info_opts, .run = run_info,
	.min_args = 1, .max_args = 1,
};

static const struct cli_command s_list = {
	.name = "list", .aliases = "ls", .usage = "[<remote>:]",
	.short_help = "List available storage pools", .opts = list_opts, .run = run_list, .max_args = 1,
};

static const struct cli_command s_set = {
	.name = "set", .usage = "[<remote>:]<pool> <key> <value>",
	.short_help = "Set storage pool configuration keys",
	.long_help = "Set storage pool configuration keys\n\n"
		     "For backward compatibility, a single configuration key may still be set with:\n"
		     "    cell storage set [<remote>:]<pool> <key> <value>",
	.run = run_set, .min_args = 2, .max_args = -1,
};

static const struct cli_command s_show = {
	.name = "show", .usage = "[<remote>:]<pool>",
	.short_help = "Show storage pool configurations and resources", .opts = show_opts, .run = run_show,
	.min_args = 1, .max_args = 1,
};

static const struct cli_command s_unset = {
	.name = "unset", .usage = "[<remote>:]<pool> <key>",
	.short_help = "Unset storage pool configuration keys", .run = run_unset, .min_args = 2, .max_args = 2,
};

static const struct cli_command *const storage_subs[] = {
	&s_create, &s_delete, &s_edit, &s_get, &s_info, &s_list, &s_set, &s_show, &s_unset, NULL,
};

const struct cli_command cli_cmd_storage = {
	.name = "storage",
	.short_help = "Manage storage pools and volumes",
	.subs = storage_subs,
};
