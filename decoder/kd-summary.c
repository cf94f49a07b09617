/* kd-summary.c: the essentials of a request/response pair (kd-summary.h).
 *
 * One decoder, many callers: a body is decoded by the generic tree decoder
 * (kd_tree_decode, kd-tree.h) into a scratch arena (the caller's
 * sum->arena, or one per call), and the summary is
 * read off the tree in one pre-order walk. What the summary keeps is copied
 * into struct kd_summary, so the tree and its arena go away before the
 * call returns. JSON strings go through the kd-render.h helpers, so a
 * summary line escapes exactly like `kwire decode -f json`. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kd-api-keys-gen.h"
#include "kd-arena.h"
#include "kd-records.h"
#include "kd-render.h"
#include "kd-sasl.h"
#include "kd-schema.h"
#include "kd-summary.h"
#include "kd-topics.h"
#include "kd-tree.h"
#include "kd.h"

/* ---- strings ---- */

static struct kd_sum_str sum_keep(struct kd_summary *sum, const uint8_t *p, size_t len, int null)
{
	struct kd_sum_str s = {KD_SUM_NOSTR, 0};
	if (null)
		return s;
	size_t room = KD_SUM_STRBUF - sum->strused;
	if (len > room) {
		sum->flags |= KD_SUM_TRUNC;
		len = room;
	}
	s.off = sum->strused;
	s.len = (uint16_t)len;
	if (len)
		memcpy(sum->strbuf + sum->strused, p, len);
	sum->strused = (uint16_t)(sum->strused + len);
	return s;
}

struct kd_view kd_sum_view(const struct kd_summary *sum, struct kd_sum_str s)
{
	struct kd_view v = {NULL, 0, 1};
	if (s.off == KD_SUM_NOSTR)
		return v;
	v.p = (const uint8_t *)sum->strbuf + s.off;
	v.len = s.len;
	v.null = 0;
	return v;
}

static int str_eq(const struct kd_summary *sum, struct kd_sum_str s, const uint8_t *p, size_t len)
{
	return s.off != KD_SUM_NOSTR && s.len == len && !memcmp(sum->strbuf + s.off, p, len);
}

void kd_sum_init(struct kd_summary *sum)
{
	/* The tp table is cleared entry by entry as it fills (tp_new). */
	memset(sum, 0, offsetof(struct kd_summary, tp));
	memset(&sum->ntp, 0,
	       offsetof(struct kd_summary, strbuf) - offsetof(struct kd_summary, ntp));
	sum->latency_us = -1;
	sum->api_key = -1;
	sum->api_version = -1;
	sum->producer_id = -1;
	sum->committed = -1;
	sum->client_id.off = KD_SUM_NOSTR;
	sum->txn_id.off = KD_SUM_NOSTR;
	sum->member_id.off = KD_SUM_NOSTR;
	sum->sasl_user.off = KD_SUM_NOSTR;
}

/* A SASL client token: the user it names; the token itself is never kept. */
static void sum_sasl_client(struct kd_summary *sum, int mech, const uint8_t *tok, size_t len)
{
	char user[KD_SASL_USER_MAX + 1];
	size_t n;

	sum->flags |= KD_SUM_SECRET;
	if (mech == KD_SASL_MECH_NONE)
		mech = kd_sasl_mech_sniff(tok, len);
	if (!sum->sasl_mech)
		sum->sasl_mech = (uint8_t)mech;
	n = kd_sasl_principal(mech, tok, len, user, sizeof(user));
	if (n && sum->sasl_user.off == KD_SUM_NOSTR)
		sum->sasl_user = sum_keep(sum, (const uint8_t *)user, n, 0);
}

void kd_sum_sasl_token(struct kd_summary *sum, int mech, const uint8_t *tok, size_t len)
{
	sum->flags |= KD_SUM_REQ | KD_SUM_SASL_TOKEN;
	sum->req_bytes = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
	sum->sasl_mech = (uint8_t)mech;
	if (tok && len)
		sum_sasl_client(sum, mech, tok, len);
	else
		sum->flags |= KD_SUM_SECRET;
}

/* ---- topic-partition entries ---- */

static int tp_new(struct kd_summary *sum)
{
	if (sum->ntp >= KD_SUM_MAX_TP) {
		sum->tp_more++;
		return -1;
	}
	struct kd_sum_tp *tp = &sum->tp[sum->ntp];
	memset(tp, 0, sizeof(*tp));
	tp->topic.off = KD_SUM_NOSTR;
	tp->partition = -1;
	tp->base_offset = -1;
	tp->high_watermark = -1;
	tp->fetch_offset = -1;
	return (int)sum->ntp++;
}

static int tp_same_topic(const struct kd_summary *sum, const struct kd_sum_tp *a,
                         const struct kd_sum_tp *b)
{
	if (a->has_topic_id && b->has_topic_id)
		return !memcmp(a->topic_id, b->topic_id, 16);
	if (a->topic.off != KD_SUM_NOSTR && b->topic.off != KD_SUM_NOSTR)
		return a->topic.len == b->topic.len &&
		       !memcmp(sum->strbuf + a->topic.off, sum->strbuf + b->topic.off,
		               a->topic.len);
	return 0;
}

/* The first entry for the topic named (name) or identified (id); a new
 * topic-level entry when there is none. -1 when the table is full. */
