/* fuzz_rec_entry.c: libFuzzer target for the header-only walk of a
 * RECORDS blob (kd_rec_entry_next, kd-rec-entry.h), the mirror's count of
 * what it drops. Seeds in corpus/fuzz_rec_entry/ (the RECORDS seeds).
 *
 * Properties checked (abort on violation): no crash on any input; every
 * entry lies inside the blob, back to back from its start; the cursor moves
 * forward on 1 and stays on 0 or an error; where the walk reaches the end of
 * the blob, its entries and records are kd_rec_peek_batches()'s. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kd-rec-entry.h"
#include "kd-records.h"
#include "kd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kd_cur cur;
	struct kd_rec_entry e;
	int64_t entries = 0, records = 0;
	int rc;
	kd_cur_init(&cur, data, size);
	for (;;) {
		size_t at = cur.off;
		rc = kd_rec_entry_next(&cur, &e);
		if (rc != 1) {
			check(cur.off == at);
			break;
		}
		check(e.raw.p == data + at && e.raw.len >= 12 && cur.off == at + e.raw.len &&
		      cur.off <= size);
		check(e.records >= 0 && (e.magic == 2 || e.records == 1));
		check(e.magic == 2 || (e.producer_id == -1 && !e.transactional && !e.control));
		entries++;
		records += e.records;
	}
	struct kd_rec_peek pk;
	int prc = kd_rec_peek_batches(data, size, &pk);
	if (rc == 0 && cur.off == size)
		check(prc == KD_OK && pk.batches == entries && pk.records == records);
	if (rc == KD_EMALFORMED)
		check(prc == KD_EMALFORMED);
	return 0;
}
