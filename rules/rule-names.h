/* rule-names.h: the names part of a `rewrite:` rule (docs/rules.md,
 * "rewrite: names"): the topic names, group ids and transactional ids a
 * client sees, mapped to the names the cluster holds, by a prefix and by
 * aliases. Parsed by rule-names.c from the rules file; applied to messages
 * by the decoder's name mapper (kd-names.h) through rule_names_map(). */
#ifndef RULE_NAMES_H
#define RULE_NAMES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <yaml.h>

#include "rule-t.h"

/* The kinds of names a rule maps, in this order. */
enum rule_names_kind {
	RULE_N_TOPIC = 0,
	RULE_N_GROUP,
	RULE_N_TXN,
	RULE_N_KINDS,
};

struct rule_alias {
	char *client, *cluster;
	size_t clen, xlen;
};

/* How one kind of name is mapped. All-zero maps nothing. */
struct rule_nmap {
	char *prefix; /* NULL: no prefix */
	size_t plen;
	struct rule_alias *alias; /* sorted by client name */
	unsigned nalias;
	unsigned *by_cluster; /* indices into alias, sorted by cluster name */
};

struct rule_names {
	struct rule_nmap kind[RULE_N_KINDS];
};

/* rule_names_map() results. */
enum rule_names_rc {
	RULE_N_HIDDEN = -1, /* outside the client's namespace */
	RULE_N_SAME = 0,    /* the name is the same on both sides */
	RULE_N_MAPPED = 1,  /* *out holds the other side's name */
};

/* The rule_names_kind of a schema entity (KD_ENT_*), or -1. */
int rule_names_kind(int ent);

/* Maps name p[0..len) of kind (enum rule_names_kind) to the cluster's
 * name (to_cluster) or back to the client's. *out points into p, into the
 * rule, or into buf (cap bytes) when a prefix is added. Returns
 * RULE_N_SAME, RULE_N_MAPPED or RULE_N_HIDDEN: a cluster name outside the
 * namespace (not under the prefix, or the alias of another name), or a
 * client name whose cluster name could not be mapped back to it (so that
 * every name a client can use maps back to itself). */
int rule_names_map(const struct rule_names *nm, int kind, int to_cluster, const uint8_t *p,
                   size_t len, char *buf, size_t cap, struct kd_view *out);

/* Whether nm maps names of kind at all. */
int rule_names_maps(const struct rule_names *nm, int kind);

/* The first rewrite rule with names whose matchers match req (header facts:
 * client id, principal, source, listener), or NULL. Counts nothing. */
const struct rule *rule_names_for(const struct rule_set *rs, const struct rule_req *req);

/* ---- loading (rule-load.c calls these for rules under `rewrite:`) ---- */
struct yl;
/* A key of a rewrite rule: 0 taken, -1 error, 1 not a names key. */
int rule_names_pair(struct yl *y, const char *key, const yaml_node_t *knode, const yaml_node_t *val,
                    struct rule *rule);
/* Checks a rewrite rule with names once all its keys are read. 0 or -1. */
int rule_names_finish(struct yl *y, const yaml_node_t *node, struct rule *rule);
void rule_names_free(struct rule_names **nm);
/* "names: topics prefix 'acme.', 2 aliases; groups ..." */
void rule_names_dump(const struct rule_names *nm, FILE *f);

#endif
