/* rule-rewrite.c: the records part of `rewrite:` rules (docs/rules.md):
 * record headers added, set and removed, JSON fields of values masked,
 * in Produce requests before the broker and Fetch responses before the
 * client. Reading the rule's keys (called by rule-load.c), and rewriting
 * the RECORDS of a decoded request or response (rule_rewrite_tree, called
 * by the proxy). The bytes are the decoder's business (kd-recedit.h,
 * kd-json.h); here are the rules' choices. No network I/O; the hash key
 * file is read when the rules are loaded. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "kd-api-keys-gen.h"
#include "kd-build.h"
#include "kd-json.h"
#include "kd-recedit.h"
#include "kd-schema.h"
#include "kd-topics.h"
#include "kd-tree.h"
#include "kd.h"
#include "rule-yaml.h"
#include "rule.h"

#define RW_MAX_OPS 64   /* header edits of one rule */
#define RW_MAX_MASKS 64 /* masks of one rule */
#define RW_KEY_MIN 16   /* bytes of an HMAC key */
#define RW_KEY_MAX 1024

/* A header value template: literal text and ${...} fields, compiled. */
enum rw_field {
	RW_F_TEXT = 0,
	RW_F_PRINCIPAL,
	RW_F_CLIENT_ID,
	RW_F_SOURCE,
	RW_F_INSTANCE,
	RW_F_TIME,
	RW_F_TIME_MS,
};

struct rw_part {
	uint8_t field;
	char *text; /* RW_F_TEXT */
	size_t len;
};

enum rw_hdr_op { RW_H_REMOVE = 0, RW_H_SET, RW_H_ADD };

struct rw_hdr {
	uint8_t op;
	char *name;
	size_t name_len;
	struct rw_part *parts; /* SET, ADD: the value */
	unsigned nparts;
};

struct rw_mask {
	char *path_text;
	struct kd_jpath path;
	uint8_t op; /* enum kd_jmask_op */
	char *with; /* REPLACE: JSON text */
	size_t with_len;
};

struct rule_records {
	uint8_t dirs;     /* RULE_RW_PRODUCE | RULE_RW_FETCH */
	uint8_t on_error; /* RULE_RW_PASS or RULE_RW_REFUSE */
	uint8_t on_error_set;
	struct rw_hdr *hdrs;
	unsigned nhdrs;
	struct rw_mask *masks;
	unsigned nmasks;
	char *key_file;
	uint8_t key[RW_KEY_MAX];
	size_t key_len;
	EVP_MAC_CTX *mac; /* HMAC-SHA-256 keyed with key: duplicated per value */
};

/* ---- loading ---- */

static struct rule_records *records_of(struct yl *y, const yaml_node_t *node, struct rule *rule)
{
	if (!rule->records && !(rule->records = calloc(1, sizeof(*rule->records))))
		yerr(y, node, "out of memory");
	return rule->records;
}

static int tmpl_add(struct rw_hdr *h, uint8_t field, const char *text, size_t len)
{
	struct rw_part *v = realloc(h->parts, (h->nparts + 1) * sizeof(*v));
	if (!v)
		return -1;
	h->parts = v;
	v[h->nparts] = (struct rw_part){.field = field};
	if (field == RW_F_TEXT) {
		if (!(v[h->nparts].text = malloc(len ? len : 1)))
			return -1;
		memcpy(v[h->nparts].text, text, len);
		v[h->nparts].len = len;
	}
	h->nparts++;
	return 0;
}

/* Compiles a header value template: text with ${principal}, ${client_id},
 * ${source}, ${instance}, ${time}, ${time_ms}; "$$" is a "$". */
static int tmpl_parse(struct yl *y, const yaml_node_t *node, const char *s, struct rw_hdr *h)
{
	static const struct {
		const char *name;
		uint8_t field;
	} fields[] = {{"principal", RW_F_PRINCIPAL}, {"client_id", RW_F_CLIENT_ID},
	              {"source", RW_F_SOURCE},       {"instance", RW_F_INSTANCE},
	              {"time", RW_F_TIME},           {"time_ms", RW_F_TIME_MS}};
	char lit[4096];
	size_t n = 0;
	while (*s) {
		if (s[0] == '$' && s[1] == '$') {
			lit[n++] = '$';
			s += 2;
			continue;
		}
		if (s[0] == '$' && s[1] == '{') {
			const char *end = strchr(s, '}');
			unsigned f = 0;
			if (end)
				for (; f < sizeof(fields) / sizeof(fields[0]); f++)
					if (strlen(fields[f].name) == (size_t)(end - s - 2) &&
					    !memcmp(fields[f].name, s + 2, (size_t)(end - s - 2)))
						break;
			if (!end || f == sizeof(fields) / sizeof(fields[0]))
				return yerr(y, node,
				            "unknown template field in '%s' (${principal}, "
				            "${client_id}, ${source}, ${instance}, ${time}, "
				            "${time_ms}; $$ for a $)",
				            s);
			if ((n && tmpl_add(h, RW_F_TEXT, lit, n)) ||
			    tmpl_add(h, fields[f].field, NULL, 0))
				return yerr(y, node, "out of memory");
			n = 0;
			s = end + 1;
			continue;
		}
		if (s[0] == '$')
			return yerr(y, node, "a lone '$' in '%s' (write $$ for a $)", s);
		lit[n++] = *s++;
	}
	if (n && tmpl_add(h, RW_F_TEXT, lit, n))
		return yerr(y, node, "out of memory");
	return 0;
}

struct hdr_ctx {
	struct rule_records *rr;
	uint8_t op;
};

