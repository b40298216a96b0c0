/*
 * The instance model: names, the operation lock, validation through
 * profile expansion, id maps, JSON, and the crash-safe create, delete,
 * rename and update.  Start/stop live in api_instances_state.c, snapshots
 * in api_snapshots.c, start-up and the stop monitor in instances_boot.c.
 */
#include "daemon/instances.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/daemon.h"
#include "daemon/events.h"
#include "daemon/image_meta.h"
#include "daemon/image_template.h"
#include "daemon/images.h"
#include "daemon/inst_lxc.h"
#include "daemon/operations.h"
#include "daemon/pools.h"
#include "daemon/profiles.h"
#include "storage/storage.h"

/* ---- names ------------------------------------------------------------------ */

bool instances_name_valid(const char *name)
{
	size_t len = name ? strlen(name) : 0;

	return len && inst_lxc_name_valid(name) && name[len - 1] != '-';
}

bool instances_snap_name_valid(const char *name)
{
	if (!name || !*name || strlen(name) > 255 || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (const char *p = name; *p; p++)
		if (*p == '/' || isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
			return false;
	return stor_valid_snap_name(name);
}

static const char *const name_adj[] = {
	"able", "brave", "calm", "clever", "cosmic", "crisp", "daring", "eager", "fair",
	"fancy", "fast", "fine", "fresh", "glad", "grand", "happy", "humble", "keen", "kind",
	"lively", "loyal", "lucky", "merry", "mighty", "modest", "neat", "noble", "polite",
	"proud", "quick", "quiet", "rapid", "ready", "sharp", "shiny", "smart", "solid",
	"steady", "sunny", "swift", "tidy", "upright", "vast", "vital", "warm", "wise", "witty",
};
static const char *const name_noun[] = {
	"badger", "beagle", "bison", "bobcat", "cattle", "cobra", "condor", "coyote", "crane",
	"dingo", "eagle", "falcon", "ferret", "finch", "gecko", "gibbon", "gopher", "heron",
	"ibex", "jackal", "koala", "lemur", "lion", "llama", "lynx", "marten", "mole", "moose",
	"newt", "ocelot", "osprey", "otter", "panda", "parrot", "puffin", "quail", "raven",
	"robin", "salmon", "seal", "shrew", "sloth", "stork", "tapir", "tiger", "toucan",
	"walrus", "weasel", "wombat", "yak", "zebra",
};

char *instances_generate_name(void)
{
	for (int tries = 0; tries < 100; tries++) {
		unsigned char r[4];
		char hex[9], *name;
		cell_error err;

		if (util_random_hex(hex, 4) < 0)
			return NULL;
		for (int i = 0; i < 4; i++)
			r[i] = (unsigned char)strtoul((char[]){ hex[2 * i], hex[2 * i + 1], 0 }, NULL, 16);
		name = xasprintf("%s-%s", name_adj[(r[0] << 8 | r[1]) % ARRAY_SIZE(name_adj)],
				 name_noun[(r[2] << 8 | r[3]) % ARRAY_SIZE(name_noun)]);
		if (!name || db_inst_exists(name, &err) == 0)
			return name;
		free(name);
	}
	return NULL;
}

/* ---- the operation lock ------------------------------------------------------- */

struct lock_ent {
	struct lock_ent *next;
	bool held, reserved;
	int waiters;
	char name[];
};

static pthread_mutex_t lk_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lk_cv = PTHREAD_COND_INITIALIZER;
static struct lock_ent *lk_head;

static struct lock_ent *lk_find(const char *name, bool create)
{
	struct lock_ent *e;
	size_t len = strlen(name) + 1;

	for (e = lk_head; e; e = e->next)
		if (!strcmp(e->name, name))
			return e;
	if (!create || !(e = calloc(1, sizeof(*e) + len)))
		return NULL;
	memcpy(e->name, name, len);
	e->next = lk_head;
	lk_head = e;
	return e;
}

static void lk_maybe_free(struct lock_ent *e)
{
	if (e->held || e->reserved || e->waiters)
		return;
	for (struct lock_ent **pp = &lk_head; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			free(e);
			return;
		}
	}
}

void instances_lock(const char *name)
{
	struct lock_ent *e;

	pthread_mutex_lock(&lk_mu);
	/* Out of memory here is not survivable in a useful way: retry. */
	while (!(e = lk_find(name, true))) {
		pthread_mutex_unlock(&lk_mu);
		usleep(1000);
		pthread_mutex_lock(&lk_mu);
	}
	e->waiters++;
	while (e->held)
		pthread_cond_wait(&lk_cv, &lk_mu);
	e->waiters--;
	e->held = true;
	pthread_mutex_unlock(&lk_mu);
}

void instances_lock2(const char *a, const char *b)
{
	if (strcmp(a, b) > 0) {
		const char *t = a;
		a = b;
		b = t;
	}
	instances_lock(a);
	if (strcmp(a, b))
		instances_lock(b);
}

void instances_unlock(const char *name)
{
	struct lock_ent *e;

	pthread_mutex_lock(&lk_mu);
	if ((e = lk_find(name, false))) {
		e->held = false;
		lk_maybe_free(e);
	}
	pthread_cond_broadcast(&lk_cv);
	pthread_mutex_unlock(&lk_mu);
	inst_trim_soon();   /* an operation ends here */
}

bool instances_busy(const char *name)
{
	struct lock_ent *e;
	bool busy;

	pthread_mutex_lock(&lk_mu);
	e = lk_find(name, false);
	busy = e && (e->held || e->waiters);
	pthread_mutex_unlock(&lk_mu);
	return busy;
}

int instances_reserve(const char *name, cell_error *err)
{
	struct lock_ent *e;
	int rc;

	pthread_mutex_lock(&lk_mu);
	e = lk_find(name, false);
	if (e && e->reserved) {
		pthread_mutex_unlock(&lk_mu);
		return cell_err(err, 409, EEXIST, "Instance \"%s\" already exists", name);
	}
	rc = db_inst_exists(name, err);
	if (rc == 0 && !(e = lk_find(name, true)))
		rc = cell_err(err, 500, ENOMEM, "out of memory");
	if (rc == 0)
		e->reserved = true;
	pthread_mutex_unlock(&lk_mu);
	if (rc > 0)
		return cell_err(err, 409, EEXIST, "Instance \"%s\" already exists", name);
	return rc;
}

void instances_unreserve(const char *name)
{
	struct lock_ent *e;

	pthread_mutex_lock(&lk_mu);
	if ((e = lk_find(name, false))) {
		e->reserved = false;
		lk_maybe_free(e);
	}
	pthread_mutex_unlock(&lk_mu);
}

/* ---- expansion and validation ------------------------------------------------- */

int instances_expand(struct inst *in, cell_error *err)
{
	json_t *cfg = NULL, *devs = NULL;

	if (profiles_expand(in->profiles, in->config, in->devices, &cfg, &devs, err) < 0)
		return -EINVAL;
	json_decref(in->exp_config);
	json_decref(in->exp_devices);
	in->exp_config = cfg;
	in->exp_devices = devs;
	return 0;
}

/* Profiles in order, then the instance's own; values and devices are
 * shared, not copied (a later device replaces an earlier one whole). */
static void overlay_shared(json_t *dst, json_t *src)
{
	const char *key;
	json_t *v;

	json_object_foreach(src, key, v) {
		if (json_is_null(v))
			json_object_del(dst, key);
		else
			json_object_set(dst, key, v);
	}
}

int instances_expand_shared(struct inst *in, json_t *profile_objs, cell_error *err)
{
	json_t *cfg = json_object(), *devs = json_object(), *p;
	size_t i;

	if (!cfg || !devs) {
		json_decref(cfg);
		json_decref(devs);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	json_array_foreach(in->profiles, i, p) {
		json_t *o = json_object_get(profile_objs, json_string_value(p));
		overlay_shared(cfg, json_object_get(o, "config"));
		overlay_shared(devs, json_object_get(o, "devices"));
	}
	overlay_shared(cfg, in->config);
	overlay_shared(devs, in->devices);
	json_decref(in->exp_config);
	json_decref(in->exp_devices);
	in->exp_config = cfg;
	in->exp_devices = devs;
	return 0;
}

int instances_expand_with(struct inst *in, json_t *profile_objs, cell_error *err)
{
	_cleanup_json_ json_t *objs = json_array();
	json_t *cfg = NULL, *devs = NULL, *p;
	size_t i;

	if (!objs)
		return cell_err(err, 500, ENOMEM, "out of memory");
	json_array_foreach(in->profiles, i, p) {
		json_t *o = json_object_get(profile_objs, json_string_value(p));
		if (o)
			json_array_append(objs, o);
	}
	if (profiles_expand_objs(objs, in->config, in->devices, &cfg, &devs, err) < 0)
		return -EINVAL;
	json_decref(in->exp_config);
	json_decref(in->exp_devices);
	in->exp_config = cfg;
	in->exp_devices = devs;
	return 0;
}

int instances_load(const char *name, struct inst *out, cell_error *err)
{
	int rc = db_inst_get(name, out, err);

	if (rc == 0 && (rc = instances_expand(out, err)) < 0)
		inst_clear(out);
	return rc;
}

/* The root disk of expanded devices: name and device, or NULL. */
json_t *inst_root_disk(json_t *devices, const char **devname)
{
	const char *key;
	json_t *dev;

	json_object_foreach(devices, key, dev) {
		const char *t = json_string_value(json_object_get(dev, "type"));
		const char *p = json_string_value(json_object_get(dev, "path"));
		if (t && p && !strcmp(t, "disk") && !strcmp(p, "/")) {
			if (devname)
				*devname = key;
			return dev;
		}
	}
	return NULL;
}

struct stor_pool *instances_pool(const struct inst *in, cell_error *err)
{
	struct stor_pool *p = in->pool && *in->pool ? pools_get(in->pool) : NULL;

	if (!p)
		cell_err(err, 500, ENOENT, "Storage pool \"%s\" of instance \"%s\" is not available",
			 in->pool ? in->pool : "", in->name);
	return p;
}

static int check_profiles(json_t *profiles, cell_error *err)
{
	if (!json_is_array(profiles))
		return cell_err(err, 400, EINVAL, "profiles must be a list of names");
	return profiles_check_exist(profiles, err);
}

static int check_config_strings(json_t *config, const char *what, cell_error *err)
{
	const char *key;
	json_t *v;

	if (!json_is_object(config))
		return cell_err(err, 400, EINVAL, "%s must be an object", what);
	json_object_foreach(config, key, v)
		if (!json_is_string(v))
			return cell_err(err, 400, EINVAL, "%s: value of \"%s\" must be a string", what,
					key);
	return 0;
}

/* Render the liblxc config into a scratch buffer: that resolves every
 * device against the host (bind sources, device nodes, CPU sets) exactly as
 * a start would, so a bad value is a 400 now rather than a failed start. */
static int check_render(struct inst *in, cell_error *err)
{
	_cleanup_sb_ strbuf sb = { 0 };
	_cleanup_idmap_ struct idmap map = { 0 };
	struct inst_lxc_spec spec = { .name = in->name, .rootfs = "/nonexistent/rootfs",
				      .config = in->exp_config, .devices = in->exp_devices };

	if (!inst_json_is_true(in->exp_config, "security.privileged") &&
	    inst_idmap_base_copy(&map) == 0)
		spec.idmap = &map;
	return inst_lxc_config_render(&spec, &sb, err);
}

int instances_validate(struct inst *in, cell_error *err)
{
	const char *pool;
	json_t *root;
	int rc;

	if (!instances_name_valid(in->name))
		return cell_err(err, 400, EINVAL, "Invalid instance name \"%s\"",
				in->name ? in->name : "");
	if (in->type && *in->type && strcmp(in->type, "container"))
		return cell_err(err, 400, EOPNOTSUPP, "Instance type \"%s\" is not supported",
				in->type);
	if ((rc = check_config_strings(in->config, "config", err)) < 0 ||
	    (rc = check_profiles(in->profiles, err)) < 0)
		return rc;
	if (!json_is_object(in->devices))
		return cell_err(err, 400, EINVAL, "devices must be an object");
	if ((rc = instances_expand(in, err)) < 0)
		return rc;
	if ((rc = inst_lxc_validate(in->exp_config, in->exp_devices, err)) < 0)
		return rc;
	root = inst_root_disk(in->exp_devices, NULL);
	if (!root)
		return cell_err(err, 400, EINVAL,
				"Failed getting root disk: No root device could be found");
	pool = json_string_value(json_object_get(root, "pool"));
	if (!pool || !pools_get(pool))
		return cell_err(err, 404, ENOENT, "Storage pool \"%s\" not found", pool ? pool : "");
	if (in->pool && *in->pool && strcmp(in->pool, pool))
		return cell_err(err, 400, EINVAL,
				"Moving an instance to another storage pool (\"%s\" to \"%s\") is not supported",
				in->pool, pool);
	free(in->pool);
	if (!(in->pool = strdup(pool)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	return check_render(in, err);
}

/* ---- id maps ------------------------------------------------------------------- */

static struct idmap idmap_base;
static bool idmap_base_ok;
/* Held from choosing an isolated range until the DB records it, so two
 * creates or starts never pick the same one. */
static pthread_mutex_t idmap_mu = PTHREAD_MUTEX_INITIALIZER;

int inst_idmap_init(void)
{
	cell_error err;

	idmap_free(&idmap_base);
	if (idmap_default(NULL, NULL, NULL, NULL, &idmap_base, &err) < 0) {
		log_warn("instances: no id map for unprivileged containers: %s", err.msg);
		return -ENOENT;
	}
	idmap_base_ok = true;
	return 0;
}

int inst_idmap_base_copy(struct idmap *out)
{
	if (!idmap_base_ok)
		return -ENOENT;
	for (size_t i = 0; i < idmap_base.n; i++)
		if (idmap_append(out, &idmap_base.entries[i]) < 0)
			return -ENOMEM;
	return 0;
}

bool inst_json_is_true(json_t *config, const char *key)
{
	const char *v = json_string_value(json_object_get(config, key));

	return v && (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") ||
		     !strcasecmp(v, "on"));
}

static int idmap_from_key(json_t *config, const char *key, struct idmap *out)
{
	const char *v = json_string_value(json_object_get(config, key));
	cell_error err;

	return v ? idmap_parse_json(v, out, &err) : -ENOENT;
}

/* Every range held by another isolated container. */
static int idmap_used(const char *self, struct idmap *used, cell_error *err)
{
	struct inst *v = NULL;
	size_t n = 0;
	int rc = db_inst_list(&v, &n, err);

	for (size_t i = 0; rc == 0 && i < n; i++) {
		static const char *const keys[] = { "volatile.idmap.next", "volatile.idmap.current" };
		if (!strcmp(v[i].name, self))
			continue;
		for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
			_cleanup_idmap_ struct idmap m = { 0 };
			if (idmap_from_key(v[i].config, keys[k], &m) < 0 || idmap_is_empty(&m) ||
			    idmap_equal(&m, &idmap_base))
				continue;
			for (size_t j = 0; j < m.n; j++)
				if (idmap_append(used, &m.entries[j]) < 0)
					rc = cell_err(err, 500, ENOMEM, "out of memory");
		}
	}
	inst_list_free(v, n);
	return rc;
}

/* Does a stored isolated map still fit the config (same size, not the
 * shared base)? Then a start keeps it rather than moving the rootfs. */
static bool idmap_keep(json_t *cfg, const struct idmap *m)
{
	const char *size = json_string_value(json_object_get(cfg, "security.idmap.size"));
	const char *base = json_string_value(json_object_get(cfg, "security.idmap.base"));
	uint64_t want = size && *size ? strtoull(size, NULL, 10) : IDMAP_ISOLATED_SIZE;

	if (idmap_is_empty(m) || idmap_equal(m, &idmap_base))
		return false;
	if (base && *base && m->entries[0].hostid != strtoull(base, NULL, 10))
		return false;
	return m->entries[0].maprange == want;
}

int inst_idmap_pick(const char *name, json_t *exp_config, json_t *config, struct idmap *out,
		    cell_error *err)
{
	_cleanup_idmap_ struct idmap used = { 0 }, cur = { 0 };
	bool isolated = inst_json_is_true(exp_config, "security.idmap.isolated");
	int rc;

	idmap_free(out);
	if (inst_json_is_true(exp_config, "security.privileged"))
		return 0;
	if (!idmap_base_ok)
		return cell_err(err, 500, ENOENT,
				"No id map available for unprivileged containers (see /etc/subuid)");
	if (isolated && idmap_from_key(config, "volatile.idmap.next", &cur) == 0 &&
	    idmap_keep(exp_config, &cur)) {
		*out = cur;
		cur = (struct idmap){ 0 };
		return 0;
	}
	if (isolated && (rc = idmap_used(name, &used, err)) < 0)
		return rc;
	return inst_lxc_idmap_for(exp_config, &idmap_base, &used, out, err);
}

void inst_idmap_lock(void) { pthread_mutex_lock(&idmap_mu); }
void inst_idmap_unlock(void) { pthread_mutex_unlock(&idmap_mu); }

/* volatile.idmap.base/next (and last_state when the rootfs is in it). */
int inst_idmap_volatile(json_t *changes, const struct idmap *m, bool last_state)
{
	_cleanup_free_ char *text = idmap_format_json(m);
	char base[16];

	if (!text)
		return -ENOMEM;
	snprintf(base, sizeof(base), "%u", m->n ? m->entries[0].hostid : 0);
	json_object_set_new(changes, "volatile.idmap.base", json_string(base));
	json_object_set_new(changes, "volatile.idmap.next", json_string(text));
	if (last_state)
		json_object_set_new(changes, "volatile.last_state.idmap", json_string(text));
	return 0;
}

int instances_idmap_of(const struct inst *in, struct idmap *out, cell_error *err)
{
	idmap_free(out);
	if (idmap_from_key(in->config, "volatile.idmap.current", out) == 0 ||
	    idmap_from_key(in->config, "volatile.last_state.idmap", out) == 0)
		return 0;
	if (inst_json_is_true(in->exp_config ? in->exp_config : in->config, "security.privileged"))
		return 0;
	return inst_idmap_base_copy(out) < 0 ? cell_err(err, 500, ENOENT, "no id map") : 0;
}

/* The map the rootfs is stored in now (volatile.last_state.idmap). */
int inst_idmap_on_disk(const struct inst *in, struct idmap *out)
{
	idmap_free(out);
	if (idmap_from_key(in->config, "volatile.last_state.idmap", out) == 0)
		return 0;
	return inst_idmap_base_copy(out);
}

/* ---- JSON ------------------------------------------------------------------------ */

static json_t *obj_or_empty(json_t *o) { return o ? json_incref(o) : json_object(); }

json_t *inst_to_json(const struct inst *in, json_t *state, json_t *snaps)
{
	enum inst_status st = state ? (enum inst_status)json_integer_value(
					      json_object_get(state, "status_code"))
				    : inst_lxc_status(in->name, NULL);
	json_t *o;

	if (st != INST_RUNNING && st != INST_FROZEN)
		st = INST_STOPPED;
	o = json_pack("{ss so so sb so sb ss ss so so ss si ss ss ss ss}", "architecture",
		      in->architecture, "config", obj_or_empty(in->config), "devices",
		      obj_or_empty(in->devices), "ephemeral", in->ephemeral, "profiles",
		      in->profiles ? json_incref(in->profiles) : json_array(), "stateful",
		      in->stateful, "description", in->description ? in->description : "",
		      "created_at", in->created_at, "expanded_config",
		      obj_or_empty(in->exp_config ? in->exp_config : in->config), "expanded_devices",
		      obj_or_empty(in->exp_devices ? in->exp_devices : in->devices), "name",
		      in->name, "status_code", (int)st, "status", inst_status_name(st),
		      "last_used_at", in->last_used_at, "location", "none", "type",
		      in->type && *in->type ? in->type : "container");
	if (o)
		json_object_set_new(o, "project", json_string("default"));
	if (o && (state || snaps)) {
		json_object_set_new(o, "state", state ? json_incref(state) : json_null());
		json_object_set_new(o, "snapshots",
				    snaps && json_array_size(snaps) ? json_incref(snaps) : json_null());
		json_object_set_new(o, "backups", json_null());
	}
	return o;
}

json_t *inst_snap_to_json(const struct inst *in, const struct inst_snap *s)
{
	json_t *ecfg = NULL, *edev = NULL, *o;
	cell_error err;

	/* A snapshot's expanded view uses today's profiles with its own
	 * config, as LXD does. */
	if (profiles_expand(s->profiles, s->config, s->devices, &ecfg, &edev, &err) < 0) {
		ecfg = json_incref(s->config);
		edev = json_incref(s->devices);
	}
	o = json_pack("{ss so ss so sb so so ss so sb ss ss sI}", "architecture", in->architecture,
		      "config", obj_or_empty(s->config), "created_at", s->created_at, "devices",
		      obj_or_empty(s->devices), "ephemeral", in->ephemeral, "expanded_config", ecfg,
		      "expanded_devices", edev, "last_used_at", "0001-01-01T00:00:00Z", "profiles",
		      obj_or_empty(s->profiles), "stateful", s->stateful, "description",
		      s->description ? s->description : "", "expires_at", s->expires_at, "size",
		      (json_int_t)-1);
	if (o)
		json_object_set_new(o, "name", json_string(s->name));
	return o;
}

json_t *inst_etag_src(const struct inst *in)
{
	return json_pack("[s O O b O]", in->architecture, in->config, in->devices, in->ephemeral,
			 in->profiles);
}

json_t *inst_op_resources(const char *name, const char *snap)
{
	char i[128], c[128];
	json_t *r;

	snprintf(i, sizeof(i), "/1.0/instances/%s", name);
	snprintf(c, sizeof(c), "/1.0/containers/%s", name);
	r = json_pack("{s[s] s[s]}", "instances", i, "containers", c);
	if (r && snap) {
		char s[512];
		snprintf(s, sizeof(s), "/1.0/instances/%s/snapshots/%s", name, snap);
		json_object_set_new(r, "instances_snapshots", json_pack("[s]", s));
	}
	return r;
}

json_t *instances_state_json(const struct inst *in, bool with_disk, cell_error *err)
{
	json_t *st = inst_lxc_state(in->name, err);
	struct stor_pool *p;
	uint64_t used;

	if (!st || !with_disk || !(p = pools_get(in->pool)))
		return st;
	if (stor_ct_usage(p, in->name, &used, err) == 0)
		json_object_set_new(json_object_get(st, "disk"), "root",
				    json_pack("{sI sI}", "usage", (json_int_t)used, "total",
					      (json_int_t)0));
	return st;
}

/* ---- journal ---------------------------------------------------------------------- */

char *inst_journal_path(const char *kind, const char *name)
{
	return name ? xasprintf("%s/database/instances.journal/%s.%s", celld->dir, kind, name)
		    : xasprintf("%s/database/instances.journal", celld->dir);
}

int inst_journal_write(const char *kind, const char *name, const char *text, cell_error *err)
{
	_cleanup_free_ char *dir = inst_journal_path(kind, NULL);
	_cleanup_free_ char *path = inst_journal_path(kind, name);

	if (!dir || !path)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return cell_err_sys(err, 500, errno, "mkdir %s", dir);
	return util_write_file_atomic(path, text, strlen(text), 0600, err);
}

void inst_journal_remove(const char *kind, const char *name)
{
	_cleanup_free_ char *path = inst_journal_path(kind, name);

	if (path && unlink(path) < 0 && errno != ENOENT)
		log_warn("instances: remove %s: %m", path);
}

/* ---- create ----------------------------------------------------------------------- */

void inst_create_clear(struct inst_create *c)
{
	inst_clear(&c->in);
	free(c->image_fp);
	json_decref(c->image_properties);
	free(c->copy_from);
	memset(c, 0, sizeof(*c));
}

/* volatile.<nic>.hwaddr for every nic without a fixed hwaddr. */
void inst_fill_hwaddrs(json_t *exp_devices, json_t *config, json_t *changes)
{
	const char *key;
	json_t *dev;

	json_object_foreach(exp_devices, key, dev) {
		char vkey[160], hw[18];
		const char *t = json_string_value(json_object_get(dev, "type"));
		if (!t || strcmp(t, "nic") || json_string_value(json_object_get(dev, "hwaddr")))
			continue;
		snprintf(vkey, sizeof(vkey), "volatile.%s.hwaddr", key);
		if (json_string_value(json_object_get(config, vkey)))
			continue;
		inst_lxc_random_hwaddr(hw);
		json_object_set_new(changes, vkey, json_string(hw));
	}
}

static void merge_into(json_t *dst, json_t *src)
{
	json_object_update(dst, src);
}

static int create_volatile(struct inst_create *c, struct idmap *map, cell_error *err)
{
	struct inst *in = &c->in;
	_cleanup_json_ json_t *ch = json_object();
	const char *key;
	json_t *v;
	char uuid[37];
	int rc;

	if (!ch)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = inst_idmap_pick(in->name, in->exp_config, in->config, map, err)) < 0)
		return rc;
	util_uuid(uuid);
	json_object_set_new(ch, "volatile.uuid", json_string(uuid));
	json_object_set_new(ch, "volatile.last_state.power", json_string("STOPPED"));
	if (c->source == INST_SRC_IMAGE) {
		json_object_set_new(ch, "volatile.base_image", json_string(c->image_fp));
		json_object_set_new(ch, "volatile.apply_template", json_string("create"));
		json_object_foreach(c->image_properties, key, v) {
			char k[256];
			snprintf(k, sizeof(k), "image.%s", key);
			if (json_is_string(v) && !json_object_get(in->config, k))
				json_object_set(ch, k, v);
		}
	} else if (c->source == INST_SRC_COPY) {
		json_object_set_new(ch, "volatile.apply_template", json_string("copy"));
	}
	if (inst_idmap_volatile(ch, map, true) < 0)
		return cell_err(err, 500, ENOMEM, "out of memory");
	inst_fill_hwaddrs(in->exp_devices, in->config, ch);
	merge_into(in->config, ch);
	merge_into(in->exp_config, ch);
	return 0;
}

static int create_insert(struct inst_create *c, struct idmap *map, cell_error *err)
{
	struct inst *in = &c->in;
	char now[40];
	int rc;

	util_now_rfc3339(now);
	free(in->created_at);
	in->created_at = strdup(now);
	if (!in->type)
		in->type = strdup("container");
	if (!in->created_at || !in->type)
		return cell_err(err, 500, ENOMEM, "out of memory");
	inst_idmap_lock();
	rc = create_volatile(c, map, err);
	if (rc == 0)
		rc = db_inst_insert(in, err);
	inst_idmap_unlock();
	return rc;
}

/* The source container's rootfs map, for a copy. */
static int copy_source_map(struct inst *src, struct idmap *out, cell_error *err)
{
	if (inst_idmap_on_disk(src, out) < 0 &&
	    !inst_json_is_true(src->exp_config, "security.privileged"))
		return cell_err(err, 500, ENOENT, "copy: no id map for %s", src->name);
	return 0;
}

/* A copy of one snapshot: the whole volume with its snapshots, the
 * snapshot restored over it, the snapshots dropped.  Works on every driver
 * with the ops the table has. */
static int copy_from_snapshot(struct stor_pool *p, const char *src, const char *snap,
			      const char *dst, struct idmap *from, struct idmap *to, cell_error *err)
{
	_cleanup_strv_ char **snaps = NULL;
	int rc;

	if ((rc = stor_ct_copy(p, src, dst, true, from, to, err)) < 0)
		return rc;
	if ((rc = stor_ct_snapshot_restore(p, dst, snap, err)) < 0 ||
	    (rc = stor_snapshot_list(p, dst, &snaps, err)) < 0)
		return rc;
	for (char **s = snaps; *s; s++)
		if ((rc = stor_ct_snapshot_delete(p, dst, *s, err)) < 0)
			return rc;
	return 0;
}

/* Snapshot rows for a copy that brought them along. */
static int copy_snapshot_rows(struct inst *src, struct inst *dst, cell_error *err)
{
	struct inst_snap *v = NULL;
	size_t n = 0;
	int rc = db_snap_list(src->id, &v, &n, err);

	for (size_t i = 0; rc == 0 && i < n; i++) {
		v[i].instance_id = dst->id;
		rc = db_snap_insert(&v[i], err);
	}
	inst_snap_list_free(v, n);
	return rc;
}

static int create_copy(struct inst_create *c, struct stor_pool *p, struct idmap *to,
		       cell_error *err)
{
	_cleanup_free_ char *srcname = strdup(c->copy_from);
	_cleanup_inst_ struct inst src = { 0 };
	_cleanup_idmap_ struct idmap from = { 0 };
	char *slash;
	int rc;

	if (!srcname)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((slash = strchr(srcname, '/')))
		*slash++ = '\0';
	if ((rc = instances_load(srcname, &src, err)) < 0)
		return rc;
	if (strcmp(src.pool, c->in.pool))
		return cell_err(err, 400, EOPNOTSUPP, "Copying between storage pools is not supported");
	if ((rc = copy_source_map(&src, &from, err)) < 0)
		return rc;
	if (slash)
		return copy_from_snapshot(p, srcname, slash, c->in.name, &from, to, err);
	rc = stor_ct_copy(p, srcname, c->in.name, !c->instance_only, &from, to, err);
	if (rc == 0 && !c->instance_only)
		rc = copy_snapshot_rows(&src, &c->in, err);
	return rc;
}

static int unpack_progress(void *data, uint64_t done, uint64_t total)
{
	struct operation *op = data;
	char text[64];

	if (!op || !total)
		return 0;
	snprintf(text, sizeof(text), "Unpack: %d%%", (int)(done * 100 / total));
	op_progress(op, "create_instance_from_image_unpack_progress", text);
	return op_cancelled(op) ? -ECANCELED : 0;
}

static int create_image(struct inst_create *c, struct stor_pool *p, struct idmap *map,
			struct operation *op, cell_error *err)
{
	_cleanup_free_ char *img = img_path(c->image_fp);
	_cleanup_free_ char *rootfs = img_rootfs_path(c->image_fp);
	struct stor_image_src src = { .image_path = img,
				      .rootfs_path = c->image_split ? rootfs : NULL,
				      .progress = unpack_progress, .progress_data = op };
	int rc;

	if (!img || !rootfs)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if ((rc = stor_image_ensure(p, c->image_fp, &src, err)) < 0)
		return rc;
	if ((rc = stor_ct_create_from_image(p, c->in.name, c->image_fp, map, err)) < 0)
		return rc;
	if (img_mark_used(c->image_fp, err) < 0)
		log_warn("instances: image %.12s: last_used_at: %s", c->image_fp, err->msg);
	return 0;
}

static void root_quota(struct inst *in, struct stor_pool *p)
{
	json_t *root = inst_root_disk(in->exp_devices, NULL);
	const char *size = json_string_value(json_object_get(root, "size"));
	uint64_t bytes;
	cell_error err;

	if (size && *size && stor_parse_size(size, &bytes) == 0 &&
	    stor_ct_set_quota(p, in->name, bytes, &err) < 0 && err.status != 400)
		log_warn("instances: %s: root disk size: %s", in->name, err.msg);
}

static int create_storage(struct inst_create *c, struct idmap *map, struct operation *op,
			  cell_error *err)
{
	struct stor_pool *p = instances_pool(&c->in, err);

	if (!p)
		return -ENOENT;
	switch (c->source) {
	case INST_SRC_IMAGE:
		return create_image(c, p, map, op, err);
	case INST_SRC_COPY:
		return create_copy(c, p, map, err);
	default:
		return stor_ct_create_empty(p, c->in.name, map, err);
	}
}

/* Undo a create whose row is in: the volume (if any), then the row. */
static void create_undo(struct inst *in)
{
	struct stor_pool *p = pools_get(in->pool);
	cell_error err;

	if (p && stor_ct_delete(p, in->name, &err) < 0)
		log_error("instances: create %s failed, and so did removing its volume: %s",
			  in->name, err.msg);
	if (db_inst_delete(in->id, &err) < 0)
		log_error("instances: create %s failed, and so did removing its row: %s", in->name,
			  err.msg);
}

static int create_locked(struct inst_create *c, struct operation *op, cell_error *err)
{
	_cleanup_idmap_ struct idmap map = { 0 };
	struct stor_pool *p;
	int rc;

	if ((rc = create_insert(c, &map, err)) < 0)
		return rc;
	rc = create_storage(c, &map, op, err);
	if (rc < 0) {
		create_undo(&c->in);
		return rc;
	}
	if ((p = pools_get(c->in.pool)))
		root_quota(&c->in, p);
	return 0;
}

int instances_create(struct inst_create *c, struct operation *op, cell_error *err)
{
	_cleanup_free_ char *name = strdup(c->in.name);
	_cleanup_free_ char *src = c->copy_from ? strndup(c->copy_from, strcspn(c->copy_from, "/"))
						: NULL;
	char url[128];
	int rc;

	if (!name || (c->copy_from && !src)) {
		instances_unreserve(c->in.name);
		return cell_err(err, 500, ENOMEM, "out of memory");
	}
	/* A copy holds its source too, so the source cannot change under it. */
	if (src)
		instances_lock2(name, src);
	else
		instances_lock(name);
	rc = create_locked(c, op, err);
	instances_unlock(name);
	if (src && strcmp(src, name))
		instances_unlock(src);
	instances_unreserve(name);
	if (rc < 0)
		return cell_err_wrap(err, rc, "Failed creating instance \"%s\"", name);
	log_info("instances: created %s", name);
	snprintf(url, sizeof(url), "/1.0/instances/%s", name);
	events_lifecycle("instance-created", url, NULL);
	if (c->start)
		return instances_start(name, err);
	return 0;
}

/* ---- delete ----------------------------------------------------------------------- */

/* Volume (with snapshots), lxc dir, then the row: a crash between leaves
 * a row without a volume, which start-up drops. */
int inst_delete_locked(struct inst *in, cell_error *err)
{
	struct stor_pool *p = pools_get(in->pool);
	int rc;

	if (inst_lxc_status(in->name, NULL) != INST_STOPPED)
		return cell_err(err, 400, EBUSY, "Instance is running");
	inst_monitor_unwatch(in->name);
	if (p && (rc = stor_ct_delete(p, in->name, err)) < 0)
		return rc;
	if ((rc = inst_lxc_delete(in->name, err)) < 0)
		return rc;
	if ((rc = db_inst_delete(in->id, err)) < 0)
		return rc;
	log_info("instances: deleted %s", in->name);
	return 0;
}

int instances_delete(const char *name, cell_error *err)
{
	_cleanup_inst_ struct inst in = { 0 };
	char url[128];
	int rc;

	instances_lock(name);
	rc = db_inst_get(name, &in, err);
	if (rc == 0 && inst_json_is_true(in.config, "security.protection.delete"))
		rc = cell_err(err, 400, EPERM,
			      "Instance is protected from being deleted (security.protection.delete)");
	if (rc == 0 && (rc = instances_expand(&in, err)) == 0 &&
	    inst_json_is_true(in.exp_config, "security.protection.delete"))
		rc = cell_err(err, 400, EPERM,
			      "Instance is protected from being deleted (security.protection.delete)");
	if (rc == 0)
		rc = inst_delete_locked(&in, err);
	instances_unlock(name);
	if (rc < 0)
		return cell_err_wrap(err, rc, "Failed deleting instance \"%s\"", name);
	snprintf(url, sizeof(url), "/1.0/instances/%s", name);
	events_lifecycle("instance-deleted", url, NULL);
	return 0;
}

/* ---- rename ----------------------------------------------------------------------- */

/* Volume, then lxc dir, then row, under a journal record that start-up
 * rolls forward (volume moved) or back (volume still under the old name). */
static int rename_locked(struct inst *in, const char *newname, cell_error *err)
{
	struct stor_pool *p = instances_pool(in, err);
	_cleanup_json_ json_t *ch = NULL;
	int rc;

	if (!p)
		return -ENOENT;
	if (inst_lxc_status(in->name, NULL) != INST_STOPPED)
		return cell_err(err, 400, EBUSY, "Renaming of running instance not allowed");
	if ((rc = db_inst_exists(newname, err)) != 0)
		return rc < 0 ? rc : cell_err(err, 409, EEXIST, "Name \"%s\" already in use", newname);
	if ((rc = inst_journal_write("rename", in->name, newname, err)) < 0)
		return rc;
	if ((rc = stor_ct_rename(p, in->name, newname, err)) < 0) {
		inst_journal_remove("rename", in->name);
		return rc;
	}
	if ((rc = inst_lxc_rename(in->name, newname, err)) < 0 ||
	    (rc = db_inst_rename(in->id, newname, err)) < 0) {
		/* Put the volume back; the journal finishes the job if that fails. */
		cell_error e2;
		inst_lxc_rename(newname, in->name, &e2);
		if (stor_ct_rename(p, newname, in->name, &e2) == 0)
			inst_journal_remove("rename", in->name);
		return rc;
	}
	inst_journal_remove("rename", in->name);
	ch = json_pack("{ss}", "volatile.apply_template", "rename");
	if (ch && db_inst_config_patch(in->id, ch, NULL, err) < 0)
		log_warn("instances: %s: %s", newname, err->msg);
	return 0;
}

int instances_rename(const char *name, const char *newname, cell_error *err)
{
	_cleanup_inst_ struct inst in = { 0 };
	char url[128];
	int rc;

	if (!instances_name_valid(newname))
		return cell_err(err, 400, EINVAL, "Invalid instance name \"%s\"", newname);
	if (!strcmp(name, newname))
		return cell_err(err, 409, EEXIST, "Name \"%s\" already in use", newname);
	instances_lock2(name, newname);
	rc = db_inst_get(name, &in, err);
	if (rc == 0)
		rc = rename_locked(&in, newname, err);
	instances_unlock(name);
	instances_unlock(newname);
	if (rc < 0)
		return cell_err_wrap(err, rc, "Failed renaming instance \"%s\"", name);
	log_info("instances: renamed %s to %s", name, newname);
	snprintf(url, sizeof(url), "/1.0/instances/%s", newname);
	events_lifecycle("instance-renamed", url, json_pack("{ss}", "old_name", name));
	return 0;
}

/* ---- update ------------------------------------------------------------------------ */

/* The keys a client cannot drop: they describe the rootfs on disk. */
static const char *const protected_keys[] = {
	"volatile.idmap.base", "volatile.idmap.current", "volatile.idmap.next",
	"volatile.last_state.idmap", "volatile.last_state.power", "volatile.uuid",
};

/* description, ephemeral, architecture, profiles: PUT resets what is
 * absent (as LXD's decoder leaves zero values), PATCH keeps it. */
static int apply_scalars(struct inst *in, json_t *body, bool patch, cell_error *err)
{
	json_t *v;

	if ((v = json_object_get(body, "description")) && !json_is_null(v)) {
		if (!json_is_string(v))
			return cell_err(err, 400, EINVAL, "description must be a string");
		free(in->description);
		in->description = strdup(json_string_value(v));
	} else if (!patch) {
		free(in->description);
		in->description = strdup("");
	}
	if ((v = json_object_get(body, "ephemeral")) && !json_is_null(v)) {
		if (!json_is_boolean(v))
			return cell_err(err, 400, EINVAL, "ephemeral must be a boolean");
		in->ephemeral = json_is_true(v);
	} else if (!patch) {
		in->ephemeral = false;
	}
	if ((v = json_object_get(body, "architecture")) && json_is_string(v) &&
	    *json_string_value(v)) {
		const char *a = image_arch_normalize(json_string_value(v));
		if (!a)
			return cell_err(err, 400, EINVAL, "Invalid architecture \"%s\"",
					json_string_value(v));
		free(in->architecture);
		in->architecture = strdup(a);
	}
	if ((v = json_object_get(body, "profiles")) && !json_is_null(v)) {
		json_decref(in->profiles);
		in->profiles = json_incref(v);
	} else if (!patch) {
		json_decref(in->profiles);
		in->profiles = json_array();
	}
	return 0;
}

/* PUT replaces the config, PATCH merges into it; either way the keys that
 * describe the rootfs on disk survive and "" unsets (LXD stores no empty
 * values). */
static int apply_config(struct inst *in, json_t *body, bool patch, cell_error *err)
{
	json_t *v = json_object_get(body, "config"), *val;
	_cleanup_json_ json_t *old = in->config;
	const char *key;
	void *tmp;

	if (v && !json_is_null(v) && check_config_strings(v, "config", err) < 0) {
		in->config = json_incref(old);
		return -EINVAL;
	}
	if (!v || json_is_null(v)) {
		in->config = patch ? json_incref(old) : json_object();
	} else {
		in->config = patch ? json_deep_copy(old) : json_object();
		json_object_update(in->config, v);
	}
	if (!in->config)
		return cell_err(err, 500, ENOMEM, "out of memory");
	for (size_t i = 0; i < ARRAY_SIZE(protected_keys); i++)
		if (!json_object_get(in->config, protected_keys[i]) &&
		    json_object_get(old, protected_keys[i]))
			json_object_set(in->config, protected_keys[i],
					json_object_get(old, protected_keys[i]));
	json_object_foreach_safe(in->config, tmp, key, val)
		if (json_is_string(val) && !*json_string_value(val))
			json_object_del(in->config, key);
	return 0;
}

/* PUT replaces the devices, PATCH replaces the named ones whole. */
static int apply_devices(struct inst *in, json_t *body, bool patch, cell_error *err)
{
	json_t *v = json_object_get(body, "devices"), *d;

	if (!v || json_is_null(v)) {
		if (patch)
			return 0;
		d = json_object();
	} else if (!json_is_object(v)) {
		return cell_err(err, 400, EINVAL, "devices must be an object");
	} else if (patch) {
		d = json_deep_copy(in->devices);
		if (d)
			json_object_update(d, v);
	} else {
		d = json_deep_copy(v);
	}
	json_decref(in->devices);
	in->devices = d;
	return 0;
}

static int apply_body(struct inst *in, json_t *body, bool patch, cell_error *err)
{
	int rc;

	if ((rc = apply_scalars(in, body, patch, err)) < 0 ||
	    (rc = apply_config(in, body, patch, err)) < 0 ||
	    (rc = apply_devices(in, body, patch, err)) < 0)
		return rc;
	if (!in->description || !in->architecture || !in->config || !in->devices || !in->profiles)
		return cell_err(err, 500, ENOMEM, "out of memory");
	return 0;
}

/* Devices a running container cannot take changes of, compared old/new. */
static int check_live_devices(json_t *olddev, json_t *newdev, cell_error *err)
{
	const char *key;
	json_t *d;

	json_object_foreach(olddev, key, d) {
		json_t *n = json_object_get(newdev, key);
		if ((!n || !json_equal(n, d)) && !inst_lxc_device_hotpluggable(d))
			return cell_err(err, 400, EOPNOTSUPP,
					"Device \"%s\" cannot be changed on a running instance", key);
	}
	json_object_foreach(newdev, key, d) {
		json_t *o = json_object_get(olddev, key);
		if ((!o || !json_equal(o, d)) && !inst_lxc_device_hotpluggable(d))
			return cell_err(err, 400, EOPNOTSUPP,
					"Device \"%s\" cannot be added to a running instance", key);
	}
	return 0;
}

/* Build and validate the instance as the update would store it. */
static int update_prepare(const char *name, json_t *body, bool patch, struct inst *cur,
			  struct inst *next, cell_error *err)
{
	int rc;

	if ((rc = instances_load(name, cur, err)) < 0)
		return rc;
	if ((rc = db_inst_get(name, next, err)) < 0)
		return rc;
	if ((rc = apply_body(next, body, patch, err)) < 0)
		return rc;
	if ((rc = instances_validate(next, err)) < 0)
		return rc;
	if (inst_lxc_status(name, NULL) != INST_STOPPED &&
	    (rc = check_live_devices(cur->exp_devices, next->exp_devices, err)) < 0)
		return rc;
	return 0;
}

int instances_update_check(const char *name, json_t *body, bool patch, cell_error *err)
{
	_cleanup_inst_ struct inst cur = { 0 }, next = { 0 };

	if (json_object_get(body, "restore"))
		return 0;
	return update_prepare(name, body, patch, &cur, &next, err);
}

static bool limits_changed(json_t *a, json_t *b)
{
	static const char *const pfx[] = { "limits.cpu", "limits.memory", "limits.processes" };
	const char *key;
	json_t *v;

	json_object_foreach(a, key, v)
		for (size_t i = 0; i < ARRAY_SIZE(pfx); i++)
			if (str_has_prefix(key, pfx[i]) && !json_equal(v, json_object_get(b, key)))
				return true;
	json_object_foreach(b, key, v)
		for (size_t i = 0; i < ARRAY_SIZE(pfx); i++)
			if (str_has_prefix(key, pfx[i]) && !json_object_get(a, key))
				return true;
	return false;
}

/* Hot-unplug what went or changed, then plug what came or changed. */
int inst_apply_devices(const char *name, json_t *olddev, json_t *newdev, json_t *config,
		       cell_error *err)
{
	const char *key;
	json_t *d;
	int rc;

	json_object_foreach(olddev, key, d) {
		json_t *n = json_object_get(newdev, key);
		if (n && json_equal(n, d))
			continue;
		if ((rc = inst_lxc_device_remove(name, key, d, err)) < 0)
			return rc;
	}
	json_object_foreach(newdev, key, d) {
		json_t *o = json_object_get(olddev, key);
		if (o && json_equal(o, d))
			continue;
		if ((rc = inst_lxc_device_add(name, key, d, config, err)) < 0)
			return rc;
	}
	return 0;
}

/* Limits and devices onto a running container (the old ones back on
 * failure, best effort). */
int inst_apply_live(struct inst *cur, struct inst *next, cell_error *err)
{
	int rc;

	if (inst_lxc_status(cur->name, NULL) == INST_STOPPED)
		return 0;
	if (limits_changed(cur->exp_config, next->exp_config) &&
	    (rc = inst_lxc_set_limits(cur->name, next->exp_config, err)) < 0) {
		cell_error e2;
		inst_lxc_set_limits(cur->name, cur->exp_config, &e2);
		return rc;
	}
	if ((rc = inst_apply_devices(cur->name, cur->exp_devices, next->exp_devices,
				     next->exp_config, err)) < 0) {
		cell_error e2;
		inst_lxc_set_limits(cur->name, cur->exp_config, &e2);
		return rc;
	}
	return 0;
}

static int update_locked(const char *name, json_t *body, bool patch, cell_error *err)
{
	_cleanup_inst_ struct inst cur = { 0 }, next = { 0 };
	_cleanup_json_ json_t *hw = json_object();
	int rc;

	if ((rc = update_prepare(name, body, patch, &cur, &next, err)) < 0)
		return rc;
	inst_fill_hwaddrs(next.exp_devices, next.config, hw);
	json_object_update(next.config, hw);
	json_object_update(next.exp_config, hw);
	/* Map changes (privileged, isolated) take effect at the next start,
	 * which shifts the rootfs; volatile.idmap.next says what it will be. */
	if ((rc = inst_apply_live(&cur, &next, err)) < 0)
		return rc;
	if ((rc = db_inst_update(&next, err)) < 0) {
		cell_error e2;
		inst_apply_live(&next, &cur, &e2);
		return rc;
	}
	return 0;
}

int instances_update(const char *name, json_t *body, bool patch, cell_error *err)
{
	char url[128];
	int rc;

	instances_lock(name);
	rc = update_locked(name, body, patch, err);
	instances_unlock(name);
	if (rc < 0)
		return cell_err_wrap(err, rc, "Failed updating instance \"%s\"", name);
	snprintf(url, sizeof(url), "/1.0/instances/%s", name);
	events_lifecycle("instance-updated", url, NULL);
	return 0;
}

/* ---- templates ----------------------------------------------------------------------- */

static json_t *template_context(const struct inst *in)
{
	bool priv = inst_json_is_true(in->exp_config, "security.privileged");
	json_t *meta = json_pack("{ss ss ss ss ss}", "name", in->name, "type", "container",
				 "architecture", in->architecture, "ephemeral",
				 in->ephemeral ? "true" : "false", "privileged",
				 priv ? "true" : "false");

	return json_pack("{so sO sO}", "container", meta, "config", in->exp_config, "devices",
			 in->exp_devices);
}

/* Render the image's templates for `trigger` into the rootfs. [worker] */
int inst_templates_apply(const struct inst *in, struct stor_pool *p, const char *trigger,
			 cell_error *err)
{
	_cleanup_free_ char *vol = stor_ct_path(p, in->name);
	_cleanup_free_ char *meta = vol ? xasprintf("%s/metadata.yaml", vol) : NULL;
	_cleanup_free_ char *tdir = vol ? xasprintf("%s/templates", vol) : NULL;
	_cleanup_free_ char *rootfs = stor_ct_rootfs(p, in->name);
	_cleanup_free_ char *text = NULL;
	_cleanup_image_meta_ struct image_meta m = { 0 };
	_cleanup_json_ json_t *ctx = NULL;
	size_t len;
	int rc;

	if (!vol || !meta || !tdir || !rootfs)
		return cell_err(err, 500, ENOMEM, "out of memory");
	if (access(meta, F_OK) < 0)
		return 0;   /* no metadata: an empty or hand-made rootfs */
	if ((rc = util_read_file(meta, &text, &len, err)) < 0 ||
	    (rc = image_meta_parse(text, len, &m, err)) < 0)
		return rc;
	if (!json_object_size(m.templates))
		return 0;
	if (!(ctx = template_context(in)))
		return cell_err(err, 500, ENOMEM, "out of memory");
	rc = image_templates_apply(rootfs, tdir, m.templates, trigger, ctx, err);
	return rc < 0 ? cell_err_wrap(err, rc, "templates (%s)", trigger) : 0;
}

/* ---- publishing (POST /1.0/images from an instance or snapshot) ------------------------- */

struct publish_priv {
	char name[64];
};

static void publish_release(struct img_instance_tree *t)
{
	struct publish_priv *p = t->priv;

	if (p)
		instances_unlock(p->name);
	free(p);
	t->priv = NULL;
}

/* image.<key> config keys back into the image properties they came from. */
static json_t *publish_properties(json_t *config)
{
	json_t *props = json_object();
	const char *key;
	json_t *v;

	json_object_foreach(config, key, v)
		if (str_has_prefix(key, "image.") && json_is_string(v))
			json_object_set(props, key + 6, v);
	return props;
}

static json_t *publish_templates(const char *vol)
{
	_cleanup_free_ char *meta = xasprintf("%s/metadata.yaml", vol), *text = NULL;
	_cleanup_image_meta_ struct image_meta m = { 0 };
	size_t len;
	cell_error err;

	if (!meta || util_read_file(meta, &text, &len, &err) < 0 ||
	    image_meta_parse(text, len, &m, &err) < 0)
		return NULL;
	return json_incref(m.templates);
}

static int publish_fill(struct inst *in, const char *snap, struct stor_pool *p,
			struct img_instance_tree *out, cell_error *err)
{
	_cleanup_inst_snap_ struct inst_snap s = { 0 };
	_cleanup_free_ char *vol = snap ? stor_snap_path(p, in->name, snap) : stor_ct_path(p, in->name);
	_cleanup_free_ char *tdir = vol ? xasprintf("%s/templates", vol) : NULL;
	json_t *cfg = in->config;
	int rc;

	if (snap && (rc = db_snap_get(in->id, snap, &s, err)) < 0)
		return rc;
	if (snap)
		cfg = s.config;
	if (!vol || !tdir)
		return cell_err(err, 500, ENOMEM, "out of memory");
	out->rootfs_dir = xasprintf("%s/rootfs", vol);
	out->templates_dir = access(tdir, F_OK) == 0 ? strdup(tdir) : NULL;
	out->architecture = strdup(in->architecture);
	out->properties = publish_properties(cfg);
	out->templates = publish_templates(vol);
	if (!out->rootfs_dir || !out->architecture || !out->properties)
		return cell_err(err, 500, ENOMEM, "out of memory");
	{
		struct inst view = { .config = cfg };
		if (inst_idmap_on_disk(&view, &out->unshift) < 0 &&
		    !inst_json_is_true(cfg, "security.privileged"))
			return cell_err(err, 500, ENOENT, "no id map for %s", in->name);
	}
	return 0;
}

/* The images code asks for "c1" or "c1/snap0": the tree to pack, with the
 * instance held (its lock) until release. A running instance is refused as
 * LXD does; its client stops it first with --force. */
static int publish_resolve(const char *name, struct img_instance_tree *out, cell_error *err)
{
	_cleanup_free_ char *inst = strndup(name, strcspn(name, "/"));
	_cleanup_inst_ struct inst in = { 0 };
	const char *slash = strchr(name, '/');
	struct publish_priv *priv;
	struct stor_pool *p;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!inst || !instances_name_valid(inst))
		return cell_err(err, 400, EINVAL, "Invalid instance name \"%s\"", name);
	instances_lock(inst);
	rc = instances_load(inst, &in, err);
	if (rc == 0 && !slash && inst_lxc_status(inst, NULL) != INST_STOPPED)
		rc = cell_err(err, 400, EBUSY, "The instance is currently running");
	if (rc == 0 && !(p = instances_pool(&in, err)))
		rc = -ENOENT;
	if (rc == 0)
		rc = publish_fill(&in, slash ? slash + 1 : NULL, p, out, err);
	if (rc == 0 && !(priv = calloc(1, sizeof(*priv))))
		rc = cell_err(err, 500, ENOMEM, "out of memory");
	if (rc < 0) {
		img_instance_tree_free(out);
		instances_unlock(inst);
		return rc;
	}
	snprintf(priv->name, sizeof(priv->name), "%s", inst);
	out->priv = priv;
	out->release = publish_release;
	return 0;
}

void inst_publish_register(void)
{
	img_set_instance_resolver(publish_resolve);
}
