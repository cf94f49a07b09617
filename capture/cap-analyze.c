/* cap-analyze.c: which flows are Kafka, one kd_stream per Kafka flow,
 * requests paired with responses, filters, and the summary / json /
 * verbose outputs (cap-analyze.h). The records format is in
 * cap-out-records.c, the stats report in cap-out-stats.c. */
#define CAP_AN_PRIVATE
#include <arpa/inet.h>
#include <ctype.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cap-analyze.h"
#include "cap-int.h"
#include "cap.h"
#include "kd-hdr.h"
#include "kd-render.h"
#include "kd-sasl.h"
#include "kd-schema.h"
#include "kd-stream.h"
#include "kd-topics.h"
#include "kd-tree.h"
#include "kd.h"

/* Detection buffers at most this many bytes per direction before it
 * decides with what it has. */
#define DET_MAX (64u * 1024)
/* In-flight requests kept per flow (the stream's FIFO bound: the oldest
 * then goes out unanswered), and bytes of request bodies kept for the
 * json/verbose/records outputs (a request past it keeps no body). */
#define PEND_MAX 4096u
#define PEND_BYTES_MAX (256u << 20)
/* Problems printed before they are only counted. */
#define PROBLEMS_SHOWN_MAX 200
#define OUT_FLUSH (256u * 1024)

/* Flows parked (not Kafka by their first bytes, kept in case their broker
 * endpoint turns out to be Kafka), and the bytes their buffers may hold in
 * all, before the oldest is given up. */
#define PARK_MAX 256u
#define PARK_BYTES_MAX (32u << 20)
/* Broker endpoints remembered. */
#define EPS_MAX 4096u
/* Server endpoints named in the report of undecoded flows, and listed. */
#define UNDEC_EPS 256u
#define UNDEC_SHOWN 10u

enum { FL_DETECT = 0, FL_KAFKA, FL_IGNORE, FL_PARKED };

/* One chunk of the detection log: replayed in capture order once the flow
 * is known to be Kafka. */
struct det_chunk {
	uint8_t dir;
	uint32_t len;
	int64_t ts_us;
	uint64_t gap; /* a gap of this many bytes instead of data */
};

struct an_det {
	struct kd_wbuf buf[2]; /* bytes per direction, as received */
	struct det_chunk *log;
	size_t nlog, caplog;
};

/* A request waiting for its response: the user value of its entry in the
 * stream's in-flight FIFO (kd-stream.h), handed back with the response or
 * in a KD_EV_POPPED event. */
struct an_pend {
	int64_t ts_us;
	uint8_t *body; /* copy of the request body for json/verbose/records, or NULL */
	size_t blen;
	struct kd_summary sum;
	struct an_rules_pend rules; /* --rules */
};

struct an_flow {
	struct cap_an *an;
	struct cap_flow *flow;
	uint8_t state;
	uint8_t c2s;        /* cap direction (0/1) that carries requests */
	uint8_t port_known; /* a --port flow: Kafka, c2s known; detection only
	                     * decides whether it starts mid-connection */
	uint8_t midstream;  /* the stream must resync before its first frame */
	struct kd_stream *stream;
	struct an_det *det;
	unsigned npend;    /* requests in the stream's FIFO with an an_pend */
	size_t pend_bytes; /* their bodies */
	uint64_t gaps, lost;
	/* FL_PARKED: in cap_an's parked list; once a direction's detection
	 * buffer is full, every later byte is only counted (skipping) */
	struct an_flow *pnext, *pprev;
	uint8_t skipping;
	uint64_t skipped[2];
};

/* Endpoints known to be Kafka brokers: the broker side of every Kafka
 * flow, and the IP-literal hosts of Metadata, FindCoordinator and
 * DescribeCluster responses. Open addressing, SipHash under a random key. */
struct an_eps {
	struct an_ep {
		uint8_t addr[16];
		uint16_t port;
		uint8_t af; /* 0: free slot */
	} * ent;
	size_t cap, n;
	struct cap_hkey key;
};

/* Flows with payload that were not decoded, per server endpoint. */
struct an_undec {
	uint64_t flows, bytes;
	struct an_undec_ep {
		char ep[56];
		uint16_t port;
		uint64_t flows, bytes;
	} * ep;
	size_t n;
	uint64_t other_flows, other_bytes; /* past UNDEC_EPS endpoints */
};

/* ---- small helpers ---- */

const char *an_flow_client(const struct an_flow *fl)
{
	return fl->flow->ep[fl->c2s].str;
}

const char *an_flow_broker(const struct an_flow *fl)
{
	return fl->flow->ep[1 - fl->c2s].str;
}

void an_flow_client_addr(const struct an_flow *fl, uint8_t *family, uint8_t addr[16])
{
	*family = fl->flow->af;
	memcpy(addr, fl->flow->ep[fl->c2s].addr, 16);
}

void an_out_flush(struct cap_an *an)
{
	if (an->ob.len) {
		fwrite(an->ob.p, 1, an->ob.len, an->out);
		an->ob.len = 0;
	}
	fflush(an->out);
}

static void out_maybe_flush(struct cap_an *an)
{
	if (an->ob.len >= OUT_FLUSH) {
		fwrite(an->ob.p, 1, an->ob.len, an->out);
		an->ob.len = 0;
	}
}

/* Shows a problem or a warning: in the summary format as a "!" line among
 * the pairs, else on stderr; at most PROBLEMS_SHOWN_MAX of each kind. */
static void an_report(struct cap_an *an, const struct an_flow *fl, uint64_t *shown,
                      const char *kind, const char *what, const char *msg)
{
	if (an->opts.format == CAP_AN_STATS || an->opts.format == CAP_AN_HTML)
		return;
	if (*shown >= PROBLEMS_SHOWN_MAX) {
		if ((*shown)++ == PROBLEMS_SHOWN_MAX)
			fprintf(stderr, "kwire: more decode %s: only counted from now on\n", what);
		return;
	}
	(*shown)++;
	if (an->opts.format == CAP_AN_SUMMARY && !an->rules) {
		kd_w_fmt(&an->ob, "! %s%s%s%s%s%s\n", kind, fl ? an_flow_client(fl) : "",
		         fl ? " -> " : "", fl ? an_flow_broker(fl) : "", fl ? ": " : "", msg);
	} else {
		an_out_flush(an);
		fprintf(stderr, "kwire: %s%s%s%s%s%s\n", kind, fl ? an_flow_client(fl) : "",
		        fl ? " -> " : "", fl ? an_flow_broker(fl) : "", fl ? ": " : "", msg);
	}
}

void an_problem(struct cap_an *an, const struct an_flow *fl, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	an->counts.problems++;
	if (an->stats)
		an_stats_problem(an->stats, msg);
	if (an->tl)
		an_tl_problem(an->tl);
	an_report(an, fl, &an->problems_shown, "", "problems", msg);
}

void an_warning(struct cap_an *an, const struct an_flow *fl, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	an->counts.warnings++;
	if (an->stats)
		an_stats_warning(an->stats, msg);
	an_report(an, fl, &an->warnings_shown, "warning: ", "warnings", msg);
}

/* ---- topic ids learnt from responses (kd-topics.h) ---- */

struct kd_view an_topic_name(const struct cap_an *an, const uint8_t id[16])
{
	return kd_topics_get(an->topics, id);
}

/* Every response that pairs topic ids with names teaches the map
 * (Metadata v10+, CreateTopics v7+, DeleteTopics v6+, ...). Names are
 * resolved when a pair is printed, with what is known then: a Fetch seen
 * before the capture's first Metadata keeps its ids. */
static void learn_topics(struct cap_an *an, int16_t key, int16_t version, const uint8_t *body,
                         size_t len)
{
	if (!an->topics || !kd_topics_wants(key, version))
		return;
	struct kd_tree t;
	if (kd_tree_decode(&t, &an->arena, key, version, 0, body, len) == KD_OK)
		kd_topics_learn_tree(an->topics, &t);
	kd_arena_reset(&an->arena);
}

/* ---- broker endpoints ---- */

