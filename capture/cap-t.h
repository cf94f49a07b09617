/* cap-t.h: types of the capture module (pcap/pcapng/live input, link
 * layers, IPv4/IPv6 with fragment reassembly, TCP reassembly).
 *
 * The layering, bottom up:
 *
 *   struct cap_source   a file (pcap, pcapng, gzip, stdin), a memory image
 *        |              or a live interface; yields struct cap_pkt
 *   cap_link_parse()    link header -> struct cap_l3 (ethertype + bytes)
 *   cap_ip_parse()      IPv4/IPv6 -> struct cap_seg (one TCP segment)
 *        |              (fragments are held and reassembled in cap_tcp)
 *   struct cap_tcp      flows, per-direction reassembly, callbacks
 *
 * Times are microseconds since the epoch, taken from the capture (never the
 * wall clock), so a file decodes the same way on every run. */
#ifndef CAP_T_H
#define CAP_T_H

#include <stddef.h>
#include <stdint.h>

/* One captured frame. data points into the source's buffer and is valid
 * until the next cap_source_next() call. caplen is what is in the buffer
 * (already clamped: a record whose caplen exceeds the record size or
 * origlen is cut to what is really there); origlen is informative only. */
struct cap_pkt {
	const uint8_t *data;
	uint32_t caplen;
	uint32_t origlen;
	int64_t ts_us;
	uint32_t ts_ns_frac; /* nanoseconds within ts_us (0..999) when the file has them */
	int linktype;        /* DLT_* as libpcap reports it */
};

/* Result of the link and IP layer parsers. */
enum cap_prc {
	CAP_P_TCP = 0,       /* a TCP segment is in struct cap_seg */
	CAP_P_NONIP = 1,     /* not IPv4/IPv6 (ARP, LLDP, ...) */
	CAP_P_NONTCP = 2,    /* IP but not TCP (UDP, ICMP, ...) */
	CAP_P_MALFORMED = 3, /* a header that cannot be right (bad version, length) */
	CAP_P_TRUNCATED = 4, /* caplen (snaplen) cut a header short */
	CAP_P_FRAG = 5,      /* a fragment, held for reassembly (or dropped, see stats) */
	CAP_P_BADLINK = 6,   /* a link type kwire does not decode */
};

/* After the link layer: the network-layer protocol and its bytes. */
struct cap_l3 {
	uint16_t ethertype; /* 0x0800 IPv4, 0x86dd IPv6, ... */
	uint8_t nvlan;      /* 802.1Q/802.1ad tags stripped (at most 4 are followed) */
	uint16_t vlan[4];   /* VLAN ids, outermost first */
	const uint8_t *p;
	size_t len;
};

/* One TCP segment after the IP layer. payload points into the packet (or
 * into a reassembled IP datagram); len is clamped to what was captured. */
struct cap_seg {
	uint8_t af;        /* 4 or 6 */
	uint8_t flags;     /* CAP_TH_* */
	uint16_t win;      /* raw window field */
	uint8_t saddr[16]; /* IPv4 uses the first 4 bytes */
	uint8_t daddr[16];
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint32_t len;     /* payload bytes present */
	uint32_t missing; /* payload bytes the IP length promised but caplen cut */
	const uint8_t *payload;
};

#define CAP_TH_FIN 0x01
#define CAP_TH_SYN 0x02
#define CAP_TH_RST 0x04
#define CAP_TH_PSH 0x08
#define CAP_TH_ACK 0x10
#define CAP_TH_URG 0x20

