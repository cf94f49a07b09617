"""The 2.12 mock cluster's answers, replayed byte for byte through kwire.

librdkafka 2.12.0's mock cluster writes the top-level tag section of some
flexible responses twice (docs/peers.md): Metadata v12, the first thing every
2.12 client asks, ends with one byte after a complete body. Kafka's own
clients ignore it, so kwire must forward it (rewritten, the extra byte kept).

This test does not need the live cluster to behave the same tomorrow: it
serves the responses captured from it in tests/data/clients/modern-kcat.conv
(docs/test-data.md) from three replay brokers on loopback, each captured
response answered to the request of the same API key and version with the
request's correlation id, the captured broker ports patched in place (same
length) to the replay brokers' ports. Then, through `kwire proxy`:

1. raw: the captured Metadata v12 request gets the captured response back,
   of the same length, identical except that every broker address is a
   kwire listener (so the byte after the body is there, unchanged);
2. kcat on librdkafka 2.12.0 lists the cluster (`kcat -L`): three brokers at
   kwire's ports, the captured topics, no replay broker port anywhere.
"""
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
HOST = b"\x0a127.0.0.1"  # COMPACT_STRING "127.0.0.1"


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def env(name):
    v = os.environ.get(name)
    if not v:
        print(f"SKIP: {name} not set, run through ctest (needs: ctest's environment)",
              file=sys.stderr)
        sys.exit(SKIP)
    return v


def frames(data):
    """Splits a byte stream into Kafka frames (size prefix included)."""
    out, i = [], 0
    while i + 4 <= len(data):
        n = struct.unpack_from(">i", data, i)[0]
        if i + 4 + n > len(data):
            break
        out.append(bytes(data[i:i + 4 + n]))
        i += 4 + n
    return out


def load_conv(path):
    """[(request frame, response frame)] of every answered request, paired
    by correlation id, from a .conv file (docs/test-data.md)."""
    pairs = []
    conns = []
    cur = None
    with open(path) as f:
        for line in f:
            if line.startswith("conn "):
                cur = {"C": bytearray(), "S": bytearray()}
                conns.append(cur)
            elif line[:2] in ("C ", "S "):
                cur[line[0]].extend(bytes.fromhex(line[2:].strip()))
    for c in conns:
        reqs = {struct.unpack_from(">i", r, 8)[0]: r for r in frames(c["C"])}
        for resp in frames(c["S"]):
            corr = struct.unpack_from(">i", resp, 4)[0]
            if corr in reqs:
                pairs.append((reqs[corr], resp))
    return pairs


def key_ver(req):
    return struct.unpack_from(">hh", req, 4)


def broker_ports(resp):
    """{node id: port} of the brokers a Metadata v12 response names."""
    return {struct.unpack(">i", m.group(1))[0]: struct.unpack(">i", m.group(2))[0]
            for m in re.finditer(re.escape(HOST).join([b"(\x00\x00\x00[\x01-\x09])", b"(....)"]),
                                 resp, re.S)}


def patch_ports(resp, mapping):
    """resp with every HOST + INT32 port in mapping replaced in place."""
    out = bytearray(resp)
    for old, new in mapping.items():
        needle = HOST + struct.pack(">i", old)
        i = out.find(needle)
        while i >= 0:
            out[i + len(HOST):i + len(needle)] = struct.pack(">i", new)
            i = out.find(needle, i + 1)
    return bytes(out)


class Replay:
    """Three replay brokers answering from the captured responses."""

    def __init__(self, table, real_ports):
        self.table = table          # (key, version) -> captured response frame
        self.socks = {}
        for bid in sorted(real_ports):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            s.listen(64)
            self.socks[bid] = s
        self.ports = {bid: s.getsockname()[1] for bid, s in self.socks.items()}
        self.mapping = {real_ports[bid]: self.ports[bid] for bid in real_ports}
        self.asked = []             # (key, version) of every request received
        self.unknown = []
        self.stop = False
        for s in self.socks.values():
            threading.Thread(target=self.accept, args=(s,), daemon=True).start()

    def accept(self, lsock):
        lsock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        buf = b""
        conn.settimeout(0.5)
        try:
            while not self.stop:
                try:
                    d = conn.recv(65536)
                except socket.timeout:
                    continue
                if not d:
                    return
                buf += d
                while len(buf) >= 4 and len(buf) >= 4 + struct.unpack_from(">i", buf)[0]:
                    n = struct.unpack_from(">i", buf)[0]
                    req, buf = buf[:4 + n], buf[4 + n:]
                    kv = key_ver(req)
                    self.asked.append(kv)
                    resp = self.table.get(kv)
                    if resp is None:
                        self.unknown.append(kv)
                        return  # like a broker that does not know the API
                    out = bytearray(patch_ports(resp, self.mapping))
                    out[4:8] = req[8:12]  # the request's correlation id
                    conn.sendall(bytes(out))
        except OSError:
            return
        finally:
            conn.close()

    def close(self):
        self.stop = True
        for s in self.socks.values():
            s.close()


def read_frame(s, timeout=10):
    s.settimeout(timeout)
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + struct.unpack_from(">i", buf)[0]:
        d = s.recv(65536)
        if not d:
            raise AssertionError(f"kwire closed the connection after {len(buf)} bytes")
        buf += d
    return buf


