#include "daemon/image_template.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"

/* ==== lexing the template into text / {{ }} / {% %} nodes ==================== */

enum node_type { N_TEXT, N_VAR, N_TAG };

struct node {
	enum node_type type;
	const char *s;
	size_t len;
	int line;
};

struct render {
	struct node *nodes;
	size_t n, cap, pos;
	json_t *ctx;
	strbuf *out;
	cell_error *err;
	int line;
};

#define TPL_ERR(r, line, ...) tpl_err((r), (line), __VA_ARGS__)

__attribute__((format(printf, 3, 4)))
static int tpl_err(struct render *r, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return cell_err(r->err, 400, EINVAL, "template line %d: %s", line, msg);
}

static int add_node(struct render *r, enum node_type t, const char *s, size_t len, int line)
{
	if (r->n == r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 32;
		struct node *nn = realloc(r->nodes, ncap * sizeof(*nn));
		if (!nn)
			return cell_err(r->err, 500, ENOMEM, "template: out of memory");
		r->nodes = nn;
		r->cap = ncap;
	}
	r->nodes[r->n++] = (struct node){ t, s, len, line };
	return 0;
}

static int count_lines(const char *s, size_t len)
{
	int n = 0;
	for (size_t i = 0; i < len; i++)
		n += s[i] == '\n';
	return n;
}

/* End of a {{ }} / {% %} body: the closing delimiter outside string literals. */
static const char *find_close(const char *p, const char *end, char c1)
{
	char quote = 0;

	for (; p + 1 < end; p++) {
		if (quote) {
			if (*p == '\\' && p + 2 < end)
				p++;
			else if (*p == quote)
				quote = 0;
		} else if (*p == '"' || *p == '\'') {
			quote = *p;
		} else if (p[0] == c1 && p[1] == '}') {
			return p;
		}
	}
	return NULL;
}

static int add_text(struct render *r, const char *s, size_t len, bool trim_left, bool trim_right,
		    int line)
{
	while (trim_left && len && isspace((unsigned char)*s))
		s++, len--;
	while (trim_right && len && isspace((unsigned char)s[len - 1]))
		len--;
	return len ? add_node(r, N_TEXT, s, len, line) : 0;
}

static int lex_template(struct render *r, const char *src, size_t len)
{
	const char *p = src, *end = src + len;
	bool trim_next = false;
	int line = 1;

	while (p < end) {
		const char *open = p, *close, *body, *body_end;
		bool trim_prev, trim_after;
		char kind;
		int rc;

		while (open + 1 < end && !(open[0] == '{' && open[1] && strchr("{%#", open[1])))
			open++;
		if (open + 1 >= end)
			return add_text(r, p, (size_t)(end - p), trim_next, false, line);
		kind = open[1];
		close = find_close(open + 2, end, kind == '{' ? '}' : kind);
		if (!close)
			return TPL_ERR(r, line + count_lines(p, (size_t)(open - p)), "unclosed {%c", kind);
		body = open + 2;
		trim_prev = body < close && *body == '-';
		body += trim_prev;
		trim_after = close > body && close[-1] == '-';
		body_end = close - trim_after;
		if ((rc = add_text(r, p, (size_t)(open - p), trim_next, trim_prev, line)) < 0)
			return rc;
		line += count_lines(p, (size_t)(open - p));
		if (kind != '#' &&
		    (rc = add_node(r, kind == '{' ? N_VAR : N_TAG, body, (size_t)(body_end - body), line)) < 0)
			return rc;
		line += count_lines(open, (size_t)(close + 2 - open));
		trim_next = trim_after;
		p = close + 2;
	}
	return 0;
}

/* ==== expressions ============================================================== */

enum tok_kind { T_EOF, T_IDENT, T_STR, T_NUM, T_OP };

struct tok {
	enum tok_kind kind;
	const char *s;
	size_t len;
};

struct expr {
	const char *p, *end;
	struct tok t;
	struct render *r;
	int line;
};

static bool tok_is(const struct expr *e, enum tok_kind k, const char *s)
{
	return e->t.kind == k && e->t.len == strlen(s) && memcmp(e->t.s, s, e->t.len) == 0;
}

