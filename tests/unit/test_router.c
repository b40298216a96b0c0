/* Router matching and LXD's response envelope. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/http.h"
#include "daemon/router.h"

static void h_a(http_req *req, http_resp *resp) { resp_sync(resp, json_string("a")); }
static void h_b(http_req *req, http_resp *resp) { resp_sync(resp, json_string("b")); }

static int setup(void **state)
{
	router_add(&(struct route){ .pattern = "/1.0", .methods = { { HTTP_GET, h_a, 0, NULL } } });
	router_add_instances(&(struct route){
		.pattern = "/1.0/instances/{name}/snapshots/{snap}",
		.methods = { { HTTP_GET, h_a, 0, NULL }, { HTTP_POST, h_b, 0, NULL } } });
	router_add(&(struct route){ .pattern = "/1.0/images/aliases/{name...}",
				    .methods = { { HTTP_GET, h_b, 0, NULL } } });
	return 0;
}

static int teardown(void **state)
{
	router_reset();
	return 0;
}

static enum route_match match(http_req *req, const char *path, enum http_method m,
			      const struct route_method **rm)
{
	const struct route *r;
	free(req->scratch);
	memset(req, 0, sizeof(*req));
	req->path = (char *)path;
	req->method = m;
	return router_match(req, &r, rm);
}

static void test_match_params(void **state)
{
	http_req req = { 0 };
	const struct route_method *rm;

	assert_int_equal(match(&req, "/1.0/instances/c1/snapshots/s0", HTTP_POST, &rm), ROUTE_FOUND);
	assert_ptr_equal(rm->fn, h_b);
	assert_int_equal(req.nparams, 2);
	assert_string_equal(req.params[0], "c1");
	assert_string_equal(req.params[1], "s0");
	/* The 2.0-era path reaches the same handlers. */
	assert_int_equal(match(&req, "/1.0/containers/web/snapshots/x", HTTP_GET, &rm), ROUTE_FOUND);
	assert_ptr_equal(rm->fn, h_a);
	assert_string_equal(req.params[0], "web");
	/* The path itself is left intact for handlers. */
	assert_string_equal(req.path, "/1.0/containers/web/snapshots/x");
	free(req.scratch);
}

static void test_no_path_no_method(void **state)
{
	http_req req = { 0 };
	const struct route_method *rm;

	assert_int_equal(match(&req, "/1.0/nothing", HTTP_GET, &rm), ROUTE_NO_PATH);
	assert_int_equal(match(&req, "/1.0/instances/c1/snapshots", HTTP_GET, &rm), ROUTE_NO_PATH);
	assert_int_equal(match(&req, "/1.0/instances/c1/snapshots/s/x", HTTP_GET, &rm), ROUTE_NO_PATH);
	assert_int_equal(match(&req, "/1.0", HTTP_DELETE, &rm), ROUTE_NO_METHOD);
	/* HEAD is served by GET handlers. */
	assert_int_equal(match(&req, "/1.0", HTTP_HEAD, &rm), ROUTE_FOUND);
	assert_int_equal(match(&req, "/1.0/", HTTP_GET, &rm), ROUTE_FOUND);
	free(req.scratch);
}

static void test_rest_capture(void **state)
{
	http_req req = { 0 };
	const struct route_method *rm;

	assert_int_equal(match(&req, "/1.0/images/aliases/debian/12/amd64", HTTP_GET, &rm), ROUTE_FOUND);
	assert_string_equal(req.params[0], "debian/12/amd64");
	free(req.scratch);
}

static void test_envelopes(void **state)
{
	http_resp resp;
	json_t *j;

	http_resp_init(&resp);
	resp_sync(&resp, json_pack("{s:i}", "x", 1));
	j = json_loads(resp.body.buf, 0, NULL);
	assert_non_null(j);
	assert_int_equal(resp.status, 200);
	assert_string_equal(json_string_value(json_object_get(j, "type")), "sync");
	assert_string_equal(json_string_value(json_object_get(j, "status")), "Success");
	assert_int_equal(json_integer_value(json_object_get(j, "status_code")), 200);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "metadata"), "x")), 1);
	json_decref(j);

	resp_error(&resp, 404, "not %s", "found");
	j = json_loads(resp.body.buf, 0, NULL);
	assert_int_equal(resp.status, 404);
	assert_string_equal(json_string_value(json_object_get(j, "type")), "error");
	assert_string_equal(json_string_value(json_object_get(j, "error")), "not found");
	assert_int_equal(json_integer_value(json_object_get(j, "error_code")), 404);
	assert_true(json_is_null(json_object_get(j, "metadata")));
	json_decref(j);
	http_resp_free(&resp);
}

static void test_etag(void **state)
{
	json_t *a = json_pack("{s:s, s:s}", "b", "2", "a", "1");
	json_t *b = json_pack("{s:s, s:s}", "a", "1", "b", "2");
	char ea[65], eb[65], quoted[70];
	http_req req = { 0 };
	http_resp resp;

	http_etag(a, ea);
	http_etag(b, eb);
	assert_string_equal(ea, eb);   /* key order does not matter */
	http_resp_init(&resp);
	snprintf(quoted, sizeof(quoted), "\"%s\"", ea);
	req.headers[0].name = "if-match";
	req.headers[0].value = quoted;
	req.nheaders = 1;
	assert_true(http_check_etag(&req, &resp, b));
	json_object_set_new(b, "c", json_string("3"));
	assert_false(http_check_etag(&req, &resp, b));
	assert_int_equal(resp.status, 412);
	http_resp_free(&resp);
	json_decref(a);
	json_decref(b);
}

static void test_query(void **state)
{
	char *args[] = { "recursion=2", "filter=name eq c1", "flag" };
	http_req req = { .args = args, .nargs = 3 };

	assert_int_equal(http_req_recursion(&req), 2);
	assert_string_equal(http_req_query(&req, "filter"), "name eq c1");
	assert_string_equal(http_req_query(&req, "flag"), "");
	assert_null(http_req_query(&req, "fla"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match_params), cmocka_unit_test(test_no_path_no_method),
		cmocka_unit_test(test_rest_capture), cmocka_unit_test(test_envelopes),
		cmocka_unit_test(test_etag), cmocka_unit_test(test_query),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
