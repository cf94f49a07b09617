/* rule-index.h: the candidate lists of a compiled rule set, so that
 * rule_eval() tries only the rules that can match a request instead of
 * every rule of the file (rules/ internal; rule-index.c).
 *
 * Each section's rules are filed once, under the most selective matcher
 * they have that can be looked up:
 *
 *   topic      every positive topic pattern is exact, or a glob or a
 *              regex with a literal prefix ("orders.*" -> "orders.",
 *              "/orders-[0-9]+/" -> "orders-"): filed under each exact
 *              name and each prefix;
 *   client_id  the same, on the client id;
 *   api        under each API key it names;
 *   any        the rest (regexes, negations only, no matcher at all).
 *
 * A request (or one of its topics) gets the lists its facts hit: the exact
 * name, every filed prefix of it, its client id's, its API's, and `any`.
 * The lists hold rule positions in file order; walking them merged, lowest
 * position first, gives the section's rules in file order with the ones
 * that cannot match left out. So first-match-wins and "every match in file
 * order" are exactly what a scan of the whole file gives; rule_matches()
 * still decides each candidate. A rule filed under a topic can only match
 * a topic (it has a per-topic matcher), so requests judged without topics
 * skip those lists. */
#ifndef RULE_INDEX_H
#define RULE_INDEX_H

#include <stdint.h>

#include "rule-t.h"

/* The lists one request hits: at most two string indexes (topic, client
 * id) of RULE_IX_PLENS prefix lengths and one exact name each, plus api
 * and any. Longer literal prefixes are filed under their first
 * RULE_IX_PLENS bytes (a topic name has at most 249). */
#define RULE_IX_PLENS 255
#define RULE_IX_LISTS (2 * (RULE_IX_PLENS + 1) + 2)

struct rule_cand {
	const struct rule_set *rs;
	const uint32_t *v[RULE_IX_LISTS];
	uint32_t n[RULE_IX_LISTS];
	unsigned k;
	int64_t last; /* the position last returned (lists may share a rule) */
};

/* Builds rs->ix from rs->rules; 0, or -1 when out of memory. */
int rule_index_build(struct rule_set *rs);
void rule_index_free(struct rule_set *rs);

/* Starts a walk over the rules of section that can match req for topic
 * (index into req->topics, or -1: the request as a whole). */
void rule_cand_start(struct rule_cand *c, const struct rule_set *rs, int section,
                     const struct rule_req *req, int topic);
/* Starts a walk over every rule of section, in file order. */
void rule_cand_all(struct rule_cand *c, const struct rule_set *rs, int section);
/* The next candidate in file order, or NULL. */
const struct rule *rule_cand_next(struct rule_cand *c);

/* Whether the header facts of req (API, client id, principal, source,
 * broker) let some rule apply that needs the request's body: a body
 * matcher, a refusal (its answer mirrors the body), a policy, a per-topic
 * quota or an audit that logs. */
int rule_index_needs_body(const struct rule_set *rs, const struct rule_req *req);

/* Whether rule's header matchers (API, client id, principal, source,
 * broker) match req (rule-eval.c). */
int rule_header_matches(const struct rule *rule, const struct rule_req *req);

/* Whether rule can apply to requests of API key (it has no api matcher,
 * or names key in it, whatever the versions). */
int rule_has_api(const struct rule *rule, int16_t key);

/* Whether rule needs the body of the requests it applies to. */
int rule_needs_body(const struct rule *rule);

#endif
