/* cap-pcap.c: capture input through libpcap: pcap and pcapng files (plain,
 * gzip, stdin), memory images and live interfaces.
 *
 * Gzip: a gzFile is wrapped in a stdio FILE with glibc fopencookie() and
 * handed to pcap_fopen_offline_with_tstamp_precision(), so libpcap parses
 * the decompressed stream. Files are sniffed for the gzip magic (1f 8b);
 * stdin always goes through zlib, whose transparent mode passes plain
 * data through unchanged.
 *
 * pcapng goes to kwire's own reader (cap-pcapng.c), which keeps one link
 * type per interface; classic pcap goes to libpcap. The first 4 bytes
 * decide; for gzip and stdin, which cannot seek back, they are read
 * through zlib and served again by the cookie.
 *
 * Plain pcap files in this host's byte order take a faster path: records
 * are served in place from a 2 MiB window that one pread() fills (no
 * per-record fread), and only while each record is one libpcap would
 * return unchanged. A window, not a mapping: a file that shrinks while
 * being read gives a short read here (libpcap then reports the
 * truncation), where a mapping would kill the process with SIGBUS. Anything else (a record past the
 * size the file had at open, a caplen over the snaplen, a BPF filter) hands the FILE to libpcap at
 * that record's offset, so errors, truncation and odd files are libpcap's as before. */
#include <errno.h>
#include <pcap/pcap.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cap-int.h"
#include "cap.h"

#define CAP_IOBUF (256u << 10)
/* The read window; a record is at most 16 + 262144 bytes, so a window
 * started at a record's first byte always holds it. */
#define CAP_MAP_WINDOW (2u << 20)
#define CAP_MAP_MAX_CAPLEN 262144u

struct cap_source {
	pcap_t *pcap;      /* pcap files and live capture */
	struct cap_ng *ng; /* pcapng files: kwire's reader (cap-pcapng.c) */
	gzFile gz;         /* gzip input, owned by the cookie FILE */
	FILE *fp;          /* the FILE libpcap reads (owned by pcap) */
	uint64_t total;    /* file size, 0 when unknown */
	char *iobuf;       /* fp's stdio buffer (regular files), freed after fp */
	/* the windowed path (see the top of the file); mm_on 0: libpcap reads */
	int mm_on;
	int mm_nano;       /* the file has nanosecond timestamps */
	int mm_linktype;   /* pcap_datalink(), constant for a pcap file */
	uint32_t mm_snap;  /* pcap_snapshot() */
	uint64_t mm_off;   /* file offset of the next record */
	uint64_t mm_size;  /* file size at open */
	uint8_t *mm_base;  /* the window (CAP_MAP_WINDOW bytes), NULL when none */
	uint64_t mm_start; /* the file offset of its first byte */
	size_t mm_len;     /* valid bytes in it */
	int live;
	int truncated;
	int tsnano;
	volatile sig_atomic_t brk;
	char err[PCAP_ERRBUF_SIZE + 128];
	/* warnings (cap_source_on_warning); those raised before a callback
	 * is installed wait in warn_q, NUL-separated */
	void (*warn)(void *ctx, const char *msg);
	void *warn_ctx;
	char *warn_q;
	size_t warn_qlen;
};

static void src_warn(void *ctx, const char *msg)
{
	struct cap_source *src = ctx;
	if (src->warn) {
		src->warn(src->warn_ctx, msg);
		return;
	}
	size_t n = strlen(msg) + 1;
	if (src->warn_qlen + n > 64 * 1024)
		return; /* bounded; NG_WARN_MAX keeps it far below this */
	char *q = realloc(src->warn_q, src->warn_qlen + n);
	if (!q)
		return;
	memcpy(q + src->warn_qlen, msg, n);
	src->warn_q = q;
	src->warn_qlen += n;
}

