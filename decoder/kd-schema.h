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

/* A data or header schema by name ("LeaderChangeMessage"), or NULL. */
const struct kd_msgdef *kd_datadef_get(const char *name);

#endif
