/* bench_records: what `rewrite:` rules on records cost (docs/rules.md).
 *
 *   1. Proxied throughput, side by side in one run, per codec: a librdkafka
 *      producer (JSON values of about 1 KiB, acks=1) through an in-process
 *      kwire in front of librdkafka's mock cluster, then a consumer, with
 *      no rules, with a header injection rule, and with a JSON masking rule
 *      (three fields: a hash, a replacement, a drop). The rules apply to
 *      Produce (the producer's rate) and to Fetch (the consumer's rate).
 *      Each case is the median of --reps runs, interleaved. Besides the
 *      rates, the CPU time kwire's own threads (workers and acceptor) spend
 *      per 100 MB of record values moved, during the produce phase and the
 *      consume phase: steadier than the rates on a shared machine, since
 *      the producer, consumer and mock brokers share the same cores.
 *   2. Where the time goes, per codec: one batch of 500 such records, the
 *      time to decompress it, to compress it, to rewrite a Produce request
 *      holding it with the header rule and with the masking rule as the
 *      proxy does (decode the request, rule_rewrite_tree: decompress,
 *      edit, recompress, CRC, the new request made as it goes), in MB/s of
 *      uncompressed records.
 *
 * Prints figures and asserts nothing (STYLE.md "Tests").
 *   bench_records [--messages N] [--reps N] [--codec C] [--rules none|headers|mask]
 * (--rules: that case alone, without the others: for a profiler.) */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "kd-codec.h"
#include "kd-cur.h"
#include "kd-recedit.h"
#include "kd-records.h"
#include "kd-tree.h"
#include "px-int.h" /* the worker threads, for their CPU time */
#include "px-mock.h"
#include "px.h"
#include "rule.h"

#define PARTS 12

static const char *const codecs[] = {"none", "gzip", "snappy", "lz4", "zstd"};

enum { R_NONE, R_HEADERS, R_MASK, R_N };
static const char *const rule_name[R_N] = {"no rules", "headers", "JSON mask"};

static char keyfile[64];

/* The rules of case r, for Produce and Fetch, in a file; "" for none. */
static void write_rules(int r, char *path, size_t cap)
{
	path[0] = '\0';
	if (r == R_NONE)
		return;
	snprintf(path, cap, "/tmp/kwire-bench-rules-%d.yaml", (int)getpid());
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(1);
	}
	if (r == R_HEADERS)
		fprintf(f,
		        "rewrite:\n"
		        "  - match: {api: [Produce, Fetch]}\n"
		        "    headers:\n"
		        "      add: {x-kwire-client: \"${client_id}\", x-kwire-at: \"${time}\"}\n");
	else
		fprintf(f,
		        "rewrite:\n"
		        "  - match: {api: [Produce, Fetch]}\n"
		        "    mask:\n"
		        "      - {path: user.email, hash: true}\n"
		        "      - {path: card.number, replace: \"***\"}\n"
		        "      - {path: notes, drop: true}\n"
		        "    hash_key_file: %s\n",
		        keyfile);
	fclose(f);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench_records: %s: %s\n", what, msg);
	exit(1);
}

/* A JSON value of about 1 KiB with the fields the masking rule names. */
static size_t json_value(char *buf, size_t cap, long i)
{
	char filler[801];
	for (int k = 0; k < 800; k++)
		filler[k] = (char)('a' + (k * 7 + i) % 26);
	filler[800] = '\0';
	return (size_t)snprintf(
	    buf, cap,
	    "{\"id\":%ld,\"user\":{\"email\":\"user%ld@example.com\","
	    "\"name\":\"User %ld\"},\"card\":{\"number\":\"4111-1111-1111-%04ld\","
	    "\"exp\":\"12/29\"},\"notes\":\"%.40s\",\"payload\":\"%s\"}",
	    i, i, i, i % 10000, filler, filler);
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	if (level <= 3 || getenv("BENCH_RDDEBUG"))
		fprintf(stderr, "bench_records: rdkafka: %s: %s\n", fac, buf);
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *bootstrap, const char **kv,
                          void (*dr)(rd_kafka_t *, const rd_kafka_message_t *, void *),
                          void *opaque)
{
	char errstr[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, quiet_log);
	if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr)))
		die("conf", errstr);
	for (; kv && kv[0]; kv += 2)
		if (rd_kafka_conf_set(conf, kv[0], kv[1], errstr, sizeof(errstr)))
			die(kv[0], errstr);
	if (type == RD_KAFKA_CONSUMER && getenv("BENCH_RDDEBUG"))
		rd_kafka_conf_set(conf, "debug", getenv("BENCH_RDDEBUG"), errstr, sizeof(errstr));
	if (dr)
		rd_kafka_conf_set_dr_msg_cb(conf, dr);
	rd_kafka_conf_set_opaque(conf, opaque);
	rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
	if (!rk)
		die("rd_kafka_new", errstr);
	return rk;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	(void)rk;
	long *st = opaque;
	st[msg->err ? 1 : 0]++;
}

