/* rule.h: kwire's rules engine. Types in rule-t.h; the file format in
 * docs/rules.md.
 *
 *	char err[512];
 *	struct rule_set *rs = rule_set_load("rules.yaml", err, sizeof(err));
 *	if (!rs) ... err is "rules.yaml:LINE:COL: message" ...
 *	struct rule_req req = {...facts...};
 *	struct rule_topic_verdict per_topic[n];
 *	struct rule_verdict v = {.topics = per_topic};
 *	rule_eval(rs, &req, &v);
 *	rule_set_unref(&rs);
 *
 * The proxy, the analyzer (`kwire decode --rules`) and `kwire rules` call
 * this one rule_eval(). A loaded set is immutable and may be shared by any
 * number of threads; rule_set_ref()/rule_set_unref() keep it alive while a
 * request judged under it is in flight (live reload swaps sets). */
#ifndef RULE_H
#define RULE_H

#include <stdio.h>

#include "rule-t.h"

/* Loads and compiles a rules file. NULL on error, with
 * "FILE:LINE:COL: message" (or "FILE: message") in err. The set starts
 * with one reference. */
struct rule_set *rule_set_load(const char *path, char *err, size_t errlen);
/* The same from memory; name is used in messages and as the path. */
struct rule_set *rule_set_load_mem(const char *yaml, size_t len, const char *name, char *err,
                                   size_t errlen);
void rule_set_ref(struct rule_set *rs);
/* Drops a reference; the last one frees the set. *rs = NULL. */
void rule_set_unref(struct rule_set **rs);

/* Whether a request of api_key may meet a rule that needs body facts
 * (topics, acks, groups, records...) or that can refuse it (whose answer
 * mirrors the body). When 0, the caller may judge it on its header alone
 * (have_body = 0). */
int rule_set_needs_body(const struct rule_set *rs, int16_t api_key);

/* Whether this request, known by its header facts in req (api_key,
 * api_version, client_id, principal, source, broker_id; the rest is not
 * looked at), may meet a rule that needs its body (see
 * rule_set_needs_body): when 0, judging it on its header alone gives the
 * verdict the body would. Finer than rule_set_needs_body, and what the
 * proxy asks before gathering a request whole. */
int rule_set_needs_body_req(const struct rule_set *rs, const struct rule_req *req);

/* Whether some rule reads single records (record_bytes matchers,
 * max_record_bytes and headers policies), so that facts must decompress
 * Produce batches (rule_facts_read's records argument). */
int rule_set_needs_records(const struct rule_set *rs);

/* Reads the facts of a decoded request tree t into f->req: topics (names;
 * ids resolved through map, which may be NULL), their records' codecs,
 * counts and bytes (and, when records is set, the largest record, which
 * decompresses), groups, transactional ids, Acks, CreateTopics' partitions
 * and replication factor; header facts are left for the caller. A tree
 * that did not decode gives header facts only (have_body 0). Returns KD_OK
 * or KD_ENOMEM. */
struct kd_tree;
int rule_facts_read(struct rule_facts *f, const struct kd_tree *t, const struct kd_topics *map,
                    int records, struct kd_arena *a);
void rule_facts_free(struct rule_facts *f);

/* Reads only the topics of a request body given in pieces (segs, in
 * order; the body is all of them) with the streaming walker (kd-walk.h),
 * without decoding it or holding it in one piece: topic names, and topic
 * ids resolved through map (else "topic-id:..."), in request order, as
 * rule_facts_read names them. Records, groups, transactional ids and Acks
 * stay unknown (record counts and bytes -1). Returns KD_OK (have_body
 * set), or a negative KD_E* when the body does not walk or a name is too
 * long to capture (then read it whole with rule_facts_read). */
int rule_facts_walk(struct rule_facts *f, int16_t api_key, int16_t version,
                    const struct kd_view *segs, unsigned nsegs, const struct kd_topics *map,
                    struct kd_arena *a);

/* Whether every rule that needs the body of requests of api_key reads
 * nothing of it but topic names (access and quota rules with topic
 * matchers; not policies, nor audits that log): then rule_judge_walk() judges such a request
 * as rule_judge() would, as long as nothing is refused. */
int rule_set_names_only(const struct rule_set *rs, int16_t api_key);

/* Judges req. v->topics, when not NULL, has req->ntopics entries and is
 * filled; everything else in v is overwritten. Counts hits. Returns
 * v->error. Thread-safe. */
int16_t rule_eval(const struct rule_set *rs, const struct rule_req *req, struct rule_verdict *v);

/* Whether the answer to req (its facts read) must have its topics
 * filtered by the access rules (rule_topic_denied): a Metadata request
 * for all topics (it names none) that an access rule with a topic
 * matcher and `deny` may apply to by its header facts. */
int rule_set_filters_topics(const struct rule_set *rs, const struct rule_req *req);

/* The access rule that denies topic name to a request like req (its
 * header facts; its topics are not looked at), as if req named that topic
 * alone, or NULL when the topic is not denied. Sets *error to the deny's
 * error, counts a hit (unless req->quiet). Whether the topic is hidden or
 * shown with the error is the rule's `metadata:` (meta_show). */
