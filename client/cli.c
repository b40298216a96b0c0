#include "client/cli.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "client/conf.h"
#include "common/cleanup.h"
#include "common/util.h"

#ifndef CELL_VERSION
#define CELL_VERSION "0"
#endif

/* Every top-level command group: a new group adds its line here. */
extern const struct cli_command cli_cmd_config, cli_cmd_copy, cli_cmd_delete, cli_cmd_help, cli_cmd_init,
	cli_cmd_instance_info, cli_cmd_launch, cli_cmd_list, cli_cmd_monitor, cli_cmd_move, cli_cmd_operation,
	cli_cmd_pause, cli_cmd_profile, cli_cmd_query, cli_cmd_remote, cli_cmd_rename, cli_cmd_restart,
	cli_cmd_restore, cli_cmd_snapshot, cli_cmd_start, cli_cmd_stop, cli_cmd_storage, cli_cmd_version,
	cli_cmd_image, cli_cmd_publish,   /* client/image.c */
	cli_cmd_exec, cli_cmd_console, cli_cmd_file;   /* client/exec.c, console.c, file.c */

static const struct cli_command *const cli_commands[] = {
	&cli_cmd_config,
	&cli_cmd_console,
	&cli_cmd_copy,
	&cli_cmd_delete,
	&cli_cmd_exec,
	&cli_cmd_file,
	&cli_cmd_help,
	&cli_cmd_image,
	&cli_cmd_instance_info,   /* `info`: instances here, the server in info.c */
	&cli_cmd_init,
	&cli_cmd_launch,
	&cli_cmd_list,
	&cli_cmd_monitor,
	&cli_cmd_move,
	&cli_cmd_operation,
	&cli_cmd_pause,
	&cli_cmd_profile,
	&cli_cmd_publish,
	&cli_cmd_query,
	&cli_cmd_remote,
	&cli_cmd_rename,
	&cli_cmd_restart,
	&cli_cmd_restore,
	&cli_cmd_snapshot,
	&cli_cmd_start,
	&cli_cmd_stop,
	&cli_cmd_storage,
	&cli_cmd_version,
	NULL,
};

static const struct cli_command root_cmd = {
	.name = "cell",
	.usage = "",
	.short_help = "Command line client for cell",
	.long_help = "Command line client for cell\n\n"
		     "All of cell's features can be driven through the various commands below.\n"
		     "For help with any of those, simply call them with --help.",
	.subs = cli_commands,
	.max_args = -1,
};

const struct cli_command *cli_root(void) { return &root_cmd; }

enum { G_DEBUG, G_FORCE_LOCAL, G_HELP, G_PROJECT, G_QUIET, G_VERBOSE, G_VERSION, G_COUNT };

static const struct cli_opt global_opts[] = {
	[G_DEBUG] = { "debug", 0, CLI_OPT_BOOL, "Show all debug messages", NULL },
	[G_FORCE_LOCAL] = { "force-local", 0, CLI_OPT_BOOL, "Force using the local unix socket", NULL },
	[G_HELP] = { "help", 'h', CLI_OPT_BOOL, "Print help", NULL },
	[G_PROJECT] = { "project", 0, CLI_OPT_STRING, "Override the source project", NULL },
	[G_QUIET] = { "quiet", 'q', CLI_OPT_BOOL, "Don't show progress information", NULL },
	[G_VERBOSE] = { "verbose", 'v', CLI_OPT_BOOL, "Show all information messages", NULL },
	[G_VERSION] = { "version", 0, CLI_OPT_BOOL, "Print version number", NULL },
	{ 0 },
};

/* ------------------------------------------------------------ options */

static int opt_index(const struct cli_opt *opts, const char *name, size_t len, char shortc)
{
	for (int i = 0; opts && opts[i].name; i++) {
		if (shortc ? opts[i].short_name == shortc
			   : strlen(opts[i].name) == len && !strncmp(opts[i].name, name, len))
			return i;
	}
	return -1;
}

static int arg_opt_index(const struct cli_args *a, const char *name)
{
	return opt_index(a->cmd->opts, name, strlen(name), 0);
}

const char *cli_opt(const struct cli_args *a, const char *name)
{
	int i = arg_opt_index(a, name);
	if (i < 0)
		return NULL;
	return a->vals[i] ? a->vals[i] : a->cmd->opts[i].def;
}

bool cli_opt_set(const struct cli_args *a, const char *name)
{
	int i = arg_opt_index(a, name);
	return i >= 0 && a->vals[i];
}

bool cli_flag(const struct cli_args *a, const char *name)
{
	const char *v = cli_opt(a, name);
	return v && strcmp(v, "false") && strcmp(v, "0");
}

/* Where an option lives: the command's own list, or the global one. */
struct opt_ref {
	const struct cli_opt *opt;
	char **slot;
};

