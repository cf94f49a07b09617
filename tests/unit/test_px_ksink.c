/* test_px_ksink.c: the non-blocking Kafka sink (proxy/px-ksink.h) against
 * a real Kafka-speaking cluster, librdkafka's mock cluster run by
 * tools/kwire-mockcluster, read back by a real librdkafka consumer.
 *
 * Covers: messages with keys, values, null values, headers and an explicit
 * partition arrive as produced; delivery reports and counters (produced,
 * delivered, queue bytes back to 0, latency); the byte budget (a sink whose
 * cluster is down fills it and then drops, produce never waits); a cluster
 * killed under a running sink (forwarding-side produce keeps returning,
 * drops rise, free returns with the rest counted failed); refused
 * properties; the /metrics text. */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "kd-cur.h"
#include "px-ksink.h"

/* ---- the mock cluster (kwire-mockcluster as a child) ---- */

struct mc {
	pid_t pid;
	FILE *in, *out;
	char bootstrap[512];
};

static int mc_start(struct mc *mc)
{
	const char *bin = getenv("KWIRE_MOCKCLUSTER");
	int pin[2], pout[2];
	memset(mc, 0, sizeof(*mc));
	if (!bin || pipe(pin) || pipe(pout))
		return -1;
	mc->pid = fork();
	if (mc->pid == 0) {
		dup2(pin[0], 0);
		dup2(pout[1], 1);
		close(pin[1]);
		close(pout[0]);
		execl(bin, bin, "--brokers", "2", "--topic", "sink:2", (char *)NULL);
		_exit(127);
	}
	close(pin[0]);
	close(pout[1]);
	mc->in = fdopen(pin[1], "w");
	mc->out = fdopen(pout[0], "r");
	char line[512];
	while (fgets(line, sizeof(line), mc->out)) {
		if (!strncmp(line, "BOOTSTRAP ", 10)) {
			snprintf(mc->bootstrap, sizeof(mc->bootstrap), "%s", line + 10);
			mc->bootstrap[strcspn(mc->bootstrap, "\n")] = '\0';
		} else if (!strncmp(line, "READY", 5)) {
			return 0;
		}
	}
	return -1;
}

static void mc_stop(struct mc *mc)
{
	if (mc->in)
		fclose(mc->in); /* EOF on stdin stops the cluster */
	if (mc->pid > 0)
		waitpid(mc->pid, NULL, 0);
	if (mc->out)
		fclose(mc->out);
	memset(mc, 0, sizeof(*mc));
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* ---- delivery reports ---- */

struct reports {
	_Atomic unsigned n, ok, bad, maybe;
	_Atomic int partition1; /* reports of messages produced to partition 1 that landed there */
};

static void on_delivery(void *arg, const struct px_ksink_report *rep)
{
	struct reports *r = arg;
	atomic_fetch_add(&r->n, 1);
	if (rep->err) {
		atomic_fetch_add(&r->bad, 1);
		if (rep->maybe_stored)
			atomic_fetch_add(&r->maybe, 1);
		return;
	}
	atomic_fetch_add(&r->ok, 1);
	assert_true(rep->bytes >= PX_KSINK_MSG_OVERHEAD);
	assert_string_equal(rep->topic, "sink");
	if ((uintptr_t)rep->opaque == 1 && rep->partition == 1)
		atomic_fetch_add(&r->partition1, 1);
}

static void quiet(void *arg, int level, const char *msg)
{
	(void)arg;
	if (level <= 1)
		fprintf(stderr, "ksink: %s\n", msg);
}

/* Waits until cond holds or about 20 s passed. */
#define WAIT_FOR(cond)                                                                             \
	do {                                                                                       \
		for (int w_ = 0; w_ < 2000 && !(cond); w_++)                                       \
			sleep_ms(10);                                                              \
	} while (0)

/* ---- reading back ---- */

struct seen {
	unsigned n, with_hdr, null_value, in_p1;
	unsigned last_seq;
	int order_ok;
};

/* Reads topic "sink" (both partitions, from the start) until want messages
 * came or 20 s passed; checks each one's shape. */
static void consume(const char *bootstrap, unsigned want, struct seen *s)
{
	char e[256];
	rd_kafka_conf_t *kc = rd_kafka_conf_new();
	assert_int_equal(rd_kafka_conf_set(kc, "bootstrap.servers", bootstrap, e, sizeof(e)),
	                 RD_KAFKA_CONF_OK);
	assert_int_equal(rd_kafka_conf_set(kc, "group.id", "ksink-test", e, sizeof(e)),
	                 RD_KAFKA_CONF_OK);
	assert_int_equal(rd_kafka_conf_set(kc, "enable.auto.commit", "false", e, sizeof(e)),
	                 RD_KAFKA_CONF_OK);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, e, sizeof(e));
	assert_non_null(rk);
	rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(2);
	rd_kafka_topic_partition_list_add(tp, "sink", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_topic_partition_list_add(tp, "sink", 1)->offset = RD_KAFKA_OFFSET_BEGINNING;
	assert_int_equal(rd_kafka_assign(rk, tp), 0);
	rd_kafka_topic_partition_list_destroy(tp);
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < 200 && s->n < want; i++) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
		if (!m)
			continue;
		if (m->err) {
			rd_kafka_message_destroy(m);
			continue;
		}
		s->n++;
		char key[32];
		assert_true(m->key_len > 0 && m->key_len < sizeof(key));
		memcpy(key, m->key, m->key_len);
		key[m->key_len] = '\0';
		unsigned seq;
		assert_int_equal(sscanf(key, "k%u", &seq), 1);
		if (!m->payload) {
			s->null_value++;
		} else {
			char want_val[64];
			int n = snprintf(want_val, sizeof(want_val), "value-%u", seq);
			assert_int_equal(m->len, (size_t)n);
			assert_memory_equal(m->payload, want_val, (size_t)n);
		}
		rd_kafka_headers_t *h = NULL;
		if (!rd_kafka_message_headers(m, &h)) {
			const void *v;
			size_t vlen;
			assert_int_equal(rd_kafka_header_get_last(h, "trace-id", &v, &vlen), 0);
			char want_h[32];
			int n = snprintf(want_h, sizeof(want_h), "t-%u", seq);
			assert_int_equal(vlen, (size_t)n);
			assert_memory_equal(v, want_h, (size_t)n);
			assert_int_equal(rd_kafka_header_get_last(h, "empty", &v, &vlen), 0);
			assert_null(v);
			s->with_hdr++;
		}
		if (m->partition == 1)
			s->in_p1++;
		rd_kafka_message_destroy(m);
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
}

