/* px-audit.c: the proxy's audit trail (px-audit.h, docs/rules.md).
 *
 * Sinks live in a registry keyed by what they write to (a file's path; a
 * Kafka topic with its bootstrap and properties). A writer finds its sink
 * by the rule's `to:` under the registry's mutex (the rare path: only
 * requests an audit rule matches, and refusals, get there) and holds it
 * busy while it hands its line over; a reload unlinks the sinks the new
 * rules no longer name and closes each once nobody holds it.
 *
 * File sinks: a line is appended to a bounded buffer under the sink's
 * mutex and the sink's thread writes it (write(2), O_APPEND), so a slow or
 * full disk never stalls forwarding; when the buffer is full the line is
 * dropped and counted. A failed write is logged once (until a write
 * succeeds again) and counted, with the lines it lost. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "kd-arena.h"
#include "kd-hdr.h"
#include "kd-records.h"
#include "kd-render.h"
#include "kd-schema.h"
#include "kd-summary.h"
#include "kd-topics.h"
#include "kd-tree.h"
#include "px-audit.h"
#include "px-ksink.h"
#include "px-rules.h"
#include "rule.h"

enum { PA_FILE = 0, PA_KAFKA };

struct pa_sink {
	struct pa_sink *next;
	struct px_audit *a;
	int kind;
	char *key;      /* identity: "file:PATH" or "kafka:..." */
	char name[300]; /* for metrics and logs */
	_Atomic unsigned busy;
	int keep; /* px_audit_check: the new rules name it */
	/* file */
	char path[PATH_MAX];
	int fd;
	pthread_t thread;
	int started;
	pthread_mutex_t mu; /* buf, lines, reopen, stop */
	pthread_cond_t cond;
	struct kd_wbuf buf;
	uint64_t lines;
	size_t cap;
	int reopen, stop;
	int failing; /* writes fail: logged once until one succeeds */
	/* kafka */
	struct px_ksink *ks;
	char *topic;
	_Atomic uint64_t records, written, dropped, errors;
};

struct px_audit {
	pthread_mutex_t mu; /* sinks */
	struct pa_sink *sinks;
	struct pa_sink *deflt; /* audit_log; not in the list */
	char *upstream;
	size_t file_cap;
	px_audit_log_fn *log;
	void *log_arg;
};

/* What a request leaves for its response: the audit rules whose `log:`
 * needs the response, the request's summary, and for a Fetch's records the
 * topics each rule matched. */
struct pa_want {
	const struct rule *rule;
	char **topics; /* records of a Fetch: topic names the rule matched */
	unsigned ntopics;
};

struct px_audit_pend {
	struct rule_set *rs; /* a reference: the rules stay while the request is in flight */
	struct kd_summary *sum;
	struct pa_want want[RULE_MAX_HITS];
	unsigned nwant;
	size_t copy; /* response bytes wanted */
};

static void alog(struct px_audit *a, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void alog(struct px_audit *a, int level, const char *fmt, ...)
{
	char msg[700];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (a->log)
		a->log(a->log_arg, level, msg);
	else
		fprintf(stderr, "kwire: %s\n", msg);
}

#define PA_INC(s, f, n) atomic_fetch_add_explicit(&(s)->f, (n), memory_order_relaxed)
#define PA_GET(s, f) atomic_load_explicit(&(s)->f, memory_order_relaxed)

/* ---- file sinks ---- */

static int file_open(struct pa_sink *s, char *err, size_t errlen)
{
	int fd = open(s->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0) {
		snprintf(err, errlen, "audit: cannot open %s: %s", s->path, strerror(errno));
		return -1;
	}
	s->fd = fd;
	return 0;
}

/* Writes one batch of lines (on the sink's thread). */
static void file_write(struct pa_sink *s, const uint8_t *p, size_t len, uint64_t lines)
{
	char err[PATH_MAX + 64];
	if (s->fd < 0 && file_open(s, err, sizeof(err))) {
		PA_INC(s, errors, 1);
		PA_INC(s, dropped, lines);
		if (!s->failing)
			alog(s->a, 0, "%s (audit records are dropped and counted until it opens)",
			     err);
		s->failing = 1;
		return;
	}
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(s->fd, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			PA_INC(s, errors, 1);
			PA_INC(s, dropped, lines);
			if (!s->failing)
				alog(
				    s->a, 0,
				    "audit: writing %s failed: %s (records are dropped and counted "
				    "until a write succeeds)",
				    s->path, n < 0 ? strerror(errno) : "nothing written");
			s->failing = 1;
			return;
		}
		off += (size_t)n;
	}
	if (s->failing)
		alog(s->a, 1, "audit: writing %s again", s->path);
	s->failing = 0;
	PA_INC(s, written, lines);
}

