/* px-conn.c: the data path. One struct px_conn is a client connection and
 * its upstream connection, both bufferevents of one worker's loop.
 *
 *   client --cbev--> [c2s: frame header -> kd_stream, move chains] --ubev--> broker
 *   client <--cbev-- [s2c: header; rewrite/clamp or move chains]  <--ubev-- broker
 *
 * Only frame headers are pulled up and decoded (kd_stream_frame_begin);
 * the bytes of a frame are then moved between evbuffers
 * (evbuffer_remove_buffer) without copying, or, when the destination's
 * output is empty, written straight from the source's input (forward(),
 * px_transport.write_now). A read callback first tops its input up with
 * what waits on the socket (read_more): libevent 2.1 reads 4 KiB per event
 * by itself, which was what held proxied throughput down (a 4 KiB read,
 * a write and two epoll_ctl per loop iteration). The exceptions are responses
 * kwire must edit (px_rewrite_wanted, ApiVersions): Metadata has its prefix
 * up to Topics rewritten and the rest streamed; Produce v10+ and Fetch v16+
 * are held in the input (the frame size goes first) while a skip-only walk
 * finds their top-level tagged section, which alone is copied and
 * rewritten (struct px_sedit); the small others are gathered whole,
 * rewritten, and the new frame is written (s2c_edit).
 *
 * Flow control: pump() moves what it may and flow() then enables reading
 * on a side only when the other side's output is below buffer_bytes, the
 * in-flight FIFO has room, and the upstream is connected. Every callback
 * ends in pump(), which is the one place that decides; a write callback
 * (output drained below half the watermark) resumes a paused reader.
 * Callbacks are deferred (BEV_OPT_DEFER_CALLBACKS), so pump never runs
 * re-entrantly. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>

#include "kd-sasl.h"
#include "kd-hdr.h"
#include "kd-schema.h"
#include "kd-stream.h"
#include "kd-throttle.h"
#include "kd-topics.h"
#include "kd-walk.h"
#include "kd.h"
#include "kd-tls.h"
#include "px-int.h"
#include "px-mirror.h"
#include "px-tap.h"
#include "px-quota.h"
#include "px-tls.h"
#include "px-records.h"
#include "rule-names.h"
#include "rule-mirror.h"
#include "rule.h"

/* Files of tap rules one connection writes to, besides the global tap. */
#define PX_CONN_TAPS 4
/* Request and response headers are small; a client id can reach 32 KiB. */
#define PX_HDR_PULL0 64
#define PX_MIN_WATERMARK (128u * 1024)
#define PX_LINGER_MS 2000 /* flushing to a client after its broker went away */
/* At most this much is read (read_more) or written (write_now,
 * max_single_write: libevent's default is 16 KiB) per socket per loop
 * iteration: a whole default-sized Fetch response (max.partition.fetch.bytes
 * 1 MiB) moves in one step, and one busy connection still cannot hold its
 * worker for long. 256 KiB measured about 20% slower on large Fetches. */
#define PX_IO_BURST (1024u * 1024)

/* A response whose addresses are rewritten while it streams, walked by
 * kd_walk (no tree, nothing copied) as its bytes arrive:
 *   PX_SE_PREFIX  Metadata: Brokers come before Topics. The prefix up to
 *                 Topics is rewritten; the rest streams, and is walked as
 *                 it passes (bytes after the body are noticed).
 *   PX_SE_TAIL    Produce v10+, Fetch v16+: NodeEndpoints is in the
 *                 top-level tagged section, after every record set. The
 *                 frame size goes first on the wire and depends on the
 *                 rewritten section, so the response is held whole (in
 *                 the upstream input, never copied or pulled up); only the
 *                 tagged section is copied out and rewritten. */
enum { PX_SE_NONE = 0, PX_SE_WHOLE, PX_SE_PREFIX, PX_SE_TAIL, PX_SE_LEARN };
/* PX_SE_LEARN: a response that pairs topic ids with names (CreateTopics,
 * DeleteTopics, ...; kd_topics_wants) is walked as it streams, unchanged,
 * and teaches the proxy's topic map (px_topics); Metadata v10+ does the
 * same in PX_SE_PREFIX. */

struct px_sedit {
	struct kd_walk walk;
	uint8_t mode;     /* PX_SE_PREFIX or PX_SE_TAIL; PX_SE_NONE: idle */
	uint8_t walking;  /* the walk goes on */
	uint8_t stopped;  /* stop point found: stop */
	uint8_t ended;    /* the body's fields end at end */
	uint32_t body_at; /* frame offset of the body */
	uint32_t fed;     /* frame offset the walk has reached */
	uint32_t front;   /* frame offset of the first byte still in the input */
	uint32_t stop, end;
	/* Topic learning: the TopicId and topic name of the struct being
	 * walked (and the walk depth each was seen at), paired at its end. */
	struct kd_topics *topics;
	unsigned id_depth, name_depth;
	uint8_t id[16];
	uint32_t name_len;
	uint8_t name[KD_WALK_CAP];
};

/* What the proxy remembers of one in-flight request: the user value of
 * its kd_stream FIFO entry (req_of). */
struct px_req {
	int32_t corr;
	int16_t key; /* -1: a SASL opaque token */
	int16_t ver;
	uint8_t sasl_mech;        /* key -1: the exchange's mechanism (kd-sasl.h) */
	struct kd_view client_id; /* kd_stream's stable copy */
	uint64_t t_mono, t_wall;
	uint32_t size;
	uint8_t *copy; /* PX_WANT_REQ: the first bytes of the frame */
	size_t copy_len;
	uint8_t trunc;
	/* Rules (px-judge.h): kwire's own answer, sent when the request reaches
	 * the head of the FIFO (the broker never saw it); or what to merge
	 * into the broker's answer to a request forwarded without its refused
	 * topics. */
	uint8_t *local;
	size_t local_len;
	struct kd_split *split;
	struct px_filter *filter; /* the answer's topics are filtered (px-judge.h) */
	uint8_t tap; /* taps the request and its answer go to: bit i = px_conn.tapw[i] */
	struct px_audit_pend *audit; /* what the audit records at the response */
	struct px_mjob *mjob;        /* a mirrored Produce or an EndTxn (px-mirror.h) */
	/* A Fetch whose response `rewrite:` rules may rewrite (px-records.h). */
	uint8_t rw_fetch;
	/* Names (px-names.h): the rewrite rule that maps this client's names
	 * (its set held by nrs), the KeyType of a FindCoordinator request,
	 * and whether the response was mapped already (before a merge). */
	struct rule_set *nrs;
	const struct rule *nrule;
	int8_t coord_kt;
	uint8_t names_done;
	struct px_qreq *q; /* quotas: what its response owes them (px-quota.h), or NULL */
};

struct px_conn {
	struct px_worker *wk;
	struct px *px;
	struct px_conn *next, *prev;
	struct bufferevent *cbev; /* client */
	struct bufferevent *ubev; /* upstream */
	struct kd_stream *ks;
	struct event *timer; /* connect timeout, then linger on close */
	int32_t broker_id;   /* -1: bootstrap */
	unsigned up_first, up_try;
	uint8_t up_ok;      /* upstream connected */
	uint8_t closing;    /* flushing cbev output, then free */
	uint8_t draining;   /* no new requests */
	uint8_t resp_whole; /* waiting for a whole response to edit */
	uint8_t client_eof; /* the client closed its side: never read again */
	uint8_t req_whole;  /* waiting for a whole request for the rules */
	uint8_t tls_up;     /* the client's TLS handshake is done */
	/* Quotas: the client is not read before mute_us (KIP-219), the
	 * response at the front is held until hold_us (older versions). */
	uint64_t mute_us, hold_us;
	struct event *qtimer;
	struct px_qlast *ql; /* the quota keys of its last request */
	uint8_t src_family;  /* the client's address, for the rules' source */
	uint8_t src_addr[16];
	uint8_t c_why;      /* why the client is not read now (PX_PAUSE_*) */
	uint8_t u_why;      /* why the broker is not read now (PX_PAUSE_*) */
	uint32_t req_left;  /* bytes of the current request still to move */
	uint32_t resp_left; /* bytes of the current response still to move */
	/* A response rewritten while it streams (Metadata, Produce v10+,
	 * Fetch v16+); allocated at the first. */
	struct px_sedit *se;
	uint8_t warned_trailing; /* bytes after a body: warned once */
	uint8_t warned_rw;       /* records a rewrite refused: warned once */
	/* The response being streamed: emitted to on_pair at its last byte. */
	struct px_req *cur;
	uint8_t cur_rewritten;
	uint32_t cur_size;
	uint8_t *cur_copy;
	size_t cur_copy_len;
	uint8_t cur_trunc;
	/* Correlation ids of the last PX_ACKS0_MAX Produce requests with
	 * acks=0 (allocated at the first): an answer to one of them is
	 * dropped, not taken for a protocol violation. */
	int32_t *acks0;
	unsigned acks0_next;
	uint32_t drop_left; /* bytes of a dropped response still to drain */
	/* The in-flight FIFO is the stream's (kd_stream_inflight): each entry's
	 * user value is its struct px_req, owned by the proxy from commit until
	 * the entry leaves the FIFO (kd-stream.h "Who owns a request's user
	 * value"). */
	uint8_t freeing; /* conn_free drains the FIFO: nothing is sent */
	size_t wm;       /* watermark: max(buffer_bytes, PX_MIN_WATERMARK) */
	char client_addr[64];
	/* Who the client is (px_conn_set_principal: mTLS, SASL), "" none. */
	char principal[PX_PRINCIPAL_MAX];
	char up_addr[PX_HOST_MAX + 8];
	char up_host[PX_HOST_MAX];
	uint16_t up_port;
	/* Taps (px-tap.h): slot 0 the global tap, slots 1.. the files of the
	 * tap rules this connection matched; each slot's flow is made at its
	 * first tapped frame. req_tap: the slots of the request being
	 * streamed; rtap_next: judge()'s tap rule slots for the request being
	 * committed. */
	struct px_tap *tapw[1 + PX_CONN_TAPS];
	struct px_tap_flow *tapf[1 + PX_CONN_TAPS];
	uint8_t ntapw;
	uint8_t tap_failed;
	uint8_t req_tap;
	uint8_t rtap_next;
	/* SASL (px-sasl.h): the client's exchange (NULL with sasl: off), kwire's
	 * own to the broker (NULL without upstream_sasl_*), the handshake
	 * timeout. The principal it yields goes to principal above. */
	struct px_sasl_conn *sc;
	struct px_sasl_up *su;
	struct event *sasl_timer;
	/* KIP-368 towards the broker: when kwire's session there is due for
	 * re-authentication (up_reauth_ev), no new request is forwarded
	 * (up_reauth 1) until none is in flight; kwire then re-authenticates
	 * (up_reauth 2, su set) and forwarding resumes. */
	struct event *up_reauth_ev;
	uint8_t up_reauth;
	/* Mirror (px-mirror.h): judge()'s job for the request being committed;
	 * the job of the request being streamed, which gets its bytes (owned
	 * here for acks=0, queued at its last byte; else its px_req's). */
	struct px_mjob *mjob_next;
	struct px_mjob *req_mjob;
	uint8_t req_mjob_own;
};

static void conn_free(struct px_conn *conn);
static int pump(struct px_conn *conn);
static void upstream_retry(struct px_conn *conn);

static const char *api_name(int16_t key)
{
	const char *name = kd_api_name(key);
	return name ? name : "?";
}

/* ---- tap (px-tap.h) ---- */

/* The connection's flow in tap slot i, made at the first tapped frame
 * between the client's and the broker's real addresses; NULL when there
 * is none. */
static struct px_tap_flow *tap_flow(struct px_conn *conn, unsigned i)
{
	struct px_tap *tap = i ? conn->tapw[i] : conn->px->tap;
	if (conn->tapf[i] || (conn->tap_failed & (1u << i)) || !tap || !conn->ubev)
		return conn->tapf[i];
	struct sockaddr_storage cs, us;
	socklen_t cl = sizeof(cs), ul = sizeof(us);
	evutil_socket_t cfd = bufferevent_getfd(conn->cbev), ufd = bufferevent_getfd(conn->ubev);
	if (cfd < 0 || ufd < 0 || getpeername(cfd, (struct sockaddr *)&cs, &cl) ||
	    getpeername(ufd, (struct sockaddr *)&us, &ul) ||
	    !(conn->tapf[i] = px_tap_flow_new(tap, (struct sockaddr *)&cs, (struct sockaddr *)&us)))
		conn->tap_failed |= (uint8_t)(1u << i);
	return conn->tapf[i];
}

/* The next frame of dir, of req's API, is tapped. */
static void tap_frame(struct px_conn *conn, const struct px_req *req, int dir)
{
	for (unsigned i = 0; i <= PX_CONN_TAPS; i++) {
		struct px_tap_flow *f = (req->tap & (1u << i)) ? tap_flow(conn, i) : NULL;
		if (f)
			px_tap_flow_frame(f, dir, req->key, req->ver);
	}
}

/* n bytes of src from off went in dir (a frame tapped in the slots of
 * mask); or, src NULL, n bytes at p. */
static void tap_bytes(struct px_conn *conn, unsigned mask, int dir, struct evbuffer *src,
                      size_t off, const void *p, size_t n)
{
	for (unsigned i = 0; mask && n && i <= PX_CONN_TAPS; i++) {
		if (!(mask & (1u << i)) || !conn->tapf[i])
			continue;
		if (src)
			px_tap_flow_buf(conn->tapf[i], dir, src, off, n);
		else
			px_tap_flow_mem(conn->tapf[i], dir, p, n);
	}
}

/* The tap rules of rs that req matches (judged: facts), as slot bits of
 * conn's taps (a file gets a slot at its first match). */
static unsigned tap_rules(struct px_conn *conn, const struct rule_set *rs,
                          const struct rule_req *req)
{
	unsigned mask = 0;
	for (unsigned r = 0; r < rs->n; r++) {
		struct rule *rule = &rs->rules[r];
		if (!rule_tap_matches(rule, req))
			continue;
		atomic_fetch_add_explicit(&rule->hits, 1, memory_order_relaxed);
		struct px_tap *tap =
		    px_tapreg_get(conn->px->tapreg, rule->tap->file, (uint64_t)rule->tap->max_bytes,
		                  rule->tap->files);
		unsigned i = 1;
		while (i <= conn->ntapw && conn->tapw[i] != tap)
			i++;
		if (!tap || (i > conn->ntapw && i > PX_CONN_TAPS))
			continue; /* not open, or more tap files than slots on one connection */
		if (i > conn->ntapw)
			conn->tapw[conn->ntapw = (uint8_t)i] = tap;
		mask |= 1u << i;
	}
	return mask;
}

/* n bytes of req's answer, at off in src, went to the client: the tap and
 * the mirror see them. */
static void s2c_seen(struct px_conn *conn, struct px_req *req, struct evbuffer *src, size_t off,
                     size_t n)
{
	tap_bytes(conn, req->tap, PX_TAP_S2C, src, off, NULL, n);
	if (req->mjob)
		px_mirror_resp_buf(req->mjob, src, off, n);
}

/* The request being committed went to the broker whole, as other bytes
 * than the client's (names mapped: the cluster's names): the mirror
 * copies those (n bytes of src at off, or at p), and the job is complete. */
static void mirror_whole(struct px_conn *conn, struct evbuffer *src, size_t off, const void *p,
                         size_t n)
{
	if (!conn->req_mjob)
		return;
	uint8_t *tmp = src ? malloc(n ? n : 1) : NULL;
	if (!src)
		px_mirror_req_frame(conn->req_mjob, p, n);
	else if (tmp && px_mirror_copy(src, off, tmp, n) == 0)
		px_mirror_req_frame(conn->req_mjob, tmp, n);
	free(tmp);
	if (conn->req_mjob_own)
		px_mirror_done(&conn->req_mjob);
	conn->req_mjob = NULL;
}

/* ---- plain TCP transport ---- */

static struct bufferevent *tcp_accepted(void *ctx, struct event_base *base, evutil_socket_t fd)
{
	(void)ctx;
	return bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
}

static struct bufferevent *tcp_connect(void *ctx, struct event_base *base, struct evdns_base *dns,
                                       const char *host, uint16_t port)
{
	(void)ctx;
	struct bufferevent *bev =
	    bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!bev)
		return NULL;
	if (bufferevent_socket_connect_hostname(bev, dns, AF_UNSPEC, host, port) < 0) {
		bufferevent_free(bev);
		return NULL;
	}
	return bev;
}

/* One FIONREAD and one readv straight into the input's free space: no
 * copy, and no chain larger than what is waiting. */
