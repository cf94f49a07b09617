/* bench_proxy: what kwire costs, measured against librdkafka's mock cluster.
 *
 *   1. Throughput: a librdkafka producer (1 KiB messages, acks=1) then a
 *      consumer, direct to the cluster, through kwire with the access log
 *      off, with it on (text, to a file), with the access log off and a
 *      rewrite rule that maps every name of the clients (prefix "t.": the
 *      cluster holds t.bench, the clients name bench; every request and
 *      response is mapped), and through kwire (log off) with a rules file
 *      of 100 access rules that need only headers (client_id globs), and
 *      of 100 with topic matchers (topic globs, for any API); none matches
 *      the benchmark's traffic, so every request is judged and forwarded.
 *      MB/s and msgs/s each. Run on
 *      both peers (docs/peers.md) and printed side by side: the linked
 *      librdkafka (Debian's 2.0.2: Produce v7 / Fetch v11), then this
 *      program again as a child with LD_LIBRARY_PATH at librdkafka 2.12.0
 *      (mock cluster and clients: Produce v10 / Fetch v16). The API
 *      versions shown are read back from the access log of the log-on run.
 *   2. Latency: one message in flight at a time (produce, wait for the
 *      delivery report), and one raw ApiVersions request at a time on one
 *      socket; p50/p99 direct and through kwire.
 *   3. Memory: a `kwire proxy` child process with N idle client connections
 *      (each with its upstream connection open), resident memory per
 *      connection.
 *
 * Prints figures side by side and asserts nothing (STYLE.md "Tests").
 *   bench_proxy [--messages N] [--pings N] [--idle N] [--reps N] [--kwire PATH]
 *               [--modern-lib DIR | --no-modern] [--throughput-only] [--via N]
 *               [--produce-only]
 * The kwire binary defaults to ../kwire next to this executable; DIR to the
 * librdkafka 2.12.0 that tools/install-rdkafka-modern.sh builds.
 * --via N (0 direct, 1 kwire, 2 kwire with the log, 3 names, 4 header
 * rules, 5 topic rules) measures that case alone, for a profiler
 * (`perf record -g bench_proxy --throughput-only --via 5`).
 * --throughput-only runs part 1 on the linked library alone and prints it in
 * a line format the parent reads (PEER and TPUT lines), and, PCPU lines,
 * the CPU seconds of the whole process (clients, mock brokers and kwire)
 * per 100 MB produced. --produce-only leaves out the consumers, so that
 * --messages can be larger (a longer, steadier produce phase). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "kd-cur.h"
#include "kd-hdr.h"
#include "px-log.h"
#include "px-mock.h"
#include "px.h"

#define MSG_SIZE 1024
/* librdkafka's mock broker keeps only the last few MB of each partition
 * (older batches are evicted, and a consumer starting at offset 0 gets
 * OFFSET_OUT_OF_RANGE): spread the data so that none is evicted. */
#define BENCH_PARTS 12

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench_proxy: %s: %s\n", what, msg);
	exit(1);
}

/* ---- a cluster, optionally behind an in-process kwire ---- */

enum {
	VIA_DIRECT,
	VIA_KWIRE,
	VIA_KWIRE_LOG,
	VIA_KWIRE_NAMES,
	VIA_RULES_HDR,
	VIA_RULES_TOPIC,
	VIA_N
};
static const char *via_name[] = {"direct",        "kwire (log off)",  "kwire (log on)",
                                 "kwire (names)", "100 header rules", "100 topic rules"};
/* VIA_KWIRE_NAMES: the clients' names, mapped by this rules file. */
#define NAMES_RULES "rewrite:\n  - match: {client_id: \"tenant-*\"}\n    prefix: t.\n"
#define NAMES_CLIENT "tenant-bench"

struct setup {
	struct px_mock *mock;
	struct px *px;
	struct px_observer obs;
	char logpath[64];
	char rulespath[64];
	char bootstrap[300];
};

/* A rules file of 100 deny rules: on client ids (headers only), or on
 * topics (every API that names topics is judged on its body). */
