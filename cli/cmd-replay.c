/* cmd-replay.c: `kwire replay CAPTURE --to BOOTSTRAP` (cli/help/replay.txt,
 * docs/analyzer.md "Replay").
 *
 * The capture is read by the analyzer (capture/, the records format with
 * cap_an_opts.on_record): it pairs each Produce request with its response
 * and holds transactional records until their transaction's end, exactly
 * as `kwire decode --format records` does. Each record it hands over is
 * paced by its request's capture time and produced with px_ksink, the
 * librdkafka sink of the proxy's mirror. The sink never blocks; when its
 * budget is full, replay waits for deliveries instead of dropping (replay
 * is not a forwarding path: every record should arrive). */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cap-analyze.h"
#include "cap.h"
#include "cmd.h"
#include "kd-records.h"
#include "kw-help-gen.h"
#include "px-ksink.h"

#define RP_MAP_MAX 256
#define RP_PROPS_MAX 64

struct rp_map {
	const char *from, *to;
};

struct rp {
	struct px_ksink *ks;
	double speed; /* 0: as fast as possible */
	int by_key;
	struct rp_map map[RP_MAP_MAX];
	unsigned nmap;
	int progress;
	int have_t0;
	int64_t t0_cap;
	uint64_t t0_wall;
	uint64_t last_prog;
	char topic[256];
	struct px_ksink_header *hdrs;
	unsigned hcap;
	/* counts */
	uint64_t seen, produced, refused;
	uint64_t skip_error, skip_noresp, skip_aborted, skip_notopic, open_txn;
	_Atomic uint64_t delivered, failed;
	pthread_mutex_t mu; /* first_err */
	char first_err[256];
};

static volatile sig_atomic_t rp_stop;
static struct cap_source *volatile rp_src;

static void rp_on_signal(int sig)
{
	(void)sig;
	rp_stop = 1;
	if (rp_src)
		cap_source_break(rp_src);
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_us(uint64_t us)
{
	struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000};
	while (nanosleep(&ts, &ts) && errno == EINTR && !rp_stop)
		;
}

static void rp_delivery(void *arg, const struct px_ksink_report *rep)
{
	struct rp *rp = arg;
	if (!rep->err) {
		atomic_fetch_add(&rp->delivered, 1);
		return;
	}
	atomic_fetch_add(&rp->failed, 1);
	pthread_mutex_lock(&rp->mu);
	if (!rp->first_err[0])
		snprintf(rp->first_err, sizeof(rp->first_err), "%s [%d]: %s",
		         rep->topic ? rep->topic : "?", rep->partition,
		         rep->errstr ? rep->errstr : "error");
	pthread_mutex_unlock(&rp->mu);
}

static void rp_log(void *arg, int level, const char *msg)
{
	(void)arg;
	if (level <= 1)
		fprintf(stderr, "kwire replay: %s\n", msg);
}

static void rp_progress(struct rp *rp, int final)
{
	if (!rp->progress)
		return;
	uint64_t now = mono_us();
	if (!final && now - rp->last_prog < 200000)
		return;
	rp->last_prog = now;
	printf("\r%llu records produced, %llu delivered, %llu failed%s",
	       (unsigned long long)rp->produced, (unsigned long long)atomic_load(&rp->delivered),
	       (unsigned long long)atomic_load(&rp->failed), final ? "\n" : "");
	fflush(stdout);
}

/* The target topic of a captured one, NUL-terminated in rp->topic. */
static const char *rp_topic(struct rp *rp, struct kd_view t)
{
	for (unsigned i = 0; i < rp->nmap; i++)
		if (strlen(rp->map[i].from) == t.len && !memcmp(rp->map[i].from, t.p, t.len))
			return rp->map[i].to;
	if (t.len >= sizeof(rp->topic))
		return NULL;
	memcpy(rp->topic, t.p, t.len);
	rp->topic[t.len] = 0;
	return rp->topic;
}

