/*
 * cell init / cell launch: create an instance from an image
 * ("[<remote>:]<alias|fingerprint>") with POST /1.0/instances, as `lxc init`
 * does: aliases are resolved by the client and the image is named by
 * fingerprint; an image on another remote is pulled by the daemon from it.
 * launch then starts it.  YAML on stdin (when not a terminal) seeds the
 * config, devices and profiles.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/api.h"
#include "client/conf.h"
#include "client/inst.h"
#include "common/cleanup.h"
#include "common/util.h"

struct create {
	struct cli_obj dst;       /* remote and name of the new instance */
	char *img_remote, *image; /* "" image with --empty */
	json_t *req;              /* the InstancesPost being built */
};

static void create_free(struct create *cr)
{
	cli_obj_free(&cr->dst);
	free(cr->img_remote);
	free(cr->image);
	json_decref(cr->req);
}
#define _cleanup_create_ __attribute__((cleanup(create_free)))

/* --------------------------------------------------------- the request */

/* LXD's InstancesPost, seeded from YAML on stdin when there is some. */
static int base_request(struct create *cr, const struct cli_args *a, cell_error *err)
{
	static const char *const string_keys[] = { "config", "devices", NULL };
	_cleanup_sb_ strbuf in = {0};
	_cleanup_json_ json_t *seed = NULL;
	json_t *v;
	int rc;

	if (!isatty(STDIN_FILENO)) {
		if ((rc = cli_read_stdin(&in, err)) < 0 ||
		    (rc = cli_yaml_object(in.buf ? in.buf : "", in.len, string_keys, &seed, err)) < 0)
			return rc;
	}
	cr->req = json_pack("{s:s,s:{},s:{},s:b,s:n,s:b,s:s,s:s,s:{s:s,s:s},s:s,s:s}", "architecture", "",
			    "config", "devices", "ephemeral", cli_flag(a, "ephemeral"), "profiles", "stateful", false,
			    "description", "", "name", cr->dst.name, "source", "type", "image", "certificate", "",
			    "instance_type", cli_opt(a, "type") ?: "", "type", cli_flag(a, "vm") ? "virtual-machine" : "container");
	if (!cr->req)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (json_is_object(v = json_object_get(seed, "config")))
		json_object_update(json_object_get(cr->req, "config"), v);
	if (json_is_object(v = json_object_get(seed, "devices")))
		json_object_update(json_object_get(cr->req, "devices"), v);
	if (json_is_array(v = json_object_get(seed, "profiles")) && json_array_size(v))
		json_object_set(cr->req, "profiles", v);
	return 0;
}

/* -p (repeatable) replaces the profiles; --no-profiles empties them; else the server's default. */
static int set_profiles(struct create *cr, const struct cli_args *a, cell_error *err)
{
	const char *p = cli_opt(a, "profile");
	json_t *list;

	if (!p && !cli_flag(a, "no-profiles"))
		return 0;
	if (!(list = json_array()))
		return cell_err(err, 500, ENOMEM, "out of memory");
	while (p && *p) {
		size_t n = strcspn(p, ",");
		json_array_append_new(list, json_stringn(p, n));
		p += n + (p[n] == ',');
	}
	json_object_set_new(cr->req, "profiles", list);
	return 0;
}

/* -n: a managed network by name, else macvlan (or bridged) on that host interface. */
static int set_network(struct create *cr, const char *net, cell_error *err)
{
	_cleanup_free_ char *path = cli_api_path("networks", net, NULL);
	_cleanup_json_ json_t *info = NULL;
	json_t *dev;
	int rc;

	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_get(cr->dst.c, path, &info, NULL, err)) < 0)
		return cell_err_wrap(err, rc, "Failed loading network \"%s\"", net);
	if (json_is_true(json_object_get(info, "managed")))
		dev = json_pack("{s:s,s:s,s:s}", "name", "eth0", "type", "nic", "network", net);
	else
		dev = json_pack("{s:s,s:s,s:s,s:s}", "name", "eth0", "type", "nic", "nictype",
				strcmp(json_string_value(json_object_get(info, "type")) ?: "", "bridge") ? "macvlan" : "bridged",
				"parent", net);
	return json_object_set_new(json_object_get(cr->req, "devices"), "eth0", dev) ? cell_err(err, 500, ENOMEM, "out of memory") : 0;
}

