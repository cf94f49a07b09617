/* px-tap.c: the pcapng tap (px-tap.h).
 *
 * One packet, as queued for the writer (pcapng Enhanced Packet Block,
 * host byte order, microsecond timestamps):
 *
 *   EPB: type 6 | total len | if 0 | ts hi | ts lo | caplen | len |
 *        Ethernet (14) | IPv4 (20) or IPv6 (40) | TCP (20) | payload | pad | total len
 *
 * The worker builds each packet straight into its queue block (one copy of
 * the payload); the writer thread only writes blocks and rotates files.
 * IPv4 header checksums are computed; TCP checksums are left 0, as in
 * captures taken with checksum offload (Wireshark and tshark do not check
 * them by default, and kwire's reassembler does not either). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "kd-arena.h"
#include "kd-cur.h"
#include "kd-redact.h"
#include "kd-render.h"
#include "kd-schema.h"
#include "kd.h"
#include "px-tap.h"

/* Payload bytes per segment: IPv4's total length is 16 bits. */
#define TAP_MSS 65000u
#define TAP_L2 14u
#define TAP_TCP 20u
#define TAP_EPB 28u /* EPB header, before the packet data */
/* A sensitive frame larger than this is not held: it is written as zeros. */
#define TAP_HOLD_MAX (16u << 20)
#define TAP_WARN_US (60ull * 1000000)

struct tap_blk {
	struct tap_blk *next;
	size_t len; /* bytes of data */
	uint8_t data[];
};

struct px_tap {
	char *path;
	struct px_tap_opts opts;
	void (*log)(void *arg, int level, const char *msg);
	void *arg;
	FILE *f;
	uint64_t fsize; /* bytes in the current file */
	pthread_t thread;
	pthread_mutex_t mu; /* guards the queue, stop, synced */
	pthread_cond_t cond, done_cond;
	struct tap_blk *head, *tail;
	size_t queued; /* bytes of blocks in the queue */
	uint64_t enq, written_seq;
	int stop;
	uint64_t warn_us; /* last drop warning */
	uint64_t unwarned;
	_Atomic uint64_t packets, bytes, dropped_packets, dropped_bytes, rotations, write_errors;
	_Atomic uint32_t flow_seed;
};

/* One direction of a flow. */
struct tap_dir {
	uint32_t seq;     /* next sequence number */
	uint32_t left;    /* bytes of the current frame still to come; 0: at a frame start */
	uint8_t nsz;      /* bytes of the size prefix seen */
	uint8_t szb[4];   /* the size prefix */
	uint8_t sens;     /* the current frame is held and redacted */
	uint8_t next_set; /* px_tap_flow_frame was called for the next frame */
	int16_t key, ver, next_key, next_ver;
	uint8_t *hold; /* a sensitive frame being gathered */
	size_t hold_len, hold_cap;
	uint8_t zero;        /* a sensitive frame too large to hold: written as zeros */
	struct tap_blk *seg; /* the packet being filled */
	size_t seg_payload;
};

struct px_tap_flow {
	struct px_tap *tap;
	uint8_t v6;
	uint8_t addr[2][16]; /* client, broker */
	uint16_t port[2];
	struct tap_dir d[2];
	struct kd_arena arena; /* redaction scratch */
};

static void tap_logf(struct px_tap *tap, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tap_logf(struct px_tap *tap, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (tap->log)
		tap->log(tap->arg, level, msg);
}

static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- files ---- */

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4); /* pcapng blocks are in the writer's byte order */
}

