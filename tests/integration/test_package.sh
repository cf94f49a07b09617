#!/usr/bin/env bash
# test_package.sh: the Debian package, end to end on this machine (issue 12).
#
# Builds the .deb with CPack from this build tree (what `make package`
# runs), checks its control data (dependencies from dpkg-shlibdeps,
# conffiles), installs it with dpkg -i, and then runs what it installed:
#   - both units pass `systemd-analyze verify`, and `systemd-analyze
#     security --offline` rates them;
#   - kwire.service's ExecStart line, with the packaged config edited as an
#     operator would (upstream = a mock cluster), runs under the unit's
#     sandbox as far as it can be rebuilt without systemd as PID 1 (a
#     dynamic-range uid, no capabilities at all, no-new-privs, the whole
#     filesystem read-only except the LogsDirectory): kcat produces and
#     consumes through it, the access log and /metrics fill up;
#   - the packaged logrotate file rotates the access log and its
#     postrotate SIGHUP makes kwire reopen it (systemctl, which the
#     postrotate calls, is replaced by a shim that sends the signal: there
#     is no systemd to ask here);
#   - kwire-sniff@lo.service's ExecStart runs as that uid with CAP_NET_RAW
#     as its only capability and decodes the traffic on lo;
#   - the man pages and the bash completion work from where they landed;
# then purges the package and checks that no file is left behind.
# What cannot be done without systemd as PID 1 is in docs/packaging.md.
set -eEuo pipefail

BUILD=${KWIRE_BUILD:?KWIRE_BUILD not set}
MC=$BUILD/kwire-mockcluster
fail() { echo "FAIL: $*" >&2; exit 1; }
# Nothing fails silently under set -e: name the command that did.
trap 'echo "FAIL: line $LINENO: \"$BASH_COMMAND\" exited $?" >&2' ERR
[ "$(id -u)" = 0 ] || { echo "SKIP: not root, cannot dpkg -i (needs: root)"; exit 77; }
for t in dpkg dpkg-deb cpack kcat setpriv unshare systemd-analyze logrotate; do
	command -v "$t" >/dev/null || fail "$t not installed (tools/install-deps.sh)"
done
[ -x "$MC" ] || fail "no $MC"

tmp=$(mktemp -d)
PXPID= SNPID= MC_PID=
cleanup() {
	for p in $SNPID $PXPID $MC_PID; do kill "$p" 2>/dev/null || true; done
	if dpkg-query -W -f='${Status}' kwire 2>/dev/null | grep -q installed; then
		dpkg --purge kwire >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

# One run at a time on this machine: every worktree's copy of this test
# installs the same package name.
exec 9>/tmp/kwire-test-package.lock
flock -w 600 9 || fail "another test_package run held the lock for 10 minutes"

# A leftover from an interrupted run.
if dpkg-query -W -f='${Status}' kwire 2>/dev/null | grep -q "ok installed\|config-files"; then
	dpkg --purge kwire >/dev/null
fi

# dpkg waits for nobody: retry while apt or another dpkg holds its lock.
dpkg_retry() {
	local i
	for i in $(seq 60); do
		if dpkg "$@" >"$tmp/dpkg.out" 2>&1; then return 0; fi
		grep -q "lock" "$tmp/dpkg.out" || { cat "$tmp/dpkg.out" >&2; return 1; }
		sleep 2
	done
	cat "$tmp/dpkg.out" >&2
	return 1
}

# expect_line GREP-FLAGS PATTERN WHAT CMD...: runs CMD with its whole
# output into a file, then greps the file. Not `CMD | grep -q PATTERN`: grep
# -q quits at the first match, and a CMD still writing then dies of SIGPIPE,
# which pipefail makes a failure. The completion's printf writes a line at a
# time, --upstream first: that failed 64 runs in 500 on a busy machine.
# On a miss it shows what CMD said.
expect_line() {
	local flags=$1 pat=$2 what=$3 rc=0
	shift 3
	"$@" >"$tmp/reply.out" 2>"$tmp/reply.err" || rc=$?
	if [ "$rc" = 0 ] && grep $flags -- "$pat" "$tmp/reply.out" >/dev/null; then
		return 0
	fi
	{
		echo "FAIL: $what: want a line matching '$pat' (grep $flags) from: $*"
		echo "exit status $rc; its output:"
		cat "$tmp/reply.out"
		echo "its stderr:"
		cat "$tmp/reply.err"
	} >&2
	exit 1
}

# ---- build the package: what `make package` runs ----
cpack --config "$BUILD/CPackConfig.cmake" -B "$tmp/pkg" >"$tmp/cpack.out" 2>&1 ||
	{ cat "$tmp/cpack.out"; fail "cpack"; }
DEB=$(ls "$tmp"/pkg/kwire_*.deb)
[ -f "$DEB" ] || fail "no .deb in $tmp/pkg"
dpkg-deb -f "$DEB" Depends >"$tmp/depends"
echo "Depends: $(cat "$tmp/depends")"
# shlibdeps: one dependency per library the binary links, whatever they are.
for lib in $(objdump -p "$BUILD/kwire" | awk '/NEEDED/ {print $2}'); do
	path=$(ldconfig -p | awk -v l="$lib" '$1 == l && !f {print $NF; f = 1}')
	[ -n "$path" ] || continue
	pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1) || true
	[ -z "$pkg" ] && pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1) || true
	[ -n "$pkg" ] || fail "no package owns $path"
	grep -Eq "(^|, )$pkg( |,|$)" "$tmp/depends" || fail "Depends lacks $pkg (for $lib)"