struct parse {
	const struct cli_command *cmd;
	char **vals;                 /* command options */
	char *gvals[G_COUNT];        /* global options */
};

static bool find_opt(struct parse *p, const char *name, size_t len, char shortc, struct opt_ref *ref)
{
	int i = opt_index(p->cmd->opts, name, len, shortc);

	if (i >= 0) {
		ref->opt = &p->cmd->opts[i];
		ref->slot = p->vals ? &p->vals[i] : NULL;
		return true;
	}
	i = opt_index(global_opts, name, len, shortc);
	if (i >= 0) {
		ref->opt = &global_opts[i];
		ref->slot = &p->gvals[i];
		return true;
	}
	return false;
}

static int store(struct opt_ref *ref, const char *val, cell_error *err)
{
	char *nv;

	if (!ref->slot)
		return 0;
	if (ref->opt->type == CLI_OPT_LIST && *ref->slot)
		nv = xasprintf("%s,%s", *ref->slot, val);
	else
		nv = strdup(val);
	if (!nv)
		return cell_err(err, 500, ENOMEM, "out of memory");
	free(*ref->slot);
	*ref->slot = nv;
	return 0;
}

/* One "--name[=value]" token; *skip set when the value is the next word. */
static int parse_long(struct parse *p, char **argv, int i, int argc, int *skip, cell_error *err)
{
	const char *tok = argv[i] + 2, *eq = strchr(tok, '=');
	size_t len = eq ? (size_t)(eq - tok) : strlen(tok);
	struct opt_ref ref;

	if (!find_opt(p, tok, len, 0, &ref))
		return cell_err(err, 400, EINVAL, "unknown flag: --%.*s", (int)len, tok);
	if (ref.opt->type == CLI_OPT_BOOL)
		return store(&ref, eq ? eq + 1 : "true", err);
	if (eq)
		return store(&ref, eq + 1, err);
	if (i + 1 >= argc)
		return cell_err(err, 400, EINVAL, "flag needs an argument: --%s", tok);
	*skip = 1;
	return store(&ref, argv[i + 1], err);
}

/* "-q", "-qv", "-XPOST", "-X POST". */
static int parse_short(struct parse *p, char **argv, int i, int argc, int *skip, cell_error *err)
{
	const char *tok = argv[i];

	for (const char *c = tok + 1; *c; c++) {
		struct opt_ref ref;
		if (!find_opt(p, NULL, 0, *c, &ref))
			return cell_err(err, 400, EINVAL, "unknown shorthand flag: '%c' in %s", *c, tok);
		if (ref.opt->type == CLI_OPT_BOOL) {
			int rc = store(&ref, "true", err);
			if (rc < 0)
				return rc;
			continue;
		}
		if (c[1])
			return store(&ref, c[1] == '=' ? c + 2 : c + 1, err);
		if (i + 1 >= argc)
			return cell_err(err, 400, EINVAL, "flag needs an argument: '%c' in %s", *c, tok);
		*skip = 1;
		return store(&ref, argv[i + 1], err);
	}
	return 0;
}

static int parse_flag(struct parse *p, char **argv, int i, int argc, int *skip, cell_error *err)
{
	*skip = 0;
	if (argv[i][1] == '-')
		return parse_long(p, argv, i, argc, skip, err);
	return parse_short(p, argv, i, argc, skip, err);
}

static bool is_flag(const char *tok)
{
	return tok[0] == '-' && tok[1] && strcmp(tok, "--");
}

/* --------------------------------------------------------- resolution */

static bool name_matches(const struct cli_command *c, const char *w)
{
	const char *a = c->aliases;
	size_t wl = strlen(w);

	if (!strcmp(c->name, w))
		return true;
	while (a && *a) {
		size_t n = strcspn(a, " ");
		if (n == wl && !strncmp(a, w, n))
			return true;
		a += n + (a[n] == ' ');
	}
	return false;
}

static const struct cli_command *find_sub(const struct cli_command *c, const char *w)
{
	for (const struct cli_command *const *s = c->subs; s && *s; s++)
		if (name_matches(*s, w))
			return *s;
	return NULL;
}

const struct cli_command *cli_lookup(int n, char **words, int *used, char *path, size_t pathlen)
{
	const struct cli_command *cmd = &root_cmd, *sub;
	int i;

	snprintf(path, pathlen, "cell");
	for (i = 0; i < n && (sub = find_sub(cmd, words[i])); i++) {
		size_t l = strlen(path);
		snprintf(path + l, pathlen - l, " %s", sub->name);
		cmd = sub;
	}
	if (used)
		*used = i;
	return cmd;
}

/* Walk subcommand names among the words, stepping over flags (and the
 * values of flags known to take one). Marks the words that were names. */
