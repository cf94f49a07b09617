/* test_px_brokers.c: the proxy's broker listeners under what a cluster (or
 * a hostile broker) may advertise (issue 8, items 5 and 11):
 *
 * - a Metadata response naming more brokers than max_brokers: exactly
 *   max_brokers listeners, port 0 for the rest, the cap logged once;
 * - brokers that later Metadata responses no longer list: their listeners
 *   close after broker_grace_ms (on a timer), not before; connections open
 *   through them stay; a broker listed again gets its listener back;
 * - a host name longer than kwire holds: one clear warning, never
 *   "broker 1 (:0)".
 *
 * The upstream is a fake broker (a socket in this process) because no real
 * cluster advertises 50 brokers that are all the same process, or a
 * 300-byte host name; it answers every request with a Metadata v1 response
 * whose broker list the test sets. Every broker it lists is itself, so
 * connections through any broker listener reach it. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
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
#include <unistd.h>

#include <cmocka.h>

#include "kd-arena.h"
#include "kd-hdr.h"
#include "kd-tree.h"
#include "px.h"

/* ---- the fake broker ---- */

#define FAKE_CONNS 32

struct fake {
	int lfd;
	uint16_t port;
	_Atomic int first_id, nlisted; /* brokers first_id .. first_id + nlisted - 1 */
	_Atomic int long_host;         /* 1: broker first_id has a 300-byte host */
	_Atomic int stop;
	pthread_t th;
};

static void fake_metadata(struct fake *fk, struct kd_wbuf *w, int32_t corr)
{
	struct kd_wbuf b = {0};
	char longhost[301];
	memset(longhost, 'h', 300);
	longhost[300] = '\0';
	struct kd_view nul = {NULL, 0, 1};
	int first = atomic_load(&fk->first_id), n = atomic_load(&fk->nlisted);
	kd_w_i32(&b, corr);
	kd_w_i32(&b, n);
	for (int i = 0; i < n; i++) {
		const char *h = i == 0 && atomic_load(&fk->long_host) ? longhost : "127.0.0.1";
		struct kd_view hv = {(const uint8_t *)h, (uint32_t)strlen(h), 0};
		kd_w_i32(&b, first + i);
		kd_w_blob(&b, 0, 2, &hv);
		kd_w_i32(&b, fk->port);
		kd_w_blob(&b, 0, 2, &nul);
	}
	kd_w_i32(&b, first); /* ControllerId */
	kd_w_i32(&b, 0);     /* Topics */
	kd_w_i32(w, (int32_t)b.len);
	kd_w_raw(w, b.p, b.len);
	kd_wbuf_free(&b);
}

struct fconn {
	int fd;
	uint8_t buf[4096];
	size_t len;
};

/* One thread, poll(): accepts, reads whole request frames, answers each. */
static void *fake_main(void *arg)
{
	struct fake *fk = arg;
	struct fconn conns[FAKE_CONNS];
	int n = 0;
	while (!atomic_load(&fk->stop)) {
		struct pollfd pf[FAKE_CONNS + 1];
		pf[0].fd = fk->lfd;
		pf[0].events = POLLIN;
		for (int i = 0; i < n; i++) {
			pf[i + 1].fd = conns[i].fd;
			pf[i + 1].events = POLLIN;
		}
		if (poll(pf, (nfds_t)n + 1, 100) <= 0)
			continue;
		if ((pf[0].revents & POLLIN) && n < FAKE_CONNS) {
			int fd = accept(fk->lfd, NULL, NULL);
			if (fd >= 0) {
				conns[n].fd = fd;
				conns[n].len = 0;
				n++;
			}
		}
		for (int i = n - 1; i >= 0; i--) {
			if (!(pf[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			struct fconn *c = &conns[i];
			ssize_t got = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
			if (got <= 0) {
				close(c->fd);
				conns[i] = conns[--n];
				continue;
			}
			c->len += (size_t)got;
			while (c->len >= 4) {
				uint32_t size = (uint32_t)c->buf[0] << 24 |
				                (uint32_t)c->buf[1] << 16 |
				                (uint32_t)c->buf[2] << 8 | c->buf[3];
				if (c->len < 4 + size || size < 8)
					break;
				int32_t corr = (int32_t)((uint32_t)c->buf[8] << 24 |
				                         (uint32_t)c->buf[9] << 16 |
				                         (uint32_t)c->buf[10] << 8 | c->buf[11]);
				struct kd_wbuf w = {0};
				fake_metadata(fk, &w, corr);
				if (send(c->fd, w.p, w.len, MSG_NOSIGNAL) != (ssize_t)w.len)
					c->len = 0;
				kd_wbuf_free(&w);
				memmove(c->buf, c->buf + 4 + size, c->len - 4 - size);
				c->len -= 4 + size;
			}
		}
	}
	for (int i = 0; i < n; i++)
		close(conns[i].fd);
	return NULL;
}

static void fake_start(struct fake *fk, int first_id, int nlisted)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	memset(fk, 0, sizeof(*fk));
	atomic_store(&fk->first_id, first_id);
	atomic_store(&fk->nlisted, nlisted);
	fk->lfd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fk->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fk->lfd, 64), 0);
	getsockname(fk->lfd, (struct sockaddr *)&sin, &sl);
	fk->port = ntohs(sin.sin_port);
	assert_int_equal(pthread_create(&fk->th, NULL, fake_main, fk), 0);
}

