#include "common/idmap.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

/* ---- basic map operations ---------------------------------------------- */

void idmap_free(struct idmap *m)
{
	free(m->entries);
	m->entries = NULL;
	m->n = 0;
}

int idmap_append(struct idmap *m, const struct idmap_entry *e)
{
	struct idmap_entry *ne;

	if (!e->maprange || (!e->isuid && !e->isgid) ||
	    (uint64_t)e->hostid + e->maprange > (1ULL << 32) ||
	    (uint64_t)e->nsid + e->maprange > (1ULL << 32))
		return -EINVAL;
	ne = realloc(m->entries, (m->n + 1) * sizeof(*ne));
	if (!ne)
		return -ENOMEM;
	ne[m->n++] = *e;
	m->entries = ne;
	return 0;
}

bool idmap_is_empty(const struct idmap *m)
{
	return !m || m->n == 0;
}

bool idmap_equal(const struct idmap *a, const struct idmap *b)
{
	size_t na = a ? a->n : 0, nb = b ? b->n : 0;

	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) {
		const struct idmap_entry *x = &a->entries[i], *y = &b->entries[i];
		if (x->isuid != y->isuid || x->isgid != y->isgid || x->hostid != y->hostid ||
		    x->nsid != y->nsid || x->maprange != y->maprange)
			return false;
	}
	return true;
}

/* ---- JSON --------------------------------------------------------------- */

/* Go's encoding/json matches field names case-insensitively; so do we. */
static json_t *obj_get_ci(json_t *o, const char *key)
{
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v)
		if (strcasecmp(k, key) == 0)
			return v;
	return NULL;
}

static int json_u32(json_t *o, const char *key, size_t idx, uint32_t *out, cell_error *err)
{
	json_t *v = obj_get_ci(o, key);
	json_int_t i;

	if (!v) {
		*out = 0;
		return 0;
	}
	if (!json_is_integer(v))
		return cell_err(err, 400, EINVAL, "idmap entry %zu: %s must be an integer", idx, key);
	i = json_integer_value(v);
	if (i < 0 || i > (json_int_t)UINT32_MAX)
		return cell_err(err, 400, ERANGE, "idmap entry %zu: %s %lld out of range", idx, key,
				(long long)i);
	*out = (uint32_t)i;
	return 0;
}

static int json_flag(json_t *o, const char *key, size_t idx, bool *out, cell_error *err)
{
	json_t *v = obj_get_ci(o, key);

	if (v && !json_is_boolean(v))
		return cell_err(err, 400, EINVAL, "idmap entry %zu: %s must be a boolean", idx, key);
	*out = v && json_is_true(v);
	return 0;
}

static int entry_from_json(json_t *o, size_t idx, struct idmap_entry *e, cell_error *err)
{
	int rc;

	if (!json_is_object(o))
		return cell_err(err, 400, EINVAL, "idmap entry %zu: not an object", idx);
	if ((rc = json_flag(o, "Isuid", idx, &e->isuid, err)) < 0 ||
	    (rc = json_flag(o, "Isgid", idx, &e->isgid, err)) < 0 ||
	    (rc = json_u32(o, "Hostid", idx, &e->hostid, err)) < 0 ||
	    (rc = json_u32(o, "Nsid", idx, &e->nsid, err)) < 0 ||
	    (rc = json_u32(o, "Maprange", idx, &e->maprange, err)) < 0)
		return rc;
	return 0;
}

int idmap_from_json(json_t *arr, struct idmap *out, cell_error *err)
{
	_cleanup_idmap_ struct idmap m = { 0 };
	size_t i;
	json_t *v;

	if (arr && !json_is_null(arr) && !json_is_array(arr))
		return cell_err(err, 400, EINVAL, "idmap: expected a JSON array");
	json_array_foreach(arr, i, v) {
		struct idmap_entry e;
		int rc = entry_from_json(v, i, &e, err);
		if (rc < 0)
			return rc;
		rc = idmap_append(&m, &e);
		if (rc == -ENOMEM)
			return cell_err(err, 500, ENOMEM, "idmap: out of memory");
		if (rc < 0)
			return cell_err(err, 400, EINVAL,
					"idmap entry %zu: empty, neither uid nor gid, or beyond 2^32", i);
	}
	idmap_free(out);
	*out = m;
	m = (struct idmap){ 0 };
	return 0;
}

