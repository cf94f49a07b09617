/* kd-cur.h: the one bounds-checked cursor every wire read goes through, and
 * the matching writer.
 *
 * Reader: every kd_cur_* returns KD_OK, KD_ESHORT (not enough bytes left) or
 * KD_EMALFORMED (an impossible encoding: an over-long varint, a negative
 * length that is not -1). A failed read leaves the cursor where it was.
 * Multi-byte integers are big-endian (WIRE-NOTES.md section 4).
 *
 * Writer: struct kd_wbuf grows on the heap. Errors are sticky: after an
 * allocation failure every later write is a no-op and w->err is KD_ENOMEM,
 * so a caller checks once at the end. kd_wbuf_free() releases the memory. */
#ifndef KD_CUR_H
#define KD_CUR_H

#include <stdlib.h>
#include <string.h>

#include "kd-t.h"

struct kd_cur {
	const uint8_t *p; /* start of the slice */
	size_t len;       /* slice length */
	size_t off;       /* read position, 0..len */
};

static inline void kd_cur_init(struct kd_cur *cur, const uint8_t *p, size_t len)
{
	cur->p = p;
	cur->len = len;
	cur->off = 0;
}

static inline size_t kd_cur_left(const struct kd_cur *cur)
{
	return cur->len - cur->off;
}

static inline const uint8_t *kd_cur_pos(const struct kd_cur *cur)
{
	return cur->p + cur->off;
}

static inline int kd_cur_skip(struct kd_cur *cur, size_t n)
{
	if (kd_cur_left(cur) < n)
		return KD_ESHORT;
	cur->off += n;
	return KD_OK;
}

static inline uint64_t kd_load_be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

static inline int kd_cur_be(struct kd_cur *cur, unsigned n, uint64_t *v)
{
	if (kd_cur_left(cur) < n)
		return KD_ESHORT;
	*v = kd_load_be(cur->p + cur->off, n);
	cur->off += n;
	return KD_OK;
}

static inline int kd_cur_i8(struct kd_cur *cur, int8_t *v)
{
	uint64_t u;
	int rc = kd_cur_be(cur, 1, &u);
	if (rc == KD_OK)
		*v = (int8_t)(uint8_t)u;
	return rc;
}

static inline int kd_cur_bool(struct kd_cur *cur, uint8_t *v)
{
	uint64_t u;
	int rc = kd_cur_be(cur, 1, &u);
	if (rc == KD_OK)
		*v = (uint8_t)u; /* any nonzero is true; the raw byte is kept */
	return rc;
}

static inline int kd_cur_i16(struct kd_cur *cur, int16_t *v)
{
	uint64_t u;
	int rc = kd_cur_be(cur, 2, &u);
	if (rc == KD_OK)
		*v = (int16_t)(uint16_t)u;
	return rc;
}

static inline int kd_cur_u16(struct kd_cur *cur, uint16_t *v)
{
	uint64_t u;
	int rc = kd_cur_be(cur, 2, &u);
	if (rc == KD_OK)
		*v = (uint16_t)u;
	return rc;
}

static inline int kd_cur_i32(struct kd_cur *cur, int32_t *v)
{
	uint64_t u;
	int rc = kd_cur_be(cur, 4, &u);
	if (rc == KD_OK)
		*v = (int32_t)(uint32_t)u;
	return rc;
}

static inline int kd_cur_u32(struct kd_cur *cur, uint32_t *v)
{
	uint64_t u;
	int rc = kd_cur_be(cur, 4, &u);
	if (rc == KD_OK)
		*v = (uint32_t)u;
	return rc;
}

static inline int kd_cur_i64(struct kd_cur *cur, int64_t *v)
{
	uint64_t u;
	int rc = kd_cur_be(cur, 8, &u);
	if (rc == KD_OK)
		*v = (int64_t)u;
	return rc;
}

static inline int kd_cur_f64(struct kd_cur *cur, double *v)
{
	uint64_t u;
	int rc = kd_cur_be(cur, 8, &u);
	if (rc == KD_OK)
		memcpy(v, &u, sizeof(*v));
	return rc;
}

static inline int kd_cur_uuid(struct kd_cur *cur, uint8_t v[16])
{
	if (kd_cur_left(cur) < 16)
		return KD_ESHORT;
	memcpy(v, cur->p + cur->off, 16);
	cur->off += 16;
	return KD_OK;
}

/* Unsigned LEB128-style varint of at most maxbytes bytes (5 for 32-bit
 * values, 10 for 64-bit). Bits past 64 or a 10th byte above 1 are
 * malformed. */