static size_t tcp_read_more(void *ctx, struct bufferevent *bev, size_t max)
{
	(void)ctx;
	evutil_socket_t fd = bufferevent_getfd(bev);
	struct evbuffer *in = bufferevent_get_input(bev);
	int avail = 0;
	if (fd < 0 || ioctl(fd, FIONREAD, &avail) < 0 || avail <= 0)
		return 0;
	size_t want = (size_t)avail < max ? (size_t)avail : max;
	/* A bufferevent keeps the end of its input frozen except while it
	 * reads itself (bufferevent_sock.c); this is such a read. */
	evbuffer_unfreeze(in, 0);
	struct evbuffer_iovec vec[2];
	int nvec = evbuffer_reserve_space(in, (ev_ssize_t)want, vec, 2);
	if (nvec <= 0) {
		evbuffer_freeze(in, 0);
		return 0;
	}
	struct iovec iov[2];
	size_t left = want;
	int niov = 0;
	for (; niov < nvec && left; niov++) {
		iov[niov].iov_base = vec[niov].iov_base;
		iov[niov].iov_len = vec[niov].iov_len < left ? vec[niov].iov_len : left;
		left -= iov[niov].iov_len;
	}
	ssize_t r = readv(fd, iov, niov);
	/* EAGAIN, EOF or an error (r <= 0) is left to the bufferevent's own
	 * next read, which reports it. */
	size_t rest = r > 0 ? (size_t)r : 0;
	int ncommit = 0;
	for (; ncommit < niov && rest; ncommit++) {
		vec[ncommit].iov_len = iov[ncommit].iov_len < rest ? iov[ncommit].iov_len : rest;
		rest -= vec[ncommit].iov_len;
	}
	size_t got = r > 0 && evbuffer_commit_space(in, vec, ncommit) == 0 ? (size_t)r : 0;
	evbuffer_freeze(in, 0);
	return got;
}

static size_t tcp_write_now(void *ctx, struct bufferevent *bev, struct evbuffer *src, size_t max)
{
	(void)ctx;
	evutil_socket_t fd = bufferevent_getfd(bev);
	if (fd < 0 || !max || evbuffer_get_length(bufferevent_get_output(bev)) ||
	    !(bufferevent_get_enabled(bev) & EV_WRITE))
		return 0;
	int n = evbuffer_write_atmost(src, fd, (ev_ssize_t)(max < PX_IO_BURST ? max : PX_IO_BURST));
	return n > 0 ? (size_t)n : 0;
}

static const char *tcp_describe(void *ctx, struct bufferevent *bev, int connected, char *buf,
                                size_t len)
{
	(void)ctx;
	(void)bev;
	(void)connected;
	(void)buf;
	(void)len;
	return NULL;
}

static int tcp_peer_principal(void *ctx, struct bufferevent *bev, char *out, size_t cap, char *why,
                              size_t whylen)
{
	(void)ctx;
	(void)bev;
	(void)out;
	(void)cap;
	(void)why;
	(void)whylen;
	return 0;
}

const struct px_transport px_transport_tcp = {
    .name = "tcp",
    .accepted = tcp_accepted,
    .connect = tcp_connect,
    .read_more = tcp_read_more,
    .write_now = tcp_write_now,
    .describe = tcp_describe,
    .peer_principal = tcp_peer_principal,
};

void px_conn_set_principal(struct px_conn *conn, const char *principal, size_t len)
{
	if (len >= sizeof(conn->principal))
		len = sizeof(conn->principal) - 1;
	memcpy(conn->principal, principal, len);
	conn->principal[len] = '\0';
}

const char *px_conn_principal(const struct px_conn *conn)
{
	return conn->principal;
}

/* ---- pairs ---- */

static void emit_pair(struct px_conn *conn, const struct px_req *req, uint32_t resp_size,
                      const uint8_t *resp_copy, size_t resp_copy_len, int resp_trunc, int no_resp,
                      int rewritten)
{
	struct px *px = conn->px;
	if (!px->hooks.on_pair && !req->audit)
		return;
	struct px_pair pair;
	memset(&pair, 0, sizeof(pair));
	pair.api_key = req->key;
	pair.api_version = req->ver;
	pair.correlation_id = req->corr;
	pair.client_id = req->client_id;
	pair.broker_id = conn->broker_id;
	pair.client_addr = conn->client_addr;
	pair.upstream_addr = conn->up_addr;
	pair.t_req_us = req->t_wall;
	pair.latency_us = px_now_us() - req->t_mono;
	pair.req_size = req->size;
	pair.resp_size = resp_size;
	pair.no_response = (uint8_t)no_resp;
	pair.rewritten = (uint8_t)rewritten;
	pair.sasl_mech = req->sasl_mech;
	pair.principal = conn->principal[0] ? conn->principal : NULL;
	pair.req_frame = req->copy;
	pair.req_frame_len = req->copy_len;
	pair.req_trunc = req->trunc;
	pair.resp_frame = resp_copy;
	pair.resp_frame_len = resp_copy_len;
	pair.resp_trunc = (uint8_t)resp_trunc;
	if (req->audit)
		px_audit_response(px->audit, req->audit, &pair, px->topics);
	if (px->hooks.on_pair)
		px->hooks.on_pair(px->hooks.arg, &pair);
}

static void req_release(struct px_req *req)
{
	px_audit_pend_free(&req->audit);
	free(req->copy);
	req->copy = NULL;
	free(req->local);
	req->local = NULL;
	px_mirror_lost(&req->mjob); /* never answered (done() took it otherwise) */
	if (req->split) {
		kd_split_free(req->split);
		free(req->split);
		req->split = NULL;
	}
	if (req->nrs)
		rule_set_unref(&req->nrs);
	req->nrule = NULL;
	px_qreq_free(&req->q);
	px_filter_free(&req->filter);
}

static void req_free(struct px_req *req)
{
	if (req) {
		req_release(req);
		free(req);
	}
}

/* The struct px_req of a FIFO entry (NULL: none was attached). */
static struct px_req *req_of(const struct kd_req_info *info)
{
	return (struct px_req *)(uintptr_t)info->user;
}

static uint32_t inflight(const struct px_conn *conn)
{
	return kd_stream_inflight(conn->ks);
}

static void send_local(struct px_conn *conn, struct px_req *req);
static void flush_local(struct px_conn *conn);

/* Produce with acks=0 gets no response (ProduceRequest.json), but
 * librdkafka's mock cluster answers it all the same; clients ignore such
 * answers. Remembers corr as one that may be answered so. */
#define PX_ACKS0_MAX 256

static void acks0_note(struct px_conn *conn, int32_t corr)
{
	if (!conn->acks0) {
		conn->acks0 = malloc(PX_ACKS0_MAX * sizeof(*conn->acks0));
		if (!conn->acks0)
			return; /* an answer would then close the connection */
		for (unsigned i = 0; i < PX_ACKS0_MAX; i++)
			conn->acks0[i] = -1;
	}
	conn->acks0[conn->acks0_next++ % PX_ACKS0_MAX] = corr;
}

/* Whether corr answers a remembered acks=0 Produce (forgotten then). */
static int acks0_take(struct px_conn *conn, int32_t corr)
{
	if (!conn->acks0 || corr < 0)
		return 0;
	for (unsigned i = 0; i < PX_ACKS0_MAX; i++) {
		if (conn->acks0[i] == corr) {
			conn->acks0[i] = -1;
			return 1;
		}
	}
	return 0;
}

/* ---- lifecycle ---- */

static void on_stream_event(void *arg, const struct kd_event *ev)
{
	struct px_conn *conn = arg;
	if (ev->type == KD_EV_ERROR)
		px_log(conn->px, 1, "%s: %s: %s", conn->client_addr,
		       ev->dir == KD_C2S ? "client" : "broker", ev->msg ? ev->msg : "bad frame");
	if (ev->type != KD_EV_POPPED || !req_of(&ev->req))
		return;
	/* A request left the FIFO without the broker's answer: kwire's own
	 * answer, due now (a response to a later request came), or a request
	 * never answered (the broker skipped it, or the connection ends). */
	struct px_req *r = req_of(&ev->req);
	if ((ev->flags & KD_EVF_LOCAL) && !conn->freeing) {
		send_local(conn, r);
	} else {
		px_count_api(conn->px, r->key, r->ver, PX_CNT_ERR);
		emit_pair(conn, r, 0, NULL, 0, 0, 1, 0);
	}
	req_free(r);
}

static void close_upstream(struct px_conn *conn)
{
	if (conn->ubev) {
		bufferevent_free(conn->ubev);
		conn->ubev = NULL;
	}
}

static void conn_free(struct px_conn *conn)
{
	struct px_worker *wk = conn->wk;
	struct px *px = conn->px;
	/* Requests that will never be answered (on_stream_event). */
	conn->freeing = 1;
	if (conn->ks)
		kd_stream_drain(conn->ks);
	req_free(conn->cur);
	free(conn->cur_copy);
	free(conn->acks0);
	free(conn->se);
	px_mirror_lost(&conn->mjob_next);
	if (conn->req_mjob_own)
		px_mirror_lost(&conn->req_mjob);
	conn->req_mjob = NULL;
	for (unsigned i = 0; i <= PX_CONN_TAPS; i++)
		px_tap_flow_end(&conn->tapf[i]);
	px_sasl_conn_free(&conn->sc);
	px_sasl_up_free(&conn->su);
	if (conn->sasl_timer)
		event_free(conn->sasl_timer);
	if (conn->up_reauth_ev)
		event_free(conn->up_reauth_ev);
	close_upstream(conn);
	if (conn->cbev)
		bufferevent_free(conn->cbev);
	if (conn->timer)
		event_free(conn->timer);
	if (conn->qtimer)
		event_free(conn->qtimer);
	px_qlast_free(&conn->ql);
	kd_stream_free(conn->ks);
	if (conn->prev)
		conn->prev->next = conn->next;
	else
		wk->conns = conn->next;
	if (conn->next)
		conn->next->prev = conn->prev;
	wk->nconns--;
	PX_DEC(px, conns_active, 1);
	free(conn);
	px_worker_conn_gone(wk);
}

/* Whether both outputs are written out (a side that is gone counts as
 * written). */
static int flushed(const struct px_conn *conn)
{
	if (conn->cbev && evbuffer_get_length(bufferevent_get_output(conn->cbev)))
		return 0;
	if (conn->ubev && conn->up_ok && evbuffer_get_length(bufferevent_get_output(conn->ubev)))
		return 0;
	return 1;
}

/* Closes the connection once what is queued either way has been written:
 * responses already read go to the client, requests already read (a
 * Produce with acks=0) go to the broker. Bounded by PX_LINGER_MS. Nothing
 * more is read. A side already dead is closed first by the caller
 * (close_upstream). */
static void conn_close_soft(struct px_conn *conn)
{
	if (conn->closing)
		return;
	conn->closing = 1;
	if (flushed(conn)) {
		conn_free(conn);
		return;
	}
	if (conn->cbev) {
		bufferevent_disable(conn->cbev, EV_READ);
		bufferevent_setwatermark(conn->cbev, EV_WRITE, 0, 0);
	}
	if (conn->ubev) {
		bufferevent_disable(conn->ubev, EV_READ);
		bufferevent_setwatermark(conn->ubev, EV_WRITE, 0, 0);
	}
	struct timeval tv = {PX_LINGER_MS / 1000, (PX_LINGER_MS % 1000) * 1000};
	evtimer_add(conn->timer, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_conn *conn = arg;
	(void)fd;
	(void)what;
	if (conn->closing) {
		conn_free(conn); /* linger over */
		return;
	}
	if (!conn->up_ok) {
		px_log(conn->px, 1, "%s: connect to %s timed out", conn->client_addr,
		       conn->up_addr);
		PX_INC(conn->px, upstream_connect_failures, 1);
		close_upstream(conn);
		upstream_retry(conn);
		return;
	}
	/* The client left and its last requests were not answered in time. */
	px_log(conn->px, 2, "%s: %u request(s) unanswered after the client left", conn->client_addr,
	       inflight(conn));
	conn_free(conn);
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg);
static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);

/* Connects to the next upstream: for the bootstrap listener the next
 * configured address, for a broker listener the broker's latest address.
 * Returns 0, or -1 when nothing is left to try (the caller closes). */
static int upstream_connect(struct px_conn *conn)
{
	struct px *px = conn->px;
	for (;;) {
		if (conn->broker_id < 0) {
			if (conn->up_try >= px->conf.nupstreams)
				return -1;
			const struct px_hostport *hp =
			    &px->conf
			         .upstreams[(conn->up_first + conn->up_try) % px->conf.nupstreams];
			snprintf(conn->up_host, sizeof(conn->up_host), "%s", hp->host);
			conn->up_port = hp->port;
		} else {
			if (conn->up_try >= 1)
				return -1;
			if (px_broker_addr(px, conn->broker_id, conn->up_host, &conn->up_port)) {
				px_log(px, 1, "%s: broker %d has no known address",
				       conn->client_addr, conn->broker_id);
				return -1;
			}
		}
		conn->up_try++;
		snprintf(conn->up_addr, sizeof(conn->up_addr), "%s:%u", conn->up_host,
		         conn->up_port);
		conn->ubev = px->tp->connect(px->tp->ctx, conn->wk->base, conn->wk->dns,
		                             conn->up_host, conn->up_port);
		if (!conn->ubev) {
			PX_INC(px, upstream_connect_failures, 1);
			px_log(px, 1, "%s: cannot connect to %s", conn->client_addr, conn->up_addr);
			continue;
		}
		bufferevent_setcb(conn->ubev, read_cb, write_cb, up_event_cb, conn);
		bufferevent_set_max_single_write(conn->ubev, PX_IO_BURST);
		bufferevent_setwatermark(conn->ubev, EV_READ, 0, conn->wm);
		/* A paused client resumes from this write callback, which fires
		 * once the output falls to half the watermark. */
		bufferevent_setwatermark(conn->ubev, EV_WRITE, conn->wm / 2, 0);
		bufferevent_disable(conn->ubev, EV_READ);
		struct timeval tv = {px->conf.connect_timeout_ms / 1000,
		                     (px->conf.connect_timeout_ms % 1000) * 1000};
		evtimer_add(conn->timer, &tv);
		return 0;
	}
}

/* Connects to the next upstream or, when none is left, closes. */
static void upstream_retry(struct px_conn *conn)
{
	if (upstream_connect(conn)) {
		px_log(conn->px, 1, "%s: no upstream reachable, closing", conn->client_addr);
		conn_free(conn);
	}
}

/* kwire authenticates the new upstream connection (upstream_sasl_*)
 * before the client's bytes go through: px-sasl.c speaks, this moves the
 * bytes. The connect timer keeps running: it bounds both. */
static void sasl_up_begin(struct px_conn *conn)
{
	struct kd_wbuf wb = {0};
	px_sasl_up_free(&conn->su); /* a previous upstream's */
	conn->su = px_sasl_up_new(conn->px->sasl, &conn->px->conf.sasl);
	if (conn->su)
		px_sasl_up_start(conn->su, &wb);
	if (!conn->su || wb.err) {
		kd_wbuf_free(&wb);
		px_log(conn->px, 0, "%s: out of memory", conn->client_addr);
		conn_free(conn);
		return;
	}
	evbuffer_add(bufferevent_get_output(conn->ubev), wb.p, wb.len);
	kd_wbuf_free(&wb);
	bufferevent_enable(conn->ubev, EV_READ);
}

/* The broker's session for kwire ends (KIP-368): re-authenticate once the
 * connection is quiet (pump, sasl_up_reauth_now). */
static void up_reauth_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_conn *conn = arg;
	(void)fd;
	(void)what;
	if (conn->closing || conn->up_reauth)
		return;
	conn->up_reauth = 1;
	pump(conn);
}

/* Schedules the re-authentication at 85% of the lifetime the broker gave,
 * leaving time to let requests in flight finish first. */
static void sasl_up_schedule(struct px_conn *conn, int64_t lifetime_ms)
{
	if (lifetime_ms <= 0)
		return;
	if (!conn->up_reauth_ev &&
	    !(conn->up_reauth_ev = evtimer_new(conn->wk->base, up_reauth_cb, conn))) {
		px_log(conn->px, 1, "%s: out of memory: the session at %s will not be renewed",
		       conn->client_addr, conn->up_addr);
		return;
	}
	int64_t ms = lifetime_ms * 85 / 100;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(conn->up_reauth_ev, &tv);
}

/* Nothing in flight and re-authentication due: kwire's SaslHandshake and
 * SaslAuthenticate go out; their answers are read by sasl_up_read, before
 * the stream sees any byte. Returns -1 when conn was freed. */
