#include "client/output.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/yaml_util.h"

int cli_format_parse(const char *s, enum cli_format *out, cell_error *err)
{
	static const struct { const char *name; enum cli_format fmt; } names[] = {
		{ "table", CLI_FMT_TABLE }, { "csv", CLI_FMT_CSV }, { "json", CLI_FMT_JSON },
		{ "yaml", CLI_FMT_YAML }, { "compact", CLI_FMT_COMPACT },
	};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		if (!strcmp(s, names[i].name)) {
			*out = names[i].fmt;
			return 0;
		}
	}
	return cell_err(err, 400, EINVAL, "Invalid format \"%s\"", s);
}

/* ------------------------------------------------------------- tables */

struct cli_table *cli_table_new(size_t ncols, const char *const *header)
{
	struct cli_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ncols = ncols;
	t->header = calloc(ncols, sizeof(char *));
	if (!t->header) {
		free(t);
		return NULL;
	}
	for (size_t i = 0; i < ncols; i++) {
		t->header[i] = strdup(header[i] ? header[i] : "");
		if (!t->header[i]) {
			cli_table_free(t);
			return NULL;
		}
	}
	return t;
}

int cli_table_add(struct cli_table *t, const char *const *row)
{
	size_t base = t->nrows * t->ncols;

	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **nc = realloc(t->cells, cap * t->ncols * sizeof(char *));
		if (!nc)
			return -ENOMEM;
		t->cells = nc;
		t->cap = cap;
	}
	for (size_t i = 0; i < t->ncols; i++) {
		t->cells[base + i] = strdup(row[i] ? row[i] : "");
		if (!t->cells[base + i]) {
			while (i--)
				free(t->cells[base + i]);
			return -ENOMEM;
		}
	}
	t->nrows++;
	return 0;
}

/* LXD's utils.StringList: first differing column decides; an empty cell sorts last. */
static int row_cmp(const void *pa, const void *pb, void *arg)
{
	char *const *a = pa, *const *b = pb;
	size_t x, ncols = *(const size_t *)arg;

	for (x = 0; x + 1 < ncols; x++)
		if (strcmp(a[x], b[x]))
			break;
	if (!strcmp(a[x], b[x]))
		return 0;
	if (!*a[x])
		return 1;
	if (!*b[x])
		return -1;
	return strcmp(a[x], b[x]);
}

void cli_table_sort(struct cli_table *t)
{
	if (t->nrows < 2)
		return;
	/* Rows are fixed-size runs of ncols cell pointers, so qsort moves them whole. */
	qsort_r(t->cells, t->nrows, t->ncols * sizeof(char *), row_cmp, &t->ncols);
}

void cli_table_free(struct cli_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; t->header && i < t->ncols; i++)
		free(t->header[i]);
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->header);
	free(t->cells);
	free(t);
}

/* East Asian wide and emoji ranges take two columns, as go-runewidth counts them. */
static int cp_width(unsigned cp)
{
	if ((cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) || (cp >= 0xac00 && cp <= 0xd7a3) ||
	    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
	    (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1f64f) ||
	    (cp >= 0x1f900 && cp <= 0x1f9ff) || (cp >= 0x20000 && cp <= 0x3fffd))
		return 2;
	if ((cp >= 0x300 && cp <= 0x36f) || cp == 0x200b)
		return 0;
	return 1;
}

size_t cli_text_width(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	size_t w = 0;

	while (p < end) {
		unsigned cp = *p;
		int extra = cp >= 0xf0 ? 3 : cp >= 0xe0 ? 2 : cp >= 0xc0 ? 1 : 0;
		if (extra) {
			cp &= 0x3fu >> extra;
			for (int i = 0; i < extra && p + 1 < end; i++)
				cp = (cp << 6) | (*++p & 0x3f);
		}
		p++;
		w += (size_t)cp_width(cp);
	}
	return w;
}

