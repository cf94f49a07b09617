#!/usr/bin/python3
"""big-value scenario for tools/capture-clients.sh.

usage: big.py BOOTSTRAP EXPECTED_FILE

Needs topic big (3 partitions). capture-clients.sh runs it, the mock
cluster and dumpcap in a network namespace whose loopback has a 1500-byte
MTU and gso_max_segs 1, so every ~1 MB Produce request and Fetch response
crosses the capture as hundreds of 1448-byte TCP segments.

Three records of about 1 MB, one per partition, each sent by itself (flush
after each) so that each is one Produce request:
  big-0  1,000,000 bytes of pseudo-random bytes            codec none
  big-1    917,504 bytes of pseudo-random bytes            codec none
  big-2    983,040 pseudo-random bytes from a 64-symbol alphabet, codec zstd
         (compresses to about 3/4: entropy coding on the wire, not raw
         blocks, and still several hundred segments)
The values are fixed (seeded PRNG). A consumer (no group: assign) reads
all three back from offset 0. Both clients' size limits are raised above
the librdkafka defaults (message.max.bytes 1000000, fetch sizes 1 MiB).
"""

import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import expectlib  # noqa: E402

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402

TOPIC = "big"
ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# (partition, key, size, codec, alphabet or None for all 256 byte values)
RECORDS = [
    (0, b"big-0", 1000000, "none", None),
    (1, b"big-1", 917504, "none", None),
    (2, b"big-2", 983040, "zstd", ALPHABET),
]
COMMON = {"log_level": 3}
LIMITS_PROD = {"message.max.bytes": 2000000, "batch.size": 2000000}
LIMITS_CONS = {"max.partition.fetch.bytes": 2 * 1024 * 1024, "fetch.max.bytes": 4 * 1024 * 1024,
               "receive.message.max.bytes": 8 * 1024 * 1024}


def make_value(rnd, size, alphabet):
    if alphabet is None:
        return rnd.getrandbits(8 * size).to_bytes(size, "little")
    return bytes(alphabet[rnd.getrandbits(6)] for _ in range(size))


def main(bootstrap, expfile):
    rnd = random.Random(20261124)
    exp = open(expfile, "w")
    sent = {}

    for part, key, size, codec, alphabet in RECORDS:
        value = make_value(rnd, size, alphabet)
        headers = [("size", str(size).encode())]
        reports = []
        prod = Producer(dict(COMMON, **LIMITS_PROD,
                             **{"bootstrap.servers": bootstrap, "client.id": "big-prod-" + codec,
                                "compression.codec": codec}))
        prod.produce(TOPIC, value=value, key=key, partition=part, headers=headers,
                     on_delivery=lambda err, msg: reports.append((err, msg)))
        if prod.flush(60) or len(reports) != 1 or reports[0][0] is not None:
            sys.exit("big: delivery of %s failed: %r" % (key, reports))
        msg = reports[0][1]
        exp.write(expectlib.line("produce", msg.topic(), msg.partition(), msg.offset(), codec,
                                 [], msg.key(), msg.value(), headers))
        sent[(msg.partition(), msg.offset())] = value
        del prod

    cons = Consumer(dict(COMMON, **LIMITS_CONS,
                         **{"bootstrap.servers": bootstrap, "client.id": "big-cons",
                            "group.id": "big-unused", "enable.auto.commit": False,
                            "enable.partition.eof": True}))
    cons.assign([TopicPartition(TOPIC, p, 0) for p, _, _, _, _ in RECORDS])
    deadline = time.time() + 60
    got = {}
    while len(got) < len(RECORDS) and time.time() < deadline:
        m = cons.poll(0.5)
        if m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF):
            continue
        if m.error():
            sys.exit("big: consume error: %s" % m.error())
        if (m.partition(), m.offset()) in got:
            continue
        got[(m.partition(), m.offset())] = m
    cons.close()
    if len(got) != len(RECORDS):
        sys.exit("big: read back %d of %d records" % (len(got), len(RECORDS)))
    for where, m in sorted(got.items()):
        if sent.get(where) != m.value():
            sys.exit("big: record at partition %d offset %d read back differently" % where)
        exp.write(expectlib.line("fetch", m.topic(), m.partition(), m.offset(), "*", [],
                                 m.key(), m.value(), m.headers()))
    exp.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
