/* test_stream.c: the stream decoder (kd-stream.h): framing in any split,
 * pairing, Produce Acks=0, SASL v0 opaque tokens, header-only buffering,
 * garbage, gaps and resync, mid-connection start, FIFO overflow, and the
 * begin/commit interface. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kd-stream.h"

/* ---- frame builders (through the kd-hdr writers) ---- */

struct frame {
	uint8_t *p;
	size_t len;
};

static struct frame finish(struct kd_wbuf *w)
{
	struct frame f;
	uint32_t n = (uint32_t)(w->len - 4);

	assert_int_equal(w->err, KD_OK);
	w->p[0] = (uint8_t)(n >> 24);
	w->p[1] = (uint8_t)(n >> 16);
	w->p[2] = (uint8_t)(n >> 8);
	w->p[3] = (uint8_t)n;
	f.p = w->p;
	f.len = w->len;
	return f;
}

static struct frame req(int16_t key, int16_t ver, int32_t cid, const char *client,
                        const uint8_t *body, size_t blen)
{
	struct kd_wbuf w = {0};
	struct kd_req_hdr h;

	kd_req_hdr_init(&h, key, ver, cid, client);
	kd_w_i32(&w, 0);
	kd_req_hdr_write(&w, &h);
	kd_w_raw(&w, body, blen);
	return finish(&w);
}

static struct frame resp(int32_t cid, int hv, const uint8_t *body, size_t blen)
{
	struct kd_wbuf w = {0};
	struct kd_resp_hdr h = {0};

	h.correlation_id = cid;
	h.hdr_version = (uint8_t)hv;
	kd_w_i32(&w, 0);
	kd_resp_hdr_write(&w, &h);
	kd_w_raw(&w, body, blen);
	return finish(&w);
}

static struct frame raw(const uint8_t *body, size_t blen)
{
	struct kd_wbuf w = {0};

	kd_w_i32(&w, 0);
	kd_w_raw(&w, body, blen);
	return finish(&w);
}

/* A Produce body: v0-2 Acks first; v3+ TransactionalId first (compact in
 * v9+), then Acks, TimeoutMs and filler standing for the topic data. */
static struct frame produce(int16_t ver, int32_t cid, const char *txn, int16_t acks, size_t filler)
{
	struct kd_wbuf w = {0};
	struct frame f;

	if (ver >= 3) {
		struct kd_view v = {0};

		if (txn) {
			v.p = (const uint8_t *)txn;
			v.len = (uint32_t)strlen(txn);
		} else {
			v.null = 1;
		}
		kd_w_blob(&w, ver >= 9, 2, &v);
	}
	kd_w_i16(&w, acks);
	kd_w_i32(&w, 30000);
	for (size_t i = 0; i < filler; i++)
		kd_w_i8(&w, (int8_t)(i * 7));
	f = req(0, ver, cid, "kw-client", w.p, w.len);
	kd_wbuf_free(&w);
	return f;
}

/* ---- scripts: a conversation as (direction, frame) steps ---- */

#define MAX_STEPS 128

struct step {
	int dir;
	struct frame f;
	uint64_t ts;
};

struct script {
	struct step st[MAX_STEPS];
	int n;
};

static void add(struct script *sc, int dir, struct frame f)
{
	assert_true(sc->n < MAX_STEPS);
	sc->st[sc->n].dir = dir;
	sc->st[sc->n].f = f;
	sc->st[sc->n].ts = 1000u * (uint64_t)(sc->n + 1);
	sc->n++;
}

static void script_free(struct script *sc)
{
	for (int i = 0; i < sc->n; i++)
		free(sc->st[i].f.p);
	sc->n = 0;
}

static const uint8_t filler[64] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* The conversation of the task: ApiVersions v3 (header-v0 response), SASL
 * handshake v0 then opaque tokens, pipelined Metadata v12, Produce Acks=0
 * (no response) and Acks=1 with a transactional id, Fetch, an unknown api
 * key. */
static void conversation(struct script *sc)
{
	static const uint8_t apiver_req[] = {0x06, 'k', 'w', 'i', 'r', 'e', 0x04, '0', '.', '1', 0};
	static const uint8_t apiver_resp[] = {0, 0, 0x02, 0, 0, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0};
	static const uint8_t hs_req[] = {0, 5, 'P', 'L', 'A', 'I', 'N'};
	static const uint8_t hs_resp[] = {0, 0, 0, 0, 0, 1, 0, 5, 'P', 'L', 'A', 'I', 'N'};
	static const uint8_t token[] = "\0user\0secret";
	static const uint8_t meta_resp[] = {0, 0, 0, 0, 1, 0, 0, 0};

	add(sc, KD_C2S, req(18, 3, 1, "kw-client", apiver_req, sizeof(apiver_req)));
	add(sc, KD_S2C, resp(1, 0, apiver_resp, sizeof(apiver_resp)));
	add(sc, KD_C2S, req(17, 0, 2, "kw-client", hs_req, sizeof(hs_req)));
	add(sc, KD_S2C, resp(2, 0, hs_resp, sizeof(hs_resp)));
	add(sc, KD_C2S, raw(token, sizeof(token) - 1));
	add(sc, KD_S2C, raw(NULL, 0));
	add(sc, KD_C2S, req(3, 12, 3, "kw-client", filler, 20));
	add(sc, KD_C2S, req(3, 12, 4, "kw-client", filler, 30));
	add(sc, KD_S2C, resp(3, 1, meta_resp, sizeof(meta_resp)));
	add(sc, KD_S2C, resp(4, 1, meta_resp, sizeof(meta_resp)));
	add(sc, KD_C2S, produce(9, 5, NULL, 0, 40));
	add(sc, KD_C2S, produce(3, 6, "tx-1", 1, 200));
	add(sc, KD_C2S, req(1, 4, 7, "kw-client", filler, 64));
	add(sc, KD_S2C, resp(6, 0, filler, 30));
	add(sc, KD_S2C, resp(7, 0, filler, 64));
	add(sc, KD_C2S, req(1000, 0, 8, "kw-client", filler, 10));
	add(sc, KD_S2C, resp(8, 0, filler, 3));
}

/* ---- recording events ---- */

struct rec {
	int type, dir, flags, err;
	int key, ver, cid;
	int req_key, req_ver, req_cid;
	char client[32];
	uint32_t frame_len;
	uint32_t body_len;
	uint32_t body_sum;
	uint64_t skipped, lost, ts, ts_end;
	int64_t latency;
	uint32_t popped;
	int acks;
};

static struct rec recs[1024];
static int nrecs;
/* KD_EV_POPPED events, apart: the requests that left the FIFO unanswered
 * (correlation id, flags, user value), in order. */
static struct pop {
	int cid, flags;
	uint64_t user;
} pops[64];
static int npops;

