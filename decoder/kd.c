/* kd.c: decoder-wide helpers (kd.h). */
#include "kd.h"

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

const char *kd_features(void)
{
	return "gzip"
#ifdef KWIRE_HAVE_SNAPPY
	       " snappy"
#endif
#ifdef KWIRE_HAVE_LZ4
	       " lz4"
#endif
#ifdef KWIRE_HAVE_ZSTD
	       " zstd"
#endif
		;
}
