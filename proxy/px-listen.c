/* px-listen.c: the proxy's skeleton: lifecycle, threads, listeners (the
 * bootstrap listener and one per advertised broker), the broker -> proxy
 * port map, counters and logging. The data path is px-conn.c.
 *
 * Threads:
 *
 *   acceptor (abase)                 worker i (workers[i].base)
 *   bootstrap + broker listeners --> handoff queue --> px_conn (client bev
 *   stop / drain timers                                + upstream bev)
 *
 * Broker listeners are opened by whichever worker rewrites the response
 * that names the broker (px_addr_map), under bmu, before that response is
 * forwarded: a client can never race to a port that is not open yet.
 * libevent is made thread-aware (evthread_use_pthreads) so that a worker
 * may add a listener to the acceptor base and the acceptor may activate
 * events on worker bases. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/thread.h>
#include <event2/util.h>

#include "kd.h"
#include "px-int.h"
#include "px-mirror.h"
#include "px-tap.h"
#include "px-quota.h"
#include "px-records.h"
#include "px-tls.h"
#include "rule.h"

#define PX_BACKLOG 512
#define PX_QUOTA_KEYS 100000 /* (quota rule, key) rates kept, least recently used out */

uint64_t px_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t px_wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void px_log(const struct px *px, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	if (level > px->conf.log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (px->hooks.on_log) {
		px->hooks.on_log(px->hooks.arg, level, msg);
		return;
	}
	static const char *const names[] = {"error", "warn", "info", "debug"};
	fprintf(stderr, "kwire proxy: %s: %s\n", names[level < 0 ? 0 : level > 3 ? 3 : level], msg);
}

/* ---- counters ---- */

void px_count_api(struct px *px, int16_t key, int16_t version, int what)
{
	if (key < 0 || key >= PX_API_MAX || version < 0 || version >= PX_VER_MAX)
		return;
	struct px_api_ctr *c = &px->api[key][version];
	_Atomic uint64_t *v = what == PX_CNT_REQ    ? &c->requests
	                      : what == PX_CNT_RESP ? &c->responses
	                                            : &c->errors;
	atomic_fetch_add_explicit(v, 1, memory_order_relaxed);
}

void px_count_error(struct px *px, int16_t key, int16_t version)
{
	px_count_api(px, key, version, PX_CNT_ERR);
}

void px_stats_get(const struct px *px, struct px_stats *out)
{
	/* Atomic loads take non-const pointers in some C libraries. */
	struct px *m = (struct px *)px;
	memset(out, 0, sizeof(*out));
	out->bytes_in_client = atomic_load_explicit(&m->bytes_in_client, memory_order_relaxed);
	out->bytes_out_client = atomic_load_explicit(&m->bytes_out_client, memory_order_relaxed);
	out->bytes_in_upstream = atomic_load_explicit(&m->bytes_in_upstream, memory_order_relaxed);
	out->bytes_out_upstream =
	    atomic_load_explicit(&m->bytes_out_upstream, memory_order_relaxed);
	out->conns_accepted = atomic_load_explicit(&m->conns_accepted, memory_order_relaxed);
	out->conns_active = atomic_load_explicit(&m->conns_active, memory_order_relaxed);
	out->upstream_connect_failures =
	    atomic_load_explicit(&m->upstream_connect_failures, memory_order_relaxed);
	out->decode_errors = atomic_load_explicit(&m->decode_errors, memory_order_relaxed);
	out->decode_warnings = atomic_load_explicit(&m->decode_warnings, memory_order_relaxed);
	out->frames_too_large = atomic_load_explicit(&m->frames_too_large, memory_order_relaxed);
	out->responses_rewritten =
	    atomic_load_explicit(&m->responses_rewritten, memory_order_relaxed);
	out->apiversions_clamped =
	    atomic_load_explicit(&m->apiversions_clamped, memory_order_relaxed);
	out->accept_errors = atomic_load_explicit(&m->accept_errors, memory_order_relaxed);
#define PX_LOAD(f) out->f = atomic_load_explicit(&m->f, memory_order_relaxed)
	PX_LOAD(unpaired_responses);
	PX_LOAD(trailing_bytes);
	PX_LOAD(inflight_max);
	PX_LOAD(client_out_max);
	PX_LOAD(edit_held_max);
	PX_LOAD(pauses_inflight);
	PX_LOAD(pauses_client_buffer);
	PX_LOAD(pauses_upstream);
#undef PX_LOAD
	out->rules_answered = atomic_load_explicit(&m->rules_answered, memory_order_relaxed);
	out->rules_split = atomic_load_explicit(&m->rules_split, memory_order_relaxed);
	out->rules_dropped = atomic_load_explicit(&m->rules_dropped, memory_order_relaxed);
	out->rules_closed = atomic_load_explicit(&m->rules_closed, memory_order_relaxed);
	out->rules_filtered = atomic_load_explicit(&m->rules_filtered, memory_order_relaxed);
	out->rw_requests = atomic_load_explicit(&m->rw_requests, memory_order_relaxed);
	out->rw_responses = atomic_load_explicit(&m->rw_responses, memory_order_relaxed);
	out->rw_records = atomic_load_explicit(&m->rw_records, memory_order_relaxed);
	out->rw_passed = atomic_load_explicit(&m->rw_passed, memory_order_relaxed);
	out->rw_refused = atomic_load_explicit(&m->rw_refused, memory_order_relaxed);
}

struct kd_topics *px_topics(const struct px *px)
{
	return px->topics;
}

void px_api_stats_get(const struct px *px, int16_t key, int16_t version, struct px_api_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (key < 0 || key >= PX_API_MAX || version < 0 || version >= PX_VER_MAX)
		return;
	struct px_api_ctr *c = &((struct px *)px)->api[key][version];
	out->requests = atomic_load_explicit(&c->requests, memory_order_relaxed);
	out->responses = atomic_load_explicit(&c->responses, memory_order_relaxed);
	out->errors = atomic_load_explicit(&c->errors, memory_order_relaxed);
}

/* ---- construction ---- */

static int is_wildcard(const char *host)
{
	return !host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !strcmp(host, "*");
}

/* px_rules' log lines, through the proxy's log. */
static void rules_log(void *arg, int level, const char *msg)
{
	px_log(arg, level, "%s", msg);
}

/* Frees what px_new made before it failed (any part may be NULL), in
 * px_free's order. */
static void px_new_undo(struct px *px)
{
	free(px->brokers);
	kd_topics_free(&px->topics);
	px_rules_free(&px->rules); /* its watcher reloads into the audit: first */
	px_audit_free(&px->audit);
	px_sasl_free(&px->sasl);
	px_tap_close(&px->tap);
	px_mirror_free(&px->mirror);
	px_tls_free(&px->tls);
	px_tapreg_free(&px->tapreg);
	px_quota_free(&px->quota);
	px_conf_free(&px->conf);
	free(px);
}

struct px *px_new(const struct px_conf *conf, char *err, size_t errlen)
{
	struct px *px = calloc(1, sizeof(*px));
	if (!px) {
		kd_errf(err, errlen, "out of memory");
		return NULL;
	}
	if (px_conf_check(conf, err, errlen) || px_conf_copy(&px->conf, conf)) {
		if (err && !err[0])
			kd_errf(err, errlen, "out of memory");
		free(px);
		return NULL;
	}
	px->brokers = calloc(PX_BROKER_MAX, sizeof(*px->brokers));
	px->topics = kd_topics_new();
	if (!px->brokers || !px->topics)
		goto nomem;
	if (conf->rules) {
		px->rules = px_rules_new(conf->rules, rules_log, px, err, errlen);
		if (!px->rules)
			goto fail;
		/* Mirror rules may come with a reload: the mirror is always there. */
		px->mirror = px_mirror_new(rules_log, px, px->topics);
		px->tapreg = px_tapreg_new(rules_log, px);
		px->quota = px_quota_new(PX_QUOTA_KEYS);
		if (!px->mirror || !px->tapreg || !px->quota)
			goto nomem;
	}
	if (conf->tap) {
		struct px_tap_opts to = {conf->tap_max_bytes, conf->tap_files,
		                         conf->tap_buffer_bytes};
		px->tap = px_tap_open(conf->tap, &to, rules_log, px, err, errlen);
		if (!px->tap)
			goto fail;
	}
	if (conf->rules || conf->audit_log) {
		px->audit = px_audit_for(conf, px->rules, rules_log, px, err, errlen);
		if (!px->audit)
			goto fail;
	}
	px->sasl = px_sasl_new(&px->conf.sasl, err, errlen);
	if (!px->sasl)
		goto fail;
	px->tp = &px_transport_tcp;
	if (px_tls_new(px, &px->tls, err, errlen))
		goto fail;
	if (px->tls)
		px->tp = px_tls_transport(px->tls);
	if (conf->advertise[0])
		snprintf(px->advertise, sizeof(px->advertise), "%s", conf->advertise);
	else if (is_wildcard(conf->listen.host))
		snprintf(px->advertise, sizeof(px->advertise), "localhost");
	else
		snprintf(px->advertise, sizeof(px->advertise), "%s", conf->listen.host);
	pthread_mutex_init(&px->bmu, NULL);
	pthread_mutex_init(&px->smu, NULL);
	pthread_cond_init(&px->scond, NULL);
	return px;
nomem:
	kd_errf(err, errlen, "out of memory");
fail:
	px_new_undo(px);
	return NULL;
}

void px_set_hooks(struct px *px, const struct px_hooks *hooks)
{
	px->hooks = *hooks;
	if (!px->hooks.frame_copy_max)
		px->hooks.frame_copy_max = 64 * 1024;
	/* A copy is taken once that many bytes are buffered, so it must fit
	 * under the read watermark (px-conn.c: max(buffer_bytes, 128 KiB)). */
	size_t wm = px->conf.buffer_bytes > 128 * 1024 ? px->conf.buffer_bytes : 128 * 1024;
	if (px->hooks.frame_copy_max > wm)
		px->hooks.frame_copy_max = (uint32_t)(wm > UINT32_MAX ? UINT32_MAX : wm);
}

uint16_t px_listen_port(const struct px *px)
{
	return px->bound_port;
}

const struct px_conf *px_conf_get(const struct px *px)
{
	return &px->conf;
}

/* ---- listeners ---- */

/* The boot listener's context: node id -1. Kept in the broker table's
 * last slot so that it needs no allocation of its own. */
static struct px_broker *boot_ctx(struct px *px)
{
	return &px->brokers[PX_BROKER_MAX - 1];
}

static void accept_cb(struct evconnlistener *lsn, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	struct px_broker *b = arg;
	struct px *px = b->px;
	(void)lsn;
	struct px_handoff *ho = calloc(1, sizeof(*ho));
	if (!ho) {
		evutil_closesocket(fd);
		return;
	}
	if (px->accept_trouble) {
		/* Only after a logged failure, so that both stay rate-limited. */
		if (px->accept_logged)
			px_log(px, 2, "accepting again");
		px->accept_trouble = 0;
		px->accept_logged = 0;
	}
	ho->fd = fd;
	ho->broker_id = b->node_id;
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (sa->sa_family == AF_INET && (size_t)salen >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		evutil_inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		port = ntohs(sin->sin_port);
		snprintf(ho->client_addr, sizeof(ho->client_addr), "%s:%u", ip, port);
	} else if (sa->sa_family == AF_INET6 && (size_t)salen >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		evutil_inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		port = ntohs(sin6->sin6_port);
		snprintf(ho->client_addr, sizeof(ho->client_addr), "[%s]:%u", ip, port);
	} else {
		snprintf(ho->client_addr, sizeof(ho->client_addr), "?");
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	PX_INC(px, conns_accepted, 1);
	unsigned i = atomic_fetch_add_explicit(&px->rr, 1, memory_order_relaxed) % px->nworkers;
	struct px_worker *wk = &px->workers[i];
	pthread_mutex_lock(&wk->mu);
	if (wk->queue_tail)
		wk->queue_tail->next = ho;
	else
		wk->queue = ho;
	wk->queue_tail = ho;
	pthread_mutex_unlock(&wk->mu);
	event_active(wk->wake_ev, EV_READ, 0);
}

/* Out of file descriptors (EMFILE, ENFILE) or socket memory, accept()
 * fails at once every time the loop polls the listener, which stays
 * readable with connections waiting in its backlog: left enabled, the
 * acceptor spins at 100% of a core. So a listener whose accept() fails
 * is disabled and resume_cb enables it again PX_ACCEPT_PAUSE_MS later;
 * connections wait in the backlog meanwhile. One message per
 * PX_ACCEPT_LOG_US at most, and one when accepting works again. Every
 * callback here runs on the acceptor thread. */
#define PX_ACCEPT_PAUSE_MS 100
#define PX_ACCEPT_LOG_US (10u * 1000000u)

static void accept_err_cb(struct evconnlistener *lsn, void *arg)
{
	struct px_broker *b = arg;
	struct px *px = b->px;
	int e = EVUTIL_SOCKET_ERROR();
	PX_INC(px, accept_errors, 1);
	pthread_mutex_lock(&px->bmu);
	if (b->lsn == lsn || px->boot_lsn == lsn) { /* still ours: not closed meanwhile */
		evconnlistener_disable(lsn);
		b->paused = 1;
	}
	pthread_mutex_unlock(&px->bmu);
	if (!evtimer_pending(px->resume_ev, NULL)) {
		struct timeval tv = {0, PX_ACCEPT_PAUSE_MS * 1000};
		evtimer_add(px->resume_ev, &tv);
	}
	uint64_t now = px_now_us();
	int first = !px->accept_trouble;
	px->accept_trouble = 1;
	if (px->accept_log_us && now - px->accept_log_us < PX_ACCEPT_LOG_US) {
		px->accept_unlogged++;
		return;
	}
	if (first)
		px_log(px, 1,
		       "accept on port %u: %s (open files limit %lu): accepting paused for %d ms "
		       "at a time until it works again",
		       b->proxy_port, evutil_socket_error_to_string(e), px->nofile,
		       PX_ACCEPT_PAUSE_MS);
	else
		px_log(px, 1,
		       "accept on port %u: %s, %" PRIu64 " more failures since the last message",
		       b->proxy_port, evutil_socket_error_to_string(e), px->accept_unlogged + 1);
	px->accept_log_us = now;
	px->accept_unlogged = 0;
	px->accept_logged = 1;
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px *px = arg;
	(void)fd;
	(void)what;
	pthread_mutex_lock(&px->bmu);
	struct px_broker *boot = boot_ctx(px);
	if (boot->paused && px->boot_lsn)
		evconnlistener_enable(px->boot_lsn);
	boot->paused = 0;
	for (unsigned i = 0; i < px->nbrokers; i++) {
		struct px_broker *b = &px->brokers[i];
		if (b->paused && b->lsn)
			evconnlistener_enable(b->lsn);
		b->paused = 0;
	}
	pthread_mutex_unlock(&px->bmu);
}

/* Binds host:port (port 0: ephemeral) on the acceptor base. Returns the
 * listener (and the bound port in *bound) or NULL with errno-style text. */
static struct evconnlistener *listen_on(struct px *px, const char *host, uint16_t port,
                                        struct px_broker *ctx, uint16_t *bound, char *err,
                                        size_t errlen)
{
	struct evutil_addrinfo hints, *ai = NULL;
	char portstr[8];
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
	snprintf(portstr, sizeof(portstr), "%u", port);
	const char *h = is_wildcard(host) ? NULL : host;
	int rc = evutil_getaddrinfo(h, portstr, &hints, &ai);
	if (rc || !ai) {
		kd_errf(err, errlen, "%s:%u: %s", host, port, evutil_gai_strerror(rc));
		return NULL;
	}
	struct evconnlistener *lsn = evconnlistener_new_bind(
	    px->abase, accept_cb, ctx,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_THREADSAFE,
	    PX_BACKLOG, ai->ai_addr, (int)ai->ai_addrlen);
	int e = errno;
	evutil_freeaddrinfo(ai);
	if (!lsn) {
		kd_errf(err, errlen, "listen on %s:%u: %s", host, port, strerror(e));
		return NULL;
	}
	evconnlistener_set_error_cb(lsn, accept_err_cb);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	*bound = port;
	if (!getsockname(evconnlistener_get_fd(lsn), (struct sockaddr *)&ss, &sl)) {
		if (ss.ss_family == AF_INET)
			*bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			*bound = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	return lsn;
}

/* The slot of node_id, or a new one (a never-used slot, else one whose
 * listener the GC closed); NULL at the cap. Under bmu. */
static struct px_broker *broker_slot(struct px *px, int32_t node_id)
{
	struct px_broker *reuse = NULL;
	for (unsigned i = 0; i < px->nbrokers; i++) {
		struct px_broker *b = &px->brokers[i];
		if (b->node_id == node_id) {
			if (b->gone) {
				if (px->nlive >= px->conf.max_brokers)
					return NULL;
				b->gone = 0;
				px->nlive++;
			}
			return b;
		}
		if (b->gone && !reuse)
			reuse = b;
	}
	if (px->nlive >= px->conf.max_brokers)
		return NULL;
	struct px_broker *b =
	    px->nbrokers < PX_BROKER_MAX - 1 ? &px->brokers[px->nbrokers++] : reuse;
	if (!b)
		return NULL;
	/* A gone slot's listener was freed on the acceptor thread, so no
	 * accept callback can still see the old node id in it. */
	memset(b, 0, sizeof(*b));
	b->node_id = node_id;
	b->px = px;
	px->nlive++;
	return b;
}

int px_addr_map(void *arg, int32_t node_id, const struct kd_view *host, int32_t port,
                char out_host[PX_HOST_MAX], int32_t *out_port)
{
	struct px *px = arg;
	if (node_id < 0)
		return -1; /* "no node" (an error answer): nothing real to hide */
	pthread_mutex_lock(&px->bmu);
	px->named_us = px_now_us();
	struct px_broker *b = broker_slot(px, node_id);
	if (!b) {
		/* Once, not per response: a cluster (or a hostile broker) naming
		 * thousands of nodes must not flood the log. */
		int first = !px->cap_logged;
		px->cap_logged = 1;
		pthread_mutex_unlock(&px->bmu);
		if (first)
			px_log(
			    px, 0,
			    "the cluster names more than %u brokers (max_brokers): node %d and "
			    "any further ones are told port 0 and cannot be reached through "
			    "kwire; raise max_brokers if the cluster is that large (logged once)",
			    px->conf.max_brokers, node_id);
		snprintf(out_host, PX_HOST_MAX, "%s", px->advertise);
		*out_port = 0; /* unusable, but never the real address */
		return 0;
	}
	b->named_us = px->named_us;
	b->unlisted_us = 0;
	/* Remember (or update) the real address. */
	if (!host->null && host->len < PX_HOST_MAX && port > 0 && port <= 65535) {
		if (b->port != port || strlen(b->host) != host->len ||
		    memcmp(b->host, host->p, host->len)) {
			if (b->port)
				px_log(px, 2, "broker %d moved to %.*s:%d", node_id, (int)host->len,
				       (const char *)host->p, port);
			memcpy(b->host, host->p, host->len);
			b->host[host->len] = '\0';
			b->port = (uint16_t)port;
		}
		b->bad_addr = 0;
	} else if (!b->bad_addr) {
		/* Kept as last known (if any): connections to it use that. */
		b->bad_addr = 1;
		if (host->null || host->len >= PX_HOST_MAX)
			px_log(px, 1,
			       "broker %d advertises %s%u-byte host name; kwire holds host names "
			       "of at most %d bytes (DNS names have at most 253), so connections "
			       "to broker %d through kwire will fail",
			       node_id, host->null ? "a null" : "a ", host->null ? 0 : host->len,
			       PX_HOST_MAX - 1, node_id);
		else
			px_log(px, 1,
			       "broker %d advertises port %d, which is not a TCP port: connections "
			       "to broker %d through kwire will fail",
			       node_id, port, node_id);
	}
	if (px->conf.sni_hosts) {
		/* One port for the whole cluster: the broker's name says which it
		 * is (px_tls_peek routes by it). */
		px_tls_sni_name(px, node_id, out_host);
		b->proxy_port = px->conf.sni_port ? px->conf.sni_port : px->bound_port;
		*out_port = b->proxy_port;
		pthread_mutex_unlock(&px->bmu);
		return 0;
	}
	/* b->failed only silences repeated log lines: a bind that failed (port
	 * taken) is retried whenever a response names the broker again. */
	if (!b->lsn && !px->lsn_closed) {
		uint16_t want = px_conf_broker_port(&px->conf, px->bound_port, node_id);
		int ephemeral = px->conf.listen.port == 0 && !px->conf.broker_port_base;
		if (want == 0 && !ephemeral) {
			if (!b->failed)
				px_log(px, 0,
				       "no proxy port for broker %d (add it to broker_ports)",
				       node_id);
			b->failed = 1;
		} else {
			char err[256];
			uint16_t bound = 0;
			b->lsn =
			    listen_on(px, px->conf.listen.host, want, b, &bound, err, sizeof(err));
			if (b->lsn) {
				b->proxy_port = bound;
				b->failed = 0;
				if (b->port)
					px_log(px, 2, "broker %d (%s:%u) on proxy port %u", node_id,
					       b->host, b->port, bound);
				else
					px_log(px, 2,
					       "broker %d (no usable address yet) on proxy port %u",
					       node_id, bound);
			} else {
				/* Still the port the rule gives: clients fail to connect to
				 * it rather than learn the real address. */
				b->proxy_port = want;
				if (!b->failed)
					px_log(px, 0, "broker %d: %s", node_id, err);
				b->failed = 1;
			}
		}
	}
	snprintf(out_host, PX_HOST_MAX, "%s", px->advertise);
	*out_port = b->proxy_port;
	pthread_mutex_unlock(&px->bmu);
	return 0;
}

/* Listener GC. Every Metadata response lists all the brokers the cluster
 * has alive, whatever topics were asked for; px_addr_map stamps each one
 * it names with named_us. A broker not stamped during a Metadata rewrite
 * is no longer listed: once it has been unlisted for broker_grace_ms, its
 * listener is closed on the acceptor thread (gc_cb), where no accept
 * callback can be running for it. Its connections stay; if the cluster
 * lists it again, its listener reopens on the same port rule. */
/* Arms gc_ev for the earliest unlisted broker's end of grace (at once if
 * it is past). Under bmu. */
static void gc_arm(struct px *px, uint64_t now)
{
	uint64_t grace = (uint64_t)px->conf.broker_grace_ms * 1000u, due = UINT64_MAX;
	for (unsigned i = 0; i < px->nbrokers; i++) {
		const struct px_broker *b = &px->brokers[i];
		if (!b->gone && b->unlisted_us && b->unlisted_us + grace < due)
			due = b->unlisted_us + grace;
	}
	if (due == UINT64_MAX || px->lsn_closed)
		return;
	if (due <= now) {
		event_active(px->gc_ev, EV_TIMEOUT, 0);
	} else {
		struct timeval tv = {(time_t)((due - now) / 1000000u),
		                     (suseconds_t)((due - now) % 1000000u)};
		event_add(px->gc_ev, &tv);
	}
}

void px_metadata_seen(struct px *px, uint64_t t0)
{
	int changed = 0;
	pthread_mutex_lock(&px->bmu);
	/* A response naming no broker at all (not seen from Kafka) is not
	 * taken as "every broker is gone". */
	int listed = px->named_us >= t0;
	for (unsigned i = 0; listed && i < px->nbrokers; i++) {
		struct px_broker *b = &px->brokers[i];
		if (b->gone || b->named_us >= t0 || b->unlisted_us)
			continue;
		b->unlisted_us = t0;
		changed = 1;
	}
	if (changed)
		gc_arm(px, px_now_us());
	pthread_mutex_unlock(&px->bmu);
}

/* On the acceptor thread: closes the listeners whose grace is over, then
 * re-arms for the next one. A broker listed again meanwhile has
 * unlisted_us 0 (px_addr_map) and is left alone. */
static void gc_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px *px = arg;
	(void)fd;
	(void)what;
	uint64_t now = px_now_us();
	pthread_mutex_lock(&px->bmu);
	for (unsigned i = 0; i < px->nbrokers; i++) {
		struct px_broker *b = &px->brokers[i];
		if (b->gone || !b->unlisted_us ||
		    now - b->unlisted_us < (uint64_t)px->conf.broker_grace_ms * 1000u)
			continue;
		if (b->lsn) {
			evconnlistener_free(b->lsn);
			b->lsn = NULL;
		}
		b->gone = 1;
		b->paused = 0;
		px->nlive--;
		px_log(px, 2,
		       "broker %d is no longer listed by the cluster: its listener on port %u is "
		       "closed (open connections stay)",
		       b->node_id, b->proxy_port);
	}
	gc_arm(px, now);
	pthread_mutex_unlock(&px->bmu);
}

int px_broker_addr(struct px *px, int32_t node_id, char host[PX_HOST_MAX], uint16_t *port)
{
	int rc = -1;
	pthread_mutex_lock(&px->bmu);
	for (unsigned i = 0; i < px->nbrokers; i++) {
		if (px->brokers[i].node_id == node_id && px->brokers[i].port) {
			snprintf(host, PX_HOST_MAX, "%s", px->brokers[i].host);
			*port = px->brokers[i].port;
			rc = 0;
		}
	}
	pthread_mutex_unlock(&px->bmu);
	return rc;
}

unsigned px_broker_map(const struct px *px, struct px_broker_ent *out, unsigned max)
{
	struct px *m = (struct px *)px;
	pthread_mutex_lock(&m->bmu);
	unsigned n = m->nbrokers;
	for (unsigned i = 0; i < n && i < max; i++) {
		const struct px_broker *b = &m->brokers[i];
		out[i].node_id = b->node_id;
		snprintf(out[i].host, sizeof(out[i].host), "%s", b->host);
		out[i].port = b->port;
		out[i].proxy_port = b->proxy_port;
		out[i].listening = b->lsn != NULL;
	}
	pthread_mutex_unlock(&m->bmu);
	return n;
}

/* ---- workers ---- */

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_worker *wk = arg;
	(void)fd;
	(void)what;
	for (;;) {
		pthread_mutex_lock(&wk->mu);
		struct px_handoff *ho = wk->queue;
		if (ho) {
			wk->queue = ho->next;
			if (!wk->queue)
				wk->queue_tail = NULL;
		}
		pthread_mutex_unlock(&wk->mu);
		if (!ho)
			break;
		if (wk->draining)
			evutil_closesocket(ho->fd);
		else if (px_tls_peeks(wk->px->tls))
			px_tls_peek(wk,
			            ho); /* TLS listener: px_conn_new once the ClientHello is in */
		else
			px_conn_new(wk, ho);
		free(ho);
	}
}

static void worker_maybe_done(struct px_worker *wk)
{
	if (wk->draining && wk->nconns == 0 && !wk->done) {
		wk->done = 1;
		event_base_loopexit(wk->base, NULL);
	}
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_worker *wk = arg;
	wake_cb(fd, what, arg); /* sockets already handed over are served, then drained */
	wk->draining = 1;
	px_tls_peek_close_all(wk);
	px_conn_drain_all(wk);
	worker_maybe_done(wk);
}

static void kill_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_worker *wk = arg;
	(void)fd;
	(void)what;
	wk->draining = 1;
	px_tls_peek_close_all(wk);
	px_conn_close_all(wk);
	worker_maybe_done(wk);
}

