/* kd-build.c: error responses built from the schema tables (kd-build.h).
 *
 * Nothing here knows an API by name. The response is a default tree
 * (kd_tree_init_default: the schema's defaults) that is then walked
 * beside the request: an array of structs in the response is paired with
 * the request's array whose elements carry the same kind of key, found
 * from the schema (entityType topicName/groupId/transactionalId, the UUID
 * TopicId, an INT32 partition index, a ProducerId, a coordinator Key, a
 * config resource's ResourceType and ResourceName).
 * For
 *
 *   ProduceRequest  TopicData[]{Name, PartitionData[]{Index, Records}}
 *   ProduceResponse Responses[]{Name, PartitionResponses[]{Index, ErrorCode, ...}}
 *
 * that gives one Responses element per TopicData element, one
 * PartitionResponses element per PartitionData element, Name and Index
 * copied, ErrorCode set. A request array of scalars pairs the same way
 * (DescribeGroups' Groups []string -> Groups[]{GroupId, ErrorCode...}). */
#include <string.h>

#include "kd-arena.h"
#include "kd-build.h"
#include "kd-hdr.h"
#include "kd-schema.h"
#include "kd-tree.h"

enum key_kind {
	K_NONE = 0,
	K_TOPIC, /* a topic name or a TopicId: both name the topic */
	K_GROUP,
	K_TXN,
	K_PARTITION,
	K_PRODUCER, /* WriteTxnMarkers: Markers[] by ProducerId */
	K_KEY,      /* FindCoordinator v4+: CoordinatorKeys -> Coordinators[].Key */
	K_RESOURCE, /* a config resource: ResourceType and ResourceName */
};

static int name_is(const struct kd_field *f, const char *name)
{
	return f && f->name && !strcmp(f->name, name);
}

/* The kind of key a scalar field (or the elements of a scalar array)
 * holds. */
static int field_key(const struct kd_field *f)
{
	int type = f->type == KD_T_ARRAY ? f->elem : f->type;
	if (f->entity == KD_ENT_TOPIC_NAME && type == KD_T_STRING)
		return K_TOPIC;
	if (type == KD_T_UUID && name_is(f, "TopicId"))
		return K_TOPIC;
	if (f->entity == KD_ENT_GROUP_ID && type == KD_T_STRING)
		return K_GROUP;
	if (f->entity == KD_ENT_TRANSACTIONAL_ID && type == KD_T_STRING)
		return K_TXN;
	if (type == KD_T_INT32 && (name_is(f, "Partition") || name_is(f, "PartitionIndex") ||
	                           name_is(f, "Index") || name_is(f, "PartitionId") ||
	                           name_is(f, "PartitionIndexes") || name_is(f, "Partitions")))
		return K_PARTITION;
	if (f->entity == KD_ENT_PRODUCER_ID && type == KD_T_INT64)
		return K_PRODUCER;
	if (type == KD_T_STRING && (name_is(f, "Key") || name_is(f, "CoordinatorKeys")))
		return K_KEY;
	if ((type == KD_T_STRING && name_is(f, "ResourceName")) ||
	    (type == KD_T_INT8 && name_is(f, "ResourceType")))
		return K_RESOURCE;
	return K_NONE;
}

/* The key an array element is known by: for a struct, the most specific
 * key among its present scalar fields (topic before group before
 * transactional id before partition); for a scalar, its own. */
static int elem_key(const struct kd_node *arr, int16_t version)
{
	const struct kd_field *f = arr->field;
	if (f->elem != KD_T_STRUCT)
		return field_key(f);
	int best = K_NONE;
	for (unsigned i = 0; f->sub && i < f->sub->nfields; i++) {
		const struct kd_field *sf = &f->sub->fields[i];
		if (!kd_vers_has(sf->versions, version) || sf->type == KD_T_ARRAY ||
		    sf->type == KD_T_STRUCT)
			continue;
		int k = field_key(sf);
		if (k != K_NONE && (best == K_NONE || k < best))
			best = k;
	}
	return best;
}

/* The request arrays whose elements are keyed like the response array
 * resp's: the first kid of req with that key or, when none is, those found
 * under req's arrays of unkeyed structs (AlterReplicaLogDirs groups
 * topics by log dir; its response lists topics alone). Fills src, up to
 * max; returns the count. */
