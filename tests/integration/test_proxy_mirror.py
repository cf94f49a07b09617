"""`mirror:` rules (docs/rules.md "mirror"): Produce traffic through kwire to
cluster A is copied to cluster B, only what A acknowledged, never slowing A.

Two mock clusters of the peer (A behind kwire, B the mirror), confluent-kafka
clients (the peer's librdkafka):

1. 100,000 records with keys, values and headers (one empty: confluent-kafka
   crashes on None header values, a refcount bug of its own), produced through kwire to
   A: A has them all; B has exactly the acknowledged ones (here all), with
   the same keys, values, headers and partition numbers; /metrics counts
   them mirrored, and the delivery latency.
2. Transactions: a committed transaction's records reach B, an aborted
   one's do not (counted as skipped, reason aborted), also with the
   EndTxn on another connection than the Produce.
3. B's broker down during a run, then up again: what B is missing is
   exactly what /metrics counts dropped or failed, and B has no record A
   does not.
5. A `rewrite:` rule sets a header on Produce: B gets the records as A
   stores them, header included.
4. B down (nobody listening): A's produce throughput, as a rate over a run,
   against the same run with no rules, best of 3 runs each, alternated
   (printed). The 95% goal of the issue cannot be asserted here: on two
   cores shared with other test suites single runs vary by 2-3x, and the
   best-of-3 ratio has measured anywhere from 52% to 118% between two runs
   of the same build. What is asserted is that a dead mirror does not block
   A (at least a third of the no-rules rate; blocking would cost several
   times that), and that every record is counted dropped or failed; the
   ratio itself is measured by tests/bench/bench_mirror.
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_harness import (SKIP, Cluster, _readline, check, env,  # noqa: E402
                           mockcluster_path)

try:
    import confluent_kafka
except ImportError:
    print("SKIP: confluent-kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

PARTS = 6
N = 100000


class Mock:
    """A second mock cluster (the mirror), with its stdin commands."""

    def __init__(self, topics):
        args = [mockcluster_path(), "--brokers", "1"]
        for t in topics:
            args += ["--topic", f"{t}:{PARTS}"]
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            line = _readline(self.p, deadline, "mirror mock cluster")
            if line.startswith("BOOTSTRAP "):
                self.bootstrap = line.split()[1]
            elif line == "READY":
                break

    def command(self, line):
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()
        reply = _readline(self.p, time.monotonic() + 10, line)
        check(reply == "OK", f"mock: {line}: {reply}")

    def stop(self):
        self.p.stdin.close()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def write_rules(path, text):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def reload_rules(c, path, text):
    before = c.metric("kwire_rules_reloads_total")
    write_rules(path, text)
    deadline = time.monotonic() + 10
    while c.metric("kwire_rules_reloads_total") <= before:
        check(time.monotonic() < deadline, "the rules were not reloaded")
        time.sleep(0.1)


def mirror_rules(bootstrap, extra=""):
    return ("mirror:\n"
            "  - name: to-b\n"
            "    match: {topic: \"m-*\"}\n"
            f"    to: {{bootstrap: \"{bootstrap}\", queue_bytes: 32MiB{extra}}}\n")


def produce(bootstrap, topic, n, prefix, acked=None, conf=None):
    """n records with keys, values and two headers; returns (acknowledged
    (key, partition) set, seconds from the first produce to the flush)."""
    acked = set() if acked is None else acked
    c = {"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.num.messages": 10000,
         "queue.buffering.max.messages": 1000000}
    c.update(conf or {})
    p = confluent_kafka.Producer(c)

    def dr(err, msg):
        if err is None:
            acked.add((msg.key().decode(), msg.partition()))

    t0 = time.monotonic()
    for i in range(n):
        k = f"{prefix}{i}"
        while True:
            try:
                p.produce(topic, key=k, value=f"value-{i}", partition=i % PARTS,
                          headers=[("h1", f"x{i}"), ("h2", "")], on_delivery=dr)
                break
            except BufferError:
                p.poll(0.05)
        if i % 10000 == 0:
            p.poll(0)
    left = p.flush(120)
    took = time.monotonic() - t0
    check(left == 0, f"{left} records not delivered to A")
    return acked, took


def consume(bootstrap, topic, want, idle=3.0):
    """Every record of topic (all partitions from the start):
    {key: (partition, value, headers)}, and the number read (duplicates
    included)."""
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "mirror-check",
                                  "enable.auto.commit": False,
                                  "enable.partition.eof": False})
    c.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
              for p in range(PARTS)])
    out, n = {}, 0
    last = time.monotonic()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        msgs = c.consume(10000, 0.5)
        if not msgs:
            if time.monotonic() - last > idle or (n >= want and time.monotonic() - last > 0.5):
                break
            continue
        last = time.monotonic()
        for m in msgs:
            if m.error():
                continue
            n += 1
            hdrs = tuple((k, v.decode() if v is not None else None)
                         for k, v in (m.headers() or []))
            out[m.key().decode()] = (m.partition(), m.value().decode(), hdrs)
    c.close()
    return out, n


def settle(c, want, what):
    """Waits until mirrored + dropped + failed + skipped reach want, and
    kwire's mirror queue is empty; returns the counters."""
    deadline = time.monotonic() + 60
    while True:
        m = {k: c.metric(f"kwire_mirror_records_{k}_total")
             for k in ("mirrored", "dropped", "failed")}
        m["unacked"] = c.metric("kwire_mirror_records_skipped_total", reason="unacknowledged")
        m["aborted"] = c.metric("kwire_mirror_records_skipped_total", reason="aborted")
        q = c.metric("kwire_mirror_queue_bytes")
        if sum(m.values()) >= want and q == 0:
            return m
        check(time.monotonic() < deadline, f"{what}: the mirror did not settle: {m}, queue {q}")
        time.sleep(0.2)


