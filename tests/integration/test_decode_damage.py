#!/usr/bin/python3
"""kwire decode on damaged captures made here from good ones
(tests/data/clients/kcat.pcapng and large.pcapng): segments dropped,
reordered, duplicated, a truncated file, random bytes in payloads, a
capture starting mid-connection, a non-capture file.

Every run must exit 0 (1 for the non-capture file, with a clear message)
without sanitizer reports. Reordered and duplicated segments must give
exactly the output of the good capture. For the lossy damages every message
kwire prints must be one the good capture has, byte for byte in its decoded
body (nothing invented from garbage), the losses must be reported, and the
messages of flows the damage did not touch must all be there."""
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

KWIRE = os.environ.get("KWIRE_BIN", "build/kwire")
DATA = os.path.join(os.environ.get("KWIRE_DATA", "tests/data"), "clients")


def read_pcapng(path):
    """(linktype, [(ts_us, bytes)]) of a single-interface pcapng."""
    buf = open(path, "rb").read()
    off, link, res, pkts = 0, None, 1e-6, []
    endian = "<"
    while off + 12 <= len(buf):
        btype, blen = struct.unpack_from(endian + "II", buf, off)
        if btype == 0x0A0D0D0A:
            endian = "<" if buf[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            btype, blen = struct.unpack_from(endian + "II", buf, off)
        body = buf[off + 8:off + blen - 4]
        if btype == 1:
            link = struct.unpack_from(endian + "H", body, 0)[0]
            o = 8
            while o + 4 <= len(body):
                code, ln = struct.unpack_from(endian + "HH", body, o)
                if code == 0:
                    break
                if code == 9:
                    v = body[o + 4]
                    res = 2.0 ** -(v & 0x7f) if v & 0x80 else 10.0 ** -v
                o += 4 + ((ln + 3) & ~3)
        elif btype == 6:
            _, hi, lo, caplen, _ = struct.unpack_from(endian + "IIIII", body, 0)
            ts = (hi << 32) | lo
            pkts.append((int(ts * res * 1e6), body[20:20 + caplen]))
        off += blen
    return link, pkts


def write_pcap(path, link, pkts, cut=None):
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, link))
    for ts, data in pkts:
        out += struct.pack("<IIII", ts // 1000000, ts % 1000000, len(data), len(data)) + data
    if cut is not None:
        out = out[:cut]
    open(path, "wb").write(bytes(out))
    return len(out)


def tcp_info(link, data):
    """(sport, dport, payload offset, payload length) or None."""
    if link != 1 or len(data) < 14 + 20 or data[12:14] != b"\x08\x00":
        return None
    ip = 14
    ihl = (data[ip] & 15) * 4
    if data[ip + 9] != 6:
        return None
    tot = struct.unpack_from(">H", data, ip + 2)[0]
    tcp = ip + ihl
    sport, dport = struct.unpack_from(">HH", data, tcp)
    doff = (data[tcp + 12] >> 4) * 4
    start = tcp + doff
    return sport, dport, start, max(0, ip + tot - start)


def decode(path, ports, fmt="json"):
    args = [KWIRE, "decode", "--format", fmt]
    for p in ports:
        args += ["--port", str(p)]
    p = subprocess.run(args + [path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def key(m):
    return (m["client"], m["direction"], m["correlation_id"], m["api_key"], m["version"],
            json.dumps(m["body"], sort_keys=True))


class Check:
    def __init__(self):
        self.fails = []

    def ok(self, cond, msg):
        if not cond:
            self.fails.append(msg)
        return cond


def main():
    goods = [os.path.join(DATA, f) for f in ("kcat.pcapng", "large.pcapng")]
    goods = [g for g in goods if os.path.exists(g)]
    if not goods:
        print("no client captures")
        return 77
    chk = Check()
    rnd = random.Random(1234)
    tmp = tempfile.mkdtemp(prefix="kwire-damage-")
    total_swaps = [0]
    for good in goods:
        name = os.path.basename(good)
        link, pkts = read_pcapng(good)
        base = os.path.join(tmp, name + ".pcap")
        write_pcap(base, link, pkts)
        rc, out, err = decode(base, [])
        chk.ok(rc == 0, "%s: good capture exit %d" % (name, rc))
        good_msgs = [json.loads(l) for l in out.splitlines()]
        good_keys = {key(m) for m in good_msgs}
        ports = sorted({int(m["broker"].rsplit(":", 1)[1]) for m in good_msgs})
        rc, good_out, good_err = decode(base, ports)
        data_idx = [i for i, (_, d) in enumerate(pkts) if (tcp_info(link, d) or (0, 0, 0, 0))[3] > 0]
        data_set = set(data_idx)
        print("%s: %d packets, %d with payload, %d messages, broker ports %s" %
              (name, len(pkts), len(data_idx), len(good_msgs), ports))

        def run_case(case, damaged, exact=False, touched=None, expect_problem=True, min_frac=0.0,
                     damaged_bytes=False):
            """damaged_bytes: payload bytes were changed; without checksums
            what the touched flows carry now is what kwire must show."""
            path = os.path.join(tmp, "%s-%s.pcap" % (name, case))
            write_pcap(path, link, damaged)
            rc, out, err = decode(path, ports)
            san = [l for l in err.splitlines() if "Sanitizer" in l or "runtime error" in l]
            chk.ok(rc == 0 and not san, "%s %s: exit %d %s" % (name, case, rc, " ".join(san)[:200]))
            if exact:
                # Same messages, same decoded bodies; capture times (and so
                # latencies) may move with the packets that carried them.
                got = sorted(key(json.loads(l)) for l in out.splitlines())
                want = sorted(key(json.loads(l)) for l in good_out.splitlines())
                chk.ok(got == want, "%s %s: messages differ from the good capture" % (name, case))
                chk.ok(err == good_err, "%s %s: other problems reported: %s" % (name, case, err[:300]))
                print("  %s: identical messages" % case)
                return
            msgs = [json.loads(l) for l in out.splitlines()]
            # A response whose request was lost is shown unmatched (api
            # unknown, raw body): it must answer a real message of the flow.
            good_ids = {(m["client"], m["direction"], m["correlation_id"]) for m in good_msgs}
            invented = [m for m in msgs if key(m) not in good_keys and m["client"] not in
                        (touched if damaged_bytes else ()) and not (
                m["api_key"] is None and "raw" in m["body"] and
                (m["client"], m["direction"], m["correlation_id"]) in good_ids)]
            chk.ok(not invented, "%s %s: %d messages not in the good capture, e.g. %s" %
                   (name, case, len(invented), str(invented[:1])[:300]))
            if expect_problem:
                chk.ok("problem" in err or "truncated" in err,
                       "%s %s: the damage was not reported: %s" % (name, case, err[:200]))
            got = {key(m) for m in msgs}
            if touched is not None:
                intact = {key(m) for m in good_msgs if m["client"] not in touched}
                chk.ok(intact <= got, "%s %s: %d messages of untouched flows missing" %
                       (name, case, len(intact - got)))
            chk.ok(len(got) >= min_frac * len(good_keys), "%s %s: only %d of %d messages" %
                   (name, case, len(got), len(good_keys)))
            print("  %s: %d of %d messages, none invented" % (case, len(got), len(good_keys)))

        def client_of(i):
            sport, dport, _, _ = tcp_info(link, pkts[i][1])
            if dport in ports:
                return "127.0.0.1:%d" % sport
            return "127.0.0.1:%d" % dport

        # Reordered: swap neighbouring payload segments of the same flow.
        # Only neighbours within their connection (no packet of either
        # direction between them): a segment cannot overtake the peer's
        # ACK of it, which the reassembler rightly reads as loss.
        re_p = list(pkts)
        swaps = 0
        prev = {}
        for i, (_, d) in enumerate(pkts):
            ti = tcp_info(link, d)
            if not ti:
                continue
            conn = tuple(sorted(ti[:2]))
            j = prev.get(conn)
            prev[conn] = i
            if j is None or ti[3] == 0 or j not in data_set or tcp_info(link, pkts[j][1])[:2] != ti[:2]:
                continue
            if rnd.random() < 0.7 and re_p[j] is pkts[j]:
                re_p[j], re_p[i] = re_p[i], re_p[j]
                prev[conn] = None
                swaps += 1
        total_swaps[0] += swaps
        if swaps:
            run_case("reordered", re_p, exact=True)
        # Duplicated: every payload segment twice.
        dup = []
        for i, p in enumerate(pkts):
            dup.append(p)
            if i in set(data_idx):
                dup.append(p)
        run_case("duplicated", dup, exact=True)
        # Dropped: a few payload segments gone for good.
        drop = set(rnd.sample(data_idx, max(1, len(data_idx) // 15)))
        touched = {client_of(i) for i in drop}
        run_case("dropped", [p for i, p in enumerate(pkts) if i not in drop], touched=touched)
        # Random bytes inside a few payloads (TCP checksums are not verified
        # by kwire, as on a capture with offloaded checksums).
        cor = list(pkts)
        hit = rnd.sample(data_idx, max(1, len(data_idx) // 20))
        for i in hit:
            d = bytearray(cor[i][1])
            _, _, start, ln = tcp_info(link, bytes(d))
            for _ in range(max(1, ln // 8)):
                d[start + rnd.randrange(ln)] = rnd.randrange(256)
            cor[i] = (cor[i][0], bytes(d))
        run_case("corrupted", cor, touched={client_of(i) for i in hit}, expect_problem=False,
                 damaged_bytes=True)
        # Starting mid-connection: the first third of the packets is gone.
        cut = len(pkts) // 3
        run_case("midstream", pkts[cut:], expect_problem=False,
                 min_frac=0.3 if name == "kcat.pcapng" else 0.0)
        # The same without --port: the detector must find the flows from
        # their middle (two requests in a row prove a frame start).
        path = os.path.join(tmp, "%s-midstream.pcap" % name)
        with_ports = decode(path, ports)[1].splitlines()
        rc, out, err = decode(path, [])
        found = [json.loads(l) for l in out.splitlines()]
        chk.ok(rc == 0 and all(key(m) in good_keys or m["api_key"] is None for m in found),
               "%s midstream detected: exit %d or invented messages" % (name, rc))
        chk.ok(len(found) >= 0.9 * len(with_ports), "%s midstream detected: %d messages, %d with --port" %
               (name, len(found), len(with_ports)))
        print("  midstream without --port: %d messages (%d with --port)" % (len(found), len(with_ports)))
        # Truncated file: cut in the middle of a record two thirds in.
        path = os.path.join(tmp, name + "-truncated.pcap")
        full = write_pcap(path, link, pkts)
        write_pcap(path, link, pkts, cut=full * 2 // 3 + 7)
        rc, out, err = decode(path, ports)
        chk.ok(rc == 0, "%s truncated: exit %d" % (name, rc))
        chk.ok("truncated" in err, "%s truncated: not reported: %s" % (name, err[:200]))
        msgs = [json.loads(l) for l in out.splitlines()]
        chk.ok(msgs and all(key(m) in good_keys for m in msgs), "%s truncated: bad messages" % name)
        print("  truncated: %d of %d messages" % (len(msgs), len(good_keys)))

    chk.ok(total_swaps[0] > 0, "no capture had segments to reorder")
    # Not a capture at all, and a missing file: exit 1 with a clear message.
    junk = os.path.join(tmp, "junk.pcap")
    open(junk, "wb").write(b"this is not a capture file\n" * 10)
    for path in (junk, os.path.join(tmp, "missing.pcap")):
        rc, out, err = decode(path, [])
        chk.ok(rc == 1 and err.strip() and not out, "%s: exit %d, stderr %r" % (path, rc, err[:200]))
    # gzip and stdin read the same as the file.
    if goods:
        import gzip
        link, pkts = read_pcapng(goods[0])
        plain = os.path.join(tmp, "plain.pcap")
        write_pcap(plain, link, pkts)
        gz = plain + ".gz"
        with open(plain, "rb") as f, gzip.open(gz, "wb") as g:
            g.write(f.read())
        a = decode(plain, [], "summary")[1]
        b = decode(gz, [], "summary")[1]
        with open(gz, "rb") as f:
            c = subprocess.run([KWIRE, "decode", "-"], stdin=f, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, check=False).stdout.decode()
        chk.ok(a and a == b == c, "gzip / stdin output differs from the plain file")
    for f in chk.fails:
        print("FAIL", f)
    for f in os.listdir(tmp):
        os.unlink(os.path.join(tmp, f))
    os.rmdir(tmp)
    return 1 if chk.fails else 0


if __name__ == "__main__":
    sys.exit(main())
