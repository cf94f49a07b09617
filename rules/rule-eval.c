/* rule-eval.c: judging a request against a rule set (rule_eval), the one
 * function the proxy, the analyzer and `kwire rules explain` share.
 *
 * Order: access rules (first match wins, per topic when the request names
 * topics), then policies on what access let through, then every matching
 * quota and audit rule. A rule whose matchers need body facts never
 * matches a request judged on its header alone (have_body = 0). */
#include <fnmatch.h>
#include <string.h>

#include "kd-api-keys-gen.h"
#include "kd-schema.h"
#include "rule-index.h"
#include "rule-yaml.h"
#include "rule.h"

/* ---- matchers ---- */

static int pat_match(const struct rule_pat *pat, const struct kd_view *v)
{
	char buf[1024];
	const char *s;
	if (pat->kind == RULE_PAT_EXACT)
		return v->len == pat->len && !memcmp(v->p, pat->s, pat->len);
	/* fnmatch and regexec take C strings; names (topics <= 249 bytes,
	 * client ids) fit. A longer one, or one with a NUL, matches no
	 * pattern. */
	if (v->len >= sizeof(buf) || (v->len && memchr(v->p, '\0', v->len)))
		return 0;
	if (v->len)
		memcpy(buf, v->p, v->len);
	buf[v->len] = '\0';
	s = buf;
	if (pat->kind == RULE_PAT_GLOB)
		return fnmatch(pat->s, s, 0) == 0;
	return regexec(&pat->re, s, 0, NULL, 0) == 0;
}

static int pats_match(const struct rule_pats *ps, const struct kd_view *v)
{
	int pos = ps->npos == 0;
	for (unsigned i = 0; i < ps->n; i++) {
		const struct rule_pat *pat = &ps->v[i];
		if (pat->neg) {
			if (pat_match(pat, v))
				return 0;
		} else if (!pos && pat_match(pat, v)) {
			pos = 1;
		}
	}
	return pos;
}

static int cidr_match(const struct rule_cidr *c, uint8_t family, const uint8_t *addr)
{
	uint8_t a4[16];
	/* An IPv4-mapped IPv6 client (::ffff:a.b.c.d) is judged as IPv4. */
	if (family == 6 && c->family == 4) {
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(addr, mapped, 12))
			return 0;
		memcpy(a4, addr + 12, 4);
		addr = a4;
		family = 4;
	}
	if (family != c->family)
		return 0;
	unsigned full = c->bits / 8, rest = c->bits % 8;
	if (memcmp(addr, c->addr, full))
		return 0;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));
		if ((addr[full] & mask) != (c->addr[full] & mask))
			return 0;
	}
	return 1;
}

static int cidrs_match(const struct rule_cidrs *cs, uint8_t family, const uint8_t *addr)
{
	if (!family)
		return 0; /* unknown source: a source matcher cannot say yes */
	int pos = cs->npos == 0;
	for (unsigned i = 0; i < cs->n; i++) {
		const struct rule_cidr *c = &cs->v[i];
		if (c->neg) {
			if (cidr_match(c, family, addr))
				return 0;
		} else if (!pos && cidr_match(c, family, addr)) {
			pos = 1;
		}
	}
	return pos;
}

/* Whether some non-null value of v[0..n) matches ps. */
static int any_match(const struct rule_pats *ps, const struct kd_view *v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (!v[i].null && v[i].p && pats_match(ps, &v[i]))
			return 1;
	return 0;
}

static int api_match(const struct rule_match *m, int16_t key, int16_t ver)
{
	for (unsigned i = 0; i < m->napis; i++)
		if (m->apis[i].key == key && ver >= m->apis[i].lo && ver <= m->apis[i].hi)
			return 1;
	return 0;
}

static int range_has(const struct rule_range *r, int64_t v)
{
	return v >= r->lo && v <= r->hi;
}

static uint8_t acks_bit(int16_t acks)
{
	switch (acks) {
	case 0:
		return RULE_ACKS_0;
	case 1:
		return RULE_ACKS_1;
	case -1:
		return RULE_ACKS_ALL;
	default:
		return 0;
	}
}