void px_worker_conn_gone(struct px_worker *wk)
{
	worker_maybe_done(wk);
}

static void *worker_main(void *arg)
{
	struct px_worker *wk = arg;
	event_base_loop(wk->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void *acceptor_main(void *arg)
{
	struct px *px = arg;
	event_base_loop(px->abase, EVLOOP_NO_EXIT_ON_EMPTY);
	pthread_mutex_lock(&px->smu);
	px->stopped = 1;
	pthread_cond_broadcast(&px->scond);
	pthread_mutex_unlock(&px->smu);
	return NULL;
}

static void close_listeners(struct px *px)
{
	pthread_mutex_lock(&px->bmu);
	px->lsn_closed = 1;
	if (px->boot_lsn) {
		evconnlistener_free(px->boot_lsn);
		px->boot_lsn = NULL;
	}
	for (unsigned i = 0; i < px->nbrokers; i++) {
		if (px->brokers[i].lsn) {
			evconnlistener_free(px->brokers[i].lsn);
			px->brokers[i].lsn = NULL;
		}
	}
	pthread_mutex_unlock(&px->bmu);
}

static void check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px *px = arg;
	(void)fd;
	(void)what;
	for (unsigned i = 0; i < px->nworkers; i++)
		if (!atomic_load_explicit(&px->workers[i].done, memory_order_acquire) &&
		    px->workers[i].started)
			return;
	event_base_loopexit(px->abase, NULL);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px *px = arg;
	(void)fd;
	(void)what;
	px_log(px, 1, "drain timeout: closing the connections left");
	for (unsigned i = 0; i < px->nworkers; i++)
		event_active(px->workers[i].kill_ev, EV_READ, 0);
}

static void kill_now_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px *px = arg;
	(void)fd;
	(void)what;
	evtimer_del(px->drain_timer);
	for (unsigned i = 0; i < px->nworkers; i++)
		event_active(px->workers[i].kill_ev, EV_READ, 0);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px *px = arg;
	(void)fd;
	(void)what;
	close_listeners(px);
	px_log(px, 2, "draining (at most %u ms)", px->conf.drain_timeout_ms);
	for (unsigned i = 0; i < px->nworkers; i++)
		event_active(px->workers[i].drain_ev, EV_READ, 0);
	struct timeval tv = {px->conf.drain_timeout_ms / 1000,
	                     (px->conf.drain_timeout_ms % 1000) * 1000};
	evtimer_add(px->drain_timer, &tv);
	struct timeval tick = {0, 20000};
	event_add(px->check_ev, &tick);
}

