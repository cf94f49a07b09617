/* px-ksink.c: a Kafka producer that never blocks its caller (px-ksink.h).
 *
 * The byte budget is kwire's own, on top of librdkafka's queue limits: a
 * message counts its key, value, headers and PX_KSINK_MSG_OVERHEAD from
 * px_ksink_produce() until its delivery report. librdkafka's
 * queue.buffering.max.kbytes is set to the budget too, so that its queue
 * cannot grow past it either, and its message count limit out of the way
 * (the budget alone decides); produce is called without
 * RD_KAFKA_MSG_F_BLOCK, so a full queue is an immediate QUEUE_FULL, which
 * is a drop. */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "kd-render.h"
#include "px-ksink.h"

struct px_ksink {
	rd_kafka_t *rk;
	char name[128];
	size_t budget;
	unsigned flush_ms;
	px_ksink_delivery_fn *on_delivery;
	void *delivery_arg;
	px_ksink_log_fn *log;
	void *log_arg;
	pthread_t thread;
	int started;
	_Atomic int stop;
	_Atomic uint64_t produced, delivered, failed, maybe_stored, dropped, queue_bytes,
	    queue_bytes_max, latency_sum, latency_max, errors;
	_Atomic int down_logged; /* "every broker down" logged since the last delivery */
	/* Every broker down while messages were queued (or before the
	 * first delivery), and no delivery since (px_ksink_down); the last
	 * probe let through meanwhile. */
	_Atomic int down;
	_Atomic int all_down; /* librdkafka said every broker down, no delivery since */
	_Atomic uint64_t probe_us;
};

/* What a queued message carries to its report: the caller's opaque and
 * what it counted against the budget. */
struct ks_msg {
	void *opaque;
	size_t bytes;
};

static void kslog(struct px_ksink *ks, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void kslog(struct px_ksink *ks, int level, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ks->log)
		ks->log(ks->log_arg, level, msg);
	else
		fprintf(stderr, "kwire: %s\n", msg);
}

static void ks_max(_Atomic uint64_t *m, uint64_t v)
{
	uint64_t cur = atomic_load_explicit(m, memory_order_relaxed);
	while (v > cur && !atomic_compare_exchange_weak_explicit(m, &cur, v, memory_order_relaxed,
	                                                         memory_order_relaxed))
		;
}

#define KS_INC(ks, f, n) atomic_fetch_add_explicit(&(ks)->f, (n), memory_order_relaxed)
#define KS_GET(ks, f) atomic_load_explicit(&(ks)->f, memory_order_relaxed)

/* librdkafka's delivery report, on the sink's thread (rd_kafka_poll). */
static void ks_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	struct px_ksink *ks = opaque;
	struct ks_msg *km = m->_private;
	int64_t lat = rd_kafka_message_latency(m);
	if (lat < 0)
		lat = 0;
	atomic_fetch_sub_explicit(&ks->queue_bytes, km->bytes, memory_order_relaxed);
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		KS_INC(ks, delivered, 1);
		KS_INC(ks, latency_sum, (uint64_t)lat);
		ks_max(&ks->latency_max, (uint64_t)lat);
		atomic_store_explicit(&ks->down_logged, 0, memory_order_relaxed);
		atomic_store_explicit(&ks->down, 0, memory_order_relaxed);
		atomic_store_explicit(&ks->all_down, 0, memory_order_relaxed);
	} else {
		KS_INC(ks, failed, 1);
	}
	uint8_t maybe =
	    m->err && rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED;
	if (maybe)
		KS_INC(ks, maybe_stored, 1);
	if (ks->on_delivery) {
		struct px_ksink_report rep = {
		    .opaque = km->opaque,
		    .err = m->err,
		    .errstr = m->err ? rd_kafka_err2str(m->err) : "",
		    .topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "",
		    .partition = m->err ? -1 : m->partition,
		    .offset = m->err ? -1 : m->offset,
		    .latency_us = lat,
		    .bytes = km->bytes,
		    .maybe_stored = maybe,
		};
		ks->on_delivery(ks->delivery_arg, &rep);
	}
	free(km);
}

/* librdkafka's error events: logged once until a delivery succeeds again
 * (a cluster that is down raises one every reconnect attempt). */
