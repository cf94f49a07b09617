"""SASL through kwire with real clients (docs/security.md).

kwire A terminates SASL in front of the plaintext mock cluster: users from a
credentials file written by `kwire passwd`, a rule that denies Produce to the
principal User:bob, a 1.5 s handshake timeout.

1. Termination: confluent-kafka (librdkafka), kafka-python (SASL v0 raw
   tokens) and kafkajs produce and consume through A with PLAIN,
   SCRAM-SHA-256 and SCRAM-SHA-512; kcat lists the cluster.
2. A wrong password is refused: librdkafka and kafkajs report an
   authentication failure, and on the wire the answer is
   SASL_AUTHENTICATION_FAILED, then the connection closes; kafka-python (v0)
   is closed without an answer. A user unknown to the file likewise.
3. Principals: the access log names User:alice on her requests, /metrics
   counts her requests, and the deny rule refuses bob's Produce with
   TOPIC_AUTHORIZATION_FAILED while his Metadata passes.
4. Limits before authentication: a Metadata request, a frame over
   sasl_max_frame_bytes, and silence past the timeout each close the
   connection and are counted by reason.
5. Passthrough: kwire B (sasl: passthrough) in front of A, so that A (kwire
   terminating) checks what the clients' own SASL implementations send
   through B; B learns each principal from A's answers (its access log and
   metrics), and a wrong password through B is refused by A.
6. Reload: a user added to the credentials file (kwire passwd) can log in
   after SIGHUP, and a broken file on SIGHUP keeps the users in force with
   a clear log line.
7. kwire's own identity upstream: kwire C terminates the clients' SASL and
   authenticates to A as User:svc with SCRAM-SHA-512 (upstream_sasl_*): A's
   log shows User:svc, C's shows User:alice; with a wrong upstream password
   C closes the client's connection with a clear log line.
"""
import json
import concurrent.futures
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, check, peer  # noqa: E402
import sasl_util as su  # noqa: E402

try:
    import confluent_kafka  # noqa: F401