static int hdr_new(struct yl *y, const yaml_node_t *node, struct rule_records *rr, uint8_t op,
                   const char *name, struct rw_hdr **out)
{
	if (rr->nhdrs >= RW_MAX_OPS)
		return yerr(y, node, "more than %d header edits in one rule", RW_MAX_OPS);
	if (!*name)
		return yerr(y, node, "an empty header name");
	struct rw_hdr *v = realloc(rr->hdrs, (rr->nhdrs + 1) * sizeof(*v));
	if (!v)
		return yerr(y, node, "out of memory");
	rr->hdrs = v;
	struct rw_hdr *h = &v[rr->nhdrs++];
	memset(h, 0, sizeof(*h));
	h->op = op;
	h->name_len = strlen(name);
	if (!(h->name = strdup(name)))
		return yerr(y, node, "out of memory");
	*out = h;
	return 0;
}

static int hdr_value_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                          const yaml_node_t *val, void *ctx)
{
	struct hdr_ctx *hc = ctx;
	struct rw_hdr *h;
	char buf[4096];
	if (y_str(y, val, key, buf, sizeof(buf)) || hdr_new(y, knode, hc->rr, hc->op, key, &h))
		return -1;
	return tmpl_parse(y, val, buf, h);
}

static int hdr_remove_item(struct yl *y, const yaml_node_t *item, const char *key, void *ctx)
{
	struct rw_hdr *h;
	char buf[1024];
	if (y_str(y, item, key, buf, sizeof(buf)))
		return -1;
	return hdr_new(y, item, ctx, RW_H_REMOVE, buf, &h);
}

static int headers_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                        const yaml_node_t *val, void *ctx)
{
	struct hdr_ctx hc = {.rr = ctx};
	if (!strcmp(key, "remove"))
		return y_each(y, val, key, hdr_remove_item, ctx);
	if (!strcmp(key, "set") || !strcmp(key, "add")) {
		hc.op = !strcmp(key, "set") ? RW_H_SET : RW_H_ADD;
		return y_map(y, val, "'headers.set' and 'headers.add'", hdr_value_pair, &hc);
	}
	return yerr(y, knode, "unknown key '%s' under 'headers' (add, set, remove)", key);
}

struct mask_ctx {
	struct rw_mask *m;
	uint8_t has_op;
};

static int mask_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                     const yaml_node_t *val, void *ctx)
{
	struct mask_ctx *mc = ctx;
	struct rw_mask *m = mc->m;
	char buf[1024];
	if (!strcmp(key, "path")) {
		char err[160];
		if (y_dup(y, val, key, &m->path_text))
			return -1;
		if (kd_jpath_parse(&m->path, m->path_text, strlen(m->path_text), err, sizeof(err)))
			return yerr(y, val, "'path': '%s': %s", m->path_text, err);
		return 0;
	}
	if (strcmp(key, "replace") && strcmp(key, "hash") && strcmp(key, "drop"))
		return yerr(y, knode, "unknown key '%s' in a mask (path, replace, hash, drop)",
		            key);
	if (mc->has_op)
		return yerr(y, knode, "a mask takes one of replace, hash and drop");
	mc->has_op = 1;
	if (!strcmp(key, "replace")) {
		if (y_str(y, val, key, buf, sizeof(buf)))
			return -1;
		struct kd_wbuf w = {0};
		kd_json_w_string(&w, buf, strlen(buf));
		if (w.err) {
			kd_wbuf_free(&w);
			return yerr(y, val, "out of memory");
		}
		m->op = KD_JMASK_REPLACE;
		m->with = (char *)w.p;
		m->with_len = w.len;
		return 0;
	}
	int b;
	if (y_bool(y, val, key, &b))
		return -1;
	if (!b)
		return yerr(y, val, "'%s: false' means nothing; leave the mask out", key);
	m->op = !strcmp(key, "hash") ? KD_JMASK_HASH : KD_JMASK_DROP;
	return 0;
}

static int mask_item(struct yl *y, const yaml_node_t *item, struct rule_records *rr)
{
	if (rr->nmasks >= RW_MAX_MASKS)
		return yerr(y, item, "more than %d masks in one rule", RW_MAX_MASKS);
	struct rw_mask *v = realloc(rr->masks, (rr->nmasks + 1) * sizeof(*v));
	if (!v)
		return yerr(y, item, "out of memory");
	rr->masks = v;
	struct rw_mask *m = &v[rr->nmasks++];
	memset(m, 0, sizeof(*m));
	struct mask_ctx mc = {.m = m};
	if (y_map(y, item, "a mask", mask_pair, &mc))
		return -1;
	if (!m->path_text)
		return yerr(y, item, "a mask needs 'path'");
	if (!mc.has_op)
		return yerr(y, item, "a mask needs one of replace: TEXT, hash: true, drop: true");
	return 0;
}

int rule_rewrite_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                      const yaml_node_t *val, struct rule *rule)
{
	struct rule_records *rr;
	if (strcmp(key, "headers") && strcmp(key, "mask") && strcmp(key, "hash_key_file") &&
	    strcmp(key, "on_error"))
		return 1;
	if (!(rr = records_of(y, knode, rule)))
		return -1;
	if (!strcmp(key, "headers"))
		return y_map(y, val, "'headers'", headers_pair, rr);
	if (!strcmp(key, "mask")) {
		if (val->type != YAML_SEQUENCE_NODE)
			return yerr(y, val,
			            "'mask' must be a list of {path: P, replace|hash|drop}");
		for (yaml_node_item_t *it = val->data.sequence.items.start;
		     it < val->data.sequence.items.top; it++)
			if (mask_item(y, ynode(y, *it), rr))
				return -1;
		return 0;
	}
	if (!strcmp(key, "hash_key_file"))
		return y_dup(y, val, key, &rr->key_file);
	char buf[16];
	if (y_str(y, val, key, buf, sizeof(buf)))
		return -1;
	if (!strcmp(buf, "pass"))
		rr->on_error = RULE_RW_PASS;
	else if (!strcmp(buf, "refuse"))
		rr->on_error = RULE_RW_REFUSE;
	else
		return yerr(y, val, "'on_error': '%s' is not pass or refuse", buf);
	rr->on_error_set = 1;
	return 0;
}

