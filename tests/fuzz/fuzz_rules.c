/* fuzz_rules.c: the rules file loader on arbitrary bytes. A file that
 * loads is then dumped and judges a few fixed requests, so that whatever
 * the loader accepts is also safe to evaluate. */
#include <stdio.h>
#include <string.h>

#include "kd-api-keys-gen.h"
#include "rule.h"

static struct kd_view sv(const char *s)
{
	return (struct kd_view){(const uint8_t *)s, (uint32_t)strlen(s), 0};
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	char err[512];
	if (!devnull)
		devnull = fopen("/dev/null", "w");
	struct rule_set *rs =
	    rule_set_load_mem((const char *)data, size, "fuzz.yaml", err, sizeof(err));
	if (!rs)
		return 0;
	if (devnull)
		rule_set_dump(rs, devnull);
	struct rule_topic topics[2] = {
	    {.name = sv("orders.eu"),
	     .codecs = 1,
	     .records = 3,
	     .bytes = 300,
	     .max_record_bytes = 100,
	     .num_partitions = 3,
	     .replication_factor = 1},
	    {.name = sv("audit.x"),
	     .codecs = 16,
	     .records = -1,
	     .bytes = -1,
	     .max_record_bytes = -1,
	     .num_partitions = -1,
	     .replication_factor = -1},
	};
	static const int16_t keys[] = {KD_API_PRODUCE, KD_API_FETCH, KD_API_CREATE_TOPICS,
	                               KD_API_JOIN_GROUP, KD_API_API_VERSIONS};
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		struct rule_req req = {0};
		req.api_key = keys[k];
		req.api_version = 7;
		req.client_id = sv("batch-1");
		req.principal = sv("User:alice");
		struct kd_view g = sv("g");
		req.groups = &g;
		req.ngroups = 1;
		req.txn_ids = &g;
		req.ntxn_ids = 1;
		req.src_family = 4;
		req.src_addr[0] = 10;
		req.broker_id = (int32_t)k - 1;
		req.acks = keys[k] == KD_API_PRODUCE ? 1 : -2;
		req.have_body = (uint8_t)(k & 1);
		req.topics = topics;
		req.ntopics = keys[k] == KD_API_API_VERSIONS ? 0 : 2;
		struct rule_topic_verdict tv[2];
		struct rule_verdict v = {.topics = tv};
		rule_eval(rs, &req, &v);
		for (unsigned i = 0; i < v.nquotas; i++) {
			char key[64];
			rule_quota_key(&v.quotas[i], &req, key, sizeof(key));
		}
	}
	rule_set_unref(&rs);
	return 0;
}
