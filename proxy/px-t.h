/* px-t.h: the types of kwire's transparent proxy (`kwire proxy`).
 *
 * Everything here is shared between the proxy core (px-conf.c,
 * px-listen.c, px-conn.c, px-rewrite.c) and the parts built on it (the
 * access log px-log*.c, the admin endpoint px-admin*.c, `kwire demo`).
 * Prototypes are in px.h.
 *
 * Threads: one acceptor thread (the caller of px_run) owns every listening
 * socket; N worker threads each run one libevent loop and own the client
 * and upstream connections handed to them. Hooks (struct px_hooks) are
 * called on worker threads, concurrently: they must be thread-safe and must
 * not block. */
#ifndef PX_T_H
#define PX_T_H

#include <stddef.h>
#include <stdint.h>

#include "kd-t.h"
#include "px-sasl-t.h"

/* Fixed sizes. PX_HOST_MAX bounds host names (DNS names are at most 253). */
#define PX_HOST_MAX 256
#define PX_API_MAX 128 /* counters cover API keys 0..PX_API_MAX-1 */
#define PX_VER_MAX 32  /* ... and versions 0..PX_VER_MAX-1 */
#define PX_UPSTREAM_MAX 64
#define PX_BROKER_MAX 1024   /* brokers (node ids) a proxy can map */
#define PX_PRINCIPAL_MAX 264 /* a connection's principal ("User:" and 255 bytes), NUL included */

struct px;      /* the proxy: opaque, see px.h */
struct px_conn; /* one client connection and its upstream: private to px-conn.c */

/* A host and a port, e.g. an upstream bootstrap address. */
struct px_hostport {
	char host[PX_HOST_MAX];
	uint16_t port;
};

/* One row of the explicit broker_ports map: the proxy port for a node id. */
struct px_broker_port {
	int32_t node_id;
	uint16_t port;
};

enum px_log_format {
	PX_LOGF_TEXT = 0,
	PX_LOGF_JSON = 1,
};

/* The proxy's configuration. px_conf_init() fills the defaults; the YAML
 * file (px_conf_load) and the command line then override fields. Strings
 * are fixed arrays or heap copies owned by the struct: px_conf_free()
 * releases them. See docs/proxy.md for the meaning of every field; the
 * YAML key is given after each one. */
