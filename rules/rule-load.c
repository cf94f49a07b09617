/* rule-load.c: a rules file (YAML, libyaml) compiled into a struct
 * rule_set. Every error names FILE:LINE:COL of the node at fault. The
 * format is documented key by key in docs/rules.md. */
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <openssl/evp.h>
#include <yaml.h>

#include "kd-schema.h"
#include "kd.h"
#include "rule-index.h"
#include "rule-mirror.h"
#include "rule-names.h"
#include "rule-yaml.h"
#include "rule.h"

/* A rules file larger than this is refused before it is parsed. */
#define RULE_FILE_MAX (16u * 1024 * 1024)
#define RULE_LIST_MAX 4096 /* items in one matcher list */

/* "FILE:LINE:COL: message", 1-based; returns -1. */
int yerr(struct yl *y, const yaml_node_t *node, const char *fmt, ...)
{
	char msg[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	kd_errf(y->err, y->errlen, "%s:%zu:%zu: %s", y->name, node->start_mark.line + 1,
	        node->start_mark.column + 1, msg);
	return -1;
}

yaml_node_t *ynode(struct yl *y, int id)
{
	return yaml_document_get_node(y->doc, id);
}

/* A scalar's text as a NUL-terminated copy in buf; -1 (with error) when
 * node is not a scalar or does not fit. */
int y_str(struct yl *y, const yaml_node_t *node, const char *key, char *buf, size_t cap)
{
	if (node->type != YAML_SCALAR_NODE)
		return yerr(y, node, "'%s' must be a string, not %s", key,
		            node->type == YAML_SEQUENCE_NODE ? "a list" : "a mapping");
	size_t len = node->data.scalar.length;
	if (len >= cap)
		return yerr(y, node, "'%s' is too long (at most %zu bytes)", key, cap - 1);
	if (memchr(node->data.scalar.value, '\0', len))
		return yerr(y, node, "'%s' contains a NUL byte", key);
	memcpy(buf, node->data.scalar.value, len);
	buf[len] = '\0';
	return 0;
}

int y_dup(struct yl *y, const yaml_node_t *node, const char *key, char **out)
{
	char buf[4096];
	if (y_str(y, node, key, buf, sizeof(buf)))
		return -1;
	free(*out);
	*out = strdup(buf);
	if (!*out)
		return yerr(y, node, "out of memory");
	return 0;
}

int y_bool(struct yl *y, const yaml_node_t *node, const char *key, int *out)
{
	char buf[8];
	if (node->type == YAML_SCALAR_NODE && node->data.scalar.length < sizeof(buf)) {
		memcpy(buf, node->data.scalar.value, node->data.scalar.length);
		buf[node->data.scalar.length] = '\0';
		if (!strcasecmp(buf, "true") || !strcasecmp(buf, "yes") || !strcasecmp(buf, "on")) {
			*out = 1;
			return 0;
		}
		if (!strcasecmp(buf, "false") || !strcasecmp(buf, "no") ||
		    !strcasecmp(buf, "off")) {
			*out = 0;
			return 0;
		}
	}
	return yerr(y, node, "'%s' must be true or false", key);
}

/* An integer (or size, with units) in [lo, hi]. */
int y_size(struct yl *y, const yaml_node_t *node, const char *key, int64_t lo, int64_t hi,
           int64_t *out)
{
	char buf[64];
	if (y_str(y, node, key, buf, sizeof(buf)))
		return -1;
	if (rule_parse_size(buf, out) || *out < lo || *out > hi) {
		if (hi >= INT32_MAX)
			return yerr(y, node,
			            "'%s': '%s' is not a size (e.g. 1MiB, 500kB) of at least %lld",
			            key, buf, (long long)lo);
		return yerr(y, node, "'%s': '%s' is not a number in [%lld, %lld]", key, buf,
		            (long long)lo, (long long)hi);
	}
	return 0;
}

static int y_number(struct yl *y, const yaml_node_t *node, const char *key, double *out)
{
	char buf[64], *end;
	if (y_str(y, node, key, buf, sizeof(buf)))
		return -1;
	errno = 0;
	double v = strtod(buf, &end);
	if (errno || end == buf || *end || !(v > 0) || v > 1e12)
		return yerr(y, node, "'%s': '%s' is not a positive number", key, buf);
	*out = v;
	return 0;
}

/* Calls fn for node when it is a scalar, or for each item of a list of
 * scalars. */
int y_each(struct yl *y, const yaml_node_t *node, const char *key, y_item_fn *fn, void *ctx)
{
	if (node->type == YAML_SCALAR_NODE)
		return fn(y, node, key, ctx);
	if (node->type != YAML_SEQUENCE_NODE)
		return yerr(y, node, "'%s' must be a value or a list of values", key);
	if (node->data.sequence.items.top == node->data.sequence.items.start)
		return yerr(y, node, "'%s' is an empty list", key);
	if (node->data.sequence.items.top - node->data.sequence.items.start > RULE_LIST_MAX)
		return yerr(y, node, "'%s' has more than %d items", key, RULE_LIST_MAX);
	for (yaml_node_item_t *it = node->data.sequence.items.start;
	     it < node->data.sequence.items.top; it++) {
		const yaml_node_t *item = ynode(y, *it);
		if (item->type != YAML_SCALAR_NODE)
			return yerr(y, item, "'%s': items must be values, not lists or mappings",
			            key);
		if (fn(y, item, key, ctx))
			return -1;
	}
	return 0;
}

/* Iterates over a mapping's pairs, refusing duplicate keys. Returns -1
 * on error. */
int y_map(struct yl *y, const yaml_node_t *node, const char *what, y_pair_fn *fn, void *ctx)
{
	if (node->type != YAML_MAPPING_NODE)
		return yerr(y, node, "%s must be a mapping", what);
	for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
	     p++) {
		const yaml_node_t *k = ynode(y, p->key);
		char key[64];
		if (k->type != YAML_SCALAR_NODE)
			return yerr(y, k, "%s: keys must be plain words", what);
		if (y_str(y, k, "key", key, sizeof(key)))
			return -1;
		for (yaml_node_pair_t *q = node->data.mapping.pairs.start; q < p; q++) {
			const yaml_node_t *k2 = ynode(y, q->key);
			if (k2->type == YAML_SCALAR_NODE && k2->data.scalar.length == strlen(key) &&
			    !memcmp(k2->data.scalar.value, key, strlen(key)))
				return yerr(y, k, "%s: duplicate key '%s' (first at line %zu)",
				            what, key, k2->start_mark.line + 1);
		}
		if (fn(y, key, k, ynode(y, p->value), ctx))
			return -1;
	}
	return 0;
}

