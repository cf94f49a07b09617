"""TLS origination (docs/security.md): kwire speaks TLS to brokers behind a
TLS terminator that is not kwire, HAProxy from Debian.

    client --(plain or TLS)--> kwire --TLS--> haproxy --plain--> mock broker
            root namespace                    root ns  |  namespace kwtls-*

The mock cluster (proxy_harness.mockcluster_path(): either peer) runs in a
network namespace of its own, so its brokers' advertised addresses,
127.0.0.1:P, are free in the test's namespace: HAProxy binds each P there
with TLS and forwards to the broker in the other namespace (`server ...
namespace`, like the HAProxy anchor's `bind ... namespace`). kwire, with
upstream_tls, then reaches every broker at the very address the cluster
advertises, over TLS, with the CA and the host (here the IP address)
checked.

1. plain -> TLS and TLS -> TLS: kcat and confluent-kafka produce and consume
   every message through kwire.
2. SNI is sent: a terminator that serves only clients asking for
   "localhost" answers kwire bootstrapping at localhost, not at 127.0.0.1.
3. kwire's own client certificate (upstream_tls_cert) gets it through a
   terminator that requires one; without it, kwire is refused.
4. A terminator whose certificate is untrusted (another CA), or is for
   another host, is refused: the client gets no metadata and kwire logs
   "broker certificate refused" with the reason.
"""
import concurrent.futures
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import (SKIP, _readline, check, check_peer_clients, env, kwire_env,  # noqa
                           mockcluster_path)
import tls_certs  # noqa: E402

try:
    from confluent_kafka import Consumer, Producer
