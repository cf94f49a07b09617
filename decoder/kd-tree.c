/* kd-tree.c: see kd-tree.h. The walk is driven by the schema tables only:
 * no per-API code, no string comparisons while decoding or encoding. */
#include "kd-tree.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kd-arena.h"
#include "kd-schema.h"

/* Kafka schemas nest at most ~6 levels; anything deeper is hostile or a
 * broken table. */
#define KD_TREE_MAX_DEPTH 32
#define KD_MINCACHE 32

#define KD_ERR_UNSUPPORTED_VERSION 35 /* ERRORS.tsv */
#define KD_API_VERSIONS 18

struct kd_path_ent {
	const char *name;
	int64_t idx; /* element index, or -1 */
};

struct kd_dctx {
	struct kd_tree *t;
	struct kd_arena *a;
	int16_t v;
	uint8_t flex;
	unsigned depth;
	struct kd_path_ent path[KD_TREE_MAX_DEPTH + 2];
	struct {
		const struct kd_struct *s;
		size_t min;
	} mcache[KD_MINCACHE];
};

static int decode_struct(struct kd_dctx *dc, struct kd_cur *cur, struct kd_node *node);

/* Records the first error with the current field path; returns rc. */
static int fail(struct kd_dctx *dc, const struct kd_cur *cur, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct kd_dctx *dc, const struct kd_cur *cur, int rc, const char *fmt, ...)
{
	struct kd_tree *t = dc->t;
	if (t->status != KD_OK)
		return rc;
	t->status = rc;
	/* cur may be a tagged-field sub-slice: report the offset in the body */
	t->err_off = (size_t)(cur->p + cur->off - t->raw.p);

	size_t n = 0, cap = sizeof(t->err_msg);
	for (unsigned i = 0; i < dc->depth && n < cap; i++) {
		const struct kd_path_ent *pe = &dc->path[i];
		int k;
		if (pe->idx >= 0)
			k = snprintf(t->err_msg + n, cap - n, "%s%s[%lld]", i ? "." : "", pe->name,
			             (long long)pe->idx);
		else
			k = snprintf(t->err_msg + n, cap - n, "%s%s", i ? "." : "", pe->name);
		if (k < 0)
			break;
		n += (size_t)k;
	}
	if (n == 0 && cap > 5) {
		memcpy(t->err_msg, "body", 5);
		n = 4;
	}
	if (n + 2 < cap) {
		t->err_msg[n++] = ':';
		t->err_msg[n++] = ' ';
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(t->err_msg + n, cap - n, fmt, ap);
		va_end(ap);
	} else {
		t->err_msg[cap - 1] = '\0';
	}
	return rc;
}

static int nomem(struct kd_dctx *dc, const struct kd_cur *cur)
{
	if (dc->a->limit)
		return fail(dc, cur, KD_ELIMIT, "tree size over the arena limit (%zu bytes)",
		            dc->a->limit);
	return fail(dc, cur, KD_ENOMEM, "out of memory");
}

static int short_read(struct kd_dctx *dc, const struct kd_cur *cur, int rc, const char *what)
{
	if (rc == KD_ESHORT)
		return fail(dc, cur, rc, "truncated %s (%zu bytes left)", what, kd_cur_left(cur));
	return fail(dc, cur, rc, "malformed %s", what);
}

/* Whether field f's strings/bytes/arrays are compact in this version. */
static inline int field_compact(const struct kd_field *f, int16_t v, int flex)
{
	return f->has_flex ? kd_vers_has(f->flexible, v) : flex;
}

static inline int field_tagged(const struct kd_field *f, int16_t v)
{
	return f->tag >= 0 && kd_vers_has(f->tagged, v);
}

static size_t prim_min(unsigned type, int compact)
{
	switch (type) {
	case KD_T_BOOL:
	case KD_T_INT8:
		return 1;
	case KD_T_INT16:
	case KD_T_UINT16:
		return 2;
	case KD_T_INT32:
	case KD_T_UINT32:
		return 4;
	case KD_T_INT64:
	case KD_T_FLOAT64:
		return 8;
	case KD_T_UUID:
		return 16;
	case KD_T_STRING:
		return compact ? 1 : 2;
	case KD_T_BYTES:
	case KD_T_RECORDS:
	case KD_T_ARRAY:
		return compact ? 1 : 4;
	}
	return 0;
}

/* Smallest encoding of one struct in this version: bounds array counts so
 * a hostile count never drives a long loop. Cached per decode. */
