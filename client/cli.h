/*
 * Command registration and argument parsing for `cell`, shaped like LXD's
 * cobra commands: flags anywhere on the line, --help on every command,
 * "Error: <message>" and exit 1 on failure.
 *
 * A command group is one file exporting `const struct cli_command cli_cmd_X`
 * (with its subcommands in .subs); adding a group is one line in cli.c.
 */
#ifndef CELL_CLIENT_CLI_H
#define CELL_CLIENT_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "common/error.h"

enum cli_opt_type {
	CLI_OPT_BOOL,
	CLI_OPT_STRING,
	CLI_OPT_LIST,   /* repeatable; values joined with ',' */
};

struct cli_opt {
	const char *name;     /* long name, without "--" */
	char short_name;      /* 0 when none */
	enum cli_opt_type type;
	const char *help;
	const char *def;      /* default shown in help and returned by cli_opt() */
};

struct cli_ctx;
struct cli_args;
typedef int (*cli_run_fn)(struct cli_ctx *ctx, struct cli_args *a, cell_error *err);

struct cli_command {
	const char *name;
	const char *aliases;         /* space-separated, e.g. "ls" */
	const char *usage;           /* after the command path, e.g. "[<remote>:]" */
	const char *short_help;      /* one line for "Available Commands" */
	const char *long_help;       /* Description; short_help when NULL */
	const char *examples;        /* already indented by the caller's layout, or NULL */
	const struct cli_opt *opts;  /* {0}-terminated, or NULL */
	cli_run_fn run;              /* NULL for pure groups */
	const struct cli_command *const *subs;   /* NULL-terminated, or NULL */
	int min_args, max_args;      /* positional arguments; max -1 = unlimited */
	bool hidden;
};

struct cli_args {
	int argc;                    /* positional arguments */
	char **argv;
	const struct cli_command *cmd;
	char path[128];              /* "config set" */
	char **vals;                 /* parallel to cmd->opts: given value, or NULL */
};

/* Value of one of the command's options: as given, else its default (may be NULL). */
const char *cli_opt(const struct cli_args *a, const char *name);
bool cli_flag(const struct cli_args *a, const char *name);
/* Whether it was given on the command line at all. */
bool cli_opt_set(const struct cli_args *a, const char *name);

struct cli_conf;

struct cli_ctx {
	bool quiet, debug, verbose, force_local;
	const char *project;         /* --project, or NULL */
	struct cli_conf *conf;       /* see cli_ctx_conf */
};

/* The client configuration, loaded on first use (start-up stays cheap). */
int cli_ctx_conf(struct cli_ctx *ctx, struct cli_conf **out, cell_error *err);

int cli_main(int argc, char **argv);
void cli_print_help(FILE *f, const struct cli_command *cmd, const char *path);
/* Print help and fail with LXD's "Invalid number of arguments". */
int cli_bad_args(const struct cli_args *a, cell_error *err);
/* Print prompt and read one line from stdin, without its newline (caller
 * frees); NULL at end of input.  secret: no echo when stdin is a terminal. */
char *cli_prompt(const char *prompt, bool secret);

/* The root command ("cell"), whose subs are every registered group. */
const struct cli_command *cli_root(void);
/* Walk names from the root ("config", "set"); *used = words consumed. */
const struct cli_command *cli_lookup(int n, char **words, int *used, char *path, size_t pathlen);

#endif
