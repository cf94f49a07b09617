/* rule-facts.c: the facts rule_eval() judges, read off a decoded request
 * (struct kd_tree) the same way for the proxy, the analyzer and the tests.
 *
 * Schema-driven, no per-API code: every string whose entity type is
 * topicName names a topic; a UUID named TopicId names one where no name
 * stands beside it (resolved through the topic map, else shown as
 * "topic-id:..."); every RECORDS field counts for the topic named by its
 * nearest enclosing element; entity types groupId and transactionalId give
 * the groups and transactional ids, and names the schema leaves unannotated
 * because a sibling field gives their kind (a config resource, a
 * coordinator key: kd-names.h) count as such too. Field names give the rest: Acks at the
 * top, NumPartitions and ReplicationFactor beside a topic (CreateTopics).
 * Topics appear once each, in request order. */
#include <string.h>

#include "kd-arena.h"
#include "kd-names.h"
#include "kd-records.h"
#include "kd-topics.h"
#include "kd-tree.h"
#include "kd-walk.h"
#include "rule.h"

#define FACTS_DEPTH 32

/* The RECORDS views of one topic. */
struct fact_recs {
	struct kd_view v;
	struct fact_recs *next;
};

struct fwalk {
	struct rule_facts *f;
	int records; /* read every record: sizes */
	int err;
	/* The topic each open element names, by depth. */
	int topic_at[FACTS_DEPTH];
	/* Name -> topic index, open addressing, power of two. */
	int32_t *slots;
	unsigned nslots;
};

