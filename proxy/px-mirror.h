/* px-mirror.h: `mirror:` rules in the proxy (docs/rules.md "mirror").
 *
 * The records of Produce requests a mirror rule matches are copied to the
 * rule's cluster through a px_ksink (px-ksink.h), and only once the main
 * cluster has acknowledged them:
 *
 *   worker:  request judged (the rules decoded it) -> a job: a copy of the
 *            frame, the (rule, topic) pairs matched; response bytes copied
 *            into the job as they are forwarded; at the response's last
 *            byte the job is queued (or, lost with its connection, freed)
 *   mirror thread: decodes request and response; the partitions answered
 *            without error have their records produced to the sink, except
 *            transactional batches, held by producer id until an EndTxn
 *            (also a job) commits them or aborts them
 *
 * The forwarding path only copies bytes (into buffers from a pool) and
 * takes one lock per job, waking the mirror thread once per round of jobs;
 * all decoding, decompression and producing is on the mirror thread. A
 * sink whose cluster is down (px_ksink_down) or whose queue is nearly full
 * gets nothing: the records it would get are counted from their batch
 * headers alone (kd-rec-entry.h) and dropped, a transaction's at its end
 * (aborted ones are counted aborted). What
 * kwire holds (jobs waiting for answers or for the thread, held
 * transactions) is bounded by the rules' queue_bytes: over it a job is
 * dropped and its records counted, with a warning at most once a minute.
 * Sinks are made by the mirror thread, at the first job for a rule. */
#ifndef PX_MIRROR_H
#define PX_MIRROR_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct kd_wbuf;
struct kd_frame_info;
struct kd_topics;
struct px_mirror;
struct px_mjob;
struct rule_set;

/* log(arg, level, msg): warnings (any thread). topics: the proxy's topic
 * id -> name map. NULL when out of memory or the thread cannot start. */
struct px_mirror *px_mirror_new(void (*log)(void *arg, int level, const char *msg), void *arg,
                                const struct kd_topics *topics);
/* Processes what is queued, flushes the sinks (each for at most 5 s),
 * frees; *m = NULL. Every job must have been done or lost before. */
void px_mirror_free(struct px_mirror **m);

/* A request forwarded (act: PX_J_FORWARD, PX_J_SPLIT or PX_J_REWRITE) under rs, whose
 * header is in fi, from who: a job when it is a Produce or an EndTxn and rs
 * has mirror rules, else NULL (also when kwire's hold budget is spent: the
 * request is then counted in kwire_mirror_requests_dropped_total). The
 * request's bytes are then given, as they are forwarded, to
 * px_mirror_req_buf; which topics a rule matches is decided on the mirror
 * thread, so the forwarding path never decodes a Produce for the mirror.
 * Worker thread. */
struct rule_who;
struct px_mjob *px_mirror_request(struct px_mirror *m, struct rule_set *rs, int act,
                                  const struct kd_frame_info *fi, const struct rule_who *who);
/* Copies n bytes of src from off into dst, also from a buffer whose
 * start is frozen (a bufferevent's output). 0, or -1 when src is short. */
int px_mirror_copy(struct evbuffer *src, size_t off, void *dst, size_t n);
/* n request bytes from src at off, in order. */
void px_mirror_req_buf(struct px_mjob *job, struct evbuffer *src, size_t off, size_t n);
/* The request as it was forwarded, whole, instead (PX_J_REWRITE: the main
 * cluster stores the rewritten records, so the mirror copies those). */
void px_mirror_req_frame(struct px_mjob *job, const uint8_t *p, size_t len);
/* n response bytes, from src at off or from p, as they are forwarded. */
void px_mirror_resp_buf(struct px_mjob *job, struct evbuffer *src, size_t off, size_t n);
void px_mirror_resp_mem(struct px_mjob *job, const void *p, size_t n);
/* The response is complete (or none is due: acks=0): queued for the
 * mirror thread. *job = NULL. */
void px_mirror_done(struct px_mjob **job);
/* The request will never be answered (connection lost): its records are
 * not mirrored (counted as unacknowledged). *job = NULL; job may be NULL. */
void px_mirror_lost(struct px_mjob **job);

/* Blocks until every job queued so far is processed (tests). */
void px_mirror_sync(struct px_mirror *m);

/* /metrics lines; nothing when m is NULL. */
void px_mirror_metrics(struct px_mirror *m, struct kd_wbuf *w);

#endif
