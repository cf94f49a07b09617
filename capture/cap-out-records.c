/* cap-out-records.c: `--format records`, one JSON object per record as a
 * consumer would see it, for produced and fetched data.
 *
 * Transactional records wait until the capture shows how their
 * transaction ended: an EndTxn request (Committed=false is an abort) or an
 * ABORT/COMMIT control marker for their producer id in fetched data. A
 * fetched record inside a range the FetchResponse's AbortedTransactions
 * names is known aborted at once. What is still waiting at the end goes out
 * without "aborted". */
#define CAP_AN_PRIVATE
#include <stdlib.h>
#include <string.h>

#include "cap-analyze.h"
#include "kd-records.h"
#include "kd-render.h"
#include "kd-tree.h"
#include "kd.h"

/* Bytes of held lines before the oldest are released undecided. */
#define HELD_MAX (64u << 20)

struct held {
	struct held *next;
	int64_t pid;
	size_t len;
	/* cap_an_opts.on_record: the record, its views into line */
	uint8_t is_rec;
	struct cap_an_record rec;
	struct kd_record kr;
	char line[]; /* the JSON object without its closing brace; or the record's bytes */
};

/* What the produce side showed of transactions: the offsets each
 * producer id wrote per partition, open until its EndTxn. Lets a fetched
 * record whose transaction ended before the fetch be flagged at once. */
struct txn_range {
	int64_t pid;
	int64_t first, last;
	int32_t partition;
	int8_t state; /* 0 open, 1 committed, 2 aborted */
	char *topic;
};

#define RANGES_MAX 100000u

struct an_txn {
	struct held *head, *tail;
	size_t bytes;
	struct txn_range *r;
	size_t nr, capr;
};

static struct an_txn *txn_get(struct cap_an *an)
{
	if (!an->txn)
		an->txn = calloc(1, sizeof(*an->txn));
	return an->txn;
}

static void range_note(struct cap_an *an, int64_t pid, struct kd_view topic, int32_t part,
                       int64_t off)
{
	struct an_txn *tx = txn_get(an);
	if (!tx || topic.null)
		return;
	for (size_t i = tx->nr; i-- > 0;) {
		struct txn_range *r = &tx->r[i];
		if (r->pid == pid && r->state == 0 && r->partition == part &&
		    strlen(r->topic) == topic.len && !memcmp(r->topic, topic.p, topic.len)) {
			if (off < r->first)
				r->first = off;
			if (off > r->last)
				r->last = off;
			return;
		}
	}
	if (tx->nr == tx->capr) {
		if (tx->nr >= RANGES_MAX) {
			free(tx->r[0].topic);
			memmove(tx->r, tx->r + 1, (tx->nr - 1) * sizeof(*tx->r));
			tx->nr--;
		} else {
			size_t ncap = tx->capr ? tx->capr * 2 : 16;
			struct txn_range *nr = realloc(tx->r, ncap * sizeof(*nr));
			if (!nr)
				return;
			tx->r = nr;
			tx->capr = ncap;
		}
	}
	char *t = malloc(topic.len + 1u);
	if (!t)
		return;
	memcpy(t, topic.p, topic.len);
	t[topic.len] = 0;
	tx->r[tx->nr++] = (struct txn_range){pid, off, off, part, 0, t};
}

/* -1 unknown or still open, 0 committed, 1 aborted. */
static int range_outcome(const struct cap_an *an, int64_t pid, struct kd_view topic, int32_t part,
                         int64_t off)
{
	const struct an_txn *tx = an->txn;
	if (!tx || topic.null)
		return -1;
	for (size_t i = 0; i < tx->nr; i++) {
		const struct txn_range *r = &tx->r[i];
		if (r->pid == pid && r->partition == part && off >= r->first && off <= r->last &&
		    strlen(r->topic) == topic.len && !memcmp(r->topic, topic.p, topic.len))
			return r->state == 0 ? -1 : r->state == 2;
	}
	return -1;
}

/* aborted: 1 or 0 when the transaction's end is known, -1 when not. */
static void held_out(struct cap_an *an, struct held *h, int aborted)
{
	if (h->is_rec) {
		h->rec.aborted = (int8_t)aborted;
		an->opts.on_record(an->opts.record_arg, &h->rec);
		return;
	}
	kd_w_raw(&an->ob, h->line, h->len);
	kd_w_cstr(&an->ob, aborted > 0 ? ",\"aborted\":true}\n" : "}\n");
}

