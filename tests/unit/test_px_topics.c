/* test_px_topics.c: the proxy's observer (access log and /metrics) on
 * modern traffic as librdkafka 2.12's mock cluster sends it: topic ids
 * learnt from Metadata copies (px_topics, shared per proxy) and used for
 * the access log and the /metrics topic labels, an id not known yet
 * labelled "topic-id:<uuid>" and folded into its name once learnt, decode
 * warnings counted, and the log's status telling an error answer from ok.
 * Pairs go through the observer's real on_pair hook. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kd-arena.h"
#include "kd-cur.h"
#include "kd-records.h"
#include "kd-topics.h"
#include "kd-tree.h"
#include "px-admin.h"
#include "px-log.h"
#include "px.h"

#define I32(x) (uint8_t)((x) >> 24), (uint8_t)((x) >> 16), (uint8_t)((x) >> 8), (uint8_t)(x)

static const uint8_t id_clicks[16] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                      0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0, 0x01};
static const uint8_t id_views[16] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
                                     0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf};

static struct kd_arena arena;

struct named {
	const uint8_t *id;
	const char *name;
	uint32_t nrec;
};

static void md_resp(struct kd_tree *t, const struct named *n)
{
	struct kd_node *tp = kd_node_array_add(t, kd_node_child(t->root, "Topics"), UINT32_MAX);
	assert_int_equal(kd_node_set_str(t, kd_node_child(tp, "Name"), n->name, strlen(n->name)),
	                 KD_OK);
	assert_int_equal(kd_node_set_uuid(kd_node_child(tp, "TopicId"), n->id), KD_OK);
}

static void fetch_req(struct kd_tree *t, const struct named *n)
{
	struct kd_node *tp = kd_node_array_add(t, kd_node_child(t->root, "Topics"), UINT32_MAX);
	assert_int_equal(kd_node_set_uuid(kd_node_child(tp, "TopicId"), n->id), KD_OK);
	assert_non_null(kd_node_array_add(t, kd_node_child(tp, "Partitions"), UINT32_MAX));
}

static void fetch_resp(struct kd_tree *t, const struct named *n)
{
	struct kd_node *tp = kd_node_array_add(t, kd_node_child(t->root, "Responses"), UINT32_MAX);
	assert_int_equal(kd_node_set_uuid(kd_node_child(tp, "TopicId"), n->id), KD_OK);
	struct kd_node *p = kd_node_array_add(t, kd_node_child(tp, "Partitions"), UINT32_MAX);
	struct kd_wrecord recs[8];
	memset(recs, 0, sizeof(recs));
	for (uint32_t i = 0; i < n->nrec; i++) {
		recs[i].key = (struct kd_view){NULL, 0, 1};
		recs[i].value = (struct kd_view){(const uint8_t *)"v", 1, 0};
	}
	struct kd_batch_spec spec = {
	    .magic = 2, .producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
	struct kd_wbuf data = {0};
	assert_int_equal(kd_batch_write(&data, &spec, recs, n->nrec), KD_OK);
	assert_int_equal(kd_node_set_str(t, kd_node_child(p, "Records"), data.p, data.len), KD_OK);
	kd_wbuf_free(&data);
}

/* A whole frame: size, header (request v2 / response v1), the body min
 * edited by fn (NULL: min as is), extra zero bytes after it. */
static void frame(struct kd_wbuf *f, int req, int16_t key, int16_t v, int32_t corr,
                  const uint8_t *min, size_t minlen,
                  void (*fn)(struct kd_tree *, const struct named *), const struct named *n,
                  size_t extra)
{
	struct kd_wbuf body = {0};
	if (fn) {
		struct kd_tree t;
		assert_int_equal(kd_tree_decode(&t, &arena, key, v, req, min, minlen), KD_OK);
		fn(&t, n);
		assert_int_equal(kd_tree_encode(&t, &body), KD_OK);
	} else {
		kd_w_raw(&body, min, minlen);
	}
	static const uint8_t zeros[8];
	kd_w_raw(&body, zeros, extra);
	uint8_t rh[] = {0,
	                0,
	                0,
	                0,
	                (uint8_t)(key >> 8),
	                (uint8_t)key,
	                (uint8_t)(v >> 8),
	                (uint8_t)v,
	                I32(corr),
	                0,
	                4,
	                'u',
	                'n',
	                'i',
	                't',
	                0};
	uint8_t sh[] = {0, 0, 0, 0, I32(corr), 0};
	/* ApiVersions responses always use header v0 (no tag section) */
	size_t shlen = key == 18 ? 8 : 9;
	const uint8_t *h = req ? rh : sh;
	size_t hl = req ? sizeof(rh) : shlen;
	f->len = 0;
	kd_w_raw(f, h, hl);
	kd_w_raw(f, body.p, body.len);
	uint32_t size = (uint32_t)(f->len - 4);
	f->p[0] = (uint8_t)(size >> 24);
	f->p[1] = (uint8_t)(size >> 16);
	f->p[2] = (uint8_t)(size >> 8);
	f->p[3] = (uint8_t)size;
	kd_wbuf_free(&body);
	kd_arena_reset(&arena);
}

