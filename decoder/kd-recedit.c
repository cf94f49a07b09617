/* kd-recedit.c: the record rewriter (kd-recedit.h). */
#include <stdlib.h>
#include <string.h>

#include "kd-codec.h"
#include "kd-recedit.h"
#include "kd-records.h"
#include "kd.h"

/* The xerial framing Kafka's Java client writes around snappy. */
static const uint8_t xerial_magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};

static int grow(struct kd_recedit *s, uint32_t n)
{
	if (n <= s->cap)
		return 0;
	uint32_t cap = s->cap ? s->cap : 64;
	while (cap < n)
		cap *= 2;
	struct kd_wrecord *v = realloc(s->recs, (size_t)cap * sizeof(*v));
	if (!v)
		return -1;
	s->recs = v;
	s->cap = cap;
	return 0;
}

/* The record's headers as an array in a. */
static int split_headers(const struct kd_record *rec, struct kd_arena *a, struct kd_rec_edit *ed)
{
	ed->headers = NULL;
	ed->nheaders = 0;
	if (rec->header_count <= 0)
		return KD_OK;
	struct kd_header *h = kd_arena_alloc_raw(a, (size_t)rec->header_count * sizeof(*h));
	if (!h)
		return KD_ENOMEM;
	struct kd_rec_hdr_iter hi;
	kd_rec_headers_init(&hi, rec);
	uint32_t n = 0;
	while (n < (uint32_t)rec->header_count && kd_rec_next_header(&hi, &h[n]) == 1)
		n++;
	ed->headers = h;
	ed->nheaders = n;
	return KD_OK;
}

/* One v2 data batch b (records decoded by it): rewritten into out, or
 * copied when nothing changed. */
static int rw_batch(struct kd_recedit *s, const struct kd_batch *b, kd_rec_edit_fn *fn, void *arg,
                    struct kd_wbuf *out, struct kd_recedit_stats *st, char *err, size_t errlen)
{
	struct kd_rec_iter *it = &s->it;
	struct kd_arena *a = &s->arena;
	struct kd_record rec;
	uint32_t n = 0, changed = 0;
	int rc;
	kd_arena_reset(a);
	if (grow(s, (uint32_t)b->record_count))
		return KD_ENOMEM;
	while ((rc = kd_rec_next_record(it, &rec)) == 1) {
		if (n >= (uint32_t)b->record_count) {
			kd_errf(err, errlen, "more records than recordsCount");
			return KD_EMALFORMED;
		}
		struct kd_rec_edit ed = {.value = rec.value};
		if ((rc = split_headers(&rec, a, &ed)) != KD_OK)
			return rc;
		rc = fn(arg, b, &rec, &ed, a, err, errlen);
		if (rc < 0)
			return rc;
		if (rc > 0)
			changed++;
		s->recs[n++] = (struct kd_wrecord){
		    /* base + delta - base in v2_write: the delta, wrapping included */
		    .timestamp =
		        (int64_t)((uint64_t)b->base_timestamp + (uint64_t)rec.timestamp_delta),
		    .offset_delta = rec.offset_delta,
		    .key = rec.key,
		    .value = ed.value,
		    .headers = ed.headers,
		    .header_count = ed.nheaders,
		};
	}
	if (rc < 0) {
		kd_errf(err, errlen, "%s", it->err);
		return rc;
	}
	if (n != (uint32_t)b->record_count) {
		kd_errf(err, errlen, "%u records where recordsCount says %d", n, b->record_count);
		return KD_EMALFORMED;
	}
	st->batches++;
	if (!changed) {
		kd_w_raw(out, b->raw.p, b->raw.len);
		return out->err ? KD_ENOMEM : KD_OK;
	}
	struct kd_batch_spec spec = {
	    .magic = 2,
	    .codec = b->codec,
	    .timestamp_type = b->timestamp_type,
	    .transactional = b->transactional,
	    .delete_horizon = b->delete_horizon,
	    .explicit_offsets = 1,
	    /* The producer's level is not on the wire: the fastest level of
	     * the codec, so that a proxy in the path is not its bottleneck. */
	    .compression_level = b->codec == KD_CODEC_GZIP || b->codec == KD_CODEC_ZSTD ? 1 : 0,
	    .snappy_raw = b->codec == KD_CODEC_SNAPPY &&
	                  !(b->records_raw.len >= 8 &&
	                    !memcmp(b->records_raw.p, xerial_magic, sizeof(xerial_magic))),
	    .base_offset = b->base_offset,
	    .partition_leader_epoch = b->partition_leader_epoch,
	    .log_append_time = b->max_timestamp,
	    .producer_id = b->producer_id,
	    .producer_epoch = b->producer_epoch,
	    .base_sequence = b->base_sequence,
	    .keep_header = 1,
	    .base_timestamp = b->base_timestamp,
	    .max_timestamp = b->max_timestamp,
	    .last_offset_delta = b->last_offset_delta,
	    .scratch = &s->tmp,
	};
	rc = kd_batch_write(out, &spec, s->recs, n);
	if (rc != KD_OK) {
		kd_errf(err, errlen, "re-encoding a %s batch: %s", kd_codec_name(b->codec),
		        kd_strerror(rc));
		return rc;
	}
	st->rewritten++;
	st->records += changed;
	return KD_OK;
}

