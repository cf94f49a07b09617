#!/usr/bin/python3
"""kwire decode under a SYN scan: 200,000 connections that carry no payload
(a SYN each, to the Kafka port 9092) must cost about 100 bytes each, not a
flow with reassembly and decoder state; and --flow-memory must bound the
flow state, closing the idlest connections first and counting them in the
stats report, while the Kafka traffic after the scan is still decoded.

The capture is generated here (14 MB in a temporary directory)."""
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile

KWIRE = os.environ.get("KWIRE_BIN", "build/kwire")
NFLOWS = 200000
ETH = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00"


class Check:
    def __init__(self):
        self.failed = 0

    def ok(self, cond, msg):
        if not cond:
            print("FAIL:", msg)
            self.failed += 1


def pkt(src, dst, sport, dport, seq, ack, flags, payload=b""):
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0, 64, 6, 0, src, dst)
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0)
    return ETH + ip + tcp + payload


def api_versions():
    """An ApiVersions v0 request and its response."""
    cid = b"after-scan"
    req = struct.pack(">hhih", 18, 0, 7, len(cid)) + cid
    resp = struct.pack(">ihi", 7, 0, 1) + struct.pack(">hhh", 18, 0, 3)
    return struct.pack(">i", len(req)) + req, struct.pack(">i", len(resp)) + resp


def write_scan(path):
    """NFLOWS SYN-only connections to 10.0.0.2:9092 within one second, then
    one Kafka connection with an ApiVersions exchange."""
    out = open(path, "wb")
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
    t0 = 1700000000 * 1000000
    buf = bytearray()
    srv = bytes([10, 0, 0, 2])

    def rec(ts, data):
        buf.extend(struct.pack("<IIII", ts // 1000000, ts % 1000000, len(data), len(data)))
        buf.extend(data)

    for i in range(NFLOWS):
        src = bytes([10, 1 + (i >> 16), (i >> 8) & 255, i & 255])
        rec(t0 + i * 4, pkt(src, srv, 40000 + i % 20000, 9092, i * 7919 & 0xFFFFFFFF, 0, 0x02))
        if len(buf) > 1 << 20:
            out.write(buf)
            buf.clear()
    cli = bytes([10, 9, 9, 9])
    req, resp = api_versions()
    t = t0 + NFLOWS * 4 + 1000
    rec(t, pkt(cli, srv, 50000, 9092, 100, 0, 0x02))
    rec(t + 1, pkt(srv, cli, 9092, 50000, 900, 101, 0x12))
    rec(t + 2, pkt(cli, srv, 50000, 9092, 101, 901, 0x18, req))
    rec(t + 3, pkt(srv, cli, 9092, 50000, 901, 101 + len(req), 0x18, resp))
    out.write(buf)
    out.close()


def is_asan():
    with open(KWIRE, "rb") as f:
        return b"__asan_init" in f.read()


def main():
    chk = Check()
    tmp = tempfile.mkdtemp(prefix="kwire-synscan-")
    path = os.path.join(tmp, "scan.pcap")
    write_scan(path)
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        p = subprocess.run([KWIRE, "decode", "-f", "stats", "--json", path],
                           capture_output=True, timeout=300)
        rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        chk.ok(p.returncode == 0, "exit %d: %s" % (p.returncode, p.stderr.decode()[-500:]))
        try:
            rep = json.loads(p.stdout)
        except ValueError:
            rep = {"capture": {}}
        cap = rep["capture"]
        chk.ok(cap.get("tcp_flows") == NFLOWS + 1, "tcp_flows %r" % cap.get("tcp_flows"))
        peak = cap.get("flow_mem_peak")
        # ~112-byte entries, their allocation overhead and the hash buckets;
        # a flow with reassembly and decoder state is over 1 KB
        chk.ok(peak is not None and peak <= NFLOWS * 200,
               "flow memory peak %r for %d SYN-only connections (want <= %d)" %
               (peak, NFLOWS, NFLOWS * 200))
        chk.ok(cap.get("flows_evicted_mem") == 0, "evictions under the default budget: %r" % cap)
        chk.ok(rep.get("requests") == 1 and rep.get("kafka_flows") == 1,
               "the Kafka flow: %r" % rep)
        if not is_asan() and rss_kb > before:
            # the process's own peak: the entries plus a fixed ~10 MB
            chk.ok(rss_kb < 120 * 1024, "peak RSS %d KiB for %d SYN-only connections" %
                   (rss_kb, NFLOWS))

        # a budget far below what the scan needs: the idlest go first
        for fmt in (["-f", "stats", "--json"], ["-f", "stats"], ["--stats"]):
            p = subprocess.run([KWIRE, "decode", "--flow-memory", "4M"] + fmt + [path],
                               capture_output=True, timeout=300)
            chk.ok(p.returncode == 0, "budget %s: exit %d" % (fmt, p.returncode))
            out = p.stdout.decode()
            if "--json" in fmt:
                try:
                    cap = json.loads(out)["capture"]
                except ValueError:
                    chk.ok(False, "budget: no JSON report")
                    continue
                chk.ok(cap["flows_evicted_mem"] > NFLOWS // 2,
                       "flows_evicted_mem %r with --flow-memory 4M" % cap["flows_evicted_mem"])
                # enforced after every packet: at most one packet's worth over
                chk.ok(cap["flow_mem_peak"] <= (4 << 20) + (256 << 10),
                       "peak %r over the 4M budget" % cap["flow_mem_peak"])
                chk.ok(cap["flows_evicted_table"] == 0, "table evictions %r" % cap)
            else:
                line = [l for l in out.splitlines() if "flows evicted" in l]
                chk.ok(line and "to stay within --flow-memory" in line[0] and
                       not line[0].split("flows evicted ")[1].startswith("0 "),
                       "no eviction count in the text report: %r" % line)
            if fmt == ["--stats"]:
                chk.ok("ApiVersions v0" in out and '"after-scan"' in out,
                       "the Kafka exchange after the scan was not decoded: %r" % out[:400])

        # bad sizes are usage errors
        for bad in ("4x", "-1M", "100K", ""):
            p = subprocess.run([KWIRE, "decode", "--flow-memory", bad, path],
                               capture_output=True, timeout=60)
            chk.ok(p.returncode == 2 and b"--flow-memory" in p.stderr,
                   "--flow-memory %r: exit %d %r" % (bad, p.returncode, p.stderr[-200:]))
    finally:
        os.unlink(path)
        os.rmdir(tmp)
    if chk.failed:
        print("%d check(s) failed" % chk.failed)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
