/* px-json.c: the small JSON reader (px-json.h). Recursive descent, depth
 * bounded; every read is bounded by the input's length. */
#include "px-json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PX_JSON_DEPTH 32

struct jp {
	struct px_json *js;
	const char *p;
	size_t len, i;
	int depth;
};

static int fail(struct jp *j, const char *what)
{
	snprintf(j->js->err, sizeof(j->js->err), "%s at byte %zu", what, j->i);
	return -1;
}

static void ws(struct jp *j)
{
	while (j->i < j->len && (j->p[j->i] == ' ' || j->p[j->i] == '\t' || j->p[j->i] == '\n' ||
	                         j->p[j->i] == '\r'))
		j->i++;
}

static int32_t node_new(struct jp *j, uint8_t type)
{
	struct px_json *js = j->js;
	if (js->n >= js->cap)
		return -1;
	struct px_json_node *n = &js->nodes[js->n];
	memset(n, 0, sizeof(*n));
	n->type = type;
	n->kid = n->next = -1;
	return js->n++;
}

static int hex4(struct jp *j, unsigned *out)
{
	unsigned v = 0;
	if (j->len - j->i < 4)
		return -1;
	for (int k = 0; k < 4; k++) {
		char c = j->p[j->i++];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static void put(struct px_json *js, char c)
{
	js->strs[js->slen++] = c; /* scap >= input length + strings: never overflows */
}

/* A string at p[i] == '"': decoded into strs. */
static int string(struct jp *j, const char **out, size_t *olen)
{
	struct px_json *js = j->js;
	size_t start = js->slen;

	j->i++;
	for (;;) {
		if (j->i >= j->len)
			return fail(j, "unterminated string");
		unsigned char c = (unsigned char)j->p[j->i++];
		if (c == '"')
			break;
		if (c < 0x20)
			return fail(j, "control character in a string");
		if (c != '\\') {
			put(js, (char)c);
			continue;
		}
		if (j->i >= j->len)
			return fail(j, "unterminated string");
		c = (unsigned char)j->p[j->i++];
		switch (c) {
		case '"':
		case '\\':
		case '/':
			put(js, (char)c);
			break;
		case 'b':
			put(js, '\b');
			break;
		case 'f':
			put(js, '\f');
			break;
		case 'n':
			put(js, '\n');
			break;
		case 'r':
			put(js, '\r');
			break;
		case 't':
			put(js, '\t');
			break;
		case 'u': {
			unsigned u, lo;
			if (hex4(j, &u))
				return fail(j, "bad \\u escape");
			if (u >= 0xd800 && u < 0xdc00) {
				if (j->len - j->i < 6 || j->p[j->i] != '\\' ||
				    j->p[j->i + 1] != 'u')
					return fail(j, "lone surrogate");
				j->i += 2;
				if (hex4(j, &lo) || lo < 0xdc00 || lo >= 0xe000)
					return fail(j, "bad surrogate pair");
				u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
			} else if (u >= 0xdc00 && u < 0xe000) {
				return fail(j, "lone surrogate");
			}
			if (u == 0)
				return fail(j, "NUL in a string");
			/* UTF-8 is at most 4 bytes; the escape was at least 6 */
			if (u < 0x80) {
				put(js, (char)u);
			} else if (u < 0x800) {
				put(js, (char)(0xc0 | u >> 6));
				put(js, (char)(0x80 | (u & 0x3f)));
			} else if (u < 0x10000) {
				put(js, (char)(0xe0 | u >> 12));
				put(js, (char)(0x80 | (u >> 6 & 0x3f)));
				put(js, (char)(0x80 | (u & 0x3f)));
			} else {
				put(js, (char)(0xf0 | u >> 18));
				put(js, (char)(0x80 | (u >> 12 & 0x3f)));
				put(js, (char)(0x80 | (u >> 6 & 0x3f)));
				put(js, (char)(0x80 | (u & 0x3f)));
			}
			break;
		}
		default:
			return fail(j, "bad escape");
		}
	}
	*out = js->strs + start;
	*olen = js->slen - start;
	put(js, 0);
	return 0;
}

static int32_t value(struct jp *j);

static int32_t container(struct jp *j, int obj)
{
	int32_t self = node_new(j, obj ? PX_JSON_OBJ : PX_JSON_ARR), last = -1;
	if (self < 0)
		return fail(j, "too many values");
	if (++j->depth > PX_JSON_DEPTH)
		return fail(j, "nested too deep");
	j->i++;
	ws(j);
	if (j->i < j->len && j->p[j->i] == (obj ? '}' : ']')) {
		j->i++;
		j->depth--;
		return self;
	}
	for (;;) {
		const char *key = NULL;
		size_t klen;
		ws(j);
		if (obj) {
			if (j->i >= j->len || j->p[j->i] != '"')
				return fail(j, "expected a member name");
			if (string(j, &key, &klen))
				return -1;
			ws(j);
			if (j->i >= j->len || j->p[j->i] != ':')
				return fail(j, "expected ':'");
			j->i++;
		}
		int32_t v = value(j);
		if (v < 0)
			return -1;
		j->js->nodes[v].key = key;
		if (last < 0)
			j->js->nodes[self].kid = v;
		else
			j->js->nodes[last].next = v;
		last = v;
		ws(j);
		if (j->i >= j->len)
			return fail(j, "unterminated container");
		char c = j->p[j->i++];
		if (c == ',')
			continue;
		if (c == (obj ? '}' : ']'))
			break;
		return fail(j, "expected ',' or the end of the container");
	}
	j->depth--;
	return self;
}

static int lit(struct jp *j, const char *word)
{
	size_t n = strlen(word);
	if (j->len - j->i < n || memcmp(j->p + j->i, word, n))
		return 0;
	j->i += n;
	return 1;
}

static int32_t value(struct jp *j)
{
	int32_t v;
	ws(j);
	if (j->i >= j->len)
		return fail(j, "expected a value");
	char c = j->p[j->i];
	if (c == '{' || c == '[')
		return container(j, c == '{');
	if (c == '"') {
		if ((v = node_new(j, PX_JSON_STR)) < 0)
			return fail(j, "too many values");
		if (string(j, &j->js->nodes[v].str, &j->js->nodes[v].len))
			return -1;
		return v;
	}
	if (lit(j, "true"))
		return node_new(j, PX_JSON_TRUE) >= 0 ? j->js->n - 1 : fail(j, "too many values");
	if (lit(j, "false"))
		return node_new(j, PX_JSON_FALSE) >= 0 ? j->js->n - 1 : fail(j, "too many values");
	if (lit(j, "null"))
		return node_new(j, PX_JSON_NULL) >= 0 ? j->js->n - 1 : fail(j, "too many values");
	if (c == '-' || (c >= '0' && c <= '9')) {
		size_t s = j->i;
		char buf[64];
		if (j->p[j->i] == '-')
			j->i++;
		while (j->i < j->len &&
		       ((j->p[j->i] >= '0' && j->p[j->i] <= '9') || j->p[j->i] == '.' ||
		        j->p[j->i] == 'e' || j->p[j->i] == 'E' || j->p[j->i] == '+' ||
		        j->p[j->i] == '-'))
			j->i++;
		if (j->i - s >= sizeof(buf) || j->i - s == 0)
			return fail(j, "bad number");
		memcpy(buf, j->p + s, j->i - s);
		buf[j->i - s] = 0;
		char *end;
		double d = strtod(buf, &end);
		if (*end || (buf[0] == '-' && buf[1] == 0))
			return fail(j, "bad number");
		if ((v = node_new(j, PX_JSON_NUM)) < 0)
			return fail(j, "too many values");
		j->js->nodes[v].num = d;
		/* the text, for callers that want it exactly */
		j->js->nodes[v].str = j->js->strs + j->js->slen;
		j->js->nodes[v].len = j->i - s;
		for (size_t k = s; k < j->i; k++)
			put(j->js, j->p[k]);
		put(j->js, 0);
		return v;
	}
	return fail(j, "unexpected character");
}

int px_json_parse(struct px_json *js, const char *p, size_t len, int32_t max_nodes)
{
	memset(js, 0, sizeof(*js));
	js->cap = max_nodes;
	js->nodes = calloc((size_t)max_nodes, sizeof(*js->nodes));
	/* decoded strings are never longer than their source, plus one NUL
	 * per value (a value takes at least one source byte) */
	js->scap = 2 * len + 1;
	js->strs = malloc(js->scap);
	if (!js->nodes || !js->strs) {
		snprintf(js->err, sizeof(js->err), "out of memory");
		goto fail;
	}
	struct jp j = {js, p, len, 0, 0};
	js->root = value(&j);
	if (js->root < 0)
		goto fail;
	ws(&j);
	if (j.i != len) {
		fail(&j, "bytes after the value");
		goto fail;
	}
	return 0;
fail : {
	char keep[sizeof(js->err)];
	memcpy(keep, js->err, sizeof(keep));
	px_json_free(js);
	memcpy(js->err, keep, sizeof(keep));
	return -1;
}
}

void px_json_free(struct px_json *js)
{
	free(js->nodes);
	free(js->strs);
	memset(js, 0, sizeof(*js));
	js->root = -1;
}

const struct px_json_node *px_json_get(const struct px_json *js, int32_t obj, const char *name)
{
	if (obj < 0 || obj >= js->n || js->nodes[obj].type != PX_JSON_OBJ)
		return NULL;
	size_t nl = strlen(name);
	for (int32_t k = js->nodes[obj].kid; k >= 0; k = js->nodes[k].next)
		if (js->nodes[k].key && strlen(js->nodes[k].key) == nl &&
		    !memcmp(js->nodes[k].key, name, nl))
			return &js->nodes[k];
	return NULL;
}
