/* cap-hash.c: SipHash-1-3 (Aumasson and Bernstein, "SipHash: a fast
 * short-input PRF", 2012; 1 compression and 3 finalization rounds, as
 * Rust's and Python's hash tables use it) and a per-run random key.
 *
 * The flow table and the analyzer's broker-endpoint set hash addresses
 * and ports taken from the capture. With an unkeyed hash a crafted
 * capture could put every flow in one bucket; with a random key per run
 * it cannot aim. */
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cap-int.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND                                                                                   \
	do {                                                                                       \
		v0 += v1;                                                                          \
		v1 = ROTL(v1, 13);                                                                 \
		v1 ^= v0;                                                                          \
		v0 = ROTL(v0, 32);                                                                 \
		v2 += v3;                                                                          \
		v3 = ROTL(v3, 16);                                                                 \
		v3 ^= v2;                                                                          \
		v0 += v3;                                                                          \
		v3 = ROTL(v3, 21);                                                                 \
		v3 ^= v0;                                                                          \
		v2 += v1;                                                                          \
		v1 = ROTL(v1, 17);                                                                 \
		v1 ^= v2;                                                                          \
		v2 = ROTL(v2, 32);                                                                 \
	} while (0)

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

uint64_t cap_siphash(const struct cap_hkey *key, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t v0 = 0x736f6d6570736575ULL ^ key->k[0];
	uint64_t v1 = 0x646f72616e646f6dULL ^ key->k[1];
	uint64_t v2 = 0x6c7967656e657261ULL ^ key->k[0];
	uint64_t v3 = 0x7465646279746573ULL ^ key->k[1];
	size_t end = len & ~(size_t)7;
	for (size_t i = 0; i < end; i += 8) {
		uint64_t m = le64(p + i);
		v3 ^= m;
		SIPROUND;
		v0 ^= m;
	}
	uint64_t b = (uint64_t)len << 56;
	for (size_t i = 0; i < (len & 7); i++)
		b |= (uint64_t)p[end + i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

void cap_hkey_random(struct cap_hkey *key)
{
	uint8_t b[16];
	ssize_t n = getrandom(b, sizeof(b), GRND_NONBLOCK);
	if (n == (ssize_t)sizeof(b)) {
		key->k[0] = le64(b);
		key->k[1] = le64(b + 8);
		return;
	}
	/* no entropy yet (early boot): still different on every run */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	key->k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
	key->k[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)key;
}
