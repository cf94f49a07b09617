/* cap-ip.c: IPv4 and IPv6 headers (options, extension headers, fragment
 * detection) and the TCP header.
 *
 * Lengths: the IP header's length says how much of the frame is the
 * datagram (Ethernet pads short frames; some writers append trailers, and
 * caplen may exceed the wire length). caplen says what was captured. The
 * payload is min(IP length, captured); what the IP length promised beyond
 * the captured bytes is reported as `missing` so the reassembler can turn
 * it into a gap of the exact size. An IP length of 0 (TSO/LRO captures,
 * IPv6 jumbograms) means "trust the captured length". */
#include <string.h>

#include "cap-int.h"
#include "cap.h"
#include "kd-cur.h"

#define IPPROTO_TCP_ 6
#define NH_HOPOPTS 0
#define NH_ROUTING 43
#define NH_FRAGMENT 44
#define NH_AH 51
#define NH_NONE 59
#define NH_DSTOPTS 60
#define NH_MOBILITY 135

/*
 *  0      4      8              16                              32
 *  +------+------+--------------+-------------------------------+
 *  | srcport                    | dstport                       |
 *  | sequence number                                            |
 *  | acknowledgment number                                      |
 *  | off  | rsvd | flags        | window                        |
 *  | checksum                   | urgent pointer                |
 *  | options (off*4 - 20 bytes) ...                             |
 */
enum cap_prc cap_tcp_hdr_parse(const uint8_t *p, size_t len, uint32_t missing, struct cap_seg *seg)
{
	struct kd_cur cur;
	uint8_t offb, flags;
	kd_cur_init(&cur, p, len);
	if (kd_cur_u16(&cur, &seg->sport) != KD_OK || kd_cur_u16(&cur, &seg->dport) != KD_OK ||
	    kd_cur_u32(&cur, &seg->seq) != KD_OK || kd_cur_u32(&cur, &seg->ack) != KD_OK ||
	    kd_cur_i8(&cur, (int8_t *)&offb) != KD_OK ||
	    kd_cur_i8(&cur, (int8_t *)&flags) != KD_OK || kd_cur_u16(&cur, &seg->win) != KD_OK)
		return missing ? CAP_P_TRUNCATED : CAP_P_MALFORMED;
	size_t hlen = (size_t)(offb >> 4) * 4;
	if (hlen < 20)
		return CAP_P_MALFORMED;
	if (hlen > len) {
		/* the header runs past the datagram (malformed) or past the
		 * captured bytes (truncated) */
		return hlen > len + missing ? CAP_P_MALFORMED : CAP_P_TRUNCATED;
	}
	seg->flags = flags;
	seg->payload = p + hlen;
	seg->len = (uint32_t)(len - hlen);
	seg->missing = missing;
	return CAP_P_TCP;
}

/*
 * IPv4:  ver/ihl(1) tos(1) totlen(2) id(2) flags/fragoff(2) ttl(1) proto(1)
 *        csum(2) src(4) dst(4) options(ihl*4 - 20)
 */
static enum cap_prc ipv4(const uint8_t *p, size_t len, struct cap_seg *seg,
                         struct cap_frag_info *frag)
{
	struct kd_cur cur;
	uint8_t vihl, proto;
	uint16_t totlen, id, foff;
	kd_cur_init(&cur, p, len);
	if (len < 20)
		return CAP_P_TRUNCATED;
	kd_cur_i8(&cur, (int8_t *)&vihl);
	kd_cur_skip(&cur, 1);
	kd_cur_u16(&cur, &totlen);
	kd_cur_u16(&cur, &id);
	kd_cur_u16(&cur, &foff);
	kd_cur_skip(&cur, 1);
	kd_cur_i8(&cur, (int8_t *)&proto);
	kd_cur_skip(&cur, 2);
	if ((vihl >> 4) != 4)
		return CAP_P_MALFORMED;
	size_t ihl = (size_t)(vihl & 0x0f) * 4;
	if (ihl < 20)
		return CAP_P_MALFORMED;
	size_t dlen = totlen ? totlen : len; /* 0: TSO capture, trust caplen */
	if (dlen < ihl)
		return CAP_P_MALFORMED;
	if (ihl > len)
		return CAP_P_TRUNCATED;
	seg->af = 4;
	memset(seg->saddr, 0, sizeof(seg->saddr));
	memset(seg->daddr, 0, sizeof(seg->daddr));
	memcpy(seg->saddr, kd_cur_pos(&cur), 4);
	memcpy(seg->daddr, kd_cur_pos(&cur) + 4, 4);
	size_t have = dlen < len ? dlen : len;
	uint32_t missing = (uint32_t)(dlen - have);
	const uint8_t *body = p + ihl;
	size_t blen = have - ihl;
	uint16_t off8 = foff & 0x1fff;
	int more = (foff & 0x2000) != 0;
	if (more || off8) {
		if (frag) {
			frag->af = 4;
			frag->proto = proto;
			frag->more = (uint8_t)more;
			frag->cut = missing != 0;
			frag->id = id;
			frag->off = (uint32_t)off8 * 8;
			memcpy(frag->saddr, seg->saddr, 16);
			memcpy(frag->daddr, seg->daddr, 16);
			frag->p = body;
			frag->len = blen;
		}
		return CAP_P_FRAG;
	}
	if (proto != IPPROTO_TCP_)
		return CAP_P_NONTCP;
	return cap_tcp_hdr_parse(body, blen, missing, seg);
}

