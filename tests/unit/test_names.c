/* test_names.c: the name mapper (kd-names.h), table-driven across the
 * spec. For every API, version and direction, a message with every array
 * filled (two elements, down to depth 4) and every name set is encoded,
 * decoded, mapped to the cluster (a "p." prefix), encoded and decoded
 * again: every name the schema marks (entityType topicName, groupId,
 * transactionalId, and the typed ResourceName and coordinator keys) now
 * carries the prefix, and nothing else changed; mapped back, the message
 * is byte for byte the one first encoded. Then what is outside a
 * namespace: taken out of responses (Metadata, ListGroups, OffsetFetch,
 * DescribeConfigs), reported in requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kd-api-keys-gen.h"
#include "kd-arena.h"
#include "kd-names.h"
#include "kd-schema.h"
#include "kd-tree.h"

#define P "p."

static int is(const struct kd_field *f, const char *name)
{
	return f && !strcmp(f->name, name);
}

/* Whether node n (a string, or a string array element) is a name, as the
 * test reads the schema. */
static int name_field(int16_t key, const struct kd_node *n)
{
	const struct kd_field *f = n->field;
	if (!f || n->type != KD_T_STRING)
		return 0;
	if (f->entity == KD_ENT_TOPIC_NAME || f->entity == KD_ENT_GROUP_ID ||
	    f->entity == KD_ENT_TRANSACTIONAL_ID)
		return 1;
	if (is(f, "ResourceName"))
		return key == KD_API_DESCRIBE_CONFIGS || key == KD_API_ALTER_CONFIGS ||
		       key == KD_API_INCREMENTAL_ALTER_CONFIGS;
	return key == KD_API_FIND_COORDINATOR && (is(f, "Key") || is(f, "CoordinatorKeys"));
}

static void fill(struct kd_tree *t, struct kd_node *n, unsigned depth)
{
	for (uint32_t i = 0; i < n->nkids; i++) {
		struct kd_node *k = &n->kids[i];
		if (is(k->field, "ResourceType"))
			assert_int_equal(kd_node_set_int(k, 2), KD_OK); /* TOPIC */
		if (k->type == KD_T_STRING && !k->null) {
			char s[32];
			snprintf(s, sizeof(s), "%s%u", name_field(t->api_key, k) ? "n" : "x", depth);
			assert_int_equal(kd_node_set_str(t, k, s, strlen(s)), KD_OK);
		}
		if (k->type == KD_T_STRUCT && !k->null)
			fill(t, k, depth + 1);
		if (k->type != KD_T_ARRAY || k->null || depth > 4)
			continue;
		for (uint32_t j = 0; j < 2; j++) {
			assert_non_null(kd_node_array_add(t, k, UINT32_MAX));
			struct kd_node *e = &k->kids[j];
			if (e->type == KD_T_STRUCT)
				fill(t, e, depth + 1);
			else if (e->type == KD_T_STRING) {
				char s[32];
				snprintf(s, sizeof(s), "%s%u%u", name_field(t->api_key, e) ? "n" : "x",
				         depth, j);
				assert_int_equal(kd_node_set_str(t, e, s, strlen(s)), KD_OK);
			}
		}
	}
}

struct count {
	int16_t key;
	unsigned names, prefixed, others_prefixed;
};

static int count_cb(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	(void)wc;
	struct count *c = arg;
	if (n->type != KD_T_STRING || n->null || !n->val.v.len)
		return 0;
	int pre = n->val.v.len > 2 && !memcmp(n->val.v.p, P, 2);
	if (name_field(c->key, n)) {
		c->names++;
		c->prefixed += pre;
	} else {
		c->others_prefixed += pre;
	}
	return 0;
}

static struct count count(struct kd_tree *t)
{
	struct count c = {.key = t->api_key};
	kd_tree_walk(t, count_cb, &c);
	return c;
}

/* The test's namespace: "p." on the cluster's side. */
static char mbuf[1024];
static int to_cluster(void *arg, int ent, const uint8_t *p, size_t len, struct kd_view *out)
{
	(void)arg;
	assert_true(ent == KD_ENT_TOPIC_NAME || ent == KD_ENT_GROUP_ID ||
	            ent == KD_ENT_TRANSACTIONAL_ID);
	assert_true(len + 2 <= sizeof(mbuf));
	memcpy(mbuf, P, 2);
	memcpy(mbuf + 2, p, len);
	*out = (struct kd_view){(const uint8_t *)mbuf, (uint32_t)len + 2, 0};
	return KD_NAME_MAPPED;
}