static int worker_init(struct px *px, struct px_worker *wk, unsigned idx)
{
	wk->px = px;
	wk->idx = idx;
	pthread_mutex_init(&wk->mu, NULL);
	wk->base = event_base_new();
	if (!wk->base)
		return -1;
	/* Names resolve through evdns when resolv.conf is usable; otherwise
	 * libevent falls back to blocking getaddrinfo (NULL dns base). */
	wk->dns = evdns_base_new(wk->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	wk->wake_ev = event_new(wk->base, -1, 0, wake_cb, wk);
	wk->drain_ev = event_new(wk->base, -1, 0, drain_cb, wk);
	wk->kill_ev = event_new(wk->base, -1, 0, kill_cb, wk);
	if (!wk->wake_ev || !wk->drain_ev || !wk->kill_ev)
		return -1;
	return 0;
}

/* Every client connection costs two descriptors (client and upstream):
 * the soft RLIMIT_NOFILE (often 1024) caps kwire at ~500 clients while
 * the hard limit usually allows far more. Raises the soft limit to the
 * hard one (bounded by fs.nr_open, which an unlimited hard limit may
 * exceed) and logs what it is. */
static void raise_nofile(struct px *px)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	rlim_t was = rl.rlim_cur, want = rl.rlim_max;
	if (want == RLIM_INFINITY) {
		want = 1u << 20;
		FILE *f = fopen("/proc/sys/fs/nr_open", "r");
		unsigned long v;
		if (f && fscanf(f, "%lu", &v) == 1)
			want = (rlim_t)v;
		if (f)
			fclose(f);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			rl.rlim_cur = was; /* stays as it was; logged below */
	}
	px->nofile = rl.rlim_cur == RLIM_INFINITY ? ULONG_MAX : (unsigned long)rl.rlim_cur;
	if (rl.rlim_cur != was)
		px_log(px, 2,
		       "open files limit %lu (raised from %lu to the hard limit): about %lu client "
		       "connections",
		       px->nofile, (unsigned long)was, px->nofile / 2);
	else
		px_log(px, 2,
		       "open files limit %lu (the hard limit is %lu): about %lu client "
		       "connections",
		       px->nofile,
		       rl.rlim_max == RLIM_INFINITY ? ULONG_MAX : (unsigned long)rl.rlim_max,
		       px->nofile / 2);
}