/* ---- matchers ---- */

static int add_pat(struct yl *y, const yaml_node_t *item, const char *key, void *ctx)
{
	struct rule_pats *ps = ctx;
	char buf[1024];
	if (y_str(y, item, key, buf, sizeof(buf)))
		return -1;
	struct rule_pat pat = {0};
	const char *s = buf;
	if (*s == '!') {
		pat.neg = 1;
		s++;
	}
	size_t len = strlen(s);
	if (len >= 2 && s[0] == '/' && s[len - 1] == '/') {
		/* Anchored on both ends, as a glob is. */
		char re[1100];
		snprintf(re, sizeof(re), "^(%.*s)$", (int)(len - 2), s + 1);
		int rc = regcomp(&pat.re, re, REG_EXTENDED | REG_NOSUB);
		if (rc) {
			char msg[128];
			regerror(rc, &pat.re, msg, sizeof(msg));
			return yerr(y, item, "'%s': bad regular expression %s: %s", key, s, msg);
		}
		pat.re_ok = 1;
		pat.kind = RULE_PAT_REGEX;
		s++;
		len -= 2;
	} else if (strpbrk(s, "*?[")) {
		pat.kind = RULE_PAT_GLOB;
		/* fnmatch reports a malformed pattern only when matching: try it. */
		if (fnmatch(s, "", 0) != 0 && fnmatch(s, "", 0) != FNM_NOMATCH)
			return yerr(y, item, "'%s': bad pattern '%s'", key, s);
	} else {
		pat.kind = RULE_PAT_EXACT;
	}
	pat.s = strndup(s, len);
	pat.len = len;
	struct rule_pat *v = realloc(ps->v, (ps->n + 1) * sizeof(*v));
	if (!pat.s || !v) {
		free(pat.s);
		if (pat.re_ok)
			regfree(&pat.re);
		if (v)
			ps->v = v;
		return yerr(y, item, "out of memory");
	}
	ps->v = v;
	ps->v[ps->n++] = pat;
	if (!pat.neg)
		ps->npos++;
	return 0;
}

static int add_cidr(struct yl *y, const yaml_node_t *item, const char *key, void *ctx)
{
	struct rule_cidrs *cs = ctx;
	char buf[128];
	if (y_str(y, item, key, buf, sizeof(buf)))
		return -1;
	struct rule_cidr c = {0};
	char *s = buf;
	if (*s == '!') {
		c.neg = 1;
		s++;
	}
	char *slash = strchr(s, '/');
	if (slash)
		*slash = '\0';
	if (rule_parse_addr(s, &c.family, c.addr))
		return yerr(y, item, "'%s': '%s' is not an IPv4 or IPv6 address", key, s);
	unsigned max = c.family == 4 ? 32 : 128;
	c.bits = (uint8_t)max;
	if (slash) {
		char *end;
		long bits = strtol(slash + 1, &end, 10);
		if (end == slash + 1 || *end || bits < 0 || bits > (long)max)
			return yerr(y, item, "'%s': bad prefix length '/%s'", key, slash + 1);
		c.bits = (uint8_t)bits;
	}
	struct rule_cidr *v = realloc(cs->v, (cs->n + 1) * sizeof(*v));
	if (!v)
		return yerr(y, item, "out of memory");
	cs->v = v;
	cs->v[cs->n++] = c;
	if (!c.neg)
		cs->npos++;
	return 0;
}

