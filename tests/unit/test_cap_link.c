/* test_cap_link.c: link layers, IPv4/IPv6 headers, IP fragment reassembly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cap_test_pkt.h"

#define PAYLOAD "hello kafka"
#define PLEN (sizeof(PAYLOAD) - 1)

/* An IPv4 or IPv6 TCP packet carrying PAYLOAD, 10.0.0.1:40000 -> 10.0.0.2:9092. */
static size_t mk_ip(uint8_t *out, int af)
{
	uint8_t tcp[128];
	size_t tl = tp_tcp(tcp, 40000, 9092, 1000, 2000, CAP_TH_ACK | CAP_TH_PSH, PAYLOAD, PLEN, 0);
	if (af == 4)
		return tp_ip4(out, "10.0.0.1", "10.0.0.2", 6, 1, 0x4000, tcp, tl, 0);
	return tp_ip6(out, "2001:db8::1", "2001:db8::2", 6, NULL, 0, tcp, tl);
}

static void check_seg(const struct cap_seg *seg, int af)
{
	assert_int_equal(seg->af, af);
	assert_int_equal(seg->sport, 40000);
	assert_int_equal(seg->dport, 9092);
	assert_int_equal(seg->seq, 1000);
	assert_int_equal(seg->ack, 2000);
	assert_int_equal(seg->flags, CAP_TH_ACK | CAP_TH_PSH);
	assert_int_equal(seg->len, PLEN);
	assert_int_equal(seg->missing, 0);
	assert_memory_equal(seg->payload, PAYLOAD, PLEN);
}

struct lt {
	int linktype; /* DLT value libpcap reports */
	int filetype; /* LINKTYPE value in the file */
	int nvlan, qinq, swap;
};

static const struct lt lts[] = {
    {1, 1, 0, 0, 0},     {1, 1, 1, 0, 0},     {1, 1, 2, 1, 0},     {1, 1, 3, 0, 0},
    {113, 113, 0, 0, 0}, {276, 276, 0, 0, 0}, {0, 0, 0, 0, 0},     {0, 0, 0, 0, 1},
    {108, 108, 0, 0, 0}, {12, 101, 0, 0, 0},  {228, 228, 0, 0, 0}, {229, 229, 0, 0, 0},
};

static void test_link_types_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(lts) / sizeof(lts[0]); i++) {
		for (int af = 4; af <= 6; af += 2) {
			if ((lts[i].linktype == 228 && af == 6) ||
			    (lts[i].linktype == 229 && af == 4))
				continue;
			uint8_t ip[256], fr[320];
			size_t il = mk_ip(ip, af);
			size_t fl = tp_link(fr, lts[i].linktype, af, ip, il, lts[i].nvlan,
			                    lts[i].qinq, lts[i].swap);
			struct cap_l3 l3;
			struct cap_seg seg;
			assert_true(cap_link_supported(lts[i].linktype));
			assert_int_equal(cap_link_parse(lts[i].linktype, fr, fl, &l3), CAP_P_TCP);
			assert_int_equal(l3.ethertype, af == 4 ? 0x0800 : 0x86dd);
			assert_int_equal(l3.nvlan, lts[i].nvlan);
			for (int v = 0; v < lts[i].nvlan; v++)
				assert_int_equal(l3.vlan[v], 100 * (v + 1));
			assert_int_equal(l3.len, il);
			assert_int_equal(cap_ip_parse(l3.p, l3.len, &seg), CAP_P_TCP);
			check_seg(&seg, af);
			/* every prefix shorter than the headers is truncated, never
			 * read past the end */
			size_t hdrs = fl - il + (af == 4 ? 40 : 60);
			for (size_t cut = 0; cut < hdrs; cut++) {
				uint8_t *copy = malloc(cut ? cut : 1);
				memcpy(copy, fr, cut);
				enum cap_prc rc = cap_link_parse(lts[i].linktype, copy, cut, &l3);
				if (rc == CAP_P_TCP)
					rc = cap_ip_parse(l3.p, l3.len, &seg);
				assert_int_equal(rc, CAP_P_TRUNCATED);
				free(copy);
			}
		}
	}
}

/* The same frames through a pcap file (libpcap's LINKTYPE -> DLT mapping)
 * and the whole pipeline. */
