/* px-admin.c: the admin endpoint (px-admin.h): evhttp on its own thread
 * and event base, plus the metrics the proxy core does not keep itself
 * (latency histograms per API, per-topic record counts). */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "kd-api-keys-gen.h"
#include "kd-render.h"
#include "kd-schema.h"
#include "kd-topics.h"
#include "px-admin.h"
#include "px-quota.h"
#include "kd-summary.h"
#include "px-log.h"
#include "px-audit.h"
#include "px-rules.h"
#include "px-mirror.h"
#include "px-tap.h"
#include "px-sasl.h"
#include "px.h"
#include "rule.h"

/* Histogram upper bounds, microseconds (Prometheus "le" in seconds). */
static const uint64_t adm_bounds_us[] = {100,     250,     500,     1000,    2500,   5000,
                                         10000,   25000,   50000,   100000,  250000, 500000,
                                         1000000, 2500000, 5000000, 10000000};
#define ADM_NB (sizeof(adm_bounds_us) / sizeof(adm_bounds_us[0]))

#define ADM_TOPICS 1024   /* distinct topics tracked; more go to "_other" */
#define ADM_PRINCIPALS 64 /* distinct principals tracked; more go to "_other" */
#define ADM_TOPIC_LEN 250

struct adm_hist {
	_Atomic uint64_t b[ADM_NB + 1]; /* last: +Inf only */
	_Atomic uint64_t sum_us, count;
};

struct adm_topic {
	char name[ADM_TOPIC_LEN]; /* "" = free slot */
	uint64_t produce_records, produce_bytes, fetch_records, fetch_bytes;
	/* A topic seen by id only, its name not known yet: name is
	 * "topic-id:<uuid>" and the counts move to the name's slot once the
	 * proxy's topic map learns it (adm_fold_ids). */
	uint8_t by_id;
	uint8_t id[16];
};

struct px_admin {
	struct px *px;
	struct px_log *log;
	struct event_base *base;
	struct evhttp *http;
	struct event *stop_ev;
	pthread_t thread;
	int started;
	uint16_t port;
	int16_t api_max; /* histogram rows: keys 0..PX_API_MAX-1 */
	struct adm_hist hist[PX_API_MAX];

	pthread_mutex_t tmu;      /* guards topics */
	struct adm_topic *topics; /* open addressing, ADM_TOPICS slots */
	unsigned ntopics;
	struct adm_topic other;
	/* Requests per principal (mTLS, SASL), under tmu: the first
	 * ADM_PRINCIPALS seen get a series, later ones count as "_other"
	 * (bounded cardinality, whatever the clients present). */
	struct {
		char name[PX_PRINCIPAL_MAX];
		uint64_t requests;
	} principals[ADM_PRINCIPALS];
	unsigned nprincipals;
	uint64_t principal_other;

	/* Bodies decoded for the log and the metrics (per the summary): not
	 * decodable (copies cut at frame_copy_max aside), and decoded with
	 * something tolerated (bytes after the body). */
	_Atomic uint64_t body_decode_errors, body_decode_warnings;
};

/* ---- recording ---- */

static uint32_t adm_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

/* The slot for a topic name (creating it), under tmu. */
static struct adm_topic *adm_topic_slot(struct px_admin *adm, const char *name, size_t len)
{
	if (len >= ADM_TOPIC_LEN)
		return &adm->other;
	uint32_t h = adm_hash(name, len) % ADM_TOPICS;
	for (unsigned i = 0; i < ADM_TOPICS; i++) {
		struct adm_topic *t = &adm->topics[(h + i) % ADM_TOPICS];
		if (!t->name[0]) {
			if (adm->ntopics >= ADM_TOPICS * 3 / 4)
				return &adm->other;
			memcpy(t->name, name, len);
			t->name[len] = '\0';
			adm->ntopics++;
			return t;
		}
		if (strlen(t->name) == len && !memcmp(t->name, name, len))
			return t;
	}
	return &adm->other;
}

