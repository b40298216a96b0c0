#include "api/image.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"

/* ---- time ------------------------------------------------------------------ */

void api_image_time_format(const struct timespec *ts, char out[40])
{
	char base[32], frac[16] = "", tmp[64];
	struct tm tm;
	time_t sec = ts->tv_sec;

	if (ts->tv_sec == 0 && ts->tv_nsec == 0) {
		snprintf(out, 40, "0001-01-01T00:00:00Z");
		return;
	}
	gmtime_r(&sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	if (ts->tv_nsec > 0 && ts->tv_nsec < 1000000000) {
		size_t n;
		snprintf(frac, sizeof(frac), ".%09ld", ts->tv_nsec);
		for (n = strlen(frac); frac[n - 1] == '0'; n--)
			frac[n - 1] = '\0';
	}
	snprintf(tmp, sizeof(tmp), "%s%sZ", base, frac);
	snprintf(out, 40, "%.39s", tmp);
}

static int parse_zone(const char *p, long *offset)
{
	int zh, zm, n = 0;

	if ((p[0] == 'Z' || p[0] == 'z') && !p[1]) {
		*offset = 0;
		return 0;
	}
	if ((p[0] != '+' && p[0] != '-') || sscanf(p + 1, "%2d:%2d%n", &zh, &zm, &n) != 2 || p[1 + n] ||
	    n != 5 || zh > 23 || zm > 59)
		return -EINVAL;
	*offset = (p[0] == '-' ? -1 : 1) * (zh * 3600L + zm * 60L);
	return 0;
}

int api_image_time_parse(const char *s, struct timespec *out)
{
	int y, mo, d, h, mi, sec, n = 0;
	long nsec = 0, offset = 0, scale = 100000000;
	const char *p;
	struct tm tm = { 0 };

	if (!s || sscanf(s, "%4d-%2d-%2d%*[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
	    n != 19 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	p = s + n;
	if (*p == '.') {
		if (!isdigit((unsigned char)p[1]))
			return -EINVAL;
		for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
			nsec += scale ? (*p - '0') * scale : 0;
	}
	if (parse_zone(p, &offset) < 0)
		return -EINVAL;
	if (y <= 1 && mo == 1 && d == 1 && !h && !mi && !sec && !nsec) {
		*out = (struct timespec){ 0, 0 };
		return 0;
	}
	tm = (struct tm){ .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
			  .tm_min = mi, .tm_sec = sec };
	*out = (struct timespec){ timegm(&tm) - offset, nsec };
	return 0;
}

static json_t *time_json(const struct timespec *ts)
{
	char buf[40];
	api_image_time_format(ts, buf);
	return json_string(buf);
}

/* ---- small validation helpers --------------------------------------------- */

bool api_image_fingerprint_valid(const char *s, bool prefix_ok)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++)
		if (!isxdigit((unsigned char)s[n]) || isupper((unsigned char)s[n]))
			return false;
	return prefix_ok ? n > 0 && n <= 64 : n == 64;
}

bool api_image_alias_name_valid(const char *name)
{
	if (!name || !*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p == '/' || *p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static int field_string(json_t *j, const char *key, bool required, const char **out,
			cell_error *err)
{
	json_t *v = json_object_get(j, key);

	*out = NULL;
	if (!v || json_is_null(v)) {
		if (required)
			return cell_err(err, 400, EINVAL, "%s is required", key);
		return 0;
	}
	if (!json_is_string(v))
		return cell_err(err, 400, EINVAL, "%s must be a string", key);
	*out = json_string_value(v);
	return 0;
}

static int field_bool(json_t *j, const char *key, bool *present, bool *out, cell_error *err)
{
	json_t *v = json_object_get(j, key);

	*present = v && !json_is_null(v);
	if (*present && !json_is_boolean(v))
		return cell_err(err, 400, EINVAL, "%s must be a boolean", key);
	*out = *present && json_is_true(v);
	return 0;
}

/* map[string]string as Go decodes it: null is an empty map. */
static int field_string_map(json_t *j, const char *key, json_t **out, cell_error *err)
{
	json_t *v = json_object_get(j, key), *x;
	const char *k;

	*out = NULL;
	if (!v)
		return 0;
	if (json_is_null(v)) {
		*out = json_object();
		return 0;
	}
	if (!json_is_object(v))
		return cell_err(err, 400, EINVAL, "%s must be an object of strings", key);
	json_object_foreach(v, k, x)
		if (!json_is_string(x))
			return cell_err(err, 400, EINVAL, "%s.%s must be a string", key, k);
	*out = json_incref(v);
	return 0;
}

static int field_time(json_t *j, const char *key, bool *present, struct timespec *out,
		      cell_error *err)
{
	const char *s;
	int rc = field_string(j, key, false, &s, err);

	*present = s != NULL;
	if (rc < 0 || !s)
		return rc;
	if (api_image_time_parse(s, out) < 0)
		return cell_err(err, 400, EINVAL, "%s: invalid time \"%s\" (want RFC 3339)", key, s);
	return 0;
}

static void strv_free(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

static int field_strv(json_t *j, const char *key, bool *present, char ***out, cell_error *err)
{
	json_t *v = json_object_get(j, key), *x;
	char **res;
	size_t i;

	*out = NULL;
	*present = v && !json_is_null(v);
	if (!*present)
		return 0;
	if (!json_is_array(v))
		return cell_err(err, 400, EINVAL, "%s must be an array of strings", key);
	res = calloc(json_array_size(v) + 1, sizeof(char *));
	if (!res)
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_array_foreach(v, i, x) {
		if (!json_is_string(x) || !(res[i] = strdup(json_string_value(x)))) {
			strv_free(res);
			return cell_err(err, 400, EINVAL, "%s[%zu] must be a string", key, i);
		}
	}
	*out = res;
	return 0;
}

static char **strv_default(void)
{
	char **v = calloc(2, sizeof(char *));

	if (v && !(v[0] = strdup("default"))) {
		free(v);
		return NULL;
	}
	return v;
}

static json_t *strv_json(char **v)
{
	json_t *a = json_array();

	for (char **p = v; a && p && *p; p++)
		json_array_append_new(a, json_string(*p));
	return a;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* ---- api_image ------------------------------------------------------------- */

void api_image_alias_free(struct api_image_alias *a)
{
	free(a->name);
	free(a->description);
	free(a->target);
	free(a->type);
	*a = (struct api_image_alias){ 0 };
}

void api_image_free(struct api_image *img)
{
	free(img->fingerprint);
	free(img->filename);
	free(img->architecture);
	free(img->type);
	json_decref(img->properties);
	for (size_t i = 0; i < img->n_aliases; i++)
		api_image_alias_free(&img->aliases[i]);
	free(img->aliases);
	json_decref(img->update_source);
	strv_free(img->profiles);
	*img = (struct api_image){ 0 };
}

static json_t *aliases_json(const struct api_image *img)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < img->n_aliases; i++)
		json_array_append_new(a, json_pack("{s:s,s:s}", "name", img->aliases[i].name ?: "",
						   "description", img->aliases[i].description ?: ""));
	return a;
}

json_t *api_image_to_json(const struct api_image *img)
{
	/* Field order follows Go's marshalling of api.Image (ImagePut first). */
	json_t *j = json_pack("{s:b,s:o,s:b,s:o,s:o,s:o,s:s,s:b,s:s,s:s,s:I}",
			      "auto_update", img->auto_update,
			      "properties", img->properties ? json_incref(img->properties) : json_object(),
			      "public", img->public,
			      "expires_at", time_json(&img->expires_at),
			      "profiles", strv_json(img->profiles),
			      "aliases", aliases_json(img),
			      "architecture", img->architecture ?: "",
			      "cached", img->cached,
			      "filename", img->filename ?: "",
			      "fingerprint", img->fingerprint ?: "",
			      "size", (json_int_t)img->size);

	if (!j)
		return NULL;
	if (img->update_source)
		json_object_set(j, "update_source", img->update_source);
	json_object_set_new(j, "type", json_string(img->type ?: "container"));
	json_object_set_new(j, "created_at", time_json(&img->created_at));
	json_object_set_new(j, "last_used_at", time_json(&img->last_used_at));
	json_object_set_new(j, "uploaded_at", time_json(&img->uploaded_at));
	return j;
}

struct image_put {
	bool has_public, public, has_auto, auto_update, has_expires, has_profiles;
	json_t *properties;
	struct timespec expires;
	char **profiles;
};

static int image_put_parse(json_t *j, struct image_put *p, cell_error *err)
{
	int rc;

	if (!json_is_object(j))
		return cell_err(err, 400, EINVAL, "request body must be a JSON object");
	if ((rc = field_bool(j, "public", &p->has_public, &p->public, err)) < 0 ||
	    (rc = field_bool(j, "auto_update", &p->has_auto, &p->auto_update, err)) < 0 ||
	    (rc = field_time(j, "expires_at", &p->has_expires, &p->expires, err)) < 0 ||
	    (rc = field_string_map(j, "properties", &p->properties, err)) < 0)
		return rc;
	if ((rc = field_strv(j, "profiles", &p->has_profiles, &p->profiles, err)) < 0) {
		json_decref(p->properties);
		return rc;
	}
	return 0;
}

/* PATCH keeps existing properties the body does not name, as LXD does. */
static void merge_properties(json_t *old, json_t *add)
{
	const char *k;
	json_t *v;

	json_object_foreach(old, k, v)
		if (!json_object_get(add, k))
			json_object_set(add, k, v);
}

int api_image_from_json(json_t *j, struct api_image *img, bool patch, cell_error *err)
{
	struct image_put p = { 0 };
	int rc = image_put_parse(j, &p, err);

	if (rc < 0)
		return rc;
	if (!patch && !p.has_profiles && !(p.profiles = strv_default())) {
		json_decref(p.properties);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	if (!patch || p.has_public)
		img->public = p.public;
	if (!patch || p.has_auto)
		img->auto_update = p.auto_update;
	if (p.properties || !patch) {
		json_t *np = p.properties ? p.properties : json_object();
		if (patch)
			merge_properties(img->properties, np);
		json_decref(img->properties);
		img->properties = np;
	}
	/* A zero expires_at means "leave it", in PUT as in PATCH. */
	if (p.has_expires && (p.expires.tv_sec || p.expires.tv_nsec))
		img->expires_at = p.expires;
	if (p.profiles) {
		strv_free(img->profiles);
		img->profiles = p.profiles;
	}
	return 0;
}

static int decode_aliases(json_t *j, struct api_image *out, cell_error *err)
{
	json_t *a = json_object_get(j, "aliases"), *x;
	size_t i;

	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return cell_err(err, 400, EINVAL, "aliases must be an array");
	out->aliases = calloc(json_array_size(a) + 1, sizeof(*out->aliases));
	if (!out->aliases)
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_array_foreach(a, i, x) {
		const char *name = NULL, *desc = NULL;
		int rc;
		if (!json_is_object(x))
			return cell_err(err, 400, EINVAL, "aliases[%zu] must be an object", i);
		if ((rc = field_string(x, "name", false, &name, err)) < 0 ||
		    (rc = field_string(x, "description", false, &desc, err)) < 0)
			return rc;
		out->aliases[i].name = strdup(name ?: "");
		out->aliases[i].description = strdup(desc ?: "");
		out->n_aliases++;
	}
	return 0;
}

static int decode_strings(json_t *j, struct api_image *o, cell_error *err)
{
	const char *fp, *fn, *arch, *type;
	int rc;

	if ((rc = field_string(j, "fingerprint", false, &fp, err)) < 0 ||
	    (rc = field_string(j, "filename", false, &fn, err)) < 0 ||
	    (rc = field_string(j, "architecture", false, &arch, err)) < 0 ||
	    (rc = field_string(j, "type", false, &type, err)) < 0)
		return rc;
	o->fingerprint = dup_or_null(fp);
	o->filename = dup_or_null(fn);
	o->architecture = dup_or_null(arch);
	o->type = dup_or_null(type);
	return 0;
}

static int decode_times(json_t *j, struct api_image *o, cell_error *err)
{
	bool present;
	int rc;

	if ((rc = field_time(j, "created_at", &present, &o->created_at, err)) < 0 ||
	    (rc = field_time(j, "uploaded_at", &present, &o->uploaded_at, err)) < 0 ||
	    (rc = field_time(j, "last_used_at", &present, &o->last_used_at, err)) < 0)
		return rc;
	return 0;
}

int api_image_decode(json_t *j, struct api_image *out, cell_error *err)
{
	struct api_image img = { 0 };
	json_t *v;
	bool present;
	int rc;

	if (!json_is_object(j))
		return cell_err(err, 400, EINVAL, "image must be a JSON object");
	rc = api_image_from_json(j, &img, true, err);
	if (rc == 0 && (rc = field_bool(j, "cached", &present, &img.cached, err)) == 0 &&
	    (rc = decode_strings(j, &img, err)) == 0 && (rc = decode_times(j, &img, err)) == 0)
		rc = decode_aliases(j, &img, err);
	if (rc == 0 && (v = json_object_get(j, "size")) && !json_is_null(v)) {
		if (!json_is_integer(v))
			rc = cell_err(err, 400, EINVAL, "size must be an integer");
		img.size = json_integer_value(v);
	}
	if (rc == 0 && json_is_object(v = json_object_get(j, "update_source")))
		img.update_source = json_incref(v);
	if (rc < 0) {
		api_image_free(&img);
		return rc;
	}
	api_image_free(out);
	*out = img;
	return 0;
}

/* ---- aliases --------------------------------------------------------------- */

json_t *api_image_alias_to_json(const struct api_image_alias *a)
{
	return json_pack("{s:s,s:s,s:s,s:s}", "name", a->name ?: "", "description",
			 a->description ?: "", "target", a->target ?: "", "type",
			 a->type ?: "container");
}

static int alias_type_check(const char *type, cell_error *err)
{
	if (type && *type && strcmp(type, "container") && strcmp(type, "virtual-machine"))
		return cell_err(err, 400, EINVAL, "invalid alias type \"%s\"", type);
	return 0;
}

int api_image_alias_from_json(json_t *j, struct api_image_alias *out, cell_error *err)
{
	const char *name, *desc, *target, *type;
	struct api_image_alias a = { 0 };
	int rc;

	if (!json_is_object(j))
		return cell_err(err, 400, EINVAL, "request body must be a JSON object");
	if ((rc = field_string(j, "name", true, &name, err)) < 0 ||
	    (rc = field_string(j, "target", true, &target, err)) < 0 ||
	    (rc = field_string(j, "description", false, &desc, err)) < 0 ||
	    (rc = field_string(j, "type", false, &type, err)) < 0 ||
	    (rc = alias_type_check(type, err)) < 0)
		return rc;
	if (!api_image_alias_name_valid(name))
		return cell_err(err, 400, EINVAL, "invalid alias name \"%s\"", name);
	if (!*target)
		return cell_err(err, 400, EINVAL, "target is required");
	a.name = strdup(name);
	a.target = strdup(target);
	a.description = strdup(desc ?: "");
	a.type = strdup(type && *type ? type : "container");
	if (!a.name || !a.target || !a.description || !a.type) {
		api_image_alias_free(&a);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	api_image_alias_free(out);
	*out = a;
	return 0;
}

int api_image_alias_put_from_json(json_t *j, struct api_image_alias *a, bool patch,
				  cell_error *err)
{
	const char *desc, *target;
	char *nd = NULL, *nt = NULL;
	int rc;

	if (!json_is_object(j))
		return cell_err(err, 400, EINVAL, "request body must be a JSON object");
	if ((rc = field_string(j, "target", !patch, &target, err)) < 0 ||
	    (rc = field_string(j, "description", false, &desc, err)) < 0)
		return rc;
	if (target && !*target)
		return cell_err(err, 400, EINVAL, "target is required");
	if ((target && !(nt = strdup(target))) || ((desc || !patch) && !(nd = strdup(desc ?: "")))) {
		free(nt);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	if (nt) {
		free(a->target);
		a->target = nt;
	}
	if (nd) {
		free(a->description);
		a->description = nd;
	}
	return 0;
}
