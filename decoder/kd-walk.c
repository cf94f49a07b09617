/* kd-walk.c: the resumable skip-only body walk (kd-walk.h).
 *
 * The walk is a stack of levels (a struct being walked field by field, or
 * an array being walked element by element). Each step either sets up the
 * next thing to read (a token: a count, a length, a marker, a varint), or
 * a number of bytes to pass over (a string's or a record set's bytes, a
 * tagged field's payload, fixed-width scalars nobody asked for), or pops
 * a finished level. Tokens are at most 16 bytes and are gathered in
 * w->tok across chunks, so every split of the body walks the same. */
#include <string.h>

#include "kd-schema.h"
#include "kd-walk.h"

enum {
	PH_FIELDS = 0, /* regular fields, in schema order */
	PH_TAGS,       /* tagged fields (count read) */
};

enum {
	OP_NONE = 0,
	OP_LEN,      /* string/bytes/records length */
	OP_COUNT,    /* array count */
	OP_MARKER,   /* nullable struct marker */
	OP_TAGCOUNT, /* tagged-field count */
	OP_TAG,      /* tag number */
	OP_TAGSIZE,  /* tagged-field size */
	OP_UUID,     /* a captured TopicId */
};

#define TOK_VARINT 0xff

/* The values a value callback gets: topic names and topic ids. */
static int wanted(const struct kd_walk *w, const struct kd_field *f, unsigned type)
{
	if (!w->on_value)
		return 0;
	if (type == KD_T_STRING)
		return ((w->ents ? w->ents : 1u << KD_ENT_TOPIC_NAME) >> f->entity) & 1;
	return type == KD_T_UUID && !strcmp(f->name, "TopicId");
}

static uint64_t left(const struct kd_walk *w)
{
	return w->len - w->off;
}

static void token(struct kd_walk *w, uint8_t op, uint8_t need)
{
	w->op = op;
	w->tok_need = need;
	w->tok_len = 0;
}

static int push(struct kd_walk *w, const struct kd_struct *st, const struct kd_field *arr,
                uint32_t count)
{
	if (w->depth >= KD_WALK_DEPTH)
		return KD_ELIMIT;
	struct kd_walk_lvl *l = &w->lvl[w->depth++];
	memset(l, 0, sizeof(*l));
	l->st = st;
	l->arr = arr;
	l->left = count;
	return KD_OK;
}

/* Sets up the value of field f (of type type: f->elem for an element). */
static int begin_value(struct kd_walk *w, const struct kd_field *f, unsigned type, int elem)
{
	int compact = kd_field_compact(f, w->version, w->flex);
	w->f = f;
	w->elem = (uint8_t)elem;
	unsigned width = kd_type_width(type);
	if (width) {
		if (width > left(w))
			return KD_ESHORT;
		if (wanted(w, f, type))
			token(w, OP_UUID, (uint8_t)width);
		else
			w->skip = width;
		return KD_OK;
	}
	switch (type) {
	case KD_T_STRING:
		token(w, OP_LEN, compact ? TOK_VARINT : 2);
		return KD_OK;
	case KD_T_BYTES:
	case KD_T_RECORDS:
	case KD_T_ARRAY:
		token(w, type == KD_T_ARRAY ? OP_COUNT : OP_LEN, compact ? TOK_VARINT : 4);
		return KD_OK;
	case KD_T_STRUCT:
		if (!elem && kd_vers_has(f->nullable, w->version)) {
			token(w, OP_MARKER, 1);
			return KD_OK;
		}
		return push(w, f->sub, NULL, 0);
	default:
		return KD_EMALFORMED; /* no such wire type in the tables */
	}
}

/* A length or count token: -1 (null), or >= 0. */
static int tok_len(struct kd_walk *w, int compact, unsigned width, int32_t *n)
{
	struct kd_cur cur;
	kd_cur_init(&cur, w->tok, w->tok_len);
	return kd_cur_len(&cur, compact, width, n);
}

static int tok_uvarint(struct kd_walk *w, uint32_t *v)
{
	struct kd_cur cur;
	kd_cur_init(&cur, w->tok, w->tok_len);
	return kd_cur_uvarint(&cur, v);
}

