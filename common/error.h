/*
 * Errors travel up as a negative errno-style return plus a cell_error whose
 * message is chained by each caller ("create c1: unpack image 1a2b: ...").
 * The message is what the API's `error` field and the CLI print; `status` is
 * the HTTP status the API answers with (500 unless a layer knows better).
 */
#ifndef CELL_COMMON_ERROR_H
#define CELL_COMMON_ERROR_H

#include <stdarg.h>

#define CELL_ERR_MSG_MAX 1024

typedef struct cell_error {
	int status;                  /* HTTP status for the API: 400, 404, ... */
	char msg[CELL_ERR_MSG_MAX];
} cell_error;

/* Set the message; returns -code (code is a positive errno) for `return cell_err(...)`. */
int cell_err(cell_error *e, int status, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Like cell_err and appends ": strerror(code)". */
int cell_err_sys(cell_error *e, int status, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Prefix the existing message with "<prefix>: "; returns rc unchanged. */
int cell_err_wrap(cell_error *e, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void cell_err_clear(cell_error *e);

#endif
