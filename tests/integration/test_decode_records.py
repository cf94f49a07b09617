#!/usr/bin/python3
"""kwire decode --format records against what the clients themselves
reported (tests/data/clients/*.expected, docs/test-data.md): every produced
and every fetched record, with topic, partition, offset, codec, flags, key,
value and headers, exactly, as multisets. Also checks --format records on
the same captures with --topic filters and that the other formats run."""
import base64
import collections
import gzip
import hashlib
import json
import os
import subprocess
import sys

KWIRE = os.environ.get("KWIRE_BIN", "build/kwire")
DATA = os.path.join(os.environ.get("KWIRE_DATA", "tests/data"), "clients")


def load_expected(path):
    rows = []
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            cols = line.split("\t")
            assert len(cols) == 9, (path, line)
            kind, topic, part, off, codec, flags, key, value, headers = cols
            if kind == "fetch":
                # A consumer cannot know the producer's codec or batch flags;
                # of the flags only "aborted" applies to what it read.
                codec = "*"
                flags = "aborted" if "aborted" in flags.split(",") else "-"
            rows.append((kind, topic, int(part), int(off), codec, flags, key, value, headers))
    return rows


def blob(rec, name):
    v = rec[name]
    if v is None:
        return None
    if rec.get(name + "_encoding") == "base64":
        return base64.b64decode(v)
    return v.encode("utf-8")


# Values over 64 KiB are compared by SHA-256 (tools/clients/expectlib.py).
DIGEST_OVER = 64 * 1024


def hexs(b):
    if b is None:
        return "-"
    if len(b) > DIGEST_OVER:
        return "sha256:" + hashlib.sha256(b).hexdigest()
    return b.hex()


def kwire_rows(pcap, extra=()):
    out = subprocess.run([KWIRE, "decode", "--format", "records", *extra, pcap],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if out.returncode != 0:
        sys.exit("kwire failed on %s: %s" % (pcap, out.stderr.decode(errors="replace")))
    rows = []
    for line in out.stdout.decode("utf-8").splitlines():
        rec = json.loads(line)
        for k in ("source", "ts", "client", "broker", "topic", "partition", "offset", "timestamp",
                  "key", "value", "headers", "codec", "producer_id", "sequence"):
            assert k in rec, (k, line)
        kind = rec["source"]
        hdrs = []
        for h in rec["headers"]:
            hv = None if h["value"] is None else (
                base64.b64decode(h["value"]) if h.get("value_encoding") == "base64"
                else h["value"].encode("utf-8"))
            hdrs.append("%s=%s" % (h["key"], hexs(hv)))
        if kind == "produce":
            flags = []
            if rec["producer_id"] >= 0:
                flags.append("idempotent")
            if rec.get("transactional"):
                flags.append("txn")
            if rec.get("aborted"):
                flags.append("aborted")
            codec = rec["codec"]
        else:
            flags = ["aborted"] if rec.get("aborted") else []
            codec = "*"
        rows.append((kind, rec["topic"], rec["partition"], rec["offset"], codec,
                     ",".join(flags) or "-", hexs(blob(rec, "key")), hexs(blob(rec, "value")),
                     ";".join(hdrs) or "-"))
    return rows


def diff(name, want, got):
    w, g = collections.Counter(want), collections.Counter(got)
    if w == g:
        return 0
    print("%s: records differ" % name)
    for r in sorted((w - g).elements(), key=str)[:20]:
        print("  missing:", r[:6], r[6][:40], r[7][:40], r[8][:60])
    for r in sorted((g - w).elements(), key=str)[:20]:
        print("  extra:  ", r[:6], r[6][:40], r[7][:40], r[8][:60])
    return 1


def data_file(s, ext):
    """DATA/s.ext, or DATA/s.ext.gz (big values: docs/test-data.md), or None."""
    for name in (s + ext, s + ext + ".gz"):
        if os.path.exists(os.path.join(DATA, name)):
            return os.path.join(DATA, name)
    return None


def main():
    files = os.listdir(DATA) if os.path.isdir(DATA) else []
    scenarios = sorted({f.split(".expected")[0] for f in files
                        if f.endswith(".expected") or f.endswith(".expected.gz")})
    scenarios = [s for s in scenarios if data_file(s, ".pcapng")]
    if not scenarios:
        print("no client captures in", DATA)
        return 77
    fails = 0
    # Every scenario tools/capture-clients.sh makes must be there.
    for s in ("kcat", "kafka-python", "confluent", "large", "big", "kafkajs", "sarama"):
        if s not in scenarios:
            print("%s: missing from %s" % (s, DATA))
            fails += 1
    for s in scenarios:
        pcap = data_file(s, ".pcapng")
        want = load_expected(data_file(s, ".expected"))
        got = kwire_rows(pcap)
        assert want, s
        fails += diff(s, want, got)
        # The records go through the topic filter one by one.
        topics = sorted({r[1] for r in want})
        got_t = kwire_rows(pcap, ("--topic", topics[0]))
        fails += diff(s + " --topic " + topics[0], [r for r in want if r[1] == topics[0]], got_t)
        got_none = kwire_rows(pcap, ("--topic", "no-such-topic-*"))
        if got_none:
            print("%s: --topic no-such-topic-* printed %d records" % (s, len(got_none)))
            fails += 1
        # With detection off and no port given, nothing is Kafka (brokers are
        # on random ports): proves the detector is what finds these flows.
        if kwire_rows(pcap, ("--no-detect",)):
            print("%s: --no-detect still decoded records on non-9092 ports" % s)
            fails += 1
        print("%s: %d records ok" % (s, len(got)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
