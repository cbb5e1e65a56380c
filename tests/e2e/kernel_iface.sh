#!/usr/bin/env bash
# End-to-end: a port's kernel interface (net_tap) and VIP ownership that
# follows the kernel's addresses.
#   tests/e2e/kernel_iface.sh
# Namespaces ki-c (client), ki-d (rvs-dp), ki-s1 (real server), all created
# and removed here. rvs-dp's client port has kernel_iface = "k0".
# 1. ping to the port's address is answered by the kernel, through the tap;
# 2. the VIP is on no kernel interface: no ARP, no service (vip_not_owned);
# 3. `ip addr add VIP/32 dev k0`: ARP answered, the service forwards;
# 4. `ip addr del`: it stops again;
# 5. the exit report counts frames up and down the exception path.
# Live, `rvsadm --kernel --json` (and `-Ln --json`) show the VIP owned or
# not at each step, and k0's frames up and down counted while running.
source "$(dirname "$0")/lib.sh"
P=ki
VIP=10.1.0.100
work=$(mktemp -d /tmp/rvs-e2e-ki.XXXXXX)
dp_pid=""
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
cleanup() {
  if [ -n "$dp_pid" ]; then kill -INT "$dp_pid" 2>/dev/null || true; wait "$dp_pid" 2>/dev/null || true; fi
  for ns in $P-c $P-d $P-s1; do
    for p in $(ip netns pids $ns 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del $ns 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
# rvsadm against this rvs-dp's control region.
adm_ki() { RVS_CTL="$work/rvs.ctl" "$RVSADM" "$@"; }
# kjson EXPR: a Python expression over `rvsadm --kernel --json` (as j).
kjson() { adm_ki --kernel --json | python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }
# owned_in_list: the "owned" flag of the one service in `rvsadm -Ln --json`.
owned_in_list() { adm_ki -Ln --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["Services"][0].get("owned"))'; }
# wait_kjson EXPR WANT: up to 2 s for EXPR to print WANT (what it printed last).
wait_kjson() {
  local got=""
  for _ in $(seq 20); do got=$(kjson "$1" 2>&1) && [ "$got" = "$2" ] && break; sleep 0.1; done
  echo "$got"
}
cleanup_quiet() { cleanup >/dev/null 2>&1; work=$(mktemp -d /tmp/rvs-e2e-ki.XXXXXX); }
cleanup_quiet

say "namespaces"
for ns in $P-c $P-d $P-s1; do
  ip netns add $ns
  nsx $ns ip link set lo up
  nsx $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
veth() {  # veth NS_A DEV_A NS_B DEV_B
  ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
  for pair in "$1 $2" "$3 $4"; do
    set -- $pair
    nsx "$1" ip link set "$2" up
    nsx "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true
  done
}
veth $P-c eth0 $P-d d0
veth $P-d d1 $P-s1 eth0
# af_packet ports are veths that the director namespace's kernel also
# receives on; a DPDK-bound NIC is not. Keep that kernel off them, or it
# answers for k0's addresses there too: the ports get MACs of their own
# (unicast to them is "other host" to the veth), and no ARP replies.
for d in d0 d1; do nsx $P-d sysctl -qw net.ipv4.conf.$d.arp_ignore=8; done
nsx $P-c ip addr add 10.1.0.10/24 dev eth0
nsx $P-s1 ip addr add 10.2.0.11/24 dev eth0
nsx $P-s1 ip route add default via 10.2.0.1
nsx $P-s1 nohup python3 "$E2E_ROOT/scripts/rs_server.py" s1 80 53 "$work/s1.fail" >"$work/s1.log" 2>&1 &

cat > "$work/rvs.toml" <<EOF
[dataplane]
workers = [1]
conn_capacity = 65536
idle_sleep_us = 20

[[port]]
name = "client"
device = "net_af_packet0,iface=d0"
address = "10.1.0.1/24"
mac = "02:00:0a:01:00:01"
kernel_iface = "k0"

[[port]]
name = "servers"
device = "net_af_packet1,iface=d1"
address = "10.2.0.1/24"

[[virtual_server]]
address = "$VIP"
port = 80
lb_kind = "NAT"
[[virtual_server.real_server]]
address = "10.2.0.11"
port = 80
EOF

say "rvs-dp with kernel interface k0"
RVS_CTL="$work/rvs.ctl" ip netns exec $P-d "$RVS_DP" -l 1 --no-huge -m 1024 --no-pci --file-prefix $P \
  --log-level=lib.eal:error -- --config "$work/rvs.toml" >"$work/dp.out" 2>"$work/dp.log" </dev/null &
dp_pid=$!
for _ in $(seq 100); do grep -q "owns address 10.1.0.1" "$work/dp.log" 2>/dev/null && break; sleep 0.1; done
grep -q "owns address 10.1.0.1" "$work/dp.log" || { cat "$work/dp.log"; die "rvs-dp did not put 10.1.0.1 on k0"; }
ok "k0 up with 10.1.0.1: $(nsx $P-d ip -br addr show k0 | tr -s ' ')"
mac_k0=$(nsx $P-d cat /sys/class/net/k0/address)
grep -q "mac $mac_k0" "$work/dp.log" && ok "k0 carries the port's MAC ($mac_k0)" || fail "k0 MAC $mac_k0 is not the port's"
grep -q "warning: VIP $VIP has services but is on no kernel interface" "$work/dp.log" \
  && ok "warned about the VIP on no kernel interface" || fail "no warning about the unowned VIP"

say "rvsadm --kernel --json: k0 listed, its address owned, the VIP not"
expect_eq "$(wait_kjson 'j["ports"][0]["iface"], j["ports"][0]["port"]' "k0 0")" "k0 0" "k0, port 0"
expect_eq "$(kjson 'j["owned"]["all"], "10.1.0.1" in j["owned"]["addresses"]')" "False True" "not all owned, 10.1.0.1 owned"
expect_eq "$(kjson "j['vips']['$VIP']")" False "VIP $VIP not owned"
expect_eq "$(owned_in_list)" False "-Ln --json: the service's VIP not owned"

say "ping the port's address: the kernel answers through the tap"
if nsx $P-c ping -c 3 -i 0.2 -W 1 10.1.0.1 >/dev/null; then ok "ping 10.1.0.1"; else fail "ping 10.1.0.1"; fi
rx=$(nsx $P-d cat /sys/class/net/k0/statistics/rx_packets)
[ "$rx" -gt 0 ] && ok "k0 received $rx frames" || fail "k0 received nothing"
# Published every 100 ms by the exception thread.
moved=$(wait_kjson 'j["ports"][0]["up"] > 0 and j["ports"][0]["down"] > 0' True)
live=$(kjson 'j["ports"][0]["up"], j["ports"][0]["down"], j["ports"][0]["dropped"]') || live="(rvsadm failed)"
[ "$moved" = True ] && ok "rvsadm --kernel --json while running: (up, down, dropped) = $live" \
  || fail "rvsadm --kernel --json: nothing counted up and down: $live"
adm_ki --kernel | sed 's/^/   | /'

http() { nsx $P-c curl -s -m "${1:-1}" "http://$VIP/" || echo FAILED; }
say "VIP on no kernel interface: not owned"
nsx $P-c ip neigh flush dev eth0
expect_eq "$(http)" FAILED "no service while not owned"
arp=$(nsx $P-c ip neigh show $VIP | grep -c lladdr || true)
expect_eq "$arp" 0 "no ARP answer for the VIP"

say "ip addr add $VIP/32 dev k0: owned"
nsx $P-d ip addr add $VIP/32 dev k0
for _ in $(seq 50); do grep -q "owns VIP $VIP" "$work/dp.log" && break; sleep 0.1; done
grep -q "owns VIP $VIP" "$work/dp.log" && ok "logged: $(grep "owns VIP $VIP" "$work/dp.log" | tail -1)" || fail "ownership not logged"
expect_eq "$(http 3)" s1 "the service forwards"
expect_eq "$(nsx $P-c ip neigh show $VIP | grep -o 'lladdr [^ ]*' | cut -d' ' -f2)" "$mac_k0" "ARP for the VIP answered with the port's MAC"
expect_eq "$(wait_kjson "j['vips']['$VIP']" True)" True "rvsadm --kernel --json: VIP owned"
expect_eq "$(kjson "'$VIP' in j['owned']['addresses']")" True "rvsadm --kernel --json: VIP among the owned addresses"
expect_eq "$(owned_in_list)" True "-Ln --json: the service's VIP owned"

say "ip addr del: not owned again"
nsx $P-d ip addr del $VIP/32 dev k0
for _ in $(seq 50); do grep -q "no longer owns VIP $VIP" "$work/dp.log" && break; sleep 0.1; done
grep -q "no longer owns VIP $VIP" "$work/dp.log" && ok "logged release" || fail "release not logged"
expect_eq "$(wait_kjson "j['vips']['$VIP']" False)" False "rvsadm --kernel --json: VIP no longer owned"
expect_eq "$(owned_in_list)" False "-Ln --json: the service's VIP no longer owned"
live_up=$(kjson 'j["ports"][0]["up"]') || live_up=0
expect_eq "$(http)" FAILED "no service after removal (the client still has the MAC: vip_not_owned)"
nsx $P-c ip neigh flush dev eth0
expect_eq "$(http)" FAILED "no service after removal (fresh ARP)"
arp=$(nsx $P-c ip neigh show $VIP | grep -c lladdr || true)
expect_eq "$arp" 0 "no ARP answer for the VIP after removal"

say "exit report"
kill -INT "$dp_pid"; wait "$dp_pid" || true; dp_pid=""
cat "$work/dp.out"
up=$(sed -n 's/^kernel k0 .* up \([0-9]*\) down \([0-9]*\).*/\1/p' "$work/dp.out")
down=$(sed -n 's/^kernel k0 .* up \([0-9]*\) down \([0-9]*\).*/\2/p' "$work/dp.out")
[ "${up:-0}" -gt 0 ] && ok "up $up" || fail "nothing went up"
[ "${down:-0}" -gt 0 ] && ok "down $down" || fail "nothing came down"
[ "${up:-0}" -ge "${live_up:-0}" ] && [ "${live_up:-0}" -gt 0 ] \
  && ok "exit report's up ($up) >= the last live value ($live_up)" || fail "exit up $up, live up $live_up"
grep -q "drop.vip_not_owned [1-9]" "$work/dp.out" && ok "vip_not_owned counted" || fail "vip_not_owned not counted"

if [ "$FAILS" -gt 0 ]; then echo "kernel_iface: $FAILS check(s) failed"; cat "$work/dp.log"; exit 1; fi
echo "kernel_iface: all checks passed"