static int sasl_up_reauth_now(struct px_conn *conn)
{
	struct kd_wbuf wb = {0};
	conn->su = px_sasl_up_new(conn->px->sasl, &conn->px->conf.sasl);
	if (conn->su)
		px_sasl_up_start(conn->su, &wb);
	if (!conn->su || wb.err) {
		kd_wbuf_free(&wb);
		px_log(conn->px, 0, "%s: out of memory", conn->client_addr);
		conn_free(conn);
		return -1;
	}
	conn->up_reauth = 2;
	evbuffer_add(bufferevent_get_output(conn->ubev), wb.p, wb.len);
	kd_wbuf_free(&wb);
	px_log(conn->px, 3, "%s: re-authenticating to %s (KIP-368)", conn->client_addr,
	       conn->up_addr);
	return 0;
}

static void sasl_up_read(struct px_conn *conn)
{
	struct px *px = conn->px;
	struct kd_wbuf wb = {0};
	char why[400];
	int rc =
	    px_sasl_up_feed(conn->su, bufferevent_get_input(conn->ubev), &wb, why, sizeof(why));
	if (wb.len)
		evbuffer_add(bufferevent_get_output(conn->ubev), wb.p, wb.len);
	kd_wbuf_free(&wb);
	if (rc < 0) {
		px_log(px, 0, "%s: SASL to %s: %s; closing", conn->client_addr, conn->up_addr, why);
		conn_free(conn);
		return;
	}
	if (rc == 0)
		return;
	px_log(px, 3, "%s: %sauthenticated to %s as '%s' (%s)", conn->client_addr,
	       conn->up_reauth ? "re-" : "", conn->up_addr, px->conf.sasl.up_user,
	       kd_sasl_mech_name(px->conf.sasl.up_mech));
	sasl_up_schedule(conn, px_sasl_up_lifetime(conn->su));
	px_sasl_up_free(&conn->su);
	if (conn->up_reauth)
		px_sasl_up_reauthenticated(px->sasl);
	conn->up_reauth = 0;
	if (!conn->up_ok) /* the connect timeout; later the timer may be the drain's */
		evtimer_del(conn->timer);
	conn->up_ok = 1;
	pump(conn);
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct px_conn *conn = arg;
	struct px *px = conn->px;
	(void)bev;
	if (conn->closing) { /* flushing, and the broker left: nothing more to do */
		conn_free(conn);
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {
		conn->up_ok = !px->conf.sasl.up_mech;
		if (conn->up_ok)
			evtimer_del(conn->timer);
		int one = 1;
		evutil_socket_t fd = bufferevent_getfd(conn->ubev);
		if (fd >= 0)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		px_log(px, 3, "%s: connected to %s", conn->client_addr, conn->up_addr);
		if (px->conf.sasl.up_mech) {
			sasl_up_begin(conn); /* up_ok once kwire has authenticated */
			return;
		}
		pump(conn);
		return;
	}
	if (!conn->up_ok) {
		int e = EVUTIL_SOCKET_ERROR();
		char why[512];
		const char *tw = px->tp->describe(px->tp->ctx, bev, 0, why, sizeof(why));
		PX_INC(px, upstream_connect_failures, 1);
		px_log(px, 1, "%s: connect to %s failed: %s", conn->client_addr, conn->up_addr,
		       tw                              ? tw
		       : (what & BEV_EVENT_ERROR) && e ? evutil_socket_error_to_string(e)
		                                       : "closed");
		evtimer_del(conn->timer);
		close_upstream(conn);
		upstream_retry(conn);
		return;
	}
	/* The broker went away (EOF or error): the client's view of this
	 * connection is gone too; flush what it has already been sent. */
	if (what & BEV_EVENT_EOF)
		px_log(px, 2, "%s: broker %s closed the connection", conn->client_addr,
		       conn->up_addr);
	else
		px_log(px, 1, "%s: broker %s: connection error", conn->client_addr, conn->up_addr);
	/* Bytes already read from the broker are still forwarded. */
	if (pump(conn) == 0) {
		close_upstream(conn);
		conn_close_soft(conn);
	}
}

/* Tops up bev's input with what is already waiting on its socket, up to
 * its read high watermark (and PX_IO_BURST): the bufferevent itself read
 * at most 4 KiB (see px_transport.read_more). Only while bev is enabled
 * for reading, so flow() keeps the last word. */
static void read_more(struct px_conn *conn, struct bufferevent *bev)
{
	if (conn->closing || !(bufferevent_get_enabled(bev) & EV_READ))
		return;
	size_t high = 0;
	bufferevent_getwatermark(bev, EV_READ, NULL, &high);
	size_t len = evbuffer_get_length(bufferevent_get_input(bev));
	size_t room = PX_IO_BURST;
	if (high && high < len + room)
		room = high > len ? high - len : 0;
	if (room)
		conn->px->tp->read_more(conn->px->tp->ctx, bev, room);
}

/* Either side readable: move what can be moved. Both bufferevents of a
 * connection share these two callbacks; pump() looks at both directions. */
static void read_cb(struct bufferevent *bev, void *arg)
{
	struct px_conn *conn = arg;
	if (conn->su && bev == conn->ubev) {
		sasl_up_read(conn); /* kwire's own (re-)authentication */
		return;
	}
	read_more(arg, bev);
	pump(arg);
}

/* Either side drained below its write watermark: a closing connection
 * is freed once both are flushed, otherwise a paused reader may resume. */
static void write_cb(struct bufferevent *bev, void *arg)
{
	struct px_conn *conn = arg;
	(void)bev;
	if (conn->closing) {
		if (flushed(conn))
			conn_free(conn);
		return;
	}
	pump(conn);
}

static int c2s(struct px_conn *conn);

/* The client closed (or half-closed) its side. The whole requests it
 * sent before are still forwarded and answered (a Produce with acks=0
 * followed by a close must not be lost); the connection then drains like
 * at SIGTERM. */
static void client_gone(struct px_conn *conn)
{
	if (conn->closing || !conn->up_ok || !conn->ubev) {
		conn_free(conn);
		return;
	}
	if (c2s(conn) < 0)
		return;
	conn->client_eof = 1;
	conn->draining = 1;
	if (conn->req_left) {
		/* The client left in the middle of a request: the broker holds half
		 * a frame and will never answer it. */
		close_upstream(conn);
		conn_close_soft(conn);
		return;
	}
	/* Answers to what was sent are waited for at most drain_timeout_ms. */
	struct timeval tv = {conn->px->conf.drain_timeout_ms / 1000,
	                     (conn->px->conf.drain_timeout_ms % 1000) * 1000};
	evtimer_add(conn->timer, &tv);
	pump(conn);
}

static void cl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct px_conn *conn = arg;
	struct px *px = conn->px;
	if (what & BEV_EVENT_CONNECTED) {
		/* The client's TLS handshake is done: who it is. */
		char who[PX_PRINCIPAL_MAX], why[384];
		int n =
		    px->tp->peer_principal(px->tp->ctx, bev, who, sizeof(who), why, sizeof(why));
		if (n < 0) {
			px_log(px, 1, "%s: client refused: %s", conn->client_addr, why);
			conn_free(conn);
			return;
		}
		conn->tls_up = 1;
		if (n > 0) {
			px_conn_set_principal(conn, who, (size_t)n);
			px_log(px, 3, "%s: principal %s", conn->client_addr, conn->principal);
		}
		pump(conn);
		return;
	}
	if (!(what & BEV_EVENT_TIMEOUT)) {
		char why[512];
		const char *tw = px->tp->describe(px->tp->ctx, bev, conn->tls_up, why, sizeof(why));
		if (tw)
			px_log(px, conn->tls_up ? 2 : 1, "%s: client %s", conn->client_addr, tw);
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if ((inflight(conn) && !conn->req_left) || conn->closing) {
			/* Waiting for responses is not idleness; a client silent
			 * in the middle of a request is. */
			pump(conn);
			return;
		}
		px_log(conn->px, 2, "%s: idle for %u ms, closing", conn->client_addr,
		       conn->px->conf.idle_timeout_ms);
		conn_free(conn);
		return;
	}
	px_log(conn->px, 3, "%s: client %s", conn->client_addr,
	       what & BEV_EVENT_EOF ? "closed" : "connection error");
	if (what & BEV_EVENT_EOF)
		client_gone(conn);
	else
		conn_free(conn);
}

/* The client's address from "ip:port" or "[ip6]:port", for rules that
 * match on it. */
static void client_ip(struct px_conn *conn)
{
	char ip[64];
	const char *s = conn->client_addr;
	const char *end = s[0] == '[' ? strchr(s, ']') : strrchr(s, ':');
	if (s[0] == '[')
		s++;
	if (!end || end <= s || (size_t)(end - s) >= sizeof(ip))
		return;
	memcpy(ip, s, (size_t)(end - s));
	ip[end - s] = '\0';
	memset(conn->src_addr, 0, sizeof(conn->src_addr));
	if (inet_pton(AF_INET, ip, conn->src_addr) == 1)
		conn->src_family = 4;
	else if (inet_pton(AF_INET6, ip, conn->src_addr) == 1)
		conn->src_family = 6;
}

/* The client must authenticate within sasl_handshake_timeout_ms. */
static void sasl_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_conn *conn = arg;
	(void)fd;
	(void)what;
	if (conn->closing || px_sasl_authenticated(conn->sc))
		return;
	px_sasl_timed_out(conn->sc);
	px_log(conn->px, 1,
	       "%s: SASL: not authenticated within %u ms (sasl_handshake_timeout_ms): "
	       "closing",
	       conn->client_addr, conn->px->conf.sasl.handshake_timeout_ms);
	conn_free(conn);
}

static int sasl_conn_start(struct px_conn *conn)
{
	struct px *px = conn->px;
	unsigned ms = px->conf.sasl.handshake_timeout_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	conn->sc = px_sasl_conn_new(px->sasl, &px->conf.sasl);
	conn->sasl_timer = evtimer_new(conn->wk->base, sasl_timer_cb, conn);
	if (!conn->sc || !conn->sasl_timer) {
		px_log(px, 0, "%s: out of memory", conn->client_addr);
		conn_free(conn);
		return -1;
	}
	evtimer_add(conn->sasl_timer, &tv);
	return 0;
}

void px_conn_new(struct px_worker *wk, const struct px_handoff *ho)
{
	struct px *px = wk->px;
	struct px_conn *conn = calloc(1, sizeof(*conn));
	if (!conn) {
		evutil_closesocket(ho->fd);
		return;
	}
	conn->wk = wk;
	conn->px = px;
	conn->broker_id = ho->broker_id;
	conn->wm =
	    px->conf.buffer_bytes > PX_MIN_WATERMARK ? px->conf.buffer_bytes : PX_MIN_WATERMARK;
	memcpy(conn->client_addr, ho->client_addr, sizeof(conn->client_addr));
	client_ip(conn);
	/* Connections start on successive upstreams, spreading the load. */
	conn->up_first =
	    atomic_fetch_add_explicit(&px->up_rr, 1, memory_order_relaxed) % px->conf.nupstreams;
	struct kd_stream_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.max_frame = px->conf.max_frame;
	/* max_inflight pauses the client before the stream's FIFO (the
	 * proxy's only one) could overflow. */
	cfg.max_inflight = px->conf.max_inflight + 16;
	cfg.sasl = KD_SASL_AUTO;
	cfg.on_event = on_stream_event;
	cfg.arg = conn;
	conn->ks = kd_stream_new(&cfg);
	conn->cbev = px->tp->accepted(px->tp->ctx, wk->base, ho->fd);
	conn->timer = evtimer_new(wk->base, timer_cb, conn);
	/* Linked in first, so that conn_free can unlink on any failure. */
	conn->next = wk->conns;
	if (wk->conns)
		wk->conns->prev = conn;
	wk->conns = conn;
	wk->nconns++;
	PX_INC(px, conns_active, 1);
	if (!conn->ks || !conn->cbev || !conn->timer) {
		if (!conn->cbev)
			evutil_closesocket(ho->fd);
		px_log(px, 0, "%s: out of memory", conn->client_addr);
		conn_free(conn);
		return;
	}
	if (px->conf.sasl.mode != PX_SASL_OFF && sasl_conn_start(conn) < 0)
		return;
	bufferevent_setcb(conn->cbev, read_cb, write_cb, cl_event_cb, conn);
	bufferevent_set_max_single_write(conn->cbev, PX_IO_BURST);
	bufferevent_setwatermark(conn->cbev, EV_READ, 0, conn->wm);
	bufferevent_setwatermark(conn->cbev, EV_WRITE, conn->wm / 2, 0);
	if (px->conf.idle_timeout_ms) {
		struct timeval tv = {px->conf.idle_timeout_ms / 1000,
		                     (px->conf.idle_timeout_ms % 1000) * 1000};
		bufferevent_set_timeouts(conn->cbev, &tv, NULL);
	}
	/* Nothing is read from the client before the upstream is connected,
	 * so a failed bootstrap connect can move on to the next upstream
	 * without replaying anything. */
	bufferevent_disable(conn->cbev, EV_READ);
	px_log(px, 3, "%s: accepted (broker %d)", conn->client_addr, conn->broker_id);
	upstream_retry(conn);
}

/* ---- the two directions ---- */

/* Pulls up enough of in to parse one frame header in direction dir.
 * Returns KD_OK (fi filled), KD_NEED_MORE, or a negative error. */
static int frame_begin(struct px_conn *conn, struct evbuffer *in, enum kd_dir dir,
                       struct kd_frame_info *fi)
{
	size_t avail = evbuffer_get_length(in);
	size_t want = PX_HDR_PULL0;
	for (;;) {
		size_t n = avail < want ? avail : want;
		const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
		if (!p && n)
			return KD_ENOMEM;
		int rc = kd_stream_frame_begin(conn->ks, dir, p, n, fi);
		if (rc != KD_NEED_MORE)
			return rc;
		if (fi->need <= n) /* the decoder asked for what it had: do not spin */
			return n == avail ? KD_NEED_MORE : KD_EMALFORMED;
		if (fi->need > avail)
			return KD_NEED_MORE;
		want = fi->need;
	}
}

/* Request copies wait in the FIFO for their responses. Past
 * PX_COPY_FULL requests in flight, copies shrink to PX_COPY_SMALL bytes
 * (enough for headers and most small bodies), so that the copies of one
 * connection stay below PX_COPY_FULL * frame_copy_max + max_inflight *
 * PX_COPY_SMALL bytes. */
#define PX_COPY_FULL 8
#define PX_COPY_SMALL 4096u

/* How many bytes of a frame of total bytes the hook gets. */
static size_t copy_need(const struct px_conn *conn, uint32_t total, int is_req)
{
	size_t limit = conn->px->hooks.frame_copy_max;
	if (is_req && inflight(conn) >= PX_COPY_FULL && limit > PX_COPY_SMALL)
		limit = PX_COPY_SMALL;
	return total < limit ? total : limit;
}

/* How many bytes of a response (total bytes) to req are copied: what the
 * hook asks for, or what the audit reads of it (px-audit.h); 0: none. */
static size_t resp_copy_need(const struct px_conn *conn, const struct px_req *req, uint32_t total)
{
	size_t n = (conn->px->hooks.want_frames & PX_WANT_RESP) ? copy_need(conn, total, 0) : 0;
	size_t a = req && req->audit ? px_audit_copy_need(req->audit, total) : 0;
	return a > n ? a : n;
}

/* Copies the first n bytes of a frame of total bytes at the start of in. */
static uint8_t *copy_n(struct evbuffer *in, uint32_t total, size_t n, size_t *len, uint8_t *trunc)
{
	uint8_t *copy = malloc(n ? n : 1);
	if (!copy)
		return NULL;
	evbuffer_copyout(in, copy, n);
	*len = n;
	*trunc = n < total;
	return copy;
}

/* Copies the first copy_need() bytes of a frame at the start of in. */
static uint8_t *copy_frame(struct px_conn *conn, struct evbuffer *in, uint32_t total, int is_req,
                           size_t *len, uint8_t *trunc)
{
	return copy_n(in, total, copy_need(conn, total, is_req), len, trunc);
}

/* Moves up to max bytes from the front of in to dst: what dst's socket
 * takes at once is written straight (px_transport.write_now), the rest is
 * moved into dst's output as chains. Returns the bytes moved (0 when in is
 * empty). */
static size_t forward(struct px_conn *conn, struct evbuffer *in, struct bufferevent *dst,
                      size_t max)
{
	const struct px_transport *tp = conn->px->tp;
	size_t n = evbuffer_get_length(in);
	if (n > max)
		n = max;
	if (!n)
		return 0;
	size_t done = tp->write_now(tp->ctx, dst, in, n);
	if (done < n) {
		int moved = evbuffer_remove_buffer(in, bufferevent_get_output(dst), n - done);
		if (moved > 0)
			done += (size_t)moved;
	}
	return done;
}

