/* kd-rec-entry.c: records blob entries from their headers (kd-rec-entry.h). */
#include "kd-rec-entry.h"

#include <string.h>

#include "kd.h"

#define ENTRY_HDR 12
#define MAGIC_OFF 16
#define ATTR_OFF 21
#define PID_OFF 43
#define EPOCH_OFF 51
#define COUNT_OFF 57
#define V2_HDR 61

int kd_rec_entry_next(struct kd_cur *cur, struct kd_rec_entry *e)
{
	size_t at = cur->off;
	int64_t base;
	int32_t size;
	if (kd_cur_left(cur) == 0)
		return 0;
	const uint8_t *p = kd_cur_pos(cur);
	if (kd_cur_i64(cur, &base) || kd_cur_i32(cur, &size) ||
	    (size >= 0 && (size_t)size > kd_cur_left(cur))) {
		cur->off = at;
		return 0;
	}
	if (size < 0) {
		cur->off = at;
		return KD_EMALFORMED;
	}
	size_t total = ENTRY_HDR + (size_t)size;
	memset(e, 0, sizeof(*e));
	e->magic = total > MAGIC_OFF ? (int8_t)p[MAGIC_OFF] : -1;
	e->producer_id = -1;
	e->producer_epoch = -1;
	e->records = 1;
	if (e->magic == 2) {
		e->records = 0;
		if (total >= V2_HDR) {
			uint16_t attr = (uint16_t)kd_load_be(p + ATTR_OFF, 2);
			int32_t n = (int32_t)(uint32_t)kd_load_be(p + COUNT_OFF, 4);
			e->transactional = (attr >> 4) & 1;
			e->control = (attr >> 5) & 1;
			e->producer_id = (int64_t)kd_load_be(p + PID_OFF, 8);
			e->producer_epoch = (int16_t)(uint16_t)kd_load_be(p + EPOCH_OFF, 2);
			e->records = n > 0 ? n : 0;
		}
	}
	e->raw = (struct kd_view){p, (uint32_t)total, 0};
	cur->off += (size_t)size;
	return 1;
}