static int tp_topic(struct kd_summary *sum, const uint8_t *name, size_t len, const uint8_t *id)
{
	for (unsigned i = 0; i < sum->ntp; i++) {
		struct kd_sum_tp *tp = &sum->tp[i];
		if (id ? (tp->has_topic_id && !memcmp(tp->topic_id, id, 16))
		       : str_eq(sum, tp->topic, name, len))
			return (int)i;
	}
	int i = tp_new(sum);
	if (i < 0)
		return -1;
	if (id) {
		memcpy(sum->tp[i].topic_id, id, 16);
		sum->tp[i].has_topic_id = 1;
	} else {
		sum->tp[i].topic = sum_keep(sum, name, len, 0);
	}
	return i;
}

/* The entry for partition part of the topic of entry anchor. */
static int tp_partition(struct kd_summary *sum, int anchor, int32_t part)
{
	if (anchor < 0) {
		/* A partition with no topic (e.g. a topic the table could not
		 * hold): keep it anonymous rather than lose the counts. */
		int i = tp_new(sum);
		if (i >= 0)
			sum->tp[i].partition = part;
		return i;
	}
	for (unsigned i = (unsigned)anchor; i < sum->ntp; i++)
		if (sum->tp[i].partition == part &&
		    tp_same_topic(sum, &sum->tp[i], &sum->tp[anchor]))
			return (int)i;
	if (sum->tp[anchor].partition == -1) {
		sum->tp[anchor].partition = part;
		return anchor;
	}
	int i = tp_new(sum);
	if (i < 0)
		return -1;
	struct kd_sum_tp *a = &sum->tp[anchor];
	sum->tp[i].topic = a->topic;
	sum->tp[i].has_topic_id = a->has_topic_id;
	memcpy(sum->tp[i].topic_id, a->topic_id, 16);
	sum->tp[i].partition = part;
	return i;
}

void kd_sum_name_topic(struct kd_summary *sum, const uint8_t id[16], struct kd_view name)
{
	struct kd_sum_str s = {KD_SUM_NOSTR, 0};
	int have = 0;
	for (unsigned i = 0; i < sum->ntp; i++) {
		struct kd_sum_tp *tp = &sum->tp[i];
		if (!tp->has_topic_id || tp->topic.off != KD_SUM_NOSTR ||
		    memcmp(tp->topic_id, id, 16))
			continue;
		if (!have) {
			s = sum_keep(sum, name.p, name.len, 0);
			have = 1;
		}
		tp->topic = s;
	}
}

void kd_sum_resolve_topics(struct kd_summary *sum, const struct kd_topics *map)
{
	if (!map)
		return;
	for (unsigned i = 0; i < sum->ntp; i++) {
		struct kd_sum_tp *tp = &sum->tp[i];
		if (!tp->has_topic_id || tp->topic.off != KD_SUM_NOSTR)
			continue;
		struct kd_view name = kd_topics_get(map, tp->topic_id);
		if (!name.null)
			kd_sum_name_topic(sum, tp->topic_id, name);
	}
}

struct kd_view kd_sum_topic_label(const struct kd_summary *sum, const struct kd_sum_tp *tp,
                                  char buf[32])
{
	struct kd_view v = kd_sum_view(sum, tp->topic);
	if (!v.null)
		return v;
	if (tp->has_topic_id) {
		v.len = (uint32_t)kd_topic_id_text(tp->topic_id, buf);
		v.p = (const uint8_t *)buf;
	} else {
		v.p = (const uint8_t *)"?";
		v.len = 1;
	}
	v.null = 0;
	return v;
}

static void sum_error(struct kd_summary *sum, int16_t code)
{
	if (!code)
		return;
	for (unsigned i = 0; i < sum->nerrs; i++) {
		if (sum->errs[i].code == code) {
			sum->errs[i].count++;
			return;
		}
	}
	if (sum->nerrs >= KD_SUM_MAX_ERRS) {
		sum->errs_more++;
		return;
	}
	sum->errs[sum->nerrs].code = code;
	sum->errs[sum->nerrs].count = 1;
	sum->nerrs++;
}

int kd_sum_has_error(const struct kd_summary *sum)
{
	return sum->nerrs > 0 || sum->errs_more > 0;
}

static void sum_group(struct kd_summary *sum, struct kd_view v)
{
	if (v.null)
		return;
	for (unsigned i = 0; i < sum->ngroups; i++)
		if (str_eq(sum, sum->groups[i], v.p, v.len))
			return;
	if (sum->ngroups < KD_SUM_MAX_GROUPS)
		sum->groups[sum->ngroups++] = sum_keep(sum, v.p, v.len, 0);
}

/* ---- record data ----
 *
 * Counted from the entry headers by kd_rec_peek_batches() (kd-records.h):
 * no CRC check, no decompression, a truncated last entry (Fetch) ends the
 * walk quietly. The bytes are the RECORDS field's size, tail included. */

static void count_records(struct kd_sum_tp *tp, struct kd_summary *sum, struct kd_view v)
{
	struct kd_rec_peek pk;
	kd_rec_peek_batches(v.p, v.len, &pk);
	if (tp) {
		tp->has_records = 1;
		tp->records += pk.records;
		tp->batches += pk.batches;
		tp->bytes += v.len;
	}
	sum->records += pk.records;
	sum->record_bytes += v.len;
}

