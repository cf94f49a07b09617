/* px-rules.c: the rules file in force and its live reload (px-rules.h). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "px-rules.h"
#include "rule.h"

struct px_rules {
	pthread_mutex_t mu; /* cur, state; serialises reloads */
	struct rule_set *cur;
	_Atomic uint64_t gen;
	struct px_rules_state st;
	px_rules_log_fn *log;
	void *log_arg;
	px_rules_check_fn *check; /* see px_rules_set_check */
	void *check_arg;
	pthread_mutex_t reload_mu; /* one reload (and its check) at a time */
	/* watcher */
	pthread_t thread;
	int watching;
	int ifd;     /* inotify */
	int stop[2]; /* pipe: write to stop the thread */
	unsigned debounce_ms;
	char dir[PATH_MAX];
	char base[NAME_MAX + 1];
};

static void rlog(struct px_rules *r, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void rlog(struct px_rules *r, int level, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->log)
		r->log(r->log_arg, level, msg);
}

struct px_rules *px_rules_new(const char *path, px_rules_log_fn *log, void *log_arg, char *err,
                              size_t errlen)
{
	if (strlen(path) >= sizeof(((struct px_rules_state *)0)->path)) {
		snprintf(err, errlen, "%s: path too long", path);
		return NULL;
	}
	struct px_rules *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->cur = rule_set_load(path, err, errlen);
	if (!r->cur) {
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->mu, NULL);
	pthread_mutex_init(&r->reload_mu, NULL);
	r->log = log;
	r->log_arg = log_arg;
	r->ifd = r->stop[0] = r->stop[1] = -1;
	snprintf(r->st.path, sizeof(r->st.path), "%s", path);
	memcpy(r->st.sha256, r->cur->sha256, sizeof(r->st.sha256));
	r->st.loaded_us = r->cur->loaded_us;
	atomic_init(&r->gen, 1);
	return r;
}

int px_rules_set_check(struct px_rules *r, px_rules_check_fn *fn, void *arg, char *err,
                       size_t errlen)
{
	pthread_mutex_lock(&r->reload_mu);
	r->check = fn;
	r->check_arg = arg;
	int rc = fn(arg, r->cur, err, errlen);
	pthread_mutex_unlock(&r->reload_mu);
	return rc;
}

int px_rules_reload(struct px_rules *r)
{
	char err[512];
	pthread_mutex_lock(&r->reload_mu);
	struct rule_set *rs = rule_set_load(r->st.path, err, sizeof(err));
	if (rs && r->check && r->check(r->check_arg, rs, err, sizeof(err)))
		rule_set_unref(&rs);
	pthread_mutex_lock(&r->mu);
	if (!rs) {
		pthread_mutex_unlock(&r->reload_mu);
		r->st.failures++;
		snprintf(r->st.last_error, sizeof(r->st.last_error), "%s", err);
		pthread_mutex_unlock(&r->mu);
		rlog(r, 0, "rules: %s (the rules in force stay)", err);
		return -1;
	}
	int same = !strcmp(rs->sha256, r->cur->sha256);
	struct rule_set *old = r->cur;
	r->cur = rs;
	r->st.reloads++;
	r->st.last_error[0] = '\0';
	memcpy(r->st.sha256, rs->sha256, sizeof(r->st.sha256));
	r->st.loaded_us = rs->loaded_us;
	atomic_fetch_add_explicit(&r->gen, 1, memory_order_release);
	pthread_mutex_unlock(&r->mu);
	pthread_mutex_unlock(&r->reload_mu);
	rule_set_unref(&old);
	rlog(r, 2, "rules: %s loaded%s: %u rules, sha256 %.12s", r->st.path,
	     same ? " (unchanged)" : "", rs->n, rs->sha256);
	return 0;
}