/* Reads the HMAC key: the file's bytes, one trailing newline removed. A
 * relative path is taken from the rules file's folder. */
static int read_key(struct yl *y, const yaml_node_t *node, struct rule_records *rr)
{
	const char *slash = strrchr(y->name, '/');
	if (rr->key_file[0] != '/' && slash) {
		size_t dn = (size_t)(slash - y->name) + 1, fn = strlen(rr->key_file);
		char *full = malloc(dn + fn + 1);
		if (!full)
			return yerr(y, node, "out of memory");
		memcpy(full, y->name, dn);
		memcpy(full + dn, rr->key_file, fn + 1);
		free(rr->key_file);
		rr->key_file = full;
	}
	FILE *f = fopen(rr->key_file, "rb");
	if (!f)
		return yerr(y, node, "'hash_key_file' %s: %s", rr->key_file, strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(f);
		return yerr(y, node, "'hash_key_file' %s is a directory", rr->key_file);
	}
	size_t n = fread(rr->key, 1, sizeof(rr->key), f);
	int more = fgetc(f) != EOF;
	fclose(f);
	if (more)
		return yerr(y, node, "'hash_key_file' %s: longer than %d bytes", rr->key_file,
		            RW_KEY_MAX);
	if (n && rr->key[n - 1] == '\n')
		n--;
	if (n && rr->key[n - 1] == '\r')
		n--;
	if (n < RW_KEY_MIN)
		return yerr(y, node,
		            "'hash_key_file' %s: a key needs at least %d bytes (it has %zu)",
		            rr->key_file, RW_KEY_MIN, n);
	rr->key_len = n;
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
	    OSSL_PARAM_construct_end()};
	rr->mac = mac ? EVP_MAC_CTX_new(mac) : NULL;
	EVP_MAC_free(mac);
	if (!rr->mac || !EVP_MAC_init(rr->mac, rr->key, rr->key_len, params))
		return yerr(y, node, "HMAC-SHA-256 is not available from OpenSSL");
	return 0;
}

int rule_rewrite_finish(struct yl *y, const yaml_node_t *node, struct rule *rule)
{
	struct rule_records *rr = rule->records;
	if (!rr)
		return 0; /* a names rule (rule-names.c) */
	if (!rr->nhdrs && !rr->nmasks)
		return yerr(y, node, "rewrite rule '%s' needs 'headers' or 'mask'", rule->name);
	/* The direction is the API the rule matches: Produce requests, Fetch
	 * responses. */
	const struct rule_match *m = &rule->match;
	if (m->keys & RULE_M_API)
		for (unsigned i = 0; i < m->napis; i++) {
			if (m->apis[i].key == KD_API_PRODUCE)
				rr->dirs |= RULE_RW_PRODUCE;
			else if (m->apis[i].key == KD_API_FETCH)
				rr->dirs |= RULE_RW_FETCH;
			else
				rr->dirs = 0xff;
		}
	if (!rr->dirs || rr->dirs == 0xff)
		return yerr(y, node,
		            "rewrite rule '%s' rewrites records: its match needs api: Produce "
		            "(requests, before the broker), api: Fetch (responses, before the "
		            "client), or both, and no other API",
		            rule->name);
	int hash = 0;
	for (unsigned i = 0; i < rr->nmasks; i++)
		hash |= rr->masks[i].op == KD_JMASK_HASH;
	if (hash && !rr->key_file)
		return yerr(y, node, "rewrite rule '%s' hashes: it needs 'hash_key_file'",
		            rule->name);
	if (!hash && rr->key_file)
		return yerr(y, node, "rewrite rule '%s': 'hash_key_file' without a 'hash' mask",
		            rule->name);
	if (hash && read_key(y, node, rr))
		return -1;
	return 0;
}

void rule_rewrite_free(struct rule *rule)
{
	struct rule_records *rr = rule->records;
	if (!rr)
		return;
	for (unsigned i = 0; i < rr->nhdrs; i++) {
		free(rr->hdrs[i].name);
		for (unsigned p = 0; p < rr->hdrs[i].nparts; p++)
			free(rr->hdrs[i].parts[p].text);
		free(rr->hdrs[i].parts);
	}
	free(rr->hdrs);
	for (unsigned i = 0; i < rr->nmasks; i++) {
		free(rr->masks[i].path_text);
		free(rr->masks[i].with);
	}
	free(rr->masks);
	free(rr->key_file);
	EVP_MAC_CTX_free(rr->mac);
	OPENSSL_cleanse(rr->key, sizeof(rr->key));
	free(rr);
	rule->records = NULL;
}

int rule_rewrite_needs_body(const struct rule *rule)
{
	return rule->section == RULE_REWRITE && rule->records &&
	       (rule->records->dirs & RULE_RW_PRODUCE);
}

int rule_rewrite_dirs(const struct rule *rule)
{
	return rule->section == RULE_REWRITE && rule->records ? rule->records->dirs : 0;
}

int rule_set_rewrites(const struct rule_set *rs, int dir)
{
	for (unsigned i = 0; i < rs->n; i++)
		if (rule_rewrite_dirs(&rs->rules[i]) & dir)
			return 1;
	return 0;
}

int rule_rewrite_may_apply(const struct rule_set *rs, int dir, const struct rule_req *req)
{
	for (unsigned i = 0; i < rs->n; i++) {
		const struct rule *rule = &rs->rules[i];
		const char *why = NULL;
		if (!(rule_rewrite_dirs(rule) & dir))
			continue;
		/* Request-level matchers are judged before per-topic ones: a
		 * rule that fails only on "topic" may match some topic. */
		if (rule_matches(rule, req, -1, &why) || (why && !strcmp(why, "topic")))
			return 1;
	}
	return 0;
}

