"""Shared set-up for the proxy's integration tests (test_proxy_*.py).

Starts a 3-broker mock cluster (tools/kwire-mockcluster, librdkafka's mock
brokers) with partition leaders spread over the brokers, and `kwire proxy` in
front of it with the access log (JSON lines) and the admin endpoint on. Tests
talk to the cluster only through the proxy and use the helpers below to check
what reached the clients.

Every such test runs on two peers (docs/peers.md), chosen by ctest's
environment: KWIRE_PEER=2.0.2 (Debian's librdkafka: kwire-mockcluster, kcat
and confluent-kafka on 2.0.2) and KWIRE_PEER=2.12 (kwire-mockcluster-2.12,
and the same clients on librdkafka 2.12.0 through LD_LIBRARY_PATH). kwire
itself is started without that LD_LIBRARY_PATH.
"""
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SKIP = 77


def env(name):
    v = os.environ.get(name)
    if not v:
        print(f"SKIP: {name} not set, run through ctest (needs: ctest's environment)",
              file=sys.stderr)
        sys.exit(SKIP)
    return v


def peer():
    """The peer the test runs on: "2.0.2" or "2.12" (KWIRE_PEER)."""
    return os.environ.get("KWIRE_PEER", "2.0.2")


def modern():
    """True on the 2.12 peer (Produce v10, Fetch v16, Metadata v12, KIP-848)."""
    return peer() == "2.12"


def check_peer_clients():
    """Fails unless the librdkafka clients this process starts or loads are
    the peer's: a test on the 2.12 peer that silently ran 2.0.2 clients would
    prove nothing about them."""
    want = {"2.0.2": "2.0.2", "2.12": "2.12."}[peer()]
    kcat = shutil.which("kcat")
    if kcat:
        r = subprocess.run([kcat, "-V"], capture_output=True, timeout=10)
        m = re.search(rb"librdkafka ([0-9.]+)", r.stdout + r.stderr)
        got = m.group(1).decode() if m else "?"
        if not got.startswith(want):
            raise AssertionError(f"peer {peer()}: kcat runs on librdkafka {got}; "
                                 f"LD_LIBRARY_PATH={os.environ.get('LD_LIBRARY_PATH')}")
    if "confluent_kafka" in sys.modules:
        got = sys.modules["confluent_kafka"].libversion()[0]
        if not got.startswith(want):
            raise AssertionError(f"peer {peer()}: confluent-kafka runs on librdkafka {got}")


def mockcluster_path():
    """The peer's kwire-mockcluster; a missing one is a failure, not a skip
    (the install step builds the 2.12 library, tools/install-deps.sh)."""
    path = os.environ.get("KWIRE_MOCKCLUSTER") or os.path.join(env("KWIRE_BUILD"),
                                                               "kwire-mockcluster")
    if not os.access(path, os.X_OK):
        print(f"peer {peer()}: no {path}: run tools/install-deps.sh (it builds librdkafka "
              "2.12.0 into ~/.cache/kwire) and re-run cmake", file=sys.stderr)
        sys.exit(1)
    return path


def kwire_env():
    """The environment for kwire itself: the peer's library is for clients."""
    e = dict(os.environ)
    e.pop("LD_LIBRARY_PATH", None)
    return e


def _readline(proc, deadline, what):
    """One line of proc's stdout before deadline (monotonic)."""
    buf = b""
    fd = proc.stdout.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"timed out waiting for {what}")
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        c = os.read(fd, 1)
        if not c:
            raise RuntimeError(f"{what}: process exited (rc={proc.poll()})")
        if c == b"\n":
            return buf.decode()
        buf += c


