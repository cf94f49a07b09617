/* test_px_rewrite.c: px_rewrite_response and px_clamp_apiversions on real
 * frames built through the tree API, for every version of every response
 * that carries broker addresses (WIRE-NOTES.md section 6).
 *
 * A frame is made by laying out a default body from the schema tables
 * (zeros, empty strings, empty arrays; the top-level tagged fields
 * present and empty), decoding it into a tree, adding elements with
 * kd_node_array_add and setting their fields, and re-encoding. The output
 * of the rewrite is then decoded again and every Host/Port checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kd-arena.h"
#include "kd-hdr.h"
#include "kd-schema.h"
#include "kd-tree.h"
#include "kd-walk.h"
#include "px.h"

#define NB 3 /* brokers per message */

/* ---- default bodies from the schema ---- */

static void gen_struct(struct kd_wbuf *w, const struct kd_struct *st, int v, int flex, int tags);

static int field_compact(const struct kd_field *f, int v, int flex)
{
	return f->has_flex ? kd_vers_has(f->flexible, v) : flex;
}

static void gen_value(struct kd_wbuf *w, const struct kd_field *f, int v, int flex)
{
	int compact = field_compact(f, v, flex);
	switch (f->type) {
	case KD_T_BOOL:
	case KD_T_INT8:
		kd_w_i8(w, 0);
		break;
	case KD_T_INT16:
	case KD_T_UINT16:
		kd_w_i16(w, 0);
		break;
	case KD_T_INT32:
	case KD_T_UINT32:
		kd_w_i32(w, 0);
		break;
	case KD_T_INT64:
	case KD_T_FLOAT64:
		kd_w_i64(w, 0);
		break;
	case KD_T_UUID: {
		uint8_t z[16] = {0};
		kd_w_raw(w, z, 16);
		break;
	}
	case KD_T_STRING:
		kd_w_len(w, compact, 2, 0);
		break;
	case KD_T_BYTES:
	case KD_T_RECORDS:
		kd_w_len(w, compact, 4, 0);
		break;
	case KD_T_STRUCT:
		if (kd_vers_has(f->nullable, v))
			kd_w_i8(w, 1);
		gen_struct(w, f->sub, v, flex, 0);
		break;
	case KD_T_ARRAY:
		kd_w_len(w, compact, 4, 0);
		break;
	default:
		fail_msg("field %s: unexpected type %d", f->name, f->type);
	}
}

/* tags: emit every field tagged in v (ascending tags) with its default. */
static void gen_struct(struct kd_wbuf *w, const struct kd_struct *st, int v, int flex, int tags)
{
	for (unsigned i = 0; i < st->nfields; i++) {
		const struct kd_field *f = &st->fields[i];
		if (!kd_vers_has(f->versions, v) || (f->tag >= 0 && kd_vers_has(f->tagged, v)))
			continue;
		gen_value(w, f, v, flex);
	}
	if (!flex)
		return;
	const struct kd_field *tf[16];
	unsigned nt = 0;
	for (unsigned i = 0; tags && i < st->nfields && nt < 16; i++) {
		const struct kd_field *f = &st->fields[i];
		if (kd_vers_has(f->versions, v) && f->tag >= 0 && kd_vers_has(f->tagged, v))
			tf[nt++] = f;
	}
	for (unsigned i = 1; i < nt; i++) /* insertion sort by tag */
		for (unsigned j = i; j > 0 && tf[j - 1]->tag > tf[j]->tag; j--) {
			const struct kd_field *x = tf[j];
			tf[j] = tf[j - 1];
			tf[j - 1] = x;
		}
	kd_w_uvarint(w, nt);
	for (unsigned i = 0; i < nt; i++) {
		struct kd_wbuf pw = {0};
		gen_value(&pw, tf[i], v, 1); /* tagged payloads are always compact */
		kd_w_uvarint(w, (uint32_t)tf[i]->tag);
		kd_w_uvarint(w, (uint32_t)pw.len);
		kd_w_raw(w, pw.p, pw.len);
		kd_wbuf_free(&pw);
	}
}

