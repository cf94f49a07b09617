/* test_render.c: kd_render_json / kd_render_text of known bodies compared
 * with expected strings written by hand, and the JSON helpers. */
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
#include "kd-render.h"
#include "kd-tree.h"

#define I16(x) (uint8_t)(((x) >> 8) & 0xff), (uint8_t)((x)&0xff)
#define I32(x)                                                                                     \
	(uint8_t)(((uint32_t)(x) >> 24) & 0xff), (uint8_t)(((uint32_t)(x) >> 16) & 0xff),          \
	    (uint8_t)(((uint32_t)(x) >> 8) & 0xff), (uint8_t)((uint32_t)(x)&0xff)
#define I64(x) I32((uint64_t)(x) >> 32), I32((uint64_t)(x)&0xffffffffu)

/* MetadataResponse v0 (see test_tree.c) */
/* clang-format off */
static const uint8_t md_v0[] = {
	I32(1), I32(1), I16(6), 'k', 'a', 'f', 'k', 'a', '1', I32(9092),
	I32(1), I16(0), I16(1), 't',
	I32(1), I16(0), I32(0), I32(1), I32(1), I32(1), I32(1), I32(1),
};
/* clang-format on */

/* MetadataResponse v12: null ClusterId and topic Name, a TopicId, a topic
 * error 3 and a name with an invalid UTF-8 byte in broker Rack. */
/* clang-format off */
static const uint8_t md_v12[] = {
	I32(0),
	0x02, I32(1), 0x02, 'h', I32(9092), 0x03, 'r', 0xff, 0x00,
	0x00, I32(1),
	0x02, I16(3), 0x00,
	0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
	0x01, 0x01, I32(5), 0x00,
	0x00,
};
/* clang-format on */

/* clang-format off */
static const uint8_t av_v3[] = {
	I16(0), 0x02, I16(18), I16(0), I16(4), 0x00, I32(0),
	0x03, 0x01, 0x08, I64(5), 0x03, 0x01, 0x01, 0x07, 0x02, 'x', 'y',
};
/* clang-format on */

static char *render(const uint8_t *p, size_t len, int16_t key, int16_t v, int req, int json,
                    unsigned flags)
{
	struct kd_arena a = {0};
	struct kd_tree t;
	struct kd_wbuf w = {0};
	kd_tree_decode(&t, &a, key, v, req, p, len);
	if (json)
		assert_int_equal(kd_render_json(&t, &w, flags), KD_OK);
	else
		assert_int_equal(kd_render_text(&t, &w, flags), KD_OK);
	char *s = malloc(w.len + 1);
	memcpy(s, w.p, w.len);
	s[w.len] = '\0';
	kd_wbuf_free(&w);
	kd_arena_free(&a);
	return s;
}

static void check(char *got, const char *want)
{
	assert_string_equal(got, want);
	free(got);
}

static void test_json_metadata_v0(void **state)
{
	(void)state;
	check(render(md_v0, sizeof(md_v0), 3, 0, 0, 1, 0),
	      "{\"Brokers\":[{\"NodeId\":1,\"Host\":\"kafka1\",\"Port\":9092}],"
	      "\"Topics\":[{\"ErrorCode\":0,\"Name\":\"t\",\"Partitions\":[{\"ErrorCode\":0,"
	      "\"PartitionIndex\":0,\"LeaderId\":1,\"ReplicaNodes\":[1],\"IsrNodes\":[1]}]}]}");
	check(render(md_v0, sizeof(md_v0), 3, 0, 0, 1, KD_RENDER_META),
	      "{\"api\":\"Metadata\",\"api_key\":3,\"version\":0,\"request\":false,\"body\":"
	      "{\"Brokers\":[{\"NodeId\":1,\"Host\":\"kafka1\",\"Port\":9092}],"
	      "\"Topics\":[{\"ErrorCode\":0,\"Name\":\"t\",\"Partitions\":[{\"ErrorCode\":0,"
	      "\"PartitionIndex\":0,\"LeaderId\":1,\"ReplicaNodes\":[1],\"IsrNodes\":[1]}]}]}}");
}

static void test_json_metadata_v12(void **state)
{
	(void)state;
	check(render(md_v12, sizeof(md_v12), 3, 12, 0, 1, 0),
	      "{\"ThrottleTimeMs\":0,\"Brokers\":[{\"NodeId\":1,\"Host\":\"h\",\"Port\":9092,"
	      "\"Rack\":\"cv8=\",\"Rack_encoding\":\"base64\"}],\"ClusterId\":null,"
	      "\"ControllerId\":1,"
	      "\"Topics\":[{\"ErrorCode\":3,\"Name\":null,\"TopicId\":\"ASNFZ4mrze8BI0VniavN7w\","
	      "\"IsInternal\":true,\"Partitions\":[],\"TopicAuthorizedOperations\":5}]}");
}

