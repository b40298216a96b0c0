#include "common/yaml_util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/cleanup.h"

/* ------------------------------------------------------- scalar typing */

static bool str_in(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (!strcmp(s, *set))
			return true;
	return false;
}

static const char *const null_words[] = { "~", "null", "Null", "NULL", NULL };
static const char *const true_words[] = { "true", "True", "TRUE", NULL };
static const char *const false_words[] = { "false", "False", "FALSE", NULL };
/* YAML 1.1 booleans (what Go's yaml.v2 reads): quoted on output so other
 * parsers read them back as the strings they are. */
static const char *const yaml11_bools[] = { "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
					    "true", "True", "TRUE", "false", "False", "FALSE",
					    "on", "On", "ON", "off", "Off", "OFF", NULL };
static const char *const special_floats[] = { ".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN", NULL };

static bool all_chars(const char *s, const char *set)
{
	return *s && strspn(s, set) == strlen(s);
}

/* yaml.v2's sexagesimal float: [0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)? ("1:20", not "10.0.0.1:80"). */
static bool is_base60(const char *p)
{
	bool groups = false;

	if (!isdigit((unsigned char)*p))
		return false;
	p += strspn(p, "0123456789_");
	while (*p == ':') {
		size_t n = strspn(++p, "0123456789");
		if (n == 0 || n > 2 || (n == 2 && *p > '5'))
			return false;
		p += n;
		groups = true;
	}
	if (*p == '.')
		p += 1 + strspn(p + 1, "0123456789_");
	return groups && !*p;
}

/* Anything a YAML 1.1 resolver might take for a number (ints with
 * underscores, 0x/0o/0b, floats, sexagesimal): better quoted than misread. */
static bool looks_numeric(const char *s)
{
	const char *p = s + (*s == '+' || *s == '-');
	bool digit = false, dot = false, exp = false;

	if (str_in(p, special_floats))
		return true;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'o' || p[1] == 'b') && p[2])
		return all_chars(p + 2, "0123456789abcdefABCDEF_");
	if (is_base60(p))
		return true;
	for (; *p; p++) {
		if (isdigit((unsigned char)*p))
			digit = true;
		else if (*p == '_' && !exp)
			;
		else if (*p == '.' && !dot && !exp)
			dot = true;
		else if ((*p == 'e' || *p == 'E') && digit && !exp) {
			exp = true;
			if (p[1] == '+' || p[1] == '-')
				p++;
			if (!isdigit((unsigned char)p[1]))
				return false;
		} else
			return false;
	}
	return digit;
}

/* 2001-12-14, 2001-12-14T21:59:43Z: yaml.v2 resolves these as timestamps. */
static bool looks_like_date(const char *s)
{
	return isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[2]) &&
	       isdigit((unsigned char)s[3]) && s[4] == '-' && isdigit((unsigned char)s[5]);
}

bool yaml_scalar_needs_quotes(const char *s)
{
	return !*s || str_in(s, null_words) || str_in(s, yaml11_bools) || !strcmp(s, "<<") || !strcmp(s, "=") ||
	       looks_numeric(s) || looks_like_date(s);
}

/* ---------------------------------------------------------------- emit */

struct emit_ctx {
	yaml_emitter_t em;
	unsigned flags;
};

static int emit_event(struct emit_ctx *c, yaml_event_t *ev)
{
	return yaml_emitter_emit(&c->em, ev) ? 0 : -EINVAL;
}

static int emit_scalar(struct emit_ctx *c, const char *s, size_t len, yaml_scalar_style_t style)
{
	yaml_event_t ev;

	if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)len, 1, 1, style))
		return -ENOMEM;
	return emit_event(c, &ev);
}

static int emit_string(struct emit_ctx *c, const char *s, size_t len, bool key)
{
	yaml_scalar_style_t style = YAML_PLAIN_SCALAR_STYLE;

	if (memchr(s, '\n', len))   /* a literal block cannot be a simple key */
		style = key ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_LITERAL_SCALAR_STYLE;
	else if (memchr(s, '\0', len) || yaml_scalar_needs_quotes(s))
		style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
	/* libyaml falls back to quoting by itself when plain is not allowed. */
	return emit_scalar(c, s, len, style);
}

/* Shortest text that reads back as the same double, like Go's 'g', -1. */
static void format_real(double d, char out[40])
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, 40, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			return;
	}
}

static int emit_value(struct emit_ctx *c, json_t *v);

