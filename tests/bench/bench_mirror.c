/* bench_mirror: what a `mirror:` rule costs the main path, against the
 * same run with no rules (the Rewrite and mirror issue's goal: at least
 * 95% of the no-rules throughput, with the mirror cluster down too).
 *
 * Cluster A (librdkafka's mock, 3 brokers, in this process) behind kwire,
 * run as its own process (`kwire proxy`, the build's binary), so that the
 * CPU time kwire spends can be read from the kernel (the sum of
 * /proc/PID/task/ * /schedstat over its threads: workers, the mirror thread
 * and the threads of the mirror's librdkafka producer, all on the same
 * cores). A librdkafka producer in this process (acks=1, keyed records of
 * --size bytes with two headers) produces --messages records through
 * kwire, timed from the first produce to the last delivery report. Three
 * setups, alternated --reps times:
 *   no rules        kwire without a rules file
 *   mirror, B up    a mirror rule copying every record to cluster B (a
 *                   second mock cluster in this process, 1 broker)
 *   mirror, B down  the same rule, B's address with nobody listening
 * Printed side by side: records/s (median, min-max) and kwire's CPU time
 * per 100 MB of Produce requests it received (median, min-max), kwire's
 * share of a core while producing, and the CPU this process (producer
 * and mock clusters) spent per 100 MB. kwire's CPU time is counted until
 * the mirror has handled every record (B up: B acknowledged them all; B
 * down: each was handed to the mirror's producer or counted dropped).
 * Throughput varies with whatever else runs on the machine; CPU time per
 * byte much less (docs/rules.md "mirror", Speed). Asserts nothing
 * (STYLE.md "Tests").
 * --only S runs setup S alone (0, 1 or 2: for a profiler).
 *   bench_mirror [--messages N] [--size B] [--reps N] [--kwire PATH] [--only S] */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <librdkafka/rdkafka.h>

#include "px-mock.h"

#define PARTS 12
#define SETUPS 3
#define REPS_MAX 20
#define WARMUP 2000 /* records produced before each timed run */

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

/* ---- kwire, as a child process ---- */

struct kwire {
	pid_t pid;
	char listen[64], admin[64];
};

static void kwire_start(struct kwire *kw, const char *bin, const char *upstream, const char *rules)
{
	int fds[2];
	if (pipe(fds))
		die("pipe", "failed");
	const char *argv[16];
	int a = 0;
	argv[a++] = bin;
	argv[a++] = "proxy";
	argv[a++] = "--upstream";
	argv[a++] = upstream;
	argv[a++] = "--listen";
	argv[a++] = "127.0.0.1:0";
	argv[a++] = "--admin";
	argv[a++] = "127.0.0.1:0";
	argv[a++] = "--no-log";
	if (rules) {
		argv[a++] = "--rules";
		argv[a++] = rules;
	}
	argv[a] = NULL;
	kw->pid = fork();
	if (kw->pid < 0)
		die("fork", "failed");
	if (!kw->pid) {
		dup2(fds[1], 1);
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, 2); /* its warnings (B down) are expected */
		close(fds[0]);
		close(fds[1]);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	FILE *f = fdopen(fds[0], "r");
	char line[256];
	kw->listen[0] = kw->admin[0] = 0;
	while ((!kw->listen[0] || !kw->admin[0]) && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "LISTEN ", 7))
			snprintf(kw->listen, sizeof(kw->listen), "%.63s", line + 7);
		else if (!strncmp(line, "ADMIN ", 6))
			snprintf(kw->admin, sizeof(kw->admin), "%.63s", line + 6);
	}
	fclose(f); /* kwire prints nothing more on stdout with --no-log */
	if (!kw->listen[0] || !kw->admin[0])
		die(bin, "did not start (LISTEN and ADMIN lines expected)");
}

static void kwire_stop(struct kwire *kw)
{
	/* Not measured: no need to wait for its producer's flush. */
	kill(kw->pid, SIGKILL);
	waitpid(kw->pid, NULL, 0);
}

/* CPU seconds kwire's threads have used (schedstat: time on a CPU), in
 * all and by group: g[0] the workers (and the main thread), g[1] the
 * mirror thread, g[2] the mirror producer's librdkafka threads ("rdk:"). */
