#!/usr/bin/env bash
# Builds the suite's second peer, librdkafka 2.12.0, once, into a cache
# outside the clone. Called by tools/install-deps.sh; idempotent and quiet
# when the build is there.
#
# Where it comes from: the npm package node-rdkafka@3.6.1 bundles the
# librdkafka 2.12.0 source tree (deps/librdkafka). npm only fetches the
# package (--ignore-scripts: npm 11 would skip the install script anyway
# unless allowed, and the Node binding is not needed); the library is then
# built the way node-rdkafka's own binding.gyp does it (its ./configure with
# prefix and libdir build/deps, then make libs install), so nothing is
# downloaded but the npm tarball and no Node headers are needed.
#
# Result (docs/peers.md):
#   $KWIRE_CACHE/node-rdkafka/node_modules/node-rdkafka/build/deps/librdkafka.so.1
#   $KWIRE_CACHE/node-rdkafka/node_modules/node-rdkafka/build/deps/include/librdkafka/
# KWIRE_CACHE defaults to ~/.cache/kwire (CMake looks in the same place).
# --print-dir prints the library folder and exits (1 when it is not built).
set -euo pipefail

NRD_VERSION=3.6.1
RDK_VERSION=2.12.0
STAMP_TEXT="node-rdkafka@$NRD_VERSION librdkafka $RDK_VERSION"

CACHE=${KWIRE_CACHE:-$HOME/.cache/kwire}
TOP=$CACHE/node-rdkafka
PKG=$TOP/node_modules/node-rdkafka
LIB=$PKG/build/deps
STAMP=$TOP/.kwire-stamp
LOG=$TOP/build.log
JOBS=${JOBS:-2}

die() {
	echo "install-rdkafka-modern: $*" >&2
	exit 1
}

# A build is good when the library exports the mock cluster API, its
# headers are there and pkg-config says it is the version we want.
good() {
	local syms
	[ -f "$LIB/librdkafka.so.1" ] && [ -f "$LIB/include/librdkafka/rdkafka_mock.h" ] &&
		grep -qx "Version: $RDK_VERSION" "$LIB/pkgconfig/rdkafka.pc" 2>/dev/null || return 1
	# Not "nm | grep -q": grep stopping early would SIGPIPE nm, and
	# pipefail would turn a match into a failure.
	syms=$(nm -D --defined-only "$LIB/librdkafka.so.1" 2>/dev/null) || return 1
	grep -qw rd_kafka_mock_cluster_new <<<"$syms"
}

if [ "${1:-}" = --print-dir ]; then
	[ "$(cat "$STAMP" 2>/dev/null)" = "$STAMP_TEXT" ] && good || exit 1
	echo "$LIB"
	exit 0
fi

# Fast path: nothing to do, say nothing.
[ "$(cat "$STAMP" 2>/dev/null)" = "$STAMP_TEXT" ] && good && exit 0

for t in npm make cc c++ nm; do
	command -v "$t" >/dev/null || die "$t not found (tools/install-deps.sh installs it)"
done
mkdir -p "$CACHE"
# Two installs at once (make build and make test-sanitize in parallel)
# must not build in the same folder: the second waits for the first.
exec 9>"$CACHE/.node-rdkafka.lock"
flock 9
[ "$(cat "$STAMP" 2>/dev/null)" = "$STAMP_TEXT" ] && good && exit 0

# A finished build without our stamp (made by hand the same way) is kept.
if good; then
	echo "$STAMP_TEXT" >"$STAMP"
	exit 0
fi

echo "install-rdkafka-modern: building librdkafka $RDK_VERSION (node-rdkafka@$NRD_VERSION)" \
	"into $TOP; this takes a few minutes, log in $LOG" >&2
rm -rf "$TOP"
mkdir -p "$TOP"
fail() {
	tail -30 "$LOG" >&2 || true
	die "$* (full log: $LOG)"
}
(
	cd "$TOP"
	echo '{"private": true}' >package.json
	npm install --ignore-scripts --no-audit --no-fund --loglevel=error \
		"node-rdkafka@$NRD_VERSION"
) >"$LOG" 2>&1 || fail "npm install node-rdkafka@$NRD_VERSION failed"
[ -x "$PKG/configure" ] && [ -d "$PKG/deps/librdkafka/src" ] ||
	fail "node-rdkafka@$NRD_VERSION has no bundled librdkafka source"
(
	cd "$PKG"
	./configure
	make -C deps/librdkafka -j "$JOBS" libs
	make -C deps/librdkafka install
) >>"$LOG" 2>&1 || fail "building librdkafka $RDK_VERSION failed"
good || fail "built, but $LIB/librdkafka.so.1 is not librdkafka $RDK_VERSION with the mock cluster"
echo "$STAMP_TEXT" >"$STAMP"
echo "install-rdkafka-modern: librdkafka $RDK_VERSION ready in $LIB" >&2
