/* test_reasm.c: TCP reassembly (order, overlaps, gaps, wrap, reuse, caps,
 * timeouts) and the capture input (pcap/pcapng, gzip, stdin, truncated and
 * non-capture files, the public captures). */
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <pcap/pcap.h>
#include <zlib.h>

#include <cmocka.h>

#include "cap_test_pkt.h"

#define C 1 /* from the client 10.0.0.1:40000 */
#define S 0 /* from the server 10.0.0.2:9092 */

static struct cap_seg mkseg(int from_client, uint32_t seq, uint32_t ack, uint8_t flags,
                            const char *data)
{
	struct cap_seg seg;
	memset(&seg, 0, sizeof(seg));
	seg.af = 4;
	inet_pton(AF_INET, from_client ? "10.0.0.1" : "10.0.0.2", seg.saddr);
	inet_pton(AF_INET, from_client ? "10.0.0.2" : "10.0.0.1", seg.daddr);
	seg.sport = from_client ? 40000 : 9092;
	seg.dport = from_client ? 9092 : 40000;
	seg.seq = seq;
	seg.ack = ack;
	seg.flags = flags;
	seg.payload = (const uint8_t *)data;
	seg.len = data ? (uint32_t)strlen(data) : 0;
	return seg;
}

struct fx {
	struct tp_rec rec;
	struct cap_tcp *tcp;
	int64_t ts;
};

static void fx_init(struct fx *fx, const struct cap_tcp_opts *opts)
{
	memset(fx, 0, sizeof(*fx));
	struct cap_tcp_cbs cbs = tp_cbs(&fx->rec);
	fx->tcp = cap_tcp_new(opts, &cbs);
	fx->ts = 1700000000LL * 1000000;
	assert_non_null(fx->tcp);
}

static void fx_done(struct fx *fx)
{
	cap_tcp_flush(fx->tcp);
	assert_int_equal(cap_tcp_buffered(fx->tcp), 0);
	assert_int_equal(cap_tcp_nflows(fx->tcp), 0);
	cap_tcp_free(&fx->tcp);
	tp_rec_free(&fx->rec);
}

/* Sends one segment 1 ms after the previous one. */
static void tx(struct fx *fx, int from_client, uint32_t seq, uint32_t ack, uint8_t flags,
               const char *data)
{
	struct cap_seg seg = mkseg(from_client, seq, ack, flags, data);
	fx->ts += 1000;
	cap_tcp_segment(fx->tcp, &seg, fx->ts);
}

#define A CAP_TH_ACK
#define PA (CAP_TH_ACK | CAP_TH_PSH)
#define FA (CAP_TH_ACK | CAP_TH_FIN)

/* SYN, SYN-ACK, ACK with client ISN 100 and server ISN 5000. */
static void handshake(struct fx *fx)
{
	tx(fx, C, 100, 0, CAP_TH_SYN, NULL);
	tx(fx, S, 5000, 101, CAP_TH_SYN | A, NULL);
	tx(fx, C, 101, 5001, A, NULL);
}

static void test_in_order(void **state)
{
	(void)state;
	struct fx fx;
	fx_init(&fx, NULL);
	handshake(&fx);
	tx(&fx, C, 101, 5001, PA, "hello");
	tx(&fx, S, 5001, 106, PA, "world!");
	tx(&fx, C, 106, 5007, FA, NULL);
	tx(&fx, S, 5007, 107, FA, NULL);
	tx(&fx, C, 107, 5008, A, NULL); /* the last ACK hits the closed flow */
	assert_string_equal(fx.rec.log, "open 1 10.0.0.1:40000>10.0.0.2:9092 1|data 1 0 5|"
	                                "data 1 1 6|close 1 fin|");
	assert_string_equal((char *)fx.rec.buf[1][0], "hello");
	assert_string_equal((char *)fx.rec.buf[1][1], "world!");
	const struct cap_stats *st = cap_tcp_stats(fx.tcp);
	assert_int_equal(st->ignored_segments, 1);
	assert_int_equal(st->gaps, 0);
	assert_int_equal(st->dup_bytes, 0);
	fx_done(&fx);
}

/* The SYN-ACK is seen first (the client's SYN came later in the capture):
 * still one flow, the receiver of the SYN-ACK is the client. */
static void test_synack_first(void **state)
{
	(void)state;
	struct fx fx;
	fx_init(&fx, NULL);
	tx(&fx, S, 5000, 101, CAP_TH_SYN | A, NULL);
	tx(&fx, C, 100, 0, CAP_TH_SYN, NULL);
	tx(&fx, C, 101, 5001, PA, "abc");
	assert_string_equal(fx.rec.log, "open 1 10.0.0.1:40000>10.0.0.2:9092 1|data 1 0 3|");
	fx_done(&fx);
}

static void test_out_of_order_dup_overlap(void **state)
{
	(void)state;
	struct fx fx;
	fx_init(&fx, NULL);
	handshake(&fx);
	tx(&fx, C, 107, 5001, PA, "ghi");    /* third */
	tx(&fx, C, 101, 5001, PA, "abc");    /* first */
	tx(&fx, C, 104, 5001, PA, "def");    /* second: drains ghi */
	tx(&fx, C, 101, 5001, PA, "abc");    /* duplicate */
	tx(&fx, C, 107, 5001, PA, "XXXjkl"); /* overlap: ghi stays */
	assert_string_equal((char *)fx.rec.buf[1][0], "abcdefghijkl");
	const struct cap_stats *st = cap_tcp_stats(fx.tcp);
	assert_int_equal(st->dup_bytes, 6);
	assert_int_equal(st->ooo_segments, 1);
	assert_int_equal(st->gaps, 0);

	/* overlaps inside the out-of-order buffer: hole at 113..121 */
	tx(&fx, C, 123, 5001, PA, "1111");       /* 123..127 */
	tx(&fx, C, 121, 5001, PA, "2222222222"); /* 121..131: 123..127 already held */
	tx(&fx, C, 130, 5001, PA, "33");         /* 130..132: 130 held, 131 new */
	assert_int_equal(fx.rec.blen[1][0], 12);
	tx(&fx, C, 113, 5001, PA, "45678901"); /* fills the hole */
	assert_string_equal((char *)fx.rec.buf[1][0], "abcdefghijkl4567890122111122223");
	assert_int_equal(cap_tcp_buffered(fx.tcp), 0);
	fx_done(&fx);
}

static void test_gap_by_ack(void **state)
{
	(void)state;
	struct fx fx;
	fx_init(&fx, NULL);
	handshake(&fx);
	tx(&fx, C, 101, 5001, PA, "hello");
	/* 106..1106 lost by the capture */
	tx(&fx, C, 1106, 5001, PA, "after");
	assert_int_equal(fx.rec.blen[1][0], 5);
	tx(&fx, S, 5001, 1111, A, NULL);       /* the server has it all */
	assert_int_equal(fx.rec.gap[1][0], 0); /* not yet: ack_grace_us (2 ms) */
	fx.ts += 2000;
	tx(&fx, S, 5001, 1111, PA, "resp"); /* 3 ms later: the hole is lost */
	assert_int_equal(fx.rec.gap[1][0], 1000);
	assert_string_equal((char *)fx.rec.buf[1][0], "helloafter");
	/* lost at the tail, nothing after it: the ACK alone tells */
	tx(&fx, C, 1111, 5005, A, NULL);
	tx(&fx, C, 1111 + 77, 5005, A, NULL); /* client ack: no change for dir 0 */
	tx(&fx, S, 5005 + 40, 1111, A, NULL);
	tx(&fx, C, 1111, 5005 + 40, A, NULL);
	assert_int_equal(fx.rec.gap[1][1], 0);
	cap_tcp_flush(fx.tcp); /* pending ACKs apply at the end */
	assert_int_equal(fx.rec.gap[1][1], 40);
	assert_string_equal(fx.rec.log,
	                    "open 1 10.0.0.1:40000>10.0.0.2:9092 1|data 1 0 5|"
	                    "data 1 1 4|gap 1 0 1000|data 1 0 5|gap 1 1 40|close 1 end|");
	fx_done(&fx);
}

/* A capture that puts a data segment just behind its ACK (port mirroring
 * with one port per direction): within ack_grace_us it is data, not a gap;
 * with the grace off it would have been a gap and then a duplicate. */