static void write_rules(const char *path, int topic)
{
	FILE *f = fopen(path, "w");
	if (!f)
		die("rules", strerror(errno));
	fprintf(f, "access:\n");
	for (int i = 0; i < 100; i++)
		fprintf(f, "  - name: r%d\n    match: {%s: \"%s-%d-*\"}\n    deny: true\n", i,
		        topic ? "topic" : "client_id", topic ? "secret" : "batch", i);
	fclose(f);
}

static void setup_start(struct setup *s, int via, const char *topic, int parts)
{
	char err[512];
	memset(s, 0, sizeof(*s));
	char cluster_topic[128];
	snprintf(cluster_topic, sizeof(cluster_topic), "%s%s", via == VIA_KWIRE_NAMES ? "t." : "",
	         topic);
	s->mock = px_mock_new(3, err, sizeof(err));
	if (!s->mock || px_mock_topic(s->mock, cluster_topic, parts, 0, err, sizeof(err)))
		die("mock", err);
	if (via == VIA_DIRECT) {
		snprintf(s->bootstrap, sizeof(s->bootstrap), "%s", px_mock_bootstraps(s->mock));
		return;
	}
	struct px_conf conf;
	px_conf_init(&conf);
	snprintf(conf.listen.host, sizeof(conf.listen.host), "127.0.0.1");
	conf.listen.port = 0;
	conf.log_level = 0;
	if (via == VIA_RULES_HDR || via == VIA_RULES_TOPIC) {
		snprintf(s->rulespath, sizeof(s->rulespath), "/tmp/kwire-bench-rules-%d.yaml",
		         (int)getpid());
		write_rules(s->rulespath, via == VIA_RULES_TOPIC);
		conf.rules = strdup(s->rulespath);
	}
	if (px_mock_conf_upstream(s->mock, &conf, err, sizeof(err)))
		die("conf", err);
	if (via == VIA_KWIRE_NAMES) {
		snprintf(s->rulespath, sizeof(s->rulespath), "/tmp/kwire-bench-%d.yaml",
		         (int)getpid());
		FILE *f = fopen(s->rulespath, "w");
		if (!f || fputs(NAMES_RULES, f) < 0 || fclose(f))
			die("rules", s->rulespath);
		conf.rules = strdup(s->rulespath);
	}
	s->px = px_new(&conf, err, sizeof(err));
	px_conf_free(&conf);
	if (!s->px)
		die("px_new", err);
	s->obs.px = s->px;
	if (via == VIA_KWIRE_LOG) {
		snprintf(s->logpath, sizeof(s->logpath), "/tmp/kwire-bench-%d.log", (int)getpid());
		s->obs.log = px_log_new(s->logpath, PX_LOGF_TEXT, 0, err, sizeof(err));
		if (!s->obs.log)
			die("log", err);
	}
	struct px_hooks hooks;
	px_observer_hooks(&s->obs, &hooks);
	px_set_hooks(s->px, &hooks);
	if (px_start(s->px, err, sizeof(err)))
		die("px_start", err);
	snprintf(s->bootstrap, sizeof(s->bootstrap), "127.0.0.1:%u", px_listen_port(s->px));
}

/* Highest Produce and Fetch versions in a text access log ("Produce v10"). */
static void log_versions(const char *path, int *produce_v, int *fetch_v)
{
	char line[4096];
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		const char *p;
		int v;
		if ((p = strstr(line, " Produce v")) && sscanf(p, " Produce v%d", &v) == 1 &&
		    v > *produce_v)
			*produce_v = v;
		if ((p = strstr(line, " Fetch v")) && sscanf(p, " Fetch v%d", &v) == 1 &&
		    v > *fetch_v)
			*fetch_v = v;
	}
	fclose(f);
}

/* API versions seen in the access log of the last log-on run. */
static int seen_produce_v = -1, seen_fetch_v = -1;

