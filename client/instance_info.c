/*
 * cell info [<remote>:]<instance>: state, resources, snapshots (and with
 * --show-log the instance's log), laid out as `lxc info <instance>`.  The
 * `info` command itself is info.c's; this wraps it so that a name on the
 * command line lands here and anything else goes to the server view.
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

extern const struct cli_command cli_cmd_info;

static const char *str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key)) ?: "";
}

static json_int_t num(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* GET ?recursion=1 gives state and snapshots inline; older daemons need the pieces. */
static int fetch_full(struct cli_obj *o, json_t **out, cell_error *err)
{
	_cleanup_free_ char *path = cli_inst_path(o->name, "?recursion=1");
	_cleanup_free_ char *state_path = cli_inst_path(o->name, "/state");
	_cleanup_free_ char *snaps_path = cli_inst_path(o->name, "/snapshots?recursion=1");
	json_t *v = NULL;
	int rc;

	if (!path || !state_path || !snaps_path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_get(o->c, path, out, NULL, err)) < 0)
		return rc;
	if (!json_object_get(*out, "state") && cli_get(o->c, state_path, &v, NULL, err) == 0)
		json_object_set_new(*out, "state", v);
	v = NULL;
	if (!json_object_get(*out, "snapshots") && cli_get(o->c, snaps_path, &v, NULL, err) == 0)
		json_object_set_new(*out, "snapshots", v);
	return 0;
}

static void print_header(json_t *inst)
{
	json_t *st = json_object_get(inst, "state");
	_cleanup_free_ char *status = strdup(str(inst, "status"));
	char when[48];

	for (char *p = status; p && *p; p++)
		*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	printf("Name: %s\n", str(inst, "name"));
	printf("Status: %s\n", status ? status : "");
	printf("Type: %s%s\n", *str(inst, "type") ? str(inst, "type") : "container",
	       json_is_true(json_object_get(inst, "ephemeral")) ? " (ephemeral)" : "");
	printf("Architecture: %s\n", str(inst, "architecture"));
	if (num(st, "pid"))
		printf("PID: %lld\n", (long long)num(st, "pid"));
	if (cli_time_is_set(str(inst, "created_at"))) {
		cli_format_time_local(str(inst, "created_at"), when);
		printf("Created: %s\n", when);
	}
	if (cli_time_is_set(str(inst, "last_used_at"))) {
		cli_format_time_local(str(inst, "last_used_at"), when);
		printf("Last Used: %s\n", when);
	}
}

static void print_size_line(const char *indent, const char *label, json_int_t v)
{
	char buf[32];

	cli_size_iec(v, buf);
	printf("%s%s: %s\n", indent, label, buf);
}

static void print_memory(json_t *mem)
{
	static const struct { const char *key, *label; } rows[] = {
		{ "usage", "Memory (current)" }, { "usage_peak", "Memory (peak)" },
		{ "swap_usage", "Swap (current)" }, { "swap_usage_peak", "Swap (peak)" },
	};
	bool any = false;

	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		any |= num(mem, rows[i].key) != 0;
	if (!any)
		return;
	printf("  Memory usage:\n");
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		if (num(mem, rows[i].key))
			print_size_line("    ", rows[i].label, num(mem, rows[i].key));
}

static void print_interface(const char *name, json_t *net)
{
	json_t *cnt = json_object_get(net, "counters"), *addr;
	_cleanup_free_ char *state = strdup(str(net, "state"));
	char rx[32], tx[32];
	size_t i;

	for (char *p = state; p && *p; p++)
		*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	cli_size_si(num(cnt, "bytes_received"), rx);
	cli_size_si(num(cnt, "bytes_sent"), tx);
	printf("    %s:\n      Type: %s\n      State: %s\n", name, str(net, "type"), state ? state : "");
	if (*str(net, "host_name"))
		printf("      Host interface: %s\n", str(net, "host_name"));
	if (*str(net, "hwaddr"))
		printf("      MAC address: %s\n", str(net, "hwaddr"));
	if (num(net, "mtu"))
		printf("      MTU: %lld\n", (long long)num(net, "mtu"));
	printf("      Bytes received: %s\n      Bytes sent: %s\n", rx, tx);
	printf("      Packets received: %lld\n      Packets sent: %lld\n", (long long)num(cnt, "packets_received"),
	       (long long)num(cnt, "packets_sent"));
	printf("      IP addresses:\n");
	json_array_foreach(json_object_get(net, "addresses"), i, addr)
		printf("        %s:%s%s/%s (%s)\n", str(addr, "family"), strcmp(str(addr, "family"), "inet") ? " " : "  ",
		       str(addr, "address"), str(addr, "netmask"), str(addr, "scope"));
}

/* Shown only while the instance has a process, as LXD does. */
static void print_resources(json_t *st)
{
	json_t *disks = json_object_get(st, "disk"), *d, *net;
	const char *k;
	bool any = false;

	if (!num(st, "pid"))
		return;
	printf("\nResources:\n  Processes: %lld\n", (long long)num(st, "processes"));
	json_object_foreach(disks, k, d)
		any |= num(d, "usage") != 0;
	if (any)
		printf("  Disk usage:\n");
	json_object_foreach(disks, k, d)
		if (num(d, "usage"))
			print_size_line("    ", k, num(d, "usage"));
	if (num(json_object_get(st, "cpu"), "usage"))
		printf("  CPU usage:\n    CPU usage (in seconds): %lld\n",
		       (long long)(num(json_object_get(st, "cpu"), "usage") / 1000000000));
	print_memory(json_object_get(st, "memory"));
	if (json_object_size(json_object_get(st, "network")))
		printf("  Network usage:\n");
	json_object_foreach(json_object_get(st, "network"), k, net)
		print_interface(k, net);
}

