/* px-tls.c: TLS on both sides of the proxy (px-tls.h, docs/security.md). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "kd-hdr.h"
#include "kd-schema.h"
#include "kd-tls.h"
#include "kd.h"
#include "px-tls.h"

/* The files a context is built from, and how they looked when it was. */
enum { F_CERT, F_KEY, F_CHAIN, F_CLIENT_CA, F_UP_CA, F_UP_CERT, F_UP_KEY, F_N };

struct fstamp {
	int64_t mtime_ns, ctime_ns, size;
	uint64_t ino;
	int ok;
};

struct px_tls {
	struct px *px;
	struct px_transport tp;
	pthread_mutex_t mu;  /* guards srv, cli (swapped on reload) */
	pthread_mutex_t rmu; /* one reload at a time: stamps (SIGHUP thread, watcher) */
	SSL_CTX *srv;        /* NULL: plaintext listeners */
	SSL_CTX *cli;        /* NULL: plaintext to the brokers */
	const char *files[F_N];
	struct fstamp stamps[F_N];
	struct event *watch_ev;
	_Atomic uint64_t handshakes, handshake_failures, upstream_failures;
	_Atomic uint64_t tls_on_plain, plain_on_tls, not_tls, no_principal;
	_Atomic uint64_t reloads, reload_failures, ktls_tx;
};

/* ---- configuration ---- */

static int has(const char *s)
{
	return s && s[0];
}

int px_tls_conf_check(const struct px_conf *conf, char *err, size_t errlen)
{
	if (has(conf->tls_cert) != has(conf->tls_key)) {
		kd_errf(err, errlen,
		        "tls_cert and tls_key go together (the listener's certificate "
		        "and its private key)");
		return -1;
	}
	if (!has(conf->tls_cert) && (has(conf->tls_chain) || has(conf->tls_client_ca) ||
	                             conf->tls_client_auth > PX_TLS_AUTH_NONE)) {
		kd_errf(err, errlen,
		        "tls_chain, tls_client_ca and tls_client_auth need tls_cert and tls_key "
		        "(a TLS listener)");
		return -1;
	}
	if (conf->tls_client_auth > PX_TLS_AUTH_NONE && !has(conf->tls_client_ca)) {
		kd_errf(err, errlen,
		        "tls_client_auth %s needs tls_client_ca (the CAs client certificates "
		        "are checked against)",
		        conf->tls_client_auth == PX_TLS_AUTH_REQUIRED ? "required" : "requested");
		return -1;
	}
	if (has(conf->upstream_tls_cert) != has(conf->upstream_tls_key)) {
		kd_errf(err, errlen, "upstream_tls_cert and upstream_tls_key go together");
		return -1;
	}
	if (!conf->upstream_tls && (has(conf->upstream_tls_ca) || has(conf->upstream_tls_cert) ||
	                            has(conf->upstream_tls_server_name))) {
		kd_errf(err, errlen,
		        "upstream_tls_ca, upstream_tls_cert and upstream_tls_server_name "
		        "need upstream_tls: true");
		return -1;
	}
	if (conf->tls_principal_rules && px_tls_rules_check(conf->tls_principal_rules, err, errlen))
		return -1;
	if (has(conf->sni_hosts)) {
		const char *id = strstr(conf->sni_hosts, "{id}");
		if (!id || strstr(id + 4, "{id}")) {
			kd_errf(err, errlen,
			        "sni_hosts '%s' must hold {id} once (e.g. b{id}.kafka.example.com)",
			        conf->sni_hosts);
			return -1;
		}
		if (strlen(conf->sni_hosts) + 8 >= PX_HOST_MAX) {
			kd_errf(err, errlen, "sni_hosts is too long");
			return -1;
		}
		if (!has(conf->tls_cert)) {
			kd_errf(err, errlen,
			        "sni_hosts routes by TLS server name: it needs tls_cert "
			        "and tls_key");
			return -1;
		}
	}
	return 0;
}

/* Unset paths print as "" (which loads back as unset). */
static void dump_str(FILE *f, const char *key, const char *v)
{
	fprintf(f, "%s: \"%s\"\n", key, v ? v : "");
}

void px_tls_conf_dump(const struct px_conf *conf, FILE *f)
{
	static const char *const auth[] = {"none", "requested", "required"};
	dump_str(f, "tls_cert", conf->tls_cert);
	dump_str(f, "tls_key", conf->tls_key);
	dump_str(f, "tls_chain", conf->tls_chain);
	dump_str(f, "tls_client_ca", conf->tls_client_ca);
	int a = conf->tls_client_auth;
	if (a == PX_TLS_AUTH_DEFAULT)
		a = has(conf->tls_client_ca) ? PX_TLS_AUTH_REQUIRED : PX_TLS_AUTH_NONE;
	fprintf(f, "tls_client_auth: %s\n", auth[a]);
	{
		fprintf(f, "tls_principal_rules:\n");
		const char *p = conf->tls_principal_rules ? conf->tls_principal_rules : "DEFAULT";
		while (*p) {
			const char *nl = strchr(p, '\n');
			size_t n = nl ? (size_t)(nl - p) : strlen(p);
			fprintf(f, "  - '");
			for (size_t i = 0; i < n; i++) {
				if (p[i] == '\'')
					fputc('\'', f);
				fputc(p[i], f);
			}
			fprintf(f, "'\n");
			p += n + (nl ? 1 : 0);
		}
	}
	fprintf(f, "tls_principal_source: %s\n",
	        conf->tls_principal_source == PX_TLS_SOURCE_SAN ? "san" : "dn");
	fprintf(f, "tls_ktls: %s\n", conf->tls_ktls ? "true" : "false");
	fprintf(f, "upstream_tls: %s\n", conf->upstream_tls ? "true" : "false");
	dump_str(f, "upstream_tls_ca", conf->upstream_tls_ca);
	dump_str(f, "upstream_tls_cert", conf->upstream_tls_cert);
	dump_str(f, "upstream_tls_key", conf->upstream_tls_key);
	fprintf(f, "upstream_tls_verify: %s\n", conf->upstream_tls_verify ? "true" : "false");
	dump_str(f, "upstream_tls_server_name", conf->upstream_tls_server_name);
	dump_str(f, "sni_hosts", conf->sni_hosts);
	fprintf(f, "sni_port: %u\n", conf->sni_port);
}

