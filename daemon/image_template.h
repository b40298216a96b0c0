/*
 * Image templates (metadata.yaml `templates:`): the pongo2/Django subset LXD
 * images use in practice, rendered into a container's rootfs on create, copy,
 * start and rename.
 *
 * Supported: {{ expr }}, {% if %}/{% elif %}/{% else %}/{% endif %},
 * {# comments #}, {%- -%} whitespace trimming, {% autoescape %} (ignored:
 * LXD renders with autoescape off).  Expressions: variables with dotted
 * access (container.name, instance.type, properties.default, config, trigger,
 * path), string/number/boolean literals, config_get("key", default),
 * ==, !=, <, >, <=, >=, in, and/or/not, parentheses, filters
 * |default:x |default_if_none:x |lower |upper |length |safe.
 * Undefined variables render as "" as in pongo2.
 */
#ifndef CELL_DAEMON_IMAGE_TEMPLATE_H
#define CELL_DAEMON_IMAGE_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>

#include "common/error.h"
#include "common/strbuf.h"

/* A template file bigger than this is refused. */
#define IMAGE_TEMPLATE_MAX_SIZE (1024 * 1024)

/* Render one template with the variables in ctx (an object); config_get()
 * reads ctx.config.  Errors name the template line. */
int image_template_render(const char *tpl, size_t len, json_t *ctx, strbuf *out, cell_error *err);

/*
 * Render every template whose `when` lists `trigger` ("create", "copy",
 * "start", "rename") from templates_dir/<template> into rootfs/<path>.
 * context is {"container": {"name": .., "type": .., ...}, "config": {..},
 * "devices": {..}}; trigger, path, properties (the template's) and instance
 * (= container) are added.  A file that exists is skipped when create_only,
 * else truncated and rewritten keeping its owner and mode; a new one (and
 * missing parent directories) is owned by the rootfs directory's owner
 * (the container's root), mode 0644 (dirs 0755).  All paths resolve inside
 * rootfs (openat2 RESOLVE_IN_ROOT), template names inside templates_dir, and
 * only regular files are ever written.
 */
int image_templates_apply(const char *rootfs, const char *templates_dir, json_t *templates,
			  const char *trigger, json_t *context, cell_error *err);

#endif
