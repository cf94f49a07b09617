/* kd-tree.c: see kd-tree.h. The walk is driven by the schema tables only:
 * no per-API code, no string comparisons while decoding or encoding. */
#include "kd-tree.h"

#include <assert.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd-api-keys-gen.h"
#include "kd-arena.h"
#include "kd-schema.h"

/* Kafka schemas nest at most ~6 levels; anything deeper is hostile or a
 * broken table. */
#define KD_TREE_MAX_DEPTH 32

#define KD_ERR_UNSUPPORTED_VERSION 35 /* ERRORS.tsv */

/* ---- layouts ----
 *
 * What a struct looks like on the wire depends only on the constant schema
 * tables, the version and whether the version is flexible: which fields are
 * present, which travel tagged, their node flags, the smallest encoding of
 * an array element. A layout holds that answer for one (struct, version, flex):
 * a ready node per present field (copied into the tree as is, so a node
 * needs no per-field setup) and, per array field, a ready element node and
 * the element's minimum size.
 *
 *   struct kd_layout | tmpl[0..nreg) regular fields, schema order
 *                    |     [nreg..nreg+ntag) tagged fields, schema order
 *                    | ent[same indexes]  sub-layout, element template
 *
 * Layouts are built at first use and published in a global open-addressing
 * table of pointers with a compare-and-swap: lock-free for readers (one
 * acquire load and a compare per probe), and a layout, once published, is
 * immutable and never freed (a few hundred bytes per (struct, version) in
 * use; the schema bounds their number). Lazily, not all at start-up: the
 * whole spec is ~0.75 MB of layouts that a short `kwire decode` of one API
 * would build for nothing; and not under a lock, so proxy workers never
 * wait on each other once the layouts they use exist. Two threads that build the same
 * layout at once both finish, one wins the slot and the other frees its
 * copy. A layout that cannot be published (table crowded, malloc failing)
 * is built in the decode's arena instead: slower, same answer. */

struct kd_layout;

struct kd_lay_ent {
	const struct kd_layout *sub; /* KD_T_STRUCT, or array of structs */
	size_t elem_min;             /* KD_T_ARRAY: smallest element, >= 1 */
	uint32_t run;                /* regular fixed-size fields from here on, */
	uint32_t run_bytes;          /* and their bytes: one bounds check for all */
	struct kd_node elem;         /* KD_T_ARRAY: a ready element node */
};

struct kd_layout {
	const struct kd_struct *s;
	int16_t v;
	uint8_t flex;
	uint32_t nreg; /* regular fields present in v */
	uint32_t ntag; /* tagged fields known in v */
	const struct kd_node *tmpl;
	const struct kd_lay_ent *ent;
};

#define LAY_SLOTS 8192u /* power of two; the spec has 1645 (struct, version) pairs */
#define LAY_PROBES 64u

static _Atomic(const struct kd_layout *) lay_tab[LAY_SLOTS];

/* A struct with no schema (sub NULL): no fields, tagged section only. */
static const struct kd_layout lay_empty[2] = {
    {NULL, 0, 0, 0, 0, NULL, NULL},
    {NULL, 0, 1, 0, 0, NULL, NULL},
};

/* Smallest encoding of a value of this type: its width, or its length
 * prefix for the variable-size ones. */
static size_t prim_min(unsigned type, int compact)
{
	switch (type) {
	case KD_T_STRING:
		return compact ? 1 : 2;
	case KD_T_BYTES:
	case KD_T_RECORDS:
	case KD_T_ARRAY:
		return compact ? 1 : 4;
	}
	return kd_type_width(type);
}

/* Smallest encoding of one struct in this version: bounds array counts so
 * a hostile count never drives a long loop. Only run when a layout is
 * built. */