class Cluster:
    """kwire-mockcluster + kwire proxy. Use as a context manager."""

    def __init__(self, topics=(("t1", 6),), brokers=3, log_format="json", extra_proxy_args=()):
        self.build = env("KWIRE_BUILD")
        self.kwire = env("KWIRE_BIN")
        self.brokers = brokers
        self.topics = topics
        self.log_format = log_format
        self.extra = list(extra_proxy_args)
        self.tmp = tempfile.mkdtemp(prefix="kwire-pxtest-")
        self.log_path = os.path.join(self.tmp, "access.log")
        self.mc = None
        self.px = None

    # ---- lifecycle ----
    def __enter__(self):
        check_peer_clients()
        args = [mockcluster_path(), "--brokers", str(self.brokers)]
        for name, parts in self.topics:
            args += ["--topic", f"{name}:{parts}"]
            for p in range(parts):
                args += ["--leader", f"{name}:{p}:{p % self.brokers + 1}"]
        self.mc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=open(os.path.join(self.tmp, "mc.err"), "w"))
        deadline = time.monotonic() + 20
        self.real = {}  # broker id -> "host:port"
        while True:
            line = _readline(self.mc, deadline, "mock cluster")
            if line.startswith("BOOTSTRAP "):
                self.upstream = line.split()[1]
            elif line.startswith("BROKER "):
                _, bid, addr = line.split()
                self.real[int(bid)] = addr
            elif line == "READY":
                break
        self.px_err_path = os.path.join(self.tmp, "proxy.err")
        listen = f"127.0.0.1:{listen_port(self.brokers)}"
        pargs = [self.kwire, "proxy", "--upstream", self.upstream, "--listen", listen,
                 "--admin", "127.0.0.1:0", "--access-log", self.log_path,
                 "--access-log-format", self.log_format] + self.extra
        self.px = subprocess.Popen(pargs, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=open(self.px_err_path, "w"), env=kwire_env())
        deadline = time.monotonic() + 20
        self.bootstrap = self.admin = None
        while self.bootstrap is None or self.admin is None:
            line = _readline(self.px, deadline, "kwire proxy")
            if line.startswith("LISTEN "):
                self.bootstrap = line.split()[1]
            elif line.startswith("ADMIN "):
                self.admin = line.split()[1]
        return self

    def stop_proxy(self):
        """SIGTERM the proxy, wait; returns its exit status."""
        if self.px and self.px.poll() is None:
            self.px.terminate()
            try:
                self.px.wait(20)
            except subprocess.TimeoutExpired:
                self.px.kill()
                self.px.wait()
        return self.px.returncode if self.px else None

    def __exit__(self, *exc):
        rc = self.stop_proxy()
        if self.mc and self.mc.poll() is None:
            self.mc.stdin.close()
            try:
                self.mc.wait(10)
            except subprocess.TimeoutExpired:
                self.mc.kill()
                self.mc.wait()
        if exc[0] is None and rc not in (0, None):
            raise RuntimeError(f"kwire proxy exited with {rc}; stderr:\n" + self.proxy_stderr())
        if exc[0] is not None:
            sys.stderr.write("---- proxy stderr (tail) ----\n" + self.proxy_stderr()[-3000:])
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    # ---- the mock cluster's stdin commands ----
    def command(self, line):
        self.mc.stdin.write((line + "\n").encode())
        self.mc.stdin.flush()
        reply = _readline(self.mc, time.monotonic() + 10, f"reply to '{line}'")
        if reply != "OK":
            raise RuntimeError(f"mock cluster: '{line}': {reply}")

    # ---- what the proxy tells ----
    def pid(self):
        return self.px.pid

    def http(self, path):
        with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=10) as r:
            return r.read().decode()

    def metrics(self):
        """{(name, frozenset(labels.items())): value} from /metrics."""
        out = {}
        for line in self.http("/metrics").splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
            assert m, f"bad metrics line {line!r}"
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
        return out

    def metric(self, name, **labels):
        return self.metrics().get((name, frozenset(labels.items())), 0.0)

    def proxy_ports(self):
        b = json.loads(self.http("/brokers"))
        return {e["node_id"]: e["proxy_port"] for e in b["brokers"]}

    def log_entries(self, settle=0.5):
        """The access log's JSON lines (waits for the logger to catch up)."""
        time.sleep(settle)
        with open(self.log_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def proxy_stderr(self):
        try:
            with open(self.px_err_path) as f:
                return f.read()
        except OSError:
            return ""

    def real_ports(self):
        return {int(a.rsplit(":", 1)[1]) for a in self.real.values()}

    def assert_no_real_address(self, text, what):
        """No host:port of a real broker in text (a client's view)."""
        for addr in self.real.values():
            port = addr.rsplit(":", 1)[1]
            if re.search(r"(?<![0-9])" + re.escape(port) + r"(?![0-9])", text):
                raise AssertionError(f"{what} names a real broker ({addr}):\n{text}")


def produced_by_partition(entries, topic):
    """{partition: records} summed over the log's answered Produce pairs."""
    out = {}
    for e in entries:
        if e.get("api") != "Produce" or e.get("status") != "ok":
            continue
        for p in e.get("partitions", []):
            if p.get("topic") == topic and not p.get("error"):
                out[p["partition"]] = out.get(p["partition"], 0) + p.get("records", 0)
    return out


def listen_port(brokers):
    """A port P for kwire's listener with P..P+brokers+1 free (its broker
    listeners are P+1+node id, docs/proxy.md), below the kernel's ephemeral
    range: with --listen :0 the broker ports fall among ephemeral ports, where
    the mock clusters and clients of tests running in parallel (each test runs
    on both peers at once under ctest -j2) take ports all the time."""
    lo = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    top = max(min(lo, 61000) - brokers - 10, 12000)
    for _ in range(500):
        p = random.randint(10000, top)
        socks = []
        try:
            for q in range(p, p + brokers + 2):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", q))
            return p
        except OSError:
            pass
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range for kwire's listeners")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def capture_listeners(c, path):
    """Starts dumpcap on lo writing kwire's client side to path, and returns
    it (stop it with stop_capture). Skips (77) when it cannot capture."""
    dumpcap = shutil.which("dumpcap")
    if not dumpcap:
        print("SKIP: no dumpcap (needs: dumpcap)", file=sys.stderr)
        sys.exit(SKIP)
    # kwire's listeners only: the bootstrap port L and the broker ports
    # L+1+id (docs/proxy.md; the harness keeps that range free and below the
    # ephemeral ports, so no upstream leg or other test's traffic falls in
    # it). Capturing all of lo would also take in whatever else the machine
    # runs on loopback, and a busy lo makes dumpcap drop packets.
    lport = int(c.bootstrap.rsplit(":", 1)[1])
    flt = f"tcp portrange {lport}-{lport + 1 + c.brokers}"
    cap = subprocess.Popen([dumpcap, "-q", "-i", "lo", "-B", "64", "-f", flt, "-w", path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if cap.poll() is not None:
            print("SKIP: dumpcap could not capture on lo: " + cap.stderr.read().decode().strip() +
                  " (needs: root, dumpcap)", file=sys.stderr)
            sys.exit(SKIP)
        if os.path.exists(path) and os.path.getsize(path) > 0:
            time.sleep(0.5)  # the file header is written just before capturing starts
            return cap
        time.sleep(0.1)
    cap.kill()
    print("SKIP: dumpcap did not start (needs: dumpcap)", file=sys.stderr)
    sys.exit(SKIP)


def stop_capture(cap):
    cap.send_signal(signal.SIGINT)
    try:
        cap.wait(15)
    except subprocess.TimeoutExpired:
        cap.kill()
        cap.wait()
