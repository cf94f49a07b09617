/* px-log.c: the access log and the per-pair observer (px-log.h).
 *
 * The ring: a byte array of cap bytes, lines stored back to back (each
 * ends in '\n'), wrapping at the end. Producers (worker threads) copy a
 * rendered line in under the mutex; the logger thread copies out up to
 * PX_LOG_CHUNK bytes at a time and writes them without holding it.
 *
 *   0        tail              head            cap
 *   |........|#################|...............|
 *             queued lines      free (wraps)
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio_ext.h>
#include <sys/stat.h>
#include <time.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd-arena.h"
#include "kd-hdr.h"
#include "kd-topics.h"
#include "px-admin.h"
#include "px-log.h"
#include "px.h"

#define PX_LOG_CHUNK (64u * 1024)
#define PX_LOG_LINE_MAX (64u * 1024) /* a longer line is cut */

/* Write failures (a full disk, a deleted file or directory, a closed
 * stdout) are reported, not silent: the first through the error callback
 * at once, then at most one message per interval with the count since,
 * and one when writing works again. While failing, the log is "degraded"
 * (px_log_health, shown by /healthz). Lines that could not be written are
 * lost and not counted as written. Everything here is under log->mu. */
struct log_health {
	void (*on_error)(void *arg, const char *msg);
	void *arg;
	uint64_t interval_us;
	int failing;
	char what[160];   /* the current failure, for /healthz */
	uint64_t last_us; /* when the last message went out; 0: never */
	uint64_t unlogged;
	uint64_t lost_lines; /* since the failure began */
	uint64_t checked_us; /* last check that the file still exists */
	int deleted;         /* the open file has no link left */
};

struct px_log {
	enum px_log_format fmt;
	char *path; /* NULL: stdout */
	FILE *f;

	pthread_mutex_t mu;
	pthread_cond_t cond_more; /* lines queued, reopen or stop asked */
	pthread_cond_t cond_done; /* the logger caught up (flush) */
	char *ring;
	size_t cap;
	size_t head, used; /* write position; queued bytes */
	uint64_t seq_in;   /* bytes ever queued */
	uint64_t seq_out;  /* bytes ever written (or given up on) */
	int stop, reopen;
	pthread_t thread;
	int started;

	uint64_t lines, dropped, bytes, reopens, write_errors; /* under mu */
	struct log_health health;                              /* under mu */
};

static uint64_t log_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Records a failure (errno e, or e = 0 with what set) and fills msg when a
 * message is due. Returns 1 when msg is to be sent. */
static int log_failed(struct px_log *log, const char *what, int e, char *msg, size_t msglen)
{
	struct log_health *h = &log->health;
	uint64_t now = log_now_us();
	log->write_errors++;
	snprintf(h->what, sizeof(h->what), "%s%s%s", what, e ? ": " : "", e ? strerror(e) : "");
	int first = !h->failing;
	h->failing = 1;
	if (!first && h->last_us && now - h->last_us < h->interval_us) {
		h->unlogged++;
		return 0;
	}
	if (first)
		snprintf(msg, msglen, "access log %s: %s; lines are lost until it works again",
		         log->path ? log->path : "(stdout)", h->what);
	else
		snprintf(msg, msglen,
		         "access log %s: %s (%" PRIu64 " more failures, %" PRIu64
		         " lines lost since it began)",
		         log->path ? log->path : "(stdout)", h->what, h->unlogged + 1,
		         h->lost_lines);
	h->last_us = now;
	h->unlogged = 0;
	return 1;
}

/* After a good write: ends a failure (with a message). */
static int log_recovered(struct px_log *log, char *msg, size_t msglen)
{
	struct log_health *h = &log->health;
	if (!h->failing)
		return 0;
	h->failing = 0;
	snprintf(msg, msglen, "access log %s: writing again (%" PRIu64 " lines lost)",
	         log->path ? log->path : "(stdout)", h->lost_lines);
	h->lost_lines = 0;
	h->last_us = 0;
	return 1;
}

static void log_tell(struct px_log *log, const char *msg)
{
	if (log->health.on_error)
		log->health.on_error(log->health.arg, msg);
	else
		fprintf(stderr, "kwire: %s\n", msg);
}

