/* test_cur.c: every primitive of the bounds-checked cursor and the writer
 * (kd-cur.h), boundary values, malformed encodings, short reads. */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kd-cur.h"

#define CUR(name, ...)                                                                             \
	static const uint8_t name##_b[] = {__VA_ARGS__};                                           \
	struct kd_cur name;                                                                        \
	kd_cur_init(&name, name##_b, sizeof(name##_b))

static void test_fixed_ints(void **state)
{
	CUR(c, 0x80, 0x7f, 0xff, 0x80, 0x00, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff,
	    0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x12, 0x34);
	int8_t i8;
	int16_t i16;
	int32_t i32;
	int64_t i64;
	uint16_t u16;
	uint32_t u32;
	assert_int_equal(kd_cur_i8(&c, &i8), KD_OK);
	assert_int_equal(i8, INT8_MIN);
	assert_int_equal(kd_cur_i8(&c, &i8), KD_OK);
	assert_int_equal(i8, INT8_MAX);
	assert_int_equal(kd_cur_i16(&c, &i16), KD_OK); /* ff 80 */
	assert_int_equal(i16, -128);
	assert_int_equal(kd_cur_i16(&c, &i16), KD_OK); /* 00 ff */
	assert_int_equal(i16, 255);
	c.off -= 2;
	assert_int_equal(kd_cur_u16(&c, &u16), KD_OK);
	assert_int_equal(u16, 255);
	assert_int_equal(kd_cur_u16(&c, &u16), KD_OK); /* fe 80 */
	assert_int_equal(u16, 0xfe80);
	assert_int_equal(kd_cur_i32(&c, &i32), KD_OK); /* 00 00 00 7f */
	assert_int_equal(i32, 127);
	assert_int_equal(kd_cur_i32(&c, &i32), KD_OK); /* ff ff ff 80 */
	assert_int_equal(i32, -128);
	c.off -= 4;
	assert_int_equal(kd_cur_u32(&c, &u32), KD_OK);
	assert_int_equal(u32, 0xffffff80u);
	assert_int_equal(kd_cur_i64(&c, &i64), KD_OK); /* 00.. 7f */
	assert_int_equal(i64, 0x7f);
	assert_int_equal(kd_cur_i64(&c, &i64), KD_OK); /* ff ff ff ff ff ff ff ff */
	assert_int_equal(i64, -1);
	/* 9 bytes left: ff ff ff ff ff ff ff 12 34 */
	assert_int_equal(kd_cur_left(&c), 9);
	assert_int_equal(kd_cur_skip(&c, 2), KD_OK);
	size_t off = c.off;
	assert_int_equal(kd_cur_i64(&c, &i64), KD_ESHORT); /* 7 left */
	assert_int_equal(c.off, off);
	assert_int_equal(kd_cur_skip(&c, 5), KD_OK);
	assert_int_equal(kd_cur_i32(&c, &i32), KD_ESHORT);
	assert_int_equal(kd_cur_u32(&c, &u32), KD_ESHORT);
	assert_int_equal(c.off, off + 5);
	assert_int_equal(kd_cur_i16(&c, &i16), KD_OK);
	assert_int_equal(i16, 0x1234);
	assert_int_equal(kd_cur_i8(&c, &i8), KD_ESHORT);
	assert_int_equal(kd_cur_i16(&c, &i16), KD_ESHORT);
	assert_int_equal(kd_cur_u16(&c, &u16), KD_ESHORT);
	assert_int_equal(kd_cur_skip(&c, 1), KD_ESHORT);
	assert_int_equal(kd_cur_skip(&c, 0), KD_OK);
	assert_int_equal(kd_cur_left(&c), 0);
}

static void test_int_extremes_roundtrip(void **state)
{
	struct kd_wbuf w = {0};
	kd_w_i8(&w, INT8_MIN);
	kd_w_i16(&w, INT16_MIN);
	kd_w_i16(&w, INT16_MAX);
	kd_w_u16(&w, UINT16_MAX);
	kd_w_i32(&w, INT32_MIN);
	kd_w_i32(&w, INT32_MAX);
	kd_w_u32(&w, UINT32_MAX);
	kd_w_i64(&w, INT64_MIN);
	kd_w_i64(&w, INT64_MAX);
	kd_w_i64(&w, -1);
	kd_w_i32(&w, 0);
	assert_int_equal(w.err, KD_OK);
	assert_int_equal(w.len, 1 + 2 + 2 + 2 + 4 + 4 + 4 + 8 + 8 + 8 + 4);
	static const uint8_t head[] = {0x80, 0x80, 0x00, 0x7f, 0xff, 0xff, 0xff, 0x80, 0, 0, 0};
	assert_memory_equal(w.p, head, sizeof(head));
	struct kd_cur c;
	kd_cur_init(&c, w.p, w.len);
	int8_t i8;
	int16_t i16;
	int32_t i32;
	int64_t i64;
	uint16_t u16;
	uint32_t u32;
	assert_int_equal(kd_cur_i8(&c, &i8), KD_OK);
	assert_int_equal(i8, INT8_MIN);
	assert_int_equal(kd_cur_i16(&c, &i16), KD_OK);
	assert_int_equal(i16, INT16_MIN);
	assert_int_equal(kd_cur_i16(&c, &i16), KD_OK);
	assert_int_equal(i16, INT16_MAX);
	assert_int_equal(kd_cur_u16(&c, &u16), KD_OK);
	assert_int_equal(u16, UINT16_MAX);
	assert_int_equal(kd_cur_i32(&c, &i32), KD_OK);
	assert_int_equal(i32, INT32_MIN);
	assert_int_equal(kd_cur_i32(&c, &i32), KD_OK);
	assert_int_equal(i32, INT32_MAX);
	assert_int_equal(kd_cur_u32(&c, &u32), KD_OK);
	assert_int_equal(u32, UINT32_MAX);
	assert_int_equal(kd_cur_i64(&c, &i64), KD_OK);
	assert_true(i64 == INT64_MIN);
	assert_int_equal(kd_cur_i64(&c, &i64), KD_OK);
	assert_true(i64 == INT64_MAX);
	assert_int_equal(kd_cur_i64(&c, &i64), KD_OK);
	assert_true(i64 == -1);
	assert_int_equal(kd_cur_i32(&c, &i32), KD_OK);
	assert_int_equal(i32, 0);
	assert_int_equal(kd_cur_left(&c), 0);
	kd_wbuf_free(&w);
	assert_null(w.p);
}

static void test_bool_f64_uuid(void **state)
{
	CUR(c, 0x00, 0x01, 0x7f, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18, /* pi */
	    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0xaa);
	uint8_t b;
	double d;
	uint8_t u[16];
	assert_int_equal(kd_cur_bool(&c, &b), KD_OK);
	assert_false(b);
	assert_int_equal(kd_cur_bool(&c, &b), KD_OK);
	assert_true(b);
	assert_int_equal(kd_cur_bool(&c, &b), KD_OK); /* any nonzero is true */
	assert_true(b);
	assert_int_equal(kd_cur_f64(&c, &d), KD_OK);
	assert_true(d == 3.141592653589793);
	assert_int_equal(kd_cur_uuid(&c, u), KD_OK);
	assert_int_equal(u[0], 1);
	assert_int_equal(u[15], 16);
	size_t off = c.off;
	assert_int_equal(kd_cur_uuid(&c, u), KD_ESHORT);
	assert_int_equal(kd_cur_f64(&c, &d), KD_ESHORT);
	assert_int_equal(c.off, off);
	assert_int_equal(kd_cur_bool(&c, &b), KD_OK);
	assert_int_equal(kd_cur_bool(&c, &b), KD_ESHORT);

	struct kd_wbuf w = {0};
	double vals[] = {0.0, -0.0, 1.5, -1e300, INFINITY, 5e-324};
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
		kd_w_f64(&w, vals[i]);
	kd_cur_init(&c, w.p, w.len);
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		assert_int_equal(kd_cur_f64(&c, &d), KD_OK);
		assert_memory_equal(&d, &vals[i], sizeof(d));
	}
	static const uint8_t one5[8] = {0x3f, 0xf8, 0, 0, 0, 0, 0, 0};
	assert_memory_equal(w.p + 16, one5, 8); /* big-endian IEEE-754 */
	kd_wbuf_free(&w);
}

