/* test_throttle.c: ThrottleTimeMs in responses (kd-throttle.h).
 *
 * For every API and response version in the spec: a response with two
 * elements in every array (so that a field after an array, like Produce's,
 * is found past real elements) gets its ThrottleTimeMs raised in place by
 * kd_throttle_raise, and the result must be byte for byte the same
 * response encoded by the tree with ThrottleTimeMs set; a lower value
 * leaves it alone; a version without the field is refused untouched. Then
 * the KIP-219 versions. */
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
#include "kd-hdr.h"
#include "kd-schema.h"
#include "kd-throttle.h"
#include "kd-tree.h"
#include "kd-walk.h"

/* Two elements in every array, down to depth 3. */
static void fill(struct kd_tree *t, struct kd_node *n, unsigned depth)
{
	for (uint32_t i = 0; i < n->nkids; i++) {
		struct kd_node *k = &n->kids[i];
		if (k->type == KD_T_STRUCT && !k->null)
			fill(t, k, depth + 1);
		if (k->type != KD_T_ARRAY || depth > 3)
			continue;
		for (uint32_t j = 0; j < 2; j++) {
			assert_non_null(kd_node_array_add(t, k, UINT32_MAX));
			struct kd_node *e = &k->kids[j];
			if (e->type == KD_T_STRUCT)
				fill(t, e, depth + 1);
			else if (e->type == KD_T_STRING)
				assert_int_equal(kd_node_set_str(t, e, "abc", 3), KD_OK);
		}
	}
}

/* The response frame of t: size, header (correlation id 7), body. */
static void frame(struct kd_tree *t, int16_t key, int16_t ver, struct kd_wbuf *w, size_t *hdr_len)
{
	struct kd_resp_hdr h = {.correlation_id = 7};
	h.hdr_version = (uint8_t)kd_resp_hdr_version(key, ver);
	kd_w_i32(w, 0);
	kd_resp_hdr_write(w, &h);
	*hdr_len = w->len - 4;
	assert_int_equal(kd_tree_encode(t, w), KD_OK);
	assert_int_equal(w->err, 0);
	kd_w_patch_be(w, 0, 4, w->len - 4);
}

static void test_every_api_and_version(void **state)
{
	(void)state;
	struct kd_arena a = {0};
	unsigned with = 0, without = 0, walked = 0;
	for (unsigned i = 0; i < kd_napis; i++) {
		const struct kd_api *api = &kd_apis[i];
		for (int16_t v = api->resp.valid.lo; v >= 0 && v <= api->resp.valid.hi; v++) {
			if (!kd_msgdef_get(api->key, v, 0))
				continue;
			struct kd_tree t;
			struct kd_wbuf w = {0}, want = {0};
			size_t hl;
			assert_int_equal(kd_tree_init_default(&t, &a, api->key, v, 0), KD_OK);
			fill(&t, t.root, 0);
			frame(&t, api->key, v, &w, &hl);
			struct kd_node *f = kd_node_child(t.root, "ThrottleTimeMs");
			if (!f) {
				uint8_t *copy = malloc(w.len);
				memcpy(copy, w.p, w.len);
				assert_int_equal(
				    kd_throttle_raise(api->key, v, w.p, w.len, hl, 1234),
				    KD_EUNSUPPORTED);
				assert_memory_equal(copy, w.p, w.len);
				assert_int_equal(kd_throttle_kip219(api->key, v), 0);
				free(copy);
				without++;
			} else {
				/* 1234 where the broker said 0: the same bytes as the
				 * tree's own encoding with 1234. */
				assert_int_equal(kd_node_set_int(f, 1234), KD_OK);
				frame(&t, api->key, v, &want, &hl);
				if (kd_throttle_raise(api->key, v, w.p, w.len, hl, 1234) != 1 ||
				    w.len != want.len || memcmp(w.p, want.p, w.len)) {
					print_error("%s v%d: ThrottleTimeMs not raised in place\n",
					            api->name, v);
					fail();
				}
				/* The broker's longer throttle stays. */
				assert_int_equal(
				    kd_throttle_raise(api->key, v, w.p, w.len, hl, 1000), 0);
				assert_memory_equal(w.p, want.p, w.len);
				if (!kd_throttle_first(api->key, v)) {
					walked++;
					/* A body cut before the field needs more. */
					long off = kd_throttle_offset(api->key, v, w.p + 4 + hl,
					                              w.len - 4 - hl);
					assert_true(off > 0);
					assert_int_equal(kd_throttle_raise(api->key, v, w.p,
					                                   4 + hl + (size_t)off, hl,
					                                   5),
					                 KD_ESHORT);
				}
				with++;
			}
			kd_wbuf_free(&w);
			kd_wbuf_free(&want);
			kd_arena_reset(&a);
		}
	}
	print_message("%u response versions with ThrottleTimeMs (%u after other fields), %u "
	              "without\n",
	              with, walked, without);
	assert_true(with >= 250);
	assert_true(walked >= 20); /* Produce, ApiVersions, delegation tokens... */
	kd_arena_free(&a);
}

/* The first versions sent before throttling (KIP-219), from the schemas'
 * comments, and Produce v6 / OffsetForLeaderEpoch v3 from KIP-219. */
static void test_kip219_versions(void **state)
{
	(void)state;
	static const struct {
		int16_t key, first;
	} bumps[] = {
	    {KD_API_PRODUCE, 6},       {KD_API_FETCH, 8},
	    {KD_API_LIST_OFFSETS, 3},  {KD_API_METADATA, 6},
	    {KD_API_OFFSET_COMMIT, 4}, {KD_API_API_VERSIONS, 2},
	    {KD_API_JOIN_GROUP, 3},    {KD_API_CREATE_TOPICS, 3},
	    {KD_API_DELETE_GROUPS, 1}, {KD_API_OFFSET_FOR_LEADER_EPOCH, 3},
	};
	for (unsigned i = 0; i < sizeof(bumps) / sizeof(bumps[0]); i++) {
		assert_int_equal(kd_throttle_kip219(bumps[i].key, bumps[i].first - 1), 0);
		assert_int_equal(kd_throttle_kip219(bumps[i].key, bumps[i].first), 1);
	}
	/* Added after KIP-219: every version. */
	assert_int_equal(kd_throttle_kip219(KD_API_DESCRIBE_CLIENT_QUOTAS, 0), 1);
	assert_int_equal(kd_throttle_kip219(KD_API_ELECT_LEADERS, 0), 1);
	/* No ThrottleTimeMs at all: nothing to tell the client with. */
	assert_int_equal(kd_throttle_kip219(KD_API_SASL_HANDSHAKE, 1), 0);
	assert_int_equal(kd_throttle_kip219(KD_API_API_VERSIONS, 0), 0);
	/* Fetch's field is first: a 4-byte prefix of the body is enough. */
	assert_int_equal(kd_throttle_first(KD_API_FETCH, 13), 1);
	assert_int_equal(kd_throttle_offset(KD_API_FETCH, 13, (const uint8_t *)"", 0), 0);
	assert_int_equal(kd_throttle_first(KD_API_PRODUCE, 9), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_api_and_version),
	    cmocka_unit_test(test_kip219_versions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