void rule_rewrite_dump(const struct rule *rule, FILE *f)
{
	static const char *const ops[] = {"remove", "set", "add"};
	static const char *const mops[] = {"replace", "hash", "drop"};
	const struct rule_records *rr = rule->records;
	if (!rr)
		return;
	fprintf(f, "rewrite %s%s%s records, on_error %s",
	        (rr->dirs & RULE_RW_PRODUCE) ? "Produce" : "",
	        rr->dirs == (RULE_RW_PRODUCE | RULE_RW_FETCH) ? " and " : "",
	        (rr->dirs & RULE_RW_FETCH) ? "Fetch" : "",
	        rr->on_error == RULE_RW_REFUSE ? "refuse" : "pass");
	for (unsigned i = 0; i < rr->nhdrs; i++)
		fprintf(f, "; header %s %s", ops[rr->hdrs[i].op], rr->hdrs[i].name);
	for (unsigned i = 0; i < rr->nmasks; i++)
		fprintf(f, "; mask %s %s", rr->masks[i].path_text, mops[rr->masks[i].op]);
}

/* ---- rewriting ---- */

/* One header edit of a plan, its value expanded. */
struct plan_hdr {
	uint8_t op;
	struct kd_view name, value;
};

/* What applies to one topic: the rules' edits, in file order. */
/* A hash key of a plan: the rule's keyed HMAC context, copied once per
 * plan and re-initialised (same key) for each value. */
struct plan_mac {
	const struct rule_records *rr;
	EVP_MAC_CTX *ctx;
};

struct plan {
	struct plan_mac *macs;
	unsigned nmacs;
	struct plan_hdr *hdrs;
	unsigned nhdrs;
	struct kd_jmask *masks;
	unsigned nmasks;
	uint8_t refuse;
	const struct rule *refuse_rule;
	struct kd_wbuf *scratch; /* the masked value */
	uint32_t passed;
	char why[200]; /* the first record passed unchanged, why */
};

static int hmac_hex(const struct kd_jmask *m, const uint8_t *in, size_t len, struct kd_wbuf *out)
{
	static const char hex[] = "0123456789abcdef";
	struct plan_mac *pm = (struct plan_mac *)m->arg;
	unsigned char md[EVP_MAX_MD_SIZE];
	size_t mdlen = 0;
	char txt[2 * EVP_MAX_MD_SIZE + 2];
	/* The rule's keyed context is shared read-only by every thread: the
	 * plan hashes in its own copy, re-initialised with the same key. */
	int ok;
	if (!pm->ctx)
		ok = (pm->ctx = EVP_MAC_CTX_dup(pm->rr->mac)) != NULL;
	else
		ok = EVP_MAC_init(pm->ctx, NULL, 0, NULL);
	ok = ok && EVP_MAC_update(pm->ctx, in, len) &&
	     EVP_MAC_final(pm->ctx, md, &mdlen, sizeof(md));
	if (!ok)
		return -1;
	txt[0] = '"';
	for (size_t i = 0; i < mdlen; i++) {
		txt[1 + 2 * i] = hex[md[i] >> 4];
		txt[2 + 2 * i] = hex[md[i] & 15];
	}
	txt[1 + 2 * mdlen] = '"';
	kd_w_raw(out, txt, 2 + 2 * mdlen);
	return 0;
}

static int hdr_named(const struct kd_header *h, const struct kd_view *name)
{
	return h->key.len == name->len && !memcmp(h->key.p, name->p, name->len);
}

/* kd_rec_edit_fn: one record under a plan. */
static int plan_edit(void *arg, const struct kd_batch *b, const struct kd_record *rec,
                     struct kd_rec_edit *ed, struct kd_arena *a, char *err, size_t errlen)
{
	(void)b;
	struct plan *pl = arg;
	int changed = 0;
	if (pl->nmasks && !rec->value.null) {
		pl->scratch->len = 0;
		int rc = kd_json_mask(rec->value.p, rec->value.len, pl->masks, pl->nmasks, hmac_hex,
		                      pl->scratch);
		if (rc == KD_ENOMEM)
			return rc;
		if (rc < 0) {
			if (pl->refuse) {
				kd_errf(err, errlen,
				        "record at offset %lld: the value is not JSON (%s)",
				        (long long)rec->offset, kd_strerror(rc));
				return KD_EMALFORMED;
			}
			if (!pl->passed++)
				kd_errf(pl->why, sizeof(pl->why),
				        "record at offset %lld: the value is not JSON (%s)",
				        (long long)rec->offset, kd_strerror(rc));
		} else if (rc > 0) {
			uint8_t *v = kd_arena_dup(a, pl->scratch->p, pl->scratch->len);
			if (!v)
				return KD_ENOMEM;
			ed->value = (struct kd_view){v, (uint32_t)pl->scratch->len, 0};
			changed = 1;
		}
	}
	if (!pl->nhdrs)
		return changed;
	struct kd_header *h = kd_arena_alloc_raw(a, (ed->nheaders + pl->nhdrs) * sizeof(*h));
	if (!h)
		return KD_ENOMEM;
	uint32_t n = 0;
	for (uint32_t i = 0; i < ed->nheaders; i++) {
		int drop = 0;
		for (unsigned k = 0; k < pl->nhdrs && !drop; k++)
			drop = pl->hdrs[k].op != RW_H_ADD &&
			       hdr_named(&ed->headers[i], &pl->hdrs[k].name);
		if (drop)
			changed = 1;
		else
			h[n++] = ed->headers[i];
	}
	for (unsigned k = 0; k < pl->nhdrs; k++)
		if (pl->hdrs[k].op != RW_H_REMOVE) {
			h[n++] = (struct kd_header){pl->hdrs[k].name, pl->hdrs[k].value};
			changed = 1;
		}
	ed->headers = h;
	ed->nheaders = n;
	return changed;
}

