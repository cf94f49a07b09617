/* cmd-proxy.c: `kwire proxy`, the transparent Kafka proxy (proxy/px.h).
 *
 * Settings come from defaults, then the YAML file (-c), then the flags: a
 * flag always wins over the file. Signals are handled by sigwait() on this
 * thread (they are blocked before the proxy's threads start, so those
 * inherit the mask): SIGTERM/SIGINT drain and exit, SIGHUP reopens the log
 * file through the proxy's reopen hook. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "kw-help-gen.h"
#include "px-admin.h"
#include "px-log.h"
#include "px-mock.h"
#include "px-sasl.h"
#include "px.h"

enum {
	OPT_ADVERTISE = 256,
	OPT_BROKER_PORT,
	OPT_BROKER_PORT_BASE,
	OPT_WORKERS,
	OPT_MAX_BROKERS,
	OPT_MOCK_BROKERS,
	OPT_MOCK_TOPIC,
	OPT_BROKER_GRACE,
	OPT_MAX_FRAME,
	OPT_BUFFER,
	OPT_MAX_INFLIGHT,
	OPT_CONNECT_TIMEOUT,
	OPT_IDLE_TIMEOUT,
	OPT_DRAIN_TIMEOUT,
	OPT_NO_CLAMP,
	OPT_NO_REWRITE,
	OPT_ACCESS_LOG,
	OPT_ACCESS_LOG_FORMAT,
	OPT_NO_LOG,
	OPT_ADMIN,
	OPT_RULES,
	OPT_TAP,
	OPT_TAP_MAX_BYTES,
	OPT_TAP_FILES,
	OPT_AUDIT_LOG,
	OPT_PRINT_CONFIG,
	OPT_HELP_CONFIG,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_TLS_CHAIN,
	OPT_TLS_CLIENT_CA,
	OPT_TLS_CLIENT_AUTH,
	OPT_TLS_PRINCIPAL_RULES,
	OPT_TLS_PRINCIPAL_SOURCE,
	OPT_TLS_KTLS,
	OPT_UPSTREAM_TLS,
	OPT_UPSTREAM_TLS_CA,
	OPT_UPSTREAM_TLS_CERT,
	OPT_UPSTREAM_TLS_KEY,
	OPT_UPSTREAM_TLS_NO_VERIFY,
	OPT_UPSTREAM_TLS_SERVER_NAME,
	OPT_SNI_HOSTS,
	OPT_SNI_PORT,
	OPT_SASL,
	OPT_SASL_MECHANISMS,
	OPT_SASL_CREDENTIALS,
	OPT_SASL_JWKS,
	OPT_SASL_LIFETIME,
	OPT_SASL_TIMEOUT,
	OPT_UP_SASL_MECH,
	OPT_UP_SASL_USER,
};

static const struct option proxy_opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"upstream", required_argument, NULL, 'u'},
    {"listen", required_argument, NULL, 'l'},
    {"advertise", required_argument, NULL, OPT_ADVERTISE},
    {"broker-port", required_argument, NULL, OPT_BROKER_PORT},
    {"broker-port-base", required_argument, NULL, OPT_BROKER_PORT_BASE},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"max-brokers", required_argument, NULL, OPT_MAX_BROKERS},
    {"mock-brokers", required_argument, NULL, OPT_MOCK_BROKERS},
    {"mock-topic", required_argument, NULL, OPT_MOCK_TOPIC},
    {"broker-grace", required_argument, NULL, OPT_BROKER_GRACE},
    {"max-frame", required_argument, NULL, OPT_MAX_FRAME},
    {"buffer", required_argument, NULL, OPT_BUFFER},
    {"max-inflight", required_argument, NULL, OPT_MAX_INFLIGHT},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
    {"no-clamp", no_argument, NULL, OPT_NO_CLAMP},
    {"no-rewrite", no_argument, NULL, OPT_NO_REWRITE},
    {"log-file", required_argument, NULL, OPT_ACCESS_LOG},
    {"log-format", required_argument, NULL, OPT_ACCESS_LOG_FORMAT},
    {"no-log", no_argument, NULL, OPT_NO_LOG},
    {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
    {"access-log-format", required_argument, NULL, OPT_ACCESS_LOG_FORMAT},
    {"admin", required_argument, NULL, OPT_ADMIN},
    {"rules", required_argument, NULL, OPT_RULES},
    {"tap", required_argument, NULL, OPT_TAP},
    {"tap-max-bytes", required_argument, NULL, OPT_TAP_MAX_BYTES},
    {"tap-files", required_argument, NULL, OPT_TAP_FILES},
    {"audit-log", required_argument, NULL, OPT_AUDIT_LOG},
    {"print-config", no_argument, NULL, OPT_PRINT_CONFIG},
    {"sasl", required_argument, NULL, OPT_SASL},
    {"sasl-mechanisms", required_argument, NULL, OPT_SASL_MECHANISMS},
    {"sasl-credentials", required_argument, NULL, OPT_SASL_CREDENTIALS},
    {"sasl-jwks", required_argument, NULL, OPT_SASL_JWKS},
    {"sasl-session-lifetime", required_argument, NULL, OPT_SASL_LIFETIME},
    {"sasl-handshake-timeout", required_argument, NULL, OPT_SASL_TIMEOUT},
    {"upstream-sasl-mechanism", required_argument, NULL, OPT_UP_SASL_MECH},
    {"upstream-sasl-username", required_argument, NULL, OPT_UP_SASL_USER},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"help-config", no_argument, NULL, OPT_HELP_CONFIG},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-chain", required_argument, NULL, OPT_TLS_CHAIN},
    {"tls-client-ca", required_argument, NULL, OPT_TLS_CLIENT_CA},
    {"tls-client-auth", required_argument, NULL, OPT_TLS_CLIENT_AUTH},
    {"tls-principal-rules", required_argument, NULL, OPT_TLS_PRINCIPAL_RULES},
    {"tls-principal-source", required_argument, NULL, OPT_TLS_PRINCIPAL_SOURCE},
    {"ktls", no_argument, NULL, OPT_TLS_KTLS},
    {"upstream-tls", no_argument, NULL, OPT_UPSTREAM_TLS},
    {"upstream-tls-ca", required_argument, NULL, OPT_UPSTREAM_TLS_CA},
    {"upstream-tls-cert", required_argument, NULL, OPT_UPSTREAM_TLS_CERT},
    {"upstream-tls-key", required_argument, NULL, OPT_UPSTREAM_TLS_KEY},
    {"upstream-tls-no-verify", no_argument, NULL, OPT_UPSTREAM_TLS_NO_VERIFY},
    {"upstream-tls-server-name", required_argument, NULL, OPT_UPSTREAM_TLS_SERVER_NAME},
    {"sni-hosts", required_argument, NULL, OPT_SNI_HOSTS},
    {"sni-port", required_argument, NULL, OPT_SNI_PORT},
    {NULL, 0, NULL, 0},
};

static int parse_num(const char *opt, const char *s, unsigned long long lo, unsigned long long hi,
                     unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || end == s || s[0] == '-' || v < lo || v > hi) {
		fprintf(stderr, "kwire proxy: --%s: '%s' is not a number in [%llu, %llu]\n", opt, s,
		        lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

/* --upstream mock: run librdkafka's mock cluster in-process (px-mock.h),
 * with --mock-brokers brokers and the --mock-topic topics (my-topic with
 * 2 partitions when none is given). */