static int to_client(void *arg, int ent, const uint8_t *p, size_t len, struct kd_view *out)
{
	(void)arg;
	(void)ent;
	if (len <= 2 || memcmp(p, P, 2))
		return KD_NAME_HIDDEN;
	*out = (struct kd_view){p + 2, (uint32_t)len - 2, 0};
	return KD_NAME_MAPPED;
}

static void encode(struct kd_tree *t, struct kd_wbuf *w)
{
	w->len = 0;
	assert_int_equal(kd_tree_encode(t, w), KD_OK);
	assert_int_equal(w->err, 0);
}

static unsigned one(int16_t key, int16_t ver, int is_req, struct kd_arena *a)
{
	struct kd_tree t, t2;
	struct kd_wbuf first = {0}, mapped = {0}, back = {0};
	struct kd_names_res res;
	kd_arena_reset(a);
	if (kd_tree_init_default(&t, a, key, ver, is_req) != KD_OK)
		return 0;
	fill(&t, t.root, 0);
	encode(&t, &first);
	assert_int_equal(kd_tree_decode(&t2, a, key, ver, is_req, first.p, first.len), KD_OK);
	struct count c0 = count(&t2);
	unsigned ents = kd_names_entities(key, ver, is_req);
	if (!c0.names) {
		kd_wbuf_free(&first);
		return 0;
	}
	if (!ents)
		fail_msg("%s v%d %s: names in the message, none in kd_names_entities",
		         kd_api_name(key), ver, is_req ? "request" : "response");
	assert_int_equal(kd_names_map_tree(&t2, to_cluster, NULL, KD_COORD_GROUP, &res), KD_OK);
	if (res.mapped != c0.names || res.hidden)
		fail_msg("%s v%d %s: %u names, %u mapped, %u hidden", kd_api_name(key), ver,
		         is_req ? "request" : "response", c0.names, res.mapped, res.hidden);
	encode(&t2, &mapped);
	assert_int_equal(kd_tree_decode(&t2, a, key, ver, is_req, mapped.p, mapped.len), KD_OK);
	struct count c1 = count(&t2);
	if (c1.prefixed != c0.names || c1.others_prefixed)
		fail_msg("%s v%d %s: %u of %u names prefixed, %u other strings", kd_api_name(key),
		         ver, is_req ? "request" : "response", c1.prefixed, c0.names,
		         c1.others_prefixed);
	assert_int_equal(kd_names_map_tree(&t2, to_client, NULL, KD_COORD_GROUP, &res), KD_OK);
	assert_int_equal(res.mapped, c0.names);
	assert_int_equal(res.hidden + res.removed, 0);
	encode(&t2, &back);
	if (back.len != first.len || memcmp(back.p, first.p, first.len))
		fail_msg("%s v%d %s: mapped back, the message differs", kd_api_name(key), ver,
		         is_req ? "request" : "response");
	kd_wbuf_free(&first);
	kd_wbuf_free(&mapped);
	kd_wbuf_free(&back);
	return c0.names;
}

static void test_every_api(void **state)
{
	(void)state;
	struct kd_arena a = {0};
	unsigned msgs = 0, names = 0;
	for (unsigned i = 0; i < kd_napis; i++) {
		const struct kd_api *api = &kd_apis[i];
		for (int dir = 0; dir < 2; dir++) {
			const struct kd_msgdef *def = dir ? &api->req : &api->resp;
			for (int v = def->valid.lo; v >= 0 && v <= def->valid.hi; v++) {
				unsigned n = one(api->key, (int16_t)v, dir, &a);
				msgs += n > 0;
				names += n;
			}
		}
	}
	print_message("%u messages with names, %u names mapped and back\n", msgs, names);
	/* The spec has hundreds: a table that lost its entity flags would
	 * make this small. */
	assert_true(msgs > 400);
	kd_arena_free(&a);
}