enum { G_WORKERS, G_MIRROR, G_SINK, GROUPS };
static const char *const group_names[GROUPS] = {"workers", "mirror thread", "librdkafka"};

static double kwire_cpu_s(const struct kwire *kw, double g[GROUPS])
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)kw->pid);
	DIR *d = opendir(path);
	if (!d)
		die(path, "cannot read");
	double all = 0;
	for (int i = 0; i < GROUPS; i++)
		g[i] = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[128], comm[64] = "";
		snprintf(p, sizeof(p), "%s/%.32s/comm", path, e->d_name);
		FILE *f = fopen(p, "r");
		if (f && !fgets(comm, sizeof(comm), f))
			comm[0] = 0;
		if (f)
			fclose(f);
		snprintf(p, sizeof(p), "%s/%.32s/schedstat", path, e->d_name);
		f = fopen(p, "r");
		unsigned long long run = 0;
		if (f && fscanf(f, "%llu", &run) == 1) {
			double s = (double)run / 1e9;
			all += s;
			g[!strncmp(comm, "rdk:", 4)            ? G_SINK
			  : !strncmp(comm, "kwire-mirror", 12) ? G_MIRROR
			                                       : G_WORKERS] += s;
		}
		if (f)
			fclose(f);
	}
	closedir(d);
	return all;
}

static double self_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The sum of every series of metric name on kwire's /metrics (-1: none). */
static double metric(const struct kwire *kw, const char *name)
{
	char host[64];
	snprintf(host, sizeof(host), "%s", kw->admin);
	char *colon = strrchr(host, ':');
	if (!colon)
		die("admin address", host);
	*colon = 0;
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)atoi(colon + 1))};
	inet_pton(AF_INET, host, &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("/metrics", "cannot connect");
	const char req[] = "GET /metrics HTTP/1.0\r\nHost: kwire\r\n\r\n";
	if (write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1)
		die("/metrics", "cannot send");
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	ssize_t r;
	while ((r = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)r;
		if (cap - len < 4096) {
			cap *= 2;
			buf = realloc(buf, cap);
		}
	}
	close(fd);
	buf[len] = 0;
	double v = -1;
	size_t nl = strlen(name);
	for (char *p = buf; *p;) {
		char *end = strchr(p, '\n');
		if (end)
			*end = 0;
		char *sp = strrchr(p, ' '); /* the value follows the last space */
		if (!strncmp(p, name, nl) && (p[nl] == ' ' || p[nl] == '{') && sp)
			v = (v < 0 ? 0 : v) + atof(sp + 1);
		if (!end)
			break;
		p = end + 1;
	}
	free(buf);
	return v;
}

/* ---- one run ---- */

struct run {
	double rate;   /* records/s */
	double cpu_mb; /* kwire's CPU seconds per 100 MB received from the client */
	double cores;  /* kwire's CPU seconds per second, while producing */
	double group_mb[GROUPS];
	double self_mb; /* this process's (producer, clusters) CPU seconds per 100 MB */
	double mirrored, dropped;
};

