"""No response that reaches a client names a real broker.

Captures the client side of `kwire proxy` on loopback while kcat and
kafka-python work through it (metadata, produce on every partition, a
consumer group, so Metadata, FindCoordinator and the group APIs all cross),
then checks every response the clients received, two independent ways:

1. decoded: `kwire decode --format json` on the capture; every Host/Port pair
   anywhere in a response body must be 127.0.0.1 at a kwire listener, and no
   body may fail to decode except the mock cluster's known malformed
   ApiVersions error answers;
2. raw: tshark's server-to-client TCP payloads, reassembled per stream, must
   not contain "127.0.0.1" followed by a real broker port as INT32 (the
   encoding of every broker address in these API versions).

On the 2.12 peer (docs/peers.md) the clients speak Metadata v12, Produce v10
and Fetch v16, and a partition leader moves while a confluent-kafka producer
and consumer use it: the NOT_LEADER_OR_FOLLOWER answers then carry KIP-951
NodeEndpoints (top-level tagged fields), which must be rewritten like any
other broker address, and the test requires that some did cross.

Needs root (dumpcap on lo) and tshark; skips (77) without them.
"""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, capture_listeners, check, modern, stop_capture  # noqa: E402,E501

KCAT = shutil.which("kcat")
DUMPCAP = shutil.which("dumpcap")
TSHARK = shutil.which("tshark")
TOPIC = "wire"
PARTS = 3


def skip(why):
    print(f"SKIP: {why}", file=sys.stderr)
    sys.exit(SKIP)


def run(args, **kw):
    r = subprocess.run(args, capture_output=True, timeout=90, **kw)
    check(r.returncode == 0, f"{args[0]} failed ({r.returncode}):\n{r.stderr.decode()[-2000:]}")
    return r.stdout.decode()


def client_traffic(c):
    """kcat and kafka-python through the proxy: every broker and group API."""
    b = c.bootstrap
    run([KCAT, "-b", b, "-L"])
    for p in range(PARTS):
        data = "".join(f"k{i}:p{p}-v{i}\n" for i in range(20)).encode()
        run([KCAT, "-b", b, "-P", "-t", TOPIC, "-p", str(p), "-K", ":"], input=data)
    out = run([KCAT, "-b", b, "-G", "wire-group", "-o", "beginning", "-c", str(PARTS * 20), "-q",
               "-X", "auto.offset.reset=earliest", TOPIC])
    check(len(out.split()) == PARTS * 20, f"group consumer read {len(out.split())} messages")
    py = f"""
from kafka import KafkaConsumer, KafkaProducer
p = KafkaProducer(bootstrap_servers="{b}")
for i in range(10):
    p.send("{TOPIC}", key=b"py%d" % i, value=b"v%d" % i)
p.flush(); p.close()
c = KafkaConsumer("{TOPIC}", bootstrap_servers="{b}", group_id="wire-py",
                  auto_offset_reset="earliest", consumer_timeout_ms=8000)
n = 0
for _ in c:  # until all are read (not 8 s idle after them), or 8 s idle
    n += 1
    if n == {PARTS * 20 + 10}:
        break
c.close()
assert n >= {PARTS * 20 + 10}, n
"""
    run(["/usr/bin/python3", "-c", py])
    if modern():
        leader_move_traffic(c)