static void test_link_types_pcap(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(lts) / sizeof(lts[0]); i++) {
		for (int af = 4; af <= 6; af += 2) {
			if ((lts[i].linktype == 228 && af == 6) ||
			    (lts[i].linktype == 229 && af == 4))
				continue;
			uint8_t ip[256], fr[320];
			struct tp_pcap w;
			struct tp_rec rec;
			memset(&rec, 0, sizeof(rec));
			size_t il = mk_ip(ip, af);
			size_t fl = tp_link(fr, lts[i].linktype, af, ip, il, lts[i].nvlan,
			                    lts[i].qinq, lts[i].swap);
			tp_pcap_begin(&w, lts[i].filetype, 0, 65535);
			tp_pcap_rec(&w, 1000000, fr, (uint32_t)fl, (uint32_t)fl);
			struct cap_source *src;
			char err[256];
			assert_int_equal(cap_source_open_mem(&src, w.p, w.len, err, sizeof(err)),
			                 0);
			assert_int_equal(cap_source_linktype(src), lts[i].linktype);
			struct cap_tcp_cbs cbs = tp_cbs(&rec);
			struct cap_tcp *tcp = cap_tcp_new(NULL, &cbs);
			assert_int_equal(cap_run(src, tcp), 0);
			assert_int_equal(rec.blen[1][0], PLEN);
			assert_memory_equal(rec.buf[1][0], PAYLOAD, PLEN);
			assert_int_equal(cap_tcp_stats(tcp)->packets, 1);
			assert_int_equal(cap_tcp_stats(tcp)->delivered, PLEN);
			assert_string_equal(
			    rec.log,
			    af == 4
			        ? "open 1 10.0.0.1:40000>10.0.0.2:9092 2|data 1 0 11|close 1 end|"
			        : "open 1 [2001:db8::1]:40000>[2001:db8::2]:9092 2|data 1 0 "
			          "11|close 1 end|");
			cap_tcp_free(&tcp);
			cap_source_close(&src);
			assert_null(src);
			tp_pcap_free(&w);
			tp_rec_free(&rec);
		}
	}
}

static void test_link_other(void **state)
{
	(void)state;
	uint8_t fr[128];
	struct cap_l3 l3;
	/* ARP over Ethernet: not IP */
	memset(fr, 0, sizeof(fr));
	tp_put16(fr + 12, 0x0806);
	assert_int_equal(cap_link_parse(1, fr, 60, &l3), CAP_P_NONIP);
	/* 802.3 length field */
	tp_put16(fr + 12, 0x0040);
	assert_int_equal(cap_link_parse(1, fr, 60, &l3), CAP_P_NONIP);
	/* five VLAN tags: a loop, not a network */
	for (int i = 0; i < 5; i++)
		tp_put16(fr + 12 + 4 * i, 0x8100);
	tp_put16(fr + 32, 0x0800);
	assert_int_equal(cap_link_parse(1, fr, 100, &l3), CAP_P_MALFORMED);
	/* NULL with an unknown family */
	tp_put32le(fr, 7);
	assert_int_equal(cap_link_parse(0, fr, 40, &l3), CAP_P_NONIP);
	/* NULL with Linux's AF_INET6 (10), little endian */
	tp_put32le(fr, 10);
	fr[4] = 0x60;
	assert_int_equal(cap_link_parse(0, fr, 44, &l3), CAP_P_TCP);
	assert_int_equal(l3.ethertype, 0x86dd);
	/* raw with a bad version nibble */
	fr[0] = 0x50;
	assert_int_equal(cap_link_parse(12, fr, 40, &l3), CAP_P_MALFORMED);
	/* a link type we do not decode */
	assert_false(cap_link_supported(105));
	assert_int_equal(cap_link_parse(105, fr, 40, &l3), CAP_P_BADLINK);
}