static int proxy_upstream_mock;
static int proxy_mock_brokers;
#define PROXY_MOCK_TOPICS 64
static struct {
	char name[250];
	int partitions;
} proxy_mock_topics[PROXY_MOCK_TOPICS];
static int proxy_nmock_topics;

/* NAME:PARTITIONS, NAME as Kafka allows topic names (1..249 of
 * [A-Za-z0-9._-], not "." or ".."). */
static int mock_topic_parse(const char *arg, char *err, size_t errlen)
{
	const char *colon = strrchr(arg, ':');
	size_t len = colon ? (size_t)(colon - arg) : 0;
	unsigned long long parts;
	if (!colon || len == 0) {
		snprintf(err, errlen, "--mock-topic '%s': expected NAME:PARTITIONS", arg);
		return -1;
	}
	if (len > 249 || (len == 1 && arg[0] == '.') || (len == 2 && !strncmp(arg, "..", 2)) ||
	    strspn(arg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") <
	        len) {
		snprintf(err, errlen,
		         "--mock-topic '%s': a topic name is 1 to 249 of A-Z a-z 0-9 . _ -", arg);
		return -1;
	}
	if (parse_num("mock-topic", colon + 1, 1, 1000, &parts))
		return -1;
	for (int i = 0; i < proxy_nmock_topics; i++)
		if (strlen(proxy_mock_topics[i].name) == len &&
		    !strncmp(proxy_mock_topics[i].name, arg, len)) {
			snprintf(err, errlen, "--mock-topic: topic '%.*s' given twice", (int)len,
			         arg);
			return -1;
		}
	if (proxy_nmock_topics == PROXY_MOCK_TOPICS) {
		snprintf(err, errlen, "--mock-topic: at most %d topics", PROXY_MOCK_TOPICS);
		return -1;
	}
	memcpy(proxy_mock_topics[proxy_nmock_topics].name, arg, len);
	proxy_mock_topics[proxy_nmock_topics].name[len] = '\0';
	proxy_mock_topics[proxy_nmock_topics].partitions = (int)parts;
	proxy_nmock_topics++;
	return 0;
}

/* Starts the mock cluster and says what it is, what it speaks and what it
 * cannot do (stderr), then "MOCK HOST:PORT,..." (stdout). */
static struct px_mock *mock_start(struct px_conf *conf, char *err, size_t errlen)
{
	char speaks[1024], lacks[512], perr[256];
	int nb = proxy_mock_brokers ? proxy_mock_brokers : PX_MOCK_BROKERS;
	struct px_mock *mock = px_mock_new(nb, err, errlen);
	if (!mock)
		return NULL;
	if (!proxy_nmock_topics) {
		snprintf(proxy_mock_topics[0].name, sizeof(proxy_mock_topics[0].name), "my-topic");
		proxy_mock_topics[0].partitions = 2;
		proxy_nmock_topics = 1;
	}
	for (int i = 0; i < proxy_nmock_topics; i++)
		if (px_mock_topic(mock, proxy_mock_topics[i].name, proxy_mock_topics[i].partitions,
		                  0, err, errlen))
			goto fail;
	if (px_mock_conf_upstream(mock, conf, err, errlen))
		goto fail;
	fprintf(stderr,
	        "kwire proxy: mock cluster: librdkafka %s's mock broker, in-process: %d broker(s), "
	        "ids 1..%d, on 127.0.0.1; no TLS, no SASL\n",
	        px_mock_lib_version(), nb, nb);
	for (int i = 0; i < proxy_nmock_topics; i++)
		fprintf(stderr,
		        "kwire proxy: mock cluster: topic %s, %d partition(s), leaders spread "
		        "over the brokers\n",
		        proxy_mock_topics[i].name, proxy_mock_topics[i].partitions);
	fprintf(stderr, "kwire proxy: mock cluster: any other topic is created when a client "
	                "first names it, with 4 partitions\n");
	if (px_mock_describe(mock, speaks, sizeof(speaks), lacks, sizeof(lacks), perr,
	                     sizeof(perr)) == 0) {
		fprintf(stderr, "kwire proxy: mock cluster speaks: %s\n", speaks);
		if (lacks[0])
			fprintf(stderr, "kwire proxy: mock cluster does not answer: %s\n", lacks);
	} else {
		fprintf(stderr, "kwire proxy: %s\n", perr);
	}
	printf("MOCK %s\n", px_mock_bootstraps(mock));
	return mock;
fail:
	px_mock_free(&mock);
	return NULL;
}
/* --no-log: no access log at all (the default is stdout). */
static int proxy_no_log;

/* Replaces a heap string of conf with a copy of arg ("" = unset); -1
 * out of memory. */
static int set_str(char **dst, const char *arg)
{
	char *s = NULL;
	if (arg[0] && !(s = strdup(arg)))
		return -1;
	free(*dst);
	*dst = s;
	return 0;
}

/* Applies one flag to conf; -1 on a bad value. */
static int apply_flag(struct px_conf *conf, int c, const char *arg, int *print_config)
{
	char err[256];
	unsigned long long v;
	switch (c) {
	case 'c':
		return 0; /* loaded before the flags */
	case 'u':
		if (!strcmp(arg, "mock")) { /* kwire's in-process cluster (px-mock.h) */
			proxy_upstream_mock = 1;
			return 0;
		}
		if (px_conf_set_upstreams(conf, arg, err, sizeof(err)))
			goto bad;
		return 0;
	case 'l':
		if (px_hostport_parse(arg, 0, &conf->listen, err, sizeof(err)))
			goto bad;
		return 0;
	case OPT_ADVERTISE:
		if (strlen(arg) >= sizeof(conf->advertise)) {
			snprintf(err, sizeof(err), "--advertise: too long");
			goto bad;
		}
		snprintf(conf->advertise, sizeof(conf->advertise), "%s", arg);
		return 0;
	case OPT_BROKER_PORT: {
		const char *eq = strchr(arg, '=');
		long long id;
		char *end;
		if (!eq) {
			snprintf(err, sizeof(err), "--broker-port: expected ID=PORT");
			goto bad;
		}
		errno = 0;
		id = strtoll(arg, &end, 10);
		if (errno || end != eq || end == arg || id < INT32_MIN || id > INT32_MAX) {
			snprintf(err, sizeof(err), "--broker-port: bad node id in '%s'", arg);
			goto bad;
		}
		if (parse_num("broker-port", eq + 1, 1, 65535, &v))
			return -1;
		if (px_conf_set_broker_port(conf, (int32_t)id, (uint16_t)v, err, sizeof(err)))
			goto bad;
		return 0;
	}
	case OPT_BROKER_PORT_BASE:
		if (parse_num("broker-port-base", arg, 0, 65535, &v))
			return -1;
		conf->broker_port_base = (uint16_t)v;
		return 0;
	case OPT_MOCK_BROKERS:
		if (parse_num("mock-brokers", arg, 1, 32, &v))
			return -1;
		proxy_mock_brokers = (int)v;
		return 0;
	case OPT_MOCK_TOPIC:
		if (mock_topic_parse(arg, err, sizeof(err)))
			goto bad;
		return 0;
	case OPT_MAX_BROKERS:
		if (parse_num("max-brokers", arg, 1, PX_BROKER_MAX - 1, &v))
			return -1;
		conf->max_brokers = (unsigned)v;
		return 0;
	case OPT_BROKER_GRACE:
		if (parse_num("broker-grace", arg, 0, 86400000, &v))
			return -1;
		conf->broker_grace_ms = (unsigned)v;
		return 0;
	case OPT_WORKERS:
		if (parse_num("workers", arg, 0, 256, &v))
			return -1;
		conf->workers = (unsigned)v;
		return 0;
	case OPT_MAX_FRAME:
		if (parse_num("max-frame", arg, 64, INT32_MAX, &v))
			return -1;
		conf->max_frame = (uint32_t)v;
		return 0;
	case OPT_BUFFER:
		if (parse_num("buffer", arg, 4096, 1ULL << 32, &v))
			return -1;
		conf->buffer_bytes = (size_t)v;
		return 0;
	case OPT_MAX_INFLIGHT:
		if (parse_num("max-inflight", arg, 1, 1 << 20, &v))
			return -1;
		conf->max_inflight = (unsigned)v;
		return 0;
	case OPT_CONNECT_TIMEOUT:
		if (parse_num("connect-timeout", arg, 1, 3600000, &v))
			return -1;
		conf->connect_timeout_ms = (unsigned)v;
		return 0;
	case OPT_IDLE_TIMEOUT:
		if (parse_num("idle-timeout", arg, 0, 86400000, &v))
			return -1;
		conf->idle_timeout_ms = (unsigned)v;
		return 0;
	case OPT_DRAIN_TIMEOUT:
		if (parse_num("drain-timeout", arg, 0, 3600000, &v))
			return -1;
		conf->drain_timeout_ms = (unsigned)v;
		return 0;
	case OPT_NO_CLAMP:
		conf->clamp_api_versions = 0;
		return 0;
	case OPT_NO_REWRITE:
		conf->rewrite = 0;
		return 0;
	case OPT_ACCESS_LOG: {
		char *s = strdup(arg);
		if (!s)
			return -1;
		free(conf->access_log);
		conf->access_log = s;
		return 0;
	}
	case OPT_ACCESS_LOG_FORMAT:
		if (!strcmp(arg, "text"))
			conf->access_log_format = PX_LOGF_TEXT;
		else if (!strcmp(arg, "json"))
			conf->access_log_format = PX_LOGF_JSON;
		else {
			snprintf(err, sizeof(err), "--log-format: text or json");
			goto bad;
		}
		return 0;
	case OPT_NO_LOG:
		proxy_no_log = 1;
		return 0;
	case OPT_RULES: {
		char *s = strdup(arg);
		if (!s)
			return -1;
		free(conf->rules);
		conf->rules = s;
		return 0;
	}
	case OPT_TAP: {
		char *s = strdup(arg);
		if (!s)
			return -1;
		free(conf->tap);
		conf->tap = s;
		return 0;
	}
	case OPT_TAP_MAX_BYTES:
		if (parse_num("tap-max-bytes", arg, 0, 1ULL << 50, &v))
			return -1;
		conf->tap_max_bytes = v;
		return 0;
	case OPT_TAP_FILES:
		if (parse_num("tap-files", arg, 1, 1000, &v))
			return -1;
		conf->tap_files = (unsigned)v;
		return 0;
	case OPT_AUDIT_LOG: {
		char *s = strdup(arg);
		if (!s)
			return -1;
		free(conf->audit_log);
		conf->audit_log = s;
		return 0;
	}
	case OPT_ADMIN:
		snprintf(conf->admin.host, sizeof(conf->admin.host), "127.0.0.1");
		if (px_hostport_parse(arg, 0, &conf->admin, err, sizeof(err)))
			goto bad;
		return 0;
	case OPT_PRINT_CONFIG:
		*print_config = 1;
		return 0;
	case OPT_TLS_CERT:
		return set_str(&conf->tls_cert, arg);
	case OPT_TLS_KEY:
		return set_str(&conf->tls_key, arg);
	case OPT_TLS_CHAIN:
		return set_str(&conf->tls_chain, arg);
	case OPT_TLS_CLIENT_CA:
		return set_str(&conf->tls_client_ca, arg);
	case OPT_TLS_CLIENT_AUTH:
		if (!strcmp(arg, "none"))
			conf->tls_client_auth = PX_TLS_AUTH_NONE;
		else if (!strcmp(arg, "requested"))
			conf->tls_client_auth = PX_TLS_AUTH_REQUESTED;
		else if (!strcmp(arg, "required"))
			conf->tls_client_auth = PX_TLS_AUTH_REQUIRED;
		else {
			snprintf(err, sizeof(err),
			         "--tls-client-auth '%s': none, requested or required", arg);
			goto bad;
		}
		return 0;
	case OPT_TLS_PRINCIPAL_RULES:
		if (px_tls_rules_check(arg, err, sizeof(err)))
			goto bad;
		return set_str(&conf->tls_principal_rules, arg);
	case OPT_TLS_PRINCIPAL_SOURCE:
		if (strcmp(arg, "dn") && strcmp(arg, "san")) {
			snprintf(err, sizeof(err), "--tls-principal-source '%s': dn or san", arg);
			goto bad;
		}
		conf->tls_principal_source =
		    !strcmp(arg, "san") ? PX_TLS_SOURCE_SAN : PX_TLS_SOURCE_DN;
		return 0;
	case OPT_TLS_KTLS:
		conf->tls_ktls = 1;
		return 0;
	case OPT_UPSTREAM_TLS:
		conf->upstream_tls = 1;
		return 0;
	case OPT_UPSTREAM_TLS_CA:
		conf->upstream_tls = 1;
		return set_str(&conf->upstream_tls_ca, arg);
	case OPT_UPSTREAM_TLS_CERT:
		conf->upstream_tls = 1;
		return set_str(&conf->upstream_tls_cert, arg);
	case OPT_UPSTREAM_TLS_KEY:
		conf->upstream_tls = 1;
		return set_str(&conf->upstream_tls_key, arg);
	case OPT_UPSTREAM_TLS_NO_VERIFY:
		conf->upstream_tls = 1;
		conf->upstream_tls_verify = 0;
		return 0;
	case OPT_UPSTREAM_TLS_SERVER_NAME:
		conf->upstream_tls = 1;
		return set_str(&conf->upstream_tls_server_name, arg);
	case OPT_SNI_HOSTS:
		return set_str(&conf->sni_hosts, arg);
	case OPT_SNI_PORT:
		if (parse_num("sni-port", arg, 1, 65535, &v))
			return -1;
		conf->sni_port = (uint16_t)v;
		return 0;
	case OPT_SASL:
	case OPT_SASL_MECHANISMS:
	case OPT_UP_SASL_MECH: {
		const char *key = c == OPT_SASL              ? "sasl"
		                  : c == OPT_SASL_MECHANISMS ? "sasl_mechanisms"
		                                             : "upstream_sasl_mechanism";
		char msg[200];
		if (px_sasl_conf_set(&conf->sasl, key, arg, 0, msg, sizeof(msg))) {
			snprintf(err, sizeof(err), "--%s: %s",
			         c == OPT_SASL              ? "sasl"
			         : c == OPT_SASL_MECHANISMS ? "sasl-mechanisms"
			                                    : "upstream-sasl-mechanism",
			         msg);
			goto bad;
		}
		return 0;
	}
	case OPT_SASL_CREDENTIALS:
	case OPT_SASL_JWKS:
	case OPT_UP_SASL_USER: {
		char *dst = c == OPT_SASL_CREDENTIALS ? conf->sasl.credentials
		            : c == OPT_SASL_JWKS      ? conf->sasl.jwks
		                                      : conf->sasl.up_user;
		size_t cap = c == OPT_UP_SASL_USER ? sizeof(conf->sasl.up_user) : PX_PATH_MAX;
		if (strlen(arg) >= cap) {
			snprintf(err, sizeof(err), "an argument of %zu bytes or more", cap);
			goto bad;
		}
		snprintf(dst, cap, "%s", arg);
		return 0;
	}
	case OPT_SASL_LIFETIME:
		if (parse_num("sasl-session-lifetime", arg, 0, INT32_MAX, &v))
			return -1;
		conf->sasl.session_lifetime_ms = (unsigned)v;
		return 0;
	case OPT_SASL_TIMEOUT:
		if (parse_num("sasl-handshake-timeout", arg, 1, 3600000, &v))
			return -1;
		conf->sasl.handshake_timeout_ms = (unsigned)v;
		return 0;
	case 'v':
		if (conf->log_level < 3)
			conf->log_level++;
		return 0;
	case 'q':
		conf->log_level = 0;
		return 0;
	default:
		return -1;
	}
bad:
	fprintf(stderr, "kwire proxy: %s\n", err);
	return -1;
}

int cmd_proxy_drain(struct px *px, const sigset_t *set)
{
	int forced = 0;
	while (!px_wait_ms(px, 0)) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		int sig = sigtimedwait(set, NULL, &ts);
		if (sig == SIGHUP) {
			px_reopen(px);
		} else if ((sig == SIGTERM || sig == SIGINT) && !forced) {
			px_log(px, 1, "second %s: stopping now, closing every connection",
			       sig == SIGTERM ? "SIGTERM" : "SIGINT");
			px_stop_now(px);
			forced = 1;
		}
	}
	px_wait(px);
	return forced;
}