int idmap_parse_json(const char *text, struct idmap *out, cell_error *err)
{
	_cleanup_json_ json_t *j = NULL;
	json_error_t je;

	if (!text || !*text) {
		idmap_free(out);
		return 0;
	}
	j = json_loads(text, JSON_DECODE_ANY, &je);
	if (!j)
		return cell_err(err, 400, EINVAL, "idmap: invalid JSON: %s", je.text);
	return idmap_from_json(j, out, err);
}

json_t *idmap_to_json(const struct idmap *m)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && m && i < m->n; i++) {
		const struct idmap_entry *e = &m->entries[i];
		/* Field order as Go marshals LXD's IdmapEntry. */
		json_t *o = json_pack("{s:b,s:b,s:I,s:I,s:I}", "Isuid", e->isuid, "Isgid", e->isgid,
				      "Hostid", (json_int_t)e->hostid, "Nsid", (json_int_t)e->nsid,
				      "Maprange", (json_int_t)e->maprange);
		if (!o || json_array_append_new(arr, o) < 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

char *idmap_format_json(const struct idmap *m)
{
	_cleanup_json_ json_t *j = idmap_to_json(m);
	return j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
}

/* ---- id translation ----------------------------------------------------- */

static int map_lookup(const struct idmap *m, bool uid, bool to_host, uint32_t in, uint32_t *out)
{
	for (size_t i = 0; m && i < m->n; i++) {
		const struct idmap_entry *e = &m->entries[i];
		uint32_t base = to_host ? e->nsid : e->hostid;
		if (uid ? !e->isuid : !e->isgid)
			continue;
		if (in >= base && (uint64_t)in < (uint64_t)base + e->maprange) {
			*out = (to_host ? e->hostid : e->nsid) + (in - base);
			return 0;
		}
	}
	return -ENOENT;
}

int idmap_shift_uid(const struct idmap *m, uint32_t nsid, uint32_t *hostid)
{
	return map_lookup(m, true, true, nsid, hostid);
}

int idmap_shift_gid(const struct idmap *m, uint32_t nsid, uint32_t *hostid)
{
	return map_lookup(m, false, true, nsid, hostid);
}

int idmap_unshift_uid(const struct idmap *m, uint32_t hostid, uint32_t *nsid)
{
	return map_lookup(m, true, false, hostid, nsid);
}

int idmap_unshift_gid(const struct idmap *m, uint32_t hostid, uint32_t *nsid)
{
	return map_lookup(m, false, false, hostid, nsid);
}

int idmap_remap_id(const struct idmap *from, const struct idmap *to, bool uid, uint32_t in,
		   uint32_t *out)
{
	uint32_t ns = in;

	if (!idmap_is_empty(from) && map_lookup(from, uid, false, in, &ns) < 0)
		return -ENOENT;
	if (!idmap_is_empty(to))
		return map_lookup(to, uid, true, ns, out);
	*out = ns;
	return 0;
}

/* ---- xattrs carrying ids ------------------------------------------------ */

#define CAP_REV_MASK 0xFF000000u
#define CAP_REV2 0x02000000u
#define CAP_REV3 0x03000000u
#define CAP_SZ2 20
#define CAP_SZ3 24
#define ACL_XATTR_VERSION 2
#define ACL_TAG_USER 0x02
#define ACL_TAG_GROUP 0x08

static uint32_t get_le32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}

static void put_le32(unsigned char *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

/*
 * A v2 capability has no rootid: it belongs to whatever namespace root looks
 * at it, which we treat as ns id 0.  The kernel only honours a v3 capability
 * inside a user namespace whose root is its rootid, so under a map it must be
 * v3 with the shifted root; without a map, rootid 0 is written back as v2
 * (the portable form images carry).
 */
static int remap_caps(const struct idmap *from, const struct idmap *to, const unsigned char *in,
		      size_t inlen, unsigned char *out, size_t *outlen)
{
	uint32_t magic, ns = 0, host;

	if (inlen < CAP_SZ2)
		return -EINVAL;
	magic = get_le32(in);
	if ((magic & CAP_REV_MASK) == CAP_REV3) {
		if (inlen < CAP_SZ3)
			return -EINVAL;
		if (!idmap_is_empty(from) && idmap_unshift_uid(from, get_le32(in + 20), &ns) < 0)
			return -ENOENT;
		if (idmap_is_empty(from))
			ns = get_le32(in + 20);
	} else if ((magic & CAP_REV_MASK) != CAP_REV2) {
		return 1;   /* v1 or unknown: no ids, leave alone */
	}
	host = ns;
	if (!idmap_is_empty(to) && idmap_shift_uid(to, ns, &host) < 0)
		return -ENOENT;
	memcpy(out, in, CAP_SZ2);
	if (idmap_is_empty(to) && host == 0) {
		put_le32(out, (magic & ~CAP_REV_MASK) | CAP_REV2);
		*outlen = CAP_SZ2;
	} else {
		put_le32(out, (magic & ~CAP_REV_MASK) | CAP_REV3);
		put_le32(out + 20, host);
		*outlen = CAP_SZ3;
	}
	return 0;
}

static int remap_acl(const struct idmap *from, const struct idmap *to, const unsigned char *in,
		     size_t inlen, unsigned char *out, size_t *outlen)
{
	if (inlen < 4 || (inlen - 4) % 8 || get_le32(in) != ACL_XATTR_VERSION)
		return -EINVAL;
	memcpy(out, in, inlen);
	for (size_t off = 4; off < inlen; off += 8) {
		uint16_t tag = (uint16_t)(in[off] | (in[off + 1] << 8));
		uint32_t id;
		if (tag != ACL_TAG_USER && tag != ACL_TAG_GROUP)
			continue;
		if (idmap_remap_id(from, to, tag == ACL_TAG_USER, get_le32(in + off + 4), &id) < 0)
			return -ENOENT;
		put_le32(out + off + 4, id);
	}
	*outlen = inlen;
	return 0;
}

bool idmap_xattr_has_ids(const char *name)
{
	return strcmp(name, "security.capability") == 0 ||
	       strcmp(name, "system.posix_acl_access") == 0 ||
	       strcmp(name, "system.posix_acl_default") == 0;
}

int idmap_remap_xattr(const struct idmap *from, const struct idmap *to, const char *name,
		      const void *in, size_t inlen, void *out, size_t *outlen)
{
	if (strcmp(name, "security.capability") == 0)
		return remap_caps(from, to, in, inlen, out, outlen);
	if (strcmp(name, "system.posix_acl_access") == 0 ||
	    strcmp(name, "system.posix_acl_default") == 0)
		return remap_acl(from, to, in, inlen, out, outlen);
	return 1;
}

/* ---- lxc.idmap ---------------------------------------------------------- */

char **idmap_lxc_lines(const struct idmap *m)
{
	size_t n = 0, cap = (m ? m->n : 0) * 2 + 1;
	char **v = calloc(cap, sizeof(char *));

	for (size_t i = 0; v && m && i < m->n; i++) {
		const struct idmap_entry *e = &m->entries[i];
		for (int k = 0; k < 2; k++) {
			if (!(k == 0 ? e->isuid : e->isgid))
				continue;
			v[n] = xasprintf("%c %u %u %u", k == 0 ? 'u' : 'g', e->nsid, e->hostid,
					 e->maprange);
			if (!v[n++]) {
				_cleanup_strv_ char **tmp = v;
				return NULL;
			}
		}
	}
	return v;
}

/* ---- host ranges -------------------------------------------------------- */

static bool subid_user_matches(const char *field, const char *user)
{
	struct passwd pw, *res = NULL;
	char buf[1024], num[16];

	if (strcmp(field, user) == 0)
		return true;
	/* An entry may name the user by uid. */
	if (getpwnam_r(user, &pw, buf, sizeof(buf), &res) != 0 || !res)
		return strcmp(user, "root") == 0 && strcmp(field, "0") == 0;
	snprintf(num, sizeof(num), "%u", (unsigned)res->pw_uid);
	return strcmp(field, num) == 0;
}

int idmap_read_subid(const char *path, const char *user, uint32_t *start, uint32_t *range,
		     cell_error *err)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;

	if (!f)
		return cell_err_sys(err, 500, errno, "open %s", path);
	while (getline(&line, &cap, f) > 0) {
		char name[256];
		unsigned long long s, r;
		if (sscanf(line, " %255[^:\n]:%llu:%llu", name, &s, &r) != 3)
			continue;
		if (!subid_user_matches(name, user) || r < IDMAP_ISOLATED_SIZE ||
		    s + r > (1ULL << 32))
			continue;
		*start = (uint32_t)s;
		*range = (uint32_t)r;
		return 0;
	}
	return cell_err(err, 500, ENOENT, "%s: no range of at least %u ids for %s", path,
			IDMAP_ISOLATED_SIZE, user);
}

struct id_range { uint64_t start, end; };   /* inclusive end */

/* Host-visible ids from /proc/self/{uid,gid}_map, merged when contiguous. */
static int read_kernel_ranges(const char *path, struct id_range *r, size_t max, size_t *n)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	unsigned long long ns, host, len;

	*n = 0;
	if (!f)
		return -errno;
	while (fscanf(f, "%llu %llu %llu", &ns, &host, &len) == 3) {
		if (!len)
			continue;
		if (*n && r[*n - 1].end + 1 == ns) {
			r[*n - 1].end = ns + len - 1;
			continue;
		}
		if (*n == max)
			break;
		r[(*n)++] = (struct id_range){ ns, ns + len - 1 };
	}
	return 0;
}

