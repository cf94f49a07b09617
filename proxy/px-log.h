/* px-log.h: the proxy's access log, and the observer that feeds it and the
 * admin endpoint's metrics from the proxy's per-pair hook.
 *
 * One line per request/response pair, rendered by the decoder's summary
 * (kd-summary.h) so that a proxy log line and a `kwire decode` line of the
 * same traffic read the same: text by default, JSON per line with
 * PX_LOGF_JSON. Lines are rendered on the worker thread that saw the pair
 * and pushed into a bounded byte ring; one logger thread writes them out.
 * When the ring is full a line is dropped and counted, so a slow disk or a
 * blocked stdout never stalls forwarding.
 *
 *	struct px_log *log = px_log_new("-", PX_LOGF_TEXT, 0, err, sizeof(err));
 *	struct px_observer obs = {.px = px, .log = log, .admin = adm};
 *	struct px_hooks hooks;
 *	px_observer_hooks(&obs, &hooks);   then px_set_hooks(px, &hooks)
 *	...
 *	px_log_free(&log);                 writes what is queued, then frees
 */
#ifndef PX_LOG_H
#define PX_LOG_H

#include <stdint.h>

#include "kd-summary.h"
#include "px-t.h"

#define PX_LOG_RING_DEFAULT (4u << 20) /* bytes of queued lines */

struct px_log;   /* opaque */
struct px_admin; /* px-admin.h */

/* Opens the log: path NULL or "-" is stdout, else the file is opened for
 * appending (created 0644). ring_bytes 0 = PX_LOG_RING_DEFAULT. Starts the
 * logger thread. NULL on error (message in err). */
struct px_log *px_log_new(const char *path, enum px_log_format fmt, size_t ring_bytes, char *err,
                          size_t errlen);
/* Writes out every queued line, stops the thread, closes the file (not
 * stdout) and frees; *log = NULL. log may point to NULL. */
void px_log_free(struct px_log **log);

/* Renders sum as one line (text or JSON, per the log's format) and queues
 * it. Never blocks on I/O; a line that does not fit is dropped (counted).
 * Thread-safe. */
void px_log_summary(struct px_log *log, const struct kd_summary *sum);
/* Queues a line of free text (a newline is added). Thread-safe. */
void px_log_line(struct px_log *log, const char *s, size_t len);
/* Asks the logger thread to reopen the file (SIGHUP, after rotation).
 * Thread-safe, returns at once. */
void px_log_reopen(struct px_log *log);
/* Blocks until every line queued before the call has been written. */
void px_log_flush(struct px_log *log);

/* Write failures (full disk, deleted file or directory) go to on_error
 * (NULL: stderr): the first at once, then at most one message per
 * interval_ms, and one when writing works again. Thread-safe. */
#define PX_LOG_ERROR_INTERVAL_MS 10000
void px_log_set_error_cb(struct px_log *log, void (*on_error)(void *arg, const char *msg),
                         void *arg, unsigned interval_ms);
/* 1 while writes fail (the failure in what), else 0. Thread-safe. */
int px_log_health(struct px_log *log, char *what, size_t len);

struct px_log_stats {
	uint64_t lines;   /* lines written */
	uint64_t dropped; /* lines dropped because the ring was full */
	uint64_t bytes;   /* bytes written */
	uint64_t reopens;
	uint64_t write_errors; /* failed writes and reopens */
};
void px_log_stats_get(struct px_log *log, struct px_log_stats *out);

/* Summarises one pair from the frames the proxy copied (px_hooks
 * want_frames = PX_WANT_REQ | PX_WANT_RESP): request and response headers
 * and bodies, client and broker addresses, time and latency. A truncated
 * copy gives a partial summary (KD_SUM_REQ_BAD / KD_SUM_RESP_BAD). */
void px_pair_summarise(const struct px_pair *pair, struct kd_summary *sum);

/* What the proxy's per-pair hook feeds. Any member may be NULL; px is
 * needed to count error responses (px_count_error). The struct must
 * outlive the proxy. */
struct px_observer {
	struct px *px;
	struct px_log *log;
	struct px_admin *admin;
	/* Largest frame copied for decoding (0: 1 MiB). Bigger frames are
	 * summarised from their first bytes only. */
	uint32_t frame_copy_max;
};

/* Fills hooks (zeroed first) so that every pair is summarised once and
 * handed to the log and the admin metrics, and SIGHUP reopens the log.
 * When neither log nor admin is set, hooks ask for no frames. */
void px_observer_hooks(struct px_observer *obs, struct px_hooks *hooks);

/* The whole observation side of a proxy from its configuration, for
 * cmd-proxy.c and cmd-demo.c: opens the access log (conf->access_log,
 * "-" = stdout; NULL = none) and the admin endpoint (conf->admin, when its
 * port or host is set), fills obs and installs its hooks on px (before
 * px_start). Returns 0, or -1 with a message in err. obs must outlive px;
 * call px_observe_stop(obs) after px_wait() and before px_free(). */
struct px_conf;
int px_observe_start(struct px *px, const struct px_conf *conf, struct px_observer *obs, char *err,
                     size_t errlen);
void px_observe_stop(struct px_observer *obs);

#endif
