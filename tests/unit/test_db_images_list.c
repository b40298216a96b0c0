/*
 * The image tables' change feed (db_images_changes) and the list snapshot
 * built on it (images_list.h): after every kind of write the snapshot,
 * updated image by image, must equal one built from scratch, and it must
 * re-read only what was written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "daemon/db.h"
#include "db_fixture.h"
#include "daemon/db_images.h"
#include "daemon/images_list.h"

static int setup(void **state)
{
	return db_fixture_open();
}

static int teardown(void **state)
{
	db_fixture_close();
	return 0;
}

/* Fingerprints in no particular order: the snapshot must sort them. */
static void fp_of(int i, char out[65])
{
	for (int k = 0; k < 64; k++)
		out[k] = "0123456789abcdef"[(i * 7 + k * (i + 3)) % 16];
	snprintf(out + 56, 9, "%08x", (unsigned)i);
}

static void add_image(int i, const char *alias)
{
	struct img_record r = { 0 };
	char fp[65];

	fp_of(i, fp);
	r.api.fingerprint = strdup(fp);
	r.api.type = strdup("container");
	r.api.filename = xasprintf("img%d.tar", i);
	r.api.architecture = strdup("x86_64");
	r.api.size = r.meta_size = 1000 + i;
	r.api.properties = json_pack("{s:s, s:o}", "os", "test", "n", json_sprintf("%d", i));
	r.api.profiles = calloc(2, sizeof(char *));
	r.api.profiles[0] = strdup("default");
	r.api.created_at.tv_sec = 1700000000 + i;
	if (alias) {
		r.api.aliases = calloc(1, sizeof(*r.api.aliases));
		r.api.aliases[0].name = strdup(alias);
		r.api.aliases[0].description = strdup("");
		r.api.n_aliases = 1;
	}
	assert_int_equal(db_image_insert(&r, NULL), 0);
	img_record_clear(&r);
}

/* l, refreshed, must equal a snapshot built from nothing. */
static void refresh_and_compare(struct img_list *l)
{
	struct img_list fresh = { 0 };

	assert_int_equal(img_list_refresh(l, NULL), 0);
	assert_int_equal(img_list_refresh(&fresh, NULL), 0);
	assert_true(fresh.last_full);
	assert_int_equal(l->n, fresh.n);
	for (size_t i = 0; i < l->n; i++) {
		assert_string_equal(l->v[i].fp, fresh.v[i].fp);
		assert_int_equal(l->v[i].id, fresh.v[i].id);
		assert_int_equal(l->v[i].public, fresh.v[i].public);
		assert_int_equal(l->v[i].len, fresh.v[i].len);
		assert_string_equal(l->v[i].text, fresh.v[i].text);
		assert_true(json_equal(l->v[i].obj, fresh.v[i].obj));
		{
			char *want = json_dumps(l->v[i].obj, JSON_COMPACT);
			assert_string_equal(l->v[i].text, want);
			free(want);
		}
		if (i)
			assert_true(strcmp(l->v[i - 1].fp, l->v[i].fp) < 0);
	}
	img_list_free(&fresh);
}

/* Refresh, expecting an incremental update that re-read `reread` images. */
static void expect_delta(struct img_list *l, size_t reread)
{
	uint64_t gen = l->gen;

	refresh_and_compare(l);
	assert_false(l->last_full);
	assert_int_equal(l->last_reread, reread);
	assert_true(l->gen > gen);
}

static const char *text_of(struct img_list *l, int i)
{
	char fp[65];

	fp_of(i, fp);
	for (size_t k = 0; k < l->n; k++)
		if (!strcmp(l->v[k].fp, fp))
			return l->v[k].text;
	return NULL;
}

static struct img_record get_image(int i)
{
	struct img_record r;
	char fp[65];

	fp_of(i, fp);
	assert_int_equal(db_image_get(fp, false, &r, NULL), 0);
	return r;
}

