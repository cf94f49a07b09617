/* test_schema.c: the generated schema tables (kd-schema-gen.c) and their
 * look-ups (kd-schema.c), checked against facts from the Kafka spec and,
 * when KWIRE_SHARED is set, against INDEX.tsv read at test time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kd-schema.h"

/* The field named name in st, or fail the test. */
static const struct kd_field *field(const struct kd_struct *st, const char *name)
{
	assert_non_null(st);
	for (unsigned i = 0; i < st->nfields; i++)
		if (strcmp(st->fields[i].name, name) == 0)
			return &st->fields[i];
	fail_msg("no field %s in %s", name, st->name);
	return NULL;
}

static void assert_vers(struct kd_vers v, int lo, int hi)
{
	assert_int_equal(v.lo, lo);
	assert_int_equal(v.hi, hi);
}

static void test_api_keys(void **state)
{
	static const struct {
		int16_t key;
		const char *name;
	} known[] = {
		{ 0, "Produce" },	  { 1, "Fetch" },	    { 2, "ListOffsets" },
		{ 3, "Metadata" },	  { 10, "FindCoordinator" }, { 17, "SaslHandshake" },
		{ 18, "ApiVersions" },	  { 36, "SaslAuthenticate" }, { 47, "OffsetDelete" },
		{ 60, "DescribeCluster" }, { 68, "ConsumerGroupHeartbeat" },
		{ 87, "ReadShareGroupStateSummary" },
	};

	assert_int_equal(kd_napis, 88);
	assert_int_equal(kd_api_key_max, 87);
	for (unsigned i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		assert_string_equal(kd_api_name(known[i].key), known[i].name);
		assert_int_equal(kd_api_get(known[i].key)->key, known[i].key);
	}
	/* Sorted by key, and the O(1) index agrees with the array. */
	for (unsigned i = 0; i < kd_napis; i++) {
		if (i > 0)
			assert_true(kd_apis[i - 1].key < kd_apis[i].key);
		assert_ptr_equal(kd_api_get(kd_apis[i].key), &kd_apis[i]);
		assert_non_null(kd_apis[i].name);
	}
	assert_null(kd_api_get(-1));
	assert_null(kd_api_get(88));
	assert_null(kd_api_get(INT16_MAX));
	assert_null(kd_api_get(INT16_MIN));
	assert_null(kd_api_name(1000));
}

static void test_versions(void **state)
{
	const struct kd_api *api;

	api = kd_api_get(0);
	assert_vers(api->req.valid, 0, 11);
	assert_vers(api->resp.valid, 0, 11);
	assert_vers(api->req.flexible, 9, INT16_MAX);
	assert_vers(api->deprecated, 0, 6);
	assert_int_equal(api->listeners, KD_LSN_ZKBROKER | KD_LSN_BROKER);
	assert_string_equal(api->req.name, "ProduceRequest");
	assert_string_equal(api->resp.name, "ProduceResponse");
	assert_string_equal(api->req.body->name, "ProduceRequest");

	api = kd_api_get(18);
	assert_vers(api->req.valid, 0, 4);
	assert_vers(api->resp.flexible, 3, INT16_MAX);
	assert_vers(api->deprecated, -1, -1);
	assert_int_equal(api->listeners, KD_LSN_ZKBROKER | KD_LSN_BROKER | KD_LSN_CONTROLLER);

	api = kd_api_get(17); /* never flexible */
	assert_vers(api->req.flexible, -1, -1);
	assert_vers(api->deprecated, 0, 0);

	api = kd_api_get(47); /* "validVersions": "0" */
	assert_vers(api->req.valid, 0, 0);
	assert_vers(api->req.flexible, -1, -1);

	api = kd_api_get(87);
	assert_int_equal(api->unstable_latest, 1);
	assert_int_equal(api->listeners, KD_LSN_BROKER);
	assert_int_equal(kd_api_get(2)->unstable_latest, 0); /* explicit "false" */
	assert_int_equal(kd_api_get(80)->listeners, KD_LSN_BROKER | KD_LSN_CONTROLLER);

	assert_ptr_equal(kd_msgdef_get(3, 12, 1), &kd_api_get(3)->req);
	assert_ptr_equal(kd_msgdef_get(3, 0, 0), &kd_api_get(3)->resp);
	assert_null(kd_msgdef_get(3, 13, 1));
	assert_null(kd_msgdef_get(3, -1, 0));
	assert_null(kd_msgdef_get(47, 1, 1));
	assert_null(kd_msgdef_get(-1, 0, 1));
	assert_null(kd_msgdef_get(200, 0, 0));
}

