/* cmd-version.c: `kwire version`. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "kw-help-gen.h"
#include "kd.h"

int cmd_version(int argc, char **argv)
{
	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(kw_help_version, stdout);
		return 0;
	}
	printf("kwire %s\n", KWIRE_VERSION);
	printf("features: %s\n", kd_features());
	return 0;
}
