/* rule-index.c: the candidate lists of a compiled rule set (rule-index.h).
 *
 * Built once per load; read-only afterwards, like the rest of the set, so
 * any number of threads walk it without a lock. */
#include <stdlib.h>
#include <string.h>

#include "kd-names.h"
#include "kd-schema.h"
#include "rule-index.h"
#include "rule.h"

/* Rule positions, ascending. */
struct ix_list {
	uint32_t *v;
	uint32_t n, cap;
};

/* One key of a string index: an exact name, or a literal prefix. key
 * points into the pattern's text, which lives as long as the set. */
struct ix_ent {
	const uint8_t *key;
	uint32_t len;
	uint32_t hash;
	uint8_t prefix;
	struct ix_list l;
};

/* Exact names and literal prefixes of one matcher (topic or client id),
 * in an open-addressing table. */
struct ix_str {
	struct ix_ent *ents;
	uint32_t nents, cap;
	int32_t *slots; /* index into ents, -1 empty; power of two */
	uint32_t nslots;
	uint8_t plens[RULE_IX_PLENS]; /* distinct prefix lengths, ascending */
	unsigned nplens;
	uint32_t nexact;
};

struct ix_sec {
	struct ix_str topic, client;
	struct ix_list *api; /* per API key */
	unsigned napi;
	struct ix_list any;
	struct ix_list all; /* every rule of the section */
};

struct rule_index {
	struct ix_sec sec[RULE_NSECTIONS];
	/* The rules that need the body, from every section, filed without a
	 * topic list (only header facts are known when it is asked). */
	struct ix_sec body;
	/* Per API key: every rule that needs the body of its requests reads
	 * only topic names (rule_set_names_only). */
	uint8_t *names_only;
	unsigned nnames;
};

/* ---- hashing: FNV-1a, computed along the name once for every prefix ---- */

static inline uint32_t h_step(uint32_t h, uint8_t c)
{
	return (h ^ c) * 16777619u;
}

static inline uint32_t h_final(uint32_t h, int prefix)
{
	h ^= prefix ? 0x9e3779b9u : 0;
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	return h;
}

static uint32_t h_key(const uint8_t *p, size_t len, int prefix)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = h_step(h, p[i]);
	return h_final(h, prefix);
}

/* ---- building ---- */