static void test_ack_before_data_reordered(void **state)
{
	(void)state;
	char big[1001];
	memset(big, 'm', 1000);
	big[1000] = 0;
	for (int grace = 0; grace < 2; grace++) {
		struct cap_tcp_opts opts = {.ack_grace_us = grace ? 0 : -1};
		struct fx fx;
		fx_init(&fx, &opts);
		handshake(&fx);
		tx(&fx, C, 101, 5001, PA, "hello");
		tx(&fx, C, 1106, 5001, PA, "after");
		tx(&fx, S, 5001, 1111, A, NULL);
		tx(&fx, C, 106, 5001, PA, big); /* 1 ms later */
		if (grace) {
			assert_int_equal(fx.rec.gap[1][0], 0);
			assert_int_equal(fx.rec.blen[1][0], 1010);
		} else {
			assert_int_equal(fx.rec.gap[1][0], 1000);
			assert_int_equal(cap_tcp_stats(fx.tcp)->dup_bytes, 1000);
		}
		fx_done(&fx);
	}
}

static void test_gap_at_fin_and_end(void **state)
{
	(void)state;
	struct fx fx;
	fx_init(&fx, NULL);
	handshake(&fx);
	tx(&fx, C, 101, 5001, PA, "abc");
	tx(&fx, C, 110, 5001, PA, "xyz"); /* 104..110 missing */
	tx(&fx, C, 120, 5001, FA, NULL);  /* 113..120 missing too, then FIN */
	tx(&fx, S, 5001, 104, FA, NULL);  /* server FIN, acking only what it had */
	/* both FINs but holes: the flow waits for retransmissions */
	assert_int_equal(fx.rec.nclose, 0);
	cap_tcp_flush(fx.tcp);
	assert_string_equal(fx.rec.log, "open 1 10.0.0.1:40000>10.0.0.2:9092 1|data 1 0 3|"
	                                "gap 1 0 6|data 1 0 3|gap 1 0 7|close 1 end|");

	/* a retransmission fills the hole before the end: a clean FIN close */
	struct fx fx2;
	fx_init(&fx2, NULL);
	handshake(&fx2);
	tx(&fx2, C, 104, 5001, FA, "def");
	tx(&fx2, S, 5001, 101, FA, NULL);
	tx(&fx2, C, 101, 5002, PA, "abc");
	assert_string_equal(fx2.rec.log, "open 1 10.0.0.1:40000>10.0.0.2:9092 1|data 1 0 3|"
	                                 "data 1 0 3|close 1 fin|");
	fx_done(&fx2);
	fx_done(&fx);
}

static void test_gap_timeout(void **state)
{
	(void)state;
	struct cap_tcp_opts opts = {.gap_timeout_us = 2000000};
	struct fx fx;
	fx_init(&fx, &opts);
	handshake(&fx);
	tx(&fx, C, 101, 5001, PA, "abc");
	tx(&fx, C, 200, 5001, PA, "later"); /* 104..200 missing, no ACK from the server */
	assert_int_equal(fx.rec.gap[1][0], 0);
	fx.ts += 1000000;
	tx(&fx, C, 205, 5001, PA, "more");
	assert_int_equal(fx.rec.gap[1][0], 0);
	fx.ts += 2000000;               /* the hole has waited over 2 s */
	tx(&fx, S, 5001, 104, PA, "x"); /* any packet of the flow checks */
	assert_int_equal(fx.rec.gap[1][0], 96);
	assert_string_equal((char *)fx.rec.buf[1][0], "abclatermore");
	fx_done(&fx);
}

static void test_rst_flushes(void **state)
{
	(void)state;
	struct fx fx;
	fx_init(&fx, NULL);
	handshake(&fx);
	tx(&fx, C, 101, 5001, PA, "ab");
	tx(&fx, C, 105, 5001, PA, "ef");
	tx(&fx, S, 5001, 0, CAP_TH_RST, NULL);
	assert_string_equal(fx.rec.log, "open 1 10.0.0.1:40000>10.0.0.2:9092 1|data 1 0 2|"
	                                "gap 1 0 2|data 1 0 2|close 1 rst|");
	tx(&fx, C, 107, 5001, PA, "late"); /* absorbed by the closed flow */
	assert_int_equal(fx.rec.nopen, 1);
	fx_done(&fx);
}

/* Connections that carry no payload (a SYN scan, refused connections, a
 * connect-and-close) stay small table entries: no flow_open/flow_close, a
 * bounded cost per connection; the handshake still decides who the client
 * is once payload comes, and the memory budget closes the idlest first. */
static void test_no_payload_entries(void **state)
{
	(void)state;
	struct fx fx;
	fx_init(&fx, NULL);
	size_t base = cap_tcp_mem(fx.tcp);
	for (uint32_t i = 0; i < 5000; i++) {
		struct cap_seg seg = mkseg(C, 1000 + i, 0, CAP_TH_SYN, NULL);
		seg.sport = (uint16_t)(10000 + i);
		fx.ts += 10;
		cap_tcp_segment(fx.tcp, &seg, fx.ts);
	}
	assert_int_equal(cap_tcp_nflows(fx.tcp), 5000);
	assert_int_equal(fx.rec.nopen, 0);
	/* about 100 bytes each (the entry), plus the hash buckets */
	size_t per = (cap_tcp_mem(fx.tcp) - base) / 5000;
	assert_true(per <= 160);
	assert_int_equal(cap_tcp_stats(fx.tcp)->flows, 5000);

	/* a refused connection (SYN, RST) and a connect-and-close (handshake,
	 * FIN both ways) end without callbacks and linger as closed entries */
	handshake(&fx);
	tx(&fx, C, 101, 5001, FA, NULL);
	tx(&fx, S, 5001, 102, FA, NULL);
	tx(&fx, C, 102, 5002, A, NULL);
	assert_int_equal(fx.rec.nopen, 0);
	assert_int_equal(fx.rec.nclose, 0);
	assert_int_equal(cap_tcp_stats(fx.tcp)->ignored_segments, 1); /* the last ACK */
	/* port reuse: a new connection on the same 4-tuple with payload */
	tx(&fx, C, 900, 0, CAP_TH_SYN, NULL);
	tx(&fx, S, 7000, 901, CAP_TH_SYN | A, NULL);
	tx(&fx, C, 901, 7001, PA, "hi");
	assert_int_equal(fx.rec.nopen, 1);
	assert_string_equal(fx.rec.log, "open 1 10.0.0.1:40000>10.0.0.2:9092 1|data 1 0 2|");
	fx_done(&fx);

	/* an ACK past what a payload-less side sent: the bytes were lost, so
	 * the connection gets its flow and the gap is reported */
	fx_init(&fx, NULL);
	handshake(&fx);
	tx(&fx, S, 5001, 111, A, NULL); /* the server has 10 client bytes we missed */
	cap_tcp_flush(fx.tcp);
	assert_string_equal(fx.rec.log, "open 1 10.0.0.1:40000>10.0.0.2:9092 1|gap 1 0 10|"
	                                "close 1 end|");
	fx_done(&fx);

	/* the memory budget: the idlest go first, counted */
	struct cap_tcp_opts opts = {.mem_max = 256 * 1024};
	fx_init(&fx, &opts);
	handshake(&fx);
	tx(&fx, C, 101, 5001, PA, "old"); /* the idlest connection has a flow */
	for (uint32_t i = 0; i < 5000; i++) {
		struct cap_seg seg = mkseg(C, 1000 + i, 0, CAP_TH_SYN, NULL);
		seg.sport = (uint16_t)(10000 + i);
		fx.ts += 10;
		cap_tcp_segment(fx.tcp, &seg, fx.ts);
		assert_true(cap_tcp_mem(fx.tcp) <= opts.mem_max);
	}
	const struct cap_stats *st = cap_tcp_stats(fx.tcp);
	assert_true(st->flows_evicted_mem > 0);
	assert_true(st->mem_peak <= opts.mem_max + 256);
	assert_int_equal(st->flows_evicted_mem + cap_tcp_nflows(fx.tcp), 5001);
	assert_string_equal(fx.rec.log, "open 1 10.0.0.1:40000>10.0.0.2:9092 1|data 1 0 3|"
	                                "close 1 evict|");
	fx_done(&fx);
}

