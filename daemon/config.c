#include "daemon/config.h"
#include "daemon/server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/passwd.h"
#include "common/util.h"
#include "daemon/db.h"

enum config_type { CONFIG_STRING, CONFIG_INT, CONFIG_BOOL };

enum config_flags {
	/* Stored as passwd_hash(value), shown as `true`, never returned. */
	CONFIG_SECRET = 1 << 0,
};

/* Validators see a non-empty value already checked against the type; they
 * fill `why` (LXD's reason text) and return false to reject it. */
typedef bool (*config_check_fn)(const char *value, char *why, size_t whylen);

struct config_key {
	const char *name;
	enum config_type type;
	const char *def;
	config_check_fn check;
	unsigned flags;
};

static bool check_listen_address(const char *v, char *why, size_t n);
static bool check_non_negative(const char *v, char *why, size_t n);

static const struct config_key config_keys[] = {
	{ "core.https_address", CONFIG_STRING, "", check_listen_address, 0 },
	{ "core.trust_password", CONFIG_STRING, "", NULL, CONFIG_SECRET },
	{ "images.auto_update_interval", CONFIG_INT, "6", check_non_negative, 0 },
	{ "images.remote_cache_expiry", CONFIG_INT, "10", check_non_negative, 0 },
};

struct config_watch {
	char *key;   /* NULL: every key */
	config_change_fn cb;
	void *data;
};

/* Set (non-default) values: key -> string; secrets hold their hash. */
static json_t *cfg_values;
/* Guards cfg_values for readers off the loop; the loop is the only writer. */
static pthread_mutex_t cfg_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct config_watch *cfg_watches;
static size_t cfg_nwatches;

static const struct config_key *config_key_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++)
		if (!strcmp(config_keys[i].name, name))
			return &config_keys[i];
	return NULL;
}

/* Free-form keys for users' own notes, accepted as LXD does. */
static bool config_is_user_key(const char *name)
{
	return str_has_prefix(name, "user.") && name[5];
}

bool config_key_known(const char *key)
{
	return key && (config_key_find(key) || config_is_user_key(key));
}

/* ---- validation --------------------------------------------------------- */

static bool parse_int(const char *v, long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(v, &end, 10);
	return *v && !*end && errno == 0 && !isspace((unsigned char)*v);
}

static bool check_non_negative(const char *v, char *why, size_t n)
{
	long long x;

	if (parse_int(v, &x) && x >= 0)
		return true;
	snprintf(why, n, "Value must be a non-negative integer");
	return false;
}

static bool dns_name_ok(const char *h)
{
	size_t len = strlen(h), label = 0;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char c = h[i];
		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63 || h[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)c) && c != '-')
			return false;
		if (label == 0 && c == '-')
			return false;
		label++;
	}
	return true;
}

/* A name made of digits and dots is meant as IPv4 and must be one. */
static bool host_name_ok(const char *h)
{
	struct in_addr a4;

	if (strspn(h, "0123456789.") == strlen(h))
		return inet_pton(AF_INET, h, &a4) == 1;
	return dns_name_ok(h);
}

static bool port_ok(const char *p, int *port)
{
	long long x;

	if (!parse_int(p, &x) || x < 1 || x > 65535 || *p == '+' || *p == '-')
		return false;
	*port = (int)x;
	return true;
}

int config_split_address(const char *value, char *host, size_t hostlen, int *port,
			 cell_error *err)
{
	const char *h = value, *p = NULL, *colon = strchr(value, ':');
	size_t hl;
	struct in6_addr a6;
	char tmp[256];

	*port = CONFIG_HTTPS_DEFAULT_PORT;
	if (*value == '[') {
		const char *close = strchr(value, ']');
		if (!close || (close[1] && close[1] != ':'))
			return cell_err(err, 400, EINVAL, "Invalid address \"%s\"", value);
		h = value + 1;
		hl = (size_t)(close - h);
		p = close[1] ? close + 2 : NULL;
	} else if (colon && strchr(colon + 1, ':')) {
		hl = strlen(value);   /* bare IPv6, no port */
	} else {
		hl = colon ? (size_t)(colon - value) : strlen(value);
		p = colon ? colon + 1 : NULL;
	}
	if (hl >= sizeof(tmp) || hl >= hostlen)
		return cell_err(err, 400, EINVAL, "Address too long");
	memcpy(tmp, h, hl);
	tmp[hl] = '\0';
	if (p && !port_ok(p, port))
		return cell_err(err, 400, EINVAL, "Invalid port \"%s\"", p);
	if (*value == '[' && hl && inet_pton(AF_INET6, tmp, &a6) != 1)
		return cell_err(err, 400, EINVAL, "Invalid IPv6 address \"%s\"", tmp);
	if (hl && inet_pton(AF_INET6, tmp, &a6) != 1 && !host_name_ok(tmp))
		return cell_err(err, 400, EINVAL, "Invalid address \"%s\"", tmp);
	memcpy(host, tmp, strlen(tmp) + 1);
	return 0;
}

