/* rule-mirror.h: the `mirror:` and `tap:` sections of a rules file
 * (docs/rules.md). Parsing only; the proxy applies them (px-mirror.c,
 * px-tap.c).
 *
 *   mirror:
 *     - name: orders-to-dr
 *       match: {topic: "orders.*"}     # Produce only (implied)
 *       topic: "dr.{topic}"            # template; default "{topic}"
 *       partition: same                # same (default) | key
 *       to:                            # the mirror cluster (a sink)
 *         bootstrap: dr-kafka:9092
 *         queue_bytes: 64MiB           # byte budget, held records included
 *         tls: {ca: dr-ca.pem}         # the cluster's own security (rule-sink.c)
 *         sasl: {mechanism: SCRAM-SHA-512, username: u, password_file: f}
 *         properties: {linger.ms: 5}   # librdkafka producer properties
 *   tap:
 *     - name: billing
 *       match: {client_id: "billing-*"}
 *       to: billing.pcapng
 *       max_bytes: 100MiB              # rotation (0: never)
 *       files: 10
 */
#ifndef RULE_MIRROR_H
#define RULE_MIRROR_H

#include <stdatomic.h>
#include <stdio.h>

#include "rule-t.h"
#include "rule-yaml.h"

#define RULE_MIRROR_QUEUE_DEFAULT (64ll << 20)

/* A mirror rule's action. */
struct rule_mirror {
	char *topic;         /* template; "{topic}" is the record's topic */
	uint8_t by_key;      /* partition: key (the sink's murmur2 hash), else same */
	char *bootstrap;     /* to.bootstrap */
	int64_t queue_bytes; /* to.queue_bytes */
	/* to.properties, then what to.tls and to.sasl say, as {"key", "value",
	 * ..., NULL} for px_ksink_conf.props */
	char **props;
	unsigned nprops; /* pairs */
	/* The proxy's sink for this rule, index + 1 (0: none yet); set by the
	 * mirror thread, read by workers (px-mirror.c). */
	_Atomic int sink;
};

/* A tap rule's action. */
struct rule_tap {
	char *file;
	int64_t max_bytes;
	unsigned files;
};

/* A key of a mirror or tap rule (name and match aside): 0 taken, -1 an
 * error (in y), 1 not a key of the section. */
int rule_mirror_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                     const yaml_node_t *val, struct rule *rule);
/* Checks a finished mirror or tap rule, fills defaults; 0 or -1. */
int rule_mirror_finish(struct yl *y, const yaml_node_t *node, struct rule *rule);
void rule_mirror_free(struct rule *rule);
/* The action, for `kwire rules check`. */
void rule_mirror_dump(const struct rule *rule, FILE *f);

/* The mirror topic of a record of topic t (tlen bytes) under tpl, into
 * out (cap bytes, NUL-terminated). Returns its length, or -1 when it would
 * not be a valid topic name (empty, longer than 249 bytes). */
int rule_mirror_topic(const char *tpl, const char *t, size_t tlen, char *out, size_t cap);

/* Whether mirror rule rule copies topic (an index into req->topics) of
 * Produce request req (its facts, under the cluster's names): the matcher
 * of the proxy's mirror thread (px-mirror.c) and of `kwire decode
 * --rules`. 0 for rules of other sections. */
int rule_mirror_matches(const struct rule *rule, const struct rule_req *req, int topic);
/* Whether tap rule rule writes request req (its facts) and its answer to
 * its file: a request that names no topic by its request-level matchers,
 * else by any one of its topics. The matcher of the proxy (px-conn.c) and
 * of `kwire decode --rules`. 0 for rules of other sections. */
int rule_tap_matches(const struct rule *rule, const struct rule_req *req);
#endif
