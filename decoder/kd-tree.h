/* kd-tree.h: the generic, table-driven walk of any Kafka body into an
 * editable tree (kd-tree-t.h), and its byte-exact re-encoding.
 *
 * Ownership: nodes and edited values live in the arena given to
 * kd_tree_decode(); string/bytes/records views point into the body, which
 * the caller keeps alive while the tree is in use. Nothing here does I/O. */
#ifndef KD_TREE_H
#define KD_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "kd-cur.h"
#include "kd-tree-t.h"

/* Decodes body (the bytes after the request or response header) of
 * (api_key, version). Returns KD_OK, or a negative KD_E* also kept in
 * t->status with t->err_msg naming the field path and t->err_off:
 *   KD_EUNSUPPORTED  unknown api key or version: t->root is NULL, t->raw
 *                    holds the body, nothing is guessed;
 *   KD_ESHORT        the body ends inside a field;
 *   KD_EMALFORMED    impossible values (bad length, count beyond the bytes
 *                    left, tagged payload size mismatch);
 *   KD_ELIMIT        the arena's limit or the nesting limit was reached.
 * On error t->root is NULL. Bytes after a complete body are not an error
 * (Kafka's own parsers ignore them): KD_OK with t->trailing set to their
 * count, a decode warning for the caller to report; kd_tree_encode()
 * writes them back after the body. RECORDS fields are kept as views (kd-records.h
 * decodes them lazily). An ApiVersions response of version > 0 whose
 * ErrorCode is UNSUPPORTED_VERSION (35) is decoded as v0 first
 * (t->v0_fallback = 1, t->version = 0, t->asked_version = version). */
int kd_tree_decode(struct kd_tree *t, struct kd_arena *a, int16_t api_key, int16_t version,
                   int is_request, const uint8_t *body, size_t len);

/* Decodes body with an explicit message schema (a header or a data schema
 * from kd_datadef_get(), e.g. "LeaderChangeMessage"); api_key is -1. */
int kd_tree_decode_def(struct kd_tree *t, struct kd_arena *a, const struct kd_msgdef *def,
                       int16_t version, const uint8_t *body, size_t len);

/* A new body of (api_key, version, direction) in a: every regular field
 * present with the schema's default (or zero, empty, non-null), arrays
 * empty, no tagged fields. For messages kwire writes itself (kd-build.h).
 * Returns KD_OK, KD_EUNSUPPORTED (not in the spec), KD_ENOMEM or
 * KD_ELIMIT. */
int kd_tree_init_default(struct kd_tree *t, struct kd_arena *a, int16_t api_key,
                         int16_t version, int is_request);

/* Writes the body again into w (appending). An unedited tree writes exactly
 * the bytes it was decoded from, trailing bytes (t->trailing) included;
 * edits change every enclosing length and tagged size, and the trailing
 * bytes follow the re-encoded body unchanged. A tree that failed to decode with KD_EUNSUPPORTED
 * writes its raw body. Returns KD_OK, KD_ENOMEM (w->err) or KD_EMALFORMED for a tree that failed to
 * decode otherwise. */
int kd_tree_encode(const struct kd_tree *t, struct kd_wbuf *w);

/* Bytes kd_tree_encode() would write. */
size_t kd_tree_encoded_size(const struct kd_tree *t);

/* ---- navigation ---- */

/* The child of a struct node named by Kafka's field name ("Brokers"), or
 * NULL. Compares names: for the cold edit path, not for hot loops. */
struct kd_node *kd_node_child(const struct kd_node *n, const char *name);

/* Element i of an array node, or NULL. */
static inline struct kd_node *kd_node_elem(const struct kd_node *n, uint32_t i)
{
	return n && n->type == KD_T_ARRAY && i < n->nkids ? &n->kids[i] : NULL;
}

/* Kafka's field name of a node, or NULL (root, unknown tag). */
static inline const char *kd_node_name(const struct kd_node *n)
{
	return n->field ? n->field->name : NULL;
}

/* The schema entity of a node (KD_ENT_*), for array elements too. */
static inline int kd_node_entity(const struct kd_node *n)
{
	return n->field ? n->field->entity : KD_ENT_NONE;
}

/* Integer value of an integer/bool node (0 for other types). */
static inline int64_t kd_node_int(const struct kd_node *n)
{
	return n->type == KD_T_BOOL ? (n->val.u != 0) : n->val.i;
}

/* Calls fn for every node in pre-order; see kd_walk_fn. Returns 0 when the
 * walk ended, else the value that stopped it. */
int kd_tree_walk(const struct kd_tree *t, kd_walk_fn fn, void *arg);

/* Same, from any node (wc of that node: NULL parent, depth 0). */
int kd_node_walk(struct kd_node *n, kd_walk_fn fn, void *arg);

/* Calls fn only for nodes whose schema entity is ent (e.g.
 * KD_ENT_TOPIC_NAME: every topic name in any API, array elements too). */
int kd_tree_walk_entity(const struct kd_tree *t, int ent, kd_walk_fn fn, void *arg);

/* ---- edits (values copied into t->arena) ---- */

/* Sets an integer node (INT8..INT64, UINT16, UINT32, BOOL). Returns
 * KD_OK, or KD_EMALFORMED when v does not fit the type. */
int kd_node_set_int(struct kd_node *n, int64_t v);

/* Sets a STRING or BYTES (or RECORDS) node to a copy of p[0..len).
 * Returns KD_OK, KD_ENOMEM, or KD_EMALFORMED (wrong type, or too long for
 * a non-compact INT16 length). */
int kd_node_set_str(struct kd_tree *t, struct kd_node *n, const void *p, size_t len);

/* Sets a nullable string/bytes/array/struct node to null (KD_EMALFORMED if
 * the field is not nullable in this version). */
int kd_node_set_null(struct kd_node *n);

int kd_node_set_uuid(struct kd_node *n, const uint8_t uuid[16]);
int kd_node_set_f64(struct kd_node *n, double d);

/* Appends an element to an array node, a deep copy of element 'proto'
 * (< nkids) or, with proto == UINT32_MAX, a default element (zeros, empty
 * strings, empty arrays, no tagged fields). Returns the new element or
 * NULL (KD_ENOMEM / limit). Earlier element pointers stay valid only until
 * the array grows: look them up again by index. */
struct kd_node *kd_node_array_add(struct kd_tree *t, struct kd_node *arr, uint32_t proto);

/* Removes element i of an array node. KD_OK or KD_EMALFORMED. */
int kd_node_array_remove(struct kd_node *arr, uint32_t i);

/* The top-level ErrorCode of a body (without frame size and header),
 * read without decoding the rest: the body's fields in (api_key, version,
 * direction) are fixed-width up to an INT16 named ErrorCode. This is how
 * an answer that does not decode in its own version can still be told to
 * be an error: a broker that does not support the ApiVersions version a
 * client asked for answers UNSUPPORTED_VERSION in a body of its own
 * choosing (v0, KIP-511), and ErrorCode comes first in every ApiVersions
 * version. Returns KD_OK (*code set), KD_EUNSUPPORTED when the schema has
 * no such leading ErrorCode, or KD_ESHORT. */
int kd_body_error_code(int16_t api_key, int16_t version, int is_request, const uint8_t *body,
                       size_t len, int16_t *code);

#endif
