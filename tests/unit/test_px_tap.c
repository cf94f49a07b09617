/* test_px_tap.c: the tap's writer (px-tap.h) on its own.
 *
 * 1. A flow written to a file: the pcapng blocks (SHB, IDB, EPBs) are well
 *    formed, the handshake comes first, and the payload segments' sequence
 *    numbers follow each other in each direction (they reassemble) and
 *    carry the bytes given, a frame split at every call boundary.
 * 2. A slow disk: the file is a FIFO nobody reads, so the writer blocks;
 *    the forwarding side never does: packets beyond the queue budget are
 *    dropped and counted, and once the FIFO is drained everything queued
 *    is written. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "px-tap.h"

static void addrs(struct sockaddr_in *c, struct sockaddr_in *b)
{
	memset(c, 0, sizeof(*c));
	memset(b, 0, sizeof(*b));
	c->sin_family = b->sin_family = AF_INET;
	c->sin_addr.s_addr = htonl(0x7f000001);
	b->sin_addr.s_addr = htonl(0x7f000002);
	c->sin_port = htons(40000);
	b->sin_port = htons(9092);
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void test_file(void **state)
{
	(void)state;
	char path[] = "/tmp/kwire-test-tap-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	struct px_tap_opts o = {0, 1, 1 << 20};
	char err[256];
	struct px_tap *tap = px_tap_open(path, &o, NULL, NULL, err, sizeof(err));
	assert_non_null(tap);
	struct sockaddr_in c, b;
	addrs(&c, &b);
	struct px_tap_flow *f = px_tap_flow_new(tap, (struct sockaddr *)&c, (struct sockaddr *)&b);
	assert_non_null(f);
	/* A Metadata v1 request (size 15), given in two pieces; the answer. */
	static const uint8_t req[] = {0, 0, 0, 15, 0,   3,    0,    1,    0,   0,
	                              0, 7, 0, 1,  'c', 0xff, 0xff, 0xff, 0xff};
	static const uint8_t resp[] = {0, 0, 0, 4, 0, 0, 0, 7};
	px_tap_flow_frame(f, PX_TAP_C2S, 3, 1);
	px_tap_flow_mem(f, PX_TAP_C2S, req, 6);
	px_tap_flow_mem(f, PX_TAP_C2S, req + 6, sizeof(req) - 6);
	px_tap_flow_frame(f, PX_TAP_S2C, 3, 1);
	px_tap_flow_mem(f, PX_TAP_S2C, resp, sizeof(resp));
	px_tap_flow_end(&f);
	px_tap_sync(tap);
	struct px_tap_stats st;
	px_tap_stats_get(tap, &st);
	assert_int_equal(st.dropped_packets, 0);
	px_tap_close(&tap);

	FILE *in = fopen(path, "rb");
	uint8_t buf[8192];
	size_t n = fread(buf, 1, sizeof(buf), in);
	fclose(in);
	unlink(path);
	assert_true(n > 48);
	assert_int_equal(rd32(buf), 0x0A0D0D0A);
	assert_int_equal(rd32(buf + 8), 0x1A2B3C4D);
	assert_int_equal(rd32(buf + 28), 1); /* IDB */
	size_t off = 48;
	unsigned pkts = 0;
	uint32_t next[2] = {0, 0};
	int have[2] = {0, 0};
	uint8_t got[2][64];
	size_t glen[2] = {0, 0};
	while (off < n) {
		assert_int_equal(rd32(buf + off), 6); /* EPB */
		uint32_t total = rd32(buf + off + 4);
		assert_int_equal(rd32(buf + off + total - 4), total);
		uint32_t caplen = rd32(buf + off + 20);
		const uint8_t *e = buf + off + 28;
		assert_int_equal(e[12], 0x08); /* IPv4 */
		const uint8_t *ip = e + 14, *t = ip + 20;
		size_t payload = caplen - 14 - 20 - 20;
		int dir = t[1] == 0x40 && t[0] == 0x9c ? 0 : 1; /* from port 40000: client */
		uint32_t seq = be32(t + 4);
		uint8_t flags = t[13];
		if (flags & 0x02) { /* SYN: the initial sequence number */
			next[dir] = seq + 1;
			have[dir] = 1;
		} else if (payload) {
			assert_true(have[dir]);
			assert_int_equal(seq, next[dir]); /* no gap, no overlap */
			memcpy(got[dir] + glen[dir], t + 20, payload);
			glen[dir] += payload;
			next[dir] += (uint32_t)payload;
		}
		pkts++;
		off += total;
	}
	assert_int_equal(off, n);
	assert_true(pkts >= 3 + 3 + 3); /* handshake, data, FIN exchange */
	assert_int_equal(glen[0], sizeof(req));
	assert_memory_equal(got[0], req, sizeof(req));
	assert_int_equal(glen[1], sizeof(resp));
	assert_memory_equal(got[1], resp, sizeof(resp));
}

static void *drain(void *arg)
{
	char sink[65536];
	while (read(*(int *)arg, sink, sizeof(sink)) > 0)
		;
	return NULL;
}

static void test_slow_disk(void **state)
{
	(void)state;
	char dir[] = "/tmp/kwire-test-tapfifo-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof(path), "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	int rfd = open(path, O_RDONLY | O_NONBLOCK); /* so that the writer's open returns */
	assert_true(rfd >= 0);
	struct px_tap_opts o = {0, 1, 65536};
	char err[256];
	struct px_tap *tap = px_tap_open(path, &o, NULL, NULL, err, sizeof(err));
	assert_non_null(tap);
	struct sockaddr_in c, b;
	addrs(&c, &b);
	struct px_tap_flow *f = px_tap_flow_new(tap, (struct sockaddr *)&c, (struct sockaddr *)&b);
	static uint8_t frame[1000 + 4] = {0, 0, 0x03, 0xe8};
	/* 2 MB through a pipe nobody reads (64 KiB) and a 64 KiB queue. */
	for (int i = 0; i < 2000; i++)
		px_tap_flow_mem(f, PX_TAP_C2S, frame, sizeof(frame));
	struct px_tap_stats st;
	px_tap_stats_get(tap, &st);
	assert_true(st.dropped_packets > 0);
	assert_true(st.queue_bytes <= 65536);
	px_tap_flow_end(&f);
	/* Drain the FIFO (until the writer closes it) on a thread. */
	int flags = fcntl(rfd, F_GETFL);
	fcntl(rfd, F_SETFL, flags & ~O_NONBLOCK);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, drain, &rfd), 0);
	px_tap_sync(tap);
	px_tap_stats_get(tap, &st);
	assert_int_equal(st.queue_bytes, 0);
	assert_true(st.packets > 0);
	px_tap_close(&tap);
	pthread_join(th, NULL);
	close(rfd);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_file),
	    cmocka_unit_test(test_slow_disk),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