static void on_event(void *arg, const struct kd_event *ev)
{
	struct rec *r;

	(void)arg;
	if (ev->type == KD_EV_POPPED) {
		assert_true(npops < 64);
		pops[npops].cid = ev->req.correlation_id;
		pops[npops].flags = ev->flags;
		pops[npops].user = ev->req.user;
		npops++;
		return;
	}
	assert_true(nrecs < 1024);
	r = &recs[nrecs++];
	memset(r, 0, sizeof(*r));
	r->type = ev->type;
	r->dir = ev->dir;
	r->flags = ev->flags;
	r->err = ev->err;
	r->frame_len = ev->frame_len;
	r->skipped = ev->skipped;
	r->lost = ev->lost;
	r->ts = ev->ts_us;
	r->ts_end = ev->ts_end_us;
	r->latency = ev->latency_us;
	r->popped = ev->popped;
	r->acks = ev->acks;
	if (ev->type == KD_EV_REQUEST) {
		r->key = ev->req_hdr.api_key;
		r->ver = ev->req_hdr.api_version;
		r->cid = ev->req_hdr.correlation_id;
		if (!ev->req_hdr.client_id.null)
			snprintf(r->client, sizeof(r->client), "%.*s",
			         (int)ev->req_hdr.client_id.len,
			         (const char *)ev->req_hdr.client_id.p);
	}
	if (ev->type == KD_EV_RESPONSE)
		r->cid = ev->resp_hdr.correlation_id;
	if (ev->type == KD_EV_RESPONSE || ev->type == KD_EV_OPAQUE) {
		r->req_key = ev->req.api_key;
		r->req_ver = ev->req.api_version;
		r->req_cid = ev->req.correlation_id;
		if (ev->type == KD_EV_RESPONSE && !ev->req.client_id.null)
			snprintf(r->client, sizeof(r->client), "%.*s", (int)ev->req.client_id.len,
			         (const char *)ev->req.client_id.p);
	}
	if (ev->flags & KD_EVF_BODY) {
		assert_int_equal(ev->frame.len, 4 + ev->frame_len);
		assert_int_equal(kd_load_be(ev->frame.p, 4), ev->frame_len);
		r->body_len = ev->body.len;
		for (uint32_t i = 0; i < ev->body.len; i++)
			r->body_sum = r->body_sum * 31 + ev->body.p[i];
	}
}

static struct kd_stream *new_stream(int collect)
{
	struct kd_stream_cfg cfg = {0};
	struct kd_stream *s;

	cfg.collect_bodies = (uint8_t)collect;
	cfg.on_event = on_event;
	s = kd_stream_new(&cfg);
	assert_non_null(s);
	nrecs = 0;
	npops = 0;
	return s;
}

enum { SPLIT_WHOLE, SPLIT_BYTE, SPLIT_RANDOM, SPLIT_RUNS };

/* Feeds a script; random and runs modes merge consecutive steps of one
 * direction into a run (so chunks span frames), keeping the order of
 * directions. */
static void feed_script(struct kd_stream *s, const struct script *sc, int mode, unsigned seed)
{
	for (int i = 0; i < sc->n;) {
		int j = i + 1;
		size_t total = sc->st[i].f.len, off = 0;
		uint8_t *run;

		if (mode == SPLIT_WHOLE || mode == SPLIT_BYTE)
			j = i + 1;
		else
			while (j < sc->n && sc->st[j].dir == sc->st[i].dir)
				total += sc->st[j++].f.len;
		run = malloc(total ? total : 1);
		for (int k = i; k < j; k++) {
			memcpy(run + off, sc->st[k].f.p, sc->st[k].f.len);
			off += sc->st[k].f.len;
		}
		for (off = 0; off < total;) {
			size_t n = total - off;

			if (mode == SPLIT_BYTE)
				n = 1;
			else if (mode == SPLIT_RANDOM)
				n = 1 + (size_t)(rand_r(&seed) % (unsigned)(n < 97 ? n : 97));
			assert_int_equal(kd_stream_feed(s, (enum kd_dir)sc->st[i].dir, run + off, n,
			                                sc->st[i].ts),
			                 KD_OK);
			off += n;
		}
		free(run);
		i = j;
	}
}

static void cmp_recs(const struct rec *a, int na, const struct rec *b, int nb, int with_ts)
{
	assert_int_equal(na, nb);
	for (int i = 0; i < na; i++) {
		struct rec x = a[i], y = b[i];

		if (!with_ts) {
			x.ts = y.ts = x.ts_end = y.ts_end = 0;
			x.latency = y.latency = 0;
		}
		if (memcmp(&x, &y, sizeof(x)) != 0)
			fail_msg("event %d differs: type %d/%d cid %d/%d flags %x/%x", i, x.type,
			         y.type, x.cid, y.cid, x.flags, y.flags);
	}
}

/* ---- tests ---- */

static void check_conversation(const struct rec *r, int n, int collect)
{
	/* type, dir, cid (request/response), extra flag expected */
	static const struct {
		int type, dir, cid, req_key, flag;
	} want[] = {
	    {KD_EV_REQUEST, 0, 1, -1, 0},
	    {KD_EV_RESPONSE, 1, 1, 18, 0},
	    {KD_EV_REQUEST, 0, 2, -1, 0},
	    {KD_EV_RESPONSE, 1, 2, 17, 0},
	    {KD_EV_OPAQUE, 0, 0, -1, 0},
	    {KD_EV_OPAQUE, 1, 0, -1, KD_EVF_SASL_END},
	    {KD_EV_REQUEST, 0, 3, -1, 0},
	    {KD_EV_REQUEST, 0, 4, -1, 0},
	    {KD_EV_RESPONSE, 1, 3, 3, 0},
	    {KD_EV_RESPONSE, 1, 4, 3, 0},
	    {KD_EV_REQUEST, 0, 5, -1, KD_EVF_NO_RESPONSE},
	    {KD_EV_REQUEST, 0, 6, -1, 0},
	    {KD_EV_REQUEST, 0, 7, -1, 0},
	    {KD_EV_RESPONSE, 1, 6, 0, 0},
	    {KD_EV_RESPONSE, 1, 7, 1, 0},
	    {KD_EV_REQUEST, 0, 8, -1, KD_EVF_UNKNOWN_API | KD_EVF_HDR_GUESS},
	    {KD_EV_RESPONSE, 1, 8, 1000, 0},
	};
	const int bad = KD_EVF_UNPAIRED | KD_EVF_CID_SKIP | KD_EVF_OVERFLOW | KD_EVF_GAP;

	assert_int_equal(n, (int)(sizeof(want) / sizeof(want[0])));
	for (int i = 0; i < n; i++) {
		assert_int_equal(r[i].type, want[i].type);
		assert_int_equal(r[i].dir, want[i].dir);
		if (want[i].type != KD_EV_OPAQUE)
			assert_int_equal(r[i].cid, want[i].cid);
		if (want[i].type == KD_EV_RESPONSE) {
			assert_int_equal(r[i].req_key, want[i].req_key);
			assert_int_equal(r[i].req_cid, want[i].cid);
			assert_string_equal(r[i].client, "kw-client");
			assert_true(r[i].latency > 0);
		}
		assert_int_equal(r[i].flags & want[i].flag, want[i].flag);
		assert_int_equal(r[i].flags & bad, 0);
		assert_int_equal(!!(r[i].flags & KD_EVF_BODY), collect);
	}
	/* Latency: ApiVersions request at step 1 (ts 1000), response step 2. */
	assert_int_equal(r[1].latency, 1000);
	/* The server token answers the client token. */
	assert_true(r[5].latency > 0);
	assert_int_equal(r[10].acks, 0);
	assert_int_equal(r[11].acks, 1);
	/* Bodies: the SASL token is the whole payload; Produce v3's body. */
	if (collect) {
		assert_int_equal(r[4].body_len, 12);
		assert_int_equal(r[5].body_len, 0);
		assert_int_equal(r[11].body_len, 2 + 4 + 2 + 4 + 200);
	}
}

