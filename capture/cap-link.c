/* cap-link.c: link-layer headers down to the network-layer protocol.
 *
 * Every read goes through struct kd_cur; a short read is CAP_P_TRUNCATED
 * (the snaplen cut the header), not an error of the sender. */
#include <pcap/pcap.h>
#include <stdio.h>

#include "cap-int.h"
#include "cap.h"
#include "kd-cur.h"

#define ETH_IPV4 0x0800
#define ETH_IPV6 0x86dd
#define ETH_VLAN 0x8100     /* 802.1Q */
#define ETH_QINQ 0x88a8     /* 802.1ad service tag */
#define ETH_QINQ_OLD 0x9100 /* pre-standard QinQ, still seen */

/* Values DLT_NULL/DLT_LOOP carry for IPv6: the AF_INET6 of the capturing
 * OS (pcap-linktype.html, LINKTYPE_NULL): NetBSD/OpenBSD 24, FreeBSD 28,
 * Darwin 30, Linux 10. IPv4 is 2 everywhere. */
static uint16_t null_af_ethertype(uint32_t af)
{
	switch (af) {
	case 2:
		return ETH_IPV4;
	case 10:
	case 24:
	case 28:
	case 30:
		return ETH_IPV6;
	default:
		return 0;
	}
}

static uint32_t bswap32(uint32_t v)
{
	return (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
}

int cap_link_supported(int linktype)
{
	switch (linktype) {
	case DLT_EN10MB:
	case DLT_LINUX_SLL:
	case DLT_LINUX_SLL2:
	case DLT_NULL:
	case DLT_LOOP:
	case DLT_IPV4:
	case DLT_IPV6:
	case 12: /* DLT_RAW on most systems; DLT_RAW may be 14 (OpenBSD) */
	case 14:
	case 101: /* LINKTYPE_RAW, when a reader passes the file value through */
		return 1;
	default:
		return 0;
	}
}

void cap_link_unsupported_msg(char *buf, size_t buflen, const char *what, int linktype)
{
	const char *name = pcap_datalink_val_to_name(linktype);
	snprintf(buf, buflen,
	         "%s has link type %s (%d), which kwire does not decode: its packets are skipped "
	         "(kwire decodes EN10MB, LINUX_SLL, LINUX_SLL2, NULL, LOOP, RAW, IPV4 and IPV6)",
	         what, name ? name : "unknown", linktype);
}

/*
 * Ethernet II:  dst(6) src(6) type(2)
 * 802.1Q tag:   type 0x8100, then TCI(2) type(2)  (0x88a8 / 0x9100 outer tags)
 */
static enum cap_prc eth_types(struct kd_cur *cur, uint16_t type, struct cap_l3 *l3)
{
	while (type == ETH_VLAN || type == ETH_QINQ || type == ETH_QINQ_OLD) {
		uint16_t tci;
		if (kd_cur_u16(cur, &tci) != KD_OK || kd_cur_u16(cur, &type) != KD_OK)
			return CAP_P_TRUNCATED;
		if (l3->nvlan >= 4)
			return CAP_P_MALFORMED; /* a tag loop, not a real network */
		l3->vlan[l3->nvlan++] = tci & 0x0fff;
	}
	l3->ethertype = type;
	l3->p = kd_cur_pos(cur);
	l3->len = kd_cur_left(cur);
	return (type == ETH_IPV4 || type == ETH_IPV6) ? CAP_P_TCP : CAP_P_NONIP;
}

static enum cap_prc raw_ip(struct kd_cur *cur, struct cap_l3 *l3)
{
	uint8_t v;
	if (kd_cur_left(cur) < 1)
		return CAP_P_TRUNCATED;
	v = kd_cur_pos(cur)[0] >> 4;
	l3->p = kd_cur_pos(cur);
	l3->len = kd_cur_left(cur);
	if (v == 4)
		l3->ethertype = ETH_IPV4;
	else if (v == 6)
		l3->ethertype = ETH_IPV6;
	else
		return CAP_P_MALFORMED;
	return CAP_P_TCP;
}

enum cap_prc cap_link_parse(int linktype, const uint8_t *p, size_t len, struct cap_l3 *l3)
{
	struct kd_cur cur;
	uint16_t type;
	uint32_t af;
	kd_cur_init(&cur, p, len);
	l3->nvlan = 0;
	l3->ethertype = 0;
	l3->p = NULL;
	l3->len = 0;
	switch (linktype) {
	case DLT_EN10MB:
		if (kd_cur_skip(&cur, 12) != KD_OK || kd_cur_u16(&cur, &type) != KD_OK)
			return CAP_P_TRUNCATED;
		if (type < 0x0600) /* 802.3 length field: LLC, not IP for us */
			return CAP_P_NONIP;
		return eth_types(&cur, type, l3);
	case DLT_LINUX_SLL:
		/* pkttype(2) arphrd(2) addrlen(2) addr(8) protocol(2) */
		if (kd_cur_skip(&cur, 14) != KD_OK || kd_cur_u16(&cur, &type) != KD_OK)
			return CAP_P_TRUNCATED;
		return eth_types(&cur, type, l3);
	case DLT_LINUX_SLL2:
		/* protocol(2) reserved(2) ifindex(4) arphrd(2) pkttype(1) addrlen(1) addr(8) */
		if (kd_cur_u16(&cur, &type) != KD_OK || kd_cur_skip(&cur, 18) != KD_OK)
			return CAP_P_TRUNCATED;
		return eth_types(&cur, type, l3);
	case DLT_NULL:
	case DLT_LOOP:
		/* 4 bytes of AF_: DLT_NULL in the capturing host's byte order,
		 * unknown to us; DLT_LOOP (OpenBSD) in network byte order, but
		 * some writers got it wrong. Accept both orders for both. */
		if (kd_cur_u32(&cur, &af) != KD_OK)
			return CAP_P_TRUNCATED;
		type = null_af_ethertype(af);
		if (!type)
			type = null_af_ethertype(bswap32(af));
		if (!type)
			return CAP_P_NONIP;
		l3->ethertype = type;
		l3->p = kd_cur_pos(&cur);
		l3->len = kd_cur_left(&cur);
		return CAP_P_TCP;
	case 12:
	case 14:
	case 101:
	case DLT_IPV4:
	case DLT_IPV6:
		return raw_ip(&cur, l3);
	default:
		return CAP_P_BADLINK;
	}
}
