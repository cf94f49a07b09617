/* test_rule_mirror.c: the `mirror:` and `tap:` sections (rule-mirror.h):
 * their keys, defaults and errors, Produce implied, the topic template,
 * that the forwarding path reads no body facts for a mirror, a dump that
 * never shows a password property, and a sink's `tls:` and `sasl:`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kd-api-keys-gen.h"
#include "rule-mirror.h"
#include "rule.h"

static struct rule_set *load(const char *yaml, char *err, size_t errlen)
{
	return rule_set_load_mem(yaml, strlen(yaml), "r.yaml", err, errlen);
}

/* `kwire rules check`'s text of rs (free it). */
static char *dump(const struct rule_set *rs)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	rule_set_dump(rs, f);
	fclose(f);
	return buf;
}

static void expect_error(const char *yaml, const char *where, const char *what)
{
	char err[512] = "";
	struct rule_set *rs = load(yaml, err, sizeof(err));
	if (rs || !strstr(err, where) || !strstr(err, what))
		fail_msg("for:\n%s\nwant '%s' ... '%s', got '%s'", yaml, where, what, err);
	rule_set_unref(&rs);
}

static void test_mirror_keys(void **state)
{
	(void)state;
	char err[512] = "";
	struct rule_set *rs = load("mirror:\n"
	                           "  - name: dr\n"
	                           "    match: {topic: \"orders.*\"}\n"
	                           "    topic: \"dr.{topic}.copy\"\n"
	                           "    partition: key\n"
	                           "    to:\n"
	                           "      bootstrap: 127.0.0.1:9092\n"
	                           "      queue_bytes: 1MiB\n"
	                           "      properties: {linger.ms: 5, sasl.password: hunter2}\n"
	                           "  - name: plain\n"
	                           "    to: 127.0.0.1:9093\n"
	                           "tap:\n"
	                           "  - match: {client_id: \"billing-*\"}\n"
	                           "    to: billing.pcapng\n",
	                           err, sizeof(err));
	assert_non_null(rs);
	assert_int_equal(rs->nsec[RULE_MIRROR], 2);
	assert_int_equal(rs->nsec[RULE_TAP], 1);
	const struct rule_mirror *m = rs->rules[0].mirror;
	assert_string_equal(m->bootstrap, "127.0.0.1:9092");
	assert_string_equal(m->topic, "dr.{topic}.copy");
	assert_int_equal(m->by_key, 1);
	assert_int_equal(m->queue_bytes, 1 << 20);
	assert_int_equal(m->nprops, 2);
	assert_string_equal(m->props[0], "linger.ms");
	assert_string_equal(m->props[1], "5");
	assert_null(m->props[4]);
	/* Defaults, and Produce implied. */
	m = rs->rules[1].mirror;
	assert_string_equal(m->topic, "{topic}");
	assert_int_equal(m->by_key, 0);
	assert_int_equal(m->queue_bytes, RULE_MIRROR_QUEUE_DEFAULT);
	assert_int_equal(rs->rules[1].match.napis, 1);
	assert_int_equal(rs->rules[1].match.apis[0].key, KD_API_PRODUCE);
	assert_string_equal(rs->rules[2].tap->file, "billing.pcapng");
	assert_int_equal(rs->rules[2].tap->files, 10);
	assert_string_equal(rs->rules[2].name, "tap-3");
	/* The forwarding path decodes nothing for a mirror (its topics are
	 * matched on the mirror thread), nor for a header-only tap. */
	assert_false(rule_set_needs_body(rs, KD_API_PRODUCE));
	assert_false(rule_set_needs_body(rs, KD_API_END_TXN));
	assert_false(rule_set_needs_body(rs, KD_API_FETCH));
	/* The dump shows the rules, never the password. */
	char *buf = dump(rs);
	assert_non_null(strstr(buf, "mirror to 127.0.0.1:9092, topic dr.{topic}.copy"));
	assert_non_null(strstr(buf, "tap to billing.pcapng"));
	assert_null(strstr(buf, "hunter2"));
	free(buf);
	rule_set_unref(&rs);
}

static void test_mirror_errors(void **state)
{
	(void)state;
	expect_error("mirror:\n  - name: m\n    topic: x\n",
	             "r.yaml:2:5:", "needs 'to: {bootstrap: HOST:PORT}'");
	expect_error("mirror:\n  - match: {api: Fetch}\n    to: h:1\n",
	             "r.yaml:2:5:", "'api' can only be Produce");
	expect_error("mirror:\n  - to: h:1\n    partition: random\n",
	             "r.yaml:3:16:", "not same or key");
	expect_error(
	    "mirror:\n  - to: {bootstrap: h:1, tls: {ca: x}, properties: {ssl.ca.location: "
	    "y}}\n",
	    "r.yaml:2:9:", "'ssl.ca.location' and 'tls'/'sasl' say the same thing");
	expect_error("mirror:\n  - to: {bootstrap: h:1, sasl: {mechanism: GSSAPI}}\n",
	             "r.yaml:2:44:", "not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512");
	expect_error("mirror:\n  - to: {bootstrap: h:1, sasl: {mechanism: PLAIN, username: u}}\n",
	             "r.yaml:2:9:", "'sasl' needs 'mechanism', 'username' and 'password'");
	expect_error("mirror:\n  - to: {bootstrap: h:1, sasl: {password: a, password_file: b}}\n",
	             "r.yaml:2:46:", "'password' and 'password_file': give one");
	expect_error("mirror:\n  - to: {bootstrap: h:1, sasl: {password_file: /nonexistent/pw}}\n",
	             "r.yaml:2:48:", "cannot open /nonexistent/pw");
	expect_error("mirror:\n  - to: {bootstrap: h:1, tls: {cert: c}}\n",
	             "r.yaml:2:9:", "'cert' and 'key' go together");
	expect_error("mirror:\n  - to: {bootstrap: h:1, tls: {crl: c}}\n",
	             "r.yaml:2:32:", "unknown 'tls' key 'crl' (ca, cert, key, verify)");
	expect_error("audit:\n  - log: summary\n    to: {file: a.jsonl, tls: true}\n",
	             "r.yaml:2:5:", "'tls', 'sasl', 'properties' and 'queue_bytes' go with 'kafka");
	expect_error("mirror:\n  - to: {bootstrap: h:1, properties: {bootstrap.servers: x}}\n",
	             "r.yaml:2:39:", "give the cluster as 'bootstrap'");
	expect_error("mirror:\n  - to: {bootstrap: h:1, queue_bytes: 10}\n",
	             "r.yaml:2:39:", "not a size");
	expect_error("mirror:\n  - to: h:1\n    topic: \"\"\n",
	             "r.yaml:3:12:", "does not make a topic name");
	expect_error("tap:\n  - match: {api: Produce}\n", "r.yaml:2:5:", "needs 'to: FILE.pcapng'");
	expect_error("tap:\n  - to: x.pcapng\n    files: 0\n", "r.yaml:3:12:", "not a number");
	expect_error("tap:\n  - to: x.pcapng\n    topic: x\n",
	             "r.yaml:3:5:", "unknown key 'topic' (a rule under 'tap' takes");
}

