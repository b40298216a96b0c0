/*
 * YAML <-> JSON (jansson) with libyaml.  Emitting looks like LXD's `lxc ...
 * show` (Go's yaml.v2): block style, two-space indent, sequences flush with
 * their key, strings quoted only when they would read back as something else,
 * multi-line strings as literal blocks, keys in insertion order.
 */
#ifndef CELL_COMMON_YAML_UTIL_H
#define CELL_COMMON_YAML_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "common/error.h"
#include "common/strbuf.h"

enum yaml_emit_flags {
	YAML_EMIT_SORT_KEYS = 1 << 0,   /* as Go prints maps (config:, devices:) */
};

/* Append the YAML document for v to out. */
int yaml_emit_json(json_t *v, unsigned flags, strbuf *out, cell_error *err);
/* Same into a new string (caller frees); NULL on failure. */
char *yaml_dump_json(json_t *v, unsigned flags);

struct yaml_parse_opts {
	/* Every scalar stays a string ("" for null), as map[string]string wants. */
	bool all_strings;
	/* Or only below mapping keys with one of these names, at any depth,
	 * e.g. {"config", "devices", NULL} for an instance. */
	const char *const *string_keys;
};

/* Parse the first document.  Plain scalars become null, true/false, integers
 * and reals only when they clearly are one; quoted scalars stay strings.
 * An empty document gives json null.  o may be NULL. */
int yaml_parse_json(const char *buf, size_t len, const struct yaml_parse_opts *o, json_t **out,
		    cell_error *err);

/* Would this plain scalar read back as something other than a string? */
bool yaml_scalar_needs_quotes(const char *s);

#endif
