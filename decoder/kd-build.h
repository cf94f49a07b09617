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

/* ---- splitting a request (rules that refuse some of its topics) ----
 *
 * A request whose topics are judged apart (a Produce to an allowed and a
 * denied topic) is split: the elements of its top-level topic array that
 * are refused are taken out and the rest goes to the broker; the broker's
 * answer then gets the refused elements back, answered with their errors,
 * in request order. */

struct kd_split {
	int16_t api_key, version;
	uint32_t nelems;       /* elements of the request's topic array */
	int16_t *err;          /* per element: 0 forwarded, else its error */
	struct kd_view *names; /* per element: topic name (copies), or empty */
	uint8_t (*ids)[16];    /* per element: TopicId, or zeros */
	struct kd_wbuf denied; /* response body answering the refused elements alone */
};

/* The top-level array of a request or response tree whose elements name
 * topics (by name or TopicId): Produce's TopicData / Responses,
 * CreateTopics' Topics... NULL when there is none. */
struct kd_node *kd_build_topic_array(const struct kd_tree *t);

/* Takes out of req's topic array the elements i with err[i] != 0 (req is
 * edited in place: kd_tree_encode it to forward what is left) and fills
 * split to answer them later: msgs[i] (may be NULL) goes into their
 * ErrorMessage. nelems must be the array's element count. Returns KD_OK,
 * KD_EUNSUPPORTED (no topic array), KD_ENOMEM or KD_ELIMIT. */
int kd_build_split(struct kd_tree *req, const int16_t *err, const char *const *msgs,
                   uint32_t nelems, struct kd_split *split);

/* Writes to out the broker's response body resp_body (the answer to the
 * request kd_build_split left) with the refused elements merged back into
 * its topic array, in request order; nodes in a. Returns KD_OK or the
 * error of decoding resp_body. */
int kd_build_merge(const struct kd_split *split, const uint8_t *resp_body, size_t len,
                   struct kd_arena *a, struct kd_wbuf *out);

void kd_split_free(struct kd_split *split);

/* ---- filtering the topics of a response ---- */

enum kd_filter_verdict {
	KD_FILTER_KEEP = 0,
	KD_FILTER_DROP,  /* left out, as if it did not exist */
	KD_FILTER_ERROR, /* kept with *error (and *msg, may stay NULL) only */
};

/* Judges one element of a response's topic array: its topic name (null
 * view when it has none) and TopicId (NULL when it has none). Returns an
 * enum kd_filter_verdict; for KD_FILTER_ERROR sets *error (and may set
 * *msg, which must live until the tree is encoded). */
typedef int kd_topic_filter_fn(void *arg, struct kd_view name, const uint8_t *id, int16_t *error,
                               const char **msg);

/* Filters the topics a response lists, without per-API code: every
 * element of its top-level topic array (kd_build_topic_array: Metadata's
 * Topics, DescribeTopicPartitions' Topics, ...) is kept, left out, or kept
 * with only an error the way Kafka answers a topic the client may not
 * describe: every ErrorCode inside it set, ErrorMessage set, every array
 * inside it emptied (no partitions), TopicId zeroed. resp is edited in
 * place: kd_tree_encode it. *dropped and *errored count what fn decided.
 * Returns KD_OK (also when the response has no topic array), or a KD_E*
 * from an edit. The proxy uses it to hide the topics the rules deny from
 * Metadata answers (px-judge.c), and a tenant's view can use it the same
 * way to hide other tenants' topics. */
int kd_build_filter_topics(struct kd_tree *resp, kd_topic_filter_fn *fn, void *arg,
                           unsigned *dropped, unsigned *errored);

#endif
