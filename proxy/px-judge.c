/* px-judge.c: a request judged by the rules before it is forwarded
 * (px-judge.h). The facts come from rules/ (rule_facts_read over the
 * decoded request), the verdict from rule_eval, the answers from the
 * decoder's builder (kd-build.h): nothing here knows an API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "kd-build.h"
#include "kd-hdr.h"
#include "kd-schema.h"
#include "kd-topics.h"
#include "kd-tree.h"
#include "px-judge.h"
#include "px-records.h"
#include "rule.h"

int px_judge_needs_frame(const struct rule_set *rs, const struct px_judge_in *in)
{
	return rs && rs->n && rule_judge_needs_body(rs, &in->fi->req_hdr, &in->who);
}

void px_judged_reset(struct px_judged *out)
{
	struct kd_wbuf w = out->out;
	kd_split_free(&out->split);
	memset(out, 0, sizeof(*out));
	w.len = 0;
	w.err = 0;
	out->out = w;
}

void px_judged_free(struct px_judged *out)
{
	kd_split_free(&out->split);
	kd_wbuf_free(&out->out);
	memset(out, 0, sizeof(*out));
}

/* The topic an element of the request's topic array names, as the facts
 * name it (rule_facts_read): its name, else its TopicId's name from the
 * map, else the id's "topic-id:" text (in idtext). */
static struct kd_view elem_name(const struct kd_node *e, const struct kd_topics *map,
                                char idtext[KD_TOPIC_ID_TEXT])
{
	static const uint8_t zero[16];
	const uint8_t *id = NULL;
	for (uint32_t k = 0; k < e->nkids; k++) {
		const struct kd_node *f = &e->kids[k];
		if (!f->field)
			continue;
		if (f->type == KD_T_STRING && f->field->entity == KD_ENT_TOPIC_NAME && !f->null &&
		    f->val.v.len)
			return f->val.v;
		if (f->type == KD_T_UUID && !strcmp(f->field->name, "TopicId") &&
		    memcmp(f->val.uuid, zero, 16))
			id = f->val.uuid;
	}
	if (!id)
		return (struct kd_view){0};
	struct kd_view name = kd_topics_get(map, id);
	if (!name.null && name.p)
		return name;
	size_t n = kd_topic_id_text(id, idtext);
	return (struct kd_view){(const uint8_t *)idtext, (uint32_t)n, 0};
}

/* The message a refusal carries in ErrorMessage (where the version has it). */
static const char *refusal_msg(const struct rule *rule, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s by kwire %s rule '%s'",
	         rule->section == RULE_ACCESS ? "denied" : "refused",
	         rule->section == RULE_ACCESS    ? "access"
	         : rule->section == RULE_REWRITE ? "rewrite"
	                                         : "policy",
	         rule->name);
	return buf;
}

/* The counts of a verdict v on j's request into out: topics, quota hits
 * with their keys (the request's views go away), audits. */
static void judged_hits(const struct rule_judge *j, const struct rule_verdict *v,
                        const struct px_judge_in *in, struct px_judged *out)
{
	const struct rule_req *req = &j->facts.req;
	out->ntopics = req->ntopics;
	out->nrefused = v->nrefused;
	for (unsigned i = 0; i < v->nquotas; i++) {
		out->quotas[i] = v->quotas[i];
		rule_quota_key(&v->quotas[i], req, out->keys[i], sizeof(out->keys[i]));
		out->qbytes[i] = rule_quota_produce_bytes(&v->quotas[i], req, v, in->fi->size);
		out->quotas[i].topic = -1;
	}
	out->nquotas = v->nquotas;
	memcpy(out->audits, v->audits, v->naudits * sizeof(v->audits[0]));
	out->naudits = v->naudits;
}

