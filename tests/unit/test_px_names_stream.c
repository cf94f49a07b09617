/* test_px_names_stream.c: a mapped client's Produce request streams. A real
 * proxy (px_start, libevent, sockets on 127.0.0.1) with a `rewrite:` names
 * rule sits in front of a broker that this test plays on a raw socket, so
 * that it can see exactly which bytes reach the broker and when:
 *
 *   - a one-topic Produce (v9, flexible; and v3) whose client sends all but
 *     its last 2000 bytes and waits: the broker gets the corrected frame
 *     size, the header, the mapped name and the records so far before the
 *     client sends the rest (kwire holding it until its last byte would
 *     leave the broker waiting, and the test failing on its receive
 *     timeout);
 *   - a topic name whose compact length prefix grows a byte once mapped
 *     (125 + 5 bytes), an alias of another length, and acks=0;
 *   - two topics: the second name lies after the first topic's records, so
 *     the size change is not known before the request is in; it is held
 *     whole and mapped as before.
 *
 * Every frame the broker gets is compared with the whole-frame mapping
 * (px_names_request, the tree path), byte for byte; each answer the
 * client gets names its own topics. The mock clusters cannot show when a
 * request's first bytes reach them, hence the socket here. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "kd-api-keys-gen.h"
#include "kd-arena.h"
#include "kd-hdr.h"
#include "kd-schema.h"
#include "kd-tree.h"
#include "px-names.h"
#include "px.h"
#include "rule.h"

static const char rules[] = "rewrite:\n"
                            "  - name: acme\n"
                            "    match: {client_id: \"acme-*\"}\n"
                            "    topics: {prefix: acme., alias: {legacy: acme.other}}\n"
                            "    transactional_ids: {prefix: acme.}\n";

#define RECORDS 3000
#define HELD_BACK 2000 /* bytes of a request the client sends last */

