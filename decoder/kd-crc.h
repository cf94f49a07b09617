/* kd-crc.h: the two checksums of Kafka record data.
 *
 * CRC-32C (Castagnoli) covers RecordBatch v2 (WIRE-NOTES.md section 7);
 * CRC-32 IEEE covers legacy messages (section 8). Both take and return the
 * finished CRC so that calls chain like zlib's crc32(): start with 0,
 * kd_crc32c(kd_crc32c(0, a, n), b, m) == kd_crc32c(0, ab, n + m). */
#ifndef KD_CRC_H
#define KD_CRC_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C with the fastest implementation this CPU has (chosen once, at
 * the first call: SSE4.2 crc32 on x86-64 when present, else a table). */
uint32_t kd_crc32c(uint32_t crc, const void *p, size_t len);

/* The portable table-driven version (always available). */
uint32_t kd_crc32c_sw(uint32_t crc, const void *p, size_t len);

/* The SSE4.2 version; only call it when kd_crc32c_hw_available(). */
uint32_t kd_crc32c_hw(uint32_t crc, const void *p, size_t len);
int kd_crc32c_hw_available(void);

/* "crc32c-sse4.2" or "crc32c-sw": what kd_crc32c uses on this machine. */
const char *kd_crc32c_impl(void);

/* CRC-32 IEEE 802.3 (zlib's crc32). */
uint32_t kd_crc32(uint32_t crc, const void *p, size_t len);

#endif