int rule_header_matches(const struct rule *rule, const struct rule_req *req)
{
	const struct rule_match *m = &rule->match;
	uint32_t k = m->keys;
	if ((k & RULE_M_API) && !api_match(m, req->api_key, req->api_version))
		return 0;
	if ((k & RULE_M_CLIENT_ID) && !pats_match(&m->client_id, &req->client_id))
		return 0;
	if ((k & RULE_M_PRINCIPAL) && !pats_match(&m->principal, &req->principal))
		return 0;
	if ((k & RULE_M_SOURCE) && !cidrs_match(&m->source, req->src_family, req->src_addr))
		return 0;
	if (k & RULE_M_BROKER) {
		for (unsigned i = 0; i < m->nbrokers; i++)
			if (m->brokers[i] == req->broker_id)
				return 1;
		return 0;
	}
	return 1;
}

int rule_needs_body(const struct rule *rule)
{
	/* Mirror rules are matched on the proxy's mirror thread, off the
	 * forwarding path (px-mirror.c). */
	if (rule->section == RULE_MIRROR)
		return 0;
	/* A rule that can refuse needs the body too: the answer mirrors the
	 * request's topics and partitions (kd-build.h). */
	return (rule->match.keys & RULE_M_BODY) || rule->section == RULE_POLICY ||
	       (rule->section == RULE_ACCESS && rule->deny_set) ||
	       (rule->section == RULE_QUOTA && rule->per == RULE_PER_TOPIC) ||
	       (rule->section == RULE_AUDIT && rule->log != RULE_LOG_NONE) ||
	       rule_rewrite_needs_body(rule);
}

int rule_set_needs_body_req(const struct rule_set *rs, const struct rule_req *req)
{
	return rs->n && rule_index_needs_body(rs, req);
}

int rule_matches(const struct rule *rule, const struct rule_req *req, int topic, const char **why)
{
	const struct rule_match *m = &rule->match;
	const char *fail = NULL;
	const struct rule_topic *t = topic >= 0 ? &req->topics[topic] : NULL;
	uint32_t k = m->keys;
	if ((k & RULE_M_BODY) && !req->have_body)
		fail = "body";
	else if ((k & RULE_M_API) && !api_match(m, req->api_key, req->api_version))
		fail = "api";
	else if ((k & RULE_M_CLIENT_ID) && !pats_match(&m->client_id, &req->client_id))
		fail = "client_id";
	else if ((k & RULE_M_PRINCIPAL) && !pats_match(&m->principal, &req->principal))
		fail = "principal";
	else if ((k & RULE_M_SOURCE) && !cidrs_match(&m->source, req->src_family, req->src_addr))
		fail = "source";
	else if (k & RULE_M_BROKER) {
		fail = "broker";
		for (unsigned i = 0; i < m->nbrokers; i++)
			if (m->brokers[i] == req->broker_id)
				fail = NULL;
	}
	if (!fail && (k & RULE_M_GROUP) && !any_match(&m->group, req->groups, req->ngroups))
		fail = "group";
	if (!fail && (k & RULE_M_TXN_ID) && !any_match(&m->txn_id, req->txn_ids, req->ntxn_ids))
		fail = "transactional_id";
	if (!fail && (k & RULE_M_ACKS) && !(m->acks & acks_bit(req->acks)))
		fail = "acks";
	if (!fail && (k & RULE_M_PER_TOPIC) && !t)
		fail = "topic";
	if (!fail && t) {
		if ((k & RULE_M_TOPIC) && !pats_match(&m->topic, &t->name))
			fail = "topic";
		else if ((k & RULE_M_CODEC) && !(m->codecs & t->codecs))
			fail = "compression";
		else if ((k & RULE_M_RECORDS) &&
		         (t->records < 0 || !range_has(&m->records, t->records)))
			fail = "records";
		else if ((k & RULE_M_BYTES) && (t->bytes < 0 || !range_has(&m->bytes, t->bytes)))
			fail = "bytes";
		else if ((k & RULE_M_RECORD_BYTES) &&
		         (t->max_record_bytes < 0 ||
		          !range_has(&m->record_bytes, t->max_record_bytes)))
			fail = "record_bytes";
	}
	if (why)
		*why = fail;
	return fail == NULL;
}

/* ---- errors ---- */

