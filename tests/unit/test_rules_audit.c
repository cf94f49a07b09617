/* test_rules_audit.c: the audit section's keys (docs/rules.md, "audit"):
 * what each compiles to, its defaults, and the errors for what does not
 * go together. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rule.h"

static struct rule_set *load(const char *yaml, char *err, size_t errlen)
{
	return rule_set_load_mem(yaml, strlen(yaml), "t.yaml", err, errlen);
}

static void test_keys(void **state)
{
	(void)state;
	char err[512];
	struct rule_set *rs =
	    load("audit:\n"
	         "  - name: pii\n"
	         "    match: {topic: \"pii.*\"}\n"
	         "    log: records\n"
	         "    max_value_bytes: 64\n"
	         "    max_bytes: 2MiB\n"
	         "    redact: {headers: [authorization, cookie], key: true, "
	         "value: false}\n"
	         "    to: {kafka: audit, bootstrap: \"h:9092\", queue_bytes: 1MiB,\n"
	         "         properties: {acks: all, sasl.password: hunter2}}\n"
	         "  - name: defaults\n"
	         "    log: summary\n",
	         err, sizeof(err));
	assert_non_null(rs);
	const struct rule *r = &rs->rules[0];
	assert_int_equal(r->log, RULE_LOG_RECORDS);
	assert_int_equal(r->max_value_bytes, 64);
	assert_int_equal(r->max_bytes, 2 * 1024 * 1024);
	assert_int_equal(r->nredact, 2);
	assert_string_equal(r->redact_headers[1], "cookie");
	assert_int_equal(r->redact_key, 1);
	assert_int_equal(r->redact_value, 0);
	assert_string_equal(r->sink.kafka, "audit");
	assert_string_equal(r->sink.bootstrap, "h:9092");
	assert_int_equal(r->sink.queue_bytes, 1024 * 1024);
	assert_int_equal(r->sink.nprops, 4);
	assert_string_equal(r->sink.props[0], "acks");
	assert_string_equal(r->sink.props[1], "all");
	assert_string_equal(r->sink.props[2], "sasl.password");
	/* Defaults; no `to` means the proxy's audit_log. */
	r = &rs->rules[1];
	assert_int_equal(r->log, RULE_LOG_SUMMARY);
	assert_int_equal(r->max_value_bytes, 1024);
	assert_int_equal(r->max_bytes, 1024 * 1024);
	assert_null(r->sink.file);
	assert_null(r->sink.kafka);
	/* A summary needs the request's body (the summary is read off it). */
	assert_int_equal(rule_set_needs_body(rs, 3 /* Metadata */), 1);

	/* check's dump never shows a password property's value. */
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	rule_set_dump(rs, f);
	fclose(f);
	assert_null(strstr(buf, "hunter2"));
	assert_non_null(strstr(buf, "sasl.password=[redacted]"));
	assert_non_null(strstr(buf, "acks=all"));
	free(buf);
	rule_set_unref(&rs);
}

static void expect_error(const char *yaml, const char *what)
{
	char err[512];
	struct rule_set *rs = load(yaml, err, sizeof(err));
	if (rs)
		fail_msg("loaded: %s", yaml);
	if (!strstr(err, what))
		fail_msg("error '%s' lacks '%s'", err, what);
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("audit:\n  - log: records\n    to: {file: a, kafka: t}\n", "not both");
	expect_error("audit:\n  - log: records\n    to: {bootstrap: \"h:1\"}\n",
	             "go with 'kafka: TOPIC'");
	expect_error("audit:\n  - log: records\n    to: {file: a, properties: {acks: 1}}\n",
	             "go with 'kafka: TOPIC'");
	expect_error("audit:\n  - log: records\n    redact: {values: true}\n",
	             "t.yaml:3:14: unknown redact key 'values' (headers, key, value)");
	expect_error("audit:\n  - log: records\n    redact: {key: maybe}\n", "true or false");
	expect_error("audit:\n  - log: records\n    max_bytes: 10\n", "max_bytes");
	expect_error("audit:\n  - log: records\n    to: {kafka: t, queue_bytes: 10}\n",
	             "queue_bytes");
	expect_error("audit:\n  - log: records\n    to: {kafka: t, properties: [a]}\n",
	             "'properties' must be a mapping");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keys),
	    cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
