/* kd-records.c: RecordBatch v2 and legacy message-set iteration and writing
 * (kd-records.h; layouts in WIRE-NOTES.md sections 7 and 8). */
#include "kd-records.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "kd-codec.h"
#include "kd-crc.h"

/* RecordBatch v2 header (REC/DefaultRecordBatch.java):
 *
 *  0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32
 * 16 magic i8 | 17 crc u32 (CRC-32C of [21, end)) | 21 attributes i16
 * 23 lastOffsetDelta i32 | 27 baseTimestamp i64 | 35 maxTimestamp i64
 * 43 producerId i64 | 51 producerEpoch i16 | 53 baseSequence i32
 * 57 recordsCount i32 | 61 records...                                    */
#define V2_HDR 61
#define V2_CRC_START 21
#define ENTRY_HDR 12     /* offset + size */
#define LEGACY_MIN_V0 14 /* crc, magic, attributes, key len, value len */
#define LEGACY_MIN_V1 22 /* + timestamp */
#define V2_MIN_RECORD 7  /* length, attributes, ts delta, offset delta, key, value, header count */

__attribute__((format(printf, 2, 3))) static void iter_err(struct kd_rec_iter *it, const char *fmt,
                                                           ...)
{
	va_list ap;
	int n = snprintf(it->err, sizeof(it->err), "batch at offset %" PRId64 ": ",
	                 it->batch.base_offset);
	if (n < 0 || (size_t)n >= sizeof(it->err))
		return;
	va_start(ap, fmt);
	vsnprintf(it->err + n, sizeof(it->err) - (size_t)n, fmt, ap);
	va_end(ap);
}

void kd_rec_iter_init(struct kd_rec_iter *it, const uint8_t *p, size_t len,
                      const struct kd_rec_limits *limits)
{
	memset(it, 0, sizeof(*it));
	if (limits)
		it->limits = *limits;
	if (!it->limits.max_decompressed)
		it->limits.max_decompressed = KD_REC_DEFAULT_MAX_DECOMPRESSED;
	if (!it->limits.max_records)
		it->limits.max_records = KD_REC_DEFAULT_MAX_RECORDS;
	kd_cur_init(&it->cur, p, len);
}

void kd_rec_iter_reset(struct kd_rec_iter *it, const uint8_t *p, size_t len)
{
	kd_cur_init(&it->cur, p, len);
	it->in_batch = 0;
	it->done = 0;
	it->rleft = 0;
	it->err[0] = 0;
	it->dbuf.len = 0;
}

void kd_rec_iter_free(struct kd_rec_iter *it)
{
	kd_wbuf_free(&it->dbuf);
	it->in_batch = 0;
	it->done = 1;
}

const char *kd_codec_name(int codec)
{
	static const char *names[] = {"none", "gzip", "snappy", "lz4", "zstd"};
	return codec >= 0 && codec <= 4 ? names[codec] : "unknown";
}

const char *kd_control_type_name(int type)
{
	static const char *names[] = {"ABORT",           "COMMIT",          "LEADER_CHANGE",
	                              "SNAPSHOT_HEADER", "SNAPSHOT_FOOTER", "KRAFT_VERSION",
	                              "KRAFT_VOTERS"};
	return type >= 0 && type <= 6 ? names[type] : "UNKNOWN";
}

/* ---- small readers ---- */

/* VARINT with a one-byte fast path (most record fields fit in one byte). */
static inline int rd_varint(struct kd_cur *cur, int32_t *v)
{
	if (cur->off < cur->len && cur->p[cur->off] < 0x80) {
		uint8_t b = cur->p[cur->off++];
		*v = (int32_t)(b >> 1) ^ -(int32_t)(b & 1);
		return KD_OK;
	}
	return kd_cur_varint(cur, v);
}

static inline int rd_varlong(struct kd_cur *cur, int64_t *v)
{
	if (cur->off < cur->len && cur->p[cur->off] < 0x80) {
		uint8_t b = cur->p[cur->off++];
		*v = (int64_t)(b >> 1) ^ -(int64_t)(b & 1);
		return KD_OK;
	}
	return kd_cur_varlong(cur, v);
}

/* A VARINT-length byte string of a v2 record: -1 is null (when nullable),
 * below -1 malformed, past the slice short. */
static inline int rd_vblob(struct kd_cur *cur, int nullable, struct kd_view *v)
{
	int32_t n;
	int rc = rd_varint(cur, &n);
	if (rc != KD_OK)
		return rc;
	if (n < 0) {
		if (n != -1 || !nullable)
			return KD_EMALFORMED;
		v->p = NULL;
		v->len = 0;
		v->null = 1;
		return KD_OK;
	}
	if (kd_cur_left(cur) < (size_t)n)
		return KD_ESHORT;
	v->p = kd_cur_pos(cur);
	v->len = (uint32_t)n;
	v->null = 0;
	cur->off += (size_t)n;
	return KD_OK;
}

/* ---- v2 records ---- */