static FILE *log_open(const char *path, char *err, size_t errlen)
{
	if (!path)
		return stdout;
	FILE *f = fopen(path, "ae");
	if (!f) {
		int e = errno;
		snprintf(err, errlen, "access log %s: %s", path, strerror(e));
		errno = e;
	}
	return f;
}

/* A file deleted while open (rm, or its directory removed) takes writes
 * without an error and loses them. Once per second at most, when idle:
 * if the file has no link left, it is reopened by its path (created
 * again); while that fails, lines count as lost and the failure is
 * reported. Returns 1 when msg is to be sent. */
static int log_check_file(struct px_log *log, char *msg, size_t msglen)
{
	struct log_health *h = &log->health;
	struct stat st;
	uint64_t now = log_now_us();
	if (!log->path || now - h->checked_us < 1000000u)
		return 0;
	h->checked_us = now;
	if (!h->deleted) {
		if (fstat(fileno(log->f), &st) || st.st_nlink > 0)
			return 0;
		h->deleted = 1;
	}
	FILE *nf = fopen(log->path, "ae");
	if (!nf)
		return log_failed(log, "the file was deleted and cannot be created again", errno,
		                  msg, msglen);
	fclose(log->f);
	log->f = nf;
	log->reopens++;
	h->deleted = 0;
	snprintf(msg, msglen,
	         "access log %s: the file was deleted; created it again (%" PRIu64 " lines lost)",
	         log->path, h->lost_lines);
	h->failing = 0;
	h->lost_lines = 0;
	h->last_us = 0;
	return 1;
}

static void *log_thread(void *arg)
{
	struct px_log *log = arg;
	char *chunk = malloc(PX_LOG_CHUNK);

	pthread_mutex_lock(&log->mu);
	for (;;) {
		while (!log->used && !log->stop && !log->reopen)
			pthread_cond_wait(&log->cond_more, &log->mu);
		if (log->reopen) {
			log->reopen = 0;
			if (log->path) {
				char err[256];
				pthread_mutex_unlock(&log->mu);
				errno = 0;
				FILE *nf = log_open(log->path, err, sizeof(err));
				int e = errno; /* before anything else can change it */
				pthread_mutex_lock(&log->mu);
				char msg[320];
				int tell = 0;
				if (nf) {
					fclose(log->f);
					log->f = nf;
					log->reopens++;
					log->health.deleted = 0;
				} else {
					tell =
					    log_failed(log, "cannot reopen", e, msg, sizeof(msg));
				}
				if (tell) {
					pthread_mutex_unlock(&log->mu);
					log_tell(log, msg);
					pthread_mutex_lock(&log->mu);
				}
			}
		}
		if (!log->used) {
			if (log->stop)
				break;
			continue;
		}
		size_t tail = (log->head + log->cap - log->used) % log->cap;
		size_t n = log->used;
		if (n > log->cap - tail)
			n = log->cap - tail; /* up to the wrap; the rest next round */
		if (n > PX_LOG_CHUNK)
			n = PX_LOG_CHUNK;
		if (!chunk) {
			/* no scratch: give the bytes up rather than spin */
			log->used -= n;
			log->seq_out += n;
			log->write_errors++;
			pthread_cond_broadcast(&log->cond_done);
			continue;
		}
		memcpy(chunk, log->ring + tail, n);
		log->used -= n;
		FILE *f = log->f;
		pthread_mutex_unlock(&log->mu);

		size_t nl = 0;
		for (const char *q = chunk; (q = memchr(q, '\n', (size_t)(chunk + n - q))); q++)
			nl++;
		errno = 0;
		int bad = fwrite(chunk, 1, n, f) != n;
		/* Only flush when idle: batches of lines, one write each. */
		pthread_mutex_lock(&log->mu);
		if (!bad && !log->used && fflush(f))
			bad = 1;
		int e = errno;
		char msg[320];
		int tell = 0;
		log->seq_out += n;
		if (bad) {
			/* What stdio still holds is lost too: drop it, so that the
			 * next lines do not queue behind it. */
			__fpurge(f);
			clearerr(f);
			log->health.lost_lines += nl;
			tell = log_failed(log, "write failed", e, msg, sizeof(msg));
		} else if (log->health.deleted) {
			log->health.lost_lines += nl; /* written to a file nobody can read */
			if (!log->used)
				tell = log_check_file(log, msg, sizeof(msg));
		} else {
			log->lines += nl;
			log->bytes += n;
			if (!log->used)
				tell = log_check_file(log, msg, sizeof(msg));
			if (!tell && !log->health.deleted)
				tell = log_recovered(log, msg, sizeof(msg));
		}
		if (tell) {
			pthread_mutex_unlock(&log->mu);
			log_tell(log, msg);
			pthread_mutex_lock(&log->mu);
		}
		pthread_cond_broadcast(&log->cond_done);
	}
	pthread_cond_broadcast(&log->cond_done);
	pthread_mutex_unlock(&log->mu);
	free(chunk);
	return NULL;
}

