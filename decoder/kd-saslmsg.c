/* kd-saslmsg.c: SaslHandshake / SaslAuthenticate bodies and frames, and
 * the server-side view of SASL client tokens (kd-saslmsg.h).
 *
 * Layouts (MSG/SaslHandshake*.json, MSG/SaslAuthenticate*.json):
 *
 *   SaslHandshakeRequest  v0-1   Mechanism STRING
 *   SaslHandshakeResponse v0-1   ErrorCode INT16, Mechanisms [STRING]
 *   SaslAuthenticateRequest  v0-1  AuthBytes BYTES          v2: COMPACT, tags
 *   SaslAuthenticateResponse v0    ErrorCode, ErrorMessage NULLABLE_STRING,
 *                                  AuthBytes BYTES
 *                            v1    + SessionLifetimeMs INT64 (KIP-368)
 *                            v2    flexible: compact forms, tagged fields;
 *                                  response header v1 (tags after the id)
 *
 * Request header v1 (v0-1 of both APIs): key, version, correlation id,
 * ClientId STRING; v2 (SaslAuthenticate v2) adds tags. */
#include "kd-saslmsg.h"

#include <string.h>

#include "kd-api-keys-gen.h"

/* ---- bodies ---- */

int kd_saslauth_req_read(int16_t ver, const uint8_t *body, size_t len, struct kd_view *auth)
{
	struct kd_cur cur;
	kd_cur_init(&cur, body, len);
	return kd_cur_bytes(&cur, ver >= 2, 0, auth);
}

int kd_saslauth_resp_read(int16_t ver, const uint8_t *body, size_t len,
                          struct kd_saslauth_resp *out)
{
	struct kd_cur cur;
	int rc, flex = ver >= 2;

	memset(out, 0, sizeof(*out));
	kd_cur_init(&cur, body, len);
	if ((rc = kd_cur_i16(&cur, &out->error)) != KD_OK ||
	    (rc = kd_cur_str(&cur, flex, 1, &out->message)) != KD_OK ||
	    (rc = kd_cur_bytes(&cur, flex, 0, &out->auth)) != KD_OK)
		return rc;
	if (ver >= 1)
		return kd_cur_i64(&cur, &out->lifetime_ms);
	return KD_OK;
}

int kd_saslhs_resp_read(const uint8_t *body, size_t len, int16_t *error)
{
	struct kd_cur cur;
	kd_cur_init(&cur, body, len);
	return kd_cur_i16(&cur, error);
}

/* ---- frames ---- */

static void w_str(struct kd_wbuf *w, int compact, const char *s)
{
	struct kd_view v = {(const uint8_t *)s, s ? (uint32_t)strlen(s) : 0, !s};
	kd_w_blob(w, compact, 2, &v);
}

/* Starts a frame: the size (patched by frame_end) and a response header. */
static size_t resp_begin(struct kd_wbuf *w, int32_t corr, int flex)
{
	size_t at = w->len;
	kd_w_i32(w, 0);
	kd_w_i32(w, corr);
	if (flex)
		kd_w_uvarint(w, 0); /* no tagged fields */
	return at;
}

static size_t req_begin(struct kd_wbuf *w, int16_t key, int16_t ver, int32_t corr)
{
	size_t at = w->len;
	kd_w_i32(w, 0);
	kd_w_i16(w, key);
	kd_w_i16(w, ver);
	kd_w_i32(w, corr);
	w_str(w, 0, "kwire"); /* request header v1 */
	return at;
}

static void frame_end(struct kd_wbuf *w, size_t at)
{
	if (!w->err)
		kd_w_patch_be(w, at, 4, (uint32_t)(w->len - at - 4));
}

void kd_saslhs_resp_write(struct kd_wbuf *w, int32_t corr, int16_t error, const char *const *mechs)
{
	size_t at = resp_begin(w, corr, 0);
	int32_t n = 0;
	while (mechs[n])
		n++;
	kd_w_i16(w, error);
	kd_w_i32(w, n);
	for (int32_t i = 0; i < n; i++)
		w_str(w, 0, mechs[i]);
	frame_end(w, at);
}

void kd_saslauth_resp_write(struct kd_wbuf *w, int16_t ver, int32_t corr, int16_t error,
                            const char *message, const uint8_t *auth, size_t alen,
                            int64_t lifetime_ms)
{
	int flex = ver >= 2;
	size_t at = resp_begin(w, corr, flex);
	struct kd_view a = {auth, (uint32_t)alen, 0};
	kd_w_i16(w, error);
	w_str(w, flex, message);
	kd_w_blob(w, flex, 4, &a);
	if (ver >= 1)
		kd_w_i64(w, lifetime_ms);
	if (flex)
		kd_w_uvarint(w, 0);
	frame_end(w, at);
}