/* Line `idx` of a multi-line cell: start and length, or NULL when it has fewer lines. */
static const char *cell_line(const char *cell, size_t idx, size_t *len)
{
	for (; idx; idx--) {
		cell = strchr(cell, '\n');
		if (!cell)
			return NULL;
		cell++;
	}
	*len = strcspn(cell, "\n");
	return cell;
}

static size_t cell_lines(const char *cell)
{
	size_t n = 1;
	for (; *cell; cell++)
		n += *cell == '\n';
	return n;
}

static size_t *column_widths(const struct cli_table *t)
{
	size_t *w = calloc(t->ncols, sizeof(*w));

	if (!w)
		return NULL;
	for (size_t c = 0; c < t->ncols; c++) {
		w[c] = cli_text_width(t->header[c], strlen(t->header[c]));
		for (size_t r = 0; r < t->nrows; r++) {
			const char *cell = t->cells[r * t->ncols + c], *ln;
			size_t len;
			for (size_t i = 0; (ln = cell_line(cell, i, &len)); i++)
				if (cli_text_width(ln, len) > w[c])
					w[c] = cli_text_width(ln, len);
		}
	}
	return w;
}

static int pad(strbuf *out, size_t n)
{
	static const char spaces[] = "                                ";
	while (n) {
		size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
		if (sb_append(out, spaces, k) < 0)
			return -ENOMEM;
		n -= k;
	}
	return 0;
}

static int rule(strbuf *out, const size_t *w, size_t ncols)
{
	int rc = sb_puts(out, "+");
	for (size_t c = 0; c < ncols && rc == 0; c++) {
		for (size_t i = 0; i < w[c] + 2 && rc == 0; i++)
			rc = sb_puts(out, "-");
		if (rc == 0)
			rc = sb_puts(out, "+");
	}
	return rc ? rc : sb_puts(out, "\n");
}

/* Text in a column of width w: left-aligned, or centred as tablewriter centres headers. */
static int put_cell(strbuf *out, const char *s, size_t len, size_t w, bool centre)
{
	size_t tw = cli_text_width(s, len), gap = w > tw ? w - tw : 0, left = centre ? gap / 2 : 0;

	if (pad(out, left) < 0 || sb_append(out, s, len) < 0 || pad(out, gap - left) < 0)
		return -ENOMEM;
	return 0;
}

/* One table row (possibly several lines tall). */
static int put_row(strbuf *out, char *const *cells, const size_t *w, size_t ncols, bool header, bool bordered)
{
	size_t height = 1;

	for (size_t c = 0; c < ncols; c++)
		if (cell_lines(cells[c]) > height)
			height = cell_lines(cells[c]);
	for (size_t i = 0; i < height; i++) {
		for (size_t c = 0; c < ncols; c++) {
			size_t len = 0;
			const char *ln = cell_line(cells[c], i, &len);
			if (sb_puts(out, bordered ? "| " : c == 0 ? "  " : " ") < 0 ||
			    put_cell(out, ln ? ln : "", ln ? len : 0, w[c], header) < 0 || sb_puts(out, " ") < 0)
				return -ENOMEM;
		}
		if (sb_puts(out, bordered ? "|\n" : " \n") < 0)
			return -ENOMEM;
	}
	return 0;
}

static int render_grid(const struct cli_table *t, bool bordered, strbuf *out)
{
	_cleanup_free_ size_t *w = column_widths(t);
	int rc;

	if (!w)
		return -ENOMEM;
	if (bordered && (rc = rule(out, w, t->ncols)) < 0)
		return rc;
	if ((rc = put_row(out, t->header, w, t->ncols, true, bordered)) < 0)
		return rc;
	if (bordered && (rc = rule(out, w, t->ncols)) < 0)
		return rc;
	for (size_t r = 0; r < t->nrows; r++) {
		if ((rc = put_row(out, t->cells + r * t->ncols, w, t->ncols, false, bordered)) < 0)
			return rc;
		if (bordered && (rc = rule(out, w, t->ncols)) < 0)
			return rc;
	}
	return 0;
}

