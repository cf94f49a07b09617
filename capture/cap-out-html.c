/* cap-out-html.c: `kwire decode --format html`, one self-contained page.
 *
 * The page is built from the same single pass as `--format stats`: the
 * stats collector (cap-out-stats.c) gives the totals, embedded verbatim as
 * the `--format stats --json` document, and the time line below adds what
 * a report over time needs. Both are bounded: the time line has a fixed
 * number of buckets whose width doubles (neighbours merged) whenever the
 * capture outgrows them, so memory does not grow with the capture's length.
 *
 * Page layout: <style> and <script> come from capture/html/report.css and
 * report.js, compiled in (cap-html-gen.h). The data sit in two
 * <script type="application/json"> islands, "kwire-stats" and
 * "kwire-timeline"; the script draws inline SVG from them. Nothing is
 * fetched: no external script, font, image or URL. */
#define CAP_AN_PRIVATE
#include <stdlib.h>
#include <string.h>

#include "cap-analyze.h"
#include "cap-html-gen.h"
#include "kd-api-keys-gen.h"
#include "kd-render.h"
#include "kd-schema.h"

#define TL_N 240    /* buckets */
#define TL_KEYS 128 /* API keys tracked; larger ones share the last */
#define TL_ERRS 24  /* distinct error codes drawn; the rest are "other" */
#define TL_HSUB 4   /* latency sub-buckets per power of two (~19%) */
#define TL_HN (41 * TL_HSUB)
#define TL_EVENTS 1000 /* group events listed (all are counted) */
#define TL_GROUPS 64   /* groups with per-kind counts */
#define TL_SET_MAX 100000
#define TL_W0_US 1000 /* first bucket width: 1 ms */

enum { GK_JOIN, GK_SYNC, GK_LEAVE, GK_REBALANCE, GK_N };
static const char *const gk_name[GK_N] = {"join", "sync", "leave", "rebalance"};

struct tl_hist {
	uint32_t b[TL_HN];
};

struct tl_bucket {
	uint32_t reqs[TL_KEYS];
	struct tl_hist *lat[TL_KEYS];
	uint32_t errs[TL_ERRS + 1]; /* + other */
	uint32_t gaps, problems;
	uint64_t gap_bytes, bytes_in, bytes_out;
	uint32_t grp[GK_N];
};

struct tl_event {
	int64_t ts_us;
	int16_t error;
	uint8_t kind;
	char group[48];
	char member[64];
};

struct tl_set { /* distinct strings, counted */
	char **slot;
	size_t cap, n;
	int full;
};

struct an_tl {
	int64_t t0, width;   /* bucket i covers [t0 + i*width, t0 + (i+1)*width) */
	int64_t first, last; /* first and last pair times */
	unsigned nb;         /* buckets in use */
	uint32_t early;      /* problems before any time was seen */
	struct tl_bucket b[TL_N];
	int16_t codes[TL_ERRS];
	unsigned ncodes;
	struct tl_event *ev;
	unsigned nev;
	uint64_t ev_total;
	struct {
		char name[48];
		uint64_t n[GK_N];
	} grp[TL_GROUPS];
	unsigned ngrp;
	uint64_t grp_other[GK_N];
	struct tl_set brokers, clients;
};

struct an_tl *an_tl_new(void)
{
	struct an_tl *tl = calloc(1, sizeof(*tl));
	if (!tl)
		return NULL;
	tl->ev = calloc(TL_EVENTS, sizeof(*tl->ev));
	if (!tl->ev) {
		free(tl);
		return NULL;
	}
	tl->width = TL_W0_US;
	tl->first = -1;
	return tl;
}

static void set_free(struct tl_set *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->slot[i]);
	free(s->slot);
	memset(s, 0, sizeof(*s));
}

