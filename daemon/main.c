/* celld: start-up, single-instance lock, signals and orderly shutdown. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/certificates.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/db.h"
#include "daemon/events.h"
#include "daemon/fork.h"
#include "daemon/identity.h"
#include "daemon/lxc_info.h"
#include "daemon/instances.h"
#include "daemon/operations.h"
#include "daemon/pools.h"
#include "daemon/profiles.h"
#include "daemon/router.h"
#include "daemon/server.h"

struct celld_opts {
	const char *group;
	const char *logfile;
	enum log_level level;
};

static uv_signal_t sig_term, sig_int;

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: celld [options]\n\n"
		"The cell daemon: serves the LXD 1.0 REST API on $CELL_DIR/unix.socket\n"
		"(CELL_DIR defaults to /var/lib/celld) and over HTTPS when\n"
		"core.https_address is set.\n\n"
		"Options:\n"
		"  --group GROUP    group owning the unix socket (mode 0660)\n"
		"  --logfile FILE   log to FILE instead of stderr\n"
		"  --verbose        log informational messages\n"
		"  --debug          log debug messages\n"
		"  --version        print the version and exit\n"
		"  -h, --help       this help\n");
}

static int parse_args(int argc, char **argv, struct celld_opts *o)
{
	static const struct option lopts[] = {
		{ "group", required_argument, NULL, 'g' }, { "logfile", required_argument, NULL, 'l' },
		{ "verbose", no_argument, NULL, 'v' },     { "debug", no_argument, NULL, 'd' },
		{ "version", no_argument, NULL, 'V' },     { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	o->level = LOG_LVL_WARN;
	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (c) {
		case 'g': o->group = optarg; break;
		case 'l': o->logfile = optarg; break;
		case 'v': if (o->level > LOG_LVL_INFO) o->level = LOG_LVL_INFO; break;
		case 'd': o->level = LOG_LVL_DEBUG; break;
		case 'V': printf("%s\n", CELL_VERSION); exit(0);
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "Error: unknown argument \"%s\"\n", argv[optind]);
		return -1;
	}
	return 0;
}

/* One celld per state dir: an flock held for the process's life. */
static int take_lock(const char *dir, cell_error *err)
{
	_cleanup_free_ char *path = xasprintf("%s/celld.lock", dir);
	char pid[32];
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return cell_err_sys(err, 500, errno, "open %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		close(fd);
		return cell_err(err, 500, EBUSY, "celld is already running on %s (pid %s)", dir,
				pid[0] ? strtok(pid, "\n") : "unknown");
	}
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, strlen(pid), 0) < 0)
		log_warn("write %s: %s", path, strerror(errno));
	return 0;   /* fd stays open (and locked) until exit */
}

static void https_changed(const char *key, const char *value, void *data)
{
	_cleanup_free_ char *crt = celld_path("server.crt");
	_cleanup_free_ char *k = celld_path("server.key");
	cell_error err = { 0 };

	if (server_https_set(value, crt, k, &err) < 0)
		log_error("core.https_address: %s", err.msg);
	api_server_invalidate();
}

static void on_signal(uv_signal_t *s, int signum)
{
	if (celld->shutting_down)
		return;
	log_info("received signal %d, shutting down", signum);
	celld->shutting_down = true;
	server_shutdown();
	ops_shutdown();
	events_shutdown();
	instances_shutdown();   /* containers keep running */
	uv_close((uv_handle_t *)&sig_term, NULL);
	uv_close((uv_handle_t *)&sig_int, NULL);
}

static int start(const struct celld_opts *o, cell_error *err)
{
	_cleanup_free_ char *sock = celld_path("unix.socket");

	if (util_mkdir_p(celld->dir, 0711, err) < 0 || take_lock(celld->dir, err) < 0)
		return -EIO;
	if (identity_load(err) < 0 || db_open(celld->dir, err) < 0 || config_init(err) < 0 ||
	    certs_init(err) < 0 || api_server_init(err) < 0)
		return -EIO;
	/* Pools first: the default profile's root disk names the default pool. */
	if (pools_init(err) < 0 || profiles_init(err) < 0)
		return -EIO;
	/* Reconcile DB vs disk and reattach to running containers before serving. */
	if (instances_init(err) < 0)
		return -EIO;
	if (ops_init() < 0 || events_init() < 0)
		return cell_err(err, 500, EIO, "start event loop services");
	routes_register_all();
	if (server_init(celld->loop, err) < 0 || server_listen_unix(sock, o->group, err) < 0)
		return -EIO;
	celld->socket_path = steal_ptr(sock);
	config_on_change("core.https_address", https_changed, NULL);
	if (*config_get("core.https_address"))
		https_changed("core.https_address", config_get("core.https_address"), NULL);
	uv_signal_init(celld->loop, &sig_term);
	uv_signal_init(celld->loop, &sig_int);
	uv_signal_start(&sig_term, on_signal, SIGTERM);
	uv_signal_start(&sig_int, on_signal, SIGINT);
	log_info("celld %s ready on %s", CELL_VERSION, celld->socket_path);
	instances_boot_autostart();
	return 0;
}

static void cleanup(void)
{
	router_reset();
	pools_shutdown();
	certs_shutdown();
	config_shutdown();
	db_close();
	free(celld->server_cert_pem);
	free(celld->socket_path);
	free(celld->dir);
}

int main(int argc, char **argv)
{
	static struct celld state;
	struct celld_opts opts = { 0 };
	cell_error err = { 0 };
	const char *dir = getenv("CELL_DIR");
	int rc;

	if (argc > 1 && !strcmp(argv[1], "gencert"))
		return identity_gencert_main(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "lxcinfo"))
		return lxc_info_main();
	if (argc > 1 && !strncmp(argv[1], "fork", 4))   /* celld fork* helpers */
		return fork_main(argc, argv);

	if (parse_args(argc, argv, &opts) < 0)
		return 1;
	log_set_level(opts.level);
	if (opts.logfile && log_set_file(opts.logfile) < 0) {
		fprintf(stderr, "Error: open log file %s: %s\n", opts.logfile, strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	/* libwebsockets treats fd 0 as "no socket": keep 0-2 occupied. */
	for (;;) {
		int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd > 2)
			close(fd);
		if (fd < 0 || fd > 2)
			break;
	}
	/* Slow work (unpacks, rsync, liblxc) runs on libuv's pool: make it wide. */
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	celld = &state;
	celld->dir = strdup(dir && *dir ? dir : "/var/lib/celld");
	celld->loop = uv_default_loop();
	celld->loop_thread = uv_thread_self();
	rc = start(&opts, &err);
	if (rc < 0) {
		fprintf(stderr, "Error: %s\n", err.msg);
		log_error("%s", err.msg);
		if (celld->shutting_down == false && celld->socket_path)
			server_shutdown();
		cleanup();
		return 1;
	}
	uv_run(celld->loop, UV_RUN_DEFAULT);
	server_finalize();
	uv_run(celld->loop, UV_RUN_DEFAULT);   /* handles lws closed just now */
	uv_loop_close(celld->loop);
	cleanup();
	log_info("celld stopped");
	return 0;
}