static int add_api(struct yl *y, const yaml_node_t *item, const char *key, void *ctx)
{
	struct rule_match *m = ctx;
	char buf[96];
	if (y_str(y, item, key, buf, sizeof(buf)))
		return -1;
	struct rule_api api;
	if (rule_parse_api(buf, &api))
		return yerr(y, item,
		            "'%s': '%s' is not an API name or key (e.g. Produce, 0, Fetch@13+, "
		            "Metadata@0-8)",
		            key, buf);
	struct rule_api *v = realloc(m->apis, (m->napis + 1) * sizeof(*v));
	if (!v)
		return yerr(y, item, "out of memory");
	m->apis = v;
	m->apis[m->napis++] = api;
	return 0;
}

static int add_broker(struct yl *y, const yaml_node_t *item, const char *key, void *ctx)
{
	struct rule_match *m = ctx;
	char buf[32];
	if (y_str(y, item, key, buf, sizeof(buf)))
		return -1;
	int64_t id;
	if (!strcmp(buf, "bootstrap"))
		id = -1;
	else if (rule_parse_size(buf, &id) || id < 0 || id > INT32_MAX || strpbrk(buf, "kKMGiB."))
		return yerr(y, item, "'%s': '%s' is not a broker node id or 'bootstrap'", key, buf);
	int32_t *v = realloc(m->brokers, (m->nbrokers + 1) * sizeof(*v));
	if (!v)
		return yerr(y, item, "out of memory");
	m->brokers = v;
	m->brokers[m->nbrokers++] = (int32_t)id;
	return 0;
}

static int acks_bit(const char *s)
{
	if (!strcmp(s, "0"))
		return RULE_ACKS_0;
	if (!strcmp(s, "1"))
		return RULE_ACKS_1;
	if (!strcmp(s, "-1") || !strcmp(s, "all"))
		return RULE_ACKS_ALL;
	return 0;
}

static int add_acks(struct yl *y, const yaml_node_t *item, const char *key, void *ctx)
{
	uint8_t *mask = ctx;
	char buf[16];
	if (y_str(y, item, key, buf, sizeof(buf)))
		return -1;
	int bit = acks_bit(buf);
	if (!bit)
		return yerr(y, item, "'%s': '%s' is not 0, 1, -1 or all", key, buf);
	*mask |= (uint8_t)bit;
	return 0;
}

static int add_codec(struct yl *y, const yaml_node_t *item, const char *key, void *ctx)
{
	uint8_t *mask = ctx;
	char buf[16];
	if (y_str(y, item, key, buf, sizeof(buf)))
		return -1;
	int id = rule_codec_id(buf);
	if (id < 0)
		return yerr(y, item, "'%s': '%s' is not none, gzip, snappy, lz4 or zstd", key, buf);
	*mask |= (uint8_t)(1u << id);
	return 0;
}

/* "N", ">N", ">=N", "<N", "<=N", "N-M" (sizes allowed) into an inclusive
 * range. */
static int y_range(struct yl *y, const yaml_node_t *node, const char *key, struct rule_range *r)
{
	char buf[64];
	if (y_str(y, node, key, buf, sizeof(buf)))
		return -1;
	const char *s = buf;
	int64_t a = 0, b = 0;
	r->lo = INT64_MIN;
	r->hi = INT64_MAX;
	int ok;
	if (!strncmp(s, ">=", 2)) {
		ok = !rule_parse_size(s + 2, &a);
		r->lo = a;
	} else if (!strncmp(s, "<=", 2)) {
		ok = !rule_parse_size(s + 2, &a);
		r->hi = a;
	} else if (*s == '>') {
		ok = !rule_parse_size(s + 1, &a) && a < INT64_MAX;
		r->lo = a + 1;
	} else if (*s == '<') {
		ok = !rule_parse_size(s + 1, &a) && a > INT64_MIN;
		r->hi = a - 1;
	} else {
		const char *dash = strchr(s, '-');
		if (dash && dash != s) {
			char lo[64];
			snprintf(lo, sizeof(lo), "%.*s", (int)(dash - s), s);
			ok = !rule_parse_size(lo, &a) && !rule_parse_size(dash + 1, &b) && a <= b;
			r->lo = a;
			r->hi = b;
		} else {
			ok = !rule_parse_size(s, &a);
			r->lo = r->hi = a;
		}
	}
	if (!ok)
		return yerr(y, node,
		            "'%s': '%s' is not a number or range (N, >N, >=N, <N, <=N, N-M; sizes "
		            "like 1MiB)",
		            key, buf);
	return 0;
}

