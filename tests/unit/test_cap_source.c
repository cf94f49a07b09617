/* test_cap_source.c: the pcap reader's windowed fast path (cap-pcap.c).
 *
 * A plain pcap file in this host's byte order is served from a pread()
 * window rather than through libpcap's fread per record. These tests hold
 * it to libpcap's behaviour where it matters to a user: every record comes
 * out as written across window refills, and a file that shrinks while it
 * is being read ends in a clean truncation or error, never a crash (a
 * memory mapping would die with SIGBUS there). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <pcap/pcap.h>

#include "cap.h"
#include "cap_test_pkt.h"

/* Records of 1000..1999 bytes whose payload encodes their index, enough
 * to fill several 2 MiB windows. */
#define NREC 6000

static uint32_t rec_len(unsigned i)
{
	return 1000 + (i * 7919u) % 1000;
}

static char *write_capture(size_t *size)
{
	struct tp_pcap w;
	uint8_t *data = malloc(2000);
	assert_non_null(data);
	tp_pcap_begin(&w, DLT_RAW, 0, 65535);
	for (unsigned i = 0; i < NREC; i++) {
		memset(data, (int)(i & 0xff), 2000);
		tp_put32(data, i);
		tp_pcap_rec(&w, 1700000000000000 + i, data, rec_len(i), rec_len(i));
	}
	char *path = tp_tmpfile(w.p, w.len, ".pcap");
	assert_non_null(path);
	*size = w.len;
	tp_pcap_free(&w);
	free(data);
	return path;
}

static void check_record(const struct cap_pkt *pkt, unsigned i)
{
	assert_int_equal(pkt->caplen, rec_len(i));
	assert_int_equal(((uint32_t)pkt->data[0] << 24 | (uint32_t)pkt->data[1] << 16 |
	                  (uint32_t)pkt->data[2] << 8 | pkt->data[3]),
	                 i);
	assert_int_equal(pkt->data[pkt->caplen - 1], i & 0xff);
	assert_int_equal(pkt->ts_us, 1700000000000000 + (int64_t)i);
}

static void test_every_record_across_windows(void **state)
{
	(void)state;
	size_t size;
	char *path = write_capture(&size);
	char err[256];
	struct cap_source *src = NULL;
	struct cap_pkt pkt;
	unsigned n = 0;
	int rc;

	assert_true(size > 3 * (2u << 20));
	assert_int_equal(cap_source_open(&src, path, err, sizeof(err)), 0);
	while ((rc = cap_source_next(src, &pkt)) == 1)
		check_record(&pkt, n++);
	assert_int_equal(rc, 0);
	assert_int_equal(n, NREC);
	assert_false(cap_source_truncated(src));
	cap_source_close(&src);
	unlink(path);
	free(path);
}

static void test_file_shrinks_while_read(void **state)
{
	(void)state;
	size_t size;
	char *path = write_capture(&size);
	char err[256];
	struct cap_source *src = NULL;
	struct cap_pkt pkt;
	unsigned n = 0;
	int rc;

	assert_int_equal(cap_source_open(&src, path, err, sizeof(err)), 0);
	for (; n < 100; n++) {
		assert_int_equal(cap_source_next(src, &pkt), 1);
		check_record(&pkt, n);
	}
	/* The file loses its second half behind the reader's back. */
	assert_int_equal(truncate(path, (off_t)(size / 2)), 0);
	while ((rc = cap_source_next(src, &pkt)) == 1)
		check_record(&pkt, n++);
	/* Whatever was still there came out intact; then a clean end. */
	assert_true(n > 100 && n < NREC);
	assert_true(rc == -1 || cap_source_truncated(src));
	cap_source_close(&src);
	unlink(path);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_record_across_windows),
	    cmocka_unit_test(test_file_shrinks_while_read),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
