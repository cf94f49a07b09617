/* cap_test_pkt.h: packet and pcap builders for the capture tests
 * (test_cap_link.c, test_reasm.c). Static functions only: each test
 * executable gets its own copy. */
#ifndef CAP_TEST_PKT_H
#define CAP_TEST_PKT_H

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap.h"

static inline void tp_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void tp_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void tp_put32le(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* A TCP header (20 bytes, or more with nopts bytes of NOP options) and
 * payload at out. Returns its length. */
static inline size_t tp_tcp(uint8_t *out, uint16_t sport, uint16_t dport, uint32_t seq,
                            uint32_t ack, uint8_t flags, const void *pl, size_t plen, size_t nopts)
{
	size_t hl = 20 + nopts;
	memset(out, 0, hl);
	tp_put16(out, sport);
	tp_put16(out + 2, dport);
	tp_put32(out + 4, seq);
	tp_put32(out + 8, ack);
	out[12] = (uint8_t)((hl / 4) << 4);
	out[13] = flags;
	tp_put16(out + 14, 65535);
	memset(out + 20, 1, nopts); /* NOP */
	if (plen)
		memcpy(out + hl, pl, plen);
	return hl + plen;
}

/* An IPv4 header (with optlen bytes of NOP options) around body. */
static inline size_t tp_ip4(uint8_t *out, const char *src, const char *dst, uint8_t proto,
                            uint16_t id, uint16_t foff_flags, const uint8_t *body, size_t blen,
                            size_t optlen)
{
	size_t hl = 20 + optlen;
	memset(out, 0, hl);
	out[0] = (uint8_t)(0x40 | (hl / 4));
	tp_put16(out + 2, (uint16_t)(hl + blen));
	tp_put16(out + 4, id);
	tp_put16(out + 6, foff_flags);
	out[8] = 64;
	out[9] = proto;
	inet_pton(AF_INET, src, out + 12);
	inet_pton(AF_INET, dst, out + 16);
	memset(out + 20, 1, optlen);
	memmove(out + hl, body, blen);
	return hl + blen;
}

/* An IPv6 header; ext (already encoded extension headers, elen bytes)
 * then body. nh is the first next-header value. */
static inline size_t tp_ip6(uint8_t *out, const char *src, const char *dst, uint8_t nh,
                            const uint8_t *ext, size_t elen, const uint8_t *body, size_t blen)
{
	memset(out, 0, 40);
	out[0] = 0x60;
	tp_put16(out + 4, (uint16_t)(elen + blen));
	out[6] = nh;
	out[7] = 64;
	inet_pton(AF_INET6, src, out + 8);
	inet_pton(AF_INET6, dst, out + 24);
	memmove(out + 40 + elen, body, blen);
	if (elen)
		memcpy(out + 40, ext, elen);
	return 40 + elen + blen;
}

/* Wraps an IP packet in a link header. af (4/6) picks the type fields.
 * For Ethernet, nvlan tags (ids 100, 200, ...) are inserted: the outer one
 * 802.1ad (0x88a8) when qinq, else 802.1Q. */
static inline size_t tp_link(uint8_t *out, int linktype, int af, const uint8_t *ip, size_t iplen,
                             int nvlan, int qinq, int null_swap)
{
	size_t hl = 0;
	uint16_t et = af == 4 ? 0x0800 : 0x86dd;
	uint8_t hdr[64];
	memset(hdr, 0, sizeof(hdr));
	switch (linktype) {
	case 1: /* EN10MB */
		memcpy(hdr, "\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb", 12);
		hl = 12;
		for (int i = 0; i < nvlan; i++) {
			tp_put16(hdr + hl, (i == 0 && qinq) ? 0x88a8 : 0x8100);
			tp_put16(hdr + hl + 2, (uint16_t)(100 * (i + 1)));
			hl += 4;
		}
		tp_put16(hdr + hl, et);
		hl += 2;
		break;
	case 113: /* LINUX_SLL */
		tp_put16(hdr, 0);
		tp_put16(hdr + 2, 1);
		tp_put16(hdr + 4, 6);
		tp_put16(hdr + 14, et);
		hl = 16;
		break;
	case 276: /* LINUX_SLL2 */
		tp_put16(hdr, et);
		tp_put32(hdr + 4, 1);
		tp_put16(hdr + 8, 1);
		hdr[11] = 6;
		hl = 20;
		break;
	case 0: { /* NULL: host byte order; null_swap writes the other one */
		uint32_t v = af == 4 ? 2 : (null_swap ? 30 : 24);
		if (null_swap)
			tp_put32(hdr, v);
		else
			tp_put32le(hdr, v);
		hl = 4;
		break;
	}
	case 108: /* LOOP: network order */
		tp_put32(hdr, af == 4 ? 2 : 28);
		hl = 4;
		break;
	default: /* RAW, IPV4, IPV6 */
		hl = 0;
	}
	memmove(out + hl, ip, iplen);
	memcpy(out, hdr, hl);
	return hl + iplen;
}

/* ---- a pcap writer into memory ---- */

struct tp_pcap {
	uint8_t *p;
	size_t len, cap;
	int nano;
};

static inline void tp_raw(struct tp_pcap *w, const void *p, size_t n)
{
	if (w->len + n > w->cap) {
		w->cap = (w->len + n) * 2 + 4096;
		w->p = realloc(w->p, w->cap);
	}
	memcpy(w->p + w->len, p, n);
	w->len += n;
}

static inline void tp_pcap_begin(struct tp_pcap *w, int linktype, int nano, uint32_t snaplen)
{
	uint8_t h[24];
	memset(w, 0, sizeof(*w));
	w->nano = nano;
	tp_put32le(h, nano ? 0xa1b23c4d : 0xa1b2c3d4);
	h[4] = 2;
	h[5] = 0;
	h[6] = 4;
	h[7] = 0;
	memset(h + 8, 0, 8);
	tp_put32le(h + 16, snaplen);
	tp_put32le(h + 20, (uint32_t)linktype);
	tp_raw(w, h, 24);
}

/* One record; caplen bytes of data are written, origlen is declared. */
static inline void tp_pcap_rec(struct tp_pcap *w, int64_t ts_us, const uint8_t *data,
                               uint32_t caplen, uint32_t origlen)
{
	uint8_t h[16];
	tp_put32le(h, (uint32_t)(ts_us / 1000000));
	tp_put32le(h + 4, (uint32_t)(w->nano ? (ts_us % 1000000) * 1000 : ts_us % 1000000));
	tp_put32le(h + 8, caplen);
	tp_put32le(h + 12, origlen);
	tp_raw(w, h, 16);
	tp_raw(w, data, caplen);
}

static inline void tp_pcap_free(struct tp_pcap *w)
{
	free(w->p);
	w->p = NULL;
}

/* Writes the image to a temp file; returns its malloc'ed path. */
static inline char *tp_tmpfile(const void *p, size_t len, const char *suffix)
{
	char *path = malloc(256);
	snprintf(path, 256, "/tmp/kwire-cap-test-XXXXXX%s", suffix);
	int fd = mkstemps(path, (int)strlen(suffix));
	if (fd < 0) {
		free(path);
		return NULL;
	}
	FILE *f = fdopen(fd, "wb");
	fwrite(p, 1, len, f);
	fclose(f);
	return path;
}

/* ---- a recorder of reassembler callbacks ---- */

struct tp_rec {
	char log[16384]; /* "open 1 A>B|data 1 0 5|gap 1 0 3|close 1 fin|" */
	size_t loglen;
	uint8_t *buf[8][2]; /* data per flow id (1..7) and direction */
	size_t blen[8][2];
	int nopen, nclose, nmsg;
	uint64_t gap[8][2];
};

static inline void tp_log(struct tp_rec *r, const char *s)
{
	size_t n = strlen(s);
	if (r->loglen + n + 1 < sizeof(r->log)) {
		memcpy(r->log + r->loglen, s, n);
		r->loglen += n;
		r->log[r->loglen] = 0;
	}
}

static inline void tp_on_open(void *ctx, struct cap_flow *flow)
{
	struct tp_rec *r = ctx;
	char s[200];
	snprintf(s, sizeof(s), "open %llu %s>%s %d|", (unsigned long long)flow->id, flow->ep[0].str,
	         flow->ep[1].str, flow->client_how);
	tp_log(r, s);
	r->nopen++;
}

static inline void tp_on_data(void *ctx, struct cap_flow *flow, int dir, const uint8_t *p,
                              size_t len, int64_t ts)
{
	struct tp_rec *r = ctx;
	char s[80];
	snprintf(s, sizeof(s), "data %llu %d %zu|", (unsigned long long)flow->id, dir, len);
	tp_log(r, s);
	if (flow->id < 8) {
		size_t id = (size_t)flow->id;
		r->buf[id][dir] = realloc(r->buf[id][dir], r->blen[id][dir] + len + 1);
		memcpy(r->buf[id][dir] + r->blen[id][dir], p, len);
		r->blen[id][dir] += len;
		r->buf[id][dir][r->blen[id][dir]] = 0;
	}
}

static inline void tp_on_gap(void *ctx, struct cap_flow *flow, int dir, uint64_t n, int64_t ts)
{
	struct tp_rec *r = ctx;
	char s[80];
	snprintf(s, sizeof(s), "gap %llu %d %llu|", (unsigned long long)flow->id, dir,
	         (unsigned long long)n);
	tp_log(r, s);
	if (flow->id < 8)
		r->gap[flow->id][dir] += n;
}

static inline void tp_on_close(void *ctx, struct cap_flow *flow, enum cap_close_reason why)
{
	struct tp_rec *r = ctx;
	char s[80];
	snprintf(s, sizeof(s), "close %llu %s|", (unsigned long long)flow->id,
	         cap_close_reason_name(why));
	tp_log(r, s);
	r->nclose++;
}

static inline void tp_on_msg(void *ctx, struct cap_flow *flow, const char *msg)
{
	struct tp_rec *r = ctx;
	r->nmsg++;
	(void)flow;
	(void)msg;
}

static inline struct cap_tcp_cbs tp_cbs(struct tp_rec *r)
{
	struct cap_tcp_cbs cbs = {.ctx = r,
	                          .flow_open = tp_on_open,
	                          .data = tp_on_data,
	                          .gap = tp_on_gap,
	                          .flow_close = tp_on_close,
	                          .message = tp_on_msg};
	return cbs;
}

static inline void tp_rec_free(struct tp_rec *r)
{
	for (int i = 0; i < 8; i++)
		for (int d = 0; d < 2; d++) {
			free(r->buf[i][d]);
			r->buf[i][d] = NULL;
		}
}

#endif
