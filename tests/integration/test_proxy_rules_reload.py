"""kwire proxy --rules: the rules file replaced 100 times under a producer
running at full speed (both mock-cluster peers).

A confluent-kafka producer (acks=all) writes numbered messages to topic
`load` as fast as it can, through kwire, while the rules file is replaced
(a new file renamed over it, then SIGHUP: both reload paths) 100 times,
alternating a rule that denies Produce to `load` and one that allows it;
after each replacement the test waits until /rules shows the new file's
SHA-256. In the middle a broken file is put in place: the reload fails
(counted, logged with FILE:LINE:COL) and the rules in force stay, so the
producer keeps getting what they say.

Then: every message got exactly one delivery report, either success or
TOPIC_AUTHORIZATION_FAILED (the rule's error), or was refused with that
error by produce() itself (librdkafka remembers a topic's authorization
error until its next metadata refresh), both happened many times; or,
never sent, failed by librdkafka with its local _UNKNOWN_PARTITION: a
Produce answered TOPIC_AUTHORIZATION_FAILED puts the topic in an error
state with no partitions (librdkafka's rd_kafka_topic_set_error), and 2.12
can fail messages queued for the forced partition meanwhile that way,
though kwire's Metadata answers kept the partition all along;
kwire accepted no new connection and the client saw no transport error
(zero disconnections); and a consumer connected straight to the cluster
(not through kwire) reads exactly the acknowledged messages, each once:
none lost, none duplicated, none of the refused.
"""
import hashlib
import json
import os
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, check  # noqa: E402

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
except ImportError:
    print("SKIP: confluent_kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

# Both sets keep a rule on another topic, so the proxy judges every Produce
# in either state.
DENY = """access:
  - name: load-denied
    match: {api: Produce, topic: load}
    deny: TOPIC_AUTHORIZATION_FAILED
  - name: other-denied
    match: {topic: "other.*"}
    deny: true
"""
ALLOW = """access:
  - name: load-allowed
    match: {api: Produce, topic: load}
    allow: true
  - name: other-denied
    match: {topic: "other.*"}
    deny: true
"""
BROKEN = """access:
  - name: load-denied
    match: {api: Produce, topic: load, nope: 1}
    deny: true
"""
SWAPS = 100
# What librdkafka reports for a message the rules refused (see above).
REFUSED = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._UNKNOWN_PARTITION)
NOPE_COL = BROKEN.splitlines()[2].index("nope") + 1


def http_json(c, path):
    return json.loads(c.http(path))


