/*
 * /internal/testing/files?root=<dir>&path=<path>[&idmap=<LXD idmap JSON>]:
 * the instance file API (inst_files.c) on a plain directory, so streaming,
 * ownership through an id map and path confinement are tested before
 * containers exist.  GET/HEAD, POST (streamed body), DELETE as
 * /1.0/instances/<name>/files.  Registered only when CELL_TEST_HOOKS=1.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/idmap.h"
#include "daemon/http.h"
#include "daemon/inst_files.h"
#include "daemon/router.h"

static int tfiles_ctx(const http_req *req, int *rootfd, struct idmap *map, cell_error *err)
{
	const char *root = http_req_query(req, "root");
	const char *idm = http_req_query(req, "idmap");

	*rootfd = -1;
	if (!root || !*root)
		return cell_err(err, 400, EINVAL, "Missing root argument");
	if (idm && *idm && idmap_parse_json(idm, map, err) < 0)
		return -EINVAL;
	*rootfd = inst_files_open_root(root, err);
	return *rootfd < 0 ? *rootfd : 0;
}

static void tfiles_get(http_req *req, http_resp *resp)
{
	_cleanup_idmap_ struct idmap map = { 0 };
	_cleanup_close_ int rootfd = -1;
	cell_error err = { 0 };

	if (tfiles_ctx(req, &rootfd, &map, &err) < 0)
		return resp_from_err(resp, &err);
	inst_files_get(rootfd, &map, http_req_query(req, "path"), resp);
}

static void tfiles_delete(http_req *req, http_resp *resp)
{
	_cleanup_idmap_ struct idmap map = { 0 };
	_cleanup_close_ int rootfd = -1;
	cell_error err = { 0 };

	if (tfiles_ctx(req, &rootfd, &map, &err) < 0)
		return resp_from_err(resp, &err);
	inst_files_delete(rootfd, http_req_query(req, "path"), resp);
}

static int tfiles_begin(http_req *req, void **state, cell_error *err)
{
	_cleanup_idmap_ struct idmap map = { 0 };
	_cleanup_close_ int rootfd = -1;

	if (tfiles_ctx(req, &rootfd, &map, err) < 0)
		return -EINVAL;
	return inst_files_post_begin(rootfd, &map, http_req_query(req, "path"), req,
				     (struct inst_files_post **)state, err);
}

static int tfiles_chunk(void *state, const void *data, size_t len, cell_error *err)
{
	return inst_files_post_chunk(state, data, len, err);
}

static void tfiles_end(void *state, http_req *req, http_resp *resp, const cell_error *failed)
{
	inst_files_post_end(state, resp, failed);
}

/* The server calls the plain handler when there is no body at all. */
static void tfiles_post_empty(http_req *req, http_resp *resp)
{
	void *state = NULL;
	cell_error err = { 0 };

	if (tfiles_begin(req, &state, &err) < 0)
		return resp_from_err(resp, &err);
	tfiles_end(state, req, resp, NULL);
}

static int tfiles_sink(void *state)
{
	return inst_files_post_sink(state);
}

static const struct route_body_fns tfiles_body = {
	.begin = tfiles_begin, .chunk = tfiles_chunk, .end = tfiles_end, .sink = tfiles_sink,
};

void api_testing_files_register(void)
{
	const char *on = getenv("CELL_TEST_HOOKS");
	if (!on || strcmp(on, "1"))
		return;
	router_add(&(struct route){
		.pattern = "/internal/testing/files",
		.methods = { { HTTP_GET, tfiles_get, 0, NULL },
			     { HTTP_POST, tfiles_post_empty, ROUTE_STREAM_BODY, &tfiles_body },
			     { HTTP_DELETE, tfiles_delete, 0, NULL } } });
}
