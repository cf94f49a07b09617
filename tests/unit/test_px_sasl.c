/* test_px_sasl.c: the SASL server's parts that need no socket: the
 * SCRAM arithmetic against RFC 7677's SCRAM-SHA-256 example, the
 * credentials file, JWT verification against a JWKS (tokens signed by the
 * keys of tests/fuzz/corpus/fuzz_px_sasl, made with python3-jwt), the JSON
 * reader and kd_sasl_user. Whole exchanges with real clients are in
 * tests/integration/test_proxy_sasl.py and test_proxy_oauth.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kd-sasl.h"
#include "kd-saslmsg.h"
#include "px-json.h"
#include "px-jwt.h"
#include "px-scram.h"

/* RFC 7677 3: user "user", password "pencil". */
static const char rfc_first_bare[] = "n=user,r=rOprNGfwEbeRWgbNEkqO";
static const char rfc_server_first[] = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                                       "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
static const char rfc_final_wo_proof[] = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
static const char rfc_proof[] = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
static const char rfc_server_sig[] = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

static void test_scram_rfc7677(void **state)
{
	(void)state;
	uint8_t salt[32], salted[32], ck[32], sk[32], sig[32], srvk[32], ssig[32];
	long sl = kd_b64_decode((const uint8_t *)"W22ZaJ0SNY7soEsUEjb6gQ==", 24, salt, sizeof(salt), 0);
	assert_int_equal(sl, 16);
	assert_int_equal(px_scram_salted(PX_SCRAM_256, "pencil", 6, salt, 16, 4096, salted), 0);
	char am[512];
	int al = snprintf(am, sizeof(am), "%s,%s,%s", rfc_first_bare, rfc_server_first,
	                  rfc_final_wo_proof);
	assert_int_equal(px_scram_hmac(PX_SCRAM_256, salted, 32, (const uint8_t *)"Client Key", 10, ck),
	                 0);
	assert_int_equal(px_scram_h(PX_SCRAM_256, ck, 32, sk), 0);
	assert_int_equal(px_scram_hmac(PX_SCRAM_256, sk, 32, (const uint8_t *)am, (size_t)al, sig), 0);
	for (int i = 0; i < 32; i++)
		ck[i] ^= sig[i];
	char b64[64];
	kd_b64_encode(ck, 32, b64, sizeof(b64));
	assert_string_equal(b64, rfc_proof);
	assert_int_equal(px_scram_hmac(PX_SCRAM_256, salted, 32, (const uint8_t *)"Server Key", 10,
	                               srvk),
	                 0);
	assert_int_equal(px_scram_hmac(PX_SCRAM_256, srvk, 32, (const uint8_t *)am, (size_t)al, ssig),
	                 0);
	kd_b64_encode(ssig, 32, b64, sizeof(b64));
	assert_string_equal(b64, rfc_server_sig);

	/* The server's stored keys from the same password and salt check
	 * "pencil" and nothing else (PLAIN against a SCRAM entry). */
	struct px_scram_cred cred;
	assert_int_equal(px_scram_make(PX_SCRAM_256, "pencil", 6, salt, 16, 4096, &cred), 0);
	assert_true(px_scram_check_password(PX_SCRAM_256, &cred, "pencil", 6));
	assert_false(px_scram_check_password(PX_SCRAM_256, &cred, "pencil ", 7));
	assert_false(px_scram_check_password(PX_SCRAM_256, &cred, "", 0));

	/* The messages parse as a server reads them. */
	char cf[128];
	snprintf(cf, sizeof(cf), "n,,%s", rfc_first_bare);
	struct kd_scram_first f;
	assert_int_equal(kd_scram_first_parse((const uint8_t *)cf, strlen(cf), &f), KD_OK);
	assert_int_equal(f.user.len, 4);
	assert_memory_equal(f.gs2.p, "n,,", 3);
	assert_int_equal(f.bare.len, strlen(rfc_first_bare));
	char fin[256];
	snprintf(fin, sizeof(fin), "%s,p=%s", rfc_final_wo_proof, rfc_proof);
	struct kd_scram_final fi;
	assert_int_equal(kd_scram_final_parse((const uint8_t *)fin, strlen(fin), &fi), KD_OK);
	assert_int_equal(fi.without_proof.len, strlen(rfc_final_wo_proof));
	assert_int_equal(fi.proof.len, strlen(rfc_proof));
	/* m= (a mandatory extension) must fail (RFC 5802 5.1) */
	assert_int_not_equal(kd_scram_first_parse((const uint8_t *)"n,,m=x,n=u,r=a", 14, &f), KD_OK);
}

