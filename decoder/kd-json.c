/* kd-json.c: JSON masking by path (kd-json.h).
 *
 * One recursive-descent pass over the value (nesting bounded by
 * KD_JSON_DEPTH) keeps the path of the value being read on a stack and
 * collects edits: spans of the input to replace (a masked value) or to
 * take out (a dropped member with its comma). The output is then the input
 * with the edits applied in order; every byte outside an edit is copied as
 * it came (whitespace, number spelling, escapes, key order). */
#include <stdlib.h>
#include <string.h>

#include "kd-json.h"
#include "kd.h"

struct jedit {
	size_t start, end;
	int mask; /* index into masks; -1: delete the span */
};

/* A member or element of an open container, for drops. */
struct jmem {
	size_t start, end; /* key (element) start, value end */
	uint8_t drop;
};

struct jframe {
	const uint8_t *key; /* member name as it is in the input (no quotes) */
	uint32_t klen;
	uint8_t esc;  /* the name holds escapes */
	uint8_t elem; /* an array element: idx */
	uint32_t idx;
};

struct jctx {
	const uint8_t *p;
	size_t len, pos;
	const struct kd_jmask *masks;
	unsigned n;
	struct jframe stk[KD_JSON_DEPTH + 1];
	unsigned depth;
	struct jedit *ed; /* ed_in until it outgrows it */
	size_t ned, edcap;
	struct jmem *mem; /* mem_in until it outgrows it */
	size_t nmem, memcap;
	int err;
	struct jedit ed_in[16];
	struct jmem mem_in[64];
};

static void ws(struct jctx *c)
{
	while (c->pos < c->len) {
		uint8_t b = c->p[c->pos];
		if (b != ' ' && b != '\t' && b != '\n' && b != '\r')
			break;
		c->pos++;
	}
}

static int hexval(uint8_t b)
{
	if (b >= '0' && b <= '9')
		return b - '0';
	if (b >= 'a' && b <= 'f')
		return b - 'a' + 10;
	if (b >= 'A' && b <= 'F')
		return b - 'A' + 10;
	return -1;
}

static int hex4(const uint8_t *s, uint32_t *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(s[i]);
		if (h < 0)
			return -1;
		*v = *v << 4 | (uint32_t)h;
	}
	return 0;
}

/* Reads a string at c->pos (the opening quote); sets *s, *n to its
 * content and *esc when it holds escapes. 0 or -1. */
/* Whether p[0..n) holds a byte below 0x20, eight bytes at a time. */
static int has_ctl(const uint8_t *p, size_t n)
{
	const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
	size_t k = 0;
	for (; k + 8 <= n; k += 8) {
		uint64_t x;
		memcpy(&x, p + k, 8);
		/* A byte below 0x20 borrows in x - 0x20..20 with its top bit clear. */
		if ((x - 0x20 * ones) & ~x & high)
			return 1;
	}
	for (; k < n; k++)
		if (p[k] < 0x20)
			return 1;
	return 0;
}

static int str(struct jctx *c, const uint8_t **s, uint32_t *n, uint8_t *esc)
{
	if (c->pos >= c->len || c->p[c->pos] != '"')
		return -1;
	size_t i = c->pos + 1;
	*esc = 0;
	for (;;) {
		/* The next quote, and the first backslash before it: the run
		 * between needs only the control character check (values are
		 * mostly long plain strings). */
		const uint8_t *q = memchr(c->p + i, '"', c->len - i);
		if (!q)
			return -1;
		size_t qi = (size_t)(q - c->p);
		const uint8_t *bs = memchr(c->p + i, '\\', qi - i);
		size_t end = bs ? (size_t)(bs - c->p) : qi;
		if (has_ctl(c->p + i, end - i))
			return -1;
		if (!bs) {
			if (qi - c->pos - 1 > UINT32_MAX)
				return -1;
			*s = c->p + c->pos + 1;
			*n = (uint32_t)(qi - c->pos - 1);
			c->pos = qi + 1;
			return 0;
		}
		i = end;
		*esc = 1;
		if (i + 1 >= c->len)
			return -1;
		uint8_t e = c->p[i + 1];
		if (e == 'u') {
			uint32_t v;
			if (i + 6 > c->len || hex4(c->p + i + 2, &v))
				return -1;
			i += 6;
		} else if (e && strchr("\"\\/bfnrt", e)) {
			i += 2;
		} else {
			return -1;
		}
	}
}

