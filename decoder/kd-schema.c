/* kd-schema.c: look-ups over the generated schema tables (kd-schema.h).
 *
 * The tables themselves are in kd-schema-gen.c (tools/kwire-gen.py). They
 * are sorted: kd_apis by key, kd_datadefs by name, kd_errcodes by code, and
 * the generator also emits kd_api_by_key[], a dense pointer table indexed
 * by API key (NULL for a key the spec does not define). */
#include <string.h>

#include "kd-schema.h"

/* Private contract with kd-schema-gen.c: kd_api_by_key_len entries. */
extern const struct kd_api *const kd_api_by_key[];
extern const unsigned kd_api_by_key_len;

const struct kd_api *kd_api_get(int16_t key)
{
	if (key < 0 || (unsigned)key >= kd_api_by_key_len)
		return NULL;
	return kd_api_by_key[key];
}

const char *kd_api_name(int16_t key)
{
	const struct kd_api *api = kd_api_get(key);

	return api ? api->name : NULL;
}

const struct kd_msgdef *kd_msgdef_get(int16_t key, int16_t version, int is_request)
{
	const struct kd_api *api = kd_api_get(key);
	const struct kd_msgdef *def;

	if (!api)
		return NULL;
	def = is_request ? &api->req : &api->resp;
	return kd_vers_has(def->valid, version) ? def : NULL;
}

const char *kd_error_name(int16_t code)
{
	unsigned lo = 0, hi = kd_nerrcodes;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (kd_errcodes[mid].code == code)
			return kd_errcodes[mid].name;
		if (kd_errcodes[mid].code < code)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const struct kd_msgdef *kd_datadef_get(const char *name)
{
	unsigned lo = 0, hi = kd_ndatadefs;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int c = strcmp(name, kd_datadefs[mid].name);

		if (c == 0)
			return &kd_datadefs[mid];
		if (c > 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int struct_sensitive(const struct kd_struct *st, unsigned depth)
{
	if (!st || depth > 16)
		return 0;
	for (uint16_t i = 0; i < st->nfields; i++) {
		const struct kd_field *f = &st->fields[i];
		if (f->sensitive || struct_sensitive(f->sub, depth + 1))
			return 1;
	}
	return 0;
}

int kd_api_sensitive(int16_t key)
{
	const struct kd_api *api;

	if (key < 0)
		return 1;
	api = kd_api_get(key);
	return api && (struct_sensitive(api->req.body, 0) || struct_sensitive(api->resp.body, 0));
}
