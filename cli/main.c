/* main.c: the kwire command and its subcommand dispatch.
 *
 * Adding a subcommand: write cmd_NAME(argc, argv) in cli/cmd-NAME.c,
 * declare it in cmd.h, add one row to kw_cmds below, write its --help text
 * in cli/help/NAME.txt and list it in cli/help/kwire.txt (docs/packaging.md). */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "kw-help-gen.h"

/* Their one-line summaries are in cli/help/kwire.txt (`kwire --help`). */
static const struct kw_cmd kw_cmds[] = {
    {"version", cmd_version}, {"proxy", cmd_proxy}, {"decode", cmd_decode}, {"sniff", cmd_sniff},
    {"rules", cmd_rules},     {"demo", cmd_demo},   {"passwd", cmd_passwd}, {"replay", cmd_replay},
};

static void usage(FILE *f)
{
	fputs(kw_help_kwire, f);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version"))
		return cmd_version(1, argv + 1);
	for (size_t i = 0; i < sizeof(kw_cmds) / sizeof(kw_cmds[0]); i++)
		if (!strcmp(argv[1], kw_cmds[i].name))
			return kw_cmds[i].run(argc - 1, argv + 1);
	fprintf(stderr, "kwire: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
