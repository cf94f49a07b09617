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

A second run does the same for the rewrite, mirror and tap sections
(check_rewrite_mirror_tap): a tenant's names mapped and refused, records
rewritten (headers, JSON masks, on_error pass and refuse; on Produce and
on a consumer's Fetch answers: those in a capture of kwire's upstream side,
where they are as the cluster sent them), a mirror to the
same cluster, a Produce answered NOT_LEADER_OR_FOLLOWER (the mirror skips
it), a committed and an aborted transaction, and a tap rule; the dry run's lines are checked against what the
proxy did: its /metrics, the records a direct consumer reads from the
cluster, the clients' errors and the tap file's pairs.

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


RW_RULES = """rewrite:
  - name: tenant
    match: {{client_id: "tenant-*"}}
    topics: {{prefix: t1., alias: {{old: t1.new}}}}
  - name: tag-and-mask
    match: {{api: Produce, topic: orders}}
    headers:
      add: {{x-kwire: "${{client_id}}"}}
      remove: [secret]
    mask:
      - {{path: user.email, hash: true}}
      - {{path: card, drop: true}}
    hash_key_file: {key}
  - name: reader-mask
    match: {{api: Fetch, client_id: "reader-*", topic: orders}}
    headers: {{add: {{x-read: "yes"}}}}
    mask: [{{path: n, replace: "0"}}]
  - name: strict
    match: {{api: Produce, topic: strict}}
    mask: [{{path: ssn, replace: "***"}}]
    on_error: refuse
mirror:
  - name: dr
    match: {{topic: "*orders"}}
    topic: "dr.{{topic}}"
    to: {{bootstrap: "{upstream}"}}
tap:
  - name: tapped
    match: {{client_id: "tap-*"}}
    to: {tap}
"""

JSON_N, PLAIN_N, TENANT_N, X_N, TXN_COMMIT, TXN_ABORT = 10, 5, 4, 3, 3, 2


def rw_traffic(c):
    from confluent_kafka import Producer

    def produce(cid, topic, values, headers=None, part=0, **conf):
        dr = []
        p = Producer({"bootstrap.servers": c.bootstrap, "client.id": cid,
                      "message.timeout.ms": 20000, **conf})
        for v in values:
            p.produce(topic, v, partition=part, headers=headers,
                      on_delivery=lambda e, m: dr.append(e))
        check(p.flush(30) == 0, f"{cid}: not every message reported")
        return dr

    recs = [json.dumps({"user": {"email": f"u{i}@x.org", "id": i}, "card": "4111",
                        "n": i}).encode() for i in range(JSON_N)]
    dr = produce("app", "orders", recs, headers=[("secret", b"s"), ("keep", b"k")])
    dr += produce("app", "orders", [f"plain {i}".encode() for i in range(PLAIN_N)])
    check(all(e is None for e in dr), f"orders: {dr}")
    dr = produce("app", "strict", [b'{"ssn": "1"}', b'{"ssn": "2"}'])
    check(all(e is None for e in dr), f"strict JSON: {dr}")
    dr = produce("app", "strict", [b"not json"])
    check(len(dr) == 1 and dr[0] is not None and dr[0].name() == "INVALID_RECORD",
          f"strict non-JSON: {dr}")
    dr = produce("tenant-a", "orders", [f"t{i}".encode() for i in range(TENANT_N)])
    check(all(e is None for e in dr), f"tenant orders: {dr}")
    dr = produce("tenant-a", "new", [b"nope"], **{"message.timeout.ms": 3000})
    check(len(dr) == 1 and dr[0] is not None, f"tenant new: {dr}")
    # A Produce to a partition whose leader moved: NOT_LEADER_OR_FOLLOWER,
    # then the retry to the new leader (the mirror copies the retry only).
    from confluent_kafka import Producer as P2
    p = P2({"bootstrap.servers": c.bootstrap, "client.id": "mover",
            "topic.metadata.refresh.interval.ms": 600000, "linger.ms": 0})
    p.produce("xorders", b"warm", partition=0)
    check(p.flush(30) == 0, "xorders warm-up")
    c.command("leader xorders 0 2")
    for i in range(X_N):
        p.produce("xorders", f"x{i}".encode(), partition=0)
    check(p.flush(30) == 0, "xorders after the leader moved")
    # Transactions: the mirror copies the committed one, not the aborted.
    tp = P2({"bootstrap.servers": c.bootstrap, "client.id": "txn-p",
             "transactional.id": "dryrun-txn", "linger.ms": 5})
    tp.init_transactions(30)
    for n, commit in ((TXN_COMMIT, True), (TXN_ABORT, False)):
        tp.begin_transaction()
        for i in range(n):
            tp.produce("xorders", f"txn{i}".encode(), partition=0)
        tp.flush(30)
        (tp.commit_transaction if commit else tp.abort_transaction)(30)
    r = subprocess.run([KCAT, "-b", c.bootstrap, "-P", "-t", "other", "-p", "0",
                        "-X", "client.id=tap-k"], input=b"a\nb\n", capture_output=True,
                       timeout=60)
    check(r.returncode == 0, f"kcat tap-k: {r.stderr!r}")
    # A consumer whose Fetch responses a records rule rewrites.
    from confluent_kafka import Consumer, TopicPartition
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "reader",
                     "client.id": "reader-1", "enable.auto.commit": False})
    cons.assign([TopicPartition("orders", 0, 0)])
    read = []
    end = time.monotonic() + 20
    while len(read) < JSON_N + PLAIN_N and time.monotonic() < end:
        m = cons.poll(0.5)
        if m is not None and not m.error():
            read.append((m.headers() or [], m.value()))
    cons.close()
    check(len(read) == JSON_N + PLAIN_N, f"reader read {len(read)}")
    return read