static size_t struct_min(struct kd_dctx *dc, const struct kd_struct *s, unsigned depth)
{
	unsigned h = (unsigned)(((uintptr_t)s >> 4) % KD_MINCACHE);
	if (dc->mcache[h].s == s)
		return dc->mcache[h].min;
	size_t min = dc->flex ? 1 : 0;
	for (unsigned i = 0; i < s->nfields; i++) {
		const struct kd_field *f = &s->fields[i];
		if (!kd_vers_has(f->versions, dc->v) || field_tagged(f, dc->v))
			continue;
		if (f->type == KD_T_STRUCT) {
			if (kd_vers_has(f->nullable, dc->v))
				min += 1;
			else if (f->sub && depth < KD_TREE_MAX_DEPTH)
				min += struct_min(dc, f->sub, depth + 1);
		} else {
			min += prim_min(f->type, field_compact(f, dc->v, dc->flex));
		}
	}
	dc->mcache[h].s = s;
	dc->mcache[h].min = min;
	return min;
}

/* Sets the per-version flags of a node for field f. */
static void node_init(struct kd_node *n, const struct kd_field *f, int16_t v, int flex, int tagged)
{
	n->field = f;
	n->type = f->type;
	n->tag = -1;
	n->flags = 0;
	if (tagged) {
		n->flags |= KD_NF_TAGGED | KD_NF_COMPACT;
		n->tag = f->tag;
	} else if (field_compact(f, v, flex)) {
		n->flags |= KD_NF_COMPACT;
	}
	if (kd_vers_has(f->nullable, v))
		n->flags |= KD_NF_NULLABLE;
	if (f->type == KD_T_STRUCT || (f->type == KD_T_ARRAY && f->elem == KD_T_STRUCT))
		n->sub = f->sub;
	if (f->type == KD_T_STRUCT && flex)
		n->flags |= KD_NF_FLEX;
}

/* One scalar or string-like value of type n->type. */
static int decode_scalar(struct kd_dctx *dc, struct kd_cur *cur, struct kd_node *n)
{
	int rc;
	int compact = (n->flags & KD_NF_COMPACT) != 0;
	int nullable = (n->flags & KD_NF_NULLABLE) && !(n->flags & KD_NF_ELEM);
	uint64_t u;

	switch (n->type) {
	case KD_T_BOOL:
	case KD_T_INT8:
		rc = kd_cur_be(cur, 1, &u);
		if (rc == KD_OK)
			n->val.i = n->type == KD_T_BOOL ? (int64_t)u : (int8_t)(uint8_t)u;
		break;
	case KD_T_INT16:
		rc = kd_cur_be(cur, 2, &u);
		if (rc == KD_OK)
			n->val.i = (int16_t)(uint16_t)u;
		break;
	case KD_T_UINT16:
		rc = kd_cur_be(cur, 2, &u);
		if (rc == KD_OK)
			n->val.i = (int64_t)u;
		break;
	case KD_T_INT32:
		rc = kd_cur_be(cur, 4, &u);
		if (rc == KD_OK)
			n->val.i = (int32_t)(uint32_t)u;
		break;
	case KD_T_UINT32:
		rc = kd_cur_be(cur, 4, &u);
		if (rc == KD_OK)
			n->val.i = (int64_t)u;
		break;
	case KD_T_INT64:
		rc = kd_cur_i64(cur, &n->val.i);
		break;
	case KD_T_FLOAT64:
		rc = kd_cur_f64(cur, &n->val.d);
		break;
	case KD_T_UUID:
		rc = kd_cur_uuid(cur, n->val.uuid);
		break;
	case KD_T_STRING:
	case KD_T_BYTES:
	case KD_T_RECORDS: {
		unsigned width = n->type == KD_T_STRING ? 2 : 4;
		size_t off = cur->off;
		int32_t len;
		rc = kd_cur_len(cur, compact, width, &len);
		if (rc != KD_OK)
			return short_read(dc, cur, rc, "length");
		if (len < 0) {
			if (!nullable) {
				cur->off = off;
				return fail(dc, cur, KD_EMALFORMED, "null in a non-nullable field");
			}
			n->null = 1;
			n->val.v.null = 1;
			return KD_OK;
		}
		if ((size_t)len > kd_cur_left(cur)) {
			cur->off = off;
			return fail(dc, cur, KD_ESHORT, "length %d exceeds bytes left (%zu)",
			            (int)len, kd_cur_left(cur) - (size_t)(cur->off - off));
		}
		n->val.v.p = kd_cur_pos(cur);
		n->val.v.len = (uint32_t)len;
		cur->off += (size_t)len;
		return KD_OK;
	}
	default:
		return fail(dc, cur, KD_EMALFORMED, "unknown wire type %u in the schema", n->type);
	}
	if (rc != KD_OK)
		return short_read(dc, cur, rc, "value");
	return KD_OK;
}

