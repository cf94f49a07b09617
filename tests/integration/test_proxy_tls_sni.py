"""One TLS port for the whole cluster (sni_hosts, docs/security.md): three
brokers behind kwire's single listener, told apart by the TLS server name.

kwire advertises broker N as bN.kafka.test on its one port; clients
connect to bootstrap.kafka.test on that port and then to each broker by
name, and kwire routes every connection by the SNI of its ClientHello.

The names must resolve to 127.0.0.1 for the clients. glibc resolves only
"localhost" itself (not *.localhost), so the test runs in a private mount
namespace (unshare -m, as root) where a file of its own is bind-mounted on
/etc/hosts: every client here (librdkafka, Python) reads it through
getaddrinfo, and nothing outside the namespace sees it.

Checked: the clients' metadata names only bN.kafka.test on kwire's one
port; kcat and confluent-kafka produce and consume every message; the
access log shows each partition's records reaching its leader; a partition
leader moving from broker 1 to broker 3 mid-run is followed (the Produce
requests for it then reach broker 3, routed by name); kwire opened no
listener but the one.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

NAMES = ["bootstrap.kafka.test", "b1.kafka.test", "b2.kafka.test", "b3.kafka.test"]


def in_hosts_namespace():
    """Re-runs this script in a private mount namespace with its own
    /etc/hosts, once."""
    if os.environ.get("KWIRE_SNI_NS") == "1":
        return
    if os.geteuid() != 0 or not shutil.which("unshare"):
        print("SKIP: a private /etc/hosts needs root and unshare (needs: root, util-linux)",
              file=sys.stderr)
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="kwire-sni-hosts-")
    hosts = os.path.join(tmp, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost " + " ".join(NAMES) + "\n::1 localhost\n")
    env = dict(os.environ, KWIRE_SNI_NS="1")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        'mount --bind "$0" /etc/hosts && exec "$@"', hosts,
                        sys.executable, os.path.abspath(__file__)], env=env)
    shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(r.returncode)


in_hosts_namespace()

from proxy_harness import SKIP, Cluster, check, produced_by_partition  # noqa: E402
import tls_certs  # noqa: E402

try:
    from confluent_kafka import Consumer, Producer, TopicPartition
except ImportError:
    print("SKIP: confluent_kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

T = "ts"
N = 60


def main():
    tmp = tempfile.mkdtemp(prefix="kwire-sni-")
    try:
        certs = tls_certs.make_certs(os.path.join(tmp, "certs"), sni_domain="kafka.test")
        args = ["--tls-cert", certs["server"], "--tls-key", certs["server_key"],
                "--sni-hosts", "b{id}.kafka.test"]
        with Cluster(topics=((T, 6),), extra_proxy_args=args) as c:
            port = int(c.bootstrap.rsplit(":", 1)[1])
            boot = f"bootstrap.kafka.test:{port}"
            ssl = ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={certs['ca']}"]
            md = subprocess.run(["kcat", "-L", "-b", boot] + ssl, capture_output=True,
                                timeout=20)
            check(md.returncode == 0, f"kcat -L: {md.stderr.decode()}")
            text = md.stdout.decode()
            for b in (1, 2, 3):
                check(f"broker {b} at b{b}.kafka.test:{port}" in text,
                      f"broker {b} is not advertised as b{b}.kafka.test:{port}:\n{text}")
            c.assert_no_real_address(text, "kcat -L")
            msgs = "".join(f"kcat {i}\n" for i in range(N)).encode()
            r = subprocess.run(["kcat", "-P", "-b", boot, "-t", T] + ssl, input=msgs,
                               capture_output=True, timeout=30)
            check(r.returncode == 0, f"kcat -P: {r.stderr.decode()}")
            r = subprocess.run(["kcat", "-C", "-b", boot, "-t", T, "-o", "beginning", "-e",
                                "-q"] + ssl, capture_output=True, timeout=30)
            got = sorted(r.stdout.decode().split("\n")[:-1])
            check(got == sorted(f"kcat {i}" for i in range(N)), f"kcat consumed {len(got)}")
            # Every Produce reached the leader of its partitions (p % 3 + 1).
            entries = c.log_entries()
            for e in entries:
                if e.get("api") != "Produce" or e.get("status") != "ok":
                    continue
                for pp in e["partitions"]:
                    want = c.real[pp["partition"] % 3 + 1]
                    check(e["broker"] == want, f"partition {pp['partition']}'s Produce went to "
                          f"{e['broker']}, its leader is {want}")
            check(sum(produced_by_partition(entries, T).values()) == N, "access log counts")
            print(f"kcat: {N} messages through one port, each partition at its leader")

            # confluent-kafka and a leader move.
            sslc = {"security.protocol": "SSL", "ssl.ca.location": certs["ca"]}
            p = Producer({"bootstrap.servers": boot, "linger.ms": 2, "acks": "all",
                          "enable.idempotence": True, "topic.metadata.refresh.interval.ms": 1000,
                          **sslc})
            errs = []

            def produce(vals):
                for v in vals:
                    p.produce(T, value=v.encode(), partition=0,
                              on_delivery=lambda e, m: errs.append(e) if e else None)
                p.flush(30)

            first = [f"move-a-{i}" for i in range(100)]
            produce(first)
            c.command(f"leader {T} 0 3")
            second = [f"move-b-{i}" for i in range(100)]
            for i in range(0, len(second), 20):
                produce(second[i:i + 20])
            check(not errs, f"delivery errors {errs[:3]}")
            md = p.list_topics(T, timeout=10)
            check(md.topics[T].partitions[0].leader == 3, "client did not learn the new leader")
            check(md.brokers[3].host == "b3.kafka.test" and md.brokers[3].port == port,
                  f"broker 3 is {md.brokers[3]}")
            entries = c.log_entries()
            to3 = [e for e in entries if e["api"] == "Produce" and e["broker"] == c.real[3]
                   and any(pp["partition"] == 0 and pp.get("records") for pp in e["partitions"])]
            check(to3, "no Produce for partition 0 reached broker 3 through kwire")
            cons = Consumer({"bootstrap.servers": boot, "group.id": "g-sni",
                             "auto.offset.reset": "earliest", **sslc})
            cons.assign([TopicPartition(T, 0, 0)])
            got = set()
            end = time.monotonic() + 30
            want = set(first + second)
            while not want <= got and time.monotonic() < end:
                m = cons.poll(0.5)
                if m is not None and not m.error():
                    got.add(m.value().decode())
            cons.close()
            check(want <= got, f"after the leader move {len(want - got)} messages missing")
            del p
            print("confluent-kafka: a leader move from broker 1 to 3 followed by name")

            ports = c.proxy_ports()
            check(set(ports.values()) == {port}, f"brokers advertised on {ports}, want {port}")
            lsn = [b for b in json.loads(c.http("/brokers"))["brokers"] if b["listening"]]
            check(not lsn, f"kwire opened broker listeners: {lsn}")
            bad = [ln for ln in c.proxy_stderr().splitlines()
                   if ln.startswith(("kwire proxy: error:", "kwire proxy: warn:"))
                   and "after its body" not in ln]
            check(not bad, "kwire complained:\n" + "\n".join(bad[:10]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
