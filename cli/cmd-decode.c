/* cmd-decode.c: `kwire decode FILE` (and the option parsing and read loop
 * that `kwire sniff` shares, cmd_analyze_run). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cap-analyze.h"
#include "cap.h"
#include "cmd.h"
#include "kw-help-gen.h"

static void usage(FILE *f, int live)
{
	fputs(live ? kw_help_sniff : kw_help_decode, f);
	fputs(kw_help_analyze, f);
}

static struct cap_source *volatile g_src;

static void on_sigint(int sig)
{
	(void)sig;
	if (g_src)
		cap_source_break(g_src);
}

static void on_warning(void *ctx, const char *msg)
{
	fprintf(stderr, "kwire %s: warning: %s\n", (const char *)ctx, msg);
}

#define FLOW_MEM_MIN ((size_t)1 << 20)

/* "512M", "2G", "65536": bytes, with binary K/M/G suffixes. 0 or -1. */
static int parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 0:
		break;
	default:
		return -1;
	}
	if (shift && *++end && !((*end == 'B' || *end == 'b') && !end[1]))
		return -1;
	if (v > (SIZE_MAX >> shift))
		return -1;
	*out = (size_t)v << shift;
	return 0;
}

static int parse_format(const char *s, int *fmt)
{
	static const char *const names[] = {"summary", "verbose", "json",
	                                    "records", "stats",   "html"};
	for (int i = 0; i < 6; i++) {
		if (!strcmp(s, names[i])) {
			*fmt = i;
			return 0;
		}
	}
	return -1;
}

