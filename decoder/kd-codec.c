/* kd-codec.c: gzip (zlib), snappy (raw and xerial), lz4 (frame), zstd.
 *
 * Every decompressor writes into out through out_room(), which never lets
 * the output pass cap: when the output is exactly cap bytes and the stream
 * is not finished, one more call with a 1-byte probe tells whether the
 * data goes on (KD_ELIMIT) or was just ending. */
#include "kd.h"
#include "kd-codec.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <zlib.h>

#ifdef KWIRE_HAVE_SNAPPY
#include <snappy-c.h>
#endif
#ifdef KWIRE_HAVE_LZ4
#include <lz4frame.h>
#endif
#ifdef KWIRE_HAVE_ZSTD
#include <zstd.h>
#include <zstd_errors.h>
#endif


/* Room for more output, at most cap - (out->len - base) bytes, growing
 * geometrically from a guess based on the input size. When the cap is
 * reached it hands out the caller's 1-byte *probe instead and sets
 * *probing: a codec that still writes into the probe is over the limit.
 * NULL only on allocation failure (out->err set). */
static uint8_t *out_room(struct kd_wbuf *out, size_t base, size_t cap, size_t inlen,
			 uint8_t *probe, size_t *avail, int *probing)
{
	size_t used = out->len - base;
	size_t want, room;
	uint8_t *d;

	*probing = 0;
	if (used >= cap) {
		*probing = 1;
		*avail = 1;
		return probe;
	}
	*avail = 0;
	room = out->cap - out->len;
	if (room >= 4096) {
		d = out->p + out->len;
	} else {
		want = used > inlen * 4 ? used : inlen * 4;
		if (want < 65536)
			want = 65536;
		if (want > cap - used)
			want = cap - used;
		d = kd_wbuf_reserve(out, want);
		if (!d)
			return NULL;
		room = out->cap - out->len;
	}
	*avail = room < cap - used ? room : cap - used;
	return d;
}

/* ---- xxHash32 (the LZ4 frame descriptor checksum), from the xxHash spec ---- */

#define XXH_P1 2654435761u
#define XXH_P2 2246822519u
#define XXH_P3 3266489917u
#define XXH_P4 668265263u
#define XXH_P5 374761393u

static inline uint32_t rotl32(uint32_t x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static inline uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint32_t xxh_round(uint32_t acc, uint32_t lane)
{
	return rotl32(acc + lane * XXH_P2, 13) * XXH_P1;
}

uint32_t kd_xxh32(const void *buf, size_t len, uint32_t seed)
{
	const uint8_t *p = buf, *end = p + len;
	uint32_t h;

	if (len >= 16) {
		uint32_t v1 = seed + XXH_P1 + XXH_P2, v2 = seed + XXH_P2, v3 = seed,
		         v4 = seed - XXH_P1;
		while (end - p >= 16) {
			v1 = xxh_round(v1, le32(p));
			v2 = xxh_round(v2, le32(p + 4));
			v3 = xxh_round(v3, le32(p + 8));
			v4 = xxh_round(v4, le32(p + 12));
			p += 16;
		}
		h = rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) + rotl32(v4, 18);
	} else {
		h = seed + XXH_P5;
	}
	h += (uint32_t)len;
	while (end - p >= 4) {
		h = rotl32(h + le32(p) * XXH_P3, 17) * XXH_P4;
		p += 4;
	}
	while (p < end)
		h = rotl32(h + *p++ * XXH_P5, 11) * XXH_P1;
	h ^= h >> 15;
	h *= XXH_P2;
	h ^= h >> 13;
	h *= XXH_P3;
	h ^= h >> 16;
	return h;
}

/* ---- gzip ---- */

