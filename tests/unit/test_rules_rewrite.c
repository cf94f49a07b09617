/* test_rules_rewrite.c: the records part of `rewrite:` rules
 * (rule_rewrite_tree, rules/rule-rewrite.c) on decoded Produce requests:
 * which topics a rule applies to, headers and templates, masks with the
 * HMAC key from a file, on_error pass and refuse, and the batch fields an
 * idempotent producer relies on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "kd-records.h"
#include "kd-topics.h"
#include "kd-tree.h"
#include "kd.h"
#include "rule.h"

#define V(s) ((struct kd_view){(const uint8_t *)(s), (uint32_t)strlen(s), 0})

static const char KEY[] = "unit-test-key-0123456789";
static char keypath[64];

static int setup(void **state)
{
	(void)state;
	snprintf(keypath, sizeof(keypath), "/tmp/kwire-rw-key-%d", (int)getpid());
	FILE *f = fopen(keypath, "w");
	assert_non_null(f);
	fprintf(f, "%s\n", KEY);
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(keypath);
	return 0;
}

/* Loads yaml with KEYFILE replaced by the key file's path. */
static struct rule_set *load(const char *text)
{
	char yaml[2048], err[512] = "";
	const char *k = strstr(text, "KEYFILE");
	if (k)
		snprintf(yaml, sizeof(yaml), "%.*s%s%s", (int)(k - text), text, keypath, k + 7);
	else
		snprintf(yaml, sizeof(yaml), "%s", text);
	struct rule_set *rs = rule_set_load_mem(yaml, strlen(yaml), "r.yaml", err, sizeof(err));
	if (!rs)
		fail_msg("%s", err);
	return rs;
}

/* A Produce v3 body: topics[i] with one partition holding one v2 batch of
 * the given values (producer 77, epoch 2, base sequence 40). */
static void produce_body(struct kd_wbuf *w, const char *const *topics, unsigned n,
                         const char *const *values, unsigned nv, int codec)
{
	kd_w_i16(w, -1);
	kd_w_i16(w, -1);
	kd_w_i32(w, 30000);
	kd_w_i32(w, (int32_t)n);
	for (unsigned t = 0; t < n; t++) {
		struct kd_wbuf b = {0};
		struct kd_wrecord recs[8];
		struct kd_header h[2] = {{V("authorization"), V("secret")}, {V("keep"), V("1")}};
		for (unsigned i = 0; i < nv; i++)
			recs[i] = (struct kd_wrecord){.timestamp = 5000 + i,
			                              .key = V("k"),
			                              .value = V(values[i]),
			                              .headers = h,
			                              .header_count = 2};
		struct kd_batch_spec spec = {.magic = 2,
		                             .codec = (uint8_t)codec,
		                             .producer_id = 77,
		                             .producer_epoch = 2,
		                             .base_sequence = 40};
		assert_int_equal(kd_batch_write(&b, &spec, recs, nv), KD_OK);
		kd_w_i16(w, (int16_t)strlen(topics[t]));
		kd_w_raw(w, topics[t], strlen(topics[t]));
		kd_w_i32(w, 1);
		kd_w_i32(w, 0);
		kd_w_i32(w, (int32_t)b.len);
		kd_w_raw(w, b.p, b.len);
		kd_wbuf_free(&b);
	}
}

/* The RECORDS view of topic element t of a decoded Produce v3 tree. */
static struct kd_view records_of(const struct kd_tree *t, unsigned i)
{
	struct kd_node *topics = kd_node_child(t->root, "TopicData");
	struct kd_node *parts = kd_node_child(kd_node_elem(topics, i), "PartitionData");
	return kd_node_child(kd_node_elem(parts, 0), "Records")->val.v;
}

struct rewritten {
	struct kd_arena a;
	struct kd_tree t;
	struct rule_rw_out out;
	struct rule_rewriter w;
	struct kd_wbuf body; /* the tree's views point into it */
	int rc;
};