/* A response frame: size | header of (key, v) | body. */
static void make_frame(struct kd_wbuf *frame, int16_t key, int16_t v, int32_t corr,
                       const uint8_t *body, size_t len)
{
	struct kd_wbuf hw = {0};
	struct kd_resp_hdr hdr;
	memset(&hdr, 0, sizeof(hdr));
	hdr.correlation_id = corr;
	hdr.hdr_version = (uint8_t)kd_resp_hdr_version(key, v);
	kd_resp_hdr_write(&hw, &hdr);
	kd_w_i32(frame, (int32_t)(hw.len + len));
	kd_w_raw(frame, hw.p, hw.len);
	kd_w_raw(frame, body, len);
	assert_int_equal(frame->err, KD_OK);
	kd_wbuf_free(&hw);
}

static void set_str(struct kd_tree *t, struct kd_node *n, const char *s)
{
	assert_non_null(n);
	assert_int_equal(kd_node_set_str(t, n, s, strlen(s)), KD_OK);
}

static void set_int(struct kd_node *n, int64_t v)
{
	assert_non_null(n);
	assert_int_equal(kd_node_set_int(n, v), KD_OK);
}

/* Fills one address struct: NodeId/BrokerId i, real host and port. */
static void fill_addr(struct kd_tree *t, struct kd_node *el, int i)
{
	char host[64], rack[24];
	struct kd_node *id = kd_node_child(el, "NodeId");
	if (!id)
		id = kd_node_child(el, "BrokerId");
	set_int(id, i);
	snprintf(host, sizeof(host), "real-broker-%d.internal.example", i);
	set_str(t, kd_node_child(el, "Host"), host);
	set_int(kd_node_child(el, "Port"), 9000 + i);
	struct kd_node *r = kd_node_child(el, "Rack");
	if (r) {
		snprintf(rack, sizeof(rack), "rack-%d", i);
		set_str(t, r, rack);
	}
}

/* The name of the array that holds addresses in (key, v), or NULL when
 * they are top-level fields (FindCoordinator v0-3). */
static const char *addr_array(int16_t key, int16_t v)
{
	switch (key) {
	case 3:
	case 60:
		return "Brokers";
	case 10:
		return v >= 4 ? "Coordinators" : NULL;
	default:
		return "NodeEndpoints";
	}
}

/* Builds the frame of (key, v) with NB brokers (one for FindCoordinator
 * v0-3) and a topic in Metadata, as real bytes. */
static void build(int16_t key, int16_t v, struct kd_wbuf *frame)
{
	const struct kd_msgdef *def = kd_msgdef_get(key, v, 0);
	assert_non_null(def);
	int flex = kd_vers_has(def->flexible, v);
	struct kd_wbuf body = {0}, body2 = {0};
	gen_struct(&body, def->body, v, flex, 1);
	assert_int_equal(body.err, KD_OK);

	struct kd_arena arena = {0};
	struct kd_tree t;
	int rc = kd_tree_decode(&t, &arena, key, v, 0, body.p, body.len);
	if (rc != KD_OK)
		fail_msg("key %d v%d: default body does not decode: %s", key, v, t.err_msg);
	const char *an = addr_array(key, v);
	if (an) {
		struct kd_node *arr = kd_node_child(t.root, an);
		if (!arr)
			fail_msg("key %d v%d: no %s", key, v, an);
		for (int i = 0; i < NB; i++) {
			assert_non_null(kd_node_array_add(&t, arr, UINT32_MAX));
			arr = kd_node_child(t.root, an); /* look up again after growth */
			fill_addr(&t, kd_node_elem(arr, (uint32_t)i), i + 1);
			if (key == 10)
				set_str(&t, kd_node_child(kd_node_elem(arr, (uint32_t)i), "Key"),
				        "grp");
		}
	} else {
		fill_addr(&t, t.root, 2);
	}
	if (key == 3) {
		struct kd_node *topics = kd_node_child(t.root, "Topics");
		struct kd_node *tp = kd_node_array_add(&t, topics, UINT32_MAX);
		assert_non_null(tp);
		set_str(&t, kd_node_child(tp, "Name"), "orders");
	}
	assert_int_equal(kd_tree_encode(&t, &body2), KD_OK);
	make_frame(frame, key, v, 77, body2.p, body2.len);
	kd_wbuf_free(&body);
	kd_wbuf_free(&body2);
	kd_arena_free(&arena);
}

