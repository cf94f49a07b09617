#!/usr/bin/env bash
# test_proxy_cli.sh: `kwire proxy` as a process: YAML file plus flags, the
# documented broker port rule (listen port + 1 + node id), kcat producing
# and consuming through it without ever seeing a real broker address,
# SIGHUP (keeps running) and SIGTERM (drains and exits 0).
set -euo pipefail

BIN=${KWIRE_BIN:?KWIRE_BIN not set}
# The peer's cluster and clients (KWIRE_PEER 2.0.2 or 2.12, docs/peers.md).
MC=${KWIRE_MOCKCLUSTER:-${KWIRE_BUILD:?KWIRE_BUILD not set}/kwire-mockcluster}
command -v kcat >/dev/null || { echo "SKIP: kcat not installed (needs: kcat, tools/install-deps.sh)"; exit 77; }
[ -x "$MC" ] || { echo "no $MC (tools/install-deps.sh builds the 2.12 peer)"; exit 1; }
kcat -V | grep "librdkafka ${KWIRE_PEER:-2.0.2}" >/dev/null ||
	{ echo "kcat does not run on librdkafka ${KWIRE_PEER:-2.0.2}"; exit 1; }

tmp=$(mktemp -d)
PXPID=
cleanup() {
	[ -n "$PXPID" ] && kill "$PXPID" 2>/dev/null || true
	[ -n "${MC_PID:-}" ] && kill "$MC_PID" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; [ -f "$tmp/err" ] && cat "$tmp/err" >&2; exit 1; }

coproc MCP { exec "$MC" --brokers 3 --topic t1:2; }
MC_PID=$MCP_PID
BOOT= ; REAL_PORTS=()
while read -r -u "${MCP[0]}" line; do
	case "$line" in
	BOOTSTRAP*) BOOT=${line#BOOTSTRAP } ;;
	BROKER*) REAL_PORTS+=("${line##*:}") ;;
	READY) break ;;
	esac
done
[ -n "$BOOT" ] || fail "mock cluster did not start"

# A port P with P..P+4 free for the bootstrap listener and brokers 1..3
# (P+2..P+4), below the kernel's ephemeral range so that no outgoing
# connection (the mock cluster's, the proxy's) takes one meanwhile. Another
# process (a test running in parallel) may still take one of them between
# this probe and kwire's bind, the broker ports only being bound when a
# response first names the broker: then the whole start is retried on a
# new range.
pick_port() {
	/usr/bin/python3 - <<'PY'
import random, socket
lo = 32768
try:
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    pass
top = max(min(lo, 61000) - 10, 12000)
for _ in range(500):
    p = random.randint(10000, top)
    socks = []
    try:
        for q in range(p, p + 5):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", q))
        print(p)
        break
    except OSError:
        pass
    finally:
        for s in socks:
            s.close()
PY
}

# Starts the proxy on P and checks the listener and the three broker
# ports. Returns 1 when a port was taken meanwhile (retry); any other
# failure fails the test.
start_proxy() {
	cat >"$tmp/kwire.yaml" <<EOF
listen: "127.0.0.1:$P"
upstream: "192.0.2.1:1"
workers: 4
connect_timeout_ms: 1000
EOF
	# The flags override the file's upstream and workers.
	env -u LD_LIBRARY_PATH "$BIN" proxy -c "$tmp/kwire.yaml" --upstream "$BOOT" --workers 2 >"$tmp/out" 2>"$tmp/err" &
	PXPID=$!
	for _ in $(seq 50); do
		grep -q '^LISTEN ' "$tmp/out" && break
		kill -0 "$PXPID" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -q "^LISTEN 127.0.0.1:$P\$" "$tmp/out"; then
		grep -qi "in use" "$tmp/err" && return 1
		fail "no LISTEN line"
	fi
	grep -q "2 worker(s)" "$tmp/err" || fail "--workers did not override the file"
	timeout 30 kcat -b "127.0.0.1:$P" -L -t t1 >"$tmp/meta" 2>&1 || fail "kcat -L: $(cat "$tmp/meta")"
	# A broker listener that could not bind is logged as "broker N: <error>".
	grep -Eq 'broker [0-9]+: ' "$tmp/err" && return 1
	for id in 1 2 3; do
		grep -q "broker $id at 127.0.0.1:$((P + 1 + id))" "$tmp/meta" ||
			fail "broker $id not on port $((P + 1 + id)): $(cat "$tmp/meta")"
	done
	return 0
}

started=
for attempt in 1 2 3 4 5; do
	P=$(pick_port)
	[ -n "$P" ] || fail "no free port range"
	if start_proxy; then
		started=1
		break
	fi
	echo "ports $P..$((P + 4)) taken meanwhile (attempt $attempt): retrying" >&2
	kill "$PXPID" 2>/dev/null || true
	wait "$PXPID" 2>/dev/null || true
	PXPID=
done
[ -n "$started" ] || fail "no free port range after 5 attempts"
for rp in "${REAL_PORTS[@]}"; do
	grep -q ":$rp\b" "$tmp/meta" && fail "real broker port $rp leaked: $(cat "$tmp/meta")"
done

seq 1 500 | sed 's/^/msg-/' |
	timeout 60 kcat -b "127.0.0.1:$P" -P -t t1 -z snappy -X message.timeout.ms=20000 2>"$tmp/kp" ||
	fail "kcat produce: $(cat "$tmp/kp")"
n=$(timeout 60 kcat -b "127.0.0.1:$P" -C -t t1 -o beginning -e -q 2>"$tmp/kc" | grep -c '^msg-' || true)
[ "$n" = 500 ] || fail "consumed $n of 500: $(cat "$tmp/kc")"

kill -HUP "$PXPID"
sleep 0.3
kill -0 "$PXPID" 2>/dev/null || fail "SIGHUP stopped the proxy"
timeout 30 kcat -b "127.0.0.1:$P" -L >/dev/null 2>&1 || fail "proxy not serving after SIGHUP"

kill -TERM "$PXPID"
for _ in $(seq 50); do kill -0 "$PXPID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PXPID" 2>/dev/null && fail "SIGTERM did not stop the proxy within 5 s"
rc=0
wait "$PXPID" || rc=$?
PXPID=
[ "$rc" = 0 ] || fail "exit status $rc after SIGTERM"
echo "ok: kcat through kwire proxy on $P, brokers on $((P + 2))..$((P + 4))"
