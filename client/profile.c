/*
 * cell profile ...: profiles (/1.0/profiles) and which profiles an
 * instance uses, as `lxc profile` does.  Devices are in config_device.c.
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

static const char *const profile_put_keys[] = { "config", "description", "devices", NULL };
static const char *const profile_keys[] = { "config", "description", "devices", "name", "used_by", NULL };

static int open_profile(struct cli_ctx *ctx, const char *raw, struct cli_obj *o, char **path, cell_error *err)
{
	return cli_open_api_obj(ctx, raw, "profiles", "Missing profile name", o, path, err);
}

/* ------------------------------------------------------ profile itself */

static int run_create(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *body = NULL;
	int rc = open_profile(ctx, a->argv[0], &o, &path, err);

	if (rc < 0)
		return rc;
	body = json_pack("{s:{},s:s,s:{},s:s}", "config", "description", "", "devices", "name", o.name);
	if (!body)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_query_wait(o.c, "POST", "/1.0/profiles", body, NULL, NULL, err)) < 0)
		return rc;
	if (!ctx->quiet)
		printf("Profile %s created\n", o.name);
	return 0;
}

static int run_delete(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	return cli_run_delete(ctx, a, open_profile, "Profile", err);
}

static int run_rename(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *body = json_pack("{s:s}", "name", a->argv[1]);
	int rc = open_profile(ctx, a->argv[0], &o, &path, err);

	if (rc < 0)
		return rc;
	if (!body)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_query_wait(o.c, "POST", path, body, NULL, NULL, err)) < 0)
		return rc;
	if (!ctx->quiet)
		printf("Profile %s renamed to %s\n", o.name, a->argv[1]);
	return 0;
}

static int run_copy(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj src = {0};
	_cleanup_obj_ struct cli_obj dst = {0};
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *prof = NULL;
	_cleanup_json_ json_t *body = NULL;
	const char *project = cli_opt(a, "target-project");
	int rc = cli_obj_open(ctx, a->argv[0], "Missing source profile name", &src, err);

	if (rc < 0 || (rc = cli_obj_open(ctx, a->argv[1], NULL, &dst, err)) < 0)
		return rc;
	if (!(path = cli_api_path("profiles", src.name, NULL)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_get(src.c, path, &prof, NULL, err)) < 0)
		return rc;
	if (!(body = cli_json_pick(prof, profile_put_keys)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_object_set_new(body, "name", json_string(*dst.name ? dst.name : src.name));
	if (project && *project) {
		free(dst.c->project);
		dst.c->project = strdup(project);
	}
	return cli_query_wait(dst.c, "POST", "/1.0/profiles", body, NULL, NULL, err);
}

static int run_list(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	static const char *const header[] = { "NAME", "DESCRIPTION", "USED BY" };
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_json_ json_t *list = NULL;
	_cleanup_json_ json_t *raw = json_array();
	_cleanup_table_ struct cli_table *t = cli_table_new(3, header);
	enum cli_format fmt;
	json_t *p;
	size_t i;
	int rc;

	if (!t || !raw)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_format_parse(cli_opt(a, "format"), &fmt, err)) < 0 ||
	    (rc = cli_obj_open(ctx, a->argc ? a->argv[0] : NULL, NULL, &o, err)) < 0 ||
	    (rc = cli_get(o.c, "/1.0/profiles?recursion=1", &list, NULL, err)) < 0)
		return rc;
	json_array_foreach(list, i, p) {
		json_array_append_new(raw, cli_json_pick(p, profile_keys));
		char used[24];
		const char *row[3] = { json_string_value(json_object_get(p, "name")),
				       json_string_value(json_object_get(p, "description")), used };
		snprintf(used, sizeof(used), "%zu", json_array_size(json_object_get(p, "used_by")));
		if (cli_table_add(t, row) < 0)
			return cell_err(err, 500, ENOMEM, "out of memory");
	}
	cli_table_sort(t);
	return cli_render_list(stdout, fmt, t, raw, err);
}

