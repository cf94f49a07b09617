"""SASL through kwire: no output shows a secret, and SASL v0 framing ends
with the exchange, not with a client id (issue 8, items 1 and 3; issue 11).

A scripted SASL broker (sasl_broker.py: real PLAIN and SCRAM checks; the mock
cluster speaks no SASL) serves kcat (librdkafka) with SASL v0 (raw tokens) and
SaslHandshake v1 + SaslAuthenticate, PLAIN and SCRAM-SHA-256/512, and a
scripted client that authenticates with SASL v0 PLAIN under one client id and
sends Metadata under another.

- The analyzer reads a capture of all these connections (the clients' real
  bytes): every `kwire decode` format must name the mechanism and the user and
  must not contain the password, the SCRAM proof, or the base64 of any client
  token; the Metadata request under the other client id must be decoded.
- `kwire proxy` in front of the broker, access log in text and in json: the
  same connections through it; the log names the user and never a secret, and
  the Metadata response the scripted client gets names kwire's port, not the
  broker's.
"""
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sasl_broker  # noqa: E402
from proxy_harness import SKIP, _readline, check, env  # noqa: E402

USER = "alice"
PASSWORD = "Pw-0f-alice-7731"


def kcat_list(bootstrap, mech):
    args = ["kcat", "-b", bootstrap, "-L", "-m", "15", "-X", "security.protocol=SASL_PLAINTEXT",
            "-X", f"sasl.mechanisms={mech}", "-X", f"sasl.username={USER}",
            "-X", f"sasl.password={PASSWORD}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and sasl_broker.TOPIC in r.stdout,
          f"kcat {mech} via {bootstrap} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def secrets(conns):
    """Strings no output may contain: the password, every client token in
    base64 (all three alignments of the password too), the SCRAM proofs."""
    out = {PASSWORD}
    for k in range(3):
        b = base64.b64encode(b"x" * k + PASSWORD.encode()).decode()
        out.add(b[(k * 4 + 2) // 3 + 1:-4])  # a middle stretch that depends on the password only
    for rec in conns:
        for d, data in rec:
            if d != "c":
                continue
            for m in re.finditer(rb"p=([A-Za-z0-9+/=]{16,})", data):
                out.add(m.group(1).decode())
            if PASSWORD.encode() in data:
                i = data.index(PASSWORD.encode())
                # the whole PLAIN token in base64, as the old output printed it
                start = data.rfind(b"\0", 0, data.rfind(b"\0", 0, i)) if b"\0" in data[:i] else i
                tok = data[max(start, 0):i + len(PASSWORD)]
                out.add(base64.b64encode(tok).decode()[:-4])
    return {s for s in out if len(s) >= 8}


def no_secret(text, what, secret_list):
    for s in secret_list:
        check(s not in text, f"{what} shows a secret ({s!r})")


def run_clients(bootstrap, host, port, mode):
    """The clients of one round: kcat PLAIN and SCRAM (v0 broker: raw tokens;
    v1: SaslAuthenticate), and (v0) the scripted client with two client ids.
    Returns the scripted client's view of the brokers (or None)."""
    kcat_list(bootstrap, "PLAIN")
    kcat_list(bootstrap, "SCRAM-SHA-256" if mode == "v0" else "SCRAM-SHA-512")
    if mode == "v0":
        return sasl_broker.plain_then_other_client_id(host, port, USER, PASSWORD)
    return None


def check_analyzer(kwire, conns, tmp):
    pcap = os.path.join(tmp, "sasl.pcap")
    sasl_broker.write_pcap(pcap, conns)
    sec = secrets(conns)
    outs = {}
    for fmt in ("summary", "verbose", "json", "records", "stats", "html"):
        r = subprocess.run([kwire, "decode", "--format", fmt, pcap], capture_output=True,
                           text=True, timeout=60)
        check(r.returncode == 0, f"kwire decode -f {fmt} failed: {r.stderr}")
        no_secret(r.stdout + r.stderr, f"kwire decode --format {fmt}", sec)
        outs[fmt] = r.stdout
    s = outs["summary"]
    check("SASL v0 token mechanism=PLAIN user=alice auth=[redacted]" in s,
          "summary: the PLAIN v0 token line is missing:\n" + s)
    check("SASL v0 token mechanism=SCRAM-SHA-256 user=alice" in s,
          "summary: the SCRAM v0 token line is missing:\n" + s)
    check(re.search(r"SaslAuthenticate v\d #\d+ mechanism=SCRAM user=alice auth=\[redacted\]", s),
          "summary: SaslAuthenticate shows no user:\n" + s)
    # Item 1 in the analyzer: the request under another client id is decoded.
    check(re.search(r'"other-client" Metadata v1 #2 ', s),
          "summary: the Metadata request sent after SASL v0 under another client id is missing:\n"
          + s)
    check(re.search(r'PLAIN: \d+, users: "alice" \d+', outs["stats"]),
          "stats: no SASL authentications section with the user:\n" + outs["stats"])
    check(re.search(r'token: \[redacted\] <\d+ bytes> user="alice"', outs["verbose"]),
          "verbose: the PLAIN token line is missing")
    recs = [json.loads(line) for line in outs["json"].splitlines() if line.strip()]
    auth = [x for x in recs if x.get("api") == "SaslAuthenticate" and x["direction"] == "request"]
    check(auth and all(x["body"]["AuthBytes"] == "[redacted]" for x in auth),
          "json: SaslAuthenticate AuthBytes not redacted")
    check(any(x["body"].get("AuthBytes_user") == USER for x in auth),
          "json: SaslAuthenticate shows no user")
    toks = [x for x in recs if x.get("sasl_v0_token")]
    check(any(x.get("user") == USER and x.get("mechanism") == "PLAIN" for x in toks),
          "json: no SASL v0 token record with the user")


def proxy(kwire, upstream, log_path, fmt, tmp):
    err = open(os.path.join(tmp, f"proxy-{fmt}.err"), "w")
    px = subprocess.Popen([kwire, "proxy", "--upstream", upstream, "--listen", "127.0.0.1:0",
                           "--access-log", log_path, "--access-log-format", fmt],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
    deadline = time.monotonic() + 20
    while True:
        line = _readline(px, deadline, "kwire proxy")
        if line.startswith("LISTEN "):
            return px, line.split()[1]


def check_proxy(kwire, tmp):
    for fmt in ("text", "json"):
        broker = sasl_broker.SaslBroker({USER: PASSWORD})
        log_path = os.path.join(tmp, f"access-{fmt}.log")
        px, listen = proxy(kwire, f"127.0.0.1:{broker.port}", log_path, fmt, tmp)
        try:
            host, port = listen.rsplit(":", 1)
            seen = run_clients(listen, host, int(port), "v0")
            # Item 1: the Metadata response reaching the client is rewritten
            # although its client id differs from the handshake's.
            check(seen and all(p != broker.port for _, p in seen),
                  f"Metadata after SASL v0 under another client id names the real broker "
                  f"port {broker.port}: {seen}")
            time.sleep(0.5)
        finally:
            px.terminate()
            px.wait(20)
            broker.stop()
        with open(log_path) as f:
            log = f.read()
        no_secret(log, f"access log ({fmt})", secrets(broker.conns))
        with open(os.path.join(tmp, f"proxy-{fmt}.err")) as f:
            no_secret(f.read(), "proxy stderr", secrets(broker.conns))
        if fmt == "text":
            check("SASL v0 token mechanism=PLAIN user=alice auth=[redacted]" in log,
                  "text access log: no PLAIN token line with the user:\n" + log)
            check('"other-client" Metadata v1 #2' in log,
                  "text access log: the Metadata request under another client id is missing:\n"
                  + log)
        else:
            recs = [json.loads(line) for line in log.splitlines() if line.strip()]
            check(any(x.get("sasl_v0_token") and x.get("sasl_user") == USER and
                      x.get("sasl_mechanism") == "PLAIN" for x in recs),
                  "json access log: no SASL v0 token with the user:\n" + log)
            check(any(x.get("api") == "Metadata" and x.get("client_id") == "other-client"
                      for x in recs),
                  "json access log: the Metadata request under another client id is missing")


class Relay:
    """A TCP relay that records both directions of each connection as
    sasl_broker.SaslBroker does, so that write_pcap can capture them."""

    def __init__(self, target):
        import socket
        import threading
        self.target = target
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            host, port = self.target.rsplit(":", 1)
            u = socket.create_connection((host, int(port)))
            rec = []
            with self.lock:
                self.conns.append(rec)
            for a, b, d in ((c, u, "c"), (u, c, "s")):
                threading.Thread(target=self._pump, args=(a, b, d, rec), daemon=True).start()

    def _pump(self, a, b, d, rec):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                with self.lock:
                    rec.append((d, data))
                b.sendall(data)
        except OSError:
            pass
        finally:
            for x in (a, b):
                try:
                    x.shutdown(2)
                except OSError:
                    pass

    def stop(self):
        self.sock.close()


def frames(rec):
    """Stream chunks regrouped per direction into whole frames (write_pcap
    wants (dir, frame) in order)."""
    out, buf = [], {"c": b"", "s": b""}
    for d, data in rec:
        buf[d] += data
        while len(buf[d]) >= 4:
            n = int.from_bytes(buf[d][:4], "big") + 4
            if len(buf[d]) < n:
                break
            out.append((d, buf[d][:n]))
            buf[d] = buf[d][n:]
    return out


def check_kwire_sasl(kwire, tmp):
    """kwire terminating (A) and passing through (B) SASL, at debug level."""
    from proxy_harness import Cluster
    import sasl_util as su
    creds = os.path.join(tmp, "users")
    su.passwd(kwire, creds, USER, PASSWORD)
    up = ("upstream_sasl_mechanism: PLAIN\nupstream_sasl_username: svc\n"
          f"upstream_sasl_password: \"{PASSWORD}-up\"\n")
    sec = {PASSWORD, PASSWORD + "-up", "bad-" + PASSWORD}
    for k in range(3):
        b = base64.b64encode(b"x" * k + PASSWORD.encode()).decode()
        sec.add(b[(k * 4 + 2) // 3 + 1:-4])
    tap_a, tap_b = os.path.join(tmp, "a.pcapng"), os.path.join(tmp, "b.pcapng")
    audit_a, audit_b = os.path.join(tmp, "audit-a.jsonl"), os.path.join(tmp, "audit-b.jsonl")
    rules = os.path.join(tmp, "audit-rules.yaml")
    with open(rules, "w") as f:  # every request, summarised, to the default sink
        f.write("audit:\n  - name: everything\n    log: summary\n")
    with Cluster(topics=(("sec", 1),), log_format="text",
                 extra_proxy_args=["--sasl", "terminate", "--sasl-credentials", creds,
                                   "--tap", tap_a, "--rules", rules, "--audit-log", audit_a,
                                   "-v", "-v"]) as a:
        b = su.Proxy(kwire, tmp, "pt", ["--upstream", a.bootstrap, "--sasl", "passthrough",
                                        "--tap", tap_b, "--rules", rules, "--audit-log",
                                        audit_b, "-v", "-v"])
        relay = Relay(a.bootstrap)
        outs = {}
        try:
            targets = (a.bootstrap, b.bootstrap, f"127.0.0.1:{relay.port}")
            for target in targets:
                for mech in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
                    r = subprocess.run(["kcat", "-b", target, "-L", "-m", "15", "-X",
                                        "security.protocol=SASL_PLAINTEXT", "-X",
                                        f"sasl.mechanisms={mech}", "-X", f"sasl.username={USER}",
                                        "-X", f"sasl.password={PASSWORD}"],
                                       capture_output=True, text=True, timeout=60)
                    check(r.returncode == 0 and "sec" in r.stdout,
                          f"kcat {mech} via {target}: {r.stderr}")
            # A wrong password on each path, side by side: each kcat waits
            # its 3 s for metadata that must not come.
            bad = {target: subprocess.Popen(
                ["kcat", "-b", target, "-L", "-m", "3", "-X", "security.protocol=SASL_PLAINTEXT",
                 "-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", f"sasl.username={USER}",
                 "-X", f"sasl.password=bad-{PASSWORD}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for target in targets}
            for target, kc in bad.items():
                check(kc.wait(60) != 0, f"a wrong password was accepted via {target}")
            import kafka
            for target in (a.bootstrap, b.bootstrap):
                for mech in ("PLAIN", "SCRAM-SHA-512"):  # SASL v0 raw tokens
                    kc = kafka.KafkaConsumer(bootstrap_servers=target,
                                             security_protocol="SASL_PLAINTEXT",
                                             sasl_mechanism=mech, sasl_plain_username=USER,
                                             sasl_plain_password=PASSWORD, api_version=(1, 0, 0))
                    check("sec" in kc.topics(), f"kafka-python {mech} via {target}")
                    kc.close()
            outs["metrics A"] = a.http("/metrics")
            with urllib.request.urlopen(f"http://{b.admin}/metrics", timeout=10) as resp:
                outs["metrics B"] = resp.read().decode()
        finally:
            relay.stop()
            b.stop()
        time.sleep(0.5)
        outs["access log A (text)"] = open(a.log_path).read()
        outs["stderr A (debug)"] = a.proxy_stderr()
    outs["access log B (json)"] = open(b.log_path).read()
    outs["stderr B (debug)"] = b.stderr()
    cpath = os.path.join(tmp, "up.yaml")
    with open(cpath, "w") as f:
        f.write(up)
    r = subprocess.run([kwire, "proxy", "-c", cpath, "-u", "127.0.0.1:1", "--print-config"],
                       capture_output=True, text=True, timeout=20)
    outs["--print-config"] = r.stdout + r.stderr
    # the audit trails
    for name, path in (("audit A (terminating)", audit_a), ("audit B (passthrough)", audit_b)):
        with open(path) as f:
            outs[name] = f.read()
    check("SaslAuthenticate" in outs["audit B (passthrough)"],
          "the passthrough audit has no SaslAuthenticate record")
    check('"principal":"User:alice"' in outs["audit A (terminating)"],
          "the audit names no principal")
    # the taps (pcapng of what each kwire forwarded), raw and decoded
    for name, path in (("tap A (terminating)", tap_a), ("tap B (passthrough)", tap_b)):
        with open(path, "rb") as f:
            outs[name + " bytes"] = f.read().decode("latin-1")
        r = subprocess.run([kwire, "decode", "--format", "verbose", path], capture_output=True,
                           text=True, timeout=60)
        check(r.returncode == 0, f"kwire decode of {name}: {r.stderr}")
        outs[name + " decoded"] = r.stdout + r.stderr
    check("SaslAuthenticate" in outs["tap B (passthrough) decoded"],
          "the passthrough tap holds no SaslAuthenticate")
    # the analyzer on the recorded client <-> kwire (terminating) connections
    pcap = os.path.join(tmp, "kwire-terminate.pcap")
    sasl_broker.write_pcap(pcap, [frames(rec) for rec in relay.conns])
    for fmt in ("summary", "verbose", "json", "records", "stats"):
        r = subprocess.run([kwire, "decode", "--format", fmt, pcap], capture_output=True,
                           text=True, timeout=60)
        check(r.returncode == 0, f"kwire decode -f {fmt} of the kwire capture: {r.stderr}")
        outs[f"kwire decode --format {fmt} (kwire terminating)"] = r.stdout + r.stderr
    for rec in relay.conns:  # every SCRAM proof the clients sent
        for d, data in rec:
            for m in re.finditer(rb"p=([A-Za-z0-9+/=]{16,})", data):
                if d == "c":
                    sec.add(m.group(1).decode())
    for what, text in outs.items():
        no_secret(text, what, sec)
    check("principal=User:alice" in outs["access log A (text)"],
          "A's access log names no principal")
    check('"principal":"User:alice"' in outs["access log B (json)"],
          "B's access log names no principal")
    check("SaslAuthenticate" in outs["kwire decode --format summary (kwire terminating)"],
          "the capture of kwire's SASL exchange does not decode")


def main():
    kwire = env("KWIRE_BIN")
    if subprocess.run(["which", "kcat"], capture_output=True).returncode != 0:
        print("SKIP: kcat not installed (needs: kcat, tools/install-deps.sh)", file=sys.stderr)
        sys.exit(SKIP)
    tmp = tempfile.mkdtemp(prefix="kwire-sasl-")
    conns = []
    for mode in ("v0", "v1"):
        broker = sasl_broker.SaslBroker({USER: PASSWORD}, sasl_authenticate=(mode == "v1"))
        try:
            run_clients(f"127.0.0.1:{broker.port}", "127.0.0.1", broker.port, mode)
        finally:
            broker.stop()
        conns += broker.conns
    check_analyzer(kwire, conns, tmp)
    check_proxy(kwire, tmp)
    check_kwire_sasl(kwire, tmp)
    print("ok")


if __name__ == "__main__":
    main()
