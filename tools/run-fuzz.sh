#!/usr/bin/env bash
# Runs every built libFuzzer target for a bounded time.
#
#   tools/run-fuzz.sh DIR SECONDS
#
# DIR holds the fuzz_* executables (build-fuzz/fuzz). Each target starts
# from its checked-in seeds in tests/fuzz/corpus/<target>/ and grows a
# working corpus in tests/fuzz/corpus-work/<target>/ (gitignored; set
# KWIRE_FUZZ_WORK to put it elsewhere), so the seeds are never modified.
# Crash reproducers land in the working folder. Prints executions per
# second per target; exits 1 if any target found a crash.
set -u

if [ $# -ne 2 ]; then
	echo "usage: $0 DIR SECONDS" >&2
	exit 2
fi
dir=$1
secs=$2
src=$(cd "$(dirname "$0")/.." && pwd)
work=${KWIRE_FUZZ_WORK:-$src/tests/fuzz/corpus-work}
status=0
found=0

printf '%-16s %10s %12s %10s %s\n' target seconds execs exec/s result
for bin in "$dir"/fuzz_*; do
	[ -x "$bin" ] || continue
	found=1
	name=$(basename "$bin")
	seeds=$src/tests/fuzz/corpus/$name
	wdir=$work/$name
	mkdir -p "$wdir/corpus" "$wdir/artifacts"
	log=$wdir/last-run.log
	args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
		-artifact_prefix="$wdir/artifacts/" "$wdir/corpus")
	[ -d "$seeds" ] && args+=("$seeds")
	"$bin" "${args[@]}" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	if [ $rc -eq 0 ]; then
		result=ok
	else
		result="FAILED (rc $rc, see $log)"
		status=1
	fi
	printf '%-16s %10s %12s %10s %s\n' "$name" "$secs" "${execs:-?}" "${rate:-?}" "$result"
done
if [ $found -eq 0 ]; then
	echo "no fuzz_* executables in $dir (configure with CC=clang -DKWIRE_FUZZ=ON)" >&2
	exit 2
fi
exit $status
