/*
 * cell list: instances as `lxc list` shows them (columns, filters and
 * formats), from one GET /1.0/instances: recursion=2 (state and snapshots
 * inline) only when a column or filter needs them, recursion=1 otherwise.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/api.h"
#include "client/inst.h"
#include "client/output.h"
#include "common/cleanup.h"
#include "common/util.h"

#define DEFAULT_COLUMNS "ns46tSL"
#define DEFAULT_COLUMNS_ALL_PROJECTS "ens46tSL"

struct column;
typedef char *(*column_fn)(json_t *inst, const struct column *col);

struct column {
	char *name;          /* header */
	column_fn data;
	char *key;           /* custom columns: config key, or "<device>.<key>" */
	bool device;
	long max_width;      /* -1: unlimited */
};

static const char *str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key)) ?: "";
}

static char *upper(const char *s)
{
	char *u = strdup(s);

	for (char *p = u; p && *p; p++)
		*p = (char)toupper((unsigned char)*p);
	return u;
}

/* api.Instance.IsActive(): anything but Stopped (102) and Error (400). */
static bool is_active(json_t *inst)
{
	json_int_t code = json_integer_value(json_object_get(inst, "status_code"));

	if (code)
		return code != 102 && code != 400;
	return strcasecmp(str(inst, "status"), "Stopped") && strcasecmp(str(inst, "status"), "Error");
}

static json_t *state_of(json_t *inst)
{
	json_t *st = json_object_get(inst, "state");

	return is_active(inst) && json_is_object(st) ? st : NULL;
}

/* -------------------------------------------------------------- columns */

static char *col_name(json_t *i, const struct column *c) { return strdup(str(i, "name")); }
static char *col_description(json_t *i, const struct column *c) { return strdup(str(i, "description")); }
static char *col_architecture(json_t *i, const struct column *c) { return strdup(str(i, "architecture")); }
static char *col_project(json_t *i, const struct column *c) { return strdup(str(i, "project")); }
static char *col_location(json_t *i, const struct column *c) { return strdup(str(i, "location")); }
static char *col_status(json_t *i, const struct column *c) { return upper(str(i, "status")); }

static char *col_type(json_t *i, const struct column *c)
{
	_cleanup_free_ char *t = upper(*str(i, "type") ? str(i, "type") : "container");

	if (!t)
		return NULL;
	return json_is_true(json_object_get(i, "ephemeral")) ? xasprintf("%s (EPHEMERAL)", t) : strdup(t);
}

static int cmp_desc(const void *a, const void *b)
{
	return strcmp(*(char *const *)b, *(char *const *)a);
}