static void test_metadata_brokers(void **state)
{
	const struct kd_msgdef *def = kd_msgdef_get(3, 12, 0);
	const struct kd_field *f;
	const struct kd_struct *br;

	assert_non_null(def);
	f = field(def->body, "Brokers");
	assert_int_equal(f->type, KD_T_ARRAY);
	assert_int_equal(f->elem, KD_T_STRUCT);
	assert_vers(f->versions, 0, INT16_MAX);
	br = f->sub;
	assert_string_equal(br->name, "MetadataResponseBroker");
	assert_int_equal(br->nfields, 4);
	assert_string_equal(br->fields[0].name, "NodeId");
	assert_string_equal(br->fields[1].name, "Host");
	assert_string_equal(br->fields[2].name, "Port");
	assert_string_equal(br->fields[3].name, "Rack");
	assert_int_equal(br->fields[0].type, KD_T_INT32);
	assert_int_equal(br->fields[0].entity, KD_ENT_BROKER_ID);
	assert_int_equal(br->fields[1].type, KD_T_STRING);
	assert_vers(br->fields[1].nullable, -1, -1);
	assert_int_equal(br->fields[2].type, KD_T_INT32);
	assert_int_equal(br->fields[3].type, KD_T_STRING);
	assert_vers(br->fields[3].versions, 1, INT16_MAX);
	assert_vers(br->fields[3].nullable, 1, INT16_MAX);
	assert_int_equal(br->fields[3].tag, -1);

	f = field(def->body, "ClusterAuthorizedOperations");
	assert_vers(f->versions, 8, 10);
	f = field(field(def->body, "Topics")->sub, "Name");
	assert_int_equal(f->entity, KD_ENT_TOPIC_NAME);
	assert_vers(f->nullable, 12, INT16_MAX);
	f = field(field(field(def->body, "Topics")->sub, "Partitions")->sub, "ReplicaNodes");
	assert_int_equal(f->type, KD_T_ARRAY);
	assert_int_equal(f->elem, KD_T_INT32);
	assert_null(f->sub);
}

static void test_produce_tagged(void **state)
{
	const struct kd_msgdef *def = kd_msgdef_get(0, 10, 0);
	const struct kd_field *f, *part;

	assert_non_null(def);
	f = field(def->body, "NodeEndpoints");
	assert_int_equal(f->type, KD_T_ARRAY);
	assert_int_equal(f->elem, KD_T_STRUCT);
	assert_int_equal(f->tag, 0);
	assert_vers(f->tagged, 10, INT16_MAX);
	assert_vers(f->versions, 10, INT16_MAX);
	assert_int_equal(field(f->sub, "Port")->type, KD_T_INT32);
	assert_vers(field(f->sub, "Rack")->nullable, 10, INT16_MAX);

	/* Tag numbers are per struct: tag 0 again inside each partition. */
	part = field(field(field(def->body, "Responses")->sub, "PartitionResponses")->sub,
		     "CurrentLeader");
	assert_int_equal(part->type, KD_T_STRUCT);
	assert_int_equal(part->tag, 0);
	assert_string_equal(part->sub->name, "LeaderIdAndEpoch");
	assert_int_equal(field(def->body, "ThrottleTimeMs")->tag, -1);
	assert_vers(field(def->body, "ThrottleTimeMs")->tagged, -1, -1);

	/* Records, and the one quoted tag in the spec ("tag": "0"). */
	f = field(field(field(kd_msgdef_get(0, 3, 1)->body, "TopicData")->sub, "PartitionData")->sub,
		  "Records");
	assert_int_equal(f->type, KD_T_RECORDS);
	assert_int_equal(field(kd_api_get(63)->req.body, "OfflineLogDirs")->tag, 0);
}

static void test_find_coordinator(void **state)
{
	const struct kd_msgdef *def = kd_msgdef_get(10, 4, 0);
	const struct kd_field *f;

	f = field(def->body, "Coordinators");
	assert_int_equal(f->type, KD_T_ARRAY);
	assert_vers(f->versions, 4, INT16_MAX);
	assert_int_equal(field(f->sub, "Port")->type, KD_T_INT32);
	assert_int_equal(field(f->sub, "NodeId")->entity, KD_ENT_BROKER_ID);
	assert_vers(field(def->body, "Host")->versions, 0, 3);
	assert_vers(field(def->body, "ErrorMessage")->nullable, 1, 3);
}

