/* test_sasl.c: kd-sasl.h: mechanism names, the user names of client
 * tokens (and never a secret), GSSAPI token classes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kd-arena.h"
#include "kd-render.h"
#include "kd-sasl.h"
#include "kd-summary.h"
#include "kd-tree.h"

static void user_is(int mech, const char *tok, size_t len, const char *want)
{
	char out[KD_SASL_USER_MAX + 1];
	size_t n = kd_sasl_principal(mech, (const uint8_t *)tok, len, out, sizeof(out));

	assert_int_equal(n, strlen(want));
	assert_string_equal(out, want);
	/* Nothing after the user name leaks: no byte of "secret" anywhere. */
	assert_null(strstr(out, "secret"));
}

static void test_mech_names(void **state)
{
	(void)state;
	assert_int_equal(kd_sasl_mech_parse((const uint8_t *)"PLAIN", 5), KD_SASL_MECH_PLAIN);
	assert_int_equal(kd_sasl_mech_parse((const uint8_t *)"SCRAM-SHA-512", 13),
	                 KD_SASL_MECH_SCRAM_SHA_512);
	assert_int_equal(kd_sasl_mech_parse((const uint8_t *)"plain", 5), KD_SASL_MECH_OTHER);
	assert_int_equal(kd_sasl_mech_parse((const uint8_t *)"PLAINX", 6), KD_SASL_MECH_OTHER);
	assert_string_equal(kd_sasl_mech_name(KD_SASL_MECH_OAUTHBEARER), "OAUTHBEARER");
	assert_null(kd_sasl_mech_name(KD_SASL_MECH_NONE));
}

static void test_plain(void **state)
{
	static const char t1[] = "\0alice\0secret-pw";
	static const char t2[] = "admin\0alice\0secret-pw";
	static const char t3[] = "alice\0alice\0secret-pw";
	static const char bad[] = "\0alice-secret";

	(void)state;
	user_is(KD_SASL_MECH_PLAIN, t1, sizeof(t1) - 1, "alice");
	user_is(KD_SASL_MECH_PLAIN, t2, sizeof(t2) - 1, "alice (authzid admin)");
	user_is(KD_SASL_MECH_PLAIN, t3, sizeof(t3) - 1, "alice");
	user_is(KD_SASL_MECH_NONE, t1, sizeof(t1) - 1, "alice");
	/* One NUL only: the rest may be the password; nothing is read. */
	user_is(KD_SASL_MECH_PLAIN, bad, sizeof(bad) - 1, "");
	assert_int_equal(kd_sasl_mech_sniff((const uint8_t *)t1, sizeof(t1) - 1),
	                 KD_SASL_MECH_PLAIN);
}

static void test_scram(void **state)
{
	static const char first[] = "n,,n=al=2Cice=3D,r=secretnonce";
	static const char authz[] = "n,a=ad=3Dmin,n=alice,r=secretnonce";
	static const char mext[] = "y,,m=ext,n=bob,r=secretnonce";
	static const char cb[] = "p=tls-unique,,n=carol,r=secretnonce";
	static const char final[] = "c=biws,r=secretnonce,p=secretproof";
	static const char badeq[] = "n,,n=a=41b,r=secretnonce";

	(void)state;
	user_is(KD_SASL_MECH_SCRAM_SHA_256, first, sizeof(first) - 1, "al,ice=");
	user_is(KD_SASL_MECH_SCRAM_SHA_512, authz, sizeof(authz) - 1, "alice (authzid ad=min)");
	user_is(KD_SASL_MECH_NONE, mext, sizeof(mext) - 1, "bob");
	user_is(KD_SASL_MECH_SCRAM_SHA_256, cb, sizeof(cb) - 1, "carol");
	user_is(KD_SASL_MECH_SCRAM_SHA_256, final, sizeof(final) - 1, "");
	user_is(KD_SASL_MECH_SCRAM_SHA_256, badeq, sizeof(badeq) - 1, "");
	assert_int_equal(kd_sasl_mech_sniff((const uint8_t *)first, sizeof(first) - 1),
	                 KD_SASL_MECH_SCRAM);
	assert_string_equal(kd_sasl_mech_name(KD_SASL_MECH_SCRAM), "SCRAM");
}

