"""Runs one of the independent client programs (tools/clients/kafkajs-client.js,
tools/clients/sarama/) through `kwire proxy` and checks what it reported
against what crossed the proxy. Used by test_proxy_kafkajs.py and
test_proxy_sarama.py.

The program produces N records per codec to partition i of a 5-partition
topic for the i-th codec, consumes them in a consumer group, and writes
every acknowledged and every consumed record to an expected file
(docs/test-data.md). Checked:

1. the program succeeded and the consumer got exactly the acknowledged
   records (same partition, offset, key, value and headers, each once);
2. kwire's access log counts N produced records on every partition, and
   the proxy logged no warning or error (closed connections and responses
   it could not decode are both);
3. the client side of the proxy, captured on lo (dumpcap, port filter on
   kwire's listeners) while the program ran, decoded by
   `kwire decode --format records`, gives exactly the records of the
   expected file, produce and fetch lines alike, with their codecs
   (the comparison code of test_decode_records.py); the API versions seen
   are printed. Without root or dumpcap this part is skipped (with a note).
"""
import collections
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, check, produced_by_partition  # noqa: E402

try:
    from proxy_harness import peer  # noqa: E402
except ImportError:  # before the harness knew of two peers
    def peer():
        return os.environ.get("KWIRE_PEER", "2.0.2")
