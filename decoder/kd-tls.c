/* kd-tls.c: the TLS ClientHello reader (kd-tls.h). */
#include <string.h>

#include "kd-cur.h"
#include "kd-tls.h"

#define TLS_HANDSHAKE 22
#define TLS_CLIENT_HELLO 1
#define TLS_EXT_SERVER_NAME 0
#define TLS_SNI_HOST_NAME 0

int kd_tls_looks_like(const uint8_t *p, size_t len)
{
	return len >= 3 && p[0] == TLS_HANDSHAKE && p[1] == 3 && p[2] <= 4;
}

/* A vector with a length prefix of width bytes: its contents as a
 * sub-cursor. KD_ESHORT when it runs past cur. */
static int vec(struct kd_cur *cur, unsigned width, struct kd_cur *sub)
{
	uint64_t n;
	if (kd_cur_be(cur, width, &n) != KD_OK)
		return KD_ESHORT;
	const uint8_t *p = kd_cur_pos(cur);
	if (kd_cur_skip(cur, (size_t)n) != KD_OK)
		return KD_ESHORT;
	kd_cur_init(sub, p, (size_t)n);
	return KD_OK;
}

/* The server_name extension's data: the first host_name. */
static int sni_read(struct kd_cur *ext, struct kd_tls_hello *out)
{
	struct kd_cur list;
	if (vec(ext, 2, &list) != KD_OK)
		return KD_EMALFORMED;
	while (kd_cur_left(&list)) {
		int8_t type;
		struct kd_cur name;
		if (kd_cur_i8(&list, &type) != KD_OK || vec(&list, 2, &name) != KD_OK)
			return KD_EMALFORMED;
		if ((uint8_t)type == TLS_SNI_HOST_NAME && !out->has_sni) {
			size_t n = kd_cur_left(&name);
			if (n == 0 || memchr(kd_cur_pos(&name), '\0', n))
				return KD_EMALFORMED; /* RFC 6066: at least one byte, no NUL */
			out->sni.p = kd_cur_pos(&name);
			out->sni.len = (uint32_t)n;
			out->sni.null = 0;
			out->has_sni = 1;
		}
	}
	return KD_OK;
}

int kd_tls_hello_parse(const uint8_t *p, size_t len, struct kd_tls_hello *out, size_t *need)
{
	memset(out, 0, sizeof(*out));
	out->sni.null = 1;
	if (need)
		*need = 5;
	/* The record header, judged byte by byte so that a short prefix of
	 * something else is refused at once. */
	if (len >= 1 && p[0] != TLS_HANDSHAKE)
		return KD_EMALFORMED;
	if (len >= 2 && p[1] != 3)
		return KD_EMALFORMED;
	if (len >= 3 && p[2] > 4)
		return KD_EMALFORMED;
	if (len < 5)
		return KD_NEED_MORE;
	size_t rlen = ((size_t)p[3] << 8) | p[4];
	if (rlen < 4 || rlen > KD_TLS_RECORD_MAX)
		return KD_EMALFORMED;
	out->record_version = (uint16_t)(((unsigned)p[1] << 8) | p[2]);
	/* The handshake header is checked as soon as it is there. */
	if (len >= 6 && p[5] != TLS_CLIENT_HELLO)
		return KD_EMALFORMED;
	if (need)
		*need = 5 + rlen;
	if (len < 5 + rlen)
		return KD_NEED_MORE;
	size_t hlen = ((size_t)p[6] << 16) | ((size_t)p[7] << 8) | p[8];
	if (hlen < 38) /* version and random at least */
		return KD_EMALFORMED;
	size_t have = rlen - 4;
	if (hlen > have)
		out->fragmented = 1;
	struct kd_cur cur;
	kd_cur_init(&cur, p + 9, hlen < have ? hlen : have);
	uint16_t ver;
	struct kd_cur sid, suites, comp, exts;
	if (kd_cur_u16(&cur, &ver) != KD_OK || kd_cur_skip(&cur, 32) != KD_OK)
		return KD_EMALFORMED;
	out->hello_version = ver;
	if ((ver >> 8) != 3)
		return KD_EMALFORMED;
	/* What follows may be cut by the end of the first record. */
	if (vec(&cur, 1, &sid) != KD_OK || kd_cur_left(&sid) > 32)
		return out->fragmented ? KD_OK : KD_EMALFORMED;
	if (vec(&cur, 2, &suites) != KD_OK || vec(&cur, 1, &comp) != KD_OK)
		return out->fragmented ? KD_OK : KD_EMALFORMED;
	if (!kd_cur_left(&cur))
		return KD_OK; /* no extensions (allowed before TLS 1.3) */
	if (vec(&cur, 2, &exts) != KD_OK)
		return out->fragmented ? KD_OK : KD_EMALFORMED;
	while (kd_cur_left(&exts)) {
		uint16_t type;
		struct kd_cur data;
		if (kd_cur_u16(&exts, &type) != KD_OK || vec(&exts, 2, &data) != KD_OK)
			return out->fragmented ? KD_OK : KD_EMALFORMED;
		if (type == TLS_EXT_SERVER_NAME && sni_read(&data, out) != KD_OK)
			return KD_EMALFORMED;
	}
	return KD_OK;
}