static void w_utf8(struct kd_wbuf *w, uint32_t cp)
{
	uint8_t b[4];
	size_t n;
	if (cp < 0x80) {
		b[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (uint8_t)(0xc0 | cp >> 6);
		b[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (uint8_t)(0xe0 | cp >> 12);
		b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (uint8_t)(0xf0 | cp >> 18);
		b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	kd_w_raw(w, b, n);
}

/* Appends the unescaped content of a string already checked by str(). A
 * lone surrogate is written as U+FFFD. */
static void unescape(const uint8_t *s, size_t n, struct kd_wbuf *w)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && s[j] != '\\')
			j++;
		kd_w_raw(w, s + i, j - i);
		if (j >= n)
			break;
		uint8_t e = s[j + 1];
		i = j + 2;
		switch (e) {
		case 'b':
			kd_w_i8(w, '\b');
			break;
		case 'f':
			kd_w_i8(w, '\f');
			break;
		case 'n':
			kd_w_i8(w, '\n');
			break;
		case 'r':
			kd_w_i8(w, '\r');
			break;
		case 't':
			kd_w_i8(w, '\t');
			break;
		case 'u': {
			uint32_t v, lo;
			hex4(s + j + 2, &v);
			i = j + 6;
			if (v >= 0xd800 && v < 0xdc00 && i + 6 <= n && s[i] == '\\' &&
			    s[i + 1] == 'u' && !hex4(s + i + 2, &lo) && lo >= 0xdc00 &&
			    lo < 0xe000) {
				v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
				i += 6;
			} else if (v >= 0xd800 && v < 0xe000) {
				v = 0xfffd;
			}
			w_utf8(w, v);
			break;
		}
		default: /* " \ / */
			kd_w_i8(w, (int8_t)e);
			break;
		}
	}
}

static int num(struct jctx *c)
{
	size_t i = c->pos;
	if (i < c->len && c->p[i] == '-')
		i++;
	if (i >= c->len)
		return -1;
	if (c->p[i] == '0')
		i++;
	else if (c->p[i] >= '1' && c->p[i] <= '9')
		while (i < c->len && c->p[i] >= '0' && c->p[i] <= '9')
			i++;
	else
		return -1;
	if (i < c->len && c->p[i] == '.') {
		size_t d = ++i;
		while (i < c->len && c->p[i] >= '0' && c->p[i] <= '9')
			i++;
		if (i == d)
			return -1;
	}
	if (i < c->len && (c->p[i] == 'e' || c->p[i] == 'E')) {
		i++;
		if (i < c->len && (c->p[i] == '+' || c->p[i] == '-'))
			i++;
		size_t d = i;
		while (i < c->len && c->p[i] >= '0' && c->p[i] <= '9')
			i++;
		if (i == d)
			return -1;
	}
	c->pos = i;
	return 0;
}

static int lit(struct jctx *c, const char *w, size_t n)
{
	if (c->len - c->pos < n || memcmp(c->p + c->pos, w, n))
		return -1;
	c->pos += n;
	return 0;
}

/* Whether step s names frame f. */
static int step_match(const struct kd_jstep *s, const struct jframe *f)
{
	switch (s->kind) {
	case KD_JS_ANY_KEY:
		return !f->elem;
	case KD_JS_ANY_INDEX:
		return f->elem;
	case KD_JS_INDEX:
		return f->elem && f->idx == s->index;
	default:
		break;
	}
	if (f->elem)
		return 0;
	if (!f->esc)
		return f->klen == s->key_len && !memcmp(f->key, s->key, s->key_len);
	/* Unescaped name, compared in a small buffer: a name longer than
	 * any path key (255 bytes) cannot match. */
	if (f->klen > 6 * 256)
		return 0;
	struct kd_wbuf w = {0};
	unescape(f->key, f->klen, &w);
	int eq = !w.err && w.len == s->key_len && !memcmp(w.p, s->key, s->key_len);
	kd_wbuf_free(&w);
	return eq;
}

/* The first mask whose path names the value at the top of the stack, or -1. */
static int mask_for(const struct jctx *c)
{
	for (unsigned m = 0; m < c->n; m++) {
		const struct kd_jpath *path = c->masks[m].path;
		if (path->n != c->depth)
			continue;
		unsigned i = 0;
		while (i < path->n && step_match(&path->s[i], &c->stk[i + 1]))
			i++;
		if (i == path->n)
			return (int)m;
	}
	return -1;
}

