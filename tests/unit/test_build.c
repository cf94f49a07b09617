/* test_build.c: error responses built from the schema tables
 * (kd-build.h). For every API and request version in the spec, a request
 * with two elements in every keyed array is answered: the answer decodes
 * with the tree decoder, carries the correlation id and the error in every
 * ErrorCode, and echoes the request's topics, partitions, groups and keys.
 * Then a few answers are checked field by field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kd-api-keys-gen.h"
#include "kd-arena.h"
#include "kd-build.h"
#include "kd-hdr.h"
#include "kd-schema.h"
#include "kd-tree.h"
#include "helper_fill.h"

#define ERR 29 /* TOPIC_AUTHORIZATION_FAILED */

struct names {
	char v[64][24];
	unsigned n;
	int ent;
};

static int collect(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	(void)wc;
	struct names *ns = arg;
	if (n->type != KD_T_STRING || n->null || ns->n == 64)
		return 0;
	snprintf(ns->v[ns->n++], sizeof(ns->v[0]), "%.*s", (int)n->val.v.len,
	         (const char *)n->val.v.p);
	return 0;
}

static int has_name(const struct names *ns, const char *s)
{
	for (unsigned i = 0; i < ns->n; i++)
		if (!strcmp(ns->v[i], s))
			return 1;
	return 0;
}

struct errs {
	unsigned n, bad;
};

static int check_err(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	(void)wc;
	struct errs *e = arg;
	if (n->type == KD_T_INT16 && n->field && strstr(n->field->name, "ErrorCode") &&
	    !(n->flags & KD_NF_TAGGED)) {
		e->n++;
		if (n->val.i != ERR)
			e->bad++;
	}
	return 0;
}

/* Whether the response has a struct array keyed by topic at its top level
 * (or in plain structs there), i.e. whether topics can be echoed. */
static int resp_has_topic_array(const struct kd_struct *s, int16_t v, unsigned depth)
{
	for (unsigned i = 0; s && i < s->nfields && depth < 8; i++) {
		const struct kd_field *f = &s->fields[i];
		if (!kd_vers_has(f->versions, v) || kd_vers_has(f->tagged, v))
			continue;
		if (f->type == KD_T_ARRAY && f->elem == KD_T_STRUCT) {
			for (unsigned j = 0; j < f->sub->nfields; j++) {
				const struct kd_field *g = &f->sub->fields[j];
				if (kd_vers_has(g->versions, v) && g->entity == KD_ENT_TOPIC_NAME &&
				    g->type == KD_T_STRING)
					return 1;
			}
		}
		/* Arrays under an unkeyed array (DescribeLogDirs' Results by
		 * log dir) have nothing to mirror: only plain structs. */
		if (f->type == KD_T_STRUCT && resp_has_topic_array(f->sub, v, depth + 1))
			return 1;
	}
	return 0;
}

/* Builds the answer to a filled request of (key, ver); decodes it into
 * resp. */
static void answer(struct kd_arena *a, int16_t key, int16_t ver, struct kd_tree *req,
                   struct kd_tree *resp, struct kd_wbuf *rw, struct kd_wbuf *w)
{
	struct kd_tree t0;
	assert_int_equal(kd_tree_init_default(&t0, a, key, ver, 1), KD_OK);
	fill_request(&t0, t0.root, 0);
	assert_int_equal(kd_tree_encode(&t0, rw), KD_OK);
	/* The request is valid: it decodes again. */
	if (kd_tree_decode(req, a, key, ver, 1, rw->p, rw->len) != KD_OK) {
		print_error("%s v%d request: %s\n", kd_api_name(key), ver, req->err_msg);
		fail();
	}
	int rc = kd_build_error_response(req, 0x1234567, ERR, "denied by rule x", a, w);
	if (rc != KD_OK) {
		print_error("%s v%d: build %d\n", kd_api_name(key), ver, rc);
		fail();
	}
	struct kd_cur cur;
	int32_t size;
	kd_cur_init(&cur, w->p, w->len);
	assert_int_equal(kd_cur_i32(&cur, &size), KD_OK);
	assert_int_equal((size_t)size, w->len - 4);
	struct kd_resp_hdr hdr;
	rc = kd_resp_hdr_parse(w->p + 4, w->len - 4, key, ver, &hdr);
	assert_true(rc > 0 || rc == KD_OK);
	assert_int_equal(hdr.correlation_id, 0x1234567);
	rc = kd_tree_decode(resp, a, key, ver, 0, w->p + 4 + hdr.len, w->len - 4 - hdr.len);
	if (rc != KD_OK) {
		print_error("%s v%d response: %s\n", kd_api_name(key), ver, resp->err_msg);
		fail();
	}
}