static void test_conversation_splits(void **state)
{
	static struct rec ref[1024];
	struct script sc = {0};
	int nref;

	(void)state;
	conversation(&sc);
	for (int collect = 0; collect <= 1; collect++) {
		struct kd_stream *s = new_stream(collect);
		const struct kd_stream_stats *st;

		feed_script(s, &sc, SPLIT_WHOLE, 0);
		check_conversation(recs, nrecs, collect);
		st = kd_stream_stats(s);
		assert_int_equal(st->buffered, 0); /* whole frames: zero-copy */
		assert_int_equal(st->inflight, 0);
		assert_int_equal(st->no_response, 1);
		assert_int_equal(st->opaque, 2);
		assert_int_equal(st->errors, 0);
		assert_false(kd_stream_in_sasl(s));
		nref = nrecs;
		memcpy(ref, recs, sizeof(recs[0]) * (size_t)nrecs);

		kd_stream_reset(s);
		nrecs = 0;
		npops = 0;
		feed_script(s, &sc, SPLIT_BYTE, 0);
		cmp_recs(ref, nref, recs, nrecs, 1);
		for (unsigned seed = 1; seed <= 50; seed++) {
			kd_stream_reset(s);
			nrecs = 0;
			npops = 0;
			feed_script(s, &sc, SPLIT_RANDOM, seed);
			cmp_recs(ref, nref, recs, nrecs, 0);
		}
		kd_stream_reset(s);
		nrecs = 0;
		npops = 0;
		feed_script(s, &sc, SPLIT_RUNS, 0);
		cmp_recs(ref, nref, recs, nrecs, 0);
		assert_int_equal(kd_stream_stats(s)->buffered, 0);
		kd_stream_free(s);
	}
	script_free(&sc);
}

/* The low-level interface gives the same events as feeding, and every
 * strict prefix of a frame's needed bytes is "need more". */
static void test_begin_commit(void **state)
{
	static struct rec ref[1024];
	struct script sc = {0};
	struct kd_stream *s;
	int nref;

	(void)state;
	conversation(&sc);
	s = new_stream(1);
	feed_script(s, &sc, SPLIT_WHOLE, 0);
	nref = nrecs;
	memcpy(ref, recs, sizeof(recs[0]) * (size_t)nrecs);
	kd_stream_free(s);

	s = new_stream(1);
	for (int i = 0; i < sc.n; i++) {
		struct kd_frame_info fi;
		const struct step *stp = &sc.st[i];
		int rc;

		for (size_t k = 0;; k++) {
			rc = kd_stream_frame_begin(s, (enum kd_dir)stp->dir, stp->f.p, k, &fi);
			if (rc == KD_OK)
				break;
			assert_int_equal(rc, KD_NEED_MORE);
			assert_true(fi.need > k);
			assert_true(k < stp->f.len);
		}
		assert_int_equal(fi.size + 4, stp->f.len);
		fi.ts_us = stp->ts;
		assert_int_equal(
		    kd_stream_frame_commit(s, (enum kd_dir)stp->dir, &fi, stp->f.p, stp->ts),
		    KD_OK);
	}
	cmp_recs(ref, nref, recs, nrecs, 1);
	kd_stream_free(s);
	script_free(&sc);
}

/* Header-only mode keeps only headers (and Produce's Acks prefix), even
 * when big frames arrive in small chunks. */
static void test_header_only_buffers(void **state)
{
	struct script sc = {0};
	struct kd_stream *s;
	size_t body = 0;

	(void)state;
	for (int i = 0; i < 10; i++) {
		add(&sc, KD_C2S, produce(3, i, "txn", 1, 100000));
		add(&sc, KD_S2C, resp(i, 0, filler, 60));
	}
	for (int i = 0; i < sc.n; i++)
		body += sc.st[i].f.len;

	s = new_stream(0);
	feed_script(s, &sc, SPLIT_RANDOM, 7);
	assert_int_equal(nrecs, 20);
	for (int i = 0; i < 20; i += 2) {
		assert_int_equal(recs[i].type, KD_EV_REQUEST);
		assert_int_equal(recs[i].acks, 1);
		assert_int_equal(recs[i + 1].type, KD_EV_RESPONSE);
		assert_int_equal(recs[i + 1].req_cid, recs[i].cid);
	}
	/* Header 4+8+2+9, TransactionalId 2+3, Acks 2: 30 bytes per request,
	 * 8 per response. */
	assert_true(kd_stream_stats(s)->buffered <= 10 * (30 + 8));
	kd_stream_free(s);

	/* With bodies: everything not in one chunk is copied. */
	s = new_stream(1);
	feed_script(s, &sc, SPLIT_RANDOM, 7);
	assert_int_equal(nrecs, 20);
	assert_true(kd_stream_stats(s)->buffered >= body / 2);
	kd_stream_free(s);
	script_free(&sc);
}

static void expect_garbage(const uint8_t *p, size_t n, uint32_t max, int dir, int err)
{
	struct kd_stream_cfg cfg = {0};
	struct kd_stream *s;
	static const uint8_t more[16] = {0};

	cfg.on_event = on_event;
	cfg.max_frame = max;
	s = kd_stream_new(&cfg);
	nrecs = 0;
	npops = 0;
	assert_int_equal(kd_stream_feed(s, (enum kd_dir)dir, p, n, 1), KD_EBROKEN);
	assert_int_equal(nrecs, 1);
	assert_int_equal(recs[0].type, KD_EV_ERROR);
	assert_int_equal(recs[0].err, err);
	assert_int_equal(kd_stream_dir_state(s, (enum kd_dir)dir), 1);
	assert_int_equal(kd_stream_feed(s, (enum kd_dir)dir, more, sizeof(more), 2), KD_EBROKEN);
	assert_int_equal(kd_stream_gap(s, (enum kd_dir)dir, 10), KD_EBROKEN);
	assert_int_equal(nrecs, 1);
	assert_int_equal(kd_stream_stats(s)->errors, 1);
	kd_stream_free(s);
}

static void test_garbage(void **state)
{
	static const uint8_t two_gb[] = {0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 1};
	static const uint8_t negative[] = {0x80, 0, 0, 0, 0, 3, 0, 1};
	static const uint8_t over[] = {0, 0, 0x03, 0xe9, 0, 3, 0, 1}; /* 1001 */
	static const uint8_t tiny_req[] = {0, 0, 0, 3, 0, 3, 0};
	static const uint8_t tiny_resp[] = {0, 0, 0, 2, 0, 3};
	/* A request frame that ends inside its client id. */
	static const uint8_t short_hdr[] = {0, 0, 0, 12, 0, 3, 0, 1, 0, 0, 0, 1, 0, 9, 'a', 'b'};
	struct kd_stream *s;
	struct kd_frame_info fi;

	(void)state;
	expect_garbage(two_gb, sizeof(two_gb), 0, KD_C2S, KD_ELIMIT);
	expect_garbage(two_gb, sizeof(two_gb), 0, KD_S2C, KD_ELIMIT);
	expect_garbage(negative, sizeof(negative), 0, KD_C2S, KD_EMALFORMED);
	expect_garbage(over, sizeof(over), 1000, KD_C2S, KD_ELIMIT);
	expect_garbage(tiny_req, sizeof(tiny_req), 0, KD_C2S, KD_EMALFORMED);
	expect_garbage(tiny_resp, sizeof(tiny_resp), 0, KD_S2C, KD_EMALFORMED);
	expect_garbage(short_hdr, sizeof(short_hdr), 0, KD_C2S, KD_ESHORT);

	/* Breaking one direction leaves the other working; the proxy
	 * interface reports the same way. */
	s = new_stream(0);
	assert_int_equal(kd_stream_frame_begin(s, KD_C2S, negative, sizeof(negative), &fi),
	                 KD_EMALFORMED);
	assert_int_equal(nrecs, 1);
	assert_int_equal(recs[0].type, KD_EV_ERROR);
	assert_int_equal(kd_stream_frame_begin(s, KD_C2S, negative, sizeof(negative), &fi),
	                 KD_EBROKEN);
	assert_int_equal(kd_stream_dir_state(s, KD_S2C), 0);
	{
		struct frame f = resp(5, 0, filler, 4);

		assert_int_equal(kd_stream_feed(s, KD_S2C, f.p, f.len, 1), KD_OK);
		assert_int_equal(recs[1].type, KD_EV_RESPONSE);
		assert_true(recs[1].flags & KD_EVF_UNPAIRED);
		free(f.p);
	}
	kd_stream_free(s);
}