static void threads_init(void)
{
	evthread_use_pthreads();
	px_malloc_tune(); /* px-records.h */
}

int px_start(struct px *px, char *err, size_t errlen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, threads_init);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile(px);
	/* The rules file is reloaded when it changes, not only on SIGHUP. */
	if (px->rules && px_rules_watch(px->rules, 200, err, errlen))
		return -1;

	px->abase = event_base_new();
	if (!px->abase) {
		kd_errf(err, errlen, "event_base_new failed");
		return -1;
	}
	px->stop_ev = event_new(px->abase, -1, 0, stop_cb, px);
	px->check_ev = event_new(px->abase, -1, EV_PERSIST, check_cb, px);
	px->drain_timer = evtimer_new(px->abase, drain_timeout_cb, px);
	px->resume_ev = evtimer_new(px->abase, resume_cb, px);
	px->kill_now_ev = event_new(px->abase, -1, 0, kill_now_cb, px);
	px->gc_ev = evtimer_new(px->abase, gc_cb, px);
	if (px->tls && px_tls_watch(px->tls, px->abase)) {
		kd_errf(err, errlen, "cannot watch the TLS certificate files");
		return -1;
	}
	if (!px->stop_ev || !px->check_ev || !px->drain_timer || !px->resume_ev ||
	    !px->kill_now_ev || !px->gc_ev) {
		kd_errf(err, errlen, "event_new failed");
		return -1;
	}
	struct px_broker *boot = boot_ctx(px);
	boot->node_id = -1;
	boot->px = px;
	boot->proxy_port = px->conf.listen.port;
	px->boot_lsn = listen_on(px, px->conf.listen.host, px->conf.listen.port, boot,
	                         &px->bound_port, err, errlen);
	if (!px->boot_lsn)
		return -1;
	boot->proxy_port = px->bound_port;

	unsigned n = px->conf.workers;
	if (n == 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n = c > 0 ? (unsigned)c : 1;
	}
	px->workers = calloc(n, sizeof(*px->workers));
	if (!px->workers) {
		kd_errf(err, errlen, "out of memory");
		return -1;
	}
	px->nworkers = n;
	for (unsigned i = 0; i < n; i++) {
		if (worker_init(px, &px->workers[i], i)) {
			kd_errf(err, errlen, "cannot set up worker %u", i);
			return -1;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		if (pthread_create(&px->workers[i].thread, NULL, worker_main, &px->workers[i])) {
			kd_errf(err, errlen, "cannot start worker thread %u", i);
			return -1;
		}
		px->workers[i].started = 1;
	}
	if (pthread_create(&px->athread, NULL, acceptor_main, px)) {
		kd_errf(err, errlen, "cannot start the acceptor thread");
		return -1;
	}
	px->athread_started = 1;
	px_log(px, 2, "listening on %s:%u, %u worker(s), %u upstream(s), advertising %s",
	       px->conf.listen.host, px->bound_port, n, px->conf.nupstreams, px->advertise);
	return 0;
}