static void rp_record(void *arg, const struct cap_an_record *r)
{
	struct rp *rp = arg;
	const struct kd_record *rec = r->rec;
	if (rp_stop)
		return;
	rp->seen++;
	if (r->acked == 0) {
		rp->skip_error++;
		return;
	}
	if (r->acked < 0 && r->acks != 0) {
		rp->skip_noresp++;
		return;
	}
	if (r->aborted == 1) {
		rp->skip_aborted++;
		return;
	}
	const char *topic = r->topic.null ? NULL : rp_topic(rp, r->topic);
	if (!topic || !topic[0]) {
		rp->skip_notopic++;
		return;
	}
	if (r->transactional && r->aborted < 0)
		rp->open_txn++;
	/* Timing: each record waits until its request's offset from the first
	 * one, divided by the speed, has passed. */
	if (rp->speed > 0) {
		uint64_t now = mono_us();
		if (!rp->have_t0) {
			rp->have_t0 = 1;
			rp->t0_cap = r->ts_us;
			rp->t0_wall = now;
		}
		int64_t d = r->ts_us - rp->t0_cap;
		if (d > 0) {
			uint64_t due = rp->t0_wall + (uint64_t)((double)d / rp->speed);
			if (due > now)
				sleep_us(due - now);
		}
	}
	unsigned nh = 0;
	if (rec->magic == 2 && rec->header_count > 0) {
		if ((unsigned)rec->header_count > rp->hcap) {
			struct px_ksink_header *h =
			    realloc(rp->hdrs, (size_t)rec->header_count * sizeof(*h));
			if (!h) {
				rp->refused++;
				return;
			}
			rp->hdrs = h;
			rp->hcap = (unsigned)rec->header_count;
		}
		struct kd_rec_hdr_iter hi;
		struct kd_header h;
		kd_rec_headers_init(&hi, rec);
		while (nh < rp->hcap && kd_rec_next_header(&hi, &h) == 1) {
			rp->hdrs[nh].name = (const char *)h.key.p;
			rp->hdrs[nh].name_len = h.key.len;
			rp->hdrs[nh].value = h.value.null ? NULL : h.value.p;
			rp->hdrs[nh].value_len = h.value.null ? 0 : h.value.len;
			nh++;
		}
	}
	int64_t ts = rec->timestamp > 0 ? rec->timestamp : 0;
	for (;;) {
		int rc = px_ksink_produce(rp->ks, topic, rp->by_key ? -1 : r->partition,
		                          rec->key.null ? NULL : rec->key.p, rec->key.len,
		                          rec->value.null ? NULL : rec->value.p, rec->value.len,
		                          rp->hdrs, nh, ts, NULL);
		if (rc == PX_KSINK_QUEUED) {
			rp->produced++;
			break;
		}
		/* The budget is full: wait for deliveries, unless nothing is in
		 * flight (then the message itself was refused). */
		struct px_ksink_stats st;
		px_ksink_stats(rp->ks, &st);
		if (!st.queue_bytes || rp_stop) {
			rp->refused++;
			break;
		}
		sleep_us(1000);
	}
	rp_progress(rp, 0);
}

/* "1x", "2x", "0.5x", "max" -> speed (0: max). */
static int parse_speed(const char *s, double *out)
{
	if (!strcmp(s, "max")) {
		*out = 0;
		return 0;
	}
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || (*end && strcmp(end, "x")) || !(v > 0) || v > 1e6)
		return -1;
	*out = v;
	return 0;
}

enum {
	OPT_TO = 256,
	OPT_TOPIC_MAP,
	OPT_SPEED,
	OPT_PARTITION,
	OPT_TOPIC,
	OPT_TIMEOUT,
};