static int lex_string(struct expr *e)
{
	char q = *e->p;
	const char *s = e->p++;

	while (e->p < e->end && *e->p != q)
		e->p += (*e->p == '\\' && e->p + 1 < e->end) ? 2 : 1;
	if (e->p >= e->end)
		return TPL_ERR(e->r, e->line, "unterminated string literal");
	e->p++;
	e->t = (struct tok){ T_STR, s, (size_t)(e->p - s) };
	return 0;
}

static int next_tok(struct expr *e)
{
	static const char *const ops2[] = { "==", "!=", "<=", ">=", "&&", "||" };
	const char *s;

	while (e->p < e->end && isspace((unsigned char)*e->p))
		e->p++;
	s = e->p;
	if (s >= e->end) {
		e->t = (struct tok){ T_EOF, s, 0 };
		return 0;
	}
	if (isalpha((unsigned char)*s) || *s == '_') {
		while (e->p < e->end && (isalnum((unsigned char)*e->p) || *e->p == '_'))
			e->p++;
		e->t = (struct tok){ T_IDENT, s, (size_t)(e->p - s) };
		return 0;
	}
	if (isdigit((unsigned char)*s)) {
		while (e->p < e->end && (isdigit((unsigned char)*e->p) || *e->p == '.'))
			e->p++;
		e->t = (struct tok){ T_NUM, s, (size_t)(e->p - s) };
		return 0;
	}
	if (*s == '"' || *s == '\'')
		return lex_string(e);
	for (size_t i = 0; i < ARRAY_SIZE(ops2); i++)
		if (e->end - s >= 2 && memcmp(s, ops2[i], 2) == 0) {
			e->p += 2;
			e->t = (struct tok){ T_OP, s, 2 };
			return 0;
		}
	if (strchr("(),|:.<>!", *s)) {
		e->p++;
		e->t = (struct tok){ T_OP, s, 1 };
		return 0;
	}
	return TPL_ERR(e->r, e->line, "unexpected character '%c'", *s);
}

static int expect_op(struct expr *e, const char *op)
{
	if (!tok_is(e, T_OP, op))
		return TPL_ERR(e->r, e->line, "expected '%s' near \"%.*s\"", op,
			       (int)(e->end - e->t.s > 20 ? 20 : e->end - e->t.s), e->t.s);
	return next_tok(e);
}

/* ---- values (json_t, new references) ---- */

static bool truthy(json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING: return json_string_length(v) > 0;
	case JSON_INTEGER: return json_integer_value(v) != 0;
	case JSON_REAL: return json_real_value(v) != 0;
	case JSON_TRUE: return true;
	case JSON_OBJECT: return json_object_size(v) > 0;
	case JSON_ARRAY: return json_array_size(v) > 0;
	default: return false;
	}
}

static int to_string(json_t *v, strbuf *sb)
{
	char *s;
	int rc;

	switch (json_typeof(v)) {
	case JSON_STRING: return sb_append(sb, json_string_value(v), json_string_length(v));
	case JSON_INTEGER: return sb_printf(sb, "%lld", (long long)json_integer_value(v));
	case JSON_REAL: return sb_printf(sb, "%g", json_real_value(v));
	case JSON_TRUE: return sb_puts(sb, "True");
	case JSON_FALSE: return sb_puts(sb, "False");
	case JSON_NULL: return 0;
	default:
		s = json_dumps(v, JSON_COMPACT);
		rc = s ? sb_puts(sb, s) : -ENOMEM;
		free(s);
		return rc;
	}
}

static json_t *decode_string(const struct tok *t)
{
	_cleanup_sb_ strbuf sb = { 0 };

	for (size_t i = 1; i + 1 < t->len; i++) {
		char c = t->s[i];
		if (c == '\\' && i + 2 < t->len) {
			c = t->s[++i];
			c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
		}
		if (sb_append(&sb, &c, 1) < 0)
			return NULL;
	}
	return json_stringn(sb.buf ? sb.buf : "", sb.len);
}

static int parse_expr(struct expr *e, json_t **out);

static json_t *lookup_attr(json_t *v, const struct tok *t)
{
	char key[256];

	if (t->len >= sizeof(key))
		return NULL;
	memcpy(key, t->s, t->len);
	key[t->len] = '\0';
	if (json_is_object(v))
		return json_object_get(v, key);
	if (json_is_array(v) && t->kind == T_NUM)
		return json_array_get(v, strtoul(key, NULL, 10));
	return NULL;
}