static int set_storage(struct create *cr, const char *pool, cell_error *err)
{
	_cleanup_free_ char *path = cli_api_path("storage-pools", pool, NULL);
	_cleanup_json_ json_t *info = NULL;
	int rc;

	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_get(cr->dst.c, path, &info, NULL, err)) < 0)
		return cell_err_wrap(err, rc, "Failed loading storage pool \"%s\"", pool);
	json_object_set_new(json_object_get(cr->req, "devices"), "root",
			    json_pack("{s:s,s:s,s:s}", "type", "disk", "path", "/", "pool", pool));
	return 0;
}

/* The devices the server would expand from the profiles (-d on an inherited device). */
static int profile_devices(struct create *cr, json_t *out, cell_error *err)
{
	json_t *profiles = json_object_get(cr->req, "profiles"), *p;
	_cleanup_json_ json_t *dflt = json_pack("[s]", "default");
	size_t i;

	if (!json_array_size(profiles))
		profiles = dflt;
	json_array_foreach(profiles, i, p) {
		_cleanup_free_ char *path = cli_api_path("profiles", json_string_value(p) ?: "", NULL);
		_cleanup_json_ json_t *prof = NULL;
		int rc = path ? cli_get(cr->dst.c, path, &prof, NULL, err) : cell_err(err, 500, ENOMEM, "out of memory");
		if (rc < 0)
			return cell_err_wrap(err, rc, "Failed loading profile \"%s\" for device override", json_string_value(p));
		json_object_update(out, json_object_get(prof, "devices"));
	}
	return 0;
}

static int apply_overrides(struct create *cr, const char *joined, cell_error *err)
{
	_cleanup_json_ json_t *over = json_object();
	_cleanup_json_ json_t *inherited = json_object();
	json_t *devices = json_object_get(cr->req, "devices"), *keys;
	const char *name;
	bool need_profiles = false;
	int rc;

	if (!over || !inherited)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_parse_device_flag(joined, over, err)) < 0)
		return rc;
	json_object_foreach(over, name, keys)
		need_profiles |= !json_object_get(devices, name);
	if (need_profiles && (rc = profile_devices(cr, inherited, err)) < 0)
		return rc;
	json_object_foreach(over, name, keys) {
		json_t *dev = json_object_get(devices, name);
		if (!dev) {
			if (!(dev = json_object_get(inherited, name)))
				return cell_err(err, 404, ENOENT,
						"Cannot override config for device \"%s\": Device not found in profile devices", name);
			json_object_set(devices, name, dev);
		}
		json_object_update(dev, keys);
	}
	return 0;
}

/* ----------------------------------------------------------- the image */

/* An alias names its image's fingerprint; anything else is taken as one (or a prefix). */
static int resolve_image(struct cli_client *c, const char *image, json_t **info, cell_error *err)
{
	_cleanup_free_ char *apath = cli_api_path("images/aliases", image, NULL);
	_cleanup_json_ json_t *alias = NULL;
	_cleanup_free_ char *ipath = NULL;
	cell_error ignored = {0};

	if (!apath)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (cli_get(c, apath, &alias, NULL, &ignored) == 0 && json_string_value(json_object_get(alias, "target")))
		image = json_string_value(json_object_get(alias, "target"));
	if (!(ipath = cli_api_path("images", image, NULL)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	return cli_get(c, ipath, info, NULL, err);
}

/* A private image on another remote needs a one-time secret from it. */
static int image_secret(struct cli_client *c, const char *fp, json_t *source, cell_error *err)
{
	_cleanup_free_ char *path = cli_api_path("images", fp, "/secret");
	_cleanup_cli_resp_ struct cli_resp r = {0};
	json_t *secret;
	int rc;

	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_query(c, "POST", path, NULL, NULL, &r, err)) < 0)
		return rc;
	secret = json_object_get(json_object_get(json_object_get(r.envelope, "metadata"), "metadata"), "secret");
	if (!secret)
		secret = json_object_get(r.metadata, "secret");
	json_object_set_new(source, "secret", json_string(json_string_value(secret) ?: ""));
	return 0;
}

