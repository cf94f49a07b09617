"""kafka-python through kwire in front of a 3-broker mock cluster: the
classic tutorial program (a KafkaProducer sending keyed messages, once per
compression codec, then a KafkaConsumer in a group reading every codec's
topic from the earliest offset). Every message comes back, the client's cluster view only
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


def topic_of(codec):
    return f"kp-{codec or 'none'}"


def produce_codec(c, codec):
    topic = topic_of(codec)
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


def consume_all(c, codecs):
    """One consumer group reads every codec's topic: the mock cluster holds
    each new group's first join for 3 s (its group.initial.rebalance.delay),
    a group per codec paid that five times. Each topic's records are still
    checked on their own."""
    topics = [topic_of(codec) for codec in codecs]
    consumer = KafkaConsumer(*topics, bootstrap_servers=c.bootstrap, group_id="grp-kp",
                             auto_offset_reset="earliest", enable_auto_commit=True,
                             consumer_timeout_ms=1000, api_version_auto_timeout_ms=10000)
    got = {t: [] for t in topics}
    end = time.monotonic() + 60
    while sum(map(len, got.values())) < N * len(topics) and time.monotonic() < end:
        for m in consumer:
            got[m.topic].append((m.partition, m.key.decode(), m.value.decode()))
    check_view(c, consumer._client.cluster, "consumer")
    consumer.close()
    want = sorted((i % 2, f"key-{i}", f"message {i}") for i in range(N))
    entries = c.log_entries()
    for codec, topic in zip(codecs, topics):
        check(sorted(got[topic]) == want, f"{codec}: consumed {len(got[topic])} of {N}")
        byp = produced_by_partition(entries, topic)
        check(byp == {0: N // 2, 1: N // 2}, f"{codec}: access log counts {byp}")
        print(f"{codec or 'none'}: all {N} records consumed", flush=True)


def main():
    with Cluster(topics=(("kp-seed", 1),)) as c:
        codecs = []
        for codec in CODECS:
            if not codec_available(codec):
                print(f"{codec}: codec module missing in kafka-python {kafka.__version__}, skipped")
                continue
            t0 = time.monotonic()
            produce_codec(c, codec)
            codecs.append(codec)
            print(f"{codec or 'none'}: produced ({time.monotonic() - t0:.1f} s)", flush=True)
        t0 = time.monotonic()
        consume_all(c, codecs)
        print(f"consumer group: ok ({time.monotonic() - t0:.1f} s)", flush=True)
        check(c.px.poll() is None, "kwire exited")
    print("ok")


if __name__ == "__main__":
    main()