/* Writes v as UNSIGNED_VARINT and checks the byte count and the read-back. */
static void uvarint_case(uint32_t v, size_t nbytes)
{
	struct kd_wbuf w = {0};
	struct kd_cur c;
	uint32_t r;
	kd_w_uvarint(&w, v);
	assert_int_equal(w.len, nbytes);
	kd_cur_init(&c, w.p, w.len);
	assert_int_equal(kd_cur_uvarint(&c, &r), KD_OK);
	assert_int_equal(r, v);
	assert_int_equal(c.off, nbytes);
	/* Every shorter prefix is short and leaves the cursor alone. */
	for (size_t cut = 0; cut < nbytes; cut++) {
		kd_cur_init(&c, w.p, cut);
		assert_int_equal(kd_cur_uvarint(&c, &r), KD_ESHORT);
		assert_int_equal(c.off, 0);
	}
	kd_wbuf_free(&w);
}

static void test_uvarint(void **state)
{
	uvarint_case(0, 1);
	uvarint_case(1, 1);
	uvarint_case(127, 1);
	uvarint_case(128, 2);
	uvarint_case(16383, 2);
	uvarint_case(16384, 3);
	uvarint_case(2097151, 3);
	uvarint_case(2097152, 4);
	uvarint_case(268435455, 4);
	uvarint_case(268435456, 5);
	uvarint_case(UINT32_MAX, 5);
	{
		CUR(c, 0x80, 0x01); /* 128 */
		uint32_t r;
		assert_int_equal(kd_cur_uvarint(&c, &r), KD_OK);
		assert_int_equal(r, 128);
	}
	{
		CUR(c, 0xff, 0xff, 0x7f); /* 2097151 */
		uint32_t r;
		assert_int_equal(kd_cur_uvarint(&c, &r), KD_OK);
		assert_int_equal(r, 2097151);
	}
	{
		/* Non-minimal encodings are accepted (Java's ByteUtils does). */
		CUR(c, 0x80, 0x00);
		uint32_t r;
		assert_int_equal(kd_cur_uvarint(&c, &r), KD_OK);
		assert_int_equal(r, 0);
	}
}

