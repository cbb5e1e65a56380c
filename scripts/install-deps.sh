#!/usr/bin/env bash
# Installs what rvs needs on Debian 12, only if something is missing.
# Rust itself (cargo, rustc >= 1.80) must already be there.
set -euo pipefail
PKGS=(pkg-config libdpdk-dev dpdk dpdk-dev libclang-dev clang llvm libbpf-dev
      iproute2 ethtool curl socat iputils-ping procps python3 libpcap-dev tcpdump keepalived hping3
      wrk python3-scapy)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "install-deps: cargo not found: install Rust (rustup) first" >&2; exit 1; }
pkg-config --atleast-version=22.11 libdpdk || { echo "install-deps: libdpdk >= 22.11 not found" >&2; exit 1; }
echo "install-deps: ok (DPDK $(pkg-config --modversion libdpdk), $(cargo --version))"
