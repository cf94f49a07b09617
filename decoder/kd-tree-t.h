/* kd-tree-t.h: the types of a decoded, editable Kafka message body.
 *
 * A tree is built by kd_tree_decode() (kd-tree.h) from the schema tables
 * (kd-schema-t.h); every node lives in a struct kd_arena and the whole tree
 * goes away with kd_arena_reset(). String, bytes and records values are
 * views into the decoded body (or into the arena after an edit), so the
 * body must outlive the tree.
 *
 * Shape:
 *
 *   root (KD_T_STRUCT, field NULL)
 *    +- kids[0..nkids)       present regular fields, schema order, then the
 *    |                       tagged-field section in wire order: known tags
 *    |                       decoded as their field (KD_NF_TAGGED), unknown
 *    |                       tags as KD_T_NONE nodes holding the raw payload
 *    +- a KD_T_ARRAY node: kids = the elements (KD_NF_ELEM, same field as
 *                          the array, type = the element type)
 */
#ifndef KD_TREE_T_H
#define KD_TREE_T_H

#include <stdint.h>

#include "kd-schema-t.h"
#include "kd-t.h"

struct kd_arena;

/* kd_node.flags */
enum kd_node_flag {
	KD_NF_TAGGED = 1,   /* travelled in a tagged-field section (tag in .tag) */
	KD_NF_COMPACT = 2,  /* string/bytes/array/records length is compact */
	KD_NF_NULLABLE = 4, /* may be null in this version (nullable structs: INT8 marker) */
	KD_NF_ELEM = 8,     /* an array element; .field is the array's field */
	KD_NF_FLEX = 16,    /* KD_T_STRUCT: ends with a tagged-field section */
	KD_NF_EDITED = 32,  /* value set through kd_node_set_* */
};

struct kd_node {
	const struct kd_field *field; /* schema field; NULL for the root and raw tags */
	const struct kd_struct *sub;  /* KD_T_STRUCT: its struct type */
	struct kd_node *kids;         /* struct fields or array elements, contiguous */
	uint32_t nkids;
	uint32_t cap;  /* allocated slots in kids */
	int32_t tag;   /* KD_NF_TAGGED: the tag number, else -1 */
	uint8_t type;  /* enum kd_type; KD_T_NONE = unknown tagged field */
	uint8_t null;  /* Kafka null (string, bytes, array, struct) */
	uint8_t flags; /* enum kd_node_flag */
	union {
		int64_t i;        /* INT8..INT64, UINT16, UINT32 (zero/sign-extended) */
		uint64_t u;       /* BOOL: the raw byte as sent (any nonzero is true) */
		double d;         /* FLOAT64 */
		uint8_t uuid[16]; /* UUID, wire order */
		struct kd_view v; /* STRING, BYTES, RECORDS, raw tagged payload */
	} val;
};

/* kd_tree.status, besides KD_OK / negative KD_E* codes from decoding. */
struct kd_tree {
	struct kd_node *root;        /* NULL when nothing could be decoded */
	struct kd_arena *arena;      /* where the nodes and edited values live */
	const struct kd_msgdef *def; /* the schema used; NULL if unsupported */
	int16_t api_key;
	int16_t version;       /* version actually used to decode the body */
	int16_t asked_version; /* version from the request header */
	uint8_t is_request;
	uint8_t flexible;    /* version is in the message's flexibleVersions */
	uint8_t v0_fallback; /* ApiVersions response decoded as v0 (WIRE-NOTES 2) */
	int status;          /* KD_OK or the decode error */
	uint32_t trailing;   /* KD_OK: bytes after the complete body, kept in raw */
	struct kd_view raw;  /* the whole body as given (always set) */
	size_t err_off;      /* body offset where decoding failed */
	char err_msg[192];   /* "Topics[2].Partitions: array count ..." or "" */
};

/* kd_tree_walk() callback: called for each node in pre-order (a struct's
 * fields, then its tagged fields; an array's elements). parent is NULL for
 * the root. Return 0 to go on, KD_WALK_SKIP to skip this node's children,
 * anything else to stop the walk (kd_tree_walk returns that value). */
enum { KD_WALK_SKIP = 1 };
struct kd_walk_ctx {
	struct kd_node *parent;
	unsigned depth; /* root = 0 */
	uint32_t index; /* position in parent->kids */
};
typedef int (*kd_walk_fn)(void *arg, struct kd_node *node, const struct kd_walk_ctx *wc);

#endif
