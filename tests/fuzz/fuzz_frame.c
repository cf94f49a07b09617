/* fuzz_frame.c: the header parsers, the header writers and
 * kd_req_plausible on one frame (data starts at the INT32 size).
 *
 * Properties checked (abort on violation): a parsed header re-encodes to
 * the same bytes; every strict prefix of a parsed header is "need more";
 * "need more" always asks for more bytes than it had;
 * kd_req_plausible never says "no" on a prefix of a frame it accepts; the
 * stream's frame_begin agrees with the header parser on the header length. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd-hdr.h"
#include "kd-stream.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

static void roundtrip_req(const uint8_t *p, size_t len)
{
	struct kd_req_hdr h;
	struct kd_wbuf w = {0};
	size_t need = 0;
	int rc = kd_req_hdr_parse_n(p, len, &h, &need);

	if (rc == KD_NEED_MORE)
		check(need > len);
	if (rc <= 0)
		return;
	check((size_t)rc <= len && h.len == (uint32_t)rc);
	kd_req_hdr_write(&w, &h);
	check(w.err == KD_OK && w.len == (size_t)rc && memcmp(w.p, p, w.len) == 0);
	kd_wbuf_free(&w);
	check(kd_req_hdr_parse(p, (size_t)rc - 1, &h) == KD_NEED_MORE);
}

static void roundtrip_resp(const uint8_t *p, size_t len, int16_t key, int16_t ver)
{
	struct kd_resp_hdr h;
	struct kd_wbuf w = {0};
	size_t need = 0;
	int rc = kd_resp_hdr_parse_n(p, len, key, ver, &h, &need);

	if (rc == KD_NEED_MORE)
		check(need > len);
	if (rc <= 0)
		return;
	kd_resp_hdr_write(&w, &h);
	check(w.err == KD_OK && w.len == (size_t)rc && memcmp(w.p, p, w.len) == 0);
	kd_wbuf_free(&w);
	check(kd_resp_hdr_parse(p, (size_t)rc - 1, key, ver, &h) == KD_NEED_MORE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t max = 1u << 20;
	size_t need = 0;
	int r;

	if (size < 4)
		return 0;
	r = kd_req_plausible_n(data, size, max, &need);
	check(r == 0 || r == 1 || r == KD_NEED_MORE);
	if (r == KD_NEED_MORE)
		check(need > size);
	if (r == 1) {
		/* Prefixes of an accepted frame are never rejected. */
		for (size_t k = 0; k < size && k < 64; k++) {
			int rk = kd_req_plausible(data, k, max);

			check(rk == 1 || rk == KD_NEED_MORE);
		}
	}
	roundtrip_req(data + 4, size - 4);
	if (size >= 8) {
		int16_t key = (int16_t)kd_load_be(data, 2);
		int16_t ver = (int16_t)kd_load_be(data + 2, 2);

		roundtrip_resp(data + 4, size - 4, key, ver);
	}

	/* The stream's frame parser on the same bytes, both directions. */
	for (int dir = 0; dir < 2; dir++) {
		struct kd_stream_cfg cfg = {0};
		struct kd_stream *s;
		struct kd_frame_info fi;
		int rc;

		cfg.max_frame = max;
		s = kd_stream_new(&cfg);
		if (!s)
			return 0;
		rc = kd_stream_frame_begin(s, (enum kd_dir)dir, data, size, &fi);
		if (rc == KD_NEED_MORE)
			check(fi.need > size);
		if (rc == KD_OK) {
			check(fi.need <= size && fi.need <= 4 + (size_t)fi.size);
			if (fi.kind == KD_EV_REQUEST) {
				struct kd_req_hdr h;

				check(kd_req_hdr_parse(data + 4, size - 4, &h) ==
				      (int)fi.req_hdr.len);
			}
			if (size >= 4 + (size_t)fi.size)
				check(kd_stream_frame_commit(s, (enum kd_dir)dir, &fi, data, 1) ==
				      KD_OK);
		}
		kd_stream_free(s);
	}
	return 0;
}
