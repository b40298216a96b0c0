/*
 * cell config device ... and cell profile device ...: an instance's or a
 * profile's devices, read with GET and written back whole with PUT and the
 * ETag, as `lxc config device` does.  Devices an instance inherits from its
 * profiles can only be overridden, not edited in place.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/api.h"
#include "client/inst.h"
#include "client/output.h"
#include "common/cleanup.h"
#include "common/util.h"

/* The object whose devices a command changes. */
struct dev_target {
	struct cli_obj o;
	bool profile;
	char *path;
	json_t *obj;        /* as GET returned it */
	char *etag;
	json_t *devices;    /* borrowed from obj */
};

static void dt_free(struct dev_target *t)
{
	cli_obj_free(&t->o);
	free(t->path);
	free(t->etag);
	json_decref(t->obj);
}
#define _cleanup_dt_ __attribute__((cleanup(dt_free)))

static bool is_profile_cmd(const struct cli_args *a)
{
	return str_has_prefix(a->path, "cell profile");
}

static int dt_open(struct cli_ctx *ctx, const struct cli_args *a, struct dev_target *t, cell_error *err)
{
	int rc;

	t->profile = is_profile_cmd(a);
	if ((rc = cli_obj_open(ctx, a->argv[0], "Missing name", &t->o, err)) < 0)
		return rc;
	t->path = t->profile ? cli_api_path("profiles", t->o.name, NULL) : cli_inst_path(t->o.name, NULL);
	if (!t->path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_get(t->o.c, t->path, &t->obj, &t->etag, err)) < 0)
		return rc;
	t->devices = json_object_get(t->obj, "devices");
	if (!json_is_object(t->devices)) {
		t->devices = json_object();
		json_object_set_new(t->obj, "devices", t->devices);
	}
	return 0;
}

static int dt_save(struct dev_target *t, cell_error *err)
{
	static const char *const profile_keys[] = { "config", "description", "devices", NULL };
	_cleanup_json_ json_t *w = t->profile ? cli_json_pick(t->obj, profile_keys) : cli_inst_writable(t->obj);

	if (!w)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return cli_query_wait(t->o.c, "PUT", t->path, w, t->etag, NULL, err);
}

/* The instance's own device, or why it cannot be changed here. */
static int own_device(struct dev_target *t, const char *dev, const char *what, json_t **out, cell_error *err)
{
	*out = json_object_get(t->devices, dev);
	if (*out)
		return 0;
	if (t->profile || !json_object_get(json_object_get(t->obj, "expanded_devices"), dev))
		return cell_err(err, 404, ENOENT, "Device doesn't exist");
	if (!strcmp(what, "retrieved"))
		return cell_err(err, 400, EINVAL, "Device from profile(s) cannot be retrieved for individual instance");
	return cell_err(err, 400, EINVAL,
			"Device from profile(s) cannot be %s individual instance. Override device or modify profile instead",
			what);
}

/* "k=v" words into dev; LXD's "No value found" when a word has no '='. */
static int put_props(json_t *dev, char **words, int n, cell_error *err)
{
	for (int i = 0; i < n; i++) {
		const char *eq = strchr(words[i], '=');
		_cleanup_free_ char *k = eq ? strndup(words[i], (size_t)(eq - words[i])) : NULL;

		if (!eq)
			return cell_err(err, 400, EINVAL, "No value found in \"%s\"", words[i]);
		if (!k)
			return cell_err(err, 500, ENOMEM, "out of memory");
		json_object_set_new(dev, k, json_string(eq + 1));
	}
	return 0;
}

static int run_add(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_dt_ struct dev_target t = {0};
	const char *name = a->argv[1];
	json_t *dev;
	int rc = dt_open(ctx, a, &t, err);

	if (rc < 0)
		return rc;
	if (json_object_get(t.devices, name))
		return cell_err(err, 409, EEXIST, "The device already exists");
	if (!(dev = json_pack("{s:s}", "type", a->argv[2])))
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_object_set_new(t.devices, name, dev);
	if ((rc = put_props(dev, a->argv + 3, a->argc - 3, err)) < 0 || (rc = dt_save(&t, err)) < 0)
		return rc;
	if (!ctx->quiet)
		printf("Device %s added to %s\n", name, t.o.name);
	return 0;
}