static int parse_variable(struct expr *e, json_t **out)
{
	json_t *v = lookup_attr(e->r->ctx, &e->t);
	int rc;

	if ((rc = next_tok(e)) < 0)
		return rc;
	while (tok_is(e, T_OP, ".")) {
		if ((rc = next_tok(e)) < 0)
			return rc;
		if (e->t.kind != T_IDENT && e->t.kind != T_NUM)
			return TPL_ERR(e->r, e->line, "expected an attribute name after '.'");
		v = v ? lookup_attr(v, &e->t) : NULL;
		if ((rc = next_tok(e)) < 0)
			return rc;
	}
	*out = v ? json_incref(v) : json_null();
	return 0;
}

/* LXD's config_get: the expanded config value without trailing newlines, else the default. */
static json_t *config_get(json_t *ctx, json_t *key, json_t *dflt)
{
	json_t *v = json_is_string(key) ? json_object_get(json_object_get(ctx, "config"),
							  json_string_value(key)) : NULL;
	size_t n;

	if (!v)
		return dflt ? json_incref(dflt) : json_null();
	if (!json_is_string(v))
		return json_incref(v);
	n = json_string_length(v);
	while (n && (json_string_value(v)[n - 1] == '\n' || json_string_value(v)[n - 1] == '\r'))
		n--;
	return json_stringn(json_string_value(v), n);
}

static int parse_call(struct expr *e, json_t **out)
{
	_cleanup_json_ json_t *a = NULL, *b = NULL;
	int line = e->line, rc;

	if (!tok_is(e, T_IDENT, "config_get"))
		return TPL_ERR(e->r, line, "unknown function \"%.*s\"", (int)e->t.len, e->t.s);
	if ((rc = next_tok(e)) < 0 || (rc = expect_op(e, "(")) < 0 || (rc = parse_expr(e, &a)) < 0)
		return rc;
	if (tok_is(e, T_OP, ",") && ((rc = next_tok(e)) < 0 || (rc = parse_expr(e, &b)) < 0))
		return rc;
	if ((rc = expect_op(e, ")")) < 0)
		return rc;
	*out = config_get(e->r->ctx, a, b);
	return *out ? 0 : cell_err(e->r->err, 500, ENOMEM, "template: out of memory");
}

static json_t *literal_ident(const struct tok *t)
{
	static const struct { const char *word; json_type type; } words[] = {
		{ "true", JSON_TRUE }, { "True", JSON_TRUE }, { "false", JSON_FALSE },
		{ "False", JSON_FALSE }, { "nil", JSON_NULL }, { "None", JSON_NULL }, { "none", JSON_NULL },
	};

	for (size_t i = 0; i < ARRAY_SIZE(words); i++)
		if (t->len == strlen(words[i].word) && !memcmp(t->s, words[i].word, t->len))
			return words[i].type == JSON_TRUE ? json_true()
			       : words[i].type == JSON_FALSE ? json_false() : json_null();
	return NULL;
}

/* An identifier directly followed by '(' is a function call. */
static bool next_is_call(const struct expr *e)
{
	const char *q = e->p;

	while (q < e->end && isspace((unsigned char)*q))
		q++;
	return q < e->end && *q == '(';
}

static int parse_primary(struct expr *e, json_t **out)
{
	struct tok t = e->t;
	int rc;

	if (tok_is(e, T_OP, "(")) {
		if ((rc = next_tok(e)) < 0 || (rc = parse_expr(e, out)) < 0)
			return rc;
		return expect_op(e, ")");
	}
	if (t.kind == T_STR || t.kind == T_NUM) {
		*out = t.kind == T_STR ? decode_string(&t)
		       : memchr(t.s, '.', t.len) ? json_real(strtod(t.s, NULL))
						 : json_integer(strtoll(t.s, NULL, 10));
		return *out ? next_tok(e) : cell_err(e->r->err, 500, ENOMEM, "template: out of memory");
	}
	if (t.kind != T_IDENT)
		return TPL_ERR(e->r, e->line, "expected a value near \"%.*s\"",
			       (int)(e->end - t.s > 20 ? 20 : e->end - t.s), t.s);
	if ((*out = literal_ident(&t)))
		return next_tok(e);
	return next_is_call(e) ? parse_call(e, out) : parse_variable(e, out);
}