except ImportError:
    print("SKIP: confluent_kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
N = 30


def need():
    if not os.path.exists(HAPROXY):
        print("SKIP: no haproxy (needs: haproxy, tools/install-deps.sh)", file=sys.stderr)
        sys.exit(SKIP)
    if os.geteuid() != 0 or not shutil.which("ip"):
        print("SKIP: network namespaces need root and ip (needs: root, iproute2)",
              file=sys.stderr)
        sys.exit(SKIP)


class Setup:
    """The namespace, the mock cluster in it, HAProxy in front of it."""

    def __init__(self, tmp, certs):
        self.tmp, self.certs = tmp, certs
        self.ns = f"kwtls-{os.getpid()}"
        self.mc = self.hap = None
        self.procs = []

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(["ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up"],
                       check=True)
        # HAProxy listens outside the namespace on the port numbers the mock's
        # brokers got in theirs: one of them may be taken here by anything
        # else on the machine. Then the mock starts again, on new ports.
        for attempt in range(3):
            err = self._start()
            if err is None:
                break
            self._stop()
            if "Address already in use" not in err or attempt == 2:
                subprocess.run(["ip", "netns", "del", self.ns])
                raise RuntimeError("haproxy did not start:\n" + err)
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.brokers.values())
        return self

    def _start(self):
        """The mock cluster in the namespace and HAProxy in front of it; None,
        or HAProxy's complaint when it did not start."""
        args = ["ip", "netns", "exec", self.ns, mockcluster_path(), "--brokers", "3",
                "--topic", "to:3"]
        for p in range(3):
            args += ["--leader", f"to:{p}:{p + 1}"]
        self.mc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=open(os.path.join(self.tmp, "mc.err"), "w"))
        self.brokers = {}
        deadline = time.monotonic() + 20
        while True:
            line = _readline(self.mc, deadline, "mock cluster")
            if line.startswith("BROKER "):
                _, bid, addr = line.split()
                self.brokers[int(bid)] = int(addr.rsplit(":", 1)[1])
            elif line == "READY":
                break
        # HAProxy wants the certificate and its key in one file.
        self.pems = {}
        for name in ("server", "wrong_host", "rogue_server"):
            path = os.path.join(self.tmp, f"{name}-haproxy.pem")
            with open(path, "w") as out:
                for part in (self.certs[name], self.certs[name + "_key"]):
                    out.write(open(part).read())
            self.pems[name] = path
        self.wrong_port = free_port()
        self.rogue_port = free_port()
        self.sni_port = free_port()
        self.mtls_port = free_port()
        cfg = os.path.join(self.tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n  maxconn 1000\n"
                    "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n"
                    "  timeout server 60s\n")
            for bid, port in self.brokers.items():
                f.write(f"frontend b{bid}\n  bind 127.0.0.1:{port} ssl crt {self.pems['server']}\n"
                        f"  default_backend k{bid}\n"
                        f"backend k{bid}\n  server s{bid} 127.0.0.1:{port} namespace {self.ns}\n")
            first = self.brokers[min(self.brokers)]
            for name, port in (("wrong_host", self.wrong_port), ("rogue_server", self.rogue_port)):
                f.write(f"frontend {name}\n  bind 127.0.0.1:{port} ssl crt {self.pems[name]}\n"
                        f"  default_backend {name}_k\n"
                        f"backend {name}_k\n  server s 127.0.0.1:{first} namespace {self.ns}\n")
            # Serves only clients that ask for "localhost" by SNI.
            f.write(f"frontend sni\n  bind 127.0.0.1:{self.sni_port} ssl crt {self.pems['server']}\n"
                    "  tcp-request content reject unless { ssl_fc_sni -m str localhost }\n"
                    "  default_backend sni_k\n"
                    f"backend sni_k\n  server s 127.0.0.1:{first} namespace {self.ns}\n")
            # Requires a client certificate from the test CA (mTLS to the cluster).
            f.write(f"frontend mtls\n  bind 127.0.0.1:{self.mtls_port} ssl crt {self.pems['server']}"
                    f" ca-file {self.certs['ca']} verify required\n"
                    "  default_backend mtls_k\n"
                    f"backend mtls_k\n  server s 127.0.0.1:{first} namespace {self.ns}\n")
        self.hap = subprocess.Popen([HAPROXY, "-db", "-f", cfg], stdout=subprocess.DEVNULL,
                                    stderr=open(os.path.join(self.tmp, "haproxy.err"), "w"))
        ports = list(self.brokers.values()) + [self.wrong_port, self.rogue_port, self.sni_port,
                                               self.mtls_port]
        deadline = time.monotonic() + 10
        while not all(listening(p) for p in ports):
            if self.hap.poll() is not None or time.monotonic() > deadline:
                return open(os.path.join(self.tmp, "haproxy.err")).read()
            time.sleep(0.1)
        return None

    def _stop(self):
        for p in (self.hap, self.mc):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        self.hap = self.mc = None

    def kwire(self, name, extra):
        """Starts kwire proxy (plaintext listener unless extra says TLS);
        returns (process, bootstrap, stderr path)."""
        err = os.path.join(self.tmp, f"{name}.err")
        p = subprocess.Popen([env("KWIRE_BIN"), "proxy", "--upstream", self.bootstrap,
                              "--listen", "127.0.0.1:0", "--no-log",
                              "--upstream-tls", *extra],
                             stdout=subprocess.PIPE, stderr=open(err, "w"), env=kwire_env())
        self.procs.append(p)
        line = _readline(p, time.monotonic() + 20, "kwire proxy")
        while not line.startswith("LISTEN "):
            line = _readline(p, time.monotonic() + 20, "kwire proxy")
        return p, line.split()[1], err

    def __exit__(self, *exc):
        bad = []
        for p in self.procs + [self.hap]:
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            if p in self.procs and p.returncode != 0:
                bad.append(p.returncode)
        if self.mc and self.mc.poll() is None:
            self.mc.stdin.close()
            try:
                self.mc.wait(10)
            except subprocess.TimeoutExpired:
                self.mc.kill()
                self.mc.wait()
        subprocess.run(["ip", "netns", "del", self.ns])
        if exc[0] is None and bad:
            raise AssertionError(f"kwire proxy exited with {bad} (a sanitizer report?)")
        if exc[0] is not None:
            for f in sorted(os.listdir(self.tmp)):
                if f.endswith(".err"):
                    sys.stderr.write(f"---- {f} ----\n"
                                     + open(os.path.join(self.tmp, f)).read()[-2000:])
        return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def warnings(path):
    return [ln for ln in open(path).read().splitlines()
            if ln.startswith(("kwire proxy: error:", "kwire proxy: warn:"))
            and "after its body" not in ln]


