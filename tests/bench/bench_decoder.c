/* bench_decoder.c: decoder throughput. Prints figures, asserts nothing.
 *
 *   1. stream decoding of a large synthetic conversation (Produce v9
 *      requests, responses), header-only and with bodies, fed in 64 KiB
 *      and 1448-byte (one TCP segment) chunks;
 *   2. full Produce decoding down to every record: the stream, the generic
 *      body walk (kd_tree_decode) to find Records, and the record-batch
 *      iterator, uncompressed and per codec;
 *   3. the generic walk of a Metadata v12 response with 50 brokers and 200
 *      topics of 12 partitions.
 *
 * Usage: bench_decoder [seconds per figure, default 0.5] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kd-arena.h"
#include "kd-records.h"
#include "kd-stream.h"
#include "kd-tree.h"

static double min_secs = 0.5;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void row(const char *what, double frames, double bytes, double secs, const char *note)
{
	printf("| %-44s | %12.0f | %10.1f | %8.2f | %s\n", what, frames / secs, bytes / secs / 1e6,
	       bytes / secs / 1e9, note ? note : "");
}

static void header(const char *title, const char *unit)
{
	printf("\n%s\n", title);
	printf("| %-44s | %12s | %10s | %8s |\n", "case", unit, "MB/s", "GB/s");
	printf("|%.46s|%.14s|%.12s|%.10s|\n", "----------------------------------------------",
	       "--------------", "------------", "----------");
}

/* ---- frames ---- */

static void put_size(struct kd_wbuf *w, size_t start)
{
	uint32_t n = (uint32_t)(w->len - start - 4);

	w->p[start] = (uint8_t)(n >> 24);
	w->p[start + 1] = (uint8_t)(n >> 16);
	w->p[start + 2] = (uint8_t)(n >> 8);
	w->p[start + 3] = (uint8_t)n;
}

static void cstr(struct kd_wbuf *w, const char *s)
{
	struct kd_view v = {(const uint8_t *)s, (uint32_t)strlen(s), 0};

	kd_w_blob(w, 1, 2, &v);
}

/* A Produce v9 request frame: one topic, one partition, records blob. */
static void produce_frame(struct kd_wbuf *w, int32_t cid, const uint8_t *recs, size_t nrecs)
{
	size_t start = w->len;
	struct kd_req_hdr h;
	struct kd_view r = {recs, (uint32_t)nrecs, 0};

	kd_w_i32(w, 0);
	kd_req_hdr_init(&h, 0, 9, cid, "bench-producer");
	kd_req_hdr_write(w, &h);
	kd_w_uvarint(w, 0); /* TransactionalId: null */
	kd_w_i16(w, 1);     /* Acks */
	kd_w_i32(w, 30000); /* TimeoutMs */
	kd_w_uvarint(w, 2); /* TopicData: 1 */
	cstr(w, "bench-topic");
	kd_w_uvarint(w, 2); /* PartitionData: 1 */
	kd_w_i32(w, 0);
	kd_w_blob(w, 1, 4, &r);
	kd_w_uvarint(w, 0); /* partition tags */
	kd_w_uvarint(w, 0); /* topic tags */
	kd_w_uvarint(w, 0); /* body tags */
	put_size(w, start);
}

/* A Produce v9 response frame (header v1). */
static void produce_resp_frame(struct kd_wbuf *w, int32_t cid)
{
	size_t start = w->len;

	kd_w_i32(w, 0);
	kd_w_i32(w, cid);
	kd_w_uvarint(w, 0);
	kd_w_uvarint(w, 2);
	cstr(w, "bench-topic");
	kd_w_uvarint(w, 2);
	kd_w_i32(w, 0);     /* Index */
	kd_w_i16(w, 0);     /* ErrorCode */
	kd_w_i64(w, 1000);  /* BaseOffset */
	kd_w_i64(w, -1);    /* LogAppendTimeMs */
	kd_w_i64(w, 0);     /* LogStartOffset */
	kd_w_uvarint(w, 1); /* RecordErrors: empty */
	kd_w_uvarint(w, 0); /* ErrorMessage: null */
	kd_w_uvarint(w, 0);
	kd_w_uvarint(w, 0);
	kd_w_i32(w, 0); /* ThrottleTimeMs */
	kd_w_uvarint(w, 0);
	put_size(w, start);
}