static void ks_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	struct px_ksink *ks = opaque;
	KS_INC(ks, errors, 1);
	/* Down only when it matters: a cluster that closed the idle
	 * connections of a sink with nothing queued is not down (one never
	 * reached yet is). Every broker down while idle, then a connection
	 * that fails once there is something to send, is down: librdkafka
	 * says "every broker down" only once until one is up again. */
	int queued = KS_GET(ks, queue_bytes) > 0;
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
		atomic_store_explicit(&ks->all_down, 1, memory_order_relaxed);
		if (queued || !KS_GET(ks, delivered))
			atomic_store_explicit(&ks->down, 1, memory_order_relaxed);
	} else if (queued && atomic_load_explicit(&ks->all_down, memory_order_relaxed) &&
	           (err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__RESOLVE)) {
		atomic_store_explicit(&ks->down, 1, memory_order_relaxed);
	}
	if (!atomic_exchange_explicit(&ks->down_logged, 1, memory_order_relaxed))
		kslog(ks, 1,
		      "kafka sink %s: %s: %s (records are queued up to %zu bytes, then "
		      "dropped and counted)",
		      ks->name, rd_kafka_err2name((rd_kafka_resp_err_t)err), reason, ks->budget);
}

/* librdkafka's log lines go to kwire's log at debug level: it logs every
 * failed reconnect, and ks_error already says once that the sink is in
 * trouble. */
static void ks_logcb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	struct px_ksink *ks = rd_kafka_opaque(rk);
	kslog(ks, 3, "kafka sink %s: %s: %s (librdkafka level %d)", ks->name, fac, buf, level);
}

static void *ks_main(void *arg)
{
	struct px_ksink *ks = arg;
	while (!atomic_load_explicit(&ks->stop, memory_order_acquire))
		rd_kafka_poll(ks->rk, 100);
	return NULL;
}

static int ks_set(rd_kafka_conf_t *kc, const char *key, const char *val, char *err, size_t errlen)
{
	char e[256];
	if (rd_kafka_conf_set(kc, key, val, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "kafka sink property %s: %s", key, e);
		return -1;
	}
	return 0;
}

struct px_ksink *px_ksink_new(const struct px_ksink_conf *conf, char *err, size_t errlen)
{
	if (!conf->bootstrap || !conf->bootstrap[0]) {
		snprintf(err, errlen, "kafka sink %s: no bootstrap servers",
		         conf->name ? conf->name : "");
		return NULL;
	}
	struct px_ksink *ks = calloc(1, sizeof(*ks));
	if (!ks) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(ks->name, sizeof(ks->name), "%s", conf->name ? conf->name : "kafka");
	ks->budget = conf->max_queue_bytes ? conf->max_queue_bytes : PX_KSINK_QUEUE_DEFAULT;
	ks->flush_ms = conf->flush_timeout_ms ? conf->flush_timeout_ms : PX_KSINK_FLUSH_DEFAULT;
	ks->on_delivery = conf->on_delivery;
	ks->delivery_arg = conf->delivery_arg;
	ks->log = conf->log;
	ks->log_arg = conf->log_arg;

	rd_kafka_conf_t *kc = rd_kafka_conf_new();
	char kbytes[32];
	/* librdkafka's own queue limit, in KiB, no larger than the budget. */
	snprintf(kbytes, sizeof(kbytes), "%zu", ks->budget / 1024 ? ks->budget / 1024 : 1);
	/* Defaults: the broker acknowledges what is written (acks=all, the
	 * librdkafka default too), undelivered messages are given up after
	 * 30 s rather than 5 minutes so that a dead sink frees its budget,
	 * and the producer is idempotent-off (a sink is not exactly-once). */
	if (ks_set(kc, "bootstrap.servers", conf->bootstrap, err, errlen) ||
	    ks_set(kc, "queue.buffering.max.kbytes", kbytes, err, errlen) ||
	    /* The budget is in bytes: librdkafka's count limit (100,000
	     * messages by default) would drop small records well before it. */
	    ks_set(kc, "queue.buffering.max.messages", "2147483647", err, errlen) ||
	    ks_set(kc, "message.timeout.ms", "30000", err, errlen) ||
	    ks_set(kc, "client.id", "kwire", err, errlen))
		goto fail_conf;
	for (const char *const *p = conf->props; p && p[0]; p += 2) {
		if (!p[1]) {
			snprintf(err, errlen, "kafka sink %s: property %s has no value", ks->name,
			         p[0]);
			goto fail_conf;
		}
		if (ks_set(kc, p[0], p[1], err, errlen))
			goto fail_conf;
	}
	rd_kafka_conf_set_opaque(kc, ks);
	rd_kafka_conf_set_dr_msg_cb(kc, ks_dr);
	rd_kafka_conf_set_error_cb(kc, ks_error);
	rd_kafka_conf_set_log_cb(kc, ks_logcb);
	char e[512];
	ks->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, e, sizeof(e));
	if (!ks->rk) {
		snprintf(err, errlen, "kafka sink %s: %s", ks->name, e);
		goto fail_conf;
	}
	if (pthread_create(&ks->thread, NULL, ks_main, ks)) {
		snprintf(err, errlen, "kafka sink %s: cannot start its thread", ks->name);
		rd_kafka_destroy(ks->rk);
		free(ks);
		return NULL;
	}
	ks->started = 1;
	return ks;

