/* px-mirror.c: `mirror:` rules in the proxy (px-mirror.h). */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "kd-api-keys-gen.h"
#include "kd-arena.h"
#include "kd-hdr.h"
#include "kd-rec-entry.h"
#include "kd-records.h"
#include "kd-render.h"
#include "kd-stream-t.h"
#include "kd-topics.h"
#include "kd-tree.h"
#include "kd.h"
#include "px-judge.h"
#include "px-ksink.h"
#include "px-mirror.h"
#include "rule-mirror.h"
#include "rule-names.h"
#include "rule.h"

#define MIRROR_RESP_MAX (1u << 20) /* a Produce or EndTxn answer is far smaller */
#define MIRROR_WARN_US (60ull * 1000000)
/* A transaction kwire saw no end of in this long is given up (Kafka's
 * transaction.max.timeout.ms default): its records are counted dropped. */
#define MIRROR_TXN_MAX_US (15ull * 60 * 1000000)
#define MIRROR_SINKS_MAX 256
#define MIRROR_NICE 10 /* the mirror thread's nice value (and its producers') */
/* Jobs are handed over in rounds: a worker wakes the mirror thread only
 * when it sleeps idle or this many jobs wait; else the thread, busy, takes
 * what came in at most MIRROR_NAP_NS later. One wakeup per round, not per
 * Produce (a futex call and two context switches on the main path). */
#define MIRROR_WAKE_JOBS 64
#define MIRROR_NAP_NS 2000000L
/* kwire's own hold (requests awaiting answers or the mirror thread, open
 * transactions): the rules' largest queue_bytes, and at least this. */
#define MIRROR_HOLD_MIN (64ll << 20)
/* Request copies are taken from a pool of buffers and given back to it:
 * a fresh buffer the size of a Produce comes from mmap and costs a page
 * fault per 4 KiB on the forwarding path (they were a third of what the
 * mirror cost the workers). The pool keeps at most this much. */
#define MIRROR_POOL_BYTES ((size_t)32 << 20)
#define MIRROR_POOL_MIN ((size_t)64 << 10) /* the smallest buffer made */

enum { MJ_PRODUCE = 1, MJ_ENDTXN = 2 };

struct px_mjob {
	struct px_mjob *next;
	struct px_mirror *m;
	/* Who sent it (the rules' header facts), judged on the mirror thread. */
	struct rule_who who;
	struct kd_view client_id; /* into req, after the frame */
	char principal[256];
	uint8_t kind;
	uint8_t acks0;      /* no answer is due: the records count as acknowledged */
	uint8_t broken;     /* the response could not be kept: nothing is acknowledged */
	uint8_t lost;       /* the connection went away before the answer */
	uint8_t req_broken; /* the request could not be copied whole */
	int16_t ver;
	struct rule_set *rs;
	uint8_t *req;   /* the request frame, copied as it is forwarded; then the client id */
	size_t req_cap; /* req's size (a pool buffer) */
	size_t req_len, req_total; /* bytes copied, of the frame's */
	uint8_t *resp;
	size_t resp_len, resp_cap;
	size_t bytes; /* counted in px_mirror.held */
};

/* A sink, made by the mirror thread for a rule's `to:`. */
struct msink {
	char *key; /* rule name, bootstrap and properties */
	struct px_ksink *ks;
	uint8_t failed; /* could not be made: logged once, records dropped */
	/* Set by the mirror thread while the sink's queue is (nearly) full:
	 * its records are then counted from their batch headers and dropped
	 * (drop_counted), as while its cluster is down (px_ksink_down). */
	_Atomic int full;
};

/* A transactional batch held until its transaction ends. */
struct mheld {
	struct mheld *next;
	unsigned sink;
	char topic[256]; /* mirror topic */
	int32_t partition;
	uint8_t by_key;
	int64_t records;
	uint8_t drop; /* its sink was down or full: counted dropped at a commit, no raw */
	size_t len;
	uint8_t raw[]; /* the batch, as produced */
};

struct mtxn {
	struct mtxn *next;
	int64_t pid;
	int16_t epoch;
	uint64_t first_us;
	struct mheld *head, *tail;
	size_t bytes;
};

/* A free buffer of the pool, its first bytes. */
struct mbuf {
	struct mbuf *next;
	size_t cap;
};

