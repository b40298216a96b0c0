#include "daemon/router.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/*
 * Patterns are split into segments once at registration; matching walks the
 * request path segment by segment without allocating.  A "{name}" segment
 * captures one segment; a final "{name...}" captures the rest of the path
 * (image alias names may hold '/', which reaches us already decoded).
 */
#define ROUTER_MAX_SEGS 10
#define ROUTER_MAX_ROUTES 256

struct router_entry {
	struct route route;
	const char *segs[ROUTER_MAX_SEGS];
	unsigned char seglen[ROUTER_MAX_SEGS];
	int nsegs;
	bool rest;               /* last segment is {x...} */
	char *storage;           /* split segments */
	char *pattern;           /* owned copy behind route.pattern */
};

static struct router_entry router_table[ROUTER_MAX_ROUTES];
static int router_count;

static int router_split(struct router_entry *e)
{
	char *p;

	e->storage = strdup(e->route.pattern);
	if (!e->storage)
		return -ENOMEM;
	p = e->storage;
	while (*p == '/')
		p++;
	while (*p) {
		char *s = p;
		while (*p && *p != '/')
			p++;
		if (e->nsegs == ROUTER_MAX_SEGS)
			return -E2BIG;
		e->segs[e->nsegs] = s;
		e->seglen[e->nsegs] = (unsigned char)(p - s);
		e->nsegs++;
		if (*p)
			*p++ = '\0';
	}
	if (e->nsegs) {
		const char *last = e->segs[e->nsegs - 1];
		size_t n = strlen(last);
		e->rest = n > 5 && !strcmp(last + n - 4, "...}");
	}
	return 0;
}

int router_add(const struct route *r)
{
	struct router_entry *e;
	int rc;

	if (router_count == ROUTER_MAX_ROUTES)
		return -ENOSPC;
	e = &router_table[router_count];
	memset(e, 0, sizeof(*e));
	e->route = *r;
	e->pattern = strdup(r->pattern);
	if (!e->pattern)
		return -ENOMEM;
	e->route.pattern = e->pattern;
	rc = router_split(e);
	if (rc < 0) {
		free(e->storage);
		free(e->pattern);
		log_error("router: bad pattern %s", r->pattern);
		return rc;
	}
	router_count++;
	return 0;
}

int router_add_instances(const struct route *r)
{
	static const char inst[] = "/1.0/instances";
	struct route alias = *r;
	char p[256];
	int rc = router_add(r);

	if (rc < 0 || strncmp(r->pattern, inst, sizeof(inst) - 1))
		return rc;
	snprintf(p, sizeof(p), "/1.0/containers%s", r->pattern + sizeof(inst) - 1);
	alias.pattern = p;
	return router_add(&alias);
}

static bool router_match_entry(const struct router_entry *e, http_req *req)
{
	const char *p = req->scratch;
	int np = 0;

	while (*p == '/')
		p++;
	for (int i = 0; i < e->nsegs; i++) {
		const char *s = p;
		size_t len;
		bool capture = e->segs[i][0] == '{';

		if (!*p)
			return false;
		if (capture && e->rest && i == e->nsegs - 1) {
			if (np < HTTP_MAX_PARAMS)
				req->params[np++] = p;
			req->nparams = np;
			return true;
		}
		while (*p && *p != '/')
			p++;
		len = (size_t)(p - s);
		if (!capture && (len != e->seglen[i] || memcmp(s, e->segs[i], len)))
			return false;
		if (capture && np < HTTP_MAX_PARAMS)
			req->params[np++] = s;
		while (*p == '/')
			p++;
	}
	if (*p)
		return false;
	req->nparams = np;
	return true;
}

/* Terminate each captured segment in place, in req->scratch. */
static void router_terminate_params(http_req *req, const struct router_entry *e)
{
	for (int i = 0; i < req->nparams; i++) {
		char *s = (char *)req->params[i];
		if (e->rest && i == req->nparams - 1)
			break;
		while (*s && *s != '/')
			s++;
		*s = '\0';
	}
}

enum route_match router_match(http_req *req, const struct route **route,
			      const struct route_method **method)
{
	free(req->scratch);
	req->scratch = strdup(req->path);
	if (!req->scratch)
		return ROUTE_NO_PATH;
	for (int i = 0; i < router_count; i++) {
		const struct router_entry *e = &router_table[i];

		req->nparams = 0;
		if (!router_match_entry(e, req))
			continue;
		*route = &e->route;
		*method = NULL;
		for (int m = 0; m < ROUTE_MAX_METHODS && e->route.methods[m].fn; m++) {
			const struct route_method *rm = &e->route.methods[m];
			if (rm->method == req->method ||
			    (req->method == HTTP_HEAD && rm->method == HTTP_GET)) {
				*method = rm;
				break;
			}
		}
		router_terminate_params(req, e);
		return *method ? ROUTE_FOUND : ROUTE_NO_METHOD;
	}
	return ROUTE_NO_PATH;
}

void router_reset(void)
{
	for (int i = 0; i < router_count; i++) {
		free(router_table[i].storage);
		free(router_table[i].pattern);
	}
	router_count = 0;
}
