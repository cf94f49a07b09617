"""kafkajs through kwire in front of a 3-broker mock cluster.

kafkajs 2.2.4 is a pure-JavaScript client that shares no code with
librdkafka (installed by tools/install-clients.sh into
~/.cache/kwire/node-clients, with kafkajs-snappy, kafkajs-lz4 and
zstd-codec). tools/clients/kafkajs-client.js produces 20 keyed records with
three headers per codec (none, gzip, snappy, lz4, zstd), each codec to its
own partition in one batch, then reads everything back in a consumer group
(details and checks: client_run.py, on proxy_harness.Cluster; it runs on
both mock-cluster peers).

kafkajs picks each API's version from the broker's ApiVersions answer (it
sends ApiVersions v2 first). Against librdkafka 2.0.2's mock it uses
ApiVersions v2, Metadata v2, Produce v7, Fetch v11, ListOffsets v3,
FindCoordinator v2, JoinGroup v5, SyncGroup v3, Heartbeat v3, OffsetFetch
v4, OffsetCommit v5 and LeaveGroup v1; against librdkafka 2.12.0's mock the
same but Metadata v6 and LeaveGroup v3 (kafkajs 2.2.4's highest). The 2.12
mock answers LeaveGroup v3 without its Members array, which kafkajs logs as
a parse error and ignores (kwire forwards it and reports it as truncated).
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(__file__))
import client_run  # noqa: E402

NODE = shutil.which("node")
MODULES = os.environ.get("KWIRE_NODE_CLIENTS", os.path.join(client_run.CACHE, "node-clients"))
SCRIPT = os.path.join(os.environ.get("KWIRE_SRC", "."), "tools", "clients", "kafkajs-client.js")


def main():
    if not NODE or not os.path.isdir(os.path.join(MODULES, "node_modules", "kafkajs")):
        client_run.skip("kafkajs not installed (needs: kafkajs, tools/install-clients.sh)")
    os.environ["KWIRE_NODE_CLIENTS"] = MODULES  # where kafkajs-client.js finds its modules
    client_run.run("kafkajs", lambda b, exp: [NODE, SCRIPT, "--topic", "kjs", "--n", "20",
                                              "--group", "kjs-grp", b, exp], topic="kjs")
    print("ok")


if __name__ == "__main__":
    main()
