/* kd-sasl.c: SASL mechanism names, user names of client tokens, GSSAPI
 * token classes (kd-sasl.h). Every read is bounded by the given length;
 * nothing is copied out but the user name. */
#include "kd-sasl.h"
#include "kd-saslmsg.h"

#include <string.h>

static const struct {
	const char *name;
	int mech;
} mechs[] = {
    {"PLAIN", KD_SASL_MECH_PLAIN},
    {"SCRAM-SHA-256", KD_SASL_MECH_SCRAM_SHA_256},
    {"SCRAM-SHA-512", KD_SASL_MECH_SCRAM_SHA_512},
    {"GSSAPI", KD_SASL_MECH_GSSAPI},
    {"OAUTHBEARER", KD_SASL_MECH_OAUTHBEARER},
};

int kd_sasl_mech_parse(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
		if (strlen(mechs[i].name) == len && memcmp(mechs[i].name, p, len) == 0)
			return mechs[i].mech;
	return KD_SASL_MECH_OTHER;
}

const char *kd_sasl_mech_name(int mech)
{
	if (mech == KD_SASL_MECH_SCRAM)
		return "SCRAM";
	for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
		if (mechs[i].mech == mech)
			return mechs[i].name;
	return mech == KD_SASL_MECH_NONE ? NULL : "other";
}

/* ---- the output buffer ---- */

struct ob {
	char *p;
	size_t cap; /* > 0 */
	size_t len;
	size_t max; /* KD_SASL_USER_MAX or less */
	int bare;   /* the user alone: no "(authzid X)", OAUTHBEARER's sub first */
};

static void ob_put(struct ob *o, const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n && o->len < o->max && o->len + 1 < o->cap; i++)
		o->p[o->len++] = (char)s[i];
	o->p[o->len] = 0;
}

static void ob_cstr(struct ob *o, const char *s)
{
	ob_put(o, (const uint8_t *)s, strlen(s));
}

/* RFC 5802 saslname: "=2C" is ',', "=3D" is '='. Returns 0 when s holds
 * another '=' (not a saslname). */
static int ob_saslname(struct ob *o, const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		if (c == '=') {
			if (i + 2 >= n)
				return 0;
			if (s[i + 1] == '2' && (s[i + 2] == 'C' || s[i + 2] == 'c'))
				c = ',';
			else if (s[i + 1] == '3' && (s[i + 2] == 'D' || s[i + 2] == 'd'))
				c = '=';
			else
				return 0;
			i += 2;
		}
		ob_put(o, &c, 1);
	}
	return 1;
}

static const uint8_t *find(const uint8_t *p, const uint8_t *end, uint8_t c)
{
	return p < end ? memchr(p, c, (size_t)(end - p)) : NULL;
}

/* ---- GS2 header (RFC 5801 4), shared by SCRAM and OAUTHBEARER ----
 *
 *   gs2-header = gs2-cbind-flag "," [ "a=" saslname ] ","
 *   gs2-cbind-flag = "p=" cb-name / "n" / "y"
 *
 * Returns the offset after the header (0 when p does not start with one)
 * and the authzid's bounds (a == NULL when absent). */
static size_t gs2_header(const uint8_t *p, size_t len, const uint8_t **a, size_t *alen)
{
	const uint8_t *end = p + len, *c = p, *comma;

	*a = NULL;
	*alen = 0;
	if (len < 3)
		return 0;
	if (p[0] == 'n' || p[0] == 'y') {
		c = p + 1;
	} else if (p[0] == 'p' && p[1] == '=') {
		c = find(p + 2, end, ',');
		if (!c)
			return 0;
	} else {
		return 0;
	}
	if (c >= end || *c != ',')
		return 0;
	c++;
	if (end - c >= 2 && c[0] == 'a' && c[1] == '=') {
		comma = find(c + 2, end, ',');
		if (!comma)
			return 0;
		*a = c + 2;
		*alen = (size_t)(comma - c - 2);
		c = comma;
	}
	if (c >= end || *c != ',')
		return 0;
	return (size_t)(c + 1 - p);
}

