/* kd-render.c: see kd-render.h for the output decisions. */
#include "kd-render.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kd-api-keys-gen.h"
#include "kd-records.h"
#include "kd-sasl.h"
#include "kd-schema.h"
#include "kd.h"

/* Internal flag: the tree is a SaslAuthenticate request, whose AuthBytes
 * is a client token that may name its user (kd-sasl.h). */
#define RENDER_SASL_CLIENT (1u << 16)

/* ---- writer helpers ---- */

void kd_w_cstr(struct kd_wbuf *out, const char *s)
{
	kd_w_raw(out, s, strlen(s));
}

void kd_w_prom_label(struct kd_wbuf *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			kd_w_raw(out, "\\", 1);
		if (*s == '\n')
			kd_w_raw(out, "\\n", 2);
		else
			kd_w_raw(out, s, 1);
	}
}

void kd_w_fmt(struct kd_wbuf *out, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	kd_w_raw(out, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when invalid. */
static size_t utf8_seq(const uint8_t *p, size_t left)
{
	uint8_t c = p[0];
	if (c < 0x80)
		return 1;
	size_t n;
	uint32_t cp;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (left < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

int kd_utf8_valid(const uint8_t *p, size_t len)
{
	size_t i = 0;
	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		size_t n = utf8_seq(p + i, len - i);
		if (!n)
			return 0;
		i += n;
	}
	return 1;
}

int kd_json_str(struct kd_wbuf *out, const uint8_t *p, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	int lossy = 0;
	size_t i = 0, run = 0;

	kd_w_raw(out, "\"", 1);
	while (i < len) {
		uint8_t c = p[i];
		size_t n = 1;
		const char *esc = NULL;
		char u[6];
		if (c >= 0x80) {
			n = utf8_seq(p + i, len - i);
			if (n) {
				i += n;
				continue; /* part of the pass-through run */
			}
			n = 1;
			lossy = 1;
		} else if (c >= 0x20 && c != '"' && c != '\\') {
			i++;
			continue;
		}
		switch (c) {
		case '"':
			esc = "\\\"";
			break;
		case '\\':
			esc = "\\\\";
			break;
		case '\n':
			esc = "\\n";
			break;
		case '\r':
			esc = "\\r";
			break;
		case '\t':
			esc = "\\t";
			break;
		case '\b':
			esc = "\\b";
			break;
		case '\f':
			esc = "\\f";
			break;
		}
		kd_w_raw(out, p + run, i - run);
		if (esc) {
			kd_w_raw(out, esc, 2);
		} else {
			memcpy(u, "\\u00", 4);
			u[4] = hex[c >> 4];
			u[5] = hex[c & 15];
			kd_w_raw(out, u, 6);
		}
		i += n;
		run = i;
	}
	if (len > run) /* p may be NULL for an empty string */
		kd_w_raw(out, p + run, len - run);
	kd_w_raw(out, "\"", 1);
	return lossy;
}

int kd_json_cstr(struct kd_wbuf *out, const char *s)
{
	return kd_json_str(out, (const uint8_t *)s, strlen(s));
}

void kd_base64(struct kd_wbuf *out, const uint8_t *p, size_t len, int url)
{
	static const char std[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	static const char urlsafe[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const char *tab = url ? urlsafe : std;
	size_t olen = (len + 2) / 3 * 4;
	uint8_t *d = kd_wbuf_reserve(out, olen);
	size_t o = 0, i = 0;

	if (!d)
		return;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		d[o++] = (uint8_t)tab[v >> 18];
		d[o++] = (uint8_t)tab[(v >> 12) & 63];
		d[o++] = (uint8_t)tab[(v >> 6) & 63];
		d[o++] = (uint8_t)tab[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		d[o++] = (uint8_t)tab[v >> 18];
		d[o++] = (uint8_t)tab[(v >> 12) & 63];
		if (!url) {
			d[o++] = '=';
			d[o++] = '=';
		}
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		d[o++] = (uint8_t)tab[v >> 18];
		d[o++] = (uint8_t)tab[(v >> 12) & 63];
		d[o++] = (uint8_t)tab[(v >> 6) & 63];
		if (!url)
			d[o++] = '=';
	}
	out->len += o;
}

void kd_json_bytes(struct kd_wbuf *out, const uint8_t *p, size_t len)
{
	kd_w_raw(out, "\"", 1);
	kd_base64(out, p, len, 0);
	kd_w_raw(out, "\"", 1);
}

void kd_json_uuid(struct kd_wbuf *out, const uint8_t uuid[16])
{
	kd_w_raw(out, "\"", 1);
	kd_base64(out, uuid, 16, 1);
	kd_w_raw(out, "\"", 1);
}

int kd_json_view(struct kd_wbuf *out, const struct kd_view *v)
{
	if (v->null) {
		kd_w_raw(out, "null", 4);
		return 0;
	}
	return kd_json_str(out, v->p, v->len);
}

static void json_f64(struct kd_wbuf *out, double d)
{
	if (isnan(d))
		kd_w_cstr(out, "\"NaN\"");
	else if (isinf(d))
		kd_w_cstr(out, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	else
		kd_w_fmt(out, "%.17g", d);
}

/* ---- secrets (docs/decoder.md "Secrets") ----
 *
 * A field marked sensitive in the schema tables is never written: the
 * JSON form is "[redacted]" with sibling keys <Name>_mechanism and
 * <Name>_user when a SaslAuthenticate client token shows them; the text
 * form is "[redacted] <N bytes> mechanism=M user=\"U\"". */

static const char redacted[] = "[redacted]";

/* The mechanism and user of a sensitive field, when it is a client token. */
static const char *sensitive_info(const struct kd_node *k, unsigned flags, char *user, size_t cap)
{
	int mech;

	user[0] = 0;
	if (!(flags & RENDER_SASL_CLIENT) || k->null || k->type != KD_T_BYTES)
		return NULL;
	mech = kd_sasl_mech_sniff(k->val.v.p, k->val.v.len);
	kd_sasl_principal(mech, k->val.v.p, k->val.v.len, user, cap);
	return kd_sasl_mech_name(mech);
}

/* ---- JSON of a tree ---- */

struct jctx {
	struct kd_wbuf *out;
	unsigned flags;
};

static void jbreak(struct jctx *jc, unsigned depth)
{
	if (!(jc->flags & KD_RENDER_PRETTY))
		return;
	uint8_t *d = kd_wbuf_reserve(jc->out, 1 + 2 * (size_t)depth);
	if (!d)
		return;
	d[0] = '\n';
	memset(d + 1, ' ', 2 * (size_t)depth);
	jc->out->len += 1 + 2 * (size_t)depth;
}

static void jkey(struct jctx *jc, const char *k, int *first, unsigned depth)
{
	if (!*first)
		kd_w_raw(jc->out, ",", 1);
	*first = 0;
	jbreak(jc, depth);
	kd_json_cstr(jc->out, k);
	kd_w_raw(jc->out, jc->flags & KD_RENDER_PRETTY ? ": " : ":",
	         jc->flags & KD_RENDER_PRETTY ? 2 : 1);
}

static void jkey_suffix(struct jctx *jc, const char *k, const char *suffix, int *first,
                        unsigned depth)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s%s", k, suffix);
	jkey(jc, buf, first, depth);
}

/* "key": value pairs for a record key or value: a JSON string when valid
 * UTF-8, else base64 with "<name>_encoding":"base64". */
static void jpayload(struct jctx *jc, const char *name, const struct kd_view *v, int *first,
                     unsigned depth)
{
	jkey(jc, name, first, depth);
	if (v->null || kd_utf8_valid(v->p, v->len)) {
		kd_json_view(jc->out, v);
		return;
	}
	kd_json_bytes(jc->out, v->p, v->len);
	jkey_suffix(jc, name, "_encoding", first, depth);
	kd_w_cstr(jc->out, "\"base64\"");
}

static void json_record(struct jctx *jc, const struct kd_record *rec, unsigned depth)
{
	struct kd_wbuf *out = jc->out;
	int first = 1;
	kd_w_raw(out, "{", 1);
	jkey(jc, "offset", &first, depth + 1);
	kd_w_fmt(out, "%lld", (long long)rec->offset);
	jkey(jc, "timestamp", &first, depth + 1);
	kd_w_fmt(out, "%lld", (long long)rec->timestamp);
	if (rec->magic >= 2 && rec->sequence >= 0) {
		jkey(jc, "sequence", &first, depth + 1);
		kd_w_fmt(out, "%d", (int)rec->sequence);
	}
	jpayload(jc, "key", &rec->key, &first, depth + 1);
	jpayload(jc, "value", &rec->value, &first, depth + 1);
	if (rec->magic >= 2) {
		struct kd_rec_hdr_iter hi;
		struct kd_header hdr;
		int hfirst = 1;
		jkey(jc, "headers", &first, depth + 1);
		kd_w_raw(out, "[", 1);
		kd_rec_headers_init(&hi, rec);
		while (kd_rec_next_header(&hi, &hdr) == 1) {
			int f2 = 1;
			if (!hfirst)
				kd_w_raw(out, ",", 1);
			hfirst = 0;
			jbreak(jc, depth + 2);
			kd_w_raw(out, "{", 1);
			jpayload(jc, "key", &hdr.key, &f2, depth + 3);
			jpayload(jc, "value", &hdr.value, &f2, depth + 3);
			jbreak(jc, depth + 2);
			kd_w_raw(out, "}", 1);
		}
		if (!hfirst)
			jbreak(jc, depth + 1);
		kd_w_raw(out, "]", 1);
	}
	jbreak(jc, depth);
	kd_w_raw(out, "}", 1);
}

static void json_batch_head(struct jctx *jc, const struct kd_batch *b, int *first, unsigned depth)
{
	struct kd_wbuf *out = jc->out;
	jkey(jc, "base_offset", first, depth);
	kd_w_fmt(out, "%lld", (long long)b->base_offset);
	jkey(jc, "magic", first, depth);
	kd_w_fmt(out, "%d", b->magic);
	jkey(jc, "codec", first, depth);
	kd_json_cstr(out, kd_codec_name(b->codec));
	jkey(jc, "crc_ok", first, depth);
	kd_w_cstr(out, b->crc_ok ? "true" : "false");
	if (b->magic >= 2) {
		jkey(jc, "partition_leader_epoch", first, depth);
		kd_w_fmt(out, "%d", (int)b->partition_leader_epoch);
		jkey(jc, "timestamp_type", first, depth);
		kd_json_cstr(out, b->timestamp_type ? "LogAppendTime" : "CreateTime");
		jkey(jc, "base_timestamp", first, depth);
		kd_w_fmt(out, "%lld", (long long)b->base_timestamp);
		jkey(jc, "max_timestamp", first, depth);
		kd_w_fmt(out, "%lld", (long long)b->max_timestamp);
		jkey(jc, "producer_id", first, depth);
		kd_w_fmt(out, "%lld", (long long)b->producer_id);
		jkey(jc, "producer_epoch", first, depth);
		kd_w_fmt(out, "%d", (int)b->producer_epoch);
		jkey(jc, "base_sequence", first, depth);
		kd_w_fmt(out, "%d", (int)b->base_sequence);
		jkey(jc, "transactional", first, depth);
		kd_w_cstr(out, b->transactional ? "true" : "false");
		jkey(jc, "control", first, depth);
		kd_w_cstr(out, b->control ? "true" : "false");
		if (b->control) {
			jkey(jc, "control_type", first, depth);
			kd_json_cstr(out, kd_control_type_name(b->control_type));
			if (b->control_type == KD_CTRL_ABORT || b->control_type == KD_CTRL_COMMIT) {
				jkey(jc, "coordinator_epoch", first, depth);
				kd_w_fmt(out, "%d", (int)b->coordinator_epoch);
			}
		}
	}
	jkey(jc, "record_count", first, depth);
	kd_w_fmt(out, "%d", (int)b->record_count);
}

/* {"batches":[...],"truncated_tail":bool} for a RECORDS blob. */
static void json_records(struct jctx *jc, const struct kd_view *v, unsigned depth)
{
	struct kd_wbuf *out = jc->out;
	struct kd_rec_iter it;
	struct kd_batch *b;
	int rc, bfirst = 1, first = 1, truncated = 0;

	kd_w_raw(out, "{", 1);
	jkey(jc, "batches", &first, depth + 1);
	kd_w_raw(out, "[", 1);
	kd_rec_iter_init(&it, v->p, v->len, NULL);
	while ((rc = kd_rec_next_batch(&it, &b)) != 0) {
		if (rc == KD_REC_TRUNCATED) {
			truncated = 1;
			break;
		}
		int f2 = 1;
		if (!bfirst)
			kd_w_raw(out, ",", 1);
		bfirst = 0;
		jbreak(jc, depth + 2);
		kd_w_raw(out, "{", 1);
		json_batch_head(jc, b, &f2, depth + 3);
		if (rc < 0) {
			jkey(jc, "error", &f2, depth + 3);
			kd_json_cstr(out, it.err);
		} else {
			struct kd_record rec;
			int rfirst = 1;
			jkey(jc, "records", &f2, depth + 3);
			kd_w_raw(out, "[", 1);
			while ((rc = kd_rec_next_record(&it, &rec)) == 1) {
				if (!rfirst)
					kd_w_raw(out, ",", 1);
				rfirst = 0;
				jbreak(jc, depth + 4);
				json_record(jc, &rec, depth + 4);
			}
			if (!rfirst)
				jbreak(jc, depth + 3);
			kd_w_raw(out, "]", 1);
			if (rc < 0) {
				jkey(jc, "error", &f2, depth + 3);
				kd_json_cstr(out, it.err);
			}
		}
		jbreak(jc, depth + 2);
		kd_w_raw(out, "}", 1);
	}
	if (!bfirst)
		jbreak(jc, depth + 1);
	kd_w_raw(out, "]", 1);
	jkey(jc, "truncated_tail", &first, depth + 1);
	kd_w_cstr(out, truncated ? "true" : "false");
	kd_rec_iter_free(&it);
	jbreak(jc, depth);
	kd_w_raw(out, "}", 1);
}

static void json_node(struct jctx *jc, const struct kd_node *n, unsigned depth);

static void json_struct(struct jctx *jc, const struct kd_node *n, unsigned depth)
{
	struct kd_wbuf *out = jc->out;
	int first = 1, unknown = 0;

	kd_w_raw(out, "{", 1);
	for (uint32_t i = 0; i < n->nkids; i++) {
		const struct kd_node *k = &n->kids[i];
		if (k->type == KD_T_NONE) {
			unknown++;
			continue;
		}
		jkey(jc, k->field->name, &first, depth + 1);
		if (k->field->sensitive && !k->null) {
			char user[KD_SASL_USER_MAX + 1];
			const char *mech = sensitive_info(k, jc->flags, user, sizeof(user));

			kd_json_cstr(out, redacted);
			if (mech) {
				jkey_suffix(jc, k->field->name, "_mechanism", &first, depth + 1);
				kd_json_cstr(out, mech);
			}
			if (user[0]) {
				jkey_suffix(jc, k->field->name, "_user", &first, depth + 1);
				kd_json_cstr(out, user);
			}
			continue;
		}
		if (k->type == KD_T_STRING && !k->null &&
		    !kd_utf8_valid(k->val.v.p, k->val.v.len)) {
			kd_json_bytes(out, k->val.v.p, k->val.v.len);
			jkey_suffix(jc, k->field->name, "_encoding", &first, depth + 1);
			kd_w_cstr(out, "\"base64\"");
			continue;
		}
		json_node(jc, k, depth + 1);
	}
	if (unknown) {
		int ufirst = 1;
		jkey(jc, "_unknown_tags", &first, depth + 1);
		kd_w_raw(out, "[", 1);
		for (uint32_t i = 0; i < n->nkids; i++) {
			const struct kd_node *k = &n->kids[i];
			if (k->type != KD_T_NONE)
				continue;
			if (!ufirst)
				kd_w_raw(out, ",", 1);
			ufirst = 0;
			kd_w_fmt(out, "{\"tag\":%d,\"data\":", (int)k->tag);
			kd_json_bytes(out, k->val.v.p, k->val.v.len);
			kd_w_raw(out, "}", 1);
		}
		kd_w_raw(out, "]", 1);
	}
	if (!first)
		jbreak(jc, depth);
	kd_w_raw(out, "}", 1);
}

static void json_node(struct jctx *jc, const struct kd_node *n, unsigned depth)
{
	struct kd_wbuf *out = jc->out;

	if (n->null) {
		kd_w_raw(out, "null", 4);
		return;
	}
	if (n->field && n->field->sensitive) {
		kd_json_cstr(out, redacted);
		return;
	}
	switch (n->type) {
	case KD_T_BOOL:
		kd_w_cstr(out, n->val.u ? "true" : "false");
		break;
	case KD_T_INT8:
	case KD_T_INT16:
	case KD_T_UINT16:
	case KD_T_INT32:
	case KD_T_UINT32:
	case KD_T_INT64:
		kd_w_fmt(out, "%lld", (long long)n->val.i);
		break;
	case KD_T_FLOAT64:
		json_f64(out, n->val.d);
		break;
	case KD_T_UUID:
		kd_json_uuid(out, n->val.uuid);
		break;
	case KD_T_STRING:
		if (kd_utf8_valid(n->val.v.p, n->val.v.len)) {
			kd_json_str(out, n->val.v.p, n->val.v.len);
		} else {
			/* an array element cannot carry a sibling key */
			kd_w_cstr(out, "{\"base64\":");
			kd_json_bytes(out, n->val.v.p, n->val.v.len);
			kd_w_raw(out, "}", 1);
		}
		break;
	case KD_T_BYTES:
		kd_json_bytes(out, n->val.v.p, n->val.v.len);
		break;
	case KD_T_RECORDS:
		if (jc->flags & KD_RENDER_NO_RECORDS)
			kd_json_bytes(out, n->val.v.p, n->val.v.len);
		else
			json_records(jc, &n->val.v, depth);
		break;
	case KD_T_STRUCT:
		json_struct(jc, n, depth);
		break;
	case KD_T_ARRAY:
		kd_w_raw(out, "[", 1);
		for (uint32_t i = 0; i < n->nkids; i++) {
			if (i)
				kd_w_raw(out, ",", 1);
			if (n->kids[i].type == KD_T_STRUCT)
				jbreak(jc, depth + 1);
			json_node(jc, &n->kids[i], depth + 1);
		}
		if (n->nkids && n->kids[0].type == KD_T_STRUCT)
			jbreak(jc, depth);
		kd_w_raw(out, "]", 1);
		break;
	default:
		kd_w_raw(out, "null", 4);
		break;
	}
}

static const char *tree_api_name(const struct kd_tree *t)
{
	const char *name = t->api_key >= 0 ? kd_api_name(t->api_key) : NULL;
	if (!name && t->def)
		name = t->def->name;
	return name;
}

/* Flags for a tree: RENDER_SASL_CLIENT for SaslAuthenticate requests. */
static unsigned tree_flags(const struct kd_tree *t, unsigned flags)
{
	flags &= ~RENDER_SASL_CLIENT;
	if (t->api_key == KD_API_SASL_AUTHENTICATE && t->is_request)
		flags |= RENDER_SASL_CLIENT;
	return flags;
}

int kd_render_json(const struct kd_tree *t, struct kd_wbuf *out, unsigned flags)
{
	struct jctx jc = {out, tree_flags(t, flags)};
	unsigned depth = 0;
	int first = 1;

	if (flags & KD_RENDER_META) {
		const char *name = tree_api_name(t);
		kd_w_raw(out, "{", 1);
		jkey(&jc, "api", &first, 1);
		if (name)
			kd_json_cstr(out, name);
		else
			kd_w_cstr(out, "null");
		jkey(&jc, "api_key", &first, 1);
		kd_w_fmt(out, "%d", t->api_key);
		jkey(&jc, "version", &first, 1);
		kd_w_fmt(out, "%d", t->version);
		jkey(&jc, "request", &first, 1);
		kd_w_cstr(out, t->is_request ? "true" : "false");
		if (t->v0_fallback) {
			jkey(&jc, "v0_fallback_from", &first, 1);
			kd_w_fmt(out, "%d", t->asked_version);
		}
		jkey(&jc, "body", &first, 1);
		depth = 1;
	}
	if (t->root) {
		json_struct(&jc, t->root, depth);
	} else {
		int f2 = 1;
		kd_w_raw(out, "{", 1);
		jkey(&jc, "error", &f2, depth + 1);
		kd_json_cstr(out, t->err_msg[0] ? t->err_msg : kd_strerror(t->status));
		jkey(&jc, "raw", &f2, depth + 1);
		if (kd_api_sensitive(t->api_key))
			kd_json_cstr(out, redacted);
		else
			kd_json_bytes(out, t->raw.p, t->raw.len);
		jbreak(&jc, depth);
		kd_w_raw(out, "}", 1);
	}
	if (flags & KD_RENDER_META) {
		jbreak(&jc, 0);
		kd_w_raw(out, "}", 1);
	}
	return out->err ? out->err : KD_OK;
}

/* ---- indented text ---- */

static void tindent(struct kd_wbuf *out, unsigned depth)
{
	uint8_t *d = kd_wbuf_reserve(out, 2 * (size_t)depth);
	if (!d)
		return;
	memset(d, ' ', 2 * (size_t)depth);
	out->len += 2 * (size_t)depth;
}

/* Field names that hold Kafka error codes: "ErrorCode", "TopicErrorCode"... */
static int is_error_field(const struct kd_node *n)
{
	if (n->type != KD_T_INT16 || !n->field)
		return 0;
	size_t l = strlen(n->field->name);
	return l >= 9 && memcmp(n->field->name + l - 9, "ErrorCode", 9) == 0;
}

static void text_str(struct kd_wbuf *out, const struct kd_view *v, int is_bytes)
{
	if (v->null) {
		kd_w_cstr(out, "null");
	} else if (!is_bytes && kd_utf8_valid(v->p, v->len)) {
		kd_json_str(out, v->p, v->len);
	} else {
		kd_w_fmt(out, "<%u bytes> ", (unsigned)v->len);
		kd_base64(out, v->p, v->len, 0);
	}
}

static void text_scalar(struct kd_wbuf *out, const struct kd_node *n)
{
	if (n->null) {
		kd_w_cstr(out, "null");
		return;
	}
	if (n->field && n->field->sensitive) {
		kd_w_cstr(out, redacted);
		return;
	}
	switch (n->type) {
	case KD_T_BOOL:
		kd_w_cstr(out, n->val.u ? "true" : "false");
		break;
	case KD_T_FLOAT64:
		kd_w_fmt(out, "%.17g", n->val.d);
		break;
	case KD_T_UUID:
		kd_base64(out, n->val.uuid, 16, 1);
		break;
	case KD_T_STRING:
		text_str(out, &n->val.v, 0);
		break;
	case KD_T_BYTES:
		text_str(out, &n->val.v, 1);
		break;
	default:
		kd_w_fmt(out, "%lld", (long long)n->val.i);
		if (is_error_field(n)) {
			const char *name = kd_error_name((int16_t)n->val.i);
			kd_w_raw(out, " ", 1);
			kd_w_cstr(out, name ? name : "UNKNOWN_CODE");
		}
		break;
	}
}

static void text_records(struct kd_wbuf *out, const struct kd_view *v, unsigned depth)
{
	struct kd_rec_iter it;
	struct kd_batch *b;
	int rc;

	kd_w_fmt(out, "<%u bytes>\n", (unsigned)v->len);
	kd_rec_iter_init(&it, v->p, v->len, NULL);
	while ((rc = kd_rec_next_batch(&it, &b)) != 0) {
		tindent(out, depth + 1);
		if (rc == KD_REC_TRUNCATED) {
			kd_w_cstr(out, "(truncated tail)\n");
			break;
		}
		kd_w_fmt(out, "batch offset=%lld magic=%d codec=%s records=%d crc=%s",
		         (long long)b->base_offset, b->magic, kd_codec_name(b->codec),
		         (int)b->record_count, b->crc_ok ? "ok" : "BAD");
		if (b->magic >= 2 && b->producer_id >= 0)
			kd_w_fmt(out, " producer=%lld/%d seq=%d", (long long)b->producer_id,
			         (int)b->producer_epoch, (int)b->base_sequence);
		if (b->transactional)
			kd_w_cstr(out, " transactional");
		if (b->control)
			kd_w_fmt(out, " control=%s", kd_control_type_name(b->control_type));
		if (rc < 0) {
			kd_w_cstr(out, " error=");
			kd_json_cstr(out, it.err);
			kd_w_raw(out, "\n", 1);
			continue;
		}
		kd_w_raw(out, "\n", 1);
		struct kd_record rec;
		while ((rc = kd_rec_next_record(&it, &rec)) == 1) {
			tindent(out, depth + 2);
			kd_w_fmt(out, "offset=%lld timestamp=%lld key=", (long long)rec.offset,
			         (long long)rec.timestamp);
			text_str(out, &rec.key, 0);
			kd_w_cstr(out, " value=");
			text_str(out, &rec.value, 0);
			if (rec.header_count > 0)
				kd_w_fmt(out, " headers=%d", (int)rec.header_count);
			kd_w_raw(out, "\n", 1);
		}
		if (rc < 0) {
			tindent(out, depth + 2);
			kd_w_cstr(out, "error: ");
			kd_w_cstr(out, it.err);
			kd_w_raw(out, "\n", 1);
		}
	}
	kd_rec_iter_free(&it);
}

static void text_struct(struct kd_wbuf *out, const struct kd_node *n, unsigned depth,
                        unsigned flags);

/* One "Name: value" line, or a block for structs, arrays of structs and records. */
static void text_field(struct kd_wbuf *out, const struct kd_node *k, unsigned depth, unsigned flags)
{
	const char *name = k->field->name;

	tindent(out, depth);
	if (k->null) {
		kd_w_fmt(out, "%s: null\n", name);
		return;
	}
	switch (k->type) {
	case KD_T_STRUCT:
		kd_w_fmt(out, "%s:\n", name);
		text_struct(out, k, depth + 1, flags);
		return;
	case KD_T_ARRAY:
		if (k->nkids == 0) {
			kd_w_fmt(out, "%s: []\n", name);
			return;
		}
		if (k->field->elem == KD_T_STRUCT) {
			kd_w_fmt(out, "%s: [%u]\n", name, (unsigned)k->nkids);
			for (uint32_t i = 0; i < k->nkids; i++) {
				tindent(out, depth + 1);
				kd_w_fmt(out, "[%u]\n", (unsigned)i);
				text_struct(out, &k->kids[i], depth + 2, flags);
			}
			return;
		}
		kd_w_fmt(out, "%s: [", name);
		for (uint32_t i = 0; i < k->nkids; i++) {
			if (i)
				kd_w_raw(out, ", ", 2);
			text_scalar(out, &k->kids[i]);
		}
		kd_w_cstr(out, "]\n");
		return;
	case KD_T_RECORDS:
		kd_w_fmt(out, "%s: ", name);
		if (flags & KD_RENDER_NO_RECORDS) {
			text_str(out, &k->val.v, 1);
			kd_w_raw(out, "\n", 1);
		} else {
			text_records(out, &k->val.v, depth);
		}
		return;
	default:
		kd_w_fmt(out, "%s: ", name);
		if (k->field->sensitive) {
			char user[KD_SASL_USER_MAX + 1];
			const char *mech = sensitive_info(k, flags, user, sizeof(user));

			kd_w_fmt(out, "%s <%u bytes>", redacted, (unsigned)k->val.v.len);
			if (mech)
				kd_w_fmt(out, " mechanism=%s", mech);
			if (user[0]) {
				kd_w_cstr(out, " user=");
				kd_json_cstr(out, user);
			}
		} else {
			text_scalar(out, k);
		}
		kd_w_raw(out, "\n", 1);
		return;
	}
}

static void text_struct(struct kd_wbuf *out, const struct kd_node *n, unsigned depth,
                        unsigned flags)
{
	for (uint32_t i = 0; i < n->nkids; i++) {
		const struct kd_node *k = &n->kids[i];
		if (k->type == KD_T_NONE) {
			tindent(out, depth);
			kd_w_fmt(out, "(unknown tag %d): <%u bytes> ", (int)k->tag,
			         (unsigned)k->val.v.len);
			kd_base64(out, k->val.v.p, k->val.v.len, 0);
			kd_w_raw(out, "\n", 1);
			continue;
		}
		text_field(out, k, depth, flags);
	}
}

int kd_render_text(const struct kd_tree *t, struct kd_wbuf *out, unsigned flags)
{
	const char *name = tree_api_name(t);

	flags = tree_flags(t, flags);
	if (name)
		kd_w_cstr(out, name);
	else
		kd_w_fmt(out, "ApiKey(%d)", t->api_key);
	if (t->api_key >= 0)
		kd_w_cstr(out, t->is_request ? " request" : " response");
	kd_w_fmt(out, " v%d", t->version);
	if (t->v0_fallback)
		kd_w_fmt(out, " (v0 fallback, asked v%d)", t->asked_version);
	kd_w_raw(out, "\n", 1);
	if (!t->root) {
		kd_w_cstr(out, "error: ");
		kd_w_cstr(out, t->err_msg[0] ? t->err_msg : kd_strerror(t->status));
		kd_w_fmt(out, "\nraw: <%u bytes> ", (unsigned)t->raw.len);
		if (kd_api_sensitive(t->api_key))
			kd_w_cstr(out, redacted);
		else
			kd_base64(out, t->raw.p, t->raw.len, 0);
		kd_w_raw(out, "\n", 1);
	} else {
		text_struct(out, t->root, 1, flags);
	}
	return out->err ? out->err : KD_OK;
}
