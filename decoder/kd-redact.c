/* kd-redact.c: zeroing the sensitive fields of a frame (kd-redact.h). */
#include <string.h>

#include "kd-arena.h"
#include "kd-hdr.h"
#include "kd-redact.h"
#include "kd-schema.h"
#include "kd-tree.h"

struct redact {
	const uint8_t *lo, *hi; /* the body, where views point */
	uint8_t *body;          /* the same bytes, writable */
	int zeroed;
};

static int redact_node(void *arg, struct kd_node *node, const struct kd_walk_ctx *wc)
{
	struct redact *r = arg;
	(void)wc;
	if (!node->field || !node->field->sensitive || node->null)
		return 0;
	if ((node->type == KD_T_STRING || node->type == KD_T_BYTES) && node->val.v.p &&
	    node->val.v.p >= r->lo && node->val.v.p + node->val.v.len <= r->hi) {
		memset(r->body + (node->val.v.p - r->lo), 0, node->val.v.len);
		r->zeroed = 1;
	}
	return KD_WALK_SKIP;
}

int kd_redact_frame(uint8_t *frame, size_t len, int16_t key, int16_t ver, int is_request,
                    struct kd_arena *a)
{
	if (len <= 4)
		return 0;
	if (key < 0) { /* a SASL v0 token: all of it is the secret */
		memset(frame + 4, 0, len - 4);
		return 1;
	}
	if (!kd_api_sensitive(key))
		return 0;
	size_t hlen = 0;
	int rc;
	if (is_request) {
		struct kd_req_hdr h;
		rc = kd_req_hdr_parse(frame + 4, len - 4, &h);
		hlen = rc > 0 ? (size_t)rc : 0;
	} else {
		struct kd_resp_hdr h;
		rc = kd_resp_hdr_parse(frame + 4, len - 4, key, ver, &h);
		hlen = rc > 0 ? (size_t)rc : 0;
	}
	if (!hlen) {
		memset(frame + 4, 0, len - 4);
		return 1;
	}
	uint8_t *body = frame + 4 + hlen;
	size_t blen = len - 4 - hlen;
	struct kd_tree t;
	struct redact r = {body, body + blen, body, 0};
	if (kd_tree_decode(&t, a, key, ver, is_request, body, blen) == KD_OK)
		kd_tree_walk(&t, redact_node, &r);
	else if (blen) {
		memset(body, 0, blen);
		r.zeroed = 1;
	}
	kd_arena_reset(a);
	return r.zeroed;
}