struct px_conf {
	/* listen: [HOST:]PORT of the bootstrap listener. Port 0 binds an
	 * ephemeral port (tests); then broker listeners are ephemeral too. */
	struct px_hostport listen;
	/* upstream: the real cluster's bootstrap addresses, tried in order. */
	struct px_hostport upstreams[PX_UPSTREAM_MAX];
	unsigned nupstreams;
	/* advertise: the host clients are told in rewritten responses.
	 * Empty: the listen host, or "localhost" when it is a wildcard. */
	char advertise[PX_HOST_MAX];
	/* broker_port_base: broker node N listens on base + N. 0 (default):
	 * the bootstrap listen port + 1. */
	uint16_t broker_port_base;
	/* broker_ports: explicit node id -> port map; wins over the rule. */
	struct px_broker_port *broker_ports;
	unsigned nbroker_ports;
	/* max_brokers: brokers (node ids) of the cluster that get a proxy
	 * listener; further ones are told port 0. 1..PX_BROKER_MAX-1. */
	unsigned max_brokers;
	/* broker_grace_ms: a broker that Metadata responses stop listing
	 * keeps its listener this long, then it is closed (its connections
	 * stay). */
	unsigned broker_grace_ms;
	/* workers: event-loop threads; 0 = one per online CPU. */
	unsigned workers;
	/* max_frame_bytes: a frame (either direction) larger than this
	 * closes the connection. Default 100 MiB (Kafka's
	 * socket.request.max.bytes is 100 MiB). */
	uint32_t max_frame;
	/* buffer_bytes: per connection and direction, the bytes buffered
	 * before the reading side is paused (watermark). Default 1 MiB; a
	 * frame bigger than this is still forwarded, just streamed. */
	size_t buffer_bytes;
	/* max_inflight: requests awaiting a response per connection; more
	 * pauses reading from the client. Default 1024. */
	unsigned max_inflight;
	/* connect_timeout_ms, idle_timeout_ms (0 = none), drain_timeout_ms. */
	unsigned connect_timeout_ms;
	unsigned idle_timeout_ms;
	unsigned drain_timeout_ms;
	/* clamp_api_versions: intersect ApiVersions with kwire's tables. */
	int clamp_api_versions;
	/* rewrite: rewrite broker addresses (turning it off exposes the
	 * real brokers; only for debugging). */
	int rewrite;
	/* access_log (path, "-" = stdout, NULL = off), access_log_format,
	 * admin (HOST:PORT of the admin/metrics endpoint, empty = off): read
	 * by px-log*.c and px-admin*.c, parsed here so one file holds all. */
	char *access_log;
	enum px_log_format access_log_format;
	/* rules: the rules file (docs/rules.md), NULL = none. Reloaded on
	 * SIGHUP and when it changes. */
	char *rules;
	/* tap: a pcapng file of what kwire forwards (px-tap.h), NULL = off;
	 * rotated once it would exceed tap_max_bytes (0 = never), keeping
	 * tap_files files; tap_buffer_bytes bounds what waits for the disk. */
	char *tap;
	uint64_t tap_max_bytes;
	unsigned tap_files;
	size_t tap_buffer_bytes;
	/* audit_log: JSON-lines file of the audit's refusals and throttles,
	 * and of audit rules without `to:` (px-audit.h); NULL = none. */
	char *audit_log;
	struct px_hostport admin;
	/* log_level: 0 errors, 1 warnings, 2 info (default), 3 debug. */
	int log_level;
	/* TLS (px-tls.c, docs/security.md). Heap strings, NULL = unset.
	 * Listeners: tls_cert (PEM; may hold the chain), tls_key, tls_chain
	 * (more intermediates), tls_client_ca (a CA bundle: client
	 * certificates are verified against it), tls_client_auth (enum
	 * px_tls_auth; PX_TLS_AUTH_DEFAULT: required when tls_client_ca is
	 * set), tls_principal_rules (Kafka's ssl.principal.mapping.rules
	 * syntax), tls_principal_source (enum px_tls_source). */
	char *tls_cert, *tls_key, *tls_chain, *tls_client_ca, *tls_principal_rules;
	int tls_client_auth;
	int tls_principal_source;
	/* tls_ktls: kernel TLS for transmit (SSL_OP_ENABLE_KTLS), both sides. */
	int tls_ktls;
	/* Towards the brokers: upstream_tls on/off, upstream_tls_ca (NULL: the
	 * system's CAs), upstream_tls_cert/key (a client certificate),
	 * upstream_tls_verify (certificate and host name; default on),
	 * upstream_tls_server_name (the name sent as SNI and checked; NULL:
	 * the host connected to). */
	int upstream_tls;
	char *upstream_tls_ca, *upstream_tls_cert, *upstream_tls_key, *upstream_tls_server_name;
	int upstream_tls_verify;
	/* sni_hosts: one port for the whole cluster: broker N is advertised
	 * as this pattern with {id} replaced by N, on sni_port (default: the
	 * listen port), and TLS clients are routed by the server name they
	 * ask for. NULL: a port per broker. */
	char *sni_hosts;
	uint16_t sni_port;
	/* sasl, sasl_*, upstream_sasl_*: SASL passthrough or termination
	 * (px-sasl-t.h, docs/security.md). */
	struct px_sasl_conf sasl;
};

enum px_tls_auth {
	PX_TLS_AUTH_DEFAULT = -1,
	PX_TLS_AUTH_NONE = 0,
	PX_TLS_AUTH_REQUESTED = 1,
	PX_TLS_AUTH_REQUIRED = 2,
};

enum px_tls_source {
	PX_TLS_SOURCE_DN = 0,  /* the subject DN, RFC 2253 ("CN=alice,O=Example") */
	PX_TLS_SOURCE_SAN = 1, /* the first DNS, URI or email subjectAltName */
};

/* ---- what the proxy tells the outside ---- */

/* One request/response pair, handed to px_hooks.on_pair after the
 * response has been forwarded (or, for Produce acks=0, after the request).
 * Everything it points to lives only for the duration of the call. */
struct px_pair {
	int16_t api_key; /* -1: a SASL v0 opaque token (no Kafka header) */
	int16_t api_version;
	int32_t correlation_id;
	struct kd_view client_id;  /* from the request header (may be null) */
	int32_t broker_id;         /* upstream node id, -1 on a bootstrap link */
	const char *client_addr;   /* "ip:port" of the client */
	const char *upstream_addr; /* "host:port" of the broker */
	const char *principal;     /* "User:alice" (mTLS or SASL), NULL: none yet */
	uint64_t t_req_us;         /* wall clock (us since epoch) of the request */
	uint64_t latency_us;       /* request read -> response fully read */
	uint32_t req_size;         /* frame sizes, without the 4-byte prefix */
	uint32_t resp_size;        /* 0 when no response (acks=0, or lost) */
	uint8_t no_response;       /* 1: acks=0 Produce, or connection lost */
	uint8_t rewritten;         /* 1: the response was rewritten by kwire */
	uint8_t sasl_mech;         /* api_key -1: the SASL v0 exchange's mechanism (kd-sasl.h) */
	/* Raw frames (4-byte size prefix included) when px_hooks.want_frames
	 * asked for them; truncated to frame_copy_max (then *_trunc = 1), and
	 * request copies to 4 KiB while more than 8 requests are in flight on
	 * the connection (bounded memory). The response is the frame as the
	 * broker sent it, before any rewrite. NULL otherwise. */
	const uint8_t *req_frame;
	size_t req_frame_len;
	uint8_t req_trunc;
	const uint8_t *resp_frame;
	size_t resp_frame_len;
	uint8_t resp_trunc;
};