static int add_edit(struct jctx *c, size_t start, size_t end, int mask)
{
	if (c->ned == c->edcap) {
		size_t cap = c->edcap * 2;
		struct jedit *v = realloc(c->ed == c->ed_in ? NULL : c->ed, cap * sizeof(*v));
		if (!v) {
			c->err = KD_ENOMEM;
			return -1;
		}
		if (c->ed == c->ed_in)
			memcpy(v, c->ed_in, sizeof(c->ed_in));
		c->ed = v;
		c->edcap = cap;
	}
	c->ed[c->ned++] = (struct jedit){start, end, mask};
	return 0;
}

static int push_mem(struct jctx *c, size_t start)
{
	if (c->nmem == c->memcap) {
		size_t cap = c->memcap * 2;
		struct jmem *v = realloc(c->mem == c->mem_in ? NULL : c->mem, cap * sizeof(*v));
		if (!v) {
			c->err = KD_ENOMEM;
			return -1;
		}
		if (c->mem == c->mem_in)
			memcpy(v, c->mem_in, sizeof(c->mem_in));
		c->mem = v;
		c->memcap = cap;
	}
	c->mem[c->nmem++] = (struct jmem){start, start, 0};
	return 0;
}

/* Deletion edits for the dropped members c->mem[base..nmem) of one
 * container: a member before the last kept one goes with the comma after
 * it; the dropped run at the end goes with the comma before it. */
static int drop_members(struct jctx *c, size_t base)
{
	size_t last = c->nmem - 1, kept = SIZE_MAX;
	for (size_t i = base; i < c->nmem; i++)
		if (!c->mem[i].drop)
			kept = i;
	for (size_t i = base; i < c->nmem; i++) {
		if (!c->mem[i].drop)
			continue;
		if (kept == SIZE_MAX) {
			/* everything goes: from the first to the last */
			return add_edit(c, c->mem[base].start, c->mem[last].end, -1);
		}
		if (i < kept) {
			if (add_edit(c, c->mem[i].start, c->mem[i + 1].start, -1))
				return -1;
		} else {
			return add_edit(c, c->mem[kept].end, c->mem[last].end, -1);
		}
	}
	return 0;
}

static int value(struct jctx *c, int masking);

/* The value at the top of the stack: masked, or read through. *drop is set
 * when a drop mask names it. */
static int member_value(struct jctx *c, int masking, uint8_t *drop)
{
	int m = masking ? mask_for(c) : -1;
	size_t start = c->pos;
	if (value(c, m < 0 && masking))
		return -1;
	if (m >= 0) {
		if (c->masks[m].op == KD_JMASK_DROP)
			*drop = 1;
		else if (add_edit(c, start, c->pos, m))
			return -1;
	}
	return 0;
}

static int container(struct jctx *c, int masking, int obj)
{
	uint8_t close = obj ? '}' : ']';
	size_t base = c->nmem;
	int any_drop = 0;
	if (c->depth >= KD_JSON_DEPTH) {
		c->err = KD_ELIMIT;
		return -1;
	}
	c->pos++;
	ws(c);
	if (c->pos < c->len && c->p[c->pos] == close) {
		c->pos++;
		return 0;
	}
	struct jframe *f = &c->stk[++c->depth];
	memset(f, 0, sizeof(*f));
	f->elem = !obj;
	for (uint32_t idx = 0;; idx++) {
		ws(c);
		if (push_mem(c, c->pos))
			return -1;
		if (obj) {
			if (str(c, &f->key, &f->klen, &f->esc))
				return -1;
			ws(c);
			if (c->pos >= c->len || c->p[c->pos] != ':')
				return -1;
			c->pos++;
			ws(c);
		} else {
			f->idx = idx;
		}
		uint8_t drop = 0;
		if (member_value(c, masking, &drop))
			return -1;
		c->mem[c->nmem - 1].end = c->pos;
		c->mem[c->nmem - 1].drop = drop;
		any_drop |= drop;
		ws(c);
		if (c->pos >= c->len)
			return -1;
		if (c->p[c->pos] == ',') {
			c->pos++;
			continue;
		}
		if (c->p[c->pos] != close)
			return -1;
		c->pos++;
		break;
	}
	c->depth--;
	int rc = any_drop ? drop_members(c, base) : 0;
	c->nmem = base;
	return rc;
}