static const struct cli_command *resolve(int argc, char **argv, bool *is_name, char *path, size_t pathlen)
{
	struct parse p = {0};
	const struct cli_command *sub;

	p.cmd = &root_cmd;
	snprintf(path, pathlen, "cell");
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (is_flag(argv[i])) {
			int skip = 0;
			parse_flag(&p, argv, i, argc, &skip, NULL);
			i += skip;
			continue;
		}
		if (!(sub = find_sub(p.cmd, argv[i])))
			break;
		size_t l = strlen(path);
		snprintf(path + l, pathlen - l, " %s", sub->name);
		p.cmd = sub;
		is_name[i] = true;
	}
	for (int g = 0; g < G_COUNT; g++)
		free(p.gvals[g]);
	return p.cmd;
}

/* --------------------------------------------------------------- help */

static void print_indented(FILE *f, const char *text, const char *indent)
{
	while (*text) {
		size_t n = strcspn(text, "\n");
		if (n)
			fprintf(f, "%s%.*s\n", indent, (int)n, text);
		else
			fputc('\n', f);
		text += n + (text[n] == '\n');
	}
}

static void print_flags(FILE *f, const struct cli_opt *opts)
{
	size_t width = 0;

	for (int i = 0; opts && opts[i].name; i++) {
		size_t w = 8 + strlen(opts[i].name);   /* "  -x, --" + name */
		if (w > width)
			width = w;
	}
	for (int i = 0; opts && opts[i].name; i++) {
		char head[96];
		if (opts[i].short_name)
			snprintf(head, sizeof(head), "  -%c, --%s", opts[i].short_name, opts[i].name);
		else
			snprintf(head, sizeof(head), "      --%s", opts[i].name);
		fprintf(f, "%-*s   %s", (int)width, head, opts[i].help);
		if (opts[i].def && opts[i].type != CLI_OPT_BOOL)
			fprintf(f, " (default \"%s\")", opts[i].def);
		fputc('\n', f);
	}
}

static void print_aliases(FILE *f, const struct cli_command *cmd)
{
	const char *a = cmd->aliases;

	fprintf(f, "\nAliases:\n  %s", cmd->name);
	while (a && *a) {
		size_t n = strcspn(a, " ");
		fprintf(f, ", %.*s", (int)n, a);
		a += n + (a[n] == ' ');
	}
	fputc('\n', f);
}

static void print_subs(FILE *f, const struct cli_command *cmd)
{
	size_t pad = 11;

	for (const struct cli_command *const *s = cmd->subs; *s; s++)
		if (!(*s)->hidden && strlen((*s)->name) > pad)
			pad = strlen((*s)->name);
	fprintf(f, "\nAvailable Commands:\n");
	for (const struct cli_command *const *s = cmd->subs; *s; s++)
		if (!(*s)->hidden)
			fprintf(f, "  %-*s %s\n", (int)pad, (*s)->name, (*s)->short_help);
}

void cli_print_help(FILE *f, const struct cli_command *cmd, const char *path)
{
	bool root = cmd == &root_cmd;

	fprintf(f, "Description:\n");
	print_indented(f, cmd->long_help ? cmd->long_help : cmd->short_help, "  ");
	fprintf(f, "\nUsage:\n");
	if (!root)
		fprintf(f, "  %s%s%s [flags]\n", path, cmd->usage && *cmd->usage ? " " : "",
			cmd->usage ? cmd->usage : "");
	if (cmd->subs)
		fprintf(f, "  %s [command]\n", path);
	if (cmd->aliases)
		print_aliases(f, cmd);
	if (cmd->examples) {
		fprintf(f, "\nExamples:\n");
		print_indented(f, cmd->examples, "  ");
	}
	if (cmd->subs)
		print_subs(f, cmd);
	if (cmd->opts && cmd->opts[0].name) {
		fprintf(f, "\nFlags:\n");
		print_flags(f, cmd->opts);
	}
	fprintf(f, root ? "\nFlags:\n" : "\nGlobal Flags:\n");
	print_flags(f, global_opts);
	if (cmd->subs)
		fprintf(f, "\nUse \"%s [command] --help\" for more information about a command.\n", path);
}

int cli_bad_args(const struct cli_args *a, cell_error *err)
{
	cli_print_help(stdout, a->cmd, a->path);
	fputc('\n', stdout);
	return cell_err(err, 400, EINVAL, "Invalid number of arguments");
}

/* ------------------------------------------------------------ prompts */

char *cli_prompt(const char *prompt, bool secret)
{
	struct termios old, quiet;
	bool tty = secret && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	fputs(prompt, stdout);
	fflush(stdout);
	if (tty) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	n = getline(&line, &cap, stdin);
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stdout);
	}
	if (n < 0) {
		if (!tty)
			fputc('\n', stdout);   /* end the prompt's line */
		free(line);
		return NULL;
	}
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	return line;
}