def roundtrip(bootstrap, topic, ssl, tag):
    errs = []
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 15000, **ssl})
    for i in range(N):
        p.produce(topic, value=f"{tag} {i}".encode(), partition=i % 3,
                  on_delivery=lambda e, m: errs.append(e) if e else None)
    p.flush(30)
    check(not errs, f"{tag}: delivery errors {errs[:3]}")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{tag}",
                  "auto.offset.reset": "earliest", **ssl})
    c.subscribe([topic])
    got = []
    end = time.monotonic() + 30
    while len(got) < N and time.monotonic() < end:
        m = c.poll(0.5)
        if m is not None and not m.error() and m.value().decode().startswith(tag + " "):
            got.append(m.value().decode())
    c.close()
    check(sorted(got) == sorted(f"{tag} {i}" for i in range(N)),
          f"{tag}: consumed {len(got)} of {N}")


def wait_for(path, pattern, what):
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if re.search(pattern, open(path).read()):
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: no line matching {pattern!r}:\n" + open(path).read()[-2000:])


def start_kwire(s, name, upstream, extra):
    """kwire proxy to upstream with --upstream-tls-ca and extra; returns its
    listener and the path of its stderr."""
    err = os.path.join(s.tmp, f"{name}.err")
    p = subprocess.Popen([env("KWIRE_BIN"), "proxy", "--upstream", upstream, "--listen",
                          "127.0.0.1:0", "--no-log", "--upstream-tls-ca", s.certs["ca"]] + extra,
                         stdout=subprocess.PIPE, stderr=open(err, "w"), env=kwire_env())
    s.procs.append(p)
    line = _readline(p, time.monotonic() + 20, "kwire proxy")
    while not line.startswith("LISTEN "):
        line = _readline(p, time.monotonic() + 20, "kwire proxy")
    return line.split()[1], err


def case_plain_tls(s, boot, err):
    roundtrip(boot, "to", {}, "plain")
    check(not warnings(err), "kwire complained:\n" + "\n".join(warnings(err)[:5]))
    md = subprocess.run(["kcat", "-L", "-b", boot], capture_output=True, timeout=20)
    for port in s.brokers.values():
        check(f":{port}" not in md.stdout.decode(), "a client saw a real broker")
    return (f"plain -> TLS (haproxy): kcat and confluent-kafka produced and consumed {N} "
            "messages each")


def case_tls_tls(s):
    certs = s.certs
    px, boot, err = s.kwire("tls-tls", ["--upstream-tls-ca", certs["ca"],
                                        "--tls-cert", certs["server"],
                                        "--tls-key", certs["server_key"]])
    roundtrip(boot, "to", {"security.protocol": "SSL", "ssl.ca.location": certs["ca"]}, "tls")
    check(not warnings(err), "kwire complained:\n" + "\n".join(warnings(err)[:5]))
    return f"TLS -> TLS (haproxy): confluent-kafka produced and consumed {N} messages"


def case_sni(s, host, ok):
    """A terminator that serves only "localhost" answers kwire when kwire's
    bootstrap is localhost (SNI sent), and not when it is 127.0.0.1 (no SNI
    for an address, RFC 6066)."""
    boot, _ = start_kwire(s, f"sni-{host}", f"{host}:{s.sni_port}", [])
    r = subprocess.run(["kcat", "-L", "-b", boot, "-m", "5"], capture_output=True, timeout=20)
    check((r.returncode == 0) == ok and (b"broker 1 at" in r.stdout) == ok,
          f"upstream {host}: kcat -L {'failed' if ok else 'worked'}: {r.stderr.decode()[-300:]}")
    return None


