/* kd-saslmsg.h: the SASL messages a proxy that authenticates itself reads
 * and writes: the bodies of SaslHandshake and SaslAuthenticate (KIP-43,
 * KIP-152, KIP-368), whole frames of kwire's own answers and requests, and
 * the parts of the client tokens a SASL server checks (RFC 4616 PLAIN,
 * RFC 5802 SCRAM client-first and client-final, RFC 7628 OAUTHBEARER).
 *
 * Readers take (p, len) and return KD_OK or a negative KD_E*; everything
 * they give back is a view into the input. Writers append whole frames
 * (INT32 size first) to a struct kd_wbuf. No I/O, no allocation besides
 * the writer's buffer, no crypto (proxy/px-scram.c, px-jwt.c). */
#ifndef KD_SASLMSG_H
#define KD_SASLMSG_H

#include "kd-cur.h"
#include "kd-t.h"

/* Kafka error codes of the SASL APIs (clients/.../protocol/Errors.java). */
#define KD_ERR_UNSUPPORTED_SASL_MECHANISM 33
#define KD_ERR_ILLEGAL_SASL_STATE 34
#define KD_ERR_SASL_AUTHENTICATION_FAILED 58

/* ---- message bodies (after the header) ---- */

/* SaslAuthenticate request v0-2: AuthBytes. */
int kd_saslauth_req_read(int16_t ver, const uint8_t *body, size_t len, struct kd_view *auth);

/* SaslAuthenticate response v0-2: ErrorCode, ErrorMessage (may be null),
 * AuthBytes, SessionLifetimeMs (0 before v1). */
struct kd_saslauth_resp {
	int16_t error;
	struct kd_view message;
	struct kd_view auth;
	int64_t lifetime_ms;
};
int kd_saslauth_resp_read(int16_t ver, const uint8_t *body, size_t len,
                          struct kd_saslauth_resp *out);

/* SaslHandshake response v0-1: ErrorCode (the mechanisms are not kept). */
int kd_saslhs_resp_read(const uint8_t *body, size_t len, int16_t *error);

/* ---- whole frames ---- */

/* SaslHandshake response (v0-1) to correlation id corr. mechs is a
 * NULL-terminated list. */
void kd_saslhs_resp_write(struct kd_wbuf *w, int32_t corr, int16_t error, const char *const *mechs);
/* SaslAuthenticate response (v0-2). message may be NULL (null). */
void kd_saslauth_resp_write(struct kd_wbuf *w, int16_t ver, int32_t corr, int16_t error,
                            const char *message, const uint8_t *auth, size_t alen,
                            int64_t lifetime_ms);
/* SaslHandshake request v1 and SaslAuthenticate request v1 (client id
 * "kwire"), as kwire sends them to a broker. */
void kd_saslhs_req_write(struct kd_wbuf *w, int32_t corr, const char *mech);
void kd_saslauth_req_write(struct kd_wbuf *w, int32_t corr, const uint8_t *auth, size_t alen);
/* A SASL v0 token frame (KIP-43): INT32 size, the token. */
void kd_sasl_token_write(struct kd_wbuf *w, const uint8_t *tok, size_t len);

/* ---- client tokens ---- */

/* PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd. authzid is empty
 * when absent. KD_EMALFORMED unless exactly two NULs and a non-empty
 * authcid and password. */
struct kd_plain {
	struct kd_view authzid, authcid, passwd;
};
int kd_plain_parse(const uint8_t *p, size_t len, struct kd_plain *out);

/* SCRAM client-first (RFC 5802 7). gs2 is the GS2 header (with its
 * trailing comma: "n,," or "n,a=bob,"), bare the rest (client-first-
 * message-bare, kept for the AuthMessage). user and authzid are still
 * saslname-encoded (=2C, =3D): kd_saslname_decode. cbind: 'n', 'y' or
 * 'p' (channel binding requested: kwire has none to offer). */
struct kd_scram_first {
	struct kd_view gs2, bare, user, authzid, nonce;
	uint8_t cbind;
	uint8_t tokenauth; /* the "tokenauth=true" extension (KIP-48 delegation tokens) */
};
int kd_scram_first_parse(const uint8_t *p, size_t len, struct kd_scram_first *out);

/* SCRAM client-final: "c=" channel binding (base64), "r=" nonce, then
 * "p=" proof (base64) last. without_proof is everything before ",p=". */
struct kd_scram_final {
	struct kd_view cbind, nonce, proof, without_proof;
};
int kd_scram_final_parse(const uint8_t *p, size_t len, struct kd_scram_final *out);

/* SCRAM server-first (r=, s=, i=) and server-final (v= or e=), as kwire
 * reads them from a broker. */
struct kd_scram_server {
	struct kd_view nonce, salt, verifier, error;
	int64_t iterations; /* 0 when absent */
};
int kd_scram_server_parse(const uint8_t *p, size_t len, struct kd_scram_server *out);

/* OAUTHBEARER client first message (RFC 7628 3.1): the GS2 authzid (empty
 * when absent) and the bearer token. A lone kvsep (0x01) is the client's
 * answer to an error message (KD_OK with is_ack set, no token). */
struct kd_oauth {
	struct kd_view authzid, token;
	uint8_t is_ack;
};
int kd_oauth_parse(const uint8_t *p, size_t len, struct kd_oauth *out);

/* RFC 5802 saslname decoding ("=2C" ',' and "=3D" '='), into out (cap
 * bytes, NUL-terminated). Returns the length, or -1 when s holds another
 * '=', a NUL or does not fit. */
long kd_saslname_decode(const uint8_t *s, size_t n, char *out, size_t cap);

/* base64 (RFC 4648 4, '=' padding required when the length is not a
 * multiple of 4 in strict mode, optional otherwise; url selects the URL
 * alphabet of 5) into out (cap bytes). Returns the length or -1. */
long kd_b64_decode(const uint8_t *s, size_t n, uint8_t *out, size_t cap, int url);
/* base64 (standard alphabet, padded) of p into out (cap bytes, NUL-
 * terminated). Returns the length or -1 when it does not fit. */
long kd_b64_encode(const uint8_t *p, size_t n, char *out, size_t cap);

#endif