static int match_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                      const yaml_node_t *val, void *ctx)
{
	struct rule_match *m = ctx;
	static const struct {
		const char *key;
		uint32_t bit;
		size_t off;
	} pats[] = {
	    {"topic", RULE_M_TOPIC, offsetof(struct rule_match, topic)},
	    {"client_id", RULE_M_CLIENT_ID, offsetof(struct rule_match, client_id)},
	    {"principal", RULE_M_PRINCIPAL, offsetof(struct rule_match, principal)},
	    {"group", RULE_M_GROUP, offsetof(struct rule_match, group)},
	    {"transactional_id", RULE_M_TXN_ID, offsetof(struct rule_match, txn_id)},
	};
	for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
		if (strcmp(key, pats[i].key))
			continue;
		m->keys |= pats[i].bit;
		return y_each(y, val, key, add_pat, (char *)m + pats[i].off);
	}
	if (!strcmp(key, "api")) {
		m->keys |= RULE_M_API;
		return y_each(y, val, key, add_api, m);
	}
	if (!strcmp(key, "source")) {
		m->keys |= RULE_M_SOURCE;
		return y_each(y, val, key, add_cidr, &m->source);
	}
	if (!strcmp(key, "broker")) {
		m->keys |= RULE_M_BROKER;
		return y_each(y, val, key, add_broker, m);
	}
	if (!strcmp(key, "acks")) {
		m->keys |= RULE_M_ACKS;
		return y_each(y, val, key, add_acks, &m->acks);
	}
	if (!strcmp(key, "compression")) {
		m->keys |= RULE_M_CODEC;
		return y_each(y, val, key, add_codec, &m->codecs);
	}
	if (!strcmp(key, "records")) {
		m->keys |= RULE_M_RECORDS;
		return y_range(y, val, key, &m->records);
	}
	if (!strcmp(key, "bytes")) {
		m->keys |= RULE_M_BYTES;
		return y_range(y, val, key, &m->bytes);
	}
	if (!strcmp(key, "record_bytes")) {
		m->keys |= RULE_M_RECORD_BYTES;
		return y_range(y, val, key, &m->record_bytes);
	}
	return yerr(y, knode,
	            "unknown match key '%s' (api, topic, client_id, source, broker, principal, "
	            "group, transactional_id, acks, compression, records, bytes, record_bytes)",
	            key);
}

/* ---- actions ---- */

static int y_strlist_add(struct yl *y, const yaml_node_t *item, const char *key, void *ctx)
{
	struct {
		char ***v;
		unsigned *n;
	} *l = ctx;
	char buf[256];
	if (y_str(y, item, key, buf, sizeof(buf)))
		return -1;
	char **v = realloc(*l->v, (*l->n + 1) * sizeof(*v));
	if (!v)
		return yerr(y, item, "out of memory");
	*l->v = v;
	if (!(v[*l->n] = strdup(buf)))
		return yerr(y, item, "out of memory");
	(*l->n)++;
	return 0;
}

int y_strlist(struct yl *y, const yaml_node_t *node, const char *key, char ***v, unsigned *n)
{
	struct {
		char ***v;
		unsigned *n;
	} l = {v, n};
	return y_each(y, node, key, y_strlist_add, &l);
}

static int require_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                        const yaml_node_t *val, void *ctx)
{
	struct rule_require *r = ctx;
	if (!strcmp(key, "acks")) {
		r->keys |= RULE_REQ_ACKS;
		return y_each(y, val, key, add_acks, &r->acks);
	}
	if (!strcmp(key, "compression")) {
		r->keys |= RULE_REQ_CODEC;
		return y_each(y, val, key, add_codec, &r->codecs);
	}
	if (!strcmp(key, "max_record_bytes")) {
		r->keys |= RULE_REQ_MAX_RECORD;
		return y_size(y, val, key, 1, INT32_MAX, &r->max_record_bytes);
	}
	if (!strcmp(key, "headers")) {
		r->keys |= RULE_REQ_HEADERS;
		return y_strlist(y, val, key, &r->headers, &r->nheaders);
	}
	if (!strcmp(key, "partitions")) {
		r->keys |= RULE_REQ_PARTITIONS;
		return y_range(y, val, key, &r->partitions);
	}
	if (!strcmp(key, "replication_factor")) {
		r->keys |= RULE_REQ_REPLICATION;
		return y_range(y, val, key, &r->replication_factor);
	}
	return yerr(y, knode,
	            "unknown require key '%s' (acks, compression, max_record_bytes, headers, "
	            "partitions, replication_factor)",
	            key);
}

static int redact_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                       const yaml_node_t *val, void *ctx)
{
	struct rule *rule = ctx;
	int b;
	if (!strcmp(key, "headers"))
		return y_strlist(y, val, key, &rule->redact_headers, &rule->nredact);
	if (!strcmp(key, "key") || !strcmp(key, "value")) {
		if (y_bool(y, val, key, &b))
			return -1;
		*(key[0] == 'k' ? &rule->redact_key : &rule->redact_value) = (uint8_t)b;
		return 0;
	}
	return yerr(y, knode, "unknown redact key '%s' (headers, key, value)", key);
}

