#!/usr/bin/env bash
# kwire-mockcluster: the output contract other tests rely on, topics and
# leaders as asked, stdin commands, and clean exits on EOF and on SIGTERM.
# kcat is the independent client that checks what the cluster reports.
set -euo pipefail

# The peer's cluster (KWIRE_PEER 2.0.2 or 2.12, docs/peers.md); kcat runs on
# the peer's librdkafka through ctest's LD_LIBRARY_PATH.
MC=${KWIRE_MOCKCLUSTER:-${KWIRE_BUILD:?}/kwire-mockcluster}
[ -x "$MC" ] || { echo "no $MC (tools/install-deps.sh builds the 2.12 peer)"; exit 1; }
command -v kcat >/dev/null || { echo "SKIP: kcat missing (needs: kcat, tools/install-deps.sh)"; exit 77; }
kcat -V | grep "librdkafka ${KWIRE_PEER:-2.0.2}" >/dev/null ||
	{ echo "kcat does not run on librdkafka ${KWIRE_PEER:-2.0.2}: $(kcat -V | grep -o 'librdkafka [0-9.]*')"; exit 1; }

TMP=$(mktemp -d)
PID=
cleanup() {
	[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
wait_for() { # FILE PATTERN
	for _ in $(seq 1 100); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# 1. Output contract, topics, leader, stdin commands, EOF exit.
mkfifo "$TMP/in"
"$MC" --brokers 2 --topic alpha:3 --topic beta:1:1 --leader alpha:1:2 <"$TMP/in" >"$TMP/out" 2>"$TMP/err" &
PID=$!
exec 3>"$TMP/in"
wait_for "$TMP/out" '^READY' || fail "no READY: $(cat "$TMP/err")"
[ "$(sed -n 1p "$TMP/out" | cut -d' ' -f1)" = BOOTSTRAP ] || fail "first line not BOOTSTRAP"
[ "$(grep -c '^BROKER ' "$TMP/out")" = 2 ] || fail "want 2 BROKER lines"
BS=$(awk '$1 == "BOOTSTRAP" { print $2 }' "$TMP/out")
B2=$(awk '$1 == "BROKER" && $2 == 2 { print $3 }' "$TMP/out")
[ "$(echo "$BS" | tr ',' '\n' | sed -n 2p)" = "$B2" ] || fail "BROKER 2 is not the 2nd bootstrap"

kcat -b "$BS" -L -m 10 >"$TMP/meta"
grep -q "broker 2 at $B2" "$TMP/meta" || fail "kcat does not see broker 2 at $B2"
grep -q 'topic "alpha" with 3 partitions' "$TMP/meta" || fail "alpha missing"
grep -q 'topic "beta" with 1 partitions' "$TMP/meta" || fail "beta missing"
grep -q 'partition 1, leader 2,' "$TMP/meta" || fail "alpha[1] leader not 2"

echo "topic gamma 2 1" >&3
echo "leader gamma 0 1" >&3
echo "bogus command" >&3
wait_for "$TMP/out" '^ERR' || fail "no reply to a bad command"
[ "$(grep -c '^OK$' "$TMP/out")" = 2 ] || fail "want 2 OK replies: $(cat "$TMP/out")"
kcat -b "$BS" -L -t gamma -m 10 | grep -q 'partition 0, leader 1,' || fail "gamma[0] leader not 1"

# A produce/consume round trip through the cluster.
echo "k|v" | kcat -P -b "$BS" -t alpha -p 0 -K '|'
[ "$(kcat -C -b "$BS" -t alpha -p 0 -o beginning -e -q -f '%k=%s\n')" = "k=v" ] || fail "round trip"

exec 3>&-
wait "$PID" || fail "exit status $? after stdin EOF"
PID=

# 2. SIGTERM with stdin at /dev/null (ignored, so the cluster keeps running).
"$MC" --brokers 1 </dev/null >"$TMP/out2" 2>&1 &
PID=$!
wait_for "$TMP/out2" '^READY' || fail "no READY with stdin /dev/null"
sleep 0.3
kill -0 "$PID" || fail "exited on /dev/null stdin"
kill -TERM "$PID"
wait "$PID" || fail "exit status $? after SIGTERM"
PID=

# 3. Bad arguments.
set +e
"$MC" --topic nocolon </dev/null >/dev/null 2>&1
rc=$?
set -e
[ $rc -ne 0 ] || fail "bad --topic accepted"
echo "ok"
