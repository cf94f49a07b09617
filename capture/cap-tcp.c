/* cap-tcp.c: TCP flows and per-direction stream reassembly.
 *
 * Hot path (in-order data): one hash lookup, the payload handed to data()
 * straight from the packet buffer, no allocation. Only segments that
 * arrive ahead of a hole are copied (struct cap_oseg), and those copies
 * are bounded per direction and in total.
 *
 * Sequence numbers are compared in 32-bit serial arithmetic (RFC 1982
 * style: a is before b when (int32_t)(a - b) < 0), so wrap-around needs no
 * special case.
 *
 * Overlaps: the first copy of a byte wins, as a receiver that had already
 * acknowledged it would see it; later copies only count as dup_bytes.
 *
 * Gaps: bytes are declared lost for good, and gap() reports exactly how
 * many, when
 *   - the other side acknowledges past a hole (the receiver has the bytes,
 *     the capture missed them: they will not be sent again),
 *   - a hole waits longer than gap_timeout_us of capture time,
 *   - the out-of-order buffer of a direction or of all flows goes over its
 *     cap (the flow is "cut": a message, then the hole is skipped),
 *   - the snaplen cut a segment's payload (the cut bytes),
 *   - the flow ends with holes (FIN sequence number known: up to it).
 * Data buffered behind a skipped hole is then delivered in order. */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap-int.h"
#include "cap.h"

/* A segment held ahead of a hole. lost marks bytes known missing (the
 * snaplen cut them): no data, reported as a gap when reached. */
struct cap_oseg {
	struct cap_oseg *next;
	uint32_t seq;
	uint32_t len;
	uint8_t lost;
	uint8_t data[];
};

struct cap_tcp {
	struct cap_tcp_opts opts;
	struct cap_tcp_cbs cbs;
	struct cap_stats st;
	struct cap_fent **buckets;
	uint32_t nbuckets; /* power of two */
	size_t nflows;
	struct cap_fent *lru_head[2], *lru_tail[2]; /* [0] open, [1] closed */
	size_t ooo_mem;   /* bytes held in out-of-order segments, all flows */
	size_t mem_flows; /* entries, flows, buckets and user_mem (see cap_tcp_mem) */
	struct cap_hkey hkey;
	struct cap_fragtab frags;
	int64_t now_us;
	int64_t last_sweep_us;
	uint64_t next_id;
};

#define SEQ_LT(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) < 0)
#define SEQ_LE(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) <= 0)
#define SEQ_GT(a, b) SEQ_LT(b, a)
#define OSEG_MEM(len, lost) (sizeof(struct cap_oseg) + ((lost) ? 0 : (len)))
/* What an allocation costs beyond its size (glibc's chunk header and
 * rounding, roughly), in the memory accounting. */
#define ALLOC_OVH 16u
#define ENT_MEM (sizeof(struct cap_fent) + ALLOC_OVH)
#define FLOW_MEM (sizeof(struct cap_flow) + ALLOC_OVH)
#define FLOW_OF(e) ((struct cap_flow *)(void *)((char *)(e)-offsetof(struct cap_flow, ent)))
/* A segment or an acknowledgment further than this from where we are is
 * not believed (a mid-stream start on an old retransmission, garbage). */
#define SEQ_SANE (1u << 30)
/* Capture times are clamped to +-2^62 us (146,000 years) so that the
 * difference of any two fits in an int64_t. */
#define TS_LIM ((int64_t)1 << 62)

static int64_t ts_clamp(int64_t ts)
{
	return ts > TS_LIM ? TS_LIM : ts < -TS_LIM ? -TS_LIM : ts;
}

const char *cap_close_reason_name(enum cap_close_reason reason)
{
	switch (reason) {
	case CAP_CLOSE_FIN:
		return "fin";
	case CAP_CLOSE_RST:
		return "rst";
	case CAP_CLOSE_TIMEOUT:
		return "timeout";
	case CAP_CLOSE_END:
		return "end";
	case CAP_CLOSE_REUSE:
		return "reuse";
	case CAP_CLOSE_EVICT:
		return "evict";
	}
	return "?";
}

void cap_endpoint_format(char *buf, size_t buflen, uint8_t af, const uint8_t *addr, uint16_t port)
{
	char ip[INET6_ADDRSTRLEN];
	if (af == 4) {
		inet_ntop(AF_INET, addr, ip, sizeof(ip));
		snprintf(buf, buflen, "%s:%u", ip, port);
	} else {
		inet_ntop(AF_INET6, addr, ip, sizeof(ip));
		snprintf(buf, buflen, "[%s]:%u", ip, port);
	}
}