static void test_json_pretty(void **state)
{
	(void)state;
	static const uint8_t fc_v0[] = {I16(0), I32(2), I16(1), 'h', I32(1)};
	check(render(fc_v0, sizeof(fc_v0), 10, 0, 0, 1, KD_RENDER_PRETTY),
	      "{\n  \"ErrorCode\": 0,\n  \"NodeId\": 2,\n  \"Host\": \"h\",\n  \"Port\": 1\n}");
}

static void test_json_tags(void **state)
{
	(void)state;
	check(render(av_v3, sizeof(av_v3), 18, 3, 0, 1, 0),
	      "{\"ErrorCode\":0,\"ApiKeys\":[{\"ApiKey\":18,\"MinVersion\":0,\"MaxVersion\":4}],"
	      "\"ThrottleTimeMs\":0,\"FinalizedFeaturesEpoch\":5,\"ZkMigrationReady\":true,"
	      "\"_unknown_tags\":[{\"tag\":7,\"data\":\"eHk=\"}]}");
}

static void test_json_unsupported(void **state)
{
	(void)state;
	static const uint8_t body[] = {1, 2, 3};
	check(render(body, sizeof(body), 999, 0, 1, 1, 0),
	      "{\"error\":\"unknown api key 999\",\"raw\":\"AQID\"}");
	/* truncated: the error names the field path */
	check(render(md_v0, 16, 3, 0, 0, 1, 0),
	      "{\"error\":\"Brokers[0].Port: truncated value (0 bytes left)\","
	      "\"raw\":\"AAAAAQAAAAEABmthZmthMQ==\"}");
}

static void test_text(void **state)
{
	(void)state;
	check(render(md_v12, sizeof(md_v12), 3, 12, 0, 0, 0),
	      "Metadata response v12\n"
	      "  ThrottleTimeMs: 0\n"
	      "  Brokers: [1]\n"
	      "    [0]\n"
	      "      NodeId: 1\n"
	      "      Host: \"h\"\n"
	      "      Port: 9092\n"
	      "      Rack: <2 bytes> cv8=\n"
	      "  ClusterId: null\n"
	      "  ControllerId: 1\n"
	      "  Topics: [1]\n"
	      "    [0]\n"
	      "      ErrorCode: 3 UNKNOWN_TOPIC_OR_PARTITION\n"
	      "      Name: null\n"
	      "      TopicId: ASNFZ4mrze8BI0VniavN7w\n"
	      "      IsInternal: true\n"
	      "      Partitions: []\n"
	      "      TopicAuthorizedOperations: 5\n");
	check(render(av_v3, sizeof(av_v3), 18, 3, 0, 0, 0), "ApiVersions response v3\n"
	                                                    "  ErrorCode: 0 NONE\n"
	                                                    "  ApiKeys: [1]\n"
	                                                    "    [0]\n"
	                                                    "      ApiKey: 18\n"
	                                                    "      MinVersion: 0\n"
	                                                    "      MaxVersion: 4\n"
	                                                    "  ThrottleTimeMs: 0\n"
	                                                    "  FinalizedFeaturesEpoch: 5\n"
	                                                    "  ZkMigrationReady: true\n"
	                                                    "  (unknown tag 7): <2 bytes> eHk=\n");
	static const uint8_t fallback[] = {I16(35), I32(0)};
	check(render(fallback, sizeof(fallback), 18, 3, 0, 0, 0),
	      "ApiVersions response v0 (v0 fallback, asked v3)\n"
	      "  ErrorCode: 35 UNSUPPORTED_VERSION\n"
	      "  ApiKeys: []\n");
}

/* ProduceRequest v3 (non-flexible) with one v2 batch of two records (one
 * key not UTF-8, one header) plus a truncated second batch. */