/* Builds requests 1..n and responses 1..n (Metadata v1, header v0). */
static void simple_pairs(struct frame *rq, struct frame *rs, int n, size_t body)
{
	uint8_t b[512];

	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)(i & 0x3f);
	for (int i = 0; i < n; i++) {
		rq[i] = req(3, 1, i + 1, "kw-client", b, body);
		rs[i] = resp(i + 1, 0, b, body + 10);
	}
}

static void test_gap_requests(void **state)
{
	struct frame rq[6], rs[6];
	struct kd_stream *s;
	size_t cut;

	(void)state;
	simple_pairs(rq, rs, 6, 100);
	s = new_stream(1);
	assert_int_equal(kd_stream_feed(s, KD_C2S, rq[0].p, rq[0].len, 10), KD_OK);
	assert_int_equal(kd_stream_feed(s, KD_C2S, rq[1].p, rq[1].len, 20), KD_OK);
	/* Request 3: its header and half its body, then a gap inside the body. */
	cut = rq[2].len / 2;
	assert_int_equal(kd_stream_feed(s, KD_C2S, rq[2].p, cut, 30), KD_OK);
	assert_int_equal(kd_stream_gap(s, KD_C2S, 10), KD_OK);
	assert_int_equal(kd_stream_feed(s, KD_C2S, rq[2].p + cut + 10, rq[2].len - cut - 10, 31),
	                 KD_OK);
	assert_int_equal(nrecs, 3);
	assert_int_equal(recs[2].cid, 3);
	assert_true(recs[2].flags & KD_EVF_GAP);
	assert_false(recs[2].flags & KD_EVF_BODY);
	/* A gap across the end of request 4 (header seen) and into request 5. */
	cut = 30;
	assert_int_equal(kd_stream_feed(s, KD_C2S, rq[3].p, cut, 40), KD_OK);
	assert_int_equal(kd_stream_gap(s, KD_C2S, rq[3].len - cut + 7), KD_OK);
	assert_int_equal(nrecs, 4);
	assert_int_equal(recs[3].cid, 4);
	assert_true(recs[3].flags & KD_EVF_GAP);
	/* The rest of 5 is skipped, 6 decodes. */
	assert_int_equal(kd_stream_feed(s, KD_C2S, rq[4].p + 7, rq[4].len - 7, 50), KD_OK);
	assert_int_equal(kd_stream_feed(s, KD_C2S, rq[5].p, rq[5].len, 60), KD_OK);
	assert_int_equal(nrecs, 6);
	assert_int_equal(recs[4].type, KD_EV_SKIP);
	assert_int_equal(recs[4].skipped, rq[4].len - 7);
	/* Lost bytes outside any known frame: request 4's tail went with it. */
	assert_int_equal(recs[4].lost, 7);
	assert_int_equal(recs[5].type, KD_EV_REQUEST);
	assert_int_equal(recs[5].cid, 6);
	assert_true(recs[5].flags & KD_EVF_BODY);
	assert_int_equal(kd_stream_stats(s)->skipped[KD_C2S], rq[4].len - 7);
	/* Responses: 5 was never seen, so its response is unpaired; the
	 * others pair. */
	for (int i = 0; i < 6; i++)
		assert_int_equal(kd_stream_feed(s, KD_S2C, rs[i].p, rs[i].len, 100 + (uint64_t)i),
		                 KD_OK);
	assert_int_equal(nrecs, 12);
	for (int i = 0; i < 6; i++) {
		const struct rec *r = &recs[6 + i];

		assert_int_equal(r->type, KD_EV_RESPONSE);
		assert_int_equal(r->cid, i + 1);
		if (i == 4) {
			assert_true(r->flags & KD_EVF_UNPAIRED);
		} else {
			assert_false(r->flags & (KD_EVF_UNPAIRED | KD_EVF_CID_SKIP));
			assert_int_equal(r->req_cid, i + 1);
		}
	}
	assert_int_equal(kd_stream_stats(s)->inflight, 0);
	kd_stream_free(s);
	for (int i = 0; i < 6; i++) {
		free(rq[i].p);
		free(rs[i].p);
	}
}

static void test_gap_responses(void **state)
{
	struct frame rq[6], rs[6];
	struct kd_stream *s;

	(void)state;
	simple_pairs(rq, rs, 6, 50);
	for (int collect = 0; collect <= 1; collect++) {
		s = new_stream(collect);
		for (int i = 0; i < 6; i++)
			kd_stream_feed(s, KD_C2S, rq[i].p, rq[i].len, 10 + (uint64_t)i);
		assert_int_equal(nrecs, 6);
		kd_stream_feed(s, KD_S2C, rs[0].p, rs[0].len, 100);
		kd_stream_feed(s, KD_S2C, rs[1].p, rs[1].len, 101);
		/* 3 bytes of response 3, then the rest of 3 and 5 bytes of 4 are
		 * lost; 4's tail is skipped; 5 pops 3 and 4 unanswered. */
		kd_stream_feed(s, KD_S2C, rs[2].p, 3, 102);
		kd_stream_gap(s, KD_S2C, rs[2].len - 3 + 5);
		kd_stream_feed(s, KD_S2C, rs[3].p + 5, rs[3].len - 5, 103);
		for (int i = 4; i < 6; i++)
			kd_stream_feed(s, KD_S2C, rs[i].p, rs[i].len, 100 + (uint64_t)i);
		assert_int_equal(nrecs, 6 + 2 + 1 + 2);
		assert_int_equal(recs[6].req_cid, 1);
		assert_int_equal(recs[7].req_cid, 2);
		assert_int_equal(recs[8].type, KD_EV_SKIP);
		assert_int_equal(recs[8].dir, KD_S2C);
		assert_int_equal(recs[8].skipped, 3 + rs[3].len - 5);
		assert_int_equal(recs[8].lost, rs[2].len - 3 + 5);
		assert_int_equal(recs[9].type, KD_EV_RESPONSE);
		assert_int_equal(recs[9].cid, 5);
		assert_int_equal(recs[9].req_cid, 5);
		assert_true(recs[9].flags & KD_EVF_CID_SKIP);
		assert_int_equal(recs[9].popped, 2);
		/* Frames found by resync carry the time of the chunk that proved
		 * them (105), not of their own bytes (104). */
		assert_true(recs[9].latency >= 104 - 14 && recs[9].latency <= 105 - 14);
		assert_int_equal(recs[10].req_cid, 6);
		assert_false(recs[10].flags & KD_EVF_CID_SKIP);
		assert_int_equal(kd_stream_stats(s)->unanswered, 2);
		assert_int_equal(kd_stream_stats(s)->inflight, 0);
		kd_stream_free(s);
	}
	for (int i = 0; i < 6; i++) {
		free(rq[i].p);
		free(rs[i].p);
	}
}

