/* kd-schema-t.h: the types of the schema tables that tools/kwire-gen.py
 * generates from Kafka's JSON message schemas into kd-schema-gen.c.
 *
 * Field and message names are Kafka's own (the MSG/ JSON files), so a reader can
 * hold the tables next to the spec. */
#ifndef KD_SCHEMA_T_H
#define KD_SCHEMA_T_H

#include <stdint.h>

/* Wire types (WIRE-NOTES.md section 4). Whether a string, bytes, array or
 * records field uses the compact form follows from the message version
 * being flexible (and the field's own flexibleVersions override). */
enum kd_type {
	KD_T_NONE = 0,
	KD_T_BOOL,
	KD_T_INT8,
	KD_T_INT16,
	KD_T_UINT16,
	KD_T_INT32,
	KD_T_UINT32,
	KD_T_INT64,
	KD_T_FLOAT64,
	KD_T_UUID,
	KD_T_STRING,
	KD_T_BYTES,
	KD_T_RECORDS,
	KD_T_STRUCT, /* a nested struct: fields in kd_field.sub */
	KD_T_ARRAY,  /* element type in kd_field.elem; struct elements in .sub */
};

/* Kafka "entityType" of a field; lets generic code find topics, groups
 * and broker ids in any message without per-API code. */
enum kd_entity {
	KD_ENT_NONE = 0,
	KD_ENT_TOPIC_NAME,
	KD_ENT_BROKER_ID,
	KD_ENT_GROUP_ID,
	KD_ENT_PRODUCER_ID,
	KD_ENT_TRANSACTIONAL_ID,
};

/* An inclusive version range. "none" is {-1, -1}; "N+" is {N, INT16_MAX}. */
struct kd_vers {
	int16_t lo;
	int16_t hi;
};

static inline int kd_vers_has(struct kd_vers r, int v)
{
	return r.lo >= 0 && v >= r.lo && v <= r.hi;
}

struct kd_struct;

struct kd_field {
	const char *name;        /* Kafka's field name, e.g. "PartitionIndex" */
	uint8_t type;            /* enum kd_type */
	uint8_t elem;            /* KD_T_ARRAY: element type (KD_T_STRUCT for structs) */
	uint8_t entity;          /* enum kd_entity */
	uint8_t has_flex;        /* 1: .flexible overrides the message's flexibleVersions */
	uint8_t sensitive;       /* 1: holds a secret; never rendered (kwire-gen.py SENSITIVE) */
	int32_t tag;             /* tagged-field tag, or -1 */
	struct kd_vers versions; /* on the wire in these versions */
	struct kd_vers nullable; /* may be null in these versions */
	struct kd_vers tagged;   /* travels in the tagged section in these versions */
	struct kd_vers flexible; /* field-level flexibleVersions (only if has_flex) */
	const struct kd_struct *sub; /* KD_T_STRUCT, or KD_T_ARRAY of structs */
	/* The schema's "default", for messages kwire builds itself
	 * (kd-build.c): an integer or boolean value, or null. */
	int64_t dflt;
	uint8_t dflt_null;
};

struct kd_struct {
	const char *name; /* struct type name, e.g. "MetadataResponseBroker" */
	uint16_t nfields;
	const struct kd_field *fields;
};

/* One message: a request, a response, a header or a data schema. */
struct kd_msgdef {
	const char *name;        /* e.g. "ProduceRequest" */
	struct kd_vers valid;    /* validVersions */
	struct kd_vers flexible; /* flexibleVersions */
	const struct kd_struct *body;
};

/* Kafka "listeners" of a request schema, as bits. */
enum kd_listener {
	KD_LSN_ZKBROKER = 1,
	KD_LSN_BROKER = 2,
	KD_LSN_CONTROLLER = 4,
};

struct kd_api {
	int16_t key;
	const char *name; /* e.g. "Produce" (the schema name less Request) */
	uint8_t listeners;
	uint8_t unstable_latest; /* latestVersionUnstable */
	struct kd_vers deprecated;
	struct kd_msgdef req;
	struct kd_msgdef resp;
};

struct kd_errcode {
	int16_t code;
	const char *name; /* e.g. "UNKNOWN_TOPIC_OR_PARTITION" */
};

#endif
