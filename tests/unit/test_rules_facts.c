/* test_rules_facts.c: the facts the rules judge, read off real request
 * encodings (rule_facts_read): Produce topics with the codecs, counts,
 * sizes and headers of their batches (v3 and flexible v9), Fetch v13+ topic
 * ids resolved through the topic map or marked, CreateTopics' partitions
 * and replication factor, DescribeGroups' groups, OffsetFetch v8's groups
 * and nested topics, config resources and coordinator keys; then a whole verdict on a decoded
 * Produce. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kd-api-keys-gen.h"
#include "kd-arena.h"
#include "kd-records.h"
#include "kd-topics.h"
#include "kd-tree.h"
#include "rule.h"

struct fx {
	struct kd_arena a;
	struct kd_wbuf body;
	struct kd_wbuf recs[4];
	struct kd_tree t;
	struct rule_facts f;
};

static int setup(void **state)
{
	static struct fx fx;
	memset(&fx, 0, sizeof(fx));
	*state = &fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	kd_wbuf_free(&fx->body);
	for (int i = 0; i < 4; i++)
		kd_wbuf_free(&fx->recs[i]);
	rule_facts_free(&fx->f);
	kd_arena_free(&fx->a);
	return 0;
}

static struct kd_node *child(struct kd_node *n, const char *name)
{
	struct kd_node *k = kd_node_child(n, name);
	if (!k) {
		print_error("no field %s\n", name);
		fail();
	}
	return k;
}

static void set_str(struct kd_tree *t, struct kd_node *n, const char *s)
{
	assert_int_equal(kd_node_set_str(t, n, s, strlen(s)), KD_OK);
}

/* A batch of n records with value size vsize, in codec, each with header
 * "trace-id" unless no_header. */
static void batch(struct kd_wbuf *w, int codec, int n, size_t vsize, int no_header)
{
	static uint8_t val[4096];
	struct kd_header h = {{(const uint8_t *)"trace-id", 8, 0}, {(const uint8_t *)"1", 1, 0}};
	struct kd_wrecord r[8];
	struct kd_batch_spec spec = {.magic = 2,
	                             .codec = (uint8_t)codec,
	                             .producer_id = -1,
	                             .producer_epoch = -1,
	                             .base_sequence = -1};
	memset(val, 'v', sizeof(val));
	for (int i = 0; i < n; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i].key = (struct kd_view){(const uint8_t *)"k", 1, 0};
		r[i].value = (struct kd_view){val, (uint32_t)(vsize + (size_t)i), 0};
		r[i].headers = &h;
		r[i].header_count = no_header && i == n - 1 ? 0 : 1;
	}
	assert_int_equal(kd_batch_write(w, &spec, r, (uint32_t)n), KD_OK);
}

/* Encodes a tree and decodes it again into fx->t, as the proxy would see
 * the request. */
static void reparse(struct fx *fx, struct kd_tree *t0, int16_t key, int16_t ver)
{
	fx->body.len = 0;
	assert_int_equal(kd_tree_encode(t0, &fx->body), KD_OK);
	assert_int_equal(kd_tree_decode(&fx->t, &fx->a, key, ver, 1, fx->body.p, fx->body.len),
	                 KD_OK);
}

/* Produce: topics "orders" (partitions 0: 3 lz4 records, 1: 2 zstd) and
 * "audit" (one uncompressed record of 3000 bytes, no header). */
