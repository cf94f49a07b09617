/* kd-recedit.c: the record rewriter (kd-recedit.h). */
#include <stdlib.h>
#include <string.h>

#include "kd-codec.h"
#include "kd-crc.h"
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
	struct kd_view *sp = realloc(s->spans, (size_t)cap * sizeof(*sp));
	if (!sp)
		return -1;
	s->spans = sp;
	s->cap = cap;
	return 0;
}

/* ---- splicing (kd-recedit.h) ---- */

#define V2_HDR 61
#define V2_CRC_START 21

static inline uint32_t zz(int32_t v)
{
	return ((uint32_t)v << 1) ^ (uint32_t)(v >> 31);
}

static inline uint8_t *put_uvar(uint8_t *d, uint32_t v)
{
	while (v >= 0x80) {
		*d++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*d++ = (uint8_t)v;
	return d;
}

static inline uint8_t *put_blob(uint8_t *d, const struct kd_view *v)
{
	if (v->null)
		return put_uvar(d, zz(-1));
	d = put_uvar(d, zz((int32_t)v->len));
	memcpy(d, v->p, v->len);
	return d + v->len;
}

/* The span of record rec that splicing copies: from attributes (after the
 * length varint, however long the writer made it) to the end of the value. */
static struct kd_view splice_span(const struct kd_record *rec)
{
	const uint8_t *p = rec->raw.p;
	while (*p & 0x80) /* the length varint: parsed already, so it ends */
		p++;
	p++;
	return (struct kd_view){p, (uint32_t)(rec->value.p + rec->value.len - p), 0};
}

/* Writes records recs[0..n) (spans[i] with headers recs[i].headers) to w. */
static int splice_records(struct kd_wbuf *w, const struct kd_wrecord *recs,
                          const struct kd_view *spans, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct kd_wrecord *r = &recs[i];
		uint64_t len = (uint64_t)spans[i].len + kd_uvar_size(zz((int32_t)r->header_count));
		if (r->header_count > INT32_MAX)
			return KD_ELIMIT;
		for (uint32_t h = 0; h < r->header_count; h++) {
			const struct kd_header *hd = &r->headers[h];
			len += kd_uvar_size(zz((int32_t)hd->key.len)) + (uint64_t)hd->key.len;
			len += hd->value.null ? 1
			                      : kd_uvar_size(zz((int32_t)hd->value.len)) +
			                            (uint64_t)hd->value.len;
		}
		if (len > INT32_MAX)
			return KD_ELIMIT;
		uint8_t *d = kd_wbuf_reserve(w, (size_t)len + 5);
		if (!d)
			return KD_ENOMEM;
		uint8_t *d0 = d;
		d = put_uvar(d, zz((int32_t)len));
		memcpy(d, spans[i].p, spans[i].len);
		d += spans[i].len;
		d = put_uvar(d, zz((int32_t)r->header_count));
		for (uint32_t h = 0; h < r->header_count; h++) {
			struct kd_view k = r->headers[h].key;
			k.null = 0; /* header keys are never null */
			d = put_blob(d, &k);
			d = put_blob(d, &r->headers[h].value);
		}
		w->len += (size_t)(d - d0);
	}
	return KD_OK;
}

/* Batch b again with its n records spliced (s->recs, s->spans), appended
 * to out in b's codec with opts; header copied, length and CRC anew. */
static int splice_batch(struct kd_recedit *s, const struct kd_batch *b, uint32_t n,
                        const struct kd_compress_opts *opts, struct kd_wbuf *out)
{
	size_t start = out->len;
	int rc;
	kd_w_raw(out, b->raw.p, V2_HDR);
	if (b->codec == KD_CODEC_NONE) {
		rc = splice_records(out, s->recs, s->spans, n);
	} else {
		s->tmp.len = 0;
		rc = splice_records(&s->tmp, s->recs, s->spans, n);
		if (rc == KD_OK)
			rc = kd_compress(b->codec, s->tmp.p, s->tmp.len, opts, out);
		s->tmp.err = KD_OK;
	}
	if (rc == KD_OK && out->err)
		rc = KD_ENOMEM;
	if (rc == KD_OK && out->len - start - 12 > INT32_MAX)
		rc = KD_ELIMIT;
	if (rc != KD_OK) {
		out->len = start;
		out->err = KD_OK;
		return rc;
	}
	kd_w_patch_be(out, start + 8, 4, out->len - start - 12);
	kd_w_patch_be(out, start + 17, 4,
	              kd_crc32c(0, out->p + start + V2_CRC_START, out->len - start - V2_CRC_START));
	return KD_OK;
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
	int splice = !s->no_splice;
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
		/* Spliced when only headers changed (a null value has no span end). */
		if (splice && (rec.value.null || ed.value.p != rec.value.p ||
		               ed.value.len != rec.value.len || ed.value.null))
			splice = 0;
		if (splice)
			s->spans[n] = splice_span(&rec);
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
	if (splice) {
		struct kd_compress_opts opts = {.level = spec.compression_level,
		                                .snappy_raw = spec.snappy_raw};
		rc = splice_batch(s, b, n, &opts, out);
	} else {
		rc = kd_batch_write(out, &spec, s->recs, n);
	}
	if (rc != KD_OK) {
		kd_errf(err, errlen, "re-encoding a %s batch: %s", kd_codec_name(b->codec),
		        kd_strerror(rc));
		return rc;
	}
	st->rewritten++;
	st->spliced += (uint32_t)splice;
	st->records += changed;
	return KD_OK;
}

void kd_recedit_free(struct kd_recedit *rw)
{
	if (rw->it_ok)
		kd_rec_iter_free(&rw->it);
	free(rw->recs);
	free(rw->spans);
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
