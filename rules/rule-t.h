/* rule-t.h: the types of kwire's rules engine (rule.h).
 *
 * A rules file (docs/rules.md) compiles into an immutable struct rule_set:
 * patterns, regexes, CIDRs and API sets are compiled once, when the file is
 * loaded. A request is described by a struct rule_req (facts the caller read
 * off the wire) and judged by rule_eval() into a struct rule_verdict. The
 * set is shared read-only by every thread; only its hit counters change
 * (atomics). Nothing here does network I/O. */
#ifndef RULE_T_H
#define RULE_T_H

#include <regex.h>
#include <stdatomic.h>
#include <stdint.h>

#include "kd-arena.h"
#include "kd-recedit.h"
#include "kd-records-t.h"
#include "kd-tree-t.h"
#include "kd-t.h"

#define RULE_MAX_RULES 100000 /* rules in one file */
#define RULE_MAX_HITS 16      /* quotas and audits reported per request */
#define RULE_NAME_MAX 128

/* The sections of a rules file, in the order they are judged. */
enum rule_section {
	RULE_ACCESS = 0, /* first match wins; no match = allow */
	RULE_QUOTA,      /* every match applies */
	RULE_POLICY,     /* every match is checked; the first violation refuses */
	RULE_AUDIT,      /* every match records */
	RULE_REWRITE,    /* names: the first match (rule-names.h); records: every match, in file
	                  * order (rule-rewrite.c) */
	RULE_MIRROR,     /* every match copies a Produce's records to its cluster (rule-mirror.h) */
	RULE_TAP,        /* every match writes the request and its answer to its pcapng file */
	RULE_NSECTIONS,
};

/* ---- matchers ---- */

enum rule_pat_kind {
	RULE_PAT_EXACT = 0,
	RULE_PAT_GLOB,  /* '*', '?' and '[...]' (fnmatch without FNM_PATHNAME) */
	RULE_PAT_REGEX, /* "/.../": POSIX extended, anchored on both ends */
};

/* One string pattern. neg: a "!" pattern, which excludes. */
struct rule_pat {
	uint8_t kind;
	uint8_t neg;
	uint8_t re_ok; /* re holds a compiled regex */
	char *s;       /* NUL-terminated text, without the "!" and the slashes */
	size_t len;
	regex_t re;
};

/* A list of patterns: it matches a string when some positive pattern
 * matches (or there is none) and no negative one does. */
struct rule_pats {
	struct rule_pat *v;
	unsigned n;
	unsigned npos;
};

struct rule_cidr {
	uint8_t family; /* 4 or 6 */
	uint8_t bits;
	uint8_t neg;
	uint8_t addr[16];
};

/* CIDRs with the same any-positive, no-negative rule as patterns. */
struct rule_cidrs {
	struct rule_cidr *v;
	unsigned n;
	unsigned npos;
};

/* An API key with an inclusive version range. */
struct rule_api {
	int16_t key;
	int16_t lo, hi;
};

/* An inclusive range of integers (sizes, counts). */
struct rule_range {
	int64_t lo, hi;
};

/* Bits of rule_match.keys: which matchers a rule has. */
enum rule_match_key {
	RULE_M_API = 1u << 0,
	RULE_M_TOPIC = 1u << 1,
	RULE_M_CLIENT_ID = 1u << 2,
	RULE_M_SOURCE = 1u << 3,
	RULE_M_BROKER = 1u << 4,
	RULE_M_PRINCIPAL = 1u << 5,
	RULE_M_GROUP = 1u << 6,
	RULE_M_TXN_ID = 1u << 7,
	RULE_M_ACKS = 1u << 8,
	RULE_M_CODEC = 1u << 9,
	RULE_M_RECORDS = 1u << 10,
	RULE_M_BYTES = 1u << 11,
	RULE_M_RECORD_BYTES = 1u << 12,
};

/* Matchers that need facts from the request body (rule_req.have_body). */
#define RULE_M_BODY                                                                                \
	(RULE_M_TOPIC | RULE_M_GROUP | RULE_M_TXN_ID | RULE_M_ACKS | RULE_M_CODEC |                \
	 RULE_M_RECORDS | RULE_M_BYTES | RULE_M_RECORD_BYTES)
/* Matchers judged per topic when a request names topics. */
#define RULE_M_PER_TOPIC                                                                           \
	(RULE_M_TOPIC | RULE_M_CODEC | RULE_M_RECORDS | RULE_M_BYTES | RULE_M_RECORD_BYTES)

