/* px-rules.h: the proxy's rules file in force (rules/ engine), swapped
 * whole when it is reloaded: on SIGHUP (px_rules_reload) and when the file
 * changes (px_rules_watch: inotify on its folder, so that an editor's
 * rename-over-the-old-file counts too).
 *
 * A reload parses and compiles off the forwarding threads, then publishes
 * the new set with one atomic generation bump. A file with errors leaves
 * the running set in place and logs FILE:LINE:COL. Readers take no lock on
 * the hot path: each worker keeps a struct px_rules_ref, which holds a
 * reference to the set it last saw and refreshes it (under the mutex) only
 * when the generation moved. A request takes its own reference
 * (rule_set_ref) so that it is judged and answered under the set it
 * arrived under, whatever reloads happen meanwhile. */
#ifndef PX_RULES_H
#define PX_RULES_H

#include <stdint.h>

#include "rule-t.h"

struct px_rules;

typedef void px_rules_log_fn(void *arg, int level, const char *msg);

/* Loads path. NULL with "FILE:LINE:COL: message" in err on error. log
 * (level 0 errors, 1 warnings, 2 info) reports reloads; may be NULL. */
struct px_rules *px_rules_new(const char *path, px_rules_log_fn *log, void *log_arg, char *err,
                              size_t errlen);
/* Stops the watcher and drops the set; every px_rules_ref must have been
 * dropped. *r = NULL. */
void px_rules_free(struct px_rules **r);

/* A step every newly loaded set goes through before it is published
 * (the audit opens its sinks there, px-audit.h): 0, or -1 with a message
 * in err, which refuses the set like a file error (the running set
 * stays). Called on the thread that reloads, never concurrently. */
typedef int px_rules_check_fn(void *arg, struct rule_set *rs, char *err, size_t errlen);
/* Installs fn and runs it on the set in force now; returns its result. */
int px_rules_set_check(struct px_rules *r, px_rules_check_fn *fn, void *arg, char *err,
                       size_t errlen);

/* Loads the file again and publishes it. Returns 0, or -1 when the file
 * has errors (the running set stays, the error is logged and kept for
 * px_rules_state). Any thread; reloads are serialised. */
int px_rules_reload(struct px_rules *r);

/* Starts a thread that reloads when the file changes (debounced by
 * debounce_ms). Returns 0, or -1 with a message in err. */
int px_rules_watch(struct px_rules *r, unsigned debounce_ms, char *err, size_t errlen);

/* A reader's cached reference. All-zero is a valid initial state. */
struct px_rules_ref {
	struct rule_set *rs;
	uint64_t gen;
};

/* The set in force, through ref (refreshed when a reload happened). The
 * set stays valid until ref is refreshed or dropped; take rule_set_ref()
 * to keep it longer. No lock unless the generation moved. */
struct rule_set *px_rules_current(struct px_rules *r, struct px_rules_ref *ref);
void px_rules_ref_drop(struct px_rules_ref *ref);

/* What /rules and /metrics show. */
struct px_rules_state {
	char path[512];
	char sha256[65];
	int64_t loaded_us; /* wall clock of the set in force */
	uint64_t reloads;  /* successful loads after the first */
	uint64_t failures; /* reloads refused for errors */
	char last_error[512];
};
/* Fills st; returns the set in force with a reference the caller drops
 * (rule_set_unref), for its rules and hit counters. */
struct rule_set *px_rules_state(struct px_rules *r, struct px_rules_state *st);

#endif