static int decode_array(struct kd_dctx *dc, struct kd_cur *cur, struct kd_node *n)
{
	const struct kd_field *f = n->field;
	int compact = (n->flags & KD_NF_COMPACT) != 0;
	size_t off = cur->off;
	int32_t count;
	int rc = kd_cur_len(cur, compact, 4, &count);
	if (rc != KD_OK)
		return short_read(dc, cur, rc, "array count");
	if (count < 0) {
		if (!(n->flags & KD_NF_NULLABLE)) {
			cur->off = off;
			return fail(dc, cur, KD_EMALFORMED, "null array in a non-nullable field");
		}
		n->null = 1;
		return KD_OK;
	}
	if (count == 0)
		return KD_OK;

	size_t min = f->elem == KD_T_STRUCT ? (f->sub ? struct_min(dc, f->sub, dc->depth) : 0)
	                                    : prim_min(f->elem, compact);
	if (min == 0)
		min = 1; /* a zero-byte element is meaningless; bound the count anyway */
	if ((size_t)count > kd_cur_left(cur) / min) {
		size_t left = kd_cur_left(cur);
		cur->off = off;
		return fail(dc, cur, KD_EMALFORMED, "array count %d exceeds bytes left (%zu)",
		            (int)count, left);
	}
	struct kd_node *kids = kd_arena_alloc(dc->a, (size_t)count * sizeof(*kids));
	if (!kids)
		return nomem(dc, cur);
	n->kids = kids;
	n->nkids = (uint32_t)count;
	n->cap = (uint32_t)count;

	struct kd_path_ent *pe = &dc->path[dc->depth - 1];
	uint8_t eflags = (uint8_t)((n->flags & KD_NF_COMPACT) | KD_NF_ELEM);
	for (int32_t i = 0; i < count; i++) {
		struct kd_node *e = &kids[i];
		pe->idx = i;
		e->field = f;
		e->type = f->elem;
		e->tag = -1;
		e->flags = eflags;
		if (f->elem == KD_T_STRUCT) {
			e->sub = f->sub;
			if (dc->flex)
				e->flags |= KD_NF_FLEX;
			rc = decode_struct(dc, cur, e);
		} else {
			rc = decode_scalar(dc, cur, e);
		}
		if (rc != KD_OK)
			return rc;
	}
	pe->idx = -1;
	return KD_OK;
}

/* The value of one field (n initialised by node_init). */
static int decode_value(struct kd_dctx *dc, struct kd_cur *cur, struct kd_node *n)
{
	if (dc->depth >= KD_TREE_MAX_DEPTH)
		return fail(dc, cur, KD_ELIMIT, "nesting deeper than %d", KD_TREE_MAX_DEPTH);
	dc->path[dc->depth].name = n->field->name;
	dc->path[dc->depth].idx = -1;
	dc->depth++;

	int rc;
	if (n->type == KD_T_ARRAY) {
		rc = decode_array(dc, cur, n);
	} else if (n->type == KD_T_STRUCT) {
		rc = KD_OK;
		n->val.u = 1;
		if (n->flags & KD_NF_NULLABLE) {
			/* WIRE-NOTES 5: INT8 marker, -1 null, 1 present (Java treats any
			 * negative as null); the raw byte is kept for re-encoding. */
			uint64_t m;
			rc = kd_cur_be(cur, 1, &m);
			if (rc != KD_OK)
				rc = short_read(dc, cur, rc, "nullable struct marker");
			else
				n->val.u = m;
		}
		if (rc == KD_OK) {
			if ((int8_t)(uint8_t)n->val.u < 0)
				n->null = 1;
			else
				rc = decode_struct(dc, cur, n);
		}
	} else {
		rc = decode_scalar(dc, cur, n);
	}
	if (rc == KD_OK)
		dc->depth--;
	return rc;
}

