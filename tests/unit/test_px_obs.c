/* Unit tests of the proxy's observation side: the access log's queue and
 * logger thread (px-log.h), the admin endpoint over real HTTP
 * (px-admin.h), and the per-pair summary from copied frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kd-crc.h"
#include "kd-cur.h"
#include "kd-hdr.h"
#include "px-admin.h"
#include "px-log.h"
#include "px.h"

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t cap = 0, n = 0;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = (cap + 4096) * 2;
			buf = realloc(buf, cap);
		}
		size_t r = fread(buf + n, 1, 4096, f);
		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static unsigned count_lines(const char *s)
{
	unsigned n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

struct writer_arg {
	struct px_log *log;
	int id;
	int n;
};

static void *writer(void *p)
{
	struct writer_arg *a = p;
	for (int i = 0; i < a->n; i++) {
		char line[64];
		int len = snprintf(line, sizeof(line), "writer %d line %d", a->id, i);
		px_log_line(a->log, line, (size_t)len);
	}
	return NULL;
}

/* Four threads, 2000 lines each: every line arrives whole, each thread's
 * lines in order, nothing dropped with a big enough ring. */
static void test_log_threads(void **state)
{
	char path[] = "/tmp/kwire-test-log-XXXXXX", err[256];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	struct px_log *log = px_log_new(path, PX_LOGF_TEXT, 1 << 20, err, sizeof(err));
	assert_non_null(log);
	pthread_t th[4];
	struct writer_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct writer_arg){log, i, 2000};
		pthread_create(&th[i], NULL, writer, &args[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	px_log_flush(log);
	struct px_log_stats st;
	px_log_stats_get(log, &st);
	assert_int_equal(st.lines, 8000);
	assert_int_equal(st.dropped, 0);

	size_t len;
	char *text = slurp(path, &len);
	assert_non_null(text);
	assert_int_equal(count_lines(text), 8000);
	int next[4] = {0};
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		int id, i;
		assert_int_equal(sscanf(line, "writer %d line %d", &id, &i), 2);
		assert_true(id >= 0 && id < 4);
		assert_int_equal(i, next[id]);
		next[id]++;
	}
	free(text);
	px_log_free(&log);
	assert_null(log);
	unlink(path);
}

/* A tiny ring: pushing never blocks, lines that do not fit are counted as
 * dropped, and written + dropped accounts for every line. */
static void test_log_drops(void **state)
{
	char path[] = "/tmp/kwire-test-log-XXXXXX", err[256];
	int fd = mkstemp(path);
	close(fd);
	struct px_log *log = px_log_new(path, PX_LOGF_TEXT, 100, err, sizeof(err));
	assert_non_null(log);
	char line[40];
	memset(line, 'x', sizeof(line));
	for (int i = 0; i < 1000; i++)
		px_log_line(log, line, sizeof(line));
	px_log_line(log, line, 200); /* bigger than the ring: dropped */
	px_log_flush(log);
	struct px_log_stats st;
	px_log_stats_get(log, &st);
	assert_int_equal(st.lines + st.dropped, 1001);
	assert_true(st.dropped >= 1);
	size_t len;
	char *text = slurp(path, &len);
	assert_int_equal(count_lines(text), st.lines);
	assert_int_equal(len, st.lines * 41);
	free(text);
	px_log_free(&log);
	unlink(path);
}

/* SIGHUP-style reopen after the file was moved away (log rotation). */
static void test_log_reopen(void **state)
{
	char path[] = "/tmp/kwire-test-log-XXXXXX", err[256], moved[64];
	int fd = mkstemp(path);
	close(fd);
	snprintf(moved, sizeof(moved), "%s.1", path);
	struct px_log *log = px_log_new(path, PX_LOGF_TEXT, 0, err, sizeof(err));
	assert_non_null(log);
	px_log_line(log, "before", 6);
	px_log_flush(log);
	assert_int_equal(rename(path, moved), 0);
	px_log_reopen(log);
	px_log_line(log, "after", 5);
	px_log_flush(log);
	size_t len;
	char *a = slurp(moved, &len), *b = slurp(path, &len);
	assert_non_null(a);
	assert_non_null(b);
	assert_string_equal(a, "before\n");
	assert_string_equal(b, "after\n");
	free(a);
	free(b);
	struct px_log_stats st;
	px_log_stats_get(log, &st);
	assert_int_equal(st.reopens, 1);
	px_log_free(&log);
	unlink(path);
	unlink(moved);
}

static void test_log_bad_path(void **state)
{
	char err[256] = "";
	struct px_log *log =
	    px_log_new("/nonexistent-dir/x.log", PX_LOGF_TEXT, 0, err, sizeof(err));
	assert_null(log);
	assert_non_null(strstr(err, "/nonexistent-dir/x.log"));
}