struct cap_tcp *cap_tcp_new(const struct cap_tcp_opts *opts, const struct cap_tcp_cbs *cbs)
{
	struct cap_tcp *tcp = calloc(1, sizeof(*tcp));
	if (!tcp)
		return NULL;
	if (opts)
		tcp->opts = *opts;
	if (cbs)
		tcp->cbs = *cbs;
	struct cap_tcp_opts *o = &tcp->opts;
	if (!o->flow_buf_max)
		o->flow_buf_max = 4u << 20;
	if (!o->total_buf_max)
		o->total_buf_max = 256u << 20;
	if (!o->max_flows)
		o->max_flows = 1000000;
	if (!o->idle_timeout_us)
		o->idle_timeout_us = 600LL * 1000000;
	if (!o->gap_timeout_us)
		o->gap_timeout_us = 10LL * 1000000;
	if (!o->closed_linger_us)
		o->closed_linger_us = 60LL * 1000000;
	if (!o->frag_mem_max)
		o->frag_mem_max = 16u << 20;
	if (!o->frag_max)
		o->frag_max = 4096;
	if (!o->frag_timeout_us)
		o->frag_timeout_us = 30LL * 1000000;
	if (!o->mem_max)
		o->mem_max = (size_t)512 << 20;
	if (!o->ack_grace_us)
		o->ack_grace_us = 2000;
	else if (o->ack_grace_us < 0)
		o->ack_grace_us = 0;
	tcp->frags.mem_max = o->frag_mem_max;
	tcp->frags.max = o->frag_max;
	tcp->frags.timeout_us = o->frag_timeout_us;
	tcp->nbuckets = 1024;
	tcp->buckets = calloc(tcp->nbuckets, sizeof(*tcp->buckets));
	if (!tcp->buckets) {
		free(tcp);
		return NULL;
	}
	tcp->mem_flows = tcp->nbuckets * sizeof(*tcp->buckets);
	cap_hkey_random(&tcp->hkey);
	tcp->now_us = INT64_MIN;
	tcp->last_sweep_us = INT64_MIN;
	return tcp;
}

const struct cap_stats *cap_tcp_stats(const struct cap_tcp *tcp)
{
	return &tcp->st;
}

size_t cap_tcp_buffered(const struct cap_tcp *tcp)
{
	return tcp->ooo_mem + tcp->frags.mem;
}

size_t cap_tcp_nflows(const struct cap_tcp *tcp)
{
	return tcp->nflows;
}

size_t cap_tcp_mem(const struct cap_tcp *tcp)
{
	return tcp->mem_flows + tcp->ooo_mem + tcp->frags.mem;
}

static void mem_note_peak(struct cap_tcp *tcp)
{
	size_t m = cap_tcp_mem(tcp);
	if (m > tcp->st.mem_peak)
		tcp->st.mem_peak = m;
}

/* The user's per-flow memory as it is after a callback. */
static void user_sync(struct cap_tcp *tcp, struct cap_flow *flow)
{
	if (flow->user_mem != flow->user_acct) {
		tcp->mem_flows += flow->user_mem - flow->user_acct; /* size_t: wraps right */
		flow->user_acct = flow->user_mem;
	}
}

/* ---- flow table ---- */

/* Keyed and symmetric: both directions of a connection hash alike, and a
 * capture cannot aim flows at one bucket (the key is random per run). The
 * two endpoints go in a fixed order, the smaller first. */
static uint32_t flow_hash(const struct cap_tcp *tcp, const struct cap_seg *seg)
{
	uint8_t b[37];
	int c = memcmp(seg->saddr, seg->daddr, 16);
	int s_first = c < 0 || (c == 0 && seg->sport <= seg->dport);
	const uint8_t *a0 = s_first ? seg->saddr : seg->daddr,
	              *a1 = s_first ? seg->daddr : seg->saddr;
	uint16_t p0 = s_first ? seg->sport : seg->dport, p1 = s_first ? seg->dport : seg->sport;
	memcpy(b, a0, 16);
	memcpy(b + 16, a1, 16);
	b[32] = (uint8_t)(p0 >> 8);
	b[33] = (uint8_t)p0;
	b[34] = (uint8_t)(p1 >> 8);
	b[35] = (uint8_t)p1;
	b[36] = seg->af;
	uint64_t h = cap_siphash(&tcp->hkey, b, sizeof(b));
	return (uint32_t)(h ^ (h >> 32));
}

/* The entry of seg's connection and the direction seg travels in it
 * (*dir), or NULL. */
static struct cap_fent *ent_find(struct cap_tcp *tcp, const struct cap_seg *seg, uint32_t h,
                                 int *dir)
{
	for (struct cap_fent *e = tcp->buckets[h & (tcp->nbuckets - 1)]; e; e = e->hnext) {
		if (e->hash != h || e->af != seg->af)
			continue;
		if (e->port[0] == seg->sport && e->port[1] == seg->dport &&
		    !memcmp(e->addr[0], seg->saddr, 16) && !memcmp(e->addr[1], seg->daddr, 16)) {
			*dir = 0;
			return e;
		}
		if (e->port[1] == seg->sport && e->port[0] == seg->dport &&
		    !memcmp(e->addr[1], seg->saddr, 16) && !memcmp(e->addr[0], seg->daddr, 16)) {
			*dir = 1;
			return e;
		}
	}
	return NULL;
}

static void table_grow(struct cap_tcp *tcp)
{
	uint32_t n = tcp->nbuckets * 2;
	struct cap_fent **nb = calloc(n, sizeof(*nb));
	if (!nb)
		return; /* longer chains, still correct */
	for (uint32_t i = 0; i < tcp->nbuckets; i++) {
		struct cap_fent *e = tcp->buckets[i], *next;
		for (; e; e = next) {
			next = e->hnext;
			e->hnext = nb[e->hash & (n - 1)];
			nb[e->hash & (n - 1)] = e;
		}
	}
	tcp->mem_flows += (n - tcp->nbuckets) * sizeof(*nb);
	free(tcp->buckets);
	tcp->buckets = nb;
	tcp->nbuckets = n;
}