int cmd_proxy(int argc, char **argv)
{
	struct px_conf conf;
	struct px *px = NULL;
	struct px_mock *mock = NULL;
	struct px_observer obs = {0};
	char err[512] = "";
	const char *config = NULL;
	int c, rc = 2, print_config = 0;

	px_conf_init(&conf);
	/* Pass 1: --help and the file, so that flags can override it. */
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "c:u:l:vqh", proxy_opts, NULL)) != -1) {
		if (c == 'h' || c == OPT_HELP_CONFIG) {
			fputs(c == 'h' ? kw_help_proxy : kw_help_config, stdout);
			rc = 0;
			goto out;
		}
		if (c == 'c')
			config = optarg;
	}
	if (config && px_conf_load(&conf, config, err, sizeof(err))) {
		fprintf(stderr, "kwire proxy: %s\n", err);
		goto out;
	}
	/* Pass 2: the flags. */
	opterr = 1;
	optind = 0;
	while ((c = getopt_long(argc, argv, "c:u:l:vqh", proxy_opts, NULL)) != -1) {
		if (c == '?' || apply_flag(&conf, c, optarg, &print_config)) {
			fprintf(stderr, "'kwire proxy --help' lists the options.\n");
			goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kwire proxy: unexpected argument '%s'\n", argv[optind]);
		goto out;
	}
	if ((proxy_mock_brokers || proxy_nmock_topics) && !proxy_upstream_mock) {
		fprintf(stderr,
		        "kwire proxy: --mock-brokers and --mock-topic need --upstream mock\n");
		goto out;
	}
	/* The access log goes to stdout unless a file or --no-log says otherwise. */
	if (proxy_no_log) {
		free(conf.access_log);
		conf.access_log = NULL;
	} else if (!conf.access_log && !(conf.access_log = strdup("-"))) {
		fprintf(stderr, "kwire proxy: out of memory\n");
		goto out;
	}
	if (proxy_upstream_mock) {
		/* Block the signals first: the mock's threads inherit the mask. */
		sigset_t mset;
		sigemptyset(&mset);
		sigaddset(&mset, SIGTERM);
		sigaddset(&mset, SIGINT);
		sigaddset(&mset, SIGHUP);
		pthread_sigmask(SIG_BLOCK, &mset, NULL);
		mock = mock_start(&conf, err, sizeof(err));
		if (!mock) {
			fprintf(stderr, "kwire proxy: %s\n", err);
			goto out;
		}
	}
	if (print_config) {
		px_conf_dump(&conf, stdout);
		rc = 0;
		goto out;
	}
	if (px_conf_check(&conf, err, sizeof(err))) {
		fprintf(stderr, "kwire proxy: %s\n", err);
		goto out;
	}

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	px = px_new(&conf, err, sizeof(err));
	if (px && px_observe_start(px, &conf, &obs, err, sizeof(err)))
		px_free(&px); /* access log and admin endpoint: px-log.h */
	if (!px || px_start(px, err, sizeof(err))) {
		fprintf(stderr, "kwire proxy: %s\n", err);
		rc = 1;
		goto out;
	}
	printf("LISTEN %s:%u\n", conf.listen.host, px_listen_port(px));
	if (obs.admin)
		printf("ADMIN %s:%u\n", conf.admin.host, px_admin_port(obs.admin));
	fflush(stdout);
	for (;;) {
		int sig = 0;
		if (sigwait(&set, &sig))
			continue;
		if (sig == SIGHUP) {
			px_log(px, 2, "SIGHUP: reopening the log%s",
			       conf.rules ? ", reloading the rules" : "");
			px_reopen(px);
			continue;
		}
		px_log(px, 2, "%s: draining (a second one stops at once)",
		       sig == SIGTERM ? "SIGTERM" : "SIGINT");
		px_stop(px);
		break;
	}
	rc = cmd_proxy_drain(px, &set) ? 1 : 0;
out:
	px_observe_stop(&obs);
	px_free(&px);
	px_mock_free(&mock);
	px_conf_free(&conf);
	return rc;
}
