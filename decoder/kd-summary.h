/* kd-summary.h: the essentials of one Kafka request/response pair, and
 * their one-line text and JSON renderings.
 *
 * Used by `kwire decode` / `kwire sniff` (capture/cap-analyze.c) and by the
 * proxy's access log, so it depends on nothing but the decoder core: no
 * capture/, no I/O. The only allocation is the scratch arena of the body's
 * tree: the caller's (sum->arena, reset before each call returns, so one
 * arena per thread serves every message without allocating again) or,
 * when sum->arena is NULL, one made and freed by each call. No other state
 * is kept between calls, so any thread may summarise.
 *
 * A summary is a fixed-size value (about 6 KB) that owns copies of the
 * strings it keeps, so a caller can summarise a request, free the request's
 * bytes, and merge the response into the same summary later:
 *
 *     struct kd_summary sum;
 *     kd_sum_init(&sum);
 *     kd_sum_request(&sum, key, ver, corr, client_id, body, body_len);
 *     ...                                   request bytes may go away here
 *     kd_sum_response(&sum, resp_body, resp_len);
 *     sum.latency_us = ...; snprintf(sum.client, ...) ...
 *     kd_sum_text(&sum, &wbuf);             or kd_sum_json(&sum, &wbuf)
 *
 * Bodies are decoded by the generic tree decoder (kd_tree_decode,
 * kd-tree.h) and the summary is read off the tree, so every API and version
 * the schema tables know is summarised: topic names (fields with entityType
 * topicName), topic ids, partitions, record batches in RECORDS fields
 * (counted from batch headers, never decompressed), group ids,
 * transactional ids, producer ids, every ErrorCode. A body that does not
 * decode as a tree contributes nothing but its error (KD_SUM_*_BAD and
 * req_rc/resp_rc): the header facts stay. Lists are capped (KD_SUM_MAX_*);
 * what did not fit is counted in the *_more fields. */
#ifndef KD_SUMMARY_H
#define KD_SUMMARY_H

#include <stdint.h>

#include "kd-cur.h"
#include "kd-t.h"

struct kd_arena;

#define KD_SUM_MAX_TP 64     /* topic-partition entries kept */
#define KD_SUM_MAX_GROUPS 4  /* distinct group ids kept */
#define KD_SUM_MAX_ERRS 8    /* distinct error codes kept */
#define KD_SUM_STRBUF 4096   /* bytes for all copied strings */
#define KD_SUM_ADDR 64       /* "[ipv6]:port" fits */
#define KD_SUM_PRINCIPAL 264 /* "User:" and a 255-byte name (mTLS or SASL, px_pair.principal) */

/* A string copied into kd_summary.strbuf: off/len into it. len == 0 and
 * off == KD_SUM_NOSTR is "absent or null". */
#define KD_SUM_NOSTR 0xffffu
struct kd_sum_str {
	uint16_t off;
	uint16_t len;
};

/* One topic-partition the pair touched (or a topic alone, partition -1,
 * for APIs like Metadata/CreateTopics that name topics only). Request and
 * response entries for the same (topic, partition) are merged. */
struct kd_sum_tp {
	struct kd_sum_str topic; /* name; absent when only the id is known */
	uint8_t topic_id[16];    /* TopicId (Fetch v13+, Metadata v10+...) */
	uint8_t has_topic_id;
	uint8_t has_records;    /* a RECORDS field was seen (req or resp) */
	int16_t error;          /* last nonzero ErrorCode at this level, else 0 */
	int32_t partition;      /* -1: topic-level entry */
	int64_t records;        /* records in the RECORDS data (batch headers) */
	int64_t batches;        /* record batches / legacy messages */
	uint64_t bytes;         /* size of the RECORDS data */
	int64_t base_offset;    /* ProduceResponse BaseOffset, else -1 */
	int64_t high_watermark; /* FetchResponse HighWatermark, else -1 */
	int64_t fetch_offset;   /* FetchRequest FetchOffset / ListOffsets etc., else -1 */
};

struct kd_sum_err {
	int16_t code;
	uint32_t count;
};

