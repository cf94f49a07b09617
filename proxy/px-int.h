/* px-int.h: the proxy core's private structures, shared by px-listen.c
 * (listeners, threads, broker map, counters) and px-conn.c (the data
 * path). Nothing outside proxy/px-{listen,conn,rewrite}.c includes it. */
#ifndef PX_INT_H
#define PX_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "kd-topics.h"
#include "px-audit.h"
#include "px-judge.h"
#include "px-names.h"
#include "px-rules.h"
#include "px-sasl.h"
#include "px.h"

/* The transport under a connection: plain TCP now, TLS later. The data
 * path only ever sees the bufferevents these return. */
struct px_transport {
	const char *name;
	/* A bufferevent over an accepted client socket (takes fd). */
	struct bufferevent *(*accepted)(void *ctx, struct event_base *base, evutil_socket_t fd);
	/* A bufferevent connecting to host:port; connection completion comes as
	 * BEV_EVENT_CONNECTED. NULL on immediate failure. */
	struct bufferevent *(*connect)(void *ctx, struct event_base *base, struct evdns_base *dns,
	                               const char *host, uint16_t port);
	/* Called from a read callback: moves up to max more bytes that are
	 * already waiting on bev's connection into its input, without
	 * blocking. Returns the bytes added. It exists because libevent 2.1's
	 * bufferevent reads at most 4 KiB per readiness event
	 * (EVBUFFER_MAX_READ in buffer.c), which made every 4 KiB of a large
	 * response cost a loop iteration and 5-6 system calls. EOF and errors
	 * are left to the bufferevent's next read, which reports them. A
	 * transport that cannot do this (TLS) may return 0. */
	size_t (*read_more)(void *ctx, struct bufferevent *bev, size_t max);
	/* Writes up to max bytes from the front of src (draining them)
	 * straight to bev's connection, as far as it takes them now; only
	 * when bev's own output is empty, so that order is kept. Returns the
	 * bytes written; 0 on EAGAIN or an error, which the bufferevent then
	 * meets and reports when the rest goes through its output. This saves
	 * the loop iteration and the two epoll_ctl calls per hop that going
	 * through the output costs. A transport may always return 0. */
	size_t (*write_now)(void *ctx, struct bufferevent *bev, struct evbuffer *src, size_t max);
	/* After an error or EOF on bev: what the transport knows of why (a
	 * TLS alert, a refused certificate), into buf; NULL when nothing.
	 * connected: whether bev had finished connecting (its handshake). */
	const char *(*describe)(void *ctx, struct bufferevent *bev, int connected, char *buf,
	                        size_t len);
	/* Once a client's connection is established (BEV_EVENT_CONNECTED: its
	 * TLS handshake is done): the principal its credentials give, into out.
	 * Returns its length, 0 when none, or -1 when the connection must be
	 * refused (why says why). */
	int (*peer_principal)(void *ctx, struct bufferevent *bev, char *out, size_t cap, char *why,
	                      size_t whylen);
	void *ctx;
};

extern const struct px_transport px_transport_tcp;

/* A broker the cluster advertised and the listener that stands for it. */
struct px_broker {
	int32_t node_id;
	char host[PX_HOST_MAX]; /* real address, updated by each response */
	uint16_t port;
	uint16_t proxy_port;
	struct evconnlistener *lsn; /* on the acceptor base; NULL if not open */
	struct px *px;
	int failed;           /* bind failed: logged once */
	int paused;           /* accept() failed: disabled until resume_ev (acceptor thread) */
	int bad_addr;         /* the advertised host or port is unusable: warned once */
	int gone;             /* listener closed by the GC: slot reusable */
	uint64_t named_us;    /* last time a response named it (px_now_us) */
	uint64_t unlisted_us; /* first Metadata response that did not list it; 0: listed */
};

/* A socket handed from the acceptor to a worker. */
struct px_handoff {
	struct px_handoff *next;
	evutil_socket_t fd;
	int32_t broker_id; /* -1: bootstrap listener */
	char client_addr[64];
};

