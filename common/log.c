#include "common/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static enum log_level log_level = LOG_LVL_WARN;
static FILE *log_out;
static log_hook_fn log_hook;
static void *log_hook_data;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const log_names[] = { "debug", "info", "warning", "error" };

void log_set_level(enum log_level lvl) { log_level = lvl; }
enum log_level log_get_level(void) { return log_level; }

void log_set_hook(log_hook_fn fn, void *data)
{
	log_hook = fn;
	log_hook_data = data;
}

int log_set_file(const char *path)
{
	FILE *f = fopen(path, "ae");
	if (!f)
		return -errno;
	setvbuf(f, NULL, _IOLBF, 0);
	pthread_mutex_lock(&log_lock);
	if (log_out)
		fclose(log_out);
	log_out = f;
	pthread_mutex_unlock(&log_lock);
	return 0;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	char msg[2048], stamp[32];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	if (lvl < log_level || lvl >= LOG_LVL_NONE)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

	pthread_mutex_lock(&log_lock);
	fprintf(log_out ? log_out : stderr, "%s.%03ldZ %-7s %s\n", stamp, ts.tv_nsec / 1000000,
		log_names[lvl], msg);
	pthread_mutex_unlock(&log_lock);
	if (log_hook)
		log_hook(lvl, msg, log_hook_data);
}
