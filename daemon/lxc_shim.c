/*
 * liblxc, loaded on first use.  celld calls liblxc only once a container is
 * started, stopped or attached to, yet linking it loads liblxc and its own
 * dependencies (seccomp, selinux, apparmor, cap, pcre2) into every daemon
 * and `celld fork*` helper at start.  These four entry points are the only
 * liblxc symbols cell uses (struct lxc_container's methods are pointers), so
 * they forward to the library opened with dlopen the first time.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <lxc/lxccontainer.h>

static void *lxc_shim_handle;
static pthread_once_t lxc_shim_once = PTHREAD_ONCE_INIT;

static void lxc_shim_open(void)
{
	lxc_shim_handle = dlopen("liblxc.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lxc_shim_handle) {
		/* Nothing can run containers without it: say why and stop. */
		fprintf(stderr, "celld: cannot load liblxc: %s\n", dlerror());
		abort();
	}
}

static void *lxc_shim_sym(const char *name)
{
	void *p;

	pthread_once(&lxc_shim_once, lxc_shim_open);
	p = dlsym(lxc_shim_handle, name);
	if (!p) {
		fprintf(stderr, "celld: liblxc lacks %s\n", name);
		abort();
	}
	return p;
}

#define LXC_SHIM_FN(type, name, params, args)                                         \
	type name params                                                              \
	{                                                                             \
		static type(*fn) params;                                              \
		if (!__atomic_load_n(&fn, __ATOMIC_ACQUIRE))                          \
			__atomic_store_n(&fn, (type(*) params)lxc_shim_sym(#name),    \
					 __ATOMIC_RELEASE);                           \
		return fn args;                                                       \
	}

LXC_SHIM_FN(struct lxc_container *, lxc_container_new, (const char *name, const char *configpath),
	    (name, configpath))
LXC_SHIM_FN(int, lxc_container_put, (struct lxc_container *c), (c))
LXC_SHIM_FN(bool, lxc_has_api_extension, (const char *extension), (extension))
LXC_SHIM_FN(const char *, lxc_get_version, (void), ())