def case_mtls(s, name, extra, ok):
    """kwire's own client certificate, for a terminator that requires one."""
    boot, _ = start_kwire(s, f"mtls-{name}", f"127.0.0.1:{s.mtls_port}", extra)
    r = subprocess.run(["kcat", "-L", "-b", boot, "-m", "5"], capture_output=True, timeout=20)
    check((r.returncode == 0) == ok and (b"broker 1 at" in r.stdout) == ok,
          f"mTLS upstream {name}: kcat -L {'failed' if ok else 'worked'}: "
          f"{r.stderr.decode()[-300:]}")
    return None


def case_refused(s, name, port, pattern):
    """A refused terminator: an untrusted CA, a certificate for another host."""
    boot, err = start_kwire(s, name, f"127.0.0.1:{port}", [])
    r = subprocess.run(["kcat", "-L", "-b", boot, "-m", "3"], capture_output=True, timeout=20)
    check(r.returncode != 0, f"{name}: a client got metadata through it")
    wait_for(err, pattern, name)
    said = re.search(pattern + r".*", open(err).read()).group(0)
    return f"{name} terminator refused: " + said[:120]


def main():
    need()
    check_peer_clients()
    tmp = tempfile.mkdtemp(prefix="kwire-tlsup-")
    try:
        certs = tls_certs.make_certs(os.path.join(tmp, "certs"))
        with Setup(tmp, certs) as s:
            # plain -> TLS, kcat first: it reads topic "to" to its end and
            # wants only its own records there.
            px, boot, err = s.kwire("plain-tls", ["--upstream-tls-ca", certs["ca"]])
            msgs = "".join(f"kcat {i}\n" for i in range(N)).encode()
            r = subprocess.run(["kcat", "-P", "-b", boot, "-t", "to"], input=msgs,
                               capture_output=True, timeout=30)
            check(r.returncode == 0, f"kcat -P: {r.stderr.decode()}")
            r = subprocess.run(["kcat", "-C", "-b", boot, "-t", "to", "-o", "beginning", "-e",
                                "-q"], capture_output=True, timeout=30)
            got = sorted(r.stdout.decode().split("\n")[:-1])
            check(got == sorted(f"kcat {i}" for i in range(N)), f"kcat consumed {len(got)}")
            # Then every case side by side, each with its own kwire (and
            # stderr file): most of each is waiting, for a group's first join
            # (3 s on the mock) or for kcat -L to give up on a refused path.
            # The round trips tell their records apart by a tag.
            rogue = r"broker certificate refused \(unable to get local issuer certificate"
            wrong = r"broker certificate refused \(.*it is not for 127\.0\.0\.1\)"
            cases = [
                (case_plain_tls, s, boot, err),
                (case_tls_tls, s),
                (case_sni, s, "localhost", True),
                (case_sni, s, "127.0.0.1", False),
                (case_mtls, s, "with-cert", ["--upstream-tls-cert", certs["alice"],
                                             "--upstream-tls-key", certs["alice_key"]], True),
                (case_mtls, s, "without-cert", [], False),
                (case_refused, s, "rogue", s.rogue_port, rogue),
                (case_refused, s, "wrong-host", s.wrong_port, wrong),
            ]
            with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
                runs = [pool.submit(*case) for case in cases]
                out = [r.result() for r in runs]
            for line in out[:2]:
                print(line)
            print("SNI: sent for a host name (an SNI-only terminator answers), not for an address")
            print("mTLS to the cluster: a terminator requiring a client certificate accepts "
                  "kwire's, and refuses kwire without one")
            for line in out[6:]:
                print(line)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
