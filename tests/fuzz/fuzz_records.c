/* fuzz_records.c: libFuzzer target for the RECORDS iterator (kd-records.h):
 * every batch, record and header of an arbitrary blob, under small limits
 * so that decompression stays cheap. Seeds in corpus/fuzz_records/. */
#include <stddef.h>
#include <stdint.h>

#include "kd-records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The first byte picks the flags, so both CRC modes get explored:
	 * without KD_REC_IGNORE_CRC the fuzzer rarely gets past the CRC. */
	struct kd_rec_limits lim = {.max_decompressed = 1 << 20, .max_records = 10000};
	struct kd_rec_iter it;
	struct kd_batch *b;
	struct kd_record rec;
	struct kd_header hdr;
	struct kd_rec_hdr_iter hi;
	volatile uint64_t sink = 0;
	int rc;

	if (size > 0 && (data[0] & 1))
		lim.flags |= KD_REC_IGNORE_CRC;
	kd_rec_iter_init(&it, data, size, &lim);
	while ((rc = kd_rec_next_batch(&it, &b)) != 0) {
		if (rc == KD_REC_TRUNCATED)
			break;
		if (rc < 0)
			continue;
		while ((rc = kd_rec_next_record(&it, &rec)) == 1) {
			sink += (uint64_t)rec.offset + rec.key.len + rec.value.len;
			if (rec.value.len)
				sink += rec.value.p[rec.value.len - 1];
			kd_rec_headers_init(&hi, &rec);
			while (kd_rec_next_header(&hi, &hdr) == 1)
				sink += hdr.key.len + (hdr.value.len ? hdr.value.p[0] : 0);
		}
	}
	kd_rec_iter_free(&it);
	(void)sink;
	return 0;
}