static int print_snapshots(json_t *snaps, cell_error *err)
{
	static const char *const header[] = { "NAME", "TAKEN AT", "EXPIRES AT", "STATEFUL" };
	_cleanup_table_ struct cli_table *t = NULL;
	_cleanup_sb_ strbuf out = {0};
	json_t *s;
	size_t i;

	if (!json_array_size(snaps))
		return 0;
	if (!(t = cli_table_new(4, header)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_array_foreach(snaps, i, s) {
		const char *name = str(s, "name"), *slash = strrchr(name, '/');
		char taken[48] = " ", expires[48] = " ";
		const char *row[4] = { slash ? slash + 1 : name, taken, expires,
				       json_is_true(json_object_get(s, "stateful")) ? "YES" : "NO" };
		if (cli_time_is_set(str(s, "created_at")))
			cli_format_time_local(str(s, "created_at"), taken);
		if (cli_time_is_set(str(s, "expires_at")))
			cli_format_time_local(str(s, "expires_at"), expires);
		if (cli_table_add(t, row) < 0)
			return cell_err(err, 500, ENOMEM, "out of memory");
	}
	if (cli_table_render(t, CLI_FMT_TABLE, &out) < 0)
		return cell_err(err, 500, ENOMEM, "out of memory");
	printf("\nSnapshots:\n%s", out.buf);
	return 0;
}

static int print_log(struct cli_obj *o, json_t *inst, cell_error *err)
{
	const char *type = *str(inst, "type") ? str(inst, "type") : "container";
	_cleanup_free_ char *path = NULL;
	_cleanup_httpc_resp_ struct httpc_resp h = {0};
	_cleanup_cli_resp_ struct cli_resp r = {0};
	int rc;

	if (strcmp(type, "container") && strcmp(type, "virtual-machine"))
		return cell_err(err, 400, EINVAL, "Unsupported instance type: %s", type);
	path = cli_inst_path(o->name, strcmp(type, "container") ? "/logs/qemu.log" : "/logs/lxc.log");
	if (!path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = cli_raw(o->c, "GET", path, NULL, NULL, 0, &h, err)) < 0)
		return rc;
	if (h.status != 200) {   /* an error envelope: the daemon's message */
		rc = cli_decode(&h, &r, err);
		return rc < 0 ? rc : cell_err(err, h.status, EIO, "%d %s", h.status, h.reason ? h.reason : "");
	}
	printf("\nLog:\n\n%.*s\n", (int)h.body.len, h.body.buf ? h.body.buf : "");
	return 0;
}

static int instance_info(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_json_ json_t *inst = NULL;
	int rc = cli_obj_open(ctx, a->argv[0], NULL, &o, err);

	if (rc < 0 || (rc = fetch_full(&o, &inst, err)) < 0)
		return rc;
	print_header(inst);
	print_resources(json_object_get(inst, "state"));
	if ((rc = print_snapshots(json_object_get(inst, "snapshots"), err)) < 0)
		return rc;
	return cli_flag(a, "show-log") ? print_log(&o, inst, err) : 0;
}

/* The server view is info.c's: hand it the options it knows, by name. */
static int server_info(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	const struct cli_opt *opts = cli_cmd_info.opts;
	size_t n = 0;

	while (opts && opts[n].name)
		n++;
	_cleanup_free_ char **vals = calloc(n + 1, sizeof(char *));
	struct cli_args sa = *a;

	if (!vals)
		return cell_err(err, 500, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		vals[i] = cli_opt_set(a, opts[i].name) ? (char *)cli_opt(a, opts[i].name) : NULL;
	sa.cmd = &cli_cmd_info;
	sa.vals = vals;
	return cli_cmd_info.run(ctx, &sa, err);
}

static int run_info(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	const char *arg = a->argc ? a->argv[0] : "";
	const char *colon = strchr(arg, ':');

	/* "remote:" or nothing: the server; a name (after any remote): that instance. */
	if (!*arg || (colon && !colon[1]))
		return server_info(ctx, a, err);
	return instance_info(ctx, a, err);
}

static const struct cli_opt info_opts[] = {
	{ "resources", 0, CLI_OPT_BOOL, "Show the resources available to the server", NULL },
	{ "show-log", 0, CLI_OPT_BOOL, "Show the instance's last 100 log lines?", NULL },
	{ 0 },
};

const struct cli_command cli_cmd_instance_info = {
	.name = "info",
	.usage = "[<remote>:][<instance>]",
	.short_help = "Show instance or server information",
	.examples = "cell info [<remote>:]<instance> [--show-log]\n"
		    "    For instance information.\n\n"
		    "cell info [<remote>:] [--resources]\n"
		    "    For cell server information.",
	.opts = info_opts,
	.run = run_info,
	.max_args = 1,
};
