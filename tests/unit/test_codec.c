/* test_codec.c: the four codecs: round trips, exact caps, truncation,
 * corruption, decompression bombs, snappy raw/xerial, lz4 KAFKA-3160. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>
#ifdef KWIRE_HAVE_SNAPPY
#include <snappy-c.h>
#endif
#ifdef KWIRE_HAVE_LZ4
#include <lz4frame.h>
#endif
#ifdef KWIRE_HAVE_ZSTD
#include <zstd.h>
#endif

#include "kd-codec.h"

static const int codecs[] = {KD_CODEC_GZIP, KD_CODEC_SNAPPY, KD_CODEC_LZ4, KD_CODEC_ZSTD};
#define NCODECS (sizeof(codecs) / sizeof(codecs[0]))

/* Compressible but not trivial: words from a small vocabulary plus noise. */
static uint8_t *make_data(size_t n, unsigned seed)
{
	static const char *words[] = {"kafka ",  "record ", "batch ",
	                              "offset ", "topic-",  "partition "};
	uint8_t *p = malloc(n ? n : 1);
	assert_non_null(p);
	srand(seed);
	size_t i = 0;
	while (i < n) {
		if (rand() % 4 == 0) {
			p[i++] = (uint8_t)rand();
			continue;
		}
		const char *w = words[rand() % 6];
		for (size_t k = 0; w[k] && i < n; k++)
			p[i++] = (uint8_t)w[k];
	}
	return p;
}

static void roundtrip(int codec, const uint8_t *data, size_t n, const struct kd_compress_opts *opts)
{
	struct kd_wbuf z = {0}, out = {0};
	char err[128] = "";
	assert_int_equal(kd_compress(codec, data, n, opts, &z), KD_OK);
	unsigned flags = opts && opts->lz4_old_hc ? KD_DECOMP_LZ4_OLD_HC : 0;
	int rc = kd_decompress(codec, z.p, z.len, 64u << 20, flags, &out, err, sizeof(err));
	if (rc != KD_OK)
		fail_msg("codec %d n=%zu: rc %d %s", codec, n, rc, err);
	assert_int_equal(out.len, n);
	if (n)
		assert_memory_equal(out.p, data, n);
	/* Appending keeps what was in the buffer before. */
	out.len = 0;
	kd_w_raw(&out, "xy", 2);
	assert_int_equal(kd_decompress(codec, z.p, z.len, n, flags, &out, NULL, 0), KD_OK);
	assert_int_equal(out.len, n + 2);
	assert_memory_equal(out.p, "xy", 2);
	kd_wbuf_free(&z);
	kd_wbuf_free(&out);
}

static void test_roundtrip(void **state)
{
	static const size_t sizes[] = {0,     1,     7,     100,    4095,   4096,
	                               65535, 65536, 65537, 200000, 1 << 20};
	for (size_t c = 0; c < NCODECS; c++) {
		if (!kd_codec_available(codecs[c]))
			continue;
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			uint8_t *d = make_data(sizes[s], (unsigned)(s + 1));
			roundtrip(codecs[c], d, sizes[s], NULL);
			struct kd_compress_opts raw = {.snappy_raw = 1, .level = 1};
			roundtrip(codecs[c], d, sizes[s], &raw);
			free(d);
		}
	}
}

/* Output of exactly cap bytes is fine; one byte over is KD_ELIMIT, and the
 * output buffer is left as it was. */
static void test_exact_cap(void **state)
{
	static const size_t sizes[] = {1, 5000, 65536, 300001};
	for (size_t c = 0; c < NCODECS; c++) {
		if (!kd_codec_available(codecs[c]))
			continue;
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			size_t n = sizes[s];
			uint8_t *d = make_data(n, 7);
			struct kd_wbuf z = {0}, out = {0};
			char err[128] = "";
			assert_int_equal(kd_compress(codecs[c], d, n, NULL, &z), KD_OK);
			assert_int_equal(
			    kd_decompress(codecs[c], z.p, z.len, n, 0, &out, err, sizeof(err)),
			    KD_OK);
			assert_int_equal(out.len, n);
			out.len = 0;
			assert_int_equal(
			    kd_decompress(codecs[c], z.p, z.len, n - 1, 0, &out, err, sizeof(err)),
			    KD_ELIMIT);
			assert_int_equal(out.len, 0);
			assert_non_null(strstr(err, "limit"));
			kd_wbuf_free(&z);
			kd_wbuf_free(&out);
			free(d);
		}
	}
}

