/* test_rule_index.c: the rule index (rules/rule-index.h) changes what
 * rule_eval() tries, never what it decides. Random rule files (exact names,
 * globs and regexes with and without a literal prefix, exclusions, API lists,
 * sources; access, policies, quotas, audits) judge random requests, and
 * every verdict is compared with a scan of the whole file in order (the
 * engine before the index): the rule that decides each topic, the error,
 * the quota and audit hits in order, and whether the body is needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kd-api-keys-gen.h"
#include "rule-index.h"
#include "rule.h"

static const char *names[] = {
    "orders.eu", "orders.us", "orders.eu.x", "audit.log", "pii.x", "payments", "o", "",
    "*x",        "ordersx",   "orders",      "pay",       "ab",    "abbc",     "ac"};
static const char *topic_pats[] = {"orders.eu",
                                   "orders.*",
                                   "orders.e*",
                                   "o*",
                                   "*.log",
                                   "p?i.*",
                                   "[op]*",
                                   "\\*x",
                                   "/orders\\.(eu|us)/",
                                   "!orders.us",
                                   "!*.x",
                                   "payments",
                                   "orders.eu.x",
                                   "a*",
                                   "*",
                                   "o",
                                   "orders?",
                                   "/p.*/",
                                   "/ordersx?/",
                                   "/ab*c/",
                                   "/pay(ments)?/",
                                   "/orders\\.eu/",
                                   "/a{0,2}b*c/",
                                   "/orders.*/",
                                   "/[o]rders/",
                                   "/pay+/",
                                   "/x|orders/"};
static const char *clients[] = {"batch-1", "batch-22", "app-1", "rdkafka", "", "batch-"};
static const char *client_pats[] = {"batch-1",      "batch-*", "app-?",   "!batch-22",
                                    "/app-[0-9]+/", "*",       "rdkafka", "b*"};
static const char *apis[] = {"Produce",     "Fetch",      "Metadata",
                             "ApiVersions", "Produce@9+", "Fetch@0-11"};
static const int16_t req_apis[] = {KD_API_PRODUCE, KD_API_FETCH, KD_API_METADATA,
                                   KD_API_API_VERSIONS};

static unsigned rnd(unsigned n)
{
	return (unsigned)random() % n;
}

static size_t add_list(char *y, size_t cap, size_t len, const char *key, const char **pool,
                       unsigned npool)
{
	unsigned n = 1 + rnd(3);
	len += (size_t)snprintf(y + len, cap - len, "%s: [", key);
	for (unsigned i = 0; i < n; i++) {
		len += (size_t)snprintf(y + len, cap - len, "%s'", i ? ", " : "");
		for (const char *p = pool[rnd(npool)]; *p; p++) {
			if (*p == '\'')
				y[len++] = '\'';
			y[len++] = *p;
		}
		len += (size_t)snprintf(y + len, cap - len, "'");
	}
	len += (size_t)snprintf(y + len, cap - len, "], ");
	return len;
}

static size_t add_match(char *y, size_t cap, size_t len)
{
	len += (size_t)snprintf(y + len, cap - len, "    match: {");
	if (rnd(3) == 0)
		len = add_list(y, cap, len, "api", apis, sizeof(apis) / sizeof(*apis));
	if (rnd(2) == 0)
		len = add_list(y, cap, len, "topic", topic_pats,
		               sizeof(topic_pats) / sizeof(*topic_pats));
	if (rnd(3) == 0)
		len = add_list(y, cap, len, "client_id", client_pats,
		               sizeof(client_pats) / sizeof(*client_pats));
	if (rnd(8) == 0)
		len += (size_t)snprintf(y + len, cap - len, "source: '%s', ",
		                        rnd(2) ? "127.0.0.0/8" : "!10.0.0.0/8");
	if (rnd(10) == 0)
		len += (size_t)snprintf(y + len, cap - len, "acks: [0, 1], ");
	len += (size_t)snprintf(y + len, cap - len, "}\n");
	return len;
}

static struct rule_set *random_set(unsigned nrules)
{
	size_t cap = 4096 + (size_t)nrules * 512, len = 0;
	char *y = malloc(cap);
	const char *secs[] = {"access", "policies", "quotas", "audit"};
	for (int sec = 0; sec < 4; sec++) {
		unsigned n = sec == 0 ? nrules : rnd(4);
		if (!n)
			continue;
		len += (size_t)snprintf(y + len, cap - len, "%s:\n", secs[sec]);
		for (unsigned i = 0; i < n; i++) {
			len +=
			    (size_t)snprintf(y + len, cap - len, "  - name: %s-%u\n", secs[sec], i);
			len = add_match(y, cap, len);
			if (sec == 0)
				len += (size_t)snprintf(y + len, cap - len, "    %s\n",
				                        rnd(4) == 0 ? "allow: true" : "deny: true");
			else if (sec == 1)
				len += (size_t)snprintf(y + len, cap - len,
				                        "    require: {acks: all}\n");
			else if (sec == 2)
				len += (size_t)snprintf(y + len, cap - len,
				                        "    requests_per_sec: 10\n%s",
				                        rnd(2) ? "    per: topic\n" : "");
			else
				len += (size_t)snprintf(y + len, cap - len, "    log: %s\n",
				                        rnd(2) ? "summary" : "records");
		}
	}
	char err[512];
	struct rule_set *rs = rule_set_load_mem(y, len, "rand.yaml", err, sizeof(err));
	if (!rs)
		fail_msg("%s\n%.*s", err, (int)len, y);
	free(y);
	return rs;
}

