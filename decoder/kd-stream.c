/* kd-stream.c: the stream decoder (kd-stream.h).
 *
 * Per direction a small state machine:
 *
 *   HEAD --(size + header parsed)--> BODY (collecting) or SKIP (not) --> HEAD
 *     \                                                                 /
 *      `------- whole frame inside one chunk: zero-copy commit --------'
 *   RESYNC: after a gap, or at a mid-connection start; looks for a
 *           provable frame start, then hands the bytes from there to HEAD.
 *   BROKEN: garbage was seen; input is ignored (KD_EBROKEN).
 *
 * kd_stream_feed() is built on frame_begin()/commit_frame(), the same
 * functions behind kd_stream_frame_begin()/kd_stream_frame_commit().
 *
 * SASL v0 (KIP-43; docs/protocol.html "SASL Authentication Sequence"):
 * after a SaslHandshake v0 response with ErrorCode 0, client frames are
 * bare SASL tokens and each server frame that follows a pending token is
 * the server's token. The wire has no end-of-SASL marker, so the stream
 * follows the exchange of the mechanism the handshake named, and the
 * server's replies say when it ends (struct sasl_track):
 *
 *   PLAIN (RFC 4616)        client token; server reply (empty): done
 *   SCRAM-SHA-256/512       client-first, server-first, client-final,
 *   (RFC 5802)              server-final: done
 *   OAUTHBEARER (RFC 7628)  client token; server reply: empty is success,
 *                           done; else an error JSON, the client answers
 *                           one kvsep byte (the last token: no reply)
 *   GSSAPI (RFC 4752)       Kerberos context tokens until the server sends
 *                           a Wrap token (the security layer offer, RFC
 *                           4752 3.1); the client's answer is the last token
 *                           and gets no frame back (SaslServerAuthenticator
 *                           sends nothing when evaluateResponse() is null)
 *
 * A failed exchange ends with the broker closing the connection. After the
 * end, framing is normal whatever the client id. Where the end cannot be
 * known (a mechanism kwire does not know, a GSSAPI reply it cannot
 * classify), the client side falls back to header plausibility: the first
 * client frame that passes kd_req_plausible ends the exchange. Real tokens
 * cannot pass it (PLAIN starts with a NUL or the authzid, SCRAM with "n,",
 * GSSAPI with the ASN.1 byte 0x60), and a client sends no Kafka request
 * before authentication ends. Tokens still unanswered then are dropped from
 * the in-flight FIFO without counting them as lost. The server side needs
 * no mode: a server frame is a token exactly when the oldest in-flight
 * entry is a client token. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd-stream.h"
#include "kd-sasl.h"
#include "kd-schema.h"

enum {
	ST_HEAD = 0,
	ST_BODY,
	ST_SKIP,
	ST_RESYNC,
	ST_BROKEN,
};

/* Interned client ids: bounded so a hostile peer cannot grow them. */
#define INTERN_MAX 256
#define INTERN_BYTES_MAX (1u << 20)
#define FIFO_MIN 16

struct dirst {
	uint8_t state;
	uint8_t collect;      /* BODY: bytes are kept */
	uint8_t gap_in_frame; /* the current frame lost bytes */
	uint8_t *buf;         /* header or whole-frame assembly */
	size_t blen;
	size_t bcap;
	size_t need;   /* HEAD with blen > 0: bytes wanted before retrying */
	uint64_t left; /* BODY/SKIP: frame bytes still to come */
	struct kd_frame_info fi;
	uint64_t ts_first;
	uint64_t ts_last;   /* timestamp of the last bytes fed */
	uint64_t off;       /* stream offset of the next byte (lost bytes included) */
	uint64_t frame_off; /* stream offset of the current frame */
	/* RESYNC */
	uint8_t *rbuf;
	size_t rstart;
	size_t rlen;
	uint64_t rskipped;
	uint64_t rlost;
	uint64_t roff; /* stream offset where the skipped bytes begin */
};

struct intern {
	uint8_t *p;
	uint32_t len;
};

/* The SASL v0 exchange being followed (see the top of this file). */
struct sasl_track {
	uint8_t mech;     /* enum kd_sasl_mech */
	uint8_t stok;     /* server tokens so far */
	uint8_t last;     /* the next client token is the last one (no reply) */
	uint8_t fallback; /* end unknown: a plausible request ends the exchange */
};

/* What a server token does to the exchange (kd_frame_info.sasl_step). */
enum {
	SASL_GO_ON = 0,
	SASL_DONE,     /* the exchange is over */
	SASL_LAST,     /* the client's next token is its last */
	SASL_FALLBACK, /* the end cannot be known: plausibility decides */
};

struct kd_stream {
	struct kd_stream_cfg cfg;
	struct dirst d[2];
	struct kd_req_info *fifo; /* ring: fhead is the oldest */
	uint32_t fhead;
	uint32_t fcount;
	uint32_t fcap;
	struct intern *ids;
	unsigned nids;
	size_t id_bytes;
	unsigned id_last;
	uint8_t c2s_opaque;
	uint8_t pushed_now; /* the event being delivered pushed the newest entry */
	struct sasl_track sasl;
	struct kd_view last_client_id; /* interned; last seen request's */
	struct kd_stream_stats st;
	char msg[192];
};

static const uint8_t id_overflow[] = "<too many client ids>";

/* ---- helpers ---- */

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* A stable copy of a client id, owned by the stream. */
static struct kd_view intern(struct kd_stream *s, struct kd_view v)
{
	struct kd_view out = {0};
	struct intern *e;

	if (v.null || !v.p) {
		out.null = 1;
		return out;
	}
	if (s->nids && s->ids[s->id_last].len == v.len &&
	    memcmp(s->ids[s->id_last].p, v.p, v.len) == 0) {
		e = &s->ids[s->id_last];
		goto found;
	}
	for (unsigned i = 0; i < s->nids; i++) {
		if (s->ids[i].len == v.len && memcmp(s->ids[i].p, v.p, v.len) == 0) {
			s->id_last = i;
			e = &s->ids[i];
			goto found;
		}
	}
	if (s->nids >= INTERN_MAX || s->id_bytes + v.len > INTERN_BYTES_MAX)
		goto overflow;
	if (!s->ids) {
		s->ids = calloc(INTERN_MAX, sizeof(*s->ids));
		if (!s->ids)
			goto overflow;
	}
	e = &s->ids[s->nids];
	e->p = malloc(v.len ? v.len : 1);
	if (!e->p)
		goto overflow;
	memcpy(e->p, v.p, v.len);
	e->len = v.len;
	s->id_bytes += v.len;
	s->id_last = s->nids++;
found:
	out.p = e->p;
	out.len = e->len;
	return out;
overflow:
	out.p = id_overflow;
	out.len = sizeof(id_overflow) - 1;
	return out;
}

