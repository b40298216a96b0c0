/*
 * The client configuration, as LXD's: $CELL_CONF (else ~/.config/cell)
 * holds config.yml (remotes, default-remote, aliases), client.crt/.key and
 * servercerts/<remote>.crt (pinned server certificates).  The `local` remote
 * is built in: the unix socket $CELL_SOCKET, else $CELL_DIR/unix.socket,
 * else /var/lib/celld/unix.socket.
 */
#ifndef CELL_CLIENT_CONF_H
#define CELL_CLIENT_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "common/error.h"

#define CLI_LOCAL_REMOTE "local"

/* Borrowed view of one remote; valid until the configuration changes. */
struct cli_remote {
	const char *name;
	const char *addr;        /* "unix://", "unix:///path" or "https://host:port" */
	const char *protocol;    /* "lxd" (or "simplestreams") */
	const char *auth_type;   /* "tls" */
	const char *project;     /* NULL for the default */
	bool public;
	bool is_static;          /* built in; cannot be changed */
};

struct cli_conf;

/* dir NULL: $CELL_CONF, else $HOME/.config/cell. A missing file is an empty config. */
int cli_conf_load(const char *dir, struct cli_conf **out, cell_error *err);
void cli_conf_free(struct cli_conf *c);
int cli_conf_save(struct cli_conf *c, cell_error *err);

const char *cli_conf_dir(const struct cli_conf *c);
/* dir/rel (caller frees). */
char *cli_conf_path(const struct cli_conf *c, const char *rel);

const char *cli_conf_default_remote(const struct cli_conf *c);
int cli_conf_set_default_remote(struct cli_conf *c, const char *name, cell_error *err);

bool cli_conf_get_remote(const struct cli_conf *c, const char *name, struct cli_remote *out);
/* Add or replace a (non-static) remote. */
int cli_conf_set_remote(struct cli_conf *c, const struct cli_remote *r, cell_error *err);
int cli_conf_remove_remote(struct cli_conf *c, const char *name, cell_error *err);
int cli_conf_rename_remote(struct cli_conf *c, const char *from, const char *to, cell_error *err);
/* Sorted names of every remote, static ones included (NULL-terminated; free the array only). */
const char **cli_conf_remote_names(const struct cli_conf *c);

/* "foo:bar" -> ("foo", "bar") when foo is a remote; "bar" -> (default, "bar").
 * An unknown prefix is LXD's "The remote \"foo\" doesn't exist". */
int cli_conf_parse_remote(const struct cli_conf *c, const char *raw, char **remote, char **rest,
			  cell_error *err);

/* Path of the local daemon's socket. */
const char *cli_local_socket(void);

/* Client certificate and key paths (caller frees), generating them on first
 * need (saying so on stderr, as lxc does); *generated tells whether that happened now. */
int cli_conf_client_cert(struct cli_conf *c, char **crt, char **key, bool *generated, cell_error *err);
/* servercerts/<remote>.crt (caller frees). */
char *cli_conf_server_cert_path(const struct cli_conf *c, const char *remote);

#endif