static const char *v2_what[] = {"length", "attributes", "timestampDelta", "offsetDelta",
                                "key",    "value",      "headersCount",   "header"};

/* Parses one v2 record at cur into rec (offsets relative, derived fields
 * not set). Returns KD_OK or an error with *what naming the field. */
static int v2_parse(struct kd_cur *cur, struct kd_record *rec, const char **what)
{
	const uint8_t *start = kd_cur_pos(cur);
	struct kd_cur rc;
	int32_t rlen;
	int r;

	*what = v2_what[0];
	if ((r = rd_varint(cur, &rlen)) != KD_OK)
		return r;
	if (rlen < 0)
		return KD_EMALFORMED;
	if (kd_cur_left(cur) < (size_t)rlen)
		return KD_ESHORT;
	kd_cur_init(&rc, kd_cur_pos(cur), (size_t)rlen);
	cur->off += (size_t)rlen;
	rec->raw.p = start;
	rec->raw.len = (uint32_t)(kd_cur_pos(cur) - start);
	rec->raw.null = 0;

	*what = v2_what[1];
	if ((r = kd_cur_i8(&rc, &rec->attributes)) != KD_OK)
		return r;
	*what = v2_what[2];
	if ((r = rd_varlong(&rc, &rec->timestamp_delta)) != KD_OK)
		return r;
	*what = v2_what[3];
	if ((r = rd_varint(&rc, &rec->offset_delta)) != KD_OK)
		return r;
	*what = v2_what[4];
	if ((r = rd_vblob(&rc, 1, &rec->key)) != KD_OK)
		return r;
	*what = v2_what[5];
	if ((r = rd_vblob(&rc, 1, &rec->value)) != KD_OK)
		return r;
	*what = v2_what[6];
	if ((r = rd_varint(&rc, &rec->header_count)) != KD_OK)
		return r;
	/* Each header takes at least 2 bytes: a hostile count cannot loop long. */
	if (rec->header_count < 0 || (size_t)rec->header_count > kd_cur_left(&rc) / 2)
		return KD_EMALFORMED;
	rec->headers.p = kd_cur_pos(&rc);
	rec->headers.null = 0;
	*what = v2_what[7];
	for (int32_t i = 0; i < rec->header_count; i++) {
		struct kd_view k, v;
		if ((r = rd_vblob(&rc, 0, &k)) != KD_OK || (r = rd_vblob(&rc, 1, &v)) != KD_OK)
			return r;
	}
	rec->headers.len = (uint32_t)(kd_cur_pos(&rc) - rec->headers.p);
	*what = v2_what[0];
	if (kd_cur_left(&rc) != 0)
		return KD_EMALFORMED; /* the length says more than the fields hold */
	return KD_OK;
}

int kd_rec_next_header(struct kd_rec_hdr_iter *hi, struct kd_header *hdr)
{
	if (hi->left <= 0)
		return 0;
	int r = rd_vblob(&hi->cur, 0, &hdr->key);
	if (r == KD_OK)
		r = rd_vblob(&hi->cur, 1, &hdr->value);
	if (r != KD_OK) {
		hi->left = 0;
		return r;
	}
	hi->left--;
	return 1;
}

/* baseSequence + offsetDelta, wrapping past INT32_MAX to 0
 * (DefaultRecordBatch.incrementSequence). */
static inline int32_t seq_add(int32_t base, int32_t delta)
{
	if (base < 0)
		return -1;
	int64_t s = (int64_t)base + delta;
	if (s > INT32_MAX)
		s -= (int64_t)INT32_MAX + 1;
	return (int32_t)s;
}

/* ---- legacy messages ---- */

struct legacy_msg {
	int64_t offset;
	uint32_t crc, crc_computed;
	int8_t magic;
	int8_t attributes;
	int64_t timestamp;
	struct kd_view key, value;
};

/* Parses one legacy entry (offset, size, message) filling exactly e[0..total). */
static int legacy_parse(const uint8_t *e, size_t total, struct legacy_msg *m, const char **what)
{
	struct kd_cur cur;
	int32_t size;
	kd_cur_init(&cur, e, total);
	*what = "header";
	if (kd_cur_i64(&cur, &m->offset) || kd_cur_i32(&cur, &size) || kd_cur_u32(&cur, &m->crc) ||
	    kd_cur_i8(&cur, &m->magic) || kd_cur_i8(&cur, &m->attributes))
		return KD_EMALFORMED;
	if (m->magic != 0 && m->magic != 1) {
		*what = "magic";
		return KD_EUNSUPPORTED;
	}
	if (size < (m->magic ? LEGACY_MIN_V1 : LEGACY_MIN_V0) ||
	    (size_t)size + ENTRY_HDR != total) {
		*what = "message_size";
		return KD_EMALFORMED;
	}
	m->crc_computed = kd_crc32(0, e + 16, total - 16);
	m->timestamp = -1;
	if (m->magic == 1 && kd_cur_i64(&cur, &m->timestamp))
		return KD_EMALFORMED;
	*what = "key";
	if (kd_cur_bytes(&cur, 0, 1, &m->key))
		return KD_EMALFORMED;
	*what = "value";
	if (kd_cur_bytes(&cur, 0, 1, &m->value))
		return KD_EMALFORMED;
	if (kd_cur_left(&cur) != 0) {
		*what = "message_size";
		return KD_EMALFORMED;
	}
	return KD_OK;
}