static struct kd_req_info *fifo_at(struct kd_stream *s, uint32_t i)
{
	return &s->fifo[(s->fhead + i) % s->fcap];
}

static void fifo_pop(struct kd_stream *s, uint32_t n)
{
	s->fhead = (s->fhead + n) % (s->fcap ? s->fcap : 1);
	s->fcount -= n;
	s->st.inflight = s->fcount;
}

static void emit(struct kd_stream *s, struct kd_event *ev);

/* Tells the caller that entry e leaves the FIFO without a response
 * (KD_EV_POPPED, why: KD_EVF_* reason). A local entry is not counted as
 * unanswered: its answer is the caller's. */
static void popped(struct kd_stream *s, const struct kd_req_info *e, uint16_t why)
{
	struct kd_event ev = {0};

	ev.type = KD_EV_POPPED;
	ev.dir = KD_C2S;
	ev.flags = (uint16_t)(why | (e->local ? KD_EVF_LOCAL : 0));
	ev.req = *e;
	ev.ts_us = e->ts_us;
	ev.ts_end_us = e->ts_us;
	if (!e->local)
		s->st.unanswered++;
	emit(s, &ev);
}

/* Pops the n oldest entries, each announced as popped for why. */
static void fifo_pop_announce(struct kd_stream *s, uint32_t n, uint16_t why)
{
	while (n--) {
		struct kd_req_info e = *fifo_at(s, 0);

		fifo_pop(s, 1);
		popped(s, &e, why);
	}
}

/* Appends an entry; when the FIFO is at max_inflight the oldest entry is
 * dropped (and announced) and 1 is returned. KD_ENOMEM when growing
 * fails. */
static int fifo_push(struct kd_stream *s, const struct kd_req_info *info)
{
	int dropped = 0;

	if (s->fcount >= s->cfg.max_inflight) {
		fifo_pop_announce(s, 1, KD_EVF_OVERFLOW);
		s->st.overflow++;
		dropped = 1;
	}
	if (s->fcount == s->fcap) {
		uint32_t ncap = s->fcap ? s->fcap * 2 : FIFO_MIN;
		struct kd_req_info *n;

		if (ncap > s->cfg.max_inflight)
			ncap = s->cfg.max_inflight;
		n = malloc((size_t)ncap * sizeof(*n));
		if (!n)
			return KD_ENOMEM;
		for (uint32_t i = 0; i < s->fcount; i++)
			n[i] = *fifo_at(s, i);
		free(s->fifo);
		s->fifo = n;
		s->fcap = ncap;
		s->fhead = 0;
	}
	*fifo_at(s, s->fcount) = *info;
	s->fcount++;
	s->st.inflight = s->fcount;
	return dropped;
}

/* Index of the oldest in-flight Kafka request (not a token, not one the
 * caller answers) with this correlation id at or after index from, or
 * -1. */
static int32_t fifo_find(struct kd_stream *s, int32_t cid, uint32_t from)
{
	for (uint32_t i = from; i < s->fcount; i++) {
		struct kd_req_info *e = fifo_at(s, i);

		if (!e->opaque && !e->local && e->correlation_id == cid)
			return (int32_t)i;
	}
	return -1;
}

/* Index of the oldest entry a peer's frame can answer (not a local
 * one), or -1. */
static int32_t fifo_first_remote(struct kd_stream *s)
{
	for (uint32_t i = 0; i < s->fcount; i++)
		if (!fifo_at(s, i)->local)
			return (int32_t)i;
	return -1;
}

/* Whether the peer's next frame answers a SASL token. */
static int token_in_flight(struct kd_stream *s)
{
	int32_t i = fifo_first_remote(s);

	return i >= 0 && fifo_at(s, (uint32_t)i)->opaque;
}

/* Removes every SASL token entry, keeping the order of the rest; each
 * removed one is announced once the FIFO is consistent again. A client
 * has one token in flight at a time, so gone[] is a bound no exchange
 * reaches; should one, the rest are removed unannounced (their user
 * values are the caller's to forget). */
static void fifo_drop_tokens(struct kd_stream *s)
{
	uint32_t w = 0, n = s->fcount;
	struct kd_req_info gone[8];
	unsigned ngone = 0;

	for (uint32_t i = 0; i < n; i++) {
		struct kd_req_info e = *fifo_at(s, i);

		if (!e.opaque)
			*fifo_at(s, w++) = e;
		else if (ngone < sizeof(gone) / sizeof(gone[0]))
			gone[ngone++] = e;
	}
	s->fcount = w;
	s->st.inflight = w;
	for (unsigned i = 0; i < ngone; i++)
		popped(s, &gone[i], KD_EVF_SASL_END);
}

static void emit(struct kd_stream *s, struct kd_event *ev)
{
	if (s->cfg.on_event)
		s->cfg.on_event(s->cfg.arg, ev);
}

/* Marks dir broken and reports why. Returns KD_EBROKEN-free rc for callers
 * that return the original error. */
static int break_dir(struct kd_stream *s, enum kd_dir dir, int rc, uint64_t off)
{
	struct kd_event ev = {0};

	s->d[dir].state = ST_BROKEN;
	s->st.errors++;
	ev.type = KD_EV_ERROR;
	ev.dir = (uint8_t)dir;
	ev.err = rc;
	ev.msg = s->msg;
	ev.offset = off;
	emit(s, &ev);
	return rc;
}

static int ensure_cap(struct kd_stream *s, struct dirst *d, size_t n)
{
	uint8_t *nb;
	size_t ncap;

	if (d->bcap >= n)
		return KD_OK;
	ncap = d->bcap ? d->bcap : 256;
	while (ncap < n)
		ncap *= 2;
	nb = realloc(d->buf, ncap);
	if (!nb)
		return KD_ENOMEM;
	d->buf = nb;
	d->bcap = ncap;
	(void)s;
	return KD_OK;
}

static int buf_append(struct kd_stream *s, struct dirst *d, const uint8_t *p, size_t n)
{
	if (ensure_cap(s, d, d->blen + n) != KD_OK)
		return KD_ENOMEM;
	memcpy(d->buf + d->blen, p, n);
	d->blen += n;
	s->st.buffered += n;
	return KD_OK;
}

/* ---- frame begin ---- */

/* Reads Produce Acks (v0-2: the first field; v3+: after TransactionalId,
 * MSG/ProduceRequest.json) from the body at p + pos, frame bytes lim. */