static int cmp_asc(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "addr (iface)" for global addresses of one family, newest-first as LXD sorts (reverse). */
static char *ip_column(json_t *inst, const char *family)
{
	json_t *st = state_of(inst), *net, *addr;
	const char *ifname;
	_cleanup_strv_ char **ips = NULL;
	size_t n = 0, cap = 0, i;
	strbuf out = {0};

	json_object_foreach(json_object_get(st, "network"), ifname, net) {
		if (!strcmp(str(net, "type"), "loopback"))
			continue;
		json_array_foreach(json_object_get(net, "addresses"), i, addr) {
			const char *scope = str(addr, "scope");
			if (!strcmp(scope, "link") || !strcmp(scope, "local") || strcmp(str(addr, "family"), family))
				continue;
			if (n + 2 > cap) {
				char **nv = realloc(ips, (cap = cap ? cap * 2 : 8) * sizeof(*ips));
				if (!nv)
					return NULL;
				ips = nv;
			}
			ips[n++] = xasprintf("%s (%s)", str(addr, "address"), ifname);
			ips[n] = NULL;
		}
	}
	if (n)
		qsort(ips, n, sizeof(*ips), cmp_desc);
	for (i = 0; i < n; i++)
		if (sb_printf(&out, "%s%s", i ? "\n" : "", ips[i]) < 0)
			return sb_free(&out), NULL;
	return out.buf ? sb_steal(&out) : strdup("");
}

static char *col_ipv4(json_t *i, const struct column *c) { return ip_column(i, "inet"); }
static char *col_ipv6(json_t *i, const struct column *c) { return ip_column(i, "inet6"); }

static char *col_snapshots(json_t *i, const struct column *c)
{
	return xasprintf("%zu", json_array_size(json_object_get(i, "snapshots")));
}

static char *col_pid(json_t *i, const struct column *c)
{
	json_t *st = state_of(i);

	return st ? xasprintf("%lld", (long long)json_integer_value(json_object_get(st, "pid"))) : strdup("");
}

static char *col_processes(json_t *i, const struct column *c)
{
	json_t *st = state_of(i);

	return st ? xasprintf("%lld", (long long)json_integer_value(json_object_get(st, "processes"))) : strdup("");
}

static json_int_t memory_usage(json_t *i)
{
	return json_integer_value(json_object_get(json_object_get(state_of(i), "memory"), "usage"));
}

static char *col_memory(json_t *i, const struct column *c)
{
	char buf[32];

	if (memory_usage(i) <= 0)
		return strdup("");
	cli_size_iec(memory_usage(i), buf);
	return strdup(buf);
}

static char *col_memory_pct(json_t *i, const struct column *c)
{
	const char *limit = str(json_object_get(i, "expanded_config"), "limits.memory");
	int64_t bytes;

	if (memory_usage(i) <= 0 || !*limit || strchr(limit, '%') || !cli_parse_size(limit, &bytes) || bytes <= 0)
		return strdup("");
	return xasprintf("%.1f%%", (double)memory_usage(i) / (double)bytes * 100.0);
}

static char *col_cpu(json_t *i, const struct column *c)
{
	json_int_t ns = json_integer_value(json_object_get(json_object_get(state_of(i), "cpu"), "usage"));

	return ns > 0 ? xasprintf("%llds", (long long)(ns / 1000000000)) : strdup("");
}

/* LXD's GetRootDiskDevice: the disk at "/" without a source. */
static const char *root_disk(json_t *inst, json_t **dev_out)
{
	const char *name;
	json_t *dev;

	json_object_foreach(json_object_get(inst, "expanded_devices"), name, dev) {
		if (!strcmp(str(dev, "type"), "disk") && !strcmp(str(dev, "path"), "/") && !*str(dev, "source")) {
			if (dev_out)
				*dev_out = dev;
			return name;
		}
	}
	return NULL;
}

static char *col_disk(json_t *i, const struct column *c)
{
	const char *root = root_disk(i, NULL);
	json_t *st = json_object_get(i, "state");
	json_int_t used = root ? json_integer_value(json_object_get(json_object_get(json_object_get(st, "disk"), root), "usage")) : 0;
	char buf[32];

	if (used <= 0)
		return strdup("");
	cli_size_iec(used, buf);
	return strdup(buf);
}

static char *col_pool(json_t *i, const struct column *c)
{
	const char *name;
	json_t *dev;

	json_object_foreach(json_object_get(i, "expanded_devices"), name, dev)
		if (!strcmp(str(dev, "type"), "disk") && !strcmp(str(dev, "path"), "/"))
			return strdup(str(dev, "pool"));
	return strdup("");
}

static char *col_profiles(json_t *i, const struct column *c)
{
	strbuf out = {0};
	json_t *p;
	size_t k;

	json_array_foreach(json_object_get(i, "profiles"), k, p)
		if (sb_printf(&out, "%s%s", k ? "\n" : "", json_string_value(p) ?: "") < 0)
			return sb_free(&out), NULL;
	return out.buf ? sb_steal(&out) : strdup("");
}

static char *time_column(json_t *i, const char *key)
{
	char buf[32];

	if (!cli_time_is_set(str(i, key)))
		return strdup("");
	cli_format_time_utc(str(i, key), buf);
	return strdup(buf);
}

static char *col_created(json_t *i, const struct column *c) { return time_column(i, "created_at"); }
static char *col_last_used(json_t *i, const struct column *c) { return time_column(i, "last_used_at"); }

static const char *base_image(json_t *i)
{
	return str(json_object_get(i, "config"), "volatile.base_image");
}

static char *col_base_image(json_t *i, const struct column *c) { return strndup(base_image(i), 12); }
static char *col_base_image_full(json_t *i, const struct column *c) { return strdup(base_image(i)); }

/* A config or device key: the instance's own value, else the expanded one, cut to max_width bytes. */
static char *col_custom(json_t *i, const struct column *c)
{
	const char *v;

	if (c->device) {
		const char *dot = strchr(c->key, '.');
		_cleanup_free_ char *dev = dot ? strndup(c->key, (size_t)(dot - c->key)) : NULL;
		json_t *own;
		if (!dev || strchr(dot + 1, '.'))
			return strdup("");
		own = json_object_get(json_object_get(json_object_get(i, "devices"), dev), dot + 1);
		v = own ? json_string_value(own) ?: ""
			: str(json_object_get(json_object_get(i, "expanded_devices"), dev), dot + 1);
	} else {
		json_t *own = json_object_get(json_object_get(i, "config"), c->key);
		v = own ? json_string_value(own) ?: "" : str(json_object_get(i, "expanded_config"), c->key);
	}
	if (c->max_width > 0 && strlen(v) > (size_t)c->max_width)
		return strndup(v, (size_t)c->max_width);
	return strdup(v);
}

struct shorthand {
	char ch;
	const char *name;
	column_fn data;
	bool needs_state, needs_snapshots;
};

static const struct shorthand shorthands[] = {
	{ '4', "IPV4", col_ipv4, true, false },
	{ '6', "IPV6", col_ipv6, true, false },
	{ 'a', "ARCHITECTURE", col_architecture, false, false },
	{ 'b', "STORAGE POOL", col_pool, false, false },
	{ 'c', "CREATED AT", col_created, false, false },
	{ 'd', "DESCRIPTION", col_description, false, false },
	{ 'D', "DISK USAGE", col_disk, true, false },
	{ 'e', "PROJECT", col_project, false, false },
	{ 'f', "BASE IMAGE", col_base_image, false, false },
	{ 'F', "BASE IMAGE", col_base_image_full, false, false },
	{ 'l', "LAST USED AT", col_last_used, false, false },
	{ 'L', "LOCATION", col_location, false, false },
	{ 'm', "MEMORY USAGE", col_memory, true, false },
	{ 'M', "MEMORY USAGE%", col_memory_pct, true, false },
	{ 'n', "NAME", col_name, false, false },
	{ 'N', "PROCESSES", col_processes, true, false },
	{ 'p', "PID", col_pid, true, false },
	{ 'P', "PROFILES", col_profiles, false, false },
	{ 'S', "SNAPSHOTS", col_snapshots, false, true },
	{ 's', "STATE", col_status, false, false },
	{ 't', "TYPE", col_type, false, false },
	{ 'u', "CPU USAGE", col_cpu, true, false },
};

/* ----------------------------------------------------- column parsing */

struct columns {
	struct column *v;
	size_t n;
	bool needs_data;
};

static void columns_free(struct columns *cs)
{
	for (size_t i = 0; i < cs->n; i++) {
		free(cs->v[i].name);
		free(cs->v[i].key);
	}
	free(cs->v);
}

static struct column *columns_push(struct columns *cs)
{
	struct column *nv = realloc(cs->v, (cs->n + 1) * sizeof(*nv));

	if (!nv)
		return NULL;
	cs->v = nv;
	memset(&nv[cs->n], 0, sizeof(*nv));
	return &nv[cs->n++];
}

static int add_shorthands(struct columns *cs, const char *entry, cell_error *err)
{
	for (const char *p = entry; *p; p++) {
		const struct shorthand *s = NULL;
		struct column *c;

		for (size_t i = 0; i < ARRAY_SIZE(shorthands) && !s; i++)
			if (shorthands[i].ch == *p)
				s = &shorthands[i];
		if (!s)
			return cell_err(err, 400, EINVAL, "Unknown column shorthand char '%c' in '%s'", *p, entry);
		if (!(c = columns_push(cs)) || !(c->name = strdup(s->name)))
			return cell_err(err, 500, ENOMEM, "out of memory");
		c->data = s->data;
		cs->needs_data |= s->needs_state || s->needs_snapshots;
	}
	return 0;
}

/* tablewriter's Title(), which LXD's tables apply to every header:
 * '_' and '.' (unless inside a number) become spaces, then upper case. */
static char *title(const char *name)
{
	_cleanup_free_ char *t = strdup(name);
	size_t len = t ? strlen(t) : 0, lead;

	if (!t)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		bool num_before = i && (isdigit((unsigned char)name[i - 1]) || name[i - 1] == ' ');
		bool num_after = i + 1 < len && (isdigit((unsigned char)name[i + 1]) || name[i + 1] == ' ');
		if (t[i] == '_' || (t[i] == '.' && ((i && !num_before) || (i + 1 < len && !num_after))))
			t[i] = ' ';
		t[i] = (char)toupper((unsigned char)t[i]);
	}
	while (len && t[len - 1] == ' ')
		t[--len] = '\0';
	lead = strspn(t, " ");
	/* As tablewriter: a header that was not empty keeps at least one character. */
	return strdup(!t[lead] && *name ? " " : t + lead);
}

