/* kd-stream-t.h: types of the stream decoder (kd-stream.h), one per Kafka
 * TCP connection. */
#ifndef KD_STREAM_T_H
#define KD_STREAM_T_H

#include "kd-t.h"
#include "kd-hdr.h"

#define KD_STREAM_MAX_FRAME_DEFAULT (100u * 1024 * 1024)
#define KD_STREAM_MAX_INFLIGHT_DEFAULT 4096u
/* Bytes a resyncing direction looks ahead for a second plausible frame. */
#define KD_STREAM_RESYNC_WINDOW (128u * 1024)

enum kd_ev_type {
	KD_EV_REQUEST = 1,
	KD_EV_RESPONSE,
	KD_EV_OPAQUE, /* a SASL v0 raw token frame (no Kafka header) */
	KD_EV_ERROR,  /* garbage: the direction is broken from now on */
	KD_EV_SKIP,   /* bytes skipped while resyncing */
	KD_EV_POPPED, /* a request left the in-flight FIFO without a response (ev.req): see
	               * "Who owns a request's user value" in kd-stream.h */
};

enum kd_ev_flag {
	KD_EVF_BODY = 1 << 0,        /* ev.frame / ev.body hold the frame's bytes */
	KD_EVF_NO_RESPONSE = 1 << 1, /* request gets no response (Produce Acks=0) */
	KD_EVF_UNPAIRED = 1 << 2,    /* response whose correlation id is not in flight */
	KD_EVF_CID_SKIP = 1 << 3,    /* response matched a later in-flight request; the older
	                              * ones were popped unanswered (ev.popped) */
	KD_EVF_UNKNOWN_API = 1 << 4, /* api key (or version) not in the tables */
	KD_EVF_HDR_GUESS = 1 << 5,   /* header version assumed (unknown key, unpaired response) */
	KD_EVF_OVERFLOW = 1 << 6,    /* in-flight FIFO was full: its oldest entry was dropped */
	KD_EVF_GAP = 1 << 7,         /* the frame lost bytes to a capture gap: no body */
	KD_EVF_SASL_END = 1 << 8,    /* this frame ended the SASL v0 exchange: the client's
	                              * next frame is a Kafka request */
	KD_EVF_LOCAL = 1 << 9,       /* set by the caller before commit: a request the caller
	                              * answers itself (the peer never sees it). It keeps its
	                              * place in the FIFO, so that its answer goes out in
	                              * order, but no response is paired with it
	                              * (kd_stream_pop_local; rules: kwire's own answers).
	                              * KD_EV_POPPED: the entry was such a request */
};

/* Whether a stream may meet SASL v0 opaque token frames. */
enum kd_sasl_mode {
	KD_SASL_AUTO = 0,   /* opaque after a successful SaslHandshake v0 (the default) */
	KD_SASL_OFF = 1,    /* never: every frame has a Kafka header */
	KD_SASL_LEGACY = 2, /* AUTO, and the connection starts with raw tokens (Kafka 0.9
	                     * GSSAPI clients send no SaslHandshake) */
};

/* What a stream remembers of an in-flight request, handed back with its
 * response. client_id points into storage owned by the stream that lives
 * until kd_stream_reset()/kd_stream_free(). */
struct kd_req_info {
	int16_t api_key;
	int16_t api_version;
	int32_t correlation_id;
	struct kd_view client_id;
	uint64_t ts_us; /* timestamp of the request's first byte */
	uint64_t user;  /* kd_frame_info.user of the request, for the caller */
	uint8_t opaque; /* a SASL token, not a Kafka request */
	uint8_t local;  /* committed with KD_EVF_LOCAL: the caller answers it */
	uint8_t hdr_version;
	uint8_t sasl_mech; /* SaslHandshake: the mechanism named (enum kd_sasl_mech) */
};

/* One frame as kd_stream_frame_begin() parsed it. Views point into the
 * bytes given to begin, except req_hdr.client_id which is the stream's
 * stable copy. */
struct kd_frame_info {
	uint8_t dir;    /* enum kd_dir */
	uint8_t kind;   /* KD_EV_REQUEST, KD_EV_RESPONSE or KD_EV_OPAQUE */
	uint16_t flags; /* KD_EVF_* known at begin (NO_RESPONSE, UNPAIRED, CID_SKIP...); commit
	                   updates them */
	uint32_t size;  /* the INT32 size: bytes after the 4-byte prefix */
	uint32_t need;  /* bytes from the frame start begin looked at (or, on
	                 * KD_NEED_MORE, needs at least) */
	struct kd_req_hdr req_hdr;   /* KD_EV_REQUEST */
	struct kd_resp_hdr resp_hdr; /* KD_EV_RESPONSE */
	struct kd_req_info req;      /* KD_EV_RESPONSE / S2C opaque: the matched request */
	int32_t match;               /* FIFO index of the matched request, -1: none */
	int16_t acks;                /* Produce requests: Acks, or -2 when unknown */
	int16_t error_code;          /* SaslHandshake responses: ErrorCode, else 0 */
	uint8_t sasl_mech;           /* SaslHandshake requests: the mechanism named; opaque
	                              * frames: the exchange's (enum kd_sasl_mech, kd-sasl.h) */
	uint8_t sasl_step;           /* S2C opaque frames: what the token does to the
	                              * exchange (kd-stream.c); for commit only */
	uint64_t ts_us;              /* first byte's timestamp (0: use commit's) */
	uint64_t user;               /* caller's value, stored with a request in the FIFO */
};

