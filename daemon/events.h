/* The /1.0/events feed: operation, logging and lifecycle events. */
#ifndef CELL_DAEMON_EVENTS_H
#define CELL_DAEMON_EVENTS_H

#include <jansson.h>

/* Thread-safe: queue an event of `type` ("operation", "logging",
 * "lifecycle") with `metadata` (taken); sent from the loop thread. */
void events_send(const char *type, json_t *metadata);
/* Lifecycle event as LXD's: action "instance-started", source "/1.0/instances/c1". */
void events_lifecycle(const char *action, const char *source, json_t *context);

int events_init(void);
void events_shutdown(void);

#endif