static int cmp_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int emit_object(struct emit_ctx *c, json_t *v)
{
	size_t n = json_object_size(v), i = 0;
	_cleanup_free_ const char **keys = malloc((n ? n : 1) * sizeof(*keys));
	yaml_event_t ev;
	const char *k;
	json_t *child;
	int rc;

	if (!keys)
		return -ENOMEM;
	json_object_foreach(v, k, child)
		keys[i++] = k;
	if (c->flags & YAML_EMIT_SORT_KEYS)
		qsort(keys, n, sizeof(*keys), cmp_keys);
	yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
	if ((rc = emit_event(c, &ev)) < 0)
		return rc;
	for (i = 0; i < n; i++) {
		if ((rc = emit_string(c, keys[i], strlen(keys[i]), true)) < 0 ||
		    (rc = emit_value(c, json_object_get(v, keys[i]))) < 0)
			return rc;
	}
	yaml_mapping_end_event_initialize(&ev);
	return emit_event(c, &ev);
}

static int emit_array(struct emit_ctx *c, json_t *v)
{
	yaml_event_t ev;
	size_t i;
	json_t *child;
	int rc;

	yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
	if ((rc = emit_event(c, &ev)) < 0)
		return rc;
	json_array_foreach(v, i, child)
		if ((rc = emit_value(c, child)) < 0)
			return rc;
	yaml_sequence_end_event_initialize(&ev);
	return emit_event(c, &ev);
}

static int emit_value(struct emit_ctx *c, json_t *v)
{
	char num[40];

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return emit_object(c, v);
	case JSON_ARRAY:
		return emit_array(c, v);
	case JSON_STRING:
		return emit_string(c, json_string_value(v), json_string_length(v), false);
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return emit_scalar(c, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
	case JSON_REAL:
		format_real(json_real_value(v), num);
		return emit_scalar(c, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
	case JSON_TRUE:
		return emit_scalar(c, "true", 4, YAML_PLAIN_SCALAR_STYLE);
	case JSON_FALSE:
		return emit_scalar(c, "false", 5, YAML_PLAIN_SCALAR_STYLE);
	case JSON_NULL:
	default:
		return emit_scalar(c, "null", 4, YAML_PLAIN_SCALAR_STYLE);
	}
}

static int write_handler(void *data, unsigned char *buffer, size_t size)
{
	return sb_append(data, buffer, size) == 0;
}

static int emit_document(struct emit_ctx *c, json_t *v)
{
	yaml_event_t ev;
	int rc;

	yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
	if ((rc = emit_event(c, &ev)) < 0)
		return rc;
	yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
	if ((rc = emit_event(c, &ev)) < 0)
		return rc;
	if ((rc = emit_value(c, v ? v : json_null())) < 0)
		return rc;
	yaml_document_end_event_initialize(&ev, 1);
	if ((rc = emit_event(c, &ev)) < 0)
		return rc;
	yaml_stream_end_event_initialize(&ev);
	return emit_event(c, &ev);
}

int yaml_emit_json(json_t *v, unsigned flags, strbuf *out, cell_error *err)
{
	struct emit_ctx c = { .flags = flags };
	size_t start = out->len;
	int rc;

	if (!yaml_emitter_initialize(&c.em))
		return cell_err(err, 500, ENOMEM, "yaml: out of memory");
	yaml_emitter_set_output(&c.em, write_handler, out);
	yaml_emitter_set_unicode(&c.em, 1);
	yaml_emitter_set_width(&c.em, -1);   /* never fold long values */
	yaml_emitter_set_indent(&c.em, 2);
	rc = emit_document(&c, v);
	if (rc == 0 && !yaml_emitter_flush(&c.em))
		rc = -EIO;
	if (rc < 0) {
		const char *problem = c.em.problem ? c.em.problem : "emitter failure";
		yaml_emitter_delete(&c.em);
		return cell_err(err, 500, -rc, "yaml: %s", problem);
	}
	yaml_emitter_delete(&c.em);
	/* libyaml closes an open-ended top-level scalar with "...". */
	if (out->len - start >= 4 && !strcmp(out->buf + out->len - 4, "...\n")) {
		out->len -= 4;
		out->buf[out->len] = '\0';
	}
	return 0;
}

char *yaml_dump_json(json_t *v, unsigned flags)
{
	strbuf sb = {0};

	if (yaml_emit_json(v, flags, &sb, NULL) < 0) {
		sb_free(&sb);
		return NULL;
	}
	return sb_steal(&sb);
}

/* --------------------------------------------------------------- parse */

struct parse_ctx {
	yaml_parser_t p;
	const struct yaml_parse_opts *o;
	json_t *anchors;
	cell_error *err;
	int depth;
};

#define YAML_MAX_DEPTH 256

static int parse_error(struct parse_ctx *c)
{
	if (c->p.problem)
		return cell_err(c->err, 400, EINVAL, "yaml: line %zu: %s%s%s", c->p.problem_mark.line + 1,
				c->p.problem, c->p.context ? " " : "", c->p.context ? c->p.context : "");
	return cell_err(c->err, 400, EINVAL, "yaml: parse error");
}

static int next_event(struct parse_ctx *c, yaml_event_t *ev)
{
	return yaml_parser_parse(&c->p, ev) ? 0 : parse_error(c);
}

static bool match_int(const char *s, json_int_t *out)
{
	const char *p = s + (*s == '+' || *s == '-');
	char *end;
	long long v;
	int base = 10;

	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'o')) {
		base = p[1] == 'x' ? 16 : 8;
		if (p != s || !p[2] || !all_chars(p + 2, base == 16 ? "0123456789abcdefABCDEF" : "01234567"))
			return false;
		p += 2;
	} else if (!all_chars(p, "0123456789") || (p[0] == '0' && p[1])) {
		return false;   /* leading zeros: not clearly a number */
	}
	errno = 0;
	v = strtoll(base == 10 ? s : p, &end, base);
	if (errno || *end)
		return false;
	*out = (json_int_t)v;
	return true;
}

