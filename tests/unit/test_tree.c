/* test_tree.c: kd_tree_decode / kd_tree_encode / edits on hand-written
 * bodies laid out from the spec (MSG/<Name>.json, WIRE-NOTES.md), and hostile
 * bodies (truncation at every byte, huge counts, negative lengths,
 * trailing bytes, unknown api/version, arena limit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kd-arena.h"
#include "kd-records.h"
#include "kd-schema.h"
#include "kd-tree.h"

#define I16(x) (uint8_t)(((x) >> 8) & 0xff), (uint8_t)((x)&0xff)
#define I32(x)                                                                                     \
	(uint8_t)(((uint32_t)(x) >> 24) & 0xff), (uint8_t)(((uint32_t)(x) >> 16) & 0xff),          \
	    (uint8_t)(((uint32_t)(x) >> 8) & 0xff), (uint8_t)((uint32_t)(x)&0xff)
#define I64(x) I32((uint64_t)(x) >> 32), I32((uint64_t)(x)&0xffffffffu)

/* MetadataResponse v0: Brokers[{NodeId, Host, Port}], Topics[{ErrorCode,
 * Name, Partitions[{ErrorCode, PartitionIndex, LeaderId, ReplicaNodes,
 * IsrNodes}]}]; classic INT16/INT32 lengths. */
/* clang-format off */
static const uint8_t md_v0[] = {
	I32(1),                                 /* Brokers: 1 */
	I32(1), I16(6), 'k', 'a', 'f', 'k', 'a', '1', I32(9092),
	I32(1),                                 /* Topics: 1 */
	I16(0), I16(1), 't',                    /* ErrorCode 0, Name "t" */
	I32(1),                                 /* Partitions: 1 */
	I16(0), I32(0), I32(1),                 /* ErrorCode, PartitionIndex, LeaderId */
	I32(1), I32(1),                         /* ReplicaNodes [1] */
	I32(1), I32(1),                         /* IsrNodes [1] */
};
/* clang-format on */

/* MetadataResponse v9 (first flexible version): compact lengths (N+1),
 * every struct ends in a tagged-field section. */
/* clang-format off */
static const uint8_t md_v9[] = {
	I32(0),                                 /* ThrottleTimeMs */
	0x02,                                   /* Brokers: 1 */
	I32(1), 0x07, 'k', 'a', 'f', 'k', 'a', '1', I32(9092),
	0x00,                                   /* Rack: null */
	0x00,                                   /* broker tags */
	0x03, 'c', '1',                         /* ClusterId "c1" */
	I32(1),                                 /* ControllerId */
	0x02,                                   /* Topics: 1 */
	I16(3), 0x02, 't',                      /* ErrorCode 3, Name "t" */
	0x00,                                   /* IsInternal false */
	0x01,                                   /* Partitions: empty */
	I32(-2147483647 - 1),                   /* TopicAuthorizedOperations */
	0x00,                                   /* topic tags */
	I32(-2147483647 - 1),                   /* ClusterAuthorizedOperations (8-10) */
	0x00,                                   /* body tags */
};
/* clang-format on */

/* MetadataResponse v12: nullable topic Name, TopicId, no ClusterAuthorizedOperations. */
/* clang-format off */
static const uint8_t md_v12[] = {
	I32(10),                                /* ThrottleTimeMs */
	0x03,                                   /* Brokers: 2 */
	I32(1), 0x07, 'k', 'a', 'f', 'k', 'a', '1', I32(9092), 0x03, 'r', '1', 0x00,
	I32(2), 0x07, 'k', 'a', 'f', 'k', 'a', '2', I32(9093), 0x00, 0x00,
	0x00,                                   /* ClusterId: null */
	I32(2),                                 /* ControllerId */
	0x02,                                   /* Topics: 1 */
	I16(0), 0x00,                           /* ErrorCode 0, Name null */
	0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
	0x01,                                   /* IsInternal: raw byte 1 */
	0x02,                                   /* Partitions: 1 */
	I16(0), I32(0), I32(1), I32(7),         /* ErrorCode, PartitionIndex, LeaderId, LeaderEpoch */
	0x03, I32(1), I32(2),                   /* ReplicaNodes [1,2] */
	0x02, I32(1),                           /* IsrNodes [1] */
	0x01,                                   /* OfflineReplicas [] */
	0x00,                                   /* partition tags */
	I32(0),                                 /* TopicAuthorizedOperations */
	0x00,                                   /* topic tags */
	0x00,                                   /* body tags */
};
/* clang-format on */

/* FindCoordinatorResponse v4: Coordinators[{Key, NodeId, Host, Port,
 * ErrorCode, ErrorMessage}]. */
/* clang-format off */
static const uint8_t fc_v4[] = {
	I32(0),                                 /* ThrottleTimeMs */
	0x02,                                   /* Coordinators: 1 */
	0x03, 'g', '1',                         /* Key */
	I32(3), 0x0a, 'b', 'r', 'o', 'k', 'e', 'r', '-', '3', '.', /* NodeId, Host "broker-3." */
	I32(9094), I16(0), 0x00,                /* Port, ErrorCode, ErrorMessage null */
	0x00,                                   /* coordinator tags */
	0x00,                                   /* body tags */
};
/* clang-format on */