static void *file_main(void *arg)
{
	struct pa_sink *s = arg;
	struct kd_wbuf local = {0};
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->buf.len && !s->reopen && !s->stop)
			pthread_cond_wait(&s->cond, &s->mu);
		int reopen = s->reopen, stop = s->stop;
		s->reopen = 0;
		struct kd_wbuf t = local;
		local = s->buf;
		s->buf = t;
		uint64_t lines = s->lines;
		s->lines = 0;
		pthread_mutex_unlock(&s->mu);
		if (reopen) {
			/* Log rotation: the file was moved away; a new one is made
			 * under the same name. */
			char err[PATH_MAX + 64];
			if (s->fd >= 0)
				close(s->fd);
			s->fd = -1;
			if (file_open(s, err, sizeof(err))) {
				PA_INC(s, errors, 1);
				alog(s->a, 0, "%s", err);
				s->failing = 1;
			}
		}
		if (local.len)
			file_write(s, local.p, local.len, lines);
		local.len = 0;
		local.err = 0;
		pthread_mutex_lock(&s->mu);
		if (stop && !s->buf.len)
			break;
	}
	pthread_mutex_unlock(&s->mu);
	kd_wbuf_free(&local);
	return NULL;
}

/* Queues one line (without its newline) to a file sink. */
static void file_put(struct pa_sink *s, const uint8_t *p, size_t len)
{
	pthread_mutex_lock(&s->mu);
	if (s->buf.len + len + 1 > s->cap) {
		pthread_mutex_unlock(&s->mu);
		PA_INC(s, dropped, 1);
		return;
	}
	kd_w_raw(&s->buf, p, len);
	kd_w_raw(&s->buf, "\n", 1);
	if (s->buf.err) {
		s->buf.len = 0; /* out of memory: what was queued is lost, and counted */
		s->buf.err = 0;
		PA_INC(s, dropped, s->lines + 1);
		s->lines = 0;
	} else {
		s->lines++;
	}
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mu);
}

/* ---- sinks ---- */

static void sink_close(struct pa_sink *s)
{
	if (!s)
		return;
	if (s->kind == PA_FILE) {
		if (s->started) {
			pthread_mutex_lock(&s->mu);
			s->stop = 1;
			pthread_cond_signal(&s->cond);
			pthread_mutex_unlock(&s->mu);
			pthread_join(s->thread, NULL);
		}
		if (s->fd >= 0)
			close(s->fd);
		kd_wbuf_free(&s->buf);
	} else {
		px_ksink_free(&s->ks);
	}
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cond);
	free(s->key);
	free(s->topic);
	free(s);
}

static void ks_log(void *arg, int level, const char *msg)
{
	struct px_audit *a = arg;
	alog(a, level, "audit: %s", msg);
}

/* The identity of rule's sink into buf (a file relative to dir). Returns
 * 0, or -1 when the rule writes to the default sink. */
static int sink_key(const struct rule *rule, const char *dir, char *buf, size_t cap)
{
	const struct rule_sink *k = &rule->sink;
	if (k->file) {
		if (k->file[0] == '/' || !dir[0])
			snprintf(buf, cap, "file:%s", k->file);
		else
			snprintf(buf, cap, "file:%s/%s", dir, k->file);
		return 0;
	}
	if (!k->kafka)
		return -1;
	int n = snprintf(buf, cap, "kafka:%s@%s|%" PRId64, k->kafka,
	                 k->bootstrap ? k->bootstrap : "", k->queue_bytes);
	for (unsigned i = 0; i < k->nprops && n > 0 && (size_t)n < cap; i++)
		n += snprintf(buf + n, cap - (size_t)n, "|%s", k->props[i]);
	return 0;
}

static struct pa_sink *sink_new(struct px_audit *a, const char *key, const struct rule *rule,
                                char *err, size_t errlen)
{
	struct pa_sink *s = calloc(1, sizeof(*s));
	if (!s || !(s->key = strdup(key))) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->a = a;
	s->fd = -1;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cond, NULL);
	if (!strncmp(key, "file:", 5)) {
		s->kind = PA_FILE;
		s->cap = a->file_cap;
		if (strlen(key + 5) >= sizeof(s->path)) {
			snprintf(err, errlen, "audit: %s: path too long", key + 5);
			goto fail;
		}
		snprintf(s->path, sizeof(s->path), "%s", key + 5);
		snprintf(s->name, sizeof(s->name), "%.299s", s->path);
		if (file_open(s, err, errlen))
			goto fail;
		if (pthread_create(&s->thread, NULL, file_main, s)) {
			snprintf(err, errlen, "audit: cannot start the writer of %s", s->path);
			goto fail;
		}
		s->started = 1;
		return s;
	}
	const struct rule_sink *k = &rule->sink;
	s->kind = PA_KAFKA;
	const char *boot = k->bootstrap ? k->bootstrap : a->upstream;
	snprintf(s->name, sizeof(s->name), "kafka:%s@%s", k->kafka, boot ? boot : "");
	if (!k->kafka[0]) {
		snprintf(err, errlen, "audit rule '%s': the Kafka topic is empty", rule->name);
		goto fail;
	}
	s->topic = strdup(k->kafka);
	const char **props = calloc(k->nprops + 1, sizeof(*props));
	if (!s->topic || !props) {
		free(props);
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (unsigned i = 0; i < k->nprops; i++)
		props[i] = k->props[i];
	struct px_ksink_conf kc = {
	    .name = s->name,
	    .bootstrap = boot,
	    .props = props,
	    .max_queue_bytes = (size_t)k->queue_bytes,
	    .log = ks_log,
	    .log_arg = a,
	};
	char kerr[400];
	s->ks = px_ksink_new(&kc, kerr, sizeof(kerr));
	free(props);
	if (!s->ks) {
		snprintf(err, errlen, "audit rule '%s': %s", rule->name, kerr);
		goto fail;
	}
	return s;
fail:
	sink_close(s);
	return NULL;
}