/* Expands a template into a (the arena of the tree being rewritten). */
static struct kd_view expand(const struct rw_hdr *hd, const struct rule_rw_ctx *ctx,
                             struct kd_arena *a)
{
	struct kd_wbuf w = {0};
	char buf[64];
	for (unsigned i = 0; i < hd->nparts; i++) {
		const struct rw_part *p = &hd->parts[i];
		switch (p->field) {
		case RW_F_TEXT:
			kd_w_raw(&w, p->text, p->len);
			break;
		case RW_F_PRINCIPAL:
			kd_w_raw(&w, ctx->principal.p, ctx->principal.len);
			break;
		case RW_F_CLIENT_ID:
			kd_w_raw(&w, ctx->client_id.p, ctx->client_id.len);
			break;
		case RW_F_SOURCE:
			buf[0] = '\0';
			if (ctx->src_family)
				inet_ntop(ctx->src_family == 4 ? AF_INET : AF_INET6, ctx->src_addr,
				          buf, sizeof(buf));
			kd_w_raw(&w, buf, strlen(buf));
			break;
		case RW_F_INSTANCE:
			if (ctx->instance)
				kd_w_raw(&w, ctx->instance, strlen(ctx->instance));
			break;
		case RW_F_TIME: {
			time_t s = (time_t)(ctx->now_ms / 1000);
			struct tm tm;
			gmtime_r(&s, &tm);
			size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, ".%03dZ",
			                      (int)(ctx->now_ms % 1000));
			kd_w_raw(&w, buf, n);
			break;
		}
		case RW_F_TIME_MS:
			kd_w_raw(
			    &w, buf,
			    (size_t)snprintf(buf, sizeof(buf), "%lld", (long long)ctx->now_ms));
			break;
		}
	}
	struct kd_view v = {(const uint8_t *)"", 0, 0};
	if (!w.err && w.len) {
		uint8_t *d = kd_arena_dup(a, w.p, w.len);
		if (d)
			v = (struct kd_view){d, (uint32_t)w.len, 0};
		else
			v.null = 1;
	}
	if (w.err)
		v.null = 1;
	kd_wbuf_free(&w);
	return v;
}

static void plan_macs_free(struct plan *pl)
{
	for (unsigned i = 0; i < pl->nmacs; i++)
		EVP_MAC_CTX_free(pl->macs[i].ctx);
	pl->nmacs = 0;
}

/* Fills pl with the edits of every rule of dir that matches topic 0 of req. */
static int plan_build(struct plan *pl, const struct rule_set *rs, int dir,
                      const struct rule_req *req, const struct rule_rw_ctx *ctx, struct kd_arena *a)
{
	unsigned nh = 0, nm = 0, nr = 0;
	plan_macs_free(pl);
	pl->nhdrs = pl->nmasks = 0;
	pl->refuse = 0;
	pl->refuse_rule = NULL;
	pl->passed = 0;
	pl->why[0] = '\0';
	for (unsigned i = 0; i < rs->n; i++) {
		const struct rule *rule = &rs->rules[i];
		if ((rule_rewrite_dirs(rule) & dir) && rule_matches(rule, req, 0, NULL)) {
			nh += rule->records->nhdrs;
			nm += rule->records->nmasks;
			nr++;
		}
	}
	if (!nh && !nm)
		return 0;
	pl->hdrs = kd_arena_alloc(a, (nh ? nh : 1) * sizeof(*pl->hdrs));
	pl->masks = kd_arena_alloc(a, (nm ? nm : 1) * sizeof(*pl->masks));
	pl->macs = kd_arena_alloc(a, nr * sizeof(*pl->macs));
	if (!pl->hdrs || !pl->masks || !pl->macs)
		return KD_ENOMEM;
	for (unsigned i = 0; i < rs->n; i++) {
		const struct rule *rule = &rs->rules[i];
		if (!(rule_rewrite_dirs(rule) & dir) || !rule_matches(rule, req, 0, NULL))
			continue;
		const struct rule_records *rr = rule->records;
		struct plan_mac *pm = &pl->macs[pl->nmacs++];
		*pm = (struct plan_mac){.rr = rr};
		atomic_fetch_add_explicit(&((struct rule *)rule)->hits, 1, memory_order_relaxed);
		if (rr->on_error == RULE_RW_REFUSE && !pl->refuse) {
			pl->refuse = 1;
			pl->refuse_rule = rule;
		}
		for (unsigned k = 0; k < rr->nhdrs; k++) {
			struct plan_hdr *h = &pl->hdrs[pl->nhdrs++];
			h->op = rr->hdrs[k].op;
			h->name = (struct kd_view){(const uint8_t *)rr->hdrs[k].name,
			                           (uint32_t)rr->hdrs[k].name_len, 0};
			if (h->op != RW_H_REMOVE) {
				h->value = expand(&rr->hdrs[k], ctx, a);
				if (h->value.null)
					return KD_ENOMEM;
			}
		}
		for (unsigned k = 0; k < rr->nmasks; k++)
			pl->masks[pl->nmasks++] = (struct kd_jmask){
			    .path = &rr->masks[k].path,
			    .op = rr->masks[k].op,
			    .with = rr->masks[k].with,
			    .with_len = rr->masks[k].with_len,
			    .arg = pm,
			};
	}
	return 1;
}

/* The name of a topic array element: its topic name, else its TopicId's
 * name from map, else the id's "topic-id:" text (in idtext). */
static struct kd_view elem_topic(const struct kd_node *e, const struct kd_topics *map,
                                 char idtext[KD_TOPIC_ID_TEXT])
{
	static const uint8_t zero[16];
	const uint8_t *id = NULL;
	for (uint32_t k = 0; k < e->nkids; k++) {
		const struct kd_node *f = &e->kids[k];
		if (!f->field)
			continue;
		if (f->type == KD_T_STRING && f->field->entity == KD_ENT_TOPIC_NAME && !f->null &&
		    f->val.v.len)
			return f->val.v;
		if (f->type == KD_T_UUID && !strcmp(f->field->name, "TopicId") &&
		    memcmp(f->val.uuid, zero, 16))
			id = f->val.uuid;
	}
	if (!id)
		return (struct kd_view){0};
	struct kd_view name = map ? kd_topics_get(map, id) : (struct kd_view){0};
	if (!name.null && name.p)
		return name;
	size_t n = kd_topic_id_text(id, idtext);
	return (struct kd_view){(const uint8_t *)idtext, (uint32_t)n, 0};
}