static void fake_stop(struct fake *fk)
{
	atomic_store(&fk->stop, 1);
	pthread_join(fk->th, NULL);
	close(fk->lfd);
}

/* ---- the proxy and its log ---- */

#define LOG_MAX 256

struct logcap {
	pthread_mutex_t mu;
	char *lines[LOG_MAX];
	int n;
};

static struct logcap g_log = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_log(void *arg, int level, const char *msg)
{
	(void)arg;
	(void)level;
	pthread_mutex_lock(&g_log.mu);
	if (g_log.n < LOG_MAX)
		g_log.lines[g_log.n++] = strdup(msg);
	pthread_mutex_unlock(&g_log.mu);
}

/* Log lines containing needle. */
static int log_count(const char *needle)
{
	int k = 0;
	pthread_mutex_lock(&g_log.mu);
	for (int i = 0; i < g_log.n; i++)
		k += strstr(g_log.lines[i], needle) != NULL;
	pthread_mutex_unlock(&g_log.mu);
	return k;
}

static void log_reset(void)
{
	pthread_mutex_lock(&g_log.mu);
	for (int i = 0; i < g_log.n; i++)
		free(g_log.lines[i]);
	g_log.n = 0;
	pthread_mutex_unlock(&g_log.mu);
}

static struct px *proxy_start(uint16_t upstream, unsigned max_brokers, unsigned grace_ms)
{
	struct px_conf conf;
	char err[256], ups[64];
	px_conf_init(&conf);
	snprintf(conf.listen.host, sizeof(conf.listen.host), "127.0.0.1");
	conf.listen.port = 0; /* ephemeral, broker listeners too */
	conf.workers = 2;
	conf.log_level = 3;
	conf.max_brokers = max_brokers;
	conf.broker_grace_ms = grace_ms;
	snprintf(ups, sizeof(ups), "127.0.0.1:%u", upstream);
	if (px_conf_set_upstreams(&conf, ups, err, sizeof(err)))
		fail_msg("%s", err);
	struct px *px = px_new(&conf, err, sizeof(err));
	if (!px)
		fail_msg("%s", err);
	struct px_hooks hooks;
	memset(&hooks, 0, sizeof(hooks));
	hooks.on_log = on_log;
	px_set_hooks(px, &hooks);
	if (px_start(px, err, sizeof(err)))
		fail_msg("%s", err);
	px_conf_free(&conf);
	return px;
}

/* ---- a raw Kafka client ---- */

static int tcp_try_connect(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin))) {
		close(fd);
		return -1;
	}
	struct timeval tv = {10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static ssize_t recv_all(int fd, uint8_t *p, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(fd, p + got, len - got, 0);
		if (n <= 0)
			return n == 0 ? 0 : -1;
		got += (size_t)n;
	}
	return (ssize_t)len;
}

/* Metadata v1 (all topics) on fd; the response's brokers as (id, port)
 * pairs, every host checked to be kwire's. Returns the broker count. */
