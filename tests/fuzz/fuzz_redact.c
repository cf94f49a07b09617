/* fuzz_redact.c: kd_redact_frame (kd-redact.h), which the proxy's tap runs
 * on every frame of an API with sensitive fields, on any bytes.
 *
 * Input: byte 0 picks the API key (SaslAuthenticate, SaslHandshake,
 * CreateDelegationToken, AlterUserScramCredentials, DescribeUserScram
 * Credentials, Produce, or -1: a SASL v0 token), byte 1 the version, byte
 * 2 the direction; the rest is the frame body (a size prefix is put in
 * front). Checked: no crash, no access outside the frame (ASan), the size
 * prefix is never touched, bytes only ever become zero, and a frame of an
 * API without sensitive fields is left as it was. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd-arena.h"
#include "kd-redact.h"
#include "kd-schema.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int16_t keys[] = {36, 17, 38, 51, 50, 0, -1};
	static struct kd_arena arena;
	if (size < 3)
		return 0;
	int16_t key = keys[data[0] % (sizeof(keys) / sizeof(keys[0]))];
	int16_t ver = (int16_t)(data[1] % 8);
	int is_req = data[2] & 1;
	size_t len = size - 3 + 4;
	uint8_t *frame = malloc(len), *orig = malloc(len);
	if (!frame || !orig) {
		free(frame);
		free(orig);
		return 0;
	}
	uint32_t n = (uint32_t)(size - 3);
	frame[0] = (uint8_t)(n >> 24);
	frame[1] = (uint8_t)(n >> 16);
	frame[2] = (uint8_t)(n >> 8);
	frame[3] = (uint8_t)n;
	memcpy(frame + 4, data + 3, size - 3);
	memcpy(orig, frame, len);
	int z = kd_redact_frame(frame, len, key, ver, is_req, &arena);
	check(!memcmp(frame, orig, 4));
	for (size_t i = 4; i < len; i++)
		check(frame[i] == orig[i] || frame[i] == 0);
	if (key >= 0 && !kd_api_sensitive(key))
		check(!z && !memcmp(frame, orig, len));
	free(frame);
	free(orig);
	return 0;
}