struct rule_set *px_rules_current(struct px_rules *r, struct px_rules_ref *ref)
{
	uint64_t gen = atomic_load_explicit(&r->gen, memory_order_acquire);
	if (ref->rs && ref->gen == gen)
		return ref->rs;
	pthread_mutex_lock(&r->mu);
	struct rule_set *rs = r->cur;
	rule_set_ref(rs);
	ref->gen = atomic_load_explicit(&r->gen, memory_order_relaxed);
	pthread_mutex_unlock(&r->mu);
	rule_set_unref(&ref->rs);
	ref->rs = rs;
	return rs;
}

void px_rules_ref_drop(struct px_rules_ref *ref)
{
	rule_set_unref(&ref->rs);
	ref->gen = 0;
}

struct rule_set *px_rules_state(struct px_rules *r, struct px_rules_state *st)
{
	pthread_mutex_lock(&r->mu);
	*st = r->st;
	struct rule_set *rs = r->cur;
	rule_set_ref(rs);
	pthread_mutex_unlock(&r->mu);
	return rs;
}

/* ---- the watcher ---- */

static void *watch_main(void *arg)
{
	struct px_rules *r = arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int pending = 0;
	for (;;) {
		struct pollfd pfd[2] = {{r->ifd, POLLIN, 0}, {r->stop[0], POLLIN, 0}};
		int n = poll(pfd, 2, pending ? (int)r->debounce_ms : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rlog(r, 0, "rules: watching %s failed: %s", r->st.path, strerror(errno));
			return NULL;
		}
		if (pfd[1].revents)
			return NULL;
		if (n == 0) {
			/* Quiet for debounce_ms after a change: the file is written. */
			pending = 0;
			px_rules_reload(r);
			continue;
		}
		ssize_t len = read(r->ifd, buf, sizeof(buf));
		for (ssize_t off = 0; len > 0 && off < len;) {
			const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
			if (ev->len && !strcmp(ev->name, r->base))
				pending = 1;
			off += (ssize_t)(sizeof(*ev) + ev->len);
		}
	}
}

int px_rules_watch(struct px_rules *r, unsigned debounce_ms, char *err, size_t errlen)
{
	const char *slash = strrchr(r->st.path, '/');
	const char *base = slash ? slash + 1 : r->st.path;
	if (strlen(base) >= sizeof(r->base)) {
		snprintf(err, errlen, "rules: %s: file name too long", r->st.path);
		return -1;
	}
	memcpy(r->base, base, strlen(base) + 1);
	if (slash)
		snprintf(r->dir, sizeof(r->dir), "%.*s", (int)(slash - r->st.path + 1), r->st.path);
	else
		snprintf(r->dir, sizeof(r->dir), ".");
	r->debounce_ms = debounce_ms ? debounce_ms : 1;
	r->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (r->ifd < 0 || pipe(r->stop) < 0) {
		snprintf(err, errlen, "rules: cannot watch %s: %s", r->st.path, strerror(errno));
		return -1;
	}
	/* The folder, not the file: editors and `mv new rules.yaml` replace it. */
	if (inotify_add_watch(r->ifd, r->dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0) {
		snprintf(err, errlen, "rules: cannot watch %s: %s", r->dir, strerror(errno));
		return -1;
	}
	if (pthread_create(&r->thread, NULL, watch_main, r)) {
		snprintf(err, errlen, "rules: cannot start the watcher");
		return -1;
	}
	r->watching = 1;
	return 0;
}

void px_rules_free(struct px_rules **pr)
{
	struct px_rules *r = *pr;
	*pr = NULL;
	if (!r)
		return;
	if (r->watching) {
		ssize_t w = write(r->stop[1], "x", 1);
		(void)w;
		pthread_join(r->thread, NULL);
	}
	if (r->ifd >= 0)
		close(r->ifd);
	if (r->stop[0] >= 0)
		close(r->stop[0]);
	if (r->stop[1] >= 0)
		close(r->stop[1]);
	rule_set_unref(&r->cur);
	pthread_mutex_destroy(&r->mu);
	pthread_mutex_destroy(&r->reload_mu);
	free(r);
}
