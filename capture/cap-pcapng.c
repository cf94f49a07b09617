/* cap-pcapng.c: kwire's own pcapng reader, used for every pcapng input.
 *
 * Why not libpcap: libpcap gives one link type per file and stops at the
 * first Interface Description Block whose link type differs from the first
 * one (a capture on "any" plus "eth0", or lo plus a tunnel). Here every
 * interface keeps its own link type, snaplen and timestamp resolution
 * (if_tsresol, if_tsoffset), and every packet carries its interface's
 * link type.
 *
 * Blocks (pcapng spec, draft-ietf-opsawg-pcapng):
 *
 *   type(4) total_length(4) body(total_length - 12) total_length(4)
 *
 *   SHB 0x0A0D0D0A: byte-order magic 0x1A2B3C4D(4) major(2) minor(2)
 *                   section_length(8) options; starts a new section, whose
 *                   byte order applies to every block up to the next SHB
 *   IDB 1:  linktype(2) reserved(2) snaplen(4) options
 *   EPB 6:  interface(4) ts_high(4) ts_low(4) caplen(4) origlen(4) data options
 *   SPB 3:  origlen(4) data (interface 0, no timestamp)
 *   OPB 2:  interface(2) drops(2) ts_high(4) ts_low(4) caplen(4) origlen(4) data
 *   others: skipped
 *
 * Reads go through struct kd_cur (big-endian); little-endian sections are
 * byte-swapped after the read. */
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap-int.h"
#include "cap.h"
#include "kd-cur.h"

#define NG_SHB 0x0A0D0D0Au
#define NG_IDB 1u
#define NG_OPB 2u
#define NG_SPB 3u
#define NG_EPB 6u
#define NG_BOM 0x1A2B3C4Du
#define NG_BLOCK_MAX (64u << 20) /* a block larger than this is not believed */
#define NG_IF_MAX 65536u

struct ng_if {
	int linktype;
	uint32_t snaplen;
	uint64_t units;   /* timestamp units per second */
	int64_t offset_s; /* if_tsoffset */
	struct bpf_program prog;
	int has_prog;
};

struct cap_ng {
	FILE *fp;
	int le; /* the section is little-endian */
	int first_linktype;
	struct ng_if *ifs;
	uint32_t nifs, capifs;
	uint8_t *buf;
	size_t bufcap;
	char *filter;
	int64_t last_ts_us;
	int priming; /* return 2 after the first IDB */
	void (*warn)(void *ctx, const char *msg);
	void *warn_ctx;
	uint32_t nsection; /* sections seen (SHBs), for the messages */
	uint32_t nwarned;  /* interfaces warned about */
};

/* Interfaces named in link type warnings before they are only counted. */
#define NG_WARN_MAX 16u