import test_decode_records as tdr  # noqa: E402

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CACHE = os.environ.get("KWIRE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "kwire"))
DUMPCAP = shutil.which("dumpcap")


def skip(why):
    print(f"SKIP: {why}", file=sys.stderr)  # tools/check-skips.py lists it
    sys.exit(SKIP)


def port_base(n):
    """A port B with B-1..B+n free on 127.0.0.1, for --broker-port-base (and
    B-1 for the listener).
    Below the kernel's ephemeral range: there the mock clusters and clients
    of tests running alongside take ports all the time."""
    lo = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    top = max(min(lo, 61000) - n - 10, 12000)
    for _ in range(500):
        base = random.randint(10000, top)
        socks = []
        try:
            for p in range(base - 1, base + n + 1):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            pass
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports for the broker listeners")


def start_capture(path, ports):
    flt = " or ".join(f"tcp port {p}" for p in sorted(ports))
    cap = subprocess.Popen([DUMPCAP, "-q", "-i", "lo", "-B", "64", "-f", flt, "-w", path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if cap.poll() is not None:
            raise RuntimeError("dumpcap failed: " + cap.stderr.read().decode().strip())
        if os.path.exists(path) and os.path.getsize(path) > 0:
            time.sleep(0.5)  # the file header is written just before capturing starts
            return cap
        time.sleep(0.1)
    cap.kill()
    raise RuntimeError("dumpcap did not start")


def stop_capture(cap):
    cap.send_signal(signal.SIGINT)
    try:
        cap.wait(15)
    except subprocess.TimeoutExpired:
        cap.kill()
        cap.wait()


def api_versions(kwire, pcap):
    """{api: sorted versions} of the requests in the capture."""
    r = subprocess.run([kwire, "decode", "--format", "json", "--no-progress", pcap],
                       capture_output=True, timeout=120)
    check(r.returncode == 0, f"kwire decode --format json failed:\n{r.stderr.decode()[-2000:]}")
    seen = collections.defaultdict(set)
    for line in r.stdout.decode().splitlines():
        x = json.loads(line)
        if x.get("direction") == "request" and x.get("api"):
            seen[x["api"]].add(x["version"])
    return {k: sorted(v) for k, v in sorted(seen.items())}


def check_expected(rows, topic, n):
    """The consumer got exactly what the producers had acknowledged."""
    prod = [r for r in rows if r[0] == "produce"]
    fetch = [r for r in rows if r[0] == "fetch"]
    check(len(prod) == n * len(CODECS), f"{len(prod)} records acknowledged, want {n * len(CODECS)}")
    for i, codec in enumerate(CODECS):
        got = sorted(r[3] for r in prod if r[2] == i and r[4] == codec and r[1] == topic)
        check(len(got) == n, f"{codec}: {len(got)} records acknowledged on partition {i}")

    def ident(r):  # topic, partition, offset, key, value, headers
        return (r[1], r[2], r[3], r[6], r[7], r[8])

    want = collections.Counter(ident(r) for r in prod)
    got = collections.Counter(ident(r) for r in fetch)
    check(got == want, "consumed records differ from the acknowledged ones:\n"
          f"  not consumed: {sorted((want - got).elements())[:5]}\n"
          f"  unexpected:   {sorted((got - want).elements())[:5]}")


def run(name, argv_of, topic, n=20, cluster_args=None):
    """argv_of(bootstrap, expected_file) -> the client's command line."""
    tmp = tempfile.mkdtemp(prefix=f"kwire-{name}-")
    pcap = os.path.join(tmp, "client-side.pcapng")
    expfile = os.path.join(tmp, f"{name}.expected")
    capture = os.geteuid() == 0 and DUMPCAP is not None
    if not capture:
        print("note: client-side capture skipped (needs root and dumpcap)")
    try:
        base = port_base(3)
        kw = dict(cluster_args or {})
        kw.setdefault("topics", ((topic, len(CODECS)),))
        # The listener goes just below the broker ports: kwire refuses a
        # listen port inside its port rule's range (base + node id, ids 0..
        # max_brokers-1 and 1001..), which a random one can fall into.
        kw["extra_proxy_args"] = list(kw.get("extra_proxy_args", ())) + [
            "--broker-port-base", str(base), "--listen", f"127.0.0.1:{base - 1}"]
        with Cluster(**kw) as c:
            # On the 2.12 peer LD_LIBRARY_PATH points at its librdkafka, for
            # librdkafka-based clients. Nothing started from here is one
            # (node, the sarama program, dumpcap, kwire decode).
            os.environ.pop("LD_LIBRARY_PATH", None)
            print(f"{name}: mock cluster on librdkafka {peer()}")
            boot_port = int(c.bootstrap.rsplit(":", 1)[1])
            kwire_ports = {boot_port, base + 1, base + 2, base + 3}
            cap = start_capture(pcap, kwire_ports) if capture else None
            t0 = time.monotonic()
            try:
                r = subprocess.run(argv_of(c.bootstrap, expfile), capture_output=True,
                                   timeout=180)
            finally:
                if cap:
                    time.sleep(0.5)  # the last FINs
                    stop_capture(cap)
            took = time.monotonic() - t0
            sys.stderr.write(r.stderr.decode(errors="replace"))
            check(r.returncode == 0, f"{name} failed ({r.returncode})")
            print(f"{name}: client ran in {took:.1f} s")
            check(set(c.proxy_ports().values()) == {base + 1, base + 2, base + 3},
                  f"kwire broker listeners {c.proxy_ports()}, expected {base + 1}..{base + 3}")

            rows = tdr.load_expected(expfile)
            check_expected(rows, topic, n)
            print(f"{name}: consumer got all {n * len(CODECS)} acknowledged records")

            byp = produced_by_partition(c.log_entries(), topic)
            check(byp == {i: n for i in range(len(CODECS))}, f"access log counts {byp}")
            check(c.px.poll() is None, "kwire proxy exited")
            # Nothing kwire found worth a warning or an error (a closed
            # connection, a response it could not decode, ...).
            bad = [ln for ln in c.proxy_stderr().splitlines()
                   if ln.startswith(("kwire proxy: error:", "kwire proxy: warn:"))]
            check(not bad, "kwire proxy complained:\n" + "\n".join(bad[:10]))

            if capture:
                got = tdr.kwire_rows(pcap)
                check(tdr.diff(name, rows, got) == 0,
                      "kwire decode --format records differs from what the client reported")
                print(f"{name}: kwire decode --format records: all {len(got)} records match")
                for api, vs in api_versions(c.kwire, pcap).items():
                    print(f"  {api} v{','.join(map(str, vs))}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
