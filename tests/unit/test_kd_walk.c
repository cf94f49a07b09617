/* test_kd_walk.c: the resumable skip-only walk (kd-walk.h) on real bodies
 * built through the tree API (Metadata with brokers and topics, Fetch v16
 * with record sets and NodeEndpoints, Produce v10), split at every byte
 * boundary and fed one byte at a time: every split walks the same, stops
 * at the same offsets and captures the same topic names and ids. The stop
 * offsets are checked against the tree decoder: the part before (or
 * after) them, completed with kd_body_defaults(), decodes to the same
 * brokers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kd-api-keys-gen.h"
#include "kd-arena.h"
#include "kd-schema.h"
#include "kd-tree.h"
#include "kd-walk.h"

/* ---- bodies ---- */

/* A default body whose top-level tagged fields are all present (empty),
 * so that the tree has nodes for them. */
static void gen_struct(struct kd_wbuf *w, const struct kd_struct *st, int v, int flex, int tags);

static void gen_value(struct kd_wbuf *w, const struct kd_field *f, int v, int flex)
{
	int compact = f->has_flex ? kd_vers_has(f->flexible, v) : flex;
	switch (f->type) {
	case KD_T_STRUCT:
		if (kd_vers_has(f->nullable, v))
			kd_w_i8(w, 1);
		gen_struct(w, f->sub, v, flex, 0);
		break;
	case KD_T_STRING:
		kd_w_len(w, compact, 2, 0);
		break;
	case KD_T_BYTES:
	case KD_T_RECORDS:
	case KD_T_ARRAY:
		kd_w_len(w, compact, 4, 0);
		break;
	case KD_T_UUID: {
		static const uint8_t z[16];
		kd_w_raw(w, z, 16);
		break;
	}
	case KD_T_INT64:
	case KD_T_FLOAT64:
		kd_w_i64(w, 0);
		break;
	case KD_T_INT32:
	case KD_T_UINT32:
		kd_w_i32(w, 0);
		break;
	case KD_T_INT16:
	case KD_T_UINT16:
		kd_w_i16(w, 0);
		break;
	default:
		kd_w_i8(w, 0);
		break;
	}
}

static void gen_struct(struct kd_wbuf *w, const struct kd_struct *st, int v, int flex, int tags)
{
	for (unsigned i = 0; st && i < st->nfields; i++) {
		const struct kd_field *f = &st->fields[i];
		if (kd_vers_has(f->versions, v) && !(f->tag >= 0 && kd_vers_has(f->tagged, v)))
			gen_value(w, f, v, flex);
	}
	if (!flex)
		return;
	const struct kd_field *tf[8];
	unsigned nt = 0;
	for (unsigned i = 0; tags && st && i < st->nfields && nt < 8; i++) {
		const struct kd_field *f = &st->fields[i];
		if (kd_vers_has(f->versions, v) && f->tag >= 0 && kd_vers_has(f->tagged, v))
			tf[nt++] = f;
	}
	for (unsigned i = 1; i < nt; i++)
		for (unsigned j = i; j > 0 && tf[j - 1]->tag > tf[j]->tag; j--) {
			const struct kd_field *x = tf[j];
			tf[j] = tf[j - 1];
			tf[j - 1] = x;
		}
	kd_w_uvarint(w, nt);
	for (unsigned i = 0; i < nt; i++) {
		struct kd_wbuf pw = {0};
		gen_value(&pw, tf[i], v, 1);
		kd_w_uvarint(w, (uint32_t)tf[i]->tag);
		kd_w_uvarint(w, (uint32_t)pw.len);
		kd_w_raw(w, pw.p, pw.len);
		kd_wbuf_free(&pw);
	}
}

static struct kd_node *add(struct kd_tree *t, struct kd_node *parent, const char *arr)
{
	struct kd_node *a = kd_node_child(parent, arr);
	assert_non_null(a);
	struct kd_node *el = kd_node_array_add(t, a, UINT32_MAX);
	assert_non_null(el);
	return el;
}

static void set_str(struct kd_tree *t, struct kd_node *n, const char *s)
{
	if (n)
		assert_int_equal(kd_node_set_str(t, n, s, strlen(s)), KD_OK);
}

static void set_int(struct kd_node *n, int64_t v)
{
	if (n)
		assert_int_equal(kd_node_set_int(n, v), KD_OK);
}

static void set_uuid(struct kd_node *n, int i)
{
	uint8_t u[16];
	for (int k = 0; k < 16; k++)
		u[k] = (uint8_t)(0x10 * i + k);
	if (n)
		assert_int_equal(kd_node_set_uuid(n, u), KD_OK);
}

