#include "daemon/config.h"

#include <stddef.h>

/*
 * GET /1.0 api_extensions.  Clients decide what to call from this list, so
 * an entry is added only once its feature works end to end, with LXD's name
 * (doc/api-extensions.md).  Keep LXD's order: append.
 */
const char *const cell_api_extensions[] = {
	"etag",                 /* ETag + If-Match on /1.0 and certificates */
	"patch",                /* PATCH on /1.0 and certificates */
	"certificate_update",   /* PUT/PATCH/ETag on /1.0/certificates/<fp> */
	"kernel_features",      /* environment.kernel_features */
	"lxc_features",         /* environment.lxc_features */
	"api_os",               /* environment.os_name, os_version */
	"server_instance_driver_operational",   /* driver lists only working drivers */
	NULL,
};