void cap_source_on_warning(struct cap_source *src, void (*fn)(void *ctx, const char *msg),
                           void *ctx)
{
	src->warn = fn;
	src->warn_ctx = ctx;
	for (size_t o = 0; fn && o < src->warn_qlen; o += strlen(src->warn_q + o) + 1)
		fn(ctx, src->warn_q + o);
	free(src->warn_q);
	src->warn_q = NULL;
	src->warn_qlen = 0;
}

/* A pcap file or live interface of a link type kwire does not decode. */
static void warn_pcap_linktype(struct cap_source *src, const char *what)
{
	int lt = pcap_datalink(src->pcap);
	if (cap_link_supported(lt))
		return;
	char msg[384];
	cap_link_unsupported_msg(msg, sizeof(msg), what, lt);
	src_warn(src, msg);
}

static void set_err(char *err, size_t errlen, const char *what, const char *detail)
{
	if (err && errlen)
		snprintf(err, errlen, "%s%s%s", what, detail && *detail ? ": " : "",
		         detail ? detail : "");
}

/* The cookie behind a gzip FILE. A gzip stream cut short (a copy in
 * progress) reads as the end of the file, flagged truncated. */
struct gz_cookie {
	gzFile gz;
	struct cap_source *src;
	uint8_t pre[4]; /* the magic, read ahead, served first */
	size_t npre, opre;
};

static ssize_t gz_cookie_read(void *cookie, char *buf, size_t size)
{
	struct gz_cookie *gc = cookie;
	int zerr;
	if (gc->opre < gc->npre) {
		size_t n = gc->npre - gc->opre < size ? gc->npre - gc->opre : size;
		memcpy(buf, gc->pre + gc->opre, n);
		gc->opre += n;
		return (ssize_t)n;
	}
	if (size > INT32_MAX)
		size = INT32_MAX;
	int n = gzread(gc->gz, buf, (unsigned)size);
	if (n < 0) {
		gzerror(gc->gz, &zerr);
		if (zerr == Z_BUF_ERROR) {
			gc->src->truncated = 1;
			return 0;
		}
		errno = EIO;
		return -1;
	}
	return n;
}

static int gz_cookie_close(void *cookie)
{
	struct gz_cookie *gc = cookie;
	int rc = gzclose_r(gc->gz) == Z_OK ? 0 : EOF;
	free(gc);
	return rc;
}

/* A FILE reading the decompressed bytes of fd (which it takes over); the
 * first 4 of them are also copied to magic (*nmagic says how many). */
static FILE *gz_fopen_fd(int fd, struct cap_source *src, uint8_t magic[4], size_t *nmagic)
{
	struct gz_cookie *gc = calloc(1, sizeof(*gc));
	if (!gc) {
		close(fd);
		return NULL;
	}
	gc->gz = gzdopen(fd, "rb");
	if (!gc->gz) {
		close(fd);
		free(gc);
		return NULL;
	}
	gc->src = src;
	gzbuffer(gc->gz, 256 * 1024);
	while (gc->npre < 4) {
		int n = gzread(gc->gz, gc->pre + gc->npre, (unsigned)(4 - gc->npre));
		if (n <= 0) {
			/* zlib's reason, if any, for finish_open() to show instead
			 * of "empty input"; its "<fd:N>: " prefix says nothing */
			int zerr;
			const char *zmsg = gzerror(gc->gz, &zerr);
			const char *colon = strstr(zmsg, ">: ");
			if (zerr == Z_BUF_ERROR)
				zmsg = "the gzip stream ends inside its header";
			else if (!strncmp(zmsg, "<fd:", 4) && colon)
				zmsg = colon + 3;
			if (zerr != Z_OK)
				snprintf(src->err, sizeof(src->err), "%s", zmsg);
			break;
		}
		gc->npre += (size_t)n;
	}
	memcpy(magic, gc->pre, gc->npre);
	*nmagic = gc->npre;
	cookie_io_functions_t io = {.read = gz_cookie_read, .close = gz_cookie_close};
	FILE *fp = fopencookie(gc, "rb", io);
	if (!fp) {
		gzclose_r(gc->gz);
		free(gc);
		return NULL;
	}
	src->gz = gc->gz;
	return fp;
}

