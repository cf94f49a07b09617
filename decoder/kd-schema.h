/* kd-schema.h: look-ups over the generated schema tables (kd-schema-gen.c). */
#ifndef KD_SCHEMA_H
#define KD_SCHEMA_H

#include "kd-schema-t.h"

/* Every API in the spec, ordered by key. */
extern const struct kd_api kd_apis[];
extern const unsigned kd_napis;
/* The largest API key in the tables. */
extern const int16_t kd_api_key_max;

/* Headers and data schemas ("type": "header"/"data"), by name. */
extern const struct kd_msgdef kd_datadefs[];
extern const unsigned kd_ndatadefs;

extern const struct kd_errcode kd_errcodes[];
extern const unsigned kd_nerrcodes;

/* The API with this key, or NULL when the spec has none. O(1). */
const struct kd_api *kd_api_get(int16_t key);

/* Kafka's name for an API key ("Produce"), or NULL. */
const char *kd_api_name(int16_t key);

/* The request (is_request) or response schema of (key, version), or NULL
 * when the key is unknown or the version outside validVersions. */
const struct kd_msgdef *kd_msgdef_get(int16_t key, int16_t version, int is_request);

/* Kafka's name for an error code ("UNKNOWN_TOPIC_OR_PARTITION"), or NULL
 * for a code the table does not know. */
const char *kd_error_name(int16_t code);

/* 1 when a request or response of this API can hold a secret (a field
 * marked sensitive, kd-schema-t.h), or when key < 0 (a SASL v0 token): its
 * bytes are never shown, not even in a hex dump. */
int kd_api_sensitive(int16_t key);

/* A data or header schema by name ("LeaderChangeMessage"), or NULL. */
const struct kd_msgdef *kd_datadef_get(const char *name);

/* Whether field f's string, bytes, array or records length is compact
 * (varint) in version v of a message whose flexibility is flex: the
 * field's own flexibleVersions when it has them, else the message's. */
static inline int kd_field_compact(const struct kd_field *f, int16_t v, int flex)
{
	return f->has_flex ? kd_vers_has(f->flexible, v) : flex;
}

/* Whether field f travels in the tagged-field section in version v. */
static inline int kd_field_tagged(const struct kd_field *f, int16_t v)
{
	return f->tag >= 0 && kd_vers_has(f->tagged, v);
}

/* Bytes of a fixed-size wire type (enum kd_type), 0 for the variable-size
 * ones. */
static inline unsigned kd_type_width(unsigned type)
{
	switch (type) {
	case KD_T_BOOL:
	case KD_T_INT8:
		return 1;
	case KD_T_INT16:
	case KD_T_UINT16:
		return 2;
	case KD_T_INT32:
	case KD_T_UINT32:
		return 4;
	case KD_T_INT64:
	case KD_T_FLOAT64:
		return 8;
	case KD_T_UUID:
		return 16;
	default:
		return 0;
	}
}

#endif
