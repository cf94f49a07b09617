/* cap.h: the capture module's functions. Types are in cap-t.h; the
 * supported inputs, limits and gap rules are in docs/capture.md.
 *
 * Typical offline use:
 *
 *	struct cap_source *src;
 *	char err[256];
 *	if (cap_source_open(&src, path, err, sizeof(err)) < 0) { print err; fail; }
 *	struct cap_tcp *tcp = cap_tcp_new(NULL, &cbs);
 *	int rc = cap_run(src, tcp);             // every packet, then cap_tcp_flush()
 *	if (rc < 0) print cap_source_error(src);  // data up to the error was delivered
 *	cap_tcp_free(&tcp);
 *	cap_source_close(&src);
 */
#ifndef CAP_H
#define CAP_H

#include <stddef.h>
#include <stdint.h>

#include "cap-t.h"

/* ---- input (cap-pcap.c) ---- */

/* Opens a capture file: pcap (micro or nanosecond, either byte order),
 * pcapng, either of them gzip-compressed (detected by content, not by
 * name), or "-" for stdin (gzip or not). Returns 0, or -1 with a message
 * in err ("not a pcap or pcapng file", "cannot open ...: No such file").
 * The caller frees with cap_source_close(). */
int cap_source_open(struct cap_source **out, const char *path, char *err, size_t errlen);

/* The same from a memory image (fuzzing, tests). p must outlive the
 * source; it is not copied. Gzip images are not decompressed here. */
int cap_source_open_mem(struct cap_source **out, const void *p, size_t len, char *err,
                        size_t errlen);

/* Opens a live interface (snaplen 0 = 262144). Without root or
 * CAP_NET_RAW the error says what is needed. */
int cap_source_open_live(struct cap_source **out, const char *iface, int snaplen, char *err,
                         size_t errlen);

/* Installs a BPF filter (tcpdump syntax) on a live or offline source.
 * Returns 0 or -1 with a message in err. */
int cap_source_set_filter(struct cap_source *src, const char *bpf, char *err, size_t errlen);

/* Where warnings about the input go: fn(ctx, msg) is called once for each
 * (for now: an interface, or a pcap file, whose link type kwire does not
 * decode: its packets are counted in stats.badlink and skipped). Warnings
 * raised before, while opening, are delivered when fn is installed. */
void cap_source_on_warning(struct cap_source *src, void (*fn)(void *ctx, const char *msg),
                           void *ctx);

/* Reads the next frame. Returns 1 (pkt filled), 0 at the end of the input
 * (a file cut in the middle of a record ends cleanly here, see
 * cap_source_truncated()), or -1 on a read error (cap_source_error()).
 * Live sources block until a packet comes or cap_source_break(). */
int cap_source_next(struct cap_source *src, struct cap_pkt *pkt);

/* The last error message ("" if none). */
const char *cap_source_error(const struct cap_source *src);

/* 1 if the file ended in the middle of a record (a truncated capture). */
int cap_source_truncated(const struct cap_source *src);

/* The source's link type (DLT_*) and its name ("EN10MB", ...). For
 * pcapng this is the first interface's; see docs/capture.md. */
int cap_source_linktype(const struct cap_source *src);
const char *cap_source_linkname(const struct cap_source *src);

/* Progress of a file: bytes of the file consumed so far and its size
 * (compressed bytes for gzip). *total is 0 when unknown (stdin, live). */
void cap_source_progress(const struct cap_source *src, uint64_t *done, uint64_t *total);

/* Makes a blocked or later cap_source_next() return 0. Async-signal-safe. */
void cap_source_break(struct cap_source *src);

/* Closes and frees; sets *src to NULL. NULL is fine. */
void cap_source_close(struct cap_source **src);

/* ---- link and IP layers (cap-link.c, cap-ip.c) ---- */

/* 1 if kwire decodes this link type. */
int cap_link_supported(int linktype);

/* Strips the link header of one frame (Ethernet with 802.1Q/802.1ad tags,
 * Linux SLL and SLL2, BSD null/loop in both byte orders, raw IPv4/IPv6).
 * Returns CAP_P_TCP (meaning "l3 filled, go on"), CAP_P_NONIP,
 * CAP_P_TRUNCATED, CAP_P_MALFORMED or CAP_P_BADLINK. */
enum cap_prc cap_link_parse(int linktype, const uint8_t *p, size_t len, struct cap_l3 *l3);

/* Parses an IPv4 or IPv6 packet (version from the first nibble) and its
 * TCP header into seg, without fragment reassembly. IPv4 options and IPv6
 * extension headers (hop-by-hop, routing, destination options, fragment)
 * are skipped. Returns CAP_P_TCP, CAP_P_NONTCP, CAP_P_MALFORMED,
 * CAP_P_TRUNCATED or CAP_P_FRAG (a fragment: not parsed further). */
enum cap_prc cap_ip_parse(const uint8_t *p, size_t len, struct cap_seg *seg);

/* Formats "1.2.3.4:80" or "[2001:db8::1]:80" into buf (at least 56 bytes). */
void cap_endpoint_format(char *buf, size_t buflen, uint8_t af, const uint8_t *addr, uint16_t port);

/* ---- TCP reassembly (cap-tcp.c) ---- */

/* A new reassembler. opts may be NULL (defaults). cbs is copied. Returns
 * NULL when out of memory. */
struct cap_tcp *cap_tcp_new(const struct cap_tcp_opts *opts, const struct cap_tcp_cbs *cbs);

/* Feeds one frame of the given link type: link, IP (with fragment
 * reassembly), TCP, then flow callbacks. Never fails: bad frames are
 * counted in the stats. */
void cap_tcp_packet(struct cap_tcp *tcp, const struct cap_pkt *pkt);

/* Feeds one parsed TCP segment (the link and IP layers done by the
 * caller); ts_us is its capture time. */
void cap_tcp_segment(struct cap_tcp *tcp, const struct cap_seg *seg, int64_t ts_us);

/* Closes every open flow (gaps for holes, buffered data delivered, then
 * flow_close(CAP_CLOSE_END)) and drops held fragments. Call at the end of
 * the input; the reassembler stays usable. */
void cap_tcp_flush(struct cap_tcp *tcp);

/* Counters; valid while tcp lives. */
const struct cap_stats *cap_tcp_stats(const struct cap_tcp *tcp);

/* Bytes currently buffered (out-of-order TCP data and IP fragments). */
size_t cap_tcp_buffered(const struct cap_tcp *tcp);

/* Flows currently in the table (closed ones lingering included). */
size_t cap_tcp_nflows(const struct cap_tcp *tcp);

/* Bytes of flow state held now, as counted against cap_tcp_opts.mem_max:
 * table entries and buckets, flows, out-of-order data, IP fragments and
 * every flow's user_mem. The peak is in cap_stats.mem_peak. */
size_t cap_tcp_mem(const struct cap_tcp *tcp);

/* Frees everything without calling callbacks (call cap_tcp_flush() first
 * to let the user free its per-flow state). Sets *tcp to NULL. */
void cap_tcp_free(struct cap_tcp **tcp);

/* "fin", "rst", "timeout", "end", "reuse", "evict". */
const char *cap_close_reason_name(enum cap_close_reason reason);

/* ---- the loop ---- */

/* Reads every frame of src into tcp, then cap_tcp_flush(). Returns 0 at
 * the end of the input (truncated files included), -1 on a read error
 * (the data before it was delivered and the flows were flushed). */
int cap_run(struct cap_source *src, struct cap_tcp *tcp);

#endif
