/* test_clients.c: real traffic from real Kafka clients through the whole
 * decoder stack.
 *
 * For every scenario in $KWIRE_DATA/clients/ (made by
 * tools/capture-clients.sh, formats in docs/test-data.md) each TCP
 * connection of <scenario>.conv is fed to the stream decoder (kd-stream.h);
 * every request and response body is decoded with the generic tree
 * (kd-tree.h) and must re-encode byte-exactly; the RECORDS of Produce
 * requests and Fetch responses go through the record iterator
 * (kd-records.h). The decoded records must then be exactly what the
 * clients themselves reported in <scenario>.expected:
 *   - each produced record is in exactly one Produce request (no retries
 *     happened in these captures), with the codec the client was set to and
 *     the idempotent/transactional batch fields its flags say, and nothing
 *     else is produced;
 *   - each consumed record is in a Fetch response at its offset;
 *   - every record in every Fetch response is one that was produced, at the
 *     offset its delivery report gave, in a batch of the producer's codec.
 * Any decode error anywhere fails the scenario.
 *
 * Each scenario runs three ways: bytes fed as captured (one call per TCP
 * segment), re-split into 7-byte pieces, and coalesced (consecutive
 * segments of one direction in one call). All must give the same result.
 *
 * A scenario without a .conv is skipped: the big one (values near 1 MB)
 * is committed as big.pcapng.gz and a big.expected whose values are SHA-256
 * digests, without its ~10 MB .conv; integration/test_decode_records.py
 * checks its records through kwire decode. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kd-arena.h"
#include "kd-cur.h"
#include "kd-records.h"
#include "kd-stream.h"
#include "kd-tree.h"

enum { REC_PRODUCE = 0, REC_FETCH = 1 };

enum {
	EXPF_IDEMPOTENT = 1,
	EXPF_TXN = 2,
	EXPF_ABORTED = 4,
};

/* Feeding modes. */
enum { FEED_SEGMENTS = 0, FEED_SPLIT7, FEED_COALESCE, FEED_NMODES };
static const char *const feed_names[FEED_NMODES] = { "segments", "split7", "coalesced" };

/* One record, expected (from the .expected file) or decoded. data is
 * "keyhex TAB valuehex TAB headers" in the .expected notation, so that a
 * record compares with one strcmp. */
struct crec {
	int kind;        /* REC_* */
	char *topic;     /* decoded Fetch v13+: "id:<32 hex>" until resolved */
	int32_t partition;
	int64_t offset;  /* expected: from the client; decoded produce: unknown */
	int codec;       /* enum kd_codec; -1: any (expected fetch) */
	unsigned flags;  /* EXPF_* (expected) */
	int64_t producer_id; /* decoded: the batch's */
	int transactional;   /* decoded: the batch's */
	char *data;
	unsigned matched;
};

struct crec_list {
	struct crec *v;
	size_t n, cap;
};

struct topic_id {
	uint8_t id[16];
	char *name;
};

/* One connection of a .conv file: its segments in capture order. */
struct seg {
	int dir; /* enum kd_dir */
	uint8_t *p;
	size_t len;
};

struct conn {
	char name[96];
	struct seg *segs;
	size_t nsegs, cap;
};

struct run {
	const char *scenario;
	struct crec_list exp;
	struct crec_list dec;
	struct topic_id *ids;
	size_t nids, capids;
	struct kd_arena arena;
	const char *conn; /* name of the connection being fed */
	unsigned long frames, requests, responses, batches, control_batches, truncated;
	unsigned long errors;
	unsigned long quirks; /* mock ApiVersions error bodies seen */
	unsigned long inflight_end; /* requests unanswered at capture end */
	char first_err[512];
	unsigned long api_frames[128];
};

/* ---- small helpers ---- */

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	assert_non_null(q);
	return q;
}

