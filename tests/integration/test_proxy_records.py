"""kwire proxy --rules with `rewrite:` rules on records (docs/rules.md), real
clients through kwire in front of the mock cluster (both peers):

- Produce: a rule adds a header (a template), removes one and masks JSON
  fields (an HMAC-SHA-256 hash and a fixed string). An idempotent
  confluent-kafka producer with each codec, and kcat, produce through kwire;
  a direct consumer of the cluster sees the stored result: every record
  once, header added, header removed, fields masked, everything else as
  sent.
- A transactional producer writes through the same rule and commits; a
  read_committed direct consumer gets each record once, masked.
- Fetch: a rule masks a field and adds a header for consumers whose client
  id is masked-*: confluent-kafka, kcat and kafkajs under such client ids
  see the masked values; a consumer with another client id, through the
  same kwire, and a direct consumer see the originals.
- on_error with a value that is not JSON: refuse answers INVALID_RECORD to
  the producer (nothing stored) and to a masked consumer (no data);
  pass stores the record unchanged (its headers still edited).
- A legacy message set (kafka-python speaking Kafka 0.10, magic 1) is not
  rewritten: refused, with the reason in kwire's log.
- /metrics counts what was rewritten, passed and refused.
"""
import hashlib
import hmac
import json
import os
import re
import socket
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, check  # noqa: E402