static int kernel_default_one(const char *path, bool uid, struct idmap *out)
{
	struct id_range r[64];
	size_t n;
	struct idmap_entry e = { .isuid = uid, .isgid = !uid };

	if (read_kernel_ranges(path, r, ARRAY_SIZE(r), &n) < 0 ||
	    (n == 1 && r[0].start == 0 && r[0].end >= 4294967294ULL)) {
		e.hostid = IDMAP_DEFAULT_HOSTID;
		e.maprange = IDMAP_DEFAULT_RANGE;
		return idmap_append(out, &e);
	}
	/* Nested: stay clear of the parent's own POSIX ids, as LXD does. */
	for (size_t i = 0; i < n; i++) {
		uint64_t s = r[i].start < 100000 ? 100000 : r[i].start;
		if (r[i].end < 100000 || r[i].end - s < IDMAP_ISOLATED_SIZE)
			continue;
		e.hostid = (uint32_t)s;
		e.maprange = (uint32_t)(r[i].end - s + 1);
		if (idmap_append(out, &e) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int subid_default(const char *subuid, const char *subgid, struct idmap *out)
{
	struct idmap_entry u = { .isuid = true }, g = { .isgid = true };

	if (idmap_read_subid(subuid, "root", &u.hostid, &u.maprange, NULL) < 0)
		return -ENOENT;
	if (idmap_read_subid(subgid, "root", &g.hostid, &g.maprange, NULL) < 0)
		return -ENOENT;
	if (idmap_append(out, &u) < 0 || idmap_append(out, &g) < 0)
		return -ENOMEM;
	return 0;
}

int idmap_default(const char *subuid, const char *subgid, const char *uid_map,
		  const char *gid_map, struct idmap *out, cell_error *err)
{
	_cleanup_idmap_ struct idmap m = { 0 };
	int rc;

	rc = subid_default(subuid ? subuid : "/etc/subuid", subgid ? subgid : "/etc/subgid", &m);
	if (rc == -ENOENT) {
		idmap_free(&m);
		if (kernel_default_one(uid_map ? uid_map : "/proc/self/uid_map", true, &m) < 0 ||
		    kernel_default_one(gid_map ? gid_map : "/proc/self/gid_map", false, &m) < 0)
			return cell_err(err, 500, ENOMEM, "default idmap: out of memory");
	} else if (rc < 0) {
		return cell_err(err, 500, ENOMEM, "default idmap: out of memory");
	}
	if (idmap_shift_uid(&m, 0, &(uint32_t){ 0 }) < 0 || idmap_shift_gid(&m, 0, &(uint32_t){ 0 }) < 0)
		return cell_err(err, 500, ERANGE, "no usable uid/gid range for containers");
	idmap_free(out);
	*out = m;
	m = (struct idmap){ 0 };
	return 0;
}

static int cmp_entry_host(const void *a, const void *b)
{
	const struct idmap_entry *x = a, *y = b;
	return x->hostid < y->hostid ? -1 : x->hostid > y->hostid;
}

static const struct idmap_entry *first_of(const struct idmap *m, bool uid)
{
	for (size_t i = 0; m && i < m->n; i++)
		if (uid ? m->entries[i].isuid : m->entries[i].isgid)
			return &m->entries[i];
	return NULL;
}

/* First-fit hole of `size` at or after `offset` among ranges sorted by host id. */
static uint64_t first_fit(const struct idmap_entry *used, size_t n, uint64_t offset, uint32_t size)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t s = used[i].hostid, e = s + used[i].maprange;
		if (e <= offset)
			continue;
		if (s >= offset + size)
			break;
		offset = e;
	}
	return offset;
}

int idmap_alloc_isolated(const struct idmap *base, const struct idmap *used, uint32_t size,
			 struct idmap *out, cell_error *err)
{
	const struct idmap_entry *bu = first_of(base, true), *bg = first_of(base, false);
	_cleanup_free_ struct idmap_entry *sorted = NULL;
	size_t n = used ? used->n : 0;
	uint64_t start, end, off;
	struct idmap m = { 0 };

	if (!bu || !bg)
		return cell_err(err, 500, EINVAL, "isolated idmap: host map has no uid or gid range");
	if (!size)
		return cell_err(err, 400, EINVAL, "isolated idmap: size must be positive");
	start = bu->hostid > bg->hostid ? bu->hostid : bg->hostid;
	end = (uint64_t)bu->hostid + bu->maprange;
	if ((uint64_t)bg->hostid + bg->maprange < end)
		end = (uint64_t)bg->hostid + bg->maprange;
	if (n) {
		sorted = malloc(n * sizeof(*sorted));
		if (!sorted)
			return cell_err(err, 500, ENOMEM, "isolated idmap: out of memory");
		memcpy(sorted, used->entries, n * sizeof(*sorted));
		qsort(sorted, n, sizeof(*sorted), cmp_entry_host);
	}
	off = first_fit(sorted, n, start + IDMAP_ISOLATED_SIZE, size);
	if (off + size > end)
		return cell_err(err, 500, ENOSPC,
				"not enough uids/gids available for an isolated container (%u wanted)",
				size);
	if (idmap_append(&m, &(struct idmap_entry){ true, false, (uint32_t)off, 0, size }) < 0 ||
	    idmap_append(&m, &(struct idmap_entry){ false, true, (uint32_t)off, 0, size }) < 0) {
		idmap_free(&m);
		return cell_err(err, 500, ENOMEM, "isolated idmap: out of memory");
	}
	idmap_free(out);
	*out = m;
	return 0;
}

/* ---- shifting a tree in place ------------------------------------------- */

/* Inodes with several links, so each is shifted once. */
struct inoset {
	uint64_t (*keys)[2];
	size_t cap, n;
};

static size_t ino_hash(uint64_t dev, uint64_t ino, size_t cap)
{
	uint64_t h = (ino * 0x9E3779B97F4A7C15ULL) ^ (dev + 0x632BE59BD9B4E019ULL);
	return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

static int inoset_grow(struct inoset *s)
{
	size_t ncap = s->cap ? s->cap * 2 : 256;
	uint64_t (*nk)[2] = calloc(ncap, sizeof(*nk));

	if (!nk)
		return -ENOMEM;
	for (size_t i = 0; i < s->cap; i++) {
		size_t h;
		if (!s->keys[i][1])
			continue;
		for (h = ino_hash(s->keys[i][0], s->keys[i][1], ncap); nk[h][1]; h = (h + 1) & (ncap - 1))
			;
		nk[h][0] = s->keys[i][0];
		nk[h][1] = s->keys[i][1];
	}
	free(s->keys);
	s->keys = nk;
	s->cap = ncap;
	return 0;
}

/* 1 if already present, 0 if inserted now.  Inode 0 never occurs on Linux fs. */
static int inoset_add(struct inoset *s, uint64_t dev, uint64_t ino)
{
	size_t h;

	if ((s->n + 1) * 2 > s->cap && inoset_grow(s) < 0)
		return -ENOMEM;
	for (h = ino_hash(dev, ino, s->cap); s->keys[h][1]; h = (h + 1) & (s->cap - 1))
		if (s->keys[h][0] == dev && s->keys[h][1] == ino)
			return 1;
	s->keys[h][0] = dev;
	s->keys[h][1] = ino;
	s->n++;
	return 0;
}

struct shift_ctx {
	const struct idmap *from, *to;
	struct inoset seen;
	char path[PATH_MAX];
	cell_error *err;
};

static const char *const shift_xattrs[] = {
	"security.capability", "system.posix_acl_access", "system.posix_acl_default",
};

struct saved_xattr {
	unsigned char val[1024];
	size_t len;
	bool present;
};

static void xattrs_save(const char *proc, struct saved_xattr *sx)
{
	for (size_t i = 0; i < ARRAY_SIZE(shift_xattrs); i++) {
		ssize_t r = getxattr(proc, shift_xattrs[i], sx[i].val, sizeof(sx[i].val) - 4);
		sx[i].present = r > 0;
		sx[i].len = r > 0 ? (size_t)r : 0;
	}
}

static int xattrs_restore(struct shift_ctx *c, const char *proc, struct saved_xattr *sx)
{
	for (size_t i = 0; i < ARRAY_SIZE(shift_xattrs); i++) {
		unsigned char out[sizeof(sx[i].val)];
		size_t olen = 0;
		int rc;
		if (!sx[i].present)
			continue;
		rc = idmap_remap_xattr(c->from, c->to, shift_xattrs[i], sx[i].val, sx[i].len, out, &olen);
		if (rc == -ENOENT && i == 0) {
			/* A capability for a root we cannot map is useless; chown dropped it. */
			log_warn("%s: dropping file capability: root id not in the map", c->path);
			continue;
		}
		if (rc < 0)
			return cell_err(c->err, 500, -rc, "%s: %s: %s", c->path, shift_xattrs[i],
					rc == -ENOENT ? "id not in the map" : "malformed value");
		if (setxattr(proc, shift_xattrs[i], rc == 1 ? sx[i].val : out,
			     rc == 1 ? sx[i].len : olen, 0) < 0)
			return cell_err_sys(c->err, 500, errno, "%s: set %s", c->path, shift_xattrs[i]);
	}
	return 0;
}

/* fd is an O_PATH handle on the inode, so nothing here follows a symlink. */
static int shift_inode(struct shift_ctx *c, int fd, const struct stat *st)
{
	struct saved_xattr sx[ARRAY_SIZE(shift_xattrs)] = { 0 };
	bool xattrs = S_ISREG(st->st_mode) || S_ISDIR(st->st_mode);
	char proc[64];
	uint32_t uid, gid;

	if (idmap_remap_id(c->from, c->to, true, st->st_uid, &uid) < 0)
		return cell_err(c->err, 500, ERANGE, "%s: uid %u is not in the id map", c->path,
				(unsigned)st->st_uid);
	if (idmap_remap_id(c->from, c->to, false, st->st_gid, &gid) < 0)
		return cell_err(c->err, 500, ERANGE, "%s: gid %u is not in the id map", c->path,
				(unsigned)st->st_gid);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (xattrs)
		xattrs_save(proc, sx);
	if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH) < 0)
		return cell_err_sys(c->err, 500, errno, "%s: chown", c->path);
	/* chown clears setuid/setgid even for root; put the mode back. */
	if (!S_ISLNK(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)) &&
	    chmod(proc, st->st_mode & 07777) < 0)
		return cell_err_sys(c->err, 500, errno, "%s: chmod", c->path);
	return xattrs ? xattrs_restore(c, proc, sx) : 0;
}