except ImportError:
    print("SKIP: confluent_kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

USERS = {"alice": "Alice-pw-5521", "bob": "Bob-pw-9137", "svc": "Svc-pw-4410"}
MECHS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
TOPIC = "sa"
RULES = """access:
  - name: bob-no-produce
    match: {api: Produce, principal: "User:bob"}
    deny: TOPIC_AUTHORIZATION_FAILED
"""
NODE = shutil.which("node")
CACHE = os.environ.get("KWIRE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "kwire"))
MODULES = os.environ.get("KWIRE_NODE_CLIENTS", os.path.join(CACHE, "node-clients"))
KJS = os.path.join(os.environ.get("KWIRE_SRC", "."), "tools", "clients", "kafkajs-sasl.js")


def kafka_python_round(bootstrap, mech, user, password, tag):
    import kafka
    kw = dict(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism=mech,
              sasl_plain_username=user, sasl_plain_password=password, api_version=(1, 0, 0))
    p = kafka.KafkaProducer(**kw, max_block_ms=10000)
    for i in range(5):
        p.send(TOPIC, f"{tag}-{i}".encode(), partition=1).get(timeout=20)
    p.close()
    c = kafka.KafkaConsumer(**kw, auto_offset_reset="earliest")
    c.assign([kafka.TopicPartition(TOPIC, 1)])
    got = set()
    deadline = time.monotonic() + 20
    while len(got) < 5 and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            got |= {m.value.decode() for m in recs if m.value.decode().startswith(tag)}
    c.close()
    check(len(got) == 5, f"kafka-python {mech}: {len(got)} of 5 records back")


def kafka_python_refused(bootstrap, mech):
    import kafka
    try:
        p = kafka.KafkaProducer(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
                                sasl_mechanism=mech, sasl_plain_username="alice",
                                sasl_plain_password="not-her-password", api_version=(1, 0, 0),
                                max_block_ms=2000)
        p.send(TOPIC, b"x").get(timeout=3)
    except Exception:  # kafka-python reports a closed connection as a timeout
        return
    raise AssertionError(f"kafka-python {mech}: a wrong password was accepted")


def kafkajs(bootstrap, mech, user, password, expect_rc, consume=True):
    if not NODE or not os.path.isdir(os.path.join(MODULES, "node_modules", "kafkajs")):
        print("SKIP: kafkajs not installed (needs: kafkajs, tools/install-clients.sh)",
              file=sys.stderr)
        sys.exit(SKIP)
    env = dict(os.environ, KWIRE_NODE_CLIENTS=MODULES, KJS_PW=password)
    env.pop("LD_LIBRARY_PATH", None)
    r = subprocess.run([NODE, KJS, bootstrap, mech.lower(), user, "$KJS_PW", TOPIC, "5"] +
                       ([] if consume else ["produce-only"]),
                       capture_output=True, text=True, timeout=90, env=env)
    check(r.returncode == expect_rc,
          f"kafkajs {mech} as {user}: exit {r.returncode}, wanted {expect_rc}: {r.stdout}{r.stderr}")


def wire_refusal(addr, user, password):
    """SCRAM-SHA-256 by hand with a wrong password: the answer to the
    client-final is SASL_AUTHENTICATION_FAILED and the connection closes."""
    raw = su.Raw(addr)
    check(raw.handshake("SCRAM-SHA-256") == 0, "SaslHandshake refused")
    first = f"n,,n={user},r=abcdefgh0123".encode()
    r = raw.authenticate(first)
    if r is not None and r[0] != 0:  # unknown user: refused at once
        check(r[0] == 58, f"unknown user: error {r[0]}, wanted 58")
        check(raw.closed_within(5), "the connection stays open after SASL_AUTHENTICATION_FAILED")
        return
    check(r is not None and r[0] == 0 and r[2].startswith(b"r=abcdefgh0123"),
          f"server-first: {r}")
    attrs = dict(x.split("=", 1) for x in r[2].decode().split(","))
    final = f"c=biws,r={attrs['r']},p=" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
    r = raw.authenticate(final.encode())
    check(r is not None and r[0] == 58, f"wrong proof: answer {r}, wanted SASL_AUTHENTICATION_FAILED")
    check(r[1] and "invalid credentials" in r[1], f"error message: {r[1]!r}")
    check(raw.closed_within(5), "the connection stays open after SASL_AUTHENTICATION_FAILED")


def wire_v2(addr):
    """SaslAuthenticate v2 (flexible, as the Java client sends it): PLAIN
    succeeds, the answer is the flexible layout, and a Metadata request
    then passes."""
    raw = su.Raw(addr)
    check(raw.handshake("PLAIN") == 0, "SaslHandshake refused")
    tok = b"\0alice\0" + USERS["alice"].encode()
    # request header v2 ends with its tagged fields (none); body: compact bytes, no tags
    raw.send(36, 2, b"\0" + bytes([len(tok) + 1]) + tok + b"\0")
    r = raw.recv()
    # corr (4), header tags (1), ErrorCode, ErrorMessage (compact null = 0), AuthBytes
    # (compact, empty = 1), SessionLifetimeMs (8), tags (1)
    check(r is not None and len(r) == 4 + 1 + 2 + 1 + 1 + 8 + 1 and r[4] == 0 and
          r[5:7] == b"\0\0" and r[7] == 0 and r[8] == 1,
          f"SaslAuthenticate v2 answer: {r!r}")
    raw.send(3, 1, struct.pack(">i", -1))
    check(raw.recv() is not None, "Metadata after a SaslAuthenticate v2 got no answer")
    raw.close()


def limits(addr, admin):
    before = {k: su.metric(admin, "kwire_sasl_preauth_closed_total", reason=k)
              for k in ("request", "frame_size", "timeout")}
    # a Metadata request before authentication
    raw = su.Raw(addr)
    raw.send(3, 1, struct.pack(">i", -1))
    check(raw.recv() is None, "a Metadata request before authentication was answered")
    # a frame over sasl_max_frame_bytes (default 512 KiB), header only
    raw = su.Raw(addr)
    body = struct.pack(">hhih", 36, 1, 1, 3) + b"raw"
    raw.send_raw(struct.pack(">i", 600 * 1024) + body)
    check(raw.closed_within(5), "a 600 KiB frame before authentication was accepted")
    # silence: closed after the 1.5 s handshake timeout (not before 1 s)
    raw = su.Raw(addr)
    t0 = time.monotonic()
    check(raw.closed_within(10), "a silent client is never closed")
    check(time.monotonic() - t0 >= 1.0, "a silent client was closed before the timeout")
    time.sleep(0.3)
    for k in before:
        check(su.metric(admin, "kwire_sasl_preauth_closed_total", reason=k) >= before[k] + 1,
              f"kwire_sasl_preauth_closed_total{{reason={k}}} did not count")


def bob_denied(bootstrap):
    from confluent_kafka import Producer
    conf = su.sasl_conf(bootstrap, "SCRAM-SHA-256", "bob", USERS["bob"])
    p = Producer(conf)
    md = p.list_topics(timeout=10)  # Metadata passes
    check(TOPIC in md.topics, "bob's Metadata does not list the topic")
    res = []
    p.produce(TOPIC, b"bob", partition=0, on_delivery=lambda err, msg: res.append(err))
    p.flush(20)
    check(res and res[0] is not None and res[0].name() == "TOPIC_AUTHORIZATION_FAILED",
          f"bob's Produce: {res}, wanted TOPIC_AUTHORIZATION_FAILED")


def reload(kwire, c, creds):
    import signal
    from confluent_kafka import Producer
    su.passwd(kwire, creds, "carol", "Carol-pw-77")
    conf = su.sasl_conf(c.bootstrap, "SCRAM-SHA-512", "carol", "Carol-pw-77")
    su.confluent_refused(conf, "carol before the reload")
    c.px.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "SASL credentials and keys reloaded" not in c.proxy_stderr():
        check(time.monotonic() < deadline, "no log line for the SASL reload")
        time.sleep(0.1)
    md = Producer(conf).list_topics(timeout=10)
    check(TOPIC in md.topics, "carol cannot log in after the reload")
    with open(creds) as f:
        good = f.read()
    with open(creds, "a") as f:
        f.write("dave SCRAM-SHA-256 12 AAAA AAAA AAAA\n")
    c.px.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "SASL credentials not reloaded, the old ones stay" not in c.proxy_stderr():
        check(time.monotonic() < deadline, "no log line for the bad credentials file")
        time.sleep(0.1)
    check(":" in c.proxy_stderr().split("the old ones stay: ")[-1].split("\n")[0],
          "the bad file's line is not named")
    md = Producer(su.sasl_conf(c.bootstrap, "PLAIN", "alice", USERS["alice"])).list_topics(
        timeout=10)
    check(TOPIC in md.topics, "alice cannot log in after a failed reload")
    with open(creds, "w") as f:
        f.write(good)


def principal_lines(entries, principal, api=None):
    return [e for e in entries if e.get("principal") == principal and
            (api is None or e.get("api") == api)]


T0 = time.monotonic()


def phase(what):
    print(f"{time.monotonic() - T0:6.1f}s {what}", flush=True)


def main():
    tmp = tempfile.mkdtemp(prefix="kwire-sasl-")
    kwire = os.environ["KWIRE_BIN"]
    creds = os.path.join(tmp, "users")
    for u, pw in USERS.items():
        su.passwd(kwire, creds, u, pw)
    rules = os.path.join(tmp, "rules.yaml")
    with open(rules, "w") as f:
        f.write(RULES)
    args = ["--sasl", "terminate", "--sasl-credentials", creds, "--sasl-handshake-timeout",
            "1500", "--rules", rules]
    with Cluster(topics=((TOPIC, 3),), extra_proxy_args=args) as c:
        # 1. termination, every client, every mechanism
        for mech in MECHS:
            su.confluent_round(su.sasl_conf(c.bootstrap, mech, "alice", USERS["alice"]), TOPIC,
                               10, f"cf-{mech}")
            phase(f"termination {mech}: confluent-kafka")
            kafka_python_round(c.bootstrap, mech, "alice", USERS["alice"], f"kp-{mech}")
            phase(f"termination {mech}: kafka-python")
            # kafkajs joins a consumer group (seconds against the mock): once
            kafkajs(c.bootstrap, mech, "alice", USERS["alice"], 0, mech == "SCRAM-SHA-256")
            phase(f"termination {mech}: kafkajs")
        r = subprocess.run(["kcat", "-b", c.bootstrap, "-L", "-X",
                            "security.protocol=SASL_PLAINTEXT", "-X",
                            "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=alice", "-X",
                            f"sasl.password={USERS['alice']}"], capture_output=True, text=True,
                           timeout=30)
        check(r.returncode == 0 and TOPIC in r.stdout, f"kcat -L: {r.stdout}{r.stderr}")
        for mech in MECHS:
            check(c.metric("kwire_sasl_authentications_total", mechanism=mech,
                           result="success") >= 3, f"{mech}: successes not counted")
        phase('. wrong password, unknown user')
        # 2. wrong password, unknown user
        # The refused clients side by side: each waits to be told (kafka-python
        # for its 2 s max_block_ms).
        def cf_refused(mech):
            e = su.confluent_refused(su.sasl_conf(c.bootstrap, mech, "alice", "wrong-pw"),
                                     f"librdkafka {mech}, wrong password")
            check("uthentication" in e.str(), f"librdkafka's error: {e.str()}")
        refusals = [(cf_refused, mech) for mech in MECHS]
        refusals += [(kafka_python_refused, c.bootstrap, mech) for mech in MECHS
                     if mech != "SCRAM-SHA-512"]
        refusals += [(kafkajs, c.bootstrap, "SCRAM-SHA-256", "alice", "wrong-pw", 3),
                     (kafkajs, c.bootstrap, "PLAIN", "nobody", "x", 3)]
        with concurrent.futures.ThreadPoolExecutor(len(refusals)) as pool:
            for r in [pool.submit(*f) for f in refusals]:
                r.result()
        wire_refusal(c.bootstrap, "alice", "wrong")
        wire_refusal(c.bootstrap, "nobody", "x")
        wire_v2(c.bootstrap)
        check(c.metric("kwire_sasl_authentications_total", mechanism="SCRAM-SHA-256",
                       result="failure") >= 2, "failures not counted")
        err = c.proxy_stderr()
        check("authentication of user 'alice' failed: wrong password" in err,
              "no log line for the wrong password")
        for pw in USERS.values():
            check(pw not in err, "kwire's log shows a password")
        phase('. principals: log, metrics, deny rule')
        # 3. principals: log, metrics, deny rule
        bob_denied(c.bootstrap)
        entries = c.log_entries()
        check(principal_lines(entries, "User:alice", "Produce"),
              "the access log names no Produce of User:alice")
        check(principal_lines(entries, "User:bob", "Metadata"),
              "the access log names no Metadata of User:bob")
        check(c.metric("kwire_principal_requests_total", principal="User:alice") > 0,
              "/metrics counts no request of User:alice")
        check(c.metric("kwire_rule_hits_total", rule="bob-no-produce", section="access") >= 1,
              "the deny rule was never hit")
        phase('. limits before authentication')
        # 4. limits before authentication
        limits(c.bootstrap, c.admin)
        phase(". reload")
        reload(kwire, c, creds)
        phase(". passthrough: B in front of A")
        # 5. passthrough: B in front of A
        b = su.Proxy(kwire, tmp, "passthrough", ["--upstream", c.bootstrap, "--sasl", "passthrough"])
        try:
            for mech in MECHS:
                su.confluent_round(su.sasl_conf(b.bootstrap, mech, "alice", USERS["alice"]),
                                   TOPIC, 5, f"pt-{mech}")
                check(b.metric("kwire_sasl_authentications_total", mechanism=mech,
                               result="success") >= 1, f"passthrough {mech}: no success seen")
            kafka_python_round(b.bootstrap, "SCRAM-SHA-512", "alice", USERS["alice"], "pt-kp")
            e = su.confluent_refused(su.sasl_conf(b.bootstrap, "SCRAM-SHA-512", "alice", "bad"),
                                     "through passthrough, wrong password")
            check(b.metric("kwire_sasl_authentications_total", mechanism="SCRAM-SHA-512",
                           result="failure") >= 1, "passthrough: the failure was not seen")
            entries = b.log_entries()
            check(principal_lines(entries, "User:alice", "Produce"),
                  "passthrough: the access log names no Produce of User:alice")
            check(not principal_lines(entries, "User:alice", "SaslHandshake"),
                  "passthrough: a principal before the broker's answer")
            check(b.metric("kwire_principal_requests_total", principal="User:alice") > 0,
                  "passthrough: /metrics counts no request of User:alice")
            berr = b.stderr()
            for pw in USERS.values():
                check(pw not in berr, "passthrough kwire's log shows a password")
        finally:
            check(b.stop() == 0, "passthrough kwire did not exit cleanly:\n" + b.stderr())
        phase(". kwire's own identity upstream (C -> A)")
        # 7. kwire's own identity upstream (C -> A)
        up = ("upstream_sasl_mechanism: SCRAM-SHA-512\nupstream_sasl_username: svc\n"
              f"upstream_sasl_password: \"{USERS['svc']}\"\n")

        # kwire's identity accepted (C) and refused (bad) side by side: the
        # refused one waits 4 s for a client's metadata that must not come.
        def upstream_good():
            cc = su.Proxy(kwire, tmp, "upstream-sasl", ["--upstream", c.bootstrap, "--sasl",
                                                         "terminate", "--sasl-credentials", creds],
                          config=up)
            try:
                su.confluent_round(su.sasl_conf(cc.bootstrap, "PLAIN", "alice", USERS["alice"]),
                                   TOPIC, 5, "up-sasl")
                check(principal_lines(cc.log_entries(), "User:alice", "Produce"),
                      "C's log names no Produce of User:alice")
                check(principal_lines(c.log_entries(), "User:svc", "Produce"),
                      "A's log names no Produce of User:svc (kwire's own identity)")
                check(cc.metric("kwire_sasl_upstream_authentications_total",
                                result="success") >= 1, "C counted no upstream authentication")
                r = subprocess.run([kwire, "proxy", "-c", os.path.join(tmp, "upstream-sasl.yaml"),
                                    "-u", "127.0.0.1:1", "--print-config"], capture_output=True,
                                   text=True, timeout=20)
                check(USERS["svc"] not in r.stdout and "[redacted]" in r.stdout,
                      "--print-config shows the upstream password")
            finally:
                check(cc.stop() == 0, "upstream-sasl kwire did not exit cleanly:\n" + cc.stderr())

        def upstream_bad():
            bad = su.Proxy(kwire, tmp, "upstream-bad", ["--upstream", c.bootstrap, "--sasl",
                                                         "terminate", "--sasl-credentials", creds],
                           config=up.replace(USERS["svc"], "not-svc-pw"))
            try:
                from confluent_kafka import Producer
                p = Producer(su.sasl_conf(bad.bootstrap, "PLAIN", "alice", USERS["alice"]))
                try:
                    p.list_topics(timeout=4)
                    raise AssertionError("a client got metadata through a kwire the broker refused")
                except confluent_kafka.KafkaException:
                    pass
                time.sleep(0.3)
                check("SASL to" in bad.stderr() and "refused kwire's credentials" in bad.stderr(),
                      "no clear log line for the refused upstream credentials:\n" + bad.stderr())
                check("not-svc-pw" not in bad.stderr(), "the upstream password is logged")
            finally:
                bad.stop()

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for r in [pool.submit(upstream_good), pool.submit(upstream_bad)]:
                r.result()
    print(f"ok (peer {peer()})")


if __name__ == "__main__":
    main()
