"""SASL_SSL through kwire: TLS termination and SASL termination together
(docs/security.md), with real clients, to the plaintext mock cluster.

kwire listens with TLS (a certificate made by tls_certs.py) and terminates
SASL with users from `kwire passwd`. confluent-kafka (librdkafka),
kafka-python (SASL v0 tokens) and kafkajs produce and consume with
security.protocol SASL_SSL over PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; kcat
lists the cluster; a wrong password over TLS is refused. A client that
also presents a certificate (mTLS, bob's) and authenticates with SASL as
alice is User:alice, as in Kafka, where a SASL_SSL listener's principal
is the SASL one.
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, check, peer  # noqa: E402
import sasl_util as su  # noqa: E402
import tls_certs  # noqa: E402

try:
    import confluent_kafka  # noqa: F401
    import kafka
except ImportError as e:
    print(f"SKIP: {e.name} not installed (needs: python3-confluent-kafka, python3-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

PW = "Alice-ssl-pw-31"
MECHS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
TOPIC = "ss"
NODE = shutil.which("node")
CACHE = os.environ.get("KWIRE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "kwire"))
MODULES = os.environ.get("KWIRE_NODE_CLIENTS", os.path.join(CACHE, "node-clients"))
KJS = os.path.join(os.environ.get("KWIRE_SRC", "."), "tools", "clients", "kafkajs-sasl.js")


def ssl_conf(certs, bootstrap, mech, password=PW, **kw):
    conf = su.sasl_conf(bootstrap, mech, "alice", password, **kw)
    conf.update({"security.protocol": "SASL_SSL", "ssl.ca.location": certs["ca"]})
    return conf


def kafka_python(certs, bootstrap, mech, tag):
    kw = dict(bootstrap_servers=bootstrap, security_protocol="SASL_SSL", ssl_cafile=certs["ca"],
              sasl_mechanism=mech, sasl_plain_username="alice", sasl_plain_password=PW,
              api_version=(1, 0, 0))
    p = kafka.KafkaProducer(**kw, max_block_ms=10000)
    for i in range(5):
        p.send(TOPIC, f"{tag}-{i}".encode(), partition=1).get(timeout=20)
    p.close()
    c = kafka.KafkaConsumer(**kw, auto_offset_reset="earliest")
    c.assign([kafka.TopicPartition(TOPIC, 1)])
    import time
    got, deadline = set(), time.monotonic() + 20
    while len(got) < 5 and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            got |= {m.value.decode() for m in recs if m.value.decode().startswith(tag)}
    c.close()
    check(len(got) == 5, f"kafka-python SASL_SSL {mech}: {len(got)} of 5 records back")


def kafkajs(certs, bootstrap, mech, consume):
    if not NODE or not os.path.isdir(os.path.join(MODULES, "node_modules", "kafkajs")):
        print("SKIP: kafkajs not installed (needs: kafkajs, tools/install-clients.sh)",
              file=sys.stderr)
        sys.exit(SKIP)
    env = dict(os.environ, KWIRE_NODE_CLIENTS=MODULES, KJS_PW=PW, KJS_CA=certs["ca"])
    env.pop("LD_LIBRARY_PATH", None)
    r = subprocess.run([NODE, KJS, bootstrap, mech.lower(), "alice", "$KJS_PW", TOPIC, "5"] +
                       ([] if consume else ["produce-only"]),
                       capture_output=True, text=True, timeout=90, env=env)
    check(r.returncode == 0, f"kafkajs SASL_SSL {mech}: exit {r.returncode}: {r.stdout}{r.stderr}")


def main():
    tmp = tempfile.mkdtemp(prefix="kwire-sasl-ssl-")
    kwire = os.environ["KWIRE_BIN"]
    certs = tls_certs.make_certs(os.path.join(tmp, "certs"))
    creds = os.path.join(tmp, "users")
    su.passwd(kwire, creds, "alice", PW)
    args = ["--tls-cert", certs["server"], "--tls-key", certs["server_key"],
            "--tls-client-ca", certs["ca"], "--tls-client-auth", "requested",
            "--sasl", "terminate", "--sasl-credentials", creds]
    with Cluster(topics=((TOPIC, 2),), extra_proxy_args=args) as c:
        for mech in MECHS:
            su.confluent_round(ssl_conf(certs, c.bootstrap, mech), TOPIC, 10, f"ssl-{mech}")
            kafka_python(certs, c.bootstrap, mech, f"ssl-kp-{mech}")
            kafkajs(certs, c.bootstrap, mech, mech == "SCRAM-SHA-512")
        r = subprocess.run(["kcat", "-b", c.bootstrap, "-L", "-X", "security.protocol=SASL_SSL",
                            "-X", f"ssl.ca.location={certs['ca']}", "-X",
                            "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username=alice", "-X",
                            f"sasl.password={PW}"], capture_output=True, text=True, timeout=30)
        check(r.returncode == 0 and TOPIC in r.stdout, f"kcat SASL_SSL -L: {r.stderr}")
        e = su.confluent_refused(ssl_conf(certs, c.bootstrap, "SCRAM-SHA-256", "wrong"),
                                 "SASL_SSL, wrong password")
        check("uthentication" in e.str(), f"librdkafka's error: {e.str()}")
        # mTLS and SASL on one connection: the SASL principal wins
        both = ssl_conf(certs, c.bootstrap, "PLAIN", **{
            "ssl.certificate.location": certs["bob"], "ssl.key.location": certs["bob_key"]})
        su.confluent_round(both, TOPIC, 3, "ssl-both")
        entries = c.log_entries()
        produce = [e for e in entries if e.get("api") == "Produce"]
        check(produce and all(e.get("principal") == "User:alice" for e in produce),
              "a SASL_SSL Produce is not User:alice's: "
              f"{sorted({e.get('principal') for e in produce}, key=str)}")
        check(c.metric("kwire_sasl_authentications_total", mechanism="SCRAM-SHA-512",
                       result="success") >= 2, "SASL_SSL authentications not counted")
        err = c.proxy_stderr()
        check(PW not in err, "kwire's log shows the password")
    print(f"ok (peer {peer()})")


if __name__ == "__main__":
    main()