/* ---- reading the tree ----
 *
 * What a field means to the summary depends on its Kafka name. Names are
 * compared once per schema field (struct kd_field pointer) and the answer
 * is cached, so the walk itself compares pointers, never strings. The
 * cache is per thread (the proxy summarises on several workers) and
 * direct-mapped: a collision only costs a new look-up. */
enum sum_role {
	ROLE_UNSET = 0, /* not looked up yet (the cache's all-zero state) */
	ROLE_NONE,
	ROLE_ERROR_CODE,     /* INT16 ErrorCode, any level */
	ROLE_ACKS,           /* ProduceRequest Acks */
	ROLE_COMMITTED,      /* EndTxnRequest Committed */
	ROLE_PARTITION,      /* INT32 partition index of the enclosing struct */
	ROLE_PARTITION_LIST, /* INT32 array of partition indexes */
	ROLE_BASE_OFFSET,
	ROLE_HIGH_WATERMARK,
	ROLE_FETCH_OFFSET, /* FetchOffset, CommittedOffset */
	ROLE_OFFSET,       /* Offset: a partition's offset in responses */
	ROLE_TOPIC_ID,
	ROLE_MEMBER_ID,
};

static const struct {
	const char *name;
	uint8_t role;
} sum_names[] = {
    {"ErrorCode", ROLE_ERROR_CODE},
    {"Acks", ROLE_ACKS},
    {"Committed", ROLE_COMMITTED},
    {"PartitionIndex", ROLE_PARTITION},
    {"Partition", ROLE_PARTITION},
    {"PartitionId", ROLE_PARTITION},
    {"Index", ROLE_PARTITION},
    {"PartitionIndexes", ROLE_PARTITION_LIST},
    {"Partitions", ROLE_PARTITION_LIST},
    {"BaseOffset", ROLE_BASE_OFFSET},
    {"HighWatermark", ROLE_HIGH_WATERMARK},
    {"FetchOffset", ROLE_FETCH_OFFSET},
    {"CommittedOffset", ROLE_FETCH_OFFSET},
    {"Offset", ROLE_OFFSET},
    {"TopicId", ROLE_TOPIC_ID},
    {"MemberId", ROLE_MEMBER_ID},
};

#define SUM_ROLE_CACHE 1024 /* power of two; the tables hold a few thousand fields */

static _Thread_local struct {
	const struct kd_field *field;
	uint8_t role;
} role_cache[SUM_ROLE_CACHE];

static unsigned field_role(const struct kd_field *f)
{
	unsigned h = (unsigned)((uintptr_t)f / sizeof(*f)) & (SUM_ROLE_CACHE - 1);
	if (role_cache[h].field == f)
		return role_cache[h].role;
	uint8_t role = ROLE_NONE;
	for (size_t i = 0; i < sizeof(sum_names) / sizeof(sum_names[0]); i++) {
		if (!strcmp(f->name, sum_names[i].name)) {
			role = sum_names[i].role;
			break;
		}
	}
	role_cache[h].field = f;
	role_cache[h].role = role;
	return role;
}

/* The tree walk visits nodes in pre-order with their depth. Each struct
 * node (the body, a struct field, a struct array element) gets a frame at
 * its depth: the topic entry it belongs to (inherited from the enclosing
 * struct, replaced by its own topic name or id), the partition entry of
 * its own partition field, and its struct nesting level (0 for the body's
 * own fields, as the top-level ErrorCode, Acks, MemberId rules want). A
 * field's enclosing struct is its parent, or its grandparent when the
 * parent is an array. Arrays add a tree level and struct fields one more,
 * so the tree is at most twice KD_TREE_MAX_DEPTH deep; deeper nodes (none
 * in any schema) are skipped. */
#define SUM_WALK_DEPTH 72

struct sum_frame {
	int topic; /* kd_summary.tp index, -1 none */
	int part;  /* kd_summary.tp index of this struct's partition, -1 none */
	int level; /* struct nesting: 0 for the body's fields */
};

struct sumwalk {
	struct kd_summary *sum;
	uint8_t resp;
	int16_t err_top, err_any; /* the response's first top-level / any ErrorCode */
	struct sum_frame fr[SUM_WALK_DEPTH];
};

static void sum_topic_id(struct kd_summary *sum, struct sum_frame *fr, const uint8_t id[16])
{
	static const uint8_t zero[16];
	if (!memcmp(id, zero, 16))
		return;
	unsigned before = sum->ntp;
	int t = tp_topic(sum, NULL, 0, id);
	if (fr->topic >= 0 && t != fr->topic && t >= 0 && !sum->tp[fr->topic].has_topic_id) {
		/* A struct with both a name and an id (Metadata v10+): keep them
		 * on one entry. */
		memcpy(sum->tp[fr->topic].topic_id, id, 16);
		sum->tp[fr->topic].has_topic_id = 1;
		if (sum->ntp > before)
			sum->ntp--; /* t was just appended for nothing */
	} else {
		fr->topic = t;
	}
}

