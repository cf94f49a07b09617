/* test_records.c: the record-batch iterator and writer (kd-records.h). */
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
#include "kd-records.h"

#define V(s) ((struct kd_view){(const uint8_t *)(s), (uint32_t)strlen(s), 0})
#define VNULL ((struct kd_view){NULL, 0, 1})

static const int all_codecs[] = {KD_CODEC_NONE, KD_CODEC_GZIP, KD_CODEC_SNAPPY, KD_CODEC_LZ4,
                                 KD_CODEC_ZSTD};

static int view_eq(struct kd_view a, struct kd_view b)
{
	if (a.null || b.null)
		return a.null == b.null;
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static void store_be(uint8_t *p, unsigned n, uint64_t v)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

/* Recomputes the CRC-32C of the v2 batch at b. */
static void fix_crc(uint8_t *b, size_t len)
{
	store_be(b + 17, 4, kd_crc32c(0, b + 21, len - 21));
}

/* A test set of records: null key, null value, empty value, headers with a
 * null value, binary bytes, growing timestamps. */
static const struct kd_header hdrs0[] = {
    {{(const uint8_t *)"trace", 5, 0}, {(const uint8_t *)"abc", 3, 0}},
    {{(const uint8_t *)"n", 1, 0}, {NULL, 0, 1}}};
static uint8_t bigval[3000];

static void make_records(struct kd_wrecord *r, uint32_t n)
{
	for (size_t i = 0; i < sizeof(bigval); i++)
		bigval[i] = (uint8_t)(i * 7);
	memset(r, 0, sizeof(*r) * n);
	for (uint32_t i = 0; i < n; i++) {
		r[i].timestamp = 1700000000000LL + i * 3;
		r[i].key = V("key");
		r[i].value = V("value");
	}
	r[0].key = VNULL;
	if (n > 1)
		r[1].value = VNULL;
	if (n > 2)
		r[2].value = V("");
	if (n > 3) {
		r[3].headers = hdrs0;
		r[3].header_count = 2;
	}
	if (n > 4)
		r[4].value = (struct kd_view){bigval, sizeof(bigval), 0};
}

/* Iterates blob expecting exactly one batch holding recs; checks every field. */
static void check_roundtrip(const uint8_t *p, size_t len, const struct kd_batch_spec *spec,
                            const struct kd_wrecord *recs, uint32_t n)
{
	struct kd_rec_iter it;
	struct kd_batch *b;
	struct kd_record rec;
	kd_rec_iter_init(&it, p, len, NULL);
	int rc = kd_rec_next_batch(&it, &b);
	if (rc != 1)
		fail_msg("magic %d codec %d: next_batch %d: %s", spec->magic, spec->codec, rc,
		         it.err);
	assert_int_equal(b->magic, spec->magic);
	assert_int_equal(b->codec, spec->codec);
	assert_true(b->crc_ok);
	assert_int_equal(b->record_count, n);
	assert_int_equal(b->base_offset, spec->base_offset);
	assert_int_equal(b->raw.len, len);
	if (spec->magic == 2) {
		assert_int_equal(b->producer_id, spec->producer_id);
		assert_int_equal(b->producer_epoch, spec->producer_epoch);
		assert_int_equal(b->base_sequence, spec->base_sequence);
		assert_int_equal(b->partition_leader_epoch, spec->partition_leader_epoch);
		assert_int_equal(b->last_offset_delta, n - 1);
		assert_int_equal(b->base_timestamp, recs[0].timestamp);
		assert_int_equal(b->max_timestamp, recs[n - 1].timestamp);
	}
	for (uint32_t i = 0; i < n; i++) {
		rc = kd_rec_next_record(&it, &rec);
		if (rc != 1)
			fail_msg("magic %d codec %d record %u: %d %s", spec->magic, spec->codec, i,
			         rc, it.err);
		assert_int_equal(rec.offset, spec->base_offset + i);
		assert_int_equal(rec.timestamp, spec->magic == 0 ? -1 : recs[i].timestamp);
		assert_true(view_eq(rec.key, recs[i].key));
		assert_true(view_eq(rec.value, recs[i].value));
		if (spec->magic == 2) {
			assert_int_equal(rec.sequence, spec->base_sequence + (int32_t)i);
			assert_int_equal(rec.header_count, recs[i].header_count);
			struct kd_rec_hdr_iter hi;
			struct kd_header h;
			kd_rec_headers_init(&hi, &rec);
			for (uint32_t k = 0; k < recs[i].header_count; k++) {
				assert_int_equal(kd_rec_next_header(&hi, &h), 1);
				assert_true(view_eq(h.key, recs[i].headers[k].key));
				assert_true(view_eq(h.value, recs[i].headers[k].value));
			}
			assert_int_equal(kd_rec_next_header(&hi, &h), 0);
		} else {
			assert_int_equal(rec.sequence, -1);
			assert_int_equal(rec.header_count, 0);
		}
	}
	assert_int_equal(kd_rec_next_record(&it, &rec), 0);
	assert_int_equal(kd_rec_next_batch(&it, &b), 0);
	assert_int_equal(kd_rec_next_batch(&it, &b), 0);
	kd_rec_iter_free(&it);
}

static void test_roundtrip_all(void **state)
{
	struct kd_wrecord recs[40];
	make_records(recs, 40);
	for (int magic = 0; magic <= 2; magic++) {
		for (size_t c = 0; c < sizeof(all_codecs) / sizeof(all_codecs[0]); c++) {
			int codec = all_codecs[c];
			if (!kd_codec_available(codec))
				continue;
			for (int raw = 0; raw <= (codec == KD_CODEC_SNAPPY); raw++) {
				struct kd_batch_spec spec = {.magic = (int8_t)magic,
				                             .codec = (uint8_t)codec,
				                             .snappy_raw = (uint8_t)raw,
				                             .base_offset = 1000,
				                             .partition_leader_epoch = 9,
				                             .producer_id = 77,
				                             .producer_epoch = 2,
				                             .base_sequence = 10};
				struct kd_wbuf w = {0};
				int rc = kd_batch_write(&w, &spec, recs, 40);
				if (codec == KD_CODEC_ZSTD && magic < 2) {
					assert_int_equal(rc, KD_EUNSUPPORTED);
					assert_int_equal(w.len, 0);
					kd_wbuf_free(&w);
					continue;
				}
				assert_int_equal(rc, KD_OK);
				if (magic == 2 || codec != KD_CODEC_NONE) {
					check_roundtrip(w.p, w.len, &spec, recs, 40);
				} else {
					/* Uncompressed legacy: one entry (batch) per message. */
					struct kd_rec_iter it;
					struct kd_batch *b;
					struct kd_record rec;
					uint32_t i = 0;
					kd_rec_iter_init(&it, w.p, w.len, NULL);
					while ((rc = kd_rec_next_batch(&it, &b)) == 1) {
						assert_int_equal(b->record_count, 1);
						assert_int_equal(kd_rec_next_record(&it, &rec), 1);
						assert_int_equal(rec.offset, 1000 + i);
						assert_int_equal(rec.timestamp,
						                 magic ? recs[i].timestamp : -1);
						assert_true(view_eq(rec.key, recs[i].key));
						assert_true(view_eq(rec.value, recs[i].value));
						assert_int_equal(kd_rec_next_record(&it, &rec), 0);
						i++;
					}
					assert_int_equal(rc, 0);
					assert_int_equal(i, 40);
					kd_rec_iter_free(&it);
				}
				kd_wbuf_free(&w);
			}
		}
	}
}

/* A v2 batch built byte by byte from WIRE-NOTES.md section 7. */
/* clang-format off */
static const uint8_t golden_hdr[61] = {
	0, 0, 0, 0, 0, 0, 0, 100,		/*  0 baseOffset 100 */
	0, 0, 0, 70,				/*  8 batchLength = 82 - 12 */
	0, 0, 0, 5,				/* 12 partitionLeaderEpoch 5 */
	2,					/* 16 magic */
	0, 0, 0, 0,				/* 17 crc (filled in) */
	0x00, 0x10,				/* 21 attributes: transactional */
	0, 0, 0, 1,				/* 23 lastOffsetDelta 1 */
	0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, /* 27 baseTimestamp 1700000000000 */
	0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x05, /* 35 maxTimestamp +5 */
	0, 0, 0, 0, 0, 0, 0, 42,		/* 43 producerId 42 */
	0, 3,					/* 51 producerEpoch 3 */
	0, 0, 0, 7,				/* 53 baseSequence 7 */
	0, 0, 0, 2,				/* 57 recordsCount 2 */
};
static const uint8_t golden_recs[21] = {
	0x1a, /* length 13 (zig-zag 26) */
	0x00, 0x00, 0x00, /* attributes, timestampDelta 0, offsetDelta 0 */
	0x02, 'k',	  /* key len 1 */
	0x04, 'v', '0',	  /* value len 2 */
	0x02,		  /* 1 header */
	0x02, 'h', 0x02, 'x',
	0x0c,		  /* length 6 */
	0x00, 0x0a, 0x02, /* attributes, timestampDelta 5, offsetDelta 1 */
	0x01,		  /* key null (-1) */
	0x00,		  /* value empty */
	0x00,		  /* no headers */
};
/* clang-format on */

static void golden_batch(uint8_t out[82])
{
	memcpy(out, golden_hdr, 61);
	memcpy(out + 61, golden_recs, 21);
	fix_crc(out, 82);
}

static void test_golden_v2(void **state)
{
	uint8_t g[82];
	struct kd_rec_iter it;
	struct kd_batch *b;
	struct kd_record rec;
	struct kd_header h;
	struct kd_rec_hdr_iter hi;

	golden_batch(g);
	kd_rec_iter_init(&it, g, sizeof(g), NULL);
	assert_int_equal(kd_rec_next_batch(&it, &b), 1);
	assert_int_equal(b->pos, 0);
	assert_int_equal(b->base_offset, 100);
	assert_int_equal(b->batch_length, 70);
	assert_int_equal(b->partition_leader_epoch, 5);
	assert_int_equal(b->magic, 2);
	assert_int_equal(b->crc, kd_load_be(g + 17, 4));
	assert_true(b->crc_ok);
	assert_int_equal(b->attributes, 0x10);
	assert_int_equal(b->codec, 0);
	assert_int_equal(b->timestamp_type, 0);
	assert_int_equal(b->transactional, 1);
	assert_int_equal(b->control, 0);
	assert_int_equal(b->delete_horizon, 0);
	assert_int_equal(b->last_offset_delta, 1);
	assert_int_equal(b->base_timestamp, 1700000000000LL);
	assert_int_equal(b->max_timestamp, 1700000000005LL);
	assert_int_equal(b->producer_id, 42);
	assert_int_equal(b->producer_epoch, 3);
	assert_int_equal(b->base_sequence, 7);
	assert_int_equal(b->record_count, 2);
	assert_int_equal(b->control_type, KD_CTRL_NONE);
	assert_ptr_equal(b->raw.p, g);
	assert_int_equal(b->raw.len, 82);
	assert_ptr_equal(b->records.p, g + 61); /* uncompressed: a view, no copy */
	assert_int_equal(b->records.len, 21);

	assert_int_equal(kd_rec_next_record(&it, &rec), 1);
	assert_int_equal(rec.offset, 100);
	assert_int_equal(rec.timestamp, 1700000000000LL);
	assert_int_equal(rec.sequence, 7);
	assert_int_equal(rec.magic, 2);
	assert_ptr_equal(rec.key.p, g + 61 + 5);
	assert_true(view_eq(rec.key, V("k")));
	assert_true(view_eq(rec.value, V("v0")));
	assert_ptr_equal(rec.raw.p, g + 61);
	assert_int_equal(rec.raw.len, 14);
	assert_int_equal(rec.header_count, 1);
	kd_rec_headers_init(&hi, &rec);
	assert_int_equal(kd_rec_next_header(&hi, &h), 1);
	assert_true(view_eq(h.key, V("h")));
	assert_true(view_eq(h.value, V("x")));
	assert_int_equal(kd_rec_next_header(&hi, &h), 0);

	assert_int_equal(kd_rec_next_record(&it, &rec), 1);
	assert_int_equal(rec.offset, 101);
	assert_int_equal(rec.offset_delta, 1);
	assert_int_equal(rec.timestamp, 1700000000005LL);
	assert_int_equal(rec.timestamp_delta, 5);
	assert_int_equal(rec.sequence, 8);
	assert_true(rec.key.null);
	assert_false(rec.value.null);
	assert_int_equal(rec.value.len, 0);
	assert_int_equal(rec.header_count, 0);
	assert_int_equal(kd_rec_next_record(&it, &rec), 0);
	assert_int_equal(kd_rec_next_batch(&it, &b), 0);
	kd_rec_iter_free(&it);

	/* The writer produces exactly these bytes. */
	const struct kd_header hx = {V("h"), V("x")};
	struct kd_wrecord recs[2] = {
	    {.timestamp = 1700000000000LL,
	     .key = V("k"),
	     .value = V("v0"),
	     .headers = &hx,
	     .header_count = 1},
	    {.timestamp = 1700000000005LL, .key = VNULL, .value = V("")},
	};
	struct kd_batch_spec spec = {.magic = 2,
	                             .transactional = 1,
	                             .base_offset = 100,
	                             .partition_leader_epoch = 5,
	                             .producer_id = 42,
	                             .producer_epoch = 3,
	                             .base_sequence = 7};
	struct kd_wbuf w = {0};
	assert_int_equal(kd_batch_write(&w, &spec, recs, 2), KD_OK);
	assert_int_equal(w.len, 82);
	assert_memory_equal(w.p, g, 82);
	kd_wbuf_free(&w);
}

static void test_control_batches(void **state)
{
	struct kd_wbuf w = {0};
	struct kd_wrecord recs[3];
	make_records(recs, 3);
	struct kd_batch_spec spec = {.magic = 2,
	                             .transactional = 1,
	                             .base_offset = 50,
	                             .producer_id = 9000,
	                             .producer_epoch = 4,
	                             .base_sequence = 0};
	assert_int_equal(kd_batch_write(&w, &spec, recs, 3), KD_OK);
	spec.base_offset = 53;
	assert_int_equal(kd_batch_write_marker(&w, &spec, KD_CTRL_COMMIT, 17, 1700000000999LL),
	                 KD_OK);
	spec.base_offset = 54;
	assert_int_equal(kd_batch_write_marker(&w, &spec, KD_CTRL_ABORT, -1, 1700000001000LL),
	                 KD_OK);

	struct kd_rec_iter it;
	struct kd_batch *b;
	struct kd_record rec;
	kd_rec_iter_init(&it, w.p, w.len, NULL);
	assert_int_equal(kd_rec_next_batch(&it, &b), 1);
	assert_true(b->transactional);
	assert_false(b->control);
	assert_int_equal(b->control_type, KD_CTRL_NONE);
	assert_int_equal(b->producer_id, 9000);

	assert_int_equal(kd_rec_next_batch(&it, &b), 1);
	assert_true(b->transactional);
	assert_true(b->control);
	assert_int_equal(b->attributes, 0x30);
	assert_int_equal(b->control_type, KD_CTRL_COMMIT);
	assert_string_equal(kd_control_type_name(b->control_type), "COMMIT");
	assert_int_equal(b->coordinator_epoch, 17);
	assert_int_equal(b->producer_id, 9000);
	assert_int_equal(b->producer_epoch, 4);
	assert_int_equal(b->record_count, 1);
	assert_int_equal(kd_rec_next_record(&it, &rec), 1);
	assert_int_equal(rec.offset, 53);
	assert_int_equal(rec.key.len, 4);
	assert_memory_equal(rec.key.p, "\0\0\0\1", 4);
	assert_int_equal(rec.value.len, 6);
	assert_int_equal(kd_rec_next_record(&it, &rec), 0);

	assert_int_equal(kd_rec_next_batch(&it, &b), 1);
	assert_int_equal(b->control_type, KD_CTRL_ABORT);
	assert_int_equal(b->coordinator_epoch, -1);
	assert_int_equal(b->base_offset, 54);
	assert_int_equal(kd_rec_next_batch(&it, &b), 0);
	kd_rec_iter_free(&it);
	kd_wbuf_free(&w);
}

/* Three batches of different kinds, cut at every byte: the complete ones
 * decode, the cut one is KD_REC_TRUNCATED, never an error. */
static void test_truncated_every_cut(void **state)
{
	struct kd_wbuf w = {0};
	struct kd_wrecord recs[6];
	make_records(recs, 6);
	size_t ends[3];
	struct kd_batch_spec s1 = {.magic = 2,
	                           .codec = KD_CODEC_GZIP,
	                           .base_offset = 0,
	                           .producer_id = -1,
	                           .producer_epoch = -1,
	                           .base_sequence = -1};
	assert_int_equal(kd_batch_write(&w, &s1, recs, 6), KD_OK);
	ends[0] = w.len;
	struct kd_batch_spec s2 = s1;
	s2.codec = KD_CODEC_NONE;
	s2.base_offset = 6;
	assert_int_equal(kd_batch_write(&w, &s2, recs, 4), KD_OK);
	ends[1] = w.len;
	struct kd_batch_spec s3 = {.magic = 1, .codec = KD_CODEC_GZIP, .base_offset = 10};
	assert_int_equal(kd_batch_write(&w, &s3, recs, 3), KD_OK);
	ends[2] = w.len;

	for (size_t cut = 0; cut <= w.len; cut++) {
		uint8_t *p = malloc(cut ? cut : 1); /* exact size: ASan sees any overread */
		memcpy(p, w.p, cut);
		struct kd_rec_iter it;
		struct kd_batch *b;
		struct kd_record rec;
		int rc, nb = 0, nr = 0;
		kd_rec_iter_init(&it, p, cut, NULL);
		while ((rc = kd_rec_next_batch(&it, &b)) == 1) {
			nb++;
			while ((rc = kd_rec_next_record(&it, &rec)) == 1)
				nr++;
			assert_int_equal(rc, 0);
		}
		int whole = (cut >= ends[0]) + (cut >= ends[1]) + (cut >= ends[2]);
		assert_int_equal(nb, whole);
		assert_int_equal(nr, (cut >= ends[0]) * 6 + (cut >= ends[1]) * 4 +
		                         (cut >= ends[2]) * 3);
		int at_boundary = cut == 0 || cut == ends[0] || cut == ends[1] || cut == ends[2];
		assert_int_equal(rc, at_boundary ? 0 : KD_REC_TRUNCATED);
		assert_int_equal(kd_rec_next_batch(&it, &b), 0);
		kd_rec_iter_free(&it);
		free(p);
	}
	kd_wbuf_free(&w);
}

/* Iterates a blob, returning the sequence of results (batches and records)
 * as a string like "B1 R1 R1 R0 B-6 B1 ... B0" for compact assertions. */
static void trace(const uint8_t *p, size_t len, const struct kd_rec_limits *lim, char *out,
                  size_t outlen, char *lasterr, size_t errlen)
{
	struct kd_rec_iter it;
	struct kd_batch *b;
	struct kd_record rec;
	size_t o = 0;
	int rc;
	kd_rec_iter_init(&it, p, len, lim);
	out[0] = 0;
	if (lasterr)
		lasterr[0] = 0;
	for (int guard = 0; guard < 100; guard++) {
		rc = kd_rec_next_batch(&it, &b);
		o += (size_t)snprintf(out + o, outlen - o, "B%d ", rc);
		if (rc < 0 && lasterr)
			snprintf(lasterr, errlen, "%s", it.err);
		if (rc == 0 || rc == KD_REC_TRUNCATED)
			break;
		if (rc < 0)
			continue;
		do {
			rc = kd_rec_next_record(&it, &rec);
			o += (size_t)snprintf(out + o, outlen - o, "R%d ", rc);
			if (rc < 0 && lasterr)
				snprintf(lasterr, errlen, "%s", it.err);
		} while (rc == 1);
	}
	if (o)
		out[o - 1] = 0;
	kd_rec_iter_free(&it);
}

/* golden batch with its records region replaced; count and CRC patched. */
static void build_raw(struct kd_wbuf *w, const uint8_t *recs, size_t n, int32_t count, int16_t attr)
{
	size_t start = w->len;
	kd_w_raw(w, golden_hdr, 61);
	kd_w_raw(w, recs, n);
	store_be(w->p + start + 8, 4, 49 + n);
	store_be(w->p + start + 21, 2, (uint16_t)attr);
	store_be(w->p + start + 57, 4, (uint32_t)count);
	fix_crc(w->p + start, 61 + n);
}

static void test_hostile(void **state)
{
	uint8_t g[82];
	char tr[512], err[200];
	struct kd_wbuf w = {0};
	golden_batch(g);

	/* Wrong CRC: an error with a message, then the next batch is fine. */
	kd_w_raw(&w, g, 82);
	w.p[69] ^= 1; /* a value byte */
	kd_w_raw(&w, g, 82);
	trace(w.p, w.len, NULL, tr, sizeof(tr), err, sizeof(err));
	assert_string_equal(tr, "B-6 B1 R1 R1 R0 B0");
	assert_non_null(strstr(err, "batch at offset 100: CRC-32C mismatch (stored 0x"));
	struct kd_rec_limits ign = {.flags = KD_REC_IGNORE_CRC};
	trace(w.p, w.len, &ign, tr, sizeof(tr), NULL, 0);
	assert_string_equal(tr, "B1 R1 R1 R0 B1 R1 R1 R0 B0");
	{
		struct kd_rec_iter it;
		struct kd_batch *b;
		kd_rec_iter_init(&it, w.p, w.len, &ign);
		assert_int_equal(kd_rec_next_batch(&it, &b), 1);
		assert_false(b->crc_ok);
		assert_int_not_equal(b->crc, b->crc_computed);
		kd_rec_iter_free(&it);
	}
	/* The leader epoch is outside the CRC. */
	w.len = 0;
	kd_w_raw(&w, g, 82);
	w.p[13] ^= 0x7f;
	trace(w.p, w.len, NULL, tr, sizeof(tr), NULL, 0);
	assert_string_equal(tr, "B1 R1 R1 R0 B0");

	/* recordsCount larger than the records: the third record is missing. */
	w.len = 0;
	build_raw(&w, golden_recs, 21, 3, 0);
	trace(w.p, w.len, NULL, tr, sizeof(tr), err, sizeof(err));
	assert_string_equal(tr, "B1 R1 R1 R-3 B0");
	assert_non_null(strstr(err, "record 2 of 3"));
	/* ... far larger: refused before any loop. */
	w.len = 0;
	build_raw(&w, golden_recs, 21, 1000000, 0);
	trace(w.p, w.len, NULL, tr, sizeof(tr), err, sizeof(err));
	assert_string_equal(tr, "B-3 B0");
	assert_non_null(strstr(err, "recordsCount 1000000"));
	/* ... over the configured limit. */
	struct kd_rec_limits lim = {.max_records = 1};
	w.len = 0;
	build_raw(&w, golden_recs, 21, 2, 0);
	trace(w.p, w.len, &lim, tr, sizeof(tr), NULL, 0);
	assert_string_equal(tr, "B-4 B0");
	/* Negative count. */
	w.len = 0;
	build_raw(&w, golden_recs, 21, -1, 0);
	trace(w.p, w.len, NULL, tr, sizeof(tr), NULL, 0);
	assert_string_equal(tr, "B-3 B0");
	/* Fewer records announced than present: leftover bytes. */
	w.len = 0;
	build_raw(&w, golden_recs, 21, 1, 0);
	trace(w.p, w.len, NULL, tr, sizeof(tr), err, sizeof(err));
	assert_string_equal(tr, "B1 R1 R-3 B0");
	assert_non_null(strstr(err, "left after the last"));

	/* Field-level damage inside record 0 (the CRC is fixed up each time). */
	struct {
		size_t at;
		uint8_t val;
	} pokes[] = {
	    {4, 0x7e},  /* key length 63: past the record */
	    {4, 0x03},  /* key length -2 */
	    {0, 0x7e},  /* record length 63: past the records */
	    {0, 0x01},  /* record length -1 */
	    {0, 0x18},  /* record length 12: the fields take 13 */
	    {10, 0x01}, /* header key length -1 (must be >= 0) */
	    {12, 0x05}, /* header value length -3 */
	    {9, 0x7e},  /* header count 63 */
	    {9, 0x01},  /* header count -1 */
	};
	for (size_t i = 0; i < sizeof(pokes) / sizeof(pokes[0]); i++) {
		uint8_t r[21];
		memcpy(r, golden_recs, 21);
		r[pokes[i].at] = pokes[i].val;
		w.len = 0;
		build_raw(&w, r, 21, 2, 0);
		trace(w.p, w.len, NULL, tr, sizeof(tr), err, sizeof(err));
		if (strcmp(tr, "B1 R-3 B0") != 0)
			fail_msg("poke %zu: %s", i, tr);
		assert_non_null(strstr(err, "record 0 of 2"));
	}
	/* An over-long varint (6 bytes) as a record length. */
	{
		uint8_t r[27] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
		memcpy(r + 6, golden_recs, 21);
		w.len = 0;
		build_raw(&w, r, sizeof(r), 2, 0);
		trace(w.p, w.len, NULL, tr, sizeof(tr), NULL, 0);
		assert_string_equal(tr, "B1 R-3 B0");
	}

	/* Unknown codec 5, unknown magic 3: errors, iteration goes on. */
	w.len = 0;
	build_raw(&w, golden_recs, 21, 2, 5);
	kd_w_raw(&w, g, 82);
	w.p[82 + 16] = 3;
	kd_w_raw(&w, g, 82);
	trace(w.p, w.len, NULL, tr, sizeof(tr), err, sizeof(err));
	assert_string_equal(tr, "B-5 B-5 B1 R1 R1 R0 B0");
	assert_non_null(strstr(err, "magic 3"));

	/* batchLength below the v2 header: a bad batch, skipped. */
	w.len = 0;
	kd_w_raw(&w, g, 61);
	store_be(w.p + 8, 4, 40);
	w.len = 52;
	kd_w_raw(&w, g, 82);
	trace(w.p, w.len, NULL, tr, sizeof(tr), NULL, 0);
	assert_string_equal(tr, "B-3 B1 R1 R1 R0 B0");
	/* Size below any message: framing lost, nothing after it is read. */
	w.len = 0;
	kd_w_raw(&w, g, 82);
	store_be(w.p + 8, 4, 13);
	kd_w_raw(&w, g, 82);
	trace(w.p, w.len, NULL, tr, sizeof(tr), err, sizeof(err));
	assert_string_equal(tr, "B-3 B0");
	/* Negative size likewise. */
	store_be(w.p + 8, 4, 0xffffffffu);
	trace(w.p, w.len, NULL, tr, sizeof(tr), NULL, 0);
	assert_string_equal(tr, "B-3 B0");
	/* A huge size is a partial batch, like any other. */
	store_be(w.p + 8, 4, 0x7fffffffu);
	trace(w.p, w.len, NULL, tr, sizeof(tr), NULL, 0);
	assert_string_equal(tr, "B2");
	kd_wbuf_free(&w);
}

/* Compressed damage: truncated streams and bombs, for every codec. */
static void test_hostile_compressed(void **state)
{
	char tr[256], err[200];
	uint8_t g[82];
	golden_batch(g);
	size_t zn = 1 << 20;
	uint8_t *zeros = calloc(1, zn);
	for (int codec = 1; codec <= 4; codec++) {
		if (!kd_codec_available(codec))
			continue;
		struct kd_wbuf z = {0}, w = {0};
		/* Truncated compressed records (batch framing and CRC sane). */
		assert_int_equal(kd_compress(codec, golden_recs, 21, NULL, &z), KD_OK);
		build_raw(&w, z.p, z.len - 3, 2, (int16_t)codec);
		kd_w_raw(&w, g, 82);
		trace(w.p, w.len, NULL, tr, sizeof(tr), err, sizeof(err));
		if (strcmp(tr, "B-7 B1 R1 R1 R0 B0") != 0)
			fail_msg("codec %d: %s (%s)", codec, tr, err);
		assert_non_null(strstr(err, kd_codec_name(codec)));
		/* The intact one decodes. */
		w.len = 0;
		build_raw(&w, z.p, z.len, 2, (int16_t)codec);
		trace(w.p, w.len, NULL, tr, sizeof(tr), NULL, 0);
		assert_string_equal(tr, "B1 R1 R1 R0 B0");
		/* A bomb: 1 MiB of zeros against a 64 KiB limit. */
		z.len = 0;
		assert_int_equal(kd_compress(codec, zeros, zn, NULL, &z), KD_OK);
		w.len = 0;
		build_raw(&w, z.p, z.len, 2, (int16_t)codec);
		kd_w_raw(&w, g, 82);
		struct kd_rec_limits lim = {.max_decompressed = 65536};
		trace(w.p, w.len, &lim, tr, sizeof(tr), err, sizeof(err));
		assert_string_equal(tr, "B-4 B1 R1 R1 R0 B0");
		if (!strstr(err, "limit"))
			fail_msg("codec %d: %s", codec, err);
		kd_wbuf_free(&z);
		kd_wbuf_free(&w);
	}
	free(zeros);
}

/* 1 GiB of zeros (1024 zstd frames of 1 MiB) in one batch: KD_ELIMIT under
 * the default 64 MiB limit, with no allocation past it. The streaming,
 * no-content-size bombs of every codec are in test_codec.c. */
static void test_bomb_default_limit(void **state)
{
	int codec = KD_CODEC_ZSTD;
	if (!kd_codec_available(codec))
		codec = KD_CODEC_GZIP;
	size_t chunk = 1 << 20;
	uint8_t *zeros = calloc(1, chunk);
	struct kd_wbuf one = {0}, z = {0}, w = {0};
	/* 1024 concatenated frames of 1 MiB each: zstd and gzip both read on. */
	assert_int_equal(kd_compress(codec, zeros, chunk, NULL, &one), KD_OK);
	for (int i = 0; i < 1024; i++)
		kd_w_raw(&z, one.p, one.len);
	build_raw(&w, z.p, z.len, 2, (int16_t)codec);
	struct kd_rec_iter it;
	struct kd_batch *b;
	kd_rec_iter_init(&it, w.p, w.len, NULL);
	assert_int_equal(kd_rec_next_batch(&it, &b), KD_ELIMIT);
	assert_true(it.dbuf.cap <= KD_REC_DEFAULT_MAX_DECOMPRESSED);
	assert_int_equal(kd_rec_next_batch(&it, &b), 0);
	kd_rec_iter_free(&it);
	kd_wbuf_free(&one);
	kd_wbuf_free(&z);
	kd_wbuf_free(&w);
	free(zeros);
}

static void test_legacy_details(void **state)
{
	struct kd_wrecord recs[3];
	make_records(recs, 3);
	struct kd_rec_iter it;
	struct kd_batch *b;
	struct kd_record rec;
	struct kd_wbuf w = {0};

	/* Magic 1 wrapper: offset = wrapper - last inner + inner. */
	struct kd_batch_spec s = {.magic = 1, .codec = KD_CODEC_GZIP, .base_offset = 1000};
	assert_int_equal(kd_batch_write(&w, &s, recs, 3), KD_OK);
	assert_int_equal(kd_load_be(w.p, 8), 1002); /* the wrapper holds the last offset */
	/* Some librdkafka producers send wrapper offset 0: base 0. The offset
	 * is outside the CRC, so patching it keeps the message valid. */
	store_be(w.p, 8, 0);
	kd_rec_iter_init(&it, w.p, w.len, NULL);
	assert_int_equal(kd_rec_next_batch(&it, &b), 1);
	assert_int_equal(b->base_offset, 0);
	assert_int_equal(b->last_offset_delta, 2);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(kd_rec_next_record(&it, &rec), 1);
		assert_int_equal(rec.offset, i);
		assert_int_equal(rec.magic, 1);
	}
	kd_rec_iter_free(&it);
	/* Legacy CRC-32: a flipped value byte is KD_ECRC. */
	w.p[w.len - 1] ^= 1;
	kd_rec_iter_init(&it, w.p, w.len, NULL);
	assert_int_equal(kd_rec_next_batch(&it, &b), KD_ECRC);
	assert_non_null(strstr(it.err, "CRC-32 mismatch"));
	kd_rec_iter_free(&it);

	/* LogAppendTime on a magic 1 wrapper: inner records take its timestamp. */
	w.len = 0;
	s.timestamp_type = 1;
	s.log_append_time = 1234567;
	s.codec = KD_CODEC_GZIP;
	assert_int_equal(kd_batch_write(&w, &s, recs, 3), KD_OK);
	kd_rec_iter_init(&it, w.p, w.len, NULL);
	assert_int_equal(kd_rec_next_batch(&it, &b), 1);
	assert_int_equal(b->timestamp_type, 1);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(kd_rec_next_record(&it, &rec), 1);
		assert_int_equal(rec.timestamp, 1234567);
	}
	kd_rec_iter_free(&it);

	/* Magic 0 lz4 carries the KAFKA-3160 header checksum and decodes. */
	if (kd_codec_available(KD_CODEC_LZ4)) {
		struct kd_batch_spec s0 = {.magic = 0, .codec = KD_CODEC_LZ4, .base_offset = 500};
		w.len = 0;
		assert_int_equal(kd_batch_write(&w, &s0, recs, 3), KD_OK);
		/* value starts after offset 8, size 4, crc 4, magic, attr, key -1 (4), len (4) */
		const uint8_t *f = w.p + 12 + 4 + 2 + 4 + 4;
		assert_int_equal(kd_load_be(f, 4), 0x04224d18u);
		assert_int_equal(f[6], (uint8_t)(kd_xxh32(f, 6, 0) >> 8));
		check_roundtrip(w.p, w.len, &s0, recs, 3);
		/* The same old-HC frame in a magic 1 wrapper is checked strictly. */
		struct kd_wbuf z = {0}, inner = {0}, m = {0};
		struct kd_batch_spec s1 = {.magic = 1};
		assert_int_equal(kd_batch_write(&inner, &s1, recs, 3), KD_OK);
		struct kd_compress_opts old = {.lz4_old_hc = 1};
		assert_int_equal(kd_compress(KD_CODEC_LZ4, inner.p, inner.len, &old, &z), KD_OK);
		kd_w_i64(&m, 2);
		kd_w_i32(&m, 0);
		kd_w_u32(&m, 0);
		kd_w_i8(&m, 1);
		kd_w_i8(&m, KD_CODEC_LZ4);
		kd_w_i64(&m, 0);
		kd_w_i32(&m, -1);
		kd_w_i32(&m, (int32_t)z.len);
		kd_w_raw(&m, z.p, z.len);
		store_be(m.p + 8, 4, m.len - 12);
		store_be(m.p + 12, 4, kd_crc32(0, m.p + 16, m.len - 16));
		kd_rec_iter_init(&it, m.p, m.len, NULL);
		assert_int_equal(kd_rec_next_batch(&it, &b), KD_ECOMPRESS);
		kd_rec_iter_free(&it);
		kd_wbuf_free(&z);
		kd_wbuf_free(&inner);
		kd_wbuf_free(&m);
	}
	kd_wbuf_free(&w);
}

