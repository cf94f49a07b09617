#!/usr/bin/python3
"""kwire decode against tshark, the reference decoder.

1. Agreement: for every Kafka PDU tshark decodes in the client captures
   (tests/data/clients) and the public captures ($KWIRE_SHARED/pcaps/public),
   kwire has the same message (client port, direction, correlation id) with
   the same api key and version; for frames holding one PDU that tshark
   did not flag malformed, every topic name and partition id tshark shows
   is in kwire's decoded body, and every record key/value tshark shows is
   among kwire's records of that message (--format records).
   tshark 4.0's known limits (README.txt of the public captures) are
   respected: Produce v9+/Fetch v12+ and legacy message sets are malformed
   there, so only their headers are compared.
2. Every public capture: exit 0, nothing on stderr from a sanitizer, and
   kwire decodes at least as many Kafka messages as tshark with
   -d tcp.port==PORT,kafka.
Skipped (77) without tshark."""
import base64
import collections
import json
import os
import re
import shutil
import subprocess
import sys

KWIRE = os.environ.get("KWIRE_BIN", "build/kwire")
DATA = os.path.join(os.environ.get("KWIRE_DATA", "tests/data"), "clients")
PUBLIC = os.path.join(os.environ.get("KWIRE_SHARED", "../shared"), "pcaps", "public")


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def kwire(fmt, pcap, ports):
    args = [KWIRE, "decode", "--format", fmt]
    for p in ports:
        args += ["--port", str(p)]
    rc, out, err = run(args + [pcap])
    bad = [l for l in err.splitlines() if "Sanitizer" in l or "runtime error" in l]
    return rc, out, err, bad


def walk(v, strings, parts, key=None):
    if isinstance(v, dict):
        for k, x in v.items():
            walk(x, strings, parts, k)
    elif isinstance(v, list):
        for x in v:
            walk(x, strings, parts, key)
    elif isinstance(v, str):
        strings.add(v)
    elif isinstance(v, int) and key and ("Partition" in key or key == "Index"):
        parts.add(v)


def tshark_pdus(pcap, ports):
    args = ["tshark", "-r", pcap, "-n"]
    for p in ports:
        args += ["-d", "tcp.port==%d,kafka" % p]
    args += ["-Y", "kafka", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|",
             "-E", "separator=\t"]
    fields = ["frame.number", "tcp.srcport", "tcp.dstport", "kafka.request_key", "kafka.response_key",
              "kafka.api_version", "kafka.correlation_id", "kafka.topic_name", "kafka.partition_id",
              "kafka.message_key", "kafka.message_value", "kafka.message_magic", "_ws.malformed",
              "_ws.expert.message"]
    for f in fields:
        args += ["-e", f]
    rc, out, err = run(args)
    assert rc == 0, err
    rows = []
    for line in out.splitlines():
        cols = line.split("\t")
        cols += [""] * (len(fields) - len(cols))
        rows.append(dict(zip(fields, [c.split("|") if c else [] for c in cols])))
    return rows


