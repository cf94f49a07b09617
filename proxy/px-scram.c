/* px-scram.c: SCRAM arithmetic and the credentials file (px-scram.h).
 *
 * RFC 5802 3:
 *   SaltedPassword  = Hi(Normalize(password), salt, i)    (PBKDF2-HMAC)
 *   ClientKey       = HMAC(SaltedPassword, "Client Key")
 *   StoredKey       = H(ClientKey)
 *   ServerKey       = HMAC(SaltedPassword, "Server Key")
 * kwire does not SASLprep passwords, as Kafka's ScramFormatter does not. */
#include "px-scram.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "kd-saslmsg.h"

int px_scram_hash_parse(const char *s, size_t len)
{
	if (len == 13 && !memcmp(s, "SCRAM-SHA-256", 13))
		return PX_SCRAM_256;
	if (len == 13 && !memcmp(s, "SCRAM-SHA-512", 13))
		return PX_SCRAM_512;
	return -1;
}

const char *px_scram_hash_name(int hash)
{
	return hash == PX_SCRAM_512 ? "SCRAM-SHA-512" : "SCRAM-SHA-256";
}

size_t px_scram_hlen(int hash)
{
	return hash == PX_SCRAM_512 ? 64 : 32;
}

static const EVP_MD *md(int hash)
{
	return hash == PX_SCRAM_512 ? EVP_sha512() : EVP_sha256();
}

int px_scram_hmac(int hash, const uint8_t *key, size_t klen, const uint8_t *msg, size_t mlen,
                  uint8_t *out)
{
	unsigned olen = 0;
	return HMAC(md(hash), key, (int)klen, msg, mlen, out, &olen) ? 0 : -1;
}

int px_scram_h(int hash, const uint8_t *p, size_t n, uint8_t *out)
{
	return EVP_Digest(p, n, out, NULL, md(hash), NULL) == 1 ? 0 : -1;
}

int px_scram_salted(int hash, const char *pw, size_t plen, const uint8_t *salt, size_t slen,
                    uint32_t iters, uint8_t *out)
{
	return PKCS5_PBKDF2_HMAC(pw, (int)plen, salt, (int)slen, (int)iters, md(hash),
	                         (int)px_scram_hlen(hash), out) == 1
	           ? 0
	           : -1;
}

/* StoredKey and ServerKey from a SaltedPassword. */
static int keys(int hash, const uint8_t *salted, uint8_t *stored, uint8_t *server)
{
	uint8_t ck[PX_SCRAM_KEY_MAX];
	size_t hl = px_scram_hlen(hash);
	int rc = px_scram_hmac(hash, salted, hl, (const uint8_t *)"Client Key", 10, ck) ||
	         px_scram_h(hash, ck, hl, stored) ||
	         px_scram_hmac(hash, salted, hl, (const uint8_t *)"Server Key", 10, server);
	OPENSSL_cleanse(ck, sizeof(ck));
	return rc ? -1 : 0;
}

int px_scram_make(int hash, const char *pw, size_t plen, const uint8_t *salt, size_t slen,
                  uint32_t iters, struct px_scram_cred *out)
{
	uint8_t salted[PX_SCRAM_KEY_MAX];
	int rc;

	memset(out, 0, sizeof(*out));
	if (salt) {
		if (slen > PX_SCRAM_SALT_MAX)
			return -1;
		memcpy(out->salt, salt, slen);
		out->salt_len = slen;
	} else {
		out->salt_len = 16;
		if (RAND_bytes(out->salt, (int)out->salt_len) != 1)
			return -1;
	}
	out->iterations = iters;
	rc = px_scram_salted(hash, pw, plen, out->salt, out->salt_len, iters, salted) ||
	     keys(hash, salted, out->stored_key, out->server_key);
	OPENSSL_cleanse(salted, sizeof(salted));
	return rc ? -1 : 0;
}

int px_scram_check_password(int hash, const struct px_scram_cred *cred, const char *pw, size_t plen)
{
	uint8_t salted[PX_SCRAM_KEY_MAX], stored[PX_SCRAM_KEY_MAX], server[PX_SCRAM_KEY_MAX];
	int ok = px_scram_salted(hash, pw, plen, cred->salt, cred->salt_len, cred->iterations,
	                         salted) == 0 &&
	         keys(hash, salted, stored, server) == 0 &&
	         CRYPTO_memcmp(stored, cred->stored_key, px_scram_hlen(hash)) == 0;
	OPENSSL_cleanse(salted, sizeof(salted));
	return ok;
}

/* ---- the file ---- */

static int user_cmp(const void *a, const void *b)
{
	return strcmp(((const struct px_cred_user *)a)->name,
	              ((const struct px_cred_user *)b)->name);
}