static void test_v2_details(void **state)
{
	struct kd_wrecord recs[3];
	make_records(recs, 3);
	struct kd_rec_iter it;
	struct kd_batch *b;
	struct kd_record rec;
	struct kd_wbuf w = {0};

	/* Sequence numbers wrap past INT32_MAX to 0; LogAppendTime applies maxTimestamp. */
	struct kd_batch_spec s = {.magic = 2,
	                          .base_offset = 5,
	                          .producer_id = 1,
	                          .base_sequence = INT32_MAX - 1,
	                          .timestamp_type = 1,
	                          .log_append_time = 999};
	assert_int_equal(kd_batch_write(&w, &s, recs, 3), KD_OK);
	/* An empty batch (left by compaction) and explicit offsets with gaps. */
	struct kd_batch_spec e = {
	    .magic = 2, .base_offset = 8, .producer_id = -1, .base_sequence = -1};
	assert_int_equal(kd_batch_write(&w, &e, recs, 0), KD_OK);
	struct kd_batch_spec g = {.magic = 2,
	                          .base_offset = 20,
	                          .producer_id = -1,
	                          .base_sequence = -1,
	                          .explicit_offsets = 1};
	recs[0].offset_delta = 0;
	recs[1].offset_delta = 4;
	recs[2].offset_delta = 9;
	assert_int_equal(kd_batch_write(&w, &g, recs, 3), KD_OK);

	kd_rec_iter_init(&it, w.p, w.len, NULL);
	assert_int_equal(kd_rec_next_batch(&it, &b), 1);
	assert_int_equal(b->timestamp_type, 1);
	assert_int_equal(b->max_timestamp, 999);
	int32_t seqs[3] = {INT32_MAX - 1, INT32_MAX, 0};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(kd_rec_next_record(&it, &rec), 1);
		assert_int_equal(rec.sequence, seqs[i]);
		assert_int_equal(rec.timestamp, 999);
	}
	assert_int_equal(kd_rec_next_record(&it, &rec), 0);
	assert_int_equal(kd_rec_next_batch(&it, &b), 1);
	assert_int_equal(b->record_count, 0);
	assert_int_equal(kd_rec_next_record(&it, &rec), 0);
	assert_int_equal(kd_rec_next_batch(&it, &b), 1);
	assert_int_equal(b->last_offset_delta, 9);
	int64_t offs[3] = {20, 24, 29};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(kd_rec_next_record(&it, &rec), 1);
		assert_int_equal(rec.offset, offs[i]);
		assert_int_equal(rec.sequence, -1);
	}
	assert_int_equal(kd_rec_next_batch(&it, &b), 0);
	/* Reset reuses the iterator on another blob. */
	kd_rec_iter_reset(&it, w.p, w.len);
	assert_int_equal(kd_rec_next_batch(&it, &b), 1);
	assert_int_equal(b->base_offset, 5);
	kd_rec_iter_free(&it);
	/* Empty blob: end at once. */
	kd_rec_iter_init(&it, w.p, 0, NULL);
	assert_int_equal(kd_rec_next_batch(&it, &b), 0);
	kd_rec_iter_free(&it);
	kd_wbuf_free(&w);
	/* The writer refuses what it cannot build, leaving w untouched. */
	struct kd_batch_spec bad = {.magic = 3};
	assert_int_equal(kd_batch_write(&w, &bad, recs, 1), KD_EUNSUPPORTED);
	bad.magic = 2;
	bad.codec = 6;
	assert_int_equal(kd_batch_write(&w, &bad, recs, 1), KD_EUNSUPPORTED);
	assert_int_equal(w.len, 0);
	kd_wbuf_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip_all),
	    cmocka_unit_test(test_golden_v2),
	    cmocka_unit_test(test_control_batches),
	    cmocka_unit_test(test_truncated_every_cut),
	    cmocka_unit_test(test_hostile),
	    cmocka_unit_test(test_hostile_compressed),
	    cmocka_unit_test(test_bomb_default_limit),
	    cmocka_unit_test(test_legacy_details),
	    cmocka_unit_test(test_v2_details),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
