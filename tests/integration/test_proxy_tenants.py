"""Tenants through kwire (docs/rules.md "rewrite: names", docs/proxy.md
"Names"): two tenants, client ids acme-* and globex-*, each mapped to its
own prefix, run kcat, kafka-python, confluent-kafka (a transactional
producer and a read_committed group) and kafkajs through kwire against one
mock cluster (both peers), both tenants at once:

- each produces, consumes, commits offsets (and reads them back) and lists
  topics, seeing only its own names, without prefix;
- a direct look at the cluster finds only prefixed topics and groups (and
  the unprefixed topic that was there before);
- no unprefixed topic is created or readable through kwire: a tenant
  reading an existing unprefixed topic gets none of its records.

Neither mock cluster answers CreateTopics, ListGroups or DescribeGroups
(librdkafka's mock brokers do not implement them), so group listing and
topic creation are tested frame by frame in tests/unit/test_px_names.c.
"""
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import client_run  # noqa: E402
from proxy_harness import SKIP, Cluster, check  # noqa: E402

try:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    from kafka.admin import KafkaAdminClient
except ImportError as e:
    print(f"SKIP: {e} (needs: python3-confluent-kafka, python3-kafka, tools/install-deps.sh)",
          file=sys.stderr)
    sys.exit(SKIP)

RULES = """rewrite:
  - name: acme
    match: {client_id: "acme-*"}
    prefix: acme.
  - name: globex
    match: {client_id: "globex-*"}
    topics: {prefix: globex.}
    groups: {prefix: globex.}
    transactional_ids: {prefix: globex.}
"""
TENANTS = ("acme", "globex")
NODE = shutil.which("node")
MODULES = os.environ.get("KWIRE_NODE_CLIENTS", os.path.join(client_run.CACHE, "node-clients"))
KJS = os.path.join(os.environ.get("KWIRE_SRC", "."), "tools", "clients", "kafkajs-client.js")


def kcat(c, t, *args, stdin=None):
    r = subprocess.run(["kcat", "-b", c.bootstrap, "-X", f"client.id={t}-kcat"] + list(args),
                       input=stdin, capture_output=True, timeout=60)
    return r


def own_names(names, what, t):
    """Every name a tenant sees is its own, without prefix."""
    for n in names:
        check(not n.startswith(("acme.", "globex.")) and not n.startswith("__"),
              f"{t} sees {what} '{n}' (all: {sorted(names)})")


def run_kcat(c, t):
    data = "".join(f"k{i}:{t}-kcat-{i}\n" for i in range(5)).encode()
    r = kcat(c, t, "-P", "-t", "orders", "-K:", stdin=data)
    check(r.returncode == 0, f"{t}: kcat produce: {r.stderr.decode()[-500:]}")
    r = kcat(c, t, "-C", "-t", "orders", "-o", "beginning", "-e", "-f", "%t %k:%s\\n")
    check(r.returncode == 0, f"{t}: kcat consume: {r.stderr.decode()[-500:]}")
    lines = set(r.stdout.decode().split("\n")) - {""}
    want = {f"orders k{i}:{t}-kcat-{i}" for i in range(5)}
    check(want <= lines, f"{t}: kcat read {sorted(lines)}, wanted {sorted(want)}")
    check(all(x.split()[1].split(":")[1].startswith(t) for x in lines if ":" in x),
          f"{t}: kcat read another tenant's records: {sorted(lines)}")
    r = kcat(c, t, "-L", "-J")
    check(r.returncode == 0, f"{t}: kcat -L: {r.stderr.decode()[-500:]}")
    topics = [x["topic"] for x in json.loads(r.stdout)["topics"]]
    own_names(topics, "topic", t)
    check("orders" in topics, f"{t}: kcat -L lists {topics}, not orders")
    # An unprefixed topic of the cluster is not readable through kwire:
    # 'plain' is the tenant's own (the mock creates acme.plain, empty).
    r = kcat(c, t, "-C", "-t", "plain", "-o", "beginning", "-e", "-f", "%s\\n")
    check(b"plain-record" not in r.stdout, f"{t}: read the unprefixed topic 'plain'")