struct px_worker {
	struct px *px;
	unsigned idx;
	struct event_base *base;
	struct evdns_base *dns;
	pthread_t thread;
	int started;
	pthread_mutex_t mu; /* guards queue */
	struct px_handoff *queue, *queue_tail;
	struct event *wake_ev;  /* activated by the acceptor: new sockets */
	struct event *drain_ev; /* activated by px_stop */
	struct event *kill_ev;  /* drain timeout: close everything */
	struct px_conn *conns;  /* doubly linked through px_conn.next/prev */
	void *peeks;            /* sockets in px_tls_peek (px-tls.c) */
	unsigned nconns;
	int draining;
	_Atomic int done; /* read by the acceptor */
	/* Rules (px_conf.rules): this worker's view of the set in force, and
	 * its scratch for judging requests (px-judge.h). */
	struct px_rules_ref rules_ref;
	struct rule_judge judge;
	struct px_judged judged;
	/* Names mapped for tenants (px-names.h); allocated at first use. */
	struct px_names *names;
};

struct px_api_ctr {
	_Atomic uint64_t requests, responses, errors;
};

struct px {
	struct px_conf conf;
	struct px_hooks hooks;
	const struct px_transport *tp;
	struct px_tls *tls; /* px-tls.h; NULL: plain TCP on both sides */
	char advertise[PX_HOST_MAX];

	struct event_base *abase; /* acceptor base: every listener lives here */
	pthread_t athread;
	int athread_started;
	struct evconnlistener *boot_lsn;
	uint16_t bound_port;
	struct event *stop_ev;  /* activated by px_stop */
	struct event *check_ev; /* periodic: are all workers done? */
	struct event *drain_timer;
	struct event *kill_now_ev; /* activated by px_stop_now */
	struct event *gc_ev;       /* closes the listeners of unlisted brokers */
	struct event *resume_ev;   /* re-enables listeners paused by accept errors */
	/* Accept errors, on the acceptor thread only: when the last message
	 * was logged, failures since, and whether accepting is in trouble. */
	uint64_t accept_log_us;
	uint64_t accept_unlogged;
	int accept_trouble;   /* the last accept() failed */
	int accept_logged;    /* a failure was logged since the last success */
	unsigned long nofile; /* RLIMIT_NOFILE soft limit after px_start */

	struct px_worker *workers;
	unsigned nworkers;
	_Atomic unsigned rr;    /* next worker */
	_Atomic unsigned up_rr; /* first bootstrap upstream of the next connection */

	pthread_mutex_t bmu; /* guards brokers and their listeners */
	struct px_broker *brokers;
	unsigned nbrokers; /* slots used, gone ones included */
	unsigned nlive;    /* slots not gone: at most conf.max_brokers */
	int cap_logged;
	uint64_t named_us; /* last px_addr_map call, capped nodes included */

	pthread_mutex_t smu; /* state + cond */
	pthread_cond_t scond;
	int stopping, stopped;
	int lsn_closed; /* under bmu: no new broker listeners */

