/* fuzz_sasl.c: the SASL token readers of kd-sasl.h on any bytes: the
 * mechanism sniffer, the user-name extractors (PLAIN, SCRAM, OAUTHBEARER
 * with its JWT and JSON scan) and the Kerberos token classifier.
 *
 * Input: byte 0 picks the mechanism (byte % 8, enum kd_sasl_mech; 0
 * sniffs), the rest is the token. Checked: no crash, no read past the
 * token (ASan), the user name is NUL-terminated, at most
 * KD_SASL_USER_MAX bytes, and the same with a smaller output buffer is
 * its prefix; for PLAIN, no byte after the second NUL (the password) is
 * ever needed: the name is the same with the password cut off. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd-sasl.h"

static void check(int ok)
{
	if (!ok)
		abort();
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
