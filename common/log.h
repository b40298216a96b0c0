/* Leveled logging to stderr or a log file; thread-safe, one line per call. */
#ifndef CELL_COMMON_LOG_H
#define CELL_COMMON_LOG_H

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR, LOG_LVL_NONE };

void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Append to this file instead of stderr; returns -errno. */
int log_set_file(const char *path);
/* Called for every line at or above the level (events "logging" feed). */
typedef void (*log_hook_fn)(enum log_level lvl, const char *msg, void *data);
void log_set_hook(log_hook_fn fn, void *data);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

#endif
