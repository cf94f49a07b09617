/* rule-quota.c: the rate state behind quotas, computed the way Kafka's
 * brokers compute theirs (KIP-13, KIP-124):
 *
 * - A rate is kept as `samples` windows of `sample_ms` each (Kafka:
 *   quota.window.num = 11, quota.window.size.seconds = 1). A value is
 *   added to the current window; a window older than samples * sample_ms
 *   no longer counts.
 * - The rate is the sum of the windows over the elapsed time since the
 *   oldest window began, where the elapsed time is counted as at least
 *   one full window (so a new client is not judged on a few ms).
 *   **Decision** (docs/rules.md): Kafka counts at least samples - 1
 *   windows, which hands a new (or long idle) key samples - 1 windows of
 *   quota at once; a client that takes it sends that burst again each
 *   time its window expires, every samples windows, for as long as it
 *   runs (0.79 to 1.27 times the quota over any 30 s, simulated). Counted
 *   as one window, a new key gets one window of credit, and the rate of a
 *   key older than samples - 1 windows is Kafka's exactly.
 * - Over the quota T, with the observed rate O over the window W, the
 *   throttle is X = (O - T) / T * W. Request-rate throttles are capped at
 *   one window (KIP-124).
 *
 * State is per (rule name, key): a reload that keeps a rule's name keeps
 * its budgets. Entries live in NSTRIPES independently locked hash tables
 * (a request locks one); keys are hashed with a per-process random seed,
 * since clients choose their client ids. Past max_keys, the least
 * recently used entry of the stripe being inserted into is forgotten. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "kd-api-keys-gen.h"
#include "rule.h"

#define NSTRIPES 64
#define NBUCKETS 256 /* per stripe */
/* The shortest W (in windows) a rate is measured over; Kafka: samples - 1. */
#define RULE_QUOTA_MIN_WINDOWS 1

struct qent {
	struct qent *next;                /* hash chain */
	struct qent *lru_prev, *lru_next; /* stripe LRU, most recent first */
	uint64_t h;
	int64_t until_ms; /* the key's latest throttle ends then */
	unsigned n, sample_ms;
	unsigned cur[3];
	int64_t *start; /* [3][n] */
	double *val;    /* [3][n] */
	size_t keylen;
	char key[]; /* rule name, NUL, key */
};

struct stripe {
	pthread_mutex_t mu;
	struct qent *buckets[NBUCKETS];
	struct qent *lru_head, *lru_tail;
	unsigned count;
};

struct rule_quotas {
	uint64_t seed;
	unsigned max_per_stripe;
	_Atomic uint64_t keys, evicted;
	struct stripe stripes[NSTRIPES];
};

struct rule_quotas *rule_quotas_new(unsigned max_keys)
{
	struct rule_quotas *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	if (getrandom(&q->seed, sizeof(q->seed), 0) != sizeof(q->seed))
		q->seed = (uint64_t)(uintptr_t)q ^ 0x9e3779b97f4a7c15ull;
	q->max_per_stripe = max_keys / NSTRIPES ? max_keys / NSTRIPES : 1;
	for (int i = 0; i < NSTRIPES; i++)
		pthread_mutex_init(&q->stripes[i].mu, NULL);
	return q;
}

void rule_quotas_free(struct rule_quotas **qp)
{
	struct rule_quotas *q = *qp;
	*qp = NULL;
	if (!q)
		return;
	for (int i = 0; i < NSTRIPES; i++) {
		struct stripe *s = &q->stripes[i];
		for (struct qent *e = s->lru_head, *next; e; e = next) {
			next = e->lru_next;
			free(e);
		}
		pthread_mutex_destroy(&s->mu);
	}
	free(q);
}