/* One batch of n records of vlen-byte values, with the given codec. */
static int make_batch(struct kd_wbuf *w, int codec, uint32_t n, size_t vlen)
{
	struct kd_batch_spec spec = {0};
	struct kd_wrecord *recs = calloc(n, sizeof(*recs));
	uint8_t *vals = malloc(n * vlen);
	char(*keys)[16] = malloc(n * sizeof(*keys));
	int rc;

	spec.magic = 2;
	spec.codec = (uint8_t)codec;
	spec.producer_id = -1;
	spec.producer_epoch = -1;
	spec.base_sequence = -1;
	for (uint32_t i = 0; i < n; i++) {
		/* Loosely compressible values: JSON-ish text with a counter. */
		for (size_t j = 0; j < vlen; j++)
			vals[i * vlen + j] =
			    (uint8_t)("{\"user\":\"abcdef\",\"n\":"[j % 22] + (j / 22 == i % 7));
		snprintf(keys[i], sizeof(keys[i]), "key-%u", i);
		recs[i].timestamp = 1700000000000 + i;
		recs[i].key.p = (const uint8_t *)keys[i];
		recs[i].key.len = (uint32_t)strlen(keys[i]);
		recs[i].value.p = vals + i * vlen;
		recs[i].value.len = (uint32_t)vlen;
	}
	rc = kd_batch_write(w, &spec, recs, n);
	free(recs);
	free(vals);
	free(keys);
	return rc;
}

/* ---- 1. stream decoding ---- */

struct count {
	uint64_t frames;
	uint64_t records;
	uint64_t rec_bytes;
	int errors;
	struct kd_arena arena;
	struct kd_rec_iter it;
	int full;
};

static void count_event(void *arg, const struct kd_event *ev)
{
	struct count *c = arg;

	c->frames++;
	if (ev->type == KD_EV_ERROR)
		c->errors++;
}

/* The conversation: rounds of 64 pipelined requests then their responses,
 * so the FIFO stays short. Returns one buffer per direction and the
 * split of each into rounds. */
struct conv {
	struct kd_wbuf dir[2];
	size_t *round_end[2];
	int rounds;
	uint64_t frames;
};

static void build_conv(struct conv *cv, int rounds, const uint8_t *recs, size_t nrecs)
{
	int32_t cid = 0;

	memset(cv, 0, sizeof(*cv));
	cv->rounds = rounds;
	cv->round_end[0] = calloc((size_t)rounds, sizeof(size_t));
	cv->round_end[1] = calloc((size_t)rounds, sizeof(size_t));
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < 64; i++) {
			produce_frame(&cv->dir[0], cid + i, recs, nrecs);
			produce_resp_frame(&cv->dir[1], cid + i);
		}
		cid += 64;
		cv->frames += 128;
		cv->round_end[0][r] = cv->dir[0].len;
		cv->round_end[1][r] = cv->dir[1].len;
	}
}

static void free_conv(struct conv *cv)
{
	kd_wbuf_free(&cv->dir[0]);
	kd_wbuf_free(&cv->dir[1]);
	free(cv->round_end[0]);
	free(cv->round_end[1]);
}

static void feed_range(struct kd_stream *s, int dir, const uint8_t *p, size_t len, size_t chunk)
{
	for (size_t off = 0; off < len; off += chunk)
		kd_stream_feed(s, (enum kd_dir)dir, p + off, len - off < chunk ? len - off : chunk,
		               1);
}

static void bench_stream(const struct conv *cv, int collect, size_t chunk, const char *name)
{
	struct kd_stream_cfg cfg = {0};
	struct count c = {0};
	struct kd_stream *s;
	double t0, secs;
	uint64_t frames = 0, bytes = 0;
	char note[96];

	cfg.collect_bodies = (uint8_t)collect;
	cfg.on_event = count_event;
	cfg.arg = &c;
	s = kd_stream_new(&cfg);
	t0 = now();
	do {
		size_t prev[2] = {0, 0};

		for (int r = 0; r < cv->rounds; r++) {
			for (int d = 0; d < 2; d++) {
				feed_range(s, d, cv->dir[d].p + prev[d],
				           cv->round_end[d][r] - prev[d], chunk);
				prev[d] = cv->round_end[d][r];
			}
		}
		frames += cv->frames;
		bytes += cv->dir[0].len + cv->dir[1].len;
		secs = now() - t0;
	} while (secs < min_secs);
	snprintf(note, sizeof(note), "errors %d, buffered %.1f%% of bytes", c.errors,
	         100.0 * (double)kd_stream_stats(s)->buffered / (double)bytes);
	row(name, (double)frames, (double)bytes, secs, note);
	kd_stream_free(s);
}

