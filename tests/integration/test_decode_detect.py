#!/usr/bin/python3
"""Which flows kwire decode finds to be Kafka, without --port
(docs/analyzer.md, "Which flows are Kafka"):

1. A connection whose first frame is a Produce request of over 1 MiB (two
   real record batches of about 1 MB each, taken from the `big` capture of
   tests/data, in one Produce v7 request on an unlisted port) is Kafka: its
   records are all in --format records.
2. A connection to an endpoint that another flow showed to be a broker is
   Kafka, also when it was seen, and rejected, before that evidence (its
   first client segment lost; it is kept and decoded once the evidence
   comes).
3. A connection to an endpoint named in a Metadata response is Kafka.
4. Flows that carried payload but were not decoded are reported at the
   end of every format (count, bytes, the server, a --port hint): the
   summary's "!" lines, stderr for verbose, json, records and html, the
   stats report's section and JSON member.

The captures are written here from those frames."""
import base64
import gzip
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

KWIRE = os.environ.get("KWIRE_BIN", "build/kwire")
DATA = os.path.join(os.environ.get("KWIRE_DATA", "tests/data"), "clients")
ETH = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00"


class Check:
    def __init__(self):
        self.failed = 0

    def ok(self, cond, msg):
        if not cond:
            print("FAIL:", msg)
            self.failed += 1


# ---- reading the big capture ----

def read_pcapng(buf):
    off, endian, pkts = 0, "<", []
    while off + 12 <= len(buf):
        btype, blen = struct.unpack_from(endian + "II", buf, off)
        if btype == 0x0A0D0D0A:
            endian = "<" if buf[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            btype, blen = struct.unpack_from(endian + "II", buf, off)
        body = buf[off + 8:off + blen - 4]
        if btype == 1:
            assert struct.unpack_from(endian + "H", body, 0)[0] == 1  # Ethernet
        elif btype == 6:
            caplen = struct.unpack_from(endian + "I", body, 12)[0]
            pkts.append(body[20:20 + caplen])
        off += blen
    return pkts


def client_streams(pkts):
    """{(client port): bytes} of every connection's client->server stream,
    reassembled (first copy of every byte wins)."""
    segs, isn = {}, {}
    for data in pkts:
        if data[12:14] != b"\x08\x00" or data[23] != 6:
            continue
        ihl = (data[14] & 15) * 4
        tot = struct.unpack_from(">H", data, 16)[0]
        t = 14 + ihl
        sport, dport, seq = struct.unpack_from(">HHI", data, t)
        flags = data[t + 13]
        payload = data[t + (data[t + 12] >> 4) * 4:14 + tot]
        if sport < dport:
            continue  # server side
        if flags & 2:
            isn[sport] = seq + 1
        if payload:
            segs.setdefault(sport, []).append((seq, payload))
    out = {}
    for port, lst in segs.items():
        nxt = isn.get(port, min(s for s, _ in lst))
        buf = bytearray()
        for seq, p in sorted(lst, key=lambda x: (x[0] - nxt) & 0xFFFFFFFF):
            rel = (nxt - seq) & 0xFFFFFFFF
            if rel < len(p):
                buf += p[rel:]
                nxt = (seq + len(p)) & 0xFFFFFFFF
        out[port] = bytes(buf)
    return out


def s16(b):
    return struct.pack(">h", len(b)) + b


def produce_batches():
    """{partition: (client_id, record batch bytes)} of the Produce v7
    requests of the big capture."""
    with gzip.open(os.path.join(DATA, "big.pcapng.gz"), "rb") as f:
        pkts = read_pcapng(f.read())
    found = {}
    for stream in client_streams(pkts).values():
        o = 0
        while o + 4 <= len(stream):
            size = struct.unpack_from(">i", stream, o)[0]
            frame = stream[o + 4:o + 4 + size]
            o += 4 + size
            if len(frame) < size:
                break
            key, ver, _ = struct.unpack_from(">hhi", frame, 0)
            if key != 0 or ver != 7:
                continue
            cl = struct.unpack_from(">h", frame, 8)[0]
            cid = frame[10:10 + cl]
            p = 10 + cl
            tl = struct.unpack_from(">h", frame, p)[0]
            p += 2 + max(tl, 0) + 2 + 4  # TransactionalId, Acks, TimeoutMs
            for _ in range(struct.unpack_from(">i", frame, p)[0]):
                p += 4
                nl = struct.unpack_from(">h", frame, p)[0]
                p += 2 + nl
                for _ in range(struct.unpack_from(">i", frame, p)[0]):
                    p += 4
                    idx, rl = struct.unpack_from(">ii", frame, p)
                    p += 8
                    found[idx] = (cid, frame[p:p + rl])
                    p += rl
    return found


# ---- writing captures ----

class Pcap:
    def __init__(self):
        self.out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.ts = 1700000000 * 1000000

    def pkt(self, src, dst, flags, seq, ack, payload=b""):
        sa, sp = src
        da, dp = dst
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0, 64, 6, 0,
                         bytes(sa), bytes(da))
        tcp = struct.pack(">HHIIBBHHH", sp, dp, seq, ack, 0x50, flags, 65535, 0, 0)
        data = ETH + ip + tcp + payload
        self.ts += 100
        self.out += struct.pack("<IIII", self.ts // 1000000, self.ts % 1000000, len(data),
                                len(data)) + data


