/* kd-throttle.h: where a response carries ThrottleTimeMs, and whether the
 * client throttles itself (KIP-219), from the schema tables. No I/O.
 *
 * KIP-219 (Kafka 2.0) changed quota throttling: from the versions listed
 * in kd-throttle.c, a broker sends a throttled response at once, with
 * ThrottleTimeMs set, and then does not read the connection for that time
 * (the client is expected to wait too); before them, the broker held the
 * response back for the throttle time instead. */
#ifndef KD_THROTTLE_H
#define KD_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

/* Whether a response of (api_key, version) is sent before throttling
 * (KIP-219: 1), or held back for the throttle time (0). */
int kd_throttle_kip219(int16_t api_key, int16_t version);

/* The body offset of the top-level ThrottleTimeMs of a response of
 * (api_key, version), whose body's first len bytes are body (a prefix is
 * enough: the bytes before the field). Returns the offset (>= 0; the
 * field's 4 bytes may lie beyond len), KD_NEED_MORE when the prefix ends
 * before the field, KD_EUNSUPPORTED when the version has no such field, or
 * another negative KD_E* when the body does not walk. */
long kd_throttle_offset(int16_t api_key, int16_t version, const uint8_t *body, size_t len);

/* Whether ThrottleTimeMs is the body's first field (then its offset is 0
 * and no walk is needed): 1, 0, or 0 when the version has none. */
int kd_throttle_first(int16_t api_key, int16_t version);

/* Sets ThrottleTimeMs of the whole response frame (4-byte size, header of
 * hdr_len bytes, body) to ms when it holds less. Returns 1 (set), 0 (it
 * already held at least ms), or a negative KD_E* (no field, or the body
 * does not walk): the frame is then unchanged. */
int kd_throttle_raise(int16_t api_key, int16_t version, uint8_t *frame, size_t len, size_t hdr_len,
                      uint32_t ms);

#endif