int kd_sasl_mech_sniff(const uint8_t *p, size_t len)
{
	const uint8_t *a;
	size_t alen, off;

	if (len == 0)
		return KD_SASL_MECH_NONE;
	if (p[0] == 0x60)
		return KD_SASL_MECH_GSSAPI;
	off = gs2_header(p, len, &a, &alen);
	if (off && off < len && p[off] == 0x01)
		return KD_SASL_MECH_OAUTHBEARER;
	if (off && len - off >= 2 && (p[off] == 'n' || p[off] == 'm') && p[off + 1] == '=')
		return KD_SASL_MECH_SCRAM;
	/* PLAIN: [authzid] NUL authcid NUL passwd */
	{
		const uint8_t *n1 = memchr(p, 0, len);
		if (n1 && find(n1 + 1, p + len, 0))
			return KD_SASL_MECH_PLAIN;
	}
	return KD_SASL_MECH_NONE;
}

/* ---- PLAIN (RFC 4616 2): [authzid] UTF8NUL authcid UTF8NUL passwd ---- */

static size_t plain_user(const uint8_t *p, size_t len, struct ob *o)
{
	const uint8_t *end = p + len, *n1 = memchr(p, 0, len), *n2;

	if (!n1 || !(n2 = find(n1 + 1, end, 0)) || n2 == n1 + 1)
		return 0;
	ob_put(o, n1 + 1, (size_t)(n2 - n1 - 1));
	if (!o->bare && n1 > p &&
	    ((size_t)(n1 - p) != (size_t)(n2 - n1 - 1) || memcmp(p, n1 + 1, (size_t)(n1 - p)))) {
		ob_cstr(o, " (authzid ");
		ob_put(o, p, (size_t)(n1 - p));
		ob_cstr(o, ")");
	}
	return o->len;
}

/* ---- SCRAM client-first (RFC 5802 7) ----
 *
 *   client-first-message = gs2-header [reserved-mext ","] username "," nonce ...
 *   username = "n=" saslname */

static size_t scram_user(const uint8_t *p, size_t len, struct ob *o)
{
	const uint8_t *a, *end = p + len, *c, *comma;
	size_t alen, off = gs2_header(p, len, &a, &alen);

	if (!off)
		return 0;
	c = p + off;
	if (end - c >= 2 && c[0] == 'm' && c[1] == '=') {
		c = find(c, end, ',');
		if (!c)
			return 0;
		c++;
	}
	if (end - c < 2 || c[0] != 'n' || c[1] != '=')
		return 0;
	comma = find(c + 2, end, ',');
	if (!comma || comma == c + 2)
		return 0;
	if (!ob_saslname(o, c + 2, (size_t)(comma - c - 2))) {
		o->len = 0;
		o->p[0] = 0;
		return 0;
	}
	if (a && alen && !o->bare) {
		size_t keep = o->len;
		ob_cstr(o, " (authzid ");
		if (!ob_saslname(o, a, alen)) {
			o->len = keep;
			o->p[keep] = 0;
		} else {
			ob_cstr(o, ")");
		}
	}
	return o->len;
}

/* ---- OAUTHBEARER (RFC 7628 3.1) ----
 *
 *   client-resp = gs2-header kvsep *kvpair kvsep      kvsep = %x01
 *   kvpair = key "=" value kvsep                      "auth=Bearer <token>"
 *
 * The user is the GS2 authzid, else the "sub" claim of the token when it
 * is a JWT (RFC 7519: base64url(header) "." base64url(payload) "." sig). */

static size_t skip_ws(const uint8_t *p, size_t i, size_t n)
{
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
		i++;
	return i;
}

/* The end (after the closing quote) of the JSON string at p[i] == '"', or 0. */
static size_t json_str_end(const uint8_t *p, size_t i, size_t n)
{
	for (i++; i < n; i++) {
		if (p[i] == '\\')
			i++;
		else if (p[i] == '"')
			return i + 1;
	}
	return 0;
}

