"""sarama through kwire in front of a 3-broker mock cluster.

sarama 1.22.1 (Debian's golang-github-shopify-sarama-dev) is a Go client
that shares no code with librdkafka. tools/clients/sarama/, built by
tools/install-clients.sh into ~/.cache/kwire/bin/kwire-sarama-client,
produces 20 keyed records with three headers per codec (none, gzip, snappy,
lz4, zstd), each codec to its own partition in one batch, then reads
everything back in a consumer group (details and checks: client_run.py, on
proxy_harness.Cluster; it runs on both mock-cluster peers). sarama does not
negotiate versions: Config.Version fixes them. The program asks the cluster
for its ApiVersions (v0) and configures sarama as Kafka 2.1.0 when Metadata
v5 is offered, else as 0.11.0.0, the lowest with record headers. Against
librdkafka 2.0.2's mock (Metadata up to v2) that gives Metadata v1, Produce
v3, Fetch v4, ListOffsets v1, FindCoordinator v0, JoinGroup v1, SyncGroup
v0, Heartbeat v0, OffsetFetch v1, OffsetCommit v1, LeaveGroup v0; against
librdkafka 2.12.0's mock the same with Metadata v5. sarama 1.22 sends zstd
batches in Produce v3 (Kafka asks for v7 and a real broker would refuse
them; the mock clusters store them).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import client_run  # noqa: E402

BIN = os.environ.get("KWIRE_SARAMA_CLIENT",
                     os.path.join(client_run.CACHE, "bin", "kwire-sarama-client"))


def main():
    if not os.access(BIN, os.X_OK):
        client_run.skip(f"{BIN} not built (needs: sarama client, tools/install-clients.sh)")
    client_run.run("sarama", lambda b, exp: [BIN, "-topic", "srm", "-n", "20",
                                             "-group", "srm-grp", b, exp], topic="srm")
    print("ok")


if __name__ == "__main__":
    main()
