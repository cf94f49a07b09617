/* px-mock.h: librdkafka's mock Kafka cluster, in-process (rdkafka_mock.h).
 *
 * `kwire demo` and `kwire proxy --upstream mock` put the proxy in front of
 * it; tests and the benchmark use it as a real broker. The cluster runs on
 * librdkafka's own threads and listens on 127.0.0.1, ephemeral ports;
 * broker ids are 1..nbrokers.
 *
 * Functions returning int return 0 on success and -1 on error with a
 * message in err (always NUL-terminated). */
#ifndef PX_MOCK_H
#define PX_MOCK_H

#include <stddef.h>
#include <stdint.h>

#include "px-t.h"

#define PX_MOCK_BROKERS 3 /* the default cluster size */

struct px_mock; /* opaque */

/* Starts a cluster of nbrokers brokers (1..32). NULL on error. */
struct px_mock *px_mock_new(int nbrokers, char *err, size_t errlen);
/* Stops the cluster and frees it; *mock = NULL. mock may point to NULL. */
void px_mock_free(struct px_mock **mock);

/* "127.0.0.1:P1,127.0.0.1:P2,..." in broker id order; owned by mock. */
const char *px_mock_bootstraps(const struct px_mock *mock);
int px_mock_nbrokers(const struct px_mock *mock);
/* The address of broker id (1..n): host (at least PX_HOST_MAX) and port. */
int px_mock_broker_addr(const struct px_mock *mock, int32_t id, char *host, uint16_t *port);

/* Creates topic with partitions partitions and replication factor rf
 * (0: min(3, brokers)), then spreads the leaders: partition p is led by
 * broker (p % nbrokers) + 1, so every broker leads something. */
int px_mock_topic(struct px_mock *mock, const char *topic, int partitions, int rf, char *err,
                  size_t errlen);
/* Moves a partition's leader to broker_id (-1: leaderless). */
int px_mock_set_leader(struct px_mock *mock, const char *topic, int32_t partition,
                       int32_t broker_id, char *err, size_t errlen);
/* Takes a broker down (its connections are closed, new ones refused) or
 * brings it back; -1 means every broker. Leaders do not move. */
int px_mock_broker_down(struct px_mock *mock, int32_t broker_id, char *err, size_t errlen);
int px_mock_broker_up(struct px_mock *mock, int32_t broker_id, char *err, size_t errlen);
/* Adds rtt_ms of latency to a broker's responses (-1: every broker). */
int px_mock_set_rtt(struct px_mock *mock, int32_t broker_id, int rtt_ms, char *err, size_t errlen);

/* The linked librdkafka's version ("2.0.2"), whose mock this is. */
const char *px_mock_lib_version(void);
/* What the cluster really speaks, asked with ApiVersions v0 on broker 1:
 * "Produce v0-7, Fetch v0-11, ..." in speaks, and the commonly used APIs
 * (admin, groups, SASL, KIP-848) it does not answer in lacks. Blocks for
 * at most ~5 s. */
int px_mock_describe(const struct px_mock *mock, char *speaks, size_t slen, char *lacks,
                     size_t llen, char *err, size_t errlen);

/* Points conf's upstream list at the cluster (replaces it). */
struct px_conf;
int px_mock_conf_upstream(const struct px_mock *mock, struct px_conf *conf, char *err,
                          size_t errlen);

#endif