static uint64_t ep_hash(const struct an_eps *eps, uint8_t af, const uint8_t addr[16], uint16_t port)
{
	uint8_t b[19];
	memcpy(b, addr, 16);
	b[16] = (uint8_t)(port >> 8);
	b[17] = (uint8_t)port;
	b[18] = af;
	return cap_siphash(&eps->key, b, sizeof(b));
}

static int eps_has(const struct cap_an *an, uint8_t af, const uint8_t addr[16], uint16_t port)
{
	const struct an_eps *eps = an->eps;
	if (!eps || !eps->n)
		return 0;
	for (size_t i = ep_hash(eps, af, addr, port) & (eps->cap - 1);;
	     i = (i + 1) & (eps->cap - 1)) {
		const struct an_ep *e = &eps->ent[i];
		if (!e->af)
			return 0;
		if (e->af == af && e->port == port && !memcmp(e->addr, addr, 16))
			return 1;
	}
}

/* Remembers a broker endpoint; a new one may decide parked flows (done by
 * an_revive() once the current event is handled). */
static void eps_add(struct cap_an *an, uint8_t af, const uint8_t addr[16], uint16_t port)
{
	if (!port || eps_has(an, af, addr, port))
		return;
	if (!an->eps) {
		if (!(an->eps = calloc(1, sizeof(*an->eps))))
			return;
		cap_hkey_random(&an->eps->key);
	}
	struct an_eps *eps = an->eps;
	if ((eps->n + 1) * 2 > eps->cap) {
		if (eps->n >= EPS_MAX)
			return;
		size_t ncap = eps->cap ? eps->cap * 2 : 64;
		struct an_ep *ne = calloc(ncap, sizeof(*ne));
		if (!ne)
			return;
		for (size_t i = 0; i < eps->cap; i++) {
			const struct an_ep *e = &eps->ent[i];
			if (!e->af)
				continue;
			size_t j = ep_hash(eps, e->af, e->addr, e->port) & (ncap - 1);
			while (ne[j].af)
				j = (j + 1) & (ncap - 1);
			ne[j] = *e;
		}
		free(eps->ent);
		eps->ent = ne;
		eps->cap = ncap;
	}
	size_t i = ep_hash(eps, af, addr, port) & (eps->cap - 1);
	while (eps->ent[i].af)
		i = (i + 1) & (eps->cap - 1);
	memcpy(eps->ent[i].addr, addr, 16);
	eps->ent[i].port = port;
	eps->ent[i].af = af;
	eps->n++;
	if (an->parked)
		an->revive_pending = 1;
}

/* A broker's Host and Port from a response: only IP literals can be
 * matched against the capture's addresses (no name is resolved). */
static void learn_host(struct cap_an *an, const struct kd_node *host, const struct kd_node *port)
{
	char buf[64];
	uint8_t addr[16];
	if (!host || !port || host->null || !host->val.v.len || host->val.v.len >= sizeof(buf) ||
	    port->val.i <= 0 || port->val.i > 65535)
		return;
	size_t n = host->val.v.len;
	const uint8_t *p = host->val.v.p;
	if (n >= 2 && p[0] == '[' && p[n - 1] == ']') {
		p++;
		n -= 2;
	}
	memcpy(buf, p, n);
	buf[n] = 0;
	memset(addr, 0, sizeof(addr));
	if (inet_pton(AF_INET, buf, addr) == 1)
		eps_add(an, 4, addr, (uint16_t)port->val.i);
	else if (inet_pton(AF_INET6, buf, addr) == 1)
		eps_add(an, 6, addr, (uint16_t)port->val.i);
}

static void learn_host_list(struct cap_an *an, const struct kd_node *list)
{
	for (uint32_t i = 0; list && i < list->nkids; i++)
		learn_host(an, kd_node_child(&list->kids[i], "Host"),
		           kd_node_child(&list->kids[i], "Port"));
}

/* Metadata (Brokers), FindCoordinator (Host/Port, v4+ Coordinators) and
 * DescribeCluster (Brokers) responses name broker endpoints. */
static void learn_brokers(struct cap_an *an, int16_t api_key, int16_t version, const uint8_t *body,
                          size_t len)
{
	struct kd_tree t;
	if (kd_tree_decode(&t, &an->arena, api_key, version, 0, body, len) == KD_OK && t.root) {
		if (api_key == KD_API_FIND_COORDINATOR) {
			learn_host(an, kd_node_child(t.root, "Host"),
			           kd_node_child(t.root, "Port"));
			learn_host_list(an, kd_node_child(t.root, "Coordinators"));
		} else {
			learn_host_list(an, kd_node_child(t.root, "Brokers"));
		}
	}
	kd_arena_reset(&an->arena);
}

/* ---- filters ---- */

static int glob_view(const char *pat, struct kd_view v)
{
	char buf[512];
	size_t n = v.null ? 0 : v.len;
	if (n >= sizeof(buf))
		n = sizeof(buf) - 1;
	if (n)
		memcpy(buf, v.p, n);
	buf[n] = 0;
	if (memchr(buf, 0, n)) /* an embedded NUL would cut the name short */
		return 0;
	return fnmatch(pat, buf, 0) == 0;
}

int an_topic_match(const struct cap_an *an, struct kd_view topic, const uint8_t *id)
{
	if (!an->opts.topic_glob)
		return 1;
	if (topic.null && id) {
		char buf[KD_TOPIC_ID_TEXT];
		struct kd_view v = {(const uint8_t *)buf, (uint32_t)kd_topic_id_text(id, buf), 0};
		return glob_view(an->opts.topic_glob, v);
	}
	return !topic.null && glob_view(an->opts.topic_glob, topic);
}

static int api_wanted(const struct cap_an *an, int16_t key)
{
	if (!an->opts.api_filter)
		return 1;
	return key >= 0 && key < 1024 && (an->opts.api_set[key / 8] & (1u << (key % 8)));
}

/* Whether a finished pair passes every filter. */
static int pair_match(const struct cap_an *an, const struct kd_summary *sum)
{
	if (!api_wanted(an, sum->api_key))
		return 0;
	if (an->opts.client_id_glob &&
	    !glob_view(an->opts.client_id_glob, kd_sum_view(sum, sum->client_id)))
		return 0;
	if (an->opts.errors_only && !kd_sum_has_error(sum))
		return 0;
	if (an->opts.topic_glob) {
		for (unsigned i = 0; i < sum->ntp; i++)
			if (an_topic_match(an, kd_sum_view(sum, sum->tp[i].topic),
			                   sum->tp[i].has_topic_id ? sum->tp[i].topic_id : NULL))
				return 1;
		return 0;
	}
	return 1;
}

int cap_an_parse_apis(struct cap_an_opts *opts, const char *list, char *err, size_t errlen)
{
	const char *p = list;
	while (*p) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		while (n && isspace((unsigned char)*p)) {
			p++;
			n--;
		}
		while (n && isspace((unsigned char)p[n - 1]))
			n--;
		if (n) {
			int key = -1;
			if (isdigit((unsigned char)*p)) {
				char num[16];
				if (n < sizeof(num)) {
					memcpy(num, p, n);
					num[n] = 0;
					char *end;
					long v = strtol(num, &end, 10);
					if (!*end && v >= 0 && v < 1024)
						key = (int)v;
				}
			} else {
				for (unsigned i = 0; i < kd_napis; i++) {
					const char *nm = kd_apis[i].name;
					if (strlen(nm) == n && !strncasecmp(nm, p, n)) {
						key = kd_apis[i].key;
						break;
					}
				}
			}
			if (key < 0) {
				snprintf(err, errlen,
				         "unknown API '%.*s' (use Kafka's names, e.g. Produce, or "
				         "numbers)",
				         (int)n, p);
				return -1;
			}
			opts->api_set[key / 8] |= (uint8_t)(1u << (key % 8));
			opts->api_filter = 1;
		}
		if (!e)
			break;
		p = e + 1;
	}
	return 0;
}

/* ---- output of one message (json, verbose) ---- */

