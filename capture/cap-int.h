/* cap-int.h: internals shared by the capture module's own files (not part
 * of the public API in cap.h). */
#ifndef CAP_INT_H
#define CAP_INT_H

#include "cap-t.h"

/* An IP fragment as cap_ip_parse_frag() finds it. p/len are the bytes
 * after the IPv4 header or the IPv6 fragment header. */
struct cap_frag_info {
	uint8_t af;
	uint8_t proto; /* upper-layer protocol */
	uint8_t more;  /* MF / M flag */
	uint8_t cut;   /* caplen cut the fragment: it cannot be reassembled */
	uint32_t id;
	uint32_t off; /* byte offset in the datagram */
	uint8_t saddr[16], daddr[16];
	const uint8_t *p;
	size_t len;
};

/* cap_ip_parse() that also fills frag when it returns CAP_P_FRAG. */
enum cap_prc cap_ip_parse_frag(const uint8_t *p, size_t len, struct cap_seg *seg,
                               struct cap_frag_info *frag);

/* The upper layer of a reassembled datagram: seg->af and the addresses set,
 * p/len the bytes after the fragment header, proto its next header. IPv6
 * extension headers there are skipped. Returns CAP_P_TCP (seg filled),
 * CAP_P_NONTCP or CAP_P_MALFORMED. */
enum cap_prc cap_ip_upper(const uint8_t *p, size_t len, uint8_t proto, struct cap_seg *seg);

/* Parses a TCP header and payload of a (reassembled) datagram. seg->af and
 * the addresses must be set already. missing: payload bytes the IP length
 * promised beyond len. */
enum cap_prc cap_tcp_hdr_parse(const uint8_t *p, size_t len, uint32_t missing, struct cap_seg *seg);

/* ---- keyed hashing (cap-hash.c) ---- */

struct cap_hkey {
	uint64_t k[2];
};
/* SipHash-1-3 of data under key. */
uint64_t cap_siphash(const struct cap_hkey *key, const void *data, size_t len);
/* A random key (getrandom; a time-based one if the kernel has no entropy yet). */
void cap_hkey_random(struct cap_hkey *key);

/* ---- IP fragment reassembly (cap-frag.c) ---- */

/* One datagram being rebuilt. Bytes are kept per 8-byte block (fragment
 * offsets are in 8-byte units); the first copy of a block wins, as in the
 * TCP reassembler. */
struct cap_dg {
	struct cap_dg *next, *prev; /* age order, oldest first */
	uint8_t af, proto, have_last;
	uint32_t id;
	uint8_t saddr[16], daddr[16];
	int64_t first_us;
	uint32_t total;  /* datagram payload length, known once the last fragment came */
	uint32_t nset;   /* blocks present */
	uint32_t maxend; /* highest byte offset + 1 seen */
	uint32_t cap;    /* bytes allocated in buf */
	uint8_t *buf;
	uint8_t bits[8192 / 8]; /* 65536 / 8 blocks */
};

struct cap_fragtab {
	struct cap_dg *head, *tail;
	uint32_t n;
	size_t mem;
	size_t mem_max;
	uint32_t max;
	int64_t timeout_us;
};

/* Adds one fragment. Returns 1 with *out a complete datagram (give it back
 * with cap_frag_release() after use), 0 when it is held, -1 when it was
 * dropped (counted in st->frag_dropped). */
int cap_frag_add(struct cap_fragtab *ft, const struct cap_frag_info *fi, int64_t now_us,
                 struct cap_dg **out, struct cap_stats *st);
void cap_frag_release(struct cap_fragtab *ft, struct cap_dg *dg);
/* Drops datagrams older than the timeout; all of them with now_us == INT64_MAX. */
void cap_frag_expire(struct cap_fragtab *ft, int64_t now_us, struct cap_stats *st);

/* ---- kwire's pcapng reader (cap-pcapng.c) ---- */

struct cap_ng;
#include <stdio.h>
/* A reader of the pcapng stream fp (positioned at its start); takes fp. */
struct cap_ng *cap_ng_new(FILE *fp);
/* 1 (pkt filled, valid until the next call), 0 at the end (a cut file sets
 * *truncated and a message in err), -1 on malformed input (err). */
int cap_ng_next(struct cap_ng *ng, struct cap_pkt *pkt, char *err, size_t errlen, int *truncated);
/* Reads the blocks up to the first interface description (the section
 * header is checked on the way). 0 or -1 (err). */
int cap_ng_prime(struct cap_ng *ng, char *err, size_t errlen, int *truncated);
int cap_ng_set_filter(struct cap_ng *ng, const char *bpf, char *err, size_t errlen);
/* Where the reader's warnings go (an interface of a link type kwire does
 * not decode). Set before cap_ng_prime(). */
void cap_ng_set_warn(struct cap_ng *ng, void (*fn)(void *ctx, const char *msg), void *ctx);
/* The warning for a link type kwire does not decode; what names the
 * interface or the file ("interface 1 (eth0)", "the capture"). */
void cap_link_unsupported_msg(char *buf, size_t buflen, const char *what, int linktype);
/* The first interface's link type, -1 before one was read. */
int cap_ng_linktype(const struct cap_ng *ng);
FILE *cap_ng_file(const struct cap_ng *ng);
void cap_ng_free(struct cap_ng *ng);

#endif