static void test_saslname_and_user(void **state)
{
	(void)state;
	char out[64];
	assert_int_equal(kd_saslname_decode((const uint8_t *)"b=2Co=3Db", 9, out, sizeof(out)), 5);
	assert_string_equal(out, "b,o=b");
	assert_int_equal(kd_saslname_decode((const uint8_t *)"a=2", 3, out, sizeof(out)), -1);
	assert_int_equal(kd_saslname_decode((const uint8_t *)"a=41", 4, out, sizeof(out)), -1);
	char user[KD_SASL_USER_MAX + 1];
	/* the principal's name: the authcid alone, never the authzid */
	static const char plain[] = "admin\0alice\0secret";
	assert_int_equal(kd_sasl_user(KD_SASL_MECH_PLAIN, (const uint8_t *)plain, sizeof(plain) - 1,
	                              user, sizeof(user)),
	                 5);
	assert_string_equal(user, "alice");
	static const char scram[] = "n,a=x,n=b=2Cob,r=abc";
	kd_sasl_user(KD_SASL_MECH_SCRAM_SHA_256, (const uint8_t *)scram, sizeof(scram) - 1, user,
	             sizeof(user));
	assert_string_equal(user, "b,ob");
}

static char *slurp(const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/fuzz_px_sasl/%s", getenv("KWIRE_SRC"),
	         name);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *buf = malloc(65536);
	assert_non_null(buf);
	*len = fread(buf, 1, 65536, f);
	fclose(f);
	/* byte 0 is the fuzz target's selector */
	memmove(buf, buf + 1, *len - 1);
	(*len)--;
	return buf;
}

static void test_jwt(void **state)
{
	(void)state;
	char err[256];
	size_t len;
	char *text = slurp("jwks", &len);
	struct px_jwks *k = px_jwks_load_mem(text, len, "jwks", err, sizeof(err));
	free(text);
	assert_non_null(k);
	assert_int_equal(px_jwks_count(k), 2);
	struct px_jwt_claims cl;
	const int64_t now = 1700000000; /* the seeds' clock */
	char *tok = slurp("jwt-rs256", &len);
	assert_int_equal(px_jwt_verify(k, (uint8_t *)tok, len, now, NULL, NULL, &cl, err, sizeof(err)),
	                 0);
	assert_string_equal(cl.sub, "alice");
	assert_int_equal(cl.exp, now + 3600);
	/* issuer required but absent */
	assert_int_equal(px_jwt_verify(k, (uint8_t *)tok, len, now, "idp", NULL, &cl, err,
	                               sizeof(err)),
	                 -1);
	/* expired an hour later (past the 30 s of skew) */
	assert_int_equal(px_jwt_verify(k, (uint8_t *)tok, len, now + 3600 + 31, NULL, NULL, &cl, err,
	                               sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "expired"));
	/* one flipped bit in the signature */
	tok[len - 5] ^= 1;
	assert_int_equal(px_jwt_verify(k, (uint8_t *)tok, len, now, NULL, NULL, &cl, err, sizeof(err)),
	                 -1);
	free(tok);
	tok = slurp("jwt-es256", &len);
	assert_int_equal(px_jwt_verify(k, (uint8_t *)tok, len, now, NULL, "kafka", &cl, err,
	                               sizeof(err)),
	                 0);
	assert_string_equal(cl.sub, "bob");
	assert_int_equal(px_jwt_verify(k, (uint8_t *)tok, len, now, NULL, "other", &cl, err,
	                               sizeof(err)),
	                 -1);
	free(tok);
	tok = slurp("jwt-none", &len);
	assert_int_equal(px_jwt_verify(k, (uint8_t *)tok, len, now, NULL, NULL, &cl, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "not accepted"));
	free(tok);
	px_jwks_free(&k);
	/* a JWKS with only an HMAC key has nothing kwire can use */
	static const char oct[] = "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}";
	assert_null(px_jwks_load_mem(oct, sizeof(oct) - 1, "oct.json", err, sizeof(err)));
	assert_non_null(strstr(err, "no RSA or EC"));
}