/* libpcap's messages for a bad header, rephrased for a user who passed a
 * file that is not a capture at all. */
static void explain_open_error(char *err, size_t errlen, const char *path, const char *pcaperr)
{
	if (strstr(pcaperr, "unknown file format") || strstr(pcaperr, "bad dump file format"))
		snprintf(err, errlen,
		         "%s: not a pcap or pcapng capture file (or a gzip of one) (%s)", path,
		         pcaperr);
	else if (strstr(pcaperr, "truncated"))
		snprintf(err, errlen, "%s: capture file is truncated before its first packet (%s)",
		         path, pcaperr);
	else
		snprintf(err, errlen, "%s: %s", path, pcaperr);
}

static int is_pcapng(const uint8_t *magic, size_t nmagic)
{
	return nmagic == 4 && magic[0] == 0x0a && magic[1] == 0x0d && magic[2] == 0x0d &&
	       magic[3] == 0x0a;
}

/* The classic pcap magics, both byte orders: microsecond a1b2c3d4,
 * nanosecond a1b23c4d, and Alexey Kuznetsov's modified format a1b2cd34. */
static int is_pcap(const uint8_t *magic, size_t nmagic)
{
	static const uint32_t magics[] = {0xa1b2c3d4, 0xa1b23c4d, 0xa1b2cd34};
	if (nmagic < 4)
		return 0;
	uint32_t be = (uint32_t)magic[0] << 24 | (uint32_t)magic[1] << 16 |
	              (uint32_t)magic[2] << 8 | magic[3];
	uint32_t le = (uint32_t)magic[3] << 24 | (uint32_t)magic[2] << 16 |
	              (uint32_t)magic[1] << 8 | magic[0];
	for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++)
		if (be == magics[i] || le == magics[i])
			return 1;
	return 0;
}