done
dpkg-deb -e "$DEB" "$tmp/control"
diff <(sort "$tmp/control/conffiles") <(printf '/etc/kwire/kwire.yaml\n/etc/logrotate.d/kwire\n') ||
	fail "conffiles"
dpkg-deb -c "$DEB" | awk '{print $NF}' | sed 's,^\.,,' >"$tmp/contents"
for f in /usr/bin/kwire /etc/kwire/kwire.yaml /lib/systemd/system/kwire.service \
	/lib/systemd/system/kwire@.service /lib/systemd/system/kwire-sniff@.service /etc/logrotate.d/kwire \
	/usr/share/doc/kwire/samples/grafana/kwire-dashboard.json \
	/usr/share/doc/kwire/samples/prometheus/kwire-alerts.yml \
	/usr/share/bash-completion/completions/kwire /usr/share/man/man1/kwire.1.gz \
	/usr/share/man/man1/kwire-proxy.1.gz /usr/share/man/man1/kwire-decode.1.gz \
	/usr/share/man/man1/kwire-sniff.1.gz /usr/share/man/man1/kwire-demo.1.gz \
	/usr/share/man/man5/kwire.yaml.5.gz; do
	grep -qx "$f" "$tmp/contents" || fail "the package lacks $f"
done
for page in "$BUILD"/man/*.[1-8]; do
	n=$(basename "$page")
	grep -qx "/usr/share/man/man${n##*.}/$n.gz" "$tmp/contents" || fail "the package lacks the page $n"
done

# ---- what is on the machine before ----
# Not /usr/local or /opt: no package puts files there. dpkg's and apt's own
# records are left out, they remember every package ever installed.
# A file another process removes mid-walk makes find exit 1: not an error here.
snapshot() {
	{ find /etc /usr /lib /var/lib /var/log -xdev \
		-path /usr/local -prune -o -path /var/lib/dpkg -prune -o -path /var/lib/apt -prune -o \
		-path /var/log/apt -prune -o -path /var/log/journal -prune -o -name 'dpkg.log' -prune -o \
		-name 'alternatives.log' -prune -o -print 2>/dev/null || true; } | sort
}
snapshot >"$tmp/before"

dpkg_retry -i "$DEB" || fail "dpkg -i"
expect_line -q "install ok installed" "not installed" dpkg-query -W -f='${Status}\n' kwire
[ "$(readlink -f /usr/bin/kwire)" = /usr/bin/kwire ] || fail "no /usr/bin/kwire"
expect_line -q "^kwire " "installed kwire does not run" /usr/bin/kwire version

# ---- the units ----
U=/lib/systemd/system
# Templates are verified through an instance of them.
mkdir -p "$tmp/units"
cp "$U/kwire.service" "$tmp/units/"
cp "$U/kwire@.service" "$tmp/units/kwire@orders.service"
cp "$U/kwire-sniff@.service" "$tmp/units/kwire-sniff@lo.service"
(cd "$tmp/units" && systemd-analyze verify kwire.service kwire@orders.service \
	kwire-sniff@lo.service) >"$tmp/verify" 2>&1 || { cat "$tmp/verify"; fail "systemd-analyze verify"; }
grep -v "^$" "$tmp/verify" && fail "systemd-analyze verify complains"
for u in kwire.service kwire@.service kwire-sniff@.service; do
	systemd-analyze security --offline=true --threshold=25 "$U/$u" >"$tmp/sec" 2>&1 ||
		{ cat "$tmp/sec"; fail "systemd-analyze security: $u is exposed"; }
	echo "$u: $(grep -o 'Overall exposure level.*' "$tmp/sec")"
done
unit_get() { sed -n "s/^$2=//p" "$1"; }
[ "$(unit_get $U/kwire.service DynamicUser)" = yes ] || fail "kwire.service: DynamicUser"
[ "$(unit_get $U/kwire.service ProtectSystem)" = strict ] || fail "kwire.service: ProtectSystem"
[ "$(unit_get $U/kwire.service NoNewPrivileges)" = yes ] || fail "kwire.service: NoNewPrivileges"
[ -z "$(unit_get $U/kwire.service CapabilityBoundingSet)" ] || fail "kwire.service has capabilities"
[ "$(unit_get "$U/kwire-sniff@.service" CapabilityBoundingSet)" = CAP_NET_RAW ] ||
	fail "kwire-sniff@.service: capabilities other than CAP_NET_RAW"

# ---- a mock cluster, and the packaged config pointed at it ----
# 9>&-: long-lived children must not hold the lock (see flock above).
coproc MCP { exec "$MC" --brokers 3 --topic pkg-topic:2 9>&-; }
MC_PID=$MCP_PID
BOOT=
while read -r -u "${MCP[0]}" line; do
	case "$line" in
	BOOTSTRAP*) BOOT=${line#BOOTSTRAP } ;;
	READY) break ;;
	esac
done
[ -n "$BOOT" ] || fail "mock cluster did not start"
free_port() {
	/usr/bin/python3 -c '
import socket, random
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(500):
    p = random.randint(10000, max(min(lo, 61000) - 10, 12000))
    ss = []
    try:
        for q in range(p, p + 6):
            s = socket.socket(); ss.append(s); s.bind(("127.0.0.1", q))
        print(p); break
    except OSError: pass
    finally:
        for s in ss: s.close()'
}
P=$(free_port)
# The admin port apart from the broker port rule's range (listen + 1 + id).
ADMIN=$(free_port)
while [ "$ADMIN" -ge "$P" ] && [ "$ADMIN" -le $((P + 200)) ]; do ADMIN=$(free_port); done
# The operator's edit: the sample stays, upstream and addresses are set.
sed -i -e "s|^#upstream:|upstream: \"$BOOT\"|" -e '/^#  - kafka-/d' \
	-e "s|^listen: .*|listen: \"127.0.0.1:$P\"|" -e "s|^admin: .*|admin: \"127.0.0.1:$ADMIN\"|" \
	/etc/kwire/kwire.yaml
grep -q "^upstream: \"$BOOT\"" /etc/kwire/kwire.yaml || fail "could not set upstream"

# ---- kwire.service's ExecStart in the unit's sandbox ----
# DynamicUser: a uid from systemd's dynamic range that owns nothing else.
DUID=61999
while getent passwd "$DUID" >/dev/null; do DUID=$((DUID + 1)); done
# LogsDirectory=kwire: made and chowned by systemd before the start.
mkdir -p /var/log/kwire
chown "$DUID:$DUID" /var/log/kwire
chmod "$(unit_get $U/kwire.service LogsDirectoryMode)" /var/log/kwire
read -r -a EXEC <<<"$(unit_get $U/kwire.service ExecStart)"
# A private mount namespace: / read-only (ProtectSystem=strict), the logs
# directory bound writable; then the uid, no groups, no capabilities in any
# set (CapabilityBoundingSet= empty), no-new-privs.
# Run in the background only: it execs, so that the job is kwire itself.
sandbox() {
	local caps=$1
	shift
	exec unshare -m --propagation private /bin/sh -c '
		mount --bind /var/log/kwire /var/log/kwire &&
		mount -o remount,bind,ro / && exec "$@"' sh \
		setpriv --reuid="$DUID" --regid="$DUID" --clear-groups --no-new-privs \
		--inh-caps="$caps" --ambient-caps="$caps" --bounding-set="$caps" -- "$@"
}
sandbox -all "${EXEC[@]}" >"$tmp/px.out" 2>"$tmp/px.err" 9>&- &
PXPID=$!
for _ in $(seq 300); do
	grep -q '^LISTEN ' "$tmp/px.out" 2>/dev/null && break
	kill -0 "$PXPID" 2>/dev/null || break
	sleep 0.1
done
grep -q "^LISTEN 127.0.0.1:$P" "$tmp/px.out" || { cat "$tmp/px.err"; fail "the unit's proxy did not start"; }
echo "kwire.service's ExecStart runs: uid $DUID, no capabilities, no_new_privs, / read-only"
# unshare, sh and setpriv each exec the next: the job is kwire itself.
KPID=$PXPID
[ "$(readlink "/proc/$KPID/exe")" = /usr/bin/kwire ] || fail "the unit's process is not /usr/bin/kwire"
grep -q "^Uid:.*$DUID" "/proc/$KPID/status" || fail "kwire does not run as $DUID"
grep -q "^CapEff:.*0000000000000000" "/proc/$KPID/status" || fail "kwire has capabilities"
grep -q "^NoNewPrivs:.*1" "/proc/$KPID/status" || fail "kwire without no_new_privs"
# ProtectSystem=strict: in kwire's mount namespace even root cannot write
# outside the logs directory.
nsenter -t "$KPID" -m touch /usr/kwire-ro-probe 2>"$tmp/ro" && fail "the sandbox can write /usr"
grep -q "Read-only" "$tmp/ro" || fail "writing /usr in the sandbox: $(cat "$tmp/ro")"
nsenter -t "$KPID" -m touch /var/log/kwire/ro-probe || fail "the sandbox cannot write its logs"
rm -f /var/log/kwire/ro-probe

# A client through the installed, sandboxed proxy.
seq 1 200 | sed 's/^/pkg-/' |
	timeout 60 kcat -b "127.0.0.1:$P" -P -t pkg-topic -X message.timeout.ms=20000 2>"$tmp/kp" ||
	fail "kcat produce through the packaged kwire: $(cat "$tmp/kp")"
n=$(timeout 60 kcat -b "127.0.0.1:$P" -C -t pkg-topic -o beginning -e -q 2>"$tmp/kc" | grep -c '^pkg-' || true)
[ "$n" = 200 ] || fail "consumed $n of 200 through the packaged kwire: $(cat "$tmp/kc")"
curl -sf "http://127.0.0.1:$ADMIN/metrics" >"$tmp/metrics" || fail "no /metrics"
grep -q '^kwire_' "$tmp/metrics" || fail "/metrics has no kwire_ series"
for _ in $(seq 300); do [ -s /var/log/kwire/access.log ] && break; sleep 0.1; done
grep -q '"api":"Produce"\|Produce' /var/log/kwire/access.log || fail "no Produce in the access log"
[ "$(stat -c %u /var/log/kwire/access.log)" = "$DUID" ] || fail "access log not owned by the service user"
echo "kcat produced and consumed 200 messages through it; /metrics and the access log filled"

# ---- logrotate, with its postrotate SIGHUP ----
mkdir -p "$tmp/bin"
cat >"$tmp/bin/systemctl" <<EOF
#!/bin/sh
# Shim: no systemd is PID 1 here. 'kill --kill-whom=main --signal=HUP kwire.service'
# becomes a SIGHUP to the kwire process this test runs as that unit.
[ "\$*" = "kill --kill-whom=main --signal=HUP kwire.service" ] || exit 1
echo "\$*" >>"$tmp/systemctl.calls"
exec kill -HUP $KPID
EOF
chmod +x "$tmp/bin/systemctl"
before=$(wc -l </var/log/kwire/access.log)
PATH="$tmp/bin:$PATH" logrotate -f -s "$tmp/lr.state" /etc/logrotate.d/kwire 2>"$tmp/lr.err" ||
	{ cat "$tmp/lr.err"; fail "logrotate"; }
[ -s "$tmp/systemctl.calls" ] || fail "logrotate's postrotate did not signal kwire"
[ -f /var/log/kwire/access.log.1 ] || fail "logrotate did not rotate access.log"
[ "$(wc -l </var/log/kwire/access.log.1)" -ge "$before" ] || fail "rotated log lost lines"
timeout 30 kcat -b "127.0.0.1:$P" -L >/dev/null 2>&1 || fail "proxy not serving after the rotation"
for _ in $(seq 300); do [ -s /var/log/kwire/access.log ] && break; sleep 0.1; done
[ -s /var/log/kwire/access.log ] || fail "kwire did not reopen access.log after SIGHUP"
[ "$(stat -c %u /var/log/kwire/access.log)" = "$DUID" ] || fail "reopened log not owned by the service user"
echo "logrotate rotated the access log; the postrotate SIGHUP made kwire reopen it"

# ---- kwire-sniff@lo.service's ExecStart, CAP_NET_RAW only ----
read -r -a SEXEC <<<"$(unit_get "$U/kwire-sniff@.service" ExecStart | sed -e 's/%I/lo/g' -e 's/ \$KWIRE_SNIFF_ARGS//')"
sandbox -all,+net_raw "${SEXEC[@]}" -p "$P" -p $((P + 2)) -p $((P + 3)) -p $((P + 4)) \
	>"$tmp/sn.out" 2>"$tmp/sn.err" 9>&- &
SNPID=$!
# Ready when its packet socket exists (the job is kwire itself: sandbox execs).
sniff_ready() {
	local ino
	for ino in $(ls -l "/proc/$SNPID/fd" 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p'); do
		awk -v i="$ino" '$9 == i {f = 1} END {exit !f}' /proc/net/packet && return 0
	done
	return 1
}
for _ in $(seq 300); do
	sniff_ready && break
	kill -0 "$SNPID" 2>/dev/null || break
	sleep 0.1
done
sniff_ready || { cat "$tmp/sn.err"; fail "the sniff unit's command did not open a capture"; }
sleep 0.3
timeout 30 kcat -b "127.0.0.1:$P" -L -t pkg-topic >/dev/null 2>&1 || fail "kcat -L while sniffing"
sleep 0.5
SKPID=$SNPID
[ "$(readlink "/proc/$SKPID/exe")" = /usr/bin/kwire ] || fail "the sniff job is not /usr/bin/kwire"
grep -q "^CapEff:.*0000000000002000" "/proc/$SKPID/status" || fail "sniff does not hold exactly CAP_NET_RAW"
kill -INT "$SKPID"
wait "$SNPID" || fail "sniff exited non-zero: $(cat "$tmp/sn.err")"
SNPID=
grep -q "Metadata" "$tmp/sn.out" || fail "the sniff unit decoded no Metadata: $(head -5 "$tmp/sn.out")"
grep -q "== kwire capture statistics" "$tmp/sn.out" || fail "no stats report at SIGINT"
echo "kwire-sniff@lo's ExecStart decoded lo with CAP_NET_RAW only"

# ---- stop the proxy as systemd would (KillSignal=SIGTERM) ----
kill -TERM "$KPID"
rc=0
wait "$PXPID" || rc=$?
PXPID=
[ "$rc" = 0 ] || fail "kwire exited $rc on SIGTERM"

# ---- man pages and completion, where they were installed ----
expect_line -q /usr/share/man/man1/kwire-proxy.1.gz "man kwire-proxy not found" man -w kwire-proxy
expect_line -q /usr/share/man/man5/kwire.yaml.5.gz "man 5 kwire.yaml not found" man -w 5 kwire.yaml
expect_line -q access_log_format "man kwire.yaml" env MANWIDTH=80 man kwire.yaml
complete_words() {
	bash -c 'source /usr/share/bash-completion/completions/kwire
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _kwire
		printf "%s\n" "${COMPREPLY[@]}"' sh "$@"
}
expect_line -qx proxy "completion: kwire pro" complete_words kwire pro
expect_line -qx --upstream "completion: --upst" complete_words kwire proxy --upst
expect_line -qx lo "completion: sniff -i" complete_words kwire sniff -i ""
for f in $(complete_words kwire decode --format ""); do
	/usr/bin/kwire decode --format "$f" -o "$tmp/o.$f" "${KWIRE_DATA:?}/clients/kcat.pcapng" \
		>/dev/null 2>&1 || /usr/bin/kwire decode --format "$f" "$KWIRE_DATA/clients/kcat.pcapng" \
		>/dev/null 2>&1 || fail "completion offers --format $f, which kwire decode rejects"
done

# ---- purge: nothing left behind ----
dpkg_retry --purge kwire || fail "dpkg --purge"
dpkg-query -W -f='${Status}' kwire 2>/dev/null | grep -q "installed\|config-files" &&
	fail "kwire still known to dpkg after purge"
snapshot >"$tmp/after"
# Another package installed meanwhile (the machine is shared) is not ours:
# a new path some other installed package owns is ignored.
comm -13 "$tmp/before" "$tmp/after" | while read -r f; do
	dpkg -S "$f" >/dev/null 2>&1 || echo "left behind: $f"
done >"$tmp/left"
comm -23 "$tmp/before" "$tmp/after" | while read -r f; do
	dpkg -S "$f" >/dev/null 2>&1 && echo "removed: $f"
done >>"$tmp/left"
if [ -s "$tmp/left" ]; then
	cat "$tmp/left"
	fail "install + purge did not leave the machine as it was"
fi
echo "ok: $(basename "$DEB") built, installed, served kcat under the unit's sandbox, purged clean"