static void test_creds(void **state)
{
	(void)state;
	struct px_creds c;
	char err[256];
	struct px_scram_cred a;
	uint8_t salt[16] = {1, 2, 3};
	assert_int_equal(px_scram_make(PX_SCRAM_256, "pw", 2, salt, 16, 4096, &a), 0);
	char line[512], s64[64], k1[64], k2[64];
	kd_b64_encode(a.salt, 16, s64, sizeof(s64));
	kd_b64_encode(a.stored_key, 32, k1, sizeof(k1));
	kd_b64_encode(a.server_key, 32, k2, sizeof(k2));
	snprintf(line, sizeof(line), "# c\n\nb%%20o SCRAM-SHA-256 4096 %s %s %s\r\n", s64, k1, k2);
	assert_int_equal(px_creds_load_mem(line, strlen(line), "u", &c, err, sizeof(err)), 0);
	assert_int_equal(c.n, 1);
	const struct px_cred_user *u = px_creds_find(&c, "b o", 3);
	assert_non_null(u);
	assert_true(u->have[PX_SCRAM_256] && !u->have[PX_SCRAM_512]);
	assert_true(px_scram_check_password(PX_SCRAM_256, &u->c[PX_SCRAM_256], "pw", 2));
	assert_null(px_creds_find(&c, "b", 1));
	px_creds_free(&c);
	static const char bad[] = "alice SCRAM-SHA-256 4095 AAAA AAAA AAAA\n";
	assert_int_equal(px_creds_load_mem(bad, sizeof(bad) - 1, "u", &c, err, sizeof(err)), -1);
	assert_string_equal(err, "u:1: iterations must be 4096 to 100000000");
	static const char mech[] = "\nalice SCRAM-SHA-1 4096 AAAA AAAA AAAA\n";
	assert_int_equal(px_creds_load_mem(mech, sizeof(mech) - 1, "u", &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "u:2: mechanism"));
}

static void test_json(void **state)
{
	(void)state;
	struct px_json js;
	static const char t[] = " {\"a\" : [1, -2.5e1, \"x\\u00e9\\ud83d\\ude00\"], \"b\":{}} ";
	assert_int_equal(px_json_parse(&js, t, sizeof(t) - 1, 64), 0);
	const struct px_json_node *a = px_json_get(&js, js.root, "a");
	assert_non_null(a);
	const struct px_json_node *e = px_json_kid(&js, a);
	assert_true(e->type == PX_JSON_NUM && e->num == 1);
	e = px_json_next(&js, e);
	assert_true(e->num == -25);
	e = px_json_next(&js, e);
	assert_string_equal(e->str, "x\xc3\xa9\xf0\x9f\x98\x80");
	px_json_free(&js);
	static const char *const badv[] = {"{\"a\":1,}", "[1 2]", "\"\\u0000\"", "\"\\ud800\"", "{",
	                                   "01x", "{\"a\":1} x"};
	for (size_t i = 0; i < sizeof(badv) / sizeof(badv[0]); i++)
		assert_int_equal(px_json_parse(&js, badv[i], strlen(badv[i]), 64), -1);
	/* nesting is bounded */
	char deep[200];
	memset(deep, '[', sizeof(deep));
	assert_int_equal(px_json_parse(&js, deep, sizeof(deep), 1000), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_scram_rfc7677), cmocka_unit_test(test_saslname_and_user),
	    cmocka_unit_test(test_jwt),           cmocka_unit_test(test_creds),
	    cmocka_unit_test(test_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