static char *xstrndup(const char *s, size_t n)
{
	char *d = xrealloc(NULL, n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static void run_error(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void run_error(struct run *r, const char *fmt, ...)
{
	va_list ap;
	char msg[sizeof(r->first_err)];

	if (r->errors++ >= 8)
		return;
	int n = snprintf(msg, sizeof(msg), "%s: ", r->conn ? r->conn : "-");
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	print_message("  decode error: %s\n", msg);
	if (r->errors == 1)
		memcpy(r->first_err, msg, sizeof(msg));
}

static void w_hex(struct kd_wbuf *w, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	uint8_t *d = kd_wbuf_reserve(w, 2 * n);
	if (!d)
		return;
	for (size_t i = 0; i < n; i++) {
		d[2 * i] = (uint8_t)digits[p[i] >> 4];
		d[2 * i + 1] = (uint8_t)digits[p[i] & 15];
	}
	w->len += 2 * n;
}

static void w_str(struct kd_wbuf *w, const char *s)
{
	kd_w_raw(w, s, strlen(s));
}

static void w_view_hex(struct kd_wbuf *w, const struct kd_view *v)
{
	if (v->null)
		w_str(w, "-");
	else
		w_hex(w, v->p, v->len);
}

/* Takes w's bytes as a NUL-terminated string (w is emptied). */
static char *w_take(struct kd_wbuf *w)
{
	kd_w_raw(w, "", 1);
	assert_int_equal(w->err, KD_OK);
	char *s = (char *)w->p;
	memset(w, 0, sizeof(*w));
	return s;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static struct crec *crec_add(struct crec_list *l)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	struct crec *c = &l->v[l->n++];
	memset(c, 0, sizeof(*c));
	return c;
}

static void crec_list_free(struct crec_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].topic);
		free(l->v[i].data);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int codec_from_name(const char *s)
{
	static const char *const names[] = { "none", "gzip", "snappy", "lz4", "zstd" };
	for (int i = 0; i < 5; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -2;
}

static const char *data_dir(void)
{
	const char *d = getenv("KWIRE_DATA");
	return d && *d ? d : "tests/data";
}

/* ---- the .expected file ---- */

static void load_expected(struct run *r, const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned lineno = 0;

	if (!f)
		fail_msg("cannot open %s", path);
	while ((n = getline(&line, &cap, f)) > 0) {
		char *col[9];
		int ncol = 0;

		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		for (char *s = line; ncol < 9;) {
			col[ncol++] = s;
			char *t = strchr(s, '\t');
			if (!t)
				break;
			*t = '\0';
			s = t + 1;
		}
		if (ncol != 9)
			fail_msg("%s:%u: %d columns, want 9", path, lineno, ncol);
		struct crec *c = crec_add(&r->exp);
		if (!strcmp(col[0], "produce"))
			c->kind = REC_PRODUCE;
		else if (!strcmp(col[0], "fetch"))
			c->kind = REC_FETCH;
		else
			fail_msg("%s:%u: bad kind '%s'", path, lineno, col[0]);
		c->topic = xstrndup(col[1], strlen(col[1]));
		c->partition = (int32_t)strtol(col[2], NULL, 10);
		c->offset = strtoll(col[3], NULL, 10);
		c->codec = !strcmp(col[4], "*") ? -1 : codec_from_name(col[4]);
		if (c->codec == -2)
			fail_msg("%s:%u: bad codec '%s'", path, lineno, col[4]);
		if (strstr(col[5], "idempotent"))
			c->flags |= EXPF_IDEMPOTENT;
		if (strstr(col[5], "txn"))
			c->flags |= EXPF_TXN;
		if (strstr(col[5], "aborted"))
			c->flags |= EXPF_ABORTED;
		size_t dl = strlen(col[6]) + strlen(col[7]) + strlen(col[8]) + 3;
		c->data = xrealloc(NULL, dl);
		snprintf(c->data, dl, "%s\t%s\t%s", col[6], col[7], col[8]);
	}
	free(line);
	fclose(f);
}

/* ---- the .conv file ---- */

static void conns_free(struct conn *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < c[i].nsegs; j++)
			free(c[i].segs[j].p);
		free(c[i].segs);
	}
	free(c);
}

static struct conn *load_conv(const char *path, size_t *nconns)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, n = 0, ccap = 0;
	ssize_t len;
	struct conn *conns = NULL, *cur = NULL;
	unsigned lineno = 0;

	if (!f)
		fail_msg("cannot open %s", path);
	while ((len = getline(&line, &cap, f)) > 0) {
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		if (!strncmp(line, "conn ", 5)) {
			if (n == ccap) {
				ccap = ccap ? 2 * ccap : 16;
				conns = xrealloc(conns, ccap * sizeof(*conns));
			}
			cur = &conns[n++];
			memset(cur, 0, sizeof(*cur));
			snprintf(cur->name, sizeof(cur->name), "%s", line);
			continue;
		}
		if (!strcmp(line, "end")) {
			cur = NULL;
			continue;
		}
		if ((line[0] != 'C' && line[0] != 'S') || line[1] != ' ' || !cur || (len - 2) % 2)
			fail_msg("%s:%u: bad line", path, lineno);
		if (cur->nsegs == cur->cap) {
			cur->cap = cur->cap ? 2 * cur->cap : 32;
			cur->segs = xrealloc(cur->segs, cur->cap * sizeof(*cur->segs));
		}
		struct seg *s = &cur->segs[cur->nsegs++];
		s->dir = line[0] == 'C' ? KD_C2S : KD_S2C;
		s->len = (size_t)(len - 2) / 2;
		s->p = xrealloc(NULL, s->len ? s->len : 1);
		for (size_t i = 0; i < s->len; i++) {
			int hi = hexval(line[2 + 2 * i]), lo = hexval(line[3 + 2 * i]);
			if (hi < 0 || lo < 0)
				fail_msg("%s:%u: bad hex", path, lineno);
			s->p[i] = (uint8_t)(hi << 4 | lo);
		}
	}
	free(line);
	fclose(f);
	*nconns = n;
	return conns;
}