static int gzip_decompress(const uint8_t *p, size_t len, size_t cap, struct kd_wbuf *out,
                           size_t base, char *err, size_t errlen)
{
	z_stream zs;
	uint8_t probe;
	int rc = KD_OK;

	if (len > UINT_MAX) {
		kd_errf(err, errlen, "gzip: input of %zu bytes too large", len);
		return KD_ELIMIT;
	}
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, 15 + 32) != Z_OK) /* +32: gzip or zlib header */
		return KD_ENOMEM;
	zs.next_in = (Bytef *)(uintptr_t)p;
	zs.avail_in = (uInt)len;
	for (;;) {
		size_t avail;
		int probing;
		uint8_t *d = out_room(out, base, cap, len, &probe, &avail, &probing);
		if (!d) {
			rc = KD_ENOMEM;
			break;
		}
		if (avail > UINT_MAX)
			avail = UINT_MAX;
		zs.next_out = d;
		zs.avail_out = (uInt)avail;
		int zr = inflate(&zs, Z_NO_FLUSH);
		size_t produced = avail - zs.avail_out;
		if (probing && produced) {
			kd_errf(err, errlen, "gzip: output exceeds the %zu-byte limit", cap);
			rc = KD_ELIMIT;
			break;
		}
		if (!probing)
			out->len += produced;
		if (zr == Z_STREAM_END) {
			/* java.util.zip reads concatenated members, so do we. */
			if (zs.avail_in >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b) {
				inflateReset(&zs);
				continue;
			}
			break;
		}
		if (zr == Z_OK && (zs.avail_in > 0 || zs.avail_out == 0))
			continue;
		if (zr == Z_OK || (zr == Z_BUF_ERROR && zs.avail_in == 0)) {
			kd_errf(err, errlen, "gzip: truncated stream");
		} else {
			kd_errf(err, errlen, "gzip: %s", zs.msg ? zs.msg : "corrupt stream");
		}
		rc = KD_ECOMPRESS;
		break;
	}
	inflateEnd(&zs);
	return rc;
}

static int gzip_compress(const uint8_t *p, size_t len, int level, struct kd_wbuf *out)
{
	z_stream zs;
	int rc = KD_OK;

	if (len > UINT_MAX / 2)
		return KD_ELIMIT;
	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, level ? level : Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
	                 Z_DEFAULT_STRATEGY) != Z_OK)
		return KD_ENOMEM;
	size_t bound = deflateBound(&zs, (uLong)len) + 32;
	uint8_t *d = kd_wbuf_reserve(out, bound);
	if (!d) {
		rc = KD_ENOMEM;
		goto out;
	}
	zs.next_in = (Bytef *)(uintptr_t)p;
	zs.avail_in = (uInt)len;
	zs.next_out = d;
	zs.avail_out = (uInt)bound;
	if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
		rc = KD_ECOMPRESS;
		goto out;
	}
	out->len += bound - zs.avail_out;
out:
	deflateEnd(&zs);
	return rc;
}

/* ---- snappy ---- */

#ifdef KWIRE_HAVE_SNAPPY
static const uint8_t xerial_magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
#define XERIAL_HDR 16
#define XERIAL_CHUNK 32768 /* snappy-java's default block size */

static int snappy_block(const uint8_t *p, size_t len, size_t cap, struct kd_wbuf *out, size_t base,
                        char *err, size_t errlen)
{
	size_t n;
	if (snappy_uncompressed_length((const char *)p, len, &n) != SNAPPY_OK) {
		kd_errf(err, errlen, "snappy: bad block preamble");
		return KD_ECOMPRESS;
	}
	/* The preamble states the size: a bomb is refused before any allocation. */
	if (n > cap - (out->len - base)) {
		kd_errf(err, errlen, "snappy: output exceeds the %zu-byte limit", cap);
		return KD_ELIMIT;
	}
	uint8_t *d = kd_wbuf_reserve(out, n ? n : 1);
	if (!d)
		return KD_ENOMEM;
	if (snappy_uncompress((const char *)p, len, (char *)d, &n) != SNAPPY_OK) {
		kd_errf(err, errlen, "snappy: corrupt or truncated block");
		return KD_ECOMPRESS;
	}
	out->len += n;
	return KD_OK;
}