static int shift_dir(struct shift_ctx *c, int dfd, size_t plen, int depth);

static int shift_child(struct shift_ctx *c, int dfd, const char *name, size_t plen, int depth)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	size_t nlen = strlen(name);
	int rc;

	if (plen + 1 + nlen >= sizeof(c->path))
		return cell_err(c->err, 500, ENAMETOOLONG, "%s/%s: path too long", c->path, name);
	c->path[plen] = '/';
	memcpy(c->path + plen + 1, name, nlen + 1);
	fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return cell_err_sys(c->err, 500, errno, "%s", c->path);
	if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
		rc = inoset_add(&c->seen, st.st_dev, st.st_ino);
		if (rc < 0)
			return cell_err(c->err, 500, ENOMEM, "shift: out of memory");
		if (rc == 1)
			return 0;
	}
	if ((rc = shift_inode(c, fd, &st)) < 0)
		return rc;
	if (!S_ISDIR(st.st_mode))
		return 0;
	return shift_dir(c, fd, plen + 1 + nlen, depth + 1);
}

static int shift_dir(struct shift_ctx *c, int pathfd, size_t plen, int depth)
{
	_cleanup_closedir_ DIR *d = NULL;
	char proc[64];
	struct dirent *de;
	int dfd;

	if (depth > 1024)
		return cell_err(c->err, 500, ELOOP, "%s: directory tree too deep", c->path);
	/* Reopen through the O_PATH handle: same inode, no second lookup by name. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pathfd);
	dfd = open(proc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || !(d = fdopendir(dfd))) {
		int e = errno;
		if (dfd >= 0)
			close(dfd);
		return cell_err_sys(c->err, 500, e, "%s: open directory", c->path);
	}
	while ((errno = 0, de = readdir(d))) {
		int rc;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		rc = shift_child(c, dirfd(d), de->d_name, plen, depth);
		c->path[plen] = '\0';
		if (rc < 0)
			return rc;
	}
	if (errno)
		return cell_err_sys(c->err, 500, errno, "%s: readdir", c->path);
	return 0;
}

int idmap_shift_tree(const char *dir, const struct idmap *from, const struct idmap *to,
		     cell_error *err)
{
	struct shift_ctx *c = calloc(1, sizeof(*c));
	_cleanup_close_ int fd = -1;
	struct stat st;
	int rc;

	if (!c)
		return cell_err(err, 500, ENOMEM, "shift %s: out of memory", dir);
	*c = (struct shift_ctx){ .from = from, .to = to, .err = err };
	snprintf(c->path, sizeof(c->path), "%s", dir);
	fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		rc = cell_err_sys(err, 500, errno, "shift %s", dir);
	else if ((rc = shift_inode(c, fd, &st)) == 0)
		rc = shift_dir(c, fd, strlen(c->path), 0);
	free(c->seen.keys);
	free(c);
	return rc;
}