static void held_release_oldest(struct cap_an *an);

/* A transactional record for on_record, copied to wait for its
 * transaction's end. */
static void hold_rec(struct cap_an *an, const struct cap_an_record *r)
{
	const struct kd_record *kr = r->rec;
	size_t tl = r->topic.null ? 0 : r->topic.len;
	size_t len = tl + kr->key.len + kr->value.len + kr->headers.len;
	struct held *h = txn_get(an) ? malloc(sizeof(*h) + len + 1) : NULL;
	if (!h) {
		an->opts.on_record(an->opts.record_arg, r); /* undecided, as at the end */
		return;
	}
	h->next = NULL;
	h->pid = r->producer_id;
	h->len = len;
	h->is_rec = 1;
	h->rec = *r;
	h->kr = *kr;
	h->rec.rec = &h->kr;
	h->rec.aborted = -1;
	char *p = h->line;
	struct kd_view *vs[] = {&h->rec.topic, &h->kr.key, &h->kr.value, &h->kr.headers};
	for (size_t i = 0; i < 4; i++) {
		if (vs[i]->null || !vs[i]->len)
			continue;
		memcpy(p, vs[i]->p, vs[i]->len);
		vs[i]->p = (const uint8_t *)p;
		p += vs[i]->len;
	}
	if (an->txn->tail)
		an->txn->tail->next = h;
	else
		an->txn->head = h;
	an->txn->tail = h;
	an->txn->bytes += len;
	while (an->txn->bytes > HELD_MAX)
		held_release_oldest(an);
}

void an_rec_txn_end(struct cap_an *an, int64_t pid, int aborted)
{
	struct an_txn *tx = an->txn;
	if (!tx)
		return;
	for (size_t i = 0; i < tx->nr; i++)
		if (tx->r[i].pid == pid && tx->r[i].state == 0)
			tx->r[i].state = (int8_t)(aborted ? 2 : 1);
	struct held **pp = &tx->head, *prev = NULL;
	while (*pp) {
		struct held *h = *pp;
		if (h->pid != pid) {
			prev = h;
			pp = &h->next;
			continue;
		}
		held_out(an, h, aborted);
		*pp = h->next;
		if (tx->tail == h)
			tx->tail = prev;
		tx->bytes -= h->len;
		free(h);
	}
}

static void held_release_oldest(struct cap_an *an)
{
	struct an_txn *tx = an->txn;
	struct held *h = tx->head;
	tx->head = h->next;
	if (!tx->head)
		tx->tail = NULL;
	tx->bytes -= h->len;
	held_out(an, h, -1);
	free(h);
}

static void hold(struct cap_an *an, int64_t pid, const uint8_t *line, size_t len)
{
	if (!txn_get(an))
		goto direct;
	struct held *h = malloc(sizeof(*h) + len);
	if (!h)
		goto direct;
	h->next = NULL;
	h->pid = pid;
	h->len = len;
	h->is_rec = 0;
	memcpy(h->line, line, len);
	if (an->txn->tail)
		an->txn->tail->next = h;
	else
		an->txn->head = h;
	an->txn->tail = h;
	an->txn->bytes += len;
	while (an->txn->bytes > HELD_MAX)
		held_release_oldest(an);
	return;
direct:
	kd_w_raw(&an->ob, line, len);
	kd_w_cstr(&an->ob, "}\n");
}

void an_rec_finish(struct cap_an *an)
{
	while (an->txn && an->txn->head)
		held_release_oldest(an);
}

void an_rec_free(struct cap_an *an)
{
	if (!an->txn)
		return;
	struct held *h = an->txn->head;
	while (h) {
		struct held *n = h->next;
		free(h);
		h = n;
	}
	for (size_t i = 0; i < an->txn->nr; i++)
		free(an->txn->r[i].topic);
	free(an->txn->r);
	free(an->txn);
	an->txn = NULL;
}

/* key / value: a JSON string when valid UTF-8, else base64 plus a
 * "<name>_encoding":"base64" sibling; null stays null. */
static void kv(struct kd_wbuf *w, const char *name, struct kd_view v)
{
	kd_w_fmt(w, ",\"%s\":", name);
	if (v.null) {
		kd_w_cstr(w, "null");
	} else if (kd_utf8_valid(v.p, v.len)) {
		kd_json_str(w, v.p, v.len);
	} else {
		kd_json_bytes(w, v.p, v.len);
		kd_w_fmt(w, ",\"%s_encoding\":\"base64\"", name);
	}
}

