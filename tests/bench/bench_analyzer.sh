#!/bin/bash
# bench_analyzer.sh: kwire decode against tshark on a large capture of
# produce/fetch traffic. Prints figures, asserts nothing (not run by ctest).
#
#   tests/bench/bench_analyzer.sh [BUILD_DIR] [SIZE_MB]     (defaults: build, 220)
#
# The capture is synthesised, not recorded: real Kafka frames taken from
# tests/data/clients/{kcat,large}.conv (librdkafka Produce v7 requests with
# 3-record batches and a 64 KiB record, their responses, Fetch v11 requests
# and responses carrying those batches) are replayed over 64 client
# connections to one broker at 10.0.0.1:9092, each conversation with a SYN
# handshake, correlation ids renumbered per connection, frames cut into
# 1448-byte TCP segments (Ethernet/IPv4 pcap, a pure ACK every 4 segments),
# until the file is SIZE_MB. MIX=small uses only the kcat frames (many
# small messages: about 10 times more Kafka messages per MB). Synthesising lets the benchmark build 200+ MB
# in seconds without root; the frames themselves are byte-for-byte what
# real clients and the mock broker sent.
#
# tshark runs on the whole file too (about 6 s default, 20 s with -V on
# two cores); TSHARK_SLICE=1 runs it on the 40 MB slice instead (rates are
# per MB and per packet, tshark's start-up of ~0.3 s then weighs more).
# Peak RSS of kwire is measured on the slice and on the whole file, to show
# that memory does not grow with the capture's length.
set -u
BUILD=${1:-build}
SIZE_MB=${2:-220}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
KWIRE=$BUILD/kwire
[ -x "$KWIRE" ] || { echo "no $KWIRE: build first" >&2; exit 1; }
WORK=${KWIRE_BENCH_DIR:-/tmp/kwire-bench-$(id -u)}
mkdir -p "$WORK"
MIX=${MIX:-mixed}   # mixed: kcat and 64 KiB frames; small: kcat frames only
BIG=$WORK/analyzer-$MIX-${SIZE_MB}mb.pcap
SLICE=$WORK/analyzer-$MIX-slice40mb.pcap

if [ ! -s "$BIG" ]; then
	echo "building $BIG ..." >&2
	/usr/bin/python3 - "$SRC/tests/data/clients" "$BIG" "$SIZE_MB" "$SLICE" "$MIX" <<'EOF'
import struct, sys
datadir, out, size_mb, slice_path, mix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]

def conv_frames(path):
    """Per connection: the client and server byte streams cut into frames."""
    conns, cur = [], None
    for line in open(path):
        w = line.split()
        if not w:
            continue
        if w[0] == "conn":
            cur = {"C": bytearray(), "S": bytearray()}
            conns.append(cur)
        elif w[0] in ("C", "S") and cur is not None:
            cur[w[0]] += bytes.fromhex(w[1])
    res = []
    for c in conns:
        fr = {}
        for d in "CS":
            b, o, lst = c[d], 0, []
            while o + 4 <= len(b):
                n = struct.unpack_from(">i", b, o)[0]
                if n < 0 or o + 4 + n > len(b):
                    break
                lst.append(bytes(b[o:o + 4 + n]))
                o += 4 + n
            fr[d] = lst
        res.append(fr)
    return res

pairs = []  # (request frame, response frame) of Produce and Fetch with records
for name in ("kcat.conv",) if mix == "small" else ("kcat.conv", "large.conv"):
    for c in conv_frames(f"{datadir}/{name}"):
        resp_by_corr = {struct.unpack_from(">i", f, 4)[0]: f for f in c["S"]}
        for req in c["C"]:
            key, corr = struct.unpack_from(">hhi", req, 4)[0], struct.unpack_from(">i", req, 8)[0]
            resp = resp_by_corr.get(corr)
            if key == 0 and resp:
                pairs.append((req, resp))
            if key == 1 and resp and len(resp) > 200:
                pairs.append((req, resp))
assert pairs, "no produce/fetch frames found"

