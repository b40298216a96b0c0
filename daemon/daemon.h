/* The daemon's process-wide state; one instance, owned by main.c. */
#ifndef CELL_DAEMON_DAEMON_H
#define CELL_DAEMON_DAEMON_H

#include <stdbool.h>
#include <uv.h>

struct celld {
	uv_loop_t *loop;
	char *dir;              /* CELL_DIR */
	char *socket_path;      /* $CELL_DIR/unix.socket */
	char *group;            /* --group for the socket, or NULL */
	char server_fp[65];     /* server certificate fingerprint */
	char *server_cert_pem;  /* PEM text, for GET /1.0 environment.certificate */
	bool shutting_down;
	uv_thread_t loop_thread;
};

extern struct celld *celld;

/* True when called from the loop thread (handlers may assert it). */
bool celld_on_loop(void);
/* Path under CELL_DIR (caller frees). */
char *celld_path(const char *rel);

#endif