static int produce_acks(struct kd_frame_info *fi, const uint8_t *p, size_t avail, size_t total)
{
	size_t lim = min_sz(avail, total);
	size_t pos = 4 + fi->req_hdr.len;
	int16_t ver = fi->req_hdr.api_version;
	struct kd_cur cur;
	int16_t acks;
	int rc = KD_OK;

	if (!kd_msgdef_get(KD_API_PRODUCE, ver, 1))
		return KD_OK; /* unknown version: no way to find Acks */
	kd_cur_init(&cur, p, lim);
	cur.off = pos;
	if (ver >= 3) {
		int compact = fi->req_hdr.hdr_version >= 2;
		int32_t n;

		rc = kd_cur_len(&cur, compact, 2, &n);
		if (rc == KD_ESHORT)
			goto short_;
		if (rc != KD_OK) {
			/* Malformed body: Acks unknown. Report the bytes this
			 * decision looked at (a varint has at most 5). */
			fi->need = (uint32_t)min_sz(lim, pos + 5);
			return KD_OK;
		}
		if (n > 0 && kd_cur_skip(&cur, (size_t)n) != KD_OK) {
			fi->need = (uint32_t)min_sz(cur.off + (size_t)n + 2, total);
			goto short_;
		}
	}
	rc = kd_cur_i16(&cur, &acks);
	if (rc != KD_OK) {
		fi->need = (uint32_t)min_sz(cur.off + 2, total);
		goto short_;
	}
	fi->acks = acks;
	fi->need = (uint32_t)cur.off;
	if (acks == 0)
		fi->flags |= KD_EVF_NO_RESPONSE;
	return KD_OK;
short_:
	if (lim >= total) {
		fi->need = (uint32_t)total;
		return KD_OK; /* the body ends first: Acks unknown, expect a response */
	}
	if (fi->need <= avail)
		fi->need = (uint32_t)min_sz(avail + 1, total);
	return KD_NEED_MORE;
}

/* Reads the Mechanism of a SaslHandshake request (its first field, a
 * STRING in every version: MSG/SaslHandshakeRequest.json) into
 * fi->sasl_mech. Names longer than KD_SASL_MECH_NAME_MAX, or a body too
 * short for its name, give KD_SASL_MECH_OTHER. */
static int handshake_mech(struct kd_frame_info *fi, const uint8_t *p, size_t avail, size_t total)
{
	size_t lim = min_sz(avail, total);
	size_t pos = 4 + fi->req_hdr.len;
	int16_t n;

	fi->sasl_mech = KD_SASL_MECH_OTHER;
	if (pos + 2 > lim) {
		if (lim >= total) {
			fi->need = (uint32_t)total;
			return KD_OK;
		}
		/* Never past the frame: the bytes after it are the next frame's. */
		fi->need = (uint32_t)min_sz(pos + 2, total);
		return KD_NEED_MORE;
	}
	n = (int16_t)kd_load_be(p + pos, 2);
	fi->need = (uint32_t)(pos + 2);
	if (n < 0 || n > KD_SASL_MECH_NAME_MAX || pos + 2 + (size_t)n > total)
		return KD_OK;
	if (pos + 2 + (size_t)n > avail) {
		fi->need = (uint32_t)(pos + 2 + (size_t)n);
		return KD_NEED_MORE;
	}
	fi->sasl_mech = (uint8_t)kd_sasl_mech_parse(p + pos + 2, (size_t)n);
	fi->need = (uint32_t)(pos + 2 + (size_t)n);
	return KD_OK;
}

static int begin_request(struct kd_stream *s, const uint8_t *p, size_t avail,
                         struct kd_frame_info *fi)
{
	size_t total = 4 + (size_t)fi->size;
	size_t lim = min_sz(avail, total);
	size_t hneed = 0;
	int rc;

	rc = kd_req_hdr_parse_n(p + 4, lim - 4, &fi->req_hdr, &hneed);
	if (rc == KD_NEED_MORE) {
		if (lim >= total) {
			snprintf(s->msg, sizeof(s->msg),
			         "request frame of %u bytes is too short for its header", fi->size);
			return KD_ESHORT;
		}
		/* Exact: waiting for this many bytes decodes as if we retried at
		 * every byte, so the result does not depend on the split. */
		fi->need = (uint32_t)min_sz(4 + hneed, total);
		return KD_NEED_MORE;
	}
	if (rc < 0) {
		snprintf(s->msg, sizeof(s->msg), "malformed request header (api key %d v%d): %s",
		         fi->req_hdr.api_key, fi->req_hdr.api_version,
		         rc == KD_EMALFORMED ? "bad client id length or tagged fields" : "error");
		return rc;
	}
	fi->kind = KD_EV_REQUEST;
	fi->need = 4 + fi->req_hdr.len;
	if (fi->req_hdr.guessed)
		fi->flags |= KD_EVF_HDR_GUESS;
	if (!kd_msgdef_get(fi->req_hdr.api_key, fi->req_hdr.api_version, 1))
		fi->flags |= KD_EVF_UNKNOWN_API;
	fi->req_hdr.client_id = intern(s, fi->req_hdr.client_id);
	if (fi->req_hdr.api_key == KD_API_PRODUCE)
		return produce_acks(fi, p, avail, total);
	if (fi->req_hdr.api_key == KD_API_SASL_HANDSHAKE && !(fi->flags & KD_EVF_UNKNOWN_API))
		return handshake_mech(fi, p, avail, total);
	return KD_OK;
}

static int begin_response(struct kd_stream *s, const uint8_t *p, size_t avail,
                          struct kd_frame_info *fi)
{
	size_t total = 4 + (size_t)fi->size;
	size_t lim = min_sz(avail, total);
	int16_t key = -1, ver = -1;
	int32_t cid;
	size_t hneed = 0;
	int rc;