/* ---- the map under test ---- */

struct map_state {
	int calls;
	int seen[16];
};

static int test_map(void *arg, int32_t node_id, const struct kd_view *host, int32_t port,
                    char out_host[PX_HOST_MAX], int32_t *out_port)
{
	struct map_state *ms = arg;
	char want[64];
	snprintf(want, sizeof(want), "real-broker-%d.internal.example", node_id);
	/* The map is handed the real address. */
	assert_int_equal(host->len, strlen(want));
	assert_memory_equal(host->p, want, host->len);
	assert_int_equal(port, 9000 + node_id);
	ms->calls++;
	if (node_id >= 0 && node_id < 16)
		ms->seen[node_id]++;
	snprintf(out_host, PX_HOST_MAX, "proxy.example");
	*out_port = 20000 + node_id;
	return 0;
}

struct check_state {
	int addrs;
	int racks;
};

static int check_node(void *arg, struct kd_node *node, const struct kd_walk_ctx *wc)
{
	struct check_state *cs = arg;
	(void)wc;
	if (node->type != KD_T_STRUCT)
		return 0;
	struct kd_node *host = kd_node_child(node, "Host");
	if (!host)
		return 0;
	struct kd_node *id = kd_node_child(node, "NodeId");
	if (!id)
		id = kd_node_child(node, "BrokerId");
	struct kd_node *port = kd_node_child(node, "Port");
	assert_non_null(id);
	assert_non_null(port);
	assert_int_equal(host->val.v.len, strlen("proxy.example"));
	assert_memory_equal(host->val.v.p, "proxy.example", host->val.v.len);
	assert_int_equal(kd_node_int(port), 20000 + kd_node_int(id));
	struct kd_node *rack = kd_node_child(node, "Rack");
	if (rack) {
		char want[24];
		snprintf(want, sizeof(want), "rack-%d", (int)kd_node_int(id));
		assert_int_equal(rack->val.v.len, strlen(want));
		assert_memory_equal(rack->val.v.p, want, rack->val.v.len);
		cs->racks++;
	}
	cs->addrs++;
	return 0;
}

static int contains(const uint8_t *p, size_t len, const char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i + n <= len; i++)
		if (!memcmp(p + i, s, n))
			return 1;
	return 0;
}

/* Rewrites one (key, v) frame and checks every address in the output. */
static void check_version(int16_t key, int16_t v)
{
	struct kd_wbuf frame = {0}, out = {0};
	build(key, v, &frame);
	assert_true(contains(frame.p, frame.len, "real-broker-"));
	assert_int_equal(px_rewrite_wanted(key, v), 1);

	struct map_state ms;
	memset(&ms, 0, sizeof(ms));
	int rc = px_rewrite_response(key, v, frame.p, frame.len, test_map, &ms, &out);
	if (rc != 1)
		fail_msg("key %d v%d: rewrite returned %d", key, v, rc);
	int want = addr_array(key, v) ? NB : 1;
	assert_int_equal(ms.calls, want);

	/* Size prefix fixed, header verbatim, no real address left. */
	struct kd_cur cur;
	int32_t size;
	kd_cur_init(&cur, out.p, out.len);
	assert_int_equal(kd_cur_i32(&cur, &size), KD_OK);
	assert_int_equal((size_t)size, out.len - 4);
	struct kd_resp_hdr hdr;
	int hl = kd_resp_hdr_parse(out.p + 4, out.len - 4, key, v, &hdr);
	assert_true(hl > 0);
	assert_int_equal(hdr.correlation_id, 77);
	assert_memory_equal(out.p + 4, frame.p + 4, (size_t)hl);
	assert_false(contains(out.p, out.len, "real-broker-"));

	struct kd_arena arena = {0};
	struct kd_tree t;
	rc = kd_tree_decode(&t, &arena, key, v, 0, out.p + 4 + hl, out.len - 4 - (size_t)hl);
	if (rc != KD_OK)
		fail_msg("key %d v%d: output does not decode: %s", key, v, t.err_msg);
	struct check_state cs = {0, 0};
	kd_tree_walk(&t, check_node, &cs);
	assert_int_equal(cs.addrs, want);
	if (key == 3) {
		struct kd_node *tp = kd_node_elem(kd_node_child(t.root, "Topics"), 0);
		struct kd_node *name = kd_node_child(tp, "Name");
		assert_int_equal(name->val.v.len, 6);
		assert_memory_equal(name->val.v.p, "orders", 6);
	}
	kd_arena_free(&arena);
	kd_wbuf_free(&out);
	kd_wbuf_free(&frame);
}

