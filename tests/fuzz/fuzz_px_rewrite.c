/* fuzz_px_rewrite.c: the proxy's response edits, px_rewrite_response and
 * px_clamp_apiversions (proxy/px-rewrite.c), on any response frame.
 *
 * Input:
 *   byte 0   the API: Metadata, FindCoordinator, DescribeCluster, Produce,
 *            Fetch, ApiVersions (byte % 6)
 *   byte 1   the version
 *   byte 2   length of the advertised host (% PX_HOST_MAX), then the host
 *   rest     the frame from its INT32 size on (the size is set to match)
 * The address map answers that host and a port derived from the node id,
 * and leaves every fifth node id alone.
 *
 * Checked: no crash, no leak; 0 leaves out untouched; a rewritten frame
 * keeps the header bytes, has a matching size, and is a fixed point (the
 * same edit on it changes nothing). Seeds: real responses from
 * tests/data (fuzz_px_seeds.py). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd-cur.h"
#include "kd-hdr.h"
#include "px.h"

static const int16_t apis[] = {3, 10, 60, 0, 1, 18};

struct fmap {
	char host[PX_HOST_MAX];
};

static int fmap(void *arg, int32_t node_id, const struct kd_view *host, int32_t port,
                char out_host[PX_HOST_MAX], int32_t *out_port)
{
	const struct fmap *m = arg;

	(void)host;
	(void)port;
	if (node_id % 5 == 0)
		return -1;
	memcpy(out_host, m->host, PX_HOST_MAX);
	*out_port = 9000 + (node_id & 0xfff);
	return 0;
}

static void check(int ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fmap m;
	struct kd_wbuf out = {0}, again = {0};
	int16_t key, ver;
	size_t hl, flen;
	uint8_t *frame;
	int rc, rc2;

	if (size < 3)
		return 0;
	key = apis[data[0] % 6];
	ver = (int16_t)data[1];
	hl = data[2] % PX_HOST_MAX;
	if (3 + hl > size)
		return 0;
	memset(m.host, 0, sizeof(m.host));
	memcpy(m.host, data + 3, hl);
	flen = size - 3 - hl;
	if (flen < 4)
		return 0;
	frame = malloc(flen);
	if (!frame)
		return 0;
	memcpy(frame, data + 3 + hl, flen);
	for (int i = 0; i < 4; i++)
		frame[i] = (uint8_t)((flen - 4) >> (24 - 8 * i));

	if (key == 18)
		rc = px_clamp_apiversions(ver, frame, flen, &out);
	else
		rc = px_rewrite_response(key, ver, frame, flen, fmap, &m, &out);
	check(rc <= 1);
	if (rc <= 0)
		check(out.len == 0 || rc < 0);
	if (rc == 1) {
		struct kd_resp_hdr h;
		int hlen = kd_resp_hdr_parse(frame + 4, flen - 4, key, ver, &h);

		check(out.err == KD_OK && out.len >= 4);
		check(kd_load_be(out.p, 4) == out.len - 4);
		check(hlen > 0 && out.len >= 4 + (size_t)hlen &&
		      memcmp(out.p + 4, frame + 4, (size_t)hlen) == 0);
		if (key == 18)
			rc2 = px_clamp_apiversions(ver, out.p, out.len, &again);
		else
			rc2 = px_rewrite_response(key, ver, out.p, out.len, fmap, &m, &again);
		check(rc2 == 0 && again.len == 0);
	}
	kd_wbuf_free(&out);
	kd_wbuf_free(&again);
	free(frame);
	return 0;
}