static void setup_stop(struct setup *s)
{
	if (s->px) {
		px_stop(s->px);
		px_wait(s->px);
		px_free(&s->px);
	}
	px_observe_stop(&s->obs);
	if (s->logpath[0]) {
		log_versions(s->logpath, &seen_produce_v, &seen_fetch_v);
		unlink(s->logpath);
	}
	if (s->rulespath[0])
		unlink(s->rulespath);
	px_mock_free(&s->mock);
}

/* ---- librdkafka clients ---- */

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	if (level <= 3)
		fprintf(stderr, "bench_proxy: rdkafka: %s: %s\n", fac, buf);
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
	if (dr)
		rd_kafka_conf_set_dr_msg_cb(conf, dr);
	rd_kafka_conf_set_opaque(conf, opaque);
	rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
	if (!rk)
		die("rd_kafka_new", errstr);
	return rk;
}

struct dr_state {
	long ok, failed;
	int done; /* ping-pong: the last message was reported */
};

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	struct dr_state *st = opaque;
	if (msg->err)
		st->failed++;
	else
		st->ok++;
	st->done = 1;
}

struct tput {
	double prod_s, cons_s;
	double prod_cpu; /* CPU seconds of this whole process while producing */
	long produced, consumed;
};

/* --produce-only: no consumer (longer produce runs: the mock broker
 * evicts what a consumer would need beyond about 30000 messages). */
static int produce_only;

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void run_throughput(int via, long n, struct tput *out)
{
	static char payload[MSG_SIZE];
	struct setup s;
	struct dr_state st = {0};
	memset(payload, 'k', sizeof(payload));
	setup_start(&s, via, "bench", BENCH_PARTS);

	/* batch.size below max.partition.fetch.bytes: librdkafka's mock broker
	 * hands out whole stored batches, and a consumer stalls on batches
	 * bigger than its partition fetch size. */
	const char *cid = via == VIA_KWIRE_NAMES ? NAMES_CLIENT : "rdkafka";
	const char *pkv[] = {
	    "acks",   "1",          "linger.ms", "5",         "queue.buffering.max.messages",
	    "200000", "batch.size", "262144",    "client.id", cid,
	    NULL};
	rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, s.bootstrap, pkv, dr_cb, &st);
	/* Warm-up: one message per partition, so that metadata and every
	 * broker connection are in place before the clock starts. */
	for (int p = 0; p < BENCH_PARTS; p++)
		rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("bench"), RD_KAFKA_V_PARTITION(p),
		                  RD_KAFKA_V_VALUE(payload, sizeof(payload)),
		                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
	rd_kafka_flush(rk, 30000);
	long warm = st.ok;
	double t0 = now_s(), c0 = cpu_s();
	for (long i = 0; i < n; i++) {
		while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("bench"),
		                         RD_KAFKA_V_PARTITION((int32_t)(i % BENCH_PARTS)),
		                         RD_KAFKA_V_VALUE(payload, sizeof(payload)),
		                         RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		                         RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			rd_kafka_poll(rk, 1);
		if ((i & 1023) == 0)
			rd_kafka_poll(rk, 0);
	}
	rd_kafka_flush(rk, 120000);
	out->prod_s = now_s() - t0;
	out->prod_cpu = cpu_s() - c0;
	out->produced = st.ok - warm;
	rd_kafka_destroy(rk);
	if (produce_only) {
		out->consumed = out->produced;
		out->cons_s = 1;
		setup_stop(&s);
		return;
	}

	const char *ckv[] = {"group.id",
	                     "bench",
	                     "enable.auto.commit",
	                     "false",
	                     "fetch.wait.max.ms",
	                     "100",
	                     "client.id",
	                     cid,
	                     NULL};
	rk = client(RD_KAFKA_CONSUMER, s.bootstrap, ckv, NULL, NULL);
	rd_kafka_poll_set_consumer(rk);
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(BENCH_PARTS);
	for (int p = 0; p < BENCH_PARTS; p++)
		rd_kafka_topic_partition_list_add(parts, "bench", p)->offset = 0;
	rd_kafka_assign(rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	/* The clock starts at the first message: connection set-up is not
	 * throughput. */
	long got = 0;
	double first = 0;
	t0 = now_s();
	while (got < out->produced + warm && now_s() - t0 < 30) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
		if (!m)
			continue;
		if (!m->err && got++ == 0)
			first = now_s();
		rd_kafka_message_destroy(m);
	}
	out->cons_s = now_s() - first;
	out->consumed = got > 0 ? got - 1 : 0;
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	setup_stop(&s);
}

