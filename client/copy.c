/*
 * cell copy on one remote: POST /1.0/instances with a "copy" source, as a
 * local `lxc copy` does: the source's writable config goes along (volatile
 * keys stripped, overrides applied) and the daemon copies the storage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/api.h"
#include "client/conf.h"
#include "client/inst.h"
#include "common/cleanup.h"
#include "common/util.h"

enum { STATUS_RUNNING = 103 };

struct copy {
	struct cli_obj src;
	char *dst_remote, *dst_name;
	json_t *entry;   /* the source instance (or snapshot) as GET returned it */
	json_t *req;
};

static void copy_free(struct copy *cp)
{
	cli_obj_free(&cp->src);
	free(cp->dst_remote);
	free(cp->dst_name);
	json_decref(cp->entry);
	json_decref(cp->req);
}
#define _cleanup_copy_ __attribute__((cleanup(copy_free)))

/* Volatile keys describe the source's own life; only the base image helps the copy. */
static void strip_volatile(json_t *config)
{
	const char *k;
	json_t *v;
	void *tmp;

	json_object_foreach_safe(config, tmp, k, v)
		if (str_has_prefix(k, "volatile.") && strcmp(k, "volatile.base_image"))
			json_object_del(config, k);
}

/* -d keys go into the copied device of that name, or make a new one. */
static int merge_devices(json_t *devs, const char *joined, cell_error *err)
{
	_cleanup_json_ json_t *over = json_object();
	const char *name;
	json_t *keys;
	int rc = over ? cli_parse_device_flag(joined, over, err) : cell_err(err, 500, ENOMEM, "out of memory");

	if (rc < 0)
		return rc;
	json_object_foreach(over, name, keys) {
		if (json_object_get(devs, name))
			json_object_update(json_object_get(devs, name), keys);
		else
			json_object_set(devs, name, keys);
	}
	return 0;
}

/* -p/--no-profiles, -c, -d, -e and -s applied to the copied writable config. */
static int apply_overrides(struct copy *cp, const struct cli_args *a, cell_error *err)
{
	json_t *cfg = json_object_get(cp->req, "config"), *devs = json_object_get(cp->req, "devices"), *root = NULL;
	const char *v, *k;
	json_t *d;
	int rc;

	if ((v = cli_opt(a, "profile")) || cli_flag(a, "no-profiles")) {
		json_t *list = json_array();
		for (; v && *v; v += strcspn(v, ",") + (v[strcspn(v, ",")] == ','))
			json_array_append_new(list, json_stringn(v, strcspn(v, ",")));
		json_object_set_new(cp->req, "profiles", list);
	}
	if ((v = cli_opt(a, "config")) && (rc = cli_parse_config_flag(v, cfg, err)) < 0)
		return rc;
	if ((v = cli_opt(a, "device")) && (rc = merge_devices(devs, v, err)) < 0)
		return rc;
	json_object_set_new(cp->req, "ephemeral", json_boolean(cli_flag(a, "ephemeral")));
	if ((v = cli_opt(a, "storage"))) {
		json_object_foreach(devs, k, d)
			if (!root && !strcmp(json_string_value(json_object_get(d, "type")) ?: "", "disk") &&
			    !strcmp(json_string_value(json_object_get(d, "path")) ?: "", "/"))
				root = d;
		if (root)
			json_object_set_new(root, "pool", json_string(v));
		else
			json_object_set_new(devs, "root", json_pack("{s:s,s:s,s:s}", "type", "disk", "path", "/", "pool", v));
	}
	strip_volatile(cfg);
	json_object_del(cfg, "volatile.last_state.power");
	return 0;
}

