/* px-jwt.c: JWKS keys and JWT verification (px-jwt.h).
 *
 *   token = base64url(header) "." base64url(payload) "." base64url(sig)
 *   signed input: the ASCII of base64url(header) "." base64url(payload)
 *   RS*: RSASSA-PKCS1-v1_5 (RFC 7518 3.3); ES*: ECDSA with the signature
 *   as R || S, each the curve's size (RFC 7518 3.4), turned into DER for
 *   OpenSSL. */
#include "px-jwt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "kd-saslmsg.h"
#include "px-json.h"

#define JWKS_MAX_KEYS 64
#define JWKS_MAX_BYTES (1u << 20)

enum { JK_RSA = 1, JK_EC256, JK_EC384 };

struct jwk {
	int type;
	char kid[128];
	char alg[16]; /* "" when the key names none */
	EVP_PKEY *pkey;
};

struct px_jwks {
	struct jwk keys[JWKS_MAX_KEYS];
	unsigned n;
};

/* A base64url member decoded into out. -1 when missing or bad. */
static long b64_member(const struct px_json *js, int32_t obj, const char *name, uint8_t *out,
                       size_t cap)
{
	const struct px_json_node *v = px_json_get(js, obj, name);
	if (!v || v->type != PX_JSON_STR)
		return -1;
	return kd_b64_decode((const uint8_t *)v->str, v->len, out, cap, 1);
}

static const char *str_member(const struct px_json *js, int32_t obj, const char *name)
{
	const struct px_json_node *v = px_json_get(js, obj, name);
	return v && v->type == PX_JSON_STR ? v->str : NULL;
}

static EVP_PKEY *rsa_key(const struct px_json *js, int32_t obj, char *why, size_t whylen)
{
	uint8_t n[1024], e[16];
	long nl = b64_member(js, obj, "n", n, sizeof(n));
	long el = b64_member(js, obj, "e", e, sizeof(e));
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	BIGNUM *bn = NULL, *be = NULL;

	if (nl < 128 || el <= 0) {
		snprintf(why, whylen,
		         "RSA key without a usable \"n\" (2048 bits or more) and \"e\"");
		return NULL;
	}
	bn = BN_bin2bn(n, (int)nl, NULL);
	be = BN_bin2bn(e, (int)el, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (!bn || !be || !bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) ||
	    !(params = OSSL_PARAM_BLD_to_param(bld)) ||
	    !(ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) ||
	    EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
		snprintf(why, whylen, "RSA key not accepted by OpenSSL");
		pkey = NULL;
	}
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	BN_free(bn);
	BN_free(be);
	return pkey;
}

static EVP_PKEY *ec_key(const struct px_json *js, int32_t obj, int type, char *why, size_t whylen)
{
	size_t cl = type == JK_EC256 ? 32 : 48;
	uint8_t x[64], y[64], pub[1 + 2 * 48];
	long xl = b64_member(js, obj, "x", x, sizeof(x));
	long yl = b64_member(js, obj, "y", y, sizeof(y));
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	OSSL_PARAM params[3];

	if (xl != (long)cl || yl != (long)cl) {
		snprintf(why, whylen, "EC key without \"x\" and \"y\" of the curve's size");
		return NULL;
	}
	pub[0] = 0x04; /* uncompressed point */
	memcpy(pub + 1, x, cl);
	memcpy(pub + 1 + cl, y, cl);
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_PKEY_PARAM_GROUP_NAME, type == JK_EC256 ? "prime256v1" : "secp384r1", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * cl);
	params[2] = OSSL_PARAM_construct_end();
	if (!(ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) ||
	    EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
		snprintf(why, whylen, "EC key not accepted by OpenSSL (not a point on the curve?)");
		pkey = NULL;
	}
	EVP_PKEY_CTX_free(ctx);
	return pkey;
}

