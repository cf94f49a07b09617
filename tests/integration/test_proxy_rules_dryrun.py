"""Dry run: `kwire decode --rules` on a capture of kwire's client side
reports the same denials the live proxy logged (both mock-cluster peers).

kwire runs with a rules file (`-v`: it logs each refusal with the client,
API, correlation id, rule and error) while dumpcap captures its listeners
on lo. Real clients make it refuse: confluent-kafka and kcat produce to a
topic denied to Produce (and to an allowed one), a consumer asks to join a
denied group, and kafka-python sends one Produce naming an allowed and a
denied topic (a split). Then `kwire decode --rules` runs the same file over
the capture, and its deny actions are compared with the proxy's log: the
same (client address, API, correlation id, rule, error) for every request
kwire answered itself, and for every split the same refused topic.

Needs root (dumpcap on lo); skips (77) without it.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, capture_listeners, check, stop_capture  # noqa: E402

DUMPCAP = shutil.which("dumpcap")
KCAT = shutil.which("kcat")

RULES = """access:
  - name: audit-is-read-only
    match: {api: Produce, topic: "audit.*"}
    deny: TOPIC_AUTHORIZATION_FAILED
  - name: no-secret-groups
    match: {group: "secret-*"}
    deny: true
"""

ANSWERED = re.compile(r"kwire proxy: debug: (\S+): (\w+) v\d+ #(-?\d+) refused by rule '([^']+)' "
                      r"\((\w+)\), answered by kwire")
SPLIT = re.compile(r"kwire proxy: debug: (\S+): (\w+) #(-?\d+): \d+ of \d+ topics refused by "
                   r"rule '([^']+)' \((\w+)\)")


def skip(why):
    print(f"SKIP: {why}", file=sys.stderr)
    sys.exit(SKIP)


def traffic(c):
    from confluent_kafka import Consumer, Producer
    dr = []
    p = Producer({"bootstrap.servers": c.bootstrap, "message.timeout.ms": 20000})
    for t in ("audit.log", "orders"):
        for i in range(3):
            p.produce(t, f"{t}-{i}".encode(), partition=0, on_delivery=lambda e, m: dr.append(e))
    check(p.flush(30) == 0, "confluent-kafka: not every message reported")
    check(sum(1 for e in dr if e is not None) == 3, f"confluent-kafka reports: {dr}")
    r = subprocess.run([KCAT, "-b", c.bootstrap, "-P", "-t", "audit.log", "-p", "0"],
                       input=b"x\n", capture_output=True, timeout=60)
    check(r.returncode != 0, "kcat: the denied produce failed")
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "secret-g",
                     "auto.offset.reset": "earliest"})
    cons.subscribe(["orders"])
    end = time.monotonic() + 20
    seen = None
    while seen is None and time.monotonic() < end:
        m = cons.poll(0.5)
        if m is not None and m.error():
            seen = m.error()
    cons.close()
    check(seen is not None, "the denied group got an error")
    # kafka-python puts every ready batch for a broker into one Produce.
    from kafka import KafkaProducer
    kp = KafkaProducer(bootstrap_servers=c.bootstrap, linger_ms=1000, retries=0, acks="all",
                       api_version_auto_timeout_ms=10000)
    kp.send("orders", b"warm-up", partition=0).get(timeout=30)
    kp.partitions_for("audit.log")
    for rnd in range(3):
        for i in range(6):
            kp.send("orders" if i % 2 == 0 else "audit.log", f"s{rnd}-{i}".encode(), partition=0)
        kp.flush(30)
        if c.metric("kwire_rules_split_total") >= 1:
            break
    kp.close()


def main():
    if os.geteuid() != 0:
        skip("dumpcap on lo needs root (needs: root)")
    if not DUMPCAP or not KCAT:
        skip("no dumpcap or kcat (needs: dumpcap, kcat)")
    try:
        import confluent_kafka  # noqa: F401
        import kafka  # noqa: F401
    except ImportError:
        skip("no confluent_kafka or kafka-python (needs: python3-confluent-kafka, "
             "python3-kafka)")
    tmp = tempfile.mkdtemp(prefix="kwire-dryrun-")
    rules = os.path.join(tmp, "rules.yaml")
    pcap = os.path.join(tmp, "client.pcapng")
    with open(rules, "w") as f:
        f.write(RULES)
    with Cluster(topics=(("orders", 2), ("audit.log", 2)),
                 extra_proxy_args=["--rules", rules, "-v"]) as c:
        cap = capture_listeners(c, pcap)
        try:
            traffic(c)
            time.sleep(1)
        finally:
            stop_capture(cap)
        log = c.proxy_stderr()
        split_count = c.metric("kwire_rules_split_total")
    live = {(m[0], m[1], int(m[2]), m[3], m[4]) for m in ANSWERED.findall(log)}
    live_split = {(m[0], m[1], int(m[2]), m[3], m[4]) for m in SPLIT.findall(log)}
    check(len(live) >= 3, f"live refusals: {sorted(live)}")
    check(any(k[3] == "no-secret-groups" for k in live) and
          any(k[3] == "audit-is-read-only" for k in live), f"both rules refused: {live}")
    check(len(live_split) == split_count and split_count >= 1, f"splits {live_split}")

    r = subprocess.run([c.kwire, "decode", "--rules", rules, "--format", "json", pcap],
                       capture_output=True, timeout=120)
    check(r.returncode == 0, f"kwire decode --rules: {r.returncode} {r.stderr[-500:]!r}")
    acts = [json.loads(line) for line in r.stdout.decode().splitlines()
            if line.startswith("{") and '"action"' in line]
    denies = [a for a in acts if a.get("action") == "deny"]
    dry = {(a["client"], a["api"], a["correlation_id"], a["rule"], a["error"]) for a in denies}
    # A split shows in the dry run as a deny of the refused topic alone.
    dry_split = {k for k in dry if k in live_split}
    check(dry - live_split == live, "the dry run's denials are the proxy's:\n  only live: "
          f"{sorted(live - dry)}\n  only dry: {sorted(dry - live - live_split)}")
    check(dry_split == live_split, f"splits: live {live_split}, dry {dry_split}")
    for a in denies:
        if (a["client"], a["api"], a["correlation_id"], a["rule"], a["error"]) in live_split:
            check(a.get("topic") == "audit.log", f"split topic: {a}")
    print(f"{len(live)} refusals and {len(live_split)} splits, the same in the dry run")
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