/* ---- principal mapping (Kafka's ssl.principal.mapping.rules) ----
 *
 *   DEFAULT                        the name as it is
 *   RULE:pattern/replacement/[LU]  when pattern matches the whole name:
 *                                  replacement with $1..$9 filled in,
 *                                  then lower- (L) or upper-cased (U)
 *
 * Rules are tried in order; the first that applies gives the name. "\/"
 * writes a slash inside pattern or replacement. Rules are separated by
 * newlines (the YAML list) or, as in Kafka's property, by commas between
 * rules. Patterns are POSIX extended regular expressions (regcomp); Java's
 * lazy quantifiers (*?, +?) are read as greedy ones. */

struct prule {
	int is_default;
	char pat[512], repl[512];
	char fold; /* 0, 'L' or 'U' */
};

/* Reads up to an unescaped '/' into out, "\/" becoming '/'. Returns the
 * position after the '/', or NULL. */
static const char *read_part(const char *p, char *out, size_t cap)
{
	size_t n = 0;
	for (; *p && *p != '/'; p++) {
		if (p[0] == '\\' && p[1] == '/')
			p++;
		else if (p[0] == '\\' && p[1]) {
			if (n + 1 >= cap)
				return NULL;
			out[n++] = *p++;
		}
		if (n + 1 >= cap)
			return NULL;
		out[n++] = *p;
	}
	out[n] = '\0';
	return *p == '/' ? p + 1 : NULL;
}

/* Java's lazy quantifiers have no POSIX form: "*?" becomes "*". */
static void posix_pattern(const char *in, char *out, size_t cap)
{
	size_t n = 0;
	for (; *in && n + 1 < cap; in++) {
		if (in[0] == '\\' && in[1] && n + 2 < cap) {
			out[n++] = *in++;
			out[n++] = *in;
			continue;
		}
		if (*in == '?' && n &&
		    (out[n - 1] == '*' || out[n - 1] == '+' || out[n - 1] == '}'))
			continue;
		out[n++] = *in;
	}
	out[n] = '\0';
}

/* The next rule from *pp; 1 with r filled, 0 at the end, -1 on a syntax
 * error (message in err). */
static int next_rule(const char **pp, struct prule *r, char *err, size_t errlen)
{
	const char *p = *pp;
	while (*p == ',' || *p == '\n' || isspace((unsigned char)*p))
		p++;
	if (!*p)
		return 0;
	memset(r, 0, sizeof(*r));
	if (!strncmp(p, "DEFAULT", 7)) {
		r->is_default = 1;
		p += 7;
	} else if (!strncmp(p, "RULE:", 5)) {
		char raw[512];
		const char *q = read_part(p + 5, raw, sizeof(raw));
		if (q)
			q = read_part(q, r->repl, sizeof(r->repl));
		if (!q) {
			kd_errf(err, errlen, "rule '%.60s': expected RULE:pattern/replacement/[LU]",
			        p);
			return -1;
		}
		posix_pattern(raw, r->pat, sizeof(r->pat));
		p = q;
		if (*p == 'L' || *p == 'U')
			r->fold = *p++;
	} else {
		kd_errf(err, errlen,
		        "rule '%.60s': expected DEFAULT or RULE:pattern/replacement/[LU]", p);
		return -1;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p && *p != ',' && *p != '\n') {
		kd_errf(err, errlen, "rule ends in '%.40s': expected ',' or the end", p);
		return -1;
	}
	*pp = p;
	return 1;
}

int px_tls_rules_check(const char *rules, char *err, size_t errlen)
{
	struct prule r;
	const char *p = rules;
	int rc, n = 0;
	while ((rc = next_rule(&p, &r, err, errlen)) == 1) {
		n++;
		if (r.is_default)
			continue;
		regex_t re;
		int e = regcomp(&re, r.pat, REG_EXTENDED);
		if (e) {
			char msg[128];
			regerror(e, &re, msg, sizeof(msg));
			kd_errf(err, errlen, "rule pattern '%s': %s", r.pat, msg);
			return -1;
		}
		regfree(&re);
	}
	if (rc < 0)
		return -1;
	if (!n) {
		kd_errf(err, errlen, "no rule (write DEFAULT for the name as it is)");
		return -1;
	}
	return 0;
}

/* Applies one RULE to name; the result's length, or -1 when the pattern
 * does not match all of name. */
