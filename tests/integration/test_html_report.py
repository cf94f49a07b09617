#!/usr/bin/env python3
"""`kwire decode --format html` (issue 12).

For the real-client captures in tests/data (and a damaged copy, for gaps and
decode problems):
  - the page is self-contained: no external script, style, font, image or
    URL of any kind;
  - the stats it embeds are exactly `--format stats --json` of the same
    capture, and its time line adds up to the same totals (requests per
    API, errors per name, request+response bytes, gaps, problems);
  - headless Chromium, in a network namespace with no network at all,
    renders it: the script ran, every chart has drawn marks, the series of
    the requests chart sum to the stats' request counts, and every number
    shown (each element marked data-stat) equals the stats value it names;
  - the screenshot is not blank: the chart colours are on it.
"""
import datetime
import glob
import gzip
import html.parser
import itertools
import json
import operator
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

KWIRE = os.environ["KWIRE_BIN"]
DATA = os.path.join(os.environ.get("KWIRE_DATA", "tests/data"), "clients")
CHROMIUM = shutil.which("chromium")
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def kwire(*args):
    p = subprocess.run([KWIRE, *args], capture_output=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit("kwire %s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr[-2000:]))
    return p.stdout


def islands(page):
    out = {}
    for m in re.finditer(r'<script type="application/json" id="([a-z-]+)">(.*?)</script>', page, re.S):
        out[m.group(1)] = json.loads(m.group(2))
    return out


class Dom(html.parser.HTMLParser):
    """Collects the marked elements of a rendered page."""

    def __init__(self):
        super().__init__()
        self.stack = []
        self.stats = []   # (path, scale, text)
        self.series = []  # (chart id, series name, sum, tag, attrs)
        self.charts = {}  # id -> count of drawn marks
        self.chart = None
        self.body = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "svg" and "chart" in (a.get("class") or ""):
            self.chart = a.get("id")
            self.charts[self.chart] = 0
        if self.chart and tag in ("path", "rect", "circle"):
            if tag != "path" or len(a.get("d") or "") > 2:
                self.charts[self.chart] += 1
        if self.chart and "data-series" in a:
            self.series.append((self.chart, a["data-series"], a.get("data-sum"), tag, a))
        if tag in ("br", "meta", "line", "circle", "rect", "path", "i"):
            return
        self.stack.append([tag, a, ""])

    def handle_endtag(self, tag):
        if tag == "svg":
            self.chart = None
        if not self.stack or tag in ("br", "meta", "line", "circle", "rect", "path", "i"):
            return
        while self.stack:
            t, a, text = self.stack.pop()
            if "data-stat" in a:
                self.stats.append((json.loads(a["data-stat"]), a.get("data-scale"), text))
            if self.stack:
                self.stack[-1][2] += text
            if t == tag:
                break

    def handle_data(self, data):
        if self.stack:
            self.stack[-1][2] += data


def png_pixels(path):
    """(width, height, rows of RGB tuples) of an 8-bit RGB/RGBA PNG."""
    with open(path, "rb") as fh:
        b = fh.read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", 0
    while pos < len(b):
        n, typ = struct.unpack(">I4s", b[pos:pos + 8])
        chunk = b[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and ctype in (2, 6), "PNG type %d/%d" % (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif typ == b"IDAT":
            idat += chunk
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    # Bytewise addition mod 256 of two whole rows at once, on Python ints
    # (the low 7 bits of every byte added without a carry out of the byte,
    # the top bit by XOR): a Chromium screenshot is mostly Up-filtered rows,
    # and a byte-at-a-time loop over 1280x3000 pixels took 5 s.
    m7 = int.from_bytes(b"\x7f" * stride, "big")
    m8 = int.from_bytes(b"\x80" * stride, "big")

    def add_rows(x, y):
        xi, yi = int.from_bytes(x, "big"), int.from_bytes(y, "big")
        return bytearray((((xi & m7) + (yi & m7)) ^ ((xi ^ yi) & m8)).to_bytes(stride, "big"))
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 0:
            rows.append(line)
            prev = line
            continue
        if f == 2:
            line = add_rows(line, prev)
            rows.append(line)
            prev = line
            continue
        if f == 1:  # Sub: a running sum mod 256 of each channel
            for ch in range(bpp):
                line[ch::bpp] = bytes(map(operator.and_, itertools.accumulate(line[ch::bpp]),
                                          itertools.repeat(255)))
            rows.append(line)
            prev = line
            continue
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            c = prev[i - bpp] if i >= bpp else 0
            up = prev[i]
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + up) & 255
            elif f == 3:
                line[i] = (line[i] + (a + up) // 2) & 255
            elif f == 4:
                p = a + up - c
                pa, pb, pc = abs(p - a), abs(p - up), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, bpp, rows


def chromium(url_path, tmp, *args):
    profile = tempfile.mkdtemp(dir=tmp)
    cmd = ["unshare", "-n", CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--user-data-dir=" + profile, "--hide-scrollbars", *args,
           "file://" + url_path]
    p = subprocess.run(cmd, capture_output=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit("chromium failed (%d): %s" % (p.returncode, p.stderr[-2000:]))
    return p.stdout


def check(cap, tmp, render):
    name = os.path.basename(cap)
    out = os.path.join(tmp, name + ".html")
    kwire("decode", "--format", "html", "--no-progress", "-o", out, cap)
    stats = json.loads(kwire("decode", "--format", "stats", "--json", "--no-progress", cap))
    with open(out, encoding="utf-8") as fh:
        page = fh.read()

    # Self-contained.
    for pat in [r"<link\b", r"<img\b", r"<iframe\b", r"\bsrc\s*=", r"\bhref\s*=", r"url\(",
                r"@import", r"@font-face", r"\bfetch\(", r"XMLHttpRequest", r"\bimport\("]:
        if re.search(pat, page, re.I):
            fail("%s: the page has %s" % (name, pat))
    urls = set(re.findall(r"[a-z]+://[^\s\"'<>]*", page)) - {"http://www.w3.org/2000/svg"}
    for u in sorted(urls):
        if not u.startswith("file://"):
            fail("%s: the page names the URL %s" % (name, u))

    isl = islands(page)
    if isl.get("kwire-stats") != stats:
        fail("%s: the embedded stats differ from --format stats --json" % name)
    tl = isl.get("kwire-timeline", {})
    for api, a in stats["apis"].items():
        got = sum(tl["apis"].get(api, {}).get("requests", []))
        if got != a["requests"]:
            fail("%s: %s requests over time add up to %d, stats say %d" % (name, api, got, a["requests"]))
    if "(other)" not in tl["errors"]:
        for e, n in stats["errors"].items():
            if sum(tl["errors"].get(e, [])) != n:
                fail("%s: %s over time add up to %d, stats say %d" % (name, e, sum(tl["errors"].get(e, [])), n))
    if sum(tl["problems"]) != stats["problems"]["count"]:
        fail("%s: problems over time %d != %d" % (name, sum(tl["problems"]), stats["problems"]["count"]))
    if sum(tl["gaps"]) != stats["gaps"]["gaps"]:
        fail("%s: gaps over time %d != %d" % (name, sum(tl["gaps"]), stats["gaps"]["gaps"]))
    cid_bytes = sum(c["bytes"] for c in stats["client_ids"].values())
    if sum(tl["bytes_in"]) + sum(tl["bytes_out"]) != cid_bytes:
        fail("%s: bytes over time %d != %d" % (name, sum(tl["bytes_in"]) + sum(tl["bytes_out"]), cid_bytes))
    # Brokers and clients, against the json format's endpoints.
    brokers, clients, times = set(), set(), []
    for line in kwire("decode", "--format", "json", "--no-progress", cap).decode().splitlines():
        o = json.loads(line)
        brokers.add(o["broker"])
        clients.add(o["client"])
        d = datetime.datetime.strptime(o["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        times.append(int(d.timestamp()) * 1000000 + d.microsecond)
    # The duration shown: from the first request (the json format's first
    # time) to the end of the last response or gap (a response's time there
    # is its first segment's, so the span may end a little later).
    if times and (tl["first_us"] != min(times) or not 0 <= tl["last_us"] - max(times) < 1000000):
        fail("%s: time line spans %d..%d, the json format's messages %d..%d" %
             (name, tl["first_us"], tl["last_us"], min(times), max(times)))
    if (tl["brokers"], tl["clients"]) != (len(brokers), len(clients)):
        fail("%s: %d brokers, %d clients; the json format has %d, %d" %
             (name, tl["brokers"], tl["clients"], len(brokers), len(clients)))
    print("%s: %d bytes of HTML, %d time buckets of %d us, %d gaps, %d problems, %d group events; "
          "stats and time line agree" % (name, len(page), tl["buckets"], tl["width_us"], sum(tl["gaps"]),
                                         sum(tl["problems"]), tl["group_events_total"]))
    if name.startswith("kcat-damaged") and not (sum(tl["gaps"]) and sum(tl["problems"])):
        fail("%s: the damaged capture shows no gaps or no problems" % name)
    if not render:
        return

    dom = Dom()
    dom.feed(chromium(out, tmp, "--dump-dom", "--virtual-time-budget=5000").decode("utf-8"))
    if dom.body.get("data-rendered") != "1":
        fail("%s: the page's script did not finish in Chromium" % name)
        return
    want = ["chart-requests", "chart-bytes", "chart-topics", "chart-client-ids", "chart-latency-0"]
    if stats["errors"]:
        want.append("chart-errors")
    if stats["gaps"]["gaps"] or stats["problems"]["count"]:
        want.append("chart-problems")
    if tl["group_events_total"]:
        want.append("chart-groups")
    for c in want:
        if dom.charts.get(c, 0) == 0:
            fail("%s: chart %s drew nothing (%r)" % (name, c, dom.charts.get(c)))
    for chart, series, s, tag, a in dom.series:
        if chart == "chart-requests":
            if int(float(s)) != stats["apis"][series]["requests"]:
                fail("%s: requests chart series %s sums to %s, stats say %d" %
                     (name, series, s, stats["apis"][series]["requests"]))
    nreq = sum(1 for c in dom.series if c[0] == "chart-requests")
    if nreq != min(10, len(stats["apis"])):
        fail("%s: the requests chart has %d series for %d APIs" % (name, nreq, len(stats["apis"])))
    checked = 0
    for path, scale, text in dom.stats:
        v = stats
        for k in path:
            v = v[k]
        if scale is None:
            shown = int(text.replace(",", ""))
            ok = shown == v
        else:
            ok = abs(float(text) - round(v * float(scale), 3)) < 1e-9
        if not ok:
            fail("%s: the page shows %r for %s, stats say %r" % (name, text, path, v))
        checked += 1
    if checked < 20:
        fail("%s: only %d numbers marked on the page" % (name, checked))
    print("%s: Chromium drew %d charts (%d marks); %d numbers shown equal the stats" %
          (name, len(dom.charts), sum(dom.charts.values()), checked))

    png = os.path.join(tmp, name + ".png")
    chromium(out, tmp, "--screenshot=" + png, "--window-size=1280,3000",
             "--virtual-time-budget=5000")
    w, h, bpp, rows = png_pixels(png)
    colours = {}
    for row in rows[::2]:
        for x in range(0, w * bpp, bpp * 2):
            px = bytes(row[x:x + 3])
            colours[px] = colours.get(px, 0) + 1
    # The first series colour (#3366cc) of the requests and topics charts,
    # and the header bar (#1d2330).
    for want_px, what in [(b"\x33\x66\xcc", "chart blue"), (b"\x1d\x23\x30", "header")]:
        if colours.get(want_px, 0) < 20:
            fail("%s: the screenshot has almost no %s pixels (%d)" % (name, what, colours.get(want_px, 0)))
    print("%s: screenshot %dx%d, %d colours" % (name, w, h, len(colours)))


def damaged(tmp):
    """kcat.pcapng with every 40th packet's payload zeroed: gaps and decode
    problems for the report to show (re-written as a plain pcap)."""
    src = os.path.join(DATA, "kcat.pcapng")
    dst = os.path.join(tmp, "kcat-damaged.pcap")
    r = subprocess.run(["tshark", "-r", src, "-F", "pcap", "-w", dst + ".tmp"], capture_output=True)
    if r.returncode != 0:
        return None
    with open(dst + ".tmp", "rb") as fh:
        b = bytearray(fh.read())
    pos, n, out = 24, 0, bytearray(b[:24])
    while pos + 16 <= len(b):
        incl = struct.unpack("<I", b[pos + 8:pos + 12])[0]
        rec = b[pos:pos + 16 + incl]
        n += 1
        if n % 40 != 20:
            out += rec
        pos += 16 + incl
    with open(dst, "wb") as fh:
        fh.write(out)
    return dst


def main():
    if not CHROMIUM:
        print("FAIL: chromium is not installed (tools/install-deps.sh)")
        sys.exit(1)
    tmp = tempfile.mkdtemp()
    try:
        caps = sorted(glob.glob(os.path.join(DATA, "*.pcapng"))) + [os.path.join(DATA, "big.pcapng.gz")]
        d = damaged(tmp)
        if d:
            caps.append(d)
        for cap in caps:
            base = os.path.basename(cap)
            check(cap, tmp, render=base in ("confluent.pcapng", "kcat-damaged.pcap"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("%d failure(s)" % len(failures))
        sys.exit(1)
    print("OK")


main()
