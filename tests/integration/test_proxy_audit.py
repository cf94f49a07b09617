"""kwire proxy audit: audit rules and the audit's sinks, with real clients
through kwire in front of the mock cluster (both peers).

- An audit rule on pii.* with `log: records` and a redacted header: kcat and
  confluent-kafka produce, confluent-kafka consumes; the JSON-lines file has
  the produced records (key, value, headers) and the fetched ones (with
  their offsets), the header's value is "[redacted]", and the secret is
  nowhere in the file. The same with batches of every codec (gzip, snappy,
  lz4, zstd), produced and fetched; and a Produce whose records take more
  than one line (numbered parts, every record once).
- A `log: summary` rule writes the access log's summary of each pair.
- A denied Produce and a policy refusal are in the audit (the default sink,
  --audit-log, and the matching rule's sink) with the rule's name and error.
- SIGHUP after the file was moved away: kwire writes a new file.
- A reload that adds a Kafka sink keeps the open file sink (its counters go
  on); audit records arrive on a topic of a second mock cluster, read back
  with a consumer; with that cluster killed, forwarding is unaffected and
  the drop counter rises.
- /metrics counts records, writes and drops per sink.
- Over mTLS, the lines carry the client's principal: alice's records and
  bob's refusal each name who it was.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, _readline, check, mockcluster_path  # noqa: E402

try:
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
except ImportError:
    print("SKIP: confluent_kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

SECRET = "Bearer-s3cr3t-T0KEN-4242"

RULES = """access:
  - name: pii-locked
    match: {api: Produce, topic: pii.locked}
    deny: TOPIC_AUTHORIZATION_FAILED
policies:
  - name: durable-orders
    match: {topic: orders}
    require: {acks: all}
audit:
  - name: pii-access
    match: {topic: "pii.*"}
    log: records
    redact: {headers: [authorization]}
    to: audit.jsonl
  - name: orders-summary
    match: {api: Produce, topic: orders}
    log: summary
    to: orders.jsonl
"""

KAFKA_RULE = """  - name: pii-to-kafka
    match: {topic: "pii.*"}
    log: records
    redact: {headers: [authorization]}
    to: {kafka: audit-trail, bootstrap: "%s", queue_bytes: 8192,
         properties: {message.timeout.ms: "60000"}}
