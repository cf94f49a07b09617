/* test_roundtrip.c: for every API key, every version, request and response,
 * generate bodies from the schema tables with an encoder written here
 * (independent of kd-tree.c), decode them with kd_tree_decode(), re-encode
 * with kd_tree_encode() and compare bytes, and compare every decoded value
 * with what was generated. Also: every prefix of one body per API is an
 * error, never a crash or a success. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kd-arena.h"
#include "kd-schema.h"
#include "kd-tree.h"

/* One generated value, in the order a pre-order walk of the tree sees it. */
struct leaf {
	uint8_t type; /* enum kd_type; KD_T_NONE = unknown tag */
	uint8_t null;
	int32_t tag;
	int64_t i;        /* ints, bool byte, array count */
	uint64_t d;       /* float64 bits */
	const uint8_t *p; /* string/bytes/uuid contents (static or gen-owned) */
	uint32_t len;
};

struct gen {
	uint64_t rng;
	int16_t v;
	int flex;
	struct leaf *leaves;
	size_t nleaves, capleaves;
	uint8_t pool[1 << 16]; /* random bytes that views point into */
	size_t npool;
	unsigned ntagged, nnull, nunknown;
};

static uint64_t rnd(struct gen *g)
{
	g->rng ^= g->rng << 13;
	g->rng ^= g->rng >> 7;
	g->rng ^= g->rng << 17;
	return g->rng;
}

static struct leaf *add_leaf(struct gen *g, uint8_t type)
{
	if (g->nleaves == g->capleaves) {
		g->capleaves = g->capleaves ? g->capleaves * 2 : 256;
		g->leaves = realloc(g->leaves, g->capleaves * sizeof(*g->leaves));
		assert_non_null(g->leaves);
	}
	struct leaf *l = &g->leaves[g->nleaves++];
	memset(l, 0, sizeof(*l));
	l->type = type;
	l->tag = -1;
	return l;
}

