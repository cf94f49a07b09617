/* test_px_tls.c: the pure parts of the proxy's TLS (px-tls.h, kd-tls.h):
 * the ClientHello reader on real ClientHellos made by OpenSSL (every
 * prefix is "need more"; a Kafka request and other bytes are refused at
 * once), the SNI router, and Kafka's principal mapping rules with the
 * examples of Kafka's documentation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/ssl.h>

#include "kd-t.h"
#include "kd-tls.h"
#include "px-tls.h"

/* A real ClientHello: an OpenSSL client's first flight into a memory BIO.
 * max_version 0: any. Returns its length. */
static size_t client_hello(const char *sni, int max_version, uint8_t *buf, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(ctx);
	if (max_version)
		SSL_CTX_set_max_proto_version(ctx, max_version);
	SSL *ssl = SSL_new(ctx);
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	SSL_set_bio(ssl, rb, wb);
	if (sni)
		SSL_set_tlsext_host_name(ssl, sni);
	assert_int_equal(SSL_connect(ssl), -1); /* wants the server's answer */
	int n = BIO_read(wb, buf, (int)cap);
	assert_true(n > 0);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return (size_t)n;
}

static void test_hello(void **state)
{
	(void)state;
	static const struct {
		const char *sni;
		int max;
	} cases[] = {{"b2.kafka.test", 0}, {"bootstrap.example.com", TLS1_2_VERSION}, {NULL, 0}};
	uint8_t buf[8192];
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		size_t n = client_hello(cases[c].sni, cases[c].max, buf, sizeof(buf));
		struct kd_tls_hello h;
		size_t need = 0;
		assert_int_equal(kd_tls_hello_parse(buf, n, &h, &need), KD_OK);
		assert_true(kd_tls_looks_like(buf, n));
		assert_false(h.fragmented);
		if (cases[c].sni) {
			assert_true(h.has_sni);
			assert_int_equal(h.sni.len, strlen(cases[c].sni));
			assert_memory_equal(h.sni.p, cases[c].sni, h.sni.len);
		} else {
			assert_false(h.has_sni);
		}
		/* Every prefix is a valid start that needs more. */
		for (size_t k = 0; k < n; k++) {
			struct kd_tls_hello p;
			assert_int_equal(kd_tls_hello_parse(buf, k, &p, &need), KD_NEED_MORE);
			assert_true(need > k);
		}
		/* A server name with a NUL in it is not one. */
		if (cases[c].sni) {
			size_t off = (size_t)(h.sni.p - buf);
			buf[off + 1] = 0;
			assert_int_equal(kd_tls_hello_parse(buf, n, &h, &need), KD_EMALFORMED);
		}
	}
}

static void test_not_hello(void **state)
{
	(void)state;
	struct kd_tls_hello h;
	/* kcat's ApiVersions v3 request: refused from its first byte. */
	static const uint8_t kafka[] = {0, 0, 0, 0x1f, 0, 0x12, 0, 3, 0, 0, 0, 1, 0, 4, 'k', 'c'};
	for (size_t k = 1; k <= sizeof(kafka); k++)
		assert_int_equal(kd_tls_hello_parse(kafka, k, &h, NULL), KD_EMALFORMED);
	assert_false(kd_tls_looks_like(kafka, sizeof(kafka)));
	static const uint8_t http[] = "GET / HTTP/1.1\r\n";
	assert_int_equal(kd_tls_hello_parse(http, sizeof(http) - 1, &h, NULL), KD_EMALFORMED);
	/* TLS, but application data, a server hello, an oversized record. */
	static const uint8_t appdata[] = {23, 3, 3, 0, 10};
	assert_int_equal(kd_tls_hello_parse(appdata, 5, &h, NULL), KD_EMALFORMED);
	static const uint8_t server_hello[] = {22, 3, 3, 0, 40, 2, 0, 0, 36};
	assert_int_equal(kd_tls_hello_parse(server_hello, 9, &h, NULL), KD_EMALFORMED);
	static const uint8_t huge[] = {22, 3, 1, 0xff, 0xff};
	assert_int_equal(kd_tls_hello_parse(huge, 5, &h, NULL), KD_EMALFORMED);
	/* The 4 bytes a Kafka peer reads as a frame size: ~369 MB. */
	static const uint8_t rec[] = {22, 3, 1, 2, 0};
	assert_true(kd_tls_looks_like(rec, 3));
	assert_true(((uint32_t)rec[0] << 24 | rec[1] << 16 | rec[2] << 8 | rec[3]) > 369000000u);
}