/* ApiVersionsResponse v3: ErrorCode, ApiKeys[{ApiKey, MinVersion,
 * MaxVersion}], ThrottleTimeMs, tagged: 1 FinalizedFeaturesEpoch (int64),
 * 3 ZkMigrationReady (bool), and an unknown tag 7. */
/* clang-format off */
static const uint8_t av_v3[] = {
	I16(0),
	0x03,                                   /* ApiKeys: 2 */
	I16(0), I16(0), I16(11), 0x00,          /* Produce 0..11 */
	I16(18), I16(0), I16(4), 0x00,          /* ApiVersions 0..4 */
	I32(0),                                 /* ThrottleTimeMs */
	0x03,                                   /* 3 tagged fields */
	0x01, 0x08, I64(5),                     /* tag 1: FinalizedFeaturesEpoch = 5 */
	0x03, 0x01, 0x01,                       /* tag 3: ZkMigrationReady = true */
	0x07, 0x02, 'x', 'y',                   /* tag 7: unknown, kept raw */
};
/* clang-format on */

/* The v0 body a broker sends back to an ApiVersions v3 request it does
 * not support (WIRE-NOTES 2): ErrorCode 35, INT32-counted ApiKeys. */
/* clang-format off */
static const uint8_t av_fallback[] = {
	I16(35),
	I32(1), I16(18), I16(0), I16(2),
};
/* clang-format on */

/* ProduceResponse v10: per-partition tagged CurrentLeader (tag 0) and the
 * top-level tagged NodeEndpoints (tag 0), KIP-951. */
/* clang-format off */
static const uint8_t pr_v10[] = {
	0x02,                                   /* Responses: 1 */
	0x02, 't',                              /* Name */
	0x02,                                   /* PartitionResponses: 1 */
	I32(0), I16(6), I64(-1), I64(-1), I64(-1), /* Index, ErrorCode 6, BaseOffset, LogAppendTimeMs, LogStartOffset */
	0x01,                                   /* RecordErrors [] */
	0x00,                                   /* ErrorMessage null */
	0x01,                                   /* 1 tagged field */
	0x00, 0x09, I32(2), I32(5), 0x00,       /* tag 0 CurrentLeader{LeaderId 2, LeaderEpoch 5}, its tags */
	0x00,                                   /* TopicProduceResponse tags */
	I32(0),                                 /* ThrottleTimeMs */
	0x01,                                   /* 1 tagged field */
	0x00, 0x11,                             /* tag 0 NodeEndpoints, 17 bytes */
	0x02, I32(2), 0x06, 'h', 'o', 's', 't', '2', I32(9092), 0x00, 0x00,
};
/* clang-format on */

struct fixture {
	struct kd_arena a;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	fx->a.limit = 16u << 20;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	kd_arena_free(&fx->a);
	free(fx);
	return 0;
}

/* Decodes, checks KD_OK, and checks the exact re-encoding. */
static void decode_ok(struct kd_arena *a, struct kd_tree *t, int16_t key, int16_t v, int req,
                      const uint8_t *p, size_t len)
{
	struct kd_wbuf w = {0};
	int rc = kd_tree_decode(t, a, key, v, req, p, len);
	if (rc != KD_OK)
		fail_msg("decode %d v%d: %d %s", key, v, rc, t->err_msg);
	assert_non_null(t->root);
	assert_int_equal(kd_tree_encode(t, &w), KD_OK);
	assert_int_equal(w.len, len);
	assert_memory_equal(w.p, p, len);
	assert_int_equal(kd_tree_encoded_size(t), len);
	kd_wbuf_free(&w);
}

static int str_is(const struct kd_node *n, const char *s)
{
	return n && n->type == KD_T_STRING && !n->null && n->val.v.len == strlen(s) &&
	       memcmp(n->val.v.p, s, n->val.v.len) == 0;
}

static void test_metadata_v0(void **state)
{
	struct fixture *fx = *state;
	struct kd_tree t;
	decode_ok(&fx->a, &t, 3, 0, 0, md_v0, sizeof(md_v0));
	assert_int_equal(t.flexible, 0);
	struct kd_node *brokers = kd_node_child(t.root, "Brokers");
	assert_non_null(brokers);
	assert_int_equal(brokers->nkids, 1);
	struct kd_node *b0 = kd_node_elem(brokers, 0);
	assert_int_equal(kd_node_int(kd_node_child(b0, "NodeId")), 1);
	assert_true(str_is(kd_node_child(b0, "Host"), "kafka1"));
	assert_int_equal(kd_node_int(kd_node_child(b0, "Port")), 9092);
	assert_null(kd_node_child(b0, "Rack"));               /* v1+ */
	assert_null(kd_node_child(t.root, "ThrottleTimeMs")); /* v3+ */
	struct kd_node *parts =
	    kd_node_child(kd_node_elem(kd_node_child(t.root, "Topics"), 0), "Partitions");
	struct kd_node *isr = kd_node_child(kd_node_elem(parts, 0), "IsrNodes");
	assert_int_equal(isr->nkids, 1);
	assert_int_equal(kd_node_int(kd_node_elem(isr, 0)), 1);
}