fail_conf:
	rd_kafka_conf_destroy(kc);
	free(ks);
	return NULL;
}

int px_ksink_produce(struct px_ksink *ks, const char *topic, int32_t partition, const void *key,
                     size_t key_len, const void *value, size_t value_len,
                     const struct px_ksink_header *headers, unsigned nheaders, int64_t timestamp_ms,
                     void *opaque)
{
	size_t bytes = PX_KSINK_MSG_OVERHEAD + key_len + value_len;
	for (unsigned i = 0; i < nheaders; i++)
		bytes += headers[i].name_len + headers[i].value_len;
	/* Reserve the bytes first, so that producers racing for the last of
	 * the budget cannot overshoot it together. */
	uint64_t prev = atomic_fetch_add_explicit(&ks->queue_bytes, bytes, memory_order_relaxed);
	if (prev + bytes > ks->budget) {
		atomic_fetch_sub_explicit(&ks->queue_bytes, bytes, memory_order_relaxed);
		KS_INC(ks, dropped, 1);
		return PX_KSINK_DROPPED;
	}
	struct ks_msg *km = malloc(sizeof(*km));
	rd_kafka_headers_t *hdrs = nheaders ? rd_kafka_headers_new(nheaders) : NULL;
	if (!km || (nheaders && !hdrs))
		goto drop;
	km->opaque = opaque;
	km->bytes = bytes;
	for (unsigned i = 0; i < nheaders; i++)
		if (rd_kafka_header_add(hdrs, headers[i].name, (ssize_t)headers[i].name_len,
		                        headers[i].value, (ssize_t)headers[i].value_len))
			goto drop;
	rd_kafka_resp_err_t rc;
	if (hdrs)
		rc = rd_kafka_producev(
		    ks->rk, RD_KAFKA_V_TOPIC(topic),
		    RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		    RD_KAFKA_V_KEY((void *)(uintptr_t)key, key ? key_len : 0),
		    RD_KAFKA_V_VALUE((void *)(uintptr_t)value, value ? value_len : 0),
		    RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_HEADERS(hdrs),
		    RD_KAFKA_V_OPAQUE(km), RD_KAFKA_V_END);
	else
		rc = rd_kafka_producev(
		    ks->rk, RD_KAFKA_V_TOPIC(topic),
		    RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		    RD_KAFKA_V_KEY((void *)(uintptr_t)key, key ? key_len : 0),
		    RD_KAFKA_V_VALUE((void *)(uintptr_t)value, value ? value_len : 0),
		    RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_OPAQUE(km), RD_KAFKA_V_END);
	if (rc != RD_KAFKA_RESP_ERR_NO_ERROR)
		goto drop; /* headers are ours still when producev fails */
	KS_INC(ks, produced, 1);
	ks_max(&ks->queue_bytes_max, prev + bytes);
	return PX_KSINK_QUEUED;
drop:
	if (hdrs)
		rd_kafka_headers_destroy(hdrs);
	free(km);
	atomic_fetch_sub_explicit(&ks->queue_bytes, bytes, memory_order_relaxed);
	KS_INC(ks, dropped, 1);
	return PX_KSINK_DROPPED;
}

