/* px-scram.h: SCRAM (RFC 5802, RFC 7677) arithmetic and kwire's
 * credentials file (OpenSSL 3 for the hashes).
 *
 * The credentials file holds, per user and mechanism, what a SCRAM server
 * keeps (RFC 5802 3): the salt, the iteration count, StoredKey and
 * ServerKey, never the password. `kwire passwd` writes it. Format
 * (docs/security.md), one line per user and mechanism:
 *
 *   # comment
 *   USER MECHANISM ITERATIONS SALT STORED_KEY SERVER_KEY
 *   alice SCRAM-SHA-256 4096 c2FsdHNhbHQ= <base64> <base64>
 *
 * USER is %-escaped (%XX) for '%', '#', bytes below 0x21 and 0x7f;
 * SALT, STORED_KEY and SERVER_KEY are base64. */
#ifndef PX_SCRAM_H
#define PX_SCRAM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { PX_SCRAM_256 = 0, PX_SCRAM_512 = 1, PX_SCRAM_NHASH = 2 };
#define PX_SCRAM_KEY_MAX 64 /* SHA-512 */
#define PX_SCRAM_SALT_MAX 64
#define PX_SCRAM_ITER_MIN 4096 /* Kafka refuses fewer (ScramMechanism.minIterations) */
#define PX_SCRAM_ITER_MAX 100000000

struct px_scram_cred {
	uint32_t iterations;
	size_t salt_len;
	uint8_t salt[PX_SCRAM_SALT_MAX];
	uint8_t stored_key[PX_SCRAM_KEY_MAX];
	uint8_t server_key[PX_SCRAM_KEY_MAX];
};

struct px_cred_user {
	char *name;
	uint8_t have[PX_SCRAM_NHASH];
	struct px_scram_cred c[PX_SCRAM_NHASH];
};

struct px_creds {
	struct px_cred_user *users; /* sorted by name */
	size_t n;
};

/* "SCRAM-SHA-256" -> PX_SCRAM_256, ...; -1 otherwise. */
int px_scram_hash_parse(const char *s, size_t len);
const char *px_scram_hash_name(int hash);
size_t px_scram_hlen(int hash);

/* HMAC and H of the hash; out holds px_scram_hlen bytes. 0 or -1. */
int px_scram_hmac(int hash, const uint8_t *key, size_t klen, const uint8_t *msg, size_t mlen,
                  uint8_t *out);
int px_scram_h(int hash, const uint8_t *p, size_t n, uint8_t *out);
/* SaltedPassword = Hi(password, salt, i) (PBKDF2-HMAC). 0 or -1. */
int px_scram_salted(int hash, const char *pw, size_t plen, const uint8_t *salt, size_t slen,
                    uint32_t iters, uint8_t *out);
/* The server's keys for a password (fresh random salt when salt is NULL). */
int px_scram_make(int hash, const char *pw, size_t plen, const uint8_t *salt, size_t slen,
                  uint32_t iters, struct px_scram_cred *out);
/* Whether password matches cred (PLAIN against a SCRAM entry), in
 * constant time for a given length. */
int px_scram_check_password(int hash, const struct px_scram_cred *cred, const char *pw,
                            size_t plen);

/* Loads a credentials file. 0, or -1 with "FILE:LINE: why" in err. */
int px_creds_load(const char *path, struct px_creds *out, char *err, size_t errlen);
/* The same from memory (name for messages). */
int px_creds_load_mem(const char *text, size_t len, const char *name, struct px_creds *out,
                      char *err, size_t errlen);
void px_creds_free(struct px_creds *c);
const struct px_cred_user *px_creds_find(const struct px_creds *c, const char *name, size_t len);

/* kwire passwd: sets (password != NULL) or deletes the entries of user for
 * the hashes in mask (1 << PX_SCRAM_*), rewriting path atomically (mode
 * 0600; created when missing). 0 or -1 with err. */
int px_creds_update(const char *path, const char *user, const char *password, unsigned mask,
                    uint32_t iters, char *err, size_t errlen);

#endif
