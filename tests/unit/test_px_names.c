/* test_px_names.c: a tenant's names in whole frames (px-names.h): a
 * CreateTopics creates the mapped name, a ListGroups answer keeps only the
 * tenant's groups, ApiVersions leaves out the APIs a mapped client may not
 * use and those are refused, a name outside the namespace refuses its
 * request (or drops a Produce with acks=0), and the splice of a Produce
 * request and of a Fetch response gives the bytes the whole-frame path
 * gives. The mock clusters answer neither CreateTopics nor ListGroups, so
 * these are tested here, on frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kd-api-keys-gen.h"
#include "kd-arena.h"
#include "kd-hdr.h"
#include "kd-schema.h"
#include "kd-tree.h"
#include "px-names.h"
#include "rule-names.h"
#include "rule.h"

static const char rules[] = "rewrite:\n"
                            "  - name: acme\n"
                            "    match: {client_id: \"acme-*\"}\n"
                            "    prefix: acme.\n"
                            "    topics: {alias: {legacy: shared.legacy}}\n";
/* the same, a kind at a time */
static const char rules_ok[] = "rewrite:\n"
                               "  - name: acme\n"
                               "    match: {client_id: \"acme-*\"}\n"
                               "    topics: {prefix: acme., alias: {legacy: acme.other}}\n"
                               "    groups: {prefix: acme.}\n"
                               "    transactional_ids: {prefix: acme.}\n";

static struct px_names pn;

static const struct rule *load_rule(struct rule_set **rs)
{
	char err[512];
	/* the shorthand and a kind's own aliases go together */
	*rs = rule_set_load_mem(rules, strlen(rules), "r.yaml", err, sizeof(err));
	assert_non_null(*rs);
	rule_set_unref(rs);
	*rs = rule_set_load_mem(rules_ok, strlen(rules_ok), "r.yaml", err, sizeof(err));
	assert_non_null(*rs);
	return &(*rs)->rules[0];
}

/* A request frame of (key, ver) whose body is t's. */
static void req_frame(struct kd_tree *t, struct kd_wbuf *w, struct kd_req_hdr *h)
{
	kd_req_hdr_init(h, t->api_key, t->version, 7, "acme-1");
	w->len = 0;
	kd_w_i32(w, 0);
	kd_req_hdr_write(w, h);
	h->len = (uint32_t)w->len - 4;
	assert_int_equal(kd_tree_encode(t, w), KD_OK);
	kd_w_patch_be(w, 0, 4, w->len - 4);
}

static void resp_frame(struct kd_tree *t, struct kd_wbuf *w)
{
	struct kd_resp_hdr h = {.correlation_id = 7};
	const struct kd_api *api = kd_api_get(t->api_key);
	h.hdr_version =
	    (kd_vers_has(api->resp.flexible, t->version) && t->api_key != KD_API_API_VERSIONS) ? 1
	                                                                                       : 0;
	w->len = 0;
	kd_w_i32(w, 0);
	kd_resp_hdr_write(w, &h);
	assert_int_equal(kd_tree_encode(t, w), KD_OK);
	kd_w_patch_be(w, 0, 4, w->len - 4);
}

static void set(struct kd_tree *t, struct kd_node *n, const char *name, const char *s)
{
	struct kd_node *c = kd_node_child(n, name);
	assert_non_null(c);
	assert_int_equal(kd_node_set_str(t, c, s, strlen(s)), KD_OK);
}

static struct kd_node *add(struct kd_tree *t, struct kd_node *n, const char *arr)
{
	struct kd_node *a = kd_node_child(n, arr);
	assert_non_null(a);
	assert_non_null(kd_node_array_add(t, a, UINT32_MAX));
	return &a->kids[a->nkids - 1];
}

