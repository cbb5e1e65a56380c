#!/usr/bin/env bash
# A netns lab: a client, the director running rvs-dp on af_packet vdevs, and
# three real servers (HTTP on :80 naming themselves, UDP echo on :53).
#
#   lab.sh up [nat|dr|tun|fnat|fnat1] [--workers N] [--conn-capacity N]
#                                          build it and start rvs-dp (conn_capacity:
#                                          per worker, 65536 unless given)
#   lab.sh down                            remove everything it made
#   lab.sh exec NODE CMD...                run CMD in c | d | s1 | s2 | s3
#
# nat: two arms. client 10.1.0.10 -- d0 [director 10.1.0.1 | 10.2.0.1] d1 -- bridge -- s1..s3 10.2.0.11-13,
#      whose gateway is the director. VIP 10.1.0.100.
# dr:  one arm. client, director d0 (10.1.0.1) and s1..s3 (10.1.0.11-13) on one bridge;
#      the VIP 10.1.0.100 also on each server's lo, with ARP for it suppressed.
# tun: as dr, but the director sends IP-in-IP; the servers decapsulate with XDP
#      (this kernel has no ipip module) and hold the VIP on lo. MTU 1520 inside.
# fnat: as nat, but the servers have no default route: nothing to the clients,
#      only their own subnet, where FULLNAT's local addresses (10.2.0.200-254) live.
# fnat1: one arm, as dr's bridge, but the servers hold 10.1.0.11-13/32 and a route
#      to 10.1.0.200/29 only (FULLNAT's local addresses): no route to the client,
#      though on its link. rp_filter off, so they answer the director's ARP.
# The director's kernel holds no addresses: rvs-dp owns d0/d1 through af_packet.
# nat also gives the director's kernel a management address, 10.2.0.2 on m0,
# on the servers' bridge, for rvs-cp's health checks.
# Only addresses inside these namespaces are used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
# RVS_LAB names this lab (namespaces RVS_LAB-c, -d, -sw, -s1..3, its state,
# control region and EAL prefix), so two labs can run side by side.
L=${RVS_LAB:-rvs}
state=${RVS_LAB_DIR:-/tmp/$L-lab}
NS_C=$L-c NS_D=$L-d NS_SW=$L-sw
SERVERS=(s1 s2 s3)
VIP=10.1.0.100
RVS_DP=${RVS_DP:-${CARGO_TARGET_DIR:-$root/target}/release/rvs-dp}
RVSADM=${RVSADM:-${CARGO_TARGET_DIR:-$root/target}/release/rvsadm}
# In a root-owned directory of the lab's own, like the default /run/rvs (rvs-dp
# creates it with mode 0700): not the world-writable /dev/shm, where any local
# user could create the name first (rvs-dp would then refuse to start).
CTL=/run/$L-lab/rvs.ctl

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
quiet_if() {  # no IPv6 chatter, no offloads: af_packet must see real, complete frames
  local ns=$1 dev=$2
  nsx "$ns" sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1" 2>/dev/null || true
  nsx "$ns" ethtool -K "$dev" tx off tso off gso off gro off >/dev/null 2>&1 || true
}
mkveth() {  # mkveth NS_A DEV_A NS_B DEV_B MTU
  ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
  for pair in "$1 $2" "$3 $4"; do
    set -- $pair
    nsx "$1" ip link set "$2" mtu "$MTU" up
    quiet_if "$1" "$2"
  done
}

# Starts rvs-dp in the director namespace. `ip netns exec` execs, so $! is
# rvs-dp's own pid (a shell function in the background would be a subshell).
start_dp() {
  RVS_CTL="$CTL" ip netns exec "$NS_D" "$RVS_DP" -l "$1" --no-huge -m 1024 --no-pci \
    --file-prefix $L-lab --log-level=lib.eal:error -- --config "$state/rvs.toml" \
    >>"$state/dp.log" 2>&1 </dev/null &
  echo $! > "$state/dp.pid"
  echo "$1" > "$state/lcores"
}

stop_dp() {
  [ -f "$state/dp.pid" ] || return 0
  local pid; pid=$(cat "$state/dp.pid")
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$state/dp.pid"
}

down() {
  stop_dp
  for ns in "$NS_C" "$NS_D" "$NS_SW" "${SERVERS[@]/#/$L-}"; do
    if ip netns pids "$ns" >/dev/null 2>&1; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  rm -f "$CTL" /tmp/$L-lab-s*.fail
  rmdir "$(dirname "$CTL")" 2>/dev/null || true
  # Keep the director's log (its final counters) for whoever inspects the run.
  if [ -f "$state/dp.log" ]; then cp "$state/dp.log" /tmp/$L-lab-last-dp.log; fi
  rm -rf "$state"
}