static int apply_rule(const struct prule *r, const char *name, char *out, size_t cap)
{
	regex_t re;
	regmatch_t m[10];
	if (regcomp(&re, r->pat, REG_EXTENDED))
		return -1;
	size_t len = strlen(name);
	int ok = !regexec(&re, name, 10, m, 0) && m[0].rm_so == 0 && (size_t)m[0].rm_eo == len;
	size_t n = 0;
	for (const char *s = r->repl; ok && *s; s++) {
		if (s[0] == '$' && s[1] >= '0' && s[1] <= '9') {
			unsigned g = (unsigned)(s[1] - '0');
			s++;
			if (m[g].rm_so < 0)
				continue;
			for (regoff_t i = m[g].rm_so; i < m[g].rm_eo && n + 1 < cap; i++)
				out[n++] = name[i];
			continue;
		}
		if (s[0] == '\\' && s[1])
			s++;
		if (n + 1 < cap)
			out[n++] = *s;
	}
	regfree(&re);
	if (!ok)
		return -1;
	out[n] = '\0';
	for (size_t i = 0; i < n && r->fold; i++)
		out[i] = (char)(r->fold == 'L' ? tolower((unsigned char)out[i])
		                               : toupper((unsigned char)out[i]));
	return (int)n;
}

int px_tls_map_name(const char *rules, const char *name, char *out, size_t cap)
{
	struct prule r;
	const char *p = rules ? rules : "DEFAULT";
	char err[16];
	int rc;
	if (!cap)
		return -1;
	while ((rc = next_rule(&p, &r, err, sizeof(err))) == 1) {
		if (r.is_default) {
			snprintf(out, cap, "%s", name);
			return (int)strlen(out);
		}
		int n = apply_rule(&r, name, out, cap);
		if (n >= 0)
			return n;
	}
	return rc < 0 ? -2 : -1;
}

/* ---- SNI (one port for the whole cluster) ---- */

void px_tls_sni_name(const struct px *px, int32_t node_id, char out[PX_HOST_MAX])
{
	const char *pat = px->conf.sni_hosts;
	const char *id = strstr(pat, "{id}");
	snprintf(out, PX_HOST_MAX, "%.*s%" PRId32 "%s", (int)(id - pat), pat, node_id, id + 4);
}

int32_t px_tls_sni_node(const char *pattern, const uint8_t *name, size_t len)
{
	const char *id = strstr(pattern, "{id}");
	if (!id)
		return -1;
	size_t pre = (size_t)(id - pattern), post = strlen(id + 4);
	if (len < pre + post + 1 || len > pre + post + 10)
		return -1;
	/* DNS names compare without case (RFC 4343). */
	for (size_t i = 0; i < pre; i++)
		if (tolower(name[i]) != tolower((unsigned char)pattern[i]))
			return -1;
	for (size_t i = 0; i < post; i++)
		if (tolower(name[len - post + i]) != tolower((unsigned char)id[4 + i]))
			return -1;
	int64_t v = 0;
	for (size_t i = pre; i < len - post; i++) {
		if (name[i] < '0' || name[i] > '9')
			return -1;
		v = v * 10 + (name[i] - '0');
	}
	if (len - post - pre > 1 && name[pre] == '0')
		return -1; /* "b01" is not broker 1's name */
	return v > INT32_MAX ? -1 : (int32_t)v;
}

/* ---- contexts ---- */

/* The reasons OpenSSL queued, joined with "; " (the queue is emptied). */
static void ssl_errors(char *buf, size_t len)
{
	size_t n = 0;
	unsigned long e;
	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		char one[256];
		ERR_error_string_n(e, one, sizeof(one));
		const char *reason = ERR_reason_error_string(e);
		int w = snprintf(buf + n, len - n, "%s%s", n ? "; " : "", reason ? reason : one);
		if (w < 0 || (size_t)w >= len - n)
			break;
		n += (size_t)w;
	}
	if (!buf[0])
		snprintf(buf, len, "unknown error");
}

/* Intermediate certificates from a PEM file, added to ctx's chain. */
static int add_chain(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		kd_errf(err, errlen, "tls_chain %s: %s", path, strerror(errno));
		return -1;
	}
	int n = 0;
	X509 *x;
	while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
		if (!SSL_CTX_add0_chain_cert(ctx, x)) {
			X509_free(x);
			break;
		}
		n++;
	}
	fclose(f);
	ERR_clear_error(); /* the read past the last certificate */
	if (!n) {
		kd_errf(err, errlen, "tls_chain %s: no PEM certificate in it", path);
		return -1;
	}
	return 0;
}