	if (fi->size < 4) {
		snprintf(s->msg, sizeof(s->msg),
		         "response frame of %u bytes cannot hold a correlation id", fi->size);
		return KD_EMALFORMED;
	}
	if (avail < 8) {
		fi->need = 8;
		return KD_NEED_MORE;
	}
	cid = (int32_t)kd_load_be(p + 4, 4);
	fi->match = fifo_find(s, cid, 0);
	if (fi->match >= 0) {
		fi->req = *fifo_at(s, (uint32_t)fi->match);
		key = fi->req.api_key;
		ver = fi->req.api_version;
		for (uint32_t i = 0; i < (uint32_t)fi->match; i++)
			if (!fifo_at(s, i)->local)
				fi->flags |= KD_EVF_CID_SKIP;
	} else {
		fi->flags |= KD_EVF_UNPAIRED | KD_EVF_HDR_GUESS;
	}
	rc = kd_resp_hdr_parse_n(p + 4, lim - 4, key, ver, &fi->resp_hdr, &hneed);
	if (rc == KD_NEED_MORE) {
		if (lim >= total) {
			snprintf(s->msg, sizeof(s->msg),
			         "response frame of %u bytes is too short for its header",
			         fi->size);
			return KD_ESHORT;
		}
		fi->need = (uint32_t)min_sz(4 + hneed, total);
		return KD_NEED_MORE;
	}
	if (rc < 0) {
		snprintf(s->msg, sizeof(s->msg),
		         "malformed response header (correlation id %d): bad tagged fields", cid);
		return rc;
	}
	fi->kind = KD_EV_RESPONSE;
	fi->need = 4 + fi->resp_hdr.len;
	if (fi->match >= 0 && fi->resp_hdr.guessed)
		fi->flags |= KD_EVF_HDR_GUESS | KD_EVF_UNKNOWN_API;
	if (key == KD_API_SASL_HANDSHAKE && ver == 0) {
		/* ErrorCode is the body's first field (MSG/SaslHandshakeResponse.json). */
		size_t pos = fi->need;

		if (pos + 2 <= lim) {
			fi->error_code = (int16_t)kd_load_be(p + pos, 2);
			fi->need = (uint32_t)(pos + 2);
		} else if (lim < total) {
			fi->need = (uint32_t)min_sz(pos + 2, total);
			return KD_NEED_MORE;
		} else {
			fi->error_code = -1; /* truncated: not a success */
			fi->need = (uint32_t)total;
		}
	}
	return KD_OK;
}

/* Client frame in opaque mode: a token (the last one when the exchange
 * says so), or, when the end of the exchange cannot be known, the Kafka
 * request that ends it (see the top of this file). */
static int begin_c2s_opaque(struct kd_stream *s, const uint8_t *p, size_t avail,
                            struct kd_frame_info *fi)
{
	size_t total = 4 + (size_t)fi->size;
	size_t need = 4;

	if (s->sasl.fallback) {
		int r = kd_req_plausible_n(p, min_sz(avail, total), s->cfg.max_frame, &need);

		if (r == KD_NEED_MORE) {
			if (avail >= total) {
				r = 0;
				need = total;
			} else {
				fi->need = (uint32_t)min_sz(need > avail ? need : avail + 1, total);
				return KD_NEED_MORE;
			}
		}
		if (r == 1) {
			int rc = begin_request(s, p, avail, fi);

			fi->flags |= KD_EVF_SASL_END;
			return rc;
		}
	}
	/* need: the bytes the decision looked at; re-parsing just those
	 * reaches the same decision. */
	fi->kind = KD_EV_OPAQUE;
	fi->sasl_mech = s->sasl.mech;
	fi->need = (uint32_t)min_sz(need > 4 ? need : 4, min_sz(avail, total));
	if (s->sasl.last)
		fi->flags |= KD_EVF_NO_RESPONSE | KD_EVF_SASL_END;
	return KD_OK;
}

/* Server frame answering a client token: what it does to the exchange
 * (fi->sasl_step). GSSAPI looks at the token's first bytes. */
static int begin_s2c_opaque(struct kd_stream *s, const uint8_t *p, size_t avail,
                            struct kd_frame_info *fi)
{
	size_t total = 4 + (size_t)fi->size;
	const struct sasl_track *t = &s->sasl;
	int step = SASL_GO_ON;

	fi->kind = KD_EV_OPAQUE;
	fi->match = fifo_first_remote(s);
	fi->req = *fifo_at(s, (uint32_t)fi->match);
	fi->sasl_mech = t->mech;
	fi->need = 4;
	if (t->fallback)
		goto out;
	switch (t->mech) {
	case KD_SASL_MECH_PLAIN:
		step = SASL_DONE;
		break;
	case KD_SASL_MECH_SCRAM_SHA_256:
	case KD_SASL_MECH_SCRAM_SHA_512:
		step = t->stok >= 1 ? SASL_DONE : SASL_GO_ON;
		break;
	case KD_SASL_MECH_OAUTHBEARER:
		step = fi->size == 0 ? SASL_DONE : SASL_LAST;
		break;
	case KD_SASL_MECH_GSSAPI: {
		size_t look = min_sz(total, 4 + KD_GSS_CLASSIFY_BYTES);

		if (avail < look) {
			fi->need = (uint32_t)look;
			return KD_NEED_MORE;
		}
		fi->need = (uint32_t)look;
		switch (kd_gss_classify(p + 4, look - 4, fi->size)) {
		case KD_GSS_EMPTY:
		case KD_GSS_AP_REP:
		case KD_GSS_ERROR:
			step = SASL_GO_ON;
			break;
		case KD_GSS_WRAP:
			step = SASL_LAST;
			break;
		default:
			step = SASL_FALLBACK;
			break;
		}
		break;
	}
	default:
		step = SASL_FALLBACK;
		break;
	}
out:
	fi->sasl_step = (uint8_t)step;
	if (step == SASL_DONE)
		fi->flags |= KD_EVF_SASL_END;
	return KD_OK;
}

/* The one frame parser behind both interfaces; does not report errors. */
static int frame_begin(struct kd_stream *s, enum kd_dir dir, const uint8_t *p, size_t avail,
                       struct kd_frame_info *fi)
{
	int32_t size;

	memset(fi, 0, sizeof(*fi));
	fi->dir = (uint8_t)dir;
	fi->match = -1;
	fi->acks = -2;
	fi->req_hdr.client_id.null = 1;
	if (avail < 4) {
		fi->need = 4;
		return KD_NEED_MORE;
	}
	size = (int32_t)kd_load_be(p, 4);
	if (size < 0) {
		snprintf(s->msg, sizeof(s->msg), "negative frame size %d (0x%08x)", size,
		         (unsigned)size);
		return KD_EMALFORMED;
	}
	if ((uint32_t)size > s->cfg.max_frame) {
		snprintf(s->msg, sizeof(s->msg), "frame size %d over the limit of %u bytes", size,
		         s->cfg.max_frame);
		return KD_ELIMIT;
	}
	fi->size = (uint32_t)size;
	if (dir == KD_C2S) {
		if (s->c2s_opaque)
			return begin_c2s_opaque(s, p, avail, fi);
		if (size < 8) {
			snprintf(s->msg, sizeof(s->msg),
			         "request frame of %d bytes cannot hold a request header", size);
			return KD_EMALFORMED;
		}
		return begin_request(s, p, avail, fi);
	}
	if (token_in_flight(s))
		return begin_s2c_opaque(s, p, avail, fi);
	return begin_response(s, p, avail, fi);
}

