#!/usr/bin/env bash
# af_packet and TX checksum offload. A veth with TX checksum offload on (the
# veth default) hands net_af_packet TCP/UDP frames whose L4 checksum is only
# the pseudo-header sum; rvs-dp forwards them and the next kernel drops them
# silently. rvs-dp must count them (rx_l4_csum_bad) and log, once, a hint
# naming the interface and `ethtool -K <iface> tx off`. With the offload off:
# frames are verified, none is bad, no hint.
#
# Its own two namespaces (client and director, one veth), named after this
# shell's pid so it never touches the shared lab; torn down on exit.
source "$(dirname "$0")/lib.sh"
NS_C=rvs-ck$$-c
NS_D=rvs-ck$$-d
work=$(mktemp -d /tmp/rvs-e2e-csum.XXXXXX)
dp_pid=""
cleanup() {
  if [ -n "$dp_pid" ]; then kill -KILL "$dp_pid" 2>/dev/null || true; wait "$dp_pid" 2>/dev/null || true; fi
  for ns in "$NS_C" "$NS_D"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
[ -x "$RVS_DP" ] || die "no rvs-dp at $RVS_DP: cargo build --release -p rvs-dp --features dpdk"

# run_case on|off: builds the pair, runs rvs-dp on d0, sends UDP and TCP from
# the client with its eth0's TX checksum offload on or off, stops rvs-dp and
# leaves its output in $work/dp-$1.log.
run_case() {
  local tx=$1 log="$work/dp-$1.log"
  for ns in "$NS_C" "$NS_D"; do
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  ip link add eth0 netns "$NS_C" type veth peer name d0 netns "$NS_D"
  ip netns exec "$NS_D" ethtool -K d0 tx off tso off gso off gro off >/dev/null
  ip netns exec "$NS_C" ethtool -K eth0 tx "$tx" tso off gso off gro off >/dev/null
  ip netns exec "$NS_C" ethtool -k eth0 | grep -q "^tx-checksumming: $tx" || die "eth0 tx checksumming is not $tx"
  ip netns exec "$NS_D" ip link set d0 up
  ip netns exec "$NS_C" ip link set eth0 up
  ip netns exec "$NS_C" ip addr add 10.7.0.10/24 dev eth0
  local dmac; dmac=$(ip netns exec "$NS_D" cat /sys/class/net/d0/address)
  ip netns exec "$NS_C" ip neigh replace 10.7.0.1 lladdr "$dmac" dev eth0 nud permanent
  cat >"$work/rvs.toml" <<EOF
[dataplane]
workers = [0]
conn_capacity = 4096
idle_sleep_us = 20

[[port]]
name = "client"
device = "net_af_packet0,iface=d0"
address = "10.7.0.1/24"
EOF
  ip netns exec "$NS_D" "$RVS_DP" -l 0 --no-huge -m 512 --no-pci --no-shconf --log-level=lib.eal:error \
    -- --config "$work/rvs.toml" --ctl "$work/ctl" >"$log" 2>&1 </dev/null &
  dp_pid=$!
  for _ in $(seq 100); do
    grep -q 'worker(s) on lcores' "$log" && break
    kill -0 "$dp_pid" 2>/dev/null || { cat "$log" >&2; die "rvs-dp exited"; }
    sleep 0.1
  done
  grep -q 'worker(s) on lcores' "$log" || { cat "$log" >&2; die "rvs-dp did not start"; }
  # 200 UDP datagrams and a few TCP SYNs to the director's own address: what
  # rvs-dp then does with them does not matter, only what it received.
  ip netns exec "$NS_C" bash -c 'for i in $(seq 200); do echo "ping $i" >/dev/udp/10.7.0.1/9; done' || true
  for _ in 1 2 3; do
    ip netns exec "$NS_C" timeout 0.3 bash -c 'exec 3<>/dev/tcp/10.7.0.1/80' 2>/dev/null || true
  done
  sleep 0.3
  kill -INT "$dp_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$dp_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$dp_pid" 2>/dev/null || true
  wait "$dp_pid" 2>/dev/null || true
  dp_pid=""
  for ns in "$NS_C" "$NS_D"; do ip netns del "$ns"; done
  grep '^worker\|^port\|ethtool' "$log" || true
}

counter() {  # counter LOG NAME: the worker line's value of NAME (empty if absent)
  sed -n "s/^worker 0: .* $2 \([0-9]*\).*/\1/p" "$1" | head -1
}

say "TX checksum offload ON on the client's veth: counted and hinted"
run_case on
log="$work/dp-on.log"
rx=$(sed -n "s/^worker 0: rx \([0-9]*\).*/\1/p" "$log"); sampled=$(counter "$log" rx_l4_csum_sampled); bad=$(counter "$log" rx_l4_csum_bad)
[ "${rx:-0}" -ge 200 ] && ok "rvs-dp received $rx frames" || fail "rvs-dp received ${rx:-no} frames"
[ "${bad:-0}" -gt 0 ] && ok "rx_l4_csum_bad $bad of $sampled sampled" || fail "no rx_l4_csum_bad counted (sampled '${sampled}')"
expect_eq "${bad:-x}" "${sampled:-y}" "every sampled frame is bad"
hints=$(grep -c 'ethtool -K <iface> tx off' "$log" || true)
expect_eq "$hints" 1 "hint lines"
grep 'ethtool -K <iface> tx off' "$log" | grep -q 'iface=d0' && ok "the hint names iface=d0" || fail "the hint does not name d0"

say "TX checksum offload OFF: verified, none bad, no hint"
run_case off
log="$work/dp-off.log"
sampled=$(counter "$log" rx_l4_csum_sampled); bad=$(counter "$log" rx_l4_csum_bad)
[ "${sampled:-0}" -gt 0 ] && ok "$sampled frames sampled" || fail "no frame sampled"
expect_eq "${bad:-x}" 0 "rx_l4_csum_bad"
hints=$(grep -c 'ethtool -K' "$log" || true)
expect_eq "$hints" 0 "hint lines"

if [ "$FAILS" -gt 0 ]; then echo "e2e af_packet offload: $FAILS check(s) failed"; exit 1; fi
echo "e2e af_packet offload: all checks passed"