static void test_every_api_and_version(void **state)
{
	(void)state;

	struct kd_arena a = {0};
	unsigned built = 0, echoed = 0;
	for (unsigned i = 0; i < kd_napis; i++) {
		const struct kd_api *api = &kd_apis[i];
		for (int16_t v = api->req.valid.lo; v >= 0 && v <= api->req.valid.hi; v++) {
			if (!kd_msgdef_get(api->key, v, 0))
				continue;
			struct kd_tree req, resp;
			struct kd_wbuf rw = {0}, w = {0};
			answer(&a, api->key, v, &req, &resp, &rw, &w);
			built++;
			struct errs e = {0};
			kd_tree_walk(&resp, check_err, &e);
			if (e.bad) {
				print_error("%s v%d: %u of %u ErrorCodes not set\n", api->name, v,
				            e.bad, e.n);
				fail();
			}
			struct names rq = {0}, rs = {0};
			kd_tree_walk_entity(&req, KD_ENT_TOPIC_NAME, collect, &rq);
			kd_tree_walk_entity(&resp, KD_ENT_TOPIC_NAME, collect, &rs);
			if (rq.n && resp_has_topic_array(api->resp.body, v, 0)) {
				echoed++;
				for (unsigned n = 0; n < rq.n; n++)
					if (!has_name(&rs, rq.v[n])) {
						print_error("%s v%d: topic %s not echoed\n",
						            api->name, v, rq.v[n]);
						fail();
					}
			}
			kd_wbuf_free(&rw);
			kd_wbuf_free(&w);
			kd_arena_reset(&a);
		}
	}
	print_message("%u responses built, %u echo topics\n", built, echoed);
	assert_true(built >= 327);
	assert_true(echoed > 100);
	kd_arena_free(&a);
}

static struct kd_node *child(struct kd_node *n, const char *name)
{
	struct kd_node *k = kd_node_child(n, name);
	if (!k) {
		print_error("no field %s\n", name);
		fail();
	}
	return k;
}

static int str_is(const struct kd_node *n, const char *s)
{
	return !n->null && n->val.v.len == strlen(s) && !memcmp(n->val.v.p, s, n->val.v.len);
}

static void test_produce_answer(void **state)
{
	(void)state;

	struct kd_arena a = {0};
	for (int16_t v = 3; v <= 12; v++) {
		if (!kd_msgdef_get(KD_API_PRODUCE, v, 0))
			continue;
		struct kd_tree req, resp;
		struct kd_wbuf rw = {0}, w = {0};
		answer(&a, KD_API_PRODUCE, v, &req, &resp, &rw, &w);
		struct kd_node *topics = child(resp.root, "Responses");
		assert_int_equal(topics->nkids, 2);
		for (uint32_t t = 0; t < 2; t++) {
			struct kd_node *te = kd_node_elem(topics, t);
			char name[16];
			snprintf(name, sizeof(name), "N0-%u", t);
			if (v < 13)
				assert_true(str_is(child(te, "Name"), name));
			struct kd_node *parts = child(te, "PartitionResponses");
			assert_int_equal(parts->nkids, 2);
			for (uint32_t p = 0; p < 2; p++) {
				struct kd_node *pe = kd_node_elem(parts, p);
				assert_int_equal(kd_node_int(child(pe, "Index")), p + 3);
				assert_int_equal(kd_node_int(child(pe, "ErrorCode")), ERR);
				/* The schema's defaults: -1 for offsets a client reads. */
				assert_int_equal(kd_node_int(child(pe, "BaseOffset")), 0);
				if (v >= 2)
					assert_int_equal(kd_node_int(child(pe, "LogAppendTimeMs")),
					                 -1);
				if (v >= 5)
					assert_int_equal(kd_node_int(child(pe, "LogStartOffset")),
					                 -1);
				if (v >= 8)
					assert_true(
					    str_is(child(pe, "ErrorMessage"), "denied by rule x"));
			}
		}
		kd_wbuf_free(&rw);
		kd_wbuf_free(&w);
		kd_arena_reset(&a);
	}
	kd_arena_free(&a);
}