/* Random gaps anywhere in either direction of a long conversation: the
 * stream never breaks, every byte is accounted for (in a delivered frame,
 * skipped, or lost), and decoding recovers: the FIFO ends empty and the
 * last rounds decode exactly as without the gap. */
static void test_gap_random(void **state)
{
	enum { ROUNDS = 12, PER = 4, N = ROUNDS * PER };
	static struct frame rq[N], rs[N];
	static struct rec ref[2][256];
	unsigned seed = 12345;
	int nref[2] = {0, 0};

	(void)state;
	for (int i = 0; i < N; i++) {
		uint8_t body[160];
		size_t blen = 20 + (size_t)(rand_r(&seed) % 120);

		for (size_t k = 0; k < sizeof(body); k++)
			body[k] = (uint8_t)rand_r(&seed);
		rq[i] = req(3, 1, 100 + i, "kw-client", body, blen);
		rs[i] = resp(100 + i, 0, body, blen + 7);
	}
	/* Trials -2 and -1: the references without a gap, per body mode. */
	for (int trial = -2; trial < 400; trial++) {
		int collect = trial < 0 ? trial == -1 : (trial & 2) != 0;
		int gdir = trial & 1;
		size_t dtotal = 0, gpos, glen, pos = 0;
		uint64_t acc = 0;
		struct kd_stream *s = new_stream(collect);

		for (int i = 0; i < N; i++)
			dtotal += gdir ? rs[i].len : rq[i].len;
		/* A gap somewhere in the first half, 1..300 bytes. */
		gpos = (size_t)rand_r(&seed) % (dtotal / 2);
		glen = 1 + (size_t)rand_r(&seed) % 300;
		for (int r = 0; r < ROUNDS; r++) {
			for (int d = 0; d < 2; d++) {
				for (int i = r * PER; i < (r + 1) * PER; i++) {
					const struct frame *f = d ? &rs[i] : &rq[i];
					size_t a = 0, b = f->len;

					if (trial < 0 || d != gdir) {
						kd_stream_feed(s, (enum kd_dir)d, f->p, f->len, 1);
						continue;
					}
					/* Frame bytes [pos, pos + len) of the direction;
					 * drop those inside [gpos, gpos + glen). */
					if (gpos + glen > pos && gpos < pos + f->len) {
						size_t g0 = gpos > pos ? gpos - pos : 0;
						size_t g1 = gpos + glen - pos < f->len
						                ? gpos + glen - pos
						                : f->len;

						if (g0 > a)
							kd_stream_feed(s, (enum kd_dir)d, f->p, g0,
							               1);
						kd_stream_gap(s, (enum kd_dir)d, g1 - g0);
						a = g1;
					}
					if (a < b)
						assert_int_equal(kd_stream_feed(s, (enum kd_dir)d,
						                                f->p + a, b - a, 1),
						                 KD_OK);
					pos += f->len;
				}
			}
		}
		for (int i = 0; i < nrecs; i++) {
			assert_int_not_equal(recs[i].type, KD_EV_ERROR);
			if (recs[i].dir != gdir)
				continue;
			if (recs[i].type == KD_EV_SKIP)
				acc += recs[i].skipped + recs[i].lost;
			else
				acc += 4 + (uint64_t)recs[i].frame_len;
		}
		if (trial < 0) {
			nref[collect] = nrecs;
			memcpy(ref[collect], recs, sizeof(recs[0]) * (size_t)nrecs);
		} else {
			if (acc != dtotal)
				fail_msg(
				    "trial %d: dir %d gap %zu+%zu: %llu of %zu bytes accounted",
				    trial, gdir, gpos, glen, (unsigned long long)acc, dtotal);
			assert_int_equal(kd_stream_stats(s)->inflight, 0);
			/* The last 3 rounds: 24 events identical to the reference. */
			assert_true(nrecs >= 24);
			cmp_recs(ref[collect] + nref[collect] - 24, 24, recs + nrecs - 24, 24, 1);
		}
		kd_stream_free(s);
	}
	for (int i = 0; i < N; i++) {
		free(rq[i].p);
		free(rs[i].p);
	}
}

/* A response whose request was lost: the oldest in-flight requests are
 * popped until the correlation id matches. */
static void test_cid_mismatch(void **state)
{
	struct frame rq[4], rs[4];
	struct kd_stream *s;

	(void)state;
	simple_pairs(rq, rs, 4, 8);
	s = new_stream(0);
	for (int i = 0; i < 4; i++)
		kd_stream_feed(s, KD_C2S, rq[i].p, rq[i].len, 1);
	kd_stream_feed(s, KD_S2C, rs[2].p, rs[2].len, 2);
	kd_stream_feed(s, KD_S2C, rs[3].p, rs[3].len, 2);
	assert_int_equal(nrecs, 6);
	assert_true(recs[4].flags & KD_EVF_CID_SKIP);
	assert_int_equal(recs[4].popped, 2);
	assert_int_equal(recs[4].req_cid, 3);
	assert_int_equal(recs[5].req_cid, 4);
	assert_int_equal(recs[5].flags & (KD_EVF_CID_SKIP | KD_EVF_UNPAIRED), 0);
	/* The two skipped requests were handed back, oldest first. */
	assert_int_equal(npops, 2);
	assert_int_equal(pops[0].cid, 1);
	assert_int_equal(pops[1].cid, 2);
	assert_true(pops[0].flags & KD_EVF_CID_SKIP);
	assert_true(pops[1].flags & KD_EVF_CID_SKIP);
	kd_stream_free(s);
	for (int i = 0; i < 4; i++) {
		free(rq[i].p);
		free(rs[i].p);
	}
}

/* The correlation id of a request frame. */
static int rq_cid(const struct frame *f)
{
	return (int)(int32_t)kd_load_be(f->p + 8, 4);
}

/* Drives one frame through begin/commit, as the proxy does. */
static void step(struct kd_stream *s, enum kd_dir dir, const struct frame *f, uint16_t flags,
                 uint64_t user)
{
	struct kd_frame_info fi;

	assert_int_equal(kd_stream_frame_begin(s, dir, f->p, f->len, &fi), KD_OK);
	fi.flags |= flags;
	fi.user = user;
	assert_int_equal(kd_stream_frame_commit(s, dir, &fi, NULL, 1), KD_OK);
}

/* Requests the caller answers itself (KD_EVF_LOCAL) keep their place in
 * the one FIFO: a response never pairs with them, and each leaves once,
 * handing its user value back (kd_stream_pop_local, or KD_EV_POPPED
 * when a response behind it comes first, or kd_stream_drain). */
