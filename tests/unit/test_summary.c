/* test_summary.c: kd-summary on real frames (deepflow's public captures,
 * see shared/pcaps/public/README.txt) and on frames built with the writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kd-cur.h"
#include "kd-hdr.h"
#include "kd-summary.h"
#include "kd-topics.h"

/* deepflow/00-produce-v9.pcap: console-producer, Produce v9, acks=1. */
static const char produce_v9_req[] =
    "00000098000000090000002f0010636f6e736f6c652d70726f647563657200000001000005dc02097a"
    "71792d74657374020000000064000000000000000000000057ffffffff023345f48e00000000000000"
    "000191ea86ee1d00000191ea86ee1dffffffffffffffffffffffffffff000000014a000000013e7171"
    "717171717171717171717171717171717171717171717171717171717100000000";
static const char produce_v9_resp[] =
    "000000370000002f0002097a71792d74657374020000000000000000000000000023ffffffffffffff"
    "ff0000000000000010010000000000000000";
/* deepflow/00-produce-v2.pcap: a legacy (magic 1) message set. */
static const char produce_v2_req[] =
    "0000007500000002000000010010636f6e736f6c652d70726f64756365720001000005dc0000000100"
    "06746f7069633200000001000000000000003d000000000000000000000031dfa8ca66010000000158"
    "741cd909ffffffff0000001b4d65737361676520776974686f757420636f6d7072657373696f6e";
static const char produce_v2_resp[] =
    "0000002e00000001000000010006746f70696332000000010000000000000000000000000000ffffff"
    "ffffffffff00000000";
/* deepflow/01-fetch-v12-ok.pcap */
static const char fetch_v12_req[] =
    "000000740001000c00003cf30020636f6e73756d65722d636f6e736f6c652d636f6e73756d65722d38"
    "3931392d3100ffffffff000001f40000000103200000002f2671c50000342002097a71792d74657374"
    "0200000000000000000000000000000024ffffffffffffffffffffffff001000000000010100";