/* flags */
enum {
	KD_SUM_REQ = 1,       /* the request was seen */
	KD_SUM_RESP = 2,      /* the response was seen */
	KD_SUM_NO_RESP = 4,   /* no response expected (Produce acks=0) */
	KD_SUM_REQ_BAD = 8,   /* request body did not decode fully (req_rc) */
	KD_SUM_RESP_BAD = 16, /* response body did not decode fully (resp_rc) */
	KD_SUM_UNKNOWN = 32,  /* api key/version not in the schema tables */
	KD_SUM_TRUNC = 64,    /* strbuf ran out: some strings are cut */
	/* Decode warnings: the body decoded, with a tolerated oddity (bytes
	 * after the complete body, req_trailing / resp_trailing). */
	KD_SUM_REQ_WARN = 128,
	KD_SUM_RESP_WARN = 256,
	KD_SUM_SASL_TOKEN = 512, /* a SASL v0 token and its reply (no Kafka header) */
	KD_SUM_SECRET = 1024,    /* the pair carried a secret, not kept ("[redacted]") */
};

struct kd_summary {
	/* Filled by the caller (kd_sum_init leaves them empty / -1). */
	int64_t ts_us;            /* request time (response time when unmatched), epoch us */
	int64_t latency_us;       /* response ts - request ts, -1 unknown */
	char client[KD_SUM_ADDR]; /* "ip:port" of the client, "" unknown */
	char broker[KD_SUM_ADDR]; /* "ip:port" of the broker */
	/* The connection's authenticated principal ("User:alice"), "" none.
	 * Printed as principal= (text) and "principal" (JSON) when set. */
	char principal[KD_SUM_PRINCIPAL];
	/* Scratch for the bodies' trees, or NULL (an arena per call). Reset by
	 * kd_sum_request/kd_sum_response before they return: it must hold
	 * nothing the caller still needs, and must not be used by another
	 * thread meanwhile. Never freed here. */
	struct kd_arena *arena;

	/* Filled by kd_sum_request / kd_sum_response. */
	unsigned flags; /* KD_SUM_* */
	int req_rc;     /* KD_OK or the KD_E* that stopped the request walk */
	int resp_rc;
	int16_t api_key; /* -1 unknown (unmatched response) */
	int16_t api_version;
	int32_t correlation_id;
	uint32_t req_bytes; /* body sizes as given */
	uint32_t resp_bytes;
	struct kd_sum_str client_id;
	struct kd_sum_str txn_id;    /* TransactionalId */
	struct kd_sum_str member_id; /* MemberId (JoinGroup, SyncGroup, Heartbeat, ...) */
	int64_t producer_id;         /* first ProducerId field, -1 none */
	int16_t acks;                /* Produce Acks, else 0 */
	int8_t committed;            /* EndTxn Committed: 1, 0, or -1 when absent */
	int16_t error;               /* first nonzero top-level ErrorCode, else 0 */
	int16_t resp_error;          /* the response's error: its first nonzero
	                              * top-level ErrorCode, else its first one
	                              * at any level, else 0 */
	uint32_t req_trailing;       /* bytes after the complete body (warnings) */
	uint32_t resp_trailing;
	uint8_t sasl_mech;           /* SaslHandshake's Mechanism, or a v0 token's (kd-sasl.h) */
	struct kd_sum_str sasl_user; /* the user a SASL client token names (kd_sasl_principal) */

	struct kd_sum_tp tp[KD_SUM_MAX_TP];
	unsigned ntp;
	unsigned tp_more; /* entries that did not fit */
	struct kd_sum_str groups[KD_SUM_MAX_GROUPS];
	unsigned ngroups;
	struct kd_sum_err errs[KD_SUM_MAX_ERRS]; /* every nonzero ErrorCode, counted */
	unsigned nerrs;
	unsigned errs_more;
	int64_t records; /* totals over all RECORDS fields of the pair */
	uint64_t record_bytes;

	uint16_t strused;
	char strbuf[KD_SUM_STRBUF];
};

/* What every output calls a decode error (a body that did not decode:
 * KD_SUM_REQ_BAD / KD_SUM_RESP_BAD) and a decode warning (KD_SUM_*_WARN),
 * counted per pair: 0, 1 or 2. */
static inline unsigned kd_sum_decode_errors(const struct kd_summary *sum)
{
	return !!(sum->flags & KD_SUM_REQ_BAD) + !!(sum->flags & KD_SUM_RESP_BAD);
}

static inline unsigned kd_sum_decode_warnings(const struct kd_summary *sum)
{
	return !!(sum->flags & KD_SUM_REQ_WARN) + !!(sum->flags & KD_SUM_RESP_WARN);
}

/* Resets sum to empty: no strings, api_key -1, latency -1, committed -1,
 * arena NULL. */
void kd_sum_init(struct kd_summary *sum);

