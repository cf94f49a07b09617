"""kwire proxy --rules: the topics access rules deny, in Metadata answers,
with real clients through kwire in front of the mock cluster (both peers).

Rules (docs/rules.md, "Metadata"): `secret.*` is denied with the default
`metadata: hide`, `shown.*` with `metadata: show`; `audit.*` is denied to
Produce only, so it stays visible (a read-only topic can be described).

- kcat -L (all topics): secret.* is not listed; shown.x is listed with
  TOPIC_AUTHORIZATION_FAILED and no partitions; the others are listed whole.
- confluent-kafka list_topics() (all topics) sees the same; list_topics(
  topic="secret.a") gets TOPIC_AUTHORIZATION_FAILED for it (what Kafka
  answers a named topic the client may not describe), and naming an
  allowed and a denied topic together gives the allowed one whole.
- kafka-python's own client asks Metadata v0 (an empty list = all topics):
  secret.* is hidden there too.
- A consumer subscribed to a regex that matches secret.* never gets it
  assigned; a producer to a shown.* topic gets TOPIC_AUTHORIZATION_FAILED.
- /metrics counts the topics filtered; without the rules kwire lists them
  all (the rules are what hides them).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, check  # noqa: E402

try:
    from confluent_kafka import KafkaError, Producer
    from confluent_kafka.admin import AdminClient
except ImportError:
    print("SKIP: confluent_kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

RULES = """access:
  - name: hidden-secrets
    match: {topic: "secret.*"}
    deny: true
  - name: shown-denied
    match: {topic: "shown.*"}
    deny: TOPIC_AUTHORIZATION_FAILED
    metadata: show
  - name: audit-read-only
    match: {api: Produce, topic: "audit.*"}
    deny: true
"""
TOPICS = (("orders", 3), ("audit.log", 2), ("secret.a", 2), ("secret.b", 1), ("shown.x", 2))


def kcat_list(c):
    r = subprocess.run(["kcat", "-b", c.bootstrap, "-L", "-J"], capture_output=True,
                       timeout=60)
    check(r.returncode == 0, f"kcat -L: {r.returncode} {r.stderr[-300:]!r}")
    return {t["topic"]: t for t in json.loads(r.stdout)["topics"]}


def main():
    tmp = tempfile.mkdtemp(prefix="kwire-rules-md-")
    rules = os.path.join(tmp, "rules.yaml")
    with open(rules, "w") as f:
        f.write(RULES)

    # Without rules every topic is listed: the rules are what hides them.
    with Cluster(topics=TOPICS) as c:
        seen = kcat_list(c)
        check(all(t in seen for t, _ in TOPICS), f"no rules: {sorted(seen)}")

    with Cluster(topics=TOPICS, extra_proxy_args=["--rules", rules]) as c:
        # kcat -L: all topics.
        seen = kcat_list(c)
        check("secret.a" not in seen and "secret.b" not in seen, f"kcat -L: {sorted(seen)}")
        check("orders" in seen and len(seen["orders"]["partitions"]) == 3 and
              "audit.log" in seen and len(seen["audit.log"]["partitions"]) == 2,
              f"kcat -L allowed topics: {seen}")
        sx = seen.get("shown.x")
        check(sx is not None and "authoriz" in str(sx.get("error", "")).lower() and
              not sx["partitions"], f"kcat -L shown.x: {sx}")

        # confluent-kafka: all topics, then named topics.
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        md = admin.list_topics(timeout=30)
        check(set(md.topics) >= {"orders", "audit.log", "shown.x"} and
              not {"secret.a", "secret.b"} & set(md.topics), f"list_topics: {sorted(md.topics)}")
        check(md.topics["shown.x"].error is not None and
              md.topics["shown.x"].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED,
              f"shown.x: {md.topics['shown.x'].error}")
        check(md.topics["orders"].error is None and len(md.topics["orders"].partitions) == 3,
              "orders whole")
        md = admin.list_topics(topic="secret.a", timeout=30)
        e = md.topics["secret.a"].error
        check(e is not None and e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED,
              f"named secret.a: {e}")
        # kcat asking for one allowed and one denied topic.
        r = subprocess.run(["kcat", "-b", c.bootstrap, "-L", "-J", "-t", "orders"],
                           capture_output=True, timeout=60)
        got = {t["topic"]: t for t in json.loads(r.stdout)["topics"]}
        check(len(got.get("orders", {}).get("partitions", [])) == 3, f"kcat -t orders: {got}")

        # kafka-python's Metadata v0 (empty list = all topics) and v1+.
        from kafka import KafkaConsumer
        kc = KafkaConsumer(bootstrap_servers=c.bootstrap, api_version_auto_timeout_ms=10000)
        names = kc.topics()
        check("orders" in names and not {"secret.a", "secret.b"} & names,
              f"kafka-python topics(): {sorted(names)}")
        kc.close()

        # A regex subscription never gets the hidden topics.
        from confluent_kafka import Consumer
        cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "md-regex",
                         "auto.offset.reset": "earliest", "topic.metadata.refresh.interval.ms":
                         1000})
        assigned = []
        cons.subscribe(["^(secret|orders).*"],
                       on_assign=lambda cn, parts: assigned.extend(p.topic for p in parts))
        end = time.monotonic() + 20
        while not assigned and time.monotonic() < end:
            cons.poll(0.5)
        cons.close()
        check(assigned and set(assigned) == {"orders"}, f"regex subscription: {assigned}")

        # Producing to a shown (denied) topic: the client's own error.
        errs = []
        p = Producer({"bootstrap.servers": c.bootstrap, "message.timeout.ms": 15000})
        p.produce("shown.x", b"x", partition=0, on_delivery=lambda e, m: errs.append(e))
        p.flush(30)
        check(errs and errs[0] is not None and
              errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, f"produce shown.x: {errs}")

        check(c.metric("kwire_rules_filtered_total") >= 4, "filtered topics counted")
        check(c.metric("kwire_rule_hits_total", rule="hidden-secrets", section="access") >= 4,
              "hits of the hiding rule")
        c.assert_no_real_address(json.dumps(seen), "kcat -L through kwire")
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
