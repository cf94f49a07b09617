/* fuzz_sasl.c: the SASL token readers of kd-sasl.h on any bytes: the
 * mechanism sniffer, the user-name extractors (PLAIN, SCRAM, OAUTHBEARER
 * with its JWT and JSON scan) and the Kerberos token classifier.
 *
 * Input: byte 0 picks the mechanism (byte % 8, enum kd_sasl_mech; 0
 * sniffs), the rest is the token. Checked: no crash, no read past the
 * token (ASan), the user name is NUL-terminated, at most
 * KD_SASL_USER_MAX bytes, and the same with a smaller output buffer is
 * its prefix; for PLAIN, no byte after the second NUL (the password) is
 * ever needed: the name is the same with the password cut off.
 *
 * The same bytes also go through what a terminating SASL server reads
 * (kd-saslmsg.h): the PLAIN, SCRAM client-first/final/server and
 * OAUTHBEARER parsers, the SaslHandshake/SaslAuthenticate body readers in
 * every version, saslname and base64 decoding. Checked: every view they
 * return lies inside the input, decoded names are NUL-terminated within
 * their buffer, and base64 round-trips. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd-sasl.h"
#include "kd-saslmsg.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

static const uint8_t *lo, *hi; /* the input's bounds */

static void inside(const struct kd_view *v)
{
	if (v->p)
		check(v->p >= lo && v->p + v->len <= hi);
}

static void server_side(const uint8_t *data, size_t size)
{
	struct kd_plain pl;
	struct kd_scram_first sf;
	struct kd_scram_final sfi;
	struct kd_scram_server ss;
	struct kd_oauth oa;
	struct kd_saslauth_resp ar;
	struct kd_view v;
	int16_t err;
	char name[64];
	uint8_t bin[256];
	char enc[400];

	lo = data;
	hi = data + size;
	if (kd_plain_parse(data, size, &pl) == KD_OK) {
		inside(&pl.authzid);
		inside(&pl.authcid);
		inside(&pl.passwd);
		check(pl.authcid.len && pl.passwd.len);
	}
	if (kd_scram_first_parse(data, size, &sf) == KD_OK) {
		inside(&sf.gs2);
		inside(&sf.bare);
		inside(&sf.user);
		inside(&sf.authzid);
		inside(&sf.nonce);
		check(sf.gs2.len + sf.bare.len == size);
		long n = kd_saslname_decode(sf.user.p, sf.user.len, name, sizeof(name));
		check(n < 0 || ((size_t)n < sizeof(name) && name[n] == 0 && strlen(name) == (size_t)n));
	}
	if (kd_scram_final_parse(data, size, &sfi) == KD_OK) {
		inside(&sfi.cbind);
		inside(&sfi.nonce);
		inside(&sfi.proof);
		inside(&sfi.without_proof);
		check(sfi.without_proof.p == data);
	}
	if (kd_scram_server_parse(data, size, &ss) == KD_OK) {
		inside(&ss.nonce);
		inside(&ss.salt);
		inside(&ss.verifier);
		inside(&ss.error);
		check(ss.iterations >= 0);
	}
	if (kd_oauth_parse(data, size, &oa) == KD_OK) {
		inside(&oa.authzid);
		inside(&oa.token);
		check(oa.is_ack || oa.token.len);
	}
	for (int16_t ver = 0; ver <= 2; ver++) {
		if (kd_saslauth_req_read(ver, data, size, &v) == KD_OK)
			inside(&v);
		if (kd_saslauth_resp_read(ver, data, size, &ar) == KD_OK) {
			inside(&ar.message);
			inside(&ar.auth);
		}
	}
	(void)kd_saslhs_resp_read(data, size, &err);
	for (int url = 0; url < 2; url++) {
		long n = kd_b64_decode(data, size, bin, sizeof(bin), url);
		if (n >= 0) {
			long m = kd_b64_encode(bin, (size_t)n, enc, sizeof(enc));
			uint8_t back[256];
			check(m >= 0 && kd_b64_decode((const uint8_t *)enc, (size_t)m, back, sizeof(back),
			                              0) == n &&
			      !memcmp(back, bin, (size_t)n));
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[KD_SASL_USER_MAX + 1], small[8];
	size_t n, m;
	int mech;

	if (size < 1)
		return 0;
	mech = data[0] % 8;
	data++;
	size--;
	server_side(data, size);
	(void)kd_sasl_mech_sniff(data, size);
	check(kd_gss_classify(data, size < KD_GSS_CLASSIFY_BYTES ? size : KD_GSS_CLASSIFY_BYTES,
	                      size) >= KD_GSS_UNKNOWN);
	n = kd_sasl_principal(mech, data, size, out, sizeof(out));
	check(n <= KD_SASL_USER_MAX && out[n] == 0 && strlen(out) <= n);
	m = kd_sasl_principal(mech, data, size, small, sizeof(small));
	check(m < sizeof(small) && small[m] == 0 && m <= n && !memcmp(small, out, m));
	if (mech == KD_SASL_MECH_PLAIN ||
	    (mech == KD_SASL_MECH_NONE && kd_sasl_mech_sniff(data, size) == KD_SASL_MECH_PLAIN)) {
		const uint8_t *n1 = memchr(data, 0, size), *n2;
		if (n1 && (n2 = memchr(n1 + 1, 0, size - (size_t)(n1 + 1 - data)))) {
			char cut[KD_SASL_USER_MAX + 1];
			size_t k = kd_sasl_principal(KD_SASL_MECH_PLAIN, data,
			                             (size_t)(n2 + 1 - data), cut, sizeof(cut));
			check(k == n && !memcmp(cut, out, n));
		}
	}
	return 0;
}