static int tcp_listen(uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static void timeouts(int fd)
{
	struct timeval tv = {10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static int tcp_connect(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	timeouts(fd);
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

/* Reads exactly len bytes, failing the test on EOF or after the receive
 * timeout (what a request held back by kwire gives). */
static void recv_exactly(int fd, uint8_t *p, size_t len, const char *what)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(fd, p + got, len - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail_msg("%s: %zu of %zu bytes came (%s)", what, got, len,
			         n ? strerror(errno) : "closed");
		got += (size_t)n;
	}
}

static void set_str(struct kd_tree *t, struct kd_node *n, const char *name, const char *s)
{
	struct kd_node *c = kd_node_child(n, name);
	assert_non_null(c);
	assert_int_equal(kd_node_set_str(t, c, s, strlen(s)), KD_OK);
}

static struct kd_node *add(struct kd_tree *t, struct kd_node *n, const char *arr)
{
	struct kd_node *a = kd_node_child(n, arr);
	assert_non_null(a);
	assert_non_null(kd_node_array_add(t, a, UINT32_MAX));
	return &a->kids[a->nkids - 1];
}

/* A Produce request of client acme-1 to topics names[0..n). */
static void produce_req(struct kd_arena *a, int16_t ver, int32_t corr, int acks,
                        const char *const *names, unsigned n, struct kd_wbuf *w,
                        struct kd_req_hdr *h)
{
	static uint8_t records[RECORDS];
	for (size_t i = 0; i < sizeof(records); i++)
		records[i] = (uint8_t)(i * 7 + corr);
	struct kd_tree t;
	assert_int_equal(kd_tree_init_default(&t, a, KD_API_PRODUCE, ver, 1), KD_OK);
	set_str(&t, t.root, "TransactionalId", "tx-1");
	kd_node_set_int(kd_node_child(t.root, "Acks"), acks);
	kd_node_set_int(kd_node_child(t.root, "TimeoutMs"), 30000);
	for (unsigned i = 0; i < n; i++) {
		struct kd_node *e = add(&t, t.root, "TopicData");
		set_str(&t, e, "Name", names[i]);
		struct kd_node *p = add(&t, e, "PartitionData");
		kd_node_set_str(&t, kd_node_child(p, "Records"), records, sizeof(records));
	}
	kd_req_hdr_init(h, KD_API_PRODUCE, ver, corr, "acme-1");
	w->len = 0;
	kd_w_i32(w, 0);
	kd_req_hdr_write(w, h);
	h->len = (uint32_t)w->len - 4;
	assert_int_equal(kd_tree_encode(&t, w), KD_OK);
	kd_w_patch_be(w, 0, 4, w->len - 4);
}

/* The broker's answer naming the cluster's topics names[0..n). */
static void produce_resp(struct kd_arena *a, int16_t ver, int32_t corr, const char *const *names,
                         unsigned n, struct kd_wbuf *w)
{
	struct kd_tree t;
	assert_int_equal(kd_tree_init_default(&t, a, KD_API_PRODUCE, ver, 0), KD_OK);
	for (unsigned i = 0; i < n; i++) {
		struct kd_node *e = add(&t, t.root, "Responses");
		set_str(&t, e, "Name", names[i]);
		add(&t, e, "PartitionResponses");
	}
	w->len = 0;
	kd_w_i32(w, 0);
	kd_w_i32(w, corr);
	if (ver >= 9)
		kd_w_i8(w, 0); /* response header v1: no tagged fields */
	assert_int_equal(kd_tree_encode(&t, w), KD_OK);
	kd_w_patch_be(w, 0, 4, w->len - 4);
}

struct stream_case {
	const char *what;
	int16_t ver;
	int acks;
	const char *names[2];
	const char *cluster[2];
	unsigned n;
	int streams; /* the broker gets its first bytes before its last are sent */
};

static void test_produce_streams(void **state)
{
	(void)state;
	char longname[126], longmapped[131];
	memset(longname, 'n', 125);
	longname[125] = '\0';
	snprintf(longmapped, sizeof(longmapped), "acme.%s", longname);
	const struct stream_case cases[] = {
	    {"one topic, v9", 9, 1, {"orders"}, {"acme.orders"}, 1, 1},
	    {"one topic, v3", 3, 1, {"orders"}, {"acme.orders"}, 1, 1},
	    {"a wider length prefix", 9, 1, {longname}, {longmapped}, 1, 1},
	    {"an alias", 9, 1, {"legacy"}, {"acme.other"}, 1, 1},
	    {"acks=0", 9, 0, {"orders"}, {"acme.orders"}, 1, 1},
	    {"two topics", 9, 1, {"orders", "legacy"}, {"acme.orders", "acme.other"}, 2, 0},
	    {"two topics, v7", 7, 1, {"legacy", "orders"}, {"acme.other", "acme.orders"}, 2, 0},
	};
	char path[] = "/tmp/kwire-names-stream-XXXXXX";
	int pfd = mkstemp(path);
	assert_true(pfd >= 0);
	assert_int_equal(write(pfd, rules, strlen(rules)), (ssize_t)strlen(rules));
	close(pfd);
	char err[512];
	struct rule_set *rs = rule_set_load_mem(rules, strlen(rules), "r.yaml", err, sizeof(err));
	assert_non_null(rs);
	const struct rule *rule = &rs->rules[0];

	uint16_t bport;
	int lfd = tcp_listen(&bport);
	char up[64];
	snprintf(up, sizeof(up), "127.0.0.1:%u", bport);
	struct px_conf conf;
	px_conf_init(&conf);
	snprintf(conf.listen.host, sizeof(conf.listen.host), "127.0.0.1");
	conf.listen.port = 0;
	conf.workers = 1;
	conf.log_level = getenv("PX_TEST_VERBOSE") ? 3 : 0;
	conf.rules = strdup(path);
	if (px_conf_set_upstreams(&conf, up, err, sizeof(err)))
		fail_msg("%s", err);
	struct px *px = px_new(&conf, err, sizeof(err));
	if (!px || px_start(px, err, sizeof(err)))
		fail_msg("%s", err);
	px_conf_free(&conf);

	int cfd = tcp_connect(px_listen_port(px));
	struct pollfd pl = {.fd = lfd, .events = POLLIN};
	assert_int_equal(poll(&pl, 1, 10000), 1);
	int bfd = accept(lfd, NULL, NULL);
	assert_true(bfd >= 0);
	timeouts(bfd);

	struct kd_arena a = {0};
	struct px_names pn;
	memset(&pn, 0, sizeof(pn));
	struct kd_wbuf f = {0}, exp = {0}, resp = {0};
	for (unsigned c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const struct stream_case *k = &cases[c];
		int32_t corr = 100 + (int32_t)c;
		struct kd_req_hdr h;
		produce_req(&a, k->ver, corr, k->acks, k->names, k->n, &f, &h);
		int kt, bad;
		exp.len = 0;
		assert_int_equal(
		    px_names_request(&pn, rule, f.p, f.len, &h, !k->acks, &kt, &bad, &exp),
		    PX_N_MAPPED);
		size_t cut = f.len - HELD_BACK;
		size_t early = (size_t)((int64_t)cut + (int64_t)exp.len - (int64_t)f.len);
		uint8_t *got = malloc(exp.len);
		assert_non_null(got);
		send_all(cfd, f.p, cut);
		size_t at = 0;
		if (k->streams) {
			/* everything sent so far, mapped, before the rest is sent */
			recv_exactly(bfd, got, early, k->what);
			assert_memory_equal(got, exp.p, early);
			at = early;
		}
		send_all(cfd, f.p + cut, f.len - cut);
		recv_exactly(bfd, got + at, exp.len - at, k->what);
		assert_memory_equal(got, exp.p, exp.len);
		free(got);
		if (!k->acks)
			continue;
		produce_resp(&a, k->ver, corr, k->cluster, k->n, &resp);
		send_all(bfd, resp.p, resp.len);
		uint8_t sz[4];
		recv_exactly(cfd, sz, 4, "the answer");
		uint32_t rlen =
		    (uint32_t)sz[0] << 24 | (uint32_t)sz[1] << 16 | (uint32_t)sz[2] << 8 | sz[3];
		uint8_t *r = malloc(rlen);
		assert_non_null(r);
		recv_exactly(cfd, r, rlen, "the answer");
		struct kd_resp_hdr rh;
		assert_true(kd_resp_hdr_parse(r, rlen, KD_API_PRODUCE, k->ver, &rh) > 0);
		assert_int_equal(rh.correlation_id, corr);
		struct kd_tree t;
		assert_int_equal(
		    kd_tree_decode(&t, &a, KD_API_PRODUCE, k->ver, 0, r + rh.len, rlen - rh.len),
		    KD_OK);
		struct kd_node *rsp = kd_node_child(t.root, "Responses");
		assert_int_equal(rsp->nkids, k->n);
		for (unsigned i = 0; i < k->n; i++) {
			struct kd_node *nm = kd_node_child(&rsp->kids[i], "Name");
			assert_int_equal(nm->val.v.len, strlen(k->names[i]));
			assert_memory_equal(nm->val.v.p, k->names[i], nm->val.v.len);
		}
		free(r);
	}
	struct px_stats st;
	px_stats_get(px, &st);
	assert_int_equal(st.decode_errors, 0);
	close(cfd);
	close(bfd);
	close(lfd);
	px_free(&px);
	px_names_free(&pn);
	kd_wbuf_free(&f);
	kd_wbuf_free(&exp);
	kd_wbuf_free(&resp);
	kd_arena_free(&a);
	rule_set_unref(&rs);
	unlink(path);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_produce_streams),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