static void test_seq_wrap(void **state)
{
	(void)state;
	struct fx fx;
	fx_init(&fx, NULL);
	uint32_t isn = 0xfffffff8u;
	tx(&fx, C, isn, 0, CAP_TH_SYN, NULL);
	tx(&fx, S, 0x7fffffffu, isn + 1, CAP_TH_SYN | A, NULL);
	tx(&fx, C, isn + 1, 0x80000000u, PA, "0123");         /* ...fff9..fffd */
	tx(&fx, C, isn + 9, 0x80000000u, PA, "89ab");         /* 0x00000001.. after wrap */
	tx(&fx, C, isn + 5, 0x80000000u, PA, "4567");         /* ...fffd..0x01 across */
	tx(&fx, C, isn + 1, 0x80000000u, PA, "zzzzzzzzzzzz"); /* retransmission */
	tx(&fx, S, 0x80000000u, isn + 13, PA, "resp");
	assert_string_equal((char *)fx.rec.buf[1][0], "0123456789ab");
	assert_string_equal((char *)fx.rec.buf[1][1], "resp");
	assert_int_equal(fx.rec.gap[1][0], 0);
	assert_int_equal(cap_tcp_stats(fx.tcp)->dup_bytes, 12);
	fx_done(&fx);
}

static void test_synless_and_guess(void **state)
{
	(void)state;
	struct fx fx;
	fx_init(&fx, NULL);
	/* the capture starts mid-connection with a server response */
	tx(&fx, S, 777777, 123456, PA, "tail-of-response");
	tx(&fx, C, 123456, 777793, PA, "next-request");
	tx(&fx, S, 777793, 123468, PA, "next-response");
	assert_string_equal(
	    fx.rec.log,
	    "open 1 10.0.0.1:40000>10.0.0.2:9092 2|data 1 1 16|data 1 0 12|data 1 1 13|");
	assert_int_equal(fx.rec.gap[1][0] + fx.rec.gap[1][1], 0);
	fx_done(&fx);
}

static void test_port_reuse(void **state)
{
	(void)state;
	struct fx fx;
	fx_init(&fx, NULL);
	handshake(&fx);
	tx(&fx, C, 101, 5001, PA, "one");
	tx(&fx, C, 104, 5001, FA, NULL);
	tx(&fx, S, 5001, 105, FA, NULL);
	tx(&fx, C, 105, 5002, A, NULL);
	/* same 4-tuple, new SYN */
	tx(&fx, C, 9000, 0, CAP_TH_SYN, NULL);
	tx(&fx, S, 100, 9001, CAP_TH_SYN | A, NULL);
	tx(&fx, C, 9001, 101, PA, "two");
	/* and again, without closing the previous one: a new ISN */
	tx(&fx, C, 20000, 0, CAP_TH_SYN, NULL);
	tx(&fx, C, 20000, 0, CAP_TH_SYN, NULL); /* SYN retransmitted: same flow */
	tx(&fx, S, 300, 20001, CAP_TH_SYN | A, NULL);
	tx(&fx, C, 20001, 301, PA, "three");
	assert_string_equal(fx.rec.log,
	                    "open 1 10.0.0.1:40000>10.0.0.2:9092 1|data 1 0 3|close 1 fin|"
	                    "open 2 10.0.0.1:40000>10.0.0.2:9092 1|data 2 0 3|close 2 reuse|"
	                    "open 3 10.0.0.1:40000>10.0.0.2:9092 1|data 3 0 5|");
	assert_string_equal((char *)fx.rec.buf[3][0], "three");
	fx_done(&fx);
}

static void test_zero_window_probe(void **state)
{
	(void)state;
	struct fx fx;
	fx_init(&fx, NULL);
	handshake(&fx);
	tx(&fx, C, 101, 5001, PA, "abcd");
	tx(&fx, S, 5001, 105, A, NULL);    /* window 0 in real life */
	tx(&fx, C, 105, 5001, A, "e");     /* probe: 1 byte */
	tx(&fx, S, 5001, 105, A, NULL);    /* not accepted */
	tx(&fx, C, 105, 5001, A, "e");     /* probe again */
	tx(&fx, C, 104, 5001, A, NULL);    /* keep-alive, seq - 1 */
	tx(&fx, C, 105, 5001, PA, "efgh"); /* window open: resend */
	assert_string_equal((char *)fx.rec.buf[1][0], "abcdefgh");
	assert_int_equal(fx.rec.gap[1][0], 0);
	fx_done(&fx);
}

static void test_snaplen_cut_payload(void **state)
{
	(void)state;
	struct fx fx;
	fx_init(&fx, NULL);
	handshake(&fx);
	struct cap_seg seg = mkseg(C, 101, 5001, PA, "abcde");
	seg.missing = 95; /* 100-byte segment, 5 captured */
	cap_tcp_segment(fx.tcp, &seg, fx.ts += 1000);
	/* the next one arrives first in a second flow direction... and an
	 * out-of-order cut one */
	struct cap_seg s3 = mkseg(C, 301, 5001, PA, "vwxyz");
	s3.missing = 95;
	cap_tcp_segment(fx.tcp, &s3, fx.ts += 1000);
	struct cap_seg s2 = mkseg(C, 201, 5001, PA, "klmno");
	s2.missing = 95;
	cap_tcp_segment(fx.tcp, &s2, fx.ts += 1000);
	assert_string_equal((char *)fx.rec.buf[1][0], "abcdeklmnovwxyz");
	assert_int_equal(fx.rec.gap[1][0], 285);
	assert_string_equal(fx.rec.log, "open 1 10.0.0.1:40000>10.0.0.2:9092 1|data 1 0 5|"
	                                "gap 1 0 95|data 1 0 5|gap 1 0 95|data 1 0 5|gap 1 0 95|");
	fx_done(&fx);
}

static void test_flow_cap(void **state)
{
	(void)state;
	struct cap_tcp_opts opts = {.flow_buf_max = 1000};
	struct fx fx;
	fx_init(&fx, &opts);
	handshake(&fx);
	char chunk[101];
	memset(chunk, 'q', 100);
	chunk[100] = 0;
	/* a 50-byte hole at 101, then 3000 bytes that cannot be delivered */
	for (int i = 0; i < 30; i++) {
		tx(&fx, C, 151 + 100 * (uint32_t)i, 5001, PA, chunk);
		assert_true(cap_tcp_buffered(fx.tcp) <= 1000 + 100 + 64 * 11);
	}
	assert_true(fx.rec.nmsg >= 1);
	assert_true(cap_tcp_stats(fx.tcp)->cuts >= 1);
	/* exactly the hole was lost; all 3000 bytes were delivered */
	assert_int_equal(fx.rec.gap[1][0], 50);
	tx(&fx, C, 101, 5001, PA, "late retransmission of the hole, ignored by now..");
	cap_tcp_flush(fx.tcp);
	assert_int_equal(cap_tcp_stats(fx.tcp)->delivered, 3000);
	assert_int_equal(cap_tcp_stats(fx.tcp)->gap_bytes, 50);
	fx_done(&fx);
}

static void test_total_cap(void **state)
{
	(void)state;
	struct cap_tcp_opts opts = {.total_buf_max = 2000};
	struct fx fx;
	fx_init(&fx, &opts);
	char chunk[201];
	memset(chunk, 'r', 200);
	chunk[200] = 0;
	/* 5 flows, each with a hole, each buffering 800 bytes */
	for (int f = 0; f < 5; f++) {
		struct cap_seg seg = mkseg(C, 1000, 1, PA, "x");
		seg.sport = (uint16_t)(50000 + f);
		cap_tcp_segment(fx.tcp, &seg, fx.ts += 1000);
		for (int i = 0; i < 4; i++) {
			seg = mkseg(C, 1101 + 200 * (uint32_t)i, 1, PA, chunk);
			seg.sport = (uint16_t)(50000 + f);
			cap_tcp_segment(fx.tcp, &seg, fx.ts += 1000);
			assert_true(cap_tcp_buffered(fx.tcp) <= 2000);
		}
	}
	assert_true(cap_tcp_stats(fx.tcp)->cuts >= 2);
	/* after the flush everything was delivered, each hole a 100-byte gap */
	cap_tcp_flush(fx.tcp);
	assert_int_equal(cap_tcp_stats(fx.tcp)->delivered, 5 * 801);
	assert_int_equal(cap_tcp_stats(fx.tcp)->gap_bytes, 5 * 100);
	fx_done(&fx);
}