const struct rule *rule_topic_denied(const struct rule_set *rs, const struct rule_req *req,
                                     struct kd_view name, int16_t *error);

/* Whether rule matches req, for topic index topic (-1: request-level).
 * When it does not and why is not NULL, why gets the first matcher that
 * failed ("topic", "client_id"...). Counts nothing. */
int rule_matches(const struct rule *rule, const struct rule_req *req, int topic, const char **why);

/* The error a deny rule answers for (api_key): its own, or for `deny:
 * true`, the authorization error Kafka uses for the resource that API
 * names (TOPIC_, GROUP_, TRANSACTIONAL_ID_ or CLUSTER_AUTHORIZATION_FAILED). */
int16_t rule_deny_error(const struct rule *rule, int16_t api_key);

/* The key a quota hit is counted under, written to buf (NUL-terminated,
 * truncated to cap): the client id, principal, source address or topic
 * name, or "*" for shared budgets. Returns the length. */
size_t rule_quota_key(const struct rule_hit *hit, const struct rule_req *req, char *buf,
                      size_t cap);

/* Judges one request, the way the proxy and the analyzer both do: decodes
 * body (the bytes after the request header h, or NULL when they are not
 * at hand) when some rule needs it for this API, reads the facts (topic ids
 * resolved through map, which may be NULL), adds the header facts (h and
 * who), and evaluates into v, whose per-topic verdicts are j->tv. The
 * request's facts (j->facts.req) and decoded body (j->tree, root NULL when
 * not decoded) stay valid until the next call. Returns KD_OK or
 * KD_ENOMEM. */
struct kd_req_hdr;
int rule_judge(struct rule_judge *j, const struct rule_set *rs, const struct kd_req_hdr *h,
               const uint8_t *body, size_t len, const struct kd_topics *map,
               const struct rule_who *who, struct rule_verdict *v);
void rule_judge_free(struct rule_judge *j);

/* ---- rewrite: records (rule-rewrite.c) ---- */

/* Whether some records rewrite rule of rs rewrites direction dir
 * (enum rule_rw_dir). */
int rule_set_rewrites(const struct rule_set *rs, int dir);
/* Whether a records rewrite rule of dir may match a request with these
 * header facts (req without topics): all its request-level matchers match
 * (its topic matchers are judged per topic, later). */
int rule_rewrite_may_apply(const struct rule_set *rs, int dir, const struct rule_req *req);
/* The rule's directions (enum rule_rw_dir bits), 0 for other rules. */
int rule_rewrite_dirs(const struct rule *rule);

/* Rewrites, in place, the records of tree t (w: buffers reused from call
 * to call, e.g. rule_judge.rw): a decoded Produce request
 * (dir RULE_RW_PRODUCE) or Fetch response (RULE_RW_FETCH). Each element of
 * its topic array is judged with req's request-level facts and its own
 * topic (a TopicId named through map); the rewrite rules of dir that match
 * apply in file order: headers (remove, set, add), then masks of JSON
 * values. A partition whose records cannot be rewritten follows on_error:
 * pass leaves it (or the record) as it is; refuse marks the Produce topic
 * in out->err, or answers the Fetch partition INVALID_RECORD without
 * records. Returns KD_OK or KD_ENOMEM. */
int rule_rewrite_tree(struct rule_rewriter *w, const struct rule_set *rs, int dir,
                      struct kd_tree *t, const struct rule_req *req, const struct kd_topics *map,
                      const struct rule_rw_ctx *ctx, struct rule_rw_out *out);
void rule_rewriter_free(struct rule_rewriter *w);
/* With w->defer set, rule_rewrite_tree leaves the new records of the
 * partitions it rewrote in w (the tree keeps the old ones) until one of
 * these, before the tree or w is used again:
 * rule_rewrite_commit puts them into the tree (kd_node_set_str), for a
 * caller that edits or splits it further; rule_rewrite_encode appends the
 * body of t with them to out: the body's own bytes with each rewritten
 * RECORDS field (and its length prefix) replaced, or, when the tree had
 * other edits or a field's prefix is not where the body says,
 * kd_tree_encode of the committed tree. Both return KD_OK or a KD_E*. */
int rule_rewrite_commit(struct rule_rewriter *w, struct kd_tree *t);
int rule_rewrite_encode(struct rule_rewriter *w, struct kd_tree *t, struct kd_wbuf *out);
/* A records rule's masks, for `kwire decode --rules`: how many; mask k's
 * path as written, with what it does to a value in *done ("replaced",
 * "hashed", "dropped"); and how many values of JSON value p[0..len) it
 * names (0 when p is not JSON; scratch is reused). */
unsigned rule_rewrite_nmasks(const struct rule *rule);
/* Whether a records rule has on_error: refuse (the first such rule that
 * applies to a topic is the one that refuses it). */
