#!/usr/bin/python3
"""confluent-kafka scenario for tools/capture-clients.sh.

usage: confluent.py BOOTSTRAP EXPECTED_FILE

Needs topics cf-idem (2 partitions) and cf-txn (2 partitions).
  1. an idempotent producer (enable.idempotence, snappy) to cf-idem;
  2. a transactional producer (transactional.id cf-txn-1, gzip): one
     transaction committed, then one aborted, both to cf-txn;
  3. a read_committed consumer in group cf-grp over both topics, from the
     earliest offset.
Expected lines (docs/test-data.md) come from the delivery reports and the
consumed messages. Records of the aborted transaction are flagged
"txn,aborted". A real broker hides them from a read_committed consumer;
librdkafka 2.0.2's mock cluster does not (it keeps no aborted-transaction
index), so the consumer gets them and they are recorded, flagged "aborted".
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import expectlib  # noqa: E402

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer  # noqa: E402

QUIET = {"log_level": 3}


def produce_all(prod, exp, codec, flags, recs):
    """Produces recs [(topic, part, key, value, headers)], waits for every
    delivery report and writes one produce line per delivered record."""
    reports = []

    # librdkafka's delivery reports do not carry the headers back, so each
    # report is paired with the headers given to that produce() call.
    def make_dr(headers):
        return lambda err, msg: reports.append((err, msg, headers))

    for topic, part, key, value, headers in recs:
        prod.produce(topic, value=value, key=key, partition=part, headers=headers,
                     on_delivery=make_dr(headers))
        prod.poll(0)
    left = prod.flush(30)
    if left or len(reports) != len(recs):
        sys.exit("confluent: %d undelivered, %d reports for %d records"
                 % (left, len(reports), len(recs)))
    for err, msg, headers in reports:
        if err is not None:
            sys.exit("confluent: delivery failed: %s" % err)
        exp.write(expectlib.line("produce", msg.topic(), msg.partition(), msg.offset(), codec,
                                 flags, msg.key(), msg.value(), headers))


def records(topic, tag, n, nparts):
    out = []
    for i in range(n):
        key = ("%s-%d" % (tag, i)).encode()
        value = (("confluent %s record %d; " % (tag, i)) * 5).encode()
        headers = [("tag", tag.encode()), ("i", str(i).encode())]
        if i == 0:
            headers.append(("nullval", None))
        out.append((topic, i % nparts, key, value, headers))
    return out


def main(bootstrap, expfile):
    exp = open(expfile, "w")
    want = 0

    prod = Producer(dict(QUIET, **{"bootstrap.servers": bootstrap, "client.id": "cf-idem",
                                   "enable.idempotence": True, "compression.codec": "snappy",
                                   "linger.ms": 20}))
    recs = records("cf-idem", "idem", 4, 2)
    produce_all(prod, exp, "snappy", ["idempotent"], recs)
    want += len(recs)
    prod.flush(10)
    del prod

    prod = Producer(dict(QUIET, **{"bootstrap.servers": bootstrap, "client.id": "cf-txn",
                                   "transactional.id": "cf-txn-1",
                                   "compression.codec": "gzip", "linger.ms": 20}))
    prod.init_transactions(30)
    prod.begin_transaction()
    recs = records("cf-txn", "commit", 3, 2)
    produce_all(prod, exp, "gzip", ["idempotent", "txn"], recs)
    prod.commit_transaction(30)
    want += len(recs)
    prod.begin_transaction()
    aborted = records("cf-txn", "abort", 2, 2)
    produce_all(prod, exp, "gzip", ["idempotent", "txn", "aborted"], aborted)
    aborted_keys = set(r[2] for r in aborted)
    prod.abort_transaction(30)
    del prod

    cons = Consumer(dict(QUIET, **{"bootstrap.servers": bootstrap, "client.id": "cf-consumer",
                                   "group.id": "cf-grp", "auto.offset.reset": "earliest",
                                   "isolation.level": "read_committed",
                                   "enable.partition.eof": True}))
    cons.subscribe(["cf-idem", "cf-txn"])
    got = 0
    deadline = time.time() + 60
    # Keep polling a little after the last wanted record so that an
    # aborted record, if the client wrongly handed one over, is recorded.
    quiet_until = None
    while time.time() < deadline:
        msg = cons.poll(0.5)
        if msg is None:
            if quiet_until and time.time() > quiet_until:
                break
            continue
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                sys.exit("confluent: consume error: %s" % msg.error())
            continue
        # librdkafka 2.0.2's mock cluster keeps no aborted-transaction
        # index, so even a read_committed consumer gets the aborted
        # records; they are recorded as received, flagged "aborted".
        flags = ["aborted"] if msg.key() in aborted_keys else []
        exp.write(expectlib.line("fetch", msg.topic(), msg.partition(), msg.offset(), "*", flags,
                                 msg.key(), msg.value(), msg.headers()))
        if not flags:
            got += 1
        if got >= want and quiet_until is None:
            quiet_until = time.time() + 2
    try:
        cons.commit(asynchronous=False)
    except KafkaException as e:
        # Auto-commit may already have stored everything.
        if e.args[0].code() != KafkaError._NO_OFFSET:
            raise
    cons.close()
    exp.close()
    if got != want:
        sys.exit("confluent: consumed %d records, wanted %d" % (got, want))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