/* Walks a decompressed inner message set: counts messages and finds the
 * first and last inner offsets, checking only the framing. */
static int legacy_scan(struct kd_rec_iter *it, const uint8_t *p, size_t len, int32_t *count,
                       int64_t *first, int64_t *last)
{
	struct kd_cur cur;
	kd_cur_init(&cur, p, len);
	*count = 0;
	while (kd_cur_left(&cur) > 0) {
		int64_t off;
		int32_t size;
		if (kd_cur_i64(&cur, &off) || kd_cur_i32(&cur, &size)) {
			iter_err(it, "inner message set ends in a partial entry");
			return KD_EMALFORMED;
		}
		if (size < LEGACY_MIN_V0 || (size_t)size > kd_cur_left(&cur)) {
			iter_err(it, "inner message %d: size %d does not fit in %zu bytes", *count,
			         size, kd_cur_left(&cur));
			return KD_EMALFORMED;
		}
		cur.off += (size_t)size;
		if (*count == 0)
			*first = off;
		*last = off;
		if ((uint32_t)++ * count > it->limits.max_records) {
			iter_err(it, "more than %u inner messages", it->limits.max_records);
			return KD_ELIMIT;
		}
	}
	if (*count == 0) {
		iter_err(it, "compressed wrapper holds no messages");
		return KD_EMALFORMED;
	}
	return KD_OK;
}

static int legacy_batch(struct kd_rec_iter *it, struct kd_batch *b, const uint8_t *e, size_t total)
{
	struct legacy_msg m;
	const char *what;
	int rc = legacy_parse(e, total, &m, &what);
	if (rc != KD_OK) {
		iter_err(it, "legacy message: bad %s", what);
		return rc;
	}
	b->magic = m.magic;
	b->crc = m.crc;
	b->crc_computed = m.crc_computed;
	b->crc_ok = m.crc == m.crc_computed;
	b->attributes = (uint8_t)m.attributes;
	b->codec = m.attributes & 7;
	b->timestamp_type = m.magic == 1 ? (m.attributes >> 3) & 1 : 0;
	b->base_timestamp = b->max_timestamp = m.timestamp;
	b->records_raw = m.value;
	if (!b->crc_ok && !(it->limits.flags & KD_REC_IGNORE_CRC)) {
		iter_err(it, "CRC-32 mismatch (stored 0x%08x, computed 0x%08x)", b->crc,
		         b->crc_computed);
		return KD_ECRC;
	}
	if (b->codec == KD_CODEC_NONE) {
		b->record_count = 1;
		b->records.p = e;
		b->records.len = (uint32_t)total;
		kd_cur_init(&it->rcur, e, total);
		it->legacy_base = 0; /* the message's own offset is absolute */
		it->rleft = 1;
		it->in_batch = 1;
		return 1;
	}
	if (b->codec == KD_CODEC_ZSTD || b->codec > KD_CODEC_ZSTD) {
		iter_err(it, "codec %d is not allowed in a magic %d message", b->codec, b->magic);
		return KD_EUNSUPPORTED;
	}
	if (m.value.null) {
		iter_err(it, "compressed wrapper message with a null value");
		return KD_EMALFORMED;
	}
	char cerr[96] = "";
	it->dbuf.len = 0;
	rc = kd_decompress(b->codec, m.value.p, m.value.len, it->limits.max_decompressed,
	                   m.magic == 0 ? KD_DECOMP_LZ4_OLD_HC : 0, &it->dbuf, cerr, sizeof(cerr));
	if (rc != KD_OK) {
		iter_err(it, "%s", cerr);
		return rc;
	}
	b->records.p = it->dbuf.p;
	b->records.len = (uint32_t)it->dbuf.len;
	int64_t first = 0, last = 0;
	rc = legacy_scan(it, b->records.p, b->records.len, &b->record_count, &first, &last);
	if (rc != KD_OK)
		return rc;
	/* Magic 1 inner offsets are relative and the wrapper carries the last
	 * one's absolute offset; a wrapper offset of 0 (some librdkafka
	 * producers) means base 0. Magic 0 inner offsets are absolute. */
	if (m.magic == 1 && m.offset != 0)
		it->legacy_base = m.offset - last;
	else
		it->legacy_base = 0;
	b->base_offset = it->legacy_base + first;
	b->last_offset_delta = (int32_t)(last - first);
	kd_cur_init(&it->rcur, b->records.p, b->records.len);
	it->rleft = b->record_count;
	it->in_batch = 1;
	return 1;
}