/* Who the client is, for the rules. */
static void conn_who(const struct px_conn *conn, struct rule_who *who)
{
	memset(who, 0, sizeof(*who));
	who->src_family = conn->src_family;
	who->broker_id = conn->broker_id;
	memcpy(who->src_addr, conn->src_addr, sizeof(who->src_addr));
	who->principal = (struct kd_view){(const uint8_t *)conn->principal,
	                                  (uint32_t)strlen(conn->principal), 0};
}

/* ---- quotas (px-quota.c counts and decides; this mutes and holds) ---- */

static void qtimer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_conn *conn = arg;
	(void)fd;
	(void)what;
	/* Waits that are over are done with: qtimer_sync arms no more for them. */
	uint64_t now = px_now_us();
	if (conn->mute_us <= now)
		conn->mute_us = 0;
	if (conn->hold_us <= now)
		conn->hold_us = 0;
	pump(conn);
}

/* Whether the client is not read for a throttle now (1 ms of slack: the
 * timer may fire a hair before the clock says so). */
static int muted(const struct px_conn *conn)
{
	return conn->mute_us && px_now_us() + 1000 < conn->mute_us;
}

/* Does not read the client for ms from now: a broker does not read a
 * throttled client's connection for its throttle time (KIP-219), and
 * reads one request at a time, so nothing the client pipelined meanwhile
 * gets in either. */
static void mute(struct px_conn *conn, uint32_t ms)
{
	uint64_t until = px_now_us() + (uint64_t)ms * 1000;
	if (!ms || until <= conn->mute_us)
		return;
	if (!muted(conn))
		px_quota_note(conn->px->quota, PX_Q_MUTED);
	conn->mute_us = until;
}

/* Arms the quota timer for the earliest of the mute's end and the held
 * response's release (from flow(), after every pump), even one already
 * past: px_quota_timer_at. */
static void qtimer_sync(struct px_conn *conn)
{
	uint64_t now = px_now_us(), at = px_quota_timer_at(conn->mute_us, conn->hold_us);
	if (!at)
		return;
	if (!conn->qtimer && !(conn->qtimer = evtimer_new(conn->wk->base, qtimer_cb, conn))) {
		/* Without a timer nothing would end the wait: do not wait. */
		conn->mute_us = conn->hold_us = 0;
		return;
	}
	uint64_t d = at > now ? at - now : 0;
	struct timeval tv = {(time_t)(d / 1000000), (suseconds_t)(d % 1000000)};
	evtimer_add(conn->qtimer, &tv);
}

/* Whether the keys of the client's last request are throttled (maybe by
 * another connection of the same client): then its next request is not
 * read before that throttle ends (px_quota_wait). */
static int quota_wait(struct px_conn *conn)
{
	uint64_t now = px_now_us(), until = px_quota_wait(conn->px->quota, conn->ql, now);
	if (until <= now + 1000)
		return 0;
	if (!muted(conn))
		px_quota_note(conn->px->quota, PX_Q_MUTED);
	conn->mute_us = until;
	return 1;
}

/* Counts req (committed, with its quota hits in wk->judged) and mutes the
 * client for the throttle it asks for. Out of memory, the request goes on
 * unthrottled (logged): quotas never cost a client its connection. */
static void quota_request(struct px_conn *conn, struct px_req *req, int act)
{
	struct px *px = conn->px;
	struct px_quota_who who = {conn->client_addr, req->client_id,  req->key, req->ver,
	                           conn->principal,   conn->broker_id, req->corr};
	long ms = px_quota_request(px, px->quota, conn->wk->rules_ref.rs, &conn->wk->judged, &who,
	                           act != PX_J_ANSWER && act != PX_J_DROP && act != PX_J_CLOSE,
	                           px_now_us(), &req->q);
	if (ms < 0 || px_quota_remember(&conn->ql, conn->wk->rules_ref.rs, &conn->wk->judged))
		px_log(px, 0, "%s: out of memory counting a request against its quotas",
		       conn->client_addr);
	mute(conn, ms > 0 ? (uint32_t)ms : 0);
}

/* judge(): the whole request is not in yet. */
#define PX_JUDGE_WAIT 100

/* Judges the request whose header is in fi under the rules in force
 * (px-judge.h). When the rules want its body, waits for the whole frame
 * (the read watermark grows to it, at most max_frame_bytes). Returns an
 * enum px_judge_act (the judgement is in wk->judged), PX_JUDGE_WAIT, or -1
 * when conn was freed. */
static int judge(struct px_conn *conn, struct evbuffer *in, struct kd_frame_info *fi,
                 uint32_t total)
{
	struct px *px = conn->px;
	struct px_worker *wk = conn->wk;
	struct rule_set *rs = px_rules_current(px->rules, &wk->rules_ref);
	wk->judged.nquotas = 0;
	wk->judged.filter = 0;
	struct px_judge_in jin = {
	    .fi = fi,
	    .who = {.src_family = conn->src_family, .broker_id = conn->broker_id},
	    .topics = px->topics,
	};
	memcpy(jin.who.src_addr, conn->src_addr, sizeof(jin.who.src_addr));
	jin.who.principal = (struct kd_view){(const uint8_t *)conn->principal,
	                                     (uint32_t)strlen(conn->principal), 0};
	if (!rs->n)
		return PX_J_FORWARD;
	int walked = -2; /* not walked: the header alone, or gathered whole */
	if (px_judge_needs_frame(rs, &jin)) {
		walked = PX_JUDGE_GATHER;
		if (evbuffer_get_length(in) < total) {
			if (total > conn->wm)
				bufferevent_setwatermark(conn->cbev, EV_READ, 0, total);
			conn->req_whole = 1;
			return PX_JUDGE_WAIT;
		}
		if (conn->req_whole) {
			bufferevent_setwatermark(conn->cbev, EV_READ, 0, conn->wm);
			conn->req_whole = 0;
		}
		/* Judged in place when its topic names are all the rules read. */
		walked = px_judge_walk(&wk->judge, rs, &jin, in, total, &wk->judged);
		if (walked < 0) {
			px_log(px, 0, "%s: out of memory judging a request", conn->client_addr);
			conn_free(conn);
			return -1;
		}
	}
	if (walked == PX_JUDGE_GATHER) {
		jin.frame = evbuffer_pullup(in, total);
		jin.len = total;
		/* The pullup may have moved what fi's views point into. */
		if (!jin.frame ||
		    kd_stream_frame_begin(conn->ks, KD_C2S, jin.frame, total, fi) != KD_OK) {
			px_log(px, 0, "%s: out of memory judging a request", conn->client_addr);
			conn_free(conn);
			return -1;
		}
	}
	if (walked != PX_J_FORWARD && px_judge(&wk->judge, rs, &jin, &wk->judged) != KD_OK) {
		px_log(px, 0, "%s: out of memory judging a request", conn->client_addr);
		conn_free(conn);
		return -1;
	}
	px_mirror_lost(&conn->mjob_next);
	conn->mjob_next = px_mirror_request(px->mirror, rs, wk->judged.act, fi, &jin.who);
	conn->rtap_next = rs->nsec[RULE_TAP] && px->tapreg
	                      ? (uint8_t)tap_rules(conn, rs, &wk->judge.facts.req)
	                      : 0;
	return wk->judged.act;
}

/* The audit of the request fi just judged (px-audit.h): its refusal and
 * Produce records are written now; what its response completes is
 * returned, for the request's FIFO entry. */
static struct px_audit_pend *audit_request(struct px_conn *conn, const struct kd_frame_info *fi)
{
	struct px_worker *wk = conn->wk;
	struct rule_set *rs = wk->rules_ref.rs;
	if (!rs || !rs->n || (!wk->judged.naudits && wk->judged.act == PX_J_FORWARD))
		return NULL;
	struct px_audit_who who = {conn->client_addr,         fi->req_hdr.client_id,
	                           conn->principal,           conn->broker_id,
	                           fi->req_hdr.api_key,       fi->req_hdr.api_version,
	                           fi->req_hdr.correlation_id};
	return px_audit_request(conn->px->audit, rs, &wk->judge, &wk->judged, &who);
}

/* Counts and logs what `rewrite:` rules did to a request's records (jd)
 * or a response's (res, when jd is NULL). */
static void rw_note(struct px_conn *conn, const struct px_req *req, const struct px_judged *jd,
                    const struct rule_rw_out *res)
{
	struct px *px = conn->px;
	unsigned records = jd ? jd->rw_records : res->records;
	unsigned passed = jd ? jd->rw_passed : res->passed;
	unsigned refused = jd ? jd->rw_refused : res->refused;
	const char *msg = jd ? jd->rw_msg : res->msg;
	if (jd && jd->rewritten)
		PX_INC(px, rw_requests, 1);
	else if (!jd && res->changed)
		PX_INC(px, rw_responses, 1);
	PX_INC(px, rw_records, records);
	PX_INC(px, rw_passed, passed);
	PX_INC(px, rw_refused, refused);
	/* A consumer refused keeps fetching the same records: warn once per
	 * connection, then at debug level (the counters count them all). */
	int level = refused && !conn->warned_rw ? 1 : 3;
	if (refused)
		conn->warned_rw = 1;
	if (passed || refused)
		px_log(px, level,
		       "%s: %s v%d #%d: rewrite: %u partition(s) refused, %u passed "
		       "unchanged: %s",
		       conn->client_addr, api_name(req->key), req->ver, req->corr, refused, passed,
		       msg);
}

/* Does what the rules decided for a request that is not forwarded as it
 * is (act != PX_J_FORWARD); req was committed to the stream, and is in its
 * FIFO (which owns it) unless fi says no response is due (then it is
 * freed here). Returns -1 when conn was freed, else 0. */
static int rules_act(struct px_conn *conn, struct evbuffer *in, struct px_req *req,
                     const struct kd_frame_info *fi, uint32_t total, int act)
{
	struct px *px = conn->px;
	struct px_judged *jd = &conn->wk->judged;
	const char *api = api_name(req->key);
	const char *rule = jd->rule ? jd->rule->name : "?";
	if (act == PX_J_CLOSE) {
		PX_INC(px, rules_closed, 1);
		px_log(px, 1,
		       "%s: %s v%d #%d refused by rule '%s', but its body does not decode: "
		       "closing",
		       conn->client_addr, api, req->ver, req->corr, rule);
		if (fi->flags & KD_EVF_NO_RESPONSE)
			req_free(req);
		conn_free(conn);
		return -1;
	}
	tap_bytes(conn, req->tap, PX_TAP_C2S, in, 0, NULL, total);
	if (req->mjob)
		px_mirror_req_buf(req->mjob, in, 0, total);
	evbuffer_drain(in, total);
	PX_INC(px, bytes_in_client, total);
	rw_note(conn, req, jd, 0);
	if (act == PX_J_REWRITE) {
		/* The request with its records rewritten, in place of the frame:
		 * its buffer handed to the output, not copied. */
		size_t flen = jd->out.len;
		if (req->mjob)
			px_mirror_req_frame(req->mjob, jd->out.p, flen);
		if (px_records_hand_over(bufferevent_get_output(conn->ubev), &jd->out, 0))
			px_log(px, 0, "%s: out of memory forwarding a rewritten request",
			       conn->client_addr);
		PX_INC(px, bytes_out_upstream, flen);
		if (fi->flags & KD_EVF_NO_RESPONSE) {
			acks0_note(conn, req->corr);
			emit_pair(conn, req, 0, NULL, 0, 0, 1, 0);
			px_mirror_done(&req->mjob); /* acks=0: nothing to wait for */
			req_free(req);              /* acks=0: never in the FIFO */
			return 0;
		}
		PX_MAX(px, inflight_max, inflight(conn));
		return 0;
	}
	if (act == PX_J_DROP) {
		PX_INC(px, rules_dropped, 1);
		px_log(px, 3, "%s: %s (acks=0) #%d refused by rule '%s' (%s): dropped",
		       conn->client_addr, api, req->corr, rule, kd_error_name(jd->error));
		emit_pair(conn, req, 0, NULL, 0, 0, 1, 0);
		req_free(req); /* acks=0: never in the FIFO */
		return 0;
	}
	if (act == PX_J_SPLIT) {
		PX_INC(px, rules_split, 1);
		evbuffer_add(bufferevent_get_output(conn->ubev), jd->out.p, jd->out.len);
		PX_INC(px, bytes_out_upstream, jd->out.len);
		px_log(px, 3,
		       "%s: %s #%d: %u of %u topics refused by rule '%s' (%s), the rest "
		       "forwarded",
		       conn->client_addr, api, req->corr, jd->nrefused, jd->ntopics, rule,
		       kd_error_name(jd->error));
		if (fi->flags & KD_EVF_NO_RESPONSE) {
			acks0_note(conn, req->corr);
			emit_pair(conn, req, 0, NULL, 0, 0, 1, 0);
			px_mirror_done(&req->mjob); /* acks=0: its bytes are in (above) */
			req_free(req);
			return 0;
		}
		req->split = malloc(sizeof(*req->split));
		if (req->split) {
			*req->split = jd->split;
			memset(&jd->split, 0, sizeof(jd->split));
		}
	} else { /* PX_J_ANSWER */
		PX_INC(px, rules_answered, 1);
		px_log(px, 3, "%s: %s v%d #%d refused by rule '%s' (%s), answered by kwire",
		       conn->client_addr, api, req->ver, req->corr, rule, kd_error_name(jd->error));
		req->local = malloc(jd->out.len);
		if (req->local) {
			memcpy(req->local, jd->out.p, jd->out.len);
			req->local_len = jd->out.len;
		}
	}
	if (act == PX_J_SPLIT ? !req->split : !req->local) {
		px_log(px, 0, "%s: out of memory", conn->client_addr);
		conn_free(conn); /* which drains req */
		return -1;
	}
	PX_MAX(px, inflight_max, inflight(conn));
	flush_local(conn);
	return 0;
}

/* Whether the response to this Fetch is rewritten by `rewrite:` rules. */
static int fetch_rw_wanted(struct px_conn *conn, const struct kd_frame_info *fi,
                           struct kd_view client_id)
{
	struct rule_set *rs = px_rules_current(conn->px->rules, &conn->wk->rules_ref);
	struct kd_req_hdr h = fi->req_hdr;
	struct rule_who who;
	conn_who(conn, &who);
	h.client_id = client_id;
	return px_records_fetch_wanted(rs, &h, &who);
}

/* The connection's principal follows its SASL state. */
static void sasl_principal(struct px_conn *conn)
{
	if (px_sasl_authenticated(conn->sc)) {
		const char *p = px_sasl_principal(conn->sc);
		px_conn_set_principal(conn, p, strlen(p));
	}
}

/* The client frame fi under SASL (px_sasl_client_frame). Returns 0 to go
 * on with it (forward), 1 when kwire answered it (consumed), PX_JUDGE_WAIT
 * for the rest of the frame, -1 when conn was freed. */
static int sasl_c2s(struct px_conn *conn, struct evbuffer *in, struct kd_frame_info *fi,
                    uint32_t total)
{
	struct px *px = conn->px;
	const uint8_t *frame = NULL;
	if (px_sasl_wants_frame(conn->sc, fi)) {
		if (evbuffer_get_length(in) < total) {
			if (total > conn->wm)
				bufferevent_setwatermark(conn->cbev, EV_READ, 0, total);
			conn->req_whole = 1;
			return PX_JUDGE_WAIT;
		}
		if (conn->req_whole) {
			bufferevent_setwatermark(conn->cbev, EV_READ, 0, conn->wm);
			conn->req_whole = 0;
		}
		frame = evbuffer_pullup(in, total);
		if (!frame || kd_stream_frame_begin(conn->ks, KD_C2S, frame, total, fi) != KD_OK) {
			px_log(px, 0, "%s: out of memory", conn->client_addr);
			conn_free(conn);
			return -1;
		}
	}
	struct px_sasl_res res;
	memset(&res, 0, sizeof(res));
	int act = px_sasl_client_frame(conn->sc, fi, frame, frame ? total : 0, px_now_us(), &res);
	sasl_principal(conn);
	if (res.level)
		px_log(px, res.level, "%s: %s", conn->client_addr, res.why);
	if (act == PX_SA_FORWARD) {
		kd_wbuf_free(&res.answer);
		return 0;
	}
	if (act == PX_SA_CLOSE || res.answer.err) {
		kd_wbuf_free(&res.answer);
		conn_free(conn);
		return -1;
	}
	/* kwire's answer, in request order: a local entry of the stream's FIFO
	 * (which owns req from the commit on) */
	struct px_req *req = calloc(1, sizeof(*req));
	if (!req) {
		kd_wbuf_free(&res.answer);
		px_log(px, 0, "%s: out of memory", conn->client_addr);
		conn_free(conn);
		return -1;
	}
	if (px->hooks.want_frames & PX_WANT_REQ)
		req->copy = copy_frame(conn, in, total, 1, &req->copy_len, &req->trunc);
	req->t_mono = px_now_us();
	req->t_wall = px_wall_us();
	req->size = fi->size;
	req->local = res.answer.p;
	req->local_len = res.answer.len;
	if (fi->kind == KD_EV_REQUEST) {
		req->key = fi->req_hdr.api_key;
		req->ver = fi->req_hdr.api_version;
		req->corr = fi->req_hdr.correlation_id;
	} else {
		req->key = -1;
		req->corr = -1;
		req->sasl_mech = fi->sasl_mech;
	}
	fi->ts_us = req->t_wall;
	fi->user = (uintptr_t)req;
	fi->flags |= KD_EVF_LOCAL;
	if (kd_stream_frame_commit(conn->ks, KD_C2S, fi, NULL, req->t_wall) != KD_OK) {
		req_free(req);
		PX_INC(px, decode_errors, 1);
		conn_free(conn);
		return -1;
	}
	if (fi->kind == KD_EV_REQUEST) {
		req->client_id = fi->req_hdr.client_id; /* the stream's stable copy */
		px_count_api(px, req->key, req->ver, PX_CNT_REQ);
	}
	evbuffer_drain(in, total);
	PX_INC(px, bytes_in_client, total);
	PX_MAX(px, inflight_max, inflight(conn));
	flush_local(conn);
	if (res.v0)
		kd_stream_sasl_v0(conn->ks, res.v0 > 0 ? res.v0_mech : KD_SASL_MECH_NONE);
	if (act == PX_SA_ANSWER_CLOSE)
		conn->draining = 1; /* closes once the answer is written, as Kafka does */
	else if (px_sasl_authenticated(conn->sc) && conn->sasl_timer)
		evtimer_del(conn->sasl_timer);
	return 1;
}

