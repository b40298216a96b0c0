#include "daemon/images_list.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/image.h"
#include "common/cleanup.h"
#include "common/json_compact.h"
#include "common/strbuf.h"
#include "daemon/db.h"
#include "daemon/db_images.h"

static int oom(cell_error *err) { return cell_err(err, 500, ENOMEM, "out of memory"); }

static void entry_clear(struct img_list_entry *e)
{
	json_decref(e->obj);
	free(e->text);
	memset(e, 0, sizeof(*e));
}

static void entries_free(struct img_list_entry *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		entry_clear(&v[i]);
	free(v);
}

void img_list_free(struct img_list *l)
{
	entries_free(l->v, l->n);
	sb_free(&l->scratch);
	memset(l, 0, sizeof(*l));
}

/* The text of obj written in scratch (kept between calls: no regrowing
 * for every image), copied out at its size. */
static char *json_text(strbuf *scratch, const json_t *obj, size_t *len)
{
	char *out;

	sb_reset(scratch);
	if (!obj || json_compact_write(scratch, obj) < 0 || !(out = malloc(scratch->len + 1)))
		return NULL;
	memcpy(out, scratch->buf, scratch->len + 1);
	*len = scratch->len;
	return out;
}

char *img_list_json_text(const json_t *obj, size_t *len)
{
	_cleanup_sb_ strbuf scratch = { 0 };

	return json_text(&scratch, obj, len);
}

/* The object of r; its text too unless `old` is the same image unchanged
 * (serialising is the dearest part of building an entry). */
static int entry_build(struct img_list *l, const struct img_record *r, struct img_list_entry *old,
		       struct img_list_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->id = r->id;
	e->public = r->api.public;
	snprintf(e->fp, sizeof(e->fp), "%s", r->api.fingerprint);
	if (!(e->obj = api_image_to_json(&r->api)))
		return -ENOMEM;
	if (old && old->text && json_equal(old->obj, e->obj)) {
		e->text = steal_ptr(old->text);
		e->len = old->len;
		return 0;
	}
	if (!(e->text = json_text(&l->scratch, e->obj, &e->len))) {
		entry_clear(e);
		return -ENOMEM;
	}
	return 0;
}

/* First entry whose fingerprint is not below fp. */
static size_t lower_bound(const struct img_list *l, const char *fp)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(l->v[mid].fp, fp) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Every image read again (v sorted by fingerprint, as the snapshot). */
static int rebuild_all(struct img_list *l, const struct img_record *v, size_t n, cell_error *err)
{
	struct img_list_entry *e = calloc(n ? n : 1, sizeof(*e));
	size_t j = 0;

	if (!e)
		return oom(err);
	for (size_t i = 0; i < n; i++) {
		struct img_list_entry *old = NULL;
		while (j < l->n && strcmp(l->v[j].fp, v[i].api.fingerprint) < 0)
			j++;
		if (j < l->n && !strcmp(l->v[j].fp, v[i].api.fingerprint))
			old = &l->v[j];
		if (entry_build(l, &v[i], old, &e[i]) < 0) {
			/* Texts were taken from the old entries: start over. */
			entries_free(e, i);
			img_list_free(l);
			return oom(err);
		}
	}
	entries_free(l->v, l->n);
	l->v = e;
	l->n = l->cap = n;
	return 0;
}

static bool delta_has(const struct db_images_delta *d, int64_t id)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->ids[i] == id)
			return true;
	return false;
}

/* The images of the delta: dropped, then put back from v (those that
 * still exist).  Entries are built before anything is touched, so a
 * failure leaves the snapshot as it was. */
static int apply_delta(struct img_list *l, const struct db_images_delta *d, const struct img_record *v,
		       size_t n, cell_error *err)
{
	_cleanup_free_ struct img_list_entry *fresh = calloc(n ? n : 1, sizeof(*fresh));
	size_t w = 0;

	if (!fresh)
		return oom(err);
	for (size_t i = 0; i < n; i++)
		if (entry_build(l, &v[i], NULL, &fresh[i]) < 0) {
			for (size_t k = 0; k < i; k++)
				entry_clear(&fresh[k]);
			return oom(err);
		}
	if (l->n + n > l->cap) {
		size_t cap = (l->n + n) * 2;
		struct img_list_entry *nv = realloc(l->v, cap * sizeof(*nv));
		if (!nv) {
			for (size_t k = 0; k < n; k++)
				entry_clear(&fresh[k]);
			return oom(err);
		}
		l->v = nv;
		l->cap = cap;
	}
	for (size_t r = 0; r < l->n; r++) {
		if (delta_has(d, l->v[r].id))
			entry_clear(&l->v[r]);
		else
			l->v[w++] = l->v[r];
	}
	l->n = w;
	for (size_t i = 0; i < n; i++) {
		size_t pos = lower_bound(l, fresh[i].fp);
		if (pos < l->n && !strcmp(l->v[pos].fp, fresh[i].fp)) {
			/* Cannot happen while the feed is exact; a replaced row
			 * must not show twice if it ever does. */
			entry_clear(&l->v[pos]);
			l->v[pos] = fresh[i];
			continue;
		}
		memmove(&l->v[pos + 1], &l->v[pos], (l->n - pos) * sizeof(*l->v));
		l->v[pos] = fresh[i];
		l->n++;
	}
	return 0;
}

int img_list_refresh(struct img_list *l, cell_error *err)
{
	struct db_images_delta d;
	struct img_record *v = NULL;
	size_t n = 0;
	int rc;

	l->last_reread = 0;
	l->last_full = false;
	if (l->gen && l->gen == db_images_generation())
		return 0;
	/* The feed and the rows are read under one hold of the lock: no
	 * write falls between them.  Serialising happens after. */
	db_lock();
	db_images_changes(l->gen, &d);
	rc = d.all ? db_image_list(&v, &n, false, err) : db_image_list_ids(d.ids, d.n, &v, &n, err);
	db_unlock();
	if (rc < 0)
		return rc;
	rc = d.all ? rebuild_all(l, v, n, err) : apply_delta(l, &d, v, n, err);
	img_record_list_free(v, n);
	if (rc < 0)
		return rc;
	l->gen = d.gen;
	l->last_reread = n;
	l->last_full = d.all;
	return 0;
}