def main():
    kwire = env("KWIRE_BIN")
    data = env("KWIRE_DATA")
    src = env("KWIRE_SRC")
    conv = os.path.join(data, "clients", "modern-kcat.conv")
    check(os.path.exists(conv), f"no {conv} (docs/test-data.md)")
    pairs = load_conv(conv)
    table = {}
    for req, resp in pairs:
        kv = key_ver(req)
        # The biggest captured answer of each kind: for Metadata, the one
        # listing every topic.
        if kv not in table or len(resp) > len(table[kv]):
            table[kv] = resp
    md = table.get((3, 12))
    check(md is not None, f"no Metadata v12 answer in {conv}: {sorted(table)}")
    real = broker_ports(md)
    check(sorted(real) == [1, 2, 3], f"captured Metadata v12 names brokers {real}")
    md_req = max((r for r, s in pairs if key_ver(r) == (3, 12) and s == md), key=len)

    lib = subprocess.run([os.path.join(src, "tools", "install-rdkafka-modern.sh"),
                          "--print-dir"], capture_output=True, text=True)
    check(lib.returncode == 0, "librdkafka 2.12.0 is not built: run tools/install-deps.sh")
    lib = lib.stdout.strip()

    rp = Replay(table, real)
    tmp = tempfile.mkdtemp(prefix="kwire-replay-")
    bootstrap = ",".join(f"127.0.0.1:{p}" for p in rp.ports.values())
    errp = os.path.join(tmp, "proxy.err")
    px = subprocess.Popen([kwire, "proxy", "--upstream", bootstrap, "--listen", "127.0.0.1:0",
                           "--admin", "127.0.0.1:0", "--no-log"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=open(errp, "w"), text=True)
    try:
        listen = admin = None
        deadline = time.monotonic() + 20
        while (listen is None or admin is None) and time.monotonic() < deadline:
            line = px.stdout.readline()
            if not line:
                break
            if line.startswith("LISTEN "):
                listen = line.split()[1]
            elif line.startswith("ADMIN "):
                admin = line.split()[1]
        check(listen and admin, "kwire proxy did not start:\n" + open(errp).read())
        host, port = listen.rsplit(":", 1)

        # 1. Raw: the captured request, our correlation id.
        s = socket.create_connection((host, int(port)))
        req = bytearray(md_req)
        req[8:12] = struct.pack(">i", 4242)
        s.sendall(bytes(req))
        got = read_frame(s)
        s.close()
        import urllib.request
        with urllib.request.urlopen(f"http://{admin}/brokers", timeout=10) as r:
            kports = {e["node_id"]: e["proxy_port"] for e in json.loads(r.read())["brokers"]}
        check(sorted(kports) == [1, 2, 3], f"kwire's /brokers: {kports}")
        want = bytearray(patch_ports(md, {real[b]: kports[b] for b in real}))
        want[4:8] = struct.pack(">i", 4242)
        check(len(got) == len(want),
              f"Metadata v12 through kwire is {len(got)} bytes, the broker sent {len(want)}")
        check(got == bytes(want), "Metadata v12 through kwire differs from the broker's answer "
              "other than in the broker ports:\n" + got.hex() + "\n" + want.hex())
        for p in rp.ports.values():
            check(HOST + struct.pack(">i", p) not in got, f"replay broker port {p} reached the client")
        print(f"raw: Metadata v12, {len(got)} bytes, forwarded with the broker ports rewritten")

        # 2. kcat on 2.12 lists the cluster through kwire.
        kcat = shutil.which("kcat")
        check(kcat, "kcat not installed")
        e = dict(os.environ, LD_LIBRARY_PATH=lib)
        v = subprocess.run([kcat, "-V"], env=e, capture_output=True, text=True).stdout
        check("librdkafka 2.12." in v, f"kcat does not run on librdkafka 2.12: {v}")
        r = subprocess.run([kcat, "-b", listen, "-L", "-m", "10"], env=e, capture_output=True,
                           text=True, timeout=60)
        check(r.returncode == 0, f"kcat -L through kwire failed:\n{r.stderr}\n" + open(errp).read())
        out = r.stdout
        for bid, p in kports.items():
            check(f"broker {bid} at 127.0.0.1:{p}" in out, f"kcat -L: broker {bid} not at {p}:\n{out}")
        for p in list(rp.ports.values()) + list(real.values()):
            check(not re.search(rf"(?<![0-9]){p}(?![0-9])", out), f"kcat -L shows port {p}:\n{out}")
        check('topic "kcat-codecs" with 5 partitions' in out, f"kcat -L topics:\n{out}")
        check((3, 12) in rp.asked, f"kcat never asked Metadata v12: {rp.asked}")
        print(f"kcat -L on librdkafka 2.12 through kwire: ok ({len(rp.asked)} requests replayed)")
    finally:
        px.terminate()
        try:
            px.wait(20)
        except subprocess.TimeoutExpired:
            px.kill()
        rp.close()
        shutil.rmtree(tmp, ignore_errors=True)
    check(px.returncode == 0, f"kwire proxy exited with {px.returncode}")
    print("ok")


if __name__ == "__main__":
    main()