struct rec_ctx {
	const char *source;
	int8_t acked; /* produce: cap_an_record.acked */
	int64_t ts_us;
	const struct an_flow *fl;
	const struct kd_summary *sum;
	struct kd_view topic;
	int32_t partition;
	const uint8_t *topic_id; /* the message named the topic by id (Fetch v13+) */
};

/* One record's line, without the closing brace, into w. */
static void rec_line(struct kd_wbuf *w, const struct rec_ctx *rc, const struct kd_batch *b,
                     const struct kd_record *rec, int have_offset, int64_t offset)
{
	char tsb[40];
	kd_sum_fmt_ts(rc->ts_us, tsb, sizeof(tsb));
	kd_w_fmt(w, "{\"source\":\"%s\",\"ts\":\"%s\",\"client\":", rc->source, tsb);
	kd_json_cstr(w, an_flow_client(rc->fl));
	kd_w_cstr(w, ",\"broker\":");
	kd_json_cstr(w, an_flow_broker(rc->fl));
	kd_w_fmt(w, ",\"correlation_id\":%d,\"client_id\":", rc->sum->correlation_id);
	struct kd_view cid = kd_sum_view(rc->sum, rc->sum->client_id);
	kd_json_view(w, &cid);
	kd_w_cstr(w, ",\"topic\":");
	kd_json_view(w, &rc->topic);
	if (rc->topic_id) {
		kd_w_cstr(w, ",\"topic_id\":");
		kd_json_uuid(w, rc->topic_id);
	}
	kd_w_fmt(w, ",\"partition\":%d", rc->partition);
	if (have_offset)
		kd_w_fmt(w, ",\"offset\":%lld", (long long)offset);
	else
		kd_w_cstr(w, ",\"offset\":null");
	if (rec->timestamp >= 0 || rec->magic > 0)
		kd_w_fmt(w, ",\"timestamp\":%lld", (long long)rec->timestamp);
	else
		kd_w_cstr(w, ",\"timestamp\":null");
	kv(w, "key", rec->key);
	kv(w, "value", rec->value);
	kd_w_cstr(w, ",\"headers\":[");
	struct kd_rec_hdr_iter hi;
	struct kd_header h;
	int first = 1;
	kd_rec_headers_init(&hi, rec);
	while (rec->magic == 2 && kd_rec_next_header(&hi, &h) == 1) {
		kd_w_cstr(w, first ? "{\"key\":" : ",{\"key\":");
		first = 0;
		kd_json_view(w, &h.key);
		kd_w_cstr(w, ",\"value\":");
		if (h.value.null)
			kd_w_cstr(w, "null");
		else if (kd_utf8_valid(h.value.p, h.value.len))
			kd_json_str(w, h.value.p, h.value.len);
		else {
			kd_json_bytes(w, h.value.p, h.value.len);
			kd_w_cstr(w, ",\"value_encoding\":\"base64\"");
		}
		kd_w_cstr(w, "}");
	}
	kd_w_fmt(w, "],\"codec\":\"%s\",\"producer_id\":%lld,\"sequence\":%d",
	         kd_codec_name(b->codec), (long long)b->producer_id, rec->sequence);
	if (b->transactional)
		kd_w_cstr(w, ",\"transactional\":true");
}

/* Aborted ranges of one fetched partition (AbortedTransactions). */
struct aborted_set {
	const struct kd_node *arr;
};

static int in_aborted(const struct aborted_set *as, int64_t pid, int64_t offset)
{
	if (!as->arr)
		return 0;
	for (uint32_t i = 0; i < as->arr->nkids; i++) {
		struct kd_node *p = kd_node_child(&as->arr->kids[i], "ProducerId");
		struct kd_node *f = kd_node_child(&as->arr->kids[i], "FirstOffset");
		if (p && f && p->val.i == pid && offset >= f->val.i)
			return 1;
	}
	return 0;
}

/* The records of one partition's RECORDS blob. base >= 0 gives produced
 * records their offsets (BaseOffset + position); min_offset hides fetched
 * records before the fetch position, as a consumer does. */