def run_kafka_python(c, t):
    cid = f"{t}-kp"
    p = KafkaProducer(bootstrap_servers=c.bootstrap, client_id=cid)
    for i in range(4):
        p.send("events", f"{t}-kp-{i}".encode(), partition=i % 2)
    p.flush(30)
    p.close()
    cons = KafkaConsumer("events", bootstrap_servers=c.bootstrap, client_id=cid,
                         group_id="kp-grp", auto_offset_reset="earliest",
                         enable_auto_commit=False, consumer_timeout_ms=3000)
    got = [m for m in cons]
    vals = sorted(m.value.decode() for m in got)
    check(vals == sorted(f"{t}-kp-{i}" for i in range(4)), f"{t}: kafka-python read {vals}")
    check({m.topic for m in got} == {"events"}, f"{t}: topics {({m.topic for m in got})}")
    cons.commit()
    cons.close()
    a = KafkaAdminClient(bootstrap_servers=c.bootstrap, client_id=f"{t}-admin")
    topics = a.list_topics()
    own_names(topics, "topic", t)
    check({"orders", "events"} <= set(topics), f"{t}: kafka-python lists {topics}")
    offs = a.list_consumer_group_offsets("kp-grp", partitions=[KTP("events", 0),
                                                                KTP("events", 1)])
    check({tp.topic for tp in offs} == {"events"} and
          sum(o.offset for o in offs.values()) == 4, f"{t}: committed offsets {offs}")
    a.close()