static int snappy_decompress(const uint8_t *p, size_t len, size_t cap, struct kd_wbuf *out,
                             size_t base, char *err, size_t errlen)
{
	/* snappy-java: without the xerial magic, the whole payload is one raw block. */
	if (len < XERIAL_HDR || memcmp(p, xerial_magic, sizeof(xerial_magic)) != 0)
		return snappy_block(p, len, cap, out, base, err, errlen);
	size_t off = XERIAL_HDR;
	while (off < len) {
		/* Concatenated xerial streams repeat the header between chunks. */
		if (len - off >= XERIAL_HDR &&
		    memcmp(p + off, xerial_magic, sizeof(xerial_magic)) == 0) {
			off += XERIAL_HDR;
			continue;
		}
		if (len - off < 4) {
			kd_errf(err, errlen, "snappy: truncated xerial chunk length at byte %zu",
			       off);
			return KD_ECOMPRESS;
		}
		uint32_t clen = (uint32_t)kd_load_be(p + off, 4);
		off += 4;
		if (clen > len - off) {
			kd_errf(err, errlen,
			       "snappy: xerial chunk of %u bytes runs past the end (%zu left)",
			       clen, len - off);
			return KD_ECOMPRESS;
		}
		int rc = snappy_block(p + off, clen, cap, out, base, err, errlen);
		if (rc != KD_OK)
			return rc;
		off += clen;
	}
	return KD_OK;
}

static int snappy_compress_block(const uint8_t *p, size_t len, struct kd_wbuf *out, int with_len)
{
	size_t n = snappy_max_compressed_length(len);
	uint8_t *d = kd_wbuf_reserve(out, n + 4);
	if (!d)
		return KD_ENOMEM;
	if (snappy_compress((const char *)p, len, (char *)d + (with_len ? 4 : 0), &n) != SNAPPY_OK)
		return KD_ECOMPRESS;
	if (with_len) {
		if (n > INT32_MAX)
			return KD_ELIMIT;
		kd_w_u32(out, (uint32_t)n); /* room reserved above: writes in place */
	}
	out->len += n;
	return KD_OK;
}

static int snappy_compress_all(const uint8_t *p, size_t len, int raw, struct kd_wbuf *out)
{
	if (raw)
		return snappy_compress_block(p, len, out, 0);
	kd_w_raw(out, xerial_magic, sizeof(xerial_magic));
	kd_w_i32(out, 1); /* version */
	kd_w_i32(out, 1); /* minimum compatible version */
	if (out->err)
		return KD_ENOMEM;
	for (size_t off = 0; off < len; off += XERIAL_CHUNK) {
		size_t n = len - off < XERIAL_CHUNK ? len - off : XERIAL_CHUNK;
		int rc = snappy_compress_block(p + off, n, out, 1);
		if (rc != KD_OK)
			return rc;
	}
	return KD_OK;
}
#endif

/* ---- lz4 ---- */

#ifdef KWIRE_HAVE_LZ4
#define LZ4_MAGIC 0x184D2204u

/* Length of the frame header at p (magic, FLG, BD, optional content size
 * and dictionary id, HC), or 0 when p is not a complete frame header. */
static size_t lz4_header_len(const uint8_t *p, size_t len)
{
	if (len < 7 || le32(p) != LZ4_MAGIC)
		return 0;
	size_t n = 7 + ((p[4] & 0x08) ? 8 : 0) + ((p[4] & 0x01) ? 4 : 0);
	return n <= len ? n : 0;
}

static int lz4_decompress(const uint8_t *p, size_t len, size_t cap, unsigned flags,
                          struct kd_wbuf *out, size_t base, char *err, size_t errlen)
{
	LZ4F_dctx *dctx;
	uint8_t hdr[19], probe;
	const uint8_t *src = p, *next = NULL;
	size_t srclen = len, nextlen = 0, ret = 1;
	int rc = KD_OK;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
		return KD_ENOMEM;
	if (flags & KD_DECOMP_LZ4_OLD_HC) {
		/* KAFKA-3160: magic-0 writers hashed the magic bytes too, and
		 * Kafka skips the check for them. Feed liblz4 a copy of the
		 * header with the correct HC, then the rest of the input. */
		size_t hl = lz4_header_len(p, len);
		if (hl) {
			memcpy(hdr, p, hl);
			hdr[hl - 1] = (uint8_t)(kd_xxh32(hdr + 4, hl - 5, 0) >> 8);
			src = hdr;
			srclen = hl;
			next = p + hl;
			nextlen = len - hl;
		}
	}
	for (;;) {
		if (srclen == 0 && next) {
			src = next;
			srclen = nextlen;
			next = NULL;
		}
		size_t avail;
		int probing;
		uint8_t *d = out_room(out, base, cap, len, &probe, &avail, &probing);
		if (!d) {
			rc = KD_ENOMEM;
			break;
		}
		size_t dn = avail, sn = srclen;
		size_t r = LZ4F_decompress(dctx, d, &dn, src, &sn, NULL);
		if (LZ4F_isError(r)) {
			kd_errf(err, errlen, "lz4: %s", LZ4F_getErrorName(r));
			rc = KD_ECOMPRESS;
			break;
		}
		src += sn;
		srclen -= sn;
		/* A call without progress after the end of a frame returns the
		 * hint for the next frame's header: only progress counts. */
		if (sn || dn)
			ret = r;
		if (probing && dn) {
			kd_errf(err, errlen, "lz4: output exceeds the %zu-byte limit", cap);
			rc = KD_ELIMIT;
			break;
		}
		if (!probing)
			out->len += dn;
		if (srclen == 0 && !next && dn == 0)
			break; /* input used up and nothing more comes out */
		if (sn == 0 && dn == 0 && !probing) {
			kd_errf(err, errlen, "lz4: decoder made no progress");
			rc = KD_ECOMPRESS;
			break;
		}
	}
	if (rc == KD_OK && ret != 0) {
		kd_errf(err, errlen, "lz4: truncated frame");
		rc = KD_ECOMPRESS;
	}
	LZ4F_freeDecompressionContext(dctx);
	return rc;
}

