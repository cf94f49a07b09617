#!/usr/bin/python3
"""bench_audit: what the audit costs a producer going through kwire.

A confluent-kafka producer (N messages of 200 bytes, acks=1) writes to
kwire-mockcluster through `kwire proxy`, once per setup:

  no rules          kwire without a rules file
  audit none        an audit rule that matches the topic, log: none
  audit summary     log: summary, to a JSON-lines file
  audit records     log: records (every record, a header redacted), to a file
  audit kafka       log: records, to a topic of a second mock cluster

and prints msgs/s and MB/s for each, side by side, with the audit lines
written and dropped. It asserts nothing (STYLE.md, "Tests").

    python3 tests/bench/bench_audit.py BUILD_DIR [MESSAGES] [REPS]
"""
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import Producer

MSG = 200


def readline(proc, what, timeout=20):
    buf = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([proc.stdout], [], [], 0.5)
        if not r:
            continue
        c = os.read(proc.stdout.fileno(), 1)
        if not c:
            raise RuntimeError(f"{what} exited")
        if c == b"\n":
            return buf.decode()
        buf += c
    raise RuntimeError(f"timed out waiting for {what}")


def cluster(build, topic):
    mc = subprocess.Popen([os.path.join(build, "kwire-mockcluster"), "--brokers", "1",
                           "--topic", f"{topic}:1"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    boot = None
    while True:
        line = readline(mc, "mock cluster")
        if line.startswith("BOOTSTRAP "):
            boot = line.split()[1]
        elif line == "READY":
            return mc, boot


def metrics(admin):
    out = {}
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            m = re.match(r'^(kwire_audit_records_\w+)\{sink="([^"]*)"\} (\S+)$', line)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(3))
    return out


def run(build, upstream, rules, n):
    args = [os.path.join(build, "kwire"), "proxy", "-u", upstream, "-l", "127.0.0.1:0",
            "--no-log", "--admin", "127.0.0.1:0", "-q"]
    if rules:
        args += ["--rules", rules]
    px = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    listen = admin = None
    while listen is None or admin is None:
        line = readline(px, "kwire proxy")
        if line.startswith("LISTEN "):
            listen = line.split()[1]
        elif line.startswith("ADMIN "):
            admin = line.split()[1]
    p = Producer({"bootstrap.servers": listen, "acks": 1, "linger.ms": 5,
                  "queue.buffering.max.messages": 1000000})
    val = b"v" * MSG
    hdrs = [("authorization", b"secret"), ("trace-id", b"t")]
    p.produce("bench", val, key=b"warm", headers=hdrs)
    p.flush(30)
    t0 = time.monotonic()
    for i in range(n):
        while True:
            try:
                p.produce("bench", val, key=b"k%d" % i, headers=hdrs)
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(120)
    dt = time.monotonic() - t0
    del p  # closes its connections before kwire goes
    time.sleep(0.5)
    m = metrics(admin)
    px.terminate()
    px.wait(30)
    return (n - left) / dt, m


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    tmp = tempfile.mkdtemp(prefix="kwire-bench-audit-")
    mc, boot = cluster(build, "bench")
    mc2, boot2 = cluster(build, "audit")
    base = 'audit:\n  - name: a\n    match: {topic: bench}\n'
    setups = [
        ("no rules", None),
        ("audit none", base + "    log: none\n"),
        ("audit summary", base + "    log: summary\n    to: a.jsonl\n"),
        ("audit records", base + "    log: records\n    redact: {headers: [authorization]}\n"
                                 "    to: a.jsonl\n"),
        ("audit kafka", base + "    log: records\n    redact: {headers: [authorization]}\n"
                               f'    to: {{kafka: audit, bootstrap: "{boot2}"}}\n'),
    ]
    print(f"bench_audit: {n} messages of {MSG} B per run, best of {reps}, through kwire "
          f"to kwire-mockcluster (librdkafka {__import__('confluent_kafka').libversion()[0]})")
    print(f"{'setup':<16} {'msgs/s':>10} {'MB/s':>8} {'vs none':>8} {'lines':>9} {'dropped':>8}")
    first = None
    try:
        for name, rules in setups:
            path = None
            if rules:
                path = os.path.join(tmp, "rules.yaml")
                with open(path, "w") as f:
                    f.write(rules)
            best, bm = 0, {}
            for _ in range(reps):
                r, m = run(build, boot, path, n)
                if r > best:
                    best, bm = r, m
                if os.path.exists(os.path.join(tmp, "a.jsonl")):
                    os.unlink(os.path.join(tmp, "a.jsonl"))
            first = first or best
            print(f"{name:<16} {best:>10.0f} {best * MSG / 1e6:>8.1f} {best / first:>7.0%} "
                  f"{bm.get('kwire_audit_records_total', 0):>9.0f} "
                  f"{bm.get('kwire_audit_records_dropped_total', 0):>8.0f}")
    finally:
        for c in (mc, mc2):
            c.stdin.close()
            c.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