static json_t *apply_filter(const struct tok *name, json_t *v, json_t *arg, bool *known)
{
	_cleanup_free_ char *s = NULL;

	*known = true;
	if (name->len == 7 && !memcmp(name->s, "default", 7))
		return json_incref(truthy(v) || !arg ? v : arg);
	if (name->len == 15 && !memcmp(name->s, "default_if_none", 15))
		return json_incref(!json_is_null(v) || !arg ? v : arg);
	if (name->len == 4 && !memcmp(name->s, "safe", 4))
		return json_incref(v);
	if (name->len == 6 && !memcmp(name->s, "length", 6))
		return json_integer(json_is_string(v) ? (json_int_t)json_string_length(v)
				    : json_is_array(v) ? (json_int_t)json_array_size(v)
				    : json_is_object(v) ? (json_int_t)json_object_size(v) : 0);
	if ((name->len == 5 && !memcmp(name->s, "lower", 5)) || (name->len == 5 && !memcmp(name->s, "upper", 5))) {
		strbuf sb = { 0 };
		if (to_string(v, &sb) < 0)
			return NULL;
		for (size_t i = 0; i < sb.len; i++)
			sb.buf[i] = (char)(name->s[0] == 'l' ? tolower((unsigned char)sb.buf[i])
							      : toupper((unsigned char)sb.buf[i]));
		s = sb_steal(&sb);
		return json_string(s ? s : "");
	}
	*known = false;
	return NULL;
}

static int parse_filtered(struct expr *e, json_t **out)
{
	_cleanup_json_ json_t *v = NULL;
	int rc;

	if ((rc = parse_primary(e, &v)) < 0)
		return rc;
	while (tok_is(e, T_OP, "|")) {
		_cleanup_json_ json_t *arg = NULL;
		struct tok name;
		json_t *nv;
		bool known;

		if ((rc = next_tok(e)) < 0)
			return rc;
		if (e->t.kind != T_IDENT)
			return TPL_ERR(e->r, e->line, "expected a filter name after '|'");
		name = e->t;
		if ((rc = next_tok(e)) < 0)
			return rc;
		if (tok_is(e, T_OP, ":") && ((rc = next_tok(e)) < 0 || (rc = parse_primary(e, &arg)) < 0))
			return rc;
		nv = apply_filter(&name, v, arg, &known);
		if (!known)
			return TPL_ERR(e->r, e->line, "unknown filter \"%.*s\"", (int)name.len, name.s);
		if (!nv)
			return cell_err(e->r->err, 500, ENOMEM, "template: out of memory");
		json_decref(v);
		v = nv;
	}
	*out = steal_ptr(v);
	return 0;
}

static bool values_equal(json_t *a, json_t *b)
{
	if (json_is_number(a) && json_is_number(b))
		return json_number_value(a) == json_number_value(b);
	return json_equal(a, b);
}

/* -1/0/1, or 2 when the two cannot be ordered. */
static int values_order(json_t *a, json_t *b)
{
	if (json_is_number(a) && json_is_number(b)) {
		double x = json_number_value(a), y = json_number_value(b);
		return x < y ? -1 : x > y;
	}
	if (json_is_string(a) && json_is_string(b)) {
		int c = strcmp(json_string_value(a), json_string_value(b));
		return c < 0 ? -1 : c > 0;
	}
	return 2;
}

static bool value_in(json_t *needle, json_t *hay)
{
	size_t i;
	json_t *x;

	if (json_is_string(hay))
		return json_is_string(needle) && strstr(json_string_value(hay), json_string_value(needle));
	if (json_is_object(hay))
		return json_is_string(needle) && json_object_get(hay, json_string_value(needle));
	json_array_foreach(hay, i, x)
		if (values_equal(needle, x))
			return true;
	return false;
}

static bool compare(const char *op, json_t *a, json_t *b)
{
	int o;

	if (!strcmp(op, "=="))
		return values_equal(a, b);
	if (!strcmp(op, "!="))
		return !values_equal(a, b);
	if (!strcmp(op, "in"))
		return value_in(a, b);
	o = values_order(a, b);
	if (o == 2)
		return false;
	return !strcmp(op, "<") ? o < 0 : !strcmp(op, ">") ? o > 0 : !strcmp(op, "<=") ? o <= 0 : o >= 0;
}