static int lz4_compress(const uint8_t *p, size_t len, const struct kd_compress_opts *opts,
                        struct kd_wbuf *out)
{
	LZ4F_preferences_t prefs;
	memset(&prefs, 0, sizeof(prefs));
	/* As Kafka's Lz4BlockOutputStream: 64 KiB independent blocks, no checksums. */
	prefs.frameInfo.blockSizeID = LZ4F_max64KB;
	prefs.frameInfo.blockMode = LZ4F_blockIndependent;
	prefs.compressionLevel = opts->level;
	size_t bound = LZ4F_compressFrameBound(len, &prefs);
	uint8_t *d = kd_wbuf_reserve(out, bound);
	if (!d)
		return KD_ENOMEM;
	size_t n = LZ4F_compressFrame(d, bound, p, len, &prefs);
	if (LZ4F_isError(n) || n < 7)
		return KD_ECOMPRESS;
	if (opts->lz4_old_hc) /* KAFKA-3160: HC over magic + FLG + BD */
		d[6] = (uint8_t)(kd_xxh32(d, 6, 0) >> 8);
	out->len += n;
	return KD_OK;
}
#endif

/* ---- zstd ---- */

#ifdef KWIRE_HAVE_ZSTD
static int zstd_decompress(const uint8_t *p, size_t len, size_t cap, struct kd_wbuf *out,
                           size_t base, char *err, size_t errlen)
{
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	ZSTD_inBuffer in = {p, len, 0};
	uint8_t probe;
	size_t ret = 1;
	int rc = KD_OK;

	if (!dctx)
		return KD_ENOMEM;
	/* A window larger than the output cap is useless and would let a
	 * hostile frame header make the decoder allocate up to 2 GiB. Yet
	 * streaming writers pick the window from the level alone (2-8 MiB),
	 * so 8 MiB is always allowed even under a smaller cap. */
	int wlog = 23;
	while (wlog < 27 && ((size_t)1 << wlog) < cap)
		wlog++;
	ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, wlog);
	for (;;) {
		size_t avail;
		int probing;
		uint8_t *d = out_room(out, base, cap, len, &probe, &avail, &probing);
		if (!d) {
			rc = KD_ENOMEM;
			break;
		}
		ZSTD_outBuffer ob = {d, avail, 0};
		size_t inpos = in.pos;
		size_t r = ZSTD_decompressStream(dctx, &ob, &in);
		if (ZSTD_isError(r)) {
			int limit =
			    ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge;
			kd_errf(err, errlen, "zstd: %s%s", ZSTD_getErrorName(r),
			       limit ? " (window over the limit)" : "");
			rc = limit ? KD_ELIMIT : KD_ECOMPRESS;
			break;
		}
		if (probing && ob.pos) {
			kd_errf(err, errlen, "zstd: output exceeds the %zu-byte limit", cap);
			rc = KD_ELIMIT;
			break;
		}
		if (!probing)
			out->len += ob.pos;
		if (in.pos != inpos || ob.pos)
			ret = r; /* as for lz4: a call without progress says nothing */
		if (in.pos == in.size && ob.pos < ob.size)
			break; /* all input read and all output flushed */
	}
	if (rc == KD_OK && ret != 0) {
		kd_errf(err, errlen, "zstd: truncated frame");
		rc = KD_ECOMPRESS;
	}
	ZSTD_freeDCtx(dctx);
	return rc;
}