static size_t struct_min(const struct kd_struct *s, int16_t v, int flex, unsigned depth)
{
	size_t min = flex ? 1 : 0;
	for (unsigned i = 0; i < s->nfields; i++) {
		const struct kd_field *f = &s->fields[i];
		if (!kd_vers_has(f->versions, v) || kd_field_tagged(f, v))
			continue;
		if (f->type == KD_T_STRUCT) {
			if (kd_vers_has(f->nullable, v))
				min += 1;
			else if (f->sub && depth < KD_TREE_MAX_DEPTH)
				min += struct_min(f->sub, v, flex, depth + 1);
		} else {
			min += prim_min(f->type, kd_field_compact(f, v, flex));
		}
	}
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
	} else if (kd_field_compact(f, v, flex)) {
		n->flags |= KD_NF_COMPACT;
	}
	if (kd_vers_has(f->nullable, v))
		n->flags |= KD_NF_NULLABLE;
	if (f->type == KD_T_STRUCT || (f->type == KD_T_ARRAY && f->elem == KD_T_STRUCT))
		n->sub = f->sub;
	if (f->type == KD_T_STRUCT && flex)
		n->flags |= KD_NF_FLEX;
}

static const struct kd_layout *layout_get(const struct kd_struct *s, int16_t v, int flex,
                                          unsigned depth, struct kd_arena *a);

/* Fills entry k of a layout being built for field f. Returns 0, or -1 when a
 * sub-layout could not be had. */
static int layout_entry(struct kd_node *tmpl, struct kd_lay_ent *ent, const struct kd_field *f,
                        int16_t v, int flex, int tagged, unsigned depth, struct kd_arena *a)
{
	memset(tmpl, 0, sizeof(*tmpl));
	memset(ent, 0, sizeof(*ent));
	node_init(tmpl, f, v, flex, tagged);
	int compact = (tmpl->flags & KD_NF_COMPACT) != 0;
	if (f->type == KD_T_STRUCT) {
		tmpl->val.u = 1; /* present; a nullable struct reads its marker over it */
		ent->sub = layout_get(f->sub, v, flex, depth + 1, a);
		if (!ent->sub)
			return -1;
	} else if (f->type == KD_T_ARRAY) {
		struct kd_node *e = &ent->elem;
		e->field = f;
		e->type = f->elem;
		e->tag = -1;
		e->flags = (uint8_t)((tmpl->flags & KD_NF_COMPACT) | KD_NF_ELEM);
		if (f->elem == KD_T_STRUCT) {
			e->sub = f->sub;
			if (flex)
				e->flags |= KD_NF_FLEX;
			ent->sub = layout_get(f->sub, v, flex, depth + 1, a);
			if (!ent->sub)
				return -1;
			ent->elem_min = f->sub ? struct_min(f->sub, v, flex, depth + 1) : 0;
		} else {
			ent->elem_min = prim_min(f->elem, compact);
		}
		/* a zero-byte element is meaningless; bound the count anyway */
		if (ent->elem_min == 0)
			ent->elem_min = 1;
	}
	return 0;
}

/* Builds the layout of (s, v, flex) in one pass over the fields, in a
 * malloc'd block (a == NULL) or in arena a. NULL on failure. */
static struct kd_layout *layout_build(const struct kd_struct *s, int16_t v, int flex,
                                      unsigned depth, struct kd_arena *a)
{
	uint32_t nreg = 0, ntag = 0;
	for (unsigned i = 0; i < s->nfields; i++) {
		const struct kd_field *f = &s->fields[i];
		if (!kd_vers_has(f->versions, v))
			continue;
		if (kd_field_tagged(f, v))
			ntag++;
		else
			nreg++;
	}
	size_t n = (size_t)nreg + ntag;
	size_t size =
	    sizeof(struct kd_layout) + n * (sizeof(struct kd_node) + sizeof(struct kd_lay_ent));
	struct kd_layout *lay = a ? kd_arena_alloc(a, size) : calloc(1, size);
	if (!lay)
		return NULL;
	struct kd_node *tmpl = (struct kd_node *)(lay + 1);
	struct kd_lay_ent *ent = (struct kd_lay_ent *)(tmpl + n);
	lay->s = s;
	lay->v = v;
	lay->flex = (uint8_t)flex;
	lay->nreg = nreg;
	lay->ntag = ntag;
	lay->tmpl = tmpl;
	lay->ent = ent;
	uint32_t r = 0, g = nreg;
	for (unsigned i = 0; i < s->nfields; i++) {
		const struct kd_field *f = &s->fields[i];
		if (!kd_vers_has(f->versions, v))
			continue;
		int tagged = kd_field_tagged(f, v);
		uint32_t k = tagged ? g++ : r++;
		if (layout_entry(&tmpl[k], &ent[k], f, v, flex, tagged, depth, a) != 0) {
			if (!a)
				free(lay);
			return NULL;
		}
	}
	for (uint32_t k = nreg; k-- > 0;) {
		unsigned w = kd_type_width(tmpl[k].type);
		if (w) {
			ent[k].run = 1 + (k + 1 < nreg ? ent[k + 1].run : 0);
			ent[k].run_bytes = w + (k + 1 < nreg ? ent[k + 1].run_bytes : 0);
		}
	}
	return lay;
}