static uint32_t sw32(uint32_t v)
{
	return (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
}

static int ng_u16(struct cap_ng *ng, struct kd_cur *cur, uint16_t *v)
{
	int rc = kd_cur_u16(cur, v);
	if (rc == KD_OK && ng->le)
		*v = (uint16_t)((*v >> 8) | (*v << 8));
	return rc;
}

static int ng_u32(struct cap_ng *ng, struct kd_cur *cur, uint32_t *v)
{
	int rc = kd_cur_u32(cur, v);
	if (rc == KD_OK && ng->le)
		*v = sw32(*v);
	return rc;
}

struct cap_ng *cap_ng_new(FILE *fp)
{
	struct cap_ng *ng = calloc(1, sizeof(*ng));
	if (!ng)
		return NULL;
	ng->fp = fp;
	ng->first_linktype = -1;
	return ng;
}

static void free_ifs(struct cap_ng *ng)
{
	for (uint32_t i = 0; i < ng->nifs; i++)
		if (ng->ifs[i].has_prog)
			pcap_freecode(&ng->ifs[i].prog);
	ng->nifs = 0;
}

void cap_ng_free(struct cap_ng *ng)
{
	if (!ng)
		return;
	free_ifs(ng);
	free(ng->ifs);
	free(ng->buf);
	free(ng->filter);
	if (ng->fp)
		fclose(ng->fp);
	free(ng);
}

int cap_ng_prime(struct cap_ng *ng, char *err, size_t errlen, int *truncated)
{
	struct cap_pkt pkt;
	ng->priming = 1;
	int rc = cap_ng_next(ng, &pkt, err, errlen, truncated);
	ng->priming = 0;
	if (rc == 1) {
		/* a packet before any interface cannot happen: cap_ng_next
		 * rejects packets on undeclared interfaces */
		snprintf(err, errlen, "malformed pcapng: packet before any interface");
		return -1;
	}
	return rc < 0 ? -1 : 0;
}

void cap_ng_set_warn(struct cap_ng *ng, void (*fn)(void *ctx, const char *msg), void *ctx)
{
	ng->warn = fn;
	ng->warn_ctx = ctx;
}

/* An interface of a link type kwire does not decode: one warning for it
 * (name: its if_name option, or NULL). */
static void warn_linktype(struct cap_ng *ng, const struct ng_if *nif, const uint8_t *name,
                          size_t namelen)
{
	char what[160], msg[384];
	if (!ng->warn || cap_link_supported(nif->linktype))
		return;
	if (++ng->nwarned > NG_WARN_MAX) {
		if (ng->nwarned == NG_WARN_MAX + 1)
			ng->warn(ng->warn_ctx,
			         "more interfaces of link types kwire does not decode: "
			         "not listed");
		return;
	}
	/* if_name is UTF-8 text from the file: printable ASCII only here */
	char nm[64];
	size_t n = 0;
	for (size_t i = 0; name && i < namelen && n + 1 < sizeof(nm) && name[i]; i++)
		nm[n++] = name[i] >= 0x20 && name[i] < 0x7f ? (char)name[i] : '?';
	nm[n] = 0;
	if (ng->nsection > 1)
		snprintf(what, sizeof(what), "pcapng section %u, interface %u%s%s%s", ng->nsection,
		         ng->nifs - 1, n ? " (" : "", nm, n ? ")" : "");
	else
		snprintf(what, sizeof(what), "pcapng interface %u%s%s%s", ng->nifs - 1,
		         n ? " (" : "", nm, n ? ")" : "");
	cap_link_unsupported_msg(msg, sizeof(msg), what, nif->linktype);
	ng->warn(ng->warn_ctx, msg);
}

int cap_ng_linktype(const struct cap_ng *ng)
{
	return ng->first_linktype;
}

FILE *cap_ng_file(const struct cap_ng *ng)
{
	return ng->fp;
}

static int compile_if(struct cap_ng *ng, struct ng_if *nif, char *err, size_t errlen)
{
	if (!ng->filter || nif->has_prog)
		return 0;
	pcap_t *dead = pcap_open_dead(nif->linktype, (int)(nif->snaplen ? nif->snaplen : 262144));
	if (!dead) {
		snprintf(err, errlen, "cannot compile filter: out of memory");
		return -1;
	}
	if (pcap_compile(dead, &nif->prog, ng->filter, 1, PCAP_NETMASK_UNKNOWN) < 0) {
		snprintf(err, errlen, "bad filter '%s' for link type %s: %s", ng->filter,
		         pcap_datalink_val_to_name(nif->linktype)
		             ? pcap_datalink_val_to_name(nif->linktype)
		             : "?",
		         pcap_geterr(dead));
		pcap_close(dead);
		return -1;
	}
	nif->has_prog = 1;
	pcap_close(dead);
	return 0;
}

int cap_ng_set_filter(struct cap_ng *ng, const char *bpf, char *err, size_t errlen)
{
	char *f = strdup(bpf);
	if (!f) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (uint32_t i = 0; i < ng->nifs; i++)
		if (ng->ifs[i].has_prog) {
			pcap_freecode(&ng->ifs[i].prog);
			ng->ifs[i].has_prog = 0;
		}
	free(ng->filter);
	ng->filter = f;
	for (uint32_t i = 0; i < ng->nifs; i++)
		if (compile_if(ng, &ng->ifs[i], err, errlen) < 0)
			return -1;
	return 0;
}

/* Reads exactly n bytes. Returns 1, 0 on a clean end of file before any
 * byte, or -2 on a short read (truncated file). */
static int read_full(struct cap_ng *ng, void *p, size_t n)
{
	size_t got = fread(p, 1, n, ng->fp);
	if (got == n)
		return 1;
	if (got == 0 && feof(ng->fp))
		return 0;
	return -2;
}

static int parse_idb(struct cap_ng *ng, struct kd_cur *cur, char *err, size_t errlen)
{
	uint16_t lt, rsvd, code, olen;
	uint32_t snaplen;
	if (ng_u16(ng, cur, &lt) != KD_OK || ng_u16(ng, cur, &rsvd) != KD_OK ||
	    ng_u32(ng, cur, &snaplen) != KD_OK) {
		snprintf(err, errlen, "malformed pcapng: short interface description block");
		return -1;
	}
	if (ng->nifs >= NG_IF_MAX) {
		snprintf(err, errlen, "malformed pcapng: more than %u interfaces", NG_IF_MAX);
		return -1;
	}
	if (ng->nifs == ng->capifs) {
		uint32_t n = ng->capifs ? ng->capifs * 2 : 4;
		struct ng_if *nifs = realloc(ng->ifs, n * sizeof(*nifs));
		if (!nifs) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		ng->ifs = nifs;
		ng->capifs = n;
	}
	struct ng_if *nif = &ng->ifs[ng->nifs];
	memset(nif, 0, sizeof(*nif));
	/* the LINKTYPE_ values in files equal the DLT_ values except for a
	 * few; of those kwire decodes, only LINKTYPE_RAW (101) is DLT_RAW */
	nif->linktype = lt == 101 ? 12 : lt;
	nif->snaplen = snaplen;
	nif->units = 1000000;
	const uint8_t *ifname = NULL;
	size_t ifnamelen = 0;
	/* options: code(2) length(2) value padded to 4; code 0 ends them */
	while (kd_cur_left(cur) >= 4) {
		if (ng_u16(ng, cur, &code) != KD_OK || ng_u16(ng, cur, &olen) != KD_OK)
			break;
		if (code == 0)
			break;
		const uint8_t *val = kd_cur_pos(cur);
		size_t padded = ((size_t)olen + 3) & ~(size_t)3;
		if (kd_cur_skip(cur, padded) != KD_OK)
			break;   /* options cut short: keep what we have */
		if (code == 2) { /* if_name */
			ifname = val;
			ifnamelen = olen;
		} else if (code == 9 && olen >= 1) { /* if_tsresol */
			uint8_t r = val[0];
			uint64_t u = 1;
			if (r & 0x80) {
				if ((r & 0x7f) > 63)
					goto badres;
				u = 1ULL << (r & 0x7f);
			} else {
				if (r > 19)
					goto badres;
				for (int i = 0; i < r; i++)
					u *= 10;
			}
			if (u == 0)
				goto badres;
			nif->units = u;
		} else if (code == 14 && olen == 8) { /* if_tsoffset, signed seconds */
			struct kd_cur oc;
			uint32_t hi, lo;
			kd_cur_init(&oc, val, 8);
			ng_u32(ng, &oc, &hi);
			ng_u32(ng, &oc, &lo);
			uint64_t o = ng->le ? ((uint64_t)lo << 32 | hi) : ((uint64_t)hi << 32 | lo);
			/* a 64-bit value: in a little-endian section the low word
			 * comes first */
			nif->offset_s = (int64_t)o;
		}
	}
	if (ng->first_linktype < 0)
		ng->first_linktype = nif->linktype;
	ng->nifs++;
	warn_linktype(ng, nif, ifname, ifnamelen);
	return compile_if(ng, nif, err, errlen);
badres:
	snprintf(err, errlen, "malformed pcapng: bad if_tsresol");
	return -1;
}

/* Timestamp in the interface's units -> microseconds + ns fraction. */
static void conv_ts(const struct ng_if *nif, uint64_t ts, struct cap_pkt *pkt)
{
	uint64_t sec = ts / nif->units, frac = ts % nif->units;
	uint64_t ns = (uint64_t)((unsigned __int128)frac * 1000000000u / nif->units);
	/* a hostile file can carry any 64-bit time or offset: clamp to what
	 * microseconds in an int64_t hold (about 292,000 years) */
	const int64_t lim = INT64_MAX / 1000000 - 1;
	int64_t s = sec > (uint64_t)lim ? lim : (int64_t)sec;
	int64_t off = nif->offset_s > lim ? lim : nif->offset_s < -lim ? -lim : nif->offset_s;
	s += off; /* |s| <= 2 * lim: no overflow */
	s = s > lim ? lim : s < -lim ? -lim : s;
	pkt->ts_us = s * 1000000 + (int64_t)(ns / 1000);
	pkt->ts_ns_frac = (uint32_t)(ns % 1000);
}

int cap_ng_next(struct cap_ng *ng, struct cap_pkt *pkt, char *err, size_t errlen, int *truncated)
{
	for (;;) {
		uint8_t hdr[8];
		struct kd_cur cur;
		uint32_t type, len, len2;
		int rc = read_full(ng, hdr, 8);
		if (rc == 0)
			return 0;
		if (rc < 0) {
			*truncated = 1;
			snprintf(err, errlen, "truncated pcapng file (in a block header)");
			return 0;
		}
		kd_cur_init(&cur, hdr, 8);
		kd_cur_u32(&cur, &type);
		if (type == NG_SHB) {
			/* the byte order comes from the magic that follows */
			uint8_t bom[4];
			if (read_full(ng, bom, 4) != 1) {
				*truncated = 1;
				snprintf(err, errlen,
				         "truncated pcapng file (in a section header)");
				return 0;
			}
			if (bom[0] == 0x1a && bom[1] == 0x2b && bom[2] == 0x3c && bom[3] == 0x4d)
				ng->le = 0;
			else if (bom[0] == 0x4d && bom[1] == 0x3c && bom[2] == 0x2b &&
			         bom[3] == 0x1a)
				ng->le = 1;
			else {
				snprintf(err, errlen, "malformed pcapng: bad byte-order magic");
				return -1;
			}
			kd_cur_init(&cur, hdr + 4, 4);
			ng_u32(ng, &cur, &len);
			if (len < 28 || len % 4 || len > NG_BLOCK_MAX) {
				snprintf(err, errlen,
				         "malformed pcapng: bad section header length %u", len);
				return -1;
			}
			free_ifs(ng); /* interfaces are per section */
			ng->nsection++;
			len -= 4; /* the magic was read */
		} else {
			if (ng->le)
				type = sw32(type);
			kd_cur_init(&cur, hdr + 4, 4);
			ng_u32(ng, &cur, &len);
			if (len < 12 || len % 4 || len > NG_BLOCK_MAX) {
				snprintf(err, errlen, "malformed pcapng: bad block length %u", len);
				return -1;
			}
		}
		size_t body = len - 8; /* body plus the trailing length */
		if (body > ng->bufcap) {
			uint8_t *nb = realloc(ng->buf, body);
			if (!nb) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			ng->buf = nb;
			ng->bufcap = body;
		}
		if (read_full(ng, ng->buf, body) != 1) {
			*truncated = 1;
			snprintf(err, errlen, "truncated pcapng file (in a block of %u bytes)",
			         len);
			return 0;
		}
		kd_cur_init(&cur, ng->buf + body - 4, 4);
		ng_u32(ng, &cur, &len2);
		if (len2 != (type == NG_SHB ? len + 4 : len)) {
			snprintf(err, errlen, "malformed pcapng: block lengths differ (%u, %u)",
			         len, len2);
			return -1;
		}
		kd_cur_init(&cur, ng->buf, body - 4);
		uint32_t ifid = 0, hi = 0, lo = 0, caplen = 0, origlen = 0;
		uint16_t if16, drops;
		switch (type) {
		case NG_SHB:
			continue;
		case NG_IDB:
			if (parse_idb(ng, &cur, err, errlen) < 0)
				return -1;
			if (ng->priming)
				return 2;
			continue;
		case NG_EPB:
			if (ng_u32(ng, &cur, &ifid) != KD_OK || ng_u32(ng, &cur, &hi) != KD_OK ||
			    ng_u32(ng, &cur, &lo) != KD_OK || ng_u32(ng, &cur, &caplen) != KD_OK ||
			    ng_u32(ng, &cur, &origlen) != KD_OK)
				goto shortblk;
			break;
		case NG_OPB:
			if (ng_u16(ng, &cur, &if16) != KD_OK || ng_u16(ng, &cur, &drops) != KD_OK ||
			    ng_u32(ng, &cur, &hi) != KD_OK || ng_u32(ng, &cur, &lo) != KD_OK ||
			    ng_u32(ng, &cur, &caplen) != KD_OK ||
			    ng_u32(ng, &cur, &origlen) != KD_OK)
				goto shortblk;
			ifid = if16;
			break;
		case NG_SPB:
			if (ng_u32(ng, &cur, &origlen) != KD_OK)
				goto shortblk;
			caplen = origlen;
			if (ng->nifs && ng->ifs[0].snaplen && caplen > ng->ifs[0].snaplen)
				caplen = ng->ifs[0].snaplen;
			if (caplen > kd_cur_left(&cur))
				caplen = (uint32_t)kd_cur_left(&cur);
			break;
		default:
			continue; /* name resolution, statistics, custom, ... */
		}
		if (ifid >= ng->nifs) {
			snprintf(err, errlen, "malformed pcapng: packet on undeclared interface %u",
			         ifid);
			return -1;
		}
		if (caplen > kd_cur_left(&cur)) {
			snprintf(err, errlen, "malformed pcapng: captured length %u past its block",
			         caplen);
			return -1;
		}
		struct ng_if *nif = &ng->ifs[ifid];
		pkt->data = kd_cur_pos(&cur);
		pkt->caplen = caplen;
		pkt->origlen = origlen;
		pkt->linktype = nif->linktype;
		if (type == NG_SPB) {
			pkt->ts_us = ng->last_ts_us; /* SPBs carry no time */
			pkt->ts_ns_frac = 0;
		} else {
			conv_ts(nif, (uint64_t)hi << 32 | lo, pkt);
			ng->last_ts_us = pkt->ts_us;
		}
		if (nif->has_prog) {
			struct pcap_pkthdr ph;
			memset(&ph, 0, sizeof(ph));
			ph.caplen = caplen;
			ph.len = origlen;
			if (!pcap_offline_filter(&nif->prog, &ph, pkt->data))
				continue;
		}
		return 1;
	shortblk:
		snprintf(err, errlen, "malformed pcapng: short packet block");
		return -1;
	}
}