static void ctx_common(SSL_CTX *ctx, const struct px_conf *conf)
{
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* libevent 2.1.12 reports a peer that closes without close_notify
	 * (most Kafka clients) as an error otherwise. */
	uint64_t ops = SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION;
	if (conf->tls_ktls)
		ops |= SSL_OP_ENABLE_KTLS;
	SSL_CTX_set_options(ctx, ops);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

/* The listeners' context from conf; NULL with a message. */
static SSL_CTX *server_ctx(const struct px_conf *conf, char *err, size_t errlen)
{
	char ssl[512];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		ssl_errors(ssl, sizeof(ssl));
		kd_errf(err, errlen, "TLS: %s", ssl);
		return NULL;
	}
	ctx_common(ctx, conf);
	ERR_clear_error();
	if (SSL_CTX_use_certificate_chain_file(ctx, conf->tls_cert) != 1) {
		ssl_errors(ssl, sizeof(ssl));
		kd_errf(err, errlen, "tls_cert %s: %s", conf->tls_cert, ssl);
		goto fail;
	}
	if (has(conf->tls_chain) && add_chain(ctx, conf->tls_chain, err, errlen))
		goto fail;
	if (SSL_CTX_use_PrivateKey_file(ctx, conf->tls_key, SSL_FILETYPE_PEM) != 1) {
		ssl_errors(ssl, sizeof(ssl));
		kd_errf(err, errlen, "tls_key %s: %s", conf->tls_key, ssl);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_errors(ssl, sizeof(ssl));
		kd_errf(err, errlen, "tls_key %s does not match tls_cert %s: %s", conf->tls_key,
		        conf->tls_cert, ssl);
		goto fail;
	}
	int auth = conf->tls_client_auth;
	if (auth == PX_TLS_AUTH_DEFAULT)
		auth = has(conf->tls_client_ca) ? PX_TLS_AUTH_REQUIRED : PX_TLS_AUTH_NONE;
	if (auth != PX_TLS_AUTH_NONE) {
		if (SSL_CTX_load_verify_locations(ctx, conf->tls_client_ca, NULL) != 1) {
			ssl_errors(ssl, sizeof(ssl));
			kd_errf(err, errlen, "tls_client_ca %s: %s", conf->tls_client_ca, ssl);
			goto fail;
		}
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(conf->tls_client_ca);
		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
		ERR_clear_error();
		SSL_CTX_set_verify(
		    ctx,
		    SSL_VERIFY_PEER |
		        (auth == PX_TLS_AUTH_REQUIRED ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
		    NULL);
	}
	static const unsigned char sid[] = "kwire";
	SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* The context for connections to the brokers; NULL with a message. */
static SSL_CTX *client_ctx(const struct px_conf *conf, char *err, size_t errlen)
{
	char ssl[512];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		ssl_errors(ssl, sizeof(ssl));
		kd_errf(err, errlen, "TLS: %s", ssl);
		return NULL;
	}
	ctx_common(ctx, conf);
	ERR_clear_error();
	if (has(conf->upstream_tls_ca)) {
		if (SSL_CTX_load_verify_locations(ctx, conf->upstream_tls_ca, NULL) != 1) {
			ssl_errors(ssl, sizeof(ssl));
			kd_errf(err, errlen, "upstream_tls_ca %s: %s", conf->upstream_tls_ca, ssl);
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		ssl_errors(ssl, sizeof(ssl));
		kd_errf(err, errlen, "the system's CA certificates: %s", ssl);
		goto fail;
	}
	if (has(conf->upstream_tls_cert)) {
		if (SSL_CTX_use_certificate_chain_file(ctx, conf->upstream_tls_cert) != 1) {
			ssl_errors(ssl, sizeof(ssl));
			kd_errf(err, errlen, "upstream_tls_cert %s: %s", conf->upstream_tls_cert,
			        ssl);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, conf->upstream_tls_key, SSL_FILETYPE_PEM) !=
		        1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			ssl_errors(ssl, sizeof(ssl));
			kd_errf(err, errlen, "upstream_tls_key %s: %s", conf->upstream_tls_key,
			        ssl);
			goto fail;
		}
	}
	SSL_CTX_set_verify(ctx, conf->upstream_tls_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
	                   NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* The current context of one side, referenced (SSL_CTX_free it). */
static SSL_CTX *ctx_get(struct px_tls *tls, int server)
{
	pthread_mutex_lock(&tls->mu);
	SSL_CTX *ctx = server ? tls->srv : tls->cli;
	if (ctx)
		SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&tls->mu);
	return ctx;
}

/* ---- the transport ---- */

static struct bufferevent *tls_accepted(void *arg, struct event_base *base, evutil_socket_t fd)
{
	struct px_tls *tls = arg;
	SSL_CTX *ctx = ctx_get(tls, 1);
	if (!ctx)
		return px_transport_tcp.accepted(NULL, base, fd);
	SSL *ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	if (!ssl)
		return NULL;
	struct bufferevent *bev =
	    bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                   BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!bev) {
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

static int is_ip(const char *host)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static struct bufferevent *tls_connect(void *arg, struct event_base *base, struct evdns_base *dns,
                                       const char *host, uint16_t port)
{
	struct px_tls *tls = arg;
	SSL_CTX *ctx = ctx_get(tls, 0);
	if (!ctx)
		return px_transport_tcp.connect(NULL, base, dns, host, port);
	const struct px_conf *conf = &tls->px->conf;
	SSL *ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	if (!ssl)
		return NULL;
	const char *name =
	    has(conf->upstream_tls_server_name) ? conf->upstream_tls_server_name : host;
	/* SNI carries host names only (RFC 6066 3). */
	if (!is_ip(name))
		SSL_set_tlsext_host_name(ssl, name);
	if (conf->upstream_tls_verify) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
		X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		int ok = is_ip(name) ? X509_VERIFY_PARAM_set1_ip_asc(vp, name)
		                     : X509_VERIFY_PARAM_set1_host(vp, name, 0);
		if (!ok) {
			SSL_free(ssl);
			return NULL;
		}
	}
	struct bufferevent *bev =
	    bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                   BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!bev) {
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	if (bufferevent_socket_connect_hostname(bev, dns, AF_UNSPEC, host, port) < 0) {
		bufferevent_free(bev);
		return NULL;
	}
	return bev;
}

/* bufferevent_openssl decrypts at most two records (32 KiB) per
 * readiness event (do_read in bufferevent_openssl.c), like the 4 KiB of
 * a plain bufferevent: a large response then costs a loop iteration per
 * 32 KiB. This reads on, record after record, straight into the input
 * while OpenSSL has bytes for it, up to max. It stops at the first
 * SSL_read that returns nothing: "want read", and also EOF or an error,
 * which the bufferevent then meets again on its own next read (OpenSSL
 * keeps returning them) and reports. */
static size_t tls_read_more(void *arg, struct bufferevent *bev, size_t max)
{
	(void)arg;
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	if (!ssl)
		return px_transport_tcp.read_more(NULL, bev, max);
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t got = 0;
	/* Unlike a socket bufferevent's, an OpenSSL bufferevent's input is
	 * not frozen at its end: it may be added to as it is. */
	while (got < max) {
		struct evbuffer_iovec v;
		size_t want = max - got < 16384 ? max - got : 16384;
		if (evbuffer_reserve_space(in, (ev_ssize_t)want, &v, 1) < 1)
			break;
		ERR_clear_error();
		int r = SSL_read(ssl, v.iov_base, (int)(v.iov_len < want ? v.iov_len : want));
		if (r <= 0) {
			ERR_clear_error();
			break;
		}
		v.iov_len = (size_t)r;
		if (evbuffer_commit_space(in, &v, 1))
			break;
		got += (size_t)r;
	}
	return got;
}

static size_t tls_write_now(void *arg, struct bufferevent *bev, struct evbuffer *src, size_t max)
{
	(void)arg;
	if (bufferevent_openssl_get_ssl(bev))
		return 0;
	return px_transport_tcp.write_now(NULL, bev, src, max);
}

/* Appends "; "-separated text to buf (n bytes used). */
static void add_text(char *buf, size_t len, size_t *n, const char *s)
{
	if (*n + 3 >= len)
		return;
	int w = snprintf(buf + *n, len - *n, "%s%s", *n ? "; " : "", s);
	if (w > 0)
		*n += (size_t)w < len - *n ? (size_t)w : len - *n - 1;
}

static const char *tls_describe(void *arg, struct bufferevent *bev, int connected, char *buf,
                                size_t len)
{
	struct px_tls *tls = arg;
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	if (!ssl)
		return NULL;
	char why[512];
	size_t n = 0;
	why[0] = '\0';
	int server = SSL_is_server(ssl);
	long v = connected ? X509_V_OK : SSL_get_verify_result(ssl);
	if (v != X509_V_OK && server) {
		char one[256];
		snprintf(
		    one, sizeof(one),
		    "client certificate refused (%s; tls_client_ca holds the CAs kwire trusts)",
		    X509_verify_cert_error_string(v));
		add_text(why, sizeof(why), &n, one);
	} else if (v != X509_V_OK) {
		char one[384];
		X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
		const char *host = X509_VERIFY_PARAM_get0_host(vp, 0);
		char *ip = host ? NULL : X509_VERIFY_PARAM_get1_ip_asc(vp);
		int mismatch =
		    v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH;
		snprintf(one, sizeof(one), "broker certificate refused (%s%s%s%s)",
		         X509_verify_cert_error_string(v), mismatch ? ": it is not for " : "",
		         mismatch ? (host ? host
		                     : ip ? ip
		                          : "the address connected to")
		                  : "",
		         mismatch ? "" : "; upstream_tls_ca holds the CAs kwire trusts");
		OPENSSL_free(ip);
		add_text(why, sizeof(why), &n, one);
	}
	unsigned long e;
	while ((e = bufferevent_get_openssl_error(bev)) != 0) {
		/* libevent queues the errno of a failed read as library 0. */
		if (!ERR_GET_LIB(e))
			continue;
		const char *reason = ERR_reason_error_string(e);
		char one[256];
		if (!reason) {
			ERR_error_string_n(e, one, sizeof(one));
			reason = one;
		}
		add_text(why, sizeof(why), &n, reason);
	}
	if (connected) {
		snprintf(buf, len, "%s", why);
		return buf[0] ? buf : NULL;
	}
	if (server)
		PX_INC(tls, handshake_failures, 1);
	else
		PX_INC(tls, upstream_failures, 1);
	snprintf(buf, len, "TLS handshake failed: %s", n ? why : "the peer closed the connection");
	return buf;
}

/* The name of the first DNS, URI or email subjectAltName. */
static int san_name(X509 *cert, char *out, size_t cap)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	int rc = -1;
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && rc < 0; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const ASN1_STRING *s = NULL;
		if (g->type == GEN_DNS)
			s = g->d.dNSName;
		else if (g->type == GEN_URI)
			s = g->d.uniformResourceIdentifier;
		else if (g->type == GEN_EMAIL)
			s = g->d.rfc822Name;
		if (!s)
			continue;
		int len = ASN1_STRING_length(s);
		const unsigned char *p = ASN1_STRING_get0_data(s);
		if (len <= 0 || (size_t)len >= cap || memchr(p, '\0', (size_t)len))
			continue;
		memcpy(out, p, (size_t)len);
		out[len] = '\0';
		rc = len;
	}
	GENERAL_NAMES_free(gens);
	return rc;
}