static inline size_t lay_hash(const struct kd_struct *s, int16_t v, int flex)
{
	uint64_t x = (uint64_t)(uintptr_t)s ^ ((uint64_t)(uint16_t)v << 1 | (uint64_t)(flex != 0));
	x *= 0x9e3779b97f4a7c15ull;
	return (size_t)(x >> 40);
}

/* The layout of (s, v, flex): published, or built in arena a when it cannot
 * be published. NULL when memory runs out or the schema nests deeper than
 * KD_TREE_MAX_DEPTH (no Kafka schema does: structs are defined inline). */
static const struct kd_layout *layout_get(const struct kd_struct *s, int16_t v, int flex,
                                          unsigned depth, struct kd_arena *a)
{
	if (!s)
		return &lay_empty[flex != 0];
	if (depth > KD_TREE_MAX_DEPTH)
		return NULL;
	size_t h = lay_hash(s, v, flex);
	struct kd_layout *mine = NULL;
	for (unsigned i = 0; i < LAY_PROBES; i++) {
		_Atomic(const struct kd_layout *) *slot = &lay_tab[(h + i) & (LAY_SLOTS - 1)];
		const struct kd_layout *l = atomic_load_explicit(slot, memory_order_acquire);
		if (!l) {
			if (!mine) {
				mine = layout_build(s, v, flex, depth, NULL);
				if (!mine)
					break;
			}
			const struct kd_layout *expect = NULL;
			if (atomic_compare_exchange_strong_explicit(
			        slot, &expect, mine, memory_order_acq_rel, memory_order_acquire))
				return mine;
			l = expect; /* another thread filled the slot first */
		}
		if (l->s == s && l->v == v && l->flex == (uint8_t)(flex != 0)) {
			free(mine);
			return l;
		}
	}
	free(mine);
	/* Not publishable: a layout being built for publishing (a NULL) gives up,
	 * so that nothing published points at an unpublished layout. */
	return a ? layout_build(s, v, flex, depth, a) : NULL;
}

/* ---- decoding ---- */

struct kd_path_ent {
	const char *name;
	int64_t idx; /* element index, or -1 */
};

/* Per-decode state, on the stack: nothing in it needs clearing (the path
 * is written before it is read). */
struct kd_dctx {
	struct kd_tree *t;
	struct kd_arena *a;
	int16_t v;
	uint8_t flex;
	unsigned depth;
	struct kd_path_ent path[KD_TREE_MAX_DEPTH + 2];
};

static int decode_struct(struct kd_dctx *dc, struct kd_cur *cur, struct kd_node *node,
                         const struct kd_layout *lay);

