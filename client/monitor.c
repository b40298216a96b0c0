/* cell monitor: follow /1.0/events, printing each event as LXD's client does. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <string.h>
#include <strings.h>

#include "client/api.h"
#include "client/output.h"
#include "common/cleanup.h"
#include "common/strbuf.h"
#include "common/yaml_util.h"

enum mon_format { MON_YAML, MON_JSON, MON_PRETTY };

/* log15's levels, most verbose first; -1 when unknown. */
static int level_rank(const char *lvl)
{
	static const char *const names[][2] = { { "debug", "dbug" }, { "info", "info" }, { "warn", "warning" },
						{ "error", "eror" }, { "crit", "critical" } };

	for (int i = 0; lvl && i < (int)ARRAY_SIZE(names); i++)
		if (!strcasecmp(lvl, names[i][0]) || !strcasecmp(lvl, names[i][1]))
			return i;
	return -1;
}

/* " key=value" for each context entry, logfmt style. */
static void append_context(strbuf *sb, json_t *ctx)
{
	const char *k;
	json_t *v;

	json_object_foreach(ctx, k, v) {
		_cleanup_free_ char *s = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		const char *text = json_is_string(v) ? json_string_value(v) : s ? s : "";
		if (!*text || strpbrk(text, " =\""))
			sb_printf(sb, " %s=\"%s\"", k, text);
		else
			sb_printf(sb, " %s=%s", k, text);
	}
}

static const char *str_of(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

/* The event as one log record: level, message and context, as LXD's
 * api.Event.ToLogging() turns each type into one. */
static void event_record(json_t *ev, const char **lvl, strbuf *msg, json_t **ctx)
{
	const char *type = str_of(ev, "type");
	json_t *md = json_object_get(ev, "metadata");
	static const char *const op_keys[] = { "created_at", "updated_at", "status", "status_code", "resources",
					       "metadata", "may_cancel", "err", "location", NULL };

	*lvl = "info";
	*ctx = NULL;
	if (!strcmp(type, "logging")) {
		*lvl = str_of(md, "level");
		sb_puts(msg, str_of(md, "message"));
		*ctx = json_incref(json_object_get(md, "context"));
	} else if (!strcmp(type, "lifecycle")) {
		sb_printf(msg, "Action: %s, Source: %s", str_of(md, "action"), str_of(md, "source"));
		*ctx = json_incref(json_object_get(md, "context"));
	} else if (!strcmp(type, "operation")) {
		sb_printf(msg, "ID: %s, Class: %s, Description: %s", str_of(md, "id"), str_of(md, "class"),
			  str_of(md, "description"));
		*ctx = json_object();
		for (const char *const *k = op_keys; *ctx && *k; k++)
			if (json_object_get(md, *k))
				json_object_set(*ctx, *k, json_object_get(md, *k));
	} else {
		_cleanup_free_ char *s = json_dumps(md, JSON_COMPACT | JSON_ENCODE_ANY);
		sb_printf(msg, "%s: %s", type, s ? s : "");
	}
}

/* log15's terminal layout: "INFO[03-05|10:20:30] message   key=value". */
static void print_pretty(json_t *ev)
{
	_cleanup_sb_ strbuf msg = {0};
	_cleanup_json_ json_t *ctx = NULL;
	const char *lvl, *ts = str_of(ev, "timestamp");
	char level[5], when[16] = "";
	struct tm tm = {0};

	event_record(ev, &lvl, &msg, &ctx);
	snprintf(level, sizeof(level), "%.4s", !strcasecmp(lvl, "error") ? "eror" : !strcasecmp(lvl, "debug") ? "dbug" : lvl);
	for (char *p = level; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	if (strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm))
		strftime(when, sizeof(when), "%m-%d|%H:%M:%S", &tm);
	printf("%s[%s] %s", level, when, msg.buf ? msg.buf : "");
	if (json_object_size(ctx)) {
		_cleanup_sb_ strbuf kv = {0};
		for (size_t i = msg.len; i < 40; i++)   /* log15 justifies short messages */
			putchar(' ');
		append_context(&kv, ctx);
		fputs(kv.buf ? kv.buf : "", stdout);
	}
	putchar('\n');
}

/* Whether type is in the comma-separated list (empty list: everything). */
static bool type_wanted(const char *types, const char *type)
{
	size_t tl = strlen(type);

	if (!types || !*types)
		return true;
	for (const char *t = types; *t;) {
		size_t n = strcspn(t, ",");
		if (n == tl && !strncmp(t, type, n))
			return true;
		t += n + (t[n] == ',');
	}
	return false;
}

static int print_event(enum mon_format fmt, const char *types, int min_level, const char *text, size_t len,
		       cell_error *err)
{
	_cleanup_json_ json_t *ev = json_loadb(text, len, 0, NULL);
	json_t *md;

	if (!ev)
		return cell_err(err, 502, EPROTO, "bad event from server: %.80s", text);
	/* The server filters by ?type= already; an older one might not. */
	if (!type_wanted(types, str_of(ev, "type")))
		return 0;
	md = json_object_get(ev, "metadata");
	if (fmt == MON_PRETTY) {
		const char *type = json_string_value(json_object_get(ev, "type"));
		int rank = level_rank(json_string_value(json_object_get(md, "level")));
		if (type && !strcmp(type, "logging") && (rank < 0 ? 1 : rank) < min_level)
			return 0;
		print_pretty(ev);
	} else if (fmt == MON_JSON) {
		/* lxc re-decodes events into Go maps: keys come out sorted. */
		_cleanup_free_ char *s = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
		printf("%s\n\n", s ? s : "");
	} else {
		int rc = cli_print_yaml(stdout, ev, YAML_EMIT_SORT_KEYS, err);
		if (rc < 0)
			return rc;
		fputs("\n\n", stdout);
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
		return cell_err(err, 400, EINVAL, "Invalid format: %s", f);
	return 0;
}

static int run_monitor(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *rest = NULL;
	_cleanup_wsc_ wsc *ws = NULL;
	enum mon_format fmt = MON_PRETTY;
	const char *loglevel = cli_opt(a, "loglevel");
	int rc, min_level = loglevel ? level_rank(loglevel) : 0;

	if (min_level < 0)
		return cell_err(err, 400, EINVAL, "Unknown level: %s", loglevel);
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
		rc = print_event(fmt, cli_opt(a, "type"), min_level, m.data.buf ? m.data.buf : "", m.data.len, err);
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
