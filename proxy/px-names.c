/* px-names.c: a tenant's names mapped in requests and back in responses
 * (px-names.h). Whole frames: decoded as a tree (kd-tree.h), every name
 * the schema marks mapped (kd-names.h) through the rule (rule-names.h),
 * re-encoded; the header is kept byte for byte. */
#include <stdlib.h>
#include <string.h>

#include "kd-api-keys-gen.h"
#include "kd-build.h"
#include "kd-hdr.h"
#include "kd-schema.h"
#include "kd-tree.h"
#include "px-names.h"
#include "rule-names.h"
#include "rule.h"

/* A hostile message cannot build a tree larger than this. */
#define PX_NAMES_ARENA_LIMIT (256u << 20)

int px_names_refused_api(int16_t api_key, int16_t version)
{
	switch (api_key) {
	case KD_API_DESCRIBE_ACLS:
	case KD_API_CREATE_ACLS:
	case KD_API_DELETE_ACLS:
	case KD_API_ENVELOPE:
		return 1;
	case KD_API_CONSUMER_GROUP_HEARTBEAT:
		return version >= 1;
	default:
		break;
	}
	const char *name = kd_api_name(api_key);
	return name && strstr(name, "Share") != NULL; /* ShareGroup*, ShareFetch, ... */
}

int px_names_wants_request(int16_t api_key, int16_t version)
{
	return !kd_msgdef_get(api_key, version, 1) || px_names_refused_api(api_key, version) ||
	       kd_names_entities(api_key, version, 1);
}

int px_names_wants_response(int16_t api_key, int16_t version)
{
	return api_key == KD_API_API_VERSIONS || kd_names_entities(api_key, version, 0);
}

static int map_one(void *arg, int ent, const uint8_t *p, size_t len, struct kd_view *out)
{
	struct px_names *pn = arg;
	int kind = rule_names_kind(ent);
	if (kind < 0)
		return KD_NAME_SAME;
	return rule_names_map(pn->nm, kind, pn->to_cluster, p, len, pn->buf, sizeof(pn->buf), out);
}

/* Size, header bytes as they came, the tree re-encoded; appended to out. */
static int write_frame(struct px_names *pn, const uint8_t *frame, size_t hdr_len,
                       struct kd_wbuf *out)
{
	size_t start = out->len;
	kd_w_i32(out, 0);
	kd_w_raw(out, frame + 4, hdr_len);
	int rc = kd_tree_encode(&pn->tree, out);
	if (rc != KD_OK || out->err)
		return rc != KD_OK ? rc : out->err;
	kd_w_patch_be(out, start, 4, out->len - start - 4);
	return KD_OK;
}

static void start(struct px_names *pn, const struct rule *rule, int to_cluster)
{
	kd_arena_reset(&pn->arena);
	pn->arena.limit = PX_NAMES_ARENA_LIMIT;
	pn->nm = rule->names;
	pn->to_cluster = to_cluster;
}

int px_names_request(struct px_names *pn, const struct rule *rule, const uint8_t *frame, size_t len,
                     const struct kd_req_hdr *hdr, int no_response, int *coord_kt, int *bad,
                     struct kd_wbuf *out)
{
	int16_t key = hdr->api_key, ver = hdr->api_version;
	*coord_kt = -1;
	*bad = 0;
	if (!px_names_wants_request(key, ver))
		return PX_N_SAME;
	start(pn, rule, 1);
	const uint8_t *body = frame + 4 + hdr->len;
	int rc = kd_tree_decode(&pn->tree, &pn->arena, key, ver, 1, body, len - 4 - hdr->len);
	if (rc == KD_ENOMEM)
		return rc;
	if (rc != KD_OK) {
		*bad = 1;
		return PX_N_CLOSE;
	}
	if (key == KD_API_FIND_COORDINATOR) {
		struct kd_node *kt = kd_node_child(pn->tree.root, "KeyType");
		*coord_kt = kt ? (int)kd_node_int(kt) : KD_COORD_GROUP;
	}
	const char *why = NULL;
	if (px_names_refused_api(key, ver)) {
		why = "this API is not available to clients whose names kwire maps";
	} else {
		rc = kd_names_map_tree(&pn->tree, map_one, pn, *coord_kt, &pn->res);
		if (rc == KD_ENOMEM)
			return rc;
		if (rc != KD_OK || pn->res.hidden)
			why = "a name is outside this client's namespace (kwire rewrite rule)";
	}
	if (why) {
		if (no_response)
			return PX_N_DROP;
		/* The answer mirrors the request as the client wrote it. */
		rc = kd_tree_decode(&pn->tree, &pn->arena, key, ver, 1, body, len - 4 - hdr->len);
		/* The authorization error Kafka uses for the resource the API
		 * names, as `deny: true` gives (rule_deny_error). */
		static const struct rule auto_deny = {.deny = RULE_DENY_AUTO};
		int16_t err = px_names_refused_api(key, ver) ? 35 /* UNSUPPORTED_VERSION */
		                                             : rule_deny_error(&auto_deny, key);
		pn->error = err;
		if (rc == KD_OK)
			rc = kd_build_error_response(&pn->tree, hdr->correlation_id, err, why,
			                             &pn->arena, out);
		return rc == KD_OK ? PX_N_REFUSE : (rc == KD_ENOMEM ? rc : KD_EMALFORMED);
	}
	if (!pn->res.mapped)
		return PX_N_SAME;
	rc = write_frame(pn, frame, hdr->len, out);
	return rc == KD_OK ? PX_N_MAPPED : rc;
}

