/* cap-analyze.h: the Kafka analyzer behind `kwire decode` and `kwire
 * sniff`. It sits on the TCP reassembler's callbacks (cap.h): it decides
 * which flows carry Kafka (ports, plus a detector that recognises Kafka on
 * any port from its first frames), runs one kd_stream per Kafka flow, and
 * prints every request/response pair in one of the output formats. The
 * Kafka bytes themselves are only ever understood by decoder/ (kd_stream,
 * kd_summary, kd_tree, kd_records).
 *
 *	struct cap_an *an = cap_an_new(&opts, stdout, err, sizeof(err));
 *	struct cap_tcp_cbs cbs;
 *	cap_an_callbacks(an, &cbs);
 *	struct cap_tcp *tcp = cap_tcp_new(NULL, &cbs);
 *	cap_run(src, tcp);                 // flushes the flows at the end
 *	cap_an_finish(an, cap_tcp_stats(tcp));  // leftovers, the stats report
 *	cap_tcp_free(&tcp); cap_an_free(&an);
 */
#ifndef CAP_ANALYZE_H
#define CAP_ANALYZE_H

#include <stdint.h>
#include <stdio.h>

#include "cap-t.h"
#include "kd-t.h"

enum cap_an_format {
	CAP_AN_SUMMARY = 0, /* one line per request/response pair */
	CAP_AN_VERBOSE,     /* the decoded tree of every message, as text */
	CAP_AN_JSON,        /* one JSON object per request and per response */
	CAP_AN_RECORDS,     /* one JSON object per produced or fetched record */
	CAP_AN_STATS,       /* only the end report */
	CAP_AN_HTML,        /* the end report as one HTML page (cap-out-html.c) */
};

#define CAP_AN_MAX_PORTS 64

/* One record a Produce request of the capture carried, for
 * cap_an_opts.on_record (kwire replay). Views live during the call. */
struct kd_record;
struct cap_an_record {
	struct kd_view topic; /* null when only a topic id is known and unresolved */
	int32_t partition;
	int64_t ts_us;  /* capture time of the request */
	int16_t acks;   /* the request's Acks */
	int8_t acked;   /* 1: the response says written; 0: it carries an error for
	                 * the partition; -1: no response (acks=0, or none captured) */
	int8_t aborted; /* transactional: 1 aborted, 0 committed, -1 the capture does
	                 * not show; 0 for other records */
	uint8_t transactional;
	int64_t producer_id;
	const struct kd_record *rec; /* key, value, headers (kd_rec_headers_init), timestamp */
};

struct cap_an_opts {
	int format;                       /* enum cap_an_format */
	int stats_json;                   /* stats report as one JSON document */
	int stats_after;                  /* print the stats report after the other output too */
	uint16_t ports[CAP_AN_MAX_PORTS]; /* Kafka broker ports; none given = 9092 */
	unsigned nports;
	int no_detect; /* only the ports: no detection on other flows */
	/* Filters (all must match; unset = everything). */
	uint8_t api_set[1024 / 8];  /* API keys wanted, bit per key */
	int api_filter;             /* api_set is in use */
	const char *topic_glob;     /* fnmatch() pattern on topic names */
	const char *client_id_glob; /* fnmatch() pattern on client ids */
	int errors_only;            /* pairs whose response carries an error */
	const char *rules_path;     /* --rules: judge every request (cap-out-rules.c) */
	int progress;               /* progress line on stderr */
	int color;                  /* reserved */
	const char *title;          /* the input's name, for the HTML report */
	/* With format CAP_AN_RECORDS: every produced record goes to
	 * on_record(record_arg, rec) instead of the output, fetched ones
	 * nowhere (their transaction markers still count). A transactional
	 * record waits, as in the records format, until the capture shows its
	 * transaction's end (or the input ends). */
	void (*on_record)(void *arg, const struct cap_an_record *rec);
	void *record_arg;
};

struct cap_an;
struct cap_source;

/* A new analyzer writing to out (not closed by the analyzer). Returns
 * NULL with a message in err on allocation failure. */
struct cap_an *cap_an_new(const struct cap_an_opts *opts, FILE *out, char *err, size_t errlen);

