/* cap-frag.c: IPv4 and IPv6 fragment reassembly with bounded memory and
 * time.
 *
 * A datagram is identified by (af, src, dst, id, protocol) (RFC 791 for
 * IPv4; RFC 8200 section 4.5 for IPv6, where the protocol comes from the
 * fragment header). Limits: at most ft->max datagrams and ft->mem_max
 * bytes in flight (the oldest datagrams are dropped to make room), and a
 * datagram whose fragments have not all come within ft->timeout_us of
 * capture time is dropped. Overlaps: the first copy of each 8-byte block
 * wins; fragments that contradict the datagram's length drop it. */
#include <stdlib.h>
#include <string.h>

#include "cap-int.h"

#define DG_MAX 65535u /* the largest datagram payload we accept */

static void unlink_dg(struct cap_fragtab *ft, struct cap_dg *dg)
{
	if (dg->prev)
		dg->prev->next = dg->next;
	else
		ft->head = dg->next;
	if (dg->next)
		dg->next->prev = dg->prev;
	else
		ft->tail = dg->prev;
	ft->n--;
	ft->mem -= sizeof(*dg) + dg->cap;
}

static void free_dg(struct cap_fragtab *ft, struct cap_dg *dg)
{
	unlink_dg(ft, dg);
	free(dg->buf);
	free(dg);
}

void cap_frag_release(struct cap_fragtab *ft, struct cap_dg *dg)
{
	free_dg(ft, dg);
}

void cap_frag_expire(struct cap_fragtab *ft, int64_t now_us, struct cap_stats *st)
{
	while (ft->head && (now_us == INT64_MAX || now_us - ft->head->first_us > ft->timeout_us)) {
		st->frag_dropped++;
		free_dg(ft, ft->head);
	}
}

static struct cap_dg *find_dg(struct cap_fragtab *ft, const struct cap_frag_info *fi)
{
	/* newest first: fragments of one datagram come close together */
	for (struct cap_dg *dg = ft->tail; dg; dg = dg->prev)
		if (dg->id == fi->id && dg->af == fi->af && dg->proto == fi->proto &&
		    !memcmp(dg->saddr, fi->saddr, 16) && !memcmp(dg->daddr, fi->daddr, 16))
			return dg;
	return NULL;
}

/* Grows dg->buf to hold end bytes, within the memory cap (dropping older
 * datagrams first). Returns 0 or -1. */
static int grow(struct cap_fragtab *ft, struct cap_dg *dg, uint32_t end, struct cap_stats *st)
{
	if (end <= dg->cap)
		return 0;
	uint32_t ncap = dg->cap ? dg->cap : 2048;
	while (ncap < end)
		ncap *= 2;
	if (ncap > DG_MAX + 1)
		ncap = DG_MAX + 1;
	size_t add = ncap - dg->cap;
	while (ft->mem + add > ft->mem_max && ft->head && ft->head != dg) {
		st->frag_dropped++;
		free_dg(ft, ft->head);
	}
	if (ft->mem + add > ft->mem_max)
		return -1;
	uint8_t *nbuf = realloc(dg->buf, ncap);
	if (!nbuf)
		return -1;
	dg->buf = nbuf;
	dg->cap = ncap;
	ft->mem += add;
	return 0;
}

int cap_frag_add(struct cap_fragtab *ft, const struct cap_frag_info *fi, int64_t now_us,
                 struct cap_dg **out, struct cap_stats *st)
{
	struct cap_dg *dg;
	uint64_t end = (uint64_t)fi->off + fi->len;

	st->fragments++;
	cap_frag_expire(ft, now_us, st);
	dg = find_dg(ft, fi);
	if (fi->cut || end > DG_MAX || (fi->more && (fi->len % 8 || fi->len == 0))) {
		/* cut by the snaplen, too long, or a middle fragment that is not
		 * a multiple of 8 bytes: the datagram cannot be rebuilt */
		st->frag_dropped++;
		if (dg) {
			st->frag_dropped++;
			free_dg(ft, dg);
		}
		return -1;
	}
	if (!dg) {
		if (ft->n >= ft->max && ft->head) {
			st->frag_dropped++;
			free_dg(ft, ft->head);
		}
		if (ft->mem + sizeof(*dg) > ft->mem_max) {
			st->frag_dropped++;
			return -1;
		}
		dg = calloc(1, sizeof(*dg));
		if (!dg) {
			st->frag_dropped++;
			return -1;
		}
		dg->af = fi->af;
		dg->proto = fi->proto;
		dg->id = fi->id;
		memcpy(dg->saddr, fi->saddr, 16);
		memcpy(dg->daddr, fi->daddr, 16);
		dg->first_us = now_us;
		dg->prev = ft->tail;
		if (ft->tail)
			ft->tail->next = dg;
		else
			ft->head = dg;
		ft->tail = dg;
		ft->n++;
		ft->mem += sizeof(*dg);
	}
	if (!fi->more) {
		if (dg->have_last && dg->total != end)
			goto drop; /* two different last fragments */
		dg->have_last = 1;
		dg->total = (uint32_t)end;
	}
	if (end > dg->maxend)
		dg->maxend = (uint32_t)end;
	if (dg->have_last && dg->maxend > dg->total)
		goto drop; /* data past the end the last fragment set */
	if (fi->len) {
		if (grow(ft, dg, (uint32_t)end, st) < 0)
			goto drop;
		uint32_t b0 = fi->off / 8, b1 = (uint32_t)((end + 7) / 8);
		for (uint32_t b = b0; b < b1; b++) {
			if (dg->bits[b / 8] & (1u << (b % 8)))
				continue; /* first copy wins */
			uint32_t from = b * 8;
			uint32_t n = (uint32_t)(end - from < 8 ? end - from : 8);
			memcpy(dg->buf + from, fi->p + (from - fi->off), n);
			dg->bits[b / 8] |= (uint8_t)(1u << (b % 8));
			dg->nset++;
		}
	}
	if (dg->have_last) {
		/* no block lies past total (checked above), so all are there
		 * when the count matches */
		if (dg->nset == (dg->total + 7) / 8) {
			st->frag_reassembled++;
			*out = dg;
			return 1;
		}
	}
	return 0;
drop:
	st->frag_dropped++;
	free_dg(ft, dg);
	return -1;
}