def upstream_records(bootstrap, topic):
    """(headers, value) of every record of topic, read from the cluster."""
    from confluent_kafka import Consumer, TopicPartition
    cons = Consumer({"bootstrap.servers": bootstrap, "group.id": "dryrun-check",
                     "enable.auto.commit": False})
    md = cons.list_topics(topic, timeout=10).topics[topic]
    out = []
    for part in md.partitions:
        lo, hi = cons.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
        if hi <= lo:
            continue
        cons.assign([TopicPartition(topic, part, lo)])
        while len(out) < 10000:
            m = cons.poll(5)
            check(m is not None and not m.error(), f"reading {topic}[{part}]: {m}")
            out.append((m.headers() or [], m.value()))
            if m.offset() >= hi - 1:
                break
    cons.close()
    return out


def reload_rules(c, path, text):
    before = c.metric("kwire_rules_reloads_total")
    with open(path + ".new", "w") as f:
        f.write(text)
    os.rename(path + ".new", path)
    deadline = time.monotonic() + 10
    while c.metric("kwire_rules_reloads_total") <= before:
        check(time.monotonic() < deadline, "the rules were not reloaded")
        time.sleep(0.1)


def capture_upstream(c, path):
    """dumpcap of the brokers' own ports (kwire's upstream side), where the
    Fetch answers are as the cluster sent them; stop with stop_capture."""
    flt = " or ".join(f"tcp port {p}" for p in sorted(c.real_ports()))
    cap = subprocess.Popen([DUMPCAP, "-q", "-i", "lo", "-B", "64", "-f", flt, "-w", path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while not (os.path.exists(path) and os.path.getsize(path) > 0):
        if cap.poll() is not None or time.monotonic() > deadline:
            cap.kill()
            skip("dumpcap could not capture the upstream side (needs: root, dumpcap)")
        time.sleep(0.1)
    time.sleep(0.5)
    return cap


def dry_run(c, rules, pcap):
    r = subprocess.run([c.kwire, "decode", "--rules", rules, "--format", "json", pcap],
                       capture_output=True, timeout=120)
    check(r.returncode == 0, f"kwire decode --rules: {r.returncode} {r.stderr[-500:]!r}")
    lines = [json.loads(x) for x in r.stdout.decode().splitlines() if x.startswith("{")]
    return [a for a in lines if "action" in a], [a for a in lines if "action" not in a][-1]["rules"]


def check_rewrite_mirror_tap():
    tmp = tempfile.mkdtemp(prefix="kwire-dryrun-rw-")
    rules, key = os.path.join(tmp, "rules.yaml"), os.path.join(tmp, "mask.key")
    pcap, tap = os.path.join(tmp, "client.pcapng"), os.path.join(tmp, "tap.pcapng")
    upcap = os.path.join(tmp, "upstream.pcapng")
    with open(key, "w") as f:
        f.write("0123456789abcdef0123456789abcdef\n")
    with open(rules, "w") as f:
        f.write("access: []\n")
    topics = (("orders", 2), ("t1.orders", 2), ("t1.new", 1), ("strict", 1), ("xorders", 1),
              ("other", 1), ("dr.orders", 2), ("dr.t1.orders", 2), ("dr.xorders", 1))
    with Cluster(topics=topics, log_format="text", extra_proxy_args=["--rules", rules]) as c:
        # The mirror's cluster is the same mock cluster, known only now.
        text = RW_RULES.format(key=key, upstream=c.upstream, tap=tap)
        reload_rules(c, rules, text)
        cap = capture_listeners(c, pcap)
        ucap = capture_upstream(c, upcap)
        try:
            read = rw_traffic(c)
            time.sleep(1)
        finally:
            stop_capture(cap)
            stop_capture(ucap)
        deadline = time.monotonic() + 20
        while c.metric("kwire_mirror_queue_bytes") > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        live = {k: c.metric(f"kwire_rewrite_{k}_total") for k in ("records", "passed", "refused")}
        live["mirrored"] = c.metric("kwire_mirror_records_mirrored_total")
        live["unacked"] = c.metric("kwire_mirror_records_skipped_total",
                                   reason="unacknowledged")
        live["aborted"] = c.metric("kwire_mirror_records_skipped_total", reason="aborted")
        up = {t: upstream_records(c.upstream, t) for t in ("orders", "t1.orders")}
        dr = {t: len(upstream_records(c.upstream, "dr." + t))
              for t in ("orders", "t1.orders", "xorders")}
        check(c.stop_proxy() == 0, "kwire proxy did not exit 0")
        acts, summary = dry_run(c, rules, pcap)
        up_acts, _ = dry_run(c, rules, upcap)

    def total(action, rule, field="records", **match):
        return sum(a.get(field, 0) for a in acts if a["action"] == action and a["rule"] == rule
                   and all(a.get(k) == v for k, v in match.items()))

    # Names: the tenant's orders is t1.orders, where the cluster has them;
    # "new" reads back as the alias "old": outside the namespace, refused.
    maps = [a for a in acts if a["action"] == "map" and a["rule"] == "tenant"]
    check(any(a["api"] == "Produce" and {"kind": "topic", "client": "orders",
                                         "cluster": "t1.orders"} in a["names"] for a in maps),
          f"no Produce mapped orders -> t1.orders: {maps}")
    check(len(up["t1.orders"]) == TENANT_N, f"t1.orders holds {len(up['t1.orders'])}")
    refs = [a for a in acts if a["action"] == "refuse" and a["rule"] == "tenant"]
    check(refs and all(a["error"] == "TOPIC_AUTHORIZATION_FAILED" and
                       a["names"] == [{"kind": "topic", "client": "new", "outside": True}]
                       for a in refs), f"tenant refusals: {refs}")
    # Records: what a consumer of the cluster reads is what the dry run said.
    rw = [a for a in acts if a["action"] == "rewrite" and a["rule"] == "tag-and-mask"]
    hdr = {}
    fields = {}
    for a in rw:
        for h in a["headers"]:
            for k in ("added", "replaced", "removed"):
                hdr[(h["name"], k)] = hdr.get((h["name"], k), 0) + h[k]
        for f in a["fields"]:
            fields[(f["path"], f["done"])] = fields.get((f["path"], f["done"]), 0) + f["values"]
    stored = up["orders"] + up["t1.orders"]
    with_tag = sum(1 for h, _ in stored if any(k == "x-kwire" for k, _ in h))
    check(with_tag == len(stored) == JSON_N + PLAIN_N + TENANT_N and
          hdr.get(("x-kwire", "added")) == with_tag,
          f"x-kwire: stored {with_tag} of {len(stored)}, dry run {hdr}")
    check(not any(k == "secret" for h, _ in stored for k, _ in h) and
          hdr.get(("secret", "removed")) == JSON_N and ("keep", "removed") not in hdr,
          f"secret removed: dry run {hdr}")
    hashed = sum(1 for _, v in stored if v.startswith(b"{") and
                 re.fullmatch(r"[0-9a-f]{64}", json.loads(v)["user"]["email"]))
    no_card = sum(1 for _, v in stored if v.startswith(b"{") and "card" not in json.loads(v))
    check(fields == {("user.email", "hashed"): hashed, ("card", "dropped"): no_card} and
          hashed == JSON_N == no_card, f"fields: stored {hashed}/{no_card}, dry run {fields}")
    # Fetch: what the consumer read is what the dry run said of the answers
    # as the cluster sent them (the client side shows them rewritten).
    fr = [a for a in up_acts if a["action"] == "rewrite" and a["rule"] == "reader-mask"]
    check(fr and all(a["direction"] == "response" and a["client_id"] == "reader-1" and
                     a["topic"] == "orders" for a in fr), f"Fetch rewrites: {fr}")
    tagged = sum(1 for h, _ in read if ("x-read", b"yes") in h)
    zeroed = sum(1 for _, v in read if v.startswith(b"{") and json.loads(v)["n"] == "0")
    check(tagged == JSON_N + PLAIN_N == sum(a["changed"] for a in fr) and
          sum(h["added"] for a in fr for h in a["headers"] if h["name"] == "x-read") == tagged
          and sum(f["values"] for a in fr for f in a["fields"]
                  if f["path"] == "n" and f["done"] == "replaced") == zeroed == JSON_N,
          f"Fetch: read {tagged} tagged, {zeroed} masked; dry run {fr}")
    changed = sum(a["changed"] for a in acts if a["action"] == "rewrite" and
                  a["direction"] == "request") + sum(a["changed"] for a in fr)
    check(changed == live["records"], f"records changed: dry {changed}, live {live}")
    passed = sum(a["passed"] for a in acts if a["action"] == "pass" and
                 a["direction"] == "request") + \
        sum(a["passed"] for a in up_acts if a["action"] == "pass" and a["rule"] == "reader-mask")
    # Not JSON: the app's and the tenant's plain Produce records, and the
    # app's again in the reader's Fetch.
    check(passed == live["passed"] == 2 * PLAIN_N + TENANT_N,
          f"passed: dry {passed}, live {live}")
    ref = [a for a in acts if a["action"] == "refuse" and a["rule"] == "strict"]
    check(len(ref) == live["refused"] == 1 and ref[0]["error"] == "INVALID_RECORD" and
          ref[0]["topic"] == "strict", f"strict: dry {ref}, live {live}")
    # Mirror: what it copied, where, and the attempt it skipped.
    mirrored = total("mirror", "dr")
    check(mirrored == live["mirrored"] == sum(dr.values()),
          f"mirrored: dry {mirrored}, live {live}, on the cluster {dr}")
    for t in dr:
        check(total("mirror", "dr", to_topic="dr." + t) == dr[t],
              f"dr.{t}: dry {total('mirror', 'dr', to_topic='dr.' + t)}, cluster {dr[t]}")
    skipped = total("skip", "dr", reason="unacknowledged")
    check(skipped == live["unacked"] and skipped >= 1,
          f"unacknowledged: dry {skipped}, live {live}")
    check(all(p.get("error") == "NOT_LEADER_OR_FOLLOWER" for a in acts
              if a["action"] == "skip" and a["reason"] == "unacknowledged"
              for p in a["partitions"]), "skip reasons")
    # The transactions: held at their Produce, then committed or aborted.
    held = total("hold", "dr", client_id="txn-p")
    committed = total("mirror", "dr", api="EndTxn", transaction="committed")
    aborted = total("skip", "dr", api="EndTxn", reason="aborted")
    check(held == TXN_COMMIT + TXN_ABORT and committed == TXN_COMMIT and
          aborted == live["aborted"] == TXN_ABORT,
          f"transactions: held {held}, committed {committed}, aborted {aborted}, live {live}")
    # Tap: the pairs in the rule's file are the requests the dry run taps.
    r = subprocess.run([c.kwire, "decode", "--format", "json", tap], capture_output=True,
                       timeout=60)
    check(r.returncode == 0, f"kwire decode of the tap: {r.stderr[-300:]!r}")
    in_tap = {(o["client"], o["api"], o["correlation_id"])
              for o in map(json.loads, r.stdout.decode().splitlines())
              if o.get("direction") == "request"}
    dry_tap = {(a["client"], a["api"], a["correlation_id"]) for a in acts
               if a["action"] == "tap"}
    check(in_tap and dry_tap == in_tap and any(k[1] == "Produce" for k in in_tap),
          f"tap: dry {sorted(dry_tap)}\n in the file {sorted(in_tap)}")
    by_rule = {e["rule"]: e for e in summary["by_rule"]}
    check(by_rule["tapped"]["matched"] == len(in_tap) and by_rule["dr"]["records"] == mirrored,
          f"summary: {by_rule}")
    print(f"rewrite {changed} records, passed {passed}, mirror {mirrored} (+{skipped} skipped),"
          f" tap {len(in_tap)} pairs: the dry run matches the proxy")


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
    check_rewrite_mirror_tap()
    print("2 passed, 0 failed")


if __name__ == "__main__":
    main()
