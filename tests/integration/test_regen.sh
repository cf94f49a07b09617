#!/usr/bin/env bash
# test_regen.sh: the committed decoder/kd-schema-gen.c must equal a fresh run
# of tools/kwire-gen.py over the spec in $KWIRE_SHARED/kafka-protocol.
# Also checks that --check notices a changed spec and that the generator
# refuses schemas it does not understand. Exit 77 (skip) without the spec.
set -u

src=${KWIRE_SRC:?KWIRE_SRC unset}
spec=${KWIRE_SHARED:-}/kafka-protocol
gen=$src/tools/kwire-gen.py
py=${PYTHON:-python3}

if [ -z "${KWIRE_SHARED:-}" ] || [ ! -d "$spec/message" ] || [ ! -f "$spec/ERRORS.tsv" ]; then
	echo "SKIP: no Kafka spec at '$spec' (needs: KWIRE_SHARED, ../shared/kafka-protocol)"
	exit 77
fi

fails=0
fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}

tmp=$(mktemp -d /tmp/kwire-regen.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

# 1. The committed output is what the generator makes now.
if ! "$py" "$gen" --check "$spec" "$src/decoder" >"$tmp/check.out" 2>&1; then
	head -n 60 "$tmp/check.out"
	fail "decoder/kd-schema-gen.c differs from a fresh run (run 'make regen')"
fi

# 2. Two runs give the same bytes (deterministic), and --check wrote nothing.
mkdir -p "$tmp/out1" "$tmp/out2"
"$py" "$gen" "$spec" "$tmp/out1" || fail "generator failed on the real spec"
"$py" "$gen" "$spec" "$tmp/out2" || fail "generator failed on the real spec (2nd run)"
cmp -s "$tmp/out1/kd-schema-gen.c" "$tmp/out2/kd-schema-gen.c" || fail "output is not deterministic"
cmp -s "$tmp/out1/kd-schema-gen.c" "$src/decoder/kd-schema-gen.c" || fail "fresh output differs from the committed file"
ls "$src/decoder" | grep -q '^\.kd-schema-gen\.' && fail "a temporary file was left in decoder/"

# 3. --check sees a changed spec: exit 1 and a unified diff naming the change.
cp -r "$spec" "$tmp/spec"
sed -i 's/"validVersions": "0-12"/"validVersions": "0-13"/' "$tmp/spec/message/MetadataRequest.json"
"$py" "$gen" --check "$tmp/spec" "$src/decoder" >"$tmp/diff.out" 2>&1
rc=$?
[ "$rc" -eq 1 ] || fail "--check on a changed spec exited $rc, want 1"
grep -q '^+.*\.valid = KV(0, 13)' "$tmp/diff.out" || fail "--check printed no diff with the changed version"
grep -q '^--- ' "$tmp/diff.out" || fail "--check output is not a unified diff"

# 4. Things the generator must refuse loudly (non-zero exit, message naming the file).
refuse() { # name sed-expression file
	rm -rf "$tmp/bad" && cp -r "$spec" "$tmp/bad"
	sed -i "$2" "$tmp/bad/message/$3"
	cmp -s "$spec/message/$3" "$tmp/bad/message/$3" && { fail "$1: the edit did not apply"; return; }
	if "$py" "$gen" "$tmp/bad" "$tmp/out1" >"$tmp/bad.out" 2>&1; then
		fail "$1: generator accepted it"
	elif ! grep -q "$3" "$tmp/bad.out"; then
		cat "$tmp/bad.out"
		fail "$1: error does not name $3"
	fi
}
refuse "bad version string" 's/"validVersions": "0-12"/"validVersions": "0-12a"/' MetadataRequest.json
refuse "unknown type" '0,/"type": "int32"/s//"type": "int33"/' MetadataResponse.json
refuse "unresolvable struct" 's/"type": "\[\]TopicPartitions"/"type": "[]Nope"/' ConsumerGroupHeartbeatResponse.json
refuse "unknown entityType" '0,/"entityType": "brokerId"/s//"entityType": "brokerIdd"/' MetadataResponse.json

# 5. A // inside a string literal is kept (comment stripping is string-aware).
rm -rf "$tmp/spec" && cp -r "$spec" "$tmp/spec"
sed -i 's|"about": "The broker hostname."|"about": "http://host // not a comment"|' "$tmp/spec/message/MetadataResponse.json"
"$py" "$gen" "$tmp/spec" "$tmp/out1" || fail "a // inside a string broke parsing"

# 6. The compiled tables, dumped by the unit test binary, equal an
# independent walk of the JSON (comments stripped by the spec's own
# kafka_index.py, not by the generator).
dumper=${KWIRE_BUILD:-}/tests/test_schema
if [ -x "$dumper" ]; then
	"$dumper" --dump >"$tmp/tables.txt" || fail "test_schema --dump failed"
	KWIRE_SPEC=$spec "$py" - >"$tmp/expect.txt" <<'PYEOF' || fail "JSON walk failed"
import os, sys
spec = os.environ["KWIRE_SPEC"]
sys.path.insert(0, spec)
from kafka_index import load

ENT = {None: 0, "topicName": 1, "brokerId": 2, "groupId": 3, "producerId": 4, "transactionalId": 5}
LSN = {"zkBroker": 1, "broker": 2, "controller": 4}
PRIMS = {"bool", "int8", "int16", "uint16", "int32", "uint32", "int64", "float64",
         "uuid", "string", "bytes", "records"}

def v(s):
    if s is None or s == "none":
        return "none"
    if "-" in s or s.endswith("+"):
        return s
    return s + "-" + s

def structs_of(spec):
    found = {c["name"]: c["fields"] for c in spec.get("commonStructs", [])}
    def walk(fields):
        for f in fields:
            if "fields" in f:
                found[f["type"].lstrip("[]")] = f["fields"]
                walk(f["fields"])
    walk(spec["fields"])
    return found

def fields(fs, prefix, structs):
    for f in fs:
        t = f["type"]
        arr = t.startswith("[]")
        base = t[2:] if arr else t
        sub = None if base in PRIMS else base
        bt = "struct" if sub else base
        path = prefix + "." + f["name"]
        print(path, sub or "-", "array" if arr else bt, bt if arr else "none",
              ENT[f.get("entityType")], int(f.get("tag", -1)), v(f["versions"]),
              v(f.get("nullableVersions")), v(f.get("taggedVersions")),
              v(f["flexibleVersions"]) if "flexibleVersions" in f else "-")
        if sub:
            fields(structs[sub], path, structs)

def msg(spec):
    print("msg", spec["name"], v(spec["validVersions"]), v(spec["flexibleVersions"]))
    fields(spec["fields"], spec["name"], structs_of(spec))

mdir = os.path.join(spec, "message")
specs = [load(os.path.join(mdir, n)) for n in os.listdir(mdir) if n.endswith(".json")]
reqs = {s["apiKey"]: s for s in specs if s["type"] == "request"}
resps = {s["apiKey"]: s for s in specs if s["type"] == "response"}
for k in sorted(reqs):
    r = reqs[k]
    print("api", k, r["name"][:-7], sum(LSN[x] for x in set(r["listeners"])),
          int(r.get("latestVersionUnstable", False)), v(r.get("deprecatedVersions")))
    msg(r)
    msg(resps[k])
for s in sorted((s for s in specs if s["type"] in ("header", "data")), key=lambda s: s["name"]):
    msg(s)
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(spec, "ERRORS.tsv"))][1:]
for code, name in sorted((int(c), n) for c, n in rows):
    print("err", code, name)
PYEOF
	if ! diff -u "$tmp/expect.txt" "$tmp/tables.txt" >"$tmp/tables.diff"; then
		head -n 40 "$tmp/tables.diff"
		fail "compiled tables differ from the JSON schemas"
	else
		echo "test_regen: $(wc -l <"$tmp/tables.txt") table lines match the JSON"
	fi
else
	echo "test_regen: $dumper not built: table/JSON comparison not run"
fi

if [ "$fails" -ne 0 ]; then
	echo "test_regen: $fails failure(s)"
	exit 1
fi
echo "test_regen: ok"
exit 0
