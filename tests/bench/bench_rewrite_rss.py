#!/usr/bin/python3
"""Peak RSS of `kwire proxy` while it rewrites large responses.

    tests/bench/bench_rewrite_rss.py [KWIRE_BIN] [MB] [CLIENTS]

A scripted broker on loopback answers every Metadata request with a
Metadata v1 response of about MB megabytes (topics with long names), and
every Fetch v16 request with a Fetch v16 response holding MB megabytes of
records and a NodeEndpoints that names the broker's real address (so both
must be rewritten). CLIENTS clients (3 by default) each send one request
at once and read the answer; kwire's VmHWM is read from /proc before and
after, one fresh proxy per scenario. Prints figures; asserts nothing
except that every answer arrived rewritten.
"""
import os
import socket
import struct
import subprocess
import sys
import threading
import time

KWIRE = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KWIRE_BIN", "build/kwire")
MB = int(sys.argv[2]) if len(sys.argv) > 2 else 50
CLIENTS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
REAL_HOST = b"bench-real-host.internal"


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def metadata_v1(corr, port, size):
    name_len = 200
    ntopics = size // (2 + 2 + name_len + 1 + 4)
    parts = [struct.pack(">iii", corr, 1, 1),
             struct.pack(">h", len(REAL_HOST)), REAL_HOST,
             struct.pack(">ih", port, -1),  # Port, Rack null
             struct.pack(">ii", 1, ntopics)]  # ControllerId, Topics
    for i in range(ntopics):
        name = (b"topic-%09d-" % i).ljust(name_len, b"x")
        parts.append(struct.pack(">hh", 0, name_len) + name + b"\x00" + struct.pack(">i", 0))
    body = b"".join(parts)
    return struct.pack(">i", len(body)) + body


def fetch_v16(corr, port, size):
    records = bytes(range(256)) * (size // 256)
    ne = (uvarint(2) + struct.pack(">i", 1) + uvarint(len(REAL_HOST) + 1) + REAL_HOST
          + struct.pack(">i", port) + uvarint(0) + uvarint(0))
    body = b"".join([
        struct.pack(">i", corr), uvarint(0),  # header v1
        struct.pack(">ihi", 0, 0, 1),  # ThrottleTimeMs, ErrorCode, SessionId
        uvarint(2), bytes(16),  # Responses: 1, TopicId
        uvarint(2), struct.pack(">ihqqq", 0, 0, 1, 1, 0),  # Partitions: 1
        uvarint(0), struct.pack(">i", -1),  # AbortedTransactions null, PreferredReadReplica
        uvarint(len(records) + 1), records, uvarint(0),  # Records, partition tags
        uvarint(0),  # topic tags
        uvarint(1), uvarint(0), uvarint(len(ne)), ne,  # NodeEndpoints (tag 0)
    ])
    return struct.pack(">i", len(body)) + body


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


class Broker:
    def __init__(self):
        self.lsn = socket.socket()
        self.lsn.bind(("127.0.0.1", 0))
        self.lsn.listen(16)
        self.port = self.lsn.getsockname()[1]
        self.cache = {}
        threading.Thread(target=self.accept, daemon=True).start()

    def answer(self, key, corr):
        if (key, corr) not in self.cache:
            make = metadata_v1 if key == 3 else fetch_v16
            self.cache[(key, corr)] = make(corr, self.port, MB * 1000 * 1000)
        return self.cache[(key, corr)]

    def accept(self):
        while True:
            conn, _ = self.lsn.accept()
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        try:
            while True:
                size = struct.unpack(">i", recv_exact(conn, 4))[0]
                req = recv_exact(conn, size)
                key, _ver, corr = struct.unpack(">hhi", req[:8])
                conn.sendall(self.answer(key, corr))
        except (EOFError, OSError):
            conn.close()


def request(key, ver, corr):
    client = b"bench"
    hdr = struct.pack(">hhih", key, ver, corr, len(client)) + client
    if key == 1:
        hdr += uvarint(0)  # request header v2: tags
        body = b"\x00" * 64
    else:
        body = struct.pack(">i", -1)  # Metadata v1: all topics
    return struct.pack(">i", len(hdr) + len(body)) + hdr + body


def vm(pid, what):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(what + ":"):
                return int(line.split()[1]) // 1024
    return -1


def scenario(broker, key, ver, label):
    proxy = subprocess.Popen([KWIRE, "proxy", "--upstream", "127.0.0.1:%d" % broker.port,
                              "--listen", "127.0.0.1:0", "--workers", "2", "--no-log", "-q"],
                             stdout=subprocess.PIPE, text=True)
    port = None
    for line in proxy.stdout:
        if line.startswith("LISTEN "):
            port = int(line.split(":")[-1])
            break
    idle = vm(proxy.pid, "VmRSS")
    results = []

    def client(i):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request(key, ver, 100 + i))
        size = struct.unpack(">i", recv_exact(s, 4))[0]
        resp = recv_exact(s, size)
        results.append(REAL_HOST not in resp and b"127.0.0.1" in resp and size > MB * 900000)
        s.close()

    for i in range(CLIENTS):  # the broker builds its answers once, before timing
        broker.answer(key, 100 + i)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    peak = vm(proxy.pid, "VmHWM")
    proxy.terminate()
    proxy.wait()
    ok = len(results) == CLIENTS and all(results)
    print("%-22s %3d x %3d MB  idle RSS %4d MB  peak RSS %5d MB  %s"
          % (label, CLIENTS, MB, idle, peak, "rewritten" if ok else "NOT REWRITTEN"))
    return ok


def main():
    broker = Broker()
    ok = scenario(broker, 3, 1, "Metadata v1") & scenario(broker, 1, 16, "Fetch v16")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
