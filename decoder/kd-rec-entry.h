/* kd-rec-entry.h: the entries of a RECORDS blob read from their headers
 * alone, for whoever must count records without reading them (the mirror
 * counts what it drops, docs/rules.md "mirror"): no CRC check, no
 * decompression, nothing allocated. kd_rec_next_batch() (kd-records.h) is
 * the reader that checks a batch.
 *
 *	struct kd_cur cur;  struct kd_rec_entry e;
 *	kd_cur_init(&cur, p, len);
 *	while (kd_rec_entry_next(&cur, &e) == 1)
 *		count(e.records, e.transactional ? e.producer_id : -1);
 *
 * Entry layout (INT64 baseOffset, INT32 size, then size bytes); a v2
 * RecordBatch (magic 2 at entry byte 16) is read up to its recordsCount:
 *
 *   0 baseOffset i64 | 8 batchLength i32 | 12 leaderEpoch i32 | 16 magic i8
 *   17 crc u32 | 21 attributes i16 | 23 lastOffsetDelta i32
 *   27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64
 *   51 producerEpoch i16 | 53 baseSequence i32 | 57 recordsCount i32 | 61 */
#ifndef KD_REC_ENTRY_H
#define KD_REC_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include "kd-cur.h"
#include "kd-t.h"

struct kd_rec_entry {
	int8_t magic;          /* 2, 0 or 1, another value, or -1 (too short to hold one) */
	uint8_t transactional; /* v2 attributes bit 4 */
	uint8_t control;       /* v2 attributes bit 5 */
	int16_t producer_epoch;
	int64_t producer_id; /* -1 unless a v2 batch says otherwise */
	/* Records: a v2 batch's recordsCount when positive (else 0); 1 for any
	 * other entry (a legacy wrapper message counts one: counting its inner
	 * messages would mean decompressing), as kd_rec_peek_batches counts. */
	int64_t records;
	struct kd_view raw; /* the whole entry */
};

/* The entry at cur: 1 with *e and cur past it; 0 at the end of the blob or
 * at a partial last entry; KD_EMALFORMED at a negative size. On 0 or an
 * error cur is left where it was. */
int kd_rec_entry_next(struct kd_cur *cur, struct kd_rec_entry *e);

#endif