struct px_jwks *px_jwks_load_mem(const char *text, size_t len, const char *name, char *err,
                                 size_t errlen)
{
	struct px_json js;
	struct px_jwks *k = NULL;
	const struct px_json_node *keys;
	unsigned idx = 0;

	if (px_json_parse(&js, text, len, 4096)) {
		snprintf(err, errlen, "%s: not JSON: %s", name, js.err);
		return NULL;
	}
	keys = px_json_get(&js, js.root, "keys");
	if (!keys || keys->type != PX_JSON_ARR) {
		snprintf(err, errlen, "%s: no \"keys\" array (a JWKS file, RFC 7517 5)", name);
		goto out;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		snprintf(err, errlen, "%s: out of memory", name);
		goto out;
	}
	for (const struct px_json_node *key = px_json_kid(&js, keys); key;
	     key = px_json_next(&js, key), idx++) {
		int32_t o = px_json_idx(&js, key);
		const char *kty = str_member(&js, o, "kty"), *use = str_member(&js, o, "use");
		const char *kid = str_member(&js, o, "kid"), *alg = str_member(&js, o, "alg");
		const char *crv = str_member(&js, o, "crv");
		char why[160];
		int type = 0;
		if (key->type != PX_JSON_OBJ || !kty)
			continue;
		if (use && strcmp(use, "sig"))
			continue; /* an encryption key */
		if (!strcmp(kty, "RSA"))
			type = JK_RSA;
		else if (!strcmp(kty, "EC") && crv && !strcmp(crv, "P-256"))
			type = JK_EC256;
		else if (!strcmp(kty, "EC") && crv && !strcmp(crv, "P-384"))
			type = JK_EC384;
		else
			continue; /* "oct" (HMAC) keys and other curves: not for kwire */
		if (k->n == JWKS_MAX_KEYS) {
			snprintf(err, errlen, "%s: more than %d keys", name, JWKS_MAX_KEYS);
			goto fail;
		}
		struct jwk *jk = &k->keys[k->n];
		jk->type = type;
		snprintf(jk->kid, sizeof(jk->kid), "%s", kid ? kid : "");
		snprintf(jk->alg, sizeof(jk->alg), "%s", alg ? alg : "");
		jk->pkey = type == JK_RSA ? rsa_key(&js, o, why, sizeof(why))
		                          : ec_key(&js, o, type, why, sizeof(why));
		if (!jk->pkey) {
			snprintf(err, errlen, "%s: key %u%s%s%s: %s", name, idx,
			         kid ? " (kid \"" : "", kid ? jk->kid : "", kid ? "\")" : "", why);
			goto fail;
		}
		k->n++;
	}
	if (!k->n) {
		snprintf(err, errlen, "%s: no RSA or EC (P-256, P-384) signing key", name);
		goto fail;
	}
	goto out;
fail:
	px_jwks_free(&k);
out:
	px_json_free(&js);
	return k;
}

struct px_jwks *px_jwks_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t len;
	struct px_jwks *k = NULL;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(JWKS_MAX_BYTES + 1);
	if (!buf) {
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	len = fread(buf, 1, JWKS_MAX_BYTES + 1, f);
	if (ferror(f))
		snprintf(err, errlen, "%s: read error", path);
	else if (len > JWKS_MAX_BYTES)
		snprintf(err, errlen, "%s: larger than %u bytes", path, JWKS_MAX_BYTES);
	else
		k = px_jwks_load_mem(buf, len, path, err, errlen);
	free(buf);
	fclose(f);
	return k;
}

void px_jwks_free(struct px_jwks **kp)
{
	struct px_jwks *k = *kp;
	if (!k)
		return;
	for (unsigned i = 0; i < k->n; i++)
		EVP_PKEY_free(k->keys[i].pkey);
	free(k);
	*kp = NULL;
}

unsigned px_jwks_count(const struct px_jwks *k)
{
	return k ? k->n : 0;
}

/* ---- verification ---- */

struct alg {
	const char *name;
	int type; /* the key type it needs */
	const char *md;
};

