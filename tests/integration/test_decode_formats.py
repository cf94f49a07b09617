#!/usr/bin/python3
"""kwire decode: every format and filter on the client captures, checked
against each other and against the .expected files; --help true to the
code; kwire sniff on lo against a real mock cluster and kcat (when root,
kcat and the mock cluster are there)."""
import json
import os
import re
import signal
import subprocess
import sys
import time

KWIRE = os.environ.get("KWIRE_BIN", "build/kwire")
BUILD = os.environ.get("KWIRE_BUILD", os.path.dirname(KWIRE))
SRC = os.environ.get("KWIRE_SRC", ".")
DATA = os.path.join(os.environ.get("KWIRE_DATA", "tests/data"), "clients")
fails = []


def check(cond, msg):
    if not cond:
        fails.append(msg)
        print("FAIL", msg)


def kw(*args, stdin=None):
    p = subprocess.run([KWIRE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin,
                       check=False)
    err = p.stderr.decode("utf-8", "replace")
    check("Sanitizer" not in err and "runtime error" not in err, "sanitizer: %s" % err[:300])
    return p.returncode, p.stdout.decode("utf-8", "replace"), err


def summary_lines(out):
    return [l for l in out.splitlines() if l and not l.startswith("!")]


def main():
    kcat = os.path.join(DATA, "kcat.pcapng")
    conf = os.path.join(DATA, "confluent.pcapng")
    if not os.path.exists(kcat) or not os.path.exists(conf):
        print("no client captures")
        return 77

    rc, out, _ = kw("decode", "-f", "json", kcat)
    msgs = [json.loads(l) for l in out.splitlines()]
    reqs = [m for m in msgs if m["direction"] == "request"]
    resps = [m for m in msgs if m["direction"] == "response"]
    for m in msgs:
        for k in ("ts", "client", "broker", "direction", "api_key", "api", "version", "correlation_id",
                  "client_id", "body"):
            check(k in m, "json: no %s in %s" % (k, str(m)[:100]))
    check(all("latency_us" in m for m in resps), "json: latency_us missing on a response")
    check(all(isinstance(m["latency_us"], int) and m["latency_us"] >= 0 for m in resps),
          "json: bad latency")
    produce = [m for m in reqs if m["api"] == "Produce"]
    check(len(produce) == 7, "json: %d Produce requests, want 7" % len(produce))
    # Record batches are decoded inside the JSON body.
    check(all("kcat-codecs" in json.dumps(m["body"]) or "kcat-group" in json.dumps(m["body"])
              for m in produce), "json: produce bodies lack their topics")

    # summary: one line per pair, topics with records, unanswered shown.
    rc, out, _ = kw("decode", kcat)
    lines = summary_lines(out)
    check(rc == 0 and len(lines) == len(reqs), "summary: %d lines for %d requests" % (len(lines), len(reqs)))
    prod_lines = [l for l in lines if " Produce v7 " in l]
    check(len(prod_lines) == 7, "summary: %d produce lines" % len(prod_lines))
    check(any(re.search(r"kcat-codecs\[\d\]:3rec/\d+B@0 ", l) for l in prod_lines),
          "summary: no 'kcat-codecs[p]:3rec/NB@0' in %s" % prod_lines[:1])
    check(any("(no response)" in l for l in lines), "summary: the unanswered Fetch is not shown")
    check(all(re.search(r"\d+\.\d{3}ms$|\(no response\)$", l) for l in lines), "summary: latency missing")

    # Filters.
    rc, out, _ = kw("decode", "--api", "produce,1", kcat)
    fl = summary_lines(out)
    check(fl and all(" Produce v" in l or " Fetch v" in l for l in fl), "--api: other APIs shown")
    check(len(fl) == sum(1 for m in reqs if m["api_key"] in (0, 1)), "--api: count")
    rc, out, err = kw("decode", "--api", "NoSuchApi", kcat)
    check(rc == 2 and "NoSuchApi" in err, "--api with a bad name: exit %d" % rc)
    rc, out, _ = kw("decode", "--topic", "kcat-gr*", kcat)
    fl = summary_lines(out)
    check(fl and all("kcat-group" in l for l in fl), "--topic: other topics shown")
    rc, out, _ = kw("decode", "--client-id", "nomatch*", kcat)
    check(not summary_lines(out), "--client-id nomatch*: lines shown")
    rc, out, _ = kw("decode", "--client-id", "rd*", "--api", "Metadata", kcat)
    check(len(summary_lines(out)) == sum(1 for m in reqs if m["api_key"] == 3), "--client-id rd*")
    rc, out, _ = kw("decode", "--errors", kcat)
    fl = summary_lines(out)
    check(fl and all("UNSUPPORTED_VERSION" in l for l in fl), "--errors: %s" % fl[:2])
    check(len(fl) == 17, "--errors: %d lines, want the 17 ApiVersions v3 refusals" % len(fl))
    rc, out, _ = kw("decode", "-f", "json", "--errors", kcat)
    check(len(out.splitlines()) == 34, "--errors in json: both halves of 17 pairs")

    # verbose: the whole tree, records included.
    rc, out, _ = kw("decode", "-f", "verbose", "--api", "Produce", kcat)
    check(rc == 0 and "TopicData" in out and "key-none-0" in out, "verbose: no tree or no records")

    # stats, text and JSON, agree with the other formats and the .expected file.
    rc, out, _ = kw("decode", "-f", "stats", "--json", conf)
    st = json.loads(out)
    check(st["apis"]["Produce"]["requests"] == sum(
        1 for l in kw("decode", "-f", "json", "--api", "Produce", conf)[1].splitlines()
        if json.loads(l)["direction"] == "request"), "stats: Produce count")
    exp = [l.split("\t") for l in open(os.path.join(DATA, "confluent.expected")) if l[0] != "#"]
    for t in ("cf-idem", "cf-txn"):
        n = sum(1 for e in exp if e[0] == "produce" and e[1] == t)
        check(st["topics"][t]["produced_records"] == n, "stats: %s produced %s, want %d" %
              (t, st["topics"][t]["produced_records"], n))
    check("cf-grp" in st["groups"] and st["groups"]["cf-grp"]["members"], "stats: group cf-grp and members")
    check(st["apis"]["Produce"]["latency"]["max_us"] >= st["apis"]["Produce"]["latency"]["p50_us"] > 0,
          "stats: latency")
    check(st["client_ids"]["cf-txn"]["produced_records"] == 5, "stats: per client id")
    rc, out, _ = kw("decode", "-f", "stats", conf)
    for sec in ("requests per API", "errors", "topics", "client ids", "consumer groups", "busiest clients",
                "gaps and decode problems"):
        check(sec in out, "stats text: no section %r" % sec)
    rc, out, _ = kw("decode", "--stats", kcat)
    check("kcat-codecs" in out and "== kwire capture statistics" in out, "--stats after summary")

    # Bad input and usage.
    rc, out, err = kw("decode", "-f", "nosuch", kcat)
    check(rc == 2 and "nosuch" in err, "bad format: exit %d" % rc)
    rc, out, err = kw("decode")
    check(rc == 2, "no file: exit %d" % rc)
    rc, out, err = kw("decode", "/nonexistent/x.pcap")
    check(rc == 1 and "x.pcap" in err, "missing file: exit %d %s" % (rc, err))
    with open(kcat, "rb") as f:
        rc, out, _ = kw("decode", "-", stdin=f)
    check(rc == 0 and len(summary_lines(out)) == len(reqs), "stdin")

    # --help names every option the code parses, and nothing more.
    src = open(os.path.join(SRC, "cli", "cmd-decode.c"), encoding="utf-8").read()
    longs = set(re.findall(r'\{"([a-z-]+)", (?:no|required)_argument', src))
    for cmd, skip in (("decode", {"interface", "snaplen"}), ("sniff", set())):
        rc, out, _ = kw(cmd, "--help")
        check(rc == 0, "%s --help exit %d" % (cmd, rc))
        for o in longs - skip:
            check("--" + o in out, "%s --help does not mention --%s" % (cmd, o))
        for o in set(re.findall(r"--([a-z][a-z-]+)", out)) - longs:
            check(False, "%s --help mentions --%s which the code does not parse" % (cmd, o))
    rc, out, err = kw("sniff")
    check(rc == 2 and "-i" in err, "sniff without -i: exit %d" % rc)
    rc, out, err = kw("sniff", "-i", "nosuchif0")
    check(rc == 1 and "nosuchif0" in err, "sniff on a missing interface: exit %d %s" % (rc, err[:200]))

    sniff_live()
    return 1 if fails else 0


def sniff_live():
    # The peer's cluster (KWIRE_PEER, docs/peers.md): on 2.12 kcat produces
    # Produce v10 through ctest's LD_LIBRARY_PATH.
    mock = os.environ.get("KWIRE_MOCKCLUSTER") or os.path.join(BUILD, "kwire-mockcluster")
    if os.geteuid() != 0 or not os.path.exists(mock) or subprocess.run(
            ["which", "kcat"], stdout=subprocess.DEVNULL, check=False).returncode:
        print("skipping the live sniff (needs root, kcat and kwire-mockcluster)")
        return
    mc = subprocess.Popen([mock, "--brokers", "1", "--topic", "sniffed:1"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
    sn = None
    try:
        boot, port = None, None
        for line in mc.stdout:
            if line.startswith("BOOTSTRAP "):
                boot = line.split()[1]
            if line.startswith("BROKER "):
                port = line.split()[2].rsplit(":", 1)[1]
            if line.startswith("READY"):
                break
        check(boot and port, "mock cluster did not start")
        sn = subprocess.Popen([KWIRE, "sniff", "-i", "lo", "-f", "records", "tcp", "port", port],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.5)
        subprocess.run(["kcat", "-P", "-b", boot, "-t", "sniffed", "-p", "0", "-K:"],
                       input=b"k1:live-one\nk2:live-two\n", check=False, timeout=30,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        sn.send_signal(signal.SIGINT)
        out, err = sn.communicate(timeout=30)
        sn = None
        recs = [json.loads(l) for l in out.decode().splitlines()]
        vals = sorted(r["value"] for r in recs if r["source"] == "produce" and r["topic"] == "sniffed")
        check(vals == ["live-one", "live-two"], "sniff: produced records %s (stderr %s)" % (vals, err[:300]))
        print("sniff on lo: %d records" % len(recs))
    finally:
        if sn:
            sn.kill()
            sn.wait()
        mc.stdin.close()
        try:
            mc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            mc.kill()
            mc.wait()


if __name__ == "__main__":
    sys.exit(main())
