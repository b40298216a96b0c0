/*
 * Output as LXD's client renders it: tables (olekukonko/tablewriter layout:
 * centred headers, a rule between rows), csv (Go's encoding/csv), json
 * (compact, one line) and yaml of the raw API objects, compact tables.
 */
#ifndef CELL_CLIENT_OUTPUT_H
#define CELL_CLIENT_OUTPUT_H

#include <stdbool.h>
#include <stdio.h>
#include <jansson.h>

#include "common/error.h"
#include "common/strbuf.h"

enum cli_format { CLI_FMT_TABLE, CLI_FMT_CSV, CLI_FMT_JSON, CLI_FMT_YAML, CLI_FMT_COMPACT };

/* "table", "csv", "json", "yaml", "compact"; LXD's wording on anything else. */
int cli_format_parse(const char *s, enum cli_format *out, cell_error *err);

struct cli_table {
	size_t ncols, nrows, cap;
	char **header;   /* ncols */
	char **cells;    /* nrows * ncols; a cell may hold several lines */
};

struct cli_table *cli_table_new(size_t ncols, const char *const *header);
/* Copy one row of ncols strings (NULL reads as ""). */
int cli_table_add(struct cli_table *t, const char *const *row);
/* LXD's row order: column by column, empty cells last. */
void cli_table_sort(struct cli_table *t);
void cli_table_free(struct cli_table *t);
static inline void cli_table_freep(struct cli_table **t) { cli_table_free(*t); }
#define _cleanup_table_ __attribute__((cleanup(cli_table_freep)))

/* Render table, compact or csv text into out. */
int cli_table_render(const struct cli_table *t, enum cli_format fmt, strbuf *out);
/* Print a list: t for table/csv/compact, raw (the API objects) for json/yaml. */
int cli_render(FILE *f, enum cli_format fmt, const struct cli_table *t, json_t *raw, cell_error *err);

/* YAML of v on f (lxc ... show). */
int cli_print_yaml(FILE *f, json_t *v, unsigned flags, cell_error *err);
/* Indented with tabs, as Go's json encoder with SetIndent("", "\t") prints
 * it (lxc query); sort_keys as Go orders an interface{}'s maps. Caller frees. */
char *cli_json_pretty(json_t *v, bool sort_keys);
/* One line, compact (--format json). Caller frees. */
char *cli_json_compact(json_t *v);

/* RFC 3339 ("2024-01-02T03:04:05.123Z", "+01:00" offsets) as LXD's
 * "2006/01/02 15:04 UTC"; the input itself when it does not parse. */
void cli_format_time_utc(const char *rfc3339, char out[32]);

/* Terminal columns a UTF-8 string takes (East Asian wide characters as 2). */
size_t cli_text_width(const char *s, size_t len);

#endif