/* Median throughput of one peer (the librdkafka this process runs on). */
struct peer_tput {
	char version[32];
	int produce_v, fetch_v;
	double prate[VIA_N], crate[VIA_N]; /* messages per second */
	double pcpu[VIA_N];                /* CPU seconds per 100 MB produced */
	int incomplete[VIA_N];
	int ok;
};

static int cmp_double(const void *a, const void *b);

/* --via N: throughput of that case alone (for a profiler), -1: all. */
static int only_via = -1;

static void throughput_set(long n, int reps, struct peer_tput *pt)
{
	/* The machine may be shared: each case runs reps times (interleaved),
	 * and the median rate is kept. */
	double prate[VIA_N][16], crate[VIA_N][16], pcpu[VIA_N][16];

	memset(pt, 0, sizeof(*pt));
	for (int r = 0; r < reps; r++) {
		for (int via = VIA_DIRECT; via < VIA_N; via++) {
			struct tput t;
			if (only_via >= 0 && via != only_via) {
				prate[via][r] = crate[via][r] = pcpu[via][r] = 0;
				continue;
			}
			run_throughput(via, n, &t);
			prate[via][r] = (double)t.produced / t.prod_s;
			crate[via][r] = (double)t.consumed / t.cons_s;
			pcpu[via][r] = t.prod_cpu / ((double)t.produced * MSG_SIZE / 1e8);
			if (t.produced != n || t.consumed < n)
				pt->incomplete[via] = 1;
		}
	}
	for (int via = VIA_DIRECT; via < VIA_N; via++) {
		qsort(prate[via], (size_t)reps, sizeof(double), cmp_double);
		qsort(crate[via], (size_t)reps, sizeof(double), cmp_double);
		qsort(pcpu[via], (size_t)reps, sizeof(double), cmp_double);
		pt->pcpu[via] = pcpu[via][reps / 2];
		pt->prate[via] = prate[via][reps / 2];
		pt->crate[via] = crate[via][reps / 2];
	}
	snprintf(pt->version, sizeof(pt->version), "%s", rd_kafka_version_str());
	pt->produce_v = seen_produce_v;
	pt->fetch_v = seen_fetch_v;
	pt->ok = 1;
}

/* Runs this program with --throughput-only on the librdkafka in libdir
 * (LD_LIBRARY_PATH) and reads its figures. Returns 0, or -1 with a reason on
 * stderr. */
static int throughput_child(const char *libdir, long n, int reps, const char *kwire,
                            struct peer_tput *pt)
{
	char self[PATH_MAX], sn[32], sr[16];
	ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
	int pfd[2];

	memset(pt, 0, sizeof(*pt));
	if (l <= 0 || pipe(pfd))
		return -1;
	self[l] = '\0';
	snprintf(sn, sizeof(sn), "%ld", n);
	snprintf(sr, sizeof(sr), "%d", reps);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		setenv("LD_LIBRARY_PATH", libdir, 1);
		execl(self, self, "--throughput-only", "--messages", sn, "--reps", sr, "--kwire",
		      kwire, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	FILE *out = fdopen(pfd[0], "r");
	char line[512], via[32];
	double pr, cr;
	int inc, k = 0;
	while (out && fgets(line, sizeof(line), out)) {
		if (sscanf(line, "PEER %31s %d %d", pt->version, &pt->produce_v, &pt->fetch_v) == 3)
			continue;
		if (sscanf(line, "TPUT %31s %lf %lf %d", via, &pr, &cr, &inc) == 4 && k < VIA_N) {
			pt->prate[k] = pr;
			pt->crate[k] = cr;
			pt->incomplete[k++] = inc;
		}
	}
	if (out)
		fclose(out);
	int st = 0;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || k != VIA_N || !pt->version[0]) {
		fprintf(stderr, "bench_proxy: the run on %s failed (status %d)\n", libdir, st);
		return -1;
	}
	pt->ok = 1;
	return 0;
}