static void msg_head_json(struct cap_an *an, const struct an_flow *fl, int64_t ts, int is_req,
                          const struct kd_summary *sum, int64_t latency)
{
	struct kd_wbuf *w = &an->ob;
	char tsb[40];
	kd_sum_fmt_ts(ts, tsb, sizeof(tsb));
	kd_w_fmt(w, "{\"ts\":\"%s\",\"client\":", tsb);
	kd_json_cstr(w, an_flow_client(fl));
	kd_w_cstr(w, ",\"broker\":");
	kd_json_cstr(w, an_flow_broker(fl));
	kd_w_fmt(w, ",\"direction\":\"%s\"", is_req ? "request" : "response");
	if (sum->api_key >= 0) {
		const char *name = kd_api_name(sum->api_key);
		kd_w_fmt(w, ",\"api_key\":%d,\"api\":", sum->api_key);
		if (name)
			kd_json_cstr(w, name);
		else
			kd_w_cstr(w, "null");
		kd_w_fmt(w, ",\"version\":%d", sum->api_version);
	} else {
		kd_w_cstr(w, ",\"api_key\":null,\"api\":null,\"version\":null");
	}
	kd_w_fmt(w, ",\"correlation_id\":%d,\"client_id\":", sum->correlation_id);
	struct kd_view cid = kd_sum_view(sum, sum->client_id);
	kd_json_view(w, &cid);
	if (!is_req) {
		if (latency >= 0)
			kd_w_fmt(w, ",\"latency_us\":%lld", (long long)latency);
		else
			kd_w_cstr(w, ",\"latency_us\":null");
	}
}

/* The names of the topic ids a pair's bodies carry (Fetch v13+ and others
 * name topics by id only), as the bodies themselves cannot show them:
 * JSON ,"topic_names":{"<id>":"name" or null} or a text line
 * "  topic names: <id>=name, <id>=?". Nothing when no id is carried. */
static void topic_names_out(struct cap_an *an, const struct kd_summary *sum, int json)
{
	unsigned shown = 0;
	for (unsigned i = 0; i < sum->ntp; i++) {
		const struct kd_sum_tp *tp = &sum->tp[i];
		if (!tp->has_topic_id)
			continue;
		unsigned j = 0;
		while (j < i &&
		       !(sum->tp[j].has_topic_id && !memcmp(sum->tp[j].topic_id, tp->topic_id, 16)))
			j++;
		if (j < i)
			continue; /* the same id, another partition */
		struct kd_view name = kd_sum_view(sum, tp->topic);
		if (json) {
			kd_w_cstr(&an->ob, shown ? "," : ",\"topic_names\":{");
			kd_json_uuid(&an->ob, tp->topic_id);
			kd_w_cstr(&an->ob, ":");
			kd_json_view(&an->ob, &name);
		} else {
			kd_w_cstr(&an->ob, shown ? ", " : "  topic names: ");
			kd_base64(&an->ob, tp->topic_id, 16, 1);
			kd_w_cstr(&an->ob, "=");
			if (name.null)
				kd_w_cstr(&an->ob, "?");
			else
				kd_json_view(&an->ob, &name);
		}
		shown++;
	}
	if (shown)
		kd_w_cstr(&an->ob, json ? "}" : "\n");
}

static void msg_out(struct cap_an *an, const struct an_flow *fl, int64_t ts, int is_req,
                    const struct kd_summary *sum, const uint8_t *body, size_t len, int64_t latency)
{
	struct kd_tree t;
	int have_body = body != NULL;
	/* The body's decode problem or warning was reported (and counted)
	 * once, when the message was summarised: the same in every format. */
	if (have_body)
		kd_tree_decode(&t, &an->arena, sum->api_key, sum->api_version, is_req, body, len);
	if (an->opts.format == CAP_AN_JSON) {
		msg_head_json(an, fl, ts, is_req, sum, latency);
		kd_w_cstr(&an->ob, ",\"body\":");
		if (have_body)
			kd_render_json(&t, &an->ob, 0);
		else
			kd_w_cstr(&an->ob, "null");
		if (have_body && t.trailing)
			kd_w_fmt(&an->ob, ",\"warnings\":[\"%u trailing bytes after the body\"]",
			         t.trailing);
		topic_names_out(an, sum, 1);
		kd_w_cstr(&an->ob, "}\n");
	} else {
		char tsb[40];
		const char *name = sum->api_key >= 0 ? kd_api_name(sum->api_key) : NULL;
		kd_sum_fmt_ts(ts, tsb, sizeof(tsb));
		kd_w_fmt(&an->ob, "%s %s %s %s %s v%d %s #%d", tsb, an_flow_client(fl),
		         is_req ? "->" : "<-", an_flow_broker(fl), name ? name : "?",
		         sum->api_version, is_req ? "request" : "response", sum->correlation_id);
		struct kd_view cid = kd_sum_view(sum, sum->client_id);
		if (!cid.null) {
			kd_w_cstr(&an->ob, " client_id=");
			kd_json_view(&an->ob, &cid);
		}
		if (!is_req && latency >= 0)
			kd_w_fmt(&an->ob, " %lld.%03lldms", (long long)(latency / 1000),
			         (long long)(latency % 1000));
		kd_w_cstr(&an->ob, "\n");
		if (have_body)
			kd_render_text(&t, &an->ob, 0);
		else
			kd_w_cstr(&an->ob, "  (body not captured)\n");
		if (have_body && t.trailing)
			kd_w_fmt(&an->ob, "  warning: %u trailing bytes after the body\n",
			         t.trailing);
		topic_names_out(an, sum, 0);
		kd_w_cstr(&an->ob, "\n");
	}
	if (have_body)
		kd_arena_reset(&an->arena);
}

/* A SASL v0 token and its reply (json, verbose): the mechanism and the
 * user, never the token (docs/decoder.md "Secrets"). */
static void token_out(struct cap_an *an, const struct an_flow *fl, int64_t ts, int is_req,
                      const struct kd_summary *sum, uint32_t len, int64_t latency)
{
	const char *mech = kd_sasl_mech_name(sum->sasl_mech);
	struct kd_view user = kd_sum_view(sum, sum->sasl_user);

	if (an->opts.format == CAP_AN_JSON) {
		msg_head_json(an, fl, ts, is_req, sum, latency);
		kd_w_cstr(&an->ob, ",\"sasl_v0_token\":true,\"mechanism\":");
		if (mech)
			kd_json_cstr(&an->ob, mech);
		else
			kd_w_cstr(&an->ob, "null");
		if (is_req && !user.null) {
			kd_w_cstr(&an->ob, ",\"user\":");
			kd_json_view(&an->ob, &user);
		}
		kd_w_fmt(&an->ob, ",\"bytes\":%u,\"body\":\"[redacted]\"}\n", len);
		return;
	}
	char tsb[40];
	kd_sum_fmt_ts(ts, tsb, sizeof(tsb));
	kd_w_fmt(&an->ob, "%s %s %s %s SASL v0 token (%s) %s", tsb, an_flow_client(fl),
	         is_req ? "->" : "<-", an_flow_broker(fl), mech ? mech : "mechanism unknown",
	         is_req ? "request" : "response");
	if (!is_req && latency >= 0)
		kd_w_fmt(&an->ob, " %lld.%03lldms", (long long)(latency / 1000),
		         (long long)(latency % 1000));
	kd_w_fmt(&an->ob, "\n  token: [redacted] <%u bytes>", len);
	if (is_req && !user.null) {
		kd_w_cstr(&an->ob, " user=");
		kd_json_view(&an->ob, &user);
	}
	kd_w_cstr(&an->ob, "\n\n");
}

/* ---- pairs ---- */

static int format_keeps_body(const struct cap_an *an, int16_t api_key)
{
	switch (an->opts.format) {
	case CAP_AN_JSON:
	case CAP_AN_VERBOSE:
		return 1;
	case CAP_AN_RECORDS:
		return api_key == KD_API_PRODUCE;
	default:
		return 0;
	}
}

/* A pair is complete (or known to stay unanswered): filters, stats, output.
 * pend is the request (NULL for an unmatched response); resp_body NULL when
 * there is no response. sum is the merged summary. */