/* The property pairs {k, v, ...} of props (n pairs) as "k=v,k=v". */
static void props_text(char *const *props, unsigned n, char *out, size_t cap)
{
	size_t o = 0;
	out[0] = 0;
	for (unsigned i = 0; i < n && o < cap; i++)
		o += (size_t)snprintf(out + o, cap - o, "%s%s=%s", i ? "," : "", props[2 * i],
		                      props[2 * i + 1]);
}

/* `tls:` and `sasl:` in a mirror's and an audit sink's `to:` become the
 * librdkafka properties that say the same; the password can come from a
 * file (its final line feed left out). */
static void test_sink_security(void **state)
{
	(void)state;
	char pwfile[] = "/tmp/kwire-test-pw-XXXXXX";
	int fd = mkstemp(pwfile);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "s3cret-pw\n", 10), 10);
	close(fd);
	char yaml[1024], err[512] = "", text[1024];
	snprintf(yaml, sizeof(yaml),
	         "mirror:\n"
	         "  - to:\n"
	         "      bootstrap: h:1\n"
	         "      properties: {linger.ms: 5}\n"
	         "      tls: {ca: ca.pem, cert: c.pem, key: k.pem, verify: false}\n"
	         "      sasl: {mechanism: SCRAM-SHA-512, username: dr, password_file: %s}\n"
	         "audit:\n"
	         "  - log: summary\n"
	         "    to: {kafka: audit, sasl: {mechanism: PLAIN, username: au, password: p2}}\n"
	         "  - log: summary\n"
	         "    to: {kafka: audit2, tls: true}\n",
	         pwfile);
	struct rule_set *rs = load(yaml, err, sizeof(err));
	unlink(pwfile);
	if (!rs)
		fail_msg("%s", err);
	const struct rule_mirror *m = rs->rules[0].mirror;
	props_text(m->props, m->nprops, text, sizeof(text));
	assert_string_equal(text, "linger.ms=5,security.protocol=SASL_SSL,ssl.ca.location=ca.pem,"
	                          "ssl.certificate.location=c.pem,ssl.key.location=k.pem,"
	                          "enable.ssl.certificate.verification=false,"
	                          "ssl.endpoint.identification.algorithm=none,"
	                          "sasl.mechanisms=SCRAM-SHA-512,sasl.username=dr,"
	                          "sasl.password=s3cret-pw");
	assert_null(m->props[2 * m->nprops]);
	const struct rule_sink *a = &rs->rules[1].sink;
	props_text(a->props, a->nprops / 2, text, sizeof(text));
	assert_string_equal(text, "security.protocol=SASL_PLAINTEXT,sasl.mechanisms=PLAIN,"
	                          "sasl.username=au,sasl.password=p2");
	a = &rs->rules[2].sink;
	props_text(a->props, a->nprops / 2, text, sizeof(text));
	assert_string_equal(text, "security.protocol=SSL");
	/* The dump redacts the password. */
	char *buf = dump(rs);
	assert_null(strstr(buf, "s3cret-pw"));
	assert_null(strstr(buf, "=p2"));
	free(buf);
	rule_set_unref(&rs);
}

static void test_mirror_topic(void **state)
{
	(void)state;
	char out[256];
	assert_int_equal(rule_mirror_topic("{topic}", "orders", 6, out, sizeof(out)), 6);
	assert_string_equal(out, "orders");
	assert_int_equal(rule_mirror_topic("dr.{topic}.{topic}", "a", 1, out, sizeof(out)), 6);
	assert_string_equal(out, "dr.a.a");
	assert_int_equal(rule_mirror_topic("fixed", "a", 1, out, sizeof(out)), 5);
	assert_string_equal(out, "fixed");
	char longt[249];
	memset(longt, 'x', sizeof(longt));
	assert_int_equal(rule_mirror_topic("{topic}", longt, 249, out, sizeof(out)), 249);
	assert_int_equal(rule_mirror_topic("p.{topic}", longt, 249, out, sizeof(out)), -1);
	assert_int_equal(rule_mirror_topic("{topic}", "", 0, out, sizeof(out)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mirror_keys),
	    cmocka_unit_test(test_mirror_errors),
	    cmocka_unit_test(test_mirror_topic),
	    cmocka_unit_test(test_sink_security),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
