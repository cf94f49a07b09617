"""kwire proxy --rules: access rules decided before forwarding, with real
clients through kwire in front of the mock cluster (both peers).

- confluent-kafka: a Produce to a denied topic gets TOPIC_AUTHORIZATION_FAILED
  in the client's own delivery report (not a timeout, not a disconnect), and
  the same producer keeps producing to an allowed topic.
- A Produce request that names an allowed and a denied topic (both led by
  the same broker, batched together by linger.ms) is split: the allowed
  records are written (a consumer reads them), the denied ones fail.
- kcat and kafka-python get the same error for the denied topic.
- A consumer in a denied group gets GROUP_AUTHORIZATION_FAILED, from its
  FindCoordinator already.
- DeleteTopics is denied with its per-topic error (kafka-python's client).
- A policy (acks=all on orders) refuses an acks=1 producer with
  INVALID_REQUIRED_ACKS.
- The file is reloaded on SIGHUP: after allowing the topic, the same
  producer writes to it; a broken file keeps the running rules.
- /metrics counts what the rules did.
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, check  # noqa: E402

try:
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
except ImportError:
    print("SKIP: confluent_kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

DENY = """access:
  - name: audit-is-read-only
    match: {api: Produce, topic: "audit.*"}
    deny: TOPIC_AUTHORIZATION_FAILED
  - name: no-secret-groups
    match: {group: "secret-*"}
    deny: true
  - name: no-deletes
    match: {api: DeleteTopics}
    deny: true
policies:
  - name: durable-orders
    match: {topic: orders}
    require: {acks: all}
"""
ALLOW_AUDIT = """access:
  - name: no-secret-groups
    match: {group: "secret-*"}
    deny: true
