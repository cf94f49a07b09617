"""`kwire proxy --upstream mock` (issue 7, item 6): the built-in mock
cluster's flags and what kwire says about it.

- --mock-brokers N and --mock-topic NAME:PARTITIONS (repeatable) shape the
  cluster: kcat, through kwire, sees N brokers (at kwire's ports) and
  exactly the topics asked for, with their partition counts.
- At start kwire says what the mock speaks; the list must be what the mock
  answers to an ApiVersions request sent here directly (no hard-coded
  versions: the linked librdkafka decides), and the APIs it lacks must be
  absent from that answer.
- A topic the mock does not know is created with the partition count the
  help and the start message give.
- Bad values and the flags without --upstream mock are clear errors.
- --help documents the flags and the mock's limits.
"""
import os
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time

SKIP = 77
API_NAMES = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit",
             9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat",
             13: "LeaveGroup", 14: "SyncGroup", 15: "DescribeGroups", 16: "ListGroups",
             17: "SaslHandshake", 18: "ApiVersions", 19: "CreateTopics", 20: "DeleteTopics",
             22: "InitProducerId", 24: "AddPartitionsToTxn", 25: "AddOffsetsToTxn",
             26: "EndTxn", 28: "TxnOffsetCommit", 32: "DescribeConfigs",
             36: "SaslAuthenticate", 68: "ConsumerGroupHeartbeat"}


def env(name):
    v = os.environ.get(name)
    if not v:
        print(f"SKIP: {name} not set, run through ctest (needs: ctest's environment)",
              file=sys.stderr)
        sys.exit(SKIP)
    return v


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def readline(proc, deadline, what):
    buf = b""
    fd = proc.stdout.fileno()
    while True:
        left = deadline - time.monotonic()
        check(left > 0, f"timed out waiting for {what}")
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        c = os.read(fd, 1)
        check(c, f"{what}: process exited (rc={proc.poll()})")
        if c == b"\n":
            return buf.decode()
        buf += c


def api_versions(hostport):
    """ApiVersions v0 straight to a broker: {key: (min, max)}."""
    host, port = hostport.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    hdr = struct.pack(">hhih", 18, 0, 1, 4) + b"test"
    s.sendall(struct.pack(">i", len(hdr)) + hdr)
    size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
    body = b""
    while len(body) < size:
        body += s.recv(size - len(body))
    s.close()
    _corr, err, n = struct.unpack(">ihi", body[:10])
    check(err == 0, f"ApiVersions error {err}")
    keys = {}
    for i in range(n):
        k, lo, hi = struct.unpack(">hhh", body[10 + 6 * i:16 + 6 * i])
        keys[k] = (lo, hi)
    return keys


def kcat_meta(port, topic=None):
    args = ["kcat", "-b", f"127.0.0.1:{port}", "-L", "-m", "10"]
    if topic:
        args += ["-t", topic]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, f"kcat -L: {r.stderr}")
    return r.stdout