/* Counters for the whole input. All monotonic. */
struct cap_stats {
	uint64_t packets;           /* frames given to cap_tcp_packet() */
	uint64_t bytes;             /* their captured bytes */
	uint64_t badlink;           /* frames of a link type not decoded */
	uint64_t non_ip;            /* link frames that are not IP */
	uint64_t non_tcp;           /* IP packets that are not TCP */
	uint64_t malformed;         /* impossible link/IP/TCP headers */
	uint64_t truncated;         /* headers cut by the snaplen */
	uint64_t truncated_payload; /* TCP payload bytes cut by the snaplen (become gaps) */
	uint64_t fragments;         /* IPv4/IPv6 fragments seen */
	uint64_t frag_reassembled;  /* datagrams rebuilt from fragments */
	uint64_t frag_dropped;      /* fragments dropped: timeout, memory cap, overlap limit */
	uint64_t tcp_segments;      /* TCP segments that reached the reassembler */
	uint64_t tcp_bytes;         /* their payload bytes */
	uint64_t delivered;         /* payload bytes handed to data() */
	uint64_t dup_bytes;    /* retransmitted/overlapping bytes discarded (first copy wins) */
	uint64_t ooo_segments; /* segments that arrived ahead of a hole */
	uint64_t gaps;         /* gap() calls */
	uint64_t gap_bytes;    /* bytes reported lost */
	uint64_t flows;        /* flows opened */
	uint64_t flows_timed_out;
	uint64_t flows_evicted;     /* closed because max_flows was reached */
	uint64_t flows_evicted_mem; /* closed, idlest first, to stay within mem_max */
	uint64_t mem_peak;          /* the most bytes of flow state held at once (cap_tcp_mem()) */
	uint64_t cuts;              /* out-of-order buffers dropped for a memory cap */
	uint64_t ignored_segments;  /* segments of closed flows (late ACKs, FIN retransmits) */
};

/* Why a flow ended. */
enum cap_close_reason {
	CAP_CLOSE_FIN = 0,     /* both sides sent FIN and all data up to them was seen */
	CAP_CLOSE_RST = 1,     /* a RST */
	CAP_CLOSE_TIMEOUT = 2, /* idle longer than idle_timeout_us (capture time) */
	CAP_CLOSE_END = 3,     /* end of the input (cap_tcp_flush) */
	CAP_CLOSE_REUSE = 4,   /* a new SYN on the same 4-tuple started a new flow */
	CAP_CLOSE_EVICT = 5,   /* the flow table was full; the idlest flow went */
};

/* How the client of a flow (ep[0]) was decided. */
enum cap_client {
	CAP_CLIENT_SYN = 1,   /* SYN (or SYN-ACK) seen: ep[0] initiated */
	CAP_CLIENT_GUESS = 2, /* no handshake: ep[0] is the side with the higher
	                       * port (ephemeral ports are high), ties: first sender */
};

/* One endpoint. str is "1.2.3.4:9092" or "[::1]:9092". */
struct cap_endpoint {
	uint8_t addr[16];
	uint16_t port;
	char str[56];
};

/* Private per-direction reassembly state (do not touch from outside). */
struct cap_oseg;
struct cap_half {
	uint32_t next;             /* next expected sequence number */
	uint32_t isn;              /* first sequence number (after SYN) */
	uint32_t fin_seq;          /* sequence number of the FIN */
	uint8_t init;              /* next is valid */
	uint8_t fin;               /* FIN seen */
	uint8_t done;              /* all data up to FIN delivered */
	struct cap_oseg *ooo;      /* buffered segments, sorted, non-overlapping */
	struct cap_oseg *ooo_tail; /* the last of them (appends are O(1)) */
	size_t ooo_bytes;          /* payload bytes in ooo */
	int64_t ooo_since_us;      /* capture time the oldest hole appeared */
	uint32_t acked;            /* the peer acknowledged up to here, past next */
	uint8_t acked_set;         /* acked is pending (waiting ack_grace_us) */
	int64_t acked_us;          /* when acked was first seen */
};

/* Private: the flow table's entry for one connection (its hash chain,
 * idle order and 4-tuple). A connection that has carried no payload (a
 * SYN scan, a refused connection) is only this, about 100 bytes; struct
 * cap_flow, which holds one, is allocated at its first payload. Until then
 * the entry follows the handshake, FINs and RST itself. */
struct cap_fent {
	struct cap_fent *hnext;               /* hash chain */
	struct cap_fent *lru_prev, *lru_next; /* idle order, oldest first */
	int64_t first_us, last_us;
	uint8_t addr[2][16]; /* [0] the client's */
	uint16_t port[2];
	uint32_t hash;
	/* per direction, for an entry without a cap_flow only: */
	uint32_t isn[2], next[2];
	uint32_t pkts[2];
	uint8_t init; /* bit d: isn/next[d] are valid */
	uint8_t fin;  /* bit d: FIN from ep[d] (at next[d]: no payload) */
	uint8_t af, client_how, handshake, closed;
	uint8_t full; /* this is cap_flow.ent */
};