static void test_records(void **state)
{
	(void)state;
	struct kd_wbuf batch = {0}, body = {0};
	struct kd_batch_spec spec = {.magic = 2,
	                             .producer_id = 7,
	                             .producer_epoch = 1,
	                             .base_sequence = 10,
	                             .base_offset = 100};
	struct kd_header hdr = {{(const uint8_t *)"h", 1, 0}, {(const uint8_t *)"v", 1, 0}};
	struct kd_wrecord recs[2] = {
	    {.timestamp = 1000,
	     .key = {(const uint8_t *)"\xff\x00k", 3, 0},
	     .value = {(const uint8_t *)"hello", 5, 0},
	     .headers = &hdr,
	     .header_count = 1},
	    {.timestamp = 1005, .key = {NULL, 0, 1}, .value = {(const uint8_t *)"w\"", 2, 0}},
	};
	assert_int_equal(kd_batch_write(&batch, &spec, recs, 2), KD_OK);
	size_t full = batch.len;
	kd_w_raw(&batch, batch.p, 20); /* a partial second batch */

	kd_w_i16(&body, -1);   /* TransactionalId null (v3+) */
	kd_w_i16(&body, 1);    /* Acks */
	kd_w_i32(&body, 1000); /* TimeoutMs */
	kd_w_i32(&body, 1);    /* TopicData */
	kd_w_i16(&body, 1);
	kd_w_raw(&body, "t", 1);
	kd_w_i32(&body, 1); /* PartitionData */
	kd_w_i32(&body, 0);
	kd_w_i32(&body, (int32_t)batch.len);
	kd_w_raw(&body, batch.p, batch.len);

	char want[4096];
	snprintf(
	    want, sizeof(want),
	    "{\"TransactionalId\":null,\"Acks\":1,\"TimeoutMs\":1000,\"TopicData\":[{\"Name\":"
	    "\"t\","
	    "\"PartitionData\":[{\"Index\":0,\"Records\":{\"batches\":[{\"base_offset\":100,"
	    "\"magic\":2,\"codec\":\"none\",\"crc_ok\":true,\"partition_leader_epoch\":0,"
	    "\"timestamp_type\":\"CreateTime\",\"base_timestamp\":1000,\"max_timestamp\":1005,"
	    "\"producer_id\":7,\"producer_epoch\":1,\"base_sequence\":10,\"transactional\":false,"
	    "\"control\":false,\"record_count\":2,\"records\":["
	    "{\"offset\":100,\"timestamp\":1000,\"sequence\":10,\"key\":\"/wBr\","
	    "\"key_encoding\":\"base64\",\"value\":\"hello\",\"headers\":[{\"key\":\"h\",\"value\":"
	    "\"v\"}]},"
	    "{\"offset\":101,\"timestamp\":1005,\"sequence\":11,\"key\":null,\"value\":\"w\\\"\","
	    "\"headers\":[]}]}],\"truncated_tail\":true}}]}]}");
	check(render(body.p, body.len, 0, 3, 1, 1, 0), want);

	/* KD_RENDER_NO_RECORDS: base64 of the blob */
	char *s = render(body.p, body.len, 0, 3, 1, 1, KD_RENDER_NO_RECORDS);
	assert_non_null(strstr(s, "\"Records\":\""));
	free(s);

	snprintf(
	    want, sizeof(want),
	    "Produce request v3\n"
	    "  TransactionalId: null\n"
	    "  Acks: 1\n"
	    "  TimeoutMs: 1000\n"
	    "  TopicData: [1]\n"
	    "    [0]\n"
	    "      Name: \"t\"\n"
	    "      PartitionData: [1]\n"
	    "        [0]\n"
	    "          Index: 0\n"
	    "          Records: <%zu bytes>\n"
	    "            batch offset=100 magic=2 codec=none records=2 crc=ok producer=7/1 seq=10\n"
	    "              offset=100 timestamp=1000 key=<3 bytes> /wBr value=\"hello\" headers=1\n"
	    "              offset=101 timestamp=1005 key=null value=\"w\\\"\"\n"
	    "            (truncated tail)\n",
	    full + 20);
	check(render(body.p, body.len, 0, 3, 1, 0, 0), want);
	kd_wbuf_free(&batch);
	kd_wbuf_free(&body);
}

static char *json_of(const char *p, size_t len, int *lossy)
{
	struct kd_wbuf w = {0};
	*lossy = kd_json_str(&w, (const uint8_t *)p, len);
	char *s = malloc(w.len + 1);
	memcpy(s, w.p, w.len);
	s[w.len] = '\0';
	kd_wbuf_free(&w);
	return s;
}