/* The subject DN as RFC 2253 writes it ("CN=alice,OU=eng,O=Example"),
 * as Kafka's X500Principal.getName() does, UTF-8 kept. */
static int dn_name(X509 *cert, char *out, size_t cap)
{
	BIO *bio = BIO_new(BIO_s_mem());
	if (!bio)
		return -1;
	X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0,
	                   XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
	char *p;
	long n = BIO_get_mem_data(bio, &p);
	int rc = -1;
	if (n > 0 && (size_t)n < cap) {
		memcpy(out, p, (size_t)n);
		out[n] = '\0';
		rc = (int)n;
	}
	BIO_free(bio);
	return rc;
}

/* The client's principal from its certificate ("User:" + the mapped
 * name); 0 without a certificate (or on a plain connection), -1 when no
 * mapping rule applies (the connection is refused, as Kafka does). */
static int tls_peer_principal(void *arg, struct bufferevent *bev, char *out, size_t cap, char *why,
                              size_t whylen)
{
	struct px_tls *tls = arg;
	const struct px_conf *conf = &tls->px->conf;
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	if (!ssl)
		return 0;
	PX_INC(tls, handshakes, 1);
	if (conf->tls_ktls && BIO_get_ktls_send(SSL_get_wbio(ssl)))
		PX_INC(tls, ktls_tx, 1);
	X509 *cert = SSL_get0_peer_certificate(ssl);
	if (!cert)
		return 0;
	char name[PX_PRINCIPAL_MAX], mapped[PX_PRINCIPAL_MAX];
	int src = conf->tls_principal_source;
	int n = src == PX_TLS_SOURCE_SAN ? san_name(cert, name, sizeof(name))
	                                 : dn_name(cert, name, sizeof(name));
	if (n < 0) {
		PX_INC(tls, no_principal, 1);
		snprintf(why, whylen, "its certificate has no %s kwire can read",
		         src == PX_TLS_SOURCE_SAN ? "DNS, URI or email subjectAltName"
		                                  : "subject name");
		return -1;
	}
	n = px_tls_map_name(conf->tls_principal_rules, name, mapped, sizeof(mapped));
	if (n < 0) {
		PX_INC(tls, no_principal, 1);
		snprintf(why, whylen, "no tls_principal_rules rule applies to '%s'", name);
		return -1;
	}
	snprintf(out, cap, "User:%s", mapped);
	return (int)strlen(out);
}