static struct kd_view sv(const char *s)
{
	return (struct kd_view){(const uint8_t *)s, (uint32_t)strlen(s), 0};
}

/* The first rule of section matching topic, scanning the whole file. */
static const struct rule *scan_first(const struct rule_set *rs, int section,
                                     const struct rule_req *req, int topic)
{
	for (unsigned i = 0; i < rs->n; i++)
		if (rs->rules[i].section == section &&
		    rule_matches(&rs->rules[i], req, topic, NULL))
			return &rs->rules[i];
	return NULL;
}

static void check_request(const struct rule_set *rs, const struct rule_req *req)
{
	struct rule_topic_verdict tv[8];
	struct rule_verdict v = {.topics = tv};
	rule_eval(rs, req, &v);
	unsigned nt = req->have_body ? req->ntopics : 0;
	unsigned refused = 0;
	for (unsigned u = 0; u < (nt ? nt : 1); u++) {
		int topic = nt ? (int)u : -1;
		const struct rule *by = scan_first(rs, RULE_ACCESS, req, topic);
		int16_t err = by && by->deny_set ? rule_deny_error(by, req->api_key) : 0;
		if (!err) {
			/* Policies (all require acks: all), in file order. */
			by = NULL;
			for (unsigned i = 0; i < rs->n && !err; i++) {
				const struct rule *rule = &rs->rules[i];
				if (rule->section == RULE_POLICY &&
				    req->api_key == KD_API_PRODUCE && req->have_body &&
				    req->acks != -1 && rule_matches(rule, req, topic, NULL)) {
					err = 21; /* INVALID_REQUIRED_ACKS */
					by = rule;
				}
			}
		}
		refused += err != 0;
		if (topic >= 0) {
			assert_int_equal(tv[topic].error, err);
			assert_ptr_equal(tv[topic].rule, err ? by : NULL);
		} else if (err) {
			assert_int_equal(v.error, err);
			assert_ptr_equal(v.rule, by);
		} else {
			assert_int_equal(v.error, 0);
		}
	}
	assert_int_equal(v.nrefused, refused);
	/* Quotas and audits: every matching rule, in file order. */
	unsigned nq = 0, na = 0;
	for (unsigned i = 0; i < rs->n; i++) {
		const struct rule *rule = &rs->rules[i];
		if (rule->section != RULE_QUOTA && rule->section != RULE_AUDIT)
			continue;
		int matched = 0;
		int per_topic = rule->section == RULE_QUOTA && rule->per == RULE_PER_TOPIC;
		if (nt && ((rule->match.keys & RULE_M_PER_TOPIC) || per_topic)) {
			for (unsigned t = 0; t < nt; t++)
				if (rule_matches(rule, req, (int)t, NULL)) {
					if (rule->section == RULE_QUOTA && (per_topic || !matched))
						assert_ptr_equal(v.quotas[nq++].rule, rule);
					else if (!matched)
						assert_ptr_equal(v.audits[na++].rule, rule);
					matched = 1;
				}
		} else if (rule_matches(rule, req, -1, NULL)) {
			if (rule->section == RULE_QUOTA)
				assert_ptr_equal(v.quotas[nq++].rule, rule);
			else
				assert_ptr_equal(v.audits[na++].rule, rule);
		}
	}
	assert_int_equal(v.nquotas, nq);
	assert_int_equal(v.naudits, na);
	/* The body is needed when a rule that needs it can apply by the
	 * header: the same request judged without its body must get the
	 * verdict it gets with it. */
	struct rule_req hdr = *req;
	hdr.have_body = 0;
	hdr.ntopics = 0;
	hdr.acks = -2;
	int need = 0;
	for (unsigned i = 0; i < rs->n && !need; i++)
		need = rule_needs_body(&rs->rules[i]) && rule_header_matches(&rs->rules[i], &hdr);
	assert_int_equal(rule_set_needs_body_req(rs, &hdr), need);
	if (!need && req->have_body) {
		struct rule_topic_verdict tv2[8];
		struct rule_verdict v2 = {.topics = tv2};
		rule_eval(rs, &hdr, &v2);
		assert_int_equal(v2.error, v.error);
		assert_int_equal(v.split, 0);
		assert_int_equal(v2.nquotas, v.nquotas);
		assert_int_equal(v2.naudits, v.naudits);
	}
}