static inline int kd_cur_uvar(struct kd_cur *cur, unsigned maxbytes, uint64_t *v)
{
	uint64_t r = 0;
	size_t left = kd_cur_left(cur);
	const uint8_t *p = cur->p + cur->off;
	for (unsigned i = 0; i < maxbytes; i++) {
		if (i >= left)
			return KD_ESHORT;
		uint8_t b = p[i];
		if (i == 9 && (b & 0xfe))
			return KD_EMALFORMED;
		r |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			cur->off += i + 1;
			*v = r;
			return KD_OK;
		}
	}
	return KD_EMALFORMED;
}

/* UNSIGNED_VARINT (32-bit, 5 bytes at most; the 5th byte carries 4 bits). */
static inline int kd_cur_uvarint(struct kd_cur *cur, uint32_t *v)
{
	size_t off = cur->off;
	uint64_t u;
	int rc = kd_cur_uvar(cur, 5, &u);
	if (rc != KD_OK)
		return rc;
	if (u > UINT32_MAX) {
		cur->off = off;
		return KD_EMALFORMED;
	}
	*v = (uint32_t)u;
	return KD_OK;
}

/* VARINT: zig-zag 32-bit. */
static inline int kd_cur_varint(struct kd_cur *cur, int32_t *v)
{
	uint32_t u;
	int rc = kd_cur_uvarint(cur, &u);
	if (rc == KD_OK)
		*v = (int32_t)((u >> 1) ^ (~(u & 1) + 1));
	return rc;
}

/* VARLONG: zig-zag 64-bit. */
static inline int kd_cur_varlong(struct kd_cur *cur, int64_t *v)
{
	uint64_t u;
	int rc = kd_cur_uvar(cur, 10, &u);
	if (rc == KD_OK)
		*v = (int64_t)((u >> 1) ^ (~(u & 1) + 1));
	return rc;
}

/* A length prefix: INT16 (strings), INT32 (bytes, arrays) or, when compact,
 * UNSIGNED_VARINT N+1. *n is -1 for null. Negative lengths other than -1
 * are malformed. Does not check that n bytes follow. */
static inline int kd_cur_len(struct kd_cur *cur, int compact, unsigned width, int32_t *n)
{
	size_t off = cur->off;
	int rc;
	if (compact) {
		uint32_t u;
		rc = kd_cur_uvarint(cur, &u);
		if (rc != KD_OK)
			return rc;
		if (u > (uint32_t)INT32_MAX) {
			cur->off = off;
			return KD_EMALFORMED;
		}
		*n = (int32_t)u - 1;
		return KD_OK;
	}
	if (width == 2) {
		int16_t s = 0;
		rc = kd_cur_i16(cur, &s);
		*n = s;
	} else {
		rc = kd_cur_i32(cur, n);
	}
	if (rc == KD_OK && *n < -1) {
		cur->off = off;
		return KD_EMALFORMED;
	}
	return rc;
}

/* STRING / NULLABLE_STRING / COMPACT_(NULLABLE_)STRING (width 2) and the
 * BYTES forms (width 4) into a view. Null is accepted only when nullable. */
static inline int kd_cur_blob(struct kd_cur *cur, int compact, unsigned width, int nullable,
			      struct kd_view *out)
{
	size_t off = cur->off;
	int32_t n;
	int rc = kd_cur_len(cur, compact, width, &n);
	if (rc != KD_OK)
		return rc;
	if (n < 0) {
		if (!nullable) {
			cur->off = off;
			return KD_EMALFORMED;
		}
		out->p = NULL;
		out->len = 0;
		out->null = 1;
		return KD_OK;
	}
	if (kd_cur_left(cur) < (size_t)n) {
		cur->off = off;
		return KD_ESHORT;
	}
	out->p = cur->p + cur->off;
	out->len = (uint32_t)n;
	out->null = 0;
	cur->off += (size_t)n;
	return KD_OK;
}

static inline int kd_cur_str(struct kd_cur *cur, int compact, int nullable, struct kd_view *out)
{
	return kd_cur_blob(cur, compact, 2, nullable, out);
}

static inline int kd_cur_bytes(struct kd_cur *cur, int compact, int nullable, struct kd_view *out)
{
	return kd_cur_blob(cur, compact, 4, nullable, out);
}

/* ARRAY / COMPACT_ARRAY count; -1 is null. A count that could not fit in
 * the bytes left, given each element takes at least min_elem bytes, is
 * malformed, so a hostile count never drives a long loop or allocation. */
