#!/usr/bin/env bash
# Prepares a real server for LVS-DR or LVS-TUN, as an LVS operator does by hand.
#   realserver.sh start|stop dr  VIP
#   realserver.sh start|stop tun VIP [--xdp IFACE]
# DR:  the VIP on lo (/32), so the server accepts packets for it, with ARP for it
#      suppressed (arp_ignore=1, arp_announce=2) so only the director answers.
# TUN: the VIP on tunl0 (needs the ipip module) with rp_filter relaxed, because
#      the decapsulated packet arrives on tunl0 from a client that routes via eth0.
#      --xdp IFACE: for kernels without ipip (as in rvs's test lab): decapsulate
#      with scripts/xdp/decap.c on IFACE instead, and put the VIP on lo.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
usage() { echo "usage: $0 start|stop dr|tun VIP [--xdp IFACE]" >&2; exit 2; }
[ $# -ge 3 ] || usage
action=$1 mode=$2 vip=$3; shift 3
xdp_if=""
if [ "${1:-}" = "--xdp" ]; then xdp_if=${2:?--xdp needs an interface}; fi
[[ $vip =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "bad VIP '$vip'" >&2; exit 2; }

arp_sysctls() {
  local v_ignore=$1 v_announce=$2
  for dev in all lo; do
    sysctl -qw "net.ipv4.conf.$dev.arp_ignore=$v_ignore" "net.ipv4.conf.$dev.arp_announce=$v_announce"
  done
}

decap_obj() {
  local obj="${RVS_DECAP_OBJ:-/tmp/rvs-decap.o}"
  if [ ! -s "$obj" ] || [ "$here/xdp/decap.c" -nt "$obj" ]; then
    clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c "$here/xdp/decap.c" -o "$obj"
  fi
  echo "$obj"
}

case "$action/$mode" in
  start/dr)
    ip addr replace "$vip/32" dev lo
    arp_sysctls 1 2 ;;
  stop/dr)
    ip addr del "$vip/32" dev lo 2>/dev/null || true
    arp_sysctls 0 0 ;;
  start/tun)
    if [ -n "$xdp_if" ]; then
      ip link set dev "$xdp_if" xdp obj "$(decap_obj)" sec xdp
      ip addr replace "$vip/32" dev lo
      sysctl -qw "net.ipv4.conf.$xdp_if.rp_filter=0"
    else
      modprobe ipip
      ip link set tunl0 up
      ip addr replace "$vip/32" dev tunl0
      sysctl -qw net.ipv4.conf.tunl0.rp_filter=0
    fi
    sysctl -qw net.ipv4.conf.all.rp_filter=0
    arp_sysctls 1 2 ;;
  stop/tun)
    if [ -n "$xdp_if" ]; then
      ip link set dev "$xdp_if" xdp off 2>/dev/null || true
      ip addr del "$vip/32" dev lo 2>/dev/null || true
    else
      ip addr del "$vip/32" dev tunl0 2>/dev/null || true
    fi
    arp_sysctls 0 0 ;;
  *) usage ;;
esac