/* ---- decoding ---- */

/* Canonical "keyhex TAB valuehex TAB headers" of a record. */
static char *record_data(struct run *r, const struct kd_record *rec)
{
	struct kd_wbuf w = { 0 };
	struct kd_rec_hdr_iter hi;
	struct kd_header h;
	int nh = 0, rc;

	w_view_hex(&w, &rec->key);
	w_str(&w, "\t");
	w_view_hex(&w, &rec->value);
	w_str(&w, "\t");
	kd_rec_headers_init(&hi, rec);
	while ((rc = kd_rec_next_header(&hi, &h)) == 1) {
		if (nh++)
			w_str(&w, ";");
		kd_w_raw(&w, h.key.p, h.key.len);
		w_str(&w, "=");
		w_view_hex(&w, &h.value);
	}
	if (rc < 0)
		run_error(r, "record header walk: %d", rc);
	if (nh != rec->header_count)
		run_error(r, "%d headers walked, header_count %d", nh, rec->header_count);
	if (!nh)
		w_str(&w, "-");
	return w_take(&w);
}

static char *topic_id_name(const uint8_t id[16])
{
	struct kd_wbuf w = { 0 };
	w_str(&w, "id:");
	w_hex(&w, id, 16);
	return w_take(&w);
}

/* Walks one RECORDS blob of a Produce request or Fetch response partition
 * and appends its records to r->dec. */
