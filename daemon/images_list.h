/*
 * What GET /1.0/images answers from: a snapshot of the image store, each
 * image's API object (for ?filter=) beside its compact JSON text, sorted
 * by fingerprint, so a listing is a concatenation.  Clients ask often
 * (lxc image list, every launch by alias).
 *
 * The snapshot follows the tables through their change feed
 * (db_images_changes): after writes it re-reads and re-serialises only
 * the images that were written; it reads everything only on its first
 * use, or when the feed lost track (more writes since the last list than
 * it remembers, a new database connection, db_images_touch).
 *
 * One thread at a time (the loop thread in celld).
 */
#ifndef CELL_DAEMON_IMAGES_LIST_H
#define CELL_DAEMON_IMAGES_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "common/error.h"
#include "common/strbuf.h"

struct img_list_entry {
	int64_t id;
	bool public;
	char fp[65];
	json_t *obj;      /* api_image_to_json */
	char *text;       /* obj, compact */
	size_t len;
};

struct img_list {
	uint64_t gen;     /* db_images_generation it reflects; 0: never built */
	struct img_list_entry *v;
	size_t n, cap;
	/* What the last refresh did, for tests: images re-read, full rebuild. */
	size_t last_reread;
	bool last_full;
	strbuf scratch;   /* where texts are written */
};

/* Bring l up to date with the tables (a cheap check when they did not
 * move).  On failure l is consistent but may be stale or emptied (gen 0:
 * the next call re-reads everything). */
int img_list_refresh(struct img_list *l, cell_error *err);
void img_list_free(struct img_list *l);

/* json_dumps(obj, JSON_COMPACT), faster (what the entries' text is made
 * with); NULL when out of memory.  *len is the text's length. */
char *img_list_json_text(const json_t *obj, size_t *len);

#endif