/* Adds one property to a sink (rule_sink_prop_fn): 0, or -1 out of memory. */
static int sink_prop_add(void *ctx, const char *key, const char *val)
{
	struct rule_sink *s = ctx;
	char **n = realloc(s->props, (s->nprops + 2) * sizeof(*n));
	if (!n)
		return -1;
	s->props = n;
	char *k = strdup(key), *v = strdup(val);
	if (!k || !v) {
		free(k);
		free(v);
		return -1;
	}
	n[s->nprops++] = k;
	n[s->nprops++] = v;
	return 0;
}

/* `properties:` of a Kafka sink: librdkafka property names to values. */
static int prop_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                     const yaml_node_t *val, void *ctx)
{
	(void)knode;
	char *v = NULL;
	if (y_dup(y, val, key, &v))
		return -1;
	int rc = sink_prop_add(ctx, key, v);
	free(v);
	return rc ? yerr(y, val, "out of memory") : 0;
}

/* A sink's `to:` being read, and its security keys until it is. */
struct sink_to {
	struct rule_sink *s;
	struct rule_sink_sec sec;
};

static int sink_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                     const yaml_node_t *val, void *ctx)
{
	struct sink_to *t = ctx;
	struct rule_sink *s = t->s;
	if (!strcmp(key, "file"))
		return y_dup(y, val, key, &s->file);
	if (!strcmp(key, "kafka"))
		return y_dup(y, val, key, &s->kafka);
	if (!strcmp(key, "bootstrap"))
		return y_dup(y, val, key, &s->bootstrap);
	if (!strcmp(key, "properties"))
		return y_map(y, val, "'properties'", prop_pair, s);
	if (!strcmp(key, "queue_bytes"))
		return y_size(y, val, key, 4096, (int64_t)1 << 40, &s->queue_bytes);
	int rc = rule_sink_sec_pair(y, key, knode, val, &t->sec);
	if (rc <= 0)
		return rc;
	return yerr(y, knode,
	            "unknown 'to' key '%s' (file, kafka, bootstrap, tls, sasl, properties, "
	            "queue_bytes)",
	            key);
}

/* An audit rule's `to:` mapping. */
static int sink_to(struct yl *y, const yaml_node_t *val, struct rule_sink *s)
{
	struct sink_to t = {.s = s};
	int rc = y_map(y, val, "'to'", sink_pair, &t);
	if (!rc)
		rc =
		    rule_sink_sec_finish(y, val, &t.sec, s->props, s->nprops / 2, sink_prop_add, s);
	rule_sink_sec_free(&t.sec);
	return rc;
}

struct rule_ctx {
	struct rule *rule;
	const yaml_node_t *node;
	uint8_t has_match;
};

