/* rule-text.c: the rules engine's words: parsing of API names, sizes,
 * addresses, codecs and error names (shared by the loader and the command
 * line), and the compiled set written back as text (`kwire rules check`). */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kd-schema.h"
#include "rule-mirror.h"
#include "rule-names.h"
#include "rule.h"

const char *rule_section_name(int section)
{
	static const char *const names[RULE_NSECTIONS] = {"access",  "quotas", "policies", "audit",
	                                                  "rewrite", "mirror", "tap"};
	return section >= 0 && section < RULE_NSECTIONS ? names[section] : "?";
}

static const char *const codec_names[] = {"none", "gzip", "snappy", "lz4", "zstd"};

int rule_codec_id(const char *s)
{
	for (int i = 0; i < (int)(sizeof(codec_names) / sizeof(codec_names[0])); i++)
		if (!strcasecmp(s, codec_names[i]))
			return i;
	return -1;
}

int16_t rule_error_code(const char *s)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (end != s && !*end && !errno) {
		if (v < -1 || v > INT16_MAX || !kd_error_name((int16_t)v))
			return RULE_DENY_AUTO;
		return (int16_t)v;
	}
	for (unsigned i = 0; i < kd_nerrcodes; i++)
		if (!strcasecmp(s, kd_errcodes[i].name))
			return kd_errcodes[i].code;
	return RULE_DENY_AUTO;
}

int rule_parse_size(const char *s, int64_t *out)
{
	static const struct {
		const char *unit;
		double mul;
	} units[] = {
	    {"", 1},     {"B", 1},        {"kB", 1e3},        {"KB", 1e3},           {"MB", 1e6},
	    {"GB", 1e9}, {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0},
	};
	char *end;
	errno = 0;
	while (*s == ' ')
		s++;
	if (!*s)
		return -1;
	double v = strtod(s, &end);
	if (errno || end == s || !isfinite(v))
		return -1;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit))
			continue;
		double r = v * units[i].mul;
		if (r > 9.2e18 || r < -9.2e18)
			return -1;
		/* A plain count must be whole; 1.5KiB is fine. */
		if (units[i].mul == 1 && r != (double)(int64_t)r)
			return -1;
		*out = (int64_t)r;
		return 0;
	}
	return -1;
}

int rule_parse_addr(const char *s, uint8_t *family, uint8_t addr[16])
{
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, s, addr) == 1) {
		*family = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, s, addr) == 1) {
		*family = 6;
		return 0;
	}
	return -1;
}

/* A version number or range after '@': "13", "13+", "3-8". */
static int parse_vers(const char *s, int16_t *lo, int16_t *hi)
{
	char *end;
	errno = 0;
	long a = strtol(s, &end, 10);
	if (end == s || errno || a < 0 || a > INT16_MAX)
		return -1;
	*lo = *hi = (int16_t)a;
	if (!*end)
		return 0;
	if (!strcmp(end, "+")) {
		*hi = INT16_MAX;
		return 0;
	}
	if (*end != '-')
		return -1;
	const char *b = end + 1;
	long c = strtol(b, &end, 10);
	if (end == b || *end || errno || c < a || c > INT16_MAX)
		return -1;
	*hi = (int16_t)c;
	return 0;
}

int rule_parse_api(const char *s, struct rule_api *out)
{
	char name[80];
	const char *at = strchr(s, '@');
	size_t len = at ? (size_t)(at - s) : strlen(s);
	if (!len || len >= sizeof(name))
		return -1;
	memcpy(name, s, len);
	name[len] = '\0';
	out->lo = 0;
	out->hi = INT16_MAX;
	if (at && parse_vers(at + 1, &out->lo, &out->hi))
		return -1;
	char *end;
	long key = strtol(name, &end, 10);
	if (end != name && !*end) {
		if (key < 0 || key > INT16_MAX || !kd_api_get((int16_t)key))
			return -1;
		out->key = (int16_t)key;
		return 0;
	}
	for (unsigned i = 0; i < kd_napis; i++)
		if (!strcasecmp(name, kd_apis[i].name)) {
			out->key = kd_apis[i].key;
			return 0;
		}
	return -1;
}

/* ---- dump ---- */

static void dump_pats(FILE *f, const char *key, const struct rule_pats *ps)
{
	fprintf(f, " %s=", key);
	for (unsigned i = 0; i < ps->n; i++) {
		const struct rule_pat *pat = &ps->v[i];
		const char *kind = pat->kind == RULE_PAT_REGEX ? "/" : "";
		fprintf(f, "%s%s%s%s%s", i ? "," : "", pat->neg ? "!" : "", kind, pat->s, kind);
	}
}