void px_ksink_free(struct px_ksink **pks)
{
	struct px_ksink *ks = *pks;
	*pks = NULL;
	if (!ks)
		return;
	if (ks->started) {
		atomic_store_explicit(&ks->stop, 1, memory_order_release);
		pthread_join(ks->thread, NULL);
	}
	/* Bounded flush (it serves delivery reports on this thread now), then
	 * whatever is left is purged: its reports say failed. */
	if (rd_kafka_flush(ks->rk, (int)ks->flush_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		uint64_t left = KS_GET(ks, queue_bytes);
		rd_kafka_purge(ks->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
		                           RD_KAFKA_PURGE_F_NON_BLOCKING);
		rd_kafka_poll(ks->rk, 0);
		/* In-flight purges are reported once their request is given up. */
		for (int i = 0; i < 50 && rd_kafka_outq_len(ks->rk) > 0; i++)
			rd_kafka_poll(ks->rk, 10);
		kslog(ks, 1, "kafka sink %s: %" PRIu64 " bytes undelivered after %u ms at stop",
		      ks->name, left, ks->flush_ms);
	}
	rd_kafka_destroy(ks->rk);
	free(ks);
}

int px_ksink_down(struct px_ksink *ks)
{
	if (!atomic_load_explicit(&ks->down, memory_order_relaxed))
		return 0;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	uint64_t last = atomic_load_explicit(&ks->probe_us, memory_order_relaxed);
	if (now - last >= PX_KSINK_PROBE_US &&
	    atomic_compare_exchange_strong(&ks->probe_us, &last, now))
		return 0; /* the probe: its delivery will say the cluster is back */
	return 1;
}

void px_ksink_stats(const struct px_ksink *ks, struct px_ksink_stats *out)
{
	struct px_ksink *k = (struct px_ksink *)ks; /* atomics are read only */
	memset(out, 0, sizeof(*out));
	out->produced = KS_GET(k, produced);
	out->delivered = KS_GET(k, delivered);
	out->failed = KS_GET(k, failed);
	out->maybe_stored = KS_GET(k, maybe_stored);
	out->dropped = KS_GET(k, dropped);
	out->queue_bytes = KS_GET(k, queue_bytes);
	out->down = atomic_load_explicit(&k->down, memory_order_relaxed);
	out->queue_bytes_max = KS_GET(k, queue_bytes_max);
	out->queue_budget = ks->budget;
	out->latency_us_sum = KS_GET(k, latency_sum);
	out->latency_us_max = KS_GET(k, latency_max);
	out->errors = KS_GET(k, errors);
}

const char *px_ksink_name(const struct px_ksink *ks)
{
	return ks->name;
}

/* ---- /metrics ---- */

void px_ksink_metrics(struct kd_wbuf *w, const char *prefix, struct px_ksink *const *sinks,
                      unsigned n)
{
	static const struct {
		const char *suffix, *type, *help;
	} fam[] = {
	    {"produced_total", "counter", "Messages queued to the Kafka sink."},
	    {"delivered_total", "counter", "Messages the sink cluster acknowledged."},
	    {"failed_total", "counter",
	     "Messages queued but not delivered (timed out, refused, purged at stop)."},
	    {"dropped_total", "counter",
	     "Messages never queued: over the byte budget or the queue was full."},
	    {"queue_bytes", "gauge", "Bytes queued and not yet delivered or failed."},
	    {"queue_bytes_max", "gauge", "Most bytes ever queued at once."},
	    {"queue_budget_bytes", "gauge", "The byte budget (max_queue_bytes)."},
	    {"delivery_latency_seconds", "summary",
	     "Delivery latency of delivered messages, from produce to acknowledgement."},
	    {"errors_total", "counter",
	     "librdkafka error events (e.g. every broker of the sink cluster down)."},
	    {"down", "gauge",
	     "1 while every broker of the sink cluster is known down (px_ksink_down: the "
	     "mirror then drops instead of queueing), else 0."},
	};
	for (unsigned f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
		kd_w_fmt(w, "# HELP %s_%s %s\n# TYPE %s_%s %s\n", prefix, fam[f].suffix,
		         fam[f].help, prefix, fam[f].suffix, fam[f].type);
		for (unsigned i = 0; i < n; i++) {
			struct px_ksink_stats st;
			px_ksink_stats(sinks[i], &st);
			uint64_t v[] = {
			    st.produced,    st.delivered,       st.failed,       st.dropped,
			    st.queue_bytes, st.queue_bytes_max, st.queue_budget, 0,
			    st.errors,      (uint64_t)st.down};
			if (!strcmp(fam[f].type, "summary")) {
				kd_w_fmt(w, "%s_%s_sum{sink=\"", prefix, fam[f].suffix);
				kd_w_prom_label(w, sinks[i]->name);
				kd_w_fmt(w, "\"} %.6f\n", (double)st.latency_us_sum / 1e6);
				kd_w_fmt(w, "%s_%s_count{sink=\"", prefix, fam[f].suffix);
				kd_w_prom_label(w, sinks[i]->name);
				kd_w_fmt(w, "\"} %" PRIu64 "\n", st.delivered);
				continue;
			}
			kd_w_fmt(w, "%s_%s{sink=\"", prefix, fam[f].suffix);
			kd_w_prom_label(w, sinks[i]->name);
			kd_w_fmt(w, "\"} %" PRIu64 "\n", v[f]);
		}
	}
}
