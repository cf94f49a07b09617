#!/usr/bin/python3
"""confluent-kafka on librdkafka 2.12 scenario for tools/capture-clients.sh
(the "modern-confluent" capture: Produce v10, Fetch v16, KIP-848).

usage: modern_confluent.py BOOTSTRAP EXPECTED_FILE

Runs under LD_LIBRARY_PATH pointing at librdkafka 2.12.0 (docs/peers.md).
Needs topics cf-idem (2 partitions), cf-txn (2) and cf-848 (2).
  1-3. everything confluent.py does (idempotent producer, a committed and
       an aborted transaction, a read_committed consumer in the classic
       group cf-grp);
  4.   a producer (zstd, with headers) to cf-848, and a consumer in group
       cf-848-grp with group.protocol=consumer (KIP-848: the group is run by
       ConsumerGroupHeartbeat, no JoinGroup/SyncGroup).
Expected lines come from the clients' reports, as in confluent.py.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import confluent  # noqa: E402
import expectlib  # noqa: E402

from confluent_kafka import Consumer, KafkaError, Producer, libversion  # noqa: E402


def kip848(bootstrap, exp):
    prod = Producer(dict(confluent.QUIET, **{"bootstrap.servers": bootstrap,
                                             "client.id": "cf-848-producer",
                                             "compression.codec": "zstd", "linger.ms": 20}))
    recs = confluent.records("cf-848", "kip848", 4, 2)
    confluent.produce_all(prod, exp, "zstd", [], recs)
    del prod

    cons = Consumer(dict(confluent.QUIET, **{"bootstrap.servers": bootstrap,
                                             "client.id": "cf-848-consumer",
                                             "group.id": "cf-848-grp",
                                             "group.protocol": "consumer",
                                             "auto.offset.reset": "earliest"}))
    cons.subscribe(["cf-848"])
    got = 0
    deadline = time.time() + 60
    while got < len(recs) and time.time() < deadline:
        msg = cons.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                sys.exit("modern_confluent: consume error: %s" % msg.error())
            continue
        exp.write(expectlib.line("fetch", msg.topic(), msg.partition(), msg.offset(), "*", [],
                                 msg.key(), msg.value(), msg.headers()))
        got += 1
    cons.close()
    if got != len(recs):
        sys.exit("modern_confluent: KIP-848 consumer got %d of %d" % (got, len(recs)))


def main(bootstrap, expfile):
    if not libversion()[0].startswith("2.12."):
        sys.exit("modern_confluent: confluent-kafka runs on librdkafka %s, not 2.12 "
                 "(LD_LIBRARY_PATH)" % libversion()[0])
    confluent.main(bootstrap, expfile)
    with open(expfile, "a") as exp:
        kip848(bootstrap, exp)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
