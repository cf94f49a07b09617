/* px.h: kwire's transparent Kafka proxy. Types in px-t.h.
 *
 * Typical embedding (cli/cmd-proxy.c, cli/cmd-demo.c):
 *
 *	struct px_conf conf;
 *	px_conf_init(&conf);
 *	px_conf_load(&conf, "kwire.yaml", err, sizeof(err));  (optional)
 *	... flags override conf fields ...
 *	px_conf_check(&conf, err, sizeof(err));
 *	struct px *px = px_new(&conf, err, sizeof(err));       (copies conf)
 *	px_set_hooks(px, &hooks);                              (optional)
 *	px_start(px, err, sizeof(err));    binds, starts threads, returns
 *	... SIGHUP -> px_reopen(px); SIGTERM -> px_stop(px) ...
 *	px_wait(px);                       returns once drained and stopped
 *	px_free(&px);
 *	px_conf_free(&conf);
 *
 * Functions returning int return 0 on success and -1 on error, with a
 * message in err (always NUL-terminated) unless said otherwise. */
#ifndef PX_H
#define PX_H

#include <stdio.h>

#include "kd-cur.h"
#include "px-t.h"

/* ---- configuration (px-conf.c) ---- */

/* Fills the defaults; conf need not be initialised. */
void px_conf_init(struct px_conf *conf);
/* Releases the heap parts; conf is then as after px_conf_init(). */
void px_conf_free(struct px_conf *conf);
/* A deep copy of src into dst (dst need not be initialised). */
int px_conf_copy(struct px_conf *dst, const struct px_conf *src);
/* Loads a YAML file over conf. An unknown key or a wrong type is an error
 * "FILE:LINE:COL: ..." (1-based). Keys are described in docs/proxy.md. */
int px_conf_load(struct px_conf *conf, const char *path, char *err, size_t errlen);
/* The same from memory; name is used in messages. */
int px_conf_load_mem(struct px_conf *conf, const char *yaml, size_t len, const char *name,
                     char *err, size_t errlen);
/* Parses "[HOST:]PORT", "HOST:PORT" or "[v6]:PORT". need_host: a bare
 * port is an error. */
int px_hostport_parse(const char *s, int need_host, struct px_hostport *hp, char *err,
                      size_t errlen);
/* Replaces the upstream list with a comma-separated "HOST:PORT,...". */
int px_conf_set_upstreams(struct px_conf *conf, const char *list, char *err, size_t errlen);
/* Adds or replaces one broker_ports row. */
int px_conf_set_broker_port(struct px_conf *conf, int32_t node_id, uint16_t port, char *err,
                            size_t errlen);
/* Validates a finished config (an upstream present, sane limits). */
int px_conf_check(const struct px_conf *conf, char *err, size_t errlen);
/* The proxy port of a node id under conf's rule, given the bound bootstrap
 * port: the broker_ports row, else base + node_id (base = broker_port_base
 * or listen port + 1). Returns 0 when no port fits (negative id, > 65535,
 * or bootstrap port 0, which means "ephemeral"). */
uint16_t px_conf_broker_port(const struct px_conf *conf, uint16_t bound_listen_port,
                             int32_t node_id);
/* TLS settings (px-tls.c): checks that they fit together (a key with
 * the certificate, sni_hosts holding {id}, ...), and that the principal
 * mapping rules parse (one rule per line, or Kafka's comma-separated
 * string); writes them as YAML. */
int px_tls_conf_check(const struct px_conf *conf, char *err, size_t errlen);
int px_tls_rules_check(const char *rules, char *err, size_t errlen);
void px_tls_conf_dump(const struct px_conf *conf, FILE *f);
/* Writes the effective config as YAML (for --print-config and docs). */
void px_conf_dump(const struct px_conf *conf, FILE *f);

/* ---- lifecycle (px-listen.c) ---- */

/* A proxy for conf (deep-copied). NULL on error. */
struct px *px_new(const struct px_conf *conf, char *err, size_t errlen);
/* Hooks are copied; call before px_start(). */
void px_set_hooks(struct px *px, const struct px_hooks *hooks);
/* Binds the bootstrap listener, starts the worker threads and the
 * acceptor thread, and returns. Thread-safe users should block SIGPIPE;
 * px_start ignores SIGPIPE for the process. */
int px_start(struct px *px, char *err, size_t errlen);
/* Starts draining: stop accepting, close idle connections, let in-flight
 * requests finish for at most drain_timeout_ms, then stop. Thread-safe and
 * idempotent; returns at once. Not async-signal-safe: call it from a
 * thread that sigwait()s (as cmd-proxy.c does). */
void px_stop(struct px *px);
/* Stops at once (a second SIGTERM during a drain): like px_stop, then
 * every connection is closed now, as when drain_timeout_ms runs out.
 * Thread-safe; returns at once. */
void px_stop_now(struct px *px);
/* Blocks until the proxy has stopped (after px_stop). */
void px_wait(struct px *px);
/* Waits at most ms milliseconds; returns 1 once stopped, else 0. */
int px_wait_ms(struct px *px, unsigned ms);
/* Calls hooks.on_reopen (SIGHUP). */
void px_reopen(struct px *px);
/* Stops if needed, joins the threads and frees everything; *px = NULL. */
void px_free(struct px **px);

/* The rules in force (px-rules.h), or NULL without a rules file. px_reopen
 * (SIGHUP) reloads them too. */