static void rewrite(struct rewritten *r, const struct rule_set *rs, const char *const *topics,
                    unsigned n, const char *const *values, unsigned nv, int codec)
{
	memset(r, 0, sizeof(*r));
	produce_body(&r->body, topics, n, values, nv, codec);
	assert_int_equal(kd_tree_decode(&r->t, &r->a, 0, 3, 1, r->body.p, r->body.len), KD_OK);
	struct rule_req req = {.api_key = 0,
	                       .api_version = 3,
	                       .have_body = 1,
	                       .acks = -1,
	                       .client_id = V("app-1"),
	                       .src_family = 4,
	                       .src_addr = {10, 1, 2, 3}};
	struct rule_rw_ctx ctx = {.client_id = V("app-1"),
	                          .src_family = 4,
	                          .src_addr = {10, 1, 2, 3},
	                          .instance = "node-a",
	                          .now_ms = 1700000000123};
	r->rc = rule_rewrite_tree(&r->w, rs, RULE_RW_PRODUCE, &r->t, &req, NULL, &ctx, &r->out);
}

static void rewritten_free(struct rewritten *r)
{
	rule_rewriter_free(&r->w);
	kd_arena_free(&r->a);
	kd_wbuf_free(&r->body);
}

static void test_headers_and_masks(void **state)
{
	(void)state;
	struct rule_set *rs = load("rewrite:\n"
	                           "  - match: {api: Produce, topic: \"orders.*\"}\n"
	                           "    headers:\n"
	                           "      remove: [authorization]\n"
	                           "      add: {via: \"${client_id}@${source} on ${instance} at "
	                           "${time} (${time_ms}) $$\"}\n"
	                           "    mask:\n"
	                           "      - {path: user.email, hash: true}\n"
	                           "      - {path: pin, drop: true}\n"
	                           "    hash_key_file: KEYFILE\n");
	static const char *const topics[] = {"orders.eu", "other"};
	static const char *const values[] = {"{\"user\":{\"email\":\"a@b\"},\"pin\":1,\"n\":2}",
	                                     "{\"n\":3}", "\"just a string\""};
	for (int codec = 0; codec <= 4; codec++) {
		struct rewritten r;
		rewrite(&r, rs, topics, 2, values, 3, codec);
		assert_int_equal(r.rc, KD_OK);
		assert_int_equal(r.out.changed, 1); /* orders.eu only */
		assert_int_equal(r.out.refused, 0);
		assert_int_equal(r.out.err[0], 0);
		struct kd_view recs = records_of(&r.t, 0);
		struct kd_rec_iter it;
		struct kd_batch *b;
		struct kd_record rec;
		kd_rec_iter_init(&it, recs.p, recs.len, NULL);
		assert_int_equal(kd_rec_next_batch(&it, &b), 1);
		assert_true(b->crc_ok);
		assert_int_equal(b->codec, codec);
		assert_int_equal(b->producer_id, 77);
		assert_int_equal(b->producer_epoch, 2);
		assert_int_equal(b->base_sequence, 40);
		assert_int_equal(b->record_count, 3);
		unsigned char md[32];
		unsigned mdlen;
		HMAC(EVP_sha256(), KEY, (int)strlen(KEY), (const unsigned char *)"a@b", 3, md,
		     &mdlen);
		char want[256];
		int n = snprintf(want, sizeof(want), "{\"user\":{\"email\":\"");
		for (unsigned i = 0; i < 32; i++)
			n += snprintf(want + n, sizeof(want) - (size_t)n, "%02x", md[i]);
		snprintf(want + n, sizeof(want) - (size_t)n, "\"},\"n\":2}");
		for (int i = 0; kd_rec_next_record(&it, &rec) == 1; i++) {
			const char *wv = i == 0 ? want : values[i];
			assert_int_equal(rec.value.len, strlen(wv));
			assert_memory_equal(rec.value.p, wv, rec.value.len);
			assert_int_equal(rec.timestamp, 5000 + i);
			struct kd_rec_hdr_iter hi;
			struct kd_header h;
			kd_rec_headers_init(&hi, &rec);
			assert_int_equal(kd_rec_next_header(&hi, &h), 1);
			assert_memory_equal(h.key.p, "keep", 4);
			assert_int_equal(kd_rec_next_header(&hi, &h), 1);
			const char *via = "app-1@10.1.2.3 on node-a at 2023-11-14T22:13:20.123Z "
			                  "(1700000000123) $";
			assert_int_equal(h.value.len, strlen(via));
			assert_memory_equal(h.value.p, via, h.value.len);
			assert_int_equal(kd_rec_next_header(&hi, &h), 0);
		}
		kd_rec_iter_free(&it);
		/* The other topic is untouched. */
		struct kd_view other = records_of(&r.t, 1);
		kd_rec_iter_init(&it, other.p, other.len, NULL);
		assert_int_equal(kd_rec_next_batch(&it, &b), 1);
		assert_int_equal(kd_rec_next_record(&it, &rec), 1);
		assert_int_equal(rec.header_count, 2);
		kd_rec_iter_free(&it);
		rewritten_free(&r);
	}
	rule_set_unref(&rs);
}

