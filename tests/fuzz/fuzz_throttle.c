/* fuzz_throttle.c: ThrottleTimeMs raised in any response frame
 * (kd-throttle.h), as the proxy does with a broker's bytes.
 *
 * Input: [api key][version][ms: 4 bytes] then the response body. The key
 * and version are folded into the tables' ranges; a 4-byte frame size and
 * a v0 response header are put in front.
 *
 * Properties checked (abort on violation):
 * - kd_throttle_raise never reads or writes outside the frame, and changes
 *   at most the 4 bytes at the offset kd_throttle_offset gives;
 * - when it raises the field, the field then holds ms; raising it again
 *   to ms changes nothing;
 * - whenever the tree decoder decodes the body with its ThrottleTimeMs,
 *   the raise succeeds (1 or 0), and the body still decodes with
 *   ThrottleTimeMs >= ms; a version without the field is refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd-arena.h"
#include "kd-cur.h"
#include "kd-schema.h"
#include "kd-throttle.h"
#include "kd-tree.h"
#include "kd-walk.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 6)
		return 0;
	const struct kd_api *api = kd_api_get((int16_t)(data[0] % (kd_api_key_max + 1)));
	if (!api || api->resp.valid.lo < 0)
		return 0;
	int16_t key = api->key;
	int16_t ver =
	    (int16_t)(api->resp.valid.lo + data[1] % (api->resp.valid.hi - api->resp.valid.lo + 1));
	uint32_t ms = (uint32_t)kd_load_be(data + 2, 4) & 0x7fffffff;
	size_t blen = size - 6;
	size_t len = 8 + blen;
	uint8_t *frame = malloc(len), *orig = malloc(len);
	if (!frame || !orig)
		abort();
	memset(frame, 0, 8); /* size (unchecked here) and correlation id 0 */
	memcpy(frame + 8, data + 6, blen);
	memcpy(orig, frame, len);

	long off = kd_throttle_offset(key, ver, frame + 8, blen);
	int rc = kd_throttle_raise(key, ver, frame, len, 4, ms);
	check(rc == 0 || rc == 1 || rc < 0);
	if (rc == 1) {
		check(off >= 0 && (size_t)off + 4 <= blen);
		check(kd_load_be(frame + 8 + off, 4) == ms);
		check(!memcmp(frame, orig, 8 + (size_t)off) &&
		      !memcmp(frame + 12 + off, orig + 12 + off, blen - (size_t)off - 4));
		check(kd_throttle_raise(key, ver, frame, len, 4, ms) == 0);
	} else {
		check(!memcmp(frame, orig, len));
	}

	struct kd_arena a = {0};
	struct kd_tree t;
	if (kd_tree_decode(&t, &a, key, ver, 0, orig + 8, blen) == KD_OK) {
		/* (An ApiVersions error answer may be a shorter v0 body: the
		 * tree takes it without the field, and so is it left.) */
		int has = kd_node_child(t.root, "ThrottleTimeMs") != NULL;
		if (kd_body_field_index(key, ver, 0, "ThrottleTimeMs") < 0)
			check(rc == KD_EUNSUPPORTED);
		check(!has || rc == 0 || rc == 1);
		kd_arena_reset(&a);
		if (has) {
			check(kd_tree_decode(&t, &a, key, ver, 0, frame + 8, blen) == KD_OK);
			struct kd_node *n = kd_node_child(t.root, "ThrottleTimeMs");
			check(n && kd_node_int(n) >= (int64_t)ms);
		}
	}
	kd_arena_free(&a);
	free(frame);
	free(orig);
	return 0;
}