static void fill_broker(struct kd_tree *t, struct kd_node *b, int i)
{
	char host[64];
	snprintf(host, sizeof(host), "real-broker-%d.internal", i);
	set_int(kd_node_child(b, "NodeId"), i);
	set_str(t, kd_node_child(b, "Host"), host);
	set_int(kd_node_child(b, "Port"), 9000 + i);
	set_str(t, kd_node_child(b, "Rack"), "rack-a");
}

/* Builds a body of (key, v): Metadata (brokers, topics with partitions
 * and replica arrays), Fetch or Produce (topics, partitions, record sets
 * of a few hundred bytes, NodeEndpoints). The tree must be built in this
 * order: array elements are looked up again after each growth. */
static void build(int16_t key, int16_t v, struct kd_wbuf *out)
{
	const struct kd_msgdef *def = kd_msgdef_get(key, v, 0);
	assert_non_null(def);
	struct kd_wbuf body = {0};
	gen_struct(&body, def->body, v, kd_vers_has(def->flexible, v), 1);
	struct kd_arena arena = {0};
	struct kd_tree t;
	assert_int_equal(kd_tree_decode(&t, &arena, key, v, 0, body.p, body.len), KD_OK);
	static uint8_t recs[300];
	for (size_t i = 0; i < sizeof(recs); i++)
		recs[i] = (uint8_t)(i * 7);
	if (key == KD_API_METADATA) {
		for (int i = 0; i < 3; i++)
			fill_broker(&t, add(&t, t.root, "Brokers"), i + 1);
		for (int i = 0; i < 3; i++) {
			char name[32];
			snprintf(name, sizeof(name), "topic-%d", i);
			struct kd_node *tp = add(&t, t.root, "Topics");
			set_str(&t, kd_node_child(tp, "Name"), name);
			set_uuid(kd_node_child(tp, "TopicId"), i + 1);
			for (int p = 0; p < 2; p++) {
				tp = kd_node_elem(kd_node_child(t.root, "Topics"), (uint32_t)i);
				struct kd_node *pt = add(&t, tp, "Partitions");
				set_int(kd_node_child(pt, "PartitionIndex"), p);
				add(&t, pt, "ReplicaNodes");
				pt = kd_node_elem(kd_node_child(tp, "Partitions"), (uint32_t)p);
				add(&t, pt, "IsrNodes");
			}
		}
	} else {
		const char *resp = key == KD_API_FETCH ? "Responses" : "Responses";
		const char *parts = key == KD_API_FETCH ? "Partitions" : "PartitionResponses";
		for (int i = 0; i < 2; i++) {
			struct kd_node *tp = add(&t, t.root, resp);
			set_str(&t, kd_node_child(tp, key == KD_API_FETCH ? "Topic" : "Name"),
			        "orders");
			set_uuid(kd_node_child(tp, "TopicId"), i + 1);
			for (int p = 0; p < 2; p++) {
				tp = kd_node_elem(kd_node_child(t.root, resp), (uint32_t)i);
				struct kd_node *pt = add(&t, tp, parts);
				set_int(kd_node_child(pt, "PartitionIndex"), p);
				struct kd_node *r = kd_node_child(pt, "Records");
				if (r)
					assert_int_equal(kd_node_set_str(&t, r, recs, sizeof(recs)),
					                 KD_OK);
			}
		}
		for (int i = 0; i < 2; i++)
			fill_broker(&t, add(&t, t.root, "NodeEndpoints"), i + 1);
	}
	assert_int_equal(kd_tree_encode(&t, out), KD_OK);
	kd_arena_free(&arena);
	kd_wbuf_free(&body);
}

/* ---- walking ---- */

struct result {
	int rc;            /* the final result */
	uint64_t stop_off; /* offset of the stop point, or UINT64_MAX */
	uint64_t end_off;
	char caps[1024]; /* captured values, as text */
	size_t ncaps;
};

static void on_value(void *arg, unsigned depth, const struct kd_field *f, const uint8_t *p,
                     size_t len)
{
	struct result *r = arg;
	char item[320];
	int n;
	if (!f)
		n = snprintf(item, sizeof(item), "}%u ", depth);
	else if (!p)
		n = snprintf(item, sizeof(item), "%s@%u=(%zu bytes) ", f->name, depth, len);
	else if (f->type == KD_T_UUID)
		n = snprintf(item, sizeof(item), "%s@%u=%02x%02x ", f->name, depth, p[0], p[15]);
	else
		n = snprintf(item, sizeof(item), "%s@%u=%.*s ", f->name, depth, (int)len,
		             (const char *)p);
	if (r->ncaps + (size_t)n < sizeof(r->caps)) {
		memcpy(r->caps + r->ncaps, item, (size_t)n + 1);
		r->ncaps += (size_t)n;
	}
}

/* Walks body (len bytes, body_len as the walker's length) fed in the
 * chunks given by cuts (ascending offsets), with the stop point of
 * (key, v): before Topics for Metadata, at the tags otherwise. */