static void sum_string(struct kd_summary *sum, struct sum_frame *fr, const struct kd_node *n,
                       int elem)
{
	const struct kd_view *v = &n->val.v;
	switch (n->field->entity) {
	case KD_ENT_TOPIC_NAME: {
		int t;
		if (fr->topic >= 0 && !elem && sum->tp[fr->topic].topic.off == KD_SUM_NOSTR) {
			/* The id came first in this struct: name that entry. */
			sum->tp[fr->topic].topic = sum_keep(sum, v->p, v->len, 0);
			t = fr->topic;
		} else {
			t = tp_topic(sum, v->p, v->len, NULL);
		}
		if (!elem)
			fr->topic = t;
		return;
	}
	case KD_ENT_GROUP_ID:
		sum_group(sum, *v);
		return;
	case KD_ENT_TRANSACTIONAL_ID:
		if (sum->txn_id.off == KD_SUM_NOSTR)
			sum->txn_id = sum_keep(sum, v->p, v->len, 0);
		return;
	default:
		if (fr->level == 0 && v->len && sum->member_id.off == KD_SUM_NOSTR &&
		    field_role(n->field) == ROLE_MEMBER_ID)
			sum->member_id = sum_keep(sum, v->p, v->len, 0);
		return;
	}
}

/* One node of the body's tree, at depth d under parent (NULL for the
 * root); returns 0 or KD_WALK_SKIP, as a kd_walk_fn would. */
static int sum_node(struct sumwalk *sw, const struct kd_node *n, const struct kd_node *parent,
                    unsigned d)
{
	struct kd_summary *sum = sw->sum;

	if (!parent) {
		sw->fr[0] = (struct sum_frame){-1, -1, 0};
		return 0;
	}
	if (d >= SUM_WALK_DEPTH || !n->field)
		return KD_WALK_SKIP; /* too deep, or an unknown tagged field */
	struct sum_frame *fr = parent->type == KD_T_ARRAY ? &sw->fr[d - 2] : &sw->fr[d - 1];
	int elem = (n->flags & KD_NF_ELEM) != 0;

	switch (n->type) {
	case KD_T_STRUCT:
		if (n->null)
			return KD_WALK_SKIP;
		sw->fr[d] = (struct sum_frame){fr->topic, -1, fr->level + 1};
		return 0;
	case KD_T_ARRAY:
		return 0;
	case KD_T_BOOL:
		if (fr->level == 0 && field_role(n->field) == ROLE_COMMITTED)
			sum->committed = n->val.u ? 1 : 0;
		return 0;
	case KD_T_INT16: {
		unsigned role = field_role(n->field);
		int16_t v = (int16_t)n->val.i;
		if (role == ROLE_ERROR_CODE) {
			sum_error(sum, v);
			if (v && fr->level == 0 && !sw->err_top)
				sw->err_top = v;
			if (v && !sw->err_any)
				sw->err_any = v;
			if (v && fr->part >= 0)
				sum->tp[fr->part].error = v;
			else if (v && fr->topic >= 0 && fr->level > 0)
				sum->tp[fr->topic].error = v;
			else if (v && fr->level == 0 && !sum->error)
				sum->error = v;
		} else if (role == ROLE_ACKS && fr->level == 0) {
			sum->acks = v;
		}
		return 0;
	}
	case KD_T_INT32: {
		unsigned role = field_role(n->field);
		int32_t v = (int32_t)n->val.i;
		if (!elem && role == ROLE_PARTITION && fr->level > 0)
			fr->part = tp_partition(sum, fr->topic, v);
		else if (elem && role == ROLE_PARTITION_LIST)
			tp_partition(sum, fr->topic, v);
		return 0;
	}
	case KD_T_INT64: {
		int64_t v = n->val.i;
		if (fr->part >= 0 && !elem) {
			struct kd_sum_tp *tp = &sum->tp[fr->part];
			switch (field_role(n->field)) {
			case ROLE_BASE_OFFSET:
				tp->base_offset = v;
				break;
			case ROLE_HIGH_WATERMARK:
				tp->high_watermark = v;
				break;
			case ROLE_OFFSET:
				if (!sw->resp)
					break;
				/* fall through */
			case ROLE_FETCH_OFFSET:
				tp->fetch_offset = v;
				break;
			}
		}
		if (n->field->entity == KD_ENT_PRODUCER_ID && sum->producer_id == -1 && v >= 0)
			sum->producer_id = v;
		return 0;
	}
	case KD_T_UUID:
		if (!elem && fr->level > 0 && field_role(n->field) == ROLE_TOPIC_ID)
			sum_topic_id(sum, fr, n->val.uuid);
		return 0;
	case KD_T_STRING:
		if (!n->null)
			sum_string(sum, fr, n, elem);
		if (!n->null && !sw->resp && fr->level == 0 &&
		    sum->api_key == KD_API_SASL_HANDSHAKE)
			sum->sasl_mech = (uint8_t)kd_sasl_mech_parse(n->val.v.p, n->val.v.len);
		return 0;
	case KD_T_BYTES:
		/* Only what kd-sasl.h may read of a secret is kept. */
		if (n->field->sensitive) {
			sum->flags |= KD_SUM_SECRET;
			if (!n->null && !sw->resp && sum->api_key == KD_API_SASL_AUTHENTICATE)
				sum_sasl_client(sum, KD_SASL_MECH_NONE, n->val.v.p, n->val.v.len);
		}
		return 0;
	case KD_T_RECORDS:
		if (!n->null)
			count_records(fr->part >= 0    ? &sum->tp[fr->part]
			              : fr->topic >= 0 ? &sum->tp[fr->topic]
			                               : NULL,
			              sum, n->val.v);
		return 0;
	default:
		return 0;
	}
}

/* The pre-order walk of kd_tree_walk(), with sum_node called directly:
 * the summary visits every node of every message. */
