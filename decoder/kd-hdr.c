/* kd-hdr.c: request and response headers (kd-hdr.h). */
#include <string.h>

#include "kd-hdr.h"
#include "kd-schema.h"

int kd_req_hdr_version_g(int16_t api_key, int16_t api_version, uint8_t *guessed)
{
	const struct kd_api *api = kd_api_get(api_key);

	if (guessed)
		*guessed = api == NULL;
	if (!api)
		return 1;
	/* GEN/ApiMessageTypeGenerator.java generateHeaderVersion: the one
	 * request that predates client ids. */
	if (api_key == KD_API_CONTROLLED_SHUTDOWN && api_version == 0)
		return 0;
	return kd_vers_has(api->req.flexible, api_version) ? 2 : 1;
}

int kd_resp_hdr_version_g(int16_t api_key, int16_t api_version, uint8_t *guessed)
{
	const struct kd_api *api = kd_api_get(api_key);

	if (guessed)
		*guessed = api == NULL;
	if (!api)
		return 0;
	/* KIP-511: ApiVersions responses stay on header v0 at every version. */
	if (api_key == KD_API_API_VERSIONS)
		return 0;
	return kd_vers_has(api->resp.flexible, api_version) ? 1 : 0;
}

/* Skips a tagged-field section (UNSIGNED_VARINT count, then tag, size,
 * payload per field; WIRE-NOTES.md section 5). KD_ESHORT when the bytes
 * end inside it; *need then gets the slice length that could get further
 * (one more byte inside a varint, the payload's end when skipping it). */
static int skip_tags(struct kd_cur *cur, size_t *need)
{
	size_t off = cur->off;
	uint32_t count, tag, size;
	int rc;

	*need = cur->len + 1;
	rc = kd_cur_uvarint(cur, &count);
	if (rc != KD_OK)
		goto fail;
	/* Each field takes at least two bytes, so the loop is bounded by the
	 * input even for a hostile count. */
	for (uint32_t i = 0; i < count; i++) {
		rc = kd_cur_uvarint(cur, &tag);
		if (rc == KD_OK)
			rc = kd_cur_uvarint(cur, &size);
		if (rc != KD_OK)
			goto fail; /* *need is still len + 1 */
		rc = kd_cur_skip(cur, size);
		if (rc != KD_OK) {
			*need = cur->off + size;
			goto fail;
		}
	}
	return KD_OK;
fail:
	cur->off = off;
	return rc;
}

/* Maps a cursor failure inside a header to the header parsers' codes,
 * passing on how many bytes would let parsing get further. */
static int hdr_rc(int rc, size_t want, size_t *need)
{
	if (rc == KD_ESHORT) {
		if (need)
			*need = want;
		return KD_NEED_MORE;
	}
	return rc;
}

/* A header's tagged-field section, kept as a view of its raw bytes:
 * KD_OK, or what hdr_rc() makes of the failure. */
static int header_tags(struct kd_cur *cur, struct kd_view *tags, size_t *need)
{
	size_t t0 = cur->off, want;
	int rc = skip_tags(cur, &want);

	if (rc != KD_OK)
		return hdr_rc(rc, want, need);
	tags->p = cur->p + t0;
	tags->len = (uint32_t)(cur->off - t0);
	return KD_OK;
}

int kd_req_hdr_parse_n(const uint8_t *p, size_t len, struct kd_req_hdr *hdr, size_t *need)
{
	struct kd_cur cur;
	size_t want;
	int rc;

	memset(hdr, 0, sizeof(*hdr));
	hdr->client_id.null = 1;
	kd_cur_init(&cur, p, len);
	if ((rc = kd_cur_i16(&cur, &hdr->api_key)) != KD_OK ||
	    (rc = kd_cur_i16(&cur, &hdr->api_version)) != KD_OK ||
	    (rc = kd_cur_i32(&cur, &hdr->correlation_id)) != KD_OK)
		return hdr_rc(rc, 8, need);
	hdr->hdr_version =
	    (uint8_t)kd_req_hdr_version_g(hdr->api_key, hdr->api_version, &hdr->guessed);
	if (hdr->hdr_version >= 1) {
		/* NULLABLE_STRING even in v2: RequestHeader.json ClientId has
		 * "flexibleVersions": "none". */
		want = len < 10 ? 10 : 10 + (size_t)(int16_t)kd_load_be(p + 8, 2);
		rc = kd_cur_str(&cur, 0, 1, &hdr->client_id);
		if (rc != KD_OK)
			return hdr_rc(rc, want, need);
	}
	if (hdr->hdr_version >= 2 && (rc = header_tags(&cur, &hdr->tags, need)) != KD_OK)
		return rc;
	hdr->len = (uint32_t)cur.off;
	return (int)cur.off;
}

int kd_req_hdr_parse(const uint8_t *p, size_t len, struct kd_req_hdr *hdr)
{
	return kd_req_hdr_parse_n(p, len, hdr, NULL);
}

int kd_resp_hdr_parse_n(const uint8_t *p, size_t len, int16_t api_key, int16_t api_version,
                        struct kd_resp_hdr *hdr, size_t *need)
{
	struct kd_cur cur;
	int rc;

