"""Helpers shared by the SASL integration tests (test_proxy_sasl.py,
test_proxy_oauth.py): credentials files written by `kwire passwd`, extra
kwire proxies in front of the harness's, confluent-kafka rounds, and a raw
Kafka client that speaks exactly the frames a test wants."""
import json
import os
import re
import socket
import struct
import subprocess
import time
import urllib.request

from proxy_harness import _readline, check, kwire_env


def passwd(kwire, path, user, password, *extra):
    r = subprocess.run([kwire, "passwd", "-f", path, *extra, user], input=password + "\n",
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"kwire passwd {user}: {r.stderr}")


class Proxy:
    """One more `kwire proxy` (listen on an ephemeral port), with an access
    log (json) and the admin endpoint."""

    def __init__(self, kwire, tmp, name, args, config=None):
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.err_path = os.path.join(tmp, f"{name}.err")
        cmd = [kwire, "proxy", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
               "--access-log", self.log_path, "--access-log-format", "json"]
        if config:
            cpath = os.path.join(tmp, f"{name}.yaml")
            with open(cpath, "w") as f:
                f.write(config)
            cmd += ["-c", cpath]
        self.px = subprocess.Popen(cmd + list(args), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=open(self.err_path, "w"),
                                   env=kwire_env())
        deadline = time.monotonic() + 20
        self.bootstrap = self.admin = None
        while self.bootstrap is None or self.admin is None:
            line = _readline(self.px, deadline, f"kwire proxy {name}")
            if line.startswith("LISTEN "):
                self.bootstrap = line.split()[1]
            elif line.startswith("ADMIN "):
                self.admin = line.split()[1]

    def stop(self):
        if self.px.poll() is None:
            self.px.terminate()
            try:
                self.px.wait(20)
            except subprocess.TimeoutExpired:
                self.px.kill()
                self.px.wait()
        return self.px.returncode

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def log_entries(self, settle=0.5):
        time.sleep(settle)
        with open(self.log_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def metric(self, name, **labels):
        return metric(self.admin, name, **labels)


def metric(admin, name, **labels):
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
    return total


def sasl_conf(bootstrap, mech, user, password, **kw):
    conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": mech, "sasl.username": user, "sasl.password": password,
            "socket.timeout.ms": 10000}
    conf.update(kw)
    return conf


def confluent_round(conf, topic, n, tag):
    """Produces n records (values tag-i) to partition 0 of topic and reads
    partition 0 back until all of them came; returns the values read."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    errors = []
    p = Producer(dict(conf, **{"error_cb": lambda e: errors.append(e)}))
    delivered = []
    for i in range(n):
        p.produce(topic, value=f"{tag}-{i}".encode(), partition=0,
                  on_delivery=lambda err, msg: delivered.append(err))
    left = p.flush(30)
    check(left == 0 and len(delivered) == n and not any(delivered),
          f"{tag}: {len(delivered)} of {n} delivered, errors {[str(e) for e in delivered if e]}, "
          f"client errors {[str(e) for e in errors]}")
    c = Consumer(dict(conf, **{"group.id": f"g-{tag}", "enable.auto.commit": False}))
    c.assign([TopicPartition(topic, 0, 0)])
    got = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(got) < n:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        v = m.value().decode()
        if v.startswith(tag + "-"):
            got.add(v)
    c.close()
    check(len(got) == n, f"{tag}: {len(got)} of {n} records read back")
    return got


def confluent_refused(conf, what):
    """A producer whose authentication must fail: returns the first
    authentication error librdkafka reports."""
    from confluent_kafka import KafkaError, Producer
    errors = []
    p = Producer(dict(conf, **{"error_cb": lambda e: errors.append(e)}))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        p.poll(0.2)
        auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
        if auth:
            return auth[0]
    raise AssertionError(f"{what}: no authentication error; errors: {[str(e) for e in errors]}")


class Raw:
    """A bare Kafka client: exact frames, and whether the peer closed."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=10)
        self.corr = 0

    def send(self, key, ver, body, client_id=b"raw"):
        self.corr += 1
        hdr = struct.pack(">hhih", key, ver, self.corr, len(client_id)) + client_id
        m = hdr + body
        self.s.sendall(struct.pack(">i", len(m)) + m)

    def send_raw(self, data):
        self.s.sendall(data)

    def recv(self):
        """The next frame's bytes (after the size), or None at EOF."""
        head = self._readn(4)
        if head is None:
            return None
        return self._readn(struct.unpack(">i", head)[0])

    def _readn(self, n):
        d = b""
        while len(d) < n:
            try:
                c = self.s.recv(n - len(d))
            except (ConnectionResetError, socket.timeout):
                return None
            if not c:
                return None
            d += c
        return d

    def closed_within(self, secs):
        self.s.settimeout(secs)
        try:
            while True:
                c = self.s.recv(4096)
                if not c:
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def handshake(self, mech, ver=1):
        self.send(17, ver, struct.pack(">h", len(mech)) + mech.encode())
        r = self.recv()
        return struct.unpack(">h", r[4:6])[0]

    def authenticate(self, tok, ver=1):
        """SaslAuthenticate: (ErrorCode, ErrorMessage, AuthBytes), or None at EOF."""
        self.send(36, ver, struct.pack(">i", len(tok)) + tok)
        r = self.recv()
        if r is None:
            return None
        err, ml = struct.unpack(">hh", r[4:8])
        o = 8 + max(ml, 0)
        msg = r[8:o].decode() if ml > 0 else None
        n = struct.unpack(">i", r[o:o + 4])[0]
        return err, msg, r[o + 4:o + 4 + n]

    def close(self):
        self.s.close()