struct px_mirror {
	void (*log)(void *arg, int level, const char *msg);
	void *log_arg;
	const struct kd_topics *topics;
	pthread_t thread;
	pthread_mutex_t mu;  /* queue, stop, done_seq */
	pthread_mutex_t pmu; /* pool, pool_bytes */
	struct mbuf *pool;
	size_t pool_bytes;
	pthread_cond_t cond, done_cond;
	struct px_mjob *head, *tail;
	uint64_t enq_seq, done_seq;
	unsigned qlen; /* jobs at head */
	int idle;      /* the thread waits for work (a job wakes it) */
	int stop;
	_Atomic int64_t held;   /* bytes of jobs and held transactions */
	_Atomic int64_t budget; /* the largest queue_bytes of the mirror rules seen */
	_Atomic uint64_t warn_us;
	_Atomic uint64_t dropped, unacked, aborted, produced, delivered, failed, uncertain;
	_Atomic uint64_t lat_sum_us, lat_count;
	_Atomic uint64_t jobs;
	_Atomic uint64_t dropped_requests;
	/* mirror thread only */
	struct msink sinks[MIRROR_SINKS_MAX];
	_Atomic unsigned nsinks; /* read by /metrics */
	pthread_mutex_t smu;     /* sinks[] against /metrics */
	struct mtxn *txns;
	struct kd_arena arena;
	struct rule_facts facts;
	struct kd_rec_iter it;
	uint8_t it_ok;
	struct px_ksink_header *hdrs;
	unsigned hcap;
};

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void mlog(struct px_mirror *m, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void mlog(struct px_mirror *m, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (m->log)
		m->log(m->log_arg, level, msg);
}

/* Counts dropped records (0: a request whose records are not known) and
 * warns at most once a minute (any thread). */
static void drop(struct px_mirror *m, uint64_t records, const char *why)
{
	uint64_t total = atomic_fetch_add(&m->dropped, records) + records;
	uint64_t now = mono_us(), last = atomic_load(&m->warn_us);
	if ((!last || now - last >= MIRROR_WARN_US) &&
	    atomic_compare_exchange_strong(&m->warn_us, &last, now))
		mlog(m, 1,
		     "mirror: %s: records dropped (%" PRIu64 " in all; warned at most once a "
		     "minute)",
		     why, total);
}

/* ---- the worker's side ---- */

/* A buffer of at least need bytes (its size in *cap), from the pool when
 * one there is large enough; NULL when out of memory. Any thread. */
static uint8_t *buf_get(struct px_mirror *m, size_t need, size_t *cap)
{
	struct mbuf *b = NULL;
	pthread_mutex_lock(&m->pmu);
	for (struct mbuf **pp = &m->pool; *pp; pp = &(*pp)->next)
		if ((*pp)->cap >= need) {
			b = *pp;
			*pp = b->next;
			m->pool_bytes -= b->cap;
			break;
		}
	pthread_mutex_unlock(&m->pmu);
	if (b) {
		*cap = b->cap;
		return (uint8_t *)b;
	}
	size_t c = MIRROR_POOL_MIN;
	while (c < need && c < ((size_t)1 << 40))
		c *= 2;
	*cap = c;
	return malloc(c);
}

/* Gives p (cap bytes, from buf_get) back to the pool, or frees it. */
static void buf_put(struct px_mirror *m, uint8_t *p, size_t cap)
{
	if (!p)
		return;
	pthread_mutex_lock(&m->pmu);
	if (m->pool_bytes + cap <= MIRROR_POOL_BYTES) {
		struct mbuf *b = (struct mbuf *)(void *)p;
		b->cap = cap;
		b->next = m->pool;
		m->pool = b;
		m->pool_bytes += cap;
		p = NULL;
	}
	pthread_mutex_unlock(&m->pmu);
	free(p);
}

static void job_free(struct px_mjob *job)
{
	if (!job)
		return;
	atomic_fetch_sub(&job->m->held, (int64_t)job->bytes);
	rule_set_unref(&job->rs);
	buf_put(job->m, job->req, job->req_cap);
	free(job->resp);
	free(job);
}

/* A topic element's name in a decoded tree: Name, or the name known for
 * its TopicId (Produce v13+). */
static struct kd_view topic_name(const struct kd_topics *topics, const struct kd_node *t)
{
	struct kd_node *n = kd_node_child(t, "Name");
	if (n && !n->null)
		return n->val.v;
	n = kd_node_child(t, "TopicId");
	if (n && topics)
		return kd_topics_get(topics, n->val.uuid);
	return (struct kd_view){NULL, 0, 1};
}

struct px_mjob *px_mirror_request(struct px_mirror *m, struct rule_set *rs, int act,
                                  const struct kd_frame_info *fi, const struct rule_who *who)
{
	int16_t key = fi->req_hdr.api_key;
	if (!m || !rs->nsec[RULE_MIRROR] || fi->kind != KD_EV_REQUEST ||
	    (key != KD_API_PRODUCE && key != KD_API_END_TXN) ||
	    (act != PX_J_FORWARD && act != PX_J_SPLIT && act != PX_J_REWRITE))
		return NULL;
	size_t len = 4 + (size_t)fi->size;
	/* What kwire holds for the mirror: the largest queue_bytes of the
	 * rules, at least MIRROR_HOLD_MIN. */
	int64_t budget = MIRROR_HOLD_MIN;
	for (unsigned i = 0; i < rs->n; i++) {
		struct rule *rule = &rs->rules[i];
		if (rule->section == RULE_MIRROR && rule->mirror->queue_bytes > budget)
			budget = rule->mirror->queue_bytes;
	}
	int64_t b = atomic_load(&m->budget);
	while (budget > b && !atomic_compare_exchange_weak(&m->budget, &b, budget))
		;
	struct px_mjob *job = calloc(1, sizeof(*job));
	if (!job)
		return NULL;
	job->m = m;
	job->kind = key == KD_API_PRODUCE ? MJ_PRODUCE : MJ_ENDTXN;
	job->ver = fi->req_hdr.api_version;
	job->acks0 = (fi->flags & KD_EVF_NO_RESPONSE) != 0;
	job->who = *who;
	size_t cl = fi->req_hdr.client_id.null ? 0 : fi->req_hdr.client_id.len;
	size_t pl = who->principal.len < sizeof(job->principal) ? who->principal.len : 0;
	memcpy(job->principal, who->principal.p, pl);
	job->who.principal = (struct kd_view){(const uint8_t *)job->principal, (uint32_t)pl, 0};
	job->bytes = len + cl + sizeof(*job);
	if (atomic_fetch_add(&m->held, (int64_t)job->bytes) + (int64_t)job->bytes > budget ||
	    !(job->req = buf_get(m, len + cl, &job->req_cap))) {
		/* The records are not known yet (the body is not decoded on the
		 * forwarding path): counted from the frame's batches at once. */
		atomic_fetch_add(&m->dropped_requests, 1);
		drop(m, 0, "the mirror queue is full");
		job_free(job);
		return NULL;
	}
	memcpy(job->req + len, fi->req_hdr.client_id.p, cl);
	job->req_total = len;
	job->client_id = (struct kd_view){job->req + len, (uint32_t)cl, fi->req_hdr.client_id.null};
	rule_set_ref(rs);
	job->rs = rs;
	return job;
}

void px_mirror_req_frame(struct px_mjob *job, const uint8_t *p, size_t len)
{
	size_t cl = job->client_id.len, cap;
	uint8_t *r = buf_get(job->m, len + cl, &cap);
	if (!r) {
		job->req_broken = 1;
		return;
	}
	memcpy(r, p, len);
	memcpy(r + len, job->client_id.p, cl);
	buf_put(job->m, job->req, job->req_cap);
	job->req = r;
	job->req_cap = cap;
	job->client_id.p = r + len;
	atomic_fetch_add(&job->m->held, (int64_t)len - (int64_t)job->req_total);
	job->bytes = job->bytes - job->req_total + len;
	job->req_total = job->req_len = len;
}

int px_mirror_copy(struct evbuffer *src, size_t off, void *dst, size_t n)
{
	/* evbuffer_peek, not evbuffer_copyout_from: the latter fails on a
	 * buffer whose start is frozen, as a bufferevent's output is
	 * between its writes (the answers kwire edits whole are copied from
	 * there). */
	struct evbuffer_ptr ptr;
	struct evbuffer_iovec vec[16];
	uint8_t *d = dst;
	if (evbuffer_ptr_set(src, &ptr, off, EVBUFFER_PTR_SET) < 0)
		return -1;
	while (n) {
		int nv = evbuffer_peek(src, (ev_ssize_t)n, &ptr, vec, 16);
		if (nv <= 0)
			return -1;
		size_t got = 0;
		for (int i = 0; i < nv && i < 16 && got < n; i++) {
			size_t k = vec[i].iov_len < n - got ? vec[i].iov_len : n - got;
			memcpy(d + got, vec[i].iov_base, k);
			got += k;
		}
		d += got;
		n -= got;
		if (n && evbuffer_ptr_set(src, &ptr, got, EVBUFFER_PTR_ADD) < 0)
			return -1;
	}
	return 0;
}

void px_mirror_req_buf(struct px_mjob *job, struct evbuffer *src, size_t off, size_t n)
{
	size_t total = job->req_total;
	if (job->req_broken || job->req_len + n > total ||
	    px_mirror_copy(src, off, job->req + job->req_len, n) != 0) {
		job->req_broken = 1;
		return;
	}
	job->req_len += n;
}

static uint8_t *resp_room(struct px_mjob *job, size_t n)
{
	if (job->broken)
		return NULL;
	if (job->resp_len + n > MIRROR_RESP_MAX) {
		job->broken = 1;
		return NULL;
	}
	if (job->resp_len + n > job->resp_cap) {
		size_t cap = job->resp_cap ? job->resp_cap : 256;
		while (cap < job->resp_len + n)
			cap *= 2;
		uint8_t *p = realloc(job->resp, cap);
		if (!p) {
			job->broken = 1;
			return NULL;
		}
		job->resp = p;
		job->resp_cap = cap;
	}
	uint8_t *p = job->resp + job->resp_len;
	job->resp_len += n;
	return p;
}

void px_mirror_resp_buf(struct px_mjob *job, struct evbuffer *src, size_t off, size_t n)
{
	uint8_t *p = resp_room(job, n);
	if (p && px_mirror_copy(src, off, p, n) != 0)
		job->broken = 1;
}

void px_mirror_resp_mem(struct px_mjob *job, const void *p, size_t n)
{
	uint8_t *d = resp_room(job, n);
	if (d)
		memcpy(d, p, n);
}

void px_mirror_done(struct px_mjob **jobp)
{
	struct px_mjob *job = *jobp;
	*jobp = NULL;
	if (!job)
		return;
	struct px_mirror *m = job->m;
	pthread_mutex_lock(&m->mu);
	job->next = NULL;
	if (m->tail)
		m->tail->next = job;
	else
		m->head = job;
	m->tail = job;
	m->enq_seq++;
	if (m->idle || ++m->qlen >= MIRROR_WAKE_JOBS)
		pthread_cond_signal(&m->cond);
	pthread_mutex_unlock(&m->mu);
}

void px_mirror_lost(struct px_mjob **jobp)
{
	struct px_mjob *job = *jobp;
	*jobp = NULL;
	if (!job)
		return;
	/* Never answered: nothing of it was acknowledged. The thread reads
	 * which records the rules matched, to count them. */
	job->broken = job->acks0 ? job->broken : 1;
	job->lost = 1;
	px_mirror_done(&job);
}

/* ---- the mirror thread ---- */

static void on_delivery(void *arg, const struct px_ksink_report *rep)
{
	struct px_mirror *m = arg;
	if (rep->err) {
		/* Timed out while sent: the mirror cluster may have it. */
		atomic_fetch_add(rep->maybe_stored ? &m->uncertain : &m->failed, 1);
		return;
	}
	atomic_fetch_add(&m->delivered, 1);
	atomic_fetch_add(&m->lat_sum_us, (uint64_t)(rep->latency_us > 0 ? rep->latency_us : 0));
	atomic_fetch_add(&m->lat_count, 1);
}

static void sink_log(void *arg, int level, const char *msg)
{
	struct px_mirror *m = arg;
	/* librdkafka repeats itself while a cluster is down: errors only once
	 * a minute, through the same limiter as the drop warnings. */
	uint64_t now = mono_us(), last = atomic_load(&m->warn_us);
	if (level >= 2 || ((last && now - last < MIRROR_WARN_US) ||
	                   !atomic_compare_exchange_strong(&m->warn_us, &last, now)))
		return;
	mlog(m, level, "mirror: %s (warned at most once a minute)", msg);
}

/* The sink of rule (made now if needed), or -1. */
static int sink_for(struct px_mirror *m, const struct rule *rule)
{
	const struct rule_mirror *rm = rule->mirror;
	char key[2048];
	int o = snprintf(key, sizeof(key), "%s|%s|%lld|%d", rule->name, rm->bootstrap,
	                 (long long)rm->queue_bytes, rm->by_key);
	for (unsigned i = 0; i < 2 * rm->nprops && o > 0 && (size_t)o < sizeof(key); i++)
		o += snprintf(key + o, sizeof(key) - (size_t)o, "|%s", rm->props[i]);
	unsigned n = atomic_load(&m->nsinks);
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(m->sinks[i].key, key)) {
			atomic_store(&((struct rule *)rule)->mirror->sink, (int)i + 1);
			return m->sinks[i].failed ? -1 : (int)i;
		}
	if (n == MIRROR_SINKS_MAX)
		return -1;
	const char *props[2 * 130 + 3];
	unsigned np = 0;
	/* In order: a retried batch must not overtake the next one. */
	props[np++] = "max.in.flight.requests.per.connection";
	props[np++] = "1";
	if (rm->by_key) {
		props[np++] = "partitioner";
		props[np++] = "murmur2_random";
	}
	for (unsigned i = 0; i < 2 * rm->nprops && np < 2 * 130; i++)
		props[np++] = rm->props[i];
	props[np] = NULL;
	char name[160];
	snprintf(name, sizeof(name), "mirror:%s", rule->name);
	struct px_ksink_conf kc = {
	    .name = name,
	    .bootstrap = rm->bootstrap,
	    .props = props,
	    .max_queue_bytes = (size_t)rm->queue_bytes,
	    .on_delivery = on_delivery,
	    .delivery_arg = m,
	    .log = sink_log,
	    .log_arg = m,
	};
	char err[512];
	struct msink *s = &m->sinks[n];
	s->key = strdup(key);
	s->ks = s->key ? px_ksink_new(&kc, err, sizeof(err)) : NULL;
	if (!s->ks) {
		s->failed = 1;
		mlog(m, 0, "mirror '%s': cannot start its producer: %s", rule->name,
		     s->key ? err : "out of memory");
	}
	pthread_mutex_lock(&m->smu);
	atomic_store(&m->nsinks, n + 1);
	pthread_mutex_unlock(&m->smu);
	atomic_store(&((struct rule *)rule)->mirror->sink, (int)n + 1);
	return s->failed ? -1 : (int)n;
}

