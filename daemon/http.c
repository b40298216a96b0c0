#include "daemon/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/sha256_lite.h"
#include "common/util.h"

const char *http_req_header(const http_req *r, const char *name)
{
	for (int i = 0; i < r->nheaders; i++)
		if (!strcasecmp(r->headers[i].name, name))
			return r->headers[i].value;
	return NULL;
}

const char *http_req_query(const http_req *r, const char *key)
{
	size_t kl = strlen(key);
	for (int i = 0; i < r->nargs; i++) {
		const char *a = r->args[i];
		if (!strncmp(a, key, kl) && (a[kl] == '=' || a[kl] == '\0'))
			return a[kl] ? a + kl + 1 : "";
	}
	return NULL;
}

int http_req_recursion(const http_req *r)
{
	const char *v = http_req_query(r, "recursion");
	char *end;
	long n;

	if (!v || !*v)
		return 0;
	n = strtol(v, &end, 10);
	return (*end || n < 0 || n > 9) ? 0 : (int)n;
}

int http_req_json(const http_req *r, json_t **out, cell_error *err)
{
	json_error_t jerr;
	json_t *j;

	if (!r->body.len)
		return cell_err(err, 400, EINVAL, "Request body is empty");
	j = json_loadb(r->body.buf, r->body.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return cell_err(err, 400, EINVAL, "Invalid JSON in request body: %s", jerr.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return cell_err(err, 400, EINVAL, "Request body must be a JSON object");
	}
	*out = j;
	return 0;
}

void http_resp_init(http_resp *resp)
{
	memset(resp, 0, sizeof(*resp));
	resp->status = 200;
	resp->body_fd = -1;
}

void http_resp_free(http_resp *resp)
{
	sb_free(&resp->body);
	for (int i = 0; i < resp->nheaders; i++) {
		free(resp->headers[i].name);
		free(resp->headers[i].value);
	}
	resp->nheaders = 0;
	if (resp->body_fd >= 0)
		close(resp->body_fd);
	resp->body_fd = -1;
}

int http_resp_header(http_resp *resp, const char *name, const char *value)
{
	if (resp->nheaders >= (int)ARRAY_SIZE(resp->headers))
		return -ENOSPC;
	resp->headers[resp->nheaders].name = strdup(name);
	resp->headers[resp->nheaders].value = strdup(value);
	if (!resp->headers[resp->nheaders].name || !resp->headers[resp->nheaders].value)
		return -ENOMEM;
	resp->nheaders++;
	return 0;
}

static int sb_dump_cb(const char *buf, size_t size, void *data)
{
	return sb_append(data, buf, size);
}

void resp_envelope(http_resp *resp, int status, json_t *env)
{
	sb_reset(&resp->body);
	resp->status = status;
	snprintf(resp->content_type, sizeof(resp->content_type), "application/json");
	if (!env || json_dump_callback(env, sb_dump_cb, &resp->body, JSON_COMPACT) < 0
	    || sb_puts(&resp->body, "\n") < 0) {
		sb_reset(&resp->body);
		sb_puts(&resp->body, "{\"type\":\"error\",\"error\":\"out of memory\",\"error_code\":500}\n");
		resp->status = 500;
	}
	json_decref(env);
}

void resp_sync_status(http_resp *resp, int status, json_t *metadata)
{
	json_t *env = json_pack("{s:s, s:s, s:i, s:s, s:i, s:s, s:o}", "type", "sync", "status",
				"Success", "status_code", 200, "operation", "", "error_code", 0,
				"error", "", "metadata", metadata ? metadata : json_null());
	resp_envelope(resp, status, env);
}

void resp_sync(http_resp *resp, json_t *metadata) { resp_sync_status(resp, 200, metadata); }

void resp_empty(http_resp *resp) { resp_sync(resp, json_object()); }

void http_etag(json_t *src, char out[65])
{
	_cleanup_free_ char *s = json_dumps(src, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);

	sha256_lite_hex(s ? s : "", s ? strlen(s) : 0, out);
}

void resp_sync_etag(http_resp *resp, json_t *metadata, json_t *etag_src)
{
	char etag[65], quoted[68];

	http_etag(etag_src, etag);
	snprintf(quoted, sizeof(quoted), "\"%s\"", etag);
	http_resp_header(resp, "ETag", quoted);
	resp_sync(resp, metadata);
}

bool http_check_etag(const http_req *req, http_resp *resp, json_t *etag_src)
{
	const char *match = http_req_header(req, "If-Match");
	char etag[65];
	size_t n;

	if (!match || !*match)
		return true;
	if (*match == '"')
		match++;
	n = strlen(match);
	if (n && match[n - 1] == '"')
		n--;
	http_etag(etag_src, etag);
	if (n == 64 && !memcmp(match, etag, 64))
		return true;
	resp_error(resp, 412, "ETag doesn't match: %.*s vs %s", (int)n, match, etag);
	return false;
}

void resp_error(http_resp *resp, int status, const char *fmt, ...)
{
	char msg[CELL_ERR_MSG_MAX];
	va_list ap;
	json_t *env;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	env = json_pack("{s:s, s:s, s:i, s:s, s:i, s:s, s:n}", "type", "error", "status", "",
			"status_code", 0, "operation", "", "error_code", status, "error", msg,
			"metadata");
	resp_envelope(resp, status, env);
}

void resp_from_err(http_resp *resp, const cell_error *err)
{
	resp_error(resp, err->status >= 400 ? err->status : 500, "%s",
		   err->msg[0] ? err->msg : "internal error");
}

void resp_raw(http_resp *resp, int status, const char *content_type, const void *data, size_t len)
{
	sb_reset(&resp->body);
	resp->status = status;
	snprintf(resp->content_type, sizeof(resp->content_type), "%s", content_type);
	if (sb_append(&resp->body, data, len) < 0)
		resp_error(resp, 500, "out of memory");
}

const char *http_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Payload Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}