int px_judge_walk(struct rule_judge *j, const struct rule_set *rs, const struct px_judge_in *in,
                  struct evbuffer *buf, uint32_t total, struct px_judged *out)
{
	const struct kd_req_hdr *h = &in->fi->req_hdr;
	struct evbuffer_iovec vec[PX_JUDGE_SEGS];
	struct kd_view segs[PX_JUDGE_SEGS];
	if (!rule_set_names_only(rs, h->api_key))
		return PX_JUDGE_GATHER;
	int nvec = evbuffer_peek(buf, (ev_ssize_t)total, NULL, vec, PX_JUDGE_SEGS);
	if (nvec <= 0 || nvec > PX_JUDGE_SEGS)
		return PX_JUDGE_GATHER; /* in too many pieces: gather it */
	/* The body: the frame less its size and request header. */
	size_t skip = 4 + (size_t)h->len, left = total - skip;
	unsigned n = 0;
	for (int i = 0; i < nvec && left; i++) {
		const uint8_t *p = vec[i].iov_base;
		size_t len = vec[i].iov_len;
		if (skip >= len) {
			skip -= len;
			continue;
		}
		p += skip;
		len -= skip;
		skip = 0;
		if (len > left)
			len = left;
		segs[n++] = (struct kd_view){p, (uint32_t)len, 0};
		left -= len;
	}
	px_judged_reset(out);
	struct rule_verdict v;
	int rc = rule_judge_walk(j, rs, h, segs, n, in->topics, &in->who, &v);
	if (rc == KD_ENOMEM)
		return -1;
	if (rc != KD_OK)
		return PX_JUDGE_GATHER;
	if (v.error || v.split) {
		/* Its answer mirrors the body: judge it again whole, and count
		 * its hits once. */
		j->quiet = 1;
		return PX_JUDGE_GATHER;
	}
	judged_hits(j, &v, in, out);
	out->filter = (uint8_t)rule_set_filters_topics(rs, &j->facts.req);
	out->act = PX_J_FORWARD;
	return PX_J_FORWARD;
}

int px_judge(struct rule_judge *j, const struct rule_set *rs, const struct px_judge_in *in,
             struct px_judged *out)
{
	const struct kd_req_hdr *h = &in->fi->req_hdr;
	px_judged_reset(out);
	/* The body is at hand when the data path gathered the whole frame. */
	const uint8_t *body =
	    in->frame && in->len >= 4 + (size_t)h->len ? in->frame + 4 + h->len : NULL;
	struct rule_verdict v;
	int rc =
	    rule_judge(j, rs, h, body, body ? in->len - 4 - h->len : 0, in->topics, &in->who, &v);
	if (rc != KD_OK)
		return rc;
	struct rule_req *req = &j->facts.req;
	/* Records rewritten (Produce): refusals join the verdict. */
	if (!v.error && (rc = px_records_produce(j, rs, in, &v, out)) != KD_OK)
		return rc;
	judged_hits(j, &v, in, out);

