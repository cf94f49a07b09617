/* kd-build.h: Kafka messages kwire writes itself, built from the schema
 * tables for any API and version: the answer to a request kwire refuses
 * (a rules deny or policy), as a broker would give it.
 *
 * The answer mirrors the request: every array of the response whose
 * elements are keyed like an array of the request (by topic name or id,
 * partition, group id, transactional id, coordinator key) gets one element
 * per request element, in request order, with the keys copied. Every
 * ErrorCode in the answer carries the error, every ErrorMessage the
 * message (where the version has one), every other field the schema's
 * default. No I/O. */
#ifndef KD_BUILD_H
#define KD_BUILD_H

#include "kd-cur.h"
#include "kd-tree-t.h"

/* Builds in out (nodes in a) the response body answering the decoded
 * request req (same API and version). message may be NULL. Returns KD_OK,
 * KD_EUNSUPPORTED (req did not decode, or the response is not in the
 * spec), KD_ENOMEM or KD_ELIMIT. */
int kd_build_error_body(const struct kd_tree *req, int16_t error, const char *message,
                        struct kd_arena *a, struct kd_tree *out);

/* The same as a whole response frame (INT32 size, response header with
 * correlation_id, body) appended to w. Returns KD_OK or an error as above
 * (w->err for allocation failures). */
int kd_build_error_response(const struct kd_tree *req, int32_t correlation_id, int16_t error,
                            const char *message, struct kd_arena *a, struct kd_wbuf *w);

#endif