static void test_ipv4_options_and_errors(void **state)
{
	(void)state;
	uint8_t tcp[128], ip[256];
	struct cap_seg seg;
	size_t tl =
	    tp_tcp(tcp, 40000, 9092, 1000, 2000, CAP_TH_ACK | CAP_TH_PSH, PAYLOAD, PLEN, 12);
	size_t il = tp_ip4(ip, "10.0.0.1", "10.0.0.2", 6, 1, 0, tcp, tl, 40);
	assert_int_equal(cap_ip_parse(ip, il, &seg), CAP_P_TCP);
	check_seg(&seg, 4);

	/* Ethernet padding / trailer after the datagram is not payload */
	uint8_t padded[300];
	memcpy(padded, ip, il);
	memset(padded + il, 0xee, 16);
	assert_int_equal(cap_ip_parse(padded, il + 16, &seg), CAP_P_TCP);
	check_seg(&seg, 4);

	/* the snaplen cut 4 payload bytes: they are reported missing */
	assert_int_equal(cap_ip_parse(ip, il - 4, &seg), CAP_P_TCP);
	assert_int_equal(seg.len, PLEN - 4);
	assert_int_equal(seg.missing, 4);

	/* total length 0 (TSO capture): trust caplen */
	uint8_t tso[256];
	memcpy(tso, ip, il);
	tp_put16(tso + 2, 0);
	assert_int_equal(cap_ip_parse(tso, il, &seg), CAP_P_TCP);
	check_seg(&seg, 4);

	uint8_t bad[256];
	memcpy(bad, ip, il);
	bad[0] = 0x44; /* ihl 4 */
	assert_int_equal(cap_ip_parse(bad, il, &seg), CAP_P_MALFORMED);
	memcpy(bad, ip, il);
	tp_put16(bad + 2, 30); /* total length shorter than the header */
	assert_int_equal(cap_ip_parse(bad, il, &seg), CAP_P_MALFORMED);
	memcpy(bad, ip, il);
	bad[60 + 12] = 0x40; /* TCP data offset 4 words */
	assert_int_equal(cap_ip_parse(bad, il, &seg), CAP_P_MALFORMED);
	memcpy(bad, ip, il);
	bad[60 + 12] = 0xf0; /* TCP header longer than the datagram */
	tp_put16(bad + 2, 60 + 40);
	assert_int_equal(cap_ip_parse(bad, 100, &seg), CAP_P_MALFORMED);
	memcpy(bad, ip, il);
	bad[9] = 17; /* UDP */
	assert_int_equal(cap_ip_parse(bad, il, &seg), CAP_P_NONTCP);
	memcpy(bad, ip, il);
	tp_put16(bad + 6, 0x2000); /* MF: a fragment */
	assert_int_equal(cap_ip_parse(bad, il, &seg), CAP_P_FRAG);
}

static void test_ipv6_ext_headers(void **state)
{
	(void)state;
	uint8_t tcp[128], ip[512], ext[128];
	struct cap_seg seg;
	size_t tl = tp_tcp(tcp, 40000, 9092, 1000, 2000, CAP_TH_ACK | CAP_TH_PSH, PAYLOAD, PLEN, 0);
	size_t el = 0;
	/* hop-by-hop (8 bytes) -> routing (24 bytes) -> AH (16 bytes) ->
	 * destination options (16 bytes) -> atomic fragment (8) -> TCP */
	memset(ext, 0, sizeof(ext));
	ext[el] = 43;
	ext[el + 1] = 0;
	el += 8;
	ext[el] = 51;
	ext[el + 1] = 2;
	el += 24;
	ext[el] = 60;
	ext[el + 1] = 2; /* AH: (2+2)*4 = 16 */
	el += 16;
	ext[el] = 44;
	ext[el + 1] = 1;
	el += 16;
	ext[el] = 6; /* fragment header, offset 0, M 0: atomic */
	el += 8;
	size_t il = tp_ip6(ip, "2001:db8::1", "2001:db8::2", 0, ext, el, tcp, tl);
	assert_int_equal(cap_ip_parse(ip, il, &seg), CAP_P_TCP);
	check_seg(&seg, 6);
	/* every cut inside the extension headers is truncated, not malformed */
	for (size_t cut = 40; cut < 40 + el + 20; cut++)
		assert_int_equal(cap_ip_parse(ip, cut, &seg), CAP_P_TRUNCATED);
	/* an extension header running past the payload length is malformed */
	uint8_t bad[512];
	memcpy(bad, ip, il);
	bad[40 + 1] = 200;
	assert_int_equal(cap_ip_parse(bad, il, &seg), CAP_P_MALFORMED);
	/* no next header */
	memcpy(bad, ip, il);
	bad[6] = 59;
	assert_int_equal(cap_ip_parse(bad, il, &seg), CAP_P_NONTCP);
	/* a real fragment */
	memcpy(bad, ip, il);
	bad[40 + el - 8 + 3] = 1; /* M flag */
	assert_int_equal(cap_ip_parse(bad, il, &seg), CAP_P_FRAG);
}

/* ---- fragments through the whole pipeline ---- */

#define FRAG_PL 100

struct fragset {
	uint8_t fr[8][256];
	size_t len[8];
	int n;
};

/* The TCP segment (20 + FRAG_PL bytes) split at the given offsets. For
 * af 6 a fragment header is used. The payload is 'a'..'z' repeating. */
