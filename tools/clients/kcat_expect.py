#!/usr/bin/python3
"""Turns kcat's own output into expected-record lines (docs/test-data.md).

  kcat_expect.py produce TOPIC CODEC INPUT DELIVERY_LOG [NAME=VALUE...]
      INPUT: the "key|value" lines kcat -P -K'|' read; DELIVERY_LOG: kcat's
      stderr at -v -v -v, whose "Message delivered to partition P (offset O)"
      lines confirm each message in input order (one partition per run).
  kcat_expect.py fetch JSON_LINES
      kcat -C/-G -J output, one message per line.
"""

import json
import re
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
import expectlib  # noqa: E402

DR = re.compile(r"Message delivered to partition (\d+) \(offset (-?\d+)\)")


def produce(topic, codec, infile, drfile, hdrs):
    with open(infile, "rb") as f:
        recs = [ln.rstrip(b"\n").split(b"|", 1) for ln in f if ln.strip()]
    with open(drfile, "r", errors="replace") as f:
        drs = [DR.search(ln) for ln in f]
    drs = [m for m in drs if m]
    if len(drs) != len(recs):
        sys.exit("kcat_expect: %d records sent, %d delivery reports" % (len(recs), len(drs)))
    headers = []
    for h in hdrs:
        k, _, v = h.partition("=")
        headers.append((k, v.encode()))
    out = sys.stdout
    for (key, value), m in zip(recs, drs):
        out.write(expectlib.line("produce", topic, int(m.group(1)), int(m.group(2)), codec,
                                 [], key, value, headers))


def fetch(jsonfile):
    with open(jsonfile, "r") as f:
        for ln in f:
            ln = ln.strip()
            if not ln.startswith("{"):
                continue
            m = json.loads(ln)
            h = m.get("headers") or []
            headers = [(h[i], None if h[i + 1] is None else h[i + 1].encode())
                       for i in range(0, len(h), 2)]
            sys.stdout.write(expectlib.line("fetch", m["topic"], m["partition"], m["offset"], "*",
                                            [], m["key"], m["payload"], headers))


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
    elif len(sys.argv) == 3 and sys.argv[1] == "fetch":
        fetch(sys.argv[2])
    else:
        sys.exit(__doc__)