static void test_nullable_struct_and_common(void **state)
{
	const struct kd_msgdef *def = kd_msgdef_get(68, 0, 0);
	const struct kd_field *f, *tp;

	assert_non_null(def);
	f = field(def->body, "Assignment");
	assert_int_equal(f->type, KD_T_STRUCT);
	assert_int_equal(f->elem, KD_T_NONE);
	assert_vers(f->nullable, 0, INT16_MAX);
	assert_string_equal(f->sub->name, "Assignment");
	/* TopicPartitions is a commonStruct of that file. */
	tp = field(f->sub, "TopicPartitions");
	assert_int_equal(tp->elem, KD_T_STRUCT);
	assert_string_equal(tp->sub->name, "TopicPartitions");
	assert_int_equal(field(tp->sub, "TopicId")->type, KD_T_UUID);

	/* DescribeQuorum ports are UINT16. */
	f = field(field(kd_msgdef_get(55, 2, 0)->body, "Nodes")->sub, "Listeners");
	assert_int_equal(field(f->sub, "Port")->type, KD_T_UINT16);
}

static void test_datadefs(void **state)
{
	const struct kd_msgdef *def;
	const struct kd_field *f;

	assert_int_equal(kd_ndatadefs, 10);
	for (unsigned i = 1; i < kd_ndatadefs; i++)
		assert_true(strcmp(kd_datadefs[i - 1].name, kd_datadefs[i].name) < 0);
	for (unsigned i = 0; i < kd_ndatadefs; i++)
		assert_ptr_equal(kd_datadef_get(kd_datadefs[i].name), &kd_datadefs[i]);

	def = kd_datadef_get("RequestHeader");
	assert_non_null(def);
	assert_vers(def->valid, 0, 2);
	assert_vers(def->flexible, 2, INT16_MAX);
	f = field(def->body, "ClientId");
	/* The one field-level flexibleVersions override (WIRE-NOTES.md §2). */
	assert_int_equal(f->has_flex, 1);
	assert_vers(f->flexible, -1, -1);
	assert_vers(f->nullable, 1, INT16_MAX);
	assert_int_equal(field(def->body, "CorrelationId")->has_flex, 0);

	def = kd_datadef_get("ResponseHeader");
	assert_vers(def->flexible, 1, INT16_MAX);
	assert_non_null(kd_datadef_get("LeaderChangeMessage"));
	assert_non_null(kd_datadef_get("ConsumerProtocolAssignment"));
	assert_non_null(kd_datadef_get("VotersRecord"));
	assert_null(kd_datadef_get("ProduceRequest"));
	assert_null(kd_datadef_get(""));
	assert_null(kd_datadef_get("Zzz"));
}