static void test_oauthbearer(void **state)
{
	/* {"alg":"none"} . {"iss":"x","sub":"ali\"ce","n":{"sub":"no"}} */
	static const char jwt[] = "n,,\1auth=Bearer "
	                          "eyJhbGciOiJub25lIn0."
	                          "eyJpc3MiOiJ4IiwibiI6eyJzdWIiOiJubyJ9LCJzdWIiOiJhbGlcImNlIn0."
	                          "c2VjcmV0\1\1";
	static const char authz[] = "n,a=user@example.com,\1host=x\1auth=Bearer secret\1\1";
	static const char opaque[] = "n,,\1auth=Bearer secret-opaque-token\1\1";

	(void)state;
	user_is(KD_SASL_MECH_OAUTHBEARER, jwt, sizeof(jwt) - 1, "ali\"ce");
	user_is(KD_SASL_MECH_NONE, authz, sizeof(authz) - 1, "user@example.com");
	user_is(KD_SASL_MECH_OAUTHBEARER, opaque, sizeof(opaque) - 1, "");
	assert_int_equal(kd_sasl_mech_sniff((const uint8_t *)jwt, sizeof(jwt) - 1),
	                 KD_SASL_MECH_OAUTHBEARER);
}

static void test_gssapi(void **state)
{
	uint8_t t[40] = {0x60, 13,   0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
	                 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01, 0x00};
	static const uint8_t wrap[] = {0x05, 0x04, 0x01, 0xff};

	(void)state;
	assert_int_equal(kd_gss_classify(t, 15, 15), KD_GSS_AP_REQ);
	t[13] = 2;
	assert_int_equal(kd_gss_classify(t, 15, 15), KD_GSS_AP_REP);
	t[13] = 3;
	assert_int_equal(kd_gss_classify(t, 15, 15), KD_GSS_ERROR);
	t[14] = 1;
	t[13] = 2;
	assert_int_equal(kd_gss_classify(t, 15, 15), KD_GSS_WRAP);
	/* the DER length must cover the token */
	assert_int_equal(kd_gss_classify(t, 15, 16), KD_GSS_UNKNOWN);
	assert_int_equal(kd_gss_classify(wrap, 4, 4), KD_GSS_WRAP);
	assert_int_equal(kd_gss_classify(wrap, 0, 0), KD_GSS_EMPTY);
	assert_int_equal(kd_gss_classify((const uint8_t *)"ab", 2, 2), KD_GSS_UNKNOWN);
	/* A GSSAPI token names no user kwire can read. */
	user_is(KD_SASL_MECH_GSSAPI, (const char *)t, 15, "");
	assert_int_equal(kd_sasl_mech_sniff(t, 15), KD_SASL_MECH_GSSAPI);
}

/* Renders a tree both ways into one NUL-terminated string. */
static char *render_both(struct kd_tree *t)
{
	struct kd_wbuf w = {0};

	kd_render_json(t, &w, 0);
	kd_w_raw(&w, "\n", 1);
	kd_render_text(t, &w, 0);
	kd_w_raw(&w, "", 1);
	assert_int_equal(w.err, KD_OK);
	return (char *)w.p;
}

/* The secret and the base64 of the token must appear nowhere. */
static void no_secret(const char *out)
{
	assert_null(strstr(out, "secret-pw"));
	assert_null(strstr(out, "AGFsaWNl")); /* base64 of "\0alice" */
	assert_null(strstr(out, "c2VjcmV0")); /* base64 of "secret" */
	assert_non_null(strstr(out, "[redacted]"));
}

