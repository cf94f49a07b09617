/* cmd-rules.c: `kwire rules check FILE` and `kwire rules explain FILE ...`:
 * a rules file validated and shown as compiled, and which rules would
 * apply to a request described on the command line (docs/rules.md). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "kd-records-t.h"
#include "kd-schema.h"
#include "kw-help-gen.h"
#include "rule.h"

static void usage(FILE *f)
{
	fputs(kw_help_rules, f);
}

static int check(const char *path)
{
	char err[512];
	struct rule_set *rs = rule_set_load(path, err, sizeof(err));
	if (!rs) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	rule_set_dump(rs, stdout);
	rule_set_unref(&rs);
	return 0;
}

#define MAX_TOPICS 64
#define MAX_HEADERS 32

struct explain_ctx {
	const char *headers[MAX_HEADERS];
	unsigned nheaders;
	int headers_given;
};

static int has_header(void *arg, unsigned topic, const char *name, size_t len)
{
	struct explain_ctx *x = arg;
	(void)topic;
	if (!x->headers_given)
		return -1;
	for (unsigned i = 0; i < x->nheaders; i++)
		if (strlen(x->headers[i]) == len && !memcmp(x->headers[i], name, len))
			return 1;
	return 0;
}

static struct kd_view sview(const char *s)
{
	struct kd_view v = {(const uint8_t *)s, (uint32_t)(s ? strlen(s) : 0), !s};
	return v;
}

static int bad(const char *opt, const char *val)
{
	fprintf(stderr, "kwire rules explain: bad %s '%s'\n", opt, val);
	return 2;
}

static void print_verdict(const struct rule_set *rs, const struct rule_req *req,
                          const struct rule_verdict *v)
{
	for (unsigned i = 0; i < rs->n; i++) {
		const struct rule *rule = &rs->rules[i];
		unsigned units = req->ntopics ? req->ntopics : 1;
		for (unsigned u = 0; u < units; u++) {
			int topic = req->ntopics ? (int)u : -1;
			const char *why = NULL;
			int m = rule_matches(rule, req, topic, &why);
			printf("  %-8s %-24s", rule_section_name(rule->section), rule->name);
			if (topic >= 0)
				printf(" topic %.*s:", (int)req->topics[topic].name.len,
				       (const char *)req->topics[topic].name.p);
			if (m)
				printf(" matches\n");
			else
				printf(" no (%s does not match)\n", why);
		}
	}
	printf("verdict: ");
	if (v->error)
		printf("refused with %s (%d) by %s '%s'\n", kd_error_name(v->error), v->error,
		       rule_section_name(v->rule->section), v->rule->name);
	else if (v->split)
		printf("split: %u of %u topics refused\n", v->nrefused, req->ntopics);
	else
		printf("forwarded\n");
	for (unsigned t = 0; v->topics && t < req->ntopics; t++) {
		const struct rule_topic_verdict *tv = &v->topics[t];
		printf("  topic %.*s: ", (int)req->topics[t].name.len,
		       (const char *)req->topics[t].name.p);
		if (tv->error)
			printf("refused with %s by %s '%s'\n", kd_error_name(tv->error),
			       rule_section_name(tv->rule->section), tv->rule->name);
		else
			printf("forwarded\n");
	}
	for (unsigned i = 0; i < v->nquotas; i++) {
		char key[256];
		rule_quota_key(&v->quotas[i], req, key, sizeof(key));
		printf("quota '%s' counts it under key '%s'\n", v->quotas[i].rule->name, key);
	}
	for (unsigned i = 0; i < v->naudits; i++)
		printf("audit '%s' records it\n", v->audits[i].rule->name);
}

static int explain(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"api", required_argument, NULL, 'a'},
	    {"version", required_argument, NULL, 'V'},
	    {"topic", required_argument, NULL, 't'},
	    {"client-id", required_argument, NULL, 'c'},
	    {"source", required_argument, NULL, 's'},
	    {"broker", required_argument, NULL, 'b'},
	    {"principal", required_argument, NULL, 'p'},
	    {"group", required_argument, NULL, 'g'},
	    {"transactional-id", required_argument, NULL, 'x'},
	    {"acks", required_argument, NULL, 'k'},
	    {"compression", required_argument, NULL, 'z'},
	    {"records", required_argument, NULL, 'r'},
	    {"bytes", required_argument, NULL, 'B'},
	    {"record-bytes", required_argument, NULL, 'R'},
	    {"partitions", required_argument, NULL, 'P'},
	    {"replication-factor", required_argument, NULL, 'F'},
	    {"header", required_argument, NULL, 'H'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct rule_req req;
	struct rule_topic topics[MAX_TOPICS];
	struct explain_ctx x = {0};
	unsigned ntopics = 0, ngroups = 0, ntxn = 0;
	struct kd_view groups[MAX_TOPICS], txn_ids[MAX_TOPICS];
	int64_t records = -1, bytes = -1, record_bytes = -1, partitions = -1, rf = -1;
	int codec = KD_CODEC_NONE;
	const char *api = NULL;
	int version = -1;
	memset(&req, 0, sizeof(req));
	memset(topics, 0, sizeof(topics));
	req.broker_id = -1;
	req.acks = -1;
	req.has_header = has_header;
	req.arg = &x;
	int c;
	optind = 2; /* argv: explain FILE ... */
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int64_t n;
		switch (c) {
		case 'a':
			api = optarg;
			break;
		case 'V':
			if (rule_parse_size(optarg, &n) || n < 0 || n > INT16_MAX)
				return bad("--version", optarg);
			version = (int)n;
			break;
		case 't':
			if (ntopics == MAX_TOPICS)
				return bad("--topic (too many)", optarg);
			topics[ntopics++].name = sview(optarg);
			break;
		case 'c':
			req.client_id = sview(optarg);
			break;
		case 's':
			if (rule_parse_addr(optarg, &req.src_family, req.src_addr))
				return bad("--source", optarg);
			break;
		case 'b':
			if (!strcmp(optarg, "bootstrap"))
				req.broker_id = -1;
			else if (rule_parse_size(optarg, &n) || n < 0 || n > INT32_MAX)
				return bad("--broker", optarg);
			else
				req.broker_id = (int32_t)n;
			break;
		case 'p':
			req.principal = sview(optarg);
			break;
		case 'g':
			if (ngroups == MAX_TOPICS)
				return bad("--group (too many)", optarg);
			groups[ngroups++] = sview(optarg);
			break;
		case 'x':
			if (ntxn == MAX_TOPICS)
				return bad("--transactional-id (too many)", optarg);
			txn_ids[ntxn++] = sview(optarg);
			break;
		case 'k':
			if (!strcmp(optarg, "all") || !strcmp(optarg, "-1"))
				req.acks = -1;
			else if (!strcmp(optarg, "0") || !strcmp(optarg, "1"))
				req.acks = (int16_t)atoi(optarg);
			else
				return bad("--acks", optarg);
			break;
		case 'z':
			if ((codec = rule_codec_id(optarg)) < 0)
				return bad("--compression", optarg);
			break;
		case 'r':
			if (rule_parse_size(optarg, &records) || records < 0)
				return bad("--records", optarg);
			break;
		case 'B':
			if (rule_parse_size(optarg, &bytes) || bytes < 0)
				return bad("--bytes", optarg);
			break;
		case 'R':
			if (rule_parse_size(optarg, &record_bytes) || record_bytes < 0)
				return bad("--record-bytes", optarg);
			break;
		case 'P':
			if (rule_parse_size(optarg, &partitions) || partitions < -1 ||
			    partitions > INT32_MAX)
				return bad("--partitions", optarg);
			break;
		case 'F':
			if (rule_parse_size(optarg, &rf) || rf < -1 || rf > INT16_MAX)
				return bad("--replication-factor", optarg);
			break;
		case 'H':
			if (x.nheaders == MAX_HEADERS)
				return bad("--header (too many)", optarg);
			x.headers[x.nheaders++] = optarg;
			x.headers_given = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "kwire rules explain: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	struct rule_api a;
	if (!api || rule_parse_api(api, &a) || strchr(api, '@')) {
		fprintf(stderr,
		        "kwire rules explain: --api needs an API name or key, e.g. Produce\n");
		return 2;
	}
	const struct kd_api *def = kd_api_get(a.key);
	req.api_key = a.key;
	req.api_version = (int16_t)(version >= 0 ? version : def->req.valid.hi);
	if (req.api_key != 0)
		req.acks = -2; /* acks is Produce's */
	for (unsigned i = 0; i < ntopics; i++) {
		topics[i].codecs = (uint8_t)(1u << codec);
		topics[i].records = records;
		topics[i].bytes = bytes;
		topics[i].max_record_bytes = record_bytes;
		topics[i].num_partitions = (int32_t)partitions;
		topics[i].replication_factor = (int32_t)rf;
	}
	/* The command line describes the whole request: body facts are known. */
	req.have_body = 1;
	req.topics = topics;
	req.ntopics = ntopics;
	req.groups = groups;
	req.ngroups = ngroups;
	req.txn_ids = txn_ids;
	req.ntxn_ids = ntxn;

	char err[512];
	struct rule_set *rs = rule_set_load(argv[1], err, sizeof(err));
	if (!rs) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	struct rule_topic_verdict tv[MAX_TOPICS];
	struct rule_verdict v = {.topics = tv};
	rule_eval(rs, &req, &v);
	printf("%s v%d from client id '%s'\n", kd_api_name(req.api_key), req.api_version,
	       req.client_id.p ? (const char *)req.client_id.p : "");
	print_verdict(rs, &req, &v);
	rule_set_unref(&rs);
	return 0;
}

int cmd_rules(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *sub = argv[1];
	if (!strcmp(sub, "check")) {
		if (argc != 3 || argv[2][0] == '-') {
			if (argc == 3 && (!strcmp(argv[2], "-h") || !strcmp(argv[2], "--help"))) {
				usage(stdout);
				return 0;
			}
			usage(stderr);
			return 2;
		}
		return check(argv[2]);
	}
	if (!strcmp(sub, "explain")) {
		if (argc < 3 || argv[2][0] == '-') {
			if (argc >= 3 && (!strcmp(argv[2], "-h") || !strcmp(argv[2], "--help"))) {
				usage(stdout);
				return 0;
			}
			usage(stderr);
			return 2;
		}
		return explain(argc - 1, argv + 1);
	}
	fprintf(stderr, "kwire rules: unknown subcommand '%s' (check, explain)\n", sub);
	return 2;
}
