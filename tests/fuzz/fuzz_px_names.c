/* fuzz_px_names.c: the name mapper (kd-names.h, px-names.h) on any body.
 *
 * Input (as fuzz_tree_edit's):
 *   byte 0   the API (index into kd_apis, % kd_napis)
 *   byte 1   the version (% (max valid + 1))
 *   byte 2   bit 0: request
 *   rest     the body
 * A body that decodes is mapped to the cluster (a tenant's "t." prefix and
 * an alias), encoded, decoded again (it must decode), every name the map
 * touched must read back through the rule as the name it was, and mapped
 * back it must encode to the bytes it first encoded to. For Produce
 * requests and Fetch responses, the splice (px_names_sp) must give the
 * same bytes as the whole-frame path whenever it does not give up. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd-arena.h"
#include "kd-names.h"
#include "kd-schema.h"
#include "kd-tree.h"
#include "px-names.h"
#include "rule-names.h"
#include "rule.h"

static const char rules[] = "rewrite:\n"
                            "  - match: {client_id: t}\n"
                            "    prefix: t.\n"
                            "    topics: {alias: {a: x.a}}\n";

static struct rule_set *rs;
static struct px_names pn;
static struct kd_arena arena;

static int map_cb(void *arg, int ent, const uint8_t *p, size_t len, struct kd_view *out)
{
	int to_cluster = *(int *)arg;
	int kind = rule_names_kind(ent);
	if (kind < 0)
		abort(); /* the mapper only asks about names */
	return rule_names_map(rs->rules[0].names, kind, to_cluster, p, len, pn.buf, sizeof(pn.buf),
	                      out);
}

static int encode(struct kd_tree *t, struct kd_wbuf *w)
{
	w->len = 0;
	w->err = 0;
	return kd_tree_encode(t, w) == KD_OK && !w->err ? 0 : -1;
}

/* The splice of frame f (size prefix, then the body) against whole. */
static void check_splice(int16_t key, int16_t ver, int is_req, const struct kd_wbuf *f,
                         const struct kd_wbuf *whole)
{
	static struct kd_wbuf out;
	struct px_names_sp *sp = &pn.sp;
	if (px_names_sp_init(sp, &pn, &rs->rules[0], key, ver, is_req, 4, (uint32_t)f->len - 4))
		return;
	px_names_sp_feed(sp, f->p + 4, f->len - 4);
	if (sp->bad || !sp->ended)
		return;
	out.len = 0;
	kd_w_i32(&out, (int32_t)((int64_t)f->len - 4 + sp->delta));
	uint32_t pos = 4;
	for (unsigned i = 0; i < sp->ned; i++) {
		if (sp->ed[i].off < pos || sp->ed[i].off + sp->ed[i].len > f->len)
			abort(); /* edits in order, inside the frame */
		kd_w_raw(&out, f->p + pos, sp->ed[i].off - pos);
		kd_w_raw(&out, sp->bytes.p + sp->ed[i].at, sp->ed[i].nlen);
		pos = sp->ed[i].off + sp->ed[i].len;
	}
	kd_w_raw(&out, f->p + pos, f->len - pos);
	if (out.len != whole->len + 4 || (whole->len && memcmp(out.p + 4, whole->p, whole->len)))
		abort(); /* the splice and the tree disagree */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kd_wbuf first, mapped, back, frame;
	if (!rs) {
		char err[256];
		rs = rule_set_load_mem(rules, sizeof(rules) - 1, "fuzz", err, sizeof(err));
		if (!rs)
			abort();
	}
	if (size < 3)
		return 0;
	const struct kd_api *api = &kd_apis[data[0] % kd_napis];
	int is_req = data[2] & 1;
	int16_t ver = (int16_t)(data[1] % ((is_req ? api->req.valid.hi : api->resp.valid.hi) + 1));
	const uint8_t *body = data + 3;
	size_t len = size - 3;
	struct kd_tree t;
	kd_arena_reset(&arena);
	arena.limit = 64u << 20;
	if (kd_tree_decode(&t, &arena, api->key, ver, is_req, body, len) != KD_OK || t.trailing ||
	    t.v0_fallback || encode(&t, &first))
		return 0;
	int canonical = first.len == len && (!len || !memcmp(first.p, body, len));

	/* To the cluster: nothing is hidden with a prefix but an alias's
	 * cluster name ("t.x.a" is not a client's). */
	struct kd_names_res res;
	int dir = 1;
	if (kd_names_map_tree(&t, map_cb, &dir, KD_COORD_GROUP, &res) != KD_OK || res.hidden ||
	    encode(&t, &mapped))
		return 0;
	struct kd_tree t2;
	if (kd_tree_decode(&t2, &arena, api->key, ver, is_req, mapped.p, mapped.len) != KD_OK)
		abort(); /* a mapped message must decode */
	if (is_req && canonical && px_names_splices(api->key, ver, 1)) {
		frame.len = 0;
		kd_w_i32(&frame, (int32_t)len);
		kd_w_raw(&frame, body, len);
		check_splice(api->key, ver, 1, &frame, &mapped);
	}
	dir = 0;
	if (kd_names_map_tree(&t2, map_cb, &dir, KD_COORD_GROUP, &res) != KD_OK)
		abort();
	if (res.hidden || res.removed)
		abort(); /* every name mapped to the cluster maps back */
	if (encode(&t2, &back))
		abort();
	if (back.len != first.len || (first.len && memcmp(back.p, first.p, first.len)))
		abort(); /* mapped there and back, not the same message */
	if (!is_req && px_names_splices(api->key, ver, 0)) {
		/* the mapped response, spliced back to the client's names */
		frame.len = 0;
		kd_w_i32(&frame, (int32_t)mapped.len);
		kd_w_raw(&frame, mapped.p, mapped.len);
		check_splice(api->key, ver, 0, &frame, &back);
	}
	return 0;
}