/* Hands fp (positioned at the start of the capture) to the right reader. */
static int finish_open(struct cap_source *src, FILE *fp, const uint8_t *magic, size_t nmagic,
                       const char *path, char *err, size_t errlen)
{
	char perr[PCAP_ERRBUF_SIZE + 64] = "";
	if (nmagic == 0 && src->err[0]) {
		/* gz_fopen_fd() could not read the first bytes */
		fclose(fp);
		snprintf(err, errlen,
		         "%s: not a gzip file or a corrupt gzip header: cannot decompress its "
		         "first bytes (zlib: %s)",
		         path, src->err);
		src->err[0] = 0;
		return -1;
	}
	if (nmagic == 0) {
		fclose(fp);
		snprintf(err, errlen, "%s: empty input, not a capture", path);
		return -1;
	}
	if (is_pcapng(magic, nmagic)) {
		src->ng = cap_ng_new(fp);
		if (!src->ng) {
			fclose(fp);
			set_err(err, errlen, "out of memory", NULL);
			return -1;
		}
		cap_ng_set_warn(src->ng, src_warn, src);
		if (cap_ng_prime(src->ng, perr, sizeof(perr), &src->truncated) < 0) {
			snprintf(err, errlen, "%s: %s", path, perr);
			cap_ng_free(src->ng);
			src->ng = NULL;
			return -1;
		}
		src->fp = fp;
		return 0;
	}
	if (!is_pcap(magic, nmagic)) {
		fclose(fp);
		snprintf(err, errlen,
		         "%s: not a pcap or pcapng capture file (or a gzip of one): it starts with "
		         "%02x %02x %02x %02x",
		         path, nmagic > 0 ? magic[0] : 0, nmagic > 1 ? magic[1] : 0,
		         nmagic > 2 ? magic[2] : 0, nmagic > 3 ? magic[3] : 0);
		return -1;
	}
	src->pcap = pcap_fopen_offline_with_tstamp_precision(fp, PCAP_TSTAMP_PRECISION_NANO, perr);
	if (!src->pcap) {
		fclose(fp);
		src->gz = NULL;
		explain_open_error(err, errlen, path, perr);
		return -1;
	}
	src->fp = fp;
	src->tsnano = pcap_get_tstamp_precision(src->pcap) == PCAP_TSTAMP_PRECISION_NANO;
	warn_pcap_linktype(src, "the capture");
	return 0;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void mm_unmap(struct cap_source *src)
{
	free(src->mm_base);
	src->mm_base = NULL;
	src->mm_len = 0;
}

/* Leaves the windowed path: libpcap reads on from the next record. 0, or -1
 * (message in src->err) when the FILE cannot be positioned there. */
static int mm_stop(struct cap_source *src)
{
	if (!src->mm_on)
		return 0;
	src->mm_on = 0;
	mm_unmap(src);
	if (fseeko(src->fp, (off_t)src->mm_off, SEEK_SET) != 0) {
		snprintf(src->err, sizeof(src->err), "cannot seek in the capture: %s",
		         strerror(errno));
		return -1;
	}
	return 0;
}

/* Turns the windowed path on for a plain pcap file that libpcap has just
 * opened (fp right after the 24-byte file header), when libpcap would
 * hand its records over unchanged: this host's byte order (no swapping
 * of lengths or pseudo-headers) and version 2.4 (older versions may have
 * caplen and len swapped). magic: the file's first 4 bytes. */
static void mm_start(struct cap_source *src, const uint8_t *magic, size_t nmagic)
{
	static const uint8_t usec[4] = {0xd4, 0xc3, 0xb2, 0xa1}, nsec[4] = {0x4d, 0x3c, 0xb2, 0xa1};
	if (nmagic < 4 || src->total <= 24 || !src->pcap || src->gz)
		return;
	if (pcap_is_swapped(src->pcap) || pcap_major_version(src->pcap) != 2 ||
	    pcap_minor_version(src->pcap) != 4)
		return;
	if (!memcmp(magic, usec, 4))
		src->mm_nano = 0;
	else if (!memcmp(magic, nsec, 4))
		src->mm_nano = 1;
	else
		return;
	if (pcap_snapshot(src->pcap) <= 0 || ftello(src->fp) != 24)
		return;
	src->mm_snap = (uint32_t)pcap_snapshot(src->pcap);
	src->mm_linktype = pcap_datalink(src->pcap);
	src->mm_off = 24;
	src->mm_size = src->total;
	src->mm_on = 1;
}

/* The window holds [off, off + n) (n <= the window): 0, or -1 when the
 * file does not hold those bytes (any more) or the window cannot be had. */
static int mm_cover(struct cap_source *src, uint64_t off, size_t n)
{
	if (src->mm_base && off >= src->mm_start && off + n <= src->mm_start + src->mm_len)
		return 0;
	if (!src->mm_base && !(src->mm_base = malloc(CAP_MAP_WINDOW)))
		return -1;
	uint64_t len = src->mm_size - off;
	if (len > CAP_MAP_WINDOW)
		len = CAP_MAP_WINDOW;
	ssize_t r;
	do
		r = pread(fileno(src->fp), src->mm_base, (size_t)len, (off_t)off);
	while (r < 0 && errno == EINTR);
	src->mm_start = off;
	src->mm_len = r > 0 ? (size_t)r : 0;
	return src->mm_len >= n ? 0 : -1;
}

/* The next record on the windowed path, as pcap_next_ex() would return it:
 * 1, or 0 when libpcap must read it (the path is then off). */
static int mm_next(struct cap_source *src, struct pcap_pkthdr *hdr, const u_char **data)
{
	uint64_t off = src->mm_off;
	if (off + 16 > src->mm_size || mm_cover(src, off, 16) < 0)
		return 0;
	const uint8_t *h = src->mm_base + (off - src->mm_start);
	uint32_t caplen = le32(h + 8);
	if (caplen > src->mm_snap || caplen > CAP_MAP_MAX_CAPLEN ||
	    off + 16 + caplen > src->mm_size || mm_cover(src, off, 16 + (size_t)caplen) < 0)
		return 0;
	h = src->mm_base + (off - src->mm_start);
	/* libpcap: bpf_int32 fields widened with their sign, microseconds
	 * scaled to the nanoseconds asked for at open */
	hdr->ts.tv_sec = (int32_t)le32(h);
	hdr->ts.tv_usec = (int32_t)le32(h + 4);
	if (!src->mm_nano)
		hdr->ts.tv_usec = hdr->ts.tv_usec * 1000;
	hdr->caplen = caplen;
	hdr->len = le32(h + 12);
	*data = h + 16;
	src->mm_off = off + 16 + caplen;
	return 1;
}

int cap_source_open(struct cap_source **out, const char *path, char *err, size_t errlen)
{
	struct cap_source *src = calloc(1, sizeof(*src));
	uint8_t magic[4];
	size_t nmagic = 0;
	FILE *fp = NULL;
	int fd = -1;
	*out = NULL;
	if (!src) {
		set_err(err, errlen, "out of memory", NULL);
		return -1;
	}
	if (!strcmp(path, "-")) {
		fd = dup(STDIN_FILENO);
		if (fd < 0) {
			set_err(err, errlen, "cannot read stdin", strerror(errno));
			goto fail;
		}
		fp = gz_fopen_fd(fd, src, magic, &nmagic);
		if (!fp) {
			set_err(err, errlen, "cannot read stdin", "zlib setup failed");
			goto fail;
		}
		path = "<stdin>";
	} else {
		struct stat st;
		fp = fopen(path, "rb");
		if (!fp) {
			snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
			goto fail;
		}
		if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "cannot read %s: it is a directory", path);
			fclose(fp);
			goto fail;
		}
		if (fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode)) {
			src->total = (uint64_t)st.st_size;
			/* libpcap freads each record header and packet: with
			 * stdio's default st_blksize buffer that is one read()
			 * per 4 KiB, most of the syscall time of a decode. */
			src->iobuf = malloc(CAP_IOBUF);
			if (src->iobuf && setvbuf(fp, src->iobuf, _IOFBF, CAP_IOBUF) != 0) {
				free(src->iobuf);
				src->iobuf = NULL;
			}
		}
		nmagic = fread(magic, 1, 4, fp);
		if (nmagic >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
			fd = dup(fileno(fp));
			fclose(fp);
			free(src->iobuf);
			src->iobuf = NULL;
			if (fd < 0 || lseek(fd, 0, SEEK_SET) < 0) {
				snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
				if (fd >= 0)
					close(fd);
				goto fail;
			}
			fp = gz_fopen_fd(fd, src, magic, &nmagic);
			if (!fp) {
				snprintf(err, errlen, "cannot read %s: zlib setup failed", path);
				goto fail;
			}
		} else if (fseeko(fp, 0, SEEK_SET) != 0) {
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
			fclose(fp);
			goto fail;
		}
	}
	if (finish_open(src, fp, magic, nmagic, path, err, errlen) < 0)
		goto fail;
	if (src->iobuf) /* a regular file, not gzip */
		mm_start(src, magic, nmagic);
	*out = src;
	return 0;