int cmd_replay(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"to", required_argument, NULL, OPT_TO},
	    {"topic-map", required_argument, NULL, OPT_TOPIC_MAP},
	    {"speed", required_argument, NULL, OPT_SPEED},
	    {"partition", required_argument, NULL, OPT_PARTITION},
	    {"topic", required_argument, NULL, OPT_TOPIC},
	    {"property", required_argument, NULL, 'X'},
	    {"timeout", required_argument, NULL, OPT_TIMEOUT},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static struct rp rp; /* large; one per process */
	const char *to = NULL, *topic_glob = NULL;
	const char *props[2 * RP_PROPS_MAX + 5];
	unsigned nprops = 0;
	unsigned long timeout = 30000;
	int quiet = 0, c, status = 0;
	char err[512], tmo[32];
	memset(&rp, 0, sizeof(rp));
	rp.speed = 1;
	pthread_mutex_init(&rp.mu, NULL);
	optind = 1;
	while ((c = getopt_long(argc, argv, "X:qh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_TO:
			to = optarg;
			break;
		case OPT_TOPIC_MAP: {
			char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg || !eq[1]) {
				fprintf(stderr,
				        "kwire replay: --topic-map: expected FROM=TO, not '%s'\n",
				        optarg);
				return 2;
			}
			if (rp.nmap == RP_MAP_MAX) {
				fprintf(stderr, "kwire replay: --topic-map: at most %d\n",
				        RP_MAP_MAX);
				return 2;
			}
			*eq = 0;
			rp.map[rp.nmap++] = (struct rp_map){optarg, eq + 1};
			break;
		}
		case OPT_SPEED:
			if (parse_speed(optarg, &rp.speed)) {
				fprintf(
				    stderr,
				    "kwire replay: --speed: '%s' is not 1x, 2x, 0.5x... or max\n",
				    optarg);
				return 2;
			}
			break;
		case OPT_PARTITION:
			if (!strcmp(optarg, "same"))
				rp.by_key = 0;
			else if (!strcmp(optarg, "key"))
				rp.by_key = 1;
			else {
				fprintf(stderr,
				        "kwire replay: --partition: same or key, not '%s'\n",
				        optarg);
				return 2;
			}
			break;
		case OPT_TOPIC:
			topic_glob = optarg;
			break;
		case 'X': {
			char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg) {
				fprintf(stderr, "kwire replay: -X: expected KEY=VALUE, not '%s'\n",
				        optarg);
				return 2;
			}
			if (nprops == RP_PROPS_MAX) {
				fprintf(stderr, "kwire replay: -X: at most %d\n", RP_PROPS_MAX);
				return 2;
			}
			*eq = 0;
			props[2 * nprops] = optarg;
			props[2 * nprops + 1] = eq + 1;
			nprops++;
			break;
		}
		case OPT_TIMEOUT: {
			char *end;
			errno = 0;
			timeout = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || !timeout || timeout > 3600000) {
				fprintf(stderr,
				        "kwire replay: --timeout: '%s' is not 1..3600000 ms\n",
				        optarg);
				return 2;
			}
			break;
		}
		case 'q':
			quiet = 1;
			break;
		case 'h':
			fputs(kw_help_replay, stdout);
			return 0;
		default:
			fputs(kw_help_replay, stderr);
			return 2;
		}
	}
	if (optind != argc - 1 || !to) {
		fprintf(stderr, "kwire replay: give one capture file and --to BOOTSTRAP\n\n");
		fputs(kw_help_replay, stderr);
		return 2;
	}
	/* kwire's defaults first, so that -X wins (px_ksink applies in order). */
	const char *all[2 * RP_PROPS_MAX + 9];
	unsigned n = 0;
	snprintf(tmo, sizeof(tmo), "%lu", timeout);
	all[n++] = "message.timeout.ms";
	all[n++] = tmo;
	/* In order, once: a retried batch must not overtake the next one. */
	all[n++] = "enable.idempotence";
	all[n++] = "true";
	if (rp.by_key) {
		all[n++] = "partitioner";
		all[n++] = "murmur2_random";
	}
	for (unsigned i = 0; i < 2 * nprops; i++)
		all[n++] = props[i];
	all[n] = NULL;

	struct cap_source *src = NULL;
	if (cap_source_open(&src, argv[optind], err, sizeof(err)) < 0) {
		fprintf(stderr, "kwire replay: %s\n", err);
		return 1;
	}
	struct px_ksink_conf kc = {
	    .name = "replay",
	    .bootstrap = to,
	    .props = all,
	    .max_queue_bytes = 64u << 20,
	    .flush_timeout_ms = (unsigned)timeout,
	    .on_delivery = rp_delivery,
	    .delivery_arg = &rp,
	    .log = rp_log,
	};
	rp.ks = px_ksink_new(&kc, err, sizeof(err));
	if (!rp.ks) {
		fprintf(stderr, "kwire replay: %s\n", err);
		cap_source_close(&src);
		return 1;
	}
	rp.progress = isatty(1);

	struct cap_an_opts ao;
	memset(&ao, 0, sizeof(ao));
	ao.format = CAP_AN_RECORDS;
	ao.topic_glob = topic_glob;
	ao.on_record = rp_record;
	ao.record_arg = &rp;
	ao.title = argv[optind];
	FILE *devnull = fopen("/dev/null", "w");
	struct cap_an *an = devnull ? cap_an_new(&ao, devnull, err, sizeof(err)) : NULL;
	struct cap_tcp_cbs cbs;
	struct cap_tcp *tcp = NULL;
	if (an) {
		cap_an_callbacks(an, &cbs);
		tcp = cap_tcp_new(NULL, &cbs);
	}
	if (!tcp) {
		fprintf(stderr, "kwire replay: %s\n", an ? "out of memory" : err);
		status = 1;
		goto out;
	}
	struct sigaction sa, old_int, old_term;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = rp_on_signal;
	rp_src = src;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	struct cap_pkt pkt;
	int rc;
	while ((rc = cap_source_next(src, &pkt)) == 1 && !rp_stop)
		cap_tcp_packet(tcp, &pkt);
	if (rc < 0) {
		fprintf(stderr, "kwire replay: read error: %s\n", cap_source_error(src));
		status = 1;
	}
	cap_tcp_flush(tcp);
	cap_an_finish(an, cap_tcp_stats(tcp));
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	rp_src = NULL;
	if (rp_stop)
		fprintf(stderr, "kwire replay: interrupted: waiting for what was produced\n");