void kd_recedit_free(struct kd_recedit *rw)
{
	if (rw->it_ok)
		kd_rec_iter_free(&rw->it);
	free(rw->recs);
	kd_arena_free(&rw->arena);
	kd_wbuf_free(&rw->tmp);
	memset(rw, 0, sizeof(*rw));
}

int kd_rec_rewrite(struct kd_recedit *rw, const uint8_t *p, size_t len,
                   const struct kd_rec_limits *lim, kd_rec_edit_fn *fn, void *arg,
                   struct kd_wbuf *out, struct kd_recedit_stats *st, char *err, size_t errlen)
{
	struct kd_rec_iter *it = &rw->it;
	struct kd_batch *b;
	size_t start = out->len;
	int rc;
	memset(st, 0, sizeof(*st));
	if (rw->it_ok) {
		/* Keep the decompression buffer; take this call's limits. */
		struct kd_wbuf dbuf = it->dbuf;
		kd_rec_iter_init(it, p, len, lim);
		it->dbuf = dbuf;
		it->dbuf.len = 0;
	} else {
		kd_rec_iter_init(it, p, len, lim);
		rw->it_ok = 1;
	}
	while ((rc = kd_rec_next_batch(it, &b)) != 0) {
		if (rc == KD_REC_TRUNCATED) {
			st->tail_dropped = 1;
			rc = KD_OK;
			break;
		}
		if (rc < 0) {
			kd_errf(err, errlen, "batch at byte %zu: %s", b->pos, it->err);
			break;
		}
		if (b->magic != 2) {
			kd_errf(err, errlen,
			        "legacy message format (magic %d) at byte %zu: records without "
			        "headers are not rewritten",
			        b->magic, b->pos);
			rc = KD_EUNSUPPORTED;
			break;
		}
		if (b->control) {
			kd_w_raw(out, b->raw.p, b->raw.len);
			rc = KD_OK;
			continue;
		}
		if (!kd_codec_available(b->codec)) {
			kd_errf(err, errlen, "codec %s is not built into this kwire",
			        kd_codec_name(b->codec));
			rc = KD_EUNSUPPORTED;
			break;
		}
		rc = rw_batch(rw, b, fn, arg, out, st, err, errlen);
		if (rc != KD_OK)
			break;
	}
	if (rc == KD_OK && out->err)
		rc = KD_ENOMEM;
	if (rc != KD_OK) {
		out->len = start;
		out->err = KD_OK;
		if (rc == KD_ENOMEM && err && !err[0])
			kd_errf(err, errlen, "out of memory");
	}
	return rc;
}