static void test_idle_timeout_and_evict(void **state)
{
	(void)state;
	struct cap_tcp_opts opts = {.idle_timeout_us = 5000000, .max_flows = 2};
	struct fx fx;
	fx_init(&fx, &opts);
	struct cap_seg seg = mkseg(C, 1, 1, PA, "a");
	cap_tcp_segment(fx.tcp, &seg, fx.ts);
	seg.sport = 40001;
	cap_tcp_segment(fx.tcp, &seg, fx.ts + 1000);
	seg.sport = 40002; /* third flow: the idlest (40000) is evicted */
	cap_tcp_segment(fx.tcp, &seg, fx.ts + 2000);
	assert_int_equal(cap_tcp_nflows(fx.tcp), 2);
	assert_int_equal(cap_tcp_stats(fx.tcp)->flows_evicted, 1);
	seg.sport = 40003; /* 10 s later: both others timed out */
	cap_tcp_segment(fx.tcp, &seg, fx.ts + 10000000);
	cap_tcp_segment(fx.tcp, &seg, fx.ts + 11100000);
	assert_int_equal(cap_tcp_stats(fx.tcp)->flows_timed_out, 2);
	assert_int_equal(cap_tcp_nflows(fx.tcp), 1);
	assert_string_equal(fx.rec.log,
	                    "open 1 10.0.0.1:40000>10.0.0.2:9092 2|data 1 0 1|"
	                    "open 2 10.0.0.1:40001>10.0.0.2:9092 2|data 2 0 1|close 1 evict|"
	                    "open 3 10.0.0.1:40002>10.0.0.2:9092 2|data 3 0 1|close 2 timeout|"
	                    "close 3 timeout|open 4 10.0.0.1:40003>10.0.0.2:9092 2|data 4 0 1|");
	fx_done(&fx);
}

static void ignore_on_open(void *ctx, struct cap_flow *flow)
{
	(void)ctx;
	flow->ignore = 1;
}

static void test_ignore(void **state)
{
	(void)state;
	struct fx fx;
	fx_init(&fx, NULL);
	cap_tcp_free(&fx.tcp);
	struct cap_tcp_cbs cbs = tp_cbs(&fx.rec);
	cbs.flow_open = ignore_on_open;
	fx.tcp = cap_tcp_new(NULL, &cbs);
	handshake(&fx);
	tx(&fx, C, 201, 5001, PA, "ahead"); /* would be buffered */
	tx(&fx, C, 101, 5001, PA, "abc");
	assert_int_equal(cap_tcp_buffered(fx.tcp), 0);
	assert_int_equal(fx.rec.blen[1][0], 0);
	assert_int_equal(fx.rec.gap[1][0], 0);
	fx_done(&fx);
}

/* ---- files ---- */

/* A small capture: handshake and one request/response, Ethernet. */
static void mk_pcap(struct tp_pcap *w, int nano)
{
	static const struct {
		int c;
		uint32_t seq, ack;
		uint8_t fl;
		const char *d;
	} segs[] = {
	    {1, 100, 0, CAP_TH_SYN, NULL},  {0, 5000, 101, CAP_TH_SYN | A, NULL},
	    {1, 101, 5001, A, NULL},        {1, 101, 5001, PA, "request"},
	    {0, 5001, 108, PA, "response"}, {1, 108, 5009, FA, NULL},
	    {0, 5009, 109, FA, NULL},
	};
	tp_pcap_begin(w, 1, nano, 65535);
	for (size_t i = 0; i < sizeof(segs) / sizeof(segs[0]); i++) {
		uint8_t tcp[256], ip[300], fr[400];
		size_t tl = tp_tcp(tcp, segs[i].c ? 40000 : 9092, segs[i].c ? 9092 : 40000,
		                   segs[i].seq, segs[i].ack, segs[i].fl, segs[i].d,
		                   segs[i].d ? strlen(segs[i].d) : 0, 0);
		size_t il = tp_ip4(ip, segs[i].c ? "10.0.0.1" : "10.0.0.2",
		                   segs[i].c ? "10.0.0.2" : "10.0.0.1", 6, 1, 0x4000, tcp, tl, 0);
		size_t fl = tp_link(fr, 1, 4, ip, il, 0, 0, 0);
		tp_pcap_rec(w, 1700000000LL * 1000000 + 1000 * (int64_t)i + 123, fr, (uint32_t)fl,
		            (uint32_t)fl);
	}
}

#define GOOD_LOG "open 1 10.0.0.1:40000>10.0.0.2:9092 1|data 1 0 7|data 1 1 8|close 1 fin|"

static int run_path(const char *path, struct tp_rec *rec, char *err, size_t errlen, int *truncated)
{
	struct cap_source *src;
	if (cap_source_open(&src, path, err, errlen) < 0)
		return -2;
	struct cap_tcp_cbs cbs = tp_cbs(rec);
	struct cap_tcp *tcp = cap_tcp_new(NULL, &cbs);
	int rc = cap_run(src, tcp);
	uint64_t done, total;
	cap_source_progress(src, &done, &total);
	if (total)
		assert_true(done <= total);
	if (truncated)
		*truncated = cap_source_truncated(src);
	cap_tcp_free(&tcp);
	cap_source_close(&src);
	return rc;
}

static void test_file_plain_nano_gzip(void **state)
{
	(void)state;
	for (int nano = 0; nano < 2; nano++) {
		struct tp_pcap w;
		struct tp_rec rec;
		char err[256];
		mk_pcap(&w, nano);
		char *path = tp_tmpfile(w.p, w.len, ".pcap");
		memset(&rec, 0, sizeof(rec));
		assert_int_equal(run_path(path, &rec, err, sizeof(err), NULL), 0);
		assert_string_equal(rec.log, GOOD_LOG);
		assert_string_equal((char *)rec.buf[1][0], "request");
		tp_rec_free(&rec);

		/* timestamps, micro and nano */
		struct cap_source *src;
		struct cap_pkt pkt;
		assert_int_equal(cap_source_open(&src, path, err, sizeof(err)), 0);
		assert_int_equal(cap_source_next(src, &pkt), 1);
		assert_int_equal(pkt.ts_us, 1700000000LL * 1000000 + 123);
		assert_int_equal(pkt.linktype, 1);
		assert_string_equal(cap_source_linkname(src), "EN10MB");
		cap_source_close(&src);

		/* gzip: content sniffed, the name does not matter */
		char gzpath[300];
		snprintf(gzpath, sizeof(gzpath), "%s.gz", path);
		gzFile gz = gzopen(gzpath, "wb");
		gzwrite(gz, w.p, (unsigned)w.len);
		gzclose(gz);
		memset(&rec, 0, sizeof(rec));
		assert_int_equal(run_path(gzpath, &rec, err, sizeof(err), NULL), 0);
		assert_string_equal(rec.log, GOOD_LOG);
		tp_rec_free(&rec);
		assert_int_equal(cap_source_open(&src, gzpath, err, sizeof(err)), 0);
		uint64_t done, total;
		while (cap_source_next(src, &pkt) == 1)
			;
		cap_source_progress(src, &done, &total);
		struct stat st;
		stat(gzpath, &st);
		assert_int_equal(total, (uint64_t)st.st_size);
		assert_true(done > 0 && done <= total);
		cap_source_close(&src);

		/* stdin, gzip and plain */
		for (int z = 0; z < 2; z++) {
			int saved = dup(0);
			int fd = open(z ? gzpath : path, O_RDONLY);
			dup2(fd, 0);
			close(fd);
			memset(&rec, 0, sizeof(rec));
			assert_int_equal(run_path("-", &rec, err, sizeof(err), NULL), 0);
			dup2(saved, 0);
			close(saved);
			assert_string_equal(rec.log, GOOD_LOG);
			tp_rec_free(&rec);
		}
		unlink(gzpath);
		unlink(path);
		free(path);
		tp_pcap_free(&w);
	}
}

