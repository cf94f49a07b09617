/* fuzz_px_tls.c: the proxy's pre-TLS peek on any bytes: the ClientHello
 * reader (kd_tls_hello_parse), the record sniffer (kd_tls_looks_like) and
 * the SNI router (px_tls_sni_node) on the server name it finds.
 *
 * Checked: no crash, no read past the input (ASan); a found server name
 * lies inside the input, is not empty and holds no NUL; a complete
 * ClientHello cut one byte short of its record is "need more", never
 * another verdict; a name routed to broker N is exactly the pattern with
 * {id} = N (case aside). */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd-tls.h"
#include "px-tls.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kd_tls_hello h;
	size_t need = 0;
	int rc = kd_tls_hello_parse(data, size, &h, &need);
	check(rc == KD_OK || rc == KD_NEED_MORE || rc == KD_EMALFORMED);
	if (size >= 3 && rc != KD_EMALFORMED)
		check(kd_tls_looks_like(data, size));
	if (rc == KD_NEED_MORE)
		check(need > size);
	if (rc != KD_OK)
		return 0;
	size_t rec = 5 + (((size_t)data[3] << 8) | data[4]);
	check(rec <= size);
	struct kd_tls_hello cut;
	check(kd_tls_hello_parse(data, rec - 1, &cut, &need) == KD_NEED_MORE && need == rec);
	if (!h.has_sni)
		return 0;
	check(h.sni.p >= data && h.sni.p + h.sni.len <= data + size && h.sni.len > 0);
	check(!memchr(h.sni.p, '\0', h.sni.len));
	int32_t id = px_tls_sni_node("b{id}.Kafka.test", h.sni.p, h.sni.len);
	if (id >= 0) {
		char want[64];
		int n = snprintf(want, sizeof(want), "b%d.kafka.test", (int)id);
		check(n > 0 && (size_t)n == h.sni.len);
		for (size_t i = 0; i < h.sni.len; i++)
			check(tolower(h.sni.p[i]) == want[i]);
	}
	return 0;
}