static void test_metadata_v9(void **state)
{
	struct fixture *fx = *state;
	struct kd_tree t;
	decode_ok(&fx->a, &t, 3, 9, 0, md_v9, sizeof(md_v9));
	assert_int_equal(t.flexible, 1);
	struct kd_node *b0 = kd_node_elem(kd_node_child(t.root, "Brokers"), 0);
	assert_true(kd_node_child(b0, "Rack")->null);
	assert_true(str_is(kd_node_child(t.root, "ClusterId"), "c1"));
	struct kd_node *t0 = kd_node_elem(kd_node_child(t.root, "Topics"), 0);
	assert_int_equal(kd_node_int(kd_node_child(t0, "ErrorCode")), 3);
	assert_int_equal(kd_node_child(t0, "Partitions")->nkids, 0);
	assert_int_equal(kd_node_int(kd_node_child(t.root, "ClusterAuthorizedOperations")),
	                 INT32_MIN);
}

static void test_metadata_v12(void **state)
{
	struct fixture *fx = *state;
	struct kd_tree t;
	decode_ok(&fx->a, &t, 3, 12, 0, md_v12, sizeof(md_v12));
	assert_null(kd_node_child(t.root, "ClusterAuthorizedOperations"));
	assert_true(kd_node_child(t.root, "ClusterId")->null);
	struct kd_node *t0 = kd_node_elem(kd_node_child(t.root, "Topics"), 0);
	assert_true(kd_node_child(t0, "Name")->null);
	assert_int_equal(kd_node_child(t0, "TopicId")->val.uuid[15], 0xef);
	struct kd_node *p0 = kd_node_elem(kd_node_child(t0, "Partitions"), 0);
	assert_int_equal(kd_node_int(kd_node_child(p0, "LeaderEpoch")), 7);
	assert_int_equal(kd_node_child(p0, "ReplicaNodes")->nkids, 2);
	assert_true(
	    str_is(kd_node_child(kd_node_elem(kd_node_child(t.root, "Brokers"), 0), "Rack"), "r1"));
}

/* The proxy's job: rewrite every broker Host/Port, re-encode, decode again. */
static void rewrite_brokers(struct kd_tree *t, struct kd_node *arr, const char *host, int32_t port0)
{
	for (uint32_t i = 0; i < arr->nkids; i++) {
		struct kd_node *b = kd_node_elem(arr, i);
		assert_int_equal(kd_node_set_str(t, kd_node_child(b, "Host"), host, strlen(host)),
		                 KD_OK);
		assert_int_equal(kd_node_set_int(kd_node_child(b, "Port"), port0 + (int32_t)i),
		                 KD_OK);
	}
}

static void test_edit_metadata(void **state)
{
	struct fixture *fx = *state;
	static const char host[] = "proxy.example.internal-with-a-longer-name";
	const int16_t vers[] = {0, 9, 12};
	const uint8_t *bodies[] = {md_v0, md_v9, md_v12};
	const size_t lens[] = {sizeof(md_v0), sizeof(md_v9), sizeof(md_v12)};

	for (int k = 0; k < 3; k++) {
		struct kd_tree t, t2;
		struct kd_wbuf w = {0};
		decode_ok(&fx->a, &t, 3, vers[k], 0, bodies[k], lens[k]);
		struct kd_node *brokers = kd_node_child(t.root, "Brokers");
		uint32_t nb = brokers->nkids;
		rewrite_brokers(&t, brokers, host, 19092);
		assert_int_equal(kd_tree_encode(&t, &w), KD_OK);
		/* each host grew from 6 to strlen(host) bytes; compact and INT16
		 * lengths both stay one/two bytes here */
		assert_int_equal(w.len, lens[k] + nb * (strlen(host) - 6));
		assert_int_equal(kd_tree_decode(&t2, &fx->a, 3, vers[k], 0, w.p, w.len), KD_OK);
		struct kd_node *b2 = kd_node_child(t2.root, "Brokers");
		assert_int_equal(b2->nkids, nb);
		for (uint32_t i = 0; i < nb; i++) {
			assert_true(str_is(kd_node_child(kd_node_elem(b2, i), "Host"), host));
			assert_int_equal(kd_node_int(kd_node_child(kd_node_elem(b2, i), "Port")),
			                 19092 + (int)i);
		}
		/* the rest is untouched: topics re-encode the same */
		struct kd_wbuf w2 = {0};
		assert_int_equal(kd_tree_encode(&t2, &w2), KD_OK);
		assert_int_equal(w2.len, w.len);
		assert_memory_equal(w2.p, w.p, w.len);
		kd_wbuf_free(&w);
		kd_wbuf_free(&w2);
	}
}

