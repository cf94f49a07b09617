/* test_hdr.c: request/response headers and kd_req_plausible (kd-hdr.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kd-hdr.h"
#include "kd-schema.h"

/* ---- INDEX.tsv, read independently of the generated tables ---- */

struct idx_row {
	int key;
	int req_lo, req_hi;
	int flex_lo; /* -1: none */
};

static int parse_range(const char *s, int *lo, int *hi)
{
	if (strcmp(s, "none") == 0) {
		*lo = *hi = -1;
		return 0;
	}
	if (sscanf(s, "%d-%d", lo, hi) == 2)
		return 0;
	if (sscanf(s, "%d", lo) == 1) {
		*hi = strchr(s, '+') ? 32767 : *lo;
		return 0;
	}
	return -1;
}

static int load_index(struct idx_row *rows, int max)
{
	const char *shared = getenv("KWIRE_SHARED");
	char path[1024], line[1024];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "%s/kafka-protocol/INDEX.tsv",
	         shared ? shared : "/work/shared");
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f) && n < max) {
		char *col[8] = {0};
		char *save = NULL, *t = strtok_r(line, "\t\n", &save);
		int c = 0, hi;

		while (t && c < 8) {
			col[c++] = t;
			t = strtok_r(NULL, "\t\n", &save);
		}
		if (c < 5 || strcmp(col[0], "apiKey") == 0)
			continue;
		rows[n].key = atoi(col[0]);
		if (parse_range(col[2], &rows[n].req_lo, &rows[n].req_hi) ||
		    parse_range(col[4], &rows[n].flex_lo, &hi))
			continue;
		n++;
	}
	fclose(f);
	return n;
}

static void test_versions_vs_index(void **state)
{
	struct idx_row rows[256];
	int n = load_index(rows, 256), checked = 0;

	(void)state;
	if (n < 0) {
		print_message("SKIP: no kafka-protocol/INDEX.tsv (needs: KWIRE_SHARED)\n");
		skip();
	}
	assert_true(n >= 80);
	for (int i = 0; i < n; i++) {
		for (int v = rows[i].req_lo; v <= rows[i].req_hi; v++) {
			int flex = rows[i].flex_lo >= 0 && v >= rows[i].flex_lo;
			int want_req = flex ? 2 : 1, want_resp = flex ? 1 : 0;
			uint8_t g = 9;

			if (rows[i].key == 7 && v == 0)
				want_req = 0;
			if (rows[i].key == 18)
				want_resp = 0;
			assert_int_equal(kd_req_hdr_version_g((int16_t)rows[i].key, (int16_t)v, &g),
			                 want_req);
			assert_int_equal(g, 0);
			assert_int_equal(kd_resp_hdr_version((int16_t)rows[i].key, (int16_t)v),
			                 want_resp);
			checked++;
		}
	}
	assert_true(checked >= 300); /* 327 request versions in this spec */
}

static void test_versions_vs_tables(void **state)
{
	(void)state;
	for (unsigned i = 0; i < kd_napis; i++) {
		const struct kd_api *api = &kd_apis[i];

		for (int v = api->req.valid.lo; v <= api->req.valid.hi; v++) {
			int hv = kd_req_hdr_version(api->key, (int16_t)v);

			if (api->key == KD_API_CONTROLLED_SHUTDOWN && v == 0)
				assert_int_equal(hv, 0);
			else
				assert_int_equal(hv, kd_vers_has(api->req.flexible, v) ? 2 : 1);
		}
	}
}

