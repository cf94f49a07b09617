/* cap-out-rules.c: `kwire decode --rules FILE`: the rules engine run over a
 * capture, to see what a rules file would do before it is deployed.
 *
 * Every request is judged as the proxy judges it (rule_facts_read, then
 * rule_eval) and each action a rule takes is reported: a deny, a policy
 * refusal (whole request or some topics), a quota throttle and an audit.
 * Quotas are simulated with the capture's own timestamps: request counts
 * and Produce request sizes when the request is seen, Fetch response bytes
 * when its response is. The rewrite (names and records), mirror and tap
 * sections are tried with the proxy's own code: names mapped by
 * rule_names_map through the decoder's name walker, records rewritten by
 * rule_rewrite_tree on the captured batches (and compared with what they
 * were), mirror and tap rules matched by rule_mirror_matches and
 * rule_tap_matches. One line per action (a JSON object with --format
 * json), then a table per rule. */
#define CAP_AN_PRIVATE
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "cap-analyze.h"
#include "kd-api-keys-gen.h"
#include "kd-build.h"
#include "kd-names.h"
#include "kd-records.h"
#include "kd-render.h"
#include "kd-schema.h"
#include "kd-stream.h"
#include "kd-topics.h"
#include "kd-tree.h"
#include "rule-mirror.h"
#include "rule-names.h"
#include "rule.h"

#define QUOTA_KEYS_MAX 100000 /* (rule, key) rate states kept */
#define MP_NAME 250           /* a topic name's bytes, at most 249 */
#define RWREF_MAX 16
#define TXH_MAX 65536 /* transactional (rule, topic, partition)s held */

struct rule_ctr {
	uint64_t denied, refused, throttled, throttle_ms, max_throttle_ms, audited;
	/* rewrite, mirror, tap: requests (or Fetch responses) acted on;
	 * records changed or mirrored; records passed unchanged (on_error:
	 * pass) or not mirrored (unacknowledged); transactional records
	 * mirrored only if their transaction commits */
	uint64_t matched, records, passed, skipped, held;
};

struct an_rules {
	struct rule_set *rs;
	struct rule_quotas *quotas;
	struct rule_judge rj;
	struct rule_ctr *ctr; /* per rule */
	uint64_t judged, refused, split, throttled, audited;
	uint64_t mapped, rewritten, mirrored, tapped;
	/* rewrite and mirror: the message decoded twice (as captured, and
	 * as the rewriter leaves it), reset per message */
	struct kd_arena arena;
	struct rule_facts mfacts; /* a Produce's facts for the mirror */
	struct rule_rewriter rw;
	struct kd_wbuf scratch;
	char *nbuf; /* a mapped name (as px_names' buffer) */
	/* acknowledged transactional records, waiting for their EndTxn */
	struct an_mplan *txh;
	unsigned ntxh, captxh;
	/* the topics of the last Produce its records rewrite refused */
	char rwref[RWREF_MAX][MP_NAME];
	unsigned nrwref;
	char instance[256];
};

#define NBUF_CAP (32768 + 256)

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
	r->nbuf = malloc(NBUF_CAP);
	/* ${instance}: the host the dry run runs on (the proxy's host name is
	 * not in a capture). */
	if (gethostname(r->instance, sizeof(r->instance)) != 0)
		snprintf(r->instance, sizeof(r->instance), "kwire");
	r->instance[sizeof(r->instance) - 1] = '\0';
	if (!r->quotas || !r->ctr || !r->nbuf) {
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
	rule_facts_free(&r->mfacts);
	rule_rewriter_free(&r->rw);
	kd_wbuf_free(&r->scratch);
	kd_arena_free(&r->arena);
	free(r->nbuf);
	free(r->txh);
	free(r->ctr);
	free(r);
}

static struct rule_ctr *ctr(struct an_rules *r, const struct rule *rule)
{
	return &r->ctr[rule->idx];
}

/* The start of an action line (text, or a JSON object left open): when,
 * who, which request, what, by which rule. act_end() closes it. */
static void act_begin(struct cap_an *an, const struct an_flow *fl, int64_t ts_us, int16_t api_key,
                      int16_t api_version, int32_t corr, struct kd_view client_id, const char *what,
                      const struct rule *rule)
{
	struct kd_wbuf *w = &an->ob;
	char tsbuf[40];
	kd_sum_fmt_ts(ts_us, tsbuf, sizeof(tsbuf));
	const char *api = kd_api_name(api_key) ? kd_api_name(api_key) : "?";
	if (an->opts.format == CAP_AN_JSON) {
		kd_w_cstr(w, "{\"ts\":\"");
		kd_w_cstr(w, tsbuf);
		kd_w_cstr(w, "\",\"client\":");
		kd_sum_json_str(w, (const uint8_t *)an_flow_client(fl), strlen(an_flow_client(fl)));
		kd_w_cstr(w, ",\"broker\":");
		kd_sum_json_str(w, (const uint8_t *)an_flow_broker(fl), strlen(an_flow_broker(fl)));
		kd_w_fmt(w,
		         ",\"api\":\"%s\",\"version\":%d,\"correlation_id\":%d,\"client_id\":", api,
		         api_version, corr);
		kd_sum_json_str(w, client_id.p, client_id.len);
		kd_w_fmt(w, ",\"action\":\"%s\",\"section\":\"%s\",\"rule\":", what,
		         rule_section_name(rule->section));
		kd_sum_json_str(w, (const uint8_t *)rule->name, strlen(rule->name));
		return;
	}
	kd_w_fmt(w, "%s %s -> %s %s v%d #%d client_id=", tsbuf, an_flow_client(fl),
	         an_flow_broker(fl), api, api_version, corr);
	kd_w_raw(w, client_id.p, client_id.len);
	kd_w_fmt(w, ": %s by %s rule '%s'", what, rule_section_name(rule->section), rule->name);
}

static void act_end(struct cap_an *an)
{
	kd_w_cstr(&an->ob, an->opts.format == CAP_AN_JSON ? "}\n" : "\n");
}

static int is_json(const struct cap_an *an)
{
	return an->opts.format == CAP_AN_JSON;
}

/* A JSON member ,"key":"value" or text " word value" (value as it is). */
static void act_str(struct cap_an *an, const char *key, const char *word, const void *p, size_t n)
{
	struct kd_wbuf *w = &an->ob;
	if (is_json(an)) {
		kd_w_fmt(w, ",\"%s\":", key);
		kd_sum_json_str(w, p, n);
	} else {
		kd_w_fmt(w, " %s ", word);
		kd_w_raw(w, p, n);
	}
}

/* Why, at the end of a line: ,"why":"..." or ": ..." (text, after intro). */
static void act_why(struct cap_an *an, const char *intro, const char *why)
{
	if (is_json(an)) {
		act_str(an, "why", "", why, strlen(why));
		return;
	}
	kd_w_fmt(&an->ob, "%s: ", intro);
	kd_w_raw(&an->ob, why, strlen(why));
}

