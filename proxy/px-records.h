/* px-records.h: `rewrite:` rules on records in the proxy (docs/rules.md):
 * a Produce request a rule matches is rewritten before the broker (called
 * from px_judge), a Fetch response to a matched client before the client
 * (called from the data path with the whole response). The rewriting is
 * rule_rewrite_tree (rules/); here is the proxy's side: facts, templates,
 * frames. No I/O. */
#ifndef PX_RECORDS_H
#define PX_RECORDS_H

#include "kd-cur.h"
#include "kd-hdr.h"
#include "kd-stream-t.h"
#include "rule-t.h"

struct px_judge_in;
struct px_judged;

/* kwire's instance name for ${instance}: the host name. */
const char *px_instance_name(void);

/* Produce: rewrites the decoded request in j->tree under the rules of rs
 * that match, and turns the partitions refused by on_error: refuse into
 * refused topics of the verdict v (j->tv). Sets out->rewritten when the
 * tree changed. Returns KD_OK or KD_ENOMEM. */
int px_records_produce(struct rule_judge *j, const struct rule_set *rs,
                       const struct px_judge_in *in, struct rule_verdict *v, struct px_judged *out);

/* Whether the response to this Fetch request must be gathered and
 * rewritten: some Fetch rewrite rule of rs matches who and the request
 * header (its topics are judged on the response). */
int px_records_fetch_wanted(const struct rule_set *rs, const struct kd_req_hdr *h,
                            const struct rule_who *who);

/* Rewrites the whole Fetch response frame p[0..len) (size prefix on) of
 * version ver to a client with header facts client_id and who, into out (a
 * whole frame). Returns 1 (rewritten: out holds the frame), 0 (nothing to
 * change: out untouched), or a negative KD_E* (the response does not
 * decode). res says what was done. */
int px_records_fetch(struct rule_judge *j, const struct rule_set *rs, int16_t ver, const uint8_t *p,
                     size_t len, struct kd_view client_id, const struct rule_who *who,
                     const struct kd_topics *map, struct kd_wbuf *out, struct rule_rw_out *res);

#endif