void kd_saslhs_req_write(struct kd_wbuf *w, int32_t corr, const char *mech)
{
	size_t at = req_begin(w, KD_API_SASL_HANDSHAKE, 1, corr);
	w_str(w, 0, mech);
	frame_end(w, at);
}

void kd_saslauth_req_write(struct kd_wbuf *w, int32_t corr, const uint8_t *auth, size_t alen)
{
	size_t at = req_begin(w, KD_API_SASL_AUTHENTICATE, 1, corr);
	struct kd_view a = {auth, (uint32_t)alen, 0};
	kd_w_blob(w, 0, 4, &a);
	frame_end(w, at);
}

void kd_sasl_token_write(struct kd_wbuf *w, const uint8_t *tok, size_t len)
{
	kd_w_i32(w, (int32_t)len);
	kd_w_raw(w, tok, len);
}

/* ---- tokens ---- */

static struct kd_view view(const uint8_t *p, const uint8_t *end)
{
	struct kd_view v = {p, (uint32_t)(end - p), 0};
	return v;
}

static const uint8_t *find(const uint8_t *p, const uint8_t *end, uint8_t c)
{
	return p < end ? memchr(p, c, (size_t)(end - p)) : NULL;
}

int kd_plain_parse(const uint8_t *p, size_t len, struct kd_plain *out)
{
	const uint8_t *end = p + len, *n1 = find(p, end, 0), *n2;

	memset(out, 0, sizeof(*out));
	if (!n1 || !(n2 = find(n1 + 1, end, 0)) || find(n2 + 1, end, 0))
		return KD_EMALFORMED;
	out->authzid = view(p, n1);
	out->authcid = view(n1 + 1, n2);
	out->passwd = view(n2 + 1, end);
	if (!out->authcid.len || !out->passwd.len)
		return KD_EMALFORMED;
	return KD_OK;
}

/* One "k=value" attribute at p (up to ',' or end): its value. */
static int attr(const uint8_t *p, const uint8_t *end, char k, struct kd_view *v,
                const uint8_t **next)
{
	const uint8_t *c;
	if (end - p < 2 || p[0] != (uint8_t)k || p[1] != '=')
		return 0;
	c = find(p + 2, end, ',');
	if (!c)
		c = end;
	*v = view(p + 2, c);
	*next = c < end ? c + 1 : end;
	return 1;
}

int kd_scram_first_parse(const uint8_t *p, size_t len, struct kd_scram_first *out)
{
	const uint8_t *end = p + len, *c = p, *e;

	memset(out, 0, sizeof(*out));
	/* gs2-cbind-flag */
	if (len < 3)
		return KD_EMALFORMED;
	out->cbind = p[0];
	if (p[0] == 'n' || p[0] == 'y') {
		c = p + 1;
	} else if (p[0] == 'p' && p[1] == '=') {
		c = find(p + 2, end, ',');
		if (!c)
			return KD_EMALFORMED;
	} else {
		return KD_EMALFORMED;
	}
	if (c >= end || *c != ',')
		return KD_EMALFORMED;
	c++;
	if (end - c >= 2 && c[0] == 'a' && c[1] == '=') {
		e = find(c + 2, end, ',');
		if (!e)
			return KD_EMALFORMED;
		out->authzid = view(c + 2, e);
		c = e;
	}
	if (c >= end || *c != ',')
		return KD_EMALFORMED;
	c++;
	out->gs2 = view(p, c);
	out->bare = view(c, end);
	if (end - c >= 2 && c[0] == 'm' && c[1] == '=')
		return KD_EUNSUPPORTED; /* reserved-mext: must fail (RFC 5802 5.1) */
	if (!attr(c, end, 'n', &out->user, &c) || !out->user.len)
		return KD_EMALFORMED;
	if (!attr(c, end, 'r', &out->nonce, &c) || !out->nonce.len)
		return KD_EMALFORMED;
	/* extensions: KIP-48 "tokenauth=true"; others are ignored */
	while (c < end) {
		e = find(c, end, ',');
		if (!e)
			e = end;
		if (e - c == 14 && !memcmp(c, "tokenauth=true", 14))
			out->tokenauth = 1;
		c = e < end ? e + 1 : end;
	}
	return KD_OK;
}

