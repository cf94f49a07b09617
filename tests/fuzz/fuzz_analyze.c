/* fuzz_analyze.c: libFuzzer target for the whole analyzer behind `kwire
 * decode`: a pcap or pcapng image goes through the capture stack (small
 * caps and a small flow memory budget, so that eviction runs) into the
 * analyzer: Kafka detection on every port, flows parked and revived when
 * their endpoint turns out to be a broker, broker endpoints learnt from
 * responses, every output format and the report of flows not decoded.
 *
 * The first input byte picks the format and options (with a format other
 * than stats, bit 3 runs the rules engine over the capture instead,
 * `--rules`, with a file of every section: access, policies, quotas,
 * audit, names and records rewrites, mirror and tap); the rest is the
 * capture. Output goes to /dev/null; ASan and UBSan do the checking, and
 * the reassembler must hold nothing at the end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "cap-analyze.h"
#include "cap.h"

static const char rules_yaml[] =
    "access:\n"
    "  - {name: deny-secret, match: {topic: \"secret*\"}, deny: true}\n"
    "policies:\n"
    "  - {name: codecs, match: {api: Produce}, require: {compression: [lz4, zstd, none]}}\n"
    "quotas:\n"
    "  - {name: rate, requests_per_sec: 5}\n"
    "  - {name: bytes, per: topic, produce_bytes_per_sec: 1000, fetch_bytes_per_sec: 1000}\n"
    "audit:\n"
    "  - {name: all, match: {api: [Produce, JoinGroup]}, log: summary}\n"
    "rewrite:\n"
    "  - name: tenant\n"
    "    match: {client_id: \"t*\"}\n"
    "    topics: {prefix: acme., alias: {old: acme.new}}\n"
    "    groups: {prefix: g.}\n"
    "    transactional_ids: {prefix: x.}\n"
    "  - name: records\n"
    "    match: {api: [Produce, Fetch]}\n"
    "    headers: {add: {a: \"${client_id}${source}${time}\"}, set: {b: x}, remove: [c]}\n"
    "    mask: [{path: a.b, hash: true}, {path: \"c[*].d\", drop: true}, {path: e, replace: "
    "\"*\"}]\n"
    "    hash_key_file: KEYFILE\n"
    "  - {name: strict, match: {api: Fetch, client_id: \"s*\"}, mask: [{path: z, drop: true}], "
    "on_error: refuse}\n"
    "mirror:\n"
    "  - {name: dr, match: {topic: \"*\"}, topic: \"dr.{topic}\", to: {bootstrap: "
    "\"127.0.0.1:1\"}}\n"
    "  - {name: bykey, match: {topic: \"a*\"}, partition: key, to: {bootstrap: \"127.0.0.1:1\"}}\n"
    "tap:\n"
    "  - {name: tap, match: {client_id: \"*\"}, to: /nonexistent/tap.pcapng}\n";

static char key[64] = "/tmp/fuzz-analyze-key-XXXXXX";
static char rp[64] = "/tmp/fuzz-analyze-rules-XXXXXX";

static void rules_unlink(void)
{
	unlink(key);
	unlink(rp);
}

/* The rules file (and its hash key), written once, removed at exit. */
static const char *rules_path(void)
{
	static char path[64];
	if (path[0])
		return path;
	int kf = mkstemp(key), rf = mkstemp(rp);
	if (kf < 0 || rf < 0 || write(kf, "0123456789abcdef0123456789abcdef", 32) != 32)
		abort();
	close(kf);
	const char *at = strstr(rules_yaml, "KEYFILE");
	if (write(rf, rules_yaml, (size_t)(at - rules_yaml)) < 0 ||
	    write(rf, key, strlen(key)) < 0 || write(rf, at + 7, strlen(at + 7)) < 0)
		abort();
	close(rf);
	atexit(rules_unlink);
	memcpy(path, rp, sizeof(rp));
	return path;
}

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
	if (opts.format != CAP_AN_STATS && opts.stats_json)
		opts.rules_path = rules_path();
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
