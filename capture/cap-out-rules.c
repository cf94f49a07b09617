/* cap-out-rules.c: `kwire decode --rules FILE`: the rules engine run over a
 * capture, to see what a rules file would do before it is deployed.
 *
 * Every request is judged as the proxy judges it (rule_facts_read, then
 * rule_eval) and each action a rule takes is reported: a deny, a policy
 * refusal (whole request or some topics), a quota throttle and an audit.
 * Quotas are simulated with the capture's own timestamps: request counts
 * and Produce request sizes when the request is seen, Fetch response bytes
 * when its response is. One line per action (a JSON object with --format
 * json), then a table per rule. */
#define CAP_AN_PRIVATE
#include <stdlib.h>
#include <string.h>

#include "cap-analyze.h"
#include "kd-render.h"
#include "kd-schema.h"
#include "kd-stream.h"
#include "kd-topics.h"
#include "kd-tree.h"
#include "rule.h"

#define QUOTA_KEYS_MAX 100000 /* (rule, key) rate states kept */

struct rule_ctr {
	uint64_t denied, refused, throttled, throttle_ms, max_throttle_ms, audited;
};

struct an_rules {
	struct rule_set *rs;
	struct rule_quotas *quotas;
	struct rule_judge rj;
	struct rule_ctr *ctr; /* per rule */
	uint64_t judged, refused, split, throttled, audited;
};

struct an_rules *an_rules_new(const char *path, char *err, size_t errlen)
{
	struct an_rules *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->rs = rule_set_load(path, err, errlen);
	if (!r->rs)
		goto fail;
	r->quotas = rule_quotas_new(QUOTA_KEYS_MAX);
	r->ctr = calloc(r->rs->n ? r->rs->n : 1, sizeof(*r->ctr));
	if (!r->quotas || !r->ctr) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return r;
fail:
	an_rules_free(&r);
	return NULL;
}

void an_rules_free(struct an_rules **pr)
{
	struct an_rules *r = *pr;
	*pr = NULL;
	if (!r)
		return;
	rule_set_unref(&r->rs);
	rule_quotas_free(&r->quotas);
	rule_judge_free(&r->rj);
	free(r->ctr);
	free(r);
}

static struct rule_ctr *ctr(struct an_rules *r, const struct rule *rule)
{
	return &r->ctr[rule->idx];
}

/* One action line: text or a JSON object. */
static void action(struct cap_an *an, const struct an_flow *fl, int64_t ts_us,
                   const struct rule_req *req, int32_t corr, const char *what,
                   const struct rule *rule, int16_t error, int topic, uint32_t throttle_ms,
                   const char *key)
{
	struct kd_wbuf *w = &an->ob;
	char tsbuf[40];
	kd_sum_fmt_ts(ts_us, tsbuf, sizeof(tsbuf));
	const char *api = kd_api_name(req->api_key) ? kd_api_name(req->api_key) : "?";
	const struct kd_view *tn = topic >= 0 ? &req->topics[topic].name : NULL;
	if (an->opts.format == CAP_AN_JSON) {
		kd_w_cstr(w, "{\"ts\":\"");
		kd_w_cstr(w, tsbuf);
		kd_w_cstr(w, "\",\"client\":");
		kd_sum_json_str(w, (const uint8_t *)an_flow_client(fl), strlen(an_flow_client(fl)));
		kd_w_cstr(w, ",\"broker\":");
		kd_sum_json_str(w, (const uint8_t *)an_flow_broker(fl), strlen(an_flow_broker(fl)));
		kd_w_fmt(w,
		         ",\"api\":\"%s\",\"version\":%d,\"correlation_id\":%d,\"client_id\":", api,
		         req->api_version, corr);
		kd_sum_json_str(w, req->client_id.p, req->client_id.len);
		kd_w_fmt(w, ",\"action\":\"%s\",\"section\":\"%s\",\"rule\":", what,
		         rule_section_name(rule->section));
		kd_sum_json_str(w, (const uint8_t *)rule->name, strlen(rule->name));
		if (error)
			kd_w_fmt(w, ",\"error\":\"%s\"", kd_error_name(error));
		if (tn) {
			kd_w_cstr(w, ",\"topic\":");
			kd_sum_json_str(w, tn->p, tn->len);
		}
		if (throttle_ms)
			kd_w_fmt(w, ",\"throttle_ms\":%u", throttle_ms);
		if (key) {
			kd_w_cstr(w, ",\"key\":");
			kd_sum_json_str(w, (const uint8_t *)key, strlen(key));
		}
		kd_w_cstr(w, "}\n");
		return;
	}
	kd_w_fmt(w, "%s %s -> %s %s v%d #%d client_id=", tsbuf, an_flow_client(fl),
	         an_flow_broker(fl), api, req->api_version, corr);
	kd_w_raw(w, req->client_id.p, req->client_id.len);
	kd_w_fmt(w, ": %s by %s rule '%s'", what, rule_section_name(rule->section), rule->name);
	if (error)
		kd_w_fmt(w, " with %s", kd_error_name(error));
	if (tn) {
		kd_w_cstr(w, " topic ");
		kd_w_raw(w, tn->p, tn->len);
	}
	if (throttle_ms)
		kd_w_fmt(w, " for %u ms", throttle_ms);
	if (key)
		kd_w_fmt(w, " (key %s)", key);
	kd_w_cstr(w, "\n");
}