static int legacy_record(struct kd_rec_iter *it, struct kd_record *rec)
{
	const struct kd_batch *b = &it->batch;
	struct kd_cur *cur = &it->rcur;
	struct legacy_msg m;
	const char *what;
	int32_t idx = b->record_count - it->rleft;
	const uint8_t *e = kd_cur_pos(cur);
	struct kd_cur peek = *cur;
	int64_t off;
	int32_t size;
	/* legacy_scan (or the outer framing) checked this already; cheap to redo. */
	if (kd_cur_i64(&peek, &off) || kd_cur_i32(&peek, &size) || size < 0 ||
	    kd_cur_left(&peek) < (size_t)size) {
		iter_err(it, "inner message %d: bad framing", idx);
		return KD_EMALFORMED;
	}
	size_t total = ENTRY_HDR + (size_t)size;
	cur->off += total;
	int rc = legacy_parse(e, total, &m, &what);
	if (rc != KD_OK) {
		iter_err(it, "inner message %d: bad %s", idx, what);
		return rc;
	}
	if (b->codec != KD_CODEC_NONE) {
		if (m.crc != m.crc_computed && !(it->limits.flags & KD_REC_IGNORE_CRC)) {
			iter_err(
			    it,
			    "inner message %d: CRC-32 mismatch (stored 0x%08x, computed 0x%08x)",
			    idx, m.crc, m.crc_computed);
			return KD_ECRC;
		}
		if (m.attributes & 7) {
			iter_err(it, "inner message %d: nested compression", idx);
			return KD_EMALFORMED;
		}
	}
	rec->offset = it->legacy_base + m.offset;
	rec->timestamp = b->timestamp_type == 1 ? b->max_timestamp : m.timestamp;
	rec->sequence = -1;
	rec->attributes = m.attributes;
	rec->magic = m.magic;
	rec->offset_delta = (int32_t)(rec->offset - b->base_offset);
	rec->timestamp_delta = 0;
	rec->key = m.key;
	rec->value = m.value;
	rec->header_count = 0;
	rec->headers.p = NULL;
	rec->headers.len = 0;
	rec->headers.null = 0;
	rec->raw.p = e;
	rec->raw.len = (uint32_t)total;
	rec->raw.null = 0;
	return 1;
}

/* ---- v2 batches ---- */

static int v2_batch(struct kd_rec_iter *it, struct kd_batch *b, const uint8_t *e, size_t total)
{
	struct kd_cur cur;
	int16_t attr;
	int rc;

	if (total < V2_HDR) {
		iter_err(it, "batchLength %d is shorter than the %d-byte header", b->batch_length,
		         V2_HDR - ENTRY_HDR);
		return KD_EMALFORMED;
	}
	kd_cur_init(&cur, e, total);
	cur.off = 12; /* baseOffset and batchLength were read by the caller */
	/* total >= 61: none of these reads can fail. */
	kd_cur_i32(&cur, &b->partition_leader_epoch);
	kd_cur_i8(&cur, &b->magic);
	kd_cur_u32(&cur, &b->crc);
	kd_cur_i16(&cur, &attr);
	kd_cur_i32(&cur, &b->last_offset_delta);
	kd_cur_i64(&cur, &b->base_timestamp);
	kd_cur_i64(&cur, &b->max_timestamp);
	kd_cur_i64(&cur, &b->producer_id);
	kd_cur_i16(&cur, &b->producer_epoch);
	kd_cur_i32(&cur, &b->base_sequence);
	kd_cur_i32(&cur, &b->record_count);
	b->attributes = attr;
	b->codec = attr & 7;
	b->timestamp_type = (attr >> 3) & 1;
	b->transactional = (attr >> 4) & 1;
	b->control = (attr >> 5) & 1;
	b->delete_horizon = (attr >> 6) & 1;
	b->records_raw.p = e + V2_HDR;
	b->records_raw.len = (uint32_t)(total - V2_HDR);
	b->crc_computed = kd_crc32c(0, e + V2_CRC_START, total - V2_CRC_START);
	b->crc_ok = b->crc == b->crc_computed;
	if (!b->crc_ok && !(it->limits.flags & KD_REC_IGNORE_CRC)) {
		iter_err(it, "CRC-32C mismatch (stored 0x%08x, computed 0x%08x)", b->crc,
		         b->crc_computed);
		return KD_ECRC;
	}
	if (b->record_count < 0) {
		iter_err(it, "negative recordsCount %d", b->record_count);
		return KD_EMALFORMED;
	}
	if ((uint32_t)b->record_count > it->limits.max_records) {
		iter_err(it, "recordsCount %d over the limit of %u", b->record_count,
		         it->limits.max_records);
		return KD_ELIMIT;
	}
	if (b->codec == KD_CODEC_NONE) {
		b->records = b->records_raw;
	} else if (b->codec > KD_CODEC_ZSTD) {
		iter_err(it, "unknown compression codec %d", b->codec);
		return KD_EUNSUPPORTED;
	} else {
		char cerr[96] = "";
		it->dbuf.len = 0;
		rc = kd_decompress(b->codec, b->records_raw.p, b->records_raw.len,
		                   it->limits.max_decompressed, 0, &it->dbuf, cerr, sizeof(cerr));
		if (rc != KD_OK) {
			iter_err(it, "%s", cerr);
			return rc;
		}
		b->records.p = it->dbuf.p;
		b->records.len = (uint32_t)it->dbuf.len;
		b->records.null = 0;
	}
	/* Checked before anything loops over the count. */
	if ((size_t)b->record_count > b->records.len / V2_MIN_RECORD) {
		iter_err(it, "recordsCount %d cannot fit in %u bytes of records", b->record_count,
		         b->records.len);
		return KD_EMALFORMED;
	}
	kd_cur_init(&it->rcur, b->records.p, b->records.len);
	it->rleft = b->record_count;
	it->in_batch = 1;
	if (b->control && b->record_count > 0) {
		/* ControlRecordType: key = INT16 version, INT16 type; ABORT/COMMIT
		 * value = INT16 version, INT32 coordinator_epoch. */
		struct kd_cur peek = it->rcur;
		struct kd_record rec;
		const char *what;
		struct kd_cur kc, vc;
		int16_t version, type;
		if (v2_parse(&peek, &rec, &what) != KD_OK)
			return 1; /* kd_rec_next_record reports it */
		kd_cur_init(&kc, rec.key.p, rec.key.len);
		if (kd_cur_i16(&kc, &version) == KD_OK && kd_cur_i16(&kc, &type) == KD_OK) {
			b->control_type = type;
			kd_cur_init(&vc, rec.value.p, rec.value.len);
			if ((type == KD_CTRL_ABORT || type == KD_CTRL_COMMIT) &&
			    kd_cur_i16(&vc, &version) == KD_OK)
				kd_cur_i32(&vc, &b->coordinator_epoch);
		}
	}
	return 1;
}

