#!/usr/bin/env bash
# Installs the Debian packages kwire needs to build, test and run its demo.
# Idempotent and quiet when everything is present.
set -euo pipefail
"$(dirname "$0")/install-clients.sh"  # kafkajs and sarama (tools/install-clients.sh)

PKGS=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libevent-dev libssl-dev libpcap-dev libyaml-dev
  zlib1g-dev liblz4-dev libzstd-dev libsnappy-dev
  libcmocka-dev librdkafka-dev
  kcat tshark python3 python3-kafka python3-confluent-kafka
  python3-lz4 python3-snappy python3-zstandard iproute2 haproxy openssl
  python3-jwt python3-cryptography
  logrotate chromium binutils
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# promtool checks samples/prometheus/kwire-alerts.yml (test_samples.py). Only
# the binary is taken from Debian's prometheus package, into the cache: the
# whole package would add a server, its user and its service to the machine.
PROMTOOL=${KWIRE_CACHE:-$HOME/.cache/kwire}/promtool/promtool
install_promtool() {
  local d
  d=$(mktemp -d)
  chmod 755 "$d" # apt-get download runs as _apt
  (cd "$d" && apt-get download -qq prometheus 2>/dev/null) ||
    { ${SUDO:-} apt-get update -qq && (cd "$d" && apt-get download -qq prometheus); }
  mkdir -p "$(dirname "$PROMTOOL")"
  dpkg-deb --fsys-tarfile "$d"/prometheus_*.deb | tar -x -O ./usr/bin/promtool >"$PROMTOOL.tmp"
  chmod 755 "$PROMTOOL.tmp" && mv "$PROMTOOL.tmp" "$PROMTOOL"
  rm -rf "$d"
}

# npm fetches the second peer's source. Any npm will do: Debian's, or the
# one bundled with a nodejs from elsewhere (which Debian's npm conflicts with).
command -v npm >/dev/null || missing+=(npm)
# The second peer (librdkafka 2.12.0, built once into ~/.cache/kwire).
modern_peer() { "$(dirname "$0")/install-rdkafka-modern.sh"; }
if [ ${#missing[@]} -eq 0 ]; then
  [ -x "$PROMTOOL" ] || install_promtool
  modern_peer
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer no without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ -x "$PROMTOOL" ] || install_promtool
modern_peer
