"""Certificate reload under load (docs/security.md): a producer keeps
writing through a TLS listener while the certificate files change.

1. The certificate file is overwritten with garbage: kwire logs that the
   reload failed and keeps the certificate it had (a new client trusting
   the first CA still connects).
2. The key and certificate are replaced by ones from another CA (written
   to temporary files and renamed over the old ones): kwire picks them up
   by itself; a new client now needs the second CA, and one trusting only
   the first is refused.
3. SIGHUP reloads too (logged as such).
Throughout, the producer's connections stay up: every message is
delivered, librdkafka logs no disconnect, and kwire accepted no new
connection for it.
"""
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, check  # noqa: E402
import tls_certs  # noqa: E402

try:
    from confluent_kafka import Producer
except ImportError:
    print("SKIP: confluent_kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)


def replace(path, data):
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


PROBE_CONNS = [0]  # connections kwire accepted for the probes


def probe(c, ca):
    """A new TLS client trusting ca: 0 when it got metadata."""
    a0 = c.metric("kwire_connections_accepted_total")
    r = subprocess.run(["kcat", "-L", "-b", c.bootstrap, "-m", "5", "-X", "security.protocol=SSL",
                        "-X", f"ssl.ca.location={ca}"], capture_output=True, timeout=30)
    time.sleep(0.2)
    PROBE_CONNS[0] += c.metric("kwire_connections_accepted_total") - a0
    return r.returncode


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def wait_log(c, pattern, what, count=1):
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if len(re.findall(pattern, c.proxy_stderr())) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: no line matching {pattern!r}:\n" + c.proxy_stderr()[-2000:])


def main():
    tmp = tempfile.mkdtemp(prefix="kwire-tlsreload-")
    try:
        certs = tls_certs.make_certs(os.path.join(tmp, "certs"))
        cert, key = os.path.join(tmp, "kwire.pem"), os.path.join(tmp, "kwire.key")
        shutil.copy(certs["server"], cert)
        shutil.copy(certs["server_key"], key)
        with Cluster(topics=(("tr", 3),),
                     extra_proxy_args=["--tls-cert", cert, "--tls-key", key]) as c:
            errs, acked = [], [0]
            rdlog = Collect()
            lg = logging.getLogger("rdkafka")
            lg.addHandler(rdlog)
            lg.setLevel(logging.DEBUG)
            p = Producer({"bootstrap.servers": c.bootstrap, "security.protocol": "SSL",
                          "ssl.ca.location": certs["ca"], "linger.ms": 5, "logger": lg})
            # Connections up before the clock starts.
            p.produce("tr", b"warm-up", partition=0)
            p.flush(20)
            for part in range(3):
                p.produce("tr", b"warm-up", partition=part)
            p.flush(20)
            accepted0 = c.metric("kwire_connections_accepted_total")
            stop = threading.Event()

            def load():
                i = 0
                while not stop.is_set():
                    try:
                        p.produce("tr", f"m{i}".encode(), partition=i % 3,
                                  on_delivery=lambda e, m: errs.append(e) if e
                                  else acked.__setitem__(0, acked[0] + 1))
                        i += 1
                    except BufferError:
                        pass
                    if i % 50 == 0:  # about 5,000 messages a second
                        p.poll(0.01)
                p.flush(30)

            th = threading.Thread(target=load)
            th.start()
            try:
                time.sleep(1)
                # 1. A bad file: the old certificate stays.
                replace(cert, b"-----BEGIN CERTIFICATE-----\nnot a certificate\n")
                wait_log(c, r"reloading the listener's certificates \(a file changed\) failed: "
                         r"tls_cert .*; the certificates loaded before stay in use", "bad file")
                check(probe(c, certs["ca"]) == 0, "after a bad file, the old certificate is gone")
                print("bad certificate file: logged, the old certificate still served")
                # 2. Another CA's certificate and key: picked up by itself.
                replace(key, open(certs["rogue_server_key"], "rb").read())
                replace(cert, open(certs["rogue_server"], "rb").read())
                wait_log(c, r"listener's certificates reloaded \(a file changed\)", "new files")
                end = time.monotonic() + 10
                while probe(c, certs["rogue_ca"]) != 0 and time.monotonic() < end:
                    time.sleep(0.3)  # the key may have been read before the certificate
                check(probe(c, certs["rogue_ca"]) == 0, "the new certificate is not served")
                check(probe(c, certs["ca"]) != 0, "the old certificate is still served")
                print("new certificate files: reloaded, new connections get them")
                # 3. SIGHUP.
                os.kill(c.pid(), signal.SIGHUP)
                wait_log(c, r"listener's certificates reloaded \(SIGHUP\)", "SIGHUP")
                check(probe(c, certs["rogue_ca"]) == 0, "after SIGHUP")
                time.sleep(1)
            finally:
                stop.set()
                th.join(60)
            check(not errs, f"delivery errors during the reloads: {errs[:3]}")
            check(acked[0] > 1000, f"only {acked[0]} messages delivered: no load")
            accepted = c.metric("kwire_connections_accepted_total") - accepted0
            check(accepted == PROBE_CONNS[0],
                  f"{accepted} connections accepted during the run, {PROBE_CONNS[0]} of them "
                  "the probes': the producer reconnected")
            p.poll(0)
            check(not rdlog.lines, "librdkafka logged: " + "; ".join(rdlog.lines[:3]))
            check(c.metric("kwire_tls_reloads_total") >= 2, "kwire_tls_reloads_total")
            check(c.metric("kwire_tls_reload_failures_total") >= 1,
                  "kwire_tls_reload_failures_total")
            del p
            print(f"under load: {acked[0]} messages delivered, no error, no reconnection")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