static void walk(int16_t key, int16_t v, const uint8_t *body, size_t len, uint64_t body_len,
                 const size_t *cuts, size_t ncuts, struct result *r)
{
	struct kd_walk w;
	memset(r, 0, sizeof(*r));
	r->stop_off = UINT64_MAX;
	assert_int_equal(kd_walk_init(&w, key, v, 0, body_len), KD_OK);
	if (key == KD_API_METADATA)
		assert_int_equal(kd_walk_stop_before(&w, "Topics"), KD_OK);
	else
		assert_int_equal(kd_walk_stop_at_tags(&w), KD_OK);
	kd_walk_on_value(&w, on_value, r);
	size_t pos = 0;
	for (size_t c = 0; c <= ncuts; c++) {
		size_t end = c < ncuts ? cuts[c] : len;
		while (pos < end || (c == ncuts && pos == end)) {
			size_t used = 0;
			int rc = kd_walk_feed(&w, body + pos, end - pos, &used);
			assert_true(used <= end - pos);
			pos += used;
			if (rc == KD_WALK_STOP) {
				assert_int_equal(r->stop_off, UINT64_MAX);
				r->stop_off = w.off;
				assert_int_equal(w.off, pos);
				continue;
			}
			if (rc == KD_NEED_MORE) {
				assert_int_equal(pos, end);
				break;
			}
			r->rc = rc;
			r->end_off = w.off;
			return;
		}
	}
	r->rc = KD_NEED_MORE;
}

static void check_same(const struct result *a, const struct result *b)
{
	assert_int_equal(a->rc, b->rc);
	assert_int_equal(a->stop_off, b->stop_off);
	assert_int_equal(a->end_off, b->end_off);
	assert_string_equal(a->caps, b->caps);
}

/* The stop offset is where the tree decoder agrees it is. */
static void check_stop(int16_t key, int16_t v, const struct kd_wbuf *body, uint64_t stop)
{
	struct kd_wbuf syn = {0};
	if (key == KD_API_METADATA) {
		int from = kd_body_field_index(key, v, 0, "Topics");
		assert_true(from >= 0);
		kd_w_raw(&syn, body->p, stop);
		assert_int_equal(kd_body_defaults(key, v, 0, (unsigned)from, 1000, 1, &syn), KD_OK);
	} else {
		assert_int_equal(kd_body_defaults(key, v, 0, 0, 1000, 0, &syn), KD_OK);
		kd_w_raw(&syn, body->p + stop, body->len - stop);
	}
	struct kd_arena arena = {0};
	struct kd_tree t;
	int rc = kd_tree_decode(&t, &arena, key, v, 0, syn.p, syn.len);
	if (rc != KD_OK)
		fail_msg("key %d v%d: part + defaults does not decode: %s", key, v, t.err_msg);
	struct kd_node *b =
	    kd_node_child(t.root, key == KD_API_METADATA ? "Brokers" : "NodeEndpoints");
	assert_non_null(b);
	assert_int_equal(b->nkids, key == KD_API_METADATA ? 3 : 2);
	struct kd_node *host = kd_node_child(kd_node_elem(b, 1), "Host");
	assert_int_equal(host->val.v.len, strlen("real-broker-2.internal"));
	assert_memory_equal(host->val.v.p, "real-broker-2.internal", host->val.v.len);
	kd_arena_free(&arena);
	kd_wbuf_free(&syn);
}

/* With KD_WALK_SEEDS=DIR set, each body is also written there in
 * fuzz_walk's input format (how tests/fuzz/corpus/fuzz_walk was made). */
static void write_seed(int16_t key, int16_t v, const struct kd_wbuf *body)
{
	const char *dir = getenv("KD_WALK_SEEDS");
	const struct kd_api *api = kd_api_get(key);
	char path[512];
	if (!dir)
		return;
	snprintf(path, sizeof(path), "%s/%s_v%d", dir, api->name, v);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	uint8_t hdr[4] = {(uint8_t)key, (uint8_t)(v - api->resp.valid.lo), 7, 0};
	fwrite(hdr, 1, 4, f);
	fwrite(body->p, 1, body->len, f);
	fclose(f);
}