static void test_render_redacts(void **state)
{
	static const uint8_t auth_v0[] = {0, 0,   0,   16,  0,   'a', 'l', 'i', 'c', 'e',
	                                  0, 's', 'e', 'c', 'r', 'e', 't', '-', 'p', 'w'};
	/* CreateDelegationToken response v0: ErrorCode, PrincipalType,
	 * PrincipalName, three timestamps, TokenId, Hmac, ThrottleTimeMs. */
	static const uint8_t token_v0[] = {
	    0,   0, 0, 4, 'U', 's', 'e', 'r', 0,   1,   'a', 0,   0,   0,   0, 0, 0, 0, 1,
	    0,   0, 0, 0, 0,   0,   0,   2,   0,   0,   0,   0,   0,   0,   0, 3, 0, 2, 'i',
	    'd', 0, 0, 0, 9,   's', 'e', 'c', 'r', 'e', 't', '-', 'p', 'w', 0, 0, 0, 0};
	struct kd_arena arena = {0};
	struct kd_tree t;
	struct kd_summary sum;
	struct kd_wbuf w = {0};
	char *out;

	(void)state;
	assert_int_equal(kd_tree_decode(&t, &arena, 36, 0, 1, auth_v0, sizeof(auth_v0)), KD_OK);
	out = render_both(&t);
	no_secret(out);
	assert_non_null(strstr(out, "\"AuthBytes_user\":\"alice\""));
	assert_non_null(strstr(out, "\"AuthBytes_mechanism\":\"PLAIN\""));
	assert_non_null(
	    strstr(out, "AuthBytes: [redacted] <16 bytes> mechanism=PLAIN user=\"alice\""));
	free(out);
	kd_arena_reset(&arena);

	/* A body that does not decode is not dumped raw either. */
	assert_true(kd_tree_decode(&t, &arena, 36, 0, 1, auth_v0, sizeof(auth_v0) - 3) < 0);
	out = render_both(&t);
	no_secret(out);
	free(out);
	kd_arena_reset(&arena);

	assert_int_equal(kd_tree_decode(&t, &arena, 38, 0, 0, token_v0, sizeof(token_v0)), KD_OK);
	out = render_both(&t);
	no_secret(out);
	assert_non_null(strstr(out, "\"Hmac\":\"[redacted]\""));
	free(out);
	kd_arena_free(&arena);

	/* The summary (kwire decode's summary format, the access log). */
	kd_sum_init(&sum);
	kd_sum_request(&sum, 36, 0, 7, (struct kd_view){(const uint8_t *)"c", 1, 0}, auth_v0,
	               sizeof(auth_v0));
	kd_sum_text(&sum, &w);
	kd_w_raw(&w, "\n", 1);
	kd_sum_json(&sum, &w);
	kd_w_raw(&w, "", 1);
	no_secret((const char *)w.p);
	assert_non_null(strstr((const char *)w.p, "mechanism=PLAIN user=alice auth=[redacted]"));
	assert_non_null(strstr((const char *)w.p, "\"sasl_user\":\"alice\""));
	kd_wbuf_free(&w);

	/* A SASL v0 token (no Kafka header). */
	kd_sum_init(&sum);
	kd_sum_sasl_token(&sum, KD_SASL_MECH_PLAIN, auth_v0 + 4, sizeof(auth_v0) - 4);
	kd_sum_text(&sum, &w);
	kd_w_raw(&w, "", 1);
	no_secret((const char *)w.p);
	assert_non_null(strstr((const char *)w.p, "SASL v0 token mechanism=PLAIN user=alice"));
	kd_wbuf_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mech_names), cmocka_unit_test(test_plain),
	    cmocka_unit_test(test_scram),      cmocka_unit_test(test_oauthbearer),
	    cmocka_unit_test(test_gssapi),     cmocka_unit_test(test_render_redacts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