static int decode_tags(struct kd_dctx *dc, struct kd_cur *cur, struct kd_node *node, uint32_t nreg)
{
	const struct kd_struct *s = node->sub;
	uint32_t ntags;
	int rc = kd_cur_uvarint(cur, &ntags);
	if (rc != KD_OK)
		return short_read(dc, cur, rc, "tagged-field count");
	if (ntags == 0)
		return KD_OK;
	if (ntags > kd_cur_left(cur) / 2)
		return fail(dc, cur, KD_EMALFORMED,
		            "tagged-field count %u exceeds bytes left (%zu)", ntags,
		            kd_cur_left(cur));

	/* regular fields first, then the tagged section in wire order */
	struct kd_node *kids = kd_arena_alloc(dc->a, (size_t)(nreg + ntags) * sizeof(*kids));
	if (!kids)
		return nomem(dc, cur);
	if (nreg)
		memcpy(kids, node->kids, nreg * sizeof(*kids));
	node->kids = kids;
	node->cap = nreg + ntags;

	for (uint32_t i = 0; i < ntags; i++) {
		uint32_t tag, size;
		rc = kd_cur_uvarint(cur, &tag);
		if (rc != KD_OK)
			return short_read(dc, cur, rc, "tag number");
		rc = kd_cur_uvarint(cur, &size);
		if (rc != KD_OK)
			return short_read(dc, cur, rc, "tagged-field size");
		if (size > kd_cur_left(cur))
			return fail(dc, cur, KD_ESHORT, "tag %u size %u exceeds bytes left (%zu)",
			            tag, size, kd_cur_left(cur));
		struct kd_node *n = &kids[nreg + i];
		const struct kd_field *f = NULL;
		if (s && tag <= INT32_MAX) {
			for (unsigned k = 0; k < s->nfields; k++) {
				const struct kd_field *cand = &s->fields[k];
				if (cand->tag == (int32_t)tag &&
				    kd_vers_has(cand->versions, dc->v) &&
				    field_tagged(cand, dc->v)) {
					f = cand;
					break;
				}
			}
		}
		node->nkids = nreg + i + 1;
		if (!f) {
			/* unknown tag: kept raw so it re-encodes as it came */
			n->type = KD_T_NONE;
			n->flags = KD_NF_TAGGED;
			n->tag = (int32_t)tag;
			n->val.v.p = kd_cur_pos(cur);
			n->val.v.len = size;
			cur->off += size;
			continue;
		}
		struct kd_cur sub;
		kd_cur_init(&sub, kd_cur_pos(cur), size);
		node_init(n, f, dc->v, dc->flex, 1);
		rc = decode_value(dc, &sub, n);
		if (rc != KD_OK)
			return rc;
		if (kd_cur_left(&sub) != 0)
			return fail(dc, &sub, KD_EMALFORMED,
			            "tagged field %s (tag %u): %zu bytes left over", f->name, tag,
			            kd_cur_left(&sub));
		cur->off += size;
	}
	return KD_OK;
}

static int decode_struct(struct kd_dctx *dc, struct kd_cur *cur, struct kd_node *node)
{
	const struct kd_struct *s = node->sub;
	uint32_t nreg = 0;
	int rc;

	node->tag = node->flags & KD_NF_TAGGED ? node->tag : -1;
	if (s) {
		for (unsigned i = 0; i < s->nfields; i++) {
			const struct kd_field *f = &s->fields[i];
			if (kd_vers_has(f->versions, dc->v) && !field_tagged(f, dc->v))
				nreg++;
		}
	}
	if (nreg) {
		node->kids = kd_arena_alloc(dc->a, nreg * sizeof(*node->kids));
		if (!node->kids)
			return nomem(dc, cur);
		node->cap = nreg;
		uint32_t k = 0;
		for (unsigned i = 0; i < s->nfields; i++) {
			const struct kd_field *f = &s->fields[i];
			if (!kd_vers_has(f->versions, dc->v) || field_tagged(f, dc->v))
				continue;
			struct kd_node *n = &node->kids[k++];
			node->nkids = k;
			node_init(n, f, dc->v, dc->flex, 0);
			rc = decode_value(dc, cur, n);
			if (rc != KD_OK)
				return rc;
		}
	}
	if (dc->flex)
		return decode_tags(dc, cur, node, nreg);
	return KD_OK;
}

