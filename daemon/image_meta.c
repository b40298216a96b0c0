#include "daemon/image_meta.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <yaml.h>

#include "common/cleanup.h"
#include "common/tarstream.h"
#include "common/yaml_util.h"

/* ---- architectures (LXD's shared/osarch tables) ----------------------------- */

struct arch {
	int id;
	const char *name;
	const char *aliases[6];
	int personalities[3];
};

static const struct arch arches[] = {
	{ 1, "i686", { "i386", "i586", "386", "x86", "generic_32" }, { 0 } },
	{ 2, "x86_64", { "amd64", "generic_64" }, { 1 } },
	{ 3, "armv7l", { "armhf", "armhfp", "armv7a_hardfp", "armv7", "armv7a_vfpv3_hardfp" }, { 13 } },
	{ 4, "aarch64", { "arm64", "arm64_generic" }, { 13, 3, 14 } },
	{ 5, "ppc", { "powerpc" }, { 0 } },
	{ 6, "ppc64", { "powerpc64" }, { 5 } },
	{ 7, "ppc64le", { "ppc64el" }, { 0 } },
	{ 8, "s390x", { NULL }, { 0 } },
	{ 9, "mips", { "mipsel", "mipsle" }, { 0 } },
	{ 10, "mips64", { "mips64el", "mips64le" }, { 9 } },
	{ 11, "riscv32", { NULL }, { 0 } },
	{ 12, "riscv64", { NULL }, { 0 } },
	{ 13, "armv6l", { "armel", "arm" }, { 0 } },
	{ 14, "armv8l", { NULL }, { 13, 3 } },
	{ 15, "loongarch64", { "loong64" }, { 0 } },
};

static const struct arch *arch_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(arches); i++) {
		if (strcmp(arches[i].name, name) == 0)
			return &arches[i];
		for (size_t j = 0; j < ARRAY_SIZE(arches[i].aliases) && arches[i].aliases[j]; j++)
			if (strcmp(arches[i].aliases[j], name) == 0)
				return &arches[i];
	}
	return NULL;
}

const char *image_arch_normalize(const char *name)
{
	const struct arch *a = arch_find(name);
	return a ? a->name : NULL;
}

int image_arch_id(const char *name)
{
	const struct arch *a = arch_find(name);
	return a ? a->id : 0;
}

const char *image_arch_name(int id)
{
	for (size_t i = 0; i < ARRAY_SIZE(arches); i++)
		if (arches[i].id == id)
			return arches[i].name;
	return NULL;
}

size_t image_arch_host_supported(const char **out, size_t max)
{
	struct utsname u;
	const struct arch *a;
	size_t n = 0;

	if (uname(&u) < 0 || !(a = arch_find(u.machine)) || !max)
		return 0;
	out[n++] = a->name;
	for (size_t i = 0; i < ARRAY_SIZE(a->personalities) && a->personalities[i] && n < max; i++)
		out[n++] = image_arch_name(a->personalities[i]);
	return n;
}

/* ---- metadata.yaml ---------------------------------------------------------- */

void image_meta_free(struct image_meta *m)
{
	free(m->architecture);
	json_decref(m->properties);
	json_decref(m->templates);
	*m = (struct image_meta){ 0 };
}

#define META_ERR(err, ...) cell_err(err, 400, EINVAL, "metadata.yaml: " __VA_ARGS__)

/*
 * metadata.yaml comes from untrusted images: an alias-expansion bomb would
 * grow a 1 MiB file into gigabytes, and images never use aliases, so a cheap
 * event pass refuses them before the document is built.
 */