static void throttle_check(struct cap_an *an, const struct an_flow *fl, struct an_rules *r,
                           const struct rule_req *req, int32_t corr, const struct rule *rule,
                           const char *key, int kind, double amount, int64_t ts_us)
{
	uint32_t ms =
	    rule_quota_record(r->quotas, rule, key, strlen(key), kind, amount, ts_us / 1000);
	if (!ms)
		return;
	struct rule_ctr *c = ctr(r, rule);
	c->throttled++;
	c->throttle_ms += ms;
	if (ms > c->max_throttle_ms)
		c->max_throttle_ms = ms;
	r->throttled++;
	action(an, fl, ts_us, req, corr, "throttle", rule, 0, -1, ms, key);
}

void an_rules_request(struct cap_an *an, const struct an_flow *fl, const struct kd_event *ev,
                      struct an_rules_pend *rp)
{
	struct an_rules *r = an->rules;
	const struct kd_req_hdr *h = &ev->req_hdr;
	int has_body = (ev->flags & KD_EVF_BODY) && !(ev->flags & KD_EVF_GAP);
	memset(rp, 0, sizeof(*rp));
	/* A capture does not say which listener: no broker matcher applies. */
	struct rule_who who = {.broker_id = -2};
	an_flow_client_addr(fl, &who.src_family, who.src_addr);
	struct rule_verdict v;
	if (rule_judge(&r->rj, r->rs, h, has_body ? ev->body.p : NULL, has_body ? ev->body.len : 0,
	               an->topics, &who, &v) != KD_OK) {
		an_problem(an, fl, "rules: out of memory");
		return;
	}
	struct rule_req *req = &r->rj.facts.req;
	r->judged++;
	int64_t ts = (int64_t)ev->ts_us;
	int32_t corr = h->correlation_id;
	if (v.error) {
		r->refused++;
		struct rule_ctr *c = ctr(r, v.rule);
		if (v.rule->section == RULE_ACCESS)
			c->denied++;
		else
			c->refused++;
		action(an, fl, ts, req, corr, v.rule->section == RULE_ACCESS ? "deny" : "refuse",
		       v.rule, v.error, req->ntopics == 1 ? 0 : -1, 0, NULL);
	} else if (v.split) {
		r->split++;
		for (unsigned t = 0; t < req->ntopics; t++) {
			if (!r->rj.tv[t].error)
				continue;
			const struct rule *by = r->rj.tv[t].rule;
			if (by->section == RULE_ACCESS)
				ctr(r, by)->denied++;
			else
				ctr(r, by)->refused++;
			action(an, fl, ts, req, corr,
			       by->section == RULE_ACCESS ? "deny" : "refuse", by,
			       r->rj.tv[t].error, (int)t, 0, NULL);
		}
	}
	for (unsigned i = 0; i < v.naudits; i++) {
		ctr(r, v.audits[i].rule)->audited++;
		r->audited++;
		action(an, fl, ts, req, corr, "audit", v.audits[i].rule, 0, v.audits[i].topic, 0,
		       NULL);
	}
	/* Quotas: requests and Produce bytes now, Fetch bytes at the response. */
	for (unsigned i = 0; i < v.nquotas; i++) {
		const struct rule_hit *q = &v.quotas[i];
		char key[AN_RULES_KEY];
		rule_quota_key(q, req, key, sizeof(key));
		if (q->rule->requests_ps > 0)
			throttle_check(an, fl, r, req, corr, q->rule, key, RULE_Q_REQUESTS, 1, ts);
		if (q->rule->produce_bps && req->api_key == KD_API_PRODUCE && !v.error) {
			/* The request's size, as a broker (and the proxy) counts it. */
			double bytes = rule_quota_produce_bytes(q, req, &v, ev->frame_len);
			if (bytes > 0)
				throttle_check(an, fl, r, req, corr, q->rule, key, RULE_Q_PRODUCE,
				               bytes, ts);
		}
		if (q->rule->fetch_bps && req->api_key == KD_API_FETCH &&
		    rp->nfetch < AN_RULES_FETCH_HITS) {
			rp->fetch[rp->nfetch].rule = q->rule;
			memcpy(rp->fetch[rp->nfetch].key, key, sizeof(key));
			rp->nfetch++;
		}
	}
	rp->corr = corr;
	rp->api_key = req->api_key;
	rp->api_version = req->api_version;
	size_t cl = req->client_id.len < sizeof(rp->client_id) - 1 ? req->client_id.len
	                                                           : sizeof(rp->client_id) - 1;
	if (cl)
		memcpy(rp->client_id, req->client_id.p, cl);
	rp->client_id[cl] = '\0';
}

