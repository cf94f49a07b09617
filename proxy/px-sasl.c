/* px-sasl.c: SASL passthrough and termination, kwire's own SASL client to
 * the broker, principals and their counters (px-sasl.h, docs/security.md).
 *
 * A client connection's SASL life (terminate):
 *
 *   [new] --ApiVersions (forwarded)--> [new]
 *   [new] --SaslHandshake--> answered --v1--> SaslAuthenticate* answered
 *                                    --v0--> raw tokens answered (KIP-43)
 *         --success--> [authenticated] --SaslHandshake v1 + SaslAuthenticate
 *                                        (KIP-368 re-authentication)--> ...
 *         --failure--> SASL_AUTHENTICATION_FAILED, then close (v0: close)
 *   anything else before [authenticated], a frame over sasl_max_frame_bytes
 *   before it, or no authentication within sasl_handshake_timeout_ms:
 *   close. A request after the session's end (KIP-368) closes too.
 *
 * Passthrough follows the same exchange as it goes by: the user of the
 * client's first token is the candidate; the broker's answer that ends the
 * exchange with success makes it the principal (PLAIN: the first
 * SaslAuthenticate answer or v0 reply; SCRAM: the server-final "v=";
 * OAUTHBEARER: an empty server token; GSSAPI and others: the client's
 * first Kafka request after answers without error, principal unknown). */
#include "px-sasl.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "kd-api-keys-gen.h"
#include "kd-hdr.h"
#include "kd-render.h"
#include "kd-sasl.h"
#include "kd-saslmsg.h"
#include "kd-schema.h"
#include "px-jwt.h"
#include "px-scram.h"

#define MECH_BIT(m) (1u << (m))
#define PX_SASL_DEFAULT_TIMEOUT_MS 10000
#define PX_SASL_DEFAULT_MAX_FRAME 524288 /* Kafka's sasl.server.max.receive.size */

/* ---- configuration ---- */

void px_sasl_conf_init(struct px_sasl_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->handshake_timeout_ms = PX_SASL_DEFAULT_TIMEOUT_MS;
	c->max_frame = PX_SASL_DEFAULT_MAX_FRAME;
}

static const char *const mode_names[] = {"off", "passthrough", "terminate"};

static int mech_of(const char *s, size_t len)
{
	int m = kd_sasl_mech_parse((const uint8_t *)s, len);
	return m == KD_SASL_MECH_OTHER ? -1 : m;
}

int px_sasl_conf_set(struct px_sasl_conf *c, const char *key, const char *val, int append,
                     char *err, size_t errlen)
{
	if (!strcmp(key, "sasl")) {
		for (int i = 0; i < 3; i++)
			if (!strcmp(val, mode_names[i])) {
				c->mode = i;
				return 0;
			}
		snprintf(err, errlen, "'%s' is not off, passthrough or terminate", val);
		return -1;
	}
	if (!strcmp(key, "sasl_mechanisms")) {
		unsigned bits = append ? c->mechs : 0;
		const char *p = val;
		while (*p) {
			const char *e = strchr(p, ',');
			size_t n = e ? (size_t)(e - p) : strlen(p);
			while (n && (*p == ' ')) {
				p++;
				n--;
			}
			while (n && p[n - 1] == ' ')
				n--;
			int m = n ? mech_of(p, n) : -1;
			if (m < 0 || m == KD_SASL_MECH_GSSAPI) {
				snprintf(err, errlen,
				         "'%.*s' is not PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or "
				         "OAUTHBEARER",
				         (int)(n > 40 ? 40 : n), p);
				return -1;
			}
			bits |= MECH_BIT(m);
			p = e ? e + 1 : p + n;
		}
		if (!bits) {
			snprintf(err, errlen, "no mechanism");
			return -1;
		}
		c->mechs = bits;
		return 0;
	}
	if (!strcmp(key, "upstream_sasl_mechanism")) {
		if (!strcmp(val, "none") || !val[0]) {
			c->up_mech = 0;
			return 0;
		}
		int m = mech_of(val, strlen(val));
		if (m != KD_SASL_MECH_PLAIN && m != KD_SASL_MECH_SCRAM_SHA_256 &&
		    m != KD_SASL_MECH_SCRAM_SHA_512) {
			snprintf(err, errlen,
			         "'%s' is not PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or none", val);
			return -1;
		}
		c->up_mech = m;
		return 0;
	}
	snprintf(err, errlen, "unknown key '%s'", key);
	return -1;
}

unsigned px_sasl_mechs(const struct px_sasl_conf *c)
{
	unsigned m = c->mechs;
	if (m)
		return m;
	if (c->credentials[0])
		m |= MECH_BIT(KD_SASL_MECH_PLAIN) | MECH_BIT(KD_SASL_MECH_SCRAM_SHA_256) |
		     MECH_BIT(KD_SASL_MECH_SCRAM_SHA_512);
	if (c->jwks[0])
		m |= MECH_BIT(KD_SASL_MECH_OAUTHBEARER);
	return m;
}

int px_sasl_conf_check(const struct px_sasl_conf *c, char *err, size_t errlen)
{
	unsigned m = px_sasl_mechs(c);
	if (c->mode == PX_SASL_TERMINATE) {
		if (!m) {
			snprintf(
			    err, errlen,
			    "sasl: terminate needs sasl_credentials (PLAIN, SCRAM) or sasl_jwks "
			    "(OAUTHBEARER)");
			return -1;
		}
		if ((m & (MECH_BIT(KD_SASL_MECH_PLAIN) | MECH_BIT(KD_SASL_MECH_SCRAM_SHA_256) |
		          MECH_BIT(KD_SASL_MECH_SCRAM_SHA_512))) &&
		    !c->credentials[0]) {
			snprintf(err, errlen,
			         "sasl_mechanisms: PLAIN and SCRAM need sasl_credentials (a file "
			         "written by `kwire passwd`)");
			return -1;
		}
		if ((m & MECH_BIT(KD_SASL_MECH_OAUTHBEARER)) && !c->jwks[0]) {
			snprintf(err, errlen, "sasl_mechanisms: OAUTHBEARER needs sasl_jwks");
			return -1;
		}
	}
	if (c->up_mech) {
		if (c->mode == PX_SASL_PASSTHROUGH) {
			snprintf(err, errlen,
			         "upstream_sasl_mechanism: with sasl: passthrough the clients "
			         "authenticate to the broker themselves");
			return -1;
		}
		if (!c->up_user[0] || !c->up_password[0]) {
			snprintf(err, errlen,
			         "upstream_sasl_mechanism needs upstream_sasl_username "
			         "and upstream_sasl_password");
			return -1;
		}
	}
	return 0;
}

static void dump_str(FILE *f, const char *key, const char *v)
{
	fprintf(f, "%s: \"", key);
	for (; *v; v++)
		fprintf(f, *v == '"' || *v == '\\' ? "\\%c" : "%c", *v);
	fprintf(f, "\"\n");
}