static int parse_cmp(struct expr *e, json_t **out)
{
	static const char *const ops[] = { "==", "!=", "<=", ">=", "<", ">" };
	_cleanup_json_ json_t *l = NULL, *r = NULL;
	const char *op = NULL;
	int rc;

	if ((rc = parse_filtered(e, &l)) < 0)
		return rc;
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
		if (tok_is(e, T_OP, ops[i]))
			op = ops[i];
	if (tok_is(e, T_IDENT, "in"))
		op = "in";
	if (!op) {
		*out = steal_ptr(l);
		return 0;
	}
	if ((rc = next_tok(e)) < 0 || (rc = parse_filtered(e, &r)) < 0)
		return rc;
	*out = json_boolean(compare(op, l, r));
	return 0;
}

static int parse_not(struct expr *e, json_t **out)
{
	_cleanup_json_ json_t *v = NULL;
	int rc;

	if (!tok_is(e, T_IDENT, "not") && !tok_is(e, T_OP, "!"))
		return parse_cmp(e, out);
	if ((rc = next_tok(e)) < 0 || (rc = parse_not(e, &v)) < 0)
		return rc;
	*out = json_boolean(!truthy(v));
	return 0;
}

/* and/or yield booleans, as pongo2 does. */
static int parse_logic(struct expr *e, bool is_or, json_t **out)
{
	_cleanup_json_ json_t *l = NULL;
	int rc = is_or ? parse_logic(e, false, &l) : parse_not(e, &l);

	if (rc < 0)
		return rc;
	while (tok_is(e, T_IDENT, is_or ? "or" : "and") || tok_is(e, T_OP, is_or ? "||" : "&&")) {
		_cleanup_json_ json_t *r = NULL;
		bool v;
		if ((rc = next_tok(e)) < 0 || (rc = is_or ? parse_logic(e, false, &r) : parse_not(e, &r)) < 0)
			return rc;
		v = is_or ? (truthy(l) || truthy(r)) : (truthy(l) && truthy(r));
		json_decref(l);
		l = json_boolean(v);
	}
	*out = steal_ptr(l);
	return 0;
}

static int parse_expr(struct expr *e, json_t **out)
{
	return parse_logic(e, true, out);
}

/* Evaluate a whole expression string; trailing garbage is an error. */
static int eval(struct render *r, const char *s, size_t len, int line, json_t **out)
{
	struct expr e = { .p = s, .end = s + len, .r = r, .line = line };
	_cleanup_json_ json_t *v = NULL;
	int rc;

	if ((rc = next_tok(&e)) < 0)
		return rc;
	if (e.t.kind == T_EOF)
		return TPL_ERR(r, line, "empty expression");
	if ((rc = parse_expr(&e, &v)) < 0)
		return rc;
	if (e.t.kind != T_EOF)
		return TPL_ERR(r, line, "unexpected \"%.*s\"", (int)(e.end - e.t.s), e.t.s);
	*out = steal_ptr(v);
	return 0;
}

/* ==== rendering ==================================================================== */

enum stop { STOP_EOF, STOP_ELIF, STOP_ELSE, STOP_ENDIF };

/* The tag's first word and the rest. */
static void tag_split(const struct node *n, const char **kw, size_t *kwlen, const char **rest,
		      size_t *restlen)
{
	const char *p = n->s, *end = n->s + n->len;

	while (p < end && isspace((unsigned char)*p))
		p++;
	*kw = p;
	while (p < end && !isspace((unsigned char)*p))
		p++;
	*kwlen = (size_t)(p - *kw);
	*rest = p;
	*restlen = (size_t)(end - p);
}

static bool kw_is(const char *kw, size_t len, const char *word)
{
	return len == strlen(word) && memcmp(kw, word, len) == 0;
}

static int render_block(struct render *r, bool active, enum stop *stop, const struct node **at);

static int render_var(struct render *r, const struct node *n, bool active)
{
	_cleanup_json_ json_t *v = NULL;
	int rc = eval(r, n->s, n->len, n->line, &v);

	if (rc < 0)
		return rc;
	if (active && to_string(v, r->out) < 0)
		return cell_err(r->err, 500, ENOMEM, "template: out of memory");
	return 0;
}

static int eval_cond(struct render *r, const struct node *n, bool *out)
{
	const char *kw, *rest;
	size_t kwlen, restlen;
	_cleanup_json_ json_t *v = NULL;
	int rc;

	tag_split(n, &kw, &kwlen, &rest, &restlen);
	if ((rc = eval(r, rest, restlen, n->line, &v)) < 0)
		return rc;
	*out = truthy(v);
	return 0;
}

