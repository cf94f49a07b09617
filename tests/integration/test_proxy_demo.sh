#!/bin/bash
# `kwire demo`: the tutorial workload through kwire in front of the in-process
# mock cluster; exit 0 and a summary; the JSON access log counts 500 records
# per partition; --keep-running serves kcat and the admin endpoint until SIGINT.
set -u
: "${KWIRE_BIN:?run through ctest}"
tmp=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

timeout 120 "$KWIRE_BIN" demo --log-format json --log-file "$tmp/log.json" >"$tmp/out" 2>"$tmp/err" ||
	{ cat "$tmp/out" "$tmp/err" >&2; fail "kwire demo exited $?"; }
grep -q "^messages produced:  1000 of 1000" "$tmp/out" || fail "summary: $(cat "$tmp/out")"
grep -q "^messages consumed:  1000 (partition 0: 500, partition 1: 500)" "$tmp/out" || fail "summary: $(cat "$tmp/out")"
grep -q "^my-topic records:    produced 1000 " "$tmp/out" || fail "summary records: $(cat "$tmp/out")"
# Per-partition produce counts from the access log (JSON lines).
counts=$(/usr/bin/python3 - "$tmp/log.json" <<'PY'
import json, sys
c = {}
apis = set()
for line in open(sys.argv[1]):
    e = json.loads(line)
    apis.add(e["api"])
    if e["api"] == "Produce" and e["status"] == "ok":
        for p in e["partitions"]:
            c[p["partition"]] = c.get(p["partition"], 0) + p["records"]
need = {"Produce", "Fetch", "Metadata", "FindCoordinator", "JoinGroup", "SyncGroup", "OffsetCommit"}
print(sorted(c.items()), "missing" if need - apis else "all-apis")
PY
)
[ "$counts" = "[(0, 500), (1, 500)] all-apis" ] || fail "access log: $counts"

# The consumer cannot finish within 1 s (the mock cluster delays the first
# JoinGroup by 3 s): the demo must say so with a non-zero exit.
timeout 60 "$KWIRE_BIN" demo --messages 10 --timeout 1 --quiet >"$tmp/t.out" 2>&1 &&
	fail "demo exited 0 although the consumer timed out"
grep -q "^result: *FAILED" "$tmp/t.out" || fail "timed-out demo: $(cat "$tmp/t.out")"
"$KWIRE_BIN" demo --help | grep -q keep-running || fail "--help"
"$KWIRE_BIN" demo --bogus >/dev/null 2>&1 && fail "bad option accepted"

# --keep-running: stays up, prints BOOTSTRAP/ADMIN, serves kcat, stops on SIGINT.
"$KWIRE_BIN" demo --keep-running --messages 10 --quiet >"$tmp/k.out" 2>"$tmp/k.err" &
pid=$!
for _ in $(seq 300); do grep -q '^ADMIN ' "$tmp/k.out" && break; sleep 0.1; done
bs=$(awk '/^BOOTSTRAP /{print $2}' "$tmp/k.out")
adm=$(awk '/^ADMIN /{print $2}' "$tmp/k.out")
[ -n "$bs" ] && [ -n "$adm" ] || fail "no BOOTSTRAP/ADMIN: $(cat "$tmp/k.out" "$tmp/k.err")"
if command -v kcat >/dev/null; then
	n=$(timeout 30 kcat -b "$bs" -C -t my-topic -o beginning -e -q | wc -l)
	[ "$n" = 10 ] || fail "kcat through the kept-running demo read $n messages"
fi
/usr/bin/python3 - "$adm" <<'PY' || fail "admin endpoint"
import json, sys, urllib.request
base = "http://" + sys.argv[1]
assert urllib.request.urlopen(base + "/healthz").read().strip() == b"ok"
m = urllib.request.urlopen(base + "/metrics").read().decode()
assert 'kwire_topic_produce_records_total{topic="my-topic"} 10' in m, m
b = json.loads(urllib.request.urlopen(base + "/brokers").read())
assert sorted(e["node_id"] for e in b["brokers"]) == [1, 2, 3], b
PY
kill -INT "$pid"
wait "$pid"
rc=$?
pid=
[ "$rc" = 0 ] || fail "kept-running demo exited $rc after SIGINT"
echo ok
