/* rule-yaml.h: the YAML readers of the rules loader (rule-load.c), shared
 * with the files that parse a section's own keys (rule-names.c for the
 * names part of `rewrite:`, and the other rewrite and mirror parts).
 * Private to rules/. Every reader reports FILE:LINE:COL of the node at
 * fault in y->err and returns -1. */
#ifndef RULE_YAML_H
#define RULE_YAML_H

#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "rule-t.h"

struct yl {
	yaml_document_t *doc;
	const char *name;
	char *err;
	size_t errlen;
	struct rule_set *rs;
};

/* "FILE:LINE:COL: message", 1-based; returns -1. */
int yerr(struct yl *y, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
yaml_node_t *ynode(struct yl *y, int id);
/* A scalar as a NUL-terminated copy in buf (cap bytes with the NUL). */
int y_str(struct yl *y, const yaml_node_t *node, const char *key, char *buf, size_t cap);
/* A scalar as a malloc'd string in *out (freed first). */
int y_dup(struct yl *y, const yaml_node_t *node, const char *key, char **out);
int y_bool(struct yl *y, const yaml_node_t *node, const char *key, int *out);
/* An integer (or size, with units) in [lo, hi]. */
int y_size(struct yl *y, const yaml_node_t *node, const char *key, int64_t lo, int64_t hi,
           int64_t *out);
/* fn for node when it is a scalar, or for each item of a list of scalars. */
typedef int y_item_fn(struct yl *y, const yaml_node_t *item, const char *key, void *ctx);
int y_each(struct yl *y, const yaml_node_t *node, const char *key, y_item_fn *fn, void *ctx);
/* fn for each pair of a mapping (keys: plain words of < 64 bytes, no
 * duplicates). */
typedef int y_pair_fn(struct yl *y, const char *key, const yaml_node_t *knode,
                      const yaml_node_t *val, void *ctx);
int y_map(struct yl *y, const yaml_node_t *node, const char *what, y_pair_fn *fn, void *ctx);

/* ---- a Kafka sink's `tls:` and `sasl:` (rule-sink.c) ----
 *
 * An audit rule's topic and a mirror rule's cluster take, in their `to:`,
 *   tls: true | {ca: FILE, cert: FILE, key: FILE, verify: true}
 *   sasl: {mechanism: PLAIN|SCRAM-SHA-256|SCRAM-SHA-512, username: U,
 *          password: P | password_file: FILE}
 * which become librdkafka properties (security.protocol, ssl.*, sasl.*)
 * once the whole `to:` is read. */
struct rule_sink_sec {
	uint8_t tls, sasl, no_verify, password_inline;
	char *ca, *cert, *key;
	char mechanism[16];
	char *username, *password, *password_file;
};
/* Adds one property; 0, or -1 when out of memory. */
typedef int rule_sink_prop_fn(void *ctx, const char *key, const char *value);
/* One key of a `to:`: 0 (read), -1 (error) or 1 (not tls or sasl). */
int rule_sink_sec_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                       const yaml_node_t *val, struct rule_sink_sec *s);
/* Once the `to:` (node) is read: checks s against the properties given
 * (props: nprops {key, value} pairs; a security property there and tls
 * or sasl here is an error) and adds s's properties through add. */
int rule_sink_sec_finish(struct yl *y, const yaml_node_t *node, struct rule_sink_sec *s,
                         char *const *props, size_t nprops, rule_sink_prop_fn *add, void *ctx);
void rule_sink_sec_free(struct rule_sink_sec *s);

/* ---- rewrite rules, records part (rule-rewrite.c) ---- */

/* The keys of a rewrite rule's records part, for "unknown key" messages. */
#define RULE_REWRITE_KEYS "headers, mask, hash_key_file, on_error"
/* One key of a rewrite rule: 0 (read), -1 (error, in y->err) or 1 (not a
 * records key). */
int rule_rewrite_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                      const yaml_node_t *val, struct rule *rule);
/* Checks a rewrite rule's records part once all its keys are read (and
 * reads the hash key); 0 when it has none. */
int rule_rewrite_finish(struct yl *y, const yaml_node_t *node, struct rule *rule);
void rule_rewrite_free(struct rule *rule);
/* Whether the rule reads request bodies (it rewrites Produce records). */
int rule_rewrite_needs_body(const struct rule *rule);

#endif