static void sum_visit(struct sumwalk *sw, const struct kd_node *n, const struct kd_node *parent,
                      unsigned d)
{
	if (sum_node(sw, n, parent, d) == KD_WALK_SKIP || n->type == KD_T_NONE)
		return;
	for (uint32_t i = 0; i < n->nkids; i++)
		sum_visit(sw, &n->kids[i], n, d + 1);
}

/* Decodes body as a tree in the scratch arena (sum->arena, or one for this
 * call) and reads the summary off it. Returns KD_OK or the decode error
 * (then nothing of the body is kept: the header facts and the error are
 * what the summary shows). The arena is reset (or freed) before returning. */
static int sum_walk(struct kd_summary *sum, const uint8_t *body, size_t len, int is_request)
{
	const struct kd_msgdef *def = kd_msgdef_get(sum->api_key, sum->api_version, is_request);
	if (!def || !def->body) {
		sum->flags |= KD_SUM_UNKNOWN;
		return KD_EUNSUPPORTED;
	}
	/* The tree never outlives this function. A caller's arena keeps its
	 * chunks from message to message; without one, a private arena per
	 * call keeps the summary usable from any thread with no set-up. */
	struct kd_arena own = {0};
	struct kd_arena *arena = sum->arena ? sum->arena : &own;
	struct kd_tree tree;
	int rc =
	    kd_tree_decode(&tree, arena, sum->api_key, sum->api_version, is_request, body, len);
	if (rc == KD_OK) {
		/* Frames are written before they are read (the root's first):
		 * no need to clear the stack of them for every body. */
		struct sumwalk sw;
		sw.sum = sum;
		sw.resp = (uint8_t)!is_request;
		sw.err_top = sw.err_any = 0;
		sum_visit(&sw, tree.root, NULL, 0);
		if (!is_request)
			sum->resp_error = sw.err_top ? sw.err_top : sw.err_any;
		/* Bytes after the complete body: tolerated (kd_tree_decode), a
		 * decode warning. */
		if (tree.trailing) {
			sum->flags |= is_request ? KD_SUM_REQ_WARN : KD_SUM_RESP_WARN;
			if (is_request)
				sum->req_trailing = tree.trailing;
			else
				sum->resp_trailing = tree.trailing;
		}
	}
	if (arena == &own)
		kd_arena_free(&own);
	else
		kd_arena_reset(arena);
	return rc;
}

int kd_sum_request(struct kd_summary *sum, int16_t api_key, int16_t api_version,
                   int32_t correlation_id, struct kd_view client_id, const uint8_t *body,
                   size_t len)
{
	sum->flags |= KD_SUM_REQ;
	sum->api_key = api_key;
	sum->api_version = api_version;
	sum->correlation_id = correlation_id;
	sum->req_bytes = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
	if (!client_id.null)
		sum->client_id = sum_keep(sum, client_id.p, client_id.len, 0);
	sum->req_rc = sum_walk(sum, body, len, 1);
	if (sum->req_rc && sum->req_rc != KD_EUNSUPPORTED)
		sum->flags |= KD_SUM_REQ_BAD;
	/* ProduceRequest Acks = 0: the broker sends nothing back (WIRE-NOTES 1). */
	if (api_key == KD_API_PRODUCE && sum->acks == 0 && sum->req_rc == KD_OK)
		sum->flags |= KD_SUM_NO_RESP;
	return sum->req_rc;
}

int kd_sum_response(struct kd_summary *sum, const uint8_t *body, size_t len)
{
	sum->flags |= KD_SUM_RESP;
	sum->resp_bytes = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
	if (sum->api_key < 0) {
		sum->resp_rc = KD_EUNSUPPORTED;
		return sum->resp_rc;
	}
	/* kd_tree_decode() handles the ApiVersions fallback (WIRE-NOTES 2): an
	 * unsupported version is answered with a v0 body carrying
	 * UNSUPPORTED_VERSION, decoded as v0. */
	sum->resp_rc = sum_walk(sum, body, len, 0);
	if (sum->resp_rc && sum->resp_rc != KD_EUNSUPPORTED)
		sum->flags |= KD_SUM_RESP_BAD;
	return sum->resp_rc;
}

/* ---- rendering ----
 *
 * A line is a few dozen small appends: put() copies in place when the
 * bytes fit and leaves growing the buffer to kd_w_raw(); literals carry
 * their length (put_lit), so nothing is measured again for every line. */

static inline void put(struct kd_wbuf *w, const void *p, size_t n)
{
	if (w->p && !w->err && w->cap - w->len >= n) {
		memcpy(w->p + w->len, p, n);
		w->len += n;
	} else {
		kd_w_raw(w, p, n);
	}
}

#define put_lit(w, s) put((w), "" s, sizeof(s) - 1)

static inline void put_cstr(struct kd_wbuf *w, const char *s)
{
	put(w, s, strlen(s));
}

/* A decimal integer without going through printf: the analyzer writes
 * several per line. */
