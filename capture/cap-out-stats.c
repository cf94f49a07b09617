/* cap-out-stats.c: the end report of `--format stats` (text or one JSON
 * document). Memory does not grow with the capture's length: counters,
 * fixed log-linear latency histograms per API, and maps whose size is
 * bounded by the number of distinct topics / client ids / groups / clients
 * (each capped, the rest folded into "(other)"). */
#define CAP_AN_PRIVATE
#include <stdlib.h>
#include <string.h>

#include "kd-api-keys-gen.h"
#include "cap-analyze.h"
#include "kd-render.h"
#include "kd-sasl.h"
#include "kd-schema.h"

#define ST_KEYS 128 /* API keys tracked one by one; larger ones share the last slot */
#define ST_VERS 32
#define HIST_SUB 16 /* sub-buckets per power of two: about 6% precision */
#define HIST_N (64 * HIST_SUB)
#define MAP_MAX 50000 /* distinct names per map */
#define MEMBERS_MAX 256
#define PROBLEMS_KEPT 20
#define TOP_N 10

struct hist {
	uint64_t n, max, sum;
	uint32_t b[HIST_N];
};

static unsigned hist_bucket(uint64_t v)
{
	if (v < HIST_SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned sub = (unsigned)(v >> (msb - 4)) & (HIST_SUB - 1);
	return (msb - 3) * HIST_SUB + sub;
}

/* The smallest value of bucket i (inverse of hist_bucket). */
static uint64_t hist_low(unsigned i)
{
	if (i < HIST_SUB)
		return i;
	unsigned msb = i / HIST_SUB + 3, sub = i % HIST_SUB;
	return ((uint64_t)(HIST_SUB + sub)) << (msb - 4);
}

static uint64_t hist_q(const struct hist *h, double q)
{
	if (!h->n)
		return 0;
	uint64_t want = (uint64_t)(q * (double)h->n);
	if (want >= h->n)
		want = h->n - 1;
	uint64_t acc = 0;
	for (unsigned i = 0; i < HIST_N; i++) {
		acc += h->b[i];
		if (acc > want) {
			uint64_t lo = hist_low(i), hi = i + 1 < HIST_N ? hist_low(i + 1) : lo;
			uint64_t mid = lo + (hi - lo) / 2;
			return mid > h->max ? h->max : mid;
		}
	}
	return h->max;
}

/* ---- a small string map ---- */

enum { V_REQ, V_BYTES, V_PREC, V_PBYTES, V_FREC, V_FBYTES, V_ERR, V_N };

struct ment {
	char *key;
	uint64_t v[V_N];
	struct smap *members; /* groups only */
};

struct smap {
	struct ment *ent;
	size_t cap, n;
	struct ment other; /* everything past MAP_MAX */
};

static size_t str_hash(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return (size_t)h;
}

static struct ment *smap_get(struct smap *m, const uint8_t *p, size_t n)
{
	if ((m->n + 1) * 2 > m->cap) {
		if (m->n >= MAP_MAX)
			goto other;
		size_t ncap = m->cap ? m->cap * 2 : 64;
		struct ment *ne = calloc(ncap, sizeof(*ne));
		if (!ne)
			goto other;
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->ent[i].key)
				continue;
			size_t j = str_hash((const uint8_t *)m->ent[i].key, strlen(m->ent[i].key)) &
			           (ncap - 1);
			while (ne[j].key)
				j = (j + 1) & (ncap - 1);
			ne[j] = m->ent[i];
		}
		free(m->ent);
		m->ent = ne;
		m->cap = ncap;
	}
	size_t i = str_hash(p, n) & (m->cap - 1);
	while (m->ent[i].key) {
		if (strlen(m->ent[i].key) == n && !memcmp(m->ent[i].key, p, n))
			return &m->ent[i];
		i = (i + 1) & (m->cap - 1);
	}
	char *k = malloc(n + 1);
	if (!k)
		goto other;
	memcpy(k, p, n);
	k[n] = 0;
	/* A NUL inside the name would make it a different key later; cut there. */
	m->ent[i].key = k;
	m->n++;
	return &m->ent[i];
other:
	return &m->other; /* counted, not listed */
}

