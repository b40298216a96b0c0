#include "daemon/operations.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <uv.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/daemon.h"
#include "daemon/events.h"
#include "daemon/http.h"

#define OP_KEEP_MS 5000    /* finished operations stay visible, as LXD's */

struct op_waiter {
	struct op_waiter *next;
	http_deferred *d;
	uv_timer_t *timer;   /* NULL: wait forever */
	struct operation *op;
};

struct operation {
	int refs;
	char id[37];
	enum op_class cls;
	char *description;
	json_t *resources;
	json_t *metadata;
	enum op_status status;
	char *err;
	bool may_cancel;
	struct timespec created, updated;
	const struct op_ops *ops;
	void *data;
	atomic_bool cancel_requested;
	uv_work_t work;
	cell_error run_err;
	int run_rc;
	struct op_waiter *waiters;
	uv_timer_t *expire;
	json_t *used_secrets;    /* fd names already connected */
	struct operation *next;  /* registry */
};

/* Guards every operation's mutable fields: workers write, the loop reads. */
static pthread_mutex_t ops_lock = PTHREAD_MUTEX_INITIALIZER;
static struct operation *ops_head;

static const char *op_status_name(enum op_status s)
{
	switch (s) {
	case OP_CREATED: return "Created";
	case OP_STARTED: return "Started";
	case OP_STOPPED: return "Stopped";
	case OP_RUNNING: return "Running";
	case OP_CANCELLING: return "Cancelling";
	case OP_PENDING: return "Pending";
	case OP_AUTHENTICATING: return "Authenticating";
	case OP_SUCCESS: return "Success";
	case OP_FAILURE: return "Failure";
	case OP_CANCELLED: return "Cancelled";
	}
	return "Unknown";
}

static const char *op_class_name(enum op_class c)
{
	return c == OP_CLASS_WEBSOCKET ? "websocket" : c == OP_CLASS_TOKEN ? "token" : "task";
}

static bool op_final(enum op_status s) { return s >= OP_SUCCESS; }

void op_ref(struct operation *op) { op->refs++; }

void op_unref(struct operation *op)
{
	if (--op->refs > 0)
		return;
	if (op->ops && op->ops->free_data && op->data)
		op->ops->free_data(op->data);
	free(op->description);
	free(op->err);
	json_decref(op->resources);
	json_decref(op->metadata);
	json_decref(op->used_secrets);
	free(op);
}

const char *op_id(const struct operation *op) { return op->id; }
void *op_data(struct operation *op) { return op->data; }
bool op_cancelled(const struct operation *op) { return atomic_load(&op->cancel_requested); }

void op_url(const struct operation *op, char out[64])
{
	snprintf(out, 64, "/1.0/operations/%s", op->id);
}

enum op_status op_status_of(const struct operation *op)
{
	enum op_status s;
	pthread_mutex_lock(&ops_lock);
	s = op->status;
	pthread_mutex_unlock(&ops_lock);
	return s;
}

static json_t *op_to_json_locked(struct operation *op)
{
	char created[40], updated[40];

	util_time_rfc3339(&op->created, created);
	util_time_rfc3339(&op->updated, updated);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:O, s:O, s:b, s:s, s:s}",
			 "id", op->id, "class", op_class_name(op->cls),
			 "description", op->description, "created_at", created,
			 "updated_at", updated, "status", op_status_name(op->status),
			 "status_code", (int)op->status,
			 "resources", op->resources ? op->resources : json_null(),
			 "metadata", op->metadata ? op->metadata : json_null(),
			 "may_cancel", op->may_cancel, "err", op->err ? op->err : "",
			 "location", "none");
}

json_t *op_to_json(struct operation *op)
{
	json_t *j;
	pthread_mutex_lock(&ops_lock);
	j = op_to_json_locked(op);
	pthread_mutex_unlock(&ops_lock);
	return j;
}