struct tput {
	double prate, crate; /* messages per second */
	double pcpu, ccpu;   /* kwire CPU seconds per 100 MB of values */
	int incomplete;
};

/* CPU seconds used so far by kwire's threads: its workers and acceptor
 * (px-int.h). The producer, consumer and mock brokers are not counted. */
static double px_cpu_s(const struct px *px)
{
	double s = 0;
	for (unsigned i = 0; i <= px->nworkers; i++) {
		pthread_t th = i < px->nworkers ? px->workers[i].thread : px->athread;
		clockid_t cid;
		struct timespec ts;
		if (pthread_getcpuclockid(th, &cid) == 0 && clock_gettime(cid, &ts) == 0)
			s += (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	}
	return s;
}

static void run(const char *codec, int r, long n, struct tput *out)
{
	char err[512], rules[128], bootstrap[64];
	static char vals[64][1200];
	static size_t vlen[64];
	struct px_mock *mock = px_mock_new(3, err, sizeof(err));
	if (!mock || px_mock_topic(mock, "bench", PARTS, 0, err, sizeof(err)))
		die("mock", err);
	for (int k = 0; k < 64; k++)
		vlen[k] = json_value(vals[k], sizeof(vals[k]), k);
	write_rules(r, rules, sizeof(rules));
	struct px_conf conf;
	px_conf_init(&conf);
	snprintf(conf.listen.host, sizeof(conf.listen.host), "127.0.0.1");
	conf.listen.port = 0;
	conf.log_level = getenv("BENCH_LOG") ? atoi(getenv("BENCH_LOG")) : 0;
	if (rules[0])
		conf.rules = strdup(rules);
	if (px_mock_conf_upstream(mock, &conf, err, sizeof(err)))
		die("conf", err);
	struct px *px = px_new(&conf, err, sizeof(err));
	px_conf_free(&conf);
	if (!px || px_start(px, err, sizeof(err)))
		die("px", err);
	snprintf(bootstrap, sizeof(bootstrap), "127.0.0.1:%u", px_listen_port(px));
	for (unsigned i = 0; i < px->nworkers; i++) /* for a profiler: perf --comm */
		pthread_setname_np(px->workers[i].thread, "kwire-worker");

	long st[2] = {0, 0};
	const char *pkv[] = {"acks",
	                     "1",
	                     "linger.ms",
	                     "5",
	                     "batch.size",
	                     "262144",
	                     "compression.codec",
	                     codec,
	                     "queue.buffering.max.messages",
	                     "200000",
	                     NULL};
	rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, bootstrap, pkv, dr_cb, st);
	for (int p = 0; p < PARTS; p++)
		rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("bench"), RD_KAFKA_V_PARTITION(p),
		                  RD_KAFKA_V_VALUE(vals[p], vlen[p]),
		                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
	rd_kafka_flush(rk, 30000);
	long warm = st[0];
	double vbytes = 0;
	for (long i = 0; i < n; i++)
		vbytes += (double)vlen[i & 63];
	double cpu0 = px_cpu_s(px);
	double t0 = now_s();
	for (long i = 0; i < n; i++) {
		while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("bench"),
		                         RD_KAFKA_V_PARTITION((int32_t)(i % PARTS)),
		                         RD_KAFKA_V_VALUE(vals[i & 63], vlen[i & 63]),
		                         RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		                         RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			rd_kafka_poll(rk, 1);
		if ((i & 1023) == 0)
			rd_kafka_poll(rk, 0);
	}
	rd_kafka_flush(rk, 120000);
	double pt = now_s() - t0;
	long produced = st[0] - warm;
	out->prate = (double)produced / pt;
	out->pcpu = (px_cpu_s(px) - cpu0) / (vbytes / 1e8);
	rd_kafka_destroy(rk);

	const char *ckv[] = {
	    "group.id", "bench", "enable.auto.commit", "false", "fetch.wait.max.ms", "100", NULL};
	rk = client(RD_KAFKA_CONSUMER, bootstrap, ckv, NULL, NULL);
	rd_kafka_poll_set_consumer(rk);
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(PARTS);
	for (int p = 0; p < PARTS; p++)
		rd_kafka_topic_partition_list_add(parts, "bench", p)->offset = 0;
	rd_kafka_assign(rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	long got = 0;
	double first = 0;
	cpu0 = px_cpu_s(px);
	t0 = now_s();
	while (got < produced + warm && now_s() - t0 < 60) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
		if (!m)
			continue;
		if (!m->err && got++ == 0)
			first = now_s();
		rd_kafka_message_destroy(m);
	}
	out->crate = got > 1 ? (double)(got - 1) / (now_s() - first) : 0;
	/* The consumer fetched the warm-up records too. */
	for (long i = 0; i < warm && i < PARTS; i++)
		vbytes += (double)vlen[i];
	out->ccpu = (px_cpu_s(px) - cpu0) / (vbytes / 1e8);
	out->incomplete = produced != n || got < produced + warm;
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	px_stop(px);
	px_wait(px);
	px_free(&px);
	px_mock_free(&mock);
	if (rules[0])
		unlink(rules);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* ---- part 2: one batch, where the time goes ---- */

struct medit {
	int mask;
	const struct rule_set *rs;
};

static double time_it(double min_s, int (*fn)(void *), void *arg, long *iters)
{
	double t0 = now_s(), t;
	long n = 0;
	do {
		if (fn(arg) != 0)
			die("micro", "failed");
		n++;
	} while ((t = now_s() - t0) < min_s);
	*iters = n;
	return t / (double)n;
}

struct micro {
	int codec;
	struct kd_wbuf batch, out;
	size_t raw_len;
	const uint8_t *raw;
	struct rule_set *rs;
	struct kd_tree tree;
	struct kd_arena arena;
	struct kd_wbuf req; /* a Produce v3 body around the batch */
	struct rule_rewriter rw;
};

static int m_decompress(void *arg)
{
	struct micro *m = arg;
	struct kd_rec_iter it;
	struct kd_batch *b;
	kd_rec_iter_init(&it, m->batch.p, m->batch.len, NULL);
	int rc = kd_rec_next_batch(&it, &b) == 1 ? 0 : -1;
	kd_rec_iter_free(&it);
	return rc;
}

static int m_compress(void *arg)
{
	struct micro *m = arg;
	m->out.len = 0;
	if (m->codec == KD_CODEC_NONE)
		return 0;
	return kd_compress(m->codec, m->raw, m->raw_len, NULL, &m->out) == KD_OK ? 0 : -1;
}

/* The Produce request v3 body around the batch (m->req), decoded, and
 * rewritten under rs, with the buffers reused as a proxy worker does. */
static int m_rewrite(void *arg)
{
	struct micro *m = arg;
	kd_arena_reset(&m->arena);
	int rc = kd_tree_decode(&m->tree, &m->arena, 0, 3, 1, m->req.p, m->req.len);
	struct rule_req rr = {.api_key = 0,
	                      .api_version = 3,
	                      .have_body = 1,
	                      .acks = 1,
	                      .client_id = {(const uint8_t *)"bench", 5, 0}};
	struct rule_rw_ctx ctx = {.client_id = rr.client_id, .instance = "bench", .now_ms = 1};
	struct rule_rw_out res;
	/* As the proxy does: the new request made in a buffer as the records
	 * are rewritten (px_records_produce, px_judge). */
	m->out.len = 0;
	m->rw.defer = 1;
	m->rw.dest = &m->out;
	if (rc == KD_OK)
		rc = rule_rewrite_tree(&m->rw, m->rs, RULE_RW_PRODUCE, &m->tree, &rr, NULL, &ctx,
		                       &res);
	if (rc == KD_OK && res.changed != 1)
		rc = -1;
	if (rc == KD_OK)
		rc = rule_rewrite_encode(&m->rw, &m->tree, &m->out);
	m->rw.dest = NULL;
	return rc == KD_OK ? 0 : -1;
}

static void micro(int codec)
{
	struct micro m = {.codec = codec};
	static char vals[500][1200];
	struct kd_wrecord recs[500];
	size_t total = 0;
	for (int i = 0; i < 500; i++) {
		size_t n = json_value(vals[i], sizeof(vals[i]), i);
		recs[i] = (struct kd_wrecord){.timestamp = 1000 + i,
		                              .value = {(const uint8_t *)vals[i], (uint32_t)n, 0}};
		total += n;
	}
	struct kd_batch_spec spec = {.magic = 2,
	                             .codec = (uint8_t)codec,
	                             .producer_id = -1,
	                             .producer_epoch = -1,
	                             .base_sequence = -1};
	if (kd_batch_write(&m.batch, &spec, recs, 500) != KD_OK)
		die("micro", "batch");
	struct kd_wbuf plain = {0};
	spec.codec = KD_CODEC_NONE;
	kd_batch_write(&plain, &spec, recs, 500);
	m.raw = plain.p + 61;
	m.raw_len = plain.len - 61;
	kd_w_i16(&m.req, -1); /* TransactionalId */
	kd_w_i16(&m.req, 1);
	kd_w_i32(&m.req, 30000);
	kd_w_i32(&m.req, 1);
	kd_w_i16(&m.req, 5);
	kd_w_raw(&m.req, "bench", 5);
	kd_w_i32(&m.req, 1);
	kd_w_i32(&m.req, 0);
	kd_w_i32(&m.req, (int32_t)m.batch.len);
	kd_w_raw(&m.req, m.batch.p, m.batch.len);
	double t[4];
	long it;
	t[0] = time_it(0.3, m_decompress, &m, &it);
	t[1] = time_it(0.3, m_compress, &m, &it);
	char err[512], path[128];
	for (int r = R_HEADERS; r <= R_MASK; r++) {
		write_rules(r, path, sizeof(path));
		m.rs = rule_set_load(path, err, sizeof(err));
		if (!m.rs)
			die("rules", err);
		unlink(path);
		t[1 + r] = time_it(0.3, m_rewrite, &m, &it);
		rule_set_unref(&m.rs);
	}
	double mb = (double)m.raw_len / 1e6;
	printf("  %-7s %9.0f %9.0f %9.0f %9.0f   (batch: %zu -> %zu bytes)\n", codecs[codec],
	       mb / t[0], codec ? mb / t[1] : 0.0, mb / t[2], mb / t[3], m.raw_len, m.batch.len);
	(void)total;
	kd_wbuf_free(&m.batch);
	kd_wbuf_free(&m.out);
	kd_wbuf_free(&m.req);
	kd_arena_free(&m.arena);
	kd_wbuf_free(&plain);
	rule_rewriter_free(&m.rw);
}

int main(int argc, char **argv)
{
	long n = 30000;
	int reps = 3;
	int only = -1, only_r = -1;
	static const struct option lo[] = {{"messages", required_argument, NULL, 'm'},
	                                   {"reps", required_argument, NULL, 'r'},
	                                   {"codec", required_argument, NULL, 'c'},
	                                   {"rules", required_argument, NULL, 'R'},
	                                   {NULL, 0, NULL, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "m:r:c:R:", lo, NULL)) != -1) {
		if (c == 'm')
			n = atol(optarg);
		else if (c == 'r')
			reps = atoi(optarg);
		else if (c == 'c') {
			for (int k = 0; k < 5; k++)
				if (!strcmp(optarg, codecs[k]))
					only = k;
		} else if (c == 'R' && (!strcmp(optarg, "none") || !strcmp(optarg, "headers") ||
		                        !strcmp(optarg, "mask"))) {
			only_r = !strcmp(optarg, "none")      ? R_NONE
			         : !strcmp(optarg, "headers") ? R_HEADERS
			                                      : R_MASK;
		} else {
			fprintf(stderr,
			        "usage: bench_records [--messages N] [--reps N] [--codec C] "
			        "[--rules none|headers|mask]\n");
			return 2;
		}
	}
	if (reps < 1 || reps > 15)
		reps = 3;
	snprintf(keyfile, sizeof(keyfile), "/tmp/kwire-bench-key-%d", (int)getpid());
	FILE *kf = fopen(keyfile, "w");
	if (!kf)
		die(keyfile, "cannot write");
	fputs("bench-hmac-key-0123456789abcdef\n", kf);
	fclose(kf);

	printf("bench_records: librdkafka %s, %ld JSON messages of about 1 KiB per run, "
	       "median of %d runs\n",
	       rd_kafka_version_str(), n, reps);
	printf("Proxied throughput through kwire, msgs/s (%% of no rules), and the CPU time\n"
	       "kwire's threads spent per 100 MB of values (ms; + what rules add to it):\n");
	printf("  %-7s %-10s %12s %8s %12s %8s %14s %14s\n", "codec", "rules", "produce", "",
	       "consume", "", "CPU produce", "CPU consume");
	for (int k = 0; k < 5; k++) {
		if ((only >= 0 && k != only) || !kd_codec_available(k))
			continue;
		double p[R_N][15], q[R_N][15], pc[R_N][15], qc[R_N][15];
		int incomplete[R_N] = {0};
		for (int rep = 0; rep < reps; rep++)
			for (int r = 0; r < R_N; r++) {
				struct tput t = {0};
				if (only_r >= 0 && r != only_r)
					continue;
				run(codecs[k], r, n, &t);
				p[r][rep] = t.prate;
				q[r][rep] = t.crate;
				pc[r][rep] = t.pcpu;
				qc[r][rep] = t.ccpu;
				incomplete[r] |= t.incomplete;
			}
		double base_p = 0, base_q = 0, base_pc = 0, base_qc = 0;
		for (int r = 0; r < R_N; r++) {
			qsort(p[r], (size_t)reps, sizeof(double), cmp_double);
			qsort(q[r], (size_t)reps, sizeof(double), cmp_double);
			qsort(pc[r], (size_t)reps, sizeof(double), cmp_double);
			qsort(qc[r], (size_t)reps, sizeof(double), cmp_double);
			if (only_r >= 0 && r != only_r)
				continue;
			double mp = p[r][reps / 2], mq = q[r][reps / 2];
			double mpc = 1e3 * pc[r][reps / 2], mqc = 1e3 * qc[r][reps / 2];
			if (r == R_NONE || only_r >= 0) {
				base_p = mp;
				base_q = mq;
				base_pc = mpc;
				base_qc = mqc;
			}
			printf("  %-7s %-10s %12.0f %7.0f%% %12.0f %7.0f%% %6.0f (%+5.0f) %6.0f "
			       "(%+5.0f)%s\n",
			       codecs[k], rule_name[r], mp, 100 * mp / base_p, mq,
			       100 * mq / base_q, mpc, mpc - base_pc, mqc, mqc - base_qc,
			       incomplete[r] ? "  (incomplete run)" : "");
		}
	}
	if (only_r >= 0)
		goto out;
	printf("Where the time goes: one batch of 500 records, MB/s of uncompressed records:\n");
	printf("  %-7s %9s %9s %9s %9s\n", "codec", "decomp", "comp", "headers", "mask");
	for (int k = 0; k < 5; k++)
		if ((only < 0 || k == only) && kd_codec_available(k))
			micro(k);
out:
	unlink(keyfile);
	return 0;
}