fail:
	free(src->iobuf); /* fp, if any, is closed by now */
	free(src);
	return -1;
}

int cap_source_open_mem(struct cap_source **out, const void *p, size_t len, char *err,
                        size_t errlen)
{
	struct cap_source *src = calloc(1, sizeof(*src));
	*out = NULL;
	if (!src) {
		set_err(err, errlen, "out of memory", NULL);
		return -1;
	}
	if (len == 0) {
		set_err(err, errlen, "empty input, not a capture", NULL);
		goto fail;
	}
	FILE *fp = fmemopen((void *)p, len, "rb");
	if (!fp) {
		set_err(err, errlen, "fmemopen", strerror(errno));
		goto fail;
	}
	src->total = len;
	if (finish_open(src, fp, p, len < 4 ? len : 4, "<memory>", err, errlen) < 0)
		goto fail;
	*out = src;
	return 0;
fail:
	free(src);
	return -1;
}

int cap_source_open_live(struct cap_source **out, const char *iface, int snaplen, char *err,
                         size_t errlen)
{
	char perr[PCAP_ERRBUF_SIZE] = "";
	struct cap_source *src = calloc(1, sizeof(*src));
	*out = NULL;
	if (!src) {
		set_err(err, errlen, "out of memory", NULL);
		return -1;
	}
	src->live = 1;
	src->pcap = pcap_create(iface, perr);
	if (!src->pcap) {
		snprintf(err, errlen, "cannot capture on %s: %s", iface, perr);
		goto fail;
	}
	pcap_set_snaplen(src->pcap, snaplen > 0 ? snaplen : 262144);
	pcap_set_timeout(src->pcap, 200);
	pcap_set_immediate_mode(src->pcap, 1);
	pcap_set_buffer_size(src->pcap, 16 * 1024 * 1024);
	pcap_set_tstamp_precision(src->pcap, PCAP_TSTAMP_PRECISION_NANO);
	int rc = pcap_activate(src->pcap);
	if (rc == PCAP_ERROR_PERM_DENIED || rc == PCAP_ERROR_PROMISC_PERM_DENIED) {
		snprintf(err, errlen,
		         "cannot capture on %s: permission denied. Live capture needs root or the "
		         "CAP_NET_RAW capability (for example: sudo setcap "
		         "cap_net_raw,cap_net_admin=eip /path/to/kwire) (%s)",
		         iface, pcap_geterr(src->pcap));
		goto fail;
	}
	if (rc == PCAP_ERROR_NO_SUCH_DEVICE) {
		snprintf(err, errlen, "cannot capture on %s: no such interface (%s)", iface,
		         pcap_geterr(src->pcap));
		goto fail;
	}
	if (rc < 0) {
		snprintf(err, errlen, "cannot capture on %s: %s", iface, pcap_geterr(src->pcap));
		goto fail;
	}
	src->tsnano = pcap_get_tstamp_precision(src->pcap) == PCAP_TSTAMP_PRECISION_NANO;
	char what[96];
	snprintf(what, sizeof(what), "interface %s", iface);
	warn_pcap_linktype(src, what);
	*out = src;
	return 0;
fail:
	if (src->pcap)
		pcap_close(src->pcap);
	free(src);
	return -1;
}