static void test_local_and_user(void **state)
{
	struct frame rq[6], rs[6];
	struct kd_stream_cfg cfg = {0};
	struct kd_stream *s;
	struct kd_req_info info;

	(void)state;
	simple_pairs(rq, rs, 6, 8);
	cfg.on_event = on_event;
	s = kd_stream_new(&cfg);
	nrecs = 0;
	npops = 0;
	/* 1 forwarded, 2 local, 3 forwarded, 4 local. */
	step(s, KD_C2S, &rq[0], 0, 101);
	step(s, KD_C2S, &rq[1], KD_EVF_LOCAL, 102);
	step(s, KD_C2S, &rq[2], 0, 103);
	step(s, KD_C2S, &rq[3], KD_EVF_LOCAL, 104);
	assert_int_equal(kd_stream_inflight(s), 4);
	assert_int_equal(kd_stream_pop_local(s, &info), 0); /* 1 is at the head */
	/* The broker answers 1: 2 is then at the head. */
	step(s, KD_S2C, &rs[0], 0, 0);
	assert_int_equal(recs[nrecs - 1].req_cid, rq_cid(&rq[0]));
	assert_int_equal(npops, 0);
	assert_int_equal(kd_stream_pop_local(s, &info), 1);
	assert_int_equal(info.user, 102);
	assert_true(info.local);
	assert_int_equal(kd_stream_pop_local(s, &info), 0);
	/* A response with 2's correlation id pairs with nothing local. */
	struct kd_frame_info fi;
	assert_int_equal(kd_stream_frame_begin(s, KD_S2C, rs[1].p, rs[1].len, &fi), KD_OK);
	assert_true(fi.flags & KD_EVF_UNPAIRED);
	/* 5 forwarded behind local 4; the broker answers 3 then 5: 4 is
	 * handed back as local (its answer is due) before 5's response, which
	 * skipped no broker request. */
	step(s, KD_C2S, &rq[4], 0, 105);
	step(s, KD_S2C, &rs[2], 0, 0);
	assert_int_equal(npops, 0);
	step(s, KD_S2C, &rs[4], 0, 0);
	assert_int_equal(npops, 1);
	assert_int_equal(pops[0].user, 104);
	assert_true(pops[0].flags & KD_EVF_LOCAL);
	assert_int_equal(recs[nrecs - 1].req_cid, rq_cid(&rq[4]));
	assert_false(recs[nrecs - 1].flags & KD_EVF_CID_SKIP);
	assert_int_equal(kd_stream_stats(s)->unanswered, 0);
	/* kd_stream_drain hands back what is left. */
	step(s, KD_C2S, &rq[5], 0, 106);
	kd_stream_drain(s);
	assert_int_equal(npops, 2);
	assert_int_equal(pops[1].user, 106);
	assert_int_equal(pops[1].flags & (KD_EVF_LOCAL | KD_EVF_CID_SKIP), 0);
	assert_int_equal(kd_stream_inflight(s), 0);
	kd_stream_free(s);
	for (int i = 0; i < 6; i++) {
		free(rq[i].p);
		free(rs[i].p);
	}
}

/* kd_stream_set_user: the feeding caller attaches its state from the
 * request's event, and gets it back with the response. */
static uint64_t set_user_next;
static void on_event_set_user(void *arg, const struct kd_event *ev)
{
	struct kd_stream *s = *(struct kd_stream **)arg;

	if (ev->type == KD_EV_REQUEST)
		assert_int_equal(kd_stream_set_user(s, set_user_next++), 0);
	on_event(NULL, ev);
	if (ev->type == KD_EV_RESPONSE)
		recs[nrecs - 1].body_sum = (uint32_t)ev->req.user;
}

static void test_set_user(void **state)
{
	struct frame rq[3], rs[3];
	struct kd_stream_cfg cfg = {0};
	struct kd_stream *s = NULL;

	(void)state;
	simple_pairs(rq, rs, 3, 8);
	cfg.on_event = on_event_set_user;
	cfg.arg = &s;
	s = kd_stream_new(&cfg);
	nrecs = 0;
	npops = 0;
	set_user_next = 7;
	for (int i = 0; i < 3; i++)
		kd_stream_feed(s, KD_C2S, rq[i].p, rq[i].len, 1);
	assert_int_equal(kd_stream_set_user(s, 1), -1); /* outside a request's event */
	kd_stream_feed(s, KD_S2C, rs[1].p, rs[1].len, 2);
	/* 1 skipped (handed back with its value), then 2's response. */
	assert_int_equal(npops, 1);
	assert_int_equal(pops[0].user, 7);
	assert_int_equal(recs[nrecs - 1].body_sum, 8);
	kd_stream_feed(s, KD_S2C, rs[2].p, rs[2].len, 3);
	assert_int_equal(recs[nrecs - 1].body_sum, 9);
	kd_stream_free(s);
	for (int i = 0; i < 3; i++) {
		free(rq[i].p);
		free(rs[i].p);
	}
}

static void test_midstream(void **state)
{
	struct frame rq[5], rs[5];
	struct kd_stream_cfg cfg = {0};
	struct kd_stream *s;
	size_t tail;

	(void)state;
	simple_pairs(rq, rs, 5, 40);
	cfg.on_event = on_event;
	cfg.midstream = 1;
	cfg.collect_bodies = 1;
	s = kd_stream_new(&cfg);
	nrecs = 0;
	npops = 0;
	/* Capture starts inside request 1 and inside response 1. */
	tail = rq[0].len - 9;
	kd_stream_feed(s, KD_C2S, rq[0].p + 9, tail, 1);
	kd_stream_feed(s, KD_C2S, rq[1].p, rq[1].len, 2);
	kd_stream_feed(s, KD_C2S, rq[2].p, rq[2].len, 3);
	kd_stream_feed(s, KD_S2C, rs[0].p + 6, rs[0].len - 6, 4);
	kd_stream_feed(s, KD_S2C, rs[1].p, rs[1].len, 5);
	kd_stream_feed(s, KD_S2C, rs[2].p, rs[2].len, 6);
	kd_stream_feed(s, KD_C2S, rq[3].p, rq[3].len, 7);
	kd_stream_feed(s, KD_S2C, rs[3].p, rs[3].len, 8);
	assert_int_equal(nrecs, 1 + 2 + 1 + 2 + 2);
	assert_int_equal(recs[0].type, KD_EV_SKIP);
	assert_int_equal(recs[0].skipped, tail);
	assert_int_equal(recs[0].lost, 0);
	assert_int_equal(recs[1].cid, 2);
	assert_int_equal(recs[2].cid, 3);
	assert_int_equal(recs[3].type, KD_EV_SKIP);
	assert_int_equal(recs[3].skipped, rs[0].len - 6);
	assert_int_equal(recs[4].type, KD_EV_RESPONSE);
	assert_int_equal(recs[4].req_cid, 2);
	assert_int_equal(recs[5].req_cid, 3);
	assert_int_equal(recs[6].cid, 4);
	assert_int_equal(recs[7].req_cid, 4);
	for (int i = 0; i < nrecs; i++)
		assert_int_equal(recs[i].flags & (KD_EVF_UNPAIRED | KD_EVF_CID_SKIP), 0);
	kd_stream_free(s);
	for (int i = 0; i < 5; i++) {
		free(rq[i].p);
		free(rs[i].p);
	}
}

static void test_overflow(void **state)
{
	struct frame rq[6], rs[6];
	struct kd_stream_cfg cfg = {0};
	struct kd_stream *s;

	(void)state;
	simple_pairs(rq, rs, 6, 4);
	cfg.on_event = on_event;
	cfg.max_inflight = 4;
	s = kd_stream_new(&cfg);
	nrecs = 0;
	npops = 0;
	for (int i = 0; i < 6; i++)
		kd_stream_feed(s, KD_C2S, rq[i].p, rq[i].len, 1);
	assert_int_equal(kd_stream_stats(s)->inflight, 4);
	assert_int_equal(kd_stream_stats(s)->overflow, 2);
	for (int i = 0; i < 6; i++)
		assert_int_equal(!!(recs[i].flags & KD_EVF_OVERFLOW), i >= 4);
	/* The two pushed out were handed back as they went. */
	assert_int_equal(npops, 2);
	assert_int_equal(pops[0].cid, rq_cid(&rq[0]));
	assert_int_equal(pops[1].cid, rq_cid(&rq[1]));
	assert_true(pops[0].flags & KD_EVF_OVERFLOW);
	for (int i = 0; i < 6; i++)
		kd_stream_feed(s, KD_S2C, rs[i].p, rs[i].len, 2);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(recs[6 + i].type, KD_EV_RESPONSE);
		assert_int_equal(!!(recs[6 + i].flags & KD_EVF_UNPAIRED), i < 2);
	}
	assert_int_equal(kd_stream_stats(s)->inflight, 0);
	assert_int_equal(kd_stream_stats(s)->unpaired, 2);
	kd_stream_free(s);
	for (int i = 0; i < 6; i++) {
		free(rq[i].p);
		free(rs[i].p);
	}
}

