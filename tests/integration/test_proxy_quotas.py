"""kwire proxy --rules quotas, Kafka's way (KIP-13 rates, KIP-219 muting),
with real clients through kwire in front of the mock cluster (both peers).

In one 30 s window, at the same time:
- a confluent-kafka (librdkafka) producer under a 1 MiB/s produce quota
  lands within 15% of it (librdkafka ignores ThrottleTimeMs: only kwire's
  mute slows it), and its throttle callback sees the ThrottleTimeMs kwire
  put in the responses;
- a kafka-python producer under its own 1 MiB/s quota (another client id)
  lands the same way, and its own produce-throttle-time metrics show the
  throttle;
- a producer whose client id no quota matches runs far above the quota
  (for its first 2 s: flat out, the mock cluster would hold GBs);
- a confluent-kafka consumer under a 1 MiB/s fetch quota consumes within
  15% of it, with no fetch-session error in its logs or in the broker's
  Fetch responses (the access log).
Then, with a raw socket: a request-rate quota throttles ApiVersions v1
(older than KIP-219: kwire holds the response back for the throttle) and
ApiVersions v2 (KIP-219: the response comes at once with ThrottleTimeMs, and the next
request is not read before the throttle is over); and throttles of many
client ids keep /metrics bounded (the most throttled keys, the rest as
key="other"). Every throttle is in the audit trail's default sink.
"""
import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, check  # noqa: E402

try:
    from confluent_kafka import Consumer, Producer, TopicPartition