struct px_rules;
struct px_rules *px_rules_of(const struct px *px);
/* The tap (px_conf.tap, px-tap.h), or NULL. */
struct px_tap;
struct px_tap *px_tap_of(const struct px *px);
/* The audit trail (px-audit.h), or NULL without rules and audit_log. */
struct px_audit;
struct px_audit *px_audit_of(const struct px *px);
/* The proxy's SASL state (px-sasl.h): credentials, keys, counters. */
struct px_sasl *px_sasl_of(const struct px *px);
/* The mirror (px-mirror.h), or NULL without a rules file. */
struct px_mirror;
struct px_mirror *px_mirror_of(const struct px *px);
/* The files of tap: rules (px-tap.h), or NULL without a rules file. */
struct px_tapreg;
struct px_tapreg *px_tapreg_of(const struct px *px);
/* The quotas' rates and metrics (px-quota.h), or NULL without a rules file. */
struct px_quota;
struct px_quota *px_quota_of(const struct px *px);

/* The bound bootstrap port (useful with listen port 0). */
uint16_t px_listen_port(const struct px *px);
/* The proxy's (copied) configuration. */
const struct px_conf *px_conf_get(const struct px *px);

/* ---- what the admin endpoint and access log read ---- */

void px_stats_get(const struct px *px, struct px_stats *out);
/* Counters of one (key, version); zeros outside the covered range. */
void px_api_stats_get(const struct px *px, int16_t key, int16_t version, struct px_api_stats *out);
/* Counts an error response for (key, version), e.g. from the access log
 * after it decoded a non-zero ErrorCode. Thread-safe. */
void px_count_error(struct px *px, int16_t key, int16_t version);
/* The TLS counters (zeros without TLS, but tls_on_plain). Thread-safe. */
void px_tls_stats_get(const struct px *px, struct px_tls_stats *out);
/* Fills up to max rows of the broker -> proxy port map; returns the number
 * of rows that exist (may exceed max). Thread-safe. */
unsigned px_broker_map(const struct px *px, struct px_broker_ent *out, unsigned max);
/* The proxy's topic id -> name map (kd-topics.h): one per proxy, shared
 * by every connection and thread, never NULL after px_new(). Learn from a
 * response frame with kd_topics_learn_frame(); look up with
 * kd_topics_get(), which takes no lock. */
struct kd_topics *px_topics(const struct px *px);
/* Logs through hooks.on_log (or stderr) when level <= conf.log_level. */
void px_log(const struct px *px, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- response rewriting (px-rewrite.c); no I/O, usable alone ---- */

/* 1 when responses of (key, version) carry broker addresses kwire
 * rewrites (Metadata, FindCoordinator, DescribeCluster, Produce v10+,
 * Fetch v16+), else 0. */
int px_rewrite_wanted(int16_t key, int16_t version);
/* Rewrites every broker address in one response frame (4-byte size prefix
 * included) of (key, version) through map. Returns 1 and the whole new
 * frame (size fixed) appended to out, 0 when nothing changed (out
 * untouched), or a negative KD_E* when the frame cannot be decoded. Bytes
 * after the body's fields are kept byte for byte. */
int px_rewrite_response(int16_t key, int16_t version, const uint8_t *frame, size_t len,
                        px_addr_map_fn map, void *arg, struct kd_wbuf *out);
/* The same for a response streamed in parts (docs/proxy.md, "Memory").
 * px_rewrite_prefix: frame is the response's first bytes (its INT32 size,
 * header, and body) up to where its top-level field next starts
 * (kd-walk.h finds it; Metadata: "Topics"); out gets the rewritten
 * prefix, its size field changed by the prefix's change in length, to be
 * followed by the rest of the response unchanged. px_rewrite_tail: tail
 * is the response's top-level tagged section, exactly (Produce v10+,
 * Fetch v16+: NodeEndpoints); out gets the rewritten section, and the
 * caller fixes the frame size. Same returns as px_rewrite_response. */
int px_rewrite_prefix(int16_t key, int16_t version, const uint8_t *frame, size_t len,
                      const char *next, px_addr_map_fn map, void *arg, struct kd_wbuf *out);
int px_rewrite_tail(int16_t key, int16_t version, const uint8_t *tail, size_t len,
                    px_addr_map_fn map, void *arg, struct kd_wbuf *out);
/* Where the fields of a response body (len bytes, after the header) of
 * (key, version) end, by the skip-only walk: len, or less when bytes
 * follow the fields (kept as they came by the rewrites above). */
size_t px_body_fields_end(int16_t key, int16_t version, const uint8_t *body, size_t len);
/* Intersects each ApiKeys range of an ApiVersions response frame (any
 * version) with kwire's schema tables (validVersions); keys kwire does not
 * know pass through. Same returns as px_rewrite_response; an error answer
 * (ErrorCode != 0) that decodes in no known layout returns 0, an
 * undecodable success answer a negative KD_E*. */
int px_clamp_apiversions(int16_t version, const uint8_t *frame, size_t len, struct kd_wbuf *out);
/* The same with a choice: clamp (as above) and/or sasl (list SaslHandshake
 * v0-1 and SaslAuthenticate v0-2, which kwire answers when it terminates
 * SASL, docs/security.md). Same return values. */
int px_edit_apiversions(int16_t version, const uint8_t *frame, size_t len, int clamp, int sasl,
                        struct kd_wbuf *out);

#endif
