/* fuzz_records_frame.c: libFuzzer target for the proxy's way of rewriting
 * the records of a Fetch response (docs/rules.md "In the proxy"):
 * rule_rewrite_tree with the new body made in the caller's buffer as the
 * records are rewritten (rule_rewriter.dest), then rule_rewrite_encode,
 * which splices the new record sets into the body's own bytes or falls back
 * to encoding the tree. The first byte picks the Fetch version (4 to 16)
 * and the rule (bit 7: a JSON mask, else a header added); the rest is the
 * response body. When the body decodes and the rewrite succeeds, the new
 * body must decode, and decode to what the tree edited in place encodes to
 * (both normalised by a decode and encode: a body's own field encodings
 * are kept by splicing, not by the tree), with the caller's bytes before
 * it untouched. Seeds in corpus/fuzz_records_frame/. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd-arena.h"
#include "kd-tree.h"
#include "kd.h"
#include "rule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checked in every build (fuzz builds define NDEBUG). */
#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x)) {                                                                        \
			fprintf(stderr, "fuzz_records_frame: line %d: %s\n", __LINE__, #x);        \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static struct rule_set *load(const char *yaml)
{
	char err[256];
	struct rule_set *rs = rule_set_load_mem(yaml, strlen(yaml), "f.yaml", err, sizeof(err));
	if (!rs) {
		fprintf(stderr, "fuzz_records_frame: %s\n", err);
		abort();
	}
	return rs;
}

/* body decoded, normalised: decoded again and encoded, into out. */
static int normalise(int16_t ver, const uint8_t *p, size_t len, struct kd_wbuf *out)
{
	struct kd_arena a = {.limit = 64u << 20};
	struct kd_tree t;
	int rc = kd_tree_decode(&t, &a, 1, ver, 0, p, len);
	if (rc == KD_OK)
		rc = kd_tree_encode(&t, out);
	kd_arena_free(&a);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rule_set *rs_hdr, *rs_mask;
	if (!rs_hdr) {
		rs_hdr = load("rewrite:\n  - match: {api: Fetch}\n"
		              "    headers: {add: {x-kwire: \"${client_id}\"}, remove: [a]}\n");
		rs_mask = load("rewrite:\n  - match: {api: Fetch}\n"
		               "    mask: [{path: \"*\", replace: \"***\"}, {path: \"[*]\", drop: true}]\n");
	}
	if (size < 1)
		return 0;
	int16_t ver = (int16_t)(4 + (data[0] & 0x7f) % 13);
	const struct rule_set *rs = (data[0] & 0x80) ? rs_mask : rs_hdr;
	const uint8_t *body = data + 1;
	size_t blen = size - 1;
	struct rule_req req = {.api_key = 1,
	                       .api_version = ver,
	                       .have_body = 1,
	                       .acks = -2,
	                       .client_id = {(const uint8_t *)"fz", 2, 0}};
	struct rule_rw_ctx ctx = {.client_id = req.client_id, .now_ms = 1};
	struct rule_rw_out out1, out2;
	struct kd_arena a1 = {.limit = 64u << 20}, a2 = {.limit = 64u << 20};
	struct kd_tree t1, t2;
	struct kd_wbuf d = {0}, e = {0}, n1 = {0}, n2 = {0};
	struct rule_rewriter w1 = {.defer = 1, .dest = &d}, w2 = {0};
	if (kd_tree_decode(&t1, &a1, 1, ver, 0, body, blen) != KD_OK)
		goto out;
	CHECK(kd_tree_decode(&t2, &a2, 1, ver, 0, body, blen) == KD_OK);
	kd_w_raw(&d, "HDR", 3); /* the caller's bytes (the proxy's size and header) */
	int rc1 = rule_rewrite_tree(&w1, rs, RULE_RW_FETCH, &t1, &req, NULL, &ctx, &out1);
	if (rc1 == KD_OK && out1.changed)
		rc1 = rule_rewrite_encode(&w1, &t1, &d);
	int rc2 = rule_rewrite_tree(&w2, rs, RULE_RW_FETCH, &t2, &req, NULL, &ctx, &out2);
	CHECK(rc1 == rc2);
	if (rc1 != KD_OK)
		goto out;
	CHECK(out1.changed == out2.changed && out1.refused == out2.refused &&
	      out1.passed == out2.passed && out1.records == out2.records);
	CHECK(d.len >= 3 && !memcmp(d.p, "HDR", 3));
	if (!out1.changed) {
		CHECK(d.len == 3); /* nothing written past the caller's bytes */
		goto out;
	}
	CHECK(kd_tree_encode(&t2, &e) == KD_OK);
	/* Both decode, and to the same thing. */
	CHECK(normalise(ver, d.p + 3, d.len - 3, &n1) == KD_OK);
	CHECK(normalise(ver, e.p, e.len, &n2) == KD_OK);
	CHECK(n1.len == n2.len && !memcmp(n1.p, n2.p, n1.len));
out:
	rule_rewriter_free(&w1);
	rule_rewriter_free(&w2);
	kd_arena_free(&a1);
	kd_arena_free(&a2);
	kd_wbuf_free(&d);
	kd_wbuf_free(&e);
	kd_wbuf_free(&n1);
	kd_wbuf_free(&n2);
	return 0;
}