static void records_out(struct cap_an *an, const struct rec_ctx *rc, struct kd_view blob,
                        int produce, int64_t base, int64_t min_offset, const struct aborted_set *as)
{
	struct kd_rec_iter it;
	struct kd_batch *b;
	struct kd_record rec;
	struct kd_wbuf line = {0};
	int64_t pos = 0;
	int rcode;
	if (blob.null || !blob.len)
		return;
	kd_rec_iter_init(&it, blob.p, blob.len, NULL);
	while ((rcode = kd_rec_next_batch(&it, &b)) != 0) {
		if (rcode == KD_REC_TRUNCATED)
			break;
		if (rcode < 0) {
			an_problem(an, rc->fl, "%s records of %.*s[%d]: %s", rc->source,
			           (int)rc->topic.len, rc->topic.p ? (const char *)rc->topic.p : "",
			           rc->partition, it.err);
			continue;
		}
		if (b->control) {
			if (!produce && b->producer_id >= 0 &&
			    (b->control_type == KD_CTRL_ABORT || b->control_type == KD_CTRL_COMMIT))
				an_rec_txn_end(an, b->producer_id,
				               b->control_type == KD_CTRL_ABORT);
			while (kd_rec_next_record(&it, &rec) == 1)
				;
			continue;
		}
		while ((rcode = kd_rec_next_record(&it, &rec)) == 1) {
			int64_t off = produce ? base + pos : rec.offset;
			pos++;
			if (!produce && rec.offset < min_offset)
				continue;
			an->counts.records++;
			if (an->opts.on_record) {
				struct cap_an_record r = {
				    .topic = rc->topic,
				    .partition = rc->partition,
				    .ts_us = rc->ts_us,
				    .acks = rc->sum->acks,
				    .acked = rc->acked,
				    .aborted = 0,
				    .transactional = b->transactional,
				    .producer_id = b->producer_id,
				    .rec = &rec,
				};
				if (b->transactional && b->producer_id >= 0)
					hold_rec(an, &r);
				else
					an->opts.on_record(an->opts.record_arg, &r);
				continue;
			}
			line.len = 0;
			rec_line(&line, rc, b, &rec, !produce || base >= 0, off);
			if (line.err)
				break;
			if (b->transactional && b->producer_id >= 0) {
				int outcome = -1;
				if (produce && base >= 0)
					range_note(an, b->producer_id, rc->topic, rc->partition,
					           off);
				if (!produce)
					outcome = in_aborted(as, b->producer_id, rec.offset)
					              ? 1
					              : range_outcome(an, b->producer_id, rc->topic,
					                              rc->partition, off);
				if (outcome >= 0) {
					kd_w_raw(&an->ob, line.p, line.len);
					kd_w_cstr(&an->ob,
					          outcome ? ",\"aborted\":true}\n" : "}\n");
				} else {
					hold(an, b->producer_id, line.p, line.len);
				}
			} else {
				kd_w_raw(&an->ob, line.p, line.len);
				kd_w_cstr(&an->ob, "}\n");
			}
		}
		if (rcode < 0)
			an_problem(an, rc->fl, "%s records of %.*s[%d]: %s", rc->source,
			           (int)rc->topic.len, rc->topic.p ? (const char *)rc->topic.p : "",
			           rc->partition, it.err);
	}
	kd_rec_iter_free(&it);
	kd_wbuf_free(&line);
}

static const struct kd_sum_tp *sum_find(const struct kd_summary *sum, struct kd_view topic,
                                        const uint8_t *id, int32_t part)
{
	for (unsigned i = 0; i < sum->ntp; i++) {
		const struct kd_sum_tp *tp = &sum->tp[i];
		if (tp->partition != part)
			continue;
		if (id && tp->has_topic_id && !memcmp(tp->topic_id, id, 16))
			return tp;
		struct kd_view v = kd_sum_view(sum, tp->topic);
		if (!topic.null && !v.null && v.len == topic.len && !memcmp(v.p, topic.p, v.len))
			return tp;
	}
	return NULL;
}

/* A topic element's name: "Name"/"Topic", or the name learnt for its "TopicId". */
static struct kd_view topic_of(const struct cap_an *an, const struct kd_node *t, const uint8_t **id)
{
	struct kd_view v = {NULL, 0, 1};
	struct kd_node *n = kd_node_child(t, "Name");
	if (!n)
		n = kd_node_child(t, "Topic");
	*id = NULL;
	if (n && !n->null)
		return n->val.v;
	n = kd_node_child(t, "TopicId");
	if (n) {
		*id = n->val.uuid;
		v = an_topic_name(an, n->val.uuid);
	}
	return v;
}