/* Fills cbs with the analyzer's reassembler callbacks (ctx = an). */
void cap_an_callbacks(struct cap_an *an, struct cap_tcp_cbs *cbs);

/* Called after the input's flows were flushed: emits what was waiting
 * (unanswered requests, held transactional records) and, for the stats
 * format, the report. tstats may be NULL. */
void cap_an_finish(struct cap_an *an, const struct cap_stats *tstats);

/* Progress hook the CLI calls now and then (bytes read of total, 0 =
 * unknown); prints on stderr when opts.progress. */
void cap_an_progress(struct cap_an *an, uint64_t done, uint64_t total, int final);

/* Counters for the CLI's exit message and tests. */
struct cap_an_counts {
	uint64_t kafka_flows;
	uint64_t requests;
	uint64_t responses;
	uint64_t pairs_printed;
	uint64_t records;
	uint64_t problems; /* decode problems (errors) reported */
	uint64_t warnings; /* decode warnings: tolerated oddities, e.g. trailing bytes */
	uint64_t gaps;
};
const struct cap_an_counts *cap_an_counts(const struct cap_an *an);

void cap_an_free(struct cap_an **an);

/* Parses "Produce,Fetch,3" (names case-insensitive, or numbers) into
 * opts->api_set. Returns 0, or -1 with the bad name in err. */
int cap_an_parse_apis(struct cap_an_opts *opts, const char *list, char *err, size_t errlen);

/* ---- private to cap-analyze.c and cap-out*.c ---- */
#ifdef CAP_AN_PRIVATE
#include "kd-arena.h"
#include "kd-cur.h"
#include "kd-summary.h"

struct an_flow;
struct an_stats;
struct an_txn;
struct kd_topics;
struct an_tl;

/* --rules: what a request's judgement leaves for its response (Fetch
 * quotas count response bytes). */
#define AN_RULES_FETCH_HITS 4
#define AN_RULES_KEY 128
struct rule;
struct an_rules;
struct an_rules_pend {
	int32_t corr;
	int16_t api_key, api_version;
	char client_id[AN_RULES_KEY];
	unsigned nfetch;
	struct {
		const struct rule *rule;
		char key[AN_RULES_KEY];
	} fetch[AN_RULES_FETCH_HITS];
	/* a Produce's records the mirror rules copy once it is answered */
	struct an_mplan *mplan;
	unsigned nmplan;
	/* an EndTxn: its producer id, and 1 abort, 2 commit (0: none) */
	int64_t endtxn_pid;
	int8_t endtxn;
};
struct an_eps;
struct an_undec;

struct cap_an {
	struct cap_an_opts opts;
	FILE *out;
	struct kd_wbuf ob;                    /* output, flushed in large writes */
	struct kd_arena arena;                /* trees of the message being rendered */
	struct an_stats *stats;               /* NULL unless the stats report is wanted */
	struct an_tl *tl;                     /* the HTML report's time line, or NULL */
	struct an_txn *txn;                   /* records format: transactional records on hold */
	struct kd_topics *topics;             /* topic id -> name, from responses (kd-topics.h) */
	struct an_rules *rules;               /* --rules, or NULL */
	struct an_eps *eps;                   /* endpoints known to be Kafka brokers */
	struct an_flow *parked, *parked_tail; /* flows kept until their endpoint is known */
	unsigned nparked;
	size_t parked_bytes;
	int revive_pending;     /* a new broker endpoint: look at the parked flows */
	struct an_undec *undec; /* flows with payload that were not decoded */
	struct cap_an_counts counts;
	uint64_t problems_shown;
	uint64_t warnings_shown;
	int64_t last_progress_us;
	int progress_shown;
};

/* Output helpers (cap-analyze.c). */
void an_out_flush(struct cap_an *an);
/* A problem: counted, shown (stdout in summary format, else stderr) up to
 * a limit, and added to the stats report. fl may be NULL. */
