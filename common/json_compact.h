/* Fast compact JSON serialisation into a strbuf (json_compact.c). */
#ifndef CELL_COMMON_JSON_COMPACT_H
#define CELL_COMMON_JSON_COMPACT_H

#include <jansson.h>

#include "common/strbuf.h"

/* Append j as json_dumps(j, JSON_COMPACT) would write it; <0 on ENOMEM. */
int json_compact_write(strbuf *b, const json_t *j);

#endif