static void test_truncated(void **state)
{
	uint8_t *d = make_data(3000, 3);
	for (size_t c = 0; c < NCODECS; c++) {
		if (!kd_codec_available(codecs[c]))
			continue;
		for (int raw = 0; raw <= 1; raw++) {
			struct kd_wbuf z = {0}, out = {0};
			struct kd_compress_opts opts = {.snappy_raw = (uint8_t)raw};
			assert_int_equal(kd_compress(codecs[c], d, 3000, &opts, &z), KD_OK);
			for (size_t cut = 0; cut < z.len; cut++) {
				/* A xerial stream cut between chunks is a shorter valid stream
				 * (snappy-java cannot tell either): only the one-chunk header
				 * boundary is such a point for 3000 bytes. */
				if (codecs[c] == KD_CODEC_SNAPPY && !raw && cut == 16)
					continue;
				char err[128] = "";
				int rc = kd_decompress(codecs[c], z.p, cut, 1 << 20, 0, &out, err,
				                       sizeof(err));
				if (rc != KD_ECOMPRESS)
					fail_msg("codec %d raw %d cut %zu/%zu: rc %d", codecs[c],
					         raw, cut, z.len, rc);
				assert_int_equal(out.len, 0);
				assert_true(err[0] != 0);
			}
			kd_wbuf_free(&z);
			kd_wbuf_free(&out);
		}
	}
	free(d);
}

/* Flipped bytes must never crash or overrun; most are detected. */
static void test_corrupt(void **state)
{
	uint8_t *d = make_data(5000, 4);
	for (size_t c = 0; c < NCODECS; c++) {
		if (!kd_codec_available(codecs[c]))
			continue;
		struct kd_wbuf z = {0}, out = {0};
		assert_int_equal(kd_compress(codecs[c], d, 5000, NULL, &z), KD_OK);
		uint8_t *bad = malloc(z.len);
		int detected = 0;
		for (size_t i = 0; i < z.len; i++) {
			memcpy(bad, z.p, z.len);
			bad[i] ^= (uint8_t)(0x5a + i);
			out.len = 0;
			int rc = kd_decompress(codecs[c], bad, z.len, 8192, 0, &out, NULL, 0);
			assert_true(rc == KD_OK || rc == KD_ECOMPRESS || rc == KD_ELIMIT);
			assert_true(out.len <= 8192);
			detected += rc != KD_OK;
		}
		assert_true(detected > 0);
		free(bad);
		kd_wbuf_free(&z);
		kd_wbuf_free(&out);
	}
	free(d);
}

static void test_unsupported(void **state)
{
	struct kd_wbuf out = {0};
	char err[128] = "";
	assert_int_equal(kd_decompress(5, (const uint8_t *)"x", 1, 100, 0, &out, err, sizeof(err)),
	                 KD_EUNSUPPORTED);
	assert_non_null(strstr(err, "codec"));
	assert_int_equal(
	    kd_decompress(KD_CODEC_NONE, (const uint8_t *)"x", 1, 100, 0, &out, NULL, 0),
	    KD_EUNSUPPORTED);
	assert_int_equal(kd_compress(7, (const uint8_t *)"x", 1, NULL, &out), KD_EUNSUPPORTED);
	assert_true(kd_codec_available(KD_CODEC_GZIP));
	assert_false(kd_codec_available(9));
#ifdef KWIRE_HAVE_ZSTD
	assert_true(kd_codec_available(KD_CODEC_ZSTD));
#else
	assert_int_equal(
	    kd_decompress(KD_CODEC_ZSTD, (const uint8_t *)"x", 1, 100, 0, &out, err, sizeof(err)),
	    KD_EUNSUPPORTED);
	assert_non_null(strstr(err, "not built"));
#endif
	kd_wbuf_free(&out);
}

/* Concatenated gzip members and zstd frames decode as one stream. */
static void test_concatenated(void **state)
{
	int cs[] = {KD_CODEC_GZIP, KD_CODEC_ZSTD, KD_CODEC_LZ4};
	for (size_t c = 0; c < 3; c++) {
		if (!kd_codec_available(cs[c]))
			continue;
		struct kd_wbuf z = {0}, out = {0};
		assert_int_equal(kd_compress(cs[c], (const uint8_t *)"hello ", 6, NULL, &z), KD_OK);
		assert_int_equal(kd_compress(cs[c], (const uint8_t *)"world", 5, NULL, &z), KD_OK);
		assert_int_equal(kd_decompress(cs[c], z.p, z.len, 100, 0, &out, NULL, 0), KD_OK);
		assert_int_equal(out.len, 11);
		assert_memory_equal(out.p, "hello world", 11);
		kd_wbuf_free(&z);
		kd_wbuf_free(&out);
	}
}