/* Produces n records through kwire; fills r. */
static void produce(const struct kwire *kw, long n, int size, int mode, struct run *r)
{
	char errstr[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const char *kv[] = {"bootstrap.servers",
	                    kw->listen,
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
	char *val = malloc((size_t)size + 1);
	memset(val, 'v', (size_t)size);
	/* Metadata first, and a warm-up: the timed part is the produce alone,
	 * with the mirror's producer started (B up: connected; B down: known
	 * down, which takes librdkafka one refused connection). */
	const struct rd_kafka_metadata *md;
	rd_kafka_metadata(rk, 1, NULL, &md, 10000);
	rd_kafka_metadata_destroy(md);
	for (long i = 0; i < WARMUP; i++)
		rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("bench"),
		                  RD_KAFKA_V_PARTITION((int32_t)(i % PARTS)),
		                  RD_KAFKA_V_VALUE(val, (size_t)size),
		                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
	rd_kafka_flush(rk, 60000);
	for (double w0 = now_s(); mode && now_s() - w0 < 20; usleep(20000))
		if (mode == 1 ? metric(kw, "kwire_mirror_records_mirrored_total") >= WARMUP
		              : metric(kw, "kwire_mirror_sink_down") >= 1)
			break;
	double mirrored0 = metric(kw, "kwire_mirror_records_mirrored_total");
	double dropped0 = metric(kw, "kwire_mirror_records_dropped_total");
	double handed0 = metric(kw, "kwire_mirror_sink_produced_total");
	dr_ok = dr_failed = 0;
	double in0 = metric(kw, "kwire_client_bytes_received_total");
	double g0[GROUPS], g1[GROUPS];
	double cpu0 = kwire_cpu_s(kw, g0), self0 = self_cpu_s();
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
	double cpu_prod = kwire_cpu_s(kw, g1) - cpu0;
	double self = self_cpu_s() - self0;
	if (dr_failed || dr_ok != n)
		fprintf(stderr, "bench_mirror: %ld delivered, %ld failed of %ld\n", dr_ok,
		        dr_failed, n);
	/* The mirror's work on these records may outlast the produce: kwire's
	 * CPU is counted until it is done, less what serving /metrics to this
	 * loop cost it. */
	double t1 = now_s(), served = 0, gs[GROUPS] = {0};
	r->mirrored = r->dropped = 0;
	while (mode && now_s() - t1 < 60) {
		double ga[GROUPS], gb[GROUPS];
		double c0 = kwire_cpu_s(kw, ga);
		r->mirrored = metric(kw, "kwire_mirror_records_mirrored_total") - mirrored0;
		r->dropped = metric(kw, "kwire_mirror_records_dropped_total") - dropped0;
		double handed = metric(kw, "kwire_mirror_sink_produced_total") - handed0;
		served += kwire_cpu_s(kw, gb) - c0;
		for (int i = 0; i < GROUPS; i++)
			gs[i] += gb[i] - ga[i];
		if (mode == 1 ? r->mirrored >= n : handed + r->dropped >= n)
			break;
		usleep(20000);
	}
	double cpu = kwire_cpu_s(kw, g1) - cpu0 - served;
	double mb = (metric(kw, "kwire_client_bytes_received_total") - in0) / 1e8;
	for (int i = 0; i < GROUPS; i++)
		r->group_mb[i] = (g1[i] - g0[i] - gs[i]) / mb;
	r->rate = (double)n / dt;
	r->cpu_mb = cpu / mb;
	r->cores = cpu_prod / dt;
	r->self_mb = self / mb;
	rd_kafka_destroy(rk);
	free(val);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Median, min and max of v[0..n). */
static void stats(const double *v, int n, double *med, double *lo, double *hi)
{
	double s[REPS_MAX];
	memcpy(s, v, sizeof(double) * (size_t)n);
	qsort(s, (size_t)n, sizeof(double), cmp);
	*med = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	*lo = s[0];
	*hi = s[n - 1];
}

static void loadavg(char *out, size_t cap)
{
	FILE *f = fopen("/proc/loadavg", "r");
	out[0] = 0;
	if (f && fgets(out, (int)cap, f))
		out[strcspn(out, " ")] = 0; /* the 1-minute figure */
	if (f)
		fclose(f);
}

int main(int argc, char **argv)
{
	long n = 200000;
	int size = 100, reps = 5, only = -1;
	char bin[4096] = "";
	static const struct option opts[] = {
	    {"messages", required_argument, NULL, 'm'}, {"size", required_argument, NULL, 's'},
	    {"reps", required_argument, NULL, 'r'},     {"kwire", required_argument, NULL, 'k'},
	    {"only", required_argument, NULL, 'o'},     {NULL, 0, NULL, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'm')
			n = atol(optarg);
		else if (c == 's')
			size = atoi(optarg);
		else if (c == 'r')
			reps = atoi(optarg);
		else if (c == 'o')
			only = atoi(optarg);
		else if (c == 'k')
			snprintf(bin, sizeof(bin), "%s", optarg);
		else
			return 2;
	}
	if (n < 1 || size < 0 || reps < 1 || reps > REPS_MAX)
		return 2;
	if (!bin[0]) {
		/* build/bench/bench_mirror -> build/kwire */
		char self[4000];
		ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
		self[l > 0 ? l : 0] = 0;
		char *slash = strrchr(self, '/');
		if (slash)
			*slash = 0;
		snprintf(bin, sizeof(bin), "%s/../kwire", self);
	}
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

	const char *names[SETUPS] = {"no rules", "mirror, B up", "mirror, B down"};
	const char *rules[SETUPS] = {NULL, up, down};
	struct run runs[SETUPS][REPS_MAX];
	char load0[32], load1[32];
	loadavg(load0, sizeof(load0));
	for (int r = 0; r < reps; r++)
		for (int s = 0; s < SETUPS; s++) {
			struct kwire kw;
			if (only >= 0 && s != only) {
				memset(&runs[s][r], 0, sizeof(runs[s][r]));
				continue;
			}
			kwire_start(&kw, bin, px_mock_bootstraps(a), rules[s]);
			produce(&kw, n, size, s, &runs[s][r]);
			kwire_stop(&kw);
		}
	loadavg(load1, sizeof(load1));
	printf("bench_mirror: %ld records of %d bytes (key, 2 headers) per run, acks=1, %d "
	       "run(s) each, alternated; load average %s before, %s after\n",
	       n, size, reps, load0, load1);
	printf("%-15s %22s %7s  %24s %7s %6s %10s\n", "setup", "rec/s median [min-max]", "vs none",
	       "kwire CPU ms/100MB [min-max]", "vs none", "cores", "bench CPU");
	double rate0 = 0, cpu0 = 0;
	for (int s = 0; s < SETUPS; s++) {
		double v[REPS_MAX], med, lo, hi, cmed, clo, chi, cores, dummy, self;
		for (int r = 0; r < reps; r++)
			v[r] = runs[s][r].rate;
		stats(v, reps, &med, &lo, &hi);
		for (int r = 0; r < reps; r++)
			v[r] = runs[s][r].cpu_mb * 1e3;
		stats(v, reps, &cmed, &clo, &chi);
		for (int r = 0; r < reps; r++)
			v[r] = runs[s][r].cores;
		stats(v, reps, &cores, &dummy, &dummy);
		for (int r = 0; r < reps; r++)
			v[r] = runs[s][r].self_mb * 1e3;
		stats(v, reps, &self, &dummy, &dummy);
		if (!s) {
			rate0 = med;
			cpu0 = cmed;
		}
		printf("%-15s %8.0f [%6.0f-%6.0f] %6.1f%%  %10.1f [%6.1f-%6.1f] %6.1f%% %6.2f "
		       "%10.1f\n",
		       names[s], med, lo, hi, 100.0 * med / rate0, cmed, clo, chi,
		       100.0 * cmed / cpu0, cores, self);
	}
	printf("kwire CPU ms/100MB by thread (median):");
	for (int i = 0; i < GROUPS; i++)
		printf("%s %s", i ? "," : "", group_names[i]);
	printf("\n");
	for (int s = 0; s < SETUPS; s++) {
		printf("  %-15s", names[s]);
		for (int i = 0; i < GROUPS; i++) {
			double v[REPS_MAX], med, lo, hi;
			for (int r = 0; r < reps; r++)
				v[r] = runs[s][r].group_mb[i] * 1e3;
			stats(v, reps, &med, &lo, &hi);
			printf(" %10.1f", med);
		}
		printf("\n");
	}
	double mir = 0, drop = 0;
	for (int r = 0; r < reps; r++) {
		mir += runs[1][r].mirrored;
		drop += runs[2][r].dropped;
	}
	printf("(cores: kwire's CPU seconds per second while producing; bench CPU: this process's "
	       "producer and mock clusters, ms per 100 MB)\n"
	       "B acknowledged %.0f of %ld records per B-up run (mean); with B down %.0f dropped "
	       "per run (the rest handed to its producer as probes)\n",
	       mir / reps, n, drop / reps);
	unlink(up);
	unlink(down);
	px_mock_free(&a);
	px_mock_free(&b);
	return 0;
}
