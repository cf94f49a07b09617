/* rule-names.c: the names part of `rewrite:` rules (rule-names.h): its
 * keys in the rules file, and the mapping of one name either way. */

#include <stdlib.h>
#include <string.h>

#include "kd-schema-t.h"
#include "rule-names.h"
#include "rule-yaml.h"
#include "rule.h"

#define NAMES_PREFIX_MAX 200 /* Kafka topic names have at most 249 bytes */
#define NAMES_ALIAS_MAX 100000

static const char *const kind_key[RULE_N_KINDS] = {"topics", "groups", "transactional_ids"};

int rule_names_kind(int ent)
{
	switch (ent) {
	case KD_ENT_TOPIC_NAME:
		return RULE_N_TOPIC;
	case KD_ENT_GROUP_ID:
		return RULE_N_GROUP;
	case KD_ENT_TRANSACTIONAL_ID:
		return RULE_N_TXN;
	default:
		return -1;
	}
}

int rule_names_maps(const struct rule_names *nm, int kind)
{
	return nm->kind[kind].prefix || nm->kind[kind].nalias;
}

static int vcmp(const char *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = memcmp(a, b, n);
	return c ? c : (alen < blen ? -1 : alen > blen);
}

/* The alias whose client (by_cluster 0) or cluster (1) name is p, or NULL. */
static const struct rule_alias *alias_find(const struct rule_nmap *m, int by_cluster,
                                           const uint8_t *p, size_t len)
{
	unsigned lo = 0, hi = m->nalias;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		const struct rule_alias *a = &m->alias[by_cluster ? m->by_cluster[mid] : mid];
		int c = by_cluster ? vcmp(a->cluster, a->xlen, p, len)
		                   : vcmp(a->client, a->clen, p, len);
		if (!c)
			return a;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int view(struct kd_view *out, const void *p, size_t len)
{
	*out = (struct kd_view){(const uint8_t *)p, (uint32_t)len, 0};
	return RULE_N_MAPPED;
}

/* A cluster name back to the client's. */
static int to_client(const struct rule_nmap *m, const uint8_t *p, size_t len, struct kd_view *out)
{
	const struct rule_alias *a = alias_find(m, 1, p, len);
	if (a)
		return view(out, a->client, a->clen);
	if (m->prefix) {
		if (len <= m->plen || memcmp(p, m->prefix, m->plen))
			return RULE_N_HIDDEN;
		/* acme.orders is not 'orders' when 'orders' is an alias */
		if (alias_find(m, 0, p + m->plen, len - m->plen))
			return RULE_N_HIDDEN;
		return view(out, p + m->plen, len - m->plen);
	}
	return alias_find(m, 0, p, len) ? RULE_N_HIDDEN : RULE_N_SAME;
}

int rule_names_map(const struct rule_names *nm, int kind, int to_cluster, const uint8_t *p,
                   size_t len, char *buf, size_t cap, struct kd_view *out)
{
	const struct rule_nmap *m = &nm->kind[kind];
	if (!m->prefix && !m->nalias)
		return RULE_N_SAME;
	if (!to_cluster)
		return to_client(m, p, len, out);
	const struct rule_alias *a = alias_find(m, 0, p, len);
	if (a)
		return view(out, a->cluster, a->xlen);
	const uint8_t *c = p;
	size_t clen = len;
	if (m->prefix) {
		if (m->plen + len > cap)
			return RULE_N_HIDDEN;
		memcpy(buf, m->prefix, m->plen);
		memcpy(buf + m->plen, p, len);
		c = (const uint8_t *)buf;
		clen = m->plen + len;
	}
	/* The cluster's name of another alias: this name would not map back
	 * to itself, so the client cannot use it. */
	if (alias_find(m, 1, c, clen))
		return RULE_N_HIDDEN;
	return m->prefix ? view(out, c, clen) : RULE_N_SAME;
}

const struct rule *rule_names_for(const struct rule_set *rs, const struct rule_req *req)
{
	for (unsigned i = 0; i < rs->n; i++) {
		const struct rule *rule = &rs->rules[i];
		if (rule->section == RULE_REWRITE && rule->names &&
		    rule_matches(rule, req, -1, NULL)) {
			atomic_fetch_add_explicit(&((struct rule *)rule)->hits, 1,
			                          memory_order_relaxed);
			return rule;
		}
	}
	return NULL;
}

/* ---- loading ---- */

/* Kafka's legal topic characters (Topic.java: [a-zA-Z0-9._-]). */
static int topic_chars(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
			return 0;
	return 1;
}

static int check_name(struct yl *y, const yaml_node_t *node, int kind, const char *what,
                      const char *s)
{
	if (!*s)
		return yerr(y, node, "%s is empty", what);
	if (kind == RULE_N_TOPIC && !topic_chars(s))
		return yerr(y, node,
		            "%s '%s' holds a character Kafka does not allow in topic names "
		            "(a-z, A-Z, 0-9, '.', '_', '-')",
		            what, s);
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c < 0x20)
			return yerr(y, node, "%s holds a control character", what);
	return 0;
}

