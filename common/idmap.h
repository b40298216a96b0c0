/*
 * User/group id maps as LXD keeps them in `volatile.idmap.*` and
 * `volatile.last_state.idmap`: a list of ranges mapping container (ns) ids to
 * host ids.  Also the shifting helpers that every filesystem writer (image
 * unpack, export, reshift after an idmap change) shares, so file ownership,
 * POSIX ACLs and file capabilities are translated the same way everywhere.
 */
#ifndef CELL_COMMON_IDMAP_H
#define CELL_COMMON_IDMAP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* LXD's fallback when /etc/subuid has no usable range for root. */
#define IDMAP_DEFAULT_HOSTID 1000000u
#define IDMAP_DEFAULT_RANGE 1000000000u
/* security.idmap.size default, and the part of the host range isolated maps skip. */
#define IDMAP_ISOLATED_SIZE 65536u
/* What the kernel shows for ids outside a user namespace's map. */
#define IDMAP_OVERFLOW_ID 65534u

struct idmap_entry {
	bool isuid, isgid;
	uint32_t hostid, nsid, maprange;
};

struct idmap {
	struct idmap_entry *entries;
	size_t n;
};

void idmap_free(struct idmap *m);   /* frees entries, leaves an empty map */
static inline void idmap_freep(struct idmap *m) { idmap_free(m); }
#define _cleanup_idmap_ __attribute__((cleanup(idmap_freep)))

/* Append a range; -EINVAL if it overflows 32 bits or is empty, -ENOMEM. */
int idmap_append(struct idmap *m, const struct idmap_entry *e);
bool idmap_is_empty(const struct idmap *m);
bool idmap_equal(const struct idmap *a, const struct idmap *b);

/* LXD's JSON: [{"Isuid":true,"Isgid":false,"Hostid":1000000,"Nsid":0,"Maprange":65536}].
 * "", "null" and "[]" give an empty map (privileged container). */
int idmap_parse_json(const char *text, struct idmap *out, cell_error *err);
int idmap_from_json(json_t *arr, struct idmap *out, cell_error *err);
json_t *idmap_to_json(const struct idmap *m);
char *idmap_format_json(const struct idmap *m);   /* compact, as LXD stores it; caller frees */

/* Translate one id.  -ENOENT when the id is outside the map. */
int idmap_shift_uid(const struct idmap *m, uint32_t nsid, uint32_t *hostid);
int idmap_shift_gid(const struct idmap *m, uint32_t nsid, uint32_t *hostid);
int idmap_unshift_uid(const struct idmap *m, uint32_t hostid, uint32_t *nsid);
int idmap_unshift_gid(const struct idmap *m, uint32_t hostid, uint32_t *nsid);
/* Move an id from the host view under `from` to the host view under `to`;
 * NULL or an empty map stands for "no user namespace" (identity). */
int idmap_remap_id(const struct idmap *from, const struct idmap *to, bool uid, uint32_t in,
		   uint32_t *out);

/* Does this xattr name carry ids (and so need idmap_remap_xattr)? */
bool idmap_xattr_has_ids(const char *name);
/* Rewrite an xattr that embeds ids (security.capability rootid,
 * system.posix_acl_access/default entries) for a from→to remap.  `out` must
 * hold inlen + 4 bytes (a v2 capability grows into v3).  Returns 1 when the
 * xattr carries no ids (use it unchanged), 0 when `out` holds the new value,
 * -ENOENT for an unmapped id, -EINVAL for a malformed value. */
int idmap_remap_xattr(const struct idmap *from, const struct idmap *to, const char *name,
		      const void *in, size_t inlen, void *out, size_t *outlen);

/* "u 0 1000000 65536" lines for lxc.idmap, NULL-terminated; free with _cleanup_strv_. */
char **idmap_lxc_lines(const struct idmap *m);

/* First range of at least 65536 ids for `user` (name or numeric uid) in a
 * subuid/subgid file; -ENOENT when the file or the user is missing. */
int idmap_read_subid(const char *path, const char *user, uint32_t *start, uint32_t *range,
		     cell_error *err);
/* The host map for containers, as LXD's DefaultIdmapSet for root: the
 * subuid/subgid ranges when both files exist and have one, else a default
 * derived from the kernel's own map (1000000:1000000000 on a full map).
 * NULL paths mean /etc/subuid, /etc/subgid, /proc/self/uid_map, /proc/self/gid_map. */
int idmap_default(const char *subuid, const char *subgid, const char *uid_map,
		  const char *gid_map, struct idmap *out, cell_error *err);
/* An isolated map (security.idmap.isolated) of `size` ids inside `base`,
 * disjoint from every range in `used` (the maps of the other isolated
 * containers), first fit after the base's first 65536 ids, as LXD allocates. */
int idmap_alloc_isolated(const struct idmap *base, const struct idmap *used, uint32_t size,
			 struct idmap *out, cell_error *err);

/* Re-own a whole tree in place (squashfs unpack, idmap change): every inode's
 * uid/gid, ACL entries and capability rootid go from `from` to `to`.  Never
 * follows symlinks; hard-linked inodes are shifted once. */
int idmap_shift_tree(const char *dir, const struct idmap *from, const struct idmap *to,
		     cell_error *err);

#endif