/* ---- names (px-names.h) ---- */

static int names_walk(struct px_conn *conn, struct evbuffer *in, uint32_t total, uint32_t body_at,
                      int16_t key, int16_t ver, int is_req, const struct rule *rule);

/* The rewrite rule that maps the names of the request whose header is in
 * fi (into *rule, with the set in *rs), and whether it must be gathered
 * whole first: returns PX_JUDGE_WAIT until it is, else 0. A Produce
 * request whose names are all in (one topic) goes on before its records
 * are: it streams, unless mirror rules are loaded (a mirror job copies the
 * whole request with the cluster's names, mirror_whole). */
static int names_pick(struct px_conn *conn, struct evbuffer *in, const struct kd_frame_info *fi,
                      uint32_t total, struct rule_set **rs, const struct rule **rule)
{
	struct rule_set *cur = px_rules_current(conn->px->rules, &conn->wk->rules_ref);
	const struct kd_req_hdr *h = &fi->req_hdr;
	*rule = NULL;
	if (!cur->nsec[RULE_REWRITE] || !px_names_wants_request(h->api_key, h->api_version))
		return 0;
	struct rule_req rq = {
	    .api_key = h->api_key,
	    .api_version = h->api_version,
	    .client_id = h->client_id,
	    .principal = {(const uint8_t *)conn->principal, (uint32_t)strlen(conn->principal), 0},
	    .src_family = conn->src_family,
	    .broker_id = conn->broker_id,
	    .acks = -2};
	memcpy(rq.src_addr, conn->src_addr, sizeof(rq.src_addr));
	if (!(*rule = rule_names_for(cur, &rq)))
		return 0;
	*rs = cur;
	if (evbuffer_get_length(in) < total && px_names_splices(h->api_key, h->api_version, 1) &&
	    !cur->nsec[RULE_MIRROR]) {
		int sw =
		    names_walk(conn, in, total, 4 + h->len, h->api_key, h->api_version, 1, *rule);
		if (sw == 1 || (sw == 2 && evbuffer_get_length(in) < conn->wm))
			return sw == 1 ? 0 : PX_JUDGE_WAIT;
	}
	if (evbuffer_get_length(in) < total) {
		if (total > conn->wm)
			bufferevent_setwatermark(conn->cbev, EV_READ, 0, total);
		conn->req_whole = 1;
		return PX_JUDGE_WAIT;
	}
	if (conn->req_whole) {
		bufferevent_setwatermark(conn->cbev, EV_READ, 0, conn->wm);
		conn->req_whole = 0;
	}
	return 0;
}

/* Maps the names of a request the rules forward (act: PX_J_FORWARD, or
 * PX_J_SPLIT / PX_J_REWRITE with the frame in wk->judged.out) under rule. Returns
 * the act that follows (a refusal is answered like a rules deny, from
 * wk->judged), with *mapped set when wk->names->out holds the frame to
 * forward instead; -1 when conn was freed. */
static int names_req(struct px_conn *conn, struct evbuffer *in, struct kd_frame_info *fi,
                     uint32_t total, int act, const struct rule *rule, int8_t *coord_kt,
                     int *mapped)
{
	struct px_worker *wk = conn->wk;
	struct px_judged *jd = &wk->judged;
	*mapped = 0;
	if (!wk->names && !(wk->names = calloc(1, sizeof(*wk->names))))
		goto oom;
	/* A split or a records rewrite: the frame kwire forwards is jd->out. */
	int own = act == PX_J_SPLIT || act == PX_J_REWRITE;
	const uint8_t *frame = own ? jd->out.p : evbuffer_pullup(in, total);
	size_t len = own ? jd->out.len : total;
	/* The pullup may have moved what fi's views point into. */
	if (!frame || (!own && kd_stream_frame_begin(conn->ks, KD_C2S, frame, total, fi) != KD_OK))
		goto oom;
	struct px_names *pn = wk->names;
	int kt = -1, bad = 0;
	pn->out.len = 0;
	pn->out.err = 0;
	int rc = px_names_request(pn, rule, frame, len, &fi->req_hdr,
	                          (fi->flags & KD_EVF_NO_RESPONSE) != 0, &kt, &bad, &pn->out);
	*coord_kt = (int8_t)kt;
	if (rc < 0)
		goto oom;
	atomic_fetch_add_explicit(&((struct rule *)rule)->hits, 1, memory_order_relaxed);
	if (rc == PX_N_CLOSE) {
		jd->rule = rule;
		return PX_J_CLOSE;
	}
	if (rc == PX_N_SAME)
		return act;
	if (rc == PX_N_MAPPED && act == PX_J_FORWARD) {
		*mapped = 1;
		return act;
	}
	/* The split frame, a refusal's answer: where rules_act looks. */
	kd_wbuf_free(&jd->out);
	jd->out = pn->out;
	memset(&pn->out, 0, sizeof(pn->out));
	if (rc == PX_N_MAPPED)
		return act;
	kd_split_free(&jd->split);
	jd->rule = rule;
	jd->error = pn->error;
	return rc == PX_N_DROP ? PX_J_DROP : PX_J_ANSWER;
oom:
	px_log(conn->px, 0, "%s: out of memory mapping names", conn->client_addr);
	conn_free(conn);
	return -1;
}

/* Walks the frame at the front of in (total bytes, its body at body_at)
 * for its names under rule (px_names_sp). Returns 1 when wk->names->sp
 * holds the edits, 0 when the frame must take the whole-frame path, -1
 * when out of memory. A Produce request may be walked before it has all
 * arrived: 1 then means its names are all in (sp->named_all: it can
 * stream), 2 that they may be once more bytes are (its first topic's
 * name is not in yet). */
static int names_walk(struct px_conn *conn, struct evbuffer *in, uint32_t total, uint32_t body_at,
                      int16_t key, int16_t ver, int is_req, const struct rule *rule)
{
	struct px_worker *wk = conn->wk;
	if (!wk->names && !(wk->names = calloc(1, sizeof(*wk->names))))
		return -1;
	struct px_names_sp *sp = &wk->names->sp;
	if (px_names_sp_init(sp, wk->names, rule, key, ver, is_req, body_at, total - body_at))
		return 0;
	struct evbuffer_ptr ptr;
	if (evbuffer_ptr_set(in, &ptr, body_at, EVBUFFER_PTR_SET) < 0)
		return 0;
	size_t at = body_at;
	size_t end = evbuffer_get_length(in) < total ? evbuffer_get_length(in) : total;
	int whole = end == total;
	/* In part: the walk stops at the last name, the rest is not in. */
	while (at < end && !sp->bad && !sp->ended && (whole || !sp->named_all)) {
		struct evbuffer_iovec vec[16];
		int nvec = evbuffer_peek(in, (ev_ssize_t)(end - at), &ptr, vec, 16);
		if (nvec <= 0)
			break;
		for (int i = 0; i < nvec && i < 16 && at < end && !sp->bad && !sp->ended; i++) {
			size_t n = vec[i].iov_len < end - at ? vec[i].iov_len : end - at;
			px_names_sp_feed(sp, vec[i].iov_base, n);
			at += n;
		}
		if (at < end && evbuffer_ptr_set(in, &ptr, at, EVBUFFER_PTR_SET) < 0)
			break;
	}
	if (sp->bad || (int64_t)total + sp->delta - 4 > INT32_MAX)
		return 0;
	if (whole)
		return sp->ended;
	if (sp->named_all)
		return 1;
	return sp->named_more ? 0 : 2;
}

/* Moves the frame at the front of in (total bytes) to out with the names
 * wk->names->sp found replaced; the bytes between them are moved, not
 * copied. Returns the bytes written. Streaming (upto < total), it stops
 * after the last name, at upto: the caller forwards the frame's last
 * total - upto bytes as they come. */
static size_t names_splice_out(struct px_conn *conn, struct evbuffer *in, struct evbuffer *out,
                               uint32_t total, uint32_t upto)
{
	const struct px_names_sp *sp = &conn->wk->names->sp;
	uint64_t nsize = (uint64_t)((int64_t)total - 4 + sp->delta);
	uint8_t sz[4] = {(uint8_t)(nsize >> 24), (uint8_t)(nsize >> 16), (uint8_t)(nsize >> 8),
	                 (uint8_t)nsize};
	uint32_t pos = 4;
	evbuffer_drain(in, 4);
	evbuffer_add(out, sz, 4);
	for (unsigned i = 0; i < sp->ned; i++) {
		const struct px_names_edit *e = &sp->ed[i];
		evbuffer_remove_buffer(in, out, e->off - pos);
		evbuffer_drain(in, e->len);
		evbuffer_add(out, sp->bytes.p + e->at, e->nlen);
		pos = e->off + e->len;
	}
	evbuffer_remove_buffer(in, out, upto - pos);
	return (size_t)((int64_t)upto + sp->delta);
}

/* Where a streamed Produce's last name ends (its edits are all before). */
static uint32_t names_splice_end(const struct px_conn *conn)
{
	const struct px_names_sp *sp = &conn->wk->names->sp;
	const struct px_names_edit *e = &sp->ed[sp->ned - 1];
	return e->off + e->len;
}

/* Maps the names of a response back for a mapped client: the frame is
 * wb when rewritten (rc 1), else p. Returns 2 when wb now holds the frame
 * with the client's names, rc when nothing changed, or a negative KD_E*. */
static int names_resp(struct px_conn *conn, struct px_req *req, int16_t key, int16_t ver,
                      const uint8_t *p, size_t total, int rc, struct kd_wbuf *wb)
{
	struct px_worker *wk = conn->wk;
	if (!wk->names && !(wk->names = calloc(1, sizeof(*wk->names))))
		return KD_ENOMEM;
	struct kd_wbuf nb = {0};
	int nrc = px_names_response(wk->names, req->nrule, key, ver, req->coord_kt,
	                            rc == 1 ? wb->p : p, rc == 1 ? wb->len : total, &nb);
	req->names_done = 1;
	if (nrc != 1) {
		kd_wbuf_free(&nb);
		return nrc < 0 ? nrc : rc;
	}
	kd_wbuf_free(wb);
	*wb = nb;
	return 2;
}