def leader_move_traffic(c):
    """2.12 peer: partition 0's leader moves from broker 1 to broker 2 while a
    producer and an assigned consumer use it through kwire. Their next
    Produce v10 and Fetch v16 to broker 1 are answered NOT_LEADER_OR_FOLLOWER
    with the new leader in NodeEndpoints."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    p = Producer({"bootstrap.servers": c.bootstrap, "linger.ms": 2, "acks": "all"})
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "wire-move",
                     "fetch.wait.max.ms": 100, "enable.auto.commit": False})
    cons.assign([TopicPartition(TOPIC, 0, 0)])

    def produce(vals):
        for v in vals:
            p.produce(TOPIC, v.encode(), partition=0)
        check(p.flush(30) == 0, "leader move: produce not delivered")

    def consume(vals):
        want, end = set(vals), time.monotonic() + 30
        while want and time.monotonic() < end:
            m = cons.poll(0.2)
            if m is not None and not m.error():
                want.discard(m.value().decode())
        check(not want, f"leader move: {len(want)} records not consumed")

    before = [f"before-{i}" for i in range(20)]
    produce(before)
    consume(before)
    c.command(f"leader {TOPIC} 0 2")
    after = [f"after-{i}" for i in range(20)]
    produce(after)
    consume(after)
    cons.close()
    md = p.list_topics(TOPIC, timeout=10)
    check(md.topics[TOPIC].partitions[0].leader == 2, "producer did not learn the new leader")


def walk_addresses(node, found):
    """Every object with a Host and a Port, anywhere in a decoded body."""
    if isinstance(node, dict):
        if "Host" in node and "Port" in node:
            found.append((node["Host"], node["Port"]))
        for v in node.values():
            walk_addresses(v, found)
    elif isinstance(node, list):
        for v in node:
            walk_addresses(v, found)


def mock_apiversions_error(line):
    # librdkafka 2.0.2's mock answers ApiVersions v3 with a body in a format
    # of its own (docs/decoder.md, "Known limits"); nothing else may fail.
    return line["api"] == "ApiVersions" and line["version"] >= 3


def check_decoded(c, pcap, kwire_ports):
    args = [c.kwire, "decode", "--format", "json", "--no-detect", "--no-progress"]
    for p in sorted(kwire_ports):
        args += ["--port", str(p)]
    lines = [json.loads(x) for x in run(args + [pcap]).splitlines() if x.strip()]
    responses = [x for x in lines if x["direction"] == "response"]
    check(len(responses) > 50, f"only {len(responses)} responses captured")
    # A response whose request the capture missed cannot be decoded, so it
    # could not be checked: that must not pass silently.
    unpaired = [x for x in responses if x.get("api") is None or x.get("version") is None]
    check(not unpaired, f"{len(unpaired)} responses without their request, e.g. "
          f"{json.dumps(unpaired[0])[:300] if unpaired else ''}")
    apis = {x["api"] for x in responses}
    for want in ("Metadata", "FindCoordinator", "Produce", "Fetch", "JoinGroup"):
        check(want in apis, f"no {want} response captured (saw {sorted(apis)})")
    real = c.real_ports()
    nfound = 0
    for x in responses:
        body = x.get("body")
        check(isinstance(body, dict), f"response without a decoded body: {json.dumps(x)[:400]}")
        if "error" in body:
            check(mock_apiversions_error(x), f"response did not decode: {json.dumps(x)[:400]}")
            continue
        found = []
        walk_addresses(body, found)
        for host, port in found:
            check(port not in real, f"{x['api']} v{x['version']} names real broker port {port}")
            check(host == "127.0.0.1" and port in kwire_ports,
                  f"{x['api']} v{x['version']} names {host}:{port}, not a kwire listener")
        nfound += len(found)
    check(nfound > 0, "no broker address in any response: the check checked nothing")
    if modern():
        # The 2.12 peer's versions crossed, and KIP-951 leader endpoints
        # were among the addresses checked above.
        seen = {(x["api"], x["version"]) for x in responses}
        for want in (("Metadata", 12), ("Produce", 10), ("Fetch", 16)):
            check(want in seen, f"no {want[0]} v{want[1]} response on the 2.12 peer")
        for api in ("Produce", "Fetch"):
            ne = [x for x in responses if x["api"] == api and x["body"].get("NodeEndpoints")]
            check(ne, f"no {api} response with NodeEndpoints: the leader move was not seen")
    print(f"decoded: {len(responses)} responses, {nfound} broker addresses, all kwire's")


def check_raw(c, pcap, kwire_ports):
    flt = " or ".join(f"tcp.srcport == {p}" for p in sorted(kwire_ports))
    out = run([TSHARK, "-r", pcap, "-Y", f"({flt}) and tcp.len > 0", "-T", "fields",
               "-e", "tcp.stream", "-e", "tcp.payload"])
    streams = {}
    for line in out.splitlines():
        sid, _, hexdata = line.partition("\t")
        streams.setdefault(sid, bytearray()).extend(bytes.fromhex(hexdata.replace(":", "")))
    check(streams, "no server-to-client payload captured")
    total = sum(len(s) for s in streams.values())
    # "127.0.0.1" as STRING (INT16 length) and as COMPACT_STRING (varint N+1).
    hosts = (b"\x00\x09127.0.0.1", b"\x0a127.0.0.1")
    for port in c.real_ports():
        for host in hosts:
            needle = host + struct.pack(">i", port)
            for sid, data in streams.items():
                check(needle not in data, f"stream {sid}: real broker 127.0.0.1:{port} on the wire")
    # The same pattern with a kwire port must be there, or the scan is blind.
    check(any(h + struct.pack(">i", p) in d for h in hosts for p in kwire_ports
              for d in streams.values()),
          "raw scan found no kwire broker address either: pattern wrong")
    print(f"raw: {len(streams)} streams, {total} bytes from kwire to clients, no real address")


def main():
    if os.geteuid() != 0:
        skip("dumpcap on lo needs root (needs: root)")
    if not (KCAT and DUMPCAP and TSHARK):
        skip("kcat, dumpcap or tshark missing (needs: kcat, tshark, tools/install-deps.sh)")
    tmp = tempfile.mkdtemp(prefix="kwire-wire-")
    pcap = os.path.join(tmp, "client-side.pcapng")
    try:
        with Cluster(topics=((TOPIC, PARTS),)) as c:
            cap = capture_listeners(c, pcap)
            try:
                client_traffic(c)
            finally:
                time.sleep(0.5)
                stop_capture(cap)
            kwire_ports = set(c.proxy_ports().values())
            kwire_ports.add(int(c.bootstrap.rsplit(":", 1)[1]))
            check(len(kwire_ports) == 4, f"kwire listeners: {kwire_ports}")
            check_decoded(c, pcap, kwire_ports)
            check_raw(c, pcap, kwire_ports)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