static int rule_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                     const yaml_node_t *val, void *ctx)
{
	struct rule_ctx *rc = ctx;
	struct rule *rule = rc->rule;
	if (!strcmp(key, "name")) {
		char buf[RULE_NAME_MAX];
		if (y_str(y, val, key, buf, sizeof(buf)))
			return -1;
		if (!buf[0])
			return yerr(y, val, "'name' is empty");
		for (const char *c = buf; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == '"' || *c == '\\')
				return yerr(y, val,
				            "'name' may not hold quotes, backslashes or "
				            "control characters");
		memcpy(rule->name, buf, sizeof(buf));
		return 0;
	}
	if (!strcmp(key, "match")) {
		rc->has_match = 1;
		return y_map(y, val, "'match'", match_pair, &rule->match);
	}
	switch (rule->section) {
	case RULE_ACCESS:
		if (!strcmp(key, "deny")) {
			char buf[64];
			int b;
			if (rule->deny_set || rule->allow)
				return yerr(y, knode, "a rule has one 'deny' or one 'allow'");
			if (y_str(y, val, key, buf, sizeof(buf)))
				return -1;
			if (!y_bool(y, val, key, &b)) {
				if (!b)
					return yerr(
					    y, val,
					    "'deny: false' means nothing; use 'allow: true'");
				rule->deny = RULE_DENY_AUTO;
			} else {
				rule->deny = rule_error_code(buf);
				if (rule->deny == RULE_DENY_AUTO || rule->deny == 0)
					return yerr(
					    y, val,
					    "'deny': '%s' is not a Kafka error name or code "
					    "(e.g. TOPIC_AUTHORIZATION_FAILED), or true",
					    buf);
			}
			rule->deny_set = 1;
			return 0;
		}
		if (!strcmp(key, "allow")) {
			int b;
			if (rule->deny_set)
				return yerr(y, knode, "a rule has one 'deny' or one 'allow'");
			if (y_bool(y, val, key, &b))
				return -1;
			if (!b)
				return yerr(y, val, "'allow: false' means nothing; use 'deny'");
			rule->allow = 1;
			return 0;
		}
		if (!strcmp(key, "metadata")) {
			char buf[16];
			if (y_str(y, val, key, buf, sizeof(buf)))
				return -1;
			if (strcmp(buf, "hide") && strcmp(buf, "show"))
				return yerr(y, val, "'metadata' is hide or show, not '%s'", buf);
			rule->meta_show = !strcmp(buf, "show");
			rule->meta_set = 1;
			return 0;
		}
		break;
	case RULE_QUOTA:
		if (!strcmp(key, "per")) {
			static const char *const pers[] = {"client_id", "principal", "source",
			                                   "topic", "shared"};
			char buf[32];
			if (y_str(y, val, key, buf, sizeof(buf)))
				return -1;
			for (unsigned i = 0; i < sizeof(pers) / sizeof(pers[0]); i++)
				if (!strcmp(buf, pers[i])) {
					rule->per = (uint8_t)i;
					return 0;
				}
			return yerr(
			    y, val,
			    "'per': '%s' is not client_id, principal, source, topic or shared",
			    buf);
		}
		if (!strcmp(key, "produce_bytes_per_sec"))
			return y_size(y, val, key, 1, INT64_MAX / 2, &rule->produce_bps);
		if (!strcmp(key, "fetch_bytes_per_sec"))
			return y_size(y, val, key, 1, INT64_MAX / 2, &rule->fetch_bps);
		if (!strcmp(key, "requests_per_sec"))
			return y_number(y, val, key, &rule->requests_ps);
		if (!strcmp(key, "samples")) {
			int64_t v;
			if (y_size(y, val, key, 2, 60, &v))
				return -1;
			rule->samples = (unsigned)v;
			return 0;
		}
		if (!strcmp(key, "sample_ms")) {
			int64_t v;
			if (y_size(y, val, key, 10, 60000, &v))
				return -1;
			rule->sample_ms = (unsigned)v;
			return 0;
		}
		break;
	case RULE_POLICY:
		if (!strcmp(key, "require"))
			return y_map(y, val, "'require'", require_pair, &rule->require);
		break;
	case RULE_REWRITE: {
		/* A rewrite rule's keys: its names part (rule-names.c), then its
		 * records part (rule-rewrite.c); 1 from both is an unknown key. */
		int r = rule_names_pair(y, key, knode, val, rule);
		if (r <= 0)
			return r;
		r = rule_rewrite_pair(y, key, knode, val, rule);
		if (r <= 0)
			return r;
		break;
	}
	case RULE_MIRROR:
	case RULE_TAP: {
		int r = rule_mirror_pair(y, key, knode, val, rule);
		if (r <= 0)
			return r;
		break;
	}
	case RULE_AUDIT:
		if (!strcmp(key, "log")) {
			char buf[16];
			if (y_str(y, val, key, buf, sizeof(buf)))
				return -1;
			if (!strcmp(buf, "none"))
				rule->log = RULE_LOG_NONE;
			else if (!strcmp(buf, "summary"))
				rule->log = RULE_LOG_SUMMARY;
			else if (!strcmp(buf, "records"))
				rule->log = RULE_LOG_RECORDS;
			else
				return yerr(y, val, "'log': '%s' is not none, summary or records",
				            buf);
			return 0;
		}
		if (!strcmp(key, "redact"))
			return y_map(y, val, "'redact'", redact_pair, rule);
		if (!strcmp(key, "max_value_bytes")) {
			int64_t v;
			if (y_size(y, val, key, 0, 16 * 1024 * 1024, &v))
				return -1;
			rule->max_value_bytes = (uint32_t)v;
			return 0;
		}
		if (!strcmp(key, "max_bytes")) {
			int64_t v;
			if (y_size(y, val, key, 1024, 256 * 1024 * 1024, &v))
				return -1;
			rule->max_bytes = (uint32_t)v;
			return 0;
		}
		if (!strcmp(key, "to")) {
			if (val->type == YAML_SCALAR_NODE)
				return y_dup(y, val, key, &rule->sink.file);
			return sink_to(y, val, &rule->sink);
		}
		break;
	}
	static const char *const keys[RULE_NSECTIONS] = {
	    "name, match, deny, allow, metadata",
	    ("name, match, per, produce_bytes_per_sec, fetch_bytes_per_sec, requests_per_sec, "
	     "samples, sample_ms"),
	    "name, match, require",
	    "name, match, log, redact, max_value_bytes, max_bytes, to",
	    "name, match, prefix, topics, groups, transactional_ids, " RULE_REWRITE_KEYS,
	    "name, match, topic, partition, to",
	    "name, match, to, max_bytes, files",
	};
	return yerr(y, knode, "unknown key '%s' (a rule under '%s' takes: %s)", key,
	            rule_section_name(rule->section), keys[rule->section]);
}