/* --------------------------------------------------------------- main */

int cli_ctx_conf(struct cli_ctx *ctx, struct cli_conf **out, cell_error *err)
{
	if (!ctx->conf) {
		int rc = cli_conf_load(NULL, &ctx->conf, err);
		if (rc < 0)
			return rc;
	}
	*out = ctx->conf;
	return 0;
}

struct invocation {
	struct parse p;
	struct cli_args a;
	char **pos;
};

static void invocation_free(struct invocation *inv)
{
	for (int i = 0; inv->p.cmd && inv->p.cmd->opts && inv->p.cmd->opts[i].name; i++)
		free(inv->p.vals[i]);
	free(inv->p.vals);
	for (int g = 0; g < G_COUNT; g++)
		free(inv->p.gvals[g]);
	free(inv->pos);
}

/* Second pass: every word that is not a command name is a flag or an argument. */
static int parse_words(struct invocation *inv, int argc, char **argv, const bool *is_name, cell_error *err)
{
	size_t nopts = 0;
	bool dashdash = false;

	while (inv->p.cmd->opts && inv->p.cmd->opts[nopts].name)
		nopts++;
	inv->p.vals = calloc(nopts + 1, sizeof(char *));
	inv->pos = calloc((size_t)argc + 1, sizeof(char *));
	if (!inv->p.vals || !inv->pos)
		return cell_err(err, 500, ENOMEM, "out of memory");
	for (int i = 1; i < argc; i++) {
		int skip = 0, rc;
		if (is_name[i])
			continue;
		if (!dashdash && !strcmp(argv[i], "--")) {
			dashdash = true;
			continue;
		}
		if (dashdash || !is_flag(argv[i])) {
			inv->pos[inv->a.argc++] = argv[i];
			continue;
		}
		if ((rc = parse_flag(&inv->p, argv, i, argc, &skip, err)) < 0)
			return rc;
		i += skip;
	}
	inv->a.argv = inv->pos;
	inv->a.vals = inv->p.vals;
	return 0;
}

static void apply_globals(struct cli_ctx *ctx, struct invocation *inv)
{
	char **g = inv->p.gvals;
	ctx->debug = g[G_DEBUG] && strcmp(g[G_DEBUG], "false");
	ctx->force_local = g[G_FORCE_LOCAL] && strcmp(g[G_FORCE_LOCAL], "false");
	ctx->quiet = g[G_QUIET] && strcmp(g[G_QUIET], "false");
	ctx->verbose = g[G_VERBOSE] && strcmp(g[G_VERBOSE], "false");
	ctx->project = g[G_PROJECT] && *g[G_PROJECT] ? g[G_PROJECT] : NULL;
}

static int dispatch(struct cli_ctx *ctx, struct invocation *inv, cell_error *err)
{
	const struct cli_command *cmd = inv->a.cmd;
	char **g = inv->p.gvals;

	if (g[G_HELP] && strcmp(g[G_HELP], "false")) {
		cli_print_help(stdout, cmd, inv->a.path);
		return 0;
	}
	if (g[G_VERSION] && strcmp(g[G_VERSION], "false")) {
		printf("%s\n", CELL_VERSION);
		return 0;
	}
	if (!cmd->run) {
		if (inv->a.argc == 0) {
			cli_print_help(stdout, cmd, inv->a.path);
			return 0;
		}
		return cell_err(err, 400, EINVAL, "unknown command \"%s\" for \"%s\"", inv->a.argv[0], inv->a.path);
	}
	if (inv->a.argc < cmd->min_args || (cmd->max_args >= 0 && inv->a.argc > cmd->max_args))
		return cli_bad_args(&inv->a, err);
	return cmd->run(ctx, &inv->a, err);
}

int cli_main(int argc, char **argv)
{
	struct cli_ctx ctx = {0};
	struct invocation inv = {0};
	cell_error err = {0};
	_cleanup_free_ bool *is_name = calloc((size_t)argc + 1, sizeof(bool));
	int rc;

	/* A daemon hanging up mid-write must be an error message, not a silent death. */
	signal(SIGPIPE, SIG_IGN);
	if (!is_name) {
		fprintf(stderr, "Error: out of memory\n");
		return 1;
	}
	inv.a.cmd = inv.p.cmd = resolve(argc, argv, is_name, inv.a.path, sizeof(inv.a.path));
	rc = parse_words(&inv, argc, argv, is_name, &err);
	if (rc == 0) {
		apply_globals(&ctx, &inv);
		rc = dispatch(&ctx, &inv, &err);
	}
	fflush(stdout);
	if (rc < 0)
		fprintf(stderr, "Error: %s\n", err.msg[0] ? err.msg : strerror(-rc));
	invocation_free(&inv);
	cli_conf_free(ctx.conf);
	return rc < 0 ? 1 : 0;
}