static const uint8_t *pool_bytes(struct gen *g, uint32_t n)
{
	if (g->npool + n > sizeof(g->pool))
		g->npool = 0;
	uint8_t *p = g->pool + g->npool;
	for (uint32_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd(g);
	g->npool += n;
	return p;
}

static const char *const strs[] = {
    "",
    "t",
    "my-topic",
    "topic.ü.日本語",
    "a\"b\\c\n\t",
    "localhost",
    "🙂 emoji",
    /* > 127 bytes: a two-byte compact length */
    ("0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"),
};
static const int64_t ints[] = {0,
                               1,
                               -1,
                               3,
                               127,
                               -128,
                               1234,
                               32767,
                               -32768,
                               65535,
                               2147483647,
                               -2147483647 - 1,
                               4294967295LL,
                               INT64_MAX,
                               INT64_MIN};

static int64_t gen_int(struct gen *g, uint8_t type)
{
	for (;;) {
		int64_t x = ints[rnd(g) % (sizeof(ints) / sizeof(ints[0]))];
		switch (type) {
		case KD_T_INT8:
			if (x >= INT8_MIN && x <= INT8_MAX)
				return x;
			break;
		case KD_T_INT16:
			if (x >= INT16_MIN && x <= INT16_MAX)
				return x;
			break;
		case KD_T_UINT16:
			if (x >= 0 && x <= UINT16_MAX)
				return x;
			break;
		case KD_T_INT32:
			if (x >= INT32_MIN && x <= INT32_MAX)
				return x;
			break;
		case KD_T_UINT32:
			if (x >= 0 && x <= UINT32_MAX)
				return x;
			break;
		default:
			return x;
		}
	}
}

static void gen_struct(struct gen *g, struct kd_wbuf *w, const struct kd_struct *s, unsigned depth);

static void w_len(struct kd_wbuf *w, int compact, unsigned width, int32_t n)
{
	if (compact)
		kd_w_uvar(w, (uint64_t)(n + 1));
	else if (width == 2)
		kd_w_i16(w, (int16_t)n);
	else
		kd_w_i32(w, n);
}

/* A scalar/string value of type; nullable: may be null. */
static void gen_scalar(struct gen *g, struct kd_wbuf *w, uint8_t type, int compact, int nullable)
{
	struct leaf *l = add_leaf(g, type);
	switch (type) {
	case KD_T_BOOL: {
		/* raw bytes other than 0/1 must survive the round trip */
		static const uint8_t b[] = {0, 1, 1, 0, 2, 0xff};
		l->i = b[rnd(g) % sizeof(b)];
		kd_w_be(w, 1, (uint64_t)l->i);
		return;
	}
	case KD_T_INT8:
		l->i = gen_int(g, type);
		kd_w_i8(w, (int8_t)l->i);
		return;
	case KD_T_INT16:
		l->i = gen_int(g, type);
		kd_w_i16(w, (int16_t)l->i);
		return;
	case KD_T_UINT16:
		l->i = gen_int(g, type);
		kd_w_u16(w, (uint16_t)l->i);
		return;
	case KD_T_INT32:
		l->i = gen_int(g, type);
		kd_w_i32(w, (int32_t)l->i);
		return;
	case KD_T_UINT32:
		l->i = gen_int(g, type);
		kd_w_u32(w, (uint32_t)l->i);
		return;
	case KD_T_INT64:
		l->i = gen_int(g, type);
		kd_w_i64(w, l->i);
		return;
	case KD_T_FLOAT64: {
		double d = (double)(int64_t)(rnd(g) % 100000) / 7.0;
		memcpy(&l->d, &d, 8);
		kd_w_be(w, 8, l->d);
		return;
	}
	case KD_T_UUID:
		l->p = pool_bytes(g, 16);
		l->len = 16;
		kd_w_raw(w, l->p, 16);
		return;
	case KD_T_STRING:
	case KD_T_BYTES:
	case KD_T_RECORDS: {
		unsigned width = type == KD_T_STRING ? 2 : 4;
		if (nullable && rnd(g) % 5 == 0) {
			l->null = 1;
			g->nnull++;
			w_len(w, compact, width, -1);
			return;
		}
		if (type == KD_T_STRING) {
			const char *s = strs[rnd(g) % (sizeof(strs) / sizeof(strs[0]))];
			l->p = (const uint8_t *)s;
			l->len = (uint32_t)strlen(s);
		} else {
			l->len = (uint32_t)(rnd(g) % 9);
			if (rnd(g) % 8 == 0)
				l->len = 200; /* a two-byte compact length */
			l->p = pool_bytes(g, l->len);
		}
		w_len(w, compact, width, (int32_t)l->len);
		kd_w_raw(w, l->p, l->len);
		return;
	}
	}
	fail_msg("unexpected type %u", type);
}

static int fcompact(const struct gen *g, const struct kd_field *f)
{
	return f->has_flex ? kd_vers_has(f->flexible, g->v) : g->flex;
}

/* The value of field f (not its tag header). */
static void gen_field(struct gen *g, struct kd_wbuf *w, const struct kd_field *f, int compact,
                      unsigned depth)
{
	int nullable = kd_vers_has(f->nullable, g->v);
	if (f->type == KD_T_STRUCT) {
		struct leaf *l = add_leaf(g, KD_T_STRUCT);
		if (nullable) {
			if (rnd(g) % 4 == 0) {
				l->null = 1;
				g->nnull++;
				kd_w_i8(w, -1);
				return;
			}
			kd_w_i8(w, 1);
		}
		gen_struct(g, w, f->sub, depth + 1);
		return;
	}
	if (f->type == KD_T_ARRAY) {
		struct leaf *l = add_leaf(g, KD_T_ARRAY);
		if (nullable && rnd(g) % 5 == 0) {
			l->null = 1;
			g->nnull++;
			w_len(w, compact, 4, -1);
			return;
		}
		int32_t n = depth > 5 ? 0 : (int32_t)(rnd(g) % 4);
		l->i = n;
		w_len(w, compact, 4, n);
		for (int32_t i = 0; i < n; i++) {
			if (f->elem == KD_T_STRUCT) {
				add_leaf(g, KD_T_STRUCT);
				gen_struct(g, w, f->sub, depth + 1);
			} else {
				gen_scalar(g, w, f->elem, compact, 0);
			}
		}
		return;
	}
	gen_scalar(g, w, f->type, compact, nullable);
}

static int tagged_in(const struct gen *g, const struct kd_field *f)
{
	return f->tag >= 0 && kd_vers_has(f->tagged, g->v);
}

static void gen_struct(struct gen *g, struct kd_wbuf *w, const struct kd_struct *s, unsigned depth)
{
	const struct kd_field *tagged[64];
	unsigned nt = 0;

	for (unsigned i = 0; i < s->nfields; i++) {
		const struct kd_field *f = &s->fields[i];
		if (!kd_vers_has(f->versions, g->v))
			continue;
		if (tagged_in(g, f)) {
			if (rnd(g) % 3 != 0 && nt < 64)
				tagged[nt++] = f;
			continue;
		}
		gen_field(g, w, f, fcompact(g, f), depth);
	}
	if (!g->flex)
		return;
	/* ascending tags, as Kafka writers emit them */
	for (unsigned i = 1; i < nt; i++)
		for (unsigned j = i; j > 0 && tagged[j - 1]->tag > tagged[j]->tag; j--) {
			const struct kd_field *x = tagged[j];
			tagged[j] = tagged[j - 1];
			tagged[j - 1] = x;
		}
	int unknown = rnd(g) % 6 == 0;
	kd_w_uvar(w, nt + (unsigned)unknown);
	for (unsigned i = 0; i < nt; i++) {
		struct kd_wbuf sub = {0};
		gen_field(g, &sub, tagged[i], 1, depth);
		assert_int_equal(sub.err, KD_OK);
		kd_w_uvar(w, (uint64_t)tagged[i]->tag);
		kd_w_uvar(w, sub.len);
		kd_w_raw(w, sub.p, sub.len);
		kd_wbuf_free(&sub);
		g->ntagged++;
	}
	if (unknown) {
		struct leaf *l = add_leaf(g, KD_T_NONE);
		l->tag = 10000 + (int32_t)(rnd(g) % 100);
		l->len = (uint32_t)(rnd(g) % 6);
		l->p = pool_bytes(g, l->len);
		kd_w_uvar(w, (uint64_t)l->tag);
		kd_w_uvar(w, l->len);
		kd_w_raw(w, l->p, l->len);
		g->nunknown++;
	}
}

/* ---- compare the decoded tree with the leaves ---- */

struct cmp {
	struct gen *g;
	size_t at;
	int bad;
	char msg[256];
};

static int cmp_fn(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	struct cmp *c = arg;
	if (!wc->parent)
		return 0; /* root */
	if (c->at >= c->g->nleaves) {
		snprintf(c->msg, sizeof(c->msg), "more nodes than generated values");
		return 2;
	}
	const struct leaf *l = &c->g->leaves[c->at++];
	const char *name = n->field ? n->field->name : "(tag)";
#define BAD(...)                                                                                   \
	do {                                                                                       \
		snprintf(c->msg, sizeof(c->msg), __VA_ARGS__);                                     \
		return 2;                                                                          \
	} while (0)
	if (n->type != l->type)
		BAD("%s: type %u, generated %u", name, n->type, l->type);
	if (n->null != l->null)
		BAD("%s: null %u, generated %u", name, n->null, l->null);
	if (l->null)
		return 0;
	switch (l->type) {
	case KD_T_NONE:
		if (n->tag != l->tag || n->val.v.len != l->len || memcmp(n->val.v.p, l->p, l->len))
			BAD("unknown tag %d differs", l->tag);
		break;
	case KD_T_ARRAY:
		if (n->nkids != (uint32_t)l->i)
			BAD("%s: %u elements, generated %lld", name, n->nkids, (long long)l->i);
		break;
	case KD_T_STRUCT:
		break;
	case KD_T_FLOAT64:
		if (memcmp(&n->val.d, &l->d, 8))
			BAD("%s: float differs", name);
		break;
	case KD_T_UUID:
		if (memcmp(n->val.uuid, l->p, 16))
			BAD("%s: uuid differs", name);
		break;
	case KD_T_STRING:
	case KD_T_BYTES:
	case KD_T_RECORDS:
		if (n->val.v.len != l->len || (l->len && memcmp(n->val.v.p, l->p, l->len)))
			BAD("%s: bytes differ (len %u vs %u)", name, n->val.v.len, l->len);
		break;
	default:
		if (n->val.i != l->i)
			BAD("%s: %lld, generated %lld", name, (long long)n->val.i, (long long)l->i);
		break;
	}
#undef BAD
	return 0;
}

static struct gen g; /* large pool: not on the stack */

struct totals {
	unsigned combos, bodies, tagged, nulls, unknown, prefixes;
	size_t bytes;
};

/* APIs by key; header and data schemas (api->key < 0) by their msgdef. */
static int decode(struct kd_tree *t, struct kd_arena *a, const struct kd_api *api,
                  const struct kd_msgdef *def, int16_t v, int is_request, const uint8_t *p,
                  size_t len)
{
	if (api->key < 0)
		return kd_tree_decode_def(t, a, def, v, p, len);
	return kd_tree_decode(t, a, api->key, v, is_request, p, len);
}

static void one_body(struct totals *tot, struct kd_arena *a, const struct kd_api *api,
                     const struct kd_msgdef *def, int16_t v, int is_request, uint64_t seed,
                     int prefixes)
{
	struct kd_wbuf w = {0}, re = {0};
	struct kd_tree t;

	g.rng = seed * 0x9e3779b97f4a7c15ULL + (uint64_t)api->key * 131 + (uint64_t)v * 7 +
	        (uint64_t)is_request + 1;
	g.v = v;
	g.flex = kd_vers_has(def->flexible, v);
	g.nleaves = 0;
	g.npool = 0;
	gen_struct(&g, &w, def->body, 0);
	assert_int_equal(w.err, KD_OK);

	kd_arena_reset(a);
	int rc = decode(&t, a, api, def, v, is_request, w.p, w.len);
	if (rc != KD_OK)
		fail_msg("%s %s v%d seed %llu: decode %d: %s", api->name,
		         is_request ? "req" : "resp", v, (unsigned long long)seed, rc, t.err_msg);
	assert_int_equal(t.version, v);
	assert_int_equal(t.flexible, g.flex);
	assert_int_equal(kd_tree_encode(&t, &re), KD_OK);
	if (re.len != w.len || (w.len && memcmp(re.p, w.p, w.len)))
		fail_msg("%s %s v%d seed %llu: re-encoding differs (%zu vs %zu bytes)", api->name,
		         is_request ? "req" : "resp", v, (unsigned long long)seed, re.len, w.len);

	struct cmp c = {.g = &g};
	int wr = kd_tree_walk(&t, cmp_fn, &c);
	if (wr || c.at != g.nleaves)
		fail_msg("%s %s v%d seed %llu: values: %s (%zu of %zu)", api->name,
		         is_request ? "req" : "resp", v, (unsigned long long)seed,
		         c.msg[0] ? c.msg : "fewer nodes than generated values", c.at, g.nleaves);

	if (prefixes) {
		for (size_t n = 0; n < w.len; n++) {
			kd_arena_reset(a);
			rc = decode(&t, a, api, def, v, is_request, w.p, n);
			if (rc == KD_OK)
				fail_msg("%s v%d: prefix %zu of %zu decoded", api->name, v, n,
				         w.len);
			assert_true(t.err_msg[0] != '\0');
			tot->prefixes++;
		}
		/* one byte after the body: tolerated, counted, written back */
		uint8_t *x = malloc(w.len + 1);
		assert_non_null(x);
		memcpy(x, w.p, w.len);
		x[w.len] = 0x5a;
		kd_arena_reset(a);
		rc = decode(&t, a, api, def, v, is_request, x, w.len + 1);
		if (rc != KD_OK || t.trailing != 1)
			fail_msg("%s v%d: body + 1 byte: rc %d trailing %u", api->name, v, rc,
			         t.trailing);
		re.len = 0;
		assert_int_equal(kd_tree_encode(&t, &re), KD_OK);
		if (re.len != w.len + 1 || memcmp(re.p, x, w.len + 1))
			fail_msg("%s v%d: body + 1 byte re-encodes differently", api->name, v);
		free(x);
	}
	tot->bodies++;
	tot->tagged += g.ntagged;
	tot->nulls += g.nnull;
	tot->unknown += g.nunknown;
	tot->bytes += w.len;
	g.ntagged = g.nnull = g.nunknown = 0;
	kd_wbuf_free(&w);
	kd_wbuf_free(&re);
}

static void test_every_api_version(void **state)
{
	(void)state;
	struct kd_arena a = {0};
	struct totals tot = {0};
	a.limit = 64u << 20;

	for (unsigned k = 0; k < kd_napis; k++) {
		const struct kd_api *api = &kd_apis[k];
		for (int dir = 0; dir < 2; dir++) {
			const struct kd_msgdef *def = dir ? &api->req : &api->resp;
			if (!def->body || def->valid.lo < 0)
				continue;
			for (int v = def->valid.lo; v <= def->valid.hi; v++) {
				for (uint64_t seed = 1; seed <= 12; seed++)
					one_body(&tot, &a, api, def, (int16_t)v, dir, seed,
					         seed == 1 && v == def->valid.hi);
				tot.combos++;
			}
		}
	}
	unsigned api_combos = tot.combos;
	for (unsigned k = 0; k < kd_ndatadefs; k++) {
		const struct kd_msgdef *def = &kd_datadefs[k];
		struct kd_api pseudo = {.key = -1, .name = def->name};
		if (!def->body || def->valid.lo < 0)
			continue;
		for (int v = def->valid.lo; v <= def->valid.hi; v++) {
			for (uint64_t seed = 1; seed <= 12; seed++)
				one_body(&tot, &a, &pseudo, def, (int16_t)v, 0, seed,
				         seed == 1 && v == def->valid.hi);
			tot.combos++;
		}
	}
	kd_arena_free(&a);
	free(g.leaves);
	g.leaves = NULL;
	g.capleaves = 0;
	printf("roundtrip: %u (api, version, direction) combinations + %u (header/data schema, "
	       "version); %u bodies, %zu bytes, "
	       "%u tagged fields, %u nulls, %u unknown tags, %u truncated prefixes\n",
	       api_combos, tot.combos - api_combos, tot.bodies, tot.bytes, tot.tagged, tot.nulls,
	       tot.unknown, tot.prefixes);
	/* INDEX.tsv: 88 keys, 654 (api, version, direction) combinations */
	assert_true(api_combos >= 654);
	assert_true(tot.tagged > 100);
	assert_true(tot.nulls > 100);
	assert_true(tot.unknown > 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_api_version),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