static void test_create_topics(void **state)
{
	(void)state;
	struct rule_set *rs;
	const struct rule *rule = load_rule(&rs);
	struct kd_arena a = {0};
	struct kd_tree t;
	struct kd_wbuf f = {0}, out = {0};
	struct kd_req_hdr h;
	assert_int_equal(kd_tree_init_default(&t, &a, KD_API_CREATE_TOPICS, 4, 1), KD_OK);
	set(&t, add(&t, t.root, "Topics"), "Name", "events");
	set(&t, add(&t, t.root, "Topics"), "Name", "legacy");
	req_frame(&t, &f, &h);
	int kt, bad;
	assert_int_equal(px_names_request(&pn, rule, f.p, f.len, &h, 0, &kt, &bad, &out),
	                 PX_N_MAPPED);
	struct kd_tree m;
	assert_int_equal(kd_tree_decode(&m, &a, KD_API_CREATE_TOPICS, 4, 1, out.p + 4 + h.len,
	                                out.len - 4 - h.len),
	                 KD_OK);
	struct kd_node *tp = kd_node_child(m.root, "Topics");
	struct kd_node *n0 = kd_node_child(&tp->kids[0], "Name");
	struct kd_node *n1 = kd_node_child(&tp->kids[1], "Name");
	assert_int_equal(n0->val.v.len, 11);
	assert_memory_equal(n0->val.v.p, "acme.events", 11);
	assert_memory_equal(n1->val.v.p, "acme.other", 10);
	/* the header is kept byte for byte */
	assert_memory_equal(out.p + 4, f.p + 4, h.len);
	kd_wbuf_free(&f);
	kd_wbuf_free(&out);
	kd_arena_free(&a);
	rule_set_unref(&rs);
}

static void test_list_groups(void **state)
{
	(void)state;
	struct rule_set *rs;
	const struct rule *rule = load_rule(&rs);
	struct kd_arena a = {0};
	struct kd_tree t;
	struct kd_wbuf f = {0}, out = {0};
	assert_int_equal(kd_tree_init_default(&t, &a, KD_API_LIST_GROUPS, 4, 0), KD_OK);
	const char *groups[] = {"acme.g1", "globex.g2", "plain", "acme.g3", "acme."};
	for (unsigned i = 0; i < 5; i++)
		set(&t, add(&t, t.root, "Groups"), "GroupId", groups[i]);
	resp_frame(&t, &f);
	assert_int_equal(px_names_response(&pn, rule, KD_API_LIST_GROUPS, 4, -1, f.p, f.len, &out),
	                 1);
	struct kd_tree m;
	assert_int_equal(
	    kd_tree_decode(&m, &a, KD_API_LIST_GROUPS, 4, 0, out.p + 8 + 1, out.len - 9), KD_OK);
	struct kd_node *g = kd_node_child(m.root, "Groups");
	assert_int_equal(g->nkids, 2);
	assert_memory_equal(kd_node_child(&g->kids[0], "GroupId")->val.v.p, "g1", 2);
	assert_memory_equal(kd_node_child(&g->kids[1], "GroupId")->val.v.p, "g3", 2);
	kd_wbuf_free(&f);
	kd_wbuf_free(&out);
	kd_arena_free(&a);
	rule_set_unref(&rs);
}

