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

/* Appends (prepend 0) or prepends (1) the frame in w to out without
 * copying it: out takes w's memory and frees it once written. A rewritten
 * frame is sent once: the next one gets a buffer of its own size, reserved
 * at once, instead of being copied into a new chain. w is left empty
 * either way. Returns 0, or -1 when out could not take it (out of memory;
 * the frame is lost: the caller handles it as a failed rewrite). */
struct evbuffer;
int px_records_hand_over(struct evbuffer *out, struct kd_wbuf *w, int prepend);

/* **Decision** (docs/rules.md, "Speed"): glibc's malloc gives memory back
 * to the kernel, and takes big blocks from mmap, below thresholds it
 * raises only as it sees big blocks freed; a proxy that gathers and
 * rewrites frames of hundreds of kilobytes then faults the same pages in
 * again for every frame. Called once at start, this sets the thresholds
 * to the ceilings glibc's own adjustment reaches (32 MiB for mmap, 64 MiB
 * kept before trimming), unless MALLOC_MMAP_THRESHOLD_,
 * MALLOC_TRIM_THRESHOLD_ or a glibc.malloc tunable says otherwise. */
void px_malloc_tune(void);

#endif