static void dump_range(FILE *f, const char *key, const struct rule_range *r)
{
	if (r->lo == r->hi)
		fprintf(f, " %s=%lld", key, (long long)r->lo);
	else if (r->lo == INT64_MIN)
		fprintf(f, " %s<=%lld", key, (long long)r->hi);
	else if (r->hi == INT64_MAX)
		fprintf(f, " %s>=%lld", key, (long long)r->lo);
	else
		fprintf(f, " %s=%lld-%lld", key, (long long)r->lo, (long long)r->hi);
}

static void dump_acks(FILE *f, const char *key, uint8_t acks)
{
	fprintf(f, " %s=%s%s%s", key, acks & RULE_ACKS_0 ? "0," : "",
	        acks & RULE_ACKS_1 ? "1," : "", acks & RULE_ACKS_ALL ? "all," : "");
}

static void dump_codecs(FILE *f, const char *key, uint8_t codecs)
{
	fprintf(f, " %s=", key);
	int first = 1;
	for (unsigned i = 0; i < sizeof(codec_names) / sizeof(codec_names[0]); i++)
		if (codecs & (1u << i)) {
			fprintf(f, "%s%s", first ? "" : ",", codec_names[i]);
			first = 0;
		}
}

void rule_match_dump(const struct rule_match *m, FILE *f)
{
	if (!m->keys) {
		fprintf(f, " (every request)");
		return;
	}
	if (m->keys & RULE_M_API) {
		fprintf(f, " api=");
		for (unsigned i = 0; i < m->napis; i++) {
			const struct rule_api *a = &m->apis[i];
			fprintf(f, "%s%s", i ? "," : "", kd_api_name(a->key));
			if (a->lo == a->hi)
				fprintf(f, "@%d", a->lo);
			else if (a->hi == INT16_MAX && a->lo > 0)
				fprintf(f, "@%d+", a->lo);
			else if (a->hi != INT16_MAX)
				fprintf(f, "@%d-%d", a->lo, a->hi);
		}
	}
	if (m->keys & RULE_M_TOPIC)
		dump_pats(f, "topic", &m->topic);
	if (m->keys & RULE_M_CLIENT_ID)
		dump_pats(f, "client_id", &m->client_id);
	if (m->keys & RULE_M_PRINCIPAL)
		dump_pats(f, "principal", &m->principal);
	if (m->keys & RULE_M_GROUP)
		dump_pats(f, "group", &m->group);
	if (m->keys & RULE_M_TXN_ID)
		dump_pats(f, "transactional_id", &m->txn_id);
	if (m->keys & RULE_M_SOURCE) {
		fprintf(f, " source=");
		for (unsigned i = 0; i < m->source.n; i++) {
			const struct rule_cidr *c = &m->source.v[i];
			char buf[INET6_ADDRSTRLEN];
			inet_ntop(c->family == 4 ? AF_INET : AF_INET6, c->addr, buf, sizeof(buf));
			fprintf(f, "%s%s%s/%u", i ? "," : "", c->neg ? "!" : "", buf, c->bits);
		}
	}
	if (m->keys & RULE_M_BROKER) {
		fprintf(f, " broker=");
		for (unsigned i = 0; i < m->nbrokers; i++) {
			if (m->brokers[i] < 0)
				fprintf(f, "%sbootstrap", i ? "," : "");
			else
				fprintf(f, "%s%d", i ? "," : "", m->brokers[i]);
		}
	}
	if (m->keys & RULE_M_ACKS)
		dump_acks(f, "acks", m->acks);
	if (m->keys & RULE_M_CODEC)
		dump_codecs(f, "compression", m->codecs);
	if (m->keys & RULE_M_RECORDS)
		dump_range(f, "records", &m->records);
	if (m->keys & RULE_M_BYTES)
		dump_range(f, "bytes", &m->bytes);
	if (m->keys & RULE_M_RECORD_BYTES)
		dump_range(f, "record_bytes", &m->record_bytes);
}

static int rule_has_topic_matcher(const struct rule *rule)
{
	return (rule->match.keys & RULE_M_TOPIC) != 0;
}