/* Checks what a rule of its section must have once all keys are read. */
static int rule_finish(struct yl *y, struct rule_ctx *rc)
{
	struct rule *rule = rc->rule;
	if (!rule->name[0])
		snprintf(rule->name, sizeof(rule->name), "%s-%u", rule_section_name(rule->section),
		         rule->idx + 1);
	for (unsigned i = 0; i < rule->idx; i++)
		if (!strcmp(y->rs->rules[i].name, rule->name))
			return yerr(y, rc->node, "rule name '%s' is used twice (first at line %u)",
			            rule->name, y->rs->rules[i].line);
	switch (rule->section) {
	case RULE_ACCESS:
		if (!rule->deny_set && !rule->allow)
			return yerr(y, rc->node, "access rule '%s' needs 'deny' or 'allow: true'",
			            rule->name);
		if (rule->meta_set && !rule->deny_set)
			return yerr(y, rc->node, "access rule '%s': 'metadata' goes with 'deny'",
			            rule->name);
		break;
	case RULE_QUOTA:
		if (!rule->produce_bps && !rule->fetch_bps && rule->requests_ps <= 0)
			return yerr(
			    y, rc->node,
			    "quota '%s' needs produce_bytes_per_sec, fetch_bytes_per_sec or "
			    "requests_per_sec",
			    rule->name);
		if (!rule->samples)
			rule->samples = 11; /* Kafka's quota.window.num */
		if (!rule->sample_ms)
			rule->sample_ms = 1000; /* quota.window.size.seconds */
		break;
	case RULE_POLICY:
		if (!rule->require.keys)
			return yerr(y, rc->node, "policy '%s' needs 'require'", rule->name);
		break;
	case RULE_AUDIT:
		if (!rc->has_match && !rule->log)
			return yerr(y, rc->node, "audit rule '%s' needs 'match' or 'log'",
			            rule->name);
		if (!rule->max_value_bytes)
			rule->max_value_bytes = 1024;
		if (!rule->max_bytes)
			rule->max_bytes = 1024 * 1024;
		if ((rule->sink.bootstrap || rule->sink.nprops || rule->sink.queue_bytes) &&
		    !rule->sink.kafka)
			return yerr(y, rc->node,
			            "audit '%s': 'bootstrap', 'tls', 'sasl', 'properties' and "
			            "'queue_bytes' go with 'kafka: TOPIC'",
			            rule->name);
		if (rule->sink.file && rule->sink.kafka)
			return yerr(y, rc->node,
			            "audit '%s': 'to' is a file or a Kafka topic, not both",
			            rule->name);
		break;
	case RULE_REWRITE:
		if (!rule->names && !rule->records)
			return yerr(y, rc->node,
			            "rewrite '%s' needs names to map (prefix, topics, groups, "
			            "transactional_ids) or records to rewrite (headers, mask)",
			            rule->name);
		if (rule_names_finish(y, rc->node, rule) || rule_rewrite_finish(y, rc->node, rule))
			return -1;
		break;
	case RULE_MIRROR:
	case RULE_TAP:
		if (rule_mirror_finish(y, rc->node, rule))
			return -1;
		break;
	}
	return 0;
}

static int load_section(struct yl *y, int section, const yaml_node_t *node)
{
	if (node->type == YAML_SCALAR_NODE && node->data.scalar.length == 0)
		return 0; /* "access:" with nothing under it */
	if (node->type != YAML_SEQUENCE_NODE)
		return yerr(y, node, "'%s' must be a list of rules", rule_section_name(section));
	struct rule_set *rs = y->rs;
	size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
	if (rs->n + n > RULE_MAX_RULES)
		return yerr(y, node, "more than %d rules", RULE_MAX_RULES);
	struct rule *v = realloc(rs->rules, (rs->n + n) * sizeof(*v));
	if (!v && n)
		return yerr(y, node, "out of memory");
	rs->rules = v;
	for (yaml_node_item_t *it = node->data.sequence.items.start;
	     it < node->data.sequence.items.top; it++) {
		const yaml_node_t *rn = ynode(y, *it);
		struct rule *rule = &rs->rules[rs->n];
		memset(rule, 0, sizeof(*rule));
		rule->section = (uint8_t)section;
		rule->idx = rs->n++;
		rule->line = (unsigned)rn->start_mark.line + 1;
		rule->col = (unsigned)rn->start_mark.column + 1;
		struct rule_ctx rc = {.rule = rule, .node = rn};
		if (y_map(y, rn, "a rule", rule_pair, &rc) || rule_finish(y, &rc))
			return -1;
		rs->nsec[section]++;
	}
	return 0;
}

static int top_pair(struct yl *y, const char *key, const yaml_node_t *knode, const yaml_node_t *val,
                    void *ctx)
{
	(void)ctx;
	for (int s = 0; s < RULE_NSECTIONS; s++)
		if (!strcmp(key, rule_section_name(s)))
			return load_section(y, s, val);
	return yerr(y, knode,
	            "unknown section '%s' (access, quotas, policies, audit, rewrite, mirror, tap)",
	            key);
}

/* ---- the set ---- */

static void pats_free(struct rule_pats *ps)
{
	for (unsigned i = 0; i < ps->n; i++) {
		free(ps->v[i].s);
		if (ps->v[i].re_ok)
			regfree(&ps->v[i].re);
	}
	free(ps->v);
}

