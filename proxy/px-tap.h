/* px-tap.h: the proxy's tap, a pcapng capture of what kwire forwards
 * (docs/proxy.md, "Tap").
 *
 * Each client connection is written as one synthetic TCP connection
 * between the real client address and the real broker address, with an
 * Ethernet and IPv4 (or IPv6) header around every segment and sequence
 * numbers that reassemble: kwire decode, tshark and Wireshark read the
 * file as if it had been captured on the wire, but it holds the plaintext
 * kwire forwarded (on a TLS listener, after TLS is terminated). Sensitive
 * fields (SaslAuthenticate's AuthBytes and every other field the schema
 * marks sensitive, and SASL v0 tokens) are written as zeros (kd-redact.h).
 *
 * Threads: a struct px_tap_flow belongs to the connection's worker and is
 * only used there; each struct px_tap has one writer thread that takes
 * packets from a bounded queue (a byte budget) and writes them. When the
 * queue is full (the disk is slow), packets are dropped and counted (the
 * sequence numbers go on, so a reader sees a gap, never a corrupt
 * stream), with a warning at most once a minute. Rotation: once a file
 * would exceed max_bytes, it is renamed NAME.1.pcapng (older ones move up
 * to NAME.<files-1>.pcapng, the oldest is deleted) and a new NAME.pcapng
 * starts. */
#ifndef PX_TAP_H
#define PX_TAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct evbuffer;
struct px_tap;
struct px_tap_flow;

#define PX_TAP_MAX_BYTES_DEFAULT (100ull << 20) /* per file, before rotation */
#define PX_TAP_FILES_DEFAULT 10                 /* files kept, the current one included */
#define PX_TAP_QUEUE_DEFAULT (16u << 20)        /* bytes queued for the writer */

struct px_tap_opts {
	uint64_t max_bytes; /* rotate once a file would exceed this; 0: never */
	unsigned files;     /* files kept (current included), >= 1 */
	size_t queue_bytes; /* queue budget; over it packets are dropped */
};

struct px_tap_stats {
	uint64_t packets, bytes;                 /* written (EPB payload bytes) */
	uint64_t dropped_packets, dropped_bytes; /* queue full */
	uint64_t rotations, write_errors;
	uint64_t queue_bytes; /* queued now */
};

/* Opens path (truncating it), writes the pcapng header and starts the
 * writer thread. log(arg, level, msg) reports drops and write errors (any
 * thread). NULL with a message in err on failure. */
struct px_tap *px_tap_open(const char *path, const struct px_tap_opts *opts,
                           void (*log)(void *arg, int level, const char *msg), void *arg, char *err,
                           size_t errlen);
/* Writes what is queued, stops the thread, closes; *tap = NULL. Every flow
 * of the tap must have been ended before. */
void px_tap_close(struct px_tap **tap);
void px_tap_stats_get(struct px_tap *tap, struct px_tap_stats *out);
const char *px_tap_path(const struct px_tap *tap);
/* The taps' /metrics lines (Prometheus text), appended to w: the global
 * tap's series without labels (none when tap is NULL), each tap of reg's
 * with {file="PATH"}. */
struct kd_wbuf;
struct px_tapreg;
void px_tap_metrics(struct px_tap *tap, struct px_tapreg *reg, struct kd_wbuf *w);

/* ---- the taps of `tap:` rules (docs/rules.md), one per file ---- */

/* A registry of taps by file, shared by the workers. NULL: out of memory. */
struct px_tapreg *px_tapreg_new(void (*log)(void *arg, int level, const char *msg), void *arg);
/* The tap writing path (opened now, with max_bytes and files, the first
 * time), or NULL when it cannot be opened (logged once per path). Any
 * thread; takes a lock. */
struct px_tap *px_tapreg_get(struct px_tapreg *reg, const char *path, uint64_t max_bytes,
                             unsigned files);
/* Closes every tap (each flow ended before); *reg = NULL. */
void px_tapreg_free(struct px_tapreg **reg);
/* Blocks until the writer has written everything queued so far (tests). */
void px_tap_sync(struct px_tap *tap);

/* Directions of a flow. */
enum { PX_TAP_C2S = 0, PX_TAP_S2C = 1 };

/* A flow between client and broker (IPv4 or IPv6 socket addresses; a
 * mixed pair is written as IPv6 with the IPv4 one mapped). Writes the
 * three-way handshake. NULL when out of memory or an address is of
 * another family. */
struct px_tap_flow *px_tap_flow_new(struct px_tap *tap, const struct sockaddr *client,
                                    const struct sockaddr *broker);
/* The next frame to start in direction dir is of API key/version (a
 * response: its request's; key -1: a SASL v0 token). Only frames of
 * sensitive APIs need it (they are held whole and redacted); calling it
 * for every frame is cheap. */
void px_tap_flow_frame(struct px_tap_flow *flow, int dir, int16_t key, int16_t ver);
/* The next n bytes that went in direction dir: from memory, or the n
 * bytes of src from offset off (not drained). */
void px_tap_flow_mem(struct px_tap_flow *flow, int dir, const void *p, size_t n);
void px_tap_flow_buf(struct px_tap_flow *flow, int dir, struct evbuffer *src, size_t off, size_t n);
/* Writes what is pending and the FIN of both sides, frees; *flow = NULL. */
void px_tap_flow_end(struct px_tap_flow **flow);

#endif
