/* px-quota.c: quotas applied by the proxy (px-quota.h).
 *
 * Metrics: throttle time and throttles per (quota rule, key) have one
 * series per pair, at most PX_QUOTA_SERIES of them; past that, the pair
 * with the least throttle time so far gives its place to the new one and
 * its counts go to its rule's key="other" series (so the keys shown are
 * the most throttled ones, and every counter only grows). Clients choose
 * their client ids: the label set must not grow with them. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd-cur.h"
#include "kd-render.h"
#include "kd-schema.h"
#include "px-audit.h"
#include "px-quota.h"
#include "px.h"
#include "rule.h"

#define PX_QUOTA_SERIES 32 /* (rule, key) series in /metrics */
#define PX_QUOTA_OTHERS 64 /* rules with an "other" series */

struct qseries {
	char rule[RULE_NAME_MAX];
	char key[PX_JUDGE_KEY];
	uint64_t ms, count;
};

struct px_quota {
	struct rule_quotas *rates;
	pthread_mutex_t mu; /* series, others */
	struct qseries series[PX_QUOTA_SERIES];
	unsigned nseries;
	struct qseries others[PX_QUOTA_OTHERS];
	unsigned nothers;
	_Atomic uint64_t noted[PX_Q_NPATCH];
	_Atomic uint64_t ms_total, throttles;
};

struct px_quota *px_quota_new(unsigned max_keys)
{
	struct px_quota *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->rates = rule_quotas_new(max_keys);
	if (!q->rates) {
		free(q);
		return NULL;
	}
	pthread_mutex_init(&q->mu, NULL);
	return q;
}

