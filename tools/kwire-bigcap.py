#!/usr/bin/env python3
"""kwire-bigcap.py: a large capture for timing the analyzer (docs/report.md).

    kwire-bigcap.py OUT.pcap SIZE_MB [capture ...]

Repeats the real-client captures of tests/data/clients (kcat, confluent,
kafka-python, large by default) until OUT reaches SIZE_MB: each repetition
is moved later in time (one after the other, as one long capture) and onto
its own loopback addresses (127.R.R.1, so that every repetition is a new set
of TCP flows, brokers and clients). Writes classic pcap (Ethernet). The
IPv4 header checksum is fixed up; TCP checksums are left as captured (loopback
captures carry them unverified anyway).
"""
import os
import struct
import subprocess
import sys
import tempfile


def packets(path):
    """(ts_us, bytes) of each record of a capture, via tshark -F pcap."""
    with tempfile.NamedTemporaryFile(suffix=".pcap") as tmp:
        subprocess.run(["tshark", "-r", path, "-F", "pcap", "-w", tmp.name], check=True)
        b = open(tmp.name, "rb").read()
    magic = struct.unpack("<I", b[:4])[0]
    nano = magic == 0xA1B23C4D
    pos, out = 24, []
    while pos + 16 <= len(b):
        sec, frac, incl, _ = struct.unpack("<IIII", b[pos:pos + 16])
        us = sec * 1000000 + (frac // 1000 if nano else frac)
        out.append((us, b[pos + 16:pos + 16 + incl]))
        pos += 16 + incl
    return out


def ip_csum(h):
    s = 0
    for i in range(0, len(h), 2):
        s += (h[i] << 8) | h[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def main():
    out, size_mb = sys.argv[1], float(sys.argv[2])
    here = os.path.dirname(os.path.abspath(__file__))
    srcs = sys.argv[3:] or [os.path.join(here, "..", "tests", "data", "clients", n + ".pcapng")
                            for n in ("kcat", "confluent", "kafka-python", "large")]
    caps = [packets(s) for s in srcs]
    limit = int(size_mb * 1024 * 1024)
    t = 1700000000 * 1000000
    rep, written = 0, 24
    with open(out, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        while written < limit:
            pk = caps[rep % len(caps)]
            a, b = (rep // 250) % 250 + 1, rep % 250 + 1
            t0 = pk[0][0]
            for ts, data in pk:
                d = bytearray(data)
                if len(d) >= 34 and d[12:14] == b"\x08\x00":
                    for off in (26, 30):  # IPv4 source, destination: 127.a.b.x
                        if d[off] == 127:
                            d[off + 1], d[off + 2] = a, b
                    ihl = (d[14] & 15) * 4
                    d[24:26] = b"\x00\x00"
                    d[24:26] = struct.pack(">H", ip_csum(d[14:14 + ihl]))
                us = t + (ts - t0)
                fh.write(struct.pack("<IIII", us // 1000000, us % 1000000, len(d), len(d)))
                fh.write(d)
                written += 16 + len(d)
            t += (pk[-1][0] - t0) + 200000
            rep += 1
    print("%s: %d repetitions, %.1f MB, %.0f s of traffic" % (out, rep, written / 1048576.0,
                                                              (t - 1700000000 * 1000000) / 1e6))


main()