static void adm_principal_count(struct px_admin *adm, const char *principal)
{
	pthread_mutex_lock(&adm->tmu);
	unsigned i = 0;
	for (; i < adm->nprincipals; i++)
		if (!strcmp(adm->principals[i].name, principal))
			break;
	if (i == adm->nprincipals && i < ADM_PRINCIPALS) {
		snprintf(adm->principals[i].name, sizeof(adm->principals[i].name), "%s", principal);
		adm->nprincipals++;
	}
	if (i < ADM_PRINCIPALS)
		adm->principals[i].requests++;
	else
		adm->principal_other++;
	pthread_mutex_unlock(&adm->tmu);
}

void px_admin_record(struct px_admin *adm, const struct px_pair *pair, const struct kd_summary *sum)
{
	if (pair->api_key >= 0 && pair->api_key < PX_API_MAX && !pair->no_response) {
		struct adm_hist *hs = &adm->hist[pair->api_key];
		size_t b = 0;
		while (b < ADM_NB && pair->latency_us > adm_bounds_us[b])
			b++;
		atomic_fetch_add_explicit(&hs->b[b], 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&hs->sum_us, pair->latency_us, memory_order_relaxed);
		atomic_fetch_add_explicit(&hs->count, 1, memory_order_relaxed);
	}
	if (pair->principal)
		adm_principal_count(adm, pair->principal);
	if (!sum)
		return;
	unsigned errs = (!pair->req_trunc && (sum->flags & KD_SUM_REQ_BAD)) +
	                (!pair->resp_trunc && (sum->flags & KD_SUM_RESP_BAD));
	if (errs)
		atomic_fetch_add_explicit(&adm->body_decode_errors, errs, memory_order_relaxed);
	if (kd_sum_decode_warnings(sum))
		atomic_fetch_add_explicit(&adm->body_decode_warnings, kd_sum_decode_warnings(sum),
		                          memory_order_relaxed);
	if (pair->api_key != KD_API_PRODUCE && pair->api_key != KD_API_FETCH)
		return;
	int produce = pair->api_key == KD_API_PRODUCE;
	pthread_mutex_lock(&adm->tmu);
	for (unsigned i = 0; i < sum->ntp; i++) {
		const struct kd_sum_tp *tp = &sum->tp[i];
		if (!tp->has_records || tp->error)
			continue;
		struct kd_view name = kd_sum_view(sum, tp->topic);
		struct adm_topic *t = &adm->other;
		if (name.p) {
			t = adm_topic_slot(adm, (const char *)name.p, name.len);
		} else if (tp->has_topic_id) {
			char idb[KD_TOPIC_ID_TEXT];
			t = adm_topic_slot(adm, idb, kd_topic_id_text(tp->topic_id, idb));
			if (t != &adm->other && !t->by_id) {
				t->by_id = 1;
				memcpy(t->id, tp->topic_id, 16);
			}
		}
		if (produce) {
			t->produce_records += (uint64_t)tp->records;
			t->produce_bytes += tp->bytes;
		} else {
			t->fetch_records += (uint64_t)tp->records;
			t->fetch_bytes += tp->bytes;
		}
	}
	pthread_mutex_unlock(&adm->tmu);
}

/* Under tmu: the counts of topics seen by id only whose name the proxy's
 * map knows now move to the name's slot (a label follows the name as soon
 * as it is learnt; the id's series then stops). */
static void adm_fold_ids(struct px_admin *adm)
{
	struct kd_topics *map = px_topics(adm->px);
	for (unsigned i = 0; i < ADM_TOPICS; i++) {
		struct adm_topic *t = &adm->topics[i];
		if (!t->by_id ||
		    !(t->produce_records | t->produce_bytes | t->fetch_records | t->fetch_bytes))
			continue;
		struct kd_view name = kd_topics_get(map, t->id);
		if (name.null)
			continue;
		struct adm_topic *d = adm_topic_slot(adm, (const char *)name.p, name.len);
		if (d == t)
			continue;
		d->produce_records += t->produce_records;
		d->produce_bytes += t->produce_bytes;
		d->fetch_records += t->fetch_records;
		d->fetch_bytes += t->fetch_bytes;
		t->produce_records = t->produce_bytes = t->fetch_records = t->fetch_bytes = 0;
	}
}