/* The pinned certificate of an HTTPS remote, for the daemon to trust it. */
static void remote_certificate(struct cli_ctx *ctx, const char *remote, json_t *source)
{
	struct cli_conf *conf;
	cell_error ignored = {0};
	_cleanup_free_ char *path = NULL;
	_cleanup_free_ char *pem = NULL;

	if (cli_ctx_conf(ctx, &conf, &ignored) == 0 && (path = cli_conf_server_cert_path(conf, remote)) &&
	    util_read_file(path, &pem, NULL, &ignored) == 0)
		json_object_set_new(source, "certificate", json_string(pem));
}

/* source for an image held by another remote: the daemon pulls it from there. */
static int remote_source(struct cli_ctx *ctx, struct create *cr, json_t *source, const char *alias, cell_error *err)
{
	_cleanup_client_ struct cli_client *ic = NULL;
	_cleanup_json_ json_t *info = NULL;
	struct cli_conf *conf;
	struct cli_remote r;
	const char *fp;
	int rc;

	if ((rc = cli_ctx_conf(ctx, &conf, err)) < 0)
		return rc;
	if (!cli_conf_get_remote(conf, cr->img_remote, &r))
		return cell_err(err, 404, ENOENT, "The remote \"%s\" doesn't exist", cr->img_remote);
	json_object_set_new(source, "mode", json_string("pull"));
	json_object_set_new(source, "server", json_string(r.addr));
	json_object_set_new(source, "protocol", json_string(r.protocol));
	if (!strcmp(r.protocol, "simplestreams")) {   /* the daemon resolves the alias itself */
		json_object_set_new(source, "alias", json_string(cr->image));
		return 0;
	}
	if ((rc = cli_connect(ctx, cr->img_remote, &ic, err)) < 0 || (rc = resolve_image(ic, cr->image, &info, err)) < 0)
		return rc;
	fp = json_string_value(json_object_get(info, "fingerprint")) ?: cr->image;
	remote_certificate(ctx, cr->img_remote, source);
	if (alias && json_is_true(json_object_get(info, "public")))
		json_object_set_new(source, "alias", json_string(alias));
	else
		json_object_set_new(source, "fingerprint", json_string(fp));
	json_object_set_new(cr->req, "type", json_string(json_string_value(json_object_get(info, "type")) ?: "container"));
	return json_is_true(json_object_get(info, "public")) ? 0 : image_secret(ic, fp, source, err);
}

static int set_image(struct cli_ctx *ctx, struct create *cr, const struct cli_args *a, cell_error *err)
{
	json_t *source = json_object_get(cr->req, "source");
	_cleanup_json_ json_t *info = NULL;
	const char *type;
	int rc;

	if (!*cr->image) {
		free(cr->image);
		cr->image = strdup("default");
	}
	if (strcmp(cr->img_remote, cr->dst.remote))
		return remote_source(ctx, cr, source, cr->image, err);
	if ((rc = resolve_image(cr->dst.c, cr->image, &info, err)) < 0)
		return rc;
	type = json_string_value(json_object_get(info, "type")) ?: "container";
	if (cli_flag(a, "vm") && strcmp(type, "virtual-machine"))
		return cell_err(err, 400, EINVAL, "Asked for a VM but image is of type container");
	json_object_set_new(cr->req, "type", json_string(type));
	json_object_set_new(source, "fingerprint", json_string(json_string_value(json_object_get(info, "fingerprint")) ?: cr->image));
	return 0;
}

/* ------------------------------------------------------------- create */

/* Positional arguments: "<image> [<name>]", or with --empty "[<name>]". */
static int parse_names(struct cli_ctx *ctx, struct create *cr, const struct cli_args *a, cell_error *err)
{
	bool empty = cli_flag(a, "empty");
	struct cli_conf *conf;
	int rc;

	if ((rc = cli_ctx_conf(ctx, &conf, err)) < 0)
		return rc;
	if (empty && a->argc > 1)
		return cell_err(err, 400, EINVAL, "--empty cannot be combined with an image name");
	if (empty) {
		cr->img_remote = strdup("");
		cr->image = strdup("");
		if (!cr->img_remote || !cr->image)
			return cell_err(err, 500, ENOMEM, "out of memory");
	} else if ((rc = cli_conf_parse_remote(conf, a->argv[0], &cr->img_remote, &cr->image, err)) < 0) {
		return rc;
	}
	return cli_obj_open(ctx, empty ? (a->argc ? a->argv[0] : NULL) : (a->argc > 1 ? a->argv[1] : NULL), NULL,
			    &cr->dst, err);
}