/* ---- the pre-TLS peek ---- */

#define PEEK_MAX (5 + KD_TLS_RECORD_MAX)
#define PEEK_RETRY_US 2000 /* a partial ClientHello: look again this much later */

struct px_peek {
	struct px_peek *next, *prev;
	struct px_worker *wk;
	struct px_handoff ho;
	struct event *ev;
	uint64_t deadline_us;
};

static struct px_peek **peek_head(struct px_worker *wk)
{
	return (struct px_peek **)&wk->peeks;
}

static void peek_free(struct px_peek *pk, int close_fd)
{
	if (pk->prev)
		pk->prev->next = pk->next;
	else
		*peek_head(pk->wk) = pk->next;
	if (pk->next)
		pk->next->prev = pk->prev;
	if (pk->ev)
		event_free(pk->ev);
	if (close_fd)
		evutil_closesocket(pk->ho.fd);
	PX_DEC(pk->wk->px, conns_active, 1);
	free(pk);
}

/* Whether p (n bytes) starts like a Kafka request: a size a broker would
 * take and a request header with a known API key and a sane version. */
static int looks_like_kafka(const uint8_t *p, size_t n, const char **api, int *ver)
{
	if (n < 12)
		return 0;
	uint32_t size = (uint32_t)kd_load_be(p, 4);
	int16_t key = (int16_t)kd_load_be(p + 4, 2);
	int16_t v = (int16_t)kd_load_be(p + 6, 2);
	const char *name = kd_api_name(key);
	if (size < 8 || size > 0x7fffffff || !name || v < 0 || v > 64)
		return 0;
	*api = name;
	*ver = v;
	return 1;
}

