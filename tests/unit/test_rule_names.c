/* test_rule_names.c: the names part of `rewrite:` rules (rule-names.h):
 * the file's keys and their errors, which client a rule maps, and the
 * mapping of one name either way, prefix and aliases, with what is outside
 * a namespace hidden and every usable client name mapping back to itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kd-schema-t.h"
#include "rule-names.h"
#include "rule.h"

static const char tenants[] = "rewrite:\n"
                              "  - name: acme\n"
                              "    match: {client_id: \"acme-*\"}\n"
                              "    prefix: acme.\n"
                              "  - name: globex\n"
                              "    match: {client_id: [\"globex-*\", \"gx\"]}\n"
                              "    topics: {prefix: globex., alias: {orders: shared.orders, "
                              "old: globex.new}}\n"
                              "    groups: {alias: {g1: globex-group-1}}\n";

static struct rule_set *load(const char *yaml, char *err, size_t errlen)
{
	return rule_set_load_mem(yaml, strlen(yaml), "r.yaml", err, errlen);
}

static struct kd_view sv(const char *s)
{
	return (struct kd_view){(const uint8_t *)s, (uint32_t)strlen(s), 0};
}

static const struct rule *rule_for(const struct rule_set *rs, const char *client_id)
{
	struct rule_req req = {0};
	req.client_id = sv(client_id);
	req.broker_id = -1;
	return rule_names_for(rs, &req);
}

/* Maps s; "-" for hidden, "=" for the same name, else the result. */
static const char *map(const struct rule *rule, int kind, int to_cluster, const char *s,
                       char out[512])
{
	char buf[512];
	struct kd_view v;
	int rc = rule_names_map(rule->names, kind, to_cluster, (const uint8_t *)s, strlen(s), buf,
	                        sizeof(buf), &v);
	if (rc == RULE_N_HIDDEN)
		return "-";
	if (rc == RULE_N_SAME)
		return "=";
	snprintf(out, 512, "%.*s", (int)v.len, (const char *)v.p);
	return out;
}

static void test_match_and_map(void **state)
{
	(void)state;
	char err[512] = "", o[512];
	struct rule_set *rs = load(tenants, err, sizeof(err));
	assert_non_null(rs);
	const struct rule *acme = rule_for(rs, "acme-producer");
	const struct rule *gx = rule_for(rs, "gx");
	assert_non_null(acme);
	assert_non_null(gx);
	assert_string_equal(acme->name, "acme");
	assert_string_equal(gx->name, "globex");
	assert_null(rule_for(rs, "initech"));
	assert_null(rule_for(rs, "acme")); /* the glob wants "acme-" */

	/* The prefix shorthand maps all three kinds. */
	assert_string_equal(map(acme, RULE_N_TOPIC, 1, "orders", o), "acme.orders");
	assert_string_equal(map(acme, RULE_N_GROUP, 1, "g", o), "acme.g");
	assert_string_equal(map(acme, RULE_N_TXN, 1, "tx-1", o), "acme.tx-1");
	assert_string_equal(map(acme, RULE_N_TOPIC, 0, "acme.orders", o), "orders");
	/* Outside the namespace: another tenant's, a bare name, the prefix alone. */
	assert_string_equal(map(acme, RULE_N_TOPIC, 0, "globex.orders", o), "-");
	assert_string_equal(map(acme, RULE_N_TOPIC, 0, "orders", o), "-");
	assert_string_equal(map(acme, RULE_N_TOPIC, 0, "acme.", o), "-");
	assert_string_equal(map(acme, RULE_N_GROUP, 0, "acmeX", o), "-");

	/* Aliases go first; a prefix does the rest. */
	assert_string_equal(map(gx, RULE_N_TOPIC, 1, "orders", o), "shared.orders");
	assert_string_equal(map(gx, RULE_N_TOPIC, 0, "shared.orders", o), "orders");
	assert_string_equal(map(gx, RULE_N_TOPIC, 1, "pay", o), "globex.pay");
	assert_string_equal(map(gx, RULE_N_TOPIC, 0, "globex.pay", o), "pay");
	/* globex.orders would read back as 'orders', which is the alias. */
	assert_string_equal(map(gx, RULE_N_TOPIC, 0, "globex.orders", o), "-");
	/* 'new' would go to globex.new, which is the cluster name of 'old'. */
	assert_string_equal(map(gx, RULE_N_TOPIC, 1, "new", o), "-");
	assert_string_equal(map(gx, RULE_N_TOPIC, 0, "globex.new", o), "old");
	/* Aliases without a prefix: other names are the same on both sides,
	 * and an alias's cluster name is reachable only through the alias. */
	assert_string_equal(map(gx, RULE_N_GROUP, 1, "g1", o), "globex-group-1");
	assert_string_equal(map(gx, RULE_N_GROUP, 0, "globex-group-1", o), "g1");
	assert_string_equal(map(gx, RULE_N_GROUP, 1, "other", o), "=");
	assert_string_equal(map(gx, RULE_N_GROUP, 0, "other", o), "=");
	assert_string_equal(map(gx, RULE_N_GROUP, 1, "globex-group-1", o), "-");
	assert_string_equal(map(gx, RULE_N_GROUP, 0, "g1", o), "-");
	/* Transactional ids are not mapped by this rule. */
	assert_false(rule_names_maps(gx->names, RULE_N_TXN));
	assert_string_equal(map(gx, RULE_N_TXN, 1, "t", o), "=");
	assert_int_equal(rule_names_kind(KD_ENT_TOPIC_NAME), RULE_N_TOPIC);
	assert_int_equal(rule_names_kind(KD_ENT_BROKER_ID), -1);
	rule_set_unref(&rs);
}