/* ---- 2. full Produce decoding ---- */

static int find_records(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	struct count *c = arg;
	struct kd_batch *b;
	struct kd_record rec;
	int rc;

	(void)wc;
	if (n->type != KD_T_RECORDS || n->null)
		return 0;
	kd_rec_iter_reset(&c->it, n->val.v.p, n->val.v.len);
	while ((rc = kd_rec_next_batch(&c->it, &b)) != 0) {
		if (rc < 0) {
			c->errors++;
			continue;
		}
		if (rc == KD_REC_TRUNCATED)
			break;
		while ((rc = kd_rec_next_record(&c->it, &rec)) == 1) {
			c->records++;
			c->rec_bytes += rec.value.len + rec.key.len;
		}
		if (rc < 0)
			c->errors++;
	}
	return KD_WALK_SKIP;
}

static void full_event(void *arg, const struct kd_event *ev)
{
	struct count *c = arg;
	struct kd_tree t;

	c->frames++;
	if (ev->type != KD_EV_REQUEST || !(ev->flags & KD_EVF_BODY))
		return;
	memset(&t, 0, sizeof(t));
	if (kd_tree_decode(&t, &c->arena, ev->req_hdr.api_key, ev->req_hdr.api_version, 1,
	                   ev->body.p, ev->body.len) != KD_OK) {
		c->errors++;
		return;
	}
	kd_tree_walk(&t, find_records, c);
	kd_arena_reset(&c->arena);
}

static int want_requests(void *arg, const struct kd_frame_info *fi)
{
	(void)arg;
	return fi->kind == KD_EV_REQUEST;
}

static void bench_produce(int codec, uint32_t nrec, size_t vlen)
{
	struct kd_wbuf batch = {0}, wire = {0};
	struct kd_stream_cfg cfg = {0};
	struct count c = {0};
	struct kd_stream *s;
	double t0, secs;
	uint64_t bytes = 0, frames = 0, records = 0, rec_bytes = 0;
	char name[64], note[128];
	int rc = make_batch(&batch, codec, nrec, vlen);

	snprintf(name, sizeof(name), "Produce v9, %u x %zu B records, %s", nrec, vlen,
	         kd_codec_name(codec));
	if (rc != KD_OK) {
		printf("| %-44s | (codec not built in: %d)\n", name, rc);
		kd_wbuf_free(&batch);
		return;
	}
	for (int i = 0; i < 16; i++)
		produce_frame(&wire, i, batch.p, batch.len);
	cfg.collect_bodies = 1;
	cfg.want_body = want_requests;
	cfg.on_event = full_event;
	cfg.arg = &c;
	kd_rec_iter_init(&c.it, NULL, 0, NULL);
	s = kd_stream_new(&cfg);
	t0 = now();
	do {
		kd_stream_feed(s, KD_C2S, wire.p, wire.len, 1);
		kd_stream_reset(s); /* no responses: keep the FIFO empty */
		frames += 16;
		bytes += wire.len;
		secs = now() - t0;
	} while (secs < min_secs);
	records = c.records;
	rec_bytes = c.rec_bytes;
	snprintf(note, sizeof(note),
	         "%.2f M records/s, %.0f MB/s of keys+values, batch %zu B, errors %d",
	         (double)records / secs / 1e6, (double)rec_bytes / secs / 1e6, batch.len, c.errors);
	row(name, (double)frames, (double)bytes, secs, note);
	kd_stream_free(s);
	kd_rec_iter_free(&c.it);
	kd_arena_free(&c.arena);
	kd_wbuf_free(&batch);
	kd_wbuf_free(&wire);
}

/* ---- 3. Metadata v12 response walk ---- */

