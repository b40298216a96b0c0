#include "daemon/daemon.h"

#include "common/util.h"

struct celld *celld;

bool celld_on_loop(void)
{
	uv_thread_t self = uv_thread_self();
	return celld && uv_thread_equal(&self, &celld->loop_thread);
}

char *celld_path(const char *rel)
{
	return xasprintf("%s/%s", celld->dir, rel);
}