def main():
    kwire = env("KWIRE_BIN")
    if subprocess.run(["which", "kcat"], capture_output=True).returncode:
        print("SKIP: kcat not installed (needs: kcat, tools/install-deps.sh)")
        sys.exit(SKIP)
    tmp = tempfile.mkdtemp(prefix="kwire-mock-")
    errpath = os.path.join(tmp, "err")

    # --help: the flags and the limits.
    h = subprocess.run([kwire, "proxy", "--help"], capture_output=True, text=True).stdout
    for want in ("--mock-brokers N", "--mock-topic NAME:P", "with 4 partitions",
                 "Produce v0-7", "CreateTopics", "no SASL"):
        check(want in h, f"--help does not say '{want}'")

    # Bad values and misuse.
    for args, want in ((["--mock-brokers", "0"], "mock-brokers"),
                       (["--mock-brokers", "33"], "mock-brokers"),
                       (["--mock-topic", "t"], "NAME:PARTITIONS"),
                       (["--mock-topic", "t:0"], "mock-topic"),
                       (["--mock-topic", "bad/name:1"], "topic name"),
                       (["--mock-topic", "a:1", "--mock-topic", "a:2"], "given twice")):
        r = subprocess.run([kwire, "proxy", "--upstream", "mock", "--listen", "127.0.0.1:0"]
                           + args, capture_output=True, text=True, timeout=30)
        check(r.returncode == 2 and want in r.stderr,
              f"{args}: rc {r.returncode}, stderr {r.stderr!r}")
    r = subprocess.run([kwire, "proxy", "--upstream", "127.0.0.1:1", "--mock-brokers", "2",
                        "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and "need --upstream mock" in r.stderr,
          f"--mock-brokers without mock: rc {r.returncode}, {r.stderr!r}")

    px = subprocess.Popen([kwire, "proxy", "--upstream", "mock", "--mock-brokers", "2",
                           "--mock-topic", "orders:3", "--mock-topic", "audit:1",
                           "--listen", "127.0.0.1:0", "--no-log"],
                          stdout=subprocess.PIPE, stderr=open(errpath, "w"))
    try:
        deadline = time.monotonic() + 30
        mock = port = None
        while port is None:
            line = readline(px, deadline, "kwire proxy")
            if line.startswith("MOCK "):
                mock = line.split()[1].split(",")
            elif line.startswith("LISTEN "):
                port = int(line.rsplit(":", 1)[1])
        check(mock and len(mock) == 2, f"MOCK line: {mock}")
        err = open(errpath).read()

        meta = kcat_meta(port)
        check(" 2 brokers:" in meta, f"not 2 brokers:\n{meta}")
        check('topic "orders" with 3 partitions' in meta, f"orders:\n{meta}")
        check('topic "audit" with 1 partitions' in meta, f"audit:\n{meta}")
        check("my-topic" not in meta, f"my-topic created although topics were given:\n{meta}")
        for real in mock:
            check(real.rsplit(":", 1)[1] not in re.findall(r"at [^:]+:(\d+)", meta),
                  f"a real broker port reached kcat:\n{meta}")

        # What kwire says it speaks is what the mock answers.
        keys = api_versions(mock[0])
        m = re.search(r"mock cluster speaks: (.*)", err)
        check(m, f"no 'speaks' line:\n{err}")
        said = dict((n, v) for n, v in re.findall(r"([A-Za-z]+|api \d+) v(\d+-\d+)", m.group(1)))
        for k, (lo, hi) in keys.items():
            name = API_NAMES.get(k)
            if name:
                check(said.get(name) == f"{lo}-{hi}",
                      f"{name}: kwire says {said.get(name)}, the mock answers v{lo}-{hi}")
        check(len(said) == len(keys), f"kwire lists {len(said)} APIs, the mock {len(keys)}")
        m = re.search(r"mock cluster does not answer: (.*)", err)
        lacks = m.group(1).split(", ") if m else []
        by_name = {v: k for k, v in API_NAMES.items()}
        for name in lacks:
            check(by_name.get(name) not in keys, f"kwire says the mock lacks {name}; it has it")
        for k in (19, 15, 17):  # CreateTopics, DescribeGroups, SaslHandshake
            if k not in keys:
                check(API_NAMES[k] in lacks, f"{API_NAMES[k]} missing from the lacks line")
        check(re.search(r"librdkafka \d+\.\d+\.\d+'s mock broker", err),
              f"the library version is not said:\n{err}")

        # An unknown topic is created on first use with the partitions said.
        m = re.search(r"created when a client first names it, with (\d+) partitions", err)
        check(m, f"no auto-create line:\n{err}")
        meta = kcat_meta(port, "fresh-topic")
        for _ in range(20):
            if "fresh-topic" in meta and "Leader not available" not in meta:
                break
            time.sleep(0.5)
            meta = kcat_meta(port, "fresh-topic")
        check(f'topic "fresh-topic" with {m.group(1)} partitions' in meta,
              f"auto-created topic:\n{meta}")
        print(f"ok: mock with 2 brokers, 2 topics; speaks {len(keys)} APIs as said")
    finally:
        px.terminate()
        px.wait(timeout=30)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