static void scan_records(struct run *r, int kind, const char *topic, int32_t part,
			 const struct kd_view *blob)
{
	struct kd_rec_iter it;
	struct kd_batch *b;
	struct kd_record rec;
	int rc;

	if (blob->null || blob->len == 0)
		return;
	kd_rec_iter_init(&it, blob->p, blob->len, NULL);
	while ((rc = kd_rec_next_batch(&it, &b)) != 0) {
		if (rc == KD_REC_TRUNCATED) {
			/* Normal at the end of a Fetch partition, never in Produce. */
			if (kind == REC_PRODUCE)
				run_error(r, "%s[%d]: truncated batch in a Produce request", topic, part);
			r->truncated++;
			break;
		}
		if (rc < 0) {
			run_error(r, "%s[%d]: batch: %s (%d)", topic, part, it.err, rc);
			continue;
		}
		r->batches++;
		if (!b->crc_ok)
			run_error(r, "%s[%d]: batch at %zu: CRC mismatch", topic, part, b->pos);
		if (b->magic != 2)
			run_error(r, "%s[%d]: magic %d, all these clients send v2", topic, part,
				  b->magic);
		if (b->control)
			r->control_batches++;
		int nrec = 0;
		while ((rc = kd_rec_next_record(&it, &rec)) == 1) {
			nrec++;
			if (b->control)
				continue;
			struct crec *c = crec_add(&r->dec);
			c->kind = kind;
			c->topic = xstrndup(topic, strlen(topic));
			c->partition = part;
			c->offset = rec.offset;
			c->codec = b->codec;
			c->producer_id = b->producer_id;
			c->transactional = b->transactional;
			c->data = record_data(r, &rec);
		}
		if (rc < 0)
			run_error(r, "%s[%d]: record: %s (%d)", topic, part, it.err, rc);
		else if (nrec != b->record_count)
			run_error(r, "%s[%d]: %d records read, recordsCount %d", topic, part, nrec,
				  b->record_count);
	}
	kd_rec_iter_free(&it);
}

static char *view_str(const struct kd_node *n)
{
	if (!n || n->null)
		return NULL;
	return xstrndup((const char *)n->val.v.p, n->val.v.len);
}

static void on_produce_request(struct run *r, const struct kd_tree *t)
{
	struct kd_node *topics = kd_node_child(t->root, "TopicData");

	if (!topics) {
		run_error(r, "Produce v%d: no TopicData", t->version);
		return;
	}
	for (uint32_t i = 0; i < topics->nkids; i++) {
		struct kd_node *td = kd_node_elem(topics, i);
		char *name = view_str(kd_node_child(td, "Name"));
		struct kd_node *parts = kd_node_child(td, "PartitionData");
		if (!name || !parts) {
			run_error(r, "Produce: TopicData[%u] incomplete", i);
			free(name);
			continue;
		}
		for (uint32_t j = 0; j < parts->nkids; j++) {
			struct kd_node *pd = kd_node_elem(parts, j);
			struct kd_node *idx = kd_node_child(pd, "Index");
			struct kd_node *recs = kd_node_child(pd, "Records");
			if (!idx || !recs) {
				run_error(r, "Produce: %s PartitionData[%u] incomplete", name, j);
				continue;
			}
			scan_records(r, REC_PRODUCE, name, (int32_t)kd_node_int(idx), &recs->val.v);
		}
		free(name);
	}
}

static void on_fetch_response(struct run *r, const struct kd_tree *t)
{
	struct kd_node *topics = kd_node_child(t->root, "Responses");

	if (!topics) {
		run_error(r, "Fetch v%d: no Responses", t->version);
		return;
	}
	for (uint32_t i = 0; i < topics->nkids; i++) {
		struct kd_node *tr = kd_node_elem(topics, i);
		struct kd_node *tn = kd_node_child(tr, "Topic");
		struct kd_node *tid = kd_node_child(tr, "TopicId");
		struct kd_node *parts = kd_node_child(tr, "Partitions");
		/* Fetch v13+ names topics by TopicId (KIP-516): resolved later
		 * from the Metadata responses of the same scenario. */
		char *name = tn ? view_str(tn) : tid ? topic_id_name(tid->val.uuid) : NULL;
		if (!name || !parts) {
			run_error(r, "Fetch: Responses[%u] incomplete", i);
			free(name);
			continue;
		}
		for (uint32_t j = 0; j < parts->nkids; j++) {
			struct kd_node *pd = kd_node_elem(parts, j);
			struct kd_node *idx = kd_node_child(pd, "PartitionIndex");
			struct kd_node *recs = kd_node_child(pd, "Records");
			if (!idx || !recs) {
				run_error(r, "Fetch: %s Partitions[%u] incomplete", name, j);
				continue;
			}
			scan_records(r, REC_FETCH, name, (int32_t)kd_node_int(idx), &recs->val.v);
		}
		free(name);
	}
}