void px_sasl_conf_dump(const struct px_sasl_conf *c, FILE *f)
{
	fprintf(f, "sasl: %s\n", mode_names[c->mode]);
	unsigned m = px_sasl_mechs(c);
	fprintf(f, "sasl_mechanisms: [");
	const char *sep = "";
	for (int i = 0; i < 16; i++)
		if (m & MECH_BIT(i)) {
			fprintf(f, "%s%s", sep, kd_sasl_mech_name(i));
			sep = ", ";
		}
	fprintf(f, "]\n");
	dump_str(f, "sasl_credentials", c->credentials);
	dump_str(f, "sasl_jwks", c->jwks);
	dump_str(f, "sasl_jwt_issuer", c->jwt_issuer);
	dump_str(f, "sasl_jwt_audience", c->jwt_audience);
	fprintf(f, "sasl_session_lifetime_ms: %u\n", c->session_lifetime_ms);
	fprintf(f, "sasl_handshake_timeout_ms: %u\n", c->handshake_timeout_ms);
	fprintf(f, "sasl_max_frame_bytes: %" PRIu32 "\n", c->max_frame);
	fprintf(f, "upstream_sasl_mechanism: %s\n",
	        c->up_mech ? kd_sasl_mech_name(c->up_mech) : "none");
	dump_str(f, "upstream_sasl_username", c->up_user);
	fprintf(f, "upstream_sasl_password: %s\n", c->up_password[0] ? "\"[redacted]\"" : "\"\"");
}

/* ---- proxy-wide state ---- */

enum { RES_OK = 0, RES_FAIL = 1 };
enum { PRE_REQUEST = 0, PRE_FRAME, PRE_TIMEOUT, PRE_STATE, PRE_N };
static const char *const pre_names[] = {"request", "frame_size", "timeout", "state"};

/* The credentials and keys in force: replaced as a whole by a reload
 * (px_sasl_reload); an exchange holds a reference from its handshake to
 * its end, so that a reload never pulls a user from under it. */
struct px_sasl_keys {
	_Atomic unsigned refs;
	struct px_creds creds;
	struct px_jwks *jwks;
};

struct px_sasl {
	const struct px_sasl_conf *c; /* the proxy's configuration (outlives this) */
	unsigned mechs;
	struct px_sasl_keys *keys;    /* under mu */
	_Atomic uint64_t auths[8][2]; /* [mechanism][RES_*] */
	_Atomic uint64_t reauths, expired, pre[PRE_N];
	_Atomic uint64_t up_auths[2], up_reauths;
	pthread_mutex_t mu; /* keys, scram cache */
	/* SCRAM client: the last SaltedPassword kwire computed for the broker's
	 * salt and iterations (PBKDF2 is slow; the broker's salt is per user). */
	int cache_hash;
	uint32_t cache_iter;
	size_t cache_salt_len;
	uint8_t cache_salt[PX_SCRAM_SALT_MAX];
	uint8_t cache_salted[PX_SCRAM_KEY_MAX];
};

static void keys_put(struct px_sasl_keys **kp)
{
	struct px_sasl_keys *k = *kp;
	*kp = NULL;
	if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
		return;
	px_creds_free(&k->creds);
	px_jwks_free(&k->jwks);
	free(k);
}

/* The files the configuration names, loaded. NULL with err. */
static struct px_sasl_keys *keys_load(const struct px_sasl_conf *c, char *err, size_t errlen)
{
	struct px_sasl_keys *k = calloc(1, sizeof(*k));
	if (!k) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&k->refs, 1);
	if (c->mode == PX_SASL_TERMINATE) {
		if (c->credentials[0] && px_creds_load(c->credentials, &k->creds, err, errlen))
			goto fail;
		if (c->jwks[0] && !(k->jwks = px_jwks_load(c->jwks, err, errlen)))
			goto fail;
	}
	return k;
fail:
	keys_put(&k);
	return NULL;
}

static struct px_sasl_keys *keys_get(struct px_sasl *s)
{
	pthread_mutex_lock(&s->mu);
	struct px_sasl_keys *k = s->keys;
	atomic_fetch_add(&k->refs, 1);
	pthread_mutex_unlock(&s->mu);
	return k;
}

int px_sasl_reload(struct px_sasl *s, char *err, size_t errlen)
{
	if (s->c->mode != PX_SASL_TERMINATE)
		return 0;
	struct px_sasl_keys *k = keys_load(s->c, err, errlen);
	if (!k)
		return -1;
	pthread_mutex_lock(&s->mu);
	struct px_sasl_keys *old = s->keys;
	s->keys = k;
	pthread_mutex_unlock(&s->mu);
	keys_put(&old);
	return 1;
}

struct px_sasl *px_sasl_new(const struct px_sasl_conf *c, char *err, size_t errlen)
{
	struct px_sasl *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->c = c;
	s->mechs = px_sasl_mechs(c);
	s->cache_hash = -1;
	pthread_mutex_init(&s->mu, NULL);
	if (!(s->keys = keys_load(c, err, errlen)))
		goto fail;
	return s;
fail:
	px_sasl_free(&s);
	return NULL;
}

void px_sasl_free(struct px_sasl **sp)
{
	struct px_sasl *s = *sp;
	if (!s)
		return;
	keys_put(&s->keys);
	OPENSSL_cleanse(s->cache_salted, sizeof(s->cache_salted));
	pthread_mutex_destroy(&s->mu);
	free(s);
	*sp = NULL;
}

#define CNT(s, f, n) atomic_fetch_add_explicit(&(s)->f, (n), memory_order_relaxed)
#define GET(x) atomic_load_explicit(&(x), memory_order_relaxed)

void px_sasl_metrics(struct px_sasl *s, struct kd_wbuf *w)
{
	if (s->c->mode == PX_SASL_OFF)
		return;
	kd_w_fmt(w, "# HELP kwire_sasl_authentications_total SASL authentications of clients, "
	            "by mechanism and result.\n"
	            "# TYPE kwire_sasl_authentications_total counter\n");
	for (int m = 1; m < 8; m++)
		for (int r = 0; r < 2; r++) {
			uint64_t v = GET(s->auths[m][r]);
			if (v)
				kd_w_fmt(w,
				         "kwire_sasl_authentications_total{mechanism=\"%s\","
				         "result=\"%s\"} %" PRIu64 "\n",
				         kd_sasl_mech_name(m), r ? "failure" : "success", v);
		}
	kd_w_fmt(w,
	         "# HELP kwire_sasl_reauthentications_total Successful KIP-368 "
	         "re-authentications.\n"
	         "# TYPE kwire_sasl_reauthentications_total counter\n"
	         "kwire_sasl_reauthentications_total %" PRIu64 "\n"
	         "# HELP kwire_sasl_sessions_expired_total Connections closed because their SASL "
	         "session ended without re-authentication.\n"
	         "# TYPE kwire_sasl_sessions_expired_total counter\n"
	         "kwire_sasl_sessions_expired_total %" PRIu64 "\n",
	         GET(s->reauths), GET(s->expired));
	kd_w_fmt(w, "# HELP kwire_sasl_preauth_closed_total Connections closed before "
	            "authenticating, by reason.\n"
	            "# TYPE kwire_sasl_preauth_closed_total counter\n");
	for (int i = 0; i < PRE_N; i++)
		kd_w_fmt(w, "kwire_sasl_preauth_closed_total{reason=\"%s\"} %" PRIu64 "\n",
		         pre_names[i], GET(s->pre[i]));
	kd_w_fmt(w,
	         "# HELP kwire_sasl_upstream_authentications_total kwire's own SASL "
	         "authentications to brokers, by result.\n"
	         "# TYPE kwire_sasl_upstream_authentications_total counter\n"
	         "kwire_sasl_upstream_authentications_total{result=\"success\"} %" PRIu64 "\n"
	         "kwire_sasl_upstream_authentications_total{result=\"failure\"} %" PRIu64 "\n"
	         "# HELP kwire_sasl_upstream_reauthentications_total kwire's KIP-368 "
	         "re-authentications of its connections to brokers.\n"
	         "# TYPE kwire_sasl_upstream_reauthentications_total counter\n"
	         "kwire_sasl_upstream_reauthentications_total %" PRIu64 "\n",
	         GET(s->up_auths[RES_OK]), GET(s->up_auths[RES_FAIL]), GET(s->up_reauths));
}