static bool match_real(const char *s, double *out)
{
	const char *p = s + (*s == '+' || *s == '-');
	size_t d1 = strspn(p, "0123456789"), d2 = 0;
	char *end;

	p += d1;
	if (*p == '.') {
		d2 = strspn(p + 1, "0123456789");
		p += 1 + d2;
	} else if (*p != 'e' && *p != 'E') {
		return false;
	}
	if (!d1 && !d2)
		return false;
	if (*p == 'e' || *p == 'E') {
		p++;
		p += (*p == '+' || *p == '-');
		if (!all_chars(p, "0123456789"))
			return false;
	} else if (*p) {
		return false;
	}
	*out = strtod(s, &end);
	return !*end && isfinite(*out);
}

static json_t *resolve_scalar(const yaml_event_t *ev, bool strings)
{
	const char *s = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	const char *tag = (const char *)ev->data.scalar.tag;
	bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	bool is_null = plain && (!*s || str_in(s, null_words));
	json_int_t i;
	double d;

	if (tag && (!strcmp(tag, YAML_STR_TAG) || !strcmp(tag, "!")))
		return json_stringn(s, len);
	if (strings || !plain)
		return is_null ? json_string("") : json_stringn(s, len);
	if (is_null)
		return json_null();
	if (str_in(s, true_words))
		return json_true();
	if (str_in(s, false_words))
		return json_false();
	if (match_int(s, &i))
		return json_integer(i);
	if (match_real(s, &d))
		return json_real(d);
	return json_stringn(s, len);
}

static bool is_string_key(struct parse_ctx *c, const char *key)
{
	for (const char *const *k = c->o ? c->o->string_keys : NULL; k && *k; k++)
		if (!strcmp(*k, key))
			return true;
	return false;
}

static int parse_node(struct parse_ctx *c, yaml_event_t *ev, bool strings, json_t **out);

/* "<<: *base" merges the aliased mapping(s) without overriding own keys. */
static void merge_into(json_t *obj, json_t *src)
{
	size_t i;
	json_t *m;

	if (json_is_object(src)) {
		const char *k;
		json_t *v;
		json_object_foreach(src, k, v)
			if (!json_object_get(obj, k))
				json_object_set(obj, k, v);
	} else if (json_is_array(src)) {
		json_array_foreach(src, i, m)
			merge_into(obj, m);
	}
}