/* ---- frames ---- */

static void put_size(struct kd_wbuf *w)
{
	uint32_t size = (uint32_t)w->len - 4;
	for (int i = 0; i < 4; i++)
		w->p[i] = (uint8_t)(size >> (24 - 8 * i));
}

/* A ProduceRequest v3 frame: one topic, one partition, one RecordBatch v2
 * holding nrec small records (WIRE-NOTES.md section 7). */
static void produce_frame(struct kd_wbuf *w, const char *topic, int32_t partition, int nrec)
{
	struct kd_wbuf recs = {0};
	for (int i = 0; i < nrec; i++) {
		struct kd_wbuf r = {0};
		kd_w_i8(&r, 0);      /* attributes */
		kd_w_varlong(&r, 0); /* timestampDelta */
		kd_w_varint(&r, i);  /* offsetDelta */
		kd_w_varint(&r, -1); /* key: null */
		kd_w_varint(&r, 5);  /* value */
		kd_w_raw(&r, "hello", 5);
		kd_w_varint(&r, 0); /* headers */
		kd_w_varint(&recs, (int32_t)r.len);
		kd_w_raw(&recs, r.p, r.len);
		kd_wbuf_free(&r);
	}
	struct kd_wbuf b = {0}; /* from attributes on: what the CRC covers */
	kd_w_i16(&b, 0);
	kd_w_i32(&b, nrec - 1);
	kd_w_i64(&b, 1700000000000);
	kd_w_i64(&b, 1700000000000);
	kd_w_i64(&b, -1);
	kd_w_i16(&b, -1);
	kd_w_i32(&b, -1);
	kd_w_i32(&b, nrec);
	kd_w_raw(&b, recs.p, recs.len);
	struct kd_wbuf batch = {0};
	kd_w_i64(&batch, 0);
	kd_w_i32(&batch, (int32_t)(4 + 1 + 4 + b.len)); /* batchLength */
	kd_w_i32(&batch, -1);
	kd_w_i8(&batch, 2);
	kd_w_u32(&batch, kd_crc32c(0, b.p, b.len));
	kd_w_raw(&batch, b.p, b.len);

	struct kd_req_hdr hdr;
	kd_req_hdr_init(&hdr, 0, 3, 7, "unit");
	kd_w_i32(w, 0);
	kd_req_hdr_write(w, &hdr);
	kd_w_i16(w, -1); /* TransactionalId null */
	kd_w_i16(w, 1);  /* Acks */
	kd_w_i32(w, 30000);
	kd_w_i32(w, 1);
	kd_w_i16(w, (int16_t)strlen(topic));
	kd_w_raw(w, topic, strlen(topic));
	kd_w_i32(w, 1);
	kd_w_i32(w, partition);
	kd_w_i32(w, (int32_t)batch.len);
	kd_w_raw(w, batch.p, batch.len);
	put_size(w);
	kd_wbuf_free(&recs);
	kd_wbuf_free(&b);
	kd_wbuf_free(&batch);
}

/* ProduceResponse v3: one topic, one partition, error code err. */
static void produce_resp_frame(struct kd_wbuf *w, const char *topic, int32_t partition, int16_t err)
{
	kd_w_i32(w, 0);
	kd_w_i32(w, 7); /* correlation id */
	kd_w_i32(w, 1);
	kd_w_i16(w, (int16_t)strlen(topic));
	kd_w_raw(w, topic, strlen(topic));
	kd_w_i32(w, 1);
	kd_w_i32(w, partition);
	kd_w_i16(w, err);
	kd_w_i64(w, 42); /* BaseOffset */
	kd_w_i64(w, -1); /* LogAppendTimeMs */
	kd_w_i32(w, 0);  /* ThrottleTimeMs */
	put_size(w);
}

static void make_pair(struct px_pair *pair, struct kd_wbuf *req, struct kd_wbuf *resp)
{
	memset(pair, 0, sizeof(*pair));
	pair->api_key = 0;
	pair->api_version = 3;
	pair->correlation_id = 7;
	pair->client_id = (struct kd_view){(const uint8_t *)"unit", 4, 0};
	pair->client_addr = "127.0.0.1:5000";
	pair->upstream_addr = "127.0.0.1:9092";
	pair->t_req_us = 1700000000000000ull;
	pair->latency_us = 300;
	pair->req_frame = req->p;
	pair->req_frame_len = req->len;
	pair->req_size = (uint32_t)req->len - 4;
	pair->resp_frame = resp->p;
	pair->resp_frame_len = resp->len;
	pair->resp_size = (uint32_t)resp->len - 4;
}

