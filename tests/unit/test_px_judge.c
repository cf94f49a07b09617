/* test_px_judge.c: the proxy's decision point on real request frames,
 * framed by the stream decoder as the proxy frames them: forward, answer
 * (the answer decodes, with the correlation id and the error), drop
 * (acks=0), split (the reduced request, then the broker's answer merged
 * back), close (a body that does not decode), and quota keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "kd-api-keys-gen.h"
#include "kd-arena.h"
#include "kd-build.h"
#include "kd-hdr.h"
#include "kd-stream.h"
#include "kd-tree.h"
#include "px-judge.h"
#include "rule.h"

static struct kd_node *child(struct kd_node *n, const char *name)
{
	struct kd_node *k = kd_node_child(n, name);
	assert_non_null(k);
	return k;
}

static int str_is(const struct kd_node *n, const char *s)
{
	return !n->null && n->val.v.len == strlen(s) && !memcmp(n->val.v.p, s, n->val.v.len);
}

/* A Produce v9 frame (correlation id 77, client id "app-1") to the given
 * topics, one partition each, with acks. */
static void produce_frame(struct kd_arena *a, struct kd_wbuf *w, const char *const *topics,
                          unsigned n, int acks)
{
	struct kd_tree t;
	assert_int_equal(kd_tree_init_default(&t, a, KD_API_PRODUCE, 9, 1), KD_OK);
	assert_int_equal(kd_node_set_int(child(t.root, "Acks"), acks), KD_OK);
	struct kd_node *td = child(t.root, "TopicData");
	for (uint32_t i = 0; i < n; i++) {
		assert_non_null(kd_node_array_add(&t, td, UINT32_MAX));
		struct kd_node *te = kd_node_elem(td, i);
		assert_int_equal(
		    kd_node_set_str(&t, child(te, "Name"), topics[i], strlen(topics[i])), KD_OK);
		assert_non_null(kd_node_array_add(&t, child(te, "PartitionData"), UINT32_MAX));
	}
	struct kd_req_hdr h;
	kd_req_hdr_init(&h, KD_API_PRODUCE, 9, 77, "app-1");
	w->len = 0;
	kd_w_i32(w, 0);
	kd_req_hdr_write(w, &h);
	assert_int_equal(kd_tree_encode(&t, w), KD_OK);
	kd_w_patch_be(w, 0, 4, w->len - 4);
}

static void noop(void *arg, const struct kd_event *ev)
{
	(void)arg;
	(void)ev;
}

struct fx {
	struct kd_arena a;
	struct kd_wbuf frame, resp;
	struct kd_stream *ks;
	struct kd_frame_info fi;
	struct rule_judge j;
	struct px_judged out;
	uint8_t src[16]; /* 10.1.2.3 */
};

static int setup(void **state)
{
	static struct fx fx;
	memset(&fx, 0, sizeof(fx));
	struct kd_stream_cfg cfg = {.on_event = noop};
	fx.ks = kd_stream_new(&cfg);
	inet_pton(AF_INET, "10.1.2.3", fx.src);
	*state = &fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	kd_stream_free(fx->ks);
	px_judged_free(&fx->out);
	rule_judge_free(&fx->j);
	kd_wbuf_free(&fx->frame);
	kd_wbuf_free(&fx->resp);
	kd_arena_free(&fx->a);
	return 0;
}

static struct rule_set *rules(const char *yaml)
{
	char err[512];
	struct rule_set *rs = rule_set_load_mem(yaml, strlen(yaml), "r", err, sizeof(err));
	if (!rs)
		print_error("%s\n", err);
	assert_non_null(rs);
	return rs;
}

static int judge(struct fx *fx, const struct rule_set *rs)
{
	assert_int_equal(kd_stream_frame_begin(fx->ks, KD_C2S, fx->frame.p, fx->frame.len, &fx->fi),
	                 KD_OK);
	struct px_judge_in in = {.frame = fx->frame.p,
	                         .len = fx->frame.len,
	                         .fi = &fx->fi,
	                         .who = {.src_family = 4, .broker_id = 2}};
	memcpy(in.who.src_addr, fx->src, 16);
	assert_int_equal(px_judge(&fx->j, rs, &in, &fx->out), KD_OK);
	return fx->out.act;
}

static const char yaml[] = "access:\n"
                           "  - name: audit-ro\n"
                           "    match: {api: Produce, topic: \"audit.*\"}\n"
                           "    deny: TOPIC_AUTHORIZATION_FAILED\n"
                           "quotas:\n"
                           "  - name: per-client\n"
                           "    match: {source: 10.0.0.0/8}\n"
                           "    produce_bytes_per_sec: 1MiB\n";

static void test_forward_and_quota(void **state)
{
	struct fx *fx = *state;
	struct rule_set *rs = rules(yaml);
	const char *t[] = {"orders"};
	produce_frame(&fx->a, &fx->frame, t, 1, -1);
	assert_int_equal(judge(fx, rs), PX_J_FORWARD);
	assert_int_equal(fx->out.nquotas, 1);
	assert_string_equal(fx->out.keys[0], "app-1");
	assert_string_equal(fx->out.quotas[0].rule->name, "per-client");
	rule_set_unref(&rs);
}