static int run_show(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *prof = NULL;
	_cleanup_json_ json_t *shown = NULL;
	int rc = open_profile(ctx, a->argv[0], &o, &path, err);

	if (rc < 0 || (rc = cli_get(o.c, path, &prof, NULL, err)) < 0)
		return rc;
	if (!(shown = cli_json_pick(prof, profile_keys)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	return cli_print_yaml(stdout, shown, 0, err);
}

static int run_get(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_free_ char *path = NULL;
	_cleanup_json_ json_t *prof = NULL;
	int rc = open_profile(ctx, a->argv[0], &o, &path, err);

	if (rc < 0 || (rc = cli_get(o.c, path, &prof, NULL, err)) < 0)
		return rc;
	printf("%s\n", json_string_value(json_object_get(json_object_get(prof, "config"), a->argv[1])) ?: "");
	return 0;
}

static int run_set(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	return cli_run_set_keys(ctx, a, open_profile, profile_put_keys, false, err);
}

static int run_unset(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	return cli_run_set_keys(ctx, a, open_profile, profile_put_keys, true, err);
}

static const char edit_help[] =
	"### This is a YAML representation of the profile.\n"
	"### Any line starting with a '# will be ignored.\n"
	"###\n"
	"### A profile consists of a set of configuration items followed by a set of\n"
	"### devices.\n"
	"###\n"
	"### An example would look like:\n"
	"### name: onenic\n"
	"### config:\n"
	"###   raw.lxc: lxc.aa_profile=unconfined\n"
	"### devices:\n"
	"###   eth0:\n"
	"###     nictype: bridged\n"
	"###     parent: cellbr0\n"
	"###     type: nic\n"
	"###\n"
	"### Note that the name is shown but cannot be changed";

static int run_edit(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	static const char *const string_keys[] = { "config", "devices", NULL };
	static const struct cli_edit_spec spec = {
		.open = open_profile, .shown_keys = profile_keys, .put_keys = profile_put_keys,
		.string_keys = string_keys, .help = edit_help,
	};

	return cli_run_edit(ctx, a, &spec, err);
}

/* --------------------------------------------- an instance's profiles */

/* GET the instance, let change() rewrite its profile list, PUT it back. */
typedef int (*change_fn)(json_t *profiles, const char *arg, const char *inst, cell_error *err);

static int change_profiles(struct cli_ctx *ctx, const char *raw, change_fn change, const char *arg,
			   struct cli_obj *o, cell_error *err)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_free_ char *etag = NULL;
	_cleanup_json_ json_t *inst = NULL;
	_cleanup_json_ json_t *w = NULL;
	json_t *profiles;
	int rc = cli_obj_open(ctx, raw, "Missing instance name", o, err);

	if (rc < 0)
		return rc;
	if (!(path = cli_inst_path(o->name, NULL)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_get(o->c, path, &inst, &etag, err)) < 0)
		return rc;
	if (!(w = cli_inst_writable(inst)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (!json_is_array(profiles = json_object_get(w, "profiles")))
		json_object_set_new(w, "profiles", profiles = json_array());
	if ((rc = change(profiles, arg, o->name, err)) < 0)
		return rc;
	return cli_inst_put(o->c, o->name, w, etag, err);
}

static int add_one(json_t *profiles, const char *arg, const char *inst, cell_error *err)
{
	return json_array_append_new(profiles, json_string(arg)) ? cell_err(err, 500, ENOMEM, "out of memory") : 0;
}

static int remove_one(json_t *profiles, const char *arg, const char *inst, cell_error *err)
{
	size_t i;
	json_t *p;

	json_array_foreach(profiles, i, p) {
		if (!strcmp(json_string_value(p) ?: "", arg)) {
			json_array_remove(profiles, i);
			return 0;
		}
	}
	return cell_err(err, 400, EINVAL, "Profile %s isn't currently applied to %s", arg, inst);
}

/* "a,b" replaces the list; "" empties it. */
static int assign_list(json_t *profiles, const char *s, const char *inst, cell_error *err)
{
	json_array_clear(profiles);
	while (*s) {
		size_t n = strcspn(s, ",");
		if (json_array_append_new(profiles, json_stringn(s, n)))
			return cell_err(err, 500, ENOMEM, "out of memory");
		s += n + (s[n] == ',');
	}
	return 0;
}

static int run_add(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	int rc = change_profiles(ctx, a->argv[0], add_one, a->argv[1], &o, err);

	if (rc == 0 && !ctx->quiet)
		printf("Profile %s added to %s\n", a->argv[1], o.name);
	return rc;
}

static int run_remove(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	int rc = change_profiles(ctx, a->argv[0], remove_one, a->argv[1], &o, err);

	if (rc == 0 && !ctx->quiet)
		printf("Profile %s removed from %s\n", a->argv[1], o.name);
	return rc;
}

static int run_assign(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	int rc = change_profiles(ctx, a->argv[0], assign_list, a->argv[1], &o, err);

	if (rc == 0 && !ctx->quiet)
		printf("Profiles %s applied to %s\n", *a->argv[1] ? a->argv[1] : "(none)", o.name);
	return rc;
}

/* ------------------------------------------------------------ commands */

static const struct cli_opt list_opts[] = {
	{ "format", 'f', CLI_OPT_STRING, "Format (csv|json|table|yaml|compact)", "table" },
	{ 0 },
};

static const struct cli_opt copy_opts[] = {
	{ "target-project", 0, CLI_OPT_STRING, "Copy to a project different from the source", NULL },
	{ 0 },
};

static const struct cli_command p_add = {
	.name = "add", .usage = "[<remote>:]<instance> <profile>",
	.short_help = "Add profiles to instances", .run = run_add, .min_args = 2, .max_args = 2,
};

static const struct cli_command p_assign = {
	.name = "assign", .aliases = "apply", .usage = "[<remote>:]<instance> <profiles>",
	.short_help = "Assign sets of profiles to instances",
	.examples = "cell profile assign foo default,bar\n"
		    "    Set the profiles for \"foo\" to \"default\" and \"bar\".\n\n"
		    "cell profile assign foo default\n"
		    "    Reset \"foo\" to only using the \"default\" profile.\n\n"
		    "cell profile assign foo ''\n"
		    "    Remove all profile from \"foo\"",
	.run = run_assign, .min_args = 2, .max_args = 2,
};

static const struct cli_command p_copy = {
	.name = "copy", .aliases = "cp", .usage = "[<remote>:]<profile> [<remote>:]<profile>",
	.short_help = "Copy profiles", .opts = copy_opts, .run = run_copy, .min_args = 2, .max_args = 2,
};

static const struct cli_command p_create = {
	.name = "create", .usage = "[<remote>:]<profile>",
	.short_help = "Create profiles", .run = run_create, .min_args = 1, .max_args = 1,
};

static const struct cli_command p_delete = {
	.name = "delete", .aliases = "rm", .usage = "[<remote>:]<profile>",
	.short_help = "Delete profiles", .run = run_delete, .min_args = 1, .max_args = 1,
};

static const struct cli_command p_edit = {
	.name = "edit", .usage = "[<remote>:]<profile>",
	.short_help = "Edit profile configurations as YAML",
	.examples = "cell profile edit <profile> < profile.yaml\n"
		    "    Update a profile using the content of profile.yaml",
	.run = run_edit, .min_args = 1, .max_args = 1,
};

static const struct cli_command p_get = {
	.name = "get", .usage = "[<remote>:]<profile> <key>",
	.short_help = "Get values for profile configuration keys", .run = run_get, .min_args = 2, .max_args = 2,
};

static const struct cli_command p_list = {
	.name = "list", .aliases = "ls", .usage = "[<remote>:]",
	.short_help = "List profiles", .opts = list_opts, .run = run_list, .max_args = 1,
};

static const struct cli_command p_remove = {
	.name = "remove", .usage = "[<remote>:]<instance> <profile>",
	.short_help = "Remove profiles from instances", .run = run_remove, .min_args = 2, .max_args = 2,
};

static const struct cli_command p_rename = {
	.name = "rename", .aliases = "mv", .usage = "[<remote>:]<profile> <new-name>",
	.short_help = "Rename profiles", .run = run_rename, .min_args = 2, .max_args = 2,
};

static const struct cli_command p_set = {
	.name = "set", .usage = "[<remote>:]<profile> <key><value>...",
	.short_help = "Set profile configuration keys",
	.long_help = "Set profile configuration keys\n\n"
		     "For backward compatibility, a single configuration key may still be set with:\n"
		     "    cell profile set [<remote>:]<profile> <key> <value>",
	.run = run_set, .min_args = 2, .max_args = -1,
};

static const struct cli_command p_show = {
	.name = "show", .usage = "[<remote>:]<profile>",
	.short_help = "Show profile configurations", .run = run_show, .min_args = 1, .max_args = 1,
};

static const struct cli_command p_unset = {
	.name = "unset", .usage = "[<remote>:]<profile> <key>",
	.short_help = "Unset profile configuration keys", .run = run_unset, .min_args = 2, .max_args = 2,
};

extern const struct cli_command cli_cmd_profile_device;

static const struct cli_command *const profile_subs[] = {
	&p_add, &p_assign, &p_copy, &p_create, &p_delete, &cli_cmd_profile_device, &p_edit, &p_get,
	&p_list, &p_remove, &p_rename, &p_set, &p_show, &p_unset, NULL,
};

const struct cli_command cli_cmd_profile = {
	.name = "profile",
	.short_help = "Manage profiles",
	.subs = profile_subs,
};
