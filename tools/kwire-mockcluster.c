/* kwire-mockcluster: a real Kafka-protocol broker cluster for tests.
 *
 * Starts librdkafka's mock cluster (rdkafka_mock.h) inside a producer
 * handle, creates the topics asked for, prints where the brokers listen and
 * runs until SIGINT/SIGTERM or until stdin reaches EOF. Other tests (proxy,
 * analyzer, client captures) start it as a child process:
 *
 *   $ kwire-mockcluster --brokers 3 --topic t1:4 --topic t2:1:3
 *   BOOTSTRAP 127.0.0.1:40001,127.0.0.1:40003,127.0.0.1:40005
 *   BROKER 1 127.0.0.1:40001
 *   BROKER 2 127.0.0.1:40003
 *   BROKER 3 127.0.0.1:40005
 *   READY
 *
 * Stdout carries only these lines and the replies to stdin commands (see
 * usage()); everything else goes to stderr. Stdout is flushed after each
 * line, so a parent reading a pipe sees them at once. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MC_MAX_BROKERS 32
#define MC_LINE_MAX 1024

struct mc_opts {
	int brokers;
	int verbose;
	int no_stdin;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kwire-mockcluster [options]\n"
		"\n"
		"Runs librdkafka's mock Kafka cluster on 127.0.0.1 (ephemeral ports) and prints:\n"
		"  BOOTSTRAP host:port,host:port,...   (one line)\n"
		"  BROKER <id> host:port               (one line per broker, ids 1..N)\n"
		"  READY                               (everything above is printed)\n"
		"then runs until SIGINT/SIGTERM, or until stdin reaches EOF, and exits 0.\n"
		"\n"
		"options (topic/leader options apply in order, after the cluster starts):\n"
		"  --brokers N                 number of brokers (default 3, max %d)\n"
		"  --topic NAME:PARTS[:RF]     create a topic (repeatable; RF defaults to\n"
		"                              min(3, brokers))\n"
		"  --leader TOPIC:PART:BROKER  set a partition's leader (repeatable)\n"
		"  --apiversion KEY:MIN:MAX    limit the versions the cluster advertises for\n"
		"                              an API key (-1:-1 disables it; repeatable)\n"
		"  --rtt BROKER:MS             add MS milliseconds of latency on a broker\n"
		"  --no-stdin                  do not watch stdin (run until a signal)\n"
		"  -v, --verbose               librdkafka logs on stderr\n"
		"  -h, --help                  this text\n"
		"\n"
		"stdin: when stdin is a pipe, tty or socket, EOF on it stops the cluster, so\n"
		"a parent that dies takes the cluster with it. /dev/null as stdin (e.g. a\n"
		"background job in a script) is ignored, as with --no-stdin. Lines on stdin are\n"
		"commands; each gets one reply line, \"OK\" or \"ERR <reason>\":\n"
		"  topic NAME PARTS RF         create a topic\n"
		"  leader TOPIC PART BROKER    move a partition's leader\n"
		"  down BROKER | up BROKER     take a broker's listener down or up\n"
		"  rtt BROKER MS               set a broker's added latency\n"
		"  quit                        stop the cluster\n"
		"Topics not created beforehand are auto-created by the mock cluster on\n"
		"first use.\n",
		MC_MAX_BROKERS);
}

static int mc_verbose;

static void mc_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	if (mc_verbose)
		fprintf(stderr, "rdkafka %d %s: %s\n", level, fac, buf);
}

/* Parses a whole decimal int in [lo, hi]; returns 0 or -1. */
static int parse_int(const char *s, long lo, long hi, int *out)
{
	char *end;
	long v;

	if (!*s)
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

/* Splits s (modified in place) at ':' into at most max fields; returns the
 * number of fields. */
static int split(char *s, char sep, char **fields, int max)
{
	int n = 0;

	while (n < max) {
		fields[n++] = s;
		char *c = strchr(s, sep);
		if (!c)
			break;
		*c = '\0';
		s = c + 1;
	}
	return n;
}

static int mc_topic(rd_kafka_mock_cluster_t *mc, const char *name, int parts, int rf)
{
	rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, name, parts, rf);

	if (err) {
		fprintf(stderr, "kwire-mockcluster: topic %s: %s\n", name, rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

static int mc_leader(rd_kafka_mock_cluster_t *mc, const char *topic, int part, int broker)
{
	rd_kafka_resp_err_t err = rd_kafka_mock_partition_set_leader(mc, topic, part, broker);

	if (err) {
		fprintf(stderr, "kwire-mockcluster: leader %s[%d]: %s\n", topic, part,
			rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

/* Applies one "--opt VALUE" that needs the running cluster. Returns 0 or -1
 * with a message on stderr. */
static int apply_opt(rd_kafka_mock_cluster_t *mc, const struct mc_opts *o, const char *opt,
		     const char *value)
{
	char buf[MC_LINE_MAX];
	char *f[4];
	int n, a, b, c;

	if (strlen(value) >= sizeof(buf))
		goto bad;
	memcpy(buf, value, strlen(value) + 1);

	if (!strcmp(opt, "--topic")) {
		n = split(buf, ':', f, 4);
		if (n < 2 || n > 3 || !*f[0] || parse_int(f[1], 1, 100000, &a))
			goto bad;
		b = o->brokers < 3 ? o->brokers : 3;
		if (n == 3 && parse_int(f[2], 1, o->brokers, &b))
			goto bad;
		return mc_topic(mc, f[0], a, b);
	}
	if (!strcmp(opt, "--leader")) {
		/* The topic name may not contain ':', which Kafka forbids anyway. */
		n = split(buf, ':', f, 4);
		if (n != 3 || parse_int(f[1], 0, INT_MAX, &a) || parse_int(f[2], -1, INT_MAX, &b))
			goto bad;
		return mc_leader(mc, f[0], a, b);
	}
	if (!strcmp(opt, "--apiversion")) {
		n = split(buf, ':', f, 4);
		if (n != 3 || parse_int(f[0], 0, INT16_MAX, &a) || parse_int(f[1], -1, INT16_MAX, &b) ||
		    parse_int(f[2], -1, INT16_MAX, &c))
			goto bad;
		if (rd_kafka_mock_set_apiversion(mc, (int16_t)a, (int16_t)b, (int16_t)c)) {
			fprintf(stderr, "kwire-mockcluster: --apiversion %s refused\n", value);
			return -1;
		}
		return 0;
	}
	if (!strcmp(opt, "--rtt")) {
		n = split(buf, ':', f, 4);
		if (n != 2 || parse_int(f[0], 1, o->brokers, &a) || parse_int(f[1], 0, 3600000, &b))
			goto bad;
		if (rd_kafka_mock_broker_set_rtt(mc, a, b)) {
			fprintf(stderr, "kwire-mockcluster: --rtt %s refused\n", value);
			return -1;
		}
		return 0;
	}
bad:
	fprintf(stderr, "kwire-mockcluster: bad value for %s: '%s' (see --help)\n", opt, value);
	return -1;
}

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

/* Runs one stdin command line (NUL-terminated, no newline). Returns 1 when
 * the command asks to quit, else 0. */
static int run_command(rd_kafka_mock_cluster_t *mc, const struct mc_opts *o, char *line)
{
	char *f[5];
	int n = 0, a, b, c;
	rd_kafka_resp_err_t err;

	for (char *tok = strtok(line, " \t\r"); tok && n < 5; tok = strtok(NULL, " \t\r"))
		f[n++] = tok;
	if (n == 0)
		return 0;
	if (!strcmp(f[0], "quit")) {
		reply("OK");
		return 1;
	}
	if (!strcmp(f[0], "topic") && n == 4 && !parse_int(f[2], 1, 100000, &a) &&
	    !parse_int(f[3], 1, o->brokers, &b)) {
		err = rd_kafka_mock_topic_create(mc, f[1], a, b);
	} else if (!strcmp(f[0], "leader") && n == 4 && !parse_int(f[2], 0, INT_MAX, &a) &&
		   !parse_int(f[3], -1, INT_MAX, &b)) {
		err = rd_kafka_mock_partition_set_leader(mc, f[1], a, b);
	} else if ((!strcmp(f[0], "down") || !strcmp(f[0], "up")) && n == 2 &&
		   !parse_int(f[1], 1, o->brokers, &a)) {
		err = f[0][0] == 'd' ? rd_kafka_mock_broker_set_down(mc, a)
				     : rd_kafka_mock_broker_set_up(mc, a);
	} else if (!strcmp(f[0], "rtt") && n == 3 && !parse_int(f[1], 1, o->brokers, &a) &&
		   !parse_int(f[2], 0, 3600000, &c)) {
		err = rd_kafka_mock_broker_set_rtt(mc, a, c);
	} else {
		reply("ERR bad command (see --help)");
		return 0;
	}
	if (err)
		reply("ERR %s", rd_kafka_err2str(err));
	else
		reply("OK");
	return 0;
}

/* True when stdin is worth watching for EOF: open, and not /dev/null. */
static int stdin_watchable(void)
{
	struct stat st, nul;

	if (fstat(STDIN_FILENO, &st) < 0)
		return 0;
	if (S_ISCHR(st.st_mode) && stat("/dev/null", &nul) == 0 && S_ISCHR(nul.st_mode) &&
	    st.st_rdev == nul.st_rdev)
		return 0;
	return 1;
}

/* Waits for a signal, EOF on stdin or "quit", running stdin commands. */
static void run(rd_kafka_mock_cluster_t *mc, const struct mc_opts *o, int sfd)
{
	char line[MC_LINE_MAX];
	size_t used = 0;
	int watch = !o->no_stdin && stdin_watchable();

	for (;;) {
		struct pollfd pfd[2] = {
			{.fd = sfd, .events = POLLIN},
			{.fd = watch ? STDIN_FILENO : -1, .events = POLLIN},
		};
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("kwire-mockcluster: poll");
			return;
		}
		if (pfd[0].revents)
			return; /* SIGINT or SIGTERM */
		if (!pfd[1].revents)
			continue;
		ssize_t n = read(STDIN_FILENO, line + used, sizeof(line) - 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* EOF (or a broken stdin): the parent is gone */
		used += (size_t)n;
		for (;;) {
			char *nl = memchr(line, '\n', used);
			if (!nl) {
				if (used == sizeof(line) - 1) {
					reply("ERR line too long");
					used = 0;
				}
				break;
			}
			*nl = '\0';
			size_t take = (size_t)(nl - line) + 1;
			int quit = run_command(mc, o, line);
			memmove(line, line + take, used - take);
			used -= take;
			if (quit)
				return;
		}
	}
}

int main(int argc, char **argv)
{
	struct mc_opts o = {.brokers = 3};
	char errstr[512];
	rd_kafka_conf_t *conf = NULL;
	rd_kafka_t *rk = NULL;
	rd_kafka_mock_cluster_t *mc = NULL;
	sigset_t sigs;
	int sfd = -1;
	int rc = 1;

	/* First pass: options that shape the cluster; the rest are applied
	 * once it runs. */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			o.verbose = 1;
		} else if (!strcmp(a, "--no-stdin")) {
			o.no_stdin = 1;
		} else if (!strcmp(a, "--brokers") || !strcmp(a, "--topic") || !strcmp(a, "--leader") ||
			   !strcmp(a, "--apiversion") || !strcmp(a, "--rtt")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "kwire-mockcluster: %s needs a value (see --help)\n", a);
				return 2;
			}
			if (!strcmp(a, "--brokers") &&
			    parse_int(argv[i + 1], 1, MC_MAX_BROKERS, &o.brokers)) {
				fprintf(stderr, "kwire-mockcluster: --brokers wants 1..%d\n",
					MC_MAX_BROKERS);
				return 2;
			}
			i++;
		} else {
			fprintf(stderr, "kwire-mockcluster: unknown argument '%s' (see --help)\n", a);
			return 2;
		}
	}
	mc_verbose = o.verbose;

	/* Block the stop signals before librdkafka starts its threads, so
	 * they inherit the mask and only our signalfd sees them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0) {
		fprintf(stderr, "kwire-mockcluster: cannot block signals\n");
		return 1;
	}
	/* A parent that closes our stdout must not kill us mid-cleanup. */
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0) {
		perror("kwire-mockcluster: signalfd");
		return 1;
	}

	conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, mc_log_cb);
	if (rd_kafka_conf_set(conf, "log_level", o.verbose ? "7" : "3", errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "client.id", "kwire-mockcluster", errstr, sizeof(errstr))) {
		fprintf(stderr, "kwire-mockcluster: config: %s\n", errstr);
		goto out;
	}
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "kwire-mockcluster: rd_kafka_new: %s\n", errstr);
		goto out; /* conf is still ours */
	}
	conf = NULL; /* owned by rk now */

	mc = rd_kafka_mock_cluster_new(rk, o.brokers);
	if (!mc) {
		fprintf(stderr, "kwire-mockcluster: cannot start the mock cluster\n");
		goto out;
	}

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--brokers")) {
			i++;
		} else if (!strcmp(a, "--topic") || !strcmp(a, "--leader") ||
			   !strcmp(a, "--apiversion") || !strcmp(a, "--rtt")) {
			if (apply_opt(mc, &o, a, argv[++i]) < 0)
				goto out;
		}
	}

	/* The bootstrap list names the brokers in id order, 1..N
	 * (rd_kafka_mock_cluster_new numbers them so). */
	const char *bs = rd_kafka_mock_cluster_bootstraps(mc);
	char list[MC_LINE_MAX * 4];
	char *f[MC_MAX_BROKERS];
	if (strlen(bs) >= sizeof(list)) {
		fprintf(stderr, "kwire-mockcluster: bootstrap list too long\n");
		goto out;
	}
	memcpy(list, bs, strlen(bs) + 1);
	int n = split(list, ',', f, MC_MAX_BROKERS);
	if (n != o.brokers) {
		fprintf(stderr, "kwire-mockcluster: expected %d brokers, bootstrap list is '%s'\n",
			o.brokers, bs);
		goto out;
	}
	printf("BOOTSTRAP %s\n", bs);
	for (int i = 0; i < n; i++)
		printf("BROKER %d %s\n", i + 1, f[i]);
	printf("READY\n");
	fflush(stdout);

	run(mc, &o, sfd);
	rc = 0;
out:
	if (mc)
		rd_kafka_mock_cluster_destroy(mc);
	if (rk)
		rd_kafka_destroy(rk);
	if (conf)
		rd_kafka_conf_destroy(conf);
	if (sfd >= 0)
		close(sfd);
	return rc;
}