static void test_sni_node(void **state)
{
	(void)state;
	const char *pat = "b{id}.kafka.example.com";
#define NODE(s) px_tls_sni_node(pat, (const uint8_t *)(s), strlen(s))
	assert_int_equal(NODE("b0.kafka.example.com"), 0);
	assert_int_equal(NODE("b12.kafka.example.com"), 12);
	assert_int_equal(NODE("B7.KAFKA.Example.com"), 7);
	assert_int_equal(NODE("b01.kafka.example.com"), -1);
	assert_int_equal(NODE("b.kafka.example.com"), -1);
	assert_int_equal(NODE("bx.kafka.example.com"), -1);
	assert_int_equal(NODE("b1.kafka.example.org"), -1);
	assert_int_equal(NODE("bootstrap.kafka.example.com"), -1);
	assert_int_equal(NODE("b99999999999.kafka.example.com"), -1);
	assert_int_equal(NODE("b2147483647.kafka.example.com"), 2147483647);
	assert_int_equal(NODE("b2147483648.kafka.example.com"), -1);
#undef NODE
	assert_int_equal(px_tls_sni_node("{id}.k", (const uint8_t *)"3.k", 3), 3);
}

static void map(const char *rules, const char *name, const char *want)
{
	char out[256];
	int n = px_tls_map_name(rules, name, out, sizeof(out));
	if (!want) {
		assert_int_equal(n, -1);
		return;
	}
	assert_int_equal(n, (int)strlen(want));
	assert_string_equal(out, want);
}

static void test_mapping(void **state)
{
	(void)state;
	char err[256];
	/* Kafka's documentation (ssl.principal.mapping.rules). */
	const char *kafka = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,"
	                    "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,"
	                    "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,"
	                    "DEFAULT";
	assert_int_equal(px_tls_rules_check(kafka, err, sizeof(err)), 0);
	map(kafka, "CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown",
	    "serviceuser");
	map(kafka, "CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown",
	    "adminuser@admin");
	map(kafka, "OU=x,CN=Mixed.Case", "mixed.case");
	map(kafka, "O=NoCommonName", "O=NoCommonName");
	/* Without DEFAULT, a name no rule matches has no principal. */
	map("RULE:^CN=(.*),O=Example$/$1/U", "CN=alice,O=Example", "ALICE");
	map("RULE:^CN=(.*),O=Example$/$1/U", "CN=alice,O=Other", NULL);
	/* Newline-separated (the YAML list), and an escaped slash. */
	map("RULE:^spiffe:\\/\\/example.org\\/(.*)$/svc\\/$1/\nDEFAULT",
	    "spiffe://example.org/orders", "svc/orders");
	map(NULL, "CN=alice", "CN=alice");
	/* Bad rules. */
	assert_int_equal(px_tls_rules_check("RULE:^CN=(.*$/x/", err, sizeof(err)), -1);
	assert_int_equal(px_tls_rules_check("RULE:abc", err, sizeof(err)), -1);
	assert_int_equal(px_tls_rules_check("DEFAULTX", err, sizeof(err)), -1);
	assert_int_equal(px_tls_rules_check("", err, sizeof(err)), -1);
	assert_int_equal(px_tls_rules_check("RULE:a/b/X", err, sizeof(err)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hello),
	    cmocka_unit_test(test_not_hello),
	    cmocka_unit_test(test_sni_node),
	    cmocka_unit_test(test_mapping),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
