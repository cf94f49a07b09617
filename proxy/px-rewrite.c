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
#include "kd-walk.h"
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

/* Decodes body (blen bytes) of a response of (key, version), rewrites
 * every address through map, and when one changed appends the encoded
 * body to out. Returns 1 (changed), 0 (unchanged, out untouched), or a
 * negative KD_E*. */
static int rewrite_body(int16_t key, int16_t version, const uint8_t *body, size_t blen,
                        px_addr_map_fn map, void *arg, struct kd_wbuf *out)
{
	struct kd_arena arena = {.limit = PX_REWRITE_ARENA_LIMIT};
	struct kd_tree t;
	int rc = kd_tree_decode(&t, &arena, key, version, 0, body, blen);
	if (rc != KD_OK)
		goto out;
	struct addr_walk aw = {&t, map, arg, 0, KD_OK};
	kd_tree_walk(&t, addr_node, &aw);
	rc = aw.rc != KD_OK ? aw.rc : aw.changed;
	if (rc == 1) {
		int erc = kd_tree_encode(&t, out);
		if (erc != KD_OK || out->err)
			rc = erc != KD_OK ? erc : out->err;
	}
out:
	kd_arena_free(&arena);
	return rc;
}

size_t px_body_fields_end(int16_t key, int16_t version, const uint8_t *body, size_t len)
{
	struct kd_walk w;
	size_t used;
	if (kd_walk_init(&w, key, version, 0, len) != KD_OK ||
	    kd_walk_feed(&w, body, len, &used) != KD_WALK_END)
		return len;
	return (size_t)w.off;
}

/* Undoes what a failed or unneeded rewrite appended to out from start:
 * an out that was empty is as it was (nothing allocated). */
static void undo(struct kd_wbuf *out, size_t start)
{
	if (!start)
		kd_wbuf_free(out);
	else
		out->len = start;
}

/* Patches the INT32 size at out->p[start] to what follows it. */
static int patch_size(struct kd_wbuf *out, size_t start)
{
	if (out->err)
		return out->err;
	size_t total = out->len - start - 4;
	if (total > INT32_MAX)
		return KD_ELIMIT;
	kd_w_patch_be(out, start, 4, total);
	return KD_OK;
}

int px_rewrite_response(int16_t key, int16_t version, const uint8_t *frame, size_t len,
                        px_addr_map_fn map, void *arg, struct kd_wbuf *out)
{
	struct kd_resp_hdr hdr;
	if (!px_rewrite_wanted(key, version))
		return 0;
	int rc = split_frame(key, version, frame, len, &hdr);
	if (rc < 0)
		return rc;
	const uint8_t *body = frame + 4 + hdr.len;
	size_t blen = len - 4 - hdr.len;
	/* Bytes after the body's fields are kept as they came (Kafka's own
	 * parsers ignore them; docs/proxy.md): only the fields are decoded. */
	size_t fields = px_body_fields_end(key, version, body, blen);
	size_t start = out->len;
	kd_w_i32(out, 0); /* size, patched below */
	kd_w_raw(out, frame + 4, hdr.len);
	rc = rewrite_body(key, version, body, fields, map, arg, out);
	if (rc == 1) {
		kd_w_raw(out, body + fields, blen - fields);
		int prc = patch_size(out, start);
		if (prc != KD_OK)
			rc = prc;
	}
	if (rc != 1)
		undo(out, start);
	return rc;
}

int px_rewrite_prefix(int16_t key, int16_t version, const uint8_t *frame, size_t len,
                      const char *next, px_addr_map_fn map, void *arg, struct kd_wbuf *out)
{
	struct kd_resp_hdr hdr;
	struct kd_wbuf syn = {0};
	int32_t size;
	int from = kd_body_field_index(key, version, 0, next);
	if (from < 0 || len < 4)
		return KD_EUNSUPPORTED;
	size = (int32_t)kd_load_be(frame, 4);
	int rc = kd_resp_hdr_parse(frame + 4, len - 4, key, version, &hdr);
	if (rc == KD_NEED_MORE)
		return KD_ESHORT;
	if (rc < 0)
		return rc;
	size_t plen = len - 4 - hdr.len;
	/* The prefix, completed with the defaults of the fields from next on
	 * (empty arrays, zeros), is a whole body for the tree decoder. The
	 * defaults hold no address and re-encode as they were. */
	kd_w_raw(&syn, frame + 4 + hdr.len, plen);
	rc = kd_body_defaults(key, version, 0, (unsigned)from, UINT16_MAX, 1, &syn);
	if (rc != KD_OK)
		goto out;
	size_t start = out->len;
	kd_w_i32(out, 0);
	kd_w_raw(out, frame + 4, hdr.len);
	size_t bstart = out->len;
	rc = rewrite_body(key, version, syn.p, syn.len, map, arg, out);
	if (rc == 1) {
		size_t tail = syn.len - plen;
		size_t nlen = out->len - bstart;
		if (nlen < tail || memcmp(out->p + out->len - tail, syn.p + plen, tail)) {
			rc = KD_EMALFORMED; /* cannot happen: the defaults were not edited */
		} else {
			out->len -= tail;
			int64_t nsize = (int64_t)size + (int64_t)(nlen - tail) - (int64_t)plen;
			if (out->err || nsize < 0 || nsize > INT32_MAX)
				rc = out->err ? out->err : KD_ELIMIT;
			else
				kd_w_patch_be(out, start, 4, (uint64_t)nsize);
		}
	}
	if (rc != 1)
		undo(out, start);
out:
	kd_wbuf_free(&syn);
	return rc;
}