static int meta_refuse_aliases(const char *buf, size_t len, cell_error *err)
{
	yaml_parser_t p;
	yaml_event_t ev;
	int rc = 0;
	bool done = false;

	if (!yaml_parser_initialize(&p))
		return cell_err(err, 500, ENOMEM, "metadata.yaml: out of memory");
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	while (!done && rc == 0) {
		if (!yaml_parser_parse(&p, &ev)) {
			rc = META_ERR(err, "line %zu: %s", p.problem_mark.line + 1,
				      p.problem ? p.problem : "invalid YAML");
			break;
		}
		if (ev.type == YAML_ALIAS_EVENT)
			rc = META_ERR(err, "line %zu: YAML aliases are not supported", ev.start_mark.line + 1);
		done = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	return rc;
}

static int meta_int(json_t *doc, const char *key, bool required, int64_t *out, cell_error *err)
{
	json_t *v = json_object_get(doc, key);
	const char *s;
	char *end;
	long long n;

	*out = 0;
	if (!v || (json_is_string(v) && !*json_string_value(v))) {
		if (required)
			return META_ERR(err, "missing %s", key);
		return 0;
	}
	if (!json_is_string(v))
		return META_ERR(err, "%s must be an integer", key);
	s = json_string_value(v);
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || *end || end == s)
		return META_ERR(err, "%s must be an integer, got \"%s\"", key, s);
	if (required && n == 0)
		return META_ERR(err, "missing %s", key);
	*out = n;
	return 0;
}

/* map[string]string: every value a string (the parser keeps scalars as strings). */
static int meta_string_map(json_t *v, const char *what, json_t **out, cell_error *err)
{
	const char *k;
	json_t *x;

	if (!v || json_is_null(v) || (json_is_string(v) && !*json_string_value(v))) {
		*out = json_object();
		return *out ? 0 : cell_err(err, 500, ENOMEM, "metadata.yaml: out of memory");
	}
	if (!json_is_object(v))
		return META_ERR(err, "%s must be a mapping", what);
	json_object_foreach(v, k, x)
		if (!json_is_string(x))
			return META_ERR(err, "%s.%s must be a string", what, k);
	*out = json_incref(v);
	return 0;
}

static int meta_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "y" }, *const no[] = { "false", "no", "off", "n", "" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		if (strcasecmp(s, yes[i]) == 0)
			return *out = true, 0;
	for (size_t i = 0; i < ARRAY_SIZE(no); i++)
		if (strcasecmp(s, no[i]) == 0)
			return *out = false, 0;
	return -EINVAL;
}

static int meta_when(json_t *v, const char *path, json_t **out, cell_error *err)
{
	size_t i;
	json_t *x;

	if (!v || (json_is_string(v) && !*json_string_value(v))) {
		*out = json_array();
		return 0;
	}
	if (!json_is_array(v))
		return META_ERR(err, "templates.%s.when must be a list", path);
	json_array_foreach(v, i, x)
		if (!json_is_string(x))
			return META_ERR(err, "templates.%s.when[%zu] must be a string", path, i);
	*out = json_incref(v);
	return 0;
}

static int meta_template(json_t *v, const char *path, json_t **out, cell_error *err)
{
	json_t *tpl = json_object_get(v, "template"), *co = json_object_get(v, "create_only");
	_cleanup_json_ json_t *when = NULL, *props = NULL;
	bool create_only = false;
	char what[256];
	int rc;

	if (!json_is_object(v))
		return META_ERR(err, "templates.%s must be a mapping", path);
	if (tpl && !json_is_string(tpl))
		return META_ERR(err, "templates.%s.template must be a string", path);
	if (co && (!json_is_string(co) || meta_bool(json_string_value(co), &create_only) < 0))
		return META_ERR(err, "templates.%s.create_only must be true or false", path);
	snprintf(what, sizeof(what), "templates.%s.properties", path);
	if ((rc = meta_when(json_object_get(v, "when"), path, &when, err)) < 0 ||
	    (rc = meta_string_map(json_object_get(v, "properties"), what, &props, err)) < 0)
		return rc;
	*out = json_pack("{s:O,s:b,s:s,s:O}", "when", when, "create_only", create_only, "template",
			 tpl ? json_string_value(tpl) : "", "properties", props);
	return *out ? 0 : cell_err(err, 500, ENOMEM, "metadata.yaml: out of memory");
}