static int build_request(struct cli_ctx *ctx, struct create *cr, const struct cli_args *a, cell_error *err)
{
	const char *v;
	int rc;

	if ((rc = base_request(cr, a, err)) < 0 || (rc = set_profiles(cr, a, err)) < 0)
		return rc;
	if ((v = cli_opt(a, "network")) && (rc = set_network(cr, v, err)) < 0)
		return rc;
	if ((v = cli_opt(a, "config")) && (rc = cli_parse_config_flag(v, json_object_get(cr->req, "config"), err)) < 0)
		return rc;
	if ((v = cli_opt(a, "storage")) && (rc = set_storage(cr, v, err)) < 0)
		return rc;
	if ((v = cli_opt(a, "device")) && (rc = apply_overrides(cr, v, err)) < 0)
		return rc;
	if (cli_flag(a, "empty"))
		json_object_set_new(json_object_get(cr->req, "source"), "type", json_string("none"));
	else if ((rc = set_image(ctx, cr, a, err)) < 0)
		return rc;
	/* last, where Go's InstanceSource puts it */
	json_object_set_new(json_object_get(cr->req, "source"), "allow_inconsistent", json_false());
	return 0;
}

/* LXD warns when nothing connects the new instance to a network. */
static void check_network(struct create *cr)
{
	_cleanup_free_ char *path = cli_inst_path(cr->dst.name, NULL);
	_cleanup_json_ json_t *inst = NULL;
	cell_error ignored = {0};
	const char *k;
	json_t *dev;

	if (!path || cli_get(cr->dst.c, path, &inst, NULL, &ignored) < 0)
		return;
	json_object_foreach(json_object_get(inst, "expanded_devices"), k, dev)
		if (!strcmp(json_string_value(json_object_get(dev, "type")) ?: "", "nic"))
			return;
	fprintf(stderr, "\nThe instance you are starting doesn't have any network attached to it.\n"
			"  To create a new network, use: cell network create\n"
			"  To attach a network to an instance, use: cell network attach\n\n");
}

/* The name the daemon chose, from the operation's resources. */
static int learn_name(struct create *cr, json_t *op, cell_error *err)
{
	json_t *res = json_object_get(op, "resources");
	json_t *list = json_object_get(res, "instances");
	const char *url;

	if (!json_array_size(list))
		list = json_object_get(res, "containers");
	if (!json_array_size(list))
		return cell_err(err, 500, EPROTO, "Didn't get any affected image, instance or snapshot from server");
	if (*cr->dst.name || json_array_size(list) != 1)
		return 0;
	url = json_string_value(json_array_get(list, 0)) ?: "";
	free(cr->dst.name);
	cr->dst.name = strdup(strrchr(url, '/') ? strrchr(url, '/') + 1 : url);
	if (!cr->dst.name)
		return cell_err(err, 500, ENOMEM, "out of memory");
	printf("Instance name is: %s\n", cr->dst.name);
	return 0;
}

static int create(struct cli_ctx *ctx, struct create *cr, const struct cli_args *a, cell_error *err)
{
	_cleanup_cli_resp_ struct cli_resp r = {0};
	_cleanup_json_ json_t *op = NULL;
	int rc;

	if ((rc = parse_names(ctx, cr, a, err)) < 0)
		return rc;
	if (!ctx->quiet) {
		if (*cr->dst.name)
			printf("Creating %s\n", cr->dst.name);
		else
			printf("Creating the instance\n");
		fflush(stdout);
	}
	if ((rc = build_request(ctx, cr, a, err)) < 0)
		return rc;
	if ((rc = cli_query(cr->dst.c, "POST", "/1.0/instances", cr->req, NULL, &r, err)) < 0)
		return rc;
	if (r.operation && (rc = cli_wait_progress(cr->dst.c, r.operation, "Retrieving image: %s", &op, err)) < 0)
		return rc;
	if ((rc = learn_name(cr, op ? op : r.metadata, err)) < 0)
		return rc;
	check_network(cr);
	return 0;
}

