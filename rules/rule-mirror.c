/* rule-mirror.c: the `mirror:` and `tap:` sections (rule-mirror.h). */
#include <stdlib.h>
#include <string.h>

#include "kd-api-keys-gen.h"
#include "kd-schema.h"
#include "rule-mirror.h"
#include "rule-yaml.h"
#include "rule.h"

#define MIRROR_PROPS_MAX 128

static struct rule_mirror *mirror_of(struct yl *y, const yaml_node_t *node, struct rule *rule)
{
	if (!rule->mirror && !(rule->mirror = calloc(1, sizeof(*rule->mirror))))
		yerr(y, node, "out of memory");
	return rule->mirror;
}

/* Adds one property to m (rule_sink_prop_fn): 0, or -1 out of memory. */
static int prop_add(void *ctx, const char *key, const char *val)
{
	struct rule_mirror *m = ctx;
	char **v = realloc(m->props, (2 * m->nprops + 3) * sizeof(*v));
	if (!v)
		return -1;
	m->props = v;
	v[2 * m->nprops] = strdup(key);
	v[2 * m->nprops + 1] = strdup(val);
	v[2 * m->nprops + 2] = NULL;
	if (!v[2 * m->nprops] || !v[2 * m->nprops + 1]) {
		free(v[2 * m->nprops]);
		free(v[2 * m->nprops + 1]);
		v[2 * m->nprops] = NULL;
		return -1;
	}
	m->nprops++;
	return 0;
}

static int prop_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                     const yaml_node_t *val, void *ctx)
{
	struct rule_mirror *m = ctx;
	char buf[1024];
	if (m->nprops >= MIRROR_PROPS_MAX)
		return yerr(y, val, "'properties': at most %d", MIRROR_PROPS_MAX);
	if (!strcmp(key, "bootstrap.servers"))
		return yerr(y, knode, "'properties': give the cluster as 'bootstrap'");
	if (y_str(y, val, key, buf, sizeof(buf)))
		return -1;
	return prop_add(m, key, buf) ? yerr(y, val, "out of memory") : 0;
}

/* A mirror's `to:` being read: the rule's action, and its security keys
 * until the whole mapping is read. */
struct mirror_to {
	struct rule_mirror *m;
	struct rule_sink_sec sec;
};

static int to_pair(struct yl *y, const char *key, const yaml_node_t *knode, const yaml_node_t *val,
                   void *ctx)
{
	struct mirror_to *t = ctx;
	struct rule_mirror *m = t->m;
	if (!strcmp(key, "bootstrap"))
		return y_dup(y, val, key, &m->bootstrap);
	if (!strcmp(key, "queue_bytes"))
		return y_size(y, val, key, 64 * 1024, 1ll << 40, &m->queue_bytes);
	if (!strcmp(key, "properties"))
		return y_map(y, val, "'properties'", prop_pair, m);
	int rc = rule_sink_sec_pair(y, key, knode, val, &t->sec);
	if (rc <= 0)
		return rc;
	return yerr(y, knode,
	            "unknown 'to' key '%s' (bootstrap, queue_bytes, tls, sasl, properties)", key);
}

int rule_mirror_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                     const yaml_node_t *val, struct rule *rule)
{
	(void)knode;
	if (rule->section == RULE_TAP) {
		if (!rule->tap && !(rule->tap = calloc(1, sizeof(*rule->tap))))
			return yerr(y, val, "out of memory");
		if (!strcmp(key, "to"))
			return y_dup(y, val, key, &rule->tap->file);
		if (!strcmp(key, "max_bytes"))
			return y_size(y, val, key, 0, 1ll << 50, &rule->tap->max_bytes);
		if (!strcmp(key, "files")) {
			int64_t v;
			if (y_size(y, val, key, 1, 1000, &v))
				return -1;
			rule->tap->files = (unsigned)v;
			return 0;
		}
		return 1;
	}
	struct rule_mirror *m = mirror_of(y, val, rule);
	if (!m)
		return -1;
	if (!strcmp(key, "topic")) {
		if (y_dup(y, val, key, &m->topic))
			return -1;
		char probe[256];
		if (rule_mirror_topic(m->topic, "t", 1, probe, sizeof(probe)) < 0)
			return yerr(y, val, "'topic': '%s' does not make a topic name", m->topic);
		return 0;
	}
	if (!strcmp(key, "partition")) {
		char buf[16];
		if (y_str(y, val, key, buf, sizeof(buf)))
			return -1;
		if (!strcmp(buf, "same"))
			m->by_key = 0;
		else if (!strcmp(buf, "key"))
			m->by_key = 1;
		else
			return yerr(y, val, "'partition': '%s' is not same or key", buf);
		return 0;
	}
	if (!strcmp(key, "to")) {
		if (val->type == YAML_SCALAR_NODE)
			return y_dup(y, val, key, &m->bootstrap);
		struct mirror_to t = {.m = m};
		int rc = y_map(y, val, "'to'", to_pair, &t);
		if (!rc)
			rc = rule_sink_sec_finish(y, val, &t.sec, m->props, m->nprops, prop_add, m);
		rule_sink_sec_free(&t.sec);
		return rc;
	}
	return 1;
}