static int write_header(struct px_tap *tap)
{
	uint8_t h[28 + 20];
	/* Section Header Block, with no options. */
	put32(h, 0x0A0D0D0A);
	put32(h + 4, 28);
	put32(h + 8, 0x1A2B3C4D);
	uint16_t ver[2] = {1, 0};
	memcpy(h + 12, ver, 4);
	int64_t seclen = -1;
	memcpy(h + 16, &seclen, 8);
	put32(h + 24, 28);
	/* Interface Description Block: Ethernet, no snap length limit. */
	put32(h + 28, 1);
	put32(h + 32, 20);
	uint16_t lt[2] = {1, 0};
	memcpy(h + 36, lt, 4);
	put32(h + 40, 0);
	put32(h + 44, 20);
	if (fwrite(h, 1, sizeof(h), tap->f) != sizeof(h))
		return -1;
	tap->fsize = sizeof(h);
	return 0;
}

/* "dir/x.pcapng" + 2 -> "dir/x.2.pcapng"; without the extension "x.2". */
static void rot_name(const char *path, unsigned i, char *out, size_t cap)
{
	size_t len = strlen(path);
	const char *ext = ".pcapng";
	size_t el = strlen(ext);
	if (len > el && !strcmp(path + len - el, ext))
		snprintf(out, cap, "%.*s.%u%s", (int)(len - el), path, i, ext);
	else
		snprintf(out, cap, "%s.%u", path, i);
}

/* Writer thread only: closes the current file, shifts the old ones and
 * starts a new one. */
static void rotate(struct px_tap *tap)
{
	char a[4200], b[4200];
	fclose(tap->f);
	tap->f = NULL;
	if (tap->opts.files <= 1) {
		remove(tap->path);
	} else {
		rot_name(tap->path, tap->opts.files - 1, a, sizeof(a));
		remove(a);
		for (unsigned i = tap->opts.files - 1; i > 1; i--) {
			rot_name(tap->path, i - 1, a, sizeof(a));
			rot_name(tap->path, i, b, sizeof(b));
			rename(a, b);
		}
		rot_name(tap->path, 1, a, sizeof(a));
		rename(tap->path, a);
	}
	tap->f = fopen(tap->path, "wb");
	if (!tap->f || write_header(tap)) {
		atomic_fetch_add(&tap->write_errors, 1);
		tap_logf(tap, 0, "tap %s: cannot start a new file: %s", tap->path, strerror(errno));
	}
	atomic_fetch_add(&tap->rotations, 1);
}

static void *writer(void *arg)
{
	struct px_tap *tap = arg;
	pthread_mutex_lock(&tap->mu);
	for (;;) {
		while (!tap->head && !tap->stop)
			pthread_cond_wait(&tap->cond, &tap->mu);
		struct tap_blk *list = tap->head;
		uint64_t seq = tap->enq;
		tap->head = tap->tail = NULL;
		int stop = tap->stop;
		pthread_mutex_unlock(&tap->mu);
		size_t freed = 0;
		while (list) {
			struct tap_blk *b = list;
			list = b->next;
			if (tap->f && tap->opts.max_bytes && tap->fsize > 48 &&
			    tap->fsize + b->len > tap->opts.max_bytes)
				rotate(tap);
			if (tap->f) {
				if (fwrite(b->data, 1, b->len, tap->f) != b->len) {
					if (!atomic_fetch_add(&tap->write_errors, 1))
						tap_logf(tap, 0, "tap %s: write failed: %s",
						         tap->path, strerror(errno));
				} else {
					tap->fsize += b->len;
					atomic_fetch_add_explicit(&tap->packets, 1,
					                          memory_order_relaxed);
					atomic_fetch_add_explicit(&tap->bytes, b->len,
					                          memory_order_relaxed);
				}
			}
			freed += b->len;
			free(b);
		}
		if (tap->f)
			fflush(tap->f);
		pthread_mutex_lock(&tap->mu);
		tap->queued -= freed;
		tap->written_seq = seq;
		pthread_cond_broadcast(&tap->done_cond);
		if (stop && !tap->head)
			break;
	}
	pthread_mutex_unlock(&tap->mu);
	return NULL;
}

