/* kd-walk.h: a resumable, skip-only walk over one Kafka body, driven by the
 * schema tables, fed in chunks of any split. No tree, no allocation, no I/O.
 *
 * What it is for: finding where a top-level field or the top-level tagged
 * section of a large body starts, while the body streams past, without
 * holding the body. The proxy uses it to rewrite the broker addresses of a
 * Metadata response (Brokers come before Topics) and of Produce v10+ /
 * Fetch v16+ responses (NodeEndpoints is a top-level tagged field, after
 * every partition's records) while holding only the part it rewrites.
 *
 *   body:  field field ... [stop field] ... field | tagged section | (extra)
 *          ^ off 0         ^ KD_WALK_STOP         ^ KD_WALK_STOP   ^ KD_WALK_END
 *
 * Strings, bytes, records and tagged-field payloads are skipped by their
 * length, never buffered. Only the few bytes of a count, a length or a
 * marker split across two chunks are kept (a 16-byte scratch), and, when a
 * value callback is set, topic names and topic ids (up to KD_WALK_CAP
 * bytes each) so that the caller can learn topic-id -> name pairs as they
 * stream past. Tagged-field payloads are not looked into (the tree decodes
 * them where they matter). Memory: sizeof(struct kd_walk), whatever the
 * body.
 *
 * Checks are those of the tree decoder (kd-tree.h) for the parts it walks:
 * a length or count beyond the bytes left of the body, a negative length
 * other than -1, a null in a non-nullable field, varints over 5 bytes, and
 * nesting deeper than KD_WALK_DEPTH are errors. */
#ifndef KD_WALK_H
#define KD_WALK_H

#include <stddef.h>
#include <stdint.h>

#include "kd-cur.h"
#include "kd-schema-t.h"

#define KD_WALK_DEPTH 16 /* struct and array levels (Kafka schemas use < 8) */
#define KD_WALK_CAP 256  /* longest captured value (topic names are <= 249) */

/* kd_walk_feed() results besides KD_NEED_MORE and the negative KD_E*. */
enum kd_walk_rc {
	KD_WALK_STOP = 1, /* at a stop point: w->off is its body offset */
	KD_WALK_END = 2,  /* the body's fields end at w->off (bytes may follow) */
};

/* Called with a captured value (a topic name, KD_ENT_TOPIC_NAME, or a
 * TopicId) at nesting depth depth, and with f == NULL when the struct at
 * depth ends, so that values of one struct can be paired. p is valid
 * during the call only. */
typedef void kd_walk_value_fn(void *arg, unsigned depth, const struct kd_field *f, const uint8_t *p,
                              size_t len);

struct kd_walk_lvl {
	const struct kd_struct *st; /* the struct walked at this level */
	const struct kd_field *arr; /* or the array whose elements are walked */
	uint32_t left;              /* array elements, or tagged fields, left */
	uint16_t i;                 /* next field of st */
	uint8_t phase;              /* fields, tagged-field count, tagged fields */
};

/* All fields are private; zero it with kd_walk_init(). */
struct kd_walk {
	const struct kd_struct *root;
	int16_t version;
	uint8_t flex;
	uint8_t stop_tags;                 /* stop before the top-level tagged section */
	const struct kd_field *stop_field; /* stop before this top-level field */
	kd_walk_value_fn *on_value;
	void *arg;

	uint64_t len;  /* body length */
	uint64_t off;  /* body bytes walked */
	uint64_t skip; /* bytes to pass over */
	unsigned depth;
	struct kd_walk_lvl lvl[KD_WALK_DEPTH];

	/* The value being read: a token of tok_need bytes (0xff: a varint)
	 * gathered in tok, for op, of field f. */
	uint8_t op;
	uint8_t tok_need;
	uint8_t tok_len;
	uint8_t elem; /* f's value is an array element */
	uint8_t tok[16];
	const struct kd_field *f;
	uint8_t stopped_field; /* the stop points were reported */
	uint8_t stopped_tags;
	uint8_t done;    /* KD_WALK_END was reported */
	uint8_t capture; /* the bytes skipped are captured */
	uint32_t ents;   /* strings captured: 1u << KD_ENT_*; 0: topic names */
	uint32_t missed; /* captured kinds of strings longer than KD_WALK_CAP, not captured */
	uint32_t cap_len;
	uint8_t cap[KD_WALK_CAP];
};

/* Starts a walk over a body of body_len bytes of (api_key, version,
 * direction). Returns KD_OK or KD_EUNSUPPORTED (unknown key or version). */
int kd_walk_init(struct kd_walk *w, int16_t api_key, int16_t version, int is_request,
                 uint64_t body_len);

/* Makes the walk stop before the top-level field named name (Kafka's
 * name, e.g. "Topics"). KD_OK, or KD_EUNSUPPORTED when the version has no
 * such regular field. */
int kd_walk_stop_before(struct kd_walk *w, const char *name);

/* Makes the walk stop before the top-level tagged section. KD_OK, or
 * KD_EUNSUPPORTED when the version is not flexible. */
int kd_walk_stop_at_tags(struct kd_walk *w);

/* Sets the value callback (topic names and ids, struct ends). */
void kd_walk_on_value(struct kd_walk *w, kd_walk_value_fn *fn, void *arg);

/* Which strings the value callback gets: those of the entities in ents
 * (1u << KD_ENT_*; 0, the default, is topic names). When the callback
 * runs for a string, w->off is the body offset of its end and w->tok_len
 * the width of its length prefix, so that a caller can replace it in the
 * body. A wanted string longer than KD_WALK_CAP is not captured: it is
 * counted in w->missed. */
void kd_walk_capture(struct kd_walk *w, uint32_t ents);

/* Inside a value callback: the elements that follow the current one in
 * the innermost array around the walk's position (0 in the last element,
 * or outside any array). Lets a caller know that no more elements, and
 * so no more of their values, come. */
uint32_t kd_walk_elems_after(const struct kd_walk *w);

/* Feeds the next len bytes of the body. *used is set to the bytes walked.
 * Returns KD_NEED_MORE (all of them walked, the body goes on),
 * KD_WALK_STOP (stopped before the stop point, which is w->off; feed the
 * rest again to go on), KD_WALK_END (the body's fields ended at w->off;
 * *used excludes what follows), or a negative KD_E* (the walk is over;
 * w->off is where it failed). Bytes past body_len are never walked: a
 * body that ends inside a field gives KD_ESHORT. */
int kd_walk_feed(struct kd_walk *w, const uint8_t *p, size_t len, size_t *used);

/* Appends the default encoding (zeros, empty strings and arrays, present
 * nullable structs) of the top-level fields [from, to) of (api_key,
 * version, direction), in schema order, skipping those absent or tagged
 * in version, and then, if tags and the version is flexible, an empty
 * tagged section. Lets a caller decode a part of a body with the tree
 * decoder by completing it with defaults. Returns KD_OK, KD_EUNSUPPORTED
 * or w->err. */
int kd_body_defaults(int16_t api_key, int16_t version, int is_request, unsigned from, unsigned to,
                     int tags, struct kd_wbuf *w);

/* The index in the top-level struct of the field named name, or -1. */
int kd_body_field_index(int16_t api_key, int16_t version, int is_request, const char *name);

#endif
