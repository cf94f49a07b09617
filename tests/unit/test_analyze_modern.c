/* test_analyze_modern.c: `kwire decode` on a capture of modern traffic as
 * librdkafka 2.12's mock cluster speaks it: a Metadata v12 response with
 * one byte after its body (the mock writes the top-level tag section
 * twice) that names topic "clicks", then Fetch v16 exchanges that name
 * topics by id only, one for "clicks" and one for an id no response ever
 * names. Frames are built with the tree's edit API, the capture with
 * cap_test_pkt.h, and the built kwire is run on it in every format.
 *
 * What must hold: the trailing byte is a decode warning, reported once and
 * the same way in every format, never a problem; the Fetch topic is shown
 * and counted by name everywhere (summary, json, records, stats, --topic);
 * the unnamed id is shown as "topic-id:<uuid>". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cap_test_pkt.h"
#include "kd-arena.h"
#include "kd-cur.h"
#include "kd-records.h"
#include "kd-topics.h"
#include "kd-tree.h"

#define I32(x) (uint8_t)((x) >> 24), (uint8_t)((x) >> 16), (uint8_t)((x) >> 8), (uint8_t)(x)

static const uint8_t id_clicks[16] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                      0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0, 0x01};
static const uint8_t id_unnamed[16] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
                                       0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf};

static struct kd_arena arena;

/* A body: min decoded, then edited by fn, encoded into out. */
static void body_build(struct kd_wbuf *out, int16_t key, int16_t v, int req, const uint8_t *min,
                       size_t minlen, void (*fn)(struct kd_tree *t, const void *arg),
                       const void *arg)
{
	struct kd_tree t;
	assert_int_equal(kd_tree_decode(&t, &arena, key, v, req, min, minlen), KD_OK);
	fn(&t, arg);
	assert_int_equal(kd_tree_encode(&t, out), KD_OK);
}

static void md_resp(struct kd_tree *t, const void *arg)
{
	(void)arg;
	struct kd_node *b = kd_node_array_add(t, kd_node_child(t->root, "Brokers"), UINT32_MAX);
	assert_int_equal(kd_node_set_int(kd_node_child(b, "NodeId"), 1), KD_OK);
	assert_int_equal(kd_node_set_str(t, kd_node_child(b, "Host"), "127.0.0.1", 9), KD_OK);
	assert_int_equal(kd_node_set_int(kd_node_child(b, "Port"), 9092), KD_OK);
	struct kd_node *tp = kd_node_array_add(t, kd_node_child(t->root, "Topics"), UINT32_MAX);
	assert_int_equal(kd_node_set_str(t, kd_node_child(tp, "Name"), "clicks", 6), KD_OK);
	assert_int_equal(kd_node_set_uuid(kd_node_child(tp, "TopicId"), id_clicks), KD_OK);
	struct kd_node *p = kd_node_array_add(t, kd_node_child(tp, "Partitions"), UINT32_MAX);
	assert_int_equal(kd_node_set_int(kd_node_child(p, "LeaderId"), 1), KD_OK);
}

static void fetch_req(struct kd_tree *t, const void *arg)
{
	struct kd_node *tp = kd_node_array_add(t, kd_node_child(t->root, "Topics"), UINT32_MAX);
	assert_int_equal(kd_node_set_uuid(kd_node_child(tp, "TopicId"), arg), KD_OK);
	struct kd_node *p = kd_node_array_add(t, kd_node_child(tp, "Partitions"), UINT32_MAX);
	assert_non_null(p);
}

struct fetch_arg {
	const uint8_t *id;
	uint32_t nrec;
};

