#!/usr/bin/env bash
# Captures real Kafka clients talking to librdkafka's mock cluster.
#
# usage: tools/capture-clients.sh OUTDIR [SCENARIO...]
#
# Scenarios: kcat kafka-python confluent large big kafkajs sarama modern-kcat
# modern-confluent (default: all). For each
# one: a fresh kwire-mockcluster (3 brokers), dumpcap on lo filtered to the
# broker ports, the scenario's client script from tools/clients/, then
#   OUTDIR/<scenario>.pcapng    the capture
#   OUTDIR/<scenario>.expected  the records the clients sent and received,
#                               from the clients' own reports
#   OUTDIR/<scenario>.conv      the TCP conversations as hex, for unit tests
# Formats and the regeneration recipe: docs/test-data.md.
#
# big (values near 1 MB) runs the cluster, dumpcap and the clients in a
# network namespace of its own whose lo has a 1500-byte MTU and no GSO, so
# that each value crosses the capture as hundreds of segments (the host's lo
# is left alone). Its files are big.pcapng.gz (a few MB of incompressible
# values) and big.expected (values as SHA-256 digests, see
# tools/clients/expectlib.py), and no .conv (it would be ~13 MB of hex)
# unless KWIRE_BIG_CONV=1.
#
# The modern-* scenarios run the 2.12 peer (docs/peers.md): kwire-mockcluster-2.12
# next to kwire-mockcluster (or $KWIRE_MOCKCLUSTER_MODERN) and the clients with
# LD_LIBRARY_PATH set to librdkafka 2.12.0 (tools/install-rdkafka-modern.sh).
#
# Needs root (dumpcap on lo; ip netns for big), kcat, tshark/dumpcap, gzip,
# iproute2, /usr/bin/python3 with
# python3-kafka and python3-confluent-kafka, kafkajs and sarama
# (tools/install-clients.sh), and a built kwire-mockcluster
# (found via $KWIRE_MOCKCLUSTER, $KWIRE_BUILD or build*/ under the source).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
PY=/usr/bin/python3
# Keep tools/clients/ free of __pycache__.
export PYTHONDONTWRITEBYTECODE=1
ALL_SCENARIOS=(kcat kafka-python confluent large big kafkajs sarama modern-kcat modern-confluent)
# kafkajs and sarama, as tools/install-clients.sh installs them.
CACHE=${KWIRE_CACHE:-$HOME/.cache/kwire}

die() {
	echo "capture-clients: $*" >&2
	exit 1
}

[ $# -ge 1 ] || die "usage: $0 OUTDIR [SCENARIO...] (scenarios: ${ALL_SCENARIOS[*]})"
OUT=$1
shift
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=("${ALL_SCENARIOS[@]}")

[ "$(id -u)" -eq 0 ] || die "must run as root: dumpcap needs to capture on lo"
for t in kcat dumpcap tshark; do
	command -v "$t" >/dev/null || die "$t not found (tools/install-deps.sh)"
done
"$PY" -c 'import kafka, confluent_kafka' 2>/dev/null ||
	die "$PY lacks python3-kafka or python3-confluent-kafka"

MC=${KWIRE_MOCKCLUSTER:-}
if [ -z "$MC" ] && [ -n "${KWIRE_BUILD:-}" ] && [ -x "$KWIRE_BUILD/kwire-mockcluster" ]; then
	MC=$KWIRE_BUILD/kwire-mockcluster
fi
if [ -z "$MC" ]; then
	for c in "$SRC"/build*/kwire-mockcluster; do
		[ -x "$c" ] && MC=$c && break
	done
fi
[ -n "$MC" ] && [ -x "$MC" ] || die "no kwire-mockcluster: build it or set KWIRE_MOCKCLUSTER"
MC_MODERN=${KWIRE_MOCKCLUSTER_MODERN:-$MC-2.12}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d)
MC_PID=
DC_PID=
# Network namespace of the scenario being run, if it has one, and the
# command prefix that runs a program in it.
NS=
IN_NS=()

