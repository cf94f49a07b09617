/* px-conf.c: the proxy's configuration: defaults, YAML loading (libyaml),
 * host:port parsing, the broker port rule. No sockets here. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include <yaml.h>

#include "kd.h"
#include "px-sasl.h"
#include "px.h"

void px_conf_init(struct px_conf *conf)
{
	memset(conf, 0, sizeof(*conf));
	snprintf(conf->listen.host, sizeof(conf->listen.host), "0.0.0.0");
	conf->listen.port = 9092;
	conf->max_brokers = 256;
	conf->broker_grace_ms = 600000; /* twice clients' metadata refresh (5 min) */
	conf->max_frame = 100u * 1024 * 1024;
	conf->buffer_bytes = 1024 * 1024;
	conf->max_inflight = 1024;
	conf->connect_timeout_ms = 10000;
	conf->idle_timeout_ms = 600000; /* Kafka's connections.max.idle.ms is 10 min */
	conf->drain_timeout_ms = 10000;
	conf->clamp_api_versions = 1;
	conf->rewrite = 1;
	conf->access_log_format = PX_LOGF_TEXT;
	conf->log_level = 2;
	conf->tap_max_bytes = 100ull << 20; /* px-tap.h defaults */
	conf->tap_files = 10;
	conf->tap_buffer_bytes = 16u << 20;
	conf->tls_client_auth = PX_TLS_AUTH_DEFAULT;
	conf->upstream_tls_verify = 1;
	px_sasl_conf_init(&conf->sasl);
}

/* The heap strings of struct px_conf, for copy and free. */
static const size_t conf_strs[] = {
    offsetof(struct px_conf, access_log),
    offsetof(struct px_conf, rules),
    offsetof(struct px_conf, tls_cert),
    offsetof(struct px_conf, tls_key),
    offsetof(struct px_conf, tls_chain),
    offsetof(struct px_conf, tls_client_ca),
    offsetof(struct px_conf, tls_principal_rules),
    offsetof(struct px_conf, upstream_tls_ca),
    offsetof(struct px_conf, upstream_tls_cert),
    offsetof(struct px_conf, upstream_tls_key),
    offsetof(struct px_conf, upstream_tls_server_name),
    offsetof(struct px_conf, sni_hosts),
    offsetof(struct px_conf, tap),
    offsetof(struct px_conf, audit_log),
};
#define CONF_STR(conf, i) ((char **)((char *)(conf) + conf_strs[i]))
#define CONF_NSTRS (sizeof(conf_strs) / sizeof(conf_strs[0]))

void px_conf_free(struct px_conf *conf)
{
	free(conf->broker_ports);
	for (size_t i = 0; i < CONF_NSTRS; i++)
		free(*CONF_STR(conf, i));
	px_conf_init(conf);
}

int px_conf_copy(struct px_conf *dst, const struct px_conf *src)
{
	*dst = *src;
	dst->broker_ports = NULL;
	for (size_t i = 0; i < CONF_NSTRS; i++)
		*CONF_STR(dst, i) = NULL;
	if (src->nbroker_ports) {
		dst->broker_ports = calloc(src->nbroker_ports, sizeof(*dst->broker_ports));
		if (!dst->broker_ports)
			goto fail;
		memcpy(dst->broker_ports, src->broker_ports,
		       src->nbroker_ports * sizeof(*dst->broker_ports));
	}
	for (size_t i = 0; i < CONF_NSTRS; i++) {
		const char *v = *CONF_STR(src, i);
		if (v && !(*CONF_STR(dst, i) = strdup(v)))
			goto fail;
	}
	return 0;
fail:
	free(dst->broker_ports);
	dst->broker_ports = NULL;
	dst->nbroker_ports = 0;
	for (size_t i = 0; i < CONF_NSTRS; i++) {
		free(*CONF_STR(dst, i));
		*CONF_STR(dst, i) = NULL;
	}
	return -1;
}

/* Parses a decimal integer in [lo, hi] spanning all of s[0..len). */
static int parse_int(const char *s, size_t len, long long lo, long long hi, long long *out)
{
	char buf[32];
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	char *end;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (errno || *end || end == buf || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int px_hostport_parse(const char *s, int need_host, struct px_hostport *hp, char *err,
                      size_t errlen)
{
	const char *host = NULL, *port;
	size_t hostlen = 0;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':') {
			kd_errf(err, errlen, "'%s': expected [IPv6]:PORT", s);
			return -1;
		}
		host = s + 1;
		hostlen = (size_t)(close - host);
		port = close + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (colon && memchr(s, ':', (size_t)(colon - s))) {
			kd_errf(err, errlen, "'%s': write IPv6 addresses as [ADDR]:PORT", s);
			return -1;
		}
		if (colon) {
			host = s;
			hostlen = (size_t)(colon - s);
			port = colon + 1;
		} else {
			port = s;
		}
	}
	long long v;
	if (!host && need_host) {
		kd_errf(err, errlen, "'%s': expected HOST:PORT", s);
		return -1;
	}
	if (host && hostlen == 0 && need_host) {
		kd_errf(err, errlen, "'%s': empty host", s);
		return -1;
	}
	if (parse_int(port, strlen(port), 0, 65535, &v)) {
		kd_errf(err, errlen, "'%s': bad port", s);
		return -1;
	}
	if (hostlen >= sizeof(hp->host)) {
		kd_errf(err, errlen, "'%s': host name too long", s);
		return -1;
	}
	if (host) {
		memcpy(hp->host, host, hostlen);
		hp->host[hostlen] = '\0';
		if (hostlen == 0)
			snprintf(hp->host, sizeof(hp->host), "0.0.0.0");
	}
	hp->port = (uint16_t)v;
	return 0;
}

