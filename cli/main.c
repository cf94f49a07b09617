/* main.c: the kwire command and its subcommand dispatch.
 *
 * Adding a subcommand: write cmd_NAME(argc, argv) in cli/cmd-NAME.c,
 * declare it in cmd.h and add one row to kw_cmds below. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

static const struct kw_cmd kw_cmds[] = {
	{"version", "print the version and the codecs and features built in", cmd_version},
	{"proxy", "run the transparent Kafka proxy", cmd_proxy},
	{"decode", "decode the Kafka traffic in a pcap/pcapng capture", cmd_decode},
	{"sniff", "decode the Kafka traffic on a live interface", cmd_sniff},
	{"demo", "run a producer and a consumer through kwire in front of a built-in cluster", cmd_demo},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: kwire COMMAND [options]\n"
		   "\n"
		   "kwire is a Kafka-compatible proxy and protocol analyzer.\n"
		   "\n"
		   "commands:\n");
	for (size_t i = 0; i < sizeof(kw_cmds) / sizeof(kw_cmds[0]); i++)
		fprintf(f, "  %-10s %s\n", kw_cmds[i].name, kw_cmds[i].summary);
	fprintf(f, "\n'kwire COMMAND --help' describes one command.\n");
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
