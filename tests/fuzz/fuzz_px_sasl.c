/* fuzz_px_sasl.c: the files and tokens a terminating kwire reads besides
 * Kafka frames (docs/security.md): the JSON reader (px-json.h), a JWKS
 * file (px_jwks_load_mem), a JWT checked against a fixed JWKS
 * (px_jwt_verify: base64url, header and payload JSON, claims, signature
 * check with OpenSSL), and the credentials file (px_creds_load_mem).
 *
 * Input: byte 0 picks the reader (% 4), the rest is the text. Checked: no
 * crash, no read outside the input (ASan), no leak; a parsed JSON tree's
 * string nodes are NUL-terminated; a verified token has a subject; loaded
 * credentials are sorted and findable by name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "px-json.h"
#include "px-jwt.h"
#include "px-scram.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

/* One RSA (RS256) and one EC (P-256) public key, as a JWKS file has them
 * (made for this target; the seeds hold tokens their private keys signed). */
static const char jwks_text[] =
    "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"rsa-1\",\"alg\":\"RS256\",\"n\":\"x5lBSXseEM-GLbeUCZRzlO_NEzYAlgazM-d"
    "3Roga1n3preSgfFhlqZ8s20B2_t_SOgLblg-FzrYAFxOVJMTrd51yrswsB2UoHDaeuLKA4sxjEBv5yg_AlgSy4NWCT"
    "kEzWs2ZEsn_6cQ5bDepf4YOUUSsDMYl5AycTDyye5wfdsNTWPsLuw3zfCUfgVvX4m5fCyCIhhm2wIpBVp_eZM03ubl"
    "ziSaZA9NAzq6yiZWxoa042PPy0UlJKVVfnVQVzSvlnvvU7z978xaMd50zgi5XQ-vKg2EmxIScHP5sBBFMCSYVmc1_W"
    "NiUT8ZGQbggqAB38RdgsZ0DQ2OqQ--6l8zDQw\",\"e\":\"AQAB\"},{\"kty\":\"EC\",\"kid\":\"ec-1\",\"crv\":\"P-256\","
    "\"x\":\"yw9kPtdrTC_s1efgLi2R4vt0KWO988Ezokiyalt5Q_A\",\"y\":\"53j6r0dLhqaGEr6yPHQtHiIWkxaKFcVoDvm"
    "ef00A5FY\"}]}";

static struct px_jwks *keys;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];

	if (!keys) {
		keys = px_jwks_load_mem(jwks_text, sizeof(jwks_text) - 1, "fuzz", err, sizeof(err));
		check(keys != NULL);
	}
	if (size < 1)
		return 0;
	int which = data[0] % 4;
	const char *text = (const char *)data + 1;
	size--;
	switch (which) {
	case 0: {
		struct px_json js;
		if (px_json_parse(&js, text, size, 256) == 0) {
			for (int32_t i = 0; i < js.n; i++)
				if (js.nodes[i].type == PX_JSON_STR)
					check(js.nodes[i].str[js.nodes[i].len] == 0);
			px_json_free(&js);
		}
		break;
	}
	case 1: {
		struct px_jwks *k = px_jwks_load_mem(text, size, "fuzz", err, sizeof(err));
		check(!k || px_jwks_count(k) > 0);
		px_jwks_free(&k);
		break;
	}
	case 2: {
		struct px_jwt_claims cl;
		if (px_jwt_verify(keys, data + 1, size, 1700000000, "", "", &cl, err, sizeof(err)) ==
		    0)
			check(cl.sub[0] != 0);
		break;
	}
	case 3: {
		struct px_creds c;
		if (px_creds_load_mem(text, size, "fuzz", &c, err, sizeof(err)) == 0) {
			for (size_t i = 0; i < c.n; i++) {
				check(px_creds_find(&c, c.users[i].name, strlen(c.users[i].name)) ==
				      &c.users[i]);
				if (i)
					check(strcmp(c.users[i - 1].name, c.users[i].name) < 0);
			}
			px_creds_free(&c);
		}
		break;
	}
	}
	return 0;
}