/* Records the first error with the current field path; returns rc. */
static int fail(struct kd_dctx *dc, const struct kd_cur *cur, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct kd_dctx *dc, const struct kd_cur *cur, int rc, const char *fmt, ...)
{
	struct kd_tree *t = dc->t;
	if (t->status != KD_OK)
		return rc;
	t->status = rc;
	/* cur may be a tagged-field sub-slice: report the offset in the body
	 * (an empty body may have no pointer at all: NULL + 0 is undefined) */
	t->err_off = cur->p && t->raw.p ? (size_t)(cur->p + cur->off - t->raw.p) : cur->off;

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

/* Arena memory for n nodes, zeroed. */
static inline struct kd_node *nodes_alloc(struct kd_dctx *dc, size_t n)
{
	return kd_arena_alloc(dc->a, n * sizeof(struct kd_node));
}

/* The same, not initialised: only for callers that copy a template over
 * every node before anything can fail or read them. */
static inline struct kd_node *nodes_alloc_raw(struct kd_dctx *dc, size_t n)
{
	return kd_arena_alloc_raw(dc->a, n * sizeof(struct kd_node));
}

/* Reads the fixed-size value of n (type with kd_type_width() > 0) at p, which
 * the caller has bounds-checked; returns its width. */
static inline unsigned fixed_get(struct kd_node *n, const uint8_t *p)
{
	switch (n->type) {
	case KD_T_BOOL:
		n->val.i = p[0];
		return 1;
	case KD_T_INT8:
		n->val.i = (int8_t)p[0];
		return 1;
	case KD_T_INT16:
		n->val.i = (int16_t)(uint16_t)kd_load_be(p, 2);
		return 2;
	case KD_T_UINT16:
		n->val.i = (int64_t)kd_load_be(p, 2);
		return 2;
	case KD_T_INT32:
		n->val.i = (int32_t)(uint32_t)kd_load_be(p, 4);
		return 4;
	case KD_T_UINT32:
		n->val.i = (int64_t)kd_load_be(p, 4);
		return 4;
	case KD_T_INT64:
	case KD_T_FLOAT64:
		n->val.u = kd_load_be(p, 8); /* FLOAT64: the raw bits, as kd_cur_f64 */
		return 8;
	case KD_T_UUID:
		memcpy(n->val.uuid, p, 16);
		return 16;
	}
	return 0;
}

/* A scalar field is not pushed on the path while it decodes (that costs
 * more than the value itself); when it fails, its name is added so that the
 * message reads "Topics[2].Name: ..." all the same. Array elements are named
 * by their array's "Name[i]" entry already. */
static void scalar_path(struct kd_dctx *dc, const struct kd_node *n)
{
	if (n->flags & KD_NF_ELEM)
		return;
	dc->path[dc->depth].name = n->field->name;
	dc->path[dc->depth].idx = -1;
	dc->depth++;
}

/* One scalar or string-like value of type n->type (a field or an array
 * element). */
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
		if (rc != KD_OK) {
			scalar_path(dc, n);
			return short_read(dc, cur, rc, "length");
		}
		if (len < 0) {
			if (!nullable) {
				cur->off = off;
				scalar_path(dc, n);
				return fail(dc, cur, KD_EMALFORMED, "null in a non-nullable field");
			}
			n->null = 1;
			n->val.v.null = 1;
			return KD_OK;
		}
		if ((size_t)len > kd_cur_left(cur)) {
			cur->off = off;
			scalar_path(dc, n);
			return fail(dc, cur, KD_ESHORT, "length %d exceeds bytes left (%zu)",
			            (int)len, kd_cur_left(cur) - (size_t)(cur->off - off));
		}
		n->val.v.p = kd_cur_pos(cur);
		n->val.v.len = (uint32_t)len;
		cur->off += (size_t)len;
		return KD_OK;
	}
	default:
		scalar_path(dc, n);
		return fail(dc, cur, KD_EMALFORMED, "unknown wire type %u in the schema", n->type);
	}
	if (rc != KD_OK) {
		scalar_path(dc, n);
		return short_read(dc, cur, rc, "value");
	}
	return KD_OK;
}

