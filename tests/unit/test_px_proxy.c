/* test_px_proxy.c: a real proxy (px_start, real libevent, real sockets on
 * 127.0.0.1) in front of a real Kafka-speaking cluster: librdkafka's mock
 * cluster run by tools/kwire-mockcluster. Clients are raw sockets speaking
 * the protocol by hand and a real librdkafka producer and consumer.
 *
 * Covers: forwarding and pairing, address rewriting end to end (no real
 * broker port ever reaches a client), per-broker listeners, ApiVersions,
 * counters and the pair hook, bad clients (garbage, a 2 GB frame, a
 * negative size, a malformed header, half a frame then silence) closing
 * only their own connection, upstream failures, a broker going away, the
 * in-flight limit and back-pressure under pipelining, and draining. */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "kd-arena.h"
#include "kd-hdr.h"
#include "kd-topics.h"
#include "kd-tree.h"
#include "px.h"

/* ---- the mock cluster ---- */

#define MC_MAX 8

struct mc {
	pid_t pid;
	FILE *in, *out;
	char bootstrap[512];
	int nbrokers;
	int32_t ids[MC_MAX];
	uint16_t ports[MC_MAX];
};

static struct mc g_mc;

static int mc_start(struct mc *mc, int brokers)
{
	const char *build = getenv("KWIRE_BUILD");
	char bin[1024], nb[8];
	int pin[2], pout[2];
	memset(mc, 0, sizeof(*mc));
	if (!build)
		return -1;
	snprintf(bin, sizeof(bin), "%s/kwire-mockcluster", build);
	snprintf(nb, sizeof(nb), "%d", brokers);
	if (pipe(pin) || pipe(pout))
		return -1;
	mc->pid = fork();
	if (mc->pid == 0) {
		dup2(pin[0], 0);
		dup2(pout[1], 1);
		close(pin[1]);
		close(pout[0]);
		execl(bin, bin, "--brokers", nb, "--topic", "t1:4", (char *)NULL);
		_exit(127);
	}
	close(pin[0]);
	close(pout[1]);
	mc->in = fdopen(pin[1], "w");
	mc->out = fdopen(pout[0], "r");
	char line[512];
	while (fgets(line, sizeof(line), mc->out)) {
		int id, port;
		if (!strncmp(line, "BOOTSTRAP ", 10)) {
			snprintf(mc->bootstrap, sizeof(mc->bootstrap), "%s", line + 10);
			mc->bootstrap[strcspn(mc->bootstrap, "\n")] = '\0';
		} else if (sscanf(line, "BROKER %d 127.0.0.1:%d", &id, &port) == 2 &&
		           mc->nbrokers < MC_MAX) {
			mc->ids[mc->nbrokers] = id;
			mc->ports[mc->nbrokers++] = (uint16_t)port;
		} else if (!strncmp(line, "READY", 5)) {
			return 0;
		}
	}
	return -1;
}

static int mc_cmd(struct mc *mc, const char *cmd)
{
	char line[256];
	fprintf(mc->in, "%s\n", cmd);
	fflush(mc->in);
	if (!fgets(line, sizeof(line), mc->out))
		return -1;
	return strncmp(line, "OK", 2) ? -1 : 0;
}

static void mc_stop(struct mc *mc)
{
	if (mc->in)
		fclose(mc->in); /* EOF on stdin stops the cluster */
	if (mc->pid > 0)
		waitpid(mc->pid, NULL, 0);
	if (mc->out)
		fclose(mc->out);
	memset(mc, 0, sizeof(*mc));
}

static int is_real_port(int port)
{
	for (int i = 0; i < g_mc.nbrokers; i++)
		if (g_mc.ports[i] == port)
			return 1;
	return 0;
}

/* ---- the proxy ---- */

struct pairs {
	_Atomic int n;
	_Atomic int api_versions;
	_Atomic int with_frames;
	_Atomic int no_response;
	_Atomic int bad_latency;
};

static void on_pair(void *arg, const struct px_pair *pair)
{
	struct pairs *pr = arg;
	atomic_fetch_add(&pr->n, 1);
	if (pair->api_key == 18 && !pair->no_response)
		atomic_fetch_add(&pr->api_versions, 1);
	if (pair->no_response)
		atomic_fetch_add(&pr->no_response, 1);
	if (pair->req_frame && pair->req_frame_len >= 12 &&
	    (!pair->resp_size || (pair->resp_frame && pair->resp_frame_len >= 8)))
		atomic_fetch_add(&pr->with_frames, 1);
	if (pair->latency_us > 60u * 1000000u)
		atomic_fetch_add(&pr->bad_latency, 1);
}

/* buffer_bytes of the next proxy_start (0: the default). */
static size_t g_buffer_bytes;
static const char *g_rules; /* a rules file for proxy_start, or NULL */

static struct px *proxy_start(const char *upstreams, unsigned max_inflight, unsigned idle_ms,
                              struct pairs *pr)
{
	struct px_conf conf;
	char err[256];
	px_conf_init(&conf);
	if (g_buffer_bytes)
		conf.buffer_bytes = g_buffer_bytes;
	snprintf(conf.listen.host, sizeof(conf.listen.host), "127.0.0.1");
	conf.listen.port = 0; /* ephemeral: broker listeners ephemeral too */
	conf.workers = 2;
	conf.log_level = getenv("PX_TEST_VERBOSE") ? 3 : 0;
	conf.connect_timeout_ms = 2000;
	conf.drain_timeout_ms = 2000;
	conf.idle_timeout_ms = idle_ms;
	if (max_inflight)
		conf.max_inflight = max_inflight;
	if (g_rules)
		conf.rules = strdup(g_rules);
	if (px_conf_set_upstreams(&conf, upstreams, err, sizeof(err)))
		fail_msg("%s", err);
	struct px *px = px_new(&conf, err, sizeof(err));
	if (!px)
		fail_msg("%s", err);
	if (pr) {
		struct px_hooks hooks;
		memset(&hooks, 0, sizeof(hooks));
		hooks.on_pair = on_pair;
		hooks.arg = pr;
		hooks.want_frames = PX_WANT_REQ | PX_WANT_RESP;
		px_set_hooks(px, &hooks);
	}
	if (px_start(px, err, sizeof(err)))
		fail_msg("%s", err);
	px_conf_free(&conf);
	return px;
}

/* ---- raw Kafka over sockets ---- */

