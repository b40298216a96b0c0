/*
 * Unit tests of the client: run `cell ...` in this process (cli_main) with
 * stdin, stdout and stderr redirected, and keep what it printed.
 */
#ifndef CELL_TESTS_CLI_RUN_H
#define CELL_TESTS_CLI_RUN_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/cli.h"
#include "common/strbuf.h"

struct run {
	int rc;
	char *out;
	char *err;
};

static char *slurp_fd(int fd)
{
	strbuf sb = {0};
	char buf[4096];
	ssize_t n;

	lseek(fd, 0, SEEK_SET);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		sb_append(&sb, buf, (size_t)n);
	return sb.buf ? sb_steal(&sb) : strdup("");
}

/* Fed to the command's stdin when set (config edit). */
static const char *stdin_text;

/* Run `cell args...` in-process, capturing stdout and stderr. */
static struct run run_cell(const char *first, ...)
{
	char *argv[40] = { "cell" };
	int argc = 1, saved_out = dup(1), saved_err = dup(2), saved_in = dup(0);
	FILE *fo = tmpfile(), *fe = tmpfile(), *fi = tmpfile();
	struct run r;
	va_list ap;

	va_start(ap, first);
	for (const char *a = first; a && argc < 39; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	fputs(stdin_text ? stdin_text : "", fi);
	fflush(fi);
	rewind(fi);
	fflush(stdout);
	fflush(stderr);
	dup2(fileno(fo), 1);
	dup2(fileno(fe), 2);
	dup2(fileno(fi), 0);
	clearerr(stdin);
	r.rc = cli_main(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, 1);
	dup2(saved_err, 2);
	dup2(saved_in, 0);
	clearerr(stdin);
	close(saved_out);
	close(saved_err);
	close(saved_in);
	fclose(fi);
	r.out = slurp_fd(fileno(fo));
	r.err = slurp_fd(fileno(fe));
	fclose(fo);
	fclose(fe);
	return r;
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

#define CELL(...) run_cell(__VA_ARGS__, NULL)

#endif