static void test_exceptions(void **state)
{
	uint8_t g = 0;

	(void)state;
	assert_int_equal(kd_req_hdr_version(KD_API_CONTROLLED_SHUTDOWN, 0), 0);
	assert_int_equal(kd_req_hdr_version(KD_API_CONTROLLED_SHUTDOWN, 1), 1);
	assert_int_equal(kd_req_hdr_version(KD_API_CONTROLLED_SHUTDOWN, 3), 2);
	for (int v = 0; v <= 4; v++)
		assert_int_equal(kd_resp_hdr_version(KD_API_API_VERSIONS, (int16_t)v), 0);
	assert_int_equal(kd_req_hdr_version(KD_API_API_VERSIONS, 3), 2);
	assert_int_equal(kd_req_hdr_version(KD_API_SASL_HANDSHAKE, 1), 1);
	/* Unknown keys: request v1, response v0, flagged as guesses. */
	assert_int_equal(kd_req_hdr_version_g(9999, 0, &g), 1);
	assert_int_equal(g, 1);
	g = 0;
	assert_int_equal(kd_resp_hdr_version_g(-5, 0, &g), 0);
	assert_int_equal(g, 1);
	/* A version above validVersions still follows "N+" flexibility. */
	assert_int_equal(kd_req_hdr_version(0, 99), 2);
}

/* ---- parse / write ---- */

static size_t build_req(uint8_t *out, size_t cap, int16_t key, int16_t ver, int32_t cid,
                        const char *client_id, const uint8_t *tags, size_t ntags)
{
	struct kd_wbuf w = {0};
	struct kd_req_hdr h;
	size_t n;

	kd_req_hdr_init(&h, key, ver, cid, client_id);
	if (tags) {
		h.tags.p = tags;
		h.tags.len = (uint32_t)ntags;
	}
	kd_req_hdr_write(&w, &h);
	assert_int_equal(w.err, KD_OK);
	n = w.len;
	assert_true(n <= cap);
	memcpy(out, w.p, n);
	kd_wbuf_free(&w);
	return n;
}

static void test_req_roundtrip(void **state)
{
	/* tags: 2 fields: tag 0 size 1 {0x7f}, tag 5 size 0 */
	static const uint8_t tags[] = {0x02, 0x00, 0x01, 0x7f, 0x05, 0x00};
	struct {
		int16_t key, ver;
		const char *cid;
		int tags;
		int hv;
	} cases[] = {
	    {7, 0, NULL, 0, 0},
	    {3, 1, "kwire", 0, 1},
	    {3, 12, "kwire", 1, 2},
	    {18, 3, NULL, 0, 2},
	    {0, 3, "", 0, 1},
	    {17, 0, "sasl-client", 0, 1},
	    {4242, 1, "unknown-api", 0, 1},
	};
	uint8_t buf[256];

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct kd_req_hdr h;
		size_t n = build_req(buf, sizeof(buf), cases[c].key, cases[c].ver, 77, cases[c].cid,
		                     cases[c].tags ? tags : NULL, sizeof(tags));
		int rc = kd_req_hdr_parse(buf, n, &h);

		assert_int_equal(rc, (int)n);
		assert_int_equal(h.len, n);
		assert_int_equal(h.api_key, cases[c].key);
		assert_int_equal(h.api_version, cases[c].ver);
		assert_int_equal(h.correlation_id, 77);
		assert_int_equal(h.hdr_version, cases[c].hv);
		if (cases[c].cid && cases[c].hv > 0) {
			assert_false(h.client_id.null);
			assert_int_equal(h.client_id.len, strlen(cases[c].cid));
			assert_memory_equal(h.client_id.p, cases[c].cid, h.client_id.len);
		} else {
			assert_true(h.client_id.null);
		}
		if (cases[c].hv == 2) {
			assert_int_equal(h.tags.len, cases[c].tags ? sizeof(tags) : 1);
		}
		/* Every strict prefix is "need more", asking for more than it
		 * has and never for more than the header. */
		for (size_t k = 0; k < n; k++) {
			size_t need = 0;

			assert_int_equal(kd_req_hdr_parse(buf, k, &h), KD_NEED_MORE);
			assert_int_equal(kd_req_hdr_parse_n(buf, k, &h, &need), KD_NEED_MORE);
			assert_true(need > k && need <= n);
		}
		/* Trailing body bytes are not part of the header. */
		memset(buf + n, 0xee, 16);
		assert_int_equal(kd_req_hdr_parse(buf, n + 16, &h), (int)n);
	}
}