static void build_produce(struct fx *fx, int16_t ver)
{
	struct kd_tree t0;
	assert_int_equal(kd_tree_init_default(&t0, &fx->a, KD_API_PRODUCE, ver, 1), KD_OK);
	assert_int_equal(kd_node_set_int(child(t0.root, "Acks"), 1), KD_OK);
	struct kd_node *topics = child(t0.root, "TopicData");
	batch(&fx->recs[0], 3 /* lz4 */, 3, 100, 0);
	batch(&fx->recs[1], 4 /* zstd */, 2, 200, 0);
	batch(&fx->recs[2], 0, 1, 3000, 1);
	const char *names[2] = {"orders", "audit"};
	for (int ti = 0; ti < 2; ti++) {
		assert_non_null(kd_node_array_add(&t0, topics, UINT32_MAX));
		struct kd_node *te = kd_node_elem(topics, (uint32_t)ti);
		set_str(&t0, child(te, "Name"), names[ti]);
		struct kd_node *parts = child(te, "PartitionData");
		int np = ti == 0 ? 2 : 1;
		for (int p = 0; p < np; p++) {
			assert_non_null(kd_node_array_add(&t0, parts, UINT32_MAX));
			struct kd_node *pe = kd_node_elem(parts, (uint32_t)p);
			assert_int_equal(kd_node_set_int(child(pe, "Index"), p), KD_OK);
			struct kd_wbuf *r = &fx->recs[ti == 0 ? p : 2];
			assert_int_equal(kd_node_set_str(&t0, child(pe, "Records"), r->p, r->len),
			                 KD_OK);
		}
	}
	reparse(fx, &t0, KD_API_PRODUCE, ver);
}

static void test_produce_facts(void **state)
{
	struct fx *fx = *state;
	for (int16_t ver = 3; ver <= 12; ver += 6) { /* v3 and flexible v9 */
		build_produce(fx, ver);
		assert_int_equal(rule_facts_read(&fx->f, &fx->t, NULL, 1, &fx->a), KD_OK);
		const struct rule_req *req = &fx->f.req;
		assert_int_equal(req->api_key, KD_API_PRODUCE);
		assert_int_equal(req->api_version, ver);
		assert_int_equal(req->have_body, 1);
		assert_int_equal(req->acks, 1);
		assert_int_equal(req->ntopics, 2);
		const struct rule_topic *o = &req->topics[0], *au = &req->topics[1];
		assert_memory_equal(o->name.p, "orders", 6);
		assert_int_equal(o->codecs, (1u << 3) | (1u << 4));
		assert_int_equal(o->records, 5);
		assert_int_equal(o->bytes, (int64_t)(fx->recs[0].len + fx->recs[1].len));
		assert_in_range(o->max_record_bytes, 201, 260); /* a 201-byte value + key, header */
		assert_memory_equal(au->name.p, "audit", 5);
		assert_int_equal(au->codecs, 1u);
		assert_in_range(au->max_record_bytes, 3000, 3040);
		/* Headers: every orders record has trace-id; audit's does not. */
		assert_int_equal(req->has_header(req->arg, 0, "trace-id", 8), 1);
		assert_int_equal(req->has_header(req->arg, 1, "trace-id", 8), 0);
		assert_int_equal(req->has_header(req->arg, 0, "other", 5), 0);
		/* Without records: sizes are unknown, counts are there. */
		assert_int_equal(rule_facts_read(&fx->f, &fx->t, NULL, 0, &fx->a), KD_OK);
		assert_int_equal(fx->f.req.topics[0].max_record_bytes, -1);
		assert_int_equal(fx->f.req.topics[0].records, 5);
		kd_arena_reset(&fx->a);
		for (int i = 0; i < 4; i++)
			fx->recs[i].len = 0;
	}
}