MSS = 1448
ETH = b"\x00" * 12 + b"\x08\x00"
total_target = size_mb << 20
f = open(out, "wb")
f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
written = 24
slice_done = False
ts = 1700000000 * 1000000
NCONN = 64
conns = []
for i in range(NCONN):
    conns.append({"cport": 20000 + i, "cip": bytes([10, 1, i // 256, i % 256]), "cseq": 1000, "sseq": 5000,
                  "corr": 1})
SIP = bytes([10, 0, 0, 1])

def pkt(c, to_server, flags, payload=b""):
    global written, ts
    src, dst = (c["cip"], SIP) if to_server else (SIP, c["cip"])
    sp, dp = (c["cport"], 9092) if to_server else (9092, c["cport"])
    seq = c["cseq"] if to_server else c["sseq"]
    ack = c["sseq"] if to_server else c["cseq"]
    tcp = struct.pack(">HHIIBBHHH", sp, dp, seq & 0xffffffff, ack & 0xffffffff, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    frame = ETH + ip + tcp + payload
    ts += 7
    rec = struct.pack("<IIII", ts // 1000000, ts % 1000000, len(frame), len(frame)) + frame
    f.write(rec)
    written += len(rec)
    n = len(payload) + (1 if flags & 0x03 else 0)
    if to_server:
        c["cseq"] += n
    else:
        c["sseq"] += n

def send(c, to_server, data):
    for i, o in enumerate(range(0, len(data), MSS)):
        pkt(c, to_server, 0x18, data[o:o + MSS])
        if i % 4 == 3:
            pkt(c, not to_server, 0x10)

for c in conns:
    pkt(c, True, 0x02)
    c["cseq"] -= 0
    pkt(c, False, 0x12)
    pkt(c, True, 0x10)
k = 0
while written < total_target:
    for c in conns:
        req, resp = pairs[k % len(pairs)]
        corr = c["corr"]
        c["corr"] += 1
        req = req[:8] + struct.pack(">i", corr) + req[12:]
        resp = resp[:4] + struct.pack(">i", corr) + resp[8:]
        send(c, True, req)
        send(c, False, resp)
        if not slice_done and written >= (40 << 20):
            f.flush()
            with open(out, "rb") as src, open(slice_path, "wb") as dst:
                dst.write(src.read(written))
            slice_done = True
    k += 1
for c in conns:
    pkt(c, True, 0x11)
    pkt(c, False, 0x11)
    pkt(c, True, 0x10)
f.close()
EOF
fi
[ -s "$SLICE" ] || { echo "no slice" >&2; exit 1; }

mb() { echo "scale=1; $(stat -c %s "$1") / 1048576" | bc; }
BIG_MB=$(mb "$BIG")
SLICE_MB=$(mb "$SLICE")
echo "capture: $BIG ($BIG_MB MB); slice: $SLICE ($SLICE_MB MB)" >&2
BIG_PK=$(/usr/bin/python3 -c "
import struct,sys
f=open(sys.argv[1],'rb'); f.seek(24); n=0
while True:
    h=f.read(16)
    if len(h)<16: break
    n+=1; f.seek(struct.unpack('<IIII',h)[2],1)
print(n)" "$BIG")
SLICE_PK=$(/usr/bin/python3 -c "
import struct,sys
f=open(sys.argv[1],'rb'); f.seek(24); n=0
while True:
    h=f.read(16)
    if len(h)<16: break
    n+=1; f.seek(struct.unpack('<IIII',h)[2],1)
print(n)" "$SLICE")

# run NAME cmd...: best wall time of REPEAT runs (the machine is shared)
# and the largest peak RSS among them.
REPEAT=${REPEAT:-3}
declare -A SEC RSS
run() {
	local name=$1; shift
	local t=$WORK/time.$$ best="" rss=0 i a b s r
	for ((i = 0; i < REPEAT; i++)); do
		a=$(date +%s%N)
		/usr/bin/time -v -o "$t" "$@" >/dev/null 2>/dev/null
		b=$(date +%s%N)
		s=$(echo "scale=3; ($b - $a) / 1000000000" | bc)
		r=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$t")
		if [ -z "$best" ] || [ "$(echo "$s < $best" | bc)" = 1 ]; then best=$s; fi
		[ "$r" -gt "$rss" ] && rss=$r
	done
	rm -f "$t"
	SEC[$name]=$best
	RSS[$name]=$rss
}

run kw_sum_big "$KWIRE" decode --no-progress "$BIG"
run kw_rec_big "$KWIRE" decode --no-progress -f records "$BIG"
run kw_sum_slice "$KWIRE" decode --no-progress "$SLICE"
run kw_rec_slice "$KWIRE" decode --no-progress -f records "$SLICE"
TS_FILE=$BIG TS_MB=$BIG_MB TS_PK=$BIG_PK TS_WHAT="whole file"
if [ -n "${TSHARK_SLICE:-}" ]; then
	TS_FILE=$SLICE TS_MB=$SLICE_MB TS_PK=$SLICE_PK TS_WHAT="slice"
fi
if command -v tshark >/dev/null; then
	run ts_def tshark -n -r "$TS_FILE" -d tcp.port==9092,kafka
	run ts_v tshark -n -r "$TS_FILE" -d tcp.port==9092,kafka -V
fi

rate() { echo "scale=1; $1 / $2" | bc; }  # bc: "a / b" with one decimal
printf "\n%-34s %10s %10s %12s %10s\n" "run" "MB" "seconds" "MB/s" "kpkts/s"
line() { # name label mb pkts
	local s=${SEC[$1]:-0}
	printf "%-34s %10s %10s %12s %10s\n" "$2" "$3" "$s" "$(rate "$3" "$s")" "$(rate "$4 / 1000" "$s")"
}
line kw_sum_big "kwire summary (whole file)" "$BIG_MB" "$BIG_PK"
line kw_rec_big "kwire records (whole file)" "$BIG_MB" "$BIG_PK"
line kw_sum_slice "kwire summary (slice)" "$SLICE_MB" "$SLICE_PK"
line kw_rec_slice "kwire records (slice)" "$SLICE_MB" "$SLICE_PK"
if [ -n "${SEC[ts_def]:-}" ]; then
	line ts_def "tshark default ($TS_WHAT)" "$TS_MB" "$TS_PK"
	line ts_v "tshark -V ($TS_WHAT)" "$TS_MB" "$TS_PK"
	echo
	kw=$(rate "$BIG_MB" "${SEC[kw_sum_big]}")
	tsd=$(rate "$TS_MB" "${SEC[ts_def]}")
	tsv=$(rate "$TS_MB" "${SEC[ts_v]}")
	echo "kwire summary vs tshark default: $(echo "scale=1; $kw / $tsd" | bc)x"
	echo "kwire records vs tshark -V:      $(echo "scale=1; $(rate "$BIG_MB" "${SEC[kw_rec_big]}") / $tsv" | bc)x"
fi
echo
echo "kwire peak RSS (KiB): summary ${RSS[kw_sum_slice]} on $SLICE_MB MB, ${RSS[kw_sum_big]} on $BIG_MB MB;" \
	"records ${RSS[kw_rec_slice]} on $SLICE_MB MB, ${RSS[kw_rec_big]} on $BIG_MB MB"
[ -n "${RSS[ts_def]:-}" ] && echo "tshark peak RSS (KiB) on $TS_MB MB: default ${RSS[ts_def]}, -V ${RSS[ts_v]}"
exit 0