static void test_uvarint_malformed(void **state)
{
	uint32_t r;
	{
		/* 6 bytes for a 32-bit varint. */
		CUR(c, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
		assert_int_equal(kd_cur_uvarint(&c, &r), KD_EMALFORMED);
		assert_int_equal(c.off, 0);
	}
	{
		/* 5 continuation bytes, no 6th: still malformed, not short. */
		CUR(c, 0x80, 0x80, 0x80, 0x80, 0x80);
		assert_int_equal(kd_cur_uvarint(&c, &r), KD_EMALFORMED);
		assert_int_equal(c.off, 0);
	}
	{
		/* 5th byte carries bits past 32 (0x10 << 28 = 2^32). */
		CUR(c, 0x80, 0x80, 0x80, 0x80, 0x10);
		assert_int_equal(kd_cur_uvarint(&c, &r), KD_EMALFORMED);
		assert_int_equal(c.off, 0);
	}
	{
		CUR(c, 0xff, 0xff, 0xff, 0xff, 0x0f); /* UINT32_MAX: the largest valid */
		assert_int_equal(kd_cur_uvarint(&c, &r), KD_OK);
		assert_int_equal(r, UINT32_MAX);
	}
	{
		int32_t v;
		CUR(c, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
		assert_int_equal(kd_cur_varint(&c, &v), KD_EMALFORMED);
		assert_int_equal(c.off, 0);
	}
}

static void varint_case(int32_t v, size_t nbytes)
{
	struct kd_wbuf w = {0};
	struct kd_cur c;
	int32_t r;
	kd_w_varint(&w, v);
	assert_int_equal(w.len, nbytes);
	kd_cur_init(&c, w.p, w.len);
	assert_int_equal(kd_cur_varint(&c, &r), KD_OK);
	assert_int_equal(r, v);
	for (size_t cut = 0; cut < nbytes; cut++) {
		kd_cur_init(&c, w.p, cut);
		assert_int_equal(kd_cur_varint(&c, &r), KD_ESHORT);
		assert_int_equal(c.off, 0);
	}
	kd_wbuf_free(&w);
}

static void test_varint_zigzag(void **state)
{
	varint_case(0, 1);
	varint_case(-1, 1);
	varint_case(1, 1);
	varint_case(63, 1);
	varint_case(-64, 1);
	varint_case(64, 2);
	varint_case(-65, 2);
	varint_case(8191, 2);
	varint_case(8192, 3);
	varint_case(INT32_MAX, 5);
	varint_case(INT32_MIN, 5);
	/* Zig-zag bytes from the spec: 0->0, -1->1, 1->2, -2->3. */
	CUR(c, 0x00, 0x01, 0x02, 0x03, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0xff, 0x0f);
	int32_t r;
	int32_t want[] = {0, -1, 1, -2, INT32_MAX, INT32_MIN};
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(kd_cur_varint(&c, &r), KD_OK);
		assert_int_equal(r, want[i]);
	}
}

static void varlong_case(int64_t v, size_t nbytes)
{
	struct kd_wbuf w = {0};
	struct kd_cur c;
	int64_t r;
	kd_w_varlong(&w, v);
	assert_int_equal(w.len, nbytes);
	kd_cur_init(&c, w.p, w.len);
	assert_int_equal(kd_cur_varlong(&c, &r), KD_OK);
	assert_true(r == v);
	for (size_t cut = 0; cut < nbytes; cut++) {
		kd_cur_init(&c, w.p, cut);
		assert_int_equal(kd_cur_varlong(&c, &r), KD_ESHORT);
		assert_int_equal(c.off, 0);
	}
	kd_wbuf_free(&w);
}

static void test_varlong(void **state)
{
	varlong_case(0, 1);
	varlong_case(-1, 1);
	varlong_case(63, 1);
	varlong_case(64, 2);
	varlong_case(INT32_MAX, 5);
	varlong_case((int64_t)INT32_MAX + 1, 5);
	varlong_case(1700000000000LL, 6);
	varlong_case(INT64_MAX, 10);
	varlong_case(INT64_MIN, 10);
	int64_t r;
	{
		/* 10-byte varlong whose 10th byte is 1: the largest valid. */
		CUR(c, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
		assert_int_equal(kd_cur_varlong(&c, &r), KD_OK);
		assert_true(r == INT64_MAX);
	}
	{
		/* 10th byte above 1: bits past 64. */
		CUR(c, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02);
		assert_int_equal(kd_cur_varlong(&c, &r), KD_EMALFORMED);
		assert_int_equal(c.off, 0);
	}
	{
		/* 11 bytes. */
		CUR(c, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x00);
		assert_int_equal(kd_cur_varlong(&c, &r), KD_EMALFORMED);
		assert_int_equal(c.off, 0);
	}
	{
		CUR(c, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00);
		assert_int_equal(kd_cur_varlong(&c, &r), KD_EMALFORMED);
		assert_int_equal(c.off, 0);
	}
	{
		/* The generic reader with a 64-bit width. */
		uint64_t u;
		CUR(c, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
		assert_int_equal(kd_cur_uvar(&c, 10, &u), KD_OK);
		assert_true(u == UINT64_MAX);
	}
}

static void test_strings(void **state)
{
	struct kd_view v = {0};
	{
		/* STRING "abc", NULLABLE_STRING null, empty string. */
		CUR(c, 0x00, 0x03, 'a', 'b', 'c', 0xff, 0xff, 0x00, 0x00);
		assert_int_equal(kd_cur_str(&c, 0, 0, &v), KD_OK);
		assert_int_equal(v.len, 3);
		assert_memory_equal(v.p, "abc", 3);
		assert_ptr_equal(v.p, c_b + 2); /* a view, not a copy */
		assert_false(v.null);
		size_t off = c.off;
		assert_int_equal(kd_cur_str(&c, 0, 0, &v),
		                 KD_EMALFORMED); /* null where not nullable */
		assert_int_equal(c.off, off);
		assert_int_equal(kd_cur_str(&c, 0, 1, &v), KD_OK);
		assert_true(v.null);
		assert_null(v.p);
		assert_int_equal(kd_cur_str(&c, 0, 0, &v), KD_OK);
		assert_false(v.null);
		assert_int_equal(v.len, 0);
		assert_int_equal(kd_cur_left(&c), 0);
	}
	{
		/* Negative length below -1; length past the end; short prefix. */
		CUR(c, 0xff, 0xfe, 0x00, 0x05, 'a', 'b');
		assert_int_equal(kd_cur_str(&c, 0, 1, &v), KD_EMALFORMED);
		assert_int_equal(c.off, 0);
		c.off = 2;
		assert_int_equal(kd_cur_str(&c, 0, 1, &v), KD_ESHORT);
		assert_int_equal(c.off, 2);
		c.off = 5;
		assert_int_equal(kd_cur_str(&c, 0, 1, &v), KD_ESHORT);
		assert_int_equal(c.off, 5);
	}
	{
		/* INT16 -32768 */
		CUR(c, 0x80, 0x00);
		assert_int_equal(kd_cur_str(&c, 0, 1, &v), KD_EMALFORMED);
	}
	{
		/* COMPACT_STRING: N+1. 0 = null, 1 = empty, 4 = 3 bytes. */
		CUR(c, 0x04, 'x', 'y', 'z', 0x00, 0x01, 0x05, 'a');
		assert_int_equal(kd_cur_str(&c, 1, 0, &v), KD_OK);
		assert_int_equal(v.len, 3);
		assert_memory_equal(v.p, "xyz", 3);
		assert_int_equal(kd_cur_str(&c, 1, 0, &v), KD_EMALFORMED);
		assert_int_equal(c.off, 4);
		assert_int_equal(kd_cur_str(&c, 1, 1, &v), KD_OK);
		assert_true(v.null);
		assert_int_equal(kd_cur_str(&c, 1, 0, &v), KD_OK);
		assert_int_equal(v.len, 0);
		assert_false(v.null);
		assert_int_equal(kd_cur_str(&c, 1, 1, &v),
		                 KD_ESHORT); /* 4 bytes announced, 1 left */
		assert_int_equal(c.off, 6);
	}
	{
		/* Compact length whose N+1 is above INT32_MAX. */
		CUR(c, 0xff, 0xff, 0xff, 0xff, 0x0f);
		assert_int_equal(kd_cur_str(&c, 1, 1, &v), KD_EMALFORMED);
		assert_int_equal(c.off, 0);
	}
	{
		/* Compact 128-byte string: a 2-byte length (129 = 0x81 0x01). */
		uint8_t b[2 + 128];
		b[0] = 0x81;
		b[1] = 0x01;
		memset(b + 2, 'q', 128);
		struct kd_cur c;
		kd_cur_init(&c, b, sizeof(b));
		assert_int_equal(kd_cur_str(&c, 1, 0, &v), KD_OK);
		assert_int_equal(v.len, 128);
		assert_int_equal(kd_cur_left(&c), 0);
	}
}

static void test_bytes(void **state)
{
	struct kd_view v = {0};
	{
		CUR(c, 0, 0, 0, 2, 0xde, 0xad, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0x7f,
		    0xff, 0xff, 0xff, 0x00);
		assert_int_equal(kd_cur_bytes(&c, 0, 0, &v), KD_OK);
		assert_int_equal(v.len, 2);
		assert_int_equal(v.p[0], 0xde);
		assert_int_equal(kd_cur_bytes(&c, 0, 0, &v), KD_EMALFORMED);
		assert_int_equal(kd_cur_bytes(&c, 0, 1, &v), KD_OK);
		assert_true(v.null);
		assert_int_equal(kd_cur_bytes(&c, 0, 1, &v), KD_EMALFORMED); /* -2 */
		assert_int_equal(c.off, 10);
		c.off = 14;
		assert_int_equal(kd_cur_bytes(&c, 0, 1, &v), KD_ESHORT); /* INT32_MAX bytes */
		assert_int_equal(c.off, 14);
	}
	{
		/* INT32_MIN length. */
		CUR(c, 0x80, 0, 0, 0);
		assert_int_equal(kd_cur_bytes(&c, 0, 1, &v), KD_EMALFORMED);
		assert_int_equal(c.off, 0);
	}
	{
		CUR(c, 0x03, 1, 2, 0x00, 0x01);
		assert_int_equal(kd_cur_bytes(&c, 1, 0, &v), KD_OK);
		assert_int_equal(v.len, 2);
		assert_int_equal(kd_cur_bytes(&c, 1, 1, &v), KD_OK);
		assert_true(v.null);
		assert_int_equal(kd_cur_bytes(&c, 1, 0, &v), KD_OK);
		assert_int_equal(v.len, 0);
	}
	/* Writer round trip of every form. */
	struct kd_wbuf w = {0};
	struct kd_view abc = {(const uint8_t *)"abc", 3, 0}, nul = {NULL, 0, 1},
	               empty = {(const uint8_t *)"", 0, 0};
	for (int compact = 0; compact <= 1; compact++)
		for (unsigned width = 2; width <= 4; width += 2) {
			kd_w_blob(&w, compact, width, &abc);
			kd_w_blob(&w, compact, width, &nul);
			kd_w_blob(&w, compact, width, &empty);
		}
	assert_int_equal(w.err, KD_OK);
	struct kd_cur c;
	kd_cur_init(&c, w.p, w.len);
	for (int compact = 0; compact <= 1; compact++)
		for (unsigned width = 2; width <= 4; width += 2) {
			assert_int_equal(kd_cur_blob(&c, compact, width, 1, &v), KD_OK);
			assert_int_equal(v.len, 3);
			assert_memory_equal(v.p, "abc", 3);
			assert_int_equal(kd_cur_blob(&c, compact, width, 1, &v), KD_OK);
			assert_true(v.null);
			assert_int_equal(kd_cur_blob(&c, compact, width, 0, &v), KD_OK);
			assert_int_equal(v.len, 0);
			assert_false(v.null);
		}
	assert_int_equal(kd_cur_left(&c), 0);
	/* Exact bytes of the length prefixes. */
	static const uint8_t expect[] = {0, 3, 'a', 'b', 'c', 0xff, 0xff, 0, 0};
	assert_memory_equal(w.p, expect, sizeof(expect));
	kd_wbuf_free(&w);
}

static void test_arrays(void **state)
{
	int32_t n;
	{
		CUR(c, 0, 0, 0, 2, 0xaa, 0xbb, 0xcc, 0xdd);
		assert_int_equal(kd_cur_array(&c, 0, 2, &n), KD_OK);
		assert_int_equal(n, 2);
		c.off = 0;
		/* 2 elements of at least 3 bytes cannot fit in 4 bytes. */
		assert_int_equal(kd_cur_array(&c, 0, 3, &n), KD_EMALFORMED);
		assert_int_equal(c.off, 0);
		/* min_elem 0: no plausibility check. */
		assert_int_equal(kd_cur_array(&c, 0, 0, &n), KD_OK);
	}
	{
		/* Null array (-1), count far beyond the bytes, -2. */
		CUR(c, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe);
		assert_int_equal(kd_cur_array(&c, 0, 1, &n), KD_OK);
		assert_int_equal(n, -1);
		assert_int_equal(kd_cur_array(&c, 0, 1, &n), KD_EMALFORMED);
		assert_int_equal(c.off, 4);
		c.off = 8;
		assert_int_equal(kd_cur_array(&c, 0, 1, &n), KD_EMALFORMED);
		assert_int_equal(c.off, 8);
	}
	{
		/* COMPACT_ARRAY: 0 null, 1 empty, 3 = 2 elements; huge count. */
		CUR(c, 0x00, 0x01, 0x03, 0x01, 0x02, 0xff, 0xff, 0xff, 0xff, 0x07);
		assert_int_equal(kd_cur_array(&c, 1, 1, &n), KD_OK);
		assert_int_equal(n, -1);
		assert_int_equal(kd_cur_array(&c, 1, 1, &n), KD_OK);
		assert_int_equal(n, 0);
		assert_int_equal(kd_cur_array(&c, 1, 1, &n), KD_OK);
		assert_int_equal(n, 2);
		assert_int_equal(kd_cur_skip(&c, 2), KD_OK);
		assert_int_equal(kd_cur_array(&c, 1, 1, &n), KD_EMALFORMED);
		assert_int_equal(c.off, 5);
	}
	{
		CUR(c, 0, 0, 0);
		assert_int_equal(kd_cur_array(&c, 0, 1, &n), KD_ESHORT);
		assert_int_equal(c.off, 0);
	}
	struct kd_wbuf w = {0};
	kd_w_len(&w, 0, 4, 3);
	kd_w_len(&w, 0, 4, -1);
	kd_w_len(&w, 1, 4, 3);
	kd_w_len(&w, 1, 4, -1);
	kd_w_len(&w, 0, 2, 7);
	static const uint8_t expect[] = {0,    0,    0,    3,    0xff, 0xff,
	                                 0xff, 0xff, 0x04, 0x00, 0x00, 0x07};
	assert_int_equal(w.len, sizeof(expect));
	assert_memory_equal(w.p, expect, sizeof(expect));
	/* The largest compact length: N+1 = 2^31 must not overflow (UBSan). */
	w.len = 0;
	kd_w_len(&w, 1, 4, INT32_MAX);
	static const uint8_t big[] = {0x80, 0x80, 0x80, 0x80, 0x08};
	assert_int_equal(w.len, sizeof(big));
	assert_memory_equal(w.p, big, sizeof(big));
	/* ... and the reader refuses it: N+1 above INT32_MAX. */
	struct kd_cur rc;
	kd_cur_init(&rc, w.p, w.len);
	assert_int_equal(kd_cur_array(&rc, 1, 0, &n), KD_EMALFORMED);
	kd_wbuf_free(&w);
}

static void test_writer_growth(void **state)
{
	struct kd_wbuf w = {0};
	for (uint32_t i = 0; i < 100000; i++)
		kd_w_uvarint(&w, i);
	assert_int_equal(w.err, KD_OK);
	struct kd_cur c;
	kd_cur_init(&c, w.p, w.len);
	for (uint32_t i = 0; i < 100000; i++) {
		uint32_t r;
		assert_int_equal(kd_cur_uvarint(&c, &r), KD_OK);
		assert_int_equal(r, i);
	}
	assert_int_equal(kd_cur_left(&c), 0);
	/* An impossible reservation sets the sticky error; later writes are no-ops. */
	assert_null(kd_wbuf_reserve(&w, SIZE_MAX - 8));
	assert_int_equal(w.err, KD_ENOMEM);
	size_t len = w.len;
	kd_w_i32(&w, 5);
	kd_w_raw(&w, "abc", 3);
	assert_int_equal(w.len, len);
	kd_wbuf_free(&w);
	assert_int_equal(w.err, KD_OK);
	kd_w_i8(&w, 1); /* usable again after free */
	assert_int_equal(w.len, 1);
	kd_wbuf_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fixed_ints),
	    cmocka_unit_test(test_int_extremes_roundtrip),
	    cmocka_unit_test(test_bool_f64_uuid),
	    cmocka_unit_test(test_uvarint),
	    cmocka_unit_test(test_uvarint_malformed),
	    cmocka_unit_test(test_varint_zigzag),
	    cmocka_unit_test(test_varlong),
	    cmocka_unit_test(test_strings),
	    cmocka_unit_test(test_bytes),
	    cmocka_unit_test(test_arrays),
	    cmocka_unit_test(test_writer_growth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