/* Produces every record of one batch blob to sink s. */
static void produce_blob(struct px_mirror *m, unsigned s, const char *topic, int32_t partition,
                         int by_key, const uint8_t *p, size_t len, int txn_only, int64_t pid)
{
	struct kd_batch *b;
	struct kd_record rec;
	int rc;
	if (!m->it_ok) {
		kd_rec_iter_init(&m->it, p, len, NULL);
		m->it_ok = 1;
	} else {
		kd_rec_iter_reset(&m->it, p, len);
	}
	while ((rc = kd_rec_next_batch(&m->it, &b)) != 0 && rc != KD_REC_TRUNCATED) {
		/* Transactional batches are held (txn_hold) and produced on their own. */
		if (rc < 0 || b->control ||
		    (txn_only ? b->producer_id != pid : b->transactional && b->producer_id >= 0))
			continue;
		while (kd_rec_next_record(&m->it, &rec) == 1) {
			unsigned nh = 0;
			if (rec.magic == 2 && rec.header_count > 0) {
				if ((unsigned)rec.header_count > m->hcap) {
					struct px_ksink_header *h =
					    realloc(m->hdrs, (size_t)rec.header_count * sizeof(*h));
					if (!h) {
						drop(m, 1, "out of memory");
						continue;
					}
					m->hdrs = h;
					m->hcap = (unsigned)rec.header_count;
				}
				struct kd_rec_hdr_iter hi;
				struct kd_header h;
				kd_rec_headers_init(&hi, &rec);
				while (nh < m->hcap && kd_rec_next_header(&hi, &h) == 1) {
					m->hdrs[nh].name = (const char *)h.key.p;
					m->hdrs[nh].name_len = h.key.len;
					m->hdrs[nh].value = h.value.null ? NULL : h.value.p;
					m->hdrs[nh].value_len = h.value.null ? 0 : h.value.len;
					nh++;
				}
			}
			int64_t ts = rec.timestamp > 0 ? rec.timestamp : 0;
			if (px_ksink_produce(m->sinks[s].ks, topic, by_key ? -1 : partition,
			                     rec.key.null ? NULL : rec.key.p, rec.key.len,
			                     rec.value.null ? NULL : rec.value.p, rec.value.len,
			                     m->hdrs, nh, ts, NULL) == PX_KSINK_QUEUED)
				atomic_fetch_add(&m->produced, 1);
			else
				drop(m, 1, "the mirror cluster's queue is full");
		}
	}
}