static struct rule_names *names_of(struct yl *y, const yaml_node_t *node, struct rule *rule)
{
	if (!rule->names && !(rule->names = calloc(1, sizeof(*rule->names))))
		yerr(y, node, "out of memory");
	return rule->names;
}

static int set_prefix(struct yl *y, const yaml_node_t *val, int kind, struct rule_nmap *m)
{
	char buf[NAMES_PREFIX_MAX + 1];
	if (m->prefix)
		return yerr(y, val, "%s: a prefix is given twice ('prefix' and '%s.prefix')",
		            kind_key[kind], kind_key[kind]);
	if (y_str(y, val, "prefix", buf, sizeof(buf)) ||
	    check_name(y, val, kind, "the prefix", buf))
		return -1;
	if (!(m->prefix = strdup(buf)))
		return yerr(y, val, "out of memory");
	m->plen = strlen(buf);
	return 0;
}

static int cmp_client(const void *a, const void *b)
{
	const struct rule_alias *x = a, *z = b;
	return vcmp(x->client, x->clen, (const uint8_t *)z->client, z->clen);
}
static int cmp_cluster(const void *a, const void *b, void *arg)
{
	const struct rule_alias *base = arg;
	const struct rule_alias *x = &base[*(const unsigned *)a];
	const struct rule_alias *z = &base[*(const unsigned *)b];
	return vcmp(x->cluster, x->xlen, (const uint8_t *)z->cluster, z->xlen);
}

static int set_aliases(struct yl *y, const yaml_node_t *val, int kind, struct rule_nmap *m)
{
	if (val->type != YAML_MAPPING_NODE)
		return yerr(y, val, "'%s.alias' must be a mapping of client name: cluster name",
		            kind_key[kind]);
	if (m->nalias)
		return yerr(y, val, "'%s.alias' is given twice", kind_key[kind]);
	size_t n = (size_t)(val->data.mapping.pairs.top - val->data.mapping.pairs.start);
	if (!n)
		return yerr(y, val, "'%s.alias' is empty", kind_key[kind]);
	if (n > NAMES_ALIAS_MAX)
		return yerr(y, val, "'%s.alias' has more than %d names", kind_key[kind],
		            NAMES_ALIAS_MAX);
	m->alias = calloc(n, sizeof(*m->alias));
	m->by_cluster = calloc(n, sizeof(*m->by_cluster));
	if (!m->alias || !m->by_cluster)
		return yerr(y, val, "out of memory");
	for (yaml_node_pair_t *p = val->data.mapping.pairs.start; p < val->data.mapping.pairs.top;
	     p++) {
		const yaml_node_t *k = ynode(y, p->key), *v = ynode(y, p->value);
		char a[1024], b[1024];
		if (y_str(y, k, "alias", a, sizeof(a)) || y_str(y, v, "alias", b, sizeof(b)) ||
		    check_name(y, k, kind, "an alias name", a) ||
		    check_name(y, v, kind, "an alias target", b))
			return -1;
		struct rule_alias *al = &m->alias[m->nalias];
		al->client = strdup(a);
		al->cluster = strdup(b);
		if (!al->client || !al->cluster) {
			free(al->client);
			free(al->cluster);
			return yerr(y, k, "out of memory");
		}
		al->clen = strlen(a);
		al->xlen = strlen(b);
		m->by_cluster[m->nalias] = m->nalias;
		m->nalias++;
	}
	qsort(m->alias, m->nalias, sizeof(*m->alias), cmp_client);
	qsort_r(m->by_cluster, m->nalias, sizeof(*m->by_cluster), cmp_cluster, m->alias);
	for (unsigned i = 1; i < m->nalias; i++) {
		const struct rule_alias *a0 = &m->alias[i - 1], *a1 = &m->alias[i];
		if (!cmp_client(a0, a1))
			return yerr(y, val, "'%s.alias': '%s' is given twice", kind_key[kind],
			            a1->client);
		const struct rule_alias *c0 = &m->alias[m->by_cluster[i - 1]];
		const struct rule_alias *c1 = &m->alias[m->by_cluster[i]];
		if (c0->xlen == c1->xlen && !memcmp(c0->cluster, c1->cluster, c0->xlen))
			return yerr(y, val,
			            "'%s.alias': '%s' and '%s' both map to '%s' (a cluster name "
			            "maps back to one client name)",
			            kind_key[kind], c0->client, c1->client, c1->cluster);
	}
	return 0;
}

