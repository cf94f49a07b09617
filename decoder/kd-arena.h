/* kd-arena.h: a chunked bump allocator for decoded trees.
 *
 * Everything allocated from an arena is released at once by
 * kd_arena_reset() or kd_arena_free(). Reset keeps up to
 * KD_ARENA_RETAIN bytes of chunks for reuse, so decoding a stream of
 * similar messages touches the same memory again instead of faulting in
 * fresh pages for every message. Chunks grow geometrically, so a big
 * message costs few allocations. An all-zero struct kd_arena is a valid
 * empty arena. A limit (bytes, 0 = none) turns a hostile message that
 * would build a huge tree into a clean NULL instead of an out-of-memory
 * process. */
#ifndef KD_ARENA_H
#define KD_ARENA_H

#include <stddef.h>

/* Bytes of chunks that kd_arena_reset() keeps for reuse. */
#define KD_ARENA_RETAIN (16u << 20)

struct kd_arena_chunk;

struct kd_arena {
	struct kd_arena_chunk *head;  /* chunk in use; older ones linked behind */
	struct kd_arena_chunk *spare; /* emptied chunks kept by reset */
	size_t used;                  /* bytes handed out since the last reset */
	size_t limit;                 /* 0: no limit */
};

/* size bytes, zeroed, aligned for any type; NULL on failure or limit. */
void *kd_arena_alloc(struct kd_arena *a, size_t size);
/* The same, not zeroed: only for callers that write every byte before
 * anything can read it. */
void *kd_arena_alloc_raw(struct kd_arena *a, size_t size);
/* A copy of n bytes (not NUL-terminated unless the input is); NULL on failure. */
void *kd_arena_dup(struct kd_arena *a, const void *p, size_t n);
void kd_arena_reset(struct kd_arena *a);
void kd_arena_free(struct kd_arena *a);

#endif