static int metadata(int fd, int32_t corr, int32_t *ids, int32_t *ports, int max)
{
	struct kd_wbuf w = {0}, hw = {0};
	struct kd_req_hdr hdr;
	kd_req_hdr_init(&hdr, 3, 1, corr, "px-brokers-test");
	kd_req_hdr_write(&hw, &hdr);
	kd_w_i32(&w, (int32_t)hw.len + 4);
	kd_w_raw(&w, hw.p, hw.len);
	kd_w_i32(&w, -1); /* Topics: null = all */
	assert_int_equal(send(fd, w.p, w.len, MSG_NOSIGNAL), (ssize_t)w.len);
	kd_wbuf_free(&w);
	kd_wbuf_free(&hw);
	uint8_t sz[4];
	assert_int_equal(recv_all(fd, sz, 4), 4);
	uint32_t size =
	    (uint32_t)sz[0] << 24 | (uint32_t)sz[1] << 16 | (uint32_t)sz[2] << 8 | sz[3];
	uint8_t *resp = malloc(size);
	assert_int_equal(recv_all(fd, resp, size), (ssize_t)size);
	struct kd_arena arena = {0};
	struct kd_tree t;
	if (kd_tree_decode(&t, &arena, 3, 1, 0, resp + 4, size - 4) != KD_OK)
		fail_msg("metadata: %s", t.err_msg);
	struct kd_node *brokers = kd_node_child(t.root, "Brokers");
	int n = (int)brokers->nkids;
	for (int i = 0; i < n && i < max; i++) {
		struct kd_node *b = kd_node_elem(brokers, (uint32_t)i);
		struct kd_node *host = kd_node_child(b, "Host");
		assert_int_equal(host->val.v.len, 9);
		assert_memory_equal(host->val.v.p, "127.0.0.1", 9);
		ids[i] = (int32_t)kd_node_int(kd_node_child(b, "NodeId"));
		ports[i] = (int32_t)kd_node_int(kd_node_child(b, "Port"));
	}
	kd_arena_free(&arena);
	free(resp);
	return n;
}

static int listening(struct px *px, int32_t node_id)
{
	struct px_broker_ent ents[64];
	unsigned n = px_broker_map(px, ents, 64);
	for (unsigned i = 0; i < n && i < 64; i++)
		if (ents[i].node_id == node_id)
			return ents[i].listening;
	return -1; /* not in the map */
}

static int nlistening(struct px *px)
{
	struct px_broker_ent ents[64];
	unsigned n = px_broker_map(px, ents, 64);
	int k = 0;
	for (unsigned i = 0; i < n && i < 64; i++)
		k += ents[i].listening;
	return k;
}

/* ---- tests ---- */

/* 50 brokers, max_brokers 10: 10 listeners, port 0 for 40, one line. */
static void test_cap(void **state)
{
	(void)state;
	struct fake fk;
	int32_t ids[64], ports[64];
	log_reset();
	fake_start(&fk, 1, 50);
	struct px *px = proxy_start(fk.port, 10, 600000);
	int fd = tcp_try_connect(px_listen_port(px));
	assert_true(fd >= 0);
	for (int round = 0; round < 3; round++) {
		assert_int_equal(metadata(fd, 10 + round, ids, ports, 64), 50);
		int mapped = 0;
		for (int i = 0; i < 50; i++) {
			assert_int_not_equal(ports[i], fk.port); /* never the real port */
			mapped += ports[i] != 0;
		}
		assert_int_equal(mapped, 10);
	}
	assert_int_equal(nlistening(px), 10);
	assert_int_equal(log_count("max_brokers"), 1);
	close(fd);
	px_free(&px);
	fake_stop(&fk);
}

/* Grace 0: brokers the next Metadata response omits lose their listener;
 * a connection through one stays usable; listed again, it comes back. */
static void test_gc(void **state)
{
	(void)state;
	struct fake fk;
	int32_t ids[64], ports[64];
	log_reset();
	fake_start(&fk, 1, 6);
	struct px *px = proxy_start(fk.port, 10, 0);
	int fd = tcp_try_connect(px_listen_port(px));
	assert_int_equal(metadata(fd, 1, ids, ports, 64), 6);
	assert_int_equal(nlistening(px), 6);
	assert_int_equal(ids[4], 5);
	uint16_t port5 = (uint16_t)ports[4];
	int via5 = tcp_try_connect(port5);
	assert_true(via5 >= 0);
	assert_int_equal(metadata(via5, 2, ids, ports, 64), 6);

	atomic_store(&fk.nlisted, 2); /* the cluster shrinks to brokers 1, 2 */
	assert_int_equal(metadata(fd, 3, ids, ports, 64), 2);
	/* The listeners close on the acceptor thread, right after. */
	for (int i = 0; i < 200 && nlistening(px) != 2; i++)
		usleep(10000);
	assert_int_equal(nlistening(px), 2);
	assert_int_equal(listening(px, 5), 0);
	assert_int_equal(listening(px, 1), 1);
	assert_int_equal(tcp_try_connect(port5), -1); /* refused */
	assert_int_equal(log_count("no longer listed"), 4);
	/* The connection made through broker 5's listener still works. */
	assert_int_equal(metadata(via5, 4, ids, ports, 64), 2);

	/* Listed again: the listener is back (ephemeral test ports: a new one). */
	atomic_store(&fk.nlisted, 6);
	assert_int_equal(metadata(fd, 5, ids, ports, 64), 6);
	assert_int_equal(nlistening(px), 6);
	int again = tcp_try_connect((uint16_t)ports[4]);
	assert_true(again >= 0);
	assert_int_equal(metadata(again, 6, ids, ports, 64), 6);
	close(again);
	close(via5);
	close(fd);
	px_free(&px);
	fake_stop(&fk);
}