struct px_log *px_log_new(const char *path, enum px_log_format fmt, size_t ring_bytes, char *err,
                          size_t errlen)
{
	struct px_log *log = calloc(1, sizeof(*log));
	if (!log) {
		snprintf(err, errlen, "access log: out of memory");
		return NULL;
	}
	log->fmt = fmt;
	log->cap = ring_bytes ? ring_bytes : PX_LOG_RING_DEFAULT;
	log->health.interval_us = 10u * 1000000u;
	pthread_mutex_init(&log->mu, NULL);
	pthread_cond_init(&log->cond_more, NULL);
	pthread_cond_init(&log->cond_done, NULL);
	if (path && strcmp(path, "-")) {
		log->path = strdup(path);
		if (!log->path) {
			snprintf(err, errlen, "access log: out of memory");
			goto fail;
		}
	}
	log->ring = malloc(log->cap);
	if (!log->ring) {
		snprintf(err, errlen, "access log: out of memory");
		goto fail;
	}
	log->f = log_open(log->path, err, errlen);
	if (!log->f)
		goto fail;
	if (pthread_create(&log->thread, NULL, log_thread, log)) {
		snprintf(err, errlen, "access log: cannot start its thread");
		goto fail;
	}
	log->started = 1;
	return log;
fail:
	px_log_free(&log);
	return NULL;
}

void px_log_free(struct px_log **logp)
{
	struct px_log *log = *logp;
	if (!log)
		return;
	if (log->started) {
		pthread_mutex_lock(&log->mu);
		log->stop = 1;
		pthread_cond_signal(&log->cond_more);
		pthread_mutex_unlock(&log->mu);
		pthread_join(log->thread, NULL);
	}
	if (log->f && log->f != stdout)
		fclose(log->f);
	else if (log->f)
		fflush(log->f);
	pthread_cond_destroy(&log->cond_done);
	pthread_cond_destroy(&log->cond_more);
	pthread_mutex_destroy(&log->mu);
	free(log->ring);
	free(log->path);
	free(log);
	*logp = NULL;
}

/* Queues a + b (two pieces of one line) if the whole line fits. */
static void log_push(struct px_log *log, const char *a, size_t alen, const char *b, size_t blen)
{
	size_t n = alen + blen;
	pthread_mutex_lock(&log->mu);
	if (log->stop || n > log->cap - log->used) {
		log->dropped++;
		pthread_mutex_unlock(&log->mu);
		return;
	}
	const char *parts[2] = {a, b};
	size_t lens[2] = {alen, blen};
	for (int i = 0; i < 2; i++) {
		size_t len = lens[i], off = 0;
		while (off < len) {
			size_t room = log->cap - log->head;
			size_t k = len - off < room ? len - off : room;
			memcpy(log->ring + log->head, parts[i] + off, k);
			log->head = (log->head + k) % log->cap;
			off += k;
		}
	}
	int was_empty = log->used == 0;
	log->used += n;
	log->seq_in += n;
	if (was_empty)
		pthread_cond_signal(&log->cond_more);
	pthread_mutex_unlock(&log->mu);
}

void px_log_line(struct px_log *log, const char *s, size_t len)
{
	if (len > PX_LOG_LINE_MAX)
		len = PX_LOG_LINE_MAX;
	log_push(log, s, len, "\n", 1);
}

void px_log_summary(struct px_log *log, const struct kd_summary *sum)
{
	struct kd_wbuf w = {0};
	if (log->fmt == PX_LOGF_JSON)
		kd_sum_json(sum, &w);
	else
		kd_sum_text(sum, &w);
	if (w.err) {
		pthread_mutex_lock(&log->mu);
		log->dropped++;
		pthread_mutex_unlock(&log->mu);
	} else {
		px_log_line(log, (const char *)w.p, w.len);
	}
	kd_wbuf_free(&w);
}

