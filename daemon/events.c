#include "daemon/events.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/daemon.h"
#include "daemon/http.h"
#include "daemon/router.h"
#include "daemon/ws.h"

/* A subscriber this far behind is dropped rather than buffered forever. */
#define EVENTS_MAX_BACKLOG (8u << 20)

enum { EV_OPERATION = 1, EV_LOGGING = 2, EV_LIFECYCLE = 4 };

struct ev_item {
	struct ev_item *next;
	unsigned type;
	char *json;
	size_t len;
};

struct ev_sub {
	struct ev_sub *next;
	struct ws_conn *ws;
	unsigned types;
};

static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ev_item *ev_head, *ev_tail;
static uv_async_t ev_async;
static bool ev_ready;
static struct ev_sub *ev_subs;
static unsigned ev_wanted;    /* union of subscribed types: skip work nobody reads */

static unsigned ev_type_bit(const char *type)
{
	if (!strcmp(type, "operation"))
		return EV_OPERATION;
	if (!strcmp(type, "logging"))
		return EV_LOGGING;
	if (!strcmp(type, "lifecycle"))
		return EV_LIFECYCLE;
	return 0;
}

void events_send(const char *type, json_t *metadata)
{
	unsigned bit = ev_type_bit(type);
	struct ev_item *it;
	char ts[40];
	json_t *ev;

	if (!ev_ready || !(__atomic_load_n(&ev_wanted, __ATOMIC_RELAXED) & bit)) {
		json_decref(metadata);
		return;
	}
	util_now_rfc3339(ts);
	ev = json_pack("{s:s, s:s, s:o, s:s, s:s}", "type", type, "timestamp", ts, "metadata",
		       metadata ? metadata : json_object(), "location", "none", "project", "default");
	it = calloc(1, sizeof(*it));
	if (!it || !ev || !(it->json = json_dumps(ev, JSON_COMPACT))) {
		free(it);
		json_decref(ev);
		return;
	}
	json_decref(ev);
	it->len = strlen(it->json);
	it->type = bit;
	pthread_mutex_lock(&ev_lock);
	if (ev_tail)
		ev_tail->next = it;
	else
		ev_head = it;
	ev_tail = it;
	pthread_mutex_unlock(&ev_lock);
	uv_async_send(&ev_async);
}

void events_lifecycle(const char *action, const char *source, json_t *context)
{
	events_send("lifecycle", json_pack("{s:s, s:s, s:o}", "action", action, "source", source,
					   "context", context ? context : json_object()));
}

static void ev_recompute_wanted(void)
{
	unsigned w = 0;
	for (struct ev_sub *s = ev_subs; s; s = s->next)
		w |= s->types;
	__atomic_store_n(&ev_wanted, w, __ATOMIC_RELAXED);
}

static void ev_deliver(struct ev_item *it)
{
	for (struct ev_sub *s = ev_subs; s; s = s->next) {
		if (!(s->types & it->type) || !s->ws)
			continue;
		if (ws_conn_queued(s->ws) > EVENTS_MAX_BACKLOG) {
			ws_conn_close(s->ws);   /* too slow: never let it stall us */
			continue;
		}
		ws_conn_send(s->ws, it->json, it->len, false);
	}
}

static void ev_async_cb(uv_async_t *a)
{
	struct ev_item *it;

	pthread_mutex_lock(&ev_lock);
	it = ev_head;
	ev_head = ev_tail = NULL;
	pthread_mutex_unlock(&ev_lock);
	while (it) {
		struct ev_item *next = it->next;
		ev_deliver(it);
		free(it->json);
		free(it);
		it = next;
	}
}

static void ev_sub_close(struct ws_conn *ws, void *ud)
{
	struct ev_sub *sub = ud, **pp;

	for (pp = &ev_subs; *pp; pp = &(*pp)->next)
		if (*pp == sub) {
			*pp = sub->next;
			break;
		}
	free(sub);
	ev_recompute_wanted();
}

static const struct ws_handler ev_handler = { .on_close = ev_sub_close };

/* Parse ?type=a,b; all types when absent. 0 on an unknown type. */
static unsigned ev_parse_types(const char *q)
{
	unsigned mask = 0;
	char buf[128], *save = NULL;

	if (!q || !*q)
		return EV_OPERATION | EV_LOGGING | EV_LIFECYCLE;
	snprintf(buf, sizeof(buf), "%s", q);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		unsigned bit = ev_type_bit(t);
		if (!bit)
			return 0;
		mask |= bit;
	}
	return mask;
}

static int ev_ws_connect(http_req *req, struct ws_conn *ws, cell_error *err)
{
	unsigned types = ev_parse_types(http_req_query(req, "type"));
	struct ev_sub *sub;

	if (!types)
		return cell_err(err, 400, EINVAL, "Invalid event type");
	sub = calloc(1, sizeof(*sub));
	if (!sub)
		return cell_err(err, 500, ENOMEM, "out of memory");
	sub->ws = ws;
	sub->types = types;
	sub->next = ev_subs;
	ev_subs = sub;
	ws_conn_set_handler(ws, &ev_handler, sub);
	ev_recompute_wanted();
	return 0;
}

/* A plain GET without upgrade: LXD answers 400 too. */
static void ev_get(http_req *req, http_resp *resp)
{
	resp_error(resp, 400, "Missing websocket upgrade for /1.0/events");
}

static void ev_log_hook(enum log_level lvl, const char *msg, void *data)
{
	static const char *const names[] = { "debug", "info", "warning", "error" };
	if (lvl < LOG_LVL_NONE)
		events_send("logging", json_pack("{s:s, s:s, s:{}}", "message", msg, "level",
						 names[lvl], "context"));
}

void api_events_register(void)
{
	router_add(&(struct route){
		.pattern = "/1.0/events",
		.methods = { { HTTP_GET, ev_get, 0, NULL } },
		.ws = ev_ws_connect,
	});
}

int events_init(void)
{
	if (uv_async_init(celld->loop, &ev_async, ev_async_cb) < 0)
		return -1;
	ev_ready = true;
	log_set_hook(ev_log_hook, NULL);
	return 0;
}

static void ev_async_closed(uv_handle_t *h) {}

void events_shutdown(void)
{
	if (!ev_ready)
		return;
	log_set_hook(NULL, NULL);
	ev_ready = false;
	for (struct ev_sub *s = ev_subs; s; s = s->next)
		ws_conn_close(s->ws);
	ev_async_cb(&ev_async);
	uv_close((uv_handle_t *)&ev_async, ev_async_closed);
}
