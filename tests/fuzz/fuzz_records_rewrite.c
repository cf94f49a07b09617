/* fuzz_records_rewrite.c: libFuzzer target for the record rewriter
 * (kd-recedit.h) and JSON masking (kd-json.h): decode, rewrite, encode,
 * decode again. The input is one flags byte and a RECORDS blob; the CRC-32C
 * of every v2 batch in the blob is fixed up first, so that mutations reach
 * the records instead of stopping at the checksum. Each record gets its
 * headers edited (those whose name starts with 'a' removed, "x-kwire"
 * added unless the flags say not) and its value masked by a few paths with
 * the op the flags choose (a value that is not JSON is kept, as
 * on_error: pass does). When the rewrite succeeds, the output must decode
 * with valid CRCs, batch for batch like the input (base offset, producer id
 * and epoch, base sequence, record count, timestamps kept) and record for
 * record like the edit says. Flag 0x40 turns the masks off (headers alone
 * change: the splicing path of kd-recedit.h); every input is also
 * rewritten by the general path (no splicing), which must agree on success
 * and pass the same checks. Seeds in corpus/fuzz_records_rewrite/. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd-crc.h"
#include "kd-json.h"
#include "kd-recedit.h"
#include "kd-records.h"
#include "kd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checked in every build (fuzz builds define NDEBUG). */
#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x)) {                                                                        \
			fprintf(stderr, "fuzz_records_rewrite: line %d: %s\n", __LINE__, #x);      \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

struct fz {
	uint8_t flags;
	unsigned nmasks;
	struct kd_jpath paths[4];
	struct kd_jmask masks[4];
};

static int fz_hash(const struct kd_jmask *m, const uint8_t *in, size_t len, struct kd_wbuf *out)
{
	(void)m;
	char hex[10];
	uint32_t c = kd_crc32c(0, in, len);
	for (int i = 0; i < 8; i++)
		hex[1 + i] = "0123456789abcdef"[(c >> (28 - 4 * i)) & 15];
	hex[0] = hex[9] = '"';
	kd_w_raw(out, hex, 10);
	return 0;
}

/* The value the edit gives (into w): 1 changed, 0 not. */
static int fz_value(const struct fz *f, const struct kd_view *v, struct kd_wbuf *w)
{
	if (v->null)
		return 0;
	if (!f->nmasks)
		return 0;
	int rc = kd_json_mask(v->p, v->len, f->masks, f->nmasks, fz_hash, w);
	if (rc > 0) {
		/* A masked valid document stays a valid document. */
		CHECK(kd_json_valid(w->p, w->len));
		return 1;
	}
	/* Nothing masked: the value as it came; not JSON: nothing written. */
	if (rc == 0)
		CHECK(w->len == v->len && (!v->len || !memcmp(w->p, v->p, v->len)));
	else
		CHECK(w->len == 0);
	w->len = 0;
	return 0;
}

static int drops(const struct kd_header *h)
{
	return h->key.len && h->key.p[0] == 'a';
}

static int fz_edit(void *arg, const struct kd_batch *b, const struct kd_record *rec,
                   struct kd_rec_edit *ed, struct kd_arena *a, char *err, size_t errlen)
{
	(void)b;
	(void)err;
	(void)errlen;
	struct fz *f = arg;
	int changed = 0;
	struct kd_wbuf w = {0};
	if (fz_value(f, &rec->value, &w)) {
		uint8_t *p = kd_arena_dup(a, w.p, w.len);
		if (!p) {
			kd_wbuf_free(&w);
			return KD_ENOMEM;
		}
		ed->value = (struct kd_view){p, (uint32_t)w.len, 0};
		changed = 1;
	}
	kd_wbuf_free(&w);
	struct kd_header *h = kd_arena_alloc(a, (ed->nheaders + 1) * sizeof(*h));
	if (!h)
		return KD_ENOMEM;
	uint32_t n = 0;
	for (uint32_t i = 0; i < ed->nheaders; i++) {
		if (drops(&ed->headers[i]))
			changed = 1;
		else
			h[n++] = ed->headers[i];
	}
	if (!(f->flags & 0x10)) {
		h[n++] = (struct kd_header){{(const uint8_t *)"x-kwire", 7, 0},
		                            {(const uint8_t *)"1", 1, 0}};
		changed = 1;
	}
	ed->headers = h;
	ed->nheaders = n;
	return changed;
}

static int view_eq(struct kd_view a, struct kd_view b)
{
	if (a.null || b.null)
		return a.null == b.null;
	return a.len == b.len && (!a.len || !memcmp(a.p, b.p, a.len));
}

/* Recomputes the CRC-32C of each v2 batch in p (entries framed by their
 * INT32 length at offset 8). */
static void fix_crcs(uint8_t *p, size_t len)
{
	size_t at = 0;
	while (len - at >= 61) {
		uint32_t blen = (uint32_t)p[at + 8] << 24 | (uint32_t)p[at + 9] << 16 |
		                (uint32_t)p[at + 10] << 8 | p[at + 11];
		if (blen > len - at - 12)
			break;
		if (p[at + 16] == 2 && blen >= 49) {
			uint32_t crc = kd_crc32c(0, p + at + 21, blen - 9);
			p[at + 17] = (uint8_t)(crc >> 24);
			p[at + 18] = (uint8_t)(crc >> 16);
			p[at + 19] = (uint8_t)(crc >> 8);
			p[at + 20] = (uint8_t)crc;
		}
		at += 12 + (size_t)blen;
	}
}

/* Input and output read side by side: every batch and record as the edit says. */
static void check(struct fz *f, const uint8_t *in, size_t inlen, const uint8_t *out, size_t outlen,
                  const struct kd_rec_limits *lim)
{
	struct kd_rec_iter a, b;
	struct kd_batch *ba, *bb;
	struct kd_record ra, rb;
	int rc;
	kd_rec_iter_init(&a, in, inlen, lim);
	kd_rec_iter_init(&b, out, outlen, lim);
	while ((rc = kd_rec_next_batch(&a, &ba)) == 1) {
		CHECK(kd_rec_next_batch(&b, &bb) == 1);
		CHECK(bb->crc_ok);
		CHECK(bb->magic == 2 && ba->magic == 2);
		CHECK(bb->base_offset == ba->base_offset);
		CHECK(bb->producer_id == ba->producer_id);
		CHECK(bb->producer_epoch == ba->producer_epoch);
		CHECK(bb->base_sequence == ba->base_sequence);
		CHECK(bb->record_count == ba->record_count);
		CHECK(bb->last_offset_delta == ba->last_offset_delta);
		CHECK(bb->base_timestamp == ba->base_timestamp);
		CHECK(bb->max_timestamp == ba->max_timestamp);
		CHECK(bb->codec == ba->codec);
		CHECK(bb->control == ba->control);
		if (ba->control) {
			CHECK(ba->raw.len == bb->raw.len &&
			      !memcmp(ba->raw.p, bb->raw.p, ba->raw.len));
			continue;
		}
		while (kd_rec_next_record(&a, &ra) == 1) {
			CHECK(kd_rec_next_record(&b, &rb) == 1);
			CHECK(ra.offset == rb.offset && ra.timestamp == rb.timestamp);
			CHECK(view_eq(ra.key, rb.key));
			struct kd_wbuf w = {0};
			struct kd_view want = ra.value;
			if (fz_value(f, &ra.value, &w))
				want = (struct kd_view){w.p, (uint32_t)w.len, 0};
			CHECK(view_eq(want, rb.value));
			kd_wbuf_free(&w);
			/* Headers: the kept ones in order, then x-kwire. */
			struct kd_rec_hdr_iter ha, hb;
			struct kd_header x, y;
			kd_rec_headers_init(&ha, &ra);
			kd_rec_headers_init(&hb, &rb);
			while (kd_rec_next_header(&ha, &x) == 1) {
				if (drops(&x))
					continue;
				CHECK(kd_rec_next_header(&hb, &y) == 1);
				CHECK(view_eq(x.key, y.key) && view_eq(x.value, y.value));
			}
			if (!(f->flags & 0x10)) {
				CHECK(kd_rec_next_header(&hb, &y) == 1);
				CHECK(y.key.len == 7 && !memcmp(y.key.p, "x-kwire", 7));
			}
			CHECK(kd_rec_next_header(&hb, &y) == 0);
		}
		CHECK(kd_rec_next_record(&b, &rb) == 0);
	}
	/* The rewrite succeeded: the input had no bad batch; a partial tail
	 * is left out of the output. */
	CHECK(rc == 0 || rc == KD_REC_TRUNCATED);
	CHECK(kd_rec_next_batch(&b, &bb) == 0);
	kd_rec_iter_free(&a);
	kd_rec_iter_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const paths[4] = {"a", "a.b", "[*]", "*.c[0]"};
	struct kd_rec_limits lim = {.max_decompressed = 1 << 20, .max_records = 10000};
	struct fz f;
	if (size < 1)
		return 0;
	memset(&f, 0, sizeof(f));
	f.flags = data[0];
	f.nmasks = (f.flags & 0x40) ? 0 : 4;
	for (int i = 0; i < 4; i++) {
		int rc = kd_jpath_parse(&f.paths[i], paths[i], strlen(paths[i]), NULL, 0);
		CHECK(rc == 0);
		f.masks[i].path = &f.paths[i];
		f.masks[i].op = (uint8_t)((f.flags >> (2 * (i & 1))) & 3) % 3;
		f.masks[i].with = "\"***\"";
		f.masks[i].with_len = 5;
	}
	uint8_t *in = malloc(size);
	if (!in)
		return 0;
	size_t inlen = size - 1;
	memcpy(in, data + 1, inlen);
	if (!(f.flags & 0x20))
		fix_crcs(in, inlen);
	/* Reused from input to input, as a proxy worker reuses it. */
	static struct kd_recedit rwe, slow;
	struct kd_wbuf out = {0}, out2 = {0};
	struct kd_recedit_stats st, st2;
	char err[256] = "", err2[256] = "";
	int rc = kd_rec_rewrite(&rwe, in, inlen, &lim, fz_edit, &f, &out, &st, err, sizeof(err));
	if (rc == KD_OK)
		check(&f, in, inlen, out.p, out.len, &lim);
	else
		CHECK(out.len == 0 && err[0]);
	slow.no_splice = 1;
	int rc2 =
	    kd_rec_rewrite(&slow, in, inlen, &lim, fz_edit, &f, &out2, &st2, err2, sizeof(err2));
	CHECK(rc2 == rc);
	CHECK(st2.spliced == 0);
	if (rc2 == KD_OK) {
		CHECK(st2.rewritten == st.rewritten && st2.records == st.records);
		check(&f, in, inlen, out2.p, out2.len, &lim);
	}
	kd_wbuf_free(&out);
	kd_wbuf_free(&out2);
	free(in);
	return 0;
}