void an_tl_free(struct an_tl **ptl)
{
	struct an_tl *tl = *ptl;
	if (!tl)
		return;
	for (unsigned i = 0; i < TL_N; i++)
		for (unsigned k = 0; k < TL_KEYS; k++)
			free(tl->b[i].lat[k]);
	set_free(&tl->brokers);
	set_free(&tl->clients);
	free(tl->ev);
	free(tl);
	*ptl = NULL;
}

static size_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return (size_t)h;
}

/* Adds s to the set (copied); past TL_SET_MAX entries only sets full. */
static void set_add(struct tl_set *s, const char *str)
{
	if ((s->n + 1) * 2 > s->cap) {
		if (s->n >= TL_SET_MAX) {
			s->full = 1;
			return;
		}
		size_t ncap = s->cap ? s->cap * 2 : 64;
		char **ns = calloc(ncap, sizeof(*ns));
		if (!ns) {
			s->full = 1;
			return;
		}
		for (size_t i = 0; i < s->cap; i++) {
			if (!s->slot[i])
				continue;
			size_t j = str_hash(s->slot[i]) & (ncap - 1);
			while (ns[j])
				j = (j + 1) & (ncap - 1);
			ns[j] = s->slot[i];
		}
		free(s->slot);
		s->slot = ns;
		s->cap = ncap;
	}
	size_t i = str_hash(str) & (s->cap - 1);
	while (s->slot[i]) {
		if (!strcmp(s->slot[i], str))
			return;
		i = (i + 1) & (s->cap - 1);
	}
	s->slot[i] = strdup(str);
	if (s->slot[i])
		s->n++;
	else
		s->full = 1;
}