static void test_answer_and_drop(void **state)
{
	struct fx *fx = *state;
	struct rule_set *rs = rules(yaml);
	const char *t[] = {"audit.log"};
	produce_frame(&fx->a, &fx->frame, t, 1, 1);
	assert_int_equal(judge(fx, rs), PX_J_ANSWER);
	assert_int_equal(fx->out.error, 29);
	assert_string_equal(fx->out.topic, "audit.log");
	/* The answer: correlation id 77, Responses[audit.log] with error 29. */
	struct kd_resp_hdr h;
	const uint8_t *p = fx->out.out.p;
	size_t len = fx->out.out.len;
	assert_true(kd_resp_hdr_parse(p + 4, len - 4, KD_API_PRODUCE, 9, &h) >= 0);
	assert_int_equal(h.correlation_id, 77);
	struct kd_tree r;
	assert_int_equal(
	    kd_tree_decode(&r, &fx->a, KD_API_PRODUCE, 9, 0, p + 4 + h.len, len - 4 - h.len),
	    KD_OK);
	struct kd_node *te = kd_node_elem(child(r.root, "Responses"), 0);
	assert_true(str_is(child(te, "Name"), "audit.log"));
	struct kd_node *pe = kd_node_elem(child(te, "PartitionResponses"), 0);
	assert_int_equal(kd_node_int(child(pe, "ErrorCode")), 29);
	assert_true(str_is(child(pe, "ErrorMessage"), "denied by kwire access rule 'audit-ro'"));
	/* acks=0: nothing to answer. */
	produce_frame(&fx->a, &fx->frame, t, 1, 0);
	assert_int_equal(judge(fx, rs), PX_J_DROP);
	rule_set_unref(&rs);
}

static void test_split_and_merge(void **state)
{
	struct fx *fx = *state;
	struct rule_set *rs = rules(yaml);
	const char *t[] = {"orders", "audit.log", "payments"};
	produce_frame(&fx->a, &fx->frame, t, 3, -1);
	assert_int_equal(judge(fx, rs), PX_J_SPLIT);
	assert_int_equal(fx->out.nrefused, 1);
	/* The reduced request keeps the header (correlation id 77). */
	struct kd_frame_info fi;
	assert_int_equal(kd_stream_frame_begin(fx->ks, KD_C2S, fx->out.out.p, fx->out.out.len, &fi),
	                 KD_OK);
	assert_int_equal(fi.req_hdr.correlation_id, 77);
	struct kd_tree req;
	const uint8_t *body = fx->out.out.p + 4 + fi.req_hdr.len;
	size_t blen = fx->out.out.len - 4 - fi.req_hdr.len;
	assert_int_equal(kd_tree_decode(&req, &fx->a, KD_API_PRODUCE, 9, 1, body, blen), KD_OK);
	struct kd_node *td = child(req.root, "TopicData");
	assert_int_equal(td->nkids, 2);
	assert_true(str_is(child(kd_node_elem(td, 1), "Name"), "payments"));
	/* The broker's answer to it, then the merge. */
	struct kd_tree bresp;
	assert_int_equal(kd_build_error_body(&req, 0, NULL, &fx->a, &bresp), KD_OK);
	struct kd_resp_hdr rh = {.correlation_id = 77, .hdr_version = 1};
	fx->resp.len = 0;
	kd_w_i32(&fx->resp, 0);
	kd_resp_hdr_write(&fx->resp, &rh);
	assert_int_equal(kd_tree_encode(&bresp, &fx->resp), KD_OK);
	kd_w_patch_be(&fx->resp, 0, 4, fx->resp.len - 4);
	struct kd_wbuf merged = {0};
	assert_int_equal(px_judge_merge(&fx->j, &fx->out.split, fx->resp.p, fx->resp.len, &merged),
	                 KD_OK);
	struct kd_resp_hdr mh;
	assert_true(kd_resp_hdr_parse(merged.p + 4, merged.len - 4, KD_API_PRODUCE, 9, &mh) >= 0);
	assert_int_equal(mh.correlation_id, 77);
	struct kd_tree m;
	assert_int_equal(kd_tree_decode(&m, &fx->a, KD_API_PRODUCE, 9, 0, merged.p + 4 + mh.len,
	                                merged.len - 4 - mh.len),
	                 KD_OK);
	struct kd_node *mr = child(m.root, "Responses");
	assert_int_equal(mr->nkids, 3);
	for (uint32_t i = 0; i < 3; i++) {
		struct kd_node *te = kd_node_elem(mr, i);
		assert_true(str_is(child(te, "Name"), t[i]));
		struct kd_node *pe = kd_node_elem(child(te, "PartitionResponses"), 0);
		assert_int_equal(kd_node_int(child(pe, "ErrorCode")), i == 1 ? 29 : 0);
	}
	kd_wbuf_free(&merged);
	rule_set_unref(&rs);
}

static void test_undecodable_refusal_closes(void **state)
{
	struct fx *fx = *state;
	struct rule_set *rs = rules("access:\n  - match: {client_id: \"app-*\"}\n    deny: true\n");
	const char *t[] = {"orders"};
	produce_frame(&fx->a, &fx->frame, t, 1, -1);
	/* Cut the body: the header still parses, the body does not. */
	fx->frame.len -= 3;
	kd_w_patch_be(&fx->frame, 0, 4, fx->frame.len - 4);
	assert_int_equal(judge(fx, rs), PX_J_CLOSE);
	rule_set_unref(&rs);
	/* No rule for this API: forwarded without looking at the body. */
	rs = rules("access:\n  - match: {api: Fetch}\n    deny: true\n");
	assert_int_equal(judge(fx, rs), PX_J_FORWARD);
	rule_set_unref(&rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_forward_and_quota, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_answer_and_drop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_split_and_merge, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_undecodable_refusal_closes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