void an_problem(struct cap_an *an, const struct an_flow *fl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A decode warning (something tolerated, e.g. bytes after a body): counted,
 * shown as problems are with "warning: " before it, and added to the stats
 * report. fl may be NULL. */
void an_warning(struct cap_an *an, const struct an_flow *fl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Topic name for an id learnt from responses, or a null view. */
struct kd_view an_topic_name(const struct cap_an *an, const uint8_t id[16]);
/* fnmatch of a topic against opts.topic_glob (1 when no filter): its name,
 * or for a topic known by id only (name null, id set) its
 * "topic-id:<uuid>" text. */
int an_topic_match(const struct cap_an *an, struct kd_view topic, const uint8_t *id);
const char *an_flow_client(const struct an_flow *fl);
const char *an_flow_broker(const struct an_flow *fl);
/* The client's address: family 4 or 6, and 16 bytes (IPv4 in the first 4). */
void an_flow_client_addr(const struct an_flow *fl, uint8_t *family, uint8_t addr[16]);

/* cap-out-rules.c: --rules. */
struct an_rules *an_rules_new(const char *path, char *err, size_t errlen);
void an_rules_free(struct an_rules **r);
struct kd_event;
void an_rules_request(struct cap_an *an, const struct an_flow *fl, const struct kd_event *ev,
                      struct an_rules_pend *rp);
/* The response to rp's request (body: its body, NULL when not at hand). */
void an_rules_response(struct cap_an *an, const struct an_flow *fl, struct an_rules_pend *rp,
                       uint64_t resp_bytes, int64_t ts_us, const uint8_t *body, size_t blen);
/* rp's request will have no response in the capture. */
void an_rules_unanswered(struct cap_an *an, const struct an_flow *fl, struct an_rules_pend *rp,
                         int64_t ts_us);
/* Frees what rp holds (any an_pend's, --rules or not). */
void an_rules_pend_free(struct an_rules_pend *rp);
void an_rules_report(struct cap_an *an);

/* The report of flows that carried payload but were not decoded, as lines
 * starting with "! " (TEXT) or "kwire: " (STDERR), the stats report's
 * section (STATS_TEXT) or its "undecoded_flows" value (STATS_JSON). TEXT
 * and STDERR write nothing when there are none; an may be NULL (the
 * HTML report's stats pass: reported as none). */
enum { AN_UNDEC_TEXT, AN_UNDEC_STDERR, AN_UNDEC_STATS_TEXT, AN_UNDEC_STATS_JSON };
void an_undec_report(struct cap_an *an, struct kd_wbuf *w, int how);

/* cap-out-records.c: the records format. */
void an_rec_produce(struct cap_an *an, const struct an_flow *fl, const struct kd_summary *sum,
                    const uint8_t *body, size_t len, int64_t ts_us);
void an_rec_fetch(struct cap_an *an, const struct an_flow *fl, const struct kd_summary *sum,
                  const uint8_t *body, size_t len, int64_t ts_us);
/* The outcome of producer pid's open transaction is known. */
void an_rec_txn_end(struct cap_an *an, int64_t pid, int aborted);
/* End of input: held records go out without "aborted". */
void an_rec_finish(struct cap_an *an);
void an_rec_free(struct cap_an *an);

/* cap-out-stats.c: the stats report. */
struct an_stats *an_stats_new(void);
void an_stats_pair(struct an_stats *st, const struct kd_summary *sum);
void an_stats_problem(struct an_stats *st, const char *msg);
void an_stats_warning(struct an_stats *st, const char *msg);
void an_stats_flow(struct an_stats *st, uint64_t gaps, uint64_t lost_bytes);
void an_stats_report(struct an_stats *st, struct kd_wbuf *w, int json,
                     const struct cap_stats *tstats, const struct cap_an_counts *counts,
                     struct cap_an *an);
void an_stats_free(struct an_stats **st);

/* cap-out-html.c: the HTML report, the stats plus a bounded time line. */
struct an_tl *an_tl_new(void);
void an_tl_pair(struct an_tl *tl, const struct kd_summary *sum);
void an_tl_gap(struct an_tl *tl, uint64_t nbytes, int64_t ts_us);
void an_tl_problem(struct an_tl *tl);
/* The page, appended to w; -1 when memory ran out. */
int an_html_report(struct an_tl *tl, struct an_stats *st, struct kd_wbuf *w, const char *title,
                   const struct cap_stats *tstats, const struct cap_an_counts *counts);
void an_tl_free(struct an_tl **tl);
#endif

#endif