static int v2_record(struct kd_rec_iter *it, struct kd_record *rec)
{
	const struct kd_batch *b = &it->batch;
	const char *what;
	int rc = v2_parse(&it->rcur, rec, &what);
	if (rc != KD_OK) {
		int32_t idx = b->record_count - it->rleft;
		if (rc == KD_ESHORT)
			iter_err(it, "record %d of %d: %s runs past the end of the records", idx,
			         b->record_count, what);
		else
			iter_err(it, "record %d of %d: bad %s", idx, b->record_count, what);
		/* Inside a complete batch, running out of bytes is corruption. */
		return rc == KD_ESHORT ? KD_EMALFORMED : rc;
	}
	/* Wrapping sums: hostile bases and deltas must not be undefined. */
	rec->offset = (int64_t)((uint64_t)b->base_offset + (uint64_t)(int64_t)rec->offset_delta);
	rec->timestamp =
	    b->timestamp_type == 1
	        ? b->max_timestamp
	        : (int64_t)((uint64_t)b->base_timestamp + (uint64_t)rec->timestamp_delta);
	rec->sequence = seq_add(b->base_sequence, rec->offset_delta);
	rec->magic = 2;
	return 1;
}

/* ---- the iterator ---- */

int kd_rec_next_batch(struct kd_rec_iter *it, struct kd_batch **batch)
{
	struct kd_batch *b = &it->batch;
	int32_t size;
	int64_t base;

	*batch = b;
	it->in_batch = 0;
	it->err[0] = 0;
	if (it->done)
		return 0;
	size_t left = kd_cur_left(&it->cur);
	if (left == 0) {
		it->done = 1;
		return 0;
	}
	const uint8_t *e = kd_cur_pos(&it->cur);
	memset(b, 0, sizeof(*b));
	b->pos = it->cur.off;
	b->partition_leader_epoch = -1;
	b->producer_id = -1;
	b->producer_epoch = -1;
	b->base_sequence = -1;
	b->control_type = KD_CTRL_NONE;
	b->coordinator_epoch = -1;
	/* Fewer than 12 bytes, or fewer than 12 + size: a partial last entry
	 * (REC/ByteBufferLogInputStream.java). */
	struct kd_cur hdr = it->cur;
	if (kd_cur_i64(&hdr, &base) || kd_cur_i32(&hdr, &size)) {
		it->done = 1;
		return KD_REC_TRUNCATED;
	}
	b->base_offset = base;
	b->batch_length = size;
	if (size < LEGACY_MIN_V0) {
		/* Kafka: "Record size is less than the minimum record overhead".
		 * Nothing after it can be framed. */
		it->done = 1;
		iter_err(it, "entry size %d below the minimum of %d", size, LEGACY_MIN_V0);
		return KD_EMALFORMED;
	}
	if ((size_t)size > left - ENTRY_HDR) {
		it->done = 1;
		return KD_REC_TRUNCATED;
	}
	size_t total = ENTRY_HDR + (size_t)size;
	it->cur.off += total; /* past this entry whatever it holds */
	b->raw.p = e;
	b->raw.len = (uint32_t)total;
	/* The magic is at byte 16 whatever the format (size >= 14 puts it
	 * inside the entry): v2 partitionLeaderEpoch / legacy crc come first. */
	if (kd_cur_skip(&hdr, 4) || kd_cur_i8(&hdr, &b->magic)) {
		it->done = 1;
		return KD_REC_TRUNCATED; /* unreachable: size >= 14 */
	}
	int rc;
	switch (b->magic) {
	case 2:
		rc = v2_batch(it, b, e, total);
		break;
	case 0:
	case 1:
		rc = legacy_batch(it, b, e, total);
		break;
	default:
		iter_err(it, "unknown magic %d", b->magic);
		rc = KD_EUNSUPPORTED;
	}
	if (rc < 0) {
		it->in_batch = 0;
		it->rleft = 0;
	}
	return rc;
}