static inline int kd_cur_array(struct kd_cur *cur, int compact, size_t min_elem, int32_t *count)
{
	size_t off = cur->off;
	int rc = kd_cur_len(cur, compact, 4, count);
	if (rc != KD_OK)
		return rc;
	if (*count > 0 && min_elem > 0 && (size_t)*count > kd_cur_left(cur) / min_elem) {
		cur->off = off;
		return KD_EMALFORMED;
	}
	return KD_OK;
}

/* ---- writer ---- */

struct kd_wbuf {
	uint8_t *p;
	size_t len;
	size_t cap;
	int err; /* KD_OK or KD_ENOMEM, sticky */
};

/* Makes room for n more bytes; returns a pointer to them or NULL (and sets
 * w->err) on allocation failure. */
uint8_t *kd_wbuf_reserve(struct kd_wbuf *w, size_t n);
void kd_wbuf_free(struct kd_wbuf *w);

static inline void kd_w_raw(struct kd_wbuf *w, const void *p, size_t n)
{
	uint8_t *d = kd_wbuf_reserve(w, n);
	if (d && n) {
		memcpy(d, p, n);
		w->len += n;
	}
}

static inline void kd_w_be(struct kd_wbuf *w, unsigned n, uint64_t v)
{
	uint8_t *d = kd_wbuf_reserve(w, n);
	if (!d)
		return;
	for (unsigned i = 0; i < n; i++)
		d[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	w->len += n;
}

/* Overwrites n bytes at offset at, already written, with v big-endian:
 * for a size or checksum that is known only after what follows it. A
 * no-op after an allocation failure (w->err). */
static inline void kd_w_patch_be(struct kd_wbuf *w, size_t at, unsigned n, uint64_t v)
{
	if (w->err)
		return;
	for (unsigned i = 0; i < n; i++)
		w->p[at + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static inline void kd_w_i8(struct kd_wbuf *w, int8_t v) { kd_w_be(w, 1, (uint8_t)v); }
static inline void kd_w_i16(struct kd_wbuf *w, int16_t v) { kd_w_be(w, 2, (uint16_t)v); }
static inline void kd_w_u16(struct kd_wbuf *w, uint16_t v) { kd_w_be(w, 2, v); }
static inline void kd_w_i32(struct kd_wbuf *w, int32_t v) { kd_w_be(w, 4, (uint32_t)v); }
static inline void kd_w_u32(struct kd_wbuf *w, uint32_t v) { kd_w_be(w, 4, v); }
static inline void kd_w_i64(struct kd_wbuf *w, int64_t v) { kd_w_be(w, 8, (uint64_t)v); }

static inline void kd_w_f64(struct kd_wbuf *w, double v)
{
	uint64_t u;
	memcpy(&u, &v, sizeof(u));
	kd_w_be(w, 8, u);
}

/* The bytes kd_w_uvar writes for v. */
static inline unsigned kd_uvar_size(uint64_t v)
{
	unsigned n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static inline void kd_w_uvar(struct kd_wbuf *w, uint64_t v)
{
	uint8_t *d = kd_wbuf_reserve(w, 10);
	if (!d)
		return;
	size_t i = 0;
	while (v >= 0x80) {
		d[i++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	d[i++] = (uint8_t)v;
	w->len += i;
}

static inline void kd_w_uvarint(struct kd_wbuf *w, uint32_t v) { kd_w_uvar(w, v); }

static inline void kd_w_varint(struct kd_wbuf *w, int32_t v)
{
	kd_w_uvar(w, ((uint32_t)v << 1) ^ (uint32_t)(v >> 31));
}

static inline void kd_w_varlong(struct kd_wbuf *w, int64_t v)
{
	kd_w_uvar(w, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

/* Length prefix in the same forms kd_cur_len reads; n == -1 writes null. */
static inline void kd_w_len(struct kd_wbuf *w, int compact, unsigned width, int32_t n)
{
	if (compact)
		kd_w_uvarint(w, (uint32_t)n + 1); /* no signed overflow at INT32_MAX */
	else if (width == 2)
		kd_w_i16(w, (int16_t)n);
	else
		kd_w_i32(w, n);
}

/* A string (width 2) or bytes (width 4); a view with null set writes null. */
static inline void kd_w_blob(struct kd_wbuf *w, int compact, unsigned width, const struct kd_view *v)
{
	if (v->null) {
		kd_w_len(w, compact, width, -1);
		return;
	}
	kd_w_len(w, compact, width, (int32_t)v->len);
	kd_w_raw(w, v->p, v->len);
}

#endif