static int zstd_compress_all(const uint8_t *p, size_t len, int level, struct kd_wbuf *out)
{
	size_t bound = ZSTD_compressBound(len);
	uint8_t *d = kd_wbuf_reserve(out, bound);
	if (!d)
		return KD_ENOMEM;
	size_t n = ZSTD_compress(d, bound, p, len, level ? level : 3);
	if (ZSTD_isError(n))
		return KD_ECOMPRESS;
	out->len += n;
	return KD_OK;
}
#endif

/* ---- dispatch ---- */

int kd_codec_available(int codec)
{
	switch (codec) {
	case KD_CODEC_NONE:
	case KD_CODEC_GZIP:
		return 1;
#ifdef KWIRE_HAVE_SNAPPY
	case KD_CODEC_SNAPPY:
		return 1;
#endif
#ifdef KWIRE_HAVE_LZ4
	case KD_CODEC_LZ4:
		return 1;
#endif
#ifdef KWIRE_HAVE_ZSTD
	case KD_CODEC_ZSTD:
		return 1;
#endif
	}
	return 0;
}

static const char *codec_label(int codec)
{
	static const char *names[] = {"none", "gzip", "snappy", "lz4", "zstd"};
	return codec >= 0 && codec <= 4 ? names[codec] : "unknown";
}

int kd_decompress(int codec, const uint8_t *p, size_t len, size_t cap, unsigned flags,
                  struct kd_wbuf *out, char *err, size_t errlen)
{
	size_t base = out->len;
	int rc;

	if (out->err)
		return KD_ENOMEM;
	switch (codec) {
	case KD_CODEC_GZIP:
		rc = gzip_decompress(p, len, cap, out, base, err, errlen);
		break;
#ifdef KWIRE_HAVE_SNAPPY
	case KD_CODEC_SNAPPY:
		rc = snappy_decompress(p, len, cap, out, base, err, errlen);
		break;
#endif
#ifdef KWIRE_HAVE_LZ4
	case KD_CODEC_LZ4:
		rc = lz4_decompress(p, len, cap, flags, out, base, err, errlen);
		break;
#endif
#ifdef KWIRE_HAVE_ZSTD
	case KD_CODEC_ZSTD:
		rc = zstd_decompress(p, len, cap, out, base, err, errlen);
		break;
#endif
	default:
		if (codec >= 1 && codec <= 4)
			kd_errf(err, errlen, "codec %s is not built into this kwire",
			       codec_label(codec));
		else
			kd_errf(err, errlen, "unknown codec id %d", codec);
		return KD_EUNSUPPORTED;
	}
	if (rc == KD_ENOMEM) {
		kd_errf(err, errlen, "%s: out of memory", codec_label(codec));
		out->err = KD_OK; /* the caller's buffer stays usable */
	}
	if (rc != KD_OK)
		out->len = base;
	return rc;
}

int kd_compress(int codec, const uint8_t *p, size_t len, const struct kd_compress_opts *opts,
                struct kd_wbuf *out)
{
	static const struct kd_compress_opts defaults;
	size_t base = out->len;
	int rc;

	if (!opts)
		opts = &defaults;
	if (out->err)
		return KD_ENOMEM;
	switch (codec) {
	case KD_CODEC_GZIP:
		rc = gzip_compress(p, len, opts->level, out);
		break;
#ifdef KWIRE_HAVE_SNAPPY
	case KD_CODEC_SNAPPY:
		rc = snappy_compress_all(p, len, opts->snappy_raw, out);
		break;
#endif
#ifdef KWIRE_HAVE_LZ4
	case KD_CODEC_LZ4:
		rc = lz4_compress(p, len, opts, out);
		break;
#endif
#ifdef KWIRE_HAVE_ZSTD
	case KD_CODEC_ZSTD:
		rc = zstd_compress_all(p, len, opts->level, out);
		break;
#endif
	default:
		return KD_EUNSUPPORTED;
	}
	if (rc != KD_OK) {
		out->len = base;
		out->err = KD_OK;
	}
	return rc;
}