void px_stop(struct px *px)
{
	pthread_mutex_lock(&px->smu);
	int already = px->stopping;
	px->stopping = 1;
	if (!px->athread_started) {
		px->stopped = 1;
		pthread_cond_broadcast(&px->scond);
	}
	pthread_mutex_unlock(&px->smu);
	if (!already && px->athread_started)
		event_active(px->stop_ev, EV_READ, 0);
}

void px_stop_now(struct px *px)
{
	px_stop(px);
	pthread_mutex_lock(&px->smu);
	int go = px->athread_started && !px->stopped;
	pthread_mutex_unlock(&px->smu);
	if (go)
		event_active(px->kill_now_ev, EV_READ, 0);
}

int px_wait_ms(struct px *px, unsigned ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&px->smu);
	while (!px->stopped)
		if (pthread_cond_timedwait(&px->scond, &px->smu, &ts))
			break;
	int stopped = px->stopped;
	pthread_mutex_unlock(&px->smu);
	return stopped;
}

void px_wait(struct px *px)
{
	pthread_mutex_lock(&px->smu);
	while (!px->stopped)
		pthread_cond_wait(&px->scond, &px->smu);
	pthread_mutex_unlock(&px->smu);
}

void px_reopen(struct px *px)
{
	if (px->hooks.on_reopen)
		px->hooks.on_reopen(px->hooks.arg);
	if (px->audit)
		px_audit_reopen(px->audit);
	char err[512];
	int rc = px_sasl_reload(px->sasl, err, sizeof(err));
	if (rc < 0)
		px_log(px, 0, "SIGHUP: SASL credentials not reloaded, the old ones stay: %s", err);
	else if (rc > 0)
		px_log(px, 2, "SIGHUP: SASL credentials and keys reloaded");
	if (px->rules)
		px_rules_reload(px->rules);
	px_tls_reload(px->tls);
}