/* The partition array of a topic element: its array of structs that hold
 * a RECORDS field (Produce PartitionData, Fetch Partitions). */
static struct kd_node *part_array(struct kd_node *e, unsigned *recs_at)
{
	for (uint32_t k = 0; k < e->nkids; k++) {
		struct kd_node *f = &e->kids[k];
		if (f->type != KD_T_ARRAY || f->null || !f->nkids || f->kids[0].type != KD_T_STRUCT)
			continue;
		const struct kd_node *p0 = &f->kids[0];
		for (uint32_t r = 0; r < p0->nkids; r++)
			if (p0->kids[r].type == KD_T_RECORDS) {
				*recs_at = r;
				return f;
			}
	}
	return NULL;
}

/* Every partition of Fetch response topic e: UNKNOWN_TOPIC_ID, no records. */
static void unknown_topic(struct rule_rewriter *w, struct kd_tree *t, struct kd_node *e,
                          struct kd_view name, struct rule_rw_out *out)
{
	w->tree_edited = 1;
	unsigned recs_at = 0;
	struct kd_node *parts = part_array(e, &recs_at);
	for (uint32_t p = 0; parts && p < parts->nkids; p++) {
		struct kd_node *pe = &parts->kids[p];
		struct kd_node *ec = kd_node_child(pe, "ErrorCode");
		if (ec)
			kd_node_set_int(ec, RULE_ERR_UNKNOWN_TOPIC_ID);
		if (recs_at < pe->nkids && !pe->kids[recs_at].null)
			kd_node_set_str(t, &pe->kids[recs_at], "", 0);
		out->changed++;
		out->refused++;
	}
	if (!out->msg[0])
		snprintf(out->msg, sizeof(out->msg),
		         "%.*s: a topic id kwire has not learned a name for (answered "
		         "UNKNOWN_TOPIC_ID, so that the client refreshes its metadata)",
		         (int)name.len, (const char *)name.p);
}

static size_t prefix_at(const struct kd_node *n, const uint8_t *body, size_t blen);

/* Dest mode (rule_rewriter.dest): writes the body's bytes from where the
 * last rewritten field ended up to the length prefix of RECORDS node n,
 * then room for the prefix, its size in *k0 (0 when n's prefix is not
 * where the body says: the tree is then encoded instead, tree_edited). */
static int dest_gap(struct rule_rewriter *w, const struct kd_tree *t, const struct kd_node *n,
                    size_t *k0)
{
	const uint8_t *body = t->raw.p;
	size_t pre = body ? prefix_at(n, body, t->raw.len) : (size_t)-1;
	*k0 = 0;
	if (pre == (size_t)-1 || pre < w->body_at) {
		w->tree_edited = 1;
		return KD_OK;
	}
	size_t k = (size_t)(n->val.v.p - body) - pre;
	kd_w_raw(w->dest, body + w->body_at, pre - w->body_at);
	if (!kd_wbuf_reserve(w->dest, k))
		return KD_ENOMEM;
	w->dest->len += k;
	*k0 = k;
	return KD_OK;
}

/* Dest mode: writes the length prefix of n's new records, which start at
 * *at in dest right after the k0 bytes of room dest_gap left (moved when
 * the prefix takes another size: *at follows), and notes where n ends in
 * the body. */
static int dest_prefix(struct rule_rewriter *w, const struct kd_node *n, size_t k0, size_t *at)
{
	struct kd_wbuf *d = w->dest;
	size_t len = d->len - *at;
	int compact = (n->flags & KD_NF_COMPACT) != 0;
	size_t k = compact ? kd_uvar_size((uint64_t)len + 1) : 4;
	if (len > INT32_MAX - 1)
		return KD_ELIMIT;
	if (k != k0) {
		if (k > k0 && !kd_wbuf_reserve(d, k - k0))
			return KD_ENOMEM;
		memmove(d->p + *at - k0 + k, d->p + *at, len);
		d->len = d->len - k0 + k;
		*at = *at - k0 + k;
	}
	size_t pos = *at - k;
	if (compact) {
		uint64_t v = (uint64_t)len + 1;
		while (v >= 0x80) {
			d->p[pos++] = (uint8_t)(v | 0x80);
			v >>= 7;
		}
		d->p[pos] = (uint8_t)v;
	} else {
		kd_w_patch_be(d, pos, 4, len);
	}
	w->body_at = (size_t)(n->val.v.p - w->body) + n->val.v.len;
	return KD_OK;
}

/* Notes that dst[at..) (dest, or w->out) holds the new records of node n. */
static int seg_add(struct rule_rewriter *w, struct kd_node *n, size_t at)
{
	const struct kd_wbuf *dst = w->dest ? w->dest : &w->out;
	if (dst->err)
		return KD_ENOMEM;
	if (w->nsegs == w->segcap) {
		unsigned cap = w->segcap ? 2 * w->segcap : 16;
		struct rule_rw_seg *v = realloc(w->segs, cap * sizeof(*v));
		if (!v)
			return KD_ENOMEM;
		w->segs = v;
		w->segcap = cap;
	}
	w->segs[w->nsegs++] = (struct rule_rw_seg){n, at, dst->len - at};
	return KD_OK;
}