static void pair_emit(struct cap_an *an, struct an_flow *fl, struct an_pend *pend,
                      struct kd_summary *sum, const uint8_t *resp_body, size_t resp_len,
                      int64_t resp_ts)
{
	/* Endpoint strings are at most 55 bytes (cap_endpoint.str). */
	size_t cl = strnlen(an_flow_client(fl), sizeof(sum->client) - 1);
	size_t bl = strnlen(an_flow_broker(fl), sizeof(sum->broker) - 1);
	memcpy(sum->client, an_flow_client(fl), cl);
	sum->client[cl] = 0;
	memcpy(sum->broker, an_flow_broker(fl), bl);
	sum->broker[bl] = 0;
	/* Fetch v13+ names topics by id only. */
	kd_sum_resolve_topics(sum, an->topics);
	/* The EndTxn request decides held transactional records, filtered or not. */
	if (an->opts.format == CAP_AN_RECORDS && pend && sum->api_key == KD_API_END_TXN &&
	    sum->committed >= 0 && sum->producer_id >= 0 && (!resp_body || !sum->error))
		an_rec_txn_end(an, sum->producer_id, !sum->committed);
	if (!pair_match(an, sum))
		return;
	an->counts.pairs_printed++;
	if (an->stats)
		an_stats_pair(an->stats, sum);
	if (an->tl)
		an_tl_pair(an->tl, sum);
	/* With --rules, the rules report replaces the pairs. */
	switch (an->rules ? -1 : an->opts.format) {
	case CAP_AN_SUMMARY:
		kd_sum_text(sum, &an->ob);
		kd_w_cstr(&an->ob, "\n");
		break;
	case CAP_AN_JSON:
	case CAP_AN_VERBOSE:
		if (sum->flags & KD_SUM_SASL_TOKEN) {
			token_out(an, fl, pend ? pend->ts_us : sum->ts_us, 1, sum, sum->req_bytes,
			          -1);
			if (sum->flags & KD_SUM_RESP)
				token_out(an, fl, resp_ts, 0, sum, sum->resp_bytes,
				          sum->latency_us);
			break;
		}
		if (pend)
			msg_out(an, fl, pend->ts_us, 1, sum, pend->body, pend->blen, -1);
		if (resp_body)
			msg_out(an, fl, resp_ts, 0, sum, resp_body, resp_len, sum->latency_us);
		break;
	case CAP_AN_RECORDS:
		if (pend && pend->body && sum->api_key == KD_API_PRODUCE)
			an_rec_produce(an, fl, sum, pend->body, pend->blen, pend->ts_us);
		if (resp_body && sum->api_key == KD_API_FETCH)
			an_rec_fetch(an, fl, sum, resp_body, resp_len, resp_ts);
		break;
	default:
		break;
	}
	out_maybe_flush(an);
}

static void pend_free(struct an_pend *pend)
{
	an_rules_pend_free(&pend->rules);
	free(pend->body);
	free(pend);
}

static struct an_pend *pend_of(const struct kd_req_info *info)
{
	return (struct an_pend *)(uintptr_t)info->user;
}

/* The stream hands back a request's an_pend: it leaves the flow's count. */
static struct an_pend *pend_take(struct an_flow *fl, const struct kd_req_info *info)
{
	struct an_pend *pend = pend_of(info);
	if (pend) {
		fl->npend--;
		fl->pend_bytes -= pend->blen;
	}
	return pend;
}

/* Puts pend behind the request (or token) the stream just took in. */
static void pend_keep(struct an_flow *fl, struct an_pend *pend)
{
	if (kd_stream_set_user(fl->stream, (uintptr_t)pend) != 0) {
		pend_free(pend); /* cannot happen: a request awaiting an answer */
		return;
	}
	fl->npend++;
	fl->pend_bytes += pend->blen;
}

/* A request the stream popped without a response (a later one was
 * answered, the FIFO was full, or the flow ended): emitted unanswered. */
static void on_popped(struct cap_an *an, struct an_flow *fl, const struct kd_event *ev)
{
	struct an_pend *pend = pend_take(fl, &ev->req);
	if (!pend)
		return;
	if (an->rules)
		an_rules_unanswered(an, fl, &pend->rules, pend->ts_us);
	pair_emit(an, fl, pend, &pend->sum, NULL, 0, 0);
	pend_free(pend);
}

static void on_request(struct cap_an *an, struct an_flow *fl, const struct kd_event *ev)
{
	an->counts.requests++;
	struct an_pend *pend = malloc(sizeof(*pend));
	if (!pend) {
		an_problem(an, fl, "out of memory");
		return;
	}
	pend->ts_us = (int64_t)ev->ts_us;
	pend->body = NULL;
	pend->blen = 0;
	pend->rules.mplan = NULL;
	pend->rules.nmplan = 0;
	kd_sum_init(&pend->sum);
	pend->sum.arena = &an->arena; /* empty between messages; the summary resets it */
	pend->sum.ts_us = (int64_t)ev->ts_us;
	const struct kd_req_hdr *h = &ev->req_hdr;
	int has_body = (ev->flags & KD_EVF_BODY) && !(ev->flags & KD_EVF_GAP);
	if (an->rules)
		an_rules_request(an, fl, ev, &pend->rules);
	if (has_body) {
		int rc = kd_sum_request(&pend->sum, h->api_key, h->api_version, h->correlation_id,
		                        h->client_id, ev->body.p, ev->body.len);
		if (rc != KD_OK && rc != KD_EUNSUPPORTED)
			an_problem(an, fl, "%s v%d request #%d: body: %s",
			           kd_api_name(h->api_key) ? kd_api_name(h->api_key) : "?",
			           h->api_version, h->correlation_id, kd_strerror(rc));
		if (pend->sum.flags & KD_SUM_REQ_WARN)
			an_warning(an, fl, "%s v%d request #%d: body: %u trailing bytes (ignored)",
			           kd_api_name(h->api_key) ? kd_api_name(h->api_key) : "?",
			           h->api_version, h->correlation_id, pend->sum.req_trailing);
		if (format_keeps_body(an, h->api_key) &&
		    fl->pend_bytes + ev->body.len <= PEND_BYTES_MAX) {
			pend->body = malloc(ev->body.len ? ev->body.len : 1);
			if (pend->body) {
				memcpy(pend->body, ev->body.p, ev->body.len);
				pend->blen = ev->body.len;
			}
		}
	} else {
		kd_sum_request(&pend->sum, h->api_key, h->api_version, h->correlation_id,
		               h->client_id, NULL, 0);
		pend->sum.flags &= ~(unsigned)KD_SUM_REQ_BAD;
		if (ev->flags & KD_EVF_GAP)
			an_problem(an, fl, "request #%d lost bytes to a capture gap",
			           h->correlation_id);
	}
	if (ev->flags & KD_EVF_NO_RESPONSE) {
		pend->sum.flags |= KD_SUM_NO_RESP;
		pair_emit(an, fl, pend, &pend->sum, NULL, 0, 0);
		pend_free(pend);
		return;
	}
	pend_keep(fl, pend);
}

