/*
 * LXD's collection filters (`GET /1.0/images?filter=...`, lxd/filter):
 * clauses "[not] <field> <eq|ne> <value>" joined left to right with "and" /
 * "or", no precedence, values optionally "double quoted" (spaces inside).
 * Fields are the object's JSON keys, dotted for nesting; the rest of the
 * path after a string map's name is one key, as LXD's ("properties.os",
 * "config.user.foo").
 *
 * Matching works on the API object's JSON, so any collection can use it.
 * String values compare as LXD does: a case-insensitive regular expression
 * anchored at both ends unless it holds ^ or $ (POSIX ERE here, RE2 in LXD),
 * or a case-insensitive comparison when the value is not a valid
 * expression.  Where LXD never matches (booleans and numbers compare as Go
 * interface values against a string), this compares their JSON text, so
 * "public eq true" works; a missing field never equals anything.
 */
#ifndef CELL_DAEMON_API_FILTER_H
#define CELL_DAEMON_API_FILTER_H

#include <stdbool.h>
#include <jansson.h>

#include "common/error.h"

struct api_filter;

/* 400 "Invalid filter: ..." on a malformed string.  "" gives a filter
 * that matches everything. */
int api_filter_parse(const char *s, struct api_filter **out, cell_error *err);
bool api_filter_match(const struct api_filter *f, json_t *obj);
void api_filter_free(struct api_filter *f);

#endif