static int decode_array(struct kd_dctx *dc, struct kd_cur *cur, struct kd_node *n,
                        const struct kd_lay_ent *ent)
{
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

	if ((size_t)count > kd_cur_left(cur) / ent->elem_min) {
		size_t left = kd_cur_left(cur);
		cur->off = off;
		return fail(dc, cur, KD_EMALFORMED, "array count %d exceeds bytes left (%zu)",
		            (int)count, left);
	}
	struct kd_node *kids = nodes_alloc_raw(dc, (size_t)count);
	if (!kids)
		return nomem(dc, cur);
	/* Every element is set from the template before it is decoded. A
	 * failure part way leaves later elements uninitialised under nkids,
	 * but then the tree has no root and nothing walks it (decode_with). */
	n->kids = kids;
	n->nkids = (uint32_t)count;
	n->cap = (uint32_t)count;

	struct kd_path_ent *pe = &dc->path[dc->depth - 1];
	unsigned w = kd_type_width(ent->elem.type);
	if (w) {
		/* elem_min is the width: the count check above bounds every read */
		const uint8_t *p = kd_cur_pos(cur);
		for (int32_t i = 0; i < count; i++) {
			kids[i] = ent->elem;
			fixed_get(&kids[i], p + (size_t)i * w);
		}
		cur->off += (size_t)count * w;
	} else if (ent->elem.type == KD_T_STRUCT) {
		for (int32_t i = 0; i < count; i++) {
			kids[i] = ent->elem;
			pe->idx = i;
			rc = decode_struct(dc, cur, &kids[i], ent->sub);
			if (rc != KD_OK)
				return rc;
		}
	} else {
		for (int32_t i = 0; i < count; i++) {
			kids[i] = ent->elem;
			pe->idx = i;
			rc = decode_scalar(dc, cur, &kids[i]);
			if (rc != KD_OK)
				return rc;
		}
	}
	pe->idx = -1;
	return KD_OK;
}

static inline int is_scalar(unsigned type)
{
	return type != KD_T_STRUCT && type != KD_T_ARRAY;
}

static int nesting(struct kd_dctx *dc, const struct kd_cur *cur)
{
	return fail(dc, cur, KD_ELIMIT, "nesting deeper than %d", KD_TREE_MAX_DEPTH);
}

/* The value of one field (n copied from its layout template, ent its
 * layout entry). Scalars go to decode_scalar() directly; this pushes the
 * field on the path for what is inside it. The depth check covers every
 * field: a struct checks it once for all of its fields (decode_struct). */
static int decode_value(struct kd_dctx *dc, struct kd_cur *cur, struct kd_node *n,
                        const struct kd_lay_ent *ent)
{
	if (is_scalar(n->type))
		return decode_scalar(dc, cur, n);
	if (dc->depth >= KD_TREE_MAX_DEPTH)
		return nesting(dc, cur);
	dc->path[dc->depth].name = n->field->name;
	dc->path[dc->depth].idx = -1;
	dc->depth++;

	int rc;
	if (n->type == KD_T_ARRAY) {
		rc = decode_array(dc, cur, n, ent);
	} else {
		assert(n->type == KD_T_STRUCT); /* the only other non-scalar */
		rc = KD_OK;
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
				rc = decode_struct(dc, cur, n, ent->sub);
		}
	}
	if (rc == KD_OK)
		dc->depth--;
	return rc;
}

static int decode_tags(struct kd_dctx *dc, struct kd_cur *cur, struct kd_node *node,
                       const struct kd_layout *lay)
{
	uint32_t nreg = lay->nreg;
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
	struct kd_node *kids = nodes_alloc(dc, (size_t)nreg + ntags);
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
		uint32_t k = nreg + lay->ntag;
		if (tag <= INT32_MAX) {
			for (k = nreg; k < nreg + lay->ntag; k++)
				if (lay->tmpl[k].tag == (int32_t)tag)
					break;
		}
		node->nkids = nreg + i + 1;
		if (k == nreg + lay->ntag) {
			/* unknown tag: kept raw so it re-encodes as it came */
			memset(n, 0, sizeof(*n));
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
		if (dc->depth >= KD_TREE_MAX_DEPTH)
			return nesting(dc, &sub);
		*n = lay->tmpl[k];
		rc = decode_value(dc, &sub, n, &lay->ent[k]);
		if (rc != KD_OK)
			return rc;
		if (kd_cur_left(&sub) != 0)
			return fail(dc, &sub, KD_EMALFORMED,
			            "tagged field %s (tag %u): %zu bytes left over", n->field->name,
			            tag, kd_cur_left(&sub));
		cur->off += size;
	}
	return KD_OK;
}