static void smap_free(struct smap *m)
{
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->ent[i].key)
			continue;
		free(m->ent[i].key);
		if (m->ent[i].members) {
			smap_free(m->ent[i].members);
			free(m->ent[i].members);
		}
	}
	if (m->other.members) {
		smap_free(m->other.members);
		free(m->other.members);
	}
	free(m->ent);
	memset(m, 0, sizeof(*m));
}

static int ment_cmp(const void *a, const void *b, void *arg)
{
	int col = *(const int *)arg;
	const struct ment *x = *(struct ment *const *)a, *y = *(struct ment *const *)b;
	if (x->v[col] != y->v[col])
		return x->v[col] < y->v[col] ? 1 : -1;
	return strcmp(x->key, y->key);
}

/* Entries sorted by v[col] descending, then by name (pointers into the
 * map; the caller frees the array). */
static struct ment **smap_sorted(const struct smap *m, int col, size_t *nout)
{
	struct ment **v = malloc((m->n + 1) * sizeof(*v));
	size_t n = 0;
	if (!v) {
		*nout = 0;
		return NULL;
	}
	for (size_t i = 0; i < m->cap; i++)
		if (m->ent[i].key)
			v[n++] = &m->ent[i];
	qsort_r(v, n, sizeof(*v), ment_cmp, &col);
	*nout = n;
	return v;
}

struct an_stats {
	uint64_t reqs[ST_KEYS][ST_VERS];
	struct hist *lat[ST_KEYS];
	uint64_t errs[1024]; /* error code + 512 */
	uint64_t pairs, unanswered, unmatched, no_response;
	uint64_t flows_with_gaps, gaps, lost;
	uint64_t problems, warnings;
	uint64_t prod_records, fetch_records;
	char *problem[PROBLEMS_KEPT];
	unsigned nproblem;
	char *warning[PROBLEMS_KEPT];
	unsigned nwarning;
	struct smap topics, client_ids, groups, clients;
	struct smap sasl; /* mechanism -> authentications; members: the users */
};

struct an_stats *an_stats_new(void)
{
	return calloc(1, sizeof(struct an_stats));
}

static void view_key(struct kd_view v, const uint8_t **p, size_t *n)
{
	if (v.null) {
		*p = (const uint8_t *)"(null)";
		*n = 6;
	} else {
		const uint8_t *z = memchr(v.p, 0, v.len);
		*p = v.p;
		*n = z ? (size_t)(z - v.p) : v.len;
	}
}