static int run_init(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_create_ struct create cr = {0};

	if (!a->argc && !cli_flag(a, "empty")) {
		cli_print_help(stdout, a->cmd, a->path);
		return 0;
	}
	return create(ctx, &cr, a, err);
}

static int run_launch(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_create_ struct create cr = {0};
	_cleanup_free_ char *path = NULL;
	_cleanup_cli_resp_ struct cli_resp r = {0};
	_cleanup_json_ json_t *body = json_pack("{s:s,s:i,s:b,s:b}", "action", "start", "timeout", -1, "force", false,
						"stateful", false);
	int rc;

	if (!a->argc && !cli_flag(a, "empty"))
		return cli_bad_args(a, err);
	if ((rc = create(ctx, &cr, a, err)) < 0)
		return rc;
	if (!ctx->quiet)
		printf("Starting %s\n", cr.dst.name);
	fflush(stdout);
	if (!body || !(path = cli_inst_path(cr.dst.name, "/state")))
		return cell_err(err, 500, ENOMEM, "out of memory");
	rc = cli_query(cr.dst.c, "PUT", path, body, NULL, &r, err);
	if (rc == 0 && r.operation)
		rc = cli_wait_progress(cr.dst.c, r.operation, "%s", NULL, err);
	if (rc < 0) {
		char msg[CELL_ERR_MSG_MAX];
		snprintf(msg, sizeof(msg), "%s", err->msg);
		return cell_err(err, err->status, EIO, "%s\nTry `cell info --show-log %s:%s` for more info", msg,
				cr.dst.remote, cr.dst.name);
	}
	return 0;
}

/* ------------------------------------------------------------ commands */

#define CREATE_OPTS                                                                                   \
	{ "config", 'c', CLI_OPT_LIST, "Config key/value to apply to the new instance", NULL },      \
	{ "device", 'd', CLI_OPT_LIST, "New key/value to apply to a specific device", NULL },        \
	{ "empty", 0, CLI_OPT_BOOL, "Create an empty instance", NULL },                              \
	{ "ephemeral", 'e', CLI_OPT_BOOL, "Ephemeral instance", NULL },                              \
	{ "network", 'n', CLI_OPT_STRING, "Network name", NULL },                                    \
	{ "no-profiles", 0, CLI_OPT_BOOL, "Create the instance with no profiles applied", NULL },    \
	{ "profile", 'p', CLI_OPT_LIST, "Profile to apply to the new instance", NULL },              \
	{ "storage", 's', CLI_OPT_STRING, "Storage pool name", NULL },                               \
	{ "type", 't', CLI_OPT_STRING, "Instance type", NULL },                                      \
	{ "vm", 0, CLI_OPT_BOOL, "Create a virtual machine", NULL },                                 \
	{ 0 }

static const struct cli_opt create_opts[] = { CREATE_OPTS };

const struct cli_command cli_cmd_init = {
	.name = "init",
	.usage = "[<remote>:]<image> [<remote>:][<name>]",
	.short_help = "Create instances from images",
	.examples = "cell init debian c1\n\n"
		    "cell init debian c1 < config.yaml\n"
		    "    Create the instance with configuration from config.yaml",
	.opts = create_opts,
	.run = run_init,
	.max_args = 2,
};

const struct cli_command cli_cmd_launch = {
	.name = "launch",
	.usage = "[<remote>:]<image> [<remote>:][<name>]",
	.short_help = "Create and start instances from images",
	.examples = "cell launch debian c1\n\n"
		    "cell launch debian c1 < config.yaml\n"
		    "    Create and start a container with configuration from config.yaml\n\n"
		    "cell launch images:debian/12 c1 -p default -c limits.memory=512MiB\n"
		    "    Create and start a container from another remote's image",
	.opts = create_opts,
	.run = run_launch,
	.max_args = 2,
};