static unsigned lat_bucket(uint64_t v)
{
	if (v < TL_HSUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned sub = (unsigned)(v >> (msb - 2)) & (TL_HSUB - 1);
	unsigned i = (msb - 1) * TL_HSUB + sub;
	return i < TL_HN ? i : TL_HN - 1;
}

/* The middle of bucket i, in microseconds (inverse of lat_bucket). */
static double lat_mid(unsigned i)
{
	if (i < TL_HSUB)
		return i;
	unsigned msb = i / TL_HSUB + 1, sub = i % TL_HSUB;
	double lo = (double)((uint64_t)(TL_HSUB + sub) << (msb - 2));
	double hi = (double)((uint64_t)(TL_HSUB + sub + 1) << (msb - 2));
	return (lo + hi) / 2;
}

/* Halves the resolution: bucket i takes 2i and 2i+1. */
static void tl_merge(struct an_tl *tl)
{
	for (unsigned i = 0; i < TL_N / 2; i++) {
		struct tl_bucket *d = &tl->b[i], *a = &tl->b[2 * i], *c = &tl->b[2 * i + 1];
		struct tl_bucket m;
		memset(&m, 0, sizeof(m));
		for (unsigned k = 0; k < TL_KEYS; k++) {
			m.reqs[k] = a->reqs[k] + c->reqs[k];
			m.lat[k] = a->lat[k] ? a->lat[k] : c->lat[k];
			if (a->lat[k] && c->lat[k]) {
				for (unsigned j = 0; j < TL_HN; j++)
					a->lat[k]->b[j] += c->lat[k]->b[j];
				free(c->lat[k]);
			}
		}
		for (unsigned e = 0; e <= TL_ERRS; e++)
			m.errs[e] = a->errs[e] + c->errs[e];
		m.gaps = a->gaps + c->gaps;
		m.problems = a->problems + c->problems;
		m.gap_bytes = a->gap_bytes + c->gap_bytes;
		m.bytes_in = a->bytes_in + c->bytes_in;
		m.bytes_out = a->bytes_out + c->bytes_out;
		for (unsigned g = 0; g < GK_N; g++)
			m.grp[g] = a->grp[g] + c->grp[g];
		*d = m;
	}
	memset(&tl->b[TL_N / 2], 0, sizeof(tl->b[0]) * (TL_N / 2));
	tl->width *= 2;
	tl->nb = (tl->nb + 1) / 2;
}

/* The bucket of time ts: the first time seen starts the line; times
 * before it (a pair emitted after a later one) go to the first bucket. */
static struct tl_bucket *tl_at(struct an_tl *tl, int64_t ts)
{
	if (tl->first < 0) {
		tl->first = tl->last = ts;
		tl->t0 = ts - ts % TL_W0_US;
	}
	if (ts < tl->first)
		tl->first = ts;
	if (ts > tl->last)
		tl->last = ts;
	int64_t off = ts - tl->t0;
	if (off < 0)
		off = 0;
	while (off / tl->width >= TL_N)
		tl_merge(tl);
	unsigned i = (unsigned)(off / tl->width);
	if (i + 1 > tl->nb)
		tl->nb = i + 1;
	return &tl->b[i];
}

static unsigned tl_code(struct an_tl *tl, int16_t code)
{
	for (unsigned i = 0; i < tl->ncodes; i++)
		if (tl->codes[i] == code)
			return i;
	if (tl->ncodes < TL_ERRS) {
		tl->codes[tl->ncodes] = code;
		return tl->ncodes++;
	}
	return TL_ERRS;
}

static void copy_view(char *dst, size_t cap, struct kd_view v)
{
	size_t n = v.null ? 0 : v.len < cap - 1 ? v.len : cap - 1;
	if (n)
		memcpy(dst, v.p, n);
	dst[n] = 0;
	char *z = memchr(dst, 0, n); /* cut at an embedded NUL, as the stats do */
	if (z)
		*z = 0;
}

static void tl_group_event(struct an_tl *tl, const struct kd_summary *sum, unsigned kind)
{
	struct tl_bucket *b = tl_at(tl, sum->ts_us);
	b->grp[kind]++;
	tl->ev_total++;
	char group[48];
	copy_view(group, sizeof(group),
	          sum->ngroups ? kd_sum_view(sum, sum->groups[0]) : (struct kd_view){.null = 1});
	unsigned g;
	for (g = 0; g < tl->ngrp; g++)
		if (!strcmp(tl->grp[g].name, group))
			break;
	if (g == tl->ngrp && tl->ngrp < TL_GROUPS)
		memcpy(tl->grp[tl->ngrp++].name, group, sizeof(group));
	if (g < tl->ngrp)
		tl->grp[g].n[kind]++;
	else
		tl->grp_other[kind]++;
	if (tl->nev < TL_EVENTS) {
		struct tl_event *e = &tl->ev[tl->nev++];
		e->ts_us = sum->ts_us;
		e->kind = (uint8_t)kind;
		e->error = sum->error;
		memcpy(e->group, group, sizeof(group));
		copy_view(e->member, sizeof(e->member), kd_sum_view(sum, sum->member_id));
	}
}

/* REBALANCE_IN_PROGRESS (27): the coordinator tells a member to rejoin. */
#define KD_ERR_REBALANCE_IN_PROGRESS 27

void an_tl_pair(struct an_tl *tl, const struct kd_summary *sum)
{
	struct tl_bucket *b = tl_at(tl, sum->ts_us);
	if (sum->latency_us >= 0)
		tl_at(tl, sum->ts_us + sum->latency_us); /* the span ends at the response */
	b = tl_at(tl, sum->ts_us);                       /* a merge may have moved it */
	unsigned key =
	    sum->api_key < 0 || sum->api_key >= TL_KEYS ? TL_KEYS - 1 : (unsigned)sum->api_key;
	if (sum->api_key >= 0 && (sum->flags & KD_SUM_REQ))
		b->reqs[key]++;
	if (sum->latency_us >= 0 && (sum->flags & KD_SUM_REQ) && (sum->flags & KD_SUM_RESP) &&
	    sum->api_key >= 0) {
		if (!b->lat[key])
			b->lat[key] = calloc(1, sizeof(struct tl_hist));
		if (b->lat[key])
			b->lat[key]->b[lat_bucket((uint64_t)sum->latency_us)]++;
	}
	for (unsigned i = 0; i < sum->nerrs; i++)
		b->errs[tl_code(tl, sum->errs[i].code)] += sum->errs[i].count;
	b->bytes_in += sum->req_bytes;
	b->bytes_out += sum->resp_bytes;
	if (sum->client[0])
		set_add(&tl->clients, sum->client);
	if (sum->broker[0])
		set_add(&tl->brokers, sum->broker);
	int rebalance = 0;
	for (unsigned i = 0; i < sum->nerrs; i++)
		if (sum->errs[i].code == KD_ERR_REBALANCE_IN_PROGRESS)
			rebalance = 1;
	switch (sum->api_key) {
	case KD_API_JOIN_GROUP:
		tl_group_event(tl, sum, GK_JOIN);
		break;
	case KD_API_SYNC_GROUP:
		tl_group_event(tl, sum, rebalance ? GK_REBALANCE : GK_SYNC);
		break;
	case KD_API_LEAVE_GROUP:
		tl_group_event(tl, sum, GK_LEAVE);
		break;
	case KD_API_HEARTBEAT:
	case KD_API_OFFSET_COMMIT:
		if (rebalance)
			tl_group_event(tl, sum, GK_REBALANCE);
		break;
	default:
		break;
	}
}

/* Gaps and problems have no pair of their own: a gap carries its time, a
 * problem is put at the latest time seen. */
void an_tl_gap(struct an_tl *tl, uint64_t nbytes, int64_t ts_us)
{
	struct tl_bucket *b = tl_at(tl, ts_us);
	b->gaps++;
	b->gap_bytes += nbytes;
}

void an_tl_problem(struct an_tl *tl)
{
	if (tl->first < 0)
		tl->early++; /* to the first bucket, once there is one */
	else
		tl_at(tl, tl->last)->problems++;
}

/* ---- output ---- */

static const char *api_label(unsigned key, char *buf, size_t cap)
{
	const char *n = key < TL_KEYS - 1 ? kd_api_name((int16_t)key) : NULL;
	if (n)
		return n;
	snprintf(buf, cap, key == TL_KEYS - 1 ? "Other" : "Api%u", key);
	return buf;
}

static void json_u32s(struct kd_wbuf *w, const struct an_tl *tl, size_t off)
{
	kd_w_cstr(w, "[");
	for (unsigned i = 0; i < tl->nb; i++) {
		uint32_t v;
		memcpy(&v, (const uint8_t *)&tl->b[i] + off, sizeof(v));
		kd_w_fmt(w, "%s%u", i ? "," : "", v);
	}
	kd_w_cstr(w, "]");
}

static void json_u64s(struct kd_wbuf *w, const struct an_tl *tl, size_t off)
{
	kd_w_cstr(w, "[");
	for (unsigned i = 0; i < tl->nb; i++) {
		uint64_t v;
		memcpy(&v, (const uint8_t *)&tl->b[i] + off, sizeof(v));
		kd_w_fmt(w, "%s%llu", i ? "," : "", (unsigned long long)v);
	}
	kd_w_cstr(w, "]");
}

/* Percentile q of one bucket's histogram, in milliseconds, or null. */
static void json_q(struct kd_wbuf *w, const struct tl_hist *h, double q)
{
	uint64_t n = 0;
	if (h)
		for (unsigned j = 0; j < TL_HN; j++)
			n += h->b[j];
	if (!n) {
		kd_w_cstr(w, "null");
		return;
	}
	uint64_t want = (uint64_t)(q * (double)n), acc = 0;
	if (want >= n)
		want = n - 1;
	for (unsigned j = 0; j < TL_HN; j++) {
		acc += h->b[j];
		if (acc > want) {
			kd_w_fmt(w, "%.3f", lat_mid(j) / 1000.0);
			return;
		}
	}
	kd_w_cstr(w, "null");
}

static void timeline_json(const struct an_tl *tl, struct kd_wbuf *w)
{
	char nb[32];
	kd_w_fmt(w,
	         "{\"t0_us\":%lld,\"width_us\":%lld,\"buckets\":%u,\"first_us\":%lld,\"last_us\":"
	         "%lld,\"brokers\":%zu,\"brokers_capped\":%s,\"clients\":%zu,\"clients_capped\":%s,"
	         "\"apis\":{",
	         (long long)tl->t0, (long long)tl->width, tl->nb, (long long)tl->first,
	         (long long)tl->last, tl->brokers.n, tl->brokers.full ? "true" : "false",
	         tl->clients.n, tl->clients.full ? "true" : "false");
	int first = 1;
	for (unsigned k = 0; k < TL_KEYS; k++) {
		int used = 0;
		for (unsigned i = 0; i < tl->nb && !used; i++)
			used = tl->b[i].reqs[k] || tl->b[i].lat[k];
		if (!used)
			continue;
		kd_w_cstr(w, first ? "" : ",");
		first = 0;
		kd_json_cstr(w, api_label(k, nb, sizeof(nb)));
		kd_w_cstr(w, ":{\"requests\":");
		json_u32s(w, tl, offsetof(struct tl_bucket, reqs) + k * sizeof(uint32_t));
		static const double qs[] = {0.5, 0.9, 0.99};
		static const char *const qn[] = {"p50_ms", "p90_ms", "p99_ms"};
		for (unsigned q = 0; q < 3; q++) {
			kd_w_fmt(w, ",\"%s\":[", qn[q]);
			for (unsigned i = 0; i < tl->nb; i++) {
				kd_w_cstr(w, i ? "," : "");
				json_q(w, tl->b[i].lat[k], qs[q]);
			}
			kd_w_cstr(w, "]");
		}
		kd_w_cstr(w, "}");
	}
	kd_w_cstr(w, "},\"errors\":{");
	for (unsigned e = 0; e <= tl->ncodes && e <= TL_ERRS; e++) {
		if (e == tl->ncodes && e < TL_ERRS)
			break;
		if (e < tl->ncodes) {
			const char *n = kd_error_name(tl->codes[e]);
			if (n)
				kd_w_fmt(w, "%s\"%s\":", e ? "," : "", n);
			else
				kd_w_fmt(w, "%s\"ERROR_%d\":", e ? "," : "", tl->codes[e]);
		} else {
			kd_w_cstr(w, ",\"(other)\":");
		}
		json_u32s(w, tl, offsetof(struct tl_bucket, errs) + e * sizeof(uint32_t));
	}
	kd_w_cstr(w, "},\"gaps\":");
	json_u32s(w, tl, offsetof(struct tl_bucket, gaps));
	kd_w_cstr(w, ",\"gap_bytes\":");
	json_u64s(w, tl, offsetof(struct tl_bucket, gap_bytes));
	kd_w_cstr(w, ",\"problems\":");
	json_u32s(w, tl, offsetof(struct tl_bucket, problems));
	kd_w_cstr(w, ",\"bytes_in\":");
	json_u64s(w, tl, offsetof(struct tl_bucket, bytes_in));
	kd_w_cstr(w, ",\"bytes_out\":");
	json_u64s(w, tl, offsetof(struct tl_bucket, bytes_out));
	kd_w_cstr(w, ",\"group_kinds\":{");
	for (unsigned g = 0; g < GK_N; g++) {
		kd_w_fmt(w, "%s\"%s\":", g ? "," : "", gk_name[g]);
		json_u32s(w, tl, offsetof(struct tl_bucket, grp) + g * sizeof(uint32_t));
	}
	kd_w_cstr(w, "},\"groups\":{");
	for (unsigned g = 0; g < tl->ngrp; g++) {
		kd_w_cstr(w, g ? "," : "");
		kd_json_cstr(w, tl->grp[g].name);
		kd_w_cstr(w, ":{");
		for (unsigned k = 0; k < GK_N; k++)
			kd_w_fmt(w, "%s\"%s\":%llu", k ? "," : "", gk_name[k],
			         (unsigned long long)tl->grp[g].n[k]);
		kd_w_cstr(w, "}");
	}
	kd_w_fmt(w, "},\"group_events_total\":%llu,\"group_events\":[",
	         (unsigned long long)tl->ev_total);
	for (unsigned i = 0; i < tl->nev; i++) {
		const struct tl_event *e = &tl->ev[i];
		const char *en = e->error ? kd_error_name(e->error) : "NONE";
		kd_w_fmt(w, "%s{\"t_us\":%lld,\"kind\":\"%s\",\"group\":", i ? "," : "",
		         (long long)e->ts_us, gk_name[e->kind]);
		kd_json_cstr(w, e->group);
		kd_w_cstr(w, ",\"member\":");
		kd_json_cstr(w, e->member);
		kd_w_cstr(w, ",\"error\":");
		kd_json_cstr(w, en ? en : "UNKNOWN_ERROR_CODE");
		kd_w_cstr(w, "}");
	}
	kd_w_cstr(w, "]}");
}

/* JSON inside <script>: '<' only occurs inside JSON strings, where \u003c
 * is the same character; so "</script>" in a topic name cannot end it. */
static void w_json_island(struct kd_wbuf *w, const char *id, const struct kd_wbuf *json)
{
	kd_w_fmt(w, "<script type=\"application/json\" id=\"%s\">", id);
	const uint8_t *p = json->p, *end = json->p + json->len;
	while (p < end) {
		const uint8_t *lt = memchr(p, '<', (size_t)(end - p));
		size_t n = lt ? (size_t)(lt - p) : (size_t)(end - p);
		kd_w_raw(w, p, n);
		if (!lt)
			break;
		kd_w_cstr(w, "\\u003c");
		p = lt + 1;
	}
	kd_w_cstr(w, "</script>\n");
}

static void w_html_text(struct kd_wbuf *w, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<':
			kd_w_cstr(w, "&lt;");
			break;
		case '>':
			kd_w_cstr(w, "&gt;");
			break;
		case '&':
			kd_w_cstr(w, "&amp;");
			break;
		case '"':
			kd_w_cstr(w, "&quot;");
			break;
		default:
			kd_w_raw(w, s, 1);
		}
	}
}