int rule_mirror_finish(struct yl *y, const yaml_node_t *node, struct rule *rule)
{
	if (rule->section == RULE_TAP) {
		if (!rule->tap || !rule->tap->file || !rule->tap->file[0])
			return yerr(y, node, "tap '%s' needs 'to: FILE.pcapng'", rule->name);
		if (!rule->tap->files)
			rule->tap->files = 10;
		if (!rule->tap->max_bytes)
			rule->tap->max_bytes = 100ll << 20;
		return 0;
	}
	struct rule_mirror *m = mirror_of(y, node, rule);
	if (!m)
		return -1;
	if (!m->bootstrap || !m->bootstrap[0])
		return yerr(y, node, "mirror '%s' needs 'to: {bootstrap: HOST:PORT}'", rule->name);
	if (!m->topic && !(m->topic = strdup("{topic}")))
		return yerr(y, node, "out of memory");
	if (!m->queue_bytes)
		m->queue_bytes = RULE_MIRROR_QUEUE_DEFAULT;
	/* A mirror copies Produce requests: an api matcher may only narrow
	 * Produce's versions; without one, Produce is implied. */
	struct rule_match *mt = &rule->match;
	for (unsigned i = 0; i < mt->napis; i++)
		if (mt->apis[i].key != KD_API_PRODUCE)
			return yerr(y, node, "mirror '%s': 'api' can only be Produce", rule->name);
	if (!(mt->keys & RULE_M_API)) {
		mt->apis = calloc(1, sizeof(*mt->apis));
		if (!mt->apis)
			return yerr(y, node, "out of memory");
		mt->apis[0] = (struct rule_api){KD_API_PRODUCE, 0, INT16_MAX};
		mt->napis = 1;
		mt->keys |= RULE_M_API;
	}
	return 0;
}

void rule_mirror_free(struct rule *rule)
{
	if (rule->mirror) {
		struct rule_mirror *m = rule->mirror;
		free(m->topic);
		free(m->bootstrap);
		for (unsigned i = 0; i < 2 * m->nprops; i++)
			free(m->props[i]);
		free(m->props);
		free(m);
		rule->mirror = NULL;
	}
	if (rule->tap) {
		free(rule->tap->file);
		free(rule->tap);
		rule->tap = NULL;
	}
}

void rule_mirror_dump(const struct rule *rule, FILE *f)
{
	if (rule->tap)
		fprintf(f, "tap to %s (rotated at %lld bytes, %u files)", rule->tap->file,
		        (long long)rule->tap->max_bytes, rule->tap->files);
	if (!rule->mirror)
		return;
	const struct rule_mirror *m = rule->mirror;
	fprintf(f, "mirror to %s, topic %s, partition %s, queue %lld bytes", m->bootstrap, m->topic,
	        m->by_key ? "by key" : "same", (long long)m->queue_bytes);
	for (unsigned i = 0; i < m->nprops; i++)
		fprintf(f, "%s%s=%s", i ? "," : ", properties ", m->props[2 * i],
		        /* a property may hold a password (sasl.password): never shown */
		        strstr(m->props[2 * i], "password") || strstr(m->props[2 * i], "secret")
		            ? "[redacted]"
		            : m->props[2 * i + 1]);
}

int rule_mirror_topic(const char *tpl, const char *t, size_t tlen, char *out, size_t cap)
{
	static const char ph[] = "{topic}";
	size_t o = 0;
	while (*tpl) {
		const char *p = tpl;
		size_t n;
		if (!strncmp(tpl, ph, sizeof(ph) - 1)) {
			p = t;
			n = tlen;
			tpl += sizeof(ph) - 1;
		} else {
			n = 1;
			tpl++;
		}
		if (o + n >= cap || o + n > 249)
			return -1;
		memcpy(out + o, p, n);
		o += n;
	}
	out[o] = 0;
	return o ? (int)o : -1;
}

int rule_mirror_matches(const struct rule *rule, const struct rule_req *req, int topic)
{
	return rule->section == RULE_MIRROR && rule_matches(rule, req, topic, NULL);
}

int rule_tap_matches(const struct rule *rule, const struct rule_req *req)
{
	if (rule->section != RULE_TAP)
		return 0;
	int hit = req->ntopics ? 0 : rule_matches(rule, req, -1, NULL);
	for (unsigned t = 0; t < req->ntopics && !hit; t++)
		hit = rule_matches(rule, req, (int)t, NULL);
	return hit;
}
