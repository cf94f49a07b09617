"""The client side of bench_tls.py (run inside the path's network
namespace). Prints one JSON object on stdout.

  tput  BOOTSTRAP CA N T   produce N 1 KiB messages (acks=1) to topic T's
                           12 partitions, then consume them all: MB/s each
  lat   BOOTSTRAP CA N     one message in flight at a time: p50/p99 ms
  conns HOST:PORT CA SECS  new TLS connections a second (handshake, one
                           ApiVersions request and its answer, close), 4
                           threads
  idle  HOST:PORT CA N     opens N TLS connections (handshake and one
                           ApiVersions each), prints READY, waits for stdin
  cipher HOST:PORT CA      the negotiated protocol and cipher

CA "-" means plaintext."""
import json
import resource
import socket
import ssl
import struct
import sys
import threading
import time

MSG = 1024
PARTS = 12
APIVERSIONS = struct.pack(">ihhih", 10 + 4, 18, 0, 1, 4) + b"tlsb"


def conf(bootstrap, ca):
    c = {"bootstrap.servers": bootstrap}
    if ca != "-":
        c.update({"security.protocol": "SSL", "ssl.ca.location": ca})
    return c


def tput(bootstrap, ca, n, topic):
    from confluent_kafka import Consumer, Producer, TopicPartition
    p = Producer({**conf(bootstrap, ca), "acks": 1, "linger.ms": 5,
                  "batch.num.messages": 1000, "queue.buffering.max.messages": 200000})
    payload = b"x" * MSG
    p.list_topics(topic, timeout=10)
    t0 = time.monotonic()
    for i in range(n):
        while True:
            try:
                p.produce(topic, payload, partition=i % PARTS)
                break
            except BufferError:
                p.poll(0.001)
    p.flush(120)
    tp = time.monotonic() - t0
    c = Consumer({**conf(bootstrap, ca), "group.id": "bench", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest",
                  "fetch.max.bytes": 8 << 20, "max.partition.fetch.bytes": 4 << 20})
    c.assign([TopicPartition(topic, i, 0) for i in range(PARTS)])
    got = 0
    t0 = time.monotonic()
    while got < n and time.monotonic() - t0 < 120:
        for m in c.consume(1000, 0.5):
            if not m.error():
                got += 1
    tc = time.monotonic() - t0
    c.close()
    mb = n * MSG / 1e6
    return {"produce_mbs": mb / tp, "consume_mbs": mb / tc, "consumed": got, "n": n}


def lat(bootstrap, ca, n):
    from confluent_kafka import Producer
    p = Producer({**conf(bootstrap, ca), "acks": 1, "linger.ms": 0})
    p.list_topics("bench", timeout=10)
    ts = []
    for i in range(n + 20):
        t0 = time.monotonic()
        p.produce("bench", b"y" * 100, partition=0)
        p.flush(10)
        if i >= 20:  # warm-up
            ts.append((time.monotonic() - t0) * 1000)
    ts.sort()
    return {"p50_ms": ts[len(ts) // 2], "p99_ms": ts[int(len(ts) * 0.99)], "n": n}


def ctx_for(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    return ctx


def one_conn(addr, ctx):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    t = ctx.wrap_socket(s) if ctx else s
    t.sendall(APIVERSIONS)
    hdr = b""
    while len(hdr) < 4:
        d = t.recv(4 - len(hdr))
        if not d:
            raise OSError("closed")
        hdr += d
    left = struct.unpack(">i", hdr)[0]
    while left:
        d = t.recv(left)
        if not d:
            raise OSError("closed")
        left -= len(d)
    return t


def conns(addr, ca, secs):
    ctx = ctx_for(ca)
    count = [0]
    errors = [0]
    end = time.monotonic() + secs

    def run():
        while time.monotonic() < end:
            try:
                one_conn(addr, ctx).close()
                count[0] += 1
            except OSError:
                errors[0] += 1
    th = [threading.Thread(target=run) for _ in range(4)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    return {"conns_per_s": count[0] / secs, "errors": errors[0]}


def idle(addr, ca, n):
    lim = max(n * 2 + 100, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    resource.setrlimit(resource.RLIMIT_NOFILE, (lim, max(lim, resource.getrlimit(
        resource.RLIMIT_NOFILE)[1])))
    ctx = ctx_for(ca) if ca != "-" else None
    socks = []
    t0 = time.monotonic()
    for _ in range(n):
        socks.append(one_conn(addr, ctx))
    print(json.dumps({"opened": len(socks), "secs": time.monotonic() - t0}), flush=True)
    print("READY", flush=True)
    sys.stdin.read()
    return None


def cipher(addr, ca):
    t = one_conn(addr, ctx_for(ca))
    v, c = t.version(), t.cipher()[0]
    t.close()
    return {"version": v, "cipher": c}


def main():
    mode = sys.argv[1]
    a = sys.argv[2:]
    out = {"tput": lambda: tput(a[0], a[1], int(a[2]), a[3]),
           "lat": lambda: lat(a[0], a[1], int(a[2])),
           "conns": lambda: conns(a[0], a[1], float(a[2])),
           "idle": lambda: idle(a[0], a[1], int(a[2])),
           "cipher": lambda: cipher(a[0], a[1])}[mode]()
    if out is not None:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