/* ---- tests ---- */

/* Messages arrive as produced; every one gets one report; the counters
 * add up and the queue empties. */
static void test_roundtrip(void **state)
{
	(void)state;
	struct mc mc;
	assert_int_equal(mc_start(&mc), 0);
	struct reports rep = {0};
	struct px_ksink_conf kc = {.name = "t",
	                           .bootstrap = mc.bootstrap,
	                           .on_delivery = on_delivery,
	                           .delivery_arg = &rep,
	                           .log = quiet};
	char err[256];
	struct px_ksink *ks = px_ksink_new(&kc, err, sizeof(err));
	assert_non_null(ks);
	const unsigned n = 120;
	for (unsigned i = 0; i < n; i++) {
		char key[16], val[32], tid[16];
		int kl = snprintf(key, sizeof(key), "k%u", i);
		int vl = snprintf(val, sizeof(val), "value-%u", i);
		int tl = snprintf(tid, sizeof(tid), "t-%u", i);
		struct px_ksink_header h[2] = {{"trace-id", 8, tid, (size_t)tl},
		                               {"empty", 5, NULL, 0}};
		int with_hdr = i % 2 == 0;
		int null_val = i % 10 == 3;
		/* A third go to partition 1 explicitly (opaque 1). */
		int32_t part = i % 3 == 0 ? 1 : -1;
		assert_int_equal(px_ksink_produce(ks, "sink", part, key, (size_t)kl,
		                                  null_val ? NULL : val, (size_t)vl,
		                                  with_hdr ? h : NULL, with_hdr ? 2 : 0, 0,
		                                  (void *)(uintptr_t)(part == 1)),
		                 PX_KSINK_QUEUED);
	}
	WAIT_FOR(atomic_load(&rep.n) == n);
	assert_int_equal(atomic_load(&rep.ok), n);
	assert_int_equal(atomic_load(&rep.partition1), n / 3);
	struct px_ksink_stats st;
	px_ksink_stats(ks, &st);
	assert_int_equal(st.produced, n);
	assert_int_equal(st.delivered, n);
	assert_int_equal(st.failed, 0);
	assert_int_equal(st.dropped, 0);
	assert_int_equal(st.queue_bytes, 0);
	assert_true(st.queue_bytes_max >= PX_KSINK_MSG_OVERHEAD);
	assert_true(st.latency_us_sum > 0);
	assert_int_equal(st.queue_budget, PX_KSINK_QUEUE_DEFAULT);

	/* The metrics name the sink and carry the counts. */
	struct kd_wbuf w = {0};
	struct px_ksink *list[1] = {ks};
	px_ksink_metrics(&w, "kwire_test_sink", list, 1);
	kd_w_raw(&w, "", 1);
	assert_false(w.err);
	assert_non_null(
	    strstr((const char *)w.p, "kwire_test_sink_produced_total{sink=\"t\"} 120\n"));
	assert_non_null(
	    strstr((const char *)w.p, "kwire_test_sink_delivered_total{sink=\"t\"} 120\n"));
	assert_non_null(strstr((const char *)w.p, "kwire_test_sink_dropped_total{sink=\"t\"} 0\n"));
	assert_non_null(strstr((const char *)w.p,
	                       "kwire_test_sink_delivery_latency_seconds_count{sink=\"t\"} 120\n"));
	assert_non_null(strstr((const char *)w.p, "# TYPE kwire_test_sink_queue_bytes gauge\n"));
	kd_wbuf_free(&w);
	px_ksink_free(&ks);
	assert_null(ks);

	struct seen s;
	consume(mc.bootstrap, n, &s);
	assert_int_equal(s.n, n);
	assert_int_equal(s.with_hdr, n / 2);
	assert_int_equal(s.null_value, n / 10);
	assert_true(s.in_p1 >= n / 3);
	mc_stop(&mc);
}