struct px_tap *px_tap_open(const char *path, const struct px_tap_opts *opts,
                           void (*log)(void *arg, int level, const char *msg), void *arg, char *err,
                           size_t errlen)
{
	struct px_tap *tap = calloc(1, sizeof(*tap));
	if (!tap || !(tap->path = strdup(path))) {
		free(tap);
		kd_errf(err, errlen, "out of memory");
		return NULL;
	}
	tap->opts = *opts;
	if (!tap->opts.files)
		tap->opts.files = 1;
	if (!tap->opts.queue_bytes)
		tap->opts.queue_bytes = PX_TAP_QUEUE_DEFAULT;
	tap->log = log;
	tap->arg = arg;
	tap->f = fopen(path, "wb");
	if (!tap->f || write_header(tap) || fflush(tap->f)) {
		kd_errf(err, errlen, "tap %s: %s", path, strerror(errno));
		if (tap->f)
			fclose(tap->f);
		free(tap->path);
		free(tap);
		return NULL;
	}
	atomic_init(&tap->flow_seed, (uint32_t)wall_us());
	pthread_mutex_init(&tap->mu, NULL);
	pthread_cond_init(&tap->cond, NULL);
	pthread_cond_init(&tap->done_cond, NULL);
	if (pthread_create(&tap->thread, NULL, writer, tap)) {
		kd_errf(err, errlen, "tap %s: cannot start its thread", path);
		fclose(tap->f);
		pthread_mutex_destroy(&tap->mu);
		pthread_cond_destroy(&tap->cond);
		pthread_cond_destroy(&tap->done_cond);
		free(tap->path);
		free(tap);
		return NULL;
	}
	return tap;
}

void px_tap_close(struct px_tap **tapp)
{
	struct px_tap *tap = *tapp;
	if (!tap)
		return;
	pthread_mutex_lock(&tap->mu);
	tap->stop = 1;
	pthread_cond_signal(&tap->cond);
	pthread_mutex_unlock(&tap->mu);
	pthread_join(tap->thread, NULL);
	if (tap->f)
		fclose(tap->f);
	pthread_mutex_destroy(&tap->mu);
	pthread_cond_destroy(&tap->cond);
	pthread_cond_destroy(&tap->done_cond);
	free(tap->path);
	free(tap);
	*tapp = NULL;
}

void px_tap_sync(struct px_tap *tap)
{
	pthread_mutex_lock(&tap->mu);
	uint64_t want = tap->enq;
	while (tap->written_seq < want)
		pthread_cond_wait(&tap->done_cond, &tap->mu);
	pthread_mutex_unlock(&tap->mu);
}

void px_tap_stats_get(struct px_tap *tap, struct px_tap_stats *out)
{
	out->packets = atomic_load(&tap->packets);
	out->bytes = atomic_load(&tap->bytes);
	out->dropped_packets = atomic_load(&tap->dropped_packets);
	out->dropped_bytes = atomic_load(&tap->dropped_bytes);
	out->rotations = atomic_load(&tap->rotations);
	out->write_errors = atomic_load(&tap->write_errors);
	pthread_mutex_lock(&tap->mu);
	out->queue_bytes = tap->queued;
	pthread_mutex_unlock(&tap->mu);
}

const char *px_tap_path(const struct px_tap *tap)
{
	return tap->path;
}

/* Hands a finished block to the writer, or drops it when the budget is
 * spent. */
static void enqueue(struct px_tap *tap, struct tap_blk *b)
{
	pthread_mutex_lock(&tap->mu);
	if (tap->queued + b->len > tap->opts.queue_bytes) {
		uint64_t now = mono_us(), n = ++tap->unwarned;
		int warn = !tap->warn_us || now - tap->warn_us >= TAP_WARN_US;
		if (warn) {
			tap->warn_us = now;
			tap->unwarned = 0;
		}
		pthread_mutex_unlock(&tap->mu);
		atomic_fetch_add_explicit(&tap->dropped_packets, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&tap->dropped_bytes, b->len, memory_order_relaxed);
		if (warn)
			tap_logf(tap, 1,
			         "tap %s: the writer is behind (%zu bytes queued): %" PRIu64
			         " packet(s) dropped (warned at most once a minute)",
			         tap->path, tap->queued, n);
		free(b);
		return;
	}
	b->next = NULL;
	if (tap->tail)
		tap->tail->next = b;
	else
		tap->head = b;
	tap->tail = b;
	tap->queued += b->len;
	tap->enq++;
	pthread_cond_signal(&tap->cond);
	pthread_mutex_unlock(&tap->mu);
}