static bool check_listen_address(const char *v, char *why, size_t n)
{
	char host[256];
	int port;
	cell_error e;

	if (config_split_address(v, host, sizeof(host), &port, &e) == 0 &&
	    server_https_probe(v, &e) == 0)
		return true;
	snprintf(why, n, "%s", e.msg);
	return false;
}

static bool config_value_ok(const struct config_key *k, const char *v, char *why, size_t n)
{
	long long x;

	if (!*v)
		return true;   /* unset: back to the default */
	if (k->type == CONFIG_INT && !parse_int(v, &x)) {
		snprintf(why, n, "invalid integer");
		return false;
	}
	if (k->type == CONFIG_BOOL && strcasecmp(v, "true") && strcasecmp(v, "false") &&
	    strcmp(v, "1") && strcmp(v, "0") && strcasecmp(v, "yes") && strcasecmp(v, "no") &&
	    strcasecmp(v, "on") && strcasecmp(v, "off")) {
		snprintf(why, n, "invalid boolean");
		return false;
	}
	return !k->check || k->check(v, why, n);
}

static bool is_true(const char *v)
{
	return !strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") ||
	       !strcasecmp(v, "on");
}

/* ---- reads -------------------------------------------------------------- */

const char *config_get(const char *key)
{
	const struct config_key *k;
	json_t *v;

	if (!key)
		return NULL;
	v = cfg_values ? json_object_get(cfg_values, key) : NULL;
	if (v)
		return json_string_value(v);
	k = config_key_find(key);
	if (k)
		return k->def;
	return config_is_user_key(key) ? "" : NULL;
}

char *config_get_dup(const char *key)
{
	const char *v;
	char *out;

	pthread_mutex_lock(&cfg_mutex);
	v = config_get(key);
	out = v ? strdup(v) : NULL;
	pthread_mutex_unlock(&cfg_mutex);
	return out;
}

int64_t config_get_int(const char *key)
{
	_cleanup_free_ char *v = config_get_dup(key);
	long long x = 0;

	if (v && !parse_int(v, &x))
		x = 0;
	return x;
}

bool config_get_bool(const char *key)
{
	_cleanup_free_ char *v = config_get_dup(key);
	return v && is_true(v);
}

json_t *config_to_json(void)
{
	json_t *out = json_object();
	const char *key;
	json_t *v;

	if (!out || !cfg_values)
		return out;
	json_object_foreach(cfg_values, key, v) {
		const struct config_key *k = config_key_find(key);
		bool secret = k && (k->flags & CONFIG_SECRET);
		json_object_set_new(out, key, secret ? json_true() : json_incref(v));
	}
	return out;
}

bool config_trust_password_set(void)
{
	_cleanup_free_ char *v = config_get_dup("core.trust_password");
	return v && *v;
}

bool config_trust_password_check(const char *pw)
{
	_cleanup_free_ char *stored = config_get_dup("core.trust_password");
	return stored && *stored && pw && *pw && passwd_verify(pw, stored);
}

/* ---- changes ------------------------------------------------------------ */

struct config_change {
	bool replace;    /* PUT: start from nothing; PATCH: from the current */
	json_t *delta;   /* key -> string ("" removes); secrets in clear until hashed */
	json_t *keep;    /* PUT only: secret keys sent as `true` (key -> null) */
	bool hashed;
};

void config_change_free(struct config_change *c)
{
	if (!c)
		return;
	/* Plain-text passwords may sit in delta: wipe before freeing. */
	if (c->delta && !c->hashed) {
		const char *key;
		json_t *v;
		json_object_foreach(c->delta, key, v) {
			const struct config_key *k = config_key_find(key);
			if (k && (k->flags & CONFIG_SECRET))
				json_string_set(v, "");
		}
	}
	json_decref(c->delta);
	json_decref(c->keep);
	free(c);
}

struct config_errors {
	int n;
	char first_key[256];
	char first[CELL_ERR_MSG_MAX];
};

/* Keep the error for the smallest key name, as LXD sorts its list. */
static void config_error_add(struct config_errors *e, const char *key, const char *value,
			     const char *why)
{
	if (e->n++ && strcmp(key, e->first_key) >= 0)
		return;
	snprintf(e->first_key, sizeof(e->first_key), "%s", key);
	if (value)
		snprintf(e->first, sizeof(e->first), "cannot set '%s' to '%s': %s", key, value, why);
	else
		snprintf(e->first, sizeof(e->first), "cannot set '%s': %s", key, why);
}

