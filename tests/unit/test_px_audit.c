/* test_px_audit.c: the audit's file sinks (proxy/px-audit.h) on their own:
 * a failing disk (/dev/full) is logged once and counted, never fatal; a
 * line over the bounded buffer is dropped and counted; SIGHUP's reopen
 * makes a new file after the old one was moved; a rules file whose sink
 * cannot be opened is refused with FILE:LINE:COL and the sinks in force
 * stay; a reload keeps the sinks it still names and closes the others. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "px-audit.h"
#include "rule.h"

struct logs {
	_Atomic int n, failed, closing;
};

static void on_log(void *arg, int level, const char *msg)
{
	struct logs *l = arg;
	(void)level;
	atomic_fetch_add(&l->n, 1);
	if (strstr(msg, "failed"))
		atomic_fetch_add(&l->failed, 1);
	if (strstr(msg, "closing"))
		atomic_fetch_add(&l->closing, 1);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static const struct px_audit_who who = {
    .client_addr = "127.0.0.1:5555",
    .client_id = {(const uint8_t *)"app", 3, 0},
    .principal = "",
    .broker_id = 1,
    .api_key = 0,
    .api_version = 9,
    .correlation_id = 7,
};

/* The counters of the sink named name (0s when there is none). */
static struct px_audit_sink_stats stats(struct px_audit *a, const char *name)
{
	struct px_audit_sink_stats st[8], none = {0};
	unsigned n = px_audit_stats(a, st, 8);
	for (unsigned i = 0; i < n && i < 8; i++)
		if (!strcmp(st[i].name, name))
			return st[i];
	return none;
}

static void test_full_disk(void **state)
{
	(void)state;
	struct logs l = {0};
	struct px_audit_conf ac = {.default_file = "/dev/full", .log = on_log, .log_arg = &l};
	char err[256];
	struct px_audit *a = px_audit_new(&ac, err, sizeof(err));
	assert_non_null(a);
	for (int i = 0; i < 20; i++) {
		px_audit_throttle(a, NULL, &who, "q", "app", 100, NULL, 0);
		sleep_ms(2);
	}
	for (int i = 0; i < 500 && stats(a, "/dev/full").dropped < 20; i++)
		sleep_ms(10);
	struct px_audit_sink_stats st = stats(a, "/dev/full");
	assert_int_equal(st.records, 20);
	assert_int_equal(st.written, 0);
	assert_int_equal(st.dropped, 20);
	assert_true(st.errors >= 1);
	assert_int_equal(atomic_load(&l.failed), 1); /* logged once */
	px_audit_free(&a);
	assert_null(a);
}

static void test_buffer_bound(void **state)
{
	(void)state;
	char dir[] = "/tmp/kwire-audit-XXXXXX", path[256];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a.jsonl", dir);
	/* A buffer smaller than one line: every line is dropped, none waits. */
	struct px_audit_conf ac = {.default_file = path, .file_buffer_bytes = 64};
	char err[256];
	struct px_audit *a = px_audit_new(&ac, err, sizeof(err));
	assert_non_null(a);
	px_audit_throttle(a, NULL, &who, "q", "app", 100, NULL, 0);
	struct px_audit_sink_stats st = stats(a, path);
	assert_int_equal(st.records, 1);
	assert_int_equal(st.dropped, 1);
	px_audit_free(&a);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, 0);
	unlink(path);
	rmdir(dir);
}

/* Waits for path to hold want lines; returns how many it holds. */
static int wait_lines(const char *path, int want)
{
	int n = 0;
	for (int i = 0; i < 500; i++) {
		FILE *f = fopen(path, "r");
		n = 0;
		if (f) {
			int c;
			while ((c = fgetc(f)) != EOF)
				n += c == '\n';
			fclose(f);
		}
		if (n >= want)
			break;
		sleep_ms(10);
	}
	return n;
}

