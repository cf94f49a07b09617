/* kd.c: decoder-wide helpers (kd.h). */
#include "kd.h"

#include <stdarg.h>
#include <stdio.h>

#include "kd-crc.h"

const char *kd_strerror(int rc)
{
	switch (rc) {
	case KD_OK: return "ok";
	case KD_NEED_MORE: return "need more bytes";
	case KD_ESHORT: return "truncated: a field runs past the end of its frame";
	case KD_EMALFORMED: return "malformed";
	case KD_ELIMIT: return "over a configured limit";
	case KD_EUNSUPPORTED: return "unsupported (unknown api key, version, magic or codec)";
	case KD_ECRC: return "checksum mismatch";
	case KD_ECOMPRESS: return "corrupt or truncated compressed data";
	case KD_ENOMEM: return "out of memory";
	case KD_EBROKEN: return "stream broken by an earlier error";
	}
	return rc > 0 ? "ok" : "unknown error";
}

/* Codecs are fixed at build time; the CRC-32C implementation is chosen at
 * run time (kd-crc.c), so there are two constant strings to pick from. */
#define KD_FEATURES_CODECS "gzip" KD_F_SNAPPY KD_F_LZ4 KD_F_ZSTD
#ifdef KWIRE_HAVE_SNAPPY
#define KD_F_SNAPPY " snappy"
#else
#define KD_F_SNAPPY ""
#endif
#ifdef KWIRE_HAVE_LZ4
#define KD_F_LZ4 " lz4"
#else
#define KD_F_LZ4 ""
#endif
#ifdef KWIRE_HAVE_ZSTD
#define KD_F_ZSTD " zstd"
#else
#define KD_F_ZSTD ""
#endif

const char *kd_features(void)
{
	return kd_crc32c_hw_available() ? KD_FEATURES_CODECS " crc32c-sse4.2"
					: KD_FEATURES_CODECS " crc32c-sw";
}

void kd_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}