static void strs_free(char **v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void rule_free(struct rule *rule)
{
	struct rule_match *m = &rule->match;
	free(m->apis);
	pats_free(&m->topic);
	pats_free(&m->client_id);
	pats_free(&m->principal);
	pats_free(&m->group);
	pats_free(&m->txn_id);
	free(m->source.v);
	free(m->brokers);
	strs_free(rule->require.headers, rule->require.nheaders);
	strs_free(rule->redact_headers, rule->nredact);
	free(rule->sink.file);
	free(rule->sink.kafka);
	free(rule->sink.bootstrap);
	rule_names_free(&rule->names);
	strs_free(rule->sink.props, rule->sink.nprops);
	rule_rewrite_free(rule);
	rule_mirror_free(rule);
}

static void set_free(struct rule_set *rs)
{
	if (!rs)
		return;
	for (unsigned i = 0; i < rs->n; i++)
		rule_free(&rs->rules[i]);
	free(rs->rules);
	free(rs->needs_body);
	rule_index_free(rs);
	free(rs->path);
	free(rs);
}

void rule_set_ref(struct rule_set *rs)
{
	atomic_fetch_add_explicit(&rs->refs, 1, memory_order_relaxed);
}

void rule_set_unref(struct rule_set **rsp)
{
	struct rule_set *rs = *rsp;
	*rsp = NULL;
	if (rs && atomic_fetch_sub_explicit(&rs->refs, 1, memory_order_acq_rel) == 1)
		set_free(rs);
}

static int set_index(struct rule_set *rs)
{
	rs->nslots = (unsigned)kd_api_key_max + 1;
	rs->needs_body = calloc(rs->nslots, 1);
	if (!rs->needs_body)
		return -1;
	for (unsigned i = 0; i < rs->n; i++) {
		const struct rule *rule = &rs->rules[i];
		if ((rule->match.keys & RULE_M_RECORD_BYTES) ||
		    (rule->section == RULE_POLICY && (rule->require.keys & RULE_REQ_MAX_RECORD)))
			rs->needs_records = 1;
		if (!rule_needs_body(rule))
			continue;
		for (unsigned k = 0; k < rs->nslots; k++)
			if (rule_has_api(rule, (int16_t)k))
				rs->needs_body[k] = 1;
	}
	return rule_index_build(rs);
}

int rule_set_needs_records(const struct rule_set *rs)
{
	return rs->needs_records;
}

int rule_set_needs_body(const struct rule_set *rs, int16_t api_key)
{
	/* An API key beyond the tables: decode what can be decoded. */
	if (api_key < 0 || (unsigned)api_key >= rs->nslots)
		return 0;
	return rs->needs_body[api_key];
}

static void sha256_hex(const void *p, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	out[0] = '\0';
	if (!EVP_Digest(p, len, md, &mdlen, EVP_sha256(), NULL))
		return;
	for (unsigned i = 0; i < mdlen && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

struct rule_set *rule_set_load_mem(const char *yaml, size_t len, const char *name, char *err,
                                   size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	struct rule_set *rs = calloc(1, sizeof(*rs));
	if (!rs) {
		kd_errf(err, errlen, "%s: out of memory", name);
		return NULL;
	}
	atomic_init(&rs->refs, 1);
	rs->path = strdup(name);
	struct timeval tv;
	gettimeofday(&tv, NULL);
	rs->loaded_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
	sha256_hex(yaml, len, rs->sha256);
	if (!yaml_parser_initialize(&parser)) {
		kd_errf(err, errlen, "%s: out of memory", name);
		set_free(rs);
		return NULL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	if (!yaml_parser_load(&parser, &doc)) {
		kd_errf(err, errlen, "%s:%zu:%zu: %s", name, parser.problem_mark.line + 1,
		        parser.problem_mark.column + 1,
		        parser.problem ? parser.problem : "YAML syntax error");
		yaml_parser_delete(&parser);
		set_free(rs);
		return NULL;
	}
	yaml_parser_delete(&parser);
	struct yl y = {.doc = &doc, .name = name, .err = err, .errlen = errlen, .rs = rs};
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	int rc = 0;
	if (root) /* an empty file is an empty rule set */
		rc = (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0)
		         ? 0
		         : y_map(&y, root, "the rules file", top_pair, NULL);
	yaml_document_delete(&doc);
	if (!rc && set_index(rs)) {
		kd_errf(err, errlen, "%s: out of memory", name);
		rc = -1;
	}
	if (rc) {
		set_free(rs);
		return NULL;
	}
	return rs;
}

struct rule_set *rule_set_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		kd_errf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(f);
		kd_errf(err, errlen, "%s: is a directory, not a rules file", path);
		return NULL;
	}
	size_t cap = 64 * 1024, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (len == cap) {
			if (cap >= RULE_FILE_MAX) {
				free(buf);
				fclose(f);
				kd_errf(err, errlen, "%s: larger than %u MiB", path,
				        RULE_FILE_MAX >> 20);
				return NULL;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		size_t got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	int ioerr = ferror(f);
	fclose(f);
	if (!buf || ioerr) {
		free(buf);
		kd_errf(err, errlen, "%s: %s", path, buf ? "read error" : "out of memory");
		return NULL;
	}
	struct rule_set *rs = rule_set_load_mem(buf, len, path, err, errlen);
	free(buf);
	return rs;
}
