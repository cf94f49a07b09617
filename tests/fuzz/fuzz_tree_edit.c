/* fuzz_tree_edit.c: tree re-encoding after edits (kd-tree.h).
 *
 * Input:
 *   byte 0   the API (index into kd_apis, % kd_napis)
 *   byte 1   the version (% (max valid + 1))
 *   byte 2   bit 0: request; the rest seeds the edits
 *   rest     the body
 * A body that decodes must re-encode to a fixed point. Then scalars,
 * strings, nulls and one array (element added or removed) are edited, the
 * tree is encoded (kd_tree_encoded_size must agree), decoded again, and
 * both trees must render to the same JSON and the second re-encode to the
 * same bytes: every enclosing length and tagged-field size was fixed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd-arena.h"
#include "kd-render.h"
#include "kd-schema.h"
#include "kd-tree.h"

#define MAX_PICK 64

struct pick {
	struct kd_node *n[MAX_PICK];
	unsigned nn;
	struct kd_node *arr;
	uint32_t state;
};

static uint32_t rnd(struct pick *p)
{
	p->state = p->state * 1103515245u + 12345u;
	return p->state >> 8;
}

static int collect(void *arg, struct kd_node *node, const struct kd_walk_ctx *wc)
{
	struct pick *p = arg;

	(void)wc;
	if (!node->field)
		return 0;
	if (node->type == KD_T_ARRAY && !node->null && (!p->arr || rnd(p) % 3 == 0))
		p->arr = node;
	if (p->nn < MAX_PICK && rnd(p) % 2 == 0)
		p->n[p->nn++] = node;
	return 0;
}

static void check(int ok)
{
	if (!ok)
		abort();
}

static void edit(struct kd_tree *t, struct pick *p, const uint8_t *data, size_t size)
{
	for (unsigned i = 0; i < p->nn; i++) {
		struct kd_node *n = p->n[i];
		uint32_t r = rnd(p);

		if (n == p->arr)
			continue;
		if (r % 7 == 0) {
			kd_node_set_null(n);
			continue;
		}
		switch (n->type) {
		case KD_T_BOOL:
		case KD_T_INT8:
		case KD_T_INT16:
		case KD_T_UINT16:
		case KD_T_INT32:
		case KD_T_UINT32:
		case KD_T_INT64:
			kd_node_set_int(n, (int64_t)((uint64_t)rnd(p) << 32 | rnd(p)) >> (r % 64));
			break;
		case KD_T_STRING:
		case KD_T_BYTES:
		case KD_T_RECORDS: {
			size_t off = size ? rnd(p) % size : 0,
			       len = size ? rnd(p) % (size - off + 1) : 0;
			kd_node_set_str(t, n, data + off, len);
			break;
		}
		case KD_T_UUID: {
			uint8_t u[16];
			for (int k = 0; k < 16; k++)
				u[k] = (uint8_t)rnd(p);
			kd_node_set_uuid(n, u);
			break;
		}
		case KD_T_FLOAT64:
			kd_node_set_f64(n, (double)(int32_t)rnd(p) / 7.0);
			break;
		default:
			break;
		}
	}
	if (p->arr) {
		if (p->arr->nkids && rnd(p) % 2)
			kd_node_array_remove(p->arr, rnd(p) % p->arr->nkids);
		else
			kd_node_array_add(t, p->arr, p->arr->nkids && rnd(p) % 2 ? 0 : UINT32_MAX);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kd_arena a1 = {.limit = 1u << 24}, a2 = {.limit = 1u << 24};
	struct kd_wbuf w0 = {0}, w1 = {0}, w2 = {0}, j1 = {0}, j2 = {0};
	struct kd_tree t, t2;
	struct pick p = {0};
	const struct kd_api *api;
	const uint8_t *body;
	size_t blen;
	int16_t ver;
	int is_req;

	if (size < 3 || !kd_napis)
		return 0;
	api = &kd_apis[data[0] % kd_napis];
	is_req = data[2] & 1;
	ver = (int16_t)(data[1] % ((is_req ? api->req.valid.hi : api->resp.valid.hi) + 1));
	body = data + 3;
	blen = size - 3;
	if (kd_tree_decode(&t, &a1, api->key, ver, is_req, body, blen) != KD_OK)
		goto out;
	/* Unedited: the encoding is a fixed point (byte for byte, but for
	 * non-minimal varints from the input, which re-encode minimal:
	 * docs/decoder.md "Known limits"). */
	check(kd_tree_encode(&t, &w0) == KD_OK && w0.len <= blen);
	check(kd_tree_decode(&t, &a1, api->key, ver, is_req, w0.p, w0.len) == KD_OK);
	check(kd_tree_encode(&t, &w1) == KD_OK && w1.len == w0.len &&
	      (!w0.len || !memcmp(w1.p, w0.p, w0.len)));
	w1.len = 0;
	/* KIP-511: an ApiVersions error answer decoded as v0 decodes in its
	 * own version only while its ErrorCode stays UNSUPPORTED_VERSION. */
	if (t.v0_fallback)
		goto out;

	p.state = data[2] | (uint32_t)size << 8;
	kd_tree_walk(&t, collect, &p);
	edit(&t, &p, body, blen);
	if (kd_tree_encode(&t, &w1) != KD_OK || w1.err)
		goto out; /* an edit the encoder refuses (a limit): not a bug */
	check(kd_tree_encoded_size(&t) == w1.len);
	check(kd_tree_decode(&t2, &a2, api->key, ver, is_req, w1.p, w1.len) == KD_OK);
	check(kd_tree_encode(&t2, &w2) == KD_OK && w2.len == w1.len &&
	      (!w1.len || !memcmp(w1.p, w2.p, w1.len)));
	kd_render_json(&t, &j1, KD_RENDER_NO_RECORDS);
	kd_render_json(&t2, &j2, KD_RENDER_NO_RECORDS);
	check(j1.len == j2.len && !memcmp(j1.p, j2.p, j1.len));
out:
	kd_wbuf_free(&w0);
	kd_wbuf_free(&w1);
	kd_wbuf_free(&w2);
	kd_wbuf_free(&j1);
	kd_wbuf_free(&j2);
	kd_arena_free(&a1);
	kd_arena_free(&a2);
	return 0;
}
