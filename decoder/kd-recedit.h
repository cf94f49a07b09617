/* kd-recedit.h: re-encoding a RECORDS blob with some records changed (the
 * record rewriter of `rewrite:` rules, docs/decoder.md "Record rewriting").
 *
 * Every v2 batch is decoded (decompressed), each of its records is handed
 * to the caller's edit callback, and a batch in which some record changed
 * is written again in its own codec (kd_batch_write) with everything else
 * of its header kept: baseOffset, partitionLeaderEpoch, attributes,
 * lastOffsetDelta, baseTimestamp, maxTimestamp, producerId, producerEpoch,
 * baseSequence and the record count; each record keeps its offset and
 * timestamp deltas and its key. The codec's fastest level is used (gzip
 * and zstd level 1): the producer's level is not on the wire. batchLength and the CRC-32C are
 * computed anew. A batch with no change, and every control batch, is copied byte for byte. A
 * partial last batch (the end of a Fetch partition) is left out.
 *
 * Splicing: when the callback changed only headers (the value is the
 * record's own, not null), a record is written as its new length, its own
 * bytes from attributes to the end of the value copied as one span, and its
 * new headers; the batch header is the original one with batchLength and
 * the CRC-32C patched. For a batch written in Kafka's canonical varints
 * (every client does) this gives the same bytes as the general path, which
 * encodes each field again (tests/unit/test_recedit.c compares them); any
 * other input keeps its own field encodings, still a valid batch.
 * Pure: no I/O. */
#ifndef KD_RECEDIT_H
#define KD_RECEDIT_H

#include "kd-arena.h"
#include "kd-records-t.h"

/* What the callback sets for a record it changes. */
struct kd_rec_edit {
	struct kd_view value;            /* the new value (null kept when null) */
	const struct kd_header *headers; /* the new headers, all of them */
	uint32_t nheaders;
};

/* Called for each record of a v2 data batch. ed starts as the record's
 * own value and headers (headers already split into an array); the
 * callback changes what it wants, in memory that lives until the batch is
 * written (a, reset after each batch, is there for that). Returns 1 when
 * it changed something, 0 when not, or a negative KD_E* when the record
 * cannot be rewritten (with a message in err): then the whole rewrite
 * fails. */
typedef int kd_rec_edit_fn(void *arg, const struct kd_batch *b, const struct kd_record *rec,
                           struct kd_rec_edit *ed, struct kd_arena *a, char *err, size_t errlen);

struct kd_recedit_stats {
	uint32_t batches;     /* v2 data batches seen */
	uint32_t rewritten;   /* of those, written anew */
	uint32_t spliced;     /* of those, spliced (only headers changed) */
	uint32_t records;     /* records changed */
	uint8_t tail_dropped; /* a partial last batch was left out */
};

/* Buffers reused from call to call (the iterator's decompression buffer,
 * the records of a batch, the callback's arena, the uncompressed records
 * of a batch being written): all-zero is valid; kd_recedit_free()
 * releases them. One per thread. */
struct kd_recedit {
	struct kd_rec_iter it;
	uint8_t it_ok;
	uint8_t no_splice; /* always the general path (tests compare the two) */
	struct kd_wrecord *recs;
	struct kd_view *spans; /* splicing: each record's attributes..value bytes */
	uint32_t cap;
	struct kd_arena arena;
	struct kd_wbuf tmp;
};

void kd_recedit_free(struct kd_recedit *rw);

/* Rewrites blob p[0..len) into out (appended), with rw's buffers. Returns KD_OK (out holds
 * the new blob; st->rewritten says whether anything changed), or an error
 * with a message in err and out back at its old length:
 * KD_EUNSUPPORTED for a legacy entry (magic 0/1: no headers to edit; see
 * docs/decoder.md) or a codec not built in, KD_ECRC / KD_EMALFORMED /
 * KD_ECOMPRESS / KD_ELIMIT for a batch that does not decode (lim may be
 * NULL), KD_ENOMEM, or the callback's error. */
int kd_rec_rewrite(struct kd_recedit *rw, const uint8_t *p, size_t len,
                   const struct kd_rec_limits *lim, kd_rec_edit_fn *fn, void *arg,
                   struct kd_wbuf *out, struct kd_recedit_stats *st, char *err, size_t errlen);

#endif