/* Every branch is parsed, so a syntax error anywhere fails the template. */
static int render_if(struct render *r, const struct node *tag, bool active)
{
	bool cond, taken, seen_else = false;
	const struct node *at = tag;
	enum stop stop;
	int rc;

	if ((rc = eval_cond(r, tag, &cond)) < 0)
		return rc;
	taken = cond;
	for (;;) {
		if ((rc = render_block(r, active && cond, &stop, &at)) < 0)
			return rc;
		if (stop == STOP_ENDIF)
			return 0;
		if (stop == STOP_EOF)
			return TPL_ERR(r, tag->line, "{%% if %%} without {%% endif %%}");
		if (seen_else)
			return TPL_ERR(r, at->line, "{%% %s %%} after {%% else %%}",
				       stop == STOP_ELSE ? "else" : "elif");
		if (stop == STOP_ELSE) {
			seen_else = true;
			cond = !taken;
			continue;
		}
		if ((rc = eval_cond(r, at, &cond)) < 0)
			return rc;
		cond = cond && !taken;
		taken = taken || cond;
	}
}

static int render_tag(struct render *r, const struct node *n, bool active, enum stop *stop, bool *done)
{
	const char *kw, *rest;
	size_t kwlen, restlen;

	tag_split(n, &kw, &kwlen, &rest, &restlen);
	*done = true;
	if (kw_is(kw, kwlen, "elif"))
		return *stop = STOP_ELIF, 0;
	if (kw_is(kw, kwlen, "else"))
		return *stop = STOP_ELSE, 0;
	if (kw_is(kw, kwlen, "endif"))
		return *stop = STOP_ENDIF, 0;
	*done = false;
	if (kw_is(kw, kwlen, "if"))
		return render_if(r, n, active);
	if (kw_is(kw, kwlen, "autoescape") || kw_is(kw, kwlen, "endautoescape"))
		return 0;
	return TPL_ERR(r, n->line, "unsupported tag \"%.*s\"", (int)kwlen, kw);
}

static int render_block(struct render *r, bool active, enum stop *stop, const struct node **at)
{
	while (r->pos < r->n) {
		const struct node *n = &r->nodes[r->pos++];
		bool done = false;
		int rc = 0;

		if (n->type == N_TEXT && active)
			rc = sb_append(r->out, n->s, n->len) < 0
				     ? cell_err(r->err, 500, ENOMEM, "template: out of memory") : 0;
		else if (n->type == N_VAR)
			rc = render_var(r, n, active);
		else if (n->type == N_TAG)
			rc = render_tag(r, n, active, stop, &done);
		if (rc < 0)
			return rc;
		if (done) {
			*at = n;
			return 0;
		}
	}
	*stop = STOP_EOF;
	return 0;
}

int image_template_render(const char *tpl, size_t len, json_t *ctx, strbuf *out, cell_error *err)
{
	struct render r = { .ctx = ctx, .out = out, .err = err };
	const struct node *at = NULL;
	enum stop stop;
	int rc = lex_template(&r, tpl, len);

	if (rc == 0)
		rc = render_block(&r, true, &stop, &at);
	if (rc == 0 && stop != STOP_EOF)
		rc = TPL_ERR(&r, at->line, "{%% %s %%} without {%% if %%}",
			     stop == STOP_ELIF ? "elif" : stop == STOP_ELSE ? "else" : "endif");
	free(r.nodes);
	return rc;
}

/* ==== writing templates into a rootfs ============================================= */

static int openat2_fd(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve)
{
	struct open_how how = { .flags = flags | O_CLOEXEC, .mode = mode, .resolve = resolve };
	int fd, tries = 0;

	/* RESOLVE_IN_ROOT answers EAGAIN when a rename raced the walk. */
	do
		fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
	while (fd < 0 && errno == EAGAIN && ++tries < 16);
	return fd;
}

#define IN_ROOT (RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)

struct apply_ctx {
	int rootfd, tpldirfd;
	uid_t uid;
	gid_t gid;
	const char *templates_dir;
	cell_error *err;
};

