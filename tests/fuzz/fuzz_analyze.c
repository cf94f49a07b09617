/* fuzz_analyze.c: libFuzzer target for the whole analyzer behind `kwire
 * decode`: a pcap or pcapng image goes through the capture stack (small
 * caps and a small flow memory budget, so that eviction runs) into the
 * analyzer: Kafka detection on every port, flows parked and revived when
 * their endpoint turns out to be a broker, broker endpoints learnt from
 * responses, every output format and the report of flows not decoded.
 *
 * The first input byte picks the format and options; the rest is the
 * capture. Output goes to /dev/null; ASan and UBSan do the checking, and
 * the reassembler must hold nothing at the end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap-analyze.h"
#include "cap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cap_source *src;
	char err[512];
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	struct cap_an_opts opts;
	memset(&opts, 0, sizeof(opts));
	opts.format = mode % 5; /* summary, verbose, json, records, stats */
	opts.stats_json = mode >> 3 & 1;
	opts.stats_after = (mode >> 4 & 1) && opts.format != CAP_AN_STATS;
	if (mode >> 5 & 1) {
		opts.ports[0] = 9092;
		opts.ports[1] = 29092;
		opts.nports = 2;
	}
	opts.no_detect = (mode >> 6 & 3) == 3;
	struct cap_tcp_opts topts = {
	    .flow_buf_max = 8192,
	    .total_buf_max = 32768,
	    .max_flows = 64,
	    .idle_timeout_us = 5000000,
	    .gap_timeout_us = 1000000,
	    .closed_linger_us = 2000000,
	    .frag_mem_max = 64 * 1024,
	    .frag_max = 8,
	    .frag_timeout_us = 1000000,
	    .mem_max = (mode >> 7) ? 64 * 1024 : 0,
	};
	if (cap_source_open_mem(&src, data + 1, size - 1, err, sizeof(err)) < 0)
		return 0;
	FILE *out = fopen("/dev/null", "w");
	if (!out)
		abort();
	struct cap_an *an = cap_an_new(&opts, out, err, sizeof(err));
	if (an) {
		struct cap_tcp_cbs cbs;
		cap_an_callbacks(an, &cbs);
		struct cap_tcp *tcp = cap_tcp_new(&topts, &cbs);
		if (tcp) {
			cap_run(src, tcp);
			cap_an_finish(an, cap_tcp_stats(tcp));
			if (cap_tcp_buffered(tcp) != 0 || cap_tcp_nflows(tcp) != 0)
				abort();
			cap_tcp_free(&tcp);
		}
		cap_an_free(&an);
	}
	fclose(out);
	cap_source_close(&src);
	return 0;
}