/* Client to broker. Returns -1 when conn was freed. */
static int c2s(struct px_conn *conn)
{
	struct px *px = conn->px;
	struct evbuffer *in = bufferevent_get_input(conn->cbev);
	struct evbuffer *out = bufferevent_get_output(conn->ubev);
	for (;;) {
		if (conn->req_left) {
			size_t avail = evbuffer_get_length(in) < conn->req_left
			                   ? evbuffer_get_length(in)
			                   : conn->req_left;
			tap_bytes(conn, conn->req_tap, PX_TAP_C2S, in, 0, NULL, avail);
			if (conn->req_mjob)
				px_mirror_req_buf(conn->req_mjob, in, 0, avail);
			size_t n = forward(conn, in, conn->ubev, conn->req_left);
			if (!n)
				return 0;
			conn->req_left -= (uint32_t)n;
			if (!conn->req_left) {
				if (conn->req_mjob_own)
					px_mirror_done(&conn->req_mjob);
				conn->req_mjob = NULL;
			}
			PX_INC(px, bytes_in_client, (uint64_t)n);
			PX_INC(px, bytes_out_upstream, (uint64_t)n);
			continue;
		}
		/* up_reauth: kwire re-authenticates to the broker first */
		if (!evbuffer_get_length(in) || conn->draining || conn->up_reauth || muted(conn) ||
		    (conn->ql && quota_wait(conn)))
			return 0;
		if (inflight(conn) >= px->conf.max_inflight || evbuffer_get_length(out) >= conn->wm)
			return 0; /* flow() pauses the client */
		struct kd_frame_info fi;
		int rc = frame_begin(conn, in, KD_C2S, &fi);
		if (rc == KD_NEED_MORE)
			return 0;
		if (rc < 0 || fi.size > px->conf.max_frame) {
			if (rc == KD_ELIMIT || rc >= 0)
				PX_INC(px, frames_too_large, 1);
			else
				PX_INC(px, decode_errors, 1);
			const uint8_t *head = evbuffer_pullup(in, 3);
			if (head && kd_tls_looks_like(head, 3)) {
				/* A TLS record's header read as a frame size: ~369 MB. */
				px_tls_count_tls_on_plain(px);
				px_log(
				    px, 1,
				    "%s: TLS client on a plaintext listener (its first bytes are "
				    "a TLS handshake record): closing; use security.protocol "
				    "PLAINTEXT, or give this listener tls_cert and tls_key",
				    conn->client_addr);
				conn_free(conn);
				return -1;
			}
			px_log(px, 1, "%s: bad request frame (%s), closing the connection",
			       conn->client_addr,
			       rc < 0 ? kd_strerror(rc) : "frame over max_frame_bytes");
			conn_free(conn);
			return -1;
		}
		uint32_t total = 4 + fi.size;
		if (conn->sc) {
			int sa = sasl_c2s(conn, in, &fi, total);
			if (sa == PX_JUDGE_WAIT)
				return 0;
			if (sa < 0)
				return -1;
			if (sa > 0)
				continue; /* answered by kwire */
		}
		int act = PX_J_FORWARD;
		struct rule_set *nrs = NULL;
		const struct rule *nrule = NULL;
		int8_t coord_kt = -1;
		int mapped = 0;
		if (px->rules && fi.kind == KD_EV_REQUEST) {
			if (names_pick(conn, in, &fi, total, &nrs, &nrule) == PX_JUDGE_WAIT)
				return 0;
			act = judge(conn, in, &fi, total);
			if (act == PX_JUDGE_WAIT)
				return 0;
			if (act < 0)
				return -1;
			int16_t key = fi.req_hdr.api_key, ver = fi.req_hdr.api_version;
			int sw = 0;
			int part = evbuffer_get_length(in) < total;
			if (nrule && act == PX_J_FORWARD && px_names_splices(key, ver, 1) &&
			    (sw = names_walk(conn, in, total, 4 + fi.req_hdr.len, key, ver, 1,
			                     nrule)) > 0) {
				if (part && (sw != 1 || conn->mjob_next)) {
					/* Rules reloaded since names_pick (a mirror):
					 * gathered whole after all. */
					bufferevent_setwatermark(conn->cbev, EV_READ, 0, total);
					conn->req_whole = 1;
					return 0;
				}
				/* a Produce: its names replaced, its records moved
				 * (part: the rest streams, names_pick) */
				atomic_fetch_add_explicit(&((struct rule *)nrule)->hits, 1,
				                          memory_order_relaxed);
				mapped = conn->wk->names->sp.ned ? (part ? 3 : 2) : 0;
			} else if (sw < 0) {
				px_log(px, 0, "%s: out of memory", conn->client_addr);
				conn_free(conn);
				return -1;
			} else if (nrule &&
			           (act == PX_J_FORWARD || act == PX_J_SPLIT ||
			            act == PX_J_REWRITE) &&
			           (act = names_req(conn, in, &fi, total, act, nrule, &coord_kt,
			                            &mapped)) < 0) {
				return -1;
			}
			/* kwire answers these itself (or nobody does): the stream
			 * must not wait for the broker's answer. */
			if (act == PX_J_ANSWER || act == PX_J_DROP || act == PX_J_CLOSE)
				fi.flags |= KD_EVF_LOCAL;
		}
		if ((px->hooks.want_frames & PX_WANT_REQ) &&
		    evbuffer_get_length(in) < copy_need(conn, total, 1))
			return 0;
		/* From the commit on, the stream's FIFO holds req (its user
		 * value) when a response is due. */
		struct px_req *req = calloc(1, sizeof(*req));
		if (!req) {
			px_log(px, 0, "%s: out of memory", conn->client_addr);
			conn_free(conn);
			return -1;
		}
		if (px->hooks.want_frames & PX_WANT_REQ)
			req->copy = copy_frame(conn, in, total, 1, &req->copy_len, &req->trunc);
		if (px->audit && px->rules && fi.kind == KD_EV_REQUEST)
			req->audit = audit_request(conn, &fi);
		req->t_mono = px_now_us();
		req->t_wall = px_wall_us();
		req->size = fi.size;
		if (fi.kind == KD_EV_REQUEST) {
			req->key = fi.req_hdr.api_key;
			req->ver = fi.req_hdr.api_version;
			req->corr = fi.req_hdr.correlation_id;
		} else {
			req->key = -1; /* SASL v0 token: answered in order, no header */
			req->corr = -1;
			req->sasl_mech = fi.sasl_mech;
		}
		fi.ts_us = req->t_wall;
		fi.user = (uintptr_t)req;
		if (kd_stream_frame_commit(conn->ks, KD_C2S, &fi, NULL, req->t_wall) != KD_OK) {
			req_free(req);
			PX_INC(px, decode_errors, 1);
			px_log(px, 1, "%s: request stream broken, closing", conn->client_addr);
			conn_free(conn);
			return -1;
		}
		if (fi.kind == KD_EV_REQUEST) {
			req->client_id = fi.req_hdr.client_id; /* the stream's stable copy */
			req->coord_kt = coord_kt;
			if (nrule) {
				rule_set_ref(nrs);
				req->nrs = nrs;
				req->nrule = nrule;
			}
			px_count_api(px, req->key, req->ver, PX_CNT_REQ);
		}
		req->tap = (uint8_t)((px->tap != NULL) | conn->rtap_next);
		conn->rtap_next = 0;
		int tap = req->tap; /* req may be gone below (no response due) */
		tap_frame(conn, req, PX_TAP_C2S);
		req->mjob = conn->mjob_next;
		conn->mjob_next = NULL;
		if (px->rules && conn->wk->judged.nquotas && fi.kind == KD_EV_REQUEST)
			quota_request(conn, req, act);
		if (act != PX_J_FORWARD) {
			if (rules_act(conn, in, req, &fi, total, act) < 0)
				return -1;
			continue;
		}
		if (px->rules && req->key == KD_API_PRODUCE && conn->wk->judged.rw_passed)
			rw_note(conn, req, &conn->wk->judged, NULL);
		if (px->rules && fi.kind == KD_EV_REQUEST && req->key == KD_API_FETCH)
			req->rw_fetch = (uint8_t)fetch_rw_wanted(conn, &fi, req->client_id);
		if (px->rules && conn->wk->judged.filter &&
		    !(req->filter = px_filter_new(conn->wk->rules_ref.rs, &conn->wk->judge))) {
			px_log(px, 0, "%s: out of memory", conn->client_addr);
			conn_free(conn); /* which drains req */
			return -1;
		}
		if (fi.flags & KD_EVF_NO_RESPONSE) {
			/* Produce acks=0, or the last token of a SASL v0 exchange */
			if (fi.kind == KD_EV_REQUEST)
				acks0_note(conn, req->corr);
			emit_pair(conn, req, 0, NULL, 0, 0, 1, 0);
			/* acks=0: queued once its bytes are in (above), no answer to wait for */
			conn->req_mjob = req->mjob;
			conn->req_mjob_own = 1;
			req->mjob = NULL;
			req_free(req);
		} else {
			PX_MAX(px, inflight_max, inflight(conn));
			conn->req_mjob = req->mjob; /* the FIFO's req owns it */
			conn->req_mjob_own = 0;
		}
		if (mapped == 3) {
			/* Streams: the size corrected and the names mapped now,
			 * the records as they come (req_left). */
			uint32_t upto = names_splice_end(conn);
			tap_bytes(conn, (unsigned)tap, PX_TAP_C2S, in, 0, NULL, upto);
			size_t n = names_splice_out(conn, in, out, total, upto);
			PX_INC(px, bytes_in_client, upto);
			PX_INC(px, bytes_out_upstream, n);
			conn->req_left = total - upto;
			conn->req_tap = (uint8_t)tap;
			continue;
		}
		if (mapped) /* the tap has the client's view */
			tap_bytes(conn, (unsigned)tap, PX_TAP_C2S, in, 0, NULL, total);
		if (mapped == 2) {
			size_t out0 = evbuffer_get_length(out);
			size_t n = names_splice_out(conn, in, out, total, total);
			mirror_whole(conn, out, out0, NULL, n);
			PX_INC(px, bytes_in_client, total);
			PX_INC(px, bytes_out_upstream, n);
			continue;
		}
		if (mapped) {
			/* The frame with the cluster's names replaces the client's. */
			struct kd_wbuf *nw = &conn->wk->names->out;
			evbuffer_drain(in, total);
			evbuffer_add(out, nw->p, nw->len);
			mirror_whole(conn, NULL, 0, nw->p, nw->len);
			PX_INC(px, bytes_in_client, total);
			PX_INC(px, bytes_out_upstream, nw->len);
			continue;
		}
		conn->req_left = total;
		conn->req_tap = (uint8_t)tap;
	}
}

static void resp_done(struct px_conn *conn, struct px_req *req, uint32_t size, const uint8_t *copy,
                      size_t copy_len, int trunc, int rewritten)
{
	px_mirror_done(&req->mjob);
	if (req->key >= 0)
		px_count_api(conn->px, req->key, req->ver, PX_CNT_RESP);
	emit_pair(conn, req, size, copy, copy_len, trunc, 0, rewritten);
}

/* kwire's own answer to req (a request the rules refused), to the client. */
static void send_local(struct px_conn *conn, struct px_req *req)
{
	struct evbuffer *out = bufferevent_get_output(conn->cbev);
	struct kd_resp_hdr hdr;
	if (req->q && req->q->ms && req->local_len > 4 &&
	    kd_resp_hdr_parse(req->local + 4, req->local_len - 4, req->key, req->ver, &hdr) >= 0 &&
	    kd_throttle_raise(req->key, req->ver, req->local, req->local_len, hdr.len,
	                      req->q->ms) == 1)
		px_quota_note(conn->px->quota, PX_Q_PATCHED);
	evbuffer_add(out, req->local, req->local_len);
	tap_frame(conn, req, PX_TAP_S2C);
	tap_bytes(conn, req->tap, PX_TAP_S2C, NULL, 0, req->local, req->local_len);
	PX_INC(conn->px, bytes_out_client, req->local_len);
	/* The access log reads the answer (its error) like a broker's. */
	size_t copy = resp_copy_need(conn, req, (uint32_t)req->local_len);
	resp_done(conn, req, (uint32_t)(req->local_len - 4), copy ? req->local : NULL, copy,
	          copy < req->local_len, 0);
}

/* Sends kwire's answers that have reached the head of the FIFO: answers go
 * out in request order, so an answer waits behind the broker's answers to
 * the requests before it. */
static void flush_local(struct px_conn *conn)
{
	struct kd_req_info info;
	/* Not into the middle of a response still streaming to the client:
	 * s2c flushes again once its last byte is forwarded. */
	if (conn->resp_left)
		return;
	while (kd_stream_pop_local(conn->ks, &info)) {
		struct px_req *r = req_of(&info);
		if (r)
			send_local(conn, r);
		req_free(r);
	}
}

/* Logs the first bytes of an undecodable frame of API key (debug level);
 * never those of an API that can carry a secret, nor a SASL token. */
static void log_hex(const struct px *px, int16_t key, const uint8_t *p, size_t len)
{
	char hex[3 * 64 + 1];
	size_t n = len < 64 ? len : 64;
	if (px->conf.log_level < 3 || kd_api_sensitive(key))
		return;
	for (size_t i = 0; i < n; i++)
		snprintf(hex + 3 * i, 4, "%02x ", p[i]);
	hex[3 * n] = '\0';
	px_log(px, 3, "frame (%zu bytes): %s%s", len, hex, n < len ? "..." : "");
}

static void read_high(struct px_conn *conn, size_t high);
static void note_trailing(struct px_conn *conn, int16_t key, int16_t ver, uint64_t extra);

/* A response kwire cannot read or had to edit and could not, or a
 * broker breaking the protocol (logged by the caller): counted, the
 * broker dropped, the client closed once its output is written. Returns
 * -1. */
static int upstream_bad(struct px_conn *conn)
{
	PX_INC(conn->px, decode_errors, 1);
	close_upstream(conn);
	conn_close_soft(conn);
	return -1;
}

/* A response kwire edits, whole in the upstream input. Returns -1 when
 * conn was freed or is closing, else 0. */
static int s2c_edit(struct px_conn *conn, struct kd_frame_info *fi, struct px_req *req)
{
	struct px *px = conn->px;
	struct evbuffer *in = bufferevent_get_input(conn->ubev);
	struct evbuffer *out = bufferevent_get_output(conn->cbev);
	uint32_t total = 4 + fi->size;
	if (conn->resp_whole)
		read_high(conn, conn->wm);
	PX_MAX(px, edit_held_max, total);
	const uint8_t *p = evbuffer_pullup(in, total);
	if (!p) {
		conn_free(conn);
		return -1;
	}
	/* The pullup may have moved the bytes fi's views point into: parse the
	 * header again from the contiguous frame. */
	if (kd_stream_frame_begin(conn->ks, KD_S2C, p, total, fi) != KD_OK) {
		conn_free(conn);
		return -1;
	}
	int16_t key = fi->req.api_key, ver = fi->req.api_version;
	struct kd_wbuf wb = {0};
	int rc;
	if (key == KD_API_API_VERSIONS) {
		/* An error answer (ErrorCode != 0) in any body passes; an
		 * undecodable success answer is refused below like an
		 * undecodable address-bearing response: unclamped, it could
		 * move the client to versions kwire cannot read. */
		rc = px_edit_apiversions(ver, p, total, px->conf.clamp_api_versions,
		                         conn->sc && px_sasl_terminates(conn->sc), &wb);
		if (rc == 1)
			PX_INC(px, apiversions_clamped, 1);
	} else {
		uint64_t t0 = px_now_us();
		rc = px_rewrite_response(key, ver, p, total, px_addr_map, px, &wb);
		if (rc == 1)
			PX_INC(px, responses_rewritten, 1);
		if (rc >= 0 && key == KD_API_METADATA)
			px_metadata_seen(px, t0); /* listener GC, px-listen.c */
		size_t body = 4 + fi->resp_hdr.len, fields;
		if (rc >= 0 &&
		    (fields = px_body_fields_end(key, ver, p + body, total - body)) < total - body)
			note_trailing(conn, key, ver, total - body - fields);
	}
	int named = 0; /* the access log gets the client's names */
	if (rc >= 0 && req && req->nrule && !req->names_done &&
	    (rc = names_resp(conn, req, key, ver, p, total, rc, &wb)) == 2) {
		named = 1;
		rc = 1;
	}
	if (rc < 0) {
		/* A response that may carry broker addresses kwire cannot read,
		 * or an ApiVersions success answer it cannot clamp: never let it
		 * through (a client must not learn a real address, nor versions
		 * beyond kwire's tables). */
		kd_wbuf_free(&wb);
		/* req stays in the FIFO: conn_free reports it unanswered. */
		px_log(px, 0, "%s: %s v%d response from %s not decodable (%s), closing",
		       conn->client_addr, api_name(key), ver, conn->up_addr, kd_strerror(rc));
		log_hex(px, key, p, total);
		return upstream_bad(conn);
	}
	uint8_t *copy = NULL;
	size_t copy_len = 0;
	uint8_t trunc = 0;
	size_t rneed = resp_copy_need(conn, req, total);
	if (rneed && named) {
		copy_len = rneed < wb.len ? rneed : wb.len;
		if ((copy = malloc(copy_len ? copy_len : 1)))
			memcpy(copy, wb.p, copy_len);
		trunc = copy_len < wb.len;
	} else if (rneed) {
		copy = copy_n(in, total, rneed, &copy_len, &trunc);
	}
	if (kd_stream_frame_commit(conn->ks, KD_S2C, fi, p, px_wall_us()) != KD_OK) {
		/* the pairing state is the stream's concern; forwarding goes on */
	}
	size_t out0 = evbuffer_get_length(out);
	if (rc == 1) {
		evbuffer_drain(in, total);
		evbuffer_add(out, wb.p, wb.len);
		PX_INC(px, bytes_out_client, wb.len);
	} else {
		evbuffer_remove_buffer(in, out, total);
		PX_INC(px, bytes_out_client, total);
	}
	if (req) {
		tap_frame(conn, req, PX_TAP_S2C);
		s2c_seen(conn, req, out, out0, evbuffer_get_length(out) - out0);
	}
	PX_INC(px, bytes_in_upstream, total);
	kd_wbuf_free(&wb);
	if (req)
		resp_done(conn, req, fi->size, copy, copy_len, trunc, rc == 1);
	req_free(req); /* popped by the commit above */
	free(copy);
	return 0;
}

/* How a response is edited (PX_SE_*): NONE (forwarded as it comes),
 * WHOLE (gathered whole, then edited: ApiVersions, FindCoordinator,
 * DescribeCluster, all small), or streamed (PREFIX, TAIL). */
static int edit_mode(const struct px_conn *conn, const struct kd_frame_info *fi)
{
	const struct px *px = conn->px;
	int16_t key = fi->req.api_key, ver = fi->req.api_version;
	const struct px_req *req = req_of(&fi->req);
	if (fi->kind != KD_EV_RESPONSE)
		return PX_SE_NONE;
	/* A mapped client's names are mapped back (and what is outside its
	 * namespace taken out) in the whole response. */
	if (req && req->nrule && !req->names_done && px_names_wants_response(key, ver))
		return PX_SE_WHOLE;
	if (key == KD_API_API_VERSIONS)
		return px->conf.clamp_api_versions || px->conf.sasl.mode == PX_SASL_TERMINATE
		           ? PX_SE_WHOLE
		           : PX_SE_NONE;
	if (!px->conf.rewrite || !px_rewrite_wanted(key, ver))
		return PX_SE_NONE;
	if (key == KD_API_METADATA)
		return PX_SE_PREFIX;
	if (key == KD_API_PRODUCE || key == KD_API_FETCH)
		return PX_SE_TAIL;
	return PX_SE_WHOLE;
}

/* Whether the response at the front of in is there whole (total bytes);
 * if not, lets the input grow to it. Either way the read watermark is
 * what the next step needs. */
static int whole_at_front(struct px_conn *conn, struct evbuffer *in, uint32_t total)
{
	if (evbuffer_get_length(in) < total) {
		read_high(conn, total);
		return 0;
	}
	read_high(conn, conn->wm);
	return 1;
}

/* Puts the edited response wb in place of the total bytes at the front of
 * in, to be parsed again. */
static void replace_front(struct evbuffer *in, uint32_t total, const struct kd_wbuf *wb)
{
	evbuffer_drain(in, total);
	evbuffer_prepend(in, wb->p, wb->len);
}

/* Replaces the broker's answer at the front of in (total bytes) with the
 * answer the rules make of it, for req: the same answer plus the topics
 * they refused (a split, px_judge_merge), or less the topics they deny
 * (a filter, px_judge_filter). Returns 1 (done: parse the frame again), 0
 * (wait for the whole answer) or -1 (conn closing). */