/* Acts on a complete token. */
static int end_token(struct kd_walk *w)
{
	const struct kd_field *f = w->f;
	struct kd_walk_lvl *top = &w->lvl[w->depth - 1];
	uint8_t op = w->op;
	int compact = w->tok_need == TOK_VARINT;
	int32_t n = 0;
	uint32_t u = 0;
	int rc;

	w->op = OP_NONE;
	w->tok_need = 0;
	switch (op) {
	case OP_LEN:
		rc = tok_len(w, compact,
		             f->type == KD_T_STRING || (w->elem && f->elem == KD_T_STRING) ? 2 : 4,
		             &n);
		if (rc != KD_OK)
			return rc;
		if (n < 0)
			return !w->elem && kd_vers_has(f->nullable, w->version) ? KD_OK
			                                                        : KD_EMALFORMED;
		if ((uint64_t)n > left(w))
			return KD_ESHORT;
		w->skip = (uint64_t)n;
		w->cap_len = 0;
		if (wanted(w, f, w->elem ? f->elem : f->type)) {
			if (n > KD_WALK_CAP)
				w->missed++;
			else if (n)
				w->capture = 1;
			else
				w->on_value(w->arg, w->depth, f, w->cap, 0);
		}
		return KD_OK;
	case OP_COUNT:
		rc = tok_len(w, compact, 4, &n);
		if (rc != KD_OK)
			return rc;
		if (n < 0)
			return kd_vers_has(f->nullable, w->version) ? KD_OK : KD_EMALFORMED;
		/* every element of every Kafka array takes a byte at least: a
		 * count beyond the bytes left never drives a long loop */
		if ((uint64_t)n > left(w))
			return KD_EMALFORMED;
		return n ? push(w, NULL, f, (uint32_t)n) : KD_OK;
	case OP_MARKER:
		if ((int8_t)w->tok[0] < 0)
			return KD_OK; /* null (WIRE-NOTES 5: any negative) */
		return push(w, f->sub, NULL, 0);
	case OP_TAGCOUNT:
		rc = tok_uvarint(w, &u);
		if (rc != KD_OK)
			return rc;
		if (u > left(w) / 2)
			return KD_EMALFORMED;
		top->left = u;
		top->phase = PH_TAGS;
		return KD_OK;
	case OP_TAG:
		rc = tok_uvarint(w, &u);
		if (rc != KD_OK)
			return rc;
		token(w, OP_TAGSIZE, TOK_VARINT);
		return KD_OK;
	case OP_TAGSIZE:
		rc = tok_uvarint(w, &u);
		if (rc != KD_OK)
			return rc;
		if (u > left(w))
			return KD_ESHORT;
		w->skip = u;
		return KD_OK;
	case OP_UUID:
		w->on_value(w->arg, w->depth, f, w->tok, w->tok_len);
		return KD_OK;
	default:
		return KD_EMALFORMED;
	}
}

uint32_t kd_walk_elems_after(const struct kd_walk *w)
{
	for (unsigned d = w->depth; d > 0; d--)
		if (w->lvl[d - 1].arr)
			return w->lvl[d - 1].left;
	return 0;
}

/* Pops a finished level; returns KD_WALK_END when it was the body. */
static int pop(struct kd_walk *w)
{
	const struct kd_walk_lvl *l = &w->lvl[w->depth - 1];
	if (l->st && w->on_value)
		w->on_value(w->arg, w->depth, NULL, NULL, 0);
	w->depth--;
	if (!w->depth) {
		w->done = 1;
		return KD_WALK_END;
	}
	return KD_OK;
}

/* One step that reads no bytes: sets up the next token or skip, or pops.
 * Returns KD_OK, KD_WALK_STOP, KD_WALK_END or an error. */
static int step(struct kd_walk *w)
{
	struct kd_walk_lvl *top = &w->lvl[w->depth - 1];
	if (top->arr) {
		if (!top->left)
			return pop(w);
		top->left--;
		const struct kd_field *f = top->arr;
		if (f->elem == KD_T_STRUCT)
			return push(w, f->sub, NULL, 0);
		return begin_value(w, f, f->elem, 1);
	}
	if (top->phase == PH_TAGS) {
		if (!top->left)
			return pop(w);
		top->left--;
		token(w, OP_TAG, TOK_VARINT);
		return KD_OK;
	}
	const struct kd_struct *st = top->st;
	while (st && top->i < st->nfields) {
		const struct kd_field *f = &st->fields[top->i];
		if (!kd_vers_has(f->versions, w->version) || kd_field_tagged(f, w->version)) {
			top->i++;
			continue;
		}
		if (w->depth == 1 && f == w->stop_field && !w->stopped_field) {
			w->stopped_field = 1;
			return KD_WALK_STOP;
		}
		top->i++;
		return begin_value(w, f, f->type, 0);
	}
	if (!w->flex)
		return pop(w);
	if (w->depth == 1 && w->stop_tags && !w->stopped_tags) {
		w->stopped_tags = 1;
		return KD_WALK_STOP;
	}
	top->phase = PH_TAGS; /* left 0 until the count is read */
	token(w, OP_TAGCOUNT, TOK_VARINT);
	return KD_OK;
}

int kd_walk_init(struct kd_walk *w, int16_t api_key, int16_t version, int is_request,
                 uint64_t body_len)
{
	memset(w, 0, sizeof(*w));
	const struct kd_msgdef *def = kd_msgdef_get(api_key, version, is_request);
	if (!def || !def->body)
		return KD_EUNSUPPORTED;
	w->root = def->body;
	w->version = version;
	w->flex = (uint8_t)kd_vers_has(def->flexible, version);
	w->len = body_len;
	return push(w, def->body, NULL, 0);
}

static const struct kd_field *top_field(const struct kd_struct *st, int16_t v, const char *name)
{
	for (unsigned i = 0; i < st->nfields; i++) {
		const struct kd_field *f = &st->fields[i];
		if (!strcmp(f->name, name) && kd_vers_has(f->versions, v) && !kd_field_tagged(f, v))
			return f;
	}
	return NULL;
}