cleanup() {
	[ -n "$DC_PID" ] && kill -INT "$DC_PID" 2>/dev/null && wait "$DC_PID" 2>/dev/null
	[ -n "$MC_PID" ] && kill -TERM "$MC_PID" 2>/dev/null && wait "$MC_PID" 2>/dev/null
	[ -n "$NS" ] && ip netns del "$NS" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

topics_of() {
	case $1 in
	kcat) echo "--topic kcat-codecs:5 --topic kcat-group:2" ;;
	kafka-python) echo "--topic kp-codecs:5" ;;
	confluent) echo "--topic cf-idem:2 --topic cf-txn:2" ;;
	large) echo "--topic large:1" ;;
	big) echo "--topic big:3" ;;
	kafkajs) echo "--topic kafkajs-codecs:5" ;;
	sarama) echo "--topic sarama-codecs:5" ;;
	modern-kcat) echo "--topic kcat-codecs:5 --topic kcat-group:2" ;;
	modern-confluent) echo "--topic cf-idem:2 --topic cf-txn:2 --topic cf-848:2" ;;
	*) die "unknown scenario '$1' (scenarios: ${ALL_SCENARIOS[*]})" ;;
	esac
}

client_of() {
	case $1 in
	kcat) echo "bash $HERE/clients/kcat.sh" ;;
	kafka-python) echo "$PY $HERE/clients/kafka_python.py" ;;
	confluent) echo "$PY $HERE/clients/confluent.py" ;;
	large) echo "$PY $HERE/clients/large.py" ;;
	big) echo "$PY $HERE/clients/big.py" ;;
	kafkajs) echo "node $HERE/clients/kafkajs-client.js" ;;
	sarama) echo "$CACHE/bin/kwire-sarama-client" ;;
	modern-kcat) echo "bash $HERE/clients/kcat.sh" ;;
	modern-confluent) echo "$PY $HERE/clients/modern_confluent.py" ;;
	esac
}

# wait_for FILE PATTERN SECONDS
wait_for() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

