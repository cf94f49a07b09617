/* test_rules_walk.c: topic facts read in place by the streaming walker
 * (rule_facts_walk, rule_judge_walk), which the proxy uses so that a
 * request whose topics are all the rules read is neither gathered into
 * one piece nor decoded. For every API and request version in the spec, a
 * request with two elements in every array, fed in pieces of every size
 * from 1 byte, names the same topics in the same order as the decoded tree
 * gives them (rule_facts_read), topic ids resolved through a map or shown
 * as "topic-id:..." alike; the verdicts agree; a name too long to capture
 * and a body that does not walk send the caller to the decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helper_fill.h"
#include "kd-api-keys-gen.h"
#include "kd-arena.h"
#include "kd-hdr.h"
#include "kd.h"
#include "kd-schema.h"
#include "kd-topics.h"
#include "kd-tree.h"
#include "rule.h"

/* The body in pieces of step bytes. */
static unsigned cut(const uint8_t *p, size_t len, size_t step, struct kd_view *segs, unsigned cap)
{
	unsigned n = 0;
	for (size_t off = 0; off < len && n < cap; off += step)
		segs[n++] =
		    (struct kd_view){p + off, (uint32_t)(len - off < step ? len - off : step), 0};
	return n;
}

static void same_topics(const struct rule_facts *a, const struct rule_facts *b, const char *what)
{
	if (a->req.ntopics != b->req.ntopics) {
		print_error("%s: %u topics decoded, %u walked\n", what, a->req.ntopics,
		            b->req.ntopics);
		fail();
	}
	for (unsigned i = 0; i < a->req.ntopics; i++) {
		const struct kd_view *x = &a->topics[i].name, *y = &b->topics[i].name;
		if (x->len != y->len || memcmp(x->p, y->p, x->len)) {
			print_error("%s: topic %u is %.*s decoded, %.*s walked\n", what, i,
			            (int)x->len, (const char *)x->p, (int)y->len,
			            (const char *)y->p);
			fail();
		}
	}
}

static void test_every_api_and_version(void **state)
{
	(void)state;
	struct kd_arena a = {0}, b = {0};
	struct rule_facts fd = {0}, fw = {0};
	struct kd_view segs[8192];
	struct kd_topics *map = kd_topics_new();
	/* One id the map knows (fill_request's uuids end 0x10 + j + 2 x depth). */
	uint8_t id[16] = {0};
	id[15] = 0x12;
	assert_int_equal(kd_topics_put(map, id, (const uint8_t *)"known", 5), 1);
	unsigned versions = 0, with_topics = 0;
	for (unsigned i = 0; i < kd_napis; i++) {
		const struct kd_api *api = &kd_apis[i];
		for (int16_t v = api->req.valid.lo; v >= 0 && v <= api->req.valid.hi; v++) {
			struct kd_tree t0, t;
			struct kd_wbuf w = {0};
			if (!kd_msgdef_get(api->key, v, 1))
				continue;
			kd_arena_reset(&a);
			assert_int_equal(kd_tree_init_default(&t0, &a, api->key, v, 1), KD_OK);
			fill_request(&t0, t0.root, 0);
			assert_int_equal(kd_tree_encode(&t0, &w), KD_OK);
			assert_int_equal(kd_tree_decode(&t, &a, api->key, v, 1, w.p, w.len), KD_OK);
			assert_int_equal(rule_facts_read(&fd, &t, map, 0, &a), KD_OK);
			char what[96];
			snprintf(what, sizeof(what), "%s v%d", api->name, v);
			versions++;
			with_topics += fd.req.ntopics > 0;
			size_t steps[] = {1, 2, 3, 7, 64, w.len ? w.len : 1};
			for (unsigned s = 0; s < sizeof(steps) / sizeof(*steps); s++) {
				unsigned n = cut(w.p, w.len, steps[s], segs, 8192);
				kd_arena_reset(&b);
				int rc = rule_facts_walk(&fw, api->key, v, segs, n, map, &b);
				if (rc != KD_OK) {
					print_error("%s in pieces of %zu: %s\n", what, steps[s],
					            kd_strerror(rc));
					fail();
				}
				assert_int_equal(fw.req.have_body, 1);
				same_topics(&fd, &fw, what);
			}
			kd_wbuf_free(&w);
		}
	}
	print_message("%u request versions walked, %u with topics\n", versions, with_topics);
	assert_true(versions > 300);
	assert_true(with_topics > 100);
	rule_facts_free(&fd);
	rule_facts_free(&fw);
	kd_topics_free(&map);
	kd_arena_free(&a);
	kd_arena_free(&b);
}

/* A Produce v9 naming the given topics, encoded. */
static void produce(struct kd_arena *a, const char **topics, unsigned n, struct kd_wbuf *w)
{
	struct kd_tree t;
	assert_int_equal(kd_tree_init_default(&t, a, KD_API_PRODUCE, 9, 1), KD_OK);
	struct kd_node *td = kd_node_child(t.root, "TopicData");
	for (unsigned i = 0; i < n; i++) {
		kd_node_array_add(&t, td, UINT32_MAX);
		struct kd_node *te = kd_node_elem(td, i);
		kd_node_set_str(&t, kd_node_child(te, "Name"), topics[i], strlen(topics[i]));
		kd_node_array_add(&t, kd_node_child(te, "PartitionData"), UINT32_MAX);
	}
	assert_int_equal(kd_tree_encode(&t, w), KD_OK);
}