/* ---- packets ---- */

static size_t l3_len(const struct px_tap_flow *flow)
{
	return flow->v6 ? 40 : 20;
}

static uint16_t ip_csum(const uint8_t *p, size_t n)
{
	uint32_t s = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* A packet block with room for payload bytes, headers left to finish(). */
static struct tap_blk *blk_new(const struct px_tap_flow *flow, size_t payload)
{
	size_t pkt = TAP_L2 + l3_len(flow) + TAP_TCP + payload;
	size_t total = TAP_EPB + ((pkt + 3) & ~(size_t)3) + 4;
	struct tap_blk *b = malloc(sizeof(*b) + total);
	if (b)
		b->len = total;
	return b;
}

static uint8_t *blk_payload(const struct px_tap_flow *flow, struct tap_blk *b)
{
	return b->data + TAP_EPB + TAP_L2 + l3_len(flow) + TAP_TCP;
}

/* Fills the headers of a packet in direction dir carrying payload bytes
 * (already in place) with flags, and queues it. */
static void finish(struct px_tap_flow *flow, struct tap_blk *b, int dir, size_t payload,
                   uint8_t flags, uint32_t seq, uint32_t ack)
{
	size_t l3 = l3_len(flow);
	size_t pkt = TAP_L2 + l3 + TAP_TCP + payload;
	size_t total = TAP_EPB + ((pkt + 3) & ~(size_t)3) + 4;
	b->len = total;
	uint8_t *d = b->data;
	uint64_t ts = wall_us();
	put32(d, 6);
	put32(d + 4, (uint32_t)total);
	put32(d + 8, 0);
	put32(d + 12, (uint32_t)(ts >> 32));
	put32(d + 16, (uint32_t)ts);
	put32(d + 20, (uint32_t)pkt);
	put32(d + 24, (uint32_t)pkt);
	uint8_t *e = d + TAP_EPB;
	/* Ethernet: locally administered addresses, 02:00:00:00:00:01 for
	 * the client and :02 for the broker. */
	static const uint8_t mac[2][6] = {{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}};
	memcpy(e, mac[!dir], 6);
	memcpy(e + 6, mac[dir], 6);
	e[12] = flow->v6 ? 0x86 : 0x08;
	e[13] = flow->v6 ? 0xdd : 0x00;
	uint8_t *ip = e + TAP_L2;
	int src = dir == PX_TAP_C2S ? 0 : 1, dst = !src;
	if (flow->v6) {
		memset(ip, 0, 40);
		ip[0] = 0x60;
		uint16_t plen = (uint16_t)(TAP_TCP + payload);
		ip[4] = (uint8_t)(plen >> 8);
		ip[5] = (uint8_t)plen;
		ip[6] = 6; /* TCP */
		ip[7] = 64;
		memcpy(ip + 8, flow->addr[src], 16);
		memcpy(ip + 24, flow->addr[dst], 16);
	} else {
		uint16_t tlen = (uint16_t)(20 + TAP_TCP + payload);
		memset(ip, 0, 20);
		ip[0] = 0x45;
		ip[2] = (uint8_t)(tlen >> 8);
		ip[3] = (uint8_t)tlen;
		ip[6] = 0x40; /* DF */
		ip[8] = 64;
		ip[9] = 6;
		memcpy(ip + 12, flow->addr[src], 4);
		memcpy(ip + 16, flow->addr[dst], 4);
		uint16_t c = ip_csum(ip, 20);
		ip[10] = (uint8_t)(c >> 8);
		ip[11] = (uint8_t)c;
	}
	uint8_t *t = ip + l3;
	t[0] = (uint8_t)(flow->port[src] >> 8);
	t[1] = (uint8_t)flow->port[src];
	t[2] = (uint8_t)(flow->port[dst] >> 8);
	t[3] = (uint8_t)flow->port[dst];
	t[4] = (uint8_t)(seq >> 24);
	t[5] = (uint8_t)(seq >> 16);
	t[6] = (uint8_t)(seq >> 8);
	t[7] = (uint8_t)seq;
	t[8] = (uint8_t)(ack >> 24);
	t[9] = (uint8_t)(ack >> 16);
	t[10] = (uint8_t)(ack >> 8);
	t[11] = (uint8_t)ack;
	t[12] = 5 << 4;
	t[13] = flags;
	t[14] = 0xff; /* window 65535 */
	t[15] = 0xff;
	t[16] = t[17] = t[18] = t[19] = 0; /* checksum (offload), urgent pointer */
	size_t pad = ((pkt + 3) & ~(size_t)3) - pkt;
	memset(d + TAP_EPB + pkt, 0, pad);
	put32(d + total - 4, (uint32_t)total);
	enqueue(flow->tap, b);
}

enum { TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_PSH = 0x08, TCP_ACK = 0x10 };

/* A packet without payload. */
static void control(struct px_tap_flow *flow, int dir, uint8_t flags)
{
	struct tap_blk *b = blk_new(flow, 0);
	if (!b)
		return;
	struct tap_dir *d = &flow->d[dir];
	uint32_t ack = (flags & TCP_ACK) ? flow->d[!dir].seq : 0;
	finish(flow, b, dir, 0, flags, d->seq, ack);
	if (flags & (TCP_SYN | TCP_FIN))
		d->seq++;
}

/* Queues the segment being filled in direction dir. */
static void seg_flush(struct px_tap_flow *flow, int dir)
{
	struct tap_dir *d = &flow->d[dir];
	if (!d->seg)
		return;
	uint32_t seq = d->seq;
	d->seq += (uint32_t)d->seg_payload;
	finish(flow, d->seg, dir, d->seg_payload, TCP_PSH | TCP_ACK, seq, flow->d[!dir].seq);
	d->seg = NULL;
	d->seg_payload = 0;
}

/* Appends bytes (or n zeros when p is NULL) to the stream of dir. */
static void emit(struct px_tap_flow *flow, int dir, const uint8_t *p, size_t n)
{
	struct tap_dir *d = &flow->d[dir];
	while (n) {
		if (!d->seg) {
			d->seg = blk_new(flow, TAP_MSS);
			d->seg_payload = 0;
			if (!d->seg) { /* out of memory: the reader sees a gap */
				size_t m = n < TAP_MSS ? n : TAP_MSS;
				d->seq += (uint32_t)m;
				n -= m;
				if (p)
					p += m;
				continue;
			}
		}
		size_t room = TAP_MSS - d->seg_payload;
		size_t m = n < room ? n : room;
		uint8_t *dst = blk_payload(flow, d->seg) + d->seg_payload;
		if (p) {
			memcpy(dst, p, m);
			p += m;
		} else {
			memset(dst, 0, m);
		}
		d->seg_payload += m;
		n -= m;
		if (d->seg_payload == TAP_MSS)
			seg_flush(flow, dir);
	}
}

static void hold_add(struct tap_dir *d, const uint8_t *p, size_t n)
{
	if (d->hold_len + n > d->hold_cap) {
		size_t cap = d->hold_cap ? d->hold_cap : 256;
		while (cap < d->hold_len + n)
			cap *= 2;
		uint8_t *h = realloc(d->hold, cap);
		if (!h) {
			d->zero = 1; /* cannot hold it: zeros, never the secret */
			return;
		}
		d->hold = h;
		d->hold_cap = cap;
	}
	memcpy(d->hold + d->hold_len, p, n);
	d->hold_len += n;
}

/* A sensitive frame is complete (or given up on): written redacted. */
static void hold_out(struct px_tap_flow *flow, int dir)
{
	struct tap_dir *d = &flow->d[dir];
	if (!d->zero) {
		kd_redact_frame(d->hold, d->hold_len, d->key, d->ver, dir == PX_TAP_C2S,
		                &flow->arena);
		emit(flow, dir, d->hold, d->hold_len);
	}
	d->hold_len = 0;
	if (d->hold_cap > 64 * 1024) {
		free(d->hold);
		d->hold = NULL;
		d->hold_cap = 0;
	}
}

/* Follows the frames of dir: plain frames are written as they come,
 * sensitive ones are held whole and redacted. */
static void feed(struct px_tap_flow *flow, int dir, const uint8_t *p, size_t n)
{
	struct tap_dir *d = &flow->d[dir];
	while (n) {
		if (!d->left && d->nsz < 4) {
			if (!d->nsz) {
				d->key = d->next_set ? d->next_key : 0;
				d->ver = d->next_ver;
				d->sens = d->next_set && kd_api_sensitive(d->key);
				d->next_set = 0;
				d->zero = 0;
			}
			size_t m = 4u - d->nsz < n ? 4u - d->nsz : n;
			memcpy(d->szb + d->nsz, p, m);
			d->nsz = (uint8_t)(d->nsz + m);
			if (d->sens)
				hold_add(d, p, m);
			else
				emit(flow, dir, p, m);
			p += m;
			n -= m;
			if (d->nsz == 4) {
				uint32_t size = (uint32_t)d->szb[0] << 24 |
				                (uint32_t)d->szb[1] << 16 |
				                (uint32_t)d->szb[2] << 8 | d->szb[3];
				d->left = size > INT32_MAX ? 0 : size;
				if (d->sens && d->left > TAP_HOLD_MAX) {
					/* Too large to hold: its size goes out, then zeros. */
					emit(flow, dir, d->hold, d->hold_len);
					d->hold_len = 0;
					d->zero = 1;
				}
				if (!d->left) {
					if (d->sens && !d->zero)
						hold_out(flow, dir);
					d->nsz = 0;
				}
			}
			continue;
		}
		size_t m = d->left < n ? d->left : n;
		if (!d->sens)
			emit(flow, dir, p, m);
		else if (d->zero)
			emit(flow, dir, NULL, m);
		else
			hold_add(d, p, m);
		p += m;
		n -= m;
		d->left -= (uint32_t)m;
		if (!d->left) {
			if (d->sens)
				hold_out(flow, dir);
			d->nsz = 0;
		}
	}
}

/* ---- flows ---- */

static int sa_get(const struct sockaddr *sa, uint8_t addr[16], uint16_t *port, int *v6)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		memset(addr, 0, 16);
		memcpy(addr, &in->sin_addr, 4);
		*port = ntohs(in->sin_port);
		*v6 = 0;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		memcpy(addr, &in6->sin6_addr, 16);
		*port = ntohs(in6->sin6_port);
		*v6 = 1;
		return 0;
	}
	return -1;
}