int px_conf_set_upstreams(struct px_conf *conf, const char *list, char *err, size_t errlen)
{
	struct px_hostport ups[PX_UPSTREAM_MAX];
	unsigned n = 0;
	const char *p = list;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		while (len && isspace((unsigned char)*p)) {
			p++;
			len--;
		}
		while (len && isspace((unsigned char)p[len - 1]))
			len--;
		if (len) {
			char one[PX_HOST_MAX + 16];
			if (len >= sizeof(one)) {
				kd_errf(err, errlen, "upstream address too long");
				return -1;
			}
			if (n == PX_UPSTREAM_MAX) {
				kd_errf(err, errlen, "more than %d upstream addresses",
				        PX_UPSTREAM_MAX);
				return -1;
			}
			memcpy(one, p, len);
			one[len] = '\0';
			memset(&ups[n], 0, sizeof(ups[n]));
			if (px_hostport_parse(one, 1, &ups[n], err, errlen))
				return -1;
			if (ups[n].port == 0) {
				kd_errf(err, errlen, "'%s': upstream port 0", one);
				return -1;
			}
			n++;
		}
		if (!comma)
			break;
		p = comma + 1;
	}
	if (n == 0) {
		kd_errf(err, errlen, "empty upstream list");
		return -1;
	}
	memcpy(conf->upstreams, ups, n * sizeof(ups[0]));
	conf->nupstreams = n;
	return 0;
}

int px_conf_set_broker_port(struct px_conf *conf, int32_t node_id, uint16_t port, char *err,
                            size_t errlen)
{
	for (unsigned i = 0; i < conf->nbroker_ports; i++) {
		if (conf->broker_ports[i].node_id == node_id) {
			conf->broker_ports[i].port = port;
			return 0;
		}
	}
	if (conf->nbroker_ports >= PX_BROKER_MAX) {
		kd_errf(err, errlen, "more than %d broker_ports rows", PX_BROKER_MAX);
		return -1;
	}
	struct px_broker_port *bp =
	    realloc(conf->broker_ports, (conf->nbroker_ports + 1) * sizeof(*bp));
	if (!bp) {
		kd_errf(err, errlen, "out of memory");
		return -1;
	}
	bp[conf->nbroker_ports].node_id = node_id;
	bp[conf->nbroker_ports].port = port;
	conf->broker_ports = bp;
	conf->nbroker_ports++;
	return 0;
}

static int check_ports(const struct px_conf *conf, char *err, size_t errlen);

int px_conf_check(const struct px_conf *conf, char *err, size_t errlen)
{
	if (conf->nupstreams == 0) {
		kd_errf(err, errlen,
		        "no upstream: give --upstream HOST:PORT or 'upstream:' in the file");
		return -1;
	}
	if (conf->max_frame < 64) {
		kd_errf(err, errlen, "max_frame_bytes %" PRIu32 " is too small", conf->max_frame);
		return -1;
	}
	if (conf->buffer_bytes < 4096) {
		kd_errf(err, errlen, "buffer_bytes %zu is too small (at least 4096)",
		        conf->buffer_bytes);
		return -1;
	}
	if (conf->max_inflight == 0) {
		kd_errf(err, errlen, "max_inflight must be at least 1");
		return -1;
	}
	if (conf->max_brokers < 1 || conf->max_brokers > PX_BROKER_MAX - 1) {
		kd_errf(err, errlen, "max_brokers %u: 1..%d", conf->max_brokers, PX_BROKER_MAX - 1);
		return -1;
	}
	if (conf->workers > 256) {
		kd_errf(err, errlen, "workers %u: at most 256", conf->workers);
		return -1;
	}
	for (unsigned i = 0; i < conf->nbroker_ports; i++) {
		if (conf->broker_ports[i].port == 0 ||
		    conf->broker_ports[i].port == conf->listen.port) {
			kd_errf(err, errlen, "broker_ports: node %" PRId32 " has port %u",
			        conf->broker_ports[i].node_id, conf->broker_ports[i].port);
			return -1;
		}
		for (unsigned j = 0; j < i; j++)
			if (conf->broker_ports[j].port == conf->broker_ports[i].port) {
				kd_errf(err, errlen, "broker_ports: port %u used twice",
				        conf->broker_ports[i].port);
				return -1;
			}
	}
	if (px_tls_conf_check(conf, err, errlen) ||
	    px_sasl_conf_check(&conf->sasl, err, errlen))
		return -1;
	return check_ports(conf, err, errlen);
}

static int wildcard(const char *host)
{
	return !host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !strcmp(host, "*");
}

/* Two listeners on the same port clash when their hosts can overlap. Names
 * are not resolved: two different names are taken as different hosts. */
static int hosts_overlap(const char *a, const char *b)
{
	return wildcard(a) || wildcard(b) || !strcmp(a, b);
}

static int has_row(const struct px_conf *conf, int32_t node_id)
{
	for (unsigned i = 0; i < conf->nbroker_ports; i++)
		if (conf->broker_ports[i].node_id == node_id)
			return 1;
	return 0;
}

/* The node id whose rule port (base + id, no broker_ports row) is port,
 * among the ids brokers get in practice: 0..max_brokers-1 (assigned by
 * hand, KRaft) and 1001..1000+max_brokers (ZooKeeper's automatic ids,
 * above reserved.broker.max.id). Returns -1 when none. */