/* Kafka's error codes (clients/.../protocol/Errors.java). */
enum {
	ERR_INVALID_REQUIRED_ACKS = 21,
	ERR_MESSAGE_TOO_LARGE = 10,
	ERR_INVALID_RECORD = 87,
	ERR_UNSUPPORTED_COMPRESSION_TYPE = 76,
	ERR_POLICY_VIOLATION = 44,
	ERR_TOPIC_AUTHORIZATION_FAILED = 29,
	ERR_GROUP_AUTHORIZATION_FAILED = 30,
	ERR_CLUSTER_AUTHORIZATION_FAILED = 31,
	ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53,
};

int16_t rule_deny_error(const struct rule *rule, int16_t api_key)
{
	if (rule->deny != RULE_DENY_AUTO)
		return rule->deny;
	switch (api_key) {
	case KD_API_FIND_COORDINATOR:
		/* A transactional id's coordinator (KeyType 1). */
		if ((rule->match.keys & (RULE_M_TXN_ID | RULE_M_GROUP)) == RULE_M_TXN_ID)
			return ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
		return ERR_GROUP_AUTHORIZATION_FAILED;
	case KD_API_JOIN_GROUP:
	case KD_API_SYNC_GROUP:
	case KD_API_HEARTBEAT:
	case KD_API_LEAVE_GROUP:
	case KD_API_OFFSET_COMMIT:
	case KD_API_OFFSET_FETCH:
	case KD_API_DESCRIBE_GROUPS:
	case KD_API_DELETE_GROUPS:
	case KD_API_OFFSET_DELETE:
	case KD_API_CONSUMER_GROUP_HEARTBEAT:
	case KD_API_CONSUMER_GROUP_DESCRIBE:
	case KD_API_TXN_OFFSET_COMMIT:
		return ERR_GROUP_AUTHORIZATION_FAILED;
	case KD_API_INIT_PRODUCER_ID:
	case KD_API_ADD_PARTITIONS_TO_TXN:
	case KD_API_ADD_OFFSETS_TO_TXN:
	case KD_API_END_TXN:
		return ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
	case KD_API_PRODUCE:
	case KD_API_FETCH:
	case KD_API_LIST_OFFSETS:
	case KD_API_METADATA:
	case KD_API_CREATE_TOPICS:
	case KD_API_DELETE_TOPICS:
	case KD_API_DELETE_RECORDS:
	case KD_API_CREATE_PARTITIONS:
	case KD_API_OFFSET_FOR_LEADER_EPOCH:
	case KD_API_DESCRIBE_TOPIC_PARTITIONS:
		return ERR_TOPIC_AUTHORIZATION_FAILED;
	case KD_API_DESCRIBE_CONFIGS:
	case KD_API_ALTER_CONFIGS:
	case KD_API_INCREMENTAL_ALTER_CONFIGS:
		/* Config resources are topics, groups or brokers: the error of
		 * what the rule names. */
		if (rule->match.keys & RULE_M_TOPIC)
			return ERR_TOPIC_AUTHORIZATION_FAILED;
		if (rule->match.keys & RULE_M_GROUP)
			return ERR_GROUP_AUTHORIZATION_FAILED;
		return ERR_CLUSTER_AUTHORIZATION_FAILED;
	default:
		return ERR_CLUSTER_AUTHORIZATION_FAILED;
	}
}

/* The first requirement of a policy that topic t (or the request) breaks,
 * as the error Kafka answers it with; 0 when none. */
