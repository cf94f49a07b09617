/* cmd-sniff.c: `kwire sniff -i IFACE [BPF filter]`: the analyzer of
 * `kwire decode` on a live interface, until SIGINT (cmd-decode.c holds the
 * shared option parsing and read loop). */
#include "cmd.h"

int cmd_sniff(int argc, char **argv)
{
	return cmd_analyze_run(argc, argv, 1);
}