int kd_stream_frame_begin(struct kd_stream *s, enum kd_dir dir, const uint8_t *p, size_t avail,
                          struct kd_frame_info *fi)
{
	int rc;

	if (s->d[dir].state == ST_BROKEN)
		return KD_EBROKEN;
	rc = frame_begin(s, dir, p, avail, fi);
	if (rc < 0 && rc != KD_NEED_MORE)
		break_dir(s, dir, rc, s->d[dir].off);
	return rc;
}

/* ---- commit ---- */

/* A SaslHandshake v0 succeeded: the client's frames are tokens of mech. */
static void sasl_begin(struct kd_stream *s, int mech)
{
	memset(&s->sasl, 0, sizeof(s->sasl));
	s->sasl.mech = (uint8_t)mech;
	switch (mech) {
	case KD_SASL_MECH_PLAIN:
	case KD_SASL_MECH_SCRAM_SHA_256:
	case KD_SASL_MECH_SCRAM_SHA_512:
	case KD_SASL_MECH_OAUTHBEARER:
	case KD_SASL_MECH_GSSAPI:
		break;
	default:
		s->sasl.fallback = 1;
	}
	s->c2s_opaque = 1;
}

/* The exchange is over: normal framing, and no token stays in flight. */
static void sasl_end(struct kd_stream *s)
{
	s->c2s_opaque = 0;
	fifo_drop_tokens(s);
}

static int commit_frame(struct kd_stream *s, enum kd_dir dir, struct kd_frame_info *fi,
                        const uint8_t *frame, uint64_t ts_first, uint64_t ts_end, uint64_t off)
{
	struct kd_event ev = {0};
	struct kd_req_info info = {0};
	int rc;

	ev.type = fi->kind;
	ev.dir = (uint8_t)dir;
	ev.flags = fi->flags;
	ev.ts_us = ts_first;
	ev.ts_end_us = ts_end;
	ev.offset = off;
	ev.frame_len = fi->size;
	ev.acks = fi->acks;
	ev.req_hdr = fi->req_hdr;
	ev.resp_hdr = fi->resp_hdr;
	if (frame) {
		uint32_t hl = fi->kind == KD_EV_REQUEST    ? fi->req_hdr.len
		              : fi->kind == KD_EV_RESPONSE ? fi->resp_hdr.len
		                                           : 0;

		ev.flags |= KD_EVF_BODY;
		ev.frame.p = frame;
		ev.frame.len = 4 + fi->size;
		ev.body.p = frame + 4 + hl;
		ev.body.len = fi->size - hl;
	}

	switch (fi->kind) {
	case KD_EV_REQUEST:
		if (fi->flags & KD_EVF_SASL_END)
			sasl_end(s);
		s->last_client_id = fi->req_hdr.client_id;
		ev.sasl_mech = fi->sasl_mech;
		s->st.requests++;
		if (fi->req_hdr.api_key == KD_API_PRODUCE && fi->acks == 0) {
			ev.flags |= KD_EVF_NO_RESPONSE;
			s->st.no_response++;
			break;
		}
		if (fi->flags & KD_EVF_LOCAL) {
			s->st.no_response++; /* from the peer */
			info.local = 1;
		}
		info.api_key = fi->req_hdr.api_key;
		info.api_version = fi->req_hdr.api_version;
		info.correlation_id = fi->req_hdr.correlation_id;
		info.client_id = fi->req_hdr.client_id;
		info.ts_us = ts_first;
		info.user = fi->user;
		info.hdr_version = fi->req_hdr.hdr_version;
		info.sasl_mech = fi->sasl_mech;
		goto push;
	case KD_EV_RESPONSE:
		/* Re-find: the client side may have changed the FIFO since begin. */
		fi->match = fifo_find(s, fi->resp_hdr.correlation_id, 0);
		s->st.responses++;
		if (fi->match < 0) {
			ev.flags |= KD_EVF_UNPAIRED | KD_EVF_HDR_GUESS;
			ev.flags &= (uint16_t)~KD_EVF_CID_SKIP;
			s->st.unpaired++;
			break;
		}
		ev.flags &= (uint16_t)~KD_EVF_UNPAIRED;
		ev.req = *fifo_at(s, (uint32_t)fi->match);
		ev.latency_us = (int64_t)(ts_end - ev.req.ts_us);
		if (fi->match > 0) {
			/* Older entries leave first: the caller's answers to local
			 * ones, then the unanswered (each announced). */
			uint64_t before = s->st.unanswered;

			fifo_pop_announce(s, (uint32_t)fi->match, KD_EVF_CID_SKIP);
			if (s->st.unanswered > before) {
				ev.flags |= KD_EVF_CID_SKIP;
				ev.popped = (uint32_t)(s->st.unanswered - before);
			} else {
				ev.flags &= (uint16_t)~KD_EVF_CID_SKIP;
			}
		} else {
			ev.flags &= (uint16_t)~KD_EVF_CID_SKIP;
		}
		fifo_pop(s, 1);
		if (ev.req.api_key == KD_API_SASL_HANDSHAKE && ev.req.api_version == 0 &&
		    fi->error_code == 0 && s->cfg.sasl != KD_SASL_OFF)
			sasl_begin(s, ev.req.sasl_mech);
		break;
	case KD_EV_OPAQUE:
		s->st.opaque++;
		ev.sasl_mech = fi->sasl_mech;
		if (dir == KD_C2S) {
			if (fi->flags & KD_EVF_SASL_END)
				sasl_end(s);
			if (fi->flags & KD_EVF_NO_RESPONSE)
				break; /* the last token: nothing answers it */
			if (fi->flags & KD_EVF_LOCAL) {
				s->st.no_response++; /* the caller answers it */
				info.local = 1;
			}
			info.api_key = -1;
			info.api_version = -1;
			info.correlation_id = -1;
			info.client_id.null = 1;
			info.ts_us = ts_first;
			info.user = fi->user;
			info.opaque = 1;
			goto push;
		}
		if (token_in_flight(s)) {
			uint32_t k = (uint32_t)fifo_first_remote(s);

			ev.req = *fifo_at(s, k);
			ev.latency_us = (int64_t)(ts_end - ev.req.ts_us);
			fifo_pop_announce(s, k, 0); /* local answers before it */
			fifo_pop(s, 1);
		} else {
			ev.flags |= KD_EVF_UNPAIRED;
		}
		if (s->sasl.stok < UINT8_MAX)
			s->sasl.stok++;
		switch (fi->sasl_step) {
		case SASL_DONE:
			sasl_end(s);
			break;
		case SASL_LAST:
			s->sasl.last = 1;
			break;
		case SASL_FALLBACK:
			s->sasl.fallback = 1;
			break;
		}
		break;
	default:
		assert(!"frame_info without a kind");
		return KD_EMALFORMED;
	}
	goto deliver;
push:
	rc = fifo_push(s, &info);
	if (rc < 0) {
		snprintf(s->msg, sizeof(s->msg), "out of memory growing the in-flight FIFO");
		return break_dir(s, dir, KD_ENOMEM, off);
	}
	if (rc == 1)
		ev.flags |= KD_EVF_OVERFLOW;
	s->pushed_now = 1;
deliver:
	/* The caller of kd_stream_frame_commit reads what commit learned. */
	fi->flags = (uint16_t)(ev.flags & ~KD_EVF_BODY);
	s->st.frames[dir]++;
	emit(s, &ev);
	s->pushed_now = 0;
	return KD_OK;
}