/* ---- one client connection ---- */

#define SCRAM_BARE_MAX 1024
#define SCRAM_NONCE_MAX 256

struct px_sasl_conn {
	struct px_sasl *s;
	const struct px_sasl_conf *c;
	uint8_t authed;  /* a principal counts */
	uint8_t hs_done; /* a SaslHandshake succeeded: its exchange is on */
	uint8_t hs_ver;
	uint8_t mech;       /* the exchange's mechanism */
	uint8_t step;       /* client tokens of the exchange seen */
	uint8_t oauth_fail; /* OAUTHBEARER: error sent, the client's kvsep is next */
	uint8_t pt_ok;      /* passthrough: every SASL answer so far without error */
	uint8_t pt_exch;    /* passthrough: an exchange is going on */
	uint64_t expiry_us; /* the session's end (monotonic), 0 none */
	char principal[PX_PRINCIPAL_MAX];
	char cand[PX_PRINCIPAL_MAX]; /* passthrough: the user the exchange names */
	char fail_why[160];          /* OAUTHBEARER: the reason kept for the final failure */
	struct px_sasl_keys *keys;   /* terminate: from the handshake to the exchange's end */
	/* SCRAM server */
	int hash;
	const struct px_cred_user *user;
	char gs2[64];
	size_t bare_len;
	char bare[SCRAM_BARE_MAX];
	char nonce[SCRAM_NONCE_MAX];
	char server_first[SCRAM_NONCE_MAX + 128];
};

struct px_sasl_conn *px_sasl_conn_new(struct px_sasl *s, const struct px_sasl_conf *c)
{
	struct px_sasl_conn *sc = calloc(1, sizeof(*sc));
	if (sc) {
		sc->s = s;
		sc->c = c;
	}
	return sc;
}

void px_sasl_conn_free(struct px_sasl_conn **scp)
{
	if (*scp) {
		keys_put(&(*scp)->keys);
		OPENSSL_cleanse(*scp, sizeof(**scp));
	}
	free(*scp);
	*scp = NULL;
}

int px_sasl_authenticated(const struct px_sasl_conn *sc)
{
	return sc->authed;
}

const char *px_sasl_principal(const struct px_sasl_conn *sc)
{
	return sc->principal;
}

int px_sasl_terminates(const struct px_sasl_conn *sc)
{
	return sc->c->mode == PX_SASL_TERMINATE;
}

void px_sasl_timed_out(struct px_sasl_conn *sc)
{
	CNT(sc->s, pre[PRE_TIMEOUT], 1);
}

static void why(struct px_sasl_res *res, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void why(struct px_sasl_res *res, int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->why, sizeof(res->why), fmt, ap);
	va_end(ap);
	res->level = level;
}

/* A user name as a log shows it: printable ASCII, others as '?'. */
static void shown(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	for (; *in && o + 1 < cap; in++)
		out[o++] = (*in >= 0x20 && *in < 0x7f) ? *in : '?';
	out[o] = 0;
}

int px_sasl_wants_frame(const struct px_sasl_conn *sc, const struct kd_frame_info *fi)
{
	if (!sc->authed && fi->size > sc->c->max_frame)
		return 0; /* refused on its header alone */
	if (fi->kind == KD_EV_OPAQUE)
		return 1;
	if (fi->kind != KD_EV_REQUEST)
		return 0;
	/* SaslAuthenticate for its token; SaslHandshake when kwire answers it
	 * (an answered frame is consumed whole) */
	return fi->req_hdr.api_key == KD_API_SASL_AUTHENTICATE ||
	       (fi->req_hdr.api_key == KD_API_SASL_HANDSHAKE && sc->c->mode == PX_SASL_TERMINATE);
}

static const char *const *mech_list(const struct px_sasl_conn *sc, const char **buf)
{
	static const int order[] = {KD_SASL_MECH_PLAIN, KD_SASL_MECH_SCRAM_SHA_256,
	                            KD_SASL_MECH_SCRAM_SHA_512, KD_SASL_MECH_OAUTHBEARER};
	int n = 0;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (sc->s->mechs & MECH_BIT(order[i]))
			buf[n++] = kd_sasl_mech_name(order[i]);
	buf[n] = NULL;
	return buf;
}

/* The result of one step of a mechanism (terminate). */
enum { STEP_MORE, STEP_DONE, STEP_FAIL, STEP_OAUTH_ERR };

struct step {
	uint8_t tok[512]; /* the server's token */
	size_t len;
	char msg[200];  /* STEP_FAIL: the client's ErrorMessage */
	int64_t exp_ms; /* STEP_DONE: when the credential ends (wall ms), 0 never */
};

static void set_principal(struct px_sasl_conn *sc, char *dst, const char *user)
{
	(void)sc;
	snprintf(dst, PX_PRINCIPAL_MAX, "User:%s", user);
}

static int step_plain(struct px_sasl_conn *sc, const uint8_t *tok, size_t len, struct step *st,
                      struct px_sasl_res *res)
{
	struct kd_plain pl;
	char user[KD_SASL_USER_MAX + 1], shown_user[64];
	const struct px_cred_user *u;

	snprintf(st->msg, sizeof(st->msg), "Authentication failed: Invalid username or password");
	if (kd_plain_parse(tok, len, &pl) || pl.authcid.len > KD_SASL_USER_MAX ||
	    memchr(pl.authcid.p, 0, pl.authcid.len)) {
		why(res, 2, "SASL PLAIN: malformed client token");
		return STEP_FAIL;
	}
	memcpy(user, pl.authcid.p, pl.authcid.len);
	user[pl.authcid.len] = 0;
	shown(user, shown_user, sizeof(shown_user));
	if (pl.authzid.len && (pl.authzid.len != pl.authcid.len ||
	                       memcmp(pl.authzid.p, pl.authcid.p, pl.authcid.len))) {
		snprintf(st->msg, sizeof(st->msg),
		         "Authentication failed: Client requested an authorization id that is "
		         "different from username");
		why(res, 2, "SASL PLAIN: user '%s' asked for another authorization id", shown_user);
		return STEP_FAIL;
	}
	u = px_creds_find(&sc->keys->creds, user, pl.authcid.len);
	int h = u && u->have[PX_SCRAM_256] ? PX_SCRAM_256 : PX_SCRAM_512;
	if (!u || !u->have[h] ||
	    !px_scram_check_password(h, &u->c[h], (const char *)pl.passwd.p, pl.passwd.len)) {
		why(res, 2, "SASL PLAIN: authentication of user '%s' failed: %s", shown_user,
		    u ? "wrong password" : "unknown user");
		return STEP_FAIL;
	}
	set_principal(sc, sc->cand, user);
	st->len = 0;
	return STEP_DONE;
}