static void test_helpers(void **state)
{
	(void)state;
	int lossy;
	check(json_of("a\"b\\c\n\t\x01\x7f", 9, &lossy), "\"a\\\"b\\\\c\\n\\t\\u0001\x7f\"");
	assert_int_equal(lossy, 0);
	check(json_of("t\xc3\xbc\xe6\x97\xa5\xf0\x9f\x99\x82", 10, &lossy),
	      "\"t\xc3\xbc\xe6\x97\xa5\xf0\x9f\x99\x82\"");
	assert_int_equal(lossy, 0);
	/* invalid: a lone continuation, an overlong, a surrogate, a cut sequence */
	check(json_of("\x80"
	              "a\xc0\xaf"
	              "\xed\xa0\x80"
	              "\xe6\x97",
	              9, &lossy),
	      "\"\\u0080a\\u00c0\\u00af\\u00ed\\u00a0\\u0080\\u00e6\\u0097\"");
	assert_int_equal(lossy, 1);
	check(json_of("a\0b", 3, &lossy), "\"a\\u0000b\"");

	assert_true(kd_utf8_valid((const uint8_t *)"", 0));
	assert_true(kd_utf8_valid((const uint8_t *)"\xf4\x8f\xbf\xbf", 4));
	assert_false(kd_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
	assert_false(kd_utf8_valid((const uint8_t *)"\xff", 1));

	/* RFC 4648 section 10 vectors */
	static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const out[] = {"\"\"",         "\"Zg==\"",     "\"Zm8=\"",    "\"Zm9v\"",
	                                  "\"Zm9vYg==\"", "\"Zm9vYmE=\"", "\"Zm9vYmFy\""};
	for (int i = 0; i < 7; i++) {
		struct kd_wbuf w = {0};
		kd_json_bytes(&w, (const uint8_t *)in[i], strlen(in[i]));
		assert_int_equal(w.len, strlen(out[i]));
		assert_memory_equal(w.p, out[i], w.len);
		kd_wbuf_free(&w);
	}
	struct kd_wbuf w = {0};
	static const uint8_t u[16] = {0xfb, 0xff, 0xbf};
	kd_json_uuid(&w, u);
	assert_int_equal(w.len, 24);
	assert_memory_equal(w.p, "\"-_-_AAAAAAAAAAAAAAAAAA\"", 24);
	kd_wbuf_free(&w);

	/* A Prometheus label value: \\, \" and line feeds escaped, the rest
	 * as it is. */
	memset(&w, 0, sizeof(w));
	kd_w_prom_label(&w, "a\\b\"c\nd\te");
	assert_int_equal(w.len, 12);
	assert_memory_equal(w.p, "a\\\\b\\\"c\\nd\te", 12);
	kd_wbuf_free(&w);
}

/* A control batch (COMMIT marker) and an invalid UTF-8 string in an array. */
static void test_control_and_string_array(void **state)
{
	(void)state;
	struct kd_wbuf batch = {0}, body = {0};
	struct kd_batch_spec spec = {.magic = 2,
	                             .producer_id = 9,
	                             .producer_epoch = 2,
	                             .base_sequence = -1,
	                             .base_offset = 50};
	assert_int_equal(kd_batch_write_marker(&batch, &spec, KD_CTRL_COMMIT, 5, 2000), KD_OK);
	kd_w_i16(&body, -1);
	kd_w_i16(&body, 1);
	kd_w_i32(&body, 1000);
	kd_w_i32(&body, 1);
	kd_w_i16(&body, 1);
	kd_w_raw(&body, "t", 1);
	kd_w_i32(&body, 1);
	kd_w_i32(&body, 0);
	kd_w_i32(&body, (int32_t)batch.len);
	kd_w_raw(&body, batch.p, batch.len);
	char *s = render(body.p, body.len, 0, 3, 1, 1, 0);
	assert_non_null(
	    strstr(s, "\"producer_id\":9,\"producer_epoch\":2,\"base_sequence\":-1,"
	              "\"transactional\":true,\"control\":true,\"control_type\":\"COMMIT\","
	              "\"coordinator_epoch\":5,\"record_count\":1"));
	assert_non_null(strstr(s, "\"truncated_tail\":false"));
	free(s);
	kd_wbuf_free(&batch);
	kd_wbuf_free(&body);

	/* DescribeGroupsRequest v0: Groups []string */
	static const uint8_t dg[] = {0, 0, 0, 2, 0, 1, 'g', 0, 2, 0xff, 'x'};
	check(render(dg, sizeof(dg), 15, 0, 1, 1, 0), "{\"Groups\":[\"g\",{\"base64\":\"/3g=\"}]}");
	check(render(dg, sizeof(dg), 15, 0, 1, 0, 0),
	      "DescribeGroups request v0\n  Groups: [\"g\", <2 bytes> /3g=]\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_json_metadata_v0),
	    cmocka_unit_test(test_json_metadata_v12),
	    cmocka_unit_test(test_json_pretty),
	    cmocka_unit_test(test_json_tags),
	    cmocka_unit_test(test_json_unsupported),
	    cmocka_unit_test(test_text),
	    cmocka_unit_test(test_records),
	    cmocka_unit_test(test_helpers),
	    cmocka_unit_test(test_control_and_string_array),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
