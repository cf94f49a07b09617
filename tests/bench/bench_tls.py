#!/usr/bin/env python3
"""bench_tls: what TLS costs in kwire, side by side with HAProxy, in one run.

  sudo tests/bench/bench_tls.py [--build build] [--messages 30000] [--pings 500]
                                [--idle 10000] [--conn-secs 5]

Needs root (network namespaces), haproxy, openssl, kcat's librdkafka through
python3-confluent-kafka. Prints figures; asserts nothing (STYLE.md).

The mock cluster (one broker, 12 partitions) runs in namespace M. Paths:

  plaintext direct     client -> broker                        (namespace M)
  kwire plaintext      client -> kwire -> broker               (M)
  kwire TLS term.      client =TLS=> kwire -> broker           (M)
  kwire TLS term. kTLS the same with --ktls (transmit in the kernel)
  TLS direct           client =TLS=> T -> broker               (namespace K)
  kwire TLS both ways  client =TLS=> kwire =TLS=> T -> broker  (K)
  HAProxy TLS both     client =TLS=> HAProxy =TLS=> T -> broker (namespace H)

T is an HAProxy terminating TLS in front of the broker (HAProxy's `server
... namespace M`), bound on the broker's advertised address in K and H so
that clients and proxies follow the broker's own metadata. In H the front
HAProxy holds that address and T another port. Both proxies use the same
certificate and OpenSSL's defaults (the cipher each negotiated is printed).

Figures: produce and consume MB/s (1 KiB messages, acks=1, librdkafka via
confluent-kafka), produce latency p50/p99 with one message in flight and
what the proxy adds over its direct path, new TLS connections a second
(handshake, ApiVersions, close; 4 client threads), and kwire's resident
memory per idle TLS connection with N open.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
import tls_certs  # noqa: E402

PY = "/usr/bin/python3"
CLIENT = os.path.join(HERE, "bench_tls_client.py")


def sh(*a, **kw):
    return subprocess.run(list(a), check=True, **kw)


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="kwire-benchtls-")
        self.kwire = os.path.join(args.build, "kwire")
        self.mcbin = os.path.join(args.build, "kwire-mockcluster")
        self.ns = {k: f"kwb{k}-{os.getpid()}" for k in "MKH"}
        self.procs = []

    def netns(self):
        for n in self.ns.values():
            sh("ip", "netns", "add", n)
            sh("ip", "netns", "exec", n, "ip", "link", "set", "lo", "up")

    def start(self, ns, argv, name, stdin=None, stdout=subprocess.DEVNULL):
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[ns]] + argv, stdin=stdin, stdout=stdout,
                             stderr=open(os.path.join(self.tmp, name + ".err"), "w"))
        self.procs.append(p)
        return p

    def client(self, ns, *a, timeout=600):
        r = subprocess.run(["ip", "netns", "exec", self.ns[ns], PY, CLIENT] + [str(x) for x in a],
                           capture_output=True, timeout=timeout)
        if r.returncode:
            raise RuntimeError(f"client {a[:2]}: {r.stderr.decode()[-1500:]}")
        return json.loads(r.stdout.decode().strip().splitlines()[-1])

    def wait_port(self, ns, port):
        for _ in range(100):
            r = subprocess.run(["ip", "netns", "exec", self.ns[ns], PY, "-c",
                                f"import socket;socket.create_connection(('127.0.0.1',{port}),1)"],
                               capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        errs = "".join(open(os.path.join(self.tmp, f)).read()[-800:]
                       for f in os.listdir(self.tmp) if f.endswith(".err"))
        raise RuntimeError(f"nothing listens on {port} in {ns}:\n{errs}")

    def kwire_proxy(self, ns, name, listen, extra):
        p = self.start(ns, [self.kwire, "proxy", "--upstream", f"127.0.0.1:{self.port}",
                            "--listen", f"127.0.0.1:{listen}", "--no-log", "-q"] + extra,
                       name, stdout=subprocess.PIPE)
        line = p.stdout.readline().decode()
        while not line.startswith("LISTEN"):
            if not line:
                raise RuntimeError(f"{name} did not start: " +
                                   open(os.path.join(self.tmp, name + ".err")).read())
            line = p.stdout.readline().decode()
        return p

    def setup(self):
        self.certs = tls_certs.make_certs(os.path.join(self.tmp, "certs"))
        pem = os.path.join(self.tmp, "server-haproxy.pem")
        with open(pem, "w") as f:
            f.write(open(self.certs["server"]).read() + open(self.certs["server_key"]).read())
        self.netns()
        # A topic per path: the mock keeps only the last 5 MB of a partition.
        topics = []
        for i in range(8):
            topics += ["--topic", f"bench{i}:12"]
        mc = self.start("M", [self.mcbin, "--brokers", "1"] + topics, "mc",
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        while True:
            line = mc.stdout.readline().decode().strip()
            if line.startswith("BROKER "):
                self.port = int(line.split()[2].rsplit(":", 1)[1])
            elif line == "READY" or not line:
                break
        self.mc = mc
        P = self.port
        T = 20000 if P != 20000 else 20001
        cfg_k = os.path.join(self.tmp, "k.cfg")
        cfg_h = os.path.join(self.tmp, "h.cfg")
        glob = ("global\n  maxconn 8000\n  nbthread 1\ndefaults\n  mode tcp\n"
                "  timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n")
        with open(cfg_k, "w") as f:
            f.write(glob + f"frontend t\n  bind 127.0.0.1:{P} ssl crt {pem}\n  default_backend b\n"
                    f"backend b\n  server m 127.0.0.1:{P} namespace {self.ns['M']}\n")
        with open(cfg_h, "w") as f:
            f.write(glob
                    + f"frontend front\n  bind 127.0.0.1:{P} ssl crt {pem}\n  default_backend f\n"
                    f"backend f\n  server t 127.0.0.1:{T} ssl verify required ca-file "
                    f"{self.certs['ca']} verifyhost localhost sni str(localhost)\n"
                    f"frontend t\n  bind 127.0.0.1:{T} ssl crt {pem}\n  default_backend b\n"
                    f"backend b\n  server m 127.0.0.1:{P} namespace {self.ns['M']}\n")
        self.start("K", ["haproxy", "-db", "-f", cfg_k], "haproxy-k")
        self.start("H", ["haproxy", "-db", "-f", cfg_h], "haproxy-h")
        self.wait_port("K", P)
        self.wait_port("H", P)
        ca, crt, key = self.certs["ca"], self.certs["server"], self.certs["server_key"]
        tls = ["--tls-cert", crt, "--tls-key", key]
        # kwire listeners: L (bootstrap), L + 2 (broker 1).
        self.kwire_proxy("M", "kw-plain", 30000, ["--workers", "1"])
        self.kwire_proxy("M", "kw-term", 30100, ["--workers", "1"] + tls)
        self.kwire_proxy("M", "kw-ktls", 30200, ["--workers", "1", "--ktls"] + tls)
        self.kwire_proxy("K", "kw-both", 30300, ["--workers", "1", "--upstream-tls-ca", ca,
                                                  "--upstream-tls-server-name", "localhost"]
                         + tls)
        self.paths = [
            ("plaintext direct", "M", f"127.0.0.1:{P}", "-", None),
            ("kwire plaintext", "M", "127.0.0.1:30000", "-", "plaintext direct"),
            ("kwire TLS termination", "M", "127.0.0.1:30100", ca, "plaintext direct"),
            ("kwire TLS term. + kTLS", "M", "127.0.0.1:30200", ca, "plaintext direct"),
            ("TLS direct (terminator)", "K", f"127.0.0.1:{P}", ca, None),
            ("kwire TLS both ways", "K", "127.0.0.1:30300", ca, "TLS direct (terminator)"),
            ("HAProxy TLS both ways", "H", f"127.0.0.1:{P}", ca, "TLS direct (terminator)"),
        ]

    def rss_kib(self, pid):
        # The kwire process under ip netns exec (which execs it).
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def run(self):
        a = self.args
        res = {}
        for i, (name, ns, addr, ca, base) in enumerate(self.paths):
            t = self.client(ns, "tput", addr, ca, a.messages, f"bench{i}")
            if t["consumed"] < t["n"]:
                print(f"  {name}: consumed only {t['consumed']} of {t['n']}", file=sys.stderr)
            lt = self.client(ns, "lat", addr, ca, a.pings)
            c = self.client(ns, "cipher", addr, ca) if ca != "-" else {}
            res[name] = (t, lt, c, base)
            print(f"  {name}: done", file=sys.stderr, flush=True)
        print(f"\nbench_tls: {a.messages} x 1 KiB messages, acks=1, 12 partitions; "
              f"latency over {a.pings} produces; one kwire worker; haproxy nbthread 1")
        print(f"{'path':26} {'produce MB/s':>12} {'consume MB/s':>12} {'p50 ms':>8} "
              f"{'p99 ms':>8} {'+p99 ms':>8}  cipher")
        for name, (t, lt, c, base) in res.items():
            add = lt["p99_ms"] - res[base][1]["p99_ms"] if base else 0.0
            print(f"{name:26} {t['produce_mbs']:12.1f} {t['consume_mbs']:12.1f} "
                  f"{lt['p50_ms']:8.3f} {lt['p99_ms']:8.3f} "
                  f"{(f'{add:+.3f}' if base else ''):>8}  "
                  f"{(c.get('version', '') + ' ' + c.get('cipher', '')).strip()}")
        print("\nnew TLS connections a second (handshake + ApiVersions + close, 4 threads):")
        for name, ns, addr in (("kwire TLS termination", "M", "127.0.0.1:30100"),
                               ("kwire TLS both ways", "K", "127.0.0.1:30300"),
                               ("HAProxy TLS both ways", "H", f"127.0.0.1:{self.port}")):
            r = self.client(ns, "conns", addr, self.certs["ca"], a.conn_secs)
            print(f"  {name:26} {r['conns_per_s']:8.0f}/s  ({r['errors']} errors)")
        if a.idle:
            self.idle(a.idle)

    def idle(self, n):
        kw = self.kwire_proxy("M", "kw-idle", 30400, ["--workers", "1", "--tls-cert",
                                                       self.certs["server"], "--tls-key",
                                                       self.certs["server_key"]])
        time.sleep(0.5)
        before = self.rss_kib(kw.pid)
        cl = subprocess.Popen(["ip", "netns", "exec", self.ns["M"], PY, CLIENT, "idle", "127.0.0.1:30400",
                               self.certs["ca"], str(n)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        info = json.loads(cl.stdout.readline().decode())
        cl.stdout.readline()  # READY
        time.sleep(2)
        after = self.rss_kib(kw.pid)
        cl.stdin.close()
        cl.wait(60)
        per = (after - before) * 1024 / max(info["opened"], 1)
        print(f"\nidle TLS connections: {info['opened']} open (each with its upstream "
              f"connection), kwire RSS {before} -> {after} KiB: {per / 1024:.1f} KiB each "
              f"(goal < 64 KiB)")

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                if p.stdin:
                    try:
                        p.stdin.close()
                    except OSError:
                        pass
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        for n in self.ns.values():
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--messages", type=int, default=30000)
    ap.add_argument("--pings", type=int, default=500)
    # Each idle client connection costs kwire two descriptors (client and
    # upstream): 10,000 need a RLIMIT_NOFILE above 20,000.
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--conn-secs", type=float, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("haproxy"):
        print("bench_tls: needs root (network namespaces) and haproxy", file=sys.stderr)
        sys.exit(2)
    b = Bench(args)
    try:
        b.setup()
        b.run()
    finally:
        b.close()


if __name__ == "__main__":
    main()