static int step_scram(struct px_sasl_conn *sc, const uint8_t *tok, size_t len, struct step *st,
                      struct px_sasl_res *res)
{
	const char *mname = kd_sasl_mech_name(sc->mech);
	int hash = sc->mech == KD_SASL_MECH_SCRAM_SHA_512 ? PX_SCRAM_512 : PX_SCRAM_256;
	size_t hl = px_scram_hlen(hash);
	char user[KD_SASL_USER_MAX + 1], shown_user[64];

	snprintf(st->msg, sizeof(st->msg),
	         "Authentication failed during authentication due to invalid credentials with "
	         "SASL mechanism %s",
	         mname);
	if (sc->step == 0) {
		struct kd_scram_first f;
		uint8_t rnd[18];
		char rb64[32], salt64[128];
		int rc = kd_scram_first_parse(tok, len, &f);
		if (rc) {
			why(res, 2, "SASL %s: malformed client-first message", mname);
			return STEP_FAIL;
		}
		if (kd_saslname_decode(f.user.p, f.user.len, user, sizeof(user)) < 0) {
			why(res, 2, "SASL %s: bad user name in the client-first message", mname);
			return STEP_FAIL;
		}
		shown(user, shown_user, sizeof(shown_user));
		if (f.cbind == 'p') {
			why(res, 2,
			    "SASL %s: user '%s' asks for channel binding, which kwire does "
			    "not offer",
			    mname, shown_user);
			return STEP_FAIL;
		}
		if (f.tokenauth) {
			why(res, 2,
			    "SASL %s: user '%s' presents a delegation token (KIP-48), which "
			    "kwire does not support",
			    mname, shown_user);
			return STEP_FAIL;
		}
		if (f.authzid.len) {
			char az[KD_SASL_USER_MAX + 1];
			if (kd_saslname_decode(f.authzid.p, f.authzid.len, az, sizeof(az)) < 0 ||
			    strcmp(az, user)) {
				snprintf(
				    st->msg, sizeof(st->msg),
				    "Authentication failed: Client requested an authorization id "
				    "that is different from username");
				why(res, 2, "SASL %s: user '%s' asked for another authorization id",
				    mname, shown_user);
				return STEP_FAIL;
			}
		}
		const struct px_cred_user *u = px_creds_find(&sc->keys->creds, user, strlen(user));
		if (!u || !u->have[hash]) {
			why(res, 2, "SASL %s: authentication of user '%s' failed: %s", mname,
			    shown_user, u ? "no credentials for this mechanism" : "unknown user");
			return STEP_FAIL;
		}
		if (f.bare.len >= sizeof(sc->bare) || f.gs2.len >= sizeof(sc->gs2) ||
		    f.nonce.len + 32 >= sizeof(sc->nonce)) {
			why(res, 2, "SASL %s: client-first message too long", mname);
			return STEP_FAIL;
		}
		sc->user = u;
		sc->hash = hash;
		memcpy(sc->gs2, f.gs2.p, f.gs2.len);
		sc->gs2[f.gs2.len] = 0;
		memcpy(sc->bare, f.bare.p, f.bare.len);
		sc->bare_len = f.bare.len;
		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			why(res, 1, "SASL %s: no random bytes (OpenSSL)", mname);
			return STEP_FAIL;
		}
		kd_b64_encode(rnd, sizeof(rnd), rb64, sizeof(rb64));
		snprintf(sc->nonce, sizeof(sc->nonce), "%.*s%s", (int)f.nonce.len,
		         (const char *)f.nonce.p, rb64);
		kd_b64_encode(u->c[hash].salt, u->c[hash].salt_len, salt64, sizeof(salt64));
		int n = snprintf(sc->server_first, sizeof(sc->server_first), "r=%s,s=%s,i=%u",
		                 sc->nonce, salt64, u->c[hash].iterations);
		if (n < 0 || (size_t)n >= sizeof(st->tok))
			return STEP_FAIL;
		memcpy(st->tok, sc->server_first, (size_t)n);
		st->len = (size_t)n;
		set_principal(sc, sc->cand, user);
		return STEP_MORE;
	}
	/* client-final */
	struct kd_scram_final f;
	const struct px_scram_cred *cred = &sc->user->c[sc->hash];
	char cb[128];
	uint8_t proof[PX_SCRAM_KEY_MAX], sig[PX_SCRAM_KEY_MAX], key[PX_SCRAM_KEY_MAX],
	    stored[PX_SCRAM_KEY_MAX];
	shown(sc->user->name, shown_user, sizeof(shown_user));
	if (kd_scram_final_parse(tok, len, &f)) {
		why(res, 2, "SASL %s: malformed client-final message from user '%s'", mname,
		    shown_user);
		return STEP_FAIL;
	}
	kd_b64_encode((const uint8_t *)sc->gs2, strlen(sc->gs2), cb, sizeof(cb));
	/* The nonce must end with the server's (Kafka's ScramSaslServer checks
	 * endsWith: librdkafka 2.0.2 sends the client nonce before the whole
	 * combined nonce, and Kafka accepts it). */
	size_t nl = strlen(sc->nonce);
	if (f.cbind.len != strlen(cb) || memcmp(f.cbind.p, cb, f.cbind.len) || f.nonce.len < nl ||
	    memcmp(f.nonce.p + f.nonce.len - nl, sc->nonce, nl)) {
		why(res, 2, "SASL %s: user '%s': channel binding or nonce does not match", mname,
		    shown_user);
		return STEP_FAIL;
	}
	if (kd_b64_decode(f.proof.p, f.proof.len, proof, sizeof(proof), 0) != (long)hl) {
		why(res, 2, "SASL %s: user '%s': malformed proof", mname, shown_user);
		return STEP_FAIL;
	}
	/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
	size_t sfl = strlen(sc->server_first);
	size_t al = sc->bare_len + 1 + sfl + 1 + f.without_proof.len;
	uint8_t *am = malloc(al);
	int ok = 0;
	if (am) {
		memcpy(am, sc->bare, sc->bare_len);
		am[sc->bare_len] = ',';
		memcpy(am + sc->bare_len + 1, sc->server_first, sfl);
		am[sc->bare_len + 1 + sfl] = ',';
		memcpy(am + sc->bare_len + 2 + sfl, f.without_proof.p, f.without_proof.len);
		if (px_scram_hmac(hash, cred->stored_key, hl, am, al, sig) == 0) {
			for (size_t i = 0; i < hl; i++)
				key[i] = proof[i] ^ sig[i];
			ok = px_scram_h(hash, key, hl, stored) == 0 &&
			     CRYPTO_memcmp(stored, cred->stored_key, hl) == 0;
		}
		if (ok) {
			uint8_t ssig[PX_SCRAM_KEY_MAX];
			char v[160];
			ok = px_scram_hmac(hash, cred->server_key, hl, am, al, ssig) == 0;
			kd_b64_encode(ssig, hl, v, sizeof(v));
			st->len = (size_t)snprintf((char *)st->tok, sizeof(st->tok), "v=%s", v);
		}
		free(am);
	}
	OPENSSL_cleanse(key, sizeof(key));
	if (!ok) {
		why(res, 2, "SASL %s: authentication of user '%s' failed: wrong password", mname,
		    shown_user);
		return STEP_FAIL;
	}
	return STEP_DONE;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int step_oauth(struct px_sasl_conn *sc, const uint8_t *tok, size_t len, struct step *st,
                      struct px_sasl_res *res)
{
	struct kd_oauth o;
	struct px_jwt_claims cl;
	char whyv[160], shown_user[64];