def run_confluent(c, t):
    p = Producer({"bootstrap.servers": c.bootstrap, "client.id": f"{t}-ck",
                  "transactional.id": "tx-1", "socket.timeout.ms": 10000})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(5):
        p.produce("orders", f"{t}-txn-{i}".encode(), key=b"t", partition=i % 3)
    p.commit_transaction(30)
    cons = Consumer({"bootstrap.servers": c.bootstrap, "client.id": f"{t}-ck-c",
                     "group.id": "rc-grp", "isolation.level": "read_committed",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
    cons.subscribe(["orders"])
    got = []
    end = time.monotonic() + 30
    while time.monotonic() < end and len([v for v in got if "-txn-" in v]) < 5:
        m = cons.poll(0.5)
        if m is None or m.error():
            continue
        check(m.topic() == "orders", f"{t}: confluent-kafka read topic {m.topic()}")
        got.append(m.value().decode())
    txn = sorted(v for v in got if "-txn-" in v)
    check(txn == sorted(f"{t}-txn-{i}" for i in range(5)), f"{t}: read_committed got {got}")
    check(all(v.startswith(t) for v in got), f"{t}: read another tenant's records {got}")
    cons.commit(asynchronous=False)
    committed = cons.committed([TopicPartition("orders", i) for i in range(3)], 10)
    check(all(tp.topic == "orders" for tp in committed) and
          sum(max(tp.offset, 0) for tp in committed) > 0, f"{t}: committed {committed}")
    md = cons.list_topics(timeout=10)
    own_names(md.topics.keys(), "topic", t)
    cons.close()


def run_big(c, t):
    """Produce requests of 700 KB: they reach kwire in pieces, and one
    topic's request streams to the broker with its size corrected up front
    (docs/proxy.md "Names", Speed); the records come back whole."""
    vals = [bytes([65 + i]) * 700_000 + f"-{t}-{i}".encode() for i in range(3)]
    # A small send buffer: the client writes each request in pieces, as
    # over a real network, rather than all at once into loopback's buffer.
    p = Producer({"bootstrap.servers": c.bootstrap, "client.id": f"{t}-big",
                  "linger.ms": 0, "socket.send.buffer.bytes": 16384})
    for v in vals:
        p.produce("big", v, partition=0)
        check(p.flush(30) == 0, f"{t}: big produce")
    cons = Consumer({"bootstrap.servers": c.bootstrap, "client.id": f"{t}-big-c",
                     "group.id": "big-grp", "enable.auto.commit": False})
    cons.assign([TopicPartition("big", 0, 0)])
    got = []
    end = time.monotonic() + 30
    while time.monotonic() < end and len(got) < len(vals):
        m = cons.poll(0.5)
        if m is None or m.error():
            continue
        check(m.topic() == "big", f"{t}: big read topic {m.topic()}")
        got.append(m.value())
    cons.close()
    check(got == vals, f"{t}: big records came back as {[(len(v), v[-12:]) for v in got]}")


def run_kafkajs(c, t, tmp):
    exp = os.path.join(tmp, f"{t}-kjs.txt")
    r = subprocess.run([NODE, KJS, "--topic", "kjs", "--n", "4", "--group", "kjs-grp",
                        "--client-prefix", f"{t}-", c.bootstrap, exp],
                       capture_output=True, timeout=120,
                       env=dict(os.environ, KWIRE_NODE_CLIENTS=MODULES))
    check(r.returncode == 0, f"{t}: kafkajs: {r.stderr.decode()[-800:]}")
    with open(exp) as f:
        topics = {line.split()[1] for line in f if line.strip()}
    check(topics == {"kjs"}, f"{t}: kafkajs saw topics {topics}")


def main():
    if not shutil.which("kcat"):
        client_run.skip("kcat not installed (needs: kcat, tools/install-deps.sh)")
    if not NODE or not os.path.isdir(os.path.join(MODULES, "node_modules", "kafkajs")):
        client_run.skip("kafkajs not installed (needs: kafkajs, tools/install-clients.sh)")
    tmp = tempfile.mkdtemp(prefix="kwire-tenants-")
    rules = os.path.join(tmp, "rules.yaml")
    with open(rules, "w") as f:
        f.write(RULES)
    topics = [("plain", 1)]
    for t in TENANTS:
        topics += [(f"{t}.orders", 3), (f"{t}.events", 2), (f"{t}.kjs", 5), (f"{t}.big", 1)]
    # --buffer 128 KiB: the access log copies at most that much of a
    # request (px_set_hooks), so run_big's requests (700 KB) are forwarded
    # before their last byte is in, as they are without an access log.
    with Cluster(topics=topics, extra_proxy_args=["--rules", rules, "--buffer", "131072"]) as c:
        # The unprefixed topic holds a record, put there directly.
        p = Producer({"bootstrap.servers": c.upstream})
        p.produce("plain", b"plain-record")
        check(p.flush(20) == 0, "direct produce to plain")
        # The two tenants run at once (as they would on one cluster): each
        # one's clients in turn, both tenants side by side.
        def tenant(t):
            run_kcat(c, t)
            run_kafka_python(c, t)
            run_confluent(c, t)
            run_big(c, t)
            run_kafkajs(c, t, tmp)

        with concurrent.futures.ThreadPoolExecutor(len(TENANTS)) as ex:
            for f in [ex.submit(tenant, t) for t in TENANTS]:
                f.result()  # re-raises a tenant's failed check
        # What the cluster holds: only prefixed names.
        adm = AdminClient({"bootstrap.servers": c.upstream})
        names = set(adm.list_topics(timeout=10).topics)
        bad = {n for n in names if not n.startswith(("acme.", "globex.")) and n != "plain"}
        check(not bad, f"unprefixed topics in the cluster: {sorted(bad)}")
        for t in TENANTS:
            for g in ("kp-grp", "rc-grp", "kjs-grp"):
                cons = Consumer({"bootstrap.servers": c.upstream, "group.id": f"{t}.{g}"})
                tps = [TopicPartition(f"{t}.{x}", i) for x, n in
                       (("orders", 3), ("events", 2), ("kjs", 5)) for i in range(n)]
                offs = cons.committed(tps, 10)
                cons.close()
                check(any(tp.offset >= 0 for tp in offs),
                      f"group {t}.{g} has no committed offsets in the cluster")
                cons = Consumer({"bootstrap.servers": c.upstream, "group.id": g})
                offs = cons.committed([TopicPartition(tp.topic, tp.partition) for tp in tps], 10)
                cons.close()
                check(all(tp.offset < 0 for tp in offs),
                      f"the unprefixed group {g} has committed offsets in the cluster")
        for t in TENANTS:
            check(c.metric("kwire_rule_hits_total", rule=t, section="rewrite") > 0,
                  f"no hits of rule {t} in /metrics")
        err = c.proxy_stderr()
        check("not decodable" not in err, f"kwire could not decode a response:\n{err[-2000:]}")
    shutil.rmtree(tmp, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