static int32_t rule_node_for(const struct px_conf *conf, long base, uint16_t port)
{
	long id = (long)port - base;
	if (id < 0)
		return -1;
	if (id >= (long)conf->max_brokers && (id < 1001 || id > 1000 + (long)conf->max_brokers))
		return -1;
	return has_row(conf, (int32_t)id) ? -1 : (int32_t)id;
}

/* Listen, admin, broker_ports and the rule must not want one port. Broker
 * listeners bind on the listen host. Ephemeral ports (0) cannot clash. */
static int check_ports(const struct px_conf *conf, char *err, size_t errlen)
{
	int admin = conf->admin.port != 0;
	const char *lh = conf->listen.host;
	long base = conf->broker_port_base ? conf->broker_port_base
	            : conf->listen.port    ? (long)conf->listen.port + 1
	                                   : 0;
	if (admin && conf->listen.port == conf->admin.port && hosts_overlap(lh, conf->admin.host)) {
		kd_errf(err, errlen, "admin and listen both use port %u", conf->admin.port);
		return -1;
	}
	for (unsigned i = 0; i < conf->nbroker_ports; i++) {
		const struct px_broker_port *bp = &conf->broker_ports[i];
		if (admin && bp->port == conf->admin.port && hosts_overlap(lh, conf->admin.host)) {
			kd_errf(err, errlen,
			        "admin port %u is also broker_ports' port for node %" PRId32,
			        bp->port, bp->node_id);
			return -1;
		}
		int32_t other = base ? rule_node_for(conf, base, bp->port) : -1;
		if (other >= 0 && other != bp->node_id) {
			kd_errf(err, errlen,
			        "broker_ports gives node %" PRId32
			        " port %u, which the broker port rule "
			        "gives node %" PRId32 " (%ld + %" PRId32
			        "); add a broker_ports row for "
			        "node %" PRId32 " or change broker_port_base",
			        bp->node_id, bp->port, other, base, other, other);
			return -1;
		}
	}
	if (!base)
		return 0;
	int32_t id;
	if (admin && hosts_overlap(lh, conf->admin.host) &&
	    (id = rule_node_for(conf, base, conf->admin.port)) >= 0) {
		kd_errf(err, errlen,
		        "admin port %u is broker %" PRId32
		        "'s proxy port under the broker port rule "
		        "(%ld + %" PRId32 "); move admin, or change broker_port_base, or add a "
		        "broker_ports row for node %" PRId32,
		        conf->admin.port, id, base, id, id);
		return -1;
	}
	if (conf->listen.port && (id = rule_node_for(conf, base, conf->listen.port)) >= 0) {
		kd_errf(err, errlen,
		        "listen port %u is broker %" PRId32
		        "'s proxy port under the broker port rule "
		        "(broker_port_base %ld + %" PRId32 "); change broker_port_base or add a "
		        "broker_ports row for node %" PRId32,
		        conf->listen.port, id, base, id, id);
		return -1;
	}
	return 0;
}

uint16_t px_conf_broker_port(const struct px_conf *conf, uint16_t bound_listen_port,
                             int32_t node_id)
{
	for (unsigned i = 0; i < conf->nbroker_ports; i++)
		if (conf->broker_ports[i].node_id == node_id)
			return conf->broker_ports[i].port;
	if (node_id < 0)
		return 0;
	long base = conf->broker_port_base;
	if (base == 0) {
		if (bound_listen_port == 0 || conf->listen.port == 0)
			return 0;
		base = (long)bound_listen_port + 1;
	}
	long port = base + node_id;
	if (port > 65535 || port == bound_listen_port)
		return 0;
	return (uint16_t)port;
}

/* ---- YAML ---- */

/* Where each node is referred to. libyaml's document resolves an alias to
 * the anchored node, whose marks are the anchor's: an error in a value
 * given as *alias would point at the anchor. A first pass over the events
 * records, for every collection (by document node index), the mark of
 * each child reference as written (the alias's own position for an
 * alias); mapping children are key, value, key, value... */
struct yref {
	yaml_mark_t *marks;
	size_t n, cap;
};

struct yctx {
	yaml_document_t *doc;
	const char *name;
	char *err;
	size_t errlen;
	struct yref *refs; /* by node index; NULL when the first pass failed */
	size_t nrefs;
	const yaml_mark_t *at; /* where the node being checked is referred to */
};

