/* test_px_conf.c: the proxy's configuration: YAML files (good, unknown
 * keys and wrong types with line and column), host:port parsing, the
 * broker port rule, and `kwire proxy` flags overriding the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "px.h"

static int load(struct px_conf *conf, const char *yaml, char *err, size_t errlen)
{
	return px_conf_load_mem(conf, yaml, strlen(yaml), "t.yaml", err, errlen);
}

static void test_defaults(void **state)
{
	(void)state;
	struct px_conf conf;
	char err[256];
	px_conf_init(&conf);
	assert_int_equal(conf.listen.port, 9092);
	assert_int_equal(conf.max_frame, 100u * 1024 * 1024);
	assert_int_equal(conf.clamp_api_versions, 1);
	assert_int_equal(conf.rewrite, 1);
	/* No upstream: not runnable. */
	assert_int_equal(px_conf_check(&conf, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "upstream"));
	px_conf_free(&conf);
}

static void test_good_file(void **state)
{
	(void)state;
	struct px_conf conf;
	char err[256] = "";
	px_conf_init(&conf);
	const char *yaml = "# kwire proxy\n"
	                   "listen: \"127.0.0.1:19092\"\n"
	                   "upstream:\n"
	                   "  - kafka-1.internal:9092\n"
	                   "  - \"[::1]:9093\"\n"
	                   "advertise: proxy.example.com\n"
	                   "broker_ports:\n"
	                   "  1001: 20001\n"
	                   "  1002: 20002\n"
	                   "workers: 3\n"
	                   "max_frame_bytes: 1048576\n"
	                   "buffer_bytes: 65536\n"
	                   "max_inflight: 10\n"
	                   "connect_timeout_ms: 500\n"
	                   "idle_timeout_ms: 0\n"
	                   "drain_timeout_ms: 250\n"
	                   "clamp_api_versions: false\n"
	                   "rewrite: yes\n"
	                   "access_log: /tmp/kwire-access.log\n"
	                   "access_log_format: json\n"
	                   "admin: 9644\n"
	                   "log_level: 3\n";
	if (load(&conf, yaml, err, sizeof(err)))
		fail_msg("%s", err);
	assert_string_equal(conf.listen.host, "127.0.0.1");
	assert_int_equal(conf.listen.port, 19092);
	assert_int_equal(conf.nupstreams, 2);
	assert_string_equal(conf.upstreams[0].host, "kafka-1.internal");
	assert_int_equal(conf.upstreams[0].port, 9092);
	assert_string_equal(conf.upstreams[1].host, "::1");
	assert_int_equal(conf.upstreams[1].port, 9093);
	assert_string_equal(conf.advertise, "proxy.example.com");
	assert_int_equal(conf.nbroker_ports, 2);
	assert_int_equal(px_conf_broker_port(&conf, 19092, 1001), 20001);
	assert_int_equal(px_conf_broker_port(&conf, 19092, 1002), 20002);
	assert_int_equal(conf.workers, 3);
	assert_int_equal(conf.max_frame, 1048576);
	assert_int_equal(conf.buffer_bytes, 65536);
	assert_int_equal(conf.max_inflight, 10);
	assert_int_equal(conf.connect_timeout_ms, 500);
	assert_int_equal(conf.idle_timeout_ms, 0);
	assert_int_equal(conf.drain_timeout_ms, 250);
	assert_int_equal(conf.clamp_api_versions, 0);
	assert_int_equal(conf.rewrite, 1);
	assert_string_equal(conf.access_log, "/tmp/kwire-access.log");
	assert_int_equal(conf.access_log_format, PX_LOGF_JSON);
	assert_string_equal(conf.admin.host, "127.0.0.1");
	assert_int_equal(conf.admin.port, 9644);
	assert_int_equal(conf.log_level, 3);
	assert_int_equal(px_conf_check(&conf, err, sizeof(err)), 0);

	/* A comma-separated string works for upstream too; a later file
	 * overrides an earlier one key by key. */
	if (load(&conf, "upstream: a:1, b:2 ,c:3\n", err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(conf.nupstreams, 3);
	assert_string_equal(conf.upstreams[1].host, "b");
	assert_int_equal(conf.upstreams[2].port, 3);
	assert_int_equal(conf.workers, 3);

	/* Copies are deep. */
	struct px_conf copy;
	assert_int_equal(px_conf_copy(&copy, &conf), 0);
	px_conf_free(&conf);
	assert_string_equal(copy.access_log, "/tmp/kwire-access.log");
	assert_int_equal(px_conf_broker_port(&copy, 19092, 1002), 20002);
	px_conf_free(&copy);
}

/* Each bad file fails with "t.yaml:LINE:COL: ..." and leaves conf as it was. */
static void test_bad_files(void **state)
{
	(void)state;
	static const struct {
		const char *yaml;
		const char *where; /* expected "t.yaml:L:C:" prefix */
		const char *what;  /* expected words in the message */
	} cases[] = {
	    {"listen: 9092\nupstrem: a:1\n", "t.yaml:2:1:", "unknown key 'upstrem'"},
	    {"upstream: a:1\n  # c\nworkers: many\n", "t.yaml:3:10:", "integer"},
	    {"workers: -1\n", "t.yaml:1:10:", "integer"},
	    {"workers: 4\nmax_inflight: [1, 2]\n", "t.yaml:2:15:", "not a list"},
	    {"clamp_api_versions: 3\n", "t.yaml:1:21:", "boolean"},
	    {"upstream: {a: 1}\n", "t.yaml:1:11:", "mapping"},
	    {"upstream:\n  - a:1\n  - nohostport\n", "t.yaml:3:5:", "HOST:PORT"},
	    {"listen: \"1.2.3.4:99999\"\n", "t.yaml:1:9:", "bad port"},
	    {"broker_ports:\n  x: 20001\n", "t.yaml:2:3:", "integer"},
	    {"broker_ports: [1, 2]\n", "t.yaml:1:15:", "mapping"},
	    {"access_log_format: xml\n", "t.yaml:1:20:", "text or json"},
	    {"advertise: [a]\n", "t.yaml:1:12:", "string"},
	    {"- a\n- b\n", "t.yaml:1:1:", "mapping"},
	    {"listen: [\n", "t.yaml:2:1:", ""},
	    {"proxy:\n  listen: 1\n", "t.yaml:1:1:", "unknown key 'proxy'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct px_conf conf;
		char err[512] = "";
		px_conf_init(&conf);
		conf.workers = 7;
		if (load(&conf, cases[i].yaml, err, sizeof(err)) != -1)
			fail_msg("case %zu loaded: %s", i, cases[i].yaml);
		if (strncmp(err, cases[i].where, strlen(cases[i].where)) ||
		    !strstr(err, cases[i].what))
			fail_msg("case %zu: got '%s', want '%s ... %s'", i, err, cases[i].where,
			         cases[i].what);
		assert_int_equal(conf.workers, 7);
		assert_int_equal(conf.nupstreams, 0);
		px_conf_free(&conf);
	}
	struct px_conf conf;
	char err[256];
	px_conf_init(&conf);
	assert_int_equal(px_conf_load(&conf, "/nonexistent/kwire.yaml", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/kwire.yaml"));
	px_conf_free(&conf);
}

/* Issue 8, item 10: duplicate keys, aliases pointing at themselves, a
 * directory given as the file. */
static void test_file_checks(void **state)
{
	(void)state;
	static const struct {
		const char *yaml;
		const char *where;
		const char *what;
	} cases[] = {
	    {"listen: 9092\nworkers: 2\nlisten: 9093\n",
	     "t.yaml:3:1:", "duplicate key 'listen' (first at line 1)"},
	    {"broker_ports:\n  1: 20001\n  2: 20002\n  1: 20003\n",
	     "t.yaml:4:3:", "node 1 given twice (first at line 2)"},
	    /* The error is in the alias's use, not at the anchor (1:12). */
	    {"advertise: &h proxy.example.com\nworkers: *h\n", "t.yaml:2:10:", "integer"},
	    {"advertise: &h proxy.example.com\nupstream:\n  - a:1\n  - *h\n",
	     "t.yaml:4:5:", "HOST:PORT"},
	    {"listen: &p \"1.2.3.4:9092\"\nbroker_ports: {1: 20001, 2: *p}\n",
	     "t.yaml:2:29:", "integer"},
	    {"upstream: &w [a:1]\nmax_inflight: *w\n", "t.yaml:2:15:", "not a list"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct px_conf conf;
		char err[512] = "";
		px_conf_init(&conf);
		if (load(&conf, cases[i].yaml, err, sizeof(err)) != -1)
			fail_msg("case %zu loaded: %s", i, cases[i].yaml);
		if (strncmp(err, cases[i].where, strlen(cases[i].where)) ||
		    !strstr(err, cases[i].what))
			fail_msg("case %zu: got '%s', want '%s ... %s'", i, err, cases[i].where,
			         cases[i].what);
		px_conf_free(&conf);
	}
	struct px_conf conf;
	char err[256], dir[] = "/tmp/kwire-conf-XXXXXX";
	assert_non_null(mkdtemp(dir));
	px_conf_init(&conf);
	assert_int_equal(px_conf_load(&conf, dir, err, sizeof(err)), -1);
	assert_non_null(strstr(err, dir));
	assert_non_null(strstr(err, "is a directory"));
	px_conf_free(&conf);
	rmdir(dir);
}

/* Port clashes are found by px_conf_check (before anything binds). */
static void test_port_clashes(void **state)
{
	(void)state;
	static const struct {
		const char *yaml;
		const char *what; /* NULL: no clash */
	} cases[] = {
	    {"listen: 9092\nadmin: 9092\n", "admin and listen both use port 9092"},
	    {"listen: 127.0.0.1:9092\nadmin: 10.0.0.1:9092\n", NULL},
	    /* the rule: listen 9092 -> broker N on 9093 + N */
	    {"listen: 9092\nadmin: 9094\n", "admin port 9094 is broker 1's proxy port"},
	    {"listen: 9092\nadmin: 10094\n", "admin port 10094 is broker 1001's proxy port"},
	    {"listen: 9092\nadmin: 9644\n", NULL},
	    {"listen: 9092\nadmin: 9094\nbroker_ports: {1: 20001}\n", NULL},
	    {"listen: 9092\nbroker_ports: {5: 9100}\n",
	     "broker_ports gives node 5 port 9100, which the broker port rule gives node 7"},
	    {"listen: 9092\nbroker_ports: {5: 9098}\n", NULL},
	    {"listen: 9092\nadmin: 20001\nbroker_ports: {1: 20001}\n",
	     "admin port 20001 is also broker_ports' port for node 1"},
	    {"listen: 9092\nbroker_port_base: 9000\n",
	     "listen port 9092 is broker 92's proxy port"},
	    {"listen: 0\nadmin: 9094\n", NULL},
	    {"listen: 9092\nadmin: 0\n", NULL},
	    {"listen: 9092\nmax_brokers: 4\nadmin: 9100\n", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct px_conf conf;
		char err[512] = "";
		px_conf_init(&conf);
		assert_int_equal(px_conf_set_upstreams(&conf, "a:1", err, sizeof(err)), 0);
		if (load(&conf, cases[i].yaml, err, sizeof(err)))
			fail_msg("case %zu: %s", i, err);
		int rc = px_conf_check(&conf, err, sizeof(err));
		if (!cases[i].what && rc)
			fail_msg("case %zu: unexpected '%s'", i, err);
		if (cases[i].what && (!rc || !strstr(err, cases[i].what)))
			fail_msg("case %zu: got '%s', want '%s'", i, rc ? err : "no error",
			         cases[i].what);
		px_conf_free(&conf);
	}
}

static void test_hostport(void **state)
{
	(void)state;
	struct px_hostport hp;
	char err[256];
	memset(&hp, 0, sizeof(hp));
	assert_int_equal(px_hostport_parse("9092", 0, &hp, err, sizeof(err)), 0);
	assert_int_equal(hp.port, 9092);
	assert_int_equal(px_hostport_parse("h.example:1", 1, &hp, err, sizeof(err)), 0);
	assert_string_equal(hp.host, "h.example");
	assert_int_equal(px_hostport_parse("[fe80::1]:443", 1, &hp, err, sizeof(err)), 0);
	assert_string_equal(hp.host, "fe80::1");
	assert_int_equal(hp.port, 443);
	assert_int_equal(px_hostport_parse(":9000", 0, &hp, err, sizeof(err)), 0);
	assert_string_equal(hp.host, "0.0.0.0");
	assert_int_equal(px_hostport_parse("9092", 1, &hp, err, sizeof(err)), -1);
	assert_int_equal(px_hostport_parse("h:", 1, &hp, err, sizeof(err)), -1);
	assert_int_equal(px_hostport_parse("h:65536", 1, &hp, err, sizeof(err)), -1);
	assert_int_equal(px_hostport_parse("fe80::1:80", 1, &hp, err, sizeof(err)), -1);
	assert_int_equal(px_hostport_parse("[fe80::1]80", 1, &hp, err, sizeof(err)), -1);

	struct px_conf conf;
	px_conf_init(&conf);
	assert_int_equal(px_conf_set_upstreams(&conf, " , ", err, sizeof(err)), -1);
	assert_int_equal(px_conf_set_upstreams(&conf, "a:0", err, sizeof(err)), -1);
	assert_int_equal(px_conf_set_upstreams(&conf, "a:1,b:2", err, sizeof(err)), 0);
	assert_int_equal(conf.nupstreams, 2);
	px_conf_free(&conf);
}

static void test_broker_port_rule(void **state)
{
	(void)state;
	struct px_conf conf;
	char err[256];
	px_conf_init(&conf);
	conf.listen.port = 9092;
	/* Default: listen port + 1 + node id. */
	assert_int_equal(px_conf_broker_port(&conf, 9092, 0), 9093);
	assert_int_equal(px_conf_broker_port(&conf, 9092, 1), 9094);
	assert_int_equal(px_conf_broker_port(&conf, 9092, 3), 9096);
	assert_int_equal(px_conf_broker_port(&conf, 9092, -1), 0);
	assert_int_equal(px_conf_broker_port(&conf, 9092, 70000), 0); /* beyond 65535 */
	/* The explicit map wins; a base moves the rest. */
	assert_int_equal(px_conf_set_broker_port(&conf, 70000, 30000, err, sizeof(err)), 0);
	assert_int_equal(px_conf_broker_port(&conf, 9092, 70000), 30000);
	conf.broker_port_base = 40000;
	assert_int_equal(px_conf_broker_port(&conf, 9092, 2), 40002);
	/* Ephemeral bootstrap port: broker ports are ephemeral too (0). */
	conf.broker_port_base = 0;
	conf.listen.port = 0;
	assert_int_equal(px_conf_broker_port(&conf, 45678, 1), 0);
	/* Duplicated explicit ports are refused. */
	conf.listen.port = 9092;
	assert_int_equal(px_conf_set_upstreams(&conf, "a:1", err, sizeof(err)), 0);
	assert_int_equal(px_conf_set_broker_port(&conf, 5, 30000, err, sizeof(err)), 0);
	assert_int_equal(px_conf_check(&conf, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "30000"));
	px_conf_free(&conf);
}

/* Runs `kwire proxy ARGS --print-config` and returns its stdout. */
static char *run_kwire(const char *args, int *status)
{
	const char *bin = getenv("KWIRE_BIN");
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "'%s' proxy %s 2>&1", bin, args);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	char *out = calloc(1, 65536);
	size_t n = fread(out, 1, 65535, f);
	out[n] = '\0';
	*status = pclose(f);
	return out;
}

static void test_flags_override_file(void **state)
{
	(void)state;
	if (!getenv("KWIRE_BIN")) {
		print_message("SKIP: KWIRE_BIN not set (needs: ctest's environment)\n");
		skip();
		return;
	}
	char path[] = "/tmp/kwire-px-conf-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *yaml = "listen: 127.0.0.1:19092\n"
	                   "upstream: [file-broker:9092]\n"
	                   "workers: 3\n"
	                   "max_inflight: 10\n"
	                   "advertise: from-file\n";
	assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
	close(fd);
	char args[512];
	int status;
	snprintf(
	    args, sizeof(args),
	    "-c %s --workers 5 -u flag-broker:1,flag-broker:2 --broker-port 7=30007 --no-clamp "
	    "--print-config",
	    path);
	char *out = run_kwire(args, &status);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "workers: 5\n"));       /* flag wins */
	assert_non_null(strstr(out, "max_inflight: 10\n")); /* file kept */
	assert_non_null(strstr(out, "advertise: \"from-file\"\n"));
	assert_non_null(strstr(out, "listen: \"127.0.0.1:19092\"\n"));
	assert_non_null(strstr(out, "\"flag-broker:2\""));
	assert_null(strstr(out, "file-broker"));
	assert_non_null(strstr(out, "7: 30007"));
	assert_non_null(strstr(out, "clamp_api_versions: false"));
	free(out);

	/* The flag order does not matter: -c after a flag still loses to it. */
	snprintf(args, sizeof(args), "--workers 6 -c %s --print-config", path);
	out = run_kwire(args, &status);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "workers: 6\n"));
	free(out);

	/* Errors name file, line and column; bad flags fail. */
	FILE *f = fopen(path, "w");
	fputs("listen: 1\nworkers: 2\nbogus: 1\n", f);
	fclose(f);
	snprintf(args, sizeof(args), "-c %s --print-config", path);
	out = run_kwire(args, &status);
	assert_int_not_equal(status, 0);
	char want[128];
	snprintf(want, sizeof(want), "%s:3:1: unknown key 'bogus'", path);
	assert_non_null(strstr(out, want));
	free(out);
	out = run_kwire("-u a:1 --workers lots --print-config", &status);
	assert_int_not_equal(status, 0);
	free(out);
	out = run_kwire("--help", &status);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "--upstream"));
	free(out);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),         cmocka_unit_test(test_good_file),
	    cmocka_unit_test(test_bad_files),        cmocka_unit_test(test_hostport),
	    cmocka_unit_test(test_broker_port_rule), cmocka_unit_test(test_flags_override_file),
	    cmocka_unit_test(test_file_checks),      cmocka_unit_test(test_port_clashes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