/* Hands one line to s (the caller holds it busy). key: the message key
 * of a Kafka sink (the event's rule). */
static void sink_put(struct pa_sink *s, const struct kd_wbuf *w, const char *key)
{
	PA_INC(s, records, 1);
	if (s->kind == PA_FILE)
		file_put(s, w->p, w->len);
	else if (px_ksink_produce(s->ks, s->topic, -1, key, strlen(key), w->p, w->len, NULL, 0, 0,
	                          NULL) != PX_KSINK_QUEUED)
		PA_INC(s, dropped, 1);
}

/* The sink of rule (the default sink when it names none), held busy, or
 * NULL. Release with sink_done. */
static struct pa_sink *sink_get(struct px_audit *a, const struct rule_set *rs,
                                const struct rule *rule)
{
	char key[2048];
	char dir[PATH_MAX];
	const char *slash = rs->path ? strrchr(rs->path, '/') : NULL;
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - rs->path) : 0,
	         slash ? rs->path : "");
	if (sink_key(rule, dir, key, sizeof(key)) < 0 ||
	    (a->deflt && !strcmp(key, a->deflt->key))) {
		if (a->deflt)
			PA_INC(a->deflt, busy, 1);
		return a->deflt;
	}
	pthread_mutex_lock(&a->mu);
	struct pa_sink *s = a->sinks;
	while (s && strcmp(s->key, key))
		s = s->next;
	if (s)
		PA_INC(s, busy, 1);
	pthread_mutex_unlock(&a->mu);
	return s;
}

static void sink_done(struct pa_sink *s)
{
	if (s)
		atomic_fetch_sub_explicit(&s->busy, 1, memory_order_release);
}

int px_audit_check(void *arg, struct rule_set *rs, char *err, size_t errlen)
{
	struct px_audit *a = arg;
	char dir[PATH_MAX], key[2048];
	const char *slash = rs->path ? strrchr(rs->path, '/') : NULL;
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - rs->path) : 0,
	         slash ? rs->path : "");
	struct pa_sink *fresh = NULL; /* opened for this set, not yet in the registry */
	pthread_mutex_lock(&a->mu);
	for (struct pa_sink *s = a->sinks; s; s = s->next)
		s->keep = 0;
	pthread_mutex_unlock(&a->mu);
	for (unsigned i = 0; i < rs->n; i++) {
		const struct rule *rule = &rs->rules[i];
		if (rule->section != RULE_AUDIT)
			continue;
		if (sink_key(rule, dir, key, sizeof(key)) < 0 ||
		    (a->deflt && !strcmp(key, a->deflt->key))) {
			/* The default sink; a rule that records nothing needs none. */
			if (!a->deflt && rule->log != RULE_LOG_NONE) {
				snprintf(
				    err, errlen,
				    "%s:%u:%u: audit rule '%s' says nowhere 'to', and the proxy "
				    "has no audit_log to write to",
				    rs->path ? rs->path : "rules", rule->line, rule->col,
				    rule->name);
				goto fail;
			}
			continue;
		}
		struct pa_sink *s;
		pthread_mutex_lock(&a->mu); /* only this thread changes the list */
		for (s = a->sinks; s && strcmp(s->key, key); s = s->next)
			;
		if (s)
			s->keep = 1;
		pthread_mutex_unlock(&a->mu);
		if (s)
			continue;
		for (s = fresh; s && strcmp(s->key, key); s = s->next)
			;
		if (s)
			continue;
		char serr[600];
		if (!(s = sink_new(a, key, rule, serr, sizeof(serr)))) {
			snprintf(err, errlen, "%s:%u:%u: %s", rs->path ? rs->path : "rules",
			         rule->line, rule->col, serr);
			goto fail;
		}
		s->keep = 1;
		s->next = fresh;
		fresh = s;
		alog(a, 2, "audit: writing to %s", s->name);
	}
	/* Publish: the kept sinks and the new ones; the rest are unlinked and
	 * closed once no writer holds them. */
	pthread_mutex_lock(&a->mu);
	struct pa_sink *gone = NULL, **pp = &a->sinks;
	while (*pp) {
		struct pa_sink *s = *pp;
		if (s->keep) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		s->next = gone;
		gone = s;
	}
	*pp = fresh;
	pthread_mutex_unlock(&a->mu);
	while (gone) {
		struct pa_sink *s = gone;
		gone = s->next;
		while (atomic_load_explicit(&s->busy, memory_order_acquire))
			sched_yield();
		alog(a, 2, "audit: closing %s (no rule writes to it any more)", s->name);
		sink_close(s);
	}
	return 0;
fail:
	while (fresh) {
		struct pa_sink *s = fresh;
		fresh = s->next;
		sink_close(s);
	}
	return -1;
}

struct px_audit *px_audit_new(const struct px_audit_conf *conf, char *err, size_t errlen)
{
	struct px_audit *a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&a->mu, NULL);
	a->log = conf->log;
	a->log_arg = conf->log_arg;
	a->file_cap = conf->file_buffer_bytes ? conf->file_buffer_bytes : PX_AUDIT_FILE_BUFFER;
	if (conf->upstream && !(a->upstream = strdup(conf->upstream))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (conf->default_file) {
		char key[PATH_MAX + 8];
		snprintf(key, sizeof(key), "file:%s", conf->default_file);
		if (!(a->deflt = sink_new(a, key, NULL, err, errlen)))
			goto fail;
	}
	return a;
fail:
	free(a->upstream);
	pthread_mutex_destroy(&a->mu);
	free(a);
	return NULL;
}