int kd_walk_stop_before(struct kd_walk *w, const char *name)
{
	const struct kd_field *f = top_field(w->root, w->version, name);
	if (!f)
		return KD_EUNSUPPORTED;
	w->stop_field = f;
	return KD_OK;
}

int kd_walk_stop_at_tags(struct kd_walk *w)
{
	if (!w->flex)
		return KD_EUNSUPPORTED;
	w->stop_tags = 1;
	return KD_OK;
}

void kd_walk_capture(struct kd_walk *w, uint32_t ents)
{
	w->ents = ents;
}

void kd_walk_on_value(struct kd_walk *w, kd_walk_value_fn *fn, void *arg)
{
	w->on_value = fn;
	w->arg = arg;
}

int kd_walk_feed(struct kd_walk *w, const uint8_t *p, size_t len, size_t *used)
{
	const uint8_t *s = p;
	size_t n = len;
	int rc = KD_OK;

	if (n > left(w))
		n = (size_t)left(w); /* never past the body */
	if (w->done) {
		*used = 0;
		return KD_WALK_END;
	}
	for (;;) {
		if (w->skip) {
			size_t take = n < w->skip ? n : (size_t)w->skip;
			if (w->capture) {
				memcpy(w->cap + w->cap_len, s, take);
				w->cap_len += (uint32_t)take;
			}
			s += take;
			n -= take;
			w->off += take;
			w->skip -= take;
			if (w->skip)
				break; /* need more */
			if (w->capture) {
				w->capture = 0;
				w->on_value(w->arg, w->depth, w->f, w->cap, w->cap_len);
			}
			continue;
		}
		if (w->tok_need) {
			int complete = 0;
			while (n && !complete) {
				w->tok[w->tok_len++] = *s++;
				n--;
				w->off++;
				if (w->tok_need == TOK_VARINT)
					complete =
					    !(w->tok[w->tok_len - 1] & 0x80) || w->tok_len == 5;
				else
					complete = w->tok_len == w->tok_need;
			}
			if (!complete) {
				if (!left(w)) {
					rc = KD_ESHORT;
					goto out;
				}
				break; /* need more */
			}
			rc = end_token(w);
			if (rc != KD_OK)
				goto out;
			continue;
		}
		rc = step(w);
		if (rc != KD_OK)
			goto out;
	}
	*used = (size_t)(s - p);
	return left(w) ? KD_NEED_MORE : KD_ESHORT;
out:
	*used = (size_t)(s - p);
	return rc;
}

/* ---- default bodies ---- */

static void defaults_struct(const struct kd_struct *st, int16_t v, int flex, unsigned from,
                            unsigned to, int tags, struct kd_wbuf *w, unsigned depth);

static void default_value(const struct kd_field *f, int16_t v, int flex, struct kd_wbuf *w,
                          unsigned depth)
{
	int compact = kd_field_compact(f, v, flex);
	unsigned width = kd_type_width(f->type);
	if (width) {
		static const uint8_t zero[16];
		kd_w_raw(w, zero, width);
		return;
	}
	switch (f->type) {
	case KD_T_STRING:
		kd_w_len(w, compact, 2, 0);
		break;
	case KD_T_BYTES:
	case KD_T_RECORDS:
	case KD_T_ARRAY:
		kd_w_len(w, compact, 4, 0);
		break;
	case KD_T_STRUCT:
		if (kd_vers_has(f->nullable, v))
			kd_w_i8(w, 1);
		if (f->sub && depth < KD_WALK_DEPTH)
			defaults_struct(f->sub, v, flex, 0, f->sub->nfields, 1, w, depth + 1);
		break;
	default:
		w->err = KD_EMALFORMED;
		break;
	}
}

static void defaults_struct(const struct kd_struct *st, int16_t v, int flex, unsigned from,
                            unsigned to, int tags, struct kd_wbuf *w, unsigned depth)
{
	for (unsigned i = from; i < to && i < st->nfields; i++) {
		const struct kd_field *f = &st->fields[i];
		if (kd_vers_has(f->versions, v) && !kd_field_tagged(f, v))
			default_value(f, v, flex, w, depth);
	}
	if (tags && flex)
		kd_w_uvarint(w, 0);
}

int kd_body_defaults(int16_t api_key, int16_t version, int is_request, unsigned from, unsigned to,
                     int tags, struct kd_wbuf *w)
{
	const struct kd_msgdef *def = kd_msgdef_get(api_key, version, is_request);
	if (!def || !def->body)
		return KD_EUNSUPPORTED;
	defaults_struct(def->body, version, kd_vers_has(def->flexible, version), from, to, tags, w,
	                1);
	return w->err;
}

int kd_body_field_index(int16_t api_key, int16_t version, int is_request, const char *name)
{
	const struct kd_msgdef *def = kd_msgdef_get(api_key, version, is_request);
	if (!def || !def->body)
		return -1;
	const struct kd_field *f = top_field(def->body, version, name);
	return f ? (int)(f - def->body->fields) : -1;
}
