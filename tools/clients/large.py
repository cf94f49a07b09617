#!/usr/bin/python3
"""large-value scenario for tools/capture-clients.sh.

usage: large.py BOOTSTRAP EXPECTED_FILE

Needs topic large (1 partition). A confluent-kafka producer sends one
uncompressed record whose 64 KiB value is incompressible (a fixed
pseudo-random sequence), then a consumer (no group: assign) reads it back.
Both clients ask for 4 KiB socket buffers so that the Produce request and
the Fetch response are cut into several TCP segments on the loopback
interface, whose 64 KiB MTU would otherwise carry each in one (the kernel
still sends 8-32 KiB segments: expect a handful, not dozens).
"""

import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import expectlib  # noqa: E402

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402

SIZE = 64 * 1024
SMALL = {"socket.send.buffer.bytes": 4096, "socket.receive.buffer.bytes": 4096,
         "log_level": 3}


def main(bootstrap, expfile):
    rnd = random.Random(20261124)
    value = bytes(rnd.getrandbits(8) for _ in range(SIZE))
    key = b"large-0"
    headers = [("size", str(SIZE).encode())]
    exp = open(expfile, "w")

    reports = []
    prod = Producer(dict(SMALL, **{"bootstrap.servers": bootstrap, "client.id": "large-prod",
                                   "compression.codec": "none"}))
    prod.produce("large", value=value, key=key, partition=0, headers=headers,
                 on_delivery=lambda err, msg: reports.append((err, msg)))
    if prod.flush(30) or len(reports) != 1 or reports[0][0] is not None:
        sys.exit("large: delivery failed: %r" % (reports,))
    msg = reports[0][1]
    exp.write(expectlib.line("produce", msg.topic(), msg.partition(), msg.offset(), "none", [],
                             msg.key(), msg.value(), headers))
    del prod

    cons = Consumer(dict(SMALL, **{"bootstrap.servers": bootstrap, "client.id": "large-cons",
                                   "group.id": "large-unused", "enable.auto.commit": False,
                                   "enable.partition.eof": True}))
    cons.assign([TopicPartition("large", 0, 0)])
    deadline = time.time() + 30
    got = None
    while got is None and time.time() < deadline:
        m = cons.poll(0.5)
        if m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF):
            continue
        if m.error():
            sys.exit("large: consume error: %s" % m.error())
        got = m
    cons.close()
    if got is None or got.value() != value:
        sys.exit("large: did not read the record back")
    exp.write(expectlib.line("fetch", got.topic(), got.partition(), got.offset(), "*", [],
                             got.key(), got.value(), got.headers()))
    exp.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