/* Walks an IPv6 header chain from next-header nh at cur to TCP. frag NULL
 * with a fragment header: the caller only wants whole packets (CAP_P_FRAG
 * is still returned); cap_ip_upper() treats one inside a reassembled
 * datagram as malformed. */
static enum cap_prc ip6_chain(struct kd_cur *cur, uint8_t nh, uint32_t missing, struct cap_seg *seg,
                              struct cap_frag_info *frag)
{
	for (int hops = 0;; hops++) {
		uint8_t next, hl;
		uint16_t foff;
		uint32_t id;
		size_t start = cur->off;
		if (hops > 16)
			return CAP_P_MALFORMED; /* a header chain nobody sends */
		switch (nh) {
		case IPPROTO_TCP_:
			return cap_tcp_hdr_parse(kd_cur_pos(cur), kd_cur_left(cur), missing, seg);
		case NH_HOPOPTS:
		case NH_ROUTING:
		case NH_DSTOPTS:
		case NH_MOBILITY:
		case NH_AH:
			if (kd_cur_i8(cur, (int8_t *)&next) != KD_OK ||
			    kd_cur_i8(cur, (int8_t *)&hl) != KD_OK)
				return missing ? CAP_P_TRUNCATED : CAP_P_MALFORMED;
			size_t ext = nh == NH_AH ? ((size_t)hl + 2) * 4 : ((size_t)hl + 1) * 8;
			cur->off = start;
			if (kd_cur_skip(cur, ext) != KD_OK)
				return missing ? CAP_P_TRUNCATED : CAP_P_MALFORMED;
			nh = next;
			break;
		case NH_FRAGMENT:
			if (kd_cur_i8(cur, (int8_t *)&next) != KD_OK ||
			    kd_cur_skip(cur, 1) != KD_OK || kd_cur_u16(cur, &foff) != KD_OK ||
			    kd_cur_u32(cur, &id) != KD_OK)
				return missing ? CAP_P_TRUNCATED : CAP_P_MALFORMED;
			if ((foff & 0xfff8) == 0 && !(foff & 1)) {
				/* atomic fragment (RFC 6946): a whole packet */
				nh = next;
				break;
			}
			if (frag) {
				frag->af = 6;
				frag->proto = next;
				frag->more = foff & 1;
				frag->cut = missing != 0;
				frag->id = id;
				frag->off = foff & 0xfff8;
				memcpy(frag->saddr, seg->saddr, 16);
				memcpy(frag->daddr, seg->daddr, 16);
				frag->p = kd_cur_pos(cur);
				frag->len = kd_cur_left(cur);
			}
			return CAP_P_FRAG;
		default: /* NH_NONE, UDP, ICMPv6, ESP, ... */
			return CAP_P_NONTCP;
		}
	}
}

enum cap_prc cap_ip_upper(const uint8_t *p, size_t len, uint8_t proto, struct cap_seg *seg)
{
	struct kd_cur cur;
	enum cap_prc rc;
	if (seg->af == 4)
		return proto == IPPROTO_TCP_ ? cap_tcp_hdr_parse(p, len, 0, seg) : CAP_P_NONTCP;
	kd_cur_init(&cur, p, len);
	rc = ip6_chain(&cur, proto, 0, seg, NULL);
	return rc == CAP_P_FRAG ? CAP_P_MALFORMED : rc; /* a fragment inside a fragment */
}

/*
 * IPv6:  ver/tc/flow(4) paylen(2) next(1) hops(1) src(16) dst(16)
 * Extension headers: next(1) len(1) ... ; hop-by-hop, routing, destination
 * options: (len+1)*8 bytes; AH: (len+2)*4 bytes; fragment: 8 bytes
 *        next(1) rsvd(1) offset<<3|M (2) id(4)
 */
static enum cap_prc ipv6(const uint8_t *p, size_t len, struct cap_seg *seg,
                         struct cap_frag_info *frag)
{
	struct kd_cur cur;
	uint32_t vtf;
	uint16_t paylen;
	uint8_t nh;
	kd_cur_init(&cur, p, len);
	if (len < 40)
		return CAP_P_TRUNCATED;
	kd_cur_u32(&cur, &vtf);
	kd_cur_u16(&cur, &paylen);
	kd_cur_i8(&cur, (int8_t *)&nh);
	kd_cur_skip(&cur, 1);
	if ((vtf >> 28) != 6)
		return CAP_P_MALFORMED;
	seg->af = 6;
	memcpy(seg->saddr, kd_cur_pos(&cur), 16);
	memcpy(seg->daddr, kd_cur_pos(&cur) + 16, 16);
	kd_cur_skip(&cur, 32);
	size_t dlen = paylen ? (size_t)paylen + 40 : len; /* 0: jumbogram or TSO */
	size_t have = dlen < len ? dlen : len;
	uint32_t missing = (uint32_t)(dlen - have);
	/* from here on, the cursor covers the datagram as captured */
	kd_cur_init(&cur, p + 40, have - 40);
	return ip6_chain(&cur, nh, missing, seg, frag);
}

enum cap_prc cap_ip_parse_frag(const uint8_t *p, size_t len, struct cap_seg *seg,
                               struct cap_frag_info *frag)
{
	if (len < 1)
		return CAP_P_TRUNCATED;
	switch (p[0] >> 4) {
	case 4:
		return ipv4(p, len, seg, frag);
	case 6:
		return ipv6(p, len, seg, frag);
	default:
		return CAP_P_MALFORMED;
	}
}

enum cap_prc cap_ip_parse(const uint8_t *p, size_t len, struct cap_seg *seg)
{
	return cap_ip_parse_frag(p, len, seg, NULL);
}