static void test_file_truncated_and_bad(void **state)
{
	(void)state;
	struct tp_pcap w;
	struct tp_rec rec;
	char err[512];
	int trunc = 0;
	mk_pcap(&w, 0);
	/* cut in the middle of the 5th record (the response) */
	size_t cut = 24;
	for (int i = 0; i < 4; i++) {
		uint32_t caplen = (uint32_t)w.p[cut + 8] | (uint32_t)w.p[cut + 9] << 8;
		cut += 16 + caplen;
	}
	cut += 16 + 30;
	char *path = tp_tmpfile(w.p, cut, ".pcap");
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(run_path(path, &rec, err, sizeof(err), &trunc), 0);
	assert_int_equal(trunc, 1);
	assert_string_equal(rec.log,
	                    "open 1 10.0.0.1:40000>10.0.0.2:9092 1|data 1 0 7|close 1 end|");
	tp_rec_free(&rec);
	unlink(path);
	free(path);
	/* cut inside a record header */
	path = tp_tmpfile(w.p, 24 + 16 + 60 + 7, ".pcap");
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(run_path(path, &rec, err, sizeof(err), &trunc), 0);
	assert_int_equal(trunc, 1);
	tp_rec_free(&rec);
	unlink(path);
	free(path);
	/* a truncated gzip */
	path = tp_tmpfile("", 0, ".pcap.gz");
	gzFile gz = gzopen(path, "wb");
	gzwrite(gz, w.p, (unsigned)w.len);
	gzclose(gz);
	struct stat st;
	stat(path, &st);
	assert_int_equal(truncate(path, st.st_size - 12), 0);
	memset(&rec, 0, sizeof(rec));
	int rc = run_path(path, &rec, err, sizeof(err), &trunc);
	assert_true(rc == 0 || rc == -1); /* clean either way, never a crash */
	tp_rec_free(&rec);
	unlink(path);
	free(path);

	/* not a capture */
	const char *text = "this is a text file, not a capture at all\n";
	path = tp_tmpfile(text, strlen(text), ".pcap");
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(run_path(path, &rec, err, sizeof(err), NULL), -2);
	assert_non_null(strstr(err, "not a pcap or pcapng"));
	unlink(path);
	free(path);
	/* empty, missing, directory */
	path = tp_tmpfile("", 0, ".pcap");
	assert_int_equal(run_path(path, &rec, err, sizeof(err), NULL), -2);
	assert_non_null(strstr(err, "empty"));
	unlink(path);
	free(path);
	assert_int_equal(run_path("/nonexistent/x.pcap", &rec, err, sizeof(err), NULL), -2);
	assert_non_null(strstr(err, "No such file"));
	assert_int_equal(run_path("/tmp", &rec, err, sizeof(err), NULL), -2);
	assert_non_null(strstr(err, "directory"));
	/* a header only: no packets, no error */
	path = tp_tmpfile(w.p, 24, ".pcap");
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(run_path(path, &rec, err, sizeof(err), &trunc), 0);
	assert_int_equal(trunc, 0);
	assert_int_equal(rec.nopen, 0);
	unlink(path);
	free(path);
	tp_pcap_free(&w);
}

/* A pcap cut at every byte: a clean open error (inside the file header),
 * or a clean end with the truncated flag exactly when the cut is inside a
 * record; the data of the complete records is delivered. */
static void test_file_every_cut(void **state)
{
	(void)state;
	struct tp_pcap w;
	mk_pcap(&w, 1);
	size_t bounds[16], nb = 0, off = 24;
	while (off <= w.len && nb < 16) {
		bounds[nb++] = off;
		if (off == w.len)
			break;
		off += 16 + ((uint32_t)w.p[off + 8] | (uint32_t)w.p[off + 9] << 8);
	}
	for (size_t cut = 0; cut <= w.len; cut++) {
		struct cap_source *src;
		struct tp_rec rec;
		char err[256];
		memset(&rec, 0, sizeof(rec));
		if (cap_source_open_mem(&src, w.p, cut, err, sizeof(err)) < 0) {
			assert_true(cut < 24);
			continue;
		}
		assert_true(cut >= 24);
		struct cap_tcp_cbs cbs = tp_cbs(&rec);
		struct cap_tcp *tcp = cap_tcp_new(NULL, &cbs);
		assert_int_equal(cap_run(src, tcp), 0);
		int at_bound = 0;
		size_t complete = 0;
		for (size_t i = 0; i < nb; i++) {
			if (bounds[i] == cut)
				at_bound = 1;
			if (bounds[i] <= cut)
				complete = i;
		}
		assert_int_equal(cap_source_truncated(src), !at_bound);
		assert_int_equal(cap_tcp_stats(tcp)->packets, complete);
		/* the request is the 4th record, the response the 5th */
		assert_int_equal(rec.blen[1][0], complete >= 4 ? 7 : 0);
		assert_int_equal(rec.blen[1][1], complete >= 5 ? 8 : 0);
		assert_int_equal(rec.nopen, rec.nclose);
		cap_tcp_free(&tcp);
		cap_source_close(&src);
		tp_rec_free(&rec);
	}
	tp_pcap_free(&w);
}

/* pcapng written by hand: SHB, IDB (Ethernet), one EPB per frame. */
static void test_pcapng(void **state)
{
	(void)state;
	struct tp_pcap w, ng;
	mk_pcap(&w, 0);
	memset(&ng, 0, sizeof(ng));
	uint8_t shb[28] = {0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0,    0,    0x4d, 0x3c,
	                   0x2b, 0x1a, 1,    0,    0,  0, 0xff, 0xff, 0xff, 0xff,
	                   0xff, 0xff, 0xff, 0xff, 28, 0, 0,    0};
	uint8_t idb[20] = {1, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 20, 0, 0, 0};
	tp_raw(&ng, shb, sizeof(shb));
	tp_raw(&ng, idb, sizeof(idb));
	size_t off = 24;
	while (off < w.len) {
		uint32_t caplen = (uint32_t)w.p[off + 8] | (uint32_t)w.p[off + 9] << 8;
		uint32_t pad = (4 - caplen % 4) % 4;
		uint32_t blen = 32 + caplen + pad;
		uint64_t ts = (uint64_t)(w.p[off] | w.p[off + 1] << 8 | w.p[off + 2] << 16 |
		                         (uint32_t)w.p[off + 3] << 24) *
		                  1000000 +
		              (w.p[off + 4] | w.p[off + 5] << 8 | w.p[off + 6] << 16);
		uint8_t h[28], z[4] = {0, 0, 0, 0}, t[4];
		tp_put32le(h, 6);
		tp_put32le(h + 4, blen);
		tp_put32le(h + 8, 0);
		tp_put32le(h + 12, (uint32_t)(ts >> 32));
		tp_put32le(h + 16, (uint32_t)ts);
		tp_put32le(h + 20, caplen);
		tp_put32le(h + 24, caplen);
		tp_raw(&ng, h, 28);
		tp_raw(&ng, w.p + off + 16, caplen);
		tp_raw(&ng, z, pad);
		tp_put32le(t, blen);
		tp_raw(&ng, t, 4);
		off += 16 + caplen;
	}
	char *path = tp_tmpfile(ng.p, ng.len, ".pcapng");
	struct tp_rec rec;
	char err[256];
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(run_path(path, &rec, err, sizeof(err), NULL), 0);
	assert_string_equal(rec.log, GOOD_LOG);
	tp_rec_free(&rec);
	unlink(path);
	free(path);
	tp_pcap_free(&ng);
	tp_pcap_free(&w);
}

/* caplen larger than origlen (go-sniffer's kafka.pcap has +16): the IP
 * length decides, the extra bytes are not payload. */
static void test_caplen_over_origlen(void **state)
{
	(void)state;
	struct tp_pcap w;
	uint8_t th[128], ip[200], fr[300];
	size_t tl = tp_tcp(th, 40000, 9092, 1, 1, PA, "abc", 3, 0);
	size_t il = tp_ip4(ip, "10.0.0.1", "10.0.0.2", 6, 1, 0, th, tl, 0);
	size_t fl = tp_link(fr, 1, 4, ip, il, 0, 0, 0);
	memset(fr + fl, 0xab, 16);
	tp_pcap_begin(&w, 1, 0, 65535);
	tp_pcap_rec(&w, 1000000, fr, (uint32_t)fl + 16, (uint32_t)fl);
	struct tp_rec rec;
	memset(&rec, 0, sizeof(rec));
	struct cap_source *src;
	char err[256];
	assert_int_equal(cap_source_open_mem(&src, w.p, w.len, err, sizeof(err)), 0);
	struct cap_tcp_cbs cbs = tp_cbs(&rec);
	struct cap_tcp *tcp = cap_tcp_new(NULL, &cbs);
	assert_int_equal(cap_run(src, tcp), 0);
	assert_string_equal((char *)rec.buf[1][0], "abc");
	cap_tcp_free(&tcp);
	cap_source_close(&src);
	tp_rec_free(&rec);
	tp_pcap_free(&w);
}