/* One action line: text or a JSON object. */
static void action(struct cap_an *an, const struct an_flow *fl, int64_t ts_us,
                   const struct rule_req *req, int32_t corr, const char *what,
                   const struct rule *rule, int16_t error, int topic, uint32_t throttle_ms,
                   const char *key)
{
	struct kd_wbuf *w = &an->ob;
	const struct kd_view *tn = topic >= 0 ? &req->topics[topic].name : NULL;
	act_begin(an, fl, ts_us, req->api_key, req->api_version, corr, req->client_id, what, rule);
	if (is_json(an)) {
		if (error)
			kd_w_fmt(w, ",\"error\":\"%s\"", kd_error_name(error));
		if (tn)
			act_str(an, "topic", "topic", tn->p, tn->len);
		if (throttle_ms)
			kd_w_fmt(w, ",\"throttle_ms\":%u", throttle_ms);
		if (key)
			act_str(an, "key", "key", key, strlen(key));
		act_end(an);
		return;
	}
	if (error)
		kd_w_fmt(w, " with %s", kd_error_name(error));
	if (tn)
		act_str(an, "topic", "topic", tn->p, tn->len);
	if (throttle_ms)
		kd_w_fmt(w, " for %u ms", throttle_ms);
	if (key)
		kd_w_fmt(w, " (key %s)", key);
	act_end(an);
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

/* ---- rewrite: names ---- */

#define NM_SHOWN 16 /* names listed per request; the rest counted */
#define NM_TEXT 256 /* bytes of a name shown */

struct nm_seen {
	uint8_t kind;
	int8_t rc; /* RULE_N_MAPPED or RULE_N_HIDDEN */
	uint16_t clen, xlen;
	char client[NM_TEXT], cluster[NM_TEXT];
};

struct nm_walk {
	const struct rule_names *nm;
	char *buf;
	struct nm_seen seen[NM_SHOWN];
	unsigned n, more;
};

static const char *const nm_kind[RULE_N_KINDS] = {"topic", "group", "transactional_id"};

/* kd_name_fn: the proxy's mapping (rule_names_map, as px-names.c calls
 * it), each distinct name noted as it goes. */
static int nm_one(void *arg, int ent, const uint8_t *p, size_t len, struct kd_view *out)
{
	struct nm_walk *w = arg;
	int kind = rule_names_kind(ent);
	if (kind < 0)
		return KD_NAME_SAME;
	int rc = rule_names_map(w->nm, kind, 1, p, len, w->buf, NBUF_CAP, out);
	if (rc == RULE_N_SAME)
		return rc;
	size_t cl = len < NM_TEXT ? len : NM_TEXT;
	for (unsigned i = 0; i < w->n; i++)
		if (w->seen[i].kind == kind && w->seen[i].clen == cl &&
		    !memcmp(w->seen[i].client, p, cl))
			return rc;
	if (w->n == NM_SHOWN) {
		w->more++;
		return rc;
	}
	struct nm_seen *e = &w->seen[w->n++];
	e->kind = (uint8_t)kind;
	e->rc = (int8_t)rc;
	e->clen = (uint16_t)cl;
	memcpy(e->client, p, cl);
	e->xlen = 0;
	if (rc == RULE_N_MAPPED) {
		e->xlen = (uint16_t)(out->len < NM_TEXT ? out->len : NM_TEXT);
		memcpy(e->cluster, out->p, e->xlen);
	}
	return rc;
}

/* The names rule for a request from who (its header facts), the names it
 * maps and the ones it refuses: a "map" or "refuse" (acks=0: "drop")
 * line. Returns the rule, or NULL. */
static const struct rule *names_request(struct cap_an *an, const struct an_flow *fl,
                                        const struct kd_event *ev, const struct rule_req *hq,
                                        int *refused)
{
	struct an_rules *r = an->rules;
	const struct kd_req_hdr *h = &ev->req_hdr;
	*refused = 0;
	if (!r->rs->nsec[RULE_REWRITE] || !kd_names_entities(h->api_key, h->api_version, 1))
		return NULL;
	const struct rule *rule = rule_names_for(r->rs, hq);
	if (!rule)
		return NULL;
	struct rule_ctr *c = ctr(r, rule);
	c->matched++;
	if (!(ev->flags & KD_EVF_BODY) || (ev->flags & KD_EVF_GAP))
		return rule;
	struct kd_tree t;
	kd_arena_reset(&r->arena);
	if (kd_tree_decode(&t, &r->arena, h->api_key, h->api_version, 1, ev->body.p,
	                   ev->body.len) != KD_OK)
		return rule; /* the proxy closes such a connection; the decode problem is shown */
	int kt = -1;
	if (h->api_key == KD_API_FIND_COORDINATOR) {
		struct kd_node *k = kd_node_child(t.root, "KeyType");
		kt = k ? (int)kd_node_int(k) : KD_COORD_GROUP;
	}
	struct nm_walk w = {.nm = rule->names, .buf = r->nbuf};
	struct kd_names_res res;
	memset(&res, 0, sizeof(res));
	int rc = kd_names_map_tree(&t, nm_one, &w, kt, &res);
	if (rc == KD_ENOMEM) {
		an_problem(an, fl, "rules: out of memory");
		return rule;
	}
	*refused = rc != KD_OK || res.hidden;
	if (!*refused && !res.mapped)
		return rule;
	int acks0 = (ev->flags & KD_EVF_NO_RESPONSE) != 0;
	static const struct rule auto_deny = {.deny = RULE_DENY_AUTO};
	int16_t err = rule_deny_error(&auto_deny, h->api_key);
	struct kd_wbuf *o = &an->ob;
	if (*refused) {
		c->refused++;
		r->refused++;
	} else {
		r->mapped++;
	}
	act_begin(an, fl, (int64_t)ev->ts_us, h->api_key, h->api_version, h->correlation_id,
	          h->client_id, *refused ? (acks0 ? "drop" : "refuse") : "map", rule);
	if (*refused && !acks0)
		kd_w_fmt(o, is_json(an) ? ",\"error\":\"%s\"" : " with %s", kd_error_name(err));
	if (rc != KD_OK && !res.hidden) {
		/* A mapped name that does not fit its field. */
		if (is_json(an))
			kd_w_cstr(o, ",\"why\":\"a mapped name does not fit its field\"");
		else
			kd_w_cstr(o, ": a mapped name does not fit its field");
	}
	if (is_json(an)) {
		kd_w_cstr(o, ",\"names\":[");
		for (unsigned i = 0; i < w.n; i++) {
			const struct nm_seen *e = &w.seen[i];
			kd_w_fmt(o, "%s{\"kind\":\"%s\",\"client\":", i ? "," : "",
			         nm_kind[e->kind]);
			kd_sum_json_str(o, (const uint8_t *)e->client, e->clen);
			if (e->rc == RULE_N_MAPPED) {
				kd_w_cstr(o, ",\"cluster\":");
				kd_sum_json_str(o, (const uint8_t *)e->cluster, e->xlen);
			} else {
				kd_w_cstr(o, ",\"outside\":true");
			}
			kd_w_cstr(o, "}");
		}
		kd_w_fmt(o, "],\"more\":%u", w.more);
	} else {
		kd_w_cstr(o, ":");
		for (unsigned i = 0; i < w.n; i++) {
			const struct nm_seen *e = &w.seen[i];
			kd_w_fmt(o, "%s %s ", i ? "," : "", nm_kind[e->kind]);
			kd_w_raw(o, e->client, e->clen);
			if (e->rc == RULE_N_MAPPED) {
				kd_w_cstr(o, " -> ");
				kd_w_raw(o, e->cluster, e->xlen);
			} else {
				kd_w_cstr(o, " is outside the namespace");
			}
		}
		if (w.more)
			kd_w_fmt(o, " (and %u more)", w.more);
	}
	act_end(an);
	return rule;
}

/* ---- rewrite: records ---- */

#define RW_HDRS_SHOWN 16  /* header names reported per topic */
#define RW_MASKS_SHOWN 32 /* (rule, mask) pairs per topic */
#define RW_RULES_SHOWN 16 /* rules per topic */

#define RW_HDR_NAME 128 /* bytes of a header name kept (longer ones: cut) */

struct rw_hstat {
	/* a copy: records of a compressed batch live in the iterator's buffer */
	uint8_t name[RW_HDR_NAME];
	uint32_t len;
	uint64_t added, replaced, removed;
};

struct rw_topic {
	const struct rule *rules[RW_RULES_SHOWN];
	unsigned nrules;
	uint64_t records, changed, values, parts, parts_changed;
	struct rw_hstat h[RW_HDRS_SHOWN];
	unsigned nh;
	struct {
		const struct rule *rule;
		unsigned k;
		uint64_t values;
	} m[RW_MASKS_SHOWN];
	unsigned nm;
};

static unsigned hdr_count(const struct kd_record *rec, const struct kd_view *name,
                          struct kd_view *vals, unsigned cap)
{
	struct kd_rec_hdr_iter hi;
	struct kd_header hd;
	unsigned n = 0;
	kd_rec_headers_init(&hi, rec);
	while (kd_rec_next_header(&hi, &hd) == 1)
		if (hd.key.len == name->len && !memcmp(hd.key.p, name->p, name->len)) {
			if (n < cap)
				vals[n] = hd.value;
			n++;
		}
	return n;
}

static int view_eq(const struct kd_view *a, const struct kd_view *b)
{
	return a->null == b->null && a->len == b->len && (!a->len || !memcmp(a->p, b->p, a->len));
}

/* What became of header name in one record: added, replaced or removed. */
static void hdr_note(struct rw_topic *tp, const struct kd_record *o, const struct kd_record *n,
                     struct kd_view name)
{
	struct kd_view ov[8], nv[8];
	unsigned oc = hdr_count(o, &name, ov, 8), nc = hdr_count(n, &name, nv, 8);
	int same = oc == nc && oc <= 8;
	for (unsigned i = 0; same && i < oc; i++)
		same = view_eq(&ov[i], &nv[i]);
	if (same)
		return;
	struct rw_hstat *hs = NULL;
	for (unsigned i = 0; i < tp->nh && !hs; i++)
		if (tp->h[i].len == (name.len < RW_HDR_NAME ? name.len : RW_HDR_NAME) &&
		    !memcmp(tp->h[i].name, name.p, tp->h[i].len))
			hs = &tp->h[i];
	if (!hs) {
		if (tp->nh == RW_HDRS_SHOWN)
			return;
		hs = &tp->h[tp->nh++];
		memset(hs, 0, sizeof(*hs));
		hs->len = name.len < RW_HDR_NAME ? name.len : RW_HDR_NAME;
		memcpy(hs->name, name.p, hs->len);
	}
	if (!oc)
		hs->added++;
	else if (!nc)
		hs->removed++;
	else
		hs->replaced++;
}

/* Every header name of o and n: what became of it. */
static void hdr_diff(struct rw_topic *tp, const struct kd_record *o, const struct kd_record *n)
{
	const struct kd_record *both[2] = {o, n};
	for (int s = 0; s < 2; s++) {
		struct kd_rec_hdr_iter hi;
		struct kd_header hd;
		kd_rec_headers_init(&hi, both[s]);
		while (kd_rec_next_header(&hi, &hd) == 1) {
			/* Each name once per record: its first occurrence on this side,
			 * and on the new side only names the old side lacks. */
			struct kd_view tmp[1];
			struct kd_rec_hdr_iter h2;
			struct kd_header prev;
			int first = 1;
			kd_rec_headers_init(&h2, both[s]);
			while (kd_rec_next_header(&h2, &prev) == 1 && prev.key.p != hd.key.p)
				if (prev.key.len == hd.key.len &&
				    !memcmp(prev.key.p, hd.key.p, hd.key.len))
					first = 0;
			if (!first || (s == 1 && hdr_count(o, &hd.key, tmp, 0)))
				continue;
			hdr_note(tp, o, n, hd.key);
		}
	}
}

/* The records of one partition as captured (ob) and as rewritten (nb),
 * compared record by record. */
static void rw_compare(struct an_rules *r, struct rw_topic *tp, const struct kd_view *ob,
                       const struct kd_view *nb)
{
	struct kd_rec_iter io, in;
	struct kd_batch *bo, *bn;
	struct kd_record ro, rn;
	kd_rec_iter_init(&io, ob->p, ob->len, NULL);
	kd_rec_iter_init(&in, nb->p, nb->len, NULL);
	int rco, rcn;
	while ((rco = kd_rec_next_batch(&io, &bo)) > 0 && (rcn = kd_rec_next_batch(&in, &bn)) > 0) {
		while (kd_rec_next_record(&io, &ro) == 1 && kd_rec_next_record(&in, &rn) == 1) {
			tp->records++;
			int vchg = !view_eq(&ro.value, &rn.value);
			int hchg =
			    ro.headers.len != rn.headers.len ||
			    ro.header_count != rn.header_count ||
			    (ro.headers.len && memcmp(ro.headers.p, rn.headers.p, ro.headers.len));
			if (!vchg && !hchg && view_eq(&ro.key, &rn.key))
				continue;
			tp->changed++;
			if (hchg)
				hdr_diff(tp, &ro, &rn);
			if (!vchg || ro.value.null)
				continue;
			tp->values++;
			for (unsigned i = 0; i < tp->nrules; i++)
				for (unsigned k = 0; k < rule_rewrite_nmasks(tp->rules[i]); k++) {
					int n = rule_rewrite_mask_hits(tp->rules[i], k, ro.value.p,
					                               ro.value.len, &r->scratch);
					if (!n)
						continue;
					unsigned j = 0;
					while (j < tp->nm &&
					       (tp->m[j].rule != tp->rules[i] || tp->m[j].k != k))
						j++;
					if (j == tp->nm) {
						if (tp->nm == RW_MASKS_SHOWN)
							continue;
						tp->m[tp->nm++].values = 0;
						tp->m[j].rule = tp->rules[i];
						tp->m[j].k = k;
					}
					tp->m[j].values += (uint64_t)n;
				}
		}
	}
	kd_rec_iter_free(&io);
	kd_rec_iter_free(&in);
}

/* The partition array of a topic element (the array whose structs hold
 * a RECORDS field), and that field's place. */
static struct kd_node *rw_parts(struct kd_node *e, unsigned *recs_at)
{
	for (uint32_t k = 0; k < e->nkids; k++) {
		struct kd_node *f = &e->kids[k];
		if (f->type != KD_T_ARRAY || f->null || !f->nkids || f->kids[0].type != KD_T_STRUCT)
			continue;
		for (uint32_t i = 0; i < f->kids[0].nkids; i++)
			if (f->kids[0].kids[i].type == KD_T_RECORDS) {
				*recs_at = i;
				return f;
			}
	}
	return NULL;
}

static int32_t part_index(const struct kd_node *pe)
{
	const struct kd_node *n = kd_node_child(pe, "Index");
	if (!n)
		n = kd_node_child(pe, "PartitionIndex");
	return n ? (int32_t)kd_node_int(n) : -1;
}

/* The records rewrite of a Produce request (dir RULE_RW_PRODUCE, body the
 * request's) or a Fetch response (RULE_RW_FETCH, body the response's):
 * the real rewriter (rule_rewrite_tree) on one decoding, compared with
 * another. req: the request's facts (a Fetch: header facts only). One
 * line per topic changed, refused or passed. */
static void rw_message(struct cap_an *an, const struct an_flow *fl, int64_t ts_us, int dir,
                       int16_t ver, int32_t corr, const struct rule_req *req, const uint8_t *body,
                       size_t blen)
{
	struct an_rules *r = an->rules;
	struct kd_tree ot, nt;
	int16_t key = dir == RULE_RW_PRODUCE ? KD_API_PRODUCE : KD_API_FETCH;
	kd_arena_reset(&r->arena);
	int is_req = dir == RULE_RW_PRODUCE;
	if (kd_tree_decode(&ot, &r->arena, key, ver, is_req, body, blen) != KD_OK ||
	    kd_tree_decode(&nt, &r->arena, key, ver, is_req, body, blen) != KD_OK)
		return; /* the decode problem is reported with the pair */
	struct rule_rw_ctx ctx = {.client_id = req->client_id,
	                          .principal = req->principal,
	                          .src_family = req->src_family,
	                          .instance = r->instance,
	                          .now_ms = ts_us / 1000};
	memcpy(ctx.src_addr, req->src_addr, sizeof(ctx.src_addr));
	struct rule_rw_out res;
	if (rule_rewrite_tree(&r->rw, r->rs, dir, &nt, req, an->topics, &ctx, &res) != KD_OK) {
		an_problem(an, fl, "rules: out of memory");
		return;
	}
	struct kd_node *oa = kd_build_topic_array(&ot), *na = kd_build_topic_array(&nt);
	if (!oa || !na || oa->nkids != na->nkids || res.nelems != na->nkids)
		return;
	struct kd_wbuf *o = &an->ob;
	struct kd_view cid = req->client_id;
	if (dir == RULE_RW_PRODUCE)
		r->nrwref = 0;
	const char *dirw = dir == RULE_RW_PRODUCE ? "request" : "response";
	int any = 0;
	for (uint32_t i = 0; i < na->nkids; i++) {
		struct rw_topic tp;
		memset(&tp, 0, sizeof(tp));
		/* The rules that apply to this topic, as rule_rewrite_tree
		 * chooses them (request-level facts and this one topic). */
		struct rule_topic one = {.name = res.names[i],
		                         .records = -1,
		                         .bytes = -1,
		                         .max_record_bytes = -1,
		                         .num_partitions = -1,
		                         .replication_factor = -1};
		for (unsigned k = 0; k < req->ntopics; k++)
			if (view_eq(&req->topics[k].name, &res.names[i]))
				one = req->topics[k];
		struct rule_req r1 = *req;
		r1.have_body = 1;
		r1.topics = &one;
		r1.ntopics = 1;
		for (unsigned k = 0; k < r->rs->n && tp.nrules < RW_RULES_SHOWN; k++)
			if ((rule_rewrite_dirs(&r->rs->rules[k]) & dir) &&
			    rule_matches(&r->rs->rules[k], &r1, 0, NULL))
				tp.rules[tp.nrules++] = &r->rs->rules[k];
		if (!tp.nrules)
			continue;
		unsigned oat = 0, nat = 0;
		struct kd_node *op = rw_parts(&oa->kids[i], &oat),
		               *np = rw_parts(&na->kids[i], &nat);
		int32_t refused_parts[16];
		int16_t rp_err = 0;
		unsigned nrp = 0, more_rp = 0;
		for (uint32_t p = 0; op && np && p < op->nkids && p < np->nkids; p++) {
			struct kd_node *ope = &op->kids[p], *npe = &np->kids[p];
			if (oat >= ope->nkids || nat >= npe->nkids)
				continue;
			const struct kd_node *orr = &ope->kids[oat], *nrr = &npe->kids[nat];
			if (orr->null || !orr->val.v.len)
				continue;
			tp.parts++;
			struct kd_node *oe = kd_node_child(ope, "ErrorCode");
			struct kd_node *ne = kd_node_child(npe, "ErrorCode");
			if (oe && ne && kd_node_int(oe) != kd_node_int(ne)) {
				/* A Fetch partition answered with an error instead. */
				rp_err = (int16_t)kd_node_int(ne);
				if (nrp < 16)
					refused_parts[nrp++] = part_index(npe);
				else
					more_rp++;
				continue;
			}
			uint64_t before = tp.changed;
			rw_compare(r, &tp, &orr->val.v, &nrr->val.v);
			if (tp.changed > before)
				tp.parts_changed++;
		}
		const struct rule *first = tp.rules[0];
		if (res.err[i]) {
			/* on_error: refuse on a Produce: the topic is refused. */
			if (r->nrwref < RWREF_MAX && res.names[i].len < MP_NAME) {
				memcpy(r->rwref[r->nrwref], res.names[i].p, res.names[i].len);
				r->rwref[r->nrwref++][res.names[i].len] = '\0';
			}
			struct rule_ctr *c = ctr(r, res.rule[i]);
			c->refused++;
			r->split++;
			any = 1;
			act_begin(an, fl, ts_us, key, ver, corr, cid, "refuse", res.rule[i]);
			kd_w_fmt(o, is_json(an) ? ",\"error\":\"%s\"" : " with %s",
			         kd_error_name(res.err[i]));
			act_str(an, "topic", "topic", res.names[i].p, res.names[i].len);
			if (res.msg[0])
				act_why(an, "", res.msg);
			act_end(an);
			continue;
		}
		if (nrp) {
			/* The first applied rule with on_error: refuse refused them
			 * (an unknown topic id: the first applied rule). */
			const struct rule *by = first;
			for (unsigned k = tp.nrules; k-- > 0;)
				if (rule_rewrite_refuses(tp.rules[k]))
					by = tp.rules[k];
			ctr(r, by)->refused += nrp + more_rp;
			any = 1;
			act_begin(an, fl, ts_us, key, ver, corr, cid, "refuse", by);
			kd_w_fmt(o, is_json(an) ? ",\"error\":\"%s\"" : " with %s",
			         kd_error_name(rp_err));
			act_str(an, "topic", "topic", res.names[i].p, res.names[i].len);
			if (is_json(an)) {
				kd_w_cstr(o, ",\"partitions\":[");
				for (unsigned k = 0; k < nrp; k++)
					kd_w_fmt(o, "%s%d", k ? "," : "", refused_parts[k]);
				kd_w_cstr(o, "]");
			} else {
				kd_w_cstr(o, " partitions");
				for (unsigned k = 0; k < nrp; k++)
					kd_w_fmt(o, "%s%d", k ? "," : " ", refused_parts[k]);
				if (more_rp)
					kd_w_fmt(o, " (and %u more)", more_rp);
			}
			if (res.msg[0])
				act_why(an, "", res.msg);
			act_end(an);
		}
		if (!tp.changed)
			continue;
		any = 1;
		for (unsigned k = 0; k < tp.nrules; k++) {
			ctr(r, tp.rules[k])->matched++;
			ctr(r, tp.rules[k])->records += tp.changed;
		}
		act_begin(an, fl, ts_us, key, ver, corr, cid, "rewrite", first);
		if (is_json(an)) {
			kd_w_fmt(o, ",\"direction\":\"%s\",\"applied_rules\":[", dirw);
			for (unsigned k = 0; k < tp.nrules; k++) {
				kd_w_cstr(o, k ? "," : "");
				kd_sum_json_str(o, (const uint8_t *)tp.rules[k]->name,
				                strlen(tp.rules[k]->name));
			}
			kd_w_cstr(o, "]");
			act_str(an, "topic", "", res.names[i].p, res.names[i].len);
			kd_w_fmt(
			    o,
			    ",\"partitions\":%llu,\"partitions_changed\":%llu,\"records\":%llu,"
			    "\"changed\":%llu,\"values_changed\":%llu,\"headers\":[",
			    (unsigned long long)tp.parts, (unsigned long long)tp.parts_changed,
			    (unsigned long long)tp.records, (unsigned long long)tp.changed,
			    (unsigned long long)tp.values);
			for (unsigned k = 0; k < tp.nh; k++) {
				kd_w_cstr(o, k ? ",{\"name\":" : "{\"name\":");
				kd_sum_json_str(o, tp.h[k].name, tp.h[k].len);
				kd_w_fmt(o, ",\"added\":%llu,\"replaced\":%llu,\"removed\":%llu}",
				         (unsigned long long)tp.h[k].added,
				         (unsigned long long)tp.h[k].replaced,
				         (unsigned long long)tp.h[k].removed);
			}
			kd_w_cstr(o, "],\"fields\":[");
			for (unsigned k = 0; k < tp.nm; k++) {
				const char *done;
				const char *path =
				    rule_rewrite_mask_path(tp.m[k].rule, tp.m[k].k, &done);
				kd_w_cstr(o, k ? ",{\"path\":" : "{\"path\":");
				kd_sum_json_str(o, (const uint8_t *)path, strlen(path));
				kd_w_fmt(o, ",\"done\":\"%s\",\"values\":%llu,\"rule\":", done,
				         (unsigned long long)tp.m[k].values);
				kd_sum_json_str(o, (const uint8_t *)tp.m[k].rule->name,
				                strlen(tp.m[k].rule->name));
				kd_w_cstr(o, "}");
			}
			kd_w_cstr(o, "]");
		} else {
			for (unsigned k = 1; k < tp.nrules; k++)
				kd_w_fmt(o, "+'%s'", tp.rules[k]->name);
			kd_w_fmt(o, " %s topic ", dirw);
			kd_w_raw(o, res.names[i].p, res.names[i].len);
			kd_w_fmt(o, ": %llu of %llu records changed in %llu of %llu partitions",
			         (unsigned long long)tp.changed, (unsigned long long)tp.records,
			         (unsigned long long)tp.parts_changed,
			         (unsigned long long)tp.parts);
			for (unsigned k = 0; k < tp.nh; k++) {
				kd_w_cstr(o, k ? ", " : "; headers: ");
				kd_w_raw(o, tp.h[k].name, tp.h[k].len);
				if (tp.h[k].added)
					kd_w_fmt(o, " added %llu",
					         (unsigned long long)tp.h[k].added);
				if (tp.h[k].replaced)
					kd_w_fmt(o, " replaced %llu",
					         (unsigned long long)tp.h[k].replaced);
				if (tp.h[k].removed)
					kd_w_fmt(o, " removed %llu",
					         (unsigned long long)tp.h[k].removed);
			}
			if (tp.values)
				kd_w_fmt(o, "; values: %llu changed",
				         (unsigned long long)tp.values);
			for (unsigned k = 0; k < tp.nm; k++) {
				const char *done;
				const char *path =
				    rule_rewrite_mask_path(tp.m[k].rule, tp.m[k].k, &done);
				kd_w_fmt(o, ", %s %s %llu", path, done,
				         (unsigned long long)tp.m[k].values);
			}
		}
		act_end(an);
	}
	if (res.passed && r->rs->n) {
		/* on_error: pass: records (or batches) that went as they were. */
		const struct rule *by = NULL;
		for (unsigned k = 0; k < r->rs->n && !by; k++)
			if (rule_rewrite_dirs(&r->rs->rules[k]) & dir)
				by = &r->rs->rules[k];
		ctr(r, by)->passed += res.passed;
		any = 1;
		act_begin(an, fl, ts_us, key, ver, corr, cid, "pass", by);
		if (is_json(an))
			kd_w_fmt(o, ",\"direction\":\"%s\",\"passed\":%u", dirw, res.passed);
		else
			kd_w_fmt(o, " %s: %u records or batches went unchanged", dirw, res.passed);
		if (res.msg[0])
			act_why(an, " (on_error: pass)", res.msg);
		act_end(an);
	}
	if (any)
		r->rewritten++;
}

/* ---- mirror ---- */

/* One (rule, topic, partition) of a Produce the mirror would copy, waiting
 * for the Produce's answer. */
struct an_mplan {
	const struct rule *rule;
	int32_t part;
	uint64_t records, txn;  /* plain records; transactional ones (held) */
	int64_t pid;            /* the transactional batches' producer id */
	uint16_t clen, xlen;    /* xlen 0: the template gives no topic name */
	char captured[MP_NAME]; /* the topic as the capture names it (its answer too) */
	char target[MP_NAME];
};

void an_rules_pend_free(struct an_rules_pend *rp)
{
	free(rp->mplan);
	rp->mplan = NULL;
	rp->nmplan = 0;
}

/* The topic of a Produce TopicData / Responses element: Name, else its
 * TopicId's name from map. */
static struct kd_view produce_topic(const struct kd_topics *map, const struct kd_node *e)
{
	static const uint8_t zero[16];
	struct kd_node *n = kd_node_child(e, "Name");
	if (n && !n->null && n->val.v.len)
		return n->val.v;
	struct kd_node *id = kd_node_child(e, "TopicId");
	if (id && map && memcmp(id->val.uuid, zero, 16))
		return kd_topics_get(map, id->val.uuid);
	return (struct kd_view){.null = 1};
}

/* Plans what the mirror rules copy of a Produce request (body, its facts'
 * header part in hq) that the proxy forwards: the records of every topic
 * a mirror rule matches (rule_mirror_matches, under the cluster's names
 * when names rule nrule maps them), except the topics refused (split:
 * tv, or refused by a records rewrite: in r->rwref). */
static void mirror_plan(struct cap_an *an, const struct an_flow *fl, const struct kd_event *ev,
                        const struct rule_req *hq, const struct rule *nrule,
                        const struct rule_topic_verdict *tv, unsigned ntv, struct an_rules_pend *rp)
{
	struct an_rules *r = an->rules;
	const struct rule_set *rs = r->rs;
	struct kd_tree t;
	kd_arena_reset(&r->arena);
	if (kd_tree_decode(&t, &r->arena, KD_API_PRODUCE, ev->req_hdr.api_version, 1, ev->body.p,
	                   ev->body.len) != KD_OK ||
	    rule_facts_read(&r->mfacts, &t, an->topics, rule_set_needs_records(rs), &r->arena) !=
	        KD_OK)
		return;
	struct rule_req *req = &r->mfacts.req;
	const struct rule_topic *captured = req->topics;
	req->api_key = KD_API_PRODUCE;
	req->api_version = ev->req_hdr.api_version;
	req->client_id = hq->client_id;
	req->principal = hq->principal;
	req->broker_id = hq->broker_id;
	req->src_family = hq->src_family;
	memcpy(req->src_addr, hq->src_addr, sizeof(req->src_addr));
	/* The mirror sees the cluster's names (docs/rules.md, mirror). */
	if (nrule && req->ntopics) {
		struct rule_topic *mt = kd_arena_alloc(&r->arena, req->ntopics * sizeof(*mt));
		if (!mt)
			return;
		for (unsigned i = 0; i < req->ntopics; i++) {
			mt[i] = captured[i];
			struct kd_view out;
			if (rule_names_map(nrule->names, RULE_N_TOPIC, 1, captured[i].name.p,
			                   captured[i].name.len, r->nbuf, NBUF_CAP,
			                   &out) == RULE_N_MAPPED) {
				uint8_t *d = kd_arena_dup(&r->arena, out.p, out.len);
				if (!d)
					return;
				mt[i].name = (struct kd_view){d, out.len, 0};
			}
		}
		req->topics = mt;
	}
	struct kd_node *topics = kd_node_child(t.root, "TopicData");
	for (uint32_t i = 0; topics && i < topics->nkids; i++) {
		struct kd_view name = produce_topic(an->topics, &topics->kids[i]);
		if (name.null || !name.len || name.len >= MP_NAME)
			continue;
		unsigned k = 0;
		while (k < req->ntopics && !view_eq(&captured[k].name, &name))
			k++;
		if (k == req->ntopics || (k < ntv && tv[k].error))
			continue;
		int rwref = 0;
		for (unsigned j = 0; j < r->nrwref && !rwref; j++)
			rwref = strlen(r->rwref[j]) == name.len &&
			        !memcmp(r->rwref[j], name.p, name.len);
		if (rwref)
			continue;
		struct kd_node *parts = kd_node_child(&topics->kids[i], "PartitionData");
		for (unsigned ri = 0; ri < rs->n; ri++) {
			const struct rule *rule = &rs->rules[ri];
			if (!rule_mirror_matches(rule, req, (int)k))
				continue;
			ctr(r, rule)->matched++;
			char target[256];
			const struct kd_view *cn = &req->topics[k].name;
			int xl = cn->len < MP_NAME
			             ? rule_mirror_topic(rule->mirror->topic, (const char *)cn->p,
			                                 cn->len, target, sizeof(target))
			             : -1;
			for (uint32_t p = 0; parts && p < parts->nkids; p++) {
				struct kd_node *idx = kd_node_child(&parts->kids[p], "Index");
				struct kd_node *recs = kd_node_child(&parts->kids[p], "Records");
				if (!idx || !recs || recs->null)
					continue;
				struct an_mplan *mp =
				    realloc(rp->mplan, (rp->nmplan + 1) * sizeof(*mp));
				if (!mp) {
					an_problem(an, fl, "rules: out of memory");
					return;
				}
				rp->mplan = mp;
				mp = &mp[rp->nmplan++];
				memset(mp, 0, sizeof(*mp));
				mp->rule = rule;
				mp->part = (int32_t)kd_node_int(idx);
				mp->clen = (uint16_t)name.len;
				memcpy(mp->captured, name.p, name.len);
				if (xl > 0 && xl < MP_NAME) {
					mp->xlen = (uint16_t)xl;
					memcpy(mp->target, target, (size_t)xl);
				}
				/* Transactional batches wait for a commit (px-mirror.c). */
				struct kd_rec_iter it;
				struct kd_batch *b;
				int rc;
				kd_rec_iter_init(&it, recs->val.v.p, recs->val.v.len, NULL);
				while ((rc = kd_rec_next_batch(&it, &b)) != 0 &&
				       rc != KD_REC_TRUNCATED) {
					if (rc < 0 || b->control || b->record_count < 0)
						continue;
					if (b->transactional && b->producer_id >= 0) {
						mp->txn += (uint64_t)b->record_count;
						mp->pid = b->producer_id;
					} else
						mp->records += (uint64_t)b->record_count;
				}
				kd_rec_iter_free(&it);
			}
		}
	}
}

/* The ErrorCode a Produce answer (decoded) gives topic/partition, or -1. */
static int produce_error(const struct cap_an *an, const struct kd_node *resps,
                         const struct an_mplan *mp)
{
	for (uint32_t i = 0; resps && i < resps->nkids; i++) {
		struct kd_view n = produce_topic(an->topics, &resps->kids[i]);
		if (n.null || n.len != mp->clen || memcmp(n.p, mp->captured, n.len))
			continue;
		struct kd_node *ps = kd_node_child(&resps->kids[i], "PartitionResponses");
		for (uint32_t k = 0; ps && k < ps->nkids; k++) {
			struct kd_node *idx = kd_node_child(&ps->kids[k], "Index");
			struct kd_node *ec = kd_node_child(&ps->kids[k], "ErrorCode");
			if (idx && ec && kd_node_int(idx) == mp->part)
				return (int)kd_node_int(ec);
		}
	}
	return -1;
}

enum { MP_MIRROR, MP_SKIP, MP_HOLD };

/* The lines of plan entries [from, to) (one rule, one topic) of kind. */
static void mirror_lines(struct cap_an *an, const struct an_flow *fl,
                         const struct an_rules_pend *rp, int16_t api, int64_t ts_us, unsigned from,
                         unsigned to, const int *err, int kind, const char *why)
{
	struct an_rules *r = an->rules;
	struct kd_wbuf *o = &an->ob;
	const struct an_mplan *m0 = &rp->mplan[from];
	uint64_t n = 0;
	for (unsigned i = from; i < to; i++) {
		const struct an_mplan *mp = &rp->mplan[i];
		int skip = err[i] != 0 || !mp->xlen;
		if (kind == MP_HOLD)
			n += skip ? 0 : mp->txn;
		else if (kind == MP_MIRROR)
			n += skip ? 0 : mp->records;
		else
			n += skip ? mp->records + mp->txn : 0;
	}
	if (!n)
		return;
	struct rule_ctr *c = ctr(r, m0->rule);
	static const char *const what[] = {"mirror", "skip", "hold"};
	if (kind == MP_MIRROR) {
		c->records += n;
		r->mirrored += n;
	} else if (kind == MP_SKIP) {
		c->skipped += n;
	} else {
		c->held += n;
	}
	struct kd_view cid = {(const uint8_t *)rp->client_id, (uint32_t)strlen(rp->client_id), 0};
	act_begin(an, fl, ts_us, api, rp->api_version, rp->corr, cid, what[kind], m0->rule);
	act_str(an, "topic", "topic", m0->captured, m0->clen);
	int by_key = m0->rule->mirror->by_key;
	if (is_json(an)) {
		kd_w_fmt(o, ",\"records\":%llu", (unsigned long long)n);
		if (m0->xlen) {
			act_str(an, "to_topic", "", m0->target, m0->xlen);
			kd_w_fmt(o, ",\"partitioning\":\"%s\"", by_key ? "key" : "same");
		}
		if (why)
			act_str(an, "reason", "", why, strlen(why));
		kd_w_cstr(o, ",\"partitions\":[");
	} else {
		kd_w_fmt(o, ": %llu %srecords", (unsigned long long)n,
		         kind == MP_HOLD ? "transactional " : "");
		if (kind == MP_SKIP)
			kd_w_fmt(o, " not mirrored (%s)", why);
		else if (m0->xlen) {
			kd_w_cstr(o, " to ");
			kd_w_raw(o, m0->target, m0->xlen);
		}
		if (kind != MP_SKIP && by_key)
			kd_w_cstr(o, ", partitioned by key");
		kd_w_cstr(o, kind == MP_SKIP ? ": partition"
		             : by_key        ? ", from partition"
		                             : ", partition");
	}
	int first = 1;
	for (unsigned i = from; i < to; i++) {
		const struct an_mplan *mp = &rp->mplan[i];
		int skip = err[i] != 0 || !mp->xlen;
		uint64_t k = kind == MP_HOLD     ? (skip ? 0 : mp->txn)
		             : kind == MP_MIRROR ? (skip ? 0 : mp->records)
		                                 : (skip ? mp->records + mp->txn : 0);
		if (!k)
			continue;
		if (is_json(an)) {
			kd_w_fmt(o, "%s{\"partition\":%d,\"records\":%llu", first ? "" : ",",
			         mp->part, (unsigned long long)k);
			if (err[i] > 0)
				kd_w_fmt(o, ",\"error\":\"%s\"", kd_error_name((int16_t)err[i]));
			kd_w_cstr(o, "}");
		} else {
			kd_w_fmt(o, "%s %d (%llu", first ? "" : ",", mp->part,
			         (unsigned long long)k);
			if (err[i] > 0)
				kd_w_fmt(o, ", %s", kd_error_name((int16_t)err[i]));
			kd_w_cstr(o, ")");
		}
		first = 0;
	}
	if (is_json(an)) {
		kd_w_cstr(o, "]");
		if (api == KD_API_END_TXN && kind == MP_MIRROR)
			kd_w_cstr(o, ",\"transaction\":\"committed\"");
	} else if (kind == MP_HOLD) {
		kd_w_cstr(o, "; mirrored if their transaction commits");
	} else if (api == KD_API_END_TXN && kind == MP_MIRROR) {
		kd_w_cstr(o, "; the transaction committed");
	}
	act_end(an);
}

/* The mirror plan of rp, its Produce answered (resps: the answer's
 * Responses, NULL with acks0 or when it is not at hand: answered says
 * which). */
static void mirror_resolve(struct cap_an *an, const struct an_flow *fl, struct an_rules_pend *rp,
                           int64_t ts_us, const struct kd_node *resps, int answered, int acks0)
{
	if (!rp->nmplan)
		return;
	int *err = calloc(rp->nmplan, sizeof(*err));
	if (!err) {
		an_problem(an, fl, "rules: out of memory");
		an_rules_pend_free(rp);
		return;
	}
	const char *why = NULL;
	for (unsigned i = 0; i < rp->nmplan; i++) {
		if (acks0)
			continue;
		if (!answered) {
			err[i] = -1;
			why = "unanswered";
		} else {
			err[i] = produce_error(an, resps, &rp->mplan[i]);
			if (err[i])
				why = "unacknowledged";
		}
	}
	for (unsigned i = 0, j; i < rp->nmplan; i = j) {
		j = i + 1;
		while (j < rp->nmplan && rp->mplan[j].rule == rp->mplan[i].rule &&
		       rp->mplan[j].clen == rp->mplan[i].clen &&
		       !memcmp(rp->mplan[j].captured, rp->mplan[i].captured, rp->mplan[i].clen))
			j++;
		mirror_lines(an, fl, rp, KD_API_PRODUCE, ts_us, i, j, err, MP_MIRROR, NULL);
		mirror_lines(an, fl, rp, KD_API_PRODUCE, ts_us, i, j, err, MP_HOLD, NULL);
		const char *w = why;
		if (!rp->mplan[i].xlen)
			w = "the mirror topic is not a topic name";
		mirror_lines(an, fl, rp, KD_API_PRODUCE, ts_us, i, j, err, MP_SKIP,
		             w ? w : "unacknowledged");
	}
	/* Acknowledged transactional records wait for their EndTxn. */
	struct an_rules *r = an->rules;
	for (unsigned i = 0; i < rp->nmplan; i++) {
		const struct an_mplan *mp = &rp->mplan[i];
		if (err[i] || !mp->xlen || !mp->txn)
			continue;
		if (r->ntxh == r->captxh) {
			unsigned cap = r->captxh ? 2 * r->captxh : 64;
			struct an_mplan *t =
			    cap <= TXH_MAX ? realloc(r->txh, cap * sizeof(*t)) : NULL;
			if (!t) {
				ctr(r, mp->rule)->skipped += mp->txn;
				continue;
			}
			r->txh = t;
			r->captxh = cap;
		}
		struct an_mplan *h = &r->txh[r->ntxh++];
		*h = *mp;
		h->records = mp->txn;
		h->txn = 0;
	}
	free(err);
	an_rules_pend_free(rp);
}

/* An EndTxn of producer id pid answered without error: the records held
 * for it are mirrored (commit) or skipped (abort), as the mirror does. */
static void txn_end(struct cap_an *an, const struct an_flow *fl, const struct an_rules_pend *rp,
                    int64_t ts_us, int64_t pid, int commit)
{
	struct an_rules *r = an->rules;
	unsigned n = 0;
	for (unsigned i = 0; i < r->ntxh; i++)
		n += r->txh[i].pid == pid;
	if (!n)
		return;
	struct an_mplan *ended = malloc(n * sizeof(*ended));
	int *err = calloc(n, sizeof(*err));
	if (!ended || !err) {
		an_problem(an, fl, "rules: out of memory");
		goto out;
	}
	unsigned k = 0, keep = 0;
	for (unsigned i = 0; i < r->ntxh; i++) {
		if (r->txh[i].pid == pid) {
			ended[k] = r->txh[i];
			err[k++] = commit ? 0 : -1;
		} else {
			r->txh[keep++] = r->txh[i];
		}
	}
	r->ntxh = keep;
	struct an_rules_pend view = *rp;
	view.mplan = ended;
	view.nmplan = n;
	for (unsigned i = 0, j; i < n; i = j) {
		j = i + 1;
		while (j < n && ended[j].rule == ended[i].rule && ended[j].clen == ended[i].clen &&
		       !memcmp(ended[j].captured, ended[i].captured, ended[i].clen))
			j++;
		mirror_lines(an, fl, &view, KD_API_END_TXN, ts_us, i, j, err,
		             commit ? MP_MIRROR : MP_SKIP, "aborted");
	}
out:
	free(ended);
	free(err);
}

void an_rules_unanswered(struct cap_an *an, const struct an_flow *fl, struct an_rules_pend *rp,
                         int64_t ts_us)
{
	mirror_resolve(an, fl, rp, ts_us, NULL, 0, 0);
}

/* ---- tap ---- */

static void tap_request(struct cap_an *an, const struct an_flow *fl, const struct kd_event *ev,
                        const struct rule_req *req)
{
	struct an_rules *r = an->rules;
	const struct kd_req_hdr *h = &ev->req_hdr;
	int any = 0;
	for (unsigned i = 0; i < r->rs->n; i++) {
		const struct rule *rule = &r->rs->rules[i];
		if (!rule_tap_matches(rule, req))
			continue;
		ctr(r, rule)->matched++;
		any = 1;
		act_begin(an, fl, (int64_t)ev->ts_us, h->api_key, h->api_version, h->correlation_id,
		          h->client_id, "tap", rule);
		act_str(an, "file", "to", rule->tap->file, strlen(rule->tap->file));
		act_end(an);
	}
	r->tapped += (uint64_t)any;
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
	/* rewrite (names, then records), mirror, tap: on what the proxy
	 * forwards (a refused request reaches neither the cluster nor the
	 * mirror; it is tapped with kwire's answer). */
	int nref = 0;
	const struct rule *nrule = names_request(an, fl, ev, req, &nref);
	int fwd = !v.error && !nref && has_body && req->api_key == KD_API_PRODUCE;
	if (fwd && rule_set_rewrites(r->rs, RULE_RW_PRODUCE))
		rw_message(an, fl, ts, RULE_RW_PRODUCE, req->api_version, corr, req, ev->body.p,
		           ev->body.len);
	else
		r->nrwref = 0;
	if (fwd && r->rs->nsec[RULE_MIRROR]) {
		mirror_plan(an, fl, ev, req, nrule, r->rj.tv, req->ntopics, rp);
		if (ev->flags & KD_EVF_NO_RESPONSE)
			mirror_resolve(an, fl, rp, ts, NULL, 0, 1);
	}
	if (r->rs->nsec[RULE_TAP])
		tap_request(an, fl, ev, req);
	if (r->rs->nsec[RULE_MIRROR] && has_body && req->api_key == KD_API_END_TXN) {
		struct kd_tree t;
		kd_arena_reset(&r->arena);
		if (kd_tree_decode(&t, &r->arena, KD_API_END_TXN, req->api_version, 1, ev->body.p,
		                   ev->body.len) == KD_OK) {
			struct kd_node *pid = kd_node_child(t.root, "ProducerId");
			struct kd_node *c = kd_node_child(t.root, "Committed");
			if (pid && c) {
				rp->endtxn_pid = kd_node_int(pid);
				rp->endtxn = c->val.u ? 2 : 1;
			}
		}
	}
}

void an_rules_response(struct cap_an *an, const struct an_flow *fl, struct an_rules_pend *rp,
                       uint64_t resp_bytes, int64_t ts_us, const uint8_t *body, size_t blen)
{
	struct an_rules *r = an->rules;
	struct rule_req req;
	memset(&req, 0, sizeof(req));
	req.api_key = rp->api_key;
	req.api_version = rp->api_version;
	req.client_id =
	    (struct kd_view){(const uint8_t *)rp->client_id, (uint32_t)strlen(rp->client_id), 0};
	for (unsigned i = 0; i < rp->nfetch; i++)
		throttle_check(an, fl, r, &req, rp->corr, rp->fetch[i].rule, rp->fetch[i].key,
		               RULE_Q_FETCH, (double)resp_bytes, ts_us);
	if (rp->nmplan) {
		struct kd_tree t;
		const struct kd_node *resps = NULL;
		kd_arena_reset(&r->arena);
		int ok = body && kd_tree_decode(&t, &r->arena, KD_API_PRODUCE, rp->api_version, 0,
		                                body, blen) == KD_OK;
		if (ok)
			resps = kd_node_child(t.root, "Responses");
		mirror_resolve(an, fl, rp, ts_us, resps, ok, 0);
	}
	if (body && rp->endtxn) {
		struct kd_tree t;
		kd_arena_reset(&r->arena);
		struct kd_node *ec = NULL;
		if (kd_tree_decode(&t, &r->arena, KD_API_END_TXN, rp->api_version, 0, body, blen) ==
		    KD_OK)
			ec = kd_node_child(t.root, "ErrorCode");
		if (ec && kd_node_int(ec) == 0)
			txn_end(an, fl, rp, ts_us, rp->endtxn_pid, rp->endtxn == 2);
	}
	if (body && rp->api_key == KD_API_FETCH && rule_set_rewrites(r->rs, RULE_RW_FETCH)) {
		/* The consumer's header facts; a capture knows no listener. */
		req.have_body = 1;
		req.acks = -2;
		req.broker_id = -2;
		an_flow_client_addr(fl, &req.src_family, req.src_addr);
		if (rule_rewrite_may_apply(r->rs, RULE_RW_FETCH, &req))
			rw_message(an, fl, ts_us, RULE_RW_FETCH, rp->api_version, rp->corr, &req,
			           body, blen);
	}
}

/* The rewrite, mirror and tap counters of one rule's JSON entry. */
static void act_extra_json(struct kd_wbuf *w, const struct rule *rule, const struct rule_ctr *c)
{
	if (rule->section != RULE_REWRITE && rule->section != RULE_MIRROR &&
	    rule->section != RULE_TAP)
		return;
	kd_w_fmt(w,
	         ",\"matched\":%llu,\"records\":%llu,\"passed\":%llu,\"skipped\":%llu,"
	         "\"held\":%llu",
	         (unsigned long long)c->matched, (unsigned long long)c->records,
	         (unsigned long long)c->passed, (unsigned long long)c->skipped,
	         (unsigned long long)c->held);
	const char *to = rule->tap ? rule->tap->file : rule->mirror ? rule->mirror->topic : NULL;
	if (to) {
		kd_w_cstr(w, rule->tap ? ",\"file\":" : ",\"to_topic\":");
		kd_sum_json_str(w, (const uint8_t *)to, strlen(to));
	}
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
			    "\"throttle_ms\":%llu,\"max_throttle_ms\":%llu,\"audited\":%llu",
			    rule_section_name(rs->rules[i].section), (unsigned long long)c->denied,
			    (unsigned long long)c->refused, (unsigned long long)c->throttled,
			    (unsigned long long)c->throttle_ms,
			    (unsigned long long)c->max_throttle_ms, (unsigned long long)c->audited);
			act_extra_json(w, &rs->rules[i], c);
			kd_w_cstr(w, "}");
		}
		kd_w_fmt(w,
		         "],\"mapped\":%llu,\"rewritten\":%llu,\"mirrored_records\":%llu,"
		         "\"tapped\":%llu}}\n",
		         (unsigned long long)r->mapped, (unsigned long long)r->rewritten,
		         (unsigned long long)r->mirrored, (unsigned long long)r->tapped);
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
		if (rs->rules[i].section == RULE_REWRITE || rs->rules[i].section == RULE_MIRROR ||
		    rs->rules[i].section == RULE_TAP)
			continue; /* the table below */
		kd_w_fmt(w, "  %-24s %-8s %8llu %8llu %9llu %12llu %8llu\n", rs->rules[i].name,
		         rule_section_name(rs->rules[i].section), (unsigned long long)c->denied,
		         (unsigned long long)c->refused, (unsigned long long)c->throttled,
		         (unsigned long long)c->throttle_ms, (unsigned long long)c->audited);
	}
	if (!rs->nsec[RULE_REWRITE] && !rs->nsec[RULE_MIRROR] && !rs->nsec[RULE_TAP])
		return;
	kd_w_fmt(w,
	         "\nrewrite, mirror, tap: %llu requests with names mapped, %llu messages with "
	         "records rewritten, %llu records mirrored, %llu requests tapped\n",
	         (unsigned long long)r->mapped, (unsigned long long)r->rewritten,
	         (unsigned long long)r->mirrored, (unsigned long long)r->tapped);
	kd_w_fmt(w, "  %-24s %-8s %8s %8s %8s %8s %8s  %s\n", "rule", "section", "matched",
	         "records", "refused", "passed", "skipped", "to");
	for (unsigned i = 0; i < rs->n; i++) {
		const struct rule *rule = &rs->rules[i];
		const struct rule_ctr *c = &r->ctr[i];
		if (rule->section != RULE_REWRITE && rule->section != RULE_MIRROR &&
		    rule->section != RULE_TAP)
			continue;
		kd_w_fmt(w, "  %-24s %-8s %8llu %8llu %8llu %8llu %8llu  %s", rule->name,
		         rule_section_name(rule->section), (unsigned long long)c->matched,
		         (unsigned long long)c->records, (unsigned long long)c->refused,
		         (unsigned long long)c->passed, (unsigned long long)c->skipped,
		         rule->tap      ? rule->tap->file
		         : rule->mirror ? rule->mirror->topic
		         : rule->names  ? "(names)"
		                        : "(records)");
		if (c->held)
			kd_w_fmt(w, " (%llu transactional records held)",
			         (unsigned long long)c->held);
		kd_w_cstr(w, "\n");
	}
}