/* "[config:|devices:]key[:name][:maxWidth]". */
static int add_custom(struct columns *cs, const char *entry, cell_error *err)
{
	_cleanup_free_ char *copy = strdup(entry);
	char *f[4] = { 0 }, *p = copy;
	bool device = false;
	int n = 0;
	struct column *c;

	if (!copy)
		return cell_err(err, 500, ENOMEM, "out of memory");
	while (p && n < 4) {
		f[n++] = p;
		if ((p = strchr(p, ':')))
			*p++ = '\0';
	}
	if (n > 1 && (!strcmp(f[0], "config") || !strcmp(f[0], "devices"))) {
		device = !strcmp(f[0], "devices");
		memmove(f, f + 1, sizeof(f) - sizeof(*f));
		f[3] = NULL;
		n--;
	}
	if (p || n > 3)
		return cell_err(err, 400, EINVAL, "Invalid config key column format (too many fields): '%s'", entry);
	if (n > 1 && !*f[1] && n != 3)
		return cell_err(err, 400, EINVAL, "Invalid name in '%s', empty string is only allowed when defining maxWidth", entry);
	if (!(c = columns_push(cs)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	c->data = col_custom;
	c->device = device;
	c->max_width = -1;
	c->key = strdup(f[0]);
	c->name = title(n > 1 ? f[1] : f[0]);
	if (!c->key || !c->name)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (n == 3) {
		char *end;
		long w = strtol(f[2], &end, 10);
		if (!*f[2] || *end)
			return cell_err(err, 400, EINVAL, "Invalid max width (must be an integer) '%s' in '%s'", f[2], entry);
		if (w < -1)
			return cell_err(err, 400, EINVAL, "Invalid max width (must -1, 0 or a positive integer) '%s' in '%s'", f[2], entry);
		c->max_width = w == 0 ? (long)strlen(c->name) : w;
	}
	return 0;
}

/* The -c value after --fast and --all-projects are applied, as LXD resolves it. */
static int effective_columns(const struct cli_args *a, char **out, cell_error *err)
{
	const char *cols = cli_opt(a, "columns");
	bool is_default = !cli_opt_set(a, "columns");
	bool all = cli_flag(a, "all-projects");
	char *s;

	if (cli_flag(a, "fast")) {
		if (!is_default)
			return cell_err(err, 400, EINVAL, "Can't specify --fast with --columns");
		cols = all ? "ensacPt" : "nsacPt";
	} else if (is_default && all) {
		cols = DEFAULT_COLUMNS_ALL_PROJECTS;
	}
	if (!(s = strdup(cols)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	/* Not clustered: the default layout drops LOCATION (an explicit L keeps it). */
	if (is_default) {
		char *w = s;
		for (char *r = s; *r; r++)
			if (*r != 'L')
				*w++ = *r;
		*w = '\0';
	}
	*out = s;
	return 0;
}

static int parse_columns(const struct cli_args *a, struct columns *cs, cell_error *err)
{
	_cleanup_free_ char *cols = NULL;
	int rc = effective_columns(a, &cols, err);

	for (char *p = cols; rc == 0 && p;) {
		char *comma = strchr(p, ',');
		if (comma)
			*comma = '\0';
		if (!*p)
			return cell_err(err, 400, EINVAL, "Empty column entry (redundant, leading or trailing command) in '%s'",
					cli_opt(a, "columns"));
		/* Config keys always contain a dot; anything else is a run of shorthand chars. */
		rc = strchr(p, '.') ? add_custom(cs, p, err) : add_shorthands(cs, p, err);
		p = comma ? comma + 1 : NULL;
	}
	return rc;
}

/* -------------------------------------------------------------- filters */

/* Go's regexp.MatchString on an anchored-unless-anchored pattern; -1: not a valid regex. */
static int regex_match(const char *pattern, const char *s)
{
	bool anchored = strchr(pattern, '^') || strchr(pattern, '$');
	_cleanup_free_ char *re = anchored ? strdup(pattern) : xasprintf("^%s$", pattern);
	regex_t r;
	int m;

	if (!re || regcomp(&r, re, REG_EXTENDED | REG_NOSUB))
		return -1;
	m = regexec(&r, s, 0, NULL, 0) == 0;
	regfree(&r);
	return m;
}

/* "s.privileged" matches "security.privileged": each dotted part a prefix. */
static bool dot_prefix_match(const char *shrt, const char *full)
{
	while (*shrt || *full) {
		size_t ls = strcspn(shrt, "."), lf = strcspn(full, ".");
		if (ls > lf || strncmp(shrt, full, ls))
			return false;
		shrt += ls;
		full += lf;
		if ((*shrt == '.') != (*full == '.'))
			return false;
		shrt += *shrt == '.';
		full += *full == '.';
	}
	return true;
}

/* addr equals query, or lies in query read as a CIDR. */
static bool ip_matches(const char *addr, const char *query)
{
	unsigned char a[16], net[16];
	const char *slash = strchr(query, '/');
	_cleanup_free_ char *base = slash ? strndup(query, (size_t)(slash - query)) : NULL;
	int fam = strchr(addr, ':') ? AF_INET6 : AF_INET, len = fam == AF_INET6 ? 16 : 4, bits;

	if (!strcmp(addr, query))
		return true;
	if (!base || inet_pton(fam, addr, a) != 1 || inet_pton(fam, base, net) != 1)
		return false;
	bits = atoi(slash + 1);
	if (bits < 0 || bits > len * 8)
		return false;
	for (int i = 0; i < len && bits > 0; i++, bits -= 8) {
		unsigned char mask = (unsigned char)(bits >= 8 ? 0xff : 0xff << (8 - bits));
		if ((a[i] & mask) != (net[i] & mask))
			return false;
	}
	return true;
}

static bool net_matches(json_t *inst, const char *query, const char *family)
{
	json_t *net, *addr;
	const char *ifname;
	size_t i;

	json_object_foreach(json_object_get(json_object_get(inst, "state"), "network"), ifname, net)
		json_array_foreach(json_object_get(net, "addresses"), i, addr)
			if (!strcmp(str(addr, "family"), family) && ip_matches(str(addr, "address"), query))
				return true;
	return false;
}

/* LXD's shorthand filters (type=, status=, ...); -1 when key is not one. */
static int shorthand_match(json_t *inst, const char *key, const char *value)
{
	static const char *const fields[] = { "type", "status", "architecture", "location" };
	bool any = false;

	for (size_t f = 0; f < ARRAY_SIZE(fields); f++) {
		if (strcasecmp(key, fields[f]))
			continue;
		for (const char *v = value; !any;) {   /* "a,b": any of them */
			size_t n = strcspn(v, ",");
			any = strlen(str(inst, fields[f])) == n && !strncasecmp(str(inst, fields[f]), v, n);
			if (!v[n])
				break;
			v += n + 1;
		}
		return any;
	}
	if (strcasecmp(key, "ipv4") && strcasecmp(key, "ipv6"))
		return -1;
	for (const char *v = value; !any;) {
		size_t n = strcspn(v, ",");
		_cleanup_free_ char *one = strndup(v, n);
		any = one && net_matches(inst, one, strcasecmp(key, "ipv4") ? "inet6" : "inet");
		if (!v[n])
			break;
		v += n + 1;
	}
	return any;
}

/* key=value on the expanded config, as LXD's shouldShow. */
static bool config_matches(json_t *inst, const char *key, const char *value)
{
	json_t *cfg = json_object_get(inst, "expanded_config"), *v;
	const char *k;
	bool found = false;

	json_object_foreach(cfg, k, v) {
		int m;
		if (!dot_prefix_match(key, k))
			continue;
		m = regex_match(value, json_string_value(v) ?: "");
		if (m < 0) {
			if (strcmp(value, json_string_value(v) ?: ""))
				return false;
			found = true;
			break;
		}
		if (m) {
			found = true;
			break;
		}
	}
	return found || !strcmp(str(cfg, key), value);
}

static bool should_show(json_t *inst, char **filters, int n)
{
	for (int i = 0; i < n; i++) {
		const char *f = filters[i], *eq = strchr(f, '=');

		if (eq) {
			_cleanup_free_ char *key = strndup(f, (size_t)(eq - f));
			if (key && shorthand_match(inst, key, eq + 1) > 0)
				continue;
			if (!key || !config_matches(inst, key, eq + 1))
				return false;
		} else if (regex_match(f, str(inst, "name")) <= 0 && !str_has_prefix(str(inst, "name"), f)) {
			return false;
		}
	}
	return true;
}

static bool filters_need_state(char **filters, int n)
{
	for (int i = 0; i < n; i++)
		if (!strncasecmp(filters[i], "ipv4=", 5) || !strncasecmp(filters[i], "ipv6=", 5))
			return true;
	return false;
}

/* ----------------------------------------------------------------- run */

static int add_row(struct cli_table *t, const struct columns *cs, json_t *inst)
{
	_cleanup_strv_ char **cells = calloc(cs->n + 1, sizeof(char *));

	if (!cells)
		return -ENOMEM;
	for (size_t c = 0; c < cs->n; c++)
		if (!(cells[c] = cs->v[c].data(inst, &cs->v[c])))
			return -ENOMEM;
	return cli_table_add(t, (const char *const *)cells);
}

/* A shallow copy with the keys sorted (Go's map order) and the values untouched. */
static json_t *sorted_keys(json_t *obj)
{
	size_t n = json_object_size(obj), i = 0;
	_cleanup_free_ const char **keys = calloc(n + 1, sizeof(*keys));
	json_t *out = json_object(), *v;
	const char *k;

	if (!keys || !out)
		return json_decref(out), json_incref(obj);
	json_object_foreach(obj, k, v)
		keys[i++] = k;
	qsort(keys, n, sizeof(*keys), cmp_asc);
	for (i = 0; i < n; i++)
		json_object_set(out, keys[i], json_object_get(obj, keys[i]));
	return out;
}

/* Reorder in place as Go re-encodes an InstanceFull: maps sorted, and
 * backups, state, snapshots last (null when not fetched). */
static void go_order(json_t *inst)
{
	static const char *const maps[] = { "config", "devices", "expanded_config", "expanded_devices", NULL };
	static const char *const tail[] = { "backups", "state", "snapshots", NULL };
	json_t *st;

	for (const char *const *k = maps; *k; k++)
		if (json_is_object(json_object_get(inst, *k)))
			json_object_set_new(inst, *k, cli_json_sorted(json_object_get(inst, *k)));
	for (const char *const *k = tail; *k; k++) {
		json_t *v = json_incref(json_object_get(inst, *k));
		json_object_del(inst, *k);
		json_object_set_new(inst, *k, v ? v : json_null());
	}
	st = json_object_get(inst, "state");
	for (const char *const *k = (const char *const[]){ "disk", "network", NULL }; json_is_object(st) && *k; k++)
		if (json_is_object(json_object_get(st, *k)))
			json_object_set_new(st, *k, sorted_keys(json_object_get(st, *k)));
}

/* Show what matches; the raw list (json/yaml) holds the same instances. */
static int render(const struct columns *cs, json_t *all, char **filters, int nf, enum cli_format fmt, cell_error *err)
{
	_cleanup_free_ const char **header = calloc(cs->n + 1, sizeof(char *));
	_cleanup_table_ struct cli_table *t = NULL;
	_cleanup_json_ json_t *shown = json_array();
	json_t *inst;
	size_t i;

	if (!header || !shown)
		return cell_err(err, 500, ENOMEM, "out of memory");
	for (i = 0; i < cs->n; i++)
		header[i] = cs->v[i].name;
	if (!(t = cli_table_new(cs->n, header)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_array_foreach(all, i, inst) {
		if (!should_show(inst, filters, nf))
			continue;
		go_order(inst);
		if (json_array_append(shown, inst) || add_row(t, cs, inst) < 0)
			return cell_err(err, 500, ENOMEM, "out of memory");
	}
	cli_table_sort(t);
	return cli_render_list(stdout, fmt, t, shown, err);
}

/* "[<remote>:] [<filter>...]": a first word with ':' and no '=' names the remote (and maybe a name filter). */
static int split_args(struct cli_ctx *ctx, struct cli_args *a, struct cli_obj *o, char ***filters, int *nf,
		      cell_error *err)
{
	const char *first = a->argc ? a->argv[0] : NULL;
	bool remote_first = first && strchr(first, ':') && !strchr(first, '=');
	int rc = cli_obj_open(ctx, remote_first ? first : NULL, NULL, o, err);

	if (rc < 0)
		return rc;
	*filters = calloc((size_t)a->argc + 1, sizeof(char *));
	if (!*filters)
		return cell_err(err, 500, ENOMEM, "out of memory");
	*nf = 0;
	for (int i = remote_first ? 1 : 0; i < a->argc; i++)
		(*filters)[(*nf)++] = a->argv[i];
	if (remote_first && *o->name)
		(*filters)[(*nf)++] = o->name;
	return 0;
}

static int run_list(struct cli_ctx *ctx, struct cli_args *a, cell_error *err)
{
	_cleanup_obj_ struct cli_obj o = {0};
	_cleanup_free_ char **filters = NULL;
	_cleanup_json_ json_t *list = NULL;
	struct columns cs = {0};
	enum cli_format fmt;
	bool full, all = cli_flag(a, "all-projects");
	char path[64];
	int nf = 0, rc;

	if (ctx->project && all)
		return cell_err(err, 400, EINVAL, "Can't specify --project with --all-projects");
	if ((rc = cli_format_parse(cli_opt(a, "format"), &fmt, err)) < 0)
		return rc;
	if ((rc = parse_columns(a, &cs, err)) == 0 && (rc = split_args(ctx, a, &o, &filters, &nf, err)) == 0) {
		full = cs.needs_data || filters_need_state(filters, nf);
		snprintf(path, sizeof(path), "/1.0/instances?recursion=%d%s", full ? 2 : 1, all ? "&all-projects=true" : "");
		if ((rc = cli_get(o.c, path, &list, NULL, err)) == 0)
			rc = render(&cs, list, filters, nf, fmt, err);
	}
	columns_free(&cs);
	return rc;
}

static const struct cli_opt list_opts[] = {
	{ "all-projects", 0, CLI_OPT_BOOL, "Display instances from all projects", NULL },
	{ "columns", 'c', CLI_OPT_STRING, "Columns", DEFAULT_COLUMNS },
	{ "fast", 0, CLI_OPT_BOOL, "Fast mode (same as --columns=nsacPt)", NULL },
	{ "format", 'f', CLI_OPT_STRING, "Format (csv|json|table|yaml|compact)", "table" },
	{ 0 },
};

static const char list_help[] =
	"List instances\n\n"
	"Default column layout: ns46tS\n"
	"Fast column layout: nsacPt\n\n"
	"A single keyword like \"web\" which will list any instance with a name starting by \"web\".\n"
	"A regular expression on the instance name. (e.g. .*web.*01$).\n"
	"A key/value pair referring to a configuration item. For those, the\n"
	"namespace can be abbreviated to the smallest unambiguous identifier.\n"
	"A key/value pair where the key is a shorthand. Multiple values must be delimited by ','. Available shorthands:\n"
	"  - type={instance type}\n"
	"  - status={instance current lifecycle status}\n"
	"  - architecture={instance architecture}\n"
	"  - location={location name}\n"
	"  - ipv4={ip or CIDR}\n"
	"  - ipv6={ip or CIDR}\n\n"
	"Examples:\n"
	"  - \"user.blah=abc\" will list all instances with the \"blah\" user property set to \"abc\".\n"
	"  - \"u.blah=abc\" will do the same\n"
	"  - \"security.privileged=true\" will list all privileged instances\n"
	"  - \"s.privileged=true\" will do the same\n"
	"  - \"type=container\" will list all container instances\n"
	"  - \"type=container status=running\" will list all running container instances\n\n"
	"A regular expression matching a configuration item or its value. (e.g. volatile.eth0.hwaddr=00:16:3e:.*).\n\n"
	"When multiple filters are passed, they are added one on top of the other,\n"
	"selecting instances which satisfy them all.\n\n"
	"== Columns ==\n"
	"The -c option takes a comma separated list of arguments that control\n"
	"which instance attributes to output when displaying in table or csv\n"
	"format.\n\n"
	"Column arguments are either pre-defined shorthand chars (see below),\n"
	"or (extended) config keys.\n\n"
	"Commas between consecutive shorthand chars are optional.\n\n"
	"Pre-defined column shorthand chars:\n"
	"  4 - IPv4 address\n"
	"  6 - IPv6 address\n"
	"  a - Architecture\n"
	"  b - Storage pool\n"
	"  c - Creation date\n"
	"  d - Description\n"
	"  D - disk usage\n"
	"  e - Project name\n"
	"  l - Last used date\n"
	"  m - Memory usage\n"
	"  M - Memory usage (%)\n"
	"  n - Name\n"
	"  N - Number of Processes\n"
	"  p - PID of the instance's init process\n"
	"  P - Profiles\n"
	"  s - State\n"
	"  S - Number of snapshots\n"
	"  t - Type (persistent or ephemeral)\n"
	"  u - CPU usage (in seconds)\n"
	"  L - Location of the instance (e.g. its cluster member)\n"
	"  f - Base Image Fingerprint (short)\n"
	"  F - Base Image Fingerprint (long)\n\n"
	"Custom columns are defined with \"[config:|devices:]key[:name][:maxWidth]\":\n"
	"  KEY: The (extended) config or devices key to display. If [config:|devices:] is omitted then it defaults to config key.\n"
	"  NAME: Name to display in the column header.\n"
	"  Defaults to the key if not specified or empty.\n\n"
	"  MAXWIDTH: Max width of the column (longer results are truncated).\n"
	"  Defaults to -1 (unlimited). Use 0 to limit to the column header size.";

const struct cli_command cli_cmd_list = {
	.name = "list",
	.aliases = "ls",
	.usage = "[<remote>:] [<filter>...]",
	.short_help = "List instances",
	.long_help = list_help,
	.examples = "cell list -c nFs46,volatile.eth0.hwaddr:MAC,config:image.os,devices:eth0.parent:ETHP\n"
		    "  Show instances using the \"NAME\", \"BASE IMAGE\", \"STATE\", \"IPV4\", \"IPV6\" and \"MAC\" columns.\n"
		    "  \"BASE IMAGE\", \"MAC\" and \"IMAGE OS\" are custom columns generated from instance configuration keys.\n"
		    "  \"ETHP\" is a custom column generated from a device key.\n\n"
		    "cell list -c ns,user.comment:comment\n"
		    "  List instances with their running state and user comment.",
	.opts = list_opts,
	.run = run_list,
	.max_args = -1,
};
