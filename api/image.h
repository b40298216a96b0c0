/*
 * LXD's image objects on the wire: api.Image (GET /1.0/images/<fp>), its
 * writable part api.ImagePut (PUT/PATCH), and api.ImageAliasesEntry
 * (/1.0/images/aliases).  Field names and time formats are LXD's exactly.
 */
#ifndef CELL_API_IMAGE_H
#define CELL_API_IMAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/error.h"

struct api_image_alias {
	char *name;
	char *description;
	char *target;   /* fingerprint; only in alias entries */
	char *type;     /* "container"; only in alias entries, NULL encodes "container" */
};

struct api_image {
	char *fingerprint;
	char *filename;
	int64_t size;
	char *architecture;          /* LXD name: "x86_64" */
	char *type;                  /* NULL encodes "container" */
	bool public, auto_update, cached;
	json_t *properties;          /* object of strings; NULL encodes {} */
	struct api_image_alias *aliases;   /* name + description */
	size_t n_aliases;
	/* {0, 0} is Go's zero time ("0001-01-01T00:00:00Z"): never used / no expiry. */
	struct timespec created_at, expires_at, uploaded_at, last_used_at;
	json_t *update_source;       /* {alias, certificate, protocol, server, image_type}; NULL omits */
	char **profiles;             /* NULL-terminated; NULL encodes [] */
};

void api_image_free(struct api_image *img);
void api_image_alias_free(struct api_image_alias *a);

/* The full object as GET answers it. */
json_t *api_image_to_json(const struct api_image *img);
/* Apply a PUT (patch=false: absent writable fields reset as LXD does —
 * public/auto_update false, properties {}, profiles ["default"], expires_at
 * kept) or PATCH (patch=true: only present fields change, properties merge)
 * body to img.  Only public, auto_update, properties, expires_at and profiles
 * are writable; other fields in the body are ignored, as Go's decoder does.
 * On error (400 with the field named) img is unchanged. */
int api_image_from_json(json_t *j, struct api_image *img, bool patch, cell_error *err);
/* Decode a full object (client side: GET answers, recursion=1 lists). */
int api_image_decode(json_t *j, struct api_image *out, cell_error *err);

/* An alias entry {name, description, target, type}. */
json_t *api_image_alias_to_json(const struct api_image_alias *a);
/* POST /1.0/images/aliases body: name and target required, type defaults "container". */
int api_image_alias_from_json(json_t *j, struct api_image_alias *out, cell_error *err);
/* PUT (description reset when absent, target required) / PATCH of an alias. */
int api_image_alias_put_from_json(json_t *j, struct api_image_alias *a, bool patch, cell_error *err);
/* Non-empty, no '/', no control characters: it becomes a URL path segment. */
bool api_image_alias_name_valid(const char *name);

/* 64 lower-case hex chars, or (prefix_ok) a non-empty prefix of one. */
bool api_image_fingerprint_valid(const char *s, bool prefix_ok);

/* Go's time.Time JSON: RFC 3339, fraction without trailing zeros, "Z". */
void api_image_time_format(const struct timespec *ts, char out[40]);
/* RFC 3339 with any fraction and zone; Go's zero time gives {0, 0}.  -EINVAL if malformed. */
int api_image_time_parse(const char *s, struct timespec *out);

#endif