	snprintf(st->msg, sizeof(st->msg), "Authentication failed: invalid token");
	if (kd_oauth_parse(tok, len, &o)) {
		why(res, 2, "SASL OAUTHBEARER: malformed client message");
		return STEP_FAIL;
	}
	if (o.is_ack) {
		if (!sc->oauth_fail) {
			why(res, 2, "SASL OAUTHBEARER: unexpected lone kvsep from the client");
			return STEP_FAIL;
		}
		snprintf(st->msg, sizeof(st->msg), "Authentication failed: %s", sc->fail_why);
		why(res, 2, "SASL OAUTHBEARER: token refused: %s", sc->fail_why);
		return STEP_FAIL;
	}
	if (!sc->keys->jwks ||
	    px_jwt_verify(sc->keys->jwks, o.token.p, o.token.len, wall_ms() / 1000,
	                  sc->c->jwt_issuer, sc->c->jwt_audience, &cl, whyv, sizeof(whyv))) {
		snprintf(sc->fail_why, sizeof(sc->fail_why), "%s",
		         sc->keys->jwks ? whyv : "no keys");
		goto error;
	}
	if (o.authzid.len &&
	    (o.authzid.len != strlen(cl.sub) || memcmp(o.authzid.p, cl.sub, o.authzid.len))) {
		snprintf(sc->fail_why, sizeof(sc->fail_why),
		         "the authorization id is not the token's subject");
		goto error;
	}
	shown(cl.sub, shown_user, sizeof(shown_user));
	(void)shown_user;
	set_principal(sc, sc->cand, cl.sub);
	st->exp_ms = cl.exp * 1000;
	st->len = 0;
	return STEP_DONE;
error:
	/* RFC 7628 3.2.2: an error message; the client answers with a kvsep
	 * and the server then fails the exchange (OAuthBearerSaslServer). */
	sc->oauth_fail = 1;
	st->len =
	    (size_t)snprintf((char *)st->tok, sizeof(st->tok), "{\"status\":\"invalid_token\"}");
	return STEP_OAUTH_ERR;
}

static int mech_step(struct px_sasl_conn *sc, const uint8_t *tok, size_t len, struct step *st,
                     struct px_sasl_res *res)
{
	switch (sc->mech) {
	case KD_SASL_MECH_PLAIN:
		return step_plain(sc, tok, len, st, res);
	case KD_SASL_MECH_SCRAM_SHA_256:
	case KD_SASL_MECH_SCRAM_SHA_512:
		return step_scram(sc, tok, len, st, res);
	case KD_SASL_MECH_OAUTHBEARER:
		return step_oauth(sc, tok, len, st, res);
	}
	why(res, 2, "SASL: no mechanism");
	return STEP_FAIL;
}

/* After STEP_DONE: the principal counts; the session's lifetime (KIP-368:
 * sasl_session_lifetime_ms, shortened to the credential's end when a
 * lifetime is set, as Kafka's connections.max.reauth.ms). Returns the
 * lifetime in ms (0 none), or -1 when a re-authentication changed the
 * principal. */
static int64_t authenticated(struct px_sasl_conn *sc, const struct step *st, uint64_t now_us,
                             struct px_sasl_res *res)
{
	int64_t life = sc->c->session_lifetime_ms;
	char shown_p[80];
	shown(sc->cand, shown_p, sizeof(shown_p));
	if (sc->authed && strcmp(sc->cand, sc->principal)) {
		why(res, 2,
		    "SASL %s: re-authentication as %s, not the connection's principal: "
		    "refused (KIP-368)",
		    kd_sasl_mech_name(sc->mech), shown_p);
		return -1;
	}
	if (life && st->exp_ms) {
		int64_t left = st->exp_ms - wall_ms();
		if (left < life)
			life = left > 1 ? left : 1;
	}
	if (sc->authed)
		CNT(sc->s, reauths, 1);
	why(res, 3, "SASL %s: %sauthenticated %s%s", kd_sasl_mech_name(sc->mech),
	    sc->authed ? "re-" : "", shown_p, life ? " (session lifetime set)" : "");
	sc->authed = 1;
	memcpy(sc->principal, sc->cand, sizeof(sc->principal));
	sc->expiry_us = life ? now_us + (uint64_t)life * 1000 : 0;
	sc->hs_done = 0;
	sc->oauth_fail = 0;
	sc->user = NULL;
	keys_put(&sc->keys);
	CNT(sc->s, auths[sc->mech & 7][RES_OK], 1);
	return life;
}

static int failed(struct px_sasl_conn *sc)
{
	CNT(sc->s, auths[sc->mech & 7][RES_FAIL], 1);
	sc->hs_done = 0;
	sc->user = NULL;
	keys_put(&sc->keys);
	return 0;
}

/* ---- terminate ---- */

static int t_handshake(struct px_sasl_conn *sc, const struct kd_frame_info *fi,
                       struct px_sasl_res *res)
{
	const char *list[8];
	int16_t ver = fi->req_hdr.api_version;
	int32_t corr = fi->req_hdr.correlation_id;
	int mech = fi->sasl_mech;

	mech_list(sc, list);
	if (ver > 1) {
		why(res, 2, "SASL: SaslHandshake v%d, which kwire does not offer: closing", ver);
		CNT(sc->s, pre[PRE_STATE], !sc->authed);
		return PX_SA_CLOSE;
	}
	if (sc->hs_done || (sc->authed && ver == 0)) {
		kd_saslhs_resp_write(&res->answer, corr, KD_ERR_ILLEGAL_SASL_STATE, list);
		why(res, 2, "SASL: SaslHandshake v%d %s: closing", ver,
		    sc->hs_done ? "in the middle of an exchange"
		                : "v0 cannot re-authenticate (KIP-368)");
		CNT(sc->s, pre[PRE_STATE], !sc->authed);
		return PX_SA_ANSWER_CLOSE;
	}
	if (!(sc->s->mechs & MECH_BIT(mech)) || (sc->authed && mech != sc->mech)) {
		kd_saslhs_resp_write(&res->answer, corr, KD_ERR_UNSUPPORTED_SASL_MECHANISM, list);
		why(res, 2, "SASL: the client asks for mechanism %s, %s: closing",
		    mech == KD_SASL_MECH_OTHER ? "(another)" : kd_sasl_mech_name(mech),
		    sc->authed ? "not the one it authenticated with" : "which is not enabled");
		CNT(sc->s, auths[mech & 7][RES_FAIL], 1);
		return PX_SA_ANSWER_CLOSE;
	}
	kd_saslhs_resp_write(&res->answer, corr, 0, list);
	if (!sc->keys)
		sc->keys = keys_get(sc->s);
	sc->hs_done = 1;
	sc->hs_ver = (uint8_t)ver;
	sc->mech = (uint8_t)mech;
	sc->step = 0;
	sc->oauth_fail = 0;
	if (ver == 0) {
		res->v0 = 1;
		res->v0_mech = mech;
	}
	return PX_SA_ANSWER;
}

