/* px-mock.c: librdkafka's mock cluster, in-process (px-mock.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kd-arena.h"
#include "kd-schema.h"
#include "kd-tree.h"
#include "px-mock.h"
#include "px.h"

#define PX_MOCK_MAX 32

struct px_mock {
	rd_kafka_t *rk; /* librdkafka needs a handle to hang the cluster on */
	rd_kafka_mock_cluster_t *mc;
	int nbrokers;
	char *bootstraps;
	char host[PX_MOCK_MAX][PX_HOST_MAX];
	uint16_t port[PX_MOCK_MAX];
};

/* The handle's own log lines (it never connects anywhere) stay quiet. */
static void mock_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	if (level <= 3)
		fprintf(stderr, "kwire mock: %s: %s\n", fac, buf);
}

/* Splits the bootstrap list into per-broker addresses; the mock numbers
 * its brokers 1..n in the order of this list. */
static int mock_parse_addrs(struct px_mock *mock, char *err, size_t errlen)
{
	const char *s = mock->bootstraps;
	int n = 0;
	while (*s && n < PX_MOCK_MAX) {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		const char *colon = memrchr(s, ':', len);
		if (!colon || (size_t)(colon - s) >= PX_HOST_MAX)
			goto bad;
		memcpy(mock->host[n], s, (size_t)(colon - s));
		mock->host[n][colon - s] = '\0';
		long port = strtol(colon + 1, NULL, 10);
		if (port <= 0 || port > 65535)
			goto bad;
		mock->port[n] = (uint16_t)port;
		n++;
		s = comma ? comma + 1 : s + len;
	}
	if (n != mock->nbrokers)
		goto bad;
	return 0;
bad:
	snprintf(err, errlen, "mock cluster: unexpected bootstrap list '%s'", mock->bootstraps);
	return -1;
}

struct px_mock *px_mock_new(int nbrokers, char *err, size_t errlen)
{
	char errstr[512];
	struct px_mock *mock = NULL;
	rd_kafka_conf_t *conf = NULL;

	if (nbrokers < 1 || nbrokers > PX_MOCK_MAX) {
		snprintf(err, errlen, "mock cluster: %d brokers (1..%d)", nbrokers, PX_MOCK_MAX);
		goto fail;
	}
	mock = calloc(1, sizeof(*mock));
	if (!mock) {
		snprintf(err, errlen, "mock cluster: out of memory");
		goto fail;
	}
	mock->nbrokers = nbrokers;
	conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, mock_log_cb);
	if (rd_kafka_conf_set(conf, "client.id", "kwire-mock", errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr))) {
		snprintf(err, errlen, "mock cluster: %s", errstr);
		goto fail;
	}
	mock->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!mock->rk) {
		snprintf(err, errlen, "mock cluster: rd_kafka_new: %s", errstr);
		goto fail;
	}
	conf = NULL; /* owned by rk now */
	mock->mc = rd_kafka_mock_cluster_new(mock->rk, nbrokers);
	if (!mock->mc) {
		snprintf(err, errlen, "mock cluster: rd_kafka_mock_cluster_new failed");
		goto fail;
	}
	mock->bootstraps = strdup(rd_kafka_mock_cluster_bootstraps(mock->mc));
	if (!mock->bootstraps) {
		snprintf(err, errlen, "mock cluster: out of memory");
		goto fail;
	}
	if (mock_parse_addrs(mock, err, errlen) < 0)
		goto fail;
	return mock;
fail:
	if (conf)
		rd_kafka_conf_destroy(conf);
	px_mock_free(&mock);
	return NULL;
}

void px_mock_free(struct px_mock **mockp)
{
	struct px_mock *mock = *mockp;
	if (!mock)
		return;
	if (mock->mc)
		rd_kafka_mock_cluster_destroy(mock->mc);
	if (mock->rk)
		rd_kafka_destroy(mock->rk);
	free(mock->bootstraps);
	free(mock);
	*mockp = NULL;
}

const char *px_mock_bootstraps(const struct px_mock *mock)
{
	return mock->bootstraps;
}

int px_mock_nbrokers(const struct px_mock *mock)
{
	return mock->nbrokers;
}

int px_mock_broker_addr(const struct px_mock *mock, int32_t id, char *host, uint16_t *port)
{
	if (id < 1 || id > mock->nbrokers)
		return -1;
	snprintf(host, PX_HOST_MAX, "%s", mock->host[id - 1]);
	*port = mock->port[id - 1];
	return 0;
}

static int mock_err(rd_kafka_resp_err_t rc, const char *what, char *err, size_t errlen)
{
	if (!rc)
		return 0;
	snprintf(err, errlen, "mock cluster: %s: %s", what, rd_kafka_err2str(rc));
	return -1;
}

int px_mock_topic(struct px_mock *mock, const char *topic, int partitions, int rf, char *err,
                  size_t errlen)
{
	if (rf <= 0)
		rf = mock->nbrokers < 3 ? mock->nbrokers : 3;
	if (rf > mock->nbrokers)
		rf = mock->nbrokers;
	if (mock_err(rd_kafka_mock_topic_create(mock->mc, topic, partitions, rf), topic, err,
	             errlen))
		return -1;
	for (int p = 0; p < partitions; p++)
		if (px_mock_set_leader(mock, topic, p, (p % mock->nbrokers) + 1, err, errlen))
			return -1;
	return 0;
}

