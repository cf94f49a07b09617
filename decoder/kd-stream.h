/* kd-stream.h: the stream decoder. One struct kd_stream per Kafka TCP
 * connection turns the bytes of both directions, fed in any split, into
 * events: requests, responses paired with their requests (FIFO of
 * in-flight requests, latency), SASL v0 opaque tokens, errors, and bytes
 * skipped while resyncing after capture gaps.
 *
 * Two ways to drive it, on the same internals:
 * - kd_stream_feed(): give it bytes as they come (the analyzer). It buffers
 *   only what it must: headers (and the first body bytes of Produce and
 *   SaslHandshake responses) when bodies are not wanted, whole frames
 *   when they are, and nothing when a whole frame lies inside one chunk.
 * - kd_stream_frame_begin() / kd_stream_frame_commit(): the proxy keeps
 *   the bytes (evbuffers) and asks the decoder about one frame at a time.
 *
 * Events go to cfg.on_event synchronously; a callback must not feed the
 * same stream (nor call it, except kd_stream_set_user). */
#ifndef KD_STREAM_H
#define KD_STREAM_H

#include "kd-stream-t.h"

/* A new stream (cfg is copied); NULL on allocation failure. */
struct kd_stream *kd_stream_new(const struct kd_stream_cfg *cfg);
/* Frees s and everything it owns; s may be NULL. */
void kd_stream_free(struct kd_stream *s);
/* Back to the state of a new stream (config kept, counters zeroed). */
void kd_stream_reset(struct kd_stream *s);

/* Feeds len bytes of direction dir, captured at ts_us (microseconds).
 * Returns KD_OK, or KD_EBROKEN when the direction was broken (by this
 * input, after an error event, or earlier; the input is then ignored),
 * or KD_ENOMEM. */
int kd_stream_feed(struct kd_stream *s, enum kd_dir dir, const uint8_t *p, size_t len,
                   uint64_t ts_us);

/* The capture lost nbytes of direction dir. A gap inside a frame whose
 * header is known only costs that frame its body (KD_EVF_GAP); otherwise
 * the direction resyncs: it resumes at the next provable frame start and
 * reports the bytes it skipped in a KD_EV_SKIP. Returns KD_OK or
 * KD_EBROKEN. */
int kd_stream_gap(struct kd_stream *s, enum kd_dir dir, uint64_t nbytes_lost);

/* Parses the size and header of the frame at p (its INT32 size), avail
 * bytes available, without consuming anything. Returns KD_OK (fi filled;
 * fi->need bytes were looked at), KD_NEED_MORE (fi->need says how many
 * bytes from p it needs at least), or a negative error: then an
 * KD_EV_ERROR was delivered and the direction is broken. The bytes need
 * not stay valid after the call except for the views fi holds (tags). */
int kd_stream_frame_begin(struct kd_stream *s, enum kd_dir dir, const uint8_t *p, size_t avail,
                          struct kd_frame_info *fi);

/* Records the frame begin parsed: a request enters the in-flight FIFO
 * (unless Produce Acks=0), a response is paired and popped, and the event
 * is delivered. frame is the whole frame (4 + fi->size bytes) to hand to
 * the callback, or NULL. ts_us is the time of the frame's last byte (and
 * of its first, unless fi->ts_us is set). Returns KD_OK or KD_EBROKEN. */
int kd_stream_frame_commit(struct kd_stream *s, enum kd_dir dir, struct kd_frame_info *fi,
                           const uint8_t *frame, uint64_t ts_us);

/* Who owns a request's user value. A request that awaits an answer enters
 * the in-flight FIFO with a caller's value (kd_frame_info.user before
 * commit, or kd_stream_set_user from its KD_EV_REQUEST callback), and
 * leaves it exactly once, handing the value back:
 * - with the KD_EV_RESPONSE (or server KD_EV_OPAQUE) that answers it, in
 *   ev.req.user;
 * - in a KD_EV_POPPED event, without an answer: an older request skipped
 *   by a response to a later one (KD_EVF_CID_SKIP, delivered before that
 *   response), pushed out of a full FIFO (KD_EVF_OVERFLOW), a SASL token
 *   still in flight when the exchange ended (KD_EVF_SASL_END), a local
 *   request reached by a response behind it (KD_EVF_LOCAL: its answer is
 *   due now), or kd_stream_drain();
 * - through kd_stream_pop_local(), for a local request at the head.
 * kd_stream_free() and kd_stream_reset() forget what is left: a caller
 * whose values own memory calls kd_stream_drain() first. This FIFO is the
 * only list of in-flight requests: the proxy and the analyzer keep their
 * per-request state behind the user value. */

/* During the KD_EV_REQUEST (or client KD_EV_OPAQUE) callback of a request
 * that entered the FIFO: sets its user value. -1 when the event pushed
 * nothing (Produce Acks=0, the last SASL token). */
int kd_stream_set_user(struct kd_stream *s, uint64_t user);
/* When the oldest in-flight request is a local one (KD_EVF_LOCAL), pops it
 * into *out and returns 1; else 0. Not from a callback. */
int kd_stream_pop_local(struct kd_stream *s, struct kd_req_info *out);
/* Pops every in-flight request, each announced by a KD_EV_POPPED event
 * (flags 0, or KD_EVF_LOCAL). Not from a callback. */
void kd_stream_drain(struct kd_stream *s);
/* Requests in flight (local ones included). */
uint32_t kd_stream_inflight(const struct kd_stream *s);

/* Counters; valid until the next call on s. */
const struct kd_stream_stats *kd_stream_stats(const struct kd_stream *s);
/* Whether direction dir is broken (1) or resyncing (2), else 0. */
int kd_stream_dir_state(const struct kd_stream *s, enum kd_dir dir);
/* Whether the client side is in SASL opaque-token mode. */
int kd_stream_in_sasl(const struct kd_stream *s);
/* For a caller that answers the SASL exchange itself (kwire terminating
 * SASL): the SaslHandshake v0 it answered with success makes the client's
 * next frames tokens of mech (enum kd_sasl_mech); KD_SASL_MECH_NONE ends
 * the exchange (normal framing again). Tokens committed with KD_EVF_LOCAL
 * await no server token: they are local entries of the FIFO, answered in
 * their place (kd_stream_pop_local). */
void kd_stream_sasl_v0(struct kd_stream *s, int mech);

/* Short name of an event type ("request", ...). */
const char *kd_ev_type_name(int type);

#endif
