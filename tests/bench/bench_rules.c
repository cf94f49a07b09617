/* bench_rules.c: the rules engine's cost per request (rule_eval), and of
 * reading a Produce request's facts (rule_facts_read), for rule sets of
 * 10, 100 and 1,000 rules, with header-only matchers and with topic
 * matchers (globs, the index's prefix lists: rules/rule-index.h), and 100
 * topic regexes, which the index cannot file (every one is tried).
 * Prints figures, asserts nothing.
 *
 * Usage: bench_rules [seconds per figure, default 0.5] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd-api-keys-gen.h"
#include "kd-hdr.h"
#include "kd-arena.h"
#include "kd-records.h"
#include "kd-tree.h"
#include "rule.h"

static double min_secs = 0.5;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum { M_CLIENT, M_TOPIC, M_REGEX };
static const char *mname[] = {"client_id", "topic", "topic regex"};

/* n access rules; each matches a client id glob, a topic glob or a topic
 * regex. None matches the benchmark's request: without the index every
 * rule is tried. */
static struct rule_set *ruleset(unsigned n, int topic)
{
	size_t cap = 256 + (size_t)n * 96, len = 0;
	char *y = malloc(cap);
	len += (size_t)snprintf(y + len, cap - len, "access:\n");
	for (unsigned i = 0; i < n; i++)
		len += (size_t)snprintf(
		    y + len, cap - len,
		    topic == M_REGEX
		        ? "  - name: r%u\n    match: {%s: \"/%s-%u-.*/\"}\n    deny: true\n"
		        : "  - name: r%u\n    match: {%s: \"%s-%u-*\"}\n    deny: true\n",
		    i, topic != M_CLIENT ? "topic" : "client_id", topic ? "orders" : "batch", i);
	char err[512];
	struct rule_set *rs = rule_set_load_mem(y, len, "bench.yaml", err, sizeof(err));
	if (!rs)
		fprintf(stderr, "%s\n", err);
	free(y);
	return rs;
}

static void eval_row(unsigned n, int topic)
{
	struct rule_set *rs = ruleset(n, topic);
	if (!rs)
		exit(1);
	struct rule_topic t = {.name = {(const uint8_t *)"payments.eu", 11, 0},
	                       .codecs = 1,
	                       .records = 10,
	                       .bytes = 1000,
	                       .max_record_bytes = 100,
	                       .num_partitions = -1,
	                       .replication_factor = -1};
	struct rule_req req = {.api_key = KD_API_PRODUCE,
	                       .api_version = 10,
	                       .client_id = {(const uint8_t *)"app-1", 5, 0},
	                       .src_family = 4,
	                       .src_addr = {127, 0, 0, 1},
	                       .broker_id = 1,
	                       .have_body = 1,
	                       .acks = -1,
	                       .topics = &t,
	                       .ntopics = 1};
	struct rule_topic_verdict tv[1];
	uint64_t iters = 0;
	double t0 = now(), el;
	do {
		for (int i = 0; i < 1000; i++) {
			struct rule_verdict v = {.topics = tv};
			rule_eval(rs, &req, &v);
		}
		iters += 1000;
		el = now() - t0;
	} while (el < min_secs);
	printf("| rule_eval, %5u rules with %-11s matchers | %10.0f ns |\n", n, mname[topic],
	       el / (double)iters * 1e9);
	rule_set_unref(&rs);
}