static void test_api_versions_and_refusals(void **state)
{
	(void)state;
	struct rule_set *rs;
	const struct rule *rule = load_rule(&rs);
	struct kd_arena a = {0};
	struct kd_tree t;
	struct kd_wbuf f = {0}, out = {0};
	assert_int_equal(kd_tree_init_default(&t, &a, KD_API_API_VERSIONS, 3, 0), KD_OK);
	int16_t keys[][3] = {{KD_API_PRODUCE, 0, 9},
	                     {KD_API_DESCRIBE_ACLS, 0, 3},
	                     {KD_API_CONSUMER_GROUP_HEARTBEAT, 0, 1},
	                     {KD_API_SHARE_FETCH, 0, 1}};
	for (unsigned i = 0; i < 4; i++) {
		struct kd_node *e = add(&t, t.root, "ApiKeys");
		kd_node_set_int(kd_node_child(e, "ApiKey"), keys[i][0]);
		kd_node_set_int(kd_node_child(e, "MinVersion"), keys[i][1]);
		kd_node_set_int(kd_node_child(e, "MaxVersion"), keys[i][2]);
	}
	resp_frame(&t, &f);
	assert_int_equal(px_names_response(&pn, rule, KD_API_API_VERSIONS, 3, -1, f.p, f.len, &out),
	                 1);
	struct kd_tree m;
	assert_int_equal(kd_tree_decode(&m, &a, KD_API_API_VERSIONS, 3, 0, out.p + 8, out.len - 8),
	                 KD_OK);
	struct kd_node *k = kd_node_child(m.root, "ApiKeys");
	assert_int_equal(k->nkids, 2); /* Produce, ConsumerGroupHeartbeat up to v0 */
	assert_int_equal(kd_node_int(kd_node_child(&k->kids[0], "ApiKey")), KD_API_PRODUCE);
	assert_int_equal(kd_node_int(kd_node_child(&k->kids[1], "MaxVersion")), 0);

	/* A refused API is answered by kwire: UNSUPPORTED_VERSION. */
	struct kd_req_hdr h;
	int kt, bad;
	assert_int_equal(kd_tree_init_default(&t, &a, KD_API_DESCRIBE_ACLS, 2, 1), KD_OK);
	req_frame(&t, &f, &h);
	out.len = 0;
	assert_int_equal(px_names_request(&pn, rule, f.p, f.len, &h, 0, &kt, &bad, &out),
	                 PX_N_REFUSE);
	assert_int_equal(pn.error, 35);
	/* A name that would not map back: the Metadata is refused with the
	 * topic's authorization error; a Produce with acks=0 is dropped. */
	assert_int_equal(kd_tree_init_default(&t, &a, KD_API_METADATA, 9, 1), KD_OK);
	set(&t, add(&t, t.root, "Topics"), "Name", "other"); /* acme.other is legacy's */
	req_frame(&t, &f, &h);
	out.len = 0;
	assert_int_equal(px_names_request(&pn, rule, f.p, f.len, &h, 0, &kt, &bad, &out),
	                 PX_N_REFUSE);
	assert_int_equal(pn.error, 29);
	assert_int_equal(kd_tree_init_default(&t, &a, KD_API_PRODUCE, 7, 1), KD_OK);
	set(&t, add(&t, t.root, "TopicData"), "Name", "other");
	req_frame(&t, &f, &h);
	assert_int_equal(px_names_request(&pn, rule, f.p, f.len, &h, 1, &kt, &bad, &out),
	                 PX_N_DROP);
	/* A body that does not decode, or a version the tables do not know,
	 * cannot have its names found: it never reaches the broker. */
	assert_true(px_names_wants_request(KD_API_PRODUCE, 999));
	assert_true(px_names_wants_request(9999, 0));
	f.len -= 3;
	kd_w_patch_be(&f, 0, 4, f.len - 4);
	assert_int_equal(px_names_request(&pn, rule, f.p, f.len, &h, 0, &kt, &bad, &out),
	                 PX_N_CLOSE);
	assert_true(bad);
	/* FindCoordinator: the key by its KeyType, which the answer needs. */
	assert_int_equal(kd_tree_init_default(&t, &a, KD_API_FIND_COORDINATOR, 4, 1), KD_OK);
	kd_node_set_int(kd_node_child(t.root, "KeyType"), KD_COORD_TXN);
	struct kd_node *ck = kd_node_child(t.root, "CoordinatorKeys");
	assert_non_null(kd_node_array_add(&t, ck, UINT32_MAX));
	kd_node_set_str(&t, &ck->kids[0], "tx-1", 4);
	req_frame(&t, &f, &h);
	out.len = 0;
	assert_int_equal(px_names_request(&pn, rule, f.p, f.len, &h, 0, &kt, &bad, &out),
	                 PX_N_MAPPED);
	assert_int_equal(kt, KD_COORD_TXN);
	assert_non_null(memmem(out.p, out.len, "acme.tx-1", 9));
	kd_wbuf_free(&f);
	kd_wbuf_free(&out);
	kd_arena_free(&a);
	rule_set_unref(&rs);
}

/* The splice of frame f (body at body_at) applied to its bytes. */
static void splice(const struct rule *rule, int16_t key, int16_t ver, int is_req,
                   const struct kd_wbuf *f, uint32_t body_at, struct kd_wbuf *out)
{
	struct px_names_sp *sp = &pn.sp;
	assert_int_equal(
	    px_names_sp_init(sp, &pn, rule, key, ver, is_req, body_at, (uint32_t)f->len - body_at),
	    KD_OK);
	/* fed a byte at a time: any split walks the same */
	for (size_t i = body_at; i < f->len; i++)
		px_names_sp_feed(sp, f->p + i, 1);
	assert_false(sp->bad);
	assert_true(sp->ended);
	out->len = 0;
	kd_w_i32(out, (int32_t)((int64_t)f->len - 4 + sp->delta));
	uint32_t pos = 4;
	for (unsigned i = 0; i < sp->ned; i++) {
		kd_w_raw(out, f->p + pos, sp->ed[i].off - pos);
		kd_w_raw(out, sp->bytes.p + sp->ed[i].at, sp->ed[i].nlen);
		pos = sp->ed[i].off + sp->ed[i].len;
	}
	kd_w_raw(out, f->p + pos, f->len - pos);
}

