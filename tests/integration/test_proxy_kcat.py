"""kcat through kwire in front of a 3-broker mock cluster: metadata listing,
produce, consume, a balanced consumer group; no real broker address reaches
kcat; the access log and /metrics count every produced record."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, check, produced_by_partition  # noqa: E402

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
if not KCAT:
    print("SKIP: kcat not installed (needs: kcat, tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

TOPIC = "kc"
PARTS = 3
PER_PART = 50


def kcat(c, *args, stdin=None, timeout=30):
    r = subprocess.run([KCAT, "-b", c.bootstrap, "-m", "10", *args], input=stdin,
                       capture_output=True, timeout=timeout)
    check(r.returncode == 0, f"kcat {args} failed ({r.returncode}):\n{r.stderr.decode()}")
    return r.stdout.decode()


def main():
    with Cluster(topics=((TOPIC, PARTS),)) as c:
        # Metadata: three brokers, each at a kwire listener, none real.
        md = kcat(c, "-L")
        c.assert_no_real_address(md, "kcat -L")
        ports = c.proxy_ports()
        check(sorted(ports) == [1, 2, 3], f"/brokers lists {ports}")
        for bid, port in ports.items():
            check(f"broker {bid} at 127.0.0.1:{port}" in md,
                  f"kcat -L does not show broker {bid} at kwire port {port}:\n{md}")
        for p in range(PARTS):
            check(f"partition {p}, leader {p % 3 + 1}," in md, f"leaders not spread:\n{md}")
        jmd = kcat(c, "-L", "-J")
        c.assert_no_real_address(jmd, "kcat -L -J")

        # Produce to every partition (so every broker's listener is used).
        for p in range(PARTS):
            data = "".join(f"p{p}-m{i}\n" for i in range(PER_PART)).encode()
            kcat(c, "-P", "-t", TOPIC, "-p", str(p), stdin=data)

        # Consume each partition back, in order.
        for p in range(PARTS):
            out = kcat(c, "-C", "-t", TOPIC, "-p", str(p), "-o", "beginning", "-e", "-q")
            got = out.split()
            check(got == [f"p{p}-m{i}" for i in range(PER_PART)],
                  f"partition {p}: consumed {len(got)} messages, first {got[:3]}")

        # A balanced consumer group reads everything exactly once.
        out = kcat(c, "-G", "kc-group", "-o", "beginning", "-c", str(PARTS * PER_PART), "-q",
                   "-X", "auto.offset.reset=earliest", TOPIC, timeout=60)
        got = sorted(out.split())
        want = sorted(f"p{p}-m{i}" for p in range(PARTS) for i in range(PER_PART))
        check(got == want, f"group consumed {len(got)} of {len(want)}")

        # The access log names every produced partition with its record count.
        entries = c.log_entries()
        byp = produced_by_partition(entries, TOPIC)
        check(byp == {p: PER_PART for p in range(PARTS)}, f"access log Produce counts {byp}")
        for e in entries:
            check(e["broker"] in c.real.values(), f"log line with an unknown broker {e}")
        # The group coordinator was reached through kwire too (a FindCoordinator
        # answer naming the real broker would have let kcat bypass it).
        apis = {e["api"] for e in entries}
        for api in ("FindCoordinator", "JoinGroup", "SyncGroup"):
            check(api in apis, f"{api} never went through kwire")
        # ... and /metrics agrees.
        prod = c.metric("kwire_topic_produce_records_total", topic=TOPIC)
        check(prod == PARTS * PER_PART, f"metrics produce records {prod}")
        fetched = c.metric("kwire_topic_fetch_records_total", topic=TOPIC)
        check(fetched >= 2 * PARTS * PER_PART, f"metrics fetch records {fetched}")
        check(c.metric("kwire_connections_accepted_total") > 0, "no connections counted")
        reqs = sum(v for (n, l), v in c.metrics().items()
                   if n == "kwire_requests_total" and dict(l).get("api") == "Produce")
        check(reqs >= PARTS, f"Produce requests {reqs}")
        check(c.http("/healthz").strip() == "ok", "healthz")
    print("ok")


if __name__ == "__main__":
    main()