int px_mock_set_leader(struct px_mock *mock, const char *topic, int32_t partition,
                       int32_t broker_id, char *err, size_t errlen)
{
	return mock_err(rd_kafka_mock_partition_set_leader(mock->mc, topic, partition, broker_id),
	                "set leader", err, errlen);
}

int px_mock_broker_down(struct px_mock *mock, int32_t broker_id, char *err, size_t errlen)
{
	return mock_err(rd_kafka_mock_broker_set_down(mock->mc, broker_id), "broker down", err,
	                errlen);
}

int px_mock_broker_up(struct px_mock *mock, int32_t broker_id, char *err, size_t errlen)
{
	return mock_err(rd_kafka_mock_broker_set_up(mock->mc, broker_id), "broker up", err, errlen);
}

int px_mock_set_rtt(struct px_mock *mock, int32_t broker_id, int rtt_ms, char *err, size_t errlen)
{
	return mock_err(rd_kafka_mock_broker_set_rtt(mock->mc, broker_id, rtt_ms), "rtt", err,
	                errlen);
}

int px_mock_conf_upstream(const struct px_mock *mock, struct px_conf *conf, char *err,
                          size_t errlen)
{
	return px_conf_set_upstreams(conf, mock->bootstraps, err, errlen);
}

const char *px_mock_lib_version(void)
{
	return rd_kafka_version_str();
}

/* APIs a client or an admin tool commonly uses; px_mock_describe names
 * those the cluster does not answer. */
static const int16_t mock_wanted[] = {15, 16, 17, 19, 20, 21, 23, 29, 32,
                                      33, 36, 37, 42, 47, 60, 61, 68, 69};

static int recv_n(int fd, uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = recv(fd, p, len, 0);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Appends ", NAME" (or "NAME" first) to buf; cuts with "..." when full. */
static void append(char *buf, size_t len, const char *s)
{
	size_t used = strlen(buf);
	if (used + 8 >= len)
		return;
	snprintf(buf + used, len - used, "%s%s", used ? ", " : "", s);
}

int px_mock_describe(const struct px_mock *mock, char *speaks, size_t slen, char *lacks,
                     size_t llen, char *err, size_t errlen)
{
	/* ApiVersions v0 (request header v1, client id "kwire-mock-probe"):
	 * what the linked librdkafka's mock really answers. */
	static const uint8_t req[] = {0,   0,   0,   26,  0,   18,  0,   0,   0,   0,
	                              0,   1,   0,   16,  'k', 'w', 'i', 'r', 'e', '-',
	                              'm', 'o', 'c', 'k', '-', 'p', 'r', 'o', 'b', 'e'};
	struct sockaddr_in sin;
	struct timeval tv = {5, 0};
	uint8_t hdr[4], *resp = NULL;
	int rc = -1, fd = socket(AF_INET, SOCK_STREAM, 0);
	struct kd_arena arena = {0};
	speaks[0] = lacks[0] = '\0';
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(mock->port[0]);
	if (fd < 0 || inet_pton(AF_INET, mock->host[0], &sin.sin_addr) != 1)
		goto out;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) ||
	    send(fd, req, sizeof(req), MSG_NOSIGNAL) != (ssize_t)sizeof(req) || recv_n(fd, hdr, 4))
		goto out;
	uint32_t size =
	    (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (size < 4 || size > (1u << 20) || !(resp = malloc(size)) || recv_n(fd, resp, size))
		goto out;
	struct kd_tree t;
	if (kd_tree_decode(&t, &arena, 18, 0, 0, resp + 4, size - 4) != KD_OK)
		goto out;
	struct kd_node *keys = kd_node_child(t.root, "ApiKeys");
	if (!keys)
		goto out;
	uint8_t have[128] = {0};
	for (uint32_t i = 0; i < keys->nkids; i++) {
		struct kd_node *k = kd_node_elem(keys, i);
		int16_t key = (int16_t)kd_node_int(kd_node_child(k, "ApiKey"));
		char one[64];
		const char *name = kd_api_name(key);
		int lo = (int)kd_node_int(kd_node_child(k, "MinVersion"));
		int hi = (int)kd_node_int(kd_node_child(k, "MaxVersion"));
		if (name)
			snprintf(one, sizeof(one), "%s v%d-%d", name, lo, hi);
		else
			snprintf(one, sizeof(one), "api %d v%d-%d", key, lo, hi);
		append(speaks, slen, one);
		if (key >= 0 && key < 128)
			have[key] = 1;
	}
	for (size_t i = 0; i < sizeof(mock_wanted) / sizeof(mock_wanted[0]); i++)
		if (!have[mock_wanted[i]] && kd_api_name(mock_wanted[i]))
			append(lacks, llen, kd_api_name(mock_wanted[i]));
	rc = 0;
out:
	if (rc)
		snprintf(err, errlen, "mock cluster: no ApiVersions answer from broker 1 (%s:%u)",
		         mock->host[0], mock->port[0]);
	kd_arena_free(&arena);
	free(resp);
	if (fd >= 0)
		close(fd);
	return rc;
}