/* Acks bits (rule_match.acks, rule_require.acks). */
enum rule_acks_bit {
	RULE_ACKS_0 = 1u << 0,
	RULE_ACKS_1 = 1u << 1,
	RULE_ACKS_ALL = 1u << 2, /* -1 */
};

/* All matchers must match (AND); a list inside one matcher is an OR. */
struct rule_match {
	uint32_t keys; /* enum rule_match_key bits */
	struct rule_api *apis;
	unsigned napis;
	struct rule_pats topic, client_id, principal, group, txn_id;
	struct rule_cidrs source;
	int32_t *brokers; /* node ids; -1 is the bootstrap listener */
	unsigned nbrokers;
	uint8_t acks;   /* enum rule_acks_bit */
	uint8_t codecs; /* 1u << enum kd_codec */
	struct rule_range records, bytes, record_bytes;
};

/* ---- actions ---- */

struct rule_names;
struct rule_mirror;
struct rule_tap;

/* quota `per:` */
enum rule_per {
	RULE_PER_CLIENT_ID = 0,
	RULE_PER_PRINCIPAL,
	RULE_PER_SOURCE,
	RULE_PER_TOPIC,
	RULE_PER_SHARED, /* one budget for everything the rule matches */
};

/* audit `log:` */
enum rule_audit_log {
	RULE_LOG_NONE = 0,
	RULE_LOG_SUMMARY,
	RULE_LOG_RECORDS,
};

/* A policy's `require:`. Produce requirements (acks, compression,
 * max_record_bytes, headers) apply to Produce requests, topic creation
 * requirements (partitions, replication_factor) to CreateTopics. */
struct rule_require {
	uint32_t keys; /* enum rule_require_key bits */
	uint8_t acks;
	uint8_t codecs;
	int64_t max_record_bytes;
	char **headers;
	unsigned nheaders;
	struct rule_range partitions, replication_factor;
};

enum rule_require_key {
	RULE_REQ_ACKS = 1u << 0,
	RULE_REQ_CODEC = 1u << 1,
	RULE_REQ_MAX_RECORD = 1u << 2,
	RULE_REQ_HEADERS = 1u << 3,
	RULE_REQ_PARTITIONS = 1u << 4,
	RULE_REQ_REPLICATION = 1u << 5,
};

/* Where an audit rule writes (`to:`): a JSON-lines file, or a Kafka topic
 * (`{kafka: TOPIC, bootstrap: HOST:PORT, properties: {...}}`). */
struct rule_sink {
	char *file;          /* JSON-lines file, or NULL */
	char *kafka;         /* topic, or NULL */
	char *bootstrap;     /* for kafka; NULL: the proxy's own upstream */
	char **props;        /* kafka: librdkafka properties, pairs {key, value} */
	unsigned nprops;     /* entries in props (2 per property) */
	int64_t queue_bytes; /* kafka: byte budget of the producer; 0: default */
};

struct rule {
	char name[RULE_NAME_MAX];
	uint8_t section;    /* enum rule_section */
	unsigned idx;       /* position in rule_set.rules */
	unsigned line, col; /* where the rule starts in the file (1-based) */
	struct rule_match match;
	/* access */
	uint8_t allow; /* `allow: true`: stops the walk, forwards */
	int16_t deny;  /* error code; RULE_DENY_AUTO: the API's authorization error */
	uint8_t deny_set;
	uint8_t meta_show; /* `metadata: show`: denied topics stay in Metadata answers, with the
	                      error */
	uint8_t meta_set;
	/* quota */
	uint8_t per;                    /* enum rule_per */
	int64_t produce_bps, fetch_bps; /* bytes per second, 0: none */
	double requests_ps;             /* requests per second, 0: none */
	unsigned samples;               /* default 11 */
	unsigned sample_ms;             /* default 1000 */
	/* policy */
	struct rule_require require;
	/* audit */
	uint8_t log; /* enum rule_audit_log */
	char **redact_headers;
	unsigned nredact;
	uint8_t redact_key, redact_value; /* `redact: {key: true, value: true}` */
	uint32_t max_value_bytes;         /* of keys and values recorded; default 1024 */
	uint32_t max_bytes; /* of a response read for records or summary; default 1 MiB */
	struct rule_sink sink;
	/* rewrite: the names a client sees -> the cluster's (rule-names.h) */
	struct rule_names *names;
	/* rewrite: records (headers, masks; rule-rewrite.c), or NULL */
	struct rule_records *records;
	/* mirror, tap (rule-mirror.h) */
	struct rule_mirror *mirror;
	struct rule_tap *tap;
	/* counters */
	_Atomic uint64_t hits;
};