void px_log_reopen(struct px_log *log)
{
	pthread_mutex_lock(&log->mu);
	log->reopen = 1;
	pthread_cond_signal(&log->cond_more);
	pthread_mutex_unlock(&log->mu);
}

void px_log_flush(struct px_log *log)
{
	pthread_mutex_lock(&log->mu);
	uint64_t target = log->seq_in;
	while (log->seq_out < target && log->started)
		pthread_cond_wait(&log->cond_done, &log->mu);
	pthread_mutex_unlock(&log->mu);
}

void px_log_set_error_cb(struct px_log *log, void (*on_error)(void *arg, const char *msg),
                         void *arg, unsigned interval_ms)
{
	pthread_mutex_lock(&log->mu);
	log->health.on_error = on_error;
	log->health.arg = arg;
	log->health.interval_us = (uint64_t)interval_ms * 1000u;
	pthread_mutex_unlock(&log->mu);
}

int px_log_health(struct px_log *log, char *what, size_t len)
{
	pthread_mutex_lock(&log->mu);
	int failing = log->health.failing;
	if (failing && what)
		snprintf(what, len, "%s", log->health.what);
	pthread_mutex_unlock(&log->mu);
	return failing;
}

void px_log_stats_get(struct px_log *log, struct px_log_stats *out)
{
	pthread_mutex_lock(&log->mu);
	out->lines = log->lines;
	out->dropped = log->dropped;
	out->bytes = log->bytes;
	out->reopens = log->reopens;
	out->write_errors = log->write_errors;
	pthread_mutex_unlock(&log->mu);
}

/* ---- the observer ---- */

/* The summary's scratch arena of the calling thread (pairs are summarised
 * on the workers): created at first use, freed when the thread exits.
 * NULL when it cannot be had; the summary then makes one per call. */
static pthread_key_t sum_arena_key;
static pthread_once_t sum_arena_once = PTHREAD_ONCE_INIT;
static int sum_arena_ok;

static void sum_arena_free(void *p)
{
	kd_arena_free(p);
	free(p);
}

static void sum_arena_init(void)
{
	sum_arena_ok = pthread_key_create(&sum_arena_key, sum_arena_free) == 0;
}

static struct kd_arena *sum_arena(void)
{
	pthread_once(&sum_arena_once, sum_arena_init);
	if (!sum_arena_ok)
		return NULL;
	struct kd_arena *a = pthread_getspecific(sum_arena_key);
	if (!a) {
		a = calloc(1, sizeof(*a));
		if (a && pthread_setspecific(sum_arena_key, a) != 0) {
			free(a);
			a = NULL;
		}
	}
	return a;
}

void px_pair_summarise(const struct px_pair *pair, struct kd_summary *sum)
{
	kd_sum_init(sum);
	sum->arena = sum_arena();
	sum->ts_us = (int64_t)pair->t_req_us;
	sum->latency_us = pair->no_response ? -1 : (int64_t)pair->latency_us;
	snprintf(sum->client, sizeof(sum->client), "%s",
	         pair->client_addr ? pair->client_addr : "");
	snprintf(sum->broker, sizeof(sum->broker), "%s",
	         pair->upstream_addr ? pair->upstream_addr : "");
	snprintf(sum->principal, sizeof(sum->principal), "%s",
	         pair->principal ? pair->principal : "");

	struct kd_req_hdr rh;
	int rc = -1;
	if (pair->api_key < 0) {
		/* A SASL v0 token: no Kafka header; the mechanism and the user,
		 * never the token (kd_sum_sasl_token). */
		int whole = pair->req_frame && !pair->req_trunc && pair->req_frame_len >= 4;
		kd_sum_sasl_token(sum, pair->sasl_mech, whole ? pair->req_frame + 4 : NULL,
		                  whole ? pair->req_frame_len - 4 : 0);
		sum->req_bytes = pair->req_size;
		if (!pair->no_response) {
			sum->flags |= KD_SUM_RESP;
			sum->resp_bytes = pair->resp_size;
		}
		return;
	}
	if (pair->req_frame && pair->req_frame_len > 4)
		rc = kd_req_hdr_parse(pair->req_frame + 4, pair->req_frame_len - 4, &rh);
	if (rc > 0) {
		const uint8_t *body = pair->req_frame + 4 + rc;
		size_t blen = pair->req_frame_len - 4 - (size_t)rc;
		kd_sum_request(sum, pair->api_key, pair->api_version, pair->correlation_id,
		               pair->client_id, body, blen);
	} else {
		sum->api_key = pair->api_key;
		sum->api_version = pair->api_version;
		sum->correlation_id = pair->correlation_id;
		sum->flags |= KD_SUM_REQ | KD_SUM_REQ_BAD;
		sum->req_rc = KD_ESHORT;
	}
	if (pair->no_response) {
		if (pair->api_key == KD_API_PRODUCE && sum->acks == 0)
			sum->flags |= KD_SUM_NO_RESP;
		return;
	}
	struct kd_resp_hdr sh;
	rc = -1;
	if (pair->resp_frame && pair->resp_frame_len > 4)
		rc = kd_resp_hdr_parse(pair->resp_frame + 4, pair->resp_frame_len - 4,
		                       pair->api_key, pair->api_version, &sh);
	if (rc > 0) {
		kd_sum_response(sum, pair->resp_frame + 4 + rc,
		                pair->resp_frame_len - 4 - (size_t)rc);
	} else {
		sum->flags |= KD_SUM_RESP | KD_SUM_RESP_BAD;
		sum->resp_rc = KD_ESHORT;
	}
}