static void send_pair(const struct px_hooks *hooks, int16_t key, int16_t v, int32_t corr,
                      const struct kd_wbuf *req, const struct kd_wbuf *resp)
{
	struct px_pair pair;
	memset(&pair, 0, sizeof(pair));
	pair.api_key = key;
	pair.api_version = v;
	pair.correlation_id = corr;
	pair.client_id = (struct kd_view){(const uint8_t *)"unit", 4, 0};
	pair.client_addr = "127.0.0.1:5000";
	pair.upstream_addr = "127.0.0.1:9092";
	pair.t_req_us = 1700000000000000ull;
	pair.latency_us = 100;
	pair.req_frame = req->p;
	pair.req_frame_len = req->len;
	pair.req_size = (uint32_t)req->len - 4;
	pair.resp_frame = resp->p;
	pair.resp_frame_len = resp->len;
	pair.resp_size = (uint32_t)resp->len - 4;
	hooks->on_pair(hooks->arg, &pair);
}

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

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

/* A copy of the log line holding needle, or NULL. */
static const char *line_with(const char *text, const char *needle)
{
	static char line[8192];
	const char *p = strstr(text, needle);
	if (!p)
		return NULL;
	while (p > text && p[-1] != '\n')
		p--;
	const char *e = strchr(p, '\n');
	size_t n = e ? (size_t)(e - p) : strlen(p);
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	memcpy(line, p, n);
	line[n] = 0;
	return line;
}

static void expect(const char *text, const char *needle)
{
	if (!strstr(text, needle))
		fail_msg("no '%s' in:\n%s", needle, text);
}