/* A cluster that is not there: the queue fills to its budget, then every
 * produce drops at once; free gives up after its flush timeout and counts
 * what was queued as failed. */
static void test_budget_dead_cluster(void **state)
{
	(void)state;
	struct reports rep = {0};
	/* A port nothing listens on: a cluster that was killed. */
	struct px_ksink_conf kc = {.name = "dead",
	                           .bootstrap = "127.0.0.1:1",
	                           .max_queue_bytes = 8192,
	                           .flush_timeout_ms = 200,
	                           .on_delivery = on_delivery,
	                           .delivery_arg = &rep,
	                           .log = quiet};
	char err[256];
	struct px_ksink *ks = px_ksink_new(&kc, err, sizeof(err));
	assert_non_null(ks);
	char val[1000];
	memset(val, 'x', sizeof(val));
	unsigned queued = 0, dropped = 0;
	for (unsigned i = 0; i < 100; i++) {
		int rc =
		    px_ksink_produce(ks, "sink", -1, "k1", 2, val, sizeof(val), NULL, 0, 0, NULL);
		if (rc == PX_KSINK_QUEUED)
			queued++;
		else
			dropped++;
	}
	const size_t each = PX_KSINK_MSG_OVERHEAD + 2 + sizeof(val);
	assert_int_equal(queued, 8192 / each);
	assert_int_equal(dropped, 100 - queued);
	struct px_ksink_stats st;
	px_ksink_stats(ks, &st);
	assert_int_equal(st.produced, queued);
	assert_int_equal(st.dropped, dropped);
	assert_int_equal(st.queue_bytes, queued * each);
	assert_true(st.queue_bytes <= 8192);
	assert_int_equal(st.delivered, 0);
	px_ksink_free(&ks);
	/* Purged at free: every queued message was reported, as failed. */
	assert_int_equal(atomic_load(&rep.n), queued);
	assert_int_equal(atomic_load(&rep.bad), queued);
}

/* Small records fill the byte budget, not librdkafka's message count
 * limit (100,000 by default): 150,000 records of 67 bytes fit in 16 MiB
 * and are all queued. */
static void test_budget_small_records(void **state)
{
	(void)state;
	struct reports rep = {0};
	struct px_ksink_conf kc = {.name = "small",
	                           .bootstrap = "127.0.0.1:1",
	                           .max_queue_bytes = 16u << 20,
	                           .flush_timeout_ms = 200,
	                           .on_delivery = on_delivery,
	                           .delivery_arg = &rep,
	                           .log = quiet};
	char err[256];
	struct px_ksink *ks = px_ksink_new(&kc, err, sizeof(err));
	assert_non_null(ks);
	unsigned queued = 0;
	for (unsigned i = 0; i < 150000; i++)
		queued += px_ksink_produce(ks, "sink", 0, "k1", 2, "v", 1, NULL, 0, 0, NULL) ==
		          PX_KSINK_QUEUED;
	assert_int_equal(queued, 150000);
	struct px_ksink_stats st;
	px_ksink_stats(ks, &st);
	assert_int_equal(st.dropped, 0);
	px_ksink_free(&ks);
	assert_int_equal(atomic_load(&rep.n), queued);
}

