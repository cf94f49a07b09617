/* px-judge.h: the proxy's decision point. A request frame is judged by the
 * rules in force (rules/) before it is forwarded, and the judgement says
 * what the data path does with it:
 *
 *   PX_J_FORWARD  forward it as it is;
 *   PX_J_ANSWER   do not forward it: kwire answers with out (a whole
 *                 response frame built from the schema, kd-build.h);
 *   PX_J_DROP     do not forward it and answer nothing (a refused Produce
 *                 with acks=0, which expects no answer);
 *   PX_J_SPLIT    forward out (the request without its refused topics)
 *                 and merge the refused topics' answers into the broker's
 *                 response (px_judge_merge);
 *   PX_J_CLOSE    a request to refuse whose body does not decode (so no
 *                 answer can mirror it): close the connection, as a broker
 *                 closes on a request it cannot parse;
 *   PX_J_REWRITE  forward out (the request with its records rewritten by
 *                 `rewrite:` rules) instead of the frame.
 *
 * Quota hits are returned with their keys so the caller can count bytes
 * and requests (rule_quota_record) and throttle. No I/O; the scratch is a
 * struct rule_judge (rule.h), one per worker thread. */
#ifndef PX_JUDGE_H
#define PX_JUDGE_H

#include "kd-arena.h"
#include "kd-build.h"
#include "kd-stream-t.h"
#include "kd-tree-t.h"
#include "rule-t.h"

enum px_judge_act {
	PX_J_FORWARD = 0,
	PX_J_ANSWER,
	PX_J_DROP,
	PX_J_SPLIT,
	PX_J_CLOSE,   /* refuse a request whose body does not decode: close, as a broker does */
	PX_J_REWRITE, /* forward out: the request with its records rewritten (px-records.h) */
};

#define PX_JUDGE_KEY 128

struct px_judged {
	int act; /* enum px_judge_act */
	struct kd_wbuf out;
	struct kd_split split;      /* PX_J_SPLIT */
	int16_t error;              /* the (first) refusal's error */
	const struct rule *rule;    /* ... and its rule (valid while the set is held) */
	unsigned nrefused, ntopics; /* topics refused / named */
	char topic[256];            /* the first refused topic, for logs */
	struct rule_hit quotas[RULE_MAX_HITS];
	char keys[RULE_MAX_HITS][PX_JUDGE_KEY];
	unsigned nquotas;
	double qbytes[RULE_MAX_HITS]; /* what a Produce counts against each
	                                 (rule_quota_produce_bytes) */
	struct rule_hit audits[RULE_MAX_HITS];
	unsigned naudits;
	/* Records rewritten by `rewrite:` rules (px-records.h); with
	 * PX_J_SPLIT, out carries the rewritten records too. */
	uint8_t rewritten;
	unsigned rw_records, rw_passed, rw_refused;
	char rw_msg[320];
	uint8_t filter; /* forwarded, and its answer's topics are filtered (px_filter_new) */
};

/* What the data path knows of the request besides its bytes. */
struct px_judge_in {
	const uint8_t *frame; /* the whole frame (size prefix on), or NULL */
	size_t len;
	const struct kd_frame_info *fi; /* from kd_stream_frame_begin */
	struct rule_who who;            /* the client, its principal, the listener */
	const struct kd_topics *topics; /* topic id -> name, or NULL */
};

/* Judges one request under rs. The body is decoded when rs needs it for
 * this API (rule_set_needs_body): then in->frame must hold the whole
 * frame. Fills out (its buffers are reused: call px_judged_reset between
 * requests). Returns KD_OK, or KD_ENOMEM. */
int px_judge(struct rule_judge *j, const struct rule_set *rs, const struct px_judge_in *in,
             struct px_judged *out);

/* px_judge_walk(): the request must be gathered whole and judged by
 * px_judge(). */
#define PX_JUDGE_GATHER 101
/* Pieces of a request px_judge_walk() reads in place (more: gathered). */
#define PX_JUDGE_SEGS 512

/* Judges a request whose whole frame (total bytes) is at the front of buf,
 * in place, when the rules read only its topic names (rule_judge_walk):
 * it is neither copied into one piece nor decoded. Returns PX_J_FORWARD
 * (out filled as px_judge fills it), PX_JUDGE_GATHER (some topic is
 * refused, or the rules read more than names, or the body does not walk:
 * gather it and call px_judge, which counts the hits once), or -1 when out
 * of memory. */
struct evbuffer;
int px_judge_walk(struct rule_judge *j, const struct rule_set *rs, const struct px_judge_in *in,
                  struct evbuffer *buf, uint32_t total, struct px_judged *out);

/* Whether rs wants the whole frame of the request in (its header and who;
 * frame is not looked at): only when a rule that needs the body can apply
 * to it by its header facts. The others keep streaming. */
int px_judge_needs_frame(const struct rule_set *rs, const struct px_judge_in *in);

/* The broker's response frame to a split request, with the refused topics
 * merged back, written to out (a whole frame: size, header, body). Returns
 * KD_OK or a KD_E* when the response does not decode. */
int px_judge_merge(struct rule_judge *j, const struct kd_split *split, const uint8_t *frame,
                   size_t len, struct kd_wbuf *out);

/* ---- answers whose topics the rules filter (Metadata for all topics) ---- */

/* What filtering an answer needs of its request: the rule set it was
 * judged under (a reference) and its header facts (copied). */
struct px_filter {
	struct rule_set *rs;
	struct rule_req req; /* header facts; views into the copies below */
	char client_id[256];
	char principal[256];
};

/* The filter for the answer to the request j just judged under rs (when
 * px_judged.filter is set), or NULL when out of memory. */
struct px_filter *px_filter_new(struct rule_set *rs, const struct rule_judge *j);
void px_filter_free(struct px_filter **f);

/* The broker's response frame (len bytes, size prefix on) to a request
 * with filter f, with the topics the rules deny left out or shown with
 * their error (the deny rule's `metadata:`; kd_build_filter_topics), into
 * out. Topic ids without a name are named through map (may be NULL).
 * Returns 1 (out holds the new frame), 0 (nothing to change: forward the
 * frame as it is) or a negative KD_E* (the response does not decode). */
int px_judge_filter(struct rule_judge *j, struct px_filter *f, const uint8_t *frame, size_t len,
                    const struct kd_topics *map, struct kd_wbuf *out, unsigned *dropped,
                    unsigned *errored);

void px_judged_reset(struct px_judged *out);
void px_judged_free(struct px_judged *out);

#endif
