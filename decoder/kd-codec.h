/* kd-codec.h: Kafka's four compression codecs (WIRE-NOTES.md section 9).
 *
 * Decompression appends to a struct kd_wbuf and never produces, or
 * allocates for, more than `cap` bytes: a decompression bomb is a clean
 * KD_ELIMIT. Truncated or corrupt input is KD_ECOMPRESS; a codec not built
 * into this binary (KWIRE_HAVE_SNAPPY/LZ4/ZSTD) is KD_EUNSUPPORTED. On
 * error out->len is back where it was and, when err is not NULL, a message
 * is written to err[0..errlen). Codec ids are enum kd_codec
 * (kd-records-t.h). */
#ifndef KD_CODEC_H
#define KD_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "kd-cur.h"
#include "kd-records-t.h"

/* kd_decompress flags */
#define KD_DECOMP_LZ4_OLD_HC 0x1u /* magic 0: accept the KAFKA-3160 broken header checksum */

/* kd_compress options; all-zero is the default. */
struct kd_compress_opts {
	int level;          /* 0: codec default */
	uint8_t snappy_raw; /* snappy: one raw block, not xerial framing */
	uint8_t lz4_old_hc; /* lz4: write the KAFKA-3160 header checksum (magic 0) */
};

/* Decompresses p[0..len) with codec, appending at most cap bytes to out.
 * Returns KD_OK, KD_ELIMIT, KD_ECOMPRESS, KD_EUNSUPPORTED or KD_ENOMEM.
 * gzip: one or more gzip members. snappy: xerial framing or a raw block.
 * lz4: LZ4 frame(s). zstd: zstd frame(s), content size known or not. */
int kd_decompress(int codec, const uint8_t *p, size_t len, size_t cap, unsigned flags,
                  struct kd_wbuf *out, char *err, size_t errlen);

/* Compresses p[0..len) with codec, appending to out. KD_OK,
 * KD_EUNSUPPORTED (not built in or codec none), KD_ENOMEM, KD_ECOMPRESS. */
int kd_compress(int codec, const uint8_t *p, size_t len, const struct kd_compress_opts *opts,
                struct kd_wbuf *out);

/* 1 when this binary can (de)compress codec (NONE counts as built in). */
int kd_codec_available(int codec);

/* xxHash32 (used by the LZ4 frame header checksum). */
uint32_t kd_xxh32(const void *p, size_t len, uint32_t seed);

#endif