/* ---- header-only walk ---- */

#define V2_ATTR_OFF 21     /* attributes i16 */
#define V2_COUNT_OFF 57    /* recordsCount i32 */
#define LEGACY_ATTR_OFF 17 /* crc u32 at 12, magic at 16, attributes at 17 */

int kd_rec_peek_batches(const uint8_t *p, size_t len, struct kd_rec_peek *out)
{
	struct kd_cur cur;
	memset(out, 0, sizeof(*out));
	kd_cur_init(&cur, p, len);
	while (kd_cur_left(&cur) > 0) {
		const uint8_t *e = kd_cur_pos(&cur);
		size_t left = kd_cur_left(&cur);
		int64_t base;
		int32_t size;
		if (kd_cur_i64(&cur, &base) || kd_cur_i32(&cur, &size) ||
		    (size >= 0 && (size_t)size > kd_cur_left(&cur))) {
			out->truncated = 1;
			out->tail = left;
			return KD_REC_TRUNCATED;
		}
		if (size < 0)
			return KD_EMALFORMED;
		size_t total = ENTRY_HDR + (size_t)size;
		/* The magic is at byte 16 whatever the format; an entry too short
		 * to hold it counts as one message. */
		int magic = total > 16 ? e[16] : -1;
		if (magic == 2) {
			if (total >= V2_ATTR_OFF + 2)
				out->codecs |= 1u << (kd_load_be(e + V2_ATTR_OFF, 2) & 7);
			if (total >= V2_COUNT_OFF + 4) {
				int32_t n = (int32_t)(uint32_t)kd_load_be(e + V2_COUNT_OFF, 4);
				if (n > 0)
					out->records += n;
			}
		} else {
			if ((magic == 0 || magic == 1) && total > LEGACY_ATTR_OFF)
				out->codecs |= 1u << (e[LEGACY_ATTR_OFF] & 7);
			out->records++;
		}
		out->batches++;
		out->bytes += total;
		cur.off += (size_t)size;
	}
	return KD_OK;
}

int kd_rec_next_record(struct kd_rec_iter *it, struct kd_record *rec)
{
	if (!it->in_batch)
		return 0;
	if (it->rleft == 0) {
		it->in_batch = 0;
		if (kd_cur_left(&it->rcur) != 0) {
			iter_err(it, "%zu bytes left after the last of %d records",
			         kd_cur_left(&it->rcur), it->batch.record_count);
			return KD_EMALFORMED;
		}
		return 0;
	}
	int rc = it->batch.magic == 2 ? v2_record(it, rec) : legacy_record(it, rec);
	if (rc < 0) {
		it->in_batch = 0;
		return rc;
	}
	it->rleft--;
	return 1;
}

/* ---- writing ---- */

static unsigned varint_size(int32_t v)
{
	return kd_uvar_size(((uint32_t)v << 1) ^ (uint32_t)(v >> 31));
}

