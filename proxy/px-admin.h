/* px-admin.h: the proxy's admin endpoint (`--admin HOST:PORT`), an HTTP
 * server on its own thread (libevent evhttp):
 *
 *   GET /metrics   Prometheus text format (version 0.0.4)
 *   GET /healthz   "ok" while the proxy runs, "degraded: ..." while the
 *                  access log cannot write
 *   GET /brokers   the broker -> proxy port map as JSON
 *
 * Metrics are listed in docs/demo.md. The proxy's own counters are read
 * from px_stats_get()/px_api_stats_get(); latency histograms and per-topic
 * record counts are fed by the observer (px-log.h) through
 * px_admin_record(). */
#ifndef PX_ADMIN_H
#define PX_ADMIN_H

#include "kd-cur.h"
#include "kd-summary.h"
#include "px-t.h"

struct px_admin; /* opaque */
struct px_log;

/* Binds addr (an empty host means 127.0.0.1; port 0 = ephemeral) and
 * starts serving. px must outlive the admin endpoint. NULL on error. */
struct px_admin *px_admin_new(struct px *px, const struct px_hostport *addr, char *err,
                              size_t errlen);
/* Stops the server thread and frees; *adm = NULL. adm may point to NULL. */
void px_admin_free(struct px_admin **adm);
/* The bound port. */
uint16_t px_admin_port(const struct px_admin *adm);
/* Also export the access log's counters (may be NULL). */
void px_admin_set_log(struct px_admin *adm, struct px_log *log);

/* Accounts one pair: latency histogram of its API, per-topic produce
 * records/bytes (Produce requests answered without error, or acks=0) and
 * fetch records/bytes (Fetch responses). sum may be NULL (latency only).
 * Thread-safe, lock-free except for a short lock when sum names topics. */
void px_admin_record(struct px_admin *adm, const struct px_pair *pair,
                     const struct kd_summary *sum);

/* The page bodies, appended to w (used by the HTTP handlers, the demo's
 * summary and the tests). */
void px_admin_metrics(struct px_admin *adm, struct kd_wbuf *w);
void px_admin_brokers_json(struct px_admin *adm, struct kd_wbuf *w);
/* /rules: the rules in force (path, sha256, loaded_at, reloads, failures,
 * last_error, and every rule with its hits), or {"rules":null}. */
void px_admin_rules_json(struct px_admin *adm, struct kd_wbuf *w);
/* The /healthz body: "ok", or "degraded: ..." while the access log cannot
 * write (kwire still forwards; the status stays 200). Returns 1 when
 * degraded. */
int px_admin_health(struct px_admin *adm, struct kd_wbuf *w);

/* Per-topic totals, for the demo's summary. Returns 0, -1 if unknown. */
struct px_topic_totals {
	uint64_t produce_records, produce_bytes, fetch_records, fetch_bytes;
};
int px_admin_topic_totals(struct px_admin *adm, const char *topic, struct px_topic_totals *out);

#endif
