/* kd.h: small decoder-wide helpers. */
#ifndef KD_H
#define KD_H

#include "kd-t.h"

/* A short English text for a KD_* return code; never NULL. */
const char *kd_strerror(int rc);

/* Features compiled into the decoder, as a space-separated list
 * (e.g. "gzip snappy lz4 zstd crc32c-sse4.2"). Static storage. */
const char *kd_features(void);

#endif