/* A response's elements outside the namespace go; a request's are told. */
static void expect_hidden(int16_t key, int16_t ver, int is_req, const char *arr_name,
                          unsigned keep)
{
	struct kd_arena a = {0};
	struct kd_tree t;
	struct kd_names_res res;
	assert_int_equal(kd_tree_init_default(&t, &a, key, ver, is_req), KD_OK);
	fill(&t, t.root, 0);
	struct kd_node *arr = kd_node_child(t.root, arr_name);
	assert_non_null(arr);
	assert_int_equal(arr->nkids, 2);
	/* The first element's names are in the namespace, the second's not:
	 * to_client takes "p." off, hides the rest. */
	assert_int_equal(kd_names_map_tree(&t, to_cluster, NULL, KD_COORD_GROUP, &res), KD_OK);
	struct kd_node *e = &arr->kids[1];
	struct kd_node *name = e->type == KD_T_STRING ? e : NULL;
	for (uint32_t i = 0; !name && i < e->nkids; i++)
		if (name_field(key, &e->kids[i]))
			name = &e->kids[i];
	assert_non_null(name);
	assert_int_equal(kd_node_set_str(&t, name, "other.x", 7), KD_OK);
	assert_int_equal(kd_names_map_tree(&t, to_client, NULL, KD_COORD_GROUP, &res), KD_OK);
	assert_int_equal(res.hidden, 1);
	assert_int_equal(arr->nkids, keep);
	assert_int_equal(res.removed, 2 - keep);
	kd_arena_free(&a);
}

static void test_outside_namespace(void **state)
{
	(void)state;
	expect_hidden(KD_API_METADATA, 12, 0, "Topics", 1);
	expect_hidden(KD_API_METADATA, 1, 0, "Topics", 1);
	expect_hidden(KD_API_LIST_GROUPS, 4, 0, "Groups", 1);
	expect_hidden(KD_API_DESCRIBE_GROUPS, 5, 0, "Groups", 1);
	expect_hidden(KD_API_OFFSET_FETCH, 7, 0, "Topics", 1);
	expect_hidden(KD_API_DESCRIBE_CONFIGS, 4, 0, "Results", 1);
	expect_hidden(KD_API_LIST_TRANSACTIONS, 0, 0, "TransactionStates", 1);
	/* requests keep their elements: the caller refuses them */
	expect_hidden(KD_API_METADATA, 12, 1, "Topics", 2);
	expect_hidden(KD_API_DESCRIBE_GROUPS, 5, 1, "Groups", 2);
}

/* Typed names: a config resource of a broker is no name; a FindCoordinator
 * key follows its KeyType; a share-group key cannot be mapped. */
static void test_typed(void **state)
{
	(void)state;
	struct kd_arena a = {0};
	struct kd_tree t;
	struct kd_names_res res;
	assert_int_equal(kd_tree_init_default(&t, &a, KD_API_DESCRIBE_CONFIGS, 4, 1), KD_OK);
	fill(&t, t.root, 0);
	struct kd_node *r = kd_node_child(t.root, "Resources");
	assert_int_equal(kd_node_set_int(kd_node_child(&r->kids[1], "ResourceType"), 4), KD_OK);
	assert_int_equal(kd_names_map_tree(&t, to_cluster, NULL, -1, &res), KD_OK);
	assert_int_equal(res.mapped, 1);
	struct kd_node *n0 = kd_node_child(&r->kids[0], "ResourceName");
	struct kd_node *n1 = kd_node_child(&r->kids[1], "ResourceName");
	assert_memory_equal(n0->val.v.p, P, 2);
	assert_memory_not_equal(n1->val.v.p, P, 2);

	kd_arena_reset(&a);
	assert_int_equal(kd_tree_init_default(&t, &a, KD_API_FIND_COORDINATOR, 4, 1), KD_OK);
	fill(&t, t.root, 0);
	assert_int_equal(kd_node_set_int(kd_node_child(t.root, "KeyType"), KD_COORD_SHARE), KD_OK);
	assert_int_equal(kd_names_map_tree(&t, to_cluster, NULL, -1, &res), KD_OK);
	assert_int_equal(res.hidden, 2);
	assert_int_equal(kd_names_coord_entity(KD_COORD_TXN), KD_ENT_TRANSACTIONAL_ID);
	assert_int_equal(kd_names_resource_entity(32), KD_ENT_GROUP_ID);
	assert_int_equal(kd_names_resource_entity(4), -1);
	assert_int_equal(kd_names_entities(KD_API_API_VERSIONS, 3, 0), 0);
	assert_int_equal(kd_names_entities(KD_API_FETCH, 13, 0), 0); /* TopicId only */
	assert_int_not_equal(kd_names_entities(KD_API_FETCH, 12, 0), 0);
	kd_arena_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_api),
	    cmocka_unit_test(test_outside_namespace),
	    cmocka_unit_test(test_typed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