	const struct rule *first = v.rule;
	int first_topic = -1;
	for (unsigned t = 0; t < req->ntopics && first_topic < 0; t++)
		if (j->tv[t].error) {
			first_topic = (int)t;
			first = first ? first : j->tv[t].rule;
		}
	if (first_topic >= 0) {
		const struct kd_view *n = &req->topics[first_topic].name;
		snprintf(out->topic, sizeof(out->topic), "%.*s", (int)n->len, (const char *)n->p);
	}
	if (!v.error && !v.split) {
		out->filter = (uint8_t)rule_set_filters_topics(rs, req);
		if (!out->rewritten)
			return KD_OK;
		/* px_records_produce began the frame in out->out (size, header,
		 * the body with its new record sets so far): the rest of it. */
		rc = rule_rewrite_encode(&j->rw, &j->tree, &out->out);
		j->rw.dest = NULL;
		if (rc != KD_OK || out->out.err)
			return rc != KD_OK ? rc : out->out.err;
		kd_w_patch_be(&out->out, 0, 4, out->out.len - 4);
		out->act = PX_J_REWRITE;
		return KD_OK;
	}
	out->error = v.error ? v.error : j->tv[first_topic].error;
	out->rule = first;
	char msg[RULE_NAME_MAX + 64];
	if (in->fi->flags & KD_EVF_NO_RESPONSE) {
		/* acks=0: the client reads no answer. A split forwards the rest. */
		if (v.error) {
			out->act = PX_J_DROP;
			return KD_OK;
		}
	}
	if (!j->tree.root) {
		/* A refusal whose answer cannot mirror the request, because its
		 * body does not decode: a broker closes the connection on a
		 * request it cannot parse, and so does kwire. */
		out->act = PX_J_CLOSE;
		return KD_OK;
	}
	if (v.error) {
		rc = kd_build_error_response(&j->tree, h->correlation_id, out->error,
		                             refusal_msg(first, msg, sizeof(msg)), &j->arena,
		                             &out->out);
		out->act = PX_J_ANSWER;
		return rc == KD_OK ? KD_OK : rc;
	}
	/* A split: the refused elements of the request's topic array go, the
	 * rest is re-encoded behind the original header. */
	struct kd_node *arr = kd_build_topic_array(&j->tree);
	uint32_t n = arr ? arr->nkids : 0;
	int16_t *errs = kd_arena_alloc(&j->arena, (n ? n : 1) * sizeof(*errs));
	const char **msgs = kd_arena_alloc(&j->arena, (n ? n : 1) * sizeof(*msgs));
	if (!errs || !msgs)
		return KD_ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		char idtext[KD_TOPIC_ID_TEXT];
		struct kd_view name = elem_name(&arr->kids[i], in->topics, idtext);
		errs[i] = 0;
		msgs[i] = NULL;
		for (unsigned t = 0; t < req->ntopics; t++) {
			const struct kd_view *tn = &req->topics[t].name;
			if (j->tv[t].error && name.p && tn->len == name.len &&
			    !memcmp(tn->p, name.p, name.len)) {
				errs[i] = j->tv[t].error;
				char *m = kd_arena_alloc(&j->arena, sizeof(msg));
				if (m)
					msgs[i] = refusal_msg(j->tv[t].rule, m, sizeof(msg));
			}
		}
	}
	rc = n ? kd_build_split(&j->tree, errs, msgs, n, &out->split) : KD_EUNSUPPORTED;
	if (rc == KD_EUNSUPPORTED || (rc == KD_OK && out->split.nelems == 0)) {
		/* No topic array to split (topics named elsewhere): refuse it all. */
		kd_split_free(&out->split);
		rc = kd_build_error_response(&j->tree, h->correlation_id, out->error,
		                             refusal_msg(first, msg, sizeof(msg)), &j->arena,
		                             &out->out);
		out->act = (in->fi->flags & KD_EVF_NO_RESPONSE) ? PX_J_DROP : PX_J_ANSWER;
		return rc;
	}
	if (rc != KD_OK)
		return rc;
	size_t start = out->out.len;
	kd_w_i32(&out->out, 0);
	kd_w_raw(&out->out, in->frame + 4, h->len);
	rc = kd_tree_encode(&j->tree, &out->out);
	if (rc != KD_OK || out->out.err)
		return rc != KD_OK ? rc : out->out.err;
	kd_w_patch_be(&out->out, start, 4, out->out.len - start - 4);
	out->act = PX_J_SPLIT;
	return KD_OK;
}

int px_judge_merge(struct rule_judge *j, const struct kd_split *split, const uint8_t *frame,
                   size_t len, struct kd_wbuf *out)
{
	struct kd_resp_hdr hdr;
	if (len < 4)
		return KD_EMALFORMED;
	int rc = kd_resp_hdr_parse(frame + 4, len - 4, split->api_key, split->version, &hdr);
	if (rc < 0)
		return rc == KD_NEED_MORE ? KD_ESHORT : rc;
	kd_arena_reset(&j->arena);
	size_t start = out->len;
	kd_w_i32(out, 0);
	kd_w_raw(out, frame + 4, hdr.len);
	rc = kd_build_merge(split, frame + 4 + hdr.len, len - 4 - hdr.len, &j->arena, out);
	if (rc != KD_OK || out->err)
		return rc != KD_OK ? rc : out->err;
	kd_w_patch_be(out, start, 4, out->len - start - 4);
	return KD_OK;
}

/* ---- filtering answers ---- */