static void wint(struct kd_wbuf *w, int64_t v)
{
	char buf[24];
	size_t i = sizeof(buf);
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	do {
		buf[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		buf[--i] = '-';
	put(w, buf + i, sizeof(buf) - i);
}

void kd_sum_json_str(struct kd_wbuf *w, const uint8_t *s, size_t len)
{
	kd_json_str(w, s, len);
}

/* A kept string for text output: printable ASCII as is, the rest as \xNN. */
static void text_str(struct kd_wbuf *w, struct kd_view v)
{
	static const char hex[] = "0123456789abcdef";
	uint32_t run = 0; /* start of the pending run of plain bytes */
	for (uint32_t i = 0; i < v.len; i++) {
		uint8_t c = v.p[i];
		if (c >= 0x20 && c < 0x7f && c != '\\')
			continue;
		put(w, v.p + run, i - run);
		char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
		put(w, esc, 4);
		run = i + 1;
	}
	put(w, v.p + run, v.len - run);
}

void kd_sum_fmt_ts(int64_t ts_us, char *buf, size_t cap)
{
	/* One gmtime_r per second of capture time, per thread: the analyzer
	 * formats a timestamp for every line. */
	static _Thread_local int64_t cached_sec = INT64_MIN;
	static _Thread_local char cached[64];
	time_t t = (time_t)(ts_us >= 0 ? ts_us / 1000000 : (ts_us - 999999) / 1000000);
	int64_t us = ts_us - (int64_t)t * 1000000;
	if (cap < 28) {
		if (cap)
			buf[0] = 0;
		return;
	}
	if ((int64_t)t != cached_sec) {
		struct tm tm;
		if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
			snprintf(buf, cap, "%lld", (long long)ts_us);
			return;
		}
		snprintf(cached, sizeof(cached), "%04d-%02d-%02dT%02d:%02d:%02d.",
		         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		         tm.tm_sec);
		cached_sec = (int64_t)t;
	}
	memcpy(buf, cached, 20);
	for (int i = 25; i >= 20; i--) {
		buf[i] = (char)('0' + us % 10);
		us /= 10;
	}
	buf[26] = 'Z';
	buf[27] = 0;
}

static const char *err_name(int16_t code, char *buf, size_t cap)
{
	const char *n = kd_error_name(code);
	if (n)
		return n;
	snprintf(buf, cap, "ERROR_%d", code);
	return buf;
}

static const char *api_name(const struct kd_summary *sum, char *buf, size_t cap)
{
	const char *n = sum->api_key >= 0 ? kd_api_name(sum->api_key) : NULL;
	if (n)
		return n;
	if (sum->api_key < 0)
		return "?";
	snprintf(buf, cap, "Api%d", sum->api_key);
	return buf;
}

static const char *sum_status(const struct kd_summary *sum)
{
	if (!(sum->flags & KD_SUM_REQ))
		return "unmatched";
	if (sum->flags & KD_SUM_RESP)
		return sum->resp_error ? "error" : "ok";
	if (sum->flags & KD_SUM_NO_RESP)
		return "no_response";
	return "unanswered";
}

static void tp_text(const struct kd_summary *sum, const struct kd_sum_tp *tp, struct kd_wbuf *w)
{
	char idb[KD_TOPIC_ID_TEXT];
	text_str(w, kd_sum_topic_label(sum, tp, idb));
	if (tp->partition >= 0) {
		put_lit(w, "[");
		wint(w, tp->partition);
		put_lit(w, "]");
	}
	if (tp->has_records) {
		put_lit(w, ":");
		wint(w, tp->records);
		put_lit(w, "rec/");
		wint(w, (int64_t)tp->bytes);
		put_lit(w, "B");
	}
	if (tp->base_offset >= 0) {
		put_lit(w, "@");
		wint(w, tp->base_offset);
	} else if (tp->fetch_offset >= 0) {
		put_lit(w, "@");
		wint(w, tp->fetch_offset);
	}
	if (tp->high_watermark >= 0) {
		put_lit(w, " hw=");
		wint(w, tp->high_watermark);
	}
	if (tp->error) {
		char eb[24];
		put_lit(w, " ");
		put_cstr(w, err_name(tp->error, eb, sizeof(eb)));
	}
}

/* Entries shown on one text line before "+N more". */
#define SUM_TEXT_TP 8

void kd_sum_text(const struct kd_summary *sum, struct kd_wbuf *w)
{
	char ts[40], nb[24];
	kd_sum_fmt_ts(sum->ts_us, ts, sizeof(ts));
	put_cstr(w, ts);
	put_lit(w, " ");
	put_cstr(w, sum->client[0] ? sum->client : "?");
	put_lit(w, " -> ");
	put_cstr(w, sum->broker[0] ? sum->broker : "?");
	struct kd_view cid = kd_sum_view(sum, sum->client_id);
	if (!cid.null) {
		put_lit(w, " \"");
		text_str(w, cid);
		put_lit(w, "\"");
	}
	if (sum->principal[0]) {
		put_lit(w, " principal=");
		text_str(w, (struct kd_view){(const uint8_t *)sum->principal,
		                             (uint32_t)strlen(sum->principal), 0});
	}
	if (sum->flags & KD_SUM_SASL_TOKEN) {
		put_lit(w, " SASL v0 token");
	} else if (!(sum->flags & KD_SUM_REQ)) {
		if (sum->api_key >= 0)
			kd_w_fmt(w, " %s v%d response #%d", api_name(sum, nb, sizeof(nb)),
			         sum->api_version, sum->correlation_id);
		else
			kd_w_fmt(w, " ? response #%d", sum->correlation_id);
	} else {
		put_lit(w, " ");
		put_cstr(w, api_name(sum, nb, sizeof(nb)));
		put_lit(w, " v");
		wint(w, sum->api_version);
		put_lit(w, " #");
		wint(w, sum->correlation_id);
	}
	if (sum->api_key == KD_API_PRODUCE && (sum->flags & KD_SUM_REQ)) {
		put_lit(w, " acks=");
		wint(w, sum->acks);
	}
	if (sum->sasl_mech) {
		put_lit(w, " mechanism=");
		put_cstr(w, kd_sasl_mech_name(sum->sasl_mech));
	}
	struct kd_view user = kd_sum_view(sum, sum->sasl_user);
	if (!user.null) {
		put_lit(w, " user=");
		text_str(w, user);
	}
	if (sum->flags & KD_SUM_SECRET)
		put_lit(w, " auth=[redacted]");
	struct kd_view txn = kd_sum_view(sum, sum->txn_id);
	if (!txn.null) {
		put_lit(w, " txn=");
		text_str(w, txn);
	}
	for (unsigned i = 0; i < sum->ngroups; i++) {
		put_lit(w, " group=");
		text_str(w, kd_sum_view(sum, sum->groups[i]));
	}
	struct kd_view member = kd_sum_view(sum, sum->member_id);
	if (!member.null) {
		put_lit(w, " member=");
		text_str(w, member);
	}
	if (sum->producer_id >= 0) {
		put_lit(w, " pid=");
		wint(w, sum->producer_id);
	}
	if (sum->committed >= 0)
		put_cstr(w, sum->committed ? " COMMIT" : " ABORT");
	for (unsigned i = 0; i < sum->ntp && i < SUM_TEXT_TP; i++) {
		put_cstr(w, i ? ", " : " ");
		tp_text(sum, &sum->tp[i], w);
	}
	if (sum->ntp > SUM_TEXT_TP || sum->tp_more)
		kd_w_fmt(w, " +%u more",
		         sum->ntp + sum->tp_more -
		             (sum->ntp > SUM_TEXT_TP ? SUM_TEXT_TP : sum->ntp));
	if (sum->error) {
		char eb[24];
		put_lit(w, " ");
		put_cstr(w, err_name(sum->error, eb, sizeof(eb)));
	}
	if (sum->flags & KD_SUM_REQ_BAD)
		kd_w_fmt(w, " [bad request: %s]", kd_strerror(sum->req_rc));
	if (sum->flags & KD_SUM_RESP_BAD)
		kd_w_fmt(w, " [bad response: %s]", kd_strerror(sum->resp_rc));
	if (sum->flags & KD_SUM_UNKNOWN)
		put_lit(w, " [unknown api/version]");
	if (sum->flags & KD_SUM_REQ_WARN)
		kd_w_fmt(w, " [request: %u trailing byte%s]", sum->req_trailing,
		         sum->req_trailing == 1 ? "" : "s");
	if (sum->flags & KD_SUM_RESP_WARN)
		kd_w_fmt(w, " [response: %u trailing byte%s]", sum->resp_trailing,
		         sum->resp_trailing == 1 ? "" : "s");
	if ((sum->flags & KD_SUM_REQ) && (sum->flags & KD_SUM_RESP) && sum->latency_us >= 0) {
		char frac[4] = {(char)('0' + sum->latency_us % 1000 / 100),
		                (char)('0' + sum->latency_us % 100 / 10),
		                (char)('0' + sum->latency_us % 10), 0};
		put_lit(w, " ");
		wint(w, sum->latency_us / 1000);
		put_lit(w, ".");
		put_cstr(w, frac);
		put_lit(w, "ms");
	} else if (sum->flags & KD_SUM_NO_RESP)
		put_lit(w, " (acks=0)");
	else if (sum->flags & KD_SUM_REQ && !(sum->flags & KD_SUM_RESP))
		put_lit(w, " (no response)");
}

static void json_key(struct kd_wbuf *w, const char *k)
{
	kd_w_fmt(w, ",\"%s\":", k);
}

static void json_view(struct kd_wbuf *w, struct kd_view v)
{
	kd_json_view(w, &v);
}

void kd_sum_json(const struct kd_summary *sum, struct kd_wbuf *w)
{
	char ts[40], nb[24];
	kd_sum_fmt_ts(sum->ts_us, ts, sizeof(ts));
	kd_w_fmt(w, "{\"ts\":\"%s\"", ts);
	json_key(w, "client");
	kd_json_cstr(w, sum->client);
	json_key(w, "broker");
	kd_json_cstr(w, sum->broker);
	json_key(w, "client_id");
	json_view(w, kd_sum_view(sum, sum->client_id));
	if (sum->principal[0]) {
		json_key(w, "principal");
		kd_json_cstr(w, sum->principal);
	}
	if (sum->api_key >= 0) {
		kd_w_fmt(w, ",\"api_key\":%d,\"api\":", sum->api_key);
		kd_json_cstr(w, api_name(sum, nb, sizeof(nb)));
		kd_w_fmt(w, ",\"version\":%d", sum->api_version);
	} else {
		put_lit(w, ",\"api_key\":null,\"api\":null,\"version\":null");
	}
	kd_w_fmt(w, ",\"correlation_id\":%d", sum->correlation_id);
	if (sum->latency_us >= 0 && (sum->flags & KD_SUM_REQ) && (sum->flags & KD_SUM_RESP))
		kd_w_fmt(w, ",\"latency_us\":%lld", (long long)sum->latency_us);
	else
		put_lit(w, ",\"latency_us\":null");
	kd_w_fmt(w, ",\"status\":\"%s\"", sum_status(sum));
	if ((sum->flags & KD_SUM_RESP) && sum->resp_error) {
		char eb[24];
		kd_w_fmt(w, ",\"error\":\"%s\"", err_name(sum->resp_error, eb, sizeof(eb)));
	}
	if (sum->api_key == KD_API_PRODUCE && (sum->flags & KD_SUM_REQ))
		kd_w_fmt(w, ",\"acks\":%d", sum->acks);
	if (sum->flags & KD_SUM_SASL_TOKEN)
		put_lit(w, ",\"sasl_v0_token\":true");
	if (sum->sasl_mech) {
		json_key(w, "sasl_mechanism");
		kd_json_cstr(w, kd_sasl_mech_name(sum->sasl_mech));
	}
	struct kd_view v = kd_sum_view(sum, sum->sasl_user);
	if (!v.null) {
		json_key(w, "sasl_user");
		json_view(w, v);
	}
	if (sum->flags & KD_SUM_SECRET)
		put_lit(w, ",\"auth\":\"[redacted]\"");
	v = kd_sum_view(sum, sum->txn_id);
	if (!v.null) {
		json_key(w, "transactional_id");
		json_view(w, v);
	}
	v = kd_sum_view(sum, sum->member_id);
	if (!v.null) {
		json_key(w, "member_id");
		json_view(w, v);
	}
	if (sum->producer_id >= 0)
		kd_w_fmt(w, ",\"producer_id\":%lld", (long long)sum->producer_id);
	if (sum->committed >= 0)
		kd_w_fmt(w, ",\"committed\":%s", sum->committed ? "true" : "false");
	put_lit(w, ",\"partitions\":[");
	for (unsigned i = 0; i < sum->ntp; i++) {
		const struct kd_sum_tp *tp = &sum->tp[i];
		put_cstr(w, i ? ",{\"topic\":" : "{\"topic\":");
		json_view(w, kd_sum_view(sum, tp->topic));
		if (tp->has_topic_id) {
			put_lit(w, ",\"topic_id\":");
			kd_json_uuid(w, tp->topic_id);
		}
		kd_w_fmt(w, ",\"partition\":%d", tp->partition);
		if (tp->has_records)
			kd_w_fmt(w, ",\"records\":%lld,\"batches\":%lld,\"bytes\":%llu",
			         (long long)tp->records, (long long)tp->batches,
			         (unsigned long long)tp->bytes);
		if (tp->error) {
			char eb[24];
			kd_w_fmt(w, ",\"error\":\"%s\"", err_name(tp->error, eb, sizeof(eb)));
		}
		if (tp->base_offset >= 0)
			kd_w_fmt(w, ",\"base_offset\":%lld", (long long)tp->base_offset);
		if (tp->high_watermark >= 0)
			kd_w_fmt(w, ",\"high_watermark\":%lld", (long long)tp->high_watermark);
		if (tp->fetch_offset >= 0)
			kd_w_fmt(w, ",\"offset\":%lld", (long long)tp->fetch_offset);
		put_lit(w, "}");
	}
	put_lit(w, "]");
	if (sum->tp_more)
		kd_w_fmt(w, ",\"partitions_more\":%u", sum->tp_more);
	kd_w_fmt(w, ",\"records\":%lld,\"record_bytes\":%llu", (long long)sum->records,
	         (unsigned long long)sum->record_bytes);
	put_lit(w, ",\"groups\":[");
	for (unsigned i = 0; i < sum->ngroups; i++) {
		if (i)
			put_lit(w, ",");
		json_view(w, kd_sum_view(sum, sum->groups[i]));
	}
	put_lit(w, "],\"errors\":{");
	for (unsigned i = 0; i < sum->nerrs; i++) {
		char eb[24];
		kd_w_fmt(w, "%s\"%s\":%u", i ? "," : "",
		         err_name(sum->errs[i].code, eb, sizeof(eb)), sum->errs[i].count);
	}
	put_lit(w, "}");
	if (sum->flags & (KD_SUM_REQ_BAD | KD_SUM_RESP_BAD | KD_SUM_UNKNOWN)) {
		put_lit(w, ",\"problems\":[");
		int first = 1;
		if (sum->flags & KD_SUM_REQ_BAD) {
			kd_w_fmt(w, "\"request body: %s\"", kd_strerror(sum->req_rc));
			first = 0;
		}
		if (sum->flags & KD_SUM_RESP_BAD) {
			kd_w_fmt(w, "%s\"response body: %s\"", first ? "" : ",",
			         kd_strerror(sum->resp_rc));
			first = 0;
		}
		if (sum->flags & KD_SUM_UNKNOWN)
			kd_w_fmt(w, "%s\"unknown api or version\"", first ? "" : ",");
		put_lit(w, "]");
	}
	if (sum->flags & (KD_SUM_REQ_WARN | KD_SUM_RESP_WARN)) {
		put_lit(w, ",\"warnings\":[");
		if (sum->flags & KD_SUM_REQ_WARN)
			kd_w_fmt(w, "\"request body: %u trailing bytes\"", sum->req_trailing);
		if (sum->flags & KD_SUM_RESP_WARN)
			kd_w_fmt(w, "%s\"response body: %u trailing bytes\"",
			         (sum->flags & KD_SUM_REQ_WARN) ? "," : "", sum->resp_trailing);
		put_lit(w, "]");
	}
	put_lit(w, "}");
}