static const struct alg algs[] = {
    {"RS256", JK_RSA, "SHA256"},   {"RS384", JK_RSA, "SHA384"},   {"RS512", JK_RSA, "SHA512"},
    {"ES256", JK_EC256, "SHA256"}, {"ES384", JK_EC384, "SHA384"},
};

static int verify_sig(const struct jwk *jk, const struct alg *a, const uint8_t *msg, size_t mlen,
                      const uint8_t *sig, size_t slen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t der[160];
	const uint8_t *s = sig;
	size_t sl = slen;
	int ok = 0;

	if (!ctx)
		return 0;
	if (a->type != JK_RSA) {
		/* R || S -> DER ECDSA-Sig-Value */
		size_t cl = a->type == JK_EC256 ? 32 : 48;
		ECDSA_SIG *es = NULL;
		BIGNUM *r = NULL, *ss = NULL;
		unsigned char *dp = der;
		int dl;
		if (slen != 2 * cl)
			goto out;
		r = BN_bin2bn(sig, (int)cl, NULL);
		ss = BN_bin2bn(sig + cl, (int)cl, NULL);
		es = ECDSA_SIG_new();
		if (!r || !ss || !es || !ECDSA_SIG_set0(es, r, ss)) {
			BN_free(r);
			BN_free(ss);
			ECDSA_SIG_free(es);
			goto out;
		}
		dl = i2d_ECDSA_SIG(es, NULL);
		if (dl <= 0 || (size_t)dl > sizeof(der) || i2d_ECDSA_SIG(es, &dp) != dl) {
			ECDSA_SIG_free(es);
			goto out;
		}
		ECDSA_SIG_free(es);
		s = der;
		sl = (size_t)dl;
	}
	ok = EVP_DigestVerifyInit_ex(ctx, NULL, a->md, NULL, NULL, jk->pkey, NULL) == 1 &&
	     EVP_DigestVerify(ctx, s, sl, msg, mlen) == 1;
out:
	EVP_MD_CTX_free(ctx);
	return ok;
}

static int claim_time(const struct px_json *js, int32_t o, const char *name, int64_t *out)
{
	const struct px_json_node *v = px_json_get(js, o, name);
	if (!v)
		return 0;
	if (v->type != PX_JSON_NUM || v->num < 0 || v->num > 1e13)
		return -1;
	*out = (int64_t)v->num;
	return 1;
}