out:
	cap_tcp_free(&tcp);
	cap_an_free(&an);
	if (devnull)
		fclose(devnull);
	cap_source_close(&src);
	px_ksink_free(&rp.ks); /* waits up to --timeout for the deliveries */
	uint64_t delivered = atomic_load(&rp.delivered);
	uint64_t failed = rp.produced - (delivered < rp.produced ? delivered : rp.produced);
	rp_progress(&rp, 1);
	if (!quiet) {
		printf("kwire replay: %llu record(s) replayed: %llu delivered, %llu failed",
		       (unsigned long long)rp.produced, (unsigned long long)delivered,
		       (unsigned long long)(failed + rp.refused));
		printf("; skipped: %llu answered with an error, %llu without a response in the "
		       "capture, %llu of aborted transactions, %llu of unknown topics\n",
		       (unsigned long long)rp.skip_error, (unsigned long long)rp.skip_noresp,
		       (unsigned long long)rp.skip_aborted, (unsigned long long)rp.skip_notopic);
		if (rp.open_txn)
			printf("kwire replay: %llu record(s) of transactions whose end the capture "
			       "does not show were replayed\n",
			       (unsigned long long)rp.open_txn);
	}
	if (rp.first_err[0])
		fprintf(stderr, "kwire replay: first failure: %s\n", rp.first_err);
	if (failed || rp.refused)
		status = 1;
	free(rp.hdrs);
	pthread_mutex_destroy(&rp.mu);
	return status;
}
