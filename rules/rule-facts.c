/* rule-facts.c: the facts rule_eval() judges, read off a decoded request
 * (struct kd_tree) the same way for the proxy, the analyzer and the tests.
 *
 * Schema-driven, no per-API code: every string whose entity type is
 * topicName names a topic; a UUID named TopicId names one where no name
 * stands beside it (resolved through the topic map, else shown as
 * "topic-id:..."); every RECORDS field counts for the topic named by its
 * nearest enclosing element; entity types groupId and transactionalId give
 * the groups and transactional ids. Field names give the rest: Acks at the
 * top, NumPartitions and ReplicationFactor beside a topic (CreateTopics).
 * Topics appear once each, in request order. */
#include <string.h>

#include "kd-arena.h"
#include "kd-records.h"
#include "kd-topics.h"
#include "kd-tree.h"
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

int rule_facts_read(struct rule_facts *f, const struct kd_tree *t, const struct kd_topics *map,
                    int records, struct kd_arena *a)
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
	f->req.api_key = t->api_key;
	f->req.api_version = t->version;
	f->req.acks = -2;
	f->req.broker_id = -1;
	f->req.has_header = facts_has_header;
	f->req.arg = f;
	if (!t->root)
		return KD_OK; /* header facts only */
	struct fwalk w = {.f = f, .records = records};
	for (unsigned d = 0; d < FACTS_DEPTH; d++)
		w.topic_at[d] = -1;
	kd_tree_walk(t, visit, &w);
	if (w.err)
		return w.err;
	f->req.have_body = 1;
	return KD_OK;
}

void rule_facts_free(struct rule_facts *f)
{
	if (f->it_ok)
		kd_rec_iter_free(&f->it);
	f->it_ok = 0;
}