static int rules_answer(struct px_conn *conn, struct evbuffer *in, struct px_req *req,
                        uint32_t total)
{
	struct px *px = conn->px;
	if (!whole_at_front(conn, in, total))
		return 0;
	const uint8_t *p = evbuffer_pullup(in, total);
	struct kd_wbuf wb = {0}, nb = {0};
	size_t len = total;
	unsigned dropped = 0, errored = 0;
	int rc = p ? KD_OK : KD_ENOMEM;
	if (p && req->split) {
		if (req->nrule && !req->names_done) {
			/* The refused topics are merged under the client's names. */
			rc = names_resp(conn, req, req->key, req->ver, p, total, 0, &nb);
			if (rc == 2) {
				p = nb.p;
				len = nb.len;
			}
			rc = rc < 0 ? rc : KD_OK;
		}
		if (rc == KD_OK) {
			rc = px_judge_merge(&conn->wk->judge, req->split, p, len, &wb);
			rc = rc == KD_OK ? 1 : rc;
		}
	} else if (p) {
		rc = px_judge_filter(&conn->wk->judge, req->filter, p, total, px->topics, &wb,
		                     &dropped, &errored);
	}
	kd_wbuf_free(&nb);
	const char *what = req->split ? "a split request" : "a filtered request";
	if (req->split) {
		kd_split_free(req->split);
		free(req->split);
		req->split = NULL;
	}
	px_filter_free(&req->filter);
	if (rc < 0 || wb.err) {
		/* Without the merge the client would wait for the refused topics'
		 * answers forever; unfiltered, it would see what the rules deny:
		 * treat it as an undecodable answer. */
		kd_wbuf_free(&wb);
		px_log(px, 0, "%s: %s v%d answer from %s to %s not decodable (%s), closing",
		       conn->client_addr, api_name(req->key), req->ver, conn->up_addr, what,
		       kd_strerror(rc < 0 ? rc : wb.err));
		return upstream_bad(conn);
	}
	if (dropped + errored) {
		PX_INC(px, rules_filtered, dropped + errored);
		px_log(px, 3, "%s: %s #%d: %u denied topics hidden, %u shown with the error",
		       conn->client_addr, api_name(req->key), req->corr, dropped, errored);
	}
	if (rc == 1) {
		replace_front(in, total, &wb);
	}
	kd_wbuf_free(&wb);
	return 1;
}

/* Replaces the response at the front of in (total bytes) with the same
 * response under the client's names (a mapped client's Fetch that records
 * rules rewrite next). Returns 1 (parse the frame again), 0 (wait for the
 * whole response) or -1 (conn closing). */
static int names_first(struct px_conn *conn, struct evbuffer *in, struct px_req *req,
                       uint32_t total)
{
	if (!whole_at_front(conn, in, total))
		return 0;
	const uint8_t *p = evbuffer_pullup(in, total);
	struct kd_wbuf wb = {0};
	int rc = p ? names_resp(conn, req, req->key, req->ver, p, total, 0, &wb) : KD_ENOMEM;
	if (rc < 0) {
		kd_wbuf_free(&wb);
		px_log(conn->px, 0, "%s: %s v%d response from %s not decodable (%s), closing",
		       conn->client_addr, api_name(req->key), req->ver, conn->up_addr,
		       kd_strerror(rc));
		return upstream_bad(conn);
	}
	if (rc == 2) {
		replace_front(in, total, &wb);
	}
	kd_wbuf_free(&wb);
	return 1;
}

/* Replaces the Fetch response at the front of in (total bytes) with the
 * same response, its records rewritten by `rewrite:` rules (px-records.h),
 * for req. Returns 1 (done: parse the frame again), 0 (wait for the whole
 * response) or -1 (conn closing). */
static int rewrite_fetch(struct px_conn *conn, struct evbuffer *in, struct px_req *req,
                         const struct kd_frame_info *fi, uint32_t total)
{
	struct px *px = conn->px;
	if (!whole_at_front(conn, in, total))
		return 0;
	req->rw_fetch = 0;
	struct rule_set *rs = px_rules_current(px->rules, &conn->wk->rules_ref);
	if (!rs || !rule_set_rewrites(rs, RULE_RW_FETCH))
		return 1; /* rules reloaded meanwhile: nothing to do */
	PX_MAX(px, edit_held_max, total);
	const uint8_t *p = evbuffer_pullup(in, total);
	struct kd_wbuf wb = {0};
	struct rule_rw_out res;
	struct rule_who who;
	conn_who(conn, &who);
	int rc = p ? px_records_fetch(&conn->wk->judge, rs, fi->req.api_version, p, total,
	                              req->client_id, &who, px->topics, &wb, &res)
	           : KD_ENOMEM;
	if (rc >= 0)
		rw_note(conn, req, NULL, &res);
	if (rc == 1 && wb.len - 4 > px->conf.max_frame)
		rc = KD_ELIMIT;
	if (rc < 0) {
		/* The records a rule masks must never pass unrewritten. */
		kd_wbuf_free(&wb);
		px_log(px, 0,
		       "%s: Fetch v%d response from %s could not be rewritten (%s%s), closing",
		       conn->client_addr, req->ver, conn->up_addr, kd_strerror(rc),
		       rc == KD_ELIMIT ? ": rewritten, it is over max_frame_bytes" : "");
		return upstream_bad(conn);
	}
	if (rc == 1) {
		/* Its buffer put in front, not copied (px-records.h). */
		evbuffer_drain(in, total);
		if (px_records_hand_over(in, &wb, 1)) {
			px_log(px, 0, "%s: out of memory rewriting a Fetch response", conn->client_addr);
			return upstream_bad(conn);
		}
	}
	kd_wbuf_free(&wb);
	return 1;
}

/* The answer (at the front of in, total bytes) to req, which quotas
 * throttle or whose size a Fetch quota counts: counted, its ThrottleTimeMs
 * raised to kwire's throttle where that is longer than the broker's, and
 * the client muted for it (KIP-219); a version before KIP-219 has the
 * answer held back for the throttle instead, as a broker did. A Fetch is
 * never answered by kwire (its fetch session, KIP-227, lives on the
 * broker): its answer goes on, and the mute slows the next one. Returns 1
 * (go on with the frame), 0 (wait for bytes or for the hold) or -1. */
static int quota_response(struct px_conn *conn, struct evbuffer *in, struct px_req *req,
                          const struct kd_frame_info *fi, uint32_t total)
{
	struct px *px = conn->px;
	struct px_qreq *qr = req->q;
	if (qr->held) {
		if (px_now_us() + 1000 < conn->hold_us)
			return 0;
		conn->hold_us = 0;
		qr->done = 1;
		return 1;
	}
	/* The field's bytes: the first of the body, or after other fields
	 * (Produce: after its topics), found by a walk of the whole answer. */
	int has = kd_body_field_index(req->key, req->ver, 0, "ThrottleTimeMs") >= 0;
	size_t at = 4 + fi->resp_hdr.len;
	size_t need = !has ? 0 : kd_throttle_first(req->key, req->ver) ? at + 4 : total;
	if (need > total)
		need = total;
	if (evbuffer_get_length(in) < need) {
		read_high(conn, need);
		return 0;
	}
	if (conn->resp_whole)
		read_high(conn, conn->wm);
	struct px_quota_who who = {conn->client_addr, req->client_id,  req->key, req->ver,
	                           conn->principal,   conn->broker_id, req->corr};
	uint32_t ms = px_quota_response(px, px->quota, qr, &who, fi->size, px_now_us());
	if (!ms) {
		qr->done = 1;
		return 1;
	}
	if (has) {
		uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)need);
		int rc = p ? kd_throttle_raise(req->key, req->ver, p, need, fi->resp_hdr.len, ms)
		           : KD_ENOMEM;
		if (rc == 1)
			px_quota_note(px->quota, PX_Q_PATCHED);
		else if (rc < 0)
			px_log(px, 3, "%s: %s v%d #%d: ThrottleTimeMs not raised (%s)",
			       conn->client_addr, api_name(req->key), req->ver, req->corr,
			       kd_strerror(rc));
	}
	mute(conn, ms);
	if (kd_throttle_kip219(req->key, req->ver)) {
		qr->done = 1;
		return 1;
	}
	qr->held = 1;
	conn->hold_us = px_now_us() + (uint64_t)ms * 1000;
	px_quota_note(px->quota, PX_Q_HELD);
	return 0;
}

/* Lets the upstream input grow to high bytes (at least the watermark). */
static void read_high(struct px_conn *conn, size_t high)
{
	if (high < conn->wm)
		high = conn->wm;
	conn->resp_whole = high > conn->wm;
	bufferevent_setwatermark(conn->ubev, EV_READ, 0, high);
}

/* Bytes after a body's fields: forwarded as they came, counted, and
 * warned about once per connection (docs/proxy.md). */
static void note_trailing(struct px_conn *conn, int16_t key, int16_t ver, uint64_t extra)
{
	struct px *px = conn->px;
	PX_INC(px, trailing_bytes, 1);
	PX_INC(px, decode_warnings, 1);
	if (conn->warned_trailing)
		return;
	conn->warned_trailing = 1;
	px_log(px, 1,
	       "%s: %s v%d response from %s has %" PRIu64 " byte(s) after its body: "
	       "forwarded as they came (warned once per connection)",
	       conn->client_addr, api_name(key), ver, conn->up_addr, extra);
}

/* The walk's value callback: pairs a struct's TopicId with its topic name
 * when the struct ends, and teaches the proxy's map (kd_topics_put
 * refuses the all-zero id and bad names). */
static void se_value(void *arg, unsigned depth, const struct kd_field *f, const uint8_t *p,
                     size_t len)
{
	struct px_sedit *se = arg;
	if (!f) {
		if (se->id_depth == depth && se->name_depth == depth)
			kd_topics_put(se->topics, se->id, se->name, se->name_len);
		if (se->id_depth >= depth)
			se->id_depth = 0;
		if (se->name_depth >= depth)
			se->name_depth = 0;
		return;
	}
	if (f->type == KD_T_UUID) {
		if (len == 16) {
			memcpy(se->id, p, 16);
			se->id_depth = depth;
		}
	} else if (len <= sizeof(se->name)) {
		memcpy(se->name, p, len);
		se->name_len = (uint32_t)len;
		se->name_depth = depth;
	}
}

/* Starts the walk of a response (frame header parsed into fi) in mode.
 * Returns KD_OK or a negative KD_E* (unknown version). */
static int se_start(struct px_conn *conn, const struct kd_frame_info *fi, int mode)
{
	struct px_sedit *se = conn->se;
	int16_t key = fi->req.api_key, ver = fi->req.api_version;
	memset(se, 0, sizeof(*se));
	se->mode = (uint8_t)mode;
	se->body_at = 4 + fi->resp_hdr.len;
	se->fed = se->body_at;
	se->walking = 1;
	int rc = kd_walk_init(&se->walk, key, ver, 0, fi->size - fi->resp_hdr.len);
	if (rc == KD_OK && mode == PX_SE_PREFIX)
		rc = kd_walk_stop_before(&se->walk, "Topics");
	else if (rc == KD_OK && mode == PX_SE_TAIL)
		rc = kd_walk_stop_at_tags(&se->walk);
	if (rc == KD_OK && kd_topics_wants(key, ver)) {
		se->topics = px_topics(conn->px);
		kd_walk_on_value(&se->walk, se_value, se);
	}
	return rc;
}

/* Walks the frame bytes [se->fed, upto) of the input, whose first byte is
 * at frame offset se->front. Returns KD_NEED_MORE, KD_WALK_STOP (a
 * PREFIX walk stops there), KD_WALK_END or a negative KD_E*. */
static int se_walk(struct px_sedit *se, struct evbuffer *in, uint32_t upto)
{
	while (se->walking && se->fed < upto) {
		struct evbuffer_ptr ptr;
		struct evbuffer_iovec vec[8];
		if (evbuffer_ptr_set(in, &ptr, se->fed - se->front, EVBUFFER_PTR_SET) < 0)
			return KD_EMALFORMED; /* cannot happen: fed < upto <= input */
		int nvec = evbuffer_peek(in, (ev_ssize_t)(upto - se->fed), &ptr, vec, 8);
		for (int i = 0; i < nvec && i < 8 && se->fed < upto; i++) {
			const uint8_t *p = vec[i].iov_base;
			size_t n = vec[i].iov_len;
			if (n > upto - se->fed)
				n = upto - se->fed;
			while (n) {
				size_t used = 0;
				int rc = kd_walk_feed(&se->walk, p, n, &used);
				se->fed += (uint32_t)used;
				p += used;
				n -= used;
				if (rc == KD_NEED_MORE)
					break;
				if (rc == KD_WALK_STOP) {
					se->stopped = 1;
					se->stop = se->body_at + (uint32_t)se->walk.off;
					if (se->mode == PX_SE_PREFIX)
						return rc;
					continue;
				}
				se->walking = 0;
				if (rc == KD_WALK_END) {
					se->ended = 1;
					se->end = se->body_at + (uint32_t)se->walk.off;
				}
				return rc;
			}
		}
	}
	return se->ended ? KD_WALK_END : KD_NEED_MORE;
}

/* The n bytes at the front of the input, about to be forwarded, pass the
 * walk of the response streaming after its rewritten prefix. */
static void se_pass(struct px_conn *conn, struct evbuffer *in, size_t n)
{
	struct px_sedit *se = conn->se;
	if (!se->walking)
		return;
	int rc = se_walk(se, in, se->front + (uint32_t)n);
	if (rc == KD_WALK_END && se->end < se->front + conn->resp_left)
		note_trailing(conn, conn->cur->key, conn->cur->ver,
		              se->front + conn->resp_left - se->end);
	else if (rc < 0 && rc != KD_NEED_MORE)
		px_log(conn->px, 3,
		       "%s: %s v%d response from %s: the part after the addresses "
		       "does not walk (%s); forwarded",
		       conn->client_addr, api_name(conn->cur->key), conn->cur->ver, conn->up_addr,
		       kd_strerror(rc));
}

/* A response rewritten while it streams (struct px_sedit). Returns -1
 * when conn was freed or is closing, 0 to wait for more bytes, 1 when
 * the frame is handled (the rest, if any, streams through resp_left). */
static int s2c_stream_edit(struct px_conn *conn, struct kd_frame_info *fi, int mode)
{
	struct px *px = conn->px;
	struct evbuffer *in = bufferevent_get_input(conn->ubev);
	struct evbuffer *out = bufferevent_get_output(conn->cbev);
	int16_t key = fi->req.api_key, ver = fi->req.api_version;
	uint32_t total = 4 + fi->size;
	size_t avail = evbuffer_get_length(in);
	int rc = KD_OK;
	if (!conn->se && !(conn->se = calloc(1, sizeof(*conn->se)))) {
		px_log(px, 0, "%s: out of memory", conn->client_addr);
		conn_free(conn);
		return -1;
	}
	struct px_sedit *se = conn->se;
	if (!se->mode)
		rc = se_start(conn, fi, mode);
	/* A PREFIX walk waits at its stop point until the decision. */
	if (rc == KD_OK && !(mode == PX_SE_PREFIX && se->stopped))
		rc = se_walk(se, in, (uint32_t)(avail < total ? avail : total));
	if (rc < 0 && rc != KD_NEED_MORE)
		goto fail;
	/* What must be in the input before deciding: the prefix (and the
	 * bytes the access log copies), or the whole frame. */
	size_t need = total;
	size_t rneed = resp_copy_need(conn, req_of(&fi->req), total);
	if (mode == PX_SE_PREFIX)
		need = se->stopped ? (se->stop > rneed ? se->stop : rneed) : total;
	if (avail < need || (mode == PX_SE_TAIL && !se->ended)) {
		/* PREFIX: walked bytes plus a watermark's worth (and what is
		 * copied); TAIL: all. */
		size_t high = (size_t)se->fed + conn->wm;
		read_high(conn, mode == PX_SE_PREFIX ? (high > need ? high : need) : total);
		return 0;
	}
	if (conn->resp_whole)
		read_high(conn, conn->wm);
	PX_MAX(px, edit_held_max, avail < total ? avail : total);

	/* s2c checked the response is paired: the commit below pops req. */
	struct px_req *req = req_of(&fi->req);
	uint8_t *copy = NULL;
	size_t copy_len = 0;
	uint8_t trunc = 0;
	if (rneed)
		copy = copy_n(in, total, rneed, &copy_len, &trunc);
	kd_stream_frame_commit(conn->ks, KD_S2C, fi, NULL, px_wall_us());

	struct kd_wbuf wb = {0};
	if (mode == PX_SE_PREFIX) {
		uint64_t t0 = px_now_us();
		const uint8_t *p = evbuffer_pullup(in, se->stop);
		rc = p ? px_rewrite_prefix(key, ver, p, se->stop, "Topics", px_addr_map, px, &wb)
		       : KD_ENOMEM;
		if (rc >= 0)
			px_metadata_seen(px, t0); /* listener GC, px-listen.c */
	} else {
		uint32_t tlen = se->end - se->stop;
		uint8_t *tail = malloc(tlen ? tlen : 1);
		struct evbuffer_ptr ptr;
		rc = tail && evbuffer_ptr_set(in, &ptr, se->stop, EVBUFFER_PTR_SET) == 0 &&
		             evbuffer_copyout_from(in, &ptr, tail, tlen) == (ev_ssize_t)tlen
		         ? px_rewrite_tail(key, ver, tail, tlen, px_addr_map, px, &wb)
		         : KD_ENOMEM;
		free(tail);
		if (rc >= 0 && se->end < total)
			note_trailing(conn, key, ver, total - se->end);
	}
	if (rc < 0) {
		kd_wbuf_free(&wb);
		free(copy);
		if (req)
			px_count_api(px, req->key, req->ver, PX_CNT_ERR);
		req_free(req);
		goto fail;
	}
	if (rc == 1)
		PX_INC(px, responses_rewritten, 1);
	conn->cur = req;
	conn->cur_rewritten = rc == 1;
	conn->cur_size = fi->size;
	conn->cur_copy = copy;
	conn->cur_copy_len = copy_len;
	conn->cur_trunc = trunc;
	conn->resp_left = total;
	if (conn->cur)
		tap_frame(conn, conn->cur, PX_TAP_S2C);
	size_t out0 = evbuffer_get_length(out);
	if (rc == 1 && mode == PX_SE_PREFIX) {
		/* The new prefix (its size fixed) replaces the old one. */
		evbuffer_drain(in, se->stop);
		evbuffer_add(out, wb.p, wb.len);
		if (conn->cur)
			s2c_seen(conn, conn->cur, out, out0, wb.len);
		PX_INC(px, bytes_in_upstream, se->stop);
		PX_INC(px, bytes_out_client, wb.len);
		conn->resp_left = total - se->stop;
		se->front = se->stop;
	} else if (rc == 1) {
		/* size | header and body up to the tags (moved) | new tags |
		 * bytes after the body (moved). */
		uint32_t tlen = se->end - se->stop;
		uint64_t nsize = (uint64_t)fi->size - tlen + wb.len;
		uint8_t sz[4] = {(uint8_t)(nsize >> 24), (uint8_t)(nsize >> 16),
		                 (uint8_t)(nsize >> 8), (uint8_t)nsize};
		evbuffer_drain(in, 4);
		evbuffer_add(out, sz, 4);
		evbuffer_remove_buffer(in, out, se->stop - 4);
		evbuffer_drain(in, tlen);
		evbuffer_add(out, wb.p, wb.len);
		evbuffer_remove_buffer(in, out, total - se->end);
		if (conn->cur)
			s2c_seen(conn, conn->cur, out, out0, evbuffer_get_length(out) - out0);
		PX_INC(px, bytes_in_upstream, total);
		PX_INC(px, bytes_out_client, nsize + 4);
		conn->resp_left = 0;
		se->mode = PX_SE_NONE;
		if (conn->cur)
			resp_done(conn, conn->cur, conn->cur_size, copy, copy_len, trunc, 1);
		req_free(conn->cur);
		conn->cur = NULL;
		free(conn->cur_copy);
		conn->cur_copy = NULL;
	} else if (mode == PX_SE_TAIL) {
		se->mode = PX_SE_NONE; /* walked already: streams as it is */
	}
	kd_wbuf_free(&wb);
	return 1;
fail:
	/* A response that may carry broker addresses kwire cannot read:
	 * never let it through (a client must not learn a real address). */
	if (se)
		se->mode = PX_SE_NONE;
	px_log(px, 0, "%s: %s v%d response from %s not decodable (%s), closing", conn->client_addr,
	       api_name(key), ver, conn->up_addr, kd_strerror(rc));
	return upstream_bad(conn);
}

