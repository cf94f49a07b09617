/* px-sasl-t.h: SASL settings of the proxy (docs/security.md), part of
 * struct px_conf (px-t.h). Fixed arrays only, so that copying the
 * configuration copies them. */
#ifndef PX_SASL_T_H
#define PX_SASL_T_H

#include <stdint.h>

#define PX_PATH_MAX 1024
#define PX_SASL_NAME_MAX 256

enum px_sasl_mode {
	PX_SASL_OFF = 0,     /* SASL frames pass as they are; no principal */
	PX_SASL_PASSTHROUGH, /* the broker authenticates; kwire reads the principal */
	PX_SASL_TERMINATE,   /* kwire authenticates clients itself */
};

struct px_sasl_conf {
	int mode;       /* sasl: enum px_sasl_mode */
	unsigned mechs; /* sasl_mechanisms: bits 1 << enum kd_sasl_mech; 0: the default */
	char credentials[PX_PATH_MAX];       /* sasl_credentials: `kwire passwd` file */
	char jwks[PX_PATH_MAX];              /* sasl_jwks: keys for OAUTHBEARER tokens */
	char jwt_issuer[PX_SASL_NAME_MAX];   /* sasl_jwt_issuer: "iss" required, "" any */
	char jwt_audience[PX_SASL_NAME_MAX]; /* sasl_jwt_audience: in "aud", "" any */
	unsigned session_lifetime_ms;        /* sasl_session_lifetime_ms (KIP-368), 0 none */
	unsigned handshake_timeout_ms;       /* sasl_handshake_timeout_ms */
	uint32_t max_frame;                  /* sasl_max_frame_bytes: frames before auth */
	int up_mech;                        /* upstream_sasl_mechanism: enum kd_sasl_mech, 0 none */
	char up_user[PX_SASL_NAME_MAX];     /* upstream_sasl_username */
	char up_password[PX_SASL_NAME_MAX]; /* upstream_sasl_password (never printed) */
};

#endif
