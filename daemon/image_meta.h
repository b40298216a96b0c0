/*
 * An image's metadata.yaml (LXD's ImageMetadata) and LXD's architecture
 * names.  Parsing is strict about the fields LXD requires (architecture,
 * creation_date) and lenient about the rest, as LXD is, so every image LXD
 * accepts imports here too.
 */
#ifndef CELL_DAEMON_IMAGE_META_H
#define CELL_DAEMON_IMAGE_META_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* metadata.yaml is small; anything bigger is not an image. */
#define IMAGE_META_MAX_SIZE (1024 * 1024)

struct image_meta {
	char *architecture;        /* normalised: "x86_64", "aarch64", ... */
	int64_t creation_date;     /* unix seconds, never 0 */
	int64_t expiry_date;       /* unix seconds, 0 = none */
	json_t *properties;        /* object of strings, never NULL after parse */
	/* object, never NULL after parse: path -> {"when": [..], "create_only": bool,
	 * "template": "x.tpl", "properties": {..}} */
	json_t *templates;
};

void image_meta_free(struct image_meta *m);
static inline void image_meta_freep(struct image_meta *m) { image_meta_free(m); }
#define _cleanup_image_meta_ __attribute__((cleanup(image_meta_freep)))

/* Parse metadata.yaml text; errors start with "metadata.yaml: " and are 400s. */
int image_meta_parse(const char *buf, size_t len, struct image_meta *out, cell_error *err);
/* Read metadata.yaml out of a (unified or metadata-only) image tarball and parse it. */
int image_meta_load(const char *tarball, struct image_meta *out, cell_error *err);
/* metadata.yaml for a published image; caller frees. */
char *image_meta_to_yaml(const struct image_meta *m);

/* LXD's canonical name for an architecture name or alias ("amd64" ->
 * "x86_64"); NULL when LXD would not know it. */
const char *image_arch_normalize(const char *name);
/* LXD's numeric architecture ids (the database keeps these); 0 = unknown. */
int image_arch_id(const char *name);
const char *image_arch_name(int id);   /* NULL for unknown ids */
/* The host's architecture followed by the personalities it can run
 * ("x86_64", "i686"), as GET /1.0 lists them; returns the count. */
size_t image_arch_host_supported(const char **out, size_t max);

#endif