struct px_filter *px_filter_new(struct rule_set *rs, const struct rule_judge *j)
{
	struct px_filter *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	const struct rule_req *r = &j->facts.req;
	rule_set_ref(rs);
	f->rs = rs;
	f->req.api_key = r->api_key;
	f->req.api_version = r->api_version;
	f->req.src_family = r->src_family;
	memcpy(f->req.src_addr, r->src_addr, sizeof(f->req.src_addr));
	f->req.broker_id = r->broker_id;
	f->req.acks = -2;
	size_t n = r->client_id.p && r->client_id.len < sizeof(f->client_id) ? r->client_id.len : 0;
	if (n)
		memcpy(f->client_id, r->client_id.p, n);
	f->req.client_id =
	    (struct kd_view){(const uint8_t *)f->client_id, (uint32_t)n, r->client_id.null};
	n = r->principal.p && r->principal.len < sizeof(f->principal) ? r->principal.len : 0;
	if (n)
		memcpy(f->principal, r->principal.p, n);
	f->req.principal = (struct kd_view){(const uint8_t *)f->principal, (uint32_t)n, 0};
	return f;
}

void px_filter_free(struct px_filter **pf)
{
	struct px_filter *f = *pf;
	*pf = NULL;
	if (!f)
		return;
	rule_set_unref(&f->rs);
	free(f);
}

struct filter_arg {
	struct px_filter *f;
	const struct kd_topics *map;
	struct kd_arena *a;
};

static int filter_topic(void *arg, struct kd_view name, const uint8_t *id, int16_t *error,
                        const char **msg)
{
	struct filter_arg *fa = arg;
	char idtext[KD_TOPIC_ID_TEXT];
	if ((name.null || !name.p) && id) {
		name = kd_topics_get(fa->map, id);
		if (name.null || !name.p) {
			size_t n = kd_topic_id_text(id, idtext);
			name = (struct kd_view){(const uint8_t *)idtext, (uint32_t)n, 0};
		}
	}
	if (name.null || !name.p)
		return KD_FILTER_KEEP;
	const struct rule *rule = rule_topic_denied(fa->f->rs, &fa->f->req, name, error);
	if (!rule)
		return KD_FILTER_KEEP;
	if (!rule->meta_show)
		return KD_FILTER_DROP;
	char *m = kd_arena_alloc(fa->a, RULE_NAME_MAX + 64);
	if (m)
		*msg = refusal_msg(rule, m, RULE_NAME_MAX + 64);
	return KD_FILTER_ERROR;
}

int px_judge_filter(struct rule_judge *j, struct px_filter *f, const uint8_t *frame, size_t len,
                    const struct kd_topics *map, struct kd_wbuf *out, unsigned *dropped,
                    unsigned *errored)
{
	struct kd_resp_hdr hdr;
	int16_t key = f->req.api_key, ver = f->req.api_version;
	*dropped = *errored = 0;
	if (len < 4)
		return KD_EMALFORMED;
	int rc = kd_resp_hdr_parse(frame + 4, len - 4, key, ver, &hdr);
	if (rc < 0)
		return rc == KD_NEED_MORE ? KD_ESHORT : rc;
	kd_arena_reset(&j->arena);
	struct kd_tree t;
	const uint8_t *body = frame + 4 + hdr.len;
	rc = kd_tree_decode(&t, &j->arena, key, ver, 0, body, len - 4 - hdr.len);
	if (rc != KD_OK)
		return rc;
	struct filter_arg fa = {f, map, &j->arena};
	rc = kd_build_filter_topics(&t, filter_topic, &fa, dropped, errored);
	if (rc != KD_OK)
		return rc;
	if (!*dropped && !*errored)
		return 0;
	size_t start = out->len;
	kd_w_i32(out, 0);
	kd_w_raw(out, frame + 4, hdr.len);
	rc = kd_tree_encode(&t, out);
	if (rc != KD_OK || out->err)
		return rc != KD_OK ? rc : out->err;
	kd_w_patch_be(out, start, 4, out->len - start - 4);
	return 1;
}