/* One client token (SaslAuthenticate's AuthBytes, or a v0 frame). */
static int t_token(struct px_sasl_conn *sc, const uint8_t *tok, size_t len, int v0, int16_t ver,
                   int32_t corr, uint64_t now_us, struct px_sasl_res *res)
{
	struct step st;
	memset(&st, 0, sizeof(st));
	int r = mech_step(sc, tok, len, &st, res);
	sc->step++;
	if (r == STEP_FAIL) {
		failed(sc);
		if (v0)
			return PX_SA_CLOSE; /* Kafka closes a v0 exchange without a word */
		kd_saslauth_resp_write(&res->answer, ver, corr, KD_ERR_SASL_AUTHENTICATION_FAILED,
		                       st.msg, NULL, 0, 0);
		return PX_SA_ANSWER_CLOSE;
	}
	int64_t life = 0;
	if (r == STEP_DONE) {
		life = authenticated(sc, &st, now_us, res);
		if (life < 0) {
			failed(sc);
			if (v0)
				return PX_SA_CLOSE;
			kd_saslauth_resp_write(
			    &res->answer, ver, corr, KD_ERR_SASL_AUTHENTICATION_FAILED,
			    "Cannot change principals during re-authentication", NULL, 0, 0);
			return PX_SA_ANSWER_CLOSE;
		}
		if (v0)
			res->v0 = -1;
	}
	if (v0)
		kd_sasl_token_write(&res->answer, st.tok, st.len);
	else
		kd_saslauth_resp_write(&res->answer, ver, corr, 0, NULL, st.tok, st.len, life);
	return PX_SA_ANSWER;
}

static int terminate(struct px_sasl_conn *sc, const struct kd_frame_info *fi, const uint8_t *frame,
                     size_t len, uint64_t now_us, struct px_sasl_res *res)
{
	if (fi->kind == KD_EV_OPAQUE) {
		if (!sc->hs_done || sc->hs_ver != 0) {
			why(res, 2, "SASL: a token outside an exchange: closing");
			return PX_SA_CLOSE;
		}
		return t_token(sc, frame + 4, len - 4, 1, 0, 0, now_us, res);
	}
	int16_t key = fi->req_hdr.api_key, ver = fi->req_hdr.api_version;
	int32_t corr = fi->req_hdr.correlation_id;
	if (key == KD_API_SASL_HANDSHAKE)
		return t_handshake(sc, fi, res);
	/* SaslAuthenticate */
	struct kd_view auth;
	const uint8_t *body = frame + 4 + fi->req_hdr.len;
	if (ver > 2) {
		why(res, 2, "SASL: SaslAuthenticate v%d, which kwire does not offer: closing", ver);
		return PX_SA_CLOSE;
	}
	if (!sc->hs_done || sc->hs_ver == 0) {
		kd_saslauth_resp_write(&res->answer, ver, corr, KD_ERR_ILLEGAL_SASL_STATE,
		                       "SaslAuthenticate without a SaslHandshake v1 before it",
		                       NULL, 0, 0);
		why(res, 2, "SASL: SaslAuthenticate without a SaslHandshake v1: closing");
		CNT(sc->s, pre[PRE_STATE], !sc->authed);
		return PX_SA_ANSWER_CLOSE;
	}
	if (kd_saslauth_req_read(ver, body, len - 4 - fi->req_hdr.len, &auth)) {
		why(res, 2, "SASL: SaslAuthenticate request does not decode: closing");
		return PX_SA_CLOSE;
	}
	return t_token(sc, auth.p, auth.len, 0, ver, corr, now_us, res);
}

/* ---- passthrough ---- */

static void pt_candidate(struct px_sasl_conn *sc, const uint8_t *tok, size_t len)
{
	char user[KD_SASL_USER_MAX + 1];
	int mech = sc->mech;
	if (sc->step++ != 0)
		return;
	sc->cand[0] = 0;
	if (kd_sasl_user(mech ? mech : KD_SASL_MECH_NONE, tok, len, user, sizeof(user)))
		set_principal(sc, sc->cand, user);
}

int px_sasl_client_frame(struct px_sasl_conn *sc, const struct kd_frame_info *fi,
                         const uint8_t *frame, size_t len, uint64_t now_us, struct px_sasl_res *res)
{
	res->answer.len = 0;
	res->v0 = 0;
	res->level = 0;
	res->why[0] = 0;
	if (!sc->authed && fi->size > sc->c->max_frame) {
		why(res, 1,
		    "SASL: a frame of %" PRIu32 " bytes before authentication (limit %" PRIu32
		    ", sasl_max_frame_bytes): closing",
		    fi->size, sc->c->max_frame);
		CNT(sc->s, pre[PRE_FRAME], 1);
		return PX_SA_CLOSE;
	}
	int sasl = fi->kind == KD_EV_OPAQUE ||
	           (fi->kind == KD_EV_REQUEST && (fi->req_hdr.api_key == KD_API_SASL_HANDSHAKE ||
	                                          fi->req_hdr.api_key == KD_API_SASL_AUTHENTICATE));
	if (sasl && sc->c->mode == PX_SASL_TERMINATE)
		return terminate(sc, fi, frame, len, now_us, res);
	if (sasl) {
		/* passthrough: the broker answers; remember what the exchange names */
		if (fi->kind == KD_EV_OPAQUE) {
			if (!sc->mech)
				sc->mech = fi->sasl_mech;
			pt_candidate(sc, frame + 4, len - 4);
		} else if (fi->req_hdr.api_key == KD_API_SASL_HANDSHAKE) {
			sc->mech = fi->sasl_mech;
			sc->hs_ver = (uint8_t)fi->req_hdr.api_version;
			sc->step = 0;
			sc->pt_ok = 1;
			sc->pt_exch = 1;
		} else {
			struct kd_view auth;
			if (frame && kd_saslauth_req_read(
			                 fi->req_hdr.api_version, frame + 4 + fi->req_hdr.len,
			                 len - 4 - fi->req_hdr.len, &auth) == KD_OK)
				pt_candidate(sc, auth.p, auth.len);
		}
		return PX_SA_FORWARD;
	}
	if (fi->kind == KD_EV_REQUEST && fi->req_hdr.api_key == KD_API_API_VERSIONS)
		return PX_SA_FORWARD;
	if (!sc->authed && sc->c->mode == PX_SASL_PASSTHROUGH && sc->pt_exch && sc->pt_ok &&
	    sc->step) {
		/* A mechanism whose end kwire cannot see (GSSAPI): the broker
		 * answered every token without error and the client goes on. */
		sc->authed = 1;
		sc->pt_exch = 0;
		memcpy(sc->principal, sc->cand, sizeof(sc->principal));
		CNT(sc->s, auths[sc->mech & 7][RES_OK], 1);
	}
	if (!sc->authed) {
		const char *name = kd_api_name(fi->req_hdr.api_key);
		why(res, 1,
		    "SASL: %s request before authentication: closing (only ApiVersions, "
		    "SaslHandshake and SaslAuthenticate may come first)",
		    name ? name : "an unknown");
		CNT(sc->s, pre[PRE_REQUEST], 1);
		return PX_SA_CLOSE;
	}
	if (sc->expiry_us && now_us >= sc->expiry_us) {
		char shown_p[80];
		shown(sc->principal, shown_p, sizeof(shown_p));
		why(res, 2,
		    "SASL: the session of %s ended %" PRIu64 " ms ago without "
		    "re-authentication: closing (KIP-368)",
		    shown_p, (now_us - sc->expiry_us) / 1000);
		CNT(sc->s, expired, 1);
		return PX_SA_CLOSE;
	}
	return PX_SA_FORWARD;
}