#define PAIR_MAX 64
static unsigned pair_arrays(const struct kd_node *req, int16_t rver, int want,
                            const struct kd_node **src, unsigned n, unsigned depth)
{
	if (!req || depth > 4)
		return n;
	/* The first keyed array is the request's own list: Fetch's Topics,
	 * not its ForgottenTopicsData. */
	for (uint32_t i = 0; i < req->nkids && n < PAIR_MAX; i++) {
		const struct kd_node *k = &req->kids[i];
		if (k->type == KD_T_ARRAY && !k->null && elem_key(k, rver) == want) {
			src[n++] = k;
			return n;
		}
	}
	for (uint32_t i = 0; i < req->nkids && n < PAIR_MAX; i++) {
		const struct kd_node *k = &req->kids[i];
		if (k->type != KD_T_ARRAY || k->null || k->field->elem != KD_T_STRUCT ||
		    elem_key(k, rver) != K_NONE)
			continue;
		for (uint32_t j = 0; j < k->nkids && n < PAIR_MAX; j++)
			n = pair_arrays(&k->kids[j], rver, want, src, n, depth + 1);
	}
	return n;
}

/* The value of key kind kind in a request element (a struct: its field of
 * that kind, preferring one of the same type as want; a scalar: itself). */
static const struct kd_node *elem_value(const struct kd_node *e, int kind, int type)
{
	if (e->type != KD_T_STRUCT)
		return field_key(e->field) == kind ? e : NULL;
	const struct kd_node *any = NULL;
	for (uint32_t i = 0; i < e->nkids; i++) {
		const struct kd_node *k = &e->kids[i];
		if (!k->field || k->type == KD_T_ARRAY || k->type == KD_T_STRUCT ||
		    field_key(k->field) != kind)
			continue;
		if (k->type == type)
			return k;
		if (!any)
			any = k;
	}
	return any;
}

static int copy_value(struct kd_tree *t, struct kd_node *dst, const struct kd_node *src)
{
	if (dst->type != src->type)
		return KD_OK; /* a name where the response has an id, or the reverse */
	switch (dst->type) {
	case KD_T_STRING:
		if (src->null)
			return (dst->flags & KD_NF_NULLABLE) ? kd_node_set_null(dst) : KD_OK;
		return kd_node_set_str(t, dst, src->val.v.p, src->val.v.len);
	case KD_T_UUID:
		return kd_node_set_uuid(dst, src->val.uuid);
	case KD_T_INT8:
	case KD_T_INT32:
	case KD_T_INT64:
		return kd_node_set_int(dst, src->val.i);
	default:
		return KD_OK;
	}
}

struct bctx {
	struct kd_tree *t;
	const struct kd_tree *req;
	int16_t error;
	const char *message;
	unsigned depth;
};

static int mirror(struct bctx *b, const struct kd_node *req, struct kd_node *resp);

/* One response element for the request element e of a paired array. */
static int mirror_elem(struct bctx *b, const struct kd_node *e, struct kd_node *arr)
{
	uint32_t idx = arr->nkids;
	if (!kd_node_array_add(b->t, arr, UINT32_MAX))
		return b->t->arena->limit ? KD_ELIMIT : KD_ENOMEM;
	struct kd_node *ne = &arr->kids[idx];
	if (ne->type != KD_T_STRUCT)
		return e->type == ne->type ? copy_value(b->t, ne, e) : KD_OK;
	for (uint32_t i = 0; i < ne->nkids; i++) {
		struct kd_node *k = &ne->kids[i];
		if (!k->field || k->type == KD_T_ARRAY || k->type == KD_T_STRUCT)
			continue;
		int kind = field_key(k->field);
		if (kind == K_NONE)
			continue;
		const struct kd_node *v = elem_value(e, kind, k->type);
		if (v) {
			int rc = copy_value(b->t, k, v);
			if (rc != KD_OK)
				return rc;
		}
	}
	/* A scalar request element has nothing under it to mirror. */
	return mirror(b, e->type == KD_T_STRUCT ? e : NULL, &arr->kids[idx]);
}

/* Fills the struct node resp (default-built) from the request struct req
 * (NULL: nothing to mirror, only errors and messages). */