static void test_on_error(void **state)
{
	(void)state;
	static const char *const topics[] = {"strict", "lenient"};
	static const char *const values[] = {"{\"card\":\"4111\"}", "not json"};
	struct rule_set *rs = load("rewrite:\n"
	                           "  - name: strict\n"
	                           "    match: {api: Produce, topic: strict}\n"
	                           "    mask: [{path: card, replace: \"***\"}]\n"
	                           "    on_error: refuse\n"
	                           "  - name: lenient\n"
	                           "    match: {api: Produce, topic: lenient}\n"
	                           "    mask: [{path: card, replace: \"***\"}]\n"
	                           "    headers: {set: {keep: \"2\"}}\n");
	struct rewritten r;
	rewrite(&r, rs, topics, 2, values, 2, KD_CODEC_GZIP);
	assert_int_equal(r.rc, KD_OK);
	assert_int_equal(r.out.err[0], RULE_ERR_INVALID_RECORD);
	assert_string_equal(r.out.rule[0]->name, "strict");
	assert_int_equal(r.out.err[1], 0);
	assert_int_equal(r.out.passed, 1);
	assert_int_equal(r.out.refused, 1);
	assert_non_null(strstr(r.out.msg, "not JSON"));
	/* lenient: the JSON record masked, the other kept, headers set on both. */
	struct kd_view recs = records_of(&r.t, 1);
	struct kd_rec_iter it;
	struct kd_batch *b;
	struct kd_record rec;
	kd_rec_iter_init(&it, recs.p, recs.len, NULL);
	assert_int_equal(kd_rec_next_batch(&it, &b), 1);
	assert_int_equal(b->codec, KD_CODEC_GZIP);
	assert_int_equal(kd_rec_next_record(&it, &rec), 1);
	assert_memory_equal(rec.value.p, "{\"card\":\"***\"}", rec.value.len);
	assert_int_equal(kd_rec_next_record(&it, &rec), 1);
	assert_memory_equal(rec.value.p, "not json", rec.value.len);
	struct kd_rec_hdr_iter hi;
	struct kd_header h;
	kd_rec_headers_init(&hi, &rec);
	assert_int_equal(kd_rec_next_header(&hi, &h), 1);
	assert_memory_equal(h.key.p, "authorization", 13);
	assert_int_equal(kd_rec_next_header(&hi, &h), 1);
	assert_memory_equal(h.key.p, "keep", 4);
	assert_memory_equal(h.value.p, "2", 1);
	assert_int_equal(kd_rec_next_header(&hi, &h), 0);
	kd_rec_iter_free(&it);
	rewritten_free(&r);
	rule_set_unref(&rs);
}

static void test_may_apply(void **state)
{
	(void)state;
	struct rule_set *rs = load("rewrite:\n"
	                           "  - match: {api: Fetch, client_id: \"masked-*\", topic: pii}\n"
	                           "    mask: [{path: ssn, replace: \"***\"}]\n");
	struct rule_req req = {.api_key = 1,
	                       .api_version = 11,
	                       .have_body = 1,
	                       .acks = -2,
	                       .client_id = V("masked-1")};
	assert_true(rule_set_rewrites(rs, RULE_RW_FETCH));
	assert_false(rule_set_rewrites(rs, RULE_RW_PRODUCE));
	assert_true(rule_rewrite_may_apply(rs, RULE_RW_FETCH, &req));
	req.client_id = V("other");
	assert_false(rule_rewrite_may_apply(rs, RULE_RW_FETCH, &req));
	/* Produce is not its direction: no body needed for it. */
	assert_false(rule_set_needs_body(rs, 0));
	rule_set_unref(&rs);
}

/* A Fetch v13 response (topics by TopicId) with one partition of records,
 * for a topic whose id the map knows and one it does not. */