/* SaslHandshake v0 that fails keeps the client side out of opaque mode;
 * KD_SASL_OFF never enters it; KD_SASL_LEGACY starts in it. */
static void test_sasl_modes(void **state)
{
	static const uint8_t hs_req[] = {0, 6, 'G', 'S', 'S', 'A', 'P', 'I'};
	static const uint8_t hs_fail[] = {0, 33, 0, 0, 0, 0};
	static const uint8_t gss[] = {0x60, 0x82, 0x01, 0x00, 0x06, 0x09, 0x2a, 0x86};
	struct kd_stream_cfg cfg = {0};
	struct kd_stream *s;
	struct frame a = req(17, 0, 1, "c", hs_req, sizeof(hs_req));
	struct frame b = resp(1, 0, hs_fail, sizeof(hs_fail));
	struct frame t = raw(gss, sizeof(gss));
	struct frame m = req(3, 1, 2, "c", filler, 4);
	struct frame mr = resp(2, 0, filler, 4);

	(void)state;
	s = new_stream(0);
	kd_stream_feed(s, KD_C2S, a.p, a.len, 1);
	kd_stream_feed(s, KD_S2C, b.p, b.len, 2);
	assert_false(kd_stream_in_sasl(s));
	kd_stream_free(s);

	cfg.on_event = on_event;
	cfg.sasl = KD_SASL_LEGACY;
	s = kd_stream_new(&cfg);
	nrecs = 0;
	npops = 0;
	assert_true(kd_stream_in_sasl(s));
	kd_stream_feed(s, KD_C2S, t.p, t.len, 1);
	kd_stream_feed(s, KD_S2C, t.p, t.len, 2);
	kd_stream_feed(s, KD_C2S, t.p, t.len, 3); /* GSSAPI's last token: no reply */
	kd_stream_feed(s, KD_C2S, m.p, m.len, 4);
	kd_stream_feed(s, KD_S2C, mr.p, mr.len, 5);
	assert_int_equal(nrecs, 5);
	assert_int_equal(recs[0].type, KD_EV_OPAQUE);
	assert_int_equal(recs[1].type, KD_EV_OPAQUE);
	assert_int_equal(recs[1].latency, 1);
	assert_int_equal(recs[2].type, KD_EV_OPAQUE);
	assert_int_equal(recs[3].type, KD_EV_REQUEST);
	assert_true(recs[3].flags & KD_EVF_SASL_END);
	assert_int_equal(recs[4].type, KD_EV_RESPONSE);
	assert_int_equal(recs[4].req_cid, 2);
	assert_int_equal(recs[4].flags & (KD_EVF_UNPAIRED | KD_EVF_CID_SKIP), 0);
	assert_false(kd_stream_in_sasl(s));
	kd_stream_free(s);
	free(a.p);
	free(b.p);
	free(t.p);
	free(m.p);
	free(mr.p);
}

/* ---- SASL v0 exchanges, followed by mechanism ---- */

/* A Kerberos context token (RFC 2743 3.1): 60 len 06 09 <krb5 OID> TOK_ID ... */
static struct frame gss_token(uint8_t id0, uint8_t id1, size_t pad)
{
	static const uint8_t oid[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
	                              0xf7, 0x12, 0x01, 0x02, 0x02};
	uint8_t b[300];
	size_t inner = sizeof(oid) + 2 + pad, n = 0;

	assert_true(inner < 128 && pad < 200);
	b[n++] = 0x60;
	b[n++] = (uint8_t)inner;
	memcpy(b + n, oid, sizeof(oid));
	n += sizeof(oid);
	b[n++] = id0;
	b[n++] = id1;
	memset(b + n, 0xa5, pad);
	n += pad;
	return raw(b, n);
}

struct sasl_case {
	const char *mech;
	int ntok; /* tokens of the exchange, both sides, in order */
	struct frame tok[8];
	int dir[8];
	int last_no_reply; /* the exchange ends with a client token */
};

static struct frame str_raw(const char *s, size_t n)
{
	return raw((const uint8_t *)s, n);
}

/* Handshake v0 with client id "auth-id", the exchange, then Metadata and
 * Produce Acks=1 under another client id: both are requests, paired with
 * their responses, whatever the split. */
static void run_sasl_case(struct sasl_case *c)
{
	uint8_t hs_req[64], hs_resp[64];
	size_t ml = strlen(c->mech), n = 0;
	struct script sc = {0};
	static struct rec ref[1024];
	int nref = 0;

	hs_req[0] = 0;
	hs_req[1] = (uint8_t)ml;
	memcpy(hs_req + 2, c->mech, ml);
	memcpy(hs_resp, "\0\0\0\0\0\1\0", 7);
	n = 7;
	hs_resp[n++] = (uint8_t)ml;
	memcpy(hs_resp + n, c->mech, ml);
	n += ml;
	add(&sc, KD_C2S, req(17, 0, 1, "auth-id", hs_req, 2 + ml));
	add(&sc, KD_S2C, resp(1, 0, hs_resp, n));
	for (int i = 0; i < c->ntok; i++)
		add(&sc, c->dir[i], c->tok[i]);
	add(&sc, KD_C2S, req(3, 1, 2, "another-client", filler, 4));
	add(&sc, KD_S2C, resp(2, 0, filler, 8));
	add(&sc, KD_C2S, produce(3, 3, NULL, 1, 10));
	add(&sc, KD_S2C, resp(3, 0, filler, 8));
	for (int mode = SPLIT_WHOLE; mode <= SPLIT_RUNS; mode++) {
		for (int collect = 0; collect <= 1; collect++) {
			struct kd_stream *s = new_stream(collect);
			int k = 2 + c->ntok;

			feed_script(s, &sc, mode, 7);
			if (nrecs != k + 4)
				fail_msg("%s: %d events, want %d", c->mech, nrecs, k + 4);
			for (int i = 2; i < k; i++) {
				assert_int_equal(recs[i].type, KD_EV_OPAQUE);
				assert_int_equal(recs[i].dir, c->dir[i - 2]);
				assert_int_equal(!!(recs[i].flags & KD_EVF_SASL_END), i == k - 1);
			}
			assert_int_equal(!!(recs[k - 1].flags & KD_EVF_NO_RESPONSE),
			                 c->last_no_reply);
			assert_int_equal(recs[k].type, KD_EV_REQUEST);
			assert_string_equal(recs[k].client, "another-client");
			assert_int_equal(recs[k + 1].type, KD_EV_RESPONSE);
			assert_int_equal(recs[k + 1].req_key, 3);
			assert_int_equal(recs[k + 2].type, KD_EV_REQUEST);
			assert_int_equal(recs[k + 3].type, KD_EV_RESPONSE);
			assert_int_equal(recs[k + 3].req_key, 0);
			for (int i = k; i < k + 4; i++)
				assert_int_equal(
				    recs[i].flags & (KD_EVF_UNPAIRED | KD_EVF_CID_SKIP), 0);
			assert_false(kd_stream_in_sasl(s));
			assert_int_equal(kd_stream_stats(s)->inflight, 0);
			if (mode == SPLIT_WHOLE && collect == 0) {
				nref = nrecs;
				memcpy(ref, recs, sizeof(recs[0]) * (size_t)nrecs);
			} else if (collect == 0) {
				cmp_recs(ref, nref, recs, nrecs, 0);
			}
			kd_stream_free(s);
		}
	}
	script_free(&sc);
}

