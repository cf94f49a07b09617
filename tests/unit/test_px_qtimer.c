/* test_px_qtimer.c: when a connection's quota timer fires
 * (px_quota_timer_at). A mute or a held answer always has a timer, even
 * when its end is already past by the time the timer is armed: the reader
 * stopped on it (c2s, or the held answer in s2c) looked at the clock
 * earlier, and a process descheduled for more than the 1 ms slack of
 * muted() in between would otherwise leave the connection with a request
 * in its input, read enabled and nothing to wake it (a kafka-python
 * producer with its 5 requests in flight then stalled for 120 s,
 * docs/rules.md "Quotas in the proxy"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "px-quota.h"

static void test_none(void **state)
{
	(void)state;
	assert_int_equal(px_quota_timer_at(0, 0), 0);
}

/* Times in the past (the clock now at 10 s): still a timer, at once. */
static void test_past_still_fires(void **state)
{
	(void)state;
	uint64_t now = 10000000, past = now - 2000;
	uint64_t at = px_quota_timer_at(past, 0);
	assert_true(at != 0 && at <= now);
	at = px_quota_timer_at(0, past);
	assert_true(at != 0 && at <= now);
	/* A mute just over (within muted()'s 1 ms slack, or a hair past). */
	assert_int_equal(px_quota_timer_at(now - 1, 0), now - 1);
	assert_int_equal(px_quota_timer_at(now, 0), now);
}

/* The earlier of the two, whichever it is. */
static void test_earlier(void **state)
{
	(void)state;
	assert_int_equal(px_quota_timer_at(5000, 7000), 5000);
	assert_int_equal(px_quota_timer_at(9000, 7000), 7000);
	assert_int_equal(px_quota_timer_at(9000, 0), 9000);
	assert_int_equal(px_quota_timer_at(0, 7000), 7000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_none),
	    cmocka_unit_test(test_past_still_fires),
	    cmocka_unit_test(test_earlier),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