run_scenario() {
	local sc=$1 topics client mc=$MC
	local peer=()
	topics=$(topics_of "$sc")
	client=$(client_of "$sc")
	echo "capture-clients: $sc" >&2
	if [[ $sc == modern-* ]]; then
		# The 2.12 peer: its cluster, and its library under the clients.
		local lib
		lib=$("$HERE/install-rdkafka-modern.sh" --print-dir) ||
			die "$sc: librdkafka 2.12.0 is not built (tools/install-deps.sh)"
		[ -x "$MC_MODERN" ] || die "$sc: no $MC_MODERN (build it, or set KWIRE_MOCKCLUSTER_MODERN)"
		mc=$MC_MODERN
		peer=(env "LD_LIBRARY_PATH=$lib")
		"${peer[@]}" kcat -V | grep 'librdkafka 2\.12\.' >/dev/null || die "$sc: kcat does not load $lib"
	fi

	if [ "$sc" = big ]; then
		# Loopback's 64 KiB MTU and GSO would carry a 1 MB value in a few
		# dozen 64 KiB packets (dumpcap sees packets before GSO splits
		# them); a 1500-byte MTU and gso_max_segs 1 make TCP send, and the
		# capture see, 1448-byte segments.
		NS=kwire-capture-$$
		ip netns add "$NS" || die "$sc: ip netns add $NS failed"
		IN_NS=(ip netns exec "$NS")
		"${IN_NS[@]}" ip link set lo mtu 1500 gso_max_segs 1 up ||
			die "$sc: cannot set up lo in $NS"
	fi

	# The cluster's stdin is a FIFO we hold open: closing it (or our death)
	# stops the cluster.
	rm -f "$TMP/mc.in"
	mkfifo "$TMP/mc.in"
	# shellcheck disable=SC2086
	"${IN_NS[@]}" "$mc" --brokers 3 $topics <"$TMP/mc.in" >"$TMP/mc.out" 2>"$TMP/mc.err" &
	MC_PID=$!
	exec 3>"$TMP/mc.in"
	wait_for "$TMP/mc.out" '^READY' 10 || die "$sc: mock cluster did not start: $(cat "$TMP/mc.err")"
	local bs ports filter
	bs=$(awk '$1 == "BOOTSTRAP" { print $2 }' "$TMP/mc.out")
	ports=$(awk '$1 == "BROKER" { n = split($3, a, ":"); print a[n] }' "$TMP/mc.out" | paste -sd,)
	filter=$(echo "$ports" | sed 's/^/tcp port /; s/,/ or tcp port /g')

	rm -f "$OUT/$sc.pcapng"
	# A 64 MiB kernel buffer: ~1 MB bursts on lo must not drop packets.
	"${IN_NS[@]}" dumpcap -i lo -B 64 -f "$filter" -w "$OUT/$sc.pcapng" -q 2>"$TMP/dc.err" &
	DC_PID=$!
	wait_for "$TMP/dc.err" 'Capturing on' 10 || die "$sc: dumpcap did not start: $(cat "$TMP/dc.err")"
	# "Capturing on" is printed as the capture opens; give the kernel
	# filter a moment before the first SYN.
	sleep 0.5

	# shellcheck disable=SC2086
	if ! "${IN_NS[@]}" "${peer[@]}" $client "$bs" "$TMP/$sc.expected"; then
		die "$sc: client scenario failed"
	fi

	# Let the last FINs reach the capture, then stop it.
	sleep 1
	kill -INT "$DC_PID"
	wait "$DC_PID" || true
	DC_PID=
	exec 3>&-
	wait "$MC_PID" || die "$sc: mock cluster exited with an error"
	MC_PID=
	if [ -n "$NS" ]; then
		ip netns del "$NS"
		NS=
		IN_NS=()
	fi

	chmod 644 "$OUT/$sc.pcapng"
	# The data must be whole. Segments may be captured out of order or
	# twice (the big scenario has both), so rather than tshark's
	# "previous segment not captured" check that the segments of each
	# stream and direction cover its sequence space without a hole.
	local holes
	holes=$(tshark -r "$OUT/$sc.pcapng" -T fields -e tcp.stream -e tcp.srcport -e tcp.seq \
		-e tcp.len | sort -k1,1n -k2,2n -k3,3n | awk '
		{ k = $1 " " $2; if (k != cur) { cur = k; end = 1 } }
		$4 > 0 { if ($3 > end) n++; if ($3 + $4 > end) end = $3 + $4 }
		END { print n + 0 }')
	[ "$holes" -eq 0 ] || die "$sc: $holes holes in the captured TCP streams (dropped packets?)"
	local conv=$OUT/$sc.conv
	if [ "$sc" = big ]; then
		[ "${KWIRE_BIG_CONV:-0}" = 1 ] || conv=
		rm -f "$OUT/$sc.pcapng.gz"
		gzip -9 -n "$OUT/$sc.pcapng"
	fi
	cp "$TMP/$sc.expected" "$OUT/$sc.expected"
	if [ -n "$conv" ]; then
		# tshark reads .pcapng.gz as well.
		"$PY" "$HERE/clients/pcap2conv.py" "$(ls "$OUT/$sc".pcapng*)" "$ports" >"$conv"
	fi
	echo "capture-clients: $sc: $(grep -vc '^#' "$TMP/$sc.expected") records," \
		"$(tshark -r "$(ls "$OUT/$sc".pcapng*)" -T fields -e tcp.stream | sort -u | wc -l)" \
		"connections, $(stat -c %s "$(ls "$OUT/$sc".pcapng*)") bytes of capture" >&2
}

for sc in "${SCENARIOS[@]}"; do
	topics_of "$sc" >/dev/null
	run_scenario "$sc"
done