static void test_edit_range_checks(void **state)
{
	struct fixture *fx = *state;
	struct kd_tree t;
	decode_ok(&fx->a, &t, 3, 0, 0, md_v0, sizeof(md_v0));
	struct kd_node *b0 = kd_node_elem(kd_node_child(t.root, "Brokers"), 0);
	assert_int_equal(kd_node_set_int(kd_node_child(b0, "Port"), 1LL << 32), KD_EMALFORMED);
	assert_int_equal(kd_node_set_int(kd_node_child(b0, "Host"), 1), KD_EMALFORMED);
	/* non-compact STRING: INT16 length */
	char *big = calloc(1, 40000);
	assert_int_equal(kd_node_set_str(&t, kd_node_child(b0, "Host"), big, 40000), KD_EMALFORMED);
	free(big);
	/* Host is not nullable */
	assert_int_equal(kd_node_set_null(kd_node_child(b0, "Host")), KD_EMALFORMED);
}

static void test_findcoordinator_v4(void **state)
{
	struct fixture *fx = *state;
	struct kd_tree t, t2;
	struct kd_wbuf w = {0};
	decode_ok(&fx->a, &t, 10, 4, 0, fc_v4, sizeof(fc_v4));
	struct kd_node *c = kd_node_child(t.root, "Coordinators");
	struct kd_node *c0 = kd_node_elem(c, 0);
	assert_true(str_is(kd_node_child(c0, "Key"), "g1"));
	assert_true(str_is(kd_node_child(c0, "Host"), "broker-3."));
	assert_true(kd_node_child(c0, "ErrorMessage")->null);
	rewrite_brokers(&t, c, "h", 1);
	assert_int_equal(kd_tree_encode(&t, &w), KD_OK);
	assert_int_equal(w.len, sizeof(fc_v4) - 8);
	assert_int_equal(kd_tree_decode(&t2, &fx->a, 10, 4, 0, w.p, w.len), KD_OK);
	c0 = kd_node_elem(kd_node_child(t2.root, "Coordinators"), 0);
	assert_true(str_is(kd_node_child(c0, "Host"), "h"));
	assert_int_equal(kd_node_int(kd_node_child(c0, "Port")), 1);
	kd_wbuf_free(&w);
}

static void test_apiversions_v3(void **state)
{
	struct fixture *fx = *state;
	struct kd_tree t, t2;
	struct kd_wbuf w = {0};
	decode_ok(&fx->a, &t, 18, 3, 0, av_v3, sizeof(av_v3));
	assert_int_equal(t.v0_fallback, 0);
	/* regular fields, then the tagged section in wire order */
	assert_int_equal(t.root->nkids, 3 + 3);
	struct kd_node *epoch = kd_node_child(t.root, "FinalizedFeaturesEpoch");
	assert_non_null(epoch);
	assert_true(epoch->flags & KD_NF_TAGGED);
	assert_int_equal(epoch->tag, 1);
	assert_int_equal(epoch->val.i, 5);
	assert_int_equal(kd_node_int(kd_node_child(t.root, "ZkMigrationReady")), 1);
	struct kd_node *unk = &t.root->kids[5];
	assert_int_equal(unk->type, KD_T_NONE);
	assert_int_equal(unk->tag, 7);
	assert_int_equal(unk->val.v.len, 2);
	assert_memory_equal(unk->val.v.p, "xy", 2);

	/* clamp ApiVersions ranges like the proxy does; edit a tagged int64 */
	struct kd_node *keys = kd_node_child(t.root, "ApiKeys");
	assert_int_equal(kd_node_set_int(kd_node_child(kd_node_elem(keys, 0), "MaxVersion"), 9),
	                 KD_OK);
	assert_int_equal(kd_node_set_int(epoch, 300), KD_OK);
	assert_int_equal(kd_tree_encode(&t, &w), KD_OK);
	assert_int_equal(w.len, sizeof(av_v3));
	assert_int_equal(kd_tree_decode(&t2, &fx->a, 18, 3, 0, w.p, w.len), KD_OK);
	assert_int_equal(kd_node_int(kd_node_child(
	                     kd_node_elem(kd_node_child(t2.root, "ApiKeys"), 0), "MaxVersion")),
	                 9);
	assert_int_equal(kd_node_int(kd_node_child(t2.root, "FinalizedFeaturesEpoch")), 300);
	assert_int_equal(t2.root->kids[5].tag, 7);
	kd_wbuf_free(&w);
}

static void test_apiversions_fallback(void **state)
{
	struct fixture *fx = *state;
	struct kd_tree t;
	decode_ok(&fx->a, &t, 18, 3, 0, av_fallback, sizeof(av_fallback));
	assert_int_equal(t.v0_fallback, 1);
	assert_int_equal(t.version, 0);
	assert_int_equal(t.asked_version, 3);
	assert_int_equal(t.flexible, 0);
	assert_int_equal(kd_node_int(kd_node_child(t.root, "ErrorCode")), 35);
	assert_int_equal(kd_node_child(t.root, "ApiKeys")->nkids, 1);
	/* the same body asked at v0 is a plain v0 decode */
	decode_ok(&fx->a, &t, 18, 0, 0, av_fallback, sizeof(av_fallback));
	assert_int_equal(t.v0_fallback, 0);
}