static int echo_map(void *arg, int32_t node_id, const struct kd_view *host, int32_t port,
                    char out_host[PX_HOST_MAX], int32_t *out_port);

/* Body offset of key's stop point (Metadata: before Topics; Produce and
 * Fetch: the top-level tagged section) and where the fields end. */
static void stop_point(int16_t key, int16_t v, const uint8_t *body, size_t len, size_t *stop,
                       size_t *end)
{
	struct kd_walk w;
	size_t used;
	assert_int_equal(kd_walk_init(&w, key, v, 0, len), KD_OK);
	if (key == 3)
		assert_int_equal(kd_walk_stop_before(&w, "Topics"), KD_OK);
	else
		assert_int_equal(kd_walk_stop_at_tags(&w), KD_OK);
	assert_int_equal(kd_walk_feed(&w, body, len, &used), KD_WALK_STOP);
	*stop = (size_t)w.off;
	assert_int_equal(kd_walk_feed(&w, body + used, len - used, &used), KD_WALK_END);
	*end = (size_t)w.off;
}

/* The streamed rewrites give the same bytes as the whole-frame one:
 * Metadata's rewritten prefix followed by the rest as it came; Produce's
 * and Fetch's body up to the tagged section, the rewritten section, and
 * the frame size fixed by the section's change in length. Bytes after
 * the body are kept in every case. */
static void check_parts(int16_t key, int16_t v, int extra)
{
	struct kd_wbuf frame = {0}, whole = {0}, part = {0}, joined = {0};
	struct map_state ms;
	build(key, v, &frame);
	for (int i = 0; i < extra; i++)
		kd_w_i8(&frame, (int8_t)(0x5a + i));
	kd_w_patch_be(&frame, 0, 4, frame.len - 4);
	memset(&ms, 0, sizeof(ms));
	if (px_rewrite_response(key, v, frame.p, frame.len, test_map, &ms, &whole) != 1)
		fail_msg("key %d v%d (+%d): whole rewrite failed", key, v, extra);
	assert_memory_equal(whole.p + whole.len - (size_t)extra,
	                    frame.p + frame.len - (size_t)extra, (size_t)extra);
	struct kd_resp_hdr hdr;
	int hl = kd_resp_hdr_parse(frame.p + 4, frame.len - 4, key, v, &hdr);
	assert_true(hl > 0);
	size_t body = 4 + (size_t)hl, stop, end;
	stop_point(key, v, frame.p + body, frame.len - body, &stop, &end);
	assert_int_equal(end, frame.len - body - (size_t)extra);
	memset(&ms, 0, sizeof(ms));
	if (key == 3) {
		assert_int_equal(
		    px_rewrite_prefix(key, v, frame.p, body + stop, "Topics", test_map, &ms, &part),
		    1);
		kd_w_raw(&joined, part.p, part.len);
		kd_w_raw(&joined, frame.p + body + stop, frame.len - body - stop);
	} else {
		assert_int_equal(px_rewrite_tail(key, v, frame.p + body + stop, end - stop,
		                                 test_map, &ms, &part),
		                 1);
		kd_w_raw(&joined, frame.p, body + stop);
		kd_w_raw(&joined, part.p, part.len);
		kd_w_raw(&joined, frame.p + body + end, frame.len - body - end);
		kd_w_patch_be(&joined, 0, 4, joined.len - 4);
	}
	assert_int_equal(joined.len, whole.len);
	assert_memory_equal(joined.p, whole.p, whole.len);
	/* Unchanged addresses: nothing to write. */
	kd_wbuf_free(&part);
	if (key == 3)
		assert_int_equal(px_rewrite_prefix(key, v, frame.p, body + stop, "Topics", echo_map,
		                                   NULL, &part),
		                 0);
	else
		assert_int_equal(px_rewrite_tail(key, v, frame.p + body + stop, end - stop,
		                                 echo_map, NULL, &part),
		                 0);
	assert_int_equal(part.len, 0);
	kd_wbuf_free(&frame);
	kd_wbuf_free(&whole);
	kd_wbuf_free(&part);
	kd_wbuf_free(&joined);
}

