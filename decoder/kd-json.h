/* kd-json.h: masking fields of a JSON value chosen by path, everything
 * else kept byte for byte (record values rewritten by `rewrite:` rules,
 * docs/rules.md). Pure: no I/O; the hash is the caller's callback.
 *
 * A path names values inside the document:
 *
 *	user.email          member "email" of member "user" of the top object
 *	$.user.email        the same ("$" and "$." in front are optional)
 *	items[*].card       member "card" of every element of array "items"
 *	items[0]            the first element
 *	*.secret            member "secret" of any member of the top object
 *	["a.b"].c           a member whose name holds a dot or a bracket
 *
 * kd_json_mask() parses the value (RFC 8259, at most KD_JSON_DEPTH levels
 * of nesting) and replaces each value a path names: with a fixed JSON
 * text (KD_JMASK_REPLACE), with the JSON string the hash callback writes
 * (KD_JMASK_HASH), or takes the member or element out with its comma
 * (KD_JMASK_DROP). A value a path names is not looked into for other
 * paths: the first mask (in order) that names it decides. */
#ifndef KD_JSON_H
#define KD_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "kd-cur.h"

#define KD_JPATH_MAX 16  /* steps in one path */
#define KD_JSON_DEPTH 64 /* nesting of arrays and objects */

enum kd_jstep_kind {
	KD_JS_KEY = 0,   /* a member by name */
	KD_JS_ANY_KEY,   /* any member: * */
	KD_JS_INDEX,     /* an array element by index: [N] */
	KD_JS_ANY_INDEX, /* any element: [*] */
};

struct kd_jstep {
	uint8_t kind;
	uint32_t index;  /* KD_JS_INDEX */
	const char *key; /* KD_JS_KEY: the member name (unescaped), not NUL-terminated */
	uint32_t key_len;
};

/* A compiled path. Keys point into the text given to kd_jpath_parse (or
 * into its own buf when a quoted key needed unescaping): keep the text
 * alive and the struct in place. */
struct kd_jpath {
	unsigned n;
	struct kd_jstep s[KD_JPATH_MAX];
	char buf[256]; /* quoted keys' text */
};

/* Compiles path text[0..len). Returns 0, or -1 with a message in err. */
int kd_jpath_parse(struct kd_jpath *path, const char *text, size_t len, char *err, size_t errlen);

enum kd_jmask_op {
	KD_JMASK_REPLACE = 0,
	KD_JMASK_HASH,
	KD_JMASK_DROP,
};

struct kd_jmask {
	const struct kd_jpath *path;
	uint8_t op;
	const char *with; /* REPLACE: the JSON text written instead (a valid JSON value) */
	size_t with_len;
	const void *arg; /* HASH: for the callback (a key) */
};

/* HASH: writes to out the JSON text that replaces a value (a JSON string,
 * quotes included) for mask m. in is the value's content: a string's
 * unescaped bytes, or the JSON text of any other value. Returns 0, or -1
 * (nothing written). */
typedef int kd_json_hash_fn(const struct kd_jmask *m, const uint8_t *in, size_t len,
                            struct kd_wbuf *out);

/* Masks JSON value p[0..len) into out (appended). Returns the number of
 * values masked (>= 0; out then holds the whole new value, equal to the
 * input when 0), KD_EMALFORMED when p is not one JSON value (leading and
 * trailing whitespace allowed), KD_ELIMIT when nesting is too deep,
 * KD_ENOMEM, or -1 from the hash callback
 * as KD_EMALFORMED. On error out is back at its old length. */
int kd_json_mask(const uint8_t *p, size_t len, const struct kd_jmask *masks, unsigned n,
                 kd_json_hash_fn *hash, struct kd_wbuf *out);

/* Whether p[0..len) is exactly one JSON value (the parser above, no masks). */
int kd_json_valid(const uint8_t *p, size_t len);

/* Appends s[0..len) as a JSON string (quotes, escapes for '"', '\\' and
 * control characters). */
void kd_json_w_string(struct kd_wbuf *out, const void *s, size_t len);

#endif