def part1(c, rules, b):
    reload_rules(c, rules, mirror_rules(b.bootstrap))
    acked, took = produce(c.bootstrap, "m-main", N, "k")
    check(len(acked) == N, f"A acknowledged {len(acked)} of {N}")
    got_a, na = consume(c.upstream, "m-main", N)
    check(len(got_a) == N and na == N, f"A has {len(got_a)} records ({na} read), not {N}")
    m = settle(c, N, "part 1")
    check(m["mirrored"] == N and m["dropped"] == 0 and m["failed"] == 0 and m["unacked"] == 0,
          f"part 1 counters: {m}")
    got_b, nb = consume(b.bootstrap, "m-main", N)
    check(nb == len(got_b), f"B holds duplicates: {nb} records read, {len(got_b)} keys")
    check(set(got_b) == {k for k, _ in acked},
          f"B has {len(got_b)} records, A acknowledged {len(acked)}")
    for k, (part, value, hdrs) in got_b.items():
        i = int(k[1:])
        check((k, part) in acked and got_a[k][0] == part,
              f"{k}: B's partition {part}, A's {got_a[k][0]}")
        check(value == f"value-{i}" and hdrs == (("h1", f"x{i}"), ("h2", "")),
              f"{k}: B has {value!r} {hdrs!r}")
    check(c.metric("kwire_mirror_delivery_latency_seconds_count") == N,
          "delivery latency not counted for every record")
    print(f"part 1: {N} records through kwire to A in {took:.2f} s; B has all {len(got_b)}")


def part2(c, b):
    base = settle(c, 0, "before transactions")
    p = confluent_kafka.Producer({"bootstrap.servers": c.bootstrap,
                                  "transactional.id": "mirror-txn", "linger.ms": 5})
    p.init_transactions(30)
    for outcome in ("commit", "abort"):
        p.begin_transaction()
        for i in range(50):
            p.produce("m-txn", key=f"{outcome}-{i}", value=f"v{i}", partition=i % PARTS,
                      headers=[("t", outcome)])
        p.flush(30)
        if outcome == "commit":
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    m = settle(c, sum(base.values()) + 100, "part 2")
    check(m["aborted"] - base["aborted"] == 50, f"aborted records not counted: {m}")
    check(m["mirrored"] - base["mirrored"] == 50, f"committed records not mirrored: {m}")
    got_b, nb = consume(b.bootstrap, "m-txn", 50)
    check(sorted(got_b) == sorted(f"commit-{i}" for i in range(50)) and nb == 50,
          f"B has {sorted(got_b)[:5]}... ({nb} read): not the 50 committed records")
    print("part 2: the committed transaction reached B, the aborted one did not")


