#include "daemon/api_filter.h"

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/strbuf.h"

struct filter_clause {
	bool or;          /* joined to what came before with "or" (else "and") */
	bool not;
	bool ne;
	char *field;
	char *value;
	bool has_re;
	regex_t re;
};

struct api_filter {
	struct filter_clause *c;
	size_t n;
};

void api_filter_free(struct api_filter *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n; i++) {
		free(f->c[i].field);
		free(f->c[i].value);
		if (f->c[i].has_re)
			regfree(&f->c[i].re);
	}
	free(f->c);
	free(f);
}

/* Whitespace-separated words, as Go's strings.Fields. */
static char **split_fields(const char *s, size_t *n)
{
	char **v = NULL;
	size_t cnt = 0;

	for (const char *p = s; *p;) {
		size_t len;
		char **nv;
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f')
			p++;
		if (!*p)
			break;
		len = strcspn(p, " \t\n\r\v\f");
		nv = realloc(v, (cnt + 2) * sizeof(char *));
		if (!nv)
			goto fail;
		v = nv;
		if (!(v[cnt] = strndup(p, len)))
			goto fail;
		v[++cnt] = NULL;
		p += len;
	}
	*n = cnt;
	return v ? v : calloc(1, sizeof(char *));
fail:
	cell_strvfreep(&v);
	return NULL;
}

static int bad(cell_error *err, const char *why)
{
	return cell_err(err, 400, EINVAL, "Invalid filter: %s", why);
}

/* The value starting at w[*i]: one word, or "quoted words joined". */
static int take_value(char **w, size_t n, size_t *i, char **out, cell_error *err)
{
	_cleanup_sb_ strbuf sb = { 0 };
	const char *first = w[*i];
	size_t fl = strlen(first);

	if (first[0] != '"') {
		*out = strdup(first);
		return *out ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
	}
	if (fl >= 2 && first[fl - 1] == '"') {
		*out = strndup(first + 1, fl - 2);
		return *out ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
	}
	sb_puts(&sb, first + 1);
	for (;;) {
		size_t l;
		if (++*i == n)
			return bad(err, "unterminated quote");
		l = strlen(w[*i]);
		sb_puts(&sb, " ");
		if (l && w[*i][l - 1] == '"') {
			sb_append(&sb, w[*i], l - 1);
			break;
		}
		sb_puts(&sb, w[*i]);
	}
	*out = sb_steal(&sb);
	return *out ? 0 : cell_err(err, 500, ENOMEM, "out of memory");
}

static void compile_value(struct filter_clause *c)
{
	_cleanup_free_ char *pat = NULL;

	if (strchr(c->value, '^') || strchr(c->value, '$'))
		pat = strdup(c->value);
	else if ((pat = malloc(strlen(c->value) + 5)))
		sprintf(pat, "^(%s)$", c->value);
	c->has_re = pat && regcomp(&c->re, pat, REG_EXTENDED | REG_ICASE | REG_NOSUB) == 0;
}

static int parse_words(char **w, size_t n, struct api_filter *f, cell_error *err)
{
	bool or = false;
	int rc;

	for (size_t i = 0; i < n;) {
		struct filter_clause *c, *nc = realloc(f->c, (f->n + 1) * sizeof(*nc));
		if (!nc)
			return cell_err(err, 500, ENOMEM, "out of memory");
		f->c = nc;
		c = &f->c[f->n++];
		memset(c, 0, sizeof(*c));
		c->or = or;
		if (!strcasecmp(w[i], "not")) {
			c->not = true;
			if (++i == n)
				return bad(err, "incomplete not clause");
		}
		c->field = strdup(w[i]);
		if (++i == n)
			return bad(err, "clause has no operator");
		if (!strcasecmp(w[i], "ne"))
			c->ne = true;
		else if (strcasecmp(w[i], "eq"))
			return bad(err, "unknown operator (use eq or ne)");
		if (++i == n)
			return bad(err, "clause has no value");
		if ((rc = take_value(w, n, &i, &c->value, err)) < 0)
			return rc;
		if (!c->field)
			return cell_err(err, 500, ENOMEM, "out of memory");
		compile_value(c);
		if (++i < n) {
			if (!strcmp(w[i], "and"))
				or = false;
			else if (!strcmp(w[i], "or"))
				or = true;
			else
				return bad(err, "invalid clause composition");
			if (++i == n)
				return bad(err, "unterminated compound clause");
		}
	}
	return 0;
}

int api_filter_parse(const char *s, struct api_filter **out, cell_error *err)
{
	_cleanup_strv_ char **w = NULL;
	struct api_filter *f;
	size_t n = 0;
	int rc;

	*out = NULL;
	w = split_fields(s ? s : "", &n);
	f = calloc(1, sizeof(*f));
	if (!w || !f) {
		free(f);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	rc = parse_words(w, n, f, err);
	if (rc < 0) {
		api_filter_free(f);
		return rc;
	}
	*out = f;
	return 0;
}

/* The value at a dotted path; a string map's key may itself hold dots. */
static json_t *lookup(json_t *obj, const char *path)
{
	json_t *v;
	const char *dot;
	char key[256];
	size_t kl;

	while (json_is_object(obj)) {
		if ((v = json_object_get(obj, path)))
			return v;
		dot = strchr(path, '.');
		if (!dot)
			return NULL;
		kl = (size_t)(dot - path);
		if (kl >= sizeof(key))
			return NULL;
		memcpy(key, path, kl);
		key[kl] = '\0';
		obj = json_object_get(obj, key);
		path = dot + 1;
	}
	return NULL;
}

static bool clause_match(const struct filter_clause *c, json_t *obj)
{
	json_t *v = lookup(obj, c->field);
	_cleanup_free_ char *text = NULL;
	const char *s;
	bool m;

	if (!v || json_is_null(v)) {
		m = false;
	} else {
		if (json_is_string(v))
			s = json_string_value(v);
		else
			s = text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
		if (!s)
			m = false;
		else if (c->has_re)
			m = regexec(&c->re, s, 0, NULL, 0) == 0;
		else
			m = !strcasecmp(s, c->value);
	}
	if (c->ne)
		m = !m;
	return c->not ? !m : m;
}

bool api_filter_match(const struct api_filter *f, json_t *obj)
{
	bool match = true;

	for (size_t i = 0; f && i < f->n; i++) {
		bool m = clause_match(&f->c[i], obj);
		match = f->c[i].or ? (match || m) : (match && m);
	}
	return match;
}
