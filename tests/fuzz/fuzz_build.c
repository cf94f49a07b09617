/* fuzz_build.c: the error-response builder (kd-build.h) on arbitrary
 * requests. Input: API key (2 bytes), version (1 byte), then the request
 * body. A body that decodes is answered; the answer must decode with the
 * tree decoder, carry the error in every ErrorCode, and name every topic
 * of the request's topic array when its response has one. */
#include <stdlib.h>
#include <string.h>

#include "kd-arena.h"
#include "kd-build.h"
#include "kd-hdr.h"
#include "kd-schema.h"
#include "kd-tree.h"

struct walk {
	unsigned bad;
	const struct kd_tree *other;
	unsigned missing;
};

static int check_err(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	(void)wc;
	struct walk *w = arg;
	if (n->type == KD_T_INT16 && n->field && strstr(n->field->name, "ErrorCode") &&
	    !(n->flags & KD_NF_TAGGED) && n->val.i != 29)
		w->bad++;
	return 0;
}

static int find_name(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	(void)wc;
	const struct kd_view *want = arg;
	/* 2 stops the walk (1 would be KD_WALK_SKIP). */
	return n->type == KD_T_STRING && !n->null && n->val.v.len == want->len &&
	               (!want->len || !memcmp(n->val.v.p, want->p, want->len))
	           ? 2
	           : 0;
}

/* The topic name of an element of the request's topic array (its own
 * field, depth 1 under it) must be in the answer. */
static int echo(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	struct walk *w = arg;
	if (wc->depth == 1 && n->type == KD_T_STRING && !n->null && n->field &&
	    n->field->entity == KD_ENT_TOPIC_NAME) {
		struct kd_view v = n->val.v;
		if (!kd_tree_walk_entity(w->other, KD_ENT_TOPIC_NAME, find_name, &v))
			w->missing++;
	}
	return wc->depth >= 1 ? KD_WALK_SKIP : 0;
}

static int has_top_topic_array(const struct kd_tree *t)
{
	for (uint32_t i = 0; t->root && i < t->root->nkids; i++) {
		const struct kd_node *k = &t->root->kids[i];
		if (k->type != KD_T_ARRAY || !k->field->sub)
			continue;
		for (unsigned j = 0; j < k->field->sub->nfields; j++) {
			const struct kd_field *f = &k->field->sub->fields[j];
			if (f->entity == KD_ENT_TOPIC_NAME && f->type == KD_T_STRING &&
			    kd_vers_has(f->versions, t->version))
				return 1;
		}
	}
	return 0;
}

/* Drops every third topic, errors every third, keeps the rest. */
static int filter_cb(void *arg, struct kd_view name, const uint8_t *id, int16_t *error,
                     const char **msg)
{
	(void)name;
	(void)id;
	unsigned *seen = arg;
	unsigned i = (*seen)++;
	*error = 29;
	*msg = i % 2 ? "hidden" : NULL;
	return i % 3 == 0 ? KD_FILTER_DROP : i % 3 == 1 ? KD_FILTER_ERROR : KD_FILTER_KEEP;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kd_arena a;
	if (size < 3)
		return 0;
	int16_t key = (int16_t)((data[0] << 8) | data[1]);
	int16_t ver = data[2];
	a.limit = 64u << 20;
	struct kd_tree req, resp;
	if (kd_tree_decode(&req, &a, key, ver, 1, data + 3, size - 3) != KD_OK) {
		kd_arena_reset(&a);
		return 0;
	}
	struct kd_wbuf w = {0};
	int rc = kd_build_error_response(&req, 7, 29, "fuzz", &a, &w);
	if (rc == KD_OK) {
		struct kd_resp_hdr hdr;
		if (kd_resp_hdr_parse(w.p + 4, w.len - 4, key, ver, &hdr) < 0)
			abort();
		if (hdr.correlation_id != 7)
			abort();
		if (kd_tree_decode(&resp, &a, key, ver, 0, w.p + 4 + hdr.len,
		                   w.len - 4 - hdr.len) != KD_OK)
			abort();
		struct walk wk = {.other = &resp};
		kd_tree_walk(&resp, check_err, &wk);
		if (wk.bad)
			abort();
		/* The answer mirrors the request's topic array (kd-build.h: its
		 * first one, e.g. Fetch's Topics, not ForgottenTopicsData). */
		struct kd_node *arr = kd_build_topic_array(&req);
		if (has_top_topic_array(&resp) && arr) {
			for (uint32_t i = 0; i < arr->nkids; i++)
				kd_node_walk(&arr->kids[i], echo, &wk);
			if (wk.missing)
				abort();
		}
		/* Topics filtered out of the answer (kd_build_filter_topics):
		 * it still encodes and decodes, with the kept ones alone. */
		unsigned seen = 0, dropped = 0, errored = 0;
		if (kd_build_filter_topics(&resp, filter_cb, &seen, &dropped, &errored) == KD_OK) {
			struct kd_wbuf f = {0};
			struct kd_tree again;
			if (kd_tree_encode(&resp, &f) != KD_OK ||
			    kd_tree_decode(&again, &a, key, ver, 0, f.p, f.len) != KD_OK)
				abort();
			struct kd_node *fa = kd_build_topic_array(&again);
			if (dropped + errored > seen || (fa && fa->nkids != seen - dropped))
				abort();
			kd_wbuf_free(&f);
		}
	} else if (rc != KD_ELIMIT && rc != KD_ENOMEM && rc != KD_EUNSUPPORTED) {
		abort();
	}
	kd_wbuf_free(&w);
	kd_arena_reset(&a);
	return 0;
}