/* ApiVersions for a mapped client: the APIs it may not use go. */
static int clamp_apis(struct px_names *pn)
{
	struct kd_node *keys = kd_node_child(pn->tree.root, "ApiKeys");
	int changed = 0;
	for (uint32_t i = 0; keys && i < keys->nkids; i++) {
		struct kd_node *e = &keys->kids[i];
		struct kd_node *k = kd_node_child(e, "ApiKey");
		struct kd_node *lo = kd_node_child(e, "MinVersion");
		struct kd_node *hi = kd_node_child(e, "MaxVersion");
		if (!k || !lo || !hi)
			continue;
		int16_t key = (int16_t)kd_node_int(k);
		int64_t max = kd_node_int(hi);
		while (max >= kd_node_int(lo) && px_names_refused_api(key, (int16_t)max))
			max--;
		if (max == kd_node_int(hi))
			continue;
		changed = 1;
		if (max < kd_node_int(lo))
			kd_node_array_remove(keys, i--);
		else
			kd_node_set_int(hi, max);
	}
	return changed;
}

int px_names_response(struct px_names *pn, const struct rule *rule, int16_t api_key,
                      int16_t version, int coord_kt, const uint8_t *frame, size_t len,
                      struct kd_wbuf *out)
{
	struct kd_resp_hdr hdr;
	if (!px_names_wants_response(api_key, version))
		return 0;
	if (len < 4)
		return KD_EMALFORMED;
	int rc = kd_resp_hdr_parse(frame + 4, len - 4, api_key, version, &hdr);
	if (rc < 0 || rc == KD_NEED_MORE)
		return rc == KD_NEED_MORE ? KD_ESHORT : rc;
	start(pn, rule, 0);
	rc = kd_tree_decode(&pn->tree, &pn->arena, api_key, version, 0, frame + 4 + hdr.len,
	                    len - 4 - hdr.len);
	if (api_key == KD_API_API_VERSIONS) {
		/* An error answer in a body of its own (v0 fallback) lists
		 * nothing to clamp; kwire's own clamp judged it already. */
		if (rc != KD_OK || pn->tree.v0_fallback || !clamp_apis(pn))
			return 0;
	} else {
		if (rc != KD_OK)
			return rc;
		rc = kd_names_map_tree(&pn->tree, map_one, pn, coord_kt, &pn->res);
		if (rc != KD_OK)
			return rc;
		if (!pn->res.mapped && !pn->res.removed)
			return 0;
	}
	rc = write_frame(pn, frame, hdr.len, out);
	return rc == KD_OK ? 1 : rc;
}

/* ---- splicing ---- */

int px_names_splices(int16_t api_key, int16_t version, int is_request)
{
	if (is_request)
		return api_key == KD_API_PRODUCE;
	return api_key == KD_API_FETCH && kd_names_entities(api_key, version, 0);
}