static void fetch_resp(struct kd_tree *t, const void *arg)
{
	const struct fetch_arg *fa = arg;
	struct kd_node *tp = kd_node_array_add(t, kd_node_child(t->root, "Responses"), UINT32_MAX);
	assert_int_equal(kd_node_set_uuid(kd_node_child(tp, "TopicId"), fa->id), KD_OK);
	struct kd_node *p = kd_node_array_add(t, kd_node_child(tp, "Partitions"), UINT32_MAX);
	assert_int_equal(kd_node_set_int(kd_node_child(p, "HighWatermark"), fa->nrec), KD_OK);
	struct kd_wrecord recs[8];
	struct kd_wbuf data = {0};
	memset(recs, 0, sizeof(recs));
	for (uint32_t i = 0; i < fa->nrec; i++) {
		recs[i].timestamp = 1700000000000 + i;
		recs[i].key = (struct kd_view){NULL, 0, 1};
		recs[i].value = (struct kd_view){(const uint8_t *)"value", 5, 0};
	}
	struct kd_batch_spec spec = {
	    .magic = 2, .producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
	assert_int_equal(kd_batch_write(&data, &spec, recs, fa->nrec), KD_OK);
	assert_int_equal(kd_node_set_str(t, kd_node_child(p, "Records"), data.p, data.len), KD_OK);
	kd_wbuf_free(&data);
}

/* A frame: size, header, body (+ extra bytes). */
static void req_frame(struct kd_wbuf *f, int16_t key, int16_t v, int32_t corr,
                      const struct kd_wbuf *body)
{
	uint8_t hdr[] = {0,
	                 0,
	                 0,
	                 0,
	                 (uint8_t)(key >> 8),
	                 (uint8_t)key,
	                 (uint8_t)(v >> 8),
	                 (uint8_t)v,
	                 I32(corr),
	                 0,
	                 6,
	                 'm',
	                 'o',
	                 'd',
	                 'e',
	                 'r',
	                 'n',
	                 0};
	tp_put32(hdr, (uint32_t)(sizeof(hdr) - 4 + body->len));
	f->len = 0;
	kd_w_raw(f, hdr, sizeof(hdr));
	kd_w_raw(f, body->p, body->len);
}

static void resp_frame(struct kd_wbuf *f, int32_t corr, const struct kd_wbuf *body, size_t extra)
{
	uint8_t hdr[] = {0, 0, 0, 0, I32(corr), 0};
	tp_put32(hdr, (uint32_t)(sizeof(hdr) - 4 + body->len + extra));
	f->len = 0;
	kd_w_raw(f, hdr, sizeof(hdr));
	kd_w_raw(f, body->p, body->len);
	static const uint8_t zeros[8];
	kd_w_raw(f, zeros, extra);
}

/* ---- the capture ---- */

struct conv {
	struct tp_pcap pc;
	uint32_t seq[2];
	int64_t ts;
};

static void seg(struct conv *c, int dir, uint8_t flags, const uint8_t *pl, size_t len)
{
	static uint8_t tcp[70000], ip[70000], frame[70000];
	size_t tl = tp_tcp(tcp, dir ? 9092 : 40000, dir ? 40000 : 9092, c->seq[dir],
	                   c->seq[1 - dir], flags, pl, len, 0);
	size_t il = tp_ip4(ip, dir ? "10.0.0.2" : "10.0.0.1", dir ? "10.0.0.1" : "10.0.0.2", 6, 1,
	                   0, tcp, tl, 0);
	size_t fl = tp_link(frame, 1, 4, ip, il, 0, 0, 0);
	tp_pcap_rec(&c->pc, c->ts += 1000, frame, (uint32_t)fl, (uint32_t)fl);
	c->seq[dir] += (uint32_t)len + ((flags & 0x03) ? 1 : 0);
}

static char *capture(void)
{
	static const uint8_t md_req_body[] = {0x00, 0x01, 0x00, 0x00}; /* all topics */
	static const uint8_t md_min[] = {I32(0), 0x01, 0x00, I32(1), 0x01, 0x00};
	static const uint8_t fetch_req_min[] = {I32(500), I32(1), I32(1048576), 0,    I32(0),
	                                        I32(-1),  0x01,   0x01,         0x01, 0x00};
	static const uint8_t fetch_resp_min[] = {I32(0), 0, 0, I32(0), 0x01, 0x00};
	struct conv c = {.seq = {1000, 5000}, .ts = 1700000000000000};
	struct kd_wbuf b = {0}, f = {0};
	tp_pcap_begin(&c.pc, 1, 0, 262144);
	seg(&c, 0, 0x02, NULL, 0); /* SYN */
	seg(&c, 1, 0x12, NULL, 0); /* SYN-ACK */
	seg(&c, 0, 0x10, NULL, 0); /* ACK */

	kd_w_raw(&b, md_req_body, sizeof(md_req_body));
	req_frame(&f, 3, 12, 1, &b);
	seg(&c, 0, 0x18, f.p, f.len);
	b.len = 0;
	body_build(&b, 3, 12, 0, md_min, sizeof(md_min), md_resp, NULL);
	resp_frame(&f, 1, &b, 1); /* the 2.12 mock's extra byte */
	seg(&c, 1, 0x18, f.p, f.len);

	const uint8_t *ids[2] = {id_clicks, id_unnamed};
	for (int k = 0; k < 2; k++) {
		b.len = 0;
		body_build(&b, 1, 16, 1, fetch_req_min, sizeof(fetch_req_min), fetch_req, ids[k]);
		req_frame(&f, 1, 16, 2 + k, &b);
		seg(&c, 0, 0x18, f.p, f.len);
		b.len = 0;
		struct fetch_arg fa = {ids[k], k ? 2 : 3};
		body_build(&b, 1, 16, 0, fetch_resp_min, sizeof(fetch_resp_min), fetch_resp, &fa);
		resp_frame(&f, 2 + k, &b, 0);
		seg(&c, 1, 0x18, f.p, f.len);
	}
	/* a Metadata response cut inside its body: a decode problem */
	b.len = 0;
	kd_w_raw(&b, md_req_body, sizeof(md_req_body));
	req_frame(&f, 3, 12, 4, &b);
	seg(&c, 0, 0x18, f.p, f.len);
	b.len = 0;
	kd_w_raw(&b, md_min, sizeof(md_min) - 2);
	resp_frame(&f, 4, &b, 0);
	seg(&c, 1, 0x18, f.p, f.len);
	seg(&c, 0, 0x11, NULL, 0); /* FIN */
	seg(&c, 1, 0x11, NULL, 0);
	seg(&c, 0, 0x10, NULL, 0);
	char *path = tp_tmpfile(c.pc.p, c.pc.len, ".pcap");
	assert_non_null(path);
	tp_pcap_free(&c.pc);
	kd_wbuf_free(&b);
	kd_wbuf_free(&f);
	kd_arena_free(&arena);
	return path;
}

/* ---- running kwire ---- */

static char out[1 << 20], err[1 << 16];

static void slurp(const char *path, char *buf, size_t cap)
{
	FILE *fp = fopen(path, "rb");
	size_t n = fp ? fread(buf, 1, cap - 1, fp) : 0;
	buf[n] = 0;
	if (fp)
		fclose(fp);
	remove(path);
}

static void run(const char *pcap, const char *args)
{
	const char *bin = getenv("KWIRE_BIN");
	if (!bin)
		bin = "build/kwire";
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "%s decode %s %s >%s.out 2>%s.err", bin, args, pcap, pcap, pcap);
	int rc = system(cmd);
	char p[600];
	snprintf(p, sizeof(p), "%s.out", pcap);
	slurp(p, out, sizeof(out));
	snprintf(p, sizeof(p), "%s.err", pcap);
	slurp(p, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s: exit %d: %s", cmd, rc, err);
	if (strstr(err, "Sanitizer") || strstr(err, "runtime error"))
		fail_msg("%s: %s", cmd, err);
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static char unnamed[KD_TOPIC_ID_TEXT];

static void expect(const char *what, const char *needle)
{
	if (!strstr(out, needle))
		fail_msg("%s: no '%s' in:\n%s\nstderr:\n%s", what, needle, out, err);
}

/* The warning and the problem are each reported and counted once, the
 * same in every format (json and verbose used to report a body's problem
 * twice); the warning never as a problem. */
static void one_each(const char *what)
{
	if (!strstr(err, "kwire decode: 1 decode warning(s) reported") ||
	    !strstr(err, "kwire decode: 1 decode problem(s) reported"))
		fail_msg("%s: stderr: %s", what, err);
}

static void test_formats(void **state)
{
	(void)state;
	char *pcap = capture();
	kd_topic_id_text(id_unnamed, unnamed);
	char want[128];

	run(pcap, "-f summary");
	expect("summary", "Fetch v16 #2 clicks[0]:3rec/");
	snprintf(want, sizeof(want), "Fetch v16 #3 %s[0]:2rec/", unnamed);
	expect("summary", want);
	expect("summary", "Metadata v12 #1 clicks[0] [response: 1 trailing byte]");
	expect("summary", "! warning: 10.0.0.1:40000 -> 10.0.0.2:9092: Metadata v12 response #1: "
	                  "body: 1 trailing bytes (ignored)");
	assert_int_equal((out[0] == '!') + count(out, "\n!"), 2);
	expect("summary", "! 10.0.0.1:40000 -> 10.0.0.2:9092: Metadata v12 response #4: body: ");
	expect("summary", "Metadata v12 #4 [bad response: ");
	one_each("summary");

	run(pcap, "-f json");
	expect("json", "\"warnings\":[\"1 trailing bytes after the body\"]");
	assert_int_equal(count(out, "\"warnings\""), 1);
	expect("json", "\"TopicId\":\"ESIzRFVmd4iZqrvM3e7wAQ\"");
	/* the bodies carry ids; the message says which names they stand for */
	assert_int_equal(count(out, "\"topic_names\":{\"ESIzRFVmd4iZqrvM3e7wAQ\":\"clicks\"}"), 4);
	assert_int_equal(count(out, "\"topic_names\":{\"oKGio6SlpqeoqaqrrK2urw\":null}"), 2);
	one_each("json");

	run(pcap, "-f verbose");
	expect("verbose", "  warning: 1 trailing bytes after the body\n");
	assert_int_equal(count(out, "  topic names: ESIzRFVmd4iZqrvM3e7wAQ=\"clicks\"\n"), 4);
	assert_int_equal(count(out, "  topic names: oKGio6SlpqeoqaqrrK2urw=?\n"), 2);
	one_each("verbose");

	run(pcap, "-f records");
	assert_int_equal(count(out, "\"source\":\"fetch\""), 5);
	assert_int_equal(count(out, "\"topic\":\"clicks\",\"topic_id\":\"ESIzRFVmd4iZqrvM3e7wAQ\""),
	                 3);
	assert_int_equal(count(out, "\"topic\":null,\"topic_id\":\"oKGio6SlpqeoqaqrrK2urw\""), 2);
	one_each("records");

	run(pcap, "-f records --topic clicks");
	assert_int_equal(count(out, "\"source\":\"fetch\""), 3);
	snprintf(want, sizeof(want), "-f records --topic '%s'", unnamed);
	run(pcap, want);
	assert_int_equal(count(out, "\"source\":\"fetch\""), 2);

	run(pcap, "-f stats");
	expect("stats", "records in Produce requests 0, in Fetch responses 5");
	expect("stats", "decode problems 1, decode warnings 1\n");
	expect("stats", "  warning: Metadata v12 response #1: body: 1 trailing bytes (ignored)");
	run(pcap, "-f stats --json");
	expect("stats json",
	       "\"clicks\":{\"touched\":2,\"produced_records\":0,\"produced_bytes\":0,"
	       "\"fetched_records\":3,");
	snprintf(want, sizeof(want), "\"%s\":{\"touched\":1,", unnamed);
	expect("stats json", want);
	expect("stats json", "\"problems\":{\"count\":1,");
	expect("stats json", "\"warnings\":{\"count\":1,");

	/* --topic matches the name, or the marked id */
	run(pcap, "--topic clicks");
	expect("--topic", "Fetch v16 #2 clicks");
	assert_null(strstr(out, "Fetch v16 #3"));
	run(pcap, "--topic topic-id:*");
	expect("--topic id", "Fetch v16 #3 topic-id:");
	assert_null(strstr(out, "Fetch v16 #2"));

	remove(pcap);
	free(pcap);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_formats),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
