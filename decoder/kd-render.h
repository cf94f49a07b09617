/* kd-render.h: JSON and indented-text rendering of a decoded tree, and the
 * reusable JSON writer helpers (the summary and analyzer output use them).
 *
 * Decisions, so every output of kwire agrees:
 * - Kafka STRING fields: a JSON string when the bytes are valid UTF-8. When
 *   not, the field is rendered as the base64 of its bytes and a sibling key
 *   "<Name>_encoding":"base64" is added (the records key/value convention).
 *   The generic kd_json_str() cannot add a sibling: it writes each invalid
 *   byte as \u00XX (Latin-1 reading, lossy) and returns 1 when it did.
 * - BYTES: base64 (RFC 4648, padded) in a JSON string; null as null.
 * - UUID: Kafka's own text form, URL-safe base64 without padding
 *   (22 characters, org.apache.kafka.common.Uuid.toString()).
 * - INT64 and every integer: JSON numbers (exact; a reader that parses
 *   numbers as doubles loses precision past 2^53, that is its choice).
 * - FLOAT64: %.17g; NaN and infinities as the strings "NaN", "Infinity",
 *   "-Infinity" (JSON has no such numbers).
 * - BOOL: true/false (the raw byte is not shown).
 * - Unknown tagged fields: "_unknown_tags":[{"tag":N,"data":"<base64>"}].
 * - RECORDS: {"batches":[...], "truncated_tail":BYTES?} decoded through
 *   kd-records (KD_RENDER_NO_RECORDS keeps them as base64). */
#ifndef KD_RENDER_H
#define KD_RENDER_H

#include <stddef.h>
#include <stdint.h>

#include "kd-cur.h"
#include "kd-tree-t.h"

enum kd_render_flag {
	KD_RENDER_NO_RECORDS = 1, /* RECORDS as base64, not decoded */
	KD_RENDER_PRETTY = 2,     /* JSON: newlines and two-space indent */
	KD_RENDER_META = 4,       /* JSON: wrap as {"api":..,"version":..,"body":{...}} */
};

/* One JSON object for the tree's body, appended to out. A tree that failed
 * to decode renders {"error":"...","raw":"<base64>"}. Returns KD_OK or
 * KD_ENOMEM (out->err). */
int kd_render_json(const struct kd_tree *t, struct kd_wbuf *out, unsigned flags);

/* An indented, readable form of the same tree, one field per line
 * ("ErrorCode: 3 UNKNOWN_TOPIC_OR_PARTITION"), appended to out. */
int kd_render_text(const struct kd_tree *t, struct kd_wbuf *out, unsigned flags);

/* ---- reusable writer helpers ---- */

/* 1 when p[0..len) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int kd_utf8_valid(const uint8_t *p, size_t len);

/* A quoted JSON string of p[0..len): escapes ", \, control characters;
 * valid UTF-8 passes through; each byte of an invalid sequence is written
 * as \u00XX. Returns 1 when some byte was invalid (lossy), else 0. */
int kd_json_str(struct kd_wbuf *out, const uint8_t *p, size_t len);

/* kd_json_str() of a NUL-terminated C string. */
int kd_json_cstr(struct kd_wbuf *out, const char *s);

/* A quoted, padded standard base64 string of p[0..len). */
void kd_json_bytes(struct kd_wbuf *out, const uint8_t *p, size_t len);

/* Raw base64 (no quotes): url = 1 for URL-safe without padding. */
void kd_base64(struct kd_wbuf *out, const uint8_t *p, size_t len, int url);

/* A UUID in Kafka's form (quoted, 22 chars URL-safe base64). */
void kd_json_uuid(struct kd_wbuf *out, const uint8_t uuid[16]);

/* A string view: null, or kd_json_str(). */
int kd_json_view(struct kd_wbuf *out, const struct kd_view *v);

/* printf into the buffer (bounded; formats longer than 1 KiB are cut). */
void kd_w_fmt(struct kd_wbuf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* NUL-terminated text without quotes or escaping. */
void kd_w_cstr(struct kd_wbuf *out, const char *s);

/* A Prometheus label value (text exposition format 0.0.4), without its
 * quotes: backslash, double quote and line feed escaped. */
void kd_w_prom_label(struct kd_wbuf *out, const char *s);

#endif