int kd_scram_final_parse(const uint8_t *p, size_t len, struct kd_scram_final *out)
{
	const uint8_t *end = p + len, *c = p, *q;

	memset(out, 0, sizeof(*out));
	if (!attr(c, end, 'c', &out->cbind, &c))
		return KD_EMALFORMED;
	if (!attr(c, end, 'r', &out->nonce, &c))
		return KD_EMALFORMED;
	/* extensions, then "p=" last */
	for (q = c; q < end;) {
		const uint8_t *e = find(q, end, ',');
		if (end - q >= 2 && q[0] == 'p' && q[1] == '=') {
			if (e) /* the proof is the last attribute */
				return KD_EMALFORMED;
			out->proof = view(q + 2, end);
			out->without_proof = view(p, q > p ? q - 1 : q);
			return out->proof.len ? KD_OK : KD_EMALFORMED;
		}
		if (!e)
			break;
		q = e + 1;
	}
	return KD_EMALFORMED;
}

int kd_scram_server_parse(const uint8_t *p, size_t len, struct kd_scram_server *out)
{
	const uint8_t *end = p + len, *c = p;

	memset(out, 0, sizeof(*out));
	while (c < end) {
		const uint8_t *e = find(c, end, ',');
		struct kd_view v;
		if (!e)
			e = end;
		if (e - c < 2 || c[1] != '=')
			return KD_EMALFORMED;
		v = view(c + 2, e);
		switch (c[0]) {
		case 'r':
			out->nonce = v;
			break;
		case 's':
			out->salt = v;
			break;
		case 'v':
			out->verifier = v;
			break;
		case 'e':
			out->error = v;
			break;
		case 'i':
			out->iterations = 0;
			if (!v.len || v.len > 9)
				return KD_EMALFORMED;
			for (uint32_t i = 0; i < v.len; i++) {
				if (v.p[i] < '0' || v.p[i] > '9')
					return KD_EMALFORMED;
				out->iterations = out->iterations * 10 + (v.p[i] - '0');
			}
			break;
		default:
			break; /* extensions */
		}
		c = e < end ? e + 1 : end;
	}
	return KD_OK;
}

int kd_oauth_parse(const uint8_t *p, size_t len, struct kd_oauth *out)
{
	const uint8_t *end = p + len, *c, *e;

	memset(out, 0, sizeof(*out));
	if (len == 1 && p[0] == 0x01) {
		out->is_ack = 1;
		return KD_OK;
	}
	/* gs2-header: "n," or "y," [a=authzid] "," */
	if (len < 3 || (p[0] != 'n' && p[0] != 'y') || p[1] != ',')
		return KD_EMALFORMED;
	c = p + 2;
	if (end - c >= 2 && c[0] == 'a' && c[1] == '=') {
		e = find(c + 2, end, ',');
		if (!e)
			return KD_EMALFORMED;
		out->authzid = view(c + 2, e);
		c = e;
	}
	if (c >= end || *c != ',')
		return KD_EMALFORMED;
	c++;
	if (c >= end || *c != 0x01)
		return KD_EMALFORMED;
	c++;
	/* kvpairs, each ended by 0x01, then a final 0x01 */
	while (c < end && *c != 0x01) {
		e = find(c, end, 0x01);
		if (!e)
			return KD_EMALFORMED;
		if (e - c > 12 && !memcmp(c, "auth=", 5)) {
			static const char bearer[] = "bearer ";
			for (int i = 0; i < 7; i++)
				if ((c[5 + i] | 0x20) != (uint8_t)bearer[i] &&
				    !(bearer[i] == ' ' && c[5 + i] == ' '))
					return KD_EMALFORMED;
			out->token = view(c + 12, e);
		}
		c = e + 1;
	}
	if (c >= end || c + 1 != end)
		return KD_EMALFORMED;
	return out->token.len ? KD_OK : KD_EMALFORMED;
}

long kd_saslname_decode(const uint8_t *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	if (!cap)
		return -1;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		if (c == 0)
			return -1;
		if (c == '=') {
			if (i + 2 >= n)
				return -1;
			if (s[i + 1] == '2' && s[i + 2] == 'C')
				c = ',';
			else if (s[i + 1] == '3' && s[i + 2] == 'D')
				c = '=';
			else
				return -1;
			i += 2;
		}
		if (o + 1 >= cap)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = 0;
	return (long)o;
}

static int b64_val(uint8_t c, int url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	return -1;
}

long kd_b64_decode(const uint8_t *s, size_t n, uint8_t *out, size_t cap, int url)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0, pad = 0;

	while (n && s[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	if (!url && (n + pad) % 4)
		return -1;
	if (n % 4 == 1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int v = b64_val(s[i], url);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
		acc &= (1u << bits) - 1;
	}
	return (long)o;
}

long kd_b64_encode(const uint8_t *p, size_t n, char *out, size_t cap)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t need = (n + 2) / 3 * 4, o = 0;

	if (need + 1 > cap)
		return -1;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? tab[v & 63] : '=';
	}
	out[o] = 0;
	return (long)o;
}
