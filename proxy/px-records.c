/* px-records.c: records rewriting in the proxy (px-records.h). */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "kd-api-keys-gen.h"
#include "kd-tree.h"
#include "kd.h"
#include "px-judge.h"
#include "px-records.h"
#include "rule.h"

const char *px_instance_name(void)
{
	static char name[256];
	static _Atomic int done;
	if (!atomic_load_explicit(&done, memory_order_acquire)) {
		char buf[256];
		if (gethostname(buf, sizeof(buf)) != 0)
			snprintf(buf, sizeof(buf), "kwire");
		buf[sizeof(buf) - 1] = '\0';
		/* Every thread computes the same text: a race writes equal bytes. */
		memcpy(name, buf, sizeof(name));
		atomic_store_explicit(&done, 1, memory_order_release);
	}
	return name;
}

static int64_t now_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void ctx_fill(struct rule_rw_ctx *ctx, struct kd_view client_id, const struct rule_who *who)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->client_id = client_id;
	ctx->principal = who->principal;
	ctx->src_family = who->src_family;
	memcpy(ctx->src_addr, who->src_addr, sizeof(ctx->src_addr));
	ctx->instance = px_instance_name();
	ctx->now_ms = now_ms();
}

int px_records_produce(struct rule_judge *j, const struct rule_set *rs,
                       const struct px_judge_in *in, struct rule_verdict *v, struct px_judged *out)
{
	struct rule_req *req = &j->facts.req;
	struct rule_rw_ctx ctx;
	struct rule_rw_out res;
	if (!j->tree.root || !rule_set_rewrites(rs, RULE_RW_PRODUCE))
		return KD_OK;
	ctx_fill(&ctx, in->fi->req_hdr.client_id, &in->who);
	/* The frame kwire forwards is made in out->out as the records are
	 * rewritten: its size (patched by px_judge), the request header, the
	 * body's bytes with the new record sets (rule_rewrite_tree with dest);
	 * px_judge ends it (rule_rewrite_encode). Reserved at once: room for
	 * the request and some growth. */
	const size_t hlen = in->fi->req_hdr.len;
	out->out.len = 0;
	kd_wbuf_reserve(&out->out, in->len + in->len / 8 + 256);
	kd_w_i32(&out->out, 0);
	kd_w_raw(&out->out, in->frame + 4, hlen);
	if (out->out.err)
		return KD_ENOMEM;
	j->rw.defer = 1;
	j->rw.dest = &out->out;
	int rc =
	    rule_rewrite_tree(&j->rw, rs, RULE_RW_PRODUCE, &j->tree, req, in->topics, &ctx, &res);
	if (rc != KD_OK || !res.changed) {
		/* Nothing rewritten (refusals are judged below). */
		j->rw.dest = NULL;
		out->out.len = 0;
		if (rc != KD_OK)
			return rc;
	}
	out->rw_records = res.records;
	out->rw_passed = res.passed;
	out->rw_refused = res.refused;
	snprintf(out->rw_msg, sizeof(out->rw_msg), "%s", res.msg);
	out->rewritten = res.changed > 0;
	/* Topics refused by on_error: refuse join the verdict's refusals (the
	 * split machinery answers them, kd-build.h). */
	for (uint32_t i = 0; i < res.nelems; i++) {
		if (!res.err[i])
			continue;
		for (unsigned t = 0; t < req->ntopics; t++) {
			const struct kd_view *n = &req->topics[t].name;
			if (j->tv[t].error || n->len != res.names[i].len ||
			    memcmp(n->p, res.names[i].p, n->len))
				continue;
			j->tv[t].error = res.err[i];
			j->tv[t].rule = res.rule[i];
			v->nrefused++;
		}
	}
	if (v->nrefused && !v->error) {
		if (v->nrefused >= req->ntopics) {
			v->error = j->tv[0].error;
			v->rule = j->tv[0].rule;
			v->split = 0;
		} else {
			v->split = 1;
		}
	}
	/* A split is built from the tree: the new records go into it. */
	if (v->split || v->error) {
		rc = rule_rewrite_commit(&j->rw, &j->tree);
		j->rw.dest = NULL;
		out->out.len = 0;
		return rc;
	}
	return KD_OK;
}

