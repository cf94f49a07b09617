#!/usr/bin/python3
"""kwire decode tells what is wrong with an input it cannot use:
- a file that starts like gzip but whose gzip header is broken says so (and
  zlib's reason), not "empty input";
- a pcapng interface (or a pcap file) of a link type kwire does not decode
  gets one warning naming the link type and what kwire supports, while the
  packets of the other interfaces are still decoded."""
import gzip
import os
import struct
import subprocess
import sys
import tempfile

KWIRE = os.environ.get("KWIRE_BIN", "build/kwire")


class Check:
    def __init__(self):
        self.failed = 0

    def ok(self, cond, msg):
        if not cond:
            print("FAIL:", msg)
            self.failed += 1


def run(args, stdin=None):
    p = subprocess.run([KWIRE, "decode"] + args, input=stdin, capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def ng_block(btype, body):
    body += b"\0" * ((4 - len(body) % 4) % 4)
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def ng_idb(link, name=None):
    opts = b""
    if name:
        nb = name.encode()
        opts = struct.pack("<HH", 2, len(nb)) + nb + b"\0" * ((4 - len(nb) % 4) % 4)
        opts += struct.pack("<HH", 0, 0)
    return ng_block(1, struct.pack("<HHI", link, 0, 262144) + opts)


def ng_epb(ifid, ts_us, pkt):
    return ng_block(6, struct.pack("<IIIII", ifid, ts_us >> 32, ts_us & 0xFFFFFFFF, len(pkt),
                                   len(pkt)) + pkt)


def eth_tcp(sport, dport, seq, ack, flags, payload=b""):
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0, 64, 6, 0,
                     bytes([10, 0, 0, 1]) if sport > dport else bytes([10, 0, 0, 2]),
                     bytes([10, 0, 0, 2]) if sport > dport else bytes([10, 0, 0, 1]))
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0)
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + ip + tcp + payload


def api_versions_pair():
    """An ApiVersions v0 request and its response (error 0, one API)."""
    cid = b"probe"
    req = struct.pack(">hhih", 18, 0, 7, len(cid)) + cid
    resp = struct.pack(">ihi", 7, 0, 1) + struct.pack(">hhh", 18, 0, 3)
    return struct.pack(">i", len(req)) + req, struct.pack(">i", len(resp)) + resp


def main():
    chk = Check()
    tmp = tempfile.mkdtemp(prefix="kwire-inputs-")

    # --- gzip: broken headers ---
    good = gzip.compress(b"\xd4\xc3\xb2\xa1" + b"\0" * 40)
    cases = {
        "method": (bytearray(good), 2, 7, "unknown compression method"),
        "flags": (bytearray(good), 3, 0xE0, "unknown header flags"),
    }
    for name, (buf, off, val, why) in cases.items():
        buf[off] = val
        path = os.path.join(tmp, "bad-%s.pcap.gz" % name)
        open(path, "wb").write(bytes(buf))
        for args, stdin in (([path], None), (["-"], bytes(buf))):
            rc, _, err = run(args, stdin)
            chk.ok(rc == 1, "%s %s: exit %d, want 1" % (name, args[0], rc))
            chk.ok("corrupt gzip header" in err and why in err,
                   "%s %s: message does not say the gzip header is broken: %r" %
                   (name, args[0], err))
            chk.ok("empty input" not in err, "%s: still says empty input: %r" % (name, err))
    # a gzip cut inside its header
    path = os.path.join(tmp, "cut.pcap.gz")
    open(path, "wb").write(good[:5])
    rc, _, err = run([path])
    chk.ok(rc == 1 and "corrupt gzip header" in err and "ends inside its header" in err,
           "gzip cut in its header: %d %r" % (rc, err))
    # a real empty input still says so
    path = os.path.join(tmp, "empty.pcap.gz")
    open(path, "wb").write(gzip.compress(b""))
    rc, _, err = run([path])
    chk.ok(rc == 1 and "empty input" in err, "empty gzip: %d %r" % (rc, err))

    # --- pcapng: an interface of an unknown link type ---
    req, resp = api_versions_pair()
    pkts = [
        eth_tcp(40000, 9092, 100, 0, 0x02),
        eth_tcp(9092, 40000, 500, 101, 0x12),
        eth_tcp(40000, 9092, 101, 501, 0x18, req),
        eth_tcp(9092, 40000, 501, 101 + len(req), 0x18, resp),
    ]
    shb = ng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    body = shb + ng_idb(1, "eth0") + ng_idb(147, "usr0") + ng_idb(105)
    ts = 1700000000 * 1000000
    for i, p in enumerate(pkts):
        body += ng_epb(0, ts + i, p)
        body += ng_epb(1, ts + i, b"\0" * 60)
        body += ng_epb(2, ts + i, b"\0" * 60)
    path = os.path.join(tmp, "links.pcapng")
    open(path, "wb").write(body)
    rc, out, err = run([path])
    warns = [l for l in err.splitlines() if "warning" in l]
    chk.ok(rc == 0, "links.pcapng: exit %d" % rc)
    chk.ok(len(warns) == 2, "want one warning per unsupported interface, got %r" % err)
    chk.ok(any("interface 1 (usr0)" in w and "(147)" in w for w in warns),
           "no warning naming interface 1 and link type 147: %r" % err)
    chk.ok(any("interface 2" in w and "IEEE802_11" in w for w in warns),
           "no warning naming interface 2 and IEEE802_11: %r" % err)
    chk.ok(all("EN10MB" in w and "LINUX_SLL" in w for w in warns),
           "the warning does not say what is supported: %r" % err)
    chk.ok("ApiVersions v0" in out, "the Ethernet interface was not decoded: %r" % out)
    # the same in --format stats: the warning is on stderr, the report intact
    rc, out, err = run(["-f", "stats", path])
    chk.ok(rc == 0 and err.count("warning") == 2, "stats: %d %r" % (rc, err))

    # a classic pcap of an unsupported link type
    path = os.path.join(tmp, "link147.pcap")
    rec = b"".join(struct.pack("<IIII", 1700000000, i, 60, 60) + b"\0" * 60 for i in range(3))
    open(path, "wb").write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 147) + rec)
    rc, out, err = run([path])
    chk.ok(rc == 0 and "the capture has link type" in err and "(147)" in err,
           "pcap of link type 147: %d %r" % (rc, err))

    if chk.failed:
        print("%d check(s) failed" % chk.failed)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
