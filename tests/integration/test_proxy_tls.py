"""TLS termination, mTLS and wrong-protocol detection (docs/security.md),
with real clients through kwire to the plaintext 3-broker mock cluster.

Certificates are made with openssl into a temporary folder (tls_certs.py).

1. Termination: kcat, confluent-kafka, kafka-python and kafkajs with
   security.protocol SSL produce and consume every message through a TLS
   listener; the access log counts the records; kwire logs no warning.
2. Wrong protocol: a plaintext client on the TLS listener is refused with
   "plaintext Kafka client on a TLS listener", and a TLS client on a
   plaintext listener with "TLS client on a plaintext listener".
3. mTLS (tls_client_ca): a client without a certificate, or with one from a
   CA kwire does not trust, is refused during the handshake (the client
   sees a TLS error); a trusted one that no mapping rule maps is refused
   after it; alice's principal (mapped from her subject DN by a
   Kafka-style rule) is in the access log and in /metrics; a rule denying
   Produce to principal User:bob refuses bob's records and not alice's.
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
from proxy_harness import SKIP, Cluster, check, peer, produced_by_partition  # noqa: E402
import tls_certs  # noqa: E402

try:
    from confluent_kafka import Consumer, KafkaException, Producer
except ImportError:
    print("SKIP: confluent_kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)
try:
    from kafka import KafkaConsumer, KafkaProducer
except ImportError:
    print("SKIP: kafka-python not installed (needs: python3-kafka, tools/install-deps.sh)",
          file=sys.stderr)
    sys.exit(SKIP)

CACHE = os.environ.get("KWIRE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "kwire"))
NODE = shutil.which("node")
NODE_MODULES = os.environ.get("KWIRE_NODE_CLIENTS", os.path.join(CACHE, "node-clients"))
KAFKAJS = os.path.join(os.environ.get("KWIRE_SRC", "."), "tools", "clients", "kafkajs-client.js")
N = 30


def warnings(c):
    """kwire's warnings and errors, but the 2.12 mock's known extra byte
    after a Metadata v12 body (docs/peers.md)."""
    return [ln for ln in c.proxy_stderr().splitlines()
            if ln.startswith(("kwire proxy: error:", "kwire proxy: warn:"))
            and "after its body" not in ln]


def wait_log(c, pattern, what, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if re.search(pattern, c.proxy_stderr()):
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: no line matching {pattern!r} in kwire's log:\n"
                         + c.proxy_stderr()[-2000:])


def kcat(args, inp=None, env=None, timeout=30):
    return subprocess.run(["kcat"] + args, input=inp, capture_output=True, timeout=timeout,
                          env=env)


def ssl_kcat(certs, client=None):
    a = ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={certs['ca']}"]
    if client:
        a += ["-X", f"ssl.certificate.location={certs[client]}",
              "-X", f"ssl.key.location={certs[client + '_key']}"]
    return a


def ssl_confluent(certs, client=None):
    d = {"security.protocol": "SSL", "ssl.ca.location": certs["ca"]}
    if client:
        d["ssl.certificate.location"] = certs[client]
        d["ssl.key.location"] = certs[client + "_key"]
    return d


def confluent_roundtrip(c, certs, topic, client=None, n=N):
    """Produces n messages and consumes them back; returns the delivery
    errors and the values read."""
    errs = []
    p = Producer({"bootstrap.servers": c.bootstrap, "socket.timeout.ms": 10000,
                  "message.timeout.ms": 15000, **ssl_confluent(certs, client)})
    for i in range(n):
        p.produce(topic, value=f"cf {i}".encode(), partition=i % 3,
                  on_delivery=lambda e, m: errs.append(e) if e else None)
    p.flush(30)
    got = []
    if errs:
        return errs, got
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": f"g-{topic}-{client}",
                     "auto.offset.reset": "earliest", **ssl_confluent(certs, client)})
    cons.subscribe([topic])
    end = time.monotonic() + 30
    while len(got) < n and time.monotonic() < end:
        m = cons.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    cons.close()
    return errs, got


def part_termination(c, certs):
    # kcat
    msgs = "".join(f"kcat {i}\n" for i in range(N)).encode()
    r = kcat(["-P", "-b", c.bootstrap, "-t", "tk"] + ssl_kcat(certs), inp=msgs)
    check(r.returncode == 0, f"kcat -P over TLS failed: {r.stderr.decode()}")
    r = kcat(["-C", "-b", c.bootstrap, "-t", "tk", "-o", "beginning", "-e", "-q"]
             + ssl_kcat(certs))
    got = sorted(r.stdout.decode().split("\n")[:-1])
    check(got == sorted(f"kcat {i}" for i in range(N)), f"kcat consumed {len(got)} of {N}")
    print(f"kcat: {N} messages produced and consumed over TLS")

    # The other three clients use their own topics and groups: they run side
    # by side (each mostly waits for its group's first join, held 3 s by the
    # mock cluster).
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        runs = [pool.submit(f, c, certs) for f in (termination_confluent,
                                                    termination_kafka_python,
                                                    termination_kafkajs)]
        for r in runs:
            r.result()

    byp = produced_by_partition(c.log_entries(), "tc")
    check(sum(byp.values()) == N, f"access log counts {byp} records for tc")
    bad = warnings(c)
    check(not bad, "kwire complained:\n" + "\n".join(bad[:10]))
    m = c.metrics()
    hs = m.get(("kwire_tls_handshakes_total", frozenset()), 0)
    check(hs > 0, f"kwire_tls_handshakes_total {hs}")


def termination_confluent(c, certs):
    errs, got = confluent_roundtrip(c, certs, "tc")
    check(not errs, f"confluent-kafka: delivery errors {errs[:3]}")
    check(sorted(got) == sorted(f"cf {i}" for i in range(N)),
          f"confluent-kafka consumed {len(got)} of {N}")
    print(f"confluent-kafka: {N} messages produced and consumed over TLS")


def termination_kafka_python(c, certs):
    kp = dict(security_protocol="SSL", ssl_cafile=certs["ca"], api_version_auto_timeout_ms=10000)
    prod = KafkaProducer(bootstrap_servers=c.bootstrap, acks="all", **kp)
    futs = [prod.send("tp", value=f"kp {i}".encode(), partition=i % 3) for i in range(N)]
    prod.flush(30)
    for f in futs:
        f.get(timeout=10)
    prod.close(10)
    cons = KafkaConsumer("tp", bootstrap_servers=c.bootstrap, group_id="g-tp",
                         auto_offset_reset="earliest", consumer_timeout_ms=1000, **kp)
    got = []
    end = time.monotonic() + 30
    while len(got) < N and time.monotonic() < end:
        got += [m.value.decode() for m in cons]
    cons.close()
    check(sorted(got) == sorted(f"kp {i}" for i in range(N)),
          f"kafka-python consumed {len(got)} of {N}")
    print(f"kafka-python: {N} messages produced and consumed over TLS")


def termination_kafkajs(c, certs):
    """tools/clients/kafkajs-client.js: every codec, then a group."""
    if NODE and os.path.isdir(os.path.join(NODE_MODULES, "node_modules", "kafkajs")):
        import client_run
        import test_decode_records as tdr
        tmp = tempfile.mkdtemp(prefix="kwire-tls-kjs-")
        try:
            exp = os.path.join(tmp, "kjs.expected")
            env = dict(os.environ, KWIRE_NODE_CLIENTS=NODE_MODULES)
            env.pop("LD_LIBRARY_PATH", None)
            r = subprocess.run([NODE, KAFKAJS, "--topic", "tjs", "--n", "10", "--group", "g-tjs",
                                "--ssl-ca", certs["ca"], c.bootstrap, exp],
                               capture_output=True, timeout=120, env=env)
            check(r.returncode == 0, f"kafkajs over TLS failed: {r.stderr.decode()[-2000:]}")
            client_run.check_expected(tdr.load_expected(exp), "tjs", 10)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print("kafkajs: 50 records (5 codecs) produced and consumed over TLS")
    else:
        print("SKIP: kafkajs part (needs: kafkajs, tools/install-clients.sh)", file=sys.stderr)
        sys.exit(SKIP)


def part_wrong_protocol(c, certs, plain):
    # Plaintext Kafka on the TLS listener.
    r = kcat(["-L", "-b", c.bootstrap, "-m", "3"], timeout=20)
    check(r.returncode != 0, "a plaintext client got metadata from a TLS listener")
    wait_log(c, r"plaintext Kafka client on a TLS listener \(its first request is ApiVersions",
             "plaintext client on the TLS listener")
    check(c.metric("kwire_tls_wrong_protocol_total", listener="tls", client="plaintext") >= 1,
          "kwire_tls_wrong_protocol_total{listener=tls} not counted")
    # Something that is neither.
    host, port = c.bootstrap.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    s.settimeout(10)
    try:
        answer = s.recv(100)
    except ConnectionResetError:  # closed with the request unread
        answer = b""
    check(answer == b"", "kwire answered an HTTP request on its TLS listener")
    s.close()
    wait_log(c, r"not a TLS client on a TLS listener \(first bytes 47 45 54 20\)",
             "HTTP on the TLS listener")
    # A TLS client on the plaintext listener of the second proxy.
    r = kcat(["-L", "-b", plain.bootstrap, "-m", "3"] + ssl_kcat(certs), timeout=20)
    check(r.returncode != 0, "a TLS client got metadata from a plaintext listener")
    wait_log(plain, r"TLS client on a plaintext listener", "TLS client on the plain listener")
    check(plain.metric("kwire_tls_wrong_protocol_total", listener="plaintext", client="tls") >= 1,
          "kwire_tls_wrong_protocol_total{listener=plaintext} not counted")
    print("wrong protocol: both directions recognised and logged")


def part_mtls(certs, tmp):
    rules = os.path.join(tmp, "rules.yaml")
    with open(rules, "w") as f:
        f.write("access:\n"
                "  - name: bob-is-read-only\n"
                "    match: {api: Produce, principal: \"User:bob\"}\n"
                "    deny: TOPIC_AUTHORIZATION_FAILED\n")
    args = ["--tls-cert", certs["server"], "--tls-key", certs["server_key"],
            "--tls-client-ca", certs["ca"],
            "--tls-principal-rules", "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L",
            "--rules", rules]
    with Cluster(topics=(("tm", 3),), extra_proxy_args=args) as c:
        # No certificate: refused in the handshake.
        r = kcat(["-L", "-b", c.bootstrap, "-m", "3"] + ssl_kcat(certs), timeout=20)
        check(r.returncode != 0, "a client without a certificate got metadata")
        wait_log(c, r"client TLS handshake failed: .*peer did not return a certificate",
                 "client without a certificate")
        # A certificate from a CA kwire does not trust. librdkafka 2.0.2
        # sends it (kwire refuses it); 2.12 keeps it back, its issuer not
        # being among the CAs kwire asks for (kwire refuses no certificate).
        before = len(re.findall("client TLS handshake failed", c.proxy_stderr()))
        r = kcat(["-L", "-b", c.bootstrap, "-m", "3"] + ssl_kcat(certs, "mallory"), timeout=20)
        check(r.returncode != 0, "a client with an untrusted certificate got metadata")
        check(b"SSL" in r.stderr or b"ssl" in r.stderr,
              f"kcat's error is not a TLS one: {r.stderr.decode()}")
        if peer() == "2.0.2":
            wait_log(c, r"client TLS handshake failed: client certificate refused \(unable to "
                     r"get local issuer certificate", "client with an untrusted certificate")
        after = len(re.findall("client TLS handshake failed", c.proxy_stderr()))
        check(after > before, "no refused handshake logged for the untrusted certificate")
        print("mTLS: no certificate and an untrusted one refused in the handshake")
        # A trusted certificate that no mapping rule maps (no DEFAULT): refused.
        r = kcat(["-L", "-b", c.bootstrap, "-m", "3"] + ssl_kcat(certs, "carol"), timeout=20)
        check(r.returncode != 0, "carol (no rule maps her DN) got metadata")
        wait_log(c, r"client refused: no tls_principal_rules rule applies to "
                 r"'CN=carol,OU=Contractors,O=Example,C=US'", "carol")
        check(c.metric("kwire_tls_no_principal_total") >= 1, "kwire_tls_no_principal_total")

        errs, got = confluent_roundtrip(c, certs, "tm", "alice", n=12)
        check(not errs and len(got) == 12, f"alice: errors {errs[:2]}, consumed {len(got)}")
        errs, _ = confluent_roundtrip(c, certs, "tm", "bob", n=3)
        check(errs and all(e.code() == 29 for e in errs),
              f"bob's Produce was not refused with TOPIC_AUTHORIZATION_FAILED: {errs}")
        entries = c.log_entries()
        alice = [e for e in entries if e.get("principal") == "User:alice"]
        bob = [e for e in entries if e.get("principal") == "User:bob"]
        check(alice and all(e["principal"] == "User:alice" for e in alice),
              "no access log line with principal User:alice")
        check(any(e.get("api") == "Produce" and e.get("error") == "TOPIC_AUTHORIZATION_FAILED"
                  for e in bob), "no refused Produce of User:bob in the access log")
        check(not any(e.get("api") == "Produce" and e.get("principal") == "User:alice"
                      and e.get("error") for e in entries), "alice's Produce refused")
        byp = produced_by_partition(entries, "tm")
        check(sum(byp.values()) == 12, f"access log counts {byp} produced records, want alice's 12")
        check(c.metric("kwire_principal_requests_total", principal="User:alice") > 0,
              "no kwire_principal_requests_total for User:alice")
        print("mTLS: alice's principal in the access log and /metrics; "
              "the rule on User:bob refuses his Produce")


def main():
    tmp = tempfile.mkdtemp(prefix="kwire-tls-")
    try:
        certs = tls_certs.make_certs(os.path.join(tmp, "certs"))
        tls_args = ["--tls-cert", certs["server"], "--tls-key", certs["server_key"]]
        # The mTLS part has its own cluster and proxy: it runs alongside.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            mtls = pool.submit(part_mtls, certs, tmp)
            with Cluster(topics=(("tk", 3), ("tc", 3), ("tp", 3), ("tjs", 5)),
                         extra_proxy_args=tls_args) as c:
                part_termination(c, certs)
                with Cluster(topics=(("x", 1),)) as plain:
                    part_wrong_protocol(c, certs, plain)
            mtls.result()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
