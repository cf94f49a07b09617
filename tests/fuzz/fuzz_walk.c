/* fuzz_walk.c: the resumable skip-only walk (kd-walk.h) on any body.
 *
 * Input: [api key][version][split seed][is_request] then the body. The key
 * and version are folded into the tables' ranges. The stop point is
 * "before Topics" for Metadata responses and the top-level tagged section
 * for the other flexible versions.
 *
 * Properties checked (abort on violation):
 * - fed in chunks (sizes from the seed, 1 byte included), the walk gives
 *   the same result, stop offset, end offset and captured values as fed
 *   whole; "need more" consumes everything it is given;
 * - it never walks past the body, and a stop offset lies before the end;
 * - whenever the tree decoder decodes the body, the walk ends (it is never
 *   stricter than the tree) where the tree also decodes the body cut
 *   there (bytes after a body are the tree's to tolerate or not), and the
 *   part before (Metadata) or after (tagged section) the stop point,
 *   completed with kd_body_defaults(), decodes too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd-arena.h"
#include "kd-schema.h"
#include "kd-tree.h"
#include "kd-walk.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

struct res {
	int rc;
	uint64_t stop, end;
	uint64_t sum; /* a hash of the captured values */
	unsigned ncap;
};

static void on_value(void *arg, unsigned depth, const struct kd_field *f, const uint8_t *p,
                     size_t len)
{
	struct res *r = arg;
	/* A name too long to capture comes without its bytes. */
	check(len <= KD_WALK_CAP || (f && !p));
	r->ncap++;
	r->sum = r->sum * 31 + depth + (f ? (uintptr_t)f->name : 7);
	for (size_t i = 0; p && i < len; i++)
		r->sum = r->sum * 131 + p[i];
}

static void walk(int16_t key, int16_t ver, int req, const uint8_t *p, size_t len, uint8_t seed,
                 struct res *r)
{
	struct kd_walk w;
	memset(r, 0, sizeof(*r));
	r->stop = UINT64_MAX;
	if (kd_walk_init(&w, key, ver, req, len) != KD_OK) {
		r->rc = KD_EUNSUPPORTED;
		return;
	}
	if (!req && key == 3)
		check(kd_walk_stop_before(&w, "Topics") == KD_OK);
	else
		kd_walk_stop_at_tags(&w); /* KD_EUNSUPPORTED when not flexible: no stop */
	kd_walk_on_value(&w, on_value, r);
	size_t pos = 0;
	unsigned step = seed ? seed : (unsigned)len + 1;
	for (;;) {
		size_t n = len - pos < step ? len - pos : step;
		size_t used = 0;
		int rc = kd_walk_feed(&w, p + pos, n, &used);
		check(used <= n);
		pos += used;
		check(w.off == pos);
		if (rc == KD_WALK_STOP) {
			check(r->stop == UINT64_MAX && w.off < len + 1);
			r->stop = w.off;
			continue;
		}
		if (rc == KD_NEED_MORE) {
			check(used == n && pos < len);
			step = step * 3 % 17 + 1; /* vary the chunk sizes */
			continue;
		}
		r->rc = rc;
		r->end = w.off;
		check(w.off <= len);
		return;
	}
}

static int tree_ok(int16_t key, int16_t ver, int req, const uint8_t *p, size_t len)
{
	struct kd_arena arena = {.limit = 64u << 20};
	struct kd_tree t;
	int rc = kd_tree_decode(&t, &arena, key, ver, req, p, len);
	kd_arena_free(&arena);
	return rc == KD_OK && !t.v0_fallback;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	const struct kd_api *api = kd_api_get((int16_t)(data[0] % (kd_api_key_max + 1)));
	if (!api)
		return 0;
	int req = data[3] & 1;
	const struct kd_msgdef *def = req ? &api->req : &api->resp;
	if (def->valid.lo < 0)
		return 0;
	int16_t key = api->key;
	int16_t ver = (int16_t)(def->valid.lo + data[1] % (def->valid.hi - def->valid.lo + 1));
	const uint8_t *body = data + 4;
	size_t len = size - 4;

	struct res whole, split, bytes;
	walk(key, ver, req, body, len, 0, &whole);
	walk(key, ver, req, body, len, data[2] ? data[2] : 1, &split);
	walk(key, ver, req, body, len, 1, &bytes);
	check(whole.rc == split.rc && whole.stop == split.stop && whole.end == split.end &&
	      whole.sum == split.sum && whole.ncap == split.ncap);
	check(whole.rc == bytes.rc && whole.stop == bytes.stop && whole.end == bytes.end &&
	      whole.sum == bytes.sum);
	if (whole.stop != UINT64_MAX)
		check(whole.rc != KD_WALK_END || whole.stop <= whole.end);

	if (!tree_ok(key, ver, req, body, len))
		return 0;
	check(whole.rc == KD_WALK_END && tree_ok(key, ver, req, body, (size_t)whole.end));
	if (whole.stop == UINT64_MAX)
		return 0;
	struct kd_wbuf syn = {0};
	if (!req && key == 3) {
		int from = kd_body_field_index(key, ver, 0, "Topics");
		check(from >= 0);
		kd_w_raw(&syn, body, whole.stop);
		check(kd_body_defaults(key, ver, 0, (unsigned)from, 1000, 1, &syn) == KD_OK);
	} else {
		check(kd_body_defaults(key, ver, req, 0, 1000, 0, &syn) == KD_OK);
		kd_w_raw(&syn, body + whole.stop, (size_t)(whole.end - whole.stop));
	}
	check(tree_ok(key, ver, req, syn.p, syn.len));
	kd_wbuf_free(&syn);
	return 0;
}