static void lru_unlink(struct cap_tcp *tcp, struct cap_fent *e)
{
	int l = e->closed ? 1 : 0;
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		tcp->lru_head[l] = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		tcp->lru_tail[l] = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_append(struct cap_tcp *tcp, struct cap_fent *e)
{
	int l = e->closed ? 1 : 0;
	e->lru_next = NULL;
	e->lru_prev = tcp->lru_tail[l];
	if (tcp->lru_tail[l])
		tcp->lru_tail[l]->lru_next = e;
	else
		tcp->lru_head[l] = e;
	tcp->lru_tail[l] = e;
}

static void half_free(struct cap_tcp *tcp, struct cap_half *h)
{
	struct cap_oseg *o = h->ooo, *next;
	for (; o; o = next) {
		next = o->next;
		tcp->ooo_mem -= OSEG_MEM(o->len, o->lost);
		free(o);
	}
	h->ooo = NULL;
	h->ooo_tail = NULL;
	h->ooo_bytes = 0;
	h->ooo_since_us = 0;
}

/* Removes an entry from the table and frees it (its flow too); no
 * callback. */
static void ent_destroy(struct cap_tcp *tcp, struct cap_fent *e)
{
	struct cap_fent **pp = &tcp->buckets[e->hash & (tcp->nbuckets - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(tcp, e);
	tcp->nflows--;
	if (e->full) {
		struct cap_flow *flow = FLOW_OF(e);
		half_free(tcp, &flow->half[0]);
		half_free(tcp, &flow->half[1]);
		tcp->mem_flows -= FLOW_MEM + flow->user_acct;
		free(flow);
	} else {
		tcp->mem_flows -= ENT_MEM;
		free(e);
	}
}

/* ---- delivery ---- */

static void emit_data(struct cap_tcp *tcp, struct cap_flow *flow, int dir, const uint8_t *p,
                      size_t len, int64_t ts)
{
	if (!len || flow->ignore)
		return;
	flow->bytes[dir] += len;
	tcp->st.delivered += len;
	if (tcp->cbs.data) {
		tcp->cbs.data(tcp->cbs.ctx, flow, dir, p, len, ts);
		user_sync(tcp, flow);
	}
}

static void emit_gap(struct cap_tcp *tcp, struct cap_flow *flow, int dir, uint64_t n, int64_t ts)
{
	if (!n || flow->ignore)
		return;
	flow->gap_bytes[dir] += n;
	tcp->st.gaps++;
	tcp->st.gap_bytes += n;
	if (tcp->cbs.gap) {
		tcp->cbs.gap(tcp->cbs.ctx, flow, dir, n, ts);
		user_sync(tcp, flow);
	}
}

static void emit_msg(struct cap_tcp *tcp, struct cap_flow *flow, const char *msg)
{
	if (tcp->cbs.message)
		tcp->cbs.message(tcp->cbs.ctx, flow, msg);
}

/* Delivers buffered segments that now start at or before h->next. */
static void drain(struct cap_tcp *tcp, struct cap_flow *flow, int dir, int64_t ts)
{
	struct cap_half *h = &flow->half[dir];
	struct cap_oseg *o;
	while ((o = h->ooo) && SEQ_LE(o->seq, h->next)) {
		uint32_t end = o->seq + o->len;
		h->ooo = o->next;
		h->ooo_bytes -= o->len;
		tcp->ooo_mem -= OSEG_MEM(o->len, o->lost);
		if (SEQ_GT(end, h->next)) {
			uint32_t skip = h->next - o->seq;
			if (o->lost)
				emit_gap(tcp, flow, dir, o->len - skip, ts);
			else
				emit_data(tcp, flow, dir, o->data + skip, o->len - skip, ts);
			h->next = end;
		}
		free(o);
	}
	if (!h->ooo) {
		h->ooo_tail = NULL;
		h->ooo_since_us = 0;
	}
}

/* Declares the hole before the first buffered segment lost and delivers
 * what follows it. */
static void skip_hole(struct cap_tcp *tcp, struct cap_flow *flow, int dir, int64_t ts)
{
	struct cap_half *h = &flow->half[dir];
	if (!h->ooo)
		return;
	emit_gap(tcp, flow, dir, h->ooo->seq - h->next, ts);
	h->next = h->ooo->seq;
	drain(tcp, flow, dir, ts);
	if (h->ooo)
		h->ooo_since_us = tcp->now_us; /* the next hole starts waiting now */
}

/* Holds [seq, seq+len) ahead of h->next, keeping only the bytes no earlier
 * segment covered. Returns -1 when out of memory (bytes dropped). */
static int ooo_insert(struct cap_tcp *tcp, struct cap_half *h, uint32_t seq, const uint8_t *p,
                      uint32_t len, int lost)
{
	struct cap_oseg **pp = &h->ooo;
	uint32_t s = seq - h->next, e = s + len; /* offsets from next: no wrap below */
	/* the usual case, data after a hole arriving in order: append */
	if (h->ooo_tail && s >= h->ooo_tail->seq - h->next + h->ooo_tail->len)
		pp = &h->ooo_tail->next;
	while (s < e) {
		struct cap_oseg *o = *pp;
		uint32_t os = o ? o->seq - h->next : UINT32_MAX;
		uint32_t oe = o ? os + o->len : UINT32_MAX;
		if (o && s >= oe) {
			pp = &o->next;
			continue;
		}
		if (s < os) {
			uint32_t n = (e < os ? e : os) - s;
			struct cap_oseg *ns = malloc(OSEG_MEM(n, lost));
			if (!ns)
				return -1;
			ns->seq = h->next + s;
			ns->len = n;
			ns->lost = (uint8_t)lost;
			if (!lost)
				memcpy(ns->data, p + (s - (seq - h->next)), n);
			ns->next = o;
			*pp = ns;
			pp = &ns->next;
			if (!o)
				h->ooo_tail = ns;
			h->ooo_bytes += n;
			tcp->ooo_mem += OSEG_MEM(n, lost);
			s += n;
			continue;
		}
		/* s inside o: the first copy wins */
		uint32_t covered = (e < oe ? e : oe) - s;
		if (!lost)
			tcp->st.dup_bytes += covered;
		s += covered;
	}
	return 0;
}

/* Keeps the buffers under their caps: a direction over flow_buf_max, or
 * everything over total_buf_max, loses its first hole. */
static void enforce_caps(struct cap_tcp *tcp, struct cap_flow *flow, int dir, int64_t ts)
{
	struct cap_half *h = &flow->half[dir];
	int cut = 0;
	while (h->ooo &&
	       (h->ooo_bytes > tcp->opts.flow_buf_max || tcp->ooo_mem > tcp->opts.total_buf_max)) {
		if (!cut) {
			char msg[160];
			snprintf(msg, sizeof(msg),
			         "%s -> %s: out-of-order buffer over its cap (%zu bytes buffered, "
			         "cap %zu per direction, %zu in total): hole declared lost",
			         flow->ep[dir].str, flow->ep[!dir].str, h->ooo_bytes,
			         tcp->opts.flow_buf_max, tcp->opts.total_buf_max);
			emit_msg(tcp, flow, msg);
			tcp->st.cuts++;
			cut = 1;
		}
		skip_hole(tcp, flow, dir, ts);
	}
	/* still over the total: other flows hold it; cut the idlest first */
	for (struct cap_fent *e = tcp->lru_head[0]; e && tcp->ooo_mem > tcp->opts.total_buf_max;
	     e = e->lru_next) {
		if (!e->full)
			continue;
		struct cap_flow *f = FLOW_OF(e);
		for (int d = 0; d < 2; d++) {
			if (!f->half[d].ooo)
				continue;
			char msg[160];
			snprintf(
			    msg, sizeof(msg),
			    "%s -> %s: out-of-order buffers of all flows over the total cap (%zu "
			    "bytes): hole declared lost",
			    f->ep[d].str, f->ep[!d].str, tcp->opts.total_buf_max);
			emit_msg(tcp, f, msg);
			tcp->st.cuts++;
			while (f->half[d].ooo && tcp->ooo_mem > tcp->opts.total_buf_max)
				skip_hole(tcp, f, d, ts);
		}
	}
}

/* One segment's payload [seq, seq+len) present, then `missing` bytes the
 * snaplen cut. */
static void deliver(struct cap_tcp *tcp, struct cap_flow *flow, int dir, uint32_t seq,
                    const uint8_t *p, uint32_t len, uint32_t missing, int64_t ts)
{
	struct cap_half *h = &flow->half[dir];
	uint32_t full = len + missing;
	if (!full)
		return;
	if (flow->ignore) {
		/* keep following the sequence numbers, hold nothing; count the
		 * new payload bytes (the report of flows not decoded) */
		if (h->ooo)
			half_free(tcp, h);
		uint32_t from = SEQ_GT(seq, h->next) ? seq : h->next;
		if (SEQ_GT(seq + len, from))
			flow->bytes[dir] += seq + len - from;
		if (SEQ_GT(seq + full, h->next))
			h->next = seq + full;
		return;
	}
	if (SEQ_LE(seq + full, h->next)) {
		tcp->st.dup_bytes += len;
		flow->dup_bytes[dir] += len;
		return;
	}
	if (SEQ_LT(seq, h->next)) {
		uint32_t d = h->next - seq;
		uint32_t dl = d < len ? d : len;
		tcp->st.dup_bytes += dl;
		flow->dup_bytes[dir] += dl;
		p += dl;
		len -= dl;
		missing -= d - dl;
		seq = h->next;
	}
	if (seq == h->next) {
		/* the common case: straight from the packet buffer */
		emit_data(tcp, flow, dir, p, len, ts);
		h->next += len;
		if (missing) {
			emit_gap(tcp, flow, dir, missing, ts);
			h->next += missing;
		}
		if (h->ooo)
			drain(tcp, flow, dir, ts);
		return;
	}
	if ((uint32_t)(seq - h->next) >= SEQ_SANE) {
		tcp->st.malformed++;
		return;
	}
	tcp->st.ooo_segments++;
	if (!h->ooo)
		h->ooo_since_us = tcp->now_us;
	if ((len && ooo_insert(tcp, h, seq, p, len, 0) < 0) ||
	    (missing && ooo_insert(tcp, h, seq + len, NULL, missing, 1) < 0)) {
		emit_msg(tcp, flow, "out of memory buffering an out-of-order segment");
		skip_hole(tcp, flow, dir, ts);
	}
	enforce_caps(tcp, flow, dir, ts);
}

/* The end of a direction: every hole is lost, up to the FIN if one came. */
static void half_finish(struct cap_tcp *tcp, struct cap_flow *flow, int dir, int64_t ts)
{
	struct cap_half *h = &flow->half[dir];
	while (h->ooo)
		skip_hole(tcp, flow, dir, ts);
	if (h->fin && SEQ_LT(h->next, h->fin_seq)) {
		emit_gap(tcp, flow, dir, h->fin_seq - h->next, ts);
		h->next = h->fin_seq;
	}
}

static void ack_apply(struct cap_tcp *tcp, struct cap_flow *flow, int64_t ts, int force);

/* Ends a connection: for a flow, remaining data and gaps, then
 * flow_close(). Lingering (closed) entries absorb late packets; others are
 * freed. */
static void ent_end(struct cap_tcp *tcp, struct cap_fent *e, enum cap_close_reason reason,
                    int64_t ts, int linger)
{
	if (!e->closed) {
		if (e->full) {
			struct cap_flow *flow = FLOW_OF(e);
			ack_apply(tcp, flow, ts, 1);
			half_finish(tcp, flow, 0, ts);
			half_finish(tcp, flow, 1, ts);
			if (tcp->cbs.flow_close)
				tcp->cbs.flow_close(tcp->cbs.ctx, flow, reason);
			flow->user = NULL;
			flow->user_mem = 0;
			user_sync(tcp, flow);
			flow->closed = 1;
		}
		lru_unlink(tcp, e);
		e->closed = 1;
		lru_append(tcp, e);
	}
	if (!linger)
		ent_destroy(tcp, e);
}

static void flow_end(struct cap_tcp *tcp, struct cap_flow *flow, enum cap_close_reason reason,
                     int64_t ts, int linger)
{
	ent_end(tcp, &flow->ent, reason, ts, linger);
}

/* Closes the idlest connections while the flow state is over mem_max:
 * closed ones that only linger first, then open ones (CAP_CLOSE_EVICT).
 * keep (the connection being served) stays. */
static void mem_enforce(struct cap_tcp *tcp, const struct cap_fent *keep, int64_t ts)
{
	mem_note_peak(tcp);
	while (cap_tcp_mem(tcp) > tcp->opts.mem_max) {
		struct cap_fent *e = tcp->lru_head[1];
		if (e && e != keep) {
			ent_destroy(tcp, e);
			continue;
		}
		e = tcp->lru_head[0];
		if (e == keep)
			e = e->lru_next;
		if (!e)
			break;
		tcp->st.flows_evicted_mem++;
		ent_end(tcp, e, CAP_CLOSE_EVICT, ts, 0);
	}
}

/* A table entry for the connection seg starts (no cap_flow yet). */
static struct cap_fent *ent_new(struct cap_tcp *tcp, const struct cap_seg *seg, uint32_t h,
                                int64_t ts, int *dir)
{
	if (tcp->nflows >= tcp->opts.max_flows) {
		/* make room: a closed flow if any, else the idlest open one */
		if (tcp->lru_head[1]) {
			ent_destroy(tcp, tcp->lru_head[1]);
		} else if (tcp->lru_head[0]) {
			tcp->st.flows_evicted++;
			ent_end(tcp, tcp->lru_head[0], CAP_CLOSE_EVICT, ts, 0);
		}
	}
	struct cap_fent *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	/* Who is the client? The SYN's sender; the SYN-ACK's receiver;
	 * without a handshake, the higher port (clients use ephemeral
	 * ports), and on a tie, the first sender. */
	int sender_is_client;
	if ((seg->flags & (CAP_TH_SYN | CAP_TH_ACK)) == CAP_TH_SYN) {
		sender_is_client = 1;
		e->client_how = CAP_CLIENT_SYN;
		e->handshake = 1;
	} else if (seg->flags & CAP_TH_SYN) {
		sender_is_client = 0;
		e->client_how = CAP_CLIENT_SYN;
		e->handshake = 2;
	} else {
		sender_is_client = seg->sport >= seg->dport;
		e->client_how = CAP_CLIENT_GUESS;
	}
	memcpy(e->addr[0], sender_is_client ? seg->saddr : seg->daddr, 16);
	memcpy(e->addr[1], sender_is_client ? seg->daddr : seg->saddr, 16);
	e->port[0] = sender_is_client ? seg->sport : seg->dport;
	e->port[1] = sender_is_client ? seg->dport : seg->sport;
	e->af = seg->af;
	e->hash = h;
	e->first_us = e->last_us = ts;
	*dir = sender_is_client ? 0 : 1;

	if (tcp->nflows >= tcp->nbuckets)
		table_grow(tcp);
	struct cap_fent **b = &tcp->buckets[h & (tcp->nbuckets - 1)];
	e->hnext = *b;
	*b = e;
	tcp->nflows++;
	tcp->mem_flows += ENT_MEM;
	lru_append(tcp, e);
	tcp->st.flows++;
	return e;
}

/* The connection's first payload: its cap_flow takes the entry's place
 * (hash chain and idle order), with what the entry knew, and flow_open()
 * is called. NULL when out of memory (the entry stays). */
static struct cap_flow *ent_promote(struct cap_tcp *tcp, struct cap_fent *e)
{
	struct cap_flow *flow = calloc(1, sizeof(*flow));
	if (!flow)
		return NULL;
	flow->ent = *e;
	struct cap_fent *ne = &flow->ent;
	ne->full = 1;
	struct cap_fent **pp = &tcp->buckets[e->hash & (tcp->nbuckets - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = ne;
	int l = e->closed ? 1 : 0;
	if (e->lru_prev)
		e->lru_prev->lru_next = ne;
	else
		tcp->lru_head[l] = ne;
	if (e->lru_next)
		e->lru_next->lru_prev = ne;
	else
		tcp->lru_tail[l] = ne;
	for (int i = 0; i < 2; i++) {
		memcpy(flow->ep[i].addr, e->addr[i], 16);
		flow->ep[i].port = e->port[i];
		cap_endpoint_format(flow->ep[i].str, sizeof(flow->ep[i].str), e->af, e->addr[i],
		                    e->port[i]);
		flow->pkts[i] = e->pkts[i];
		struct cap_half *h = &flow->half[i];
		if (e->init & (1u << i)) {
			h->init = 1;
			h->isn = e->isn[i];
			h->next = e->next[i];
		}
		if (e->fin & (1u << i)) {
			h->fin = 1;
			h->fin_seq = e->next[i];
			flow->fin[i] = 1;
		}
	}
	flow->af = e->af;
	flow->client_how = e->client_how;
	flow->handshake = e->handshake;
	flow->first_us = e->first_us;
	flow->last_us = e->last_us;
	flow->id = ++tcp->next_id;
	tcp->mem_flows += FLOW_MEM;
	tcp->mem_flows -= ENT_MEM;
	free(e);
	if (tcp->cbs.flow_open) {
		tcp->cbs.flow_open(tcp->cbs.ctx, flow);
		user_sync(tcp, flow);
	}
	return flow;
}

/* A segment of a connection that has no cap_flow yet. Returns 1 when the
 * entry took it (no payload, nothing lost: SYN, SYN-ACK, ACK, FIN, RST),
 * 0 when the connection needs its cap_flow for it (the entry is then
 * unchanged and the segment goes the flow's way). The rules are the
 * flow's own (cap_tcp_segment) for a segment without payload. */
static int ent_segment(struct cap_tcp *tcp, struct cap_fent *e, const struct cap_seg *seg, int dir,
                       int64_t ts)
{
	if (seg->len || seg->missing)
		return 0;
	uint32_t seq = seg->seq;
	int init = e->init >> dir & 1;
	int fresh_syn = (seg->flags & CAP_TH_SYN) && (!init || e->pkts[dir] == 0);
	if (fresh_syn)
		init = 1;
	if (seg->flags & CAP_TH_SYN)
		seq++;
	uint32_t next = fresh_syn ? seg->seq + 1 : e->next[dir];
	if ((seg->flags & CAP_TH_FIN) && !(seg->flags & CAP_TH_RST) && init && seq != next)
		return 0; /* bytes lost before the FIN */
	if (seg->flags & CAP_TH_ACK) {
		/* an acknowledgment past what the other side sent: lost bytes */
		int o = !dir;
		uint32_t onext = e->next[o] + (e->fin >> o & 1);
		if ((e->init >> o & 1) && SEQ_GT(seg->ack, onext) &&
		    (uint32_t)(seg->ack - e->next[o]) < SEQ_SANE)
			return 0;
	}
	e->pkts[dir]++;
	if (fresh_syn) {
		e->isn[dir] = seg->seq;
		e->next[dir] = seg->seq + 1;
		e->init |= (uint8_t)(1u << dir);
	}
	if ((seg->flags & CAP_TH_SYN) && (seg->flags & CAP_TH_ACK) && e->handshake == 1)
		e->handshake = 2;
	if (seg->flags & CAP_TH_RST) {
		ent_end(tcp, e, CAP_CLOSE_RST, ts, 1);
		return 1;
	}
	if (seg->flags & CAP_TH_FIN) {
		if (!(e->init >> dir & 1)) {
			e->isn[dir] = e->next[dir] = seq;
			e->init |= (uint8_t)(1u << dir);
		}
		e->fin |= (uint8_t)(1u << dir);
	}
	if (e->fin == 3)
		ent_end(tcp, e, CAP_CLOSE_FIN, ts, 1);
	return 1;
}

/* Idle flows (open: idle_timeout_us, closed: closed_linger_us) and stale
 * fragments, checked once per second of capture time. */
static void sweep(struct cap_tcp *tcp, int64_t now)
{
	struct cap_fent *e;
	while ((e = tcp->lru_head[0]) && now - e->last_us > tcp->opts.idle_timeout_us) {
		tcp->st.flows_timed_out++;
		ent_end(tcp, e, CAP_CLOSE_TIMEOUT, now, 0);
	}
	while ((e = tcp->lru_head[1]) && now - e->last_us > tcp->opts.closed_linger_us)
		ent_destroy(tcp, e);
	cap_frag_expire(&tcp->frags, now, &tcp->st);
}

/* An acknowledgment from the other side past a hole in this direction:
 * the receiver has those bytes, the capture does not; they are lost. */
static void ack_gap(struct cap_tcp *tcp, struct cap_flow *flow, int dir, uint32_t ack, int64_t ts)
{
	struct cap_half *h = &flow->half[dir];
	if (!h->init || flow->ignore)
		return;
	if (h->fin && SEQ_GT(ack, h->fin_seq))
		ack = h->fin_seq; /* the FIN takes one sequence number */
	if (!SEQ_GT(ack, h->next) || (uint32_t)(ack - h->next) >= SEQ_SANE)
		return;
	while (h->ooo && SEQ_LT(h->ooo->seq, ack))
		skip_hole(tcp, flow, dir, ts);
	if (SEQ_GT(ack, h->next)) {
		emit_gap(tcp, flow, dir, ack - h->next, ts);
		h->next = ack;
		drain(tcp, flow, dir, ts);
	}
}

/* Notes an ACK of the other side for direction dir. It takes effect
 * (ack_gap) ack_grace_us later, at the next packet of the flow or at its
 * end: a capture point that sees the two directions through different
 * queues (port mirroring) may put a data segment a little after its ACK. */
static void ack_note(struct cap_flow *flow, int dir, uint32_t ack, int64_t ts)
{
	struct cap_half *h = &flow->half[dir];
	if (!h->init || flow->ignore || !SEQ_GT(ack, h->next) ||
	    (uint32_t)(ack - h->next) >= SEQ_SANE)
		return;
	if (!h->acked_set) {
		h->acked_set = 1;
		h->acked_us = ts;
		h->acked = ack;
	} else if (SEQ_GT(ack, h->acked)) {
		h->acked = ack;
	}
}

/* Applies the pending ACKs older than the grace time (all with force). */
static void ack_apply(struct cap_tcp *tcp, struct cap_flow *flow, int64_t ts, int force)
{
	for (int d = 0; d < 2; d++) {
		struct cap_half *h = &flow->half[d];
		if (h->acked_set && (force || ts - h->acked_us >= tcp->opts.ack_grace_us)) {
			h->acked_set = 0;
			ack_gap(tcp, flow, d, h->acked, ts);
		}
	}
}

static void check_fin_close(struct cap_tcp *tcp, struct cap_flow *flow, int64_t ts)
{
	for (int d = 0; d < 2; d++) {
		struct cap_half *h = &flow->half[d];
		if (!h->fin || h->ooo || SEQ_LT(h->next, h->fin_seq))
			return;
	}
	flow_end(tcp, flow, CAP_CLOSE_FIN, ts, 1);
}

void cap_tcp_segment(struct cap_tcp *tcp, const struct cap_seg *seg, int64_t ts)
{
	struct cap_flow *flow;
	struct cap_fent *e;
	int dir;
	uint32_t h = flow_hash(tcp, seg);

	ts = ts_clamp(ts);
	tcp->st.tcp_segments++;
	tcp->st.tcp_bytes += seg->len;
	if (ts > tcp->now_us)
		tcp->now_us = ts;
	if (tcp->last_sweep_us == INT64_MIN) {
		tcp->last_sweep_us = tcp->now_us;
	} else if (tcp->now_us - tcp->last_sweep_us >= 1000000) {
		sweep(tcp, tcp->now_us);
		tcp->last_sweep_us = tcp->now_us;
	}

	e = ent_find(tcp, seg, h, &dir);
	int syn_only = (seg->flags & (CAP_TH_SYN | CAP_TH_ACK | CAP_TH_RST)) == CAP_TH_SYN;
	if (e && syn_only) {
		/* a retransmitted SYN, or the SYN captured after its SYN-ACK */
		int init = e->full ? FLOW_OF(e)->half[dir].init : e->init >> dir & 1;
		uint32_t isn = e->full ? FLOW_OF(e)->half[dir].isn : e->isn[dir];
		int same_syn = !e->closed && dir == 0 && e->client_how == CAP_CLIENT_SYN &&
		               (!init || isn == seg->seq);
		if (!same_syn) {
			/* port reuse: a new connection on the same 4-tuple */
			ent_end(tcp, e, CAP_CLOSE_REUSE, ts, 0);
			e = NULL;
		}
	}
	if (e && e->closed) {
		tcp->st.ignored_segments++;
		e->last_us = ts;
		if (e->full)
			FLOW_OF(e)->last_us = ts;
		return;
	}
	if (!e) {
		if (seg->flags & CAP_TH_RST) {
			tcp->st.ignored_segments++;
			return;
		}
		e = ent_new(tcp, seg, h, ts, &dir);
		if (!e) {
			tcp->st.ignored_segments++;
			return;
		}
	} else if (e->lru_next) {
		lru_unlink(tcp, e);
		lru_append(tcp, e);
	}
	e->last_us = ts;
	if (!e->full) {
		if (ent_segment(tcp, e, seg, dir, ts)) {
			mem_enforce(tcp, e, ts);
			return;
		}
		flow = ent_promote(tcp, e);
		if (!flow) {
			tcp->st.ignored_segments++;
			return;
		}
		e = &flow->ent;
	} else {
		flow = FLOW_OF(e);
	}
	flow->last_us = ts;
	flow->pkts[dir]++;

	struct cap_half *half = &flow->half[dir];
	uint32_t seq = seg->seq;
	if (seg->flags & CAP_TH_SYN) {
		if (!half->init || flow->pkts[dir] == 1) {
			half->isn = seq;
			half->next = seq + 1;
			half->init = 1;
		}
		if ((seg->flags & CAP_TH_ACK) && flow->handshake == 1)
			flow->handshake = 2;
		seq++; /* data on a SYN (TCP Fast Open) starts after it */
	}
	if (seg->flags & CAP_TH_RST) {
		flow->rst = 1;
		flow_end(tcp, flow, CAP_CLOSE_RST, ts, 1);
		return;
	}
	if (!half->init && (seg->len || seg->missing || (seg->flags & CAP_TH_FIN))) {
		/* no SYN seen: start at the first segment */
		half->isn = seq;
		half->next = seq;
		half->init = 1;
	}
	if (half->init)
		deliver(tcp, flow, dir, seq, seg->payload, seg->len, seg->missing, ts);
	if (seg->flags & CAP_TH_FIN) {
		uint32_t fs = seq + seg->len + seg->missing;
		if (!half->fin) {
			half->fin = 1;
			half->fin_seq = fs;
			flow->fin[dir] = 1;
		}
	}
	if (seg->flags & CAP_TH_ACK)
		ack_note(flow, !dir, seg->ack, ts);
	if (flow->half[0].acked_set || flow->half[1].acked_set)
		ack_apply(tcp, flow, ts, 0);
	for (int d = 0; d < 2; d++) {
		struct cap_half *hh = &flow->half[d];
		if (hh->ooo && ts - hh->ooo_since_us > tcp->opts.gap_timeout_us)
			skip_hole(tcp, flow, d, ts);
	}
	if (flow->fin[0] && flow->fin[1])
		check_fin_close(tcp, flow, ts);
	mem_enforce(tcp, e, ts);
}

void cap_tcp_packet(struct cap_tcp *tcp, const struct cap_pkt *pkt)
{
	struct cap_l3 l3;
	struct cap_seg seg;
	struct cap_frag_info fi;
	struct cap_dg *dg = NULL;
	enum cap_prc rc;

	tcp->st.packets++;
	tcp->st.bytes += pkt->caplen;
	rc = cap_link_parse(pkt->linktype, pkt->data, pkt->caplen, &l3);
	if (rc == CAP_P_TCP)
		rc = cap_ip_parse_frag(l3.p, l3.len, &seg, &fi);
	if (rc == CAP_P_FRAG) {
		if (cap_frag_add(&tcp->frags, &fi, ts_clamp(pkt->ts_us), &dg, &tcp->st) != 1)
			return;
		seg.af = dg->af;
		memcpy(seg.saddr, dg->saddr, 16);
		memcpy(seg.daddr, dg->daddr, 16);
		rc = cap_ip_upper(dg->buf, dg->total, dg->proto, &seg);
	}
	switch (rc) {
	case CAP_P_TCP:
		if (seg.missing)
			tcp->st.truncated_payload += seg.missing;
		cap_tcp_segment(tcp, &seg, pkt->ts_us);
		break;
	case CAP_P_NONIP:
		tcp->st.non_ip++;
		break;
	case CAP_P_NONTCP:
		tcp->st.non_tcp++;
		break;
	case CAP_P_MALFORMED:
		tcp->st.malformed++;
		break;
	case CAP_P_TRUNCATED:
		tcp->st.truncated++;
		break;
	case CAP_P_BADLINK:
		tcp->st.badlink++;
		break;
	case CAP_P_FRAG:
		break;
	}
	if (dg)
		cap_frag_release(&tcp->frags, dg);
}

void cap_tcp_flush(struct cap_tcp *tcp)
{
	while (tcp->lru_head[0])
		ent_end(tcp, tcp->lru_head[0], CAP_CLOSE_END, tcp->now_us, 0);
	while (tcp->lru_head[1])
		ent_destroy(tcp, tcp->lru_head[1]);
	cap_frag_expire(&tcp->frags, INT64_MAX, &tcp->st);
}

void cap_tcp_free(struct cap_tcp **ptcp)
{
	struct cap_tcp *tcp = *ptcp;
	if (!tcp)
		return;
	for (int l = 0; l < 2; l++)
		while (tcp->lru_head[l])
			ent_destroy(tcp, tcp->lru_head[l]);
	while (tcp->frags.head)
		cap_frag_release(&tcp->frags, tcp->frags.head);
	free(tcp->buckets);
	free(tcp);
	*ptcp = NULL;
}
