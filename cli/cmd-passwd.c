/* cmd-passwd.c: `kwire passwd`, which writes the SASL credentials file
 * kwire's proxy checks PLAIN and SCRAM clients against (px-scram.h, the
 * file format; docs/security.md).
 *
 * The password is read from standard input (one line; the terminal's echo
 * is off when it is one) and never taken from the command line, where
 * other users could see it in the process list. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cmd.h"
#include "kw-help-gen.h"
#include "px-scram.h"

enum { OPT_ITER = 256, OPT_DELETE, OPT_MECH };

static const struct option passwd_opts[] = {
    {"file", required_argument, NULL, 'f'},
    {"mechanism", required_argument, NULL, OPT_MECH},
    {"iterations", required_argument, NULL, OPT_ITER},
    {"delete", no_argument, NULL, OPT_DELETE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* One line of stdin into buf (cap bytes); the terminal does not echo it.
 * Returns the length, or -1. */
static long read_password(char *buf, size_t cap)
{
	struct termios old, quiet;
	int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	if (tty) {
		fprintf(stderr, "password: ");
		quiet = old;
		quiet.c_lflag &= (tcflag_t)~ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	char *r = fgets(buf, (int)cap, stdin);
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fprintf(stderr, "\n");
	}
	if (!r)
		return -1;
	size_t n = strlen(buf);
	if (n && buf[n - 1] == '\n')
		buf[--n] = 0;
	else if (n == cap - 1)
		return -2; /* longer than the buffer */
	if (n && buf[n - 1] == '\r')
		buf[--n] = 0;
	return (long)n;
}

int cmd_passwd(int argc, char **argv)
{
	const char *file = NULL;
	unsigned mask = 0;
	unsigned long iters = 4096;
	int del = 0, c;
	char err[512], pw[1024];

	optind = 1;
	while ((c = getopt_long(argc, argv, "f:h", passwd_opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			file = optarg;
			break;
		case OPT_MECH: {
			int h = px_scram_hash_parse(optarg, strlen(optarg));
			if (h < 0) {
				fprintf(stderr, "kwire passwd: --mechanism: SCRAM-SHA-256 or "
				                "SCRAM-SHA-512\n");
				return 2;
			}
			mask |= 1u << h;
			break;
		}
		case OPT_ITER: {
			char *end;
			errno = 0;
			iters = strtoul(optarg, &end, 10);
			if (errno || *end || optarg[0] == '-' || iters < PX_SCRAM_ITER_MIN ||
			    iters > PX_SCRAM_ITER_MAX) {
				fprintf(stderr, "kwire passwd: --iterations: %d to %d\n",
				        PX_SCRAM_ITER_MIN, PX_SCRAM_ITER_MAX);
				return 2;
			}
			break;
		}
		case OPT_DELETE:
			del = 1;
			break;
		case 'h':
			fputs(kw_help_passwd, stdout);
			return 0;
		default:
			fputs(kw_help_passwd, stderr);
			return 2;
		}
	}
	if (!file || optind != argc - 1) {
		fprintf(stderr, "kwire passwd: give -f FILE and one USER\n\n");
		fputs(kw_help_passwd, stderr);
		return 2;
	}
	const char *user = argv[optind];
	size_t ul = strlen(user);
	if (!ul || ul > 255) {
		fprintf(stderr, "kwire passwd: a user name is 1 to 255 bytes\n");
		return 2;
	}
	if (!mask)
		mask = (1u << PX_SCRAM_256) | (1u << PX_SCRAM_512);
	if (del) {
		if (px_creds_update(file, user, NULL, mask, 0, err, sizeof(err))) {
			fprintf(stderr, "kwire passwd: %s\n", err);
			return 1;
		}
		return 0;
	}
	long n = read_password(pw, sizeof(pw));
	if (n <= 0) {
		fprintf(stderr, "kwire passwd: %s\n",
		        n == -2 ? "the password is longer than 1023 bytes"
		                : "no password on standard input (one line)");
		OPENSSL_cleanse(pw, sizeof(pw));
		return 1;
	}
	int rc = px_creds_update(file, user, pw, mask, (uint32_t)iters, err, sizeof(err));
	OPENSSL_cleanse(pw, sizeof(pw));
	if (rc) {
		fprintf(stderr, "kwire passwd: %s\n", err);
		return 1;
	}
	return 0;
}
