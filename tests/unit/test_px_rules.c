/* test_px_rules.c: the proxy's rules in force: reload on demand and when
 * the file changes (written in place, or renamed over), a broken file
 * keeping the running set, and readers on several threads that never see
 * a freed set while the file is replaced hundreds of times. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "px-rules.h"
#include "rule.h"

static char dir[64], path[128];

static void write_file(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static const char allow[] = "access:\n  - name: a\n    match: {topic: t}\n    allow: true\n";
static const char deny[] = "access:\n  - name: d\n    match: {topic: t}\n    deny: true\n";

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/kwire-rules-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/rules.yaml", dir);
	write_file(path, allow);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static int logged_errors;
static void log_cb(void *arg, int level, const char *msg)
{
	(void)arg;
	(void)msg;
	if (level == 0)
		logged_errors++;
}

static const char *first_name(struct px_rules *r, struct px_rules_ref *ref)
{
	struct rule_set *rs = px_rules_current(r, ref);
	return rs->n ? rs->rules[0].name : "";
}

static void test_reload(void **state)
{
	(void)state;
	char err[512];
	assert_null(px_rules_new("/nonexistent/r.yaml", NULL, NULL, err, sizeof(err)));
	struct px_rules *r = px_rules_new(path, log_cb, NULL, err, sizeof(err));
	assert_non_null(r);
	struct px_rules_ref ref = {0};
	assert_string_equal(first_name(r, &ref), "a");
	struct rule_set *held = ref.rs;
	rule_set_ref(held); /* a request in flight under the old set */
	write_file(path, deny);
	assert_int_equal(px_rules_reload(r), 0);
	assert_string_equal(first_name(r, &ref), "d");
	assert_string_equal(held->rules[0].name, "a"); /* still valid */
	rule_set_unref(&held);
	/* A broken file: the running set stays, the error is kept. */
	write_file(path, "access:\n  - match: {nope: 1}\n    deny: true\n");
	logged_errors = 0;
	assert_int_equal(px_rules_reload(r), -1);
	assert_int_equal(logged_errors, 1);
	assert_string_equal(first_name(r, &ref), "d");
	struct px_rules_state st;
	struct rule_set *rs = px_rules_state(r, &st);
	assert_non_null(strstr(st.last_error, "rules.yaml:2:13: unknown match key 'nope'"));
	assert_int_equal(st.reloads, 1);
	assert_int_equal(st.failures, 1);
	rule_set_unref(&rs);
	px_rules_ref_drop(&ref);
	px_rules_free(&r);
	assert_null(r);
}

/* Waits (bounded) until the set in force has rule name want. */
static int wait_for(struct px_rules *r, struct px_rules_ref *ref, const char *want)
{
	for (int i = 0; i < 1000; i++) {
		if (!strcmp(first_name(r, ref), want))
			return 1;
		usleep(10000);
	}
	return 0;
}

static void test_watch(void **state)
{
	(void)state;
	char err[512], tmp[160];
	struct px_rules *r = px_rules_new(path, NULL, NULL, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(px_rules_watch(r, 50, err, sizeof(err)), 0);
	struct px_rules_ref ref = {0};
	write_file(path, deny); /* in place */
	assert_true(wait_for(r, &ref, "d"));
	snprintf(tmp, sizeof(tmp), "%s/new.yaml", dir);
	write_file(tmp, allow); /* renamed over, as editors do */
	assert_int_equal(rename(tmp, path), 0);
	assert_true(wait_for(r, &ref, "a"));
	/* Another file in the folder changes nothing. */
	write_file(tmp, deny);
	usleep(200000);
	assert_string_equal(first_name(r, &ref), "a");
	px_rules_ref_drop(&ref);
	px_rules_free(&r);
}

struct reader {
	struct px_rules *r;
	_Atomic int *stop;
	unsigned long seen;
};

static void *read_main(void *arg)
{
	struct reader *rd = arg;
	struct px_rules_ref ref = {0};
	struct rule_topic t = {.name = {(const uint8_t *)"t", 1, 0}};
	struct rule_req req = {
	    .api_key = 0, .have_body = 1, .acks = -1, .topics = &t, .ntopics = 1};
	while (!atomic_load(rd->stop)) {
		struct rule_set *rs = px_rules_current(rd->r, &ref);
		rule_set_ref(rs); /* a request pins its set */
		struct rule_verdict v = {0};
		rule_eval(rs, &req, &v);
		rule_set_unref(&rs);
		rd->seen++;
	}
	px_rules_ref_drop(&ref);
	return NULL;
}

static void test_readers_during_reloads(void **state)
{
	(void)state;
	char err[512];
	struct px_rules *r = px_rules_new(path, NULL, NULL, err, sizeof(err));
	assert_non_null(r);
	_Atomic int stop = 0;
	pthread_t th[3];
	struct reader rd[3];
	for (int i = 0; i < 3; i++) {
		rd[i] = (struct reader){r, &stop, 0};
		pthread_create(&th[i], NULL, read_main, &rd[i]);
	}
	for (int i = 0; i < 300; i++) {
		write_file(path, i % 2 ? allow : deny);
		assert_int_equal(px_rules_reload(r), 0);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		assert_true(rd[i].seen > 0);
	}
	px_rules_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_watch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_readers_during_reloads, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
