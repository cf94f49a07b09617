/* rule-judge.c: one request judged, from its bytes to the verdict
 * (rule_judge): the steps the proxy (px-judge.c) and the analyzer
 * (cap-out-rules.c) share. */
#include <stdlib.h>
#include <string.h>

#include "kd-hdr.h"
#include "kd-tree.h"
#include "rule.h"

/* A decoded body bigger than this is judged on its header alone. */
#define RULE_JUDGE_ARENA_LIMIT (256u * 1024 * 1024)

void rule_req_header(struct rule_req *req, const struct kd_req_hdr *h, const struct rule_who *who)
{
	req->api_key = h->api_key;
	req->api_version = h->api_version;
	req->client_id = h->client_id;
	req->principal = who->principal;
	req->broker_id = who->broker_id;
	req->src_family = who->src_family;
	memcpy(req->src_addr, who->src_addr, sizeof(req->src_addr));
}

int rule_judge_needs_body(const struct rule_set *rs, const struct kd_req_hdr *h,
                          const struct rule_who *who)
{
	struct rule_req req;
	memset(&req, 0, sizeof(req));
	rule_req_header(&req, h, who);
	req.acks = -2;
	return rule_set_needs_body_req(rs, &req);
}

static int eval(struct rule_judge *j, const struct rule_set *rs, const struct kd_req_hdr *h,
                const struct rule_who *who, uint8_t quiet, struct rule_verdict *v);

/* Starts j over for the request with header h; returns whether this
 * judgement is quiet (counts no hits), which only it is. */
static uint8_t begin(struct rule_judge *j, const struct kd_req_hdr *h)
{
	uint8_t quiet = j->quiet;
	j->quiet = 0;
	kd_arena_reset(&j->arena);
	j->arena.limit = RULE_JUDGE_ARENA_LIMIT;
	memset(&j->tree, 0, sizeof(j->tree));
	j->tree.api_key = h->api_key;
	j->tree.version = h->api_version;
	return quiet;
}

int rule_judge(struct rule_judge *j, const struct rule_set *rs, const struct kd_req_hdr *h,
               const uint8_t *body, size_t len, const struct kd_topics *map,
               const struct rule_who *who, struct rule_verdict *v)
{
	uint8_t quiet = begin(j, h);
	if (body && rule_judge_needs_body(rs, h, who))
		kd_tree_decode(&j->tree, &j->arena, h->api_key, h->api_version, 1, body, len);
	int rc = rule_facts_read(&j->facts, &j->tree, map, rule_set_needs_records(rs), &j->arena);
	if (rc != KD_OK)
		return rc;
	return eval(j, rs, h, who, quiet, v);
}

/* The header facts added to j->facts, and the verdict. */
static int eval(struct rule_judge *j, const struct rule_set *rs, const struct kd_req_hdr *h,
                const struct rule_who *who, uint8_t quiet, struct rule_verdict *v)
{
	struct rule_req *req = &j->facts.req;
	rule_req_header(req, h, who);
	req->quiet = quiet;
	if (req->ntopics > j->tvcap) {
		struct rule_topic_verdict *tv = realloc(j->tv, req->ntopics * sizeof(*tv));
		if (!tv)
			return KD_ENOMEM;
		j->tv = tv;
		j->tvcap = req->ntopics;
	}
	memset(v, 0, sizeof(*v));
	v->topics = j->tv;
	rule_eval(rs, req, v);
	return KD_OK;
}

int rule_judge_walk(struct rule_judge *j, const struct rule_set *rs, const struct kd_req_hdr *h,
                    const struct kd_view *body, unsigned nsegs, const struct kd_topics *map,
                    const struct rule_who *who, struct rule_verdict *v)
{
	if (!rule_set_names_only(rs, h->api_key))
		return KD_EUNSUPPORTED;
	uint8_t quiet = begin(j, h);
	int rc =
	    rule_facts_walk(&j->facts, h->api_key, h->api_version, body, nsegs, map, &j->arena);
	if (rc != KD_OK)
		return rc;
	return eval(j, rs, h, who, quiet, v);
}

void rule_judge_free(struct rule_judge *j)
{
	rule_facts_free(&j->facts);
	kd_arena_free(&j->arena);
	free(j->tv);
	rule_rewriter_free(&j->rw);
	memset(j, 0, sizeof(*j));
}