/* One TCP connection. ep[0] is the client (see client_how); direction 0
 * of data()/gap() is ep[0] -> ep[1], direction 1 the reverse; with
 * client_how == CAP_CLIENT_SYN, direction 0 is enum kd_dir KD_C2S.
 * The reassembler creates it at the connection's first payload byte (or
 * first lost byte): flow_open() is never called for a connection that
 * carried no payload. */
struct cap_flow {
	struct cap_endpoint ep[2];
	uint8_t af;         /* 4 or 6 */
	uint8_t client_how; /* enum cap_client */
	uint8_t handshake;  /* SYN seen (1), and SYN-ACK too (2) */
	uint8_t fin[2];     /* FIN seen from ep[i] */
	uint8_t rst;        /* RST seen */
	uint8_t ignore;     /* set by the user: stop delivering data/gaps for this flow */
	uint8_t closed;     /* flow_close() was called; kept only to absorb late packets */
	uint64_t id;        /* 1, 2, ... in order of flow_open */
	int64_t first_us, last_us;
	uint64_t pkts[2];  /* segments sent by ep[i] */
	uint64_t bytes[2]; /* payload bytes delivered from ep[i] */
	uint64_t gap_bytes[2];
	uint64_t dup_bytes[2];
	void *user; /* the user's per-flow state */
	/* Bytes the user's per-flow state holds now. The user keeps it
	 * current; the reassembler reads it after each callback and counts it
	 * against cap_tcp_opts.mem_max. */
	size_t user_mem;

	/* private */
	struct cap_half half[2];
	struct cap_fent ent;
	size_t user_acct; /* user_mem as last counted */
};

/* Callbacks of the reassembler. ctx is the cbs->ctx pointer. Any may be
 * NULL. They must not call cap_tcp_* on the same reassembler, except
 * reading stats. p in data() is only valid during the call. */
struct cap_tcp_cbs {
	void *ctx;
	void (*flow_open)(void *ctx, struct cap_flow *flow);
	void (*data)(void *ctx, struct cap_flow *flow, int dir, const uint8_t *p, size_t len,
	             int64_t ts_us);
	/* nbytes were lost for good before the next data() of this direction. */
	void (*gap)(void *ctx, struct cap_flow *flow, int dir, uint64_t nbytes, int64_t ts_us);
	/* After the last data()/gap() of the flow; flow->user is the user's to free. */
	void (*flow_close)(void *ctx, struct cap_flow *flow, enum cap_close_reason reason);
	/* A notice worth showing the user (a flow cut for memory, ...); flow may be NULL. */
	void (*message)(void *ctx, struct cap_flow *flow, const char *msg);
};

/* Limits; 0 in any field means the default shown. */
struct cap_tcp_opts {
	size_t flow_buf_max;      /* out-of-order bytes buffered per direction (4 MiB) */
	size_t total_buf_max;     /* out-of-order bytes buffered in all flows (256 MiB) */
	uint32_t max_flows;       /* flows tracked at once (1,000,000) */
	int64_t idle_timeout_us;  /* flow idle time before it is closed (600 s) */
	int64_t gap_timeout_us;   /* a hole unfilled this long is lost for good (10 s) */
	int64_t closed_linger_us; /* how long a closed flow absorbs late packets (60 s) */
	size_t frag_mem_max;      /* bytes held by IP fragment reassembly (16 MiB) */
	uint32_t frag_max;        /* datagrams being reassembled at once (4096) */
	int64_t frag_timeout_us;  /* fragments of a datagram wait this long (30 s) */
	/* An ACK past a hole declares it lost this much capture time later, so
	 * that a data segment the capture put just behind its ACK (port
	 * mirroring, several queues) is not lost (2 ms; negative: at once). */
	int64_t ack_grace_us;
	/* Memory budget for all flow state: table entries, flows, their
	 * out-of-order data, IP fragments and the user's per-flow state
	 * (cap_flow.user_mem). Over it, the idlest flows are closed with
	 * CAP_CLOSE_EVICT (counted in flows_evicted_mem) (512 MiB). */
	size_t mem_max;
};

struct cap_source;
struct cap_tcp;

#endif