static int mirror(struct bctx *b, const struct kd_node *req, struct kd_node *resp)
{
	if (++b->depth > 32) {
		b->depth--;
		return KD_ELIMIT;
	}
	int rc = KD_OK;
	for (uint32_t i = 0; i < resp->nkids && rc == KD_OK; i++) {
		struct kd_node *k = &resp->kids[i];
		const struct kd_field *f = k->field;
		if (!f)
			continue;
		if (k->type == KD_T_INT16 && strstr(f->name, "ErrorCode")) {
			rc = kd_node_set_int(k, b->error);
		} else if (k->type == KD_T_STRING && name_is(f, "ErrorMessage") && b->message) {
			rc = kd_node_set_str(b->t, k, b->message, strlen(b->message));
		} else if (k->type == KD_T_STRUCT && !k->null) {
			rc = mirror(b, req, k);
		} else if (k->type == KD_T_ARRAY && f->elem == KD_T_STRUCT && req) {
			const struct kd_node *src[PAIR_MAX];
			int want = elem_key(k, b->t->version);
			unsigned nsrc =
			    want == K_NONE ? 0 : pair_arrays(req, b->req->version, want, src, 0, 0);
			for (unsigned m = 0; m < nsrc; m++)
				for (uint32_t j = 0; j < src[m]->nkids && rc == KD_OK; j++)
					rc = mirror_elem(b, &src[m]->kids[j], k);
		} else if (req && k->type != KD_T_ARRAY && field_key(f) != K_NONE) {
			/* A top-level key (a group id next to its members). */
			const struct kd_node *v = elem_value(req, field_key(f), k->type);
			if (v)
				rc = copy_value(b->t, k, v);
		}
	}
	b->depth--;
	return rc;
}

int kd_build_error_body(const struct kd_tree *req, int16_t error, const char *message,
                        struct kd_arena *a, struct kd_tree *out)
{
	if (!req->root || !req->is_request)
		return KD_EUNSUPPORTED;
	int rc = kd_tree_init_default(out, a, req->api_key, req->version, 0);
	if (rc != KD_OK)
		return rc;
	struct bctx b = {.t = out, .req = req, .error = error, .message = message};
	return mirror(&b, req->root, out->root);
}

int kd_build_error_response(const struct kd_tree *req, int32_t correlation_id, int16_t error,
                            const char *message, struct kd_arena *a, struct kd_wbuf *w)
{
	struct kd_tree out;
	int rc = kd_build_error_body(req, error, message, a, &out);
	if (rc != KD_OK)
		return rc;
	struct kd_resp_hdr hdr;
	memset(&hdr, 0, sizeof(hdr));
	hdr.correlation_id = correlation_id;
	hdr.hdr_version = (uint8_t)kd_resp_hdr_version(req->api_key, req->version);
	size_t start = w->len;
	kd_w_i32(w, 0);
	kd_resp_hdr_write(w, &hdr);
	rc = kd_tree_encode(&out, w);
	if (rc != KD_OK)
		return rc;
	if (w->err)
		return w->err;
	size_t size = w->len - start - 4;
	if (size > INT32_MAX)
		return KD_ELIMIT;
	kd_w_patch_be(w, start, 4, size);
	return KD_OK;
}

/* ---- splitting ---- */

struct kd_node *kd_build_topic_array(const struct kd_tree *t)
{
	for (uint32_t i = 0; t->root && i < t->root->nkids; i++) {
		struct kd_node *k = &t->root->kids[i];
		if (k->type == KD_T_ARRAY && !k->null && k->field->elem == KD_T_STRUCT &&
		    elem_key(k, t->version) == K_TOPIC)
			return k;
	}
	return NULL;
}

/* The topic an array element names: its name, else its TopicId. */
static void elem_topic(const struct kd_node *e, struct kd_view *name, const uint8_t **id)
{
	const struct kd_node *n = elem_value(e, K_TOPIC, KD_T_STRING);
	const struct kd_node *u = elem_value(e, K_TOPIC, KD_T_UUID);
	*name = (struct kd_view){NULL, 0, 1};
	*id = NULL;
	if (n && n->type == KD_T_STRING && !n->null)
		*name = n->val.v;
	if (u && u->type == KD_T_UUID)
		*id = u->val.uuid;
}