/* Called with ops_lock held: stamp and publish the change. */
static void op_changed_locked(struct operation *op)
{
	clock_gettime(CLOCK_REALTIME, &op->updated);
	events_send("operation", op_to_json_locked(op));
}

static void op_set_status(struct operation *op, enum op_status s)
{
	pthread_mutex_lock(&ops_lock);
	op->status = s;
	op_changed_locked(op);
	pthread_mutex_unlock(&ops_lock);
}

struct operation *op_create(enum op_class cls, const char *description, json_t *resources,
			    json_t *metadata, const struct op_ops *ops, void *data)
{
	struct operation *op = calloc(1, sizeof(*op));

	if (!op) {
		json_decref(resources);
		json_decref(metadata);
		return NULL;
	}
	op->refs = 1;   /* the registry's */
	util_uuid(op->id);
	op->cls = cls;
	op->description = strdup(description);
	op->resources = resources;
	op->metadata = metadata ? metadata : json_object();
	op->status = OP_CREATED;
	op->ops = ops;
	op->data = data;
	op->used_secrets = json_object();
	clock_gettime(CLOCK_REALTIME, &op->created);
	op->updated = op->created;
	pthread_mutex_lock(&ops_lock);
	op->next = ops_head;
	ops_head = op;
	op_changed_locked(op);
	pthread_mutex_unlock(&ops_lock);
	return op;
}

void op_set_may_cancel(struct operation *op, bool may)
{
	pthread_mutex_lock(&ops_lock);
	op->may_cancel = may;
	pthread_mutex_unlock(&ops_lock);
}

void op_set_metadata(struct operation *op, json_t *metadata)
{
	pthread_mutex_lock(&ops_lock);
	json_decref(op->metadata);
	op->metadata = metadata ? metadata : json_object();
	op_changed_locked(op);
	pthread_mutex_unlock(&ops_lock);
}

void op_set_metadata_key(struct operation *op, const char *key, json_t *value)
{
	pthread_mutex_lock(&ops_lock);
	json_object_set_new(op->metadata, key, value);
	op_changed_locked(op);
	pthread_mutex_unlock(&ops_lock);
}

void op_progress(struct operation *op, const char *key, const char *text)
{
	op_set_metadata_key(op, key, json_string(text));
}

int op_add_secret(struct operation *op, const char *fd_name)
{
	char secret[65];
	json_t *fds;

	if (util_random_hex(secret, 32) < 0)
		return -EIO;
	pthread_mutex_lock(&ops_lock);
	fds = json_object_get(op->metadata, "fds");
	if (!fds) {
		fds = json_object();
		json_object_set_new(op->metadata, "fds", fds);
	}
	json_object_set_new(fds, fd_name, json_string(secret));
	pthread_mutex_unlock(&ops_lock);
	return 0;
}

/* Find which fd a secret opens; -ENOENT when none, -EBUSY when already used. */
int op_secret_lookup(struct operation *op, const char *secret, char *fd_name, size_t n)
{
	const char *key;
	json_t *val, *fds;
	int rc = -ENOENT;

	pthread_mutex_lock(&ops_lock);
	fds = json_object_get(op->metadata, "fds");
	json_object_foreach(fds, key, val) {
		const char *s = json_string_value(val);
		if (s && secret && strlen(s) == strlen(secret) && !CRYPTO_memcmp(s, secret, strlen(s))) {
			rc = json_object_get(op->used_secrets, key) ? -EBUSY : 0;
			if (!rc) {
				json_object_set_new(op->used_secrets, key, json_true());
				snprintf(fd_name, n, "%s", key);
			}
			break;
		}
	}
	pthread_mutex_unlock(&ops_lock);
	return rc;
}

int op_ws_dispatch(struct operation *op, const char *fd_name, struct ws_conn *ws, cell_error *err)
{
	if (!op->ops || !op->ops->ws_connect)
		return cell_err(err, 400, EINVAL, "Operation has no websockets");
	return op->ops->ws_connect(op, fd_name, ws, err);
}

