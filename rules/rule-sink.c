/* rule-sink.c: `tls:` and `sasl:` of a Kafka sink's `to:` (rule-yaml.h),
 * turned into the librdkafka properties that say the same. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rule-yaml.h"

#define SINK_PASSWORD_MAX 1024

static int tls_pair(struct yl *y, const char *key, const yaml_node_t *knode, const yaml_node_t *val,
                    void *ctx)
{
	struct rule_sink_sec *s = ctx;
	if (!strcmp(key, "ca"))
		return y_dup(y, val, key, &s->ca);
	if (!strcmp(key, "cert"))
		return y_dup(y, val, key, &s->cert);
	if (!strcmp(key, "key"))
		return y_dup(y, val, key, &s->key);
	if (!strcmp(key, "verify")) {
		int b;
		if (y_bool(y, val, key, &b))
			return -1;
		s->no_verify = !b;
		return 0;
	}
	return yerr(y, knode, "unknown 'tls' key '%s' (ca, cert, key, verify)", key);
}

/* Reads the password from file (one line; a final line feed is not part
 * of it). Never shows what it read. */
static int read_password(struct yl *y, const yaml_node_t *node, const char *file, char **out)
{
	char buf[SINK_PASSWORD_MAX + 2];
	FILE *f = fopen(file, "r");
	if (!f)
		return yerr(y, node, "'password_file': cannot open %s: %s", file, strerror(errno));
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	int bad = ferror(f);
	fclose(f);
	if (bad)
		return yerr(y, node, "'password_file': cannot read %s", file);
	if (n > SINK_PASSWORD_MAX)
		return yerr(y, node, "'password_file': %s holds more than %d bytes", file,
		            SINK_PASSWORD_MAX);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = 0;
	if (!n || memchr(buf, '\n', n))
		return yerr(y, node,
		            "'password_file': %s must hold the password alone, on one line", file);
	free(*out);
	*out = strdup(buf);
	memset(buf, 0, sizeof(buf));
	return *out ? 0 : yerr(y, node, "out of memory");
}

static int sasl_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                     const yaml_node_t *val, void *ctx)
{
	struct rule_sink_sec *s = ctx;
	if (!strcmp(key, "mechanism")) {
		static const char *const mechs[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"};
		if (y_str(y, val, key, s->mechanism, sizeof(s->mechanism)))
			return -1;
		for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
			if (!strcmp(s->mechanism, mechs[i]))
				return 0;
		return yerr(y, val,
		            "'mechanism': '%s' is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
		            s->mechanism);
	}
	if (!strcmp(key, "username"))
		return y_dup(y, val, key, &s->username);
	if (!strcmp(key, "password")) {
		if (s->password_file)
			return yerr(y, knode, "'password' and 'password_file': give one");
		s->password_inline = 1;
		return y_dup(y, val, key, &s->password);
	}
	if (!strcmp(key, "password_file")) {
		if (s->password_inline)
			return yerr(y, knode, "'password' and 'password_file': give one");
		if (y_dup(y, val, key, &s->password_file))
			return -1;
		return read_password(y, val, s->password_file, &s->password);
	}
	return yerr(y, knode,
	            "unknown 'sasl' key '%s' (mechanism, username, password, password_file)", key);
}

int rule_sink_sec_pair(struct yl *y, const char *key, const yaml_node_t *knode,
                       const yaml_node_t *val, struct rule_sink_sec *s)
{
	(void)knode;
	if (!strcmp(key, "tls")) {
		s->tls = 1;
		if (val->type == YAML_MAPPING_NODE)
			return y_map(y, val, "'tls'", tls_pair, s);
		int b;
		if (y_bool(y, val, key, &b))
			return -1;
		s->tls = (uint8_t)b;
		return 0;
	}
	if (!strcmp(key, "sasl")) {
		s->sasl = 1;
		return y_map(y, val, "'sasl'", sasl_pair, s);
	}
	return 1;
}

/* Whether librdkafka property name p is one that tls: or sasl: sets. */
static int security_prop(const char *p)
{
	return !strcmp(p, "security.protocol") || !strncmp(p, "ssl.", 4) ||
	       !strncmp(p, "sasl.", 5) || !strcmp(p, "enable.ssl.certificate.verification");
}

int rule_sink_sec_finish(struct yl *y, const yaml_node_t *node, struct rule_sink_sec *s,
                         char *const *props, size_t nprops, rule_sink_prop_fn *add, void *ctx)
{
	if (!s->tls && !s->sasl)
		return 0;
	for (size_t i = 0; i < nprops; i++)
		if (security_prop(props[2 * i]))
			return yerr(y, node,
			            "'properties': '%s' and 'tls'/'sasl' say the same thing: give "
			            "one",
			            props[2 * i]);
	if (!s->tls && (s->ca || s->cert || s->key || s->no_verify))
		return yerr(y, node, "'tls: false' with TLS settings");
	if (!s->cert != !s->key)
		return yerr(y, node, "'tls': 'cert' and 'key' go together");
	if (s->sasl && (!s->mechanism[0] || !s->username || !s->password))
		return yerr(y, node,
		            "'sasl' needs 'mechanism', 'username' and 'password' (or "
		            "'password_file')");
	const char *proto = s->sasl ? (s->tls ? "SASL_SSL" : "SASL_PLAINTEXT") : "SSL";
	int rc = add(ctx, "security.protocol", proto);
	if (!rc && s->ca)
		rc = add(ctx, "ssl.ca.location", s->ca);
	if (!rc && s->cert)
		rc = add(ctx, "ssl.certificate.location", s->cert);
	if (!rc && s->key)
		rc = add(ctx, "ssl.key.location", s->key);
	if (!rc && s->no_verify) {
		rc = add(ctx, "enable.ssl.certificate.verification", "false");
		if (!rc)
			rc = add(ctx, "ssl.endpoint.identification.algorithm", "none");
	}
	if (!rc && s->sasl) {
		rc = add(ctx, "sasl.mechanisms", s->mechanism);
		if (!rc)
			rc = add(ctx, "sasl.username", s->username);
		if (!rc)
			rc = add(ctx, "sasl.password", s->password);
	}
	return rc ? yerr(y, node, "out of memory") : 0;
}

void rule_sink_sec_free(struct rule_sink_sec *s)
{
	free(s->ca);
	free(s->cert);
	free(s->key);
	free(s->username);
	if (s->password) {
		memset(s->password, 0, strlen(s->password));
		free(s->password);
	}
	free(s->password_file);
	memset(s, 0, sizeof(*s));
}