static void test_fetch_by_topic_id(void **state)
{
	(void)state;
	struct rule_set *rs = load("rewrite:\n"
	                           "  - match: {api: Fetch, topic: pii}\n"
	                           "    mask: [{path: ssn, replace: \"***\"}]\n");
	static const uint8_t known[16] = {1, 2, 3}, unknown[16] = {9, 9, 9};
	struct kd_topics *map = kd_topics_new();
	assert_non_null(map);
	kd_topics_put(map, known, (const uint8_t *)"pii", 3);
	struct kd_wbuf batch = {0};
	struct kd_wrecord rec = {.timestamp = 1, .value = V("{\"ssn\":\"123\"}")};
	struct kd_batch_spec spec = {
	    .magic = 2, .producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
	assert_int_equal(kd_batch_write(&batch, &spec, &rec, 1), KD_OK);
	struct kd_arena a = {0};
	struct kd_tree t;
	assert_int_equal(kd_tree_init_default(&t, &a, 1, 13, 0), KD_OK);
	struct kd_node *resp = kd_node_child(t.root, "Responses");
	for (int i = 0; i < 2; i++) {
		struct kd_node *e = kd_node_array_add(&t, resp, UINT32_MAX);
		assert_non_null(e);
		kd_node_set_uuid(kd_node_child(e, "TopicId"), i ? unknown : known);
		struct kd_node *p =
		    kd_node_array_add(&t, kd_node_child(e, "Partitions"), UINT32_MAX);
		assert_non_null(p);
		assert_int_equal(
		    kd_node_set_str(&t, kd_node_child(p, "Records"), batch.p, batch.len), KD_OK);
	}
	struct rule_req req = {
	    .api_key = 1, .api_version = 13, .have_body = 1, .acks = -2, .client_id = V("c")};
	struct rule_rw_ctx ctx = {.client_id = V("c"), .now_ms = 1};
	struct kd_wbuf body0 = {0}; /* the response as the broker sent it */
	assert_int_equal(kd_tree_encode(&t, &body0), KD_OK);
	struct rule_rewriter w = {0};
	struct rule_rw_out out;
	assert_int_equal(rule_rewrite_tree(&w, rs, RULE_RW_FETCH, &t, &req, map, &ctx, &out),
	                 KD_OK);
	/* pii: masked; the unknown id: UNKNOWN_TOPIC_ID and no records. */
	assert_int_equal(out.changed, 2);
	assert_int_equal(out.refused, 1);
	for (int i = 0; i < 2; i++) {
		struct kd_node *p =
		    kd_node_elem(kd_node_child(kd_node_elem(resp, (uint32_t)i), "Partitions"), 0);
		struct kd_view r = kd_node_child(p, "Records")->val.v;
		assert_int_equal(kd_node_int(kd_node_child(p, "ErrorCode")), i ? 100 : 0);
		if (i) {
			assert_int_equal(r.len, 0);
			continue;
		}
		struct kd_rec_iter it;
		struct kd_batch *b;
		struct kd_record got;
		kd_rec_iter_init(&it, r.p, r.len, NULL);
		assert_int_equal(kd_rec_next_batch(&it, &b), 1);
		assert_int_equal(kd_rec_next_record(&it, &got), 1);
		assert_memory_equal(got.value.p, "{\"ssn\":\"***\"}", got.value.len);
		kd_rec_iter_free(&it);
	}
	/* The tree encodes (lengths recomputed). */
	struct kd_wbuf enc = {0};
	assert_int_equal(kd_tree_encode(&t, &enc), KD_OK);
	/* In the proxy's way (dest): a partition answered UNKNOWN_TOPIC_ID is
	 * an edit besides the records, so the tree is encoded, to the same
	 * bytes, after what the caller wrote. */
	struct kd_arena a6 = {0};
	struct kd_tree t6;
	struct kd_wbuf d = {0};
	struct rule_rewriter w6 = {.defer = 1, .dest = &d};
	kd_w_raw(&d, "HDR", 3);
	assert_int_equal(kd_tree_decode(&t6, &a6, 1, 13, 0, body0.p, body0.len), KD_OK);
	assert_int_equal(rule_rewrite_tree(&w6, rs, RULE_RW_FETCH, &t6, &req, map, &ctx, &out),
	                 KD_OK);
	assert_int_equal(out.changed, 2);
	assert_int_equal(rule_rewrite_encode(&w6, &t6, &d), KD_OK);
	assert_false(w6.spliced);
	assert_int_equal(d.len, 3 + enc.len);
	assert_memory_equal(d.p + 3, enc.p, enc.len);
	kd_wbuf_free(&d);
	rule_rewriter_free(&w6);
	kd_arena_free(&a6);
	kd_wbuf_free(&body0);
	kd_wbuf_free(&enc);
	rule_rewriter_free(&w);
	kd_arena_free(&a);
	kd_wbuf_free(&batch);
	kd_topics_free(&map);
	rule_set_unref(&rs);
}

/* A Produce v9 body (compact lengths) with the same topics and batches as
 * produce_body's: built as a tree and encoded. */
static void produce_body_v9(struct kd_wbuf *w, const char *const *topics, unsigned n,
                            const char *const *values, unsigned nv)
{
	struct kd_wbuf v3 = {0};
	struct kd_arena a3 = {0}, a = {0};
	struct kd_tree t3, t;
	produce_body(&v3, topics, n, values, nv, 0);
	assert_int_equal(kd_tree_decode(&t3, &a3, 0, 3, 1, v3.p, v3.len), KD_OK);
	assert_int_equal(kd_tree_init_default(&t, &a, 0, 9, 1), KD_OK);
	kd_node_set_int(kd_node_child(t.root, "Acks"), -1);
	struct kd_node *arr = kd_node_child(t.root, "TopicData");
	for (unsigned i = 0; i < n; i++) {
		struct kd_node *e = kd_node_array_add(&t, arr, UINT32_MAX);
		assert_non_null(e);
		assert_int_equal(
		    kd_node_set_str(&t, kd_node_child(e, "Name"), topics[i], strlen(topics[i])),
		    KD_OK);
		struct kd_node *pd =
		    kd_node_array_add(&t, kd_node_child(e, "PartitionData"), UINT32_MAX);
		struct kd_view r = records_of(&t3, i);
		assert_int_equal(kd_node_set_str(&t, kd_node_child(pd, "Records"), r.p, r.len),
		                 KD_OK);
	}
	assert_int_equal(kd_tree_encode(&t, w), KD_OK);
	kd_arena_free(&a);
	kd_arena_free(&a3);
	kd_wbuf_free(&v3);
}

/* rule_rewrite_encode splices the new record sets into the body's own
 * bytes: the same bytes as the tree edited in place and encoded, with
 * INT32 (v3) and compact (v9) lengths, a prefix that grows a byte (the
 * records pass 127 bytes), and topics left alone between rewritten ones. */
static void test_splice_encode(void **state)
{
	(void)state;
	struct rule_set *rs = load("rewrite:\n"
	                           "  - match: {api: Produce, topic: \"t-*\"}\n"
	                           "    headers: {add: {x-kwire: \"${client_id} on ${instance} at "
	                           "${time_ms} via a proxy between client and cluster\"},"
	                           " remove: [authorization]}\n");
	static const char *const topics[] = {"t-1", "other", "t-2", "t-3"};
	static const char *const values[] = {"{\"n\":1}", "{\"n\":22}"};
	for (int v = 0; v < 2; v++) {
		int16_t ver = v ? 9 : 3;
		struct kd_wbuf body = {0}, spliced = {0}, encoded = {0};
		if (v)
			produce_body_v9(&body, topics, 4, values, 1);
		else
			produce_body(&body, topics, 4, values, 2, 0);
		struct rule_req req = {.api_key = 0,
		                       .api_version = ver,
		                       .have_body = 1,
		                       .acks = -1,
		                       .client_id = V("app-1")};
		struct rule_rw_ctx ctx = {.client_id = V("app-1"), .instance = "n", .now_ms = 1};
		struct rule_rw_out out;
		struct kd_arena a1 = {0}, a2 = {0};
		struct kd_tree t1, t2;
		struct rule_rewriter w1 = {.defer = 1}, w2 = {0};
		assert_int_equal(kd_tree_decode(&t1, &a1, 0, ver, 1, body.p, body.len), KD_OK);
		assert_int_equal(kd_tree_decode(&t2, &a2, 0, ver, 1, body.p, body.len), KD_OK);
		assert_int_equal(
		    rule_rewrite_tree(&w1, rs, RULE_RW_PRODUCE, &t1, &req, NULL, &ctx, &out),
		    KD_OK);
		assert_int_equal(out.changed, 3);
		/* Deferred: the tree still holds the old records. */
		assert_int_equal(records_of(&t1, 0).p - body.p > 0, 1);
		assert_int_equal(rule_rewrite_encode(&w1, &t1, &spliced), KD_OK);
		assert_true(w1.spliced);
		assert_int_equal(
		    rule_rewrite_tree(&w2, rs, RULE_RW_PRODUCE, &t2, &req, NULL, &ctx, &out),
		    KD_OK);
		assert_int_equal(kd_tree_encode(&t2, &encoded), KD_OK);
		assert_int_equal(spliced.len, encoded.len);
		assert_memory_equal(spliced.p, encoded.p, spliced.len);
		assert_true(spliced.len > body.len);
		if (v) { /* the compact length went from one byte to two */
			struct kd_arena a4 = {0};
			struct kd_tree t4;
			assert_int_equal(
			    kd_tree_decode(&t4, &a4, 0, ver, 1, spliced.p, spliced.len), KD_OK);
			assert_true(records_of(&t1, 0).len <= 127);
			assert_true(records_of(&t4, 0).len > 127);
			kd_arena_free(&a4);
		}
		/* Made in the caller's buffer as the records are rewritten (dest,
		 * as the proxy does), after what the caller wrote there. */
		struct kd_arena a5 = {0};
		struct kd_tree t5;
		struct kd_wbuf d = {0};
		struct rule_rewriter w5 = {.defer = 1, .dest = &d};
		kd_w_raw(&d, "HDR", 3);
		assert_int_equal(kd_tree_decode(&t5, &a5, 0, ver, 1, body.p, body.len), KD_OK);
		assert_int_equal(
		    rule_rewrite_tree(&w5, rs, RULE_RW_PRODUCE, &t5, &req, NULL, &ctx, &out),
		    KD_OK);
		assert_int_equal(rule_rewrite_encode(&w5, &t5, &d), KD_OK);
		assert_true(w5.spliced);
		assert_int_equal(d.len, 3 + encoded.len);
		assert_memory_equal(d.p, "HDR", 3);
		assert_memory_equal(d.p + 3, encoded.p, encoded.len);
		/* ... and committed from there: the caller's bytes are left. */
		kd_arena_reset(&a5);
		d.len = 3;
		assert_int_equal(kd_tree_decode(&t5, &a5, 0, ver, 1, body.p, body.len), KD_OK);
		assert_int_equal(
		    rule_rewrite_tree(&w5, rs, RULE_RW_PRODUCE, &t5, &req, NULL, &ctx, &out),
		    KD_OK);
		assert_int_equal(rule_rewrite_commit(&w5, &t5), KD_OK);
		assert_int_equal(d.len, 3);
		struct kd_wbuf enc5 = {0};
		assert_int_equal(kd_tree_encode(&t5, &enc5), KD_OK);
		assert_int_equal(enc5.len, encoded.len);
		assert_memory_equal(enc5.p, encoded.p, encoded.len);
		kd_wbuf_free(&enc5);
		kd_wbuf_free(&d);
		rule_rewriter_free(&w5);
		kd_arena_free(&a5);
		/* Committed instead: the tree holds them, and encodes the same. */
		struct kd_arena a3 = {0};
		struct kd_tree t3;
		struct kd_wbuf enc3 = {0};
		assert_int_equal(kd_tree_decode(&t3, &a3, 0, ver, 1, body.p, body.len), KD_OK);
		assert_int_equal(
		    rule_rewrite_tree(&w1, rs, RULE_RW_PRODUCE, &t3, &req, NULL, &ctx, &out),
		    KD_OK);
		assert_int_equal(rule_rewrite_commit(&w1, &t3), KD_OK);
		assert_int_equal(kd_tree_encode(&t3, &enc3), KD_OK);
		assert_memory_equal(enc3.p, encoded.p, encoded.len);
		kd_wbuf_free(&enc3);
		kd_arena_free(&a3);
		rule_rewriter_free(&w1);
		rule_rewriter_free(&w2);
		kd_arena_free(&a1);
		kd_arena_free(&a2);
		kd_wbuf_free(&body);
		kd_wbuf_free(&spliced);
		kd_wbuf_free(&encoded);
	}
	rule_set_unref(&rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_headers_and_masks), cmocka_unit_test(test_on_error),
	    cmocka_unit_test(test_may_apply),         cmocka_unit_test(test_fetch_by_topic_id),
	    cmocka_unit_test(test_splice_encode),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