static void obs_on_pair(void *arg, const struct px_pair *pair)
{
	struct px_observer *obs = arg;
	/* ~7 KB: fine on a worker's stack, and no allocation per pair. */
	struct kd_summary sum;
	/* The proxy's topic map learns from every response copy that pairs
	 * ids with names (Metadata v10+, CreateTopics v7+, ...; nothing is
	 * decoded for the others), so that names show even for topics whose
	 * responses the data path does not decode; then ids are resolved. */
	struct kd_topics *topics = obs->px ? px_topics(obs->px) : NULL;
	if (topics && !pair->no_response && pair->resp_frame && !pair->resp_trunc)
		kd_topics_learn_frame(topics, pair->api_key, pair->api_version, pair->resp_frame,
		                      pair->resp_frame_len, sum_arena());
	px_pair_summarise(pair, &sum);
	kd_sum_resolve_topics(&sum, topics);
	if (obs->px && !pair->no_response && kd_sum_has_error(&sum))
		px_count_error(obs->px, pair->api_key, pair->api_version);
	if (obs->admin)
		px_admin_record(obs->admin, pair, &sum);
	if (obs->log)
		px_log_summary(obs->log, &sum);
}

static void obs_on_log_error(void *arg, const char *msg)
{
	px_log(arg, 0, "%s", msg);
}

static void obs_on_reopen(void *arg)
{
	struct px_observer *obs = arg;
	if (obs->log)
		px_log_reopen(obs->log);
}

void px_observer_hooks(struct px_observer *obs, struct px_hooks *hooks)
{
	memset(hooks, 0, sizeof(*hooks));
	hooks->arg = obs;
	hooks->on_reopen = obs_on_reopen;
	if (!obs->log && !obs->admin)
		return;
	hooks->on_pair = obs_on_pair;
	hooks->want_frames = PX_WANT_REQ | PX_WANT_RESP;
	hooks->frame_copy_max = obs->frame_copy_max ? obs->frame_copy_max : (1u << 20);
}

int px_observe_start(struct px *px, const struct px_conf *conf, struct px_observer *obs, char *err,
                     size_t errlen)
{
	struct px_hooks hooks;
	memset(obs, 0, sizeof(*obs));
	obs->px = px;
	if (conf->access_log) {
		obs->log = px_log_new(conf->access_log, conf->access_log_format, 0, err, errlen);
		if (!obs->log)
			goto fail;
		px_log_set_error_cb(obs->log, obs_on_log_error, px, PX_LOG_ERROR_INTERVAL_MS);
	}
	if (conf->admin.host[0] || conf->admin.port) {
		obs->admin = px_admin_new(px, &conf->admin, err, errlen);
		if (!obs->admin)
			goto fail;
		px_admin_set_log(obs->admin, obs->log);
	}
	px_observer_hooks(obs, &hooks);
	px_set_hooks(px, &hooks);
	return 0;
fail:
	px_observe_stop(obs);
	return -1;
}

void px_observe_stop(struct px_observer *obs)
{
	px_admin_free(&obs->admin);
	px_log_free(&obs->log);
}