static int decode_with(struct kd_tree *t, struct kd_arena *a, const struct kd_msgdef *def,
                       int16_t version)
{
	struct kd_dctx *dc = kd_arena_alloc(a, sizeof(*dc));
	struct kd_cur cur;
	struct kd_node *root;

	t->def = def;
	t->version = version;
	t->flexible = (uint8_t)kd_vers_has(def->flexible, version);
	t->status = KD_OK;
	t->err_msg[0] = '\0';
	t->err_off = 0;
	kd_cur_init(&cur, t->raw.p, t->raw.len);

	/* the context is scratch: on the stack it would be ~1 KiB, fine too, but
	 * the arena keeps decode re-entrant without a large frame */
	if (!dc)
		goto nomem;
	dc->t = t;
	dc->a = a;
	dc->v = version;
	dc->flex = t->flexible;
	root = kd_arena_alloc(a, sizeof(*root));
	if (!root)
		goto nomem;
	root->type = KD_T_STRUCT;
	root->sub = def->body;
	root->tag = -1;
	root->val.u = 1;
	if (t->flexible)
		root->flags |= KD_NF_FLEX;
	if (decode_struct(dc, &cur, root) != KD_OK)
		return t->status;
	if (kd_cur_left(&cur))
		return fail(dc, &cur, KD_EMALFORMED, "%zu trailing bytes after the body",
		            kd_cur_left(&cur));
	t->root = root;
	return KD_OK;
nomem:
	t->status = a->limit ? KD_ELIMIT : KD_ENOMEM;
	snprintf(t->err_msg, sizeof(t->err_msg), "body: tree size over the arena limit");
	return t->status;
}

static void tree_reset(struct kd_tree *t, struct kd_arena *a, int16_t api_key, int16_t version,
                       int is_request, const uint8_t *body, size_t len)
{
	memset(t, 0, sizeof(*t));
	t->arena = a;
	t->api_key = api_key;
	t->version = version;
	t->asked_version = version;
	t->is_request = (uint8_t)(is_request != 0);
	t->raw.p = body;
	t->raw.len = (uint32_t)len;
}

int kd_tree_decode(struct kd_tree *t, struct kd_arena *a, int16_t api_key, int16_t version,
                   int is_request, const uint8_t *body, size_t len)
{
	tree_reset(t, a, api_key, version, is_request, body, len);
	if (len > UINT32_MAX) {
		t->status = KD_ELIMIT;
		snprintf(t->err_msg, sizeof(t->err_msg), "body: %zu bytes is too large", len);
		return t->status;
	}
	const struct kd_msgdef *def = kd_msgdef_get(api_key, version, is_request);
	if (!def) {
		t->status = KD_EUNSUPPORTED;
		if (!kd_api_get(api_key))
			snprintf(t->err_msg, sizeof(t->err_msg), "unknown api key %d", api_key);
		else
			snprintf(t->err_msg, sizeof(t->err_msg), "%s %s v%d is not in the spec",
			         kd_api_name(api_key), is_request ? "request" : "response",
			         version);
		return t->status;
	}

	/* WIRE-NOTES 2 / ApiVersionsResponse.java parse(): a broker that does not
	 * know the requested version answers with a v0 body holding
	 * UNSUPPORTED_VERSION. Try v0 first; fall back to the real version. */
	if (api_key == KD_API_VERSIONS && !is_request && version > 0 && len >= 2 &&
	    (int16_t)kd_load_be(body, 2) == KD_ERR_UNSUPPORTED_VERSION) {
		const struct kd_msgdef *v0 = kd_msgdef_get(api_key, 0, 0);
		if (v0 && decode_with(t, a, v0, 0) == KD_OK) {
			t->v0_fallback = 1;
			return KD_OK;
		}
	}
	return decode_with(t, a, def, version);
}

int kd_tree_decode_def(struct kd_tree *t, struct kd_arena *a, const struct kd_msgdef *def,
                       int16_t version, const uint8_t *body, size_t len)
{
	tree_reset(t, a, -1, version, 0, body, len);
	if (len > UINT32_MAX || !def || !kd_vers_has(def->valid, version)) {
		t->status = KD_EUNSUPPORTED;
		snprintf(t->err_msg, sizeof(t->err_msg), "%s v%d is not in the spec",
		         def ? def->name : "(none)", version);
		return t->status;
	}
	return decode_with(t, a, def, version);
}

/* ---- encoding ---- */

static void encode_struct(struct kd_wbuf *w, const struct kd_node *node);