int px_sasl_wants_server_frame(const struct px_sasl_conn *sc, const struct kd_frame_info *fi)
{
	if (sc->c->mode != PX_SASL_PASSTHROUGH || sc->authed)
		return 0;
	if (fi->kind == KD_EV_OPAQUE)
		return 1;
	return fi->kind == KD_EV_RESPONSE && (fi->req.api_key == KD_API_SASL_AUTHENTICATE ||
	                                      fi->req.api_key == KD_API_SASL_HANDSHAKE);
}

int px_sasl_server_frame(struct px_sasl_conn *sc, const struct kd_frame_info *fi,
                         const uint8_t *frame, size_t len)
{
	struct kd_view tok = {NULL, 0, 0};
	int done = 0;

	if (sc->c->mode != PX_SASL_PASSTHROUGH || sc->authed)
		return 0;
	if (fi->kind == KD_EV_OPAQUE) {
		tok.p = frame + 4;
		tok.len = (uint32_t)(len - 4);
		/* the stream saw the v0 exchange end with this token */
		done = (fi->flags & KD_EVF_SASL_END) != 0;
	} else {
		struct kd_resp_hdr rh;
		int hl = kd_resp_hdr_parse(frame + 4, len - 4, fi->req.api_key, fi->req.api_version,
		                           &rh);
		if (hl <= 0)
			return 0;
		const uint8_t *body = frame + 4 + hl;
		size_t blen = len - 4 - (size_t)hl;
		if (fi->req.api_key == KD_API_SASL_HANDSHAKE) {
			int16_t err = 0;
			if (kd_saslhs_resp_read(body, blen, &err) || err) {
				sc->pt_ok = 0;
				failed(sc);
			}
			return 0;
		}
		struct kd_saslauth_resp ar;
		if (kd_saslauth_resp_read(fi->req.api_version, body, blen, &ar) || ar.error) {
			sc->pt_ok = 0;
			failed(sc);
			return 0;
		}
		tok = ar.auth;
		switch (sc->mech) {
		case KD_SASL_MECH_PLAIN:
			done = 1;
			break;
		case KD_SASL_MECH_SCRAM_SHA_256:
		case KD_SASL_MECH_SCRAM_SHA_512:
			done = tok.len >= 2 && tok.p[0] == 'v' && tok.p[1] == '=';
			break;
		case KD_SASL_MECH_OAUTHBEARER:
			done = tok.len == 0;
			break;
		default:
			done = 0; /* GSSAPI and others: the client's next request tells */
		}
	}
	if (!done)
		return 0;
	if (sc->mech == KD_SASL_MECH_SCRAM_SHA_256 || sc->mech == KD_SASL_MECH_SCRAM_SHA_512)
		if (!(tok.len >= 2 && tok.p[0] == 'v' && tok.p[1] == '='))
			return 0; /* "e=...": failed; the broker closes */
	sc->authed = 1;
	sc->pt_exch = 0;
	memcpy(sc->principal, sc->cand, sizeof(sc->principal));
	CNT(sc->s, auths[sc->mech & 7][RES_OK], 1);
	return 1;
}

/* ---- kwire authenticating to the broker ---- */

enum { UP_HS = 0, UP_AUTH1, UP_AUTH2, UP_DONE };

struct px_sasl_up {
	struct px_sasl *s;
	const struct px_sasl_conf *c;
	int state;
	int hash;
	int64_t lifetime_ms; /* the broker's SessionLifetimeMs (KIP-368), 0 none */
	char cnonce[40];
	char first_bare[PX_SASL_NAME_MAX * 3 + 64];
	uint8_t server_sig[PX_SCRAM_KEY_MAX];
};

struct px_sasl_up *px_sasl_up_new(struct px_sasl *s, const struct px_sasl_conf *c)
{
	if (!c->up_mech)
		return NULL;
	struct px_sasl_up *u = calloc(1, sizeof(*u));
	if (u) {
		u->s = s;
		u->c = c;
		u->hash = c->up_mech == KD_SASL_MECH_SCRAM_SHA_512 ? PX_SCRAM_512 : PX_SCRAM_256;
	}
	return u;
}

void px_sasl_up_free(struct px_sasl_up **u)
{
	if (*u)
		OPENSSL_cleanse(*u, sizeof(**u));
	free(*u);
	*u = NULL;
}

int64_t px_sasl_up_lifetime(const struct px_sasl_up *u)
{
	return u->lifetime_ms;
}

void px_sasl_up_reauthenticated(struct px_sasl *s)
{
	CNT(s, up_reauths, 1);
}

void px_sasl_up_start(struct px_sasl_up *u, struct kd_wbuf *out)
{
	kd_saslhs_req_write(out, 1, kd_sasl_mech_name(u->c->up_mech));
	u->state = UP_HS;
}

/* saslname encoding of the user for SCRAM ("," -> "=2C", "=" -> "=3D"). */
static void saslname(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	for (; *in && o + 4 < cap; in++) {
		if (*in == ',') {
			memcpy(out + o, "=2C", 3);
			o += 3;
		} else if (*in == '=') {
			memcpy(out + o, "=3D", 3);
			o += 3;
		} else {
			out[o++] = *in;
		}
	}
	out[o] = 0;
}

static int up_first_token(struct px_sasl_up *u, struct kd_wbuf *out)
{
	const char *user = u->c->up_user, *pw = u->c->up_password;
	if (u->c->up_mech == KD_SASL_MECH_PLAIN) {
		size_t ul = strlen(user), pl = strlen(pw);
		uint8_t *tok = malloc(ul + pl + 2);
		if (!tok)
			return -1;
		tok[0] = 0;
		memcpy(tok + 1, user, ul);
		tok[1 + ul] = 0;
		memcpy(tok + 2 + ul, pw, pl);
		kd_saslauth_req_write(out, 2, tok, ul + pl + 2);
		OPENSSL_cleanse(tok, ul + pl + 2);
		free(tok);
		return 0;
	}
	uint8_t rnd[24];
	char name[PX_SASL_NAME_MAX * 3 + 1], msg[sizeof(u->first_bare) + 8];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -1;
	kd_b64_encode(rnd, sizeof(rnd), u->cnonce, sizeof(u->cnonce));
	saslname(user, name, sizeof(name));
	snprintf(u->first_bare, sizeof(u->first_bare), "n=%s,r=%s", name, u->cnonce);
	int n = snprintf(msg, sizeof(msg), "n,,%s", u->first_bare);
	kd_saslauth_req_write(out, 2, (const uint8_t *)msg, (size_t)n);
	return 0;
}