static void test_splice_is_whole(void **state)
{
	(void)state;
	struct rule_set *rs;
	const struct rule *rule = load_rule(&rs);
	struct kd_arena a = {0};
	struct kd_tree t;
	struct kd_wbuf f = {0}, whole = {0}, sp = {0};
	static const uint8_t records[100] = {1, 2, 3};
	for (int16_t ver = 3; ver <= 9; ver += 6) { /* Produce v3 and v9 (flexible) */
		struct kd_req_hdr h;
		int kt, bad;
		assert_int_equal(kd_tree_init_default(&t, &a, KD_API_PRODUCE, ver, 1), KD_OK);
		set(&t, t.root, "TransactionalId", "tx");
		const char *names[] = {"orders", "legacy", ""};
		for (unsigned i = 0; i < 3; i++) {
			struct kd_node *e = add(&t, t.root, "TopicData");
			set(&t, e, "Name", names[i]);
			struct kd_node *p = add(&t, e, "PartitionData");
			kd_node_set_str(&t, kd_node_child(p, "Records"), records, sizeof(records));
		}
		req_frame(&t, &f, &h);
		whole.len = 0;
		assert_int_equal(px_names_request(&pn, rule, f.p, f.len, &h, 0, &kt, &bad, &whole),
		                 PX_N_MAPPED);
		splice(rule, KD_API_PRODUCE, ver, 1, &f, 4 + h.len, &sp);
		assert_int_equal(pn.sp.ned, 3); /* orders, legacy, tx */
		assert_int_equal(sp.len, whole.len);
		assert_memory_equal(sp.p, whole.p, whole.len);
	}
	for (int16_t ver = 4; ver <= 12; ver += 8) { /* Fetch v4 and v12 (flexible) */
		assert_int_equal(kd_tree_init_default(&t, &a, KD_API_FETCH, ver, 0), KD_OK);
		const char *names[] = {"acme.orders", "acme.other"};
		for (unsigned i = 0; i < 2; i++) {
			struct kd_node *e = add(&t, t.root, "Responses");
			set(&t, e, "Topic", names[i]);
			struct kd_node *p = add(&t, e, "Partitions");
			kd_node_set_str(&t, kd_node_child(p, "Records"), records, sizeof(records));
		}
		resp_frame(&t, &f);
		whole.len = 0;
		assert_int_equal(
		    px_names_response(&pn, rule, KD_API_FETCH, ver, -1, f.p, f.len, &whole), 1);
		splice(rule, KD_API_FETCH, ver, 0, &f, ver >= 12 ? 9 : 8, &sp);
		assert_int_equal(pn.sp.ned, 2);
		assert_int_equal(sp.len, whole.len);
		assert_memory_equal(sp.p, whole.p, whole.len);
	}
	/* outside the namespace: the splice gives up, the whole path decides */
	assert_int_equal(kd_tree_init_default(&t, &a, KD_API_FETCH, 4, 0), KD_OK);
	set(&t, add(&t, t.root, "Responses"), "Topic", "globex.x");
	resp_frame(&t, &f);
	assert_int_equal(
	    px_names_sp_init(&pn.sp, &pn, rule, KD_API_FETCH, 4, 0, 8, (uint32_t)f.len - 8), KD_OK);
	px_names_sp_feed(&pn.sp, f.p + 8, f.len - 8);
	assert_true(pn.sp.bad);
	assert_true(px_names_splices(KD_API_FETCH, 12, 0));
	assert_false(px_names_splices(KD_API_FETCH, 13, 0));
	kd_wbuf_free(&f);
	kd_wbuf_free(&whole);
	kd_wbuf_free(&sp);
	kd_arena_free(&a);
	rule_set_unref(&rs);
}