#define RULE_DENY_AUTO ((int16_t)-32768)

/* ---- rewrite: records (rule-rewrite.c) ---- */

#define RULE_ERR_INVALID_RECORD 87    /* what a refused record rewrite answers */
#define RULE_ERR_UNKNOWN_TOPIC_ID 100 /* a Fetch topic id whose name kwire has not learned */

/* Directions of a records rewrite: the API its match names. */
enum rule_rw_dir {
	RULE_RW_PRODUCE = 1, /* Produce requests, before the broker */
	RULE_RW_FETCH = 2,   /* Fetch responses, before the client */
};

/* `on_error:` of a records rewrite. */
enum rule_rw_on_error {
	RULE_RW_PASS = 0, /* the record that cannot be rewritten goes as it is */
	RULE_RW_REFUSE,   /* its partition is refused (INVALID_RECORD) */
};

/* What header templates expand from (one request). */
struct rule_rw_ctx {
	struct kd_view client_id;
	struct kd_view principal;
	uint8_t src_family; /* 4 or 6; 0: unknown */
	uint8_t src_addr[16];
	const char *instance; /* kwire's instance name */
	int64_t now_ms;       /* wall clock */
};

/* What rule_rewrite_tree did. The arrays (one entry per element of the
 * tree's topic array) live in the tree's arena. */
struct rule_rw_out {
	uint32_t nelems;
	int16_t *err;             /* Produce: 0, or INVALID_RECORD (refuse this topic) */
	const struct rule **rule; /* ... the rule that refused it */
	struct kd_view *names;    /* the element's topic */
	unsigned changed;         /* partitions whose records were replaced */
	unsigned records;         /* records changed */
	unsigned passed;          /* records or partitions passed unchanged (on_error: pass) */
	unsigned refused;         /* partitions refused (on_error: refuse) */
	char msg[320];            /* the first failure, for the log */
};

struct rule_index;
struct rule_set {
	struct rule *rules;
	unsigned n;
	unsigned nsec[RULE_NSECTIONS];
	/* Per API key (0..RULE_API_SLOTS-1): whether some rule that can apply
	 * needs body facts (RULE_M_BODY or a policy). */
	uint8_t *needs_body;
	unsigned nslots;
	uint8_t needs_records; /* some rule reads single records (sizes) */
	struct rule_index *ix; /* candidate lists (rule-index.h) */
	char sha256[65];       /* of the file's bytes, hex */
	char *path;
	int64_t loaded_us; /* wall clock of the load */
	_Atomic unsigned refs;
};

/* ---- requests and verdicts ---- */

/* One topic a request names, with what the caller knows of its records
 * (Produce) or its creation (CreateTopics). Unknown numbers are -1. */
struct rule_topic {
	struct kd_view name;
	uint8_t codecs;           /* Produce: 1u << enum kd_codec of every batch */
	int64_t records;          /* Produce: records */
	int64_t bytes;            /* Produce: bytes of record data */
	int64_t max_record_bytes; /* Produce: largest record (key + value + headers) */
	int32_t num_partitions;   /* CreateTopics */
	int32_t replication_factor;
};

/* The facts of one request. Views need only live during rule_eval(). */
struct rule_req {
	int16_t api_key;
	int16_t api_version;
	struct kd_view client_id;
	struct kd_view principal; /* empty: none (anonymous) */
	uint8_t src_family;       /* 4 or 6; 0: unknown */
	uint8_t src_addr[16];
	int32_t broker_id; /* -1: bootstrap listener */
	/* Body facts, when have_body. */
	uint8_t have_body;
	int16_t acks; /* Produce Acks; -2: not a Produce / unknown */
	/* Every group id and transactional id the request names (DescribeGroups
	 * and AddPartitionsToTxn v4+ name several): a `group` or
	 * `transactional_id` matcher matches when one of them does. */
	const struct kd_view *groups;
	unsigned ngroups;
	const struct kd_view *txn_ids;
	unsigned ntxn_ids;
	const struct rule_topic *topics;
	unsigned ntopics;
	/* For policies with `headers:`: whether every record of topics[topic]
	 * carries a header named name (1), not (0), or unknown (-1, treated as
	 * compliant). NULL: unknown. */
	int (*has_header)(void *arg, unsigned topic, const char *name, size_t len);
	void *arg;
	uint8_t quiet; /* rule_eval counts no hits (a request judged twice) */
};