/* ---- pcapng: kwire's reader ---- */

/* A pcapng block in the given byte order. */
static void ng_blk(struct tp_pcap *w, int be, uint32_t type, const uint8_t *body, size_t blen)
{
	uint8_t h[8], t[4], z[4] = {0, 0, 0, 0};
	size_t pad = (4 - blen % 4) % 4;
	uint32_t len = (uint32_t)(12 + blen + pad);
	if (be) {
		tp_put32(h, type);
		tp_put32(h + 4, len);
		tp_put32(t, len);
	} else {
		tp_put32le(h, type);
		tp_put32le(h + 4, len);
		tp_put32le(t, len);
	}
	tp_raw(w, h, 8);
	tp_raw(w, body, blen);
	tp_raw(w, z, pad);
	tp_raw(w, t, 4);
}

static void ng_u32(uint8_t *p, int be, uint32_t v)
{
	if (be)
		tp_put32(p, v);
	else
		tp_put32le(p, v);
}

static void ng_u16(uint8_t *p, int be, uint16_t v)
{
	if (be)
		tp_put16(p, v);
	else {
		p[0] = (uint8_t)v;
		p[1] = (uint8_t)(v >> 8);
	}
}

static void ng_shb(struct tp_pcap *w, int be)
{
	uint8_t b[16];
	ng_u32(b, be, 0x1a2b3c4d);
	ng_u16(b + 4, be, 1);
	ng_u16(b + 6, be, 0);
	memset(b + 8, 0xff, 8);
	ng_blk(w, be, 0x0a0d0d0a, b, 16);
}

/* IDB with an if_tsresol option when tsresol >= 0. */
static void ng_idb(struct tp_pcap *w, int be, uint16_t lt, int tsresol)
{
	uint8_t b[24];
	memset(b, 0, sizeof(b));
	ng_u16(b, be, lt);
	ng_u32(b + 4, be, 65535);
	size_t n = 8;
	if (tsresol >= 0) {
		ng_u16(b + 8, be, 9);
		ng_u16(b + 10, be, 1);
		b[12] = (uint8_t)tsresol;
		n = 20; /* option padded to 4, then opt_endofopt */
	}
	ng_blk(w, be, 1, b, n);
}

static void ng_epb(struct tp_pcap *w, int be, uint32_t ifid, uint64_t ts, const uint8_t *fr,
                   size_t len)
{
	uint8_t b[2048];
	ng_u32(b, be, ifid);
	ng_u32(b + 4, be, (uint32_t)(ts >> 32));
	ng_u32(b + 8, be, (uint32_t)ts);
	ng_u32(b + 12, be, (uint32_t)len);
	ng_u32(b + 16, be, (uint32_t)len);
	memcpy(b + 20, fr, len);
	ng_blk(w, be, 6, b, 20 + len);
}

static size_t ng_frame(uint8_t *fr, int linktype, uint32_t seq, const char *data)
{
	uint8_t th[256], ip[300];
	size_t tl = tp_tcp(th, 40000, 9092, seq, 1, PA, data, strlen(data), 0);
	size_t il = tp_ip4(ip, "10.0.0.1", "10.0.0.2", 6, 1, 0x4000, th, tl, 0);
	return tp_link(fr, linktype, 4, ip, il, 0, 0, 0);
}

/* Interfaces of different link types in one file (libpcap refuses these),
 * both byte orders, nanosecond resolution, a second section. */
static void test_pcapng_multi_link(void **state)
{
	(void)state;
	for (int be = 0; be < 2; be++) {
		struct tp_pcap w;
		uint8_t fr[512];
		size_t fl;
		memset(&w, 0, sizeof(w));
		ng_shb(&w, be);
		ng_idb(&w, be, 1, -1);   /* Ethernet, microseconds */
		ng_idb(&w, be, 113, 9);  /* SLL, nanoseconds */
		ng_idb(&w, be, 101, -1); /* LINKTYPE_RAW */
		fl = ng_frame(fr, 1, 1, "abc");
		ng_epb(&w, be, 0, 1700000000ULL * 1000000 + 5, fr, fl);
		fl = ng_frame(fr, 113, 4, "def");
		ng_epb(&w, be, 1, 1700000000ULL * 1000000000 + 6789, fr, fl);
		fl = ng_frame(fr, 12, 7, "ghi");
		ng_epb(&w, be, 2, 1700000000ULL * 1000000 + 7, fr, fl);
		/* a new section in the other byte order: interfaces reset */
		ng_shb(&w, !be);
		ng_idb(&w, !be, 276, -1);
		fl = ng_frame(fr, 276, 10, "jkl");
		ng_epb(&w, !be, 0, 1700000000ULL * 1000000 + 8, fr, fl);

		struct cap_source *src;
		struct cap_pkt pkt;
		char err[256];
		assert_int_equal(cap_source_open_mem(&src, w.p, w.len, err, sizeof(err)), 0);
		assert_int_equal(cap_source_linktype(src), 1);
		static const int lts[] = {1, 113, 12, 276};
		static const int64_t tss[] = {
		    1700000000LL * 1000000 + 5, 1700000000LL * 1000000 + 6,
		    1700000000LL * 1000000 + 7, 1700000000LL * 1000000 + 8};
		for (int i = 0; i < 4; i++) {
			assert_int_equal(cap_source_next(src, &pkt), 1);
			assert_int_equal(pkt.linktype, lts[i]);
			assert_int_equal(pkt.ts_us, tss[i]);
			assert_int_equal(pkt.ts_ns_frac, i == 1 ? 789 : 0);
		}
		assert_int_equal(cap_source_next(src, &pkt), 0);
		cap_source_close(&src);

		struct tp_rec rec;
		memset(&rec, 0, sizeof(rec));
		assert_int_equal(cap_source_open_mem(&src, w.p, w.len, err, sizeof(err)), 0);
		struct cap_tcp_cbs cbs = tp_cbs(&rec);
		struct cap_tcp *tcp = cap_tcp_new(NULL, &cbs);
		assert_int_equal(cap_run(src, tcp), 0);
		assert_string_equal((char *)rec.buf[1][0], "abcdefghijkl");
		cap_tcp_free(&tcp);
		cap_source_close(&src);
		tp_rec_free(&rec);

		/* a BPF filter per interface link type */
		memset(&rec, 0, sizeof(rec));
		assert_int_equal(cap_source_open_mem(&src, w.p, w.len, err, sizeof(err)), 0);
		assert_int_equal(cap_source_set_filter(src, "tcp[4:4] != 4", err, sizeof(err)), 0);
		int n = 0;
		while (cap_source_next(src, &pkt) == 1)
			n++;
		assert_int_equal(n, 3);
		cap_source_close(&src);

		/* cut anywhere: a clean end or a clean error, never a crash */
		for (size_t cut = 1; cut < w.len; cut++) {
			if (cap_source_open_mem(&src, w.p, cut, err, sizeof(err)) < 0)
				continue;
			int rc;
			while ((rc = cap_source_next(src, &pkt)) == 1)
				;
			assert_true(rc == 0 || rc == -1);
			cap_source_close(&src);
		}
		tp_pcap_free(&w);
	}
}

/* kwire's pcapng reader against libpcap's on every public pcapng file:
 * the same packets, bytes and timestamps. */
