/* test_topics.c: the topic ID -> name map (kd-topics.h): lookups, the
 * "topic-id:" text, learning from every response that pairs ids and names
 * (driven by the schema), bounds, and lock-free readers racing a writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "kd-api-keys-gen.h"
#include "kd-arena.h"
#include "kd-cur.h"
#include "kd-render.h"
#include "kd-topics.h"
#include "kd-tree.h"

#define I32(x) (uint8_t)((x) >> 24), (uint8_t)((x) >> 16), (uint8_t)((x) >> 8), (uint8_t)(x)

static void mkid(uint8_t id[16], uint32_t k)
{
	for (int i = 0; i < 16; i++)
		id[i] = (uint8_t)((k * 2654435761u) >> (i % 4 * 8)) ^ (uint8_t)(i * 37);
	id[0] = (uint8_t)k;
	id[1] = (uint8_t)(k >> 8);
	id[2] = (uint8_t)(k >> 16);
	id[3] |= 1; /* never all zero */
}

static void test_put_get(void **state)
{
	(void)state;
	struct kd_topics *m = kd_topics_new();
	assert_non_null(m);
	uint8_t a[16], b[16];
	mkid(a, 1);
	mkid(b, 2);
	assert_true(kd_topics_get(m, a).null);
	assert_true(kd_topics_get(NULL, a).null);
	assert_int_equal(kd_topics_put(m, a, (const uint8_t *)"orders", 6), 1);
	assert_int_equal(kd_topics_put(m, a, (const uint8_t *)"orders", 6), 0);
	struct kd_view v = kd_topics_get(m, a);
	assert_false(v.null);
	assert_int_equal(v.len, 6);
	assert_memory_equal(v.p, "orders", 6);
	assert_true(kd_topics_get(m, b).null);
	/* a rename replaces; the old bytes stay readable until the map goes */
	assert_int_equal(kd_topics_put(m, a, (const uint8_t *)"orders2", 7), 1);
	assert_memory_equal(v.p, "orders", 6);
	v = kd_topics_get(m, a);
	assert_int_equal(v.len, 7);
	assert_int_equal(kd_topics_count(m), 1);
	/* refused: zero id, empty or over-long name */
	static const uint8_t zero[16];
	uint8_t longname[KD_TOPICS_NAME_MAX + 1];
	memset(longname, 'x', sizeof(longname));
	assert_int_equal(kd_topics_put(m, zero, (const uint8_t *)"z", 1), -1);
	assert_int_equal(kd_topics_put(m, b, (const uint8_t *)"", 0), -1);
	assert_int_equal(kd_topics_put(m, b, longname, sizeof(longname)), -1);
	assert_int_equal(kd_topics_put(m, b, longname, KD_TOPICS_NAME_MAX), 1);
	kd_topics_free(&m);
	assert_null(m);
	kd_topics_free(&m);
}

/* The marking of an unknown id is "topic-id:" + Kafka's text of the UUID,
 * the same 22 characters the JSON renderer writes. */
static void test_id_text(void **state)
{
	(void)state;
	uint8_t id[16];
	char buf[KD_TOPIC_ID_TEXT];
	for (uint32_t k = 0; k < 50; k++) {
		mkid(id, k * 7919);
		struct kd_wbuf w = {0};
		kd_json_uuid(&w, id);
		size_t n = kd_topic_id_text(id, buf);
		assert_int_equal(n, 9 + 22);
		assert_int_equal(strlen(buf), n);
		assert_memory_equal(buf, "topic-id:", 9);
		assert_int_equal(w.len, 24); /* quoted */
		assert_memory_equal(buf + 9, w.p + 1, 22);
		kd_wbuf_free(&w);
	}
}

/* A response body of (key, version): a minimal body decoded, then the named
 * top-level array filled with (name, id) elements through the tree's edit
 * API, and encoded. */
static void build(struct kd_wbuf *out, int16_t key, int16_t v, const uint8_t *min, size_t minlen,
                  const char *array, int n, int name_null)
{
	struct kd_arena a = {0};
	struct kd_tree t;
	assert_int_equal(kd_tree_decode(&t, &a, key, v, 0, min, minlen), KD_OK);
	struct kd_node *arr = kd_node_child(t.root, array);
	assert_non_null(arr);
	for (int i = 0; i < n; i++) {
		struct kd_node *e = kd_node_array_add(&t, arr, UINT32_MAX);
		assert_non_null(e);
		char name[32];
		snprintf(name, sizeof(name), "topic-%d", i);
		uint8_t id[16];
		mkid(id, (uint32_t)i + 100);
		struct kd_node *nm = kd_node_child(e, "Name");
		assert_non_null(nm);
		if (name_null && i == 0)
			assert_int_equal(kd_node_set_null(nm), KD_OK);
		else
			assert_int_equal(kd_node_set_str(&t, nm, name, strlen(name)), KD_OK);
		assert_int_equal(kd_node_set_uuid(kd_node_child(e, "TopicId"), id), KD_OK);
	}
	assert_int_equal(kd_tree_encode(&t, out), KD_OK);
	kd_arena_free(&a);
}

