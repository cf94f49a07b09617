"""kafka-python through kwire in front of a 3-broker mock cluster: the
classic tutorial program (a KafkaProducer sending keyed messages, a
KafkaConsumer in a group reading them from the earliest offset) once per
compression codec. Every message comes back, the client's cluster view only
knows kwire's listeners, and the access log counts the records."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from proxy_harness import SKIP, Cluster, check, produced_by_partition  # noqa: E402

try:
    import kafka
    from kafka import KafkaConsumer, KafkaProducer
except ImportError:
    print("SKIP: kafka-python not installed (needs: python3-kafka, tools/install-deps.sh)",
          file=sys.stderr)
    sys.exit(SKIP)

N = 200
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


def codec_available(codec):
    from kafka import codec as kc
    return {None: True, "gzip": kc.has_gzip(), "snappy": kc.has_snappy(), "lz4": kc.has_lz4(),
            "zstd": getattr(kc, "has_zstd", lambda: False)()}[codec]


def check_view(c, cluster, what):
    ports = set(c.proxy_ports().values())
    brokers = cluster.brokers()
    check(len(brokers) == 3, f"{what}: {len(brokers)} brokers")
    for b in brokers:
        check(b.host == "127.0.0.1" and b.port in ports and b.port not in c.real_ports(),
              f"{what}: broker {b.nodeId} at {b.host}:{b.port}, kwire ports {ports}")


def run_codec(c, codec):
    topic = f"kp-{codec or 'none'}"
    c.command(f"topic {topic} 2 3")
    producer = KafkaProducer(bootstrap_servers=c.bootstrap, compression_type=codec,
                             acks="all", linger_ms=5, api_version_auto_timeout_ms=10000)
    futures = [producer.send(topic, key=f"key-{i}".encode(), value=f"message {i}".encode(),
                             partition=i % 2) for i in range(N)]
    producer.flush(30)
    for f in futures:
        f.get(timeout=10)
    check_view(c, producer._metadata, f"producer ({codec})")
    producer.close(10)

    consumer = KafkaConsumer(topic, bootstrap_servers=c.bootstrap, group_id=f"grp-{topic}",
                             auto_offset_reset="earliest", enable_auto_commit=True,
                             consumer_timeout_ms=1000, api_version_auto_timeout_ms=10000)
    got = []
    end = time.monotonic() + 60
    while len(got) < N and time.monotonic() < end:
        for m in consumer:
            got.append((m.partition, m.key.decode(), m.value.decode()))
    check_view(c, consumer._client.cluster, f"consumer ({codec})")
    consumer.close()
    want = sorted((i % 2, f"key-{i}", f"message {i}") for i in range(N))
    check(sorted(got) == want, f"{codec}: consumed {len(got)} of {N}")
    byp = produced_by_partition(c.log_entries(), topic)
    check(byp == {0: N // 2, 1: N // 2}, f"{codec}: access log counts {byp}")


def main():
    with Cluster(topics=(("kp-seed", 1),)) as c:
        for codec in CODECS:
            if not codec_available(codec):
                print(f"{codec}: codec module missing in kafka-python {kafka.__version__}, skipped")
                continue
            t0 = time.monotonic()
            run_codec(c, codec)
            print(f"{codec or 'none'}: ok ({time.monotonic() - t0:.1f} s)", flush=True)
        check(c.px.poll() is None, "kwire exited")
    print("ok")


if __name__ == "__main__":
    main()
