/* kd.h: small decoder-wide helpers. */
#ifndef KD_H
#define KD_H

#include <stddef.h>

#include "kd-t.h"

/* A short English text for a KD_* return code; never NULL. */
const char *kd_strerror(int rc);

/* Features compiled into the decoder, as a space-separated list
 * (e.g. "gzip snappy lz4 zstd crc32c-sse4.2"). Static storage. */
const char *kd_features(void);

/* Formats an error message into err[errlen] (snprintf rules); does
 * nothing when err is NULL or errlen is 0. Every module's "char *err,
 * size_t errlen" out-parameter is filled through this. */
void kd_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
