/* kd-names.c: the names of any message, found from the schema and mapped
 * by the caller (kd-names.h).
 *
 * Which strings are names: a field whose entityType is topicName, groupId
 * or transactionalId (a string, or the elements of a string array), and
 * two typed names the schema leaves unannotated because their kind is in
 * a sibling field:
 *
 *   ResourceName  with ResourceType 2 (TOPIC) or 32 (GROUP): DescribeConfigs,
 *                 AlterConfigs, IncrementalAlterConfigs (requests and
 *                 responses; other resource types, brokers, are no names)
 *   Key, CoordinatorKeys  FindCoordinator: KeyType 0 group, 1 transactional
 *                 id (v0 has no KeyType: a group); the v4+ response's
 *                 Coordinators[].Key takes the request's KeyType */
#include <stdatomic.h>
#include <string.h>

#include "kd-api-keys-gen.h"
#include "kd-names.h"
#include "kd-schema.h"
#include "kd-tree.h"

#define ENT_BIT(e) (1u << (e))
#define NAME_ENTS                                                                                  \
	(ENT_BIT(KD_ENT_TOPIC_NAME) | ENT_BIT(KD_ENT_GROUP_ID) | ENT_BIT(KD_ENT_TRANSACTIONAL_ID))

int kd_names_resource_entity(int rtype)
{
	switch (rtype) {
	case 2: /* TOPIC (ConfigResource.Type) */
		return KD_ENT_TOPIC_NAME;
	case 32: /* GROUP (KIP-848 group configs) */
		return KD_ENT_GROUP_ID;
	default:
		return -1;
	}
}

int kd_names_coord_entity(int ktype)
{
	switch (ktype) {
	case KD_COORD_GROUP:
		return KD_ENT_GROUP_ID;
	case KD_COORD_TXN:
		return KD_ENT_TRANSACTIONAL_ID;
	default:
		return -2; /* share-group keys ("group:topicId:partition") and unknown types */
	}
}

static int is_name(const struct kd_field *f, const char *name)
{
	return f && f->name && !strcmp(f->name, name);
}

int kd_names_typed_api(int16_t api_key)
{
	return api_key == KD_API_DESCRIBE_CONFIGS || api_key == KD_API_ALTER_CONFIGS ||
	       api_key == KD_API_INCREMENTAL_ALTER_CONFIGS || api_key == KD_API_FIND_COORDINATOR;
}

/* Whether field f of a message of api_key is a typed name (above). */
static int typed_field(int16_t api_key, const struct kd_field *f)
{
	int type = f->type == KD_T_ARRAY ? f->elem : f->type;
	if (type != KD_T_STRING)
		return 0;
	if (!kd_names_typed_api(api_key))
		return 0;
	if (api_key != KD_API_FIND_COORDINATOR)
		return is_name(f, "ResourceName");
	return (is_name(f, "Key") || is_name(f, "CoordinatorKeys"));
}

/* ---- which messages carry names (cached) ---- */

static unsigned struct_ents(int16_t api_key, const struct kd_struct *st, int16_t v, unsigned depth)
{
	unsigned bits = 0;
	if (!st || depth > 16)
		return 0;
	for (unsigned i = 0; i < st->nfields; i++) {
		const struct kd_field *f = &st->fields[i];
		if (!kd_vers_has(f->versions, v))
			continue;
		int type = f->type == KD_T_ARRAY ? f->elem : f->type;
		if (type == KD_T_STRING && (NAME_ENTS & ENT_BIT(f->entity)))
			bits |= ENT_BIT(f->entity);
		if (typed_field(api_key, f))
			bits |= is_name(f, "ResourceName")
			            ? ENT_BIT(KD_ENT_TOPIC_NAME) | ENT_BIT(KD_ENT_GROUP_ID)
			            : ENT_BIT(KD_ENT_GROUP_ID) | ENT_BIT(KD_ENT_TRANSACTIONAL_ID);
		if (type == KD_T_STRUCT)
			bits |= struct_ents(api_key, f->sub, v, depth + 1);
	}
	return bits;
}

#define CACHE_KEYS 128
#define CACHE_VERS 32
static _Atomic uint8_t ents_cache[CACHE_KEYS][CACHE_VERS][2];

unsigned kd_names_entities(int16_t api_key, int16_t version, int is_request)
{
	int cache = api_key >= 0 && api_key < CACHE_KEYS && version >= 0 && version < CACHE_VERS;
	if (cache) {
		uint8_t c = atomic_load_explicit(&ents_cache[api_key][version][!!is_request],
		                                 memory_order_relaxed);
		if (c & 0x80)
			return c & 0x7f;
	}
	const struct kd_msgdef *def = kd_msgdef_get(api_key, version, is_request);
	unsigned bits = def ? struct_ents(api_key, def->body, version, 0) : 0;
	if (cache) /* the same value whoever computes it first */
		atomic_store_explicit(&ents_cache[api_key][version][!!is_request],
		                      (uint8_t)(0x80 | bits), memory_order_relaxed);
	return bits;
}

/* ---- the tree ---- */

struct nctx {
	struct kd_tree *t;
	kd_name_fn *fn;
	void *arg;
	int coord_kt;
	struct kd_names_res *res;
	int rc;
};