static void v4_mapped(uint8_t addr[16])
{
	uint8_t v4[4];
	memcpy(v4, addr, 4);
	memset(addr, 0, 10);
	addr[10] = addr[11] = 0xff;
	memcpy(addr + 12, v4, 4);
}

struct px_tap_flow *px_tap_flow_new(struct px_tap *tap, const struct sockaddr *client,
                                    const struct sockaddr *broker)
{
	struct px_tap_flow *flow = calloc(1, sizeof(*flow));
	int v6c, v6b;
	if (!flow)
		return NULL;
	if (sa_get(client, flow->addr[0], &flow->port[0], &v6c) ||
	    sa_get(broker, flow->addr[1], &flow->port[1], &v6b)) {
		free(flow);
		return NULL;
	}
	if (v6c != v6b) {
		v4_mapped(v6c ? flow->addr[1] : flow->addr[0]);
		v6c = v6b = 1;
	}
	flow->v6 = (uint8_t)v6c;
	flow->tap = tap;
	/* Initial sequence numbers: distinct per flow, as a real stack's are. */
	uint32_t s = atomic_fetch_add(&tap->flow_seed, 0x9e3779b9u);
	flow->d[0].seq = s;
	flow->d[1].seq = s ^ 0x5bd1e995u;
	control(flow, PX_TAP_C2S, TCP_SYN);
	control(flow, PX_TAP_S2C, TCP_SYN | TCP_ACK);
	control(flow, PX_TAP_C2S, TCP_ACK);
	return flow;
}