static void test_each_write_updates_one_image(void **state)
{
	struct img_list l = { 0 };
	struct img_record r;
	struct timespec now = { 1800000000, 5 };
	char fp[65], fp2[65];

	for (int i = 0; i < 10; i++)
		add_image(i, NULL);
	refresh_and_compare(&l);
	assert_true(l.last_full);
	assert_int_equal(l.n, 10);

	/* Nothing written: nothing read. */
	uint64_t gen = l.gen;
	assert_int_equal(img_list_refresh(&l, NULL), 0);
	assert_int_equal(l.gen, gen);
	assert_false(l.last_full);
	assert_int_equal(l.last_reread, 0);

	/* PUT/PATCH: properties and public. */
	r = get_image(3);
	json_object_set_new(r.api.properties, "os", json_string("patched"));
	r.api.public = true;
	assert_int_equal(db_image_update(&r, NULL), 0);
	img_record_clear(&r);
	expect_delta(&l, 1);
	assert_non_null(strstr(text_of(&l, 3), "\"os\":\"patched\""));

	/* last_used_at (a container was created from it). */
	fp_of(4, fp);
	assert_int_equal(db_image_set_last_used(fp, &now, NULL), 0);
	expect_delta(&l, 1);
	assert_null(strstr(text_of(&l, 4), "\"last_used_at\":\"0001-01-01T00:00:00Z\""));

	/* Aliases: create, retarget (both images change), rename, delete. */
	assert_int_equal(db_alias_add("al", fp, "d", NULL), 0);
	expect_delta(&l, 1);
	assert_non_null(strstr(text_of(&l, 4), "\"name\":\"al\""));
	fp_of(5, fp2);
	assert_int_equal(db_alias_update("al", fp2, "d2", NULL), 0);
	expect_delta(&l, 2);
	assert_null(strstr(text_of(&l, 4), "\"name\":\"al\""));
	assert_non_null(strstr(text_of(&l, 5), "\"description\":\"d2\""));
	assert_int_equal(db_alias_rename("al", "al2", NULL), 0);
	expect_delta(&l, 1);
	assert_non_null(strstr(text_of(&l, 5), "\"name\":\"al2\""));
	assert_int_equal(db_alias_delete("al2", NULL), 0);
	expect_delta(&l, 1);
	assert_null(strstr(text_of(&l, 5), "al2"));

	/* Import (with an alias) and delete (which takes its aliases). */
	add_image(10, "new");
	expect_delta(&l, 1);
	assert_int_equal(l.n, 11);
	assert_non_null(strstr(text_of(&l, 10), "\"name\":\"new\""));
	fp_of(10, fp);
	assert_int_equal(db_image_delete(fp, NULL), 0);
	expect_delta(&l, 0);
	assert_int_equal(l.n, 10);
	assert_null(text_of(&l, 10));

	/* A write by other code (a profile rename rewrites images.profiles). */
	fp_of(6, fp);
	assert_int_equal(db_exec(NULL, "UPDATE images SET profiles = '[\"renamed\"]' WHERE fingerprint = ?",
				 "s", fp), 1);
	expect_delta(&l, 1);
	assert_non_null(strstr(text_of(&l, 6), "\"profiles\":[\"renamed\"]"));

	/* Several writes to one image before the next read: one re-read. */
	fp_of(7, fp);
	for (int i = 0; i < 5; i++) {
		now.tv_sec++;
		assert_int_equal(db_image_set_last_used(fp, &now, NULL), 0);
	}
	expect_delta(&l, 1);
	img_list_free(&l);
}

static int failing_tx(void *data, cell_error *err)
{
	char fp[65];

	fp_of(2, fp);
	assert_int_equal(db_exec(err, "UPDATE images SET public = 1 WHERE fingerprint = ?", "s", fp), 1);
	return cell_err(err, 400, EINVAL, "changed my mind");
}

static void test_rolled_back_write_changes_nothing(void **state)
{
	struct img_list l = { 0 };
	cell_error err;
	char *before;

	for (int i = 0; i < 4; i++)
		add_image(i, NULL);
	refresh_and_compare(&l);
	before = strdup(text_of(&l, 2));
	assert_true(db_tx(failing_tx, NULL, &err) < 0);
	refresh_and_compare(&l);
	assert_string_equal(text_of(&l, 2), before);
	free(before);
	/* A failed insert (taken alias) leaves no image behind either. */
	{
		char fp0[65];
		fp_of(0, fp0);
		assert_int_equal(db_alias_add("taken", fp0, "", NULL), 0);
		expect_delta(&l, 1);
	}
	{
		struct img_record r = { 0 };
		char fp[65];
		fp_of(99, fp);
		r.api.fingerprint = strdup(fp);
		r.api.architecture = strdup("x86_64");
		r.api.properties = json_object();
		r.api.aliases = calloc(1, sizeof(*r.api.aliases));
		r.api.aliases[0].name = strdup("taken");
		r.api.n_aliases = 1;
		assert_true(db_image_insert(&r, &err) < 0);
		img_record_clear(&r);
	}
	refresh_and_compare(&l);
	assert_int_equal(l.n, 4);
	img_list_free(&l);
}