static int value(struct jctx *c, int masking)
{
	const uint8_t *s;
	uint32_t n;
	uint8_t esc;
	if (c->pos >= c->len)
		return -1;
	switch (c->p[c->pos]) {
	case '{':
		return container(c, masking, 1);
	case '[':
		return container(c, masking, 0);
	case '"':
		return str(c, &s, &n, &esc);
	case 't':
		return lit(c, "true", 4);
	case 'f':
		return lit(c, "false", 5);
	case 'n':
		return lit(c, "null", 4);
	default:
		return num(c);
	}
}

static int edit_cmp(const void *a, const void *b)
{
	const struct jedit *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* Parses the whole of p as one value, collecting edits when masks given. */
static int parse(struct jctx *c)
{
	ws(c);
	if (value(c, c->n > 0))
		return c->err ? c->err : KD_EMALFORMED;
	ws(c);
	return c->pos == c->len ? KD_OK : KD_EMALFORMED;
}

static void ctx_init(struct jctx *c, const uint8_t *p, size_t len, const struct kd_jmask *masks,
                     unsigned n)
{
	c->p = p;
	c->len = len;
	c->pos = 0;
	c->masks = masks;
	c->n = n;
	c->depth = 0;
	c->err = 0;
	c->ed = c->ed_in;
	c->ned = 0;
	c->edcap = sizeof(c->ed_in) / sizeof(c->ed_in[0]);
	c->mem = c->mem_in;
	c->nmem = 0;
	c->memcap = sizeof(c->mem_in) / sizeof(c->mem_in[0]);
}

static void ctx_free(struct jctx *c)
{
	if (c->ed != c->ed_in)
		free(c->ed);
	if (c->mem != c->mem_in)
		free(c->mem);
}

int kd_json_valid(const uint8_t *p, size_t len)
{
	struct jctx c;
	ctx_init(&c, p, len, NULL, 0);
	int rc = parse(&c);
	ctx_free(&c);
	return rc == KD_OK;
}

int kd_json_mask(const uint8_t *p, size_t len, const struct kd_jmask *masks, unsigned n,
                 kd_json_hash_fn *hash, struct kd_wbuf *out)
{
	struct jctx c;
	ctx_init(&c, p, len, masks, n);
	size_t start = out->len;
	int rc = parse(&c);
	if (rc != KD_OK)
		goto out;
	qsort(c.ed, c.ned, sizeof(*c.ed), edit_cmp);
	size_t at = 0;
	struct kd_wbuf tmp = {0};
	for (size_t i = 0; i < c.ned && rc == KD_OK; i++) {
		const struct jedit *e = &c.ed[i];
		kd_w_raw(out, p + at, e->start - at);
		at = e->end;
		if (e->mask < 0)
			continue;
		const struct kd_jmask *m = &masks[e->mask];
		if (m->op == KD_JMASK_REPLACE) {
			kd_w_raw(out, m->with, m->with_len);
			continue;
		}
		/* HASH: a string's content, else the value's text. */
		const uint8_t *in = p + e->start;
		size_t inlen = e->end - e->start;
		if (p[e->start] == '"') {
			tmp.len = 0;
			unescape(p + e->start + 1, inlen - 2, &tmp);
			in = tmp.p ? tmp.p : (const uint8_t *)"";
			inlen = tmp.len;
			if (tmp.err)
				rc = KD_ENOMEM;
		}
		if (rc == KD_OK && (!hash || hash(m, in, inlen, out) < 0))
			rc = KD_EMALFORMED;
	}
	kd_wbuf_free(&tmp);
	if (rc == KD_OK)
		kd_w_raw(out, p + at, len - at);
	if (rc == KD_OK && out->err)
		rc = KD_ENOMEM;
out:
	if (rc != KD_OK) {
		out->len = start;
		if (rc == KD_ENOMEM)
			out->err = KD_OK;
	}
	ctx_free(&c);
	return rc == KD_OK ? (int)(c.ned > INT32_MAX ? INT32_MAX : c.ned) : rc;
}

void kd_json_w_string(struct kd_wbuf *out, const void *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *p = s;
	kd_w_i8(out, '"');
	size_t i = 0;
	while (i < len) {
		size_t j = i;
		while (j < len && p[j] >= 0x20 && p[j] != '"' && p[j] != '\\')
			j++;
		kd_w_raw(out, p + i, j - i);
		if (j >= len)
			break;
		uint8_t b = p[j];
		if (b == '"' || b == '\\') {
			uint8_t e[2] = {'\\', b};
			kd_w_raw(out, e, 2);
		} else {
			uint8_t e[6] = {
			    '\\', 'u', '0', '0', (uint8_t)hex[b >> 4], (uint8_t)hex[b & 15]};
			kd_w_raw(out, e, 6);
		}
		i = j + 1;
	}
	kd_w_i8(out, '"');
}

int kd_jpath_parse(struct kd_jpath *path, const char *text, size_t len, char *err, size_t errlen)
{
	size_t i = 0, used = 0;
	memset(path, 0, sizeof(*path));
	if (i < len && text[i] == '$') {
		i++;
		if (i < len && text[i] == '.')
			i++;
	}
	while (i < len) {
		if (path->n == KD_JPATH_MAX) {
			kd_errf(err, errlen, "more than %d steps", KD_JPATH_MAX);
			return -1;
		}
		struct kd_jstep *s = &path->s[path->n];
		if (text[i] == '[') {
			i++;
			if (i < len && text[i] == '*') {
				s->kind = KD_JS_ANY_INDEX;
				i++;
			} else if (i < len && text[i] == '"') {
				/* ["name"]: a JSON string, unescaped into buf */
				struct jctx c = {.p = (const uint8_t *)text, .len = len, .pos = i};
				const uint8_t *k;
				uint32_t kn;
				uint8_t esc;
				if (str(&c, &k, &kn, &esc)) {
					kd_errf(err, errlen, "bad quoted name at %zu", i);
					return -1;
				}
				struct kd_wbuf w = {0};
				unescape(k, kn, &w);
				if (w.err || w.len > sizeof(path->buf) - used) {
					kd_wbuf_free(&w);
					kd_errf(err, errlen, "quoted names longer than %zu bytes",
					        sizeof(path->buf));
					return -1;
				}
				if (w.len)
					memcpy(path->buf + used, w.p, w.len);
				s->kind = KD_JS_KEY;
				s->key = path->buf + used;
				s->key_len = (uint32_t)w.len;
				used += w.len;
				kd_wbuf_free(&w);
				i = c.pos;
			} else {
				uint64_t v = 0;
				size_t d = i;
				while (i < len && text[i] >= '0' && text[i] <= '9' &&
				       v <= UINT32_MAX)
					v = v * 10 + (uint64_t)(text[i++] - '0');
				if (i == d || v > UINT32_MAX) {
					kd_errf(
					    err, errlen,
					    "'[' must hold *, an index or a quoted name (at %zu)",
					    d);
					return -1;
				}
				s->kind = KD_JS_INDEX;
				s->index = (uint32_t)v;
			}
			if (i >= len || text[i] != ']') {
				kd_errf(err, errlen, "missing ']' at %zu", i);
				return -1;
			}
			i++;
		} else {
			size_t k = i;
			while (i < len && text[i] != '.' && text[i] != '[' && text[i] != ']')
				i++;
			if (i < len && text[i] == ']') {
				kd_errf(err, errlen,
				        "unexpected ']' at %zu (quote the name: [\"a]b\"])", i);
				return -1;
			}
			if (i == k) {
				kd_errf(err, errlen, "empty step at %zu", k);
				return -1;
			}
			if (i - k > 255) {
				kd_errf(err, errlen, "a name longer than 255 bytes");
				return -1;
			}
			if (i - k == 1 && text[k] == '*') {
				s->kind = KD_JS_ANY_KEY;
			} else {
				s->kind = KD_JS_KEY;
				s->key = text + k;
				s->key_len = (uint32_t)(i - k);
			}
		}
		path->n++;
		if (i < len && text[i] == '.') {
			i++;
			if (i == len) {
				kd_errf(err, errlen, "ends in '.'");
				return -1;
			}
		} else if (i < len && text[i] != '[') {
			kd_errf(err, errlen, "unexpected '%c' at %zu", text[i], i);
			return -1;
		}
	}
	if (!path->n) {
		kd_errf(err, errlen, "names no field (the whole value cannot be masked)");
		return -1;
	}
	return 0;
}