int px_rewrite_tail(int16_t key, int16_t version, const uint8_t *tail, size_t len,
                    px_addr_map_fn map, void *arg, struct kd_wbuf *out)
{
	struct kd_wbuf syn = {0};
	/* Defaults for every regular field, then the real tagged section. */
	int rc = kd_body_defaults(key, version, 0, 0, UINT16_MAX, 0, &syn);
	if (rc != KD_OK)
		goto out;
	size_t head = syn.len;
	kd_w_raw(&syn, tail, len);
	if (syn.err) {
		rc = syn.err;
		goto out;
	}
	struct kd_wbuf body = {0};
	rc = rewrite_body(key, version, syn.p, syn.len, map, arg, &body);
	if (rc == 1) {
		if (body.len < head || memcmp(body.p, syn.p, head))
			rc = KD_EMALFORMED; /* cannot happen: the defaults were not edited */
		else
			kd_w_raw(out, body.p + head, body.len - head);
		if (out->err)
			rc = out->err;
	}
	kd_wbuf_free(&body);
out:
	kd_wbuf_free(&syn);
	return rc;
}

/* Lists SaslHandshake v0-1 and SaslAuthenticate v0-2, the versions kwire
 * answers itself when it terminates SASL (px-sasl.c), whatever the broker
 * offers (librdkafka's mock cluster offers neither). Returns 1 when the
 * list changed, 0 when not, or a negative KD_E*. */
static int sasl_keys(struct kd_tree *t, struct kd_node *keys)
{
	static const int16_t want[][3] = {{KD_API_SASL_HANDSHAKE, 0, 1},
	                                  {KD_API_SASL_AUTHENTICATE, 0, 2}};
	int changed = 0;
	for (size_t w = 0; w < 2; w++) {
		struct kd_node *el = NULL;
		for (uint32_t i = 0; i < keys->nkids && !el; i++) {
			struct kd_node *k = kd_node_child(kd_node_elem(keys, i), "ApiKey");
			if (k && kd_node_int(k) == want[w][0])
				el = kd_node_elem(keys, i);
		}
		if (!el) {
			el = kd_node_array_add(t, keys, UINT32_MAX);
			if (!el)
				return KD_ENOMEM;
			changed = 1;
		}
		struct kd_node *k = kd_node_child(el, "ApiKey"),
		               *lo = kd_node_child(el, "MinVersion"),
		               *hi = kd_node_child(el, "MaxVersion");
		if (!k || !lo || !hi)
			return KD_EMALFORMED;
		if (kd_node_int(k) != want[w][0] || kd_node_int(lo) != want[w][1] ||
		    kd_node_int(hi) != want[w][2]) {
			if (kd_node_set_int(k, want[w][0]) != KD_OK ||
			    kd_node_set_int(lo, want[w][1]) != KD_OK ||
			    kd_node_set_int(hi, want[w][2]) != KD_OK)
				return KD_EMALFORMED;
			changed = 1;
		}
	}
	return changed;
}

int px_clamp_apiversions(int16_t version, const uint8_t *frame, size_t len, struct kd_wbuf *out)
{
	return px_edit_apiversions(version, frame, len, 1, 0, out);
}

int px_edit_apiversions(int16_t version, const uint8_t *frame, size_t len, int clamp, int sasl,
                        struct kd_wbuf *out)
{
	struct kd_arena arena = {.limit = PX_REWRITE_ARENA_LIMIT};
	struct kd_tree t;
	struct kd_resp_hdr hdr;
	int changed = 0, rc;

	rc = split_frame(KD_API_API_VERSIONS, version, frame, len, &hdr);
	if (rc < 0)
		return rc;
	const uint8_t *body = frame + 4 + hdr.len;
	size_t blen = len - 4 - hdr.len, fields = blen;
	rc = kd_tree_decode(&t, &arena, KD_API_API_VERSIONS, version, 0, body, blen);
	if (rc == KD_EMALFORMED) {
		/* Bytes after the body's fields? Tried only when the whole body
		 * fails, so that the v0 layout of an error answer (KIP-511) is
		 * never cut short by a walk in the asked version's layout. */
		fields = px_body_fields_end(KD_API_API_VERSIONS, version, body, blen);
		if (fields < blen) {
			kd_arena_free(&arena);
			arena.limit = PX_REWRITE_ARENA_LIMIT;
			rc = kd_tree_decode(&t, &arena, KD_API_API_VERSIONS, version, 0, body,
			                    fields);
		}
	}
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
	for (uint32_t i = clamp ? keys->nkids : 0; i-- > 0;) {
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
	struct kd_node *ec = kd_node_child(t.root, "ErrorCode");
	if (sasl && (!ec || kd_node_int(ec) == 0)) {
		/* an error answer lists what to retry with: left alone */
		rc = sasl_keys(&t, keys);
		if (rc < 0)
			goto out;
		changed |= rc;
	}
	if (!changed) {
		rc = 0;
		goto out;
	}
	size_t start = out->len;
	kd_w_i32(out, 0); /* size, patched below */
	kd_w_raw(out, frame + 4, hdr.len);
	rc = kd_tree_encode(&t, out);
	kd_w_raw(out, body + fields, blen - fields);
	if (rc == KD_OK)
		rc = patch_size(out, start);
	if (rc == KD_OK)
		rc = 1;
	else
		undo(out, start);
out:
	kd_arena_free(&arena);
	return rc;
}