static int16_t policy_check(const struct rule *rule, const struct rule_req *req, int topic)
{
	const struct rule_require *r = &rule->require;
	const struct rule_topic *t = topic >= 0 ? &req->topics[topic] : NULL;
	if (req->api_key == KD_API_PRODUCE && req->have_body) {
		if ((r->keys & RULE_REQ_ACKS) && !(r->acks & acks_bit(req->acks)))
			return ERR_INVALID_REQUIRED_ACKS;
		if (t) {
			if ((r->keys & RULE_REQ_CODEC) && (t->codecs & ~r->codecs))
				return ERR_UNSUPPORTED_COMPRESSION_TYPE;
			if ((r->keys & RULE_REQ_MAX_RECORD) &&
			    t->max_record_bytes > r->max_record_bytes)
				return ERR_MESSAGE_TOO_LARGE;
			if ((r->keys & RULE_REQ_HEADERS) && req->has_header)
				for (unsigned i = 0; i < r->nheaders; i++)
					if (req->has_header(req->arg, (unsigned)topic,
					                    r->headers[i],
					                    strlen(r->headers[i])) == 0)
						return ERR_INVALID_RECORD;
		}
	}
	if (req->api_key == KD_API_CREATE_TOPICS && t) {
		/* -1 asks for the broker's default, which kwire cannot see:
		 * refuse, as a policy that states a range must be explicit. */
		if ((r->keys & RULE_REQ_PARTITIONS) &&
		    !range_has(&r->partitions, t->num_partitions))
			return ERR_POLICY_VIOLATION;
		if ((r->keys & RULE_REQ_REPLICATION) &&
		    !range_has(&r->replication_factor, t->replication_factor))
			return ERR_POLICY_VIOLATION;
	}
	return 0;
}

/* ---- the verdict ---- */

static void hit(const struct rule_req *req, const struct rule *rule)
{
	if (req->quiet)
		return;
	atomic_fetch_add_explicit(&((struct rule *)rule)->hits, 1, memory_order_relaxed);
}

static void add_hit(struct rule_hit *hits, unsigned *n, const struct rule *rule, int topic)
{
	if (*n < RULE_MAX_HITS)
		hits[(*n)++] = (struct rule_hit){rule, topic};
}

/* The access rule that decides topic (or the request, topic -1), or
 * NULL (allowed, no rule): the first in file order that matches, among
 * the candidates the index gives (rule-index.h). */
static const struct rule *access_for(const struct rule_set *rs, const struct rule_req *req,
                                     int topic)
{
	struct rule_cand c;
	const struct rule *rule;
	rule_cand_start(&c, rs, RULE_ACCESS, req, topic);
	while ((rule = rule_cand_next(&c)))
		if (rule_matches(rule, req, topic, NULL))
			return rule;
	return NULL;
}

int rule_set_filters_topics(const struct rule_set *rs, const struct rule_req *req)
{
	/* Metadata is the one API whose answer lists topics its request did
	 * not name (all topics: Topics null, or empty in v0). */
	if (req->api_key != KD_API_METADATA || !req->have_body || req->ntopics)
		return 0;
	struct rule_cand c;
	const struct rule *rule;
	rule_cand_all(&c, rs, RULE_ACCESS);
	while ((rule = rule_cand_next(&c)))
		if (rule->deny_set && (rule->match.keys & RULE_M_TOPIC) &&
		    rule_header_matches(rule, req))
			return 1;
	return 0;
}

const struct rule *rule_topic_denied(const struct rule_set *rs, const struct rule_req *req,
                                     struct kd_view name, int16_t *error)
{
	struct rule_topic t = {.name = name,
	                       .records = -1,
	                       .bytes = -1,
	                       .max_record_bytes = -1,
	                       .num_partitions = -1,
	                       .replication_factor = -1};
	struct rule_req one = *req;
	one.have_body = 1;
	one.topics = &t;
	one.ntopics = 1;
	const struct rule *by = access_for(rs, &one, 0);
	if (!by || !by->deny_set)
		return NULL;
	hit(req, by);
	*error = rule_deny_error(by, req->api_key);
	return by;
}

/* Adds rule (a quota or audit) to v's hits when it matches req. */
static void quota_audit(const struct rule *rule, const struct rule_req *req, unsigned nt,
                        struct rule_verdict *v)
{
	int matched = 0;
	if (nt && (rule->match.keys & RULE_M_PER_TOPIC ||
	           (rule->section == RULE_QUOTA && rule->per == RULE_PER_TOPIC))) {
		for (unsigned t = 0; t < nt; t++) {
			if (!rule_matches(rule, req, (int)t, NULL))
				continue;
			if (rule->section == RULE_QUOTA && rule->per == RULE_PER_TOPIC)
				add_hit(v->quotas, &v->nquotas, rule, (int)t);
			else if (!matched && rule->section == RULE_QUOTA)
				add_hit(v->quotas, &v->nquotas, rule, -1);
			else if (!matched)
				add_hit(v->audits, &v->naudits, rule, (int)t);
			matched = 1;
		}
	} else if (rule_matches(rule, req, -1, NULL)) {
		matched = 1;
		if (rule->section == RULE_QUOTA)
			add_hit(v->quotas, &v->nquotas, rule, -1);
		else
			add_hit(v->audits, &v->naudits, rule, -1);
	}
	if (matched)
		hit(req, rule);
}

