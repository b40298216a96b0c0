/*
 * `cell file`: moving files in and out of instances through LXD's
 * /1.0/instances/<name>/files?path=... (GET: raw bytes, a directory's
 * listing or a symlink's target, with X-LXD-uid/gid/mode/type; POST with
 * the same headers; DELETE).
 *
 * Transfers stream between fds and the connection (nothing is held whole
 * in memory); a pulled file is written under a temporary name beside its
 * destination and renamed over it, with its mode, once complete.
 */
#ifndef CELL_CLIENT_FILE_H
#define CELL_CLIENT_FILE_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "client/api.h"
#include "common/error.h"

enum cli_file_type { CLI_FILE_FILE, CLI_FILE_DIRECTORY, CLI_FILE_SYMLINK, CLI_FILE_UNKNOWN };

/* Ownership and mode as the X-LXD-* headers carry them; -1: not given. */
struct cli_file_meta {
	enum cli_file_type type;
	int64_t uid, gid;
	int mode;
};

/* One instance's files on a connected remote. */
struct cli_file_inst {
	struct cli_client *c;
	const char *name;
	bool quiet;
	int devnull;   /* where probing GETs drop bodies; -1 until needed */
};

/* ---- transfers (file_xfer.c) ---- */

/* POST: a file from fd (len -1: unknown, sent chunked), or data (a
 * symlink's target), or nothing (a directory).  label: what the progress
 * line starts with ("Pushing a to c1/b: "), or NULL for none. */
struct cli_file_body {
	int fd;
	int64_t len;
	const char *data;
	size_t data_len;
	const char *label;
};
int cli_file_post(struct cli_file_inst *f, const char *path, const struct cli_file_meta *m,
		  const struct cli_file_body *b, cell_error *err);
/* GET (or HEAD) with the body streamed to out_fd (-1: kept in memory in
 * resp); fails with the server's message unless 2xx.  meta from headers. */
int cli_file_get(struct cli_file_inst *f, const char *method, const char *path, int out_fd,
		 const char *label, struct httpc_resp *resp, struct cli_file_meta *m, cell_error *err);
int cli_file_delete(struct cli_file_inst *f, const char *path, cell_error *err);
/* What path is on the server (GET, body dropped); -ENOENT-ish errors as the server says. */
int cli_file_probe(struct cli_file_inst *f, const char *path, struct cli_file_meta *m, cell_error *err);

/* Pull path into dest (a local path): files atomically with their mode,
 * symlinks as symlinks.  A directory is not created: its entries go to
 * *listing (caller owns) for the caller to recurse into or refuse. */
int cli_file_pull_to(struct cli_file_inst *f, const char *path, const char *dest, struct cli_file_meta *m,
		     json_t **listing, cell_error *err);

/* ---- zero-copy transfers on unix sockets (file_raw.c) ---- */

bool cli_file_raw_usable(const struct cli_file_inst *f);
/* GET/HEAD on path (complete, with the project): a 2xx body spliced to
 * out_fd, anything else in resp->body.  -ENOTSUP, with nothing written,
 * when the answer has no length: send it again through httpc. */
int cli_file_raw_get(struct cli_file_inst *f, const char *method, const char *path, int out_fd,
		     httpc_progress_fn progress, void *pdata, struct httpc_resp *resp, cell_error *err);
/* POST with a body from fd (len bytes, sendfile) or data. */
int cli_file_raw_post(struct cli_file_inst *f, const char *path, const char *const *headers, int fd, int64_t len,
		      const void *data, size_t data_len, httpc_progress_fn progress, void *pdata,
		      struct httpc_resp *resp, cell_error *err);

/* ---- pure helpers, exposed for tests ---- */

/* Go's path.Clean ("a//b/../c/." -> "a/c", "" -> "."). Caller frees. */
char *cli_file_clean(const char *p);
/* path.Join of two parts, cleaned. Caller frees. */
char *cli_file_join(const char *a, const char *b);
/* The last element (path.Base): "/a/b/" -> "b", "/" -> "/". Caller frees. */
char *cli_file_base(const char *p);
/* "[<remote>:]<instance>/<path>": the part before the first '/' (instance
 * with its remote) and what follows it, without the '/'. -EINVAL when
 * there is no '/'. */
int cli_file_spec(const char *arg, char **inst, char **path);
/* --mode as lxc reads it: three digits get a leading 0, then C/Go base
 * prefixes (0 octal, 0x hex); only permission bits are kept. */
int cli_file_parse_mode(const char *s, int *mode, cell_error *err);
/* X-LXD-type value. */
enum cli_file_type cli_file_type_of(const char *s);

#endif