static void test_produce_v10_node_endpoints(void **state)
{
	struct fixture *fx = *state;
	struct kd_tree t, t2;
	struct kd_wbuf w = {0};
	decode_ok(&fx->a, &t, 0, 10, 0, pr_v10, sizeof(pr_v10));
	struct kd_node *ne = kd_node_child(t.root, "NodeEndpoints");
	assert_non_null(ne);
	assert_true(ne->flags & KD_NF_TAGGED);
	assert_int_equal(ne->nkids, 1);
	struct kd_node *p0 =
	    kd_node_elem(kd_node_child(kd_node_elem(kd_node_child(t.root, "Responses"), 0),
	                               "PartitionResponses"),
	                 0);
	struct kd_node *cl = kd_node_child(p0, "CurrentLeader");
	assert_non_null(cl);
	assert_int_equal(kd_node_int(kd_node_child(cl, "LeaderEpoch")), 5);

	/* a longer host grows the tagged size varint past one byte (>127) */
	char host[200];
	memset(host, 'h', sizeof(host));
	assert_int_equal(
	    kd_node_set_str(&t, kd_node_child(kd_node_elem(ne, 0), "Host"), host, sizeof(host)),
	    KD_OK);
	assert_int_equal(kd_tree_encode(&t, &w), KD_OK);
	/* host 5 -> 200 bytes: +195, its compact length 1 -> 2 bytes, the tag size 1 -> 2 bytes */
	assert_int_equal(w.len, sizeof(pr_v10) + 195 + 1 + 1);
	assert_int_equal(kd_tree_decode(&t2, &fx->a, 0, 10, 0, w.p, w.len), KD_OK);
	struct kd_node *h =
	    kd_node_child(kd_node_elem(kd_node_child(t2.root, "NodeEndpoints"), 0), "Host");
	assert_int_equal(h->val.v.len, 200);
	assert_int_equal(kd_node_int(kd_node_child(
	                     kd_node_elem(kd_node_child(t2.root, "NodeEndpoints"), 0), "Port")),
	                 9092);
	kd_wbuf_free(&w);
}

