/* kd-records-t.h: types of the record-batch layer (kd-records.h).
 *
 * A RECORDS blob (WIRE-NOTES.md sections 7, 8) is a series of entries:
 * RecordBatch v2 (magic 2) or legacy messages (magic 0/1). The iterator
 * shows each entry as one struct kd_batch and its records as struct
 * kd_record; a legacy wrapper message (compressed) shows as a batch of its
 * inner messages, an uncompressed legacy message as a batch of one.
 *
 * Views (struct kd_view) point into the input blob, or, for a compressed
 * batch, into a buffer the iterator owns and reuses: they stay valid until
 * the next kd_rec_next_batch() or kd_rec_iter_free(). */
#ifndef KD_RECORDS_T_H
#define KD_RECORDS_T_H

#include <stdint.h>

#include "kd-cur.h"
#include "kd-t.h"

/* kd_rec_next_batch() result: the blob ends in a partial entry. Normal at
 * the end of a Fetch partition (WIRE-NOTES.md section 7), not corruption.
 * Positive so that "rc < 0" keeps meaning "error"; the iteration is over. */
#define KD_REC_TRUNCATED 2

/* Compression codec ids: attribute bits 0-2 (WIRE-NOTES.md section 9). */
enum kd_codec {
	KD_CODEC_NONE = 0,
	KD_CODEC_GZIP = 1,
	KD_CODEC_SNAPPY = 2,
	KD_CODEC_LZ4 = 3,
	KD_CODEC_ZSTD = 4,
};

/* Control record types (REC/ControlRecordType.java). */
enum kd_control_type {
	KD_CTRL_NONE = -1, /* not a control batch, or key unreadable */
	KD_CTRL_ABORT = 0,
	KD_CTRL_COMMIT = 1,
	KD_CTRL_LEADER_CHANGE = 2,
	KD_CTRL_SNAPSHOT_HEADER = 3,
	KD_CTRL_SNAPSHOT_FOOTER = 4,
	KD_CTRL_KRAFT_VERSION = 5,
	KD_CTRL_KRAFT_VOTERS = 6,
};

/* kd_rec_limits.flags */
#define KD_REC_IGNORE_CRC 0x1u /* a CRC mismatch is reported in crc_ok, not an error */

#define KD_REC_DEFAULT_MAX_DECOMPRESSED (64u << 20)
#define KD_REC_DEFAULT_MAX_RECORDS (1u << 22)

/* Limits for one batch; 0 means the default. */
struct kd_rec_limits {
	uint64_t max_decompressed; /* bytes of decompressed records per batch */
	uint32_t max_records;      /* records per batch (count field and legacy inner set) */
	uint32_t flags;            /* KD_REC_* */
};

struct kd_batch {
	size_t pos;                     /* byte offset of the entry in the blob */
	int64_t base_offset;            /* v2: baseOffset; legacy: first inner absolute offset */
	int32_t batch_length;           /* v2: batchLength; legacy: message_size */
	int32_t partition_leader_epoch; /* v2 only; -1 for legacy */
	int8_t magic;                   /* 0, 1, 2 */
	uint32_t crc;                   /* as stored */
	uint32_t crc_computed;
	uint8_t crc_ok;
	int16_t attributes;     /* raw; the bits below are split out */
	uint8_t codec;          /* enum kd_codec */
	uint8_t timestamp_type; /* 0 CreateTime, 1 LogAppendTime */
	uint8_t transactional;
	uint8_t control;
	uint8_t delete_horizon; /* attr bit 6: baseTimestamp holds the delete horizon */
	int32_t last_offset_delta;
	int64_t base_timestamp; /* legacy magic 1: the message timestamp; magic 0: -1 */
	int64_t max_timestamp;
	int64_t producer_id;        /* -1 none (and legacy) */
	int16_t producer_epoch;     /* -1 none */
	int32_t base_sequence;      /* -1 none */
	int32_t record_count;       /* v2: the recordsCount field; legacy: inner messages */
	int16_t control_type;       /* enum kd_control_type, from the first record's key */
	int32_t coordinator_epoch;  /* ABORT/COMMIT markers; -1 otherwise */
	struct kd_view raw;         /* the whole entry in the blob (12 + length bytes) */
	struct kd_view records_raw; /* v2: bytes from offset 61; legacy: the value */
	struct kd_view records;     /* records_raw, decompressed when a codec is set */
};