static void on_metadata_response(struct run *r, const struct kd_tree *t)
{
	struct kd_node *topics = kd_node_child(t->root, "Topics");

	for (uint32_t i = 0; topics && i < topics->nkids; i++) {
		struct kd_node *mt = kd_node_elem(topics, i);
		struct kd_node *tid = kd_node_child(mt, "TopicId");
		char *name = view_str(kd_node_child(mt, "Name"));
		static const uint8_t zero[16];
		if (!tid || !name || !memcmp(tid->val.uuid, zero, 16)) {
			free(name);
			continue;
		}
		if (r->nids == r->capids) {
			r->capids = r->capids ? 2 * r->capids : 16;
			r->ids = xrealloc(r->ids, r->capids * sizeof(*r->ids));
		}
		memcpy(r->ids[r->nids].id, tid->val.uuid, 16);
		r->ids[r->nids++].name = name;
	}
}

/* librdkafka 2.0.2's mock cluster answers an ApiVersions request it does
 * not support (v3 from librdkafka clients) with a body no spec version
 * describes (rdkafka_mock_handlers.c, rd_kafka_mock_handle_ApiVersion):
 *
 *   ErrorCode INT16 = 35 | count INT8 = N (not N+1) | N x {ApiKey INT16,
 *   MinVersion INT16, MaxVersion INT16} (no tagged fields) | ThrottleTimeMs
 *   INT32 (no tagged section)
 *
 * A real broker sends a v0 body there (KIP-511). The decoder rightly calls
 * this malformed; the test accepts exactly this layout and nothing else. */
static int mock_apiversions_quirk(const uint8_t *p, size_t len)
{
	return len >= 3 && p[0] == 0 && p[1] == 35 && len == 3 + 6 * (size_t)p[2] + 4;
}

static void on_event(void *arg, const struct kd_event *ev)
{
	struct run *r = arg;
	int16_t key, ver;
	int is_req;
	struct kd_tree t;
	struct kd_wbuf w = { 0 };

	r->frames++;
	switch (ev->type) {
	case KD_EV_REQUEST:
		r->requests++;
		key = ev->req_hdr.api_key;
		ver = ev->req_hdr.api_version;
		is_req = 1;
		break;
	case KD_EV_RESPONSE:
		r->responses++;
		if (ev->flags & KD_EVF_UNPAIRED) {
			run_error(r, "unpaired response, correlation id %d",
				  ev->resp_hdr.correlation_id);
			return;
		}
		key = ev->req.api_key;
		ver = ev->req.api_version;
		is_req = 0;
		break;
	default:
		run_error(r, "%s event at offset %llu: %s", kd_ev_type_name(ev->type),
			  (unsigned long long)ev->offset, ev->msg ? ev->msg : "");
		return;
	}
	if (ev->flags & (KD_EVF_UNKNOWN_API | KD_EVF_HDR_GUESS | KD_EVF_GAP | KD_EVF_CID_SKIP |
			 KD_EVF_OVERFLOW)) {
		run_error(r, "api %d v%d: unexpected event flags 0x%x", key, ver, ev->flags);
		return;
	}
	if (!(ev->flags & KD_EVF_BODY)) {
		run_error(r, "api %d v%d: no body collected", key, ver);
		return;
	}
	if (key >= 0 && key < 128)
		r->api_frames[key]++;

	kd_arena_reset(&r->arena);
	memset(&t, 0, sizeof(t));
	int rc = kd_tree_decode(&t, &r->arena, key, ver, is_req, ev->body.p, ev->body.len);
	if (rc != KD_OK && !is_req && key == 18 && mock_apiversions_quirk(ev->body.p, ev->body.len)) {
		r->quirks++;
		return;
	}
	if (rc != KD_OK) {
		run_error(r, "api %d v%d %s: tree decode %d at body offset %zu: %s", key, ver,
			  is_req ? "request" : "response", rc, t.err_off, t.err_msg);
		return;
	}
	/* An unedited tree re-encodes to the very bytes it came from. */
	rc = kd_tree_encode(&t, &w);
	if (rc != KD_OK || w.len != ev->body.len ||
	    (w.len && memcmp(w.p, ev->body.p, w.len)))
		run_error(r, "api %d v%d %s: re-encode differs (rc %d, %zu vs %u bytes)", key, ver,
			  is_req ? "request" : "response", rc, w.len, ev->body.len);
	kd_wbuf_free(&w);

	if (is_req && key == 0)
		on_produce_request(r, &t);
	else if (!is_req && key == 1)
		on_fetch_response(r, &t);
	else if (!is_req && key == 3)
		on_metadata_response(r, &t);
}