	_Atomic uint64_t bytes_in_client, bytes_out_client, bytes_in_upstream, bytes_out_upstream;
	_Atomic uint64_t conns_accepted, conns_active, upstream_connect_failures, decode_errors,
	    frames_too_large, responses_rewritten, apiversions_clamped, accept_errors;
	/* Frames decoded on the data path that had something tolerated (bytes
	 * after the body): PX_INC(px, decode_warnings, 1) next to decode_errors. */
	_Atomic uint64_t decode_warnings;
	/* TLS ClientHellos met on a plaintext listener (px-tls.h). */
	_Atomic uint64_t tls_on_plain;
	/* Topic id -> name, one per proxy (= per cluster), shared by every
	 * connection; lookups take no lock (kd-topics.h). px_topics(px). */
	struct kd_topics *topics;
	/* The data path's protocol checks and flow control (docs/proxy.md). */
	_Atomic uint64_t unpaired_responses, trailing_bytes;
	_Atomic uint64_t inflight_max, client_out_max, edit_held_max;
	_Atomic uint64_t pauses_inflight, pauses_client_buffer, pauses_upstream;
	/* The rules in force (NULL without a rules file). */
	struct px_rules *rules;
	/* The tap (px_conf.tap, px-tap.h), or NULL. */
	struct px_tap *tap;
	/* The audit trail (px-audit.h): NULL without rules and audit_log. */
	struct px_audit *audit;
	/* SASL: credentials, keys, counters (px-sasl.h); always there. */
	struct px_sasl *sasl;
	/* mirror: rules (px-mirror.h) and the files of tap: rules (px-tap.h),
	 * with a rules file; else NULL. */
	struct px_mirror *mirror;
	struct px_tapreg *tapreg;
	/* Quota rates and metrics (px-quota.h), with rules; kept across reloads. */
	struct px_quota *quota;
	/* What the rules did: requests answered by kwire, split, dropped
	 * (acks=0) or whose connection was closed (refused, undecodable). */
	_Atomic uint64_t rules_answered, rules_split, rules_dropped, rules_closed, rules_filtered;
	/* `rewrite:` on records (px-records.h): Produce requests and Fetch
	 * responses rewritten, records changed, records or partitions passed
	 * unchanged (on_error: pass) and partitions refused. */
	_Atomic uint64_t rw_requests, rw_responses, rw_records, rw_passed, rw_refused;
	struct px_api_ctr api[PX_API_MAX][PX_VER_MAX];
};

#define PX_INC(px, field, n) atomic_fetch_add_explicit(&(px)->field, (n), memory_order_relaxed)
#define PX_DEC(px, field, n) atomic_fetch_sub_explicit(&(px)->field, (n), memory_order_relaxed)

/* Raises a high-water mark to v. */
static inline void px_max(_Atomic uint64_t *m, uint64_t v)
{
	uint64_t cur = atomic_load_explicit(m, memory_order_relaxed);
	while (v > cur && !atomic_compare_exchange_weak_explicit(m, &cur, v, memory_order_relaxed,
	                                                         memory_order_relaxed))
		;
}
#define PX_MAX(px, field, v) px_max(&(px)->field, (v))

/* px-listen.c */
/* The broker -> client address map used by px_rewrite_response: records
 * the broker's real address, opens its listener if needed, and answers
 * the advertised host and proxy port. Any thread. */
int px_addr_map(void *arg, int32_t node_id, const struct kd_view *host, int32_t port,
                char out_host[PX_HOST_MAX], int32_t *out_port);
/* The real address of a broker node for a new upstream connection; 0 or
 * -1 when unknown. */
int px_broker_addr(struct px *px, int32_t node_id, char host[PX_HOST_MAX], uint16_t *port);
/* After a Metadata response was rewritten (px_addr_map called for each
 * broker it lists, from t0 on): brokers it did not list are unlisted, and
 * their listeners close after broker_grace_ms. Any thread. */
void px_metadata_seen(struct px *px, uint64_t t0);
void px_count_api(struct px *px, int16_t key, int16_t version, int what);
enum { PX_CNT_REQ, PX_CNT_RESP, PX_CNT_ERR };

/* A connection of wk went away: a drained worker may be done. */
void px_worker_conn_gone(struct px_worker *wk);

/* px-conn.c */
/* Takes over a handed-off socket on worker wk (its thread). */
void px_conn_new(struct px_worker *wk, const struct px_handoff *ho);
/* Sets the connection's principal ("User:alice"; from its TLS client
 * certificate or its SASL exchange), cut to PX_PRINCIPAL_MAX - 1 bytes.
 * It then shows in the access log (px_pair.principal) and is what the
 * rules' principal matcher sees (rule_who). On conn's worker thread. */
void px_conn_set_principal(struct px_conn *conn, const char *principal, size_t len);
/* The connection's principal, "" when none. */
const char *px_conn_principal(const struct px_conn *conn);
/* Drain: stop reading requests; connections close once idle. */
void px_conn_drain_all(struct px_worker *wk);
/* Closes every connection of wk now. */
void px_conn_close_all(struct px_worker *wk);
/* Monotonic and wall clocks in microseconds. */
uint64_t px_now_us(void);
uint64_t px_wall_us(void);

#endif
