/* kd-arena.c: see kd-arena.h. */
#include "kd-arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KD_ARENA_CHUNK 8192

struct kd_arena_chunk {
	struct kd_arena_chunk *prev;
	size_t size; /* usable bytes in data[] */
	size_t off;  /* next free byte */
	alignas(max_align_t) unsigned char data[];
};

void *kd_arena_alloc(struct kd_arena *a, size_t size)
{
	const size_t align = alignof(max_align_t);
	size_t need = (size + align - 1) & ~(align - 1);
	struct kd_arena_chunk *c = a->head;

	if (need < size)
		return NULL;
	if (a->limit && (need > a->limit || a->used > a->limit - need))
		return NULL;
	if (!c || c->size - c->off < need) {
		size_t csize = need > KD_ARENA_CHUNK ? need : KD_ARENA_CHUNK;
		c = malloc(sizeof(*c) + csize);
		if (!c)
			return NULL;
		c->prev = a->head;
		c->size = csize;
		c->off = 0;
		a->head = c;
	}
	void *p = c->data + c->off;
	c->off += need;
	a->used += need;
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

void kd_arena_reset(struct kd_arena *a)
{
	struct kd_arena_chunk *c = a->head;
	if (!c)
		return;
	while (c->prev) {
		struct kd_arena_chunk *prev = c->prev;
		free(c);
		c = prev;
	}
	c->off = 0;
	a->head = c;
	a->used = 0;
}

void kd_arena_free(struct kd_arena *a)
{
	struct kd_arena_chunk *c = a->head;
	while (c) {
		struct kd_arena_chunk *prev = c->prev;
		free(c);
		c = prev;
	}
	a->head = NULL;
	a->used = 0;
}