int px_admin_topic_totals(struct px_admin *adm, const char *topic, struct px_topic_totals *out)
{
	int rc = -1;
	size_t len = strlen(topic);
	pthread_mutex_lock(&adm->tmu);
	adm_fold_ids(adm);
	uint32_t h = adm_hash(topic, len) % ADM_TOPICS;
	for (unsigned i = 0; i < ADM_TOPICS; i++) {
		struct adm_topic *t = &adm->topics[(h + i) % ADM_TOPICS];
		if (!t->name[0])
			break;
		if (!strcmp(t->name, topic)) {
			out->produce_records = t->produce_records;
			out->produce_bytes = t->produce_bytes;
			out->fetch_records = t->fetch_records;
			out->fetch_bytes = t->fetch_bytes;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&adm->tmu);
	return rc;
}

void px_admin_set_log(struct px_admin *adm, struct px_log *log)
{
	adm->log = log;
}

/* ---- rendering ---- */

static const char *adm_api_name(int16_t key, char buf[16])
{
	const char *name = kd_api_name(key);
	if (name)
		return name;
	snprintf(buf, 16, "api%d", key);
	return buf;
}

static void adm_counter(struct kd_wbuf *w, const char *name, const char *help, uint64_t v,
                        const char *type)
{
	kd_w_fmt(w, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name,
	         v);
}

static void adm_api_family(struct px_admin *adm, struct kd_wbuf *w, const char *name,
                           const char *help, int which)
{
	kd_w_fmt(w, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
	for (int16_t key = 0; key < PX_API_MAX; key++) {
		for (int16_t ver = 0; ver < PX_VER_MAX; ver++) {
			struct px_api_stats st;
			px_api_stats_get(adm->px, key, ver, &st);
			uint64_t v = which == 0   ? st.requests
			             : which == 1 ? st.responses
			                          : st.errors;
			if (!st.requests && !st.responses && !st.errors)
				continue;
			char nb[16];
			kd_w_fmt(w, "%s{api=\"%s\",api_key=\"%d\",version=\"%d\"} %" PRIu64 "\n",
			         name, adm_api_name(key, nb), key, ver, v);
		}
	}
}

static void adm_topic_line(struct kd_wbuf *w, const char *metric, const char *topic, uint64_t v)
{
	kd_w_fmt(w, "%s{topic=\"", metric);
	kd_w_prom_label(w, topic);
	kd_w_fmt(w, "\"} %" PRIu64 "\n", v);
}

/* TLS (docs/security.md): handshakes, refusals, clients on the wrong
 * listener, certificate reloads. */
static void adm_tls_metrics(struct px_admin *adm, struct kd_wbuf *w)
{
	struct px_tls_stats ts;
	px_tls_stats_get(adm->px, &ts);
	adm_counter(w, "kwire_tls_handshakes_total", "Client TLS handshakes completed.",
	            ts.handshakes, "counter");
	adm_counter(w, "kwire_tls_handshake_failures_total",
	            "Client TLS handshakes that failed (no or untrusted certificate, ...).",
	            ts.handshake_failures, "counter");
	adm_counter(w, "kwire_upstream_tls_failures_total",
	            "TLS handshakes with brokers that failed (certificate refused, ...).",
	            ts.upstream_failures, "counter");
	adm_counter(w, "kwire_tls_no_principal_total",
	            "Clients refused: no principal mapping rule applied to their certificate.",
	            ts.no_principal, "counter");
	kd_w_cstr(w,
	          "# HELP kwire_tls_wrong_protocol_total Clients refused for speaking the other "
	          "protocol than their listener.\n# TYPE kwire_tls_wrong_protocol_total counter\n");
	kd_w_fmt(w,
	         "kwire_tls_wrong_protocol_total{listener=\"plaintext\",client=\"tls\"} %" PRIu64
	         "\n",
	         ts.tls_on_plain);
	kd_w_fmt(w,
	         "kwire_tls_wrong_protocol_total{listener=\"tls\",client=\"plaintext\"} %" PRIu64
	         "\n",
	         ts.plain_on_tls);
	kd_w_fmt(w,
	         "kwire_tls_wrong_protocol_total{listener=\"tls\",client=\"other\"} %" PRIu64 "\n",
	         ts.not_tls);
	adm_counter(w, "kwire_tls_reloads_total", "Certificate reloads (SIGHUP or a changed file).",
	            ts.reloads, "counter");
	adm_counter(w, "kwire_tls_reload_failures_total",
	            "Certificate reloads that failed (the old certificates stayed).",
	            ts.reload_failures, "counter");
	adm_counter(w, "kwire_tls_ktls_tx_total", "TLS connections whose transmit is kernel TLS.",
	            ts.ktls_tx, "counter");
}

/* The rules' counters: reloads, per-rule hits (one series per rule of the
 * set in force: bounded by the file), and what the data path did. */
static void adm_rules_metrics(struct px_admin *adm, struct kd_wbuf *w, const struct px_stats *st)
{
	struct px_rules *pr = px_rules_of(adm->px);
	if (!pr)
		return;
	struct px_rules_state rst;
	struct rule_set *rs = px_rules_state(pr, &rst);
	adm_counter(w, "kwire_rules_reloads_total", "Rules files loaded after the first.",
	            rst.reloads, "counter");
	adm_counter(w, "kwire_rules_reload_failures_total",
	            "Rules reloads refused for errors (the running rules stayed).", rst.failures,
	            "counter");
	adm_counter(w, "kwire_rules_answered_total", "Requests kwire refused and answered itself.",
	            st->rules_answered, "counter");
	adm_counter(w, "kwire_rules_split_total",
	            "Requests forwarded without their refused topics.", st->rules_split, "counter");
	adm_counter(w, "kwire_rewrite_requests_total",
	            "Produce requests whose records rewrite rules changed.", st->rw_requests,
	            "counter");
	adm_counter(w, "kwire_rewrite_responses_total",
	            "Fetch responses whose records rewrite rules changed.", st->rw_responses,
	            "counter");
	adm_counter(w, "kwire_rewrite_records_total", "Records changed by rewrite rules.",
	            st->rw_records, "counter");
	adm_counter(w, "kwire_rewrite_passed_total",
	            "Records or partitions a rewrite rule could not rewrite, passed as they were "
	            "(on_error: pass).",
	            st->rw_passed, "counter");
	adm_counter(w, "kwire_rewrite_refused_total",
	            "Partitions refused with INVALID_RECORD because their records could not be "
	            "rewritten (on_error: refuse).",
	            st->rw_refused, "counter");
	adm_counter(w, "kwire_rules_dropped_total",
	            "Refused Produce requests with acks=0 (no answer is due).", st->rules_dropped,
	            "counter");
	adm_counter(w, "kwire_rules_closed_total",
	            "Connections closed for a refused request whose body does not decode.",
	            st->rules_closed, "counter");
	adm_counter(w, "kwire_rules_filtered_total",
	            "Topics the rules deny, hidden from or shown with their error in Metadata "
	            "answers.",
	            st->rules_filtered, "counter");
	if (px_quota_of(adm->px))
		px_quota_metrics(px_quota_of(adm->px), w);
	const char *h = "kwire_rule_hits_total";
	kd_w_fmt(w,
	         "# HELP %s Requests each rule of the set in force matched.\n# TYPE %s counter\n",
	         h, h);
	for (unsigned i = 0; i < rs->n; i++) {
		kd_w_fmt(w, "%s{rule=\"", h);
		kd_w_prom_label(w, rs->rules[i].name);
		kd_w_fmt(w, "\",section=\"%s\"} %" PRIu64 "\n",
		         rule_section_name(rs->rules[i].section),
		         atomic_load_explicit(&rs->rules[i].hits, memory_order_relaxed));
	}
	rule_set_unref(&rs);
}

/* /rules: the set in force, when it was loaded, and hits per rule. */
void px_admin_rules_json(struct px_admin *adm, struct kd_wbuf *w)
{
	struct px_rules *pr = px_rules_of(adm->px);
	if (!pr) {
		kd_w_cstr(w, "{\"rules\":null}\n");
		return;
	}
	struct px_rules_state rst;
	struct rule_set *rs = px_rules_state(pr, &rst);
	char ts[40];
	kd_sum_fmt_ts(rst.loaded_us, ts, sizeof(ts));
	kd_w_cstr(w, "{\"path\":");
	kd_sum_json_str(w, (const uint8_t *)rst.path, strlen(rst.path));
	kd_w_fmt(w,
	         ",\"sha256\":\"%s\",\"loaded_at\":\"%s\",\"reloads\":%" PRIu64
	         ",\"failures\":%" PRIu64 ",\"last_error\":",
	         rst.sha256, ts, rst.reloads, rst.failures);
	if (rst.last_error[0])
		kd_sum_json_str(w, (const uint8_t *)rst.last_error, strlen(rst.last_error));
	else
		kd_w_cstr(w, "null");
	kd_w_cstr(w, ",\"rules\":[");
	for (unsigned i = 0; i < rs->n; i++) {
		const struct rule *rule = &rs->rules[i];
		kd_w_cstr(w, i ? ",{\"name\":" : "{\"name\":");
		kd_sum_json_str(w, (const uint8_t *)rule->name, strlen(rule->name));
		kd_w_fmt(w, ",\"section\":\"%s\",\"line\":%u,\"hits\":%" PRIu64 "}",
		         rule_section_name(rule->section), rule->line,
		         atomic_load_explicit(&rule->hits, memory_order_relaxed));
	}
	kd_w_cstr(w, "]}\n");
	rule_set_unref(&rs);
}

void px_admin_metrics(struct px_admin *adm, struct kd_wbuf *w)
{
	struct px_stats st;
	px_stats_get(adm->px, &st);

	adm_api_family(adm, w, "kwire_requests_total", "Requests forwarded, per API and version.",
	               0);
	adm_api_family(adm, w, "kwire_responses_total", "Responses forwarded, per API and version.",
	               1);
	adm_api_family(adm, w, "kwire_errors_total",
	               "Responses carrying a non-zero ErrorCode, and requests lost with their "
	               "connection, per API and version.",
	               2);

	const char *h = "kwire_request_latency_seconds";
	kd_w_fmt(w,
	         "# HELP %s Time from a request's last byte to its response's last byte, "
	         "per API.\n# TYPE %s histogram\n",
	         h, h);
	for (int16_t key = 0; key < PX_API_MAX; key++) {
		struct adm_hist *hs = &adm->hist[key];
		uint64_t count = atomic_load_explicit(&hs->count, memory_order_relaxed);
		if (!count)
			continue;
		char nb[16];
		const char *api = adm_api_name(key, nb);
		uint64_t cum = 0;
		for (size_t b = 0; b <= ADM_NB; b++) {
			cum += atomic_load_explicit(&hs->b[b], memory_order_relaxed);
			if (b < ADM_NB)
				kd_w_fmt(w, "%s_bucket{api=\"%s\",le=\"%g\"} %" PRIu64 "\n", h, api,
				         (double)adm_bounds_us[b] / 1e6, cum);
			else
				kd_w_fmt(w, "%s_bucket{api=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", h,
				         api, cum);
		}
		kd_w_fmt(w, "%s_sum{api=\"%s\"} %.6f\n", h, api,
		         (double)atomic_load_explicit(&hs->sum_us, memory_order_relaxed) / 1e6);
		kd_w_fmt(w, "%s_count{api=\"%s\"} %" PRIu64 "\n", h, api, cum);
	}

	adm_counter(w, "kwire_client_bytes_received_total", "Bytes read from clients.",
	            st.bytes_in_client, "counter");
	adm_counter(w, "kwire_client_bytes_sent_total", "Bytes written to clients.",
	            st.bytes_out_client, "counter");
	adm_counter(w, "kwire_upstream_bytes_received_total", "Bytes read from brokers.",
	            st.bytes_in_upstream, "counter");
	adm_counter(w, "kwire_upstream_bytes_sent_total", "Bytes written to brokers.",
	            st.bytes_out_upstream, "counter");
	adm_counter(w, "kwire_connections_accepted_total", "Client connections accepted.",
	            st.conns_accepted, "counter");
	adm_counter(w, "kwire_connections_active", "Client connections open now.", st.conns_active,
	            "gauge");
	adm_counter(w, "kwire_upstream_connect_failures_total",
	            "Connections to brokers that failed.", st.upstream_connect_failures, "counter");
	adm_counter(w, "kwire_decode_errors_total", "Frames or headers kwire could not decode.",
	            st.decode_errors, "counter");
	adm_counter(w, "kwire_decode_warnings_total",
	            "Frames kwire decoded and forwarded with something it tolerated (bytes after "
	            "a complete body).",
	            st.decode_warnings, "counter");
	adm_counter(w, "kwire_body_decode_errors_total",
	            "Message bodies the access log and metrics could not decode.",
	            atomic_load_explicit(&adm->body_decode_errors, memory_order_relaxed),
	            "counter");
	adm_counter(w, "kwire_body_decode_warnings_total",
	            "Message bodies the access log and metrics decoded with something tolerated "
	            "(bytes after a complete body).",
	            atomic_load_explicit(&adm->body_decode_warnings, memory_order_relaxed),
	            "counter");
	adm_counter(w, "kwire_topic_ids_known", "Topic ids whose name the proxy has learnt.",
	            kd_topics_count(px_topics(adm->px)), "gauge");
	adm_counter(w, "kwire_frames_too_large_total", "Frames over max_frame_bytes.",
	            st.frames_too_large, "counter");
	adm_counter(w, "kwire_accept_errors_total",
	            "Failed accept() calls (e.g. out of file descriptors); each pauses accepting "
	            "on that listener for 100 ms.",
	            st.accept_errors, "counter");
	adm_rules_metrics(adm, w, &st);
	px_tap_metrics(px_tap_of(adm->px), px_tapreg_of(adm->px), w);
	if (px_audit_of(adm->px))
		px_audit_metrics(px_audit_of(adm->px), w);
	px_sasl_metrics(px_sasl_of(adm->px), w);
	px_mirror_metrics(px_mirror_of(adm->px), w);
	adm_counter(w, "kwire_responses_rewritten_total",
	            "Responses whose broker addresses kwire rewrote.", st.responses_rewritten,
	            "counter");
	const struct {
		const char *name, *help, *type;
		uint64_t v;
	} dp[] = {
	    {"kwire_unpaired_responses_total", "Responses to no request in flight (closed).",
	     "counter", st.unpaired_responses},
	    {"kwire_inflight_max", "Most requests in flight on one connection.", "gauge",
	     st.inflight_max},
	    {"kwire_client_queued_bytes_max", "Most bytes queued to one client.", "gauge",
	     st.client_out_max},
	    {"kwire_edit_held_bytes_max", "Most bytes of one response held back to edit it.",
	     "gauge", st.edit_held_max},
	    {"kwire_client_pauses_inflight_total", "Client reads paused at max_inflight.",
	     "counter", st.pauses_inflight},
	    {"kwire_client_pauses_buffer_total", "Client reads paused: broker output full.",
	     "counter", st.pauses_client_buffer},
	    {"kwire_upstream_pauses_total", "Broker reads paused: client output full.", "counter",
	     st.pauses_upstream},
	};
	for (size_t i = 0; i < sizeof(dp) / sizeof(dp[0]); i++)
		adm_counter(w, dp[i].name, dp[i].help, dp[i].v, dp[i].type);
	if (adm->log) {
		struct px_log_stats ls;
		px_log_stats_get(adm->log, &ls);
		adm_counter(w, "kwire_access_log_lines_total", "Access log lines written.",
		            ls.lines, "counter");
		adm_counter(w, "kwire_access_log_dropped_total",
		            "Access log lines dropped because the queue was full.", ls.dropped,
		            "counter");
		adm_counter(w, "kwire_access_log_write_errors_total",
		            "Access log writes or reopens that failed (full disk, deleted file).",
		            ls.write_errors, "counter");
	}

	static const struct {
		const char *name, *help;
		size_t off;
	} tm[] = {
	    {"kwire_topic_produce_records_total", "Records produced, per topic.",
	     offsetof(struct adm_topic, produce_records)},
	    {"kwire_topic_produce_bytes_total", "Record batch bytes produced, per topic.",
	     offsetof(struct adm_topic, produce_bytes)},
	    {"kwire_topic_fetch_records_total", "Records fetched, per topic.",
	     offsetof(struct adm_topic, fetch_records)},
	    {"kwire_topic_fetch_bytes_total", "Record batch bytes fetched, per topic.",
	     offsetof(struct adm_topic, fetch_bytes)},
	};
	adm_tls_metrics(adm, w);
	pthread_mutex_lock(&adm->tmu);
	kd_w_cstr(w, "# HELP kwire_principal_requests_total Requests per authenticated principal "
	             "(the first 64 seen; later ones as _other).\n"
	             "# TYPE kwire_principal_requests_total counter\n");
	for (unsigned i = 0; i < adm->nprincipals; i++) {
		kd_w_cstr(w, "kwire_principal_requests_total{principal=\"");
		kd_w_prom_label(w, adm->principals[i].name);
		kd_w_fmt(w, "\"} %" PRIu64 "\n", adm->principals[i].requests);
	}
	if (adm->principal_other)
		kd_w_fmt(w, "kwire_principal_requests_total{principal=\"_other\"} %" PRIu64 "\n",
		         adm->principal_other);
	adm_fold_ids(adm);
	for (size_t m = 0; m < sizeof(tm) / sizeof(tm[0]); m++) {
		kd_w_fmt(w, "# HELP %s %s\n# TYPE %s counter\n", tm[m].name, tm[m].help,
		         tm[m].name);
		for (unsigned i = 0; i < ADM_TOPICS; i++) {
			const struct adm_topic *t = &adm->topics[i];
			if (t->by_id && !(t->produce_records | t->produce_bytes | t->fetch_records |
			                  t->fetch_bytes))
				continue; /* folded into its name */
			if (t->name[0])
				adm_topic_line(w, tm[m].name, t->name,
				               *(const uint64_t *)((const char *)t + tm[m].off));
		}
		const uint64_t *ov = (const uint64_t *)((const char *)&adm->other + tm[m].off);
		if (*ov)
			adm_topic_line(w, tm[m].name, "_other", *ov);
	}
	pthread_mutex_unlock(&adm->tmu);
}

int px_admin_health(struct px_admin *adm, struct kd_wbuf *w)
{
	char what[192];
	if (adm->log && px_log_health(adm->log, what, sizeof(what))) {
		kd_w_fmt(w, "degraded: access log: %s\n", what);
		return 1;
	}
	kd_w_cstr(w, "ok\n");
	return 0;
}

void px_admin_brokers_json(struct px_admin *adm, struct kd_wbuf *w)
{
	struct px_broker_ent ents[64];
	unsigned n = px_broker_map(adm->px, ents, 64);
	struct px_broker_ent *all = ents;
	if (n > 64) {
		/* More brokers than the stack array: ask again with room for all
		 * (the map may have changed in between; take what fits). */
		all = calloc(n, sizeof(*all));
		if (all) {
			unsigned got = px_broker_map(adm->px, all, n);
			n = got < n ? got : n;
		} else {
			all = ents;
			n = 64;
		}
	}
	kd_w_cstr(w, "{\"bootstrap_port\":");
	kd_w_fmt(w, "%u", px_listen_port(adm->px));
	kd_w_cstr(w, ",\"brokers\":[");
	for (unsigned i = 0; i < n; i++) {
		const struct px_broker_ent *e = &all[i];
		if (i)
			kd_w_cstr(w, ",");
		kd_w_fmt(w, "{\"node_id\":%" PRId32 ",\"host\":", e->node_id);
		kd_sum_json_str(w, (const uint8_t *)e->host, strlen(e->host));
		kd_w_fmt(w, ",\"port\":%u,\"proxy_port\":%u,\"listening\":%s}", e->port,
		         e->proxy_port, e->listening ? "true" : "false");
	}
	kd_w_cstr(w, "]}\n");
	if (all != ents)
		free(all);
}

/* ---- HTTP ---- */

static void adm_reply(struct evhttp_request *req, const char *ctype, struct kd_wbuf *w)
{
	struct evbuffer *out = evbuffer_new();
	if (!out || w->err) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
	} else {
		evbuffer_add(out, w->p, w->len);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
		evhttp_send_reply(req, HTTP_OK, "OK", out);
	}
	if (out)
		evbuffer_free(out);
	kd_wbuf_free(w);
}

static void adm_get_metrics(struct evhttp_request *req, void *arg)
{
	struct kd_wbuf w = {0};
	px_admin_metrics(arg, &w);
	adm_reply(req, "text/plain; version=0.0.4; charset=utf-8", &w);
}

static void adm_get_brokers(struct evhttp_request *req, void *arg)
{
	struct kd_wbuf w = {0};
	px_admin_brokers_json(arg, &w);
	adm_reply(req, "application/json", &w);
}

static void adm_get_rules(struct evhttp_request *req, void *arg)
{
	struct kd_wbuf w = {0};
	px_admin_rules_json(arg, &w);
	adm_reply(req, "application/json", &w);
}

static void adm_get_healthz(struct evhttp_request *req, void *arg)
{
	struct kd_wbuf w = {0};
	px_admin_health(arg, &w);
	adm_reply(req, "text/plain", &w);
}

static void adm_not_found(struct evhttp_request *req, void *arg)
{
	evhttp_send_error(req, HTTP_NOTFOUND, NULL);
}

/* Out of descriptors, accept() fails at once on every poll while a scrape
 * waits in the backlog: evhttp's listener would spin (and libevent log a
 * line per try). Pause it for 100 ms instead, as the proxy's listeners do
 * (px-listen.c); the proxy's own accept errors say why. */
static void adm_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	evconnlistener_enable(arg);
}

