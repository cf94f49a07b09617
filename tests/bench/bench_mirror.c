/* bench_mirror: the main path's throughput with a `mirror:` rule, against
 * the same run with no rules (the Rewrite and mirror issue's goal: at
 * least 95%).
 *
 * Cluster A (librdkafka's mock, 3 brokers, in-process) behind an
 * in-process kwire; a librdkafka producer (acks=1, keyed records of
 * --size bytes with two headers) produces --messages records through
 * kwire, timed from the first produce to the last delivery report. Three
 * setups, alternated --reps times, best and median of each printed side by
 * side:
 *   no rules        kwire without a rules file
 *   mirror, B up    a mirror rule copying every record to cluster B (a
 *                   second in-process mock cluster, 1 broker)
 *   mirror, B down  the same rule, B's address with nobody listening
 * After each mirror run the records B acknowledged are counted (not timed),
 * to show the mirror worked. Asserts nothing (STYLE.md "Tests").
 *   bench_mirror [--messages N] [--size B] [--reps N] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "kd-cur.h"
#include "px-mirror.h"
#include "px-mock.h"
#include "px.h"

#define PARTS 12

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench_mirror: %s: %s\n", what, msg);
	exit(1);
}

static long dr_ok, dr_failed;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (msg->err)
		dr_failed++;
	else
		dr_ok++;
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	if (level <= 3)
		fprintf(stderr, "bench_mirror: rdkafka: %s: %s\n", fac, buf);
}

/* Produces n records through bootstrap; returns records per second. */
static double produce(const char *bootstrap, long n, int size)
{
	char errstr[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const char *kv[] = {"bootstrap.servers",
	                    bootstrap,
	                    "acks",
	                    "1",
	                    "linger.ms",
	                    "5",
	                    "queue.buffering.max.messages",
	                    "1000000",
	                    NULL};
	for (int i = 0; kv[i]; i += 2)
		if (rd_kafka_conf_set(conf, kv[i], kv[i + 1], errstr, sizeof(errstr)))
			die(kv[i], errstr);
	rd_kafka_conf_set_log_cb(conf, quiet_log);
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk)
		die("rd_kafka_new", errstr);
	char *val = malloc((size_t)size);
	memset(val, 'v', (size_t)size);
	dr_ok = dr_failed = 0;
	/* Metadata first, so that the timed part is the produce alone. */
	const struct rd_kafka_metadata *md;
	rd_kafka_metadata(rk, 1, NULL, &md, 10000);
	rd_kafka_metadata_destroy(md);
	double t0 = now_s();
	for (long i = 0; i < n; i++) {
		char key[32];
		int kl = snprintf(key, sizeof(key), "k%ld", i);
		for (;;) {
			rd_kafka_resp_err_t err = rd_kafka_producev(
			    rk, RD_KAFKA_V_TOPIC("bench"),
			    RD_KAFKA_V_PARTITION((int32_t)(i % PARTS)),
			    RD_KAFKA_V_KEY(key, (size_t)kl), RD_KAFKA_V_VALUE(val, (size_t)size),
			    RD_KAFKA_V_HEADER("trace", "abc", 3), RD_KAFKA_V_HEADER("n", key, kl),
			    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
			if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
				break;
			rd_kafka_poll(rk, 10);
		}
	}
	rd_kafka_flush(rk, 120000);
	double dt = now_s() - t0;
	if (dr_failed || dr_ok != n)
		fprintf(stderr, "bench_mirror: %ld delivered, %ld failed of %ld\n", dr_ok,
		        dr_failed, n);
	rd_kafka_destroy(rk);
	free(val);
	return (double)n / dt;
}

/* kwire in front of a, with rules (NULL: none). */
static struct px *kwire_start(struct px_mock *a, const char *rules)
{
	char err[512];
	struct px_conf conf;
	px_conf_init(&conf);
	snprintf(conf.listen.host, sizeof(conf.listen.host), "127.0.0.1");
	conf.listen.port = 0;
	conf.log_level = 0;
	if (rules)
		conf.rules = strdup(rules);
	if (px_mock_conf_upstream(a, &conf, err, sizeof(err)))
		die("conf", err);
	struct px *px = px_new(&conf, err, sizeof(err));
	px_conf_free(&conf);
	if (!px || px_start(px, err, sizeof(err)))
		die("kwire", err);
	return px;
}

/* The mirror's counter name from its /metrics lines. */
static double mirror_metric(struct px *px, const char *name)
{
	struct kd_wbuf w = {0};
	double v = -1;
	px_mirror_metrics(px_mirror_of(px), &w);
	kd_w_raw(&w, "", 1);
	char want[128];
	snprintf(want, sizeof(want), "\n%s ", name);
	const char *p = w.p ? strstr((const char *)w.p, want) : NULL;
	if (p)
		v = atof(p + strlen(want));
	kd_wbuf_free(&w);
	return v;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	long n = 200000;
	int size = 100, reps = 3;
	static const struct option opts[] = {{"messages", required_argument, NULL, 'm'},
	                                     {"size", required_argument, NULL, 's'},
	                                     {"reps", required_argument, NULL, 'r'},
	                                     {NULL, 0, NULL, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'm')
			n = atol(optarg);
		else if (c == 's')
			size = atoi(optarg);
		else if (c == 'r')
			reps = atoi(optarg);
		else
			return 2;
	}
	if (n < 1 || size < 0 || reps < 1 || reps > 20)
		return 2;
	char err[512];
	struct px_mock *a = px_mock_new(3, err, sizeof(err));
	struct px_mock *b = px_mock_new(1, err, sizeof(err));
	if (!a || !b || px_mock_topic(a, "bench", PARTS, 0, err, sizeof(err)) ||
	    px_mock_topic(b, "bench", PARTS, 0, err, sizeof(err)))
		die("mock", err);
	char up[256], down[256];
	snprintf(up, sizeof(up), "/tmp/kwire-bench-mirror-up-%d.yaml", (int)getpid());
	snprintf(down, sizeof(down), "/tmp/kwire-bench-mirror-down-%d.yaml", (int)getpid());
	FILE *f = fopen(up, "w");
	fprintf(f, "mirror:\n  - name: b\n    to: {bootstrap: \"%s\", queue_bytes: 256MiB}\n",
	        px_mock_bootstraps(b));
	fclose(f);
	f = fopen(down, "w");
	/* A port nobody listens on (the discard port is not served here). */
	fprintf(f, "mirror:\n  - name: b\n    to: {bootstrap: \"127.0.0.1:9\"}\n");
	fclose(f);

	const char *names[3] = {"no rules", "mirror, B up", "mirror, B down"};
	const char *rules[3] = {NULL, up, down};
	double rate[3][20];
	double mirrored_sum = 0, dropped = 0;
	for (int r = 0; r < reps; r++)
		for (int s = 0; s < 3; s++) {
			struct px *px = kwire_start(a, rules[s]);
			char bs[64];
			snprintf(bs, sizeof(bs), "127.0.0.1:%u", px_listen_port(px));
			rate[s][r] = produce(bs, n, size);
			if (s == 1) {
				/* Not timed: let B acknowledge, to show the mirror worked. */
				double t0 = now_s();
				while (mirror_metric(px, "kwire_mirror_records_mirrored_total") <
				           n &&
				       now_s() - t0 < 60)
					usleep(100000);
				mirrored_sum +=
				    mirror_metric(px, "kwire_mirror_records_mirrored_total");
			}
			if (s == 2)
				dropped += mirror_metric(px, "kwire_mirror_records_dropped_total");
			px_stop(px);
			px_wait(px);
			px_free(&px);
		}
	printf("bench_mirror: %ld records of %d bytes (key, 2 headers) per run, acks=1, %d "
	       "run(s) each, alternated\n",
	       n, size, reps);
	printf("%-16s %14s %14s %10s\n", "setup", "best rec/s", "median rec/s", "vs none");
	double best0 = 0;
	for (int s = 0; s < 3; s++) {
		double v[20];
		memcpy(v, rate[s], sizeof(double) * (size_t)reps);
		qsort(v, (size_t)reps, sizeof(double), cmp);
		double best = v[reps - 1], med = v[reps / 2];
		if (!s)
			best0 = best;
		printf("%-16s %14.0f %14.0f %9.1f%%\n", names[s], best, med, 100.0 * best / best0);
	}
	printf("B acknowledged %.0f of %ld records per mirror run (mean); with B down %.0f "
	       "dropped per run (the rest failed or were queued at stop)\n",
	       mirrored_sum / reps, n, dropped / reps);
	unlink(up);
	unlink(down);
	px_mock_free(&a);
	px_mock_free(&b);
	return 0;
}
