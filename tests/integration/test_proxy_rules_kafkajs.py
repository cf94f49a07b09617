"""kafkajs against kwire's access rules (both mock-cluster peers).

kafkajs (pure JavaScript, no librdkafka) produces to a topic the rules
deny to Produce: the send fails with kafkajs' own protocol error of type
TOPIC_AUTHORIZATION_FAILED (not a timeout, not a disconnection), and the
same producer, on the same connections, goes on producing to an allowed
topic, whose records a direct consumer reads; a second denied send fails
the same way. The rules read only topic names, so kwire judges these
Produce requests in place (rule_judge_walk) and gathers only the refused
ones; the access log shows each refusal once, and the deny rule's hits
match the refusals (counted once though judged twice).
(tools/clients/kafkajs-deny.js runs the client.)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import client_run  # noqa: E402
from proxy_harness import Cluster, check  # noqa: E402

NODE = shutil.which("node")
MODULES = os.environ.get("KWIRE_NODE_CLIENTS", os.path.join(client_run.CACHE, "node-clients"))
SCRIPT = os.path.join(os.environ.get("KWIRE_SRC", "."), "tools", "clients", "kafkajs-deny.js")

RULES = """access:
  - name: audit-is-read-only
    match: {api: Produce, topic: "audit.*"}
    deny: TOPIC_AUTHORIZATION_FAILED
"""


def main():
    if not NODE or not os.path.isdir(os.path.join(MODULES, "node_modules", "kafkajs")):
        client_run.skip("kafkajs not installed (needs: kafkajs, tools/install-clients.sh)")
    tmp = tempfile.mkdtemp(prefix="kwire-rules-kjs-")
    rules = os.path.join(tmp, "rules.yaml")
    with open(rules, "w") as f:
        f.write(RULES)
    env = dict(os.environ, KWIRE_NODE_CLIENTS=MODULES)
    with Cluster(topics=(("audit.log", 2), ("orders", 2)),
                 extra_proxy_args=["--rules", rules]) as c:
        r = subprocess.run([NODE, SCRIPT, c.bootstrap, "audit.log", "orders", "5"],
                           capture_output=True, timeout=120, env=env)
        check(r.returncode == 0, f"kafkajs-deny: {r.returncode} {r.stderr[-500:]!r}")
        out = json.loads(r.stdout.decode().strip().splitlines()[-1])
        for d in out["denied"]:
            check(d.get("inner") == "KafkaJSProtocolError" and
                  d.get("type") == "TOPIC_AUTHORIZATION_FAILED", f"denied send: {d}")
        check(len(out["denied"]) == 2, f"two denied sends: {out}")
        check(out["allowed"] and all(a["error"] == 0 for a in out["allowed"]),
              f"allowed send: {out['allowed']}")
        # No connection dropped: kafkajs connected its producer once.
        check(out["connects"] == 1, f"producer connections: {out['connects']}")
        # What reached the broker: the allowed records, none of the denied.
        from confluent_kafka import Consumer, TopicPartition
        got = {}
        for topic in ("orders", "audit.log"):
            cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": f"kjs-chk-{topic}",
                             "enable.auto.commit": False})
            cons.assign([TopicPartition(topic, 0, 0)])
            vals, idle = [], 0
            while idle < (6 if topic == "orders" else 4):
                m = cons.poll(0.5)
                if m is None:
                    idle += 1
                    continue
                if not m.error():
                    vals.append(m.value().decode())
            cons.close()
            got[topic] = vals
        check(sorted(got["orders"]) == sorted(f"a-{i}" for i in range(5)), f"orders: {got}")
        check(got["audit.log"] == [], f"audit.log: {got['audit.log']}")
        refused = [e for e in c.log_entries() if e.get("api") == "Produce" and
                   e.get("error") == "TOPIC_AUTHORIZATION_FAILED"]
        hits = c.metric("kwire_rule_hits_total", rule="audit-is-read-only", section="access")
        check(len(refused) >= 2 and hits == len(refused),
              f"refusals in the access log {len(refused)}, hits {hits}")
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