static void test_streamed_parts(void **state)
{
	(void)state;
	for (int extra = 0; extra <= 2; extra++) {
		for (int v = 0; v <= kd_api_get(3)->resp.valid.hi; v++)
			check_parts(3, (int16_t)v, extra);
		for (int v = 10; v <= kd_api_get(0)->resp.valid.hi; v++)
			check_parts(0, (int16_t)v, extra);
		for (int v = 16; v <= kd_api_get(1)->resp.valid.hi; v++)
			check_parts(1, (int16_t)v, extra);
	}
}

/* A response with bytes after its body (librdkafka 2.12's mock cluster
 * writes Metadata v12's tagged section twice): rewritten, the extra bytes
 * kept byte for byte, for every API kwire rewrites. */
static void test_trailing_bytes(void **state)
{
	(void)state;
	static const int16_t keys[][2] = {{3, 12}, {3, 1}, {10, 3}, {10, 4}, {60, 0}};
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		int16_t key = keys[k][0], v = keys[k][1];
		struct kd_wbuf frame = {0}, plain = {0}, out = {0};
		struct map_state ms;
		build(key, v, &frame);
		memset(&ms, 0, sizeof(ms));
		assert_int_equal(
		    px_rewrite_response(key, v, frame.p, frame.len, test_map, &ms, &plain), 1);
		kd_w_i8(&frame, 0);
		kd_w_patch_be(&frame, 0, 4, frame.len - 4);
		memset(&ms, 0, sizeof(ms));
		if (px_rewrite_response(key, v, frame.p, frame.len, test_map, &ms, &out) != 1)
			fail_msg("key %d v%d with a trailing byte: not rewritten", key, v);
		assert_int_equal(out.len, plain.len + 1);
		assert_int_equal(kd_load_be(out.p, 4), out.len - 4);
		assert_memory_equal(out.p + 4, plain.p + 4, plain.len - 4);
		assert_int_equal(out.p[out.len - 1], 0);
		kd_wbuf_free(&frame);
		kd_wbuf_free(&plain);
		kd_wbuf_free(&out);
	}
}

static int echo_map(void *arg, int32_t node_id, const struct kd_view *host, int32_t port,
                    char out_host[PX_HOST_MAX], int32_t *out_port)
{
	(void)arg;
	(void)node_id;
	snprintf(out_host, PX_HOST_MAX, "%.*s", (int)host->len, (const char *)host->p);
	*out_port = port;
	return 0;
}

static void test_metadata_all_versions(void **state)
{
	(void)state;
	const struct kd_api *api = kd_api_get(3);
	assert_non_null(api);
	assert_true(api->resp.valid.hi >= 12);
	for (int v = api->resp.valid.lo; v <= api->resp.valid.hi; v++)
		check_version(3, (int16_t)v);
}

static void test_find_coordinator_all_versions(void **state)
{
	(void)state;
	const struct kd_api *api = kd_api_get(10);
	assert_non_null(api);
	assert_true(api->resp.valid.hi >= 6);
	for (int v = api->resp.valid.lo; v <= api->resp.valid.hi; v++)
		check_version(10, (int16_t)v);
}

static void test_describe_cluster(void **state)
{
	(void)state;
	const struct kd_api *api = kd_api_get(60);
	assert_non_null(api);
	for (int v = api->resp.valid.lo; v <= api->resp.valid.hi; v++)
		check_version(60, (int16_t)v);
}