static void test_index_matches_scan(void **state)
{
	(void)state;
	srandom(9);
	unsigned sizes[] = {1, 3, 10, 40, 200};
	for (unsigned s = 0; s < sizeof(sizes) / sizeof(*sizes); s++) {
		for (int set = 0; set < 20; set++) {
			struct rule_set *rs = random_set(sizes[s]);
			assert_non_null(rs);
			for (int r = 0; r < 300; r++) {
				struct rule_topic topics[4];
				unsigned nt = rnd(4);
				const char *used[4];
				unsigned k = 0;
				for (unsigned i = 0; i < nt; i++) {
					const char *n = names[rnd(sizeof(names) / sizeof(*names))];
					int dup = 0;
					for (unsigned j = 0; j < k; j++)
						dup |= !strcmp(used[j], n);
					if (dup)
						continue;
					used[k] = n;
					topics[k++] = (struct rule_topic){.name = sv(n),
					                                  .records = 1,
					                                  .bytes = 10,
					                                  .max_record_bytes = -1,
					                                  .num_partitions = -1,
					                                  .replication_factor = -1};
				}
				struct rule_req req = {
				    .api_key = req_apis[rnd(4)],
				    .api_version = (int16_t)rnd(13),
				    .client_id =
				        sv(clients[rnd(sizeof(clients) / sizeof(*clients))]),
				    .src_family = 4,
				    .src_addr = {rnd(2) ? 127 : 10, 0, 0, 1},
				    .broker_id = 1,
				    .have_body = rnd(5) != 0,
				    .acks = (int16_t)(rnd(3) - 1),
				    .topics = topics,
				    .ntopics = k};
				check_request(rs, &req);
			}
			rule_set_unref(&rs);
		}
	}
}

/* Prefixes longer than the index keeps, and many distinct prefix
 * lengths: still every match found. */
static void test_long_prefixes(void **state)
{
	(void)state;
	char *y = malloc(1 << 20);
	size_t len = (size_t)snprintf(y, 1 << 20, "access:\n");
	char name[400];
	for (unsigned i = 1; i <= 300; i++) {
		memset(name, 'a', i);
		name[i] = '\0';
		len += (size_t)snprintf(y + len, (1 << 20) - len,
		                        "  - match: {topic: '%s*'}\n    deny: true\n", name);
	}
	char err[512];
	struct rule_set *rs = rule_set_load_mem(y, len, "long.yaml", err, sizeof(err));
	assert_non_null(rs);
	for (unsigned n = 1; n <= 350; n += 7) {
		memset(name, 'a', n);
		memcpy(name + n, "zz", 3);
		struct rule_topic t = {.name = sv(name), .max_record_bytes = -1};
		struct rule_req req = {.api_key = KD_API_PRODUCE,
		                       .have_body = 1,
		                       .acks = 1,
		                       .topics = &t,
		                       .ntopics = 1};
		struct rule_topic_verdict tv[1];
		struct rule_verdict v = {.topics = tv};
		rule_eval(rs, &req, &v);
		/* Name length n + 2 (fnmatch: up to 1023 bytes): the first rule,
		 * "a*", decides every one. */
		assert_ptr_equal(tv[0].rule, scan_first(rs, RULE_ACCESS, &req, 0));
		assert_ptr_equal(tv[0].rule, &rs->rules[0]);
	}
	rule_set_unref(&rs);
	/* The first rule is the longest prefix: shorter names match the rule
	 * that fits them, found through a prefix the index keeps whole. */
	len = (size_t)snprintf(y, 1 << 20, "access:\n");
	for (unsigned i = 300; i >= 1; i -= 1) {
		memset(name, 'a', i);
		name[i] = '\0';
		len += (size_t)snprintf(y + len, (1 << 20) - len,
		                        "  - match: {topic: '%s*'}\n    deny: true\n", name);
	}
	rs = rule_set_load_mem(y, len, "long2.yaml", err, sizeof(err));
	assert_non_null(rs);
	for (unsigned n = 1; n <= 320; n += 3) {
		memset(name, 'a', n);
		name[n] = '\0';
		struct rule_topic t = {.name = sv(name), .max_record_bytes = -1};
		struct rule_req req = {.api_key = KD_API_PRODUCE,
		                       .have_body = 1,
		                       .acks = 1,
		                       .topics = &t,
		                       .ntopics = 1};
		struct rule_topic_verdict tv[1];
		struct rule_verdict v = {.topics = tv};
		rule_eval(rs, &req, &v);
		assert_ptr_equal(tv[0].rule, scan_first(rs, RULE_ACCESS, &req, 0));
	}
	rule_set_unref(&rs);
	free(y);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_index_matches_scan),
	    cmocka_unit_test(test_long_prefixes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
