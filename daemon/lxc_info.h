/* liblxc's version and API extensions, read in a child process so the
 * daemon does not load liblxc just to describe it in GET /1.0. */
#ifndef CELL_DAEMON_LXC_INFO_H
#define CELL_DAEMON_LXC_INFO_H

#include <jansson.h>

/* {"version": "5.0.2", "features": {"cgroup2": "true", ...}}; NULL on failure. */
json_t *lxc_info_load(void);
/* `celld lxcinfo`: print that object on stdout. */
int lxc_info_main(void);

#endif