static void test_fetch_topic_ids(void **state)
{
	struct fx *fx = *state;
	struct kd_tree t0;
	uint8_t id1[16] = {1}, id2[16] = {2};
	assert_int_equal(kd_tree_init_default(&t0, &fx->a, KD_API_FETCH, 16, 1), KD_OK);
	struct kd_node *topics = child(t0.root, "Topics");
	for (int i = 0; i < 2; i++) {
		assert_non_null(kd_node_array_add(&t0, topics, UINT32_MAX));
		assert_int_equal(
		    kd_node_set_uuid(child(kd_node_elem(topics, (uint32_t)i), "TopicId"),
		                     i ? id2 : id1),
		    KD_OK);
	}
	reparse(fx, &t0, KD_API_FETCH, 16);
	struct kd_topics *map = kd_topics_new();
	assert_int_equal(kd_topics_put(map, id1, (const uint8_t *)"payments", 8), 1);
	assert_int_equal(rule_facts_read(&fx->f, &fx->t, map, 0, &fx->a), KD_OK);
	assert_int_equal(fx->f.req.ntopics, 2);
	assert_memory_equal(fx->f.req.topics[0].name.p, "payments", 8);
	char text[KD_TOPIC_ID_TEXT];
	size_t n = kd_topic_id_text(id2, text);
	assert_int_equal(fx->f.req.topics[1].name.len, n);
	assert_memory_equal(fx->f.req.topics[1].name.p, text, n);
	/* A rule on the name applies to the id that is known. */
	char err[256];
	const char *yaml = "access:\n  - match: {topic: payments}\n    deny: true\n";
	struct rule_set *rs = rule_set_load_mem(yaml, strlen(yaml), "r", err, sizeof(err));
	assert_non_null(rs);
	struct rule_topic_verdict tv[2];
	struct rule_verdict v = {.topics = tv};
	rule_eval(rs, &fx->f.req, &v);
	assert_true(v.split);
	assert_int_equal(tv[0].error, 29);
	assert_int_equal(tv[1].error, 0);
	rule_set_unref(&rs);
	kd_topics_free(&map);
	kd_arena_reset(&fx->a);
}

static void test_create_topics_and_groups(void **state)
{
	struct fx *fx = *state;
	struct kd_tree t0;
	assert_int_equal(kd_tree_init_default(&t0, &fx->a, KD_API_CREATE_TOPICS, 5, 1), KD_OK);
	struct kd_node *topics = child(t0.root, "Topics");
	assert_non_null(kd_node_array_add(&t0, topics, UINT32_MAX));
	struct kd_node *te = kd_node_elem(topics, 0);
	set_str(&t0, child(te, "Name"), "new-topic");
	assert_int_equal(kd_node_set_int(child(te, "NumPartitions"), 12), KD_OK);
	assert_int_equal(kd_node_set_int(child(te, "ReplicationFactor"), 2), KD_OK);
	reparse(fx, &t0, KD_API_CREATE_TOPICS, 5);
	assert_int_equal(rule_facts_read(&fx->f, &fx->t, NULL, 0, &fx->a), KD_OK);
	assert_int_equal(fx->f.req.ntopics, 1);
	assert_int_equal(fx->f.req.topics[0].num_partitions, 12);
	assert_int_equal(fx->f.req.topics[0].replication_factor, 2);
	kd_arena_reset(&fx->a);

	assert_int_equal(kd_tree_init_default(&t0, &fx->a, KD_API_DESCRIBE_GROUPS, 5, 1), KD_OK);
	struct kd_node *groups = child(t0.root, "Groups");
	const char *g[3] = {"g1", "g2", "g1"};
	for (uint32_t i = 0; i < 3; i++) {
		assert_non_null(kd_node_array_add(&t0, groups, UINT32_MAX));
		set_str(&t0, kd_node_elem(groups, i), g[i]);
	}
	reparse(fx, &t0, KD_API_DESCRIBE_GROUPS, 5);
	assert_int_equal(rule_facts_read(&fx->f, &fx->t, NULL, 0, &fx->a), KD_OK);
	assert_int_equal(fx->f.req.ngroups, 2); /* once each */
	assert_memory_equal(fx->f.req.groups[1].p, "g2", 2);
	kd_arena_reset(&fx->a);

	/* OffsetFetch v8: groups, each with topics. */
	assert_int_equal(kd_tree_init_default(&t0, &fx->a, KD_API_OFFSET_FETCH, 8, 1), KD_OK);
	groups = child(t0.root, "Groups");
	for (uint32_t i = 0; i < 2; i++) {
		assert_non_null(kd_node_array_add(&t0, groups, UINT32_MAX));
		struct kd_node *ge = kd_node_elem(groups, i);
		set_str(&t0, child(ge, "GroupId"), g[i]);
		struct kd_node *gt = child(ge, "Topics");
		assert_non_null(kd_node_array_add(&t0, gt, UINT32_MAX));
		set_str(&t0, child(kd_node_elem(gt, 0), "Name"), i ? "t-b" : "t-a");
	}
	reparse(fx, &t0, KD_API_OFFSET_FETCH, 8);
	assert_int_equal(rule_facts_read(&fx->f, &fx->t, NULL, 0, &fx->a), KD_OK);
	assert_int_equal(fx->f.req.ngroups, 2);
	assert_int_equal(fx->f.req.ntopics, 2);
	assert_memory_equal(fx->f.req.topics[1].name.p, "t-b", 3);
	kd_arena_reset(&fx->a);
}