static int meta_templates(json_t *v, json_t **out, cell_error *err)
{
	_cleanup_json_ json_t *res = json_object();
	const char *path;
	json_t *t;

	if (!res)
		return cell_err(err, 500, ENOMEM, "metadata.yaml: out of memory");
	if (v && !json_is_null(v) && !(json_is_string(v) && !*json_string_value(v))) {
		if (!json_is_object(v))
			return META_ERR(err, "templates must be a mapping");
		json_object_foreach(v, path, t) {
			json_t *one = NULL;
			int rc = meta_template(t, path, &one, err);
			if (rc < 0)
				return rc;
			json_object_set_new(res, path, one);
		}
	}
	*out = steal_ptr(res);
	return 0;
}

static int meta_arch(json_t *doc, char **out, cell_error *err)
{
	json_t *v = json_object_get(doc, "architecture");
	const char *norm;

	if (!v || !json_is_string(v) || !*json_string_value(v))
		return META_ERR(err, "missing architecture");
	norm = image_arch_normalize(json_string_value(v));
	if (!norm)
		return META_ERR(err, "unsupported architecture \"%s\"", json_string_value(v));
	*out = strdup(norm);
	return *out ? 0 : cell_err(err, 500, ENOMEM, "metadata.yaml: out of memory");
}

int image_meta_parse(const char *buf, size_t len, struct image_meta *out, cell_error *err)
{
	const struct yaml_parse_opts opts = { .all_strings = true };
	_cleanup_image_meta_ struct image_meta m = { 0 };
	_cleanup_json_ json_t *doc = NULL;
	int rc;

	if (len > IMAGE_META_MAX_SIZE)
		return META_ERR(err, "larger than %d bytes", IMAGE_META_MAX_SIZE);
	if ((rc = meta_refuse_aliases(buf, len, err)) < 0)
		return rc;
	if ((rc = yaml_parse_json(buf, len, &opts, &doc, err)) < 0)
		return cell_err_wrap(err, rc, "metadata.yaml");
	if (!json_is_object(doc))
		return META_ERR(err, "not a mapping");
	if ((rc = meta_arch(doc, &m.architecture, err)) < 0 ||
	    (rc = meta_int(doc, "creation_date", true, &m.creation_date, err)) < 0 ||
	    (rc = meta_int(doc, "expiry_date", false, &m.expiry_date, err)) < 0 ||
	    (rc = meta_string_map(json_object_get(doc, "properties"), "properties", &m.properties, err)) < 0 ||
	    (rc = meta_templates(json_object_get(doc, "templates"), &m.templates, err)) < 0)
		return rc;
	image_meta_free(out);
	*out = m;
	m = (struct image_meta){ 0 };
	return 0;
}

int image_meta_load(const char *tarball, struct image_meta *out, cell_error *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int rc = tar_read_member(tarball, "metadata.yaml", IMAGE_META_MAX_SIZE, &buf, &len, err);

	if (rc == -ENOENT)
		return cell_err(err, 400, ENOENT, "image tarball has no metadata.yaml");
	if (rc < 0)
		return cell_err_wrap(err, rc, "read metadata.yaml");
	return image_meta_parse(buf, len, out, err);
}

char *image_meta_to_yaml(const struct image_meta *m)
{
	_cleanup_json_ json_t *doc = json_object();

	if (!doc ||
	    json_object_set_new(doc, "architecture", json_string(m->architecture ? m->architecture : "")) ||
	    json_object_set_new(doc, "creation_date", json_integer(m->creation_date)) ||
	    (m->expiry_date && json_object_set_new(doc, "expiry_date", json_integer(m->expiry_date))) ||
	    json_object_set_new(doc, "properties", m->properties ? json_incref(m->properties) : json_object()) ||
	    json_object_set_new(doc, "templates", m->templates ? json_incref(m->templates) : json_object()))
		return NULL;
	return yaml_dump_json(doc, 0);
}