static void dump_action(const struct rule *rule, FILE *f)
{
	static const char *const pers[] = {"client_id", "principal", "source", "topic", "shared"};
	static const char *const logs[] = {"none", "summary", "records"};
	const struct rule_require *r = &rule->require;
	switch (rule->section) {
	case RULE_ACCESS:
		if (rule->allow)
			fprintf(f, "allow");
		else if (rule->deny == RULE_DENY_AUTO)
			fprintf(f, "deny with the API's authorization error");
		else
			fprintf(f, "deny %s (%d)", kd_error_name(rule->deny), rule->deny);
		if (rule->deny_set && rule_has_topic_matcher(rule))
			fprintf(f, "; Metadata: %s",
			        rule->meta_show ? "show denied topics with the error"
			                        : "hide denied topics from topic lists");
		break;
	case RULE_QUOTA:
		fprintf(f, "per %s:", pers[rule->per]);
		if (rule->produce_bps)
			fprintf(f, " produce %lld B/s", (long long)rule->produce_bps);
		if (rule->fetch_bps)
			fprintf(f, " fetch %lld B/s", (long long)rule->fetch_bps);
		if (rule->requests_ps > 0)
			fprintf(f, " %g requests/s", rule->requests_ps);
		fprintf(f, " (%u samples of %u ms)", rule->samples, rule->sample_ms);
		break;
	case RULE_POLICY:
		fprintf(f, "require");
		if (r->keys & RULE_REQ_ACKS)
			dump_acks(f, "acks", r->acks);
		if (r->keys & RULE_REQ_CODEC)
			dump_codecs(f, "compression", r->codecs);
		if (r->keys & RULE_REQ_MAX_RECORD)
			fprintf(f, " max_record_bytes=%lld", (long long)r->max_record_bytes);
		if (r->keys & RULE_REQ_HEADERS) {
			fprintf(f, " headers=");
			for (unsigned i = 0; i < r->nheaders; i++)
				fprintf(f, "%s%s", i ? "," : "", r->headers[i]);
		}
		if (r->keys & RULE_REQ_PARTITIONS)
			dump_range(f, "partitions", &r->partitions);
		if (r->keys & RULE_REQ_REPLICATION)
			dump_range(f, "replication_factor", &r->replication_factor);
		break;
	case RULE_AUDIT:
		fprintf(f, "log %s, values up to %u bytes, responses read up to %u bytes",
		        logs[rule->log], rule->max_value_bytes, rule->max_bytes);
		if (rule->nredact) {
			fprintf(f, ", redact headers ");
			for (unsigned i = 0; i < rule->nredact; i++)
				fprintf(f, "%s%s", i ? "," : "", rule->redact_headers[i]);
		}
		if (rule->redact_key)
			fprintf(f, ", redact keys");
		if (rule->redact_value)
			fprintf(f, ", redact values");
		if (rule->sink.file)
			fprintf(f, ", to file %s", rule->sink.file);
		if (rule->sink.kafka)
			fprintf(f, ", to topic %s%s%s", rule->sink.kafka,
			        rule->sink.bootstrap ? " at " : "",
			        rule->sink.bootstrap ? rule->sink.bootstrap : "");
		for (unsigned i = 0; i + 1 < rule->sink.nprops; i += 2)
			fprintf(f, ", %s=%s", rule->sink.props[i],
			        /* a property may hold a password: its name only */
			        strstr(rule->sink.props[i], "password") ||
			                strstr(rule->sink.props[i], "secret") ||
			                strstr(rule->sink.props[i], "key")
			            ? "[redacted]"
			            : rule->sink.props[i + 1]);
		if (!rule->sink.file && !rule->sink.kafka)
			fprintf(f, ", to the proxy's audit_log");
		break;
	case RULE_REWRITE:
		if (rule->names)
			rule_names_dump(rule->names, f);
		if (rule->names && rule->records)
			fprintf(f, "; ");
		rule_rewrite_dump(rule, f);
		break;
	case RULE_MIRROR:
	case RULE_TAP:
		rule_mirror_dump(rule, f);
		break;
	}
}

void rule_set_dump(const struct rule_set *rs, FILE *f)
{
	fprintf(f, "%s: %u rules (access %u, quotas %u, policies %u, audit %u), sha256 %s\n",
	        rs->path, rs->n, rs->nsec[RULE_ACCESS], rs->nsec[RULE_QUOTA], rs->nsec[RULE_POLICY],
	        rs->nsec[RULE_AUDIT], rs->sha256);
	if (rs->nsec[RULE_REWRITE])
		fprintf(f, "  and %u rewrite rules\n", rs->nsec[RULE_REWRITE]);
	for (int s = 0; s < RULE_NSECTIONS; s++) {
		if (!rs->nsec[s])
			continue;
		fprintf(f, "%s:\n", rule_section_name(s));
		for (unsigned i = 0; i < rs->n; i++) {
			const struct rule *rule = &rs->rules[i];
			if (rule->section != s)
				continue;
			fprintf(f, "  %s (line %u):", rule->name, rule->line);
			rule_match_dump(&rule->match, f);
			fprintf(f, "\n    -> ");
			dump_action(rule, f);
			fprintf(f, "%s\n",
			        (rule->match.keys & RULE_M_BODY) ? "  [reads the request body]"
			                                         : "");
		}
	}
}
