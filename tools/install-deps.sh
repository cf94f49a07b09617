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
  python3-lz4 python3-snappy python3-zstandard iproute2
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

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
