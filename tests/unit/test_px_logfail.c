/* test_px_logfail.c: access log write failures are not silent (issue 8,
 * item 8): a full disk (/dev/full) and a deleted directory. Each failure
 * is reported once, then at most once per interval; the write-error
 * counter is exported on /metrics; /healthz says "degraded" while the log
 * cannot write, and "ok" once it can again. The admin endpoint is asked
 * over real HTTP. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "px-admin.h"
#include "px-log.h"
#include "px.h"

#define MSG_MAX 64

struct msgs {
	pthread_mutex_t mu;
	char *m[MSG_MAX];
	int n;
};

static struct msgs g_msgs = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_error(void *arg, const char *msg)
{
	struct msgs *ms = arg;
	pthread_mutex_lock(&ms->mu);
	if (ms->n < MSG_MAX)
		ms->m[ms->n++] = strdup(msg);
	pthread_mutex_unlock(&ms->mu);
}

static int msgs_with(const char *needle)
{
	int k = 0;
	pthread_mutex_lock(&g_msgs.mu);
	for (int i = 0; i < g_msgs.n; i++)
		k += strstr(g_msgs.m[i], needle) != NULL;
	pthread_mutex_unlock(&g_msgs.mu);
	return k;
}

static void msgs_reset(void)
{
	pthread_mutex_lock(&g_msgs.mu);
	for (int i = 0; i < g_msgs.n; i++)
		free(g_msgs.m[i]);
	g_msgs.n = 0;
	pthread_mutex_unlock(&g_msgs.mu);
}

/* GET path from the admin endpoint; the whole HTTP response, malloc'd. */
static char *http_get(uint16_t port, const char *path)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	char req[128];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
	assert_int_equal(send(fd, req, (size_t)n, 0), n);
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	ssize_t got;
	while ((got = recv(fd, buf + len, cap - 1 - len, 0)) > 0)
		len += (size_t)got;
	buf[len] = '\0';
	close(fd);
	return buf;
}

/* A proxy object for the admin endpoint to read (never started). */
static struct px *px_idle(void)
{
	struct px_conf conf;
	char err[256];
	px_conf_init(&conf);
	assert_int_equal(px_conf_set_upstreams(&conf, "127.0.0.1:1", err, sizeof(err)), 0);
	struct px *px = px_new(&conf, err, sizeof(err));
	assert_non_null(px);
	px_conf_free(&conf);
	return px;
}

static void write_lines(struct px_log *log, int n)
{
	for (int i = 0; i < n; i++) {
		px_log_line(log, "a line of the access log", 24);
		px_log_flush(log); /* one write each: n failures */
	}
}

/* /dev/full: every write fails with ENOSPC. One message for 50 failures
 * (the interval is an hour), the counter, /healthz degraded. */
static void test_full_disk(void **state)
{
	(void)state;
	char err[256];
	msgs_reset();
	struct px_log *log = px_log_new("/dev/full", PX_LOGF_TEXT, 0, err, sizeof(err));
	assert_non_null(log);
	px_log_set_error_cb(log, on_error, &g_msgs, 3600 * 1000);
	struct px *px = px_idle();
	struct px_hostport addr;
	memset(&addr, 0, sizeof(addr));
	snprintf(addr.host, sizeof(addr.host), "127.0.0.1");
	struct px_admin *adm = px_admin_new(px, &addr, err, sizeof(err));
	assert_non_null(adm);
	px_admin_set_log(adm, log);

	char *h = http_get(px_admin_port(adm), "/healthz");
	assert_non_null(strstr(h, "\r\n\r\nok\n"));
	free(h);

	write_lines(log, 50);
	struct px_log_stats st;
	px_log_stats_get(log, &st);
	assert_int_equal(st.write_errors, 50);
	assert_int_equal(st.lines, 0);
	assert_int_equal(msgs_with("/dev/full"), 1);
	assert_int_equal(msgs_with(strerror(ENOSPC)), 1);
	char what[192];
	assert_int_equal(px_log_health(log, what, sizeof(what)), 1);

	char *m = http_get(px_admin_port(adm), "/metrics");
	assert_non_null(strstr(m, "\nkwire_access_log_write_errors_total 50\n"));
	free(m);
	h = http_get(px_admin_port(adm), "/healthz");
	assert_non_null(strstr(h, "HTTP/1.0 200") ? h : strstr(h, "HTTP/1.1 200"));
	assert_non_null(strstr(h, "degraded: access log: write failed"));
	assert_non_null(strstr(h, strerror(ENOSPC)));
	free(h);

	px_admin_free(&adm);
	px_free(&px);
	px_log_free(&log);
}

