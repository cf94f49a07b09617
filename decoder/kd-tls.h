/* kd-tls.h: recognising the first bytes of a TLS connection, for the
 * proxy's pre-TLS peek (which protocol does a client speak, and which
 * server name does it ask for) and for telling a TLS client on a Kafka
 * port from a broken Kafka frame. No I/O, no allocation.
 *
 * The bytes a TLS client sends first (RFC 8446 5.1 and 4.1.2; RFC 6066 3):
 *
 *   record     | 0x16 | 0x03 0x0v | length(2) |  handshake ...
 *   handshake  | 0x01 (client_hello) | length(3) | ClientHello
 *   ClientHello| version(2) | random(32) | session_id<0..32> (len 1)
 *              | cipher_suites (len 2) | compression_methods (len 1)
 *              | extensions (len 2, absent in old clients)
 *   extension  | type(2) | length(2) | data ; server_name is type 0:
 *              | list length(2) | name_type(1)=0 | HostName (len 2) ...
 *
 * A Kafka peer reading these bytes as a frame sees a 4-byte size of
 * 0x1603_0lxx: about 369 MB, more than any broker accepts. */
#ifndef KD_TLS_H
#define KD_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "kd-t.h"

#define KD_TLS_RECORD_MAX (16384 + 2048) /* largest TLSCiphertext length */

struct kd_tls_hello {
	uint16_t record_version; /* 0x0301 ... 0x0303 */
	uint16_t hello_version;  /* legacy_version of the ClientHello */
	uint8_t has_sni;         /* a host_name server_name was sent */
	uint8_t fragmented;      /* the ClientHello continues in a further
	                          * record: only what the first holds was read */
	struct kd_view sni;      /* the host name, a view into the input */
};

/* 1 when p (len bytes, len >= 3 to decide) starts like a TLS handshake
 * record (content type 22, major version 3, minor 0..4); 0 otherwise,
 * also when fewer than 3 bytes are there. */
int kd_tls_looks_like(const uint8_t *p, size_t len);

/* Reads the ClientHello at the start of p. Returns KD_OK (out filled; the
 * SNI is the first host_name entry), KD_NEED_MORE when p is a valid prefix
 * of one (*need, when given, is the total byte count the record takes),
 * or KD_EMALFORMED when the bytes are not a TLS ClientHello. A ClientHello
 * split over several records is KD_OK with fragmented set, and its SNI
 * found only when it lies in the first record. */
int kd_tls_hello_parse(const uint8_t *p, size_t len, struct kd_tls_hello *out, size_t *need);

#endif