int cap_source_set_filter(struct cap_source *src, const char *bpf, char *err, size_t errlen)
{
	struct bpf_program prog;
	if (src->ng)
		return cap_ng_set_filter(src->ng, bpf, err, errlen);
	if (mm_stop(src) < 0) { /* libpcap applies the filter */
		snprintf(err, errlen, "%s", src->err);
		return -1;
	}
	if (pcap_compile(src->pcap, &prog, bpf, 1, PCAP_NETMASK_UNKNOWN) < 0) {
		snprintf(err, errlen, "bad filter '%s': %s", bpf, pcap_geterr(src->pcap));
		return -1;
	}
	int rc = pcap_setfilter(src->pcap, &prog);
	pcap_freecode(&prog);
	if (rc < 0) {
		snprintf(err, errlen, "cannot install filter '%s': %s", bpf,
		         pcap_geterr(src->pcap));
		return -1;
	}
	return 0;
}

int cap_source_next(struct cap_source *src, struct cap_pkt *pkt)
{
	struct pcap_pkthdr *hdr;
	const u_char *data;
	if (src->ng) {
		if (src->brk)
			return 0;
		return cap_ng_next(src->ng, pkt, src->err, sizeof(src->err), &src->truncated);
	}
	struct pcap_pkthdr mhdr;
	for (;;) {
		if (src->brk)
			return 0;
		if (src->mm_on) {
			if (mm_next(src, &mhdr, &data) == 1) {
				hdr = &mhdr;
				break;
			}
			if (mm_stop(src) < 0)
				return -1;
		}
		int rc = pcap_next_ex(src->pcap, &hdr, &data);
		if (rc == 1)
			break;
		if (rc == 0) /* live timeout */
			continue;
		if (rc == PCAP_ERROR_BREAK)
			return 0;
		const char *perr = pcap_geterr(src->pcap);
		if (strstr(perr, "truncated")) {
			/* A capture cut mid-record (a copy in progress, a killed
			 * tcpdump): everything before it is good data. */
			src->truncated = 1;
			snprintf(src->err, sizeof(src->err), "%s", perr);
			return 0;
		}
		snprintf(src->err, sizeof(src->err), "%s", perr);
		return -1;
	}
	pkt->data = data;
	/* caplen is what libpcap read into the buffer; origlen is only what
	 * the wire had, and some writers get it wrong (caplen > origlen), so
	 * it is never used to size anything. */
	pkt->caplen = hdr->caplen;
	pkt->origlen = hdr->len;
	if (src->tsnano) {
		uint64_t ns = (uint64_t)hdr->ts.tv_usec;
		pkt->ts_us = (int64_t)hdr->ts.tv_sec * 1000000 + (int64_t)(ns / 1000);
		pkt->ts_ns_frac = (uint32_t)(ns % 1000);
	} else {
		pkt->ts_us = (int64_t)hdr->ts.tv_sec * 1000000 + hdr->ts.tv_usec;
		pkt->ts_ns_frac = 0;
	}
	pkt->linktype = src->mm_on ? src->mm_linktype : pcap_datalink(src->pcap);
	return 1;
}