void px_tap_flow_frame(struct px_tap_flow *flow, int dir, int16_t key, int16_t ver)
{
	struct tap_dir *d = &flow->d[dir];
	d->next_key = key;
	d->next_ver = ver;
	d->next_set = 1;
}

void px_tap_flow_mem(struct px_tap_flow *flow, int dir, const void *p, size_t n)
{
	feed(flow, dir, p, n);
	seg_flush(flow, dir);
}

void px_tap_flow_buf(struct px_tap_flow *flow, int dir, struct evbuffer *src, size_t off, size_t n)
{
	struct evbuffer_iovec vec[16];
	struct evbuffer_ptr ptr;
	if (evbuffer_ptr_set(src, &ptr, off, EVBUFFER_PTR_SET) < 0)
		return;
	while (n) {
		int nvec = evbuffer_peek(src, (ev_ssize_t)n, &ptr, vec, 16);
		if (nvec <= 0)
			break;
		size_t done = 0;
		for (int i = 0; i < nvec && i < 16 && n; i++) {
			size_t m = vec[i].iov_len < n ? vec[i].iov_len : n;
			feed(flow, dir, vec[i].iov_base, m);
			n -= m;
			done += m;
		}
		if (n && evbuffer_ptr_set(src, &ptr, done, EVBUFFER_PTR_ADD) < 0)
			break;
	}
	seg_flush(flow, dir);
}

