/* The server's TLS identity: server.crt/server.key and their fingerprint. */
#ifndef CELL_DAEMON_IDENTITY_H
#define CELL_DAEMON_IDENTITY_H

#include "common/error.h"

/* Ensure the certificate exists (generated at first start) and fill
 * celld->server_cert_pem and celld->server_fp. */
int identity_load(cell_error *err);
/* `celld gencert <crt> <key> <cn>`: the generation, in a child process. */
int identity_gencert_main(int argc, char **argv);

#endif