static void test_observer(void **state)
{
	(void)state;
	static const uint8_t md_req[] = {0x00, 0x01, 0x00, 0x00};
	static const uint8_t md_min[] = {I32(0), 0x01, 0x00, I32(1), 0x01, 0x00};
	static const uint8_t fetch_req_min[] = {I32(500), I32(1), I32(1048576), 0,    I32(0),
	                                        I32(-1),  0x01,   0x01,         0x01, 0x00};
	static const uint8_t fetch_resp_min[] = {I32(0), 0, 0, I32(0), 0x01, 0x00};
	static const uint8_t av_req[] = {0x02, 'a', 0x02, '1', 0x00};
	static const uint8_t av_refused[] = {0x00, 35, 0, 0, 0, 0}; /* KIP-511 v0 body */

	char err[256], path[] = "/tmp/kwire-test-topics-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	struct px_conf conf;
	px_conf_init(&conf);
	assert_int_equal(px_conf_set_upstreams(&conf, "127.0.0.1:1", err, sizeof(err)), 0);
	struct px *px = px_new(&conf, err, sizeof(err));
	assert_non_null(px);
	assert_non_null(px_topics(px));
	struct px_observer obs = {.px = px};
	obs.log = px_log_new(path, PX_LOGF_JSON, 0, err, sizeof(err));
	assert_non_null(obs.log);
	struct px_hostport hp = {.host = "127.0.0.1", .port = 0};
	obs.admin = px_admin_new(px, &hp, err, sizeof(err));
	assert_non_null(obs.admin);
	px_admin_set_log(obs.admin, obs.log);
	struct px_hooks hooks;
	px_observer_hooks(&obs, &hooks);

	struct kd_wbuf req = {0}, resp = {0};
	const struct named clicks = {id_clicks, "clicks", 3}, views = {id_views, "views", 2};
	/* Metadata v12 naming "clicks", with the 2.12 mock's extra byte */
	frame(&req, 1, 3, 12, 1, md_req, sizeof(md_req), NULL, NULL, 0);
	frame(&resp, 0, 3, 12, 1, md_min, sizeof(md_min), md_resp, &clicks, 1);
	send_pair(&hooks, 3, 12, 1, &req, &resp);
	/* Fetch v16 by id: "clicks", then an id not named yet */
	const struct named *fetched[2] = {&clicks, &views};
	for (int k = 0; k < 2; k++) {
		frame(&req, 1, 1, 16, 2 + k, fetch_req_min, sizeof(fetch_req_min), fetch_req,
		      fetched[k], 0);
		frame(&resp, 0, 1, 16, 2 + k, fetch_resp_min, sizeof(fetch_resp_min), fetch_resp,
		      fetched[k], 0);
		send_pair(&hooks, 1, 16, 2 + k, &req, &resp);
	}
	/* ApiVersions v3 refused: an answer carrying an error */
	frame(&req, 1, 18, 3, 4, av_req, sizeof(av_req), NULL, NULL, 0);
	frame(&resp, 0, 18, 3, 4, av_refused, sizeof(av_refused), NULL, NULL, 0);
	send_pair(&hooks, 18, 3, 4, &req, &resp);
	px_log_flush(obs.log);

	char idtext[KD_TOPIC_ID_TEXT], want[256];
	kd_topic_id_text(id_views, idtext);
	const char *log = slurp(path);
	const char *l;
	assert_non_null(l = line_with(log, "\"api\":\"Metadata\""));
	expect(l, "\"warnings\":[\"response body: 1 trailing bytes\"]");
	assert_non_null(l = line_with(log, "\"correlation_id\":2,"));
	expect(l, "\"status\":\"ok\"");
	expect(l, "\"partitions\":[{\"topic\":\"clicks\",\"topic_id\":\"ESIzRFVmd4iZqrvM3e7wAQ\"");
	assert_non_null(l = line_with(log, "\"correlation_id\":3,"));
	expect(l, "\"partitions\":[{\"topic\":null,\"topic_id\":\"oKGio6SlpqeoqaqrrK2urw\"");
	assert_non_null(l = line_with(log, "\"correlation_id\":4,"));
	expect(l, "\"status\":\"error\",\"error\":\"UNSUPPORTED_VERSION\"");

	char *m = http_get(px_admin_port(obs.admin), "/metrics");
	assert_non_null(m);
	expect(m, "kwire_topic_fetch_records_total{topic=\"clicks\"} 3\n");
	snprintf(want, sizeof(want), "kwire_topic_fetch_records_total{topic=\"%s\"} 2\n", idtext);
	expect(m, want);
	expect(m, "kwire_body_decode_warnings_total 1\n");
	expect(m, "kwire_body_decode_errors_total 0\n");
	expect(m, "kwire_decode_warnings_total 0\n");
	free(m);

	/* "views" learnt later (CreateTopics would do as well): the label
	 * moves to the name, the counts with it */
	frame(&req, 1, 3, 12, 5, md_req, sizeof(md_req), NULL, NULL, 0);
	frame(&resp, 0, 3, 12, 5, md_min, sizeof(md_min), md_resp, &views, 0);
	send_pair(&hooks, 3, 12, 5, &req, &resp);
	frame(&req, 1, 1, 16, 6, fetch_req_min, sizeof(fetch_req_min), fetch_req, &views, 0);
	frame(&resp, 0, 1, 16, 6, fetch_resp_min, sizeof(fetch_resp_min), fetch_resp, &views, 0);
	send_pair(&hooks, 1, 16, 6, &req, &resp);
	m = http_get(px_admin_port(obs.admin), "/metrics");
	expect(m, "kwire_topic_fetch_records_total{topic=\"views\"} 4\n");
	assert_null(strstr(m, idtext));
	expect(m, "kwire_body_decode_warnings_total 1\n");
	free(m);
	px_log_flush(obs.log);
	log = slurp(path);
	assert_non_null(l = line_with(log, "\"correlation_id\":6,"));
	expect(l, "\"partitions\":[{\"topic\":\"views\",\"topic_id\":\"oKGio6SlpqeoqaqrrK2urw\"");

	kd_wbuf_free(&req);
	kd_wbuf_free(&resp);
	kd_arena_free(&arena);
	px_observe_stop(&obs);
	px_free(&px);
	px_conf_free(&conf);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_observer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