def part3(c, rules, b):
    # A small queue and a short delivery timeout, so that a B down for 3 s
    # loses records both ways: dropped (queue full) and failed (timed out).
    reload_rules(c, rules, mirror_rules(b.bootstrap, ", queue_bytes: 1MiB, properties: "
                                        "{message.timeout.ms: 1000}").replace(
        ", queue_bytes: 32MiB", ""))
    base = settle(c, 0, "before part 3")
    acked = set()
    produce(c.bootstrap, "m-down", 20000, "u", acked)
    b.command("down 1")
    time.sleep(0.5)
    produce(c.bootstrap, "m-down", 40000, "d", acked)
    time.sleep(3)
    b.command("up 1")
    produce(c.bootstrap, "m-down", 20000, "w", acked)
    m = settle(c, sum(base.values()) + len(acked), "part 3")
    d = {k: m[k] - base[k] for k in m}
    got_b, nb = consume(b.bootstrap, "m-down", len(acked))
    check(nb == len(got_b), f"B holds duplicates: {nb} read, {len(got_b)} keys")
    check(set(got_b) <= {k for k, _ in acked}, "B has records A did not acknowledge")
    missing = len(acked) - len(got_b)
    check(missing == d["dropped"] + d["failed"] and d["mirrored"] == len(got_b),
          f"B is missing {missing} of {len(acked)}; the counters say {d}")
    # How many of the records before and after the outage B got depends on
    # timing (a loaded machine delivers later); that some were lost both
    # ways, and the counters say exactly which, does not.
    check(d["dropped"] > 0 and d["failed"] > 0 and got_b,
          f"B down did not lose records both ways, or B got nothing at all: {d}")
    print(f"part 3: B down for a while: {missing} records missing, {d['dropped']:.0f} dropped + "
          f"{d['failed']:.0f} failed")


def part5(c, rules, b):
    """A rewrite rule sets a header on the way to A: B gets what A stores."""
    reload_rules(c, rules, "rewrite:\n  - name: tag\n    match: {api: Produce, topic: m-rw}\n"
                 "    headers: {set: {x-origin: kwire}}\n" + mirror_rules(b.bootstrap))
    base = settle(c, 0, "before part 5")
    produce(c.bootstrap, "m-rw", 60, "x")
    settle(c, sum(base.values()) + 60, "part 5")
    got_b, _ = consume(b.bootstrap, "m-rw", 60)
    got_a, _ = consume(c.upstream, "m-rw", 60)
    check(len(got_b) == 60 and got_b == got_a,
          f"rewritten records: B has {len(got_b)}, not the 60 A has, as A has them")
    check(all(("x-origin", "kwire") in h for _, _, h in got_b.values()),
          "B's records lack the header the rewrite rule set")
    print("part 5: records rewritten on their way to A reach B as A stores them")


def part4(c, rules):
    dead = f"127.0.0.1:{free_port()}"
    rates = {"no rules": [], "mirror, B down": []}
    n = 100000
    for rnd in range(3):
        for mode in rates:
            reload_rules(c, rules, "" if mode == "no rules" else
                         mirror_rules(dead, ", properties: {message.timeout.ms: 2000}"))
            base = settle(c, 0, "before a throughput run")
            acked, took = produce(c.bootstrap, "m-rate", n, f"r{rnd}{mode[0]}")
            check(len(acked) == n, f"{mode}: A acknowledged {len(acked)} of {n}")
            rates[mode].append(n / took)
            if mode != "no rules":
                m = settle(c, sum(base.values()) + n, "B down")
                d = {k: m[k] - base[k] for k in m}
                check(d["mirrored"] == 0 and d["dropped"] + d["failed"] == n,
                      f"B down: {n} records, counters {d}")
    best = {k: max(v) for k, v in rates.items()}
    ratio = best["mirror, B down"] / best["no rules"]
    print("part 4: produce through kwire, records/s per run: " +
          "; ".join(f"{k}: " + ", ".join(f"{r:.0f}" for r in v) for k, v in rates.items()) +
          f"; best mirror/no-rules = {ratio:.1%} (goal 95%)")
    # Asserted: not blocked by the dead mirror (that would be several times
    # slower: records waiting for the 2 s delivery timeout). The 95% goal is
    # measured by tests/bench/bench_mirror, not asserted here.
    check(ratio >= 0.33, f"with B down A's throughput fell to {ratio:.1%} of no rules")


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    env("KWIRE_BIN")
    tmp = tempfile.mkdtemp(prefix="kwire-mirror-")
    rules = os.path.join(tmp, "rules.yaml")
    write_rules(rules, "")
    b = Mock(["m-main", "m-txn", "m-down", "m-rw"])
    try:
        topics = tuple((t, PARTS) for t in ("m-main", "m-txn", "m-down", "m-rw", "m-rate"))
        with Cluster(topics=topics, extra_proxy_args=["--rules", rules, "--no-log"]) as c:
            part1(c, rules, b)
            part2(c, b)
            part3(c, rules, b)
            part5(c, rules, b)
            part4(c, rules)
    finally:
        b.stop()
    print("ok")


if __name__ == "__main__":
    main()