int px_jwt_verify(const struct px_jwks *k, const uint8_t *tok, size_t len, int64_t now_s,
                  const char *iss, const char *aud, struct px_jwt_claims *out, char *why,
                  size_t whylen)
{
	const uint8_t *d1, *d2, *end = tok + len;
	uint8_t *hbuf = NULL, *pbuf = NULL, sig[1024];
	long hl, pl, sl;
	struct px_json hj = {0}, pj = {0};
	const struct alg *a = NULL;
	const char *alg, *kid;
	int rc = -1, checked = 0;

	memset(out, 0, sizeof(*out));
	hj.root = pj.root = -1;
	if (len > PX_JWT_MAX) {
		snprintf(why, whylen, "token longer than %d bytes", PX_JWT_MAX);
		return -1;
	}
	d1 = memchr(tok, '.', len);
	d2 = d1 ? memchr(d1 + 1, '.', (size_t)(end - d1 - 1)) : NULL;
	if (!d2 || memchr(d2 + 1, '.', (size_t)(end - d2 - 1))) {
		snprintf(why, whylen, "not a signed JWT (three base64url parts)");
		return -1;
	}
	hbuf = malloc(len);
	pbuf = malloc(len);
	if (!hbuf || !pbuf) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	hl = kd_b64_decode(tok, (size_t)(d1 - tok), hbuf, len, 1);
	pl = kd_b64_decode(d1 + 1, (size_t)(d2 - d1 - 1), pbuf, len, 1);
	sl = kd_b64_decode(d2 + 1, (size_t)(end - d2 - 1), sig, sizeof(sig), 1);
	if (hl <= 0 || pl <= 0 || sl < 0) {
		snprintf(why, whylen, "a part of the JWT is not base64url");
		goto out;
	}
	if (px_json_parse(&hj, (const char *)hbuf, (size_t)hl, 64) ||
	    px_json_parse(&pj, (const char *)pbuf, (size_t)pl, 512)) {
		snprintf(why, whylen, "the JWT header or payload is not JSON");
		goto out;
	}
	alg = str_member(&hj, hj.root, "alg");
	kid = str_member(&hj, hj.root, "kid");
	for (size_t i = 0; alg && i < sizeof(algs) / sizeof(algs[0]); i++)
		if (!strcmp(algs[i].name, alg))
			a = &algs[i];
	if (!a) {
		snprintf(why, whylen,
		         "JWT algorithm %s%s%s not accepted (RS256/384/512, "
		         "ES256/384)",
		         alg ? "\"" : "", alg ? (strlen(alg) > 16 ? "?" : alg) : "missing",
		         alg ? "\"" : "");
		goto out;
	}
	for (unsigned i = 0; i < k->n; i++) {
		const struct jwk *jk = &k->keys[i];
		if (jk->type != a->type || (jk->alg[0] && strcmp(jk->alg, a->name)))
			continue;
		if (kid && strcmp(kid, jk->kid))
			continue;
		checked++;
		if (verify_sig(jk, a, tok, (size_t)(d2 - tok), sig, (size_t)sl)) {
			rc = 0;
			break;
		}
	}
	if (rc) {
		snprintf(why, whylen, "%s",
		         checked ? "bad JWT signature"
		                 : "no key in the JWKS for "
		                   "the JWT (kid, alg)");
		goto out;
	}
	rc = -1;
	/* claims */
	const char *sub = str_member(&pj, pj.root, "sub");
	int64_t exp = 0, nbf = 0;
	int he = claim_time(&pj, pj.root, "exp", &exp), hn = claim_time(&pj, pj.root, "nbf", &nbf);
	if (!sub || !sub[0] || strlen(sub) >= sizeof(out->sub)) {
		snprintf(why, whylen, "JWT without a usable \"sub\" claim");
		goto out;
	}
	if (he != 1) {
		snprintf(why, whylen, "JWT without a numeric \"exp\" claim");
		goto out;
	}
	if (exp + PX_JWT_SKEW_S <= now_s) {
		snprintf(why, whylen, "JWT expired %lld s ago", (long long)(now_s - exp));
		goto out;
	}
	if (hn < 0 || (hn == 1 && nbf - PX_JWT_SKEW_S > now_s)) {
		snprintf(why, whylen, "JWT not valid yet (\"nbf\")");
		goto out;
	}
	if (iss && iss[0]) {
		const char *ti = str_member(&pj, pj.root, "iss");
		if (!ti || strcmp(ti, iss)) {
			snprintf(why, whylen, "JWT issuer is not the configured one");
			goto out;
		}
	}
	if (aud && aud[0]) {
		const struct px_json_node *ta = px_json_get(&pj, pj.root, "aud");
		int found = 0;
		if (ta && ta->type == PX_JSON_STR)
			found = !strcmp(ta->str, aud);
		else if (ta && ta->type == PX_JSON_ARR)
			for (const struct px_json_node *e = px_json_kid(&pj, ta); e && !found;
			     e = px_json_next(&pj, e))
				found = e->type == PX_JSON_STR && !strcmp(e->str, aud);
		if (!found) {
			snprintf(why, whylen, "JWT audience does not include the configured one");
			goto out;
		}
	}
	snprintf(out->sub, sizeof(out->sub), "%s", sub);
	out->exp = exp;
	rc = 0;
out:
	px_json_free(&hj);
	px_json_free(&pj);
	free(hbuf);
	free(pbuf);
	return rc;
}
