/* kd-topics.h: the topic ID -> name map, learnt from responses.
 *
 * Since Fetch v13 (KIP-516) clients and brokers name topics by a 16-byte
 * TopicId, and only some responses pair an id with its name: Metadata v10+,
 * CreateTopics v7+, DeleteTopics v6+, DescribeTopicPartitions, ... Every
 * place kwire shows or matches a topic wants the name, so the proxy (one
 * map per proxy, i.e. per cluster, shared by every connection) and the
 * analyzer (one per capture) feed this map every such response and look
 * names up through it.
 *
 * Which responses teach it is read off the schema tables, not a list of
 * APIs: a struct (the body or any struct element) that holds a UUID field
 * named TopicId and a string field whose entity type is topicName, both
 * present and non-null, pairs them. Requests are never learnt from: the
 * broker is the authority on names, a client is not.
 *
 * Threads: lookups take no lock and never wait (an acquire load of the
 * table, one per probe); learning is serialised by a mutex. Entries are
 * immutable once published; a replaced entry or an outgrown table is
 * retired, not freed, until kd_topics_free(), so a name a reader holds
 * stays valid as long as the map lives. The map is bounded: at most
 * KD_TOPICS_MAX ids (then new ids are refused and counted), and at most
 * KD_TOPICS_MAX renames of known ids (a hostile peer renaming one id
 * forever cannot grow memory without bound).
 *
 *	struct kd_topics *map = kd_topics_new();
 *	kd_topics_learn_frame(map, api_key, api_version, frame, frame_len);
 *	struct kd_view name = kd_topics_get(map, id);   any thread, no lock
 *	kd_topics_free(&map);
 */
#ifndef KD_TOPICS_H
#define KD_TOPICS_H

#include <stddef.h>
#include <stdint.h>

#include "kd-t.h"

struct kd_tree;
struct kd_arena;
struct kd_topics; /* opaque */

#define KD_TOPICS_MAX 65536u   /* distinct topic ids kept */
#define KD_TOPICS_NAME_MAX 255 /* longer names are not learnt (Kafka's limit is 249) */

/* The text that stands for a topic known by id only: "topic-id:" and
 * Kafka's 22-character form of the UUID (URL-safe base64, no padding, as
 * org.apache.kafka.common.Uuid.toString() writes it). */
#define KD_TOPIC_ID_PREFIX "topic-id:"
#define KD_TOPIC_ID_TEXT 32 /* bytes kd_topic_id_text() needs, NUL included */

/* A new, empty map; NULL when memory runs out. */
struct kd_topics *kd_topics_new(void);
/* Frees the map, every entry and everything retired; *map = NULL. No
 * reader may use it any more. map may point to NULL. */
void kd_topics_free(struct kd_topics **map);

/* The name of topic id, or a null view (p NULL, null 1) when unknown. Takes
 * no lock; the bytes stay valid until kd_topics_free(). map may be NULL. */
struct kd_view kd_topics_get(const struct kd_topics *map, const uint8_t id[16]);

/* Records id -> name (copied). Returns 1 when the map changed, 0 when it
 * already held exactly that, -1 when refused: the all-zero id, an empty or
 * over-long name, the map full (KD_TOPICS_MAX ids, or as many renames), or
 * no memory. Thread-safe. */
int kd_topics_put(struct kd_topics *map, const uint8_t id[16], const uint8_t *name, size_t len);

/* Learns every (TopicId, topic name) pair of a decoded response tree (see
 * above: driven by the schema). Returns how many entries changed. A tree
 * of a request, or one that failed to decode, teaches nothing. */
int kd_topics_learn_tree(struct kd_topics *map, const struct kd_tree *t);

/* 1 when responses of (api_key, version) have a struct pairing TopicId
 * with a topic name, so that learning from them can be worth a decode;
 * 0 otherwise. Cheap after the first call per (key, version). */
int kd_topics_wants(int16_t api_key, int16_t version);

/* The one call for the data path: learns from one whole response frame
 * (its 4-byte size prefix, response header and body) of (api_key,
 * api_version). Does nothing, cheaply, for responses that pair no ids
 * (kd_topics_wants). Decodes in a == NULL ? an arena of its own : a (reset
 * before it returns). Returns the number of entries changed (>= 0), or a
 * negative KD_E* when the frame does not decode. Thread-safe. */
int kd_topics_learn_frame(struct kd_topics *map, int16_t api_key, int16_t api_version,
                          const uint8_t *frame, size_t len, struct kd_arena *a);

/* Ids known now. */
size_t kd_topics_count(const struct kd_topics *map);
/* Ids or renames refused because the map was full. */
uint64_t kd_topics_refused(const struct kd_topics *map);

/* Writes "topic-id:<22 chars>" and a NUL into buf (KD_TOPIC_ID_TEXT bytes);
 * returns its length (31). */
size_t kd_topic_id_text(const uint8_t id[16], char buf[KD_TOPIC_ID_TEXT]);

#endif