static int run_get(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_dt_ struct dev_target t = {0};
	json_t *dev;
	int rc = dt_open(ctx, a, &t, err);

	if (rc < 0 || (rc = own_device(&t, a->argv[1], "retrieved", &dev, err)) < 0)
		return rc;
	printf("%s\n", json_string_value(json_object_get(dev, a->argv[2])) ?: "");
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int run_list(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_dt_ struct dev_target t = {0};
	_cleanup_free_ const char **names = NULL;
	size_t n = 0;
	const char *k;
	json_t *v;
	int rc = dt_open(ctx, a, &t, err);

	if (rc < 0)
		return rc;
	if (!(names = calloc(json_object_size(t.devices) + 1, sizeof(*names))))
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_object_foreach(t.devices, k, v)
		names[n++] = k;
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++)
		printf("%s%s", i ? "\n" : "", names[i]);
	putchar('\n');
	return 0;
}

static int run_override(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_dt_ struct dev_target t = {0};
	const char *name = a->argv[1];
	json_t *dev;
	int rc = dt_open(ctx, a, &t, err);

	if (rc < 0)
		return rc;
	if (json_object_get(t.devices, name))
		return cell_err(err, 409, EEXIST, "The device already exists");
	dev = json_object_get(json_object_get(t.obj, "expanded_devices"), name);
	if (!dev)
		return cell_err(err, 404, ENOENT, "The profile device doesn't exist");
	if (!(dev = json_deep_copy(dev)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_object_set_new(t.devices, name, dev);
	if ((rc = put_props(dev, a->argv + 2, a->argc - 2, err)) < 0 || (rc = dt_save(&t, err)) < 0)
		return rc;
	if (!ctx->quiet)
		printf("Device %s overridden for %s\n", name, t.o.name);
	return 0;
}

static int run_remove(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_dt_ struct dev_target t = {0};
	_cleanup_sb_ strbuf names = {0};
	json_t *dev;
	int rc = dt_open(ctx, a, &t, err);

	for (int i = 1; rc == 0 && i < a->argc; i++) {
		if ((rc = own_device(&t, a->argv[i], "removed from", &dev, err)) < 0)
			return rc;
		json_object_del(t.devices, a->argv[i]);
		if (sb_printf(&names, "%s%s", i > 1 ? ", " : "", a->argv[i]) < 0)
			return cell_err(err, 500, ENOMEM, "out of memory");
	}
	if (rc < 0 || (rc = dt_save(&t, err)) < 0)
		return rc;
	if (!ctx->quiet)
		printf("Device %s removed from %s\n", names.buf, t.o.name);
	return 0;
}

/* set and unset: unset is set with an empty value, which drops the key. */
static int set_keys(struct cli_ctx *ctx, struct cli_args *a, json_t *keys, cell_error *err)
{
	_cleanup_dt_ struct dev_target t = {0};
	json_t *dev, *v;
	const char *k;
	int rc = dt_open(ctx, a, &t, err);

	if (rc < 0 || (rc = own_device(&t, a->argv[1], "modified for", &dev, err)) < 0)
		return rc;
	json_object_foreach(keys, k, v) {
		if (*json_string_value(v))
			json_object_set(dev, k, v);
		else
			json_object_del(dev, k);
	}
	return dt_save(&t, err);
}

static int run_set(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_json_ json_t *keys = json_object();
	int rc = keys ? cli_parse_keyvals(a->argv + 2, a->argc - 2, keys, err) : -ENOMEM;

	if (rc == -ENOMEM)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return rc < 0 ? rc : set_keys(ctx, a, keys, err);
}

static int run_unset(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_json_ json_t *keys = json_pack("{s:s}", a->argv[2], "");

	if (!keys)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return set_keys(ctx, a, keys, err);
}

static int run_show(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_dt_ struct dev_target t = {0};
	_cleanup_json_ json_t *sorted = NULL;
	int rc = dt_open(ctx, a, &t, err);

	if (rc < 0)
		return rc;
	if (!(sorted = cli_json_sorted(t.devices)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	return cli_print_yaml(stdout, sorted, 0, err);
}

/* ------------------------------------------------------------ commands */

#define DEV_CMDS(prefix, what, lxc)                                                                   \
	static const struct cli_command prefix##_add = {                                              \
		.name = "add",                                                                        \
		.usage = "[<remote>:]<" what "> <device> <type> [key=value...]",                      \
		.short_help = "Add instance devices",                                                 \
		.examples = "cell " lxc " device add [<remote>:]" what "1 <device-name> disk source=/share/c1 path=/opt\n" \
			    "    Will mount the host's /share/c1 onto /opt in the instance.\n\n"        \
			    "cell " lxc " device add [<remote>:]" what "1 <device-name> disk pool=some-pool source=some-volume path=/opt\n" \
			    "    Will mount the some-volume volume on some-pool onto /opt in the instance.", \
		.run = run_add, .min_args = 3, .max_args = -1,                                         \
	};                                                                                            \
	static const struct cli_command prefix##_get = {                                              \
		.name = "get",                                                                        \
		.usage = "[<remote>:]<" what "> <device> <key>",                                      \
		.short_help = "Get values for device configuration keys",                            \
		.run = run_get, .min_args = 3, .max_args = 3,                                          \
	};                                                                                            \
	static const struct cli_command prefix##_list = {                                             \
		.name = "list", .aliases = "ls",                                                      \
		.usage = "[<remote>:]<" what ">",                                                     \
		.short_help = "List instance devices",                                                \
		.run = run_list, .min_args = 1, .max_args = 1,                                         \
	};                                                                                            \
	static const struct cli_command prefix##_remove = {                                           \
		.name = "remove", .aliases = "rm",                                                    \
		.usage = "[<remote>:]<" what "> <name>...",                                           \
		.short_help = "Remove instance devices",                                              \
		.run = run_remove, .min_args = 2, .max_args = -1,                                      \
	};                                                                                            \
	static const struct cli_command prefix##_set = {                                              \
		.name = "set",                                                                        \
		.usage = "[<remote>:]<" what "> <device> <key>=<value>...",                           \
		.short_help = "Set device configuration keys",                                        \
		.long_help = "Set device configuration keys\n\n"                                      \
			     "For backward compatibility, a single configuration key may still be set with:\n" \
			     "    cell " lxc " device set [<remote>:]<" what "> <device> <key> <value>",  \
		.run = run_set, .min_args = 3, .max_args = -1,                                         \
	};                                                                                            \
	static const struct cli_command prefix##_show = {                                             \
		.name = "show",                                                                       \
		.usage = "[<remote>:]<" what ">",                                                     \
		.short_help = "Show full device configuration",                                       \
		.run = run_show, .min_args = 1, .max_args = 1,                                         \
	};                                                                                            \
	static const struct cli_command prefix##_unset = {                                            \
		.name = "unset",                                                                      \
		.usage = "[<remote>:]<" what "> <device> <key>",                                      \
		.short_help = "Unset device configuration keys",                                      \
		.run = run_unset, .min_args = 3, .max_args = 3,                                        \
	};

DEV_CMDS(inst_dev, "instance", "config")
DEV_CMDS(prof_dev, "profile", "profile")

static const struct cli_command inst_dev_override = {
	.name = "override",
	.usage = "[<remote>:]<instance> <device> [key=value...]",
	.short_help = "Copy profile inherited devices and override configuration keys",
	.run = run_override,
	.min_args = 2,
	.max_args = -1,
};

static const struct cli_command *const inst_dev_subs[] = {
	&inst_dev_add, &inst_dev_get, &inst_dev_list, &inst_dev_override, &inst_dev_remove,
	&inst_dev_set, &inst_dev_show, &inst_dev_unset, NULL,
};

static const struct cli_command *const prof_dev_subs[] = {
	&prof_dev_add, &prof_dev_get, &prof_dev_list, &prof_dev_remove, &prof_dev_set, &prof_dev_show,
	&prof_dev_unset, NULL,
};

const struct cli_command cli_cmd_config_device = {
	.name = "device",
	.short_help = "Manage devices",
	.subs = inst_dev_subs,
};

const struct cli_command cli_cmd_profile_device = {
	.name = "device",
	.short_help = "Manage devices",
	.subs = prof_dev_subs,
};