int rule_rewrite_refuses(const struct rule *rule);
const char *rule_rewrite_mask_path(const struct rule *rule, unsigned k, const char **done);
struct kd_wbuf;
int rule_rewrite_mask_hits(const struct rule *rule, unsigned k, const uint8_t *p, size_t len,
                           struct kd_wbuf *scratch);
/* The rule's records action, for `kwire rules check`. */
void rule_rewrite_dump(const struct rule *rule, FILE *f);

/* Judges a request on its topic names read by the streaming walker
 * (rule_facts_walk over body, in pieces) when rule_set_names_only() holds
 * for its API: the request is never held in one piece nor decoded. On
 * KD_OK, v is the verdict rule_judge() would give, but without a decoded
 * body (j->tree.root NULL): a caller that must answer a refusal or split
 * the request judges it again with rule_judge(), with j->quiet set so
 * that the hits are not counted twice. KD_EUNSUPPORTED when the rules read
 * more than names, another KD_E* when the body does not walk (then
 * rule_judge() decides). */
int rule_judge_walk(struct rule_judge *j, const struct rule_set *rs, const struct kd_req_hdr *h,
                    const struct kd_view *body, unsigned nsegs, const struct kd_topics *map,
                    const struct rule_who *who, struct rule_verdict *v);

/* Fills the header facts of req from the request header h and who. */
void rule_req_header(struct rule_req *req, const struct kd_req_hdr *h, const struct rule_who *who);

/* Whether rule_judge() would decode the body of the request with header
 * h from who (rule_set_needs_body_req): the proxy gathers such a request
 * whole before judging it, and streams the others. */
int rule_judge_needs_body(const struct rule_set *rs, const struct kd_req_hdr *h,
                          const struct rule_who *who);

/* ---- text (kwire rules check / explain, /rules) ---- */

/* Writes the compiled set, one rule per block, in the file's own
 * vocabulary. */
void rule_set_dump(const struct rule_set *rs, FILE *f);
/* Writes one rule's matchers as "api=Produce topic=audit.*" */
void rule_match_dump(const struct rule_match *m, FILE *f);
/* Section name ("access", ...). */
const char *rule_section_name(int section);

/* ---- parsing helpers shared with the command line ---- */

/* Parses an API name ("Produce"), key ("0") or either with a version
 * range after '@' ("Fetch@13+", "Produce@3-8"). Returns 0 or -1. */
int rule_parse_api(const char *s, struct rule_api *out);
/* "1MiB", "500", "1.5kB" -> bytes. Returns 0 or -1. */
int rule_parse_size(const char *s, int64_t *out);
/* An IPv4/IPv6 address into family (4/6) and 16 bytes. Returns 0 or -1. */
int rule_parse_addr(const char *s, uint8_t *family, uint8_t addr[16]);
/* A codec name (none, gzip, snappy, lz4, zstd) -> enum kd_codec, or -1. */
int rule_codec_id(const char *s);
/* An error code by Kafka's name ("TOPIC_AUTHORIZATION_FAILED") or number;
 * -32768 when unknown. */
int16_t rule_error_code(const char *s);

/* ---- quotas (rule-quota.c) ---- */

/* Rate state of every (quota rule, key) a ruleset's quotas have met:
 * Kafka's sampled rate (KIP-13): `samples` windows of `sample_ms`, the
 * throttle X = (O - T) / T * W. Thread-safe; bounded in keys (the least
 * recently used key is forgotten first). Kept across reloads by name. */
struct rule_quotas;

struct rule_quotas *rule_quotas_new(unsigned max_keys);
void rule_quotas_free(struct rule_quotas **q);

enum rule_quota_kind {
	RULE_Q_PRODUCE = 0, /* bytes in */
	RULE_Q_FETCH,       /* bytes out */
	RULE_Q_REQUESTS,    /* requests */
};

/* Records amount for (rule, key) at now_ms and returns the throttle in ms
 * that the rate now asks for (0: within quota). Request-rate throttles are
 * capped at the window (KIP-124). */
uint32_t rule_quota_record(struct rule_quotas *q, const struct rule *rule, const char *key,
                           size_t keylen, int kind, double amount, int64_t now_ms);
/* When the latest throttle of (rule, key) ends (ms, on rule_quota_record's
 * clock), or 0 when it was never throttled (or is forgotten). A request of
 * the key that comes before then, on any connection, comes while the key
 * is throttled. */
int64_t rule_quota_until(struct rule_quotas *q, const struct rule *rule, const char *key,
                         size_t keylen);
/* The bytes a Produce request counts against the produce quota of hit,
 * as a broker counts them (KafkaApis records the request's size): size
 * (the request's, without the 4-byte frame size) less the record bytes of
 * the topics refused (v->topics), or for a per: topic hit, that topic's
 * record bytes; 0 when the request is refused whole or is no Produce. */
double rule_quota_produce_bytes(const struct rule_hit *hit, const struct rule_req *req,
                                const struct rule_verdict *v, uint32_t size);
/* Keys now tracked, and keys forgotten to stay within max_keys. */
void rule_quotas_counts(struct rule_quotas *q, uint64_t *keys, uint64_t *evicted);

#endif