void an_rec_produce(struct cap_an *an, const struct an_flow *fl, const struct kd_summary *sum,
                    const uint8_t *body, size_t len, int64_t ts_us)
{
	struct kd_tree t;
	if (kd_tree_decode(&t, &an->arena, 0, sum->api_version, 1, body, len) != KD_OK)
		goto out; /* reported by the summary already */
	struct kd_node *topics = kd_node_child(t.root, "TopicData");
	for (uint32_t i = 0; topics && i < topics->nkids; i++) {
		const uint8_t *id;
		struct rec_ctx rc = {
		    "produce", -1, ts_us, fl, sum, topic_of(an, &topics->kids[i], &id), 0, NULL};
		rc.topic_id = id;
		if (!an_topic_match(an, rc.topic, id))
			continue;
		struct kd_node *parts = kd_node_child(&topics->kids[i], "PartitionData");
		for (uint32_t j = 0; parts && j < parts->nkids; j++) {
			struct kd_node *idx = kd_node_child(&parts->kids[j], "Index");
			struct kd_node *recs = kd_node_child(&parts->kids[j], "Records");
			if (!idx || !recs)
				continue;
			rc.partition = (int32_t)idx->val.i;
			const struct kd_sum_tp *tp = sum_find(sum, rc.topic, id, rc.partition);
			int64_t base =
			    tp && !tp->error && (sum->flags & KD_SUM_RESP) ? tp->base_offset : -1;
			rc.acked = !(sum->flags & KD_SUM_RESP) ? -1 : tp && !tp->error ? 1 : 0;
			records_out(an, &rc,
			            recs->null ? (struct kd_view){NULL, 0, 1} : recs->val.v, 1,
			            base, 0, NULL);
		}
	}
out:
	kd_arena_reset(&an->arena);
}

void an_rec_fetch(struct cap_an *an, const struct an_flow *fl, const struct kd_summary *sum,
                  const uint8_t *body, size_t len, int64_t ts_us)
{
	struct kd_tree t;
	if (kd_tree_decode(&t, &an->arena, 1, sum->api_version, 0, body, len) != KD_OK)
		goto out;
	struct kd_node *topics = kd_node_child(t.root, "Responses");
	for (uint32_t i = 0; topics && i < topics->nkids; i++) {
		const uint8_t *id;
		struct rec_ctx rc = {
		    "fetch", -1, ts_us, fl, sum, topic_of(an, &topics->kids[i], &id), 0, NULL};
		rc.topic_id = id;
		int wanted = !an->opts.on_record && an_topic_match(an, rc.topic, id);
		struct kd_node *parts = kd_node_child(&topics->kids[i], "Partitions");
		for (uint32_t j = 0; parts && j < parts->nkids; j++) {
			struct kd_node *idx = kd_node_child(&parts->kids[j], "PartitionIndex");
			struct kd_node *recs = kd_node_child(&parts->kids[j], "Records");
			if (!idx || !recs || recs->null)
				continue;
			rc.partition = (int32_t)idx->val.i;
			const struct kd_sum_tp *tp = sum_find(sum, rc.topic, id, rc.partition);
			struct aborted_set as = {
			    kd_node_child(&parts->kids[j], "AbortedTransactions")};
			if (as.arr && as.arr->null)
				as.arr = NULL;
			if (!wanted) {
				/* Still watch for transaction markers. */
				struct kd_rec_iter it;
				struct kd_batch *b;
				int r;
				kd_rec_iter_init(&it, recs->val.v.p, recs->val.v.len, NULL);
				while ((r = kd_rec_next_batch(&it, &b)) > 0 &&
				       r != KD_REC_TRUNCATED)
					if (b->control && b->producer_id >= 0 &&
					    (b->control_type == KD_CTRL_ABORT ||
					     b->control_type == KD_CTRL_COMMIT))
						an_rec_txn_end(an, b->producer_id,
						               b->control_type == KD_CTRL_ABORT);
				kd_rec_iter_free(&it);
				continue;
			}
			records_out(an, &rc, recs->val.v, 0, -1,
			            tp && tp->fetch_offset >= 0 ? tp->fetch_offset : 0, &as);
		}
	}
out:
	kd_arena_reset(&an->arena);
}