static int yerr(struct yctx *y, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "FILE:LINE:COL: message" with 1-based line and column; returns -1. */
static int yerr(struct yctx *y, const yaml_node_t *node, const char *fmt, ...)
{
	char msg[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const yaml_mark_t *m = y->at ? y->at : &node->start_mark;
	kd_errf(y->err, y->errlen, "%s:%zu:%zu: %s", y->name, m->line + 1, m->column + 1, msg);
	return -1;
}

/* Child ord of the collection node index parent, as referred to there:
 * sets y->at to the reference's mark and returns the node. */
static yaml_node_t *y_child(struct yctx *y, int parent, size_t ord, int index)
{
	y->at = NULL;
	if (y->refs && parent > 0 && (size_t)parent < y->nrefs && ord < y->refs[parent].n)
		y->at = &y->refs[parent].marks[ord];
	return yaml_document_get_node(y->doc, index);
}

static int yref_add(struct yctx *y, int parent, yaml_mark_t mark)
{
	if (parent <= 0)
		return 0;
	struct yref *r = &y->refs[parent];
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8;
		yaml_mark_t *m = realloc(r->marks, cap * sizeof(*m));
		if (!m)
			return -1;
		r->marks = m;
		r->cap = cap;
	}
	r->marks[r->n++] = mark;
	return 0;
}

static void yrefs_free(struct yctx *y)
{
	for (size_t i = 0; i < y->nrefs; i++)
		free(y->refs[i].marks);
	free(y->refs);
	y->refs = NULL;
	y->nrefs = 0;
}

/* The first pass (see struct yref). On any failure refs stay NULL and
 * errors point at nodes as before. Node indices count from 1 in the
 * order libyaml's loader creates nodes: one per scalar, sequence start
 * and mapping start event, none per alias. */
static void yrefs_build(struct yctx *y, const char *yaml, size_t len)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	int stack[64], depth = 0, next = 0, done = 0, ok = 1;
	if (!yaml_parser_initialize(&parser))
		return;
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	while (!done && ok) {
		if (!yaml_parser_parse(&parser, &ev)) {
			ok = 0;
			break;
		}
		int parent = depth ? stack[depth - 1] : 0;
		switch (ev.type) {
		case YAML_SCALAR_EVENT:
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			next++;
			if ((size_t)next >= y->nrefs) {
				size_t n = y->nrefs ? y->nrefs * 2 : 64;
				struct yref *r = realloc(y->refs, n * sizeof(*r));
				if (!r) {
					ok = 0;
					break;
				}
				memset(r + y->nrefs, 0, (n - y->nrefs) * sizeof(*r));
				y->refs = r;
				y->nrefs = n;
			}
			if (yref_add(y, parent, ev.start_mark))
				ok = 0;
			if (ev.type != YAML_SCALAR_EVENT) {
				if (depth == (int)(sizeof(stack) / sizeof(stack[0])))
					ok = 0;
				else
					stack[depth++] = next;
			}
			break;
		case YAML_ALIAS_EVENT:
			if (yref_add(y, parent, ev.start_mark))
				ok = 0;
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			if (depth)
				depth--;
			break;
		case YAML_DOCUMENT_END_EVENT:
		case YAML_STREAM_END_EVENT:
			done = 1;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	if (!ok)
		yrefs_free(y);
}

static const char *node_type_name(const yaml_node_t *node)
{
	switch (node->type) {
	case YAML_SCALAR_NODE:
		return "a scalar";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

/* A scalar's text as a NUL-terminated copy in buf; -1 (with error) when
 * node is not a scalar or does not fit. */
static int y_str(struct yctx *y, const yaml_node_t *node, const char *key, char *buf, size_t cap)
{
	if (node->type != YAML_SCALAR_NODE)
		return yerr(y, node, "'%s' must be a string, not %s", key, node_type_name(node));
	size_t len = node->data.scalar.length;
	if (len >= cap)
		return yerr(y, node, "'%s' is too long", key);
	if (memchr(node->data.scalar.value, '\0', len))
		return yerr(y, node, "'%s' contains a NUL byte", key);
	memcpy(buf, node->data.scalar.value, len);
	buf[len] = '\0';
	return 0;
}

/* An integer scalar in [lo, hi]; a quoted scalar is accepted when it reads
 * as an integer. */
static int y_int(struct yctx *y, const yaml_node_t *node, const char *key, long long lo,
                 long long hi, long long *out)
{
	if (node->type != YAML_SCALAR_NODE)
		return yerr(y, node, "'%s' must be an integer, not %s", key, node_type_name(node));
	if (parse_int((const char *)node->data.scalar.value, node->data.scalar.length, lo, hi, out))
		return yerr(y, node, "'%s' must be an integer in [%lld, %lld], not '%.*s'", key, lo,
		            hi,
		            (int)(node->data.scalar.length > 64 ? 64 : node->data.scalar.length),
		            (const char *)node->data.scalar.value);
	return 0;
}

static int y_bool(struct yctx *y, const yaml_node_t *node, const char *key, int *out)
{
	static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "On"};
	static const char *const no[] = {"false", "False", "FALSE", "no", "No", "off", "Off"};
	char buf[8];
	if (node->type != YAML_SCALAR_NODE)
		return yerr(y, node, "'%s' must be a boolean, not %s", key, node_type_name(node));
	if (node->data.scalar.length < sizeof(buf)) {
		memcpy(buf, node->data.scalar.value, node->data.scalar.length);
		buf[node->data.scalar.length] = '\0';
		for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
			if (!strcmp(buf, yes[i])) {
				*out = 1;
				return 0;
			}
			if (!strcmp(buf, no[i])) {
				*out = 0;
				return 0;
			}
		}
	}
	return yerr(y, node, "'%s' must be a boolean (true/false)", key);
}

static int y_hostport(struct yctx *y, const yaml_node_t *node, const char *key, int need_host,
                      struct px_hostport *hp)
{
	char buf[PX_HOST_MAX + 16], msg[256];
	if (y_str(y, node, key, buf, sizeof(buf)))
		return -1;
	if (px_hostport_parse(buf, need_host, hp, msg, sizeof(msg)))
		return yerr(y, node, "'%s': %s", key, msg);
	return 0;
}

static int y_upstream(struct yctx *y, struct px_conf *conf, const yaml_node_t *node, int self)
{
	char msg[256];
	if (node->type == YAML_SCALAR_NODE) {
		char buf[4096];
		if (y_str(y, node, "upstream", buf, sizeof(buf)))
			return -1;
		if (px_conf_set_upstreams(conf, buf, msg, sizeof(msg)))
			return yerr(y, node, "'upstream': %s", msg);
		return 0;
	}
	if (node->type != YAML_SEQUENCE_NODE)
		return yerr(y, node, "'upstream' must be a list of HOST:PORT or a string, not %s",
		            node_type_name(node));
	unsigned n = 0;
	struct px_hostport ups[PX_UPSTREAM_MAX];
	const yaml_mark_t *at = y->at;
	for (yaml_node_item_t *it = node->data.sequence.items.start;
	     it < node->data.sequence.items.top; it++) {
		yaml_node_t *item =
		    y_child(y, self, (size_t)(it - node->data.sequence.items.start), *it);
		if (n == PX_UPSTREAM_MAX)
			return yerr(y, item, "more than %d upstream addresses", PX_UPSTREAM_MAX);
		memset(&ups[n], 0, sizeof(ups[n]));
		if (y_hostport(y, item, "upstream", 1, &ups[n]))
			return -1;
		if (ups[n].port == 0)
			return yerr(y, item, "'upstream': port 0");
		n++;
	}
	y->at = at;
	if (n == 0)
		return yerr(y, node, "'upstream' is empty");
	memcpy(conf->upstreams, ups, n * sizeof(ups[0]));
	conf->nupstreams = n;
	return 0;
}

static int y_broker_ports(struct yctx *y, struct px_conf *conf, const yaml_node_t *node, int self)
{
	char msg[256];
	if (node->type != YAML_MAPPING_NODE)
		return yerr(y, node, "'broker_ports' must be a mapping NODE_ID: PORT, not %s",
		            node_type_name(node));
	for (yaml_node_pair_t *pr = node->data.mapping.pairs.start;
	     pr < node->data.mapping.pairs.top; pr++) {
		size_t j = (size_t)(pr - node->data.mapping.pairs.start);
		long long id, port;
		yaml_node_t *k = y_child(y, self, 2 * j, pr->key);
		if (y_int(y, k, "broker_ports key", INT32_MIN, INT32_MAX, &id))
			return -1;
		for (yaml_node_pair_t *q = node->data.mapping.pairs.start; q < pr; q++) {
			long long qid;
			yaml_node_t *qk = yaml_document_get_node(y->doc, q->key);
			if (qk->type == YAML_SCALAR_NODE &&
			    !parse_int((const char *)qk->data.scalar.value, qk->data.scalar.length,
			               INT32_MIN, INT32_MAX, &qid) &&
			    qid == id)
				return yerr(
				    y, k, "broker_ports: node %lld given twice (first at line %zu)",
				    id, qk->start_mark.line + 1);
		}
		yaml_node_t *v = y_child(y, self, 2 * j + 1, pr->value);
		if (y_int(y, v, "broker_ports port", 1, 65535, &port))
			return -1;
		if (px_conf_set_broker_port(conf, (int32_t)id, (uint16_t)port, msg, sizeof(msg)))
			return yerr(y, k, "%s", msg);
	}
	return 0;
}

enum ykind { YK_UINT, YK_BOOL, YK_STR, YK_SPECIAL, YK_PATH };

/* Integer keys: where they go and their range. */
struct ykey {
	const char *name;
	enum ykind kind;
	size_t off;  /* offsetof into struct px_conf */
	size_t size; /* sizeof the field (integers, fixed strings) */
	long long lo, hi;
};

#define YU(name, field, lo, hi)                                                                    \
	{                                                                                          \
#name, YK_UINT, offsetof(struct px_conf, field),                                   \
		    sizeof(((struct px_conf *)0)->field), lo, hi                                   \
	}
static const struct ykey ykeys[] = {
    {"listen", YK_SPECIAL, 0, 0, 0, 0},
    {"upstream", YK_SPECIAL, 0, 0, 0, 0},
    {"advertise", YK_STR, offsetof(struct px_conf, advertise), PX_HOST_MAX, 0, 0},
    YU(broker_port_base, broker_port_base, 0, 65535),
    {"broker_ports", YK_SPECIAL, 0, 0, 0, 0},
    YU(max_brokers, max_brokers, 1, PX_BROKER_MAX - 1),
    YU(broker_grace_ms, broker_grace_ms, 0, 86400000),
    YU(workers, workers, 0, 256),
    YU(max_frame_bytes, max_frame, 64, INT32_MAX),
    YU(buffer_bytes, buffer_bytes, 4096, 1LL << 32),
    YU(max_inflight, max_inflight, 1, 1 << 20),
    YU(connect_timeout_ms, connect_timeout_ms, 1, 3600000),
    YU(idle_timeout_ms, idle_timeout_ms, 0, 86400000),
    YU(drain_timeout_ms, drain_timeout_ms, 0, 3600000),
    {"clamp_api_versions", YK_BOOL, offsetof(struct px_conf, clamp_api_versions), 0, 0, 0},
    {"rewrite", YK_BOOL, offsetof(struct px_conf, rewrite), 0, 0, 0},
    {"access_log", YK_SPECIAL, 0, 0, 0, 0},
    {"access_log_format", YK_SPECIAL, 0, 0, 0, 0},
    {"rules", YK_SPECIAL, 0, 0, 0, 0},
    {"tap", YK_SPECIAL, 0, 0, 0, 0},
    YU(tap_max_bytes, tap_max_bytes, 0, 1LL << 50),
    YU(tap_files, tap_files, 1, 1000),
    YU(tap_buffer_bytes, tap_buffer_bytes, 65536, 1LL << 34),
    {"audit_log", YK_SPECIAL, 0, 0, 0, 0},
    {"admin", YK_SPECIAL, 0, 0, 0, 0},
    YU(log_level, log_level, 0, 3),
#define YP(name)                                                                                   \
	{                                                                                          \
#name, YK_PATH, offsetof(struct px_conf, name), 0, 0, 0                            \
	}
    YP(tls_cert),
    YP(tls_key),
    YP(tls_chain),
    YP(tls_client_ca),
    {"tls_client_auth", YK_SPECIAL, 0, 0, 0, 0},
    {"tls_principal_rules", YK_SPECIAL, 0, 0, 0, 0},
    {"tls_principal_source", YK_SPECIAL, 0, 0, 0, 0},
    {"tls_ktls", YK_BOOL, offsetof(struct px_conf, tls_ktls), 0, 0, 0},
    {"upstream_tls", YK_BOOL, offsetof(struct px_conf, upstream_tls), 0, 0, 0},
    YP(upstream_tls_ca),
    YP(upstream_tls_cert),
    YP(upstream_tls_key),
    {"upstream_tls_verify", YK_BOOL, offsetof(struct px_conf, upstream_tls_verify), 0, 0, 0},
    YP(upstream_tls_server_name),
    YP(sni_hosts),
    YU(sni_port, sni_port, 0, 65535),
#undef YP
    /* SASL (px-sasl.c, docs/security.md) */
    {"sasl", YK_SPECIAL, 0, 0, 0, 0},
    {"sasl_mechanisms", YK_SPECIAL, 0, 0, 0, 0},
    {"sasl_credentials", YK_STR, offsetof(struct px_conf, sasl.credentials), PX_PATH_MAX, 0, 0},
    {"sasl_jwks", YK_STR, offsetof(struct px_conf, sasl.jwks), PX_PATH_MAX, 0, 0},
    {"sasl_jwt_issuer", YK_STR, offsetof(struct px_conf, sasl.jwt_issuer), PX_SASL_NAME_MAX, 0, 0},
    {"sasl_jwt_audience", YK_STR, offsetof(struct px_conf, sasl.jwt_audience), PX_SASL_NAME_MAX, 0,
     0},
    YU(sasl_session_lifetime_ms, sasl.session_lifetime_ms, 0, INT32_MAX),
    YU(sasl_handshake_timeout_ms, sasl.handshake_timeout_ms, 1, 3600000),
    YU(sasl_max_frame_bytes, sasl.max_frame, 64, INT32_MAX),
    {"upstream_sasl_mechanism", YK_SPECIAL, 0, 0, 0, 0},
    {"upstream_sasl_username", YK_STR, offsetof(struct px_conf, sasl.up_user), PX_SASL_NAME_MAX, 0,
     0},
    {"upstream_sasl_password", YK_STR, offsetof(struct px_conf, sasl.up_password), PX_SASL_NAME_MAX,
     0, 0},
};

static void store_uint(void *field, size_t size, long long v)
{
	switch (size) {
	case 2: {
		uint16_t x = (uint16_t)v;
		memcpy(field, &x, 2);
		break;
	}
	case 4: {
		uint32_t x = (uint32_t)v;
		memcpy(field, &x, 4);
		break;
	}
	case 8: {
		uint64_t x = (uint64_t)v;
		memcpy(field, &x, 8);
		break;
	}
	default:
		abort(); /* a ykeys row with an unhandled size */
	}
}

/* tls_client_auth, tls_principal_source, tls_principal_rules (a list of
 * rules, or one string in Kafka's comma-separated form). */
static int y_tls(struct yctx *y, struct px_conf *conf, const char *key, const yaml_node_t *node,
                 int index)
{
	char buf[4096], msg[256];
	if (!strcmp(key, "tls_principal_rules")) {
		struct kd_wbuf w = {0};
		const yaml_mark_t *at = y->at;
		if (node->type == YAML_SEQUENCE_NODE) {
			for (yaml_node_item_t *it = node->data.sequence.items.start;
			     it < node->data.sequence.items.top; it++) {
				yaml_node_t *item = y_child(
				    y, index, (size_t)(it - node->data.sequence.items.start), *it);
				if (y_str(y, item, key, buf, sizeof(buf))) {
					kd_wbuf_free(&w);
					return -1;
				}
				/* One rule per line: a pattern may hold commas. */
				if (w.len)
					kd_w_raw(&w, "\n", 1);
				kd_w_raw(&w, buf, strlen(buf));
			}
			y->at = at;
		} else {
			if (y_str(y, node, key, buf, sizeof(buf)))
				return -1;
			kd_w_raw(&w, buf, strlen(buf));
		}
		kd_w_raw(&w, "", 1);
		if (w.err || px_tls_rules_check((const char *)w.p, msg, sizeof(msg))) {
			int rc = yerr(y, node, "'%s': %s", key, w.err ? "out of memory" : msg);
			kd_wbuf_free(&w);
			return rc;
		}
		free(conf->tls_principal_rules);
		conf->tls_principal_rules = (char *)w.p; /* NUL-terminated above */
		return 0;
	}
	if (y_str(y, node, key, buf, sizeof(buf)))
		return -1;
	if (!strcmp(key, "tls_client_auth")) {
		int v = !strcmp(buf, "none")        ? PX_TLS_AUTH_NONE
		        : !strcmp(buf, "requested") ? PX_TLS_AUTH_REQUESTED
		        : !strcmp(buf, "required")  ? PX_TLS_AUTH_REQUIRED
		                                    : -2;
		if (v == -2)
			return yerr(y, node, "'%s' must be none, requested or required", key);
		conf->tls_client_auth = v;
		return 0;
	}
	/* tls_principal_source */
	if (!strcmp(buf, "dn"))
		conf->tls_principal_source = PX_TLS_SOURCE_DN;
	else if (!strcmp(buf, "san"))
		conf->tls_principal_source = PX_TLS_SOURCE_SAN;
	else
		return yerr(y, node, "'%s' must be dn or san", key);
	return 0;
}

static int y_special(struct yctx *y, struct px_conf *conf, const char *key, const yaml_node_t *node,
                     int index)
{
	if (!strcmp(key, "listen")) {
		struct px_hostport hp = conf->listen;
		if (y_hostport(y, node, key, 0, &hp))
			return -1;
		conf->listen = hp;
		return 0;
	}
	if (!strcmp(key, "upstream"))
		return y_upstream(y, conf, node, index);
	if (!strcmp(key, "broker_ports"))
		return y_broker_ports(y, conf, node, index);
	if (!strcmp(key, "admin")) {
		struct px_hostport hp;
		memset(&hp, 0, sizeof(hp));
		snprintf(hp.host, sizeof(hp.host), "127.0.0.1");
		if (y_hostport(y, node, key, 0, &hp))
			return -1;
		conf->admin = hp;
		return 0;
	}
	if (!strncmp(key, "sasl", 4) || !strncmp(key, "upstream_sasl", 13)) {
		/* sasl, sasl_mechanisms (a list or a comma-separated string),
		 * upstream_sasl_mechanism */
		char buf[512], msg[256];
		int append = 0;
		const yaml_mark_t *at = y->at;
		if (node->type == YAML_SEQUENCE_NODE && !strcmp(key, "sasl_mechanisms")) {
			for (yaml_node_item_t *it = node->data.sequence.items.start;
			     it < node->data.sequence.items.top; it++) {
				yaml_node_t *item = y_child(
				    y, index, (size_t)(it - node->data.sequence.items.start), *it);
				if (y_str(y, item, key, buf, sizeof(buf)))
					return -1;
				if (px_sasl_conf_set(&conf->sasl, key, buf, append++, msg,
				                     sizeof(msg)))
					return yerr(y, item, "'%s': %s", key, msg);
			}
			y->at = at;
			return 0;
		}
		if (y_str(y, node, key, buf, sizeof(buf)))
			return -1;
		if (px_sasl_conf_set(&conf->sasl, key, buf, 0, msg, sizeof(msg)))
			return yerr(y, node, "'%s': %s", key, msg);
		return 0;
	}
	if (!strcmp(key, "access_log") || !strcmp(key, "rules") || !strcmp(key, "tap") ||
	    !strcmp(key, "audit_log")) {
		char buf[4096];
		if (y_str(y, node, key, buf, sizeof(buf)))
			return -1;
		char *s = strdup(buf);
		if (!s)
			return yerr(y, node, "out of memory");
		char **dst = !strcmp(key, "rules")       ? &conf->rules
		             : !strcmp(key, "tap")       ? &conf->tap
		             : !strcmp(key, "audit_log") ? &conf->audit_log
		                                         : &conf->access_log;
		free(*dst);
		*dst = s;
		return 0;
	}
	if (!strncmp(key, "tls_", 4))
		return y_tls(y, conf, key, node, index);
	/* access_log_format */
	char buf[16];
	if (y_str(y, node, key, buf, sizeof(buf)))
		return -1;
	if (!strcmp(buf, "text"))
		conf->access_log_format = PX_LOGF_TEXT;
	else if (!strcmp(buf, "json"))
		conf->access_log_format = PX_LOGF_JSON;
	else
		return yerr(y, node, "'%s' must be text or json", key);
	return 0;
}

static int y_top(struct yctx *y, struct px_conf *conf, const yaml_node_t *root)
{
	if (root->type != YAML_MAPPING_NODE)
		return yerr(y, root, "the top level must be a mapping of settings, not %s",
		            node_type_name(root));
	for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
	     pr < root->data.mapping.pairs.top; pr++) {
		size_t j = (size_t)(pr - root->data.mapping.pairs.start);
		yaml_node_t *k = y_child(y, 1, 2 * j, pr->key);
		char key[64];
		if (k->type != YAML_SCALAR_NODE || k->data.scalar.length >= sizeof(key))
			return yerr(y, k, "unknown key");
		memcpy(key, k->data.scalar.value, k->data.scalar.length);
		key[k->data.scalar.length] = '\0';
		/* YAML says mapping keys are unique; libyaml does not check. A
		 * second 'listen:' silently winning is how a setting gets lost. */
		for (yaml_node_pair_t *q = root->data.mapping.pairs.start; q < pr; q++) {
			yaml_node_t *qk = yaml_document_get_node(y->doc, q->key);
			if (qk->type == YAML_SCALAR_NODE && qk->data.scalar.length == strlen(key) &&
			    !memcmp(qk->data.scalar.value, key, strlen(key)))
				return yerr(y, k, "duplicate key '%s' (first at line %zu)", key,
				            qk->start_mark.line + 1);
		}
		const struct ykey *yk = NULL;
		for (size_t i = 0; i < sizeof(ykeys) / sizeof(ykeys[0]); i++)
			if (!strcmp(ykeys[i].name, key))
				yk = &ykeys[i];
		if (!yk)
			return yerr(y, k, "unknown key '%s'", key);
		yaml_node_t *v = y_child(y, 1, 2 * j + 1, pr->value);
		char *field = (char *)conf + yk->off;
		long long iv = 0;
		int bv = 0;
		switch (yk->kind) {
		case YK_UINT:
			if (y_int(y, v, key, yk->lo, yk->hi, &iv))
				return -1;
			store_uint(field, yk->size, iv);
			break;
		case YK_BOOL:
			if (y_bool(y, v, key, &bv))
				return -1;
			memcpy(field, &bv, sizeof(bv));
			break;
		case YK_STR:
			if (y_str(y, v, key, field, yk->size))
				return -1;
			break;
		case YK_SPECIAL:
			if (y_special(y, conf, key, v, pr->value))
				return -1;
			break;
		case YK_PATH: {
			char buf[4096];
			if (y_str(y, v, key, buf, sizeof(buf)))
				return -1;
			char *dup = NULL; /* "" is unset */
			if (buf[0] && !(dup = strdup(buf)))
				return yerr(y, v, "out of memory");
			free(*(char **)field);
			*(char **)field = dup;
			break;
		}
		}
	}
	return 0;
}

int px_conf_load_mem(struct px_conf *conf, const char *yaml, size_t len, const char *name,
                     char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	int rc = -1, have_doc = 0;
	struct yctx y = {&doc, name, err, errlen, NULL, 0, NULL};

	if (!yaml_parser_initialize(&parser)) {
		kd_errf(err, errlen, "%s: cannot initialise the YAML parser", name);
		return -1;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	yrefs_build(&y, yaml, len);
	if (!yaml_parser_load(&parser, &doc)) {
		kd_errf(err, errlen, "%s:%zu:%zu: %s %s", name, parser.problem_mark.line + 1,
		        parser.problem_mark.column + 1,
		        parser.problem ? parser.problem : "YAML error",
		        parser.context ? parser.context : "");
		goto out_parser;
	}
	have_doc = 1;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (!root) { /* an empty file changes nothing */
		rc = 0;
		goto out;
	}
	/* Work on a copy so that a failed load leaves conf as it was. */
	struct px_conf tmp;
	if (px_conf_copy(&tmp, conf)) {
		kd_errf(err, errlen, "out of memory");
		goto out;
	}
	if (y_top(&y, &tmp, root)) {
		px_conf_free(&tmp);
		goto out;
	}
	px_conf_free(conf);
	*conf = tmp;
	rc = 0;
out:
	if (have_doc)
		yaml_document_delete(&doc);
out_parser:
	yaml_parser_delete(&parser);
	yrefs_free(&y);
	return rc;
}

int px_conf_load(struct px_conf *conf, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = -1;
	if (!f) {
		kd_errf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (!fstat(fileno(f), &st) && S_ISDIR(st.st_mode)) {
		kd_errf(err, errlen, "%s: is a directory, not a YAML file", path);
		goto out;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= 1024 * 1024) {
				kd_errf(err, errlen, "%s: larger than 1 MiB", path);
				goto out;
			}
			cap = cap ? cap * 2 : 4096;
			char *nb = realloc(buf, cap);
			if (!nb) {
				kd_errf(err, errlen, "out of memory");
				goto out;
			}
			buf = nb;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		kd_errf(err, errlen, "%s: read error: %s", path, strerror(errno));
		goto out;
	}
	rc = px_conf_load_mem(conf, buf, len, path, err, errlen);
out:
	free(buf);
	fclose(f);
	return rc;
}

void px_conf_dump(const struct px_conf *conf, FILE *f)
{
	fprintf(f, "listen: \"%s:%u\"\n", conf->listen.host, conf->listen.port);
	fprintf(f, "upstream:\n");
	for (unsigned i = 0; i < conf->nupstreams; i++)
		fprintf(f, "  - \"%s:%u\"\n", conf->upstreams[i].host, conf->upstreams[i].port);
	fprintf(f, "advertise: \"%s\"\n", conf->advertise);
	fprintf(f, "broker_port_base: %u\n", conf->broker_port_base);
	fprintf(f, "broker_ports: {");
	for (unsigned i = 0; i < conf->nbroker_ports; i++)
		fprintf(f, "%s%" PRId32 ": %u", i ? ", " : "", conf->broker_ports[i].node_id,
		        conf->broker_ports[i].port);
	fprintf(f, "}\n");
	fprintf(f, "max_brokers: %u\n", conf->max_brokers);
	fprintf(f, "broker_grace_ms: %u\n", conf->broker_grace_ms);
	fprintf(f, "workers: %u\n", conf->workers);
	fprintf(f, "max_frame_bytes: %" PRIu32 "\n", conf->max_frame);
	fprintf(f, "buffer_bytes: %zu\n", conf->buffer_bytes);
	fprintf(f, "max_inflight: %u\n", conf->max_inflight);
	fprintf(f, "connect_timeout_ms: %u\n", conf->connect_timeout_ms);
	fprintf(f, "idle_timeout_ms: %u\n", conf->idle_timeout_ms);
	fprintf(f, "drain_timeout_ms: %u\n", conf->drain_timeout_ms);
	fprintf(f, "clamp_api_versions: %s\n", conf->clamp_api_versions ? "true" : "false");
	fprintf(f, "rewrite: %s\n", conf->rewrite ? "true" : "false");
	if (conf->access_log)
		fprintf(f, "access_log: \"%s\"\n", conf->access_log);
	if (conf->rules)
		fprintf(f, "rules: \"%s\"\n", conf->rules);
	if (conf->tap)
		fprintf(f, "tap: \"%s\"\n", conf->tap);
	fprintf(f, "tap_max_bytes: %" PRIu64 "\n", conf->tap_max_bytes);
	fprintf(f, "tap_files: %u\n", conf->tap_files);
	fprintf(f, "tap_buffer_bytes: %zu\n", conf->tap_buffer_bytes);
	if (conf->audit_log)
		fprintf(f, "audit_log: \"%s\"\n", conf->audit_log);

	fprintf(f, "access_log_format: %s\n",
	        conf->access_log_format == PX_LOGF_JSON ? "json" : "text");
	if (conf->admin.port)
		fprintf(f, "admin: \"%s:%u\"\n", conf->admin.host, conf->admin.port);
	fprintf(f, "log_level: %d\n", conf->log_level);
	px_tls_conf_dump(conf, f);
	px_sasl_conf_dump(&conf->sasl, f);
}