/* A mapped client's response whose names are spliced (px_names_splices),
 * whole in the upstream input. Returns 1 when it was sent, 0 when it must
 * take the whole-frame path, -1 when conn was freed. */
static int s2c_splice(struct px_conn *conn, struct kd_frame_info *fi, struct px_req *req,
                      uint32_t total)
{
	struct px *px = conn->px;
	struct evbuffer *in = bufferevent_get_input(conn->ubev);
	struct evbuffer *out = bufferevent_get_output(conn->cbev);
	int rc = names_walk(conn, in, total, 4 + fi->resp_hdr.len, fi->req.api_key,
	                    fi->req.api_version, 0, req->nrule);
	if (rc < 0) {
		px_log(px, 0, "%s: out of memory", conn->client_addr);
		conn_free(conn);
		return -1;
	}
	if (!rc)
		return 0;
	if (conn->resp_whole)
		read_high(conn, conn->wm);
	PX_MAX(px, edit_held_max, total);
	uint8_t *copy = NULL;
	size_t copy_len = 0;
	uint8_t trunc = 0;
	size_t rneed = resp_copy_need(conn, req, total);
	if (rneed)
		copy = copy_n(in, total, rneed, &copy_len, &trunc);
	/* Pops req (and, first, what the broker skipped: on_stream_event). */
	kd_stream_frame_commit(conn->ks, KD_S2C, fi, NULL, px_wall_us());
	size_t out0 = evbuffer_get_length(out);
	/* The mirror reads the cluster's names (as it read the request the
	 * broker got); the tap shows the client's. */
	if (req->mjob)
		px_mirror_resp_buf(req->mjob, in, 0, total);
	size_t n = names_splice_out(conn, in, out, total, total);
	tap_frame(conn, req, PX_TAP_S2C);
	tap_bytes(conn, req->tap, PX_TAP_S2C, out, out0, NULL, n);
	PX_INC(px, bytes_in_upstream, total);
	PX_INC(px, bytes_out_client, n);
	resp_done(conn, req, fi->size, copy, copy_len, trunc, conn->wk->names->sp.ned > 0);
	req_free(req);
	free(copy);
	return 1;
}

/* Broker to client. Returns -1 when conn was freed. */
static int s2c(struct px_conn *conn)
{
	struct px *px = conn->px;
	struct evbuffer *in = bufferevent_get_input(conn->ubev);
	struct evbuffer *out = bufferevent_get_output(conn->cbev);
	for (;;) {
		if (conn->drop_left) {
			size_t n = evbuffer_get_length(in);
			if (n > conn->drop_left)
				n = conn->drop_left;
			if (!n)
				return 0;
			evbuffer_drain(in, n);
			conn->drop_left -= (uint32_t)n;
			PX_INC(px, bytes_in_upstream, (uint64_t)n);
			continue;
		}
		if (conn->resp_left) {
			size_t n = evbuffer_get_length(in);
			if (n > conn->resp_left)
				n = conn->resp_left;
			if (conn->se && conn->se->mode)
				se_pass(conn, in, n);
			if (conn->cur) {
				s2c_seen(conn, conn->cur, in, 0, n);
				/* The mirror learns of the answer before the client
				 * can (forward() may write it at once): a client's
				 * next step, say an EndTxn on another connection,
				 * must reach the mirror after it. */
				if (n == conn->resp_left)
					px_mirror_done(&conn->cur->mjob);
			}
			n = forward(conn, in, conn->cbev, n);
			if (!n)
				return 0;
			conn->resp_left -= (uint32_t)n;
			PX_INC(px, bytes_in_upstream, (uint64_t)n);
			PX_INC(px, bytes_out_client, (uint64_t)n);
			if (conn->se && conn->se->mode) {
				conn->se->front += (uint32_t)n;
				if (!conn->resp_left)
					conn->se->mode = PX_SE_NONE;
			}
			if (!conn->resp_left && conn->cur) {
				resp_done(conn, conn->cur, conn->cur_size, conn->cur_copy,
				          conn->cur_copy_len, conn->cur_trunc, conn->cur_rewritten);
				req_free(conn->cur);
				conn->cur = NULL;
				free(conn->cur_copy);
				conn->cur_copy = NULL;
			}
			continue;
		}
		/* kwire's own answers that are next in line go first. */
		flush_local(conn);
		if (!evbuffer_get_length(in) || evbuffer_get_length(out) >= conn->wm)
			return 0;
		struct kd_frame_info fi;
		int rc = frame_begin(conn, in, KD_S2C, &fi);
		if (rc == KD_NEED_MORE)
			return 0;
		if (rc < 0 || fi.size > px->conf.max_frame) {
			px_log(px, 1, "%s: bad response frame from %s (%s), closing",
			       conn->client_addr, conn->up_addr,
			       rc < 0 ? kd_strerror(rc) : "over max_frame_bytes");
			return upstream_bad(conn);
		}
		uint32_t total = 4 + fi.size;
		int opaque = fi.kind == KD_EV_OPAQUE;
		if (fi.kind == KD_EV_RESPONSE && (fi.flags & KD_EVF_UNPAIRED) &&
		    acks0_take(conn, fi.resp_hdr.correlation_id)) {
			px_log(px, 3, "%s: dropped %s's answer to a Produce with acks=0 (#%d)",
			       conn->client_addr, conn->up_addr, fi.resp_hdr.correlation_id);
			kd_stream_frame_commit(conn->ks, KD_S2C, &fi, NULL, px_wall_us());
			conn->drop_left = total;
			continue;
		}
		if (fi.flags & KD_EVF_UNPAIRED) {
			/* A broker answers requests, once each, in order: a response
			 * to nothing in flight is a protocol violation. It is not
			 * forwarded, for it was never paired with the API and
			 * version that say where its addresses are. */
			PX_INC(px, unpaired_responses, 1);
			if (opaque)
				px_log(px, 1,
				       "%s: broker %s sent a SASL token with no request in "
				       "flight (protocol violation), closing",
				       conn->client_addr, conn->up_addr);
			else
				px_log(px, 1,
				       "%s: broker %s sent a response (correlation id %d) to no "
				       "request in flight (protocol violation), closing",
				       conn->client_addr, conn->up_addr,
				       fi.resp_hdr.correlation_id);
			return upstream_bad(conn);
		}
		/* The answer to a request forwarded without its refused topics:
		 * their answers are merged in first (whole), then the merged frame
		 * takes the normal path. */
		struct px_req *req = req_of(&fi.req);
		if (!opaque && req && (req->split || req->filter)) {
			int mrc = rules_answer(conn, in, req, total);
			if (mrc <= 0)
				return mrc;
			continue;
		}
		/* A Fetch response `rewrite:` rules rewrite: gathered whole,
		 * rewritten, then the new frame takes the normal path. A mapped
		 * client's names are mapped back first: the rules see the
		 * client's names. */
		if (!opaque && req && req->rw_fetch && req->nrule && !req->names_done) {
			int nrc = names_first(conn, in, req, total);
			if (nrc <= 0)
				return nrc;
			continue;
		}
		if (!opaque && req && req->rw_fetch) {
			int frc = rewrite_fetch(conn, in, req, &fi, total);
			if (frc <= 0)
				return frc;
			continue;
		}
		if (!opaque && req && req->q && !req->q->done) {
			int qrc = quota_response(conn, in, req, &fi, total);
			if (qrc <= 0)
				return qrc;
			continue;
		}
		/* Peek at the FIFO without popping until the frame is handled: an
		 * edited response may have to wait for more bytes. */
		int mode = edit_mode(conn, &fi);
		if (mode == PX_SE_PREFIX || mode == PX_SE_TAIL) {
			int src = s2c_stream_edit(conn, &fi, mode);
			if (src <= 0)
				return src;
			continue;
		}
		int edit = mode == PX_SE_WHOLE;
		if (edit && req && req->nrule && !req->names_done &&
		    px_names_splices(fi.req.api_key, fi.req.api_version, 0)) {
			/* A Fetch response: held in the input, its topic names
			 * replaced, its records moved. */
			if (evbuffer_get_length(in) < total) {
				read_high(conn, total);
				return 0;
			}
			int src = s2c_splice(conn, &fi, req, total);
			if (src < 0)
				return -1;
			if (src > 0)
				continue;
		}
		if (edit && evbuffer_get_length(in) < total) {
			/* Let the input grow to the whole frame (at most max_frame). */
			read_high(conn, total);
			return 0;
		}
		size_t rneed = edit ? 0 : resp_copy_need(conn, req, total);
		if (rneed && evbuffer_get_length(in) < rneed) {
			read_high(conn, rneed); /* a copy for the audit may exceed the watermark */
			return 0;
		}
		if (!edit && conn->resp_whole)
			read_high(conn, conn->wm);
		/* SASL passthrough: the broker's SASL answers are read whole */
		int sasl_watch = !edit && conn->sc && px_sasl_wants_server_frame(conn->sc, &fi);
		if (sasl_watch) {
			if (evbuffer_get_length(in) < total) {
				read_high(conn, total);
				return 0;
			}
			if (conn->resp_whole)
				read_high(conn, conn->wm);
		}
		if (edit) {
			if (s2c_edit(conn, &fi, req) < 0)
				return -1;
			continue;
		}
		if (rneed)
			conn->cur_copy =
			    copy_n(in, total, rneed, &conn->cur_copy_len, &conn->cur_trunc);
		/* Pops req (and, first, what the broker skipped: on_stream_event). */
		kd_stream_frame_commit(conn->ks, KD_S2C, &fi, NULL, px_wall_us());
		if (sasl_watch) {
			const uint8_t *p = evbuffer_pullup(in, total);
			if (p && px_sasl_server_frame(conn->sc, &fi, p, total)) {
				sasl_principal(conn);
				px_log(px, 3, "%s: SASL: the broker authenticated %s",
				       conn->client_addr,
				       conn->principal[0] ? conn->principal : "the client");
			}
		}
		conn->cur = req;
		conn->cur_rewritten = 0;
		conn->cur_size = fi.size;
		conn->resp_left = total;
		if (conn->cur)
			tap_frame(conn, conn->cur, PX_TAP_S2C);
		if (fi.kind == KD_EV_RESPONSE &&
		    kd_topics_wants(fi.req.api_key, fi.req.api_version) &&
		    (conn->se || (conn->se = calloc(1, sizeof(*conn->se)))) &&
		    se_start(conn, &fi, PX_SE_LEARN) != KD_OK)
			conn->se->mode = PX_SE_NONE; /* nothing to learn from then */
	}
}

/* Why a side is not read (struct px_conn c_why/u_why). */
enum {
	PX_PAUSE_INFLIGHT = 1, /* client: max_inflight requests in flight */
	PX_PAUSE_OUT = 2,      /* the other side's output holds buffer_bytes */
};

/* Counts the pause reasons in why that were not in *prev. */
static void count_pauses(struct px *px, uint8_t *prev, uint8_t why, int client)
{
	uint8_t fresh = (uint8_t)(why & ~*prev);
	*prev = why;
	if (fresh & PX_PAUSE_INFLIGHT)
		PX_INC(px, pauses_inflight, 1);
	if (fresh & PX_PAUSE_OUT) {
		if (client)
			PX_INC(px, pauses_client_buffer, 1);
		else
			PX_INC(px, pauses_upstream, 1);
	}
}

/* Enables reading on each side when the other side can take more. */
static void flow(struct px_conn *conn)
{
	struct px *px = conn->px;
	if (!conn->up_ok || !conn->ubev) {
		bufferevent_disable(conn->cbev, EV_READ);
		return;
	}
	size_t uout = evbuffer_get_length(bufferevent_get_output(conn->ubev));
	size_t cout = evbuffer_get_length(bufferevent_get_output(conn->cbev));
	PX_MAX(px, client_out_max, cout);
	uint8_t c_why = 0, u_why = 0;
	if (uout >= conn->wm)
		c_why |= PX_PAUSE_OUT;
	if (!conn->req_left && inflight(conn) >= px->conf.max_inflight)
		c_why |= PX_PAUSE_INFLIGHT;
	if (cout >= conn->wm)
		u_why |= PX_PAUSE_OUT;
	count_pauses(px, &conn->c_why, c_why, 1);
	count_pauses(px, &conn->u_why, u_why, 0);
	int c_read = !conn->client_eof && !c_why && (conn->req_left || !conn->draining) &&
	             (conn->req_left || !muted(conn));
	int u_read = !u_why;
	if (c_read)
		bufferevent_enable(conn->cbev, EV_READ);
	else
		bufferevent_disable(conn->cbev, EV_READ);
	if (u_read)
		bufferevent_enable(conn->ubev, EV_READ);
	else
		bufferevent_disable(conn->ubev, EV_READ);
	qtimer_sync(conn);
}

/* Moves what may move and sets the flow. Returns -1 when conn was freed
 * or is closing (the caller must not touch it), else 0. */
static int pump(struct px_conn *conn)
{
	if (conn->closing)
		return -1;
	if (conn->up_ok && conn->ubev) {
		/* Responses first: they free FIFO room for waiting requests. */
		if (conn->up_reauth != 2 && (s2c(conn) < 0 || c2s(conn) < 0))
			return -1;
		if (conn->up_reauth == 1 && !inflight(conn) && !conn->req_left &&
		    !conn->resp_left && !conn->drop_left && sasl_up_reauth_now(conn) < 0)
			return -1;
	}
	if (conn->draining && !inflight(conn) && !conn->req_left && !conn->resp_left &&
	    !conn->drop_left) {
		conn_close_soft(conn);
		return -1;
	}
	flow(conn);
	return 0;
}

void px_conn_drain_all(struct px_worker *wk)
{
	for (struct px_conn *conn = wk->conns, *next; conn; conn = next) {
		next = conn->next;
		conn->draining = 1;
		if (!conn->up_ok) {
			conn_free(conn);
			continue;
		}
		pump(conn);
	}
}

void px_conn_close_all(struct px_worker *wk)
{
	while (wk->conns)
		conn_free(wk->conns);
}
