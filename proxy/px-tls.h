/* px-tls.h: TLS for the proxy (px-tls.c), on both sides, behind struct
 * px_transport (px-int.h): OpenSSL 3 through libevent's bufferevent_openssl.
 *
 *   client --TLS (tls_cert, mTLS: tls_client_ca)--> kwire --TLS (upstream_tls)--> broker
 *
 * Either side may be plain; the data path sees only bufferevents. What
 * TLS adds around it:
 *   - a pre-TLS peek on TLS listeners (before the bufferevent exists): a
 *     plaintext Kafka client is recognised and refused with a clear line,
 *     and the server name (SNI) routes the connection to its broker when
 *     sni_hosts is set (one port for the whole cluster);
 *   - the client's principal from its certificate (subject DN or SAN,
 *     through Kafka-style mapping rules), set once the handshake is done;
 *   - certificate reload (SIGHUP, or a changed file) for new connections.
 * Docs: docs/security.md. */
#ifndef PX_TLS_H
#define PX_TLS_H

#include "px-int.h"

struct px_tls;

/* Builds the TLS state of px from its conf into *out: NULL when neither
 * side uses TLS. Returns 0, or -1 with a message (a certificate that
 * does not load, a key that does not match). */
int px_tls_new(struct px *px, struct px_tls **out, char *err, size_t errlen);
void px_tls_free(struct px_tls **tls);
/* The transport to use (both sides; plain ones are plain TCP). */
const struct px_transport *px_tls_transport(struct px_tls *tls);
/* Starts watching the certificate files (on the acceptor base, polled
 * once a second). */
int px_tls_watch(struct px_tls *tls, struct event_base *base);
/* Reloads the certificates now (SIGHUP): new connections get the new
 * ones; a file that does not load keeps the old and logs why. */
void px_tls_reload(struct px_tls *tls);

/* Whether accepted sockets go through px_tls_peek (TLS listeners). */
int px_tls_peeks(const struct px_tls *tls);
/* Takes over a handed-off socket on worker wk: waits for the client's
 * first bytes without reading them (MSG_PEEK), then either refuses the
 * connection (not TLS) or hands it to px_conn_new, its broker chosen by
 * SNI when sni_hosts is set. */
void px_tls_peek(struct px_worker *wk, const struct px_handoff *ho);
/* Closes the sockets of wk still being peeked at (drain, stop). */
void px_tls_peek_close_all(struct px_worker *wk);

/* The advertised name of broker node_id under sni_hosts, and its port. */
void px_tls_sni_name(const struct px *px, int32_t node_id, char out[PX_HOST_MAX]);

/* The node id a server name asks for under pattern ("b{id}.example.com";
 * case-insensitive), or -1 (the bootstrap). Exposed for tests and fuzzing. */
int32_t px_tls_sni_node(const char *pattern, const uint8_t *name, size_t len);

/* Principal mapping (Kafka's ssl.principal.mapping.rules): rules holds
 * one rule per line, or Kafka's comma-separated form. Maps name (a DN or
 * a SAN) to out. Returns the length written, or -1 when no rule applies
 * (Kafka then refuses the client), or -2 when the rules do not parse. */
int px_tls_map_name(const char *rules, const char *name, char *out, size_t cap);

/* A TLS client on a plaintext listener was recognised (px-conn.c). */
void px_tls_count_tls_on_plain(struct px *px);

#endif