static void test_xxh32(void **state)
{
	/* Reference values of the xxHash32 specification. */
	assert_int_equal(kd_xxh32("", 0, 0), 0x02CC5D05u);
	assert_int_equal(kd_xxh32("a", 1, 0), 0x550D7456u);
	assert_int_equal(kd_xxh32("abc", 3, 0), 0x32D153FFu);
#ifdef KWIRE_HAVE_LZ4
	/* Cross-check long inputs against liblz4's content checksum. */
	for (size_t n = 1; n < 2000; n += 97) {
		uint8_t *d = make_data(n, (unsigned)n);
		LZ4F_preferences_t prefs;
		memset(&prefs, 0, sizeof(prefs));
		prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
		size_t bound = LZ4F_compressFrameBound(n, &prefs);
		uint8_t *z = malloc(bound);
		size_t zn = LZ4F_compressFrame(z, bound, d, n, &prefs);
		assert_false(LZ4F_isError(zn));
		uint32_t sum = (uint32_t)z[zn - 4] | (uint32_t)z[zn - 3] << 8 |
		               (uint32_t)z[zn - 2] << 16 | (uint32_t)z[zn - 1] << 24;
		assert_int_equal(kd_xxh32(d, n, 0), sum);
		free(z);
		free(d);
	}
#endif
}

static void test_lz4_old_hc(void **state)
{
#ifdef KWIRE_HAVE_LZ4
	uint8_t *d = make_data(10000, 9);
	struct kd_wbuf good = {0}, old = {0}, out = {0};
	struct kd_compress_opts o = {.lz4_old_hc = 1};
	assert_int_equal(kd_compress(KD_CODEC_LZ4, d, 10000, NULL, &good), KD_OK);
	assert_int_equal(kd_compress(KD_CODEC_LZ4, d, 10000, &o, &old), KD_OK);
	/* Frame header as Kafka writes it: magic LE, FLG 0x60 (v01, independent
	 * blocks, no checksums, no size), BD 0x40 (64 KiB), HC. */
	static const uint8_t magic[4] = {0x04, 0x22, 0x4d, 0x18};
	assert_memory_equal(good.p, magic, 4);
	assert_int_equal(good.p[4], 0x60);
	assert_int_equal(good.p[5], 0x40);
	assert_int_equal(good.p[6], (uint8_t)(kd_xxh32(good.p + 4, 2, 0) >> 8));
	assert_int_equal(old.p[6], (uint8_t)(kd_xxh32(old.p, 6, 0) >> 8));
	assert_int_not_equal(old.p[6], good.p[6]);
	/* The broken HC fails a strict decoder, decodes with the magic-0 flag. */
	char err[128] = "";
	assert_int_equal(
	    kd_decompress(KD_CODEC_LZ4, old.p, old.len, 1 << 20, 0, &out, err, sizeof(err)),
	    KD_ECOMPRESS);
	assert_int_equal(kd_decompress(KD_CODEC_LZ4, old.p, old.len, 1 << 20, KD_DECOMP_LZ4_OLD_HC,
	                               &out, err, sizeof(err)),
	                 KD_OK);
	assert_int_equal(out.len, 10000);
	assert_memory_equal(out.p, d, 10000);
	/* Kafka skips the check for magic 0, so a correct HC decodes as well. */
	out.len = 0;
	assert_int_equal(kd_decompress(KD_CODEC_LZ4, good.p, good.len, 1 << 20,
	                               KD_DECOMP_LZ4_OLD_HC, &out, NULL, 0),
	                 KD_OK);
	assert_int_equal(out.len, 10000);
	kd_wbuf_free(&good);
	kd_wbuf_free(&old);
	kd_wbuf_free(&out);
	free(d);
#else
	print_message("SKIP: codec not built in (needs: its library, install-deps.sh)\n");
	skip();
#endif
}