const char *cap_source_error(const struct cap_source *src)
{
	return src->err;
}

int cap_source_truncated(const struct cap_source *src)
{
	return src->truncated;
}

int cap_source_linktype(const struct cap_source *src)
{
	return src->ng ? cap_ng_linktype(src->ng) : pcap_datalink(src->pcap);
}

const char *cap_source_linkname(const struct cap_source *src)
{
	const char *name = pcap_datalink_val_to_name(cap_source_linktype(src));
	return name ? name : "unknown";
}

void cap_source_progress(const struct cap_source *src, uint64_t *done, uint64_t *total)
{
	*total = src->total;
	*done = 0;
	if (src->live || !src->fp)
		return;
	if (src->gz) {
		z_off_t off = gzoffset(src->gz);
		*done = off > 0 ? (uint64_t)off : 0;
	} else if (src->mm_on) {
		*done = src->mm_off;
	} else {
		off_t off = ftello(src->fp);
		*done = off > 0 ? (uint64_t)off : 0;
	}
	if (*total && *done > *total)
		*done = *total;
}

void cap_source_break(struct cap_source *src)
{
	src->brk = 1;
	if (src->pcap && src->live)
		pcap_breakloop(src->pcap);
}

void cap_source_close(struct cap_source **psrc)
{
	struct cap_source *src = *psrc;
	if (!src)
		return;
	mm_unmap(src);
	if (src->pcap)
		pcap_close(src->pcap); /* closes src->fp, which closes src->gz */
	cap_ng_free(src->ng);          /* the same for pcapng */
	free(src->iobuf);
	free(src->warn_q);
	free(src);
	*psrc = NULL;
}

int cap_run(struct cap_source *src, struct cap_tcp *tcp)
{
	struct cap_pkt pkt;
	int rc;
	while ((rc = cap_source_next(src, &pkt)) == 1)
		cap_tcp_packet(tcp, &pkt);
	cap_tcp_flush(tcp);
	return rc < 0 ? -1 : 0;
}