enum px_want {
	PX_WANT_REQ = 1,  /* copy request frames for on_pair */
	PX_WANT_RESP = 2, /* copy response frames for on_pair */
};

/* Callbacks; any may be NULL. Set with px_set_hooks() before px_start(). */
struct px_hooks {
	/* Every pair; on a worker thread, concurrently. Must not block. */
	void (*on_pair)(void *arg, const struct px_pair *pair);
	/* SIGHUP: reopen the log file. On the acceptor thread. */
	void (*on_reopen)(void *arg);
	/* The proxy's own log lines (level as px_conf.log_level). Default:
	 * stderr. May be called from any thread. */
	void (*on_log)(void *arg, int level, const char *msg);
	void *arg;
	unsigned want_frames;    /* enum px_want bits */
	uint32_t frame_copy_max; /* 0: 64 KiB; at most max(buffer_bytes, 128 KiB) */
};

/* Counters for one (api key, version). */
struct px_api_stats {
	uint64_t requests;
	uint64_t responses;
	uint64_t errors; /* requests lost with their connection, plus px_count_error() */
};

/* A snapshot of the proxy's global counters (px_stats_get). */
struct px_stats {
	uint64_t bytes_in_client;    /* bytes read from clients */
	uint64_t bytes_out_client;   /* bytes written to clients */
	uint64_t bytes_in_upstream;  /* bytes read from brokers */
	uint64_t bytes_out_upstream; /* bytes written to brokers */
	uint64_t conns_accepted;
	uint64_t conns_active;
	uint64_t upstream_connect_failures;
	uint64_t decode_errors;    /* bad frames/headers from either side */
	uint64_t decode_warnings;  /* frames forwarded with a tolerated oddity
	                            * (bytes after a complete body) */
	uint64_t frames_too_large; /* over max_frame_bytes */
	uint64_t responses_rewritten;
	uint64_t apiversions_clamped;
	uint64_t accept_errors; /* failed accept() calls (EMFILE...): each pauses accepting */
	/* Responses to no request in flight: each closed its connection. */
	uint64_t unpaired_responses;
	/* Responses forwarded with bytes after their body (kept as sent). */
	uint64_t trailing_bytes;
	/* Flow control, over all connections since start. High-water marks:
	 * requests in flight on one connection, bytes queued to one client,
	 * bytes of one response held back while it is edited. Pauses: a
	 * client not read because max_inflight requests were in flight or
	 * its broker's output held buffer_bytes; a broker not read because
	 * its client's output held buffer_bytes. */
	uint64_t inflight_max;
	uint64_t client_out_max;
	uint64_t edit_held_max;
	uint64_t pauses_inflight;
	uint64_t pauses_client_buffer;
	uint64_t pauses_upstream;
	/* Rules (px_conf.rules): requests kwire answered itself, split, dropped
	 * (refused acks=0 Produce), and connections closed for a refused
	 * request whose body does not decode. */
	uint64_t rules_answered, rules_split, rules_dropped, rules_closed, rules_filtered;
	/* `rewrite:` on records: requests and responses rewritten, records
	 * changed, passed unchanged (on_error: pass), partitions refused. */
	uint64_t rw_requests, rw_responses, rw_records, rw_passed, rw_refused;
};

/* TLS counters (px_tls_stats_get): client handshakes done and failed,
 * broker handshakes failed, clients on the wrong listener (TLS on a
 * plaintext one, plaintext Kafka on a TLS one, neither), clients refused
 * for want of a principal, certificate reloads and failed reloads,
 * connections that handed transmit to kernel TLS. */
struct px_tls_stats {
	uint64_t handshakes, handshake_failures, upstream_failures;
	uint64_t tls_on_plain, plain_on_tls, not_tls, no_principal;
	uint64_t reloads, reload_failures;
	uint64_t ktls_tx;
};

/* One row of the broker -> proxy port map (px_broker_map). */
struct px_broker_ent {
	int32_t node_id;
	char host[PX_HOST_MAX]; /* the broker's real address */
	uint16_t port;
	uint16_t proxy_port; /* the port clients are told; 0 if none yet */
	uint8_t listening;   /* 1: the proxy listener is open */
};

/* Rewriting (px-rewrite.c). The callback maps a real broker address to
 * the one clients must be told; it returns 0, or -1 to leave the
 * address untouched (e.g. no port available). */
typedef int (*px_addr_map_fn)(void *arg, int32_t node_id, const struct kd_view *host, int32_t port,
                              char out_host[PX_HOST_MAX], int32_t *out_port);

#endif