void px_quota_free(struct px_quota **qp)
{
	struct px_quota *q = *qp;
	*qp = NULL;
	if (!q)
		return;
	rule_quotas_free(&q->rates);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

void px_qreq_free(struct px_qreq **qp)
{
	struct px_qreq *qr = *qp;
	*qp = NULL;
	if (!qr)
		return;
	rule_set_unref(&qr->rs);
	free(qr);
}

struct px_qlast {
	struct rule_set *rs; /* held: the hits' rules */
	unsigned n;
	struct px_qhit hits[RULE_MAX_HITS];
};

int px_quota_remember(struct px_qlast **lp, struct rule_set *rs, const struct px_judged *jd)
{
	struct px_qlast *l = *lp;
	if (!l && !(l = *lp = calloc(1, sizeof(*l))))
		return -1;
	if (l->rs != rs) {
		rule_set_unref(&l->rs);
		rule_set_ref(rs);
		l->rs = rs;
	}
	l->n = jd->nquotas;
	for (unsigned i = 0; i < jd->nquotas; i++) {
		l->hits[i].rule = jd->quotas[i].rule;
		memcpy(l->hits[i].key, jd->keys[i], sizeof(l->hits[i].key));
	}
	return 0;
}

uint64_t px_quota_wait(struct px_quota *q, const struct px_qlast *l, uint64_t now_us)
{
	int64_t until = 0;
	for (unsigned i = 0; i < l->n; i++) {
		int64_t u = rule_quota_until(q->rates, l->hits[i].rule, l->hits[i].key,
		                             strlen(l->hits[i].key));
		if (u > until)
			until = u;
	}
	uint64_t us = until > 0 ? (uint64_t)until * 1000 : 0;
	return us > now_us ? us : 0;
}

uint64_t px_quota_timer_at(uint64_t mute_us, uint64_t hold_us)
{
	uint64_t at = mute_us;
	if (hold_us && (!at || hold_us < at))
		at = hold_us;
	return at;
}

void px_qlast_free(struct px_qlast **lp)
{
	struct px_qlast *l = *lp;
	*lp = NULL;
	if (!l)
		return;
	rule_set_unref(&l->rs);
	free(l);
}

void px_quota_note(struct px_quota *q, int what)
{
	atomic_fetch_add_explicit(&q->noted[what], 1, memory_order_relaxed);
}

/* A label value: printable ASCII, others as '?' (labels are UTF-8, and
 * client ids are whatever the client sent). */
static void label_copy(char *dst, size_t cap, const char *src)
{
	size_t i = 0;
	for (; src[i] && i + 1 < cap; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = '\0';
}

static void series_add(struct px_quota *q, const char *rule, const char *key, uint32_t ms)
{
	pthread_mutex_lock(&q->mu);
	struct qseries *s = NULL, *least = NULL;
	for (unsigned i = 0; i < q->nseries && !s; i++) {
		struct qseries *c = &q->series[i];
		if (!strcmp(c->rule, rule) && !strcmp(c->key, key))
			s = c;
		else if (!least || c->ms < least->ms)
			least = c;
	}
	if (!s && q->nseries < PX_QUOTA_SERIES) {
		s = &q->series[q->nseries++];
	} else if (!s) {
		/* Full: the least throttled pair folds into its rule's "other". */
		struct qseries *o = NULL;
		for (unsigned i = 0; i < q->nothers && !o; i++)
			if (!strcmp(q->others[i].rule, least->rule))
				o = &q->others[i];
		if (!o && q->nothers < PX_QUOTA_OTHERS) {
			o = &q->others[q->nothers++];
			snprintf(o->rule, sizeof(o->rule), "%s", least->rule);
			snprintf(o->key, sizeof(o->key), "other");
		} else if (!o) {
			/* Out of rule slots (rules renamed by reloads): one shared. */
			o = &q->others[PX_QUOTA_OTHERS - 1];
			snprintf(o->rule, sizeof(o->rule), "*");
		}
		o->ms += least->ms;
		o->count += least->count;
		s = least;
	}
	if (s->rule[0] == '\0' || strcmp(s->rule, rule) || strcmp(s->key, key)) {
		memset(s, 0, sizeof(*s));
		label_copy(s->rule, sizeof(s->rule), rule);
		label_copy(s->key, sizeof(s->key), key);
	}
	s->ms += ms;
	s->count++;
	pthread_mutex_unlock(&q->mu);
}

void px_quota_throttled(struct px *px, struct px_quota *q, const struct px_quota_who *who,
                        const struct rule *rule, const char *key, int kind, uint32_t ms)
{
	static const char *const kinds[] = {"produce bytes", "fetch bytes", "requests"};
	atomic_fetch_add_explicit(&q->ms_total, ms, memory_order_relaxed);
	atomic_fetch_add_explicit(&q->throttles, 1, memory_order_relaxed);
	char clean[PX_JUDGE_KEY];
	label_copy(clean, sizeof(clean), key);
	series_add(q, rule->name, clean, ms);
	struct px_audit *audit = px_audit_of(px);
	if (audit) {
		/* To the default sink: a throttle is decided when its rate is
		 * counted (a Fetch's at its response), apart from the request's
		 * audit rules (docs/rules.md). */
		struct px_audit_who aw = {who->client_addr,   who->client_id, who->principal,
		                          who->broker_id,     who->api_key,   who->api_version,
		                          who->correlation_id};
		px_audit_throttle(audit, NULL, &aw, rule->name, key, ms, NULL, 0);
	}
	const char *api = kd_api_name(who->api_key);
	px_log(px, 3, "%s: %s v%d: quota '%s' (%s, key %s) throttles for %u ms", who->client_addr,
	       api ? api : "?", who->api_version, rule->name,
	       kind >= 0 && kind <= RULE_Q_REQUESTS ? kinds[kind] : "?", clean, ms);
}

/* Records amount of kind for one hit; the throttle it asks for. */
static uint32_t count(struct px *px, struct px_quota *q, const struct px_quota_who *who,
                      const struct rule *rule, const char *key, int kind, double amount,
                      uint64_t now_us)
{
	uint32_t ms = rule_quota_record(q->rates, rule, key, strlen(key), kind, amount,
	                                (int64_t)(now_us / 1000));
	if (ms)
		px_quota_throttled(px, q, who, rule, key, kind, ms);
	return ms;
}

long px_quota_request(struct px *px, struct px_quota *q, struct rule_set *rs,
                      const struct px_judged *jd, const struct px_quota_who *who, int forwarded,
                      uint64_t now_us, struct px_qreq **qp)
{
	uint32_t thr = 0, ms;
	unsigned nfetch = 0;
	*qp = NULL;
	for (unsigned i = 0; i < jd->nquotas; i++) {
		const struct rule *rule = jd->quotas[i].rule;
		const char *key = jd->keys[i];
		if (rule->requests_ps > 0 &&
		    (ms = count(px, q, who, rule, key, RULE_Q_REQUESTS, 1, now_us)) > thr)
			thr = ms;
		if (rule->produce_bps && forwarded && jd->qbytes[i] > 0 &&
		    (ms = count(px, q, who, rule, key, RULE_Q_PRODUCE, jd->qbytes[i], now_us)) >
		        thr)
			thr = ms;
		if (rule->fetch_bps && forwarded && who->api_key == KD_API_FETCH)
			nfetch++;
	}
	if (!thr && !nfetch)
		return 0;
	struct px_qreq *qr = calloc(1, sizeof(*qr) + nfetch * sizeof(qr->fetch[0]));
	if (!qr)
		return -1;
	qr->ms = thr;
	for (unsigned i = 0; i < jd->nquotas && nfetch; i++) {
		const struct rule *rule = jd->quotas[i].rule;
		if (!rule->fetch_bps)
			continue;
		qr->fetch[qr->nfetch].rule = rule;
		memcpy(qr->fetch[qr->nfetch].key, jd->keys[i], sizeof(qr->fetch[0].key));
		qr->nfetch++;
	}
	if (qr->nfetch) {
		/* The rules must outlive a reload until the response comes. */
		rule_set_ref(rs);
		qr->rs = rs;
	}
	*qp = qr;
	return thr;
}

uint32_t px_quota_response(struct px *px, struct px_quota *q, struct px_qreq *qr,
                           const struct px_quota_who *who, uint32_t size, uint64_t now_us)
{
	uint32_t thr = qr->ms, ms;
	for (unsigned i = 0; i < qr->nfetch; i++)
		if ((ms = count(px, q, who, qr->fetch[i].rule, qr->fetch[i].key, RULE_Q_FETCH,
		                (double)size, now_us)) > thr)
			thr = ms;
	qr->nfetch = 0;
	rule_set_unref(&qr->rs);
	qr->ms = thr;
	return thr;
}

static void w_series(struct kd_wbuf *w, const char *name, const struct qseries *s, int secs)
{
	kd_w_fmt(w, "%s{rule=\"", name);
	kd_w_prom_label(w, s->rule);
	kd_w_cstr(w, "\",key=\"");
	kd_w_prom_label(w, s->key);
	if (secs)
		kd_w_fmt(w, "\"} %.3f\n", (double)s->ms / 1000.0);
	else
		kd_w_fmt(w, "\"} %" PRIu64 "\n", s->count);
}

void px_quota_metrics(struct px_quota *q, struct kd_wbuf *w)
{
	static const struct {
		const char *name, *help;
	} noted[PX_Q_NPATCH] = {
	    {"kwire_quota_muted_total",
	     "Times a client connection was not read for a throttle (KIP-219)."},
	    {"kwire_quota_held_total",
	     "Responses held back for their throttle (versions before KIP-219)."},
	    {"kwire_quota_patched_total", "Responses whose ThrottleTimeMs kwire raised."},
	};
	for (int i = 0; i < PX_Q_NPATCH; i++)
		kd_w_fmt(w, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", noted[i].name,
		         noted[i].help, noted[i].name, noted[i].name,
		         atomic_load_explicit(&q->noted[i], memory_order_relaxed));
	uint64_t keys, evicted;
	rule_quotas_counts(q->rates, &keys, &evicted);
	kd_w_fmt(w,
	         "# HELP kwire_quota_keys (quota rule, key) pairs whose rates are kept.\n"
	         "# TYPE kwire_quota_keys gauge\nkwire_quota_keys %" PRIu64 "\n"
	         "# HELP kwire_quota_keys_evicted_total Pairs forgotten to stay within the bound.\n"
	         "# TYPE kwire_quota_keys_evicted_total counter\n"
	         "kwire_quota_keys_evicted_total %" PRIu64 "\n",
	         keys, evicted);
	const char *ts = "kwire_quota_throttle_seconds_total", *tc = "kwire_quota_throttles_total";
	pthread_mutex_lock(&q->mu);
	kd_w_fmt(w,
	         "# HELP %s Throttle time quotas asked for, per quota rule and key (the %d most "
	         "throttled keys; the rest as key=\"other\").\n# TYPE %s counter\n",
	         ts, PX_QUOTA_SERIES, ts);
	for (unsigned i = 0; i < q->nseries; i++)
		w_series(w, ts, &q->series[i], 1);
	for (unsigned i = 0; i < q->nothers; i++)
		w_series(w, ts, &q->others[i], 1);
	kd_w_fmt(w, "# HELP %s Requests throttled, per quota rule and key.\n# TYPE %s counter\n",
	         tc, tc);
	for (unsigned i = 0; i < q->nseries; i++)
		w_series(w, tc, &q->series[i], 0);
	for (unsigned i = 0; i < q->nothers; i++)
		w_series(w, tc, &q->others[i], 0);
	pthread_mutex_unlock(&q->mu);
}
