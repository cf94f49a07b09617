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
   exactly what /metrics counts dropped or failed, plus the records it
   counts uncertain (timed out in flight) that B did not store; B has no record A does
   not, and once a probe got through (B known up again) records reach B
   again (all of them on a quiet machine; with the part's 1 s delivery
   timeout under load, not all: the counters account for each).
5. A `rewrite:` rule sets a header on Produce: B gets the records as A
   stores them, header included.
4. B down (nobody listening), against no rules, runs alternated (run
   first, so that no other part's mirror producer idles beside it): every
   record is counted dropped or failed, none mirrored; kwire's CPU time
   per byte of Produce requests (its threads' schedstat) is at most 2.5
   times that of no rules (it measures 1.0-1.3; a dead mirror decoding and
   queueing every record, as before, cost 4.7). The records/s of each run
   are printed, never asserted: on two shared cores they vary two to three
   times between runs of the same build (docs/rules.md "mirror", Speed;
   tests/bench/bench_mirror measures both side by side).
Reads stop at the high watermarks read first, not after an idle wait.
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


def produce(bootstrap, topic, n, prefix, acked=None, conf=None, pad=""):
    """n records with keys, values (pad appended) and two headers; returns
    (acknowledged (key, partition) set, seconds from the first produce to
    the flush)."""
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
                p.produce(topic, key=k, value=f"value-{i}{pad}", partition=i % PARTS,
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


def consume(bootstrap, topic):
    """Every record of topic (all partitions from the start, up to the high
    watermarks read first, so that the read stops as soon as all is in):
    {key: (partition, value, headers)}, and the number read (duplicates
    included)."""
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "mirror-check",
                                  "enable.auto.commit": False,
                                  "enable.partition.eof": False})
    marks = {p: c.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p), timeout=10)
             for p in range(PARTS)}
    nxt = {p: lo for p, (lo, _) in marks.items()}
    high = {p: hi for p, (_, hi) in marks.items()}
    c.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
              for p in range(PARTS)])
    out, n = {}, 0
    last = time.monotonic()
    deadline = time.monotonic() + 120
    # The idle limit only ends a read that cannot reach a watermark (a
    # transaction marker last in a partition: none of the topics read here).
    while time.monotonic() < deadline and any(nxt[p] < high[p] for p in high):
        msgs = c.consume(10000, 0.2)
        if not msgs:
            if time.monotonic() - last > 3:
                break
            continue
        last = time.monotonic()
        for m in msgs:
            if m.error():
                continue
            n += 1
            nxt[m.partition()] = m.offset() + 1
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
             for k in ("mirrored", "dropped", "failed", "uncertain")}
        m["unacked"] = c.metric("kwire_mirror_records_skipped_total", reason="unacknowledged")
        m["aborted"] = c.metric("kwire_mirror_records_skipped_total", reason="aborted")
        q = c.metric("kwire_mirror_queue_bytes")
        if sum(m.values()) >= want and q == 0:
            return m
        check(time.monotonic() < deadline, f"{what}: the mirror did not settle: {m}, queue {q}")
        time.sleep(0.2)


