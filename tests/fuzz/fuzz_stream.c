/* fuzz_stream.c: a stream decoder driven by a script.
 *
 * Input: byte 0 configures the stream (bit 0 collect bodies, bit 1
 * mid-connection start, bits 2-3 SASL mode, bit 4 tiny in-flight FIFO,
 * bit 5 small max frame). Then a series of operations, each one byte:
 *   bit 0     direction
 *   bits 1-2  0, 1: feed the next (bits 3-7 + 1) bytes of input
 *             2:    feed the next (next byte * 8 + 1) bytes
 *             3:    gap of (bits 3-7 * 37 + 1) bytes
 * Collected bodies of requests and paired responses are decoded with
 * kd_tree_decode. The checks: no crash, no leak, counters consistent, and
 * the same script fed again with every chunk cut into 1-byte pieces gives
 * the same events (timestamps aside). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd-arena.h"
#include "kd-stream.h"
#include "kd-tree.h"

struct fctx {
	struct kd_arena arena;
	uint64_t events;
	uint64_t hash; /* over every event's split-independent fields */
	int decode;
};

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
	return h;
}

static void on_event(void *arg, const struct kd_event *ev)
{
	struct fctx *c = arg;
	struct kd_tree t;
	int16_t key = -1, ver = -1;
	int is_req = 0;

	c->events++;
	if (ev->type == KD_EV_ERROR && !ev->msg)
		abort();
	c->hash = mix(c->hash, ev->type | (uint64_t)ev->dir << 8 | (uint64_t)ev->flags << 16 |
	                           (uint64_t)(uint32_t)ev->err << 32);
	c->hash = mix(c->hash, ev->frame_len | (uint64_t)ev->offset << 32);
	c->hash = mix(c->hash, ev->skipped ^ ev->lost << 32 ^ (uint64_t)ev->popped << 48);
	c->hash = mix(c->hash, (uint64_t)(uint32_t)ev->req_hdr.correlation_id |
	                           (uint64_t)(uint32_t)ev->resp_hdr.correlation_id << 32);
	c->hash = mix(c->hash, (uint64_t)(uint32_t)ev->req.correlation_id |
	                           (uint64_t)(uint16_t)ev->req_hdr.api_key << 32 |
	                           (uint64_t)(uint16_t)ev->acks << 48);
	if (!(ev->flags & KD_EVF_BODY))
		return;
	for (uint32_t i = 0; i < ev->body.len; i++)
		c->hash = mix(c->hash, ev->body.p[i]);
	if (!c->decode)
		return;
	if (ev->frame.len != 4 + (uint64_t)ev->frame_len || ev->body.p < ev->frame.p ||
	    ev->body.p + ev->body.len != ev->frame.p + ev->frame.len)
		abort();
	if (ev->type == KD_EV_REQUEST) {
		key = ev->req_hdr.api_key;
		ver = ev->req_hdr.api_version;
		is_req = 1;
	} else if (ev->type == KD_EV_RESPONSE && !(ev->flags & KD_EVF_UNPAIRED)) {
		key = ev->req.api_key;
		ver = ev->req.api_version;
	} else {
		return;
	}
	memset(&t, 0, sizeof(t));
	kd_tree_decode(&t, &c->arena, key, ver, is_req, ev->body.p, ev->body.len);
	kd_arena_reset(&c->arena);
}

/* Runs the script; split1 feeds every chunk one byte at a time. */
static void run(const uint8_t *data, size_t size, int split1, struct fctx *c)
{
	struct kd_stream_cfg cfg = {0};
	struct kd_stream *s;
	size_t i = 1;

	cfg.collect_bodies = data[0] & 1;
	cfg.midstream = (data[0] >> 1) & 1;
	cfg.sasl = (uint8_t)(((data[0] >> 2) & 3) % 3);
	cfg.max_inflight = (data[0] & 0x10) ? 3 : 0;
	cfg.max_frame = (data[0] & 0x20) ? 4096 : 1u << 20;
	cfg.on_event = on_event;
	cfg.arg = c;
	c->arena.limit = 1u << 22;
	s = kd_stream_new(&cfg);
	if (!s)
		abort();
	while (i < size) {
		uint8_t op = data[i++];
		enum kd_dir dir = (enum kd_dir)(op & 1);
		unsigned kind = (op >> 1) & 3;
		size_t n;

		if (kind == 3) {
			kd_stream_gap(s, dir, (uint64_t)(op >> 3) * 37 + 1);
			continue;
		}
		if (kind == 2) {
			if (i >= size)
				break;
			n = (size_t)data[i++] * 8 + 1;
		} else {
			n = (size_t)(op >> 3) + 1;
		}
		if (n > size - i)
			n = size - i;
		if (split1)
			for (size_t k = 0; k < n; k++)
				kd_stream_feed(s, dir, data + i + k, 1, i + k);
		else
			kd_stream_feed(s, dir, data + i, n, i);
		i += n;
	}
	{
		const struct kd_stream_stats *st = kd_stream_stats(s);

		if (st->frames[0] + st->frames[1] + st->errors > c->events)
			abort();
		if (st->inflight >
		    (cfg.max_inflight ? cfg.max_inflight : KD_STREAM_MAX_INFLIGHT_DEFAULT))
			abort();
	}
	kd_stream_free(s);
	kd_arena_free(&c->arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fctx a = {0}, b = {0};

	if (size < 1)
		return 0;
	a.decode = 1;
	run(data, size, 0, &a);
	if (size <= 4096) {
		run(data, size, 1, &b);
		if (a.events != b.events || a.hash != b.hash)
			abort();
	}
	return 0;
}