struct px_audit *px_audit_of(const struct px *px)
{
	return px->audit;
}

struct px_sasl *px_sasl_of(const struct px *px)
{
	return px->sasl;
}

struct px_rules *px_rules_of(const struct px *px)
{
	return px->rules;
}

struct px_tap *px_tap_of(const struct px *px)
{
	return px->tap;
}

struct px_mirror *px_mirror_of(const struct px *px)
{
	return px->mirror;
}

struct px_tapreg *px_tapreg_of(const struct px *px)
{
	return px->tapreg;
}

struct px_quota *px_quota_of(const struct px *px)
{
	return px->quota;
}

void px_free(struct px **pxp)
{
	struct px *px = *pxp;
	if (!px)
		return;
	if (px->athread_started) {
		px_stop(px);
		px_wait(px);
		pthread_join(px->athread, NULL);
	}
	/* Workers whose thread started are done (the acceptor waited for
	 * them), or, if px_start failed half-way, stopped here. */
	for (unsigned i = 0; i < px->nworkers; i++) {
		struct px_worker *wk = &px->workers[i];
		if (wk->started) {
			if (!px->athread_started)
				event_base_loopexit(wk->base, NULL);
			pthread_join(wk->thread, NULL);
		}
		px_tls_peek_close_all(wk);
		px_conn_close_all(wk);
		px_rules_ref_drop(&wk->rules_ref);
		rule_judge_free(&wk->judge);
		px_judged_free(&wk->judged);
		if (wk->names) {
			px_names_free(wk->names);
			free(wk->names);
			wk->names = NULL;
		}
		for (struct px_handoff *ho = wk->queue, *next; ho; ho = next) {
			next = ho->next;
			evutil_closesocket(ho->fd);
			free(ho);
		}
		if (wk->wake_ev)
			event_free(wk->wake_ev);
		if (wk->drain_ev)
			event_free(wk->drain_ev);
		if (wk->kill_ev)
			event_free(wk->kill_ev);
		if (wk->dns)
			evdns_base_free(wk->dns, 0);
		if (wk->base)
			event_base_free(wk->base);
		pthread_mutex_destroy(&wk->mu);
	}
	free(px->workers);
	close_listeners(px);
	if (px->stop_ev)
		event_free(px->stop_ev);
	if (px->check_ev)
		event_free(px->check_ev);
	if (px->drain_timer)
		event_free(px->drain_timer);
	if (px->resume_ev)
		event_free(px->resume_ev);
	if (px->kill_now_ev)
		event_free(px->kill_now_ev);
	if (px->gc_ev)
		event_free(px->gc_ev);
	if (px->abase)
		event_base_free(px->abase);
	pthread_mutex_destroy(&px->bmu);
	pthread_mutex_destroy(&px->smu);
	pthread_cond_destroy(&px->scond);
	free(px->brokers);
	kd_topics_free(&px->topics);
	px_rules_free(&px->rules); /* its watcher reloads into the audit: first */
	px_audit_free(&px->audit);
	px_sasl_free(&px->sasl);
	px_tap_close(&px->tap);      /* after every connection ended its flow */
	px_mirror_free(&px->mirror); /* ... and every job was done or lost */
	px_tls_free(&px->tls);
	px_tapreg_free(&px->tapreg);
	px_quota_free(&px->quota);
	px_conf_free(&px->conf);
	free(px);
	*pxp = NULL;
}
