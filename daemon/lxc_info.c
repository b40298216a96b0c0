#include "daemon/lxc_info.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <lxc/lxccontainer.h>

#include "common/cleanup.h"
#include "common/strbuf.h"

extern char **environ;

/* What LXD reports as lxc_features. */
static const char *const lxc_info_features[] = {
	"mount_injection_file", "seccomp_notify", "network_ipvlan", "network_l2proxy",
	"network_gateway_device_route", "network_phys_macvlan_mtu", "network_veth_router",
	"cgroup2", "pidfd", "seccomp_allow_deny_syntax", "devpts_fd",
	"seccomp_proxy_send_notify_fd", "idmapped_mounts_v2", "core_scheduling",
};

int lxc_info_main(void)
{
	_cleanup_json_ json_t *f = json_object();
	_cleanup_json_ json_t *out = NULL;
	const char *v = lxc_get_version();

	for (size_t i = 0; i < ARRAY_SIZE(lxc_info_features); i++)
		json_object_set_new(f, lxc_info_features[i],
				    json_string(lxc_has_api_extension(lxc_info_features[i]) ? "true"
											     : "false"));
	out = json_pack("{s:s, s:O}", "version", v ? v : "", "features", f);
	return out && json_dumpf(out, stdout, JSON_COMPACT) == 0 ? 0 : 1;
}

json_t *lxc_info_load(void)
{
	char *argv[] = { "celld", "lxcinfo", NULL };
	posix_spawn_file_actions_t fa;
	_cleanup_sb_ strbuf sb = { 0 };
	int pipefd[2], status;
	char buf[4096];
	ssize_t n;
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	if (posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ)) {
		posix_spawn_file_actions_destroy(&fa);
		close(pipefd[0]);
		close(pipefd[1]);
		return NULL;
	}
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	while ((n = read(pipefd[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0)
			sb_append(&sb, buf, (size_t)n);
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) || !sb.len)
		return NULL;
	return json_loadb(sb.buf, sb.len, 0, NULL);
}