static void on_response(struct cap_an *an, struct an_flow *fl, const struct kd_event *ev)
{
	an->counts.responses++;
	int has_body = (ev->flags & KD_EVF_BODY) && !(ev->flags & KD_EVF_GAP);
	const uint8_t *body = has_body ? ev->body.p : NULL;
	size_t blen = has_body ? ev->body.len : 0;
	struct an_pend *pend = NULL;
	struct kd_summary *sum;
	struct kd_summary *own = NULL;

	/* Older requests the stream popped unanswered went out first
	 * (on_popped). */
	if (!(ev->flags & KD_EVF_UNPAIRED))
		pend = pend_take(fl, &ev->req);
	if (pend) {
		sum = &pend->sum;
	} else {
		own = malloc(sizeof(*own));
		if (!own) {
			an_problem(an, fl, "out of memory");
			return;
		}
		kd_sum_init(own);
		own->arena = &an->arena;
		sum = own;
		if (!(ev->flags & KD_EVF_UNPAIRED)) {
			/* The stream knew the request; we could not keep it (memory). */
			sum->flags |= KD_SUM_REQ;
			sum->api_key = ev->req.api_key;
			sum->api_version = ev->req.api_version;
			sum->ts_us = (int64_t)ev->req.ts_us;
		} else {
			sum->ts_us = (int64_t)ev->ts_us;
		}
		sum->correlation_id = ev->resp_hdr.correlation_id;
	}
	if (body) {
		int rc = kd_sum_response(sum, body, blen);
		if (rc != KD_OK && rc != KD_EUNSUPPORTED)
			an_problem(an, fl, "%s v%d response #%d: body: %s",
			           kd_api_name(sum->api_key) ? kd_api_name(sum->api_key) : "?",
			           sum->api_version, sum->correlation_id, kd_strerror(rc));
		if (sum->flags & KD_SUM_RESP_WARN)
			an_warning(an, fl, "%s v%d response #%d: body: %u trailing bytes (ignored)",
			           kd_api_name(sum->api_key) ? kd_api_name(sum->api_key) : "?",
			           sum->api_version, sum->correlation_id, sum->resp_trailing);
		if (rc == KD_OK)
			learn_topics(an, sum->api_key, sum->api_version, body, blen);
		if ((sum->api_key == KD_API_METADATA || sum->api_key == KD_API_FIND_COORDINATOR ||
		     sum->api_key == KD_API_DESCRIBE_CLUSTER) &&
		    rc == KD_OK && !an->opts.no_detect)
			learn_brokers(an, sum->api_key, sum->api_version, body, blen);
	} else {
		sum->flags |= KD_SUM_RESP;
		if (ev->flags & KD_EVF_GAP)
			an_problem(an, fl, "response #%d lost bytes to a capture gap",
			           ev->resp_hdr.correlation_id);
	}
	if (sum->flags & KD_SUM_REQ)
		sum->latency_us = ev->latency_us;
	if (an->rules && pend)
		an_rules_response(an, fl, &pend->rules, (uint64_t)ev->frame_len + 4,
		                  (int64_t)ev->ts_us, body, blen);
	if (ev->flags & KD_EVF_UNPAIRED)
		an_problem(an, fl, "response #%d answers no request seen in the capture",
		           ev->resp_hdr.correlation_id);
	pair_emit(an, fl, pend, sum, body, blen, (int64_t)ev->ts_us);
	if (pend)
		pend_free(pend);
	free(own);
}

/* A SASL v0 token (KD_EV_OPAQUE): the client's waits in the pending list
 * as a pair summarised by kd_sum_sasl_token (mechanism and user, never
 * the token), the server's reply completes it. */
static void on_opaque(struct cap_an *an, struct an_flow *fl, const struct kd_event *ev)
{
	int has_body = (ev->flags & KD_EVF_BODY) && !(ev->flags & KD_EVF_GAP);
	struct an_pend *pend;

	if (ev->dir == KD_S2C) {
		pend = (ev->flags & KD_EVF_UNPAIRED) ? NULL : pend_take(fl, &ev->req);
		if (!pend)
			return; /* a reply to a token not kept (memory) */
		pend->sum.flags |= KD_SUM_RESP;
		pend->sum.resp_bytes = ev->frame_len;
		pend->sum.latency_us = ev->latency_us;
		pair_emit(an, fl, pend, &pend->sum, NULL, 0, (int64_t)ev->ts_us);
		pend_free(pend);
		return;
	}
	pend = malloc(sizeof(*pend));
	if (!pend) {
		an_problem(an, fl, "out of memory");
		return;
	}
	pend->ts_us = (int64_t)ev->ts_us;
	pend->rules.mplan = NULL;
	pend->rules.nmplan = 0;
	pend->body = NULL;
	pend->blen = 0;
	pend->rules.mplan = NULL;
	pend->rules.nmplan = 0;
	kd_sum_init(&pend->sum);
	pend->sum.ts_us = (int64_t)ev->ts_us;
	pend->sum.correlation_id = -1;
	kd_sum_sasl_token(&pend->sum, ev->sasl_mech, has_body ? ev->body.p : NULL,
	                  has_body ? ev->body.len : 0);
	pend->sum.req_bytes = ev->frame_len;
	if (ev->flags & KD_EVF_NO_RESPONSE) {
		pend->sum.flags |= KD_SUM_NO_RESP; /* the exchange's last token */
		pair_emit(an, fl, pend, &pend->sum, NULL, 0, 0);
		pend_free(pend);
		return;
	}
	pend_keep(fl, pend);
}

static void on_event(void *arg, const struct kd_event *ev)
{
	struct an_flow *fl = arg;
	struct cap_an *an = fl->an;
	switch (ev->type) {
	case KD_EV_REQUEST:
		on_request(an, fl, ev);
		break;
	case KD_EV_RESPONSE:
		on_response(an, fl, ev);
		break;
	case KD_EV_OPAQUE:
		on_opaque(an, fl, ev);
		break;
	case KD_EV_POPPED:
		on_popped(an, fl, ev);
		break;
	case KD_EV_ERROR:
		an_problem(an, fl, "%s stream broken at byte %llu: %s",
		           ev->dir == KD_C2S ? "request" : "response",
		           (unsigned long long)ev->offset,
		           ev->msg ? ev->msg : kd_strerror(ev->err));
		break;
	case KD_EV_SKIP:
		an_problem(an, fl, "%s stream: skipped %llu bytes to resync (%llu lost in gaps)",
		           ev->dir == KD_C2S ? "request" : "response",
		           (unsigned long long)ev->skipped, (unsigned long long)ev->lost);
		break;
	default:
		break;
	}
}

/* ---- detection ---- */

static void an_mem_update(struct an_flow *fl);

static int port_listed(const struct cap_an *an, uint16_t port)
{
	for (unsigned i = 0; i < an->opts.nports; i++)
		if (an->opts.ports[i] == port)
			return 1;
	return 0;
}

static int an_start_stream(struct cap_an *an, struct an_flow *fl)
{
	struct kd_stream_cfg cfg = {0};
	cfg.collect_bodies = 1;
	cfg.max_inflight = PEND_MAX;
	cfg.midstream = fl->midstream;
	cfg.on_event = on_event;
	cfg.arg = fl;
	fl->stream = kd_stream_new(&cfg);
	if (!fl->stream) {
		an_problem(an, fl, "out of memory");
		return -1;
	}
	fl->state = FL_KAFKA;
	an->counts.kafka_flows++;
	const struct cap_endpoint *b = &fl->flow->ep[1 - fl->c2s];
	if (!an->opts.no_detect)
		eps_add(an, fl->flow->af, b->addr, b->port);
	return 0;
}

static void feed(struct an_flow *fl, int capdir, const uint8_t *p, size_t len, int64_t ts)
{
	enum kd_dir d = capdir == fl->c2s ? KD_C2S : KD_S2C;
	int rc = kd_stream_feed(fl->stream, d, p, len, ts < 0 ? 0 : (uint64_t)ts);
	if (rc == KD_ENOMEM)
		an_problem(fl->an, fl, "out of memory in the stream decoder");
}