/* Feeds one connection in the given mode. */
static void feed_conn(struct run *r, const struct conn *c, int mode)
{
	struct kd_stream_cfg cfg = { 0 };
	struct kd_stream *s;
	uint64_t ts = 1000000;
	int rc = KD_OK;

	cfg.collect_bodies = 1;
	cfg.sasl = KD_SASL_OFF;
	cfg.on_event = on_event;
	cfg.arg = r;
	s = kd_stream_new(&cfg);
	assert_non_null(s);
	r->conn = c->name;

	for (size_t i = 0; i < c->nsegs && rc == KD_OK; i++) {
		const struct seg *sg = &c->segs[i];
		ts += 100;
		if (mode == FEED_SPLIT7) {
			for (size_t off = 0; off < sg->len && rc == KD_OK; off += 7) {
				size_t n = sg->len - off < 7 ? sg->len - off : 7;
				rc = kd_stream_feed(s, sg->dir, sg->p + off, n, ts);
			}
		} else if (mode == FEED_COALESCE) {
			size_t j = i, total = 0;
			while (j < c->nsegs && c->segs[j].dir == sg->dir)
				total += c->segs[j++].len;
			uint8_t *buf = xrealloc(NULL, total ? total : 1);
			size_t off = 0;
			for (size_t k = i; k < j; k++) {
				memcpy(buf + off, c->segs[k].p, c->segs[k].len);
				off += c->segs[k].len;
			}
			rc = kd_stream_feed(s, sg->dir, buf, total, ts);
			free(buf);
			i = j - 1;
		} else {
			rc = kd_stream_feed(s, sg->dir, sg->p, sg->len, ts);
		}
	}
	if (rc != KD_OK)
		run_error(r, "kd_stream_feed: %d", rc);
	const struct kd_stream_stats *st = kd_stream_stats(s);
	if (st->errors || st->skipped[0] || st->skipped[1] || st->unpaired || st->overflow)
		run_error(r, "stream stats: %llu errors, %llu+%llu skipped, %llu unpaired",
			  (unsigned long long)st->errors, (unsigned long long)st->skipped[0],
			  (unsigned long long)st->skipped[1], (unsigned long long)st->unpaired);
	/* A consumer that closes while its long-poll Fetch waits leaves that
	 * one request unanswered: counted, not an error. */
	r->inflight_end += st->inflight;
	kd_stream_free(s);
	r->conn = NULL;
}

/* ---- matching ---- */

static void resolve_topic_ids(struct run *r)
{
	for (size_t i = 0; i < r->dec.n; i++) {
		struct crec *c = &r->dec.v[i];
		if (strncmp(c->topic, "id:", 3))
			continue;
		for (size_t j = 0; j < r->nids; j++) {
			char *idn = topic_id_name(r->ids[j].id);
			int same = !strcmp(idn, c->topic);
			free(idn);
			if (same) {
				free(c->topic);
				c->topic = xstrndup(r->ids[j].name, strlen(r->ids[j].name));
				break;
			}
		}
	}
}

static int same_place(const struct crec *a, const struct crec *b)
{
	return a->partition == b->partition && !strcmp(a->topic, b->topic) &&
	       !strcmp(a->data, b->data);
}

static void short_desc(char *buf, size_t n, const struct crec *c)
{
	snprintf(buf, n, "%s %s[%d]@%lld %.60s", c->kind == REC_PRODUCE ? "produce" : "fetch",
		 c->topic, c->partition, (long long)c->offset, c->data);
}

