/* px-rewrite.c: the two response edits kwire makes so that clients stay on
 * the proxy: broker addresses (WIRE-NOTES.md section 6) and ApiVersions
 * clamping. Both decode the body into a tree (kd-tree.h), edit it and
 * re-encode; the frame size is recomputed. No I/O here.
 *
 *   frame:  INT32 size | response header (v0/v1) | body
 *                        copied verbatim          re-encoded
 */
#include <string.h>

#include "kd-arena.h"
#include "kd-hdr.h"
#include "kd-schema.h"
#include "kd-tree.h"
#include "px.h"

/* A decoded tree bigger than this is refused (hostile or absurd frames). */
#define PX_REWRITE_ARENA_LIMIT (256u * 1024 * 1024)

int px_rewrite_wanted(int16_t key, int16_t version)
{
	switch (key) {
	case KD_API_METADATA:
	case KD_API_FIND_COORDINATOR:
	case KD_API_DESCRIBE_CLUSTER:
		return 1;
	case KD_API_PRODUCE: /* KIP-951 NodeEndpoints, tagged, ProduceResponse v10+ */
		return version >= 10;
	case KD_API_FETCH: /* KIP-951 NodeEndpoints, tagged, FetchResponse v16+ */
		return version >= 16;
	default:
		return 0;
	}
}

/* Splits a frame into header and body. Returns the header length or a
 * negative KD_E*. */
static int split_frame(int16_t key, int16_t version, const uint8_t *frame, size_t len,
                       struct kd_resp_hdr *hdr)
{
	struct kd_cur cur;
	int32_t size;
	kd_cur_init(&cur, frame, len);
	if (kd_cur_i32(&cur, &size) != KD_OK || size < 0 || (size_t)size != len - 4)
		return KD_EMALFORMED;
	int rc = kd_resp_hdr_parse(frame + 4, len - 4, key, version, hdr);
	if (rc == KD_NEED_MORE)
		return KD_ESHORT;
	return rc;
}

/* out = size | frame header bytes | encoded tree. The tree is encoded
 * once; the size is written after it, into the 4 bytes kept for it. */
static int write_frame(const uint8_t *frame, const struct kd_resp_hdr *hdr, const struct kd_tree *t,
                       struct kd_wbuf *out)
{
	size_t start = out->len;
	kd_w_i32(out, 0); /* size, patched below */
	kd_w_raw(out, frame + 4, hdr->len);
	int rc = kd_tree_encode(t, out);
	if (rc != KD_OK)
		return rc;
	if (out->err)
		return out->err;
	size_t total = out->len - start - 4;
	if (total > INT32_MAX)
		return KD_ELIMIT;
	kd_w_patch_be(out, start, 4, total);
	return KD_OK;
}

struct addr_walk {
	struct kd_tree *t;
	px_addr_map_fn map;
	void *arg;
	int changed;
	int rc;
};

/* Every struct with Host and Port next to NodeId (Metadata, FindCoordinator,
 * Produce/Fetch NodeEndpoints) or BrokerId (DescribeCluster). */
static int addr_node(void *arg, struct kd_node *node, const struct kd_walk_ctx *wc)
{
	struct addr_walk *aw = arg;
	(void)wc;
	if (node->type != KD_T_STRUCT)
		return 0;
	struct kd_node *host = kd_node_child(node, "Host");
	struct kd_node *port = kd_node_child(node, "Port");
	if (!host || !port || host->type != KD_T_STRING)
		return 0;
	struct kd_node *id = kd_node_child(node, "NodeId");
	if (!id)
		id = kd_node_child(node, "BrokerId");
	if (!id)
		return 0;
	char nhost[PX_HOST_MAX];
	int32_t nport = 0;
	struct kd_view hv = host->val.v;
	if (aw->map(aw->arg, (int32_t)kd_node_int(id), &hv, (int32_t)kd_node_int(port), nhost,
	            &nport))
		return 0;
	size_t nlen = strnlen(nhost, sizeof(nhost));
	if (host->null || hv.len != nlen || memcmp(hv.p, nhost, nlen)) {
		int rc = kd_node_set_str(aw->t, host, nhost, nlen);
		if (rc != KD_OK) {
			aw->rc = rc;
			return 2;
		}
		aw->changed = 1;
	}
	if (kd_node_int(port) != nport) {
		int rc = kd_node_set_int(port, nport);
		if (rc != KD_OK) {
			aw->rc = rc;
			return 2;
		}
		aw->changed = 1;
	}
	return 0;
}

