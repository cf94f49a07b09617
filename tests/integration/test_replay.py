"""`kwire replay CAPTURE --to BOOTSTRAP` (docs/analyzer.md "Replay").

tests/data/clients/confluent.pcapng holds confluent-kafka producing to
cf-idem (idempotent, keys, headers, a null header value) and to cf-txn in
two transactions, one committed and one aborted. Replayed into a fresh mock
cluster (the peer's kwire-mockcluster) with cf-txn mapped to another topic:

1. A direct consumer (confluent-kafka) reads exactly the capture's
   committed and non-transactional records: same keys, values, headers
   (order and null values kept), partitions and timestamps, in the mapped
   topic; the aborted transaction's records are not there. The oracle is
   `kwire decode --format records` of the same capture, and the counts are
   also checked by hand (4 idempotent, 3 committed, 2 aborted).
2. --speed 1x keeps the capture's timing (the replay takes at least the
   time the capture's records span); --speed max does not wait.
3. Progress is shown only on a terminal (a pty), never into a pipe.
4. A target that does not answer: every record fails, exit status 1; a
   usage error exits 2.
"""
import json
import os
import pty
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_harness import SKIP, _readline, check, env, mockcluster_path  # noqa: E402

try:
    import confluent_kafka
except ImportError:
    print("SKIP: confluent-kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)


def start_cluster():
    mc = subprocess.Popen([mockcluster_path(), "--brokers", "1", "--topic", "cf-idem:2",
                           "--topic", "replayed-txn:2"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    bs = None
    while True:
        line = _readline(mc, deadline, "mock cluster")
        if line.startswith("BOOTSTRAP "):
            bs = line.split()[1]
        elif line == "READY":
            return mc, bs


def stop_cluster(mc):
    mc.stdin.close()
    try:
        mc.wait(10)
    except subprocess.TimeoutExpired:
        mc.kill()
        mc.wait()


def expected(kwire, capture):
    r = subprocess.run([kwire, "decode", "--format", "records", capture], capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 0, f"kwire decode failed: {r.stderr}")
    out, aborted = [], 0
    for line in r.stdout.splitlines():
        x = json.loads(line)
        if x["source"] != "produce":
            continue
        if x.get("aborted"):
            aborted += 1
            continue
        topic = "replayed-txn" if x["topic"] == "cf-txn" else x["topic"]
        hdrs = tuple((h["key"], h["value"]) for h in x["headers"])
        out.append((topic, x["partition"], x["key"], x["value"], hdrs, x["timestamp"]))
    return sorted(out), aborted


def consume(bootstrap, n):
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "replay-check",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    # Every partition assigned, no group: a group's first join is held 3 s
    # by the mock cluster, and what is read is the point here.
    md = c.list_topics(timeout=10)
    topics = ["cf-idem", "replayed-txn"]
    check(all(t in md.topics for t in topics), f"the target cluster lacks {topics}: "
          f"{sorted(md.topics)}")
    c.assign([confluent_kafka.TopicPartition(t, p, confluent_kafka.OFFSET_BEGINNING)
              for t in topics for p in md.topics[t].partitions])
    got = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(got) < n:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        hdrs = tuple((k, v.decode() if v is not None else None) for k, v in (m.headers() or []))
        got.append((m.topic(), m.partition(), m.key().decode(), m.value().decode(), hdrs,
                    m.timestamp()[1]))
    # Anything beyond n (a duplicate) would show now.
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        m = c.poll(0.3)
        if m is not None and not m.error():
            got.append((m.topic(), m.partition(), m.key(), m.value(), (), 0))
    c.close()
    return sorted(got)


def replay(kwire, *args, tty=False):
    cmd = [kwire, "replay"] + list(args)
    if not tty:
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return r.returncode, r.stdout, r.stderr, time.monotonic() - t0
    master, slave = pty.openpty()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], 1)
        if r:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        elif p.poll() is not None:
            break
    p.wait(60)
    os.close(master)
    return p.returncode, out.decode(), p.stderr.read().decode(), time.monotonic() - t0


def main():
    kwire = env("KWIRE_BIN")
    capture = os.path.join(env("KWIRE_DATA"), "clients", "confluent.pcapng")
    want, aborted = expected(kwire, capture)
    check(aborted == 2, f"the capture should show 2 aborted records, the oracle says {aborted}")
    check(sum(1 for w in want if w[0] == "cf-idem") == 4 and
          sum(1 for w in want if w[0] == "replayed-txn") == 3,
          f"the oracle's records are not 4 idempotent + 3 committed: {want}")
    check(not any(w[2].startswith("abort-") for w in want), "the oracle kept aborted records")
    span = 0.9  # the capture's produce requests span just over 1 s (03:24:22.70 -> 23.71)

    # 1 and 2: 1x timing, into a pipe (no progress).
    mc, bs = start_cluster()
    try:
        rc, out, err, took = replay(kwire, capture, "--to", bs, "--topic-map",
                                    "cf-txn=replayed-txn")
        check(rc == 0, f"kwire replay failed ({rc}):\n{out}\n{err}")
        check("7 record(s) replayed: 7 delivered, 0 failed" in out and
              "2 of aborted transactions" in out, f"summary:\n{out}")
        check("\r" not in out, "progress was written into a pipe")
        check(took >= span, f"--speed 1x took {took:.2f} s, less than the capture's {span} s")
        got = consume(bs, len(want))
        check(got == want, "the target cluster's records differ from the capture's:\n"
              f" want {want}\n got  {got}")
    finally:
        stop_cluster(mc)

    # 3: max speed on a terminal shows progress.
    mc, bs = start_cluster()
    try:
        rc, out, err, took = replay(kwire, capture, "--to", bs, "--speed", "max",
                                    "--topic-map", "cf-txn=replayed-txn", tty=True)
        check(rc == 0, f"kwire replay --speed max failed ({rc}):\n{out}\n{err}")
        check("\r7 records produced, " in out, f"no progress on a terminal:\n{out!r}")
        got = consume(bs, len(want))
        check(got == want, f"--speed max: records differ:\n want {want}\n got  {got}")
    finally:
        stop_cluster(mc)

    # 4: nobody listening; usage errors.
    rc, out, err, _ = replay(kwire, capture, "--to", "127.0.0.1:1", "--speed", "max",
                             "--timeout", "1500")
    check(rc == 1 and "7 record(s) replayed: 0 delivered, 7 failed" in out,
          f"an unreachable target: rc {rc}\n{out}\n{err}")
    rc, _, err, _ = replay(kwire, capture)
    check(rc == 2 and "--to" in err, f"no --to: rc {rc}: {err}")
    rc, _, err, _ = replay(kwire, capture, "--to", bs, "--speed", "fast")
    check(rc == 2 and "--speed" in err, f"bad --speed: rc {rc}: {err}")
    print("ok")


if __name__ == "__main__":
    main()