/* The GC frees slots: with max_brokers 4, brokers 1-4 then, once they are
 * gone, brokers 11-14 all get listeners. A long grace keeps listeners. */
static void test_gc_slots_and_grace(void **state)
{
	(void)state;
	struct fake fk;
	int32_t ids[64], ports[64];
	log_reset();
	fake_start(&fk, 1, 4);
	struct px *px = proxy_start(fk.port, 4, 0);
	int fd = tcp_try_connect(px_listen_port(px));
	assert_int_equal(metadata(fd, 1, ids, ports, 64), 4);
	atomic_store(&fk.first_id, 11);
	assert_int_equal(metadata(fd, 2, ids, ports, 64), 4);
	for (int i = 0; i < 200 && listening(px, 1) != 0; i++)
		usleep(10000);
	/* Broker 11.. were named in the same response that unlisted 1..4: at
	 * the cap then; the next response maps them. */
	assert_int_equal(metadata(fd, 3, ids, ports, 64), 4);
	for (int i = 0; i < 4; i++)
		assert_int_not_equal(ports[i], 0);
	assert_int_equal(listening(px, 11), 1);
	assert_int_equal(listening(px, 14), 1);
	close(fd);
	px_free(&px);

	/* A grace of an hour: unlisted brokers keep their listener. */
	atomic_store(&fk.first_id, 1);
	px = proxy_start(fk.port, 10, 3600000);
	fd = tcp_try_connect(px_listen_port(px));
	assert_int_equal(metadata(fd, 1, ids, ports, 64), 4);
	atomic_store(&fk.nlisted, 1);
	assert_int_equal(metadata(fd, 2, ids, ports, 64), 1);
	assert_int_equal(metadata(fd, 3, ids, ports, 64), 1);
	usleep(100000);
	assert_int_equal(nlistening(px), 4);
	close(fd);
	px_free(&px);
	fake_stop(&fk);
}

/* The grace period runs on a timer: the listeners of brokers one response
 * stopped listing close once it is over, with no further Metadata. */
static void test_gc_timer(void **state)
{
	(void)state;
	struct fake fk;
	int32_t ids[64], ports[64];
	log_reset();
	fake_start(&fk, 1, 4);
	struct px *px = proxy_start(fk.port, 10, 300);
	int fd = tcp_try_connect(px_listen_port(px));
	assert_int_equal(metadata(fd, 1, ids, ports, 64), 4);
	atomic_store(&fk.nlisted, 1);
	assert_int_equal(metadata(fd, 2, ids, ports, 64), 1);
	for (int i = 0; i < 1000 && nlistening(px) != 1; i++)
		usleep(10000);
	assert_int_equal(nlistening(px), 1);
	assert_int_equal(listening(px, 1), 1);
	assert_int_equal(log_count("no longer listed"), 3);
	close(fd);
	px_free(&px);
	fake_stop(&fk);
}

/* A 300-byte host name: one warning that says so, no "(:0)". */
static void test_long_host(void **state)
{
	(void)state;
	struct fake fk;
	int32_t ids[64], ports[64];
	log_reset();
	fake_start(&fk, 1, 2);
	atomic_store(&fk.long_host, 1);
	struct px *px = proxy_start(fk.port, 10, 600000);
	int fd = tcp_try_connect(px_listen_port(px));
	for (int round = 0; round < 3; round++) {
		assert_int_equal(metadata(fd, round, ids, ports, 64), 2);
		assert_int_not_equal(ports[0], fk.port);
	}
	assert_int_equal(log_count("300-byte host name"), 1);
	assert_int_equal(log_count("(:0)"), 0);
	assert_int_equal(log_count("broker 1 (no usable address yet)"), 1);
	close(fd);
	px_free(&px);
	fake_stop(&fk);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cap),
	    cmocka_unit_test(test_gc),
	    cmocka_unit_test(test_gc_slots_and_grace),
	    cmocka_unit_test(test_gc_timer),
	    cmocka_unit_test(test_long_host),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	log_reset();
	return rc;
}
