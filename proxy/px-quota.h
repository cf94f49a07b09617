/* px-quota.h: quotas applied by the proxy (docs/rules.md, "Quotas in the
 * proxy"). The rates and throttle times come from rules/rule-quota.c (the
 * code `kwire decode --rules` simulates with); this module counts what the
 * data path (px-conn.c) forwards against the quota hits of the judgement
 * (px-judge.h), remembers the Fetch quotas that wait for a response's
 * size, raises ThrottleTimeMs in responses, and keeps the metrics. The
 * data path mutes the client (KIP-219) or holds the response back (older
 * versions) for the time these calls return.
 *
 *   c2s: px_quota_request()   one request, and a Produce's size, counted
 *   s2c: px_quota_response()  a Fetch response's size counted; the frame's
 *                             ThrottleTimeMs raised (px_quota_patch)
 *
 * Every throttle is decided in px_quota_throttled(): the one place that
 * logs, counts and records it (px_audit_throttle). Thread-safe: the rates are shared
 * by all workers. */
#ifndef PX_QUOTA_H
#define PX_QUOTA_H

#include <stddef.h>
#include <stdint.h>

#include "kd-t.h"
#include "kd-cur.h"
#include "px-judge.h"

struct px;
struct px_quota;
struct rule_set;

/* The quota hits of one request that wait for its response: the
 * throttle its request asked for, and the Fetch quotas its response's
 * size counts against (with the set they belong to held). Lives in the
 * in-flight request (struct px_req); NULL when no quota matched. */
struct px_qhit {
	const struct rule *rule;
	char key[PX_JUDGE_KEY];
};
struct px_qreq {
	struct rule_set *rs; /* held while fetch hits wait */
	uint32_t ms;         /* the longest throttle so far */
	uint8_t done;        /* the response was counted and patched */
	uint8_t held;        /* pre-KIP-219: the response is held until hold_us */
	uint64_t hold_us;
	unsigned nfetch;
	struct px_qhit fetch[];
};

/* Who a throttle applies to, for logs, metrics and audit. */
struct px_quota_who {
	const char *client_addr;
	struct kd_view client_id;
	int16_t api_key, api_version;
	const char *principal; /* "" none */
	int32_t broker_id;     /* -1: bootstrap */
	int32_t correlation_id;
};

struct px_quota *px_quota_new(unsigned max_keys);
void px_quota_free(struct px_quota **q);

/* Counts a request the rules judged (jd: its quota hits and keys) under
 * rs at now_us, forwarded (or answered by kwire: it still counts as a
 * request). Returns the longest throttle (ms) its counts ask for, and sets
 * *qp (to free with px_qreq_free) when the response has to be seen: a
 * throttle to put in it, or Fetch quotas to count it against. Returns -1
 * when out of memory. */
long px_quota_request(struct px *px, struct px_quota *q, struct rule_set *rs,
                      const struct px_judged *jd, const struct px_quota_who *who, int forwarded,
                      uint64_t now_us, struct px_qreq **qp);

/* Counts a response of size bytes (the frame's size field) against the
 * request's Fetch quotas. Returns the throttle the response carries: the
 * longest of the request's and these. */
uint32_t px_quota_response(struct px *px, struct px_quota *q, struct px_qreq *qr,
                           const struct px_quota_who *who, uint32_t size, uint64_t now_us);

void px_qreq_free(struct px_qreq **qp);

/* The quota keys a connection's last request counted against, to look at
 * before its next request is read (px_quota_wait). */
struct px_qlast;

/* Remembers jd's quota hits (under rs) as conn's last. Returns 0 or -1
 * (out of memory). */
int px_quota_remember(struct px_qlast **lp, struct rule_set *rs, const struct px_judged *jd);

/* When (px_now_us clock) the latest throttle of any key of l ends, if
 * after now_us; else 0. A budget is per key, not per connection: a client
 * whose other connection was throttled waits for that throttle before its
 * next request here is read and counted. Counting it at once, into a
 * window already over quota, would let every connection of a key send one
 * request into each throttle, and the key run over its quota by that much
 * for good (docs/rules.md). */
uint64_t px_quota_wait(struct px_quota *q, const struct px_qlast *l, uint64_t now_us);
void px_qlast_free(struct px_qlast **lp);

/* When a connection's quota timer must fire (px_now_us clock; 0: none)
 * for a mute until mute_us and an answer held until hold_us (0: neither):
 * the earlier, even one already past (then at once). A reader
 * that stopped on a mute or hold looked at the clock before, and may have
 * been descheduled until after it ended: with no timer for it, nothing
 * would run it again (a client with all its requests in flight, waiting
 * for their answers, sends nothing more). The timer's callback clears the
 * times that are past. */
uint64_t px_quota_timer_at(uint64_t mute_us, uint64_t hold_us);

/* The one place a throttle is decided: rule rule's quota for key asked
 * for ms of throttle on a request of who (kind: enum rule_quota_kind).
 * Counts it in the metrics, logs it (debug) and records it in the audit
 * trail's default sink (px_audit_throttle). */
void px_quota_throttled(struct px *px, struct px_quota *q, const struct px_quota_who *who,
                        const struct rule *rule, const char *key, int kind, uint32_t ms);

/* What the data path did with a throttle: muted a client (KIP-219), held
 * a response back (older versions), raised a response's ThrottleTimeMs. */
enum { PX_Q_MUTED = 0, PX_Q_HELD, PX_Q_PATCHED, PX_Q_NPATCH };
void px_quota_note(struct px_quota *q, int what);

/* The /metrics lines of the quotas (Prometheus text). */
void px_quota_metrics(struct px_quota *q, struct kd_wbuf *w);

#endif