/* A response frame: size, header (v1 when flexible: correlation id and an
 * empty tag section), body. */
static void frame(struct kd_wbuf *f, const struct kd_wbuf *body, int flexible)
{
	uint32_t size = (uint32_t)(body->len + 4 + (flexible ? 1 : 0));
	uint8_t hdr[] = {I32(size), I32(7), 0};
	kd_w_raw(f, hdr, flexible ? 9 : 8);
	kd_w_raw(f, body->p, body->len);
}

static void expect_learnt(struct kd_topics *m, int n, int first_null)
{
	for (int i = 0; i < n; i++) {
		uint8_t id[16];
		char name[32];
		mkid(id, (uint32_t)i + 100);
		snprintf(name, sizeof(name), "topic-%d", i);
		struct kd_view v = kd_topics_get(m, id);
		if (first_null && i == 0) {
			assert_true(v.null);
			continue;
		}
		assert_false(v.null);
		assert_int_equal(v.len, strlen(name));
		assert_memory_equal(v.p, name, v.len);
	}
}

static void test_learn(void **state)
{
	(void)state;
	static const uint8_t md_min[] = {I32(0), 0x01, 0x00, I32(1), 0x01, 0x00};
	/* v10: ClusterAuthorizedOperations (v8-10) after Topics */
	static const uint8_t md10_min[] = {I32(0), 0x01, 0x00, I32(1), 0x01, I32(0), 0x00};
	static const uint8_t ct_min[] = {I32(0), 0x01, 0x00};
	static const struct {
		int16_t key, v;
		const uint8_t *min;
		size_t minlen;
		const char *array;
		int name_null; /* DeleteTopics v6: Name is null when deleted by id */
	} cases[] = {
	    {KD_API_METADATA, 10, md10_min, sizeof(md10_min), "Topics", 0},
	    {KD_API_METADATA, 12, md_min, sizeof(md_min), "Topics", 0},
	    {KD_API_CREATE_TOPICS, 7, ct_min, sizeof(ct_min), "Topics", 0},
	    {KD_API_DELETE_TOPICS, 6, ct_min, sizeof(ct_min), "Responses", 1},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct kd_topics *m = kd_topics_new();
		struct kd_wbuf body = {0}, f = {0};
		build(&body, cases[c].key, cases[c].v, cases[c].min, cases[c].minlen,
		      cases[c].array, 5, cases[c].name_null);
		assert_true(kd_topics_wants(cases[c].key, cases[c].v));
		frame(&f, &body, 1);
		int got = kd_topics_learn_frame(m, cases[c].key, cases[c].v, f.p, f.len, NULL);
		assert_int_equal(got, cases[c].name_null ? 4 : 5);
		expect_learnt(m, 5, cases[c].name_null);
		/* again: nothing changes */
		assert_int_equal(
		    kd_topics_learn_frame(m, cases[c].key, cases[c].v, f.p, f.len, NULL), 0);
		kd_wbuf_free(&body);
		kd_wbuf_free(&f);
		kd_topics_free(&m);
	}

	/* librdkafka 2.12's mock: Metadata v12 with one byte after the body */
	struct kd_topics *m = kd_topics_new();
	struct kd_wbuf body = {0}, f = {0};
	build(&body, KD_API_METADATA, 12, md_min, sizeof(md_min), "Topics", 3, 0);
	kd_w_raw(&body, "\0", 1);
	frame(&f, &body, 1);
	struct kd_arena a = {0};
	assert_int_equal(kd_topics_learn_frame(m, KD_API_METADATA, 12, f.p, f.len, &a), 3);
	expect_learnt(m, 3, 0);
	/* a cut frame teaches nothing and says so */
	assert_true(kd_topics_learn_frame(m, KD_API_METADATA, 12, f.p, f.len - 6, &a) < 0);
	assert_true(kd_topics_learn_frame(m, KD_API_METADATA, 12, f.p, 6, &a) < 0);
	kd_arena_free(&a);
	kd_wbuf_free(&body);
	kd_wbuf_free(&f);
	kd_topics_free(&m);

	/* the schema decides: ids alone (Fetch) or no ids (Metadata v9) pair
	 * nothing; DescribeTopicPartitions does */
	assert_false(kd_topics_wants(KD_API_METADATA, 9));
	assert_false(kd_topics_wants(KD_API_FETCH, 16));
	assert_false(kd_topics_wants(KD_API_PRODUCE, 10));
	assert_true(kd_topics_wants(KD_API_DESCRIBE_TOPIC_PARTITIONS, 0));
	assert_false(kd_topics_wants(999, 0));
	assert_false(kd_topics_wants(KD_API_METADATA, -1));
	/* requests are not learnt from */
	struct kd_tree t;
	struct kd_arena ra = {0};
	static const uint8_t dt_req[] = {0x02,   0x02,   'x',  I32(1),    I32(2),
	                                 I32(3), I32(4), 0x00, I32(1000), 0x00};
	assert_int_equal(
	    kd_tree_decode(&t, &ra, KD_API_DELETE_TOPICS, 6, 1, dt_req, sizeof(dt_req)), KD_OK);
	m = kd_topics_new();
	assert_int_equal(kd_topics_learn_tree(m, &t), 0);
	assert_int_equal(kd_topics_count(m), 0);
	kd_topics_free(&m);
	kd_arena_free(&ra);
}