static struct mtxn *txn_find(struct px_mirror *m, int64_t pid, int make)
{
	for (struct mtxn *t = m->txns; t; t = t->next)
		if (t->pid == pid)
			return t;
	if (!make)
		return NULL;
	struct mtxn *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->pid = pid;
	t->first_us = mono_us();
	t->next = m->txns;
	m->txns = t;
	return t;
}

/* Ends a held transaction: its batches are produced (commit) or not. */
static void txn_end(struct px_mirror *m, struct mtxn *t, int commit, int timed_out)
{
	for (struct mheld *h = t->head, *next; h; h = next) {
		next = h->next;
		if (commit && h->drop)
			drop(m, (uint64_t)h->records,
			     "the mirror cluster is down or its queue full");
		else if (commit)
			produce_blob(m, h->sink, h->topic, h->partition, h->by_key, h->raw, h->len,
			             1, t->pid);
		else if (timed_out)
			drop(m, (uint64_t)h->records, "a transaction did not end in 15 minutes");
		else
			atomic_fetch_add(&m->aborted, (uint64_t)h->records);
		free(h);
	}
	atomic_fetch_sub(&m->held, (int64_t)t->bytes);
	for (struct mtxn **pp = &m->txns; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	free(t);
}

/* Holds a transactional batch (raw, len) of producer pid until its EndTxn;
 * raw NULL: its records are only counted then (dropped at a commit). */
static void txn_hold(struct px_mirror *m, int64_t pid, int16_t epoch, int64_t records,
                     const uint8_t *raw, size_t len, unsigned s, const char *topic,
                     int32_t partition, int by_key)
{
	struct mtxn *t = txn_find(m, pid, 1);
	if (t && t->head && epoch > t->epoch) {
		/* A new epoch: the producer was fenced, its open transaction aborted. */
		txn_end(m, t, 0, 0);
		t = txn_find(m, pid, 1);
	}
	int64_t budget = atomic_load(&m->budget);
	if (!raw)
		len = 0;
	size_t bytes = sizeof(struct mheld) + len;
	struct mheld *h = NULL;
	if (t && atomic_load(&m->held) + (int64_t)bytes <= budget)
		h = malloc(bytes);
	if (!h) {
		drop(m, records > 0 ? (uint64_t)records : 0,
		     "the mirror queue is full (held transactions)");
		return;
	}
	t->epoch = epoch;
	h->next = NULL;
	h->sink = s;
	snprintf(h->topic, sizeof(h->topic), "%s", topic);
	h->partition = partition;
	h->by_key = (uint8_t)by_key;
	h->records = records;
	h->drop = !raw;
	h->len = len;
	if (len)
		memcpy(h->raw, raw, len);
	if (t->tail)
		t->tail->next = h;
	else
		t->head = h;
	t->tail = h;
	t->bytes += bytes;
	atomic_fetch_add(&m->held, (int64_t)bytes);
}

/* The error code the response gives topic/partition; -1 when it does not
 * answer it. */
static int part_error(struct px_mirror *m, const struct kd_node *resps, struct kd_view topic,
                      int32_t part, const struct rule *names)
{
	char buf[512];
	for (uint32_t i = 0; resps && i < resps->nkids; i++) {
		struct kd_view n = topic_name(m->topics, &resps->kids[i]);
		/* A client whose names a rewrite rule maps: an answer kwire
		 * edited whole is copied as the client got it, with its names
		 * (the request as the broker got it, with the cluster's). */
		if (names && !n.null && (n.len != topic.len || memcmp(n.p, topic.p, n.len)))
			rule_names_map(names->names, RULE_N_TOPIC, 1, n.p, n.len, buf, sizeof(buf),
			               &n);
		if (n.null || n.len != topic.len || memcmp(n.p, topic.p, n.len))
			continue;
		struct kd_node *ps = kd_node_child(&resps->kids[i], "PartitionResponses");
		for (uint32_t k = 0; ps && k < ps->nkids; k++) {
			struct kd_node *idx = kd_node_child(&ps->kids[k], "Index");
			struct kd_node *ec = kd_node_child(&ps->kids[k], "ErrorCode");
			if (idx && ec && idx->val.i == part)
				return (int)ec->val.i;
		}
	}
	return -1;
}

/* A body (after the header) of a whole frame, or NULL. */
static const uint8_t *body_of(const uint8_t *frame, size_t len, int is_req, int16_t key,
                              int16_t ver, size_t *blen)
{
	int h;
	if (len < 8)
		return NULL;
	if (is_req) {
		struct kd_req_hdr rh;
		h = kd_req_hdr_parse(frame + 4, len - 4, &rh);
	} else {
		struct kd_resp_hdr rh;
		h = kd_resp_hdr_parse(frame + 4, len - 4, key, ver, &rh);
	}
	if (h <= 0)
		return NULL;
	*blen = len - 4 - (size_t)h;
	return frame + 4 + h;
}

/* The records of one partition's blob, without decompressing. */
static uint64_t blob_records(const struct kd_node *recs)
{
	struct kd_rec_peek pk;
	memset(&pk, 0, sizeof(pk));
	kd_rec_peek_batches(recs->val.v.p, recs->val.v.len, &pk);
	return pk.records > 0 ? (uint64_t)pk.records : 0;
}

/* One partition's records for a sink that is down or full, counted from
 * the batch headers alone (kd-rec-entry.h: no record decoded, no CRC,
 * nothing decompressed): dropped now, or, a transaction's, held as counts
 * until its end, so that an aborted transaction's records are counted
 * aborted, not dropped. */
static void drop_counted(struct px_mirror *m, const struct kd_node *recs, unsigned s,
                         const char *target, int32_t part, int by_key)
{
	struct kd_cur cur;
	struct kd_rec_entry e;
	uint64_t plain = 0;
	kd_cur_init(&cur, recs->val.v.p, recs->val.v.len);
	while (kd_rec_entry_next(&cur, &e) == 1) {
		if (e.control)
			continue;
		if (e.transactional && e.producer_id >= 0)
			txn_hold(m, e.producer_id, e.producer_epoch, e.records, NULL, 0, s, target,
			         part, by_key);
		else
			plain += (uint64_t)e.records;
	}
	if (plain)
		drop(m, plain, "the mirror cluster is down or its queue full");
}

/* One partition's records for one rule: produced, held (transactional),
 * or counted. */
static void mirror_part(struct px_mirror *m, const struct rule *rule, struct kd_view topic,
                        int32_t part, const struct kd_node *recs)
{
	char target[256];
	int s = sink_for(m, rule);
	if (s < 0) {
		drop(m, blob_records(recs), "the mirror's producer could not start");
		return;
	}
	/* Its cluster down or its queue (nearly) full: the records are only
	 * counted, from the batch headers (no record is decoded, nothing
	 * decompressed); a transaction's wait for its end, as counts, so that
	 * an aborted one's records are counted aborted, not dropped. */
	int count_only = atomic_load(&m->sinks[s].full) || px_ksink_down(m->sinks[s].ks);
	if (rule_mirror_topic(rule->mirror->topic, (const char *)topic.p, topic.len, target,
	                      sizeof(target)) < 0) {
		drop(m, blob_records(recs), "the mirror topic is not a topic name");
		return;
	}
	if (count_only) {
		drop_counted(m, recs, (unsigned)s, target, part, rule->mirror->by_key);
		return;
	}
	/* Transactional batches wait for their EndTxn; the others go now. */
	struct kd_rec_iter it;
	struct kd_batch *b;
	int rc, plain = 0;
	kd_rec_iter_init(&it, recs->val.v.p, recs->val.v.len, NULL);
	while ((rc = kd_rec_next_batch(&it, &b)) != 0 && rc != KD_REC_TRUNCATED) {
		if (rc < 0 || b->control)
			continue;
		if (b->transactional && b->producer_id >= 0)
			txn_hold(m, b->producer_id, b->producer_epoch, b->record_count, b->raw.p,
			         b->raw.len, (unsigned)s, target, part, rule->mirror->by_key);
		else
			plain = 1;
	}
	kd_rec_iter_free(&it);
	if (plain)
		produce_blob(m, (unsigned)s, target, part, rule->mirror->by_key, recs->val.v.p,
		             recs->val.v.len, 0, -1);
}

/* A Produce and its answer: the rules are matched here, on the request's
 * facts and the header facts the worker kept (the forwarding path never
 * decodes a Produce for the mirror). */
static void do_produce(struct px_mirror *m, struct px_mjob *job)
{
	struct kd_tree rt, qt;
	const struct kd_node *resps = NULL;
	size_t blen;
	const uint8_t *body;
	kd_arena_reset(&m->arena);
	size_t total = job->req_total;
	body = job->req_broken || job->req_len != total
	           ? NULL
	           : body_of(job->req, job->req_len, 1, 0, job->ver, &blen);
	if (!body || kd_tree_decode(&qt, &m->arena, 0, job->ver, 1, body, blen) != KD_OK ||
	    rule_facts_read(&m->facts, &qt, m->topics, rule_set_needs_records(job->rs),
	                    &m->arena) != KD_OK) {
		if (job->lost)
			return; /* cut off with its connection: neither sent whole nor answered */
		atomic_fetch_add(&m->dropped_requests, 1);
		drop(m, 0, "a Produce request could not be read");
		return;
	}
	struct rule_req *req = &m->facts.req;
	req->api_key = KD_API_PRODUCE;
	req->api_version = job->ver;
	req->client_id = job->client_id;
	req->principal = job->who.principal;
	req->broker_id = job->who.broker_id;
	req->src_family = job->who.src_family;
	memcpy(req->src_addr, job->who.src_addr, sizeof(req->src_addr));
	const struct rule *names = rule_names_for(job->rs, req);
	int unacked = 0;
	if (!job->acks0) {
		body =
		    job->broken ? NULL : body_of(job->resp, job->resp_len, 0, 0, job->ver, &blen);
		if (body && kd_tree_decode(&rt, &m->arena, 0, job->ver, 0, body, blen) == KD_OK)
			resps = kd_node_child(rt.root, "Responses");
		else
			unacked = 1;
	}
	struct kd_node *topics = kd_node_child(qt.root, "TopicData");
	for (uint32_t i = 0; topics && i < topics->nkids; i++) {
		struct kd_view name = topic_name(m->topics, &topics->kids[i]);
		if (name.null || !name.len)
			continue;
		unsigned t = 0;
		while (t < req->ntopics && (req->topics[t].name.len != name.len ||
		                            memcmp(req->topics[t].name.p, name.p, name.len)))
			t++;
		if (t == req->ntopics)
			continue;
		struct kd_node *parts = kd_node_child(&topics->kids[i], "PartitionData");
		for (unsigned r = 0; r < job->rs->n; r++) {
			const struct rule *rule = &job->rs->rules[r];
			if (!rule_mirror_matches(rule, req, (int)t))
				continue;
			atomic_fetch_add_explicit(&((struct rule *)rule)->hits, 1,
			                          memory_order_relaxed);
			for (uint32_t p = 0; parts && p < parts->nkids; p++) {
				struct kd_node *idx = kd_node_child(&parts->kids[p], "Index");
				struct kd_node *recs = kd_node_child(&parts->kids[p], "Records");
				if (!idx || !recs || recs->null)
					continue;
				int32_t part = (int32_t)idx->val.i;
				if (unacked ||
				    (!job->acks0 && part_error(m, resps, name, part, names) != 0))
					atomic_fetch_add(&m->unacked, blob_records(recs));
				else
					mirror_part(m, rule, name, part, recs);
			}
		}
	}
}

static void do_endtxn(struct px_mirror *m, struct px_mjob *job)
{
	size_t blen, qlen;
	const uint8_t *body =
	    job->broken ? NULL
	                : body_of(job->resp, job->resp_len, 0, KD_API_END_TXN, job->ver, &blen);
	const uint8_t *qbody = body_of(job->req, job->req_len, 1, KD_API_END_TXN, job->ver, &qlen);
	struct kd_tree t, q;
	kd_arena_reset(&m->arena);
	if (!body || !qbody ||
	    kd_tree_decode(&t, &m->arena, KD_API_END_TXN, job->ver, 0, body, blen) != KD_OK ||
	    kd_tree_decode(&q, &m->arena, KD_API_END_TXN, job->ver, 1, qbody, qlen) != KD_OK)
		return; /* the client will retry, or the transaction times out */
	struct kd_node *ec = kd_node_child(t.root, "ErrorCode");
	struct kd_node *pid = kd_node_child(q.root, "ProducerId");
	struct kd_node *c = kd_node_child(q.root, "Committed");
	if (!ec || ec->val.i != 0 || !pid || !c)
		return;
	struct mtxn *tx = txn_find(m, pid->val.i, 0);
	if (tx)
		txn_end(m, tx, c->val.u != 0, 0);
}

/* Marks the sinks whose queue is over 90% of their budget (msink.full). */
static void check_full(struct px_mirror *m)
{
	unsigned n = atomic_load(&m->nsinks);
	for (unsigned i = 0; i < n; i++) {
		struct px_ksink_stats st;
		if (!m->sinks[i].ks)
			continue;
		px_ksink_stats(m->sinks[i].ks, &st);
		atomic_store(&m->sinks[i].full,
		             st.queue_budget && st.queue_bytes > st.queue_budget / 10 * 9);
	}
}

static void expire_txns(struct px_mirror *m)
{
	uint64_t now = mono_us();
	for (struct mtxn *t = m->txns, *next; t; t = next) {
		next = t->next;
		if (now - t->first_us > MIRROR_TXN_MAX_US)
			txn_end(m, t, 0, 1);
	}
}

static void *mirror_main(void *arg)
{
	struct px_mirror *m = arg;
	/* The mirror must never slow the main path: where CPU is short, its
	 * thread, and the threads of the producers it starts (librdkafka's,
	 * which inherit it), yield to the forwarding workers. Linux's nice
	 * value is per thread. */
	pthread_setname_np(pthread_self(), "kwire-mirror"); /* top -H, bench_mirror */
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), MIRROR_NICE) != 0)
		mlog(m, 3, "mirror: could not lower the mirror thread's priority");
	pthread_mutex_lock(&m->mu);
	for (;;) {
		while (!m->head && !m->stop) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			m->idle = 1;
			if (pthread_cond_timedwait(&m->cond, &m->mu, &ts)) {
				pthread_mutex_unlock(&m->mu);
				expire_txns(m);
				check_full(m);
				pthread_mutex_lock(&m->mu);
			}
		}
		if (m->idle && !m->stop && m->qlen < MIRROR_WAKE_JOBS) {
			/* Woken by the first job of a round: let the round fill. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += MIRROR_NAP_NS;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			m->idle = 0;
			pthread_cond_timedwait(&m->cond, &m->mu, &ts);
		}
		m->idle = 0;
		struct px_mjob *list = m->head;
		uint64_t seq = m->enq_seq;
		m->head = m->tail = NULL;
		m->qlen = 0;
		int stop = m->stop;
		pthread_mutex_unlock(&m->mu);
		while (list) {
			struct px_mjob *job = list;
			list = job->next;
			atomic_fetch_add(&m->jobs, 1);
			if (job->kind == MJ_PRODUCE)
				do_produce(m, job);
			else
				do_endtxn(m, job);
			job_free(job);
		}
		check_full(m);
		pthread_mutex_lock(&m->mu);
		m->done_seq = seq;
		pthread_cond_broadcast(&m->done_cond);
		if (stop && !m->head)
			break;
	}
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

struct px_mirror *px_mirror_new(void (*log)(void *arg, int level, const char *msg), void *arg,
                                const struct kd_topics *topics)
{
	struct px_mirror *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->log = log;
	m->log_arg = arg;
	m->topics = topics;
	pthread_mutex_init(&m->mu, NULL);
	pthread_mutex_init(&m->smu, NULL);
	pthread_mutex_init(&m->pmu, NULL);
	pthread_cond_init(&m->cond, NULL);
	pthread_cond_init(&m->done_cond, NULL);
	if (pthread_create(&m->thread, NULL, mirror_main, m)) {
		pthread_mutex_destroy(&m->mu);
		pthread_mutex_destroy(&m->smu);
		pthread_mutex_destroy(&m->pmu);
		pthread_cond_destroy(&m->cond);
		pthread_cond_destroy(&m->done_cond);
		free(m);
		return NULL;
	}
	return m;
}

void px_mirror_sync(struct px_mirror *m)
{
	pthread_mutex_lock(&m->mu);
	uint64_t want = m->enq_seq;
	while (m->done_seq < want)
		pthread_cond_wait(&m->done_cond, &m->mu);
	pthread_mutex_unlock(&m->mu);
}

void px_mirror_free(struct px_mirror **mp)
{
	struct px_mirror *m = *mp;
	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	m->stop = 1;
	pthread_cond_signal(&m->cond);
	pthread_mutex_unlock(&m->mu);
	pthread_join(m->thread, NULL);
	/* Transactions still open: their end never came through kwire. */
	while (m->txns)
		txn_end(m, m->txns, 0, 1);
	unsigned n = atomic_load(&m->nsinks);
	for (unsigned i = 0; i < n; i++) {
		px_ksink_free(&m->sinks[i].ks);
		free(m->sinks[i].key);
	}
	if (m->it_ok)
		kd_rec_iter_free(&m->it);
	rule_facts_free(&m->facts);
	kd_arena_free(&m->arena);
	free(m->hdrs);
	while (m->pool) {
		struct mbuf *b = m->pool;
		m->pool = b->next;
		free(b);
	}
	pthread_mutex_destroy(&m->pmu);
	pthread_mutex_destroy(&m->mu);
	pthread_mutex_destroy(&m->smu);
	pthread_cond_destroy(&m->cond);
	pthread_cond_destroy(&m->done_cond);
	free(m);
	*mp = NULL;
}