class Conn:
    """One TCP connection written into a Pcap: a handshake, data in
    1448-byte segments (any of them can be left out: lost), FINs."""

    def __init__(self, cap, cli, srv, handshake=True):
        self.cap, self.cli, self.srv = cap, cli, srv
        self.seq = [1000, 50000]
        if handshake:
            cap.pkt(cli, srv, 0x02, 999, 0)
            cap.pkt(srv, cli, 0x12, 49999, 1000)
            cap.pkt(cli, srv, 0x10, 1000, 50000)

    def send(self, from_client, data, lose_first=False):
        d = 0 if from_client else 1
        src, dst = (self.cli, self.srv) if from_client else (self.srv, self.cli)
        for i in range(0, len(data), 1448):
            chunk = data[i:i + 1448]
            if not (lose_first and i == 0):
                self.cap.pkt(src, dst, 0x18, self.seq[d], self.seq[1 - d], chunk)
            self.seq[d] += len(chunk)

    def ack(self, from_client):
        d = 0 if from_client else 1
        src, dst = (self.cli, self.srv) if from_client else (self.srv, self.cli)
        self.cap.pkt(src, dst, 0x10, self.seq[d], self.seq[1 - d])
        self.cap.ts += 5000  # the peer's answer comes a few ms later

    def close(self):
        self.cap.pkt(self.cli, self.srv, 0x11, self.seq[0], self.seq[1])
        self.cap.pkt(self.srv, self.cli, 0x11, self.seq[1], self.seq[0] + 1)
        self.cap.pkt(self.cli, self.srv, 0x10, self.seq[0] + 1, self.seq[1] + 1)


def frame(b):
    return struct.pack(">i", len(b)) + b


def req(key, ver, corr, cid, body):
    return frame(struct.pack(">hhi", key, ver, corr) + s16(cid) + body)


def resp(corr, body):
    return frame(struct.pack(">i", corr) + body)


def api_versions(corr, cid):
    return (req(18, 0, corr, cid, b""),
            resp(corr, struct.pack(">hi", 0, 1) + struct.pack(">hhh", 3, 0, 12)))


def metadata(corr, cid, brokers):
    """Metadata v1, all topics; the response names brokers [(id, host, port)]."""
    body = struct.pack(">i", len(brokers))
    for node, host, port in brokers:
        body += struct.pack(">i", node) + s16(host.encode()) + struct.pack(">i", port) + \
            struct.pack(">h", -1)
    body += struct.pack(">ii", 0, 0)  # ControllerId, no topics
    return req(3, 1, corr, cid, struct.pack(">i", -1)), resp(corr, body)


def ip(*a):
    return list(a)


def decode(path, args):
    p = subprocess.run([KWIRE, "decode"] + args + [path], capture_output=True, timeout=300)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode()


def records(out):
    recs = []
    for line in out.splitlines():
        o = json.loads(line)
        if "topic" in o:
            recs.append(o)
    return recs


def blob(rec, name):
    v = rec[name]
    if v is None:
        return None
    return base64.b64decode(v) if rec.get(name + "_encoding") == "base64" else v.encode()