/* The sink cluster is killed while the sink runs: produce keeps returning
 * (queue, then drop), the delivered count stops, drops rise. */
static void test_cluster_killed(void **state)
{
	(void)state;
	struct mc mc;
	assert_int_equal(mc_start(&mc), 0);
	struct reports rep = {0};
	struct px_ksink_conf kc = {.name = "killed",
	                           .bootstrap = mc.bootstrap,
	                           .max_queue_bytes = 64 * 1024,
	                           .flush_timeout_ms = 200,
	                           .on_delivery = on_delivery,
	                           .delivery_arg = &rep,
	                           .log = quiet};
	char err[256];
	struct px_ksink *ks = px_ksink_new(&kc, err, sizeof(err));
	assert_non_null(ks);
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(px_ksink_produce(ks, "sink", -1, "k", 1, "v", 1, NULL, 0, 0, NULL),
		                 PX_KSINK_QUEUED);
	WAIT_FOR(atomic_load(&rep.ok) == 10);
	assert_int_equal(atomic_load(&rep.ok), 10);
	mc_stop(&mc);
	char val[4096];
	memset(val, 'y', sizeof(val));
	unsigned dropped = 0;
	for (unsigned i = 0; i < 200; i++)
		dropped += px_ksink_produce(ks, "sink", -1, "k", 1, val, sizeof(val), NULL, 0, 0,
		                            NULL) == PX_KSINK_DROPPED;
	struct px_ksink_stats st;
	px_ksink_stats(ks, &st);
	assert_true(dropped > 150); /* 64 KiB holds 15 of these */
	assert_int_equal(st.dropped, dropped);
	assert_int_equal(st.delivered, 10);
	assert_true(st.queue_bytes <= 64 * 1024);
	px_ksink_free(&ks);
	assert_int_equal(atomic_load(&rep.ok), 10);
	assert_int_equal(atomic_load(&rep.n), 10 + (200 - dropped));
}

/* A mock cluster command ("down 1"); 0 when it answered OK. */
static int mc_command(struct mc *mc, const char *cmd)
{
	char line[256];
	fprintf(mc->in, "%s\n", cmd);
	fflush(mc->in);
	return fgets(line, sizeof(line), mc->out) && !strncmp(line, "OK", 2) ? 0 : -1;
}

/* px_ksink_down: not down while the cluster answers; down once every
 * broker is gone with messages queued, letting one probe through a
 * second; not down again once the cluster is back and a message (the
 * probe) is delivered. */
static void test_down_and_back(void **state)
{
	(void)state;
	struct mc mc;
	assert_int_equal(mc_start(&mc), 0);
	struct reports rep = {0};
	struct px_ksink_conf kc = {.name = "down",
	                           .bootstrap = mc.bootstrap,
	                           .flush_timeout_ms = 200,
	                           .on_delivery = on_delivery,
	                           .delivery_arg = &rep,
	                           .log = quiet};
	char err[256];
	struct px_ksink *ks = px_ksink_new(&kc, err, sizeof(err));
	assert_non_null(ks);
	assert_int_equal(px_ksink_produce(ks, "sink", -1, "k", 1, "v", 1, NULL, 0, 0, NULL),
	                 PX_KSINK_QUEUED);
	WAIT_FOR(atomic_load(&rep.ok) == 1);
	assert_int_equal(px_ksink_down(ks), 0);
	assert_int_equal(mc_command(&mc, "down 1"), 0);
	assert_int_equal(mc_command(&mc, "down 2"), 0);
	assert_int_equal(px_ksink_produce(ks, "sink", -1, "k", 1, "v", 1, NULL, 0, 0, NULL),
	                 PX_KSINK_QUEUED);
	struct px_ksink_stats st;
	px_ksink_stats(ks, &st);
	WAIT_FOR((px_ksink_stats(ks, &st), st.down));
	assert_true(st.down);
	/* The first call of a second lets a probe through, the next do not. */
	int first = px_ksink_down(ks);
	assert_int_equal(px_ksink_down(ks), 1);
	assert_int_equal(px_ksink_down(ks), 1);
	(void)first;
	assert_int_equal(mc_command(&mc, "up 1"), 0);
	assert_int_equal(mc_command(&mc, "up 2"), 0);
	WAIT_FOR((px_ksink_stats(ks, &st), !st.down));
	assert_false(st.down);
	assert_int_equal(px_ksink_down(ks), 0);
	assert_true(atomic_load(&rep.ok) >= 2); /* what was queued while down got through */
	px_ksink_free(&ks);
	mc_stop(&mc);
}

