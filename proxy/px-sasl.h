/* px-sasl.h: SASL in the proxy (docs/security.md).
 *
 *   passthrough  the broker authenticates; kwire reads the user a client
 *                token names (kd_sasl_user) and makes it the connection's
 *                principal once the broker's answer says the exchange
 *                succeeded.
 *   terminate    kwire authenticates clients itself (PLAIN and SCRAM
 *                against a `kwire passwd` credentials file, OAUTHBEARER
 *                against a JWKS file) and answers SaslHandshake,
 *                SaslAuthenticate and SASL v0 tokens; the cluster sees
 *                kwire's own identity (upstream_sasl_*, or none).
 *
 * In both modes a client that has not authenticated may only send
 * ApiVersions, SaslHandshake and SaslAuthenticate, in frames of at most
 * sasl_max_frame_bytes, and must authenticate within
 * sasl_handshake_timeout_ms; a session (KIP-368) that ended closes the
 * connection at its next request other than a re-authentication.
 *
 * The data path (px-conn.c) asks px_sasl_client_frame() what to do with
 * each client frame and tells px_sasl_server_frame() the broker's SASL
 * answers; everything SASL lives here. No secret is ever logged: log
 * lines name the mechanism, the user and the reason only. */
#ifndef PX_SASL_H
#define PX_SASL_H

#include <stdint.h>
#include <stdio.h>

#include "kd-cur.h"
#include "kd-stream-t.h"
#include "px-sasl-t.h"
#include "px-t.h"

struct px_sasl;      /* proxy-wide: credentials, keys, counters */
struct px_sasl_conn; /* one client connection's SASL state */
struct px_sasl_up;   /* kwire authenticating one upstream connection */
struct evbuffer;

/* ---- configuration (px-conf.c calls these) ---- */

void px_sasl_conf_init(struct px_sasl_conf *c);
/* Sets key (sasl, sasl_mechanisms, upstream_sasl_mechanism, and the flags'
 * names) from val; append adds to sasl_mechanisms. 0, or -1 with err. */
int px_sasl_conf_set(struct px_sasl_conf *c, const char *key, const char *val, int append,
                     char *err, size_t errlen);
int px_sasl_conf_check(const struct px_sasl_conf *c, char *err, size_t errlen);
/* The settings as YAML; the upstream password as [redacted]. */
void px_sasl_conf_dump(const struct px_sasl_conf *c, FILE *f);
/* The mechanisms kwire offers (the configured ones or the default). */
unsigned px_sasl_mechs(const struct px_sasl_conf *c);

/* ---- proxy-wide state ---- */

/* Loads the credentials and JWKS files the configuration names. NULL with
 * err on a bad file; a configuration with SASL off gives an empty state. */
struct px_sasl *px_sasl_new(const struct px_sasl_conf *c, char *err, size_t errlen);
void px_sasl_free(struct px_sasl **s);
/* Reads the credentials and JWKS files again (SIGHUP): 1 when the new ones
 * are in force (exchanges under way finish with the old ones), 0 when
 * kwire does not terminate SASL, -1 with err when a file is bad (the old
 * ones stay). */
int px_sasl_reload(struct px_sasl *s, char *err, size_t errlen);
/* Prometheus text: authentications, refusals before authentication,
 * re-authentications, expired sessions, kwire's upstream authentications
 * (requests per principal are px-admin.c's). */
void px_sasl_metrics(struct px_sasl *s, struct kd_wbuf *w);

/* ---- one client connection ---- */

struct px_sasl_conn *px_sasl_conn_new(struct px_sasl *s, const struct px_sasl_conf *c);
void px_sasl_conn_free(struct px_sasl_conn **sc);

enum px_sasl_act {
	PX_SA_FORWARD = 0,  /* forward the frame */
	PX_SA_ANSWER,       /* kwire answers: res.answer, in request order */
	PX_SA_ANSWER_CLOSE, /* answer, then close once it is written (a failed authentication) */
	PX_SA_CLOSE,        /* close now (res.why) */
};

struct px_sasl_res {
	struct kd_wbuf answer; /* PX_SA_ANSWER*: a whole frame; reused, freed by the caller */
	int v0;                /* 1: the client's next frames are SASL v0 tokens of v0_mech;
	                        * -1: the v0 exchange is over (kd_stream_sasl_v0) */
	int v0_mech;
	int level;     /* log level of why (0 none) */
	char why[320]; /* a log line: never a secret */
};

/* Whether px_sasl_client_frame needs fi's whole frame. */
int px_sasl_wants_frame(const struct px_sasl_conn *sc, const struct kd_frame_info *fi);
/* What to do with the client frame fi (frame: the whole frame when
 * px_sasl_wants_frame said so, else NULL). now_us: monotonic. */
int px_sasl_client_frame(struct px_sasl_conn *sc, const struct kd_frame_info *fi,
                         const uint8_t *frame, size_t len, uint64_t now_us,
                         struct px_sasl_res *res);
/* Whether the broker's frame fi (a response or a v0 token, before commit)
 * is one px_sasl_server_frame wants whole. */
int px_sasl_wants_server_frame(const struct px_sasl_conn *sc, const struct kd_frame_info *fi);
/* The broker's SASL answer (passthrough), after commit (fi->flags tell a
 * v0 exchange's end). Returns 1 when the connection became authenticated. */
int px_sasl_server_frame(struct px_sasl_conn *sc, const struct kd_frame_info *fi,
                         const uint8_t *frame, size_t len);
/* Whether the client has authenticated; its principal ("User:name", ""
 * when the mechanism names none, e.g. GSSAPI passthrough). */
int px_sasl_authenticated(const struct px_sasl_conn *sc);
const char *px_sasl_principal(const struct px_sasl_conn *sc);
/* Whether kwire answers SASL itself: ApiVersions answers must then list
 * SaslHandshake and SaslAuthenticate (px_clamp_apiversions). */
int px_sasl_terminates(const struct px_sasl_conn *sc);
/* The handshake timeout fired: counts it. */
void px_sasl_timed_out(struct px_sasl_conn *sc);

/* ---- kwire authenticating to the broker (upstream_sasl_*) ---- */

/* NULL when no upstream mechanism is configured (or out of memory: err). */
struct px_sasl_up *px_sasl_up_new(struct px_sasl *s, const struct px_sasl_conf *c);
void px_sasl_up_free(struct px_sasl_up **u);
/* The first request, appended to out. */
void px_sasl_up_start(struct px_sasl_up *u, struct kd_wbuf *out);
/* After success: the session lifetime the broker gave (KIP-368), 0 none. */
int64_t px_sasl_up_lifetime(const struct px_sasl_up *u);
/* Counts one re-authentication of an upstream connection. */
void px_sasl_up_reauthenticated(struct px_sasl *s);
/* Reads the broker's answers from in: 1 authenticated, 0 more to come
 * (the next request, if any, appended to out), -1 refused (why). */
int px_sasl_up_feed(struct px_sasl_up *u, struct evbuffer *in, struct kd_wbuf *out, char *why,
                    size_t whylen);

#endif