int cmd_analyze_run(int argc, char **argv, int live)
{
	enum {
		O_JSON = 256,
		O_STATS,
		O_NODETECT,
		O_API,
		O_TOPIC,
		O_CLIENT,
		O_ERRORS,
		O_PROG,
		O_NOPROG,
		O_RULES,
		O_FLOWMEM,
	};
	static const struct option lopts[] = {
	    {"format", required_argument, NULL, 'f'},
	    {"json", no_argument, NULL, O_JSON},
	    {"stats", no_argument, NULL, O_STATS},
	    {"port", required_argument, NULL, 'p'},
	    {"no-detect", no_argument, NULL, O_NODETECT},
	    {"api", required_argument, NULL, O_API},
	    {"topic", required_argument, NULL, O_TOPIC},
	    {"client-id", required_argument, NULL, O_CLIENT},
	    {"errors", no_argument, NULL, O_ERRORS},
	    {"progress", no_argument, NULL, O_PROG},
	    {"no-progress", no_argument, NULL, O_NOPROG},
	    {"rules", required_argument, NULL, O_RULES},
	    {"flow-memory", required_argument, NULL, O_FLOWMEM},
	    {"interface", required_argument, NULL, 'i'},
	    {"snaplen", required_argument, NULL, 's'},
	    {"output", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *cmd = live ? "sniff" : "decode";
	struct cap_an_opts opts;
	struct cap_tcp_opts tcp_opts;
	memset(&opts, 0, sizeof(opts));
	memset(&tcp_opts, 0, sizeof(tcp_opts));
	opts.progress = -1;
	const char *iface = NULL, *output = NULL;
	int snaplen = 0;
	char err[512];
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, live ? "+f:p:i:s:o:h" : "f:p:o:h", lopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'f':
			if (parse_format(optarg, &opts.format) < 0) {
				fprintf(stderr,
				        "kwire %s: unknown format '%s' (summary, verbose, json, "
				        "records, stats, html)\n",
				        cmd, optarg);
				return 2;
			}
			break;
		case 'o':
			output = optarg;
			break;
		case O_JSON:
			opts.stats_json = 1;
			break;
		case O_STATS:
			opts.stats_after = 1;
			break;
		case 'p': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v <= 0 || v > 65535) {
				fprintf(stderr, "kwire %s: bad port '%s'\n", cmd, optarg);
				return 2;
			}
			if (opts.nports < CAP_AN_MAX_PORTS)
				opts.ports[opts.nports++] = (uint16_t)v;
			break;
		}
		case O_NODETECT:
			opts.no_detect = 1;
			break;
		case O_API:
			if (cap_an_parse_apis(&opts, optarg, err, sizeof(err)) < 0) {
				fprintf(stderr, "kwire %s: %s\n", cmd, err);
				return 2;
			}
			break;
		case O_TOPIC:
			opts.topic_glob = optarg;
			break;
		case O_CLIENT:
			opts.client_id_glob = optarg;
			break;
		case O_RULES:
			opts.rules_path = optarg;
			break;
		case O_ERRORS:
			opts.errors_only = 1;
			break;
		case O_PROG:
			opts.progress = 1;
			break;
		case O_NOPROG:
			opts.progress = 0;
			break;
		case O_FLOWMEM:
			if (parse_size(optarg, &tcp_opts.mem_max) < 0 ||
			    tcp_opts.mem_max < FLOW_MEM_MIN) {
				fprintf(stderr,
				        "kwire %s: bad --flow-memory '%s' (a size of at least 1M, "
				        "e.g. 256M or 2G)\n",
				        cmd, optarg);
				return 2;
			}
			break;
		case 'i':
			if (!live)
				goto bad;
			iface = optarg;
			break;
		case 's':
			if (!live)
				goto bad;
			snaplen = atoi(optarg);
			break;
		case 'h':
			usage(stdout, live);
			return 0;
		default:
		bad:
			fprintf(stderr, "kwire %s: bad option '%s'\n\n", cmd, argv[optind - 1]);
			usage(stderr, live);
			return 2;
		}
	}
	if (opts.stats_json && opts.format != CAP_AN_STATS && !opts.stats_after) {
		fprintf(stderr, "kwire %s: --json goes with --format stats (or --stats)\n", cmd);
		return 2;
	}
	if (opts.progress < 0)
		opts.progress = !live && isatty(2);

	struct cap_source *src = NULL;
	if (live) {
		if (!iface) {
			fprintf(stderr, "kwire sniff: -i IFACE is required\n\n");
			usage(stderr, 1);
			return 2;
		}
		if (cap_source_open_live(&src, iface, snaplen, err, sizeof(err)) < 0) {
			fprintf(stderr, "kwire sniff: %s\n", err);
			return 1;
		}
		if (optind < argc) {
			/* The rest of the command line is the BPF filter. */
			char bpf[2048];
			size_t o = 0;
			bpf[0] = 0;
			for (int i = optind; i < argc; i++) {
				int n = snprintf(bpf + o, sizeof(bpf) - o, "%s%s",
				                 i > optind ? " " : "", argv[i]);
				if (n < 0 || (size_t)n >= sizeof(bpf) - o) {
					fprintf(stderr, "kwire sniff: BPF filter too long\n");
					cap_source_close(&src);
					return 2;
				}
				o += (size_t)n;
			}
			if (cap_source_set_filter(src, bpf, err, sizeof(err)) < 0) {
				fprintf(stderr, "kwire sniff: %s\n", err);
				cap_source_close(&src);
				return 2;
			}
		}
	} else {
		if (optind != argc - 1) {
			fprintf(stderr, "kwire decode: give one capture file (or '-')\n\n");
			usage(stderr, 0);
			return 2;
		}
		if (cap_source_open(&src, argv[optind], err, sizeof(err)) < 0) {
			fprintf(stderr, "kwire decode: %s\n", err); /* err names the file */
			return 1;
		}
	}

	cap_source_on_warning(src, on_warning, (void *)cmd);

	FILE *out = stdout;
	if (output && strcmp(output, "-") && !(out = fopen(output, "w"))) {
		fprintf(stderr, "kwire %s: %s: %s\n", cmd, output, strerror(errno));
		cap_source_close(&src);
		return 1;
	}
	opts.title = live ? iface : argv[optind];
	struct cap_an *an = cap_an_new(&opts, out, err, sizeof(err));
	if (!an) {
		fprintf(stderr, "kwire %s: %s\n", cmd, err);
		if (out != stdout)
			fclose(out);
		cap_source_close(&src);
		return 1;
	}
	struct cap_tcp_cbs cbs;
	cap_an_callbacks(an, &cbs);
	struct cap_tcp *tcp = cap_tcp_new(&tcp_opts, &cbs);
	if (!tcp) {
		fprintf(stderr, "kwire %s: out of memory\n", cmd);
		cap_an_free(&an);
		cap_source_close(&src);
		return 1;
	}

	struct sigaction sa, old_int, old_term;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	g_src = src;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	struct cap_pkt pkt;
	uint64_t n = 0;
	int rc;
	while ((rc = cap_source_next(src, &pkt)) == 1) {
		cap_tcp_packet(tcp, &pkt);
		if ((++n & 0xffff) == 0 && opts.progress) {
			uint64_t done, total;
			cap_source_progress(src, &done, &total);
			cap_an_progress(an, done, total, 0);
		}
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	g_src = NULL;
	cap_an_progress(an, 0, 0, 1);
	int status = 0;
	if (rc < 0) {
		fprintf(stderr, "kwire %s: read error: %s\n", cmd, cap_source_error(src));
		/* A read error before any packet means the input was not a capture. */
		status = n ? 0 : 1;
	}
	cap_tcp_flush(tcp);
	cap_an_finish(an, cap_tcp_stats(tcp));
	if (!live && cap_source_truncated(src))
		fprintf(stderr,
		        "kwire decode: the capture file ends in the middle of a packet record "
		        "(truncated); everything before it was decoded\n");
	const struct cap_an_counts *cnt = cap_an_counts(an);
	if (cnt->problems && opts.format != CAP_AN_STATS)
		fprintf(stderr, "kwire %s: %llu decode problem(s) reported\n", cmd,
		        (unsigned long long)cnt->problems);
	if (cnt->warnings && opts.format != CAP_AN_STATS)
		fprintf(stderr, "kwire %s: %llu decode warning(s) reported\n", cmd,
		        (unsigned long long)cnt->warnings);
	cap_tcp_free(&tcp);
	cap_an_free(&an);
	cap_source_close(&src);
	if (out != stdout && (ferror(out) | fclose(out))) {
		fprintf(stderr, "kwire %s: %s: write error\n", cmd, output);
		status = 1;
	}
	if (fflush(stdout) != 0 && errno != EPIPE)
		status = 1;
	return status;
}

int cmd_decode(int argc, char **argv)
{
	return cmd_analyze_run(argc, argv, 0);
}