void an_stats_pair(struct an_stats *st, const struct kd_summary *sum)
{
	const uint8_t *kp;
	size_t kn;
	st->pairs++;
	if (!(sum->flags & KD_SUM_REQ)) {
		st->unmatched++;
	} else if (!(sum->flags & KD_SUM_RESP)) {
		if (sum->flags & KD_SUM_NO_RESP)
			st->no_response++;
		else
			st->unanswered++;
	}
	unsigned key = sum->api_key < 0          ? ST_KEYS - 1
	               : sum->api_key >= ST_KEYS ? ST_KEYS - 1
	                                         : (unsigned)sum->api_key;
	if (sum->api_key >= 0 && (sum->flags & KD_SUM_REQ)) {
		unsigned ver = sum->api_version < 0          ? 0
		               : sum->api_version >= ST_VERS ? ST_VERS - 1
		                                             : (unsigned)sum->api_version;
		st->reqs[key][ver]++;
	}
	if (sum->latency_us >= 0 && (sum->flags & KD_SUM_REQ) && (sum->flags & KD_SUM_RESP) &&
	    sum->api_key >= 0) {
		if (!st->lat[key])
			st->lat[key] = calloc(1, sizeof(struct hist));
		struct hist *h = st->lat[key];
		if (h) {
			uint64_t v = (uint64_t)sum->latency_us;
			h->n++;
			h->sum += v;
			if (v > h->max)
				h->max = v;
			h->b[hist_bucket(v)]++;
		}
	}
	for (unsigned i = 0; i < sum->nerrs; i++)
		st->errs[(sum->errs[i].code + 512) & 1023] += sum->errs[i].count;

	uint64_t bytes = (uint64_t)sum->req_bytes + sum->resp_bytes;
	view_key(kd_sum_view(sum, sum->client_id), &kp, &kn);
	struct ment *cid = smap_get(&st->client_ids, kp, kn);
	cid->v[V_REQ]++;
	cid->v[V_BYTES] += bytes;
	if (kd_sum_has_error(sum))
		cid->v[V_ERR]++;
	struct ment *cl = smap_get(&st->clients, (const uint8_t *)sum->client, strlen(sum->client));
	cl->v[V_REQ]++;
	cl->v[V_BYTES] += bytes;
	if (kd_sum_has_error(sum))
		cl->v[V_ERR]++;
	if (!cl->members) /* the client ids seen on this client address */
		cl->members = calloc(1, sizeof(struct smap));
	if (cl->members && cl->members->n < 8)
		smap_get(cl->members, kp, kn);

	/* SASL: one authentication per first client token (the one naming
	 * the user), or per SaslHandshake of a mechanism whose tokens name
	 * nobody kwire can read (GSSAPI); never any secret. */
	struct kd_view user = kd_sum_view(sum, sum->sasl_user);
	const char *mech = kd_sasl_mech_name(sum->sasl_mech);
	if (mech && (!user.null || (sum->api_key == KD_API_SASL_HANDSHAKE &&
	                            (sum->sasl_mech == KD_SASL_MECH_GSSAPI ||
	                             sum->sasl_mech == KD_SASL_MECH_OTHER)))) {
		struct ment *sm = smap_get(&st->sasl, (const uint8_t *)mech, strlen(mech));
		sm->v[V_REQ]++;
		if (!user.null && !sm->members)
			sm->members = calloc(1, sizeof(struct smap));
		if (!user.null && sm->members)
			smap_get(sm->members, user.p, user.len)->v[V_REQ]++;
	}

	for (unsigned i = 0; i < sum->ntp; i++) {
		const struct kd_sum_tp *tp = &sum->tp[i];
		if (tp->topic.off == KD_SUM_NOSTR && !tp->has_topic_id)
			continue;
		/* the name, or "topic-id:<uuid>" for an id the capture never named */
		char idb[32];
		view_key(kd_sum_topic_label(sum, tp, idb), &kp, &kn);
		struct ment *t = smap_get(&st->topics, kp, kn);
		t->v[V_REQ]++;
		if (tp->error)
			t->v[V_ERR]++;
		if (!tp->has_records)
			continue;
		if (sum->api_key == KD_API_PRODUCE) {
			st->prod_records += (uint64_t)tp->records;
			t->v[V_PREC] += (uint64_t)tp->records;
			t->v[V_PBYTES] += tp->bytes;
			cid->v[V_PREC] += (uint64_t)tp->records;
			cid->v[V_PBYTES] += tp->bytes;
		} else if (sum->api_key == KD_API_FETCH) {
			st->fetch_records += (uint64_t)tp->records;
			t->v[V_FREC] += (uint64_t)tp->records;
			t->v[V_FBYTES] += tp->bytes;
			cid->v[V_FREC] += (uint64_t)tp->records;
			cid->v[V_FBYTES] += tp->bytes;
		}
	}
	for (unsigned i = 0; i < sum->ngroups; i++) {
		view_key(kd_sum_view(sum, sum->groups[i]), &kp, &kn);
		struct ment *g = smap_get(&st->groups, kp, kn);
		g->v[V_REQ]++;
		if (kd_sum_has_error(sum))
			g->v[V_ERR]++;
		struct kd_view mv = kd_sum_view(sum, sum->member_id);
		if (mv.null)
			continue;
		if (!g->members)
			g->members = calloc(1, sizeof(struct smap));
		if (g->members && g->members->n < MEMBERS_MAX) {
			view_key(mv, &kp, &kn);
			struct ment *m = smap_get(g->members, kp, kn);
			m->v[V_REQ]++;
		}
	}
}

void an_stats_problem(struct an_stats *st, const char *msg)
{
	st->problems++;
	if (st->nproblem < PROBLEMS_KEPT) {
		st->problem[st->nproblem] = strdup(msg);
		if (st->problem[st->nproblem])
			st->nproblem++;
	}
}