/* Golden bytes, laid out by hand from RequestHeader.json: ApiVersions v3
 * (header v2) with client id "rdkafka" and an empty tagged section. */
static void test_req_golden(void **state)
{
	static const uint8_t hdr[] = {0x00, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00,
	                              0x07, 'r',  'd',  'k',  'a',  'f',  'k',  'a',  0x00};
	struct kd_req_hdr h;
	struct kd_wbuf w = {0};

	(void)state;
	assert_int_equal(kd_req_hdr_parse(hdr, sizeof(hdr), &h), (int)sizeof(hdr));
	assert_int_equal(h.api_key, 18);
	assert_int_equal(h.hdr_version, 2);
	assert_int_equal(h.correlation_id, 1);
	kd_req_hdr_write(&w, &h);
	assert_int_equal(w.len, sizeof(hdr));
	assert_memory_equal(w.p, hdr, sizeof(hdr));
	kd_wbuf_free(&w);
}

static void test_req_malformed(void **state)
{
	static const uint8_t badlen[] = {0x00, 0x03, 0x00, 0x01, 0x00,
	                                 0x00, 0x00, 0x01, 0xff, 0xfe};
	/* Metadata v12 (header v2) with an over-long tag-count varint. */
	static const uint8_t badtags[] = {0x00, 0x03, 0x00, 0x0c, 0,    0,    0,    1,
	                                  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	struct kd_req_hdr h;

	(void)state;
	assert_int_equal(kd_req_hdr_parse(badlen, sizeof(badlen), &h), KD_EMALFORMED);
	assert_int_equal(kd_req_hdr_parse(badtags, sizeof(badtags), &h), KD_EMALFORMED);
}

static void test_resp(void **state)
{
	static const uint8_t tags[] = {0x01, 0x03, 0x02, 0xaa, 0xbb};
	struct kd_wbuf w = {0};
	struct kd_resp_hdr h = {0}, g;

	(void)state;
	/* Metadata v12 response: header v1. */
	h.correlation_id = -3;
	h.hdr_version = 1;
	h.tags.p = tags;
	h.tags.len = sizeof(tags);
	kd_resp_hdr_write(&w, &h);
	assert_int_equal(w.len, 4 + sizeof(tags));
	assert_int_equal(kd_resp_hdr_parse(w.p, w.len, 3, 12, &g), (int)w.len);
	assert_int_equal(g.correlation_id, -3);
	assert_int_equal(g.hdr_version, 1);
	assert_int_equal(g.tags.len, sizeof(tags));
	for (size_t k = 0; k < w.len; k++) {
		size_t need = 0;

		assert_int_equal(kd_resp_hdr_parse_n(w.p, k, 3, 12, &g, &need), KD_NEED_MORE);
		assert_true(need > k && need <= w.len);
	}
	/* The same bytes as an ApiVersions v3 response: header v0, 4 bytes. */
	assert_int_equal(kd_resp_hdr_parse(w.p, w.len, 18, 3, &g), 4);
	assert_int_equal(g.hdr_version, 0);
	/* Metadata v1: header v0. */
	assert_int_equal(kd_resp_hdr_parse(w.p, w.len, 3, 1, &g), 4);
	/* Unknown key: v0, guessed. */
	assert_int_equal(kd_resp_hdr_parse(w.p, w.len, 30000, 0, &g), 4);
	assert_int_equal(g.guessed, 1);
	kd_wbuf_free(&w);
	/* An empty tagged section is written as count 0. */
	memset(&h, 0, sizeof(h));
	h.hdr_version = 1;
	kd_resp_hdr_write(&w, &h);
	assert_int_equal(w.len, 5);
	assert_int_equal(w.p[4], 0);
	kd_wbuf_free(&w);
}

/* ---- plausibility ---- */

static size_t build_frame(uint8_t *out, size_t cap, int16_t key, int16_t ver, const char *cid,
                          size_t body)
{
	size_t n = build_req(out + 4, cap - 4, key, ver, 5, cid, NULL, 0);

	assert_true(4 + n + body <= cap);
	memset(out + 4 + n, 0x41, body);
	n += body;
	out[0] = (uint8_t)(n >> 24);
	out[1] = (uint8_t)(n >> 16);
	out[2] = (uint8_t)(n >> 8);
	out[3] = (uint8_t)n;
	return 4 + n;
}

static void test_plausible(void **state)
{
	uint8_t f[512];
	size_t n;
	uint32_t max = 100u << 20;

	(void)state;
	/* Valid frames: yes; their prefixes: need-more or yes, never no. */
	struct {
		int16_t key, ver;
		const char *cid;
	} ok[] = {
	    {3, 12, "consumer-1"}, {0, 9, "p"}, {7, 0, NULL}, {18, 3, NULL}, {1, 4, "é-ünicode"}};
	for (size_t c = 0; c < sizeof(ok) / sizeof(ok[0]); c++) {
		n = build_frame(f, sizeof(f), ok[c].key, ok[c].ver, ok[c].cid, 20);
		assert_int_equal(kd_req_plausible(f, n, max), 1);
		for (size_t k = 0; k < n; k++) {
			int r = kd_req_plausible(f, k, max);
			size_t need = 0;

			assert_true(r == 1 || r == KD_NEED_MORE);
			if (kd_req_plausible_n(f, k, max, &need) == KD_NEED_MORE)
				assert_true(need > k);
		}
	}
	/* Unknown key, version out of range: no. */
	n = build_frame(f, sizeof(f), 1234, 0, "x", 4);
	assert_int_equal(kd_req_plausible(f, n, max), 0);
	n = build_frame(f, sizeof(f), 3, 99, "x", 4);
	assert_int_equal(kd_req_plausible(f, n, max), 0);
	n = build_frame(f, sizeof(f), 3, -1, "x", 4);
	assert_int_equal(kd_req_plausible(f, n, max), 0);
	/* Control bytes in the client id: no. */
	n = build_frame(f, sizeof(f), 3, 1, "ab\ncd", 4);
	assert_int_equal(kd_req_plausible(f, n, max), 0);
	/* Sizes: over max, negative, too small. */
	n = build_frame(f, sizeof(f), 3, 1, "abc", 4);
	assert_int_equal(kd_req_plausible(f, n, 8), 0);
	f[0] = 0x80;
	assert_int_equal(kd_req_plausible(f, n, max), 0);
	f[0] = 0x7f; /* 2 GB */
	assert_int_equal(kd_req_plausible(f, n, max), 0);
	memcpy(f, "\0\0\0\x05", 4);
	assert_int_equal(kd_req_plausible(f, n, max), 0);
	/* Client id longer than the frame: no. */
	n = build_frame(f, sizeof(f), 3, 1, "abcdef", 0);
	f[3] = 12; /* frame shorter than 10 + client id */
	assert_int_equal(kd_req_plausible(f, n, max), 0);
	/* A SASL PLAIN token and a GSSAPI token are not requests. */
	static const uint8_t plain[] = "\0\0\0\x0b\0alice\0pw12";
	assert_int_equal(kd_req_plausible(plain, sizeof(plain) - 1, max), 0);
	static const uint8_t gss[] = {0, 0, 0, 20, 0x60, 0x82, 0x02, 0x10, 0x06, 0x09};
	assert_int_equal(kd_req_plausible(gss, sizeof(gss), max), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_versions_vs_index),
	    cmocka_unit_test(test_versions_vs_tables),
	    cmocka_unit_test(test_exceptions),
	    cmocka_unit_test(test_req_roundtrip),
	    cmocka_unit_test(test_req_golden),
	    cmocka_unit_test(test_req_malformed),
	    cmocka_unit_test(test_resp),
	    cmocka_unit_test(test_plausible),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