int16_t rule_eval(const struct rule_set *rs, const struct rule_req *req, struct rule_verdict *v)
{
	struct rule_topic_verdict *tv = v->topics;
	memset(v, 0, sizeof(*v));
	v->topics = tv;
	unsigned nt = req->have_body ? req->ntopics : 0;
	if (tv)
		memset(tv, 0, req->ntopics * sizeof(*tv));

	/* Access and policies. With topics, each topic is judged alone (a
	 * Produce may be split); without, the request is. */
	int16_t first_err = 0;
	const struct rule *first_rule = NULL;
	unsigned units = nt ? nt : 1;
	for (unsigned u = 0; u < units; u++) {
		int topic = nt ? (int)u : -1;
		int16_t err = 0;
		const struct rule *by = access_for(rs, req, topic);
		if (by) {
			hit(req, by);
			if (by->deny_set)
				err = rule_deny_error(by, req->api_key);
		}
		if (!err && rs->nsec[RULE_POLICY]) {
			struct rule_cand c;
			const struct rule *rule;
			by = NULL;
			rule_cand_start(&c, rs, RULE_POLICY, req, topic);
			while (!err && (rule = rule_cand_next(&c))) {
				if (!rule_matches(rule, req, topic, NULL))
					continue;
				err = policy_check(rule, req, topic);
				if (err) {
					by = rule;
					hit(req, rule);
				}
			}
		}
		if (!err)
			continue;
		if (!first_err) {
			first_err = err;
			first_rule = by;
		}
		v->nrefused++;
		if (tv && topic >= 0)
			tv[topic] = (struct rule_topic_verdict){err, by};
	}
	if (v->nrefused == units) {
		v->error = first_err;
		v->rule = first_rule;
	} else if (v->nrefused) {
		v->split = 1;
	}

	/* Quotas and audits apply to whatever is forwarded; a refused
	 * request still counts against request-rate quotas. Each section's
	 * own rules, in file order (they are few; hits go per section). */
	for (int sec = RULE_QUOTA; sec <= RULE_AUDIT; sec++) {
		if (sec == RULE_POLICY || !rs->nsec[sec])
			continue;
		struct rule_cand c;
		const struct rule *rule;
		rule_cand_all(&c, rs, sec);
		while ((rule = rule_cand_next(&c)))
			quota_audit(rule, req, nt, v);
	}
	return v->error;
}

size_t rule_quota_key(const struct rule_hit *h, const struct rule_req *req, char *buf, size_t cap)
{
	const struct kd_view *s = NULL;
	int n = 0;
	switch (h->rule->per) {
	case RULE_PER_CLIENT_ID:
		s = &req->client_id;
		break;
	case RULE_PER_PRINCIPAL:
		s = &req->principal;
		break;
	case RULE_PER_TOPIC:
		if (h->topic >= 0)
			s = &req->topics[h->topic].name;
		break;
	case RULE_PER_SOURCE:
		if (req->src_family == 4) {
			const uint8_t *a = req->src_addr;
			n = snprintf(buf, cap, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
		} else if (req->src_family == 6) {
			for (int i = 0; i < 16; i += 2)
				n += snprintf(buf + n, cap > (size_t)n ? cap - (size_t)n : 0,
				              "%s%x", i ? ":" : "",
				              (req->src_addr[i] << 8) | req->src_addr[i + 1]);
		}
		break;
	default:
		break;
	}
	if (s) {
		size_t len = s->len < cap ? s->len : cap - 1;
		if (len && s->p)
			memcpy(buf, s->p, len);
		buf[len] = '\0';
		return len;
	}
	if (n <= 0)
		n = snprintf(buf, cap, "*");
	return (size_t)n < cap ? (size_t)n : cap - 1;
}
