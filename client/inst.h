/*
 * Helpers shared by the instance, profile and storage commands: naming a
 * remote object, LXD's key=value parsing, byte sizes and times printed as
 * the Go client prints them, Go-ordered YAML, and the edit-in-$EDITOR loop.
 */
#ifndef CELL_CLIENT_INST_H
#define CELL_CLIENT_INST_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "client/api.h"
#include "client/output.h"
#include "common/error.h"
#include "common/strbuf.h"

/* "[<remote>:]<name>" on a connected remote. */
struct cli_obj {
	struct cli_client *c;
	char *remote;   /* as written, or the default remote */
	char *name;     /* "" when only a remote was given */
};

/* Connect and split; missing (e.g. "Missing instance name") fails when the name is empty, NULL allows it. */
int cli_obj_open(struct cli_ctx *ctx, const char *raw, const char *missing, struct cli_obj *o, cell_error *err);
void cli_obj_free(struct cli_obj *o);
#define _cleanup_obj_ __attribute__((cleanup(cli_obj_free)))

/* "c1" -> "/1.0/instances/c1", "c1/s0" -> "/1.0/instances/c1/snapshots/s0", each part
 * escaped, then suffix (may be NULL).  Caller frees; NULL on ENOMEM. */
char *cli_inst_path(const char *name, const char *suffix);
/* "/1.0/<collection>/<escaped name><suffix>" for profiles, pools, ... */
char *cli_api_path(const char *collection, const char *name, const char *suffix);
bool cli_is_snapshot(const char *name);

/* cli_render for a list that may be empty (zero CSV rows print nothing). */
int cli_render_list(FILE *f, enum cli_format fmt, const struct cli_table *t, json_t *raw, cell_error *err);

/* LXD's getConfig: "k v" (two words, the first without '='), or k=v words;
 * a value "-" reads stdin when it is not a terminal.  Fills obj with strings. */
int cli_parse_keyvals(char **words, int n, json_t *obj, cell_error *err);
/* Repeated -c k=v flags as the parser hands them over, joined with ',': a
 * piece without '=' continues the value before it ("-c user.l=a,b" keeps
 * "a,b").  "Bad key=value pair" when the first piece has no '='. */
int cli_parse_config_flag(const char *joined, json_t *obj, cell_error *err);

/* -d <device>,<key>=<value> flags (joined with ',') into {device: {key: value}}:
 * "Bad device override syntax" when one is malformed. */
int cli_parse_device_flag(const char *joined, json_t *out, cell_error *err);

/* The writable part of an instance (LXD's Instance.Writable()), in Go field order. */
json_t *cli_inst_writable(json_t *inst);
/* PUT a writable instance with If-Match and wait for the operation. */
int cli_inst_put(struct cli_client *c, const char *name, json_t *writable, const char *etag, cell_error *err);

/* A deep copy with every object's keys sorted, as Go prints maps. */
json_t *cli_json_sorted(json_t *v);
/* Go struct order: a new object with keys in order (absent ones skipped), maps sorted. */
json_t *cli_json_pick(json_t *v, const char *const *keys);

/* GET path, keep put_keys, merge keys into its config (a value "" drops the
 * key) and PUT it back with the ETag: `profile set`, `storage set`, ... */
int cli_put_config_keys(struct cli_client *c, const char *path, const char *const *put_keys,
			json_t *keys, cell_error *err);
/* `<group> set <obj> k=v...` / `<group> unset <obj> k`: open the object with
 * `open` (its API path into *path), then cli_put_config_keys. */
struct cli_args;
typedef int (*cli_open_fn)(struct cli_ctx *ctx, const char *raw, struct cli_obj *o, char **path,
			   cell_error *err);
int cli_run_set_keys(struct cli_ctx *ctx, struct cli_args *a, cli_open_fn open,
		     const char *const *put_keys, bool unset, cell_error *err);
/* A cli_open_fn's body: the object named by raw (missing: the error without
 * a name), *path its URL under /1.0/<collection>. */
int cli_open_api_obj(struct cli_ctx *ctx, const char *raw, const char *collection, const char *missing,
		     struct cli_obj *o, char **path, cell_error *err);
/* `<group> delete <obj>`: DELETE it, then "<what> <name> deleted". */
int cli_run_delete(struct cli_ctx *ctx, struct cli_args *a, cli_open_fn open, const char *what,
		   cell_error *err);

/* Go's units.GetByteSizeStringIEC / GetByteSizeString with precision 2. */
void cli_size_iec(int64_t bytes, char out[32]);
void cli_size_si(int64_t bytes, char out[32]);
/* units.ParseByteSizeString ("512MiB", "1GB", "100"); false when it does not parse. */
bool cli_parse_size(const char *s, int64_t *out);

/* shared.TimeIsSet: present, parseable and after the Unix epoch. */
bool cli_time_is_set(const char *rfc3339);
/* "2006/01/02 15:04 MST" in local time, as `lxc info` prints times. */
void cli_format_time_local(const char *rfc3339, char out[48]);

/* cli_wait, with the progress line prefixed as the command's (LXD's
 * "Retrieving image: %s"); format has one %s. */
int cli_wait_progress(struct cli_client *c, const char *operation, const char *format, json_t **op, cell_error *err);

/* Whole stdin into sb. */
int cli_read_stdin(strbuf *sb, cell_error *err);

/* Parses and applies an edited YAML text (PUT); fails to have it edited again. */
typedef int (*cli_apply_fn)(const char *text, size_t len, void *arg, cell_error *err);

/* `edit` reads its YAML from stdin when stdin is not a terminal (as LXD):
 * the whole of it goes to apply. */
int cli_edit_stdin(cli_apply_fn apply, void *arg, cell_error *err);
/* Else the object as YAML under help, in $VISUAL/$EDITOR (vi), until apply
 * succeeds; each failure prints LXD's "Config parsing error" and offers again. */
int cli_edit_object(json_t *shown, const char *help, cli_apply_fn apply, void *arg, cell_error *err);

/* Parse YAML text into an object, string-typed under the given keys ("config", "devices"). */
int cli_yaml_object(const char *text, size_t len, const char *const *string_keys, json_t **out, cell_error *err);

/* `<group> edit <obj>` for profiles, pools, ...: GET the object opened with
 * `open`, show shown_keys in $EDITOR (or read stdin when it is not a
 * terminal), then PUT put_keys of the result with the ETag. */
struct cli_edit_spec {
	cli_open_fn open;
	const char *const *shown_keys;
	const char *const *put_keys;
	const char *const *string_keys;   /* maps whose scalars stay strings */
	const char *help;
};
int cli_run_edit(struct cli_ctx *ctx, struct cli_args *a, const struct cli_edit_spec *spec,
		 cell_error *err);

#endif
