/* cell monitor: follow /1.0/events, printing each event as LXD's client does. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "client/api.h"
#include "client/output.h"
#include "common/cleanup.h"
#include "common/strbuf.h"

enum mon_format { MON_YAML, MON_JSON, MON_PRETTY };

static int level_rank(const char *lvl)
{
	static const char *const names[] = { "trace", "debug", "info", "warn", "error", "crit" };

	if (lvl && !strcasecmp(lvl, "warning"))
		return 3;
	for (int i = 0; lvl && i < (int)ARRAY_SIZE(names); i++)
		if (!strcasecmp(lvl, names[i]))
			return i;
	return 2;
}

/* " key=value" for each context entry. */
static void append_context(strbuf *sb, json_t *ctx)
{
	const char *k;
	json_t *v;

	json_object_foreach(ctx, k, v) {
		if (json_is_string(v)) {
			sb_printf(sb, " %s=%s", k, json_string_value(v));
		} else {
			_cleanup_free_ char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
			sb_printf(sb, " %s=%s", k, s ? s : "");
		}
	}
}

/* One human line per event: "LEVEL  [time] message  key=value...". */
static void print_pretty(json_t *ev)
{
	_cleanup_sb_ strbuf line = {0};
	const char *type = json_string_value(json_object_get(ev, "type"));
	const char *ts = json_string_value(json_object_get(ev, "timestamp"));
	json_t *md = json_object_get(ev, "metadata");
	const char *lvl = "info";

	if (type && !strcmp(type, "logging")) {
		lvl = json_string_value(json_object_get(md, "level"));
		sb_printf(&line, "%s", json_string_value(json_object_get(md, "message")) ?: "");
		append_context(&line, json_object_get(md, "context"));
	} else if (type && !strcmp(type, "lifecycle")) {
		sb_printf(&line, "Action: %s, Source: %s", json_string_value(json_object_get(md, "action")) ?: "",
			  json_string_value(json_object_get(md, "source")) ?: "");
		append_context(&line, json_object_get(md, "context"));
	} else if (type && !strcmp(type, "operation")) {
		sb_printf(&line, "ID: %s, Class: %s, Description: %s, Status: %s",
			  json_string_value(json_object_get(md, "id")) ?: "",
			  json_string_value(json_object_get(md, "class")) ?: "",
			  json_string_value(json_object_get(md, "description")) ?: "",
			  json_string_value(json_object_get(md, "status")) ?: "");
	} else {
		_cleanup_free_ char *s = json_dumps(md, JSON_COMPACT | JSON_ENCODE_ANY);
		sb_printf(&line, "%s: %s", type ? type : "event", s ? s : "");
	}
	char level[8];
	snprintf(level, sizeof(level), "%.4s", lvl ? lvl : "info");
	for (char *p = level; *p; p++)
		*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	printf("%-4s [%s] %s\n", level, ts ? ts : "", line.buf ? line.buf : "");
}

static int print_event(enum mon_format fmt, int min_level, const char *text, size_t len, cell_error *err)
{
	_cleanup_json_ json_t *ev = json_loadb(text, len, 0, NULL);
	json_t *md;

	if (!ev)
		return cell_err(err, 502, EPROTO, "bad event from server: %.80s", text);
	md = json_object_get(ev, "metadata");
	if (fmt == MON_PRETTY) {
		const char *type = json_string_value(json_object_get(ev, "type"));
		if (type && !strcmp(type, "logging") &&
		    level_rank(json_string_value(json_object_get(md, "level"))) < min_level)
			return 0;
		print_pretty(ev);
	} else if (fmt == MON_JSON) {
		_cleanup_free_ char *s = cli_json_compact(ev);
		printf("%s\n\n", s ? s : "");
	} else {
		int rc = cli_print_yaml(stdout, ev, 0, err);
		if (rc < 0)
			return rc;
		putchar('\n');
	}
	fflush(stdout);   /* consumers read events as they come, often through a pipe */
	return 0;
}

static int parse_format(struct cli_args *a, enum mon_format *fmt, cell_error *err)
{
	const char *f = cli_opt(a, "format");

	if (cli_flag(a, "pretty"))
		f = "pretty";
	if (!strcmp(f, "yaml"))
		*fmt = MON_YAML;
	else if (!strcmp(f, "json"))
		*fmt = MON_JSON;
	else if (!strcmp(f, "pretty"))
		*fmt = MON_PRETTY;
	else
		return cell_err(err, 400, EINVAL, "Invalid format \"%s\"", f);
	return 0;
}

static int run_monitor(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *rest = NULL;
	_cleanup_wsc_ wsc *ws = NULL;
	enum mon_format fmt;
	int rc, min_level = level_rank(cli_opt(a, "loglevel"));

	if (!cli_opt(a, "loglevel"))
		min_level = 0;
	if ((rc = parse_format(a, &fmt, err)) < 0)
		return rc;
	if ((rc = cli_connect_arg(ctx, a->argc ? a->argv[0] : NULL, &c, &rest, err)) < 0)
		return rc;
	if (*rest)
		return cell_err(err, 400, EINVAL, "Filtering isn't supported yet");
	if ((rc = cli_events(c, cli_opt(a, "type"), &ws, err)) < 0)
		return rc;
	for (;;) {
		struct wsc_msg m;
		if ((rc = wsc_recv(ws, &m, err)) < 0)
			return rc;
		if (m.opcode == WSC_CLOSE)
			return 0;
		rc = print_event(fmt, min_level, m.data.buf ? m.data.buf : "", m.data.len, err);
		wsc_msg_free(&m);
		if (rc < 0)
			return rc;
	}
}

static const struct cli_opt monitor_opts[] = {
	{ "format", 'f', CLI_OPT_STRING, "Format (json|pretty|yaml)", "yaml" },
	{ "loglevel", 0, CLI_OPT_STRING, "Minimum level for log messages (only available when using pretty format)", NULL },
	{ "pretty", 0, CLI_OPT_BOOL, "Pretty rendering (short for --format=pretty)", NULL },
	{ "type", 0, CLI_OPT_LIST, "Event type to listen for", NULL },
	{ 0 },
};

const struct cli_command cli_cmd_monitor = {
	.name = "monitor",
	.usage = "[<remote>:]",
	.short_help = "Monitor a local or remote cell server",
	.long_help = "Monitor a local or remote cell server\n\n"
		     "By default the monitor will listen to all message types.",
	.examples = "cell monitor --type=logging\n"
		    "    Only show log messages.\n\n"
		    "cell monitor --pretty --type=logging --loglevel=info\n"
		    "    Show a pretty log of messages with info level or higher.\n\n"
		    "cell monitor --type=lifecycle\n"
		    "    Only show lifecycle events.",
	.opts = monitor_opts,
	.run = run_monitor,
	.max_args = 1,
};
