"""Bad clients against kwire: garbage bytes, a 2 GB frame size, half a frame
and then silence, thousands of connections opened and dropped. Each is
handled (the connection is closed or left harmlessly open), a well-behaved
client running alongside is unaffected, and afterwards the proxy holds no
more file descriptors than before and its resident memory did not run away."""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, check  # noqa: E402

try:
    from confluent_kafka import Consumer, Producer, TopicPartition
except ImportError:
    print("SKIP: confluent_kafka not installed (needs: python3-confluent-kafka, "
          "tools/install-deps.sh)", file=sys.stderr)
    sys.exit(SKIP)

T = "bad"
CHURN = 3000


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sanitized(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


def addr(c):
    host, port = c.bootstrap.rsplit(":", 1)
    return host, int(port)


def closed_by_peer(s, timeout=10):
    """True when the peer closes s (EOF or reset) within timeout."""
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def wait_idle(c, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if c.metric("kwire_connections_active") == 0:
            return True
        time.sleep(0.2)
    return False


class Steady(threading.Thread):
    """A producer that keeps producing while the abuse goes on."""

    def __init__(self, c):
        super().__init__(daemon=True)
        self.c = c
        self.stop = threading.Event()
        self.sent = 0
        self.errors = []

    def run(self):
        p = Producer({"bootstrap.servers": self.c.bootstrap, "linger.ms": 5})
        while not self.stop.is_set():
            p.produce(T, f"steady-{self.sent}".encode(), partition=self.sent % 3,
                      on_delivery=lambda e, m: e and self.errors.append(e))
            self.sent += 1
            p.poll(0.005)
        left = p.flush(30)
        if left:
            self.errors.append(f"{left} undelivered")


def main():
    with Cluster(topics=((T, 3),)) as c:
        pid = c.pid()
        # Warm up: a real client opens every broker listener; then measure.
        p = Producer({"bootstrap.servers": c.bootstrap})
        p.produce(T, b"warm-up", partition=0)
        check(p.flush(30) == 0, "warm-up produce failed")
        del p
        check(wait_idle(c), "connections did not go away after the warm-up")
        fds0, rss0 = nfds(pid), rss_kb(pid)

        steady = Steady(c)
        steady.start()

        # 1. Garbage: an HTTP request is a 1.2 GB "frame"; random bytes with a
        #    small size are an unknown API. Both must be closed.
        s = socket.create_connection(addr(c))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        check(closed_by_peer(s), "HTTP garbage: connection not closed")
        s.close()
        s = socket.create_connection(addr(c))
        s.sendall(struct.pack(">i", 24) + os.urandom(2) + b"\x7f\x7f" + os.urandom(20))
        s.sendall(struct.pack(">i", 8) + b"\xff\xff\xff\xff\x00\x00\x00\x01")
        s.settimeout(10)
        try:
            s.recv(1)  # closed, or at worst left open: but never a crash
        except (socket.timeout, ConnectionResetError):
            pass
        s.close()

        # 2. A 2 GB frame size.
        tl0 = c.metric("kwire_frames_too_large_total")
        s = socket.create_connection(addr(c))
        s.sendall(struct.pack(">I", 0x7fffffff) + b"\x00\x03\x00\x09" + b"x" * 100)
        check(closed_by_peer(s), "2 GB frame: connection not closed")
        s.close()
        check(c.metric("kwire_frames_too_large_total") > tl0, "2 GB frame not counted")

        # 3. Half a frame, then nothing (kept open while the rest goes on).
        half = socket.create_connection(addr(c))
        half.sendall(struct.pack(">i", 100) + b"\x00\x12\x00\x00" + b"\x00" * 20)

        # 4. Thousands of connections opened and dropped, some mid-frame,
        #    some reset (SO_LINGER 0).
        for i in range(CHURN):
            s = socket.create_connection(addr(c))
            if i % 3 == 1:
                s.sendall(struct.pack(">i", 40) + b"\x00\x03")
            elif i % 3 == 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()

        # The well-behaved client is unaffected, and so is a new one.
        time.sleep(0.5)
        steady.stop.set()
        steady.join(60)
        check(not steady.errors, f"steady producer errors: {steady.errors[:3]}")
        check(steady.sent > 10, f"steady producer only sent {steady.sent}")
        cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "bad-check",
                         "auto.offset.reset": "earliest"})
        cons.assign([TopicPartition(T, p, 0) for p in range(3)])
        got = set()
        end = time.monotonic() + 30
        while len(got) < steady.sent and time.monotonic() < end:
            m = cons.poll(0.5)
            if m is not None and not m.error() and m.value().startswith(b"steady-"):
                got.add(m.value())
        cons.close()
        check(len(got) == steady.sent, f"consumed {len(got)} of {steady.sent} steady messages")
        check(c.px.poll() is None, "kwire died")

        half.close()
        check(wait_idle(c), "connections still active after every client left")
        time.sleep(0.5)
        fds1, rss1 = nfds(pid), rss_kb(pid)
        print(f"fds {fds0} -> {fds1}, RSS {rss0} -> {rss1} KB after {CHURN} connections")
        check(fds1 <= fds0, f"fd leak: {fds0} before, {fds1} after")
        # Allocator caches and the access log ring grow a little; a leak of a
        # few KB per connection over 3000 connections would not fit. Under
        # AddressSanitizer freed memory sits in quarantine, so RSS says
        # nothing: LeakSanitizer checks at exit instead (the harness fails on
        # a non-zero exit status).
        if not sanitized(c.kwire):
            check(rss1 - rss0 < 24 * 1024, f"RSS grew {rss1 - rss0} KB")
        accepted = c.metric("kwire_connections_accepted_total")
        check(accepted >= CHURN, f"only {accepted} connections counted")
    print("ok")


if __name__ == "__main__":
    main()