/* ProduceRequest v9 with a real v2 record batch in Records. */
static void test_produce_v9_records(void **state)
{
	struct fixture *fx = *state;
	struct kd_wbuf batch = {0}, body = {0};
	struct kd_batch_spec spec = {
	    .magic = 2, .producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
	struct kd_wrecord recs[2] = {
	    {.timestamp = 1700000000000LL,
	     .key = {(const uint8_t *)"k", 1, 0},
	     .value = {(const uint8_t *)"hello", 5, 0}},
	    {.timestamp = 1700000000001LL,
	     .key = {NULL, 0, 1},
	     .value = {(const uint8_t *)"world", 5, 0}},
	};
	assert_int_equal(kd_batch_write(&batch, &spec, recs, 2), KD_OK);

	kd_w_uvarint(&body, 0); /* TransactionalId: null */
	kd_w_i16(&body, -1);    /* Acks */
	kd_w_i32(&body, 30000); /* TimeoutMs */
	kd_w_uvarint(&body, 2); /* TopicData: 1 */
	kd_w_uvarint(&body, 2);
	kd_w_raw(&body, "t", 1);
	kd_w_uvarint(&body, 2);                       /* PartitionData: 1 */
	kd_w_i32(&body, 0);                           /* Index */
	kd_w_uvarint(&body, (uint32_t)batch.len + 1); /* Records */
	kd_w_raw(&body, batch.p, batch.len);
	kd_w_uvarint(&body, 0);
	kd_w_uvarint(&body, 0);
	kd_w_uvarint(&body, 0);

	struct kd_tree t;
	decode_ok(&fx->a, &t, 0, 9, 1, body.p, body.len);
	assert_true(kd_node_child(t.root, "TransactionalId")->null);
	struct kd_node *pd = kd_node_elem(
	    kd_node_child(kd_node_elem(kd_node_child(t.root, "TopicData"), 0), "PartitionData"), 0);
	struct kd_node *r = kd_node_child(pd, "Records");
	assert_int_equal(r->type, KD_T_RECORDS);
	assert_int_equal(r->val.v.len, batch.len);
	assert_memory_equal(r->val.v.p, batch.p, batch.len);

	/* lazily through kd-records */
	struct kd_rec_iter it;
	struct kd_batch *b;
	struct kd_record rec;
	kd_rec_iter_init(&it, r->val.v.p, r->val.v.len, NULL);
	assert_int_equal(kd_rec_next_batch(&it, &b), 1);
	assert_int_equal(b->record_count, 2);
	assert_int_equal(kd_rec_next_record(&it, &rec), 1);
	assert_int_equal(rec.value.len, 5);
	kd_rec_iter_free(&it);

	kd_wbuf_free(&batch);
	kd_wbuf_free(&body);
}

/* Every prefix of every vector is an error with a message, never a crash. */
static void test_truncated_every_byte(void **state)
{
	struct fixture *fx = *state;
	const struct {
		int16_t key, v;
		const uint8_t *p;
		size_t len;
	} vec[] = {
	    {3, 0, md_v0, sizeof(md_v0)},    {3, 9, md_v9, sizeof(md_v9)},
	    {3, 12, md_v12, sizeof(md_v12)}, {10, 4, fc_v4, sizeof(fc_v4)},
	    {18, 3, av_v3, sizeof(av_v3)},   {18, 3, av_fallback, sizeof(av_fallback)},
	    {0, 10, pr_v10, sizeof(pr_v10)},
	};
	for (size_t k = 0; k < sizeof(vec) / sizeof(vec[0]); k++) {
		for (size_t n = 0; n < vec[k].len; n++) {
			struct kd_tree t;
			/* a heap copy of exactly n bytes so ASan sees any over-read */
			uint8_t *p = malloc(n ? n : 1);
			memcpy(p, vec[k].p, n);
			int rc = kd_tree_decode(&t, &fx->a, vec[k].key, vec[k].v, 0, p, n);
			assert_true(rc < 0);
			assert_null(t.root);
			assert_true(t.err_msg[0] != '\0');
			assert_true(t.err_off <= n);
			free(p);
			kd_arena_reset(&fx->a);
		}
	}
}

static void test_hostile(void **state)
{
	struct fixture *fx = *state;
	struct kd_tree t;
	uint8_t b[sizeof(md_v0)];

	/* a huge Brokers count */
	memcpy(b, md_v0, sizeof(b));
	b[0] = 0x00, b[1] = 0x0f, b[2] = 0x42, b[3] = 0x40; /* 1000000 */
	assert_int_equal(kd_tree_decode(&t, &fx->a, 3, 0, 0, b, sizeof(b)), KD_EMALFORMED);
	assert_string_equal(t.err_msg, "Brokers: array count 1000000 exceeds bytes left (55)");
	assert_int_equal(t.err_off, 0);

	/* a huge Partitions count inside Topics[0] */
	memcpy(b, md_v0, sizeof(b));
	size_t poff = 4 + 4 + 2 + 6 + 4 + 4 + 2 + 3;
	b[poff] = 0x7f;
	assert_int_equal(kd_tree_decode(&t, &fx->a, 3, 0, 0, b, sizeof(b)), KD_EMALFORMED);
	assert_non_null(strstr(t.err_msg, "Topics[0].Partitions: array count"));
	assert_int_equal(t.err_off, poff);

	/* a negative array count other than -1, and -1 where not nullable */
	memcpy(b, md_v0, sizeof(b));
	b[poff] = 0xff, b[poff + 1] = 0xff, b[poff + 2] = 0xff, b[poff + 3] = 0xfe;
	assert_int_equal(kd_tree_decode(&t, &fx->a, 3, 0, 0, b, sizeof(b)), KD_EMALFORMED);
	b[poff + 3] = 0xff;
	assert_int_equal(kd_tree_decode(&t, &fx->a, 3, 0, 0, b, sizeof(b)), KD_EMALFORMED);
	assert_non_null(strstr(t.err_msg, "null array"));

	/* a negative string length: Host = -2 */
	memcpy(b, md_v0, sizeof(b));
	b[8] = 0xff, b[9] = 0xfe;
	assert_int_equal(kd_tree_decode(&t, &fx->a, 3, 0, 0, b, sizeof(b)), KD_EMALFORMED);
	assert_non_null(strstr(t.err_msg, "Brokers[0].Host"));
	/* a string length past the end */
	b[8] = 0x7f, b[9] = 0xff;
	assert_int_equal(kd_tree_decode(&t, &fx->a, 3, 0, 0, b, sizeof(b)), KD_ESHORT);
	assert_non_null(strstr(t.err_msg, "Brokers[0].Host: length 32767 exceeds"));

	/* a tagged field whose size disagrees with its payload */
	uint8_t av[sizeof(av_v3)];
	memcpy(av, av_v3, sizeof(av));
	av[sizeof(av) - 4 - 3 - 10 + 1] = 0x09; /* FinalizedFeaturesEpoch size 8 -> 9 */
	assert_true(kd_tree_decode(&t, &fx->a, 18, 3, 0, av, sizeof(av)) < 0);
	assert_non_null(strstr(t.err_msg, "FinalizedFeaturesEpoch"));

	/* an over-long varint count */
	static const uint8_t bad_varint[] = {I32(0), 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	assert_int_equal(kd_tree_decode(&t, &fx->a, 3, 9, 0, bad_varint, sizeof(bad_varint)),
	                 KD_EMALFORMED);
	assert_non_null(strstr(t.err_msg, "Brokers"));
	kd_arena_reset(&fx->a);
}

/* Bytes after a complete body are tolerated as Kafka's own parsers do:
 * decoded, counted in t.trailing, written back after the body, also after
 * an edit. librdkafka 2.12's mock cluster writes Metadata v12's top-level
 * tag section twice: one extra 0x00. */
static void test_trailing(void **state)
{
	struct fixture *fx = *state;
	struct kd_tree t, t2;
	uint8_t mock[sizeof(md_v12) + 1];
	memcpy(mock, md_v12, sizeof(md_v12));
	mock[sizeof(md_v12)] = 0x00;
	decode_ok(&fx->a, &t, 3, 12, 0, mock, sizeof(mock));
	assert_int_equal(t.trailing, 1);
	assert_int_equal(t.status, KD_OK);

	uint8_t tb[sizeof(md_v9) + 3];
	memcpy(tb, md_v9, sizeof(md_v9));
	memcpy(tb + sizeof(md_v9), "xyz", 3);
	decode_ok(&fx->a, &t, 3, 9, 0, tb, sizeof(tb));
	assert_int_equal(t.trailing, 3);
	/* an edit re-encodes the body; the trailer follows it unchanged */
	static const char host[] = "proxy.example";
	rewrite_brokers(&t, kd_node_child(t.root, "Brokers"), host, 19092);
	struct kd_wbuf w = {0};
	assert_int_equal(kd_tree_encode(&t, &w), KD_OK);
	assert_int_equal(kd_tree_encoded_size(&t), w.len);
	assert_memory_equal(w.p + w.len - 3, "xyz", 3);
	assert_int_equal(kd_tree_decode(&t2, &fx->a, 3, 9, 0, w.p, w.len), KD_OK);
	assert_int_equal(t2.trailing, 3);
	assert_true(str_is(
	    kd_node_child(kd_node_elem(kd_node_child(t2.root, "Brokers"), 0), "Host"), host));
	kd_wbuf_free(&w);

	/* a complete body has no trailer */
	decode_ok(&fx->a, &t, 3, 9, 0, md_v9, sizeof(md_v9));
	assert_int_equal(t.trailing, 0);
	/* a body cut short is still an error, trailer or not */
	assert_int_equal(kd_tree_decode(&t, &fx->a, 3, 9, 0, md_v9, sizeof(md_v9) - 1), KD_ESHORT);
	assert_int_equal(t.trailing, 0);
	assert_null(t.root);
	/* the ApiVersions v0 fallback takes an exact v0 body only: a v3 error
	 * body is not a v0 prefix with a trailer */
	uint8_t av[sizeof(av_v3)];
	memcpy(av, av_v3, sizeof(av));
	av[0] = 0x00, av[1] = 35; /* ErrorCode UNSUPPORTED_VERSION */
	assert_int_equal(kd_tree_decode(&t, &fx->a, 18, 3, 0, av, sizeof(av)), KD_OK);
	assert_int_equal(t.v0_fallback, 0);
	assert_int_equal(t.version, 3);
	assert_int_equal(t.trailing, 0);
	kd_arena_reset(&fx->a);
}

static void test_unsupported_kept_raw(void **state)
{
	struct fixture *fx = *state;
	struct kd_tree t;
	struct kd_wbuf w = {0};
	static const uint8_t body[] = {1, 2, 3, 4, 5};

	assert_int_equal(kd_tree_decode(&t, &fx->a, 999, 0, 1, body, sizeof(body)),
	                 KD_EUNSUPPORTED);
	assert_null(t.root);
	assert_ptr_equal(t.raw.p, body);
	assert_int_equal(t.raw.len, sizeof(body));
	assert_string_equal(t.err_msg, "unknown api key 999");
	assert_int_equal(kd_tree_encode(&t, &w), KD_OK);
	assert_int_equal(w.len, sizeof(body));
	assert_memory_equal(w.p, body, sizeof(body));
	kd_wbuf_free(&w);

	assert_int_equal(kd_tree_decode(&t, &fx->a, 3, 99, 0, body, sizeof(body)), KD_EUNSUPPORTED);
	assert_string_equal(t.err_msg, "Metadata response v99 is not in the spec");
	assert_int_equal(kd_tree_decode(&t, &fx->a, 3, -1, 0, body, sizeof(body)), KD_EUNSUPPORTED);
}

static void test_arena_limit(void **state)
{
	(void)state;
	struct kd_arena a = {0};
	struct kd_tree t;
	a.limit = 1024; /* the v12 tree needs more */
	assert_int_equal(kd_tree_decode(&t, &a, 3, 12, 0, md_v12, sizeof(md_v12)), KD_ELIMIT);
	assert_null(t.root);
	assert_non_null(strstr(t.err_msg, "arena limit"));
	kd_arena_free(&a);
}

struct found {
	int n;
	char names[8][32];
};

static int collect(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	struct found *f = arg;
	(void)wc;
	if (f->n < 8) {
		if (n->type == KD_T_STRING)
			snprintf(f->names[f->n], sizeof(f->names[0]), "%.*s", (int)n->val.v.len,
			         (const char *)n->val.v.p);
		else
			snprintf(f->names[f->n], sizeof(f->names[0]), "%lld",
			         (long long)kd_node_int(n));
	}
	f->n++;
	return 0;
}

static int count_all(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	int *c = arg;
	(void)n;
	(void)wc;
	(*c)++;
	return 0;
}

static int stop_at_topics(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	(void)arg;
	(void)wc;
	return n->field && strcmp(n->field->name, "Topics") == 0 ? 42 : 0;
}

static void test_walk(void **state)
{
	struct fixture *fx = *state;
	struct kd_tree t;
	struct found f = {0};
	decode_ok(&fx->a, &t, 3, 0, 0, md_v0, sizeof(md_v0));
	assert_int_equal(kd_tree_walk_entity(&t, KD_ENT_TOPIC_NAME, collect, &f), 0);
	assert_int_equal(f.n, 1);
	assert_string_equal(f.names[0], "t");

	/* broker ids: NodeId, LeaderId, ReplicaNodes[0], IsrNodes[0] */
	memset(&f, 0, sizeof(f));
	kd_tree_walk_entity(&t, KD_ENT_BROKER_ID, collect, &f);
	assert_int_equal(f.n, 4);

	int c = 0;
	kd_tree_walk(&t, count_all, &c);
	/* root, Brokers, [0], NodeId, Host, Port, Topics, [0], ErrorCode, Name,
	 * Partitions, [0], ErrorCode, PartitionIndex, LeaderId, ReplicaNodes,
	 * 1, IsrNodes, 1 */
	assert_int_equal(c, 19);
	assert_int_equal(kd_tree_walk(&t, stop_at_topics, NULL), 42);
}

static void test_array_add_remove(void **state)
{
	struct fixture *fx = *state;
	struct kd_tree t, t2;
	struct kd_wbuf w = {0};
	decode_ok(&fx->a, &t, 3, 12, 0, md_v12, sizeof(md_v12));
	struct kd_node *brokers = kd_node_child(t.root, "Brokers");
	struct kd_node *nb = kd_node_array_add(&t, brokers, 0);
	assert_non_null(nb);
	assert_int_equal(kd_node_set_int(kd_node_child(nb, "NodeId"), 3), KD_OK);
	struct kd_node *def = kd_node_array_add(&t, brokers, UINT32_MAX);
	assert_non_null(def);
	assert_int_equal(kd_node_set_str(&t, kd_node_child(def, "Host"), "new", 3), KD_OK);
	assert_int_equal(kd_node_array_remove(brokers, 1), KD_OK); /* kafka2 */
	assert_int_equal(kd_tree_encode(&t, &w), KD_OK);
	assert_int_equal(kd_tree_decode(&t2, &fx->a, 3, 12, 0, w.p, w.len), KD_OK);
	struct kd_node *b2 = kd_node_child(t2.root, "Brokers");
	assert_int_equal(b2->nkids, 3);
	assert_int_equal(kd_node_int(kd_node_child(kd_node_elem(b2, 0), "NodeId")), 1);
	assert_int_equal(kd_node_int(kd_node_child(kd_node_elem(b2, 1), "NodeId")), 3);
	assert_true(str_is(kd_node_child(kd_node_elem(b2, 1), "Host"), "kafka1"));
	assert_true(str_is(kd_node_child(kd_node_elem(b2, 2), "Host"), "new"));
	assert_int_equal(kd_node_int(kd_node_child(kd_node_elem(b2, 2), "Port")), 0);
	/* A default element takes the schema's defaults: Rack's is null. */
	assert_true(kd_node_child(kd_node_elem(b2, 2), "Rack")->null);
	/* null a nullable string, then an array */
	assert_int_equal(kd_node_set_null(kd_node_child(kd_node_elem(b2, 0), "Rack")), KD_OK);
	struct kd_wbuf w2 = {0}; /* t2's views point into w: keep it */
	assert_int_equal(kd_tree_encode(&t2, &w2), KD_OK);
	assert_int_equal(w2.len, w.len - 2); /* Rack "r1" (3 bytes) -> null (1) */
	assert_int_equal(kd_tree_decode(&t, &fx->a, 3, 12, 0, w2.p, w2.len), KD_OK);
	assert_true(kd_node_child(kd_node_elem(kd_node_child(t.root, "Brokers"), 0), "Rack")->null);
	kd_wbuf_free(&w);
	kd_wbuf_free(&w2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_metadata_v0, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_metadata_v9, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_metadata_v12, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_edit_metadata, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_edit_range_checks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_findcoordinator_v4, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_apiversions_v3, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_apiversions_fallback, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_produce_v10_node_endpoints, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_produce_v9_records, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncated_every_byte, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trailing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unsupported_kept_raw, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_arena_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_walk, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_array_add_remove, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