struct operation *op_get(const char *id)
{
	struct operation *op;
	pthread_mutex_lock(&ops_lock);
	for (op = ops_head; op; op = op->next)
		if (!strcmp(op->id, id))
			break;
	pthread_mutex_unlock(&ops_lock);
	return op;
}

json_t *op_list_json(bool recursion)
{
	json_t *out = json_object();
	struct operation *op;

	pthread_mutex_lock(&ops_lock);
	for (op = ops_head; op; op = op->next) {
		char key[32], url[64];
		json_t *arr;
		snprintf(key, sizeof(key), "%s", op_status_name(op->status));
		for (char *p = key; *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
		arr = json_object_get(out, key);
		if (!arr) {
			arr = json_array();
			json_object_set_new(out, key, arr);
		}
		op_url(op, url);
		json_array_append_new(arr, recursion ? op_to_json_locked(op) : json_string(url));
	}
	pthread_mutex_unlock(&ops_lock);
	return out;
}

/* Registry removal, OP_KEEP_MS after the end. */
static void op_expire_closed(uv_handle_t *h)
{
	struct operation *op = h->data;
	free(h);
	op_unref(op);
}

static void op_expire_cb(uv_timer_t *t)
{
	struct operation *op = t->data, **pp;

	pthread_mutex_lock(&ops_lock);
	for (pp = &ops_head; *pp; pp = &(*pp)->next)
		if (*pp == op) {
			*pp = op->next;
			break;
		}
	pthread_mutex_unlock(&ops_lock);
	op->expire = NULL;
	uv_close((uv_handle_t *)t, op_expire_closed);
}

static void op_waiter_free_timer(uv_handle_t *h) { free(h); }

static void op_waiter_answer(struct op_waiter *w)
{
	http_resp resp;

	http_resp_init(&resp);
	resp_sync(&resp, op_to_json(w->op));
	http_deferred_finish(w->d, &resp);
	if (w->timer) {
		uv_timer_stop(w->timer);
		uv_close((uv_handle_t *)w->timer, op_waiter_free_timer);
	}
	op_unref(w->op);
	free(w);
}

static void op_wake_waiters(struct operation *op)
{
	struct op_waiter *w;
	while ((w = op->waiters)) {
		op->waiters = w->next;
		op_waiter_answer(w);
	}
}

/* Loop thread: mark the end, publish, wake waiters, schedule expiry. */
void op_finish(struct operation *op, int rc, const char *errmsg)
{
	pthread_mutex_lock(&ops_lock);
	if (op_final(op->status)) {
		pthread_mutex_unlock(&ops_lock);
		return;
	}
	if (atomic_load(&op->cancel_requested) && rc < 0)
		op->status = OP_CANCELLED;
	else
		op->status = rc < 0 ? OP_FAILURE : OP_SUCCESS;
	op->may_cancel = false;
	if (op->status != OP_SUCCESS) {
		free(op->err);
		op->err = strdup(op->status == OP_CANCELLED && (!errmsg || !*errmsg)
					 ? "Operation cancelled" : (errmsg ? errmsg : "failed"));
	}
	op_changed_locked(op);
	pthread_mutex_unlock(&ops_lock);
	log_debug("operation %s (%s) finished: %s", op->id, op->description,
		  op->err ? op->err : "success");
	op_wake_waiters(op);
	/* The expiry timer inherits the registry's reference. */
	op->expire = celld->shutting_down ? NULL : malloc(sizeof(*op->expire));
	if (op->expire) {
		uv_timer_init(celld->loop, op->expire);
		op->expire->data = op;
		uv_timer_start(op->expire, op_expire_cb, OP_KEEP_MS, 0);
	}
}

static void op_work_cb(uv_work_t *w)
{
	struct operation *op = w->data;
	op->run_rc = op->ops->run(op, &op->run_err);
}

static void op_after_work_cb(uv_work_t *w, int status)
{
	struct operation *op = w->data;
	if (status == UV_ECANCELED && !op->run_rc)
		op->run_rc = cell_err(&op->run_err, 500, ECANCELED, "Operation cancelled");
	op_finish(op, op->run_rc, op->run_rc < 0 ? op->run_err.msg : NULL);
	op_unref(op);
}

int op_start(struct operation *op)
{
	op_set_status(op, OP_RUNNING);
	if (!op->ops || !op->ops->run)
		return 0;   /* driven by websocket connections */
	op->work.data = op;
	op_ref(op);
	if (uv_queue_work(celld->loop, &op->work, op_work_cb, op_after_work_cb) < 0) {
		op_unref(op);
		op_finish(op, -EIO, "could not queue work");
		return -EIO;
	}
	return 0;
}

int op_cancel(struct operation *op, cell_error *err)
{
	enum op_status st = op_status_of(op);

	if (st != OP_RUNNING && st != OP_PENDING && st != OP_CREATED)
		return cell_err(err, 400, EINVAL, "Only running operations can be cancelled");
	if (!op->may_cancel)
		return cell_err(err, 400, EPERM, "This operation can't be cancelled");
	atomic_store(&op->cancel_requested, true);
	if (op->ops && op->ops->cancel) {
		int rc = op->ops->cancel(op, err);
		if (rc < 0)
			return rc;
	}
	if (!op->ops || !op->ops->run || uv_cancel((uv_req_t *)&op->work) == 0) {
		/* Not yet running on a worker (or nothing to run): it ends now. */
		if (!op->ops || !op->ops->run)
			op_finish(op, -ECANCELED, NULL);
		return 0;
	}
	op_set_status(op, OP_CANCELLING);
	return 0;
}

static void op_wait_timeout(uv_timer_t *t)
{
	struct op_waiter *w = t->data, **pp;

	for (pp = &w->op->waiters; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	op_waiter_answer(w);
}

int op_wait(struct operation *op, http_req *req, http_resp *resp, double timeout_s)
{
	struct op_waiter *w;

	if (op_final(op_status_of(op))) {
		resp_sync(resp, op_to_json(op));
		return 0;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->op = op;
	op_ref(op);
	w->d = http_defer(req, resp);
	if (timeout_s >= 0) {
		w->timer = malloc(sizeof(*w->timer));
		uv_timer_init(celld->loop, w->timer);
		w->timer->data = w;
		uv_timer_start(w->timer, op_wait_timeout, (uint64_t)(timeout_s * 1000), 0);
	}
	w->next = op->waiters;
	op->waiters = w;
	return 0;
}

void resp_async(http_resp *resp, struct operation *op)
{
	char url[64];
	json_t *env;

	op_url(op, url);
	http_resp_header(resp, "Location", url);
	env = json_pack("{s:s, s:s, s:i, s:s, s:i, s:s, s:o}", "type", "async", "status",
			"Operation created", "status_code", 100, "operation", url, "error_code", 0,
			"error", "", "metadata", op_to_json(op));
	resp_envelope(resp, 202, env);
}

int ops_init(void) { return 0; }

void ops_shutdown(void)
{
	struct operation *op, *next;
	cell_error err;

	for (op = ops_head; op; op = op->next)
		if (!op_final(op_status_of(op)) && op->may_cancel)
			op_cancel(op, &err);
	/* Answer every waiter and drop the registry; workers hold their own refs. */
	pthread_mutex_lock(&ops_lock);
	op = ops_head;
	ops_head = NULL;
	pthread_mutex_unlock(&ops_lock);
	for (; op; op = next) {
		next = op->next;
		op_wake_waiters(op);
		if (op->expire) {
			uv_timer_stop(op->expire);
			uv_close((uv_handle_t *)op->expire, op_expire_closed);
			op->expire = NULL;
		} else {
			op_unref(op);
		}
	}
}
