"""samples/rules/: every sample rules file loads, and does what its comments
say (both mock-cluster peers).

- Every file passes `kwire rules check`, and `kwire rules explain` gives
  the verdict its comments promise for the requests they name.
- read-only-topics.yaml in a live kwire: producing to audit.* is refused
  with TOPIC_AUTHORIZATION_FAILED (confluent-kafka's delivery report),
  reading it works, the topic stays in Metadata, ledger.* takes records
  from client id ledger-writer only, other topics are untouched.
- admin-from-cidr.yaml in a live kwire: from 127.0.0.1 (outside the ops
  network) DeleteTopics and CreateTopics are refused per topic, produce and
  consume are not; the same file with the ops network set to 127.0.0.0/8
  lets DeleteTopics through to the broker.
- per-client-quotas.yaml and audit-topic-family.yaml load into a live kwire
  that carries traffic with them; throttling and audit records are the
  quota and audit features' (tests/integration/test_proxy_quota*,
  test_proxy_audit*).
"""
import glob
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, check, env  # noqa: E402

try:
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
except ImportError:
    print("SKIP: confluent_kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

SAMPLES = os.path.join(env("KWIRE_SRC"), "samples", "rules")
KWIRE = env("KWIRE_BIN")

# (file, explain arguments, a line the verdict must have)
EXPLAIN = [
    ("read-only-topics.yaml", ["--api", "Produce", "--topic", "audit.log"],
     "verdict: refused with TOPIC_AUTHORIZATION_FAILED"),
    ("read-only-topics.yaml", ["--api", "Fetch", "--topic", "audit.log"], "verdict: forwarded"),
    ("read-only-topics.yaml", ["--api", "Produce", "--topic", "ledger.x", "--client-id",
                               "ledger-writer"], "verdict: forwarded"),
    ("read-only-topics.yaml", ["--api", "Produce", "--topic", "ledger.x", "--client-id", "app"],
     "verdict: refused with TOPIC_AUTHORIZATION_FAILED"),
    ("admin-from-cidr.yaml", ["--api", "DeleteTopics", "--topic", "t", "--source", "192.0.2.7"],
     "verdict: refused with TOPIC_AUTHORIZATION_FAILED"),
    ("admin-from-cidr.yaml", ["--api", "AlterConfigs", "--source", "192.0.2.7"],
     "verdict: refused with CLUSTER_AUTHORIZATION_FAILED"),
    ("admin-from-cidr.yaml", ["--api", "DeleteTopics", "--topic", "t", "--source", "10.20.3.4"],
     "verdict: forwarded"),
    ("admin-from-cidr.yaml", ["--api", "Produce", "--topic", "t", "--source", "192.0.2.7"],
     "verdict: forwarded"),
    ("per-client-quotas.yaml", ["--api", "Produce", "--topic", "t", "--client-id", "batch-7"],
     "quota 'batch-jobs' counts it under key 'batch-7'"),
    ("per-client-quotas.yaml", ["--api", "Produce", "--topic", "t", "--client-id", "batch-7"],
     "quota 'every-client' counts it under key 'batch-7'"),
    ("per-client-quotas.yaml", ["--api", "Fetch", "--topic", "t", "--client-id", "analytics-3"],
     "quota 'analytics-team' counts it under key '*'"),
    ("audit-topic-family.yaml", ["--api", "Fetch", "--topic", "pii.customers"],
     "audit 'pii-access' records it"),
    ("audit-topic-family.yaml", ["--api", "Fetch", "--topic", "orders"], "verdict: forwarded"),
]


def kwire(*args):
    return subprocess.run([KWIRE, *args], capture_output=True, text=True, timeout=60)


def produce(c, topic, n=3, client_id="rdkafka"):
    res = []
    p = Producer({"bootstrap.servers": c.bootstrap, "client.id": client_id,
                  "message.timeout.ms": 20000})
    for i in range(n):
        p.produce(topic, f"{topic}-{i}".encode(), partition=0,
                  on_delivery=lambda e, m: res.append(e))
    check(p.flush(30) == 0, f"{topic}: not every message reported")
    return res


def read(bootstrap, topic, want):
    cons = Consumer({"bootstrap.servers": bootstrap, "group.id": f"smp-{topic}-{time.time()}",
                     "enable.auto.commit": False})
    cons.assign([TopicPartition(topic, 0, 0)])
    got, end = [], time.monotonic() + 20
    while len(got) < want and time.monotonic() < end:
        m = cons.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    cons.close()
    return got


def admin_codes(c, req):
    """Sends an admin request with kafka-python's own client to any broker:
    the per-topic error codes of the answer."""
    from kafka.client_async import KafkaClient
    kc = KafkaClient(bootstrap_servers=c.bootstrap, api_version_auto_timeout_ms=10000)
    node, end = None, time.monotonic() + 20
    while node is None and time.monotonic() < end:
        kc.poll(timeout_ms=200)
        node = kc.least_loaded_node()
        if node is not None and not kc.ready(node):
            node = None
    check(node is not None, "kafka-python client: no broker ready")
    fut = kc.send(node, req)
    kc.poll(future=fut, timeout_ms=20000)
    check(fut.succeeded(), f"{type(req).__name__}: {fut.exception}")
    kc.close()
    return fut.value


def main():
    files = sorted(glob.glob(os.path.join(SAMPLES, "*.yaml")))
    for want in ("read-only-topics.yaml", "per-client-quotas.yaml", "admin-from-cidr.yaml",
                 "audit-topic-family.yaml"):
        check(os.path.join(SAMPLES, want) in files, f"samples/rules/{want} exists")
    for f in files:
        r = kwire("rules", "check", f)
        check(r.returncode == 0, f"rules check {f}: {r.stderr}")
    for name, args, line in EXPLAIN:
        r = kwire("rules", "explain", os.path.join(SAMPLES, name), *args)
        check(r.returncode == 0 and line in r.stdout,
              f"explain {name} {' '.join(args)}: want '{line}' in:\n{r.stdout}{r.stderr}")

    topics = (("orders", 1), ("audit.log", 1), ("ledger.x", 1), ("spare", 1))
    # read-only-topics.yaml
    with Cluster(topics=topics, extra_proxy_args=[
            "--rules", os.path.join(SAMPLES, "read-only-topics.yaml")]) as c:
        # Something to read in audit.log, written straight to the cluster.
        p = Producer({"bootstrap.servers": c.upstream})
        p.produce("audit.log", b"old", partition=0)
        check(p.flush(20) == 0, "seed audit.log")
        errs = produce(c, "audit.log")
        check(len(errs) == 3 and all(e is not None and
                                     e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
                                     for e in errs), f"produce audit.log: {errs}")
        check(read(c.bootstrap, "audit.log", 1) == ["old"], "audit.log readable")
        check(all(e is None for e in produce(c, "orders")), "orders writable")
        errs = produce(c, "ledger.x", client_id="app")
        check(all(e is not None and e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
                  for e in errs), f"ledger.x by app: {errs}")
        check(all(e is None for e in produce(c, "ledger.x", client_id="ledger-writer")),
              "ledger.x by ledger-writer")
        from confluent_kafka.admin import AdminClient
        md = AdminClient({"bootstrap.servers": c.bootstrap}).list_topics(timeout=20)
        check("audit.log" in md.topics and md.topics["audit.log"].error is None,
              "audit.log stays visible")

    # admin-from-cidr.yaml, from loopback (outside the ops network).
    from kafka.protocol.admin import CreateTopicsRequest, DeleteTopicsRequest
    with Cluster(topics=topics, extra_proxy_args=[
            "--rules", os.path.join(SAMPLES, "admin-from-cidr.yaml")]) as c:
        ans = admin_codes(c, DeleteTopicsRequest[1](topics=["spare"], timeout=5000))
        check(dict(ans.topic_error_codes) == {"spare": 29}, f"DeleteTopics: {ans}")
        ans = admin_codes(c, CreateTopicsRequest[1](
            create_topic_requests=[("new.t", 1, 1, [], [])], timeout=5000, validate_only=False))
        codes = {t[0]: t[1] for t in ans.topic_errors}
        check(codes == {"new.t": 29}, f"CreateTopics: {ans}")
        check(all(e is None for e in produce(c, "orders")), "produce from outside")
        check(len(read(c.bootstrap, "orders", 3)) == 3, "consume from outside")
    # The same file with loopback as the ops network: the broker answers.
    tmp = tempfile.mkdtemp(prefix="kwire-smp-")
    inside = os.path.join(tmp, "admin.yaml")
    with open(os.path.join(SAMPLES, "admin-from-cidr.yaml")) as f:
        text = f.read()
    check('"!10.20.0.0/16"' in text, "the sample names its CIDR")
    with open(inside, "w") as f:
        f.write(text.replace('"!10.20.0.0/16"', '"!127.0.0.0/8"'))
    with Cluster(topics=topics, extra_proxy_args=["--rules", inside]) as c:
        # Forwarded to the broker (the 2.0.2 mock does not implement
        # DeleteTopics and closes the connection; 2.12's answers it).
        try:
            ans = admin_codes(c, DeleteTopicsRequest[1](topics=["spare"], timeout=5000))
            check(dict(ans.topic_error_codes).get("spare") != 29, f"DeleteTopics inside: {ans}")
        except AssertionError as e:
            check("disconnected" in str(e), str(e))
        deletes = [e for e in c.log_entries() if e.get("api") == "DeleteTopics"]
        check(deletes, "DeleteTopics reached the broker")
        check(c.metric("kwire_rules_answered_total") == 0 and
              c.metric("kwire_rule_hits_total", rule="admin-only-from-ops",
                       section="access") == 0, "nothing refused inside the ops network")

    # The quota and audit samples load into a live kwire, which carries
    # traffic (the audit's file goes to a temporary folder).
    for name in ("per-client-quotas.yaml", "audit-topic-family.yaml"):
        with open(os.path.join(SAMPLES, name)) as f:
            text = f.read()
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(text.replace("/var/log/kwire/", tmp + "/"))
        with Cluster(topics=topics, extra_proxy_args=["--rules", path]) as c:
            check(all(e is None for e in produce(c, "orders", client_id="batch-1")),
                  f"{name}: produce")
            check(len(read(c.bootstrap, "orders", 3)) == 3, f"{name}: consume")
            import json
            st = json.loads(c.http("/rules"))
            check(st["path"].endswith(name) and len(st["rules"]) >= 2, f"{name}: /rules {st}")
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