/* The walk's value callback: a name ends at the walk's offset. */
static void sp_value(void *arg, unsigned depth, const struct kd_field *f, const uint8_t *p,
                     size_t len)
{
	struct px_names_sp *sp = arg;
	struct kd_walk *w = &sp->walk;
	(void)depth;
	if (!f || f->type == KD_T_UUID || sp->bad)
		return;
	int kind = rule_names_kind(f->entity);
	if (kind < 0)
		return;
	if (sp->produce && f->entity == KD_ENT_TOPIC_NAME) {
		if (kd_walk_elems_after(w))
			sp->named_more = 1;
		else
			sp->named_all = 1;
	}
	if (!len)
		return; /* an empty name names nothing */
	struct kd_view out;
	int rc = rule_names_map(sp->pn->nm, kind, sp->pn->to_cluster, p, len, sp->pn->buf,
	                        sizeof(sp->pn->buf), &out);
	if (rc == RULE_N_HIDDEN) {
		sp->bad = 1;
		return;
	}
	if (rc != RULE_N_MAPPED)
		return;
	if (sp->ned == sp->cap) {
		unsigned ncap = sp->cap ? 2 * sp->cap : 16;
		struct px_names_edit *n = realloc(sp->ed, ncap * sizeof(*n));
		if (!n) {
			sp->bad = 1;
			return;
		}
		sp->ed = n;
		sp->cap = ncap;
	}
	int compact = kd_field_compact(f, w->version, w->flex);
	if (!compact && out.len > INT16_MAX) {
		sp->bad = 1;
		return;
	}
	struct px_names_edit *e = &sp->ed[sp->ned++];
	e->len = (uint32_t)(w->tok_len + len);
	e->off = sp->body_at + (uint32_t)w->off - e->len;
	e->at = (uint32_t)sp->bytes.len;
	if (compact)
		kd_w_uvarint(&sp->bytes, out.len + 1);
	else
		kd_w_i16(&sp->bytes, (int16_t)out.len);
	kd_w_raw(&sp->bytes, out.p, out.len);
	e->nlen = (uint32_t)sp->bytes.len - e->at;
	sp->delta += (int64_t)e->nlen - e->len;
	if (sp->bytes.err)
		sp->bad = 1;
}

int px_names_sp_init(struct px_names_sp *sp, struct px_names *pn, const struct rule *rule,
                     int16_t api_key, int16_t version, int is_request, uint32_t body_at,
                     uint32_t body_len)
{
	struct kd_wbuf b = sp->bytes;
	struct px_names_edit *ed = sp->ed;
	unsigned cap = sp->cap;
	memset(sp, 0, sizeof(*sp));
	sp->ed = ed;
	sp->cap = cap;
	b.len = 0;
	b.err = 0;
	sp->bytes = b;
	sp->pn = pn;
	pn->nm = rule->names;
	pn->to_cluster = is_request;
	sp->body_at = body_at;
	sp->produce = is_request && api_key == KD_API_PRODUCE;
	int rc = kd_walk_init(&sp->walk, api_key, version, is_request, body_len);
	if (rc != KD_OK) {
		sp->bad = 1;
		return rc;
	}
	kd_walk_capture(&sp->walk, (1u << KD_ENT_TOPIC_NAME) | (1u << KD_ENT_GROUP_ID) |
	                               (1u << KD_ENT_TRANSACTIONAL_ID));
	kd_walk_on_value(&sp->walk, sp_value, sp);
	return KD_OK;
}

int px_names_sp_feed(struct px_names_sp *sp, const uint8_t *p, size_t n)
{
	while (n && !sp->ended) {
		size_t used = 0;
		int rc = kd_walk_feed(&sp->walk, p, n, &used);
		p += used;
		n -= used;
		if (rc == KD_WALK_STOP)
			continue;
		if (rc == KD_WALK_END) {
			sp->ended = 1;
			break;
		}
		if (rc != KD_NEED_MORE) {
			sp->bad = 1;
			return rc;
		}
	}
	if (sp->walk.missed)
		sp->bad = 1;
	return sp->ended ? KD_WALK_END : KD_NEED_MORE;
}

void px_names_sp_free(struct px_names_sp *sp)
{
	free(sp->ed);
	kd_wbuf_free(&sp->bytes);
	memset(sp, 0, sizeof(*sp));
}

void px_names_free(struct px_names *pn)
{
	kd_arena_free(&pn->arena);
	kd_wbuf_free(&pn->out);
	px_names_sp_free(&pn->sp);
}
