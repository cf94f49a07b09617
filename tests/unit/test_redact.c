/* test_redact.c: kd_redact_frame (kd-redact.h): the secrets of a frame are
 * zeroed in place and nothing else changes. SaslAuthenticate requests and
 * responses, non-flexible (v1) and flexible (v2); a SASL v0 token; a frame
 * of an API without secrets; and an undecodable SaslAuthenticate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kd-arena.h"
#include "kd-redact.h"

static struct kd_arena arena;

/* A frame: size prefix, then len bytes. */
static size_t frame(uint8_t *out, const uint8_t *body, size_t len)
{
	out[0] = (uint8_t)(len >> 24);
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
	memcpy(out + 4, body, len);
	return len + 4;
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static void test_sasl_authenticate_v1(void **state)
{
	(void)state;
	/* key 36 v1 corr 5 client "c" | AuthBytes (INT32 length) "\0alice\0pw" */
	static const uint8_t req[] = {0, 36, 0, 1, 0,   0,   0,   5,   0,   1, 'c', 0,
	                              0, 0,  9, 0, 'a', 'l', 'i', 'c', 'e', 0, 'p', 'w'};
	uint8_t f[64], orig[64];
	size_t n = frame(f, req, sizeof(req));
	memcpy(orig, f, n);
	assert_int_equal(kd_redact_frame(f, n, 36, 1, 1, &arena), 1);
	assert_memory_equal(f, orig, 4 + 15); /* size, header, length kept */
	assert_true(all_zero(f + 19, 9));
	/* The response: corr | ErrorCode 0 | ErrorMessage null | AuthBytes "srvr" |
	 * SessionLifetimeMs 0. */
	static const uint8_t resp[] = {0,   0,   0,   5,   0, 0, 0xff, 0xff, 0, 0, 0, 4,
	                               's', 'r', 'v', 'r', 0, 0, 0,    0,    0, 0, 0, 7};
	n = frame(f, resp, sizeof(resp));
	memcpy(orig, f, n);
	assert_int_equal(kd_redact_frame(f, n, 36, 1, 0, &arena), 1);
	assert_memory_equal(f, orig, 4 + 12);
	assert_true(all_zero(f + 16, 4));
	assert_memory_equal(f + 20, orig + 20, 8); /* SessionLifetimeMs kept */
}

static void test_sasl_authenticate_v2(void **state)
{
	(void)state;
	/* flexible: header v2 (tags 0), COMPACT_BYTES (length + 1), body tags 0 */
	static const uint8_t req[] = {0,   36, 0, 2,   0,   0,   0,   6,   0, 1,
	                              'c', 0,  6, 'x', 'y', 'z', 'z', 'y', 0};
	uint8_t f[64], orig[64];
	size_t n = frame(f, req, sizeof(req));
	memcpy(orig, f, n);
	assert_int_equal(kd_redact_frame(f, n, 36, 2, 1, &arena), 1);
	assert_memory_equal(f, orig, 4 + 13);
	assert_true(all_zero(f + 17, 5));
	assert_int_equal(f[22], 0);
}

static void test_token_and_others(void **state)
{
	(void)state;
	static const uint8_t tok[] = {0, 'a', 'l', 'i', 'c', 'e', 0, 's', 'e', 'c'};
	uint8_t f[64], orig[64];
	size_t n = frame(f, tok, sizeof(tok));
	assert_int_equal(kd_redact_frame(f, n, -1, 0, 1, &arena), 1);
	assert_int_equal(f[3], sizeof(tok));
	assert_true(all_zero(f + 4, sizeof(tok)));
	/* Metadata v1 request (no secrets): untouched. */
	static const uint8_t md[] = {0, 3, 0, 1, 0, 0, 0, 7, 0, 1, 'c', 0xff, 0xff, 0xff, 0xff};
	n = frame(f, md, sizeof(md));
	memcpy(orig, f, n);
	assert_int_equal(kd_redact_frame(f, n, 3, 1, 1, &arena), 0);
	assert_memory_equal(f, orig, n);
	/* A SaslAuthenticate whose body does not decode: all after the header. */
	static const uint8_t bad[] = {0, 36, 0, 1, 0, 0, 0, 8, 0, 1, 'c', 0, 0, 0, 99, 'p', 'w'};
	n = frame(f, bad, sizeof(bad));
	memcpy(orig, f, n);
	assert_int_equal(kd_redact_frame(f, n, 36, 1, 1, &arena), 1);
	assert_memory_equal(f, orig, 4 + 11);
	assert_true(all_zero(f + 15, 6));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sasl_authenticate_v1),
	    cmocka_unit_test(test_sasl_authenticate_v2),
	    cmocka_unit_test(test_token_and_others),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	kd_arena_free(&arena);
	return rc;
}