/* Maps one string node as ent. Returns KD_NAME_*. An empty or null name
 * names nothing and is left as it is. */
static int map_str(struct nctx *c, struct kd_node *n, int ent)
{
	if (n->type != KD_T_STRING || n->null || !n->val.v.len)
		return KD_NAME_SAME;
	struct kd_view out;
	int r = c->fn(c->arg, ent, n->val.v.p, n->val.v.len, &out);
	if (r == KD_NAME_HIDDEN) {
		c->res->hidden++;
		return r;
	}
	if (r == KD_NAME_MAPPED) {
		int rc = kd_node_set_str(c->t, n, out.p, out.len);
		if (rc != KD_OK)
			c->rc = rc;
		else
			c->res->mapped++;
	}
	return r;
}

/* An integer field of struct st, or def. */
static int64_t sibling_int(const struct kd_node *st, const char *name, int64_t def)
{
	for (uint32_t i = 0; i < st->nkids; i++)
		if (is_name(st->kids[i].field, name) && !(st->kids[i].flags & KD_NF_ELEM))
			return kd_node_int(&st->kids[i]);
	return def;
}

/* The entity of string field f in struct st (-1: not a name; -2: a name
 * that cannot be mapped). */
static int field_entity(struct nctx *c, const struct kd_node *st, const struct kd_field *f)
{
	if (NAME_ENTS & ENT_BIT(f->entity))
		return f->entity;
	if (!typed_field(c->t->api_key, f))
		return -1;
	if (is_name(f, "ResourceName"))
		return kd_names_resource_entity((int)sibling_int(st, "ResourceType", -1));
	if (c->t->is_request)
		return kd_names_coord_entity((int)sibling_int(st, "KeyType", KD_COORD_GROUP));
	return c->coord_kt < 0 ? -1 : kd_names_coord_entity(c->coord_kt);
}

static int map_struct(struct nctx *c, struct kd_node *st, unsigned depth);

/* Maps the elements of array arr (of struct st); in a response, takes out
 * those whose own name is outside the namespace. */
static void map_array(struct nctx *c, const struct kd_node *st, struct kd_node *arr, unsigned depth)
{
	const struct kd_field *f = arr->field;
	int ent = f->elem == KD_T_STRING ? field_entity(c, st, f) : -1;
	if (f->elem == KD_T_STRING && ent == -1)
		return;
	for (uint32_t i = 0; i < arr->nkids && c->rc == KD_OK; i++) {
		struct kd_node *e = &arr->kids[i];
		int hidden;
		if (f->elem == KD_T_STRUCT)
			hidden = map_struct(c, e, depth + 1);
		else if (ent == -2)
			hidden = e->val.v.len && (c->res->hidden++, 1);
		else if (f->elem == KD_T_STRING)
			hidden = map_str(c, e, ent) == KD_NAME_HIDDEN;
		else
			return;
		if (hidden && !c->t->is_request) {
			kd_node_array_remove(arr, i--);
			c->res->removed++;
		}
	}
}

/* Maps the names in struct st. Returns 1 when one of its own (direct)
 * names is outside the namespace. */
static int map_struct(struct nctx *c, struct kd_node *st, unsigned depth)
{
	int hidden = 0;
	if (depth > 32)
		return 0;
	for (uint32_t i = 0; i < st->nkids && c->rc == KD_OK; i++) {
		struct kd_node *n = &st->kids[i];
		const struct kd_field *f = n->field;
		if (!f || n->null)
			continue;
		if (n->type == KD_T_STRING) {
			int ent = field_entity(c, st, f);
			if (ent == -2 && c->t->is_request && n->val.v.len) {
				c->res->hidden++; /* a share-group coordinator key */
				hidden = 1;
			} else if (ent >= 0) {
				hidden |= map_str(c, n, ent) == KD_NAME_HIDDEN;
			}
		} else if (n->type == KD_T_ARRAY) {
			map_array(c, st, n, depth);
		} else if (n->type == KD_T_STRUCT) {
			map_struct(c, n, depth + 1);
		}
	}
	return hidden;
}

int kd_names_map_tree(struct kd_tree *t, kd_name_fn *fn, void *arg, int coord_key_type,
                      struct kd_names_res *res)
{
	memset(res, 0, sizeof(*res));
	if (!t->root)
		return KD_OK;
	struct nctx c = {t, fn, arg, coord_key_type, res, KD_OK};
	map_struct(&c, t->root, 0);
	return c.rc;
}

/* kd_names_each's mapping function: reports the name, maps nothing. */
struct each {
	kd_name_fn *fn;
	void *arg;
};

static int each_name(void *arg, int ent, const uint8_t *p, size_t len, struct kd_view *out)
{
	struct each *e = arg;
	e->fn(e->arg, ent, p, len, out);
	return KD_NAME_SAME;
}

int kd_names_each(const struct kd_tree *t, kd_name_fn *fn, void *arg)
{
	struct each e = {fn, arg};
	struct kd_names_res res;
	/* The walk changes a tree only where its function maps a name or, in a
	 * response, hides one; each_name does neither. */
	return kd_names_map_tree((struct kd_tree *)t, each_name, &e, -1, &res);
}