/* A struct's fields (node set up by its template or as the root). */
static int decode_struct(struct kd_dctx *dc, struct kd_cur *cur, struct kd_node *node,
                         const struct kd_layout *lay)
{
	uint32_t nreg = lay->nreg;
	if (nreg) {
		struct kd_node *kids = nodes_alloc_raw(dc, nreg);
		if (!kids)
			return nomem(dc, cur);
		/* a few nodes: inline copies beat a memcpy call; they fill kids */
		for (uint32_t k = 0; k < nreg; k++)
			kids[k] = lay->tmpl[k];
		node->kids = kids;
		node->nkids = nreg;
		node->cap = nreg;
		if (dc->depth >= KD_TREE_MAX_DEPTH)
			return nesting(dc, cur);
		for (uint32_t k = 0; k < nreg;) {
			const struct kd_lay_ent *ent = &lay->ent[k];
			if (ent->run && kd_cur_left(cur) >= ent->run_bytes) {
				/* a run of fixed-size fields, bounds-checked at once; when
				 * the bytes run short, the field-by-field path below
				 * reports the field that does not fit */
				const uint8_t *p = kd_cur_pos(cur);
				for (uint32_t j = 0; j < ent->run; j++)
					p += fixed_get(&kids[k + j], p);
				cur->off += ent->run_bytes;
				k += ent->run;
				continue;
			}
			struct kd_node *n = &kids[k];
			int rc = is_scalar(n->type) ? decode_scalar(dc, cur, n)
			                            : decode_value(dc, cur, n, ent);
			if (rc != KD_OK)
				return rc;
			k++;
		}
	}
	if (dc->flex)
		return decode_tags(dc, cur, node, lay);
	return KD_OK;
}

/* The root node of a body of def (zeroed, in a), or NULL. */
static struct kd_node *root_new(struct kd_arena *a, const struct kd_msgdef *def, int flexible)
{
	struct kd_node *root = kd_arena_alloc(a, sizeof(*root));
	if (!root)
		return NULL;
	root->type = KD_T_STRUCT;
	root->sub = def->body;
	root->tag = -1;
	root->val.u = 1;
	if (flexible)
		root->flags |= KD_NF_FLEX;
	return root;
}