/* The request's JSON value as a config string; NULL when the type is not
 * acceptable.  *keep is set for `true` on a secret key. */
static const char *config_json_str(const struct config_key *k, json_t *v, char *buf, size_t n,
				   bool *keep)
{
	*keep = false;
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_null(v))
		return "";
	if (k && (k->flags & CONFIG_SECRET))
		return json_is_true(v) ? (*keep = true, "") : NULL;
	if (json_is_boolean(v))
		return json_is_true(v) ? "true" : "false";
	if (json_is_integer(v)) {
		snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf;
	}
	return NULL;
}

static const char *json_type_name(json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "map";
	case JSON_ARRAY: return "slice";
	case JSON_REAL: return "float64";
	case JSON_TRUE:
	case JSON_FALSE: return "bool";
	default: return "value";
	}
}

static void config_change_key(struct config_change *c, struct config_errors *errs,
			      const char *key, json_t *jv)
{
	const struct config_key *k = config_key_find(key);
	char buf[32], why[CELL_ERR_MSG_MAX];
	const char *v;
	bool keep;

	if (!k && !config_is_user_key(key)) {
		v = json_is_string(jv) ? json_string_value(jv) : NULL;
		config_error_add(errs, key, v, "unknown key");
		return;
	}
	v = config_json_str(k, jv, buf, sizeof(buf), &keep);
	if (!v) {
		snprintf(why, sizeof(why), "invalid type %s", json_type_name(jv));
		config_error_add(errs, key, NULL, why);
		return;
	}
	if (keep) {
		if (c->replace)
			json_object_set_new(c->keep, key, json_null());
		return;
	}
	why[0] = '\0';
	if (k && !config_value_ok(k, v, why, sizeof(why))) {
		config_error_add(errs, key, (k->flags & CONFIG_SECRET) ? NULL : v, why);
		return;
	}
	/* A default is stored as its absence, so one state has one spelling. */
	if (k && !(k->flags & CONFIG_SECRET) && !strcmp(v, k->def))
		v = "";
	if (k && k->type == CONFIG_BOOL && *v)
		v = is_true(v) ? "true" : "false";
	json_object_set_new(c->delta, key, json_string(v));
}

