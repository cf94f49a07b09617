/* test_recedit.c: JSON masking by path (kd-json.h) and the record
 * rewriter (kd-recedit.h): every codec, headers kept, CRCs valid. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kd-codec.h"
#include "kd-crc.h"
#include "kd-json.h"
#include "kd-recedit.h"
#include "kd-records.h"
#include "kd.h"

#define V(s) ((struct kd_view){(const uint8_t *)(s), (uint32_t)strlen(s), 0})

/* Hash stub for the tests: "H(" content ")" as a JSON string. */
static int test_hash(const struct kd_jmask *m, const uint8_t *in, size_t len, struct kd_wbuf *out)
{
	(void)m;
	struct kd_wbuf t = {0};
	kd_w_raw(&t, "H(", 2);
	kd_w_raw(&t, in, len);
	kd_w_raw(&t, ")", 1);
	kd_json_w_string(out, t.p, t.len);
	kd_wbuf_free(&t);
	return 0;
}

/* Masks in with one path and op; returns the result (static buffer) or
 * "ERR" / the count in *n. */
static const char *mask1(const char *in, const char *path, int op, const char *with, int *n)
{
	static char res[4096];
	struct kd_jpath jp;
	char err[128];
	assert_int_equal(kd_jpath_parse(&jp, path, strlen(path), err, sizeof(err)), 0);
	struct kd_jmask m = {
	    .path = &jp, .op = (uint8_t)op, .with = with, .with_len = with ? strlen(with) : 0};
	struct kd_wbuf out = {0};
	int rc = kd_json_mask((const uint8_t *)in, strlen(in), &m, 1, test_hash, &out);
	if (n)
		*n = rc;
	if (rc < 0) {
		kd_wbuf_free(&out);
		return "ERR";
	}
	snprintf(res, sizeof(res), "%.*s", (int)out.len, (const char *)out.p);
	kd_wbuf_free(&out);
	return res;
}

static void test_json_replace(void **state)
{
	(void)state;
	int n;
	assert_string_equal(
	    mask1("{\"a\": 1, \"b\" : {\"c\":\"x\"}}", "b.c", KD_JMASK_REPLACE, "\"***\"", &n),
	    "{\"a\": 1, \"b\" : {\"c\":\"***\"}}");
	assert_int_equal(n, 1);
	/* Nothing named: byte for byte the input, whitespace and all. */
	const char *odd = " {\"a\" :1.50e+3 ,\"u\":\"\\u00e9\\n\"}  ";
	assert_string_equal(mask1(odd, "zz", KD_JMASK_REPLACE, "\"***\"", &n), odd);
	assert_int_equal(n, 0);
	/* A whole object replaced, not looked into. */
	assert_string_equal(mask1("{\"u\":{\"email\":\"a@b\",\"n\":[1,2]}}", "u", KD_JMASK_REPLACE,
	                          "\"***\"", NULL),
	                    "{\"u\":\"***\"}");
	/* Arrays: [*] and [N], and * for any member. */
	assert_string_equal(mask1("{\"items\":[{\"card\":1},{\"card\":2},{\"x\":3}]}",
	                          "items[*].card", KD_JMASK_REPLACE, "\"***\"", &n),
	                    "{\"items\":[{\"card\":\"***\"},{\"card\":\"***\"},{\"x\":3}]}");
	assert_int_equal(n, 2);
	assert_string_equal(mask1("[10,20,30]", "[1]", KD_JMASK_REPLACE, "0", NULL), "[10,0,30]");
	assert_string_equal(
	    mask1("{\"a\":{\"s\":1},\"b\":{\"s\":2}}", "$.*.s", KD_JMASK_REPLACE, "null", NULL),
	    "{\"a\":{\"s\":null},\"b\":{\"s\":null}}");
	/* Escaped member names match their unescaped path. */
	assert_string_equal(
	    mask1("{\"e\\u006dail\":\"x\"}", "email", KD_JMASK_REPLACE, "\"*\"", NULL),
	    "{\"e\\u006dail\":\"*\"}");
	assert_string_equal(
	    mask1("{\"a.b\":{\"c\":1}}", "[\"a.b\"].c", KD_JMASK_REPLACE, "2", NULL),
	    "{\"a.b\":{\"c\":2}}");
	/* Duplicate names: both. */
	assert_string_equal(mask1("{\"k\":1,\"k\":2}", "k", KD_JMASK_REPLACE, "0", NULL),
	                    "{\"k\":0,\"k\":0}");
}