int rule_rewrite_tree(struct rule_rewriter *w, const struct rule_set *rs, int dir,
                      struct kd_tree *t, const struct rule_req *req, const struct kd_topics *map,
                      const struct rule_rw_ctx *ctx, struct rule_rw_out *out)
{
	memset(out, 0, sizeof(*out));
	w->out.len = 0;
	w->out.err = KD_OK;
	w->nsegs = 0;
	w->tree_edited = 0;
	w->body_at = 0;
	w->body = t->raw.p;
	struct kd_wbuf *dst = w->dest ? w->dest : &w->out;
	w->dest_start = dst->len;
	struct kd_node *arr = t->root ? kd_build_topic_array(t) : NULL;
	if (!arr || arr->null || !arr->nkids)
		return KD_OK;
	out->nelems = arr->nkids;
	out->err = kd_arena_alloc(t->arena, arr->nkids * sizeof(*out->err));
	out->rule = kd_arena_alloc(t->arena, arr->nkids * sizeof(*out->rule));
	out->names = kd_arena_alloc(t->arena, arr->nkids * sizeof(*out->names));
	if (!out->err || !out->rule || !out->names)
		return KD_ENOMEM;
	struct plan pl = {.scratch = &w->json};
	int rc = KD_OK;
	for (uint32_t i = 0; i < arr->nkids && rc == KD_OK; i++) {
		struct kd_node *e = &arr->kids[i];
		char idtext[KD_TOPIC_ID_TEXT];
		struct kd_view name = elem_topic(e, map, idtext);
		int unknown_id = name.p == (const uint8_t *)idtext;
		if (unknown_id) {
			uint8_t *d = kd_arena_dup(t->arena, idtext, name.len);
			if (!d)
				return KD_ENOMEM;
			name.p = d;
		}
		out->names[i] = name;
		if (unknown_id && dir == RULE_RW_FETCH && rule_rewrite_may_apply(rs, dir, req)) {
			/* A topic known only by an id kwire has not learned (from
			 * a Metadata answer): whether a rule names it cannot be
			 * told, and its records must not pass unmasked. The
			 * partitions answer UNKNOWN_TOPIC_ID; the client asks for
			 * metadata (which teaches kwire the name) and fetches again. */
			unknown_topic(w, t, e, name, out);
			continue;
		}
		struct rule_topic one = {.name = name,
		                         .records = -1,
		                         .bytes = -1,
		                         .max_record_bytes = -1,
		                         .num_partitions = -1,
		                         .replication_factor = -1};
		struct rule_req r1 = *req;
		r1.have_body = 1;
		r1.topics = &one;
		r1.ntopics = 1;
		/* A Produce's own facts (codecs, sizes) where the caller has them. */
		for (unsigned k = 0; k < req->ntopics; k++)
			if (req->topics[k].name.len == name.len &&
			    !memcmp(req->topics[k].name.p, name.p, name.len))
				one = req->topics[k];
		rc = plan_build(&pl, rs, dir, &r1, ctx, t->arena);
		if (rc <= 0)
			continue;
		rc = KD_OK;
		unsigned recs_at = 0;
		struct kd_node *parts = part_array(e, &recs_at);
		for (uint32_t p = 0; parts && p < parts->nkids && !out->err[i]; p++) {
			struct kd_node *pe = &parts->kids[p];
			if (recs_at >= pe->nkids)
				continue;
			struct kd_node *recs = &pe->kids[recs_at];
			if (recs->null || !recs->val.v.len)
				continue;
			struct kd_recedit_stats st;
			char err[256] = "";
			/* Into dest: the body's bytes up to this field's length
			 * prefix, room for the prefix, then the records. */
			size_t mark = dst->len, k0 = 0;
			if (w->dest && !w->tree_edited && dest_gap(w, t, recs, &k0) != KD_OK) {
				rc = KD_ENOMEM;
				break;
			}
			size_t at = dst->len;
			/* A batch is held decompressed, as records and re-encoded
			 * at once: bounded by the decoder's 64 MiB per batch, and
			 * by a record count no real producer reaches. */
			static const struct kd_rec_limits lim = {.max_records = 1u << 20};
			int rrc = kd_rec_rewrite(&w->edit, recs->val.v.p, recs->val.v.len, &lim,
			                         plan_edit, &pl, dst, &st, err, sizeof(err));
			if (rrc != KD_OK)
				dst->len = mark;
			if (rrc == KD_ENOMEM) {
				rc = rrc;
				break;
			}
			if (rrc != KD_OK) {
				if (!out->msg[0])
					snprintf(out->msg, sizeof(out->msg), "topic %.*s: %s",
					         (int)name.len, (const char *)name.p, err);
				if (pl.refuse) {
					out->refused++;
					if (dir == RULE_RW_FETCH) {
						/* The partition answers INVALID_RECORD, no data. */
						struct kd_node *ec = kd_node_child(pe, "ErrorCode");
						if (ec)
							kd_node_set_int(ec,
							                RULE_ERR_INVALID_RECORD);
						kd_node_set_str(t, recs, "", 0);
						w->tree_edited = 1;
						out->changed++;
						continue;
					}
					out->err[i] = RULE_ERR_INVALID_RECORD;
					out->rule[i] = pl.refuse_rule;
				} else {
					out->passed++;
				}
				continue;
			}
			out->records += st.records;
			if (pl.passed && !out->msg[0])
				snprintf(out->msg, sizeof(out->msg), "topic %.*s: %s",
				         (int)name.len, (const char *)name.p, pl.why);
			out->passed += pl.passed;
			pl.passed = 0;
			if (st.rewritten || st.tail_dropped) {
				if (k0 && dest_prefix(w, recs, k0, &at) != KD_OK) {
					rc = KD_ENOMEM;
					break;
				}
				if (seg_add(w, recs, at) != KD_OK) {
					rc = KD_ENOMEM;
					break;
				}
				out->changed++;
			} else {
				dst->len = mark; /* kd_rec_rewrite copied it: unchanged */
			}
		}
	}
	plan_macs_free(&pl);
	if (rc == KD_OK && !w->defer)
		rc = rule_rewrite_commit(w, t);
	if (rc != KD_OK)
		w->nsegs = 0;
	return rc;
}