/* Every client name that maps to the cluster maps back to itself. */
static void test_round_trip(void **state)
{
	(void)state;
	char err[512] = "", o[512], back[512];
	struct rule_set *rs = load(tenants, err, sizeof(err));
	assert_non_null(rs);
	const char *names[] = {
	    "orders",         "old", "new",   "pay", "globex.orders", "shared.orders", "g1",
	    "globex-group-1", "x",   "acme.x"};
	const char *clients[] = {"acme-1", "gx"};
	for (unsigned c = 0; c < 2; c++) {
		const struct rule *rule = rule_for(rs, clients[c]);
		for (int k = 0; k < RULE_N_KINDS; k++)
			for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
				const char *to = map(rule, k, 1, names[i], o);
				if (!strcmp(to, "-"))
					continue;
				const char *cl = !strcmp(to, "=") ? names[i] : to;
				const char *b = map(rule, k, 0, cl, back);
				if (!strcmp(b, "="))
					b = cl;
				if (strcmp(b, names[i]))
					fail_msg("%s kind %d: %s -> %s -> %s", clients[c], k,
					         names[i], cl, b);
			}
	}
	rule_set_unref(&rs);
}

static void expect_error(const char *yaml, const char *where, const char *what)
{
	char err[512] = "";
	struct rule_set *rs = load(yaml, err, sizeof(err));
	if (rs || !strstr(err, where) || !strstr(err, what)) {
		print_error("yaml:\n%s\nerror: '%s'\nwanted '%s' and '%s'\n", yaml, err, where,
		            what);
		rule_set_unref(&rs);
		fail();
	}
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("rewrite:\n  - match: {client_id: a}\n", "r.yaml:2:5:", "needs names to map");
	expect_error("rewrite:\n  - match: {topic: a}\n    prefix: a.\n",
	             "r.yaml:2:5:", "takes only client_id, principal, source and broker");
	expect_error("rewrite:\n  - prefix: \"a b\"\n",
	             "r.yaml:2:13:", "a character Kafka does not allow");
	expect_error("rewrite:\n  - prefix: \"\"\n", "r.yaml:2:13:", "the prefix is empty");
	expect_error("rewrite:\n  - prefix: a.\n    topics: {prefix: b.}\n",
	             "r.yaml:3:22:", "a prefix is given twice");
	expect_error("rewrite:\n  - topics: {alias: {a: x, b: x}}\n",
	             "r.yaml:2:21:", "both map to 'x'");
	expect_error("rewrite:\n  - topics: {alias: [a]}\n",
	             "r.yaml:2:21:", "must be a mapping of client name: cluster name");
	expect_error("rewrite:\n  - topics: {pre: a}\n",
	             "r.yaml:2:14:", "unknown key 'pre' under 'topics' (prefix, alias)");
	expect_error("rewrite:\n  - groups: {alias: {a: \"\"}}\n",
	             "r.yaml:2:25:", "an alias target is empty");
	/* Groups may hold characters topics may not. */
	char err[512];
	struct rule_set *rs =
	    load("rewrite:\n  - groups: {prefix: \"team a/\"}\n", err, sizeof(err));
	assert_non_null(rs);
	rule_set_unref(&rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_match_and_map),
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