struct kd_event {
	uint8_t type;       /* enum kd_ev_type */
	uint8_t dir;        /* enum kd_dir */
	uint16_t flags;     /* KD_EVF_* */
	int err;            /* KD_E* for KD_EV_ERROR (and mismatch details), else 0 */
	const char *msg;    /* KD_EV_ERROR: human-readable reason, valid during the callback */
	uint64_t ts_us;     /* timestamp of the frame's first byte */
	uint64_t ts_end_us; /* timestamp of its last byte */
	uint64_t offset;    /* direction stream offset of the frame (or skipped bytes) */
	uint32_t frame_len; /* the INT32 size (excluding the 4-byte prefix) */
	struct kd_req_hdr req_hdr;   /* KD_EV_REQUEST */
	struct kd_resp_hdr resp_hdr; /* KD_EV_RESPONSE */
	/* KD_EV_RESPONSE and S2C KD_EV_OPAQUE: the request it answers (valid
	 * unless KD_EVF_UNPAIRED), its timestamp, and the latency from the
	 * request's first byte to the response's last byte. KD_EV_POPPED: the
	 * request that left the FIFO (flags: KD_EVF_LOCAL, KD_EVF_CID_SKIP,
	 * KD_EVF_OVERFLOW or KD_EVF_SASL_END say why; none: kd_stream_drain). */
	struct kd_req_info req;
	int64_t latency_us;
	uint32_t popped; /* KD_EVF_CID_SKIP: requests popped unanswered (each had its
	                  * KD_EV_POPPED event first) */
	int16_t acks;    /* Produce requests: Acks, -2 unknown */
	/* SaslHandshake requests: the mechanism named; KD_EV_OPAQUE: the
	 * mechanism of the SASL v0 exchange (enum kd_sasl_mech, kd-sasl.h). */
	uint8_t sasl_mech;
	/* With KD_EVF_BODY: frame is the whole frame from its INT32 size on,
	 * body the bytes after the header (the whole payload for opaque
	 * frames). Contiguous, valid during the callback only. */
	struct kd_view frame;
	struct kd_view body;
	/* KD_EV_SKIP: received bytes discarded while resyncing, and bytes the
	 * capture lost outside any frame whose header was known (a gap inside
	 * a known frame is charged to that frame, KD_EVF_GAP). Frames found by
	 * resync carry the timestamp of the chunk that proved their start. */
	uint64_t skipped;
	uint64_t lost;
};

typedef void kd_stream_event_fn(void *arg, const struct kd_event *ev);
/* Decides from a frame's header whether its body is wanted (nonzero). */
typedef int kd_stream_want_fn(void *arg, const struct kd_frame_info *fi);

/* All-zero is the default configuration (with on_event set). */
struct kd_stream_cfg {
	uint32_t max_frame;           /* 0: KD_STREAM_MAX_FRAME_DEFAULT */
	uint32_t max_inflight;        /* 0: KD_STREAM_MAX_INFLIGHT_DEFAULT */
	uint8_t collect_bodies;       /* deliver frame bytes in events */
	uint8_t midstream;            /* may start mid-connection: resync at the start */
	uint8_t sasl;                 /* enum kd_sasl_mode */
	kd_stream_want_fn *want_body; /* NULL: every body when collect_bodies */
	kd_stream_event_fn *on_event;
	void *arg; /* passed to both callbacks */
};

struct kd_stream_stats {
	uint64_t frames[2]; /* frames delivered, per direction */
	uint64_t bytes[2];  /* bytes fed (and lost) per direction */
	uint64_t requests;
	uint64_t responses;
	uint64_t opaque;
	uint64_t errors;
	uint64_t skipped[2]; /* received bytes discarded while resyncing */
	uint64_t lost[2];    /* bytes reported lost by kd_stream_gap */
	uint64_t gaps[2];
	uint64_t unpaired;    /* responses with no in-flight request */
	uint64_t unanswered;  /* requests popped without a response */
	uint64_t overflow;    /* in-flight entries dropped because the FIFO was full */
	uint64_t no_response; /* Produce Acks=0 requests */
	uint64_t buffered;    /* bytes copied into the stream's own buffers */
	uint32_t inflight;    /* requests in flight now */
};

struct kd_stream; /* opaque; kd-stream.c */

#endif
