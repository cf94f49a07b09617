#!/usr/bin/env bash
# bench_emfile.sh: kwire proxy out of file descriptors. Runs `kwire proxy`
# with `ulimit -n LIMIT` (soft and hard, so that kwire cannot raise it) in
# front of kwire-mockcluster, opens CONNS client connections and keeps them
# open for SECONDS, then prints the proxy's stderr lines and CPU time over
# that window, and whether a new connection is served once the clients
# have gone. It prints figures and asserts nothing.
#
#   tests/bench/bench_emfile.sh [BUILD_DIR] [LIMIT] [CONNS] [SECONDS]
#   tests/bench/bench_emfile.sh build 1024 2000 30
set -euo pipefail

BUILD=${1:-build}
LIMIT=${2:-1024}
CONNS=${3:-2000}
SECS=${4:-30}
BIN=$BUILD/kwire
MC=$BUILD/kwire-mockcluster
tmp=$(mktemp -d)
PXPID= MCPID=
cleanup() {
	[ -n "$PXPID" ] && kill -KILL "$PXPID" 2>/dev/null || true
	[ -n "$MCPID" ] && kill "$MCPID" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

coproc MCP { exec "$MC" --brokers 1 --topic t1:1; }
MCPID=$MCP_PID
BOOT=
while read -r -u "${MCP[0]}" line; do
	case "$line" in
	BOOTSTRAP*) BOOT=${line#BOOTSTRAP } ;;
	READY) break ;;
	esac
done

(ulimit -Sn "$LIMIT" && ulimit -Hn "$LIMIT" &&
	exec "$BIN" proxy --upstream "$BOOT" --listen 127.0.0.1:0 --no-log --workers 1 \
		--admin 127.0.0.1:0) >"$tmp/out" 2>"$tmp/err" &
PXPID=$!
for _ in $(seq 100); do grep -q '^ADMIN ' "$tmp/out" && break; sleep 0.1; done
PORT=$(sed -n 's/^LISTEN .*:\([0-9]*\)$/\1/p' "$tmp/out")
ADMIN=$(sed -n 's/^ADMIN //p' "$tmp/out")

LIMIT=$LIMIT /usr/bin/python3 - "$PXPID" "$PORT" "$CONNS" "$SECS" "$tmp/err" "$ADMIN" <<'PY'
import os, re, socket, struct, sys, time, urllib.request
pid, port, conns, secs, errf, admin = sys.argv[1:]
port, conns, secs = int(port), int(conns), float(secs)
tick = os.sysconf("SC_CLK_TCK")

def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick

def lines():
    with open(errf, "rb") as f:
        n = a = 0
        for l in f:
            n += 1
            a += b"accept" in l
        return n, a

socks = []
for _ in range(conns):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    socks.append(s)
time.sleep(1)
l0, c0, t0 = lines(), cpu(), time.monotonic()
time.sleep(secs)
l1, c1, t1 = lines(), cpu(), time.monotonic()
dt = t1 - t0
print(f"{conns} connections at ulimit -n {os.environ.get('LIMIT', '?')}, {dt:.1f} s:")
print(f"  stderr lines: {l1[0] - l0[0]} ({(l1[0] - l0[0]) / dt:.0f}/s), "
      f"of which about accept(): {l1[1] - l0[1]}")
print(f"  CPU: {c1 - c0:.2f} s ({100 * (c1 - c0) / dt:.1f}% of a core)")
for s in socks:
    s.close()
# ApiVersions v0 through the proxy: how soon is a new connection served?
t2 = time.monotonic()
served = None
while served is None and time.monotonic() - t2 < 120:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        hdr = struct.pack(">hhih", 18, 0, 1, 5) + b"bench"
        s.sendall(struct.pack(">i", len(hdr)) + hdr)
        served = struct.unpack(">i", s.recv(4))[0]
    except (OSError, struct.error):
        time.sleep(0.5)
if served:
    print(f"  after the clients left: a new connection was served within "
          f"{time.monotonic() - t2:.1f} s ({served}-byte ApiVersions response)")
else:
    print("  after the clients left: no new connection served within 120 s")
try:
    m = urllib.request.urlopen(f"http://{admin}/metrics", timeout=5).read().decode()
    for l in m.splitlines():
        if l.startswith(("kwire_accept_", "kwire_connections_")):
            print("  " + l)
except OSError as e:
    print(f"  /metrics: {e}")
PY
echo "first stderr lines:"
head -n 5 "$tmp/err" | cut -c1-160