static void test_json_hash(void **state)
{
	(void)state;
	/* Strings hash their content (unescaped), others their text. */
	assert_string_equal(mask1("{\"e\":\"a\\\"b\",\"n\":12.0}", "e", KD_JMASK_HASH, NULL, NULL),
	                    "{\"e\":\"H(a\\\"b)\",\"n\":12.0}");
	assert_string_equal(mask1("{\"e\":\"x\",\"n\":12.0}", "n", KD_JMASK_HASH, NULL, NULL),
	                    "{\"e\":\"x\",\"n\":\"H(12.0)\"}");
}

static void test_json_drop(void **state)
{
	(void)state;
	struct {
		const char *in, *path, *out;
	} t[] = {
	    {"{\"a\":1,\"b\":2,\"c\":3}", "a", "{\"b\":2,\"c\":3}"},
	    {"{\"a\":1,\"b\":2,\"c\":3}", "b", "{\"a\":1,\"c\":3}"},
	    {"{\"a\":1,\"b\":2,\"c\":3}", "c", "{\"a\":1,\"b\":2}"},
	    {"{ \"a\" : 1 }", "a", "{  }"},
	    {"{\"a\":1, \"a\":2, \"b\":3}", "a", "{\"b\":3}"},
	    {"{\"b\":3, \"a\":1, \"a\":2}", "a", "{\"b\":3}"},
	    {"{\"a\":1,\"a\":2}", "a", "{}"},
	    {"[1,2,3]", "[*]", "[]"},
	    {"[1,2,3]", "[0]", "[2,3]"},
	    {"[1,2,3]", "[2]", "[1,2]"},
	    {"{\"x\":[{\"p\":1,\"q\":2}]}", "x[0].p", "{\"x\":[{\"q\":2}]}"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *got = mask1(t[i].in, t[i].path, KD_JMASK_DROP, NULL, NULL);
		if (strcmp(got, t[i].out))
			fail_msg("drop %s from %s: got %s, want %s", t[i].path, t[i].in, got,
			         t[i].out);
		assert_true(kd_json_valid((const uint8_t *)got, strlen(got)));
	}
}

static void test_json_invalid(void **state)
{
	(void)state;
	const char *bad[] = {"",         "not json",    "{\"a\":}", "{\"a\":1,}", "[1 2]",
	                     "\"\x01\"", "{\"a\":1} x", "01",       "1.",         "{\"a\" 1}",
	                     "\"\\x\"",  "[",           "tru",      "-"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int n;
		assert_string_equal(mask1(bad[i], "a", KD_JMASK_REPLACE, "0", &n), "ERR");
		assert_int_equal(n, KD_EMALFORMED);
		assert_false(kd_json_valid((const uint8_t *)bad[i], strlen(bad[i])));
	}
	/* Too deep: a limit, not a crash. */
	char deep[200];
	memset(deep, '[', 100);
	memset(deep + 100, ']', 100);
	int n;
	struct kd_jpath jp;
	char err[128];
	assert_int_equal(kd_jpath_parse(&jp, "a", 1, err, sizeof(err)), 0);
	struct kd_jmask m = {.path = &jp, .op = KD_JMASK_DROP};
	struct kd_wbuf out = {0};
	n = kd_json_mask((const uint8_t *)deep, sizeof(deep), &m, 1, NULL, &out);
	assert_int_equal(n, KD_ELIMIT);
	assert_int_equal(out.len, 0);
	kd_wbuf_free(&out);
	/* Paths. */
	const char *badpath[] = {"", "$", "a..b", "a.", "a[", "a[x]", "a[1", "a]b"};
	for (size_t i = 0; i < sizeof(badpath) / sizeof(badpath[0]); i++)
		assert_int_equal(
		    kd_jpath_parse(&jp, badpath[i], strlen(badpath[i]), err, sizeof(err)), -1);
}

/* ---- records ---- */

struct edit_arg {
	const char *add_key, *add_value;
	const char *remove;
	int mask; /* mask "secret" in the value */
	int fail_non_json;
};

static int edit(void *arg, const struct kd_batch *b, const struct kd_record *rec,
                struct kd_rec_edit *ed, struct kd_arena *a, char *err, size_t errlen)
{
	(void)b;
	struct edit_arg *ea = arg;
	int changed = 0;
	struct kd_header *h = kd_arena_alloc(a, (ed->nheaders + 1) * sizeof(*h));
	uint32_t n = 0;
	for (uint32_t i = 0; i < ed->nheaders; i++) {
		if (ea->remove && ed->headers[i].key.len == strlen(ea->remove) &&
		    !memcmp(ed->headers[i].key.p, ea->remove, strlen(ea->remove))) {
			changed = 1;
			continue;
		}
		h[n++] = ed->headers[i];
	}
	if (ea->add_key) {
		h[n++] = (struct kd_header){V(ea->add_key), V(ea->add_value)};
		changed = 1;
	}
	ed->headers = h;
	ed->nheaders = n;
	if (ea->mask && !rec->value.null) {
		struct kd_jpath jp;
		kd_jpath_parse(&jp, "secret", 6, NULL, 0);
		struct kd_jmask m = {
		    .path = &jp, .op = KD_JMASK_REPLACE, .with = "\"***\"", .with_len = 5};
		struct kd_wbuf w = {0};
		int rc = kd_json_mask(rec->value.p, rec->value.len, &m, 1, NULL, &w);
		if (rc < 0 && ea->fail_non_json) {
			kd_wbuf_free(&w);
			kd_errf(err, errlen, "not JSON");
			return KD_EMALFORMED;
		}
		if (rc > 0) {
			uint8_t *v = kd_arena_dup(a, w.p, w.len);
			ed->value = (struct kd_view){v, (uint32_t)w.len, 0};
			changed = 1;
		}
		kd_wbuf_free(&w);
	}
	return changed;
}

static void build(struct kd_wbuf *w, int codec, int64_t base_offset, int32_t base_seq)
{
	static const struct kd_header hs[2] = {
	    {{(const uint8_t *)"trace", 5, 0}, {(const uint8_t *)"t1", 2, 0}},
	    {{(const uint8_t *)"authorization", 13, 0}, {(const uint8_t *)"secret!", 7, 0}}};
	struct kd_wrecord r[3] = {
	    {.timestamp = 1000,
	     .key = V("k0"),
	     .value = V("{\"secret\":\"pw\",\"n\":1}"),
	     .headers = hs,
	     .header_count = 2},
	    {.timestamp = 990, .key = V("k1"), .value = V("{\"n\":2}")},
	    {.timestamp = 1005,
	     .key = {NULL, 0, 1},
	     .value = {NULL, 0, 1},
	     .headers = hs,
	     .header_count = 1},
	};
	struct kd_batch_spec spec = {.magic = 2,
	                             .codec = (uint8_t)codec,
	                             .base_offset = base_offset,
	                             .partition_leader_epoch = 7,
	                             .producer_id = 4242,
	                             .producer_epoch = 3,
	                             .base_sequence = base_seq,
	                             .transactional = 1};
	assert_int_equal(kd_batch_write(w, &spec, r, 3), KD_OK);
}

static void test_rewrite_codecs(void **state)
{
	(void)state;
	static const int codecs[] = {KD_CODEC_NONE, KD_CODEC_GZIP, KD_CODEC_SNAPPY, KD_CODEC_LZ4,
	                             KD_CODEC_ZSTD};
	struct kd_recedit rwe = {0}; /* reused from codec to codec */
	for (size_t c = 0; c < 5; c++) {
		if (!kd_codec_available(codecs[c]))
			continue;
		struct kd_wbuf in = {0}, out = {0};
		build(&in, codecs[c], 100, 17);
		build(&in, codecs[c], 103, 20);
		struct edit_arg ea = {
		    .add_key = "x-kwire", .add_value = "v", .remove = "authorization", .mask = 1};
		struct kd_recedit_stats st;
		char err[256] = "";
		assert_int_equal(kd_rec_rewrite(&rwe, in.p, in.len, NULL, edit, &ea, &out, &st, err,
		                                sizeof(err)),
		                 KD_OK);
		assert_int_equal(st.batches, 2);
		assert_int_equal(st.rewritten, 2);
		/* Read back: CRC checked by the iterator, header fields kept. */
		struct kd_rec_iter it, it0;
		struct kd_batch *b, *b0;
		kd_rec_iter_init(&it, out.p, out.len, NULL);
		kd_rec_iter_init(&it0, in.p, in.len, NULL);
		int nb = 0;
		while (kd_rec_next_batch(&it, &b) == 1) {
			assert_int_equal(kd_rec_next_batch(&it0, &b0), 1);
			assert_true(b->crc_ok);
			assert_int_equal(b->codec, codecs[c]);
			assert_int_equal(b->base_offset, b0->base_offset);
			assert_int_equal(b->producer_id, 4242);
			assert_int_equal(b->producer_epoch, 3);
			assert_int_equal(b->base_sequence, b0->base_sequence);
			assert_int_equal(b->record_count, 3);
			assert_int_equal(b->last_offset_delta, b0->last_offset_delta);
			assert_int_equal(b->base_timestamp, b0->base_timestamp);
			assert_int_equal(b->max_timestamp, b0->max_timestamp);
			assert_int_equal(b->partition_leader_epoch, 7);
			assert_true(b->transactional);
			struct kd_record rec;
			int i = 0;
			while (kd_rec_next_record(&it, &rec) == 1) {
				struct kd_rec_hdr_iter hi;
				struct kd_header h;
				int saw_auth = 0, saw_add = 0;
				kd_rec_headers_init(&hi, &rec);
				while (kd_rec_next_header(&hi, &h) == 1) {
					saw_auth |= h.key.len == 13;
					saw_add |= h.key.len == 7 && !memcmp(h.key.p, "x-kwire", 7);
				}
				assert_false(saw_auth);
				assert_true(saw_add);
				if (i == 0)
					assert_memory_equal(rec.value.p,
					                    "{\"secret\":\"***\",\"n\":1}",
					                    rec.value.len);
				if (i == 2)
					assert_true(rec.value.null && rec.key.null);
				assert_int_equal(rec.timestamp, i == 0   ? 1000
				                                : i == 1 ? 990
				                                         : 1005);
				i++;
			}
			assert_int_equal(i, 3);
			nb++;
		}
		assert_int_equal(nb, 2);
		kd_rec_iter_free(&it);
		kd_rec_iter_free(&it0);
		kd_wbuf_free(&in);
		kd_wbuf_free(&out);
	}
	kd_recedit_free(&rwe);
}

static void test_rewrite_unchanged_and_errors(void **state)
{
	(void)state;
	struct kd_wbuf in = {0}, out = {0};
	struct kd_recedit rwe = {0};
	build(&in, KD_CODEC_NONE, 0, 0);
	struct edit_arg none = {0};
	struct kd_recedit_stats st;
	char err[256] = "";
	/* Nothing to change: byte for byte the input. */
	assert_int_equal(
	    kd_rec_rewrite(&rwe, in.p, in.len, NULL, edit, &none, &out, &st, err, sizeof(err)),
	    KD_OK);
	assert_int_equal(st.rewritten, 0);
	assert_int_equal(out.len, in.len);
	assert_memory_equal(out.p, in.p, in.len);
	/* A partial last batch is left out. */
	out.len = 0;
	assert_int_equal(
	    kd_rec_rewrite(&rwe, in.p, in.len - 5, NULL, edit, &none, &out, &st, err, sizeof(err)),
	    KD_OK);
	assert_true(st.tail_dropped);
	assert_int_equal(out.len, 0);
	/* A callback error: nothing written. */
	struct kd_wbuf bad = {0};
	struct kd_wrecord r = {.timestamp = 1, .value = V("not json")};
	struct kd_batch_spec spec = {
	    .magic = 2, .producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
	assert_int_equal(kd_batch_write(&bad, &spec, &r, 1), KD_OK);
	struct edit_arg strict = {.mask = 1, .fail_non_json = 1};
	out.len = 0;
	assert_int_equal(
	    kd_rec_rewrite(&rwe, bad.p, bad.len, NULL, edit, &strict, &out, &st, err, sizeof(err)),
	    KD_EMALFORMED);
	assert_int_equal(out.len, 0);
	/* A CRC error. */
	bad.p[bad.len - 1] ^= 1;
	assert_int_equal(
	    kd_rec_rewrite(&rwe, bad.p, bad.len, NULL, edit, &none, &out, &st, err, sizeof(err)),
	    KD_ECRC);
	/* Legacy: refused with a clear message. */
	struct kd_wbuf leg = {0};
	struct kd_batch_spec lspec = {.magic = 1};
	assert_int_equal(kd_batch_write(&leg, &lspec, &r, 1), KD_OK);
	assert_int_equal(
	    kd_rec_rewrite(&rwe, leg.p, leg.len, NULL, edit, &none, &out, &st, err, sizeof(err)),
	    KD_EUNSUPPORTED);
	assert_non_null(strstr(err, "legacy message format (magic 1)"));
	kd_recedit_free(&rwe);
	kd_wbuf_free(&leg);
	kd_wbuf_free(&bad);
	kd_wbuf_free(&in);
	kd_wbuf_free(&out);
}

/* ---- splicing against the general path ---- */

static uint64_t rnd_state;

static uint32_t rnd(uint32_t n)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return n ? (uint32_t)(rnd_state % n) : 0;
}

/* A length that often sits on a varint boundary (63/64, 8191/8192 zigzagged). */
static uint32_t rnd_len(uint32_t max)
{
	static const uint32_t edges[] = {0, 1, 63, 64, 65, 127, 128, 8191, 8192};
	uint32_t n = rnd(3) ? rnd(max) : edges[rnd(sizeof(edges) / sizeof(edges[0]))];
	return n > max ? max : n;
}

static struct kd_view rnd_blob(uint8_t *pool, uint32_t max, int nullable)
{
	if (nullable && !rnd(8))
		return (struct kd_view){NULL, 0, 1};
	uint32_t n = rnd_len(max);
	for (uint32_t i = 0; i < n; i++)
		pool[i] = (uint8_t)rnd(256);
	return (struct kd_view){pool, n, 0};
}

/* What the edit callback of the splice test does: headers only. */
struct hedit {
	struct kd_header add[3];
	unsigned nadd;
	struct kd_view remove; /* len 0: none */
};

static int hedit_fn(void *arg, const struct kd_batch *b, const struct kd_record *rec,
                    struct kd_rec_edit *ed, struct kd_arena *a, char *err, size_t errlen)
{
	(void)b;
	(void)rec;
	(void)err;
	(void)errlen;
	struct hedit *he = arg;
	struct kd_header *h = kd_arena_alloc(a, (ed->nheaders + he->nadd + 1) * sizeof(*h));
	uint32_t n = 0;
	int changed = 0;
	for (uint32_t i = 0; i < ed->nheaders; i++) {
		if (he->remove.len && ed->headers[i].key.len == he->remove.len &&
		    !memcmp(ed->headers[i].key.p, he->remove.p, he->remove.len)) {
			changed = 1;
			continue;
		}
		h[n++] = ed->headers[i];
	}
	for (unsigned k = 0; k < he->nadd; k++, changed = 1)
		h[n++] = he->add[k];
	ed->headers = h;
	ed->nheaders = n;
	return changed;
}

/* Every batch of out has the CRC-32C it says, computed here with the table
 * implementation (the writer uses the SSE4.2 one where the CPU has it). */
static void check_crcs_sw(const struct kd_wbuf *out)
{
	size_t at = 0;
	while (at < out->len) {
		assert_true(out->len - at >= 61);
		uint32_t len = (uint32_t)kd_load_be(out->p + at + 8, 4);
		assert_true(at + 12 + len <= out->len);
		assert_int_equal(out->p[at + 16], 2);
		uint32_t crc = (uint32_t)kd_load_be(out->p + at + 17, 4);
		assert_int_equal(crc, kd_crc32c_sw(0, out->p + at + 21, 12 + len - 21));
		at += 12 + len;
	}
}

static void test_splice_matches_general(void **state)
{
	(void)state;
	static const int codecs[] = {KD_CODEC_NONE, KD_CODEC_GZIP, KD_CODEC_SNAPPY, KD_CODEC_LZ4,
	                             KD_CODEC_ZSTD};
	static uint8_t pool[64][9000];
	struct kd_recedit fast = {0}, slow = {0};
	rnd_state = 0x9e3779b97f4a7c15ull;
	unsigned spliced = 0;
	for (size_t c = 0; c < 5; c++) {
		if (!kd_codec_available(codecs[c]))
			continue;
		for (int iter = 0; iter < 60; iter++) {
			struct kd_wbuf in = {0}, a = {0}, b = {0};
			struct kd_header hs[40][4];
			struct kd_wrecord r[40];
			unsigned used = 0, total = 0;
			memset(hs, 0, sizeof(hs));
			int nulls = !rnd(4); /* some batches hold a null value: not spliced */
			/* Two batches, so that the second's header is patched at an offset. */
			for (int nb = 0; nb < 2; nb++) {
				uint32_t n = rnd(40);
				int32_t od = 0;
				total += n;
				for (uint32_t i = 0; i < n; i++) {
					unsigned nh = rnd(4);
					for (unsigned h = 0; h < nh; h++) {
						hs[i][h].key = rnd_blob(pool[used++ % 64], 70, 0);
						hs[i][h].value =
						    rnd_blob(pool[used++ % 64], 200, 1);
					}
					od += 1 + (int32_t)rnd(3);
					r[i] = (struct kd_wrecord){
					    .timestamp =
					        1700000000000LL + (int64_t)rnd(2000000) - 1000000,
					    .offset_delta = od,
					    .key = rnd_blob(pool[used++ % 64], 100, 1),
					    .value = rnd_blob(pool[used++ % 64], 9000, nulls),
					    .headers = hs[i],
					    .header_count = nh};
					if (!nulls && r[i].value.null)
						r[i].value.null = 0;
				}
				struct kd_batch_spec spec = {
				    .magic = 2,
				    .codec = (uint8_t)codecs[c],
				    .explicit_offsets = 1,
				    .base_offset = 1000 * nb + (int64_t)rnd(100000),
				    .partition_leader_epoch = (int32_t)rnd(10),
				    .producer_id = rnd(2) ? -1 : (int64_t)rnd(1u << 30),
				    .producer_epoch = (int16_t)rnd(5),
				    .base_sequence = (int32_t)rnd(1u << 30),
				    .transactional = (uint8_t)rnd(2),
				    .timestamp_type = (uint8_t)rnd(2),
				    .log_append_time = 1700000005000LL};
				assert_int_equal(kd_batch_write(&in, &spec, r, n), KD_OK);
			}
			struct hedit he = {.nadd = rnd(4)};
			for (unsigned k = 0; k < he.nadd; k++) {
				he.add[k].key = rnd_blob(pool[used++ % 64], 200, 0);
				he.add[k].value = rnd_blob(pool[used++ % 64], 9000, 1);
			}
			if (rnd(2) && hs[0][0].key.len)
				he.remove = hs[0][0].key;
			struct kd_recedit_stats sa, sb;
			char err[256] = "";
			slow.no_splice = 1;
			assert_int_equal(kd_rec_rewrite(&fast, in.p, in.len, NULL, hedit_fn, &he,
			                                &a, &sa, err, sizeof(err)),
			                 KD_OK);
			assert_int_equal(kd_rec_rewrite(&slow, in.p, in.len, NULL, hedit_fn, &he,
			                                &b, &sb, err, sizeof(err)),
			                 KD_OK);
			assert_int_equal(sb.spliced, 0);
			assert_int_equal(sa.rewritten, sb.rewritten);
			if (nulls)
				assert_true(sa.spliced <= sa.rewritten);
			else
				assert_int_equal(sa.spliced, sa.rewritten);
			spliced += sa.spliced;
			/* Byte for byte the general path's output, every codec. */
			assert_int_equal(a.len, b.len);
			assert_memory_equal(a.p, b.p, a.len);
			check_crcs_sw(&a);
			/* And it decodes to the edited records. */
			struct kd_rec_iter it;
			struct kd_batch *bt;
			kd_rec_iter_init(&it, a.p, a.len, NULL);
			int got = 0;
			while (kd_rec_next_batch(&it, &bt) == 1) {
				struct kd_record rec;
				assert_true(bt->crc_ok);
				assert_int_equal(bt->codec, codecs[c]);
				while (kd_rec_next_record(&it, &rec) == 1)
					got++;
			}
			kd_rec_iter_free(&it);
			assert_int_equal(got, (int)total);
			kd_wbuf_free(&in);
			kd_wbuf_free(&a);
			kd_wbuf_free(&b);
		}
	}
	assert_true(spliced > 100);
	kd_recedit_free(&fast);
	kd_recedit_free(&slow);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_json_replace),
	    cmocka_unit_test(test_json_hash),
	    cmocka_unit_test(test_json_drop),
	    cmocka_unit_test(test_json_invalid),
	    cmocka_unit_test(test_rewrite_codecs),
	    cmocka_unit_test(test_rewrite_unchanged_and_errors),
	    cmocka_unit_test(test_splice_matches_general),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