void kd_stream_sasl_v0(struct kd_stream *s, int mech)
{
	if (mech == KD_SASL_MECH_NONE) {
		sasl_end(s);
		return;
	}
	sasl_begin(s, mech);
	s->sasl.fallback = 0; /* the caller says when it ends */
}

int kd_stream_frame_commit(struct kd_stream *s, enum kd_dir dir, struct kd_frame_info *fi,
                           const uint8_t *frame, uint64_t ts_us)
{
	struct dirst *d = &s->d[dir];
	uint64_t off = d->off;

	if (d->state == ST_BROKEN)
		return KD_EBROKEN;
	d->off += 4 + (uint64_t)fi->size;
	s->st.bytes[dir] += 4 + (uint64_t)fi->size;
	return commit_frame(s, dir, fi, frame, fi->ts_us ? fi->ts_us : ts_us, ts_us, off);
}

/* ---- resync ---- */

/* Bytes of lookahead a candidate may need; frames longer than this are
 * accepted on their own plausibility. */
#define RESYNC_LOOK (KD_STREAM_RESYNC_WINDOW - 2048)

static int same_id(struct kd_view a, struct kd_view b)
{
	return !a.null && !b.null && a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}

/* Is p (len bytes) a provable request frame start? 1 / 0 / KD_NEED_MORE.
 * Plausible, and then either its client id is the one this connection
 * used before (at least 3 bytes: a strong match), or the next frame is
 * plausible too, or the frame is too long to look past. */
static int cand_request(struct kd_stream *s, const uint8_t *p, size_t len)
{
	uint32_t max = s->cfg.max_frame;
	int r = kd_req_plausible(p, len, max);
	struct kd_req_hdr h;
	size_t j;

	if (r != 1)
		return r;
	if (s->last_client_id.len >= 3 && kd_req_hdr_parse(p + 4, len - 4, &h) > 0 &&
	    same_id(h.client_id, s->last_client_id))
		return 1;
	j = 4 + (size_t)kd_load_be(p, 4);
	if (j > RESYNC_LOOK)
		return 1;
	if (len <= j)
		return KD_NEED_MORE;
	return kd_req_plausible(p + j, len - j, max);
}

/* Is p a provable response frame start? Its correlation id is in flight,
 * its header parses, and the next response answers a later request (or
 * the frame is too long to look past). */
static int cand_response(struct kd_stream *s, const uint8_t *p, size_t len)
{
	struct kd_resp_hdr h;
	struct kd_req_info *e;
	int32_t size, k, k2;
	size_t j;
	int rc;

	if (len < 8)
		return KD_NEED_MORE;
	size = (int32_t)kd_load_be(p, 4);
	if (size < 4 || (uint32_t)size > s->cfg.max_frame)
		return 0;
	k = fifo_find(s, (int32_t)kd_load_be(p + 4, 4), 0);
	if (k < 0)
		return 0;
	e = fifo_at(s, (uint32_t)k);
	j = 4 + (size_t)size;
	rc = kd_resp_hdr_parse(p + 4, min_sz(len, j) - 4, e->api_key, e->api_version, &h);
	if (rc == KD_NEED_MORE && len < j)
		return KD_NEED_MORE;
	if (rc < 0)
		return 0;
	if (j > RESYNC_LOOK)
		return 1;
	if (len < j + 8)
		return KD_NEED_MORE;
	size = (int32_t)kd_load_be(p + j, 4);
	if (size < 4 || (uint32_t)size > s->cfg.max_frame)
		return 0;
	k2 = fifo_find(s, (int32_t)kd_load_be(p + j + 4, 4), (uint32_t)k + 1);
	return k2 > k;
}

static void enter_resync(struct kd_stream *s, enum kd_dir dir, uint64_t skipped, uint64_t lost)
{
	struct dirst *d = &s->d[dir];

	if (d->state != ST_RESYNC) {
		d->state = ST_RESYNC;
		d->rstart = d->rlen = 0;
		d->rskipped = 0;
		d->rlost = 0;
		d->roff = d->off - lost - skipped;
	}
	d->rskipped += skipped;
	d->rlost += lost;
	d->blen = 0;
	d->gap_in_frame = 0;
}

static int feed_dir(struct kd_stream *s, enum kd_dir dir, const uint8_t *p, size_t len,
                    uint64_t ts);

/* Takes input into the resync window and scans it. Consumes *len bytes
 * (all, or up to where normal decoding took over). */
static int resync_step(struct kd_stream *s, enum kd_dir dir, const uint8_t **pp, size_t *lenp,
                       uint64_t ts)
{
	struct dirst *d = &s->d[dir];
	size_t n, i;
	int r = 0;

	if (!d->rbuf) {
		d->rbuf = malloc(KD_STREAM_RESYNC_WINDOW);
		if (!d->rbuf)
			return KD_ENOMEM;
	}
	if (d->rstart > 0 && d->rlen == KD_STREAM_RESYNC_WINDOW) {
		memmove(d->rbuf, d->rbuf + d->rstart, d->rlen - d->rstart);
		d->rlen -= d->rstart;
		d->rstart = 0;
	}
	n = min_sz(*lenp, KD_STREAM_RESYNC_WINDOW - d->rlen);
	memcpy(d->rbuf + d->rlen, *pp, n);
	d->rlen += n;
	d->off += n;
	s->st.buffered += n;
	*pp += n;
	*lenp -= n;

	for (i = d->rstart; i < d->rlen; i++) {
		const uint8_t *c = d->rbuf + i;
		size_t clen = d->rlen - i;

		r = dir == KD_C2S ? cand_request(s, c, clen) : cand_response(s, c, clen);
		/* A full window must decide, or the scan would stall. */
		if (r == KD_NEED_MORE && clen >= KD_STREAM_RESYNC_WINDOW)
			r = 0;
		if (r != 0)
			break;
	}
	d->rskipped += i - d->rstart;
	d->rstart = i;
	if (r == 1) {
		struct kd_event ev = {0};
		uint8_t *rb = d->rbuf;
		size_t rest = d->rlen - i;
		int rc;

		if (d->rskipped || d->rlost) {
			ev.type = KD_EV_SKIP;
			ev.dir = (uint8_t)dir;
			ev.ts_us = ev.ts_end_us = ts;
			ev.offset = d->roff;
			ev.skipped = d->rskipped;
			ev.lost = d->rlost;
			s->st.skipped[dir] += d->rskipped;
			emit(s, &ev);
		}
		d->state = ST_HEAD;
		d->blen = 0;
		/* Hand the window to the normal path; it is ours again after. */
		d->rbuf = NULL;
		d->off -= rest;
		rc = feed_dir(s, dir, rb + i, rest, ts);
		if (d->rbuf)
			free(rb);
		else
			d->rbuf = rb;
		return rc;
	}
	if (d->rstart == d->rlen)
		d->rstart = d->rlen = 0;
	return KD_OK;
}