static void test_judge_walk_agrees(void **state)
{
	(void)state;
	static const char yaml[] = "access:\n"
	                           "  - match: {topic: 'open.secret'}\n"
	                           "    allow: true\n"
	                           "  - name: secrets\n"
	                           "    match: {topic: ['secret.*', '*.secret']}\n"
	                           "    deny: true\n"
	                           "quotas:\n"
	                           "  - match: {topic: 'orders'}\n"
	                           "    per: topic\n"
	                           "    requests_per_sec: 5\n";
	char err[256];
	struct rule_set *rs = rule_set_load_mem(yaml, strlen(yaml), "w.yaml", err, sizeof(err));
	assert_non_null(rs);
	assert_int_equal(rule_set_names_only(rs, KD_API_PRODUCE), 1);
	assert_int_equal(rule_set_names_only(rs, KD_API_FETCH), 1);
	struct kd_req_hdr h;
	kd_req_hdr_init(&h, KD_API_PRODUCE, 9, 7, "app");
	struct rule_who who = {.src_family = 4, .src_addr = {127, 0, 0, 1}, .broker_id = 1};
	const char *cases[][3] = {{"orders", "payments", NULL},
	                          {"secret.a", NULL, NULL},
	                          {"orders", "open.secret", "x.secret"},
	                          {"open.secret", NULL, NULL}};
	struct kd_arena a = {0};
	struct rule_judge jd = {0}, jw = {0};
	for (unsigned c = 0; c < 4; c++) {
		unsigned n = 0;
		while (n < 3 && cases[c][n])
			n++;
		struct kd_wbuf w = {0};
		kd_arena_reset(&a);
		produce(&a, cases[c], n, &w);
		struct kd_view segs[64];
		unsigned ns = cut(w.p, w.len, 5, segs, 64);
		struct rule_verdict vd, vw;
		assert_int_equal(rule_judge(&jd, rs, &h, w.p, w.len, NULL, &who, &vd), KD_OK);
		assert_int_equal(rule_judge_walk(&jw, rs, &h, segs, ns, NULL, &who, &vw), KD_OK);
		assert_int_equal(vd.error, vw.error);
		assert_int_equal(vd.split, vw.split);
		assert_int_equal(vd.nrefused, vw.nrefused);
		assert_int_equal(vd.nquotas, vw.nquotas);
		for (unsigned t = 0; t < n; t++)
			assert_int_equal(jd.tv[t].error, jw.tv[t].error);
		kd_wbuf_free(&w);
	}
	/* A policy reads more than names: the walk declines. */
	static const char pol[] =
	    "policies:\n  - match: {topic: orders}\n    require: {acks: all}\n";
	struct rule_set *rp = rule_set_load_mem(pol, strlen(pol), "p.yaml", err, sizeof(err));
	assert_non_null(rp);
	assert_int_equal(rule_set_names_only(rp, KD_API_PRODUCE), 0);
	struct kd_view one = {(const uint8_t *)"x", 1, 0};
	struct rule_verdict v;
	assert_int_equal(rule_judge_walk(&jw, rp, &h, &one, 1, NULL, &who, &v), KD_EUNSUPPORTED);
	rule_set_unref(&rp);

	/* A name too long to capture, or a body that does not walk: the
	 * caller decodes it instead. */
	char longname[400];
	memset(longname, 's', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	const char *lt[] = {longname};
	struct kd_wbuf w = {0};
	produce(&a, lt, 1, &w);
	struct kd_view seg = {w.p, (uint32_t)w.len, 0};
	assert_true(rule_judge_walk(&jw, rs, &h, &seg, 1, NULL, &who, &v) < 0);
	seg.len = (uint32_t)w.len - 3;
	assert_true(rule_judge_walk(&jw, rs, &h, &seg, 1, NULL, &who, &v) < 0);
	kd_wbuf_free(&w);

	/* Hits: a quiet judgement counts none. */
	uint64_t before = atomic_load(&rs->rules[1].hits);
	const char *st[] = {"secret.b"};
	kd_wbuf_free(&w);
	w = (struct kd_wbuf){0};
	produce(&a, st, 1, &w);
	jd.quiet = 1;
	assert_int_equal(rule_judge(&jd, rs, &h, w.p, w.len, NULL, &who, &v), KD_OK);
	assert_int_equal(v.error, 29);
	assert_int_equal(atomic_load(&rs->rules[1].hits), before);
	assert_int_equal(rule_judge(&jd, rs, &h, w.p, w.len, NULL, &who, &v), KD_OK);
	assert_int_equal(atomic_load(&rs->rules[1].hits), before + 1);
	kd_wbuf_free(&w);

	rule_judge_free(&jd);
	rule_judge_free(&jw);
	kd_arena_free(&a);
	rule_set_unref(&rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_api_and_version),
	    cmocka_unit_test(test_judge_walk_agrees),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