def main():
    tmp = tempfile.mkdtemp(prefix="kwire-rules-reload-")
    rules = os.path.join(tmp, "rules.yaml")
    with open(rules, "w") as f:
        f.write(ALLOW)
    with Cluster(topics=(("load", 1),), extra_proxy_args=["--rules", rules]) as c:
        errors = []
        reports = {}  # message number -> (error name or None, offset)
        dups = []
        lock = threading.Lock()

        def on_error(err):
            errors.append(err)

        def on_delivery(err, msg):
            n = int(msg.value().decode().split("-")[1])
            with lock:
                if n in reports:
                    dups.append(n)
                reports[n] = (err.name() if err else None, None if err else msg.offset())
            if err and err.code() not in REFUSED:
                errors.append(err)

        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 2,
                      "message.timeout.ms": 60000, "error_cb": on_error,
                      "topic.metadata.refresh.interval.ms": 200})
        # Warm up: metadata and the leader's connection in place.
        p.produce("load", b"m-0", partition=0, on_delivery=on_delivery)
        check(p.flush(30) == 0 and reports.get(0, ("x",))[0] is None, f"warm-up: {reports}")
        accepted = c.metric("kwire_connections_accepted_total")

        stop = threading.Event()
        sent = [1]

        def produce_loop():
            n = 1
            while not stop.is_set():
                try:
                    p.produce("load", f"m-{n}".encode(), partition=0, on_delivery=on_delivery)
                    n += 1
                except BufferError:
                    p.poll(0.01)
                except KafkaException as e:
                    # librdkafka remembers a topic's authorization error
                    # until its next metadata refresh and refuses at once:
                    # refused with the rule's error, never sent.
                    err = e.args[0]
                    with lock:
                        reports[n] = (err.name(), None)
                    if err.code() not in REFUSED:
                        errors.append(err)
                    n += 1
                    p.poll(0.002)
                if n % 500 == 0:
                    p.poll(0)
            sent[0] = n

        th = threading.Thread(target=produce_loop)
        th.start()
        broken_at = SWAPS // 2
        try:
            for i in range(SWAPS):
                text = DENY if i % 2 == 0 else ALLOW
                if i == broken_at:
                    # A broken file: the reload fails, the rules in force
                    # (the previous replacement's) stay.
                    fails = c.metric("kwire_rules_reload_failures_total")
                    before = http_json(c, "/rules")["sha256"]
                    with open(rules + ".new", "w") as f:
                        f.write(BROKEN)
                    os.replace(rules + ".new", rules)
                    os.kill(c.pid(), signal.SIGHUP)
                    end = time.monotonic() + 10
                    while (c.metric("kwire_rules_reload_failures_total") <= fails and
                           time.monotonic() < end):
                        time.sleep(0.01)
                    st = http_json(c, "/rules")
                    check(st["sha256"] == before and "nope" in st["last_error"],
                          f"broken file: {st['sha256']} {st['last_error']}")
                    in_force = [r["name"] for r in st["rules"]]
                    check(in_force[0] == ("load-allowed" if i % 2 == 0 else "load-denied"),
                          f"rules in force after the broken file: {in_force}")
                    time.sleep(0.2)  # the producer runs on the previous rules
                with open(rules + ".new", "w") as f:
                    f.write(text)
                os.replace(rules + ".new", rules)
                os.kill(c.pid(), signal.SIGHUP)
                want = hashlib.sha256(text.encode()).hexdigest()
                end = time.monotonic() + 10
                while http_json(c, "/rules")["sha256"] != want and time.monotonic() < end:
                    time.sleep(0.005)
                check(http_json(c, "/rules")["sha256"] == want, f"swap {i} not loaded")
                time.sleep(0.01)
        finally:
            stop.set()
            th.join()
        left = p.flush(60)
        check(left == 0, f"{left} messages without a delivery report")
        n = sent[0]
        check(not dups, f"duplicate delivery reports: {dups[:10]}")
        check(len(reports) == n, f"{n} produced, {len(reports)} reported")
        ok = {k for k, (e, _) in reports.items() if e is None}
        refused = {k for k, (e, _) in reports.items()
                   if e in ("TOPIC_AUTHORIZATION_FAILED", "_UNKNOWN_PARTITION")}
        other = sorted((k, e) for k, (e, _) in reports.items()
                       if e is not None and e not in ("TOPIC_AUTHORIZATION_FAILED",
                                                      "_UNKNOWN_PARTITION"))
        check(len(ok) + len(refused) == n and not other,
              f"{n} produced, {len(ok)} acknowledged, {len(refused)} refused; other errors "
              f"({len(other)}): {other[:10]}; missing: "
              f"{sorted(set(range(n)) - set(reports))[:10]}")
        check(len(ok) > 100 and len(refused) > 100, f"acknowledged {len(ok)}, refused "
              f"{len(refused)} of {n}")
        check(not errors, f"client errors: {errors[:5]}")
        check(c.metric("kwire_connections_accepted_total") == accepted,
              "no new connection: none was dropped")
        # SIGHUP and the file watch may each have tried the broken file.
        check(c.metric("kwire_rules_reload_failures_total") >= 1, "the failed reload counted")
        check(f"rules.yaml:3:{NOPE_COL}: unknown match key 'nope'" in c.proxy_stderr(),
              "the broken file's error names FILE:LINE:COL")

        # Straight to the cluster: exactly the acknowledged messages, once each.
        cons = Consumer({"bootstrap.servers": c.upstream, "group.id": "reload-check",
                         "enable.auto.commit": False})
        lo, hi = cons.get_watermark_offsets(TopicPartition("load", 0), timeout=20)
        cons.assign([TopicPartition("load", 0, lo)])
        got = []
        end = time.monotonic() + 60
        last = lo - 1
        while last < hi - 1 and time.monotonic() < end:
            m = cons.poll(0.5)
            if m is None or m.error():
                continue
            last = m.offset()
            got.append(int(m.value().decode().split("-")[1]))
        cons.close()
        check(len(got) == len(set(got)), f"duplicates in the log: {len(got) - len(set(got))}")
        check(set(got) == ok, f"in the log {len(got)}, acknowledged {len(ok)}; lost "
              f"{sorted(ok - set(got))[:5]}, never acknowledged {sorted(set(got) - ok)[:5]}")
        print(f"{n} messages: {len(ok)} acknowledged, {len(refused)} refused, "
              f"{SWAPS} reloads")
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