static void check_matches(struct run *r)
{
	char d[256];
	size_t nexp_produce = 0, ndec_produce = 0, nfetch_dec = 0;

	for (size_t i = 0; i < r->dec.n; i++) {
		if (r->dec.v[i].kind == REC_PRODUCE)
			ndec_produce++;
		else
			nfetch_dec++;
	}
	for (size_t i = 0; i < r->exp.n; i++) {
		struct crec *e = &r->exp.v[i];
		short_desc(d, sizeof(d), e);
		if (e->kind == REC_PRODUCE) {
			nexp_produce++;
			unsigned hits = 0;
			for (size_t j = 0; j < r->dec.n; j++) {
				struct crec *c = &r->dec.v[j];
				if (c->kind != REC_PRODUCE || !same_place(c, e))
					continue;
				hits++;
				c->matched++;
				if (c->codec != e->codec)
					fail_msg("%s: %s sent with codec %s, expected %s", r->scenario, d,
						 kd_codec_name(c->codec), kd_codec_name(e->codec));
				if (!!(e->flags & EXPF_IDEMPOTENT) != (c->producer_id >= 0))
					fail_msg("%s: %s: producer id %lld", r->scenario, d,
						 (long long)c->producer_id);
				if (!!(e->flags & EXPF_TXN) != !!c->transactional)
					fail_msg("%s: %s: transactional bit %d", r->scenario, d,
						 c->transactional);
			}
			if (hits != 1)
				fail_msg("%s: %s found in %u Produce requests, want 1", r->scenario, d,
					 hits);
		} else {
			unsigned hits = 0;
			for (size_t j = 0; j < r->dec.n; j++) {
				const struct crec *c = &r->dec.v[j];
				if (c->kind == REC_FETCH && c->offset == e->offset && same_place(c, e))
					hits++;
			}
			if (!hits)
				fail_msg("%s: consumed %s not in any Fetch response", r->scenario, d);
		}
	}
	if (ndec_produce != nexp_produce) {
		for (size_t j = 0; j < r->dec.n; j++)
			if (r->dec.v[j].kind == REC_PRODUCE && !r->dec.v[j].matched) {
				short_desc(d, sizeof(d), &r->dec.v[j]);
				fail_msg("%s: %s in a Produce request but not delivered", r->scenario,
					 d);
			}
		fail_msg("%s: %zu records produced on the wire, %zu delivered", r->scenario,
			 ndec_produce, nexp_produce);
	}
	/* Whatever a Fetch response carries was produced: same place, same
	 * offset as its delivery report, same codec (the mock cluster stores
	 * batches as they came). */
	for (size_t j = 0; j < r->dec.n; j++) {
		const struct crec *c = &r->dec.v[j];
		if (c->kind != REC_FETCH)
			continue;
		const struct crec *p = NULL;
		for (size_t i = 0; i < r->exp.n && !p; i++) {
			const struct crec *e = &r->exp.v[i];
			if (e->kind == REC_PRODUCE && e->offset == c->offset && same_place(c, e))
				p = e;
		}
		short_desc(d, sizeof(d), c);
		if (!p)
			fail_msg("%s: fetched %s was never produced", r->scenario, d);
		if (p->codec != c->codec)
			fail_msg("%s: fetched %s in a %s batch, produced as %s", r->scenario, d,
				 kd_codec_name(c->codec), kd_codec_name(p->codec));
	}
	print_message("%s: %zu produced and %zu consumed records matched; %zu fetched records "
		      "checked\n",
		      r->scenario, nexp_produce, r->exp.n - nexp_produce, nfetch_dec);
}

/* ---- the tests ---- */

struct scenario_state {
	char name[64];
	int mode;
};