static unsigned varlong_size(int64_t v)
{
	return kd_uvar_size(((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static uint64_t vblob_size(const struct kd_view *v)
{
	return v->null ? 1 : varint_size((int32_t)v->len) + (uint64_t)v->len;
}

static void w_vblob(struct kd_wbuf *w, const struct kd_view *v)
{
	if (v->null) {
		kd_w_varint(w, -1);
		return;
	}
	kd_w_varint(w, (int32_t)v->len);
	kd_w_raw(w, v->p, v->len);
}

static int32_t rec_delta(const struct kd_batch_spec *spec, const struct kd_wrecord *recs,
                         uint32_t i)
{
	return spec->explicit_offsets ? recs[i].offset_delta : (int32_t)i;
}

static int v2_write_records(struct kd_wbuf *w, const struct kd_batch_spec *spec,
                            const struct kd_wrecord *recs, uint32_t n, int64_t base_ts)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct kd_wrecord *r = &recs[i];
		int32_t od = rec_delta(spec, recs, i);
		int64_t tsd = (int64_t)((uint64_t)r->timestamp - (uint64_t)base_ts); /* wraps */
		uint64_t len = 1 + varlong_size(tsd) + varint_size(od) + vblob_size(&r->key) +
		               vblob_size(&r->value) + varint_size((int32_t)r->header_count);
		if (r->key.len > INT32_MAX || r->value.len > INT32_MAX ||
		    r->header_count > INT32_MAX)
			return KD_ELIMIT;
		for (uint32_t h = 0; h < r->header_count; h++)
			len += vblob_size(&r->headers[h].key) + vblob_size(&r->headers[h].value);
		if (len > INT32_MAX)
			return KD_ELIMIT;
		kd_w_varint(w, (int32_t)len);
		kd_w_i8(w, 0);
		kd_w_varlong(w, tsd);
		kd_w_varint(w, od);
		w_vblob(w, &r->key);
		w_vblob(w, &r->value);
		kd_w_varint(w, (int32_t)r->header_count);
		for (uint32_t h = 0; h < r->header_count; h++) {
			struct kd_view k = r->headers[h].key;
			k.null = 0; /* header keys are never null */
			w_vblob(w, &k);
			w_vblob(w, &r->headers[h].value);
		}
	}
	return w->err ? KD_ENOMEM : KD_OK;
}

static int v2_write(struct kd_wbuf *w, const struct kd_batch_spec *spec,
                    const struct kd_wrecord *recs, uint32_t n)
{
	struct kd_wbuf tmp = {0};
	int64_t base_ts = -1, max_ts = -1;
	size_t start = w->len;
	int rc;

	if (n > INT32_MAX)
		return KD_ELIMIT;
	for (uint32_t i = 0; i < n; i++) {
		if (i == 0)
			base_ts = recs[i].timestamp;
		if (recs[i].timestamp > max_ts || i == 0)
			max_ts = recs[i].timestamp;
	}
	if (spec->timestamp_type == 1)
		max_ts = spec->log_append_time;
	if (spec->keep_header) {
		base_ts = spec->base_timestamp;
		max_ts = spec->max_timestamp;
	}
	int16_t attr = (int16_t)((spec->codec & 7) | (spec->timestamp_type ? 1 << 3 : 0) |
	                         (spec->transactional ? 1 << 4 : 0) | (spec->control ? 1 << 5 : 0) |
	                         (spec->delete_horizon ? 1 << 6 : 0));
	kd_w_i64(w, spec->base_offset);
	kd_w_i32(w, 0); /* batchLength, patched below */
	kd_w_i32(w, spec->partition_leader_epoch);
	kd_w_i8(w, 2);
	kd_w_u32(w, 0); /* crc, patched below */
	kd_w_i16(w, attr);
	kd_w_i32(w, spec->keep_header ? spec->last_offset_delta
	            : n               ? rec_delta(spec, recs, n - 1)
	                              : 0);
	kd_w_i64(w, base_ts);
	kd_w_i64(w, max_ts);
	kd_w_i64(w, spec->producer_id);
	kd_w_i16(w, spec->producer_epoch);
	kd_w_i32(w, spec->base_sequence);
	kd_w_i32(w, (int32_t)n);
	if (spec->codec == KD_CODEC_NONE) {
		rc = v2_write_records(w, spec, recs, n, base_ts);
	} else {
		struct kd_compress_opts opts = {.level = spec->compression_level,
		                                .snappy_raw = spec->snappy_raw};
		struct kd_wbuf *t = spec->scratch ? spec->scratch : &tmp;
		t->len = 0;
		rc = v2_write_records(t, spec, recs, n, base_ts);
		if (rc == KD_OK)
			rc = kd_compress(spec->codec, t->p, t->len, &opts, w);
		t->err = KD_OK;
	}
	if (rc == KD_OK && w->err)
		rc = KD_ENOMEM;
	if (rc == KD_OK && w->len - start - ENTRY_HDR > INT32_MAX)
		rc = KD_ELIMIT;
	if (rc == KD_OK) {
		kd_w_patch_be(w, start + 8, 4, w->len - start - ENTRY_HDR);
		kd_w_patch_be(
		    w, start + 17, 4,
		    kd_crc32c(0, w->p + start + V2_CRC_START, w->len - start - V2_CRC_START));
	}
	kd_wbuf_free(&tmp);
	return rc;
}

/* One legacy entry: offset, size, crc, magic, attributes, [timestamp], key, value. */
static void legacy_write_msg(struct kd_wbuf *w, int8_t magic, int64_t offset, int8_t attr,
                             int64_t ts, const struct kd_view *key, const struct kd_view *value)
{
	size_t start = w->len;
	kd_w_i64(w, offset);
	kd_w_i32(w, 0);
	kd_w_u32(w, 0);
	kd_w_i8(w, magic);
	kd_w_i8(w, attr);
	if (magic == 1)
		kd_w_i64(w, ts);
	kd_w_blob(w, 0, 4, key);
	kd_w_blob(w, 0, 4, value);
	if (w->err)
		return;
	kd_w_patch_be(w, start + 8, 4, w->len - start - ENTRY_HDR);
	kd_w_patch_be(w, start + 12, 4, kd_crc32(0, w->p + start + 16, w->len - start - 16));
}

static int legacy_write(struct kd_wbuf *w, const struct kd_batch_spec *spec,
                        const struct kd_wrecord *recs, uint32_t n)
{
	int8_t magic = spec->magic;
	int8_t tsbit = (int8_t)(magic == 1 && spec->timestamp_type ? 1 << 3 : 0);
	struct kd_wbuf tmp = {0};
	int rc = KD_OK;

	for (uint32_t i = 0; i < n; i++)
		if (recs[i].key.len > INT32_MAX / 2 || recs[i].value.len > INT32_MAX / 2)
			return KD_ELIMIT;
	if (spec->codec == KD_CODEC_NONE) {
		for (uint32_t i = 0; i < n; i++) {
			int64_t ts =
			    spec->timestamp_type ? spec->log_append_time : recs[i].timestamp;
			legacy_write_msg(w, magic, spec->base_offset + rec_delta(spec, recs, i),
			                 tsbit, ts, &recs[i].key, &recs[i].value);
		}
		return w->err ? KD_ENOMEM : KD_OK;
	}
	if (spec->codec == KD_CODEC_ZSTD || spec->codec > KD_CODEC_ZSTD || n == 0)
		return KD_EUNSUPPORTED;
	int64_t max_ts = -1;
	for (uint32_t i = 0; i < n; i++) {
		int32_t od = rec_delta(spec, recs, i);
		/* Magic 1 inner offsets are relative, magic 0 absolute. */
		legacy_write_msg(&tmp, magic, magic == 1 ? od : spec->base_offset + od, 0,
		                 recs[i].timestamp, &recs[i].key, &recs[i].value);
		if (recs[i].timestamp > max_ts)
			max_ts = recs[i].timestamp;
	}
	if (tmp.err) {
		rc = KD_ENOMEM;
		goto out;
	}
	struct kd_wbuf z = {0};
	struct kd_compress_opts opts = {.level = spec->compression_level,
	                                .snappy_raw = spec->snappy_raw,
	                                .lz4_old_hc = magic == 0};
	rc = kd_compress(spec->codec, tmp.p, tmp.len, &opts, &z);
	if (rc == KD_OK) {
		struct kd_view key = {NULL, 0, 1};
		struct kd_view value = {z.p, (uint32_t)z.len, 0};
		if (z.len > INT32_MAX / 2)
			rc = KD_ELIMIT;
		else
			legacy_write_msg(w, magic, spec->base_offset + rec_delta(spec, recs, n - 1),
			                 (int8_t)(spec->codec | tsbit),
			                 spec->timestamp_type ? spec->log_append_time : max_ts,
			                 &key, &value);
		if (rc == KD_OK && w->err)
			rc = KD_ENOMEM;
	}
	kd_wbuf_free(&z);
out:
	kd_wbuf_free(&tmp);
	return rc;
}

int kd_batch_write(struct kd_wbuf *w, const struct kd_batch_spec *spec,
                   const struct kd_wrecord *recs, uint32_t n)
{
	size_t start = w->len;
	int rc;

	if (w->err)
		return KD_ENOMEM;
	if (!kd_codec_available(spec->codec))
		return KD_EUNSUPPORTED;
	if (spec->magic == 2)
		rc = v2_write(w, spec, recs, n);
	else if (spec->magic == 0 || spec->magic == 1)
		rc = legacy_write(w, spec, recs, n);
	else
		rc = KD_EUNSUPPORTED;
	if (rc != KD_OK) {
		w->len = start;
		if (rc == KD_ENOMEM)
			w->err = KD_OK; /* restore usability: the caller sees the code */
	}
	return rc;
}

int kd_batch_write_marker(struct kd_wbuf *w, const struct kd_batch_spec *spec, int type,
                          int32_t coordinator_epoch, int64_t timestamp)
{
	struct kd_batch_spec s = *spec;
	uint8_t key[4] = {0, 0, (uint8_t)((unsigned)type >> 8), (uint8_t)type};
	uint8_t value[6] = {0,
	                    0,
	                    (uint8_t)((uint32_t)coordinator_epoch >> 24),
	                    (uint8_t)((uint32_t)coordinator_epoch >> 16),
	                    (uint8_t)((uint32_t)coordinator_epoch >> 8),
	                    (uint8_t)coordinator_epoch};
	struct kd_wrecord rec = {.timestamp = timestamp,
	                         .key = {key, sizeof(key), 0},
	                         .value = {value, sizeof(value), 0}};
	s.magic = 2;
	s.codec = KD_CODEC_NONE;
	s.control = 1;
	s.transactional = 1;
	s.explicit_offsets = 0;
	return kd_batch_write(w, &s, &rec, 1);
}
