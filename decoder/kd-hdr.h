/* kd-hdr.h: Kafka request and response headers (WIRE-NOTES.md section 2).
 *
 *   request header v0   api_key INT16 | api_version INT16 | correlation_id INT32
 *   request header v1   v0 | client_id NULLABLE_STRING (INT16 len, -1 = null)
 *   request header v2   v1 | tagged fields (client_id stays NULLABLE_STRING)
 *   response header v0  correlation_id INT32
 *   response header v1  v0 | tagged fields
 *
 * The parsers take p just after the frame's INT32 size and never copy:
 * client_id and the raw tagged section are views into p. */
#ifndef KD_HDR_H
#define KD_HDR_H

#include "kd-api-keys-gen.h"
#include "kd-t.h"
#include "kd-cur.h"


/* Largest client id kd_req_plausible() accepts as "sane". Kafka itself has
 * no limit below INT16_MAX, but real clients send short names. */
#define KD_PLAUSIBLE_CLIENT_ID_MAX 1024

struct kd_req_hdr {
	int16_t api_key;
	int16_t api_version;
	int32_t correlation_id;
	struct kd_view client_id; /* null for header v0 or a null client id */
	struct kd_view tags;      /* raw tagged section (count + fields) of v2; len 0 otherwise */
	uint8_t hdr_version;      /* 0, 1 or 2 */
	uint8_t guessed;          /* 1: unknown api key, header version assumed */
	uint32_t len;             /* header bytes */
};

struct kd_resp_hdr {
	int32_t correlation_id;
	struct kd_view tags; /* raw tagged section of v1; len 0 otherwise */
	uint8_t hdr_version; /* 0 or 1 */
	uint8_t guessed;     /* 1: unknown api key, header version assumed */
	uint32_t len;        /* header bytes */
};

/* Request header version (0, 1, 2) for (key, version): v2 when the version
 * is in the request's flexibleVersions, else v1; ControlledShutdown v0 uses
 * v0. An api key the tables do not know is assumed to use v1: we cannot
 * know whether it is flexible, and v1 is a prefix of v2 (the tagged section
 * is then left inside the body). *guessed (may be NULL) is set to 1 then. */
int kd_req_hdr_version_g(int16_t api_key, int16_t api_version, uint8_t *guessed);
static inline int kd_req_hdr_version(int16_t api_key, int16_t api_version)
{
	return kd_req_hdr_version_g(api_key, api_version, NULL);
}

/* Response header version (0, 1): v1 when the version is flexible, else v0;
 * ApiVersions responses always use v0 (KIP-511, so a client can read the
 * error of a version the broker does not support). Unknown keys are
 * assumed to use v0, for the same prefix reason as above. */
int kd_resp_hdr_version_g(int16_t api_key, int16_t api_version, uint8_t *guessed);
static inline int kd_resp_hdr_version(int16_t api_key, int16_t api_version)
{
	return kd_resp_hdr_version_g(api_key, api_version, NULL);
}

/* Parses a request header from p (just after the INT32 size), len bytes.
 * Returns the header length (> 0), KD_NEED_MORE when p ends inside the
 * header (if p was a whole frame the frame is then too short for its
 * header: a caller treats that as KD_ESHORT), or KD_EMALFORMED (a negative
 * client id length other than -1, a bad varint in the tagged section). */
int kd_req_hdr_parse(const uint8_t *p, size_t len, struct kd_req_hdr *hdr);

/* Parses a response header for a request of (api_key, api_version); same
 * return codes as kd_req_hdr_parse. */
int kd_resp_hdr_parse(const uint8_t *p, size_t len, int16_t api_key, int16_t api_version,
                      struct kd_resp_hdr *hdr);

/* The same, and on KD_NEED_MORE *need gets how many bytes from p could let
 * parsing get further (never more than the true minimum, so a caller that
 * waits for that many bytes decodes exactly as if it retried at every
 * byte). */
int kd_req_hdr_parse_n(const uint8_t *p, size_t len, struct kd_req_hdr *hdr, size_t *need);
int kd_resp_hdr_parse_n(const uint8_t *p, size_t len, int16_t api_key, int16_t api_version,
                        struct kd_resp_hdr *hdr, size_t *need);

/* Writers: append the header (not the frame size) in hdr->hdr_version.
 * The tagged section is written from hdr->tags when it has bytes, else as
 * an empty section (count 0). Errors are sticky in w->err. */
void kd_req_hdr_write(struct kd_wbuf *w, const struct kd_req_hdr *hdr);
void kd_resp_hdr_write(struct kd_wbuf *w, const struct kd_resp_hdr *hdr);

/* Fills hdr for (key, version, correlation id, client id) with the header
 * version the tables give; client_id may be NULL (null client id). A
 * convenience for writers of new frames. */
void kd_req_hdr_init(struct kd_req_hdr *hdr, int16_t api_key, int16_t api_version,
                     int32_t correlation_id, const char *client_id);

/* Whether p (pointing at a frame's INT32 size, len bytes available) looks
 * like the start of a Kafka request: size in [8, max_frame], api key known
 * to the tables, version within the request's validVersions, client id
 * null or at most KD_PLAUSIBLE_CLIENT_ID_MAX bytes of printable ASCII or
 * UTF-8 (no control bytes), the header's tagged section well formed, and
 * the header inside the frame. Returns 1 (plausible), 0 (not), or
 * KD_NEED_MORE (not decided yet). Unknown api keys answer 0: they cannot be
 * checked. Used to resync after capture gaps and to spot Kafka on
 * unknown ports. If need is non-NULL it gets, on KD_NEED_MORE, how many
 * bytes from p the check needs at least, and on a decision how many bytes
 * it looked at (the same decision follows from just those bytes). */
int kd_req_plausible_n(const uint8_t *p, size_t len, uint32_t max_frame, size_t *need);
static inline int kd_req_plausible(const uint8_t *p, size_t len, uint32_t max_frame)
{
	return kd_req_plausible_n(p, len, max_frame, NULL);
}

#endif
