/* kd-redact.h: a frame with its secrets zeroed, for writers of captures
 * (the proxy's tap, proxy/px-tap.c).
 *
 * Every field the schema tables mark sensitive (SaslAuthenticate's
 * AuthBytes, CreateDelegationToken's Hmac, AlterUserScramCredentials'
 * Salt and SaltedPassword, ...) has its value bytes set to zero, in place:
 * lengths, and so the frame's layout, stay as they were, so that a reader
 * still decodes the frame (and sees a token of the same length, all
 * zeros). A SASL v0 token frame (no Kafka header, KIP-43) has its whole
 * payload zeroed. No allocation beyond the arena given, no I/O. */
#ifndef KD_REDACT_H
#define KD_REDACT_H

#include <stddef.h>
#include <stdint.h>

struct kd_arena;

/* frame: one whole frame, its 4-byte size prefix included, len bytes.
 * key/ver: the API key and version (a response: its request's); key -1:
 * a SASL v0 token. is_request: the direction. Frames of APIs without
 * sensitive fields are left alone. A frame of such an API that does not
 * decode has everything after its header zeroed (the secret could be
 * anywhere). a: scratch for the decode (reset before returning). Returns
 * 1 when bytes were zeroed, else 0. */
int kd_redact_frame(uint8_t *frame, size_t len, int16_t key, int16_t ver, int is_request,
                    struct kd_arena *a);

#endif
