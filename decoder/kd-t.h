/* kd-t.h: types shared by every part of the Kafka decoder.
 *
 * Return-code convention (STYLE.md "Parsing bytes"): a parser returns the
 * number of bytes it consumed (> 0) or 0 for success where no count makes
 * sense, KD_NEED_MORE when the input is a valid prefix that needs more bytes,
 * and another negative KD_E* code for bad input. */
#ifndef KD_T_H
#define KD_T_H

#include <stddef.h>
#include <stdint.h>

enum kd_rc {
	KD_OK = 0,
	KD_NEED_MORE = -1,    /* valid so far, feed more bytes */
	KD_ESHORT = -2,       /* a read ran past the end of a bounded slice */
	KD_EMALFORMED = -3,   /* bytes cannot be what the protocol says */
	KD_ELIMIT = -4,       /* a size or count over a configured limit */
	KD_EUNSUPPORTED = -5, /* unknown api key/version, magic or codec */
	KD_ECRC = -6,         /* checksum mismatch */
	KD_ECOMPRESS = -7,    /* corrupt or truncated compressed data */
	KD_ENOMEM = -8,       /* allocation failed */
	KD_EBROKEN = -9,      /* the stream was marked broken earlier */
};

/* A (pointer, length) view into input bytes; never owns memory.
 * p == NULL with null set means a Kafka null string/bytes. */
struct kd_view {
	const uint8_t *p;
	uint32_t len;
	uint8_t null;
};

/* Direction on one Kafka TCP connection. */
enum kd_dir {
	KD_C2S = 0, /* client to broker: requests */
	KD_S2C = 1, /* broker to client: responses */
};

#endif
