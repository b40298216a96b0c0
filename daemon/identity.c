#include "daemon/identity.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/sha256_lite.h"
#include "common/tls.h"
#include "common/util.h"
#include "daemon/daemon.h"

extern char **environ;

int identity_gencert_main(int argc, char **argv)
{
	cell_error err = { 0 };

	if (argc != 5) {
		fprintf(stderr, "usage: celld gencert CRT KEY COMMON-NAME\n");
		return 2;
	}
	if (tls_ensure_cert(argv[2], argv[3], argv[4], true, &err) < 0) {
		fprintf(stderr, "Error: %s\n", err.msg);
		return 1;
	}
	return 0;
}

/*
 * Key generation initialises OpenSSL, which stays resident (> 2 MB) for the
 * life of a process: do it in a short-lived child so the daemon, which needs
 * no OpenSSL until HTTPS is used, stays small.
 */
static int identity_generate(const char *crt, const char *key, cell_error *err)
{
	char host[256] = "celld", cn[300];
	char *argv[] = { "celld", "gencert", (char *)crt, (char *)key, cn, NULL };
	pid_t pid;
	int status, rc;

	gethostname(host, sizeof(host) - 1);
	snprintf(cn, sizeof(cn), "root@%s", host);
	rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ);
	if (rc)
		return cell_err_sys(err, 500, rc, "generate server certificate");
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return cell_err_sys(err, 500, errno, "generate server certificate");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return cell_err(err, 500, EIO, "generate server certificate %s failed", crt);
	return 0;
}

int identity_load(cell_error *err)
{
	_cleanup_free_ char *crt = celld_path("server.crt");
	_cleanup_free_ char *key = celld_path("server.key");

	if ((access(crt, F_OK) < 0 || access(key, F_OK) < 0) &&
	    identity_generate(crt, key, err) < 0)
		return -EIO;
	if (util_read_file(crt, &celld->server_cert_pem, NULL, err) < 0)
		return cell_err_wrap(err, -EIO, "server certificate");
	if (sha256_lite_pem_fingerprint(celld->server_cert_pem, celld->server_fp) < 0)
		return cell_err(err, 500, EINVAL, "server certificate %s: no certificate in it", crt);
	return 0;
}