struct px_audit *px_audit_for(const struct px_conf *conf, struct px_rules *rules,
                              px_audit_log_fn *log, void *log_arg, char *err, size_t errlen)
{
	char up[PX_UPSTREAM_MAX * (PX_HOST_MAX + 8)];
	size_t n = 0;
	up[0] = '\0';
	for (unsigned i = 0; i < conf->nupstreams && n < sizeof(up); i++)
		n += (size_t)snprintf(up + n, sizeof(up) - n, "%s%s:%u", i ? "," : "",
		                      conf->upstreams[i].host, conf->upstreams[i].port);
	struct px_audit_conf ac = {
	    .default_file = conf->audit_log,
	    .upstream = up,
	    .log = log,
	    .log_arg = log_arg,
	};
	struct px_audit *a = px_audit_new(&ac, err, errlen);
	if (a && rules && px_rules_set_check(rules, px_audit_check, a, err, errlen))
		px_audit_free(&a);
	return a;
}

void px_audit_free(struct px_audit **pa)
{
	struct px_audit *a = *pa;
	*pa = NULL;
	if (!a)
		return;
	while (a->sinks) {
		struct pa_sink *s = a->sinks;
		a->sinks = s->next;
		sink_close(s);
	}
	sink_close(a->deflt);
	free(a->upstream);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

static void file_reopen(struct pa_sink *s)
{
	if (s->kind != PA_FILE)
		return;
	pthread_mutex_lock(&s->mu);
	s->reopen = 1;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mu);
}

void px_audit_reopen(struct px_audit *a)
{
	if (a->deflt)
		file_reopen(a->deflt);
	pthread_mutex_lock(&a->mu);
	for (struct pa_sink *s = a->sinks; s; s = s->next)
		file_reopen(s);
	pthread_mutex_unlock(&a->mu);
}

/* ---- the lines ---- */