try:
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
except ImportError:
    print("SKIP: confluent_kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

try:
    import kafka  # kafka-python: a client that can still write the legacy message format
except ImportError:
    print("SKIP: kafka-python not installed (needs: python3-kafka, tools/install-deps.sh)",
          file=sys.stderr)
    sys.exit(SKIP)

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
NODE = shutil.which("node")
CACHE = os.environ.get("KWIRE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "kwire"))
MODULES = os.environ.get("KWIRE_NODE_CLIENTS", os.path.join(CACHE, "node-clients"))
if not KCAT:
    print("SKIP: kcat not installed (needs: kcat, tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)
if not NODE or not os.path.isdir(os.path.join(MODULES, "node_modules", "kafkajs")):
    print("SKIP: kafkajs not installed (needs: kafkajs, tools/install-clients.sh)",
          file=sys.stderr)
    sys.exit(SKIP)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
KEY = b"kwire-test-key-0123456789abcdef"
N = 40

RULES = """rewrite:
  - name: tag-orders
    match: {{api: Produce, topic: ["orders", "txn"]}}
    headers:
      add: {{x-kwire-client: "${{client_id}}",
            x-kwire-via: "${{source}} ${{instance}} ${{time_ms}} ${{time}} [${{principal}}] $$"}}
      remove: [authorization]
    mask:
      - {{path: user.email, hash: true}}
      - {{path: card, replace: "***"}}
      - {{path: "items[*].secret", drop: true}}
    hash_key_file: {key}
    on_error: refuse
  - name: lenient
    match: {{api: Produce, topic: lenient}}
    headers: {{set: {{x-seen: "yes"}}}}
    mask: [{{path: card, replace: "***"}}]
    on_error: pass
  - name: mask-pii
    match: {{api: Fetch, client_id: "masked-*", topic: ["pii", "pii-strict"]}}
    headers: {{add: {{x-masked-for: "${{client_id}}"}}}}
    mask: [{{path: ssn, replace: "***"}}]
    on_error: refuse
"""

KAFKAJS = r"""
const path = require('path')
const { createRequire } = require('module')
const nrequire = createRequire(path.join(process.env.KWIRE_NODE_CLIENTS, 'package.json'))
const { Kafka, logLevel } = nrequire('kafkajs')
const [bootstrap, topic, n] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'masked-kafkajs', brokers: [bootstrap], logLevel: logLevel.NOTHING })
const consumer = kafka.consumer({ groupId: 'kjs-' + Date.now() })
const got = []
const timer = setTimeout(() => { console.error('timeout'); process.exit(1) }, 30000)
;(async () => {
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({ eachMessage: async ({ message }) => {
    const headers = {}
    for (const [k, v] of Object.entries(message.headers || {})) headers[k] = v.toString()
    got.push({ value: message.value.toString(), headers })
    if (got.length >= Number(n)) {
      clearTimeout(timer)
      process.stdout.write(JSON.stringify(got) + '\n', () => process.exit(0))
    }
  } })
})().catch(e => { console.error(e); process.exit(1) })
"""


def mac(s):
    return hmac.new(KEY, s.encode(), hashlib.sha256).hexdigest()


def value(codec, i):
    return {"user": {"email": f"u{i}@{codec}.example", "name": f"n{i}"}, "card": "4111-1111",
            "items": [{"secret": "s", "sku": i}], "codec": codec, "i": i}


def consume(bootstrap, topic, n, client_id="direct", isolation=None, timeout=20, errors=None):
    conf = {"bootstrap.servers": bootstrap, "group.id": f"g-{topic}-{time.time()}",
            "client.id": client_id, "auto.offset.reset": "earliest",
            "enable.auto.commit": False}
    if isolation:
        conf["isolation.level"] = isolation
    cons = Consumer(conf)
    cons.assign([TopicPartition(topic, 0, 0)])
    got = []
    end = time.monotonic() + timeout
    while time.monotonic() < end and len(got) < n:
        m = cons.poll(0.5)
        if m is None:
            continue
        if m.error():
            if errors is not None:
                errors.append(m.error())
                if len(errors) >= 2:
                    break
            continue
        got.append((m.value(), dict(m.headers() or [])))
    cons.close()
    return got


def produce(bootstrap, topic, values, codec="none", headers=None, **kw):
    ok, errs = [], []
    conf = {"bootstrap.servers": bootstrap, "compression.codec": codec, "linger.ms": 20,
            "client.id": f"prod-{codec}", "message.timeout.ms": 20000}
    conf.update(kw)
    p = Producer(conf)
    for v in values:
        p.produce(topic, v, partition=0, headers=headers,
                  on_delivery=lambda e, m: (errs if e else ok).append(e or m.offset()))
        p.poll(0)
    left = p.flush(30)
    check(left == 0, f"produce to {topic} ({codec}): {left} messages neither delivered nor failed")
    return ok, errs


def check_masked(v, hdrs, client):
    d = json.loads(v)
    want = value(d["codec"], d["i"])
    check(d["user"]["email"] == mac(want["user"]["email"]),
          f"email not the HMAC: {d['user']['email']}")
    check(d["user"]["name"] == want["user"]["name"], f"name changed: {d}")
    check(d["card"] == "***", f"card not masked: {d}")
    check(d["items"] == [{"sku": d["i"]}], f"items[*].secret not dropped: {d['items']}")
    check("authorization" not in hdrs, f"authorization header kept: {hdrs}")
    check(hdrs.get("keep") == b"1", f"other header lost: {hdrs}")
    check(hdrs.get("x-kwire-client") == client.encode(), f"x-kwire-client: {hdrs}")
    via = hdrs.get("x-kwire-via", b"").decode()
    m = re.fullmatch(r"127\.0\.0\.1 (\S+) (\d+) (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) "
                     r"\[\] \$", via)
    check(m and m.group(1) == socket.gethostname(), f"x-kwire-via: {via!r}")
    ms = int(m.group(2))
    check(abs(ms / 1000 - time.time()) < 600, f"${{time_ms}} {ms} is not now")
    check(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z" ==
          m.group(3), f"${{time}} and ${{time_ms}} differ: {via}")


def main():
    tmp = tempfile.mkdtemp(prefix="kwire-records-")
    key = os.path.join(tmp, "mask.key")
    with open(key, "wb") as f:
        f.write(KEY + b"\n")
    rules = os.path.join(tmp, "rules.yaml")
    with open(rules, "w") as f:
        f.write(RULES.format(key="mask.key"))  # relative: from the rules file's folder
    topics = (("orders", 1), ("txn", 1), ("lenient", 1), ("pii", 1), ("pii-strict", 1),
              ("other", 1))
    with Cluster(topics=topics, extra_proxy_args=["--rules", rules]) as c:
        # Produce: an idempotent producer per codec, through kwire.
        hdrs = [("authorization", b"Bearer x"), ("keep", b"1")]
        for codec in CODECS:
            vals = [json.dumps(value(codec, i)).encode() for i in range(N)]
            ok, errs = produce(c.bootstrap, "orders", vals, codec, hdrs,
                               **{"enable.idempotence": True})
            check(len(ok) == N and not errs, f"{codec}: delivered {len(ok)}, errors {errs}")
        # kcat too, with a header to remove.
        line = json.dumps(value("kcat", 0))
        r = subprocess.run([KCAT, "-b", c.bootstrap, "-P", "-t", "orders", "-p", "0",
                            "-H", "authorization=x", "-H", "keep=1",
                            "-X", "client.id=kcat-prod"], input=line.encode(),
                           capture_output=True, timeout=30)
        check(r.returncode == 0, f"kcat produce: {r.stderr.decode()}")
        got = consume(c.upstream, "orders", N * len(CODECS) + 1)
        check(len(got) == N * len(CODECS) + 1, f"direct consumer read {len(got)} records")
        seen = set()
        for v, h in got:
            d = json.loads(v)
            check((d["codec"], d["i"]) not in seen, f"duplicate {d['codec']} {d['i']}")
            seen.add((d["codec"], d["i"]))
            check_masked(v, h, "kcat-prod" if d["codec"] == "kcat" else f"prod-{d['codec']}")
        print(f"produce: {len(got)} records stored masked, once each, with every codec and kcat")

        # A transactional producer through the same rule.
        p = Producer({"bootstrap.servers": c.bootstrap, "transactional.id": "rw-txn",
                      "client.id": "prod-txn", "compression.codec": "lz4", "linger.ms": 20})
        p.init_transactions(20)
        p.begin_transaction()
        for i in range(N):
            p.produce("txn", json.dumps(value("txn", i)).encode(), partition=0, headers=hdrs)
        p.commit_transaction(30)
        got = consume(c.upstream, "txn", N, isolation="read_committed")
        check(len(got) == N, f"read_committed consumer read {len(got)} of {N}")
        check(sorted(json.loads(v)["i"] for v, _ in got) == list(range(N)), "txn duplicates")
        for v, h in got:
            check_masked(v, h, "prod-txn")
        print(f"transactions: {N} records committed, masked, once each")

        # on_error on Produce: refuse (INVALID_RECORD, nothing stored) and pass.
        ok, errs = produce(c.bootstrap, "orders", [b"not json"])
        check(not ok and errs and errs[0].code() == KafkaError.INVALID_RECORD,
              f"non-JSON to a refuse rule: delivered {ok}, errors {errs}")
        ok, errs = produce(c.bootstrap, "lenient", [b"not json", b'{"card":"1"}'])
        check(len(ok) == 2 and not errs, f"lenient: {ok} {errs}")
        got = consume(c.upstream, "lenient", 2)
        check([v for v, _ in got] == [b"not json", b'{"card":"***"}'], f"lenient stored {got}")
        check(all(h.get("x-seen") == b"yes" for _, h in got), f"lenient headers {got}")
        # No record of the refused request in the log: the partition's high
        # watermark (no transactions on it: one offset per record) says so
        # at once, where reading for one record too many waited out a timeout.
        wc = Consumer({"bootstrap.servers": c.upstream, "group.id": "hw"})
        _, high = wc.get_watermark_offsets(TopicPartition("orders", 0), timeout=10)
        wc.close()
        check(high == N * len(CODECS) + 1,
              f"the refused record reached the broker (high watermark {high})")
        print("on_error (Produce): refuse answered INVALID_RECORD, pass kept the record")

        # Legacy message format (magic 1, Produce v2 from kafka-python speaking
        # Kafka 0.10): not rewritten, so refused, with the reason in the log.
        lp = kafka.KafkaProducer(bootstrap_servers=c.bootstrap, api_version=(0, 10, 1),
                                 retries=0)
        fut = lp.send("orders", json.dumps(value("legacy", 0)).encode(), partition=0)
        try:
            fut.get(timeout=20)
            check(False, "a legacy message set passed a refuse rule")
        except kafka.errors.KafkaError as e:
            print(f"legacy producer: {type(e).__name__}")
        lp.close()
        check("legacy message format (magic 1)" in c.proxy_stderr(),
              "no clear log line for the legacy message set")

        # Fetch: stored as produced (directly), masked for masked-* only.
        pii = [json.dumps({"ssn": f"123-45-{i:04d}", "name": f"p{i}"}).encode()
               for i in range(10)]
        ok, errs = produce(c.upstream, "pii", pii, "gzip")  # kafkajs reads gzip by itself
        check(len(ok) == 10, f"direct produce to pii: {errs}")
        masked = [json.dumps({"ssn": "***", "name": f"p{i}"}).encode() for i in range(10)]
        got = consume(c.bootstrap, "pii", 10, client_id="masked-cf")
        check([v for v, _ in got] == masked, f"masked-cf saw {got[:2]}")
        check(all(h.get("x-masked-for") == b"masked-cf" for _, h in got), f"{got[:1]}")
        got = consume(c.bootstrap, "pii", 10, client_id="analytics")
        check([v for v, _ in got] == pii and all(not h for _, h in got),
              f"an unmatched client through kwire saw {got[:2]}")
        got = consume(c.upstream, "pii", 10)
        check([v for v, _ in got] == pii, f"the direct consumer saw {got[:2]}")
        r = subprocess.run([KCAT, "-b", c.bootstrap, "-C", "-t", "pii", "-p", "0", "-o",
                            "beginning", "-c", "10", "-e", "-X", "client.id=masked-kcat",
                            "-f", "%s|%h\n"], capture_output=True, timeout=30)
        check(r.returncode == 0, f"kcat consume: {r.stderr.decode()}")
        lines = r.stdout.decode().splitlines()
        check(lines == [f"{m.decode()}|x-masked-for=masked-kcat" for m in masked],
              f"kcat saw {lines[:2]}")
        env = dict(os.environ, KWIRE_NODE_CLIENTS=MODULES)
        script = os.path.join(tmp, "kafkajs-consume.js")
        with open(script, "w") as f:
            f.write(KAFKAJS)
        r = subprocess.run([NODE, script, c.bootstrap, "pii", "10"], env=env,
                           capture_output=True, timeout=60)
        check(r.returncode == 0, f"kafkajs: {r.stderr.decode()[-2000:]}")
        js = json.loads(r.stdout)
        check(sorted(m["value"] for m in js) == sorted(v.decode() for v in masked),
              f"kafkajs saw {js[:2]}")
        check(all(m["headers"].get("x-masked-for") == "masked-kafkajs" for m in js), f"{js[:1]}")
        print("fetch: masked for confluent-kafka, kcat and kafkajs as masked-*; originals "
              "for another client and a direct consumer")

        # on_error: refuse on Fetch: the masked consumer gets INVALID_RECORD, no data.
        produce(c.upstream, "pii-strict", [b"not json"])
        errors = []
        got = consume(c.bootstrap, "pii-strict", 1, client_id="masked-strict", timeout=8,
                      errors=errors)
        check(not got, f"a refused partition delivered {got}")
        check(any(e.code() == KafkaError.INVALID_RECORD for e in errors),
              f"masked consumer errors: {errors}")
        got = consume(c.bootstrap, "pii-strict", 1, client_id="plain")
        check([v for v, _ in got] == [b"not json"], f"unmatched consumer: {got}")
        print("on_error (Fetch): refuse answered INVALID_RECORD without records")

        m = c.metrics()
        check(m.get(("kwire_rewrite_requests_total", frozenset())) >= len(CODECS) + 2,
              f"kwire_rewrite_requests_total {m.get(('kwire_rewrite_requests_total', frozenset()))}")
        check(m.get(("kwire_rewrite_responses_total", frozenset())) >= 3, "responses rewritten")
        check(m.get(("kwire_rewrite_refused_total", frozenset())) >= 2, "refusals counted")
        check(m.get(("kwire_rewrite_passed_total", frozenset())) >= 1, "passes counted")
        err = c.proxy_stderr()
        check("error" not in err.lower().replace("_error", ""), f"proxy errors:\n{err}")
    print("ok")


if __name__ == "__main__":
    main()
