/* fuzz_reasm.c: libFuzzer target for the capture stack. The input is a
 * whole pcap or pcapng file image; it goes through libpcap (from memory),
 * the link and IP layers, fragment reassembly and TCP reassembly with
 * small caps and a small flow memory budget, so that the cap, cut, gap and
 * eviction paths run often.
 *
 * Checked on every callback: data is non-empty and readable (ASan checks
 * the read), gaps are non-zero, flows are opened before use and closed
 * exactly once; at the end nothing stays buffered. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cap.h"

struct fz {
	uint64_t sum;
	long open;
};

static void fz_open(void *ctx, struct cap_flow *flow)
{
	struct fz *fz = ctx;
	if (flow->user)
		abort();
	flow->user = fz;
	fz->open++;
	/* ignore every 7th flow: exercises the ignore path */
	if (flow->id % 7 == 0)
		flow->ignore = 1;
}

static void fz_data(void *ctx, struct cap_flow *flow, int dir, const uint8_t *p, size_t len,
                    int64_t ts_us)
{
	struct fz *fz = ctx;
	(void)ts_us;
	if (!len || (dir != 0 && dir != 1) || flow->user != fz || flow->closed)
		abort();
	fz->sum += p[0] + p[len - 1] + len;
}

static void fz_gap(void *ctx, struct cap_flow *flow, int dir, uint64_t n, int64_t ts_us)
{
	struct fz *fz = ctx;
	(void)ts_us;
	if (!n || (dir != 0 && dir != 1) || flow->user != fz || flow->closed)
		abort();
	fz->sum += n;
}

static void fz_close(void *ctx, struct cap_flow *flow, enum cap_close_reason reason)
{
	struct fz *fz = ctx;
	if (flow->user != fz || flow->closed || !cap_close_reason_name(reason))
		abort();
	flow->user = NULL;
	fz->open--;
}

static void fz_msg(void *ctx, struct cap_flow *flow, const char *msg)
{
	(void)ctx;
	(void)flow;
	if (!msg || !*msg)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cap_source *src;
	char err[512];
	struct fz fz = {0, 0};
	struct cap_tcp_opts opts = {
	    .flow_buf_max = 4096,
	    .total_buf_max = 16384,
	    .max_flows = 16,
	    .idle_timeout_us = 5000000,
	    .gap_timeout_us = 1000000,
	    .closed_linger_us = 2000000,
	    .frag_mem_max = 64 * 1024,
	    .frag_max = 8,
	    .frag_timeout_us = 1000000,
	    .mem_max = 24 * 1024, /* over the buckets, 16 flows and their buffers */
	};
	struct cap_tcp_cbs cbs = {.ctx = &fz,
	                          .flow_open = fz_open,
	                          .data = fz_data,
	                          .gap = fz_gap,
	                          .flow_close = fz_close,
	                          .message = fz_msg};
	if (cap_source_open_mem(&src, data, size, err, sizeof(err)) < 0)
		return 0;
	struct cap_tcp *tcp = cap_tcp_new(&opts, &cbs);
	if (tcp) {
		cap_run(src, tcp);
		if (fz.open != 0 || cap_tcp_buffered(tcp) != 0 || cap_tcp_nflows(tcp) != 0)
			abort();
		cap_tcp_free(&tcp);
	}
	cap_source_close(&src);
	return 0;
}