/* arg is evhttp's, not ours: the listener alone is enough. The one-shot
 * timer lives on the admin base; it cannot fire after px_admin_free,
 * which stops the loop before freeing the listener. */
static void adm_accept_err(struct evconnlistener *lsn, void *arg)
{
	struct timeval tv = {0, 100000};
	(void)arg;
	evconnlistener_disable(lsn);
	event_base_once(evconnlistener_get_base(lsn), -1, EV_TIMEOUT, adm_resume_cb, lsn, &tv);
}

static void adm_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static void *adm_thread(void *arg)
{
	struct px_admin *adm = arg;
	event_base_dispatch(adm->base);
	return NULL;
}

struct px_admin *px_admin_new(struct px *px, const struct px_hostport *addr, char *err,
                              size_t errlen)
{
	struct px_admin *adm = calloc(1, sizeof(*adm));
	if (!adm) {
		snprintf(err, errlen, "admin: out of memory");
		return NULL;
	}
	adm->px = px;
	pthread_mutex_init(&adm->tmu, NULL);
	adm->topics = calloc(ADM_TOPICS, sizeof(*adm->topics));
	if (!adm->topics) {
		snprintf(err, errlen, "admin: out of memory");
		goto fail;
	}
	evthread_use_pthreads(); /* px_admin_free breaks the loop from another thread */
	adm->base = event_base_new();
	adm->http = adm->base ? evhttp_new(adm->base) : NULL;
	adm->stop_ev = adm->base ? event_new(adm->base, -1, 0, adm_stop_cb, adm->base) : NULL;
	if (!adm->http || !adm->stop_ev) {
		snprintf(err, errlen, "admin: cannot create the HTTP server");
		goto fail;
	}
	evhttp_set_allowed_methods(adm->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_cb(adm->http, "/metrics", adm_get_metrics, adm);
	evhttp_set_cb(adm->http, "/healthz", adm_get_healthz, adm);
	evhttp_set_cb(adm->http, "/brokers", adm_get_brokers, adm);
	evhttp_set_cb(adm->http, "/rules", adm_get_rules, adm);
	evhttp_set_gencb(adm->http, adm_not_found, adm);
	evhttp_set_timeout(adm->http, 10);

	const char *host = addr->host[0] ? addr->host : "127.0.0.1";
	struct evhttp_bound_socket *bs =
	    evhttp_bind_socket_with_handle(adm->http, host, addr->port);
	if (!bs) {
		snprintf(err, errlen, "admin: cannot listen on %s:%u", host, addr->port);
		goto fail;
	}
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(bs), adm_accept_err);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl) == 0)
		adm->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
		                                           : ((struct sockaddr_in *)&ss)->sin_port);
	if (pthread_create(&adm->thread, NULL, adm_thread, adm)) {
		snprintf(err, errlen, "admin: cannot start its thread");
		goto fail;
	}
	adm->started = 1;
	return adm;
fail:
	px_admin_free(&adm);
	return NULL;
}

uint16_t px_admin_port(const struct px_admin *adm)
{
	return adm->port;
}

void px_admin_free(struct px_admin **admp)
{
	struct px_admin *adm = *admp;
	if (!adm)
		return;
	if (adm->started) {
		event_active(adm->stop_ev, EV_READ, 0);
		pthread_join(adm->thread, NULL);
	}
	if (adm->stop_ev)
		event_free(adm->stop_ev);

	if (adm->http)
		evhttp_free(adm->http);
	if (adm->base)
		event_base_free(adm->base);
	pthread_mutex_destroy(&adm->tmu);
	free(adm->topics);
	free(adm);
	*admp = NULL;
}