"""


def lines(path, settle=0.0):
    time.sleep(settle)
    try:
        with open(path) as f:
            return [json.loads(s) for s in f if s.strip()]
    except FileNotFoundError:
        return []


def wait_for(what, fn, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    check(False, f"timed out waiting for {what}")


def produce(bootstrap, topic, msgs, **kw):
    """msgs: [(key, value, headers)] to partition 0; returns (ok, errors)."""
    ok, errs = [], []
    conf = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000,
            "message.timeout.ms": 20000}
    conf.update(kw)
    p = Producer(conf)
    for k, v, h in msgs:
        p.produce(topic, v, key=k, headers=h, partition=0,
                  on_delivery=lambda e, m: (errs if e else ok).append(e or m.offset()))
    p.poll(0)
    check(p.flush(30) == 0, f"produce to {topic}: messages neither delivered nor failed")
    return ok, errs


def consume(bootstrap, topic, want, timeout=20, until=None):
    """Reads partition 0 of topic from the start: want messages, or until
    until(message) holds for one."""
    cons = Consumer({"bootstrap.servers": bootstrap, "group.id": f"a-{topic}-{time.time()}",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
    cons.assign([TopicPartition(topic, 0, 0)])
    got = []
    end = time.monotonic() + timeout
    while time.monotonic() < end and (len(got) < want if until is None else
                                      not any(until(m) for m in got)):
        m = cons.poll(0.5)
        if m is None or m.error():
            continue
        got.append(m)
    cons.close()
    return got


def kcat_produce(bootstrap, topic, data, *args):
    return subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", topic, "-p", "0", *args],
                          input=data, capture_output=True, timeout=60)


def records_of(entries, api):
    return [r for e in entries if e.get("event") == "records" and e.get("api") == api
            for r in e["records"]]


def part_mtls(tmp):
    import tls_certs
    certs = tls_certs.make_certs(os.path.join(tmp, "certs"))
    rules = os.path.join(tmp, "mtls-rules.yaml")
    audit = os.path.join(tmp, "mtls-audit.jsonl")
    with open(rules, "w") as f:
        f.write("access:\n"
                "  - name: bob-is-read-only\n"
                "    match: {api: Produce, principal: \"User:bob\"}\n"
                "    deny: TOPIC_AUTHORIZATION_FAILED\n"
                "audit:\n"
                "  - name: pii-access\n"
                "    match: {topic: \"pii.*\"}\n"
                "    log: records\n"
                "    to: mtls-audit.jsonl\n")
    args = ["--tls-cert", certs["server"], "--tls-key", certs["server_key"],
            "--tls-client-ca", certs["ca"],
            "--tls-principal-rules", "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L",
            "--rules", rules]
    with Cluster(topics=(("pii.mtls", 1),), extra_proxy_args=args) as c:
        for who in ("alice", "bob"):
            ok, errs = produce(c.bootstrap, "pii.mtls", [(who.encode(), b"v", None)],
                               **{"security.protocol": "SSL", "ssl.ca.location": certs["ca"],
                                  "ssl.certificate.location": certs[who],
                                  "ssl.key.location": certs[who + "_key"]})
            check((len(ok) == 1) == (who == "alice"), f"{who}: {ok} {errs}")
        got = wait_for("alice's records and bob's refusal", lambda: (
            lambda es: es if any(e["event"] == "deny" for e in es) and
            records_of(es, "Produce") else None)(lines(audit)))
        recs = [e for e in got if e["event"] == "records" and e["api"] == "Produce"]
        check(recs and all(e["principal"] == "User:alice" for e in recs) and
              recs[0]["records"][0]["key"] == "alice", f"alice's lines: {recs}")
        deny = [e for e in got if e["event"] == "deny"]
        check(deny[0]["principal"] == "User:bob" and deny[0]["rule"] == "bob-is-read-only" and
              deny[0]["topics"] == ["pii.mtls"], f"bob's refusal: {deny[0]}")
    print("mTLS: the audit names alice and bob")


def main():
    tmp = tempfile.mkdtemp(prefix="kwire-audit-")
    rules = os.path.join(tmp, "rules.yaml")
    audit = os.path.join(tmp, "audit.jsonl")
    orders = os.path.join(tmp, "orders.jsonl")
    default = os.path.join(tmp, "default.jsonl")
    with open(rules, "w") as f:
        f.write(RULES)
    topics = (("pii.users", 1), ("pii.locked", 1), ("orders", 1), ("plain", 1))
    with Cluster(topics=topics, extra_proxy_args=["--rules", rules, "--audit-log", default]) as c:
        # kcat: two records with a key and headers, one of them secret.
        r = kcat_produce(c.bootstrap, "pii.users", b"k1:v-one\nk2:v-two\n", "-K:",
                         "-H", f"authorization={SECRET}", "-H", "trace-id=t-kcat")
        check(r.returncode == 0, f"kcat: {r.stderr[-300:]!r}")
        # confluent-kafka: records with headers (one null value).
        ok, errs = produce(c.bootstrap, "pii.users",
                           [(b"ck-1", b"val-1", [("authorization", SECRET.encode()),
                                                  ("trace-id", b"t-ck")]),
                            (b"ck-2", None, [("trace-id", b"t-ck2")])])
        check(len(ok) == 2 and not errs, f"confluent produce: {ok} {errs}")
        # Traffic no audit rule matches writes nothing.
        ok, errs = produce(c.bootstrap, "plain", [(b"p", b"plain-value", None)])
        check(len(ok) == 1, f"plain: {errs}")
        # A consumer reads them back: the Fetch responses' records.
        got = consume(c.bootstrap, "pii.users", 4)
        check(len(got) == 4, f"consumed {len(got)} of 4")

        def fetched():
            return len(records_of(lines(audit), "Fetch")) >= 4 and lines(audit)
        entries = wait_for("4 fetched records in the audit", fetched)
        produced = records_of(entries, "Produce")
        by_key = {r["key"]: r for r in produced}
        check(set(by_key) == {"k1", "k2", "ck-1", "ck-2"}, f"produced records: {produced}")
        check(by_key["k1"]["value"] == "v-one" and by_key["k2"]["value"] == "v-two" and
              by_key["ck-1"]["value"] == "val-1" and by_key["ck-2"]["value"] is None,
              f"values: {produced}")
        hdrs = {h["key"]: h["value"] for h in by_key["k1"]["headers"]}
        check(hdrs == {"authorization": "[redacted]", "trace-id": "t-kcat"}, f"kcat headers: {hdrs}")
        hdrs = {h["key"]: h["value"] for h in by_key["ck-1"]["headers"]}
        check(hdrs == {"authorization": "[redacted]", "trace-id": "t-ck"}, f"ck headers: {hdrs}")
        check(all(r["topic"] == "pii.users" and r["partition"] == 0 for r in produced),
              "topic and partition of each record")
        fetched_recs = records_of(entries, "Fetch")
        offs = sorted(r["offset"] for r in fetched_recs)
        check(offs[:4] == [0, 1, 2, 3], f"fetched offsets {offs}")
        check({r["key"] for r in fetched_recs} >= {"k1", "k2", "ck-1", "ck-2"},
              f"fetched keys {fetched_recs}")
        check(all(e["rule"] == "pii-access" and e["client"].startswith("127.0.0.1:") and
                  "principal" in e and "client_id" in e for e in entries
                  if e.get("event") == "records"), f"record lines: {entries[:2]}")
        check(not any("plain" in json.dumps(e) for e in entries), "plain traffic not audited")
        with open(audit) as f:
            text = f.read()
        check(SECRET not in text, "the secret header value is nowhere in the audit file")

        # A denied Produce: in the rule's sink and in the default sink.
        r = kcat_produce(c.bootstrap, "pii.locked", b"nope\n")
        check(r.returncode != 0, "kcat to pii.locked is refused")

        def denied(path):
            return [e for e in lines(path) if e.get("event") == "deny" and
                    e.get("rule") == "pii-locked"]
        d = wait_for("the denial in the default sink", lambda: denied(default))
        check(d[0]["error"] == "TOPIC_AUTHORIZATION_FAILED" and d[0]["api"] == "Produce" and
              d[0]["topics"] == ["pii.locked"] and d[0]["client"].startswith("127.0.0.1:") and
              d[0]["principal"] == "" and d[0]["client_id"] == "rdkafka", f"denial: {d[0]}")
        wait_for("the denial in the pii sink", lambda: denied(audit))

        # A policy refusal (acks=1 to orders).
        ok, errs = produce(c.bootstrap, "orders", [(None, b"o1", None)], acks=1)
        check(not ok and errs and errs[0].code() == KafkaError.INVALID_REQUIRED_ACKS,
              f"acks=1 to orders: {ok} {errs}")
        pol = wait_for("the policy refusal", lambda: [
            e for e in lines(default) if e.get("event") == "policy"])
        check(pol[0]["rule"] == "durable-orders" and pol[0]["error"] == "INVALID_REQUIRED_ACKS"
              and pol[0]["topics"] == ["orders"], f"policy: {pol[0]}")
        check(any(e.get("event") == "policy" for e in lines(orders)),
              "the policy refusal in the matching audit rule's sink too")
        # A summary rule: the access log's summary of the pair.
        ok, errs = produce(c.bootstrap, "orders", [(None, b"o2", None)], acks=-1)
        check(len(ok) == 1, f"orders acks=all: {errs}")
        s = wait_for("a summary line", lambda: [
            e for e in lines(orders) if e.get("event") == "summary"])
        sm = s[0]["summary"]
        check(s[0]["rule"] == "orders-summary" and sm["api"] == "Produce" and
              sm["status"] == "ok" and sm["partitions"][0]["topic"] == "orders" and
              sm["partitions"][0]["records"] == 1, f"summary: {s[0]}")

        # Every codec: the records are read from compressed batches, on the
        # way in (Produce) and on the way out (Fetch).
        codecs = ("gzip", "snappy", "lz4", "zstd")
        for codec in codecs:
            ok, errs = produce(c.bootstrap, "pii.users",
                               [(f"{codec}-{i}".encode(), f"{codec} value {i}".encode() * 20,
                                 [("authorization", SECRET.encode())]) for i in range(3)],
                               **{"compression.type": codec, "linger.ms": 50})
            check(len(ok) == 3 and not errs, f"{codec}: {ok} {errs}")
        total = 4 + 3 * len(codecs)
        check(len(consume(c.bootstrap, "pii.users", total)) == total, "consumed every codec")

        def by_codec(api):
            recs = records_of(lines(audit), api)
            return {k: [r for r in recs if r["key"].startswith(k + "-")] for k in codecs}
        for api in ("Produce", "Fetch"):
            got = wait_for(f"compressed records in the audit ({api})",
                           lambda: all(len(v) >= 3 for v in by_codec(api).values()) and
                           by_codec(api))
            for codec, recs in got.items():
                check(all(r["value"] == f"{codec} value {r['key'][-1]}" * 20 and
                          r["headers"] == [{"key": "authorization", "value": "[redacted]"}]
                          for r in recs), f"{api} {codec} records: {recs[:1]}")
        with open(audit) as f:
            check(SECRET not in f.read(), "no secret after the compressed records either")

        # A Produce whose records take more than one line (256 KiB): every
        # record is there once, over numbered parts.
        big = 400
        ok, errs = produce(c.bootstrap, "pii.users",
                           [(b"big-%03d" % i, b"b" * 900, None) for i in range(big)],
                           **{"linger.ms": 300, "batch.size": 4000000})
        check(len(ok) == big and not errs, f"big produce: {len(ok)} {errs}")

        def big_lines():
            return [e for e in lines(audit) if e.get("event") == "records" and
                    e["api"] == "Produce" and
                    any(r["key"].startswith("big-") for r in e["records"])]
        bl = wait_for("the big produce's lines",
                      lambda: sum(len(e["records"]) for e in big_lines()) >= big and big_lines())
        keys = sorted(r["key"] for e in bl for r in e["records"])
        check(keys == [f"big-{i:03d}" for i in range(big)], f"big keys: {len(keys)}")
        check(any(e.get("part", 0) >= 2 for e in bl), f"parts: {[e.get('part') for e in bl]}")
        check(all(len(json.dumps(e)) < 400000 for e in bl), "each line under 400 KB")

        check(c.metric("kwire_audit_records_written_total", sink=audit) >= 3,
              "written records counted for the pii sink")
        check(c.metric("kwire_audit_records_written_total", sink=default) >= 2,
              "written records counted for the default sink")
        check(c.metric("kwire_audit_records_dropped_total", sink=audit) == 0, "no drops")

        # Log rotation: the file is moved away, SIGHUP, a new file appears.
        os.rename(audit, audit + ".1")
        os.kill(c.pid(), signal.SIGHUP)
        wait_for("a new audit file after SIGHUP", lambda: os.path.exists(audit))
        ok, _ = produce(c.bootstrap, "pii.users", [(b"after-hup", b"v", None)])
        check(len(ok) == 1, "produce after SIGHUP")
        new = wait_for("records in the new file",
                       lambda: [r for r in records_of(lines(audit), "Produce")
                                if r["key"] == "after-hup"])
        check(new, "the record after SIGHUP is in the new file")
        check(not any(r["key"] == "after-hup" for r in records_of(lines(audit + ".1"), "Produce")),
              "the moved file gets nothing new")

        # A Kafka sink on a second cluster, added by a reload.
        mc2 = subprocess.Popen([mockcluster_path(), "--brokers", "1", "--topic", "audit-trail:1"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                line = _readline(mc2, deadline, "second mock cluster")
                if line.startswith("BOOTSTRAP "):
                    boot2 = line.split()[1]
                elif line == "READY":
                    break
            before = c.metric("kwire_audit_records_total", sink=audit)
            reloads = c.metric("kwire_rules_reloads_total")
            with open(rules, "w") as f:
                f.write(RULES + KAFKA_RULE % boot2)
            wait_for("the reload", lambda: c.metric("kwire_rules_reloads_total") > reloads)
            sink = f"kafka:audit-trail@{boot2}"
            ok, _ = produce(c.bootstrap, "pii.users",
                            [(b"to-kafka", b"kv", [("authorization", SECRET.encode())])])
            check(len(ok) == 1, "produce with the Kafka sink")
            got = consume(boot2, "audit-trail", 0, until=lambda m: b'"to-kafka"' in m.value())
            check(got, "an audit record on the second cluster's topic")
            evs = [json.loads(m.value()) for m in got]
            recs = [r for e in evs for r in e.get("records", [])]
            check(any(r["key"] == "to-kafka" for r in recs), f"kafka sink records: {evs}")
            check(all(SECRET not in m.value().decode() for m in got), "redacted on Kafka too")
            check(all(m.key() == b"pii-to-kafka" for m in got), "message keys: the rule")
            check(c.metric("kwire_audit_records_total", sink=audit) > before,
                  "the file sink kept open across the reload (its counters go on)")
            wait_for("a delivery counted",
                     lambda: c.metric("kwire_audit_records_written_total", sink=sink) >= 1)

            # The sink cluster dies: forwarding goes on, drops are counted.
            mc2.stdin.close()
            mc2.wait(10)
            n = 40
            ok, errs = produce(c.bootstrap, "pii.users",
                               [(b"dead-%d" % i, b"x" * 400, None) for i in range(n)],
                               **{"linger.ms": 0, "batch.num.messages": 1})
            check(len(ok) == n and not errs, f"forwarding with the sink down: {len(ok)} {errs}")
            wait_for("drops counted",
                     lambda: c.metric("kwire_audit_records_dropped_total", sink=sink) >= 1)
            check(c.metric("kwire_audit_kafka_dropped_total", sink=sink) >= 1,
                  "the producer's own drop counter")
            check(len([r for r in records_of(lines(audit), "Produce")
                       if r["key"].startswith("dead-")]) == n,
                  "the file sink still has every record")
        finally:
            if mc2.poll() is None:
                mc2.kill()
                mc2.wait()
    part_mtls(tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