/* The end of the JSON value at p[i], or 0 when malformed. */
static size_t json_skip(const uint8_t *p, size_t i, size_t n)
{
	unsigned depth = 0;

	if (i >= n)
		return 0;
	if (p[i] == '"')
		return json_str_end(p, i, n);
	if (p[i] != '{' && p[i] != '[') {
		while (i < n && p[i] != ',' && p[i] != '}' && p[i] != ']' && p[i] != ' ')
			i++;
		return i;
	}
	for (; i < n; i++) {
		if (p[i] == '"') {
			size_t e = json_str_end(p, i, n);
			if (!e)
				return 0;
			i = e - 1;
		} else if (p[i] == '{' || p[i] == '[') {
			depth++;
		} else if (p[i] == '}' || p[i] == ']') {
			if (--depth == 0)
				return i + 1;
		}
	}
	return 0;
}

/* The "sub" member of the top-level JSON object p[0..n), unescaped
 * (\" \\ \/; other escapes kept as written) into o. */
static size_t jwt_sub(const uint8_t *p, size_t n, struct ob *o)
{
	size_t i = skip_ws(p, 0, n);

	if (i >= n || p[i] != '{')
		return 0;
	i++;
	for (;;) {
		size_t ks, ke, vs, ve;

		i = skip_ws(p, i, n);
		if (i >= n || p[i] != '"')
			return 0;
		ks = i;
		ke = json_str_end(p, i, n);
		if (!ke)
			return 0;
		i = skip_ws(p, ke, n);
		if (i >= n || p[i] != ':')
			return 0;
		vs = skip_ws(p, i + 1, n);
		ve = json_skip(p, vs, n);
		if (!ve)
			return 0;
		if (ke - ks == 5 && memcmp(p + ks, "\"sub\"", 5) == 0) {
			if (p[vs] != '"')
				return 0;
			for (size_t k = vs + 1; k + 1 < ve; k++) {
				if (p[k] == '\\' && k + 2 < ve &&
				    (p[k + 1] == '"' || p[k + 1] == '\\' || p[k + 1] == '/'))
					k++;
				ob_put(o, p + k, 1);
			}
			return o->len;
		}
		i = skip_ws(p, ve, n);
		if (i >= n || p[i] != ',')
			return 0;
		i++;
	}
}

/* Bytes of a JWT payload decoded to find its subject. */
#define JWT_PAYLOAD_MAX 4096

static size_t oauth_authzid(const uint8_t *a, size_t alen, struct ob *o)
{
	if (a && alen && ob_saslname(o, a, alen))
		return o->len;
	o->len = 0;
	o->p[0] = 0;
	return 0;
}

static size_t oauth_user(const uint8_t *p, size_t len, struct ob *o)
{
	const uint8_t *a, *end = p + len, *c;
	size_t alen, off = gs2_header(p, len, &a, &alen);

	if (!off || off >= len || p[off] != 0x01)
		return 0;
	if (a && alen && !o->bare)
		return oauth_authzid(a, alen, o);
	for (c = p + off + 1; c < end;) {
		const uint8_t *e = find(c, end, 0x01);
		if (!e)
			break;
		if (e - c > 12 && memcmp(c, "auth=", 5) == 0 && (c[5] | 0x20) == 'b' &&
		    (c[6] | 0x20) == 'e' && (c[7] | 0x20) == 'a' && (c[8] | 0x20) == 'r' &&
		    (c[9] | 0x20) == 'e' && (c[10] | 0x20) == 'r' && c[11] == ' ') {
			const uint8_t *t = c + 12, *d1 = find(t, e, '.'), *d2;
			uint8_t payload[JWT_PAYLOAD_MAX];
			long n;

			if (!d1 || !(d2 = find(d1 + 1, e, '.')))
				break;
			n = kd_b64_decode(d1 + 1, (size_t)(d2 - d1 - 1), payload, sizeof(payload),
			                  1);
			if (n <= 0 || !jwt_sub(payload, (size_t)n, o))
				break;
			return o->len;
		}
		c = e + 1;
	}
	/* bare: no readable subject; the authzid then */
	return o->bare ? oauth_authzid(a, alen, o) : 0;
}