/* {"ts":...,"event":EVENT,"rule":RULE,"client":...,... (left open). */
static void ev_head(struct kd_wbuf *w, const char *event, const char *rule,
                    const struct px_audit_who *who)
{
	struct timespec ts;
	char tbuf[40];
	clock_gettime(CLOCK_REALTIME, &ts);
	kd_sum_fmt_ts((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, tbuf, sizeof(tbuf));
	kd_w_cstr(w, "{\"ts\":");
	kd_json_cstr(w, tbuf);
	kd_w_cstr(w, ",\"event\":");
	kd_json_cstr(w, event);
	kd_w_cstr(w, ",\"rule\":");
	kd_json_cstr(w, rule);
	kd_w_cstr(w, ",\"client\":");
	kd_json_cstr(w, who->client_addr ? who->client_addr : "");
	kd_w_cstr(w, ",\"client_id\":");
	kd_json_view(w, &who->client_id);
	kd_w_cstr(w, ",\"principal\":");
	kd_json_cstr(w, who->principal ? who->principal : "");
	const char *api = kd_api_name(who->api_key);
	kd_w_fmt(w, ",\"broker\":%d,\"api\":", who->broker_id);
	if (api)
		kd_json_cstr(w, api);
	else
		kd_w_fmt(w, "\"%d\"", who->api_key);
	kd_w_fmt(w, ",\"api_key\":%d,\"version\":%d,\"correlation_id\":%d", who->api_key,
	         who->api_version, who->correlation_id);
}

/* Writes w to each distinct sink of sinks[0..n) and releases them. */
static void put_all(struct pa_sink **sinks, unsigned n, const struct kd_wbuf *w, const char *key)
{
	for (unsigned i = 0; i < n; i++) {
		int seen = 0;
		for (unsigned k = 0; k < i; k++)
			seen |= sinks[k] == sinks[i];
		if (sinks[i] && !seen && !w->err)
			sink_put(sinks[i], w, key);
	}
	for (unsigned i = 0; i < n; i++)
		sink_done(sinks[i]);
}

/* The sinks of an event about a request: the default one and those of
 * the audit rules that matched it. Returns how many were filled (held
 * busy; NULLs included). */
static unsigned event_sinks(struct px_audit *a, const struct rule_set *rs,
                            const struct rule_hit *audits, unsigned naudits, struct pa_sink **out)
{
	unsigned n = 0;
	if (a->deflt) {
		PA_INC(a->deflt, busy, 1);
		out[n++] = a->deflt;
	}
	for (unsigned i = 0; i < naudits && rs; i++)
		out[n++] = sink_get(a, rs, audits[i].rule);
	return n;
}

/* A refusal: the whole request, or the refused topics of a split. */
static void audit_refusal(struct px_audit *a, const struct rule_set *rs, const struct rule_judge *j,
                          const struct px_judged *jd, const struct px_audit_who *who)
{
	static const char *const acts[] = {"forwarded", "answered", "dropped",
	                                   "split",     "closed",   "rewritten"};
	const struct rule *rule = jd->rule;
	struct kd_wbuf w = {0};
	ev_head(&w, rule && rule->section == RULE_POLICY ? "policy" : "deny",
	        rule ? rule->name : "?", who);
	const char *err = kd_error_name(jd->error);
	kd_w_cstr(&w, ",\"error\":");
	if (err)
		kd_json_cstr(&w, err);
	else
		kd_w_fmt(&w, "\"%d\"", jd->error);
	kd_w_fmt(&w, ",\"error_code\":%d,\"action\":\"%s\",\"topics\":[", jd->error,
	         acts[(unsigned)jd->act < sizeof(acts) / sizeof(acts[0]) ? jd->act : 0]);
	const struct rule_req *req = &j->facts.req;
	unsigned nt = 0;
	for (unsigned t = 0; t < req->ntopics; t++) {
		if (!j->tv[t].error && jd->act == PX_J_SPLIT)
			continue;
		kd_w_cstr(&w, nt++ ? "," : "");
		kd_json_view(&w, &req->topics[t].name);
	}
	kd_w_cstr(&w, "]");
	if (jd->act == PX_J_SPLIT) {
		/* Each refused topic with its own rule and error. */
		kd_w_cstr(&w, ",\"refused\":[");
		nt = 0;
		for (unsigned t = 0; t < req->ntopics; t++) {
			if (!j->tv[t].error)
				continue;
			kd_w_cstr(&w, nt++ ? ",{\"topic\":" : "{\"topic\":");
			kd_json_view(&w, &req->topics[t].name);
			kd_w_cstr(&w, ",\"rule\":");
			kd_json_cstr(&w, j->tv[t].rule ? j->tv[t].rule->name : "?");
			const char *e = kd_error_name(j->tv[t].error);
			kd_w_fmt(&w, ",\"error\":\"%s\"}", e ? e : "?");
		}
		kd_w_cstr(&w, "]");
	}
	kd_w_cstr(&w, "}");
	struct pa_sink *sinks[RULE_MAX_HITS + 1];
	unsigned n = event_sinks(a, rs, jd->audits, jd->naudits, sinks);
	put_all(sinks, n, &w, rule ? rule->name : "");
	kd_wbuf_free(&w);
}

void px_audit_throttle(struct px_audit *a, const struct rule_set *rs,
                       const struct px_audit_who *who, const char *rule, const char *key,
                       uint32_t ms, const struct rule_hit *audits, unsigned naudits)
{
	struct kd_wbuf w = {0};
	ev_head(&w, "throttle", rule, who);
	kd_w_cstr(&w, ",\"key\":");
	kd_json_cstr(&w, key);
	kd_w_fmt(&w, ",\"throttle_ms\":%u}", ms);
	struct pa_sink *sinks[RULE_MAX_HITS + 1];
	unsigned n = event_sinks(a, rs, audits, rs ? naudits : 0, sinks);
	put_all(sinks, n, &w, rule);
	kd_wbuf_free(&w);
}

/* ---- records ---- */

static int redacted(const struct rule *rule, const struct kd_view *name)
{
	for (unsigned i = 0; i < rule->nredact; i++)
		if (strlen(rule->redact_headers[i]) == name->len &&
		    !strncasecmp(rule->redact_headers[i], (const char *)name->p, name->len))
			return 1;
	return 0;
}

/* "key":..., "key_size":N for a key or value: null, "[redacted]", or its
 * first max_value_bytes bytes. */
static void rec_bytes(struct kd_wbuf *w, const char *what, const struct kd_view *v, int redact,
                      uint32_t max)
{
	kd_w_fmt(w, ",\"%s\":", what);
	if (v->null || !v->p) {
		kd_w_cstr(w, "null");
		return;
	}
	if (redact)
		kd_w_cstr(w, "\"[redacted]\"");
	else
		kd_json_str(w, v->p, v->len < max ? v->len : max);
	kd_w_fmt(w, ",\"%s_size\":%u", what, v->len);
	if (!redact && v->len > max)
		kd_w_fmt(w, ",\"%s_truncated\":true", what);
}

/* A line of records goes out once it holds this much, and the request's
 * further records follow in the next line ("part": 2, ...): a Produce of
 * thousands of records stays whole in the audit, and a line stays well
 * under a Kafka sink's message.max.bytes (1,000,000 by default). */
#define PA_LINE_MAX (256u * 1024)

struct rec_out {
	struct kd_wbuf *w;
	const struct rule *rule;
	const struct px_audit_who *who;
	struct pa_sink *sink; /* held busy */
	int fetch;            /* offsets are the broker's (a Fetch response) */
	unsigned n;           /* records in the line */
	unsigned part;        /* lines written before this one */
	struct kd_rec_iter it;
	int it_ok;
};

static void rec_line_start(struct rec_out *o)
{
	o->w->len = 0;
	ev_head(o->w, "records", o->rule->name, o->who);
	kd_w_cstr(o->w, ",\"records\":[");
	o->n = 0;
}

/* Closes the line (problem: why records are missing, or NULL) and hands
 * it to the sink. */
static void rec_line_end(struct rec_out *o, const char *problem)
{
	kd_w_cstr(o->w, "]");
	if (o->part || o->w->len > PA_LINE_MAX)
		kd_w_fmt(o->w, ",\"part\":%u", ++o->part);
	if (problem) {
		kd_w_cstr(o->w, ",\"problem\":");
		kd_json_cstr(o->w, problem);
	}
	kd_w_cstr(o->w, "}");
	if (o->sink && !o->w->err)
		sink_put(o->sink, o->w, o->rule->name);
}

/* Appends the records of one RECORDS blob of topic/partition. */
static void rec_blob(struct rec_out *o, const struct kd_view *topic, int32_t part,
                     const struct kd_view *blob)
{
	struct kd_batch *b;
	struct kd_record rec;
	int rc;
	if (!o->it_ok) {
		kd_rec_iter_init(&o->it, blob->p, blob->len, NULL);
		o->it_ok = 1;
	} else {
		kd_rec_iter_reset(&o->it, blob->p, blob->len);
	}
	while ((rc = kd_rec_next_batch(&o->it, &b)) != 0) {
		if (rc < 0 || rc == KD_REC_TRUNCATED)
			break;
		if (b->control)
			continue; /* transaction markers carry no data */
		while (kd_rec_next_record(&o->it, &rec) == 1) {
			if (o->w->len > PA_LINE_MAX) {
				rec_line_end(o, NULL);
				rec_line_start(o);
			}
			struct kd_wbuf *w = o->w;
			kd_w_cstr(w, o->n++ ? ",{\"topic\":" : "{\"topic\":");
			kd_json_view(w, topic);
			kd_w_fmt(w, ",\"partition\":%d", part);
			if (o->fetch)
				kd_w_fmt(w, ",\"offset\":%" PRId64, rec.offset);
			kd_w_fmt(w, ",\"timestamp\":%" PRId64, rec.timestamp);
			rec_bytes(w, "key", &rec.key, o->rule->redact_key,
			          o->rule->max_value_bytes);
			rec_bytes(w, "value", &rec.value, o->rule->redact_value,
			          o->rule->max_value_bytes);
			kd_w_cstr(w, ",\"headers\":[");
			struct kd_rec_hdr_iter hi;
			struct kd_header h;
			unsigned nh = 0;
			kd_rec_headers_init(&hi, &rec);
			while (kd_rec_next_header(&hi, &h) == 1) {
				kd_w_cstr(w, nh++ ? ",{\"key\":" : "{\"key\":");
				kd_json_str(w, h.key.p, h.key.len);
				kd_w_cstr(w, ",\"value\":");
				if (h.value.null || !h.value.p)
					kd_w_cstr(w, "null");
				else if (redacted(o->rule, &h.key))
					kd_w_cstr(w, "\"[redacted]\"");
				else
					kd_json_str(w, h.value.p,
					            h.value.len < o->rule->max_value_bytes
					                ? h.value.len
					                : o->rule->max_value_bytes);
				kd_w_cstr(w, "}");
			}
			kd_w_cstr(w, "]}");
		}
	}
}

/* A topic filter for rec_walk: records of topics the rule matched. */
struct rec_filter {
	const struct rule_req *req; /* request facts: rule_matches per topic */
	const struct rule_topic_verdict *tv;
	char **names; /* or names (a Fetch response) */
	unsigned nnames;
};

static int topic_wanted(const struct rec_out *o, const struct rec_filter *f,
                        const struct kd_view *topic)
{
	if (f->req) {
		for (unsigned t = 0; t < f->req->ntopics; t++) {
			const struct kd_view *n = &f->req->topics[t].name;
			if (n->len == topic->len && !memcmp(n->p, topic->p, n->len))
				return !f->tv[t].error &&
				       rule_matches(o->rule, f->req, (int)t, NULL);
		}
		return 0;
	}
	for (unsigned i = 0; i < f->nnames; i++)
		if (strlen(f->names[i]) == topic->len && !memcmp(f->names[i], topic->p, topic->len))
			return 1;
	return 0;
}

/* Walks a decoded Produce request or Fetch response: every RECORDS field
 * belongs to the topic and partition its enclosing elements name. */
static void rec_walk(struct rec_out *o, const struct rec_filter *f, const struct kd_node *n,
                     struct kd_view topic, int32_t part, const struct kd_topics *map,
                     unsigned depth)
{
	static const uint8_t zero[16];
	if (depth > 16)
		return;
	for (uint32_t k = 0; k < n->nkids; k++) {
		const struct kd_node *c = &n->kids[k];
		if (!c->field)
			continue;
		if (c->type == KD_T_STRING && c->field->entity == KD_ENT_TOPIC_NAME && !c->null)
			topic = c->val.v;
		else if (c->type == KD_T_UUID && !strcmp(c->field->name, "TopicId") &&
		         memcmp(c->val.uuid, zero, 16) && map) {
			struct kd_view nm = kd_topics_get(map, c->val.uuid);
			if (nm.p && !nm.null)
				topic = nm;
		} else if (c->type == KD_T_INT32 && (!strcmp(c->field->name, "PartitionIndex") ||
		                                     !strcmp(c->field->name, "Index") ||
		                                     !strcmp(c->field->name, "Partition")))
			part = (int32_t)c->val.i;
	}
	for (uint32_t k = 0; k < n->nkids; k++) {
		const struct kd_node *c = &n->kids[k];
		if (c->type == KD_T_RECORDS && !c->null && c->val.v.len && topic.p &&
		    topic_wanted(o, f, &topic))
			rec_blob(o, &topic, part, &c->val.v);
		else if (c->type == KD_T_ARRAY || c->type == KD_T_STRUCT)
			rec_walk(o, f, c, topic, part, map, depth + 1);
	}
}

/* One "records" line for rule from a decoded tree t. */
static void audit_records(struct px_audit *a, const struct rule_set *rs, const struct rule *rule,
                          const struct px_audit_who *who, const struct kd_tree *t,
                          const struct rec_filter *f, const struct kd_topics *map, int fetch,
                          const char *problem)
{
	struct kd_wbuf w = {0};
	struct rec_out o = {
	    .w = &w, .rule = rule, .who = who, .sink = sink_get(a, rs, rule), .fetch = fetch};
	rec_line_start(&o);
	if (t && t->root)
		rec_walk(&o, f, t->root, (struct kd_view){0}, -1, map, 0);
	if (o.it_ok)
		kd_rec_iter_free(&o.it);
	rec_line_end(&o, problem);
	sink_done(o.sink);
	kd_wbuf_free(&w);
}

/* ---- the request and its response ---- */

struct px_audit_pend *px_audit_request(struct px_audit *a, const struct rule_set *rs,
                                       const struct rule_judge *j, const struct px_judged *jd,
                                       const struct px_audit_who *who)
{
	if (jd->act != PX_J_FORWARD && jd->rule)
		audit_refusal(a, rs, j, jd, who);
	struct px_audit_pend *pend = NULL;
	for (unsigned i = 0; i < jd->naudits; i++) {
		const struct rule *rule = jd->audits[i].rule;
		if (rule->log == RULE_LOG_NONE)
			continue;
		/* A refused request has no response to read, and its refusal
		 * was recorded above; what is forwarded of a split is. */
		if (jd->act == PX_J_ANSWER || jd->act == PX_J_DROP || jd->act == PX_J_CLOSE)
			continue;
		if (rule->log == RULE_LOG_RECORDS && who->api_key == KD_API_PRODUCE) {
			struct rec_filter f = {.req = &j->facts.req, .tv = j->tv};
			audit_records(a, rs, rule, who, &j->tree, &f, NULL, 0,
			              j->tree.root ? NULL : "the request did not decode");
			continue;
		}
		/* The summary, or a Fetch's records: at the response. */
		if (!pend && !(pend = calloc(1, sizeof(*pend))))
			return NULL;
		struct pa_want *wt = &pend->want[pend->nwant++];
		wt->rule = rule;
		if (rule->log == RULE_LOG_RECORDS && who->api_key == KD_API_FETCH) {
			const struct rule_req *req = &j->facts.req;
			wt->topics = calloc(req->ntopics ? req->ntopics : 1, sizeof(char *));
			for (unsigned t = 0; wt->topics && t < req->ntopics; t++)
				if (rule_matches(rule, req, (int)t, NULL))
					wt->topics[wt->ntopics++] =
					    strndup((const char *)req->topics[t].name.p,
					            req->topics[t].name.len);
		} else if (!pend->sum && (pend->sum = malloc(sizeof(*pend->sum)))) {
			kd_sum_init(pend->sum);
			kd_sum_request(pend->sum, who->api_key, who->api_version,
			               who->correlation_id, who->client_id,
			               j->tree.raw.p ? j->tree.raw.p : (const uint8_t *)"",
			               j->tree.raw.p ? j->tree.raw.len : 0);
		}
		if (pend->copy < rule->max_bytes)
			pend->copy = rule->max_bytes;
	}
	if (pend) {
		rule_set_ref((struct rule_set *)rs);
		pend->rs = (struct rule_set *)rs;
	}
	return pend;
}

size_t px_audit_copy_need(const struct px_audit_pend *pend, size_t total)
{
	return pend && pend->copy < total ? pend->copy : total;
}

void px_audit_response(struct px_audit *a, struct px_audit_pend *pend, const struct px_pair *pair,
                       const struct kd_topics *map)
{
	struct px_audit_who who = {
	    .client_addr = pair->client_addr,
	    .client_id = pair->client_id,
	    .principal = pair->principal ? pair->principal : "",
	    .broker_id = pair->broker_id,
	    .api_key = pair->api_key,
	    .api_version = pair->api_version,
	    .correlation_id = pair->correlation_id,
	};
	/* The response body, when it came and was copied. */
	const uint8_t *body = NULL;
	size_t blen = 0;
	struct kd_resp_hdr hdr;
	if (pair->resp_frame && pair->resp_frame_len > 4 &&
	    kd_resp_hdr_parse(pair->resp_frame + 4, pair->resp_frame_len - 4, pair->api_key,
	                      pair->api_version, &hdr) > 0 &&
	    4 + hdr.len <= pair->resp_frame_len) {
		body = pair->resp_frame + 4 + hdr.len;
		blen = pair->resp_frame_len - 4 - hdr.len;
	}
	struct kd_arena arena = {0};
	struct kd_tree t = {0};
	int decoded = 0, merged = 0;
	for (unsigned i = 0; i < pend->nwant; i++) {
		const struct pa_want *wt = &pend->want[i];
		if (wt->topics) {
			const char *problem = NULL;
			if (!decoded && body && !pair->resp_trunc)
				decoded = kd_tree_decode(&t, &arena, pair->api_key,
				                         pair->api_version, 0, body, blen) == KD_OK
				              ? 1
				              : -1;
			if (pair->no_response)
				problem = "no response";
			else if (pair->resp_trunc)
				problem = "response larger than max_bytes: records not read";
			else if (decoded < 0 || !body)
				problem = "the response did not decode";
			struct rec_filter f = {.names = wt->topics, .nnames = wt->ntopics};
			audit_records(a, pend->rs, wt->rule, &who, decoded > 0 ? &t : NULL, &f, map,
			              1, problem);
			continue;
		}
		if (!pend->sum)
			continue;
		struct kd_summary *sum = pend->sum;
		if (!merged) {
			merged = 1;
			sum->ts_us = (int64_t)pair->t_req_us;
			sum->latency_us = pair->no_response ? -1 : (int64_t)pair->latency_us;
			snprintf(sum->client, sizeof(sum->client), "%s",
			         pair->client_addr ? pair->client_addr : "");
			snprintf(sum->broker, sizeof(sum->broker), "%s",
			         pair->upstream_addr ? pair->upstream_addr : "");
			snprintf(sum->principal, sizeof(sum->principal), "%s", who.principal);
			if (pair->no_response)
				sum->flags |= KD_SUM_NO_RESP;
			else if (body)
				kd_sum_response(sum, body, blen);
		}
		struct kd_wbuf w = {0};
		ev_head(&w, "summary", wt->rule->name, &who);
		kd_w_cstr(&w, ",\"summary\":");
		kd_sum_json(sum, &w);
		kd_w_cstr(&w, "}");
		struct pa_sink *s = sink_get(a, pend->rs, wt->rule);
		put_all(&s, 1, &w, wt->rule->name);
		kd_wbuf_free(&w);
	}
	kd_arena_free(&arena);
}

void px_audit_pend_free(struct px_audit_pend **ppend)
{
	struct px_audit_pend *pend = *ppend;
	*ppend = NULL;
	if (!pend)
		return;
	for (unsigned i = 0; i < pend->nwant; i++) {
		for (unsigned k = 0; k < pend->want[i].ntopics; k++)
			free(pend->want[i].topics[k]);
		free(pend->want[i].topics);
	}
	free(pend->sum);
	rule_set_unref(&pend->rs);
	free(pend);
}

/* ---- counters ---- */

static void stats_of(const struct pa_sink *s, struct px_audit_sink_stats *o)
{
	struct pa_sink *m = (struct pa_sink *)s; /* atomics are only read */
	snprintf(o->name, sizeof(o->name), "%s", s->name);
	o->records = PA_GET(m, records);
	o->written = PA_GET(m, written);
	o->dropped = PA_GET(m, dropped);
	o->errors = PA_GET(m, errors);
	if (s->kind == PA_KAFKA) {
		struct px_ksink_stats ks;
		px_ksink_stats(s->ks, &ks);
		o->written = ks.delivered;
		o->dropped += ks.failed;
		o->errors += ks.errors;
	}
}

unsigned px_audit_stats(struct px_audit *a, struct px_audit_sink_stats *out, unsigned max)
{
	unsigned n = 0;
	if (a->deflt) {
		if (n < max)
			stats_of(a->deflt, &out[n]);
		n++;
	}
	pthread_mutex_lock(&a->mu);
	for (struct pa_sink *s = a->sinks; s; s = s->next) {
		if (n < max)
			stats_of(s, &out[n]);
		n++;
	}
	pthread_mutex_unlock(&a->mu);
	return n;
}

#define PA_METRICS_MAX 256 /* sinks listed in /metrics */

void px_audit_metrics(struct px_audit *a, struct kd_wbuf *w)
{
	struct px_audit_sink_stats *st = calloc(PA_METRICS_MAX, sizeof(*st));
	if (!st)
		return;
	unsigned n = px_audit_stats(a, st, PA_METRICS_MAX);
	if (n > PA_METRICS_MAX)
		n = PA_METRICS_MAX;
	static const struct {
		const char *name, *help;
	} fam[] = {
	    {"kwire_audit_records_total", "Audit records handed to the sink."},
	    {"kwire_audit_records_written_total",
	     "Audit records written (file) or acknowledged by the cluster (Kafka)."},
	    {"kwire_audit_records_dropped_total",
	     "Audit records dropped: the sink's buffer or queue was full, a write failed, or "
	     "the cluster did not take them."},
	    {"kwire_audit_sink_errors_total",
	     "Failed writes or opens (file), error events (Kafka) of the sink."},
	};
	for (unsigned f = 0; f < 4; f++) {
		kd_w_fmt(w, "# HELP %s %s\n# TYPE %s counter\n", fam[f].name, fam[f].help,
		         fam[f].name);
		for (unsigned i = 0; i < n; i++) {
			uint64_t v[] = {st[i].records, st[i].written, st[i].dropped, st[i].errors};
			kd_w_fmt(w, "%s{sink=\"", fam[f].name);
			kd_w_prom_label(w, st[i].name);
			kd_w_fmt(w, "\"} %" PRIu64 "\n", v[f]);
		}
	}
	free(st);
	/* The Kafka sinks' own producer counters. */
	struct px_ksink *ks[PA_METRICS_MAX];
	unsigned nk = 0;
	pthread_mutex_lock(&a->mu);
	for (struct pa_sink *s = a->sinks; s; s = s->next)
		if (s->kind == PA_KAFKA && nk < PA_METRICS_MAX)
			ks[nk++] = s->ks;
	px_ksink_metrics(w, "kwire_audit_kafka", ks, nk);
	pthread_mutex_unlock(&a->mu);
}
