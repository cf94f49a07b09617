/* kd-topics.c: see kd-topics.h.
 *
 * The table: open addressing over atomic pointers to immutable entries,
 * linear probing, at most half full, no deletions. A reader loads the table
 * pointer, then slots, with acquire loads, and stops at the first empty
 * slot or its id. A writer (under mu) fills an empty slot, or swaps a
 * renamed id's slot to a new entry, with release stores; the entry it
 * replaced goes on the retired list. When the table would pass half full,
 * the writer copies the pointers into a table twice the size, publishes it,
 * and retires the old one: a reader still probing the old table finds what
 * it held, which is all it could have found a moment earlier.
 *
 *   map->tab --> | mask | slot[0] slot[1] ... slot[mask] |
 *                          |                 |
 *                          v                 v
 *                     {id, len, name}   {id, len, name}     (immutable)
 */
#include "kd-topics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kd-arena.h"
#include "kd-hdr.h"
#include "kd-schema.h"
#include "kd-tree.h"

struct topic_ent {
	struct topic_ent *retired_next; /* on the retired list, once replaced */
	uint8_t id[16];
	uint16_t len;
	uint8_t name[];
};

struct topic_tab {
	struct topic_tab *retired_next;
	size_t mask;
	_Atomic(struct topic_ent *) slot[];
};

struct kd_topics {
	_Atomic(struct topic_tab *) tab;
	pthread_mutex_t mu; /* writers */
	_Atomic size_t n;
	_Atomic uint64_t refused;
	size_t renames;
	struct topic_ent *retired;
	struct topic_tab *retired_tabs;
};

#define TAB_MIN 256u