static void test_snappy_forms(void **state)
{
#ifdef KWIRE_HAVE_SNAPPY
	uint8_t *d = make_data(100000, 11);
	struct kd_wbuf x = {0}, r = {0}, out = {0};
	struct kd_compress_opts raw = {.snappy_raw = 1};
	assert_int_equal(kd_compress(KD_CODEC_SNAPPY, d, 100000, NULL, &x), KD_OK);
	assert_int_equal(kd_compress(KD_CODEC_SNAPPY, d, 100000, &raw, &r), KD_OK);
	static const uint8_t hdr[16] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0,
	                                0,    0,   0,   1,   0,   0,   0,   1};
	assert_memory_equal(x.p, hdr, 16);
	/* Four 32 KiB chunks, each INT32 BE length + a raw block. */
	size_t off = 16, chunks = 0;
	while (off < x.len) {
		uint32_t n = (uint32_t)x.p[off] << 24 | (uint32_t)x.p[off + 1] << 16 |
		             (uint32_t)x.p[off + 2] << 8 | x.p[off + 3];
		size_t ulen;
		assert_int_equal(snappy_uncompressed_length((const char *)x.p + off + 4, n, &ulen),
		                 SNAPPY_OK);
		assert_true(ulen <= 32768);
		off += 4 + n;
		chunks++;
	}
	assert_int_equal(off, x.len);
	assert_int_equal(chunks, 4);
	assert_memory_not_equal(r.p, hdr, 8);
	assert_int_equal(kd_decompress(KD_CODEC_SNAPPY, x.p, x.len, 1 << 20, 0, &out, NULL, 0),
	                 KD_OK);
	assert_int_equal(out.len, 100000);
	assert_memory_equal(out.p, d, 100000);
	out.len = 0;
	assert_int_equal(kd_decompress(KD_CODEC_SNAPPY, r.p, r.len, 1 << 20, 0, &out, NULL, 0),
	                 KD_OK);
	assert_int_equal(out.len, 100000);
	assert_memory_equal(out.p, d, 100000);
	/* Two xerial streams back to back (header repeated) decode as one. */
	struct kd_wbuf two = {0};
	kd_w_raw(&two, x.p, x.len);
	kd_w_raw(&two, x.p, x.len);
	out.len = 0;
	assert_int_equal(kd_decompress(KD_CODEC_SNAPPY, two.p, two.len, 1 << 20, 0, &out, NULL, 0),
	                 KD_OK);
	assert_int_equal(out.len, 200000);
	kd_wbuf_free(&two);
	kd_wbuf_free(&x);
	kd_wbuf_free(&r);
	kd_wbuf_free(&out);
	free(d);
#else
	print_message("SKIP: codec not built in (needs: its library, install-deps.sh)\n");
	skip();
#endif
}

/* ---- decompression bombs: 1 GiB of zeros, compressed in a stream ---- */

#define BOMB_SIZE (1ull << 30)
#define BOMB_CHUNK (1u << 20)

static void make_bomb(int codec, struct kd_wbuf *z)
{
	uint8_t *zeros = calloc(1, BOMB_CHUNK);
	assert_non_null(zeros);
	size_t chunks = BOMB_SIZE / BOMB_CHUNK;
	if (codec == KD_CODEC_GZIP) {
		z_stream zs;
		memset(&zs, 0, sizeof(zs));
		assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 31, 8, Z_RLE), Z_OK);
		for (size_t i = 0; i < chunks; i++) {
			zs.next_in = zeros;
			zs.avail_in = BOMB_CHUNK;
			int flush = i + 1 == chunks ? Z_FINISH : Z_NO_FLUSH;
			do {
				uint8_t *d = kd_wbuf_reserve(z, 65536);
				zs.next_out = d;
				zs.avail_out = 65536;
				deflate(&zs, flush);
				z->len += 65536 - zs.avail_out;
			} while (zs.avail_out == 0 || (flush == Z_FINISH && zs.avail_in));
		}
		deflateEnd(&zs);
	}
#ifdef KWIRE_HAVE_ZSTD
	if (codec == KD_CODEC_ZSTD) {
		/* Streaming without a pledged size: the frame has no content size. */
		ZSTD_CCtx *cctx = ZSTD_createCCtx();
		for (size_t i = 0; i < chunks; i++) {
			ZSTD_inBuffer in = {zeros, BOMB_CHUNK, 0};
			ZSTD_EndDirective end = i + 1 == chunks ? ZSTD_e_end : ZSTD_e_continue;
			size_t left;
			do {
				uint8_t *d = kd_wbuf_reserve(z, 65536);
				ZSTD_outBuffer ob = {d, 65536, 0};
				left = ZSTD_compressStream2(cctx, &ob, &in, end);
				assert_false(ZSTD_isError(left));
				z->len += ob.pos;
			} while (in.pos < in.size || (end == ZSTD_e_end && left));
		}
		ZSTD_freeCCtx(cctx);
		assert_int_equal(ZSTD_getFrameContentSize(z->p, z->len), ZSTD_CONTENTSIZE_UNKNOWN);
	}
