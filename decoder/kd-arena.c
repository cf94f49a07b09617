/* kd-arena.c: see kd-arena.h. */
#include "kd-arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KD_ARENA_CHUNK_MIN (8u << 10)
#define KD_ARENA_CHUNK_MAX (1u << 20)

struct kd_arena_chunk {
	struct kd_arena_chunk *prev;
	size_t size; /* usable bytes in data[] */
	size_t off;  /* next free byte */
	alignas(max_align_t) unsigned char data[];
};

/* A chunk with room for need bytes: a spare one if one fits, else a new
 * one twice the size of the current chunk (bounded), or bigger if need is. */
static struct kd_arena_chunk *chunk_get(struct kd_arena *a, size_t need)
{
	struct kd_arena_chunk **pp = &a->spare;
	for (struct kd_arena_chunk *c = a->spare; c; pp = &c->prev, c = c->prev) {
		if (c->size >= need) {
			*pp = c->prev;
			c->off = 0;
			return c;
		}
	}
	size_t csize = a->head ? a->head->size * 2 : KD_ARENA_CHUNK_MIN;
	if (csize > KD_ARENA_CHUNK_MAX)
		csize = KD_ARENA_CHUNK_MAX;
	if (csize < need)
		csize = need;
	struct kd_arena_chunk *c = malloc(sizeof(*c) + csize);
	if (!c)
		return NULL;
	c->size = csize;
	c->off = 0;
	return c;
}

void *kd_arena_alloc_raw(struct kd_arena *a, size_t size)
{
	const size_t align = alignof(max_align_t);
	size_t need = (size + align - 1) & ~(align - 1);
	struct kd_arena_chunk *c = a->head;

	if (need < size)
		return NULL;
	if (a->limit && (need > a->limit || a->used > a->limit - need))
		return NULL;
	if (!c || c->size - c->off < need) {
		c = chunk_get(a, need);
		if (!c)
			return NULL;
		c->prev = a->head;
		a->head = c;
	}
	void *p = c->data + c->off;
	c->off += need;
	a->used += need;
	return p;
}

void *kd_arena_alloc(struct kd_arena *a, size_t size)
{
	void *p = kd_arena_alloc_raw(a, size);
	if (p)
		memset(p, 0, size);
	return p;
}

void *kd_arena_dup(struct kd_arena *a, const void *p, size_t n)
{
	void *d = kd_arena_alloc(a, n ? n : 1);
	if (d && n)
		memcpy(d, p, n);
	return d;
}

static void chunks_free(struct kd_arena_chunk *c)
{
	while (c) {
		struct kd_arena_chunk *prev = c->prev;
		free(c);
		c = prev;
	}
}

void kd_arena_reset(struct kd_arena *a)
{
	size_t kept = 0;
	for (struct kd_arena_chunk *c = a->spare; c; c = c->prev)
		kept += c->size;
	struct kd_arena_chunk *c = a->head;
	while (c) {
		struct kd_arena_chunk *prev = c->prev;
		if (kept + c->size <= KD_ARENA_RETAIN) {
			kept += c->size;
			c->prev = a->spare;
			a->spare = c;
		} else {
			free(c);
		}
		c = prev;
	}
	a->head = NULL;
	a->used = 0;
}

void kd_arena_free(struct kd_arena *a)
{
	chunks_free(a->head);
	chunks_free(a->spare);
	a->head = NULL;
	a->spare = NULL;
	a->used = 0;
}