static int build_request(struct copy *cp, const struct cli_args *a, cell_error *err)
{
	bool snap = cli_is_snapshot(cp->src.name);
	json_t *src, *cfg;
	const char *base;

	if (!(cp->req = cli_inst_writable(cp->entry)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	cfg = json_object_get(cp->req, "config");
	base = json_string_value(json_object_get(cfg, "volatile.base_image"));
	json_object_set_new(cp->req, "name", json_string(cp->dst_name));
	src = json_pack("{s:s,s:s,s:s?,s:s}", "type", "copy", "certificate", "", "base-image", snap ? NULL : base,
			"source", cp->src.name);
	if (!src)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (!json_object_get(src, "base-image") || json_is_null(json_object_get(src, "base-image")))
		json_object_del(src, "base-image");
	/* Live only means something for a running instance (or a stateful snapshot). */
	if (!cli_flag(a, "stateless") && (snap ? json_is_true(json_object_get(cp->entry, "stateful"))
					       : json_integer_value(json_object_get(cp->entry, "status_code")) == STATUS_RUNNING))
		json_object_set_new(src, "live", json_true());
	if (cli_flag(a, "instance-only")) {
		json_object_set_new(src, "instance_only", json_true());
		json_object_set_new(src, "container_only", json_true());
	}
	if (cli_flag(a, "refresh"))
		json_object_set_new(src, "refresh", json_true());
	json_object_set_new(src, "allow_inconsistent", json_boolean(cli_flag(a, "allow-inconsistent")));
	json_object_set_new(cp->req, "source", src);
	json_object_set_new(cp->req, "instance_type", json_string(""));
	json_object_set_new(cp->req, "type", json_string(snap ? "" : json_string_value(json_object_get(cp->entry, "type")) ?: "container"));
	return apply_overrides(cp, a, err);
}

static int check_flags(struct copy *cp, const struct cli_args *a, cell_error *err)
{
	if (!*cp->src.name)
		return cell_err(err, 400, EINVAL, "You must specify a source instance name");
	if (cli_flag(a, "refresh") && cli_flag(a, "no-profiles"))
		return cell_err(err, 400, EINVAL, "--no-profiles cannot be used with --refresh");
	if (cli_is_snapshot(cp->src.name) && cli_flag(a, "instance-only"))
		return cell_err(err, 400, EINVAL, "--instance-only can't be passed when the source is a snapshot");
	if (cli_is_snapshot(cp->src.name) && cli_flag(a, "refresh"))
		return cell_err(err, 400, EINVAL, "--refresh can only be used with instances");
	if (strcmp(cp->src.remote, cp->dst_remote))
		return cell_err(err, 501, ENOTSUP, "Copying instances between remotes is not supported yet");
	return 0;
}

/* --refresh: the target keeps its storage; its config becomes the source's. */
static int refresh_config(struct copy *cp, cell_error *err)
{
	_cleanup_free_ char *path = cli_inst_path(cp->dst_name, NULL);
	_cleanup_free_ char *etag = NULL;
	_cleanup_json_ json_t *cur = NULL;
	_cleanup_json_ json_t *w = NULL;
	int rc;

	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_get(cp->src.c, path, &cur, &etag, err)) < 0)
		return cell_err_wrap(err, rc, "Failed to refresh target instance '%s'", cp->dst_name);
	if (!(w = cli_inst_writable(cp->req)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_object_set_new(json_object_get(w, "config"), "volatile.idmap.next",
			    json_string(json_string_value(json_object_get(json_object_get(cur, "config"), "volatile.idmap.next")) ?: ""));
	return cli_inst_put(cp->src.c, cp->dst_name, w, etag, err);
}

/* "[<remote>:][<name>]": no name keeps the source's; no argument at all lets the daemon pick. */
static int parse_destination(struct cli_ctx *ctx, const struct cli_args *a, struct copy *cp, cell_error *err)
{
	struct cli_conf *conf;
	int rc;

	if ((rc = cli_ctx_conf(ctx, &conf, err)) < 0 ||
	    (rc = cli_conf_parse_remote(conf, a->argc > 1 ? a->argv[1] : "", &cp->dst_remote, &cp->dst_name, err)) < 0)
		return rc;
	if (a->argc < 2) {
		free(cp->dst_remote);
		cp->dst_remote = strdup(cp->src.remote);
	} else if (!*cp->dst_name) {
		free(cp->dst_name);
		cp->dst_name = strdup(cp->src.name);
	}
	return cp->dst_remote && cp->dst_name ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

static int run_copy(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_copy_ struct copy cp = {0};
	_cleanup_free_ char *src_path = NULL;
	_cleanup_cli_resp_ struct cli_resp r = {0};
	_cleanup_json_ json_t *op = NULL;
	int rc = cli_obj_open(ctx, a->argv[0], NULL, &cp.src, err);

	if (rc < 0 || (rc = parse_destination(ctx, a, &cp, err)) < 0 || (rc = check_flags(&cp, a, err)) < 0)
		return rc;
	if (!(src_path = cli_inst_path(cp.src.name, NULL)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_get(cp.src.c, src_path, &cp.entry, NULL, err)) < 0 || (rc = build_request(&cp, a, err)) < 0)
		return rc;
	if ((rc = cli_query(cp.src.c, "POST", "/1.0/instances", cp.req, NULL, &r, err)) < 0)
		return rc;
	if (r.operation && (rc = cli_wait_progress(cp.src.c, r.operation, "Transferring instance: %s", &op, err)) < 0)
		return rc;
	if (cli_flag(a, "refresh") && (rc = refresh_config(&cp, err)) < 0)
		return rc;
	if (a->argc < 2) {
		json_t *list = json_object_get(json_object_get(op, "resources"), "instances");
		const char *url = json_string_value(json_array_get(list, 0));
		if (json_array_size(list) != 1 || !url)
			return cell_err(err, 500, EPROTO, "Failed to get the new instance name");
		printf("Instance name is: %s\n", strrchr(url, '/') ? strrchr(url, '/') + 1 : url);
	}
	return 0;
}

static const struct cli_opt copy_opts[] = {
	{ "allow-inconsistent", 0, CLI_OPT_BOOL, "Ignore copy errors for volatile files", NULL },
	{ "config", 'c', CLI_OPT_LIST, "Config key/value to apply to the new instance", NULL },
	{ "device", 'd', CLI_OPT_LIST, "New key/value to apply to a specific device", NULL },
	{ "ephemeral", 'e', CLI_OPT_BOOL, "Ephemeral instance", NULL },
	{ "instance-only", 0, CLI_OPT_BOOL, "Copy the instance without its snapshots", NULL },
	{ "no-profiles", 0, CLI_OPT_BOOL, "Create the instance with no profiles applied", NULL },
	{ "profile", 'p', CLI_OPT_LIST, "Profile to apply to the new instance", NULL },
	{ "refresh", 0, CLI_OPT_BOOL, "Perform an incremental copy", NULL },
	{ "stateless", 0, CLI_OPT_BOOL, "Copy a stateful instance stateless", NULL },
	{ "storage", 's', CLI_OPT_STRING, "Storage pool name", NULL },
	{ 0 },
};

const struct cli_command cli_cmd_copy = {
	.name = "copy",
	.aliases = "cp",
	.usage = "[<remote>:]<source>[/<snapshot>] [[<remote>:]<destination>]",
	.short_help = "Copy instances within or in between servers",
	.opts = copy_opts,
	.run = run_copy,
	.min_args = 1,
	.max_args = 2,
};
