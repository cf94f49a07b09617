/* kd-records.h: iterate the batches and records of a RECORDS blob, and
 * build batches (types in kd-records-t.h).
 *
 *	struct kd_rec_iter it;
 *	struct kd_batch *b;  struct kd_record rec;
 *	kd_rec_iter_init(&it, p, len, NULL);
 *	while ((rc = kd_rec_next_batch(&it, &b)) != 0) {
 *		if (rc == KD_REC_TRUNCATED) break;      // partial last batch: normal
 *		if (rc < 0) { report(it.err); continue; } // bad batch, the next may be fine
 *		while ((rc = kd_rec_next_record(&it, &rec)) == 1) use(&rec);
 *		if (rc < 0) report(it.err);
 *	}
 *	kd_rec_iter_free(&it);
 *
 * Nothing is copied unless a batch must be decompressed (then into it.dbuf,
 * reused from batch to batch). */
#ifndef KD_RECORDS_H
#define KD_RECORDS_H

#include "kd-records-t.h"

/* Starts iterating blob p[0..len). limits may be NULL (defaults). The blob
 * must outlive the iterator's views. Overwrites *it whole (does not free):
 * call kd_rec_iter_free() when done. Never fails. */
void kd_rec_iter_init(struct kd_rec_iter *it, const uint8_t *p, size_t len,
                      const struct kd_rec_limits *limits);

/* The next batch into *batch (points into the iterator). Returns 1 for a
 * batch, 0 at the end, KD_REC_TRUNCATED when the blob ends in a partial
 * entry (then 0 on later calls), or a negative KD_E* for a bad batch, with a
 * message in it->err. After an error in a batch whose length was sane (CRC,
 * codec, limits, bad inner set) the iterator is already past it and the
 * next call goes on with the following batch; when the framing itself is
 * broken later calls return 0. When an error is returned, *batch is still
 * set with the header fields that could be read. */
int kd_rec_next_batch(struct kd_rec_iter *it, struct kd_batch **batch);

/* The next record of the current batch. Returns 1, 0 when the batch is done
 * (all record_count records read and nothing left over), or a negative
 * KD_E* (message in it->err) after which this batch yields no more records. */
int kd_rec_next_record(struct kd_rec_iter *it, struct kd_record *rec);

/* Starts over on another blob keeping the limits and the decompression
 * buffer (cheap: for one iterator reused across partitions). The iterator
 * must have been initialised before. */
void kd_rec_iter_reset(struct kd_rec_iter *it, const uint8_t *p, size_t len);

/* Releases the decompression buffer; the iterator may be re-initialised. */
void kd_rec_iter_free(struct kd_rec_iter *it);

/* Header walk over a record returned by kd_rec_next_record (already
 * validated there): 1 and *hdr, or 0 when done. */
static inline void kd_rec_headers_init(struct kd_rec_hdr_iter *hi, const struct kd_record *rec)
{
	kd_cur_init(&hi->cur, rec->headers.p, rec->headers.len);
	hi->left = rec->header_count;
}
int kd_rec_next_header(struct kd_rec_hdr_iter *hi, struct kd_header *hdr);

/* Counts the entries and records of blob p[0..len) from their headers
 * only: no CRC check, no decompression, nothing allocated (the one-line
 * summary's view of a RECORDS field). Per entry (INT64 offset, INT32 size):
 * a v2 batch (magic 2 at entry byte 16) adds its recordsCount when
 * positive; any other entry, a legacy message (a compressed wrapper too:
 * counting its inner messages would mean decompressing) or an unknown
 * magic, adds one record. Content is not judged: kd_rec_next_batch() does
 * that. Returns KD_OK when the walk reached the end, KD_REC_TRUNCATED when
 * the blob ends in a partial entry (normal at the end of a Fetch partition;
 * out->tail holds its size), or KD_EMALFORMED at a negative size (the walk
 * stops there). *out holds the counts so far in every case. */
int kd_rec_peek_batches(const uint8_t *p, size_t len, struct kd_rec_peek *out);

/* Kafka's name for a codec ("gzip") or a control type ("COMMIT"); never NULL. */
const char *kd_codec_name(int codec);
const char *kd_control_type_name(int type);

/* Appends one entry built from recs[0..n) to w: a v2 RecordBatch with a
 * correct CRC-32C (magic 2), or a legacy message set (magic 0/1: n
 * messages, or one wrapper message when a codec is set). Returns KD_OK, or
 * KD_EUNSUPPORTED (codec not built in, zstd below magic 2), KD_ENOMEM,
 * KD_ELIMIT (n or a size beyond INT32 fields); w is unchanged on error. */
int kd_batch_write(struct kd_wbuf *w, const struct kd_batch_spec *spec,
                   const struct kd_wrecord *recs, uint32_t n);

/* Appends a v2 control batch holding one ABORT (type 0) or COMMIT (1)
 * marker with this coordinator epoch; spec supplies offsets, producer id
 * and epoch (control and transactional are forced on). */
int kd_batch_write_marker(struct kd_wbuf *w, const struct kd_batch_spec *spec, int type,
                          int32_t coordinator_epoch, int64_t timestamp);

#endif
