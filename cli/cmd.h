/* cmd.h: the kwire subcommands. Each takes the arguments after its name
 * (argv[0] is the subcommand) and returns the process exit status. */
#ifndef KWIRE_CMD_H
#define KWIRE_CMD_H

struct kw_cmd {
	const char *name;
	const char *summary; /* one line for `kwire --help` */
	int (*run)(int argc, char **argv);
};

int cmd_version(int argc, char **argv);

#endif