static void peek_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_peek *pk = arg;
	struct px *px = pk->wk->px;
	struct px_tls *tls = px->tls;
	static _Thread_local uint8_t buf[PEEK_MAX];
	(void)what;
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		px_log(px, 3, "%s: closed before its TLS handshake", pk->ho.client_addr);
		peek_free(pk, 1);
		return;
	}
	if (n < 0)
		n = 0;
	struct kd_tls_hello hello;
	size_t need = 0;
	int rc = kd_tls_hello_parse(buf, (size_t)n, &hello, &need);
	if (rc == KD_NEED_MORE) {
		if (px_now_us() >= pk->deadline_us) {
			px_log(px, 1,
			       "%s: no TLS ClientHello within %u ms (%zd bytes came): closing",
			       pk->ho.client_addr, px->conf.connect_timeout_ms, n);
			PX_INC(tls, not_tls, 1);
			peek_free(pk, 1);
			return;
		}
		/* Bytes may be waiting: a read event would fire at once again.
		 * Look again a little later instead. */
		struct timeval tv = {0, n ? PEEK_RETRY_US : 0};
		event_del(pk->ev);
		event_assign(pk->ev, pk->wk->base, fd, n ? EV_TIMEOUT : EV_READ, peek_cb, pk);
		if (n)
			event_add(pk->ev, &tv);
		else {
			uint64_t left = pk->deadline_us - px_now_us();
			struct timeval dl = {(time_t)(left / 1000000u),
			                     (suseconds_t)(left % 1000000u)};
			event_add(pk->ev, &dl);
		}
		return;
	}
	if (rc != KD_OK) {
		const char *api;
		int ver;
		if (looks_like_kafka(buf, (size_t)n, &api, &ver)) {
			PX_INC(tls, plain_on_tls, 1);
			px_log(px, 1,
			       "%s: plaintext Kafka client on a TLS listener (its first request is "
			       "%s v%d, not a TLS ClientHello): closing; the client needs "
			       "security.protocol SSL",
			       pk->ho.client_addr, api, ver);
		} else {
			PX_INC(tls, not_tls, 1);
			px_log(px, 1,
			       "%s: not a TLS client on a TLS listener (first bytes %02x %02x %02x "
			       "%02x): closing",
			       pk->ho.client_addr, n > 0 ? buf[0] : 0, n > 1 ? buf[1] : 0,
			       n > 2 ? buf[2] : 0, n > 3 ? buf[3] : 0);
		}
		peek_free(pk, 1);
		return;
	}
	struct px_handoff ho = pk->ho;
	if (px->conf.sni_hosts) {
		ho.broker_id = -1;
		if (hello.has_sni)
			ho.broker_id =
			    px_tls_sni_node(px->conf.sni_hosts, hello.sni.p, hello.sni.len);
		/* The name is the client's: only printable bytes reach the log. */
		char name[128];
		size_t k = 0;
		for (; hello.has_sni && k < hello.sni.len && k + 1 < sizeof(name); k++)
			name[k] = hello.sni.p[k] > 0x20 && hello.sni.p[k] < 0x7f
			              ? (char)hello.sni.p[k]
			              : '?';
		name[k] = '\0';
		px_log(px, 3, "%s: TLS server name '%s': broker %d (-1: bootstrap)", ho.client_addr,
		       name, ho.broker_id);
	}
	struct px_worker *wk = pk->wk;
	peek_free(pk, 0);
	px_conn_new(wk, &ho);
}

void px_tls_peek(struct px_worker *wk, const struct px_handoff *ho)
{
	struct px *px = wk->px;
	struct px_peek *pk = calloc(1, sizeof(*pk));
	if (!pk) {
		evutil_closesocket(ho->fd);
		return;
	}
	pk->wk = wk;
	pk->ho = *ho;
	pk->ho.next = NULL;
	pk->deadline_us = px_now_us() + (uint64_t)px->conf.connect_timeout_ms * 1000u;
	pk->ev = event_new(wk->base, ho->fd, EV_READ, peek_cb, pk);
	pk->next = *peek_head(wk);
	if (pk->next)
		pk->next->prev = pk;
	*peek_head(wk) = pk;
	PX_INC(px, conns_active, 1);
	struct timeval tv = {px->conf.connect_timeout_ms / 1000,
	                     (px->conf.connect_timeout_ms % 1000) * 1000};
	if (!pk->ev || event_add(pk->ev, &tv)) {
		peek_free(pk, 1);
		return;
	}
}

void px_tls_peek_close_all(struct px_worker *wk)
{
	while (*peek_head(wk))
		peek_free(*peek_head(wk), 1);
}

int px_tls_peeks(const struct px_tls *tls)
{
	/* From the configuration, not from srv, which a reload swaps. */
	return tls && has(tls->px->conf.tls_cert);
}

/* ---- reload ---- */

static void stamp(const char *path, struct fstamp *st)
{
	struct stat sb;
	memset(st, 0, sizeof(*st));
	if (!path || stat(path, &sb))
		return;
	st->ok = 1;
	st->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
	st->ctime_ns = (int64_t)sb.st_ctim.tv_sec * 1000000000 + sb.st_ctim.tv_nsec;
	st->size = (int64_t)sb.st_size;
	st->ino = (uint64_t)sb.st_ino;
}

static int stamps_differ(const struct fstamp *a, const struct fstamp *b)
{
	return a->ok != b->ok || a->mtime_ns != b->mtime_ns || a->ctime_ns != b->ctime_ns ||
	       a->size != b->size || a->ino != b->ino;
}

/* Rebuilds the side(s) whose files are in mask (bits 1 << F_*). */
static void reload(struct px_tls *tls, unsigned mask, const char *why)
{
	struct px *px = tls->px;
	const struct px_conf *conf = &px->conf;
	char err[512];
	unsigned srv_files = 1u << F_CERT | 1u << F_KEY | 1u << F_CHAIN | 1u << F_CLIENT_CA;
	unsigned cli_files = 1u << F_UP_CA | 1u << F_UP_CERT | 1u << F_UP_KEY;
	for (int server = 1; server >= 0; server--) {
		if (!(mask & (server ? srv_files : cli_files)))
			continue;
		if (server ? !tls->srv : !tls->cli)
			continue;
		SSL_CTX *ctx = server ? server_ctx(conf, err, sizeof(err))
		                      : client_ctx(conf, err, sizeof(err));
		if (!ctx) {
			PX_INC(tls, reload_failures, 1);
			px_log(px, 0,
			       "TLS: reloading the %s certificates (%s) failed: %s; the "
			       "certificates loaded before stay in use",
			       server ? "listener's" : "upstream", why, err);
			continue;
		}
		pthread_mutex_lock(&tls->mu);
		SSL_CTX **slot = server ? &tls->srv : &tls->cli;
		SSL_CTX *old = *slot;
		*slot = ctx;
		pthread_mutex_unlock(&tls->mu);
		SSL_CTX_free(old); /* open connections keep their own reference */
		PX_INC(tls, reloads, 1);
		px_log(px, 2, "TLS: %s certificates reloaded (%s); new connections use them",
		       server ? "listener's" : "upstream", why);
	}
}