static void mk_frags(struct fragset *fs, int af, const uint32_t *cuts, int ncuts, uint32_t id)
{
	uint8_t tcp[256], pl[FRAG_PL];
	for (int i = 0; i < FRAG_PL; i++)
		pl[i] = (uint8_t)('a' + i % 26);
	size_t tl = tp_tcp(tcp, 40000, 9092, 1000, 2000, CAP_TH_ACK, pl, FRAG_PL, 0);
	fs->n = 0;
	for (int i = 0; i <= ncuts; i++) {
		uint32_t from = i ? cuts[i - 1] : 0, to = i < ncuts ? cuts[i] : (uint32_t)tl;
		int more = i < ncuts;
		if (af == 4) {
			uint16_t ff = (uint16_t)((from / 8) | (more ? 0x2000 : 0));
			fs->len[i] = tp_ip4(fs->fr[i], "10.0.0.1", "10.0.0.2", 6, (uint16_t)id, ff,
			                    tcp + from, to - from, 0);
		} else {
			uint8_t fh[8] = {6, 0, 0, 0, 0, 0, 0, 0};
			tp_put16(fh + 2, (uint16_t)(from | (more ? 1 : 0)));
			tp_put32(fh + 4, id);
			fs->len[i] = tp_ip6(fs->fr[i], "2001:db8::1", "2001:db8::2", 44, fh, 8,
			                    tcp + from, to - from);
		}
		fs->n++;
	}
}

static void feed(struct cap_tcp *tcp, const uint8_t *fr, size_t len, int64_t ts)
{
	struct cap_pkt pkt = {.data = fr,
	                      .caplen = (uint32_t)len,
	                      .origlen = (uint32_t)len,
	                      .ts_us = ts,
	                      .linktype = 12};
	cap_tcp_packet(tcp, &pkt);
}

static void check_frag_payload(struct tp_rec *rec)
{
	assert_int_equal(rec->blen[1][0], FRAG_PL);
	for (int i = 0; i < FRAG_PL; i++)
		assert_int_equal(rec->buf[1][0][i], 'a' + i % 26);
}

static void test_frag_orders(void **state)
{
	(void)state;
	static const uint32_t cuts[] = {48, 96};
	static const int orders[][3] = {{0, 1, 2}, {2, 1, 0}, {1, 2, 0}, {2, 0, 1}};
	for (int af = 4; af <= 6; af += 2) {
		for (size_t o = 0; o < sizeof(orders) / sizeof(orders[0]); o++) {
			struct fragset fs;
			struct tp_rec rec;
			memset(&rec, 0, sizeof(rec));
			struct cap_tcp_cbs cbs = tp_cbs(&rec);
			struct cap_tcp *tcp = cap_tcp_new(NULL, &cbs);
			mk_frags(&fs, af, cuts, 2, 77);
			for (int k = 0; k < 3; k++)
				feed(tcp, fs.fr[orders[o][k]], fs.len[orders[o][k]], 1000000 + k);
			assert_int_equal(cap_tcp_stats(tcp)->fragments, 3);
			assert_int_equal(cap_tcp_stats(tcp)->frag_reassembled, 1);
			assert_int_equal(cap_tcp_buffered(tcp), 0);
			cap_tcp_flush(tcp);
			check_frag_payload(&rec);
			cap_tcp_free(&tcp);
			tp_rec_free(&rec);
		}
	}
}

/* IPv6: a destination options header after the fragment header is part
 * of the fragmentable part (RFC 8200 4.5) and is skipped after reassembly. */
static void test_frag6_ext_after(void **state)
{
	(void)state;
	uint8_t body[256], pl[FRAG_PL], fr[2][400];
	size_t fl[2];
	for (int i = 0; i < FRAG_PL; i++)
		pl[i] = (uint8_t)('a' + i % 26);
	memset(body, 0, 8);
	body[0] = 6; /* destination options (8 bytes), then TCP */
	size_t bl = 8 + tp_tcp(body + 8, 40000, 9092, 1000, 2000, CAP_TH_ACK, pl, FRAG_PL, 0);
	for (int k = 0; k < 2; k++) {
		uint32_t from = k ? 64 : 0, to = k ? (uint32_t)bl : 64;
		uint8_t fh[8] = {60, 0, 0, 0, 0, 0, 0, 9};
		tp_put16(fh + 2, (uint16_t)(from | (k ? 0 : 1)));
		fl[k] =
		    tp_ip6(fr[k], "2001:db8::1", "2001:db8::2", 44, fh, 8, body + from, to - from);
	}
	struct tp_rec rec;
	memset(&rec, 0, sizeof(rec));
	struct cap_tcp_cbs cbs = tp_cbs(&rec);
	struct cap_tcp *tcp = cap_tcp_new(NULL, &cbs);
	feed(tcp, fr[1], fl[1], 1);
	feed(tcp, fr[0], fl[0], 2);
	cap_tcp_flush(tcp);
	check_frag_payload(&rec);
	cap_tcp_free(&tcp);
	tp_rec_free(&rec);
}

