/* kd-crc.c: CRC-32C (SSE4.2 or slicing-by-8 tables) and CRC-32 IEEE (zlib). */
#include "kd-crc.h"

#include <string.h>
#include <zlib.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KD_CRC_X86 1
#include <cpuid.h>
#include <nmmintrin.h>
#endif

#define CRC32C_POLY 0x82F63B78u /* reflected Castagnoli polynomial */

static uint32_t crc32c_table[8][256];

/* The hardware path runs three independent crc32q streams (the instruction
 * has a 3-cycle latency and a 1-cycle throughput) over three adjacent
 * blocks, then joins them: the CRC register of A||B from register c is
 * shift_|B|(c_after_A) ^ crc_from_0(B). shift_n, "append n zero bytes",
 * is linear over GF(2); it is tabulated per byte lane for two block sizes. */
#define CRC_LONG 8192
#define CRC_SHORT 256
static uint32_t crc32c_long[4][256];
static uint32_t crc32c_short[4][256];

static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;
	for (int i = 0; vec; i++, vec >>= 1)
		if (vec & 1)
			sum ^= mat[i];
	return sum;
}

static void gf2_square(uint32_t *sq, const uint32_t *mat)
{
	for (int i = 0; i < 32; i++)
		sq[i] = gf2_times(mat, mat[i]);
}

/* Tables applying "append len zero bytes" to a raw CRC register. */
static void crc32c_shift_tables(uint32_t tab[4][256], size_t len)
{
	uint32_t op[32], sq[32], acc[32];
	/* op: one zero bit. Then square to 2, 4, 8 bits = one byte. */
	op[0] = CRC32C_POLY;
	for (int i = 1; i < 32; i++)
		op[i] = 1u << (i - 1);
	gf2_square(sq, op);
	gf2_square(op, sq);
	gf2_square(sq, op); /* sq: one zero byte */
	for (int i = 0; i < 32; i++)
		acc[i] = 1u << i; /* identity */
	/* acc = sq^len by binary powering. */
	while (len) {
		if (len & 1) {
			uint32_t t[32];
			for (int i = 0; i < 32; i++)
				t[i] = gf2_times(sq, acc[i]);
			memcpy(acc, t, sizeof(t));
		}
		len >>= 1;
		if (len) {
			gf2_square(op, sq);
			memcpy(sq, op, sizeof(op));
		}
	}
	for (int k = 0; k < 4; k++)
		for (uint32_t n = 0; n < 256; n++)
			tab[k][n] = gf2_times(acc, n << (8 * k));
}

static inline uint32_t crc32c_shift(uint32_t tab[4][256], uint32_t c)
{
	return tab[0][c & 0xff] ^ tab[1][(c >> 8) & 0xff] ^ tab[2][(c >> 16) & 0xff] ^
	       tab[3][c >> 24];
}

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);
static crc_fn crc32c_impl_fn;
static int crc32c_hw;

/* Runs before main(): builds the tables and picks the implementation, so
 * the hot path has no "initialised yet?" test and no race. */
__attribute__((constructor)) static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
		crc32c_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc32c_table[t][i] = (crc32c_table[t - 1][i] >> 8) ^
			                     crc32c_table[0][crc32c_table[t - 1][i] & 0xff];
	crc32c_shift_tables(crc32c_long, CRC_LONG);
	crc32c_shift_tables(crc32c_short, CRC_SHORT);
	crc32c_hw = 0;
#ifdef KD_CRC_X86
	unsigned a, b, c, d;
	if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2))
		crc32c_hw = 1;
#endif
	crc32c_impl_fn = crc32c_hw ? kd_crc32c_hw : kd_crc32c_sw;
}

uint32_t kd_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;
	while (len && ((uintptr_t)p & 7)) {
		c = (c >> 8) ^ crc32c_table[0][(c ^ *p++) & 0xff];
		len--;
	}
	while (len >= 8) {
		/* Explicit little-endian loads: correct on any byte order. */
		uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		                   (uint32_t)p[3] << 24);
		uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
		              (uint32_t)p[7] << 24;
		c = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^
		    crc32c_table[5][(lo >> 16) & 0xff] ^ crc32c_table[4][lo >> 24] ^
		    crc32c_table[3][hi & 0xff] ^ crc32c_table[2][(hi >> 8) & 0xff] ^
		    crc32c_table[1][(hi >> 16) & 0xff] ^ crc32c_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = (c >> 8) ^ crc32c_table[0][(c ^ *p++) & 0xff];
	return ~c;
}

#ifdef KD_CRC_X86
/* Raw register c over p[0 .. 3 * blk), three streams joined by shifts. */
__attribute__((target("sse4.2"))) static inline uint64_t
crc32c_3way(uint64_t c, const uint8_t *p, size_t blk, uint32_t tab[4][256])
{
	uint64_t c1 = 0, c2 = 0;
	for (size_t i = 0; i < blk; i += 8) {
		uint64_t v0, v1, v2;
		memcpy(&v0, p + i, 8);
		memcpy(&v1, p + blk + i, 8);
		memcpy(&v2, p + 2 * blk + i, 8);
		c = _mm_crc32_u64(c, v0);
		c1 = _mm_crc32_u64(c1, v1);
		c2 = _mm_crc32_u64(c2, v2);
	}
	c = crc32c_shift(tab, (uint32_t)c) ^ (uint32_t)c1;
	return crc32c_shift(tab, (uint32_t)c) ^ (uint32_t)c2;
}

__attribute__((target("sse4.2"))) uint32_t kd_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t c = (uint32_t)~crc;
	while (len && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		len--;
	}
	/* Three streams over blocks of CRC_LONG, then CRC_SHORT bytes. */
	while (len >= 3 * CRC_LONG) {
		c = crc32c_3way(c, p, CRC_LONG, crc32c_long);
		p += 3 * CRC_LONG;
		len -= 3 * CRC_LONG;
	}
	while (len >= 3 * CRC_SHORT) {
		c = crc32c_3way(c, p, CRC_SHORT, crc32c_short);
		p += 3 * CRC_SHORT;
		len -= 3 * CRC_SHORT;
	}
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8); /* x86 is little-endian, as crc32q expects */
		c = _mm_crc32_u64(c, v);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return ~(uint32_t)c;
}
#else
uint32_t kd_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	return kd_crc32c_sw(crc, buf, len);
}
#endif

int kd_crc32c_hw_available(void)
{
	if (!crc32c_impl_fn)
		crc32c_init();
	return crc32c_hw;
}

const char *kd_crc32c_impl(void)
{
	return kd_crc32c_hw_available() ? "crc32c-sse4.2" : "crc32c-sw";
}

uint32_t kd_crc32c(uint32_t crc, const void *p, size_t len)
{
	if (__builtin_expect(!crc32c_impl_fn, 0))
		crc32c_init(); /* only when called from another constructor */
	return crc32c_impl_fn(crc, p, len);
}

uint32_t kd_crc32(uint32_t crc, const void *p, size_t len)
{
	const uint8_t *b = p;
	/* zlib takes uInt lengths: feed huge buffers in pieces. */
	while (len > 0) {
		uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
		crc = (uint32_t)crc32(crc, b, n);
		b += n;
		len -= n;
	}
	return crc;
}