static int tcp_connect(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	struct timeval tv = {10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void send_all(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;
	while (len) {
		ssize_t n = send(fd, b, len, MSG_NOSIGNAL);
		if (n <= 0)
			fail_msg("send: %s", strerror(errno));
		b += n;
		len -= (size_t)n;
	}
}

/* Reads exactly len bytes; returns len, 0 on EOF/reset, -1 on timeout. */
static ssize_t recv_all(int fd, uint8_t *p, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(fd, p + got, len - got, 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return 0;
		if (n < 0)
			return errno == EINTR ? (ssize_t)got : -1;
		got += (size_t)n;
	}
	return (ssize_t)len;
}

/* A request frame of (key, ver, corr) with body. */
static void req_frame(struct kd_wbuf *w, int16_t key, int16_t ver, int32_t corr,
                      const struct kd_wbuf *body)
{
	struct kd_req_hdr hdr;
	struct kd_wbuf hw = {0};
	kd_req_hdr_init(&hdr, key, ver, corr, "px-test");
	kd_req_hdr_write(&hw, &hdr);
	kd_w_i32(w, (int32_t)(hw.len + body->len));
	kd_w_raw(w, hw.p, hw.len);
	kd_w_raw(w, body->p, body->len);
	kd_wbuf_free(&hw);
}

/* ApiVersions v2 (empty body): the mock cluster of librdkafka 2.0 knows
 * v0-v2 only. */
static void apiversions_req(struct kd_wbuf *w, int32_t corr)
{
	struct kd_wbuf body = {0};
	req_frame(w, 18, 2, corr, &body);
	kd_wbuf_free(&body);
}

static void metadata_req(struct kd_wbuf *w, int32_t corr)
{
	struct kd_wbuf body = {0};
	kd_w_i32(&body, -1);             /* Topics: null = all (v1+) */
	req_frame(w, 3, 1, corr, &body); /* the mock knows Metadata v0-v2 */
	kd_wbuf_free(&body);
}

/* Reads one response frame into buf (malloc'd); returns its size (after
 * the prefix), 0 on EOF, -1 on timeout. */
static ssize_t recv_frame(int fd, uint8_t **buf)
{
	uint8_t sz[4];
	ssize_t n = recv_all(fd, sz, 4);
	if (n <= 0)
		return n;
	uint32_t size =
	    (uint32_t)sz[0] << 24 | (uint32_t)sz[1] << 16 | (uint32_t)sz[2] << 8 | sz[3];
	assert_true(size < 16 * 1024 * 1024);
	*buf = malloc(size + 1);
	n = recv_all(fd, *buf, size);
	if (n <= 0) {
		free(*buf);
		*buf = NULL;
		return n;
	}
	return (ssize_t)size;
}

static int32_t corr_of(const uint8_t *p)
{
	return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
}

/* Sends ApiVersions and checks the answer: the connection works. */
static void roundtrip_ok(int fd, int32_t corr)
{
	struct kd_wbuf w = {0};
	uint8_t *resp = NULL;
	apiversions_req(&w, corr);
	send_all(fd, w.p, w.len);
	kd_wbuf_free(&w);
	ssize_t n = recv_frame(fd, &resp);
	if (n < 8)
		fail_msg("no ApiVersions response (%zd)", n);
	assert_int_equal(corr_of(resp), corr);
	assert_int_equal(resp[4], 0); /* ErrorCode 0 */
	assert_int_equal(resp[5], 0);
	free(resp);
}

/* 1 when the peer closes fd within ~timeout (EOF or reset). */
static int closed_by_peer(int fd)
{
	uint8_t b[256];
	for (;;) {
		ssize_t n = recv(fd, b, sizeof(b), 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return 1;
		if (n < 0)
			return 0; /* timeout */
	}
}

/* Like closed_by_peer, while good (a healthy connection) keeps working
 * and so never idles out. */
static int closed_keeping_alive(int fd, int good)
{
	struct timeval tv = {0, 200000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (int i = 0; i < 50; i++) {
		if (closed_by_peer(fd))
			return 1;
		roundtrip_ok(good, 1000 + i);
	}
	return 0;
}

/* Metadata v1 via fd: checks every broker is 127.0.0.1 on a proxy port
 * and returns the proxy ports by node id. */
static int metadata_check(struct px *px, int fd, int32_t ids[MC_MAX], uint16_t ports[MC_MAX])
{
	struct kd_wbuf w = {0};
	uint8_t *resp = NULL;
	metadata_req(&w, 42);
	send_all(fd, w.p, w.len);
	kd_wbuf_free(&w);
	ssize_t n = recv_frame(fd, &resp);
	assert_true(n > 4);
	assert_int_equal(corr_of(resp), 42);
	struct kd_arena arena = {0};
	struct kd_tree t;
	if (kd_tree_decode(&t, &arena, 3, 1, 0, resp + 4, (size_t)n - 4) != KD_OK)
		fail_msg("metadata: %s", t.err_msg);
	struct kd_node *brokers = kd_node_child(t.root, "Brokers");
	struct px_broker_ent map[MC_MAX];
	unsigned nmap = px_broker_map(px, map, MC_MAX);
	assert_int_equal(brokers->nkids, g_mc.nbrokers);
	assert_int_equal(nmap, g_mc.nbrokers);
	for (uint32_t i = 0; i < brokers->nkids; i++) {
		struct kd_node *b = kd_node_elem(brokers, i);
		int32_t id = (int32_t)kd_node_int(kd_node_child(b, "NodeId"));
		struct kd_node *host = kd_node_child(b, "Host");
		int port = (int)kd_node_int(kd_node_child(b, "Port"));
		assert_int_equal(host->val.v.len, 9);
		assert_memory_equal(host->val.v.p, "127.0.0.1", 9);
		assert_false(is_real_port(port));
		int found = 0;
		for (unsigned j = 0; j < nmap; j++) {
			if (map[j].node_id == id) {
				assert_int_equal(map[j].proxy_port, port);
				assert_true(map[j].listening);
				assert_true(is_real_port(map[j].port));
				found = 1;
			}
		}
		assert_true(found);
		ids[i] = id;
		ports[i] = (uint16_t)port;
	}
	int nb = (int)brokers->nkids;
	kd_arena_free(&arena);
	free(resp);
	return nb;
}

/* ---- tests ---- */

static int setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (mc_start(&g_mc, 3)) {
		fprintf(stderr, "cannot start kwire-mockcluster (KWIRE_BUILD unset?)\n");
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	mc_stop(&g_mc);
	return 0;
}

static void test_forward_and_rewrite(void **state)
{
	(void)state;
	struct pairs pr;
	memset(&pr, 0, sizeof(pr));
	struct px *px = proxy_start(g_mc.bootstrap, 0, 0, &pr);
	int fd = tcp_connect(px_listen_port(px));
	roundtrip_ok(fd, 1);
	int32_t ids[MC_MAX];
	uint16_t ports[MC_MAX];
	int nb = metadata_check(px, fd, ids, ports);
	/* Every broker port answers, through the proxy, to that broker. */
	for (int i = 0; i < nb; i++) {
		int bfd = tcp_connect(ports[i]);
		roundtrip_ok(bfd, 100 + i);
		int32_t ids2[MC_MAX];
		uint16_t ports2[MC_MAX];
		metadata_check(px, bfd, ids2, ports2);
		close(bfd);
	}
	close(fd);

	struct px_stats st;
	struct px_api_stats as;
	px_stats_get(px, &st);
	assert_true(st.conns_accepted >= 4);
	assert_true(st.responses_rewritten >= 4);
	assert_true(st.bytes_in_client > 0 && st.bytes_out_client > 0);
	assert_int_equal(st.bytes_in_client, st.bytes_out_upstream);
	assert_int_equal(st.decode_errors, 0);
	px_api_stats_get(px, 18, 2, &as);
	assert_int_equal(as.requests, 1 + (uint64_t)nb);
	assert_int_equal(as.responses, 1 + (uint64_t)nb);
	px_api_stats_get(px, 3, 1, &as);
	assert_int_equal(as.requests, 1 + (uint64_t)nb);
	px_free(&px);
	assert_null(px);
	/* Pairs: one per request, frames copied, sane latency. */
	assert_int_equal(atomic_load(&pr.n), 2 + 2 * nb);
	assert_int_equal(atomic_load(&pr.api_versions), 1 + nb);
	assert_int_equal(atomic_load(&pr.with_frames), 2 + 2 * nb);
	assert_int_equal(atomic_load(&pr.bad_latency), 0);
}

static _Atomic int g_delivered, g_dr_failed;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (m->err)
		atomic_fetch_add(&g_dr_failed, 1);
	else
		atomic_fetch_add(&g_delivered, 1);
}

static rd_kafka_conf_t *rk_conf(uint16_t port)
{
	char bs[64], err[256];
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	snprintf(bs, sizeof(bs), "127.0.0.1:%u", port);
	if (rd_kafka_conf_set(c, "bootstrap.servers", bs, err, sizeof(err)) ||
	    rd_kafka_conf_set(c, "broker.address.family", "v4", err, sizeof(err)))
		fail_msg("%s", err);
	return c;
}

/* A real librdkafka producer and consumer through the proxy. */
static void test_librdkafka(void **state)
{
	(void)state;
	enum { N = 300 };
	char err[256];
	struct px *px = proxy_start(g_mc.bootstrap, 0, 0, NULL);
	uint16_t port = px_listen_port(px);

	rd_kafka_conf_t *pc = rk_conf(port);
	rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
	if (rd_kafka_conf_set(pc, "compression.codec", "lz4", err, sizeof(err)) ||
	    rd_kafka_conf_set(pc, "linger.ms", "5", err, sizeof(err)))
		fail_msg("%s", err);
	rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
	assert_non_null(prod);
	for (int i = 0; i < N; i++) {
		char val[64];
		int len = snprintf(val, sizeof(val), "message %d through kwire", i);
		rd_kafka_resp_err_t e = rd_kafka_producev(
		    prod, RD_KAFKA_V_TOPIC("t1"), RD_KAFKA_V_VALUE(val, (size_t)len),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
	}
	assert_int_equal(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(atomic_load(&g_delivered), N);
	assert_int_equal(atomic_load(&g_dr_failed), 0);

	/* The client's view of the cluster: only proxy addresses. */
	const struct rd_kafka_metadata *md = NULL;
	assert_int_equal(rd_kafka_metadata(prod, 1, NULL, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(md->broker_cnt, g_mc.nbrokers);
	for (int i = 0; i < md->broker_cnt; i++) {
		assert_string_equal(md->brokers[i].host, "127.0.0.1");
		assert_false(is_real_port(md->brokers[i].port));
	}
	rd_kafka_metadata_destroy(md);
	rd_kafka_destroy(prod);

	rd_kafka_conf_t *cc = rk_conf(port);
	if (rd_kafka_conf_set(cc, "group.id", "px-test-group", err, sizeof(err)) ||
	    rd_kafka_conf_set(cc, "auto.offset.reset", "earliest", err, sizeof(err)))
		fail_msg("%s", err);
	rd_kafka_t *cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
	assert_non_null(cons);
	rd_kafka_poll_set_consumer(cons);
	rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(topics, "t1", RD_KAFKA_PARTITION_UA);
	assert_int_equal(rd_kafka_subscribe(cons, topics), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(topics);
	int got = 0;
	time_t deadline = time(NULL) + 60;
	while (got < N && time(NULL) < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 500);
		if (!m)
			continue;
		if (!m->err) {
			assert_true(m->len > 8 && !memcmp(m->payload, "message ", 8));
			got++;
		}
		rd_kafka_message_destroy(m);
	}
	assert_int_equal(got, N);
	rd_kafka_consumer_close(cons);
	rd_kafka_destroy(cons);

	struct px_stats st;
	px_stats_get(px, &st);
	struct px_api_stats as = {0, 0, 0};
	uint64_t produce = 0, fetch = 0, findcoord = 0;
	for (int v = 0; v < PX_VER_MAX; v++) {
		px_api_stats_get(px, 0, (int16_t)v, &as);
		produce += as.responses;
		px_api_stats_get(px, 1, (int16_t)v, &as);
		fetch += as.responses;
		px_api_stats_get(px, 10, (int16_t)v, &as);
		findcoord += as.responses;
	}
	assert_true(produce > 0);
	assert_true(fetch > 0);
	assert_true(findcoord > 0);
	assert_int_equal(st.decode_errors, 0);
	px_free(&px);
}

/* Produce with acks=0 has no response (the pair is reported at once), and
 * a client that closes right after sending loses nothing. */
static void test_acks0(void **state)
{
	(void)state;
	enum { N = 50 };
	char err[256];
	struct pairs pr;
	memset(&pr, 0, sizeof(pr));
	struct px *px = proxy_start(g_mc.bootstrap, 0, 0, &pr);
	uint16_t port = px_listen_port(px);
	rd_kafka_conf_t *pc = rk_conf(port);
	if (rd_kafka_conf_set(pc, "acks", "0", err, sizeof(err)) ||
	    rd_kafka_conf_set(pc, "linger.ms", "50", err, sizeof(err)))
		fail_msg("%s", err);
	rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
	assert_non_null(prod);
	for (int i = 0; i < N; i++)
		assert_int_equal(rd_kafka_producev(
		                     prod, RD_KAFKA_V_TOPIC("t-acks0"),
		                     RD_KAFKA_V_VALUE("acks0-message", 13), RD_KAFKA_V_PARTITION(0),
		                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
		                 RD_KAFKA_RESP_ERR_NO_ERROR);
	assert_int_equal(rd_kafka_flush(prod, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_destroy(prod); /* closes at once: nothing waits for an answer */

	rd_kafka_conf_t *cc = rk_conf(port);
	if (rd_kafka_conf_set(cc, "group.id", "px-acks0", err, sizeof(err)) ||
	    rd_kafka_conf_set(cc, "auto.offset.reset", "earliest", err, sizeof(err)))
		fail_msg("%s", err);
	rd_kafka_t *cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
	rd_kafka_poll_set_consumer(cons);
	rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(tl, "t-acks0", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
	assert_int_equal(rd_kafka_assign(cons, tl), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(tl);
	int got = 0;
	time_t deadline = time(NULL) + 30;
	while (got < N && time(NULL) < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 500);
		if (m && !m->err)
			got++;
		if (m)
			rd_kafka_message_destroy(m);
	}
	assert_int_equal(got, N);
	rd_kafka_consumer_close(cons);
	rd_kafka_destroy(cons);
	/* librdkafka's mock cluster answers acks=0 Produce requests: those
	 * answers are dropped, not taken for protocol violations. */
	struct px_stats st;
	px_stats_get(px, &st);
	assert_int_equal(st.unpaired_responses, 0);
	px_free(&px);
	assert_true(atomic_load(&pr.no_response) >= 1);
}

/* A client that half-closes right after its requests still gets every
 * answer, then EOF. */
static void test_half_close(void **state)
{
	(void)state;
	struct px *px = proxy_start(g_mc.bootstrap, 0, 0, NULL);
	int fd = tcp_connect(px_listen_port(px));
	struct kd_wbuf w = {0};
	for (int i = 0; i < 5; i++)
		apiversions_req(&w, 500 + i);
	send_all(fd, w.p, w.len);
	kd_wbuf_free(&w);
	shutdown(fd, SHUT_WR);
	for (int i = 0; i < 5; i++) {
		uint8_t *resp = NULL;
		ssize_t n = recv_frame(fd, &resp);
		if (n < 8)
			fail_msg("answer %d lost after the half-close (%zd)", i, n);
		assert_int_equal(corr_of(resp), 500 + i);
		free(resp);
	}
	assert_true(closed_by_peer(fd));
	close(fd);
	px_free(&px);
}

/* Requests arriving one byte at a time (every split of the size and the
 * header) are forwarded and answered like whole ones. */
static void test_client_dribble(void **state)
{
	(void)state;
	struct px *px = proxy_start(g_mc.bootstrap, 0, 0, NULL);
	int fd = tcp_connect(px_listen_port(px));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct kd_wbuf w = {0};
	apiversions_req(&w, 61);
	metadata_req(&w, 62);
	apiversions_req(&w, 63);
	for (size_t i = 0; i < w.len; i++) {
		send_all(fd, w.p + i, 1);
		usleep(300);
	}
	kd_wbuf_free(&w);
	for (int32_t corr = 61; corr <= 63; corr++) {
		uint8_t *resp = NULL;
		ssize_t n = recv_frame(fd, &resp);
		assert_true(n >= 8);
		assert_int_equal(corr_of(resp), corr);
		free(resp);
	}
	close(fd);
	px_free(&px);
}

/* ---- a fake broker, to control exactly what the upstream sends ---- */

enum fake_mode {
	FAKE_DRIBBLE,       /* a valid Metadata v1 response, one byte per send */
	FAKE_BROKEN,        /* a Metadata v1 response that names a real host, then
	                     * ends inside its brokers: it must never reach the client */
	FAKE_BROKEN_TOPICS, /* one whose brokers are fine and topics are not:
	                     * forwarded with its addresses rewritten */
	FAKE_TRAILING,      /* a valid Metadata v1 response and one byte more */
	FAKE_MD12,          /* Metadata v12 responses of FAKE_MD12_TOPICS topics with ids, and one
	                     * byte after the body (as librdkafka 2.12's mock cluster writes them) */
	FAKE_FETCH,         /* Fetch v16 responses of FAKE_FETCH_BYTES of records;
	                     * NodeEndpoints names the real host when the request's
	                     * correlation id is odd */
	FAKE_FETCH_SLOW,    /* FAKE_FETCH, with a pause of 300 ms after the first 64 KiB */
	FAKE_BIG,           /* a valid Metadata v1 response of FAKE_BIG_TOPICS topics
	                     * (about 2.5 MB, over the proxy's read watermark) */
	FAKE_VIOLATE,       /* valid Metadata v1 responses, except that a request with
	                     * correlation id FAKE_BAD_CORR is answered by an unsolicited
	                     * response (another correlation id, the real address) first,
	                     * and ApiVersions gets an undecodable answer: a success one
	                     * (ErrorCode 0, ApiKeys cut short) for FAKE_BAD_CORR, an
	                     * UNSUPPORTED_VERSION one in no known layout otherwise */
};
#define FAKE_BIG_TOPICS 12000
#define FAKE_FETCH_BYTES (3u << 20)
#define FAKE_MD12_TOPICS 2000
#define FAKE_BAD_CORR 666
#define FAKE_CONNS 4

struct fake {
	int lfd;
	uint16_t port;
	enum fake_mode mode;
	pthread_t th;
	/* FAKE_VIOLATE serves up to FAKE_CONNS connections at once. */
	pthread_t cth[FAKE_CONNS];
	int cfd[FAKE_CONNS];
	int nconns;
};

/* Metadata v1 body: one broker (1, host, port, rack null), controller 1,
 * no topics. broken 1: a second broker cut inside its NodeId; broken 2:
 * cut inside the topics count. */
static void fake_metadata(struct kd_wbuf *w, int32_t corr, uint16_t port, int broken, int ntopics)
{
	struct kd_wbuf b = {0};
	struct kd_view host = {(const uint8_t *)"fake-real-host.internal", 23, 0};
	struct kd_view nul = {NULL, 0, 1};
	kd_w_i32(&b, corr); /* response header v0 */
	kd_w_i32(&b, broken == 1 ? 2 : 1);
	kd_w_i32(&b, 1);
	kd_w_blob(&b, 0, 2, &host);
	kd_w_i32(&b, port);
	kd_w_blob(&b, 0, 2, &nul);
	if (broken == 1) {
		kd_w_i16(&b, 0); /* half a NodeId */
	} else if (broken == 2) {
		kd_w_i32(&b, 1); /* ControllerId */
		kd_w_i16(&b, 0); /* half a topics count */
	} else {
		kd_w_i32(&b, 1); /* ControllerId */
		kd_w_i32(&b, ntopics);
		for (int i = 0; i < ntopics; i++) {
			char name[256];
			int len = snprintf(name, sizeof(name), "topic-%05d-%0190d", i, 0);
			struct kd_view nv = {(const uint8_t *)name, (uint32_t)len, 0};
			kd_w_i16(&b, 0); /* ErrorCode */
			kd_w_blob(&b, 0, 2, &nv);
			kd_w_i8(&b, 0);  /* IsInternal */
			kd_w_i32(&b, 0); /* Partitions */
		}
	}
	kd_w_i32(w, (int32_t)b.len);
	kd_w_raw(w, b.p, b.len);
	kd_wbuf_free(&b);
}

static void md12_topic(int i, char *name, size_t cap, uint8_t id[16])
{
	snprintf(name, cap, "md12-topic-%05d-%0200d", i, 0);
	for (int k = 0; k < 16; k++)
		id[k] = (uint8_t)(k == 0 ? 0xa0 : k == 1 ? i >> 8 : k == 2 ? i : k);
}

/* A Metadata v12 response frame: broker 1 at the real address, topics with
 * names and ids, one partition each, and a byte after the body. */
static void fake_metadata12(struct kd_wbuf *w, int32_t corr, uint16_t port, int ntopics)
{
	struct kd_wbuf b = {0};
	struct kd_view host = {(const uint8_t *)"fake-real-host.internal", 23, 0};
	kd_w_i32(&b, corr); /* response header v1 */
	kd_w_uvarint(&b, 0);
	kd_w_i32(&b, 0);     /* ThrottleTimeMs */
	kd_w_uvarint(&b, 2); /* Brokers: 1 */
	kd_w_i32(&b, 1);
	kd_w_blob(&b, 1, 2, &host);
	kd_w_i32(&b, port);
	kd_w_uvarint(&b, 0); /* Rack: null */
	kd_w_uvarint(&b, 0);
	kd_w_uvarint(&b, 0); /* ClusterId: null */
	kd_w_i32(&b, 1);     /* ControllerId */
	kd_w_uvarint(&b, (uint32_t)ntopics + 1);
	for (int i = 0; i < ntopics; i++) {
		char name[256];
		uint8_t id[16];
		md12_topic(i, name, sizeof(name), id);
		struct kd_view nv = {(const uint8_t *)name, (uint32_t)strlen(name), 0};
		kd_w_i16(&b, 0); /* ErrorCode */
		kd_w_blob(&b, 1, 2, &nv);
		kd_w_raw(&b, id, 16);
		kd_w_i8(&b, 0);      /* IsInternal */
		kd_w_uvarint(&b, 2); /* Partitions: 1 */
		kd_w_i16(&b, 0);
		kd_w_i32(&b, 0);     /* PartitionIndex */
		kd_w_i32(&b, 1);     /* LeaderId */
		kd_w_i32(&b, 0);     /* LeaderEpoch */
		kd_w_uvarint(&b, 2); /* ReplicaNodes */
		kd_w_i32(&b, 1);
		kd_w_uvarint(&b, 2); /* IsrNodes */
		kd_w_i32(&b, 1);
		kd_w_uvarint(&b, 1); /* OfflineReplicas */
		kd_w_uvarint(&b, 0);
		kd_w_i32(&b, 0); /* TopicAuthorizedOperations */
		kd_w_uvarint(&b, 0);
	}
	kd_w_uvarint(&b, 0);
	kd_w_i8(&b, 0); /* the byte after the body */
	kd_w_i32(w, (int32_t)b.len);
	kd_w_raw(w, b.p, b.len);
	kd_wbuf_free(&b);
}

/* A CreateTopics v7 response frame: one topic created, with its id. */
static void fake_createtopics7(struct kd_wbuf *w, int32_t corr)
{
	struct kd_wbuf b = {0};
	char name[256];
	uint8_t id[16];
	md12_topic(FAKE_MD12_TOPICS, name, sizeof(name), id);
	struct kd_view nv = {(const uint8_t *)name, (uint32_t)strlen(name), 0};
	kd_w_i32(&b, corr); /* response header v1 */
	kd_w_uvarint(&b, 0);
	kd_w_i32(&b, 0);     /* ThrottleTimeMs */
	kd_w_uvarint(&b, 2); /* Topics: 1 */
	kd_w_blob(&b, 1, 2, &nv);
	kd_w_raw(&b, id, 16);
	kd_w_i16(&b, 0);     /* ErrorCode */
	kd_w_uvarint(&b, 0); /* ErrorMessage: null */
	kd_w_i32(&b, 3);     /* NumPartitions */
	kd_w_i16(&b, 1);     /* ReplicationFactor */
	kd_w_uvarint(&b, 0); /* Configs: null */
	kd_w_uvarint(&b, 0);
	kd_w_uvarint(&b, 0);
	kd_w_i32(w, (int32_t)b.len);
	kd_w_raw(w, b.p, b.len);
	kd_wbuf_free(&b);
}

/* A Fetch v16 response frame: one topic, one partition whose records are
 * nrec bytes of a pattern (opaque to the proxy), and, with endpoints,
 * NodeEndpoints naming broker 1 at fake-real-host.internal:port and one
 * byte after the body. */
static void fake_fetch16(struct kd_wbuf *w, int32_t corr, uint16_t port, size_t nrec, int endpoints)
{
	struct kd_wbuf b = {0};
	struct kd_view host = {(const uint8_t *)"fake-real-host.internal", 23, 0};
	static const uint8_t topic_id[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	kd_w_i32(&b, corr); /* response header v1 */
	kd_w_uvarint(&b, 0);
	kd_w_i32(&b, 0);     /* ThrottleTimeMs */
	kd_w_i16(&b, 0);     /* ErrorCode */
	kd_w_i32(&b, 7);     /* SessionId */
	kd_w_uvarint(&b, 2); /* Responses: 1 */
	kd_w_raw(&b, topic_id, 16);
	kd_w_uvarint(&b, 2); /* Partitions: 1 */
	kd_w_i32(&b, 0);
	kd_w_i16(&b, 0);
	kd_w_i64(&b, 100);
	kd_w_i64(&b, 100);
	kd_w_i64(&b, 0);
	kd_w_uvarint(&b, 0); /* AbortedTransactions: null */
	kd_w_i32(&b, -1);    /* PreferredReadReplica */
	kd_w_uvarint(&b, (uint32_t)nrec + 1);
	uint8_t *rec = kd_wbuf_reserve(&b, nrec);
	for (size_t i = 0; i < nrec; i++)
		rec[i] = (uint8_t)(i * 13 + (i >> 12));
	b.len += nrec;
	kd_w_uvarint(&b, 0); /* partition tags */
	kd_w_uvarint(&b, 0); /* topic tags */
	if (endpoints) {
		struct kd_wbuf ne = {0};
		kd_w_uvarint(&ne, 2); /* one NodeEndpoint */
		kd_w_i32(&ne, 1);
		kd_w_blob(&ne, 1, 2, &host);
		kd_w_i32(&ne, port);
		kd_w_uvarint(&ne, 0); /* Rack: null */
		kd_w_uvarint(&ne, 0);
		kd_w_uvarint(&b, 1);
		kd_w_uvarint(&b, 0); /* tag 0: NodeEndpoints */
		kd_w_uvarint(&b, (uint32_t)ne.len);
		kd_w_raw(&b, ne.p, ne.len);
		kd_wbuf_free(&ne);
		kd_w_i8(&b, 0x5a); /* a byte after the body */
	} else {
		kd_w_uvarint(&b, 0);
	}
	kd_w_i32(w, (int32_t)b.len);
	kd_w_raw(w, b.p, b.len);
	kd_wbuf_free(&b);
}

/* An ApiVersions v0-v2 answer kwire cannot decode (header v0, ErrorCode
 * error, then an ApiKeys array of 3 that holds one element). */
static void fake_apiversions_bad(struct kd_wbuf *w, int32_t corr, int16_t error)
{
	kd_w_i32(w, 4 + 2 + 4 + 6);
	kd_w_i32(w, corr);
	kd_w_i16(w, error);
	kd_w_i32(w, 3);
	kd_w_i16(w, 3); /* Metadata */
	kd_w_i16(w, 0);
	kd_w_i16(w, 99);
}

struct fake_conn {
	struct fake *fk;
	int fd;
};

static void fake_serve(struct fake *fk, int fd)
{
	uint8_t hdr[4];
	while (recv_all(fd, hdr, 4) == 4) {
		uint32_t size = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
		                (uint32_t)hdr[2] << 8 | hdr[3];
		uint8_t *req = malloc(size);
		if (recv_all(fd, req, size) != (ssize_t)size) {
			free(req);
			break;
		}
		int16_t key = (int16_t)(req[0] << 8 | req[1]);
		int32_t corr = corr_of(req + 4);
		free(req);
		struct kd_wbuf w = {0};
		if (fk->mode == FAKE_MD12 && key == 19) {
			fake_createtopics7(&w, corr);
		} else if (fk->mode == FAKE_MD12) {
			fake_metadata12(&w, corr, fk->port, FAKE_MD12_TOPICS);
		} else if (fk->mode == FAKE_FETCH || fk->mode == FAKE_FETCH_SLOW) {
			fake_fetch16(&w, corr, fk->port, FAKE_FETCH_BYTES, corr & 1);
		} else if (fk->mode == FAKE_VIOLATE && key == 18) {
			fake_apiversions_bad(&w, corr, corr == FAKE_BAD_CORR ? 0 : 35);
		} else {
			if (fk->mode == FAKE_VIOLATE && corr == FAKE_BAD_CORR)
				fake_metadata(&w, corr + 1, fk->port, 0, 0); /* unsolicited */
			fake_metadata(&w, corr, fk->port,
			              fk->mode == FAKE_BROKEN          ? 1
			              : fk->mode == FAKE_BROKEN_TOPICS ? 2
			                                               : 0,
			              fk->mode == FAKE_BIG ? FAKE_BIG_TOPICS : 0);
			if (fk->mode == FAKE_TRAILING) {
				kd_w_i8(&w, 0);
				kd_w_patch_be(&w, 0, 4, w.len - 4);
			}
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		size_t step = fk->mode == FAKE_BIG || fk->mode == FAKE_FETCH ||
		                      fk->mode == FAKE_FETCH_SLOW || fk->mode == FAKE_MD12
		                  ? 65536
		                  : 1;
		for (size_t i = 0; i < w.len; i += step) {
			size_t n = w.len - i < step ? w.len - i : step;
			if (send(fd, w.p + i, n, MSG_NOSIGNAL) != (ssize_t)n)
				break; /* the proxy hung up (FAKE_BROKEN) */
			if (fk->mode == FAKE_FETCH_SLOW && i == 0)
				usleep(300 * 1000);
			else if (fk->mode != FAKE_BROKEN && (i / step) % 8 == 0)
				usleep(1000);
		}
		kd_wbuf_free(&w);
	}
}

static void *fake_conn_main(void *arg)
{
	struct fake_conn *fc = arg;
	fake_serve(fc->fk, fc->fd);
	free(fc);
	return NULL;
}

static void *fake_main(void *arg)
{
	struct fake *fk = arg;
	if (fk->mode != FAKE_VIOLATE) {
		int fd = accept(fk->lfd, NULL, NULL);
		if (fd >= 0) {
			fake_serve(fk, fd);
			close(fd);
		}
		return NULL;
	}
	while (fk->nconns < FAKE_CONNS) {
		int fd = accept(fk->lfd, NULL, NULL);
		if (fd < 0)
			break;
		struct fake_conn *fc = malloc(sizeof(*fc));
		fc->fk = fk;
		fc->fd = fd;
		fk->cfd[fk->nconns] = fd;
		assert_int_equal(pthread_create(&fk->cth[fk->nconns], NULL, fake_conn_main, fc), 0);
		fk->nconns++;
	}
	return NULL;
}

static void fake_start(struct fake *fk, enum fake_mode mode)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	memset(fk, 0, sizeof(*fk));
	fk->mode = mode;
	fk->lfd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fk->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fk->lfd, 4), 0);
	getsockname(fk->lfd, (struct sockaddr *)&sin, &sl);
	fk->port = ntohs(sin.sin_port);
	assert_int_equal(pthread_create(&fk->th, NULL, fake_main, fk), 0);
}

static void fake_stop(struct fake *fk)
{
	shutdown(fk->lfd, SHUT_RDWR);
	close(fk->lfd);
	pthread_join(fk->th, NULL);
	for (int i = 0; i < fk->nconns; i++) {
		shutdown(fk->cfd[i], SHUT_RDWR);
		pthread_join(fk->cth[i], NULL);
		close(fk->cfd[i]);
	}
}

/* A response that must be rewritten, arriving one byte at a time: gathered
 * whole, rewritten, delivered once. */
static void rewrite_via_fake(enum fake_mode mode)
{
	struct fake fk;
	char ups[64];
	fake_start(&fk, mode);
	snprintf(ups, sizeof(ups), "127.0.0.1:%u", fk.port);
	struct px *px = proxy_start(ups, 0, 0, NULL);
	int fd = tcp_connect(px_listen_port(px));
	for (int round = 0; round < 2; round++) {
		struct kd_wbuf w = {0};
		uint8_t *resp = NULL;
		metadata_req(&w, 9 + round);
		send_all(fd, w.p, w.len);
		kd_wbuf_free(&w);
		ssize_t n = recv_frame(fd, &resp);
		assert_true(n > 4);
		assert_int_equal(corr_of(resp), 9 + round);
		struct kd_arena arena = {0};
		struct kd_tree t;
		assert_int_equal(kd_tree_decode(&t, &arena, 3, 1, 0, resp + 4, (size_t)n - 4),
		                 KD_OK);
		struct kd_node *b = kd_node_elem(kd_node_child(t.root, "Brokers"), 0);
		struct kd_node *host = kd_node_child(b, "Host");
		assert_int_equal(host->val.v.len, 9);
		assert_memory_equal(host->val.v.p, "127.0.0.1", 9);
		struct px_broker_ent ent;
		assert_int_equal(px_broker_map(px, &ent, 1), 1);
		assert_int_equal(kd_node_int(kd_node_child(b, "Port")), ent.proxy_port);
		assert_string_equal(ent.host, "fake-real-host.internal");
		assert_int_equal(ent.port, fk.port);
		int ntopics = (int)kd_node_child(t.root, "Topics")->nkids;
		assert_int_equal(ntopics, mode == FAKE_BIG ? FAKE_BIG_TOPICS : 0);
		kd_arena_free(&arena);
		free(resp);
	}
	struct px_stats st;
	px_stats_get(px, &st);
	assert_int_equal(st.responses_rewritten, 2);
	if (mode == FAKE_BIG && g_buffer_bytes && st.edit_held_max >= 2 * g_buffer_bytes)
		fail_msg("%" PRIu64 " bytes of a %d-topic response held to rewrite it",
		         st.edit_held_max, FAKE_BIG_TOPICS);
	close(fd);
	px_free(&px);
	fake_stop(&fk);
}

static void test_rewrite_dribbled(void **state)
{
	(void)state;
	rewrite_via_fake(FAKE_DRIBBLE);
}

/* A rewritten response bigger than the read watermark: the input is
 * allowed to grow to the frame (up to max_frame_bytes) and back. */
static void test_rewrite_big(void **state)
{
	(void)state;
	rewrite_via_fake(FAKE_BIG);
}

/* The same with buffer_bytes at its minimum, 128 KiB: a 2.5 MB Metadata
 * response is rewritten while it streams. kwire holds its prefix up to
 * Topics (and what one read brings), never the whole response. */
static void test_rewrite_big_bounded(void **state)
{
	(void)state;
	g_buffer_bytes = 128 * 1024;
	rewrite_via_fake(FAKE_BIG);
	g_buffer_bytes = 0;
}

/* An address-bearing response kwire cannot decode is never forwarded: the
 * client sees its connection close, not the real host. */
static void test_undecodable_never_leaks(void **state)
{
	(void)state;
	struct fake fk;
	char ups[64];
	fake_start(&fk, FAKE_BROKEN);
	snprintf(ups, sizeof(ups), "127.0.0.1:%u", fk.port);
	struct px *px = proxy_start(ups, 0, 0, NULL);
	int fd = tcp_connect(px_listen_port(px));
	struct kd_wbuf w = {0};
	metadata_req(&w, 1);
	send_all(fd, w.p, w.len);
	kd_wbuf_free(&w);
	uint8_t buf[4096];
	size_t got = 0;
	for (;;) {
		ssize_t n = recv(fd, buf + got, sizeof(buf) - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	assert_int_equal(got, 0);
	struct px_stats st;
	px_stats_get(px, &st);
	assert_true(st.decode_errors >= 1);
	close(fd);
	px_free(&px);
	fake_stop(&fk);
}

/* Metadata v1 through fd, answered by the fake broker: rewritten. */
static void fake_roundtrip_ok(int fd, int32_t corr)
{
	struct kd_wbuf w = {0};
	uint8_t *resp = NULL;
	metadata_req(&w, corr);
	send_all(fd, w.p, w.len);
	kd_wbuf_free(&w);
	ssize_t n = recv_frame(fd, &resp);
	if (n <= 4)
		fail_msg("no Metadata response (%zd)", n);
	assert_int_equal(corr_of(resp), corr);
	assert_false(memmem(resp, (size_t)n, "fake-real-host", 14));
	free(resp);
}

/* Reads fd until the proxy closes it; returns the bytes received. */
static size_t recv_until_closed(int fd, uint8_t *buf, size_t cap)
{
	size_t got = 0;
	for (;;) {
		ssize_t n = recv(fd, buf + got, cap - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == cap)
			got = 0; /* keep reading; only the count matters then */
	}
	return got;
}

/* A broker that answers what nobody asked (a response whose correlation
 * id is not in flight) breaks the protocol: that connection is closed
 * before the response, with its real address, reaches the client; other
 * connections carry on. */
static void test_unpaired_response_closes(void **state)
{
	(void)state;
	struct fake fk;
	char ups[64];
	fake_start(&fk, FAKE_VIOLATE);
	snprintf(ups, sizeof(ups), "127.0.0.1:%u", fk.port);
	struct px *px = proxy_start(ups, 0, 0, NULL);
	int good = tcp_connect(px_listen_port(px));
	fake_roundtrip_ok(good, 1);
	int fd = tcp_connect(px_listen_port(px));
	fake_roundtrip_ok(fd, 2);
	struct kd_wbuf w = {0};
	metadata_req(&w, FAKE_BAD_CORR);
	send_all(fd, w.p, w.len);
	kd_wbuf_free(&w);
	uint8_t buf[4096];
	assert_int_equal(recv_until_closed(fd, buf, sizeof(buf)), 0);
	close(fd);
	fake_roundtrip_ok(good, 3);
	struct px_stats st;
	px_stats_get(px, &st);
	assert_int_equal(st.unpaired_responses, 1);
	assert_int_equal(st.conns_active, 1);
	close(good);
	px_free(&px);
	fake_stop(&fk);
}

/* ApiVersions: an error answer in no known layout is forwarded as sent
 * (the client retries a lower version); a success answer kwire cannot
 * decode, so cannot clamp, is not forwarded and closes the connection. */
static void test_apiversions_undecodable(void **state)
{
	(void)state;
	struct fake fk;
	char ups[64];
	fake_start(&fk, FAKE_VIOLATE);
	snprintf(ups, sizeof(ups), "127.0.0.1:%u", fk.port);
	struct px *px = proxy_start(ups, 0, 0, NULL);
	int fd = tcp_connect(px_listen_port(px));
	struct kd_wbuf w = {0}, want = {0};
	apiversions_req(&w, 5);
	send_all(fd, w.p, w.len);
	kd_wbuf_free(&w);
	uint8_t *resp = NULL;
	ssize_t n = recv_frame(fd, &resp);
	fake_apiversions_bad(&want, 5, 35);
	assert_int_equal(n, (ssize_t)want.len - 4);
	assert_memory_equal(resp, want.p + 4, want.len - 4);
	free(resp);
	kd_wbuf_free(&want);
	fake_roundtrip_ok(fd, 6);
	apiversions_req(&w, FAKE_BAD_CORR);
	send_all(fd, w.p, w.len);
	kd_wbuf_free(&w);
	uint8_t buf[4096];
	assert_int_equal(recv_until_closed(fd, buf, sizeof(buf)), 0);
	close(fd);
	struct px_stats st;
	px_stats_get(px, &st);
	assert_int_equal(st.decode_errors, 1);
	assert_int_equal(st.apiversions_clamped, 0);
	px_free(&px);
	fake_stop(&fk);
}

/* A Metadata response whose addresses decode but whose topics do not:
 * the addresses are rewritten, and the rest is forwarded as it came (it
 * holds no address; the client judges it). */
static void test_broken_topics_rewritten(void **state)
{
	(void)state;
	struct fake fk;
	char ups[64];
	fake_start(&fk, FAKE_BROKEN_TOPICS);
	snprintf(ups, sizeof(ups), "127.0.0.1:%u", fk.port);
	struct px *px = proxy_start(ups, 0, 0, NULL);
	int fd = tcp_connect(px_listen_port(px));
	struct kd_wbuf w = {0};
	metadata_req(&w, 3);
	send_all(fd, w.p, w.len);
	kd_wbuf_free(&w);
	uint8_t *resp = NULL;
	ssize_t n = recv_frame(fd, &resp);
	assert_true(n > 8);
	assert_int_equal(corr_of(resp), 3);
	assert_false(memmem(resp, (size_t)n, "fake-real-host", 14));
	assert_non_null(memmem(resp, (size_t)n, "127.0.0.1", 9));
	free(resp);
	close(fd);
	px_free(&px);
	fake_stop(&fk);
}

/* Bytes after a response's body (librdkafka 2.12's mock cluster sends
 * one after Metadata v12): the response is rewritten, the extra byte kept,
 * counted each time, and the connection stays up. */
static void test_trailing_bytes_forwarded(void **state)
{
	(void)state;
	struct fake fk;
	char ups[64];
	fake_start(&fk, FAKE_TRAILING);
	snprintf(ups, sizeof(ups), "127.0.0.1:%u", fk.port);
	struct px *px = proxy_start(ups, 0, 0, NULL);
	int fd = tcp_connect(px_listen_port(px));
	for (int32_t corr = 1; corr <= 2; corr++) {
		struct kd_wbuf w = {0};
		metadata_req(&w, corr);
		send_all(fd, w.p, w.len);
		kd_wbuf_free(&w);
		uint8_t *resp = NULL;
		ssize_t n = recv_frame(fd, &resp);
		assert_true(n > 8);
		assert_int_equal(corr_of(resp), corr);
		assert_int_equal(resp[n - 1], 0);
		struct kd_arena arena = {0};
		struct kd_tree t;
		assert_int_equal(kd_tree_decode(&t, &arena, 3, 1, 0, resp + 4, (size_t)n - 5),
		                 KD_OK);
		struct kd_node *b = kd_node_elem(kd_node_child(t.root, "Brokers"), 0);
		struct kd_node *host = kd_node_child(b, "Host");
		assert_int_equal(host->val.v.len, 9);
		assert_memory_equal(host->val.v.p, "127.0.0.1", 9);
		kd_arena_free(&arena);
		free(resp);
	}
	struct px_stats st;
	px_stats_get(px, &st);
	assert_int_equal(st.trailing_bytes, 2);
	assert_int_equal(st.responses_rewritten, 2);
	assert_int_equal(st.decode_errors, 0);
	close(fd);
	px_free(&px);
	fake_stop(&fk);
}

/* Metadata v12 with topic ids, 500 KB, one byte after the body: the
 * addresses are rewritten, the byte kept (counted as a decode warning),
 * and the proxy's topic map learns every (id, name) as the topics stream
 * past, with no access log attached. */
static void test_metadata12_topic_ids(void **state)
{
	(void)state;
	struct fake fk;
	char ups[64];
	fake_start(&fk, FAKE_MD12);
	snprintf(ups, sizeof(ups), "127.0.0.1:%u", fk.port);
	struct px *px = proxy_start(ups, 0, 0, NULL);
	int fd = tcp_connect(px_listen_port(px));
	struct kd_wbuf w = {0}, body = {0};
	kd_w_uvarint(&body, 0); /* Topics: null (all) */
	kd_w_i8(&body, 0);
	kd_w_i8(&body, 0);
	kd_w_uvarint(&body, 0);
	req_frame(&w, 3, 12, 4, &body);
	send_all(fd, w.p, w.len);
	kd_wbuf_free(&w);
	kd_wbuf_free(&body);
	uint8_t *resp = NULL;
	ssize_t n = recv_frame(fd, &resp);
	assert_true(n > 200 * FAKE_MD12_TOPICS);
	assert_int_equal(corr_of(resp), 4);
	assert_false(memmem(resp, (size_t)n, "fake-real-host", 14));
	assert_int_equal(resp[n - 1], 0);
	struct kd_arena arena = {0};
	struct kd_tree t;
	if (kd_tree_decode(&t, &arena, 3, 12, 0, resp + 5, (size_t)n - 5) != KD_OK)
		fail_msg("rewritten Metadata v12: %s", t.err_msg);
	assert_int_equal(kd_node_child(t.root, "Topics")->nkids, FAKE_MD12_TOPICS);
	kd_arena_free(&arena);
	free(resp);
	struct kd_topics *map = px_topics(px);
	for (int i = 0; i < FAKE_MD12_TOPICS; i += FAKE_MD12_TOPICS / 8 - 1) {
		char name[256];
		uint8_t id[16];
		md12_topic(i, name, sizeof(name), id);
		struct kd_view got = kd_topics_get(map, id);
		if (got.null)
			fail_msg("topic %d not learnt", i);
		assert_int_equal(got.len, strlen(name));
		assert_memory_equal(got.p, name, got.len);
	}
	assert_int_equal(kd_topics_count(map), FAKE_MD12_TOPICS);

	/* A response kwire does not rewrite teaches the map too, as it streams
	 * past unchanged. */
	kd_w_uvarint(&body, 1); /* CreateTopics v7: no topics asked (the fake ignores it) */
	kd_w_i32(&body, 1000);
	kd_w_i8(&body, 0);
	kd_w_uvarint(&body, 0);
	req_frame(&w, 19, 7, 5, &body);
	send_all(fd, w.p, w.len);
	kd_wbuf_free(&w);
	kd_wbuf_free(&body);
	struct kd_wbuf sent = {0};
	fake_createtopics7(&sent, 5);
	n = recv_frame(fd, &resp);
	assert_int_equal((size_t)n, sent.len - 4);
	assert_memory_equal(resp, sent.p + 4, sent.len - 4);
	free(resp);
	kd_wbuf_free(&sent);
	char name[256];
	uint8_t id[16];
	md12_topic(FAKE_MD12_TOPICS, name, sizeof(name), id);
	struct kd_view got = kd_topics_get(map, id);
	assert_false(got.null);
	assert_int_equal(got.len, strlen(name));
	assert_memory_equal(got.p, name, got.len);

	struct px_stats st;
	px_stats_get(px, &st);
	assert_int_equal(st.trailing_bytes, 1);
	assert_int_equal(st.decode_warnings, 1);
	assert_int_equal(st.decode_errors, 0);
	assert_int_equal(st.responses_rewritten, 1);
	close(fd);
	px_free(&px);
	fake_stop(&fk);
}

/* Fetch v16 (KIP-951): NodeEndpoints, in the top-level tagged section
 * after every record set, is rewritten; the records pass byte for byte,
 * and so does a byte after the body. A response without NodeEndpoints
 * passes unchanged. The response is held whole (the frame size goes
 * first), but never copied: kwire's own buffers hold only the section. */
static void test_fetch16_node_endpoints(void **state)
{
	(void)state;
	struct fake fk;
	char ups[64];
	fake_start(&fk, FAKE_FETCH);
	snprintf(ups, sizeof(ups), "127.0.0.1:%u", fk.port);
	struct px *px = proxy_start(ups, 0, 0, NULL);
	int fd = tcp_connect(px_listen_port(px));
	for (int32_t corr = 1; corr <= 2; corr++) {
		struct kd_wbuf w = {0}, body = {0}, sent = {0};
		kd_w_i32(&body, 0);
		req_frame(&w, 1, 16, corr, &body);
		send_all(fd, w.p, w.len);
		kd_wbuf_free(&w);
		kd_wbuf_free(&body);
		uint8_t *resp = NULL;
		ssize_t n = recv_frame(fd, &resp);
		assert_true(n > (ssize_t)FAKE_FETCH_BYTES);
		assert_int_equal(corr_of(resp), corr);
		assert_false(memmem(resp, (size_t)n, "fake-real-host", 14));
		fake_fetch16(&sent, corr, fk.port, FAKE_FETCH_BYTES, corr & 1);
		if (!(corr & 1)) {
			assert_int_equal((size_t)n, sent.len - 4);
			assert_memory_equal(resp, sent.p + 4, sent.len - 4);
		} else {
			struct kd_arena arena = {0};
			struct kd_tree t;
			/* header v1: corr + empty tags; the last byte follows the body */
			assert_int_equal(resp[n - 1], 0x5a);
			if (kd_tree_decode(&t, &arena, 1, 16, 0, resp + 5, (size_t)n - 6) != KD_OK)
				fail_msg("rewritten Fetch v16: %s", t.err_msg);
			struct kd_node *ne =
			    kd_node_elem(kd_node_child(t.root, "NodeEndpoints"), 0);
			struct kd_node *host = kd_node_child(ne, "Host");
			assert_int_equal(host->val.v.len, 9);
			assert_memory_equal(host->val.v.p, "127.0.0.1", 9);
			struct px_broker_ent ent;
			assert_int_equal(px_broker_map(px, &ent, 1), 1);
			assert_int_equal(kd_node_int(kd_node_child(ne, "Port")), ent.proxy_port);
			struct kd_node *part = kd_node_elem(
			    kd_node_child(kd_node_elem(kd_node_child(t.root, "Responses"), 0),
			                  "Partitions"),
			    0);
			struct kd_node *rec = kd_node_child(part, "Records");
			assert_int_equal(rec->val.v.len, FAKE_FETCH_BYTES);
			assert_non_null(memmem(sent.p, sent.len, rec->val.v.p, 4096));
			assert_memory_equal(rec->val.v.p,
			                    sent.p + 4 + 5 + 4 + 2 + 4 + 1 + 16 + 1 + 4 + 2 + 24 +
			                        1 + 4 + 4,
			                    FAKE_FETCH_BYTES);
			kd_arena_free(&arena);
		}
		kd_wbuf_free(&sent);
		free(resp);
	}
	struct px_stats st;
	px_stats_get(px, &st);
	assert_int_equal(st.responses_rewritten, 1);
	assert_int_equal(st.trailing_bytes, 1);
	assert_int_equal(st.decode_errors, 0);
	close(fd);
	px_free(&px);
	fake_stop(&fk);
}

/* Each bad client is closed; a healthy connection carries on. */
/* kwire's answer to a refused request waits for the broker's answer that
 * is being forwarded: a request refused while a large response streams to
 * a slow client must not land in the middle of it. */
static void test_local_answer_waits_for_streaming_response(void **state)
{
	(void)state;
	struct fake fk;
	char ups[64], path[] = "/tmp/kwire-test-rules-XXXXXX";
	static const char yaml[] = "access:\n"
	                           "  - name: no-metadata\n"
	                           "    match: {api: Metadata}\n"
	                           "    deny: CLUSTER_AUTHORIZATION_FAILED\n";
	int rfd = mkstemp(path);
	assert_true(rfd >= 0);
	assert_int_equal(write(rfd, yaml, sizeof(yaml) - 1), (ssize_t)sizeof(yaml) - 1);
	close(rfd);
	fake_start(&fk, FAKE_FETCH_SLOW);
	snprintf(ups, sizeof(ups), "127.0.0.1:%u", fk.port);
	g_rules = path;
	struct px *px = proxy_start(ups, 0, 0, NULL);
	g_rules = NULL;
	int fd = tcp_connect(px_listen_port(px));
	struct kd_wbuf w = {0}, body = {0}, sent = {0};
	kd_w_i32(&body, 0);
	/* Fetch v12: the 3 MiB answer (in v16's layout, which kwire does not
	 * read at v12) streams through as it comes, and stops for 300 ms
	 * after its first 64 KiB: the refused request comes in then. */
	req_frame(&w, 1, 12, 2, &body);
	send_all(fd, w.p, w.len);
	kd_wbuf_free(&w);
	kd_wbuf_free(&body);
	uint8_t size[4];
	assert_int_equal(recv_all(fd, size, 4), 4);
	metadata_req(&w, 3);
	send_all(fd, w.p, w.len);
	kd_wbuf_free(&w);
	uint32_t n =
	    (uint32_t)size[0] << 24 | (uint32_t)size[1] << 16 | (uint32_t)size[2] << 8 | size[3];
	fake_fetch16(&sent, 2, fk.port, FAKE_FETCH_BYTES, 0);
	assert_int_equal((size_t)n, sent.len - 4);
	uint8_t *resp = malloc(n);
	assert_int_equal(recv_all(fd, resp, n), (ssize_t)n);
	assert_memory_equal(resp, sent.p + 4, n);
	free(resp);
	kd_wbuf_free(&sent);
	resp = NULL;
	assert_true(recv_frame(fd, &resp) > 4);
	assert_int_equal(corr_of(resp), 3); /* then kwire's refusal */
	free(resp);
	close(fd);
	px_free(&px);
	fake_stop(&fk);
	unlink(path);
}

static void test_bad_clients(void **state)
{
	(void)state;
	struct px *px = proxy_start(g_mc.bootstrap, 0, 700, NULL);
	uint16_t port = px_listen_port(px);
	int good = tcp_connect(port);
	roundtrip_ok(good, 1);

	static const uint8_t garbage[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const uint8_t huge[] = {0x7f, 0xff, 0xff, 0xff, 0, 18, 0, 2, 0, 0, 0, 1};
	static const uint8_t negative[] = {0x80, 0, 0, 0, 0, 18, 0, 2, 0, 0, 0, 1};
	/* ApiVersions v2, header v1, client id length -5: impossible. */
	static const uint8_t badhdr[] = {0, 0, 0, 12, 0, 18, 0, 2, 0, 0, 0, 1, 0xff, 0xfb, 0, 0};
	static const uint8_t half[] = {0, 0, 0, 100, 0, 18, 0, 2, 0, 0};
	static const struct {
		const uint8_t *p;
		size_t len;
	} bad[] = {
	    {garbage, sizeof(garbage) - 1}, {huge, sizeof(huge)}, {negative, sizeof(negative)},
	    {badhdr, sizeof(badhdr)},       {half, sizeof(half)}, /* closed by the idle timeout */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = tcp_connect(port);
		send_all(fd, bad[i].p, bad[i].len);
		if (!closed_keeping_alive(fd, good))
			fail_msg("bad client %zu was not closed", i);
		close(fd);
		roundtrip_ok(good, (int32_t)(10 + i));
	}
	/* A valid first frame then garbage: the valid request is answered
	 * and then the connection closes. */
	int fd = tcp_connect(port);
	struct kd_wbuf w = {0};
	apiversions_req(&w, 7);
	kd_w_raw(&w, huge, sizeof(huge));
	send_all(fd, w.p, w.len);
	kd_wbuf_free(&w);
	uint8_t *resp = NULL;
	assert_true(recv_frame(fd, &resp) > 0 || 1); /* may be cut by the close */
	free(resp);
	assert_true(closed_by_peer(fd));
	close(fd);

	struct px_stats st;
	px_stats_get(px, &st);
	assert_true(st.frames_too_large >= 2);
	assert_true(st.decode_errors + st.frames_too_large >= 4);
	assert_int_equal(st.conns_active, 1);
	roundtrip_ok(good, 99);
	close(good);
	px_free(&px);
}

static uint16_t closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	close(fd);
	return ntohs(sin.sin_port);
}

static void test_upstream_failures(void **state)
{
	(void)state;
	char ups[640];
	uint16_t dead = closed_port();
	/* A dead first upstream: the next one serves every client. */
	snprintf(ups, sizeof(ups), "127.0.0.1:%u,%s", dead, g_mc.bootstrap);
	struct px *px = proxy_start(ups, 0, 0, NULL);
	for (int i = 0; i < 6; i++) {
		int fd = tcp_connect(px_listen_port(px));
		roundtrip_ok(fd, i);
		close(fd);
	}
	struct px_stats st;
	px_stats_get(px, &st);
	assert_true(st.upstream_connect_failures >= 1);
	px_free(&px);

	/* Nothing reachable: the client's connection closes cleanly. */
	snprintf(ups, sizeof(ups), "127.0.0.1:%u", dead);
	px = proxy_start(ups, 0, 0, NULL);
	int fd = tcp_connect(px_listen_port(px));
	struct kd_wbuf w = {0};
	apiversions_req(&w, 1);
	send(fd, w.p, w.len, MSG_NOSIGNAL);
	kd_wbuf_free(&w);
	assert_true(closed_by_peer(fd));
	close(fd);
	px_stats_get(px, &st);
	assert_true(st.upstream_connect_failures >= 1);
	assert_int_equal(st.conns_active, 0);
	px_free(&px);
}

/* Runs after the other tests: it takes broker 1 down. */
static void test_broker_gone(void **state)
{
	(void)state;
	struct px *px = proxy_start(g_mc.bootstrap, 0, 0, NULL);
	int fd = tcp_connect(px_listen_port(px));
	int32_t ids[MC_MAX];
	uint16_t ports[MC_MAX];
	int nb = metadata_check(px, fd, ids, ports);
	assert_true(nb >= 2);
	int down = -1, up = -1;
	for (int i = 0; i < nb; i++) {
		if (ids[i] == 1)
			down = i;
		else if (up < 0)
			up = i;
	}
	assert_true(down >= 0 && up >= 0);
	int fd_down = tcp_connect(ports[down]);
	int fd_up = tcp_connect(ports[up]);
	roundtrip_ok(fd_down, 1);
	roundtrip_ok(fd_up, 1);
	assert_int_equal(mc_cmd(&g_mc, "down 1"), 0);
	struct kd_wbuf w = {0};
	apiversions_req(&w, 2);
	send(fd_down, w.p, w.len, MSG_NOSIGNAL);
	kd_wbuf_free(&w);
	assert_true(closed_by_peer(fd_down));
	roundtrip_ok(fd_up, 2);
	close(fd_down);
	close(fd_up);
	close(fd); /* its upstream may have been broker 1 too */
	/* New bootstrap connections skip the dead broker. */
	for (int i = 0; i < 3; i++) {
		fd = tcp_connect(px_listen_port(px));
		roundtrip_ok(fd, 3);
		close(fd);
	}
	assert_int_equal(mc_cmd(&g_mc, "up 1"), 0);
	px_free(&px);
}

struct pipeliner {
	int fd;
	int n;
};

static void *pipeline_writer(void *arg)
{
	struct pipeliner *pl = arg;
	struct kd_wbuf w = {0};
	for (int i = 0; i < pl->n; i++)
		apiversions_req(&w, i);
	send_all(pl->fd, w.p, w.len);
	kd_wbuf_free(&w);
	return NULL;
}

/* Thousands of pipelined requests through a proxy allowing 4 in flight,
 * read back slowly at first: all answered, in order, nothing lost. */
static void test_pipelining_backpressure(void **state)
{
	(void)state;
	enum { N = 3000 };
	struct px *px = proxy_start(g_mc.bootstrap, 4, 0, NULL);
	int fd = tcp_connect(px_listen_port(px));
	struct pipeliner pl = {fd, N};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, pipeline_writer, &pl), 0);
	usleep(300000); /* let the proxy meet a full client buffer */
	for (int i = 0; i < N; i++) {
		uint8_t *resp = NULL;
		ssize_t n = recv_frame(fd, &resp);
		if (n < 8)
			fail_msg("response %d missing (%zd)", i, n);
		assert_int_equal(corr_of(resp), i);
		free(resp);
	}
	pthread_join(th, NULL);
	close(fd);
	struct px_api_stats as;
	px_api_stats_get(px, 18, 2, &as);
	assert_int_equal(as.requests, N);
	assert_int_equal(as.responses, N);
	/* The limit held, and it is what paused the client. */
	struct px_stats st;
	px_stats_get(px, &st);
	assert_int_equal(st.inflight_max, 4);
	assert_true(st.pauses_inflight >= 1);
	px_free(&px);
}

/* A client that sends a flood and does not read: the proxy stops reading
 * its broker once the client's output holds buffer_bytes, so what is
 * queued for the client stays bounded; once the client reads, every
 * answer arrives in order. */
static void test_slow_client_backpressure(void **state)
{
	(void)state;
	enum { N = 20000, WM = 128 * 1024 };
	g_buffer_bytes = WM;
	struct px *px = proxy_start(g_mc.bootstrap, 0, 0, NULL);
	g_buffer_bytes = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int small = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(px_listen_port(px));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	struct timeval tv = {20, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct pipeliner pl = {fd, N};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, pipeline_writer, &pl), 0);
	struct px_stats st;
	for (int i = 0; i < 100; i++) { /* until the broker side is paused */
		usleep(50000);
		px_stats_get(px, &st);
		if (st.pauses_upstream)
			break;
	}
	assert_true(st.pauses_upstream >= 1);
	for (int i = 0; i < N; i++) {
		uint8_t *resp = NULL;
		ssize_t n = recv_frame(fd, &resp);
		if (n < 8)
			fail_msg("response %d missing (%zd)", i, n);
		assert_int_equal(corr_of(resp), i);
		free(resp);
	}
	pthread_join(th, NULL);
	close(fd);
	px_stats_get(px, &st);
	/* A frame boundary check: at most the watermark plus one small
	 * frame was ever queued for the client (several MB were answered). */
	if (st.client_out_max >= 2 * WM)
		fail_msg("%" PRIu64 " bytes queued for a non-reading client", st.client_out_max);
	assert_true(st.bytes_out_client > 10 * (uint64_t)WM);
	assert_true(st.inflight_max <= 1024);
	px_free(&px);
}

static void test_drain(void **state)
{
	(void)state;
	struct px *px = proxy_start(g_mc.bootstrap, 0, 0, NULL);
	uint16_t port = px_listen_port(px);
	int fd = tcp_connect(port);
	roundtrip_ok(fd, 1);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	px_stop(px);
	px_wait(px);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* An idle connection closes at once, well before drain_timeout. */
	assert_true(t1.tv_sec - t0.tv_sec < 2);
	assert_true(closed_by_peer(fd));
	close(fd);
	/* No longer accepting. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_not_equal(connect(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
	close(s);
	px_free(&px);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_forward_and_rewrite),
	    cmocka_unit_test(test_librdkafka),
	    cmocka_unit_test(test_acks0),
	    cmocka_unit_test(test_half_close),
	    cmocka_unit_test(test_client_dribble),
	    cmocka_unit_test(test_rewrite_dribbled),
	    cmocka_unit_test(test_rewrite_big),
	    cmocka_unit_test(test_rewrite_big_bounded),
	    cmocka_unit_test(test_undecodable_never_leaks),
	    cmocka_unit_test(test_unpaired_response_closes),
	    cmocka_unit_test(test_broken_topics_rewritten),
	    cmocka_unit_test(test_trailing_bytes_forwarded),
	    cmocka_unit_test(test_fetch16_node_endpoints),
	    cmocka_unit_test(test_local_answer_waits_for_streaming_response),
	    cmocka_unit_test(test_metadata12_topic_ids),
	    cmocka_unit_test(test_apiversions_undecodable),
	    cmocka_unit_test(test_bad_clients),
	    cmocka_unit_test(test_upstream_failures),
	    cmocka_unit_test(test_pipelining_backpressure),
	    cmocka_unit_test(test_slow_client_backpressure),
	    cmocka_unit_test(test_drain),
	    cmocka_unit_test(test_broker_gone),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