static void cmp_with_libpcap(const char *path)
{
	char perr[PCAP_ERRBUF_SIZE], err[512];
	pcap_t *p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, perr);
	struct cap_source *src;
	struct cap_pkt pkt;
	struct pcap_pkthdr *h;
	const u_char *d;
	assert_non_null(p);
	assert_int_equal(cap_source_open(&src, path, err, sizeof(err)), 0);
	int n = 0;
	while (pcap_next_ex(p, &h, &d) == 1) {
		assert_int_equal(cap_source_next(src, &pkt), 1);
		assert_int_equal(pkt.caplen, h->caplen);
		assert_int_equal(pkt.origlen, h->len);
		assert_memory_equal(pkt.data, d, h->caplen);
		assert_int_equal(pkt.ts_us, (int64_t)h->ts.tv_sec * 1000000 + h->ts.tv_usec / 1000);
		assert_int_equal(pkt.ts_ns_frac, h->ts.tv_usec % 1000);
		assert_int_equal(pkt.linktype, pcap_datalink(p));
		n++;
	}
	assert_int_equal(cap_source_next(src, &pkt), 0);
	assert_true(n > 0);
	cap_source_close(&src);
	pcap_close(p);
}

static void walk_ng(const char *dir, int *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[1024];
		size_t l = strlen(de->d_name);
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (l > 7 && !strcmp(de->d_name + l - 7, ".pcapng")) {
			cmp_with_libpcap(path);
			(*n)++;
		} else if (!strchr(de->d_name, '.')) {
			walk_ng(path, n);
		}
	}
	closedir(d);
}

static void test_pcapng_vs_libpcap(void **state)
{
	(void)state;
	const char *shared = getenv("KWIRE_SHARED");
	char dir[1024];
	int n = 0;
	if (!shared) {
		print_message("SKIP: KWIRE_SHARED not set (needs: ctest's environment)\n");
		skip();
		return;
	}
	snprintf(dir, sizeof(dir), "%s/pcaps/public", shared);
	walk_ng(dir, &n);
	if (!n) {
		print_message("SKIP: no pcapng in %s (needs: ../shared/pcaps/public)\n", dir);
		skip();
	}
}

/* Every public capture: read without error, TCP flows found, nothing
 * malformed. */
static int public_file(const char *path)
{
	struct cap_source *src;
	char err[512];
	struct tp_rec rec;
	memset(&rec, 0, sizeof(rec));
	if (cap_source_open(&src, path, err, sizeof(err)) < 0) {
		print_error("%s\n", err);
		return -1;
	}
	struct cap_tcp_cbs cbs = tp_cbs(&rec);
	struct cap_tcp *tcp = cap_tcp_new(NULL, &cbs);
	int rc = cap_run(src, tcp);
	const struct cap_stats *st = cap_tcp_stats(tcp);
	print_message("%-70s link=%-6s pkts=%3llu flows=%llu delivered=%6llu gaps=%llu(%llu B) "
	              "dup=%llu malformed=%llu trunc=%llu\n",
	              path, cap_source_linkname(src), (unsigned long long)st->packets,
	              (unsigned long long)st->flows, (unsigned long long)st->delivered,
	              (unsigned long long)st->gaps, (unsigned long long)st->gap_bytes,
	              (unsigned long long)st->dup_bytes, (unsigned long long)st->malformed,
	              (unsigned long long)st->truncated);
	int bad = rc != 0 || st->flows == 0 || st->delivered == 0 || st->malformed != 0 ||
	          st->badlink != 0 || rec.nopen != rec.nclose;
	cap_tcp_free(&tcp);
	cap_source_close(&src);
	tp_rec_free(&rec);
	return bad ? -1 : 0;
}

static int walk(const char *dir, int *nfiles)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int bad = 0;
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char path[1024];
		struct stat st;
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			bad += walk(path, nfiles);
		} else if (strstr(de->d_name, ".pcap")) {
			(*nfiles)++;
			if (public_file(path) < 0) {
				print_error("FAILED: %s\n", path);
				bad++;
			}
		}
	}
	closedir(d);
	return bad;
}

static void test_public_pcaps(void **state)
{
	(void)state;
	const char *shared = getenv("KWIRE_SHARED");
	char dir[1024];
	if (!shared) {
		print_message("SKIP: KWIRE_SHARED not set (needs: ctest's environment)\n");
		skip();
		return;
	}
	snprintf(dir, sizeof(dir), "%s/pcaps/public", shared);
	struct stat st;
	if (stat(dir, &st) < 0) {
		print_message("SKIP: no %s (needs: ../shared/pcaps/public)\n", dir);
		skip();
		return;
	}
	int n = 0;
	assert_int_equal(walk(dir, &n), 0);
	assert_true(n > 0);
}

/* ---- the reassembled streams against tshark's "follow tcp" ---- */

/* Bytes per "src>dst" key, concatenated in delivery order. */
struct streams {
	char key[64][120];
	uint8_t *buf[64];
	size_t len[64];
	int n;
};

static size_t streams_slot(struct streams *ss, const char *key)
{
	for (int i = 0; i < ss->n; i++)
		if (!strcmp(ss->key[i], key))
			return (size_t)i;
	assert_true(ss->n < 64);
	snprintf(ss->key[ss->n], sizeof(ss->key[0]), "%s", key);
	return (size_t)ss->n++;
}

static void streams_add(struct streams *ss, const char *key, const uint8_t *p, size_t len)
{
	size_t i = streams_slot(ss, key);
	ss->buf[i] = realloc(ss->buf[i], ss->len[i] + len + 1);
	memcpy(ss->buf[i] + ss->len[i], p, len);
	ss->len[i] += len;
}

static void streams_free(struct streams *ss)
{
	for (int i = 0; i < ss->n; i++)
		free(ss->buf[i]);
	memset(ss, 0, sizeof(*ss));
}

static void ss_data(void *ctx, struct cap_flow *flow, int dir, const uint8_t *p, size_t len,
                    int64_t ts)
{
	char key[120];
	(void)ts;
	snprintf(key, sizeof(key), "%s>%s", flow->ep[dir].str, flow->ep[!dir].str);
	streams_add(ctx, key, p, len);
}