int rule_rewrite_commit(struct rule_rewriter *w, struct kd_tree *t)
{
	const struct kd_wbuf *src = w->dest ? w->dest : &w->out;
	int rc = KD_OK;
	for (unsigned i = 0; i < w->nsegs && rc == KD_OK; i++)
		/* A partial batch alone leaves an empty set: src may hold nothing. */
		rc = kd_node_set_str(t, w->segs[i].node,
		                     src->p ? src->p + w->segs[i].off : (const uint8_t *)"",
		                     w->segs[i].len);
	w->nsegs = 0;
	/* What dest holds past its start is the caller's no more. */
	if (w->dest)
		w->dest->len = w->dest_start;
	return rc == KD_OK ? KD_OK : KD_ENOMEM;
}

/* The length prefix of RECORDS node n (not edited: its view is in body)
 * ends at its bytes: where it starts, or (size_t)-1 when the bytes before
 * the view are not that prefix (then the tree is encoded instead). */
static size_t prefix_at(const struct kd_node *n, const uint8_t *body, size_t blen)
{
	const uint8_t *p = n->val.v.p;
	size_t len = n->val.v.len;
	if ((n->flags & (KD_NF_EDITED | KD_NF_TAGGED)) || n->null || !p || p < body || len > blen ||
	    (size_t)(p - body) > blen - len)
		return (size_t)-1;
	size_t off = (size_t)(p - body);
	struct kd_cur cur;
	if (n->flags & KD_NF_COMPACT) {
		/* UNSIGNED_VARINT len + 1. A longer (overlong) prefix cannot end
		 * in a shorter valid one of the same value: a mismatch. */
		unsigned k = kd_uvar_size((uint64_t)len + 1);
		uint32_t v;
		if (off < k)
			return (size_t)-1;
		kd_cur_init(&cur, body + off - k, k);
		if (kd_cur_uvarint(&cur, &v) != KD_OK || kd_cur_left(&cur) || v != len + 1)
			return (size_t)-1;
		return off - k;
	}
	int32_t v;
	if (off < 4)
		return (size_t)-1;
	kd_cur_init(&cur, body + off - 4, 4);
	if (kd_cur_i32(&cur, &v) != KD_OK || (size_t)v != len)
		return (size_t)-1;
	return off - 4;
}

/* The body of t with the segments spliced in: 1 done, 0 not possible. */
static int splice_body(struct rule_rewriter *w, const struct kd_tree *t, struct kd_wbuf *out)
{
	const uint8_t *body = t->raw.p;
	size_t blen = t->raw.len, at = 0, start = out->len;
	if (w->tree_edited || !body)
		return 0;
	for (unsigned i = 0; i < w->nsegs; i++) {
		const struct rule_rw_seg *sg = &w->segs[i];
		size_t pre = prefix_at(sg->node, body, blen);
		if (pre == (size_t)-1 || pre < at || sg->len > INT32_MAX - 1) {
			out->len = start;
			return 0;
		}
		kd_w_raw(out, body + at, pre - at);
		if (sg->node->flags & KD_NF_COMPACT)
			kd_w_uvarint(out, (uint32_t)sg->len + 1);
		else
			kd_w_i32(out, (int32_t)sg->len);
		if (sg->len)
			kd_w_raw(out, w->out.p + sg->off, sg->len);
		at = (size_t)(sg->node->val.v.p - body) + sg->node->val.v.len;
	}
	kd_w_raw(out, body + at, blen - at);
	return 1;
}

int rule_rewrite_encode(struct rule_rewriter *w, struct kd_tree *t, struct kd_wbuf *out)
{
	size_t start = out->len;
	int rc;
	if (w->dest) {
		/* The rewritten fields are in out already: the rest of the body. */
		assert(out == w->dest);
		start = w->dest_start;
		w->spliced = !w->tree_edited;
		if (w->spliced)
			kd_w_raw(out, t->raw.p + w->body_at, t->raw.len - w->body_at);
	} else {
		w->spliced = (uint8_t)splice_body(w, t, out);
	}
	if (w->spliced) {
		w->nsegs = 0;
		rc = out->err ? KD_ENOMEM : KD_OK;
	} else {
		rc = rule_rewrite_commit(w, t); /* dest: back to its start */
		if (rc == KD_OK)
			rc = kd_tree_encode(t, out);
		if (rc == KD_OK && out->err)
			rc = KD_ENOMEM;
	}
	if (rc != KD_OK)
		out->len = start;
	return rc;
}

void rule_rewriter_free(struct rule_rewriter *w)
{
	kd_wbuf_free(&w->out);
	kd_wbuf_free(&w->json);
	kd_recedit_free(&w->edit);
	free(w->segs);
	w->segs = NULL;
	w->nsegs = w->segcap = 0;
}

/* ---- what a rule's masks name (kwire decode --rules) ---- */

unsigned rule_rewrite_nmasks(const struct rule *rule)
{
	return rule->section == RULE_REWRITE && rule->records ? rule->records->nmasks : 0;
}

const char *rule_rewrite_mask_path(const struct rule *rule, unsigned k, const char **done)
{
	const struct rw_mask *m = &rule->records->masks[k];
	*done = m->op == KD_JMASK_HASH ? "hashed" : m->op == KD_JMASK_DROP ? "dropped" : "replaced";
	return m->path_text;
}

int rule_rewrite_mask_hits(const struct rule *rule, unsigned k, const uint8_t *p, size_t len,
                           struct kd_wbuf *scratch)
{
	/* Counted as a drop: the same path walk, without the HMAC key. */
	struct kd_jmask m = {.path = &rule->records->masks[k].path, .op = KD_JMASK_DROP};
	scratch->len = 0;
	int rc = kd_json_mask(p, len, &m, 1, NULL, scratch);
	return rc > 0 ? rc : 0;
}

int rule_rewrite_refuses(const struct rule *rule)
{
	return rule->section == RULE_REWRITE && rule->records &&
	       rule->records->on_error == RULE_RW_REFUSE;
}