static int read_template(struct apply_ctx *a, const char *name, strbuf *out)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	char buf[65536];
	ssize_t n;

	if (!*name || name[0] == '/')
		return cell_err(a->err, 400, EINVAL, "invalid template name \"%s\"", name);
	fd = openat2_fd(a->tpldirfd, name, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0,
			RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
	if (fd < 0)
		return cell_err_sys(a->err, 400, errno, "template %s/%s", a->templates_dir, name);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return cell_err(a->err, 400, EINVAL, "template %s is not a regular file", name);
	if (st.st_size > IMAGE_TEMPLATE_MAX_SIZE)
		return cell_err(a->err, 400, EFBIG, "template %s is larger than %d bytes", name,
				IMAGE_TEMPLATE_MAX_SIZE);
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return cell_err_sys(a->err, 500, errno, "read template %s", name);
		if (out->len + (size_t)n > IMAGE_TEMPLATE_MAX_SIZE || sb_append(out, buf, (size_t)n) < 0)
			return cell_err(a->err, 400, EFBIG, "template %s: too large", name);
	}
	return 0;
}

/* Create missing parents of rel inside the rootfs, owned by the container's root. */
static int make_parents(struct apply_ctx *a, const char *rel)
{
	_cleanup_free_ char *p = strdup(rel);

	if (!p)
		return cell_err(a->err, 500, ENOMEM, "template: out of memory");
	for (char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
		_cleanup_close_ int fd = -1, parent = -1;
		char *base;
		*s = '\0';
		fd = openat2_fd(a->rootfd, p, O_PATH | O_DIRECTORY, 0, IN_ROOT);
		if (fd < 0 && errno != ENOENT)
			return cell_err_sys(a->err, 500, errno, "/%s", p);
		if (fd < 0) {
			base = strrchr(p, '/');
			if (base)
				*base = '\0';
			parent = openat2_fd(a->rootfd, base ? p : ".", O_PATH | O_DIRECTORY, 0, IN_ROOT);
			if (base)
				*base = '/';
			base = base ? base + 1 : p;
			if (parent < 0 || mkdirat(parent, base, 0755) < 0 ||
			    fchownat(parent, base, a->uid, a->gid, AT_SYMLINK_NOFOLLOW) < 0)
				return cell_err_sys(a->err, 500, errno, "mkdir /%s", p);
		}
		*s = '/';
	}
	return 0;
}

/* A new file (possibly through a dangling symlink, as LXD follows them). */
static int open_new(struct apply_ctx *a, const char *rel, bool via_symlink)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	int rc;

	if (!via_symlink && (rc = make_parents(a, rel)) < 0)
		return rc;
	fd = openat2_fd(a->rootfd, rel,
			O_WRONLY | O_CREAT | O_NOCTTY | O_NONBLOCK | (via_symlink ? 0 : O_EXCL), 0644, IN_ROOT);
	if (fd < 0)
		return cell_err_sys(a->err, 500, errno, "create /%s", rel);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return cell_err(a->err, 400, EINVAL, "/%s is not a regular file", rel);
	if (fchown(fd, a->uid, a->gid) < 0 || fchmod(fd, 0644) < 0)
		return cell_err_sys(a->err, 500, errno, "/%s: set owner", rel);
	return steal_fd(fd);
}

/*
 * An existing file: opened as O_PATH and checked before any write-open, so a
 * device node or FIFO planted by the image is never opened for writing.
 */
static int open_existing(struct apply_ctx *a, int pathfd, const char *rel)
{
	struct stat st;
	char proc[64];
	int fd;

	if (fstat(pathfd, &st) < 0)
		return cell_err_sys(a->err, 500, errno, "/%s", rel);
	if (!S_ISREG(st.st_mode))
		return cell_err(a->err, 400, EINVAL, "/%s is not a regular file", rel);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pathfd);
	fd = open(proc, O_WRONLY | O_TRUNC | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return cell_err_sys(a->err, 500, errno, "open /%s", rel);
	return fd;
}