/* Names the schema does not annotate, typed by a sibling field: config
 * resources by ResourceType (topic 2, group 32; a broker, 4, names
 * nothing) and FindCoordinator keys by KeyType (v0: a group). Rules on
 * topics, groups and transactional ids judge them, with the error of what
 * they name, and never in place (the kind may come after the name). */
static void test_typed_names(void **state)
{
	struct fx *fx = *state;
	struct kd_tree t0;
	assert_int_equal(kd_tree_init_default(&t0, &fx->a, KD_API_INCREMENTAL_ALTER_CONFIGS, 1, 1),
	                 KD_OK);
	struct kd_node *res = child(t0.root, "Resources");
	static const struct {
		int type;
		const char *name;
	} r[3] = {{2, "secret"}, {4, "1"}, {32, "g-cfg"}};
	for (uint32_t i = 0; i < 3; i++) {
		assert_non_null(kd_node_array_add(&t0, res, UINT32_MAX));
		struct kd_node *e = kd_node_elem(res, i);
		assert_int_equal(kd_node_set_int(child(e, "ResourceType"), r[i].type), KD_OK);
		set_str(&t0, child(e, "ResourceName"), r[i].name);
	}
	reparse(fx, &t0, KD_API_INCREMENTAL_ALTER_CONFIGS, 1);
	assert_int_equal(rule_facts_read(&fx->f, &fx->t, NULL, 0, &fx->a), KD_OK);
	assert_int_equal(fx->f.req.ntopics, 1);
	assert_memory_equal(fx->f.req.topics[0].name.p, "secret", 6);
	assert_int_equal(fx->f.req.ngroups, 1);
	assert_memory_equal(fx->f.req.groups[0].p, "g-cfg", 5);

	char err[512];
	const char *yaml = "access:\n"
	                   "  - match: {topic: secret}\n"
	                   "    deny: true\n"
	                   "  - match: {group: \"g-*\"}\n"
	                   "    deny: true\n"
	                   "  - match: {transactional_id: \"txn-*\"}\n"
	                   "    deny: true\n";
	struct rule_set *rs = rule_set_load_mem(yaml, strlen(yaml), "r", err, sizeof(err));
	assert_non_null(rs);
	assert_false(rule_set_names_only(rs, KD_API_INCREMENTAL_ALTER_CONFIGS));
	assert_false(rule_set_names_only(rs, KD_API_FIND_COORDINATOR));
	struct rule_topic_verdict tv[2];
	struct rule_verdict v = {.topics = tv};
	/* TOPIC_AUTHORIZATION_FAILED: the topic rule comes first. */
	assert_int_equal(rule_eval(rs, &fx->f.req, &v), 29);
	kd_arena_reset(&fx->a);

	/* FindCoordinator: v0 (no KeyType: a group), v3 with KeyType 1, v4
	 * with CoordinatorKeys of KeyType 0. */
	static const struct {
		int16_t ver;
		int ktype;
		const char *key;
		unsigned ngroups, ntxn;
		int16_t error;
	} fc[] = {{0, -1, "g-a", 1, 0, 30},
	          {3, 1, "txn-a", 0, 1, 53},
	          {3, 1, "ok", 0, 1, 0},
	          {4, 0, "g-b", 2, 0, 30},
	          {4, 0, "ok", 2, 0, 0}};
	for (size_t i = 0; i < sizeof(fc) / sizeof(fc[0]); i++) {
		assert_int_equal(
		    kd_tree_init_default(&t0, &fx->a, KD_API_FIND_COORDINATOR, fc[i].ver, 1),
		    KD_OK);
		if (fc[i].ktype >= 0)
			assert_int_equal(kd_node_set_int(child(t0.root, "KeyType"), fc[i].ktype),
			                 KD_OK);
		if (fc[i].ver < 4) {
			set_str(&t0, child(t0.root, "Key"), fc[i].key);
		} else {
			struct kd_node *keys = child(t0.root, "CoordinatorKeys");
			for (uint32_t j = 0; j < 2; j++) {
				assert_non_null(kd_node_array_add(&t0, keys, UINT32_MAX));
				set_str(&t0, kd_node_elem(keys, j), j ? fc[i].key : "other");
			}
		}
		reparse(fx, &t0, KD_API_FIND_COORDINATOR, fc[i].ver);
		assert_int_equal(rule_facts_read(&fx->f, &fx->t, NULL, 0, &fx->a), KD_OK);
		assert_int_equal(fx->f.req.ngroups, fc[i].ngroups);
		assert_int_equal(fx->f.req.ntxn_ids, fc[i].ntxn);
		assert_int_equal(rule_eval(rs, &fx->f.req, &v), fc[i].error);
		kd_arena_reset(&fx->a);
	}
	rule_set_unref(&rs);
}

