/* bench_reasm.c: throughput of the capture stack (libpcap read, link, IP,
 * TCP reassembly) with a callback that only touches the bytes.
 *
 *   bench_reasm [FILE]   read FILE (pcap/pcapng/gz), or without FILE build
 *                        a synthetic capture (64 flows, 1448-byte segments,
 *                        1% of them out of order) of about 512 MB in /tmp
 *   bench_reasm --make FILE   only write the synthetic capture to FILE
 *
 * Prints packets, bytes, seconds, Mpkt/s and MB/s. Measures, asserts
 * nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cap.h"

static uint64_t sink;

static void on_data(void *ctx, struct cap_flow *flow, int dir, const uint8_t *p, size_t len,
                    int64_t ts)
{
	(void)ctx;
	(void)flow;
	(void)ts;
	sink += p[0] + p[len - 1] + (unsigned)dir;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static void put32le(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Ethernet + IPv4 + TCP frame of plen bytes payload; returns its length. */
static size_t frame(uint8_t *f, int flow, int c2s, uint32_t seq, size_t plen)
{
	memset(f, 0, 54);
	put16(f + 12, 0x0800);
	uint8_t *ip = f + 14, *tcp = f + 34;
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(40 + plen));
	ip[8] = 64;
	ip[9] = 6;
	put32(ip + (c2s ? 12 : 16), 0x0a000001);
	put32(ip + (c2s ? 16 : 12), 0x0a000002);
	put16(tcp + (c2s ? 0 : 2), (uint16_t)(40000 + flow));
	put16(tcp + (c2s ? 2 : 0), 9092);
	put32(tcp + 4, seq);
	tcp[12] = 0x50;
	tcp[13] = 0x18;
	put16(tcp + 14, 65535);
	for (size_t i = 0; i < plen; i++)
		f[54 + i] = (uint8_t)(i * 7 + (size_t)flow);
	return 54 + plen;
}

static const char *make_synthetic(const char *out)
{
	static char path[] = "/tmp/kwire-bench-reasm-XXXXXX";
	FILE *f;
	if (out) {
		f = fopen(out, "wb");
	} else {
		int fd = mkstemp(path);
		f = fd < 0 ? NULL : fdopen(fd, "wb");
	}
	if (!f)
		return NULL;
	uint8_t gh[24] = {0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0};
	put32le(gh + 16, 65535);
	put32le(gh + 20, 1);
	fwrite(gh, 1, 24, f);
	uint32_t seq[64][2];
	for (int i = 0; i < 64; i++)
		seq[i][0] = seq[i][1] = (uint32_t)i * 1000003u;
	uint8_t fr[1600], held[1600], rh[16];
	size_t heldlen = 0;
	uint64_t n = 0;
	for (uint64_t bytes = 0; bytes < (512u << 20);) {
		int flow = (int)(n % 64), c2s = (n / 64) % 4 == 0;
		size_t plen = c2s ? 200 : 1448;
		size_t len = frame(fr, flow, c2s, seq[flow][c2s], plen);
		seq[flow][c2s] += (uint32_t)plen;
		n++;
		/* every 100th server segment is held back and written after the
		 * next one: out of order */
		if (!c2s && n % 100 == 1 && !heldlen) {
			memcpy(held, fr, len);
			heldlen = len;
			continue;
		}
		for (int k = 0; k < (heldlen && !c2s && fr[37] == held[37] ? 2 : 1); k++) {
			const uint8_t *w = k ? held : fr;
			size_t wl = k ? heldlen : len;
			put32le(rh, 1700000000u + (uint32_t)(n / 100000));
			put32le(rh + 4, (uint32_t)(n % 1000000));
			put32le(rh + 8, (uint32_t)wl);
			put32le(rh + 12, (uint32_t)wl);
			fwrite(rh, 1, 16, f);
			fwrite(w, 1, wl, f);
			bytes += 16 + wl;
			if (k)
				heldlen = 0;
		}
	}
	fclose(f);
	return out ? out : path;
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "--make"))
		return make_synthetic(argv[2]) ? 0 : 1;
	const char *path = argc > 1 ? argv[1] : make_synthetic(NULL);
	char err[512];
	struct cap_source *src;
	if (!path) {
		fprintf(stderr, "bench_reasm: cannot create a temp file\n");
		return 1;
	}
	if (cap_source_open(&src, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench_reasm: %s\n", err);
		return 1;
	}
	struct cap_tcp_cbs cbs = {.data = on_data};
	struct cap_tcp *tcp = cap_tcp_new(NULL, &cbs);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = cap_run(src, tcp);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	const struct cap_stats *st = cap_tcp_stats(tcp);
	printf("file=%s rc=%d packets=%llu bytes=%llu flows=%llu delivered=%llu ooo=%llu gaps=%llu "
	       "seconds=%.3f Mpkt/s=%.2f MB/s=%.0f\n",
	       path, rc, (unsigned long long)st->packets, (unsigned long long)st->bytes,
	       (unsigned long long)st->flows, (unsigned long long)st->delivered,
	       (unsigned long long)st->ooo_segments, (unsigned long long)st->gaps, s,
	       (double)st->packets / s / 1e6, (double)st->bytes / s / 1e6);
	cap_tcp_free(&tcp);
	cap_source_close(&src);
	if (argc < 2)
		unlink(path);
	return (int)(sink & 0);
}