static void encode_value(struct kd_wbuf *w, const struct kd_node *n)
{
	int compact = (n->flags & KD_NF_COMPACT) != 0;

	switch (n->type) {
	case KD_T_BOOL:
	case KD_T_INT8:
		kd_w_be(w, 1, (uint64_t)n->val.i);
		break;
	case KD_T_INT16:
	case KD_T_UINT16:
		kd_w_be(w, 2, (uint64_t)n->val.i);
		break;
	case KD_T_INT32:
	case KD_T_UINT32:
		kd_w_be(w, 4, (uint64_t)n->val.i);
		break;
	case KD_T_INT64:
		kd_w_i64(w, n->val.i);
		break;
	case KD_T_FLOAT64:
		kd_w_be(w, 8, n->val.u);
		break; /* raw bits: NaN payloads kept */
	case KD_T_UUID:
		kd_w_raw(w, n->val.uuid, 16);
		break;
	case KD_T_STRING:
	case KD_T_BYTES:
	case KD_T_RECORDS: {
		struct kd_view v = n->val.v;
		v.null = n->null;
		kd_w_blob(w, compact, n->type == KD_T_STRING ? 2 : 4, &v);
		break;
	}
	case KD_T_ARRAY:
		if (n->null) {
			kd_w_len(w, compact, 4, -1);
			break;
		}
		kd_w_len(w, compact, 4, (int32_t)n->nkids);
		for (uint32_t i = 0; i < n->nkids; i++)
			encode_value(w, &n->kids[i]);
		break;
	case KD_T_STRUCT:
		if ((n->flags & KD_NF_NULLABLE) && !(n->flags & KD_NF_ELEM)) {
			int8_t m = (int8_t)(uint8_t)n->val.u;
			if (n->null && m >= 0)
				m = -1;
			else if (!n->null && m < 0)
				m = 1;
			kd_w_i8(w, m);
		}
		if (!n->null)
			encode_struct(w, n);
		break;
	default:
		break;
	}
}

static void encode_struct(struct kd_wbuf *w, const struct kd_node *node)
{
	uint32_t ntags = 0;
	for (uint32_t i = 0; i < node->nkids; i++) {
		const struct kd_node *n = &node->kids[i];
		if (n->flags & KD_NF_TAGGED)
			ntags++;
		else
			encode_value(w, n);
	}
	if (!(node->flags & KD_NF_FLEX))
		return;
	kd_w_uvarint(w, ntags);
	for (uint32_t i = 0; i < node->nkids && ntags; i++) {
		const struct kd_node *n = &node->kids[i];
		if (!(n->flags & KD_NF_TAGGED))
			continue;
		kd_w_uvarint(w, (uint32_t)n->tag);
		/* The payload size precedes the payload: write the payload, then
		 * move it up by the size varint's length. Tagged fields are small
		 * and rarely nested, so the move is cheap. */
		size_t start = w->len;
		if (n->type == KD_T_NONE)
			kd_w_raw(w, n->val.v.p, n->val.v.len);
		else
			encode_value(w, n);
		if (w->err)
			return;
		size_t plen = w->len - start;
		uint8_t tmp[10];
		unsigned vl = 0;
		uint64_t x = plen;
		do {
			tmp[vl++] = (uint8_t)((x & 0x7f) | (x >= 0x80 ? 0x80 : 0));
			x >>= 7;
		} while (x);
		if (!kd_wbuf_reserve(w, vl))
			return;
		memmove(w->p + start + vl, w->p + start, plen);
		memcpy(w->p + start, tmp, vl);
		w->len += vl;
	}
}

int kd_tree_encode(const struct kd_tree *t, struct kd_wbuf *w)
{
	if (!t->root) {
		if (t->status != KD_EUNSUPPORTED)
			return KD_EMALFORMED;
		kd_w_raw(w, t->raw.p, t->raw.len);
		return w->err ? w->err : KD_OK;
	}
	encode_struct(w, t->root);
	return w->err ? w->err : KD_OK;
}

size_t kd_tree_encoded_size(const struct kd_tree *t)
{
	struct kd_wbuf w = {0};
	size_t n = 0;
	if (kd_tree_encode(t, &w) == KD_OK)
		n = w.len;
	kd_wbuf_free(&w);
	return n;
}

/* ---- navigation ---- */

struct kd_node *kd_node_child(const struct kd_node *n, const char *name)
{
	if (!n || n->type != KD_T_STRUCT)
		return NULL;
	for (uint32_t i = 0; i < n->nkids; i++) {
		const struct kd_field *f = n->kids[i].field;
		if (f && strcmp(f->name, name) == 0)
			return &n->kids[i];
	}
	return NULL;
}