def check_capture(name, pcap, ports):
    """Returns (failures, kwire message count, tshark PDU count)."""
    fails = []
    rc, out, err, bad = kwire("json", pcap, ports)
    if rc != 0 or bad:
        return ["%s: kwire exit %d %s" % (name, rc, " ".join(bad)[:300])], 0, 0
    msgs = collections.defaultdict(list)
    nmsg = 0
    for line in out.splitlines():
        m = json.loads(line)
        nmsg += 1
        cport = int(m["client"].rsplit(":", 1)[1])
        msgs[(cport, m["direction"], m["correlation_id"])].append(m)
    rc, rout, err, bad = kwire("records", pcap, ports)
    if rc != 0 or bad:
        return ["%s: kwire records exit %d %s" % (name, rc, " ".join(bad)[:300])], 0, 0
    recs = collections.defaultdict(set)
    for line in rout.splitlines():
        r = json.loads(line)
        cport = int(r["client"].rsplit(":", 1)[1])
        d = "request" if r["source"] == "produce" else "response"
        for k in ("key", "value"):
            v = r[k]
            if v is not None:
                b = base64.b64decode(v) if r.get(k + "_encoding") == "base64" else v.encode()
                recs[(cport, d, r["correlation_id"])].add(b.hex())

    ntshark = 0
    for row in tshark_pdus(pcap, ports):
        corrs = row["kafka.correlation_id"]
        ntshark += len(corrs)
        src, dst = int(row["tcp.srcport"][0]), int(row["tcp.dstport"][0])
        malformed = bool(row["_ws.malformed"]) or any("Malformed" in e for e in row["_ws.expert.message"])
        is_req = bool(row["kafka.request_key"])
        cport = src if is_req else dst
        direction = "request" if is_req else "response"
        keys = row["kafka.request_key"] or row["kafka.response_key"]
        vers = row["kafka.api_version"]
        for i, c in enumerate(corrs):
            k = (cport, direction, int(c))
            if k not in msgs:
                fails.append("%s frame %s: tshark %s #%s, kwire has no such message" %
                             (name, row["frame.number"][0], direction, c))
                continue
            m = msgs[k][0]
            if len(keys) == len(corrs) and m["api_key"] != int(keys[i]):
                fails.append("%s frame %s: api key tshark %s kwire %s" %
                             (name, row["frame.number"][0], keys[i], m["api_key"]))
            if len(vers) == len(corrs) and m["version"] != int(vers[i]):
                fails.append("%s frame %s: version tshark %s kwire %s" %
                             (name, row["frame.number"][0], vers[i], m["version"]))
        if len(corrs) != 1 or malformed:
            continue
        k = (cport, direction, int(corrs[0]))
        if k not in msgs:
            continue
        body = msgs[k][0]["body"]
        if isinstance(body, dict) and "error" in body and "raw" in body:
            # kwire reports this body as a protocol violation tshark lets
            # through (string-type.pcapng: a null in a non-nullable array
            # of strings); the raw bytes are in the output, the rest is
            # not comparable field by field.
            print("  note: %s frame %s: kwire reports %r" % (name, row["frame.number"][0], body["error"]))
            continue
        strings, parts = set(), set()
        walk(body, strings, parts)
        for t in row["kafka.topic_name"]:
            if t not in strings and t != "[ Null ]":
                fails.append("%s frame %s: topic %r not in kwire's body" % (name, row["frame.number"][0], t))
        for p in row["kafka.partition_id"]:
            if int(p) not in parts:
                fails.append("%s frame %s: partition %s not in kwire's body" % (name, row["frame.number"][0], p))
        if any(x in ("0", "1") for x in row["kafka.message_magic"]):
            continue  # tshark 4.0 mangles legacy message sets
        for f in ("kafka.message_key", "kafka.message_value"):
            for v in row[f]:
                if v and v != "<MISSING>" and v not in recs[k]:
                    fails.append("%s frame %s: record %s %s... not among kwire's records" %
                                 (name, row["frame.number"][0], f, v[:32]))
    return fails, nmsg, ntshark


def public_ports():
    readme = os.path.join(PUBLIC, "README.txt")
    ports = {}
    if not os.path.exists(readme):
        return ports
    for m in re.finditer(r"file: (\S+)\n.*?kafka_port=(\d+)", open(readme, encoding="utf-8").read()):
        ports[m.group(1)] = int(m.group(2))
    return ports


def main():
    if not shutil.which("tshark"):
        print("tshark not installed")
        return 77
    fails = []
    checked = 0
    # Client captures: brokers on random ports, learnt from kwire's own
    # detection, handed to both decoders.
    if os.path.isdir(DATA):
        for f in sorted(os.listdir(DATA)):
            if not f.endswith(".pcapng"):
                continue
            pcap = os.path.join(DATA, f)
            rc, out, err, bad = kwire("json", pcap, [])
            ports = sorted({int(json.loads(l)["broker"].rsplit(":", 1)[1]) for l in out.splitlines()})
            if not ports:
                fails.append("%s: kwire found no Kafka" % f)
                continue
            fl, nk, nt = check_capture(f, pcap, ports)
            fails += fl
            checked += 1
            print("%s: kwire %d messages, tshark %d PDUs, %d disagreements" % (f, nk, nt, len(fl)))
            if nt == 0:
                fails.append("%s: tshark decoded nothing (ports %s)" % (f, ports))
    for rel, port in sorted(public_ports().items()):
        pcap = os.path.join(PUBLIC, rel)
        if not os.path.exists(pcap):
            continue
        fl, nk, nt = check_capture(rel, pcap, [port])
        fails += fl
        checked += 1
        print("%s: kwire %d messages, tshark %d PDUs, %d disagreements" % (rel, nk, nt, len(fl)))
        if nk < nt:
            fails.append("%s: kwire decoded %d messages, tshark %d" % (rel, nk, nt))
    for f in fails:
        print("FAIL", f)
    if not checked:
        return 77
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
