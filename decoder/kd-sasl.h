/* kd-sasl.h: what kwire may read in SASL messages, and no more.
 *
 * The mechanisms a Kafka client names in SaslHandshake, the user name
 * (principal) a client's first token carries, and the class of a GSSAPI
 * (Kerberos V5) token. The stream decoder uses them to follow a SASL v0
 * exchange (kd-stream.c); the renderers and the summary use them to show
 * the mechanism and the user and never the password, the SCRAM proof or
 * the token (docs/decoder.md "Secrets").
 *
 * Sources: RFC 4616 (PLAIN), RFC 5802 (SCRAM), RFC 7628 (OAUTHBEARER),
 * RFC 4752 (GSSAPI), RFC 2743 3.1 and RFC 4121 4.1/4.2.6 (Kerberos token
 * framing), KIP-43 (SaslHandshake v0 and raw token frames), KIP-255
 * (OAUTHBEARER), KIP-84 (SCRAM). Nothing here allocates or keeps state. */
#ifndef KD_SASL_H
#define KD_SASL_H

#include <stddef.h>
#include <stdint.h>

enum kd_sasl_mech {
	KD_SASL_MECH_NONE = 0, /* no mechanism known */
	KD_SASL_MECH_OTHER,    /* named, but not one kwire can follow */
	KD_SASL_MECH_PLAIN,
	KD_SASL_MECH_SCRAM_SHA_256,
	KD_SASL_MECH_SCRAM_SHA_512,
	KD_SASL_MECH_GSSAPI,
	KD_SASL_MECH_OAUTHBEARER,
	KD_SASL_MECH_SCRAM, /* SCRAM by the token's shape; the hash is not visible */
};

/* Longest mechanism name read from a SaslHandshake request; longer names
 * are KD_SASL_MECH_OTHER (RFC 4422 3.1 caps names at 20 characters). */
#define KD_SASL_MECH_NAME_MAX 32

/* The mechanism named by p[0..len) (exact, upper case as registered). */
int kd_sasl_mech_parse(const uint8_t *p, size_t len);

/* "PLAIN", "SCRAM-SHA-256", ...; "other" and NULL for KD_SASL_MECH_NONE. */
const char *kd_sasl_mech_name(int mech);

/* The mechanism a client's first token has the shape of, when nothing
 * named it (SaslAuthenticate carries no mechanism): PLAIN (NUL-separated
 * fields), SCRAM (a GS2 header then "n="), OAUTHBEARER (a GS2 header then
 * 0x01), GSSAPI (an RFC 2743 InitialContextToken, 0x60). SCRAM comes back
 * as KD_SASL_MECH_SCRAM ("SCRAM"): the hash is not visible in the token.
 * KD_SASL_MECH_NONE when the token says nothing. */
int kd_sasl_mech_sniff(const uint8_t *p, size_t len);

/* Largest user name written by kd_sasl_principal (bytes, NUL excluded). */
#define KD_SASL_USER_MAX 255

/* The user name a client token carries, written to out (cap bytes, always
 * NUL-terminated when cap > 0) as raw bytes that the caller escapes:
 * - PLAIN: the authcid; "authcid (authzid X)" when an authzid differs;
 * - SCRAM client-first: the "n=" user ("=2C" and "=3D" decoded), and the
 *   "a=" authzid likewise when present;
 * - OAUTHBEARER: the GS2 "a=" authzid, else the "sub" claim of the bearer
 *   token's payload when it is a readable JWT (the token itself never);
 * - GSSAPI, other tokens, other mechanisms: nothing.
 * mech KD_SASL_MECH_NONE sniffs the shape first. Returns the length
 * written, 0 when no user name can be read. Never writes any byte of a
 * password, proof, nonce or token. */
size_t kd_sasl_principal(int mech, const uint8_t *tok, size_t len, char *out, size_t cap);

/* The user a broker authenticates from that token, alone: the PLAIN
 * authcid, the SCRAM "n=" user (decoded), the OAUTHBEARER "sub" claim (the
 * authzid when the token is no readable JWT). Kafka refuses an authzid
 * that differs from it (PlainSaslServer, ScramSaslServer,
 * OAuthBearerSaslServer), so it is the principal's name. Same contract as
 * kd_sasl_principal otherwise. */
size_t kd_sasl_user(int mech, const uint8_t *tok, size_t len, char *out, size_t cap);

/* Classes of a GSSAPI token with the Kerberos V5 mechanism. */
enum kd_gss_tok {
	KD_GSS_UNKNOWN = 0, /* not a Kerberos token kwire recognises */
	KD_GSS_EMPTY,       /* a zero-length token */
	KD_GSS_AP_REQ,      /* context establishment, TOK_ID 01 00 */
	KD_GSS_AP_REP,      /* TOK_ID 02 00 */
	KD_GSS_ERROR,       /* KRB_ERROR, TOK_ID 03 00 */
	KD_GSS_WRAP,        /* per-message Wrap: RFC 4121 05 04, or RFC 1964 02 01 */
	KD_GSS_MIC,         /* per-message MIC: RFC 4121 04 04, or RFC 1964 01 01 */
};

/* Bytes of a token kd_gss_classify looks at, at most. */
#define KD_GSS_CLASSIFY_BYTES 24

/* The class of the GSSAPI token p[0..len); len may be cut to
 * KD_GSS_CLASSIFY_BYTES (total is the token's whole length). */
int kd_gss_classify(const uint8_t *p, size_t len, size_t total);

#endif