static int walk(struct kd_node *n, struct kd_walk_ctx *wc, kd_walk_fn fn, void *arg, int ent)
{
	int rc = 0;
	if (ent < 0 || (n->field && n->field->entity == ent && n->type != KD_T_ARRAY))
		rc = fn(arg, n, wc);
	if (rc == KD_WALK_SKIP || n->type == KD_T_NONE)
		return 0;
	if (rc)
		return rc;
	struct kd_walk_ctx sub = {n, wc->depth + 1, 0};
	for (uint32_t i = 0; i < n->nkids; i++) {
		sub.index = i;
		rc = walk(&n->kids[i], &sub, fn, arg, ent);
		if (rc)
			return rc;
	}
	return 0;
}

int kd_node_walk(struct kd_node *n, kd_walk_fn fn, void *arg)
{
	struct kd_walk_ctx wc = {NULL, 0, 0};
	return n ? walk(n, &wc, fn, arg, -1) : 0;
}

int kd_tree_walk(const struct kd_tree *t, kd_walk_fn fn, void *arg)
{
	return kd_node_walk(t->root, fn, arg);
}

int kd_tree_walk_entity(const struct kd_tree *t, int ent, kd_walk_fn fn, void *arg)
{
	struct kd_walk_ctx wc = {NULL, 0, 0};
	return t->root ? walk(t->root, &wc, fn, arg, ent) : 0;
}

/* ---- edits ---- */

int kd_node_set_int(struct kd_node *n, int64_t v)
{
	int64_t lo, hi;
	switch (n->type) {
	case KD_T_BOOL:
		n->val.u = v != 0;
		n->flags |= KD_NF_EDITED;
		return KD_OK;
	case KD_T_INT8:
		lo = INT8_MIN;
		hi = INT8_MAX;
		break;
	case KD_T_INT16:
		lo = INT16_MIN;
		hi = INT16_MAX;
		break;
	case KD_T_UINT16:
		lo = 0;
		hi = UINT16_MAX;
		break;
	case KD_T_INT32:
		lo = INT32_MIN;
		hi = INT32_MAX;
		break;
	case KD_T_UINT32:
		lo = 0;
		hi = UINT32_MAX;
		break;
	case KD_T_INT64:
		lo = INT64_MIN;
		hi = INT64_MAX;
		break;
	default:
		return KD_EMALFORMED;
	}
	if (v < lo || v > hi)
		return KD_EMALFORMED;
	n->val.i = v;
	n->flags |= KD_NF_EDITED;
	return KD_OK;
}

int kd_node_set_str(struct kd_tree *t, struct kd_node *n, const void *p, size_t len)
{
	if (n->type != KD_T_STRING && n->type != KD_T_BYTES && n->type != KD_T_RECORDS)
		return KD_EMALFORMED;
	if (len > (size_t)INT32_MAX - 1 ||
	    (n->type == KD_T_STRING && !(n->flags & KD_NF_COMPACT) && len > INT16_MAX))
		return KD_EMALFORMED;
	uint8_t *d = kd_arena_dup(t->arena, p, len);
	if (!d)
		return KD_ENOMEM;
	n->val.v.p = d;
	n->val.v.len = (uint32_t)len;
	n->val.v.null = 0;
	n->null = 0;
	n->flags |= KD_NF_EDITED;
	return KD_OK;
}

int kd_node_set_null(struct kd_node *n)
{
	if (!(n->flags & KD_NF_NULLABLE) || (n->flags & KD_NF_ELEM))
		return KD_EMALFORMED;
	switch (n->type) {
	case KD_T_STRING:
	case KD_T_BYTES:
	case KD_T_RECORDS:
		n->val.v.p = NULL;
		n->val.v.len = 0;
		n->val.v.null = 1;
		break;
	case KD_T_ARRAY:
		n->nkids = 0;
		break;
	case KD_T_STRUCT:
		n->val.u = 0xff;
		n->nkids = 0;
		break;
	default:
		return KD_EMALFORMED;
	}
	n->null = 1;
	n->flags |= KD_NF_EDITED;
	return KD_OK;
}

int kd_node_set_uuid(struct kd_node *n, const uint8_t uuid[16])
{
	if (n->type != KD_T_UUID)
		return KD_EMALFORMED;
	memcpy(n->val.uuid, uuid, 16);
	n->flags |= KD_NF_EDITED;
	return KD_OK;
}

int kd_node_set_f64(struct kd_node *n, double d)
{
	if (n->type != KD_T_FLOAT64)
		return KD_EMALFORMED;
	n->val.d = d;
	n->flags |= KD_NF_EDITED;
	return KD_OK;
}