static int list_add(struct ix_list *l, uint32_t pos)
{
	if (l->n && l->v[l->n - 1] == pos)
		return 0; /* two patterns of one rule under one key */
	if (l->n == l->cap) {
		uint32_t cap = l->cap ? l->cap * 2 : 4;
		uint32_t *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = pos;
	return 0;
}

static int32_t str_find(const struct ix_str *s, const uint8_t *p, size_t len, int prefix,
                        uint32_t h)
{
	if (!s->nslots)
		return -1;
	for (uint32_t j = h & (s->nslots - 1);; j = (j + 1) & (s->nslots - 1)) {
		int32_t e = s->slots[j];
		if (e < 0)
			return -1;
		const struct ix_ent *ent = &s->ents[e];
		if (ent->hash == h && ent->len == len && ent->prefix == prefix &&
		    (!len || !memcmp(ent->key, p, len)))
			return e;
	}
}

static int str_rehash(struct ix_str *s)
{
	uint32_t n = s->nslots ? s->nslots * 2 : 16;
	int32_t *slots = malloc(n * sizeof(*slots));
	if (!slots)
		return -1;
	memset(slots, 0xff, n * sizeof(*slots));
	for (uint32_t e = 0; e < s->nents; e++) {
		uint32_t j = s->ents[e].hash & (n - 1);
		while (slots[j] >= 0)
			j = (j + 1) & (n - 1);
		slots[j] = (int32_t)e;
	}
	free(s->slots);
	s->slots = slots;
	s->nslots = n;
	return 0;
}

static int str_add(struct ix_str *s, const uint8_t *p, size_t len, int prefix, uint32_t pos)
{
	uint32_t h = h_key(p, len, prefix);
	int32_t e = str_find(s, p, len, prefix, h);
	if (e < 0) {
		if ((s->nents + 1) * 2 > s->nslots && str_rehash(s))
			return -1;
		if (s->nents == s->cap) {
			uint32_t cap = s->cap ? s->cap * 2 : 8;
			struct ix_ent *v = realloc(s->ents, cap * sizeof(*v));
			if (!v)
				return -1;
			s->ents = v;
			s->cap = cap;
		}
		e = (int32_t)s->nents++;
		s->ents[e] = (struct ix_ent){
		    .key = p, .len = (uint32_t)len, .hash = h, .prefix = (uint8_t)prefix};
		uint32_t j = h & (s->nslots - 1);
		while (s->slots[j] >= 0)
			j = (j + 1) & (s->nslots - 1);
		s->slots[j] = e;
		if (!prefix) {
			s->nexact++;
		} else {
			unsigned i = 0;
			while (i < s->nplens && s->plens[i] < len)
				i++;
			if (i == s->nplens || s->plens[i] != len) {
				memmove(s->plens + i + 1, s->plens + i, s->nplens - i);
				s->plens[i] = (uint8_t)len;
				s->nplens++;
			}
		}
	}
	return list_add(&s->ents[e].l, pos);
}

/* The literal text a glob's matches all start with. fnmatch (no flags)
 * treats '*', '?', '[' and '\\' specially; everything before the first of
 * them matches itself. */
static size_t glob_prefix(const struct rule_pat *pat)
{
	size_t n = strcspn(pat->s, "*?[\\");
	return n > RULE_IX_PLENS ? RULE_IX_PLENS : n;
}

/* The literal text every match of a regex starts with (the regex is
 * anchored, rule-load.c): the characters before the first one ERE treats
 * specially, less the last when a quantifier follows it ("ab*" may match
 * "a"). None when it has an alternation anywhere ("a|b" matches "b"). */
static size_t regex_prefix(const struct rule_pat *pat)
{
	if (strchr(pat->s, '|'))
		return 0;
	size_t n = strcspn(pat->s, "\\.[]()*+?{}^$");
	if (n && pat->s[n] && strchr("*+?{", pat->s[n]))
		n--;
	return n > RULE_IX_PLENS ? RULE_IX_PLENS : n;
}

static size_t pat_prefix(const struct rule_pat *pat)
{
	return pat->kind == RULE_PAT_REGEX ? regex_prefix(pat) : glob_prefix(pat);
}

/* Whether every string a pattern list can match is found by looking up
 * its exact names and literal prefixes. */
static int pats_indexable(const struct rule_pats *ps)
{
	if (!ps->npos)
		return 0; /* only exclusions: matches nearly anything */
	for (unsigned i = 0; i < ps->n; i++) {
		const struct rule_pat *pat = &ps->v[i];
		if (pat->neg)
			continue;
		if (pat->kind != RULE_PAT_EXACT && pat_prefix(pat) == 0)
			return 0;
	}
	return 1;
}

static int str_file(struct ix_str *s, const struct rule_pats *ps, uint32_t pos)
{
	for (unsigned i = 0; i < ps->n; i++) {
		const struct rule_pat *pat = &ps->v[i];
		if (pat->neg)
			continue;
		int prefix = pat->kind != RULE_PAT_EXACT;
		if (str_add(s, (const uint8_t *)pat->s, prefix ? pat_prefix(pat) : pat->len, prefix,
		            pos))
			return -1;
	}
	return 0;
}

/* Files rule under its most selective matcher; topics: whether the
 * topic list may be used. */
static int sec_file(struct ix_sec *s, const struct rule *rule, int topics)
{
	const struct rule_match *m = &rule->match;
	uint32_t pos = rule->idx;
	if (topics && (m->keys & RULE_M_TOPIC) && pats_indexable(&m->topic))
		return str_file(&s->topic, &m->topic, pos);
	if ((m->keys & RULE_M_CLIENT_ID) && pats_indexable(&m->client_id))
		return str_file(&s->client, &m->client_id, pos);
	if (m->keys & RULE_M_API) {
		int ok = 1;
		for (unsigned i = 0; i < m->napis; i++)
			ok &= m->apis[i].key >= 0 && (unsigned)m->apis[i].key < s->napi;
		if (ok) {
			for (unsigned i = 0; i < m->napis; i++)
				if (list_add(&s->api[m->apis[i].key], pos))
					return -1;
			return 0;
		}
	}
	return list_add(&s->any, pos);
}

static void str_free(struct ix_str *s)
{
	for (uint32_t e = 0; e < s->nents; e++)
		free(s->ents[e].l.v);
	free(s->ents);
	free(s->slots);
}

static void sec_free(struct ix_sec *s)
{
	str_free(&s->topic);
	str_free(&s->client);
	for (unsigned k = 0; k < s->napi; k++)
		free(s->api[k].v);
	free(s->api);
	free(s->any.v);
	free(s->all.v);
}

void rule_index_free(struct rule_set *rs)
{
	struct rule_index *ix = rs->ix;
	if (!ix)
		return;
	for (int i = 0; i < RULE_NSECTIONS; i++)
		sec_free(&ix->sec[i]);
	sec_free(&ix->body);
	free(ix->names_only);
	free(ix);
	rs->ix = NULL;
}

/* Whether rule reads nothing of a body but topic names. */
static int names_only(const struct rule *rule)
{
	if (rule->match.keys & RULE_M_BODY & ~RULE_M_TOPIC)
		return 0;
	/* An audit that logs keeps the request's bytes (its summary line, its
	 * records): it needs the decoded request. */
	/* A per-topic produce quota counts each topic's record bytes. */
	if (rule->section == RULE_QUOTA)
		return !(rule->per == RULE_PER_TOPIC && rule->produce_bps);
	return rule->section == RULE_ACCESS ||
	       (rule->section == RULE_AUDIT && rule->log == RULE_LOG_NONE);
}

int rule_has_api(const struct rule *rule, int16_t key)
{
	if (!(rule->match.keys & RULE_M_API))
		return 1;
	for (unsigned i = 0; i < rule->match.napis; i++)
		if (rule->match.apis[i].key == key)
			return 1;
	return 0;
}

int rule_set_names_only(const struct rule_set *rs, int16_t api_key)
{
	struct rule_index *ix = rs->ix;
	/* Typed names (a config resource, a coordinator key) have their kind
	 * in a sibling field that may come after them: the walker, which reads
	 * names as they pass, cannot tell them; the tree can. */
	return api_key >= 0 && (unsigned)api_key < ix->nnames && ix->names_only[api_key] &&
	       !kd_names_typed_api(api_key);
}

int rule_index_build(struct rule_set *rs)
{
	struct rule_index *ix = calloc(1, sizeof(*ix));
	if (!ix)
		return -1;
	rs->ix = ix;
	unsigned napi = (unsigned)kd_api_key_max + 1;
	for (int i = 0; i <= RULE_NSECTIONS; i++) {
		struct ix_sec *s = i < RULE_NSECTIONS ? &ix->sec[i] : &ix->body;
		s->api = calloc(napi, sizeof(*s->api));
		if (!s->api)
			goto nomem;
		s->napi = napi;
	}
	ix->names_only = malloc(napi);
	if (!ix->names_only)
		goto nomem;
	memset(ix->names_only, 1, napi);
	ix->nnames = napi;
	for (unsigned i = 0; i < rs->n; i++) {
		const struct rule *rule = &rs->rules[i];
		struct ix_sec *s = &ix->sec[rule->section];
		if (list_add(&s->all, rule->idx) || sec_file(s, rule, 1))
			goto nomem;
		if (!rule_needs_body(rule))
			continue;
		if (sec_file(&ix->body, rule, 0))
			goto nomem;
		if (names_only(rule))
			continue;
		for (unsigned k = 0; k < napi; k++)
			if (rule_has_api(rule, (int16_t)k))
				ix->names_only[k] = 0;
	}
	return 0;
nomem:
	rule_index_free(rs);
	return -1;
}

/* ---- walking ---- */

static inline void cand_add(struct rule_cand *c, const struct ix_list *l)
{
	if (l->n) {
		c->v[c->k] = l->v;
		c->n[c->k++] = l->n;
	}
}

/* Adds the lists of every key of s that name can match: its exact entry
 * and one per filed prefix of it. */
static void str_lookup(struct rule_cand *c, const struct ix_str *s, const struct kd_view *name)
{
	if (!s->nents)
		return;
	const uint8_t *p = name->p;
	size_t len = p ? name->len : 0;
	uint32_t h = 2166136261u;
	size_t at = 0;
	for (unsigned i = 0; i < s->nplens && s->plens[i] <= len; i++) {
		size_t plen = s->plens[i];
		for (; at < plen; at++)
			h = h_step(h, p[at]);
		uint32_t hp = h_final(h, 1);
		int32_t e = str_find(s, p, plen, 1, hp);
		if (e >= 0)
			cand_add(c, &s->ents[e].l);
	}
	if (s->nexact) {
		for (; at < len; at++)
			h = h_step(h, p[at]);
		int32_t e = str_find(s, p, len, 0, h_final(h, 0));
		if (e >= 0)
			cand_add(c, &s->ents[e].l);
	}
}

static void sec_start(struct rule_cand *c, const struct rule_set *rs, const struct ix_sec *s,
                      const struct rule_req *req, int topic)
{
	c->rs = rs;
	c->k = 0;
	c->last = -1;
	if (topic >= 0)
		str_lookup(c, &s->topic, &req->topics[topic].name);
	str_lookup(c, &s->client, &req->client_id);
	if (req->api_key >= 0 && (unsigned)req->api_key < s->napi)
		cand_add(c, &s->api[req->api_key]);
	cand_add(c, &s->any);
}

void rule_cand_start(struct rule_cand *c, const struct rule_set *rs, int section,
                     const struct rule_req *req, int topic)
{
	sec_start(c, rs, &rs->ix->sec[section], req, topic);
}

void rule_cand_all(struct rule_cand *c, const struct rule_set *rs, int section)
{
	c->rs = rs;
	c->k = 0;
	c->last = -1;
	cand_add(c, &rs->ix->sec[section].all);
}

const struct rule *rule_cand_next(struct rule_cand *c)
{
	uint32_t best = UINT32_MAX;
	for (unsigned i = 0; i < c->k; i++) {
		while (c->n[i] && (int64_t)c->v[i][0] <= c->last) {
			c->v[i]++;
			c->n[i]--;
		}
		if (c->n[i] && c->v[i][0] < best)
			best = c->v[i][0];
	}
	if (best == UINT32_MAX)
		return NULL;
	c->last = best;
	return &c->rs->rules[best];
}

int rule_index_needs_body(const struct rule_set *rs, const struct rule_req *req)
{
	struct rule_cand c;
	sec_start(&c, rs, &rs->ix->body, req, -1);
	const struct rule *rule;
	while ((rule = rule_cand_next(&c)))
		if (rule_header_matches(rule, req))
			return 1;
	return 0;
}