/* A Produce request of ntopics topics named names[], v ver, into f. */
static void produce_frame(struct kd_arena *a, int16_t ver, const char *const *names,
                          unsigned ntopics, struct kd_wbuf *f, struct kd_req_hdr *h)
{
	static const uint8_t records[3000] = {9, 8, 7};
	struct kd_tree t;
	assert_int_equal(kd_tree_init_default(&t, a, KD_API_PRODUCE, ver, 1), KD_OK);
	set(&t, t.root, "TransactionalId", "tx");
	for (unsigned i = 0; i < ntopics; i++) {
		struct kd_node *e = add(&t, t.root, "TopicData");
		set(&t, e, "Name", names[i]);
		struct kd_node *p = add(&t, e, "PartitionData");
		kd_node_set_str(&t, kd_node_child(p, "Records"), records, sizeof(records));
	}
	req_frame(&t, f, h);
}

/* A Produce request fed a prefix at a time: with one topic, once its name
 * is in (named_all), the edits and the size change are those of the
 * whole frame, so it can stream; with several, a later topic's name lies
 * after the first one's records (named_more), and nothing is final before
 * the last name. A name whose new length prefix is a byte wider (125 + 5
 * bytes: 126 -> 131 as a compact length) changes the size by 6. */
static void test_produce_names_before_records(void **state)
{
	(void)state;
	struct rule_set *rs;
	const struct rule *rule = load_rule(&rs);
	struct kd_arena a = {0};
	struct kd_wbuf f = {0}, whole = {0};
	struct kd_req_hdr h;
	int kt, bad;
	char longname[126];
	memset(longname, 'n', 125);
	longname[125] = '\0';
	const char *one[] = {"orders"}, *wide[] = {longname}, *two[] = {"orders", "legacy"};
	struct {
		int16_t ver;
		const char *const *names;
		unsigned n;
		int64_t delta;
	} cases[] = {{9, one, 1, 5 + 5},
	             {3, one, 1, 5 + 5},
	             {9, wide, 1, 5 + 6},
	             {9, two, 2, 5 + 5 + 4},
	             {7, two, 2, 5 + 5 + 4}};
	for (unsigned c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		produce_frame(&a, cases[c].ver, cases[c].names, cases[c].n, &f, &h);
		whole.len = 0;
		assert_int_equal(px_names_request(&pn, rule, f.p, f.len, &h, 0, &kt, &bad, &whole),
		                 PX_N_MAPPED);
		uint32_t body_at = 4 + h.len;
		struct px_names_sp *sp = &pn.sp;
		assert_int_equal(px_names_sp_init(sp, &pn, rule, KD_API_PRODUCE, cases[c].ver, 1,
		                                  body_at, (uint32_t)f.len - body_at),
		                 KD_OK);
		size_t i = body_at;
		while (i < f.len && !sp->named_all)
			px_names_sp_feed(sp, f.p + i++, 1);
		assert_false(sp->bad);
		assert_true(sp->named_all);
		assert_int_equal(sp->delta, cases[c].delta);
		assert_int_equal((int64_t)f.len + sp->delta, (int64_t)whole.len);
		assert_int_equal(sp->named_more, cases[c].n > 1);
		/* one topic: final before the records (3000 bytes) are in */
		if (cases[c].n == 1)
			assert_true(i + 2000 < f.len);
		else
			assert_true(i >
			            body_at + 3000); /* the last name is after the first records */
		/* the bytes up to the last name, mapped, are the whole path's */
		const struct px_names_edit *e = &sp->ed[sp->ned - 1];
		struct kd_wbuf head = {0};
		kd_w_i32(&head, (int32_t)((int64_t)f.len - 4 + sp->delta));
		uint32_t pos = 4;
		for (unsigned k = 0; k < sp->ned; k++) {
			kd_w_raw(&head, f.p + pos, sp->ed[k].off - pos);
			kd_w_raw(&head, sp->bytes.p + sp->ed[k].at, sp->ed[k].nlen);
			pos = sp->ed[k].off + sp->ed[k].len;
		}
		assert_int_equal(pos, e->off + e->len);
		assert_memory_equal(head.p, whole.p, head.len);
		/* and the rest is the client's */
		assert_memory_equal(whole.p + head.len, f.p + pos, f.len - pos);
		kd_wbuf_free(&head);
	}
	kd_wbuf_free(&f);
	kd_wbuf_free(&whole);
	kd_arena_free(&a);
	rule_set_unref(&rs);
}

static int teardown(void **state)
{
	(void)state;
	px_names_free(&pn);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_topics),
	    cmocka_unit_test(test_list_groups),
	    cmocka_unit_test(test_api_versions_and_refusals),
	    cmocka_unit_test(test_splice_is_whole),
	    cmocka_unit_test(test_produce_names_before_records),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