int px_rewrite_response(int16_t key, int16_t version, const uint8_t *frame, size_t len,
                        px_addr_map_fn map, void *arg, struct kd_wbuf *out)
{
	struct kd_arena arena = {.limit = PX_REWRITE_ARENA_LIMIT};
	struct kd_tree t;
	struct kd_resp_hdr hdr;
	int rc;

	if (!px_rewrite_wanted(key, version))
		return 0;
	rc = split_frame(key, version, frame, len, &hdr);
	if (rc < 0)
		return rc;
	rc = kd_tree_decode(&t, &arena, key, version, 0, frame + 4 + hdr.len, len - 4 - hdr.len);
	if (rc != KD_OK)
		goto out;
	struct addr_walk aw = {&t, map, arg, 0, KD_OK};
	kd_tree_walk(&t, addr_node, &aw);
	if (aw.rc != KD_OK) {
		rc = aw.rc;
		goto out;
	}
	if (!aw.changed) {
		rc = 0;
		goto out;
	}
	rc = write_frame(frame, &hdr, &t, out);
	if (rc == KD_OK)
		rc = 1;
out:
	kd_arena_free(&arena);
	return rc;
}

int px_clamp_apiversions(int16_t version, const uint8_t *frame, size_t len, struct kd_wbuf *out)
{
	struct kd_arena arena = {.limit = PX_REWRITE_ARENA_LIMIT};
	struct kd_tree t;
	struct kd_resp_hdr hdr;
	int changed = 0, rc;

	rc = split_frame(KD_API_API_VERSIONS, version, frame, len, &hdr);
	if (rc < 0)
		return rc;
	rc = kd_tree_decode(&t, &arena, KD_API_API_VERSIONS, version, 0, frame + 4 + hdr.len,
	                    len - 4 - hdr.len);
	if (rc != KD_OK) {
		/* An error answer carries no ranges to clamp, only a request
		 * to retry with a lower ApiVersions version, which kwire then
		 * clamps; brokers write UNSUPPORTED_VERSION in a body of their
		 * own choosing (KIP-511: v0; librdkafka's mock cluster has its
		 * own), so pass it through (0). Only an undecodable success
		 * answer is an error (rc < 0): the proxy does not forward it
		 * and closes the connection (docs/proxy.md). */
		int16_t error = 0;
		if (kd_body_error_code(KD_API_API_VERSIONS, version, 0, frame + 4 + hdr.len,
		                       len - 4 - hdr.len, &error) == KD_OK &&
		    error != 0)
			rc = 0;
		goto out;
	}
	struct kd_node *keys = kd_node_child(t.root, "ApiKeys");
	if (!keys || keys->type != KD_T_ARRAY || keys->null) {
		rc = 0;
		goto out;
	}
	/* Backwards, so that removing element i leaves 0..i-1 in place. */
	for (uint32_t i = keys->nkids; i-- > 0;) {
		struct kd_node *el = kd_node_elem(keys, i);
		struct kd_node *k = kd_node_child(el, "ApiKey");
		struct kd_node *lo = kd_node_child(el, "MinVersion");
		struct kd_node *hi = kd_node_child(el, "MaxVersion");
		if (!k || !lo || !hi)
			continue;
		const struct kd_api *api = kd_api_get((int16_t)kd_node_int(k));
		if (!api || api->req.valid.lo < 0)
			continue; /* a key kwire does not know passes through */
		int64_t nlo = kd_node_int(lo), nhi = kd_node_int(hi);
		if (nlo < api->req.valid.lo)
			nlo = api->req.valid.lo;
		if (nhi > api->req.valid.hi)
			nhi = api->req.valid.hi;
		if (nlo > nhi) {
			/* No version both sides know: the client must not use it. */
			rc = kd_node_array_remove(keys, i);
			if (rc != KD_OK)
				goto out;
			changed = 1;
			continue;
		}
		if (nlo != kd_node_int(lo) || nhi != kd_node_int(hi)) {
			if (kd_node_set_int(lo, nlo) != KD_OK ||
			    kd_node_set_int(hi, nhi) != KD_OK) {
				rc = KD_EMALFORMED;
				goto out;
			}
			changed = 1;
		}
	}
	if (!changed) {
		rc = 0;
		goto out;
	}
	rc = write_frame(frame, &hdr, &t, out);
	if (rc == KD_OK)
		rc = 1;
out:
	kd_arena_free(&arena);
	return rc;
}