static int unescape(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			unsigned v;
			char h[3] = {0};
			if (i + 2 >= n)
				return -1;
			h[0] = s[i + 1];
			h[1] = s[i + 2];
			if (sscanf(h, "%2x", &v) != 1 || !v ||
			    strspn(h, "0123456789abcdefABCDEF") != 2)
				return -1;
			c = (char)v;
			i += 2;
		}
		if (o + 1 >= cap)
			return -1;
		out[o++] = c;
	}
	out[o] = 0;
	return (int)o;
}

static void escape(const char *s, FILE *f)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '%' || c == '#' || c < 0x21 || c == 0x7f)
			fprintf(f, "%%%02X", c);
		else
			fputc(c, f);
	}
}

/* Splits a line into whitespace-separated words (at most max). */
static int words(char *line, char **w, size_t *wl, int max)
{
	int n = 0;
	char *p = line;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			return n;
		if (n == max)
			return max + 1;
		w[n] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		wl[n] = (size_t)(p - w[n]);
		n++;
	}
}

int px_creds_load_mem(const char *text, size_t len, const char *name, struct px_creds *out,
                      char *err, size_t errlen)
{
	size_t cap = 0, lineno = 0;
	const char *p = text, *end = text + len;
	char line[4096];

	memset(out, 0, sizeof(*out));
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char *w[7];
		size_t wl[7];
		char user[512];
		lineno++;
		if (ll >= sizeof(line)) {
			snprintf(err, errlen, "%s:%zu: line too long", name, lineno);
			goto fail;
		}
		memcpy(line, p, ll);
		line[ll] = 0;
		if (ll && line[ll - 1] == '\r')
			line[--ll] = 0;
		p = nl ? nl + 1 : end;
		if (memchr(line, 0, ll)) {
			snprintf(err, errlen, "%s:%zu: NUL byte", name, lineno);
			goto fail;
		}
		int n = words(line, w, wl, 6);
		if (n == 0 || w[0][0] == '#')
			continue;
		if (n != 6) {
			snprintf(err, errlen,
			         "%s:%zu: expected USER MECHANISM ITERATIONS SALT STORED_KEY "
			         "SERVER_KEY",
			         name, lineno);
			goto fail;
		}
		int ul = unescape(w[0], wl[0], user, sizeof(user));
		if (ul <= 0 || ul > 255) {
			snprintf(err, errlen, "%s:%zu: bad user name", name, lineno);
			goto fail;
		}
		int hash = px_scram_hash_parse(w[1], wl[1]);
		if (hash < 0) {
			snprintf(err, errlen,
			         "%s:%zu: mechanism '%.*s' is not SCRAM-SHA-256 or "
			         "SCRAM-SHA-512",
			         name, lineno, (int)(wl[1] > 32 ? 32 : wl[1]), w[1]);
			goto fail;
		}
		struct px_scram_cred c = {0};
		char num[16];
		char *e;
		if (wl[2] >= sizeof(num)) {
			snprintf(err, errlen, "%s:%zu: bad iteration count", name, lineno);
			goto fail;
		}
		memcpy(num, w[2], wl[2]);
		num[wl[2]] = 0;
		unsigned long it = strtoul(num, &e, 10);
		if (*e || num[0] == '-' || it < PX_SCRAM_ITER_MIN || it > PX_SCRAM_ITER_MAX) {
			snprintf(err, errlen, "%s:%zu: iterations must be %d to %d", name, lineno,
			         PX_SCRAM_ITER_MIN, PX_SCRAM_ITER_MAX);
			goto fail;
		}
		c.iterations = (uint32_t)it;
		size_t hl = px_scram_hlen(hash);
		long sl = kd_b64_decode((const uint8_t *)w[3], wl[3], c.salt, sizeof(c.salt), 0);
		if (sl <= 0 ||
		    kd_b64_decode((const uint8_t *)w[4], wl[4], c.stored_key, sizeof(c.stored_key),
		                  0) != (long)hl ||
		    kd_b64_decode((const uint8_t *)w[5], wl[5], c.server_key, sizeof(c.server_key),
		                  0) != (long)hl) {
			snprintf(err, errlen,
			         "%s:%zu: SALT, STORED_KEY or SERVER_KEY is not base64 of the "
			         "right length",
			         name, lineno);
			goto fail;
		}
		c.salt_len = (size_t)sl;
		struct px_cred_user *u = NULL;
		for (size_t i = 0; i < out->n; i++)
			if (!strcmp(out->users[i].name, user))
				u = &out->users[i];
		if (!u) {
			if (out->n == cap) {
				size_t nc = cap ? cap * 2 : 16;
				struct px_cred_user *nu = realloc(out->users, nc * sizeof(*nu));
				if (!nu) {
					snprintf(err, errlen, "%s: out of memory", name);
					goto fail;
				}
				out->users = nu;
				cap = nc;
			}
			u = &out->users[out->n];
			memset(u, 0, sizeof(*u));
			u->name = strdup(user);
			if (!u->name) {
				snprintf(err, errlen, "%s: out of memory", name);
				goto fail;
			}
			out->n++;
		} else if (u->have[hash]) {
			snprintf(err, errlen, "%s:%zu: user '%s' has a second %s line", name,
			         lineno, user, px_scram_hash_name(hash));
			goto fail;
		}
		u->have[hash] = 1;
		u->c[hash] = c;
	}
	if (out->n)
		qsort(out->users, out->n, sizeof(*out->users), user_cmp);
	return 0;
