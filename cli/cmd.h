/* cmd.h: the kwire subcommands. Each takes the arguments after its name
 * (argv[0] is the subcommand) and returns the process exit status. */
#ifndef KWIRE_CMD_H
#define KWIRE_CMD_H

#include <signal.h>

struct kw_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
};

int cmd_version(int argc, char **argv);
int cmd_proxy(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_decode(int argc, char **argv);
int cmd_sniff(int argc, char **argv);
int cmd_rules(int argc, char **argv);
int cmd_passwd(int argc, char **argv);
int cmd_replay(int argc, char **argv);
/* The analyzer shared by decode (live = 0) and sniff (live = 1), cmd-decode.c. */
int cmd_analyze_run(int argc, char **argv, int live);

/* After the first SIGTERM/SIGINT (px_stop done): waits for the drain
 * while taking the signals in set (blocked by the caller). A second
 * SIGTERM or SIGINT stops at once (px_stop_now); SIGHUP still reopens the
 * log. Returns 1 when the stop was forced, else 0. cmd-proxy.c. */
struct px;
int cmd_proxy_drain(struct px *px, const sigset_t *set);

#endif