void an_rules_response(struct cap_an *an, const struct an_flow *fl, const struct an_rules_pend *rp,
                       uint64_t resp_bytes, int64_t ts_us)
{
	struct an_rules *r = an->rules;
	if (!rp->nfetch)
		return;
	struct rule_req req;
	memset(&req, 0, sizeof(req));
	req.api_key = rp->api_key;
	req.api_version = rp->api_version;
	req.client_id =
	    (struct kd_view){(const uint8_t *)rp->client_id, (uint32_t)strlen(rp->client_id), 0};
	for (unsigned i = 0; i < rp->nfetch; i++)
		throttle_check(an, fl, r, &req, rp->corr, rp->fetch[i].rule, rp->fetch[i].key,
		               RULE_Q_FETCH, (double)resp_bytes, ts_us);
}

void an_rules_report(struct cap_an *an)
{
	struct an_rules *r = an->rules;
	struct kd_wbuf *w = &an->ob;
	const struct rule_set *rs = r->rs;
	if (an->opts.format == CAP_AN_JSON) {
		kd_w_cstr(w, "{\"rules\":{\"file\":");
		kd_sum_json_str(w, (const uint8_t *)rs->path, strlen(rs->path));
		kd_w_fmt(w,
		         ",\"sha256\":\"%s\",\"requests\":%llu,"
		         "\"refused\":%llu,\"split\":%llu,\"throttled\":%llu,\"audited\":%llu,"
		         "\"by_rule\":[",
		         rs->sha256, (unsigned long long)r->judged, (unsigned long long)r->refused,
		         (unsigned long long)r->split, (unsigned long long)r->throttled,
		         (unsigned long long)r->audited);
		for (unsigned i = 0; i < rs->n; i++) {
			const struct rule_ctr *c = &r->ctr[i];
			kd_w_fmt(w, "%s{\"rule\":", i ? "," : "");
			kd_sum_json_str(w, (const uint8_t *)rs->rules[i].name,
			                strlen(rs->rules[i].name));
			kd_w_fmt(
			    w,
			    ",\"section\":\"%s\",\"denied\":%llu,\"refused\":%llu,\"throttled\":%"
			    "llu,"
			    "\"throttle_ms\":%llu,\"max_throttle_ms\":%llu,\"audited\":%llu}",
			    rule_section_name(rs->rules[i].section), (unsigned long long)c->denied,
			    (unsigned long long)c->refused, (unsigned long long)c->throttled,
			    (unsigned long long)c->throttle_ms,
			    (unsigned long long)c->max_throttle_ms, (unsigned long long)c->audited);
		}
		kd_w_cstr(w, "]}}\n");
		return;
	}
	kd_w_fmt(w,
	         "\nrules %s (sha256 %.12s): %llu requests judged, %llu refused whole, %llu split, "
	         "%llu throttles, %llu audited\n",
	         rs->path, rs->sha256, (unsigned long long)r->judged,
	         (unsigned long long)r->refused, (unsigned long long)r->split,
	         (unsigned long long)r->throttled, (unsigned long long)r->audited);
	kd_w_fmt(w, "  %-24s %-8s %8s %8s %9s %12s %8s\n", "rule", "section", "denied", "refused",
	         "throttled", "throttle ms", "audited");
	for (unsigned i = 0; i < rs->n; i++) {
		const struct rule_ctr *c = &r->ctr[i];
		kd_w_fmt(w, "  %-24s %-8s %8llu %8llu %9llu %12llu %8llu\n", rs->rules[i].name,
		         rule_section_name(rs->rules[i].section), (unsigned long long)c->denied,
		         (unsigned long long)c->refused, (unsigned long long)c->throttled,
		         (unsigned long long)c->throttle_ms, (unsigned long long)c->audited);
	}
}