static int hexval(int c)
{
	return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Runs tshark's follow on every stream of path into ss, in one tshark run
 * (starting tshark is what costs: about 0.3 s a run, 41 captures). tshark
 * numbers the streams 0..; it is asked for the first `want` of them and
 * prints an empty one ("Node 0: :0") for an index past its last. When the
 * last one asked for had data, there may be more: asked again for twice as
 * many. Returns -1 when tshark is not there. */
static int tshark_follow(const char *path, struct streams *ss)
{
	static char cmd[16384];
	for (int want = 16; want <= 512; want *= 2) {
		size_t off = (size_t)snprintf(cmd, sizeof(cmd), "tshark -r '%s' -q", path);
		for (int i = 0; i < want; i++)
			off += (size_t)snprintf(cmd + off, sizeof(cmd) - off,
			                        " -z follow,tcp,raw,%d", i);
		snprintf(cmd + off, sizeof(cmd) - off, " 2>/dev/null");
		FILE *f = popen(cmd, "r");
		if (!f)
			return -1;
		static char line[70000];
		char node[2][100] = {"", ""};
		int stream = -1, last_used = -1, follows = 0;
		while (fgets(line, sizeof(line), f)) {
			if (sscanf(line, "Filter: tcp.stream eq %d", &stream) == 1) {
				follows++;
				node[0][0] = node[1][0] = 0;
				continue;
			}
			if (!strncmp(line, "Node 0: ", 8) || !strncmp(line, "Node 1: ", 8)) {
				int k = line[5] - '0';
				snprintf(node[k], sizeof(node[k]), "%.99s", line + 8);
				node[k][strcspn(node[k], "\n")] = 0;
				/* an index past the last stream: no endpoints */
				if (strcmp(node[k], ":0") && stream > last_used)
					last_used = stream;
				/* tshark prints IPv6 endpoints as addr:port; ours are [addr]:port
				 */
				continue;
			}
			int from1 = line[0] == '\t';
			const char *h = line + from1;
			size_t n = strspn(h, "0123456789abcdef");
			if (n == 0 || n % 2 || (h[n] != '\n' && h[n] != 0) || !node[0][0])
				continue;
			uint8_t bin[35000];
			for (size_t i = 0; i < n / 2; i++)
				bin[i] = (uint8_t)(hexval(h[2 * i]) << 4 | hexval(h[2 * i + 1]));
			char key[220];
			snprintf(key, sizeof(key), "%s>%s", node[from1], node[!from1]);
			streams_add(ss, key, bin, n / 2);
		}
		if (pclose(f) != 0 || follows != want)
			return -1;
		if (last_used < want - 1)
			return 0;
		streams_free(ss);
	}
	print_error("%s: more than 512 TCP streams\n", path);
	return -1;
}

static int vs_tshark(const char *path)
{
	struct streams ours, theirs;
	memset(&ours, 0, sizeof(ours));
	memset(&theirs, 0, sizeof(theirs));
	if (tshark_follow(path, &theirs) < 0)
		return -1;
	struct cap_source *src;
	char err[512];
	assert_int_equal(cap_source_open(&src, path, err, sizeof(err)), 0);
	struct cap_tcp_cbs cbs = {.ctx = &ours, .data = ss_data};
	struct cap_tcp *tcp = cap_tcp_new(NULL, &cbs);
	assert_int_equal(cap_run(src, tcp), 0);
	cap_tcp_free(&tcp);
	cap_source_close(&src);
	int bad = 0;
	if (ours.n != theirs.n) {
		print_error("%s: %d directions with data, tshark %d\n", path, ours.n, theirs.n);
		bad = 1;
	}
	for (int i = 0; i < theirs.n; i++) {
		size_t j = streams_slot(&ours, theirs.key[i]);
		if (ours.len[j] != theirs.len[i] ||
		    (ours.len[j] && memcmp(ours.buf[j], theirs.buf[i], ours.len[j]))) {
			print_error("%s: %s: %zu bytes, tshark %zu\n", path, theirs.key[i],
			            ours.len[j], theirs.len[i]);
			bad = 1;
		}
	}
	streams_free(&ours);
	streams_free(&theirs);
	return bad;
}

static void test_vs_tshark_follow(void **state)
{
	(void)state;
	const char *shared = getenv("KWIRE_SHARED");
	char dir[1024];
	int checked = 0, bad = 0;
	if (!shared || system("tshark -v >/dev/null 2>&1") != 0) {
		print_message(
		    "SKIP: no tshark or KWIRE_SHARED (needs: tshark, tools/install-deps.sh)\n");
		skip();
		return;
	}
	snprintf(dir, sizeof(dir), "%s/pcaps/public", shared);
	DIR *d = opendir(dir);
	if (!d) {
		print_message("SKIP: no %s (needs: ../shared/pcaps/public)\n", dir);
		skip();
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		char sub[1400];
		if (de->d_name[0] == '.' || strchr(de->d_name, '.'))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
		DIR *d2 = opendir(sub);
		struct dirent *de2;
		while (d2 && (de2 = readdir(d2))) {
			char path[1800];
			if (!strstr(de2->d_name, ".pcap"))
				continue;
			snprintf(path, sizeof(path), "%s/%s", sub, de2->d_name);
			int rc = vs_tshark(path);
			if (rc < 0) {
				closedir(d2);
				closedir(d);
				print_message(
				    "SKIP: tshark failed on %s (needs: a working tshark)\n", path);
				skip();
				return;
			}
			bad += rc;
			checked++;
		}
		if (d2)
			closedir(d2);
	}
	closedir(d);
	print_message("compared %d captures with tshark's follow tcp\n", checked);
	assert_int_equal(bad, 0);
	assert_true(checked > 0);
}

/* ---- live capture on the loopback interface ---- */

static void *breaker(void *arg)
{
	struct timespec t = {5, 0};
	nanosleep(&t, NULL);
	cap_source_break(arg);
	return NULL;
}

static void test_live_lo(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		/* the error case is tested below */
		print_message("SKIP: live capture on lo (needs: root or CAP_NET_RAW)\n");
		skip();
		return;
	}
	struct cap_source *src;
	char err[512], filter[64];
	if (cap_source_open_live(&src, "lo", 0, err, sizeof(err)) < 0) {
		print_message("SKIP: live capture on lo unavailable: %s (needs: root, libpcap)\n",
		              err);
		skip();
		return;
	}
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	getsockname(ls, (struct sockaddr *)&sa, &sl);
	listen(ls, 1);
	snprintf(filter, sizeof(filter), "tcp port %u", ntohs(sa.sin_port));
	assert_int_equal(cap_source_set_filter(src, filter, err, sizeof(err)), 0);
	assert_int_equal(cap_source_set_filter(src, "tcp port", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "bad filter"));
	int cs = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(cs, (struct sockaddr *)&sa, sizeof(sa)), 0);
	int as = accept(ls, NULL, NULL);
	assert_true(write(cs, "hello live", 10) == 10);
	char buf[16];
	assert_true(read(as, buf, sizeof(buf)) == 10);
	assert_true(write(as, "answer", 6) == 6);
	assert_true(read(cs, buf, sizeof(buf)) == 6);
	close(cs);
	close(as);
	close(ls);

	pthread_t th;
	pthread_create(&th, NULL, breaker, src);
	struct tp_rec rec;
	memset(&rec, 0, sizeof(rec));
	struct cap_tcp_cbs cbs = tp_cbs(&rec);
	struct cap_tcp *tcp = cap_tcp_new(NULL, &cbs);
	struct cap_pkt pkt;
	while (rec.nclose == 0 && cap_source_next(src, &pkt) == 1)
		cap_tcp_packet(tcp, &pkt);
	cap_source_break(src);
	pthread_cancel(th);
	pthread_join(th, NULL);
	assert_int_equal(rec.nopen, 1);
	assert_string_equal((char *)rec.buf[1][0], "hello live");
	assert_string_equal((char *)rec.buf[1][1], "answer");
	assert_non_null(strstr(rec.log, "close 1 fin"));
	cap_tcp_flush(tcp);
	cap_tcp_free(&tcp);
	cap_source_close(&src);
	tp_rec_free(&rec);
}

/* Without the privilege, the message says what is needed. */
static void test_live_no_permission(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
			_exit(3);
		struct cap_source *src;
		char err[512];
		if (cap_source_open_live(&src, "lo", 0, err, sizeof(err)) == 0) {
			cap_source_close(&src);
			_exit(2); /* this user may capture: nothing to check */
		}
		_exit(strstr(err, "CAP_NET_RAW") && strstr(err, "root") ? 0 : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == 2 || WEXITSTATUS(st) == 3) {
		print_message("SKIP: no unprivileged user to try a live capture as "
		              "(optional: a user without CAP_NET_RAW)\n");
		skip();
		return;
	}
	assert_int_equal(WEXITSTATUS(st), 0);
	/* and a missing interface */
	struct cap_source *src;
	char err[512];
	if (geteuid() == 0) {
		assert_int_equal(cap_source_open_live(&src, "nosuchif0", 0, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "nosuchif0"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_in_order),
	    cmocka_unit_test(test_synack_first),
	    cmocka_unit_test(test_out_of_order_dup_overlap),
	    cmocka_unit_test(test_gap_by_ack),
	    cmocka_unit_test(test_ack_before_data_reordered),
	    cmocka_unit_test(test_gap_at_fin_and_end),
	    cmocka_unit_test(test_gap_timeout),
	    cmocka_unit_test(test_rst_flushes),
	    cmocka_unit_test(test_seq_wrap),
	    cmocka_unit_test(test_synless_and_guess),
	    cmocka_unit_test(test_port_reuse),
	    cmocka_unit_test(test_zero_window_probe),
	    cmocka_unit_test(test_snaplen_cut_payload),
	    cmocka_unit_test(test_flow_cap),
	    cmocka_unit_test(test_total_cap),
	    cmocka_unit_test(test_idle_timeout_and_evict),
	    cmocka_unit_test(test_ignore),
	    cmocka_unit_test(test_no_payload_entries),
	    cmocka_unit_test(test_file_plain_nano_gzip),
	    cmocka_unit_test(test_file_truncated_and_bad),
	    cmocka_unit_test(test_file_every_cut),
	    cmocka_unit_test(test_pcapng),
	    cmocka_unit_test(test_caplen_over_origlen),
	    cmocka_unit_test(test_pcapng_multi_link),
	    cmocka_unit_test(test_pcapng_vs_libpcap),
	    cmocka_unit_test(test_public_pcaps),
	    cmocka_unit_test(test_vs_tshark_follow),
	    cmocka_unit_test(test_live_lo),
	    cmocka_unit_test(test_live_no_permission),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