static int parse_mapping(struct parse_ctx *c, bool strings, json_t **out)
{
	_cleanup_json_ json_t *obj = json_object();
	int rc;

	if (!obj)
		return cell_err(c->err, 500, ENOMEM, "yaml: out of memory");
	for (;;) {
		yaml_event_t kev, vev;
		_cleanup_free_ char *key = NULL;
		json_t *val = NULL;
		bool merge;

		if ((rc = next_event(c, &kev)) < 0)
			return rc;
		if (kev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&kev);
			break;
		}
		if (kev.type != YAML_SCALAR_EVENT) {
			yaml_event_delete(&kev);
			return cell_err(c->err, 400, EINVAL, "yaml: line %zu: only scalar mapping keys are supported",
					kev.start_mark.line + 1);
		}
		key = strndup((const char *)kev.data.scalar.value, kev.data.scalar.length);
		merge = kev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && key && !strcmp(key, "<<");
		yaml_event_delete(&kev);
		if (!key)
			return cell_err(c->err, 500, ENOMEM, "yaml: out of memory");
		if ((rc = next_event(c, &vev)) < 0)
			return rc;
		rc = parse_node(c, &vev, strings || is_string_key(c, key), &val);
		yaml_event_delete(&vev);
		if (rc < 0)
			return rc;
		if (merge) {
			merge_into(obj, val);
			json_decref(val);
		} else {
			json_object_set_new(obj, key, val);
		}
	}
	*out = steal_ptr(obj);
	return 0;
}

static int parse_sequence(struct parse_ctx *c, bool strings, json_t **out)
{
	_cleanup_json_ json_t *arr = json_array();
	int rc;

	if (!arr)
		return cell_err(c->err, 500, ENOMEM, "yaml: out of memory");
	for (;;) {
		yaml_event_t ev;
		json_t *val = NULL;

		if ((rc = next_event(c, &ev)) < 0)
			return rc;
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		rc = parse_node(c, &ev, strings, &val);
		yaml_event_delete(&ev);
		if (rc < 0)
			return rc;
		json_array_append_new(arr, val);
	}
	*out = steal_ptr(arr);
	return 0;
}

static int parse_node(struct parse_ctx *c, yaml_event_t *ev, bool strings, json_t **out)
{
	const yaml_char_t *anchor = NULL;
	int rc = 0;

	*out = NULL;
	if (++c->depth > YAML_MAX_DEPTH)
		return cell_err(c->err, 400, EINVAL, "yaml: nested too deeply");
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		anchor = ev->data.scalar.anchor;
		*out = resolve_scalar(ev, strings);
		if (!*out)
			rc = cell_err(c->err, 500, ENOMEM, "yaml: out of memory");
		break;
	case YAML_SEQUENCE_START_EVENT:
		anchor = ev->data.sequence_start.anchor;
		rc = parse_sequence(c, strings, out);
		break;
	case YAML_MAPPING_START_EVENT:
		anchor = ev->data.mapping_start.anchor;
		rc = parse_mapping(c, strings, out);
		break;
	case YAML_ALIAS_EVENT: {
		json_t *a = json_object_get(c->anchors, (const char *)ev->data.alias.anchor);
		if (!a)
			rc = cell_err(c->err, 400, EINVAL, "yaml: unknown anchor \"%s\"", ev->data.alias.anchor);
		else
			*out = json_deep_copy(a);
		break;
	}
	default:
		rc = cell_err(c->err, 400, EINVAL, "yaml: unexpected event at line %zu", ev->start_mark.line + 1);
	}
	c->depth--;
	if (rc == 0 && anchor)
		json_object_set(c->anchors, (const char *)anchor, *out);
	return rc;
}

static int parse_document(struct parse_ctx *c, json_t **out)
{
	yaml_event_t ev;
	int rc;

	*out = NULL;
	for (;;) {   /* skip stream and document starts */
		if ((rc = next_event(c, &ev)) < 0)
			return rc;
		if (ev.type == YAML_STREAM_END_EVENT || ev.type == YAML_DOCUMENT_END_EVENT) {
			yaml_event_delete(&ev);
			*out = json_null();
			return 0;
		}
		if (ev.type != YAML_STREAM_START_EVENT && ev.type != YAML_DOCUMENT_START_EVENT)
			break;
		yaml_event_delete(&ev);
	}
	rc = parse_node(c, &ev, c->o && c->o->all_strings, out);
	yaml_event_delete(&ev);
	return rc;
}

int yaml_parse_json(const char *buf, size_t len, const struct yaml_parse_opts *o, json_t **out,
		    cell_error *err)
{
	struct parse_ctx c = { .o = o, .err = err };
	int rc;

	*out = NULL;
	c.anchors = json_object();
	if (!c.anchors || !yaml_parser_initialize(&c.p)) {
		json_decref(c.anchors);
		return cell_err(err, 500, ENOMEM, "yaml: out of memory");
	}
	yaml_parser_set_input_string(&c.p, (const unsigned char *)buf, len);
	rc = parse_document(&c, out);
	yaml_parser_delete(&c.p);
	json_decref(c.anchors);
	if (rc < 0) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}