void px_tls_reload(struct px_tls *tls)
{
	if (!tls)
		return;
	pthread_mutex_lock(&tls->rmu);
	for (int i = 0; i < F_N; i++)
		stamp(tls->files[i], &tls->stamps[i]);
	reload(tls, ~0u, "SIGHUP");
	pthread_mutex_unlock(&tls->rmu);
}

static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_tls *tls = arg;
	(void)fd;
	(void)what;
	unsigned mask = 0;
	pthread_mutex_lock(&tls->rmu);
	for (int i = 0; i < F_N; i++) {
		if (!tls->files[i])
			continue;
		struct fstamp now;
		stamp(tls->files[i], &now);
		if (stamps_differ(&now, &tls->stamps[i])) {
			tls->stamps[i] = now;
			mask |= 1u << i;
		}
	}
	if (mask)
		reload(tls, mask, "a file changed");
	pthread_mutex_unlock(&tls->rmu);
}

int px_tls_watch(struct px_tls *tls, struct event_base *base)
{
	tls->watch_ev = event_new(base, -1, EV_PERSIST, watch_cb, tls);
	struct timeval tv = {1, 0};
	if (!tls->watch_ev || event_add(tls->watch_ev, &tv))
		return -1;
	return 0;
}

/* ---- lifecycle ---- */

int px_tls_new(struct px *px, struct px_tls **out, char *err, size_t errlen)
{
	const struct px_conf *conf = &px->conf;
	*out = NULL;
	if (!has(conf->tls_cert) && !conf->upstream_tls)
		return 0;
	struct px_tls *tls = calloc(1, sizeof(*tls));
	if (!tls) {
		kd_errf(err, errlen, "out of memory");
		return -1;
	}
	tls->px = px;
	pthread_mutex_init(&tls->mu, NULL);
	pthread_mutex_init(&tls->rmu, NULL);
	tls->files[F_CERT] = conf->tls_cert;
	tls->files[F_KEY] = conf->tls_key;
	tls->files[F_CHAIN] = conf->tls_chain;
	tls->files[F_CLIENT_CA] = conf->tls_client_ca;
	if (conf->upstream_tls) {
		tls->files[F_UP_CA] = conf->upstream_tls_ca;
		tls->files[F_UP_CERT] = conf->upstream_tls_cert;
		tls->files[F_UP_KEY] = conf->upstream_tls_key;
	}
	for (int i = 0; i < F_N; i++) {
		if (tls->files[i] && !tls->files[i][0])
			tls->files[i] = NULL;
		stamp(tls->files[i], &tls->stamps[i]);
	}
	if (has(conf->tls_cert) && !(tls->srv = server_ctx(conf, err, errlen)))
		goto fail;
	if (conf->upstream_tls && !(tls->cli = client_ctx(conf, err, errlen)))
		goto fail;
	tls->tp = (struct px_transport){
	    .name = "tls",
	    .accepted = tls_accepted,
	    .connect = tls_connect,
	    .read_more = tls_read_more,
	    .write_now = tls_write_now,
	    .describe = tls_describe,
	    .peer_principal = tls_peer_principal,
	    .ctx = tls,
	};
	*out = tls;
	return 0;
fail:
	px_tls_free(&tls);
	return -1;
}

const struct px_transport *px_tls_transport(struct px_tls *tls)
{
	return &tls->tp;
}

void px_tls_free(struct px_tls **tlsp)
{
	struct px_tls *tls = *tlsp;
	if (!tls)
		return;
	if (tls->watch_ev)
		event_free(tls->watch_ev);
	SSL_CTX_free(tls->srv);
	SSL_CTX_free(tls->cli);
	pthread_mutex_destroy(&tls->mu);
	pthread_mutex_destroy(&tls->rmu);
	free(tls);
	*tlsp = NULL;
}

void px_tls_count_tls_on_plain(struct px *px)
{
	atomic_fetch_add_explicit(&px->tls_on_plain, 1, memory_order_relaxed);
}

void px_tls_stats_get(const struct px *px, struct px_tls_stats *out)
{
	memset(out, 0, sizeof(*out));
	struct px *m = (struct px *)px;
	out->tls_on_plain = atomic_load_explicit(&m->tls_on_plain, memory_order_relaxed);
	struct px_tls *tls = m->tls;
	if (!tls)
		return;
#define L(f) out->f = atomic_load_explicit(&tls->f, memory_order_relaxed)
	L(handshakes);
	L(handshake_failures);
	L(upstream_failures);
	L(plain_on_tls);
	L(not_tls);
	L(no_principal);
	L(reloads);
	L(reload_failures);
	L(ktls_tx);
#undef L
}