/* The example on a real Produce: audit is read-only, orders must
 * be durable. */
static void test_verdict_on_produce(void **state)
{
	struct fx *fx = *state;
	build_produce(fx, 9);
	char err[512];
	const char *yaml =
	    "access:\n"
	    "  - name: audit-is-read-only\n"
	    "    match: {api: Produce, topic: \"audit*\"}\n"
	    "    deny: TOPIC_AUTHORIZATION_FAILED\n"
	    "policies:\n"
	    "  - name: durable-orders\n"
	    "    match: {topic: \"orders*\"}\n"
	    "    require: {acks: [1, all], compression: [lz4, zstd], headers: [trace-id]}\n";
	struct rule_set *rs = rule_set_load_mem(yaml, strlen(yaml), "r", err, sizeof(err));
	assert_non_null(rs);
	assert_int_equal(rule_facts_read(&fx->f, &fx->t, NULL, rule_set_needs_records(rs), &fx->a),
	                 KD_OK);
	struct rule_topic_verdict tv[2];
	struct rule_verdict v = {.topics = tv};
	assert_int_equal(rule_eval(rs, &fx->f.req, &v), 0);
	assert_true(v.split);
	assert_int_equal(tv[0].error, 0);  /* orders: compliant */
	assert_int_equal(tv[1].error, 29); /* audit: denied */
	rule_set_unref(&rs);
	/* A header the orders records lack breaks the policy. */
	yaml = "policies:\n  - match: {topic: \"orders*\"}\n    require: {headers: [tenant]}\n";
	rs = rule_set_load_mem(yaml, strlen(yaml), "r", err, sizeof(err));
	assert_non_null(rs);
	assert_int_equal(rule_eval(rs, &fx->f.req, &v), 0);
	assert_int_equal(tv[0].error, 87); /* INVALID_RECORD */
	rule_set_unref(&rs);
	kd_arena_reset(&fx->a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_produce_facts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_topic_ids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_create_topics_and_groups, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_typed_names, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_verdict_on_produce, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