static size_t unhex(const char *h, uint8_t *out, size_t cap)
{
	size_t n = strlen(h) / 2;
	assert_true(n <= cap);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

/* Summarises a whole request frame (hex, with its INT32 size). */
static int sum_req_hex(struct kd_summary *sum, const char *hex)
{
	uint8_t buf[1024];
	size_t n = unhex(hex, buf, sizeof(buf));
	struct kd_req_hdr hdr;
	int hl = kd_req_hdr_parse(buf + 4, n - 4, &hdr);
	assert_true(hl > 0);
	return kd_sum_request(sum, hdr.api_key, hdr.api_version, hdr.correlation_id, hdr.client_id,
	                      buf + 4 + hl, n - 4 - (size_t)hl);
}

static int sum_resp_hex(struct kd_summary *sum, const char *hex)
{
	uint8_t buf[1024];
	size_t n = unhex(hex, buf, sizeof(buf));
	struct kd_resp_hdr hdr;
	int hl = kd_resp_hdr_parse(buf + 4, n - 4, sum->api_key, sum->api_version, &hdr);
	assert_true(hl > 0);
	assert_int_equal(hdr.correlation_id, sum->correlation_id);
	/* The request's bytes are gone by now: the summary owns its strings. */
	return kd_sum_response(sum, buf + 4 + hl, n - 4 - (size_t)hl);
}

static char *render(const struct kd_summary *sum, int json)
{
	static char out[8192];
	struct kd_wbuf w = {0};
	if (json)
		kd_sum_json(sum, &w);
	else
		kd_sum_text(sum, &w);
	assert_int_equal(w.err, KD_OK);
	assert_true(w.len < sizeof(out));
	memcpy(out, w.p, w.len);
	out[w.len] = 0;
	kd_wbuf_free(&w);
	return out;
}

static void test_produce_v9_real(void **state)
{
	(void)state;
	struct kd_summary sum;
	kd_sum_init(&sum);
	assert_int_equal(sum_req_hex(&sum, produce_v9_req), KD_OK);
	assert_int_equal(sum.api_key, 0);
	assert_int_equal(sum.api_version, 9);
	assert_int_equal(sum.correlation_id, 47);
	assert_int_equal(sum.acks, 1);
	assert_int_equal(sum.ntp, 1);
	assert_int_equal(sum.tp[0].partition, 0);
	assert_int_equal(sum.tp[0].records, 1);
	assert_int_equal(sum.tp[0].bytes, 99);
	struct kd_view t = kd_sum_view(&sum, sum.tp[0].topic);
	assert_int_equal(t.len, 8);
	assert_memory_equal(t.p, "zqy-test", 8);
	assert_false(sum.flags & KD_SUM_NO_RESP);

	assert_int_equal(sum_resp_hex(&sum, produce_v9_resp), KD_OK);
	assert_int_equal(sum.ntp, 1); /* merged with the request's entry */
	assert_int_equal(sum.tp[0].base_offset, 0x23);
	assert_false(kd_sum_has_error(&sum));

	sum.ts_us = 1726214400123456LL;
	sum.latency_us = 1234;
	snprintf(sum.client, sizeof(sum.client), "10.0.0.1:51704");
	snprintf(sum.broker, sizeof(sum.broker), "10.0.0.2:36333");
	const char *txt = render(&sum, 0);
	assert_non_null(
	    strstr(txt, "2024-09-13T08:00:00.123456Z 10.0.0.1:51704 -> 10.0.0.2:36333 "
	                "\"console-producer\" Produce v9 #47 acks=1 zqy-test[0]:1rec/99B@35"));
	assert_non_null(strstr(txt, " 1.234ms"));
	const char *js = render(&sum, 1);
	assert_non_null(strstr(js, "\"api\":\"Produce\",\"version\":9,\"correlation_id\":47,"
	                           "\"latency_us\":1234,\"status\":\"ok\""));
	assert_non_null(strstr(js, "{\"topic\":\"zqy-test\",\"partition\":0,\"records\":1,"
	                           "\"batches\":1,\"bytes\":99,\"base_offset\":35}"));
	assert_non_null(strstr(js, "\"client_id\":\"console-producer\""));
}

static void test_produce_v2_legacy(void **state)
{
	(void)state;
	struct kd_summary sum;
	kd_sum_init(&sum);
	assert_int_equal(sum_req_hex(&sum, produce_v2_req), KD_OK);
	assert_int_equal(sum.api_version, 2);
	assert_int_equal(sum.ntp, 1);
	assert_int_equal(sum.tp[0].records, 1);
	assert_int_equal(sum.tp[0].batches, 1);
	assert_int_equal(sum_resp_hex(&sum, produce_v2_resp), KD_OK);
	assert_int_equal(sum.ntp, 1);
	assert_int_equal(sum.tp[0].base_offset, 0);
	assert_non_null(strstr(render(&sum, 0), "topic2[0]:1rec/61B@0"));
	assert_null(strstr(render(&sum, 0), "(no response)"));
}

static void test_fetch_v12_real(void **state)
{
	(void)state;
	struct kd_summary sum;
	kd_sum_init(&sum);
	assert_int_equal(sum_req_hex(&sum, fetch_v12_req), KD_OK);
	assert_int_equal(sum.api_key, 1);
	assert_int_equal(sum.ntp, 1);
	assert_int_equal(sum.tp[0].partition, 0);
	assert_int_equal(sum.tp[0].fetch_offset, 0x24);
	const char *txt = render(&sum, 0);
	assert_non_null(strstr(txt, "Fetch v12 #15603 zqy-test[0]@36"));
	assert_non_null(strstr(txt, "(no response)"));
	assert_non_null(strstr(render(&sum, 1), "\"status\":\"unanswered\""));
}

/* Every prefix of a real body: no crash, no read past the end, and an
 * error unless the prefix is the whole body. */
static void test_prefixes(void **state)
{
	(void)state;
	uint8_t buf[1024];
	size_t n = unhex(produce_v9_req, buf, sizeof(buf));
	struct kd_req_hdr hdr;
	int hl = kd_req_hdr_parse(buf + 4, n - 4, &hdr);
	size_t blen = n - 4 - (size_t)hl;
	for (size_t cut = 0; cut < blen; cut++) {
		uint8_t *copy = malloc(cut ? cut : 1);
		memcpy(copy, buf + 4 + hl, cut);
		struct kd_summary sum;
		kd_sum_init(&sum);
		int rc = kd_sum_request(&sum, 0, 9, 1, hdr.client_id, copy, cut);
		assert_true(rc < 0);
		assert_true(sum.flags & KD_SUM_REQ_BAD);
		free(copy);
	}
}

/* ---- frames built with the writer ---- */

static void w_cstr(struct kd_wbuf *w, int compact, const char *s)
{
	struct kd_view v = {(const uint8_t *)s, (uint32_t)strlen(s), 0};
	kd_w_blob(w, compact, 2, &v);
}

/* A v2 record batch header announcing n records, with pad record bytes. */
static void w_batch(struct kd_wbuf *w, int32_t n, size_t pad)
{
	kd_w_i64(w, 100);
	kd_w_i32(w, (int32_t)(49 + pad));
	kd_w_i32(w, 0);
	kd_w_i8(w, 2);
	kd_w_u32(w, 0);
	kd_w_i16(w, 0);
	kd_w_i32(w, n - 1);
	kd_w_i64(w, 0);
	kd_w_i64(w, 0);
	kd_w_i64(w, -1);
	kd_w_i16(w, -1);
	kd_w_i32(w, -1);
	kd_w_i32(w, n);
	for (size_t i = 0; i < pad; i++)
		kd_w_i8(w, 0);
}

static void test_produce_errors_and_acks0(void **state)
{
	(void)state;
	struct kd_wbuf w = {0};
	/* ProduceRequest v3: TransactionalId, Acks 0, TimeoutMs, TopicData[] */
	w_cstr(&w, 0, "txn-1");
	kd_w_i16(&w, 0);
	kd_w_i32(&w, 1000);
	kd_w_i32(&w, 1);
	w_cstr(&w, 0, "orders");
	kd_w_i32(&w, 2);
	for (int p = 0; p < 2; p++) {
		kd_w_i32(&w, p);
		struct kd_wbuf rec = {0};
		w_batch(&rec, 3 + p, 10);
		w_batch(&rec, 2, 0);
		kd_w_i32(&w, (int32_t)rec.len);
		kd_w_raw(&w, rec.p, rec.len);
		kd_wbuf_free(&rec);
	}
	struct kd_summary sum;
	kd_sum_init(&sum);
	struct kd_view cid = {(const uint8_t *)"bad\xff\x01id", 7, 0};
	assert_int_equal(kd_sum_request(&sum, 0, 3, 9, cid, w.p, w.len), KD_OK);
	assert_true(sum.flags & KD_SUM_NO_RESP);
	assert_int_equal(sum.ntp, 2);
	assert_int_equal(sum.tp[0].records, 5);
	assert_int_equal(sum.tp[1].records, 6);
	assert_int_equal(sum.tp[1].batches, 2);
	assert_int_equal(sum.records, 11);
	struct kd_view txn = kd_sum_view(&sum, sum.txn_id);
	assert_int_equal(txn.len, 5);
	const char *js = render(&sum, 1);
	assert_non_null(strstr(js, "\"client_id\":\"bad\\u00ff\\u0001id\""));
	assert_non_null(strstr(js, "\"status\":\"no_response\""));
	assert_non_null(strstr(js, "\"transactional_id\":\"txn-1\""));
	assert_non_null(strstr(render(&sum, 0), "(acks=0)"));
	assert_non_null(strstr(render(&sum, 0), "\"bad\\xff\\x01id\""));

	/* The same pair with a response carrying partition errors. */
	w.len = 0;
	kd_w_i32(&w, 1);
	w_cstr(&w, 0, "orders");
	kd_w_i32(&w, 2);
	kd_w_i32(&w, 1);
	kd_w_i16(&w, 3);
	kd_w_i64(&w, -1);
	kd_w_i64(&w, -1);
	kd_w_i32(&w, 0);
	kd_w_i16(&w, 6);
	kd_w_i64(&w, -1);
	kd_w_i64(&w, -1);
	kd_w_i32(&w, 0); /* ThrottleTimeMs */
	sum.acks = 1;
	sum.flags &= ~(unsigned)KD_SUM_NO_RESP;
	assert_int_equal(kd_sum_response(&sum, w.p, w.len), KD_OK);
	assert_int_equal(sum.ntp, 2);
	assert_int_equal(sum.tp[1].error, 3);
	assert_int_equal(sum.tp[0].error, 6);
	assert_true(kd_sum_has_error(&sum));
	js = render(&sum, 1);
	assert_non_null(strstr(
	    js, "\"errors\":{\"UNKNOWN_TOPIC_OR_PARTITION\":1,\"NOT_LEADER_OR_FOLLOWER\":1}"));
	assert_non_null(strstr(render(&sum, 0), "orders[1]:6rec/132B UNKNOWN_TOPIC_OR_PARTITION"));
	kd_wbuf_free(&w);
}

static void test_groups_and_endtxn(void **state)
{
	(void)state;
	struct kd_wbuf w = {0};
	/* HeartbeatRequest v4 (flexible): GroupId, GenerationId, MemberId,
	 * GroupInstanceId, tags. */
	w_cstr(&w, 1, "payments");
	kd_w_i32(&w, 7);
	w_cstr(&w, 1, "member-1");
	kd_w_uvarint(&w, 0);
	kd_w_uvarint(&w, 0);
	struct kd_summary sum;
	kd_sum_init(&sum);
	struct kd_view none = {NULL, 0, 1};
	assert_int_equal(kd_sum_request(&sum, 12, 4, 3, none, w.p, w.len), KD_OK);
	assert_int_equal(sum.ngroups, 1);
	assert_non_null(strstr(render(&sum, 0), "Heartbeat v4 #3 group=payments member=member-1"));
	/* HeartbeatResponse v4: ThrottleTimeMs, ErrorCode 27 (REBALANCE_IN_PROGRESS), tags. */
	w.len = 0;
	kd_w_i32(&w, 0);
	kd_w_i16(&w, 27);
	kd_w_uvarint(&w, 0);
	assert_int_equal(kd_sum_response(&sum, w.p, w.len), KD_OK);
	assert_int_equal(sum.error, 27);
	assert_non_null(strstr(render(&sum, 0), "REBALANCE_IN_PROGRESS"));
	assert_non_null(strstr(render(&sum, 1), "\"groups\":[\"payments\"]"));

	/* EndTxnRequest v0: TransactionalId, ProducerId, ProducerEpoch, Committed. */
	w.len = 0;
	w_cstr(&w, 0, "tx");
	kd_w_i64(&w, 4242);
	kd_w_i16(&w, 0);
	kd_w_i8(&w, 0);
	kd_sum_init(&sum);
	assert_int_equal(kd_sum_request(&sum, 26, 0, 1, none, w.p, w.len), KD_OK);
	assert_int_equal(sum.committed, 0);
	assert_int_equal(sum.producer_id, 4242);
	assert_non_null(strstr(render(&sum, 0), "txn=tx pid=4242 ABORT"));
	kd_wbuf_free(&w);
}

static void test_fetch_topic_ids_and_truncated_tail(void **state)
{
	(void)state;
	static const uint8_t id[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	struct kd_wbuf w = {0};
	/* FetchResponse v13: ThrottleTimeMs, ErrorCode, SessionId, Responses[] {
	 *   TopicId, Partitions[] { PartitionIndex, ErrorCode, HighWatermark,
	 *   LastStableOffset, LogStartOffset, AbortedTransactions[], PreferredReadReplica,
	 *   Records, tags }, tags }, tags */
	kd_w_i32(&w, 0);
	kd_w_i16(&w, 0);
	kd_w_i32(&w, 1);
	kd_w_uvarint(&w, 2);
	kd_w_raw(&w, id, 16);
	kd_w_uvarint(&w, 2);
	kd_w_i32(&w, 4);
	kd_w_i16(&w, 0);
	kd_w_i64(&w, 500);
	kd_w_i64(&w, 500);
	kd_w_i64(&w, 0);
	kd_w_uvarint(&w, 1);
	kd_w_i32(&w, -1);
	struct kd_wbuf rec = {0};
	w_batch(&rec, 7, 20);
	w_batch(&rec, 9, 20);
	rec.len -= 15; /* the broker cut the last batch: data, not an error */
	kd_w_uvarint(&w, (uint32_t)rec.len + 1);
	kd_w_raw(&w, rec.p, rec.len);
	kd_w_uvarint(&w, 0);
	kd_w_uvarint(&w, 0);
	kd_w_uvarint(&w, 0);
	struct kd_summary sum;
	kd_sum_init(&sum);
	sum.api_key = 1;
	sum.api_version = 13;
	sum.correlation_id = 5;
	assert_int_equal(kd_sum_response(&sum, w.p, w.len), KD_OK);
	assert_int_equal(sum.ntp, 1);
	assert_int_equal(sum.tp[0].records, 7);
	assert_int_equal(sum.tp[0].high_watermark, 500);
	/* an id not known yet is shown as one, marked */
	assert_non_null(strstr(render(&sum, 0),
	                       "Fetch v13 response #5 topic-id:AQIDBAUGBwgJCgsMDQ4PEA[4]:7rec/"));
	assert_non_null(strstr(render(&sum, 1), "\"status\":\"unmatched\""));
	assert_non_null(
	    strstr(render(&sum, 1), "\"topic\":null,\"topic_id\":\"AQIDBAUGBwgJCgsMDQ4PEA\""));
	assert_int_equal(sum.flags & (KD_SUM_RESP_WARN | KD_SUM_RESP_BAD), 0);
	/* resolved through a map once it is learnt */
	struct kd_topics *map = kd_topics_new();
	kd_sum_resolve_topics(&sum, map);
	kd_sum_resolve_topics(&sum, NULL);
	assert_non_null(strstr(render(&sum, 0), "topic-id:AQIDBAUGBwgJCgsMDQ4PEA[4]"));
	assert_int_equal(kd_topics_put(map, id, (const uint8_t *)"clicks", 6), 1);
	kd_sum_resolve_topics(&sum, map);
	assert_non_null(strstr(render(&sum, 0), "response #5 clicks[4]:7rec/"));
	assert_non_null(strstr(render(&sum, 1), "\"topic\":\"clicks\",\"topic_id\""));
	kd_topics_free(&map);

	/* one byte after the body: decoded all the same, a decode warning */
	kd_w_raw(&w, "\0", 1);
	kd_sum_init(&sum);
	sum.api_key = 1;
	sum.api_version = 13;
	sum.correlation_id = 5;
	assert_int_equal(kd_sum_response(&sum, w.p, w.len), KD_OK);
	assert_int_equal(sum.tp[0].records, 7);
	assert_int_equal(kd_sum_decode_warnings(&sum), 1);
	assert_int_equal(kd_sum_decode_errors(&sum), 0);
	assert_int_equal(sum.resp_trailing, 1);
	assert_non_null(strstr(render(&sum, 0), ":7rec/"));
	assert_non_null(strstr(render(&sum, 0), " [response: 1 trailing byte]"));
	assert_non_null(
	    strstr(render(&sum, 1), "\"warnings\":[\"response body: 1 trailing bytes\"]"));
	assert_null(strstr(render(&sum, 1), "\"problems\""));
	kd_wbuf_free(&rec);
	kd_wbuf_free(&w);
}

/* The JSON status tells an answer carrying an error from a clean one, and
 * names the error (the access log's "status"). */
static void test_status_error(void **state)
{
	(void)state;
	static const uint8_t av_req[] = {0x02, 'a', 0x02, '1', 0x00};
	/* a v3 ApiVersions refused: UNSUPPORTED_VERSION in a v0 body (KIP-511) */
	static const uint8_t av_refused[] = {0x00, 35, 0, 0, 0, 0};
	static const uint8_t av_ok_v0[] = {0x00, 0x00, 0, 0, 0, 1, 0x00, 0x12, 0, 0, 0, 3};
	struct kd_view cid = {(const uint8_t *)"c", 1, 0};
	struct kd_summary sum;
	kd_sum_init(&sum);
	assert_int_equal(kd_sum_request(&sum, 18, 3, 1, cid, av_req, sizeof(av_req)), KD_OK);
	assert_int_equal(kd_sum_response(&sum, av_refused, sizeof(av_refused)), KD_OK);
	assert_int_equal(sum.resp_error, 35);
	assert_non_null(
	    strstr(render(&sum, 1), "\"status\":\"error\",\"error\":\"UNSUPPORTED_VERSION\""));
	assert_non_null(strstr(render(&sum, 0), " UNSUPPORTED_VERSION"));

	kd_sum_init(&sum);
	assert_int_equal(kd_sum_request(&sum, 18, 0, 1, cid, NULL, 0), KD_OK);
	assert_int_equal(kd_sum_response(&sum, av_ok_v0, sizeof(av_ok_v0)), KD_OK);
	assert_int_equal(sum.resp_error, 0);
	assert_non_null(strstr(render(&sum, 1), "\"status\":\"ok\""));
	assert_null(strstr(render(&sum, 1), "\"error\":"));
}

static void test_limits_and_unknown(void **state)
{
	(void)state;
	struct kd_wbuf w = {0};
	/* ListOffsets v1 request: ReplicaId, Topics[1] { Name, Partitions[100] { index, ts } } */
	kd_w_i32(&w, -1);
	kd_w_i32(&w, 1);
	w_cstr(&w, 0, "big");
	kd_w_i32(&w, 100);
	for (int p = 0; p < 100; p++) {
		kd_w_i32(&w, p);
		kd_w_i64(&w, -1);
	}
	struct kd_summary sum;
	kd_sum_init(&sum);
	struct kd_view none = {NULL, 0, 1};
	assert_int_equal(kd_sum_request(&sum, 2, 1, 1, none, w.p, w.len), KD_OK);
	assert_int_equal(sum.ntp, KD_SUM_MAX_TP);
	assert_int_equal(sum.tp_more, 100 - KD_SUM_MAX_TP);
	assert_non_null(strstr(render(&sum, 0), "+92 more"));

	/* A hostile array count never drives a long loop. */
	w.len = 0;
	kd_w_i32(&w, -1);
	kd_w_i32(&w, 0x7fffffff);
	kd_sum_init(&sum);
	assert_int_equal(kd_sum_request(&sum, 2, 1, 1, none, w.p, w.len), KD_EMALFORMED);
	assert_non_null(strstr(render(&sum, 0), "[bad request"));

	kd_sum_init(&sum);
	assert_int_equal(kd_sum_request(&sum, 10000, 0, 1, none, w.p, w.len), KD_EUNSUPPORTED);
	assert_true(sum.flags & KD_SUM_UNKNOWN);
	assert_non_null(strstr(render(&sum, 0), "Api10000 v0 #1"));

	kd_sum_init(&sum);
	sum.correlation_id = 77;
	assert_int_equal(kd_sum_response(&sum, w.p, w.len), KD_EUNSUPPORTED);
	assert_non_null(strstr(render(&sum, 0), "? response #77"));
	assert_non_null(strstr(render(&sum, 1), "\"api_key\":null"));
	kd_wbuf_free(&w);
}

static void test_json_str(void **state)
{
	(void)state;
	struct kd_wbuf w = {0};
	kd_sum_json_str(&w, (const uint8_t *)"a\"b\\c\n\xc3\xa9\xed\xa0\x80", 11);
	assert_int_equal(w.len, strlen("\"a\\\"b\\\\c\\n\xc3\xa9\\u00ed\\u00a0\\u0080\""));
	assert_memory_equal(w.p, "\"a\\\"b\\\\c\\n\xc3\xa9\\u00ed\\u00a0\\u0080\"", w.len);
	kd_wbuf_free(&w);
	char ts[40];
	kd_sum_fmt_ts(0, ts, sizeof(ts));
	assert_string_equal(ts, "1970-01-01T00:00:00.000000Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_produce_v9_real),
	    cmocka_unit_test(test_produce_v2_legacy),
	    cmocka_unit_test(test_fetch_v12_real),
	    cmocka_unit_test(test_prefixes),
	    cmocka_unit_test(test_produce_errors_and_acks0),
	    cmocka_unit_test(test_groups_and_endtxn),
	    cmocka_unit_test(test_fetch_topic_ids_and_truncated_tail),
	    cmocka_unit_test(test_status_error),
	    cmocka_unit_test(test_limits_and_unknown),
	    cmocka_unit_test(test_json_str),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