void an_stats_warning(struct an_stats *st, const char *msg)
{
	st->warnings++;
	if (st->nwarning < PROBLEMS_KEPT) {
		st->warning[st->nwarning] = strdup(msg);
		if (st->warning[st->nwarning])
			st->nwarning++;
	}
}

void an_stats_flow(struct an_stats *st, uint64_t gaps, uint64_t lost_bytes)
{
	if (gaps)
		st->flows_with_gaps++;
	st->gaps += gaps;
	st->lost += lost_bytes;
}

static const char *api_label(unsigned key, char *buf, size_t cap)
{
	const char *n = key < ST_KEYS - 1 ? kd_api_name((int16_t)key) : NULL;
	if (n)
		return n;
	snprintf(buf, cap, key == ST_KEYS - 1 ? "Other" : "Api%u", key);
	return buf;
}

static void lat_text(struct kd_wbuf *w, uint64_t us)
{
	kd_w_fmt(w, "%8.3f", (double)us / 1000.0);
}

static void report_text(struct an_stats *st, struct kd_wbuf *w, const struct cap_stats *ts,
                        const struct cap_an_counts *c, struct cap_an *an)
{
	char nb[32];
	kd_w_cstr(w, "== kwire capture statistics\n");
	if (ts)
		kd_w_fmt(
		    w,
		    "packets %llu, %llu bytes, %llu TCP flows; TCP gaps %llu (%llu bytes lost)\n",
		    (unsigned long long)ts->packets, (unsigned long long)ts->bytes,
		    (unsigned long long)ts->flows, (unsigned long long)ts->gaps,
		    (unsigned long long)ts->gap_bytes);
	if (ts)
		kd_w_fmt(w,
		         "flow memory peak %.1f MiB; flows evicted %llu to stay within "
		         "--flow-memory, %llu for a full flow table\n",
		         (double)ts->mem_peak / (1 << 20),
		         (unsigned long long)ts->flows_evicted_mem,
		         (unsigned long long)ts->flows_evicted);
	kd_w_fmt(w,
	         "Kafka flows %llu; requests %llu, responses %llu, pairs %llu (unanswered %llu, "
	         "no response expected %llu, unmatched responses %llu)\n",
	         (unsigned long long)c->kafka_flows, (unsigned long long)c->requests,
	         (unsigned long long)c->responses, (unsigned long long)st->pairs,
	         (unsigned long long)st->unanswered, (unsigned long long)st->no_response,
	         (unsigned long long)st->unmatched);
	kd_w_fmt(w, "records in Produce requests %llu, in Fetch responses %llu (batch headers)\n",
	         (unsigned long long)st->prod_records, (unsigned long long)st->fetch_records);

	kd_w_cstr(w, "\n-- requests per API and version; latency per API (ms)\n");
	kd_w_fmt(w, "%-28s %10s %9s %9s %9s %9s\n", "API", "requests", "p50", "p90", "p99", "max");
	for (unsigned k = 0; k < ST_KEYS; k++) {
		uint64_t tot = 0;
		for (unsigned v = 0; v < ST_VERS; v++)
			tot += st->reqs[k][v];
		if (!tot && !st->lat[k])
			continue;
		kd_w_fmt(w, "%-28s %10llu", api_label(k, nb, sizeof(nb)), (unsigned long long)tot);
		if (st->lat[k] && st->lat[k]->n) {
			struct hist *h = st->lat[k];
			kd_w_cstr(w, " ");
			lat_text(w, hist_q(h, 0.5));
			kd_w_cstr(w, " ");
			lat_text(w, hist_q(h, 0.9));
			kd_w_cstr(w, " ");
			lat_text(w, hist_q(h, 0.99));
			kd_w_cstr(w, " ");
			lat_text(w, h->max);
		}
		kd_w_cstr(w, "\n");
		for (unsigned v = 0; v < ST_VERS; v++)
			if (st->reqs[k][v])
				kd_w_fmt(w, "  v%-25u %10llu\n", v,
				         (unsigned long long)st->reqs[k][v]);
	}

	kd_w_cstr(w, "\n-- errors\n");
	for (unsigned i = 0; i < 1024; i++) {
		if (!st->errs[i])
			continue;
		int code = (int)i - 512;
		const char *n = kd_error_name((int16_t)code);
		kd_w_fmt(w, "%-40s %10llu\n", n ? n : "UNKNOWN_ERROR_CODE",
		         (unsigned long long)st->errs[i]);
	}

	size_t n;
	struct ment **v = smap_sorted(&st->topics, V_PBYTES, &n);
	kd_w_cstr(w, "\n-- topics\n");
	kd_w_fmt(w, "%-32s %8s %12s %14s %12s %14s\n", "topic", "touched", "prod.recs",
	         "prod.bytes", "fetch.recs", "fetch.bytes");
	for (size_t i = 0; i < n; i++)
		kd_w_fmt(w, "%-32s %8llu %12llu %14llu %12llu %14llu\n", v[i]->key,
		         (unsigned long long)v[i]->v[V_REQ], (unsigned long long)v[i]->v[V_PREC],
		         (unsigned long long)v[i]->v[V_PBYTES], (unsigned long long)v[i]->v[V_FREC],
		         (unsigned long long)v[i]->v[V_FBYTES]);
	free(v);

	v = smap_sorted(&st->client_ids, V_BYTES, &n);
	kd_w_cstr(w, "\n-- client ids\n");
	kd_w_fmt(w, "%-32s %8s %14s %12s %14s %12s %14s\n", "client_id", "pairs", "bytes",
	         "prod.recs", "prod.bytes", "fetch.recs", "fetch.bytes");
	for (size_t i = 0; i < n; i++)
		kd_w_fmt(w, "%-32s %8llu %14llu %12llu %14llu %12llu %14llu\n", v[i]->key,
		         (unsigned long long)v[i]->v[V_REQ], (unsigned long long)v[i]->v[V_BYTES],
		         (unsigned long long)v[i]->v[V_PREC], (unsigned long long)v[i]->v[V_PBYTES],
		         (unsigned long long)v[i]->v[V_FREC],
		         (unsigned long long)v[i]->v[V_FBYTES]);
	free(v);

	v = smap_sorted(&st->sasl, V_REQ, &n);
	kd_w_cstr(w, "\n-- SASL authentications (mechanism: count, users)\n");
	for (size_t i = 0; i < n; i++) {
		kd_w_fmt(w, "%s: %llu", v[i]->key, (unsigned long long)v[i]->v[V_REQ]);
		size_t nm = 0;
		struct ment **m = v[i]->members ? smap_sorted(v[i]->members, V_REQ, &nm) : NULL;
		for (size_t j = 0; j < nm; j++) {
			kd_w_cstr(w, j ? ", " : ", users: ");
			kd_json_cstr(w, m[j]->key);
			kd_w_fmt(w, " %llu", (unsigned long long)m[j]->v[V_REQ]);
		}
		kd_w_cstr(w, "\n");
		free(m);
	}
	free(v);

	v = smap_sorted(&st->groups, V_REQ, &n);
	kd_w_cstr(w, "\n-- consumer groups\n");
	for (size_t i = 0; i < n; i++) {
		kd_w_fmt(w, "%s: %llu requests, members:", v[i]->key,
		         (unsigned long long)v[i]->v[V_REQ]);
		size_t nm = 0;
		struct ment **m = v[i]->members ? smap_sorted(v[i]->members, V_REQ, &nm) : NULL;
		for (size_t j = 0; j < nm; j++)
			kd_w_fmt(w, " %s", m[j]->key);
		if (!nm)
			kd_w_cstr(w, " (none seen)");
		kd_w_cstr(w, "\n");
		free(m);
	}
	free(v);

	v = smap_sorted(&st->clients, V_BYTES, &n);
	kd_w_cstr(w, "\n-- busiest clients (by bytes)\n");
	for (size_t i = 0; i < n && i < TOP_N; i++) {
		kd_w_fmt(w, "%-48s %8llu pairs %14llu bytes %6llu with errors", v[i]->key,
		         (unsigned long long)v[i]->v[V_REQ], (unsigned long long)v[i]->v[V_BYTES],
		         (unsigned long long)v[i]->v[V_ERR]);
		size_t nm = 0;
		struct ment **m = v[i]->members ? smap_sorted(v[i]->members, V_REQ, &nm) : NULL;
		for (size_t j = 0; j < nm; j++)
			kd_w_fmt(w, "%s%s", j ? ", " : "  client_id ", m[j]->key);
		free(m);
		kd_w_cstr(w, "\n");
	}
	free(v);

	kd_w_cstr(w, "\n-- gaps and decode problems\n");
	kd_w_fmt(w,
	         "Kafka flows with gaps %llu, gaps %llu, bytes lost %llu; decode problems %llu, "
	         "decode warnings %llu\n",
	         (unsigned long long)st->flows_with_gaps, (unsigned long long)st->gaps,
	         (unsigned long long)st->lost, (unsigned long long)st->problems,
	         (unsigned long long)st->warnings);
	for (unsigned i = 0; i < st->nproblem; i++)
		kd_w_fmt(w, "  %s\n", st->problem[i]);
	if (st->problems > st->nproblem)
		kd_w_fmt(w, "  ... %llu more\n", (unsigned long long)(st->problems - st->nproblem));
	for (unsigned i = 0; i < st->nwarning; i++)
		kd_w_fmt(w, "  warning: %s\n", st->warning[i]);
	if (st->warnings > st->nwarning)
		kd_w_fmt(w, "  ... %llu more warnings\n",
		         (unsigned long long)(st->warnings - st->nwarning));
	an_undec_report(an, w, AN_UNDEC_STATS_TEXT);
}