/* ---- feeding ---- */

static int want_body(struct kd_stream *s, const struct kd_frame_info *fi)
{
	if (!s->cfg.collect_bodies)
		return 0;
	return s->cfg.want_body ? s->cfg.want_body(s->cfg.arg, fi) != 0 : 1;
}

static int fail(struct kd_stream *s, enum kd_dir dir, int rc)
{
	if (rc == KD_ENOMEM)
		snprintf(s->msg, sizeof(s->msg), "out of memory assembling a frame");
	break_dir(s, dir, rc, s->d[dir].frame_off);
	return KD_EBROKEN;
}

/* The header of the current frame is complete in d->buf (fi parsed from
 * it); goes on to BODY, SKIP or commits at once. */
static int head_done(struct kd_stream *s, enum kd_dir dir, uint64_t ts)
{
	struct dirst *d = &s->d[dir];
	uint64_t total = 4 + (uint64_t)d->fi.size;
	int rc;

	if (d->blen >= total) {
		d->state = ST_HEAD;
		d->blen = 0;
		rc = commit_frame(s, dir, &d->fi, want_body(s, &d->fi) ? d->buf : NULL, d->ts_first,
		                  ts, d->frame_off);
		return rc == KD_OK ? KD_OK : KD_EBROKEN;
	}
	d->left = total - d->blen;
	d->collect = (uint8_t)want_body(s, &d->fi);
	if (d->collect) {
		uint8_t *old = d->buf;

		if (ensure_cap(s, d, (size_t)total) != KD_OK)
			return fail(s, dir, KD_ENOMEM);
		/* The views in fi (tagged sections) must follow the buffer. */
		if (d->buf != old && frame_begin(s, dir, d->buf, d->blen, &d->fi) != KD_OK)
			return fail(s, dir, KD_EMALFORMED);
		d->state = ST_BODY;
	} else {
		d->state = ST_SKIP;
	}
	return KD_OK;
}

static int frame_end(struct kd_stream *s, enum kd_dir dir, uint64_t ts)
{
	struct dirst *d = &s->d[dir];
	const uint8_t *frame = d->collect && !d->gap_in_frame ? d->buf : NULL;
	int rc;

	if (d->gap_in_frame)
		d->fi.flags |= KD_EVF_GAP;
	d->state = ST_HEAD;
	d->blen = 0;
	d->gap_in_frame = 0;
	rc = commit_frame(s, dir, &d->fi, frame, d->ts_first, ts, d->frame_off);
	return rc == KD_OK ? KD_OK : KD_EBROKEN;
}

static int feed_dir(struct kd_stream *s, enum kd_dir dir, const uint8_t *p, size_t len, uint64_t ts)
{
	struct dirst *d = &s->d[dir];
	int rc;

	while (len > 0) {
		switch (d->state) {
		case ST_BROKEN:
			return KD_EBROKEN;
		case ST_RESYNC:
			rc = resync_step(s, dir, &p, &len, ts);
			if (rc != KD_OK)
				return rc == KD_ENOMEM ? fail(s, dir, rc) : rc;
			break;
		case ST_HEAD:
			if (d->blen == 0) {
				d->frame_off = d->off;
				d->ts_first = ts;
				rc = frame_begin(s, dir, p, len, &d->fi);
				if (rc == KD_OK && len >= 4 + (size_t)d->fi.size) {
					/* Whole frame in this chunk: zero-copy. */
					size_t total = 4 + (size_t)d->fi.size;

					d->off += total;
					rc = commit_frame(s, dir, &d->fi,
					                  want_body(s, &d->fi) ? p : NULL, ts, ts,
					                  d->frame_off);
					if (rc != KD_OK)
						return KD_EBROKEN;
					p += total;
					len -= total;
					break;
				}
				if (rc == KD_NEED_MORE) {
					d->need = d->fi.need;
					if (buf_append(s, d, p, len) != KD_OK)
						return fail(s, dir, KD_ENOMEM);
					d->off += len;
					len = 0;
					break;
				}
				if (rc < 0)
					return fail(s, dir, rc);
				/* Header here, body continues: keep the header
				 * (the whole frame so far when collecting) and
				 * re-parse so the views point into our buffer. */
				{
					size_t total = 4 + (size_t)d->fi.size;
					int collect = want_body(s, &d->fi);
					size_t keep = collect ? len : d->fi.need;

					if (collect && ensure_cap(s, d, total) != KD_OK)
						return fail(s, dir, KD_ENOMEM);
					if (buf_append(s, d, p, keep) != KD_OK)
						return fail(s, dir, KD_ENOMEM);
					rc = frame_begin(s, dir, d->buf, d->blen, &d->fi);
					/* fi.need covers every byte the decision looked
					 * at, so the re-parse agrees. */
					assert(rc == KD_OK);
					if (rc != KD_OK)
						return fail(s, dir, rc < 0 ? rc : KD_EMALFORMED);
					d->collect = (uint8_t)collect;
					d->state = collect ? ST_BODY : ST_SKIP;
					d->left = total - len;
					d->off += len;
					p += len;
					len = 0;
				}
				break;
			}
			/* Completing a header split across chunks. */
			{
				size_t n = min_sz(len, d->need - d->blen);

				if (buf_append(s, d, p, n) != KD_OK)
					return fail(s, dir, KD_ENOMEM);
				d->off += n;
				p += n;
				len -= n;
				if (d->blen < d->need)
					break;
				rc = frame_begin(s, dir, d->buf, d->blen, &d->fi);
				if (rc == KD_NEED_MORE) {
					d->need = d->fi.need;
					/* Progress: begin must ask for more than it had. */
					assert(d->need > d->blen);
					if (d->need <= d->blen)
						return fail(s, dir, KD_EMALFORMED);
					break;
				}
				if (rc < 0)
					return fail(s, dir, rc);
				rc = head_done(s, dir, ts);
				if (rc != KD_OK)
					return rc;
			}
			break;
		case ST_BODY: {
			size_t n = (size_t)(d->left < len ? d->left : len);

			memcpy(d->buf + d->blen, p, n);
			d->blen += n;
			s->st.buffered += n;
			d->off += n;
			d->left -= n;
			p += n;
			len -= n;
			if (d->left == 0 && (rc = frame_end(s, dir, ts)) != KD_OK)
				return rc;
			break;
		}
		case ST_SKIP: {
			size_t n = (size_t)(d->left < len ? d->left : len);

			d->off += n;
			d->left -= n;
			p += n;
			len -= n;
			if (d->left == 0 && (rc = frame_end(s, dir, ts)) != KD_OK)
				return rc;
			break;
		}
		}
	}
	return d->state == ST_BROKEN ? KD_EBROKEN : KD_OK;
}