/* fd to write, 0 (with *skip) for create_only on an existing path, or -errno. */
static int open_target(struct apply_ctx *a, const char *rel, bool create_only, bool *skip)
{
	_cleanup_close_ int lfd = openat2_fd(a->rootfd, rel, O_PATH | O_NOFOLLOW, 0, IN_ROOT);
	_cleanup_close_ int pfd = -1;

	*skip = false;
	if (lfd < 0 && errno != ENOENT)
		return cell_err_sys(a->err, 500, errno, "/%s", rel);
	if (lfd >= 0 && create_only) {
		*skip = true;
		return 0;
	}
	if (lfd < 0)
		return open_new(a, rel, false);
	pfd = openat2_fd(a->rootfd, rel, O_PATH, 0, IN_ROOT);
	if (pfd < 0 && errno == ENOENT)
		return open_new(a, rel, true);
	if (pfd < 0)
		return cell_err_sys(a->err, 500, errno, "/%s", rel);
	return open_existing(a, pfd, rel);
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static bool when_has(json_t *tpl, const char *trigger)
{
	size_t i;
	json_t *w;

	json_array_foreach(json_object_get(tpl, "when"), i, w)
		if (json_is_string(w) && strcmp(json_string_value(w), trigger) == 0)
			return true;
	return false;
}

static json_t *render_context(json_t *context, json_t *tpl, const char *path, const char *trigger)
{
	json_t *c = json_is_object(context) ? json_copy(context) : json_object();
	json_t *props = json_object_get(tpl, "properties");

	if (!c)
		return NULL;
	json_object_set_new(c, "trigger", json_string(trigger));
	json_object_set_new(c, "path", json_string(path));
	json_object_set_new(c, "properties", props ? json_incref(props) : json_object());
	/* LXD offers the same map as both container and instance. */
	if (!json_object_get(c, "instance") && json_object_get(c, "container"))
		json_object_set(c, "instance", json_object_get(c, "container"));
	if (!json_object_get(c, "container") && json_object_get(c, "instance"))
		json_object_set(c, "container", json_object_get(c, "instance"));
	return c;
}

static int apply_one(struct apply_ctx *a, const char *path, json_t *tpl, const char *trigger,
		     json_t *context)
{
	_cleanup_sb_ strbuf src = { 0 }, out = { 0 };
	_cleanup_json_ json_t *ctx = render_context(context, tpl, path, trigger);
	_cleanup_close_ int fd = -1;
	const char *rel = path;
	bool skip;
	int rc;

	while (*rel == '/')
		rel++;
	if (!*rel || strstr(path, "/../") || !strncmp(rel, "../", 3) || str_has_suffix(path, "/..") ||
	    !strcmp(rel, ".."))
		return cell_err(a->err, 400, EINVAL, "invalid template target path");
	if (!ctx)
		return cell_err(a->err, 500, ENOMEM, "template: out of memory");
	if ((rc = read_template(a, json_string_value(json_object_get(tpl, "template")) ?: "", &src)) < 0 ||
	    (rc = image_template_render(src.buf ? src.buf : "", src.len, ctx, &out, a->err)) < 0)
		return rc;
	fd = open_target(a, rel, json_is_true(json_object_get(tpl, "create_only")), &skip);
	if (fd < 0 || skip)
		return fd < 0 ? fd : 0;
	if ((rc = write_all(fd, out.buf ? out.buf : "", out.len)) < 0)
		return cell_err_sys(a->err, 500, -rc, "write /%s", rel);
	return 0;
}

/* Opened only once a template fires: most triggers match nothing. */
static int apply_open(struct apply_ctx *a, const char *rootfs, const char *templates_dir)
{
	struct stat st;

	if (a->rootfd >= 0)
		return 0;
	a->rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (a->rootfd < 0 || fstat(a->rootfd, &st) < 0)
		return cell_err_sys(a->err, 500, errno, "open %s", rootfs);
	a->uid = st.st_uid;
	a->gid = st.st_gid;
	a->tpldirfd = open(templates_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (a->tpldirfd < 0)
		return cell_err_sys(a->err, 400, errno, "open %s", templates_dir);
	return 0;
}

int image_templates_apply(const char *rootfs, const char *templates_dir, json_t *templates,
			  const char *trigger, json_t *context, cell_error *err)
{
	struct apply_ctx a = { .rootfd = -1, .tpldirfd = -1, .templates_dir = templates_dir, .err = err };
	const char *path;
	json_t *tpl;
	int rc = 0;

	json_object_foreach(templates, path, tpl) {
		if (!when_has(tpl, trigger))
			continue;
		if ((rc = apply_open(&a, rootfs, templates_dir)) < 0)
			break;
		if ((rc = apply_one(&a, path, tpl, trigger, context)) < 0) {
			cell_err_wrap(err, rc, "template %s", path);
			break;
		}
	}
	if (a.rootfd >= 0)
		close(a.rootfd);
	if (a.tpldirfd >= 0)
		close(a.tpldirfd);
	return rc;
}
