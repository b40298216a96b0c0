#include "common/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void err_vset(cell_error *e, int status, const char *fmt, va_list ap)
{
	if (!e)
		return;
	e->status = status ? status : 500;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
}

int cell_err(cell_error *e, int status, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_vset(e, status, fmt, ap);
	va_end(ap);
	return code > 0 ? -code : (code ? code : -EINVAL);
}

int cell_err_sys(cell_error *e, int status, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_vset(e, status, fmt, ap);
	va_end(ap);
	if (e) {
		size_t n = strlen(e->msg);
		snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", strerror(code > 0 ? code : -code));
	}
	return code > 0 ? -code : (code ? code : -EIO);
}

int cell_err_wrap(cell_error *e, int rc, const char *fmt, ...)
{
	char old[CELL_ERR_MSG_MAX];
	va_list ap;
	int n;

	if (!e)
		return rc;
	memcpy(old, e->msg, sizeof(old));
	va_start(ap, fmt);
	n = vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof(e->msg))
		snprintf(e->msg + n, sizeof(e->msg) - (size_t)n, ": %.*s",
			 (int)(sizeof(e->msg) - (size_t)n), old);
	return rc;
}

void cell_err_clear(cell_error *e)
{
	if (e) {
		e->status = 0;
		e->msg[0] = '\0';
	}
}
