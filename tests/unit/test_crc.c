/* test_crc.c: CRC-32C (hardware and software) and CRC-32 IEEE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kd-crc.h"
#include "kd.h"

static void test_vectors(void **state)
{
	const char *s = "123456789";
	uint8_t zeros[32] = {0}, ones[32], inc[32];
	memset(ones, 0xff, sizeof(ones));
	for (int i = 0; i < 32; i++)
		inc[i] = (uint8_t)i;

	assert_int_equal(kd_crc32c(0, s, 9), 0xE3069283u);
	assert_int_equal(kd_crc32c_sw(0, s, 9), 0xE3069283u);
	assert_int_equal(kd_crc32(0, s, 9), 0xCBF43926u);
	assert_int_equal(kd_crc32c(0, s, 0), 0);
	/* RFC 3720 appendix B.4 iSCSI test vectors. */
	assert_int_equal(kd_crc32c_sw(0, zeros, 32), 0x8A9136AAu);
	assert_int_equal(kd_crc32c_sw(0, ones, 32), 0x62A8AB43u);
	assert_int_equal(kd_crc32c_sw(0, inc, 32), 0x46DD794Eu);
	assert_int_equal(kd_crc32c(0, zeros, 32), 0x8A9136AAu);
	assert_int_equal(kd_crc32c(0, ones, 32), 0x62A8AB43u);
	assert_int_equal(kd_crc32c(0, inc, 32), 0x46DD794Eu);
	if (kd_crc32c_hw_available())
		assert_int_equal(kd_crc32c_hw(0, s, 9), 0xE3069283u);
}

static void test_chaining(void **state)
{
	const char *s = "123456789";
	for (size_t cut = 0; cut <= 9; cut++) {
		assert_int_equal(kd_crc32c(kd_crc32c(0, s, cut), s + cut, 9 - cut), 0xE3069283u);
		assert_int_equal(kd_crc32c_sw(kd_crc32c_sw(0, s, cut), s + cut, 9 - cut),
		                 0xE3069283u);
		assert_int_equal(kd_crc32(kd_crc32(0, s, cut), s + cut, 9 - cut), 0xCBF43926u);
	}
}

/* Bitwise reference, independent of the table code. */
static uint32_t crc32c_ref(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
	}
	return ~c;
}

static void test_hw_sw_random(void **state)
{
	enum { N = 1100 };
	uint8_t *buf = malloc(N + 16);
	assert_non_null(buf);
	srand(12345);
	for (size_t i = 0; i < N + 16; i++)
		buf[i] = (uint8_t)rand();
	int hw = kd_crc32c_hw_available();
	for (size_t align = 0; align < 16; align++) {
		for (size_t len = 0; len <= N; len += (len < 300 ? 1 : 37)) {
			uint32_t ref = crc32c_ref(buf + align, len);
			assert_int_equal(kd_crc32c_sw(0, buf + align, len), ref);
			assert_int_equal(kd_crc32c(0, buf + align, len), ref);
			if (hw)
				assert_int_equal(kd_crc32c_hw(0, buf + align, len), ref);
		}
	}
	free(buf);
	/* Long inputs take the hardware path's three-stream blocks (3 x 256
	 * and 3 x 8192 bytes): lengths around and between those boundaries. */
	static const size_t big[] = {767,       768,   769, 24575, 24576, 24577, 24576 + 768 + 7,
	                             49152 + 3, 200003};
	buf = malloc(200003 + 8);
	assert_non_null(buf);
	for (size_t i = 0; i < 200003 + 8; i++)
		buf[i] = (uint8_t)rand();
	for (size_t k = 0; k < sizeof(big) / sizeof(big[0]); k++) {
		for (size_t align = 0; align < 8; align += 3) {
			uint32_t ref = crc32c_ref(buf + align, big[k]);
			assert_int_equal(kd_crc32c_sw(0, buf + align, big[k]), ref);
			assert_int_equal(kd_crc32c(0, buf + align, big[k]), ref);
			if (hw)
				assert_int_equal(kd_crc32c_hw(0, buf + align, big[k]), ref);
			/* Chained in two uneven parts. */
			size_t cut = big[k] / 3 + 1;
			assert_int_equal(kd_crc32c(kd_crc32c(0, buf + align, cut),
			                           buf + align + cut, big[k] - cut),
			                 ref);
		}
	}
	free(buf);
}

static void test_features(void **state)
{
	const char *f = kd_features();
	assert_non_null(strstr(f, "gzip"));
	assert_non_null(strstr(f, kd_crc32c_impl()));
	assert_string_equal(kd_crc32c_impl(),
	                    kd_crc32c_hw_available() ? "crc32c-sse4.2" : "crc32c-sw");
#if defined(__x86_64__)
	/* Every x86-64 CPU this project targets has SSE4.2; say so if not. */
	if (!kd_crc32c_hw_available())
		print_message("note: no SSE4.2 on this CPU, software CRC-32C in use\n");
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vectors),
	    cmocka_unit_test(test_chaining),
	    cmocka_unit_test(test_hw_sw_random),
	    cmocka_unit_test(test_features),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