struct err_set {
	struct kd_tree *t;
	int16_t err;
	const char *msg;
	int rc;
};

static int set_err_msg(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	(void)wc;
	struct err_set *es = arg;
	if (!n->field || (n->flags & KD_NF_TAGGED))
		return 0;
	if (n->type == KD_T_INT16 && strstr(n->field->name, "ErrorCode"))
		es->rc = kd_node_set_int(n, es->err);
	else if (n->type == KD_T_STRING && name_is(n->field, "ErrorMessage") && es->msg)
		es->rc = kd_node_set_str(es->t, n, es->msg, strlen(es->msg));
	return es->rc == KD_OK ? 0 : 2;
}

/* ---- filtering a response's topics ---- */

/* Empties every array inside element e, and zeroes its TopicId: a topic
 * shown only with its error says nothing else about itself. */
static int blank_elem(struct kd_node *e)
{
	static const uint8_t zero[16];
	for (uint32_t k = 0; k < e->nkids; k++) {
		struct kd_node *f = &e->kids[k];
		if (!f->field || (f->flags & KD_NF_TAGGED))
			continue;
		if (f->type == KD_T_ARRAY && !f->null)
			while (f->nkids)
				if (kd_node_array_remove(f, f->nkids - 1) != KD_OK)
					return KD_EMALFORMED;
		if (f->type == KD_T_UUID && name_is(f->field, "TopicId") &&
		    kd_node_set_uuid(f, zero) != KD_OK)
			return KD_EMALFORMED;
	}
	return KD_OK;
}

int kd_build_filter_topics(struct kd_tree *resp, kd_topic_filter_fn *fn, void *arg,
                           unsigned *dropped, unsigned *errored)
{
	struct kd_node *arr = kd_build_topic_array(resp);
	*dropped = *errored = 0;
	for (uint32_t i = 0; arr && i < arr->nkids;) {
		struct kd_node *e = &arr->kids[i];
		struct kd_view name;
		const uint8_t *id;
		int16_t err = 0;
		const char *msg = NULL;
		elem_topic(e, &name, &id);
		int v = fn(arg, name, id, &err, &msg);
		if (v == KD_FILTER_DROP) {
			int rc = kd_node_array_remove(arr, i);
			if (rc != KD_OK)
				return rc;
			(*dropped)++;
			continue;
		}
		if (v == KD_FILTER_ERROR) {
			struct err_set es = {resp, err, msg, KD_OK};
			int rc = blank_elem(e);
			if (rc != KD_OK)
				return rc;
			kd_node_walk(e, set_err_msg, &es);
			if (es.rc != KD_OK)
				return es.rc;
			(*errored)++;
		}
		i++;
	}
	return KD_OK;
}

void kd_split_free(struct kd_split *split)
{
	for (uint32_t i = 0; split->names && i < split->nelems; i++)
		free((void *)split->names[i].p);
	free(split->names);
	free(split->ids);
	free(split->err);
	kd_wbuf_free(&split->denied);
	memset(split, 0, sizeof(*split));
}