static void test_errors(void **state)
{
	assert_string_equal(kd_error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
	assert_string_equal(kd_error_name(-1), "UNKNOWN_SERVER_ERROR");
	assert_string_equal(kd_error_name(0), "NONE");
	assert_string_equal(kd_error_name(35), "UNSUPPORTED_VERSION");
	assert_string_equal(kd_error_name(128), "INVALID_REGULAR_EXPRESSION");
	assert_null(kd_error_name(129));
	assert_null(kd_error_name(-2));
	assert_null(kd_error_name(INT16_MAX));
	assert_null(kd_error_name(INT16_MIN));
	assert_int_equal(kd_nerrcodes, 129);
	for (unsigned i = 0; i < kd_nerrcodes; i++) {
		if (i > 0)
			assert_true(kd_errcodes[i - 1].code < kd_errcodes[i].code);
		assert_string_equal(kd_error_name(kd_errcodes[i].code), kd_errcodes[i].name);
	}
}

static int vers_ok(struct kd_vers v)
{
	return (v.lo == -1 && v.hi == -1) || (v.lo >= 0 && v.lo <= v.hi);
}

/* Invariants every generated struct must hold, recursively. Returns the
 * number of fields seen. */
static unsigned check_struct(const struct kd_struct *st, int depth)
{
	unsigned n = 0;

	assert_true(depth < 16);
	assert_non_null(st->name);
	assert_true((st->nfields == 0) == (st->fields == NULL));
	for (unsigned i = 0; i < st->nfields; i++) {
		const struct kd_field *f = &st->fields[i];
		int is_struct = f->type == KD_T_STRUCT || (f->type == KD_T_ARRAY && f->elem == KD_T_STRUCT);

		n++;
		assert_non_null(f->name);
		assert_true(f->type > KD_T_NONE && f->type <= KD_T_ARRAY);
		assert_true(f->entity <= KD_ENT_TRANSACTIONAL_ID);
		if (f->type == KD_T_ARRAY)
			assert_true(f->elem > KD_T_NONE && f->elem < KD_T_ARRAY);
		else
			assert_int_equal(f->elem, KD_T_NONE);
		assert_true(vers_ok(f->versions) && f->versions.lo >= 0);
		assert_true(vers_ok(f->nullable));
		assert_true(vers_ok(f->tagged));
		assert_true(vers_ok(f->flexible));
		assert_true((f->tag >= 0) == (f->tagged.lo >= 0));
		assert_true(f->has_flex || (f->flexible.lo == -1 && f->flexible.hi == -1));
		for (unsigned j = 0; j < i; j++)
			assert_string_not_equal(st->fields[j].name, f->name);
		if (is_struct) {
			assert_non_null(f->sub);
			n += check_struct(f->sub, depth + 1);
		} else {
			assert_null(f->sub);
		}
	}
	return n;
}

static void test_invariants(void **state)
{
	unsigned nfields = 0;

	for (unsigned i = 0; i < kd_napis; i++) {
		const struct kd_api *api = &kd_apis[i];

		assert_true(vers_ok(api->req.valid) && api->req.valid.lo == 0);
		assert_true(vers_ok(api->resp.valid) && api->resp.valid.lo == 0);
		assert_true(vers_ok(api->req.flexible));
		assert_true(vers_ok(api->deprecated));
		assert_true(api->listeners != 0 && api->listeners <= 7);
		nfields += check_struct(api->req.body, 0);
		nfields += check_struct(api->resp.body, 0);
	}
	for (unsigned i = 0; i < kd_ndatadefs; i++)
		nfields += check_struct(kd_datadefs[i].body, 0);
	/* 1520 field declarations in the spec; shared commonStructs are
	 * counted once per use here, so the walk sees at least that many. */
	assert_true(nfields >= 1520);
}

/* INDEX.tsv's "A-B" / "N+" / "N" / "none" (or empty = none) as kd_vers. */
static struct kd_vers parse_vers(const char *s)
{
	struct kd_vers v = { -1, -1 };
	int a, b;
	char plus;

	if (*s == '\0' || strcmp(s, "none") == 0)
		return v;
	if (sscanf(s, "%d-%d", &a, &b) == 2) {
		v.lo = (int16_t)a;
		v.hi = (int16_t)b;
	} else if (sscanf(s, "%d%c", &a, &plus) == 2 && plus == '+') {
		v.lo = (int16_t)a;
		v.hi = INT16_MAX;
	} else if (sscanf(s, "%d", &a) == 1) {
		v.lo = v.hi = (int16_t)a;
	} else {
		fail_msg("bad version string '%s' in INDEX.tsv", s);
	}
	return v;
}

static uint8_t parse_listeners(char *s)
{
	uint8_t bits = 0;

	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		if (strcmp(tok, "zkBroker") == 0)
			bits |= KD_LSN_ZKBROKER;
		else if (strcmp(tok, "broker") == 0)
			bits |= KD_LSN_BROKER;
		else if (strcmp(tok, "controller") == 0)
			bits |= KD_LSN_CONTROLLER;
		else
			fail_msg("bad listener '%s'", tok);
	}
	return bits;
}

/* Every API's versions, listeners and flags against INDEX.tsv (built by
 * the spec's own kafka_index.py, independently of our generator). */