	memset(hdr, 0, sizeof(*hdr));
	kd_cur_init(&cur, p, len);
	rc = kd_cur_i32(&cur, &hdr->correlation_id);
	if (rc != KD_OK)
		return hdr_rc(rc, 4, need);
	hdr->hdr_version = (uint8_t)kd_resp_hdr_version_g(api_key, api_version, &hdr->guessed);
	if (hdr->hdr_version >= 1 && (rc = header_tags(&cur, &hdr->tags, need)) != KD_OK)
		return rc;
	hdr->len = (uint32_t)cur.off;
	return (int)cur.off;
}

int kd_resp_hdr_parse(const uint8_t *p, size_t len, int16_t api_key, int16_t api_version,
                      struct kd_resp_hdr *hdr)
{
	return kd_resp_hdr_parse_n(p, len, api_key, api_version, hdr, NULL);
}

static void write_tags(struct kd_wbuf *w, const struct kd_view *tags)
{
	if (tags->p && tags->len)
		kd_w_raw(w, tags->p, tags->len);
	else
		kd_w_uvarint(w, 0);
}

void kd_req_hdr_write(struct kd_wbuf *w, const struct kd_req_hdr *hdr)
{
	kd_w_i16(w, hdr->api_key);
	kd_w_i16(w, hdr->api_version);
	kd_w_i32(w, hdr->correlation_id);
	if (hdr->hdr_version >= 1)
		kd_w_blob(w, 0, 2, &hdr->client_id);
	if (hdr->hdr_version >= 2)
		write_tags(w, &hdr->tags);
}

void kd_resp_hdr_write(struct kd_wbuf *w, const struct kd_resp_hdr *hdr)
{
	kd_w_i32(w, hdr->correlation_id);
	if (hdr->hdr_version >= 1)
		write_tags(w, &hdr->tags);
}

void kd_req_hdr_init(struct kd_req_hdr *hdr, int16_t api_key, int16_t api_version,
                     int32_t correlation_id, const char *client_id)
{
	memset(hdr, 0, sizeof(*hdr));
	hdr->api_key = api_key;
	hdr->api_version = api_version;
	hdr->correlation_id = correlation_id;
	hdr->hdr_version = (uint8_t)kd_req_hdr_version_g(api_key, api_version, &hdr->guessed);
	if (client_id) {
		hdr->client_id.p = (const uint8_t *)client_id;
		hdr->client_id.len = (uint32_t)strlen(client_id);
	} else {
		hdr->client_id.null = 1;
	}
}

/* Printable ASCII, or any byte of a UTF-8 sequence; no control bytes. */
static int client_id_ok(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return 0;
	return 1;
}

/* Largest tagged section count accepted as plausible in a request header;
 * no Kafka release defines any request-header tag yet. */
#define PLAUSIBLE_HDR_TAGS_MAX 16

int kd_req_plausible_n(const uint8_t *p, size_t len, uint32_t max_frame, size_t *need)
{
	struct kd_cur cur;
	int32_t size;
	int16_t key, ver, cid_len;
	const struct kd_api *api;
	size_t want;
	int hv, r;

	kd_cur_init(&cur, p, len);
	want = 4;
	if (kd_cur_i32(&cur, &size) != KD_OK)
		goto need_more;
	if (size < 8 || (uint32_t)size > max_frame)
		goto no;
	want = 8;
	if (kd_cur_i16(&cur, &key) != KD_OK || kd_cur_i16(&cur, &ver) != KD_OK)
		goto need_more;
	api = kd_api_get(key);
	if (!api || !kd_vers_has(api->req.valid, ver))
		goto no;
	hv = kd_req_hdr_version(key, ver);
	if (hv == 0)
		goto yes;
	if (size < 10)
		goto no;
	want = 14;
	if (len < want)
		goto need_more;
	cid_len = (int16_t)kd_load_be(p + 12, 2);
	if (cid_len < -1 || cid_len > KD_PLAUSIBLE_CLIENT_ID_MAX || 10 + cid_len > size)
		goto no;
	if (cid_len > 0) {
		want = 14 + (size_t)cid_len;
		if (len < want)
			goto need_more;
		if (!client_id_ok(p + 14, (size_t)cid_len))
			goto no;
	}
	if (hv == 2) {
		/* The tagged section must end inside the frame. */
		size_t t0 = 14 + (cid_len > 0 ? (size_t)cid_len : 0);
		size_t frame_end = 4 + (size_t)size;
		size_t lim = len < frame_end ? len : frame_end;
		uint32_t count;
		int rc;

		kd_cur_init(&cur, p, lim);
		cur.off = t0;
		rc = kd_cur_uvarint(&cur, &count);
		want = lim;
		if (rc == KD_OK && count > PLAUSIBLE_HDR_TAGS_MAX)
			goto no;
		cur.off = t0;
		if (rc == KD_OK) {
			size_t tneed;

			rc = skip_tags(&cur, &tneed);
		}
		if (rc == KD_EMALFORMED)
			goto no;
		if (rc == KD_ESHORT) {
			if (lim == frame_end)
				goto no;
			want = len + 1;
			goto need_more;
		}
		want = cur.off;
	}
yes:
	r = 1;
	goto decided;
no:
	r = 0;
decided:
	if (need)
		*need = want < len ? want : len;
	return r;
need_more:
	if (need)
		*need = want;
	return KD_NEED_MORE;
}