static int decode_with(struct kd_tree *t, struct kd_arena *a, const struct kd_msgdef *def,
                       int16_t version)
{
	struct kd_dctx dc;
	struct kd_cur cur;
	struct kd_node *root;

	t->def = def;
	t->version = version;
	t->flexible = (uint8_t)kd_vers_has(def->flexible, version);
	t->status = KD_OK;
	t->trailing = 0;
	t->err_msg[0] = '\0';
	t->err_off = 0;
	kd_cur_init(&cur, t->raw.p, t->raw.len);

	dc.t = t;
	dc.a = a;
	dc.v = version;
	dc.flex = t->flexible;
	dc.depth = 0;
	const struct kd_layout *lay = layout_get(def->body, version, dc.flex, 0, a);
	if (!lay)
		goto nomem;
	root = root_new(a, def, t->flexible);
	if (!root)
		goto nomem;
	if (decode_struct(&dc, &cur, root, lay) != KD_OK)
		return t->status;
	/* Bytes after a complete body: Kafka's own parsers (the Java
	 * clients' and brokers' readers, librdkafka's) stop at the end of the
	 * schema and ignore them, and librdkafka 2.12's mock cluster sends
	 * one (Metadata v12: the top-level tag section written twice). So do
	 * we, and say so: t->trailing counts them and kd_tree_encode writes
	 * them back, so a rewritten message keeps them byte for byte. */
	t->trailing = (uint32_t)kd_cur_left(&cur);
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
	/* Field by field: err_msg (192 bytes) only needs its first byte. */
	t->root = NULL;
	t->arena = a;
	t->def = NULL;
	t->api_key = api_key;
	t->version = version;
	t->asked_version = version;
	t->is_request = (uint8_t)(is_request != 0);
	t->flexible = 0;
	t->v0_fallback = 0;
	t->status = KD_OK;
	t->trailing = 0;
	t->raw.p = body;
	t->raw.len = (uint32_t)len;
	t->raw.null = 0;
	t->err_off = 0;
	t->err_msg[0] = '\0';
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
	if (api_key == KD_API_API_VERSIONS && !is_request && version > 0 && len >= 2 &&
	    (int16_t)kd_load_be(body, 2) == KD_ERR_UNSUPPORTED_VERSION) {
		const struct kd_msgdef *v0 = kd_msgdef_get(api_key, 0, 0);
		/* Only an exact v0 body: a real vN body would otherwise pass as
		 * a v0 prefix plus trailing bytes. */
		if (v0 && decode_with(t, a, v0, 0) == KD_OK && !t->trailing) {
			t->v0_fallback = 1;
			return KD_OK;
		}
		t->root = NULL;
		t->trailing = 0;
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
	if (t->trailing)
		kd_w_raw(w, t->raw.p + t->raw.len - t->trailing, t->trailing);
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

/* A default struct body: every regular field present in the version with
 * the schema's default (kd_field.dflt: an integer, a boolean, or null
 * where the field is nullable) or else a zero / empty / non-null value; no
 * tagged fields. */
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
		    !kd_field_tagged(&s->fields[i], t->version))
			nreg++;
	if (!nreg)
		return KD_OK;
	n->kids = kd_arena_alloc(t->arena, nreg * sizeof(*n->kids));
	if (!n->kids)
		return KD_ENOMEM;
	n->cap = nreg;
	for (unsigned i = 0; i < s->nfields; i++) {
		const struct kd_field *f = &s->fields[i];
		if (!kd_vers_has(f->versions, t->version) || kd_field_tagged(f, t->version))
			continue;
		struct kd_node *k = &n->kids[n->nkids++];
		node_init(k, f, t->version, t->flexible, 0);
		if (f->dflt_null && (k->flags & KD_NF_NULLABLE)) {
			k->null = 1;
			continue;
		}
		if (k->type == KD_T_BOOL)
			k->val.u = f->dflt != 0;
		else if (kd_type_width(k->type) && k->type != KD_T_UUID && k->type != KD_T_FLOAT64)
			k->val.i = f->dflt;
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

int kd_tree_init_default(struct kd_tree *t, struct kd_arena *a, int16_t api_key, int16_t version,
                         int is_request)
{
	tree_reset(t, a, api_key, version, is_request, NULL, 0);
	const struct kd_msgdef *def = kd_msgdef_get(api_key, version, is_request);
	if (!def) {
		t->status = KD_EUNSUPPORTED;
		snprintf(t->err_msg, sizeof(t->err_msg), "api key %d v%d is not in the spec",
		         api_key, version);
		return t->status;
	}
	t->def = def;
	t->flexible = (uint8_t)kd_vers_has(def->flexible, version);
	struct kd_node *root = root_new(a, def, t->flexible);
	if (!root) {
		t->status = a->limit ? KD_ELIMIT : KD_ENOMEM;
		return t->status;
	}
	int rc = node_default_struct(t, root, 0);
	if (rc != KD_OK) {
		t->status = rc;
		return rc;
	}
	t->root = root;
	return KD_OK;
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

/* ---- kd_body_error_code (small and self-contained: px-rewrite.c) ---- */

int kd_body_error_code(int16_t api_key, int16_t version, int is_request, const uint8_t *body,
                       size_t len, int16_t *code)
{
	const struct kd_api *api = kd_api_get(api_key);
	const struct kd_msgdef *def = api ? (is_request ? &api->req : &api->resp) : NULL;
	if (!def || !def->body || !kd_vers_has(def->valid, version))
		return KD_EUNSUPPORTED;
	struct kd_cur cur;
	kd_cur_init(&cur, body, len);
	for (uint16_t i = 0; i < def->body->nfields; i++) {
		const struct kd_field *f = &def->body->fields[i];
		if (!kd_vers_has(f->versions, version) || kd_vers_has(f->tagged, version))
			continue;
		if (f->type == KD_T_INT16 && !strcmp(f->name, "ErrorCode"))
			return kd_cur_i16(&cur, code) == KD_OK ? KD_OK : KD_ESHORT;
		size_t w = kd_type_width(f->type);
		if (!w)
			return KD_EUNSUPPORTED; /* variable width before any ErrorCode */
		if (kd_cur_skip(&cur, w) != KD_OK)
			return KD_ESHORT;
	}
	return KD_EUNSUPPORTED;
}
