#!/usr/bin/python3
"""kafka-python scenario for tools/capture-clients.sh.

usage: kafka_python.py BOOTSTRAP EXPECTED_FILE

Needs topic kp-codecs (5 partitions). One KafkaProducer per codec (none,
gzip, snappy, lz4, zstd), each writing keyed records with headers to its own
partition; then a KafkaConsumer in group kp-grp reads everything from the
earliest offset. Expected lines (docs/test-data.md) come from the producer
futures (RecordMetadata: partition, offset) and the consumed ConsumerRecords.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import expectlib  # noqa: E402

from kafka import KafkaConsumer, KafkaProducer  # noqa: E402

TOPIC = "kp-codecs"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 3


def main(bootstrap, expfile):
    exp = open(expfile, "w")
    want = 0
    for part, codec in enumerate(CODECS):
        prod = KafkaProducer(bootstrap_servers=bootstrap, client_id="kp-" + codec,
                             compression_type=None if codec == "none" else codec,
                             linger_ms=50, acks="all", retries=0)
        futs = []
        for i in range(PER_CODEC):
            key = ("kp-%s-%d" % (codec, i)).encode()
            value = (("kafka-python %s record %d " % (codec, i)) * 6).encode()
            headers = [("codec", codec.encode()), ("seq", str(i).encode()),
                       ("empty", b"")]
            fut = prod.send(TOPIC, value=value, key=key, headers=headers, partition=part)
            futs.append((fut, key, value, headers))
        prod.flush(timeout=30)
        for fut, key, value, headers in futs:
            md = fut.get(timeout=30)
            exp.write(expectlib.line("produce", md.topic, md.partition, md.offset, codec, [], key,
                                     value, headers))
            want += 1
        prod.close(timeout=10)

    cons = KafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id="kp-grp",
                         client_id="kp-consumer", auto_offset_reset="earliest",
                         enable_auto_commit=True, consumer_timeout_ms=3000)
    got = 0
    deadline = time.time() + 60
    while got < want and time.time() < deadline:
        for msg in cons:
            exp.write(expectlib.line("fetch", msg.topic, msg.partition, msg.offset, "*", [],
                                     msg.key, msg.value, msg.headers))
            got += 1
            if got >= want:
                break
    cons.commit()
    cons.close()
    exp.close()
    if got != want:
        sys.exit("kafka_python: consumed %d of %d records" % (got, want))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