int kd_stream_feed(struct kd_stream *s, enum kd_dir dir, const uint8_t *p, size_t len,
                   uint64_t ts_us)
{
	if (s->d[dir].state == ST_BROKEN)
		return KD_EBROKEN;
	s->st.bytes[dir] += len;
	s->d[dir].ts_last = ts_us;
	return feed_dir(s, dir, p, len, ts_us);
}

int kd_stream_gap(struct kd_stream *s, enum kd_dir dir, uint64_t nbytes_lost)
{
	struct dirst *d = &s->d[dir];
	uint64_t skipped = 0;
	int rc;

	if (d->state == ST_BROKEN)
		return KD_EBROKEN;
	if (nbytes_lost == 0)
		return KD_OK;
	s->st.gaps[dir]++;
	s->st.lost[dir] += nbytes_lost;
	s->st.bytes[dir] += nbytes_lost;
	if (d->state == ST_HEAD && d->blen > 0) {
		/* The header may be complete in the bytes buffered so far even
		 * though more were asked for (need grows geometrically): decide
		 * with what arrived, as if it had come in one chunk. */
		rc = frame_begin(s, dir, d->buf, d->blen, &d->fi);
		if (rc < 0 && rc != KD_NEED_MORE)
			return fail(s, dir, rc);
		if (rc == KD_OK && (rc = head_done(s, dir, d->ts_last)) != KD_OK)
			return rc;
	}
	d->off += nbytes_lost;
	switch (d->state) {
	case ST_BODY:
	case ST_SKIP:
		/* The header is known: the gap costs this frame its body. */
		d->gap_in_frame = 1;
		d->state = ST_SKIP;
		if (nbytes_lost < d->left) {
			d->left -= nbytes_lost;
			return KD_OK;
		}
		nbytes_lost -= d->left;
		d->left = 0;
		rc = frame_end(s, dir, d->ts_last);
		if (rc != KD_OK)
			return rc;
		if (nbytes_lost == 0)
			return KD_OK; /* the gap ended exactly at a frame boundary */
		break;
	case ST_HEAD:
		skipped = d->blen; /* a partial header, now useless */
		break;
	case ST_RESYNC:
		/* Nothing in the window can continue across the gap. */
		d->rskipped += d->rlen - d->rstart;
		d->rstart = d->rlen = 0;
		break;
	}
	enter_resync(s, dir, skipped, nbytes_lost);
	return KD_OK;
}

/* ---- lifetime ---- */

static void init_state(struct kd_stream *s)
{
	for (int dir = 0; dir < 2; dir++)
		s->d[dir].state = s->cfg.midstream ? ST_RESYNC : ST_HEAD;
	/* Kafka 0.9 clients start GSSAPI with no SaslHandshake. */
	if (s->cfg.sasl == KD_SASL_LEGACY)
		sasl_begin(s, KD_SASL_MECH_GSSAPI);
	s->last_client_id.null = 1;
}

struct kd_stream *kd_stream_new(const struct kd_stream_cfg *cfg)
{
	struct kd_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->cfg = *cfg;
	if (!s->cfg.max_frame)
		s->cfg.max_frame = KD_STREAM_MAX_FRAME_DEFAULT;
	if (s->cfg.max_frame > INT32_MAX)
		s->cfg.max_frame = INT32_MAX;
	if (!s->cfg.max_inflight)
		s->cfg.max_inflight = KD_STREAM_MAX_INFLIGHT_DEFAULT;
	init_state(s);
	return s;
}

static void release(struct kd_stream *s)
{
	for (int dir = 0; dir < 2; dir++) {
		free(s->d[dir].buf);
		free(s->d[dir].rbuf);
	}
	for (unsigned i = 0; i < s->nids; i++)
		free(s->ids[i].p);
	free(s->ids);
	free(s->fifo);
}

void kd_stream_free(struct kd_stream *s)
{
	if (!s)
		return;
	release(s);
	free(s);
}

void kd_stream_reset(struct kd_stream *s)
{
	struct kd_stream_cfg cfg = s->cfg;

	release(s);
	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	init_state(s);
}

int kd_stream_pop_local(struct kd_stream *s, struct kd_req_info *out)
{
	if (!s->fcount || !fifo_at(s, 0)->local)
		return 0;
	*out = *fifo_at(s, 0);
	fifo_pop(s, 1);
	return 1;
}

int kd_stream_set_user(struct kd_stream *s, uint64_t user)
{
	if (!s->pushed_now || !s->fcount)
		return -1;
	fifo_at(s, s->fcount - 1)->user = user;
	return 0;
}

void kd_stream_drain(struct kd_stream *s)
{
	fifo_pop_announce(s, s->fcount, 0);
}

uint32_t kd_stream_inflight(const struct kd_stream *s)
{
	return s->fcount;
}

const struct kd_stream_stats *kd_stream_stats(const struct kd_stream *s)
{
	return &s->st;
}

int kd_stream_dir_state(const struct kd_stream *s, enum kd_dir dir)
{
	switch (s->d[dir].state) {
	case ST_BROKEN:
		return 1;
	case ST_RESYNC:
		return 2;
	}
	return 0;
}

int kd_stream_in_sasl(const struct kd_stream *s)
{
	return s->c2s_opaque;
}

const char *kd_ev_type_name(int type)
{
	switch (type) {
	case KD_EV_REQUEST:
		return "request";
	case KD_EV_RESPONSE:
		return "response";
	case KD_EV_OPAQUE:
		return "opaque";
	case KD_EV_ERROR:
		return "error";
	case KD_EV_SKIP:
		return "skip";
	case KD_EV_POPPED:
		return "popped";
	}
	return "?";
}