static void metadata_body(struct kd_wbuf *w, int nbrokers, int ntopics, int nparts)
{
	char host[64], name[64];

	kd_w_i32(w, 0); /* ThrottleTimeMs */
	kd_w_uvarint(w, (uint32_t)nbrokers + 1);
	for (int b = 0; b < nbrokers; b++) {
		kd_w_i32(w, b);
		snprintf(host, sizeof(host), "broker-%d.kafka.eu-west-1.internal.example.com", b);
		cstr(w, host);
		kd_w_i32(w, 9092);
		snprintf(host, sizeof(host), "eu-west-1%c", 'a' + b % 3);
		cstr(w, host);
		kd_w_uvarint(w, 0);
	}
	cstr(w, "Qx8RmNwXTy2cKvR1bA9sZg"); /* ClusterId */
	kd_w_i32(w, 1);                    /* ControllerId */
	kd_w_uvarint(w, (uint32_t)ntopics + 1);
	for (int t = 0; t < ntopics; t++) {
		uint8_t uuid[16];

		kd_w_i16(w, 0);
		snprintf(name, sizeof(name), "orders.events.v2.partition-group-%03d", t);
		cstr(w, name);
		for (int i = 0; i < 16; i++)
			uuid[i] = (uint8_t)(t * 31 + i);
		kd_w_raw(w, uuid, 16);
		kd_w_i8(w, 0); /* IsInternal */
		kd_w_uvarint(w, (uint32_t)nparts + 1);
		for (int p = 0; p < nparts; p++) {
			kd_w_i16(w, 0);
			kd_w_i32(w, p);
			kd_w_i32(w, (t + p) % nbrokers);
			kd_w_i32(w, 5);
			for (int arr = 0; arr < 2; arr++) { /* ReplicaNodes, IsrNodes */
				kd_w_uvarint(w, 4);
				for (int r = 0; r < 3; r++)
					kd_w_i32(w, (t + p + r) % nbrokers);
			}
			kd_w_uvarint(w, 1); /* OfflineReplicas: empty */
			kd_w_uvarint(w, 0);
		}
		kd_w_i32(w, -2147483648); /* TopicAuthorizedOperations */
		kd_w_uvarint(w, 0);
	}
	kd_w_uvarint(w, 0);
}

static int count_node(void *arg, struct kd_node *n, const struct kd_walk_ctx *wc)
{
	(void)n;
	(void)wc;
	(*(uint64_t *)arg)++;
	return 0;
}

static void bench_metadata(void)
{
	struct kd_wbuf body = {0};
	struct kd_arena arena = {0};
	struct kd_tree t;
	double t0, secs;
	uint64_t n = 0, bytes = 0, nodes = 0;
	int rc = KD_OK;
	char note[256];

	metadata_body(&body, 50, 200, 12);
	t0 = now();
	do {
		memset(&t, 0, sizeof(t));
		rc = kd_tree_decode(&t, &arena, 3, 12, 0, body.p, body.len);
		kd_arena_reset(&arena);
		n++;
		bytes += body.len;
		secs = now() - t0;
	} while (secs < min_secs && rc == KD_OK);
	memset(&t, 0, sizeof(t));
	kd_tree_decode(&t, &arena, 3, 12, 0, body.p, body.len);
	kd_tree_walk(&t, count_node, &nodes);
	snprintf(note, sizeof(note), "body %zu B, %llu nodes, status %d%s%.100s", body.len,
	         (unsigned long long)nodes, rc, rc ? ": " : "", rc ? t.err_msg : "");
	row("Metadata v12, 50 brokers, 200 topics x 12", (double)n, (double)bytes, secs, note);
	kd_arena_free(&arena);
	kd_wbuf_free(&body);
}

int main(int argc, char **argv)
{
	struct kd_wbuf recs = {0};
	struct conv cv;

	if (argc > 1)
		min_secs = atof(argv[1]);
	printf("kwire decoder benchmark (%.1f s per figure)\n", min_secs);

	make_batch(&recs, 0, 10, 1000); /* ~10 KiB Produce requests */
	build_conv(&cv, 64, recs.p, recs.len);
	printf("\nconversation: %llu frames, %.1f MB (requests %zu B each)\n",
	       (unsigned long long)cv.frames, (double)(cv.dir[0].len + cv.dir[1].len) / 1e6,
	       cv.dir[0].len / (cv.frames / 2));
	header("1. stream decoding (kd_stream_feed)", "frames/s");
	bench_stream(&cv, 0, 65536, "header-only, 64 KiB chunks");
	bench_stream(&cv, 0, 1448, "header-only, 1448 B chunks");
	bench_stream(&cv, 1, 65536, "with bodies, 64 KiB chunks");
	bench_stream(&cv, 1, 1448, "with bodies, 1448 B chunks");
	free_conv(&cv);
	kd_wbuf_free(&recs);

	header("2. full Produce decoding (stream + tree + records)", "frames/s");
	for (int codec = 0; codec <= 4; codec++)
		bench_produce(codec, 500, 200);
	bench_produce(0, 50, 2000);

	header("3. generic walk (kd_tree_decode)", "decodes/s");
	bench_metadata();
	return 0;
}