up() {
  local mode=${1:-nat}; shift || true
  local workers=1 capacity=65536
  while [ $# -gt 0 ]; do
    case $1 in
      --workers) workers=$2; shift 2 ;;
      --conn-capacity) capacity=$2; shift 2 ;;
      *) echo "unknown option $1" >&2; exit 2 ;;
    esac
  done
  case $mode in nat|dr|tun|fnat|fnat1) ;; *) echo "mode must be nat, dr, tun, fnat or fnat1" >&2; exit 2 ;; esac
  [ -x "$RVS_DP" ] || { echo "no rvs-dp at $RVS_DP: cargo build --release --features dpdk" >&2; exit 1; }
  down
  mkdir -p "$state"
  echo "$mode" > "$state/mode"
  for ns in "$NS_C" "$NS_D" "$NS_SW" "${SERVERS[@]/#/$L-}"; do
    ip netns add "$ns"
    nsx "$ns" ip link set lo up
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  nsx "$NS_SW" ip link add br0 type bridge
  nsx "$NS_SW" ip link set br0 up
  MTU=1500
  [ "$mode" = tun ] && MTU=1520
  local qp=""
  [ "$workers" -gt 1 ] && qp=",qpairs=$workers"
  local i=0
  if [ "$mode" = nat ] || [ "$mode" = fnat ]; then
    MTU=1500 mkveth "$NS_C" eth0 "$NS_D" d0 1500
    nsx "$NS_C" ip link set eth0 address 02:00:0a:01:00:0a
    nsx "$NS_C" ip addr add 10.1.0.10/24 dev eth0
    nsx "$NS_C" ip route add default via 10.1.0.1
    mkveth "$NS_D" d1 "$NS_SW" bd1
    nsx "$NS_SW" ip link set bd1 master br0
    # A management interface for the director's kernel (health checks by
    # rvs-cp), as a real director keeps one beside its DPDK ports.
    mkveth "$NS_D" m0 "$NS_SW" bm0
    nsx "$NS_SW" ip link set bm0 master br0
    nsx "$NS_D" ip addr add 10.2.0.2/24 dev m0
    for s in "${SERVERS[@]}"; do
      i=$((i + 1))
      mkveth "$L-$s" eth0 "$NS_SW" "b$s"
      nsx "$NS_SW" ip link set "b$s" master br0
      nsx "$L-$s" ip addr add "10.2.0.1$i/24" dev eth0
      [ "$mode" = fnat ] || nsx "$L-$s" ip route add default via 10.2.0.1
    done
  else
    mkveth "$NS_C" eth0 "$NS_SW" bc
    nsx "$NS_SW" ip link set bc master br0
    nsx "$NS_C" ip link set eth0 mtu 1500
    nsx "$NS_C" ip addr add 10.1.0.10/24 dev eth0
    mkveth "$NS_D" d0 "$NS_SW" bd0
    nsx "$NS_SW" ip link set bd0 master br0
    for s in "${SERVERS[@]}"; do
      i=$((i + 1))
      mkveth "$L-$s" eth0 "$NS_SW" "b$s"
      nsx "$NS_SW" ip link set "b$s" master br0
      if [ "$mode" = fnat1 ]; then
        nsx "$L-$s" ip addr add "10.1.0.1$i/32" dev eth0
        nsx "$L-$s" ip route add 10.1.0.200/29 dev eth0
        nsx "$L-$s" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
        continue
      fi
      nsx "$L-$s" ip addr add "10.1.0.1$i/24" dev eth0
      if [ "$mode" = dr ]; then
        nsx "$L-$s" "$here/realserver.sh" start dr "$VIP"
      else
        nsx "$L-$s" "$here/realserver.sh" start tun "$VIP" --xdp eth0
      fi
    done
  fi
  i=0
  for s in "${SERVERS[@]}"; do
    i=$((i + 1))
    nsx "$L-$s" nohup python3 "$here/rs_server.py" "$s" 80 53 "/tmp/$L-lab-$s.fail" \
      >"$state/$s.log" 2>&1 &
  done

  # The director's config.
  local lcores wlist
  if [ "$workers" -gt 1 ]; then
    lcores="0-$((workers - 1))"
    wlist=$(seq -s, 0 $((workers - 1)))
  else
    lcores=1
    wlist=1
  fi
  {
    echo "[dataplane]"
    echo "workers = [$wlist]"
    echo "conn_capacity = $capacity"
    echo "idle_sleep_us = 20"
    echo
    if [ "$mode" = nat ] || [ "$mode" = fnat ]; then
      printf '[[port]]\nname = "client"\ndevice = "net_af_packet0,iface=d0%s"\naddress = "10.1.0.1/24"\n\n' "$qp"
      printf '[[port]]\nname = "servers"\ndevice = "net_af_packet1,iface=d1%s"\naddress = "10.2.0.1/24"\n' "$qp"
    else
      printf '[[port]]\nname = "lan"\ndevice = "net_af_packet0,iface=d0%s"\naddress = "10.1.0.1/24"\nmtu = %s\n' "$qp" "$MTU"
    fi
  } > "$state/rvs.toml"
  start_dp "$lcores"

  for _ in $(seq 100); do
    if RVS_CTL=$CTL "$RVSADM" -Ln >/dev/null 2>&1; then break; fi
    if ! kill -0 "$(cat "$state/dp.pid")" 2>/dev/null; then
      echo "rvs-dp exited:" >&2; cat "$state/dp.log" >&2; exit 1
    fi
    sleep 0.2
  done
  RVS_CTL=$CTL "$RVSADM" -Ln >/dev/null || { echo "rvs-dp did not come up:" >&2; cat "$state/dp.log" >&2; exit 1; }
  for s in "${SERVERS[@]}"; do   # wait for the servers to listen
    for _ in $(seq 50); do
      nsx "$L-$s" bash -c 'exec 3<>/dev/tcp/127.0.0.1/80' 2>/dev/null && break
      sleep 0.1
    done
  done
  echo "lab up: mode=$mode workers=$workers VIP=$VIP ctl=$CTL (logs in $state)"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  restart-dp)   # restart rvs-dp with the lab's (possibly edited) config
    stop_dp; start_dp "$(cat "$state/lcores")"; sleep 1 ;;
  exec)
    node=${2:?node}; shift 2
    case $node in c) ns=$NS_C ;; d) ns=$NS_D ;; s[123]) ns=$L-$node ;; *) echo "node: c d s1 s2 s3" >&2; exit 2 ;; esac
    nsx "$ns" "$@" ;;
  *) echo "usage: $0 up [nat|dr|tun|fnat|fnat1] [--workers N] [--conn-capacity N] | down | exec NODE CMD..." >&2; exit 2 ;;
esac
