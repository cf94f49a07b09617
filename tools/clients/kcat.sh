#!/usr/bin/env bash
# kcat scenario for tools/capture-clients.sh.
#
# usage: kcat.sh BOOTSTRAP EXPECTED_FILE
#
# Needs topics kcat-codecs (5 partitions) and kcat-group (2 partitions).
# Runs: a metadata listing (-L); one producer per codec (-z none, gzip,
# snappy, lz4, zstd), each to its own explicit partition, with keys and
# record headers (-H); a simple consumer (-C -o beginning -e) over
# kcat-codecs; a producer to kcat-group; a balanced consumer group (-G)
# over kcat-group.
#
# EXPECTED_FILE gets one line per record, taken from kcat's own output:
# produce lines from its delivery reports ("Message delivered to partition
# P (offset O)", matched in order to the input lines, which kcat sends in
# order on one partition), fetch lines from the consumed messages (-J).
# The format is in docs/test-data.md.
set -euo pipefail

BS=$1
EXP=$2
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

: >"$EXP"

# Metadata listing; output only checked for the brokers.
kcat -b "$BS" -L -m 10 >"$TMP/meta.txt"
grep -q 'brokers:' "$TMP/meta.txt"

# produce TOPIC PARTITION CODEC NRECORDS HEADER...
# Values are compressible text so that every codec really compresses.
produce() {
	local topic=$1 part=$2 codec=$3 n=$4
	shift 4
	local hargs=() hdrs=() h
	for h in "$@"; do
		hargs+=(-H "$h")
		hdrs+=("$h")
	done
	: >"$TMP/in.txt"
	for i in $(seq 0 $((n - 1))); do
		printf 'key-%s-%d|kcat %s record %d to %s[%d] %s\n' "$codec" "$i" "$codec" "$i" \
			"$topic" "$part" "$(printf 'payload-%s-%d ' "$codec" "$i" "$codec" "$i" \
			"$codec" "$i" "$codec" "$i")" >>"$TMP/in.txt"
	done
	kcat -P -b "$BS" -t "$topic" -p "$part" -K '|' -z "$codec" "${hargs[@]}" -v -v -v \
		-l "$TMP/in.txt" 2>"$TMP/dr.txt"
	"$PY" "$HERE/kcat_expect.py" produce "$topic" "$codec" "$TMP/in.txt" "$TMP/dr.txt" \
		"${hdrs[@]}" >>"$EXP"
}

p=0
for codec in none gzip snappy lz4 zstd; do
	produce kcat-codecs $p $codec 3 "codec=$codec" "trace=kcat-$p" "empty="
	p=$((p + 1))
done

kcat -C -b "$BS" -t kcat-codecs -o beginning -e -J -q >"$TMP/consumed.json"
"$PY" "$HERE/kcat_expect.py" fetch "$TMP/consumed.json" >>"$EXP"

produce kcat-group 0 none 2 "who=kcat-group"
produce kcat-group 1 lz4 2 "who=kcat-group"
timeout 60 kcat -b "$BS" -G kcat-grp -o beginning -e -J -q kcat-group >"$TMP/group.json"
"$PY" "$HERE/kcat_expect.py" fetch "$TMP/group.json" >>"$EXP"