static void test_index_tsv(void **state)
{
	const char *shared = getenv("KWIRE_SHARED");
	char path[4096], line[1024];
	unsigned rows = 0;
	FILE *f;

	if (!shared || !*shared) {
		print_message("SKIP: KWIRE_SHARED unset: INDEX.tsv cross-check (needs: ctest's "
		              "environment)\n");
		skip();
	}
	snprintf(path, sizeof(path), "%s/kafka-protocol/INDEX.tsv", shared);
	f = fopen(path, "r");
	if (!f) {
		print_message("SKIP: %s absent: INDEX.tsv cross-check (needs: ../shared)\n", path);
		skip();
	}
	assert_non_null(fgets(line, sizeof(line), f)); /* header */
	while (fgets(line, sizeof(line), f)) {
		char *col[8] = { 0 };
		char *p = line;
		const struct kd_api *api;
		unsigned n;
		struct kd_vers v;

		line[strcspn(line, "\r\n")] = '\0';
		if (!*line)
			continue;
		/* strsep keeps empty columns, which INDEX.tsv has. */
		for (n = 0; n < 8 && p; n++)
			col[n] = strsep(&p, "\t");
		assert_int_equal(n, 8);
		api = kd_api_get((int16_t)atoi(col[0]));
		assert_non_null(api);
		assert_string_equal(api->name, col[1]);
		v = parse_vers(col[2]);
		assert_vers(api->req.valid, v.lo, v.hi);
		v = parse_vers(col[3]);
		assert_vers(api->resp.valid, v.lo, v.hi);
		v = parse_vers(col[4]);
		assert_vers(api->req.flexible, v.lo, v.hi);
		assert_vers(api->resp.flexible, v.lo, v.hi);
		assert_int_equal(api->listeners, parse_listeners(col[5]));
		assert_int_equal(api->unstable_latest, strcmp(col[6], "true") == 0);
		v = parse_vers(col[7]);
		assert_vers(api->deprecated, v.lo, v.hi);
		rows++;
	}
	fclose(f);
	assert_int_equal(rows, kd_napis);
}

static const char *const type_names[] = {
	"none", "bool", "int8", "int16", "uint16", "int32", "uint32", "int64",
	"float64", "uuid", "string", "bytes", "records", "struct", "array",
};

static void dump_vers(struct kd_vers v)
{
	if (v.lo < 0)
		printf(" none");
	else if (v.hi == INT16_MAX)
		printf(" %d+", v.lo);
	else
		printf(" %d-%d", v.lo, v.hi);
}

static void dump_struct(const struct kd_struct *st, const char *prefix, int depth)
{
	char path[1024];

	assert_true(depth < 16);
	for (unsigned i = 0; i < st->nfields; i++) {
		const struct kd_field *f = &st->fields[i];

		snprintf(path, sizeof(path), "%s.%s", prefix, f->name);
		printf("%s %s %s %s %d %d", path, f->sub ? f->sub->name : "-", type_names[f->type],
		       type_names[f->elem], f->entity, (int)f->tag);
		dump_vers(f->versions);
		dump_vers(f->nullable);
		dump_vers(f->tagged);
		if (f->has_flex)
			dump_vers(f->flexible);
		else
			printf(" -");
		printf("\n");
		if (f->sub)
			dump_struct(f->sub, path, depth + 1);
	}
}

static void dump_msgdef(const struct kd_msgdef *def)
{
	printf("msg %s", def->name);
	dump_vers(def->valid);
	dump_vers(def->flexible);
	printf("\n");
	dump_struct(def->body, def->name, 0);
}

/* `test_schema --dump`: every table as canonical text, one line per API,
 * message and field (with its path), for tests/integration/test_regen.sh
 * to compare with an independent walk of the JSON schemas. */
static void dump_tables(void)
{
	for (unsigned i = 0; i < kd_napis; i++) {
		const struct kd_api *api = &kd_apis[i];

		printf("api %d %s %d %d", api->key, api->name, api->listeners, api->unstable_latest);
		dump_vers(api->deprecated);
		printf("\n");
		dump_msgdef(&api->req);
		dump_msgdef(&api->resp);
	}
	for (unsigned i = 0; i < kd_ndatadefs; i++)
		dump_msgdef(&kd_datadefs[i]);
	for (unsigned i = 0; i < kd_nerrcodes; i++)
		printf("err %d %s\n", kd_errcodes[i].code, kd_errcodes[i].name);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_api_keys),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_metadata_brokers),
		cmocka_unit_test(test_produce_tagged),
		cmocka_unit_test(test_find_coordinator),
		cmocka_unit_test(test_nullable_struct_and_common),
		cmocka_unit_test(test_datadefs),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_invariants),
		cmocka_unit_test(test_index_tsv),
	};

	if (argc > 1 && strcmp(argv[1], "--dump") == 0) {
		dump_tables();
		return 0;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