/* Summarises a request body (the bytes after the request header). The
 * client id (a view, may be null) is copied. Returns KD_OK, or the KD_E*
 * code of the body's decode (then nothing of the body is kept and the flag
 * KD_SUM_REQ_BAD is set). Unknown API keys or versions return
 * KD_EUNSUPPORTED and set KD_SUM_UNKNOWN. Bytes after the complete body
 * are tolerated (librdkafka's ApiVersions v0, librdkafka 2.12's mock
 * Metadata v12): KD_OK, with KD_SUM_REQ_WARN and req_trailing set. */
int kd_sum_request(struct kd_summary *sum, int16_t api_key, int16_t api_version,
                   int32_t correlation_id, struct kd_view client_id, const uint8_t *body,
                   size_t len);

/* Merges a response body (the bytes after the response header) into sum,
 * using sum->api_key and api_version. When the request was never seen, set
 * api_key/api_version (if known) and correlation_id first; with api_key -1
 * the body is not walked and KD_EUNSUPPORTED is returned. Same return
 * convention as kd_sum_request. */
int kd_sum_response(struct kd_summary *sum, const uint8_t *body, size_t len);

/* Summarises a SASL v0 token frame (KD_EV_OPAQUE from the client) of
 * mechanism mech (enum kd_sasl_mech) as the request of a pair: the
 * mechanism and the user it names are kept, never the token. Its reply is
 * merged with kd_sum_response (api_key stays -1). */
void kd_sum_sasl_token(struct kd_summary *sum, int mech, const uint8_t *tok, size_t len);

/* A kept string as a view into sum (NULL p when absent). */
struct kd_view kd_sum_view(const struct kd_summary *sum, struct kd_sum_str s);

/* Nonzero when any ErrorCode in the pair is nonzero (for --errors). */
int kd_sum_has_error(const struct kd_summary *sum);

/* Names a topic known only by id (the analyzer learns id -> name from
 * Metadata responses): every entry with this id and no name gets name. */
void kd_sum_name_topic(struct kd_summary *sum, const uint8_t id[16], struct kd_view name);

/* Names every entry known only by id whose id the map (kd-topics.h; may be
 * NULL) knows. What stays unknown is shown as "topic-id:<uuid>" in text
 * and as "topic": null with its "topic_id" in JSON. */
struct kd_topics;
void kd_sum_resolve_topics(struct kd_summary *sum, const struct kd_topics *map);

/* The text that names entry tp: its name, else "topic-id:<uuid>", else
 * "?" when it has neither (a view into sum, or into buf of at least
 * KD_TOPIC_ID_TEXT (32) bytes). */
struct kd_view kd_sum_topic_label(const struct kd_summary *sum, const struct kd_sum_tp *tp,
                                  char buf[32]);

/* Appends one line (no trailing newline) to w:
 *   2024-09-13T08:01:02.123456Z 10.0.0.1:50432 -> 10.0.0.2:9092 "console-producer"
 *   Produce v9 #5 acks=-1 orders[0]:3rec/210B@42 NONE 1.234ms
 * Unanswered requests end in "(no response)", unmatched responses start
 * the API part with "? response" and acks=0 produce says "(acks=0)". */
void kd_sum_text(const struct kd_summary *sum, struct kd_wbuf *w);

/* Appends one JSON object (no trailing newline) to w with the keys ts,
 * client, broker, client_id, api_key, api, version, correlation_id,
 * latency_us, status ("ok", "error" when the response carries a nonzero
 * ErrorCode, then also "error": its name (resp_error), "no_response",
 * "unanswered", "unmatched"),
 * partitions [{topic, topic_id, partition, records, bytes, error,
 * base_offset, high_watermark}], groups, errors {NAME: count}, and when
 * present transactional_id, member_id, producer_id, acks, sasl_mechanism,
 * sasl_user, sasl_v0_token, auth ("[redacted]": a secret was carried);
 * "problems" (decode errors) and "warnings" (decode warnings) when there
 * are any. */
void kd_sum_json(const struct kd_summary *sum, struct kd_wbuf *w);

/* kd_json_str() (kd-render.h) under its older name, for existing callers:
 * appends s as a quoted JSON string (invalid UTF-8 bytes become \u00XX
 * escapes of the byte). New code calls kd_json_str() directly. */
void kd_sum_json_str(struct kd_wbuf *w, const uint8_t *s, size_t len);

/* ISO-8601 UTC time with microseconds ("2024-09-13T08:01:02.123456Z")
 * into buf (at least 32 bytes). */
void kd_sum_fmt_ts(int64_t ts_us, char *buf, size_t cap);

#endif