static void check_body(int16_t key, int16_t v)
{
	struct kd_wbuf body = {0};
	build(key, v, &body);
	write_seed(key, v, &body);
	struct result whole, r;
	walk(key, v, body.p, body.len, body.len, NULL, 0, &whole);
	if (whole.rc != KD_WALK_END)
		fail_msg("key %d v%d: walk ended with %d at %llu", key, v, whole.rc,
		         (unsigned long long)whole.end_off);
	assert_int_equal(whole.end_off, body.len);
	assert_true(whole.stop_off < body.len);
	check_stop(key, v, &body, whole.stop_off);
	/* Depth counts array levels: root 1, Topics 2, a topic 3. */
	if (key == KD_API_METADATA && v >= 10)
		assert_non_null(strstr(whole.caps, "Name@3=topic-1 TopicId@3=202f }5 }5 }3"));
	else if (key == KD_API_METADATA)
		assert_non_null(strstr(whole.caps, "Name@3=topic-2 }5 }5 }3 }1"));
	else
		assert_true(strstr(whole.caps, "Name@3=orders }5 }5 }3") ||
		            strstr(whole.caps, "TopicId@3=202f }5 }5 }3"));

	/* Every split in two, and one byte at a time. */
	for (size_t i = 0; i <= body.len; i++) {
		walk(key, v, body.p, body.len, body.len, &i, 1, &r);
		check_same(&whole, &r);
	}
	size_t *cuts = malloc(body.len * sizeof(*cuts));
	for (size_t i = 0; i < body.len; i++)
		cuts[i] = i;
	walk(key, v, body.p, body.len, body.len, cuts, body.len, &r);
	check_same(&whole, &r);
	free(cuts);

	/* Every truncated body fails; none ends. */
	for (size_t cut = 0; cut < body.len; cut++) {
		walk(key, v, body.p, cut, cut, NULL, 0, &r);
		if (r.rc >= 0)
			fail_msg("key %d v%d: body cut at %zu/%zu walked to %d", key, v, cut,
			         body.len, r.rc);
	}

	/* A byte after the body: the walk ends where the fields end. */
	kd_w_i8(&body, 0x5a);
	walk(key, v, body.p, body.len, body.len, NULL, 0, &r);
	assert_int_equal(r.rc, KD_WALK_END);
	assert_int_equal(r.end_off, body.len - 1);
	kd_wbuf_free(&body);
}

static void test_metadata(void **state)
{
	(void)state;
	const struct kd_api *api = kd_api_get(KD_API_METADATA);
	for (int v = api->resp.valid.lo; v <= api->resp.valid.hi; v++)
		check_body(KD_API_METADATA, (int16_t)v);
}

static void test_fetch_produce(void **state)
{
	(void)state;
	for (int v = 16; v <= kd_api_get(KD_API_FETCH)->resp.valid.hi; v++)
		check_body(KD_API_FETCH, (int16_t)v);
	for (int v = 10; v <= kd_api_get(KD_API_PRODUCE)->resp.valid.hi; v++)
		check_body(KD_API_PRODUCE, (int16_t)v);
}

/* Hostile counts and lengths fail at once, without long loops. */
static void test_hostile(void **state)
{
	(void)state;
	struct kd_walk w;
	size_t used;
	/* Metadata v1: Brokers count 2^31-1 in a 12-byte body. */
	static const uint8_t huge[] = {0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0};
	assert_int_equal(kd_walk_init(&w, KD_API_METADATA, 1, 0, sizeof(huge)), KD_OK);
	assert_int_equal(kd_walk_feed(&w, huge, sizeof(huge), &used), KD_EMALFORMED);
	/* Metadata v12: a 6-byte varint. */
	static const uint8_t var[] = {0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
	assert_int_equal(kd_walk_init(&w, KD_API_METADATA, 12, 0, sizeof(var)), KD_OK);
	assert_int_equal(kd_walk_feed(&w, var, sizeof(var), &used), KD_EMALFORMED);
	/* Metadata v1: a negative string length. */
	static const uint8_t neg[] = {0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xfe, 0, 0};
	assert_int_equal(kd_walk_init(&w, KD_API_METADATA, 1, 0, sizeof(neg)), KD_OK);
	assert_int_equal(kd_walk_feed(&w, neg, sizeof(neg), &used), KD_EMALFORMED);
	/* A null Host (not nullable). */
	static const uint8_t nul[] = {0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0, 0};
	assert_int_equal(kd_walk_init(&w, KD_API_METADATA, 1, 0, sizeof(nul)), KD_OK);
	assert_int_equal(kd_walk_feed(&w, nul, sizeof(nul), &used), KD_EMALFORMED);
	/* Unknown versions are refused up front. */
	assert_int_equal(kd_walk_init(&w, KD_API_METADATA, 999, 0, 10), KD_EUNSUPPORTED);
	assert_int_equal(kd_walk_init(&w, KD_API_METADATA, 1, 0, 10), KD_OK);
	assert_int_equal(kd_walk_stop_at_tags(&w), KD_EUNSUPPORTED);
	assert_int_equal(kd_walk_stop_before(&w, "NoSuchField"), KD_EUNSUPPORTED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_metadata),
	    cmocka_unit_test(test_fetch_produce),
	    cmocka_unit_test(test_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
