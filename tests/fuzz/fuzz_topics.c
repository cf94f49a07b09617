/* fuzz_topics.c: learning topic ids from a response frame
 * (kd_topics_learn_frame, kd-topics.h). The first byte picks one of the
 * responses whose schema pairs TopicId with a topic name, the second its
 * version; the rest is the whole frame (INT32 size, header, body).
 *
 * Properties checked (abort on violation): no crash or leak on any
 * input; what is learnt is counted; learning a frame again changes
 * nothing (unless the frame renames an id itself); every id the map holds
 * afterwards gives back a name of 1..255 bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd-topics.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int16_t keys[] = {3, 19, 20, 75}; /* Metadata, CreateTopics, DeleteTopics,
	                                                * DescribeTopicPartitions */
	if (size < 2)
		return 0;
	int16_t key = keys[data[0] % 4];
	int16_t ver = (int16_t)(data[1] % 16);
	struct kd_topics *m = kd_topics_new();
	if (!m)
		return 0;
	int rc = kd_topics_learn_frame(m, key, ver, data + 2, size - 2, NULL);
	if (rc > 0) {
		check(kd_topics_count(m) >= 1 && kd_topics_count(m) <= (size_t)rc);
		/* without renames inside the frame, a second pass changes nothing */
		if (kd_topics_count(m) == (size_t)rc)
			check(kd_topics_learn_frame(m, key, ver, data + 2, size - 2, NULL) == 0);
	}
	/* every 16-byte window that is a known id names something sane */
	for (size_t i = 2; i + 16 <= size; i++) {
		struct kd_view v = kd_topics_get(m, data + i);
		if (!v.null)
			check(v.len >= 1 && v.len <= KD_TOPICS_NAME_MAX && v.p);
	}
	kd_topics_free(&m);
	return 0;
}