/* Deep copy of src into dst (kids arrays copied, views shared). */
static int node_copy(struct kd_arena *a, struct kd_node *dst, const struct kd_node *src,
                     unsigned depth)
{
	*dst = *src;
	dst->kids = NULL;
	dst->cap = 0;
	if (!src->nkids)
		return KD_OK;
	if (depth > KD_TREE_MAX_DEPTH)
		return KD_ELIMIT;
	dst->kids = kd_arena_alloc(a, src->nkids * sizeof(*dst->kids));
	if (!dst->kids)
		return KD_ENOMEM;
	dst->cap = src->nkids;
	for (uint32_t i = 0; i < src->nkids; i++) {
		int rc = node_copy(a, &dst->kids[i], &src->kids[i], depth + 1);
		if (rc != KD_OK)
			return rc;
	}
	return KD_OK;
}

/* A default struct body: every regular field present in the version with a
 * zero / empty / non-null value; no tagged fields. */
static int node_default_struct(const struct kd_tree *t, struct kd_node *n, unsigned depth)
{
	const struct kd_struct *s = n->sub;
	uint32_t nreg = 0;
	if (!s)
		return KD_OK;
	if (depth > KD_TREE_MAX_DEPTH)
		return KD_ELIMIT;
	for (unsigned i = 0; i < s->nfields; i++)
		if (kd_vers_has(s->fields[i].versions, t->version) &&
		    !field_tagged(&s->fields[i], t->version))
			nreg++;
	if (!nreg)
		return KD_OK;
	n->kids = kd_arena_alloc(t->arena, nreg * sizeof(*n->kids));
	if (!n->kids)
		return KD_ENOMEM;
	n->cap = nreg;
	for (unsigned i = 0; i < s->nfields; i++) {
		const struct kd_field *f = &s->fields[i];
		if (!kd_vers_has(f->versions, t->version) || field_tagged(f, t->version))
			continue;
		struct kd_node *k = &n->kids[n->nkids++];
		node_init(k, f, t->version, t->flexible, 0);
		if (k->type == KD_T_STRUCT) {
			k->val.u = 1;
			int rc = node_default_struct(t, k, depth + 1);
			if (rc != KD_OK)
				return rc;
		}
	}
	return KD_OK;
}

struct kd_node *kd_node_array_add(struct kd_tree *t, struct kd_node *arr, uint32_t proto)
{
	if (arr->type != KD_T_ARRAY || (proto != UINT32_MAX && proto >= arr->nkids) ||
	    arr->nkids == UINT32_MAX)
		return NULL;
	if (arr->nkids == arr->cap) {
		uint32_t ncap = arr->cap < 4 ? 4 : arr->cap * 2;
		if (ncap < arr->cap)
			return NULL;
		struct kd_node *kids = kd_arena_alloc(t->arena, (size_t)ncap * sizeof(*kids));
		if (!kids)
			return NULL;
		if (arr->nkids)
			memcpy(kids, arr->kids, arr->nkids * sizeof(*kids));
		arr->kids = kids;
		arr->cap = ncap;
	}
	struct kd_node *e = &arr->kids[arr->nkids];
	memset(e, 0, sizeof(*e));
	if (proto != UINT32_MAX) {
		if (node_copy(t->arena, e, &arr->kids[proto], 0) != KD_OK)
			return NULL;
	} else {
		e->field = arr->field;
		e->type = arr->field->elem;
		e->tag = -1;
		e->flags = (uint8_t)((arr->flags & KD_NF_COMPACT) | KD_NF_ELEM);
		if (e->type == KD_T_STRUCT) {
			e->sub = arr->field->sub;
			e->val.u = 1;
			if (t->flexible)
				e->flags |= KD_NF_FLEX;
			if (node_default_struct(t, e, 0) != KD_OK)
				return NULL;
		}
	}
	arr->nkids++;
	arr->null = 0;
	arr->flags |= KD_NF_EDITED;
	return e;
}

int kd_node_array_remove(struct kd_node *arr, uint32_t i)
{
	if (arr->type != KD_T_ARRAY || i >= arr->nkids)
		return KD_EMALFORMED;
	memmove(&arr->kids[i], &arr->kids[i + 1], (arr->nkids - i - 1) * sizeof(*arr->kids));
	arr->nkids--;
	arr->flags |= KD_NF_EDITED;
	return KD_OK;
}