/* One header of a v2 record: key never null (Kafka requires >= 0). */
struct kd_header {
	struct kd_view key;
	struct kd_view value;
};

struct kd_record {
	int64_t offset;    /* absolute */
	int64_t timestamp; /* LogAppendTime rule applied; -1 for magic 0 */
	int32_t sequence;  /* baseSequence + offsetDelta, wrapping; -1 when none */
	int8_t attributes; /* v2: record attributes (unused); legacy: message attributes */
	int8_t magic;
	int32_t offset_delta;    /* v2: offsetDelta; legacy: offset - batch base */
	int64_t timestamp_delta; /* v2 only */
	struct kd_view key;      /* null kept */
	struct kd_view value;    /* null kept */
	int32_t header_count;    /* checked: the headers parse and fill the record exactly */
	struct kd_view headers;  /* raw header bytes, walk with kd_rec_next_header() */
	struct kd_view raw;      /* the whole record (v2: from its length varint) */
};

/* Walks the headers of one record (kd_rec_headers_init). */
struct kd_rec_hdr_iter {
	struct kd_cur cur;
	int32_t left;
};

/* The iterator. All-zero plus kd_rec_iter_init() is the initial state. */
struct kd_rec_iter {
	struct kd_cur cur;           /* over the blob */
	struct kd_rec_limits limits; /* defaults applied */
	struct kd_wbuf dbuf;         /* decompressed records, reused */
	struct kd_batch batch;       /* the current batch */
	struct kd_cur rcur;          /* over the current batch's records */
	int32_t rleft;               /* records left in the current batch */
	int64_t legacy_base;         /* legacy wrapper: absolute offset of inner offset 0 */
	uint8_t in_batch;            /* a batch is open for kd_rec_next_record */
	uint8_t done;                /* end, truncation or an unrecoverable error */
	char err[160];               /* message for the last error, "" if none */
};

/* What kd_rec_peek_batches() counts in a RECORDS blob from the entry
 * headers alone (no CRC check, no decompression). */
struct kd_rec_peek {
	int64_t batches;   /* entries: v2 batches and legacy messages */
	int64_t records;   /* v2 recordsCount (when > 0) plus 1 per legacy message */
	uint64_t bytes;    /* bytes of the complete entries */
	uint64_t tail;     /* bytes of a partial last entry (Fetch), 0 if none */
	uint32_t codecs;   /* 1u << enum kd_codec for every codec seen */
	uint8_t truncated; /* the blob ends in a partial entry */
};

/* ---- writing ---- */

/* What kd_batch_write builds. All-zero is a v0 uncompressed message set;
 * set magic = 2 for a RecordBatch. */
struct kd_batch_spec {
	int8_t magic;  /* 0, 1 or 2 */
	uint8_t codec; /* enum kd_codec */
	uint8_t timestamp_type;
	uint8_t transactional;
	uint8_t control;
	uint8_t delete_horizon;
	uint8_t explicit_offsets; /* use kd_wrecord.offset_delta instead of 0..n-1 */
	uint8_t snappy_raw;       /* snappy: a raw block instead of xerial framing */
	int compression_level;    /* 0: the codec's default */
	int64_t base_offset;
	int32_t partition_leader_epoch;
	int64_t log_append_time; /* timestamp_type 1: maxTimestamp (v2) / wrapper timestamp (v1) */
	int64_t producer_id;     /* v2: set -1 for none */
	int16_t producer_epoch;
	int32_t base_sequence;
	/* v2, re-encoding a batch as it was (kd-recedit.h): baseTimestamp,
	 * maxTimestamp and lastOffsetDelta are written as given, and each
	 * record's timestamp delta is its timestamp - base_timestamp. */
	uint8_t keep_header;
	int64_t base_timestamp, max_timestamp;
	int32_t last_offset_delta;
	/* v2 with a codec: where the records are laid out before they are
	 * compressed (reused from call to call); NULL: a buffer of its own. */
	struct kd_wbuf *scratch;
};

/* One record to write. */
struct kd_wrecord {
	int64_t timestamp;    /* absolute; magic 0 ignores it */
	int32_t offset_delta; /* only with spec.explicit_offsets; increasing */
	struct kd_view key;   /* null kept */
	struct kd_view value;
	const struct kd_header *headers; /* v2 only */
	uint32_t header_count;
};

#endif
