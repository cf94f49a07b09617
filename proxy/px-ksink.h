/* px-ksink.h: a Kafka producer that never blocks its caller (librdkafka).
 *
 * The proxy's sinks that write to a Kafka cluster (the audit's `to:
 * {kafka: ...}`, mirroring, `kwire replay`) all go through it. Its contract:
 *
 *   - px_ksink_produce() never blocks and never waits for the network: the
 *     message is copied into librdkafka's queue, or dropped and counted
 *     when the byte budget (max_queue_bytes: bytes of messages produced but
 *     not yet delivered or failed) or librdkafka's own queue is full. A
 *     sink cluster that is down fills the budget and then drops; it never
 *     slows the caller.
 *   - Delivery reports are served by the sink's own thread (rd_kafka_poll),
 *     which calls on_delivery, if set, once per message produced.
 *   - Counters (px_ksink_stats) are atomics: any thread may read them.
 *   - px_ksink_free() flushes for at most flush_timeout_ms, then purges
 *     what is left (those messages count as failed) and returns.
 *
 *	struct px_ksink_conf kc = {.name = "audit", .bootstrap = "h:9092",
 *	                           .max_queue_bytes = 16 << 20};
 *	struct px_ksink *ks = px_ksink_new(&kc, err, sizeof(err));
 *	px_ksink_produce(ks, "topic", -1, key, klen, val, vlen, hdrs, nh, 0, NULL);
 *	px_ksink_free(&ks);
 *
 * Thread-safe: any number of threads may produce to one sink. */
#ifndef PX_KSINK_H
#define PX_KSINK_H

#include <stddef.h>
#include <stdint.h>

#include "kd-cur.h"

struct px_ksink; /* opaque */

/* One delivery report, for on_delivery. err is librdkafka's
 * rd_kafka_resp_err_t (0: delivered); errstr its text. */
struct px_ksink_report {
	void *opaque; /* as given to px_ksink_produce */
	int err;
	const char *errstr;
	const char *topic;
	int32_t partition;  /* -1 when not delivered */
	int64_t offset;     /* -1 when not delivered */
	int64_t latency_us; /* from px_ksink_produce to the report */
	size_t bytes;       /* what the message counted against the budget */
	/* err set, but the cluster may have stored the message all the same:
	 * it timed out while sent and unanswered (librdkafka's
	 * RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED). */
	uint8_t maybe_stored;
};

typedef void px_ksink_delivery_fn(void *arg, const struct px_ksink_report *rep);
/* level: 0 errors, 1 warnings, 2 info, 3 debug. */
typedef void px_ksink_log_fn(void *arg, int level, const char *msg);

struct px_ksink_conf {
	const char *name;      /* for logs and the metrics label (sink="NAME"); required */
	const char *bootstrap; /* "host:port,..."; required */
	/* Extra librdkafka properties, as NULL-terminated pairs {"key",
	 * "value", ..., NULL} (security.protocol, sasl.*, ssl.*, linger.ms,
	 * acks, compression.type...); applied after kwire's defaults, so they
	 * win. NULL: none. */
	const char *const *props;
	size_t max_queue_bytes;    /* byte budget; 0: PX_KSINK_QUEUE_DEFAULT */
	unsigned flush_timeout_ms; /* at px_ksink_free; 0: PX_KSINK_FLUSH_DEFAULT */
	px_ksink_delivery_fn *on_delivery;
	void *delivery_arg;
	px_ksink_log_fn *log; /* NULL: stderr */
	void *log_arg;
};

#define PX_KSINK_QUEUE_DEFAULT ((size_t)16 << 20) /* 16 MiB */
#define PX_KSINK_FLUSH_DEFAULT 5000u
/* What one message counts against the budget on top of its key, value,
 * header names and values (librdkafka's own per-message overhead is of
 * this order), so that empty messages cannot queue without bound. */
#define PX_KSINK_MSG_OVERHEAD 64u

/* One record header. value NULL: a null header value. */
struct px_ksink_header {
	const char *name;
	size_t name_len;
	const void *value;
	size_t value_len;
};

/* Creates the producer (no network I/O yet: librdkafka connects in the
 * background) and starts its delivery thread. NULL with a message in err
 * when a property is refused or librdkafka cannot start. */
struct px_ksink *px_ksink_new(const struct px_ksink_conf *conf, char *err, size_t errlen);
/* Flushes for at most flush_timeout_ms, purges the rest, stops the
 * thread, frees; *ks = NULL. ks may point to NULL. */
void px_ksink_free(struct px_ksink **ks);

enum px_ksink_rc {
	PX_KSINK_QUEUED = 0,  /* copied into the queue; one report will follow */
	PX_KSINK_DROPPED = 1, /* not queued: over budget, queue full, or refused; counted */
};

/* Queues one message for topic (partition -1: the partitioner's choice,
 * by key). key and value may be NULL (null key, null value); everything is
 * copied before the call returns. timestamp_ms 0: now. opaque comes back
 * in the delivery report. Never blocks. */
int px_ksink_produce(struct px_ksink *ks, const char *topic, int32_t partition, const void *key,
                     size_t key_len, const void *value, size_t value_len,
                     const struct px_ksink_header *headers, unsigned nheaders, int64_t timestamp_ms,
                     void *opaque);

struct px_ksink_stats {
	uint64_t produced;        /* queued (PX_KSINK_QUEUED) */
	uint64_t delivered;       /* acknowledged by the sink cluster */
	uint64_t failed;          /* reported failed (timed out, refused, purged at free) */
	uint64_t maybe_stored;    /* of those, possibly stored (px_ksink_report.maybe_stored) */
	uint64_t dropped;         /* never queued (PX_KSINK_DROPPED) */
	uint64_t queue_bytes;     /* now: produced, not yet reported */
	uint64_t queue_bytes_max; /* high-water mark */
	uint64_t queue_budget;    /* max_queue_bytes */
	uint64_t latency_us_sum;  /* of delivered messages */
	uint64_t latency_us_max;
	uint64_t errors; /* librdkafka error events (e.g. every broker down) */
	int down;        /* px_ksink_down's state */
};

void px_ksink_stats(const struct px_ksink *ks, struct px_ksink_stats *out);

/* 1 while the sink's cluster is known down: librdkafka said every broker
 * was down while messages were queued (or before any was ever delivered:
 * a cluster that closes the idle connections of a sink with nothing to
 * send is not down), or said so while none were and then failed to
 * connect with some queued; and none was delivered since. A
 * caller that would rather not queue what cannot be sent (the mirror)
 * drops its messages instead. Once per PX_KSINK_PROBE_US it returns 0 all
 * the same (a probe): the message then queued is what tells, once
 * delivered, that the cluster is back. Any thread. */
int px_ksink_down(struct px_ksink *ks);
#define PX_KSINK_PROBE_US 1000000u
const char *px_ksink_name(const struct px_ksink *ks);

/* Appends the sinks' counters to w in Prometheus text format, one family
 * each: PREFIX_produced_total, PREFIX_delivered_total, PREFIX_failed_total,
 * PREFIX_dropped_total, PREFIX_queue_bytes, PREFIX_queue_bytes_max,
 * PREFIX_queue_budget_bytes, PREFIX_delivery_latency_seconds (a summary:
 * _sum and _count), PREFIX_errors_total; one series per sink, labelled
 * {sink="NAME"}. n may be 0 (the families are then described with no
 * series). */
void px_ksink_metrics(struct kd_wbuf *w, const char *prefix, struct px_ksink *const *sinks,
                      unsigned n);

#endif
