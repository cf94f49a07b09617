/* px-names.h: a tenant's names in the proxy (docs/proxy.md, "Names"): the
 * requests of a client that a `rewrite:` rule with names matches go to the
 * broker with the cluster's names, and the responses come back with the
 * client's, with what lies outside its namespace taken out. The names are
 * found by the decoder (kd-names.h), mapped by the rule (rule-names.h);
 * this file is the glue: whole frames in, whole frames out. No I/O. */
#ifndef PX_NAMES_H
#define PX_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include "kd-arena.h"
#include "kd-cur.h"
#include "kd-hdr.h"
#include "kd-names.h"
#include "kd-tree-t.h"
#include "kd-walk.h"
#include "rule-t.h"

struct px_names;

struct px_names_edit {
	uint32_t off, len; /* the name in the frame, its length prefix included */
	uint32_t at, nlen; /* its replacement in px_names_sp.bytes */
};

struct px_names_sp {
	struct kd_walk walk;
	struct px_names *pn; /* its worker's */
	uint32_t body_at;
	uint8_t bad;
	uint8_t ended;
	/* A Produce request: its topic names are its last names (TopicData
	 * is its last field that holds any; TransactionalId comes first).
	 * named_all: the last topic's name was walked, so the edits, and
	 * delta, are final before the body has all arrived; named_more: a
	 * topic's name was walked that has topics after it, whose names lie
	 * after its records. */
	uint8_t produce;
	uint8_t named_all;
	uint8_t named_more;
	struct px_names_edit *ed;
	unsigned ned, cap;
	struct kd_wbuf bytes;
	int64_t delta; /* the frame's change in size */
};

/* Scratch for one worker thread. All-zero is a valid initial state. */
struct px_names {
	struct kd_arena arena;
	struct kd_tree tree;
	struct kd_names_res res;
	const struct rule_names *nm; /* the rule being applied */
	int to_cluster;
	int16_t error;         /* PX_N_REFUSE: the error answered */
	struct kd_wbuf out;    /* px_names_request's frame, reused */
	struct px_names_sp sp; /* the splice of the frame at hand */
	char buf[32768 + 256]; /* a prefixed name */
};

/* px_names_request() results besides the negative KD_E*. */
enum {
	PX_N_SAME = 0,   /* forward the frame as it is */
	PX_N_MAPPED = 1, /* out holds the frame with the cluster's names */
	PX_N_REFUSE = 2, /* out holds kwire's answer (some name is outside the namespace,
	                  * or the API cannot be mapped) */
	PX_N_DROP = 3,   /* refused, and no answer is due (Produce acks=0) */
	PX_N_CLOSE = 4,  /* the body does not decode, or its version is unknown:
	                  * its names cannot be found, so it must not reach the
	                  * broker; close, as a broker does on a request it
	                  * cannot parse */
};

/* Whether requests of (api_key, version) from a client whose names are
 * mapped are refused (and the API left out of its ApiVersions): the ACL
 * APIs (resource patterns and filters that span namespaces), the share
 * group APIs (share-group coordinator keys, names in fields the schema
 * does not annotate), Envelope (a request inside bytes), and
 * ConsumerGroupHeartbeat v1+ (SubscribedTopicRegex, a regular expression
 * over the cluster's names). */
int px_names_refused_api(int16_t api_key, int16_t version);

/* Whether a request of (api_key, version) of a mapped client must be
 * gathered whole and looked at: one that names something, one refused,
 * and one the tables do not know (its names could not be found). */
int px_names_wants_request(int16_t api_key, int16_t version);

/* Whether a response of (api_key, version) to a mapped client carries
 * names (or, ApiVersions, versions to clamp). */
int px_names_wants_response(int16_t api_key, int16_t version);

/* Maps the request frame (INT32 size, header of hdr_len bytes, body)
 * under rule (its names). *coord_kt gets a FindCoordinator request's
 * KeyType (-1 otherwise), which its response needs. no_response: a
 * Produce with acks=0. Appends to out. Returns PX_N_* or KD_ENOMEM
 * (*bad is set with PX_N_CLOSE). */
int px_names_request(struct px_names *pn, const struct rule *rule, const uint8_t *frame, size_t len,
                     const struct kd_req_hdr *hdr, int no_response, int *coord_kt, int *bad,
                     struct kd_wbuf *out);

/* Maps a response frame (INT32 size, response header, body) of (api_key,
 * version) back under rule, appending the new frame to out. Returns 1
 * (out holds it), 0 (nothing to change; out untouched) or a negative KD_E*
 * (the body does not decode: the caller must not forward it, for it may
 * hold another tenant's names). */
int px_names_response(struct px_names *pn, const struct rule *rule, int16_t api_key,
                      int16_t version, int coord_kt, const uint8_t *frame, size_t len,
                      struct kd_wbuf *out);

/* ---- splicing: the names replaced in place, the rest moved ----
 *
 * For the big messages (Produce requests, Fetch responses up to v12, whose
 * topic names precede each topic's records): a skip-only walk (kd-walk.h)
 * over the frame, fed in any chunks, finds every name and where it lies;
 * the caller then moves the frame's bytes between them (never copied) and
 * writes the mapped names, with the frame size corrected:
 *
 *   size' | bytes [4, e0.off) | name0' | bytes [e0.off + e0.len, e1.off) | ...
 *
 * A name outside the namespace, one too long to capture, or a body that
 * does not walk leaves sp->bad set: the caller takes the whole-frame path
 * (px_names_request / px_names_response) instead. */
/* Whether (api_key, version, direction) is spliced rather than mapped
 * whole: Produce requests and Fetch responses (v12 and below; later ones
 * name topics by id only). */
int px_names_splices(int16_t api_key, int16_t version, int is_request);

/* Starts a splice walk of a frame whose body starts at frame offset
 * body_at and has body_len bytes. KD_OK or KD_EUNSUPPORTED. */
int px_names_sp_init(struct px_names_sp *sp, struct px_names *pn, const struct rule *rule,
                     int16_t api_key, int16_t version, int is_request, uint32_t body_at,
                     uint32_t body_len);
/* Feeds the next n bytes of the body. Returns KD_NEED_MORE, KD_WALK_END
 * (done: sp->ed holds the edits), or a negative KD_E* (sp->bad set). A
 * Produce request's walk may be fed a prefix only: once sp->named_all is
 * set, sp->ed and sp->delta are those of the whole frame (the rest holds
 * no name), so that the frame can stream with its size corrected up
 * front. */
int px_names_sp_feed(struct px_names_sp *sp, const uint8_t *p, size_t n);
void px_names_sp_free(struct px_names_sp *sp);

void px_names_free(struct px_names *pn);

#endif
