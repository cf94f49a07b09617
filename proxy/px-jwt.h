/* px-jwt.h: JSON Web Tokens (RFC 7519) signed with JWS (RFC 7515) and
 * checked against the public keys of a JWKS file (RFC 7517), for
 * OAUTHBEARER termination (KIP-255, KIP-768). OpenSSL 3.
 *
 * Signatures: RS256, RS384, RS512 (RSA keys) and ES256, ES384 (EC keys
 * on P-256 and P-384). A token must carry "sub" and "exp"; "exp" and
 * "nbf" are checked with PX_JWT_SKEW_S of clock skew (Kafka's
 * sasl.oauthbearer.clock.skew.seconds default); "iss" and "aud" when the
 * configuration asks. "alg": "none" and HMAC algorithms are refused. */
#ifndef PX_JWT_H
#define PX_JWT_H

#include <stddef.h>
#include <stdint.h>

#define PX_JWT_SKEW_S 30
#define PX_JWT_MAX 16384 /* bytes of a token */

struct px_jwks;

/* Loads a JWKS file ({"keys": [...]}); keys of other types or uses are
 * skipped. NULL with err (no usable key is an error). */
struct px_jwks *px_jwks_load(const char *path, char *err, size_t errlen);
struct px_jwks *px_jwks_load_mem(const char *text, size_t len, const char *name, char *err,
                                 size_t errlen);
void px_jwks_free(struct px_jwks **k);
unsigned px_jwks_count(const struct px_jwks *k);

struct px_jwt_claims {
	char sub[256];
	int64_t exp; /* seconds since the epoch */
};

/* Verifies the compact JWS tok at now_s. iss/aud: required values, or
 * NULL/"" for any. 0 with the claims, or -1 with why (a reason, never
 * the token or a claim value other than the subject). */
int px_jwt_verify(const struct px_jwks *k, const uint8_t *tok, size_t len, int64_t now_s,
                  const char *iss, const char *aud, struct px_jwt_claims *out, char *why,
                  size_t whylen);

#endif