struct kind_ctx {
	struct rule_nmap *m;
	int kind;
};

static int kind_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                     const yaml_node_t *val, void *ctx)
{
	struct kind_ctx *kc = ctx;
	if (!strcmp(key, "prefix"))
		return set_prefix(y, val, kc->kind, kc->m);
	if (!strcmp(key, "alias"))
		return set_aliases(y, val, kc->kind, kc->m);
	return yerr(y, knode, "unknown key '%s' under '%s' (prefix, alias)", key,
	            kind_key[kc->kind]);
}

int rule_names_pair(struct yl *y, const char *key, const yaml_node_t *knode, const yaml_node_t *val,
                    struct rule *rule)
{
	(void)knode;
	struct rule_names *nm;
	if (!strcmp(key, "prefix")) {
		/* the shorthand: one prefix for topics, groups and transactional ids */
		if (!(nm = names_of(y, val, rule)))
			return -1;
		for (int k = 0; k < RULE_N_KINDS; k++)
			if (set_prefix(y, val, k, &nm->kind[k]))
				return -1;
		return 0;
	}
	for (int k = 0; k < RULE_N_KINDS; k++) {
		if (strcmp(key, kind_key[k]))
			continue;
		if (!(nm = names_of(y, val, rule)))
			return -1;
		struct kind_ctx kc = {&nm->kind[k], k};
		char what[64];
		snprintf(what, sizeof(what), "'%s'", kind_key[k]);
		return y_map(y, val, what, kind_pair, &kc);
	}
	return 1;
}

int rule_names_finish(struct yl *y, const yaml_node_t *node, struct rule *rule)
{
	const uint32_t who = RULE_M_CLIENT_ID | RULE_M_PRINCIPAL | RULE_M_SOURCE | RULE_M_BROKER;
	if (!rule->names)
		return 0;
	if (rule->match.keys & ~who)
		return yerr(y, node,
		            "rewrite '%s': names are mapped per client, so its 'match' takes only "
		            "client_id, principal, source and broker",
		            rule->name);
	for (int k = 0; k < RULE_N_KINDS; k++)
		if (rule_names_maps(rule->names, k))
			return 0;
	return yerr(y, node, "rewrite '%s' maps no names", rule->name);
}

void rule_names_free(struct rule_names **nmp)
{
	struct rule_names *nm = *nmp;
	*nmp = NULL;
	if (!nm)
		return;
	for (int k = 0; k < RULE_N_KINDS; k++) {
		struct rule_nmap *m = &nm->kind[k];
		free(m->prefix);
		for (unsigned i = 0; i < m->nalias; i++) {
			free(m->alias[i].client);
			free(m->alias[i].cluster);
		}
		free(m->alias);
		free(m->by_cluster);
	}
	free(nm);
}

void rule_names_dump(const struct rule_names *nm, FILE *f)
{
	const char *sep = "names:";
	for (int k = 0; k < RULE_N_KINDS; k++) {
		const struct rule_nmap *m = &nm->kind[k];
		if (!m->prefix && !m->nalias)
			continue;
		fprintf(f, "%s %s", sep, kind_key[k]);
		if (m->prefix)
			fprintf(f, " prefix '%s'", m->prefix);
		for (unsigned i = 0; i < m->nalias; i++)
			fprintf(f, "%s'%s' -> '%s'", i ? ", " : " alias ", m->alias[i].client,
			        m->alias[i].cluster);
		sep = ";";
	}
}
