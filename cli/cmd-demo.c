/* cmd-demo.c: `kwire demo`, kwire in front of an in-process Kafka cluster.
 *
 * Starts librdkafka's mock cluster (3 brokers, px-mock.h), puts the proxy
 * in front of it with the access log on stdout, and runs the workload of
 * the classic producer/consumer tutorial through the proxy: N messages to
 * my-topic (2 partitions, message i to partition i % 2) from a librdkafka
 * producer, then a consumer in group my-group reading them back from the
 * earliest offset. Prints a summary and exits 0 when every message came
 * back. --keep-running then leaves everything up for kcat & co. */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "cmd.h"
#include "kw-help-gen.h"
#include "kd-schema.h"
#include "px-admin.h"
#include "px-log.h"
#include "px-mock.h"
#include "px.h"

#define DEMO_TOPIC "my-topic"
#define DEMO_GROUP "my-group"
#define DEMO_PARTITIONS 2

struct demo_opts {
	int keep_running;
	int quiet;
	long messages;
	int timeout_s;
	const char *log_file;
	enum px_log_format log_format;
	struct px_hostport listen;
	struct px_hostport admin;
};

enum { OPT_LOG_FORMAT = 256, OPT_LOG_FILE, OPT_ADMIN, OPT_LISTEN, OPT_TIMEOUT };

static const struct option demo_longopts[] = {
    {"keep-running", no_argument, NULL, 'k'},
    {"messages", required_argument, NULL, 'n'},
    {"quiet", no_argument, NULL, 'q'},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"log-file", required_argument, NULL, OPT_LOG_FILE},
    {"admin", required_argument, NULL, OPT_ADMIN},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void demo_usage(FILE *f)
{
	fputs(kw_help_demo, f);
}

static int demo_parse(int argc, char **argv, struct demo_opts *o)
{
	char err[256];
	int c;
	memset(o, 0, sizeof(*o));
	o->messages = 1000;
	o->timeout_s = 60;
	snprintf(o->listen.host, sizeof(o->listen.host), "127.0.0.1");
	snprintf(o->admin.host, sizeof(o->admin.host), "127.0.0.1");
	optind = 1;
	while ((c = getopt_long(argc, argv, "kn:qh", demo_longopts, NULL)) != -1) {
		switch (c) {
		case 'k':
			o->keep_running = 1;
			break;
		case 'n': {
			char *end;
			o->messages = strtol(optarg, &end, 10);
			if (*end || o->messages < 1 || o->messages > 10000000) {
				fprintf(stderr, "kwire demo: --messages: 1..10000000\n");
				return -1;
			}
			break;
		}
		case 'q':
			o->quiet = 1;
			break;
		case OPT_LOG_FORMAT:
			if (!strcmp(optarg, "text"))
				o->log_format = PX_LOGF_TEXT;
			else if (!strcmp(optarg, "json"))
				o->log_format = PX_LOGF_JSON;
			else {
				fprintf(stderr, "kwire demo: --log-format: text or json\n");
				return -1;
			}
			break;
		case OPT_LOG_FILE:
			o->log_file = optarg;
			break;
		case OPT_ADMIN:
		case OPT_LISTEN:
			if (px_hostport_parse(optarg, 0, c == OPT_ADMIN ? &o->admin : &o->listen,
			                      err, sizeof(err))) {
				fprintf(stderr, "kwire demo: %s\n", err);
				return -1;
			}
			break;
		case OPT_TIMEOUT:
			o->timeout_s = atoi(optarg);
			if (o->timeout_s < 1) {
				fprintf(stderr, "kwire demo: --timeout: at least 1\n");
				return -1;
			}
			break;
		case 'h':
			demo_usage(stdout);
			return 1;
		default:
			demo_usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kwire demo: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	return 0;
}

/* ---- the workload (librdkafka clients, through the proxy) ---- */

struct demo_counts {
	long delivered, failed, consumed;
	long per_partition[DEMO_PARTITIONS];
};

static void demo_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	struct demo_counts *cnt = opaque;
	if (msg->err)
		cnt->failed++;
	else
		cnt->delivered++;
}

static void demo_rk_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	if (level <= 3)
		fprintf(stderr, "kwire demo: client: %s: %s\n", fac, buf);
}