/* An interval of 0: every failure is reported (the rate limit is the
 * interval, nothing else). */
static void test_interval(void **state)
{
	(void)state;
	char err[256];
	msgs_reset();
	struct px_log *log = px_log_new("/dev/full", PX_LOGF_TEXT, 0, err, sizeof(err));
	assert_non_null(log);
	px_log_set_error_cb(log, on_error, &g_msgs, 0);
	write_lines(log, 5);
	assert_int_equal(msgs_with("/dev/full"), 5);
	assert_int_equal(msgs_with("more failures"), 4);
	px_log_free(&log);
}

/* The log's directory is removed: the lost writes are noticed (the file
 * has no link left), reported once, /healthz degraded. The directory comes
 * back and SIGHUP (px_log_reopen) reopens: writing again, ok. */
static void test_deleted_dir(void **state)
{
	(void)state;
	char err[256], dir[] = "/tmp/kwire-logfail-XXXXXX", path[256];
	msgs_reset();
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/access.log", dir);
	struct px_log *log = px_log_new(path, PX_LOGF_TEXT, 0, err, sizeof(err));
	assert_non_null(log);
	px_log_set_error_cb(log, on_error, &g_msgs, 3600 * 1000);
	write_lines(log, 1);
	assert_int_equal(px_log_health(log, NULL, 0), 0);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
	/* The check runs at most once a second, when the logger is idle. */
	for (int i = 0; i < 300 && !px_log_health(log, NULL, 0); i++) {
		write_lines(log, 1);
		usleep(10000);
	}
	char what[192];
	assert_int_equal(px_log_health(log, what, sizeof(what)), 1);
	assert_non_null(strstr(what, "deleted"));
	write_lines(log, 20);
	assert_int_equal(msgs_with("deleted"), 1);
	/* SIGHUP while the directory is still missing: a failure too. */
	struct px_log_stats st0, st1;
	px_log_stats_get(log, &st0);
	px_log_reopen(log);
	write_lines(log, 1);
	px_log_stats_get(log, &st1);
	assert_true(st1.write_errors > st0.write_errors);
	assert_int_equal(px_log_health(log, what, sizeof(what)), 1);
	assert_non_null(strstr(what, strerror(ENOENT)));

	assert_int_equal(mkdir(dir, 0700), 0);
	px_log_reopen(log);
	write_lines(log, 1);
	assert_int_equal(px_log_health(log, NULL, 0), 0);
	assert_int_equal(msgs_with("writing again"), 1);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[64];
	assert_non_null(fgets(line, sizeof(line), f));
	assert_string_equal(line, "a line of the access log\n");
	fclose(f);
	px_log_free(&log);
	unlink(path);
	rmdir(dir);
}

/* The file alone is deleted (rm without SIGHUP): it is created again. */
static void test_deleted_file(void **state)
{
	(void)state;
	char err[256], dir[] = "/tmp/kwire-logfail-XXXXXX", path[256];
	msgs_reset();
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/access.log", dir);
	struct px_log *log = px_log_new(path, PX_LOGF_TEXT, 0, err, sizeof(err));
	assert_non_null(log);
	px_log_set_error_cb(log, on_error, &g_msgs, 3600 * 1000);
	write_lines(log, 1);
	assert_int_equal(unlink(path), 0);
	struct stat st;
	for (int i = 0; i < 300 && stat(path, &st); i++) {
		write_lines(log, 1);
		usleep(10000);
	}
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(msgs_with("created it again"), 1);
	write_lines(log, 1);
	assert_true(st.st_size > 0 || stat(path, &st) == 0);
	px_log_free(&log);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full_disk),
	    cmocka_unit_test(test_interval),
	    cmocka_unit_test(test_deleted_dir),
	    cmocka_unit_test(test_deleted_file),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	msgs_reset();
	return rc;
}