/* A Produce v10 with one topic and a batch of 100 records of 200 bytes. */
static void facts_row(void)
{
	struct kd_arena a = {0};
	struct kd_tree t0, t;
	struct kd_wbuf recs = {0}, body = {0};
	static uint8_t val[200];
	struct kd_wrecord r[100];
	struct kd_batch_spec spec = {
	    .magic = 2, .producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
	memset(r, 0, sizeof(r));
	for (int i = 0; i < 100; i++)
		r[i].value = (struct kd_view){val, sizeof(val), 0};
	kd_batch_write(&recs, &spec, r, 100);
	kd_tree_init_default(&t0, &a, KD_API_PRODUCE, 10, 1);
	struct kd_node *td = kd_node_child(t0.root, "TopicData");
	kd_node_array_add(&t0, td, UINT32_MAX);
	struct kd_node *te = kd_node_elem(td, 0);
	kd_node_set_str(&t0, kd_node_child(te, "Name"), "orders.eu", 9);
	struct kd_node *pd = kd_node_child(te, "PartitionData");
	kd_node_array_add(&t0, pd, UINT32_MAX);
	kd_node_set_str(&t0, kd_node_child(kd_node_elem(pd, 0), "Records"), recs.p, recs.len);
	kd_tree_encode(&t0, &body);
	struct kd_arena b = {0};
	struct rule_facts f = {0};
	for (int sizes = 0; sizes < 2; sizes++) {
		uint64_t iters = 0;
		double s0 = now(), el;
		do {
			for (int i = 0; i < 100; i++) {
				kd_arena_reset(&b);
				kd_tree_decode(&t, &b, KD_API_PRODUCE, 10, 1, body.p, body.len);
				rule_facts_read(&f, &t, NULL, sizes, &b);
			}
			iters += 100;
			el = now() - s0;
		} while (el < min_secs);
		printf("| decode + rule_facts_read, Produce of 100 records%s | %10.0f ns |\n",
		       sizes ? ", record sizes" : "               ", el / (double)iters * 1e9);
	}
	rule_facts_free(&f);
	kd_wbuf_free(&recs);
	kd_wbuf_free(&body);
	kd_arena_free(&a);
	kd_arena_free(&b);
}

/* Judging a Produce v10 of 256 records of 1 KiB (one topic, the size of
 * the proxy benchmark's requests) under 100 topic rules, the two ways the
 * proxy can: gathered into one piece (a copy, as evbuffer_pullup makes
 * it) and decoded (rule_judge), or walked in place over 4 KiB pieces, as
 * the socket reads left it (rule_judge_walk). */
static void judge_row(void)
{
	struct kd_arena a = {0};
	struct kd_tree t0;
	struct kd_wbuf recs = {0}, body = {0};
	static uint8_t val[1024];
	static struct kd_wrecord r[256];
	struct kd_batch_spec spec = {
	    .magic = 2, .producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
	for (int i = 0; i < 256; i++)
		r[i].value = (struct kd_view){val, sizeof(val), 0};
	kd_batch_write(&recs, &spec, r, 256);
	kd_tree_init_default(&t0, &a, KD_API_PRODUCE, 10, 1);
	struct kd_node *td = kd_node_child(t0.root, "TopicData");
	kd_node_array_add(&t0, td, UINT32_MAX);
	struct kd_node *te = kd_node_elem(td, 0);
	kd_node_set_str(&t0, kd_node_child(te, "Name"), "bench", 5);
	struct kd_node *pd = kd_node_child(te, "PartitionData");
	kd_node_array_add(&t0, pd, UINT32_MAX);
	kd_node_set_str(&t0, kd_node_child(kd_node_elem(pd, 0), "Records"), recs.p, recs.len);
	kd_tree_encode(&t0, &body);
	struct rule_set *rs = ruleset(100, M_TOPIC);
	struct kd_req_hdr h;
	kd_req_hdr_init(&h, KD_API_PRODUCE, 10, 1, "rdkafka");
	struct rule_who who = {.src_family = 4, .src_addr = {127, 0, 0, 1}, .broker_id = 1};
	struct rule_judge j = {0};
	struct kd_view segs[1024];
	unsigned nsegs = 0;
	for (size_t off = 0; off < body.len && nsegs < 1024; off += 4096)
		segs[nsegs++] = (struct kd_view){
		    body.p + off, (uint32_t)(body.len - off < 4096 ? body.len - off : 4096), 0};
	for (int walk = 0; walk < 2; walk++) {
		uint64_t iters = 0;
		double s0 = now(), el;
		do {
			for (int i = 0; i < 100; i++) {
				struct rule_verdict v;
				if (walk) {
					if (rule_judge_walk(&j, rs, &h, segs, nsegs, NULL, &who,
					                    &v) != KD_OK ||
					    j.facts.req.ntopics != 1) {
						fprintf(stderr, "bench_rules: the walk failed\n");
						exit(1);
					}
				} else {
					uint8_t *copy = malloc(body.len);
					memcpy(copy, body.p, body.len);
					rule_judge(&j, rs, &h, copy, body.len, NULL, &who, &v);
					free(copy);
				}
			}
			iters += 100;
			el = now() - s0;
		} while (el < min_secs);
		double ns = el / (double)iters * 1e9;
		printf("| judge a Produce of %zu KB, 100 topic rules, %-21s | %10.0f ns |\n",
		       body.len / 1024, walk ? "walked in place" : "gathered and decoded", ns);
	}
	rule_judge_free(&j);
	rule_set_unref(&rs);
	kd_wbuf_free(&recs);
	kd_wbuf_free(&body);
	kd_arena_free(&a);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		min_secs = atof(argv[1]);
	printf("| what | per request |\n|---|---|\n");
	eval_row(10, M_CLIENT);
	eval_row(10, M_TOPIC);
	eval_row(100, M_CLIENT);
	eval_row(100, M_TOPIC);
	eval_row(100, M_REGEX);
	eval_row(1000, M_CLIENT);
	eval_row(1000, M_TOPIC);
	facts_row();
	judge_row();
	return 0;
}
