/* px-audit.h: the proxy's audit trail (docs/rules.md, "audit").
 *
 * What is recorded, one JSON object per line (the keys are in
 * docs/rules.md):
 *   - for each audit rule that matches a request, what its `log:` says:
 *     nothing, the pair's summary (the access log's kd-summary JSON), or
 *     the records (key, value, headers; cut at max_value_bytes, redacted
 *     as `redact:` says): a Produce's from its request, a Fetch's from its
 *     response;
 *   - every refusal (access deny, policy) and every throttle (quotas), to
 *     the proxy's default audit sink (`audit_log`) and to the sinks of the
 *     audit rules that match the request.
 *
 * Sinks: a JSON-lines file (opened when the rules are loaded, reopened on
 * SIGHUP, written by a thread of its own from a bounded buffer) or a Kafka
 * topic (px-ksink.h). Nothing here ever blocks a forwarding thread: a full
 * buffer or queue drops the record and counts it. A rules reload opens
 * the sinks the new set names before it is published and closes the ones
 * it no longer names; unchanged sinks stay open.
 *
 * Threads: px_audit_request, px_audit_response, px_audit_throttle are
 * called on worker threads, concurrently; px_audit_check (the rules
 * loader's check, px-rules.h) on the thread that loads; px_audit_reopen on
 * the signal thread. */
#ifndef PX_AUDIT_H
#define PX_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "kd-cur.h"
#include "px-judge.h"
#include "px-t.h"
#include "rule-t.h"

struct px_audit;      /* opaque */
struct px_audit_pend; /* what a request leaves for its response */

typedef void px_audit_log_fn(void *arg, int level, const char *msg);

struct px_audit_conf {
	const char *default_file; /* audit_log: JSON-lines file for refusals, or NULL */
	const char *upstream;     /* "h:p,..." for Kafka sinks without bootstrap */
	size_t file_buffer_bytes; /* per file sink; 0: PX_AUDIT_FILE_BUFFER */
	px_audit_log_fn *log;
	void *log_arg;
};

#define PX_AUDIT_FILE_BUFFER ((size_t)4 << 20) /* 4 MiB queued per file sink */

/* Opens the default sink (if any). NULL with a message in err. */
struct px_audit *px_audit_new(const struct px_audit_conf *conf, char *err, size_t errlen);
/* The proxy's audit: the default sink is conf->audit_log; Kafka sinks
 * without a bootstrap write to conf's upstream; the sinks of rules (may be
 * NULL) are opened now and at each reload (px_rules_set_check). NULL with
 * a message in err when a sink cannot be opened. */
struct px_conf;
struct px_rules;
struct px_audit *px_audit_for(const struct px_conf *conf, struct px_rules *rules,
                              px_audit_log_fn *log, void *log_arg, char *err, size_t errlen);
/* Closes every sink (files flushed, Kafka sinks flushed for at most 5 s);
 * *a = NULL. No other call may be running. */
void px_audit_free(struct px_audit **a);

/* The rules loader's check (px_rules_set_check): opens the sinks rs's
 * audit rules name (files relative to the rules file's folder), keeps the
 * open ones it still names, closes the rest. -1 with a message when a sink
 * cannot be opened (the running rules and sinks stay). */
int px_audit_check(void *a, struct rule_set *rs, char *err, size_t errlen);

/* SIGHUP: every file sink is reopened by its thread (log rotation). */
void px_audit_reopen(struct px_audit *a);

/* Who sent a request (the views need only live during the call). */
struct px_audit_who {
	const char *client_addr; /* "ip:port" */
	struct kd_view client_id;
	const char *principal; /* "" none */
	int32_t broker_id;     /* -1: bootstrap */
	int16_t api_key, api_version;
	int32_t correlation_id;
};

/* Right after px_judge under rs (j: the worker's scratch it used, still
 * holding the request's decoded body and facts; jd: its judgement): writes
 * the refusal, if any, and the records of a Produce for audit rules with
 * `log: records`. Returns what the response must complete (a summary, a
 * Fetch's records), or NULL. The caller keeps it with the request and
 * hands it to px_audit_response, then frees it. */
struct px_audit_pend *px_audit_request(struct px_audit *a, const struct rule_set *rs,
                                       const struct rule_judge *j, const struct px_judged *jd,
                                       const struct px_audit_who *who);
/* How many bytes of the response frame (total bytes) pend wants copied. */
size_t px_audit_copy_need(const struct px_audit_pend *pend, size_t total);
/* The pair is done (pair->resp_frame holds at least px_audit_copy_need
 * bytes of the response, or none): writes pend's summaries and records.
 * map (may be NULL) names the topics a Fetch v13+ response gives by id. */
struct kd_topics;
void px_audit_response(struct px_audit *a, struct px_audit_pend *pend, const struct px_pair *pair,
                       const struct kd_topics *map);
void px_audit_pend_free(struct px_audit_pend **pend);

/* A throttle of ms by quota rule on key (a client id, principal, source or
 * topic), for the request who sent: recorded to the default sink and to the
 * sinks of the audit rules in audits (may be NULL), rules of rs (the set
 * the request was judged under). Any thread; never blocks. */
void px_audit_throttle(struct px_audit *a, const struct rule_set *rs,
                       const struct px_audit_who *who, const char *rule, const char *key,
                       uint32_t ms, const struct rule_hit *audits, unsigned naudits);

/* Counters, per sink. */
struct px_audit_sink_stats {
	char name[300];   /* the file's path, or "kafka:TOPIC@BOOTSTRAP" */
	uint64_t records; /* handed to the sink */
	uint64_t written; /* file: written; Kafka: acknowledged */
	uint64_t dropped; /* buffer/queue full, or undeliverable */
	uint64_t errors;  /* file: failed writes or opens; Kafka: error events */
};
/* Fills up to max rows; returns the number of sinks. */
unsigned px_audit_stats(struct px_audit *a, struct px_audit_sink_stats *out, unsigned max);
/* The /metrics families: kwire_audit_records_total, _written_total,
 * _dropped_total, kwire_audit_sink_errors_total (label sink), and the
 * Kafka sinks' kwire_audit_kafka_* (px_ksink_metrics). */
void px_audit_metrics(struct px_audit *a, struct kd_wbuf *w);

#endif