static void test_produce_fetch_node_endpoints(void **state)
{
	(void)state;
	const struct kd_api *produce = kd_api_get(0), *fetch = kd_api_get(1);
	for (int v = 10; v <= produce->resp.valid.hi; v++)
		check_version(0, (int16_t)v);
	for (int v = 16; v <= fetch->resp.valid.hi; v++)
		check_version(1, (int16_t)v);
	/* Before KIP-951 there is nothing to rewrite: not even decoded. */
	assert_int_equal(px_rewrite_wanted(0, 9), 0);
	assert_int_equal(px_rewrite_wanted(1, 15), 0);
	assert_int_equal(px_rewrite_wanted(18, 3), 0);
}

static void test_unchanged_and_errors(void **state)
{
	(void)state;
	struct kd_wbuf frame = {0}, out = {0};
	build(3, 12, &frame);
	/* A map that answers the same address: nothing changes, out untouched. */
	assert_int_equal(px_rewrite_response(3, 12, frame.p, frame.len, echo_map, NULL, &out), 0);
	assert_int_equal(out.len, 0);
	/* Every truncation is an error, never a partial rewrite. */
	for (size_t cut = 0; cut < frame.len; cut++) {
		uint8_t *p = malloc(cut ? cut : 1);
		memcpy(p, frame.p, cut);
		if (cut >= 4) { /* keep the size prefix consistent with the cut */
			uint32_t s = (uint32_t)(cut - 4);
			p[0] = (uint8_t)(s >> 24);
			p[1] = (uint8_t)(s >> 16);
			p[2] = (uint8_t)(s >> 8);
			p[3] = (uint8_t)s;
		}
		int rc = px_rewrite_response(3, 12, p, cut, echo_map, NULL, &out);
		assert_true(rc < 0);
		assert_int_equal(out.len, 0);
		free(p);
	}
	kd_wbuf_free(&frame);
}

/* ---- ApiVersions ---- */

static void apiversions_frame(int16_t v, const int16_t (*keys)[3], unsigned n, int16_t error,
                              int16_t body_version, struct kd_wbuf *frame)
{
	const struct kd_msgdef *def = kd_msgdef_get(18, body_version, 0);
	int flex = kd_vers_has(def->flexible, body_version);
	struct kd_wbuf body = {0}, body2 = {0};
	gen_struct(&body, def->body, body_version, flex, 0);
	struct kd_arena arena = {0};
	struct kd_tree t;
	assert_int_equal(kd_tree_decode(&t, &arena, 18, body_version, 0, body.p, body.len), KD_OK);
	set_int(kd_node_child(t.root, "ErrorCode"), error);
	for (unsigned i = 0; i < n; i++) {
		struct kd_node *arr = kd_node_child(t.root, "ApiKeys");
		struct kd_node *el = kd_node_array_add(&t, arr, UINT32_MAX);
		assert_non_null(el);
		set_int(kd_node_child(el, "ApiKey"), keys[i][0]);
		set_int(kd_node_child(el, "MinVersion"), keys[i][1]);
		set_int(kd_node_child(el, "MaxVersion"), keys[i][2]);
	}
	assert_int_equal(kd_tree_encode(&t, &body2), KD_OK);
	make_frame(frame, 18, v, 5, body2.p, body2.len);
	kd_wbuf_free(&body);
	kd_wbuf_free(&body2);
	kd_arena_free(&arena);
}

/* Range of key in an ApiVersions frame's output; 0 when absent. */
static int find_range(int16_t v, const struct kd_wbuf *out, int16_t key, int64_t *lo, int64_t *hi)
{
	struct kd_arena arena = {0};
	struct kd_tree t;
	int found = 0;
	/* ApiVersions responses always use response header v0 (KIP-511). */
	assert_int_equal(kd_tree_decode(&t, &arena, 18, v, 0, out->p + 8, out->len - 8), KD_OK);
	struct kd_node *arr = kd_node_child(t.root, "ApiKeys");
	for (uint32_t i = 0; i < arr->nkids; i++) {
		struct kd_node *el = kd_node_elem(arr, i);
		if (kd_node_int(kd_node_child(el, "ApiKey")) == key) {
			*lo = kd_node_int(kd_node_child(el, "MinVersion"));
			*hi = kd_node_int(kd_node_child(el, "MaxVersion"));
			found = 1;
		}
	}
	kd_arena_free(&arena);
	return found;
}