static void test_pair_summary(void **state)
{
	struct kd_wbuf req = {0}, resp = {0}, line = {0};
	produce_frame(&req, "orders", 2, 3);
	produce_resp_frame(&resp, "orders", 2, 0);
	struct px_pair pair;
	make_pair(&pair, &req, &resp);
	struct kd_summary sum;
	px_pair_summarise(&pair, &sum);
	assert_int_equal(sum.api_key, 0);
	assert_int_equal(sum.records, 3);
	assert_int_equal(sum.ntp, 1);
	assert_int_equal(sum.tp[0].partition, 2);
	assert_int_equal(sum.tp[0].records, 3);
	assert_int_equal(sum.tp[0].base_offset, 42);
	assert_int_equal(sum.latency_us, 300);
	kd_sum_text(&sum, &line);
	kd_w_raw(&line, "", 1);
	assert_non_null(strstr((const char *)line.p, "orders[2]:3rec/"));
	assert_non_null(strstr((const char *)line.p, "127.0.0.1:5000 -> 127.0.0.1:9092"));
	kd_wbuf_free(&req);
	kd_wbuf_free(&resp);
	kd_wbuf_free(&line);
}

/* ---- the admin endpoint, over HTTP ---- */

static char *http_get(uint16_t port, const char *path)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return NULL;
	}
	char req[256];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return NULL;
	}
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (len + 4096 >= cap)
			buf = realloc(buf, cap *= 2);
		ssize_t r = read(fd, buf + len, 4096);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	close(fd);
	return buf;
}

static void test_admin_http(void **state)
{
	char err[256];
	struct px_conf conf;
	px_conf_init(&conf);
	assert_int_equal(px_conf_set_upstreams(&conf, "127.0.0.1:1", err, sizeof(err)), 0);
	struct px *px = px_new(&conf, err, sizeof(err));
	assert_non_null(px);
	struct px_hostport hp = {.host = "127.0.0.1", .port = 0};
	struct px_admin *adm = px_admin_new(px, &hp, err, sizeof(err));
	assert_non_null(adm);
	assert_true(px_admin_port(adm) > 0);

	/* Two Produce pairs for "orders" (3 + 5 records), one refused with
	 * NOT_LEADER_OR_FOLLOWER (6): only the accepted ones count. */
	int nrecs[3] = {3, 5, 7};
	int16_t errs[3] = {0, 0, 6};
	for (int i = 0; i < 3; i++) {
		struct kd_wbuf req = {0}, resp = {0};
		produce_frame(&req, "orders", 0, nrecs[i]);
		produce_resp_frame(&resp, "orders", 0, errs[i]);
		struct px_pair pair;
		make_pair(&pair, &req, &resp);
		pair.latency_us = i == 0 ? 50 : 3000; /* one <= 100 us, two <= 5 ms */
		struct kd_summary sum;
		px_pair_summarise(&pair, &sum);
		px_admin_record(adm, &pair, &sum);
		kd_wbuf_free(&req);
		kd_wbuf_free(&resp);
	}
	struct px_topic_totals tt;
	assert_int_equal(px_admin_topic_totals(adm, "orders", &tt), 0);
	assert_int_equal(tt.produce_records, 8);
	assert_int_equal(px_admin_topic_totals(adm, "nope", &tt), -1);

	char *m = http_get(px_admin_port(adm), "/metrics");
	assert_non_null(m);
	assert_non_null(strstr(m, "200 OK"));
	assert_non_null(strstr(m, "kwire_topic_produce_records_total{topic=\"orders\"} 8\n"));
	assert_non_null(
	    strstr(m, "kwire_request_latency_seconds_bucket{api=\"Produce\",le=\"0.0001\"} 1\n"));
	assert_non_null(
	    strstr(m, "kwire_request_latency_seconds_bucket{api=\"Produce\",le=\"0.005\"} 3\n"));
	assert_non_null(
	    strstr(m, "kwire_request_latency_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(m, "kwire_request_latency_seconds_count{api=\"Produce\"} 3\n"));
	assert_non_null(
	    strstr(m, "# TYPE kwire_connections_active gauge\nkwire_connections_active 0\n"));
	free(m);
	char *h = http_get(px_admin_port(adm), "/healthz");
	assert_non_null(strstr(h, "\r\n\r\nok\n"));
	free(h);
	char *b = http_get(px_admin_port(adm), "/brokers");
	assert_non_null(strstr(b, "application/json"));
	assert_non_null(strstr(b, "\"brokers\":[]"));
	free(b);
	char *nf = http_get(px_admin_port(adm), "/nope");
	assert_non_null(strstr(nf, "404"));
	free(nf);

	px_admin_free(&adm);
	assert_null(adm);
	px_free(&px);
	px_conf_free(&conf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_log_threads),  cmocka_unit_test(test_log_drops),
	    cmocka_unit_test(test_log_reopen),   cmocka_unit_test(test_log_bad_path),
	    cmocka_unit_test(test_pair_summary), cmocka_unit_test(test_admin_http),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