static size_t principal(int mech, const uint8_t *tok, size_t len, char *out, size_t cap, int bare)
{
	struct ob o = {out, cap, 0, KD_SASL_USER_MAX, bare};

	if (!cap)
		return 0;
	out[0] = 0;
	if (!tok || !len)
		return 0;
	if (mech == KD_SASL_MECH_NONE)
		mech = kd_sasl_mech_sniff(tok, len);
	switch (mech) {
	case KD_SASL_MECH_PLAIN:
		return plain_user(tok, len, &o);
	case KD_SASL_MECH_SCRAM:
	case KD_SASL_MECH_SCRAM_SHA_256:
	case KD_SASL_MECH_SCRAM_SHA_512:
		return scram_user(tok, len, &o);
	case KD_SASL_MECH_OAUTHBEARER:
		return oauth_user(tok, len, &o);
	default:
		return 0; /* GSSAPI and unknown mechanisms: opaque */
	}
}

size_t kd_sasl_principal(int mech, const uint8_t *tok, size_t len, char *out, size_t cap)
{
	return principal(mech, tok, len, out, cap, 0);
}

size_t kd_sasl_user(int mech, const uint8_t *tok, size_t len, char *out, size_t cap)
{
	return principal(mech, tok, len, out, cap, 1);
}

/* ---- GSSAPI, Kerberos V5 mechanism ----
 *
 * Context tokens (RFC 2743 3.1, RFC 4121 4.1), and RFC 1964 per-message
 * tokens, are framed:
 *
 *   60 <DER length> 06 <oid len> <oid: 1.2.840.113554.1.2.2> <TOK_ID: 2 bytes> ...
 *
 * RFC 4121 per-message tokens are not: they start with their TOK_ID
 * (04 04 MIC, 05 04 Wrap). */

static const uint8_t krb5_oid[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02};
/* 1.2.840.48018.1.2.2: the OID older Microsoft Kerberos uses. */
static const uint8_t krb5_ms_oid[] = {0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02};

int kd_gss_classify(const uint8_t *p, size_t len, size_t total)
{
	size_t i, dlen = 0, n;

	if (total == 0)
		return KD_GSS_EMPTY;
	if (len >= 2 && p[0] == 0x05 && p[1] == 0x04)
		return KD_GSS_WRAP;
	if (len >= 2 && p[0] == 0x04 && p[1] == 0x04)
		return KD_GSS_MIC;
	if (len < 2 || p[0] != 0x60)
		return KD_GSS_UNKNOWN;
	i = 2;
	if (p[1] & 0x80) {
		n = p[1] & 0x7f;
		if (n == 0 || n > 4 || len < 2 + n)
			return KD_GSS_UNKNOWN;
		for (size_t k = 0; k < n; k++)
			dlen = dlen << 8 | p[2 + k];
		i += n;
	} else {
		dlen = p[1];
	}
	if (dlen != total - i)
		return KD_GSS_UNKNOWN;
	if (len < i + 2 + sizeof(krb5_oid) + 2 || p[i] != 0x06 || p[i + 1] != sizeof(krb5_oid))
		return KD_GSS_UNKNOWN;
	if (memcmp(p + i + 2, krb5_oid, sizeof(krb5_oid)) != 0 &&
	    memcmp(p + i + 2, krb5_ms_oid, sizeof(krb5_ms_oid)) != 0)
		return KD_GSS_UNKNOWN;
	i += 2 + sizeof(krb5_oid);
	switch (p[i] << 8 | p[i + 1]) {
	case 0x0100:
		return KD_GSS_AP_REQ;
	case 0x0200:
		return KD_GSS_AP_REP;
	case 0x0300:
		return KD_GSS_ERROR;
	case 0x0201:
		return KD_GSS_WRAP;
	case 0x0101:
		return KD_GSS_MIC;
	}
	return KD_GSS_UNKNOWN;
}