/* What access and policies decided for one topic of a request. */
struct rule_topic_verdict {
	int16_t error;           /* 0: forwarded */
	const struct rule *rule; /* the deny or policy that refused it */
};

struct rule_hit {
	const struct rule *rule;
	int topic; /* index into rule_req.topics (per: topic quotas), else -1 */
};

struct rule_verdict {
	/* The whole request: 0 = forward (possibly split), else refused with
	 * error (every topic refused, or a request-level deny/policy). */
	int16_t error;
	const struct rule *rule;
	unsigned nrefused; /* topics refused */
	uint8_t split;     /* some topics refused, some forwarded */
	/* Per topic (caller's array of rule_req.ntopics entries), or NULL. */
	struct rule_topic_verdict *topics;
	struct rule_hit quotas[RULE_MAX_HITS];
	unsigned nquotas;
	struct rule_hit audits[RULE_MAX_HITS];
	unsigned naudits;
};

/* The facts of one decoded request (rule_facts_read, rule-facts.c):
 * req is what rule_eval() takes; the caller fills the header facts it
 * knows (client_id, principal, source, broker_id). The arrays live in the
 * arena given to rule_facts_read(). All-zero is a valid initial state;
 * rule_facts_free() releases the record iterator kept between reads. */
struct fact_recs;
struct kd_arena;
struct kd_topics;
struct rule_facts {
	struct rule_req req;
	struct rule_topic *topics;
	struct fact_recs **recs; /* per topic: its RECORDS blobs */
	unsigned cap;
	struct kd_view *groups, *txns;
	unsigned gcap, tcap;
	struct kd_arena *a;
	const struct kd_topics *map;
	struct kd_rec_iter it; /* reused: its decompression buffer */
	uint8_t it_ok;
};

/* What rule_judge() needs besides the request: who sent it and through
 * which listener. */
struct rule_who {
	struct kd_view principal; /* empty: none */
	uint8_t src_family;       /* 4 or 6; 0: unknown */
	uint8_t src_addr[16];
	int32_t broker_id; /* -1: bootstrap listener; -2: unknown (no broker matcher applies) */
};

/* Scratch for rule_rewrite_tree, one per thread; all-zero is valid,
 * rule_rewriter_free() releases it. With defer set, the new records stay
 * in out (segs: where each partition's are) for rule_rewrite_encode. */
struct rule_rw_seg {
	struct kd_node *node; /* the RECORDS node the bytes replace */
	size_t off, len;      /* in rule_rewriter.out */
};
struct rule_rewriter {
	struct kd_wbuf out;     /* the rewritten partitions' new records */
	struct kd_wbuf json;    /* a record's masked value */
	struct kd_recedit edit; /* the record rewriter's buffers */
	struct rule_rw_seg *segs;
	unsigned nsegs, segcap;
	uint8_t defer;       /* leave the new records in out (rule_rewrite_encode) */
	uint8_t tree_edited; /* other nodes were edited: the tree must be encoded */
	uint8_t spliced;     /* the last rule_rewrite_encode spliced (did not encode) */
	/* With defer: the caller's buffer for the new body, which then takes
	 * the body's bytes and the new records as they are made (no copy from
	 * out); NULL: out. body_at: bytes of the body written so far. */
	struct kd_wbuf *dest;
	size_t dest_start, body_at;
	const uint8_t *body;
};

/* Scratch for judging requests one after another (rule_judge), one per
 * thread: the decoded body, its facts and the per-topic verdicts. All-zero
 * is a valid initial state; rule_judge_free() releases it. */
struct rule_judge {
	struct kd_arena arena;
	struct kd_tree tree;
	struct rule_facts facts;
	struct rule_topic_verdict *tv;
	unsigned tvcap;
	struct rule_rewriter rw; /* records rewrite scratch (rule_rewrite_tree) */
	uint8_t quiet;           /* the next judgement counts no hits (rule_judge_walk) */
};

#endif
