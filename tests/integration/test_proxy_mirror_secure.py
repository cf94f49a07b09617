"""A mirror cluster with security of its own (docs/rules.md "mirror": `tls:`
and `sasl:` in a mirror rule's `to:`).

Cluster A sits behind kwire with a mirror rule to cluster B. B can only be
reached through a second kwire that terminates TLS (a test CA) and SASL
(SCRAM-SHA-512, users from `kwire passwd`): the mirror's producer must do
both, as it would for a managed cluster.

- The rule names the CA and the user, the password comes from a file:
  every record A acknowledged is on B (read from B's own mock), keys and
  values; B's kwire counts the SCRAM-SHA-512 logins and logs the mirror's
  Produce requests as User:mirror; `kwire rules check` shows the password
  as [redacted].
- The same rule reloaded with a wrong password: A's producer goes on
  unharmed, nothing more reaches B, A counts every new record failed or
  dropped, and neither kwire's log nor /rules shows either password.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_harness import SKIP, Cluster, check, env, peer  # noqa: E402
import sasl_util as su  # noqa: E402
import tls_certs  # noqa: E402

try:
    import confluent_kafka
except ImportError:
    print("SKIP: confluent-kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

TOPIC = "orders"
PARTS = 2
N = 2000
PW = "Mirror-pw-7f3c"
WRONG = "Wrong-pw-91ab"

RULES = """mirror:
  - name: to-b
    match: {{topic: {topic}}}
    to:
      bootstrap: {boot}
      tls: {{ca: {ca}}}
      sasl: {{mechanism: SCRAM-SHA-512, username: mirror, password_file: {pwfile}}}
      properties: {{linger.ms: 5, message.timeout.ms: 5000}}
"""


def produce(bootstrap, tag, n):
    """n records with keys tag-i through kwire; returns the keys acknowledged."""
    acked = []

    def dr(err, msg):
        if not err:
            acked.append(msg.key().decode())
    p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                                  "message.timeout.ms": 30000})
    for i in range(n):
        p.produce(TOPIC, key=f"{tag}-{i}".encode(), value=f"v-{tag}-{i}".encode(),
                  partition=i % PARTS, on_delivery=dr)
        if i % 500 == 0:
            p.poll(0)
    check(p.flush(30) == 0, f"{tag}: not every record reported")
    return acked


def read_direct(bootstrap):
    """{key: value} of every record of TOPIC on a cluster, up to its high
    watermarks."""
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "ms-check",
                                  "enable.auto.commit": False})
    tps = [confluent_kafka.TopicPartition(TOPIC, p) for p in range(PARTS)]
    ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
    c.assign([confluent_kafka.TopicPartition(TOPIC, p, confluent_kafka.OFFSET_BEGINNING)
              for p in range(PARTS)])
    out, pos = {}, {p: 0 for p in range(PARTS)}
    deadline = time.monotonic() + 30
    while any(pos[p] < ends[p] for p in pos) and time.monotonic() < deadline:
        for m in c.consume(5000, 0.5):
            if m.error():
                continue
            pos[m.partition()] = m.offset() + 1
            out[m.key().decode()] = m.value().decode()
    c.close()
    check(all(pos[p] >= ends[p] for p in pos), f"read {pos} of {ends}")
    return out


def wait_for(what, cond, secs=30):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    check(False, f"timed out waiting for {what}")


def main():
    tmp = tempfile.mkdtemp(prefix="kwire-mirror-secure-")
    kwire = env("KWIRE_BIN")
    certs = tls_certs.make_certs(os.path.join(tmp, "certs"))
    creds = os.path.join(tmp, "users")
    su.passwd(kwire, creds, "mirror", PW)
    pwfile = os.path.join(tmp, "mirror.pw")
    with open(pwfile, "w") as f:
        f.write(PW + "\n")
    b_args = ["--tls-cert", certs["server"], "--tls-key", certs["server_key"],
              "--sasl", "terminate", "--sasl-credentials", creds]
    with Cluster(topics=((TOPIC, PARTS),), brokers=1, extra_proxy_args=b_args) as b:
        rules = os.path.join(tmp, "rules.yaml")
        with open(rules, "w") as f:
            f.write(RULES.format(topic=TOPIC, boot=b.bootstrap, ca=certs["ca"], pwfile=pwfile))
        r = subprocess.run([kwire, "rules", "check", rules], capture_output=True, text=True,
                           timeout=30)
        check(r.returncode == 0 and "security.protocol=SASL_SSL" in r.stdout and
              "sasl.password=[redacted]" in r.stdout and PW not in r.stdout,
              f"rules check: {r.returncode} {r.stdout} {r.stderr}")
        with Cluster(topics=((TOPIC, PARTS),), extra_proxy_args=["--rules", rules]) as a:
            acked = produce(a.bootstrap, "ok", N)
            check(len(acked) == N, f"A acknowledged {len(acked)} of {N}")
            wait_for("the mirror to deliver",
                     lambda: a.metric("kwire_mirror_records_mirrored_total") >= N)
            on_b = read_direct(b.upstream)
            check(set(on_b) == set(acked) and
                  all(on_b[k] == "v-" + k for k in acked),
                  f"B holds {len(on_b)} records, {len(set(acked) - set(on_b))} acknowledged "
                  f"ones missing, {len(set(on_b) - set(acked))} extra")
            check(b.metric("kwire_sasl_authentications_total", mechanism="SCRAM-SHA-512",
                           result="success") >= 1, "B's kwire saw no SCRAM-SHA-512 login")
            produces = [e for e in b.log_entries() if e.get("api") == "Produce"]
            check(produces and all(e.get("principal") == "User:mirror" for e in produces),
                  f"B's Produce principals: {sorted({str(e.get('principal')) for e in produces})}")

            # A wrong password, reloaded: new records fail or drop, A is unharmed.
            with open(pwfile, "w") as f:
                f.write(WRONG + "\n")
            with open(rules, "w") as f:  # a new rule name: a new producer, a new login
                f.write(RULES.replace("to-b", "to-b-wrong").format(
                    topic=TOPIC, boot=b.bootstrap, ca=certs["ca"], pwfile=pwfile))
            reloads = a.metric("kwire_rules_reloads_total")
            os.kill(a.pid(), signal.SIGHUP)
            wait_for("the reload", lambda: a.metric("kwire_rules_reloads_total") > reloads)
            lost0 = (a.metric("kwire_mirror_records_failed_total") +
                     a.metric("kwire_mirror_records_dropped_total"))
            acked2 = produce(a.bootstrap, "bad", 200)
            check(len(acked2) == 200, f"A acknowledged {len(acked2)} of 200 with B refusing")
            wait_for("the mirror's failures",
                     lambda: a.metric("kwire_mirror_records_failed_total") +
                     a.metric("kwire_mirror_records_dropped_total") - lost0 >= 200, secs=40)
            on_b2 = read_direct(b.upstream)
            check(not any(k.startswith("bad-") for k in on_b2),
                  "records reached B with a wrong password")
            check(b.metric("kwire_sasl_authentications_total", mechanism="SCRAM-SHA-512",
                           result="failure") >= 1, "B's kwire saw no failed login")
            text = a.proxy_stderr() + a.http("/rules")
            check(PW not in text and WRONG not in text, "A's log or /rules shows a password")
    print(f"ok (peer {peer()})")


if __name__ == "__main__":
    main()
