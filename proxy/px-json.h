/* px-json.h: a small JSON reader (RFC 8259) for what kwire reads as JSON:
 * JWKS files and JWT headers and payloads (px-jwt.c).
 *
 *	struct px_json js;
 *	if (px_json_parse(&js, text, len, 256) == 0) {
 *		const struct px_json_node *sub = px_json_get(&js, js.root, "sub");
 *		...
 *		px_json_free(&js);
 *	}
 *
 * One allocation holds every node and every decoded string; at most
 * max_nodes nodes and 32 levels of nesting. Strings are decoded (escapes,
 * \u with surrogate pairs, to UTF-8) and NUL-terminated; a string with an
 * escaped NUL is refused (no name kwire reads may hold one). */
#ifndef PX_JSON_H
#define PX_JSON_H

#include <stddef.h>
#include <stdint.h>

enum px_json_type {
	PX_JSON_NULL = 0,
	PX_JSON_FALSE,
	PX_JSON_TRUE,
	PX_JSON_NUM,
	PX_JSON_STR,
	PX_JSON_ARR,
	PX_JSON_OBJ
};

struct px_json_node {
	uint8_t type;
	const char *key; /* a member of an object: its name; else NULL */
	const char *str; /* PX_JSON_STR: the value; PX_JSON_NUM: its text */
	size_t len;      /* bytes of str */
	double num;      /* PX_JSON_NUM */
	int32_t kid;     /* arrays and objects: first child, -1 none */
	int32_t next;    /* next sibling, -1 none */
};

struct px_json {
	struct px_json_node *nodes;
	int32_t n, cap;
	int32_t root;
	char *strs; /* decoded strings */
	size_t slen, scap;
	char err[128]; /* why px_json_parse failed, with the byte offset */
};

/* Parses p[0..len) (one value, whitespace around it). 0, or -1 with
 * js->err (then nothing is left to free). */
int px_json_parse(struct px_json *js, const char *p, size_t len, int32_t max_nodes);
void px_json_free(struct px_json *js);
/* The member name of object node obj, or NULL. */
const struct px_json_node *px_json_get(const struct px_json *js, int32_t obj, const char *name);
/* Index of a node (for px_json_get on a nested object), and the children. */
static inline int32_t px_json_idx(const struct px_json *js, const struct px_json_node *n)
{
	return (int32_t)(n - js->nodes);
}
static inline const struct px_json_node *px_json_kid(const struct px_json *js,
                                                     const struct px_json_node *n)
{
	return n->kid >= 0 ? &js->nodes[n->kid] : NULL;
}
static inline const struct px_json_node *px_json_next(const struct px_json *js,
                                                      const struct px_json_node *n)
{
	return n->next >= 0 ? &js->nodes[n->next] : NULL;
}

#endif