#endif
#ifdef KWIRE_HAVE_LZ4
	if (codec == KD_CODEC_LZ4) {
		LZ4F_cctx *cctx;
		LZ4F_preferences_t prefs;
		memset(&prefs, 0, sizeof(prefs));
		prefs.frameInfo.blockSizeID = LZ4F_max64KB;
		prefs.frameInfo.blockMode = LZ4F_blockIndependent;
		assert_false(LZ4F_isError(LZ4F_createCompressionContext(&cctx, LZ4F_VERSION)));
		size_t bound = LZ4F_compressBound(BOMB_CHUNK, &prefs) + 64;
		uint8_t *d = kd_wbuf_reserve(z, bound);
		z->len += LZ4F_compressBegin(cctx, d, bound, &prefs);
		for (size_t i = 0; i < chunks; i++) {
			d = kd_wbuf_reserve(z, bound);
			size_t n = LZ4F_compressUpdate(cctx, d, bound, zeros, BOMB_CHUNK, NULL);
			assert_false(LZ4F_isError(n));
			z->len += n;
		}
		d = kd_wbuf_reserve(z, bound);
		z->len += LZ4F_compressEnd(cctx, d, bound, NULL);
		LZ4F_freeCompressionContext(cctx);
	}
#endif
	free(zeros);
	assert_int_equal(z->err, KD_OK);
}

static void test_bombs(void **state)
{
	int cs[] = {KD_CODEC_GZIP, KD_CODEC_ZSTD, KD_CODEC_LZ4};
	for (size_t c = 0; c < 3; c++) {
		if (!kd_codec_available(cs[c]))
			continue;
		struct kd_wbuf z = {0}, out = {0};
		char err[128] = "";
		make_bomb(cs[c], &z);
		assert_true(z.len < BOMB_SIZE / 100);
		size_t cap = 64u << 20;
		assert_int_equal(kd_decompress(cs[c], z.p, z.len, cap, 0, &out, err, sizeof(err)),
		                 KD_ELIMIT);
		assert_int_equal(out.len, 0);
		assert_true(out.cap <= cap); /* never allocated past the cap */
		/* A small cap stops it just as cleanly. */
		assert_int_equal(kd_decompress(cs[c], z.p, z.len, 1000, 0, &out, err, sizeof(err)),
		                 KD_ELIMIT);
		kd_wbuf_free(&z);
		kd_wbuf_free(&out);
	}
}

static void test_snappy_bomb(void **state)
{
#ifdef KWIRE_HAVE_SNAPPY
	/* A raw block that claims 1 GiB is refused from its preamble alone. */
	uint8_t *zeros = calloc(1, BOMB_CHUNK);
	struct kd_wbuf z = {0}, out = {0};
	char err[128] = "";
	uint8_t claim[] = {0x80, 0x80, 0x80, 0x80, 0x04, 0x00}; /* varint 1 << 30, then a literal */
	assert_int_equal(kd_decompress(KD_CODEC_SNAPPY, claim, sizeof(claim), 64u << 20, 0, &out,
	                               err, sizeof(err)),
	                 KD_ELIMIT);
	assert_int_equal(out.cap, 0);
	/* xerial: 256 chunks of 1 MiB zeros (256 MiB) against a 64 MiB cap. */
	struct kd_compress_opts raw = {.snappy_raw = 1};
	struct kd_wbuf one = {0};
	assert_int_equal(kd_compress(KD_CODEC_SNAPPY, zeros, BOMB_CHUNK, &raw, &one), KD_OK);
	static const uint8_t hdr[16] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0,
	                                0,    0,   0,   1,   0,   0,   0,   1};
	kd_w_raw(&z, hdr, 16);
	for (int i = 0; i < 256; i++) {
		kd_w_u32(&z, (uint32_t)one.len);
		kd_w_raw(&z, one.p, one.len);
	}
	assert_int_equal(
	    kd_decompress(KD_CODEC_SNAPPY, z.p, z.len, 64u << 20, 0, &out, err, sizeof(err)),
	    KD_ELIMIT);
	assert_true(out.cap <= (64u << 20));
	kd_wbuf_free(&one);
	kd_wbuf_free(&z);
	kd_wbuf_free(&out);
	free(zeros);
#else
	print_message("SKIP: codec not built in (needs: its library, install-deps.sh)\n");
	skip();
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),    cmocka_unit_test(test_exact_cap),
	    cmocka_unit_test(test_truncated),    cmocka_unit_test(test_corrupt),
	    cmocka_unit_test(test_unsupported),  cmocka_unit_test(test_concatenated),
	    cmocka_unit_test(test_xxh32),        cmocka_unit_test(test_lz4_old_hc),
	    cmocka_unit_test(test_snappy_forms), cmocka_unit_test(test_bombs),
	    cmocka_unit_test(test_snappy_bomb),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