def part1(c, rules, b):
    reload_rules(c, rules, mirror_rules(b.bootstrap))
    base = settle(c, 0, "before part 1")
    lat0 = c.metric("kwire_mirror_delivery_latency_seconds_count")
    acked, took = produce(c.bootstrap, "m-main", N, "k")
    check(len(acked) == N, f"A acknowledged {len(acked)} of {N}")
    got_a, na = consume(c.upstream, "m-main")
    check(len(got_a) == N and na == N, f"A has {len(got_a)} records ({na} read), not {N}")
    m = settle(c, sum(base.values()) + N, "part 1")
    m = {k: m[k] - base[k] for k in m}
    check(m["mirrored"] == N and m["dropped"] == 0 and m["failed"] == 0 and m["unacked"] == 0,
          f"part 1 counters: {m}")
    got_b, nb = consume(b.bootstrap, "m-main")
    check(nb == len(got_b), f"B holds duplicates: {nb} records read, {len(got_b)} keys")
    check(set(got_b) == {k for k, _ in acked},
          f"B has {len(got_b)} records, A acknowledged {len(acked)}")
    for k, (part, value, hdrs) in got_b.items():
        i = int(k[1:])
        check((k, part) in acked and got_a[k][0] == part,
              f"{k}: B's partition {part}, A's {got_a[k][0]}")
        check(value == f"value-{i}" and hdrs == (("h1", f"x{i}"), ("h2", "")),
              f"{k}: B has {value!r} {hdrs!r}")
    check(c.metric("kwire_mirror_delivery_latency_seconds_count") - lat0 == N,
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
    got_b, nb = consume(b.bootstrap, "m-txn")
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
    # Past message.timeout.ms and librdkafka's once-a-second scan: what was
    # queued while B was down has failed before B is back. A record sent
    # as its time runs out would be reported failed yet be stored by B.
    time.sleep(3)
    b.command("up 1")
    produce(c.bootstrap, "m-down", 20000, "w", acked)
    # While B was known down (or the mirror's queue full) its records were
    # dropped, one probe a second let through; once the mirror's producer
    # has reconnected (a delivery), records reach B again.
    delivered = metric_sum(c, "kwire_mirror_sink_delivered_total")
    deadline = time.monotonic() + 30
    rnd = 0
    while (metric_sum(c, "kwire_mirror_sink_delivered_total") == delivered or
           metric_sum(c, "kwire_mirror_sink_down") > 0):
        check(time.monotonic() < deadline, "B is up again, but the mirror does not reach it")
        produce(c.bootstrap, "m-down", 100, f"p{rnd}-", acked)
        rnd += 1
        time.sleep(0.3)
    back, _ = produce(c.bootstrap, "m-down", 2000, "z")
    acked |= back
    m = settle(c, sum(base.values()) + len(acked), "part 3")
    d = {k: m[k] - base[k] for k in m}
    got_b, nb = consume(b.bootstrap, "m-down")
    check(nb == len(got_b), f"B holds duplicates: {nb} read, {len(got_b)} keys")
    check(set(got_b) <= {k for k, _ in acked}, "B has records A did not acknowledge")
    missing = len(acked) - len(got_b)
    # A record that timed out while sent is "uncertain": B may have it.
    stored_uncertain = len(got_b) - d["mirrored"]
    check(0 <= stored_uncertain <= d["uncertain"] and
          missing == d["dropped"] + d["failed"] + d["uncertain"] - stored_uncertain,
          f"B is missing {missing} of {len(acked)}; the counters say {d}")
    # How many of the records before and after the outage B got depends on
    # timing (a loaded machine delivers later); that some were lost both
    # ways, and the counters say exactly which, does not.
    check(d["dropped"] > 0 and d["failed"] + d["uncertain"] > 0 and got_b,
          f"B down did not lose records both ways, or B got nothing at all: {d}")
    # Once B is known up again, records reach it. Not necessarily all of
    # them: with a 1 s delivery timeout on a loaded machine (ASan) some time
    # out, and once 1,334 of these 2,000 were lost, every one counted by
    # the identity above (docs/rules.md, mirror).
    z_on_b = len({k for k, _ in back} & set(got_b))
    check(z_on_b > 0, "B is back, but none of the 2000 records produced since reached it")
    print(f"part 3: B down for a while: {missing} records missing, {d['dropped']:.0f} dropped + "
          f"{d['failed']:.0f} failed + {d['uncertain']:.0f} uncertain; "
          f"{z_on_b} of the 2000 records produced once B was back reached it")


def part5(c, rules, b):
    """A rewrite rule sets a header on the way to A: B gets what A stores."""
    reload_rules(c, rules, "rewrite:\n  - name: tag\n    match: {api: Produce, topic: m-rw}\n"
                 "    headers: {set: {x-origin: kwire}}\n" + mirror_rules(b.bootstrap))
    base = settle(c, 0, "before part 5")
    produce(c.bootstrap, "m-rw", 60, "x")
    settle(c, sum(base.values()) + 60, "part 5")
    got_b, _ = consume(b.bootstrap, "m-rw")
    got_a, _ = consume(c.upstream, "m-rw")
    check(len(got_b) == 60 and got_b == got_a,
          f"rewritten records: B has {len(got_b)}, not the 60 A has, as A has them")
    check(all(("x-origin", "kwire") in h for _, _, h in got_b.values()),
          "B's records lack the header the rewrite rule set")
    print("part 5: records rewritten on their way to A reach B as A stores them")


def metric_sum(c, name):
    """The sum of every series of a metric."""
    return sum(v for (k, _), v in c.metrics().items() if k == name)


def kwire_cpu(pid):
    """CPU seconds kwire's threads have used (schedstat: time on a CPU;
    workers, the mirror thread and its producers' librdkafka threads)."""
    ns = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                ns += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just ended
    return ns / 1e9


def part4(c, rules):
    """B down (nobody listening) against no rules, runs alternated: the
    drop counter says exactly what B misses, and kwire's CPU time per byte
    of Produce requests is compared (docs/rules.md "mirror", Speed)."""
    dead = f"127.0.0.1:{free_port()}"
    modes = ("no rules", "mirror, B down")
    rates = {m: [] for m in modes}
    cpu = {m: 0.0 for m in modes}
    nbytes = {m: 0.0 for m in modes}
    n, pad = 30000, "v" * 1000
    # Once: the mirror's producer starts and learns that B is down (one
    # refused connection); what is measured is kwire while B stays down.
    reload_rules(c, rules, mirror_rules(dead, ", properties: {message.timeout.ms: 1000}"))
    deadline = time.monotonic() + 20
    while metric_sum(c, "kwire_mirror_sink_down") < 1:
        check(time.monotonic() < deadline, "B down: the mirror's producer never said so")
        produce(c.bootstrap, "m-rate", 10, "warm")
    for rnd in range(2):
        for mode in modes:
            reload_rules(c, rules, "" if mode == "no rules" else
                         mirror_rules(dead, ", properties: {message.timeout.ms: 1000}"))
            base = settle(c, 0, "before a throughput run")
            in0, cpu0 = c.metric("kwire_client_bytes_received_total"), kwire_cpu(c.pid())
            handed0 = metric_sum(c, "kwire_mirror_sink_produced_total")
            acked, took = produce(c.bootstrap, "m-rate", n, f"r{rnd}{mode[0]}", pad=pad)
            check(len(acked) == n, f"{mode}: A acknowledged {len(acked)} of {n}")
            rates[mode].append(n / took)
            deadline = time.monotonic() + 30
            # kwire's CPU is counted until the mirror has dealt with every
            # record (dropped, or handed to its producer, to fail later),
            # less what serving /metrics to this loop cost it.
            served = 0.0
            while mode != "no rules":
                t = kwire_cpu(c.pid())
                done = (c.metric("kwire_mirror_records_dropped_total") - base["dropped"] +
                        metric_sum(c, "kwire_mirror_sink_produced_total") - handed0 >= n)
                served += kwire_cpu(c.pid()) - t
                if done:
                    break
                check(time.monotonic() < deadline, "B down: the mirror did not catch up")
                time.sleep(0.05)
            cpu[mode] += kwire_cpu(c.pid()) - cpu0 - served
            nbytes[mode] += c.metric("kwire_client_bytes_received_total") - in0
            if mode != "no rules":
                m = settle(c, sum(base.values()) + n, "B down")
                d = {k: m[k] - base[k] for k in m}
                check(d["mirrored"] == 0 and d["dropped"] + d["failed"] + d["uncertain"] == n,
                      f"B down: {n} records, counters {d}")
    per = {m: cpu[m] / nbytes[m] * 1e11 for m in modes}  # CPU ms per 100 MB
    ratio = per["mirror, B down"] / per["no rules"]
    print("part 4: produce through kwire, records/s per run: " +
          "; ".join(f"{k}: " + ", ".join(f"{r:.0f}" for r in v) for k, v in rates.items()) +
          "; kwire CPU per 100 MB of Produce requests: " +
          ", ".join(f"{k} {v:.0f} ms" for k, v in per.items()) +
          f"; B down / no rules = {ratio:.2f}")
    # **Decision** (docs/rules.md): the rates are printed, never asserted
    # (they vary two to three times with the machine's load); kwire's CPU
    # time per byte is asserted, with room: it measures 1.0-1.3 times
    # no rules, and a dead mirror that decoded and queued every record, as
    # before, cost 4.7 times.
    check(ratio < 2.5, f"with B down kwire spends {ratio:.2f} times the CPU per byte of "
          "no rules")


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
            # Part 4 first: kwire's CPU time is then its alone, with no idle
            # producer of another part's mirror running beside it.
            for name, part in (("4", lambda: part4(c, rules)), ("1", lambda: part1(c, rules, b)),
                               ("2", lambda: part2(c, b)), ("3", lambda: part3(c, rules, b)),
                               ("5", lambda: part5(c, rules, b))):
                t0 = time.monotonic()
                part()
                print(f"(part {name}: {time.monotonic() - t0:.1f} s)")
    finally:
        b.stop()
    print("ok")


if __name__ == "__main__":
    main()