static void test_bounded(void **state)
{
	(void)state;
	struct kd_topics *m = kd_topics_new();
	uint8_t id[16];
	for (uint32_t k = 0; k < KD_TOPICS_MAX; k++) {
		mkid(id, k + 1);
		assert_int_equal(kd_topics_put(m, id, (const uint8_t *)"t", 1), 1);
	}
	assert_int_equal(kd_topics_count(m), KD_TOPICS_MAX);
	mkid(id, KD_TOPICS_MAX + 1);
	assert_int_equal(kd_topics_put(m, id, (const uint8_t *)"t", 1), -1);
	assert_int_equal(kd_topics_refused(m), 1);
	mkid(id, 1);
	assert_false(kd_topics_get(m, id).null);
	/* renames are bounded too */
	char name[16];
	int rc = 1;
	for (uint32_t k = 0; k <= KD_TOPICS_MAX && rc == 1; k++) {
		snprintf(name, sizeof(name), "r%u", k);
		rc = kd_topics_put(m, id, (const uint8_t *)name, strlen(name));
	}
	assert_int_equal(rc, -1);
	kd_topics_free(&m);
}

/* Readers look ids up with no lock while a writer inserts (growing the
 * table many times) and renames. A reader must never see a torn or foreign
 * entry, and an id the writer has announced must be found. Run under
 * ASan, a reader touching a freed entry or table fails the test. */
#define RACE_IDS 20000u
#define RACE_READERS 3

struct race {
	struct kd_topics *m;
	_Atomic uint32_t published; /* ids 0..published-1 are in the map */
	_Atomic int done;
	_Atomic uint64_t bad, found, iters;
};

static int name_ok(struct kd_view v, uint32_t k)
{
	char a[32], b[32];
	int na = snprintf(a, sizeof(a), "t%u", k), nb = snprintf(b, sizeof(b), "t%u-renamed", k);
	return (v.len == (uint32_t)na && !memcmp(v.p, a, v.len)) ||
	       (v.len == (uint32_t)nb && !memcmp(v.p, b, v.len));
}

static void *reader(void *arg)
{
	struct race *r = arg;
	uint32_t seed = 12345;
	while (!atomic_load(&r->done)) {
		uint32_t pub = atomic_load_explicit(&r->published, memory_order_acquire);
		seed = seed * 1103515245u + 12345u;
		uint32_t k = pub ? (seed >> 8) % (pub + 100) : seed % 100;
		uint8_t id[16];
		mkid(id, k + 1);
		struct kd_view v = kd_topics_get(r->m, id);
		atomic_fetch_add(&r->iters, 1);
		if (k < pub && v.null)
			atomic_fetch_add(&r->bad, 1);
		if (!v.null) {
			atomic_fetch_add(&r->found, 1);
			if (!name_ok(v, k))
				atomic_fetch_add(&r->bad, 1);
		}
	}
	return NULL;
}

static void test_race(void **state)
{
	(void)state;
	struct race r = {.m = kd_topics_new()};
	pthread_t th[RACE_READERS];
	for (int i = 0; i < RACE_READERS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, reader, &r), 0);
	char name[32];
	uint8_t id[16];
	for (uint32_t k = 0; k < RACE_IDS; k++) {
		mkid(id, k + 1);
		snprintf(name, sizeof(name), "t%u", k);
		assert_int_equal(kd_topics_put(r.m, id, (const uint8_t *)name, strlen(name)), 1);
		atomic_store_explicit(&r.published, k + 1, memory_order_release);
		if (k % 256 == 0) {
			/* let the readers in, whatever the scheduler does */
			uint64_t seen = atomic_load(&r.iters);
			while (atomic_load(&r.iters) < seen + 64)
				sched_yield();
		}
		if (k % 7 == 0) {
			snprintf(name, sizeof(name), "t%u-renamed", k / 2);
			mkid(id, k / 2 + 1);
			kd_topics_put(r.m, id, (const uint8_t *)name, strlen(name));
		}
	}
	atomic_store(&r.done, 1);
	for (int i = 0; i < RACE_READERS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(atomic_load(&r.bad), 0);
	assert_true(atomic_load(&r.found) > 0);
	assert_int_equal(kd_topics_count(r.m), RACE_IDS);
	kd_topics_free(&r.m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_put_get), cmocka_unit_test(test_id_text),
	    cmocka_unit_test(test_learn),   cmocka_unit_test(test_bounded),
	    cmocka_unit_test(test_race),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