void px_tap_flow_end(struct px_tap_flow **flowp)
{
	struct px_tap_flow *flow = *flowp;
	if (!flow)
		return;
	for (int dir = 0; dir < 2; dir++) {
		struct tap_dir *d = &flow->d[dir];
		if (d->hold_len && d->sens)
			hold_out(flow, dir); /* a frame cut short: still redacted */
		seg_flush(flow, dir);
	}
	control(flow, PX_TAP_C2S, TCP_FIN | TCP_ACK);
	control(flow, PX_TAP_S2C, TCP_FIN | TCP_ACK);
	control(flow, PX_TAP_C2S, TCP_ACK);
	for (int dir = 0; dir < 2; dir++) {
		free(flow->d[dir].hold);
		free(flow->d[dir].seg);
	}
	kd_arena_free(&flow->arena);
	free(flow);
	*flowp = NULL;
}

#define TAPREG_MAX 64 /* files of tap rules, over every reload */

struct px_tapreg {
	pthread_mutex_t mu;
	void (*log)(void *arg, int level, const char *msg);
	void *arg;
	struct {
		char *path;
		struct px_tap *tap; /* NULL: could not be opened (logged) */
	} v[TAPREG_MAX];
	unsigned n;
};

struct px_tapreg *px_tapreg_new(void (*log)(void *arg, int level, const char *msg), void *arg)
{
	struct px_tapreg *reg = calloc(1, sizeof(*reg));
	if (!reg)
		return NULL;
	pthread_mutex_init(&reg->mu, NULL);
	reg->log = log;
	reg->arg = arg;
	return reg;
}