static void test_frag_overlap_first_wins(void **state)
{
	(void)state;
	struct fragset a, b;
	struct tp_rec rec;
	memset(&rec, 0, sizeof(rec));
	struct cap_tcp_cbs cbs = tp_cbs(&rec);
	struct cap_tcp *tcp = cap_tcp_new(NULL, &cbs);
	static const uint32_t cuts_a[] = {48, 96};
	static const uint32_t cuts_b[] = {24, 72};
	mk_frags(&a, 4, cuts_a, 2, 5);
	mk_frags(&b, 4, cuts_b, 2, 5);
	/* b's middle fragment [24,72) overlaps a's first two, with other bytes */
	for (size_t i = 20; i < b.len[1]; i++)
		b.fr[1][i] = 'X';
	feed(tcp, a.fr[0], a.len[0], 1);
	feed(tcp, b.fr[1], b.len[1], 2); /* [24,48) old, [48,72) new 'X' */
	feed(tcp, a.fr[1], a.len[1], 3); /* [48,96): [72,96) new */
	feed(tcp, a.fr[2], a.len[2], 4);
	cap_tcp_flush(tcp);
	assert_int_equal(cap_tcp_stats(tcp)->frag_reassembled, 1);
	assert_int_equal(rec.blen[1][0], FRAG_PL);
	/* TCP payload starts at datagram offset 20: [48,72) is payload 28..51 */
	for (int i = 0; i < FRAG_PL; i++)
		assert_int_equal(rec.buf[1][0][i], (i >= 28 && i < 52) ? 'X' : 'a' + i % 26);
	cap_tcp_free(&tcp);
	tp_rec_free(&rec);
}

static void test_frag_missing_and_limits(void **state)
{
	(void)state;
	struct fragset fs;
	struct tp_rec rec;
	memset(&rec, 0, sizeof(rec));
	struct cap_tcp_opts opts = {
	    .frag_mem_max = 64 * 1024, .frag_max = 8, .frag_timeout_us = 2000000};
	struct cap_tcp_cbs cbs = tp_cbs(&rec);
	struct cap_tcp *tcp = cap_tcp_new(&opts, &cbs);
	static const uint32_t cuts[] = {48, 96};
	/* 100 datagrams that each miss their last fragment */
	for (uint32_t id = 0; id < 100; id++) {
		mk_frags(&fs, 4, cuts, 2, id);
		feed(tcp, fs.fr[0], fs.len[0], 1000000);
		feed(tcp, fs.fr[1], fs.len[1], 1000000);
		assert_true(cap_tcp_buffered(tcp) <= opts.frag_mem_max);
	}
	assert_int_equal(cap_tcp_stats(tcp)->frag_reassembled, 0);
	assert_true(cap_tcp_stats(tcp)->frag_dropped >= 92);
	/* a complete one still goes through */
	mk_frags(&fs, 4, cuts, 2, 1000);
	for (int k = 0; k < 3; k++)
		feed(tcp, fs.fr[k], fs.len[k], 1000001);
	assert_int_equal(cap_tcp_stats(tcp)->frag_reassembled, 1);
	check_frag_payload(&rec);
	/* the timeout drops what is held */
	mk_frags(&fs, 4, cuts, 2, 2000);
	feed(tcp, fs.fr[0], fs.len[0], 5000000);
	uint64_t dropped = cap_tcp_stats(tcp)->frag_dropped;
	feed(tcp, fs.fr[1], fs.len[1], 9000000); /* 4 s later: the first one expired */
	assert_true(cap_tcp_stats(tcp)->frag_dropped > dropped);
	/* a middle fragment whose length is not a multiple of 8: dropped */
	static const uint32_t odd[] = {44, 96};
	mk_frags(&fs, 4, odd, 2, 3000);
	for (int k = 0; k < 3; k++)
		feed(tcp, fs.fr[k], fs.len[k], 9000001);
	assert_int_equal(cap_tcp_stats(tcp)->frag_reassembled, 1);
	cap_tcp_flush(tcp);
	assert_int_equal(cap_tcp_buffered(tcp), 0);
	cap_tcp_free(&tcp);
	tp_rec_free(&rec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_link_types_parse),
	    cmocka_unit_test(test_link_types_pcap),
	    cmocka_unit_test(test_link_other),
	    cmocka_unit_test(test_ipv4_options_and_errors),
	    cmocka_unit_test(test_ipv6_ext_headers),
	    cmocka_unit_test(test_frag_orders),
	    cmocka_unit_test(test_frag6_ext_after),
	    cmocka_unit_test(test_frag_overlap_first_wins),
	    cmocka_unit_test(test_frag_missing_and_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
