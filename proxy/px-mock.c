/* px-mock.c: librdkafka's mock cluster, in-process (px-mock.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

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