static uint32_t name_hash(const uint8_t *p, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static int grow_slots(struct fwalk *w)
{
	unsigned n = w->nslots ? w->nslots * 2 : 64;
	int32_t *s = kd_arena_alloc_raw(w->f->a, n * sizeof(*s));
	if (!s)
		return -1;
	memset(s, 0xff, n * sizeof(*s));
	for (unsigned i = 0; i < w->f->req.ntopics; i++) {
		const struct kd_view *name = &w->f->topics[i].name;
		unsigned j = name_hash(name->p, name->len) & (n - 1);
		while (s[j] >= 0)
			j = (j + 1) & (n - 1);
		s[j] = (int32_t)i;
	}
	w->slots = s;
	w->nslots = n;
	return 0;
}

/* The index of topic name (added when new), or -1 on allocation failure. */
static int topic_index(struct fwalk *w, const uint8_t *p, size_t len)
{
	struct rule_facts *f = w->f;
	if ((f->req.ntopics + 1) * 2 > w->nslots && grow_slots(w))
		return -1;
	unsigned j = name_hash(p, len) & (w->nslots - 1);
	for (; w->slots[j] >= 0; j = (j + 1) & (w->nslots - 1)) {
		const struct kd_view *n = &f->topics[w->slots[j]].name;
		if (n->len == len && !memcmp(n->p, p, len))
			return w->slots[j];
	}
	if (f->req.ntopics == f->cap) {
		unsigned ncap = f->cap ? f->cap * 2 : 8;
		struct rule_topic *t = kd_arena_alloc(f->a, ncap * sizeof(*t));
		struct fact_recs **r = kd_arena_alloc(f->a, ncap * sizeof(*r));
		if (!t || !r)
			return -1;
		if (f->cap) {
			memcpy(t, f->topics, f->cap * sizeof(*t));
			memcpy(r, f->recs, f->cap * sizeof(*r));
		}
		f->topics = t;
		f->recs = r;
		f->cap = ncap;
	}
	unsigned i = f->req.ntopics++;
	struct rule_topic *t = &f->topics[i];
	memset(t, 0, sizeof(*t));
	t->name = (struct kd_view){p, (uint32_t)len, 0};
	t->records = 0;
	t->bytes = 0;
	t->max_record_bytes = w->records ? 0 : -1;
	t->num_partitions = -1;
	t->replication_factor = -1;
	f->recs[i] = NULL;
	w->slots[j] = (int32_t)i;
	f->req.topics = f->topics;
	return (int)i;
}

static int add_view(struct rule_facts *f, struct kd_view **v, unsigned *n, unsigned *cap,
                    struct kd_view val)
{
	for (unsigned i = 0; i < *n; i++)
		if ((*v)[i].len == val.len && !memcmp((*v)[i].p, val.p, val.len))
			return 0;
	if (*n == *cap) {
		unsigned ncap = *cap ? *cap * 2 : 4;
		struct kd_view *nv = kd_arena_alloc(f->a, ncap * sizeof(*nv));
		if (!nv)
			return -1;
		if (*cap)
			memcpy(nv, *v, *cap * sizeof(*nv));
		*v = nv;
		*cap = ncap;
	}
	(*v)[(*n)++] = val;
	return 0;
}

/* Whether a struct node has a non-empty topic name among its fields. */
static int has_topic_name(const struct kd_node *s)
{
	for (uint32_t i = 0; s && s->type == KD_T_STRUCT && i < s->nkids; i++) {
		const struct kd_node *k = &s->kids[i];
		if (k->field && k->field->entity == KD_ENT_TOPIC_NAME && k->type == KD_T_STRING &&
		    !k->null && k->val.v.len)
			return 1;
	}
	return 0;
}

/* The topic a node at depth belongs to: the innermost open element's. */
static int current_topic(const struct fwalk *w, unsigned depth)
{
	for (unsigned d = depth < FACTS_DEPTH ? depth : FACTS_DEPTH; d-- > 0;)
		if (w->topic_at[d] >= 0)
			return w->topic_at[d];
	return -1;
}

/* Marks the element holding node (at depth) as naming topic i. */
static void open_topic(struct fwalk *w, unsigned depth, int i)
{
	/* The holder is the node's parent, at depth - 1. */
	if (depth >= 1 && depth - 1 < FACTS_DEPTH)
		w->topic_at[depth - 1] = i;
}

static void records_facts(struct fwalk *w, int ti, struct kd_view v)
{
	struct rule_facts *f = w->f;
	struct rule_topic *t = &f->topics[ti];
	struct kd_rec_peek peek;
	if (!v.p || v.null || !v.len)
		return;
	if (kd_rec_peek_batches(v.p, v.len, &peek) >= 0) {
		t->codecs |= (uint8_t)peek.codecs;
		t->records += peek.records;
		t->bytes += (int64_t)peek.bytes;
	}
	struct fact_recs *r = kd_arena_alloc(f->a, sizeof(*r));
	if (!r) {
		w->err = KD_ENOMEM;
		return;
	}
	r->v = v;
	r->next = f->recs[ti];
	f->recs[ti] = r;
	if (!w->records)
		return;
	struct kd_batch *b;
	struct kd_record rec;
	kd_rec_iter_reset(&f->it, v.p, v.len);
	int rc;
	while ((rc = kd_rec_next_batch(&f->it, &b)) != 0) {
		if (rc == KD_REC_TRUNCATED)
			break;
		if (rc < 0)
			continue;
		while (kd_rec_next_record(&f->it, &rec) == 1)
			if ((int64_t)rec.raw.len > t->max_record_bytes)
				t->max_record_bytes = rec.raw.len;
	}
}

static int visit(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	struct fwalk *w = arg;
	struct rule_facts *f = w->f;
	const struct kd_field *fld = n->field;
	unsigned depth = wc->depth;
	/* Leaving elements: forget the topics of depths at or below this one. */
	for (unsigned d = depth; d < FACTS_DEPTH && d <= depth + 1; d++)
		w->topic_at[d] = -1;
	if (w->err || !fld)
		return w->err ? 2 : 0;
	int i;
	switch (n->type) {
	case KD_T_STRING:
		if (n->null)
			break;
		if (fld->entity == KD_ENT_TOPIC_NAME && n->val.v.len) {
			if ((i = topic_index(w, n->val.v.p, n->val.v.len)) < 0)
				goto nomem;
			/* A []string of names opens nothing; a Name field opens
			 * its element. */
			if (!(n->flags & KD_NF_ELEM))
				open_topic(w, depth, i);
		} else if (fld->entity == KD_ENT_GROUP_ID) {
			if (add_view(f, &f->groups, &f->req.ngroups, &f->gcap, n->val.v))
				goto nomem;
			f->req.groups = f->groups;
		} else if (fld->entity == KD_ENT_TRANSACTIONAL_ID) {
			if (add_view(f, &f->txns, &f->req.ntxn_ids, &f->tcap, n->val.v))
				goto nomem;
			f->req.txn_ids = f->txns;
		}
		break;
	case KD_T_UUID: {
		static const uint8_t zero[16];
		if (strcmp(fld->name, "TopicId") || !memcmp(n->val.uuid, zero, 16) ||
		    has_topic_name(wc->parent))
			break;
		struct kd_view name = kd_topics_get(f->map, n->val.uuid);
		if (name.null || !name.p) {
			char *text = kd_arena_alloc(f->a, KD_TOPIC_ID_TEXT);
			if (!text)
				goto nomem;
			name.len = (uint32_t)kd_topic_id_text(n->val.uuid, text);
			name.p = (const uint8_t *)text;
			name.null = 0;
		}
		if ((i = topic_index(w, name.p, name.len)) < 0)
			goto nomem;
		open_topic(w, depth, i);
		break;
	}
	case KD_T_RECORDS:
		if ((i = current_topic(w, depth)) >= 0)
			records_facts(w, i, n->val.v);
		break;
	case KD_T_INT16:
		if (depth == 1 && !strcmp(fld->name, "Acks"))
			f->req.acks = (int16_t)n->val.i;
		else if (!strcmp(fld->name, "ReplicationFactor") &&
		         (i = current_topic(w, depth)) >= 0)
			f->topics[i].replication_factor = (int32_t)n->val.i;
		break;
	case KD_T_INT32:
		if (!strcmp(fld->name, "NumPartitions") && (i = current_topic(w, depth)) >= 0)
			f->topics[i].num_partitions = (int32_t)n->val.i;
		break;
	default:
		break;
	}
	return 0;
nomem:
	w->err = KD_ENOMEM;
	return 2;
}

/* A name no entityType annotates (kd_names_each): a config resource's
 * ResourceName by its ResourceType, a FindCoordinator key by its KeyType. */
static int typed_name(void *arg, int ent, const uint8_t *p, size_t len, struct kd_view *out)
{
	struct fwalk *w = arg;
	struct rule_facts *f = w->f;
	struct kd_view v = {.p = p, .len = (uint32_t)len};
	(void)out;
	if (w->err)
		return KD_NAME_SAME;
	if (ent == KD_ENT_TOPIC_NAME) {
		if (topic_index(w, p, len) < 0)
			w->err = KD_ENOMEM;
	} else if (ent == KD_ENT_GROUP_ID) {
		if (add_view(f, &f->groups, &f->req.ngroups, &f->gcap, v))
			w->err = KD_ENOMEM;
		f->req.groups = f->groups;
	} else if (ent == KD_ENT_TRANSACTIONAL_ID) {
		if (add_view(f, &f->txns, &f->req.ntxn_ids, &f->tcap, v))
			w->err = KD_ENOMEM;
		f->req.txn_ids = f->txns;
	}
	return KD_NAME_SAME;
}

/* rule_req.has_header for facts: whether every record of the topic
 * carries a header named name. Decompresses the topic's batches again: only
 * policies with `headers:` ask. */
static int facts_has_header(void *arg, unsigned topic, const char *name, size_t len)
{
	struct rule_facts *f = arg;
	if (topic >= f->req.ntopics)
		return -1;
	for (const struct fact_recs *r = f->recs[topic]; r; r = r->next) {
		struct kd_batch *b;
		struct kd_record rec;
		int rc;
		kd_rec_iter_reset(&f->it, r->v.p, r->v.len);
		while ((rc = kd_rec_next_batch(&f->it, &b)) != 0) {
			if (rc == KD_REC_TRUNCATED)
				break;
			if (rc < 0)
				return 0; /* a batch that does not read cannot be shown compliant */
			while (kd_rec_next_record(&f->it, &rec) == 1) {
				struct kd_rec_hdr_iter hi;
				struct kd_header h;
				int found = 0;
				kd_rec_headers_init(&hi, &rec);
				while (!found && kd_rec_next_header(&hi, &h) == 1)
					found = h.key.len == len && !memcmp(h.key.p, name, len);
				if (!found)
					return 0;
			}
		}
	}
	return 1;
}

/* Starts f over for a request of (api_key, version). */
static void facts_begin(struct rule_facts *f, int16_t api_key, int16_t version,
                        const struct kd_topics *map, struct kd_arena *a)
{
	struct kd_rec_iter it = f->it; /* keeps its decompression buffer */
	int it_ok = f->it_ok;
	memset(f, 0, sizeof(*f));
	f->it = it;
	f->it_ok = it_ok;
	if (!f->it_ok) {
		kd_rec_iter_init(&f->it, NULL, 0, NULL);
		f->it_ok = 1;
	}
	f->a = a;
	f->map = map;
	f->req.api_key = api_key;
	f->req.api_version = version;
	f->req.acks = -2;
	f->req.broker_id = -1;
	f->req.has_header = facts_has_header;
	f->req.arg = f;
}

int rule_facts_read(struct rule_facts *f, const struct kd_tree *t, const struct kd_topics *map,
                    int records, struct kd_arena *a)
{
	facts_begin(f, t->api_key, t->version, map, a);
	if (!t->root)
		return KD_OK; /* header facts only */
	struct fwalk w = {.f = f, .records = records};
	for (unsigned d = 0; d < FACTS_DEPTH; d++)
		w.topic_at[d] = -1;
	kd_tree_walk(t, visit, &w);
	if (!w.err && kd_names_typed_api(t->api_key))
		kd_names_each(t, typed_name, &w);
	if (w.err)
		return w.err;
	f->req.have_body = 1;
	return KD_OK;
}

/* ---- topic names off the streaming walker (rule_facts_walk) ---- */

struct swalk {
	struct fwalk w;
	/* Per depth of the walk: a TopicId seen, and whether a topic name
	 * stands beside it in the same struct (then the name names it). */
	uint8_t id[KD_WALK_DEPTH + 1][16];
	uint8_t has_id[KD_WALK_DEPTH + 1];
	uint8_t has_name[KD_WALK_DEPTH + 1];
};

static void swalk_value(void *arg, unsigned depth, const struct kd_field *fld, const uint8_t *p,
                        size_t len)
{
	static const uint8_t zero[16];
	struct swalk *sw = arg;
	struct fwalk *w = &sw->w;
	if (w->err)
		return;
	if (depth > KD_WALK_DEPTH) {
		w->err = KD_ELIMIT;
		return;
	}
	if (!fld) { /* the struct at depth ends */
		if (sw->has_id[depth] && !sw->has_name[depth]) {
			struct kd_view name = kd_topics_get(w->f->map, sw->id[depth]);
			if (name.null || !name.p) {
				char *text = kd_arena_alloc(w->f->a, KD_TOPIC_ID_TEXT);
				if (!text) {
					w->err = KD_ENOMEM;
					return;
				}
				name.len = (uint32_t)kd_topic_id_text(sw->id[depth], text);
				name.p = (const uint8_t *)text;
			}
			if (topic_index(w, name.p, name.len) < 0)
				w->err = KD_ENOMEM;
		}
		sw->has_id[depth] = sw->has_name[depth] = 0;
		return;
	}
	if (fld->type == KD_T_UUID) {
		if (len == 16 && memcmp(p, zero, 16)) {
			memcpy(sw->id[depth], p, 16);
			sw->has_id[depth] = 1;
		}
		return;
	}
	if (!len)
		return;
	uint8_t *name = kd_arena_alloc_raw(w->f->a, len);
	if (!name) {
		w->err = KD_ENOMEM;
		return;
	}
	memcpy(name, p, len);
	if (topic_index(w, name, len) < 0)
		w->err = KD_ENOMEM;
	else if (fld->type == KD_T_STRING)
		sw->has_name[depth] = 1; /* a field, not an element of a []string */
}

int rule_facts_walk(struct rule_facts *f, int16_t api_key, int16_t version,
                    const struct kd_view *segs, unsigned nsegs, const struct kd_topics *map,
                    struct kd_arena *a)
{
	uint64_t len = 0;
	facts_begin(f, api_key, version, map, a);
	for (unsigned i = 0; i < nsegs; i++)
		len += segs[i].len;
	struct kd_walk kw;
	int rc = kd_walk_init(&kw, api_key, version, 1, len);
	if (rc != KD_OK)
		return rc;
	struct swalk *sw = kd_arena_alloc(a, sizeof(*sw));
	if (!sw)
		return KD_ENOMEM;
	memset(sw, 0, sizeof(*sw));
	sw->w.f = f;
	sw->w.records = 0;
	kd_walk_on_value(&kw, swalk_value, sw);
	rc = KD_NEED_MORE;
	for (unsigned i = 0; i < nsegs && rc == KD_NEED_MORE; i++) {
		size_t used = 0;
		rc = kd_walk_feed(&kw, segs[i].p, segs[i].len, &used);
		if (sw->w.err)
			return sw->w.err;
	}
	if (rc == KD_NEED_MORE) { /* an empty body, or one that ends at a level's end */
		size_t used = 0;
		static const uint8_t none[1];
		rc = kd_walk_feed(&kw, none, 0, &used);
	}
	if (rc != KD_WALK_END)
		return rc < 0 ? rc : KD_EMALFORMED;
	if (kw.missed)
		return KD_ELIMIT; /* a name too long to capture: read it whole */
	/* Only names were read: what the records hold is unknown. */
	for (unsigned i = 0; i < f->req.ntopics; i++) {
		f->topics[i].records = -1;
		f->topics[i].bytes = -1;
		f->topics[i].max_record_bytes = -1;
	}
	f->req.have_body = 1;
	return KD_OK;
}

void rule_facts_free(struct rule_facts *f)
{
	if (f->it_ok)
		kd_rec_iter_free(&f->it);
	f->it_ok = 0;
}
