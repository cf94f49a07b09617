"""The proxy's tap (`--tap FILE`, docs/proxy.md "Tap"): a pcapng file of
what kwire forwards, which kwire decode, tshark and Wireshark read.

1. Pairs: kcat produces keyed records with headers and consumes them through
   kwire with the access log (text) and the tap on. After the proxy stops,
   `kwire decode` of the tap gives the same pairs as the access log of the
   same run (each line without its time stamp and latency), and tshark reads
   the file: every Kafka PDU it finds on the brokers' ports decodes, no TCP
   segment is missing, and it sees as many Produce requests as the log.
2. Secrets: in front of a scripted SASL broker (sasl_broker.py), kcat
   authenticates with SASL v0 tokens and with SaslAuthenticate, PLAIN and
   SCRAM, through kwire with the tap on: the tap file holds neither the
   password nor the user's SCRAM first message, the SaslAuthenticate and
   token frames are in it (decoded), and their payloads are zeros.
3. Rotation: with --tap-max-bytes and --tap-files 3, at most three files
   exist, each one a capture kwire decode reads, and /metrics counts the
   rotations and the packets.
4. A `tap:` rule (docs/rules.md) writes only the requests it matches, and
   their answers: Produce to one topic, not to the other, nor any other API;
   the pairs are those of the access log for that topic; /metrics labels
   the rule's file.
5. Over TLS: kwire terminates TLS (--tls-cert), kcat produces and consumes
   over TLS with the global tap and a `tap:` rule on: both files are the
   plaintext kwire forwarded (kwire decode gives the access log's pairs,
   tshark decodes them, every record value kcat produced is in the file as
   it was written), which a capture of the wire cannot give.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_harness import SKIP, Cluster, _readline, check, env, modern  # noqa: E402

RECORDS = 300


def need(tool):
    if subprocess.run(["which", tool], capture_output=True).returncode != 0:
        print(f"SKIP: {tool} not installed (needs: {tool}, tools/install-deps.sh)",
              file=sys.stderr)
        sys.exit(SKIP)


def strip(line):
    """A summary line without its time stamp and its latency."""
    line = re.sub(r"^\S+ ", "", line)
    return re.sub(r" [0-9.]+ms$", "", line)


def produce_consume(bootstrap, topic, extra=(), value="v{i}"):
    data = "".join(f"k{i}:{value.format(i=i)}\n" for i in range(RECORDS))
    r = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-K:", "-H", "trace=abc",
                        *extra], input=data, capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, f"kcat -P failed: {r.stderr}")
    r = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-e", "-q", "-f", "%k=%s\n",
                        *extra], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, f"kcat -C failed: {r.stderr}")
    got = sorted(r.stdout.split())
    check(got == sorted(f"k{i}={value.format(i=i)}" for i in range(RECORDS)),
          f"consumed {len(got)} records, not the {RECORDS} produced")


def decode(kwire, path, fmt="summary"):
    r = subprocess.run([kwire, "decode", "--format", fmt, path], capture_output=True, text=True,
                       timeout=120)
    check(r.returncode == 0, f"kwire decode {path} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def check_pairs(kwire):
    tmp = tempfile.mkdtemp(prefix="kwire-tap-")
    tap = os.path.join(tmp, "tap.pcapng")
    with Cluster(topics=(("tapped", 3),), log_format="text",
                 extra_proxy_args=["--tap", tap]) as c:
        produce_consume(c.bootstrap, "tapped")
        m = c.metrics()
        check(c.metric("kwire_tap_packets_total") > 0, "kwire_tap_packets_total is 0")
        check(c.metric("kwire_tap_dropped_packets_total") == 0, "the tap dropped packets")
        check(c.stop_proxy() == 0, "kwire proxy did not exit 0")
        with open(c.log_path) as f:
            log = [strip(x) for x in f.read().splitlines()
                   if x.strip() and not x.startswith("!")]
        real_ports = sorted(c.real_ports())
        del m
    # The tap: the same pairs as the access log.
    out = decode(kwire, tap)
    pairs = [strip(x) for x in out.splitlines() if x.strip() and not x.startswith("!")]
    check(len(log) > 10 and any(" Produce " in x for x in log), f"access log too short: {log}")
    check(sorted(pairs) == sorted(log),
          "kwire decode of the tap differs from the access log:\n only in the log:\n  " +
          "\n  ".join(sorted(set(log) - set(pairs))[:10]) + "\n only in the tap:\n  " +
          "\n  ".join(sorted(set(pairs) - set(log))[:10]))
    tshark_check(tap, real_ports, log)


def tshark_check(tap, real_ports, log):
    """tshark reads tap: Kafka on the brokers' ports, as many Produce
    requests as the access log (lines) shows, nothing lost or malformed."""
    # Nothing lost or malformed beyond the mock's known ApiVersions v3
    # answer (docs/peers.md).
    args = ["tshark", "-r", tap, "-n"]
    for p in real_ports:
        args += ["-d", f"tcp.port=={p},kafka"]
    r = subprocess.run(args + ["-T", "fields", "-e", "kafka.api_key", "-e", "kafka.request_frame",
                               "-Y", "kafka", "-E", "occurrence=f"],
                       capture_output=True, text=True, timeout=120)
    check(r.returncode == 0, f"tshark -r failed: {r.stderr}")
    tshark_produce = 0
    for x in r.stdout.splitlines():
        f = x.split("\t")
        if f[0] == "0" and (len(f) < 2 or not f[1]):  # a request: no request_frame link
            tshark_produce += 1
    log_produce = sum(1 for x in log if " Produce " in x)
    check(tshark_produce == log_produce,
          f"tshark sees {tshark_produce} Produce requests, the access log {log_produce}")
    # tshark 4.0 knows neither the 2.12 peer's versions (Metadata v12, Produce
    # v10...) nor the mock's ApiVersions v3 answer: those are its limits.
    bad = "tcp.analysis.lost_segment || tcp.analysis.ack_lost_segment"
    if not modern():
        bad += " || (_ws.malformed && !kafka.api_key == 18)"
    r = subprocess.run(args + ["-Y", bad],
                       capture_output=True, text=True, timeout=120)
    check(r.returncode == 0 and not r.stdout.strip(),
          f"tshark finds lost segments or malformed frames in the tap:\n{r.stdout[:2000]}")


def check_secrets(kwire):
    import sasl_broker
    from test_sasl_secrets import PASSWORD, USER, kcat_list, secrets
    tmp = tempfile.mkdtemp(prefix="kwire-tapsasl-")
    for mode in ("v0", "v1"):
        tap = os.path.join(tmp, f"tap-{mode}.pcapng")
        broker = sasl_broker.SaslBroker({USER: PASSWORD}, sasl_authenticate=(mode == "v1"))
        px = subprocess.Popen([kwire, "proxy", "--upstream", f"127.0.0.1:{broker.port}",
                               "--listen", "127.0.0.1:0", "--no-log", "--tap", tap],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
        try:
            listen = None
            deadline = time.monotonic() + 20
            while not listen:
                line = _readline(px, deadline, "kwire proxy")
                if line.startswith("LISTEN "):
                    listen = line.split()[1]
            kcat_list(listen, "PLAIN")
            kcat_list(listen, "SCRAM-SHA-256")
        finally:
            px.terminate()
            px.wait(20)
            broker.stop()
        with open(tap, "rb") as f:
            raw = f.read()
        for s in secrets(broker.conns) | {PASSWORD, f"n={USER},r="}:
            check(s.encode() not in raw, f"tap ({mode}) holds a secret: {s!r}")
        # The client's tokens as the broker got them are in the tap, zeroed.
        toks = []
        for rec in broker.conns:
            for d, data in rec:
                if d == "c" and (PASSWORD.encode() in data or b"n=" + USER.encode() in data):
                    toks.append(data)
        check(toks, f"({mode}) the broker saw no client token")
        out = decode(kwire, tap)
        if mode == "v0":
            check("SASL v0 token" in out, f"tap (v0): no SASL v0 token decoded:\n{out}")
        else:
            check(re.search(r"SaslAuthenticate v\d #\d+", out),
                  f"tap (v1): no SaslAuthenticate decoded:\n{out}")
        check(" Metadata " in out, f"tap ({mode}): the Metadata after SASL is missing:\n{out}")
        # Each client token's length shows as a run of zeros where it was.
        for t in toks:
            tl = len(t) - 4 if mode == "v0" else len(t) - 30
            check(b"\0" * max(tl, 8) in raw, f"tap ({mode}): no zeroed token of {tl} bytes")


def check_rotation(kwire):
    tmp = tempfile.mkdtemp(prefix="kwire-taprot-")
    tap = os.path.join(tmp, "rot.pcapng")
    with Cluster(topics=(("rot", 2),), extra_proxy_args=[
            "--tap", tap, "--tap-max-bytes", "8000", "--tap-files", "3", "--no-log"]) as c:
        produce_consume(c.bootstrap, "rot")
        time.sleep(0.3)
        rot = c.metric("kwire_tap_rotations_total")
        check(rot >= 2, f"kwire_tap_rotations_total is {rot}, not >= 2")
        check(c.stop_proxy() == 0, "kwire proxy did not exit 0")
    files = sorted(os.listdir(tmp))
    check(files == ["rot.1.pcapng", "rot.2.pcapng", "rot.pcapng"],
          f"rotation kept {files}, not the three newest")
    for name in files:
        path = os.path.join(tmp, name)
        check(os.path.getsize(path) <= 8000 + 66000, f"{name} is {os.path.getsize(path)} bytes")
        decode(kwire, path)


def check_rule_tap(kwire):
    tmp = tempfile.mkdtemp(prefix="kwire-taprule-")
    tap = os.path.join(tmp, "rule.pcapng")
    rules = os.path.join(tmp, "rules.yaml")
    with open(rules, "w") as f:
        f.write("tap:\n  - name: orders\n    match: {api: Produce, topic: \"ord*\"}\n"
                f"    to: {tap}\n")
    with Cluster(topics=(("orders", 2), ("other", 2)), log_format="text",
                 extra_proxy_args=["--rules", rules]) as c:
        produce_consume(c.bootstrap, "orders")
        produce_consume(c.bootstrap, "other")
        check(c.metric("kwire_tap_packets_total", file=tap) > 0,
              "no kwire_tap_packets_total{file=...} for the rule's file")
        check(c.metric("kwire_rule_hits_total", rule="orders", section="tap") > 0,
              "the tap rule has no hits")
        check(c.stop_proxy() == 0, "kwire proxy did not exit 0")
        with open(c.log_path) as f:
            log = [strip(x) for x in f.read().splitlines()
                   if " Produce " in x and " orders[" in x]
    out = decode(kwire, tap)
    pairs = [strip(x) for x in out.splitlines() if x.strip() and not x.startswith("!")]
    check(log and sorted(pairs) == sorted(log),
          "the rule's tap holds other pairs than the access log's Produce to orders:\n" +
          "\n".join(pairs[:10]) + "\n--- log:\n" + "\n".join(log[:10]))


def check_tls(kwire):
    """The tap of a TLS listener holds the plaintext: the pairs and records."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tls_certs
    tmp = tempfile.mkdtemp(prefix="kwire-taptls-")
    certs = tls_certs.make_certs(os.path.join(tmp, "certs"))
    tap, rtap = os.path.join(tmp, "tap.pcapng"), os.path.join(tmp, "rule.pcapng")
    rules = os.path.join(tmp, "rules.yaml")
    with open(rules, "w") as f:
        f.write(f"tap:\n  - name: sec\n    match: {{topic: sec}}\n    to: {rtap}\n")
    ssl = ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={certs['ca']}"]
    value = "plain-{i}-secret-payload"
    with Cluster(topics=(("sec", 3),), log_format="text",
                 extra_proxy_args=["--tls-cert", certs["server"], "--tls-key",
                                   certs["server_key"], "--tap", tap, "--rules", rules]) as c:
        # The listener is TLS: a plaintext client gets nothing.
        r = subprocess.run(["kcat", "-L", "-b", c.bootstrap, "-m", "3"], capture_output=True,
                           timeout=30)
        check(r.returncode != 0, "a plaintext client got metadata from the TLS listener")
        produce_consume(c.bootstrap, "sec", ssl, value)
        check(c.metric("kwire_tap_dropped_packets_total") == 0, "the tap dropped packets")
        check(c.stop_proxy() == 0, "kwire proxy did not exit 0")
        with open(c.log_path) as f:
            log = [strip(x) for x in f.read().splitlines()
                   if x.strip() and not x.startswith("!")]
        real_ports = sorted(c.real_ports())
    # The failed plaintext attempt is no pair: only TLS clients' pairs.
    pairs = [strip(x) for x in decode(kwire, tap).splitlines()
             if x.strip() and not x.startswith("!")]
    check(len(log) > 10 and any(" Produce " in x for x in log) and
          any(" Fetch " in x for x in log), f"access log too short: {log}")
    check(sorted(pairs) == sorted(log),
          "kwire decode of the TLS listener's tap differs from the access log:\n only in the "
          "log:\n  " + "\n  ".join(sorted(set(log) - set(pairs))[:10]) +
          "\n only in the tap:\n  " + "\n  ".join(sorted(set(pairs) - set(log))[:10]))
    tshark_check(tap, real_ports, log)
    # The records kcat produced, as it wrote them, in both files (the rule's
    # holds its topic's pairs: Produce, Fetch, Metadata of sec).
    for path in (tap, rtap):
        with open(path, "rb") as f:
            raw = f.read()
        missing = [i for i in range(RECORDS) if value.format(i=i).encode() not in raw]
        check(not missing, f"{os.path.basename(path)}: records not in plaintext: {missing[:5]}")
    rpairs = [strip(x) for x in decode(kwire, rtap).splitlines()
              if x.strip() and not x.startswith("!")]
    check(rpairs and set(rpairs) <= set(log) and
          sorted(x for x in rpairs if " Produce " in x) ==
          sorted(x for x in log if " Produce " in x),
          "the rule's tap: not the access log's pairs for its topic:\n" + "\n".join(rpairs[:10]))


def main():
    kwire = env("KWIRE_BIN")
    need("kcat")
    need("tshark")
    check_pairs(kwire)
    if not modern():  # the scripted SASL broker does not depend on the peer
        check_secrets(kwire)
    check_rotation(kwire)
    check_rule_tap(kwire)
    check_tls(kwire)
    print("ok")


if __name__ == "__main__":
    main()