/* ---- latency ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void pct(double *v, long n, double *p50, double *p99)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	*p50 = v[n / 2];
	*p99 = v[(n * 99) / 100];
}

/* One message in flight: produce, wait for its delivery report. */
static void run_pingpong_msg(int via, long n, double *p50, double *p99)
{
	struct setup s;
	struct dr_state st = {0};
	double *lat = calloc((size_t)n, sizeof(*lat));
	setup_start(&s, via, "pp", 1);
	const char *kv[] = {"acks", "1", "linger.ms", "0", NULL};
	rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, s.bootstrap, kv, dr_cb, &st);
	char payload[100];
	memset(payload, 'p', sizeof(payload));
	for (long i = -50; i < n; i++) { /* 50 warm-up rounds */
		st.done = 0;
		double t0 = now_s();
		rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("pp"), RD_KAFKA_V_PARTITION(0),
		                  RD_KAFKA_V_VALUE(payload, sizeof(payload)),
		                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		while (!st.done)
			rd_kafka_poll(rk, 10);
		if (i >= 0)
			lat[i] = (now_s() - t0) * 1e6;
	}
	rd_kafka_destroy(rk);
	setup_stop(&s);
	pct(lat, n, p50, p99);
	free(lat);
}

static int tcp_connect(const char *hostport)
{
	char host[256];
	const char *colon = strrchr(hostport, ':');
	size_t hl = (size_t)(colon - hostport);
	memcpy(host, hostport, hl);
	host[hl] = '\0';
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)atoi(colon + 1))};
	inet_pton(AF_INET, host, &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int read_full(int fd, uint8_t *p, size_t n)
{
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* One raw ApiVersions v0 request in flight on one connection. */
static void run_pingpong_raw(int via, long n, double *p50, double *p99)
{
	struct setup s;
	double *lat = calloc((size_t)n, sizeof(*lat));
	setup_start(&s, via, "pp", 1);
	char first[300];
	snprintf(first, sizeof(first), "%s", s.bootstrap);
	char *comma = strchr(first, ',');
	if (comma)
		*comma = '\0';
	int fd = tcp_connect(first);
	if (fd < 0)
		die("connect", first);
	static uint8_t buf[1 << 16];
	for (long i = -50; i < n; i++) {
		struct kd_wbuf w = {0};
		struct kd_req_hdr hdr;
		kd_req_hdr_init(&hdr, KD_API_API_VERSIONS, 0, (int32_t)(i + 100), "bench");
		kd_w_i32(&w, 0);
		kd_req_hdr_write(&w, &hdr);
		uint32_t size = (uint32_t)w.len - 4;
		w.p[0] = (uint8_t)(size >> 24);
		w.p[1] = (uint8_t)(size >> 16);
		w.p[2] = (uint8_t)(size >> 8);
		w.p[3] = (uint8_t)size;
		double t0 = now_s();
		if (write(fd, w.p, w.len) != (ssize_t)w.len)
			die("write", strerror(errno));
		kd_wbuf_free(&w);
		uint8_t hb[4];
		if (read_full(fd, hb, 4))
			die("read", "connection closed");
		uint32_t rlen = (uint32_t)kd_load_be(hb, 4);
		if (rlen > sizeof(buf) || read_full(fd, buf, rlen))
			die("read", "bad response");
		if (i >= 0)
			lat[i] = (now_s() - t0) * 1e6;
	}
	close(fd);
	setup_stop(&s);
	pct(lat, n, p50, p99);
	free(lat);
}

/* ---- memory per idle connection (kwire as a child process) ---- */

struct sink {
	int lfd;
	int *fds;
	long nfds, max;
	volatile int stop;
};

/* Accepts and keeps every connection: the "broker" of the idle test. */
static void *sink_thread(void *arg)
{
	struct sink *sk = arg;
	while (!sk->stop) {
		struct pollfd pfd = {.fd = sk->lfd, .events = POLLIN};
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		int fd = accept(sk->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		if (sk->nfds < sk->max)
			sk->fds[sk->nfds++] = fd;
		else
			close(fd);
	}
	return NULL;
}

static long rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = strtol(line + 6, NULL, 10);
	fclose(f);
	return kb;
}

static int run_idle(const char *kwire, long n, long *rss0, long *rss1, long *opened)
{
	struct sink sk = {.max = n + 16};
	sk.fds = calloc((size_t)sk.max, sizeof(int));
	sk.lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	if (bind(sk.lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(sk.lfd, 4096) ||
	    getsockname(sk.lfd, (struct sockaddr *)&sa, &sl))
		die("sink", strerror(errno));
	pthread_t th;
	pthread_create(&th, NULL, sink_thread, &sk);

	char up[64];
	snprintf(up, sizeof(up), "127.0.0.1:%u", ntohs(sa.sin_port));
	int pfd[2];
	if (pipe(pfd))
		die("pipe", strerror(errno));
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		int devnull = open("/dev/null", 1);
		dup2(devnull, 2);
		execl(kwire, kwire, "proxy", "--upstream", up, "--listen", "127.0.0.1:0", "--quiet",
		      "--no-log", "--workers", "2", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	FILE *out = fdopen(pfd[0], "r");
	char line[256], listen_addr[64] = "";
	while (fgets(line, sizeof(line), out))
		if (sscanf(line, "LISTEN %63s", listen_addr) == 1)
			break;
	int rc = -1;
	if (!listen_addr[0]) {
		fprintf(stderr, "bench_proxy: %s did not start\n", kwire);
		goto out;
	}
	usleep(200000);
	*rss0 = rss_kb(pid);
	int *cfds = calloc((size_t)n, sizeof(int));
	*opened = 0;
	for (long i = 0; i < n; i++) {
		cfds[i] = tcp_connect(listen_addr);
		if (cfds[i] < 0)
			break;
		(*opened)++;
	}
	/* Wait until kwire has connected upstream for (nearly) all of them. */
	double t0 = now_s();
	while (sk.nfds < *opened && now_s() - t0 < 30)
		usleep(50000);
	usleep(500000);
	*rss1 = rss_kb(pid);
	for (long i = 0; i < *opened; i++)
		close(cfds[i]);
	free(cfds);
	rc = 0;
out:
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	fclose(out);
	sk.stop = 1;
	pthread_join(th, NULL);
	for (long i = 0; i < sk.nfds; i++)
		close(sk.fds[i]);
	free(sk.fds);
	close(sk.lfd);
	return rc;
}

int main(int argc, char **argv)
{
	long n = 30000, pings = 3000, idle = 10000;
	int reps = 3, only_tput = 0;
	char kwire[PATH_MAX] = "";
#ifdef KWIRE_RDKAFKA_MODERN
	char modern[PATH_MAX] = KWIRE_RDKAFKA_MODERN;
#else
	char modern[PATH_MAX] = "";
#endif
	static const struct option lo[] = {{"messages", required_argument, NULL, 'm'},
	                                   {"pings", required_argument, NULL, 'p'},
	                                   {"idle", required_argument, NULL, 'i'},
	                                   {"kwire", required_argument, NULL, 'k'},
	                                   {"reps", required_argument, NULL, 'r'},
	                                   {"modern-lib", required_argument, NULL, 'M'},
	                                   {"no-modern", no_argument, NULL, 'N'},
	                                   {"throughput-only", no_argument, NULL, 'T'},
	                                   {"via", required_argument, NULL, 'V'},
	                                   {"produce-only", no_argument, NULL, 'P'},
	                                   {NULL, 0, NULL, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "m:p:i:k:r:", lo, NULL)) != -1) {
		switch (c) {
		case 'm':
			n = atol(optarg);
			break;
		case 'p':
			pings = atol(optarg);
			break;
		case 'i':
			idle = atol(optarg);
			break;
		case 'r':
			reps = atoi(optarg) < 1 ? 1 : atoi(optarg) > 16 ? 16 : atoi(optarg);
			break;
		case 'k':
			snprintf(kwire, sizeof(kwire), "%s", optarg);
			break;
		case 'M':
			snprintf(modern, sizeof(modern), "%s", optarg);
			break;
		case 'N':
			modern[0] = '\0';
			break;
		case 'T':
			only_tput = 1;
			break;
		case 'P':
			produce_only = 1;
			break;
		case 'V':
			only_via = atoi(optarg) >= 0 && atoi(optarg) < VIA_N ? atoi(optarg) : -1;
			break;
		default:
			fprintf(stderr,
			        "usage: bench_proxy [--messages N] [--pings N] [--idle N] "
			        "[--reps N] [--kwire PATH] [--modern-lib DIR | --no-modern] "
			        "[--throughput-only] [--via N] [--produce-only]\n");
			return 2;
		}
	}
	if (!kwire[0]) {
		char self[PATH_MAX];
		ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (l > 0) {
			self[l] = '\0';
			char *slash = strrchr(self, '/');
			if (slash)
				*slash = '\0';
			snprintf(kwire, sizeof(kwire), "%.*s/../kwire", (int)(sizeof(kwire) - 16),
			         self);
		}
	}
	signal(SIGPIPE, SIG_IGN);
	/* Two fds per idle connection in this process (client + sink side) and
	 * two in kwire: raise the limit for both (root may raise the hard one). */
	struct rlimit rl = {(rlim_t)(4 * idle + 1024), (rlim_t)(4 * idle + 1024)};
	struct rlimit cur;
	getrlimit(RLIMIT_NOFILE, &cur);
	if (cur.rlim_max > rl.rlim_max)
		rl.rlim_max = cur.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl)) {
		/* No CAP_SYS_RESOURCE: go as high as the hard limit allows. */
		rl.rlim_cur = rl.rlim_max = cur.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (cur.rlim_max < (rlim_t)(2 * idle + 64))
			fprintf(stderr,
			        "bench_proxy: RLIMIT_NOFILE hard limit %lu: fewer idle "
			        "connections may open\n",
			        (unsigned long)cur.rlim_max);
	}

	if (only_tput) {
		/* The child of a two-peer run: figures as lines for the parent. */
		struct peer_tput pt;
		throughput_set(n, reps, &pt);
		printf("PEER %s %d %d\n", pt.version, pt.produce_v, pt.fetch_v);
		for (int via = VIA_DIRECT; via < VIA_N; via++)
			printf("TPUT %d %.3f %.3f %d\n", via, pt.prate[via], pt.crate[via],
			       pt.incomplete[via]);
		for (int via = VIA_DIRECT; via < VIA_N; via++)
			printf("PCPU %d %.3f\n", via, pt.pcpu[via]);
		return 0;
	}

	printf("kwire proxy benchmark: librdkafka %s, mock cluster of 3 brokers, %ld x %d B "
	       "messages, acks=1\n\n",
	       rd_kafka_version_str(), n, MSG_SIZE);
	/* Throughput on both peers: this process's librdkafka, then 2.12 in a
	 * child (two librdkafkas cannot share a process). */
	struct peer_tput peers[2];
	int npeers = 1;
	throughput_set(n, reps, &peers[0]);
	if (modern[0]) {
		char so[PATH_MAX + 32];
		snprintf(so, sizeof(so), "%s/librdkafka.so.1", modern);
		if (access(so, R_OK))
			fprintf(stderr,
			        "bench_proxy: no %s (tools/install-deps.sh builds it): "
			        "2.12 column left out\n",
			        so);
		else if (throughput_child(modern, n, reps, kwire, &peers[1]) == 0)
			npeers = 2;
	}
	printf("%-18s", "throughput");
	for (int i = 0; i < npeers; i++)
		printf(" | librdkafka %-16.16s", peers[i].version);
	printf("\n%-18s", "");
	for (int i = 0; i < npeers; i++) {
		/* A version not seen (no line in the log: kwire passed nothing) is "?". */
		char head[64], pv[16] = "?", fv[16] = "?";
		if (peers[i].produce_v >= 0)
			snprintf(pv, sizeof(pv), "%d", peers[i].produce_v);
		if (peers[i].fetch_v >= 0)
			snprintf(fv, sizeof(fv), "%d", peers[i].fetch_v);
		snprintf(head, sizeof(head), "Produce v%s / Fetch v%s", pv, fv);
		printf(" | %-27s", head);
	}
	printf("\n%-18s", "");
	for (int i = 0; i < npeers; i++)
		printf(" | %13s %13s", "produce MB/s", "consume MB/s");
	printf("\n");
	for (int via = VIA_DIRECT; via < VIA_N; via++) {
		double mb = (double)MSG_SIZE / 1e6;
		printf("%-18s", via_name[via]);
		for (int i = 0; i < npeers; i++)
			printf(" | %13.1f %12.1f%s", peers[i].prate[via] * mb,
			       peers[i].crate[via] * mb, peers[i].incomplete[via] ? "!" : " ");
		printf("\n");
	}
	for (int via = VIA_RULES_HDR; via <= VIA_RULES_TOPIC; via++) {
		printf("%-18s", via == VIA_RULES_HDR ? "header rules/none" : "topic rules/none");
		for (int i = 0; i < npeers; i++)
			printf(" | %12.0f%% %11.0f%% ",
			       100 * peers[i].prate[via] / peers[i].prate[VIA_KWIRE],
			       100 * peers[i].crate[via] / peers[i].crate[VIA_KWIRE]);
		printf("\n");
	}
	printf("  (median of %d runs each; msg/s = MB/s x %.0f; ! = not every message "
	       "produced and consumed; versions from the access log; x/none: the rules "
	       "rows against kwire (log off) without a rules file)\n",
	       reps, 1e6 / MSG_SIZE);
	fflush(stdout);

	printf("\n%-18s %12s %12s %12s %12s\n", "latency (us)", "msg p50", "msg p99", "raw p50",
	       "raw p99");
	double d[4], k[4];
	run_pingpong_msg(VIA_DIRECT, pings, &d[0], &d[1]);
	run_pingpong_raw(VIA_DIRECT, pings, &d[2], &d[3]);
	run_pingpong_msg(VIA_KWIRE, pings, &k[0], &k[1]);
	run_pingpong_raw(VIA_KWIRE, pings, &k[2], &k[3]);
	printf("%-18s %12.1f %12.1f %12.1f %12.1f\n", "direct", d[0], d[1], d[2], d[3]);
	printf("%-18s %12.1f %12.1f %12.1f %12.1f\n", "kwire (log off)", k[0], k[1], k[2], k[3]);
	printf("%-18s %12.1f %12.1f %12.1f %12.1f\n", "added by kwire", k[0] - d[0], k[1] - d[1],
	       k[2] - d[2], k[3] - d[3]);
	printf("  (msg: produce one message, wait for its delivery report; raw: one ApiVersions "
	       "v0 request on one socket)\n");
	fflush(stdout);

	long r0 = 0, r1 = 0, opened = 0;
	if (idle > 0 && run_idle(kwire, idle, &r0, &r1, &opened) == 0 && opened > 0)
		printf("\nidle connections: %ld open through %s: RSS %ld KB -> %ld KB, %.1f KB per "
		       "connection (client + upstream side)\n",
		       opened, kwire, r0, r1, (double)(r1 - r0) / (double)opened);
	printf("\ngoals: proxied throughput within 10%% of direct; with 100 topic rules at "
	       "least 90%% of no rules; added p99 < 50 us; < 64 KB per idle connection\n");
	return 0;
}