struct px_tap *px_tapreg_get(struct px_tapreg *reg, const char *path, uint64_t max_bytes,
                             unsigned files)
{
	struct px_tap *tap = NULL;
	pthread_mutex_lock(&reg->mu);
	for (unsigned i = 0; i < reg->n; i++)
		if (!strcmp(reg->v[i].path, path)) {
			tap = reg->v[i].tap;
			goto out;
		}
	char err[512];
	if (reg->n == TAPREG_MAX) {
		if (reg->log)
			reg->log(reg->arg, 1,
			         "tap rules: more than 64 files; the others are not written");
		goto out;
	}
	struct px_tap_opts o = {max_bytes, files, PX_TAP_QUEUE_DEFAULT};
	tap = px_tap_open(path, &o, reg->log, reg->arg, err, sizeof(err));
	if (!tap && reg->log)
		reg->log(reg->arg, 0, err);
	reg->v[reg->n].path = strdup(path);
	reg->v[reg->n].tap = tap;
	if (reg->v[reg->n].path)
		reg->n++;
	else
		px_tap_close(&tap);
out:
	pthread_mutex_unlock(&reg->mu);
	return tap;
}

void px_tapreg_free(struct px_tapreg **regp)
{
	struct px_tapreg *reg = *regp;
	if (!reg)
		return;
	for (unsigned i = 0; i < reg->n; i++) {
		px_tap_close(&reg->v[i].tap);
		free(reg->v[i].path);
	}
	pthread_mutex_destroy(&reg->mu);
	free(reg);
	*regp = NULL;
}

void px_tap_metrics(struct px_tap *tap, struct px_tapreg *reg, struct kd_wbuf *w)
{
	static const struct {
		const char *name, *help, *type;
	} m[] = {
	    {"kwire_tap_packets_total", "Packets written to the tap file.", "counter"},
	    {"kwire_tap_bytes_total", "Bytes written to the tap file.", "counter"},
	    {"kwire_tap_dropped_packets_total",
	     "Packets dropped because the tap writer was behind (queue full).", "counter"},
	    {"kwire_tap_dropped_bytes_total", "Bytes of the dropped packets.", "counter"},
	    {"kwire_tap_rotations_total", "Tap files rotated.", "counter"},
	    {"kwire_tap_write_errors_total", "Failed writes to the tap file.", "counter"},
	    {"kwire_tap_queue_bytes", "Bytes of packets waiting for the tap writer.", "gauge"},
	};
	struct px_tap *taps[TAPREG_MAX + 1];
	const char *files[TAPREG_MAX + 1];
	unsigned n = 0;
	if (tap) {
		taps[n] = tap;
		files[n++] = NULL;
	}
	if (reg) {
		pthread_mutex_lock(&reg->mu);
		for (unsigned i = 0; i < reg->n; i++)
			if (reg->v[i].tap) {
				taps[n] = reg->v[i].tap;
				files[n++] = reg->v[i].path;
			}
	}
	uint64_t v[TAPREG_MAX + 1][7];
	for (unsigned t = 0; t < n; t++) {
		struct px_tap_stats st;
		px_tap_stats_get(taps[t], &st);
		uint64_t x[7] = {st.packets,       st.bytes,     st.dropped_packets,
		                 st.dropped_bytes, st.rotations, st.write_errors,
		                 st.queue_bytes};
		memcpy(v[t], x, sizeof(x));
	}
	for (size_t i = 0; n && i < sizeof(m) / sizeof(m[0]); i++) {
		kd_w_fmt(w, "# HELP %s %s\n# TYPE %s %s\n", m[i].name, m[i].help, m[i].name,
		         m[i].type);
		for (unsigned t = 0; t < n; t++) {
			kd_w_fmt(w, "%s", m[i].name);
			if (files[t]) { /* the file of a tap rule: a quoted, escaped label */
				kd_w_fmt(w, "{file=");
				kd_json_cstr(w, files[t]);
				kd_w_fmt(w, "}");
			}
			kd_w_fmt(w, " %" PRIu64 "\n", v[t][i]);
		}
	}
	if (reg)
		pthread_mutex_unlock(&reg->mu);
}
