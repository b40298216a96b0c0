/* Scope-bound cleanup helpers, as crun and LXC use, so every early return frees. */
#ifndef CELL_COMMON_CLEANUP_H
#define CELL_COMMON_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <dirent.h>
#include <jansson.h>

static inline void cell_freep(void *p) { free(*(void **)p); }
static inline void cell_closep(int *fd) { if (*fd >= 0) close(*fd); }
static inline void cell_fclosep(FILE **f) { if (*f) fclose(*f); }
static inline void cell_closedirp(DIR **d) { if (*d) closedir(*d); }
static inline void cell_json_decrefp(json_t **j) { json_decref(*j); }
static inline void cell_strvfreep(char ***v)
{
	if (*v) {
		for (char **p = *v; *p; p++)
			free(*p);
		free(*v);
	}
}

#define _cleanup_free_ __attribute__((cleanup(cell_freep)))
#define _cleanup_close_ __attribute__((cleanup(cell_closep)))
#define _cleanup_fclose_ __attribute__((cleanup(cell_fclosep)))
#define _cleanup_closedir_ __attribute__((cleanup(cell_closedirp)))
#define _cleanup_json_ __attribute__((cleanup(cell_json_decrefp)))
#define _cleanup_strv_ __attribute__((cleanup(cell_strvfreep)))

/* Hand ownership out of a cleanup-managed local. */
#define steal_ptr(p) ({ __typeof__(p) _tmp = (p); (p) = NULL; _tmp; })
#define steal_fd(fd) ({ int _tmp = (fd); (fd) = -1; _tmp; })

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