def test_big_first_frame(chk, tmp):
    batches = produce_batches()
    chk.ok(0 in batches and 1 in batches, "the big capture's Produce batches: %r" %
           sorted(batches))
    cid = batches[0][0]
    parts = b"".join(struct.pack(">i", i) + struct.pack(">i", len(batches[i][1])) + batches[i][1]
                     for i in (0, 1))
    body = struct.pack(">h", -1) + struct.pack(">hi", -1, 30000) + struct.pack(">i", 1) + \
        s16(b"big") + struct.pack(">i", 2) + parts
    produce = req(0, 7, 5, cid, body)
    chk.ok(len(produce) > (1 << 20) + 4, "the Produce frame is %d bytes" % len(produce))
    rbody = struct.pack(">i", 1) + s16(b"big") + struct.pack(">i", 2)
    for i in (0, 1):
        rbody += struct.pack(">ihqqq", i, 0, 0, -1, 0)
    rbody += struct.pack(">i", 0)
    cap = Pcap()
    c = Conn(cap, (ip(10, 20, 0, 1), 45000), (ip(10, 20, 0, 2), 19092))
    c.send(True, produce)
    c.ack(False)
    c.send(False, resp(5, rbody))
    c.close()
    path = os.path.join(tmp, "big-first.pcap")
    open(path, "wb").write(cap.out)

    want = {}
    for line in open(os.path.join(DATA, "big.expected")):
        cols = line.rstrip("\n").split("\t")
        if cols[0] == "produce" and cols[2] in ("0", "1"):
            want[int(cols[2])] = (bytes.fromhex(cols[6]).decode(), cols[7])
    rc, out, err = decode(path, ["-f", "records"])
    chk.ok(rc == 0, "big-first records: exit %d %s" % (rc, err))
    got = {}
    for r in records(out):
        v = blob(r, "value")
        got[r["partition"]] = (blob(r, "key").decode(),
                               "sha256:" + hashlib.sha256(v).hexdigest(), r["offset"], r["topic"])
    for part, (key, digest) in want.items():
        chk.ok(part in got and got[part][:2] == (key, digest) and got[part][2:] == (0, "big"),
               "partition %d record of the >1 MiB first Produce: want %s %s, got %r" %
               (part, key, digest, got.get(part)))
    rc, out, err = decode(path, [])
    chk.ok("Produce v7" in out and "big[0]:1rec" in out,
           "summary of the >1 MiB first Produce: %r" % out[:500])
    chk.ok("not decoded" not in out, "the flow is reported as not decoded: %r" % out[:500])


def endpoint_capture(tmp):
    cap = Pcap()
    b1 = (ip(10, 30, 0, 2), 29092)
    # X: its first client segment lost, seen before any evidence: rejected
    x = Conn(cap, (ip(10, 30, 0, 3), 41000), b1)
    av_req, av_resp = api_versions(1, b"x-client")
    md_req, md_resp = metadata(2, b"x-client", [(0, "10.30.0.2", 29092)])
    x.send(True, av_req, lose_first=True)
    x.send(True, md_req)
    x.ack(False)  # the broker has bytes the capture lost: a gap
    x.send(False, av_resp)
    x.send(False, md_resp)
    # Y: a clean connection to the same broker: the evidence; its Metadata
    # response names a second broker by address and a third by name
    y = Conn(cap, (ip(10, 30, 0, 4), 42000), b1)
    av_req, av_resp = api_versions(1, b"y-client")
    y.send(True, av_req)
    y.send(False, av_resp)
    md_req, md_resp = metadata(2, b"y-client", [(0, "10.30.0.2", 29092),
                                                (1, "10.30.0.5", 39092),
                                                (2, "kafka-2.example", 39093)])
    y.send(True, md_req)
    y.send(False, md_resp)
    # X goes on after the evidence
    md_req, md_resp = metadata(3, b"x-client", [(0, "10.30.0.2", 29092)])
    x.send(True, md_req)
    x.send(False, md_resp)
    # W: to the broker the Metadata response named, first segment lost too
    w = Conn(cap, (ip(10, 30, 0, 6), 43000), (ip(10, 30, 0, 5), 39092))
    av_req, av_resp = api_versions(1, b"w-client")
    md_req, md_resp = metadata(2, b"w-client", [(1, "10.30.0.5", 39092)])
    w.send(True, av_req, lose_first=True)
    w.send(True, md_req)
    w.ack(False)
    w.send(False, av_resp)
    w.send(False, md_resp)
    # (after a gap the stream decoder takes a frame start once the next
    # frame proves it: W goes on as a client does)
    md_req, md_resp = metadata(3, b"w-client", [(1, "10.30.0.5", 39092)])
    w.send(True, md_req)
    w.send(False, md_resp)
    # V: not Kafka at all
    v = Conn(cap, (ip(10, 30, 0, 7), 44000), (ip(10, 30, 0, 9), 8080))
    http_req = b"GET / HTTP/1.1\r\nHost: 10.30.0.9\r\n\r\n"
    http_resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    v.send(True, http_req)
    v.send(False, http_resp)
    for c in (x, y, w, v):
        c.close()
    path = os.path.join(tmp, "endpoints.pcap")
    open(path, "wb").write(cap.out)
    return path, len(http_req) + len(http_resp)


