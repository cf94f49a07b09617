#!/usr/bin/env bash
# Installs the Kafka clients that share no code with librdkafka, for the
# tests (tests/integration/test_proxy_kafkajs.py, test_proxy_sarama.py) and
# tools/capture-clients.sh:
#   ~/.cache/kwire/node-clients   kafkajs and its codecs, as pinned by
#                                 tools/clients/kafkajs/package-lock.json
#   ~/.cache/kwire/bin/kwire-sarama-client
#                                 tools/clients/sarama/ built against Debian's
#                                 sarama (GO111MODULE=off, GOPATH=/usr/share/gocode)
# Called by tools/install-deps.sh. Idempotent and quiet when everything is in
# place: each part is redone only when its inputs (the lock file, the Go
# sources) changed, which a stamp file with their SHA-256 tells.
# KWIRE_CACHE moves the cache (default ~/.cache/kwire).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${KWIRE_CACHE:-$HOME/.cache/kwire}
PKGS=(nodejs build-essential golang-go golang-github-shopify-sarama-dev libzstd-dev)

die() {
  echo "install-clients: $*" >&2
  exit 1
}

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Debian's npm comes with Debian's nodejs; a nodejs from elsewhere brings its own.
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-clients: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# stamp_ok STAMP HASH: the part was built from inputs with this hash.
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# --- kafkajs ---------------------------------------------------------------
# npm ci from the committed lock: exact versions of everything. The one
# install script is lz4's node-gyp build of its bindings (kafkajs-lz4 needs
# them; the package ships macOS binaries only), which uses the C++ compiler
# and Node's own headers. A round trip through every codec checks the result.
NODE_DIR=$CACHE/node-clients
NODE_SMOKE='
const snappy = require("kafkajs-snappy")(), lz4 = new (require("kafkajs-lz4"))().codec();
const { ZstdCodec } = require("zstd-codec");
const data = Buffer.from("kwire ".repeat(100));
(async () => {
  for (const c of [snappy, lz4]) {
    const out = await c.decompress(await c.compress({ buffer: data }));
    if (!data.equals(out)) throw new Error("codec round trip failed");
  }
  ZstdCodec.run((z) => {
    const s = new z.Simple();
    if (!data.equals(Buffer.from(s.decompress(s.compress(data, 3))))) throw new Error("zstd");
  });
})().catch((e) => { console.error(e); process.exit(1); });
'
node_hash=$(cat "$HERE/clients/kafkajs/package.json" "$HERE/clients/kafkajs/package-lock.json" |
  sha256sum | cut -d' ' -f1)
if ! stamp_ok "$NODE_DIR/.kwire-stamp" "$node_hash" || [ ! -d "$NODE_DIR/node_modules/kafkajs" ]; then
  echo "install-clients: installing kafkajs into $NODE_DIR" >&2
  mkdir -p "$NODE_DIR"
  rm -f "$NODE_DIR/.kwire-stamp"
  cp "$HERE/clients/kafkajs/package.json" "$HERE/clients/kafkajs/package-lock.json" "$NODE_DIR/"
  log=$(mktemp)
  if ! (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error &&
    node -e "$NODE_SMOKE") >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "npm ci failed in $NODE_DIR"
  fi
  rm -f "$log"
  echo "$node_hash" >"$NODE_DIR/.kwire-stamp"
fi

# --- sarama ----------------------------------------------------------------
BIN_DIR=$CACHE/bin
SARAMA_BIN=$BIN_DIR/kwire-sarama-client
go_hash=$( (
  cd "$HERE/clients/sarama"
  sha256sum -- *.go
  go version
  dpkg-query -W -f='${Version}\n' golang-github-shopify-sarama-dev
) | sha256sum | cut -d' ' -f1)
if ! stamp_ok "$SARAMA_BIN.stamp" "$go_hash" || [ ! -x "$SARAMA_BIN" ]; then
  echo "install-clients: building $SARAMA_BIN" >&2
  mkdir -p "$BIN_DIR"
  rm -f "$SARAMA_BIN.stamp"
  log=$(mktemp)
  # Debian's Go libraries are a GOPATH tree; DataDog/zstd (sarama's zstd) is
  # cgo against the system libzstd, whose deprecation warnings are noise here.
  if ! (cd "$HERE/clients/sarama" &&
    GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS='' GOCACHE=$CACHE/go-build \
      CGO_CFLAGS="-O2 -Wno-deprecated-declarations" \
      go build -o "$SARAMA_BIN.tmp" .) >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "building tools/clients/sarama failed"
  fi
  rm -f "$log"
  mv "$SARAMA_BIN.tmp" "$SARAMA_BIN"
  echo "$go_hash" >"$SARAMA_BIN.stamp"
fi