void px_mirror_metrics(struct px_mirror *m, struct kd_wbuf *w)
{
	if (!m)
		return;
	struct px_ksink *ks[MIRROR_SINKS_MAX];
	unsigned n = 0;
	uint64_t sinkq = 0;
	pthread_mutex_lock(&m->smu);
	unsigned ns = atomic_load(&m->nsinks);
	for (unsigned i = 0; i < ns; i++)
		if (m->sinks[i].ks) {
			struct px_ksink_stats st;
			px_ksink_stats(m->sinks[i].ks, &st);
			sinkq += st.queue_bytes;
			ks[n++] = m->sinks[i].ks;
		}
	static const struct {
		const char *name, *help;
	} c[] = {
	    {"kwire_mirror_records_mirrored_total", "Records the mirror clusters acknowledged."},
	    {"kwire_mirror_records_dropped_total",
	     "Records not mirrored because a queue was full (kwire's or a sink's), or their "
	     "producer could not start, or their transaction did not end in 15 minutes."},
	    {"kwire_mirror_records_failed_total",
	     "Records a mirror cluster did not acknowledge in time, or refused."},
	    {"kwire_mirror_records_uncertain_total",
	     "Records that timed out after they were sent, unanswered: the mirror cluster may "
	     "or may not have stored them."},
	};
	uint64_t cv[] = {atomic_load(&m->delivered), atomic_load(&m->dropped),
	                 atomic_load(&m->failed), atomic_load(&m->uncertain)};
	for (size_t i = 0; i < sizeof(cv) / sizeof(cv[0]); i++)
		kd_w_fmt(w, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", c[i].name,
		         c[i].help, c[i].name, c[i].name, cv[i]);
	const char *sk = "kwire_mirror_records_skipped_total";
	kd_w_fmt(w,
	         "# HELP %s Records of matched Produce requests not mirrored, by reason: the main "
	         "cluster did not acknowledge them, or their transaction was aborted.\n"
	         "# TYPE %s counter\n%s{reason=\"unacknowledged\"} %" PRIu64
	         "\n%s{reason=\"aborted\"} %" PRIu64 "\n",
	         sk, sk, sk, atomic_load(&m->unacked), sk, atomic_load(&m->aborted));
	kd_w_fmt(w,
	         "# HELP kwire_mirror_requests_dropped_total Produce requests kwire could not "
	         "hold or read for the mirror (their records could not be counted).\n"
	         "# TYPE kwire_mirror_requests_dropped_total counter\n"
	         "kwire_mirror_requests_dropped_total %" PRIu64 "\n",
	         atomic_load(&m->dropped_requests));
	int64_t held = atomic_load(&m->held);
	kd_w_fmt(w,
	         "# HELP kwire_mirror_queue_bytes Bytes kwire holds for the mirror (requests "
	         "awaiting answers, open transactions) plus what its producers have queued.\n"
	         "# TYPE kwire_mirror_queue_bytes gauge\nkwire_mirror_queue_bytes %" PRIu64 "\n",
	         (uint64_t)(held > 0 ? held : 0) + sinkq);
	uint64_t cnt = atomic_load(&m->lat_count), sum = atomic_load(&m->lat_sum_us);
	kd_w_fmt(w,
	         "# HELP kwire_mirror_delivery_latency_seconds From a record's hand-over to its "
	         "mirror producer to the mirror cluster's acknowledgement.\n"
	         "# TYPE kwire_mirror_delivery_latency_seconds summary\n"
	         "kwire_mirror_delivery_latency_seconds_sum %.6f\n"
	         "kwire_mirror_delivery_latency_seconds_count %" PRIu64 "\n",
	         (double)sum / 1e6, cnt);
	px_ksink_metrics(w, "kwire_mirror_sink", ks, n);
	pthread_mutex_unlock(&m->smu);
}