def test_endpoints(chk, tmp):
    path, http_bytes = endpoint_capture(tmp)
    rc, out, err = decode(path, [])
    chk.ok(rc == 0, "endpoints: exit %d %s" % (rc, err))
    lines = out.splitlines()

    def has(client, what):
        return any(client in l and what in l and not l.startswith("!") for l in lines)

    chk.ok(has("10.30.0.4:42000", '"y-client" Metadata v1 #2'), "Y not decoded: %r" % out)
    chk.ok(has("10.30.0.3:41000", '"x-client" Metadata v1 #2'),
           "X (rejected before the evidence) not decoded from its kept bytes: %r" % out)
    chk.ok(has("10.30.0.3:41000", '"x-client" Metadata v1 #3'),
           "X's request after the evidence not decoded: %r" % out)
    chk.ok(has("10.30.0.6:43000", '"w-client" Metadata v1 #2') and
           has("10.30.0.6:43000", '"w-client" Metadata v1 #3'),
           "W (to a broker named by a Metadata response) not decoded: %r" % out)
    # the report of what was not decoded: V only
    undec = [l for l in lines if l.startswith("! ") and "not decoded" in l]
    chk.ok(len(undec) == 1 and "1 TCP flow with payload (%d bytes)" % http_bytes in undec[0]
           and "--port" in undec[0], "summary: not-decoded report %r" % undec)
    chk.ok(any(l.startswith("!") and "10.30.0.9:8080" in l and "(--port 8080)" in l
               for l in lines), "summary: the server of the undecoded flow: %r" % lines[-4:])
    chk.ok(lines and "10.30.0.9:8080" in lines[-1], "summary: the report is not at the end")

    # every format: where its decode problems go (stderr for the formats
    # whose every stdout line is a message or a record)
    for fmt in ("verbose", "json", "records", "html"):
        rc, out, err = decode(path, ["-f", fmt])
        tail = err.rstrip("\n").splitlines()[-3:]
        chk.ok(any(l.startswith("kwire: not decoded: 1 TCP flow with payload (%d bytes)" %
                                http_bytes) and "--port" in l for l in tail) and
               any("10.30.0.9:8080: 1 flow, %d bytes (--port 8080)" % http_bytes in l
                   for l in tail), "%s: report on stderr: %r" % (fmt, tail))
        if fmt in ("json", "records"):
            for line in out.splitlines():
                o = json.loads(line)
                chk.ok("direction" in o or "source" in o, "%s: a line that is not a message "
                       "or a record: %r" % (fmt, line[:200]))
    rc, out, err = decode(path, ["-f", "stats"])
    i = out.find("-- TCP flows with payload not decoded as Kafka")
    chk.ok(i >= 0 and "1 TCP flow with payload (%d bytes)" % http_bytes in out[i:] and
           "10.30.0.9:8080: 1 flow" in out[i:], "stats text: %r" % out[i:])
    rc, out, err = decode(path, ["-f", "stats", "--json"])
    try:
        rep = json.loads(out)
    except ValueError:
        rep = {}
    u = rep.get("undecoded_flows", {})
    chk.ok(u.get("flows") == 1 and u.get("bytes") == http_bytes, "stats json: %r" % u)
    chk.ok(rep.get("kafka_flows") == 3, "stats json: kafka_flows %r" % rep.get("kafka_flows"))
    # with --no-detect only port 9092 counts: all four flows are reported
    rc, out, err = decode(path, ["-f", "stats", "--json", "--no-detect"])
    try:
        u = json.loads(out).get("undecoded_flows", {})
    except ValueError:
        u = {}
    chk.ok(u.get("flows") == 4 and len(u.get("servers", [])) == 3,
           "--no-detect: undecoded %r" % u)
    # nothing undecoded: no report line
    rc, out, err = decode(path, ["-p", "29092", "-p", "39092", "-p", "8080", "--no-detect"])
    chk.ok("not decoded" not in out, "everything decoded, yet reported: %r" % out[-300:])


def main():
    chk = Check()
    tmp = tempfile.mkdtemp(prefix="kwire-detect-")
    try:
        test_big_first_frame(chk, tmp)
        test_endpoints(chk, tmp)
    finally:
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    if chk.failed:
        print("%d check(s) failed" % chk.failed)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