except ImportError:
    print("SKIP: confluent_kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)
try:
    from kafka import KafkaProducer
except ImportError:
    print("SKIP: kafka-python not installed (needs: python3-kafka, tools/install-deps.sh)",
          file=sys.stderr)
    sys.exit(SKIP)

QUOTA = 1024 * 1024
RUN = 30.0
FAST = 2.0
FETCH_PARTS = 12  # 4 MiB each: the consumer does not reach the end in time
VALUE = b"v" * 10000
RULES = """quotas:
  - name: rdk-produce
    match: {client_id: rdk-slow}
    produce_bytes_per_sec: 1MiB
  - name: kp-produce
    match: {client_id: kp-slow}
    produce_bytes_per_sec: 1MiB
  - name: consume
    match: {client_id: cons-slow}
    fetch_bytes_per_sec: 1MiB
  - name: req-rate
    match: {client_id: "req-*"}
    per: client_id
    requests_per_sec: 5
  - name: many
    match: {client_id: "many-*"}
    per: client_id
    requests_per_sec: 1
"""
SESSION_ERRORS = ("FETCH_SESSION", "INVALID_FETCH_SESSION", "SESSION_ID_NOT_FOUND")


def in_window(stats, t0):
    """Bytes per second of the (time, bytes) in [t0, t0 + RUN)."""
    return sum(n for t, n in stats if t0 <= t < t0 + RUN) / RUN


def rdk_producer(c, client_id, topic, stats, throttles, t0, run=RUN):
    """A librdkafka producer that sends as fast as it is let until t0 + run;
    stats gets (time, bytes) of each delivery, throttles each throttle
    event's time (ms)."""
    conf = {"bootstrap.servers": c.bootstrap, "client.id": client_id, "linger.ms": 5,
            "queue.buffering.max.kbytes": 4096, "message.timeout.ms": 120000,
            "compression.type": "none"}
    if throttles is not None:
        conf["throttle_cb"] = lambda ev: throttles.append(ev.throttle_time * 1000)
    p = Producer(conf)

    def dr(err, msg):
        if not err:
            stats.append((time.monotonic(), len(msg.value())))
    while time.monotonic() < t0 + run:
        try:
            p.produce(topic, VALUE, on_delivery=dr)
        except BufferError:
            p.poll(0.02)
            continue
        p.poll(0)
    p.flush(60)


def kp_producer(c, topic, stats, out):
    """kafka-python, as fast as it is let until t0 + RUN; out gets its
    producer metrics."""
    kp = KafkaProducer(bootstrap_servers=c.bootstrap, client_id="kp-slow", linger_ms=5,
                       buffer_memory=4 * 1024 * 1024, max_block_ms=120000,
                       request_timeout_ms=120000)

    def ok(md):
        stats.append((time.monotonic(), len(VALUE)))
    t0 = out["t0"]
    try:
        while time.monotonic() < t0 + RUN:
            kp.send(topic, VALUE).add_callback(ok)
    except Exception as e:  # e.g. its buffer stayed full for max_block_ms
        out["error"] = f"{time.monotonic() - t0:.1f} s into the window: {e!r}"
    out["metrics"] = kp.metrics()["producer-metrics"]
    try:
        kp.flush(60)
    except Exception as e:  # the window is over: what is left does not count
        print(f"kafka-python: flush after the window: {e!r}", file=sys.stderr)
    kp.close(10)


def consumer(c, topic, stats, logs, throttles, ready, box):
    """A librdkafka consumer reading topic (filled beforehand); sets ready
    at its first record (librdkafka takes seconds to start fetching), then
    reads until box["t0"] + RUN."""
    cons = Consumer({"bootstrap.servers": c.bootstrap, "client.id": "cons-slow",
                     "group.id": "quota-consumer", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "max.partition.fetch.bytes": 131072,
                     "fetch.max.bytes": 524288, "message.max.bytes": 131072,
                     "error_cb": lambda e: logs.append(str(e)),
                     "throttle_cb": lambda ev: throttles.append(ev.throttle_time * 1000),
                     "logger": _Log(logs)})
    cons.assign([TopicPartition(topic, p, 0) for p in range(FETCH_PARTS)])
    end = time.monotonic() + 60
    while time.monotonic() < (box["t0"] + RUN if "t0" in box else end):
        m = cons.poll(0.2)
        if m is not None and not m.error():
            ready.set()
            stats.append((time.monotonic(), len(m.value())))
        elif m is not None:
            logs.append(str(m.error()))
    cons.close()


class _Log:
    """A logging.Logger stand-in for librdkafka's log lines."""

    def __init__(self, out):
        self.out = out

    def log(self, level, fmt, *args):
        self.out.append(fmt % args if args else fmt)


def fill(c, topic, parts, nbytes):
    """Writes nbytes of VALUE records to topic's partitions evenly, straight
    to the cluster, in batches of 10 records: a Fetch answer carries whole
    batches, and small ones keep the consumer's answers (fetch.max.bytes)
    small. (The mock cluster keeps about 5 MB per partition.)"""
    p = Producer({"bootstrap.servers": c.upstream, "linger.ms": 20,
                  "queue.buffering.max.kbytes": 65536, "batch.num.messages": 10})
    for i in range(nbytes // len(VALUE)):
        while True:
            try:
                p.produce(topic, VALUE, partition=i % parts)
                break
            except BufferError:
                p.poll(0.05)
    left = p.flush(60)
    check(left == 0, f"filling {topic}: {left} records not written")


# ---- a raw client: ApiVersions requests, to see when the answers come ----

def apiversions_request(version, corr, client_id):
    """ApiVersions v1 or v2: an empty body."""
    cid = client_id.encode()
    hdr = struct.pack(">hhih", 18, version, corr, len(cid)) + cid
    return struct.pack(">i", len(hdr)) + hdr


def read_frame(s):
    def exact(n):
        b = b""
        while len(b) < n:
            chunk = s.recv(n - len(b))
            if not chunk:
                raise AssertionError("kwire closed the connection")
            b += chunk
        return b
    size = struct.unpack(">i", exact(4))[0]
    return exact(size)


def throttle_of(frame):
    """(correlation id, ThrottleTimeMs) of an ApiVersions v1/v2 response:
    correlation id | ErrorCode | ApiKeys [key, min, max] | ThrottleTimeMs.
    (ThrottleTimeMs comes after an array here: kwire finds it by a walk.)"""
    corr, _err, n = struct.unpack(">ihi", frame[:10])
    return corr, struct.unpack(">i", frame[10 + 6 * n:14 + 6 * n])[0]


def raw_request_quota(c):
    """ApiVersions under requests_per_sec: 5. v1 (before KIP-219): the
    throttled answer itself comes late, by its ThrottleTimeMs. v2: the
    answer comes with ThrottleTimeMs, and the next request is answered
    only after it (kwire did not read it before)."""
    host, port = c.bootstrap.rsplit(":", 1)
    out = {}
    for version in (1, 2):
        s = socket.create_connection((host, int(port)), timeout=20)
        sent, got = {}, {}
        # Eight requests one at a time: the sixth goes over 5/s.
        for corr in range(8):
            sent[corr] = time.monotonic()
            s.sendall(apiversions_request(version, corr, f"req-v{version}"))
            cid, thr = throttle_of(read_frame(s))
            got[cid] = (time.monotonic(), thr)
        s.close()
        out[version] = (sent, got)
    sent, got = out[1]
    held = [(cid, got[cid][0] - sent[cid], got[cid][1]) for cid in got if got[cid][1] > 0]
    check(held, f"ApiVersions v1 over 5 requests/s: no answer carried a throttle: {got}")
    for cid, took, thr in held:
        check(took >= 0.9 * thr / 1000,
              f"ApiVersions v1 #{cid}: throttled {thr} ms, yet answered after {took * 1000:.0f} ms "
              "(before KIP-219 the answer is held for the throttle)")
    sent, got = out[2]
    thr6 = [(cid, got[cid][1]) for cid in sorted(got) if got[cid][1] > 0]
    check(thr6, f"ApiVersions v2 over 5 requests/s: no answer carried a throttle: {got}")
    for cid, thr in thr6:
        if cid + 1 in got:
            gap = got[cid + 1][0] - got[cid][0]
            check(gap >= 0.9 * thr / 1000,
                  f"ApiVersions v2 #{cid + 1} answered {gap * 1000:.0f} ms after #{cid}, which "
                  f"was throttled {thr} ms (KIP-219: not read before the throttle is over)")
    print(f"request quota: v1 held {[(t, round(d * 1000)) for _, d, t in held]} "
          f"(throttle ms, answered after ms); v2 throttles {[t for _, t in thr6]}")


def many_keys(c):
    """Throttles of 60 client ids under one rule: /metrics keeps at most
    32 series, the rest summed as key="other"."""
    host, port = c.bootstrap.rsplit(":", 1)
    for i in range(60):
        s = socket.create_connection((host, int(port)), timeout=20)
        for corr in range(2):  # the second goes over 1/s
            s.sendall(apiversions_request(2, corr, f"many-{i}"))
            read_frame(s)
        s.close()
    m = c.metrics()
    keys = [dict(labels)["key"] for (name, labels), _ in m.items()
            if name == "kwire_quota_throttle_seconds_total" and dict(labels)["rule"] == "many"]
    check(0 < len(keys) <= 33 and "other" in keys,
          f"throttle series of rule 'many': {len(keys)} ({sorted(keys)[:5]}...)")
    print(f"60 throttled client ids: {len(keys)} series of rule 'many' (with 'other')")


def main():
    tmp = tempfile.mkdtemp(prefix="kwire-quota-")
    rules = os.path.join(tmp, "rules.yaml")
    with open(rules, "w") as f:
        f.write(RULES)
    topics = (("qa", 3), ("qb", 3), ("qc", 3), ("qf", FETCH_PARTS))
    audit = os.path.join(tmp, "audit.jsonl")
    with Cluster(topics=topics, extra_proxy_args=["--rules", rules, "--audit-log", audit]) as c:
        check("not apply" not in c.proxy_stderr(), "no warning that quotas are not applied")
        fill(c, "qf", FETCH_PARTS, 48 * 1024 * 1024)
        rdk, rdk_thr, kp, fast, cons, cons_logs, cons_thr = [], [], [], [], [], [], []
        ready, box = threading.Event(), {}
        cth = threading.Thread(target=consumer, args=(c, "qf", cons, cons_logs, cons_thr, ready,
                                                      box))
        cth.start()
        check(ready.wait(60), "the consumer read nothing in 60 s")
        # Its first fetches (one per broker, at once) went over the quota
        # together: let it pay that back before the window opens.
        t0 = box["t0"] = time.monotonic() + 3.0
        kp_out = {"t0": t0}
        th = [threading.Thread(target=rdk_producer, args=(c, "rdk-slow", "qa", rdk, rdk_thr, t0)),
              threading.Thread(target=kp_producer, args=(c, "qb", kp, kp_out)),
              # Flat out, the mock cluster would hold GBs: 2 s of it.
              threading.Thread(target=rdk_producer, args=(c, "fast", "qc", fast, None, t0, FAST))]
        while time.monotonic() < t0:
            time.sleep(0.01)
        for t in th:
            t.start()
        for t in th + [cth]:
            t.join()
        r_rdk, r_kp, r_cons = (in_window(s, t0) for s in (rdk, kp, cons))
        r_fast = sum(n for t, n in fast if t < t0 + FAST) / FAST
        kpm = kp_out.get("metrics", {})
        # A send that failed stops that producer: say so first, with what
        # kwire's side shows for its connection.
        if "error" in kp_out:
            thr = c.metric("kwire_quota_throttle_seconds_total", rule="kp-produce", key="kp-slow")
            last = [e for e in c.log_entries() if e.get("api") == "Produce" and
                    any(p.get("topic") == "qb" for p in e.get("partitions", []))][-3:]
            print(f"kafka-python producer stopped, {kp_out['error']}; its metrics {kpm}; "
                  f"kwire's throttle seconds for kp-slow {thr}; the access log's last "
                  f"Produce lines of its topic qb: {last}", file=sys.stderr)
        check("error" not in kp_out, f"the kafka-python producer failed {kp_out.get('error')}")
        print(f"over {RUN:.0f} s (quota {QUOTA / 1e6:.3f} MB/s): librdkafka producer "
              f"{r_rdk / QUOTA:.3f} of the quota, kafka-python producer {r_kp / QUOTA:.3f}, "
              f"librdkafka consumer {r_cons / QUOTA:.3f}, unthrottled producer "
              f"{r_fast / 1e6:.1f} MB/s ({r_fast / QUOTA:.1f} times the quota)")
        print(f"kafka-python produce-throttle-time avg {kpm.get('produce-throttle-time-avg')} "
              f"max {kpm.get('produce-throttle-time-max')} ms; librdkafka throttle events: "
              f"producer {len(rdk_thr)}, consumer {len(cons_thr)}")
        check(0.85 * QUOTA <= r_rdk <= 1.15 * QUOTA,
              f"librdkafka producer at {r_rdk:.0f} B/s, not within 15% of {QUOTA}")
        check(0.85 * QUOTA <= r_kp <= 1.15 * QUOTA,
              f"kafka-python producer at {r_kp:.0f} B/s, not within 15% of {QUOTA}")
        check(0.85 * QUOTA <= r_cons <= 1.15 * QUOTA,
              f"librdkafka consumer at {r_cons:.0f} B/s, not within 15% of {QUOTA}")
        check(r_fast > 3 * QUOTA, f"the unthrottled producer ran at {r_fast:.0f} B/s only")
        check((kpm.get("produce-throttle-time-max") or 0) > 0,
              f"kafka-python's metrics show no throttle: {kpm}")
        check(rdk_thr and max(rdk_thr) > 0, "librdkafka's producer saw no ThrottleTimeMs")
        check(cons_thr and max(cons_thr) > 0, "librdkafka's consumer saw no ThrottleTimeMs")
        bad = [line for line in cons_logs if any(e in line for e in SESSION_ERRORS)]
        check(not bad, f"fetch-session errors in the consumer's logs: {bad[:3]}")
        fetches = [e for e in c.log_entries() if e.get("api") == "Fetch"]
        check(fetches, "the access log has the consumer's Fetch requests")
        bad = [e for e in fetches if e.get("status") != "ok" or
               any(p.get("error") for p in e.get("partitions", []))]
        check(not bad, f"Fetch answers with errors: {bad[:2]}")
        check(c.metric("kwire_quota_throttle_seconds_total", rule="rdk-produce",
                       key="rdk-slow") > 1, "throttle time of rdk-slow in /metrics")
        check(c.metric("kwire_quota_throttle_seconds_total", rule="consume", key="cons-slow") > 1,
              "throttle time of cons-slow in /metrics")
        check(c.metric("kwire_quota_muted_total") > 0, "mutes counted")
        # Every throttle is in the audit trail, with its rule and key.
        with open(audit) as f:
            recs = [json.loads(line) for line in f if '"throttle"' in line]
        rules_keys = {(r.get("rule"), r.get("key")) for r in recs if r.get("event") == "throttle"}
        check({("rdk-produce", "rdk-slow"), ("kp-produce", "kp-slow"),
               ("consume", "cons-slow")} <= rules_keys,
              f"throttles in the audit trail: {sorted(rules_keys)}")
        check(all(r.get("throttle_ms", 0) > 0 for r in recs), "audit throttle_ms")
        raw_request_quota(c)
        check(c.metric("kwire_quota_held_total") > 0, "held answers counted")
        many_keys(c)
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