fail:
	px_creds_free(out);
	return -1;
}

int px_creds_load(const char *path, struct px_creds *out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= (64u << 20)) {
				snprintf(err, errlen, "%s: larger than 64 MiB", path);
				goto out;
			}
			char *nb = realloc(buf, cap ? cap * 2 : 4096);
			if (!nb) {
				snprintf(err, errlen, "%s: out of memory", path);
				goto out;
			}
			buf = nb;
			cap = cap ? cap * 2 : 4096;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		goto out;
	}
	rc = px_creds_load_mem(buf ? buf : "", len, path, out, err, errlen);
out:
	if (buf)
		OPENSSL_cleanse(buf, cap);
	free(buf);
	fclose(f);
	return rc;
}

void px_creds_free(struct px_creds *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->users[i].name);
		OPENSSL_cleanse(c->users[i].c, sizeof(c->users[i].c));
	}
	free(c->users);
	memset(c, 0, sizeof(*c));
}

const struct px_cred_user *px_creds_find(const struct px_creds *c, const char *name, size_t len)
{
	size_t lo = 0, hi = c->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const char *s = c->users[mid].name;
		size_t sl = strlen(s);
		int r = memcmp(s, name, sl < len ? sl : len);
		if (!r)
			r = sl < len ? -1 : sl > len;
		if (!r)
			return &c->users[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void write_line(FILE *f, const char *user, int hash, const struct px_scram_cred *c)
{
	char salt[128], sk[128], vk[128];
	size_t hl = px_scram_hlen(hash);
	kd_b64_encode(c->salt, c->salt_len, salt, sizeof(salt));
	kd_b64_encode(c->stored_key, hl, sk, sizeof(sk));
	kd_b64_encode(c->server_key, hl, vk, sizeof(vk));
	escape(user, f);
	fprintf(f, " %s %u %s %s %s\n", px_scram_hash_name(hash), c->iterations, salt, sk, vk);
}

int px_creds_update(const char *path, const char *user, const char *password, unsigned mask,
                    uint32_t iters, char *err, size_t errlen)
{
	struct px_creds creds = {0};
	struct px_scram_cred fresh[PX_SCRAM_NHASH];
	char tmp[4200];
	FILE *f = NULL;
	int rc = -1, fd = -1, found = 0;

	if (access(path, F_OK) == 0) {
		if (px_creds_load(path, &creds, err, errlen))
			return -1;
	} else if (errno != ENOENT) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (password)
		for (int h = 0; h < PX_SCRAM_NHASH; h++)
			if ((mask & (1u << h)) && px_scram_make(h, password, strlen(password), NULL,
			                                        0, iters, &fresh[h])) {
				snprintf(err, errlen, "cannot compute the SCRAM keys (OpenSSL)");
				goto out;
			}
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	fprintf(f, "# kwire SASL credentials, written by `kwire passwd` (docs/security.md).\n"
	           "# USER MECHANISM ITERATIONS SALT STORED_KEY SERVER_KEY\n");
	for (size_t i = 0; i < creds.n; i++) {
		const struct px_cred_user *u = &creds.users[i];
		int mine = !strcmp(u->name, user);
		found |= mine;
		for (int h = 0; h < PX_SCRAM_NHASH; h++) {
			if (mine && (mask & (1u << h))) {
				if (password)
					write_line(f, user, h, &fresh[h]);
			} else if (u->have[h]) {
				write_line(f, u->name, h, &u->c[h]);
			}
		}
	}
	if (!found && password)
		for (int h = 0; h < PX_SCRAM_NHASH; h++)
			if (mask & (1u << h))
				write_line(f, user, h, &fresh[h]);
	if (fflush(f) || fsync(fileno(f)) || ferror(f)) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto out_tmp;
	}
	if (fclose(f)) {
		f = NULL;
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto out_tmp;
	}
	f = NULL;
	if (!password && !found) {
		snprintf(err, errlen, "%s: no user '%s'", path, user);
		goto out_tmp;
	}
	if (rename(tmp, path)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out_tmp;
	}
	rc = 0;
	goto out;
out_tmp:
	if (f)
		fclose(f);
	f = NULL;
	unlink(tmp);
out:
	OPENSSL_cleanse(fresh, sizeof(fresh));
	px_creds_free(&creds);
	return rc;
}