int config_change_new(json_t *values, bool patch, struct config_change **out, cell_error *err)
{
	struct config_change *c = calloc(1, sizeof(*c));
	struct config_errors errs = { 0 };
	const char *key;
	json_t *v;

	*out = NULL;
	if (!c)
		return cell_err(err, 500, ENOMEM, "out of memory");
	c->replace = !patch;
	c->delta = json_object();
	c->keep = json_object();
	if (!c->delta || !c->keep) {
		config_change_free(c);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	if (values && !json_is_object(values)) {
		config_change_free(c);
		return cell_err(err, 400, EINVAL, "config must be an object");
	}
	json_object_foreach(values, key, v)
		config_change_key(c, &errs, key, v);
	if (errs.n) {
		config_change_free(c);
		if (errs.n == 1)
			return cell_err(err, 400, EINVAL, "%s", errs.first);
		return cell_err(err, 400, EINVAL, "%s (and %d more errors)", errs.first, errs.n - 1);
	}
	*out = c;
	return 0;
}

bool config_change_needs_hash(const struct config_change *c)
{
	const char *key;
	json_t *v;

	if (c->hashed)
		return false;
	json_object_foreach(c->delta, key, v) {
		const struct config_key *k = config_key_find(key);
		if (k && (k->flags & CONFIG_SECRET) && *json_string_value(v))
			return true;
	}
	return false;
}

int config_change_hash(struct config_change *c, cell_error *err)
{
	const char *key;
	json_t *v;

	if (c->hashed)
		return 0;
	json_object_foreach(c->delta, key, v) {
		const struct config_key *k = config_key_find(key);
		_cleanup_free_ char *h = NULL;
		int rc;

		if (!k || !(k->flags & CONFIG_SECRET) || !*json_string_value(v))
			continue;
		rc = passwd_hash(json_string_value(v), &h, err);
		if (rc < 0)
			return cell_err_wrap(err, rc, "%s", key);
		json_string_set(v, h);
	}
	c->hashed = true;
	return 0;
}

/* The full set of values the change leads to, from the current ones. */
static json_t *config_change_result(const struct config_change *c)
{
	json_t *next = c->replace ? json_object() : json_deep_copy(cfg_values);
	const char *key;
	json_t *v;

	if (!next)
		return NULL;
	json_object_foreach(c->keep, key, v) {
		json_t *cur = json_object_get(cfg_values, key);
		if (cur)
			json_object_set(next, key, cur);
	}
	json_object_foreach(c->delta, key, v) {
		if (*json_string_value(v))
			json_object_set(next, key, v);
		else
			json_object_del(next, key);
	}
	return next;
}

static void config_notify(json_t *old)
{
	json_t *keys = json_object();
	const char *key;
	json_t *v;

	if (!keys)
		return;
	/* Changed = in either set with a different effective value. */
	json_object_foreach(old, key, v)
		json_object_set(keys, key, json_null());
	json_object_foreach(cfg_values, key, v)
		json_object_set(keys, key, json_null());
	json_object_foreach(keys, key, v) {
		json_t *a = json_object_get(old, key), *b = json_object_get(cfg_values, key);
		if (a && b && json_equal(a, b))
			continue;
		for (size_t i = 0; i < cfg_nwatches; i++) {
			struct config_watch *w = &cfg_watches[i];
			if (!w->key || !strcmp(w->key, key))
				w->cb(key, config_get(key), w->data);
		}
	}
	json_decref(keys);
}

int config_change_commit(struct config_change *c, cell_error *err)
{
	json_t *next, *old;
	int rc;

	rc = config_change_hash(c, err);
	if (rc < 0)
		return rc;
	next = config_change_result(c);
	if (!next)
		return cell_err(err, 500, ENOMEM, "out of memory");
	rc = db_config_replace(next, err);
	if (rc < 0) {
		json_decref(next);
		return rc;
	}
	pthread_mutex_lock(&cfg_mutex);
	old = cfg_values;
	cfg_values = next;
	pthread_mutex_unlock(&cfg_mutex);
	config_notify(old);
	json_decref(old);
	return 0;
}

static int config_apply(json_t *values, bool patch, cell_error *err)
{
	struct config_change *c;
	int rc = config_change_new(values, patch, &c, err);

	if (rc < 0)
		return rc;
	rc = config_change_commit(c, err);
	config_change_free(c);
	return rc;
}

int config_replace(json_t *values, cell_error *err) { return config_apply(values, false, err); }
int config_patch(json_t *values, cell_error *err) { return config_apply(values, true, err); }

int config_on_change(const char *key, config_change_fn cb, void *data)
{
	struct config_watch *nw;
	char *k = NULL;

	/* Registering the same watch twice (a module re-initialised) is one. */
	for (size_t i = 0; i < cfg_nwatches; i++) {
		struct config_watch *w = &cfg_watches[i];
		if (w->cb == cb && w->data == data &&
		    (w->key && key ? !strcmp(w->key, key) : w->key == key))
			return 0;
	}
	nw = realloc(cfg_watches, (cfg_nwatches + 1) * sizeof(*nw));
	if (!nw)
		return -ENOMEM;
	cfg_watches = nw;
	if (key && !(k = strdup(key)))
		return -ENOMEM;
	cfg_watches[cfg_nwatches++] = (struct config_watch){ k, cb, data };
	return 0;
}

/* ---- start and stop ----------------------------------------------------- */

/* Stored values are trusted as far as they still fit this build's schema. */
static void config_load_filter(json_t *stored)
{
	const char *key;
	json_t *v, *tmp;

	json_object_foreach_safe(stored, tmp, key, v) {
		const struct config_key *k = config_key_find(key);
		char why[CELL_ERR_MSG_MAX] = "";
		const char *s = json_string_value(v);

		if (!k && config_is_user_key(key))
			continue;
		if (!k)
			log_warn("config: ignoring unknown stored key %s", key);
		else if (!(k->flags & CONFIG_SECRET) && !config_value_ok(k, s, why, sizeof(why)))
			log_warn("config: ignoring stored %s=%s: %s", key, s, why);
		else if (*s && (!strcmp(s, k->def) && !(k->flags & CONFIG_SECRET)))
			; /* a default stored by hand: same meaning as absent */
		else if (*s)
			continue;
		json_object_del(stored, key);
	}
}

int config_init(cell_error *err)
{
	json_t *stored = NULL;
	int rc = db_config_get_all(&stored, err);

	if (rc < 0)
		return rc;
	config_load_filter(stored);
	pthread_mutex_lock(&cfg_mutex);
	json_decref(cfg_values);
	cfg_values = stored;
	pthread_mutex_unlock(&cfg_mutex);
	return 0;
}

void config_shutdown(void)
{
	pthread_mutex_lock(&cfg_mutex);
	json_decref(cfg_values);
	cfg_values = NULL;
	pthread_mutex_unlock(&cfg_mutex);
	for (size_t i = 0; i < cfg_nwatches; i++)
		free(cfg_watches[i].key);
	free(cfg_watches);
	cfg_watches = NULL;
	cfg_nwatches = 0;
}