int kd_build_split(struct kd_tree *req, const int16_t *err, const char *const *msgs,
                   uint32_t nelems, struct kd_split *split)
{
	memset(split, 0, sizeof(*split));
	struct kd_node *arr = kd_build_topic_array(req);
	if (!arr || arr->nkids != nelems || !nelems)
		return KD_EUNSUPPORTED;
	struct kd_arena *a = req->arena;
	split->api_key = req->api_key;
	split->version = req->version;
	split->nelems = nelems;
	split->err = calloc(nelems, sizeof(*split->err));
	split->names = calloc(nelems, sizeof(*split->names));
	split->ids = calloc(nelems, sizeof(*split->ids));
	/* The refused elements, shallow copies, in a request of their own. */
	struct kd_node *den = kd_arena_alloc(a, nelems * sizeof(*den));
	struct kd_node *kids = kd_arena_alloc(a, req->root->nkids * sizeof(*kids));
	if (!split->err || !split->names || !split->ids || !den || !kids)
		goto nomem;
	uint32_t nden = 0;
	for (uint32_t i = 0; i < nelems; i++) {
		struct kd_view name;
		const uint8_t *id;
		elem_topic(&arr->kids[i], &name, &id);
		split->err[i] = err[i];
		if (name.p && name.len) {
			void *copy = malloc(name.len);
			if (!copy)
				goto nomem;
			memcpy(copy, name.p, name.len);
			split->names[i] = (struct kd_view){copy, name.len, 0};
		}
		if (id)
			memcpy(split->ids[i], id, 16);
		if (err[i])
			den[nden++] = arr->kids[i];
	}
	memcpy(kids, req->root->kids, req->root->nkids * sizeof(*kids));
	struct kd_node root = *req->root;
	root.kids = kids;
	kids[arr - req->root->kids].kids = den;
	kids[arr - req->root->kids].nkids = nden;
	struct kd_tree dreq = *req;
	dreq.root = &root;
	struct kd_tree resp;
	int rc = kd_build_error_body(&dreq, 0, NULL, a, &resp);
	if (rc != KD_OK)
		goto fail;
	struct kd_node *rarr = kd_build_topic_array(&resp);
	if (!rarr || rarr->nkids != nden) {
		rc = KD_EUNSUPPORTED; /* the answer does not list topics one by one */
		goto fail;
	}
	for (uint32_t i = 0, j = 0; i < nelems; i++) {
		if (!err[i])
			continue;
		struct err_set es = {&resp, err[i], msgs ? msgs[i] : NULL, KD_OK};
		kd_node_walk(&rarr->kids[j++], set_err_msg, &es);
		if (es.rc != KD_OK) {
			rc = es.rc;
			goto fail;
		}
	}
	rc = kd_tree_encode(&resp, &split->denied);
	if (rc != KD_OK)
		goto fail;
	/* What goes to the broker: the array without the refused elements. */
	uint32_t keep = 0;
	for (uint32_t i = 0; i < nelems; i++)
		if (!err[i])
			arr->kids[keep++] = arr->kids[i];
	arr->nkids = keep;
	arr->flags |= KD_NF_EDITED;
	return KD_OK;
nomem:
	rc = KD_ENOMEM;
fail:
	kd_split_free(split);
	return rc;
}

int kd_build_merge(const struct kd_split *split, const uint8_t *resp_body, size_t len,
                   struct kd_arena *a, struct kd_wbuf *out)
{
	struct kd_tree resp, den;
	int rc = kd_tree_decode(&resp, a, split->api_key, split->version, 0, resp_body, len);
	if (rc != KD_OK)
		return rc;
	rc = kd_tree_decode(&den, a, split->api_key, split->version, 0, split->denied.p,
	                    split->denied.len);
	if (rc != KD_OK)
		return rc;
	struct kd_node *rarr = kd_build_topic_array(&resp);
	struct kd_node *darr = kd_build_topic_array(&den);
	if (!rarr || !darr)
		return KD_EUNSUPPORTED;
	uint32_t total = rarr->nkids + darr->nkids;
	struct kd_node *kids = kd_arena_alloc(a, (total ? total : 1) * sizeof(*kids));
	uint8_t *used = kd_arena_alloc(a, rarr->nkids ? rarr->nkids : 1);
	if (!kids || !used)
		return KD_ENOMEM;
	uint32_t n = 0, j = 0;
	for (uint32_t i = 0; i < split->nelems; i++) {
		if (split->err[i]) {
			if (j < darr->nkids)
				kids[n++] = darr->kids[j++];
			continue;
		}
		/* The broker's element for this topic, by name, else by id. */
		for (uint32_t k = 0; k < rarr->nkids; k++) {
			struct kd_view name;
			const uint8_t *id;
			if (used[k])
				continue;
			elem_topic(&rarr->kids[k], &name, &id);
			const struct kd_view *want = &split->names[i];
			int same = want->len ? (name.p && name.len == want->len &&
			                        !memcmp(name.p, want->p, want->len))
			                     : (id && !memcmp(id, split->ids[i], 16));
			if (same) {
				used[k] = 1;
				kids[n++] = rarr->kids[k];
				break;
			}
		}
	}
	for (uint32_t k = 0; k < rarr->nkids; k++) /* anything the broker added */
		if (!used[k])
			kids[n++] = rarr->kids[k];
	rarr->kids = kids;
	rarr->nkids = n;
	rarr->cap = n;
	rarr->flags |= KD_NF_EDITED;
	return kd_tree_encode(&resp, out);
}