static void json_lat(struct kd_wbuf *w, const struct hist *h)
{
	kd_w_fmt(w,
	         "{\"count\":%llu,\"p50_us\":%llu,\"p90_us\":%llu,\"p99_us\":%llu,\"max_us\":%llu}",
	         (unsigned long long)h->n, (unsigned long long)hist_q(h, 0.5),
	         (unsigned long long)hist_q(h, 0.9), (unsigned long long)hist_q(h, 0.99),
	         (unsigned long long)h->max);
}

/* The keys of a member map (group members, a client's client ids) as the
 * inside of a JSON array, most requests first. */
static void json_keys(struct kd_wbuf *w, const struct smap *members)
{
	size_t nm = 0;
	struct ment **m = members ? smap_sorted(members, V_REQ, &nm) : NULL;
	for (size_t j = 0; j < nm; j++) {
		kd_w_cstr(w, j ? "," : "");
		kd_json_cstr(w, m[j]->key);
	}
	free(m);
}

static void report_json(struct an_stats *st, struct kd_wbuf *w, const struct cap_stats *ts,
                        const struct cap_an_counts *c, struct cap_an *an)
{
	char nb[32];
	kd_w_cstr(w, "{");
	if (ts)
		kd_w_fmt(w,
		         "\"capture\":{\"packets\":%llu,\"bytes\":%llu,\"tcp_flows\":%llu,\"tcp_"
		         "gaps\":%llu,"
		         "\"tcp_gap_bytes\":%llu,\"flow_mem_peak\":%llu,\"flows_evicted_mem\":%llu,"
		         "\"flows_evicted_table\":%llu},",
		         (unsigned long long)ts->packets, (unsigned long long)ts->bytes,
		         (unsigned long long)ts->flows, (unsigned long long)ts->gaps,
		         (unsigned long long)ts->gap_bytes, (unsigned long long)ts->mem_peak,
		         (unsigned long long)ts->flows_evicted_mem,
		         (unsigned long long)ts->flows_evicted);
	kd_w_fmt(
	    w,
	    "\"kafka_flows\":%llu,\"requests\":%llu,\"responses\":%llu,\"pairs\":%llu,"
	    "\"unanswered\":%llu,\"no_response\":%llu,\"unmatched\":%llu,\"produced_records\":%llu,"
	    "\"fetched_records\":%llu",
	    (unsigned long long)c->kafka_flows, (unsigned long long)c->requests,
	    (unsigned long long)c->responses, (unsigned long long)st->pairs,
	    (unsigned long long)st->unanswered, (unsigned long long)st->no_response,
	    (unsigned long long)st->unmatched, (unsigned long long)st->prod_records,
	    (unsigned long long)st->fetch_records);
	kd_w_cstr(w, ",\"apis\":{");
	int first = 1;
	for (unsigned k = 0; k < ST_KEYS; k++) {
		uint64_t tot = 0;
		for (unsigned v = 0; v < ST_VERS; v++)
			tot += st->reqs[k][v];
		if (!tot && !st->lat[k])
			continue;
		kd_w_cstr(w, first ? "" : ",");
		first = 0;
		kd_json_cstr(w, api_label(k, nb, sizeof(nb)));
		kd_w_fmt(w, ":{\"api_key\":%u,\"requests\":%llu,\"versions\":{", k,
		         (unsigned long long)tot);
		int f2 = 1;
		for (unsigned v = 0; v < ST_VERS; v++) {
			if (!st->reqs[k][v])
				continue;
			kd_w_fmt(w, "%s\"%u\":%llu", f2 ? "" : ",", v,
			         (unsigned long long)st->reqs[k][v]);
			f2 = 0;
		}
		kd_w_cstr(w, "},\"latency\":");
		if (st->lat[k] && st->lat[k]->n)
			json_lat(w, st->lat[k]);
		else
			kd_w_cstr(w, "null");
		kd_w_cstr(w, "}");
	}
	kd_w_cstr(w, "},\"errors\":{");
	first = 1;
	for (unsigned i = 0; i < 1024; i++) {
		if (!st->errs[i])
			continue;
		const char *n = kd_error_name((int16_t)((int)i - 512));
		if (n)
			kd_w_fmt(w, "%s\"%s\":%llu", first ? "" : ",", n,
			         (unsigned long long)st->errs[i]);
		else
			kd_w_fmt(w, "%s\"ERROR_%d\":%llu", first ? "" : ",", (int)i - 512,
			         (unsigned long long)st->errs[i]);
		first = 0;
	}
	size_t n;
	struct ment **v = smap_sorted(&st->topics, V_PBYTES, &n);
	kd_w_cstr(w, "},\"topics\":{");
	for (size_t i = 0; i < n; i++) {
		kd_w_cstr(w, i ? "," : "");
		kd_json_cstr(w, v[i]->key);
		kd_w_fmt(w,
		         ":{\"touched\":%llu,\"produced_records\":%llu,\"produced_bytes\":%llu,"
		         "\"fetched_records\":%llu,\"fetched_bytes\":%llu,\"errors\":%llu}",
		         (unsigned long long)v[i]->v[V_REQ], (unsigned long long)v[i]->v[V_PREC],
		         (unsigned long long)v[i]->v[V_PBYTES], (unsigned long long)v[i]->v[V_FREC],
		         (unsigned long long)v[i]->v[V_FBYTES], (unsigned long long)v[i]->v[V_ERR]);
	}
	free(v);
	v = smap_sorted(&st->client_ids, V_BYTES, &n);
	kd_w_cstr(w, "},\"client_ids\":{");
	for (size_t i = 0; i < n; i++) {
		kd_w_cstr(w, i ? "," : "");
		kd_json_cstr(w, v[i]->key);
		kd_w_fmt(w,
		         ":{\"pairs\":%llu,\"bytes\":%llu,\"produced_records\":%llu,\"produced_"
		         "bytes\":%llu,"
		         "\"fetched_records\":%llu,\"fetched_bytes\":%llu,\"errors\":%llu}",
		         (unsigned long long)v[i]->v[V_REQ], (unsigned long long)v[i]->v[V_BYTES],
		         (unsigned long long)v[i]->v[V_PREC], (unsigned long long)v[i]->v[V_PBYTES],
		         (unsigned long long)v[i]->v[V_FREC], (unsigned long long)v[i]->v[V_FBYTES],
		         (unsigned long long)v[i]->v[V_ERR]);
	}
	free(v);
	v = smap_sorted(&st->groups, V_REQ, &n);
	kd_w_cstr(w, "},\"groups\":{");
	for (size_t i = 0; i < n; i++) {
		kd_w_cstr(w, i ? "," : "");
		kd_json_cstr(w, v[i]->key);
		kd_w_fmt(w, ":{\"requests\":%llu,\"errors\":%llu,\"members\":[",
		         (unsigned long long)v[i]->v[V_REQ], (unsigned long long)v[i]->v[V_ERR]);
		json_keys(w, v[i]->members);
		kd_w_cstr(w, "]}");
	}
	free(v);
	v = smap_sorted(&st->sasl, V_REQ, &n);
	kd_w_cstr(w, "},\"sasl\":{");
	for (size_t i = 0; i < n; i++) {
		kd_w_cstr(w, i ? "," : "");
		kd_json_cstr(w, v[i]->key);
		kd_w_fmt(w, ":{\"authentications\":%llu,\"users\":{",
		         (unsigned long long)v[i]->v[V_REQ]);
		size_t nm = 0;
		struct ment **m = v[i]->members ? smap_sorted(v[i]->members, V_REQ, &nm) : NULL;
		for (size_t j = 0; j < nm; j++) {
			kd_w_cstr(w, j ? "," : "");
			kd_json_cstr(w, m[j]->key);
			kd_w_fmt(w, ":%llu", (unsigned long long)m[j]->v[V_REQ]);
		}
		free(m);
		kd_w_cstr(w, "}}");
	}
	free(v);
	v = smap_sorted(&st->clients, V_BYTES, &n);
	kd_w_cstr(w, "},\"busiest_clients\":[");
	for (size_t i = 0; i < n && i < TOP_N; i++) {
		kd_w_cstr(w, i ? ",{\"client\":" : "{\"client\":");
		kd_json_cstr(w, v[i]->key);
		kd_w_fmt(w, ",\"pairs\":%llu,\"bytes\":%llu,\"errors\":%llu,\"client_ids\":[",
		         (unsigned long long)v[i]->v[V_REQ], (unsigned long long)v[i]->v[V_BYTES],
		         (unsigned long long)v[i]->v[V_ERR]);
		json_keys(w, v[i]->members);
		kd_w_cstr(w, "]}");
	}
	free(v);
	kd_w_fmt(w,
	         "],\"gaps\":{\"flows\":%llu,\"gaps\":%llu,\"bytes_lost\":%llu},\"problems\":{"
	         "\"count\":%llu,"
	         "\"first\":[",
	         (unsigned long long)st->flows_with_gaps, (unsigned long long)st->gaps,
	         (unsigned long long)st->lost, (unsigned long long)st->problems);
	for (unsigned i = 0; i < st->nproblem; i++) {
		kd_w_cstr(w, i ? "," : "");
		kd_json_cstr(w, st->problem[i]);
	}
	kd_w_fmt(w, "]},\"warnings\":{\"count\":%llu,\"first\":[",
	         (unsigned long long)st->warnings);
	for (unsigned i = 0; i < st->nwarning; i++) {
		kd_w_cstr(w, i ? "," : "");
		kd_json_cstr(w, st->warning[i]);
	}
	kd_w_cstr(w, "]},\"undecoded_flows\":");
	an_undec_report(an, w, AN_UNDEC_STATS_JSON);
	kd_w_cstr(w, "}\n");
}

void an_stats_report(struct an_stats *st, struct kd_wbuf *w, int json,
                     const struct cap_stats *tstats, const struct cap_an_counts *counts,
                     struct cap_an *an)
{
	if (json)
		report_json(st, w, tstats, counts, an);
	else
		report_text(st, w, tstats, counts, an);
}

void an_stats_free(struct an_stats **pst)
{
	struct an_stats *st = *pst;
	if (!st)
		return;
	for (unsigned k = 0; k < ST_KEYS; k++)
		free(st->lat[k]);
	for (unsigned i = 0; i < st->nproblem; i++)
		free(st->problem[i]);
	for (unsigned i = 0; i < st->nwarning; i++)
		free(st->warning[i]);
	smap_free(&st->topics);
	smap_free(&st->client_ids);
	smap_free(&st->groups);
	smap_free(&st->clients);
	smap_free(&st->sasl);
	free(st);
	*pst = NULL;
}