static void run_scenario(void **state)
{
	const struct scenario_state *ss = *state;
	struct run r;
	char path[4096];
	size_t nconns;
	struct conn *conns;

	memset(&r, 0, sizeof(r));
	r.scenario = ss->name;
	snprintf(path, sizeof(path), "%s/clients/%s.expected", data_dir(), ss->name);
	load_expected(&r, path);
	snprintf(path, sizeof(path), "%s/clients/%s.conv", data_dir(), ss->name);
	conns = load_conv(path, &nconns);
	assert_true(nconns > 0);
	assert_true(r.exp.n > 0);

	for (size_t i = 0; i < nconns; i++)
		feed_conn(&r, &conns[i], ss->mode);
	conns_free(conns, nconns);

	print_message("%s/%s: %lu frames (%lu requests, %lu responses), %lu batches (%lu "
		      "control, %lu truncated), %lu Produce + %lu Fetch frames, %lu unanswered at "
		      "the end, %lu mock ApiVersions quirks\n",
		      ss->name, feed_names[ss->mode], r.frames, r.requests, r.responses,
		      r.batches, r.control_batches, r.truncated, r.api_frames[0],
		      r.api_frames[1], r.inflight_end, r.quirks);
	if (r.errors)
		fail_msg("%s/%s: %lu decode errors; first: %s", ss->name, feed_names[ss->mode],
			 r.errors, r.first_err);
	resolve_topic_ids(&r);
	check_matches(&r);

	crec_list_free(&r.exp);
	crec_list_free(&r.dec);
	for (size_t i = 0; i < r.nids; i++)
		free(r.ids[i].name);
	free(r.ids);
	kd_arena_free(&r.arena);
}

/* The scenarios tools/capture-clients.sh makes must all be there. */
static void test_all_scenarios_present(void **state)
{
	static const char *const need[] = { "kcat", "kafka-python", "confluent", "large",
					    "kafkajs", "sarama", "modern-kcat",
					    "modern-confluent" };
	char path[4096];

	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		for (int k = 0; k < 2; k++) {
			snprintf(path, sizeof(path), "%s/clients/%s.%s", data_dir(), need[i],
				 k ? "conv" : "expected");
			FILE *f = fopen(path, "r");
			if (!f)
				fail_msg("missing %s", path);
			fclose(f);
		}
	}
}

static int by_name(const void *a, const void *b)
{
	const struct scenario_state *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : x->mode - y->mode;
}

int main(void)
{
	char dir[4096], path[4096 + 256];
	DIR *d;
	struct dirent *de;
	struct scenario_state *ss = NULL;
	size_t nss = 0, capss = 0;

	snprintf(dir, sizeof(dir), "%s/clients", data_dir());
	d = opendir(dir);
	if (d) {
		while ((de = readdir(d))) {
			size_t l = strlen(de->d_name);
			if (l <= 9 || l - 9 >= sizeof(ss->name) ||
			    strcmp(de->d_name + l - 9, ".expected"))
				continue;
			snprintf(path, sizeof(path), "%s/%.*s.conv", dir, (int)(l - 9), de->d_name);
			if (access(path, R_OK)) {
				print_message("%.*s: no .conv, skipped\n", (int)(l - 9), de->d_name);
				continue;
			}
			if (nss + FEED_NMODES > capss) {
				capss = capss ? 2 * capss : 32;
				ss = realloc(ss, capss * sizeof(*ss));
				if (!ss)
					return 1;
			}
			for (int m = 0; m < FEED_NMODES; m++) {
				memcpy(ss[nss].name, de->d_name, l - 9);
				ss[nss].name[l - 9] = '\0';
				ss[nss++].mode = m;
			}
		}
		closedir(d);
	}
	if (nss)
		qsort(ss, nss, sizeof(*ss), by_name);

	struct CMUnitTest *tests = calloc(nss + 1, sizeof(*tests));
	char (*names)[96] = calloc(nss + 1, sizeof(*names));
	if (!tests || !names)
		return 1;
	tests[0].name = "all_scenarios_present";
	tests[0].test_func = test_all_scenarios_present;
	for (size_t i = 0; i < nss; i++) {
		snprintf(names[i], sizeof(names[i]), "%s/%s", ss[i].name, feed_names[ss[i].mode]);
		tests[i + 1].name = names[i];
		tests[i + 1].test_func = run_scenario;
		tests[i + 1].initial_state = &ss[i];
	}
	int rc = _cmocka_run_group_tests("clients", tests, nss + 1, NULL, NULL);
	free(tests);
	free(names);
	free(ss);
	return rc;
}