static rd_kafka_conf_t *demo_rk_conf(const char *bootstrap, const char *client_id)
{
	char errstr[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, demo_rk_log);
	if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "client.id", client_id, errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr))) {
		fprintf(stderr, "kwire demo: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	return conf;
}

static int demo_produce(const struct demo_opts *o, const char *bootstrap, struct demo_counts *cnt)
{
	char errstr[256];
	int rc = -1;
	rd_kafka_conf_t *conf = demo_rk_conf(bootstrap, "kwire-demo-producer");
	if (!conf)
		return -1;
	rd_kafka_conf_set_dr_msg_cb(conf, demo_dr_cb);
	rd_kafka_conf_set_opaque(conf, cnt);
	if (rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "acks", "all", errstr, sizeof(errstr))) {
		fprintf(stderr, "kwire demo: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "kwire demo: producer: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	for (long i = 0; i < o->messages; i++) {
		char key[32], val[64];
		int klen = snprintf(key, sizeof(key), "key-%ld", i);
		int vlen = snprintf(val, sizeof(val), "message %ld", i);
		rd_kafka_resp_err_t err;
		while ((err = rd_kafka_producev(
		            rk, RD_KAFKA_V_TOPIC(DEMO_TOPIC),
		            RD_KAFKA_V_PARTITION((int32_t)(i % DEMO_PARTITIONS)),
		            RD_KAFKA_V_KEY(key, (size_t)klen), RD_KAFKA_V_VALUE(val, (size_t)vlen),
		            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
		       RD_KAFKA_RESP_ERR__QUEUE_FULL)
			rd_kafka_poll(rk, 10);
		if (err) {
			fprintf(stderr, "kwire demo: produce: %s\n", rd_kafka_err2str(err));
			goto out;
		}
		rd_kafka_poll(rk, 0);
	}
	if (rd_kafka_flush(rk, o->timeout_s * 1000)) {
		fprintf(stderr, "kwire demo: producer: not every message was delivered in %d s\n",
		        o->timeout_s);
		goto out;
	}
	rc = cnt->failed ? -1 : 0;
out:
	rd_kafka_destroy(rk);
	return rc;
}

static int demo_consume(const struct demo_opts *o, const char *bootstrap, struct demo_counts *cnt)
{
	char errstr[256];
	rd_kafka_conf_t *conf = demo_rk_conf(bootstrap, "kwire-demo-consumer");
	if (!conf)
		return -1;
	if (rd_kafka_conf_set(conf, "group.id", DEMO_GROUP, errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "enable.partition.eof", "false", errstr, sizeof(errstr))) {
		fprintf(stderr, "kwire demo: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "kwire demo: consumer: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	rd_kafka_poll_set_consumer(rk);
	rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(topics, DEMO_TOPIC, RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (err) {
		fprintf(stderr, "kwire demo: subscribe: %s\n", rd_kafka_err2str(err));
		rd_kafka_destroy(rk);
		return -1;
	}
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (cnt->consumed < o->messages) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > o->timeout_s) {
			fprintf(stderr, "kwire demo: consumer: timed out after %d s\n",
			        o->timeout_s);
			break;
		}
		rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 200);
		if (!msg)
			continue;
		if (!msg->err) {
			cnt->consumed++;
			if (msg->partition >= 0 && msg->partition < DEMO_PARTITIONS)
				cnt->per_partition[msg->partition]++;
		} else {
			fprintf(stderr, "kwire demo: consumer: %s\n", rd_kafka_message_errstr(msg));
		}
		rd_kafka_message_destroy(msg);
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return cnt->consumed == o->messages ? 0 : -1;
}

/* ---- the summary ---- */

static void demo_summary(const struct demo_opts *o, struct px *px, struct px_admin *adm,
                         const struct demo_counts *cnt)
{
	struct px_stats st;
	px_stats_get(px, &st);
	printf("\n=== kwire demo summary ===\n");
	printf("messages produced:  %ld of %ld (failed %ld)\n", cnt->delivered, o->messages,
	       cnt->failed);
	printf("messages consumed:  %ld (partition 0: %ld, partition 1: %ld)\n", cnt->consumed,
	       cnt->per_partition[0], cnt->per_partition[1]);
	printf("requests per API:  ");
	int first = 1;
	for (int16_t key = 0; key < PX_API_MAX; key++) {
		uint64_t n = 0;
		for (int16_t ver = 0; ver < PX_VER_MAX; ver++) {
			struct px_api_stats as;
			px_api_stats_get(px, key, ver, &as);
			n += as.requests;
		}
		if (!n)
			continue;
		const char *name = kd_api_name(key);
		printf("%s %s %" PRIu64, first ? "" : ",", name ? name : "?", n);
		first = 0;
	}
	printf("\n");
	struct px_topic_totals tt;
	if (px_admin_topic_totals(adm, DEMO_TOPIC, &tt) == 0)
		printf("%s records:    produced %" PRIu64 " (%" PRIu64 " B), fetched %" PRIu64
		       " (%" PRIu64 " B)\n",
		       DEMO_TOPIC, tt.produce_records, tt.produce_bytes, tt.fetch_records,
		       tt.fetch_bytes);
	printf("bytes:              clients -> kwire %" PRIu64 ", kwire -> clients %" PRIu64
	       ", kwire -> brokers %" PRIu64 ", brokers -> kwire %" PRIu64 "\n",
	       st.bytes_in_client, st.bytes_out_client, st.bytes_out_upstream,
	       st.bytes_in_upstream);
	printf("connections:        %" PRIu64 " accepted, %" PRIu64 " responses rewritten\n",
	       st.conns_accepted, st.responses_rewritten);
	printf("result:             %s\n",
	       cnt->consumed == o->messages ? "OK, every message came back" : "FAILED");
	fflush(stdout);
}

/* ---- main ---- */

static void demo_log_error(void *arg, const char *msg)
{
	px_log(arg, 0, "%s", msg);
}

int cmd_demo(int argc, char **argv)
{
	struct demo_opts o;
	struct px_conf conf;
	struct px_mock *mock = NULL;
	struct px *px = NULL;
	struct px_log *log = NULL;
	struct px_admin *adm = NULL;
	struct px_observer obs = {0};
	struct px_hooks hooks;
	struct demo_counts cnt = {0};
	char err[512];
	int status = 1, started = 0;
	sigset_t sigs;

	px_conf_init(&conf);
	int prc = demo_parse(argc, argv, &o);
	if (prc)
		goto out_conf;

	/* Threads inherit this mask: with --keep-running the signals are taken
	 * by sigwait() below, nowhere else. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	if (o.keep_running)
		pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	mock = px_mock_new(PX_MOCK_BROKERS, err, sizeof(err));
	if (!mock || px_mock_topic(mock, DEMO_TOPIC, DEMO_PARTITIONS, 0, err, sizeof(err)))
		goto fail;
	conf.listen = o.listen;
	if (px_mock_conf_upstream(mock, &conf, err, sizeof(err)) ||
	    px_conf_check(&conf, err, sizeof(err)))
		goto fail;
	px = px_new(&conf, err, sizeof(err));
	if (!px)
		goto fail;
	if (!o.quiet) {
		log = px_log_new(o.log_file, o.log_format, 0, err, sizeof(err));
		if (!log)
			goto fail;
		px_log_set_error_cb(log, demo_log_error, px, PX_LOG_ERROR_INTERVAL_MS);
	}
	adm = px_admin_new(px, &o.admin, err, sizeof(err));
	if (!adm)
		goto fail;
	px_admin_set_log(adm, log);
	obs.px = px;
	obs.log = log;
	obs.admin = adm;
	px_observer_hooks(&obs, &hooks);
	px_set_hooks(px, &hooks);
	if (px_start(px, err, sizeof(err)))
		goto fail;
	started = 1;

	char bootstrap[PX_HOST_MAX + 8];
	snprintf(bootstrap, sizeof(bootstrap), "%s:%u",
	         strcmp(o.listen.host, "0.0.0.0") && o.listen.host[0] ? o.listen.host : "127.0.0.1",
	         px_listen_port(px));
	printf("kwire demo: mock cluster %s; kwire listening on %s; admin "
	       "http://127.0.0.1:%u/metrics\n",
	       px_mock_bootstraps(mock), bootstrap, px_admin_port(adm));
	fflush(stdout);

	int wrc = demo_produce(&o, bootstrap, &cnt);
	if (wrc == 0)
		wrc = demo_consume(&o, bootstrap, &cnt);
	if (log)
		px_log_flush(log);
	demo_summary(&o, px, adm, &cnt);
	status = wrc == 0 ? 0 : 1;

	if (o.keep_running) {
		printf("\nkwire demo: still running. Try:\n"
		       "  kcat -b %s -L\n"
		       "  kcat -b %s -C -t %s -o beginning -e\n"
		       "  curl http://127.0.0.1:%u/metrics\n"
		       "BOOTSTRAP %s\n"
		       "ADMIN 127.0.0.1:%u\n"
		       "Ctrl-C stops.\n",
		       bootstrap, bootstrap, DEMO_TOPIC, px_admin_port(adm), bootstrap,
		       px_admin_port(adm));
		fflush(stdout);
		for (;;) {
			int sig;
			if (sigwait(&sigs, &sig))
				break;
			if (sig == SIGHUP) {
				px_reopen(px);
				continue;
			}
			break;
		}
	}
	goto out;
fail:
	fprintf(stderr, "kwire demo: %s\n", err);
	status = 1;
out:
	/* Workers call the observer until the proxy has stopped; the admin
	 * thread reads the proxy's counters until it is freed. */
	if (started) {
		px_stop(px);
		if (o.keep_running && cmd_proxy_drain(px, &sigs))
			status = 1;
		px_wait(px);
	}
	px_admin_free(&adm);
	px_free(&px);
	px_log_free(&log);
	px_mock_free(&mock);
out_conf:
	px_conf_free(&conf);
	return prc > 0 ? 0 : prc < 0 ? 2 : status;
}