static void det_free(struct an_det **pdet)
{
	struct an_det *det = *pdet;
	if (!det)
		return;
	kd_wbuf_free(&det->buf[0]);
	kd_wbuf_free(&det->buf[1]);
	free(det->log);
	free(det);
	*pdet = NULL;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Is there a plausible request frame at the start of b? 1 yes (and *whole
 * says whether the whole frame is buffered), 0 no, KD_NEED_MORE. */
static int det_req_at(const struct kd_wbuf *b, size_t off, int *whole)
{
	int r = kd_req_plausible(b->p + off, b->len - off, KD_STREAM_MAX_FRAME_DEFAULT);
	if (r == 1)
		*whole = b->len - off >= 4 + (size_t)be32(b->p + off);
	return r;
}

/* Bytes per direction scanned for a frame start in a flow seen without its
 * handshake, before deciding it is not Kafka. */
#define DET_SCAN (16u * 1024)

/* A capture that starts mid-connection: is there, somewhere in the first
 * bytes of b, a plausible request followed by another one right after it
 * (two frames in a row are the proof a single lucky match is not)? */
static int det_chain(const struct kd_wbuf *b)
{
	size_t lim = b->len < DET_SCAN ? b->len : DET_SCAN;
	for (size_t o = 0; o + 12 <= lim; o++) {
		int whole = 0;
		if (det_req_at(b, o, &whole) != 1 || !whole)
			continue;
		size_t next = o + 4 + (size_t)be32(b->p + o);
		if (next + 12 <= b->len && det_req_at(b, next, &whole) == 1)
			return 1;
	}
	return 0;
}

/* Decides a flow in detection. final: no more bytes will come (buffer
 * full, gap or end). Returns FL_KAFKA (c2s set), FL_IGNORE or FL_DETECT. */
static int det_decide(struct an_flow *fl, int final)
{
	struct an_det *det = fl->det;
	int r[2], whole[2] = {0, 0};
	for (int d = 0; d < 2; d++)
		r[d] = det->buf[d].len ? det_req_at(&det->buf[d], 0, &whole[d]) : KD_NEED_MORE;
	fl->midstream = 0;
	if (fl->port_known) {
		/* A frame start at the first byte: decode from there; anything
		 * else means the capture began mid-connection. */
		int rc = r[fl->c2s];
		if (rc == KD_NEED_MORE && !final)
			return FL_DETECT;
		fl->midstream = rc == 0 || (rc == KD_NEED_MORE && det->buf[fl->c2s].len > 0);
		return FL_KAFKA;
	}
	for (int d = 0; d < 2; d++) {
		if (r[d] != 1)
			continue;
		const struct kd_wbuf *o = &det->buf[1 - d];
		if (o->len >= 8) {
			/* A response answers the first request: its correlation id. */
			if (be32(o->p + 4) == be32(det->buf[d].p + 8)) {
				fl->c2s = (uint8_t)d;
				return FL_KAFKA;
			}
			if (r[1 - d] != 1)
				return FL_IGNORE;
			continue;
		}
		if (final) {
			/* A plausible request header and nothing against it: a
			 * first frame larger than the detection buffer (a 1 MB
			 * Produce) is Kafka as much as a small one. */
			fl->c2s = (uint8_t)d;
			return FL_KAFKA;
		}
	}
	if (!fl->flow->handshake && !(r[0] == 1 || r[1] == 1)) {
		/* No handshake and no frame at the start: maybe mid-connection. */
		for (int d = 0; d < 2; d++) {
			if (det_chain(&det->buf[d])) {
				fl->c2s = (uint8_t)d;
				fl->midstream = 1;
				return FL_KAFKA;
			}
		}
		if (final || (det->buf[0].len >= DET_SCAN && det->buf[1].len >= DET_SCAN))
			return FL_IGNORE;
		return FL_DETECT;
	}
	if (r[0] == 0 && r[1] == 0)
		return FL_IGNORE;
	if (final)
		return FL_IGNORE;
	if (r[0] == 0 && det->buf[1].len == 0 && det->buf[0].len >= 64)
		return FL_IGNORE; /* the first speaker is not a Kafka client */
	if (r[1] == 0 && det->buf[0].len == 0 && det->buf[1].len >= 64)
		return FL_IGNORE;
	return FL_DETECT;
}

static void det_replay(struct cap_an *an, struct an_flow *fl)
{
	struct an_det *det = fl->det;
	size_t pos[2] = {0, 0};
	fl->det = NULL;
	for (size_t i = 0; i < det->nlog; i++) {
		struct det_chunk *c = &det->log[i];
		if (c->gap) {
			kd_stream_gap(fl->stream, c->dir == fl->c2s ? KD_C2S : KD_S2C, c->gap);
			continue;
		}
		feed(fl, c->dir, det->buf[c->dir].p + pos[c->dir], c->len, c->ts_us);
		pos[c->dir] += c->len;
	}
	(void)an;
	det_free(&det);
}

/* The side of fl that is a known broker endpoint, as a c2s value (0: ep[1]
 * is the broker), or -1. */
static int known_broker_side(const struct cap_an *an, const struct an_flow *fl)
{
	const struct cap_flow *flow = fl->flow;
	if (eps_has(an, flow->af, flow->ep[1].addr, flow->ep[1].port))
		return 0;
	if (eps_has(an, flow->af, flow->ep[0].addr, flow->ep[0].port))
		return 1;
	return -1;
}

static size_t det_bytes(const struct an_det *det)
{
	return det ? det->buf[0].len + det->buf[1].len : 0;
}

static void park_remove(struct cap_an *an, struct an_flow *fl)
{
	if (fl->pprev)
		fl->pprev->pnext = fl->pnext;
	else
		an->parked = fl->pnext;
	if (fl->pnext)
		fl->pnext->pprev = fl->pprev;
	else
		an->parked_tail = fl->pprev;
	fl->pnext = fl->pprev = NULL;
	an->nparked--;
	an->parked_bytes -= det_bytes(fl->det);
}

static void an_ignore(struct an_flow *fl)
{
	fl->state = FL_IGNORE;
	fl->flow->ignore = 1;
	det_free(&fl->det);
}

/* Gives up the oldest parked flows while over the limits. */
static void park_trim(struct cap_an *an)
{
	while (an->parked && (an->nparked > PARK_MAX || an->parked_bytes > PARK_BYTES_MAX)) {
		struct an_flow *old = an->parked;
		park_remove(an, old);
		an_ignore(old);
	}
}

/* Parks a flow detection rejected: its first bytes are kept (up to
 * DET_MAX per direction) in case another flow or a Metadata response
 * shows its endpoint to be a Kafka broker. */
static void park(struct cap_an *an, struct an_flow *fl)
{
	fl->state = FL_PARKED;
	fl->pprev = an->parked_tail;
	fl->pnext = NULL;
	if (an->parked_tail)
		an->parked_tail->pnext = fl;
	else
		an->parked = fl;
	an->parked_tail = fl;
	an->nparked++;
	an->parked_bytes += det_bytes(fl->det);
	park_trim(an);
}

static void det_start(struct cap_an *an, struct an_flow *fl)
{
	if (an_start_stream(an, fl) < 0) {
		an_ignore(fl);
		return;
	}
	det_replay(an, fl);
}

static void det_conclude(struct cap_an *an, struct an_flow *fl, int final)
{
	int st = det_decide(fl, final);
	if (st == FL_DETECT)
		return;
	if (st == FL_IGNORE && !fl->port_known) {
		/* not Kafka by its bytes, but its endpoint is a known broker:
		 * decoded as a --port flow would be */
		int side = known_broker_side(an, fl);
		if (side >= 0) {
			fl->port_known = 1;
			fl->c2s = (uint8_t)side;
			st = det_decide(fl, final);
			if (st == FL_DETECT)
				return;
		}
	}
	if (st == FL_IGNORE) {
		park(an, fl); /* flow_end() gives it up if the flow is ending */
		return;
	}
	det_start(an, fl);
}

/* Parked flows whose endpoint is now a known broker are decoded from their
 * kept first bytes; what was not kept becomes a gap. Called once the event
 * that taught a new endpoint is handled (never from inside a stream
 * callback: the arena and summaries of that event are in use). */
static void an_revive(struct cap_an *an)
{
	while (an->revive_pending) {
		an->revive_pending = 0;
		for (struct an_flow *fl = an->parked, *next; fl; fl = next) {
			next = fl->pnext;
			int side = known_broker_side(an, fl);
			if (side < 0)
				continue;
			park_remove(an, fl);
			fl->port_known = 1;
			fl->c2s = (uint8_t)side;
			uint64_t skipped[2] = {fl->skipped[0], fl->skipped[1]};
			det_decide(fl, 1); /* port_known and final: FL_KAFKA */
			det_start(an, fl);
			if (fl->state != FL_KAFKA)
				continue;
			if (skipped[0] || skipped[1])
				an_problem(an, fl,
				           "recognised as Kafka only once its broker endpoint was "
				           "seen to be one: %llu bytes after its first %u KiB per "
				           "direction were not kept",
				           (unsigned long long)(skipped[0] + skipped[1]),
				           DET_MAX / 1024);
			for (int d = 0; d < 2; d++)
				if (skipped[d])
					kd_stream_gap(fl->stream, d == fl->c2s ? KD_C2S : KD_S2C,
					              skipped[d]);
			an_mem_update(fl);
			/* the replay may have taught more endpoints: the loop
			 * goes round again; next may have been revived too */
			if (an->revive_pending)
				break;
		}
	}
}

/* ---- flows that carried payload but were not decoded ---- */

static void undec_add(struct cap_an *an, const struct cap_flow *flow)
{
	uint64_t bytes = flow->bytes[0] + flow->bytes[1];
	if (!bytes)
		return;
	struct an_undec *u = an->undec;
	if (!u && !(u = an->undec = calloc(1, sizeof(*u))))
		return;
	u->flows++;
	u->bytes += bytes;
	const struct cap_endpoint *srv = &flow->ep[1];
	for (size_t i = 0; i < u->n; i++) {
		if (!strcmp(u->ep[i].ep, srv->str)) {
			u->ep[i].flows++;
			u->ep[i].bytes += bytes;
			return;
		}
	}
	if (u->n < UNDEC_EPS) {
		if (!u->ep && !(u->ep = calloc(UNDEC_EPS, sizeof(*u->ep))))
			goto other;
		struct an_undec_ep *e = &u->ep[u->n++];
		snprintf(e->ep, sizeof(e->ep), "%s", srv->str);
		e->port = srv->port;
		e->flows = 1;
		e->bytes = bytes;
		return;
	}
other:
	u->other_flows++;
	u->other_bytes += bytes;
}

static int undec_cmp(const void *a, const void *b)
{
	const struct an_undec_ep *x = a, *y = b;
	return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : strcmp(x->ep, y->ep);
}

void an_undec_report(struct cap_an *an, struct kd_wbuf *w, int how)
{
	static const char hint[] = "if some of them are Kafka, name their broker ports with --port";
	struct an_undec *u = an ? an->undec : NULL; /* NULL an: none known here */
	uint64_t flows = u ? u->flows : 0, bytes = u ? u->bytes : 0;
	if (!flows && (how == AN_UNDEC_TEXT || how == AN_UNDEC_STDERR))
		return;
	size_t n = u ? u->n : 0;
	if (n)
		qsort(u->ep, n, sizeof(*u->ep), undec_cmp);
	size_t shown = n < UNDEC_SHOWN ? n : UNDEC_SHOWN;
	uint64_t rest_flows = u ? u->other_flows : 0, rest_bytes = u ? u->other_bytes : 0;
	for (size_t i = shown; i < n; i++) {
		rest_flows += u->ep[i].flows;
		rest_bytes += u->ep[i].bytes;
	}
	if (how == AN_UNDEC_STATS_JSON) {
		kd_w_fmt(w, "{\"flows\":%llu,\"bytes\":%llu,\"servers\":[",
		         (unsigned long long)flows, (unsigned long long)bytes);
		for (size_t i = 0; i < shown; i++) {
			kd_w_cstr(w, i ? ",{\"server\":" : "{\"server\":");
			kd_json_cstr(w, u->ep[i].ep);
			kd_w_fmt(w, ",\"port\":%u,\"flows\":%llu,\"bytes\":%llu}", u->ep[i].port,
			         (unsigned long long)u->ep[i].flows,
			         (unsigned long long)u->ep[i].bytes);
		}
		kd_w_fmt(w, "],\"other_servers\":{\"flows\":%llu,\"bytes\":%llu},\"hint\":",
		         (unsigned long long)rest_flows, (unsigned long long)rest_bytes);
		kd_json_cstr(w, flows ? hint : "");
		kd_w_cstr(w, "}");
		return;
	}
	const char *pfx = how == AN_UNDEC_STATS_TEXT ? ""
	                  : how == AN_UNDEC_STDERR   ? "kwire: "
	                                             : "! ";
	if (how == AN_UNDEC_STATS_TEXT)
		kd_w_cstr(w, "\n-- TCP flows with payload not decoded as Kafka\n");
	kd_w_fmt(w,
	         "%snot decoded: %llu TCP flow%s with payload (%llu bytes) not recognised as "
	         "Kafka%s%s\n",
	         pfx, (unsigned long long)flows, flows == 1 ? "" : "s", (unsigned long long)bytes,
	         flows ? "; " : "", flows ? hint : "");
	for (size_t i = 0; i < shown; i++)
		kd_w_fmt(w, "%s  %s: %llu flow%s, %llu bytes (--port %u)\n", pfx, u->ep[i].ep,
		         (unsigned long long)u->ep[i].flows, u->ep[i].flows == 1 ? "" : "s",
		         (unsigned long long)u->ep[i].bytes, u->ep[i].port);
	if (rest_flows)
		kd_w_fmt(w, "%s  other servers: %llu flows, %llu bytes\n", pfx,
		         (unsigned long long)rest_flows, (unsigned long long)rest_bytes);
}

static int det_log(struct an_det *det, int dir, uint32_t len, int64_t ts, uint64_t gap)
{
	if (det->nlog == det->caplog) {
		size_t ncap = det->caplog ? det->caplog * 2 : 16;
		struct det_chunk *nl = realloc(det->log, ncap * sizeof(*nl));
		if (!nl)
			return -1;
		det->log = nl;
		det->caplog = ncap;
	}
	struct det_chunk *c = &det->log[det->nlog++];
	c->dir = (uint8_t)dir;
	c->len = len;
	c->ts_us = ts;
	c->gap = gap;
	return 0;
}

/* What the decoder's state of one flow (struct kd_stream, its in-flight
 * FIFO) costs, roughly: counted in the flow memory budget. A frame being
 * reassembled by the stream decoder is not counted. */
#define AN_STREAM_MEM 1024u

/* Tells the reassembler what this flow's state holds now (cap_flow.user_mem,
 * counted against --flow-memory). */
static void an_mem_update(struct an_flow *fl)
{
	size_t m = sizeof(*fl) + 16 + fl->pend_bytes + fl->npend * (sizeof(struct an_pend) + 16);
	if (fl->det)
		m += sizeof(*fl->det) + fl->det->buf[0].cap + fl->det->buf[1].cap +
		     fl->det->caplog * sizeof(struct det_chunk);
	if (fl->stream)
		m += AN_STREAM_MEM;
	fl->flow->user_mem = m;
}

/* ---- reassembler callbacks ---- */

static void cb_open(void *ctx, struct cap_flow *flow)
{
	struct cap_an *an = ctx;
	int p0 = port_listed(an, flow->ep[0].port), p1 = port_listed(an, flow->ep[1].port);
	if (!p0 && !p1 && !an->opts.no_detect) {
		/* an endpoint another flow or a response showed to be a broker */
		p1 = eps_has(an, flow->af, flow->ep[1].addr, flow->ep[1].port);
		p0 = !p1 && eps_has(an, flow->af, flow->ep[0].addr, flow->ep[0].port);
	}
	if (!p0 && !p1 && an->opts.no_detect) {
		flow->ignore = 1;
		return;
	}
	struct an_flow *fl = calloc(1, sizeof(*fl));
	if (!fl) {
		flow->ignore = 1;
		return;
	}
	fl->an = an;
	fl->flow = flow;
	flow->user = fl;
	if (p1 || p0) {
		/* The listed port is the broker's; with both listed, the side
		 * that opened the connection is the client. */
		fl->c2s = (p1 && (!p0 || flow->client_how == CAP_CLIENT_SYN)) ? 0 : 1;
		if (flow->handshake) {
			if (an_start_stream(an, fl) < 0) {
				fl->state = FL_IGNORE;
				flow->ignore = 1;
			}
			an_mem_update(fl);
			return;
		}
		fl->port_known = 1;
	}
	fl->det = calloc(1, sizeof(*fl->det));
	if (!fl->det) {
		fl->state = FL_IGNORE;
		flow->ignore = 1;
	}
	an_mem_update(fl);
}

static void cb_data(void *ctx, struct cap_flow *flow, int dir, const uint8_t *p, size_t len,
                    int64_t ts_us)
{
	struct cap_an *an = ctx;
	struct an_flow *fl = flow->user;
	if (!fl || fl->state == FL_IGNORE)
		return;
	if (fl->state == FL_KAFKA) {
		feed(fl, dir, p, len, ts_us);
		an_mem_update(fl);
		if (an->revive_pending)
			an_revive(an);
		return;
	}
	struct an_det *det = fl->det;
	size_t take = len;
	int full = 0;
	if (fl->skipping) {
		fl->skipped[dir] += len;
		return;
	}
	if (det->buf[dir].len + take > DET_MAX) {
		full = 1;
		take = DET_MAX - det->buf[dir].len;
	}
	kd_w_raw(&det->buf[dir], p, take);
	if (det->buf[dir].err || det_log(det, dir, (uint32_t)take, ts_us, 0) < 0) {
		if (fl->state == FL_PARKED)
			park_remove(an, fl);
		an_ignore(fl);
		an_mem_update(fl);
		return;
	}
	if (fl->state == FL_PARKED) {
		/* kept for later evidence: the first DET_MAX bytes per
		 * direction, then both directions are only counted */
		an->parked_bytes += take;
		if (full) {
			fl->skipping = 1;
			fl->skipped[dir] += len - take;
		}
		park_trim(an);
		an_mem_update(fl);
		return;
	}
	det_conclude(an, fl, full);
	if (fl->state == FL_KAFKA && take < len)
		feed(fl, dir, p + take, len - take, ts_us);
	else if (fl->state == FL_PARKED && take < len) {
		fl->skipping = 1;
		fl->skipped[dir] += len - take;
	}
	if (fl->state != FL_IGNORE)
		an_mem_update(fl);
	if (an->revive_pending)
		an_revive(an);
}

static void cb_gap(void *ctx, struct cap_flow *flow, int dir, uint64_t nbytes, int64_t ts_us)
{
	struct cap_an *an = ctx;
	struct an_flow *fl = flow->user;
	if (!fl || fl->state == FL_IGNORE)
		return;
	fl->gaps++;
	fl->lost += nbytes;
	an->counts.gaps++;
	if (fl->state == FL_PARKED && !fl->skipping) {
		/* a gap in the kept bytes: replayed as one */
		if (det_log(fl->det, dir, 0, ts_us, nbytes) < 0) {
			park_remove(an, fl);
			an_ignore(fl);
		}
		return;
	}
	if (fl->state == FL_PARKED) {
		fl->skipped[dir] += nbytes;
		return;
	}
	if (fl->state == FL_DETECT) {
		det_conclude(an, fl, 1);
		if (fl->state != FL_KAFKA) {
			if (an->revive_pending)
				an_revive(an);
			return;
		}
	}
	kd_stream_gap(fl->stream, dir == fl->c2s ? KD_C2S : KD_S2C, nbytes);
	if (an->tl)
		an_tl_gap(an->tl, nbytes, ts_us);
	an_mem_update(fl);
	if (an->revive_pending)
		an_revive(an);
}

static void flow_end(struct cap_an *an, struct an_flow *fl)
{
	if (fl->state == FL_DETECT)
		det_conclude(an, fl, 1);
	if (fl->state == FL_PARKED)
		park_remove(an, fl); /* not decoded */
	if (fl->stream)
		kd_stream_drain(fl->stream); /* what is pending goes out unanswered */
	if (fl->stream) {
		const struct kd_stream_stats *ss = kd_stream_stats(fl->stream);
		if (an->stats)
			an_stats_flow(an->stats, fl->gaps, fl->lost);
		(void)ss;
		kd_stream_free(fl->stream);
		fl->stream = NULL;
	}
	det_free(&fl->det);
}

static void cb_close(void *ctx, struct cap_flow *flow, enum cap_close_reason reason)
{
	struct cap_an *an = ctx;
	struct an_flow *fl = flow->user;
	(void)reason;
	if (!fl) {
		undec_add(an, flow); /* --no-detect, or out of memory */
		return;
	}
	flow_end(an, fl);
	if (fl->state != FL_KAFKA)
		undec_add(an, flow);
	free(fl);
	flow->user = NULL;
	flow->user_mem = 0;
	if (an->revive_pending)
		an_revive(an);
	out_maybe_flush(an);
}

static void cb_message(void *ctx, struct cap_flow *flow, const char *msg)
{
	struct cap_an *an = ctx;
	struct an_flow *fl = flow ? flow->user : NULL;
	if (fl && (fl->state == FL_IGNORE || fl->state == FL_PARKED))
		return;
	an_problem(an, fl && fl->state == FL_KAFKA ? fl : NULL, "%s", msg);
}

/* ---- lifecycle ---- */

struct cap_an *cap_an_new(const struct cap_an_opts *opts, FILE *out, char *err, size_t errlen)
{
	struct cap_an *an = calloc(1, sizeof(*an));
	if (!an) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	an->opts = *opts;
	if (!an->opts.nports) {
		an->opts.ports[0] = 9092;
		an->opts.nports = 1;
	}
	an->out = out;
	an->arena.limit = 512u << 20;
	an->topics = kd_topics_new();
	if (!an->topics) {
		free(an);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (opts->format == CAP_AN_STATS || opts->format == CAP_AN_HTML || opts->stats_after) {
		an->stats = an_stats_new();
		if (opts->format == CAP_AN_HTML && an->stats && !(an->tl = an_tl_new()))
			an_stats_free(&an->stats);
		if (!an->stats) {
			kd_topics_free(&an->topics);
			free(an);
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
	}
	if (opts->rules_path && !(an->rules = an_rules_new(opts->rules_path, err, errlen))) {
		cap_an_free(&an);
		return NULL;
	}
	return an;
}

void cap_an_callbacks(struct cap_an *an, struct cap_tcp_cbs *cbs)
{
	memset(cbs, 0, sizeof(*cbs));
	cbs->ctx = an;
	cbs->flow_open = cb_open;
	cbs->data = cb_data;
	cbs->gap = cb_gap;
	cbs->flow_close = cb_close;
	cbs->message = cb_message;
}

void cap_an_finish(struct cap_an *an, const struct cap_stats *tstats)
{
	if (an->opts.format == CAP_AN_RECORDS)
		an_rec_finish(an);
	if (an->rules)
		an_rules_report(an);
	/* flows with payload that were not decoded, at the end of every format,
	 * where its decode problems go: the summary's "!" lines, stderr for
	 * the formats whose every output line is a message or a record, the
	 * stats report's own section */
	if (an->opts.format == CAP_AN_SUMMARY) {
		an_undec_report(an, &an->ob, AN_UNDEC_TEXT);
	} else if (an->opts.format != CAP_AN_STATS) {
		struct kd_wbuf w = {0};
		an_undec_report(an, &w, AN_UNDEC_STDERR);
		if (w.len && !w.err) {
			an_out_flush(an);
			fwrite(w.p, 1, w.len, stderr);
		}
		kd_wbuf_free(&w);
	}
	if (an->tl) {
		if (an_html_report(an->tl, an->stats, &an->ob, an->opts.title, tstats, &an->counts))
			fprintf(stderr, "kwire: out of memory writing the HTML report\n");
	} else if (an->stats) {
		if (an->opts.format != CAP_AN_STATS)
			kd_w_cstr(&an->ob, "\n");
		an_stats_report(an->stats, &an->ob, an->opts.stats_json, tstats, &an->counts, an);
	}
	an_out_flush(an);
}

void cap_an_progress(struct cap_an *an, uint64_t done, uint64_t total, int final)
{
	if (!an->opts.progress)
		return;
	if (final) {
		if (an->progress_shown)
			fprintf(stderr, "\r\033[K");
		return;
	}
	if (total)
		fprintf(stderr, "\r%5.1f%% %llu MB, %llu requests",
		        100.0 * (double)done / (double)total, (unsigned long long)(done >> 20),
		        (unsigned long long)an->counts.requests);
	else
		fprintf(stderr, "\r%llu MB, %llu requests", (unsigned long long)(done >> 20),
		        (unsigned long long)an->counts.requests);
	an->progress_shown = 1;
}

const struct cap_an_counts *cap_an_counts(const struct cap_an *an)
{
	return &an->counts;
}

void cap_an_free(struct cap_an **pan)
{
	struct cap_an *an = *pan;
	if (!an)
		return;
	an_rec_free(an);
	an_rules_free(&an->rules);
	an_stats_free(&an->stats);
	an_tl_free(&an->tl);
	kd_topics_free(&an->topics);
	if (an->eps)
		free(an->eps->ent);
	free(an->eps);
	if (an->undec)
		free(an->undec->ep);
	free(an->undec);
	kd_arena_free(&an->arena);
	kd_wbuf_free(&an->ob);
	free(an);
	*pan = NULL;
}