static size_t id_hash(const uint8_t id[16])
{
	/* Topic ids are random (v4 UUIDs): any 8 of their bytes hash well, but
	 * a hostile peer chooses its own, so mix all 16. */
	uint64_t a, b;
	memcpy(&a, id, 8);
	memcpy(&b, id + 8, 8);
	uint64_t x = (a ^ (b * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
	return (size_t)(x ^ (x >> 29));
}

static struct topic_tab *tab_new(size_t slots)
{
	struct topic_tab *t = calloc(1, sizeof(*t) + slots * sizeof(t->slot[0]));
	if (t)
		t->mask = slots - 1;
	return t;
}

struct kd_topics *kd_topics_new(void)
{
	struct kd_topics *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	struct topic_tab *t = tab_new(TAB_MIN);
	if (!t) {
		free(m);
		return NULL;
	}
	atomic_init(&m->tab, t);
	pthread_mutex_init(&m->mu, NULL);
	return m;
}

void kd_topics_free(struct kd_topics **pm)
{
	struct kd_topics *m = *pm;
	if (!m)
		return;
	struct topic_tab *t = atomic_load_explicit(&m->tab, memory_order_relaxed);
	for (size_t i = 0; i <= t->mask; i++)
		free(atomic_load_explicit(&t->slot[i], memory_order_relaxed));
	free(t);
	for (struct topic_ent *e = m->retired, *next; e; e = next) {
		next = e->retired_next;
		free(e);
	}
	for (struct topic_tab *o = m->retired_tabs, *next; o; o = next) {
		next = o->retired_next;
		free(o);
	}
	pthread_mutex_destroy(&m->mu);
	free(m);
	*pm = NULL;
}

/* The slot holding id in t, or the empty slot where it would go. */
static _Atomic(struct topic_ent *) *tab_find(struct topic_tab *t, const uint8_t id[16],
                                             struct topic_ent **found)
{
	for (size_t i = id_hash(id) & t->mask;; i = (i + 1) & t->mask) {
		struct topic_ent *e = atomic_load_explicit(&t->slot[i], memory_order_acquire);
		if (!e || !memcmp(e->id, id, 16)) {
			*found = e;
			return &t->slot[i];
		}
	}
}

struct kd_view kd_topics_get(const struct kd_topics *m, const uint8_t id[16])
{
	struct kd_view v = {NULL, 0, 1};
	if (!m)
		return v;
	/* Atomic loads take non-const pointers in some C libraries. */
	struct topic_tab *t =
	    atomic_load_explicit(&((struct kd_topics *)m)->tab, memory_order_acquire);
	struct topic_ent *e;
	tab_find(t, id, &e);
	if (e) {
		v.p = e->name;
		v.len = e->len;
		v.null = 0;
	}
	return v;
}

/* Under mu: a table twice the size holding every entry of the current one. */
static int tab_grow(struct kd_topics *m)
{
	struct topic_tab *old = atomic_load_explicit(&m->tab, memory_order_relaxed);
	struct topic_tab *t = tab_new((old->mask + 1) * 2);
	if (!t)
		return -1;
	for (size_t i = 0; i <= old->mask; i++) {
		struct topic_ent *e = atomic_load_explicit(&old->slot[i], memory_order_relaxed);
		if (!e)
			continue;
		struct topic_ent *dummy;
		atomic_store_explicit(tab_find(t, e->id, &dummy), e, memory_order_relaxed);
	}
	atomic_store_explicit(&m->tab, t, memory_order_release);
	old->retired_next = m->retired_tabs;
	m->retired_tabs = old;
	return 0;
}

int kd_topics_put(struct kd_topics *m, const uint8_t id[16], const uint8_t *name, size_t len)
{
	static const uint8_t zero[16];
	if (!memcmp(id, zero, 16) || !len || len > KD_TOPICS_NAME_MAX)
		return -1;
	int rc = -1;
	pthread_mutex_lock(&m->mu);
	struct topic_tab *t = atomic_load_explicit(&m->tab, memory_order_relaxed);
	struct topic_ent *old;
	_Atomic(struct topic_ent *) *slot = tab_find(t, id, &old);
	if (old && old->len == len && !memcmp(old->name, name, len)) {
		rc = 0;
		goto out;
	}
	size_t n = atomic_load_explicit(&m->n, memory_order_relaxed);
	if (old ? m->renames >= KD_TOPICS_MAX : n >= KD_TOPICS_MAX) {
		atomic_fetch_add_explicit(&m->refused, 1, memory_order_relaxed);
		goto out;
	}
	if (!old && (n + 1) * 2 > t->mask + 1) {
		if (tab_grow(m) < 0)
			goto out;
		t = atomic_load_explicit(&m->tab, memory_order_relaxed);
		slot = tab_find(t, id, &old);
	}
	struct topic_ent *e = malloc(sizeof(*e) + len);
	if (!e)
		goto out;
	e->retired_next = NULL;
	memcpy(e->id, id, 16);
	e->len = (uint16_t)len;
	memcpy(e->name, name, len);
	atomic_store_explicit(slot, e, memory_order_release);
	if (old) {
		old->retired_next = m->retired;
		m->retired = old;
		m->renames++;
	} else {
		atomic_store_explicit(&m->n, n + 1, memory_order_relaxed);
	}
	rc = 1;
out:
	pthread_mutex_unlock(&m->mu);
	return rc;
}

size_t kd_topics_count(const struct kd_topics *m)
{
	return m ? atomic_load_explicit(&((struct kd_topics *)m)->n, memory_order_relaxed) : 0;
}

uint64_t kd_topics_refused(const struct kd_topics *m)
{
	return m ? atomic_load_explicit(&((struct kd_topics *)m)->refused, memory_order_relaxed)
	         : 0;
}

size_t kd_topic_id_text(const uint8_t id[16], char buf[KD_TOPIC_ID_TEXT])
{
	/* URL-safe base64 without padding: 16 bytes are 5 groups of 3 and one
	 * byte left (two characters). */
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t n = sizeof(KD_TOPIC_ID_PREFIX) - 1;
	memcpy(buf, KD_TOPIC_ID_PREFIX, n);
	for (unsigned i = 0; i < 15; i += 3) {
		uint32_t x = (uint32_t)id[i] << 16 | (uint32_t)id[i + 1] << 8 | id[i + 2];
		buf[n++] = b64[x >> 18 & 63];
		buf[n++] = b64[x >> 12 & 63];
		buf[n++] = b64[x >> 6 & 63];
		buf[n++] = b64[x & 63];
	}
	buf[n++] = b64[id[15] >> 2];
	buf[n++] = b64[(id[15] & 3) << 4];
	buf[n] = 0;
	return n;
}

/* ---- learning, driven by the schema ---- */

static int is_topic_id(const struct kd_field *f)
{
	return f->type == KD_T_UUID && !strcmp(f->name, "TopicId");
}

static int is_topic_name(const struct kd_field *f)
{
	return f->type == KD_T_STRING && f->entity == KD_ENT_TOPIC_NAME;
}

/* Whether struct s, in version v, or a struct under it, has both fields. */
static int struct_pairs(const struct kd_struct *s, int16_t v, unsigned depth)
{
	int id = 0, name = 0;
	if (!s || depth > 16)
		return 0;
	for (unsigned i = 0; i < s->nfields; i++) {
		const struct kd_field *f = &s->fields[i];
		if (!kd_vers_has(f->versions, v))
			continue;
		id |= is_topic_id(f);
		name |= is_topic_name(f);
		if (f->sub && struct_pairs(f->sub, v, depth + 1))
			return 1;
	}
	return id && name;
}

#define WANTS_KEYS 128
#define WANTS_VERS 64

int kd_topics_wants(int16_t api_key, int16_t version)
{
	/* 0 not looked at yet, 1 no, 2 yes: a race only repeats the look. */
	static _Atomic uint8_t cache[WANTS_KEYS][WANTS_VERS];
	int cached = api_key >= 0 && api_key < WANTS_KEYS && version >= 0 && version < WANTS_VERS;
	if (cached) {
		uint8_t c = atomic_load_explicit(&cache[api_key][version], memory_order_relaxed);
		if (c)
			return c == 2;
	}
	const struct kd_msgdef *def = kd_msgdef_get(api_key, version, 0);
	int yes = def && struct_pairs(def->body, version, 0);
	if (cached)
		atomic_store_explicit(&cache[api_key][version], (uint8_t)(yes ? 2 : 1),
		                      memory_order_relaxed);
	return yes;
}

struct learn {
	struct kd_topics *map;
	int changed;
};

static int learn_node(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	struct learn *l = arg;
	(void)wc;
	if (n->type != KD_T_STRUCT || n->null)
		return 0;
	const struct kd_node *id = NULL, *name = NULL;
	for (uint32_t i = 0; i < n->nkids; i++) {
		const struct kd_node *k = &n->kids[i];
		if (!k->field)
			continue;
		if (!id && is_topic_id(k->field))
			id = k;
		else if (!name && is_topic_name(k->field) && !k->null)
			name = k;
	}
	if (id && name && kd_topics_put(l->map, id->val.uuid, name->val.v.p, name->val.v.len) > 0)
		l->changed++;
	return 0;
}

int kd_topics_learn_tree(struct kd_topics *map, const struct kd_tree *t)
{
	if (!map || !t->root || t->is_request || t->status != KD_OK)
		return 0;
	struct learn l = {map, 0};
	kd_tree_walk(t, learn_node, &l);
	return l.changed;
}

int kd_topics_learn_frame(struct kd_topics *map, int16_t api_key, int16_t api_version,
                          const uint8_t *frame, size_t len, struct kd_arena *a)
{
	if (!map || !kd_topics_wants(api_key, api_version))
		return 0;
	if (len < 4)
		return KD_ESHORT;
	struct kd_resp_hdr hdr;
	int rc = kd_resp_hdr_parse(frame + 4, len - 4, api_key, api_version, &hdr);
	if (rc == KD_NEED_MORE)
		return KD_ESHORT; /* a whole frame too short for its header */
	if (rc < 0)
		return rc;
	struct kd_arena own = {.limit = 256u << 20};
	struct kd_arena *arena = a ? a : &own;
	struct kd_tree t;
	rc = kd_tree_decode(&t, arena, api_key, api_version, 0, frame + 4 + hdr.len,
	                    len - 4 - hdr.len);
	if (rc == KD_OK)
		rc = kd_topics_learn_tree(map, &t);
	if (arena == &own)
		kd_arena_free(&own);
	else
		kd_arena_reset(arena);
	return rc;
}