/* SaltedPassword for the broker's salt and iterations, from the cache. */
static int up_salted(struct px_sasl_up *u, const uint8_t *salt, size_t slen, uint32_t iters,
                     uint8_t *out)
{
	struct px_sasl *s = u->s;
	size_t hl = px_scram_hlen(u->hash);
	int hit;
	pthread_mutex_lock(&s->mu);
	hit = s->cache_hash == u->hash && s->cache_iter == iters && s->cache_salt_len == slen &&
	      !memcmp(s->cache_salt, salt, slen);
	if (hit)
		memcpy(out, s->cache_salted, hl);
	pthread_mutex_unlock(&s->mu);
	if (hit)
		return 0;
	if (px_scram_salted(u->hash, u->c->up_password, strlen(u->c->up_password), salt, slen,
	                    iters, out))
		return -1;
	pthread_mutex_lock(&s->mu);
	s->cache_hash = u->hash;
	s->cache_iter = iters;
	s->cache_salt_len = slen;
	memcpy(s->cache_salt, salt, slen);
	memcpy(s->cache_salted, out, hl);
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int up_final(struct px_sasl_up *u, const struct kd_view *sf, struct kd_wbuf *out, char *whyb,
                    size_t whylen)
{
	struct kd_scram_server srv;
	uint8_t salt[PX_SCRAM_SALT_MAX], salted[PX_SCRAM_KEY_MAX], ck[PX_SCRAM_KEY_MAX],
	    stored[PX_SCRAM_KEY_MAX], sig[PX_SCRAM_KEY_MAX], sk[PX_SCRAM_KEY_MAX];
	size_t hl = px_scram_hlen(u->hash), cl = strlen(u->cnonce);
	char without[512], proof64[128], msg[700];
	int rc = -1;

	if (kd_scram_server_parse(sf->p, sf->len, &srv) || srv.error.len || srv.nonce.len < cl ||
	    memcmp(srv.nonce.p, u->cnonce, cl) || srv.nonce.len > 200 || srv.iterations < 1 ||
	    srv.iterations > PX_SCRAM_ITER_MAX) {
		snprintf(whyb, whylen, "the broker's SCRAM server-first message is not usable");
		return -1;
	}
	long sl = kd_b64_decode(srv.salt.p, srv.salt.len, salt, sizeof(salt), 0);
	if (sl <= 0) {
		snprintf(whyb, whylen, "the broker's SCRAM salt is not base64");
		return -1;
	}
	int wl = snprintf(without, sizeof(without), "c=biws,r=%.*s", (int)srv.nonce.len,
	                  (const char *)srv.nonce.p);
	size_t al = strlen(u->first_bare) + 1 + sf->len + 1 + (size_t)wl;
	uint8_t *am = malloc(al);
	if (!am)
		return -1;
	size_t o = 0;
	memcpy(am, u->first_bare, strlen(u->first_bare));
	o += strlen(u->first_bare);
	am[o++] = ',';
	memcpy(am + o, sf->p, sf->len);
	o += sf->len;
	am[o++] = ',';
	memcpy(am + o, without, (size_t)wl);
	if (up_salted(u, salt, (size_t)sl, (uint32_t)srv.iterations, salted) ||
	    px_scram_hmac(u->hash, salted, hl, (const uint8_t *)"Client Key", 10, ck) ||
	    px_scram_h(u->hash, ck, hl, stored) ||
	    px_scram_hmac(u->hash, stored, hl, am, al, sig) ||
	    px_scram_hmac(u->hash, salted, hl, (const uint8_t *)"Server Key", 10, sk) ||
	    px_scram_hmac(u->hash, sk, hl, am, al, u->server_sig)) {
		snprintf(whyb, whylen, "SCRAM computation failed (OpenSSL)");
		goto out;
	}
	for (size_t i = 0; i < hl; i++)
		ck[i] ^= sig[i];
	kd_b64_encode(ck, hl, proof64, sizeof(proof64));
	int n = snprintf(msg, sizeof(msg), "%s,p=%s", without, proof64);
	kd_saslauth_req_write(out, 3, (const uint8_t *)msg, (size_t)n);
	OPENSSL_cleanse(msg, sizeof(msg));
	rc = 0;
out:
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(ck, sizeof(ck));
	free(am);
	return rc;
}

int px_sasl_up_feed(struct px_sasl_up *u, struct evbuffer *in, struct kd_wbuf *out, char *whyb,
                    size_t whylen)
{
	whyb[0] = 0;
	for (;;) {
		uint8_t hdr[4];
		if (evbuffer_copyout(in, hdr, 4) < 4)
			return 0;
		uint32_t size = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
		                (uint32_t)hdr[2] << 8 | hdr[3];
		if (size > 65536 || size < 4) {
			snprintf(whyb, whylen,
			         "the broker's answer to kwire's SASL request is not a "
			         "SASL response (%" PRIu32 " bytes)",
			         size);
			CNT(u->s, up_auths[RES_FAIL], 1);
			return -1;
		}
		if (evbuffer_get_length(in) < 4 + (size_t)size)
			return 0;
		const uint8_t *p = evbuffer_pullup(in, 4 + (ev_ssize_t)size);
		if (!p)
			return -1;
		const uint8_t *body = p + 8; /* response header v0: the correlation id */
		size_t blen = size - 4;
		int rc = 0;
		if (u->state == UP_HS) {
			int16_t err = 0;
			if (kd_saslhs_resp_read(body, blen, &err) || err) {
				snprintf(whyb, whylen,
				         "the broker refused SASL mechanism %s (error %d)",
				         kd_sasl_mech_name(u->c->up_mech), err);
				rc = -1;
			} else if (up_first_token(u, out)) {
				rc = -1;
				snprintf(whyb, whylen, "out of memory");
			} else {
				u->state = UP_AUTH1;
			}
		} else {
			struct kd_saslauth_resp ar;
			if (kd_saslauth_resp_read(1, body, blen, &ar)) {
				snprintf(whyb, whylen,
				         "the broker's SaslAuthenticate answer does not "
				         "decode");
				rc = -1;
			} else if (ar.error) {
				snprintf(whyb, whylen,
				         "the broker refused kwire's credentials (user '%s', %s): "
				         "error %d%s%.*s",
				         u->c->up_user, kd_sasl_mech_name(u->c->up_mech), ar.error,
				         ar.message.len ? ": " : "",
				         (int)(ar.message.len > 160 ? 160 : ar.message.len),
				         ar.message.p ? (const char *)ar.message.p : "");
				rc = -1;
			} else if (u->state == UP_AUTH1 && u->c->up_mech != KD_SASL_MECH_PLAIN) {
				rc = up_final(u, &ar.auth, out, whyb, whylen);
				u->state = UP_AUTH2;
			} else {
				if (u->state == UP_AUTH2) {
					struct kd_scram_server srv;
					uint8_t v[PX_SCRAM_KEY_MAX];
					size_t hl = px_scram_hlen(u->hash);
					if (kd_scram_server_parse(ar.auth.p, ar.auth.len, &srv) ||
					    kd_b64_decode(srv.verifier.p, srv.verifier.len, v,
					                  sizeof(v), 0) != (long)hl ||
					    CRYPTO_memcmp(v, u->server_sig, hl)) {
						snprintf(
						    whyb, whylen,
						    "the broker's SCRAM server signature is wrong "
						    "(not the broker kwire has credentials for?)");
						rc = -1;
					}
				}
				if (!rc) {
					u->lifetime_ms = ar.lifetime_ms > 0 ? ar.lifetime_ms : 0;
					u->state = UP_DONE;
					rc = 1;
				}
			}
		}
		evbuffer_drain(in, 4 + (size_t)size);
		if (rc) {
			CNT(u->s, up_auths[rc > 0 ? RES_OK : RES_FAIL], 1);
			return rc;
		}
	}
}