static void test_sasl_v0_mechanisms(void **state)
{
	static const char plain[] = "\0alice\0alice-secret";
	static const char c1[] = "n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL";
	static const char s1[] = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,"
	                         "i=4096";
	static const char c2[] = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
	                         "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
	static const char s2[] = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";
	static const char oauth[] =
	    "n,,\1auth=Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.\1\1";
	static const char oerr[] = "{\"status\":\"invalid_token\"}";
	static const uint8_t wrap[] = {0x05, 0x04, 0x01, 0xff, 0, 12, 0, 0, 0, 0, 0,  0,  0,
	                               1,    1,    2,    3,    4, 5,  6, 7, 8, 9, 10, 11, 12};
	static const char other[] = "some-token";
	struct sasl_case cases[] = {
	    {"PLAIN", 2, {str_raw(plain, sizeof(plain) - 1), raw(NULL, 0)}, {0, 1}, 0},
	    {"SCRAM-SHA-256",
	     4,
	     {str_raw(c1, sizeof(c1) - 1), str_raw(s1, sizeof(s1) - 1), str_raw(c2, sizeof(c2) - 1),
	      str_raw(s2, sizeof(s2) - 1)},
	     {0, 1, 0, 1},
	     0},
	    {"SCRAM-SHA-512",
	     4,
	     {str_raw(c1, sizeof(c1) - 1), str_raw(s1, sizeof(s1) - 1), str_raw(c2, sizeof(c2) - 1),
	      str_raw(s2, sizeof(s2) - 1)},
	     {0, 1, 0, 1},
	     0},
	    {"OAUTHBEARER", 2, {str_raw(oauth, sizeof(oauth) - 1), raw(NULL, 0)}, {0, 1}, 0},
	    /* A rejected token: the error JSON, then the client's kvsep byte,
	     * which nothing answers. */
	    {"OAUTHBEARER",
	     3,
	     {str_raw(oauth, sizeof(oauth) - 1), str_raw(oerr, sizeof(oerr) - 1), str_raw("\1", 1)},
	     {0, 1, 0},
	     1},
	    /* Mutual authentication: AP-REQ, AP-REP, the client's empty
	     * token, the server's Wrap (security layer offer), the client's
	     * Wrap, which nothing answers. */
	    {"GSSAPI",
	     5,
	     {gss_token(1, 0, 60), gss_token(2, 0, 30), raw(NULL, 0), raw(wrap, sizeof(wrap)),
	      raw(wrap, sizeof(wrap))},
	     {0, 1, 0, 1, 0},
	     1},
	    /* A mechanism kwire does not know: header plausibility ends it. */
	    {"X-CUSTOM", 2, {str_raw(other, sizeof(other) - 1), str_raw(other, 4)}, {0, 1}, 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* The fallback ends at the request itself, not at a token. */
		if (!strcmp(cases[i].mech, "X-CUSTOM")) {
			struct sasl_case *c = &cases[i];
			struct script sc = {0};
			static const uint8_t hs_req[] = {0,   8,   'X', '-', 'C',
			                                 'U', 'S', 'T', 'O', 'M'};
			static const uint8_t hs_resp[] = {0, 0, 0, 0, 0, 0};
			struct kd_stream *s = new_stream(1);

			add(&sc, KD_C2S, req(17, 0, 1, "auth-id", hs_req, sizeof(hs_req)));
			add(&sc, KD_S2C, resp(1, 0, hs_resp, sizeof(hs_resp)));
			add(&sc, KD_C2S, c->tok[0]);
			add(&sc, KD_S2C, c->tok[1]);
			add(&sc, KD_C2S, req(3, 1, 2, "another-client", filler, 4));
			add(&sc, KD_S2C, resp(2, 0, filler, 8));
			feed_script(s, &sc, SPLIT_BYTE, 0);
			assert_int_equal(nrecs, 6);
			assert_int_equal(recs[2].type, KD_EV_OPAQUE);
			assert_int_equal(recs[3].type, KD_EV_OPAQUE);
			assert_int_equal(recs[4].type, KD_EV_REQUEST);
			assert_true(recs[4].flags & KD_EVF_SASL_END);
			assert_int_equal(recs[5].type, KD_EV_RESPONSE);
			assert_int_equal(recs[5].req_key, 3);
			kd_stream_free(s);
			script_free(&sc);
			continue;
		}
		run_sasl_case(&cases[i]);
	}
}

/* A SaslHandshake request too short for its Mechanism's length: the
 * header parse must not ask for bytes past the frame (they are the next
 * frame's), whatever the split. Found by fuzz_stream. */
static void test_sasl_handshake_short(void **state)
{
	static const uint8_t one = 0;
	struct script sc = {0};

	(void)state;
	add(&sc, KD_C2S, req(17, 0, 1, "c", &one, 1));
	add(&sc, KD_C2S, req(3, 1, 2, "c", filler, 4));
	for (int mode = SPLIT_WHOLE; mode <= SPLIT_BYTE; mode++) {
		struct kd_stream *s = new_stream(1);

		feed_script(s, &sc, mode, 0);
		assert_int_equal(nrecs, 2);
		assert_int_equal(recs[0].key, 17);
		assert_int_equal(recs[1].type, KD_EV_REQUEST);
		assert_int_equal(recs[1].key, 3);
		assert_int_equal(recs[1].cid, 2);
		assert_int_equal(recs[1].frame_len, sc.st[1].f.len - 4);
		kd_stream_free(s);
	}
	script_free(&sc);
}

/* want_body decides per frame from the header. */
static int want_produce(void *arg, const struct kd_frame_info *fi)
{
	(void)arg;
	return fi->kind == KD_EV_REQUEST && fi->req_hdr.api_key == 0;
}

static void test_want_body(void **state)
{
	struct script sc = {0};
	struct kd_stream_cfg cfg = {0};
	struct kd_stream *s;

	(void)state;
	conversation(&sc);
	cfg.on_event = on_event;
	cfg.collect_bodies = 1;
	cfg.want_body = want_produce;
	s = kd_stream_new(&cfg);
	nrecs = 0;
	npops = 0;
	feed_script(s, &sc, SPLIT_BYTE, 0);
	assert_int_equal(nrecs, 17);
	for (int i = 0; i < nrecs; i++)
		assert_int_equal(!!(recs[i].flags & KD_EVF_BODY),
		                 recs[i].type == KD_EV_REQUEST && recs[i].key == 0);
	kd_stream_free(s);
	script_free(&sc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_conversation_splits),
	    cmocka_unit_test(test_begin_commit),
	    cmocka_unit_test(test_header_only_buffers),
	    cmocka_unit_test(test_garbage),
	    cmocka_unit_test(test_gap_requests),
	    cmocka_unit_test(test_gap_responses),
	    cmocka_unit_test(test_gap_random),
	    cmocka_unit_test(test_cid_mismatch),
	    cmocka_unit_test(test_midstream),
	    cmocka_unit_test(test_local_and_user),
	    cmocka_unit_test(test_set_user),
	    cmocka_unit_test(test_overflow),
	    cmocka_unit_test(test_sasl_modes),
	    cmocka_unit_test(test_sasl_v0_mechanisms),
	    cmocka_unit_test(test_sasl_handshake_short),
	    cmocka_unit_test(test_want_body),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