static void test_reopen(void **state)
{
	(void)state;
	char dir[] = "/tmp/kwire-audit-XXXXXX", path[256], moved[300];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a.jsonl", dir);
	snprintf(moved, sizeof(moved), "%s.1", path);
	struct px_audit_conf ac = {.default_file = path};
	char err[256];
	struct px_audit *a = px_audit_new(&ac, err, sizeof(err));
	assert_non_null(a);
	px_audit_throttle(a, NULL, &who, "q", "app", 100, NULL, 0);
	assert_int_equal(wait_lines(path, 1), 1);
	assert_int_equal(rename(path, moved), 0);
	px_audit_reopen(a);
	for (int i = 0; i < 500 && access(path, F_OK); i++)
		sleep_ms(10);
	assert_int_equal(access(path, F_OK), 0);
	px_audit_throttle(a, NULL, &who, "q", "app", 200, NULL, 0);
	assert_int_equal(wait_lines(path, 1), 1);
	assert_int_equal(wait_lines(moved, 1), 1); /* the moved file got nothing new */
	px_audit_free(&a);
	/* The line is what docs/rules.md says. */
	FILE *f = fopen(path, "r");
	char line[1024];
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	assert_non_null(strstr(line, "\"event\":\"throttle\",\"rule\":\"q\""));
	assert_non_null(strstr(line, "\"client\":\"127.0.0.1:5555\",\"client_id\":\"app\""));
	assert_non_null(strstr(line, "\"key\":\"app\",\"throttle_ms\":200}"));
	unlink(path);
	unlink(moved);
	rmdir(dir);
}

static void test_reload(void **state)
{
	(void)state;
	char dir[] = "/tmp/kwire-audit-XXXXXX", rpath[256], a1[256], a2[256];
	assert_non_null(mkdtemp(dir));
	snprintf(rpath, sizeof(rpath), "%s/rules.yaml", dir);
	snprintf(a1, sizeof(a1), "%s/one.jsonl", dir);
	snprintf(a2, sizeof(a2), "%s/two.jsonl", dir);
	struct logs l = {0};
	struct px_audit_conf ac = {.log = on_log, .log_arg = &l};
	char err[512];
	struct px_audit *a = px_audit_new(&ac, err, sizeof(err));
	assert_non_null(a);
	FILE *f = fopen(rpath, "w");
	fputs("audit:\n  - name: one\n    log: records\n    to: one.jsonl\n"
	      "  - name: two\n    log: summary\n    to: two.jsonl\n",
	      f);
	fclose(f);
	struct rule_set *rs = rule_set_load(rpath, err, sizeof(err));
	assert_non_null(rs);
	assert_int_equal(px_audit_check(a, rs, err, sizeof(err)), 0);
	assert_int_equal(access(a1, F_OK), 0); /* relative to the rules file's folder */
	assert_int_equal(access(a2, F_OK), 0);
	/* A sink that cannot be opened refuses the set; the sinks stay. */
	const char *y1 = "audit:\n  - log: records\n    to: /nonexistent/x\n";
	struct rule_set *bad = rule_set_load_mem(y1, strlen(y1), "bad.yaml", err, sizeof(err));
	assert_non_null(bad);
	assert_int_equal(px_audit_check(a, bad, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "bad.yaml:2:5:"));
	assert_non_null(strstr(err, "/nonexistent/x"));
	rule_set_unref(&bad);
	/* No `to` and no audit_log: refused too. */
	const char *y2 = "audit:\n  - log: summary\n";
	bad = rule_set_load_mem(y2, strlen(y2), "none.yaml", err, sizeof(err));
	assert_non_null(bad);
	assert_int_equal(px_audit_check(a, bad, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "audit_log"));
	rule_set_unref(&bad);
	assert_int_equal(px_audit_stats(a, NULL, 0), 2);
	/* A reload naming one of them: it stays, the other closes. */
	f = fopen(rpath, "w");
	fputs("audit:\n  - name: one\n    log: records\n    to: one.jsonl\n", f);
	fclose(f);
	struct rule_set *rs2 = rule_set_load(rpath, err, sizeof(err));
	assert_non_null(rs2);
	assert_int_equal(px_audit_check(a, rs2, err, sizeof(err)), 0);
	assert_int_equal(px_audit_stats(a, NULL, 0), 1);
	assert_int_equal(atomic_load(&l.closing), 1);
	struct px_audit_sink_stats st;
	assert_int_equal(px_audit_stats(a, &st, 1), 1);
	assert_string_equal(st.name, a1);
	rule_set_unref(&rs);
	rule_set_unref(&rs2);
	px_audit_free(&a);
	unlink(a1);
	unlink(a2);
	unlink(rpath);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full_disk),
	    cmocka_unit_test(test_buffer_bound),
	    cmocka_unit_test(test_reopen),
	    cmocka_unit_test(test_reload),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