static void test_group_and_coordinator_answers(void **state)
{
	(void)state;

	struct kd_arena a = {0};
	struct kd_tree req, resp;
	struct kd_wbuf rw = {0}, w = {0};
	/* DescribeGroups: Groups []string -> Groups[]{GroupId, ErrorCode}. */
	answer(&a, KD_API_DESCRIBE_GROUPS, 5, &req, &resp, &rw, &w);
	struct kd_node *g = child(resp.root, "Groups");
	assert_int_equal(g->nkids, 2);
	assert_true(str_is(child(kd_node_elem(g, 1), "GroupId"), "s0-1"));
	assert_int_equal(kd_node_int(child(kd_node_elem(g, 1), "ErrorCode")), ERR);
	/* DescribeGroups v3+: AuthorizedOperations default INT32_MIN. */
	assert_int_equal(kd_node_int(child(kd_node_elem(g, 1), "AuthorizedOperations")), INT32_MIN);
	kd_wbuf_free(&rw);
	kd_wbuf_free(&w);
	kd_arena_reset(&a);
	/* FindCoordinator v4: CoordinatorKeys -> Coordinators[].Key. */
	memset(&rw, 0, sizeof(rw));
	memset(&w, 0, sizeof(w));
	answer(&a, KD_API_FIND_COORDINATOR, 4, &req, &resp, &rw, &w);
	struct kd_node *c = child(resp.root, "Coordinators");
	assert_int_equal(c->nkids, 2);
	assert_true(str_is(child(kd_node_elem(c, 0), "Key"), "s0-0"));
	assert_int_equal(kd_node_int(child(kd_node_elem(c, 0), "ErrorCode")), ERR);
	assert_int_equal(kd_node_int(child(kd_node_elem(c, 0), "NodeId")), 0);
	kd_wbuf_free(&rw);
	kd_wbuf_free(&w);
	kd_arena_reset(&a);
	/* Fetch v13+: topics by TopicId, partitions by index. */
	memset(&rw, 0, sizeof(rw));
	memset(&w, 0, sizeof(w));
	answer(&a, KD_API_FETCH, 16, &req, &resp, &rw, &w);
	struct kd_node *r = child(resp.root, "Responses");
	assert_int_equal(r->nkids, 2);
	assert_int_equal(child(kd_node_elem(r, 1), "TopicId")->val.uuid[15], 0x11);
	struct kd_node *fp = child(kd_node_elem(r, 1), "Partitions");
	assert_int_equal(fp->nkids, 2);
	assert_int_equal(kd_node_int(child(kd_node_elem(fp, 1), "PartitionIndex")), 4);
	assert_int_equal(kd_node_int(child(kd_node_elem(fp, 1), "HighWatermark")), 0);
	assert_int_equal(kd_node_int(child(kd_node_elem(fp, 1), "PreferredReadReplica")), -1);
	kd_wbuf_free(&rw);
	kd_wbuf_free(&w);
	kd_arena_free(&a);
}

/* Config resources: every answer element carries its request element's
 * ResourceType and ResourceName (DescribeConfigs' Results, AlterConfigs'
 * and IncrementalAlterConfigs' Responses). */
static void test_config_resource_answers(void **state)
{
	(void)state;
	static const struct {
		int16_t key, ver;
		const char *arr;
	} apis[] = {{KD_API_DESCRIBE_CONFIGS, 0, "Results"},
	            {KD_API_DESCRIBE_CONFIGS, 4, "Results"},
	            {KD_API_ALTER_CONFIGS, 2, "Responses"},
	            {KD_API_INCREMENTAL_ALTER_CONFIGS, 1, "Responses"}};
	struct kd_arena a = {0};
	for (size_t i = 0; i < sizeof(apis) / sizeof(apis[0]); i++) {
		struct kd_tree t0, req, resp;
		struct kd_wbuf rw = {0}, w = {0};
		assert_int_equal(kd_tree_init_default(&t0, &a, apis[i].key, apis[i].ver, 1), KD_OK);
		struct kd_node *res = child(t0.root, "Resources");
		const char *names[2] = {"orders", "1"};
		for (uint32_t j = 0; j < 2; j++) {
			assert_non_null(kd_node_array_add(&t0, res, UINT32_MAX));
			struct kd_node *e = kd_node_elem(res, j);
			assert_int_equal(kd_node_set_int(child(e, "ResourceType"), j ? 4 : 2),
			                 KD_OK);
			assert_int_equal(kd_node_set_str(&t0, child(e, "ResourceName"), names[j],
			                                 strlen(names[j])),
			                 KD_OK);
		}
		assert_int_equal(kd_tree_encode(&t0, &rw), KD_OK);
		assert_int_equal(
		    kd_tree_decode(&req, &a, apis[i].key, apis[i].ver, 1, rw.p, rw.len), KD_OK);
		assert_int_equal(kd_build_error_body(&req, ERR, "denied", &a, &resp), KD_OK);
		struct kd_node *out = child(resp.root, apis[i].arr);
		assert_int_equal(out->nkids, 2);
		for (uint32_t j = 0; j < 2; j++) {
			struct kd_node *e = kd_node_elem(out, j);
			assert_int_equal(kd_node_int(child(e, "ResourceType")), j ? 4 : 2);
			assert_true(str_is(child(e, "ResourceName"), names[j]));
			assert_int_equal(kd_node_int(child(e, "ErrorCode")), ERR);
		}
		kd_wbuf_free(&rw);
		kd_wbuf_free(&w);
		kd_arena_reset(&a);
	}
	kd_arena_free(&a);
}