"""


def produce(c, topic, n, **kw):
    """Produces n messages to partition 0 of topic; returns (delivered, errors)."""
    ok, errs = [], []

    def dr(err, msg):
        (errs if err else ok).append(err or msg.offset())
    conf = {"bootstrap.servers": c.bootstrap, "socket.timeout.ms": 10000,
            "message.timeout.ms": 20000}
    conf.update(kw)
    p = Producer(conf)
    for i in range(n):
        p.produce(topic, f"{topic}-{i}".encode(), partition=0, on_delivery=dr)
    p.poll(0)
    left = p.flush(30)
    check(left == 0, f"produce to {topic}: {left} messages neither delivered nor failed")
    return p, ok, errs


def read_all(c, topic, timeout=20):
    """Every record of partition 0 of topic, up to its high watermark (asked
    through kwire): not until some seconds pass without one."""
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": f"rd-{topic}-{time.time()}",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
    tp = TopicPartition(topic, 0, 0)
    lo, hi = cons.get_watermark_offsets(tp, timeout=10)
    cons.assign([tp])
    got = []
    end = time.monotonic() + timeout
    next_offset = lo
    while next_offset < hi and time.monotonic() < end:
        m = cons.poll(0.5)
        if m is None or m.error():
            continue
        next_offset = m.offset() + 1
        got.append(m.value().decode())
    cons.close()
    check(next_offset >= hi, f"{topic}: read up to offset {next_offset}, high watermark {hi}")
    return got


def main():
    import tempfile
    tmp = tempfile.mkdtemp(prefix="kwire-rules-")
    rules = os.path.join(tmp, "rules.yaml")
    with open(rules, "w") as f:
        f.write(DENY)
    topics = (("orders", 3), ("audit.log", 3), ("spare", 3))
    with Cluster(topics=topics, extra_proxy_args=["--rules", rules]) as c:
        # Denied: the client's own report says TOPIC_AUTHORIZATION_FAILED.
        p, ok, errs = produce(c, "audit.log", 5)
        check(not ok and len(errs) == 5, f"audit.log: delivered {ok}, errors {errs}")
        check(all(e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for e in errs),
              f"audit.log errors: {[e.name() for e in errs]}")
        # The access log shows the refusal kwire answered with.
        denied = [e for e in c.log_entries() if e.get("api") == "Produce" and
                  e.get("status") == "error" and "audit.log" in str(e)]
        check(denied and all(e.get("error") == "TOPIC_AUTHORIZATION_FAILED" for e in denied),
              f"access log: {denied[:2]}")
        # The same producer (same connections) keeps producing elsewhere.
        ok2, errs2 = [], []
        for i in range(5):
            p.produce("orders", f"o-{i}".encode(), partition=0,
                      on_delivery=lambda e, m: (errs2 if e else ok2).append(e or m.offset()))
        check(p.flush(30) == 0 and len(ok2) == 5 and not errs2,
              f"orders after a denial: {ok2} {errs2}")
        check(sorted(read_all(c, "orders"))[:5] == [f"o-{i}" for i in range(5)],
              "orders readable")

        # A policy: orders takes acks=all only; acks=1 is refused the way a
        # broker refuses it.
        _, ok, errs = produce(c, "orders", 3, acks=1)
        check(not ok and len(errs) == 3 and
              all(e.code() == KafkaError.INVALID_REQUIRED_ACKS for e in errs),
              f"acks=1 to orders: {ok} {[e.name() for e in errs]}")

        # A split: kafka-python puts every ready batch for a broker into one
        # Produce request (librdkafka sends one partition per request), and
        # partition 0 of both topics is led by broker 1.
        from kafka import KafkaProducer
        from kafka.errors import TopicAuthorizationFailedError
        kp = KafkaProducer(bootstrap_servers=c.bootstrap, linger_ms=1000, retries=0, acks="all",
                           api_version_auto_timeout_ms=10000)
        kp.send("orders", b"warm-up", partition=0).get(timeout=30)  # metadata for both
        kp.partitions_for("audit.log")
        # Two batches to one broker go in one request when both are ready at
        # once; under load they may not be, so up to three rounds.
        sent = []
        for rnd in range(3):
            futs = [(t, kp.send(t, f"{t}-{rnd}-{i}".encode(), partition=0))
                    for i in range(10) for t in (("spare",) if i % 2 == 0 else ("audit.log",))]
            kp.flush(30)
            ok3 = [t for t, f in futs if f.succeeded()]
            errs3 = [(t, f.exception) for t, f in futs if f.failed()]
            check(ok3 == ["spare"] * 5, f"split delivered {ok3} {errs3}")
            check(len(errs3) == 5 and all(t == "audit.log" and
                                          isinstance(e, TopicAuthorizationFailedError)
                                          for t, e in errs3), f"split errors {errs3}")
            sent += [f"spare-{rnd}-{i}" for i in range(0, 10, 2)]
            if c.metric("kwire_rules_split_total") >= 1:
                break
        check(c.metric("kwire_rules_split_total") >= 1, "split counted (one request, two topics)")
        check(sorted(read_all(c, "spare")) == sorted(sent),
              "split: the allowed records are written")
        check(not read_all(c, "audit.log", timeout=5), "nothing reached audit.log")
        kp.close()

        # kcat: the error is reported, the exit status is non-zero.
        r = subprocess.run(["kcat", "-b", c.bootstrap, "-P", "-t", "audit.log", "-p", "0"],
                           input=b"x\n", capture_output=True, timeout=60)
        check(r.returncode != 0 and b"authoriz" in r.stderr.lower(),
              f"kcat: rc {r.returncode} {r.stderr[-300:]!r}")

        # kafka-python (its own protocol code) on its own.
        try:
            kp = KafkaProducer(bootstrap_servers=c.bootstrap, acks="all",
                               api_version_auto_timeout_ms=10000)
            fut = kp.send("audit.log", b"kp", partition=0)
            try:
                fut.get(timeout=30)
                check(False, "kafka-python: a denied send succeeded")
            except TopicAuthorizationFailedError:
                pass
            kp.send("orders", b"kp-ok", partition=0).get(timeout=30)
            kp.close()
        except ImportError:
            pass

        # A denied group.
        cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "secret-g",
                         "auto.offset.reset": "earliest"})
        cons.subscribe(["orders"])
        seen = None
        end = time.monotonic() + 20
        while seen is None and time.monotonic() < end:
            m = cons.poll(0.5)
            if m is not None and m.error():
                seen = m.error()
        cons.close()
        check(seen is not None and seen.code() == KafkaError.GROUP_AUTHORIZATION_FAILED,
              f"secret group: {seen}")
        # Refused at FindCoordinator already: the cluster is never asked for
        # the denied group's coordinator (its Key is the group id).
        with open(c.log_path) as f:
            fc = [json.loads(x) for x in f if '"FindCoordinator"' in x]
        check(any(x.get("error") == "GROUP_AUTHORIZATION_FAILED" for x in fc),
              f"FindCoordinator of the denied group not refused: {fc}")

        # An admin operation, with its per-topic error. The 2.0.2 mock has no
        # controller for an admin client to find, so the request goes to any
        # broker through kafka-python's own client: kwire answers it first.
        from kafka.client_async import KafkaClient
        from kafka.protocol.admin import DeleteTopicsRequest
        kc = KafkaClient(bootstrap_servers=c.bootstrap, api_version_auto_timeout_ms=10000)
        node = None
        end = time.monotonic() + 20
        while node is None and time.monotonic() < end:
            kc.poll(timeout_ms=200)
            node = kc.least_loaded_node()
            if node is not None and not kc.ready(node):
                node = None
        check(node is not None, "kafka-python client: no broker ready")
        fut = kc.send(node, DeleteTopicsRequest[1](topics=["spare", "orders"], timeout=5000))
        kc.poll(future=fut, timeout_ms=20000)
        check(fut.succeeded(), f"DeleteTopics: {fut.exception}")
        codes = dict(fut.value.topic_error_codes)
        check(codes == {"spare": 29, "orders": 29}, f"DeleteTopics answer: {codes}")
        kc.close()
        check(read_all(c, "spare"), "spare still there")

        # One hit per judgement: the denied requests of confluent-kafka,
        # kafka-python (its split and its own) and kcat.
        check(c.metric("kwire_rule_hits_total", rule="audit-is-read-only",
                       section="access") >= 4, "hits per rule")

        # Reload on SIGHUP: audit.log becomes writable.
        with open(rules, "w") as f:
            f.write(ALLOW_AUDIT)
        os.kill(c.pid(), signal.SIGHUP)
        deadline = time.monotonic() + 10
        while c.metric("kwire_rules_reloads_total") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        _, ok, errs = produce(c, "audit.log", 3)
        check(len(ok) == 3 and not errs, f"after reload: {ok} {errs}")
        # A broken file keeps the running rules.
        with open(rules, "w") as f:
            f.write("access:\n  - match: {nope: 1}\n    deny: true\n")
        os.kill(c.pid(), signal.SIGHUP)
        deadline = time.monotonic() + 10
        while c.metric("kwire_rules_reload_failures_total") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        check(c.metric("kwire_rules_reload_failures_total") >= 1, "broken file counted")
        _, ok, errs = produce(c, "audit.log", 2)
        check(len(ok) == 2, "the running rules stayed")
        check("rules.yaml:2:13: unknown match key 'nope'" in c.proxy_stderr(),
              "the error names FILE:LINE:COL")
        check(c.metric("kwire_rules_answered_total") >= 3, "answers counted")
        st = json.loads(c.http("/rules"))
        check(st["reloads"] >= 1 and st["failures"] >= 1 and "nope" in st["last_error"] and
              [r["name"] for r in st["rules"]] == ["no-secret-groups"], f"/rules: {st}")
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