/* A property librdkafka refuses is an error naming it; a missing
 * bootstrap too. */
/* A message whose request times out after it was sent, its answer still
 * to come (each broker answers 3 s late), is failed and flagged maybe
 * stored (the mock cluster stores it on receipt). One never sent (a
 * cluster not there, purged at free) fails without the flag. */
static void test_maybe_stored(void **state)
{
	(void)state;
	struct mc mc;
	assert_int_equal(mc_start(&mc), 0);
	struct reports rep = {0};
	const char *props[] = {"request.timeout.ms", "1000", "message.timeout.ms", "2000", NULL};
	struct px_ksink_conf kc = {.name = "slow",
	                           .bootstrap = mc.bootstrap,
	                           .props = props,
	                           .flush_timeout_ms = 200,
	                           .on_delivery = on_delivery,
	                           .delivery_arg = &rep,
	                           .log = quiet};
	char err[256];
	struct px_ksink *ks = px_ksink_new(&kc, err, sizeof(err));
	assert_non_null(ks);
	/* Connected, metadata known: the next messages are sent at once. */
	assert_int_equal(px_ksink_produce(ks, "sink", 0, "k", 1, "first", 5, NULL, 0, 0, NULL),
	                 PX_KSINK_QUEUED);
	WAIT_FOR(atomic_load(&rep.ok) == 1);
	assert_int_equal(atomic_load(&rep.ok), 1);
	assert_int_equal(mc_command(&mc, "rtt 1 3000"), 0);
	assert_int_equal(mc_command(&mc, "rtt 2 3000"), 0);
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(
		    px_ksink_produce(ks, "sink", 0, "k", 1, "late", 4, NULL, 0, 0, NULL),
		    PX_KSINK_QUEUED);
	WAIT_FOR(atomic_load(&rep.n) == 6);
	assert_int_equal(atomic_load(&rep.bad), 5);
	assert_int_equal(atomic_load(&rep.maybe), 5);
	struct px_ksink_stats st;
	px_ksink_stats(ks, &st);
	assert_int_equal(st.failed, 5);
	assert_int_equal(st.maybe_stored, 5);
	px_ksink_free(&ks);
	mc_stop(&mc);

	/* Never sent: failed, not maybe stored. */
	struct reports dead = {0};
	kc.bootstrap = "127.0.0.1:1";
	kc.props = NULL;
	kc.delivery_arg = &dead;
	ks = px_ksink_new(&kc, err, sizeof(err));
	assert_non_null(ks);
	assert_int_equal(px_ksink_produce(ks, "sink", 0, "k", 1, "v", 1, NULL, 0, 0, NULL),
	                 PX_KSINK_QUEUED);
	px_ksink_free(&ks);
	assert_int_equal(atomic_load(&dead.bad), 1);
	assert_int_equal(atomic_load(&dead.maybe), 0);
}

static void test_bad_conf(void **state)
{
	(void)state;
	char err[256];
	const char *props[] = {"no.such.property", "1", NULL};
	struct px_ksink_conf kc = {.name = "bad", .bootstrap = "127.0.0.1:1", .props = props};
	assert_null(px_ksink_new(&kc, err, sizeof(err)));
	assert_non_null(strstr(err, "no.such.property"));
	const char *odd[] = {"linger.ms", NULL};
	kc.props = odd;
	assert_null(px_ksink_new(&kc, err, sizeof(err)));
	assert_non_null(strstr(err, "linger.ms"));
	kc.props = NULL;
	kc.bootstrap = "";
	assert_null(px_ksink_new(&kc, err, sizeof(err)));
	assert_non_null(strstr(err, "bootstrap"));
	/* Properties that are accepted are applied. */
	const char *ok[] = {"linger.ms", "1", "acks", "1", NULL};
	kc.bootstrap = "127.0.0.1:1";
	kc.props = ok;
	struct px_ksink *ks = px_ksink_new(&kc, err, sizeof(err));
	assert_non_null(ks);
	assert_string_equal(px_ksink_name(ks), "bad");
	px_ksink_free(&ks);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (!getenv("KWIRE_MOCKCLUSTER")) {
		fprintf(stderr, "test_px_ksink: KWIRE_MOCKCLUSTER is not set (ctest sets it)\n");
		return 1;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_budget_dead_cluster),
	    cmocka_unit_test(test_budget_small_records),
	    cmocka_unit_test(test_maybe_stored),
	    cmocka_unit_test(test_cluster_killed),
	    cmocka_unit_test(test_down_and_back),
	    cmocka_unit_test(test_bad_conf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
