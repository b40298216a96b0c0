/* The HTTP/websocket server: libwebsockets on the daemon's libuv loop. */
#ifndef CELL_DAEMON_SERVER_H
#define CELL_DAEMON_SERVER_H

#include <uv.h>

#include "common/error.h"

int server_init(uv_loop_t *loop, cell_error *err);
/* Listen on the unix socket: mode 0660, group `group` when given. */
int server_listen_unix(const char *path, const char *group, cell_error *err);
/* (Re)bind HTTPS on "host:port" / "[v6]:port" / ":port"; NULL or "" stops it. */
int server_https_set(const char *addr, const char *cert, const char *key, cell_error *err);
/* Could HTTPS listen on addr?  400 naming the reason (port in use, no such
 * address); checked before core.https_address is committed. */
int server_https_probe(const char *addr, cell_error *err);
/* The address HTTPS listens on now ("" when off). */
const char *server_https_address(void);
/* Close every listener and connection; the loop then drains. */
void server_shutdown(void);
/* After the loop has returned: free what lws still holds. */
void server_finalize(void);

/* Request body limit for buffered (JSON) routes. */
#define SERVER_MAX_BODY (8u << 20)

#endif