/* A Produce to a, b, c with b refused: the broker gets a and c; its answer
 * (in either order) comes back with b merged in between, with b's error
 * and message, and a's and c's own fields kept. */
static void test_split_and_merge(void **state)
{
	(void)state;
	struct kd_arena a = {0};
	for (int reversed = 0; reversed < 2; reversed++) {
		struct kd_tree t0, req, bresp, merged;
		struct kd_wbuf rw = {0}, fwd = {0}, bw = {0}, mw = {0};
		assert_int_equal(kd_tree_init_default(&t0, &a, KD_API_PRODUCE, 9, 1), KD_OK);
		struct kd_node *topics = child(t0.root, "TopicData");
		const char *names[3] = {"a", "b", "c"};
		for (uint32_t i = 0; i < 3; i++) {
			assert_non_null(kd_node_array_add(&t0, topics, UINT32_MAX));
			struct kd_node *te = kd_node_elem(topics, i);
			assert_int_equal(kd_node_set_str(&t0, child(te, "Name"), names[i], 1),
			                 KD_OK);
			struct kd_node *parts = child(te, "PartitionData");
			assert_non_null(kd_node_array_add(&t0, parts, UINT32_MAX));
			assert_int_equal(
			    kd_node_set_int(child(kd_node_elem(parts, 0), "Index"), (int)i), KD_OK);
		}
		assert_int_equal(kd_tree_encode(&t0, &rw), KD_OK);
		assert_int_equal(kd_tree_decode(&req, &a, KD_API_PRODUCE, 9, 1, rw.p, rw.len),
		                 KD_OK);
		int16_t err[3] = {0, 29, 0};
		const char *msgs[3] = {NULL, "denied by rule x", NULL};
		struct kd_split split;
		assert_int_equal(kd_build_split(&req, err, msgs, 3, &split), KD_OK);
		/* What goes to the broker: a and c. */
		assert_int_equal(kd_tree_encode(&req, &fwd), KD_OK);
		struct kd_tree f;
		assert_int_equal(kd_tree_decode(&f, &a, KD_API_PRODUCE, 9, 1, fwd.p, fwd.len),
		                 KD_OK);
		struct kd_node *ft = child(f.root, "TopicData");
		assert_int_equal(ft->nkids, 2);
		assert_true(str_is(child(kd_node_elem(ft, 0), "Name"), "a"));
		assert_true(str_is(child(kd_node_elem(ft, 1), "Name"), "c"));
		/* The broker's answer: success with offsets 42, maybe reordered. */
		assert_int_equal(kd_build_error_body(&f, 0, NULL, &a, &bresp), KD_OK);
		struct kd_node *br = child(bresp.root, "Responses");
		for (uint32_t i = 0; i < br->nkids; i++)
			assert_int_equal(
			    kd_node_set_int(
			        child(kd_node_elem(child(kd_node_elem(br, i), "PartitionResponses"),
			                           0),
			              "BaseOffset"),
			        42),
			    KD_OK);
		if (reversed) {
			struct kd_node tmp = br->kids[0];
			br->kids[0] = br->kids[1];
			br->kids[1] = tmp;
			br->flags |= KD_NF_EDITED;
		}
		assert_int_equal(kd_tree_encode(&bresp, &bw), KD_OK);
		assert_int_equal(kd_build_merge(&split, bw.p, bw.len, &a, &mw), KD_OK);
		assert_int_equal(kd_tree_decode(&merged, &a, KD_API_PRODUCE, 9, 0, mw.p, mw.len),
		                 KD_OK);
		struct kd_node *mr = child(merged.root, "Responses");
		assert_int_equal(mr->nkids, 3);
		for (uint32_t i = 0; i < 3; i++) {
			struct kd_node *te = kd_node_elem(mr, i);
			assert_true(str_is(child(te, "Name"), names[i]));
			struct kd_node *pe = kd_node_elem(child(te, "PartitionResponses"), 0);
			assert_int_equal(kd_node_int(child(pe, "Index")), i);
			assert_int_equal(kd_node_int(child(pe, "ErrorCode")), err[i]);
			assert_int_equal(kd_node_int(child(pe, "BaseOffset")), err[i] ? 0 : 42);
			if (err[i])
				assert_true(str_is(child(pe, "ErrorMessage"), "denied by rule x"));
		}
		kd_split_free(&split);
		kd_wbuf_free(&rw);
		kd_wbuf_free(&fwd);
		kd_wbuf_free(&bw);
		kd_wbuf_free(&mw);
		kd_arena_reset(&a);
	}
	kd_arena_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_api_and_version),
	    cmocka_unit_test(test_produce_answer),
	    cmocka_unit_test(test_group_and_coordinator_answers),
	    cmocka_unit_test(test_config_resource_answers),
	    cmocka_unit_test(test_split_and_merge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