/* FNV-1a over the seed and the bytes, then a final mix. */
static uint64_t qhash(uint64_t seed, const char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull ^ seed;
	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)p[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

static void lru_unlink(struct stripe *s, struct qent *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		s->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		s->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_front(struct stripe *s, struct qent *e)
{
	e->lru_next = s->lru_head;
	if (s->lru_head)
		s->lru_head->lru_prev = e;
	s->lru_head = e;
	if (!s->lru_tail)
		s->lru_tail = e;
}

static void evict_tail(struct rule_quotas *q, struct stripe *s)
{
	struct qent *e = s->lru_tail;
	struct qent **pp = &s->buckets[(e->h / NSTRIPES) % NBUCKETS];
	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	lru_unlink(s, e);
	s->count--;
	free(e);
	atomic_fetch_sub_explicit(&q->keys, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&q->evicted, 1, memory_order_relaxed);
}

/* The entry of (full key, rule's sampling), created at now_ms. Under s->mu. */
static struct qent *lookup(struct rule_quotas *q, struct stripe *s, uint64_t h, const char *full,
                           size_t fulllen, const struct rule *rule, int64_t now_ms)
{
	struct qent **bucket = &s->buckets[(h / NSTRIPES) % NBUCKETS];
	for (struct qent *e = *bucket; e; e = e->next) {
		if (e->h != h || e->keylen != fulllen || memcmp(e->key, full, fulllen))
			continue;
		if (e->n == rule->samples && e->sample_ms == rule->sample_ms) {
			lru_unlink(s, e);
			lru_front(s, e);
			return e;
		}
		/* The rule's sampling changed with a reload: start over. */
		struct qent **pp = bucket;
		while (*pp != e)
			pp = &(*pp)->next;
		*pp = e->next;
		lru_unlink(s, e);
		s->count--;
		atomic_fetch_sub_explicit(&q->keys, 1, memory_order_relaxed);
		free(e);
		break;
	}
	if (s->count >= q->max_per_stripe && s->lru_tail)
		evict_tail(q, s);
	unsigned n = rule->samples;
	size_t arrays = 3 * n * (sizeof(int64_t) + sizeof(double));
	struct qent *e = calloc(1, sizeof(*e) + fulllen + arrays + sizeof(double));
	if (!e)
		return NULL;
	memcpy(e->key, full, fulllen);
	e->keylen = fulllen;
	e->h = h;
	e->n = n;
	e->sample_ms = rule->sample_ms;
	/* The arrays follow the key, aligned for double and int64_t. */
	uintptr_t base = (uintptr_t)(e->key + fulllen);
	base = (base + sizeof(double) - 1) & ~(uintptr_t)(sizeof(double) - 1);
	e->start = (int64_t *)base;
	e->val = (double *)(e->start + 3 * n);
	for (unsigned i = 0; i < 3 * n; i++)
		e->start[i] = now_ms;
	e->next = *bucket;
	*bucket = e;
	lru_front(s, e);
	s->count++;
	atomic_fetch_add_explicit(&q->keys, 1, memory_order_relaxed);
	return e;
}

/* The window W of the throttle formula, over which the rate is measured: since the
 * oldest window began, counted as at least RULE_QUOTA_MIN_WINDOWS windows. */
static int64_t window_ms(const struct qent *e, int kind, int64_t now_ms)
{
	int64_t oldest = now_ms;
	const int64_t *start = e->start + (size_t)kind * e->n;
	for (unsigned i = 0; i < e->n; i++)
		if (start[i] < oldest)
			oldest = start[i];
	int64_t elapsed = now_ms - oldest, w = e->sample_ms;
	int64_t full = elapsed / w;
	if (full < RULE_QUOTA_MIN_WINDOWS)
		elapsed += (RULE_QUOTA_MIN_WINDOWS - full) * w;
	return elapsed > 0 ? elapsed : w;
}

/* Adds amount to kind's current window and returns the rate per second. */
static double record_rate(struct qent *e, int kind, double amount, int64_t now_ms)
{
	unsigned n = e->n;
	int64_t w = e->sample_ms;
	int64_t *start = e->start + (size_t)kind * n;
	double *val = e->val + (size_t)kind * n;
	/* Windows too old to count start over. */
	for (unsigned i = 0; i < n; i++)
		if (now_ms - start[i] >= (int64_t)n * w) {
			start[i] = now_ms;
			val[i] = 0;
		}
	unsigned c = e->cur[kind];
	if (now_ms - start[c] >= w) {
		c = (c + 1) % n;
		e->cur[kind] = c;
		start[c] = now_ms;
		val[c] = 0;
	}
	val[c] += amount;
	double total = 0;
	for (unsigned i = 0; i < n; i++)
		total += val[i];
	return total * 1000.0 / (double)window_ms(e, kind, now_ms);
}

#define FULL_MAX (RULE_NAME_MAX + 512)

/* "rule name NUL key" into full (FULL_MAX bytes); its length. */
static size_t full_key(char *full, const struct rule *rule, const char *key, size_t keylen)
{
	size_t nlen = strlen(rule->name);
	if (keylen > FULL_MAX - nlen - 1)
		keylen = FULL_MAX - nlen - 1;
	memcpy(full, rule->name, nlen);
	full[nlen] = '\0';
	memcpy(full + nlen + 1, key, keylen);
	return nlen + 1 + keylen;
}

int64_t rule_quota_until(struct rule_quotas *q, const struct rule *rule, const char *key,
                         size_t keylen)
{
	char full[FULL_MAX];
	size_t fulllen = full_key(full, rule, key, keylen);
	uint64_t h = qhash(q->seed, full, fulllen);
	struct stripe *s = &q->stripes[h % NSTRIPES];
	int64_t until = 0;
	pthread_mutex_lock(&s->mu);
	for (struct qent *e = s->buckets[(h / NSTRIPES) % NBUCKETS]; e; e = e->next)
		if (e->h == h && e->keylen == fulllen && !memcmp(e->key, full, fulllen)) {
			until = e->until_ms;
			break;
		}
	pthread_mutex_unlock(&s->mu);
	return until;
}

uint32_t rule_quota_record(struct rule_quotas *q, const struct rule *rule, const char *key,
                           size_t keylen, int kind, double amount, int64_t now_ms)
{
	double quota = kind == RULE_Q_PRODUCE ? (double)rule->produce_bps
	               : kind == RULE_Q_FETCH ? (double)rule->fetch_bps
	                                      : rule->requests_ps;
	if (quota <= 0 || kind < 0 || kind > RULE_Q_REQUESTS)
		return 0;
	char full[FULL_MAX];
	size_t fulllen = full_key(full, rule, key, keylen);
	uint64_t h = qhash(q->seed, full, fulllen);
	struct stripe *s = &q->stripes[h % NSTRIPES];
	uint32_t throttle = 0;
	pthread_mutex_lock(&s->mu);
	struct qent *e = lookup(q, s, h, full, fulllen, rule, now_ms);
	if (e) {
		double rate = record_rate(e, kind, amount, now_ms);
		if (rate > quota) {
			double x = (rate - quota) / quota * (double)window_ms(e, kind, now_ms);
			if (kind == RULE_Q_REQUESTS && x > rule->sample_ms)
				x = rule->sample_ms;
			throttle = x > 3600e3 ? 3600000u : (uint32_t)(x + 0.5); /* Kafka rounds */
			if (now_ms + throttle > e->until_ms)
				e->until_ms = now_ms + throttle;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return throttle;
}

void rule_quotas_counts(struct rule_quotas *q, uint64_t *keys, uint64_t *evicted)
{
	*keys = atomic_load_explicit(&q->keys, memory_order_relaxed);
	*evicted = atomic_load_explicit(&q->evicted, memory_order_relaxed);
}

double rule_quota_produce_bytes(const struct rule_hit *hit, const struct rule_req *req,
                                const struct rule_verdict *v, uint32_t size)
{
	if (req->api_key != KD_API_PRODUCE || v->error)
		return 0;
	double refused = 0;
	for (unsigned t = 0; t < req->ntopics; t++) {
		int64_t b = req->topics[t].bytes > 0 ? req->topics[t].bytes : 0;
		int out = v->topics && v->topics[t].error;
		if (hit->topic == (int)t)
			return out ? 0 : (double)b;
		if (out)
			refused += (double)b;
	}
	if (hit->topic >= 0)
		return 0;
	return (double)size > refused ? (double)size - refused : 0;
}