static void test_apiversions_clamp(void **state)
{
	(void)state;
	const struct kd_api *produce = kd_api_get(0), *fetch = kd_api_get(1), *md = kd_api_get(3);
	/* A broker newer than kwire: Produce and Fetch beyond the tables, an
	 * API key kwire does not know, one range that does not overlap. */
	const int16_t keys[][3] = {
	    {0, 0, (int16_t)(produce->req.valid.hi + 5)},
	    {1, 4, (int16_t)(fetch->req.valid.hi + 3)},
	    {3, 0, md->req.valid.hi},
	    {18, 0, 3},
	    {29999, 0, 7},
	    {12, 50, 60},
	};
	for (int16_t v = 0; v <= kd_api_get(18)->resp.valid.hi; v++) {
		struct kd_wbuf frame = {0}, out = {0};
		apiversions_frame(v, keys, 6, 0, v, &frame);
		int rc = px_clamp_apiversions(v, frame.p, frame.len, &out);
		assert_int_equal(rc, 1);
		int64_t lo, hi;
		assert_true(find_range(v, &out, 0, &lo, &hi));
		assert_int_equal(lo, 0);
		assert_int_equal(hi, produce->req.valid.hi);
		/* zstd needs Produce v7+ and Fetch v10+: still offered. */
		assert_true(hi >= 7);
		assert_true(find_range(v, &out, 1, &lo, &hi));
		assert_int_equal(lo, 4);
		assert_int_equal(hi, fetch->req.valid.hi);
		assert_true(hi >= 10);
		assert_true(find_range(v, &out, 3, &lo, &hi));
		assert_int_equal(hi, md->req.valid.hi);
		assert_true(find_range(v, &out, 29999, &lo, &hi)); /* unknown: untouched */
		assert_int_equal(lo, 0);
		assert_int_equal(hi, 7);
		assert_false(find_range(v, &out, 12, &lo, &hi)); /* no common version */
		int32_t size = (int32_t)((uint32_t)out.p[0] << 24 | (uint32_t)out.p[1] << 16 |
		                         (uint32_t)out.p[2] << 8 | out.p[3]);
		assert_int_equal((size_t)size, out.len - 4);
		assert_memory_equal(out.p + 4, frame.p + 4, 4); /* correlation id */

		/* Within kwire's tables already: unchanged. */
		struct kd_wbuf f2 = {0}, o2 = {0};
		apiversions_frame(v, keys + 2, 2, 0, v, &f2);
		assert_int_equal(px_clamp_apiversions(v, f2.p, f2.len, &o2), 0);
		assert_int_equal(o2.len, 0);
		kd_wbuf_free(&f2);
		kd_wbuf_free(&frame);
		kd_wbuf_free(&out);
	}
}

static void test_apiversions_v0_fallback(void **state)
{
	(void)state;
	/* A broker that does not know ApiVersions v3 answers with a v0 body
	 * and UNSUPPORTED_VERSION (WIRE-NOTES.md section 2). */
	const int16_t keys[][3] = {{0, 0, 99}, {18, 0, 2}};
	struct kd_wbuf frame = {0}, out = {0};
	apiversions_frame(3, keys, 2, 35, 0, &frame);
	int rc = px_clamp_apiversions(3, frame.p, frame.len, &out);
	assert_int_equal(rc, 1);
	int64_t lo, hi;
	assert_true(find_range(0, &out, 0, &lo, &hi)); /* still a v0 body */
	assert_int_equal(hi, kd_api_get(0)->req.valid.hi);
	kd_wbuf_free(&frame);
	kd_wbuf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_metadata_all_versions),
	    cmocka_unit_test(test_find_coordinator_all_versions),
	    cmocka_unit_test(test_describe_cluster),
	    cmocka_unit_test(test_produce_fetch_node_endpoints),
	    cmocka_unit_test(test_unchanged_and_errors),
	    cmocka_unit_test(test_streamed_parts),
	    cmocka_unit_test(test_trailing_bytes),
	    cmocka_unit_test(test_apiversions_clamp),
	    cmocka_unit_test(test_apiversions_v0_fallback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