int an_html_report(struct an_tl *tl, struct an_stats *st, struct kd_wbuf *w, const char *title,
                   const struct cap_stats *tstats, const struct cap_an_counts *counts)
{
	struct kd_wbuf js = {0};
	kd_w_cstr(w, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
	             "<meta name=\"generator\" content=\"kwire " KWIRE_VERSION "\">\n"
	             "<title>kwire report: ");
	w_html_text(w, title ? title : "capture");
	kd_w_cstr(w, "</title>\n<style>\n");
	kd_w_cstr(w, cap_html_report_css);
	kd_w_cstr(w, "</style></head>\n<body>\n<header><h1>kwire report: <span id=\"title\">");
	w_html_text(w, title ? title : "capture");
	kd_w_cstr(w, "</span></h1></header>\n<main id=\"app\"><noscript>The charts need "
	             "JavaScript (inline, nothing is fetched). The data are in the two JSON "
	             "blocks of this page.</noscript></main>\n");
	an_stats_report(st, &js, 1, tstats, counts, NULL);
	w_json_island(w, "kwire-stats", &js);
	js.len = 0;
	if (tl->early) {
		tl->b[0].problems += tl->early;
		tl->early = 0;
		if (!tl->nb)
			tl->nb = 1;
	}
	timeline_json(tl, &js);
	w_json_island(w, "kwire-timeline", &js);
	kd_w_cstr(w, "<script>\n");
	kd_w_cstr(w, cap_html_report_js);
	kd_w_cstr(w, "</script>\n</body></html>\n");
	int rc = js.err || w->err ? -1 : 0;
	kd_wbuf_free(&js);
	return rc;
}