int px_records_fetch_wanted(const struct rule_set *rs, const struct kd_req_hdr *h,
                            const struct rule_who *who)
{
	if (h->api_key != KD_API_FETCH || !rs || !rs->n || !rule_set_rewrites(rs, RULE_RW_FETCH))
		return 0;
	struct rule_req req = {
	    .api_key = h->api_key,
	    .api_version = h->api_version,
	    .client_id = h->client_id,
	    .principal = who->principal,
	    .src_family = who->src_family,
	    .broker_id = who->broker_id,
	    .have_body = 1,
	    .acks = -2,
	};
	memcpy(req.src_addr, who->src_addr, sizeof(req.src_addr));
	return rule_rewrite_may_apply(rs, RULE_RW_FETCH, &req);
}

int px_records_fetch(struct rule_judge *j, const struct rule_set *rs, int16_t ver, const uint8_t *p,
                     size_t len, struct kd_view client_id, const struct rule_who *who,
                     const struct kd_topics *map, struct kd_wbuf *out, struct rule_rw_out *res)
{
	struct kd_resp_hdr hdr;
	memset(res, 0, sizeof(*res));
	if (len < 4)
		return KD_EMALFORMED;
	int rc = kd_resp_hdr_parse(p + 4, len - 4, KD_API_FETCH, ver, &hdr);
	if (rc < 0)
		return rc == KD_NEED_MORE ? KD_ESHORT : rc;
	kd_arena_reset(&j->arena);
	const uint8_t *body = p + 4 + hdr.len;
	size_t blen = len - 4 - hdr.len;
	rc = kd_tree_decode(&j->tree, &j->arena, KD_API_FETCH, ver, 0, body, blen);
	if (rc != KD_OK)
		return rc;
	struct rule_req req = {
	    .api_key = KD_API_FETCH,
	    .api_version = ver,
	    .client_id = client_id,
	    .principal = who->principal,
	    .src_family = who->src_family,
	    .broker_id = who->broker_id,
	    .have_body = 1,
	    .acks = -2,
	};
	memcpy(req.src_addr, who->src_addr, sizeof(req.src_addr));
	struct rule_rw_ctx ctx;
	ctx_fill(&ctx, client_id, who);
	/* The new frame is made in out as the records are rewritten: its
	 * size, the response header, then the body's own bytes with the new
	 * record sets in place of the old (rule_rewrite_tree with dest);
	 * partitions not rewritten are copied as they came. Reserved at once:
	 * room for the response and some growth. */
	size_t start = out->len;
	kd_wbuf_reserve(out, len + len / 8 + 256);
	kd_w_i32(out, 0);
	kd_w_raw(out, p + 4, hdr.len);
	j->rw.defer = 1;
	j->rw.dest = out;
	rc = rule_rewrite_tree(&j->rw, rs, RULE_RW_FETCH, &j->tree, &req, map, &ctx, res);
	if (rc == KD_OK && res->changed)
		rc = rule_rewrite_encode(&j->rw, &j->tree, out);
	j->rw.dest = NULL;
	if (rc == KD_OK && !res->changed) {
		out->len = start;
		return 0;
	}
	if (rc != KD_OK || out->err) {
		out->len = start;
		return rc != KD_OK ? rc : KD_ENOMEM;
	}
	kd_w_patch_be(out, start, 4, out->len - start - 4);
	return 1;
}

static void free_frame(const void *data, size_t len, void *arg)
{
	(void)len;
	(void)arg;
	free((void *)data);
}

int px_records_hand_over(struct evbuffer *out, struct kd_wbuf *w, int prepend)
{
	int rc = -1;
	if (w->len && !w->err) {
		if (!prepend) {
			rc = evbuffer_add_reference(out, w->p, w->len, free_frame, NULL);
			if (rc == 0)
				w->p = NULL; /* out frees it */
		} else {
			struct evbuffer *tmp = evbuffer_new();
			if (tmp &&
			    evbuffer_add_reference(tmp, w->p, w->len, free_frame, NULL) == 0) {
				w->p = NULL; /* tmp, then out, frees it */
				rc = evbuffer_prepend_buffer(out, tmp);
			}
			if (tmp)
				evbuffer_free(tmp);
		}
	}
	kd_wbuf_free(w);
	return rc == 0 ? 0 : -1;
}

void px_malloc_tune(void)
{
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
	const char *t = getenv("GLIBC_TUNABLES");
	if (getenv("MALLOC_MMAP_THRESHOLD_") || getenv("MALLOC_TRIM_THRESHOLD_") ||
	    (t && strstr(t, "glibc.malloc.")))
		return; /* the operator's own choice */
	/* glibc's own ceilings for the thresholds it adjusts by itself */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}