static void test_bulk_and_lost_changes_rebuild(void **state)
{
	struct img_list l = { 0 };
	char a[65], b[65];

	for (int i = 0; i < 40; i++)
		add_image(i, NULL);
	refresh_and_compare(&l);

	/* Every image written (a profile rename over all of them is this):
	 * still image by image while the feed remembers the writes. */
	assert_int_equal(db_exec(NULL, "UPDATE images SET profiles = '[]'", NULL), 40);
	expect_delta(&l, 40);

	/* More writes than the feed remembers, even to two images. */
	fp_of(0, a);
	fp_of(1, b);
	for (int i = 0; i <= DB_IMAGES_DELTA_MAX; i++) {
		struct timespec t = { 1800000000 + i, 0 };
		assert_int_equal(db_image_set_last_used(i % 2 ? a : b, &t, NULL), 0);
	}
	refresh_and_compare(&l);
	assert_true(l.last_full);
	/* ... one fewer is still followed. */
	for (int i = 0; i < DB_IMAGES_DELTA_MAX; i++) {
		struct timespec t = { 1900000000 + i, 0 };
		assert_int_equal(db_image_set_last_used(i % 2 ? a : b, &t, NULL), 0);
	}
	expect_delta(&l, 2);

	/* db_images_touch: everyone re-reads everything. */
	db_images_touch();
	refresh_and_compare(&l);
	assert_true(l.last_full);
	img_list_free(&l);
}

static void test_reopen_reinstalls_the_feed(void **state)
{
	struct img_list l = { 0 };
	cell_error err;
	char fp[65];

	for (int i = 0; i < 3; i++)
		add_image(i, NULL);
	refresh_and_compare(&l);
	/* The triggers lived on the old connection: the first read on the new
	 * one re-reads everything and puts them back, so later writes are
	 * followed again (the last check fails without them). */
	db_close();
	assert_int_equal(db_open(db_fixture_dir, &err), 0);
	fp_of(1, fp);
	assert_int_equal(db_alias_add("after-reopen", fp, "", NULL), 0);
	refresh_and_compare(&l);
	assert_true(l.last_full);
	assert_non_null(strstr(text_of(&l, 1), "after-reopen"));
	assert_int_equal(db_alias_delete("after-reopen", NULL), 0);
	expect_delta(&l, 1);
	img_list_free(&l);
}

static void test_list_ids(void **state)
{
	struct img_record *v = NULL;
	size_t n = 0;
	int64_t ids[3];

	for (int i = 0; i < 5; i++)
		add_image(i, i == 2 ? "two" : NULL);
	assert_int_equal(db_image_list(&v, &n, false, NULL), 0);
	assert_int_equal(n, 5);
	ids[0] = v[4].id;
	ids[1] = 12345;           /* gone */
	ids[2] = v[1].id;
	img_record_list_free(v, n);
	assert_int_equal(db_image_list_ids(ids, 3, &v, &n, NULL), 0);
	assert_int_equal(n, 2);
	assert_true(strcmp(v[0].api.fingerprint, v[1].api.fingerprint) < 0);
	assert_true((v[0].id == ids[0] && v[1].id == ids[2]) || (v[0].id == ids[2] && v[1].id == ids[0]));
	img_record_list_free(v, n);
	assert_int_equal(db_image_list_ids(ids, 0, &v, &n, NULL), 0);
	assert_int_equal(n, 0);
	assert_null(v);
}

/* The snapshot's own serialiser writes exactly what jansson writes. */
static void test_json_text_matches_jansson(void **state)
{
	char all[128], *got, *want;
	json_t *o = json_object(), *arr = json_array();
	size_t len = 0;

	for (int c = 1; c < 128; c++)
		all[c - 1] = (char)c;
	all[127] = '\0';
	json_object_set_new(o, "ascii", json_string(all));
	json_object_set_new(o, "utf8", json_string("caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80 a/b"));
	json_object_set_new(o, "k\"ey\n\x01", json_string(""));
	json_object_set_new(o, "nul inside", json_stringn("a\0b", 3));
	json_object_set_new(o, "empty_obj", json_object());
	json_object_set_new(o, "empty_arr", json_array());
	json_array_append_new(arr, json_integer(0));
	json_array_append_new(arr, json_integer(-1));
	json_array_append_new(arr, json_integer(INT64_MAX));
	json_array_append_new(arr, json_integer(INT64_MIN));
	json_array_append_new(arr, json_true());
	json_array_append_new(arr, json_false());
	json_array_append_new(arr, json_null());
	json_array_append_new(arr, json_real(1.5));
	json_array_append_new(arr, json_pack("{s:[i,{}]}", "nested", 7));
	json_object_set_new(o, "values", arr);
	got = img_list_json_text(o, &len);
	want = json_dumps(o, JSON_COMPACT);
	assert_non_null(got);
	assert_string_equal(got, want);
	assert_int_equal(len, strlen(want));
	free(got);
	free(want);
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_each_write_updates_one_image, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rolled_back_write_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bulk_and_lost_changes_rebuild, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_reinstalls_the_feed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_ids, setup, teardown),
		cmocka_unit_test(test_json_text_matches_jansson),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