/* Go's encoding/csv quoting rules. */
static int csv_field(strbuf *out, const char *f)
{
	bool quote = *f && (strpbrk(f, ",\"\r\n") || f[0] == ' ' || f[0] == '\t' || !strcmp(f, "\\."));

	if (!quote)
		return sb_puts(out, f);
	if (sb_puts(out, "\"") < 0)
		return -ENOMEM;
	for (; *f; f++)
		if ((*f == '"' ? sb_puts(out, "\"\"") : sb_append(out, f, 1)) < 0)
			return -ENOMEM;
	return sb_puts(out, "\"");
}

static int render_csv(const struct cli_table *t, strbuf *out)
{
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++)
			if ((c && sb_puts(out, ",") < 0) || csv_field(out, t->cells[r * t->ncols + c]) < 0)
				return -ENOMEM;
		if (sb_puts(out, "\n") < 0)
			return -ENOMEM;
	}
	return 0;
}

int cli_table_render(const struct cli_table *t, enum cli_format fmt, strbuf *out)
{
	switch (fmt) {
	case CLI_FMT_CSV:
		return render_csv(t, out);
	case CLI_FMT_COMPACT:
		return render_grid(t, false, out);
	default:
		return render_grid(t, true, out);
	}
}

/* -------------------------------------------------------------- json */

char *cli_json_compact(json_t *v)
{
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

char *cli_json_pretty(json_t *v, bool sort_keys)
{
	_cleanup_free_ char *s = json_dumps(v, JSON_INDENT(1) | JSON_ENCODE_ANY | (sort_keys ? JSON_SORT_KEYS : 0));
	strbuf out = {0};

	if (!s)
		return NULL;
	/* Indent is one space per level and strings never hold a raw newline,
	 * so leading spaces are exactly the depth: turn each into a tab. */
	for (const char *p = s; *p;) {
		size_t depth = strspn(p, " "), n;
		for (size_t i = 0; i < depth; i++)
			if (sb_puts(&out, "\t") < 0)
				goto oom;
		p += depth;
		n = strcspn(p, "\n");
		if (sb_append(&out, p, n) < 0 || (p[n] && sb_puts(&out, "\n") < 0))
			goto oom;
		p += n + (p[n] == '\n');
	}
	return sb_steal(&out);
oom:
	sb_free(&out);
	return NULL;
}

/* ------------------------------------------------------------- output */

int cli_print_yaml(FILE *f, json_t *v, unsigned flags, cell_error *err)
{
	_cleanup_sb_ strbuf sb = {0};
	int rc = yaml_emit_json(v, flags, &sb, err);

	if (rc < 0)
		return rc;
	if (sb.len)
		fwrite(sb.buf, 1, sb.len, f);
	return 0;
}

int cli_render(FILE *f, enum cli_format fmt, const struct cli_table *t, json_t *raw, cell_error *err)
{
	_cleanup_sb_ strbuf sb = {0};

	if (fmt == CLI_FMT_JSON) {
		_cleanup_free_ char *s = cli_json_compact(raw);
		if (!s)
			return cell_err(err, 500, ENOMEM, "out of memory");
		fprintf(f, "%s\n", s);
		return 0;
	}
	if (fmt == CLI_FMT_YAML)
		return cli_print_yaml(f, raw, 0, err);
	if (cli_table_render(t, fmt, &sb) < 0)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (sb.len)
		fwrite(sb.buf, 1, sb.len, f);
	return 0;
}

/* -------------------------------------------------------------- time */

void cli_format_time_utc(const char *rfc3339, char out[32])
{
	struct tm tm = {0};
	const char *p = rfc3339 ? strptime(rfc3339, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	long off = 0;
	time_t t;

	if (!p) {
		snprintf(out, 32, "%s", rfc3339 ? rfc3339 : "");
		return;
	}
	if (*p == '.')
		while (isdigit((unsigned char)*++p))
			;
	if ((*p == '+' || *p == '-') && strlen(p) >= 6) {
		off = (atol(p + 1) * 60 + atol(p + 4)) * 60;
		if (*p == '-')
			off = -off;
	}
	t = timegm(&tm) - off;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y/%m/%d %H:%M UTC", &tm);
}
